//! Latch changes on their way into the Raft log (issue 7, S6): each change a controller
//! made to its faults is stored here before it is sent, and deleted once the record has
//! it, so that a latch raised just before the node dies is sent by its next run.
//!
//! ```text
//!   table "pending_latches"  seq (u64, increasing) -> value
//!
//!   raise = JSON {"v":1,"kind":"raise","code":"CONTACTOR_WELDED","subject":"segment 1 gc",
//!                 "severity":"critical","detail":"…","raised_by":"cab-a",
//!                 "at_unix_ms":1700000000000,"clear_rule":"operator","hold_ms":0}
//!   clear = JSON {"v":1,"kind":"clear","code":"PLC_SILENT","subject":"segment 1",
//!                 "at_unix_ms":1700000000000}
//! ```
//!
//! `clear_rule` is `operator`, `condition_gone` (with `hold_ms`) or `unplug`; `severity`
//! is `warning`, `error` or `critical`.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use ringhub_cluster::record::{ClearRule, LatchSpec, Severity};
use ringhub_proto::config::CabinetId;

use super::{Store, StoreError};
use crate::latches::{ChangeSeq, LatchChange};

/// The version of the value encoding (`"v"` in the JSON).
const LATCH_VERSION: u32 = 1;

/// `pending_latches`: change number → encoded [`LatchChange`].
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_latches");

impl Store {
    /// Stores a change under `seq`, durably.
    ///
    /// Blocking: commits with fsync.
    pub fn put_latch_change(&self, seq: ChangeSeq, change: &LatchChange) -> Result<(), StoreError> {
        let value = encode(change);
        self.write(|txn| {
            txn.open_table(PENDING)?.insert(seq, value.as_slice())?;
            Ok(())
        })
    }

    /// Deletes the change stored under `seq`, durably.
    ///
    /// Blocking: commits with fsync.
    pub fn remove_latch_change(&self, seq: ChangeSeq) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(PENDING)?.remove(seq)?;
            Ok(())
        })
    }

    /// Every stored change, oldest first.
    ///
    /// Blocking: reads the file.
    pub fn latch_changes(&self) -> Result<Vec<(ChangeSeq, LatchChange)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error("read", e))?;
        let table = match txn.open_table(PENDING) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.db_error("read", e)),
        };
        let mut changes = Vec::new();
        for entry in table.iter().map_err(|e| self.db_error("read", e))? {
            let (key, value) = entry.map_err(|e| self.db_error("read", e))?;
            let seq = key.value();
            let change = decode(value.value()).map_err(|reason| StoreError::Latch {
                path: self.path.clone(),
                seq,
                reason,
            })?;
            changes.push((seq, change));
        }
        Ok(changes)
    }
}

/// The stored form; see the module docs.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LatchChangeV1 {
    v: u32,
    kind: String,
    code: String,
    subject: String,
    at_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raised_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clear_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hold_ms: Option<u32>,
}

fn encode(change: &LatchChange) -> Vec<u8> {
    let value = match change {
        LatchChange::Raise(spec) => {
            let (rule, hold_ms) = match spec.clear_rule {
                ClearRule::Operator => ("operator", None),
                ClearRule::ConditionGone { hold_ms } => ("condition_gone", Some(hold_ms)),
                ClearRule::Unplug => ("unplug", None),
            };
            let severity = match spec.severity {
                Severity::Warning => "warning",
                Severity::Error => "error",
                Severity::Critical => "critical",
            };
            LatchChangeV1 {
                v: LATCH_VERSION,
                kind: "raise".into(),
                code: spec.code.clone(),
                subject: spec.subject.clone(),
                at_unix_ms: spec.raised_unix_ms,
                severity: Some(severity.into()),
                detail: Some(spec.detail.clone()),
                raised_by: Some(spec.raised_by.to_string()),
                clear_rule: Some(rule.into()),
                hold_ms,
            }
        }
        LatchChange::Clear {
            code,
            subject,
            at_unix_ms,
        } => LatchChangeV1 {
            v: LATCH_VERSION,
            kind: "clear".into(),
            code: code.clone(),
            subject: subject.clone(),
            at_unix_ms: *at_unix_ms,
            severity: None,
            detail: None,
            raised_by: None,
            clear_rule: None,
            hold_ms: None,
        },
    };
    // A struct of strings and integers always serialises.
    serde_json::to_vec(&value).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Result<LatchChange, String> {
    let version: super::Versioned =
        serde_json::from_slice(bytes).map_err(|e| format!("not a versioned JSON value: {e}"))?;
    if version.v != LATCH_VERSION {
        return Err(format!(
            "encoding version {} is unknown (this node reads {LATCH_VERSION})",
            version.v
        ));
    }
    let value: LatchChangeV1 =
        serde_json::from_slice(bytes).map_err(|e| format!("bad version 1 value: {e}"))?;
    let missing = |field: &str| format!("a raise without {field:?}");
    match value.kind.as_str() {
        "clear" => Ok(LatchChange::Clear {
            code: value.code,
            subject: value.subject,
            at_unix_ms: value.at_unix_ms,
        }),
        "raise" => {
            let severity = match value.severity.as_deref() {
                Some("warning") => Severity::Warning,
                Some("error") => Severity::Error,
                Some("critical") => Severity::Critical,
                Some(other) => return Err(format!("unknown severity {other:?}")),
                None => return Err(missing("severity")),
            };
            let clear_rule = match (value.clear_rule.as_deref(), value.hold_ms) {
                (Some("operator"), _) => ClearRule::Operator,
                (Some("unplug"), _) => ClearRule::Unplug,
                (Some("condition_gone"), Some(hold_ms)) => ClearRule::ConditionGone { hold_ms },
                (Some("condition_gone"), None) => return Err(missing("hold_ms")),
                (Some(other), _) => return Err(format!("unknown clear rule {other:?}")),
                (None, _) => return Err(missing("clear_rule")),
            };
            let raised_by = value.raised_by.ok_or_else(|| missing("raised_by"))?;
            let raised_by =
                CabinetId::new(&raised_by).map_err(|e| format!("raised_by {raised_by:?}: {e}"))?;
            Ok(LatchChange::Raise(LatchSpec {
                evidence: Vec::new(),
                code: value.code,
                subject: value.subject,
                severity,
                detail: value.detail.ok_or_else(|| missing("detail"))?,
                raised_by,
                raised_unix_ms: value.at_unix_ms,
                clear_rule,
            }))
        }
        other => Err(format!("unknown kind {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::TempDir;
    use super::*;

    fn raise(rule: ClearRule) -> LatchChange {
        LatchChange::Raise(LatchSpec {
            evidence: Vec::new(),
            code: "CONTACTOR_WELDED".into(),
            subject: "segment 1 gc".into(),
            severity: Severity::Critical,
            detail: "feedback closed 300 ms after the open command".into(),
            raised_by: CabinetId::new("cab-a").expect("id"),
            raised_unix_ms: 1_700_000_000_000,
            clear_rule: rule,
        })
    }

    #[test]
    fn changes_survive_reopening_in_order_until_removed() {
        let dir = TempDir::new("latches-reopen");
        let clear = LatchChange::Clear {
            code: "PLC_SILENT".into(),
            subject: "segment 1".into(),
            at_unix_ms: 5,
        };
        {
            let store = Store::open(dir.store_path()).expect("open");
            store
                .put_latch_change(2, &raise(ClearRule::Operator))
                .expect("put");
            store
                .put_latch_change(3, &raise(ClearRule::ConditionGone { hold_ms: 500 }))
                .expect("put");
            store.put_latch_change(10, &clear).expect("put");
            store
                .put_latch_change(11, &raise(ClearRule::Unplug))
                .expect("put");
            store.remove_latch_change(11).expect("remove");
        }
        let store = Store::open(dir.store_path()).expect("reopen");
        assert_eq!(
            store.latch_changes().expect("read"),
            [
                (2, raise(ClearRule::Operator)),
                (3, raise(ClearRule::ConditionGone { hold_ms: 500 })),
                (10, clear),
            ]
        );
    }

    #[test]
    fn a_garbage_value_is_an_error_naming_its_number() {
        let dir = TempDir::new("latches-garbage");
        {
            let store = Store::open(dir.store_path()).expect("open");
            store
                .write(|txn| {
                    txn.open_table(PENDING)?.insert(
                        4,
                        br#"{"v":1,"kind":"raise","code":"X","subject":"y","at_unix_ms":1}"#
                            .as_slice(),
                    )?;
                    Ok(())
                })
                .expect("write");
        }
        let error = Store::open(dir.store_path()).expect_err("refused");
        let message = error.to_string();
        assert!(message.contains("latch change 4"), "{message}");
        assert!(message.contains("severity"), "{message}");
    }
}
