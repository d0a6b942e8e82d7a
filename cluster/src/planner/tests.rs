//! The planner against hand-made rings (each behaviour the issue names) and, on random
//! rings of up to ten segments, against the exhaustive search and the record's checks.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringhub_proto::config::{CabinetId, GunId, ModuleId, SegmentId};

use super::*;
use crate::record::{
    OutOfService, SegmentSpec, SegmentState, SegmentStates, TieObservation, Topology,
};

fn kw(kw: u64) -> Watts {
    Watts(kw * 1000)
}

/// A segment with a gun (id = segment id) rated 350 kW asking `demand` kW, and modules
/// (ids 10·segment + i) of the given kW.
fn seg(id: u16, demand: u64, modules: &[u64]) -> SegmentInput {
    SegmentInput {
        id: SegmentId(id),
        in_service: true,
        tie_to_next: TieState::Ok,
        gun: Some(GunDemand {
            id: GunId(id),
            max: kw(350),
            demand: kw(demand),
        }),
        modules: modules
            .iter()
            .enumerate()
            .map(|(i, &k)| ModulePower {
                id: ModuleId(id * 10 + i as u16),
                available: kw(k),
            })
            .collect(),
    }
}

fn ring(site_limit: u64, segments: Vec<SegmentInput>) -> PlannerInput {
    PlannerInput {
        site_limit: kw(site_limit),
        segments,
        current: Current::default(),
    }
}

fn grant(planned: &Planned, gun: u16) -> u64 {
    planned.grants.get(&GunId(gun)).map_or(0, |w| w.0 / 1000)
}

fn island_of(planned: &Planned, segment: u16) -> &PlannedIsland {
    planned
        .islands
        .iter()
        .find(|i| i.segments.contains(&SegmentId(segment)))
        .expect("the segment is in an island")
}

#[test]
fn a_gun_alone_draws_modules_from_idle_neighbours() {
    // Six segments of 2 × 50 kW; gun 0 asks 300 kW: it needs three segments.
    let input = ring(
        600,
        (0..6)
            .map(|s| seg(s, if s == 0 { 300 } else { 0 }, &[50, 50]))
            .collect(),
    );
    let planned = plan(&input);
    assert_eq!(grant(&planned, 0), 300);
    let island = island_of(&planned, 0);
    assert_eq!(island.gun, Some(GunId(0)));
    assert_eq!(island.segments.len(), 3, "{planned:?}");
    assert_eq!(island.modules.len(), 6);
}

#[test]
fn a_neighbour_arriving_gets_its_modules_back_and_both_charge() {
    let mut input = ring(
        600,
        (0..6)
            .map(|s| seg(s, if s == 0 { 300 } else { 0 }, &[50, 50]))
            .collect(),
    );
    let before = plan(&input);
    input.current = Current::of_planned(&before);
    // Gun 1's EV arrives, asking 300 kW too: the six segments are split fairly.
    input.segments[1].gun = Some(GunDemand {
        id: GunId(1),
        max: kw(350),
        demand: kw(300),
    });
    let after = plan(&input);
    assert_eq!(grant(&after, 0), 300);
    assert_eq!(grant(&after, 1), 300);
    assert_ne!(island_of(&after, 0).gun, island_of(&after, 1).gun);
}

#[test]
fn the_site_limit_is_shared_by_water_filling() {
    // Gun 0 asks 40 kW, guns 2 and 4 ask 300 kW each; the site allows 240 kW.
    let demands = [40, 0, 300, 0, 300, 0];
    let input = ring(
        240,
        (0..6)
            .map(|s| seg(s, demands[s as usize], &[50, 50]))
            .collect(),
    );
    let planned = plan(&input);
    assert_eq!(grant(&planned, 0), 40);
    assert_eq!(grant(&planned, 2), 100);
    assert_eq!(grant(&planned, 4), 100);
    let total: u64 = planned.grants.values().map(|w| w.0).sum();
    assert!(total <= kw(240).0);
}

#[test]
fn a_derated_module_shrinks_the_grant() {
    let mut input = ring(600, vec![seg(0, 100, &[50, 50]), seg(1, 100, &[50, 50])]);
    input.segments[0].tie_to_next = TieState::Absent;
    input.segments[1].tie_to_next = TieState::Absent;
    assert_eq!(grant(&plan(&input), 0), 100);
    input.segments[0].modules[1].available = kw(20);
    let planned = plan(&input);
    assert_eq!(grant(&planned, 0), 70);
    assert_eq!(grant(&planned, 1), 100);
}

#[test]
fn absent_and_stuck_ties_never_close_and_welded_ones_always_do() {
    let demands = [200, 0, 0, 200];
    let mut input = ring(
        600,
        (0..4).map(|s| seg(s, demands[s as usize], &[50])).collect(),
    );
    input.segments[0].tie_to_next = TieState::Absent;
    input.segments[1].tie_to_next = TieState::WeldedClosed;
    input.segments[2].tie_to_next = TieState::StuckOpen;
    let planned = plan(&input);
    assert!(!planned.closed_ties.contains(&SegmentId(0)));
    assert!(planned.closed_ties.contains(&SegmentId(1)));
    assert!(!planned.closed_ties.contains(&SegmentId(2)));
    // Segments 1 and 2 are welded together and reach no active gun: idle.
    let welded = island_of(&planned, 1);
    assert_eq!(welded.segments, vec![SegmentId(1), SegmentId(2)]);
    assert_eq!(welded.gun, None);
    // Gun 0 and gun 3 share the tie 3 → 0 only if one goes without: each keeps its own.
    assert_eq!(grant(&planned, 0), 50);
    assert_eq!(grant(&planned, 3), 50);
}

#[test]
fn out_of_service_segments_are_in_no_island_and_their_welded_neighbours_stay_idle() {
    let mut input = ring(600, (0..5).map(|s| seg(s, 100, &[50])).collect());
    input.segments[2].in_service = false;
    input.segments[2].tie_to_next = TieState::WeldedClosed; // welded to segment 3
    let planned = plan(&input);
    assert!(
        planned
            .islands
            .iter()
            .all(|i| !i.segments.contains(&SegmentId(2)))
    );
    assert_eq!(island_of(&planned, 3).gun, None);
    assert_eq!(grant(&planned, 2), 0);
    assert_eq!(grant(&planned, 3), 0);
    assert_eq!(grant(&planned, 0), 50);
}

#[test]
fn an_unchanged_ring_keeps_its_plan() {
    let demands = [120, 0, 0, 80, 0, 0];
    let mut input = ring(
        600,
        (0..6)
            .map(|s| seg(s, demands[s as usize], &[50, 50]))
            .collect(),
    );
    let first = plan(&input);
    input.current = Current::of_planned(&first);
    let again = plan(&input);
    assert_eq!(again.changes, 0, "{again:?}");
    assert_eq!(again.islands, first.islands);
}

#[test]
fn fewest_moves_among_equally_fair_plans() {
    // Gun 0 needs one more segment; either neighbour will do. The one it already holds
    // (segment 1) is kept.
    let mut input = ring(
        600,
        (0..4)
            .map(|s| seg(s, if s == 0 { 150 } else { 0 }, &[50]))
            .collect(),
    );
    input.current.closed_ties.insert(SegmentId(0));
    input.current.owners.insert(ModuleId(0), GunId(0));
    input.current.owners.insert(ModuleId(10), GunId(0));
    input.current.energised.insert(GunId(0));
    let planned = plan(&input);
    assert_eq!(grant(&planned, 0), 150);
    let island = island_of(&planned, 0);
    assert!(island.segments.contains(&SegmentId(1)), "{planned:?}");
    assert_eq!(
        planned.changes, 2,
        "one tie and one module more: {planned:?}"
    );
}

#[test]
fn a_gun_without_modules_shares_an_island_when_that_is_fairer() {
    // Gun 0 has no module and asks more than gun 1, whose segment has all the power.
    // Serving gun 0 from segment 1's modules ranks {0, 100} above {0, 10}.
    let mut input = ring(600, vec![seg(0, 100, &[]), seg(1, 10, &[100])]);
    input.segments[1].tie_to_next = TieState::Absent;
    let planned = plan(&input);
    assert_eq!(grant(&planned, 0), 100);
    assert_eq!(grant(&planned, 1), 0);
    assert_eq!(planned.fairness_vector(), exhaustive::optimum(&input).0);
}

#[test]
fn a_welded_loop_is_one_island() {
    let mut input = ring(
        600,
        vec![seg(0, 30, &[50]), seg(1, 80, &[50]), seg(2, 0, &[50])],
    );
    for s in &mut input.segments {
        s.tie_to_next = TieState::WeldedClosed;
    }
    let planned = plan(&input);
    assert_eq!(planned.islands.len(), 1);
    assert_eq!(planned.islands[0].gun, Some(GunId(1)));
    assert_eq!(grant(&planned, 1), 80);
    assert_eq!(grant(&planned, 0), 0);
}

#[test]
fn nothing_to_serve_leaves_every_gun_idle() {
    let planned = plan(&ring(600, (0..3).map(|s| seg(s, 0, &[50])).collect()));
    assert!(planned.islands.iter().all(|i| i.gun.is_none()));
    assert!(planned.grants.is_empty());
    let planned = plan(&ring(0, (0..3).map(|s| seg(s, 100, &[50])).collect()));
    assert!(planned.islands.iter().all(|i| i.gun.is_none()));
    assert!(planned.grants.values().all(|w| w.0 == 0));
}

/// The record's view of `input`: its ring and segment states.
fn record_view(input: &PlannerInput) -> (Topology, SegmentStates) {
    let topology = Topology {
        segments: input
            .segments
            .iter()
            .map(|s| SegmentSpec {
                id: s.id,
                cabinet: CabinetId::new("cab-a").expect("a valid id"),
                tie_fitted: s.tie_to_next != TieState::Absent,
                gun: s.gun.map(|g| g.id),
                modules: s.modules.iter().map(|m| m.id).collect(),
            })
            .collect(),
        site_limit: input.site_limit,
    };
    let states = input
        .segments
        .iter()
        .map(|s| {
            let state = SegmentState {
                out_of_service: (!s.in_service).then(|| OutOfService {
                    reason: "test".into(),
                    reserved: Watts(0),
                    reports_before: 0,
                }),
                tie: match s.tie_to_next {
                    TieState::StuckOpen => Some(TieObservation::StuckOpen),
                    TieState::WeldedClosed => Some(TieObservation::WeldedClosed),
                    TieState::Ok | TieState::Absent => None,
                },
            };
            (s.id, state)
        })
        .collect();
    (topology, states)
}

fn arb_segment(id: u16) -> impl Strategy<Value = SegmentInput> {
    let tie = prop_oneof![
        6 => Just(TieState::Ok),
        1 => Just(TieState::Absent),
        1 => Just(TieState::StuckOpen),
        1 => Just(TieState::WeldedClosed),
    ];
    let gun = prop::option::weighted(
        0.85,
        (
            prop::sample::select(vec![50u64, 150, 350]),
            prop_oneof![2 => Just(0u64), 5 => 1u64..400],
        ),
    );
    let modules = prop::collection::vec(prop::sample::select(vec![0u64, 20, 30, 50]), 0..3);
    (prop::bool::weighted(0.9), tie, gun, modules).prop_map(
        move |(in_service, tie, gun, modules)| SegmentInput {
            id: SegmentId(id),
            in_service,
            tie_to_next: tie,
            gun: gun.map(|(max, demand)| GunDemand {
                id: GunId(id),
                max: kw(max),
                demand: kw(demand),
            }),
            modules: modules
                .into_iter()
                .enumerate()
                .map(|(i, k)| ModulePower {
                    id: ModuleId(id * 10 + i as u16),
                    available: kw(k),
                })
                .collect(),
        },
    )
}

fn arb_input(max_segments: u16) -> impl Strategy<Value = PlannerInput> {
    (1..=max_segments)
        .prop_flat_map(|n| {
            let segments: Vec<_> = (0..n).map(arb_segment).collect();
            (
                segments,
                20u64..1200,
                prop::collection::btree_set(0..n, 0..=n as usize),
                prop::collection::vec((0..n, 0..3u16, 0..n), 0..8),
                prop::collection::btree_set(0..n, 0..3),
            )
        })
        .prop_map(|(segments, limit, ties, owners, energised)| PlannerInput {
            site_limit: kw(limit),
            current: Current {
                closed_ties: ties.into_iter().map(SegmentId).collect(),
                owners: owners
                    .into_iter()
                    .map(|(seg, i, gun)| (ModuleId(seg * 10 + i), GunId(gun)))
                    .collect(),
                energised: energised.into_iter().map(GunId).collect(),
            },
            segments,
        })
}

/// Every constraint of the issue on one answer.
fn check_constraints(input: &PlannerInput, planned: &Planned) -> Result<(), TestCaseError> {
    let (topology, states) = record_view(input);
    let plan = planned.to_plan(input, Epoch(1), "test".into(), 0);
    prop_assert_eq!(
        plan.check(&topology, &states, Epoch(0)),
        Ok(()),
        "{:?}",
        planned
    );
    let by_id: BTreeMap<SegmentId, &SegmentInput> =
        input.segments.iter().map(|s| (s.id, s)).collect();
    for island in &planned.islands {
        for id in &island.segments {
            prop_assert!(by_id[id].in_service, "segment {} is out of service", id);
        }
        // S2: one gun, and its grant no more than its modules give, its demand asks.
        if let Some(gun) = island.gun {
            let power: u64 = island
                .segments
                .iter()
                .flat_map(|id| &by_id[id].modules)
                .map(|m| m.available.0)
                .sum();
            let demand = input
                .segments
                .iter()
                .filter_map(|s| s.gun)
                .find(|g| g.id == gun)
                .map(|g| g.want().0)
                .unwrap_or(0);
            prop_assert!(island.granted.0 <= power.min(demand));
        }
    }
    // A ring of one segment has no tie to speak of.
    for segment in input.segments.iter().filter(|_| input.segments.len() > 1) {
        let closed = planned.closed_ties.contains(&segment.id);
        match segment.tie_to_next {
            TieState::Absent | TieState::StuckOpen => prop_assert!(!closed),
            TieState::WeldedClosed => prop_assert!(closed),
            TieState::Ok => {}
        }
    }
    // S8.
    let total: u64 = planned.grants.values().map(|w| w.0).sum();
    prop_assert!(total <= input.site_limit.0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_plan_is_valid_and_as_good_as_the_exhaustive_optimum(input in arb_input(8)) {
        let planned = plan(&input);
        check_constraints(&input, &planned)?;
        let (fairness, moves) = exhaustive::optimum(&input);
        prop_assert_eq!(planned.fairness_vector(), fairness, "{:?}", planned);
        prop_assert_eq!(planned.changes, moves, "{:?}", planned);
    }

    #[test]
    fn the_plan_is_deterministic_and_stable(input in arb_input(10)) {
        let planned = plan(&input);
        prop_assert_eq!(&plan(&input), &planned);
        // Planned again from its own result, nothing moves.
        let mut again = input.clone();
        again.current = Current::of_planned(&planned);
        let replanned = plan(&again);
        prop_assert_eq!(replanned.fairness_vector(), planned.fairness_vector());
        prop_assert_eq!(replanned.changes, 0, "{:?} then {:?}", planned, replanned);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn ten_segment_rings_match_the_exhaustive_optimum(input in arb_input(10)) {
        let planned = plan(&input);
        check_constraints(&input, &planned)?;
        let (fairness, moves) = exhaustive::optimum(&input);
        prop_assert_eq!(planned.fairness_vector(), fairness);
        prop_assert_eq!(planned.changes, moves);
    }
}
