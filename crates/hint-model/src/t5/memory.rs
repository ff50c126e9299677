//! `EncoderMemory`: what the decoder cross-attends to, as segments along the sequence.
//!
//! A segment has either one row per example or a single row that every example shares.
//! HINT's fusion puts the encoded instruction in front of every encoded input; kept as a
//! one-row segment, its cross-attention keys and values are projected once per task
//! instead of once per example (keys and values are row-wise projections, so projecting
//! the segments apart and concatenating equals projecting the concatenation).

use tch::Tensor;

use super::layers::cat_broadcast;

/// Encoder states in segments (`[B, L_i, d]` or `[1, L_i, d]` each) with the `[B, ΣL_i]`
/// padding mask of the whole sequence.
///
/// ```
/// use hint_model::t5::memory::EncoderMemory;
/// use tch::{Kind, Tensor};
/// let instruction = Tensor::zeros([1, 5, 8], (Kind::Float, tch::Device::Cpu));
/// let inputs = Tensor::zeros([3, 4, 8], (Kind::Float, tch::Device::Cpu));
/// let mask = Tensor::ones([3, 9], (Kind::Int64, tch::Device::Cpu));
/// let memory = EncoderMemory::from_segments(vec![instruction, inputs], mask);
/// assert_eq!((memory.batch(), memory.len()), (3, 9));
/// assert_eq!(memory.concatenated().size(), [3, 9, 8]);
/// ```
#[derive(Debug)]
pub struct EncoderMemory {
    segments: Vec<Tensor>,
    mask: Tensor,
    /// Positions in front of the segments whose keys and values every cross-attention
    /// finds projected in its adaptation (0: none).
    projected_front: i64,
}

impl EncoderMemory {
    /// One segment: states `[B, T, d]` with their `[B, T]` mask.
    pub fn new(states: &Tensor, mask: &Tensor) -> Self {
        Self {
            segments: vec![states.shallow_clone()],
            mask: mask.shallow_clone(),
            projected_front: 0,
        }
    }

    /// Segments in sequence order; each has `B` rows or one shared row, and their lengths
    /// add up to the mask's.
    ///
    /// # Panics
    /// When there is no segment, a segment's row count is neither 1 nor the mask's, or
    /// the lengths disagree with the mask: these are programming errors of the caller.
    pub fn from_segments(segments: Vec<Tensor>, mask: Tensor) -> Self {
        Self::with_projected_front(0, segments, mask)
    }

    /// [`EncoderMemory::from_segments`] behind `front` positions whose cross-attention keys
    /// and values were projected ahead of time: every decoder block's cross-attention
    /// adaptation carries them (`AttentionAdaptation::projected_memory`, made by
    /// `HyperT5::project_instruction`). `mask` covers the front too.
    ///
    /// # Panics
    /// As [`EncoderMemory::from_segments`], with `front` counted in the length.
    pub fn with_projected_front(front: i64, segments: Vec<Tensor>, mask: Tensor) -> Self {
        let (batch, len) = (mask.size()[0], mask.size()[1]);
        assert!(!segments.is_empty(), "encoder memory without segments");
        let total: i64 = front + segments.iter().map(|s| s.size()[1]).sum::<i64>();
        assert_eq!(total, len, "encoder memory segments vs mask length");
        for s in &segments {
            let rows = s.size()[0];
            assert!(
                rows == 1 || rows == batch,
                "encoder memory segment with {rows} rows for a batch of {batch}"
            );
        }
        Self {
            segments,
            mask,
            projected_front: front,
        }
    }

    /// Positions in front whose keys and values are projected ahead of time (0: none).
    pub fn projected_front(&self) -> i64 {
        self.projected_front
    }

    /// Examples in the batch.
    pub fn batch(&self) -> i64 {
        self.mask.size()[0]
    }

    /// Total sequence length.
    pub fn len(&self) -> i64 {
        self.mask.size()[1]
    }

    /// Whether the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `[B, T]` padding mask.
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    /// The segments in order.
    pub fn segments(&self) -> &[Tensor] {
        &self.segments
    }

    /// The states as one `[B, T, d]` tensor (shared rows broadcast to the batch).
    ///
    /// # Panics
    /// When a front was projected ahead of time (its states are not kept).
    pub fn concatenated(&self) -> Tensor {
        assert_eq!(self.projected_front, 0, "a projected front has no states");
        cat_broadcast(&self.segments, self.batch(), 1)
    }

    /// Every example repeated `times` times in place (beam search's hypotheses); shared
    /// segments stay shared.
    pub fn repeat_rows(&self, times: i64) -> Self {
        let repeat = |t: &Tensor| t.repeat_interleave_self_int(times, 0, None);
        Self {
            segments: self
                .segments
                .iter()
                .map(|s| {
                    if s.size()[0] == 1 {
                        s.shallow_clone()
                    } else {
                        repeat(s)
                    }
                })
                .collect(),
            mask: repeat(&self.mask),
            projected_front: self.projected_front,
        }
    }
}
