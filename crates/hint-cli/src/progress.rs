//! What every long command shows and how it stops: SIGINT/SIGTERM set a flag that the
//! training loop and evaluation read between batches, and progress goes to a bar on a
//! terminal or to a few log lines (with ETA) elsewhere.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hint_train::eval::{EvalMonitor, EvalProgress};
use indicatif::{ProgressBar, ProgressStyle};

/// Set by SIGINT or SIGTERM; read by the loop and evaluation between two batches.
#[derive(Debug, Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Installs the handlers. A second signal while stopping exits at once (a user who
    /// presses Ctrl-C twice means it), with the conventional code.
    pub fn install() -> Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it runs on the second signal only, while `flag` is set.
            signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))
                .context("installing the signal handler")?;
            signal_hook::flag::register(signal, Arc::clone(&flag))
                .context("installing the signal handler")?;
        }
        Ok(Self(flag))
    }

    /// Whether a signal came.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Whether progress goes to a bar: stderr is a terminal, or `HINT_PROGRESS=bar` asks.
pub fn bar_wanted() -> bool {
    match std::env::var("HINT_PROGRESS").as_deref() {
        Ok("bar") => true,
        Ok("log") => false,
        _ => std::io::stderr().is_terminal(),
    }
}

/// A bar with a position, a rate and an ETA.
pub fn bar(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Seconds left at the rate so far, as `1m 05s`.
pub fn eta(started: Instant, done: u64, total: u64) -> String {
    if done == 0 {
        return "?".into();
    }
    let per_unit = started.elapsed().as_secs_f64() / done as f64;
    let left = Duration::from_secs((per_unit * total.saturating_sub(done) as f64).round() as u64);
    humantime::format_duration(left).to_string()
}

/// Evaluation progress: per set, a bar of its instances, or a log line at each quarter.
pub struct EvalDisplay {
    stop: StopFlag,
    use_bar: bool,
    current: Option<(String, ProgressBar, Instant, usize)>,
}

impl EvalDisplay {
    /// A display stopping when `stop` is set.
    pub fn new(stop: StopFlag, use_bar: bool) -> Self {
        Self {
            stop,
            use_bar,
            current: None,
        }
    }

    /// Clears the bar.
    pub fn finish(&mut self) {
        if let Some((_, bar, _, _)) = self.current.take() {
            bar.finish_and_clear();
        }
    }
}

impl EvalMonitor for EvalDisplay {
    fn on_eval_progress(&mut self, p: &EvalProgress<'_>) {
        if self.current.as_ref().is_none_or(|(set, ..)| set != p.set) {
            self.finish();
            let bar = if self.use_bar {
                let bar = bar(p.total as u64, "instances");
                bar.set_prefix(p.set.to_string());
                bar
            } else {
                tracing::info!("evaluating `{}`: {} instances", p.set, p.total);
                ProgressBar::hidden()
            };
            self.current = Some((p.set.to_string(), bar, Instant::now(), 0));
        }
        let Some((_, bar, started, logged_quarter)) = self.current.as_mut() else {
            return;
        };
        if self.use_bar {
            bar.set_position(p.done as u64);
            bar.set_message(format!("{} · {}", p.set, p.task));
            return;
        }
        let quarter = 4 * p.done / p.total.max(1);
        if quarter > *logged_quarter {
            *logged_quarter = quarter;
            tracing::info!(
                set = p.set,
                task = p.task,
                done = p.done,
                total = p.total,
                eta = eta(*started, p.done as u64, p.total as u64),
                "evaluation"
            );
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.is_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_extrapolates_the_rate_so_far() {
        let started = Instant::now() - Duration::from_secs(10);
        assert_eq!(eta(started, 0, 4), "?");
        assert_eq!(eta(started, 1, 4), "30s");
        assert_eq!(eta(started, 4, 4), "0s");
    }
}
