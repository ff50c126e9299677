//! Restoring a checkpoint under other names: t5x's `assignment_map`.
//!
//! A map is an ordered list of rules `(pattern, replacement)`. For every variable of the
//! model, the **first** rule whose pattern matches the whole name decides: no replacement
//! keeps the variable's fresh initialisation; a replacement names the checkpoint tensor
//! it is read from (capture groups allowed, written `$1` or, as in t5x's Python, `\1`). A
//! variable no rule matches is read under its own name. One checkpoint tensor may feed
//! several variables (the T5 encoder copied into a separate instruction encoder).
//!
//! As in t5x, a rule that matches no variable is an error (it is a typo, or meant for
//! another model), and so is a variable whose tensor the checkpoint lacks — unless
//! `fallback_to_scratch`, which keeps its initialisation and reports it.
//!
//! ```
//! # fn main() -> Result<(), hint_model::ModelError> {
//! use hint_model::AssignmentMap;
//! // The reference's separate_henc.gin, in hint's names.
//! let map = AssignmentMap::new(&[
//!     (r"hyper\.hyper_encoder\.(.*)".into(), Some(r"encoder.\1".into())),
//!     (r"hyper\..*".into(), None),
//! ])?;
//! assert_eq!(
//!     map.source_of("hyper.hyper_encoder.block.0.layer.0.SelfAttention.q.weight").1,
//!     Some("encoder.block.0.layer.0.SelfAttention.q.weight".to_string())
//! );
//! assert_eq!(map.source_of("hyper.component_embedding").1, None);
//! assert_eq!(map.source_of("shared.weight").1, Some("shared.weight".to_string()));
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use regex::Regex;
use tch::{nn::VarStore, Tensor};

use crate::parameters::{copy_checked, read_safetensors};
use crate::t5::checkpoint::weight_files;
use crate::ModelError;

/// One rule: a pattern over the model's variable names and what it reads.
#[derive(Debug, Clone)]
struct Rule {
    text: String,
    pattern: Regex,
    replacement: Option<String>,
}

/// An ordered list of renaming rules (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct AssignmentMap {
    rules: Vec<Rule>,
    naming: AssignmentNaming,
}

/// The spelling of variable names a map's patterns and replacements are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentNaming {
    /// hint's (Hugging Face) names: `encoder.block.0.layer.0.SelfAttention.q.weight`.
    #[default]
    Hint,
    /// t5x's flattened names (`target/encoder/layers_0/attention/query/kernel`;
    /// [`crate::t5x_names`]): the original HINT's gin files are written in them. Both the
    /// model's variables and the checkpoint's tensors are matched under these names.
    T5x,
}

impl AssignmentNaming {
    /// `name` (hint's spelling) in this spelling.
    pub fn spell(self, name: &str) -> String {
        match self {
            Self::Hint => name.to_string(),
            Self::T5x => crate::t5x_names::to_t5x(name),
        }
    }
}

/// What a mapped restore did, by variable name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentReport {
    /// Variables read from the checkpoint, with the tensor each came from.
    pub loaded: BTreeMap<String, String>,
    /// Variables a rule without replacement kept fresh.
    pub skipped: Vec<String>,
    /// Variables whose tensor the checkpoint lacks, kept fresh (`fallback_to_scratch`),
    /// with the tensor they would have come from.
    pub kept_fresh: BTreeMap<String, String>,
    /// Checkpoint tensors no variable read.
    pub unused: Vec<String>,
}

impl AssignmentMap {
    /// Compiles `rules` (pattern, replacement); a pattern that is not a valid regular
    /// expression is an error naming the rule.
    pub fn new(rules: &[(String, Option<String>)]) -> Result<Self, ModelError> {
        Self::with_naming(rules, AssignmentNaming::Hint)
    }

    /// [`AssignmentMap::new`] with rules written in `naming`'s spelling of names.
    pub fn with_naming(
        rules: &[(String, Option<String>)],
        naming: AssignmentNaming,
    ) -> Result<Self, ModelError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, (text, replacement))| {
                // Anchored: t5x matches the whole name (`re.fullmatch`).
                let pattern = Regex::new(&format!("^(?:{text})$")).map_err(|e| {
                    ModelError::AssignmentRule {
                        index,
                        pattern: text.clone(),
                        message: e.to_string(),
                    }
                })?;
                Ok(Rule {
                    text: text.clone(),
                    pattern,
                    replacement: replacement.as_ref().map(|r| python_groups_to_rust(r)),
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Self { rules, naming })
    }

    /// The spelling the rules are written in.
    pub fn naming(&self) -> AssignmentNaming {
        self.naming
    }

    /// Whether there are no rules (every variable reads its own name).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that decides `name` (its index, if any) and the checkpoint tensor it reads
    /// (`None`: kept fresh); both in the map's spelling ([`AssignmentMap::naming`]).
    pub fn source_of(&self, name: &str) -> (Option<usize>, Option<String>) {
        for (index, rule) in self.rules.iter().enumerate() {
            if let Some(captures) = rule.pattern.captures(name) {
                let source = rule.replacement.as_ref().map(|replacement| {
                    let mut expanded = String::new();
                    captures.expand(replacement, &mut expanded);
                    expanded
                });
                return (Some(index), source);
            }
        }
        (None, Some(name.to_string()))
    }
}

/// `\1` (Python's `match.expand`) as `${1}` (the regex crate's); `$` kept as it is.
fn python_groups_to_rust(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            out.push_str(&format!("${{{digits}}}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Fills the variables of `vs` from the Hugging Face-layout checkpoint in `dir` under
/// `map`'s names (see the module documentation), keeping each variable's dtype and device.
///
/// Errors, before any variable changes: a rule that matches no variable. After reading:
/// a tensor whose shape is not its variable's (named with both), and — without
/// `fallback_to_scratch` — variables whose tensor the checkpoint lacks.
pub fn load_weights_mapped(
    vs: &VarStore,
    dir: &Path,
    map: &AssignmentMap,
    fallback_to_scratch: bool,
) -> Result<AssignmentReport, ModelError> {
    let variables: HashMap<String, Tensor> = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let mut report = AssignmentReport::default();
    let mut used_rules = BTreeSet::new();
    // Checkpoint tensor → the variables it fills.
    let mut readers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in names {
        let (rule, source) = map.source_of(&map.naming.spell(name));
        if let Some(rule) = rule {
            used_rules.insert(rule);
        }
        match source {
            Some(source) => readers.entry(source).or_default().push(name.clone()),
            None => report.skipped.push(name.clone()),
        }
    }
    if let Some((index, rule)) = map
        .rules
        .iter()
        .enumerate()
        .find(|(index, _)| !used_rules.contains(index))
    {
        return Err(ModelError::AssignmentRule {
            index,
            pattern: rule.text.clone(),
            message: "matches no variable of the model".into(),
        });
    }
    for file in weight_files(dir)? {
        for (tensor_name, tensor) in read_safetensors(&file)? {
            // Checkpoint tensors are matched in the map's spelling too.
            let source = map.naming.spell(&tensor_name);
            let Some(targets) = readers.get(&source) else {
                report.unused.push(tensor_name);
                continue;
            };
            for target in targets {
                let label = if *target == source {
                    source.clone()
                } else {
                    format!("{source}` (for `{target}`)")
                };
                copy_checked(&variables[target], &tensor, &label, &file)?;
                report.loaded.insert(target.clone(), source.clone());
            }
        }
    }
    let lacking: BTreeMap<String, String> = readers
        .iter()
        .flat_map(|(source, targets)| targets.iter().map(move |t| (t.clone(), source.clone())))
        .filter(|(target, _)| !report.loaded.contains_key(target))
        .collect();
    if !lacking.is_empty() {
        if !fallback_to_scratch {
            return Err(ModelError::MissingWeights {
                dir: dir.to_path_buf(),
                names: lacking
                    .iter()
                    .map(|(target, source)| {
                        if target == source {
                            target.clone()
                        } else {
                            format!("{source} (for {target})")
                        }
                    })
                    .collect(),
            });
        }
        report.kept_fresh = lacking;
    }
    report.unused.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_group_references_become_rust_ones() {
        assert_eq!(python_groups_to_rust(r"\1.encoder.\3"), "${1}.encoder.${3}");
        assert_eq!(python_groups_to_rust(r"$1x"), "$1x");
        assert_eq!(python_groups_to_rust(r"a\b"), r"a\b");
    }

    #[test]
    fn the_first_matching_rule_decides_and_patterns_match_whole_names() {
        let map = AssignmentMap::new(&[
            (r"decoder\..*".into(), None),
            (r"(.*)\.weight".into(), Some(r"\1.kernel".into())),
        ])
        .unwrap();
        assert_eq!(
            map.source_of("decoder.final_layer_norm.weight"),
            (Some(0), None)
        );
        assert_eq!(
            map.source_of("shared.weight"),
            (Some(1), Some("shared.kernel".into()))
        );
        // `weight` alone does not match `(.*)\.weight`, nor does a name it only contains.
        assert_eq!(
            map.source_of("weight.bias"),
            (None, Some("weight.bias".into()))
        );
        let bad = AssignmentMap::new(&[("(".into(), None)]).unwrap_err();
        assert!(bad.to_string().contains("rule 0"), "{bad}");
    }
}
