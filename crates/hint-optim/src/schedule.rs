//! t5x learning-rate schedules (`utils.create_learning_rate_scheduler`): a product of
//! named factors such as `constant * rsqrt_decay`.

use std::f64::consts::PI;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A schedule string that names an unknown factor.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// t5x raises "Unknown factor" for the same input.
    #[error("unknown learning-rate factor `{factor}` in `{factors}`; known: constant, linear_warmup, linear_decay, rsqrt_decay, rsqrt_normalized_decay, decay_every, cosine_decay")]
    UnknownFactor {
        /// The offending factor.
        factor: String,
        /// The whole `factors` string.
        factors: String,
    },
}

/// One factor of a t5x schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleFactor {
    /// `lr *= base_learning_rate`
    Constant,
    /// `lr *= min(1, step / warmup_steps)`
    LinearWarmup,
    /// `lr *= base_learning_rate * min(step / warmup_steps, 1 + decay_factor * (warmup_steps - step))`
    LinearDecay,
    /// `lr /= sqrt(max(step, warmup_steps))`
    RsqrtDecay,
    /// `lr *= sqrt(warmup_steps) / sqrt(max(step, warmup_steps))`
    RsqrtNormalizedDecay,
    /// `lr *= decay_factor ^ floor(step / steps_per_decay)`
    DecayEvery,
    /// cosine over cycles of `steps_per_cycle` after `warmup_steps`
    CosineDecay,
}

impl FromStr for ScheduleFactor {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "constant" => Self::Constant,
            "linear_warmup" => Self::LinearWarmup,
            "linear_decay" => Self::LinearDecay,
            "rsqrt_decay" => Self::RsqrtDecay,
            "rsqrt_normalized_decay" => Self::RsqrtNormalizedDecay,
            "decay_every" => Self::DecayEvery,
            "cosine_decay" => Self::CosineDecay,
            other => return Err(other.to_string()),
        })
    }
}

/// A t5x learning-rate schedule, with t5x's argument names and defaults so that it binds
/// from gin as `Schedule.factors = "constant * rsqrt_decay"`.
///
/// ```
/// use hint_optim::Schedule;
/// let schedule = Schedule { factors: "constant * rsqrt_decay".into(), base_learning_rate: 1.0,
///                           warmup_steps: 10_000, ..Schedule::default() };
/// assert_eq!(schedule.learning_rate(5).unwrap(), 0.01);      // flat before warmup_steps
/// assert_eq!(schedule.learning_rate(40_000).unwrap(), 0.005); // then 1/sqrt(step)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Factors joined by `*`.
    pub factors: String,
    /// The `constant` factor.
    pub base_learning_rate: f64,
    /// Warm-up length for `linear_warmup`, the plateau of `rsqrt_decay`, …
    pub warmup_steps: u64,
    /// Multiplier of `decay_every` and slope of `linear_decay`.
    pub decay_factor: f64,
    /// Period of `decay_every`.
    pub steps_per_decay: u64,
    /// Period of `cosine_decay`.
    pub steps_per_cycle: u64,
    /// Steps subtracted before evaluating the factors (clamped at 0).
    pub step_offset: u64,
    /// Floor of the resulting learning rate.
    pub min_learning_rate: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            factors: "constant * linear_warmup * rsqrt_decay".to_string(),
            base_learning_rate: 0.5,
            warmup_steps: 1000,
            decay_factor: 0.5,
            steps_per_decay: 20_000,
            steps_per_cycle: 100_000,
            step_offset: 0,
            min_learning_rate: 1e-8,
        }
    }
}

impl Schedule {
    /// A constant learning rate (t5x's fine-tuning default shape).
    pub fn constant(learning_rate: f64) -> Self {
        Self {
            factors: "constant".to_string(),
            base_learning_rate: learning_rate,
            ..Self::default()
        }
    }

    /// Parses `factors` into its factors, in order.
    pub fn parsed_factors(&self) -> Result<Vec<ScheduleFactor>, ScheduleError> {
        self.factors
            .split('*')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                name.parse().map_err(|factor| ScheduleError::UnknownFactor {
                    factor,
                    factors: self.factors.clone(),
                })
            })
            .collect()
    }

    /// The learning rate at global `step`.
    pub fn learning_rate(&self, step: u64) -> Result<f64, ScheduleError> {
        let step = step.saturating_sub(self.step_offset) as f64;
        let warmup = self.warmup_steps as f64;
        let mut lr = 1.0;
        for factor in self.parsed_factors()? {
            match factor {
                ScheduleFactor::Constant => lr *= self.base_learning_rate,
                ScheduleFactor::LinearWarmup => lr *= (step / warmup).min(1.0),
                ScheduleFactor::LinearDecay => {
                    lr *= self.base_learning_rate
                        * (step / warmup).min(1.0 + self.decay_factor * (warmup - step))
                }
                ScheduleFactor::RsqrtDecay => lr /= step.max(warmup).sqrt(),
                ScheduleFactor::RsqrtNormalizedDecay => {
                    lr *= warmup.sqrt() / step.max(warmup).sqrt()
                }
                ScheduleFactor::DecayEvery => {
                    lr *= self
                        .decay_factor
                        .powf((step / self.steps_per_decay as f64).floor())
                }
                ScheduleFactor::CosineDecay => {
                    let progress = ((step - warmup) / self.steps_per_cycle as f64).max(0.0);
                    lr *= (0.5 * (1.0 + (PI * (progress % 1.0)).cos())).max(0.0);
                }
            }
        }
        Ok(lr.max(self.min_learning_rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn default_schedule_ramps_then_decays() {
        let schedule = Schedule::default();
        // 0.5 * min(1, 500/1000) / sqrt(1000)
        assert!(close(
            schedule.learning_rate(500).unwrap(),
            0.5 * 0.5 / 1000f64.sqrt()
        ));
        assert!(close(
            schedule.learning_rate(4000).unwrap(),
            0.5 / 4000f64.sqrt()
        ));
        // step 0 gives lr 0, clamped to min_learning_rate.
        assert_eq!(schedule.learning_rate(0).unwrap(), 1e-8);
    }

    #[test]
    fn step_offset_delays_the_schedule() {
        let schedule = Schedule {
            factors: "constant * linear_warmup".into(),
            base_learning_rate: 2.0,
            warmup_steps: 10,
            step_offset: 100,
            ..Schedule::default()
        };
        assert_eq!(schedule.learning_rate(50).unwrap(), 1e-8);
        assert!(close(schedule.learning_rate(105).unwrap(), 1.0));
        assert!(close(schedule.learning_rate(200).unwrap(), 2.0));
    }

    #[test]
    fn cosine_decay_restarts_every_cycle() {
        let schedule = Schedule {
            factors: "constant * cosine_decay".into(),
            base_learning_rate: 1.0,
            warmup_steps: 0,
            steps_per_cycle: 100,
            ..Schedule::default()
        };
        assert!(close(schedule.learning_rate(0).unwrap(), 1.0));
        assert!(close(schedule.learning_rate(50).unwrap(), 0.5));
        assert!(close(schedule.learning_rate(100).unwrap(), 1.0));
    }

    #[test]
    fn decay_every_and_rsqrt_normalized() {
        let schedule = Schedule {
            factors: "constant*decay_every".into(),
            base_learning_rate: 1.0,
            ..Schedule::default()
        };
        assert!(close(schedule.learning_rate(45_000).unwrap(), 0.25));
        let schedule = Schedule {
            factors: "rsqrt_normalized_decay".into(),
            warmup_steps: 100,
            ..Schedule::default()
        };
        assert!(close(schedule.learning_rate(400).unwrap(), 0.5));
    }

    #[test]
    fn unknown_factor_is_an_error_naming_it() {
        let schedule = Schedule {
            factors: "constant * warmup".into(),
            ..Schedule::default()
        };
        let err = schedule.learning_rate(1).unwrap_err();
        assert_eq!(
            err,
            ScheduleError::UnknownFactor {
                factor: "warmup".into(),
                factors: "constant * warmup".into()
            }
        );
    }
}
