//! Max-min fairness: water-filling grants under the site limit, and the order that says
//! which of two grant vectors is fairer.
//!
//! The planner compares plans by the vector of the active guns' grants sorted ascending,
//! lexicographically (the *leximin* order): the plan whose worst-off gun gets more wins,
//! then the second worst-off, and so on. Two facts make the search exact and cheap:
//!
//! - the order is kept by adding the same grants to both sides, so a dynamic programme
//!   over the ring may keep, for each partial plan, only its best prefix;
//! - water-filling is monotone in it: if the caps the ring allows are leximin-better,
//!   so are the grants after the site limit cuts them. The best plan under the site
//!   limit is therefore the best plan without it, water-filled.

use std::cmp::Ordering;

/// Grants for `caps` that share `limit`: each gun gets `min(cap, level)`, with the level
/// as high as the limit allows (max-min fairness with demand caps). Returns the level
/// (`None` when the limit does not bind) and the grants, in the order of `caps`.
pub fn water_fill(caps: &[u64], limit: u64) -> (Option<u64>, Vec<u64>) {
    let total: u64 = caps.iter().sum();
    if total <= limit {
        return (None, caps.to_vec());
    }
    let mut sorted = caps.to_vec();
    sorted.sort_unstable();
    // Raise the level past each cap in turn while the limit allows.
    let mut below = 0; // sum of the caps under the level
    let mut level = 0;
    for (index, &cap) in sorted.iter().enumerate() {
        let above = (sorted.len() - index) as u64;
        // Every gun from `index` on gets the level; can it reach `cap`?
        if below + cap * above <= limit {
            below += cap;
            level = cap;
        } else {
            level = (limit - below) / above;
            break;
        }
    }
    let grants = caps.iter().map(|&cap| cap.min(level)).collect();
    (Some(level), grants)
}

/// Compares two grant multisets of the same size, each sorted ascending, in the leximin
/// order: `Greater` when `a` is fairer.
pub(super) fn leximin(
    a: impl IntoIterator<Item = u64>,
    b: impl IntoIterator<Item = u64>,
) -> Ordering {
    // Sorted ascending, the first difference decides: the larger value there is better.
    a.into_iter().cmp(b)
}

/// The merge of two ascending sequences, ascending.
pub(super) fn merged<'a>(a: &'a [u64], b: &'a [u64]) -> impl Iterator<Item = u64> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x <= y => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_that_does_not_bind_grants_every_cap() {
        assert_eq!(water_fill(&[10, 20, 30], 60), (None, vec![10, 20, 30]));
        assert_eq!(water_fill(&[], 0), (None, vec![]));
    }

    #[test]
    fn the_level_rises_until_the_limit_binds() {
        // 10 fits; 20 and 30 share the remaining 30 equally.
        assert_eq!(water_fill(&[30, 10, 20], 40), (Some(15), vec![15, 10, 15]));
        // Nothing fits but the level: three guns share 10 W, 1 W left unassigned.
        assert_eq!(water_fill(&[50, 50, 50], 10), (Some(3), vec![3, 3, 3]));
        // A limit of zero grants nothing.
        assert_eq!(water_fill(&[5, 7], 0), (Some(0), vec![0, 0]));
    }

    #[test]
    fn grants_never_exceed_the_limit_nor_a_cap() {
        for limit in 0..120 {
            let caps = [7, 0, 33, 33, 12, 60];
            let (_, grants) = water_fill(&caps, limit);
            assert!(grants.iter().sum::<u64>() <= limit);
            assert!(grants.iter().zip(&caps).all(|(g, c)| g <= c));
        }
    }

    #[test]
    fn the_worst_off_decides_first() {
        assert_eq!(leximin([0, 100], [5, 6]), Ordering::Less);
        assert_eq!(leximin([5, 7], [5, 6]), Ordering::Greater);
        assert_eq!(leximin([5, 6], [5, 6]), Ordering::Equal);
    }

    #[test]
    fn merging_keeps_the_order() {
        let out: Vec<u64> = merged(&[1, 4, 9], &[0, 4, 10]).collect();
        assert_eq!(out, vec![0, 1, 4, 4, 9, 10]);
    }
}
