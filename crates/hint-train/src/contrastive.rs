//! The reference's opt-in "contrastive" metric on the pooled instruction features
//! (`hint.md` §4.2, §8): how far the cosine similarity of every pair of a batch's
//! instructions is from 1 for rows of the same task and 0 for rows of different tasks.
//! The reference computed it every step and never added it to the loss; here it is a
//! metric a run asks for (`TrainConfig.contrastive_metric`), off by default.

use tch::{Kind, Tensor};

/// The metric of one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contrastive {
    /// `mean over pairs (i, j) of (cos(f_i, f_j) − [task_i = task_j])²` (the reference's
    /// `cosine_loss`; pairs include `i = j`).
    pub cosine_loss: f64,
    /// The share of pairs of the same task (the reference's `positive_cosine_samples`).
    pub positive_share: f64,
}

/// Masked mean over the positions of encoded instructions `states [B, L, d]` under
/// `mask [B, L]`: the pooled feature of each row, `[B, d]` in f32.
pub fn pooled_features(states: &Tensor, mask: &Tensor) -> Tensor {
    let mask = mask.to_kind(Kind::Float).unsqueeze(-1);
    let summed = (states.to_kind(Kind::Float) * &mask).sum_dim_intlist(
        [1i64].as_slice(),
        false,
        Kind::Float,
    );
    summed
        / mask
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            .clamp_min(1.0)
}

/// The metric of pooled `features [B, d]` whose rows belong to tasks `task_ids [B]`;
/// norms are floored at 1e-8 as the reference's (optax's) cosine similarity does.
pub fn contrastive(features: &Tensor, task_ids: &Tensor) -> Contrastive {
    let features = features.to_kind(Kind::Float);
    let norms = features
        .square()
        .sum_dim_intlist([-1i64].as_slice(), true, Kind::Float)
        .sqrt()
        .clamp_min(1e-8);
    let unit = &features / norms;
    let similarity = unit.matmul(&unit.transpose(0, 1));
    let truth = task_ids
        .unsqueeze(1)
        .eq_tensor(&task_ids.unsqueeze(0))
        .to_kind(Kind::Float);
    Contrastive {
        cosine_loss: f64::try_from((similarity - &truth).square().mean(Kind::Float))
            .unwrap_or(f64::NAN),
        positive_share: f64::try_from(truth.mean(Kind::Float)).unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_matches_a_hand_computation() {
        // Rows 0 and 1 of task 7, row 2 of task 9. cos(0,1) = 0 (orthogonal),
        // cos(0,2) = 1 (same direction), cos(1,2) = 0; every self-pair is 1.
        let features = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 2.0, 3.0, 0.0]).view([3, 2]);
        let tasks = Tensor::from_slice(&[7i64, 7, 9]);
        let metric = contrastive(&features, &tasks);
        // Squared errors: diagonal 0; (0,1) and (1,0): (0 − 1)² = 1 each; (0,2) and
        // (2,0): (1 − 0)² = 1 each; (1,2) and (2,1): 0. Mean 4/9.
        assert!((metric.cosine_loss - 4.0 / 9.0).abs() < 1e-6, "{metric:?}");
        // Same-task pairs: the 3 diagonal ones and (0,1), (1,0): 5/9.
        assert!(
            (metric.positive_share - 5.0 / 9.0).abs() < 1e-6,
            "{metric:?}"
        );
    }

    #[test]
    fn pooling_ignores_padding() {
        let states = Tensor::from_slice(&[1.0f32, 1.0, 3.0, 3.0, 100.0, 100.0]).view([1, 3, 2]);
        let mask = Tensor::from_slice(&[1i64, 1, 0]).view([1, 3]);
        let pooled = pooled_features(&states, &mask);
        assert_eq!(Vec::<f32>::try_from(pooled.view([-1])).unwrap(), [2.0, 2.0]);
    }
}
