//! Preprocessors: per-example steps of a task, applied in order (seqio's preprocessors).
//!
//! A [`Preprocessor`] maps one example to zero or more examples (rank classification makes
//! one per answer choice). It gets a [`Context`] with the output features and a seeded RNG
//! that depends only on (task seed, step, example index), so a run is reproducible whatever
//! the thread count, sharding or resume point. The task pipeline runs the steps of many
//! examples in parallel.
//!
//! Built-ins: [`Rekey`], [`Template`], [`HintSplit`], [`Strip`], [`RankClassification`],
//! [`PretrainSplit`], [`Tokenize`], and T5's [`SpanCorruption`] (its own module);
//! [`FnPreprocessor`] wraps a closure. [`PreprocessorSpec`]
//! is the serde form of the built-ins, for configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::{Example, FeatureValue};
use crate::features::OutputFeatures;
use crate::rng::SplitMix64;
use crate::source::kind_name;
use crate::span_corruption::SpanCorruption;
use crate::vocabulary::Vocabulary;

/// What a preprocessor may use besides the example.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The task's output features.
    pub output_features: &'a OutputFeatures,
    /// The seed of this run.
    pub seed: u64,
    /// This preprocessor's position in the task's list.
    pub step: usize,
    /// The example's index in source order (per shard).
    pub index: u64,
}

impl Context<'_> {
    /// A generator private to this (seed, step, example).
    pub fn rng(&self) -> SplitMix64 {
        SplitMix64::derive(&[self.seed, self.step as u64, self.index])
    }
}

/// One step of a task's preprocessing.
pub trait Preprocessor: Send + Sync {
    /// A short name for listings and cache info.
    fn name(&self) -> String;

    /// Maps one example to zero or more examples. Errors about fields should be
    /// [`DataError::Field`]; the pipeline adds the task and the example's origin.
    fn apply(&self, example: Example, ctx: &Context<'_>) -> Result<Vec<Example>, DataError>;
}

/// The text of a field, or an error naming it.
pub fn text_field<'a>(example: &'a Example, field: &str) -> Result<&'a str, DataError> {
    match example.get(field) {
        Some(FeatureValue::Text(text)) => Ok(text),
        Some(other) => Err(DataError::field(
            field,
            format!("expected text, found {}", kind_name(other)),
        )),
        None => Err(DataError::field(field, "missing")),
    }
}

/// The token ids of a field, or an error naming it.
pub fn tokens_field<'a>(example: &'a Example, field: &str) -> Result<&'a [u32], DataError> {
    match example.get(field) {
        Some(FeatureValue::Tokens(tokens)) => Ok(tokens),
        Some(other) => Err(DataError::field(
            field,
            format!("expected token ids, found {}", kind_name(other)),
        )),
        None => Err(DataError::field(field, "missing")),
    }
}

/// seqio's `rekey`: the output holds exactly the keys of the map, `new ← example[old]`; a
/// `None` source yields empty text. Fields not named are dropped, as in seqio.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rekey {
    /// New name → old name (or `None` for `""`).
    pub key_map: BTreeMap<String, Option<String>>,
}

impl Rekey {
    /// From (new, old) pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            key_map: pairs
                .into_iter()
                .map(|(new, old)| (new.to_string(), Some(old.to_string())))
                .collect(),
        }
    }
}

impl Preprocessor for Rekey {
    fn name(&self) -> String {
        "rekey".into()
    }

    fn apply(&self, example: Example, _ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        let mut out = Example::new();
        for (new, old) in &self.key_map {
            let value = match old {
                None => FeatureValue::Text(String::new()),
                Some(old) => match example.get(old) {
                    Some(v) => v.clone(),
                    None => return Err(DataError::field(old, "missing (needed by rekey)")),
                },
            };
            out.insert(new.clone(), value);
        }
        Ok(vec![out])
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Field(String),
}

/// Renders a string template over fields into `output`: `"{definition} Input: {input}"`.
/// `{{` and `}}` are literal braces; integers and floats render as numbers; other fields are
/// kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    output: String,
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `template`; an unclosed `{` is a configuration error.
    pub fn new(output: impl Into<String>, template: &str) -> Result<Self, DataError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(DataError::Config(format!(
                                    "template {template:?}: unclosed `{{`"
                                )))
                            }
                        }
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(name.trim().to_string()));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self {
            output: output.into(),
            source: template.to_string(),
            pieces,
        })
    }

    /// The fields the template reads.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(f) => Some(f.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// Renders the template against `example`.
    pub fn render(&self, example: &Example) -> Result<String, DataError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Field(field) => match example.get(field) {
                    Some(FeatureValue::Text(text)) => out.push_str(text),
                    Some(FeatureValue::Int(i)) => out.push_str(&i.to_string()),
                    Some(FeatureValue::Float(f)) => out.push_str(&f.to_string()),
                    Some(other) => {
                        return Err(DataError::field(
                            field,
                            format!(
                                "template {:?} needs text, found {}",
                                self.source,
                                kind_name(other)
                            ),
                        ))
                    }
                    None => {
                        return Err(DataError::field(
                            field,
                            format!("missing (needed by template {:?})", self.source),
                        ))
                    }
                },
            }
        }
        Ok(out)
    }
}

impl Preprocessor for Template {
    fn name(&self) -> String {
        format!("template({}={:?})", self.output, self.source)
    }

    fn apply(&self, mut example: Example, _ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        let text = self.render(&example)?;
        example.insert(self.output.clone(), FeatureValue::Text(text));
        Ok(vec![example])
    }
}

/// HINT's split: the instruction goes to the hypernetwork (`hyper_inputs`), the instance to
/// the underlying encoder (`inputs`); both are templates over the example's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct HintSplit {
    instruction: Template,
    instance: Template,
}

impl HintSplit {
    /// `instruction` renders `hyper_inputs`, `instance` renders `inputs`
    /// (e.g. `"{definition}"` and `"{input}"` for HINT's Def setting).
    pub fn new(instruction: &str, instance: &str) -> Result<Self, DataError> {
        Ok(Self {
            instruction: Template::new("hyper_inputs", instruction)?,
            instance: Template::new("inputs", instance)?,
        })
    }
}

impl Preprocessor for HintSplit {
    fn name(&self) -> String {
        format!(
            "hint_split(hyper_inputs={:?}, inputs={:?})",
            self.instruction.source, self.instance.source
        )
    }

    fn apply(&self, mut example: Example, _ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        let hyper = self.instruction.render(&example)?;
        let inputs = self.instance.render(&example)?;
        example.insert("hyper_inputs".into(), FeatureValue::Text(hyper));
        example.insert("inputs".into(), FeatureValue::Text(inputs));
        Ok(vec![example])
    }
}

/// Strips surrounding whitespace of text fields (P3's `targets_pretokenized` starts with a
/// space); absent fields are left alone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Strip {
    /// The fields to strip.
    pub fields: Vec<String>,
}

impl Preprocessor for Strip {
    fn name(&self) -> String {
        format!("strip({})", self.fields.join(","))
    }

    fn apply(&self, mut example: Example, _ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        for field in &self.fields {
            match example.get_mut(field) {
                Some(FeatureValue::Text(text)) => *text = text.trim().to_string(),
                Some(FeatureValue::Texts(texts)) => {
                    for text in texts {
                        *text = text.trim().to_string();
                    }
                }
                _ => {}
            }
        }
        Ok(vec![example])
    }
}

/// Rank-classification expansion (`t5.data.preprocessors.rank_classification`): one example
/// per answer choice, with `targets` = the choice, `is_correct` (1 when the choice equals the
/// stripped target), `choice_index` and `example_id` (the source index, to regroup choices
/// when scoring). Other fields (`inputs`, `hyper_inputs`, `task_names`…) pass through.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RankClassification {
    /// The list of choices (P3: `answer_choices`).
    pub choices: String,
    /// The correct answer's field (P3: `targets_pretokenized`); its text is compared to the
    /// choices after stripping.
    pub target: String,
}

impl Default for RankClassification {
    fn default() -> Self {
        Self {
            choices: "answer_choices".into(),
            target: "targets_pretokenized".into(),
        }
    }
}

impl Preprocessor for RankClassification {
    fn name(&self) -> String {
        format!("rank_classification({}, {})", self.choices, self.target)
    }

    fn apply(&self, mut example: Example, ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        let choices = match example.remove(&self.choices) {
            Some(FeatureValue::Texts(choices)) => choices,
            Some(other) => {
                return Err(DataError::field(
                    &self.choices,
                    format!("expected a list of texts, found {}", kind_name(&other)),
                ))
            }
            None => return Err(DataError::field(&self.choices, "missing")),
        };
        let target = text_field(&example, &self.target)?.trim().to_string();
        example.remove("targets");
        Ok(choices
            .into_iter()
            .enumerate()
            .map(|(i, choice)| {
                let mut row = example.clone();
                let correct = choice.trim() == target;
                row.insert("targets".into(), FeatureValue::Text(choice));
                row.insert("is_correct".into(), FeatureValue::Int(i64::from(correct)));
                row.insert("choice_index".into(), FeatureValue::Int(i as i64));
                row.insert("example_id".into(), FeatureValue::Int(ctx.index as i64));
                row
            })
            .collect())
    }
}

/// The C4-style hypernetwork pretraining split (`hint.md` §12): a text's tokens are cut into
/// segments of at most `segment_length` tokens; each segment becomes one example with the
/// first part in `hyper_inputs`, the middle part in `inputs` and the continuation in
/// `targets` (`task_names` = 0). Split points are drawn independently over the real tokens
/// only (`s1 ~ U[1, n-1)`, `s2 ~ U[s1, n)`), the port's fix of the reference's correlated
/// draws over padded segments. EOS is appended to each part per the output features' rules.
///
/// The reference's ablations cut more parts, joined by the separator id 1 (EOS):
/// `parts = 4` (`c4_registry_4part.py`) gives the hypernetwork A·1·D, the encoder B and the
/// target C; `parts = 6` (`c4_registry_6part.py`) the hypernetwork A·1·C·1·F, the encoder
/// B·1·D and the target E. Split point `j` of `k − 1` is drawn from `[s_{j−1}, n − k + 1 + j)`
/// (`s_0 = 1`), as the reference draws them, over the real tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PretrainSplit {
    /// The field to split (C4: `text`): a text, a list of texts (concatenated, see
    /// [`corpus_tokens`]) or token ids.
    pub field: String,
    /// Tokens per segment before EOS (511 fits lengths of 512).
    pub segment_length: usize,
    /// Parts per segment: 3 (the paper's), 4 or 6 (the reference's ablations).
    #[serde(default = "three")]
    pub parts: usize,
}

fn three() -> usize {
    3
}

impl Default for PretrainSplit {
    fn default() -> Self {
        Self {
            field: "text".into(),
            segment_length: 511,
            parts: 3,
        }
    }
}

impl PretrainSplit {
    /// The part counts there is a layout for.
    pub const PARTS: [usize; 3] = [3, 4, 6];

    /// Refuses a part count without a layout.
    pub fn validate(&self) -> Result<(), DataError> {
        if Self::PARTS.contains(&self.parts) {
            Ok(())
        } else {
            Err(DataError::field(
                "parts",
                format!("{}: the pretraining split has 3, 4 or 6 parts", self.parts),
            ))
        }
    }

    /// `(hyper_inputs, inputs, targets)` of one segment cut at `points` (ascending), the
    /// parts joined by the separator id 1 as the reference joins them.
    fn layout(&self, segment: &[u32], points: &[usize]) -> [Vec<u32>; 3] {
        let mut bounds = vec![0];
        bounds.extend_from_slice(points);
        bounds.push(segment.len());
        let part = |i: usize| &segment[bounds[i]..bounds[i + 1]];
        let joined = |indices: &[usize]| {
            let mut out = Vec::new();
            for (n, &i) in indices.iter().enumerate() {
                if n > 0 {
                    out.push(Vocabulary::EOS_ID);
                }
                out.extend_from_slice(part(i));
            }
            out
        };
        match self.parts {
            4 => [joined(&[0, 3]), joined(&[1]), joined(&[2])],
            6 => [joined(&[0, 2, 5]), joined(&[1, 3]), joined(&[4])],
            _ => [joined(&[0]), joined(&[1]), joined(&[2])],
        }
    }
}

impl Preprocessor for PretrainSplit {
    fn name(&self) -> String {
        format!(
            "pretrain_split({}, {}, {} parts)",
            self.field, self.segment_length, self.parts
        )
    }

    fn apply(&self, example: Example, ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        let vocab_of = |name: &str| {
            ctx.output_features.get(name).ok_or_else(|| {
                DataError::Config(format!(
                    "pretrain_split needs an output feature `{name}` (hyper_inputs, inputs, targets)"
                ))
            })
        };
        let targets = vocab_of("targets")?;
        let inputs = vocab_of("inputs")?;
        let hyper = vocab_of("hyper_inputs")?;
        let tokens = corpus_tokens(&example, &self.field, &targets.vocabulary)?;
        let with_eos = |mut part: Vec<u32>, add: bool| {
            if add {
                part.push(Vocabulary::EOS_ID);
            }
            FeatureValue::Tokens(part)
        };
        self.validate()?;
        let k = self.parts as u64;
        let mut rng = ctx.rng();
        let mut out = Vec::new();
        for segment in tokens.chunks(self.segment_length.max(2)) {
            let n = segment.len() as u64;
            if n < k - 1 {
                continue;
            }
            let mut points = Vec::with_capacity(self.parts - 1);
            let mut low = 1;
            for j in 1..k {
                let point = rng.range(low, n + 1 + j - k).max(low);
                points.push(point as usize);
                low = point;
            }
            let [hyper_part, input_part, target_part] = self.layout(segment, &points);
            let mut row = Example::new();
            row.insert("hyper_inputs".into(), with_eos(hyper_part, hyper.add_eos));
            row.insert("inputs".into(), with_eos(input_part, inputs.add_eos));
            row.insert("targets".into(), with_eos(target_part, targets.add_eos));
            row.insert("task_names".into(), FeatureValue::Int(0));
            out.push(row);
        }
        Ok(out)
    }
}

/// The token ids of a corpus example's `field`, without EOS: a text, a list of texts
/// (tokenized one by one and concatenated, seqio's `reduce_concat_tokens`) or token ids.
pub fn corpus_tokens(
    example: &Example,
    field: &str,
    vocabulary: &Vocabulary,
) -> Result<Vec<u32>, DataError> {
    Ok(corpus_documents(example, field, vocabulary)?.concat())
}

/// The token ids of each text of a corpus example's `field` (one for a text or token ids),
/// without EOS.
pub fn corpus_documents(
    example: &Example,
    field: &str,
    vocabulary: &Vocabulary,
) -> Result<Vec<Vec<u32>>, DataError> {
    let strip_eos = |mut ids: Vec<u32>| {
        if ids.last() == Some(&Vocabulary::EOS_ID) {
            ids.pop();
        }
        ids
    };
    Ok(match example.get(field) {
        Some(FeatureValue::Text(text)) => vec![strip_eos(vocabulary.encode_with(text, false)?)],
        Some(FeatureValue::Texts(texts)) => texts
            .iter()
            .map(|text| Ok(strip_eos(vocabulary.encode_with(text, false)?)))
            .collect::<Result<_, DataError>>()?,
        Some(FeatureValue::Tokens(tokens)) => vec![strip_eos(tokens.clone())],
        Some(other) => {
            return Err(DataError::field(
                field,
                format!(
                    "expected text, texts or token ids, found {}",
                    kind_name(other)
                ),
            ))
        }
        None => return Err(DataError::field(field, "missing")),
    })
}

/// Tokenizes every output feature that holds text with its vocabulary, appending EOS when
/// the feature's `add_eos` is set; the text is kept as `<feature>_pretokenized`
/// (seqio's `tokenize` + `append_eos`). A feature that already holds token ids (P3's
/// pretokenized `inputs`/`targets`) only gets the EOS rule, applied as "ends with EOS" so
/// that P3's targets, which already end with EOS, do not get a second one.
///
/// Encodings are memoised (up to [`EncodeMemo::CAPACITY`] texts): HINT's instructions repeat
/// across all instances of a task, so most `hyper_inputs` are encoded once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Tokenize {
    /// Keep the text as `<feature>_pretokenized`.
    pub copy_pretokenized: bool,
    /// Recent encodings.
    #[serde(skip)]
    pub memo: EncodeMemo,
}

impl Default for Tokenize {
    fn default() -> Self {
        Self {
            copy_pretokenized: true,
            memo: EncodeMemo::default(),
        }
    }
}

/// Memo key: (vocabulary address, EOS rule, text).
type MemoKey = (usize, bool, String);

/// A bounded memo of encodings shared by the threads of one [`Tokenize`]; cleared when full.
#[derive(Default)]
pub struct EncodeMemo(std::sync::Mutex<std::collections::HashMap<MemoKey, Arc<[u32]>>>);

impl EncodeMemo {
    /// Texts remembered before the memo starts over.
    pub const CAPACITY: usize = 8192;

    fn encode(
        &self,
        vocabulary: &Arc<Vocabulary>,
        text: &str,
        add_eos: bool,
    ) -> Result<Vec<u32>, DataError> {
        let key = (Arc::as_ptr(vocabulary) as usize, add_eos, text.to_string());
        if let Some(ids) = self.0.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(ids.to_vec());
        }
        let ids = vocabulary.encode_with(text, add_eos)?;
        if let Ok(mut memo) = self.0.lock() {
            if memo.len() >= Self::CAPACITY {
                memo.clear();
            }
            memo.insert(key, Arc::from(ids.as_slice()));
        }
        Ok(ids)
    }
}

impl Clone for EncodeMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for EncodeMemo {
    fn eq(&self, _: &Self) -> bool {
        // A cache: equal whatever it holds.
        true
    }
}

impl std::fmt::Debug for EncodeMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncodeMemo")
    }
}

impl Preprocessor for Tokenize {
    fn name(&self) -> String {
        "tokenize".into()
    }

    fn apply(&self, mut example: Example, ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        for (name, feature) in ctx.output_features {
            match example.get_mut(name) {
                Some(FeatureValue::Text(text)) => {
                    let text = std::mem::take(text);
                    let ids = self
                        .memo
                        .encode(&feature.vocabulary, &text, feature.add_eos)?;
                    example.insert(name.clone(), FeatureValue::Tokens(ids));
                    if self.copy_pretokenized {
                        example.insert(format!("{name}_pretokenized"), FeatureValue::Text(text));
                    }
                }
                Some(FeatureValue::Tokens(ids))
                    if feature.add_eos && ids.last() != Some(&Vocabulary::EOS_ID) =>
                {
                    ids.push(Vocabulary::EOS_ID);
                }
                Some(FeatureValue::Tokens(_)) => {}
                Some(other) => {
                    return Err(DataError::field(
                        name,
                        format!("cannot tokenize {}", kind_name(other)),
                    ))
                }
                None => {}
            }
        }
        Ok(vec![example])
    }
}

/// The closure type behind [`FnPreprocessor`].
pub type PreprocessFn =
    dyn Fn(Example, &Context<'_>) -> Result<Vec<Example>, DataError> + Send + Sync;

/// A preprocessor from a closure.
pub struct FnPreprocessor {
    name: String,
    f: Box<PreprocessFn>,
}

impl FnPreprocessor {
    /// Wraps `f` under `name`.
    pub fn new(
        name: impl Into<String>,
        f: impl Fn(Example, &Context<'_>) -> Result<Vec<Example>, DataError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            f: Box::new(f),
        }
    }
}

impl Preprocessor for FnPreprocessor {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn apply(&self, example: Example, ctx: &Context<'_>) -> Result<Vec<Example>, DataError> {
        (self.f)(example, ctx)
    }
}

/// The built-in preprocessors in serde form, for configuration files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", deny_unknown_fields)]
pub enum PreprocessorSpec {
    /// [`Rekey`].
    Rekey {
        /// New name → old name.
        key_map: BTreeMap<String, Option<String>>,
    },
    /// [`Template`].
    Template {
        /// The output field.
        output: String,
        /// The template.
        template: String,
    },
    /// [`HintSplit`].
    HintSplit {
        /// Template of `hyper_inputs`.
        instruction: String,
        /// Template of `inputs`.
        instance: String,
    },
    /// [`Strip`].
    Strip {
        /// The fields.
        fields: Vec<String>,
    },
    /// [`RankClassification`].
    RankClassification {
        /// The choices field.
        choices: String,
        /// The target field.
        target: String,
    },
    /// [`PretrainSplit`].
    PretrainSplit {
        /// The field.
        field: String,
        /// Tokens per segment.
        segment_length: usize,
        /// Parts per segment (3, 4 or 6).
        #[serde(default = "three")]
        parts: usize,
    },
    /// [`SpanCorruption`].
    SpanCorruption {
        /// The field.
        field: String,
        /// The model's input length, EOS included.
        inputs_length: usize,
        /// Fraction of tokens noised.
        #[serde(default = "noise_density")]
        noise_density: f64,
        /// Mean noise span length.
        #[serde(default = "mean_noise_span_length")]
        mean_noise_span_length: f64,
    },
    /// [`Tokenize`].
    Tokenize {
        /// Keep the text as `<feature>_pretokenized`.
        #[serde(default = "yes")]
        copy_pretokenized: bool,
    },
}

fn yes() -> bool {
    true
}

fn noise_density() -> f64 {
    0.15
}

fn mean_noise_span_length() -> f64 {
    3.0
}

impl PreprocessorSpec {
    /// Builds the preprocessor.
    pub fn build(&self) -> Result<Arc<dyn Preprocessor>, DataError> {
        Ok(match self {
            Self::Rekey { key_map } => Arc::new(Rekey {
                key_map: key_map.clone(),
            }),
            Self::Template { output, template } => Arc::new(Template::new(output, template)?),
            Self::HintSplit {
                instruction,
                instance,
            } => Arc::new(HintSplit::new(instruction, instance)?),
            Self::Strip { fields } => Arc::new(Strip {
                fields: fields.clone(),
            }),
            Self::RankClassification { choices, target } => Arc::new(RankClassification {
                choices: choices.clone(),
                target: target.clone(),
            }),
            Self::PretrainSplit {
                field,
                segment_length,
                parts,
            } => {
                let split = PretrainSplit {
                    field: field.clone(),
                    segment_length: *segment_length,
                    parts: *parts,
                };
                split.validate()?;
                Arc::new(split)
            }
            Self::SpanCorruption {
                field,
                inputs_length,
                noise_density,
                mean_noise_span_length,
            } => {
                let span_corruption = SpanCorruption {
                    field: field.clone(),
                    inputs_length: *inputs_length,
                    noise_density: *noise_density,
                    mean_noise_span_length: *mean_noise_span_length,
                };
                span_corruption.validate(None)?;
                Arc::new(span_corruption)
            }
            Self::Tokenize { copy_pretokenized } => Arc::new(Tokenize {
                copy_pretokenized: *copy_pretokenized,
                ..Tokenize::default()
            }),
        })
    }
}

#[cfg(test)]
mod tests;
