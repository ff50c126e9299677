//! T5's feed-forward (`DenseReluDense`): ReLU (v1.0) or gated GELU/SiLU (v1.1).

use tch::{nn, Tensor};

use super::config::{FeedForwardProj, T5Config};
use super::layers::{in_kind, stacked_product, Linear};
use crate::fused::{gated_activation, GatedActivation};

/// The inner projections of a feed-forward sublayer.
#[derive(Debug)]
pub enum FeedForward {
    /// `wo(dropout(relu(wi(x))))`
    Relu {
        /// Input projection.
        wi: Linear,
        /// Output projection.
        wo: Linear,
        /// Dropout probability.
        dropout: f64,
    },
    /// `wo(dropout(act(wi_0(x)) * wi_1(x)))`
    Gated {
        /// Gate projection.
        wi_0: Linear,
        /// Linear projection.
        wi_1: Linear,
        /// Output projection.
        wo: Linear,
        /// Gate activation.
        activation: FeedForwardProj,
        /// Dropout probability.
        dropout: f64,
    },
}

impl FeedForward {
    /// Creates the projections under `p` (HF's `DenseReluDense`).
    pub fn new(p: nn::Path<'_>, config: &T5Config) -> Self {
        let (d, ff, f) = (config.d_model, config.d_ff, config.initializer_factor);
        let in_std = f * (d as f64).powf(-0.5);
        let wo = Linear::new(&p / "wo", ff, d, f * (ff as f64).powf(-0.5));
        let dropout = config.dropout_rate;
        match config.feed_forward_proj {
            FeedForwardProj::Relu => Self::Relu {
                wi: Linear::new(&p / "wi", d, ff, in_std),
                wo,
                dropout,
            },
            activation => Self::Gated {
                wi_0: Linear::new(&p / "wi_0", d, ff, in_std),
                wi_1: Linear::new(&p / "wi_1", d, ff, in_std),
                wo,
                activation,
                dropout,
            },
        }
    }

    /// Applies the feed-forward to already-normalised `x`; `ia3 [B|1, 1, d_ff]` rescales
    /// the inner activations (the input of `wo`, as PEFT's IA3 does).
    pub fn forward(&self, x: &Tensor, ia3: Option<&Tensor>, train: bool) -> Tensor {
        let rescaled = |inner: Tensor| match ia3 {
            Some(scale) => &inner * in_kind(scale, inner.kind()),
            None => inner,
        };
        match self {
            Self::Relu { wi, wo, dropout } => {
                wo.forward(&rescaled(wi.forward(x).relu().dropout(*dropout, train)))
            }
            Self::Gated {
                wi_0,
                wi_1,
                wo,
                activation,
                dropout,
            } => {
                // The gate and the linear half come from one product and go into one
                // fused kernel, which also gives back one gradient for the product.
                let product = stacked_product(x, &[wi_0, wi_1]);
                let fused = match activation {
                    FeedForwardProj::GatedSilu => GatedActivation::Silu,
                    // HF maps "gated-gelu" to gelu_new, the tanh approximation.
                    _ => GatedActivation::GeluTanh,
                };
                let inner = gated_activation(&product, fused);
                wo.forward(&rescaled(inner.dropout(*dropout, train)))
            }
        }
    }
}
