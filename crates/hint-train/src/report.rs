//! The results of an experiment (`results.json`, `results.md`): every arm and seed, and
//! per arm the mean and spread over seeds. Written by [`crate::experiment`], drawn by
//! [`crate::plot`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomically;
use crate::error::{io_error, Result, TrainError};

/// The lengths an evaluation set averages, for the FLOPs function.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SetWorkload {
    /// Instances evaluated.
    pub instances: usize,
    /// Tasks (distinct instructions).
    pub tasks: usize,
    /// Mean instruction tokens (0 in concatenation mode: the instruction is in the input).
    pub instruction_len: f64,
    /// Mean encoder input tokens.
    pub input_len: f64,
    /// Mean reference tokens (with EOS): the decoding steps counted.
    pub output_len: f64,
}

/// The scores of one evaluated task of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScores {
    /// The task.
    pub task: String,
    /// Its category, when the suite has them (Super-NI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Score per metric.
    pub scores: BTreeMap<String, f64>,
}

/// One arm trained with one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmRun {
    /// The arm.
    pub arm: String,
    /// The seed.
    pub seed: usize,
    /// Mean scores per evaluation set label and metric.
    pub scores: BTreeMap<String, BTreeMap<String, f64>>,
    /// Per evaluation set label: each task's scores.
    #[serde(default)]
    pub tasks: BTreeMap<String, Vec<TaskScores>>,
    /// Per evaluation set: its workload.
    pub workloads: BTreeMap<String, SetWorkload>,
    /// Forward FLOPs per evaluated instance (the per-task part shared by the set's
    /// instances per task), instance-weighted over the sets.
    pub flops_per_instance: f64,
    /// Measured evaluation time per instance (generation and scoring), seconds.
    pub inference_seconds_per_instance: f64,
    /// Training time, seconds.
    pub train_seconds: f64,
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation (0 with one value).
    pub sd: f64,
}

impl Spread {
    /// Of `values` (empty: NaN).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self { mean, sd }
    }
}

/// One arm over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    /// The arm.
    pub arm: String,
    /// Seeds run.
    pub seeds: usize,
    /// Per evaluation set label and metric.
    pub scores: BTreeMap<String, BTreeMap<String, Spread>>,
    /// Per evaluation set label whose tasks have categories (Super-NI): per category, then
    /// per task (`<category> / <task>`), the metrics over seeds — a category's score is the
    /// mean over its tasks (Super-NI averages over instances, the same with its equal
    /// instances per task).
    #[serde(default)]
    pub breakdown: BTreeMap<String, Vec<Breakdown>>,
    /// FLOPs per instance (the same for every seed).
    pub flops_per_instance: f64,
    /// Inference time per instance, milliseconds.
    pub inference_ms_per_instance: Spread,
    /// Training time, seconds.
    pub train_seconds: Spread,
}

/// One row of a per-category or per-task breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The category, or `<category> / <task>`.
    pub name: String,
    /// Tasks it averages.
    pub tasks: usize,
    /// Per metric, over seeds.
    pub scores: BTreeMap<String, Spread>,
}

/// The experiment's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    /// The experiment's name.
    pub name: String,
    /// Evaluation set labels, in order.
    pub sets: Vec<String>,
    /// Per arm.
    pub arms: Vec<ArmSummary>,
    /// Every run.
    pub runs: Vec<ArmRun>,
}

/// The report as a Markdown table: per arm, exact match and ROUGE-L of each set (mean ±
/// sample sd over seeds), MFLOPs per instance, inference ms per instance, training seconds.
pub fn markdown(report: &ExperimentReport) -> String {
    let mut header = vec!["arm".to_string(), "seeds".to_string()];
    for set in &report.sets {
        header.push(format!("{set} EM"));
        header.push(format!("{set} ROUGE-L"));
    }
    header.extend([
        "MFLOPs / instance".to_string(),
        "inference ms / instance".to_string(),
        "training s".to_string(),
    ]);
    let mut out = format!(
        "## {}\n\n| {} |\n|{}\n",
        report.name,
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for arm in &report.arms {
        let mut row = vec![arm.arm.clone(), arm.seeds.to_string()];
        for set in &report.sets {
            for metric in ["exact_match", "rouge_l"] {
                row.push(
                    arm.scores
                        .get(set)
                        .and_then(|m| m.get(metric))
                        .map_or("–".into(), |s| format!("{:.1} ± {:.1}", s.mean, s.sd)),
                );
            }
        }
        row.push(format!("{:.2}", arm.flops_per_instance / 1e6));
        row.push(format!(
            "{:.2} ± {:.2}",
            arm.inference_ms_per_instance.mean, arm.inference_ms_per_instance.sd
        ));
        row.push(format!(
            "{:.0} ± {:.0}",
            arm.train_seconds.mean, arm.train_seconds.sd
        ));
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    for set in &report.sets {
        out.push_str(&breakdown_table(report, set));
    }
    out
}

/// Per category, then per task, of one set: exact match / ROUGE-L per arm (mean ± sd over
/// seeds). Empty when the set's tasks have no categories.
fn breakdown_table(report: &ExperimentReport, set: &str) -> String {
    let Some(first) = report.arms.iter().find_map(|a| a.breakdown.get(set)) else {
        return String::new();
    };
    let arms: Vec<&ArmSummary> = report.arms.iter().collect();
    let mut out = format!(
        "\n### {set}: per category and per task (exact match / ROUGE-L)\n\n| category / task | tasks | {} |\n|---|---|{}\n",
        arms.iter().map(|a| a.arm.as_str()).collect::<Vec<_>>().join(" | "),
        "---|".repeat(arms.len())
    );
    for row in first {
        let mut cells = vec![row.name.clone(), row.tasks.to_string()];
        for arm in &arms {
            let found = arm
                .breakdown
                .get(set)
                .and_then(|rows| rows.iter().find(|r| r.name == row.name));
            let cell = |metric: &str| {
                found
                    .and_then(|r| r.scores.get(metric))
                    .map_or("–".into(), |s| format!("{:.1} ± {:.1}", s.mean, s.sd))
            };
            cells.push(format!("{} / {}", cell("exact_match"), cell("rouge_l")));
        }
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Writes `results.json` and `results.md` (atomically); returns their paths.
pub fn write_report(output: &Path, report: &ExperimentReport) -> Result<Vec<PathBuf>> {
    let json = output.join("results.json");
    write_atomically(
        &json,
        serde_json::to_string_pretty(report)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let md = output.join("results.md");
    write_atomically(&md, markdown(report).as_bytes())?;
    Ok(vec![json, md])
}

/// Reads `results.json` of an experiment folder.
pub fn read_report(output: &Path) -> Result<ExperimentReport> {
    let path = output.join("results.json");
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Malformed {
        path,
        message: format!("not an experiment's results: {e}"),
    })
}
