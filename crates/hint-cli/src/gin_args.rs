//! The gin arguments every configurable subcommand shares, with t5x's spelling.

use std::path::PathBuf;

use clap::Args;

/// `--gin_file`, `--gin_search_paths` and `--gin.KEY=VALUE` overrides (t5x conventions).
#[derive(Debug, Clone, Default, Args)]
pub struct GinArgs {
    /// A gin file; repeatable, parsed in order (later files override earlier ones).
    #[arg(long = "gin_file", value_name = "PATH")]
    pub gin_files: Vec<PathBuf>,
    /// Comma-separated folders where `--gin_file` and `include` paths are looked up.
    #[arg(long = "gin_search_paths", value_name = "A,B", value_delimiter = ',')]
    pub gin_search_paths: Vec<PathBuf>,
    /// A gin binding, applied after all files; `--gin.KEY=VALUE` is rewritten to this.
    #[arg(long = "gin_bindings", value_name = "BINDING")]
    pub gin_bindings: Vec<String>,
    /// Ignore unknown configurables and parameters (to read foreign config files).
    #[arg(long = "skip_unknown")]
    pub skip_unknown: bool,
}

/// Rewrites every `--gin.KEY=VALUE` into `--gin_bindings=KEY = VALUE` before clap sees
/// the arguments, as t5x does before absl flag parsing.
pub fn rewrite_gin_flags(
    args: impl IntoIterator<Item = String>,
) -> Result<Vec<String>, hint_config::GinFlagError> {
    args.into_iter()
        .map(|arg| match hint_config::rewrite_gin_flag(&arg) {
            Some(binding) => binding.map(|b| format!("--gin_bindings={b}")),
            None => Ok(arg),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gin_dot_flags_become_bindings() {
        let args = ["hint", "train", "--gin.TRAIN_STEPS=10", "--gin_file=a.gin"].map(String::from);
        assert_eq!(
            rewrite_gin_flags(args).unwrap(),
            vec![
                "hint",
                "train",
                "--gin_bindings=TRAIN_STEPS = 10",
                "--gin_file=a.gin"
            ]
        );
    }
}
