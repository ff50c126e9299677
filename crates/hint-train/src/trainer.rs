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

use hint_dist::{BucketConfig, GradientReducer, ProcessGroup, ReduceOp};
use hint_model::{
    count_cpu_tensors, cross_entropy, memory_usage, release_gradients,
    rematerialised_cross_entropy, reset_peak_memory, HyperT5, LossConfig, MemoryUsage, RematPolicy,
};
use hint_optim::{Adafactor, STEP_KEY};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::checkpoint::{CheckpointInfo, CheckpointManager, TrainState};
use crate::contrastive::{contrastive, pooled_features, Contrastive};
use crate::error::{Result, TrainError};
use crate::eval::EvalMonitor;
use crate::metrics_log::{
    gigabytes, truncate_after, MemoryReport, MetricsLine, MetricsWriter, StepMetrics,
};
use crate::model_dir::ModelDir;

/// Parameter elements per broadcast of a sharded run's updated values: large enough that
/// per-call latency does not matter, small enough that a bucket is not a second copy of
/// the model.
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
    /// `float32` or `bfloat16` activations.
    pub compute_dtype: ComputeDtype,
    /// `float32` or `bfloat16` parameters (t5x's `param_dtype`). In bf16 the parameters and
    /// their gradients take half the memory; Adafactor still computes each update in f32
    /// (its state stays f32) and rounds the result to bf16. f32 parameters are the
    /// default, as t5x's.
    pub param_dtype: ComputeDtype,
    /// Which activations a training step keeps (t5x's `remat_policy`): `none` (all),
    /// `full` (each transformer block's inputs only, and the logits a chunk of positions
    /// at a time; the backward pass recomputes the rest, for about a third more compute)
    /// or `minimal` (the blocks' inputs and weight products; the backward pass recomputes
    /// only the element-wise work). Gradients are the same whichever it is.
    pub remat_policy: RematPolicy,
    /// The loss (t5x: summed cross-entropy with z-loss 1e-4).
    pub loss: LossConfig,
    /// In a data-parallel group, compare a checksum of the parameters across the ranks
    /// every this many steps (0: never).
    pub replica_check_every: u64,
    /// In a data-parallel group, shard the optimizer state and gradients by parameter
    /// owner (ZeRO stages 1–2, whole parameters per owner): each gradient is reduced to
    /// its owner, which alone holds its Adafactor state, updates it and broadcasts the new
    /// values. Results equal the unsharded run; optimizer memory per rank is about 1/N.
    pub shard_optimizer: bool,
    /// Report the reference's contrastive metric on the pooled instruction features every
    /// step (`cosine_loss`, `positive_cosine_samples` in metrics.jsonl and TensorBoard;
    /// [`crate::contrastive`]). A metric only: it changes nothing the step computes.
    pub contrastive_metric: bool,
    /// The update rule of both parameter groups: `adafactor` (t5x's, configured by
    /// `hint.optim.Adafactor` in the scopes `hyper` and `t5`) or `adamw` (configured by
    /// `hint.optim.AdamW` in the same scopes; the reference's `partial_train_adam.gin`).
    pub optimizer: OptimizerKind,
    /// A third optimizer group for a separate instruction encoder
    /// (`share_hnet_encoder = False`): `hyper.hyper_encoder.*` in scope `henc`
    /// (`henc/hint.optim.Adafactor` or `henc/hint.optim.AdamW`), the rest of the
    /// hypernetwork in `hyper` (what the reference's `roberta` group of `partial_train_adafactor.gin`
    /// was meant for; at its final commit that group matches nothing).
    pub instruction_encoder_group: bool,
}

/// The update rule of a run's parameter groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// t5x's Adafactor.
    #[default]
    Adafactor,
    /// `torch.optim.AdamW`'s update.
    AdamW,
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
            param_dtype: ComputeDtype::Float32,
            remat_policy: RematPolicy::None,
            loss: LossConfig::default(),
            replica_check_every: 50,
            shard_optimizer: false,
            contrastive_metric: false,
            optimizer: OptimizerKind::Adafactor,
            instruction_encoder_group: false,
        }
    }
}

/// A floating-point dtype of activations (`compute_dtype`) or parameters (`param_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDtype {
    /// f32 everywhere.
    Float32,
    /// bf16 activations with f32 master weights.
    Bfloat16,
}

impl ComputeDtype {
    /// Bytes of one element.
    pub fn element_bytes(self) -> i64 {
        match self {
            Self::Float32 => 4,
            Self::Bfloat16 => 2,
        }
    }

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
    /// `[B]`: rows with the same value come from the same task.
    pub task_ids: Tensor,
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
            task_ids: n(&self.task_ids),
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
    /// In a sharded run, the rank that owns each trainable parameter.
    owners: Option<BTreeMap<String, usize>>,
    /// In a group, sums the gradients during the backward pass (made at the first step).
    reducer: Option<GradientReducer>,
    /// Memory in use when the last step began.
    memory_before_step: MemoryUsage,
    /// Examples and distinct instructions of this rank's share of the last step.
    step_rows: (usize, usize),
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
            owners: None,
            reducer: None,
            memory_before_step: MemoryUsage::default(),
            step_rows: (0, 0),
        }
    }

    /// The same trainer as one rank of `group`: each step's global batch (the same on
    /// every rank) is sliced by rank, gradients and losses are summed over the ranks in a
    /// fixed order, and every rank applies the same update, so the replicas stay equal
    /// (checked every `replica_check_every` steps). Only rank 0 writes metrics and
    /// checkpoints; every rank restores.
    pub fn with_group(mut self, group: &'a ProcessGroup) -> Self {
        self.group = (group.world_size() > 1).then_some(group);
        if self.group.is_some() && self.config.shard_optimizer {
            // The optimizer must have been built with the same owners
            // (`Adafactor::new_sharded` with `shard_owners`).
            self.owners = Some(shard_owners(self.vs, group.world_size()));
        }
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
            let gathered = match self.owners {
                Some(_) => Some(self.gathered_optimizer_state(group)?),
                None => None,
            };
            group.barrier()?;
            if !group.is_main() {
                return Ok(CheckpointInfo {
                    step: state.step,
                    path: self.checkpoints.path_of(state.step),
                });
            }
            if let Some(tensors) = gathered {
                return self
                    .checkpoints
                    .save_training_with_state(self.vs, &tensors, &state);
            }
        }
        self.checkpoints
            .save_training(self.vs, self.optimizer, &state)
    }

    /// Every rank's optimizer state, on rank 0 (the others get an empty list): each
    /// shard's slots travel as one flat f32 buffer from their owner.
    fn gathered_optimizer_state(&self, group: &ProcessGroup) -> Result<Vec<(String, Tensor)>> {
        let mine: Vec<(String, Tensor)> = self
            .optimizer
            .state_tensors()
            .into_iter()
            .filter(|(name, _)| name != STEP_KEY)
            .collect();
        if let Some((name, t)) = mine.iter().find(|(_, t)| t.kind() != Kind::Float) {
            return Err(TrainError::Checkpoint {
                path: self.model_dir.path().to_path_buf(),
                message: format!(
                    "optimizer slot `{name}` is {:?}; a sharded state is gathered as f32",
                    t.kind()
                ),
            });
        }
        let shapes: Vec<(String, Vec<i64>)> =
            mine.iter().map(|(n, t)| (n.clone(), t.size())).collect();
        let malformed = |e: serde_json::Error| TrainError::Malformed {
            path: "optimizer shard shapes".into(),
            message: e.to_string(),
        };
        let all_shapes =
            group.all_gather_bytes(&serde_json::to_vec(&shapes).map_err(malformed)?)?;
        let mut gathered = vec![(
            STEP_KEY.to_string(),
            Tensor::from(self.optimizer.global_step() as i64),
        )];
        for (rank, bytes) in all_shapes.iter().enumerate() {
            let shapes: Vec<(String, Vec<i64>)> =
                serde_json::from_slice(bytes).map_err(malformed)?;
            let total: i64 = shapes.iter().map(|(_, s)| s.iter().product::<i64>()).sum();
            if total == 0 {
                continue;
            }
            // On the CPU (Gloo) whatever the run's device: the receivers' buffers are.
            let mut flat = if rank == group.rank() {
                let parts: Vec<Tensor> = mine
                    .iter()
                    .map(|(_, t)| t.reshape([-1]).to_device(tch::Device::Cpu))
                    .collect();
                Tensor::cat(&parts, 0)
            } else {
                Tensor::zeros([total], (Kind::Float, tch::Device::Cpu))
            };
            group.broadcast(std::slice::from_mut(&mut flat), rank)?;
            if group.is_main() {
                let mut offset = 0;
                for (name, shape) in shapes {
                    let n: i64 = shape.iter().product();
                    gathered.push((name, flat.narrow(0, offset, n).reshape(shape.as_slice())));
                    offset += n;
                }
            }
        }
        Ok(if group.is_main() {
            gathered
        } else {
            Vec::new()
        })
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
        // What this thread's CPU tensors hold is counted from here on (a no-op when the
        // program counts already, and for CUDA, whose allocator counts itself).
        count_cpu_tensors();
        let mut step = start;
        while step < self.config.steps {
            if self.stop_agreed(hooks.should_stop())? {
                let checkpoint = self.save_checkpoint(source)?;
                hooks.on_checkpoint(&checkpoint);
                return Ok(TrainOutcome::Interrupted { step });
            }
            let first = step == start;
            let accounted = first.then(|| self.accounted_bytes());
            let line = self.train_step(step, source)?;
            step = line.step;
            if let Some(metrics) = metrics.as_mut() {
                metrics.write(&MetricsLine::Train(line.clone()))?;
            }
            if let Some(before) = accounted {
                let memory = self.memory_report(before, &line);
                tracing::info!(
                    step,
                    device = %memory.device,
                    parameters = %gigabytes(memory.parameters),
                    gradients = %gigabytes(memory.gradients),
                    optimizer_state = %gigabytes(memory.optimizer_state),
                    activations = %gigabytes(memory.activations),
                    peak = %gigabytes(memory.peak),
                    "memory of the first step"
                );
                if let Some(metrics) = metrics.as_mut() {
                    metrics.write(&MetricsLine::Memory { step, memory })?;
                }
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

    /// Bytes of (parameters, gradients, optimizer state) now.
    fn accounted_bytes(&self) -> (u64, u64, u64) {
        let bytes = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as u64;
        let variables = self.vs.variables();
        let parameters = variables.values().map(bytes).sum();
        let gradients = variables
            .values()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .map(|g| bytes(&g))
            .sum();
        (parameters, gradients, self.optimizer.state_bytes())
    }

    /// What held the memory of the step just trained, given what was accounted before it.
    fn memory_report(&self, before: (u64, u64, u64), line: &StepMetrics) -> MemoryReport {
        let (parameters, gradients, optimizer_state) = self.accounted_bytes();
        let made = gradients.saturating_sub(before.1) + optimizer_state.saturating_sub(before.2);
        let start = &self.memory_before_step;
        // Tensors where they are counted: the resident set also holds the allocator's
        // caches and the process's code.
        let (measured, before_step, peak) = match (start.tensors, line.peak_tensor_bytes) {
            (Some(before), Some(peak)) => ("tensors", before, peak),
            _ => (
                "resident set",
                start.resident.unwrap_or(0),
                line.peak_memory_bytes,
            ),
        };
        MemoryReport {
            device: match self.vs.device() {
                tch::Device::Cuda(i) => format!("cuda:{i}"),
                _ => "cpu".into(),
            },
            parameters,
            gradients,
            optimizer_state,
            activations: peak.saturating_sub(before_step).saturating_sub(made),
            peak,
            before_step,
            examples: self.step_rows.0,
            instructions: self.step_rows.1,
            measured: measured.into(),
        }
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

    /// The group's gradient reducer, made once: the trainable parameters in name order,
    /// summed onto every rank, or (sharded, ZeRO-2) onto each one's owner.
    fn reducer(&mut self, group: &ProcessGroup) -> Result<&mut GradientReducer> {
        if self.reducer.is_none() {
            let params = self.trainable_by_name();
            let config = BucketConfig::default();
            let bytes: usize = params
                .iter()
                .map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes())
                .sum();
            tracing::info!(
                rank = group.rank(),
                tensors = params.len(),
                gradient_bytes = bytes,
                sharded = self.owners.is_some(),
                "gradients summed over the ranks in every step's backward pass"
            );
            self.reducer = Some(match &self.owners {
                Some(owners) => GradientReducer::sharded(group, &params, owners, &config)?,
                None => GradientReducer::new(group, &params, &config)?,
            });
        }
        Ok(self.reducer.as_mut().expect("made above"))
    }

    /// The trainable parameters (`of` each: its gradient, or itself) in name order, in
    /// buckets of about [`BUCKET_ELEMENTS`]: one run of buckets for all (`owners` absent,
    /// owner `None`), or one run per owner.
    fn buckets(
        &self,
        owners: Option<&BTreeMap<String, usize>>,
        world: usize,
        of: impl Fn(&Tensor) -> Tensor,
    ) -> Vec<(Option<usize>, Vec<Tensor>)> {
        let variables = self.trainable_by_name();
        let runs: Vec<Option<usize>> = match owners {
            None => vec![None],
            Some(_) => (0..world).map(Some).collect(),
        };
        let mut buckets = Vec::new();
        for run in runs {
            let mut bucket: Vec<Tensor> = Vec::new();
            let mut elements = 0;
            for (name, variable) in &variables {
                if owners.is_some_and(|o| o.get(name).copied() != run) {
                    continue;
                }
                let tensor = of(variable);
                elements += tensor.numel();
                bucket.push(tensor);
                if elements >= BUCKET_ELEMENTS {
                    buckets.push((run, std::mem::take(&mut bucket)));
                    elements = 0;
                }
            }
            if !bucket.is_empty() {
                buckets.push((run, bucket));
            }
        }
        buckets
    }

    /// After the owners' updates, every rank receives the new values.
    fn broadcast_from_owners(
        &self,
        group: &ProcessGroup,
        owners: &BTreeMap<String, usize>,
    ) -> Result<()> {
        let buckets = self.buckets(Some(owners), group.world_size(), Tensor::shallow_clone);
        for (owner, mut bucket) in buckets {
            let owner = owner.unwrap_or(0);
            tch::no_grad(|| group.broadcast(&mut bucket, owner))?;
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
        let device = self.vs.device();
        reset_peak_memory(device);
        self.memory_before_step = memory_usage(device);
        let started = Instant::now();
        // Dropout masks depend on (seed, step) only: what makes resume exact.
        tch::manual_seed(
            self.config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(step as i64),
        );
        match self.group {
            // The gradients are views of the reducer's buckets: zeroed where they are.
            Some(_) => self.optimizer.zero_grad(),
            // Alone, dropped (PyTorch's `zero_grad(set_to_none=True)`): the backward pass
            // then takes each gradient as it comes instead of adding it into a zeroed
            // buffer, and the forward pass runs without the gradients held.
            None => release_gradients(&self.vs.trainable_variables())?,
        }
        let global = source.next_batch()?;
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
        let instructions = batch
            .hyper_inputs
            .unique_dim(0, false, false, false)
            .0
            .size()[0];
        self.step_rows = (rows as usize, instructions as usize);
        let contrastive = self.contrastive_metric(&batch)?;
        let parts = (self.config.microbatches.max(1) as i64).min(rows.max(1));
        let per_part = (rows + parts - 1) / parts;
        let (mut loss, mut z_loss, mut weight) = (0.0, 0.0, 0.0);
        let mut start = 0;
        while start < rows {
            let len = per_part.min(rows - start);
            let last = start + len >= rows;
            let part = batch.narrow(start, len);
            let mask = part.inputs.ne(0).to_kind(Kind::Int64);
            let states = self.model.decoder_states_batch(
                &part.inputs,
                &mask,
                &part.hyper_inputs,
                &part.decoder_inputs,
                true,
            );
            let part_loss = match self.config.remat_policy {
                // The logits too are rematerialised, a chunk of positions at a time.
                RematPolicy::Full => rematerialised_cross_entropy(
                    &self.model.t5.head(),
                    &states,
                    &part.targets,
                    &part.loss_weights,
                    &self.config.loss,
                ),
                // `minimal` keeps the weight products, the logits among them.
                RematPolicy::None | RematPolicy::Minimal => cross_entropy(
                    &self.model.t5.logits(&states),
                    &part.targets,
                    &part.loss_weights,
                    &self.config.loss,
                ),
            };
            // In a group, the last microbatch's backward pass also sums the gradients over
            // the ranks, bucket by bucket as they become ready; earlier ones accumulate.
            let reducer = match self.group {
                Some(group) if last => Some(self.reducer(group)?),
                _ => None,
            };
            if let Some(reducer) = reducer {
                reducer.prepare()?;
                if let Err(err) = part_loss.total.f_backward() {
                    return Err(reducer.failed_during_backward(err.to_string()).into());
                }
                reducer.finish()?;
            } else {
                part_loss
                    .total
                    .f_backward()
                    .map_err(|source| TrainError::Torch {
                        context: format!("backward pass of step {}", step + 1),
                        source,
                    })?;
            }
            loss += f64::try_from(&part_loss.total).unwrap_or(f64::NAN);
            z_loss += f64::try_from(&part_loss.z_loss).unwrap_or(f64::NAN);
            weight += f64::try_from(&part_loss.weight_sum).unwrap_or(0.0);
            start += len;
        }
        if let Some(group) = self.group {
            // The loss is a sum over tokens: summing the ranks' gradients (done in the
            // backward pass) and losses gives exactly the global batch's.
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
        // Each rank counts the gradients it holds summed: all of them, or (sharded) its
        // own, whose squares the ranks then add up.
        let rank = self.group.map_or(0, |g| g.rank());
        let counted = |name: &str| {
            self.owners
                .as_ref()
                .is_none_or(|o| o.get(name) == Some(&rank))
        };
        let squares = tch::no_grad(|| {
            self.trainable_by_name()
                .iter()
                .filter(|(name, v)| counted(name) && v.grad().defined())
                .map(|(_, v)| f64::try_from(v.grad().square().sum(Kind::Float)).unwrap_or(0.0))
                .sum::<f64>()
        });
        let grad_norm = match (&self.owners, self.group) {
            (Some(_), Some(group)) => {
                let mut total = [Tensor::from_slice(&[squares])];
                group.all_reduce(&mut total, ReduceOp::Sum)?;
                f64::try_from(&total[0]).unwrap_or(f64::NAN).sqrt()
            }
            _ => squares.sqrt(),
        };
        let mut learning_rate = BTreeMap::new();
        for group in self.optimizer.groups() {
            if !group.frozen {
                learning_rate.insert(group.name.clone(), group.learning_rate_at(step)?);
            }
        }
        self.optimizer.step()?;
        if let (Some(owners), Some(group)) = (&self.owners, self.group) {
            self.broadcast_from_owners(group, owners)?;
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let memory = memory_usage(device);
        Ok(StepMetrics {
            step: self.optimizer.global_step(),
            loss,
            z_loss,
            loss_per_token: loss / weight.max(1.0),
            learning_rate,
            grad_norm,
            tokens_per_second: global.tokens() / elapsed,
            examples_per_second: global.rows() as f64 / elapsed,
            peak_memory_bytes: memory.headline_peak(),
            peak_tensor_bytes: memory.peak_tensors,
            peak_reserved_bytes: memory.peak_reserved,
            cosine_loss: contrastive.map(|c| c.cosine_loss),
            positive_cosine_samples: contrastive.map(|c| c.positive_share),
        })
    }

    /// The contrastive metric of this rank's rows (averaged over the ranks), when the run
    /// asks for it and the model reads instructions. The instructions are encoded again
    /// without dropout and without gradients, so the metric draws nothing from the random
    /// generator and the step computes exactly what it computes without it.
    fn contrastive_metric(&self, batch: &TrainBatch) -> Result<Option<Contrastive>> {
        if !self.config.contrastive_metric || !self.model.config.uses_instruction() {
            return Ok(None);
        }
        let mut metric = tch::no_grad(|| {
            let (states, mask) = self.model.encode_instruction(&batch.hyper_inputs, false);
            contrastive(&pooled_features(&states, &mask), &batch.task_ids)
        });
        if let Some(group) = self.group {
            let mut sums = [Tensor::from_slice(&[
                metric.cosine_loss,
                metric.positive_share,
            ])];
            group.all_reduce(&mut sums, ReduceOp::Sum)?;
            let world = group.world_size() as f64;
            if let [loss, share] = Vec::<f64>::try_from(&sums[0]).unwrap_or_default()[..] {
                metric = Contrastive {
                    cosine_loss: loss / world,
                    positive_share: share / world,
                };
            }
        }
        Ok(Some(metric))
    }
}

/// Which rank owns each parameter of `vs` in a sharded run of `world` ranks: whole
/// parameters, the largest first, each to the rank that holds the fewest elements so far
/// (ties to the lower rank, then by name), so that every rank computes the same map.
pub fn shard_owners(vs: &VarStore, world: usize) -> BTreeMap<String, usize> {
    owners_by_size(
        vs.variables()
            .into_iter()
            .map(|(name, t)| (name, t.numel()))
            .collect(),
        world,
    )
}

/// [`shard_owners`] from names and element counts alone (the memory planner's).
pub fn owners_by_size(mut sizes: Vec<(String, usize)>, world: usize) -> BTreeMap<String, usize> {
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut load = vec![0usize; world.max(1)];
    let mut owners = BTreeMap::new();
    for (name, size) in sizes {
        let rank = (0..load.len()).min_by_key(|&r| (load[r], r)).unwrap_or(0);
        load[rank] += size;
        owners.insert(name, rank);
    }
    owners
}
