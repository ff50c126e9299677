//! Super-NaturalInstructions: reading a checkout (`tasks/*.json` plus `splits/<name>/…`), the
//! Tk-Instruct template (`DataCollatorForNI`) and HINT's variants, and the instance sampling of
//! both papers (train: 100 random instances per task, seeded; test: the first 100).
//!
//! The exact strings follow `data.md` §3: [`tk_instruct_source`] reproduces the collator's
//! concatenation byte for byte (checked by the golden test on `task063_first_i_elements`), and
//! [`SuperNiVariant`] names HINT's registrations (`natural_instructions`,
//! `natural_instruction_positive_example_hyper_{1,2}`, `natural_instructions_def*`,
//! `natural_instructions_split_mimic_def`). [`register_superni`] registers a checkout as
//! tasks; [`SuperNiOptions`] is its gin configurable `hint.data.SuperNI`.

mod registration;

pub use registration::{register, register_superni, SuperNiOptions};

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Position};
use crate::example::{Example, FeatureValue};
use crate::rng::{fnv1a, SplitMix64};

/// One demonstration (`Positive Examples` / `Negative Examples` entries).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SuperNiDemonstration {
    /// The example input.
    pub input: String,
    /// The example output (a single string, unlike instances).
    pub output: String,
    /// Why the output is (in)correct; optional in pre-release files.
    #[serde(default)]
    pub explanation: String,
}

/// One instance: an input and all acceptable outputs (the references).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SuperNiInstance {
    /// `taskNNN-<uuid hex>`; absent in some pre-release files.
    #[serde(default)]
    pub id: Option<String>,
    /// The instance input.
    pub input: String,
    /// The references (at least one; may be empty strings).
    pub output: Vec<String>,
}

/// `Definition` is a list of strings in v2.x files and a plain string in older ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// The raw layout of a task file; keys as in the JSON (with spaces).
#[derive(Debug, Deserialize)]
struct RawTask {
    #[serde(rename = "Definition")]
    definition: StringOrList,
    #[serde(rename = "Positive Examples", default)]
    positive_examples: Vec<SuperNiDemonstration>,
    #[serde(rename = "Negative Examples", default)]
    negative_examples: Vec<SuperNiDemonstration>,
    #[serde(rename = "Instances")]
    instances: Vec<SuperNiInstance>,
    #[serde(rename = "Categories", default)]
    categories: Vec<String>,
}

/// A Super-NI task file, as the loaders use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperNiTask {
    /// The file stem, e.g. `task063_first_i_elements`.
    pub name: String,
    /// `Definition[0]` (or the plain string of older files), unmodified.
    pub definition: String,
    /// `Positive Examples`.
    pub positive_examples: Vec<SuperNiDemonstration>,
    /// `Negative Examples`.
    pub negative_examples: Vec<SuperNiDemonstration>,
    /// `Instances`.
    pub instances: Vec<SuperNiInstance>,
    /// `Categories` (`Categories[0]` groups per-category scores).
    pub categories: Vec<String>,
}

impl SuperNiTask {
    /// Reads and checks one task file. Errors name the file and the line/column serde saw,
    /// and the field when the problem is a missing one.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_json_str(&name, &text, path)
    }

    /// Parses a task from JSON text; `path` only labels errors.
    pub fn from_json_str(name: &str, text: &str, path: &Path) -> Result<Self, DataError> {
        let raw: RawTask = serde_json::from_str(text).map_err(|e| DataError::Record {
            path: path.to_path_buf(),
            position: Position::Line(e.line() as u64),
            field: missing_field(&e.to_string()),
            message: e.to_string(),
        })?;
        let definition = match raw.definition {
            StringOrList::One(s) => s,
            StringOrList::Many(list) => {
                list.into_iter().next().ok_or_else(|| DataError::Format {
                    path: path.to_path_buf(),
                    message: "field `Definition` is an empty list".into(),
                })?
            }
        };
        if let Some(i) = raw.instances.iter().position(|x| x.output.is_empty()) {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                message: format!(
                    "field `Instances[{i}].output` is an empty list (need at least one reference)"
                ),
            });
        }
        Ok(Self {
            name: name.to_string(),
            definition,
            positive_examples: raw.positive_examples,
            negative_examples: raw.negative_examples,
            instances: raw.instances,
            categories: raw.categories,
        })
    }

    /// The task number `NNN` of `taskNNN_…` (HINT's `task_names` feature), if the name has one.
    pub fn number(&self) -> Option<i64> {
        let digits: String = self
            .name
            .strip_prefix("task")?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }
}

/// serde_json reports a missing key as "missing field `X` at line …"; the key is the field.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.split("missing field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

/// A Super-NI checkout: `<root>/tasks/<name>.json` and `<root>/splits/<split>/*_tasks.txt`.
#[derive(Debug, Clone)]
pub struct SuperNiCheckout {
    root: PathBuf,
}

/// The task lists of one split folder (`splits/default/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperNiSplit {
    /// `train_tasks.txt`.
    pub train: Vec<String>,
    /// `test_tasks.txt`.
    pub test: Vec<String>,
}

impl SuperNiCheckout {
    /// A checkout rooted at `root`; fails when `root/tasks` is not a folder.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, DataError> {
        let root = root.into();
        let tasks = root.join("tasks");
        if !tasks.is_dir() {
            return Err(DataError::io(
                tasks,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a Super-NI checkout (no tasks/ folder)",
                ),
            ));
        }
        Ok(Self { root })
    }

    /// The checkout's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a task file.
    pub fn task_path(&self, name: &str) -> PathBuf {
        self.root.join("tasks").join(format!("{name}.json"))
    }

    /// Reads one task by name.
    pub fn task(&self, name: &str) -> Result<SuperNiTask, DataError> {
        SuperNiTask::from_file(self.task_path(name))
    }

    /// Reads `splits/<split>/train_tasks.txt` and `test_tasks.txt`.
    pub fn split(&self, split: &str) -> Result<SuperNiSplit, DataError> {
        let dir = self.root.join("splits").join(split);
        Ok(SuperNiSplit {
            train: read_task_list(&dir.join("train_tasks.txt"))?,
            test: read_task_list(&dir.join("test_tasks.txt"))?,
        })
    }
}

/// One task name per line; blank lines ignored, surrounding whitespace trimmed.
pub fn read_task_list(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The collator's `P(s)`: appends `"."` unless `s` ends with an ASCII punctuation character
/// (Python's `string.punctuation`). An empty string gets the period too (`""[-1]` would fail
/// in Python; Tk-Instruct never calls it on an empty string, and a lone period is the natural
/// reading).
pub fn add_period(text: &str) -> String {
    match text.chars().last() {
        Some(c) if c.is_ascii_punctuation() => text.to_string(),
        _ => format!("{text}."),
    }
}

/// The options of `DataCollatorForNI` that shape the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TkInstructConfig {
    /// Prefix the task name (`add_task_name`).
    pub add_task_name: bool,
    /// Include `Definition: …` (`add_task_definition`).
    pub add_task_definition: bool,
    /// Number of positive examples (`num_pos_examples`).
    pub num_pos_examples: usize,
    /// Number of negative examples (`num_neg_examples`).
    pub num_neg_examples: usize,
    /// Add ` Explanation: …` to examples (`add_explanation`).
    pub add_explanation: bool,
}

impl TkInstructConfig {
    /// The standard "Def + 2 Pos" setting.
    pub const DEF_POS_2: Self = Self {
        add_task_name: false,
        add_task_definition: true,
        num_pos_examples: 2,
        num_neg_examples: 0,
        add_explanation: false,
    };

    /// Definition and `k` positive examples, nothing else.
    pub fn def_pos(k: usize) -> Self {
        Self {
            num_pos_examples: k,
            ..Self::DEF_POS_2
        }
    }
}

/// `"Now complete the following example -\nInput: " + P(input.strip()) + "\nOutput: "`.
pub fn tk_task_input(instance_input: &str) -> String {
    format!(
        "Now complete the following example -\nInput: {}\nOutput: ",
        add_period(instance_input.trim())
    )
}

/// `"Definition: " + P(definition.strip()) + "\n\n"`.
pub fn tk_definition(definition: &str) -> String {
    format!("Definition: {}\n\n", add_period(definition.trim()))
}

/// One demonstration block; `kind` is `Positive` or `Negative`, `i` starts at 1. With
/// `trailing_newline` the block ends with the collator's extra `"\n"` (HINT's hypernetwork
/// variants drop it).
fn demonstration(
    kind: &str,
    i: usize,
    ex: &SuperNiDemonstration,
    explanation: bool,
    trailing_newline: bool,
) -> String {
    let mut s = format!(
        " {kind} Example {i} -\nInput: {}\n Output: {}\n",
        add_period(ex.input.trim()),
        add_period(ex.output.trim())
    );
    if explanation {
        s.push_str(&format!(
            " Explanation: {}\n",
            add_period(ex.explanation.trim())
        ));
    }
    if trailing_newline {
        s.push('\n');
    }
    s
}

/// The Tk-Instruct source text for one instance, without a token budget (every requested
/// example is included). Equals `DataCollatorForNI`'s `source` whenever it fits
/// `max_source_length`.
pub fn tk_instruct_source(
    task: &SuperNiTask,
    instance_input: &str,
    config: &TkInstructConfig,
) -> String {
    tk_instruct_source_with_budget(task, instance_input, config, |_| 0, usize::MAX)
}

/// The Tk-Instruct source with the collator's budget rule: each example is added while
/// `count_tokens(definition + " ".join(examples so far) + new example + task_input)` stays
/// ≤ `max_source_length`. The final hard cut to `max_source_length` tokens is the feature
/// converter's truncation.
pub fn tk_instruct_source_with_budget(
    task: &SuperNiTask,
    instance_input: &str,
    config: &TkInstructConfig,
    count_tokens: impl Fn(&str) -> usize,
    max_source_length: usize,
) -> String {
    let task_input = tk_task_input(instance_input);
    let definition = if config.add_task_definition {
        tk_definition(&task.definition)
    } else {
        String::new()
    };
    let mut pos: Vec<String> = Vec::new();
    for (idx, ex) in task
        .positive_examples
        .iter()
        .take(config.num_pos_examples)
        .enumerate()
    {
        let block = demonstration("Positive", idx + 1, ex, config.add_explanation, true);
        let candidate = format!("{definition}{}{block}{task_input}", pos.join(" "));
        if count_tokens(&candidate) <= max_source_length {
            pos.push(block);
        } else {
            break;
        }
    }
    let mut neg: Vec<String> = Vec::new();
    for (idx, ex) in task
        .negative_examples
        .iter()
        .take(config.num_neg_examples)
        .enumerate()
    {
        let block = demonstration("Negative", idx + 1, ex, config.add_explanation, true);
        // The collator counts the positives and the negatives so far, joined with spaces.
        let so_far = format!("{}{}", pos.join(" "), neg.join(" "));
        let candidate = format!("{definition}{so_far}{block}{task_input}");
        if count_tokens(&candidate) <= max_source_length {
            neg.push(block);
        } else {
            break;
        }
    }
    let task_name = if config.add_task_name {
        format!("{}. ", task.name)
    } else {
        String::new()
    };
    format!(
        "{task_name}{definition}{}{}{task_input}",
        pos.concat(),
        neg.concat()
    )
}

/// HINT's hypernetwork text with `k` positive examples: starts from `"Definition: " +
/// Definition[0]` (unmodified, as `data.md` §3.2 states) and **prepends** each example block
/// (without the collator's final extra newline) while `count_tokens` of the whole stays
/// ≤ `max_length`, so the text ends with the definition (2-shot order: Ex2, Ex1, Def).
pub fn hint_hyper_with_examples(
    task: &SuperNiTask,
    k: usize,
    count_tokens: impl Fn(&str) -> usize,
    max_length: usize,
) -> String {
    let mut text = format!("Definition: {}", task.definition);
    for (idx, ex) in task.positive_examples.iter().take(k).enumerate() {
        let block = demonstration("Positive", idx + 1, ex, false, false);
        let candidate = format!("{block}{text}");
        if count_tokens(&candidate) <= max_length {
            text = candidate;
        } else {
            break;
        }
    }
    text
}

/// HINT's Super-NI registrations (`data.md` §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuperNiVariant {
    /// `natural_instructions`: definition (stripped) → `hyper_inputs`, raw instance → `inputs`.
    HintDef,
    /// `natural_instruction_positive_example_hyper_{k}`: definition plus `k` positive
    /// examples → `hyper_inputs`, raw instance → `inputs`.
    HintPos(usize),
    /// `natural_instructions_def` / `_def_pos_{k}`: the Tk-Instruct source with `k` positive
    /// examples (0 = definition only), stripped, → `inputs`; the definition → `hyper_inputs`.
    TkDefPos(usize),
    /// `natural_instructions_split_mimic_def`: the Tk-Instruct pieces split between the two
    /// encoders (their concatenation is the baseline input).
    SplitMimicDef,
}

impl SuperNiVariant {
    /// HINT's registration name of this variant.
    pub fn registration_name(&self) -> String {
        match self {
            Self::HintDef => "natural_instructions".into(),
            Self::HintPos(k) => format!("natural_instruction_positive_example_hyper_{k}"),
            Self::TkDefPos(0) => "natural_instructions_def".into(),
            Self::TkDefPos(k) => format!("natural_instructions_def_pos_{k}"),
            Self::SplitMimicDef => "natural_instructions_split_mimic_def".into(),
        }
    }

    /// The variant of one of HINT's registration names ([`SuperNiVariant::all`]), if any.
    pub fn from_registration_name(name: &str) -> Option<Self> {
        Self::all()
            .into_iter()
            .find(|v| v.registration_name() == name)
    }

    /// All the variants HINT registers.
    pub fn all() -> [Self; 7] {
        [
            Self::HintDef,
            Self::HintPos(1),
            Self::HintPos(2),
            Self::TkDefPos(0),
            Self::TkDefPos(1),
            Self::TkDefPos(2),
            Self::SplitMimicDef,
        ]
    }

    /// `(inputs, hyper_inputs)` for one instance; `count_tokens`/`max_length` bound the
    /// number of examples as the reference collators do (pass `|_| 0` for no bound).
    pub fn render(
        &self,
        task: &SuperNiTask,
        instance_input: &str,
        count_tokens: impl Fn(&str) -> usize,
        max_length: usize,
    ) -> (String, String) {
        match *self {
            Self::HintDef => (
                instance_input.to_string(),
                task.definition.trim().to_string(),
            ),
            Self::HintPos(k) => (
                instance_input.to_string(),
                hint_hyper_with_examples(task, k, count_tokens, max_length),
            ),
            Self::TkDefPos(k) => {
                let source = tk_instruct_source_with_budget(
                    task,
                    instance_input,
                    &TkInstructConfig::def_pos(k),
                    count_tokens,
                    max_length,
                );
                (source.trim().to_string(), task.definition.clone())
            }
            Self::SplitMimicDef => (
                tk_task_input(instance_input),
                tk_definition(&task.definition),
            ),
        }
    }
}

/// Train sampling: a seeded shuffle of the instances, then the first `n` (Tk-Instruct and HINT
/// use 100 and seed 42; the shuffle is this crate's SplitMix64, not Python's `random`).
pub fn sample_train_instances(task: &SuperNiTask, n: usize, seed: u64) -> Vec<SuperNiInstance> {
    let mut instances = task.instances.clone();
    // Each task gets its own stream, so adding or removing tasks does not change the others.
    let mut rng = SplitMix64::derive(&[seed, fnv1a(task.name.as_bytes())]);
    rng.shuffle(&mut instances);
    instances.truncate(n);
    instances
}

/// Test sampling: the first `n` instances (the files are pre-ordered label-balanced).
pub fn test_instances(task: &SuperNiTask, n: usize) -> Vec<SuperNiInstance> {
    task.instances.iter().take(n).cloned().collect()
}

/// Turns instances into examples of `variant`: `inputs`, `hyper_inputs`, `targets` (a seeded
/// choice among the references), `references` (all of them), `task_name`, and `task_names`
/// (the number NNN, when the name has one). No token budget is applied.
pub fn to_examples(
    task: &SuperNiTask,
    instances: &[SuperNiInstance],
    variant: SuperNiVariant,
    seed: u64,
) -> Vec<Example> {
    to_examples_with_budget(task, instances, variant, seed, |_| 0, usize::MAX)
}

/// [`to_examples`] with the reference collators' example budget (`count_tokens` of the text
/// must stay ≤ `max_length` for an example to be added).
pub fn to_examples_with_budget(
    task: &SuperNiTask,
    instances: &[SuperNiInstance],
    variant: SuperNiVariant,
    seed: u64,
    count_tokens: impl Fn(&str) -> usize,
    max_length: usize,
) -> Vec<Example> {
    let mut rng = SplitMix64::derive(&[seed, fnv1a(task.name.as_bytes()), 1]);
    instances
        .iter()
        .map(|instance| {
            let (inputs, hyper_inputs) =
                variant.render(task, &instance.input, &count_tokens, max_length);
            let pick = rng.range(0, instance.output.len() as u64) as usize;
            let target = instance.output.get(pick).cloned().unwrap_or_default();
            let mut e = Example::new();
            e.insert("inputs".into(), FeatureValue::Text(inputs));
            e.insert("hyper_inputs".into(), FeatureValue::Text(hyper_inputs));
            e.insert("targets".into(), FeatureValue::Text(target));
            e.insert(
                "references".into(),
                FeatureValue::Texts(instance.output.clone()),
            );
            e.insert("task_name".into(), FeatureValue::Text(task.name.clone()));
            // Super-NI reports scores per category, a task's first.
            if let Some(category) = task.categories.first() {
                e.insert("category".into(), FeatureValue::Text(category.clone()));
            }
            if let Some(n) = task.number() {
                e.insert("task_names".into(), FeatureValue::Int(n));
            }
            if let Some(id) = &instance.id {
                e.insert("id".into(), FeatureValue::Text(id.clone()));
            }
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SuperNiTask, DataError> {
        SuperNiTask::from_json_str("task001_x", json, Path::new("tasks/task001_x.json"))
    }

    #[test]
    fn period_rule_follows_python_string_punctuation() {
        assert_eq!(add_period("a, 34, f"), "a, 34, f.");
        assert_eq!(add_period("['a', 'b']"), "['a', 'b']");
        assert_eq!(add_period("why?"), "why?");
        assert_eq!(add_period("café"), "café.");
        // A non-ASCII closing mark is not in string.punctuation.
        assert_eq!(add_period("«x»"), "«x».");
    }

    #[test]
    fn definition_may_be_a_string_and_ids_may_be_missing() {
        let task =
            parse(r#"{"Definition": "Copy it", "Instances": [{"input": "a", "output": ["a"]}]}"#)
                .unwrap();
        assert_eq!(task.definition, "Copy it");
        assert_eq!(task.instances[0].id, None);
        assert_eq!(task.number(), Some(1));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err =
            parse("{\"Definition\": [\"d\"],\n \"Instances\": [{\"input\": \"a\"}]}").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("tasks/task001_x.json line 2"), "{msg}");
        assert_eq!(err.field_name(), Some("output"));
        let err = parse(r#"{"Definition": [], "Instances": []}"#).unwrap_err();
        assert!(err.to_string().contains("Definition"));
        let err = parse(r#"{"Definition": ["d"], "Instances": [{"input": "a", "output": []}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("Instances[0].output"));
        let err = parse(r#"{"Definition": ["d"], "Instances": [{"input": 3, "output": ["x"]}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("line 1"));
    }

    #[test]
    fn sampling_is_seeded_and_test_takes_the_first() {
        let instances = (0..300)
            .map(|i| SuperNiInstance {
                id: None,
                input: i.to_string(),
                output: vec![i.to_string()],
            })
            .collect();
        let task = SuperNiTask {
            name: "task005_y".into(),
            definition: "d".into(),
            positive_examples: vec![],
            negative_examples: vec![],
            instances,
            categories: vec![],
        };
        let a = sample_train_instances(&task, 100, 42);
        assert_eq!(a, sample_train_instances(&task, 100, 42));
        assert_ne!(a, sample_train_instances(&task, 100, 43));
        assert_eq!(a.len(), 100);
        let t = test_instances(&task, 100);
        assert_eq!(t.len(), 100);
        assert_eq!(t[99].input, "99");
        let ex = to_examples(&task, &t[..2], SuperNiVariant::HintDef, 42);
        assert_eq!(ex[1]["inputs"], FeatureValue::from("1"));
        assert_eq!(ex[1]["hyper_inputs"], FeatureValue::from("d"));
        assert_eq!(ex[1]["task_names"], FeatureValue::Int(5));
    }

    #[test]
    fn variant_names_match_hint_registrations() {
        let names: Vec<String> = SuperNiVariant::all()
            .iter()
            .map(|v| v.registration_name())
            .collect();
        assert_eq!(names[0], "natural_instructions");
        assert_eq!(names[2], "natural_instruction_positive_example_hyper_2");
        assert_eq!(names[3], "natural_instructions_def");
        assert_eq!(names[5], "natural_instructions_def_pos_2");
    }
}
