//! Break-before-make between two plans (DESIGN.md §4): the steward never commits a plan
//! that both takes something away and gives something new. It first commits the
//! *lowered* plan, which only takes away; once every node has reached it, the plan that
//! gives.
//!
//! The lowered plan of `current` towards `desired` keeps `current`'s islands, cut where
//! `desired` opens a tie; an island keeps its gun only where the gun's segment is, and
//! the gun keeps only the modules that `desired` also gives it; every budget is the
//! smaller of the two. So it closes no tie, connects no module and raises no budget that
//! `current` did not: a node may apply it at once, beside any node still on `current`
//! (S1, S2, S8), and it ramps down and opens everything `desired` no longer has.

use std::collections::BTreeSet;

use ringhub_proto::config::SegmentId;

use crate::record::{Island, Plan, SegmentStates, Topology, Watts};

/// The lowered plan of `current` towards `desired` (see the module docs): `current`
/// itself, islands and all, when `desired` takes nothing away.
pub fn lowered(
    topology: &Topology,
    states: &SegmentStates,
    current: &Plan,
    desired: &Plan,
) -> Plan {
    let kept_ties = desired.closed_ties();
    let desired_owners = desired.owners();
    let desired_budget = |gun| {
        desired
            .islands
            .iter()
            .find(|i| i.gun == Some(gun))
            .map_or(Watts(0), |i| i.budget)
    };
    let in_service = |s: &SegmentId| {
        states
            .get(s)
            .is_none_or(|state| state.out_of_service.is_none())
    };
    let mut islands = Vec::new();
    for island in &current.islands {
        for run in cut(&island.segments, &kept_ties) {
            let members: BTreeSet<SegmentId> = run.iter().copied().collect();
            let gun = island
                .gun
                .filter(|&g| {
                    topology
                        .segment_of_gun(g)
                        .is_some_and(|s| members.contains(&s))
                })
                .filter(|_| run.iter().all(in_service));
            let Some(gun) = gun else {
                islands.push(Island {
                    segments: run,
                    gun: None,
                    modules: Vec::new(),
                    budget: Watts(0),
                });
                continue;
            };
            let modules = island
                .modules
                .iter()
                .copied()
                .filter(|m| {
                    topology
                        .segment_of_module(*m)
                        .is_some_and(|s| members.contains(&s))
                })
                .filter(|m| desired_owners.get(m) == Some(&gun))
                .collect();
            islands.push(Island {
                segments: run,
                gun: Some(gun),
                modules,
                budget: island.budget.min(desired_budget(gun)),
            });
        }
    }
    if islands == current.islands {
        return current.clone();
    }
    Plan {
        islands,
        reason: format!("{} (ramping down and opening first)", desired.reason),
        ..desired.clone()
    }
}

/// `segments` (an arc in ring order) cut after every segment whose tie is not in `kept`.
fn cut(segments: &[SegmentId], kept: &BTreeSet<SegmentId>) -> Vec<Vec<SegmentId>> {
    let mut runs = vec![Vec::new()];
    for (k, &segment) in segments.iter().enumerate() {
        runs.last_mut().expect("never empty").push(segment);
        let last = k + 1 == segments.len();
        if !last && !kept.contains(&segment) {
            runs.push(Vec::new());
        }
    }
    runs
}

/// Whether `next` only takes away from `current`: every tie it closes and every module
/// it gives a gun, `current` closes and gives already.
pub fn gives_nothing(current: &Plan, next: &Plan) -> bool {
    let owners = current.owners();
    next.closed_ties().is_subset(&current.closed_ties())
        && next
            .owners()
            .iter()
            .all(|(module, gun)| owners.get(module) == Some(gun))
}

#[cfg(test)]
mod tests {
    use ringhub_proto::config::{GunId, HubConfig, ModuleId};

    use super::*;
    use crate::record::Epoch;

    fn demo_ring() -> Topology {
        let config = HubConfig::parse(ringhub_proto::config::DEMO_TOML, "demo.toml").unwrap();
        Topology::from_config(&config)
    }

    fn island(segments: &[u16], gun: Option<u16>, modules: &[u16], budget: u64) -> Island {
        Island {
            segments: segments.iter().map(|&s| SegmentId(s)).collect(),
            gun: gun.map(GunId),
            modules: modules.iter().map(|&m| ModuleId(m)).collect(),
            budget: Watts(budget),
        }
    }

    fn plan(epoch: u64, islands: Vec<Island>) -> Plan {
        Plan {
            epoch: Epoch(epoch),
            islands,
            reason: "test".into(),
            proposed_unix_ms: 0,
        }
    }

    #[test]
    fn a_neighbour_arriving_cuts_the_island_before_its_gun_gets_the_modules() {
        let ring = demo_ring();
        let states = SegmentStates::default();
        // Gun 1 (segment 1) holds segments 1-2 and their four modules.
        let shared = plan(
            1,
            vec![
                island(&[0], None, &[], 0),
                island(&[1, 2], Some(1), &[2, 3, 4, 5], 200_000),
                island(&[3], None, &[], 0),
                island(&[4], None, &[], 0),
                island(&[5], None, &[], 0),
            ],
        );
        // Gun 2's EV arrives: each gun on its own segment.
        let apart = plan(
            2,
            vec![
                island(&[0], None, &[], 0),
                island(&[1], Some(1), &[2, 3], 100_000),
                island(&[2], Some(2), &[4, 5], 100_000),
                island(&[3], None, &[], 0),
                island(&[4], None, &[], 0),
                island(&[5], None, &[], 0),
            ],
        );
        let step = lowered(&ring, &states, &shared, &apart);
        assert_eq!(
            step.islands,
            vec![
                island(&[0], None, &[], 0),
                island(&[1], Some(1), &[2, 3], 100_000),
                island(&[2], None, &[], 0),
                island(&[3], None, &[], 0),
                island(&[4], None, &[], 0),
                island(&[5], None, &[], 0),
            ],
            "tie 1 opens and modules 4 and 5 go idle before gun 2 takes them"
        );
        assert!(gives_nothing(&shared, &step));
        assert!(!gives_nothing(&step, &apart), "then the make");
        assert_eq!(
            lowered(&ring, &states, &step, &apart),
            step,
            "nothing more to take"
        );
        assert_eq!(step.check(&ring, &states, Epoch(1)), Ok(()));
    }

    #[test]
    fn a_growing_island_takes_nothing_away() {
        let ring = demo_ring();
        let states = SegmentStates::default();
        let alone = plan(
            1,
            (0..6)
                .map(|s| match s {
                    1 => island(&[1], Some(1), &[2, 3], 100_000),
                    _ => island(&[s], None, &[], 0),
                })
                .collect(),
        );
        let grown = plan(
            2,
            vec![
                island(&[0], None, &[], 0),
                island(&[1, 2, 3], Some(1), &[2, 3, 4, 5, 6, 7], 300_000),
                island(&[4], None, &[], 0),
                island(&[5], None, &[], 0),
            ],
        );
        assert_eq!(lowered(&ring, &states, &alone, &grown), alone);
        assert!(!gives_nothing(&alone, &grown));
    }
}
