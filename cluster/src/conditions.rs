//! What each node's controllers see of their faults now (issue 9, "Clear rules"). Pure:
//! [`ConditionBook`] takes each node's `node/<node>/conditions` publication with the time
//! it was heard, and says whether a fault's condition holds, has been gone since when, or
//! is not known. Every node keeps a book, like the demand book: the leader judges the
//! clear rules from it (`clearing`), and any node refuses an operator's clear while the
//! condition holds.
//!
//! - **Fresh or unknown**: a node is judged only on a report heard within [`FRESH`] (it
//!   publishes every 200 ms). A node not heard from, or heard once too long ago, is
//!   unknown: silence never counts as a condition gone.
//! - **Gone since**: since the last report that listed it holding, and never before the
//!   node's reports began to come without a gap in this process (a restarted node has
//!   not detected its conditions yet, so its absence counts only from its start).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringhub_proto::config::CabinetId;
use ringhub_proto::v1;

/// How long a node's report stays current.
pub const FRESH: Duration = Duration::from_secs(1);

/// A fault's condition, as its node last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// It holds, for this reason.
    Holds(String),
    /// Not reported holding since this moment.
    Gone {
        /// When it was last seen holding, or the node's reports began.
        since: Instant,
    },
    /// Its node has not reported within [`FRESH`].
    Unknown,
}

/// A publication the book cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionsError {
    /// No header, or one without a valid node name.
    #[error("no valid node name in the header: {0:?}")]
    NoNode(String),
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ConditionBook {
    nodes: BTreeMap<CabinetId, NodeConditions>,
}

/// One node's reports.
#[derive(Debug, Clone)]
struct NodeConditions {
    /// Its process, from the headers.
    boot_id: u64,
    /// Since when its reports have come without a gap longer than [`FRESH`].
    since: Instant,
    /// When its last report was heard.
    heard: Instant,
    /// What its last report listed holding: (code, subject) → why.
    holding: BTreeMap<(String, String), String>,
    /// When each condition was last reported holding.
    last_held: BTreeMap<(String, String), Instant>,
}

impl ConditionBook {
    /// An empty book: every condition unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one node's report, heard at `now`.
    pub fn handle(
        &mut self,
        report: &v1::FaultConditions,
        now: Instant,
    ) -> Result<(), ConditionsError> {
        let header = report.header.clone().unwrap_or_default();
        let node = CabinetId::new(&header.node_id)
            .map_err(|_| ConditionsError::NoNode(header.node_id.clone()))?;
        let holding: BTreeMap<(String, String), String> = report
            .conditions
            .iter()
            .filter(|c| c.holds)
            .map(|c| ((c.code.clone(), c.subject.clone()), c.why.clone()))
            .collect();
        let entry = self.nodes.entry(node).or_insert_with(|| NodeConditions {
            boot_id: header.boot_id,
            since: now,
            heard: now,
            holding: BTreeMap::new(),
            last_held: BTreeMap::new(),
        });
        if entry.boot_id != header.boot_id || now.duration_since(entry.heard) > FRESH {
            entry.boot_id = header.boot_id;
            entry.since = now;
        }
        entry.heard = now;
        for key in holding.keys() {
            entry.last_held.insert(key.clone(), now);
        }
        entry.holding = holding;
        Ok(())
    }

    /// The condition of `code` on `subject` as `node` reports it, at `now`.
    pub fn condition(
        &self,
        node: &CabinetId,
        code: &str,
        subject: &str,
        now: Instant,
    ) -> Condition {
        let Some(entry) = self.nodes.get(node) else {
            return Condition::Unknown;
        };
        if now.saturating_duration_since(entry.heard) > FRESH {
            return Condition::Unknown;
        }
        let key = (code.to_owned(), subject.to_owned());
        if let Some(why) = entry.holding.get(&key) {
            return Condition::Holds(why.clone());
        }
        let since = entry
            .last_held
            .get(&key)
            .map_or(entry.since, |&held| held.max(entry.since));
        Condition::Gone { since }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, boot_id: u64, holding: &[(&str, &str)]) -> v1::FaultConditions {
        v1::FaultConditions {
            header: Some(v1::Header {
                node_id: node.into(),
                boot_id,
                ..Default::default()
            }),
            conditions: holding
                .iter()
                .map(|(code, subject)| v1::FaultCondition {
                    code: (*code).into(),
                    subject: (*subject).into(),
                    holds: true,
                    why: "seen".into(),
                })
                .chain([v1::FaultCondition {
                    code: "CONTACTOR_WELDED".into(),
                    subject: "segment 0 gc".into(),
                    holds: false,
                    why: String::new(),
                }])
                .collect(),
        }
    }

    fn cab(name: &str) -> CabinetId {
        CabinetId::new(name).expect("cabinet id")
    }

    #[test]
    fn a_condition_is_gone_since_it_was_last_reported_holding() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut book = ConditionBook::new();
        let (node, silent) = (cab("cab-b"), ("PLC_SILENT", "segment 2"));
        assert_eq!(
            book.condition(&node, silent.0, silent.1, t0),
            Condition::Unknown
        );
        book.handle(&report("cab-b", 7, &[silent]), ms(0))
            .expect("valid");
        assert_eq!(
            book.condition(&node, silent.0, silent.1, ms(100)),
            Condition::Holds("seen".into())
        );
        book.handle(&report("cab-b", 7, &[silent]), ms(200))
            .expect("valid");
        book.handle(&report("cab-b", 7, &[]), ms(400))
            .expect("valid");
        assert_eq!(
            book.condition(&node, silent.0, silent.1, ms(500)),
            Condition::Gone { since: ms(200) }
        );
        // Listed, but not holding: gone since the node's reports began.
        assert_eq!(
            book.condition(&node, "CONTACTOR_WELDED", "segment 0 gc", ms(500)),
            Condition::Gone { since: ms(0) }
        );
        // Silence is not absence.
        assert_eq!(
            book.condition(&node, silent.0, silent.1, ms(1_500)),
            Condition::Unknown
        );
    }

    #[test]
    fn a_gap_or_a_restart_starts_the_absence_again() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut book = ConditionBook::new();
        let node = cab("cab-a");
        book.handle(&report("cab-a", 1, &[]), ms(0)).expect("valid");
        book.handle(&report("cab-a", 1, &[]), ms(3_000))
            .expect("valid");
        assert_eq!(
            book.condition(&node, "MODULE_OVERTEMP", "module 1", ms(3_100)),
            Condition::Gone { since: ms(3_000) }
        );
        book.handle(&report("cab-a", 2, &[]), ms(3_200))
            .expect("valid");
        assert_eq!(
            book.condition(&node, "MODULE_OVERTEMP", "module 1", ms(3_300)),
            Condition::Gone { since: ms(3_200) }
        );
    }

    #[test]
    fn a_report_without_a_node_is_refused() {
        let mut book = ConditionBook::new();
        let error = book
            .handle(&report("", 1, &[]), Instant::now())
            .expect_err("no node");
        assert_eq!(error, ConditionsError::NoNode(String::new()));
    }
}
