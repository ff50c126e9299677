//! Saving and restoring the optimizer state in safetensors, with t5x's partial-restore
//! semantics (`RestoreCheckpointConfig.assignment_map`, `fallback_to_scratch`).
//!
//! Names mirror t5x's checkpoint paths with dots: `state.param_states.<param>.<slot>`
//! for slots and `state.step` for the global step. Slots t5x stores as `(1,)` dummies
//! are not written, and dummies found in a file are ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{OptimError, Result};
use crate::groups::full_match_regex;
use crate::optimizer::Adafactor;

/// Key of the global step.
pub const STEP_KEY: &str = "state.step";

/// Key of a parameter's slot.
pub fn slot_key(param: &str, slot: &str) -> String {
    format!("state.param_states.{param}.{slot}")
}

/// How to restore a saved state into an optimizer built for (possibly) other parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreOptions {
    /// Ordered `(pattern, replacement)` rules over this optimizer's keys (`state.step`,
    /// `state.param_states.<param>.<slot>`); the first pattern that fully matches
    /// decides. `None` keeps the fresh (zero) value; a replacement names the saved key
    /// to read, with `$1`-style group references. A rule that matches nothing is an error.
    pub assignment_map: Vec<(String, Option<String>)>,
    /// Slots absent from the saved state start fresh instead of failing.
    pub fallback_to_scratch: bool,
}

impl RestoreOptions {
    /// HINT's `restore_pretrained.gin`: hypernetwork slots fresh, the rest from T5.
    pub fn hint_from_t5() -> Self {
        Self {
            assignment_map: vec![("^.*hyper.*$".to_string(), None)],
            fallback_to_scratch: true,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Slot keys that start fresh (zero), skipped by a rule or absent from the file.
    pub initialised: Vec<String>,
    /// Slot keys read from the file.
    pub restored: Vec<String>,
    /// Keys of the file that nothing read (frozen or unknown parameters, dummies).
    pub unused: Vec<String>,
    /// The restored global step, if the file had one and no rule skipped it.
    pub step: Option<u64>,
}

enum Source {
    Fresh,
    Read(String),
}

impl Adafactor {
    /// The state as named tensors (slots share storage with the optimizer; the step is new).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(1 + 2 * self.params.len());
        out.push((STEP_KEY.to_string(), Tensor::from(self.step as i64)));
        for param in &self.params {
            if let Some(slots) = &param.slots {
                for (slot, tensor) in slots.named() {
                    out.push((slot_key(&param.name, slot), tensor.shallow_clone()));
                }
            }
        }
        out
    }

    /// Writes the state to a safetensors file, via a temporary name and a rename so a
    /// crash never leaves a truncated file under `path`.
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors = self
            .state_tensors()
            .into_iter()
            .map(|(name, t)| {
                let t = if t.device() == Device::Cpu {
                    t
                } else {
                    t.f_to_device(Device::Cpu)?
                };
                Ok((name, t.f_contiguous()?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        Tensor::write_safetensors(&tensors, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|source| OptimError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a state written by [`Adafactor::save_state`] (or converted from t5x) and
    /// restores it per `options`.
    pub fn load_state(
        &mut self,
        path: impl AsRef<Path>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let tensors = Tensor::read_safetensors(path.as_ref())?;
        self.restore_state(tensors, options)
    }

    /// Restores from named tensors per `options`. Everything is checked before anything
    /// is written, so an error leaves the optimizer unchanged.
    pub fn restore_state(
        &mut self,
        saved: Vec<(String, Tensor)>,
        options: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let saved: HashMap<String, Tensor> = saved.into_iter().collect();
        let rules = options
            .assignment_map
            .iter()
            .map(|(pattern, replacement)| {
                full_match_regex(pattern)
                    .map(|re| (re, replacement.clone()))
                    .map_err(|source| OptimError::InvalidAssignmentPattern {
                        pattern: pattern.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<(Regex, Option<String>)>>>()?;
        let mut rule_used = vec![false; rules.len()];
        let mut resolve = |key: &str| -> Result<Source> {
            for (i, (re, replacement)) in rules.iter().enumerate() {
                if let Some(caps) = re.captures(key) {
                    rule_used[i] = true;
                    return Ok(match replacement {
                        None => Source::Fresh,
                        Some(template) => {
                            let mut source = String::new();
                            caps.expand(template, &mut source);
                            if !saved.contains_key(&source) && !options.fallback_to_scratch {
                                return Err(OptimError::MissingAssignedSlot {
                                    key: key.to_string(),
                                    source_key: source,
                                });
                            }
                            Source::Read(source)
                        }
                    });
                }
            }
            Ok(Source::Read(key.to_string()))
        };

        let mut report = RestoreReport::default();
        let mut used_keys = std::collections::HashSet::new();
        let step = match resolve(STEP_KEY)? {
            Source::Read(source) => match saved.get(&source) {
                Some(t) => {
                    used_keys.insert(source.clone());
                    Some(read_step(&source, t)?)
                }
                None => None,
            },
            Source::Fresh => None,
        };

        // (param index, slot index, source key or fresh)
        let mut plan = Vec::new();
        let mut missing = Vec::new();
        for (p, param) in self.params.iter().enumerate() {
            let Some(slots) = &param.slots else { continue };
            for (s, (slot, tensor)) in slots.named().into_iter().enumerate() {
                let key = slot_key(&param.name, slot);
                let source = match resolve(&key)? {
                    Source::Fresh => None,
                    Source::Read(source) => match saved.get(&source) {
                        Some(found) => {
                            let expected = tensor.size();
                            if found.size() != expected {
                                return Err(OptimError::SlotShapeMismatch {
                                    key,
                                    source_key: source,
                                    expected,
                                    found: found.size(),
                                });
                            }
                            Some(source)
                        }
                        None if options.fallback_to_scratch => None,
                        None => {
                            missing.push(key.clone());
                            None
                        }
                    },
                };
                plan.push((p, s, key, source));
            }
        }
        if !missing.is_empty() {
            return Err(OptimError::MissingSlots(missing));
        }
        if let Some(i) = rule_used.iter().position(|used| !used) {
            return Err(OptimError::UnusedAssignmentRule(
                options.assignment_map[i].0.clone(),
            ));
        }

        tch::no_grad(|| -> Result<()> {
            for (p, s, key, source) in plan {
                let slots = self.params[p]
                    .slots
                    .as_mut()
                    .expect("planned only for trainable parameters");
                let (_, tensor) = slots
                    .named_mut()
                    .into_iter()
                    .nth(s)
                    .expect("slot index from named()");
                match source {
                    Some(source) => {
                        tensor.f_copy_(&saved[&source].f_to_kind(Kind::Float)?)?;
                        used_keys.insert(source);
                        report.restored.push(key);
                    }
                    None => {
                        let _ = tensor.f_zero_()?;
                        report.initialised.push(key);
                    }
                }
            }
            Ok(())
        })?;
        if let Some(step) = step {
            self.step = step;
        }
        report.step = step;
        report.unused = saved
            .keys()
            .filter(|k| !used_keys.contains(*k))
            .cloned()
            .collect();
        report.unused.sort();
        Ok(report)
    }
}

fn read_step(key: &str, t: &Tensor) -> Result<u64> {
    let invalid = |reason: String| OptimError::InvalidStep {
        key: key.to_string(),
        reason,
    };
    if !matches!(t.kind(), Kind::Int | Kind::Int64) || t.numel() != 1 {
        return Err(invalid(format!(
            "kind {:?}, shape {:?}",
            t.kind(),
            t.size()
        )));
    }
    let value = t.f_reshape([1])?.f_int64_value(&[0])?;
    u64::try_from(value).map_err(|_| invalid(format!("value {value}")))
}
