//! The per-parameter optimizer state (t5x's `v_row`, `v_col`, `v`, `m`).

use tch::{Device, Kind, Tensor};

use crate::config::AdafactorConfig;
use crate::error::Result;
use crate::factoring::{factored_dims, FactoredDims};

/// Second-moment estimate of one parameter.
#[derive(Debug)]
pub(crate) enum SecondMoment {
    /// Rank-1 estimate: O(m + n) memory for an m x n matrix.
    Factored {
        /// Which axes the two vectors average over.
        dims: FactoredDims,
        /// Mean of G² over `d0`.
        v_row: Tensor,
        /// Mean of G² over `d1`.
        v_col: Tensor,
    },
    /// Elementwise estimate, for shapes too small to factor.
    Full {
        /// Running G².
        v: Tensor,
    },
}

/// Everything Adafactor keeps for one parameter. Slots t5x stores as `(1,)` dummies
/// are simply absent here.
#[derive(Debug)]
pub(crate) struct Slots {
    pub(crate) second: SecondMoment,
    pub(crate) m: Option<Tensor>,
}

/// Names of the slots, as in t5x's `param_states`.
pub const SLOT_NAMES: [&str; 4] = ["v_row", "v_col", "v", "m"];

/// Elements of the state a parameter of `shape` gets under `config`, without allocating
/// it (the layout `Slots::zeros` makes): what a memory planner counts.
///
/// ```
/// use hint_optim::{state_elements, AdafactorConfig};
/// let config = AdafactorConfig::default(); // factored second moment, no momentum
/// assert_eq!(state_elements(&[512, 1024], &config), 512 + 1024);
/// assert_eq!(state_elements(&[512], &config), 512);
/// ```
pub fn state_elements(shape: &[i64], config: &AdafactorConfig) -> i64 {
    let numel: i64 = shape.iter().product();
    let second = match factored_dims(shape, config.factored, config.min_dim_size_to_factor) {
        Some(dims) => {
            dims.row_shape(shape).iter().product::<i64>()
                + dims.col_shape(shape).iter().product::<i64>()
        }
        None => numel,
    };
    second + if config.beta1.is_some() { numel } else { 0 }
}

impl Slots {
    /// Zero slots for a parameter of `shape` on `device`, laid out as `config` needs.
    pub(crate) fn zeros(shape: &[i64], device: Device, config: &AdafactorConfig) -> Result<Self> {
        let options = (Kind::Float, device);
        let second = match factored_dims(shape, config.factored, config.min_dim_size_to_factor) {
            Some(dims) => SecondMoment::Factored {
                dims,
                v_row: Tensor::f_zeros(dims.row_shape(shape), options)?,
                v_col: Tensor::f_zeros(dims.col_shape(shape), options)?,
            },
            None => SecondMoment::Full {
                v: Tensor::f_zeros(shape, options)?,
            },
        };
        let m = match config.beta1 {
            Some(_) => Some(Tensor::f_zeros(shape, options)?),
            None => None,
        };
        Ok(Self { second, m })
    }

    /// The slots in use, by t5x slot name.
    pub(crate) fn named(&self) -> Vec<(&'static str, &Tensor)> {
        let mut out = Vec::with_capacity(3);
        match &self.second {
            SecondMoment::Factored { v_row, v_col, .. } => {
                out.push(("v_row", v_row));
                out.push(("v_col", v_col));
            }
            SecondMoment::Full { v } => out.push(("v", v)),
        }
        if let Some(m) = &self.m {
            out.push(("m", m));
        }
        out
    }

    /// Mutable access to the slots in use, by t5x slot name.
    pub(crate) fn named_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        let mut out = Vec::with_capacity(3);
        match &mut self.second {
            SecondMoment::Factored { v_row, v_col, .. } => {
                out.push(("v_row", v_row));
                out.push(("v_col", v_col));
            }
            SecondMoment::Full { v } => out.push(("v", v)),
        }
        if let Some(m) = &mut self.m {
            out.push(("m", m));
        }
        out
    }

    /// Total number of f32 elements held.
    pub(crate) fn numel(&self) -> i64 {
        self.named()
            .iter()
            .map(|(_, t)| t.size().iter().product::<i64>())
            .sum()
    }
}
