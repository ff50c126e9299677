//! hint-config: a gin-compatible configuration language with t5x's command-line
//! conventions (`--gin_file`, `--gin.X=Y`, `--gin_search_paths`).
//!
//! The command-line rewrite is the first piece; the parser, scopes, macros and
//! typed access follow the gin reference.

mod cli;

pub use cli::{rewrite_gin_flag, GinFlagError};
