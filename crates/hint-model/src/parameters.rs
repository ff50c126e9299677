//! Every variable of a `VarStore` as one safetensors file, by name: the format of HINT model
//! directories and of training checkpoints. The file-level pieces (reading with the path in
//! the error, checked copies, atomic writes) are shared with the Hugging Face loader in
//! [`crate::t5::checkpoint`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use tch::{nn::VarStore, Tensor};

use crate::t5::checkpoint::LoadReport;
use crate::ModelError;

/// Writes every variable of `vs` to `path` as safetensors, sorted by name, in each
/// variable's own dtype (moved to the CPU first).
///
/// The file is written under a temporary name beside `path`, synced and then renamed, so
/// that an interrupted save never leaves a truncated file under the real name.
///
/// ```
/// # fn main() -> Result<(), hint_model::ModelError> {
/// use hint_model::{load_parameters, save_parameters, T5Config, T5};
/// use tch::{nn::VarStore, Device};
///
/// let config = T5Config::preset("tiny").unwrap();
/// let vs = VarStore::new(Device::Cpu);
/// let _model = T5::new(vs.root(), &config);
/// let dir = tempfile::tempdir().unwrap();
/// save_parameters(&vs, dir.path().join("model.safetensors"))?;
///
/// let fresh = VarStore::new(Device::Cpu);
/// let _same_shape = T5::new(fresh.root(), &config);
/// load_parameters(&fresh, dir.path().join("model.safetensors"))?;
/// # Ok(())
/// # }
/// ```
pub fn save_parameters(vs: &VarStore, path: impl AsRef<Path>) -> Result<(), ModelError> {
    write_safetensors_atomically(&sorted_cpu_variables(vs), path.as_ref())
}

/// Fills every variable of `vs` from a safetensors file written by [`save_parameters`],
/// keeping each variable's dtype and device.
///
/// Strict: a variable the file lacks is [`ModelError::MissingWeights`] (all of them
/// named), a tensor whose shape differs is [`ModelError::ShapeMismatch`], and a file that
/// cannot be opened is [`ModelError::Io`] naming it. Tensors of the file that `vs` has no
/// variable for are left alone and listed in [`LoadReport::unexpected`].
pub fn load_parameters(vs: &VarStore, path: impl AsRef<Path>) -> Result<LoadReport, ModelError> {
    let path = path.as_ref();
    let saved: BTreeMap<String, Tensor> = read_safetensors(path)?.into_iter().collect();
    let variables = vs.variables();
    let mut missing = Vec::new();
    for (name, variable) in &variables {
        match saved.get(name) {
            Some(tensor) => copy_checked(variable, tensor, name, path)?,
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(ModelError::MissingWeights {
            dir: path.to_path_buf(),
            names: missing,
        });
    }
    let known: BTreeSet<&String> = variables.keys().collect();
    let unexpected = saved
        .into_keys()
        .filter(|name| !known.contains(name))
        .collect();
    Ok(LoadReport {
        missing,
        unexpected,
    })
}

/// The variables of `vs` detached, on the CPU, contiguous and sorted by name: what a
/// safetensors writer needs, in a deterministic order so that equal models give equal files.
pub(crate) fn sorted_cpu_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Reads a safetensors file. The file is opened first so that a missing or unreadable
/// file is an I/O error naming it (libtorch's message would not say which file).
pub(crate) fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>, ModelError> {
    File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Tensor::read_safetensors(path).map_err(|source| ModelError::Torch {
        context: format!("reading {}", path.display()),
        source,
    })
}

/// Copies `tensor` (named `name` in `file`) into `variable` without recording gradients,
/// after checking that the shapes agree.
pub(crate) fn copy_checked(
    variable: &Tensor,
    tensor: &Tensor,
    name: &str,
    file: &Path,
) -> Result<(), ModelError> {
    if variable.size() != tensor.size() {
        return Err(ModelError::ShapeMismatch {
            file: file.to_path_buf(),
            name: name.to_string(),
            found: tensor.size(),
            expected: variable.size(),
        });
    }
    // `copy_` takes `&mut self` but writes through to the shared storage, so a shallow
    // clone of the VarStore's tensor fills the variable itself.
    let mut target = variable.shallow_clone();
    tch::no_grad(|| target.f_copy_(tensor)).map_err(|source| ModelError::Torch {
        context: format!("copying {name} from {}", file.display()),
        source,
    })
}

/// Writes tensors as safetensors at `path` via a temporary file and a rename (hint-fs).
pub(crate) fn write_safetensors_atomically(
    named: &[(String, Tensor)],
    path: &Path,
) -> Result<(), ModelError> {
    hint_fs::write_atomically_with(path, |tmp| {
        Tensor::write_safetensors(named, tmp).map_err(|source| ModelError::Torch {
            context: format!("writing {}", tmp.display()),
            source,
        })
    })
}

/// Writes `value` as pretty JSON at `path` via a temporary file and a rename (hint-fs).
pub(crate) fn write_json_atomically(
    value: &serde_json::Value,
    path: &Path,
) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    Ok(hint_fs::write_atomically(path, text.as_bytes())?)
}
