//! The built-in instruction suite: the embedded default training data, needing no download.
//!
//! [`CATALOG`] lists the tasks (list, string, number and word manipulation; several
//! instructions each); [`BuiltinSuite::generate`] draws their instances from a seed. Training
//! tasks and held-out tasks share input formats, so only the instruction tells what to do, and
//! each held-out task is a relative of training tasks (last two vs first two, min vs max…).
//!
//! Tasks have the Super-NI shape (definition, positive examples, instances with one or more
//! references): [`BuiltinTask::to_superni`] gives a [`SuperNiTask`] for the Tk-Instruct
//! templates, and [`BuiltinTask::examples`] gives HINT-shaped examples (instruction →
//! `hyper_inputs`, input → `inputs`). Targets are short (at most a few dozen characters), so
//! a tiny model can learn them on a CPU. [`suite_vocabulary`] trains a tokenizer on the suite.

pub mod catalog;
pub mod input;
mod registration;

use std::collections::HashSet;

pub use catalog::{BuiltinTaskSpec, Solver, CATALOG};
pub use input::{Input, InputFormat, WORDS};
pub use registration::{
    builtin_vocabulary, register, register_builtin_suite, register_builtin_suite_with,
    BuiltinOptions, BUILTIN_VOCAB_SIZE, DEFAULT_LENGTHS, HELD_OUT_MIXTURE, TRAIN_MIXTURE,
};

use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::rng::{fnv1a, SplitMix64};
use crate::superni::{SuperNiDemonstration, SuperNiInstance, SuperNiTask};
use crate::tokenizer_training::{train_tokenizer, TokenizerTrainingConfig};
use crate::vocabulary::Vocabulary;

/// The prefix of built-in task names in a registry.
pub const NAME_PREFIX: &str = "builtin_";

/// How much data to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteConfig {
    /// The seed of every draw.
    pub seed: u64,
    /// Training instances per task.
    pub train_instances: usize,
    /// Evaluation instances per task (`validation` of training tasks, `test` of held-out
    /// ones).
    pub eval_instances: usize,
    /// Positive examples per task (the demonstrations).
    pub positive_examples: usize,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            train_instances: 1000,
            eval_instances: 100,
            positive_examples: 3,
        }
    }
}

/// One generated task.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinTask {
    /// Its catalog entry (name, format, instructions, solver).
    pub spec: BuiltinTaskSpec,
    /// Demonstrations (input, first reference).
    pub positive_examples: Vec<SuperNiDemonstration>,
    /// Training instances.
    pub train: Vec<SuperNiInstance>,
    /// Evaluation instances, drawn apart from the training ones (inputs differ where the
    /// format has enough distinct inputs).
    pub eval: Vec<SuperNiInstance>,
}

impl PartialEq for BuiltinTaskSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Which instances of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinSplit {
    /// The training instances.
    Train,
    /// The evaluation instances.
    Eval,
}

impl BuiltinTask {
    /// The registry name, `builtin_<name>`.
    pub fn registry_name(&self) -> String {
        format!("{NAME_PREFIX}{}", self.spec.name)
    }

    /// The instructions (the first is the definition).
    pub fn instructions(&self) -> &'static [&'static str] {
        self.spec.instructions
    }

    /// The task in Super-NI shape with the instances of `split`; the definition is the first
    /// instruction.
    pub fn to_superni(&self, split: BuiltinSplit) -> SuperNiTask {
        SuperNiTask {
            name: self.registry_name(),
            definition: self
                .spec
                .instructions
                .first()
                .copied()
                .unwrap_or_default()
                .to_string(),
            positive_examples: self.positive_examples.clone(),
            negative_examples: Vec::new(),
            instances: match split {
                BuiltinSplit::Train => self.train.clone(),
                BuiltinSplit::Eval => self.eval.clone(),
            },
            categories: vec![format!("{:?}", self.spec.format)],
        }
    }

    /// HINT-shaped examples of `split`: `hyper_inputs` = one of the instructions (a seeded
    /// choice per example; always the first for [`BuiltinSplit::Eval`], so that evaluation is
    /// stable), preceded by `shots` demonstrations (`"Input: …\nOutput: …\n\n"`, then
    /// `"Definition: …"`) when `shots > 0`; `inputs`, `targets` (the first reference),
    /// `references`, `task_name`, `instruction_index` and `task_names` (the catalog position).
    pub fn examples(&self, split: BuiltinSplit, shots: usize, seed: u64) -> Vec<Example> {
        let instances = match split {
            BuiltinSplit::Train => &self.train,
            BuiltinSplit::Eval => &self.eval,
        };
        let mut rng = SplitMix64::derive(&[seed, fnv1a(self.spec.name.as_bytes()), 3]);
        let n_instr = self.spec.instructions.len() as u64;
        // The catalog position is a stable task id (HINT's `task_names` → `task_ids`).
        let task_id = CATALOG
            .iter()
            .position(|s| s.name == self.spec.name)
            .map(|i| i as i64);
        instances
            .iter()
            .map(|instance| {
                let index = match split {
                    BuiltinSplit::Train => rng.range(0, n_instr) as usize,
                    BuiltinSplit::Eval => 0,
                };
                let instruction = self
                    .spec
                    .instructions
                    .get(index)
                    .copied()
                    .unwrap_or_default();
                let hyper = if shots == 0 {
                    instruction.to_string()
                } else {
                    let mut text = String::new();
                    for demo in self.positive_examples.iter().take(shots) {
                        text.push_str(&format!(
                            "Input: {}\nOutput: {}\n\n",
                            demo.input, demo.output
                        ));
                    }
                    text.push_str(&format!("Definition: {instruction}"));
                    text
                };
                let mut e = Example::new();
                e.insert("hyper_inputs".into(), FeatureValue::Text(hyper));
                e.insert("inputs".into(), FeatureValue::Text(instance.input.clone()));
                e.insert(
                    "targets".into(),
                    FeatureValue::Text(instance.output.first().cloned().unwrap_or_default()),
                );
                e.insert(
                    "references".into(),
                    FeatureValue::Texts(instance.output.clone()),
                );
                e.insert("task_name".into(), FeatureValue::Text(self.registry_name()));
                e.insert("instruction_index".into(), FeatureValue::Int(index as i64));
                if let Some(id) = task_id {
                    e.insert("task_names".into(), FeatureValue::Int(id));
                }
                e
            })
            .collect()
    }
}

/// The generated suite.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinSuite {
    /// The config it was drawn with.
    pub config: SuiteConfig,
    /// Every task, in catalog order.
    pub tasks: Vec<BuiltinTask>,
}

impl BuiltinSuite {
    /// Draws every task of [`CATALOG`]. Each task has its own random stream (seed, task
    /// name), so adding a task never changes the others' data.
    pub fn generate(config: SuiteConfig) -> Self {
        let tasks = CATALOG
            .iter()
            .map(|spec| generate_task(spec, &config))
            .collect();
        Self { config, tasks }
    }

    /// The training tasks.
    pub fn train_tasks(&self) -> impl Iterator<Item = &BuiltinTask> {
        self.tasks.iter().filter(|t| !t.spec.held_out)
    }

    /// The held-out tasks.
    pub fn held_out_tasks(&self) -> impl Iterator<Item = &BuiltinTask> {
        self.tasks.iter().filter(|t| t.spec.held_out)
    }

    /// A task by catalog name (without the `builtin_` prefix) or registry name.
    pub fn task(&self, name: &str) -> Option<&BuiltinTask> {
        let name = name.strip_prefix(NAME_PREFIX).unwrap_or(name);
        self.tasks.iter().find(|t| t.spec.name == name)
    }

    /// Every text of the suite (instructions, demonstrations, inputs, references, and the
    /// few-shot scaffolding words), for tokenizer training.
    pub fn corpus(&self) -> Vec<String> {
        let mut texts = vec![
            "Input: Output: Definition: none yes no".to_string(),
            // Every digit and sign, so that any number the tasks produce is encodable.
            "0 1 2 3 4 5 6 7 8 9 - 10 100".to_string(),
        ];
        for task in &self.tasks {
            texts.extend(task.spec.instructions.iter().map(|s| s.to_string()));
            for demo in &task.positive_examples {
                texts.push(demo.input.clone());
                texts.push(demo.output.clone());
            }
            for instance in task.train.iter().chain(&task.eval) {
                texts.push(instance.input.clone());
                texts.extend(instance.output.iter().cloned());
            }
        }
        texts
    }
}

/// Solves an input given as text, as the task's references; `None` when the task is unknown
/// or the text is not in the task's format.
pub fn solve_text(task: &str, input: &str) -> Option<Vec<String>> {
    let name = task.strip_prefix(NAME_PREFIX).unwrap_or(task);
    let spec = CATALOG.iter().find(|s| s.name == name)?;
    Some((spec.solve)(&spec.format.parse(input)?))
}

fn instance(spec: &BuiltinTaskSpec, input: &Input) -> SuperNiInstance {
    SuperNiInstance {
        id: None,
        input: input.render(),
        output: (spec.solve)(input),
    }
}

fn generate_task(spec: &BuiltinTaskSpec, config: &SuiteConfig) -> BuiltinTask {
    let task_seed = fnv1a(spec.name.as_bytes());
    let mut demo_rng = SplitMix64::derive(&[config.seed, task_seed, 0]);
    let positive_examples = (0..config.positive_examples)
        .map(|_| {
            let x = instance(spec, &spec.format.sample(&mut demo_rng));
            SuperNiDemonstration {
                output: x.output.first().cloned().unwrap_or_default(),
                input: x.input,
                explanation: String::new(),
            }
        })
        .collect();
    let mut train_rng = SplitMix64::derive(&[config.seed, task_seed, 1]);
    let train: Vec<SuperNiInstance> = (0..config.train_instances)
        .map(|_| instance(spec, &spec.format.sample(&mut train_rng)))
        .collect();
    let seen: HashSet<&str> = train.iter().map(|x| x.input.as_str()).collect();
    let mut eval_rng = SplitMix64::derive(&[config.seed, task_seed, 2]);
    let mut eval = Vec::with_capacity(config.eval_instances);
    for _ in 0..config.eval_instances {
        // Small formats (one word, one number) have few distinct inputs; after a few tries
        // an input seen in training is accepted.
        let mut x = spec.format.sample(&mut eval_rng);
        for _ in 0..8 {
            if !seen.contains(x.render().as_str()) {
                break;
            }
            x = spec.format.sample(&mut eval_rng);
        }
        eval.push(instance(spec, &x));
    }
    BuiltinTask {
        spec: *spec,
        positive_examples,
        train,
        eval,
    }
}

/// A tokenizer trained on the suite (BPE, T5 special ids, no sentinels), so that the suite
/// needs no downloaded vocabulary.
pub fn suite_vocabulary(suite: &BuiltinSuite, vocab_size: u32) -> Result<Vocabulary, DataError> {
    train_tokenizer(
        suite.corpus(),
        &TokenizerTrainingConfig {
            vocab_size,
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SuiteConfig {
        SuiteConfig {
            seed: 7,
            train_instances: 50,
            eval_instances: 20,
            positive_examples: 2,
        }
    }

    #[test]
    fn catalog_sizes_and_instructions() {
        let train = CATALOG.iter().filter(|s| !s.held_out).count();
        let held = CATALOG.iter().filter(|s| s.held_out).count();
        assert!(train + held >= 40, "{} tasks", train + held);
        assert!(held >= 8, "{held} held-out tasks");
        let mut names = HashSet::new();
        for spec in CATALOG {
            assert!(names.insert(spec.name), "duplicate {}", spec.name);
            assert!(spec.instructions.len() >= 3, "{}", spec.name);
            let distinct: HashSet<_> = spec.instructions.iter().collect();
            assert_eq!(distinct.len(), spec.instructions.len(), "{}", spec.name);
        }
        // Every held-out format is also a training format (shared input formats).
        for spec in CATALOG.iter().filter(|s| s.held_out) {
            assert!(CATALOG
                .iter()
                .any(|t| !t.held_out && t.format == spec.format));
        }
        // Instructions are unique across tasks: only they tell same-format tasks apart.
        let all: Vec<&str> = CATALOG
            .iter()
            .flat_map(|s| s.instructions.iter().copied())
            .collect();
        let unique: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len());
    }

    #[test]
    fn generation_is_deterministic_and_counts_match() {
        let a = BuiltinSuite::generate(small());
        let b = BuiltinSuite::generate(small());
        assert_eq!(a, b);
        let c = BuiltinSuite::generate(SuiteConfig { seed: 8, ..small() });
        assert_ne!(a.tasks[0].train, c.tasks[0].train);
        assert_eq!(a.tasks.len(), CATALOG.len());
        for t in &a.tasks {
            assert_eq!(t.train.len(), 50);
            assert_eq!(t.eval.len(), 20);
            assert_eq!(t.positive_examples.len(), 2);
            for x in t.train.iter().chain(&t.eval) {
                assert!(
                    !x.output.is_empty() && x.output.iter().all(|o| !o.is_empty()),
                    "{}: {x:?}",
                    t.spec.name
                );
                // Short targets: a tiny model must be able to produce them.
                assert!(
                    x.output.iter().all(|o| o.split_whitespace().count() <= 16),
                    "{x:?}"
                );
                // References recomputed from the rendered text agree (render/parse round trip).
                assert_eq!(solve_text(t.spec.name, &x.input).as_ref(), Some(&x.output));
            }
        }
        let ex = a.tasks[0].examples(BuiltinSplit::Train, 0, 1);
        assert_eq!(ex, a.tasks[0].examples(BuiltinSplit::Train, 0, 1));
        assert_eq!(ex.len(), 50);
        let used: HashSet<i64> = ex
            .iter()
            .filter_map(|e| match e["instruction_index"] {
                FeatureValue::Int(i) => Some(i),
                _ => None,
            })
            .collect();
        assert!(used.len() >= 2, "instructions vary in training");
        let shot = a.tasks[0].examples(BuiltinSplit::Eval, 2, 1);
        let hyper = shot[0]["hyper_inputs"].as_text().unwrap_or_default();
        assert!(
            hyper.ends_with("Definition: Reverse the order of the numbers in the list."),
            "{hyper}"
        );
        assert_eq!(hyper.matches("Input: ").count(), 2);
    }

    #[test]
    fn hand_checked_references() {
        let mut covered = HashSet::new();
        let mut check = |task: &'static str, input: &str, want: &[&str]| {
            covered.insert(task);
            assert_eq!(
                solve_text(task, input),
                Some(want.iter().map(|s| s.to_string()).collect()),
                "{task} on {input}"
            );
        };
        check("numbers_reverse", "3 1 2", &["2 1 3"]);
        check("numbers_sort_ascending", "30 5 17", &["5 17 30"]);
        check("numbers_sort_descending", "30 5 17", &["30 17 5"]);
        check("numbers_sum", "30 5 17", &["52"]);
        check("numbers_max", "30 5 17", &["30"]);
        check("numbers_min", "30 5 17", &["5"]);
        check("numbers_first", "30 5 17", &["30"]);
        check("numbers_last", "30 5 17", &["17"]);
        check("numbers_count", "30 5 17 2", &["4"]);
        check("numbers_keep_even", "30 5 17 2", &["30 2"]);
        check("numbers_keep_even", "1 3 5", &["none"]);
        check("numbers_keep_odd", "30 5 17 2", &["5 17"]);
        check("numbers_double", "30 5", &["60 10"]);
        check("numbers_add_one", "30 5 99", &["31 6 100"]);
        check("numbers_first_two", "30 5 17", &["30 5"]);
        check("numbers_drop_first", "30 5 17", &["5 17"]);
        check("numbers_keep_above_50", "30 51 50 99", &["51 99"]);
        check("numbers_last_two", "30 5 17", &["5 17"]);
        check("numbers_drop_last", "30 5 17", &["30 5"]);
        check("numbers_subtract_one", "30 5 0", &["29 4 -1"]);
        check("numbers_keep_below_50", "30 51 50 9", &["30 9"]);
        check("numbers_range", "30 5 17", &["25"]);
        check("words_reverse", "cat dog sun", &["sun dog cat"]);
        check("words_sort", "tree apple cat", &["apple cat tree"]);
        check("words_sort_reverse", "tree apple cat", &["tree cat apple"]);
        check("words_first", "tree apple cat", &["tree"]);
        check("words_last", "tree apple cat", &["cat"]);
        check("words_count", "tree apple cat", &["3"]);
        check("words_uppercase", "tree apple", &["TREE APPLE"]);
        check("words_initials", "tree apple cat", &["t a c"]);
        check("words_final_letters", "tree apple cat", &["e e t"]);
        check("words_longest", "tree apple cat", &["apple"]);
        check("words_longest", "tree frog cat", &["tree", "frog"]);
        check("words_shortest", "tree ox cat egg ox", &["ox"]);
        check("word_reverse", "apple", &["elppa"]);
        check("word_reverse_uppercase", "apple", &["ELPPA"]);
        check("word_uppercase", "apple", &["APPLE"]);
        check("word_first_letter", "apple", &["a"]);
        check("word_last_letter", "apple", &["e"]);
        check("word_length", "apple", &["5"]);
        check("word_spell", "cat", &["c a t"]);
        check("word_repeat", "cat", &["cat cat"]);
        check("word_remove_vowels", "apple", &["ppl"]);
        check("pair_add", "7 13", &["20"]);
        check("pair_subtract", "7 13", &["-6"]);
        check("pair_max", "7 13", &["13"]);
        check("pair_min", "7 13", &["7"]);
        check("pair_multiply", "7 13", &["91"]);
        check("number_is_even", "8", &["yes"]);
        check("number_is_odd", "8", &["no"]);
        check("number_square", "12", &["144"]);
        check("number_to_word", "17", &["seventeen"]);
        check("number_add_ten", "17", &["27"]);
        let all: HashSet<&str> = CATALOG.iter().map(|s| s.name).collect();
        assert_eq!(covered, all, "every catalog task is hand-checked");
        assert_eq!(solve_text("numbers_sum", "a b"), None);
        assert_eq!(solve_text("no_such_task", "1"), None);
    }

    #[test]
    fn superni_shape_renders_with_the_tk_instruct_template() {
        let suite = BuiltinSuite::generate(small());
        let task = suite.task("builtin_pair_add").expect("pair_add exists");
        let sni = task.to_superni(BuiltinSplit::Eval);
        assert_eq!(sni.definition, "Add the two numbers.");
        let source = crate::superni::tk_instruct_source(
            &sni,
            &sni.instances[0].input,
            &crate::superni::TkInstructConfig::DEF_POS_2,
        );
        assert!(source
            .starts_with("Definition: Add the two numbers.\n\n Positive Example 1 -\nInput: "));
        assert_eq!(
            suite.train_tasks().count() + suite.held_out_tasks().count(),
            CATALOG.len()
        );
    }

    #[test]
    fn trained_vocabulary_round_trips_suite_text() {
        let suite = BuiltinSuite::generate(small());
        let vocab = suite_vocabulary(&suite, 600).expect("training works");
        assert!(vocab.vocab_size() > 50, "{}", vocab.vocab_size());
        assert_eq!(vocab.encode("<pad>").unwrap(), vec![0, 1]);
        assert_eq!(vocab.encode("</s>").unwrap(), vec![1]);
        assert_eq!(vocab.encode("<unk>").unwrap(), vec![2, 1]);
        for task in suite.tasks.iter().take(60) {
            for text in task.spec.instructions.iter().map(|s| s.to_string()).chain(
                task.eval
                    .iter()
                    .take(3)
                    .flat_map(|x| [x.input.clone(), x.output[0].clone()]),
            ) {
                let ids = vocab.encode(&text).unwrap();
                assert_eq!(ids.last(), Some(&1));
                assert!(!ids.contains(&2), "unknown piece in {text:?}");
                assert_eq!(vocab.decode(&ids).unwrap(), text);
            }
        }
        // Characters never seen in the corpus map to <unk>.
        assert!(vocab.encode("λ").unwrap().contains(&2));
    }
}
