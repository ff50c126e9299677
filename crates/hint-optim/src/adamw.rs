//! AdamW for a parameter group (Loshchilov & Hutter; `torch.optim.AdamW`'s update, which
//! optax's `adamw` shares): decoupled weight decay, bias-corrected first and second
//! moments. A group uses it instead of Adafactor when its [`crate::ParamGroup::adamw`] is
//! set — the reference's `partial_train_adam.gin` runs its groups this way — with the
//! same global step, state file, partial restore and schedules.
//!
//! Its state is t5x's names for the same things: `m` (first moment) and `v` (second
//! moment), both full-size f32.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::adafactor::working_copy;
use crate::error::{OptimError, Result};
use crate::schedule::Schedule;
use crate::slots::{SecondMoment, Slots};

/// The settings of an AdamW group (gin: `hint.optim.AdamW`), defaulting to
/// `torch.optim.AdamW`'s.
///
/// ```
/// use hint_optim::AdamWConfig;
/// let config = AdamWConfig::default();
/// assert_eq!((config.beta1, config.beta2, config.epsilon, config.weight_decay), (0.9, 0.999, 1e-8, 0.01));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// The learning rate when there is no schedule.
    pub learning_rate: f64,
    /// A t5x schedule (e.g. `constant * linear_warmup * linear_decay`), over the global
    /// step; it supersedes `learning_rate`.
    pub learning_rate_schedule: Option<Schedule>,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the square root of the bias-corrected second moment.
    pub epsilon: f64,
    /// Decoupled weight decay: each step multiplies the parameter by
    /// `1 − learning_rate · weight_decay` before the Adam update.
    pub weight_decay: f64,
    /// The global step at which this group's moments start (its bias correction counts
    /// from there), as Adafactor's `step_offset`.
    pub step_offset: u64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            learning_rate_schedule: None,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            step_offset: 0,
        }
    }
}

impl AdamWConfig {
    /// The learning rate at global `step`.
    pub fn learning_rate_at(&self, step: u64) -> Result<f64> {
        match &self.learning_rate_schedule {
            Some(schedule) => Ok(schedule.learning_rate(step)?),
            None => Ok(self.learning_rate),
        }
    }

    /// Rejects values whose update would be NaN or silently wrong.
    pub(crate) fn validate(&self, group: &str) -> Result<()> {
        let bad = |reason: String| {
            Err(OptimError::InvalidConfig {
                group: group.to_string(),
                reason,
            })
        };
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return bad(format!("{name} must lie in [0, 1), got {beta}"));
            }
        }
        if self.epsilon <= 0.0 {
            return bad(format!("epsilon must be positive, got {}", self.epsilon));
        }
        if self.weight_decay < 0.0 {
            return bad(format!(
                "weight_decay must not be negative, got {}",
                self.weight_decay
            ));
        }
        if let Some(schedule) = &self.learning_rate_schedule {
            schedule.parsed_factors()?;
        }
        Ok(())
    }
}

/// Zero `m` and `v` for a parameter of `shape`.
pub(crate) fn zero_slots(shape: &[i64], device: tch::Device) -> Result<Slots> {
    let options = (Kind::Float, device);
    Ok(Slots {
        second: SecondMoment::Full {
            v: Tensor::f_zeros(shape, options)?,
        },
        m: Some(Tensor::f_zeros(shape, options)?),
    })
}

/// Updates `param` in place from `grad` at the group's `step` (1 for its first update)
/// with learning rate `learning_rate`, in torch's order. Call under `tch::no_grad`.
pub(crate) fn update_parameter(
    param: &mut Tensor,
    grad: &Tensor,
    slots: &mut Slots,
    config: &AdamWConfig,
    learning_rate: f64,
    step: u64,
) -> Result<()> {
    let device = param.device();
    // Low-precision parameters get an f32 working copy, rounded back at the end.
    let (mut w, low_precision) = working_copy(param)?;
    let g = grad.f_to_device(device)?.f_to_kind(Kind::Float)?;
    let (Some(m), SecondMoment::Full { v }) = (&mut slots.m, &mut slots.second) else {
        unreachable!("an AdamW group's slots are made by adamw::zero_slots");
    };
    let _ = w.f_mul_scalar_(1.0 - learning_rate * config.weight_decay)?;
    let _ = m.f_lerp_(&g, 1.0 - config.beta1)?;
    let _ = v.f_mul_scalar_(config.beta2)?;
    let _ = v.f_addcmul_(&g, &g.f_mul_scalar(1.0 - config.beta2)?)?;
    let t = step as f64;
    let bias_correction1 = 1.0 - config.beta1.powf(t);
    let bias_correction2 = 1.0 - config.beta2.powf(t);
    let mut denom = v.f_sqrt()?;
    let _ = denom.f_div_scalar_(bias_correction2.sqrt())?;
    let _ = denom.f_add_scalar_(config.epsilon)?;
    let _ = w.f_addcdiv_(&m.f_mul_scalar(-learning_rate / bias_correction1)?, &denom)?;
    if low_precision {
        param.f_copy_(&w)?;
    }
    Ok(())
}
