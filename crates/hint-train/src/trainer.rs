//! The training loop (t5x's `train`): microbatched gradient accumulation, the dual
//! Adafactor, periodic checkpoints and evaluation, NaN detection, clean interruption, and
//! exact resume.
//!
//! Exactness: every step reseeds libtorch's generator from `(seed, step)`, so dropout
//! masks depend only on the step; the data source's state, the optimizer state and the
//! parameters are checkpointed. A run stopped and resumed therefore produces the same
//! losses, step for step, as an uninterrupted one.

use std::collections::BTreeMap;
use std::time::Instant;

use hint_model::{cross_entropy, HyperT5, LossConfig};
use hint_optim::Adafactor;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::checkpoint::{CheckpointInfo, CheckpointManager, TrainState};
use crate::error::{Result, TrainError};
use crate::eval::EvalMonitor;
use crate::metrics_log::{truncate_after, MetricsLine, MetricsWriter, StepMetrics};
use crate::model_dir::ModelDir;

/// Settings of the loop, bindable from gin (`TrainConfig.steps = 600`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Global steps to reach (counted from the start of the run).
    pub steps: u64,
    /// Each batch is split into this many microbatches whose gradients are summed.
    pub microbatches: usize,
    /// Save a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Checkpoints to keep.
    pub keep_checkpoints: usize,
    /// Evaluate every this many steps (0: only at the end, by the caller).
    pub eval_every: u64,
    /// Seed of parameter initialisation, data order and dropout.
    pub seed: i64,
    /// `float32` or `bfloat16` activations (parameters stay f32).
    pub compute_dtype: ComputeDtype,
    /// The loss (t5x: summed cross-entropy with z-loss 1e-4).
    pub loss: LossConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            microbatches: 1,
            checkpoint_every: 500,
            keep_checkpoints: 3,
            eval_every: 0,
            seed: 0,
            compute_dtype: ComputeDtype::Float32,
            loss: LossConfig::default(),
        }
    }
}

/// Activation dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDtype {
    /// f32 everywhere.
    Float32,
    /// bf16 activations with f32 master weights.
    Bfloat16,
}

impl ComputeDtype {
    /// The libtorch kind.
    pub fn kind(self) -> Kind {
        match self {
            Self::Float32 => Kind::Float,
            Self::Bfloat16 => Kind::BFloat16,
        }
    }
}

/// One batch of HINT features as tensors (`[B, L]` each; 0 is padding).
#[derive(Debug)]
pub struct TrainBatch {
    /// `encoder_input_tokens`.
    pub inputs: Tensor,
    /// `hyper_encoder_input_tokens`.
    pub hyper_inputs: Tensor,
    /// `decoder_input_tokens` (targets shifted right).
    pub decoder_inputs: Tensor,
    /// `decoder_target_tokens`.
    pub targets: Tensor,
    /// `decoder_loss_weights`.
    pub loss_weights: Tensor,
}

impl TrainBatch {
    fn rows(&self) -> i64 {
        self.inputs.size()[0]
    }

    fn narrow(&self, start: i64, len: i64) -> Self {
        let n = |t: &Tensor| t.narrow(0, start, len);
        Self {
            inputs: n(&self.inputs),
            hyper_inputs: n(&self.hyper_inputs),
            decoder_inputs: n(&self.decoder_inputs),
            targets: n(&self.targets),
            loss_weights: n(&self.loss_weights),
        }
    }

    fn tokens(&self) -> f64 {
        [&self.inputs, &self.hyper_inputs, &self.targets]
            .iter()
            .map(|t| f64::try_from((*t).ne(0).sum(Kind::Float)).unwrap_or(0.0))
            .sum()
    }
}

/// Where training batches come from; its state is checkpointed so that a resumed run
/// sees exactly the batches an uninterrupted one would.
pub trait BatchSource {
    /// The next batch.
    fn next_batch(&mut self) -> Result<TrainBatch>;
    /// A serialisable position in the stream.
    fn state(&self) -> serde_json::Value;
    /// Returns to a position given by [`BatchSource::state`].
    fn restore(&mut self, state: &serde_json::Value) -> Result<()>;
}

/// Callbacks of the loop: progress reporting, interruption and evaluation. Library code
/// reports through these (and `tracing`), never by printing.
///
/// Interruption is [`EvalMonitor::should_stop`], checked before every step and every
/// evaluation batch: `true` saves a checkpoint and stops (SIGINT/SIGTERM), also in the
/// middle of a periodic evaluation.
pub trait TrainHooks: EvalMonitor {
    /// After every step.
    fn on_step(&mut self, _metrics: &StepMetrics) {}
    /// Every `eval_every` steps: scores by `task/metric`.
    fn evaluate(&mut self, _step: u64, _model: &HyperT5) -> Result<BTreeMap<String, f64>> {
        Ok(BTreeMap::new())
    }
    /// After a checkpoint was written.
    fn on_checkpoint(&mut self, _checkpoint: &CheckpointInfo) {}
}

/// Hooks that do nothing.
#[derive(Debug, Default)]
pub struct NoHooks;

impl TrainHooks for NoHooks {}

impl EvalMonitor for NoHooks {}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainOutcome {
    /// All steps done; the final checkpoint is written.
    Finished {
        /// Final step.
        step: u64,
    },
    /// Stopped by [`EvalMonitor::should_stop`] (SIGINT/SIGTERM), also during a periodic
    /// evaluation; a checkpoint of this step is written.
    Interrupted {
        /// Step of the checkpoint.
        step: u64,
    },
}

/// Runs training of one model in one model directory.
pub struct Trainer<'a> {
    model: &'a HyperT5,
    vs: &'a VarStore,
    optimizer: &'a mut Adafactor,
    config: TrainConfig,
    model_dir: ModelDir,
    checkpoints: CheckpointManager,
}

impl<'a> Trainer<'a> {
    /// A trainer writing into `model_dir`.
    pub fn new(
        model: &'a HyperT5,
        vs: &'a VarStore,
        optimizer: &'a mut Adafactor,
        config: TrainConfig,
        model_dir: ModelDir,
    ) -> Self {
        let checkpoints = CheckpointManager::new(model_dir.path(), config.keep_checkpoints);
        Self {
            model,
            vs,
            optimizer,
            config,
            model_dir,
            checkpoints,
        }
    }

    /// The checkpoints of this run.
    pub fn checkpoints(&self) -> &CheckpointManager {
        &self.checkpoints
    }

    /// Restores parameters, optimizer state and data position from the newest checkpoint,
    /// if there is one; returns its step.
    pub fn restore_latest(&mut self, source: &mut dyn BatchSource) -> Result<Option<u64>> {
        let Some((checkpoint, state)) = self.checkpoints.restore_latest(self.vs, self.optimizer)?
        else {
            return Ok(None);
        };
        source.restore(&state.data)?;
        tracing::info!(step = state.step, checkpoint = %checkpoint.path.display(), "resumed");
        Ok(Some(state.step))
    }

    /// Writes a checkpoint of the current step.
    pub fn save_checkpoint(&mut self, source: &dyn BatchSource) -> Result<CheckpointInfo> {
        let state = TrainState {
            step: self.optimizer.global_step(),
            data: source.state(),
            seed: self.config.seed,
        };
        self.checkpoints
            .save_training(self.vs, self.optimizer, &state)
    }

    /// Trains until `config.steps`, resuming from the newest checkpoint if any.
    pub fn train(
        &mut self,
        source: &mut dyn BatchSource,
        hooks: &mut dyn TrainHooks,
    ) -> Result<TrainOutcome> {
        let start = self.restore_latest(source)?.unwrap_or(0);
        self.train_from(start, source, hooks)
    }

    /// Trains from step `start` (what [`Trainer::restore_latest`] returned, or 0) until
    /// `config.steps`: for a caller that must check the checkpoint against the model,
    /// optimizer and data before it writes anything of its own.
    pub fn train_from(
        &mut self,
        start: u64,
        source: &mut dyn BatchSource,
        hooks: &mut dyn TrainHooks,
    ) -> Result<TrainOutcome> {
        let metrics_path = self.model_dir.metrics_path();
        truncate_after(&metrics_path, start)?;
        let mut metrics = MetricsWriter::open(&metrics_path)?
            .with_tensorboard(&self.model_dir.path().join("tensorboard"))?;
        let mut step = start;
        while step < self.config.steps {
            if hooks.should_stop() {
                let checkpoint = self.save_checkpoint(source)?;
                hooks.on_checkpoint(&checkpoint);
                return Ok(TrainOutcome::Interrupted { step });
            }
            let line = self.train_step(step, source)?;
            step = line.step;
            metrics.write(&MetricsLine::Train(line.clone()))?;
            hooks.on_step(&line);
            if self.config.eval_every > 0
                && step % self.config.eval_every == 0
                && step < self.config.steps
            {
                let scores = match tch::no_grad(|| hooks.evaluate(step, self.model)) {
                    Err(TrainError::Interrupted { .. }) => {
                        // The step is trained; only its evaluation is lost.
                        let checkpoint = self.save_checkpoint(source)?;
                        hooks.on_checkpoint(&checkpoint);
                        return Ok(TrainOutcome::Interrupted { step });
                    }
                    scores => scores?,
                };
                if !scores.is_empty() {
                    metrics.write(&MetricsLine::Eval { step, eval: scores })?;
                }
            }
            if step % self.config.checkpoint_every.max(1) == 0 || step == self.config.steps {
                let checkpoint = self.save_checkpoint(source)?;
                hooks.on_checkpoint(&checkpoint);
            }
        }
        Ok(TrainOutcome::Finished { step })
    }

    fn train_step(&mut self, step: u64, source: &mut dyn BatchSource) -> Result<StepMetrics> {
        let started = Instant::now();
        // Dropout masks depend on (seed, step) only: what makes resume exact.
        tch::manual_seed(
            self.config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(step as i64),
        );
        let batch = source.next_batch()?;
        self.optimizer.zero_grad();
        let rows = batch.rows();
        let parts = (self.config.microbatches.max(1) as i64).min(rows.max(1));
        let per_part = (rows + parts - 1) / parts;
        let (mut loss, mut z_loss, mut weight) = (0.0, 0.0, 0.0);
        let mut start = 0;
        while start < rows {
            let len = per_part.min(rows - start);
            let part = batch.narrow(start, len);
            let mask = part.inputs.ne(0).to_kind(Kind::Int64);
            let logits = self.model.forward_batch(
                &part.inputs,
                &mask,
                &part.hyper_inputs,
                &part.decoder_inputs,
                true,
            );
            let part_loss = cross_entropy(
                &logits,
                &part.targets,
                &part.loss_weights,
                &self.config.loss,
            );
            part_loss.total.backward();
            loss += f64::try_from(&part_loss.total).unwrap_or(f64::NAN);
            z_loss += f64::try_from(&part_loss.z_loss).unwrap_or(f64::NAN);
            weight += f64::try_from(&part_loss.weight_sum).unwrap_or(0.0);
            start += len;
        }
        if !loss.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                step: step + 1,
                loss,
            });
        }
        let grad_norm = tch::no_grad(|| {
            self.vs
                .trainable_variables()
                .iter()
                .filter(|v| v.grad().defined())
                .map(|v| f64::try_from(v.grad().square().sum(Kind::Float)).unwrap_or(0.0))
                .sum::<f64>()
                .sqrt()
        });
        let mut learning_rate = BTreeMap::new();
        for group in self.optimizer.groups() {
            if !group.frozen {
                learning_rate.insert(group.name.clone(), group.hparams.learning_rate_at(step)?);
            }
        }
        self.optimizer.step()?;
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        Ok(StepMetrics {
            step: self.optimizer.global_step(),
            loss,
            z_loss,
            loss_per_token: loss / weight.max(1.0),
            learning_rate,
            grad_norm,
            tokens_per_second: batch.tokens() / elapsed,
            examples_per_second: rows as f64 / elapsed,
        })
    }
}
