//! Relative-position buckets, exactly as Hugging Face computes them (log branch in f32).

use tch::{Device, Kind, Tensor};

/// Maps `key − query` distances to bucket ids. Encoder self-attention is bidirectional
/// (half the buckets for each sign); decoder self-attention is causal (only the past).
pub fn relative_position_bucket(
    relative_position: &Tensor,
    bidirectional: bool,
    num_buckets: i64,
    max_distance: i64,
) -> Tensor {
    let (mut buckets, num_buckets, distance) = if bidirectional {
        let half = num_buckets / 2;
        (
            relative_position.gt(0).to_kind(Kind::Int64) * half,
            half,
            relative_position.abs(),
        )
    } else {
        (
            relative_position.zeros_like(),
            num_buckets,
            (-relative_position).clamp_min(0),
        )
    };
    let max_exact = num_buckets / 2;
    let is_small = distance.lt(max_exact);
    // Only distances ≥ max_exact reach the log; clamping keeps log(0) (and the undefined
    // cast of −inf to an integer) out of the computation.
    let scaled = (distance.clamp_min(max_exact).to_kind(Kind::Float) / max_exact as f64).log()
        / (max_distance as f64 / max_exact as f64).ln()
        * (num_buckets - max_exact) as f64;
    let large = (scaled.to_kind(Kind::Int64) + max_exact).clamp_max(num_buckets - 1);
    buckets += distance.where_self(&is_small, &large);
    buckets
}

/// Buckets for queries at positions `offset..offset+query_len` against keys `0..key_len`:
/// `[query_len, key_len]`.
pub fn bucket_grid(
    query_len: i64,
    key_len: i64,
    offset: i64,
    bidirectional: bool,
    num_buckets: i64,
    max_distance: i64,
    device: Device,
) -> Tensor {
    let context =
        Tensor::arange_start(offset, offset + query_len, (Kind::Int64, device)).unsqueeze(1);
    let memory = Tensor::arange(key_len, (Kind::Int64, device)).unsqueeze(0);
    relative_position_bucket(
        &(memory - context),
        bidirectional,
        num_buckets,
        max_distance,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `t5.md` §2.4's test vectors (HF's formula, 32 buckets, max distance 128).
    #[test]
    fn buckets_match_the_reference_table() {
        let distances = [
            -300i64, -128, -127, -64, -63, -32, -31, -16, -15, -9, -8, -7, -1, 0, 1, 7, 8, 9, 12,
            16, 31, 32, 64, 127, 128,
        ];
        let bidirectional = [
            15i64, 15, 15, 14, 13, 12, 11, 10, 9, 8, 8, 7, 1, 0, 17, 23, 24, 24, 25, 26, 27, 28,
            30, 31, 31,
        ];
        let causal = [
            31i64, 31, 31, 26, 26, 21, 21, 16, 15, 9, 8, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let input = Tensor::from_slice(&distances);
        let got: Vec<i64> = relative_position_bucket(&input, true, 32, 128)
            .try_into()
            .unwrap();
        assert_eq!(got, bidirectional);
        let got: Vec<i64> = relative_position_bucket(&input, false, 32, 128)
            .try_into()
            .unwrap();
        assert_eq!(got, causal);
    }

    #[test]
    fn grid_with_offset_is_the_last_row_of_the_full_grid() {
        let full = bucket_grid(5, 5, 0, false, 32, 128, Device::Cpu);
        let last = bucket_grid(1, 5, 4, false, 32, 128, Device::Cpu);
        assert!(full.narrow(0, 4, 1).equal(&last));
    }
}
