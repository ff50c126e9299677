//! A run's evaluation sets: each `(label, task or mixture, split)` of `Run.eval_sets` read
//! once, tokenized through the run's feature converter, grouped by task and instruction,
//! and scored by [`crate::eval::evaluate`].

use std::collections::BTreeMap;
use std::sync::Arc;

use hint_data::task::ReadOptions;
use hint_data::{Example, FeatureValue, HintConverter, ModelInputs, RunData, Vocabulary};
use hint_model::HyperT5;

use crate::batches::converter;
use crate::error::{Result, TrainError};
use crate::eval::{evaluate, EvalContext, EvalExample, EvalMonitor, EvalTask, TaskResult};
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
        let mut groups: BTreeMap<Vec<i64>, Vec<EvalExample>> = BTreeMap::new();
        let mut count = 0;
        'read: while let Some(chunk) = stream.next_chunk(256) {
            for example in chunk {
                let example = example?;
                let (instruction, eval_example) = eval_example(&example, &converter, data)?;
                groups.entry(instruction).or_default().push(eval_example);
                count += 1;
                if limit > 0 && count >= limit {
                    break 'read;
                }
            }
        }
        let several = groups.len() > 1;
        for (i, (instruction, examples)) in groups.into_iter().enumerate() {
            tasks.push(EvalTask {
                name: if several {
                    format!("{}#{i}", task.name())
                } else {
                    task.name().to_string()
                },
                metrics: task.metrics().to_vec(),
                instruction,
                examples,
            });
        }
    }
    Ok(tasks)
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
    let decode = decoder(&data.vocabulary);
    let mut context = EvalContext {
        decode: &decode,
        config: &settings.eval,
        device: settings.device,
        monitor,
    };
    tch::no_grad(|| {
        sets.iter()
            .map(|(label, tasks)| Ok((label.clone(), evaluate(model, label, tasks, &mut context)?)))
            .collect()
    })
}
