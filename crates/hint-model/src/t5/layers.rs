//! The small building blocks of T5: bias-free linear maps that compute in the activation
//! dtype, RMS layer norm, and the additive-mask convention.

use tch::{nn, Kind, Tensor};

use crate::packed::PackedWeight;

/// A bias-free `nn.Linear` (`weight [out, in]`, HF's name) whose weight is cast to the
/// activations' dtype, so that f32 master weights serve bf16 compute (the gradient flows
/// back through the cast into the f32 weight). Inference products (no gradient wanted) go
/// through a reordered copy of the weight (see `crate::packed`).
#[derive(Debug)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Tensor,
    packed: PackedWeight,
}

impl Linear {
    /// Creates `p/weight` with a normal initialisation of standard deviation `std`.
    pub fn new(p: nn::Path<'_>, in_features: i64, out_features: i64, std: f64) -> Self {
        let weight = p.var(
            "weight",
            &[out_features, in_features],
            nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        );
        Self::from_weight(weight)
    }

    /// A linear map over an existing `[out_features, in_features]` weight.
    pub fn from_weight(weight: Tensor) -> Self {
        Self {
            weight,
            packed: PackedWeight::default(),
        }
    }

    /// The weight's reordered copy for inference products.
    pub(crate) fn packed(&self) -> &PackedWeight {
        &self.packed
    }

    /// `x · weightᵀ`, in `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        if let Some(product) = self.packed.product(x, &[&self.weight]) {
            return product;
        }
        crate::remat::weight_product(x, &in_kind(&self.weight, x.kind()))
    }
}

/// Several linear maps of the same input as one matrix product, split back in order:
/// one wide product is 10–25% faster than its parts on CPU (more so in bf16), and the
/// weights stay separate variables under their Hugging Face names.
pub fn fused_linear<const N: usize>(x: &Tensor, linears: [&Linear; N]) -> [Tensor; N] {
    if N == 1 {
        return std::array::from_fn(|i| linears[i].forward(x));
    }
    let sizes: Vec<i64> = linears.iter().map(|l| l.weight.size()[0]).collect();
    let parts = stacked_product(x, &linears).split_with_sizes(sizes.as_slice(), -1);
    std::array::from_fn(|i| parts[i].shallow_clone())
}

/// `x` times the linear maps' weights stacked, unsplit: `[.., Σ out_features]`.
pub fn stacked_product(x: &Tensor, linears: &[&Linear]) -> Tensor {
    // The first map keeps the reordered copy of the stacked weights.
    let sources: Vec<&Tensor> = linears.iter().map(|l| &l.weight).collect();
    linears[0].packed().product(x, &sources).unwrap_or_else(|| {
        let weights: Vec<Tensor> = sources.iter().map(|w| in_kind(w, x.kind())).collect();
        crate::remat::weight_product(x, &Tensor::cat(&weights, 0))
    })
}

/// Concatenates `parts` along `dim`, broadcasting one-row parts to `batch` rows.
pub fn cat_broadcast(parts: &[Tensor], batch: i64, dim: i64) -> Tensor {
    let parts: Vec<Tensor> = parts
        .iter()
        .map(|part| {
            let mut shape = part.size();
            shape[0] = batch;
            part.expand(shape.as_slice(), false)
        })
        .collect();
    match parts.as_slice() {
        [only] => only.shallow_clone(),
        _ => Tensor::cat(&parts, dim),
    }
}

/// `tensor` in `kind`, without a copy when it already is.
pub fn in_kind(tensor: &Tensor, kind: Kind) -> Tensor {
    if tensor.kind() == kind {
        tensor.shallow_clone()
    } else {
        tensor.to_kind(kind)
    }
}

/// T5's RMS norm: no mean subtraction, no bias, statistics in f32.
///
/// In reduced precision it follows t5x (and transformers' bf16 `T5LayerNorm`): the input is
/// normalised in f32, rounded to the compute dtype, then scaled by the weight in that dtype.
/// (Scaling in f32 and rounding once was a quarter slower.) On the CPU one fused kernel
/// does the same arithmetic (`crate::fused`).
#[derive(Debug)]
pub struct LayerNorm {
    /// `[d_model]`, initialised to 1.
    pub weight: Tensor,
    epsilon: f64,
}

impl LayerNorm {
    /// Creates `p/weight`.
    pub fn new(p: nn::Path<'_>, d_model: i64, epsilon: f64, init: f64) -> Self {
        let weight = p.var("weight", &[d_model], nn::Init::Const(init));
        Self { weight, epsilon }
    }

    /// Normalises over the last dimension; the result has `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        crate::fused::rms_norm(x, &self.weight, self.epsilon)
    }
}

/// The value masked positions receive: HF uses `finfo(dtype).min` of the activations.
pub fn mask_value(kind: Kind) -> f64 {
    match kind {
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Half => -65504.0,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// Turns a `[B, T]` 0/1 padding mask into an additive `[B, 1, 1, T]` f32 bias.
pub fn additive_padding_mask(mask: &Tensor, kind: Kind) -> Tensor {
    let keep = mask.to_kind(Kind::Float).unsqueeze(1).unsqueeze(1);
    (1.0 - keep) * mask_value(kind)
}
