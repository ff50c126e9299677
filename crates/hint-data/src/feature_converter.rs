//! Feature converters: task features (`inputs`, `hyper_inputs`, `targets`…) → model features,
//! trimmed and padded with 0 to fixed lengths (seqio's feature converters, `seqio.md` §6).
//!
//! A converter turns a window of examples into [`Row`]s (one per example, or fewer when
//! packing); [`Batch::from_rows`] stacks rows into `[batch, length]` arrays of `i64`.
//! hint-data has no tensor type: the trainer wraps [`BatchFeature::data`] with its
//! [`BatchFeature::shape`].
//!
//! * [`HintConverter`] (HINT's `HyperEncDecContFeatureConverter`): `encoder_input_tokens`,
//!   `hyper_encoder_input_tokens`, `decoder_input_tokens` (targets shifted right, start 0),
//!   `decoder_target_tokens`, `decoder_loss_weights`, `task_ids`; never packs.
//! * [`EncDecConverter`] (seqio's `EncDecFeatureConverter`): plain T5, optionally packed with
//!   segment ids and positions exactly as seqio (§6.1–6.2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::source::kind_name;

/// The lengths of HINT's task features (t5x's `TASK_FEATURE_LENGTHS`): rows are trimmed
/// and padded to them. In gin it is the tuple `(inputs, hyper_inputs, targets)`, e.g.
/// `Run.lengths = (1024, 1024, 256)`; a map with those three keys is accepted too.
///
/// ```
/// use hint_data::FeatureLengths;
/// let lengths: FeatureLengths = serde_json::from_str("[24, 32, 16]").unwrap();
/// assert_eq!(lengths, FeatureLengths::new(24, 32, 16));
/// assert_eq!(lengths.hyper_inputs, 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureLengths {
    /// Tokens of `inputs` (the encoder input).
    pub inputs: usize,
    /// Tokens of `hyper_inputs` (the instruction the hypernetwork reads).
    pub hyper_inputs: usize,
    /// Tokens of `targets`.
    pub targets: usize,
}

impl FeatureLengths {
    /// The lengths of `inputs`, `hyper_inputs` and `targets`.
    pub const fn new(inputs: usize, hyper_inputs: usize, targets: usize) -> Self {
        Self {
            inputs,
            hyper_inputs,
            targets,
        }
    }

    /// An error naming the first zero length: a zero-length feature trains on nothing.
    pub fn validate(&self) -> Result<(), DataError> {
        for (name, length) in [
            ("inputs", self.inputs),
            ("hyper_inputs", self.hyper_inputs),
            ("targets", self.targets),
        ] {
            if length == 0 {
                return Err(DataError::Config(format!(
                    "the length of `{name}` is 0: every feature needs a positive length"
                )));
            }
        }
        Ok(())
    }
}

impl From<(usize, usize, usize)> for FeatureLengths {
    fn from((inputs, hyper_inputs, targets): (usize, usize, usize)) -> Self {
        Self::new(inputs, hyper_inputs, targets)
    }
}

impl Serialize for FeatureLengths {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // As the gin tuple, so that a written configuration reads back unchanged.
        (self.inputs, self.hyper_inputs, self.targets).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FeatureLengths {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Tuple(usize, usize, usize),
            #[serde(rename_all = "snake_case")]
            Map {
                inputs: usize,
                hyper_inputs: usize,
                targets: usize,
            },
        }
        match Form::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected the lengths of (inputs, hyper_inputs, targets), e.g. (1024, 1024, 256)",
            )
        })? {
            Form::Tuple(i, h, t) => Ok(Self::new(i, h, t)),
            Form::Map {
                inputs,
                hyper_inputs,
                targets,
            } => Ok(Self::new(inputs, hyper_inputs, targets)),
        }
    }
}

/// Where the instruction reaches the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstructionMode {
    /// In `hyper_inputs`, for the hypernetwork and fusion (HINT).
    #[default]
    Hyper,
    /// Prepended to every input (the Tk-Instruct / T0 concatenation baseline); the
    /// hypernetwork then reads an empty instruction (EOS alone).
    Concat,
}

/// What the model reads of one example: encoder ids and instruction ids, trimmed and not
/// padded. Training, evaluation and inference all build their inputs with
/// [`HintConverter::model_inputs`], so the concatenation baseline is written once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInputs {
    /// Encoder input ids (the instruction first, in concatenation mode).
    pub encoder: Vec<i64>,
    /// Instruction ids for the hypernetwork; empty in concatenation mode.
    pub instruction: Vec<i64>,
}

/// One model-ready row: model feature → ids of that feature's length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The task the row came from (the first task, for a packed row).
    pub task: String,
    /// Model features.
    pub features: BTreeMap<String, Vec<i64>>,
}

/// One model feature of a batch: row-major `[rows, length]` ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFeature {
    /// `[rows, length]`.
    pub shape: [usize; 2],
    /// Row-major values.
    pub data: Vec<i64>,
}

impl BatchFeature {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[i64] {
        &self.data[i * self.shape[1]..(i + 1) * self.shape[1]]
    }

    /// The distinct rows in order of first appearance, and for each row the index of its
    /// distinct row: with `hyper_encoder_input_tokens` this lets the model encode each
    /// instruction once per batch.
    pub fn unique_rows(&self) -> (BatchFeature, Vec<usize>) {
        let mut seen: BTreeMap<&[i64], usize> = BTreeMap::new();
        let mut data = Vec::new();
        let mut index = Vec::with_capacity(self.shape[0]);
        for i in 0..self.shape[0] {
            let row = self.row(i);
            let next = seen.len();
            let id = *seen.entry(row).or_insert_with(|| {
                data.extend_from_slice(row);
                next
            });
            index.push(id);
        }
        (
            BatchFeature {
                shape: [seen.len(), self.shape[1]],
                data,
            },
            index,
        )
    }
}

/// A batch of model features, plus the task of each row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Model feature → `[rows, length]` ids.
    pub features: BTreeMap<String, BatchFeature>,
    /// The task of each row.
    pub tasks: Vec<String>,
}

impl Batch {
    /// Stacks rows; all rows must have the same features and lengths.
    pub fn from_rows(rows: &[Row]) -> Result<Self, DataError> {
        let mut features: BTreeMap<String, BatchFeature> = BTreeMap::new();
        if let Some(first) = rows.first() {
            for (name, values) in &first.features {
                features.insert(
                    name.clone(),
                    BatchFeature {
                        shape: [rows.len(), values.len()],
                        data: Vec::with_capacity(rows.len() * values.len()),
                    },
                );
            }
        }
        for row in rows {
            if row.features.len() != features.len() {
                return Err(DataError::Config(format!(
                    "rows of one batch have different features (task `{}`)",
                    row.task
                )));
            }
            for (name, values) in &row.features {
                let Some(feature) = features.get_mut(name) else {
                    return Err(DataError::Config(format!(
                        "feature `{name}` of task `{}` is not in the batch's first row",
                        row.task
                    )));
                };
                if values.len() != feature.shape[1] {
                    return Err(DataError::Config(format!(
                        "feature `{name}` has length {} in task `{}`, {} elsewhere",
                        values.len(),
                        row.task,
                        feature.shape[1]
                    )));
                }
                feature.data.extend_from_slice(values);
            }
        }
        Ok(Self {
            features,
            tasks: rows.iter().map(|r| r.task.clone()).collect(),
        })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// A model feature.
    pub fn get(&self, name: &str) -> Option<&BatchFeature> {
        self.features.get(name)
    }
}

/// Turns windows of examples into rows.
pub trait FeatureConverter: Send + Sync {
    /// How many examples the converter wants at once (1 unless it packs).
    fn window(&self) -> usize {
        1
    }

    /// Converts a window of (task name, example) into rows.
    fn convert(&self, examples: Vec<(String, Example)>) -> Result<Vec<Row>, DataError>;
}

fn positive(name: &str, length: usize) -> Result<usize, DataError> {
    if length > 0 {
        Ok(length)
    } else {
        Err(DataError::Config(format!(
            "the feature converter needs a positive length for `{name}`"
        )))
    }
}

/// The tokens of a task feature, as i64, trimmed to `len`.
fn trimmed(example: &Example, name: &str, len: usize) -> Result<Vec<i64>, DataError> {
    match example.get(name) {
        Some(FeatureValue::Tokens(t)) => Ok(t.iter().take(len).map(|&x| i64::from(x)).collect()),
        Some(FeatureValue::Int(i)) => Ok(vec![*i]),
        Some(other) => Err(DataError::field(
            name,
            format!(
                "expected token ids, found {} (is `Tokenize` in the task's preprocessors?)",
                kind_name(other)
            ),
        )),
        None => Err(DataError::field(name, "missing")),
    }
}

fn padded(mut ids: Vec<i64>, len: usize) -> Vec<i64> {
    ids.resize(len, 0);
    ids
}

/// Targets shifted right by one with 0 in front; with segment ids, 0 also starts every
/// segment (seqio's `make_autoregressive_inputs`).
pub fn autoregressive_inputs(targets: &[i64], segment_ids: Option<&[i64]>) -> Vec<i64> {
    let mut out = Vec::with_capacity(targets.len());
    for i in 0..targets.len() {
        let shifted = if i == 0 { 0 } else { targets[i - 1] };
        let restart = segment_ids.is_some_and(|s| i > 0 && s[i] != s[i - 1]);
        out.push(if restart { 0 } else { shifted });
    }
    out
}

fn loss_weights(targets: &[i64]) -> Vec<i64> {
    targets.iter().map(|&t| i64::from(t != 0)).collect()
}

fn wrap(task: &str, err: DataError) -> DataError {
    DataError::InTask {
        task: task.to_string(),
        split: "?".into(),
        origin: "feature conversion".into(),
        source: Box::new(err),
    }
}

/// HINT's converter (never packs: each row would need its own generated adapters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintConverter {
    /// Lengths of `inputs`, `hyper_inputs`, `targets`.
    pub lengths: FeatureLengths,
    /// Where the instruction goes.
    pub mode: InstructionMode,
    /// Extra task features copied as model features of the same name with their length
    /// (token lists trimmed and padded, integers as one id), e.g. `("example_id", 1)` for
    /// rank-classification evaluation.
    pub passthrough: Vec<(String, usize)>,
}

impl HintConverter {
    /// A converter with these lengths of `inputs`, `hyper_inputs`, `targets`, the
    /// instruction in `hyper_inputs`.
    pub fn new(inputs: usize, hyper_inputs: usize, targets: usize) -> Self {
        Self::with_lengths(FeatureLengths::new(inputs, hyper_inputs, targets))
    }

    /// A converter with these lengths, the instruction in `hyper_inputs`.
    pub fn with_lengths(lengths: FeatureLengths) -> Self {
        Self {
            lengths,
            mode: InstructionMode::Hyper,
            passthrough: Vec::new(),
        }
    }

    /// The same converter with the instruction placed by `mode`.
    pub fn mode(mut self, mode: InstructionMode) -> Self {
        self.mode = mode;
        self
    }

    /// The length of `encoder_input_tokens`: in concatenation mode the instruction (its
    /// EOS dropped) and the input share the encoder, so it holds both.
    pub fn encoder_length(&self) -> usize {
        match self.mode {
            InstructionMode::Hyper => self.lengths.inputs,
            InstructionMode::Concat => self.lengths.inputs + self.lengths.hyper_inputs,
        }
    }

    /// The length of `hyper_encoder_input_tokens` (1 in concatenation mode: EOS alone).
    pub fn instruction_length(&self) -> usize {
        match self.mode {
            InstructionMode::Hyper => self.lengths.hyper_inputs,
            InstructionMode::Concat => 1,
        }
    }

    /// What the model reads of an input and its instruction (token ids of the task's
    /// `inputs` and `hyper_inputs`): each trimmed to its length; in concatenation mode the
    /// instruction without its final EOS, then the input, in the encoder.
    pub fn model_inputs(&self, input: &[i64], instruction: &[i64]) -> ModelInputs {
        let trim =
            |ids: &[i64], len: usize| -> Vec<i64> { ids.iter().copied().take(len).collect() };
        match self.mode {
            InstructionMode::Hyper => ModelInputs {
                encoder: trim(input, self.lengths.inputs),
                instruction: trim(instruction, self.lengths.hyper_inputs),
            },
            InstructionMode::Concat => {
                // Padding would end up inside the joined sequence: drop it first.
                let unpadded = |ids: Vec<i64>| -> Vec<i64> {
                    ids.into_iter().take_while(|&t| t != 0).collect()
                };
                let input = unpadded(trim(input, self.lengths.inputs));
                let mut encoder = unpadded(trim(instruction, self.lengths.hyper_inputs));
                if encoder.last() == Some(&1) {
                    encoder.pop();
                }
                encoder.extend(input);
                ModelInputs {
                    encoder,
                    instruction: Vec::new(),
                }
            }
        }
    }

    fn row(&self, task: String, example: &Example) -> Result<Row, DataError> {
        self.lengths.validate()?;
        let FeatureLengths { targets: lt, .. } = self.lengths;
        let inputs = trimmed(example, "inputs", self.lengths.inputs)?;
        let hyper = trimmed(example, "hyper_inputs", self.lengths.hyper_inputs)?;
        let ModelInputs {
            encoder,
            mut instruction,
        } = self.model_inputs(&inputs, &hyper);
        if self.mode == InstructionMode::Concat {
            // The hypernetwork reads the empty text: EOS alone.
            instruction.push(1);
        }
        let targets = padded(trimmed(example, "targets", lt)?, lt);
        let task_id = match example.get("task_names") {
            Some(FeatureValue::Int(i)) => *i,
            Some(FeatureValue::Tokens(t)) => t.first().map_or(0, |&x| i64::from(x)),
            _ => 0,
        };
        let mut features = BTreeMap::new();
        features.insert(
            "encoder_input_tokens".into(),
            padded(encoder, self.encoder_length()),
        );
        features.insert(
            "hyper_encoder_input_tokens".into(),
            padded(instruction, self.instruction_length()),
        );
        features.insert(
            "decoder_input_tokens".into(),
            autoregressive_inputs(&targets, None),
        );
        features.insert("decoder_loss_weights".into(), loss_weights(&targets));
        features.insert("decoder_target_tokens".into(), targets);
        features.insert("task_ids".into(), vec![task_id]);
        for (name, len) in &self.passthrough {
            features.insert(name.clone(), padded(trimmed(example, name, *len)?, *len));
        }
        Ok(Row { task, features })
    }
}

impl FeatureConverter for HintConverter {
    fn convert(&self, examples: Vec<(String, Example)>) -> Result<Vec<Row>, DataError> {
        examples
            .into_iter()
            .map(|(task, example)| {
                let err_task = task.clone();
                self.row(task, &example).map_err(|e| wrap(&err_task, e))
            })
            .collect()
    }
}

/// A batch of HINT's model features by field (the output of [`HintConverter`]): what the
/// trainer turns into tensors. Each is `[rows, length]`, 0 is padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintBatch {
    /// `encoder_input_tokens`.
    pub encoder_input_tokens: BatchFeature,
    /// `hyper_encoder_input_tokens`.
    pub hyper_encoder_input_tokens: BatchFeature,
    /// `decoder_input_tokens` (targets shifted right, 0 first).
    pub decoder_input_tokens: BatchFeature,
    /// `decoder_target_tokens`.
    pub decoder_target_tokens: BatchFeature,
    /// `decoder_loss_weights` (1 on real target tokens).
    pub decoder_loss_weights: BatchFeature,
    /// The task of each row.
    pub tasks: Vec<String>,
}

impl TryFrom<Batch> for HintBatch {
    type Error = DataError;

    /// Takes HINT's features out of a batch; a missing one is an error naming it (the
    /// batch came from another converter).
    fn try_from(mut batch: Batch) -> Result<Self, DataError> {
        let mut take = |name: &str| {
            batch.features.remove(name).ok_or_else(|| {
                DataError::Config(format!(
                    "the batch has no `{name}`: it was not made by HINT's feature converter"
                ))
            })
        };
        Ok(Self {
            encoder_input_tokens: take("encoder_input_tokens")?,
            hyper_encoder_input_tokens: take("hyper_encoder_input_tokens")?,
            decoder_input_tokens: take("decoder_input_tokens")?,
            decoder_target_tokens: take("decoder_target_tokens")?,
            decoder_loss_weights: take("decoder_loss_weights")?,
            tasks: batch.tasks,
        })
    }
}

/// seqio's `EncDecFeatureConverter`, packed or not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EncDecConverter {
    /// Length of `inputs`.
    pub inputs: usize,
    /// Length of `targets`.
    pub targets: usize,
    /// Pack several examples per row (segment ids and positions added).
    pub pack: bool,
}

impl EncDecConverter {
    /// A converter with these lengths.
    pub fn new(inputs: usize, targets: usize, pack: bool) -> Self {
        Self {
            inputs,
            targets,
            pack,
        }
    }

    /// The lengths of `inputs` and `targets`, both positive.
    fn lengths(&self) -> Result<(usize, usize), DataError> {
        Ok((
            positive("inputs", self.inputs)?,
            positive("targets", self.targets)?,
        ))
    }

    fn unpacked(&self, task: String, example: &Example) -> Result<Row, DataError> {
        let (li, lt) = self.lengths()?;
        let targets = padded(trimmed(example, "targets", lt)?, lt);
        let mut features = BTreeMap::new();
        features.insert(
            "encoder_input_tokens".into(),
            padded(trimmed(example, "inputs", li)?, li),
        );
        features.insert(
            "decoder_input_tokens".into(),
            autoregressive_inputs(&targets, None),
        );
        features.insert("decoder_loss_weights".into(), loss_weights(&targets));
        features.insert("decoder_target_tokens".into(), targets);
        Ok(Row { task, features })
    }
}

/// Ids, segment ids and positions of one feature of a packed row.
type Track = (Vec<i64>, Vec<i64>, Vec<i64>);

/// A row being packed: per task feature, the ids, segment ids and positions so far.
#[derive(Default)]
struct OpenRow {
    task: Option<String>,
    segments: i64,
    ids: BTreeMap<&'static str, Track>,
}

impl OpenRow {
    fn fits(
        &self,
        example: &[(&'static str, Vec<i64>)],
        lengths: &[(&'static str, usize)],
    ) -> bool {
        example.iter().zip(lengths).all(|((name, ids), (_, len))| {
            self.ids.get(name).map_or(0, |(v, _, _)| v.len()) + ids.len() <= *len
        })
    }

    fn push(&mut self, task: &str, example: Vec<(&'static str, Vec<i64>)>) {
        self.task.get_or_insert_with(|| task.to_string());
        self.segments += 1;
        for (name, ids) in example {
            let entry = self.ids.entry(name).or_default();
            for (position, id) in ids.into_iter().enumerate() {
                entry.0.push(id);
                entry.1.push(self.segments);
                entry.2.push(position as i64);
            }
        }
    }

    fn finish(self, li: usize, lt: usize) -> Row {
        let mut ids = self.ids;
        let (inputs, in_seg, in_pos) = ids.remove("inputs").unwrap_or_default();
        let (targets, t_seg, t_pos) = ids.remove("targets").unwrap_or_default();
        let targets = padded(targets, lt);
        let t_seg = padded(t_seg, lt);
        let mut features = BTreeMap::new();
        features.insert("encoder_input_tokens".into(), padded(inputs, li));
        features.insert("encoder_segment_ids".into(), padded(in_seg, li));
        features.insert("encoder_positions".into(), padded(in_pos, li));
        features.insert(
            "decoder_input_tokens".into(),
            autoregressive_inputs(&targets, Some(&t_seg)),
        );
        features.insert("decoder_loss_weights".into(), loss_weights(&targets));
        features.insert("decoder_target_tokens".into(), targets);
        features.insert("decoder_segment_ids".into(), t_seg);
        features.insert("decoder_positions".into(), padded(t_pos, lt));
        Row {
            task: self.task.unwrap_or_default(),
            features,
        }
    }
}

impl FeatureConverter for EncDecConverter {
    fn window(&self) -> usize {
        if self.pack {
            // seqio packs windows of max(feature lengths) examples.
            self.inputs.max(self.targets).max(1)
        } else {
            1
        }
    }

    fn convert(&self, examples: Vec<(String, Example)>) -> Result<Vec<Row>, DataError> {
        if !self.pack {
            return examples
                .into_iter()
                .map(|(task, example)| {
                    let err_task = task.clone();
                    self.unpacked(task, &example)
                        .map_err(|e| wrap(&err_task, e))
                })
                .collect();
        }
        let (li, lt) = self.lengths()?;
        let lengths = [("inputs", li), ("targets", lt)];
        let mut rows = Vec::new();
        let mut open = OpenRow::default();
        for (task, example) in examples {
            let mut parts = Vec::with_capacity(2);
            for (name, len) in lengths {
                parts.push((
                    name,
                    trimmed(&example, name, len).map_err(|e| wrap(&task, e))?,
                ));
            }
            if open.segments > 0 && !open.fits(&parts, &lengths) {
                rows.push(std::mem::take(&mut open).finish(li, lt));
            }
            open.push(&task, parts);
        }
        if open.segments > 0 {
            rows.push(open.finish(li, lt));
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(inputs: &[u32], targets: &[u32]) -> (String, Example) {
        let mut e = Example::new();
        e.insert("inputs".into(), FeatureValue::Tokens(inputs.to_vec()));
        e.insert("targets".into(), FeatureValue::Tokens(targets.to_vec()));
        ("t".into(), e)
    }

    fn feature<'a>(batch: &'a Batch, name: &str) -> &'a [i64] {
        batch.get(name).unwrap().row(0)
    }

    /// The packed worked example of seqio's documentation (`seqio.md` §6.1).
    #[test]
    fn packing_reproduces_the_seqio_worked_example() {
        let converter = EncDecConverter::new(10, 7, true);
        let rows = converter
            .convert(vec![
                example(&[7, 8, 5, 1], &[3, 9, 1]),
                example(&[8, 4, 9, 3, 1], &[4, 1]),
            ])
            .unwrap();
        assert_eq!(rows.len(), 1);
        let batch = Batch::from_rows(&rows).unwrap();
        assert_eq!(
            feature(&batch, "encoder_input_tokens"),
            [7, 8, 5, 1, 8, 4, 9, 3, 1, 0]
        );
        assert_eq!(
            feature(&batch, "encoder_segment_ids"),
            [1, 1, 1, 1, 2, 2, 2, 2, 2, 0]
        );
        assert_eq!(
            feature(&batch, "encoder_positions"),
            [0, 1, 2, 3, 0, 1, 2, 3, 4, 0]
        );
        assert_eq!(
            feature(&batch, "decoder_target_tokens"),
            [3, 9, 1, 4, 1, 0, 0]
        );
        assert_eq!(
            feature(&batch, "decoder_input_tokens"),
            [0, 3, 9, 0, 4, 0, 0]
        );
        assert_eq!(
            feature(&batch, "decoder_loss_weights"),
            [1, 1, 1, 1, 1, 0, 0]
        );
        assert_eq!(
            feature(&batch, "decoder_segment_ids"),
            [1, 1, 1, 2, 2, 0, 0]
        );
        assert_eq!(feature(&batch, "decoder_positions"), [0, 1, 2, 0, 1, 0, 0]);
        assert_eq!(batch.get("decoder_positions").unwrap().shape, [1, 7]);
    }

    /// `seqio.md` §6.2: both examples fit one row of length 10.
    #[test]
    fn packing_follows_trim_and_pack_example() {
        let converter = EncDecConverter::new(10, 10, true);
        let rows = converter
            .convert(vec![
                example(&[8, 7, 1], &[4, 1]),
                example(&[2, 3, 4, 1], &[5, 6, 1]),
            ])
            .unwrap();
        let batch = Batch::from_rows(&rows).unwrap();
        assert_eq!(
            feature(&batch, "encoder_input_tokens"),
            [8, 7, 1, 2, 3, 4, 1, 0, 0, 0]
        );
        assert_eq!(
            feature(&batch, "encoder_segment_ids"),
            [1, 1, 1, 2, 2, 2, 2, 0, 0, 0]
        );
        assert_eq!(
            feature(&batch, "encoder_positions"),
            [0, 1, 2, 0, 1, 2, 3, 0, 0, 0]
        );
        assert_eq!(
            feature(&batch, "decoder_target_tokens"),
            [4, 1, 5, 6, 1, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            feature(&batch, "decoder_segment_ids"),
            [1, 1, 2, 2, 2, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            feature(&batch, "decoder_positions"),
            [0, 1, 0, 1, 2, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn packing_opens_a_new_row_when_a_feature_does_not_fit() {
        let converter = EncDecConverter::new(6, 6, true);
        let rows = converter
            .convert(vec![
                example(&[1, 2, 3, 1], &[4, 1]),
                example(&[5, 6, 1], &[7, 1]),
                example(&[8, 1], &[9, 1]),
            ])
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].features["encoder_input_tokens"], [1, 2, 3, 1, 0, 0]);
        assert_eq!(rows[1].features["encoder_input_tokens"], [5, 6, 1, 8, 1, 0]);
        assert_eq!(rows[1].features["encoder_segment_ids"], [1, 1, 1, 2, 2, 0]);
        assert_eq!(converter.window(), 6);
    }

    #[test]
    fn unpacked_shift_carries_eos() {
        let converter = EncDecConverter::new(6, 5, false);
        let rows = converter
            .convert(vec![example(&[7, 8, 5, 1], &[3, 9, 1])])
            .unwrap();
        let batch = Batch::from_rows(&rows).unwrap();
        assert_eq!(feature(&batch, "encoder_input_tokens"), [7, 8, 5, 1, 0, 0]);
        assert_eq!(feature(&batch, "decoder_target_tokens"), [3, 9, 1, 0, 0]);
        assert_eq!(feature(&batch, "decoder_input_tokens"), [0, 3, 9, 1, 0]);
        assert_eq!(feature(&batch, "decoder_loss_weights"), [1, 1, 1, 0, 0]);
    }

    #[test]
    fn autoregressive_inputs_restart_per_segment() {
        assert_eq!(
            autoregressive_inputs(
                &[3, 8, 1, 9, 1, 5, 4, 1, 0, 0],
                Some(&[1, 1, 1, 2, 2, 3, 3, 3, 0, 0])
            ),
            vec![0, 3, 8, 0, 9, 0, 5, 4, 0, 0]
        );
    }

    #[test]
    fn hint_converter_trims_pads_and_dedups_instructions() {
        let mut converter = HintConverter::new(4, 3, 3);
        converter.passthrough.push(("example_id".into(), 1));
        let make = |hyper: &[u32], id: i64| {
            let (task, mut e) = example(&[5, 6, 7, 8, 9, 1], &[3, 4, 5, 1]);
            e.insert("hyper_inputs".into(), FeatureValue::Tokens(hyper.to_vec()));
            e.insert("task_names".into(), FeatureValue::Int(63));
            e.insert("example_id".into(), FeatureValue::Int(id));
            (task, e)
        };
        let rows = converter
            .convert(vec![
                make(&[11, 1], 0),
                make(&[12, 13, 14, 1], 1),
                make(&[11, 1], 2),
            ])
            .unwrap();
        let batch = Batch::from_rows(&rows).unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(feature(&batch, "encoder_input_tokens"), [5, 6, 7, 8]);
        assert_eq!(feature(&batch, "hyper_encoder_input_tokens"), [11, 1, 0]);
        assert_eq!(feature(&batch, "decoder_target_tokens"), [3, 4, 5]);
        assert_eq!(feature(&batch, "decoder_input_tokens"), [0, 3, 4]);
        assert_eq!(feature(&batch, "decoder_loss_weights"), [1, 1, 1]);
        assert_eq!(feature(&batch, "task_ids"), [63]);
        assert_eq!(batch.get("example_id").unwrap().data, [0, 1, 2]);
        let (unique, index) = batch
            .get("hyper_encoder_input_tokens")
            .unwrap()
            .unique_rows();
        assert_eq!(unique.shape, [2, 3]);
        assert_eq!(unique.data, [11, 1, 0, 12, 13, 14]);
        assert_eq!(index, [0, 1, 0]);
    }

    #[test]
    fn untokenized_features_are_reported_by_name() {
        let converter = HintConverter::new(4, 3, 3);
        let mut e = Example::new();
        e.insert("inputs".into(), FeatureValue::Text("raw".into()));
        let err = converter.convert(vec![("t".into(), e)]).unwrap_err();
        assert_eq!(err.field_name(), Some("inputs"));
        assert!(err.to_string().contains("Tokenize"), "{err}");
    }

    #[test]
    fn concatenation_puts_the_instruction_before_the_input_in_the_encoder() {
        let converter = HintConverter::new(4, 3, 3).mode(InstructionMode::Concat);
        // The instruction keeps its first tokens and loses its EOS; the input follows.
        let inputs = converter.model_inputs(&[5, 6, 1], &[11, 12, 1]);
        assert_eq!(inputs.encoder, [11, 12, 5, 6, 1]);
        assert!(inputs.instruction.is_empty());
        let trimmed = converter.model_inputs(&[5, 6, 7, 8, 9], &[11, 12, 13, 1]);
        assert_eq!(trimmed.encoder, [11, 12, 13, 5, 6, 7, 8]);
        let (task, mut e) = example(&[5, 6, 1], &[3, 1]);
        e.insert("hyper_inputs".into(), FeatureValue::Tokens(vec![11, 12, 1]));
        let batch = HintBatch::try_from(
            Batch::from_rows(&converter.convert(vec![(task, e)]).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(batch.encoder_input_tokens.shape, [1, 7]);
        assert_eq!(batch.encoder_input_tokens.data, [11, 12, 5, 6, 1, 0, 0]);
        assert_eq!(batch.hyper_encoder_input_tokens.data, [1], "EOS alone");
        let hyper = HintConverter::new(4, 3, 3).model_inputs(&[5, 6, 1], &[11, 12, 1]);
        assert_eq!(
            (hyper.encoder, hyper.instruction),
            (vec![5, 6, 1], vec![11, 12, 1])
        );
    }

    #[test]
    fn lengths_read_the_gin_tuple_or_a_map_and_name_a_zero() {
        let tuple: FeatureLengths = serde_json::from_str("[8, 6, 4]").unwrap();
        let map: FeatureLengths =
            serde_json::from_str(r#"{"inputs": 8, "hyper_inputs": 6, "targets": 4}"#).unwrap();
        assert_eq!(tuple, map);
        assert_eq!(serde_json::to_string(&tuple).unwrap(), "[8,6,4]");
        let err = FeatureLengths::new(8, 0, 4).validate().unwrap_err();
        assert!(err.to_string().contains("`hyper_inputs`"), "{err}");
        assert!(serde_json::from_str::<FeatureLengths>("[8, 6]").is_err());
    }
}
