//! P3 (`bigscience/P3`, the T0 training and evaluation data) in its current Parquet layout,
//! `<root>/<task_name>/<split>-00000-of-00001.parquet` (`data.md` §5), with HINT's
//! hypernetwork input: the task's edited prompt template (`all_edited_prompts.txt`) with
//! every `[placeholder]` masked.
//!
//! The text fields are tokenized with the run's vocabulary (P3's own `inputs`/`targets`
//! ids are T5 ids and would be wrong for any other vocabulary); `inputs` and
//! `hyper_inputs` get no EOS, `targets` do, as in T0. [`P3Options`] is the gin configurable
//! `hint.data.P3`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::feature_converter::FeatureLengths;
use crate::few_shot::{few_shot_name, Demonstration, DemonstrationPool, FewShot, ShotsInto};
use crate::preprocessors::{FnPreprocessor, Tokenize};
use crate::rng::fnv1a;
use crate::source::{FileSource, Format, Record, Source};
use crate::task::{Mixture, Rate, Task, TaskRegistry};
use crate::vocabulary::Vocabulary;

/// promptsource's `task_clean`: every run of characters other than word characters, `.`
/// and `_` becomes one `_` (`super_glue rte GPT-3 style` → `super_glue_rte_GPT_3_style`).
pub fn task_clean(name: &str) -> String {
    static RUN: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RUN.get_or_init(|| Regex::new(r"[^\w\d\._]+").expect("valid regex"))
        .replace_all(name, "_")
        .into_owned()
}

/// Parses HINT's `all_edited_prompts.txt`: records `dataset_subset\t||||\ttemplate_name\t||||\t
/// template` separated by lines of asterisks. Returns task name → template with every
/// `[placeholder]` replaced by `[MASK]`.
pub fn parse_edited_prompts(
    text: &str,
    path: &Path,
) -> Result<BTreeMap<String, String>, DataError> {
    let placeholder = Regex::new(r"\[[A-Za-z0-9_]+\]").expect("valid regex");
    let mut prompts = BTreeMap::new();
    let mut record = String::new();
    let mut start_line = 1;
    let mut flush = |record: &str, line: usize| -> Result<(), DataError> {
        let record = record.trim_matches('\n');
        if record.trim().is_empty() {
            return Ok(());
        }
        let parts: Vec<&str> = record.splitn(3, "\t||||\t").collect();
        let [subset, template_name, template] = parts[..] else {
            return Err(DataError::Config(format!(
                "{}:{line}: a prompt record needs `dataset_subset\\t||||\\ttemplate_name\\t||||\\ttemplate`",
                path.display()
            )));
        };
        prompts.insert(
            task_clean(&format!("{}_{}", subset.trim(), template_name.trim())),
            placeholder
                .replace_all(template.trim(), "[MASK]")
                .into_owned(),
        );
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        if !line.is_empty() && line.chars().all(|c| c == '*') {
            flush(&record, start_line)?;
            record.clear();
            start_line = i + 2;
        } else {
            record.push_str(line);
            record.push('\n');
        }
    }
    flush(&record, start_line)?;
    Ok(prompts)
}

/// `hint.data.P3`: P3 Parquet tasks (`<path>/<task>/<split>-*.parquet`), the options of
/// [`register_p3`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P3Options {
    /// The P3 `data` folder; empty: off.
    pub path: PathBuf,
    /// HINT's `all_edited_prompts.txt` (the hypernetwork inputs, see
    /// [`parse_edited_prompts`]); empty: no instruction (the plain T0 setup).
    pub prompts_file: PathBuf,
    /// Tasks of `p3_train` (names or `*` patterns, see [`expand_task_patterns`]).
    pub train_tasks: Vec<String>,
    /// More tasks of `p3_train`, after `train_tasks`: what T0+ and T0++
    /// (`configs/t0p_train.gin`, `t0pp_train.gin`) add to T0's list without repeating it.
    pub extra_train_tasks: Vec<String>,
    /// Tasks of `p3_eval`.
    pub eval_tasks: Vec<String>,
    /// The example-proportional cap of `p3_train` (T0: 500,000).
    pub max_examples: f64,
    /// Few-shot variants to register (the original: `[1, 2, 4, 5]`): for each `k`, every
    /// task gets `{task}_{k}_shot` and the mixtures `p3_train_{k}_shot` and
    /// `p3_eval_{k}_shot` ([`crate::few_shot`]).
    pub shots: Vec<usize>,
    /// Where the demonstrations go, in training and evaluation alike: `"hyper_inputs"`
    /// (HINT) or `"inputs"` (the concatenation baseline).
    pub shots_into: ShotsInto,
    /// The token budget of the demonstrations and the example's input (the original: 960).
    pub shots_max_input_length: usize,
    /// Rows of each task's demonstration split the demonstrations are drawn from.
    pub shots_pool: usize,
}

impl Default for P3Options {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            prompts_file: PathBuf::new(),
            train_tasks: Vec::new(),
            extra_train_tasks: Vec::new(),
            eval_tasks: Vec::new(),
            max_examples: 500_000.0,
            shots: Vec::new(),
            shots_into: ShotsInto::HyperInputs,
            shots_max_input_length: 960,
            shots_pool: 1000,
        }
    }
}

impl P3Options {
    /// Whether a P3 folder is named (the suite is off without one).
    pub fn enabled(&self) -> bool {
        !self.path.as_os_str().is_empty()
    }

    /// Task name → masked prompt, read from `prompts_file` (empty without one).
    pub fn prompts(&self) -> Result<BTreeMap<String, String>, DataError> {
        if self.prompts_file.as_os_str().is_empty() {
            return Ok(BTreeMap::new());
        }
        let path = &self.prompts_file;
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        parse_edited_prompts(&text, path)
    }
}

/// Registers the gin configurable `hint.data.P3`.
pub fn register(registry: &mut hint_config::Registry) -> Result<(), hint_config::ConfigError> {
    registry.register_struct::<P3Options>("hint.data.P3")?;
    Ok(())
}

/// The Parquet files of one split of a P3 task (`<split>-*.parquet`), if any.
fn split_files(dir: &Path, split: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{split}-")) && n.ends_with(".parquet"))
        })
        .collect();
    files.sort();
    files
}

/// Expands `*` in task names against the folders under `root` (sorted); a pattern that
/// does not mention `score_eval` leaves out the `*_score_eval` folders (one row per choice,
/// for seqio's rank classification; evaluation here scores `answer_choices` directly).
pub fn expand_task_patterns(root: &Path, patterns: &[String]) -> Result<Vec<String>, DataError> {
    let mut out = Vec::new();
    let mut folders: Option<Vec<String>> = None;
    for pattern in patterns {
        if !pattern.contains('*') {
            out.push(pattern.clone());
            continue;
        }
        let folders = match &mut folders {
            Some(f) => f,
            None => {
                let mut names: Vec<String> = std::fs::read_dir(root)
                    .map_err(|e| DataError::io(root, e))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect();
                names.sort();
                folders.insert(names)
            }
        };
        let regex = Regex::new(&format!(
            "^{}$",
            pattern
                .split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(".*")
        ))
        .map_err(|e| DataError::Config(format!("bad P3 task pattern `{pattern}`: {e}")))?;
        let keep_score_eval = pattern.contains("score_eval");
        let matched: Vec<&String> = folders
            .iter()
            .filter(|n| regex.is_match(n) && (keep_score_eval || !n.ends_with("_score_eval")))
            .collect();
        if matched.is_empty() {
            return Err(DataError::Config(format!(
                "P3 task pattern `{pattern}` matches no folder under {}",
                root.display()
            )));
        }
        for name in matched {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    Ok(out)
}

/// Registers the P3 tasks `train_tasks` and `eval_tasks` (names or `*` patterns, see
/// [`expand_task_patterns`]) found under `options.path`, plus the mixtures `p3_train`
/// (example-proportional, capped at `max_examples`) and `p3_eval` (uniform). Tasks without
/// a prompt in `prompts_file` get an empty hypernetwork input. Each example
/// has `inputs`, `hyper_inputs`, `targets` (stripped) and, when the template has them,
/// `answer_choices` for rank classification.
pub fn register_p3(
    registry: &mut TaskRegistry,
    options: &P3Options,
    vocabulary: Arc<Vocabulary>,
    lengths: FeatureLengths,
) -> Result<(), DataError> {
    if options.shots.contains(&0) {
        return Err(DataError::Config(
            "hint.data.P3.shots: 0 is not a number of demonstrations (the original registers 1, 2, 4 and 5)"
                .into(),
        ));
    }
    if !options.shots.is_empty() && options.shots_pool == 0 {
        return Err(DataError::Config(
            "hint.data.P3.shots_pool: 0 rows leave no demonstrations to draw".into(),
        ));
    }
    let root = options.path.as_path();
    let prompts = options.prompts()?;
    let train_patterns: Vec<String> = options
        .train_tasks
        .iter()
        .chain(&options.extra_train_tasks)
        .cloned()
        .collect();
    let train_tasks = expand_task_patterns(root, &train_patterns)?;
    let eval_tasks = expand_task_patterns(root, &options.eval_tasks)?;
    let mut registered = std::collections::BTreeSet::new();
    for name in train_tasks.iter().chain(&eval_tasks) {
        if !registered.insert(name.clone()) {
            continue;
        }
        let dir = root.join(name);
        if !dir.is_dir() {
            return Err(DataError::Config(format!(
                "P3 task `{name}`: no folder {}",
                dir.display()
            )));
        }
        let mut source = FileSource::new(Format::Parquet);
        let mut splits = Vec::new();
        for split in ["train", "validation", "test"] {
            let files = split_files(&dir, split);
            if !files.is_empty() {
                splits.push(split);
                source = source.split(split, files);
            }
        }
        if splits.is_empty() {
            return Err(DataError::Config(format!(
                "P3 task `{name}`: {} holds no <split>-*.parquet files",
                dir.display()
            )));
        }
        let source: Arc<dyn Source> = Arc::new(source);
        let prompt = prompts.get(name).cloned().unwrap_or_default();
        let task = |task_name: String, few_shot: Option<FewShot>| {
            let mut builder = Task::builder_shared(task_name, Arc::clone(&source))
                .preprocessor(p3_to_hint(name, &prompt));
            if let Some(few_shot) = few_shot {
                builder = builder.preprocessor(few_shot);
            }
            builder
                .preprocessor(Tokenize::default())
                .hint_features(&vocabulary, lengths, false)
                .metric("rank_classification")
                .metric("exact_match")
                .build()
        };
        registry.add_task(task(name.clone(), None)?)?;
        if !options.shots.is_empty() {
            // The original draws story_cloze's demonstrations from validation, its only
            // labelled split; so does any task without a train split here.
            let split = if splits.contains(&"train") {
                "train"
            } else {
                "validation"
            };
            if !splits.contains(&split) {
                return Err(DataError::Config(format!(
                    "P3 task `{name}`: few-shot variants need a train or validation split in {}",
                    dir.display()
                )));
            }
            let pool = Arc::new(DemonstrationPool::new(
                Arc::clone(&source),
                split,
                options.shots_pool,
                p3_demonstration,
            ));
            let task_seed = fnv1a(name.as_bytes());
            for &shots in &options.shots {
                let few_shot = FewShot::new(
                    shots,
                    options.shots_into,
                    options.shots_max_input_length,
                    Arc::clone(&pool),
                    task_seed,
                );
                registry.add_task(task(few_shot_name(name, shots), Some(few_shot))?)?;
            }
        }
    }
    let variants = std::iter::once(None).chain(options.shots.iter().copied().map(Some));
    for shots in variants {
        let named = |base: &str| match shots {
            Some(k) => few_shot_name(base, k),
            None => base.to_string(),
        };
        if !train_tasks.is_empty() {
            registry.add_mixture(Mixture::new(
                named("p3_train"),
                train_tasks
                    .iter()
                    .map(|t| (named(t), Rate::proportional(Some(options.max_examples)))),
            ))?;
        }
        if !eval_tasks.is_empty() {
            registry.add_mixture(Mixture::uniform(
                named("p3_eval"),
                eval_tasks.iter().map(|t| named(t)),
            ))?;
        }
    }
    Ok(())
}

/// The P3 row as HINT reads it: `inputs` (the prompted input), `targets` (stripped),
/// `hyper_inputs` (the task's masked prompt), `task_name`, and `answer_choices` (stripped)
/// when the template has them.
fn p3_to_hint(name: &str, prompt: &str) -> FnPreprocessor {
    let (task_name, prompt) = (name.to_string(), prompt.to_string());
    FnPreprocessor::new("p3_to_hint", move |example: Example, _ctx| {
        let text = |field: &str| -> Result<String, DataError> {
            match example.get(field) {
                Some(FeatureValue::Text(t)) => Ok(t.clone()),
                Some(_) => Err(DataError::field(field, "expected text")),
                None => Err(DataError::field(field, "missing")),
            }
        };
        let mut out = Example::new();
        out.insert(
            "inputs".into(),
            FeatureValue::Text(text("inputs_pretokenized")?),
        );
        out.insert(
            "targets".into(),
            FeatureValue::Text(text("targets_pretokenized")?.trim().to_string()),
        );
        out.insert("hyper_inputs".into(), FeatureValue::Text(prompt.clone()));
        out.insert("task_name".into(), FeatureValue::Text(task_name.clone()));
        if let Some(FeatureValue::Texts(choices)) = example.get("answer_choices") {
            out.insert(
                "answer_choices".into(),
                FeatureValue::Texts(choices.iter().map(|c| c.trim().to_string()).collect()),
            );
        }
        Ok(vec![out])
    })
}

/// A demonstration of a P3 row: its prompted input and stripped target.
fn p3_demonstration(record: &Record) -> Result<Demonstration, DataError> {
    let text = |field: &str| match record.example.get(field) {
        Some(FeatureValue::Text(t)) => Ok(t.clone()),
        Some(_) => Err(record.field_error(field, "expected text")),
        None => Err(record.field_error(field, "missing")),
    };
    Ok(Demonstration {
        inputs: text("inputs_pretokenized")?,
        targets: text("targets_pretokenized")?.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_clean_matches_promptsource() {
        assert_eq!(
            task_clean("super_glue_rte_GPT-3 style"),
            "super_glue_rte_GPT_3_style"
        );
        assert_eq!(task_clean("a  -- b.c"), "a_b.c");
    }

    #[test]
    fn edited_prompts_parse_and_mask() {
        let text = "super_glue_rte\t||||\tGPT-3 style\t||||\t[premise]\nQuestion: [hypothesis] True or False?\n\
                    ****************************\n\
                    ag_news\t||||\tclassify\t||||\tWhat label best describes this news article?\n";
        let prompts = parse_edited_prompts(text, Path::new("prompts.txt")).unwrap();
        assert_eq!(
            prompts["super_glue_rte_GPT_3_style"],
            "[MASK]\nQuestion: [MASK] True or False?"
        );
        assert_eq!(
            prompts["ag_news_classify"],
            "What label best describes this news article?"
        );
        let err = parse_edited_prompts("only one field\n", Path::new("p.txt")).unwrap_err();
        assert!(err.to_string().contains("p.txt:1"), "{err}");
    }

    fn write_rows(path: &Path, rows: &[(&str, &str)]) {
        use arrow::array::{ArrayRef, RecordBatch, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        let column = |i: usize| -> ArrayRef {
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| if i == 0 { r.0 } else { r.1 })
                    .collect::<Vec<_>>(),
            ))
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("inputs_pretokenized", DataType::Utf8, true),
            Field::new("targets_pretokenized", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(schema, vec![column(0), column(1)]).unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn texts(task: &Arc<Task>, split: &str, field: &str) -> Vec<String> {
        task.open(split, &crate::task::ReadOptions::default())
            .unwrap()
            .map(|example| match &example.unwrap()[field] {
                FeatureValue::Tokens(ids) => task.output_features()[field]
                    .vocabulary
                    .decode(ids)
                    .unwrap(),
                other => panic!("{field}: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn few_shot_variants_draw_from_the_tasks_own_train_split() {
        let dir = tempfile::tempdir().unwrap();
        let rte = dir.path().join("rte_x");
        let cloze = dir.path().join("story_cloze_2016_x");
        std::fs::create_dir_all(&rte).unwrap();
        std::fs::create_dir_all(&cloze).unwrap();
        // Digits and the toy vocabulary's words, so that decoding shows the text again.
        let train = [("1 2", " 3"), ("4 5", " 6"), ("7 8", " 9"), ("0 1", " 2")];
        write_rows(&rte.join("train-00000-of-00001.parquet"), &train);
        write_rows(
            &rte.join("validation-00000-of-00001.parquet"),
            &[("9 9", " 0")],
        );
        write_rows(
            &cloze.join("validation-00000-of-00001.parquet"),
            &[("1 1", " 1"), ("2 2", " 2"), ("3 3", " 3")],
        );
        let prompts = dir.path().join("prompts.txt");
        std::fs::write(&prompts, "rte\t||||\tx\t||||\tcopy [premise]\n").unwrap();
        let options = P3Options {
            path: dir.path().to_path_buf(),
            prompts_file: prompts,
            train_tasks: vec!["rte_x".into()],
            eval_tasks: vec!["story_cloze_2016_x".into()],
            shots: vec![1, 2],
            ..P3Options::default()
        };
        let vocabulary = Arc::new(crate::registry::toy_vocabulary().unwrap());
        let mut registry = TaskRegistry::new();
        let lengths = FeatureLengths::new(64, 64, 8);
        register_p3(&mut registry, &options, Arc::clone(&vocabulary), lengths).unwrap();

        let two_shot = registry.task("rte_x_2_shot").unwrap();
        assert!(two_shot
            .preprocessor_names()
            .iter()
            .any(|n| n.starts_with("few_shot(2 from train")));
        let hyper = texts(&two_shot, "validation", "hyper_inputs");
        assert_eq!(hyper.len(), 1);
        // Two training rows, then the masked prompt (the toy vocabulary drops `Output:` and
        // `Definition:`, unknown words, to <unk>).
        let train_texts: Vec<String> = train
            .iter()
            .map(|(i, t)| format!("{i} {}", t.trim()))
            .collect();
        let shown = hyper[0]
            .replace("<unk>", "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let found = train_texts
            .iter()
            .filter(|t| shown.contains(t.as_str()))
            .count();
        assert_eq!(found, 2, "{shown:?}");
        assert!(shown.ends_with("copy"), "{shown:?}");
        assert_eq!(texts(&two_shot, "validation", "inputs"), ["9 9"]);
        let zero_shot = registry.task("rte_x").unwrap();
        assert_eq!(
            texts(&zero_shot, "validation", "hyper_inputs")[0]
                .replace("<unk>", "")
                .trim(),
            "copy"
        );

        // story_cloze has no train split: its demonstrations come from validation, and an
        // example is never its own.
        let cloze = registry.task("story_cloze_2016_x_1_shot").unwrap();
        assert!(cloze
            .preprocessor_names()
            .iter()
            .any(|n| n.starts_with("few_shot(1 from validation")));
        let inputs = texts(&cloze, "validation", "inputs");
        let hyper = texts(&cloze, "validation", "hyper_inputs");
        for (input, hyper) in inputs.iter().zip(&hyper) {
            let digit = &input[..1];
            assert!(!hyper.contains(input.as_str()), "{input:?} in {hyper:?}");
            assert_eq!(
                hyper.matches(|c: char| c.is_ascii_digit()).count(),
                3,
                "{digit}: {hyper:?}"
            );
        }

        // Settings that would register few-shot tasks without demonstrations are refused.
        for (shots, pool, field) in [(vec![2, 0], 1000, "shots"), (vec![1], 0, "shots_pool")] {
            let refused = P3Options {
                shots,
                shots_pool: pool,
                ..options.clone()
            };
            let error = register_p3(
                &mut TaskRegistry::new(),
                &refused,
                Arc::clone(&vocabulary),
                lengths,
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains(&format!("hint.data.P3.{field}")), "{error}");
        }

        for (mixture, member) in [
            ("p3_train", "rte_x"),
            ("p3_train_1_shot", "rte_x_1_shot"),
            ("p3_train_2_shot", "rte_x_2_shot"),
            ("p3_eval_2_shot", "story_cloze_2016_x_2_shot"),
        ] {
            let members: Vec<String> = registry
                .mixture(mixture)
                .unwrap()
                .members
                .iter()
                .map(|(name, _)| name.clone())
                .collect();
            assert_eq!(members, [member], "{mixture}");
        }
    }
}
