//! `hint config show`: loads gin files and overrides as any subcommand would and
//! prints the resulting bindings.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::ValueEnum;
use hint_config::{Config, ConfigBuilder, ConfigError};

use crate::gin_args::GinArgs;

/// How `hint config show` prints the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ShowFormat {
    /// gin text in gin's `config_str` layout (it parses back to the same bindings).
    #[default]
    Gin,
    /// A JSON array, one object per binding (scope, selector, parameter, value), with
    /// macros substituted.
    Json,
}

/// Builds the configuration from the shared gin arguments, in t5x's order: search
/// paths, `--gin_file`s in order, then `--gin_bindings` (and `--gin.X=Y`) in order.
pub fn load(gin: &GinArgs) -> Result<Config, ConfigError> {
    let mut builder = ConfigBuilder::new()
        .search_paths(gin.gin_search_paths.iter().cloned())
        .skip_unknown(gin.skip_unknown);
    for file in &gin.gin_files {
        builder = builder.file(file.to_string_lossy());
    }
    for binding in &gin.gin_bindings {
        builder = builder.binding(binding.clone());
    }
    builder.build()
}

/// Runs `hint config show`.
pub fn show(gin: &GinArgs, format: ShowFormat) -> Result<ExitCode> {
    // The original HINT's gin files are shown as what hint makes of them.
    let translated = match hint_train::settings::translate_original(
        &gin.gin_files,
        &gin.gin_bindings,
        &gin.gin_search_paths,
    ) {
        Ok(translated) => translated,
        // Files that do not parse: reading them below reports it in its own words.
        Err(hint_train::TrainError::Config(_)) => None,
        Err(untranslatable) => {
            return Err(untranslatable).context("translating the original's gin configuration")
        }
    };
    if let Some(translation) = translated {
        for warning in &translation.warnings {
            tracing::warn!("{warning}");
        }
        let config = ConfigBuilder::new()
            .source("<translated>", translation.gin())
            .build()?;
        return print(&config, format, Some(translation.gin()));
    }
    let config = load(gin)?;
    print(&config, format, None)
}

fn print(config: &Config, format: ShowFormat, translated: Option<String>) -> Result<ExitCode> {
    let text = match format {
        ShowFormat::Gin => translated.unwrap_or_else(|| config.config_str()),
        ShowFormat::Json => {
            let bindings: Vec<_> = config
                .resolved_bindings()?
                .iter()
                .map(hint_config::BindingEntry::to_json)
                .collect();
            format!("{:#}\n", hint_config::serde_json::Value::Array(bindings))
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
