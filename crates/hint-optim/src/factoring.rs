//! t5x's factoring heuristic (`_factored_dims`): which two axes carry the rank-1
//! second-moment estimate.

/// The two axes of a factored second moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactoredDims {
    /// The largest axis; `v_row` averages over it.
    pub d0: usize,
    /// The second-largest axis; `v_col` averages over it.
    pub d1: usize,
}

impl FactoredDims {
    /// Shape of `v_row`: the parameter's shape without `d0`.
    pub fn row_shape(&self, shape: &[i64]) -> Vec<i64> {
        without(shape, self.d0)
    }

    /// Shape of `v_col`: the parameter's shape without `d1`.
    pub fn col_shape(&self, shape: &[i64]) -> Vec<i64> {
        without(shape, self.d1)
    }

    /// The index of `d1` in `v_row`, whose `d0` axis is gone.
    pub fn d1_in_row(&self) -> usize {
        if self.d1 > self.d0 {
            self.d1 - 1
        } else {
            self.d1
        }
    }
}

fn without(shape: &[i64], axis: usize) -> Vec<i64> {
    shape
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != axis)
        .map(|(_, &d)| d)
        .collect()
}

/// The factored axes of a parameter of `shape`, or `None` for a full second moment.
///
/// t5x ranks the axes with NumPy's `argsort`, which is stable for the short arrays of
/// shapes, so among equal sizes the later axis counts as larger: `[2048, 2048]` gives
/// `d0 = 1, d1 = 0`. Only the second-largest size is compared to the threshold.
pub fn factored_dims(
    shape: &[i64],
    factored: bool,
    min_dim_size_to_factor: i64,
) -> Option<FactoredDims> {
    if !factored || shape.len() < 2 {
        return None;
    }
    let mut order: Vec<usize> = (0..shape.len()).collect();
    order.sort_by_key(|&axis| shape[axis]);
    let d0 = order[order.len() - 1];
    let d1 = order[order.len() - 2];
    (shape[d1] >= min_dim_size_to_factor).then_some(FactoredDims { d0, d1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_rank() {
        assert_eq!(factored_dims(&[4096], true, 128), None);
        assert_eq!(factored_dims(&[32, 8], true, 128), None);
        assert_eq!(factored_dims(&[32, 4096], true, 128), None);
        assert_eq!(factored_dims(&[512, 128], false, 128), None);
        assert_eq!(
            factored_dims(&[512, 128], true, 128),
            Some(FactoredDims { d0: 0, d1: 1 })
        );
        assert_eq!(
            factored_dims(&[128, 512], true, 128),
            Some(FactoredDims { d0: 1, d1: 0 })
        );
    }

    #[test]
    fn ties_make_the_later_axis_largest() {
        assert_eq!(
            factored_dims(&[2048, 2048], true, 128),
            Some(FactoredDims { d0: 1, d1: 0 })
        );
        assert_eq!(
            factored_dims(&[130, 6, 130], true, 128),
            Some(FactoredDims { d0: 2, d1: 0 })
        );
        assert_eq!(
            factored_dims(&[2, 3], true, 2),
            Some(FactoredDims { d0: 1, d1: 0 })
        );
    }

    #[test]
    fn slot_shapes() {
        let dims = factored_dims(&[4, 130, 140], true, 128).unwrap();
        assert_eq!(dims, FactoredDims { d0: 2, d1: 1 });
        assert_eq!(dims.row_shape(&[4, 130, 140]), vec![4, 130]);
        assert_eq!(dims.col_shape(&[4, 130, 140]), vec![4, 140]);
        assert_eq!(dims.d1_in_row(), 1);
        let dims = factored_dims(&[140, 130], true, 128).unwrap();
        assert_eq!(dims.d1_in_row(), 0);
        let dims = factored_dims(&[130, 140], true, 128).unwrap();
        assert_eq!(dims.d1_in_row(), 0);
    }
}
