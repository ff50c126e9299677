//! Hugging Face checkpoint directories: `config.json` plus `model.safetensors` or a
//! sharded `model.safetensors.index.json`, read by name and written back in the same layout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use tch::{nn::VarStore, Tensor};

use crate::parameters::{copy_checked, read_safetensors, save_parameters, write_json_atomically};
use crate::ModelError;

/// Names a loader accepts and drops: aliases of `shared.weight`, and a table some
/// checkpoints carry that HF ignores on load.
const ALIASES_OF_SHARED: [&str; 2] = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];
const IGNORABLE: [&str; 1] =
    ["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"];

/// What a load filled, and what the files held that the model has no place for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Variables of the model that no file provided.
    pub missing: Vec<String>,
    /// File tensors the model has no variable for (e.g. `hyper.*` of a HINT checkpoint).
    pub unexpected: Vec<String>,
}

/// The weight files of a checkpoint directory, in load order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(ModelError::NoWeights {
            dir: dir.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&index).map_err(|source| ModelError::Io {
        path: index.clone(),
        source,
    })?;
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let parsed: Index = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: index.clone(),
        message: format!("line {}, column {}: {e}", e.line(), e.column()),
    })?;
    let files: BTreeSet<&String> = parsed.weight_map.values().collect();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Fills the variables of `vs` from the checkpoint in `dir`, by name, keeping each
/// variable's dtype and device. With `allow_missing`, absent variables keep their
/// initialisation and are reported (a fresh hypernetwork on a pretrained T5).
pub fn load_weights(
    vs: &VarStore,
    dir: &Path,
    allow_missing: bool,
) -> Result<LoadReport, ModelError> {
    let variables: HashMap<String, Tensor> = vs.variables();
    let mut filled = BTreeSet::new();
    let mut unexpected = Vec::new();
    let has_shared_in_files =
        |tensors: &[(String, Tensor)]| tensors.iter().any(|(n, _)| n == "shared.weight");
    let mut shared_filled_from_alias = false;
    for file in weight_files(dir)? {
        let tensors = read_safetensors(&file)?;
        let file_has_shared = has_shared_in_files(&tensors);
        for (name, tensor) in tensors {
            let target = if ALIASES_OF_SHARED.contains(&name.as_str()) {
                // Files keep one name of the tied group; use an alias only when
                // `shared.weight` itself is absent.
                if file_has_shared || filled.contains("shared.weight") || shared_filled_from_alias {
                    continue;
                }
                shared_filled_from_alias = true;
                "shared.weight".to_string()
            } else if IGNORABLE.contains(&name.as_str()) {
                continue;
            } else {
                name.clone()
            };
            let Some(variable) = variables.get(&target) else {
                if target == "lm_head.weight" && variables.contains_key("shared.weight") {
                    // A tied model's file may repeat the head; it is `shared`.
                    continue;
                }
                unexpected.push(name);
                continue;
            };
            copy_checked(variable, &tensor, &name, &file)?;
            filled.insert(target);
        }
    }
    let mut missing: Vec<String> = variables
        .keys()
        .filter(|name| !filled.contains(*name))
        .cloned()
        .collect();
    missing.sort();
    unexpected.sort();
    if !missing.is_empty() && !allow_missing {
        return Err(ModelError::MissingWeights {
            dir: dir.to_path_buf(),
            names: missing,
        });
    }
    if !unexpected.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            "checkpoint tensors without a model variable: {}",
            unexpected.join(", ")
        );
    }
    Ok(LoadReport {
        missing,
        unexpected,
    })
}

/// Writes every variable of `vs` as `dir/model.safetensors` (sorted by name, in the
/// variables' own dtype) and `config_json` as `dir/config.json`, creating `dir` if needed.
///
/// Each file is written under a temporary name, synced and then renamed, so that an
/// interrupted save never leaves a half-written file under the real name. For a whole
/// model, [`Pretrained::save_pretrained`](crate::Pretrained::save_pretrained) calls this
/// with the right configuration.
pub fn save_pretrained(
    vs: &VarStore,
    config_json: &serde_json::Value,
    dir: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    save_parameters(vs, dir.join("model.safetensors"))?;
    write_json_atomically(config_json, &dir.join("config.json"))
}
