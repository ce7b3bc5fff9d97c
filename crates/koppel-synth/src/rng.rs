//! The random number generator behind all synthetic data: SplitMix64, tiny and fixed.
//! Same seed, same numbers, on every machine and with every version of every dependency.

// Why not `rand`: `SmallRng` is documented as not portable and has changed algorithm between
// rand releases, and the demo data and tests pin exact output. SplitMix64 (Steele, Lea and
// Flood, 2014) is ten lines, passes BigCrush, and its output is defined by integer arithmetic
// alone. Everything built on it below avoids transcendental floating-point functions (whose
// last bits differ between libms), so the float paths are exact IEEE operations too.

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent generator for one stream (a person, a phase), so adding a person or a
    /// phase does not shift the numbers every other one draws.
    pub(crate) fn stream(seed: u64, stream: u64, index: u64) -> Self {
        Self::new(mix(seed
            ^ mix(
                stream.wrapping_mul(GOLDEN) ^ mix(index.wrapping_add(GOLDEN))
            )))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in `0..n` (0 when n is 0). Lemire's multiply-shift: the bias is below n/2^64.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as i64
    }

    /// Skewed towards `lo`: the smaller of two uniform draws, as tenures and ages are.
    pub(crate) fn range_low(&mut self, lo: i64, hi: i64) -> i64 {
        self.range(lo, hi).min(self.range(lo, hi))
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Fisher–Yates.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// A discrete distribution over indices with integer weights, sampled by binary search.
#[derive(Debug, Clone, Default)]
pub(crate) struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    pub(crate) fn new(weights: impl IntoIterator<Item = u64>) -> Self {
        let mut total = 0u64;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Self { cumulative }
    }

    /// Zipf–Mandelbrot weights 1/(rank + offset) over `n` ranks, in integers: a few very
    /// common values and a long tail, the shape of real name frequencies. A larger offset
    /// flattens the head.
    pub(crate) fn zipf(n: usize, offset: u64) -> Self {
        Self::new((0..n as u64).map(|rank| 10_000_000 / (rank + 1 + offset)))
    }

    /// An index drawn with probability proportional to its weight; 0 when all are zero.
    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return 0;
        }
        let x = ((u128::from(rng.next_u64()) * u128::from(total)) >> 64) as u64;
        self.cumulative.partition_point(|&c| c <= x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 1234567, from the reference C implementation.
        let mut rng = Rng::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn weighted_respects_zero_weights_and_bounds() {
        let w = Weighted::new([0, 5, 0, 5]);
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let i = w.sample(&mut rng);
            assert!(i == 1 || i == 3, "{i}");
        }
    }

    #[test]
    fn range_is_inclusive() {
        let mut rng = Rng::new(3);
        let mut seen = [false; 3];
        for _ in 0..200 {
            seen[(rng.range(-1, 1) + 1) as usize] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
