//! Training batches of a run: hint-data's [`BatchIterator`] through HINT's feature
//! converter, as tensors on the run's device — the [`BatchSource`] the loop reads.

use std::sync::Arc;

use hint_data::cache::CachedSource;
use hint_data::{
    BatchFeature, BatchIterator, DatasetConfig, HintBatch, HintConverter, IteratorState,
    TaskRegistry,
};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TrainError};
use crate::settings::RunSettings;
use crate::trainer::{BatchSource, TrainBatch};

/// The converter of a run: its lengths and instruction mode. Evaluation and inference use
/// the same one ([`HintConverter::model_inputs`]).
pub fn converter(settings: &RunSettings) -> HintConverter {
    HintConverter::with_lengths(settings.run.lengths).mode(settings.run.instruction_mode)
}

/// A `[rows, length]` feature as a tensor of `kind` on `device`.
pub fn feature_tensor(feature: &BatchFeature, kind: Kind, device: Device) -> Tensor {
    Tensor::from_slice(&feature.data)
        .view([feature.shape[0] as i64, feature.shape[1] as i64])
        .to_kind(kind)
        .to_device(device)
}

/// Each row's task as the index of its name among the batch's distinct names.
fn task_ids(tasks: &[String], device: Device) -> Tensor {
    let mut seen: Vec<&String> = Vec::new();
    let ids: Vec<i64> = tasks
        .iter()
        .map(|task| match seen.iter().position(|s| *s == task) {
            Some(i) => i as i64,
            None => {
                seen.push(task);
                (seen.len() - 1) as i64
            }
        })
        .collect();
    Tensor::from_slice(&ids).to_device(device)
}

impl TrainBatch {
    /// HINT's features as tensors on `device` (loss weights as f32).
    pub fn from_features(batch: &HintBatch, device: Device) -> Self {
        let ids = |f: &BatchFeature| feature_tensor(f, Kind::Int64, device);
        Self {
            inputs: ids(&batch.encoder_input_tokens),
            hyper_inputs: ids(&batch.hyper_encoder_input_tokens),
            decoder_inputs: ids(&batch.decoder_input_tokens),
            targets: ids(&batch.decoder_target_tokens),
            loss_weights: feature_tensor(&batch.decoder_loss_weights, Kind::Float, device),
            task_ids: task_ids(&batch.tasks, device),
        }
    }
}

/// The training batches of a run's mixture, with a checkpointable position.
pub struct TaskBatches<'a> {
    registry: &'a TaskRegistry,
    mixture: String,
    config: DatasetConfig,
    converter: Arc<HintConverter>,
    iterator: BatchIterator,
    device: Device,
}

impl<'a> TaskBatches<'a> {
    /// Batches of the run's training mixture, shuffled with `seed`, read from the caches
    /// when the run says `use_cached`.
    pub fn new(registry: &'a TaskRegistry, settings: &RunSettings, seed: u64) -> Result<Self> {
        let config = DatasetConfig {
            seed,
            batch_size: settings.run.batch_size,
            use_cached: settings.run.use_cached,
            cache_dirs: settings.run.cache_dirs(),
            ..DatasetConfig::default()
        };
        let converter = Arc::new(converter(settings));
        let mixture = settings.run.mixture.clone();
        if config.use_cached {
            // The iterator opens its tasks lazily; a stale cache must stop the run before
            // it writes anything, not at its first step.
            for (task, _) in registry.resolve(&mixture, &config.split, &config.cache_dirs)? {
                CachedSource::find(task.name(), &config.cache_dirs, task.cache_signature())?
                    .checked_info(&config.split)?;
            }
        }
        let iterator = BatchIterator::new(registry, &mixture, config.clone(), converter.clone())?;
        Ok(Self {
            registry,
            mixture,
            config,
            converter,
            iterator,
            device: settings.device,
        })
    }
}

impl BatchSource for TaskBatches<'_> {
    fn next_batch(&mut self) -> Result<TrainBatch> {
        let batch = self
            .iterator
            .next()
            .transpose()?
            .ok_or_else(|| TrainError::OutOfData {
                mixture: self.mixture.clone(),
            })?;
        Ok(TrainBatch::from_features(
            &HintBatch::try_from(batch)?,
            self.device,
        ))
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.iterator.state()).unwrap_or_default()
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let state: IteratorState = serde_json::from_value(state.clone())
            .map_err(|e| hint_data::DataError::State(e.to_string()))?;
        self.iterator = BatchIterator::restore(
            self.registry,
            &self.mixture,
            self.config.clone(),
            self.converter.clone(),
            &state,
        )?;
        Ok(())
    }
}
