//! Latched faults (S6, S9): raised and cleared only through the log, never deleted, and
//! cleared only by their rule or an operator.

use ringhub_proto::config::CabinetId;
use serde::{Deserialize, Serialize};

use super::plan::Epoch;

/// A latch's hub-unique number, given when it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LatchId(pub u64);

impl std::fmt::Display for LatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "latch {}", self.0)
    }
}

/// How bad a latch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Worth an operator's look; charging goes on.
    Warning,
    /// Something is out of service until it clears.
    Error,
    /// A safety function acted (emergency open, weld): needs an operator.
    Critical,
}

/// How a latch may be cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClearRule {
    /// Only an operator, with a reason (S9 welds).
    Operator,
    /// By its node, once the condition has been gone for `hold_ms`.
    ConditionGone {
        /// How long the condition must stay gone, ms.
        hold_ms: u32,
    },
    /// By its node, when the EV is unplugged.
    Unplug,
}

/// What a node reports when it latches a fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatchSpec {
    /// Stable machine-readable code (`CONTACTOR_WELDED`).
    pub code: String,
    /// What it is about (`segment 1 gc`, `module 3`).
    pub subject: String,
    /// How bad it is.
    pub severity: Severity,
    /// What was seen, for operators.
    pub detail: String,
    /// The measurements that made it latch (empty in latches recorded before evidence).
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// The node that saw it.
    pub raised_by: CabinetId,
    /// When it saw it, Unix ms.
    pub raised_unix_ms: u64,
    /// How it may be cleared.
    pub clear_rule: ClearRule,
}

/// One measured fact that made a fault latch: `tie_current` = 812 `dA`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What was measured.
    pub key: String,
    /// Its value, a whole number of `unit`.
    pub value: i64,
    /// `dV`, `dA`, `ms`, `dC`; empty when unitless.
    pub unit: String,
}

impl Evidence {
    /// `key` = `value` in tenths of `unit` (`dA` for amperes): 81.24 A is 812 dA.
    pub fn tenths(key: &str, value: f64, unit: &str) -> Self {
        Self {
            key: key.to_owned(),
            value: (value * 10.0).round() as i64,
            unit: format!("d{unit}"),
        }
    }

    /// `key` = `value` milliseconds.
    pub fn millis(key: &str, value: std::time::Duration) -> Self {
        Self {
            key: key.to_owned(),
            value: i64::try_from(value.as_millis()).unwrap_or(i64::MAX),
            unit: "ms".into(),
        }
    }
}

/// How many times a latch of one code on one subject may be cleared by its rule within
/// [`RETRY_WINDOW_MS`]: raised again after that, it needs an operator (a fault that keeps
/// coming back is not one to retry for ever).
pub const RETRY_CAP: usize = 3;

/// The window of [`RETRY_CAP`]: one hour, Unix ms.
pub const RETRY_WINDOW_MS: u64 = 3_600_000;

/// The evidence key that says a latch needs an operator because it came back too often.
pub const RULE_CLEARS_EVIDENCE: &str = "rule_clears_last_hour";

/// Who clears a latch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clearer {
    /// An operator, by name, with a reason.
    Operator {
        /// Who.
        name: String,
        /// Why it is safe now.
        reason: String,
    },
    /// The latch's own rule, as judged by `node` (the leader, from live telemetry).
    Rule {
        /// The node that judged it.
        node: CabinetId,
        /// What it judged: the condition and how long it had been gone (empty in clears
        /// recorded before the leader judged them).
        #[serde(default)]
        reason: String,
    },
}

/// Where a latch stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatchStatus {
    /// In force.
    Active,
    /// Cleared; kept for history.
    Cleared {
        /// Who cleared it.
        by: Clearer,
        /// When, Unix ms.
        at_unix_ms: u64,
    },
}

/// One latch as the record holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latch {
    /// Its number.
    pub id: LatchId,
    /// As raised.
    pub spec: LatchSpec,
    /// The plan epoch in force when it was raised.
    pub plan_epoch: Epoch,
    /// Active or cleared.
    pub status: LatchStatus,
    /// How often the same code on the same subject was raised again while active.
    pub repeat_count: u32,
    /// When it was last raised again, Unix ms.
    pub last_seen_unix_ms: Option<u64>,
}

impl Latch {
    /// Whether it is in force.
    pub fn is_active(&self) -> bool {
        self.status == LatchStatus::Active
    }
}

/// Why a clear was refused; the latch is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ClearError {
    /// No such latch.
    #[error("{0} does not exist")]
    Unknown(LatchId),
    /// It was cleared already.
    #[error("{0} is not active")]
    NotActive(LatchId),
    /// Its rule needs an operator (S9).
    #[error("{id} ({code}) needs an operator to clear it")]
    NeedsOperator {
        /// The latch.
        id: LatchId,
        /// Its code.
        code: String,
    },
    /// An operator's clear without a name or a reason.
    #[error("clearing {0} needs the operator's name and a reason")]
    NoReason(LatchId),
}

/// Checks that `by` may clear `latch`.
pub(super) fn may_clear(latch: &Latch, by: &Clearer) -> Result<(), ClearError> {
    if !latch.is_active() {
        return Err(ClearError::NotActive(latch.id));
    }
    match by {
        Clearer::Operator { name, reason }
            if name.trim().is_empty() || reason.trim().is_empty() =>
        {
            Err(ClearError::NoReason(latch.id))
        }
        Clearer::Operator { .. } => Ok(()),
        Clearer::Rule { .. } if latch.spec.clear_rule == ClearRule::Operator => {
            Err(ClearError::NeedsOperator {
                id: latch.id,
                code: latch.spec.code.clone(),
            })
        }
        Clearer::Rule { .. } => Ok(()),
    }
}
