//! Training a new T5-style tokenizer from a corpus of strings (no download needed), as the
//! built-in instruction suite does.
//!
//! The result follows T5's conventions: a Unigram (SentencePiece-like) or BPE model over
//! `▁`-marked words (Metaspace pre-tokenizer and decoder), `<pad>` = 0, `</s>` = 1, `<unk>` = 2, and
//! optional `<extra_id_N>` sentinels at the top of the vocabulary in T5's order
//! (`<extra_id_0>` has the highest id).

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::DataError;
use crate::vocabulary::{Vocabulary, VocabularyError};

/// The subword model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenizerModel {
    /// SentencePiece-style Unigram, as T5's own vocabulary.
    Unigram,
    /// Byte-pair encoding over characters: merges follow frequency, so on small synthetic
    /// corpora frequent words and numbers (`▁74`) become single pieces predictably.
    #[default]
    Bpe,
}

/// Options of [`train_tokenizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerTrainingConfig {
    /// The subword model.
    pub model: TokenizerModel,
    /// Target size of the Unigram vocabulary, special tokens included, sentinels excluded.
    /// The trainer may stop below it on a small corpus.
    pub vocab_size: u32,
    /// Number of `<extra_id_N>` sentinels appended after the trained pieces (T5 uses 100).
    pub num_sentinels: u32,
    /// Longest piece the trainer may create, in characters.
    pub max_piece_length: usize,
}

impl Default for TokenizerTrainingConfig {
    fn default() -> Self {
        Self {
            model: TokenizerModel::default(),
            vocab_size: 1000,
            num_sentinels: 0,
            max_piece_length: 16,
        }
    }
}

/// The special tokens, in id order.
const SPECIAL_TOKENS: [&str; 3] = ["<pad>", "</s>", "<unk>"];

/// Trains a tokenizer on `corpus` and wraps it as a [`Vocabulary`] (pad 0, eos 1,
/// unk 2, then the pieces, then the sentinels).
pub fn train_tokenizer<I, S>(
    corpus: I,
    config: &TokenizerTrainingConfig,
) -> Result<Vocabulary, DataError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str> + Send,
{
    // The trainer subtracts the special tokens from the size without checking (it would
    // underflow), and a vocabulary of specials only cannot encode anything.
    if config.vocab_size < SPECIAL_TOKENS.len() as u32 + 2 {
        return Err(DataError::Config(format!(
            "tokenizer vocab_size {} is too small (need at least {})",
            config.vocab_size,
            SPECIAL_TOKENS.len() + 2
        )));
    }
    if config.max_piece_length == 0 {
        return Err(DataError::Config(
            "tokenizer max_piece_length must be positive".into(),
        ));
    }
    let training_error = |e: Box<dyn std::error::Error + Send + Sync>| {
        DataError::Vocabulary(VocabularyError::Tokenizer(format!("training failed: {e}")))
    };
    let special_tokens: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let (model, mut trainer): (ModelWrapper, TrainerWrapper) = match config.model {
        TokenizerModel::Unigram => {
            let trainer = UnigramTrainer::builder()
                .show_progress(false)
                .vocab_size(config.vocab_size)
                .max_piece_length(config.max_piece_length)
                .special_tokens(special_tokens)
                .unk_token(Some("<unk>".to_string()))
                .build()
                .map_err(|e| DataError::Config(format!("tokenizer trainer: {e}")))?;
            (Unigram::default().into(), trainer.into())
        }
        TokenizerModel::Bpe => {
            let trainer = BpeTrainer::builder()
                .show_progress(false)
                .vocab_size(config.vocab_size as usize)
                .min_frequency(0)
                .special_tokens(special_tokens)
                .max_token_length(Some(config.max_piece_length))
                .build();
            // The trainer keeps the model's unknown token, so unseen characters map to <unk>.
            let model = BPE::builder()
                .unk_token("<unk>".to_string())
                .build()
                .map_err(|e| DataError::Config(format!("BPE model: {e}")))?;
            (model.into(), trainer.into())
        }
    };

    let metaspace = Metaspace::new('▁', PrependScheme::Always, true);
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Metaspace(metaspace.clone())));
    tokenizer.with_decoder(Some(DecoderWrapper::Metaspace(metaspace)));

    // The trainer reads the corpus in parallel, so it needs an owned, sendable iterator.
    let texts: Vec<S> = corpus.into_iter().collect();
    if texts.iter().all(|t| t.as_ref().trim().is_empty()) {
        return Err(DataError::Config(
            "cannot train a tokenizer on an empty corpus".into(),
        ));
    }
    tokenizer
        .train(&mut trainer, texts.into_iter())
        .map_err(training_error)?;

    // T5 numbers sentinels downwards from the top: <extra_id_0> gets the last id.
    let sentinels: Vec<AddedToken> = (0..config.num_sentinels)
        .rev()
        .map(|n| AddedToken::from(format!("<extra_id_{n}>"), true))
        .collect();
    if !sentinels.is_empty() {
        tokenizer.add_special_tokens(&sentinels);
    }

    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        if tokenizer.token_to_id(token) != Some(id as u32) {
            return Err(DataError::Vocabulary(VocabularyError::Tokenizer(format!(
                "trained tokenizer gives {token} the id {:?}, expected {id}",
                tokenizer.token_to_id(token)
            ))));
        }
    }
    Ok(Vocabulary::from_tokenizer(tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_errors() {
        let tiny = TokenizerTrainingConfig {
            vocab_size: 3,
            ..Default::default()
        };
        assert!(train_tokenizer(["a b c"], &tiny).is_err());
        assert!(train_tokenizer(["", "  "], &TokenizerTrainingConfig::default()).is_err());
    }

    #[test]
    fn sentinels_follow_t5_numbering() {
        let corpus = [
            "reverse the list 1 2 3",
            "sort the words cat dog",
            "add 4 and 5",
        ];
        for model in [TokenizerModel::Unigram, TokenizerModel::Bpe] {
            let config = TokenizerTrainingConfig {
                model,
                vocab_size: 60,
                num_sentinels: 3,
                ..Default::default()
            };
            let vocab = train_tokenizer(corpus, &config).unwrap();
            let size = vocab.vocab_size() as u32;
            assert_eq!(vocab.encode("<extra_id_0>").unwrap(), vec![size - 1, 1]);
            assert_eq!(vocab.encode("<extra_id_2>").unwrap(), vec![size - 3, 1]);
            let ids = vocab.encode("sort the list").unwrap();
            assert_eq!(vocab.decode(&ids).unwrap(), "sort the list");
            assert!(vocab.encode("λ").unwrap().contains(&2), "{model:?}");
        }
    }
}
