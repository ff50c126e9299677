//! `T5Config`: the Hugging Face `config.json` fields, also bindable from gin.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The feed-forward variant: `relu` (T5 v1.0) or a gated activation (v1.1: `gated-gelu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedForwardProj {
    /// `wo(relu(wi(x)))`
    #[serde(rename = "relu")]
    Relu,
    /// `wo(gelu_new(wi_0(x)) * wi_1(x))`; HF maps `gated-gelu` to the tanh approximation.
    #[serde(rename = "gated-gelu")]
    GatedGelu,
    /// `wo(silu(wi_0(x)) * wi_1(x))`
    #[serde(rename = "gated-silu")]
    GatedSilu,
}

impl FeedForwardProj {
    /// Whether the feed-forward has two input projections (`wi_0`, `wi_1`).
    pub fn is_gated(self) -> bool {
        !matches!(self, Self::Relu)
    }
}

/// The architecture of a T5 model, with Hugging Face's field names and defaults.
///
/// ```
/// let config = hint_model::T5Config::preset("small").unwrap();
/// assert_eq!((config.d_model, config.num_heads, config.d_ff), (512, 6, 1024));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct T5Config {
    /// Rows of the shared embedding (32128 for the T5 vocabulary).
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub d_model: i64,
    /// Width of one attention head.
    pub d_kv: i64,
    /// Inner width of the feed-forward.
    pub d_ff: i64,
    /// Encoder blocks.
    pub num_layers: i64,
    /// Decoder blocks; HF defaults it to `num_layers`.
    pub num_decoder_layers: Option<i64>,
    /// Attention heads.
    pub num_heads: i64,
    /// Relative-position buckets.
    pub relative_attention_num_buckets: i64,
    /// Distance beyond which relative positions share a bucket.
    pub relative_attention_max_distance: i64,
    /// Dropout probability in training.
    pub dropout_rate: f64,
    /// RMS norm epsilon.
    pub layer_norm_epsilon: f64,
    /// Scale of the random initialisation (HF's `initializer_factor`).
    pub initializer_factor: f64,
    /// Feed-forward variant.
    pub feed_forward_proj: FeedForwardProj,
    /// v1.0 ties the LM head to the shared embedding (with d^-1/2 scaling); v1.1 does not.
    pub tie_word_embeddings: bool,
    /// Padding id.
    pub pad_token_id: i64,
    /// End-of-sequence id.
    pub eos_token_id: i64,
    /// First decoder input id.
    pub decoder_start_token_id: i64,
}

impl Default for T5Config {
    /// HF's `T5Config()` defaults (t5-small's shape).
    fn default() -> Self {
        Self {
            vocab_size: 32128,
            d_model: 512,
            d_kv: 64,
            d_ff: 2048,
            num_layers: 6,
            num_decoder_layers: None,
            num_heads: 8,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            dropout_rate: 0.1,
            layer_norm_epsilon: 1e-6,
            initializer_factor: 1.0,
            feed_forward_proj: FeedForwardProj::Relu,
            tie_word_embeddings: true,
            pad_token_id: 0,
            eos_token_id: 1,
            decoder_start_token_id: 0,
        }
    }
}

impl T5Config {
    /// Reads a Hugging Face `config.json`; unknown fields (architectures, task params…) are ignored.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            message: format!("line {}, column {}: {e}", e.line(), e.column()),
        })
    }

    /// The `config.json` that transformers reads back as the same model.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("num_decoder_layers".into(), self.decoder_layers().into());
            object.insert("model_type".into(), "t5".into());
            object.insert(
                "architectures".into(),
                serde_json::json!(["T5ForConditionalGeneration"]),
            );
            object.insert("is_encoder_decoder".into(), true.into());
            object.insert("use_cache".into(), true.into());
        }
        value
    }

    /// Decoder blocks, resolving HF's default.
    pub fn decoder_layers(&self) -> i64 {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Width of the concatenated heads (need not equal `d_model`).
    pub fn inner_dim(&self) -> i64 {
        self.num_heads * self.d_kv
    }

    /// T5 v1.1 LM-adapted shapes used by HINT (`hint.md` §3), plus `tiny` for tests:
    /// `tiny`, `small`, `base`, `large`, `xl`, `xxl`.
    pub fn preset(name: &str) -> Option<Self> {
        let v1_1 = |d_model, d_ff, num_heads, num_layers| Self {
            d_model,
            d_ff,
            num_heads,
            num_layers,
            d_kv: 64,
            feed_forward_proj: FeedForwardProj::GatedGelu,
            tie_word_embeddings: false,
            dropout_rate: 0.0,
            ..Self::default()
        };
        Some(match name {
            "tiny" => Self {
                d_kv: 3,
                num_heads: 4,
                ..v1_1(8, 16, 4, 2)
            },
            "small" => v1_1(512, 1024, 6, 8),
            "base" => v1_1(768, 2048, 12, 12),
            "large" => v1_1(1024, 2816, 16, 24),
            "xl" => v1_1(2048, 5120, 32, 24),
            "xxl" => v1_1(4096, 10240, 64, 24),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_hugging_face_v1_1_config() {
        let json = r#"{"architectures": ["T5ForConditionalGeneration"], "d_ff": 1024, "d_kv": 64,
            "d_model": 512, "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
            "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": true,
            "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 8, "num_heads": 6,
            "num_layers": 8, "output_past": true, "pad_token_id": 0,
            "relative_attention_num_buckets": 32, "tie_word_embeddings": false, "vocab_size": 32128}"#;
        let config: T5Config = serde_json::from_str(json).unwrap();
        assert_eq!(config.feed_forward_proj, FeedForwardProj::GatedGelu);
        assert!(!config.tie_word_embeddings);
        assert_eq!(config.decoder_layers(), 8);
        assert_eq!(config.inner_dim(), 384);
        assert_eq!(config.relative_attention_max_distance, 128);
        let small = T5Config::preset("small").unwrap();
        assert_eq!(
            T5Config {
                dropout_rate: 0.1,
                num_decoder_layers: Some(8),
                ..small
            },
            config
        );
    }

    #[test]
    fn bad_config_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{\n  \"d_model\": \"wide\"\n}").unwrap();
        let err = T5Config::from_json_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn hf_json_round_trips() {
        let config = T5Config::preset("base").unwrap();
        let back: T5Config = serde_json::from_value(config.to_hf_json()).unwrap();
        assert_eq!(
            back,
            T5Config {
                num_decoder_layers: Some(12),
                ..config
            }
        );
    }
}
