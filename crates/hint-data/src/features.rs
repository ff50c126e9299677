//! Output features: which task features the model consumes, with their vocabulary, EOS rule
//! and default length (seqio's `Feature`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::vocabulary::Vocabulary;

/// One output feature of a task (`inputs`, `hyper_inputs`, `targets`…).
#[derive(Clone)]
pub struct Feature {
    /// The vocabulary that tokenizes it and decodes predictions.
    pub vocabulary: Arc<Vocabulary>,
    /// Whether tokenization appends EOS (id 1). Super-NI: all true; P3: `inputs` and
    /// `hyper_inputs` false, `targets` true (`seqio.md` §6.4).
    pub add_eos: bool,
    /// Whether examples must have it (the feature converter errors otherwise).
    pub required: bool,
    /// The length used when a feature converter is given none for this feature.
    pub default_length: Option<usize>,
}

impl Feature {
    /// A required feature with EOS and no default length.
    pub fn new(vocabulary: Arc<Vocabulary>) -> Self {
        Self {
            vocabulary,
            add_eos: true,
            required: true,
            default_length: None,
        }
    }

    /// Sets the EOS rule.
    pub fn add_eos(mut self, add_eos: bool) -> Self {
        self.add_eos = add_eos;
        self
    }

    /// Makes the feature optional.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// Sets the default length.
    pub fn length(mut self, length: usize) -> Self {
        self.default_length = Some(length);
        self
    }
}

impl fmt::Debug for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feature")
            .field("vocab_size", &self.vocabulary.vocab_size())
            .field("add_eos", &self.add_eos)
            .field("required", &self.required)
            .field("default_length", &self.default_length)
            .finish()
    }
}

/// Output features by name.
pub type OutputFeatures = BTreeMap<String, Feature>;
