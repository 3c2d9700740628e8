//! RFC 2782 ordering: by priority, then weighted random selection within a priority.

use crate::record::SrvRecord;
use crate::rng::{RandomSource, uniform_inclusive};

/// Anything with an SRV priority and weight can be ordered.
pub trait Weighted {
    /// Lower is tried first.
    fn priority(&self) -> u16;
    /// Relative share within one priority.
    fn weight(&self) -> u16;
}

impl Weighted for SrvRecord {
    fn priority(&self) -> u16 {
        self.priority
    }
    fn weight(&self) -> u16 {
        self.weight
    }
}

impl<T: Weighted + ?Sized> Weighted for &T {
    fn priority(&self) -> u16 {
        (**self).priority()
    }
    fn weight(&self) -> u16 {
        (**self).weight()
    }
}

impl<T: Weighted, U> Weighted for (T, U) {
    fn priority(&self) -> u16 {
        self.0.priority()
    }
    fn weight(&self) -> u16 {
        self.0.weight()
    }
}

/// Orders `items` in place, as RFC 2782 "Usage rules" says.
///
/// 1. Sort by priority, lowest first (stable).
/// 2. Within one priority, repeatedly pick the next record at random with a probability
///    proportional to its weight, until none is left.
///
/// Weight-0 records, as the RFC says, sit "at the beginning" of the running sum: a value
/// `n` is drawn uniformly from `[0, T]` (`T` = sum of the remaining weights) and `n = 0`
/// selects a weight-0 record (uniformly among them). So with other records present the
/// weight-0 records together have a `1/(T+1)` chance, and when all are weight 0 they are
/// taken in uniformly random order.
///
/// One deliberate deviation: when *no* weight-0 record remains, `n` is drawn from
/// `[1, T]` instead of `[0, T]`. The literal text gives the first-listed record one extra
/// share (weights {1,1} → 2/3 : 1/3, the known RFC 2782 errata flaw); drawing from
/// `[1, T]` gives each record exactly `weight / T`, which is what "proportionately
/// higher probability" asks for.
///
/// Root (`"."`) targets are not handled here: see [`crate::SrvAnswer::classify`].
/// Allocation-free for up to 20 records.
pub fn rfc2782_order<T: Weighted, R: RandomSource + ?Sized>(items: &mut [T], rng: &mut R) {
    items.sort_by_key(|r| r.priority());
    let mut start = 0;
    while start < items.len() {
        let p = items[start].priority();
        let len = items[start..]
            .iter()
            .position(|r| r.priority() != p)
            .unwrap_or(items.len() - start);
        order_bucket(&mut items[start..start + len], rng);
        start += len;
    }
}

fn order_bucket<T: Weighted, R: RandomSource + ?Sized>(bucket: &mut [T], rng: &mut R) {
    for k in 0..bucket.len().saturating_sub(1) {
        let rest = &mut bucket[k..];
        let (mut zeros, mut total) = (0u64, 0u64);
        for r in rest.iter() {
            match r.weight() {
                0 => zeros += 1,
                w => total += u64::from(w),
            }
        }
        let n = if zeros > 0 {
            uniform_inclusive(rng, total)
        } else {
            1 + uniform_inclusive(rng, total - 1)
        };
        let pick = if n == 0 {
            let z = uniform_inclusive(rng, zeros - 1);
            nth_index(rest, z, |r| r.weight() == 0)
        } else {
            let mut run = 0u64;
            rest.iter().position(|r| {
                run += u64::from(r.weight());
                r.weight() != 0 && run >= n
            })
        };
        // Both searches always succeed (n ≤ T, z < zeros); fall back to the first
        // record rather than panic if that reasoning were ever wrong.
        let pick = pick.unwrap_or(0);
        rest[..=pick].rotate_right(1);
    }
}

fn nth_index<T>(items: &[T], n: u64, pred: impl Fn(&T) -> bool) -> Option<usize> {
    let mut seen = 0u64;
    items.iter().position(|r| {
        if pred(r) {
            if seen == n {
                return true;
            }
            seen += 1;
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use proptest::prelude::*;

    fn rec(p: u16, w: u16, t: &str) -> SrvRecord {
        SrvRecord::new(p, w, 5269, t)
    }

    /// Probability that each record of one priority bucket is picked first, as the
    /// algorithm above implies.
    fn implied_first_pick(weights: &[u16]) -> Vec<f64> {
        let zeros = weights.iter().filter(|w| **w == 0).count() as f64;
        let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
        weights
            .iter()
            .map(|w| match (*w, zeros > 0.0) {
                (0, _) => 1.0 / (total + 1.0) / zeros,
                (w, true) => f64::from(w) / (total + 1.0),
                (w, false) => f64::from(w) / total,
            })
            .collect()
    }

    fn first_pick_shares(set: &[SrvRecord], seed: u64, rounds: usize) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        let mut counts = vec![0usize; set.len()];
        let mut work = set.to_vec();
        for _ in 0..rounds {
            work.clone_from_slice(set);
            rfc2782_order(&mut work, &mut rng);
            let i = set
                .iter()
                .position(|r| *r == work[0])
                .expect("same records");
            counts[i] += 1;
        }
        counts.iter().map(|c| *c as f64 / rounds as f64).collect()
    }

    #[test]
    fn rfc2782_statistical_first_pick_shares_within_one_point() {
        let sets: [&[u16]; 5] = [
            &[60, 40, 0],
            &[1, 1],
            &[10, 20, 30, 40],
            &[0, 0, 0],
            &[5, 0, 0, 5],
        ];
        for (s, weights) in sets.iter().enumerate() {
            let set: Vec<SrvRecord> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| rec(10, *w, &format!("n{i}.test")))
                .collect();
            let got = first_pick_shares(&set, 0x5eed + s as u64, 100_000);
            let want = implied_first_pick(weights);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 0.01,
                    "weights {weights:?}: got {got:?}, want {want:?}"
                );
            }
        }
    }

    #[test]
    fn rfc2782_priority_is_strict() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..200 {
            let mut v = vec![
                rec(20, 100, "c"),
                rec(10, 1, "a"),
                rec(30, 0, "d"),
                rec(10, 1, "b"),
            ];
            rfc2782_order(&mut v, &mut rng);
            let prios: Vec<u16> = v.iter().map(|r| r.priority).collect();
            assert_eq!(prios, [10, 10, 20, 30]);
        }
    }

    #[test]
    fn rfc2782_weight_zero_rarely_first_when_others_weighted() {
        // {60, 40, 0}: the 0-weight record is first with p = 1/101.
        let set = [rec(1, 60, "a"), rec(1, 40, "b"), rec(1, 0, "z")];
        let shares = first_pick_shares(&set, 9, 20_000);
        assert!(shares[2] < 0.02 && shares[2] > 0.0, "{shares:?}");
    }

    #[test]
    fn same_seed_same_order() {
        let set: Vec<SrvRecord> = (0..10)
            .map(|i| rec(i % 3, 10 + i, &format!("h{i}")))
            .collect();
        let (mut a, mut b) = (set.clone(), set.clone());
        rfc2782_order(&mut a, &mut SplitMix64::new(42));
        rfc2782_order(&mut b, &mut SplitMix64::new(42));
        assert_eq!(a, b);
    }

    proptest! {
        #[test]
        fn order_is_a_priority_sorted_permutation(
            v in proptest::collection::vec((0u16..4, 0u16..5, 0u16..100), 0..30),
            seed in any::<u64>(),
        ) {
            let set: Vec<SrvRecord> =
                v.iter().enumerate().map(|(i, (p, w, port))| SrvRecord::new(*p, *w, *port, &format!("t{i}"))).collect();
            let mut out = set.clone();
            rfc2782_order(&mut out, &mut SplitMix64::new(seed));
            prop_assert!(out.windows(2).all(|w| w[0].priority <= w[1].priority));
            let mut a = set.clone();
            let mut b = out.clone();
            a.sort_by(|x, y| x.target.cmp(&y.target));
            b.sort_by(|x, y| x.target.cmp(&y.target));
            prop_assert_eq!(a, b);
        }
    }
}
