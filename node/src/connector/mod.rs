//! The per-segment controller: the connector state machine of the segment's gun, and the
//! sequencing of the segment's contactors and power modules (DESIGN.md §1, §2, §4).
//!
//! Pure, sans-IO, in the style of quinn-proto: the node feeds it the frames of the
//! segment's PLC and modules ([`SegmentController::handle_frame`]), authorisation
//! decisions and operator commands, and calls [`SegmentController::handle_timeout`] on a
//! fast tick (every [`Timing::tick`], at most 20 ms). It never reads a clock: every call
//! takes `now`. Out come CAN messages ([`SegmentController::poll_transmit`]), events for
//! OCPP, persistence and logs ([`SegmentController::poll_event`]), and a
//! [`SegmentSnapshot`] for Zenoh and Prometheus.
//!
//! The session of a gun, one explicit state each (see `session.rs`):
//!
//! ```text
//!  Idle ─plug─► Authorising ─PLC says Accepted─► WaitingForEv (lock, debounced)
//!    ▲              │ rejected / unplugged            │ EV in PreCharge
//!    │              ▼                                 ▼
//!    │          Finished ◄── OpeningGc ◄── RampingDown ◄── Charging ◄── ClosingGc ◄── Precharge
//!    └─unplug──────┘        (weld check)  (< 5 A, or           (feedback,    (bus within 20 V
//!                                         emergency at 1 s)     timeout)      of the battery)
//! ```
//!
//! Before WaitingForEv the gun is *preparing* (OCPP 1.6 status Preparing): from a token
//! presented before plug-in, or from plug-in under [`AuthPolicy::Token`]. A preparation
//! that has not reached WaitingForEv within [`Timing::connection_timeout`] (OCPP 1.6 §9.1
//! ConnectionTimeOut) is cancelled: a token without an EV is forgotten
//! ([`ConnectorEvent::TokenExpired`]); an EV without an accepted token ends its session
//! with [`StopReason::ConnectionTimeout`] and must be unplugged to start over.
//!
//! The CSMS reaches the gun through [`Command`]s: [`Command::RemoteStart`] hands it a
//! token already decided (RemoteStartTransaction, §5.11), [`Command::Unlock`] stops the
//! session and releases the lock, or frees a lock stuck on an idle gun (UnlockConnector,
//! §5.18).
//!
//! Safety rules it keeps: the gun contactor is commanded closed only once the PLC reports
//! authorisation Accepted, the lock has been confirmed for the debounce time and the bus
//! matches the battery (S5); nothing is opened above 5 A except as an emergency that
//! latches a fault (S4); a contactor whose feedback stays closed after an open command
//! latches a weld and takes the segment out of service until an operator clears it (S9);
//! a tie closes only across matched or dead buses (S3) and opens only below 5 A (S4),
//! and a donor's gun stays off while its modules feed another gun (S2; `island.rs`).

mod controller;
mod derate;
mod faults;
mod island;
mod meter;
mod modules;
mod preparation;
mod session;
pub mod snapshot;

use std::time::Duration;

use ringhub_proto::can::PlcSlot;
use ringhub_proto::can::ev_identity::EvIdentity;
use ringhub_proto::config::{GunId, SegmentId};
use ringhub_proto::units::{Amps, KilowattHours, Kilowatts, Volts};

pub use self::controller::SegmentController;
pub use self::derate::{Derate, DerateCurve};
pub use self::island::{
    DonorStatus, HostSetpoint, IslandPart, IslandRole, TIE_MAKE_TIMEOUT, TIE_RAMP_DOWN,
};
pub use self::modules::ModuleSetup;
pub use self::snapshot::{
    ConnectorStatus, ContactorView, FaultCode, GunSnapshot, IdToken, LocalFault, MeterView,
    ModuleSnapshot, SegmentSnapshot, SessionPhase, StopReason,
};

/// A segment as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSetup {
    pub segment: SegmentId,
    /// The PLC's slot on the cabinet bus.
    pub slot: PlcSlot,
    /// A tie contactor to the next segment is fitted.
    pub tie_fitted: bool,
    /// The gun, if fitted.
    pub gun: Option<GunSetup>,
    /// The segment's modules, in module-contactor order.
    pub modules: Vec<ModuleSetup>,
    /// Whether sessions need a token.
    pub auth: AuthPolicy,
    /// Periods and timeouts.
    pub timing: Timing,
}

impl SegmentSetup {
    /// The setup of a segment as the hub config describes it.
    pub fn from_config(
        segment: &ringhub_proto::config::Segment,
        auth: AuthPolicy,
        timing: Timing,
    ) -> Self {
        SegmentSetup {
            segment: segment.id,
            slot: segment.plc_slot,
            tie_fitted: segment.tie == ringhub_proto::config::Tie::Fitted,
            gun: segment.gun.as_ref().map(|g| GunSetup {
                id: g.id,
                max_current: g.max_current,
                max_voltage: g.max_voltage,
            }),
            modules: segment
                .modules
                .iter()
                .map(|m| ModuleSetup {
                    id: m.id,
                    address: m.address,
                    max_power: m.max_power,
                    max_current: m.max_current,
                    max_voltage: m.max_voltage,
                })
                .collect(),
            auth,
            timing,
        }
    }
}

/// A gun as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GunSetup {
    pub id: GunId,
    pub max_current: Amps,
    pub max_voltage: Volts,
}

/// How sessions are authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    /// Free vend: every plug-in is accepted.
    Free,
    /// A token (RFID, EV MAC, contract id) must be accepted by an authorisation source.
    Token,
}

/// Periods and timeouts of the controller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// The fast control tick.
    pub tick: Duration,
    /// Host heartbeat period.
    pub heartbeat: Duration,
    /// Watchdog time the PLC is told to use.
    pub watchdog: Duration,
    /// Silence after which the PLC counts as lost.
    pub plc_silence: Duration,
    /// How long a ramp-down may take before the gun contactor is opened as an emergency.
    pub open_under_load: Duration,
    /// Feedback must show a closed contactor within this.
    pub operate_timeout: Duration,
    /// Feedback must show an opened contactor within this, or it is welded.
    pub release_timeout: Duration,
    /// The lock must be confirmed within this.
    pub lock_timeout: Duration,
    /// The lock must read Locked this long before energising.
    pub lock_debounce: Duration,
    /// Period of relay commands, module setpoints and EVSE limits (also sent on change).
    pub command_period: Duration,
    /// Period of EVSE present values during a session.
    pub present_period: Duration,
    /// How long a preparation may take before it is cancelled (OCPP 1.6 §9.1
    /// ConnectionTimeOut): from the first token or plug-in until WaitingForEv.
    pub connection_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(10),
            heartbeat: Duration::from_millis(100),
            watchdog: Duration::from_millis(500),
            plc_silence: Duration::from_millis(500),
            open_under_load: Duration::from_millis(1_000),
            operate_timeout: Duration::from_millis(500),
            release_timeout: Duration::from_millis(300),
            lock_timeout: Duration::from_millis(3_000),
            lock_debounce: Duration::from_millis(100),
            command_period: Duration::from_millis(100),
            present_period: Duration::from_millis(50),
            connection_timeout: Duration::from_secs(60),
        }
    }
}

/// An authorisation source's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    Accepted,
    Rejected,
}

/// What an operator (or, later, the CSMS) tells a segment.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Allow or stop allowing new sessions; a running session is stopped.
    SetAvailable(bool),
    /// Stop the running session.
    StopSession,
    /// Clear an operator-cleared fault; refused while its condition still holds.
    ClearFault(FaultCode),
    /// Change [`Timing::connection_timeout`]; a running preparation keeps its start, so
    /// a shorter timeout may cancel it at once.
    SetConnectionTimeout(Duration),
    /// Start a session with a token the node has already authorised (OCPP
    /// RemoteStartTransaction): no [`ConnectorEvent::Authorize`] follows. Only on an idle
    /// gun, or a plugged one still waiting for an accepted token.
    RemoteStart(IdToken),
    /// Release the lock (OCPP UnlockConnector): a running session is stopped first and
    /// unlocks once de-energised; an idle or finished gun is unlocked at once.
    Unlock,
    /// The power the committed plan grants the gun (`None`: no cap beyond the hardware);
    /// the current offered to the EV follows it down or up at once.
    SetBudget(Option<Kilowatts>),
}

/// What the controller reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorEvent {
    /// Ask the authorisation source about a token (and persist it as pending).
    Authorize { gun: GunId, token: IdToken },
    /// The EV's identity was reassembled.
    IdentityReceived { gun: GunId, identity: EvIdentity },
    /// The gun's OCPP status changed.
    StatusChanged { gun: GunId, status: ConnectorStatus },
    /// The EV is plugged in and the session authorised (the lock is being closed): a
    /// transaction begins here where the dispenser is configured to start on EV connect.
    EvConnected {
        gun: GunId,
        token: Option<IdToken>,
        meter_start: KilowattHours,
    },
    /// Energy started flowing: a transaction begins (by default).
    SessionStarted {
        gun: GunId,
        token: Option<IdToken>,
        meter_start: KilowattHours,
    },
    /// The session is over and de-energised.
    SessionEnded {
        gun: GunId,
        reason: StopReason,
        energy: KilowattHours,
    },
    /// A fault was raised (`raised`) or cleared.
    Fault { fault: LocalFault, raised: bool },
    /// A token presented before plug-in waited past the connection timeout and was
    /// forgotten: no session, no transaction (delete it where it was persisted).
    TokenExpired { gun: GunId, token: IdToken },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("{0} is not active")]
    NotActive(FaultCode),
    #[error("{code} cannot be cleared: {why}")]
    ConditionHolds { code: FaultCode, why: String },
    #[error("this segment has no gun")]
    NoGun,
    /// The gun already has a session, or a token it accepted.
    #[error("the gun is busy: {why}")]
    Busy { why: &'static str },
    /// An operator or the CSMS made the gun unavailable.
    #[error("the gun is unavailable")]
    Unavailable,
    /// A fault keeps the gun from starting a session.
    #[error("the gun is blocked by {0}")]
    Blocked(FaultCode),
    /// The lock must hold while current can flow (S4, S5).
    #[error("the gun is energised: its lock must hold")]
    Energised,
}

#[cfg(test)]
mod tests;
