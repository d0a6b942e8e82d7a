//! The record on the demo ring: 6 segments, segment `i` with gun `i` and modules `2i` and
//! `2i + 1`, every tie fitted, a 600 kW site limit. Unit tests per rule, then property
//! tests over random request sequences.

use proptest::prelude::*;
use ringhub_proto::config::{GunId, HubConfig, ModuleId, SegmentId};

use super::*;

fn ring() -> Topology {
    Topology {
        site_limit: Watts(600_000),
        ..Topology::from_config(&HubConfig::demo())
    }
}

fn record() -> HubRecord {
    HubRecord::new(ring())
}

fn cab(name: &str) -> CabinetId {
    name.parse().unwrap()
}

/// Request `serial` of client `client`.
fn request(client: &str, serial: u64, command: Command) -> Request {
    Request {
        client: ClientId(client.into()),
        serial,
        command,
    }
}

/// An island of `segments` serving `gun` with `modules` and `kw`.
fn island(segments: &[u16], gun: Option<u16>, modules: &[u16], kw: u64) -> Island {
    Island {
        segments: segments.iter().map(|&s| SegmentId(s)).collect(),
        gun: gun.map(GunId),
        modules: modules.iter().map(|&m| ModuleId(m)).collect(),
        budget: Watts(kw * 1000),
    }
}

/// Plan `epoch`: `islands`, and every segment they leave out alone and idle.
fn plan(epoch: u64, mut islands: Vec<Island>) -> Plan {
    for s in 0..6 {
        if !islands.iter().any(|i| i.segments.contains(&SegmentId(s))) {
            islands.push(island(&[s], None, &[], 0));
        }
    }
    Plan {
        epoch: Epoch(epoch),
        islands,
        reason: "test".into(),
        proposed_unix_ms: 1_700_000_000_000,
    }
}

fn commit(record: &mut HubRecord, serial: u64, plan: Plan) -> Outcome {
    record.apply(&request("cab-a/1", serial, Command::CommitPlan(plan)))
}

fn refused(outcome: Outcome) -> Rejection {
    match outcome {
        Outcome::Rejected(rejection) => rejection,
        Outcome::Applied(applied) => panic!("applied: {applied:?}"),
    }
}

fn weld(subject: &str, at: u64) -> LatchSpec {
    LatchSpec {
        evidence: Vec::new(),
        code: "CONTACTOR_WELDED".into(),
        subject: subject.into(),
        severity: Severity::Critical,
        detail: "feedback closed 300 ms after open".into(),
        raised_by: cab("cab-a"),
        raised_unix_ms: at,
        clear_rule: ClearRule::Operator,
    }
}

#[test]
fn a_new_record_holds_the_initial_plan() {
    let record = record();
    assert_eq!(record.epoch(), Epoch(0));
    let plan = record.plan().expect("a plan");
    assert_eq!(plan.islands.len(), 6);
    assert!(
        plan.islands
            .iter()
            .all(|i| i.segments.len() == 1 && i.gun.is_none())
    );
    assert!(plan.closed_ties().is_empty());
    assert!(record.owners().is_empty());
}

#[test]
fn a_valid_plan_is_committed_with_its_owners_and_ties() {
    let mut record = record();
    let next = plan(1, vec![island(&[0, 1], Some(0), &[0, 1, 2, 3], 240)]);
    assert_eq!(
        commit(&mut record, 1, next.clone()),
        Outcome::Applied(Applied::Committed(Epoch(1)))
    );
    assert_eq!(record.plan(), Some(&next));
    assert_eq!(record.owners().len(), 4);
    assert!(record.owners().values().all(|&g| g == GunId(0)));
    assert_eq!(
        next.closed_ties().into_iter().collect::<Vec<_>>(),
        [SegmentId(0)]
    );
    // An island over the ring's closing tie: 5 → 0.
    let wrap = plan(2, vec![island(&[5, 0], Some(5), &[10, 11, 0], 100)]);
    assert!(matches!(commit(&mut record, 2, wrap), Outcome::Applied(_)));
}

#[test]
fn plans_follow_one_another() {
    let mut record = record();
    for epoch in [0, 2, 7] {
        let rejection = refused(commit(&mut record, epoch + 1, plan(epoch, vec![])));
        assert_eq!(
            rejection,
            Rejection::Plan(PlanError::WrongEpoch {
                current: Epoch(0),
                got: Epoch(epoch)
            })
        );
    }
    assert_eq!(record.epoch(), Epoch(0));
}

#[test]
fn s1_modules_stay_in_their_gun_island_and_in_one_only() {
    let cases = [
        (
            vec![island(&[0, 1], Some(0), &[0, 4], 100)],
            "sits on a segment outside the island",
        ),
        (
            vec![
                island(&[0], Some(0), &[0], 100),
                island(&[1], Some(1), &[0], 100),
            ],
            "sits on a segment outside the island",
        ),
        (
            vec![island(&[0, 1], Some(0), &[0, 0], 100)],
            "is held twice",
        ),
        (vec![island(&[0, 1], None, &[2], 0)], "is held by no gun"),
        (vec![island(&[0], Some(0), &[99], 100)], "does not exist"),
    ];
    for (islands, why) in cases {
        let mut record = record();
        match refused(commit(&mut record, 1, plan(1, islands.clone()))) {
            Rejection::Plan(PlanError::ModuleMisplaced { why: got, .. }) => {
                assert_eq!(got, why, "{islands:?}")
            }
            other => panic!("{other:?} for {islands:?}"),
        }
        assert_eq!(record.epoch(), Epoch(0), "nothing changed");
    }
}

#[test]
fn s2_an_island_energises_only_its_own_gun() {
    let mut record = record();
    let rejection = refused(commit(
        &mut record,
        1,
        plan(1, vec![island(&[0, 1], Some(2), &[0], 100)]),
    ));
    assert_eq!(
        rejection,
        Rejection::Plan(PlanError::GunOutside {
            island: 0,
            gun: GunId(2)
        })
    );
}

#[test]
fn s8_budgets_stay_within_the_site_limit() {
    let mut record = record();
    let over = plan(
        1,
        vec![
            island(&[0, 1], Some(0), &[0, 1, 2, 3], 400),
            island(&[2, 3], Some(3), &[4, 5, 6, 7], 201),
        ],
    );
    assert_eq!(
        refused(commit(&mut record, 1, over)),
        Rejection::Plan(PlanError::OverSiteLimit {
            granted: Watts(601_000),
            limit: Watts(600_000)
        })
    );
    let at = plan(
        1,
        vec![
            island(&[0, 1], Some(0), &[0, 1, 2, 3], 400),
            island(&[2, 3], Some(3), &[4, 5, 6, 7], 200),
        ],
    );
    assert!(matches!(commit(&mut record, 2, at), Outcome::Applied(_)));
    let idle = plan(2, vec![island(&[4], None, &[], 10)]);
    assert!(matches!(
        refused(commit(&mut record, 3, idle)),
        Rejection::Plan(PlanError::BudgetWithoutGun { .. })
    ));
}

#[test]
fn islands_are_arcs_over_usable_ties_covering_the_ring_once() {
    let cases: Vec<(Vec<Island>, &str)> = vec![
        (vec![island(&[0, 2], None, &[], 0)], "NotAnArc"),
        (vec![island(&[1, 0], None, &[], 0)], "NotAnArc"),
        (vec![island(&[], None, &[], 0)], "EmptyIsland"),
        (vec![island(&[9], None, &[], 0)], "UnknownSegment"),
        (
            vec![island(&[0, 1], None, &[], 0), island(&[1], None, &[], 0)],
            "SegmentTwice",
        ),
    ];
    for (islands, expected) in cases {
        let mut record = record();
        let rejection = refused(commit(&mut record, 1, plan(1, islands.clone())));
        assert!(
            format!("{rejection:?}").contains(expected),
            "{rejection:?} for {islands:?}"
        );
    }
    // A plan that leaves a segment out.
    let mut record = record();
    let mut partial = plan(1, vec![]);
    partial.islands.pop();
    assert_eq!(
        refused(commit(&mut record, 1, partial)),
        Rejection::Plan(PlanError::SegmentMissing {
            segment: SegmentId(5)
        })
    );
    // A tie that is not fitted, and one whose feedback showed it stuck open.
    let mut topology = ring();
    topology.segments[2].tie_fitted = false;
    let mut record = HubRecord::new(topology);
    let over_absent = plan(1, vec![island(&[2, 3], None, &[], 0)]);
    assert!(matches!(
        refused(commit(&mut record, 1, over_absent)),
        Rejection::Plan(PlanError::TieUnusable { why, .. }) if why == "not fitted"
    ));
    let observe = Command::ObserveTie {
        segment: SegmentId(3),
        observed: TieObservation::StuckOpen,
    };
    assert!(matches!(
        record.apply(&request("cab-b/1", 1, observe)),
        Outcome::Applied(_)
    ));
    let over_stuck = plan(1, vec![island(&[3, 4], None, &[], 0)]);
    assert!(matches!(
        refused(commit(&mut record, 2, over_stuck)),
        Rejection::Plan(PlanError::TieUnusable { why, .. }) if why == "stuck open"
    ));
    let absent = Command::ObserveTie {
        segment: SegmentId(2),
        observed: TieObservation::Open,
    };
    assert_eq!(
        refused(record.apply(&request("cab-b/1", 2, absent))),
        Rejection::NoTie(SegmentId(2))
    );
}

#[test]
fn a_segment_out_of_service_stays_alone_and_idle() {
    let mut record = record();
    let out = Command::SetOutOfService {
        segment: SegmentId(1),
        out: Some(OutOfService {
            reason: "CONTACTOR_WELDED".into(),
            reserved: Watts(0),
            reports_before: 0,
        }),
    };
    assert!(matches!(
        record.apply(&request("cab-a/1", 1, out)),
        Outcome::Applied(_)
    ));
    for islands in [
        vec![island(&[0, 1], Some(0), &[0], 50)],
        vec![island(&[1], Some(1), &[2], 50)],
    ] {
        assert!(matches!(
            refused(commit(&mut record, 99, plan(1, islands))),
            Rejection::Plan(PlanError::OutOfService { .. })
        ));
    }
    let around = plan(1, vec![island(&[2, 3], Some(2), &[4, 5, 6], 150)]);
    assert!(matches!(
        commit(&mut record, 100, around),
        Outcome::Applied(_)
    ));
    // Back in service, it may be shared again.
    let back = Command::SetOutOfService {
        segment: SegmentId(1),
        out: None,
    };
    assert!(matches!(
        record.apply(&request("cab-a/1", 101, back)),
        Outcome::Applied(_)
    ));
    let shared = plan(2, vec![island(&[0, 1], Some(0), &[0, 2], 50)]);
    assert!(matches!(
        commit(&mut record, 102, shared),
        Outcome::Applied(_)
    ));
    assert_eq!(
        refused(record.apply(&request(
            "cab-a/1",
            103,
            Command::SetOutOfService {
                segment: SegmentId(6),
                out: None
            }
        ))),
        Rejection::UnknownSegment(SegmentId(6))
    );
}

#[test]
fn the_ring_grows_through_the_log_and_never_shrinks_or_reorders() {
    let mut record = record();
    let mut grown = ring();
    let last = grown.segments.last().cloned().expect("segments");
    let mut added = last.clone();
    added.id = SegmentId(6);
    added.cabinet = cab("cab-d");
    added.gun = Some(GunId(6));
    added.modules = vec![ModuleId(12), ModuleId(13)];
    grown.segments.push(added);
    let set = |serial, ring: Topology| request("leader/1", serial, Command::SetTopology(ring));
    let mut shrunk = ring();
    shrunk.segments.pop();
    assert!(matches!(
        refused(record.apply(&set(1, shrunk))),
        Rejection::Topology(_)
    ));
    let mut reordered = grown.clone();
    reordered.segments.swap(0, 1);
    assert!(matches!(
        refused(record.apply(&set(2, reordered))),
        Rejection::Topology(_)
    ));
    assert_eq!(
        record.apply(&set(3, grown.clone())),
        Outcome::Applied(Applied::Topology(7))
    );
    assert_eq!(record.topology(), &grown);
    // Segment 6 exists now, and a plan must place it.
    assert!(matches!(
        record.apply(&request(
            "cab-d/1",
            1,
            Command::SetOutOfService {
                segment: SegmentId(6),
                out: None
            }
        )),
        Outcome::Applied(_)
    ));
    assert!(matches!(
        refused(commit(&mut record, 4, plan(1, vec![]))),
        Rejection::Plan(PlanError::SegmentMissing {
            segment: SegmentId(6)
        })
    ));
    // The snapshot carries the grown ring to a record started from the old config.
    let restored = HubRecord::restore(record.snapshot().clone());
    assert_eq!(restored.topology(), &grown);
}

#[test]
fn s8_counts_what_a_lost_cabinet_keeps() {
    let mut record = record();
    let limit = record.topology().site_limit.0;
    let lost = Command::SetOutOfService {
        segment: SegmentId(3),
        out: Some(OutOfService {
            reason: "cab-b lost".into(),
            reserved: Watts(limit / 2),
            reports_before: 0,
        }),
    };
    assert!(matches!(
        record.apply(&request("leader/1", 1, lost)),
        Outcome::Applied(_)
    ));
    let greedy = plan(1, vec![island(&[0], Some(0), &[0, 1], limit / 2000 + 1)]);
    assert!(matches!(
        refused(commit(&mut record, 2, greedy)),
        Rejection::Plan(PlanError::OverSiteLimit { .. })
    ));
    let fair = plan(1, vec![island(&[0], Some(0), &[0, 1], limit / 2000)]);
    assert!(matches!(commit(&mut record, 3, fair), Outcome::Applied(_)));
}

#[test]
fn s6_latches_are_counted_cleared_by_their_rule_and_never_lost() {
    let mut record = record();
    let raise = |serial, spec| request("cab-a/1", serial, Command::RaiseLatch(spec));
    assert_eq!(
        record.apply(&raise(1, weld("segment 0 gc", 10))),
        Outcome::Applied(Applied::Latched {
            id: LatchId(1),
            new: true
        })
    );
    // The same fault again while active: a repeat, not a second latch.
    assert_eq!(
        record.apply(&raise(2, weld("segment 0 gc", 20))),
        Outcome::Applied(Applied::Latched {
            id: LatchId(1),
            new: false
        })
    );
    let latch = &record.latches()[&LatchId(1)];
    assert_eq!((latch.repeat_count, latch.last_seen_unix_ms), (1, Some(20)));
    // The raising report itself, sent again by a restarted node under a new client id:
    // the same latch, not a repeat.
    let resent = request("cab-a/2", 1, Command::RaiseLatch(weld("segment 0 gc", 10)));
    assert_eq!(
        record.apply(&resent),
        Outcome::Applied(Applied::Latched {
            id: LatchId(1),
            new: false
        })
    );
    assert_eq!(record.latches()[&LatchId(1)].repeat_count, 1);
    assert!(matches!(
        record.apply(&raise(3, weld("segment 1 gc", 30))),
        Outcome::Applied(Applied::Latched {
            id: LatchId(2),
            new: true
        })
    ));

    let clear = |serial, id, by| {
        request(
            "cab-a/1",
            serial,
            Command::ClearLatch {
                id: LatchId(id),
                by,
                at_unix_ms: 40,
            },
        )
    };
    let rule = Clearer::Rule {
        node: cab("cab-a"),
        reason: "gone".into(),
    };
    let operator = |reason: &str| Clearer::Operator {
        name: "ops".into(),
        reason: reason.into(),
    };
    // A weld needs an operator (S9), with a reason.
    assert!(matches!(
        refused(record.apply(&clear(4, 1, rule.clone()))),
        Rejection::Clear(ClearError::NeedsOperator { .. })
    ));
    assert_eq!(
        refused(record.apply(&clear(5, 1, operator(" ")))),
        Rejection::Clear(ClearError::NoReason(LatchId(1)))
    );
    assert_eq!(
        record.apply(&clear(6, 1, operator("contactor replaced"))),
        Outcome::Applied(Applied::Cleared(LatchId(1)))
    );
    assert_eq!(
        refused(record.apply(&clear(7, 1, operator("again")))),
        Rejection::Clear(ClearError::NotActive(LatchId(1)))
    );
    assert_eq!(
        refused(record.apply(&clear(8, 9, operator("none")))),
        Rejection::Clear(ClearError::Unknown(LatchId(9)))
    );
    // Cleared stays in the history; the same fault again is a new latch.
    assert_eq!(record.latches().len(), 2);
    assert!(matches!(
        record.apply(&raise(9, weld("segment 0 gc", 50))),
        Outcome::Applied(Applied::Latched {
            id: LatchId(3),
            new: true
        })
    ));
    assert_eq!(
        record.active_latches().map(|l| l.id).collect::<Vec<_>>(),
        [LatchId(2), LatchId(3)]
    );
    // A latch with an automatic rule clears by it.
    let mut lock = weld("gun 2", 60);
    lock.code = "LOCK_FAILURE".into();
    lock.clear_rule = ClearRule::Unplug;
    assert!(matches!(
        record.apply(&raise(10, lock)),
        Outcome::Applied(_)
    ));
    assert_eq!(
        record.apply(&clear(11, 4, rule)),
        Outcome::Applied(Applied::Cleared(LatchId(4)))
    );
}

#[test]
fn a_fault_its_rule_cleared_too_often_within_the_hour_needs_an_operator() {
    let mut record = record();
    let silent = |at: u64| LatchSpec {
        code: "PLC_SILENT".into(),
        severity: Severity::Error,
        clear_rule: ClearRule::ConditionGone { hold_ms: 3_000 },
        ..weld("segment 1", at)
    };
    let rule = Clearer::Rule {
        node: cab("cab-b"),
        reason: "not seen for 3 s".into(),
    };
    let hour = RETRY_WINDOW_MS;
    let mut serial = 0;
    let mut cycle = |record: &mut HubRecord, at: u64| {
        serial += 2;
        let Outcome::Applied(Applied::Latched { id, new: true }) =
            record.apply(&request("cab-a/1", serial, Command::RaiseLatch(silent(at))))
        else {
            panic!("a new latch at {at}");
        };
        let cleared = record.apply(&request(
            "cab-a/1",
            serial + 1,
            Command::ClearLatch {
                id,
                by: rule.clone(),
                at_unix_ms: at + 5_000,
            },
        ));
        (id, cleared)
    };
    // Cleared by its rule RETRY_CAP times within the hour: each a retry.
    for n in 0..RETRY_CAP as u64 {
        let (_, cleared) = cycle(&mut record, 10 * hour + n * 60_000);
        assert!(matches!(cleared, Outcome::Applied(Applied::Cleared(_))));
    }
    // Once more within the hour: the rule may not clear it; it says why.
    let (id, cleared) = cycle(&mut record, 10 * hour + 30 * 60_000);
    assert!(matches!(
        refused(cleared),
        Rejection::Clear(ClearError::NeedsOperator { .. })
    ));
    let latch = &record.latches()[&id];
    assert_eq!(latch.spec.clear_rule, ClearRule::Operator);
    let evidence = latch.spec.evidence.last().expect("evidence");
    assert_eq!(
        (evidence.key.as_str(), evidence.value),
        (RULE_CLEARS_EVIDENCE, RETRY_CAP as i64)
    );
    assert!(latch.spec.detail.contains("an operator must clear it"));
    // An operator clears it; the next one, more than an hour after the first clears,
    // retries by its rule again.
    let operator = Clearer::Operator {
        name: "ops".into(),
        reason: "PLC board replaced".into(),
    };
    let command = Command::ClearLatch {
        id,
        by: operator,
        at_unix_ms: 11 * hour,
    };
    assert!(matches!(
        record.apply(&request("ops", 1, command)),
        Outcome::Applied(_)
    ));
    let (_, cleared) = cycle(&mut record, 11 * hour + 30 * 60_000);
    assert!(matches!(cleared, Outcome::Applied(Applied::Cleared(_))));
}

#[test]
fn a_retried_request_applies_once_and_an_older_one_is_stale() {
    let mut record = record();
    let first = request("cab-b/7", 1, Command::RaiseLatch(weld("segment 2 gc", 1)));
    let outcome = record.apply(&first);
    let after_first = record.clone();
    // The retry (an answer lost, a new leader): the same outcome, nothing counted twice.
    assert_eq!(record.apply(&first), outcome);
    assert_eq!(record, after_first);
    assert_eq!(record.latches()[&LatchId(1)].repeat_count, 0);
    let second = request("cab-b/7", 2, Command::RaiseLatch(weld("segment 3 gc", 2)));
    assert!(matches!(record.apply(&second), Outcome::Applied(_)));
    assert_eq!(
        refused(record.apply(&first)),
        Rejection::Stale {
            client: ClientId("cab-b/7".into()),
            serial: 1,
            last: 2
        }
    );
    // Another client (the same node after a restart) numbers from 1 again.
    let restarted = request("cab-b/8", 1, Command::RaiseLatch(weld("segment 4 gc", 3)));
    assert!(matches!(
        record.apply(&restarted),
        Outcome::Applied(Applied::Latched {
            id: LatchId(3),
            new: true
        })
    ));
}

#[test]
fn reached_epochs_never_run_ahead_or_back() {
    let mut record = record();
    let report = |serial, epoch| {
        request(
            "cab-c/1",
            serial,
            Command::ReportEpoch {
                node: cab("cab-c"),
                epoch: Epoch(epoch),
            },
        )
    };
    assert_eq!(
        refused(record.apply(&report(1, 1))),
        Rejection::EpochAhead {
            node: cab("cab-c"),
            epoch: Epoch(1),
            committed: Epoch(0)
        }
    );
    assert!(matches!(
        commit(&mut record, 1, plan(1, vec![])),
        Outcome::Applied(_)
    ));
    assert_eq!(
        record.apply(&report(2, 1)),
        Outcome::Applied(Applied::Reached(Epoch(1)))
    );
    assert_eq!(
        record.apply(&report(3, 0)),
        Outcome::Applied(Applied::Reached(Epoch(1)))
    );
}

#[test]
fn a_snapshot_round_trips_and_the_restored_record_goes_on_alike() {
    let mut record = record();
    record.apply(&request(
        "a/1",
        1,
        Command::RaiseLatch(weld("segment 0 gc", 1)),
    ));
    commit(
        &mut record,
        1,
        plan(1, vec![island(&[0, 1], Some(1), &[2, 3, 1], 120)]),
    );
    let text = serde_json::to_string(record.snapshot()).expect("encode");
    let state: RecordState = serde_json::from_str(&text).expect("decode");
    let mut restored = HubRecord::restore(state);
    assert_eq!(restored, record);
    let next = request("a/1", 2, Command::RaiseLatch(weld("segment 5 gc", 2)));
    assert_eq!(restored.apply(&next), record.apply(&next));
    assert_eq!(restored, record);
}

// ---- properties ----

/// A random plan on the demo ring: the ring cut into arcs at random ties, each maybe
/// serving one of its guns with some of its modules and a budget; the epoch is usually
/// the next one. Many are invalid (budgets over the limit, wrong epochs), on purpose.
fn arb_plan() -> impl Strategy<Value = (u64, Vec<Island>)> {
    (
        prop::collection::vec(any::<bool>(), 6),
        prop::collection::vec((any::<bool>(), any::<u8>(), any::<u16>(), 0u64..250), 6),
        prop_oneof![4 => Just(1u64), 1 => 0u64..4],
    )
        .prop_map(|(cuts, choices, epoch_step)| {
            // Start the arcs at a cut, so an island may wrap around 5 → 0.
            let start = cuts.iter().position(|&c| c).unwrap_or(0);
            let mut arcs: Vec<Vec<u16>> = Vec::new();
            for k in 0..6 {
                let s = ((start + k) % 6) as u16;
                if k == 0 || cuts[usize::from(s)] {
                    arcs.push(vec![s]);
                } else if let Some(last) = arcs.last_mut() {
                    last.push(s);
                }
            }
            let islands = arcs
                .into_iter()
                .zip(choices)
                .map(|(segments, (serves, pick, mask, kw))| {
                    if !serves {
                        return island(&segments, None, &[], 0);
                    }
                    let gun = segments[usize::from(pick) % segments.len()];
                    let modules: Vec<u16> = segments
                        .iter()
                        .flat_map(|&s| [2 * s, 2 * s + 1])
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, m)| m)
                        .collect();
                    island(&segments, Some(gun), &modules, kw)
                })
                .collect();
            (epoch_step, islands)
        })
}

#[derive(Debug, Clone)]
enum Step {
    Plan(u64, Vec<Island>),
    Raise(u8),
    Clear(u64, bool),
    Report(u8, u64),
    Service(u16, bool),
    Tie(u16, u8),
    Retry,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => arb_plan().prop_map(|(step, islands)| Step::Plan(step, islands)),
        2 => any::<u8>().prop_map(Step::Raise),
        2 => (1u64..8, any::<bool>()).prop_map(|(id, op)| Step::Clear(id, op)),
        1 => (0u8..3, 0u64..6).prop_map(|(n, e)| Step::Report(n, e)),
        1 => (0u16..7, any::<bool>()).prop_map(|(s, out)| Step::Service(s, out)),
        1 => (0u16..7, 0u8..4).prop_map(|(s, o)| Step::Tie(s, o)),
        1 => Just(Step::Retry),
    ]
}

/// The command of `step` against `record` (a plan's epoch counts from the one in force);
/// `None` for a retry.
fn command(step: &Step, record: &HubRecord) -> Option<Command> {
    Some(match step {
        Step::Retry => return None,
        Step::Plan(step, islands) => {
            let mut p = plan(0, islands.clone());
            p.epoch = Epoch(record.epoch().0 + step);
            Command::CommitPlan(p)
        }
        Step::Raise(n) => {
            let mut spec = weld(&format!("segment {} gc", n % 4), u64::from(*n));
            if n % 2 == 0 {
                spec.clear_rule = ClearRule::Unplug;
            }
            Command::RaiseLatch(spec)
        }
        Step::Clear(id, operator) => Command::ClearLatch {
            id: LatchId(*id),
            by: if *operator {
                Clearer::Operator {
                    name: "ops".into(),
                    reason: "checked".into(),
                }
            } else {
                Clearer::Rule {
                    node: cab("cab-a"),
                    reason: "gone".into(),
                }
            },
            at_unix_ms: 9,
        },
        Step::Report(n, epoch) => Command::ReportEpoch {
            node: cab(["cab-a", "cab-b", "cab-c"][usize::from(*n)]),
            epoch: Epoch(*epoch),
        },
        Step::Service(segment, out) => Command::SetOutOfService {
            segment: SegmentId(*segment),
            out: out.then(|| OutOfService {
                reason: "test".into(),
                reserved: Watts(0),
                reports_before: 0,
            }),
        },
        Step::Tie(segment, o) => Command::ObserveTie {
            segment: SegmentId(*segment),
            observed: [
                TieObservation::Open,
                TieObservation::Closed,
                TieObservation::WeldedClosed,
                TieObservation::StuckOpen,
            ][usize::from(*o)],
        },
    })
}

/// S1, S2 and S8 on the plan in force.
fn assert_plan_safe(record: &HubRecord) {
    let topology = record.topology();
    let plan = record.plan().expect("a plan");
    let mut held = std::collections::BTreeSet::new();
    let mut granted = 0;
    for island in &plan.islands {
        if let Some(gun) = island.gun {
            let on = topology.segment_of_gun(gun).expect("a known gun");
            assert!(island.segments.contains(&on), "S2: {island:?}");
        }
        for &module in &island.modules {
            assert!(
                island.gun.is_some(),
                "S1: a module without a gun: {island:?}"
            );
            let on = topology.segment_of_module(module).expect("a known module");
            assert!(island.segments.contains(&on), "S1: {island:?}");
            assert!(held.insert(module), "S1: module {module} twice");
        }
        granted += island.budget.0;
    }
    assert!(granted <= topology.site_limit.0, "S8: {granted}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every step keeps S1, S2 and S8 on the plan in force and never loses a latch; two
    /// records fed the same log agree; a record restored from a snapshot taken anywhere
    /// ends where the original ends; and each request applied twice in a row changes
    /// nothing more than once.
    #[test]
    fn the_record_is_safe_deterministic_and_idempotent(
        steps in prop::collection::vec(arb_step(), 1..40),
        cut in 0usize..40,
    ) {
        let mut a = record();
        let mut b = record();
        let mut doubled = record();
        let mut log: Vec<Request> = Vec::new();
        let mut snapshot = None;
        let mut applied = 0;
        for step in &steps {
            let entry = match command(step, &a) {
                Some(command) => request("p/1", log.len() as u64 + 1, command),
                None => match log.last() {
                    Some(last) => last.clone(),
                    None => continue,
                },
            };
            if applied == cut {
                snapshot = Some((a.snapshot().clone(), log.len()));
            }
            applied += 1;
            let latches_before: Vec<LatchId> = a.latches().keys().copied().collect();
            let outcome = a.apply(&entry);
            prop_assert_eq!(&outcome, &b.apply(&entry));
            prop_assert_eq!(&outcome, &doubled.apply(&entry));
            prop_assert_eq!(&outcome, &doubled.apply(&entry));
            assert_plan_safe(&a);
            for id in latches_before {
                prop_assert!(a.latches().contains_key(&id), "{} lost", id);
            }
            if log.last() != Some(&entry) {
                log.push(entry);
            }
        }
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &doubled);
        let (state, at) = snapshot.unwrap_or_else(|| (a.snapshot().clone(), log.len()));
        let mut restored = HubRecord::restore(state);
        for entry in &log[at..] {
            restored.apply(entry);
        }
        prop_assert_eq!(&restored, &a);
    }
}

#[test]
fn a_latch_stored_before_evidence_existed_still_reads() {
    let mut json = serde_json::to_value(weld("segment 1 gc", 1)).expect("to JSON");
    json.as_object_mut()
        .expect("an object")
        .remove("evidence")
        .expect("evidence is a field now");
    let spec: LatchSpec = serde_json::from_value(json).expect("an old latch reads");
    assert!(spec.evidence.is_empty());
}
