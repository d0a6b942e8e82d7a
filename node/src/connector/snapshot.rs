//! What a segment controller shows the world: the node publishes it on Zenoh, exports it
//! to Prometheus, and (later) maps it to OCPP. Plain data, filled by the controller.

use std::fmt;
use std::time::Duration;

use ringhub_proto::can::ModuleAddress;
use ringhub_proto::can::ev_identity::EvIdentity;
use ringhub_proto::can::messages::{
    AuthStatus, CpState, HlcPhase, HlcProtocol, IsolationState, LockState, MeterSource,
    ModuleFaults, SlacState,
};
use ringhub_proto::config::{GunId, ModuleId, SegmentId};
use ringhub_proto::units::{Amps, Celsius, KilowattHours, Kilowatts, Percent, Volts};

/// One segment as its controller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSnapshot {
    /// Which segment.
    pub segment: SegmentId,
    /// The PLC's heartbeat arrives.
    pub plc_online: bool,
    /// Time since the PLC's last frame.
    pub plc_silent_for: Duration,
    /// DC bus voltage from relay feedback.
    pub bus_voltage: Volts,
    /// Gun contactor, if fitted.
    pub gc: Option<ContactorView>,
    /// Module contactors, with the module each connects.
    pub mc: Vec<(ModuleId, ContactorView)>,
    /// Tie contactor to the next segment, if fitted.
    pub mn: Option<ContactorView>,
    /// Isolation monitor result.
    pub isolation: IsolationState,
    /// Sequence of the last relay command sent.
    pub relay_sequence: u8,
    /// The segment is out of service (a weld, an operator) until cleared.
    pub out_of_service: bool,
    /// The gun, if fitted.
    pub gun: Option<GunSnapshot>,
    /// The segment's modules.
    pub modules: Vec<ModuleSnapshot>,
    /// Active local faults of this segment, its gun and its modules.
    pub faults: Vec<LocalFault>,
    /// Whether each active fault's condition still holds.
    pub conditions: Vec<FaultCondition>,
    /// Contactor operations (close or open commands) since start.
    pub contactor_operations: u64,
}

/// A contactor: what it was told and what its feedback says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContactorView {
    /// Last commanded position (true = closed).
    pub commanded: bool,
    /// Feedback position (true = closed).
    pub closed: bool,
    /// The PLC flags it (weld or failure to operate).
    pub faulted: bool,
}

/// The gun and its session.
#[derive(Debug, Clone, PartialEq)]
pub struct GunSnapshot {
    /// Which gun.
    pub gun: GunId,
    /// Where the session is.
    pub phase: SessionPhase,
    /// The status an OCPP charge point would report now.
    pub status: ConnectorStatus,
    /// The operator allows charging.
    pub available: bool,
    /// Control pilot.
    pub cp: CpState,
    /// SLAC state.
    pub slac: SlacState,
    /// Negotiated protocol.
    pub protocol: HlcProtocol,
    /// HLC message phase.
    pub hlc_phase: HlcPhase,
    /// EV MAC and contract id, once reassembled.
    pub ev_identity: Option<EvIdentity>,
    /// The token that authorised (or is authorising) the session.
    pub token: Option<IdToken>,
    /// Param 20 as the PLC reports it.
    pub auth: AuthStatus,
    /// Lock feedback, debounced.
    pub lock: LockState,
    /// The reading the node trusts, with its source.
    pub meter: Option<MeterView>,
    /// Energy delivered in this session, from the trusted source.
    pub session_energy: KilowattHours,
    /// EV state of charge.
    pub soc: Option<Percent>,
    /// What the EV asks for.
    pub ev_target_voltage: Volts,
    pub ev_target_current: Amps,
    /// What the node offers the EV: modules' capability after derating, the gun's
    /// rating, and the budget.
    pub offered_current: Amps,
    /// Power delivered now.
    pub power: Kilowatts,
    /// Why the last session ended, if it did.
    pub last_stop: Option<StopReason>,
    /// What the plan in force grants the gun; `None` before a plan has.
    pub budget: Option<Kilowatts>,
}

/// A meter reading and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterView {
    /// The instrument trusted for this reading.
    pub source: MeterSource,
    pub voltage: Volts,
    pub current: Amps,
    /// The source's import register.
    pub energy_register: KilowattHours,
}

/// A power module as the node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSnapshot {
    pub module: ModuleId,
    pub address: ModuleAddress,
    /// Its status frames arrive.
    pub online: bool,
    /// Commanded on.
    pub enabled: bool,
    pub setpoint_voltage: Volts,
    pub setpoint_current: Amps,
    pub output_voltage: Volts,
    pub output_current: Amps,
    pub temperature: Celsius,
    pub rated_power: Kilowatts,
    /// What it can give now, after the node's derating.
    pub available_power: Kilowatts,
    /// Its fault flags.
    pub faults: ModuleFaults,
    /// Taken out of the island (past shutdown temperature, silent, faulted).
    pub out_of_service: bool,
}

/// Where a gun's session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionPhase {
    /// No EV, or an EV whose session is over.
    Idle,
    /// Plugged in, waiting for a token or a decision.
    Authorising,
    /// Authorised, locking and waiting for the EV to reach precharge.
    WaitingForEv,
    /// Matching the bus to the battery and closing the gun contactor.
    Precharge,
    /// Energy flows.
    Charging,
    /// Bringing current to zero before opening.
    RampingDown,
    /// De-energised; waiting for the EV to leave.
    Finished,
    /// Stopped by a fault.
    Faulted,
}

/// The OCPP 1.6 ChargePointStatus the gun is in (OCPP 1.6 §4.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorStatus {
    Available,
    Preparing,
    Charging,
    SuspendedEv,
    SuspendedEvse,
    Finishing,
    Unavailable,
    Faulted,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The EV stopped (full, or its driver).
    EvStopped,
    /// The EV was unplugged.
    Unplugged,
    /// The operator or the CSMS stopped it.
    Remote,
    /// Authorisation was refused.
    Rejected,
    /// The high-level session failed.
    HlcFailed(ringhub_proto::can::messages::HlcError),
    /// The control pilot went to E (pilot error) or F (EVSE not available).
    PilotFault(CpState),
    /// A fault stopped it.
    Fault(FaultCode),
    /// Plugged in, but no accepted token within the connection timeout (OCPP 1.6 §9.1
    /// ConnectionTimeOut); nothing was energised.
    ConnectionTimeout,
}

/// An id token: what authorises a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdToken {
    /// An RFID card UID, upper-case hex.
    Rfid(String),
    /// The EV's MAC (AutoCharge), upper-case hex without separators.
    EvMac(String),
    /// The EV's contract id (ISO 15118 EMAID).
    Contract(String),
    /// Started remotely (OCPP RemoteStartTransaction) with this id tag.
    Remote(String),
}

impl IdToken {
    /// The id tag as OCPP and the local list spell it.
    pub fn id_tag(&self) -> &str {
        match self {
            Self::Rfid(tag) | Self::EvMac(tag) | Self::Contract(tag) | Self::Remote(tag) => tag,
        }
    }
}

impl fmt::Display for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Rfid(_) => "rfid",
            Self::EvMac(_) => "mac",
            Self::Contract(_) => "emaid",
            Self::Remote(_) => "remote",
        };
        write!(f, "{kind}:{}", self.id_tag())
    }
}

/// The faults a node raises on its own segments (the replicated latch catalog comes
/// with the cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultCode {
    /// A contactor stays closed after an open command, or voltage remains behind it (S9).
    ContactorWelded,
    /// A contactor did not close when commanded.
    ContactorFailedToClose,
    /// A contactor had to be opened under load as an emergency (S4).
    OpenUnderLoad,
    /// The lock did not reach Locked, or reports a fault.
    LockFailure,
    /// The PLC meter reads invalid.
    MeterFailure,
    /// The PLC meter and the shunt disagree.
    MeterDisagreement,
    /// The isolation monitor reports a fault.
    IsolationFault,
    /// The PLC stopped sending.
    PlcSilent,
    /// A module is past its shutdown temperature.
    ModuleOvertemp,
    /// A module stopped sending.
    ModuleSilent,
    /// A module reports a fault.
    ModuleFault,
    /// The dispenser's emergency stop was pressed, or its residual-current device tripped.
    EmergencyStop,
}

impl FaultCode {
    /// Every code.
    pub const ALL: [FaultCode; 12] = [
        Self::ContactorWelded,
        Self::ContactorFailedToClose,
        Self::OpenUnderLoad,
        Self::LockFailure,
        Self::MeterFailure,
        Self::MeterDisagreement,
        Self::IsolationFault,
        Self::PlcSilent,
        Self::ModuleOvertemp,
        Self::ModuleSilent,
        Self::ModuleFault,
        Self::EmergencyStop,
    ];

    /// The stable code, as operators and the docs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContactorWelded => "CONTACTOR_WELDED",
            Self::ContactorFailedToClose => "CONTACTOR_FAILED_TO_CLOSE",
            Self::OpenUnderLoad => "OPEN_UNDER_LOAD",
            Self::LockFailure => "LOCK_FAILURE",
            Self::MeterFailure => "METER_FAILURE",
            Self::MeterDisagreement => "METER_DISAGREEMENT",
            Self::IsolationFault => "ISOLATION_FAULT",
            Self::PlcSilent => "PLC_SILENT",
            Self::ModuleOvertemp => "MODULE_OVERTEMP",
            Self::ModuleSilent => "MODULE_SILENT",
            Self::ModuleFault => "MODULE_FAULT",
            Self::EmergencyStop => "EMERGENCY_STOP",
        }
    }

    /// Whether only an operator may clear it (welds, emergency opens and isolation
    /// faults, DESIGN.md S4, S9), as the fault catalog says.
    pub fn needs_operator(self) -> bool {
        ringhub_cluster::faults::spec(self.as_str())
            .is_none_or(|spec| spec.clear == ringhub_cluster::record::ClearRule::Operator)
    }
}

impl std::str::FromStr for FaultCode {
    type Err = String;

    /// The code as [`FaultCode::as_str`] spells it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| format!("unknown fault code {s:?}"))
    }
}

impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an active fault's condition still holds: what the leader judges clear rules
/// on, and what refuses an operator's clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultCondition {
    /// The fault's code.
    pub code: FaultCode,
    /// Its subject, as the fault's.
    pub subject: String,
    /// Whether what tripped it is still there.
    pub holds: bool,
    /// Why it holds; empty when it does not.
    pub why: String,
}

/// A fault raised by a controller.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalFault {
    /// What kind.
    pub code: FaultCode,
    /// What it is about: `segment 1 gc`, `gun 0`, `module 3`.
    pub subject: String,
    /// The evidence: values, thresholds, what tripped it.
    pub detail: String,
    /// The measurements that tripped it, for the latch.
    pub evidence: Vec<ringhub_cluster::record::Evidence>,
    /// Node uptime when it was raised.
    pub raised_at: Duration,
}
