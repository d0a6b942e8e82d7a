//! The replicated hub record: the state machine every node applies the Raft log to
//! (issue 7, "The replicated record"). Pure: [`HubRecord::apply`] takes a [`Request`] and
//! returns its [`Outcome`]; it reads no clock (times come in the commands) and does no IO.
//!
//! ```text
//!   Request { client, serial, Command } ──apply──► HubRecord ──► Outcome
//!                                                   ├ topology: the ring, once the log grew it
//!                                                   ├ segments: out of service, tie observed
//!                                                   ├ plan: the committed epoch (islands,
//!                                                   │       owners, budgets)
//!                                                   ├ reached: the epoch each node applied
//!                                                   ├ latches: raised, cleared, never lost
//!                                                   └ sessions: each client's last answer
//! ```
//!
//! - **Idempotent**: a client numbers its requests; a request with the number of the
//!   client's last one gets that one's outcome again and changes nothing (a retry after a
//!   lost answer or a leader change applies once); an older number is refused as stale.
//! - **Validated**: a command that would break S1 (a module in two islands, or outside
//!   its gun's island), S2 (a gun outside its island), S6 (a latch lost or cleared against
//!   its rule) or S8 (more power granted than the site limit) is refused with the reason,
//!   and changes nothing — every node refuses it alike, so the record stays the same on
//!   all of them.
//! - **Snapshots**: [`HubRecord::snapshot`] is everything the log built;
//!   [`HubRecord::restore`] rebuilds the record from it.
//! - **The ring is in the log**: the leader's first command sets it, and a hub config
//!   that grows it sets the grown one ([`Command::SetTopology`]); no node's config enters
//!   an apply, so a node restarted on a newer config re-applies the old log alike.

mod latch;
mod plan;
mod topology;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use ringhub_proto::config::{CabinetId, ModuleId, SegmentId};
use serde::{Deserialize, Serialize};

pub use latch::{
    ClearError, ClearRule, Clearer, Evidence, Latch, LatchId, LatchSpec, LatchStatus, RETRY_CAP,
    RETRY_WINDOW_MS, RULE_CLEARS_EVIDENCE, Severity,
};
pub use plan::{Epoch, Island, Plan, PlanError};
pub use topology::{
    OutOfService, SegmentSpec, SegmentState, SegmentStates, TieObservation, Topology,
};

/// Power in whole watts: budgets add up exactly.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Watts(pub u64);

impl Watts {
    /// `kw` kilowatts, rounded down to the watt (negative and NaN: zero).
    pub fn from_kilowatts(kw: f64) -> Self {
        // `as` saturates and maps NaN to 0.
        Self((kw * 1000.0) as u64)
    }
}

impl std::fmt::Display for Watts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} W", self.0)
    }
}

/// Who sends requests: a node, under a name that is new on every start (its boot id), so
/// its request numbers can start again at 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub String);

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Who sent it.
    pub client: ClientId,
    /// The client's number for it, from 1, one more for each new request.
    pub serial: u64,
    /// What it asks.
    pub command: Command,
}

/// What a request asks of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Latch a fault; the same code on the same subject while active counts a repeat.
    RaiseLatch(LatchSpec),
    /// Clear a latch, by its rule or an operator.
    ClearLatch {
        /// The latch.
        id: LatchId,
        /// Who clears it.
        by: Clearer,
        /// When, Unix ms.
        at_unix_ms: u64,
    },
    /// Commit the next plan epoch.
    CommitPlan(Plan),
    /// A node has applied every plan up to `epoch`.
    ReportEpoch {
        /// The node.
        node: CabinetId,
        /// The epoch it reached.
        epoch: Epoch,
    },
    /// Take a segment out of service (with the reason) or put it back (`None`).
    SetOutOfService {
        /// The segment.
        segment: SegmentId,
        /// Why, or `None` to put it back in service.
        out: Option<OutOfService>,
    },
    /// The ring grows (cabinets added to the hub config): the new one must extend the
    /// ring in force, which it replaces.
    SetTopology(Topology),
    /// What a tie's feedback shows.
    ObserveTie {
        /// The tie's segment.
        segment: SegmentId,
        /// Its observed state.
        observed: TieObservation,
    },
}

/// What a request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied.
    Applied(Applied),
    /// Refused; nothing changed.
    Rejected(Rejection),
}

/// What an applied request changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A latch was raised (`new`), or an active one counted a repeat.
    Latched {
        /// The latch.
        id: LatchId,
        /// Whether it is a new latch.
        new: bool,
    },
    /// The latch was cleared.
    Cleared(LatchId),
    /// The plan is now in force.
    Committed(Epoch),
    /// The node's reached epoch is now this (never lowered).
    Reached(Epoch),
    /// The segment's state was recorded.
    Segment(SegmentId),
    /// The ring in force is now this many segments.
    Topology(usize),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejection {
    /// A request older than the client's last one.
    #[error("request {serial} of {client:?} is older than its last one ({last})")]
    Stale {
        /// The client.
        client: ClientId,
        /// The request's number.
        serial: u64,
        /// The client's last number.
        last: u64,
    },
    /// The plan breaks a rule.
    #[error("plan refused: {0}")]
    Plan(#[from] PlanError),
    /// The clear is not allowed.
    #[error("clear refused: {0}")]
    Clear(#[from] ClearError),
    /// A segment the ring does not have.
    #[error("no segment {0} in the ring")]
    UnknownSegment(SegmentId),
    /// A tie that is not fitted cannot be observed.
    #[error("segment {0} has no tie fitted")]
    NoTie(SegmentId),
    /// A new ring that does not extend the one in force.
    #[error("the new ring does not extend the one in force: {0}")]
    Topology(String),
    /// A node reports an epoch not committed yet.
    #[error("{node} reports {epoch}, but {committed} is the last committed")]
    EpochAhead {
        /// The node.
        node: CabinetId,
        /// What it reported.
        epoch: Epoch,
        /// The committed epoch.
        committed: Epoch,
    },
}

/// A client's last request and its outcome, for retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The number of the last request.
    pub serial: u64,
    /// Its outcome.
    pub outcome: Outcome,
}

/// Everything the log has built: what a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordState {
    /// Segments out of service and observed ties.
    pub segments: SegmentStates,
    /// The plan in force.
    pub plan: Option<Plan>,
    /// The epoch each node reached.
    pub reached: BTreeMap<CabinetId, Epoch>,
    /// How many reports each node has made: a report made after some moment shows as a
    /// larger count (the steward waits for one from a returning node).
    #[serde(default)]
    pub reports: BTreeMap<CabinetId, u64>,
    /// Every latch ever raised, active or cleared.
    pub latches: BTreeMap<LatchId, Latch>,
    /// Each client's last request.
    pub sessions: BTreeMap<ClientId, Session>,
    /// The ring in force, once the log set it.
    #[serde(default)]
    pub topology: Option<Topology>,
}

/// The record; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRecord {
    /// What the log built.
    state: RecordState,
}

/// The ring of a record whose log has not set one yet: no segment, nothing to grant.
static NO_RING: Topology = Topology {
    segments: Vec::new(),
    site_limit: Watts(0),
};

impl HubRecord {
    /// A record whose log began with `topology`: the initial plan in force (epoch 0,
    /// everything alone and idle), no latch.
    pub fn new(topology: Topology) -> Self {
        let mut record = Self::empty();
        record.state.plan = Some(Plan::initial(&topology));
        record.state.topology = Some(topology);
        record
    }

    /// The record before the log's first entry: no ring, no plan. Everything about the
    /// ring comes from the log ([`Command::SetTopology`]), never from a node's config,
    /// so that every node applies every entry alike whatever its config says.
    pub fn empty() -> Self {
        Self {
            state: RecordState::default(),
        }
    }

    /// The record a snapshot holds.
    pub fn restore(state: RecordState) -> Self {
        Self { state }
    }

    /// What a snapshot holds.
    pub fn snapshot(&self) -> &RecordState {
        &self.state
    }

    /// The ring in force, as the log set it; no segment before it did.
    pub fn topology(&self) -> &Topology {
        self.state.topology.as_ref().unwrap_or(&NO_RING)
    }

    /// The plan in force.
    pub fn plan(&self) -> Option<&Plan> {
        self.state.plan.as_ref()
    }

    /// The epoch in force.
    pub fn epoch(&self) -> Epoch {
        self.state.plan.as_ref().map_or(Epoch(0), |p| p.epoch)
    }

    /// The gun that holds each module in the plan in force.
    pub fn owners(&self) -> BTreeMap<ModuleId, ringhub_proto::config::GunId> {
        self.state
            .plan
            .as_ref()
            .map(Plan::owners)
            .unwrap_or_default()
    }

    /// The active latches.
    pub fn active_latches(&self) -> impl Iterator<Item = &Latch> {
        self.state.latches.values().filter(|l| l.is_active())
    }

    /// Every latch, by id.
    pub fn latches(&self) -> &BTreeMap<LatchId, Latch> {
        &self.state.latches
    }

    /// Applies one log entry (see the module docs).
    pub fn apply(&mut self, request: &Request) -> Outcome {
        if let Some(session) = self.state.sessions.get(&request.client) {
            if request.serial == session.serial {
                return session.outcome.clone();
            }
            if request.serial < session.serial {
                return Outcome::Rejected(Rejection::Stale {
                    client: request.client.clone(),
                    serial: request.serial,
                    last: session.serial,
                });
            }
        }
        let outcome = match self.execute(&request.command) {
            Ok(applied) => Outcome::Applied(applied),
            Err(rejection) => Outcome::Rejected(rejection),
        };
        self.state.sessions.insert(
            request.client.clone(),
            Session {
                serial: request.serial,
                outcome: outcome.clone(),
            },
        );
        outcome
    }

    /// Carries out a command, or refuses it changing nothing.
    fn execute(&mut self, command: &Command) -> Result<Applied, Rejection> {
        match command {
            Command::RaiseLatch(spec) => Ok(self.raise(spec)),
            Command::ClearLatch { id, by, at_unix_ms } => {
                let latch = self
                    .state
                    .latches
                    .get_mut(id)
                    .ok_or(ClearError::Unknown(*id))?;
                latch::may_clear(latch, by)?;
                latch.status = LatchStatus::Cleared {
                    by: by.clone(),
                    at_unix_ms: *at_unix_ms,
                };
                Ok(Applied::Cleared(*id))
            }
            Command::CommitPlan(plan) => {
                plan.check(self.topology(), &self.state.segments, self.epoch())?;
                self.state.plan = Some(plan.clone());
                Ok(Applied::Committed(plan.epoch))
            }
            Command::ReportEpoch { node, epoch } => {
                let committed = self.epoch();
                if *epoch > committed {
                    return Err(Rejection::EpochAhead {
                        node: node.clone(),
                        epoch: *epoch,
                        committed,
                    });
                }
                let reached = self.state.reached.entry(node.clone()).or_default();
                *reached = (*reached).max(*epoch);
                *self.state.reports.entry(node.clone()).or_default() += 1;
                Ok(Applied::Reached(*reached))
            }
            Command::SetOutOfService { segment, out } => {
                self.topology()
                    .segment(*segment)
                    .ok_or(Rejection::UnknownSegment(*segment))?;
                self.state
                    .segments
                    .entry(*segment)
                    .or_default()
                    .out_of_service = out.clone();
                Ok(Applied::Segment(*segment))
            }
            Command::SetTopology(ring) => {
                ring.extends(self.topology()).map_err(Rejection::Topology)?;
                let segments = ring.segments.len();
                if self.state.plan.is_none() {
                    self.state.plan = Some(Plan::initial(ring));
                }
                self.state.topology = Some(ring.clone());
                Ok(Applied::Topology(segments))
            }
            Command::ObserveTie { segment, observed } => {
                let spec = self
                    .topology()
                    .segment(*segment)
                    .ok_or(Rejection::UnknownSegment(*segment))?;
                if !spec.tie_fitted {
                    return Err(Rejection::NoTie(*segment));
                }
                self.state.segments.entry(*segment).or_default().tie = Some(*observed);
                Ok(Applied::Segment(*segment))
            }
        }
    }

    /// Raises `spec`, or counts a repeat of the active latch of its code and subject. The
    /// very report that raised that latch, sent again (by a node that restarted before it
    /// learnt of the commit), is not a repeat.
    fn raise(&mut self, spec: &LatchSpec) -> Applied {
        let repeat =
            self.state.latches.values_mut().find(|l| {
                l.is_active() && l.spec.code == spec.code && l.spec.subject == spec.subject
            });
        if let Some(latch) = repeat {
            if latch.spec.raised_by == spec.raised_by
                && latch.spec.raised_unix_ms == spec.raised_unix_ms
            {
                return Applied::Latched {
                    id: latch.id,
                    new: false,
                };
            }
            latch.repeat_count = latch.repeat_count.saturating_add(1);
            latch.last_seen_unix_ms = Some(spec.raised_unix_ms);
            return Applied::Latched {
                id: latch.id,
                new: false,
            };
        }
        let id = LatchId(
            self.state
                .latches
                .keys()
                .next_back()
                .map_or(1, |last| last.0 + 1),
        );
        let latch = Latch {
            id,
            spec: self.capped(spec),
            plan_epoch: self.epoch(),
            status: LatchStatus::Active,
            repeat_count: 0,
            last_seen_unix_ms: None,
        };
        self.state.latches.insert(id, latch);
        Applied::Latched { id, new: true }
    }

    /// `spec`, or, when its rule already cleared [`RETRY_CAP`] latches of its code and
    /// subject within [`RETRY_WINDOW_MS`] before it was raised, `spec` made operator-only
    /// with the count as evidence. Judged from the record alone, so every node agrees.
    fn capped(&self, spec: &LatchSpec) -> LatchSpec {
        let mut spec = spec.clone();
        if spec.clear_rule == ClearRule::Operator {
            return spec;
        }
        let since = spec.raised_unix_ms.saturating_sub(RETRY_WINDOW_MS);
        let clears = self
            .state
            .latches
            .values()
            .filter(|l| l.spec.code == spec.code && l.spec.subject == spec.subject)
            .filter(|l| {
                matches!(&l.status, LatchStatus::Cleared { by: Clearer::Rule { .. }, at_unix_ms }
                    if *at_unix_ms >= since)
            })
            .count();
        if clears >= RETRY_CAP {
            spec.clear_rule = ClearRule::Operator;
            spec.evidence.push(Evidence {
                key: RULE_CLEARS_EVIDENCE.into(),
                value: i64::try_from(clears).unwrap_or(i64::MAX),
                unit: String::new(),
            });
            spec.detail = format!(
                "{} (cleared by its rule {clears} times in the last hour: an operator must clear it now)",
                spec.detail
            );
        }
        spec
    }
}
