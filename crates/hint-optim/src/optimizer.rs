//! The multi-group Adafactor optimizer: one global step, one merged state keyed by
//! parameter name (t5x `MultiOptimizer` over `Adafactor`s; a group may run AdamW
//! instead, [`crate::adamw`]).

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::adafactor::{decay, update_parameter, StepScalars};
use crate::adamw;
use crate::config::AdafactorConfig;
use crate::error::{OptimError, Result};
use crate::groups::{assign, ParamGroup};
use crate::slots::Slots;

/// One parameter: a shallow clone of the caller's tensor, so updates reach the model.
#[derive(Debug)]
pub(crate) struct Param {
    pub(crate) name: String,
    pub(crate) tensor: Tensor,
    pub(crate) group: usize,
    /// `None` for frozen parameters, and for those another rank updates
    /// ([`Adafactor::new_sharded`]).
    pub(crate) slots: Option<Slots>,
}

/// t5x's Adafactor over named tch parameters, split into [`ParamGroup`]s.
///
/// ```no_run
/// # fn main() -> Result<(), hint_optim::OptimError> {
/// use hint_optim::{Adafactor, AdafactorConfig, ParamGroup, RestoreOptions};
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// // ... build the model in `vs` ...
/// let hyper = AdafactorConfig { step_offset: 1_100_000, ..AdafactorConfig::with_learning_rate(1e-3) };
/// let t5 = AdafactorConfig::with_learning_rate(1e-3);
/// let mut optimizer = Adafactor::from_var_store(&vs, ParamGroup::dual(hyper, t5))?;
/// let report = optimizer.load_state("t5_optimizer.safetensors", &RestoreOptions::hint_from_t5())?;
/// // per training step: loss.backward(); optimizer.step()?; optimizer.zero_grad();
/// optimizer.step()?;
/// optimizer.save_state("checkpoint/optimizer.safetensors")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Adafactor {
    pub(crate) groups: Vec<ParamGroup>,
    pub(crate) params: Vec<Param>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) step: u64,
    /// One flat f32 buffer per device, as large as the largest trainable parameter,
    /// reused by every update (see `adafactor.rs`).
    scratch: Vec<(tch::Device, Tensor)>,
}

impl Adafactor {
    /// Builds the optimizer over `params` (name, tensor), in the given order.
    ///
    /// Every parameter must match exactly one group. Frozen parameters get
    /// `requires_grad(false)` so that backward skips them; the others get zero slots.
    pub fn new<S: Into<String>>(
        params: impl IntoIterator<Item = (S, Tensor)>,
        groups: Vec<ParamGroup>,
    ) -> Result<Self> {
        Self::build(params, groups, &|_| true)
    }

    /// The optimizer of one rank of a sharded data-parallel run (ZeRO stages 1–2, whole
    /// parameters per owner, because Adafactor's row and column factors need whole
    /// matrices): state only for the trainable parameters `owns` accepts, which
    /// [`Adafactor::step`] updates; the others are left to their owners (and still get
    /// their gradients zeroed). Global-norm clipping needs every gradient of a group, so a
    /// group that clips by global norm is refused here.
    pub fn new_sharded<S: Into<String>>(
        params: impl IntoIterator<Item = (S, Tensor)>,
        groups: Vec<ParamGroup>,
        owns: &dyn Fn(&str) -> bool,
    ) -> Result<Self> {
        if let Some(group) = groups.iter().find(|g| {
            !g.frozen && g.adamw.is_none() && g.hparams.global_norm_clip_threshold.is_some()
        }) {
            return Err(OptimError::InvalidConfig {
                group: group.name.clone(),
                reason: "global_norm_clip_threshold: global-norm clipping needs every gradient of the group, which a sharded optimizer does not hold".into(),
            });
        }
        Self::build(params, groups, owns)
    }

    fn build<S: Into<String>>(
        params: impl IntoIterator<Item = (S, Tensor)>,
        groups: Vec<ParamGroup>,
        owns: &dyn Fn(&str) -> bool,
    ) -> Result<Self> {
        let params: Vec<(String, Tensor)> =
            params.into_iter().map(|(n, t)| (n.into(), t)).collect();
        let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if index.insert(name.clone(), i).is_some() {
                return Err(OptimError::DuplicateParameter(name.clone()));
            }
        }
        let assignment = assign(&names, &groups)?;
        let mut out = Vec::with_capacity(params.len());
        for ((name, tensor), group) in params.into_iter().zip(assignment) {
            if !tensor.is_floating_point() {
                return Err(OptimError::NonFloatParameter {
                    name,
                    kind: tensor.kind(),
                });
            }
            let spec = &groups[group];
            let slots = if spec.frozen {
                let _ = tensor.set_requires_grad(false);
                None
            } else if !owns(&name) {
                None
            } else if spec.adamw.is_some() {
                Some(adamw::zero_slots(&tensor.size(), tensor.device())?)
            } else {
                Some(Slots::zeros(
                    &tensor.size(),
                    tensor.device(),
                    &spec.hparams,
                )?)
            };
            out.push(Param {
                name,
                tensor,
                group,
                slots,
            });
        }
        Ok(Self {
            groups,
            params: out,
            index,
            step: 0,
            scratch: Vec::new(),
        })
    }

    /// Builds the optimizer over a `VarStore`'s variables, in name order.
    pub fn from_var_store(vs: &VarStore, groups: Vec<ParamGroup>) -> Result<Self> {
        Self::new(variables_by_name(vs), groups)
    }

    /// [`Adafactor::new_sharded`] over a `VarStore`'s variables, in name order.
    pub fn from_var_store_sharded(
        vs: &VarStore,
        groups: Vec<ParamGroup>,
        owns: &dyn Fn(&str) -> bool,
    ) -> Result<Self> {
        Self::new_sharded(variables_by_name(vs), groups, owns)
    }

    /// One group named `all` over every parameter.
    pub fn single<S: Into<String>>(
        params: impl IntoIterator<Item = (S, Tensor)>,
        hparams: AdafactorConfig,
    ) -> Result<Self> {
        Self::new(params, vec![ParamGroup::new("all", ".*", hparams)])
    }

    /// The global step: the number of updates applied (restored with the state).
    pub fn global_step(&self) -> u64 {
        self.step
    }

    /// Sets the global step, e.g. to the step of a parameter-only checkpoint.
    pub fn set_global_step(&mut self, step: u64) {
        self.step = step;
    }

    /// The group definitions, in order.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// The settings of group `name`, to change between steps (e.g. a learning rate of 0).
    ///
    /// Changing the factoring or momentum settings does not re-shape existing slots.
    pub fn hparams_mut(&mut self, name: &str) -> Result<&mut AdafactorConfig> {
        self.groups
            .iter_mut()
            .find(|group| group.name == name)
            .map(|group| &mut group.hparams)
            .ok_or_else(|| OptimError::UnknownGroup(name.to_string()))
    }

    /// The group of parameter `name`.
    pub fn group_of(&self, name: &str) -> Option<&str> {
        self.index
            .get(name)
            .map(|&i| self.groups[self.params[i].group].name.as_str())
    }

    /// Names of the parameters this optimizer updates, in order.
    pub fn trainable(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|p| !self.groups[p.group].frozen)
            .map(|p| p.name.as_str())
            .collect()
    }

    /// Names of the frozen parameters, in order.
    pub fn frozen(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|p| self.groups[p.group].frozen)
            .map(|p| p.name.as_str())
            .collect()
    }

    /// Names of the trainable parameters this optimizer updates and holds state for: all
    /// of them, except in a sharded optimizer ([`Adafactor::new_sharded`]).
    pub fn owned(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|p| p.slots.is_some())
            .map(|p| p.name.as_str())
            .collect()
    }

    /// A slot (`v_row`, `v_col`, `v` or `m`) of a parameter, sharing its storage.
    pub fn slot(&self, param: &str, slot: &str) -> Option<Tensor> {
        let slots = self.params[*self.index.get(param)?].slots.as_ref()?;
        slots
            .named()
            .into_iter()
            .find(|(name, _)| *name == slot)
            .map(|(_, t)| t.shallow_clone())
    }

    /// Bytes of optimizer state this optimizer holds (its slots are f32), over every
    /// parameter it owns.
    pub fn state_bytes(&self) -> u64 {
        self.params
            .iter()
            .filter_map(|p| p.slots.as_ref())
            .map(|slots| slots.numel().max(0) as u64 * 4)
            .sum()
    }

    /// Number of f32 elements of optimizer state held for a parameter (`None` if frozen or unknown).
    pub fn state_numel(&self, param: &str) -> Option<i64> {
        self.params[*self.index.get(param)?]
            .slots
            .as_ref()
            .map(Slots::numel)
    }

    /// Zeroes the gradients of the trainable parameters.
    pub fn zero_grad(&mut self) {
        let groups = &self.groups;
        for param in self.params.iter_mut().filter(|p| !groups[p.group].frozen) {
            let mut grad = param.tensor.grad();
            if grad.defined() {
                // In place and without tch's `zero_grad` (which detaches first): a gradient
                // may be a view of a data-parallel bucket (hint-dist's GradientReducer),
                // which cannot be detached in place and must stay where it is.
                let _ = tch::no_grad(|| grad.zero_());
            }
        }
    }

    /// One update from the parameters' `.grad()`, then `step + 1`.
    ///
    /// A trainable parameter without a gradient is updated as with a zero gradient,
    /// which is what JAX's differentiation yields for an unused parameter in t5x.
    pub fn step(&mut self) -> Result<()> {
        let grads = self
            .params
            .iter()
            .map(|p| {
                let grad = p.tensor.grad();
                grad.defined().then_some(grad)
            })
            .collect();
        self.apply(grads)
    }

    /// One update from explicit gradients by parameter name, then `step + 1`.
    ///
    /// Missing trainable names count as zero gradients; names of frozen parameters
    /// are ignored; unknown names are an error.
    pub fn apply_gradients(&mut self, grads: &HashMap<String, Tensor>) -> Result<()> {
        let mut unknown: Vec<String> = grads
            .keys()
            .filter(|name| !self.index.contains_key(*name))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            return Err(OptimError::UnknownGradients(unknown));
        }
        let ordered = self
            .params
            .iter()
            .map(|p| grads.get(&p.name).map(Tensor::shallow_clone))
            .collect();
        self.apply(ordered)
    }

    fn apply(&mut self, grads: Vec<Option<Tensor>>) -> Result<()> {
        // Validate everything first so that an error leaves parameters and state unchanged.
        for (param, grad) in self.params.iter().zip(&grads) {
            if let (Some(_), Some(grad)) = (&param.slots, grad) {
                let expected = param.tensor.size();
                if grad.size() != expected {
                    return Err(OptimError::GradientShape {
                        name: param.name.clone(),
                        expected,
                        found: grad.size(),
                    });
                }
            }
        }
        let mut per_group = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            if group.frozen {
                per_group.push(None);
                continue;
            }
            let since_offset = self.step.checked_sub(group.step_offset()).ok_or_else(|| {
                OptimError::StepBeforeOffset {
                    group: group.name.clone(),
                    step: self.step,
                    step_offset: group.step_offset(),
                }
            })?;
            let learning_rate = group.learning_rate_at(self.step)?;
            if group.adamw.is_some() {
                per_group.push(Some(GroupStep::AdamW {
                    learning_rate,
                    step: since_offset + 1,
                }));
                continue;
            }
            let hp = &group.hparams;
            let (rho, mix) = decay(since_offset, hp.decay_rate);
            per_group.push(Some(GroupStep::Adafactor(StepScalars {
                learning_rate,
                rho,
                mix,
                weight_decay: hp.weight_decay_at(learning_rate),
                grad_scale: None,
            })));
        }

        tch::no_grad(|| -> Result<()> {
            let grads = self
                .params
                .iter()
                .zip(grads)
                .map(|(param, grad)| match (&param.slots, grad) {
                    (None, _) => Ok(None),
                    (Some(_), Some(grad)) => Ok(Some(grad)),
                    (Some(_), None) => Ok(Some(Tensor::f_zeros(
                        param.tensor.size(),
                        (Kind::Float, param.tensor.device()),
                    )?)),
                })
                .collect::<Result<Vec<_>>>()?;
            for (g, scalars) in per_group.iter_mut().enumerate() {
                let Some(GroupStep::Adafactor(scalars)) = scalars else {
                    continue;
                };
                if let Some(threshold) = self.groups[g].hparams.global_norm_clip_threshold {
                    scalars.grad_scale = Some(self.global_norm_scale(g, &grads, threshold)?);
                }
            }
            self.ensure_scratch()?;
            for (param, grad) in self.params.iter_mut().zip(&grads) {
                let (Some(slots), Some(grad), Some(group_step)) =
                    (&mut param.slots, grad, &per_group[param.group])
                else {
                    continue;
                };
                let group = &self.groups[param.group];
                let scalars = match group_step {
                    GroupStep::AdamW {
                        learning_rate,
                        step,
                    } => {
                        let config = group.adamw.as_ref().expect("an AdamW group");
                        adamw::update_parameter(
                            &mut param.tensor,
                            grad,
                            slots,
                            config,
                            *learning_rate,
                            *step,
                        )?;
                        continue;
                    }
                    GroupStep::Adafactor(scalars) => scalars,
                };
                let device = param.tensor.device();
                let (_, scratch) = self
                    .scratch
                    .iter()
                    .find(|(d, _)| *d == device)
                    .expect("ensure_scratch covers every device");
                update_parameter(
                    &mut param.tensor,
                    grad,
                    slots,
                    &self.groups[param.group].hparams,
                    scalars,
                    scratch,
                )?;
            }
            Ok(())
        })?;
        self.step += 1;
        Ok(())
    }

    /// Allocates the scratch buffers on first use (and again if parameters moved device).
    fn ensure_scratch(&mut self) -> Result<()> {
        let mut needed: Vec<(tch::Device, i64)> = Vec::new();
        // Only Adafactor's update uses the buffer.
        let groups = &self.groups;
        for param in self
            .params
            .iter()
            .filter(|p| p.slots.is_some() && groups[p.group].adamw.is_none())
        {
            let device = param.tensor.device();
            let numel = param.tensor.numel() as i64;
            match needed.iter_mut().find(|(d, _)| *d == device) {
                Some((_, size)) => *size = (*size).max(numel),
                None => needed.push((device, numel)),
            }
        }
        for (device, size) in needed {
            let fits = self
                .scratch
                .iter()
                .any(|(d, t)| *d == device && t.numel() as i64 >= size);
            if !fits {
                self.scratch.retain(|(d, _)| *d != device);
                self.scratch
                    .push((device, Tensor::f_empty([size], (Kind::Float, device))?));
            }
        }
        Ok(())
    }

    /// `c · min(1/c, 1/‖G‖)` over the gradients of group `g`, as a 0-d f32 tensor.
    fn global_norm_scale(
        &self,
        g: usize,
        grads: &[Option<Tensor>],
        threshold: f64,
    ) -> Result<Tensor> {
        let norms = self
            .params
            .iter()
            .zip(grads)
            .filter(|(param, _)| param.group == g)
            .filter_map(|(_, grad)| grad.as_ref())
            .map(|grad| grad.f_to_kind(Kind::Float)?.f_norm())
            .collect::<Result<Vec<_>, _>>()?;
        if norms.is_empty() {
            return Ok(Tensor::f_scalar_tensor(
                1.0,
                (Kind::Float, tch::Device::Cpu),
            )?);
        }
        let mut scale = Tensor::f_stack(&norms, 0)?.f_norm()?.f_reciprocal()?;
        let _ = scale.f_clamp_max_(1.0 / threshold)?;
        let _ = scale.f_mul_scalar_(threshold)?;
        Ok(scale)
    }
}

/// What one step does to a group.
enum GroupStep {
    /// Adafactor, with the group's scalars at this step.
    Adafactor(StepScalars),
    /// AdamW at this learning rate and this (1-based) step of the group.
    AdamW { learning_rate: f64, step: u64 },
}

/// A `VarStore`'s variables in name order (its map has none of its own).
fn variables_by_name(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
}
