//! Experiments: several arms (gin files that differ in one thing) trained on the same data
//! and steps, each with several seeds, evaluated on the same sets, and summarised in one
//! table with scores (mean and spread over seeds), inference FLOPs per instance, measured
//! inference time and training time — `hint experiment run`.
//!
//! A suite file binds everything the arms share plus `hint.experiment.Experiment`
//! (`arms`, `seeds`, `output_dir`); arm `<name>` is the file `arms/<name>.gin` beside the
//! suite file, parsed after it. Each arm and seed trains in `<output_dir>/<arm>/seed<k>`
//! (a finished run is evaluated again, not retrained, so a rerun only fills what is
//! missing), with `TrainConfig.seed = k`; the data and its seed stay the same for all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hint_model::flops::{inference_flops, Workload};

use crate::atomic::write_atomically;
use crate::error::{io_error, Result, TrainError};
use crate::eval::{average, EvalTask};
use crate::report::{
    write_report, ArmRun, ArmSummary, Breakdown, ExperimentReport, SetWorkload, Spread, TaskScores,
};
use crate::run::train_and_evaluate;
use crate::settings::{load_config, ExperimentConfig, RunSettings};
use crate::trainer::{TrainHooks, TrainOutcome};

/// What `hint experiment run` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ExperimentOptions {
    /// The suite file.
    pub suite: PathBuf,
    /// Search paths for includes (default: the suite's folder and its parent).
    pub search_paths: Vec<PathBuf>,
    /// Bindings applied after the suite and arm files.
    pub bindings: Vec<String>,
    /// Only these arms (default: the suite's).
    pub arms: Option<Vec<String>>,
    /// Seeds per arm (default: the suite's).
    pub seeds: Option<usize>,
}

/// Progress of an experiment.
#[derive(Debug, Clone)]
pub enum ExperimentEvent {
    /// An arm's seed starts (or resumes).
    Start {
        /// The arm.
        arm: String,
        /// The seed.
        seed: usize,
        /// Its model directory.
        model_dir: PathBuf,
    },
    /// It finished.
    Done(Box<ArmRun>),
}

/// The settings of the suite, without an arm.
pub fn experiment_config(options: &ExperimentOptions) -> Result<ExperimentConfig> {
    let config = load_config(
        std::slice::from_ref(&options.suite),
        &options.bindings,
        &search_paths(options),
        false,
    )?;
    let mut experiment: ExperimentConfig = config.get("hint.experiment.Experiment", "")?;
    if let Some(arms) = &options.arms {
        experiment.arms = arms.clone();
    }
    if let Some(seeds) = options.seeds {
        experiment.seeds = seeds;
    }
    if experiment.arms.is_empty() || experiment.seeds == 0 {
        return Err(crate::settings::invalid_binding(
            &config,
            "hint.experiment.Experiment",
            if experiment.arms.is_empty() {
                "arms"
            } else {
                "seeds"
            },
            format!(
                "{}: an experiment needs `arms` and at least one seed",
                options.suite.display()
            ),
        ));
    }
    if experiment.output_dir.is_empty() {
        return Err(TrainError::invalid(
            "hint.experiment.Experiment.output_dir",
            format!(
                "{}: bind it to the folder for the results",
                options.suite.display()
            ),
        ));
    }
    Ok(experiment)
}

impl ExperimentOptions {
    /// The search paths in effect: the given ones, or the suite's folder and its parent
    /// (so that `configs/experiments/x.gin` finds `models/…` and `hint/…`).
    pub fn effective_search_paths(&self) -> Vec<PathBuf> {
        search_paths(self)
    }
}

fn search_paths(options: &ExperimentOptions) -> Vec<PathBuf> {
    if !options.search_paths.is_empty() {
        return options.search_paths.clone();
    }
    let dir = options
        .suite
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut paths = vec![dir.clone()];
    if let Some(parent) = dir.parent() {
        paths.push(parent.to_path_buf());
    }
    paths
}

/// The file of arm `name`: `arms/<name>.gin` beside the suite.
pub fn arm_file(suite: &Path, name: &str) -> Result<PathBuf> {
    let path = suite
        .parent()
        .unwrap_or(Path::new(""))
        .join("arms")
        .join(format!("{name}.gin"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(TrainError::invalid(
            "hint.experiment.Experiment.arms",
            format!(
                "arm `{name}`: no file {} (arms are gin files in arms/ beside the suite)",
                path.display()
            ),
        ))
    }
}

/// Draws an experiment's charts into its output folder (e.g.
/// [`crate::plot::plot_experiment`]); returns the files written.
pub type DrawReport<'a> = &'a dyn Fn(&Path, &ExperimentReport) -> Result<Vec<PathBuf>>;

/// Runs every arm and seed (resuming finished or interrupted ones), writes
/// `results.json` and `results.md` into the output folder and lets `draw` add the charts.
/// Returns `None` when `hooks` stopped a run (its checkpoint is saved; run again to go on).
pub fn run_experiment(
    options: &ExperimentOptions,
    hooks: &mut dyn TrainHooks,
    progress: &mut dyn FnMut(ExperimentEvent),
    draw: DrawReport<'_>,
) -> Result<Option<ExperimentReport>> {
    let experiment = experiment_config(options)?;
    let output = PathBuf::from(&experiment.output_dir);
    std::fs::create_dir_all(&output).map_err(io_error(&output))?;
    let mut runs = Vec::new();
    let mut sets = Vec::new();
    for arm in &experiment.arms {
        let arm_path = arm_file(&options.suite, arm)?;
        for seed in 0..experiment.seeds {
            let model_dir = output.join(arm).join(format!("seed{seed}"));
            progress(ExperimentEvent::Start {
                arm: arm.clone(),
                seed,
                model_dir: model_dir.clone(),
            });
            let mut bindings = options.bindings.clone();
            bindings.push(format!(
                "hint.train.Run.model_dir = {:?}",
                model_dir.display().to_string()
            ));
            bindings.push(format!("hint.train.TrainConfig.seed = {seed}"));
            let config = load_config(
                &[options.suite.clone(), arm_path.clone()],
                &bindings,
                &search_paths(options),
                false,
            )?;
            let settings = RunSettings::from_config(&config)?;
            let summary = train_and_evaluate(&settings, hooks)?;
            if matches!(summary.outcome, TrainOutcome::Interrupted { .. }) {
                return Ok(None);
            }
            let train_seconds = recorded_train_seconds(&model_dir, summary.train_seconds)?;
            let workloads: BTreeMap<String, SetWorkload> = summary
                .eval_sets
                .iter()
                .map(|(label, tasks)| {
                    let count =
                        |text: &str| summary.vocabulary.encode(text).map_or(1, |ids| ids.len());
                    (label.clone(), workload(tasks, count))
                })
                .collect();
            let mut scores = BTreeMap::new();
            let mut task_scores = BTreeMap::new();
            let (mut seconds, mut instances) = (0.0, 0usize);
            for (label, tasks) in &summary.results {
                scores.insert(label.clone(), average(tasks));
                task_scores.insert(
                    label.clone(),
                    tasks
                        .iter()
                        .map(|t| TaskScores {
                            task: t.task.clone(),
                            category: t.category.clone(),
                            scores: t.scores.clone(),
                        })
                        .collect(),
                );
                seconds += tasks.iter().map(|t| t.seconds).sum::<f64>();
                instances += tasks.iter().map(|t| t.examples).sum::<usize>();
                if !sets.contains(label) {
                    sets.push(label.clone());
                }
            }
            let run = ArmRun {
                arm: arm.clone(),
                seed,
                scores,
                tasks: task_scores,
                flops_per_instance: flops_per_instance(&settings, &workloads),
                workloads,
                inference_seconds_per_instance: seconds / instances.max(1) as f64,
                train_seconds,
            };
            progress(ExperimentEvent::Done(Box::new(run.clone())));
            runs.push(run);
        }
    }
    let report = ExperimentReport {
        name: experiment.name.clone(),
        sets,
        arms: summarise(&experiment.arms, &runs),
        runs,
    };
    write_report(&output, &report)?;
    draw(&output, &report)?;
    Ok(Some(report))
}

/// The training time of a finished run: measured now, or recorded when it trained (a
/// rerun of a finished run trains 0 steps).
fn recorded_train_seconds(model_dir: &Path, measured: f64) -> Result<f64> {
    let path = model_dir.join("experiment_timing.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(seconds) = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["train_seconds"].as_f64())
        {
            return Ok(seconds);
        }
    }
    let text = serde_json::json!({ "train_seconds": measured }).to_string();
    write_atomically(&path, text.as_bytes())?;
    Ok(measured)
}

fn workload(tasks: &[EvalTask], count: impl Fn(&str) -> usize) -> SetWorkload {
    let instances: usize = tasks.iter().map(|t| t.examples.len()).sum();
    let n = instances.max(1) as f64;
    let mut instruction = 0.0;
    let mut input = 0.0;
    let mut output = 0.0;
    for task in tasks {
        for example in &task.examples {
            instruction += task.instruction.len() as f64;
            input += example.input.len() as f64;
            output += example.references.first().map_or(1, |r| count(r)) as f64;
        }
    }
    SetWorkload {
        instances,
        tasks: tasks.len(),
        instruction_len: instruction / n,
        input_len: input / n,
        output_len: output / n,
    }
}

/// FLOPs per instance of the arm's model over the sets (instance-weighted): the amortised
/// cost of what the arm runs — its own switches (no instruction, fusion only, hypernetwork,
/// plain T5 over the concatenated input…) and the per-task part shared by the set's
/// instances per task.
pub fn flops_per_instance(
    settings: &RunSettings,
    workloads: &BTreeMap<String, SetWorkload>,
) -> f64 {
    let (mut total, mut instances) = (0.0, 0usize);
    for w in workloads.values() {
        let per_task = (w.instances as f64 / w.tasks.max(1) as f64)
            .round()
            .max(1.0) as i64;
        let workload = Workload {
            instruction_len: w.instruction_len.round() as i64,
            input_len: w.input_len.round() as i64,
            output_len: w.output_len.round().max(1.0) as i64,
            instances_per_task: per_task,
        };
        // The arm's own switches: in concatenation mode they are plain T5's and the
        // instruction is part of the input (instruction_len is 0).
        let flops = inference_flops(&settings.t5, &settings.hyper, &workload).hint_amortised;
        total += flops * w.instances as f64;
        instances += w.instances;
    }
    total / instances.max(1) as f64
}

/// Per category (the mean over its tasks), then per task, of one set over an arm's seeds;
/// `None` when the set's tasks have no categories.
fn breakdown(runs: &[&ArmRun], label: &str) -> Option<Vec<Breakdown>> {
    let tasks_of = |run: &ArmRun| run.tasks.get(label).cloned().unwrap_or_default();
    let first = tasks_of(runs.first()?);
    if first.iter().all(|t| t.category.is_none()) {
        return None;
    }
    let category = |t: &TaskScores| t.category.clone().unwrap_or_else(|| "(none)".into());
    // name → tasks it averages, in order: categories first, then `<category> / <task>`.
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for task in &first {
        rows.entry(category(task))
            .or_default()
            .push(task.task.clone());
    }
    let per_task: Vec<(String, Vec<String>)> = first
        .iter()
        .map(|t| {
            (
                format!("{} / {}", category(t), t.task),
                vec![t.task.clone()],
            )
        })
        .collect();
    let metrics: BTreeSet<String> = first
        .iter()
        .flat_map(|t| t.scores.keys().cloned())
        .collect();
    let row = |name: String, members: &[String]| {
        let scores = metrics
            .iter()
            .map(|metric| {
                let per_seed: Vec<f64> = runs
                    .iter()
                    .filter_map(|run| {
                        let values: Vec<f64> = tasks_of(run)
                            .iter()
                            .filter(|t| members.contains(&t.task))
                            .filter_map(|t| t.scores.get(metric).copied())
                            .collect();
                        (!values.is_empty())
                            .then(|| values.iter().sum::<f64>() / values.len() as f64)
                    })
                    .collect();
                (metric.clone(), Spread::of(&per_seed))
            })
            .collect();
        Breakdown {
            name,
            tasks: members.len(),
            scores,
        }
    };
    let mut out: Vec<Breakdown> = rows.into_iter().map(|(n, m)| row(n, &m)).collect();
    let mut tasks: Vec<Breakdown> = per_task.into_iter().map(|(n, m)| row(n, &m)).collect();
    tasks.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(tasks);
    Some(out)
}

fn summarise(arms: &[String], runs: &[ArmRun]) -> Vec<ArmSummary> {
    arms.iter()
        .filter_map(|arm| {
            let mine: Vec<&ArmRun> = runs.iter().filter(|r| &r.arm == arm).collect();
            let first = mine.first()?;
            let mut scores: BTreeMap<String, BTreeMap<String, Spread>> = BTreeMap::new();
            for (label, metrics) in &first.scores {
                for metric in metrics.keys() {
                    let values: Vec<f64> = mine
                        .iter()
                        .filter_map(|r| r.scores.get(label)?.get(metric).copied())
                        .collect();
                    scores
                        .entry(label.clone())
                        .or_default()
                        .insert(metric.clone(), Spread::of(&values));
                }
            }
            let breakdown = first
                .tasks
                .keys()
                .filter_map(|label| Some((label.clone(), breakdown(&mine, label)?)))
                .collect();
            let times: Vec<f64> = mine
                .iter()
                .map(|r| 1000.0 * r.inference_seconds_per_instance)
                .collect();
            let train: Vec<f64> = mine.iter().map(|r| r.train_seconds).collect();
            Some(ArmSummary {
                arm: arm.clone(),
                seeds: mine.len(),
                scores,
                breakdown,
                flops_per_instance: first.flops_per_instance,
                inference_ms_per_instance: Spread::of(&times),
                train_seconds: Spread::of(&train),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: usize, scores: &[(&str, &str, f64)]) -> ArmRun {
        let tasks = scores
            .iter()
            .map(|(task, category, em)| TaskScores {
                task: task.to_string(),
                category: Some(category.to_string()),
                scores: BTreeMap::from([("exact_match".to_string(), *em)]),
            })
            .collect();
        ArmRun {
            arm: "hint".into(),
            seed,
            scores: BTreeMap::new(),
            tasks: BTreeMap::from([("unseen".to_string(), tasks)]),
            workloads: BTreeMap::new(),
            flops_per_instance: 1.0,
            inference_seconds_per_instance: 0.0,
            train_seconds: 0.0,
        }
    }

    #[test]
    fn categories_average_their_tasks_per_seed_then_spread_over_seeds() {
        let runs = [
            run(
                0,
                &[("a", "Cls", 10.0), ("b", "Cls", 30.0), ("c", "Gen", 5.0)],
            ),
            run(
                1,
                &[("a", "Cls", 20.0), ("b", "Cls", 40.0), ("c", "Gen", 7.0)],
            ),
        ];
        let refs: Vec<&ArmRun> = runs.iter().collect();
        let rows = breakdown(&refs, "unseen").unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["Cls", "Gen", "Cls / a", "Cls / b", "Gen / c"]);
        let cls = &rows[0].scores["exact_match"];
        // Seed means 20 and 30.
        assert_eq!((rows[0].tasks, cls.mean), (2, 25.0));
        assert!((cls.sd - 50f64.sqrt()).abs() < 1e-12);
        assert_eq!(rows[4].scores["exact_match"].mean, 6.0);

        let report = ExperimentReport {
            name: "x".into(),
            sets: vec!["unseen".into()],
            arms: summarise(&["hint".to_string()], &runs),
            runs: runs.to_vec(),
        };
        let table = crate::report::markdown(&report);
        assert!(
            table.contains("### unseen: per category and per task"),
            "{table}"
        );
        assert!(table.contains("| Cls | 2 | 25.0 ± 7.1 / – |"), "{table}");
    }

    #[test]
    fn sets_without_categories_have_no_breakdown() {
        let mut plain = run(0, &[("a", "Cls", 10.0)]);
        for task in plain.tasks.get_mut("unseen").unwrap() {
            task.category = None;
        }
        assert!(breakdown(&[&plain], "unseen").is_none());
    }
}
