//! `hint tasks list|show` and `hint cache-tasks`: over hint-data's default registry, or,
//! given `--gin_file`s, over the tasks and mixtures that run configuration registers
//! (Super-NI checkouts, BIG-bench folders, P3, corpora, gin-defined tasks).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hint_data::cache_tasks::{cache_task_monitored, CacheMonitor, CacheOptions};
use hint_data::task::{EntryKind, ReadOptions, TaskRegistry};
use hint_data::{register_toy_tasks, DataError, Example, FeatureValue, Task};
use regex::Regex;

use crate::gin_args::GinArgs;
use crate::progress::StopFlag;
use crate::train_cmd::settings_of;

/// `hint tasks …`.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List registered tasks and mixtures.
    List {
        /// Only names matching this regular expression (searched anywhere in the name).
        #[arg(long)]
        regex: Option<String>,
        /// The run configuration whose tasks to list (default: the built-in registry).
        #[command(flatten)]
        gin: GinArgs,
    },
    /// Show preprocessed and tokenized examples of a task (or of each task of a mixture).
    Show {
        /// Task or mixture name.
        name: String,
        /// Examples to show per task.
        #[arg(long, default_value_t = 3)]
        n: usize,
        /// The split.
        #[arg(long, default_value = "train")]
        split: String,
        /// The run configuration whose tasks to show (default: the built-in registry).
        #[command(flatten)]
        gin: GinArgs,
    },
}

/// Caching progress as log lines (a split can take minutes), and Ctrl-C.
struct CacheDisplay {
    stop: StopFlag,
    started: std::time::Instant,
}

impl CacheMonitor for CacheDisplay {
    fn on_examples(&mut self, task: &str, split: &str, examples: u64) {
        tracing::info!(
            task,
            split,
            examples,
            elapsed = format!("{:.0} s", self.started.elapsed().as_secs_f64()),
            "caching"
        );
    }

    fn should_stop(&self) -> bool {
        self.stop.is_set()
    }
}

/// `hint cache-tasks` (seqio's `seqio_cache_tasks`).
#[derive(Debug, Args)]
pub struct CacheTasksArgs {
    /// Cache every task whose whole name matches this regular expression.
    #[arg(long)]
    tasks: String,
    /// The cache folder; each task goes to `<dir>/<task name, ':' → '/'>`.
    #[arg(long = "output_cache_dir")]
    output_cache_dir: PathBuf,
    /// Parquet shards per split.
    #[arg(long = "min_shards", default_value_t = 1)]
    min_shards: usize,
    /// Count and skip bad records instead of failing.
    #[arg(long = "skip_bad_records")]
    skip_bad_records: bool,
    /// Seed of the preprocessors that run before caching.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The run configuration whose tasks to cache (default: the built-in registry).
    #[command(flatten)]
    gin: GinArgs,
}

/// The tasks of a run configuration, tokenized as that run tokenizes them: without
/// `--gin_file`, the embedded default that `hint train` runs (its vocabulary, trained from
/// the built-in suite, and its lengths), plus the toy tasks with their own vocabulary.
fn registry(gin: &GinArgs) -> Result<TaskRegistry> {
    let settings = settings_of(gin)?;
    let mut data = settings
        .data
        .build(settings.run.lengths, None)
        .context("building the configuration's tasks")?;
    if gin.gin_files.is_empty() {
        register_toy_tasks(&mut data.registry).context("registering the toy tasks")?;
    }
    Ok(data.registry)
}

/// Runs `hint tasks …`.
pub fn run_tasks(command: TasksCommand) -> Result<ExitCode> {
    let gin = match &command {
        TasksCommand::List { gin, .. } | TasksCommand::Show { gin, .. } => gin.clone(),
    };
    let registry = registry(&gin)?;
    let mut out = std::io::stdout().lock();
    match command {
        TasksCommand::List { regex, .. } => {
            let regex = regex
                .map(|r| Regex::new(&r).with_context(|| format!("bad --regex {r:?}")))
                .transpose()?;
            for (name, kind) in registry.list(regex.as_ref()) {
                let kind = match kind {
                    EntryKind::Task => "task",
                    EntryKind::Mixture => "mixture",
                };
                writeln!(out, "{name}\t{kind}")?;
            }
        }
        TasksCommand::Show { name, n, split, .. } => {
            let tasks = match registry.entry_kind(&name)? {
                EntryKind::Task => vec![registry.task(&name)?],
                EntryKind::Mixture => {
                    writeln!(out, "mixture {name} ({split}):")?;
                    let resolved = registry.resolve(&name, &split, &[])?;
                    for (task, rate) in &resolved {
                        writeln!(out, "  {:<40} rate {rate:.4}", task.name())?;
                    }
                    writeln!(out)?;
                    resolved.into_iter().map(|(t, _)| t).collect()
                }
            };
            for task in tasks {
                show_task(&mut out, &task, &split, n)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_task(
    out: &mut impl Write,
    task: &std::sync::Arc<Task>,
    split: &str,
    n: usize,
) -> Result<()> {
    writeln!(out, "task {} ({split})", task.name())?;
    writeln!(out, "  splits: {}", task.splits().join(", "))?;
    writeln!(
        out,
        "  preprocessors: {}",
        task.preprocessor_names().join(" → ")
    )?;
    let features: Vec<String> = task
        .output_features()
        .iter()
        .map(|(name, f)| {
            format!(
                "{name} ({}EOS{})",
                if f.add_eos { "" } else { "no " },
                f.default_length
                    .map(|l| format!(", length {l}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    writeln!(out, "  output features: {}", features.join(", "))?;
    writeln!(out, "  metrics: {}", task.metrics().join(", "))?;
    let stream = task.open(split, &ReadOptions::default())?;
    for (i, example) in stream.take(n).enumerate() {
        let example = example?;
        writeln!(out, "example {}:", i + 1)?;
        render(out, task, &example)?;
    }
    writeln!(out)?;
    Ok(())
}

/// One line per feature; token ids of output features are followed by their decoding, so
/// the user sees exactly what the model gets.
fn render(out: &mut impl Write, task: &Task, example: &Example) -> Result<()> {
    for (name, value) in example {
        let text = match value {
            FeatureValue::Text(t) => serde_json::to_string(t)?,
            FeatureValue::Texts(t) => serde_json::to_string(t)?,
            FeatureValue::Int(i) => i.to_string(),
            FeatureValue::Float(f) => f.to_string(),
            FeatureValue::Tokens(ids) => {
                let shown = format!("{ids:?}");
                match task.output_features().get(name) {
                    Some(feature) => {
                        let decoded = feature.vocabulary.decode(ids)?;
                        format!("{shown} = {}", serde_json::to_string(&decoded)?)
                    }
                    None => shown,
                }
            }
        };
        writeln!(out, "  {name}: {text}")?;
    }
    Ok(())
}

/// Runs `hint cache-tasks`.
pub fn run_cache_tasks(args: CacheTasksArgs) -> Result<ExitCode> {
    let registry = registry(&args.gin)?;
    let regex = Regex::new(&args.tasks).with_context(|| format!("bad --tasks {:?}", args.tasks))?;
    let tasks = registry.tasks_matching(&regex);
    if tasks.is_empty() {
        tracing::error!(
            "no task matches --tasks={:?} (see `hint tasks list`)",
            args.tasks
        );
        return Ok(ExitCode::from(2));
    }
    let options = CacheOptions {
        min_shards: args.min_shards.max(1),
        seed: args.seed,
        skip_bad_records: args.skip_bad_records,
        ..CacheOptions::default()
    };
    let mut monitor = CacheDisplay {
        stop: StopFlag::install()?,
        started: std::time::Instant::now(),
    };
    let mut out = std::io::stdout().lock();
    for task in tasks {
        let cached = cache_task_monitored(&task, &args.output_cache_dir, &options, &mut monitor);
        let summary = match cached {
            Err(DataError::Interrupted { task }) => {
                tracing::warn!(
                    "interrupted while caching `{task}`: its partial cache is removed; the tasks listed above are cached"
                );
                return Ok(ExitCode::from(130));
            }
            other => other.with_context(|| format!("caching task `{}`", task.name()))?,
        };
        for (split, examples, skipped) in &summary.splits {
            writeln!(
                out,
                "{}\t{split}\t{examples} examples\t{skipped} skipped\t{}",
                task.name(),
                summary.dir.display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
