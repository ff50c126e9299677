//! The model of a run: a [`HyperT5`] built from the settings on the run's device, started
//! from a Hugging Face T5 when the run names one.

use std::path::Path;

use hint_model::{HyperT5, T5Config};
use tch::nn::VarStore;

use crate::error::{Result, TrainError};
use crate::settings::RunSettings;
use crate::trainer::ComputeDtype;
use hint_data::RunData;

/// The model's embedding must cover every id the tokenizer produces.
pub fn check_vocabulary(data: &RunData, t5: &T5Config) -> Result<()> {
    let size = data.vocabulary.vocab_size() as i64;
    if size > t5.vocab_size {
        return Err(TrainError::invalid(
            "hint.model.T5Config.vocab_size",
            format!(
                "the tokenizer has {size} ids but the model's vocab_size is {}: bind vocab_size \
                 to at least {size}",
                t5.vocab_size
            ),
        ));
    }
    Ok(())
}

/// Builds the model and its variables on the run's device, seeded with the run's seed;
/// with `Run.initial_checkpoint`, the T5 weights come from that Hugging Face directory and
/// the hypernetwork starts fresh — or, with `Run.assignment_map`, each variable reads what
/// the map says.
pub fn build_model(settings: &RunSettings) -> Result<(VarStore, HyperT5)> {
    tch::manual_seed(settings.train.seed);
    let mut vs = VarStore::new(settings.device);
    let mut model = HyperT5::new(vs.root(), &settings.t5, &settings.hyper);
    model
        .t5
        .set_compute_kind(settings.train.compute_dtype.kind());
    model.set_remat_policy(settings.train.remat_policy);
    let checkpoint = Path::new(&settings.run.initial_checkpoint);
    if settings.run.initial_checkpoint.is_empty() {
        // Random initialisation (an assignment map without a checkpoint is refused when
        // the settings are read).
    } else if settings.run.assignment_map.is_empty() {
        // A Hugging Face T5 with a fresh hypernetwork.
        hint_model::load_t5_weights(&vs, checkpoint)?;
    } else {
        let map = hint_model::AssignmentMap::with_naming(
            &settings.run.assignment_map,
            settings.run.assignment_map_naming,
        )?;
        let report = hint_model::load_weights_mapped(
            &vs,
            checkpoint,
            &map,
            settings.run.fallback_to_scratch,
        )?;
        let renamed = report.loaded.iter().filter(|(t, s)| t != s).count();
        tracing::info!(
            "{}: {} variables read ({renamed} under another name), {} kept fresh by the assignment map, {} missing from the checkpoint and kept fresh (fallback_to_scratch), {} checkpoint tensors unused",
            checkpoint.display(),
            report.loaded.len(),
            report.skipped.len(),
            report.kept_fresh.len(),
            report.unused.len()
        );
        if !report.kept_fresh.is_empty() {
            tracing::warn!(
                "kept fresh because {} lacks them: {}",
                checkpoint.display(),
                report
                    .kept_fresh
                    .iter()
                    .map(|(t, s)| format!("{t} (from {s})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    // Initialised (and loaded) in f32, then rounded once: the same starting point as an
    // f32 run, to bf16 precision.
    if settings.train.param_dtype == ComputeDtype::Bfloat16 {
        vs.bfloat16();
    }
    Ok((vs, model))
}
