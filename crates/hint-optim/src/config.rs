//! Adafactor's hyper-parameters with t5x's names and defaults (`t5x/adafactor.py`).

use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result};
use crate::schedule::Schedule;

/// The hyper-parameters of one Adafactor group, named as in t5x so that gin bindings
/// such as `hyper/Adafactor.step_offset = 1100000` carry over unchanged.
///
/// `learning_rate` is the group's own constant (HINT's `learning_rate_adafactor`); when
/// `learning_rate_schedule` is set it replaces the constant and is evaluated at the
/// optimizer's global step, which is how t5x's trainer drives a plain Adafactor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdafactorConfig {
    /// Base step size (t5x leaves it to the trainer; 1e-3 is HINT's and t5x fine-tuning's).
    pub learning_rate: f64,
    /// Schedule evaluated at the global step; overrides `learning_rate` when set.
    pub learning_rate_schedule: Option<Schedule>,
    /// Use the factored second moment where the shape allows it.
    pub factored: bool,
    /// Scale the step by `max(RMS(W), epsilon2)`.
    pub multiply_by_parameter_scale: bool,
    /// First-moment decay; `None` keeps no momentum slot.
    pub beta1: Option<f64>,
    /// Exponent of the second-moment decay `1 - (t+1)^(-decay_rate)`.
    pub decay_rate: f64,
    /// Subtracted from the global step in the decay schedule only.
    pub step_offset: u64,
    /// Update-RMS clipping threshold; `None` disables clipping.
    pub clipping_threshold: Option<f64>,
    /// Decoupled weight decay `W' = (1 - wd) W - Δ` (not scaled by the learning rate).
    pub weight_decay_rate: Option<f64>,
    /// When set, `wd = (weight_decay_rate or 1) * learning_rate ^ exponent`.
    pub weight_decay_rate_lr_exponent: Option<f64>,
    /// Factor only when the second-largest dimension is at least this.
    pub min_dim_size_to_factor: i64,
    /// Added to the squared gradient.
    pub epsilon1: f64,
    /// Floor of the parameter scale.
    pub epsilon2: f64,
    /// Global-norm gradient clipping over this group's gradients; `None` disables it.
    pub global_norm_clip_threshold: Option<f64>,
    /// Ceiling of the parameter scale.
    pub max_parameter_scale: Option<f64>,
    /// Keep the old parameter and slots wherever the new value is NaN.
    pub skip_nan_updates: bool,
}

impl Default for AdafactorConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            learning_rate_schedule: None,
            factored: true,
            multiply_by_parameter_scale: true,
            beta1: None,
            decay_rate: 0.8,
            step_offset: 0,
            clipping_threshold: Some(1.0),
            weight_decay_rate: None,
            weight_decay_rate_lr_exponent: None,
            min_dim_size_to_factor: 128,
            epsilon1: 1e-30,
            epsilon2: 1e-3,
            global_norm_clip_threshold: None,
            max_parameter_scale: None,
            skip_nan_updates: false,
        }
    }
}

impl AdafactorConfig {
    /// The defaults with a constant learning rate.
    pub fn with_learning_rate(learning_rate: f64) -> Self {
        Self {
            learning_rate,
            ..Self::default()
        }
    }

    /// The learning rate at global `step`.
    pub fn learning_rate_at(&self, step: u64) -> Result<f64> {
        match &self.learning_rate_schedule {
            Some(schedule) => Ok(schedule.learning_rate(step)?),
            None => Ok(self.learning_rate),
        }
    }

    /// The weight-decay rate at learning rate `lr`, if weight decay is on.
    pub(crate) fn weight_decay_at(&self, lr: f64) -> Option<f64> {
        match self.weight_decay_rate_lr_exponent {
            Some(exponent) if exponent != 0.0 => {
                Some(self.weight_decay_rate.unwrap_or(1.0) * lr.powf(exponent))
            }
            _ => self.weight_decay_rate,
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
        if let Some(beta1) = self.beta1 {
            if !(0.0..1.0).contains(&beta1) {
                return bad(format!("beta1 must lie in [0, 1), got {beta1}"));
            }
        }
        if let Some(threshold) = self.clipping_threshold {
            if threshold <= 0.0 {
                return bad(format!(
                    "clipping_threshold must be positive, got {threshold}"
                ));
            }
        }
        if let Some(threshold) = self.global_norm_clip_threshold {
            if threshold <= 0.0 {
                return bad(format!(
                    "global_norm_clip_threshold must be positive, got {threshold}"
                ));
            }
        }
        if self.min_dim_size_to_factor < 1 {
            return bad(format!(
                "min_dim_size_to_factor must be at least 1, got {}",
                self.min_dim_size_to_factor
            ));
        }
        if let Some(schedule) = &self.learning_rate_schedule {
            schedule.parsed_factors()?;
        }
        Ok(())
    }
}
