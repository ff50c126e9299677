//! hint-config: a gin-compatible configuration language with t5x's command-line
//! conventions (`--gin_file`, `--gin.X=Y`, `--gin_search_paths`).
//!
//! gin text is parsed (with nom) into [`Statement`]s; a [`ConfigBuilder`] loads files,
//! includes and `--gin_bindings` in t5x's order into a [`Config`], which answers
//! typed queries: [`Config::get`] fills a serde struct from the bindings of one
//! configurable in one scope. A [`Registry`] lists the configurables a program has, so
//! that partial selectors resolve and typos are reported with a suggestion.
//!
//! ```
//! use hint_config::{ConfigBuilder, Registry};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Default, Debug)]
//! #[serde(default)]
//! struct ModelConfig { d_model: i64, dropout_rate: f64, ranks: Vec<Option<i64>> }
//!
//! let mut registry = Registry::new();
//! registry.register_struct::<ModelConfig>("hint.model.Config").unwrap();
//! let config = ConfigBuilder::new()
//!     .registry(registry)
//!     .source("base.gin", "DROPOUT = 0.1\nmodel.Config:\n  d_model = 512\n  dropout_rate = %DROPOUT\n")
//!     .binding("model.Config.ranks = (512, None)")
//!     .binding("DROPOUT = 0.0")
//!     .build()
//!     .unwrap();
//! let model: ModelConfig = config.get("Config", "").unwrap();
//! assert_eq!((model.d_model, model.dropout_rate), (512, 0.0));
//! assert_eq!(model.ranks, vec![Some(512), None]);
//! ```

mod ast;
mod cli;
mod config;
mod dynamic;
mod error;
mod lexer;
mod loader;
mod parser;
mod registry;
mod render;
mod suggest;
mod value;

pub use ast::{Statement, StatementKind};
pub use cli::{rewrite_gin_flag, GinFlagError};
pub use config::{
    BindingEntry, Bound, Config, ConfigBuilder, Import, UnreadBinding, UnreferencedMacro,
};
pub use error::{ConfigError, Location, SyntaxError};
pub use loader::resolve_path;
pub use parser::{parse_str, parse_value};
pub use registry::{Bindings, Configurable, Constructor, Registry};
pub use value::{Reference, Value};

/// serde_json is part of this crate's API (constructors return JSON, and values have a
/// tagged JSON form); re-exported so users need not pin a matching version.
pub use serde_json;
