//! The unit of data: an example is a map from feature names to values, as in seqio
//! (`inputs`, `targets`, `hyper_inputs`, `task_name`, `answer_choices`, tokenized features…).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One feature's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeatureValue {
    /// An integer (e.g. an index or a label id).
    Int(i64),
    /// A float (e.g. a target score).
    Float(f64),
    /// Text.
    Text(String),
    /// Several texts (answer choices, references).
    Texts(Vec<String>),
    /// Token ids.
    Tokens(Vec<u32>),
}

impl FeatureValue {
    /// The text, when this value is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The token ids, when this value holds tokens.
    pub fn as_tokens(&self) -> Option<&[u32]> {
        match self {
            Self::Tokens(tokens) => Some(tokens),
            _ => None,
        }
    }
}

impl From<&str> for FeatureValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_string())
    }
}

impl From<String> for FeatureValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

/// An example: feature name → value, ordered by name so that printing and hashing are stable.
pub type Example = BTreeMap<String, FeatureValue>;
