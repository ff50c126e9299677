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

use hint_dist::{DistError, ProcessGroup, ReduceOp};
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

/// Gradient elements per all-reduce: large enough that per-call latency does not matter,
/// small enough that a bucket is not a second copy of the model.
const BUCKET_ELEMENTS: usize = 4 << 20;

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
    /// In a data-parallel group, compare a checksum of the parameters across the ranks
    /// every this many steps (0: never).
    pub replica_check_every: u64,
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
            replica_check_every: 50,
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

/// Runs training of one model in one model directory, alone or as one rank of a
/// data-parallel group ([`Trainer::with_group`]).
pub struct Trainer<'a> {
    model: &'a HyperT5,
    vs: &'a VarStore,
    optimizer: &'a mut Adafactor,
    config: TrainConfig,
    model_dir: ModelDir,
    checkpoints: CheckpointManager,
    group: Option<&'a ProcessGroup>,
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
            group: None,
        }
    }

    /// The same trainer as one rank of `group`: each step's global batch (the same on
    /// every rank) is sliced by rank, gradients and losses are summed over the ranks in a
    /// fixed order, and every rank applies the same update, so the replicas stay equal
    /// (checked every `replica_check_every` steps). Only rank 0 writes metrics and
    /// checkpoints; every rank restores.
    pub fn with_group(mut self, group: &'a ProcessGroup) -> Self {
        self.group = (group.world_size() > 1).then_some(group);
        self
    }

    fn is_main(&self) -> bool {
        self.group.is_none_or(|g| g.is_main())
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

    /// Writes a checkpoint of the current step (in a group: rank 0, once every rank has
    /// reached the step; the others report where it goes).
    pub fn save_checkpoint(&mut self, source: &dyn BatchSource) -> Result<CheckpointInfo> {
        let state = TrainState {
            step: self.optimizer.global_step(),
            data: source.state(),
            seed: self.config.seed,
        };
        if let Some(group) = self.group {
            group.barrier()?;
            if !group.is_main() {
                return Ok(CheckpointInfo {
                    step: state.step,
                    path: self.checkpoints.path_of(state.step),
                });
            }
        }
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
        let mut metrics = if self.is_main() {
            let metrics_path = self.model_dir.metrics_path();
            truncate_after(&metrics_path, start)?;
            Some(
                MetricsWriter::open(&metrics_path)?
                    .with_tensorboard(&self.model_dir.path().join("tensorboard"))?,
            )
        } else {
            None
        };
        let mut step = start;
        while step < self.config.steps {
            if self.stop_agreed(hooks.should_stop())? {
                let checkpoint = self.save_checkpoint(source)?;
                hooks.on_checkpoint(&checkpoint);
                return Ok(TrainOutcome::Interrupted { step });
            }
            let line = self.train_step(step, source)?;
            step = line.step;
            if let Some(metrics) = metrics.as_mut() {
                metrics.write(&MetricsLine::Train(line.clone()))?;
            }
            hooks.on_step(&line);
            self.check_replicas(step)?;
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
                if let Some(metrics) = metrics.as_mut().filter(|_| !scores.is_empty()) {
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

    /// Trainable parameters in name order: every rank walks them alike (a VarStore's map
    /// has no order of its own).
    fn trainable_by_name(&self) -> Vec<(String, Tensor)> {
        let mut variables: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        variables
    }

    /// Sums every gradient over the ranks, in buckets of about [`BUCKET_ELEMENTS`], in
    /// name order.
    fn all_reduce_gradients(&self, group: &ProcessGroup) -> Result<()> {
        let mut bucket: Vec<Tensor> = Vec::new();
        let mut elements = 0;
        for (name, variable) in self.trainable_by_name() {
            let grad = variable.grad();
            if !grad.defined() {
                return Err(TrainError::Distributed(DistError::BadTensor {
                    collective: "gradient all-reduce",
                    message: format!("`{name}` has no gradient on this rank"),
                }));
            }
            elements += grad.numel();
            bucket.push(grad);
            if elements >= BUCKET_ELEMENTS {
                group.all_reduce(&mut bucket, ReduceOp::Sum)?;
                bucket.clear();
                elements = 0;
            }
        }
        if !bucket.is_empty() {
            group.all_reduce(&mut bucket, ReduceOp::Sum)?;
        }
        Ok(())
    }

    /// Whether to stop: in a group, when any rank was asked (each rank gets its own
    /// signal, at its own moment), so that all stop at the same step.
    fn stop_agreed(&self, asked: bool) -> Result<bool> {
        let Some(group) = self.group else {
            return Ok(asked);
        };
        let mut flag = [Tensor::from_slice(&[f32::from(u8::from(asked))])];
        group.all_reduce(&mut flag, ReduceOp::Max)?;
        Ok(f32::try_from(&flag[0]).unwrap_or(0.0) > 0.0)
    }

    /// Every `replica_check_every` steps, compares a checksum of the parameters across the
    /// ranks: identical updates keep them bit-identical, so any difference is a fault.
    fn check_replicas(&self, step: u64) -> Result<()> {
        let Some(group) = self.group else {
            return Ok(());
        };
        let every = self.config.replica_check_every;
        if every == 0 || step % every != 0 {
            return Ok(());
        }
        let checksum = tch::no_grad(|| {
            self.trainable_by_name()
                .iter()
                .map(|(_, v)| {
                    f64::try_from(v.to_kind(Kind::Double).abs().sum(Kind::Double))
                        .unwrap_or(f64::NAN)
                })
                .sum::<f64>()
        });
        let all = group.all_gather(&Tensor::from_slice(&[checksum]))?;
        let all = Vec::<f64>::try_from(all.reshape([-1])).unwrap_or_default();
        if let Some((rank, other)) = all
            .iter()
            .enumerate()
            .find(|(_, c)| c.to_bits() != all[0].to_bits())
        {
            return Err(TrainError::ReplicasDiverged {
                step,
                rank,
                checksum: *other,
                rank0: all[0],
            });
        }
        Ok(())
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
        let global = source.next_batch()?;
        self.optimizer.zero_grad();
        // This rank's rows of the global batch (all of it alone).
        let batch = match self.group {
            Some(group) => {
                let rows = global.rows();
                let (rank, world) = (group.rank() as i64, group.world_size() as i64);
                let (from, to) = (rows * rank / world, rows * (rank + 1) / world);
                global.narrow(from, to - from)
            }
            None => global.narrow(0, global.rows()),
        };
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
        if let Some(group) = self.group {
            // The loss is a sum over tokens: summing the ranks' gradients and losses gives
            // exactly the global batch's.
            self.all_reduce_gradients(group)?;
            let mut sums = [Tensor::from_slice(&[loss, z_loss, weight])];
            group.all_reduce(&mut sums, ReduceOp::Sum)?;
            let sums = Vec::<f64>::try_from(&sums[0]).unwrap_or_default();
            if let [l, z, w] = sums[..] {
                (loss, z_loss, weight) = (l, z, w);
            }
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
            tokens_per_second: global.tokens() / elapsed,
            examples_per_second: global.rows() as f64 / elapsed,
        })
    }
}
