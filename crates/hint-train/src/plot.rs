//! `hint plot`: PNG curves of a run's `metrics.jsonl` (loss per target token, and every
//! evaluation metric), drawn with plotters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Result, TrainError};
use crate::metrics_log::{read_metrics, MetricsLine};

/// One named series of `(x, y)` points.
pub type Series = (String, Vec<(f64, f64)>);

fn plot_error(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Draws line series on one chart and writes it as PNG: drawn under a temporary name
/// (`.tmp-<name>.png`: plotters takes the format from the extension, and hint-fs knows the
/// `.tmp-` prefix as a leftover) and renamed, so a reader never sees half an image.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".tmp-{name}"));
    let drawn = draw_chart(&tmp, title, x_label, y_label, series).map_err(|e| match e {
        TrainError::Plot { message, .. } => plot_error(path, message),
        other => other,
    });
    if let Err(err) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    std::fs::rename(&tmp, path).map_err(crate::error::io_error(path))
}

fn draw_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let points: Vec<(f64, f64)> = series.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    if points.is_empty() {
        return Err(TrainError::Plot {
            path: path.to_path_buf(),
            message: "nothing to plot".into(),
        });
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in &points {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| plot_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| plot_error(path, e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| plot_error(path, e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    root.present().map_err(|e| plot_error(path, e))
}

/// Writes `loss.png` and, when the run evaluated, `eval.png` into the model directory;
/// returns the files written.
pub fn plot_run(model_dir: &Path) -> Result<Vec<PathBuf>> {
    let lines = read_metrics(&model_dir.join("metrics.jsonl"))?;
    let mut loss = Vec::new();
    let mut evals: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in lines {
        match line {
            MetricsLine::Train(m) => loss.push((m.step as f64, m.loss_per_token)),
            MetricsLine::Eval { step, eval } => {
                for (name, value) in eval {
                    evals.entry(name).or_default().push((step as f64, value));
                }
            }
            MetricsLine::Memory { .. } => {}
        }
    }
    let mut written = Vec::new();
    let loss_path = model_dir.join("loss.png");
    line_chart(
        &loss_path,
        "training loss",
        "step",
        "loss per target token",
        &[("loss".into(), loss)],
    )?;
    written.push(loss_path);
    if !evals.is_empty() {
        let eval_path = model_dir.join("eval.png");
        let series: Vec<Series> = evals.into_iter().collect();
        line_chart(&eval_path, "evaluation", "step", "score", &series)?;
        written.push(eval_path);
    }
    Ok(written)
}

/// Writes `score_vs_flops_<set>_<metric>.png` for every evaluation set and metric of an
/// experiment: one point per arm (mean over seeds) at its inference MFLOPs per instance.
pub fn plot_experiment(
    output: &Path,
    report: &crate::report::ExperimentReport,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for set in &report.sets {
        for (metric, label) in [("exact_match", "exact match"), ("rouge_l", "ROUGE-L")] {
            let series: Vec<Series> = report
                .arms
                .iter()
                .filter_map(|arm| {
                    let score = arm.scores.get(set)?.get(metric)?;
                    Some((
                        arm.arm.clone(),
                        vec![(arm.flops_per_instance / 1e6, score.mean)],
                    ))
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let safe: String = set
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let path = output.join(format!("score_vs_flops_{safe}_{metric}.png"));
            line_chart(
                &path,
                &format!("{}: {set}", report.name),
                "inference MFLOPs per instance",
                label,
                &series,
            )?;
            written.push(path);
        }
    }
    Ok(written)
}
