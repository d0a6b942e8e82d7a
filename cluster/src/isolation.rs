//! The island manager's isolation and rejoin rules (issue 8, "Island manager"): a latched
//! fault that makes a segment unsafe to share takes it out of service, and it returns
//! once every such latch on it has cleared and its cabinet is consistent again. Pure:
//! [`poll`] reads the record and the cabinets seen alive and returns the next command.
//!
//! - **Isolating faults**: a welded contactor on the segment (its bus may be live behind
//!   an open command, S9), an isolation fault of its gun, a PLC that went silent (the node
//!   no longer knows what its relays do). Module faults only derate: the planner gives a
//!   module nothing while its node reports it faulted (the demand book) or a latch on it
//!   is active ([`module_of`]).
//! - **Out**: the segment's reason names the code and the latch
//!   (`CONTACTOR_WELDED (latch 7)`); what its gun was granted stays in reserve (S8): the
//!   node may not have stopped drawing yet.
//! - **Back**: every isolating latch on it cleared (by its rule or an operator), its
//!   cabinet alive, at the epoch in force, and its tie reading open.
//! - A segment out for another reason (its cabinet lost, an operator) is left alone.

use std::collections::BTreeSet;

use ringhub_proto::config::{CabinetId, GunId, ModuleId, SegmentId};

use crate::record::{Command, HubRecord, Latch, OutOfService, TieObservation, Topology};

/// The latch codes that take a segment out of service.
pub const ISOLATING: [&str; 3] = ["CONTACTOR_WELDED", "ISOLATION_FAULT", "PLC_SILENT"];

/// The segment a latch's subject names: `segment N …`, or `gun G` on its segment.
pub fn segment_of(subject: &str, topology: &Topology) -> Option<SegmentId> {
    let mut words = subject.split_whitespace();
    let (kind, number) = (words.next()?, words.next()?.parse::<u16>().ok()?);
    match kind {
        "segment" => topology.segment(SegmentId(number)).map(|s| s.id),
        "gun" => topology.segment_of_gun(GunId(number)),
        _ => None,
    }
}

/// The module a latch's subject names: `module N`.
pub fn module_of(subject: &str) -> Option<ModuleId> {
    match subject.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["module", number] => number.parse().ok().map(ModuleId),
        _ => None,
    }
}

/// The reason a segment is held out for `latch`.
pub fn reason(latch: &Latch) -> String {
    format!("{} ({})", latch.spec.code, latch.id)
}

/// Whether `reason` is one this module gave.
fn is_isolation_reason(reason: &str) -> bool {
    ISOLATING
        .iter()
        .any(|code| reason.starts_with(code) && reason.contains("(latch "))
}

/// The next command (see the module docs), or `None`.
pub fn poll(record: &HubRecord, alive: &BTreeSet<CabinetId>) -> Option<Command> {
    let topology = record.topology();
    let state = record.snapshot();
    let isolating: Vec<(SegmentId, &Latch)> = record
        .active_latches()
        .filter(|l| ISOLATING.contains(&l.spec.code.as_str()))
        .filter_map(|l| segment_of(&l.spec.subject, topology).map(|s| (s, l)))
        .collect();
    for (segment, latch) in &isolating {
        let out = state
            .segments
            .get(segment)
            .and_then(|s| s.out_of_service.as_ref());
        if out.is_none() {
            return Some(Command::SetOutOfService {
                segment: *segment,
                out: Some(OutOfService {
                    reason: reason(latch),
                    reserved: crate::steward::budget_of(record, *segment),
                    reports_before: 0,
                }),
            });
        }
    }
    for spec in &topology.segments {
        let Some(seg_state) = state.segments.get(&spec.id) else {
            continue;
        };
        let Some(out) = &seg_state.out_of_service else {
            continue;
        };
        let still = isolating.iter().any(|(s, _)| *s == spec.id);
        let consistent = alive.contains(&spec.cabinet)
            && state.reached.get(&spec.cabinet) == Some(&record.epoch())
            && (!spec.tie_fitted || seg_state.tie == Some(TieObservation::Open));
        if is_isolation_reason(&out.reason) && !still && consistent {
            return Some(Command::SetOutOfService {
                segment: spec.id,
                out: None,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use ringhub_proto::config::HubConfig;

    use super::*;
    use crate::record::{
        ClearRule, Clearer, ClientId, LatchSpec, Outcome, Request, Severity, Watts,
    };

    fn cab(name: &str) -> CabinetId {
        CabinetId::new(name).expect("cabinet id")
    }

    struct Hub {
        record: HubRecord,
        serial: u64,
    }

    impl Hub {
        fn apply(&mut self, command: Command) -> Outcome {
            self.serial += 1;
            self.record.apply(&Request {
                client: ClientId("test".into()),
                serial: self.serial,
                command,
            })
        }

        fn raise(&mut self, code: &str, subject: &str) {
            self.apply(Command::RaiseLatch(LatchSpec {
                evidence: Vec::new(),
                code: code.into(),
                subject: subject.into(),
                severity: Severity::Critical,
                detail: "test".into(),
                raised_by: cab("cab-b"),
                raised_unix_ms: 1,
                clear_rule: ClearRule::Operator,
            }));
        }

        fn out(&self, segment: u16) -> Option<String> {
            self.record
                .snapshot()
                .segments
                .get(&SegmentId(segment))
                .and_then(|s| s.out_of_service.as_ref())
                .map(|o| o.reason.clone())
        }

        /// Applies what `poll` asks until it is content.
        fn settle(&mut self, alive: &BTreeSet<CabinetId>) -> usize {
            let mut done = 0;
            while let Some(command) = poll(&self.record, alive) {
                assert!(matches!(self.apply(command), Outcome::Applied(_)));
                done += 1;
                assert!(done < 10, "does not settle");
            }
            done
        }
    }

    fn all() -> BTreeSet<CabinetId> {
        ["cab-a", "cab-b", "cab-c"].into_iter().map(cab).collect()
    }

    #[test]
    fn subjects_name_their_segment() {
        let ring = Topology::from_config(&HubConfig::demo());
        assert_eq!(segment_of("segment 3 mn", &ring), Some(SegmentId(3)));
        assert_eq!(segment_of("segment 5", &ring), Some(SegmentId(5)));
        assert_eq!(segment_of("gun 2", &ring), Some(SegmentId(2)));
        assert_eq!(segment_of("module 4", &ring), None);
        assert_eq!(segment_of("segment 99 gc", &ring), None);
        assert_eq!(segment_of("segment", &ring), None);
    }

    #[test]
    fn an_isolating_latch_takes_its_segment_out_until_cleared_and_consistent() {
        let mut hub = Hub {
            record: HubRecord::new(Topology::from_config(&HubConfig::demo())),
            serial: 0,
        };
        hub.raise("MODULE_OVERTEMP", "module 4");
        assert_eq!(hub.settle(&all()), 0, "a module fault only derates");
        hub.raise("ISOLATION_FAULT", "gun 2");
        assert_eq!(hub.settle(&all()), 1);
        let reason = hub.out(2).expect("segment 2 out");
        assert!(reason.starts_with("ISOLATION_FAULT (latch "), "{reason}");
        // Cleared by an operator: back only once cab-b is at the epoch with its tie open.
        let id = hub
            .record
            .active_latches()
            .find(|l| l.spec.code == "ISOLATION_FAULT")
            .map(|l| l.id)
            .expect("latch");
        hub.apply(Command::ClearLatch {
            id,
            by: Clearer::Operator {
                name: "op".into(),
                reason: "insulation repaired".into(),
            },
            at_unix_ms: 2,
        });
        assert_eq!(hub.settle(&all()), 0, "no report yet");
        hub.apply(Command::ObserveTie {
            segment: SegmentId(2),
            observed: TieObservation::Open,
        });
        let epoch = hub.record.epoch();
        hub.apply(Command::ReportEpoch {
            node: cab("cab-b"),
            epoch,
        });
        let mut without_b = all();
        without_b.remove(&cab("cab-b"));
        assert_eq!(hub.settle(&without_b), 0, "its cabinet is not seen");
        assert_eq!(hub.settle(&all()), 1);
        assert_eq!(hub.out(2), None);
    }

    #[test]
    fn a_segment_out_for_another_reason_is_left_alone() {
        let mut hub = Hub {
            record: HubRecord::new(Topology::from_config(&HubConfig::demo())),
            serial: 0,
        };
        hub.apply(Command::SetOutOfService {
            segment: SegmentId(0),
            out: Some(OutOfService {
                reason: "cab-a lost".into(),
                reserved: Watts(0),
                reports_before: 0,
            }),
        });
        hub.raise("CONTACTOR_WELDED", "segment 0 gc");
        assert_eq!(hub.settle(&all()), 0);
        assert_eq!(hub.out(0).as_deref(), Some("cab-a lost"));
    }
}
