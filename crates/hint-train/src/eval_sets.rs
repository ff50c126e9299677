//! A run's evaluation sets: each `(label, task or mixture, split)` of `Run.eval_sets` read
//! once, tokenized through the run's feature converter, grouped by task and instruction,
//! and scored by [`crate::eval::evaluate`].

use std::collections::BTreeMap;
use std::sync::Arc;

use hint_data::task::ReadOptions;
use hint_data::{Example, FeatureValue, HintConverter, ModelInputs, RunData, Vocabulary};
use hint_dist::ProcessGroup;
use hint_model::HyperT5;

use crate::batches::converter;
use crate::error::{Result, TrainError};
use crate::eval::{
    evaluate, evaluate_some, EvalContext, EvalExample, EvalMonitor, EvalTask, TaskResult,
};
use crate::settings::RunSettings;

/// Tokenized evaluation sets: `(label, tasks)`.
pub type EvalSets = Vec<(String, Vec<EvalTask>)>;

/// Scores per evaluation set label.
pub type SetResults = Vec<(String, Vec<TaskResult>)>;

/// The evaluation tasks of `(task or mixture, split)`: instances grouped by task and
/// instruction, as the run's converter gives them to the model.
pub fn eval_tasks(
    data: &RunData,
    name: &str,
    split: &str,
    settings: &RunSettings,
) -> Result<Vec<EvalTask>> {
    let converter = converter(settings);
    let read = ReadOptions {
        use_cached: settings.run.use_cached,
        cache_dirs: settings.run.cache_dirs(),
        ..ReadOptions::default()
    };
    let limit = settings.run.eval_examples_per_task;
    let members = data.registry.resolve(name, split, &[])?;
    let mut tasks = Vec::new();
    for (task, _) in members {
        let mut stream = task.open(split, &read)?;
        // A group per (task name, instruction): Super-NI's test split is one registered task
        // whose instances name their own task (and category), which keeps them apart even
        // in concatenation mode, where every instruction is empty.
        let mut groups: BTreeMap<(Option<String>, Vec<i64>), Group> = BTreeMap::new();
        let mut count = 0;
        'read: while let Some(chunk) = stream.next_chunk(256) {
            for example in chunk {
                let example = example?;
                let (instruction, eval_example) = eval_example(&example, &converter, data)?;
                let text = |name: &str| match example.get(name) {
                    Some(FeatureValue::Text(t)) => Some(t.clone()),
                    _ => None,
                };
                let group = groups.entry((text("task_name"), instruction)).or_default();
                group.category = group.category.take().or_else(|| text("category"));
                group.examples.push(eval_example);
                count += 1;
                if limit > 0 && count >= limit {
                    break 'read;
                }
            }
        }
        for ((own_name, instruction), group) in groups {
            tasks.push(EvalTask {
                // Named by the instances' own task (Super-NI, BIG-bench ids), else the
                // registered one; numbered below when a name has several groups.
                name: own_name.unwrap_or_else(|| task.name().to_string()),
                category: group.category,
                metrics: task.metrics().to_vec(),
                instruction,
                examples: group.examples,
            });
        }
    }
    // A task read under several instructions (demonstrations drawn per instance), or two
    // members naming the same task: `<name>#0`, `<name>#1`, … so that no two share a name.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for task in &tasks {
        *counts.entry(task.name.clone()).or_default() += 1;
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for task in &mut tasks {
        if counts[&task.name] > 1 {
            let k = seen.entry(task.name.clone()).or_default();
            task.name = format!("{}#{k}", task.name);
            *k += 1;
        }
    }
    Ok(tasks)
}

/// The instances of one evaluated task as they are read.
#[derive(Default)]
struct Group {
    category: Option<String>,
    examples: Vec<EvalExample>,
}

/// One example as the model reads it: its instruction (the group key) and its input,
/// references and answer choices.
fn eval_example(
    example: &Example,
    converter: &HintConverter,
    data: &RunData,
) -> Result<(Vec<i64>, EvalExample)> {
    let tokens = |name: &str| -> Vec<i64> {
        match example.get(name) {
            Some(FeatureValue::Tokens(t)) => t.iter().map(|&x| i64::from(x)).collect(),
            _ => Vec::new(),
        }
    };
    let references = match example.get("references") {
        Some(FeatureValue::Texts(t)) => t.clone(),
        _ => match example.get("targets_pretokenized") {
            Some(FeatureValue::Text(t)) => vec![t.clone()],
            _ => Vec::new(),
        },
    };
    let ModelInputs {
        encoder,
        instruction,
    } = converter.model_inputs(&tokens("inputs"), &tokens("hyper_inputs"));
    let choices = rank_choices(example, &references, &data.vocabulary)?;
    Ok((
        instruction,
        EvalExample {
            input: encoder,
            references,
            choices,
        },
    ))
}

/// Rank classification's candidates (P3 / T0 evaluation, BIG-bench `target_scores`): the
/// `answer_choices` tokenized with EOS, and the index of the reference among them. `None`
/// when the example has no choices or its reference is not one of them.
fn rank_choices(
    example: &Example,
    references: &[String],
    vocabulary: &Vocabulary,
) -> Result<Option<(Vec<Vec<i64>>, usize)>> {
    let Some(FeatureValue::Texts(choices)) = example.get("answer_choices") else {
        return Ok(None);
    };
    let Some(correct) = references
        .first()
        .and_then(|r| choices.iter().position(|c| c.trim() == r.trim()))
    else {
        return Ok(None);
    };
    let tokens = choices
        .iter()
        .map(|c| {
            vocabulary
                .encode(c)
                .map(|ids| ids.into_iter().map(i64::from).collect())
                .map_err(TrainError::from)
        })
        .collect::<Result<Vec<Vec<i64>>>>()?;
    Ok(Some((tokens, correct)))
}

/// Reads every evaluation set of the run; an unknown task or split is an error naming
/// the set.
pub fn read_eval_sets(data: &RunData, settings: &RunSettings) -> Result<EvalSets> {
    settings
        .run
        .eval_sets
        .iter()
        .map(|(label, name, split)| {
            // Reading a large set (P3, Super-NI) takes a while: say what is being read.
            let started = std::time::Instant::now();
            tracing::info!("reading evaluation set `{label}` ({name}, {split})");
            let tasks =
                eval_tasks(data, name, split, settings).map_err(|e| TrainError::EvalSet {
                    label: label.clone(),
                    source: Box::new(e),
                })?;
            tracing::info!(
                "evaluation set `{label}`: {} tasks, {} instances, read in {:.1} s",
                tasks.len(),
                tasks.iter().map(|t| t.examples.len()).sum::<usize>(),
                started.elapsed().as_secs_f64()
            );
            Ok((label.clone(), tasks))
        })
        .collect()
}

/// Turns generated ids back into text with the run's vocabulary.
pub fn decoder(vocabulary: &Arc<Vocabulary>) -> impl Fn(&[i64]) -> String {
    let vocabulary = Arc::clone(vocabulary);
    move |ids: &[i64]| {
        let ids: Vec<u32> = ids.iter().filter_map(|&t| u32::try_from(t).ok()).collect();
        vocabulary.decode(&ids).unwrap_or_default()
    }
}

/// Scores read evaluation sets (without gradients), reporting to `monitor` after every
/// batch; stops with [`TrainError::Interrupted`] when it asks to.
pub fn score_sets(
    model: &HyperT5,
    sets: &EvalSets,
    data: &RunData,
    settings: &RunSettings,
    monitor: &mut dyn EvalMonitor,
) -> Result<SetResults> {
    score_sets_in(
        model,
        sets,
        data,
        settings,
        monitor,
        &ProcessGroup::single(),
    )
}

/// [`score_sets`] shared by the ranks of `group`: task `k` (counted over all sets) is
/// evaluated by rank `k mod world`, and every rank receives every result, in the order of
/// one process, so rank 0's table is the table of one process. An interruption on any
/// rank interrupts all (each still joins the exchange, so none waits for it).
pub fn score_sets_in(
    model: &HyperT5,
    sets: &EvalSets,
    data: &RunData,
    settings: &RunSettings,
    monitor: &mut dyn EvalMonitor,
    group: &ProcessGroup,
) -> Result<SetResults> {
    let world = group.world_size();
    let decode = decoder(&data.vocabulary);
    let mut context = EvalContext {
        decode: &decode,
        config: &settings.eval,
        device: settings.device,
        monitor,
    };
    if world == 1 {
        return tch::no_grad(|| {
            sets.iter()
                .map(|(label, tasks)| {
                    Ok((label.clone(), evaluate(model, label, tasks, &mut context)?))
                })
                .collect()
        });
    }
    let mut mine: Vec<(usize, usize, TaskResult)> = Vec::new();
    let mut interrupted: Option<String> = None;
    let mut counter = 0;
    for (set, (label, tasks)) in sets.iter().enumerate() {
        let indices: Vec<usize> = (0..tasks.len())
            .filter(|j| (counter + j) % world == group.rank())
            .collect();
        counter += tasks.len();
        if interrupted.is_some() || indices.is_empty() {
            continue;
        }
        let share: Vec<&EvalTask> = indices.iter().map(|&j| &tasks[j]).collect();
        match tch::no_grad(|| evaluate_some(model, label, &share, &mut context)) {
            Ok(results) => mine.extend(indices.into_iter().zip(results).map(|(j, r)| (set, j, r))),
            Err(TrainError::Interrupted { task }) => interrupted = Some(task),
            Err(err) => return Err(err),
        }
    }
    let payload = serde_json::to_vec(&(interrupted, mine)).map_err(|e| TrainError::Malformed {
        path: "evaluation results".into(),
        message: e.to_string(),
    })?;
    let mut slots: Vec<Vec<Option<TaskResult>>> = sets
        .iter()
        .map(|(_, tasks)| vec![None; tasks.len()])
        .collect();
    for (rank, bytes) in group.all_gather_bytes(&payload)?.into_iter().enumerate() {
        let (stopped, results): (Option<String>, Vec<(usize, usize, TaskResult)>) =
            serde_json::from_slice(&bytes).map_err(|e| TrainError::Malformed {
                path: format!("evaluation results of rank {rank}").into(),
                message: e.to_string(),
            })?;
        if let Some(task) = stopped {
            return Err(TrainError::Interrupted { task });
        }
        for (set, j, result) in results {
            if let Some(slot) = slots.get_mut(set).and_then(|s| s.get_mut(j)) {
                *slot = Some(result);
            }
        }
    }
    sets.iter()
        .zip(slots)
        .map(|((label, _), results)| {
            let results: Option<Vec<TaskResult>> = results.into_iter().collect();
            results
                .map(|r| (label.clone(), r))
                .ok_or_else(|| TrainError::Malformed {
                    path: "evaluation results".into(),
                    message: format!("set `{label}`: a task's result came from no rank"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hint_data::preprocessors::Tokenize;
    use hint_data::{toy_vocabulary, MemorySource, Task, TaskRegistry};

    fn example(task: &str, category: &str, instruction: &str) -> Example {
        let text = |t: &str| FeatureValue::Text(t.to_string());
        Example::from([
            ("task_name".to_string(), text(task)),
            ("category".to_string(), text(category)),
            ("hyper_inputs".to_string(), text(instruction)),
            ("inputs".to_string(), text("1 2")),
            ("targets".to_string(), text("2 1")),
        ])
    }

    /// One registered task holding the instances of several named tasks, as Super-NI's test
    /// split is: a task per (name, instruction), named and categorised by its instances.
    fn tasks_in(mode: &str) -> Vec<EvalTask> {
        let vocabulary = Arc::new(toy_vocabulary().unwrap());
        let settings = RunSettings::load(
            &[],
            &[
                format!("hint.train.Run.instruction_mode = {mode:?}"),
                "hint.train.Run.lengths = (8, 8, 8)".into(),
            ],
            &[],
            false,
        )
        .unwrap();
        let examples = vec![
            example("reverse", "Lists", "reverse the list"),
            example("reverse", "Lists", "reverse the list"),
            example("sort", "Lists", "sort the list"),
            // One task under two instructions (drawn demonstrations).
            example("copy", "Copy", "copy the list"),
            example("copy", "Copy", "copy it"),
        ];
        let source = MemorySource::new().split("test", examples);
        let task = Task::builder("mixed", source)
            .preprocessor(Tokenize::default())
            .hint_features(&vocabulary, settings.run.lengths, true)
            .metric("exact_match")
            .build()
            .unwrap();
        let mut registry = TaskRegistry::new();
        registry.add_task(task).unwrap();
        let data = RunData {
            registry,
            vocabulary,
        };
        eval_tasks(&data, "mixed", "test", &settings).unwrap()
    }

    fn names(tasks: &[EvalTask]) -> Vec<(String, Option<String>, usize)> {
        let mut names: Vec<_> = tasks
            .iter()
            .map(|t| (t.name.clone(), t.category.clone(), t.examples.len()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn instances_are_grouped_by_their_own_task_in_both_instruction_modes() {
        let cat = |c: &str| Some(c.to_string());
        let hyper = tasks_in("hyper");
        assert_eq!(
            names(&hyper),
            [
                ("copy#0".to_string(), cat("Copy"), 1),
                ("copy#1".to_string(), cat("Copy"), 1),
                ("reverse".to_string(), cat("Lists"), 2),
                ("sort".to_string(), cat("Lists"), 1),
            ]
        );
        // Concatenation: every instruction is empty, the task names still part them.
        let concat = tasks_in("concat");
        assert!(concat.iter().all(|t| t.instruction.is_empty()));
        assert_eq!(
            names(&concat),
            [
                ("copy".to_string(), cat("Copy"), 2),
                ("reverse".to_string(), cat("Lists"), 2),
                ("sort".to_string(), cat("Lists"), 1),
            ]
        );
    }
}
