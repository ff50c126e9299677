//! One-call loading and saving of model directories: a Hugging Face T5 directory
//! (`config.json` + `model.safetensors`, or a sharded index) and a HINT directory (the
//! same layout, with the hypernetwork's switches under `"hint"` in `config.json` and its
//! parameters under `hyper.*` in the weights).

use std::path::Path;

use serde::Deserialize;
use tch::{nn::VarStore, Device};

use crate::t5::checkpoint::{load_weights, save_pretrained};
use crate::{HyperConfig, HyperT5, ModelError, T5Config, T5};

/// The `config.json` key of a HINT directory that holds its [`HyperConfig`]; the other
/// keys are the T5's Hugging Face fields.
pub const HINT_CONFIG_KEY: &str = "hint";

/// A model and the [`VarStore`] that owns its parameters: what `from_pretrained` returns
/// and what [`Pretrained::save_pretrained`] writes.
///
/// A tch model only borrows its variables' names; the store holds the tensors, so the two
/// travel together. Build one around a fresh model with a struct literal:
///
/// ```
/// use hint_model::{Pretrained, T5Config, T5};
/// use tch::{nn::VarStore, Device};
///
/// let vs = VarStore::new(Device::Cpu);
/// let model = T5::new(vs.root(), &T5Config::preset("tiny").unwrap());
/// let fresh = Pretrained { vs, model };
/// ```
#[derive(Debug)]
pub struct Pretrained<M> {
    /// The parameters.
    pub vs: VarStore,
    /// The model whose variables live in `vs`.
    pub model: M,
}

/// A model that knows the `config.json` it is rebuilt from.
pub trait PretrainedModel {
    /// The `config.json` of a directory holding this model.
    fn config_json(&self) -> serde_json::Value;
}

impl PretrainedModel for T5 {
    /// Hugging Face's T5 `config.json` (transformers reads it back as the same model).
    fn config_json(&self) -> serde_json::Value {
        self.config.to_hf_json()
    }
}

impl PretrainedModel for HyperT5 {
    /// The T5's Hugging Face fields plus the [`HyperConfig`] under [`HINT_CONFIG_KEY`].
    fn config_json(&self) -> serde_json::Value {
        let mut json = self.t5.config.to_hf_json();
        if let Some(object) = json.as_object_mut() {
            object.insert(
                HINT_CONFIG_KEY.into(),
                serde_json::to_value(&self.config).unwrap_or_default(),
            );
        }
        json
    }
}

impl<M: PretrainedModel> Pretrained<M> {
    /// Writes `dir/config.json` ([`PretrainedModel::config_json`]) and
    /// `dir/model.safetensors` (every variable, sorted by name), creating `dir` if needed.
    /// Each file is written under a temporary name, synced and renamed, so that an
    /// interrupted save leaves no truncated file under the real name.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<(), ModelError> {
        save_pretrained(&self.vs, &self.model.config_json(), dir.as_ref())
    }
}

impl T5 {
    /// Loads a Hugging Face T5 directory onto `device`: the architecture from
    /// `config.json`, then every parameter by name from `model.safetensors` (or the shards
    /// of `model.safetensors.index.json`).
    ///
    /// Errors name what is wrong: an unreadable `config.json` or weights file
    /// ([`ModelError::Io`], [`ModelError::Config`], [`ModelError::NoWeights`]), a parameter
    /// the files lack ([`ModelError::MissingWeights`]) or one of another shape
    /// ([`ModelError::ShapeMismatch`]). File tensors the model has no place for (such as
    /// the `hyper.*` of a HINT directory) are skipped with a warning, so this also loads
    /// the underlying T5 of a HINT directory.
    ///
    /// ```
    /// # fn main() -> Result<(), hint_model::ModelError> {
    /// use hint_model::{Pretrained, T5Config, T5};
    /// use tch::{nn::VarStore, Device};
    ///
    /// let vs = VarStore::new(Device::Cpu);
    /// let model = T5::new(vs.root(), &T5Config::preset("tiny").unwrap());
    /// let dir = tempfile::tempdir().unwrap();
    /// Pretrained { vs, model }.save_pretrained(dir.path())?;
    ///
    /// let Pretrained { vs, model } = T5::from_pretrained(dir.path(), Device::Cpu)?;
    /// assert_eq!(model.config.d_model, 8);
    /// # drop(vs);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_pretrained(
        dir: impl AsRef<Path>,
        device: Device,
    ) -> Result<Pretrained<T5>, ModelError> {
        let dir = dir.as_ref();
        let config = T5Config::from_json_file(dir.join("config.json"))?;
        let vs = VarStore::new(device);
        let model = T5::new(vs.root(), &config);
        load_weights(&vs, dir, false)?;
        Ok(Pretrained { vs, model })
    }
}

impl HyperT5 {
    /// Loads a HINT directory written by [`Pretrained::save_pretrained`] onto `device`:
    /// T5 and hypernetwork from `config.json`, then every parameter, the hypernetwork's
    /// included, from the weights.
    ///
    /// A directory without the `"hint"` key (a plain Hugging Face T5) is a
    /// [`ModelError::Config`]; start a HINT model from one with
    /// [`HyperT5::from_pretrained_t5`]. The other errors are those of
    /// [`T5::from_pretrained`], and a missing parameter is an error here too.
    ///
    /// ```
    /// # fn main() -> Result<(), hint_model::ModelError> {
    /// use hint_model::{HyperConfig, HyperT5, Pretrained, T5Config};
    /// use tch::{nn::VarStore, Device};
    ///
    /// let vs = VarStore::new(Device::Cpu);
    /// let t5 = T5Config::preset("tiny").unwrap();
    /// let model = HyperT5::new(vs.root(), &t5, &HyperConfig::preset("tiny").unwrap());
    /// let dir = tempfile::tempdir().unwrap();
    /// Pretrained { vs, model }.save_pretrained(dir.path())?;
    ///
    /// let reloaded = HyperT5::from_pretrained(dir.path(), Device::Cpu)?;
    /// assert_eq!(reloaded.model.config, HyperConfig::preset("tiny").unwrap());
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_pretrained(
        dir: impl AsRef<Path>,
        device: Device,
    ) -> Result<Pretrained<HyperT5>, ModelError> {
        let dir = dir.as_ref();
        let (t5, hyper) = read_hint_config(&dir.join("config.json"))?;
        let vs = VarStore::new(device);
        let model = HyperT5::new(vs.root(), &t5, &hyper);
        load_weights(&vs, dir, false)?;
        Ok(Pretrained { vs, model })
    }

    /// Starts a HINT model from a Hugging Face T5 directory: the T5 parameters load by
    /// name, the hypernetwork (everything under `hyper.`) keeps its fresh initialisation.
    ///
    /// Strict about the T5 itself: a T5 parameter the directory lacks is
    /// [`ModelError::MissingWeights`] rather than silently left random.
    pub fn from_pretrained_t5(
        dir: impl AsRef<Path>,
        hyper: &HyperConfig,
        device: Device,
    ) -> Result<Pretrained<HyperT5>, ModelError> {
        let dir = dir.as_ref();
        let t5 = T5Config::from_json_file(dir.join("config.json"))?;
        let vs = VarStore::new(device);
        let model = HyperT5::new(vs.root(), &t5, hyper);
        load_t5_weights(&vs, dir)?;
        Ok(Pretrained { vs, model })
    }
}

/// Fills the T5 part of a HINT model's variables from a Hugging Face T5 directory, by
/// name; the hypernetwork (everything under `hyper.`) keeps its values. A T5 parameter the
/// directory lacks is [`ModelError::MissingWeights`] rather than silently left random.
pub fn load_t5_weights(vs: &VarStore, dir: &Path) -> Result<(), ModelError> {
    let report = load_weights(vs, dir, true)?;
    let lacking: Vec<String> = report
        .missing
        .into_iter()
        .filter(|name| !name.starts_with("hyper."))
        .collect();
    if !lacking.is_empty() {
        return Err(ModelError::MissingWeights {
            dir: dir.to_path_buf(),
            names: lacking,
        });
    }
    Ok(())
}

/// Reads the T5 and hypernetwork configurations of a HINT directory's `config.json`.
pub fn read_hint_config(path: &Path) -> Result<(T5Config, HyperConfig), ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let malformed = |e: serde_json::Error| ModelError::Config {
        path: path.to_path_buf(),
        message: format!("line {}, column {}: {e}", e.line(), e.column()),
    };
    let t5: T5Config = serde_json::from_str(&text).map_err(malformed)?;
    #[derive(Deserialize)]
    struct HintField {
        hint: Option<HyperConfig>,
    }
    let HintField { hint } = serde_json::from_str(&text).map_err(malformed)?;
    let hyper = hint.ok_or_else(|| ModelError::Config {
        path: path.to_path_buf(),
        message: format!(
            "no `{HINT_CONFIG_KEY}` field: a Hugging Face T5 configuration, not a HINT one \
             (load it with T5::from_pretrained, or start HINT from it with HyperT5::from_pretrained_t5)"
        ),
    })?;
    Ok((t5, hyper))
}
