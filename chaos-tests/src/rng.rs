//! The seeded choices of a scenario: victims, timing, fault kinds. SplitMix64 (Steele,
//! Lea, Flood 2014): tiny, fast and the same on every machine, so `--seed N` replays the
//! same choices (the processes' own timing still varies; what we choose does not).

/// A deterministic pseudo-random stream.
#[derive(Debug, Clone)]
pub struct Rng {
    /// SplitMix64's state.
    state: u64,
}

impl Rng {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x5EED_C4A0_5000_0000,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low + 1)
    }

    /// An index below `len` (0 when `len` is 0).
    pub fn index(&mut self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        (self.next_u64() % len as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(1, 100) <= percent
    }

    /// A duration in `low_ms..=high_ms`.
    pub fn millis(&mut self, low_ms: u64, high_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(self.range(low_ms, high_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_choices() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let first: Vec<u64> = (0..8).map(|_| a.range(0, 1000)).collect();
        let second: Vec<u64> = (0..8).map(|_| b.range(0, 1000)).collect();
        assert_eq!(first, second);
        let mut c = Rng::new(43);
        let third: Vec<u64> = (0..8).map(|_| c.range(0, 1000)).collect();
        assert_ne!(first, third);
    }

    #[test]
    fn ranges_are_inclusive_and_bounded() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let n = rng.range(3, 5);
            assert!((3..=5).contains(&n));
        }
        assert_eq!(rng.range(7, 7), 7);
        assert_eq!(rng.index(0), 0);
    }
}
