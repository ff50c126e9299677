//! The LoRA or IA3 HINT generates for one instruction, as a Hugging Face PEFT adapter: with
//! the base T5 in Hugging Face's layout, `PeftModel.from_pretrained` then computes that
//! task's model without the hypernetwork (`scripts/peft_check.py` checks its logits).
//!
//! PEFT's IA3 multiplies the outputs of `k` and `v` by `ia3_l [out, 1]` and the input of a
//! feed-forward `wo` by `ia3_l [1, in]`; HINT's scales (`1 + generated`) are those vectors.
//!
//! PEFT's LoRA adds `lora_B(lora_A(x)) · lora_alpha / r` to a projection; HINT's adds
//! `x · A · B · alpha / rank` with `A [in, rank]`, `B [rank, out]`: so `lora_A.weight` is
//! `Aᵀ [rank, in]`, `lora_B.weight` is `Bᵀ [out, rank]`, PEFT's `lora_alpha` is HINT's, and
//! its `r` each projection's rank (`rank_pattern` where they differ). Only what PEFT can
//! express exports: bottleneck adapters have no PEFT counterpart, PEFT's T5 prefix tuning
//! shares one decoder prefix between self- and cross-attention and gives the encoder none,
//! and fusion and prompt tokens change the model's inputs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use tch::{Device, Tensor};

use crate::hyper::config::HyperConfig;
use crate::hyper::model::{HyperT5, TaskAdaptation};
use crate::parameters::{write_json_atomically, write_safetensors_atomically};
use crate::t5::adaptation::StackAdaptation;
use crate::ModelError;

const PROJECTIONS: [&str; 4] = ["q", "k", "v", "o"];

/// Why a configuration cannot export, naming the part PEFT cannot represent (`None`: it
/// can).
pub fn peft_refusal(config: &HyperConfig) -> Option<String> {
    let mut parts = Vec::new();
    if config.use_adapter {
        parts
            .push("generated bottleneck adapters (`use_adapter`): PEFT has no bottleneck adapters");
    }
    if config.use_prefix {
        parts.push("generated prefixes (`use_prefix`): PEFT's T5 prefix tuning shares one decoder prefix between self- and cross-attention and gives the encoder none");
    }
    if config.use_prompt {
        parts.push("generated prompt tokens (`use_prompt`): they come from the instruction, not from a trained prompt");
    }
    if config.use_fusion_in_decoder && config.use_instructions {
        parts.push("fusion in the decoder (`use_fusion_in_decoder`): the decoder attends to the encoded instruction, an input PEFT's model does not take");
    }
    match (config.lora_enabled(), config.use_ia3) {
        (true, true) => parts.push(
            "LoRA and IA3 together (`use_lora` and `use_ia3`): a PEFT adapter holds one method",
        ),
        (false, false) => parts.push(
            "no generated LoRA or IA3 (`use_lora` with some `lora_ranks`, or `use_ia3`): nothing to export",
        ),
        _ => {}
    }
    (!parts.is_empty()).then(|| {
        format!(
            "PEFT cannot represent this HINT configuration's {}",
            parts.join("; ")
        )
    })
}

/// One stack's LoRA tensors under PEFT's names, and each projection's rank.
fn stack_tensors(
    prefix: &str,
    stack: &StackAdaptation,
    out: &mut Vec<(String, Tensor)>,
    ranks: &mut BTreeMap<String, i64>,
) {
    for (i, layer) in stack.layers.iter().enumerate() {
        let attentions = [
            (0, "SelfAttention", &layer.self_attention),
            (1, "EncDecAttention", &layer.cross_attention),
        ];
        for (index, name, attention) in attentions {
            for (p, lora) in attention.lora.iter().enumerate() {
                let Some(lora) = lora else { continue };
                let module = format!("{prefix}.block.{i}.layer.{index}.{name}.{}", PROJECTIONS[p]);
                let a = lora.a.select(0, 0).transpose(0, 1).contiguous();
                let b = lora.b.select(0, 0).transpose(0, 1).contiguous();
                ranks.insert(module.clone(), a.size()[0]);
                out.push((format!("base_model.model.{module}.lora_A.weight"), a));
                out.push((format!("base_model.model.{module}.lora_B.weight"), b));
            }
        }
    }
}

/// One stack's IA3 vectors under PEFT's names and shapes; `feed_forward_layer` is the
/// index of the feed-forward sublayer in a block (1 in the encoder, 2 in the decoder).
fn stack_ia3_tensors(
    prefix: &str,
    stack: &StackAdaptation,
    feed_forward_layer: usize,
    out: &mut Vec<(String, Tensor)>,
) {
    for (i, layer) in stack.layers.iter().enumerate() {
        let block = format!("base_model.model.{prefix}.block.{i}.layer");
        let attentions = [
            (0, "SelfAttention", &layer.self_attention),
            (1, "EncDecAttention", &layer.cross_attention),
        ];
        for (index, name, attention) in attentions {
            for (projection, scale) in [("k", &attention.ia3_key), ("v", &attention.ia3_value)] {
                if let Some(scale) = scale {
                    // [1, 1, out] → PEFT's [out, 1].
                    let vector = scale.reshape([-1, 1]);
                    out.push((format!("{block}.{index}.{name}.{projection}.ia3_l"), vector));
                }
            }
        }
        if let Some(scale) = &layer.ia3_feed_forward {
            out.push((
                format!("{block}.{feed_forward_layer}.DenseReluDense.wo.ia3_l"),
                scale.reshape([1, -1]),
            ));
        }
    }
}

/// Writes `adaptation` (one task's: one row) of `model` as a PEFT adapter folder
/// (`adapter_config.json`, `adapter_model.safetensors`) for the base T5 at
/// `base_model_name_or_path`.
pub fn save_peft_adapter(
    model: &HyperT5,
    adaptation: &TaskAdaptation,
    base_model_name_or_path: &str,
    dir: &Path,
) -> Result<(), ModelError> {
    let invalid = |message: String| ModelError::Config {
        path: dir.to_path_buf(),
        message,
    };
    if let Some(refusal) = peft_refusal(&model.config) {
        return Err(invalid(refusal));
    }
    if adaptation.rows != 1 {
        return Err(invalid(format!(
            "an adapter is one task's: the adaptation has {} rows",
            adaptation.rows
        )));
    }
    let mut tensors = Vec::new();
    let config = if model.config.use_ia3 {
        stack_ia3_tensors("encoder", &adaptation.encoder, 1, &mut tensors);
        stack_ia3_tensors("decoder", &adaptation.decoder, 2, &mut tensors);
        json!({
            "peft_type": "IA3",
            "task_type": "SEQ_2_SEQ_LM",
            "base_model_name_or_path": base_model_name_or_path,
            "target_modules": ["k", "v", "wo"],
            "feedforward_modules": ["wo"],
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_ia3_weights": true,
            "modules_to_save": null,
        })
    } else {
        lora_config(model, adaptation, base_model_name_or_path, &mut tensors)
    };
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                t.detach()
                    .to_device(Device::Cpu)
                    .to_kind(tch::Kind::Float)
                    .contiguous(),
            )
        })
        .collect();
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_safetensors_atomically(&tensors, &dir.join("adapter_model.safetensors"))?;
    write_json_atomically(&config, &dir.join("adapter_config.json"))
}

/// The LoRA tensors of `adaptation` into `tensors`, and PEFT's `LoraConfig` for them.
fn lora_config(
    model: &HyperT5,
    adaptation: &TaskAdaptation,
    base_model_name_or_path: &str,
    tensors: &mut Vec<(String, Tensor)>,
) -> serde_json::Value {
    let mut ranks = BTreeMap::new();
    stack_tensors("encoder", &adaptation.encoder, tensors, &mut ranks);
    stack_tensors("decoder", &adaptation.decoder, tensors, &mut ranks);
    // The most common rank is `r`; the others go to `rank_pattern` by module.
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for rank in ranks.values() {
        *counts.entry(*rank).or_default() += 1;
    }
    let r = counts
        .iter()
        .max_by_key(|(rank, count)| (**count, std::cmp::Reverse(**rank)))
        .map_or(0, |(rank, _)| *rank);
    let rank_pattern: BTreeMap<String, i64> = ranks
        .iter()
        .filter(|(_, rank)| **rank != r)
        .map(|(module, rank)| (module.clone(), *rank))
        .collect();
    let targets: Vec<&str> = PROJECTIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| model.config.lora_ranks[*i].is_some())
        .map(|(_, p)| *p)
        .collect();
    json!({
        "peft_type": "LORA",
        "task_type": "SEQ_2_SEQ_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": r,
        "lora_alpha": model.config.lora_alpha,
        "target_modules": targets,
        "rank_pattern": rank_pattern,
        "alpha_pattern": {},
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
    })
}

/// Writes the T5 part of `model` (no `hyper.` parameters) as a Hugging Face directory.
pub fn save_base_t5(vs: &tch::nn::VarStore, model: &HyperT5, dir: &Path) -> Result<(), ModelError> {
    let tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("hyper."))
        .map(|(n, t)| {
            (
                n,
                t.detach().to_device(Device::Cpu).to_kind(tch::Kind::Float),
            )
        })
        .collect();
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_safetensors_atomically(&tensors, &dir.join("model.safetensors"))?;
    write_json_atomically(&model.t5.config.to_hf_json(), &dir.join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lora_or_ia3_without_fusion_exports_and_a_refusal_names_each_part() {
        let lora = HyperConfig {
            use_adapter: false,
            use_prefix: false,
            use_fusion_in_decoder: false,
            use_lora: true,
            lora_ranks: [Some(4), None, Some(4), None],
            ..HyperConfig::default()
        };
        assert_eq!(peft_refusal(&lora), None);
        let ia3 = HyperConfig {
            use_lora: false,
            use_ia3: true,
            ..lora.clone()
        };
        assert_eq!(peft_refusal(&ia3), None);
        let both = peft_refusal(&HyperConfig {
            use_ia3: true,
            ..lora.clone()
        })
        .unwrap();
        assert!(both.contains("one method"), "{both}");
        let refusal = peft_refusal(&HyperConfig::default()).unwrap();
        for part in [
            "use_adapter",
            "use_prefix",
            "use_fusion_in_decoder",
            "use_lora",
        ] {
            assert!(refusal.contains(part), "{refusal}");
        }
    }
}
