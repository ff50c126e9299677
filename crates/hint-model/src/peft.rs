//! The LoRA HINT generates for one instruction, as a Hugging Face PEFT adapter: with the
//! base T5 in Hugging Face's layout, `PeftModel.from_pretrained` then computes that task's
//! model without the hypernetwork (`scripts/peft_check.py` checks its logits).
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
    if !config.use_lora || config.lora_ranks.iter().all(Option::is_none) {
        parts.push("no generated LoRA (`use_lora` with some `lora_ranks`): nothing to export");
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
    let mut ranks = BTreeMap::new();
    stack_tensors("encoder", &adaptation.encoder, &mut tensors, &mut ranks);
    stack_tensors("decoder", &adaptation.decoder, &mut tensors, &mut ranks);
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                t.detach().to_device(Device::Cpu).to_kind(tch::Kind::Float),
            )
        })
        .collect();
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
    let config = json!({
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
    });
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_safetensors_atomically(&tensors, &dir.join("adapter_model.safetensors"))?;
    write_json_atomically(&config, &dir.join("adapter_config.json"))
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
    fn only_lora_without_fusion_exports_and_a_refusal_names_each_part() {
        let lora = HyperConfig {
            use_adapter: false,
            use_prefix: false,
            use_fusion_in_decoder: false,
            use_lora: true,
            lora_ranks: [Some(4), None, Some(4), None],
            ..HyperConfig::default()
        };
        assert_eq!(peft_refusal(&lora), None);
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
