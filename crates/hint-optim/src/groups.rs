//! Parameter groups: regex rules that give each parameter its Adafactor (or AdamW)
//! settings or freeze it (t5x `MultiOptimizer` with `ModelParamTraversal` filters).

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::adamw::AdamWConfig;
use crate::config::AdafactorConfig;
use crate::error::{OptimError, Result};
use crate::slots::state_elements;

/// One rule of a multi-group optimizer.
///
/// `filter` must match a parameter's whole name (Python's `re.fullmatch`, as in HINT's
/// gins). Rust's regex has no look-around, so HINT's `inverse_match_any` is written
/// as the same filter with `invert = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroup {
    /// The group's name, used in errors and to change its settings later.
    pub name: String,
    /// Regular expression over the parameter name, anchored at both ends.
    pub filter: String,
    /// Select the parameters the filter does **not** match.
    #[serde(default)]
    pub invert: bool,
    /// Parameters this also matches (anchored) are left to other groups: the `hyper`
    /// group without a separate instruction encoder that has a group of its own.
    #[serde(default)]
    pub except: Option<String>,
    /// No update and no optimizer state for these parameters.
    #[serde(default)]
    pub frozen: bool,
    /// Settings of a trainable group (ignored when frozen).
    #[serde(default)]
    pub hparams: AdafactorConfig,
    /// When set, the group is updated by AdamW with these settings instead of Adafactor
    /// (`hparams` is then unused).
    #[serde(default)]
    pub adamw: Option<AdamWConfig>,
}

impl ParamGroup {
    /// A trainable group.
    pub fn new(
        name: impl Into<String>,
        filter: impl Into<String>,
        hparams: AdafactorConfig,
    ) -> Self {
        Self {
            name: name.into(),
            filter: filter.into(),
            invert: false,
            except: None,
            frozen: false,
            hparams,
            adamw: None,
        }
    }

    /// A trainable group updated by AdamW.
    pub fn adamw(name: impl Into<String>, filter: impl Into<String>, config: AdamWConfig) -> Self {
        Self {
            adamw: Some(config),
            ..Self::new(name, filter, AdafactorConfig::default())
        }
    }

    /// The group's learning rate at global `step`.
    pub fn learning_rate_at(&self, step: u64) -> Result<f64> {
        match &self.adamw {
            Some(adamw) => adamw.learning_rate_at(step),
            None => self.hparams.learning_rate_at(step),
        }
    }

    /// The global step at which the group's state starts.
    pub fn step_offset(&self) -> u64 {
        self.adamw
            .as_ref()
            .map_or(self.hparams.step_offset, |a| a.step_offset)
    }

    /// Elements of optimizer state a parameter of `shape` gets in this group (0 frozen),
    /// without allocating it: what a memory planner counts.
    pub fn state_elements(&self, shape: &[i64]) -> i64 {
        match (&self.adamw, self.frozen) {
            (_, true) => 0,
            (Some(_), false) => 2 * shape.iter().product::<i64>(),
            (None, false) => state_elements(shape, &self.hparams),
        }
    }

    /// A frozen group: its parameters are never updated and have no state.
    pub fn frozen(name: impl Into<String>, filter: impl Into<String>) -> Self {
        Self {
            frozen: true,
            ..Self::new(name, filter, AdafactorConfig::default())
        }
    }

    /// The same group selecting the complement of its filter.
    pub fn inverted(self) -> Self {
        Self {
            invert: true,
            ..self
        }
    }

    /// The same group without the parameters `pattern` matches.
    pub fn except(self, pattern: impl Into<String>) -> Self {
        Self {
            except: Some(pattern.into()),
            ..self
        }
    }

    /// HINT's "dual" optimizer (`partial_train_adafactor_dual.gin`): parameters whose
    /// name contains `hyper` in group `hyper`, everything else in group `t5`.
    pub fn dual(hyper: AdafactorConfig, t5: AdafactorConfig) -> Vec<Self> {
        vec![
            Self::new("hyper", ".*hyper.*", hyper),
            Self::new("t5", ".*hyper.*", t5).inverted(),
        ]
    }

    /// The same two groups, each updated by AdamW (the reference's
    /// `partial_train_adam.gin`, with its instruction-encoder group folded into `t5` when
    /// the encoder is shared).
    pub fn dual_adamw(hyper: AdamWConfig, t5: AdamWConfig) -> Vec<Self> {
        vec![
            Self::adamw("hyper", ".*hyper.*", hyper),
            Self::adamw("t5", ".*hyper.*", t5).inverted(),
        ]
    }

    /// The dual groups with a third for a separate instruction encoder (the reference's
    /// `partial_train_adafactor.gin` meant its `roberta` group for the instruction encoder):
    /// `henc` is `hyper.hyper_encoder.*`, `hyper` the rest of the hypernetwork, `t5` the
    /// others. With a shared encoder `henc` is empty.
    pub fn triple(hyper: AdafactorConfig, henc: AdafactorConfig, t5: AdafactorConfig) -> Vec<Self> {
        vec![
            Self::new("hyper", ".*hyper.*", hyper).except(INSTRUCTION_ENCODER),
            Self::new("henc", INSTRUCTION_ENCODER, henc),
            Self::new("t5", ".*hyper.*", t5).inverted(),
        ]
    }

    /// [`ParamGroup::triple`] with every group updated by AdamW (the reference's
    /// `partial_train_adam.gin` has a `roberta` group for the instruction encoder).
    pub fn triple_adamw(hyper: AdamWConfig, henc: AdamWConfig, t5: AdamWConfig) -> Vec<Self> {
        vec![
            Self::adamw("hyper", ".*hyper.*", hyper).except(INSTRUCTION_ENCODER),
            Self::adamw("henc", INSTRUCTION_ENCODER, henc),
            Self::adamw("t5", ".*hyper.*", t5).inverted(),
        ]
    }
}

/// A separate instruction encoder's parameters (`share_hnet_encoder = False`).
const INSTRUCTION_ENCODER: &str = r"hyper\.hyper_encoder\..*";

/// The group each of `names` falls in (an index into `groups`), as [`crate::Adafactor`]
/// assigns them, without any tensor: for planning. Errors as the optimizer's would.
pub fn group_of_each(names: &[String], groups: &[ParamGroup]) -> Result<Vec<usize>> {
    assign(names, groups)
}

/// A compiled full-match regex.
pub(crate) fn full_match_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// The index of the group of every name, in order; errors name every overlapping or
/// unmatched parameter at once.
pub(crate) fn assign(names: &[String], groups: &[ParamGroup]) -> Result<Vec<usize>> {
    for (i, group) in groups.iter().enumerate() {
        if groups[..i].iter().any(|other| other.name == group.name) {
            return Err(OptimError::DuplicateGroup(group.name.clone()));
        }
        if !group.frozen {
            match &group.adamw {
                Some(adamw) => adamw.validate(&group.name)?,
                None => group.hparams.validate(&group.name)?,
            }
        }
    }
    let compile = |group: &ParamGroup, pattern: &str| {
        full_match_regex(pattern).map_err(|source| OptimError::InvalidFilter {
            group: group.name.clone(),
            filter: pattern.to_string(),
            source,
        })
    };
    let filters = groups
        .iter()
        .map(|group| {
            let except = group
                .except
                .as_deref()
                .map(|pattern| compile(group, pattern))
                .transpose()?;
            Ok((compile(group, &group.filter)?, except))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut assignment = Vec::with_capacity(names.len());
    let mut overlaps = Vec::new();
    let mut unmatched = Vec::new();
    for name in names {
        let matching: Vec<usize> = groups
            .iter()
            .zip(&filters)
            .enumerate()
            .filter(|(_, (group, (filter, except)))| {
                filter.is_match(name) != group.invert
                    && !except.as_ref().is_some_and(|e| e.is_match(name))
            })
            .map(|(i, _)| i)
            .collect();
        match matching.as_slice() {
            [one] => assignment.push(*one),
            [] => unmatched.push(name.clone()),
            many => overlaps.push((
                name.clone(),
                many.iter().map(|&i| groups[i].name.clone()).collect(),
            )),
        }
    }
    if !overlaps.is_empty() {
        return Err(OptimError::OverlappingGroups(overlaps));
    }
    if !unmatched.is_empty() {
        return Err(OptimError::UnmatchedParameters(unmatched));
    }
    Ok(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dual_split() {
        let groups = ParamGroup::dual(AdafactorConfig::default(), AdafactorConfig::default());
        let params = names(&[
            "hyper.component_embedding",
            "encoder.block.0.layer.0.q.weight",
            "shared.weight",
        ]);
        assert_eq!(assign(&params, &groups).unwrap(), vec![0, 1, 1]);
    }

    #[test]
    fn filters_match_whole_names() {
        let groups = vec![
            ParamGroup::new("a", "encoder", AdafactorConfig::default()),
            ParamGroup::frozen("rest", ".*"),
        ];
        // `encoder` alone would be a substring match in Python's re.search, not fullmatch.
        assert!(matches!(
            assign(&names(&["encoder.x"]), &groups),
            Ok(v) if v == vec![1]
        ));
    }

    #[test]
    fn overlaps_and_unmatched_name_the_parameters() {
        let groups = vec![
            ParamGroup::new("enc", "encoder\\..*", AdafactorConfig::default()),
            ParamGroup::new("q", ".*\\.q\\..*", AdafactorConfig::default()),
        ];
        let err = assign(
            &names(&["encoder.q.w", "encoder.k.w", "decoder.k.w"]),
            &groups,
        )
        .unwrap_err();
        match &err {
            OptimError::OverlappingGroups(list) => {
                assert_eq!(
                    list,
                    &vec![(
                        "encoder.q.w".to_string(),
                        vec!["enc".to_string(), "q".to_string()]
                    )]
                );
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("encoder.q.w"));
        let err = assign(&names(&["encoder.k.w", "decoder.k.w"]), &groups).unwrap_err();
        assert!(
            matches!(&err, OptimError::UnmatchedParameters(list) if list == &names(&["decoder.k.w"]))
        );
        assert!(err.to_string().contains("decoder.k.w"));
    }

    #[test]
    fn triple_split_gives_the_instruction_encoder_its_own_group() {
        let groups = ParamGroup::triple(
            AdafactorConfig::default(),
            AdafactorConfig::default(),
            AdafactorConfig::default(),
        );
        let params = names(&[
            "hyper.component_embedding",
            "hyper.hyper_encoder.block.0.layer.0.SelfAttention.q.weight",
            "hyper.adapter_down.wi.weight",
            "encoder.block.0.layer.0.SelfAttention.q.weight",
        ]);
        assert_eq!(assign(&params, &groups).unwrap(), vec![0, 1, 0, 2]);
    }

    #[test]
    fn bad_definitions() {
        let dup = vec![ParamGroup::frozen("a", ".*"), ParamGroup::frozen("a", "x")];
        assert!(matches!(assign(&[], &dup), Err(OptimError::DuplicateGroup(name)) if name == "a"));
        let bad = vec![ParamGroup::frozen("a", "(")];
        assert!(matches!(
            assign(&[], &bad),
            Err(OptimError::InvalidFilter { .. })
        ));
        let bad_beta = vec![ParamGroup::new(
            "a",
            ".*",
            AdafactorConfig {
                beta1: Some(1.5),
                ..AdafactorConfig::default()
            },
        )];
        assert!(matches!(
            assign(&[], &bad_beta),
            Err(OptimError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn deserialises_with_t5x_names() {
        let group: ParamGroup = serde_json::from_str(
            r#"{"name": "hyper", "filter": ".*hyper.*",
                "hparams": {"learning_rate": 0.001, "step_offset": 1100000, "multiply_by_parameter_scale": false}}"#,
        )
        .unwrap();
        assert_eq!(group.hparams.step_offset, 1_100_000);
        assert!(!group.hparams.multiply_by_parameter_scale);
        assert_eq!(group.hparams.decay_rate, 0.8);
        let unknown = serde_json::from_str::<AdafactorConfig>(r#"{"lr": 1.0}"#);
        assert!(unknown.is_err());
    }
}
