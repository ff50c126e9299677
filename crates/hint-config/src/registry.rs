//! The configurables Rust code registers: complete selectors, parameter lists,
//! defaults and constructors, with gin's suffix matching of partial selectors.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::error::{ConfigError, Location};
use crate::suggest::closest;

/// Builds the value of `@selector()` in a scope. It receives the configuration and
/// the active scope (`""` for none) and returns the object as JSON, which is what the
/// consumer's field deserializes from.
pub type Constructor = Arc<dyn Fn(&dyn Bindings, &str) -> Result<Json, ConfigError> + Send + Sync>;

/// What a constructor reads bindings through ([`crate::Config`] implements it), so that
/// the registry needs nothing of the configuration that holds it.
pub trait Bindings {
    /// The parameters of configurable `selector` in `scope` as a JSON object, evaluated
    /// as [`crate::Config::get`] does (and recorded for the operative configuration).
    fn parameters(&self, selector: &str, scope: &str) -> Result<Json, ConfigError>;
}

/// One registered configurable.
#[derive(Clone)]
pub struct Configurable {
    /// The complete selector, e.g. `hint.optim.Adafactor`.
    pub selector: String,
    /// The parameters it accepts; `None` accepts any name.
    pub params: Option<Vec<String>>,
    /// Default values of parameters (shown in the operative configuration).
    pub defaults: BTreeMap<String, Json>,
    /// What `@selector()` evaluates to; `None` if it cannot be called.
    pub constructor: Option<Constructor>,
}

impl fmt::Debug for Configurable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Configurable")
            .field("selector", &self.selector)
            .field("params", &self.params)
            .field("defaults", &self.defaults)
            .field("constructor", &self.constructor.is_some())
            .finish()
    }
}

/// The set of configurables a program knows, looked up by (partial) selector.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    items: BTreeMap<String, Configurable>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) a configurable.
    pub fn insert(&mut self, configurable: Configurable) -> &mut Self {
        self.items
            .insert(configurable.selector.clone(), configurable);
        self
    }

    /// Registers a configurable that accepts exactly `params` and cannot be called.
    pub fn register(&mut self, selector: &str, params: &[&str]) -> &mut Self {
        self.insert(Configurable {
            selector: selector.to_string(),
            params: Some(params.iter().map(|p| p.to_string()).collect()),
            defaults: BTreeMap::new(),
            constructor: None,
        })
    }

    /// Registers a callable configurable with a hand-written constructor.
    pub fn register_fn(
        &mut self,
        selector: &str,
        params: &[&str],
        constructor: impl Fn(&dyn Bindings, &str) -> Result<Json, ConfigError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.insert(Configurable {
            selector: selector.to_string(),
            params: Some(params.iter().map(|p| p.to_string()).collect()),
            defaults: BTreeMap::new(),
            constructor: Some(Arc::new(constructor)),
        })
    }

    /// Registers a Rust config struct as configurable `selector`: its fields (as
    /// serialized from `T::default()`) are the parameters and their defaults, and
    /// `@selector()` builds a `T` from the bindings in the reference's scope.
    ///
    /// ```
    /// use hint_config::{ConfigBuilder, Registry};
    /// #[derive(serde::Serialize, serde::Deserialize, Default, Debug, PartialEq)]
    /// #[serde(default)]
    /// struct Adafactor { decay_rate: f64, step_offset: i64 }
    ///
    /// let mut registry = Registry::new();
    /// registry.register_struct::<Adafactor>("hint.optim.Adafactor").unwrap();
    /// let config = ConfigBuilder::new()
    ///     .registry(registry)
    ///     .source("<doc>", "Adafactor.decay_rate = 0.8\nhyper/Adafactor.step_offset = 3\n")
    ///     .build()
    ///     .unwrap();
    /// let hyper: Adafactor = config.get("Adafactor", "hyper").unwrap();
    /// assert_eq!(hyper, Adafactor { decay_rate: 0.8, step_offset: 3 });
    /// let plain: Adafactor = config.get("optim.Adafactor", "").unwrap();
    /// assert_eq!(plain.step_offset, 0);
    /// ```
    pub fn register_struct<T>(&mut self, selector: &str) -> Result<&mut Self, ConfigError>
    where
        T: Serialize + DeserializeOwned + Default + 'static,
    {
        let defaults = match serde_json::to_value(T::default()) {
            Ok(Json::Object(map)) => map.into_iter().collect::<BTreeMap<_, _>>(),
            Ok(other) => {
                return Err(ConfigError::Registration {
                    selector: selector.to_string(),
                    message: format!("`T::default()` serializes to {other}, not a struct"),
                })
            }
            Err(e) => {
                return Err(ConfigError::Registration {
                    selector: selector.to_string(),
                    message: e.to_string(),
                })
            }
        };
        let owned = selector.to_string();
        let constructor: Constructor = Arc::new(move |config: &dyn Bindings, scope: &str| {
            let deserialize_error = |e: serde_json::Error| ConfigError::Deserialize {
                selector: owned.clone(),
                scope: scope.to_string(),
                message: e.to_string(),
            };
            let built: T = serde_json::from_value(config.parameters(&owned, scope)?)
                .map_err(deserialize_error)?;
            serde_json::to_value(built).map_err(deserialize_error)
        });
        Ok(self.insert(Configurable {
            selector: selector.to_string(),
            params: Some(defaults.keys().cloned().collect()),
            defaults,
            constructor: Some(constructor),
        }))
    }

    /// All registered configurables, by complete selector.
    pub fn iter(&self) -> impl Iterator<Item = &Configurable> {
        self.items.values()
    }

    /// Finds the configurable a (partial) selector names: any dot-suffix of a complete
    /// selector matches it (`Adafactor`, `optim.Adafactor`); more than one match is
    /// ambiguous unless one of them is the exact selector.
    pub fn lookup(
        &self,
        selector: &str,
        at: Option<&Location>,
    ) -> Result<&Configurable, ConfigError> {
        if let Some(exact) = self.items.get(selector) {
            return Ok(exact);
        }
        let suffix = format!(".{selector}");
        let matches: Vec<&Configurable> = self
            .items
            .values()
            .filter(|c| c.selector.ends_with(&suffix))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(ConfigError::UnknownConfigurable {
                selector: selector.to_string(),
                suggestion: self.suggest(selector),
                at: at.cloned(),
            }),
            many => Err(ConfigError::AmbiguousSelector {
                selector: selector.to_string(),
                candidates: many.iter().map(|c| c.selector.clone()).collect(),
                at: at.cloned(),
            }),
        }
    }

    /// Compares the typed name with every dot-suffix of every registered selector.
    fn suggest(&self, selector: &str) -> Option<String> {
        let depth = selector.split('.').count();
        let suffixes: Vec<String> = self
            .items
            .keys()
            .map(|k| {
                let parts: Vec<&str> = k.split('.').collect();
                parts[parts.len().saturating_sub(depth)..].join(".")
            })
            .collect();
        closest(selector, suffixes.iter().map(String::as_str))
    }

    /// Checks that `param` is a parameter of `configurable`.
    pub(crate) fn check_param(
        configurable: &Configurable,
        param: &str,
        at: Option<&Location>,
    ) -> Result<(), ConfigError> {
        match &configurable.params {
            Some(params) if !params.iter().any(|p| p == param) => {
                Err(ConfigError::UnknownParameter {
                    selector: configurable.selector.clone(),
                    param: param.to_string(),
                    suggestion: closest(param, params.iter().map(String::as_str)),
                    at: at.cloned(),
                })
            }
            _ => Ok(()),
        }
    }
}
