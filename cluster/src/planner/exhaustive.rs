//! The planner's referee in the tests: every tie setting and every choice of served gun,
//! scored as the planner scores them. Exponential; for rings of up to ten segments.

use std::collections::{BTreeMap, BTreeSet};

use ringhub_proto::config::{GunId, SegmentId};

use super::fairness::water_fill;
use super::ring::{Ring, TieRule, changes};
use super::{PlannedIsland, PlannerInput};
use crate::record::Watts;

/// The best (fairness vector, contactor moves) over every valid plan of `input`.
pub(super) fn optimum(input: &PlannerInput) -> (Vec<Watts>, u32) {
    let ring = Ring::new(input);
    let n = ring.n;
    let free: Vec<usize> = (0..n).filter(|&p| ring.rule[p] == TieRule::Free).collect();
    let any_open = (0..n).any(|p| ring.rule[p] == TieRule::Open);
    let mut best: Option<(Vec<u64>, u32)> = None;
    for mask in 0u32..(1 << free.len()) {
        let mut closed: BTreeSet<usize> = (0..n)
            .filter(|&p| ring.rule[p] == TieRule::Closed)
            .collect();
        closed.extend(
            free.iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, &p)| p),
        );
        // No closed loop, unless welded so.
        if !any_open && !free.is_empty() && closed.len() == n {
            continue;
        }
        for candidate in served_choices(&ring, &closed) {
            let key = score(&ring, input, &closed, &candidate);
            let better = match &best {
                None => true,
                Some((grants, moves)) => key.0 > *grants || (key.0 == *grants && key.1 < *moves),
            };
            if better {
                best = Some(key);
            }
        }
    }
    let (grants, moves) = best.unwrap_or_default();
    (grants.into_iter().map(Watts).collect(), moves)
}

/// Islands of plannable positions under `closed`, each with every choice of served gun
/// (none included): the cartesian product, as (island, gun) lists.
fn served_choices(ring: &Ring, closed: &BTreeSet<usize>) -> Vec<Vec<(Vec<usize>, Option<GunId>)>> {
    let islands = ring.runs(closed, &ring.plannable);
    let mut out: Vec<Vec<(Vec<usize>, Option<GunId>)>> = vec![Vec::new()];
    for island in islands {
        let mut guns: Vec<Option<GunId>> = vec![None];
        guns.extend(
            island
                .iter()
                .filter_map(|&p| ring.active[p])
                .map(|(g, _)| Some(g)),
        );
        out = out
            .into_iter()
            .flat_map(|prefix| {
                let island = &island;
                guns.iter().map(move |&gun| {
                    let mut next = prefix.clone();
                    next.push((island.clone(), gun));
                    next
                })
            })
            .collect();
    }
    out
}

/// The fairness vector and contactor moves of one plan.
fn score(
    ring: &Ring,
    input: &PlannerInput,
    closed: &BTreeSet<usize>,
    plan: &[(Vec<usize>, Option<GunId>)],
) -> (Vec<u64>, u32) {
    let mut caps: BTreeMap<GunId, u64> =
        ring.active.iter().flatten().map(|(g, _)| (*g, 0)).collect();
    let mut islands = Vec::new();
    for (positions, gun) in plan {
        let power: u64 = positions.iter().map(|&p| ring.power[p]).sum();
        let want = positions
            .iter()
            .filter_map(|&p| ring.active[p])
            .find(|(g, _)| Some(*g) == *gun)
            .map_or(0, |(_, want)| want);
        let served = gun.filter(|_| want.min(power) > 0);
        if let Some(g) = served {
            caps.insert(g, want.min(power));
        }
        let segments = &input.segments;
        islands.push(PlannedIsland {
            segments: positions.iter().map(|&p| segments[p].id).collect(),
            gun: served,
            modules: match served {
                Some(_) => ring.connected_modules(positions),
                None => Vec::new(),
            },
            granted: Watts(0),
        });
    }
    let caps: Vec<u64> = caps.into_values().collect();
    let (_, mut grants) = water_fill(&caps, ring.site_limit);
    // Guns asking on segments no island may hold get nothing.
    let unplannable = input
        .segments
        .iter()
        .zip(&ring.plannable)
        .filter(|(s, plannable)| !**plannable && s.gun.is_some_and(|g| g.want().0 > 0))
        .count();
    grants.extend(std::iter::repeat_n(0, unplannable));
    grants.sort_unstable();
    let closed_ids: BTreeSet<SegmentId> = closed.iter().map(|&p| input.segments[p].id).collect();
    (grants, changes(input, &closed_ids, &islands))
}
