//! TensorFlow's stateless random numbers, bit for bit: what seqio's and T5's random
//! preprocessors (`span_corruption`'s noise mask) draw from a seed pair, so that given the same
//! seeds hint makes the same masks as t5x's data pipeline (golden test:
//! `tests/span_corruption_golden.rs`).
//!
//! `tf.random.stateless_uniform(shape, seed)` scrambles the seed pair into a Philox-4×32-10
//! key and counter (`StatelessRandomGetKeyCounter`: one Philox block of the seed under a fixed
//! key), then fills the output four values per block, counter incremented per block; a
//! float is made from the low 23 bits of each 32-bit sample (`[1, 2)` minus 1).
//!
//! ```
//! use hint_data::tf_random::stateless_uniform;
//! // tf.random.stateless_uniform([3], seed=(1, 2)).numpy()
//! assert_eq!(stateless_uniform(3, [1, 2]), vec![0.8440604, 0.19204533, 0.9962232]);
//! ```

/// Philox's multipliers and Weyl key increments (Salmon et al. 2011, TF's `philox_random.h`).
const MULTIPLIERS: [u32; 2] = [0xD251_1F53, 0xCD9E_8D57];
const KEY_INCREMENTS: [u32; 2] = [0x9E37_79B9, 0xBB67_AE85];
/// The key TF scrambles a user's seed pair with (`GenerateKey` in `random_ops_util.h`), so that
/// neither half of the seed needs to be strong.
const SCRAMBLE_KEY: [u32; 2] = [0x3ec8_f720, 0x0246_1e29];

/// One Philox-4×32-10 block of `counter` under `key`.
fn philox_block(mut counter: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    for _ in 0..10 {
        let p0 = u64::from(MULTIPLIERS[0]) * u64::from(counter[0]);
        let p1 = u64::from(MULTIPLIERS[1]) * u64::from(counter[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        counter = [
            hi1 ^ counter[1] ^ key[0],
            lo1,
            hi0 ^ counter[3] ^ key[1],
            lo0,
        ];
        key = [
            key[0].wrapping_add(KEY_INCREMENTS[0]),
            key[1].wrapping_add(KEY_INCREMENTS[1]),
        ];
    }
    counter
}

/// The 128-bit counter plus one, carried across its 32-bit words.
fn increment(counter: &mut [u32; 4]) {
    for word in counter.iter_mut() {
        *word = word.wrapping_add(1);
        if *word != 0 {
            break;
        }
    }
}

/// A stream of TF's stateless 32-bit samples for one seed pair.
#[derive(Debug, Clone)]
pub struct StatelessSamples {
    key: [u32; 2],
    counter: [u32; 4],
    block: [u32; 4],
    used: usize,
}

impl StatelessSamples {
    /// The samples `tf.random.stateless_*` draws for `seed` (int32 seeds are sign-extended,
    /// as TF widens them).
    pub fn new(seed: [i64; 2]) -> Self {
        let [s0, s1] = seed.map(|s| s as u64);
        let words = [s0 as u32, (s0 >> 32) as u32, s1 as u32, (s1 >> 32) as u32];
        let mix = philox_block(words, SCRAMBLE_KEY);
        Self {
            key: [mix[0], mix[1]],
            counter: [0, 0, mix[2], mix[3]],
            block: [0; 4],
            used: 4,
        }
    }

    /// The next 32-bit sample.
    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            self.block = philox_block(self.counter, self.key);
            increment(&mut self.counter);
            self.used = 0;
        }
        self.used += 1;
        self.block[self.used - 1]
    }

    /// The next float of `tf.random.stateless_uniform` (float32, `[0, 1)`).
    pub fn next_f32(&mut self) -> f32 {
        f32::from_bits((self.next_u32() & 0x7f_ffff) | (127 << 23)) - 1.0
    }
}

/// `tf.random.stateless_uniform([n], seed)` in float32.
pub fn stateless_uniform(n: usize, seed: [i64; 2]) -> Vec<f32> {
    let mut samples = StatelessSamples::new(seed);
    (0..n).map(|_| samples.next_f32()).collect()
}

/// `tf.random.stateless_uniform([], seed, minval, maxval, dtype=tf.int32)`: `minval` plus the
/// first sample modulo the range (`maxval > minval`).
pub fn stateless_uniform_int(seed: [i64; 2], minval: i32, maxval: i32) -> i32 {
    let range = maxval.wrapping_sub(minval) as u32;
    let sample = StatelessSamples::new(seed).next_u32();
    minval.wrapping_add((sample % range.max(1)) as i32)
}

/// seqio's `stateless_shuffle`: the items ordered by `argsort` of one uniform float each
/// (TF's argsort is a top-k of the negated values, so ties keep the lower index first).
pub fn stateless_shuffle<T: Copy>(items: &[T], seed: [i64; 2]) -> Vec<T> {
    let keys = stateless_uniform(items.len(), seed);
    let mut order: Vec<usize> = (0..items.len()).collect();
    // Stable: equal keys keep index order.
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    order.into_iter().map(|i| items[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_tensorflow_for_wide_and_negative_seeds() {
        // tf.random.stateless_uniform([3], seed=tf.constant(s, tf.int64)) with TF 2.21.
        assert_eq!(
            stateless_uniform(3, [0, 0]),
            vec![0.21101546, 0.70601, 0.8000634]
        );
        assert_eq!(
            stateless_uniform(3, [-5, 123_456_789]),
            vec![0.71341515, 0.16300023, 0.68995523]
        );
        assert_eq!(
            stateless_uniform(3, [(1 << 40) + 3, -1]),
            vec![0.40991938, 0.73364866, 0.2379843]
        );
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let items: Vec<u32> = (0..100).collect();
        let mut shuffled = stateless_shuffle(&items, [7, 9]);
        assert_ne!(shuffled, items);
        shuffled.sort_unstable();
        assert_eq!(shuffled, items);
    }
}
