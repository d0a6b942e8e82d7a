//! The leader's clear rules (issue 9, S6): a latch that clears by its rule is cleared by
//! the leader, once the node that raised it has reported its condition gone for the
//! rule's hold. Pure: [`Clearing::poll`] takes the time, the record and the
//! [`ConditionBook`] and returns the next clear to commit, which names the leader and
//! says what it judged.
//!
//! - **Hold**: the condition must have been gone for the hold time of the catalog, and
//!   for at least that long since this leader first saw the latch (a new leader, or a
//!   latch just raised, has not watched it yet).
//! - **Unknown is not gone**: a node not heard from (lost, partitioned, restarting)
//!   clears nothing; its latches wait.
//! - **Not here**: operator-only latches (S9 welds, S4 emergency opens, isolation faults,
//!   and any latch its rule cleared too often, see [`crate::record::RETRY_CAP`]), and
//!   `CABINET_LOST`, which the steward raises and clears itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringhub_proto::config::CabinetId;

use crate::conditions::{Condition, ConditionBook};
use crate::record::{ClearRule, Clearer, Command, HubRecord, Latch, LatchId};
use crate::steward::LOST_CODE;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Clearing {
    /// When this leader first saw each active latch.
    first_seen: BTreeMap<LatchId, Instant>,
}

impl Clearing {
    /// A leader's, starting now.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next clear to commit, as `me` judges it at `now`, or `None`.
    pub fn poll(
        &mut self,
        now: Instant,
        record: &HubRecord,
        book: &ConditionBook,
        me: &CabinetId,
        now_unix_ms: u64,
    ) -> Option<Command> {
        self.first_seen
            .retain(|id, _| record.latches().get(id).is_some_and(Latch::is_active));
        for latch in record.active_latches() {
            let first_seen = *self.first_seen.entry(latch.id).or_insert(now);
            let Some(hold) = hold(latch) else { continue };
            let spec = &latch.spec;
            let node = &spec.raised_by;
            let Condition::Gone { since } = book.condition(node, &spec.code, &spec.subject, now)
            else {
                continue;
            };
            let gone_for = now.saturating_duration_since(since.max(first_seen));
            if gone_for >= hold {
                return Some(Command::ClearLatch {
                    id: latch.id,
                    by: Clearer::Rule {
                        node: me.clone(),
                        reason: format!(
                            "{node} has not seen {} on {} for {:.1} s (hold {:.1} s)",
                            spec.code,
                            spec.subject,
                            gone_for.as_secs_f64(),
                            hold.as_secs_f64()
                        ),
                    },
                    at_unix_ms: now_unix_ms,
                });
            }
        }
        None
    }
}

/// How long `latch`'s condition must stay gone before the leader clears it; `None` when
/// the leader never clears it by rule.
fn hold(latch: &Latch) -> Option<Duration> {
    if latch.spec.code == LOST_CODE {
        return None;
    }
    match latch.spec.clear_rule {
        ClearRule::Operator => None,
        ClearRule::ConditionGone { hold_ms } => Some(Duration::from_millis(hold_ms.into())),
        ClearRule::Unplug => Some(Duration::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use ringhub_proto::config::HubConfig;
    use ringhub_proto::v1;

    use super::*;
    use crate::record::{ClientId, LatchSpec, Outcome, Request, Severity, Topology};

    fn cab(name: &str) -> CabinetId {
        CabinetId::new(name).expect("cabinet id")
    }

    fn report(holding: &[(&str, &str)]) -> v1::FaultConditions {
        v1::FaultConditions {
            header: Some(v1::Header {
                node_id: "cab-b".into(),
                boot_id: 1,
                ..Default::default()
            }),
            conditions: holding
                .iter()
                .map(|(code, subject)| v1::FaultCondition {
                    code: (*code).into(),
                    subject: (*subject).into(),
                    holds: true,
                    why: "no frame for 600 ms".into(),
                })
                .collect(),
        }
    }

    fn raise(record: &mut HubRecord, serial: u64, code: &str, rule: ClearRule) -> LatchId {
        let spec = LatchSpec {
            code: code.into(),
            subject: "segment 2".into(),
            severity: Severity::Error,
            detail: "seen".into(),
            evidence: Vec::new(),
            raised_by: cab("cab-b"),
            raised_unix_ms: 1,
            clear_rule: rule,
        };
        let request = Request {
            client: ClientId("cab-b".into()),
            serial,
            command: Command::RaiseLatch(spec),
        };
        match record.apply(&request) {
            Outcome::Applied(crate::record::Applied::Latched { id, .. }) => id,
            other => panic!("not latched: {other:?}"),
        }
    }

    #[test]
    fn the_leader_clears_a_latch_once_its_condition_stayed_gone_for_the_hold() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut record = HubRecord::new(Topology::from_config(&HubConfig::demo()));
        let three_s = ClearRule::ConditionGone { hold_ms: 3_000 };
        let id = raise(&mut record, 1, "PLC_SILENT", three_s);
        let weld = raise(&mut record, 2, "CONTACTOR_WELDED", ClearRule::Operator);
        let (mut book, mut clearing, me) = (ConditionBook::new(), Clearing::new(), cab("cab-a"));
        let mut poll = |book: &ConditionBook, ms| clearing.poll(at(ms), &record, book, &me, ms);
        // Unknown: its node has not reported.
        assert_eq!(poll(&book, 0), None);
        book.handle(&report(&[("PLC_SILENT", "segment 2")]), at(0))
            .expect("valid");
        assert_eq!(poll(&book, 100), None, "it holds");
        // Last seen holding at 0 ms; cleared only after the whole hold, on fresh reports.
        for ms in (200..3_000).step_by(200) {
            book.handle(&report(&[]), at(ms)).expect("valid");
            assert_eq!(poll(&book, ms), None, "{ms} ms: within the hold");
        }
        book.handle(&report(&[]), at(3_000)).expect("valid");
        let Some(Command::ClearLatch {
            id: cleared,
            by: Clearer::Rule { node, reason },
            at_unix_ms,
        }) = poll(&book, 3_000)
        else {
            panic!("a clear by rule");
        };
        assert_eq!((cleared, node, at_unix_ms), (id, cab("cab-a"), 3_000));
        assert!(
            reason.contains("cab-b has not seen PLC_SILENT on segment 2 for 3.0 s"),
            "{reason}"
        );
        // The weld needs an operator: never cleared here.
        assert_ne!(cleared, weld);
    }

    #[test]
    fn silence_clears_nothing_and_a_new_leader_watches_the_whole_hold() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut record = HubRecord::new(Topology::from_config(&HubConfig::demo()));
        raise(
            &mut record,
            1,
            "MODULE_OVERTEMP",
            ClearRule::ConditionGone { hold_ms: 1_000 },
        );
        let mut book = ConditionBook::new();
        book.handle(&report(&[]), at(0)).expect("valid");
        let me = cab("cab-a");
        // Heard once, then silent: unknown past FRESH, never cleared.
        let mut clearing = Clearing::new();
        assert_eq!(clearing.poll(at(500), &record, &book, &me, 0), None);
        assert_eq!(clearing.poll(at(5_000), &record, &book, &me, 0), None);
        // A leader that first sees the latch at 10 s waits its hold from then.
        book.handle(&report(&[]), at(10_000)).expect("valid");
        let mut new_leader = Clearing::new();
        assert_eq!(new_leader.poll(at(10_000), &record, &book, &me, 0), None);
        book.handle(&report(&[]), at(10_800)).expect("valid");
        assert_eq!(new_leader.poll(at(10_800), &record, &book, &me, 0), None);
        book.handle(&report(&[]), at(11_000)).expect("valid");
        assert!(
            new_leader
                .poll(at(11_000), &record, &book, &me, 0)
                .is_some()
        );
    }
}
