//! The injected random source used by RFC 2782 weighted selection.

/// A source of uniformly distributed 64-bit values.
///
/// fedgate-srv never seeds or reads entropy itself: the caller passes a source in,
/// so tests and benches are deterministic and the node can seed from the OS.
pub trait RandomSource {
    /// The next uniformly distributed value.
    fn next_u64(&mut self) -> u64;
}

impl<R: RandomSource + ?Sized> RandomSource for &mut R {
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, seedable generator.
///
/// Not cryptographic. Good enough for load spreading; the seed decides the whole sequence.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A value uniform in `0..=max` (Lemire's multiply-shift; the bias is below 2^-32 for
/// any `max` an SRV set can produce).
pub(crate) fn uniform_inclusive<R: RandomSource + ?Sized>(rng: &mut R, max: u64) -> u64 {
    let span = u128::from(max) + 1;
    ((u128::from(rng.next_u64()) * span) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let v = uniform_inclusive(&mut a, 3);
            assert!(v <= 3);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(uniform_inclusive(&mut a, 0), 0);
    }
}
