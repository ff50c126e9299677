//! A small seeded generator (SplitMix64) owned by this crate, so that shuffles, mixture
//! draws and preprocessor randomness never change when a dependency's RNG changes — a saved
//! iterator state must replay the same stream years later.

/// SplitMix64: 64 bits of state, good statistical quality for data shuffling, trivially
/// serialisable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator whose seed is derived from several values (seed, epoch, index…), so that
    /// each (stream, position) has its own independent draws.
    pub fn derive(parts: &[u64]) -> Self {
        let mut h = 0x6a09_e667_f3bc_c908_u64;
        for &p in parts {
            h = mix(h ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        Self::new(h)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        // 53 random mantissa bits.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[low, high)`; `low` when the range is empty.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant for data sampling.
        let span = high - low;
        low + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// FNV-1a, 64 bits: a stable hash of bytes (a task name, a tokenizer's JSON) for per-task
/// seeds and fingerprints. Written here once because saved states, caches and drawn data
/// depend on its exact values; `DefaultHasher` may change between Rust releases.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SplitMix64::new(7), |r, _: u64| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SplitMix64::new(7), |r, _: u64| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            SplitMix64::derive(&[1, 2]).next_u64(),
            SplitMix64::derive(&[2, 1]).next_u64()
        );
        let mut r = SplitMix64::new(3);
        for _ in 0..1000 {
            let x = r.range(5, 9);
            assert!((5..9).contains(&x));
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        let mut items: Vec<u32> = (0..100).collect();
        r.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
