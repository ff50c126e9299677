//! Vocabularies over Hugging Face `tokenizers`, with T5's conventions.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tokenizers::Tokenizer;

/// Why a vocabulary could not be loaded or used.
#[derive(Debug, Error)]
pub enum VocabularyError {
    /// The `tokenizer.json` could not be read or parsed.
    #[error("cannot load tokenizer {path}: {message}")]
    Load {
        /// The file that was read.
        path: PathBuf,
        /// What `tokenizers` reported.
        message: String,
    },
    /// Encoding or decoding failed inside `tokenizers`.
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
}

/// A T5-style vocabulary: pad = 0, eos = 1, unk = 2, `<extra_id_N>` sentinels.
///
/// `encode` returns ids ending with EOS, as seqio's `append_eos` does for T5 features.
pub struct Vocabulary {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("vocab_size", &self.vocab_size())
            .finish_non_exhaustive()
    }
}

impl Vocabulary {
    /// The padding id of T5 vocabularies.
    pub const PAD_ID: u32 = 0;
    /// The end-of-sequence id of T5 vocabularies.
    pub const EOS_ID: u32 = 1;
    /// The unknown-piece id of T5 vocabularies.
    pub const UNK_ID: u32 = 2;

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, VocabularyError> {
        let path = path.as_ref();
        let tokenizer = Tokenizer::from_file(path).map_err(|e| VocabularyError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self { tokenizer })
    }

    /// Wraps an already-built tokenizer.
    pub fn from_tokenizer(tokenizer: Tokenizer) -> Self {
        Self { tokenizer }
    }

    /// Number of ids, sentinels included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The id of a whole token (`<extra_id_0>`), added tokens included.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Encodes `text` and makes sure the ids end with exactly one EOS, whether or not the
    /// tokenizer's post-processor already appends it (T5's does, a freshly trained one may not).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, VocabularyError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| VocabularyError::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.last() != Some(&Self::EOS_ID) {
            ids.push(Self::EOS_ID);
        }
        Ok(ids)
    }

    /// Encodes `text` with EOS appended only when `add_eos` is true (seqio's `encode` plus
    /// its `append_eos` rule). The tokenizer's own special tokens are not added, so T5's
    /// post-processor does not slip in an EOS for features with `add_eos = false`.
    pub fn encode_with(&self, text: &str, add_eos: bool) -> Result<Vec<u32>, VocabularyError> {
        // `encode_fast` skips character offsets, which ids do not need.
        let encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| VocabularyError::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        if add_eos {
            ids.push(Self::EOS_ID);
        }
        Ok(ids)
    }

    /// Encodes many texts on all cores (`tokenizers`' `encode_batch`), with the EOS rule of
    /// [`Vocabulary::encode_with`].
    pub fn encode_batch(
        &self,
        texts: &[&str],
        add_eos: bool,
    ) -> Result<Vec<Vec<u32>>, VocabularyError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| VocabularyError::Tokenizer(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|encoding| {
                let mut ids = encoding.get_ids().to_vec();
                if add_eos {
                    ids.push(Self::EOS_ID);
                }
                ids
            })
            .collect())
    }

    /// A stable 64-bit fingerprint of the whole tokenizer (FNV-1a over its JSON form), so
    /// that a cache can tell whether it was written with the same vocabulary.
    pub fn fingerprint(&self) -> u64 {
        let json = self.tokenizer.to_string(false).unwrap_or_default();
        crate::rng::fnv1a(json.as_bytes())
    }

    /// Writes the tokenizer as `tokenizer.json` (so a model directory carries its vocabulary).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), VocabularyError> {
        let path = path.as_ref();
        self.tokenizer
            .save(path, false)
            .map_err(|e| VocabularyError::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// Decodes ids, stopping at the first EOS and skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, VocabularyError> {
        let end = ids
            .iter()
            .position(|&id| id == Self::EOS_ID)
            .unwrap_or(ids.len());
        self.tokenizer
            .decode(&ids[..end], true)
            .map_err(|e| VocabularyError::Tokenizer(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word_level_vocabulary() -> Vocabulary {
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {
                "type": "WordLevel",
                "vocab": {"<pad>": 0, "</s>": 1, "<unk>": 2, "reverse": 3, "the": 4, "list": 5},
                "unk_token": "<unk>"
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json.to_string()).unwrap();
        Vocabulary::from_file(&path).unwrap()
    }

    #[test]
    fn appends_eos_and_maps_unknown_words_to_unk() {
        let vocab = word_level_vocabulary();
        assert_eq!(vocab.encode("reverse the list").unwrap(), vec![3, 4, 5, 1]);
        assert_eq!(vocab.encode("sort the list").unwrap(), vec![2, 4, 5, 1]);
        assert_eq!(vocab.vocab_size(), 6);
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Vocabulary::from_file("/nonexistent/tokenizer.json")
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/tokenizer.json"));
    }

    /// The real T5 vocabulary from `HINT_SHARED_DATA`; its encodings are documented in
    /// `t5-tokenizer/PROVENANCE.md`.
    #[test]
    #[ignore = "needs HINT_SHARED_DATA (set by .ci/run)"]
    fn real_t5_vocabulary_matches_known_encodings() {
        let root = std::env::var("HINT_SHARED_DATA").expect("HINT_SHARED_DATA");
        let vocab = Vocabulary::from_file(format!("{root}/t5-tokenizer/tokenizer.json")).unwrap();
        assert_eq!(
            vocab
                .encode("translate English to German: The house is wonderful.")
                .unwrap(),
            vec![13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1]
        );
        assert_eq!(vocab.vocab_size(), 32100);
        assert_eq!(
            vocab.decode(&[37, 629, 19, 1627, 5, 1, 0, 0]).unwrap(),
            "The house is wonderful."
        );
    }
}
