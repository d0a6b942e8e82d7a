//! Pure conversions from what a segment controller shows ([`crate::connector::snapshot`])
//! to the protobuf messages of `ringhub.v1` (DESIGN.md §5).
//!
//! Units: the controller works in V, A, kW, kWh and °C as `f64`; the wire carries integers
//! named by their unit (`common.proto`): `_dv` decivolts, `_da` deciamps, `_w` watts,
//! `_wh` watt-hours, `_dc` tenths of a °C. Values are rounded to the nearest step; an
//! unsigned field clamps a negative value to 0 and every field saturates at its type's
//! range (a NaN becomes 0), so a wild reading cannot wrap around.
//!
//! What the snapshot does not know yet is left at its protobuf default and said so on the
//! field: plan epochs and grants (no cluster yet), the EV's maximum voltage and current,
//! OCPP transaction ids, latched fault ids (local faults have none until the replicated
//! latch comes with the cluster).

use std::collections::BTreeMap;

use ringhub_proto::can::messages::{
    AuthStatus, CpState, HlcPhase, HlcProtocol, IsolationState, LockState, MeterSource,
    ModuleFaults, SlacState,
};
use ringhub_proto::config::{AuthMode, CabinetId, GunId, HubConfig, HubId, SegmentId};
use ringhub_proto::units::{Amps, Celsius, KilowattHours, Kilowatts, Volts};
use ringhub_proto::v1;

use crate::connector::snapshot::{
    ConnectorStatus, ContactorView, FaultCode, FaultCondition, GunSnapshot, IdToken, LocalFault,
    MeterView, ModuleSnapshot, SegmentSnapshot, SessionPhase,
};

/// Who publishes: what every [`v1::Header`] and [`v1::Fault`] says about the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The `<hub>` of the keys and `Header.hub_id`.
    pub hub: HubId,
    /// The publishing node, named after its cabinet (`Header.node_id`).
    pub node: CabinetId,
    /// Chosen at process start ([`super::new_boot_id`]): tells subscribers `seq` restarted.
    pub boot_id: u64,
    /// Wall clock at node start, ms since the Unix epoch: turns a fault's uptime into a date.
    pub started_unix_ms: u64,
}

/// What the config says about a gun that its snapshot does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GunInfo {
    /// OCPP charge-point identity of the gun's dispenser.
    pub ocpp_charge_point_id: String,
    /// OCPP connector id of the gun on that dispenser.
    pub ocpp_connector_id: u32,
}

/// The config facts the conversions need: the cabinet's auth mode and its guns' OCPP ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    /// How the cabinet authorises: with free vend a session has no token but is authorised.
    pub auth: AuthMode,
    /// Guns by id.
    pub guns: BTreeMap<GunId, GunInfo>,
}

impl Catalog {
    /// The facts for one cabinet's guns; a cabinet the config does not name gets defaults.
    pub fn from_config(config: &HubConfig, cabinet: &CabinetId) -> Self {
        let auth = config.cabinet(cabinet).map(|c| c.auth).unwrap_or_default();
        let guns = config
            .segments_of(cabinet)
            .filter_map(|s| s.gun.as_ref())
            .map(|gun| {
                let dispenser = config.dispensers.iter().find(|d| d.id == gun.dispenser);
                let info = GunInfo {
                    ocpp_charge_point_id: dispenser
                        .map(|d| d.ocpp_identity.clone())
                        .unwrap_or_default(),
                    ocpp_connector_id: gun.connector.0,
                };
                (gun.id, info)
            })
            .collect();
        Self { auth, guns }
    }
}

/// `x` in tenths, rounded, clamped to `u32`.
pub fn tenths_u32(x: f64) -> u32 {
    // `as` from f64 saturates and maps NaN to 0.
    (x * 10.0).round() as u32
}

/// `x` in tenths, rounded, clamped to `i32`.
pub fn tenths_i32(x: f64) -> i32 {
    (x * 10.0).round() as i32
}

/// Decivolts.
pub fn dv(v: Volts) -> u32 {
    tenths_u32(v.0)
}

/// Deciamps, signed (positive toward the EV).
pub fn da(a: Amps) -> i32 {
    tenths_i32(a.0)
}

/// Deciamps of a demand or limit, never negative.
pub fn da_unsigned(a: Amps) -> u32 {
    tenths_u32(a.0)
}

/// Tenths of a degree Celsius.
pub fn dc(t: Celsius) -> i32 {
    tenths_i32(t.0)
}

/// Watts of a rating or availability, never negative.
pub fn watts_u32(p: Kilowatts) -> u32 {
    (p.0 * 1000.0).round() as u32
}

/// Watt-hours.
pub fn wh(e: KilowattHours) -> u64 {
    (e.0 * 1000.0).round() as u64
}

/// Milliseconds of a duration, saturating.
fn ms_u32(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn position(closed: bool) -> v1::ContactorState {
    if closed {
        v1::ContactorState::Closed
    } else {
        v1::ContactorState::Open
    }
}

/// A contactor's command, feedback and fault flag.
pub fn contactor(view: &ContactorView) -> v1::ContactorStatus {
    v1::ContactorStatus {
        commanded: position(view.commanded) as i32,
        feedback: position(view.closed) as i32,
        fault: view.faulted,
    }
}

pub fn cp_state(cp: CpState) -> v1::CpState {
    match cp {
        CpState::A => v1::CpState::A,
        CpState::B => v1::CpState::B,
        CpState::C => v1::CpState::C,
        CpState::D => v1::CpState::D,
        CpState::E => v1::CpState::E,
        CpState::F => v1::CpState::F,
    }
}

pub fn slac_state(slac: SlacState) -> v1::SlacState {
    match slac {
        SlacState::Idle => v1::SlacState::Idle,
        SlacState::Matching => v1::SlacState::Matching,
        SlacState::Matched => v1::SlacState::Matched,
        SlacState::Failed => v1::SlacState::Failed,
    }
}

pub fn hlc_protocol(protocol: HlcProtocol) -> v1::HlcProtocol {
    match protocol {
        HlcProtocol::None => v1::HlcProtocol::None,
        HlcProtocol::Din70121 => v1::HlcProtocol::Din70121,
        HlcProtocol::Iso15118v2 => v1::HlcProtocol::Iso151182,
        HlcProtocol::Iso15118v20 => v1::HlcProtocol::Iso1511820,
    }
}

/// The PLC's message phase, folded onto the protobuf's coarser list (`gun.proto` groups
/// SupportedAppProtocol with SessionSetup and PaymentSelection with ServiceDiscovery).
pub fn hlc_phase(phase: HlcPhase) -> v1::HlcPhase {
    match phase {
        HlcPhase::Idle => v1::HlcPhase::Idle,
        HlcPhase::SupportedAppProtocol | HlcPhase::SessionSetup => v1::HlcPhase::SessionSetup,
        HlcPhase::ServiceDiscovery | HlcPhase::PaymentSelection => v1::HlcPhase::ServiceDiscovery,
        HlcPhase::Authorization => v1::HlcPhase::Authorization,
        HlcPhase::ChargeParameterDiscovery => v1::HlcPhase::ChargeParameterDiscovery,
        HlcPhase::CableCheck => v1::HlcPhase::CableCheck,
        HlcPhase::PreCharge => v1::HlcPhase::PreCharge,
        HlcPhase::PowerDelivery => v1::HlcPhase::PowerDeliveryStart,
        HlcPhase::CurrentDemand => v1::HlcPhase::CurrentDemand,
        HlcPhase::PowerDeliveryStop => v1::HlcPhase::PowerDeliveryStop,
        HlcPhase::WeldingDetection => v1::HlcPhase::WeldingDetection,
        HlcPhase::SessionStop => v1::HlcPhase::SessionStop,
        HlcPhase::Failed => v1::HlcPhase::Error,
    }
}

pub fn auth_state(auth: AuthStatus) -> v1::AuthState {
    match auth {
        AuthStatus::None => v1::AuthState::None,
        AuthStatus::Ongoing => v1::AuthState::Ongoing,
        AuthStatus::Accepted => v1::AuthState::Accepted,
        AuthStatus::Rejected => v1::AuthState::Rejected,
    }
}

/// Lock feedback; the snapshot's lock is debounced feedback, so the in-between states
/// (`LOCKING`, `UNLOCKING`) are not reported.
pub fn lock_state(lock: LockState) -> v1::LockState {
    match lock {
        LockState::Unlocked => v1::LockState::Unlocked,
        LockState::Locked => v1::LockState::Locked,
        LockState::Fault => v1::LockState::Fault,
    }
}

pub fn meter_source(source: MeterSource) -> v1::MeterSource {
    match source {
        MeterSource::PlcMeter => v1::MeterSource::PlcMeter,
        MeterSource::Shunt => v1::MeterSource::Shunt,
    }
}

pub fn isolation_state(isolation: IsolationState) -> v1::IsolationState {
    match isolation {
        IsolationState::Invalid => v1::IsolationState::Invalid,
        IsolationState::Valid => v1::IsolationState::Valid,
        IsolationState::Warning => v1::IsolationState::Warning,
        IsolationState::Fault => v1::IsolationState::Fault,
        IsolationState::NoImd => v1::IsolationState::NoImd,
    }
}

/// The controller's phase; `WaitingForEv` is the protobuf's `WAITING_FOR_POWER` (authorised,
/// not yet precharging).
pub fn session_phase(phase: SessionPhase) -> v1::SessionPhase {
    match phase {
        SessionPhase::Idle => v1::SessionPhase::Idle,
        SessionPhase::Authorising => v1::SessionPhase::Authorising,
        SessionPhase::WaitingForEv => v1::SessionPhase::WaitingForPower,
        SessionPhase::Precharge => v1::SessionPhase::Precharge,
        SessionPhase::Charging => v1::SessionPhase::Charging,
        SessionPhase::RampingDown => v1::SessionPhase::RampingDown,
        SessionPhase::Finished => v1::SessionPhase::Finished,
        SessionPhase::Faulted => v1::SessionPhase::Faulted,
    }
}

pub fn ocpp_status(status: ConnectorStatus) -> v1::OcppStatus {
    match status {
        ConnectorStatus::Available => v1::OcppStatus::Available,
        ConnectorStatus::Preparing => v1::OcppStatus::Preparing,
        ConnectorStatus::Charging => v1::OcppStatus::Charging,
        ConnectorStatus::SuspendedEv => v1::OcppStatus::SuspendedEv,
        ConnectorStatus::SuspendedEvse => v1::OcppStatus::SuspendedEvse,
        ConnectorStatus::Finishing => v1::OcppStatus::Finishing,
        ConnectorStatus::Unavailable => v1::OcppStatus::Unavailable,
        ConnectorStatus::Faulted => v1::OcppStatus::Faulted,
    }
}

/// How a session is authorised: from its token's kind; with no token, free vend when the
/// cabinet runs free, otherwise not chosen yet.
pub fn auth_method(token: Option<&IdToken>, mode: AuthMode) -> v1::AuthMethod {
    match token {
        Some(IdToken::Rfid(_)) => v1::AuthMethod::Rfid,
        Some(IdToken::EvMac(_)) => v1::AuthMethod::EvMac,
        Some(IdToken::Contract(_)) => v1::AuthMethod::Contract,
        Some(IdToken::Remote(_)) => v1::AuthMethod::Remote,
        None if mode == AuthMode::Free => v1::AuthMethod::Free,
        None => v1::AuthMethod::Unspecified,
    }
}

/// A meter reading; `measured_unix_ms` is the caller's time of the snapshot (the snapshot
/// does not carry the frame's receive time).
pub fn meter_reading(meter: &MeterView, measured_unix_ms: u64) -> v1::MeterReading {
    v1::MeterReading {
        source: meter_source(meter.source) as i32,
        voltage_dv: dv(meter.voltage),
        current_da: da(meter.current),
        power_w: (meter.voltage.0 * meter.current.0).round() as i32,
        energy_register_wh: wh(meter.energy_register),
        measured_unix_ms,
    }
}

/// The decoded module fault list: the flags that have a protobuf value, and `COMMUNICATION`
/// when the node hears nothing from the module. The frame's `InputFault` (which does not
/// say under, over or phase loss) and `CommunicationLoss` (the module lost the host, not
/// the other way round) have no exact protobuf value and stay in [`module_fault_bits`].
pub fn module_faults(faults: &ModuleFaults, online: bool) -> Vec<v1::ModuleFault> {
    [
        (faults.over_temperature, v1::ModuleFault::OverTemperature),
        (
            faults.output_overvoltage,
            v1::ModuleFault::OutputOverVoltage,
        ),
        (
            faults.output_overcurrent,
            v1::ModuleFault::OutputOverCurrent,
        ),
        (faults.short_circuit, v1::ModuleFault::OutputShort),
        (faults.fan_failure, v1::ModuleFault::Fan),
        (faults.internal_fault, v1::ModuleFault::Internal),
        (!online, v1::ModuleFault::Communication),
    ]
    .into_iter()
    .filter_map(|(set, fault)| set.then_some(fault))
    .collect()
}

/// The fault frame's bits as the DBC lays them out (`ModuleFaults`: flags in bits 0–7,
/// vendor code in bits 16–31).
pub fn module_fault_bits(faults: &ModuleFaults) -> u32 {
    let flags = [
        faults.over_temperature,
        faults.output_overvoltage,
        faults.output_overcurrent,
        faults.input_fault,
        faults.fan_failure,
        faults.short_circuit,
        faults.communication_loss,
        faults.internal_fault,
    ];
    let bits = flags
        .iter()
        .enumerate()
        .fold(0u32, |bits, (i, &set)| bits | (u32::from(set) << i));
    bits | (u32::from(faults.vendor_code) << 16)
}

/// `seg/<seg>/state`.
pub fn segment_state(
    snap: &SegmentSnapshot,
    cabinet: &CabinetId,
    plan_epoch: u64,
    header: v1::Header,
) -> v1::SegmentState {
    v1::SegmentState {
        header: Some(header),
        segment_id: u32::from(snap.segment.0),
        cabinet_id: cabinet.to_string(),
        // The controller is built from the config, so what it has is what is fitted.
        capabilities: Some(v1::SegmentCapabilities {
            gun_fitted: snap.gc.is_some(),
            tie_fitted: snap.mn.is_some(),
            module_ids: snap.mc.iter().map(|(m, _)| u32::from(m.0)).collect(),
        }),
        gun_contactor: snap.gc.as_ref().map(contactor),
        module_contactors: snap
            .mc
            .iter()
            .map(|(module, view)| v1::ModuleContactor {
                module_id: u32::from(module.0),
                contactor: Some(contactor(view)),
            })
            .collect(),
        tie_contactor: snap.mn.as_ref().map(contactor),
        bus_voltage_dv: dv(snap.bus_voltage),
        // Not measured by the PLC boards yet.
        tie_current_da: None,
        isolation: isolation_state(snap.isolation) as i32,
        isolation_resistance_kohm: None,
        plc_online: snap.plc_online,
        plc_last_seen_ms: ms_u32(snap.plc_silent_for),
        relay_command_seq: u32::from(snap.relay_sequence),
        plan_epoch_reached: plan_epoch,
        // Local faults have no latch ids before the cluster; see `fault/…`.
        active_fault_ids: Vec::new(),
    }
}

/// `gun/<gun>/session`, under the plan epoch the node applied; `now_unix_ms` dates the
/// meter reading.
pub fn gun_session(
    segment: SegmentId,
    gun: &GunSnapshot,
    catalog: &Catalog,
    plan_epoch: u64,
    header: v1::Header,
    now_unix_ms: u64,
) -> v1::GunSession {
    let info = catalog.guns.get(&gun.gun);
    v1::GunSession {
        header: Some(header),
        gun_id: u32::from(gun.gun.0),
        segment_id: u32::from(segment.0),
        ocpp_charge_point_id: info
            .map(|i| i.ocpp_charge_point_id.clone())
            .unwrap_or_default(),
        ocpp_connector_id: info.map_or(0, |i| i.ocpp_connector_id),
        availability: if gun.available {
            v1::Availability::Operative
        } else {
            v1::Availability::Inoperative
        } as i32,
        phase: session_phase(gun.phase) as i32,
        cp_state: cp_state(gun.cp) as i32,
        slac_state: slac_state(gun.slac) as i32,
        hlc_protocol: hlc_protocol(gun.protocol) as i32,
        hlc_phase: hlc_phase(gun.hlc_phase) as i32,
        ev_identity: gun.ev_identity.as_ref().map(|id| v1::EvIdentity {
            ev_mac: id.mac.0.to_vec(),
            emaid: id.emaid.clone().unwrap_or_default(),
        }),
        auth_method: auth_method(gun.token.as_ref(), catalog.auth) as i32,
        auth_state: auth_state(gun.auth) as i32,
        id_token: gun
            .token
            .as_ref()
            .map(|t| t.id_tag().to_owned())
            .unwrap_or_default(),
        lock_state: lock_state(gun.lock) as i32,
        meter: gun.meter.as_ref().map(|m| meter_reading(m, now_unix_ms)),
        session_energy_wh: wh(gun.session_energy),
        soc_percent: gun.soc.map(|p| u32::from(p.0)),
        ev_target_voltage_dv: dv(gun.ev_target_voltage),
        ev_target_current_da: da_unsigned(gun.ev_target_current),
        // Not in the snapshot yet.
        ev_max_voltage_dv: 0,
        ev_max_current_da: 0,
        granted_power_w: gun.budget.map_or(0, watts_u32),
        plan_epoch,
        ocpp_status: ocpp_status(gun.status) as i32,
        // No OCPP transaction before the OCPP issue.
        transaction_id: String::new(),
        session_started_unix_ms: None,
        active_fault_ids: Vec::new(),
    }
}

/// `module/<module>/state`; the module's MC is looked up in its segment's snapshot.
pub fn module_state(
    segment: &SegmentSnapshot,
    module: &ModuleSnapshot,
    header: v1::Header,
) -> v1::ModuleState {
    let mc = segment
        .mc
        .iter()
        .find(|(id, _)| *id == module.module)
        .map(|(_, view)| contactor(view));
    let derated = module.available_power.0 < module.rated_power.0;
    v1::ModuleState {
        header: Some(header),
        module_id: u32::from(module.module.0),
        segment_id: u32::from(segment.segment.0),
        online: module.online,
        enabled: module.enabled,
        contactor: mc,
        output_voltage_dv: dv(module.output_voltage),
        output_current_da: da(module.output_current),
        setpoint_voltage_dv: dv(module.setpoint_voltage),
        setpoint_current_da: da_unsigned(module.setpoint_current),
        temperature_dc: dc(module.temperature),
        rated_power_w: watts_u32(module.rated_power),
        available_power_w: watts_u32(module.available_power),
        // The node derates modules for temperature only (issue 5, "Derate").
        derate_reason: if derated {
            v1::DerateReason::Temperature
        } else {
            v1::DerateReason::Unspecified
        } as i32,
        faults: module_faults(&module.faults, module.online)
            .into_iter()
            .map(|f| f as i32)
            .collect(),
        fault_bits: module_fault_bits(&module.faults),
        // No plan assigns owners before the cluster.
        owner_gun_id: None,
        plan_epoch: 0,
    }
}

/// How bad a local fault is (`fault.proto`): an emergency open or a weld is critical (S4,
/// S9); a meter problem leaves charging on the trusted source, so it is a warning; the
/// rest stop their scope.
pub fn severity(code: FaultCode) -> v1::FaultSeverity {
    match code {
        FaultCode::ContactorWelded | FaultCode::OpenUnderLoad | FaultCode::EmergencyStop => {
            v1::FaultSeverity::Critical
        }
        FaultCode::MeterFailure | FaultCode::MeterDisagreement => v1::FaultSeverity::Warning,
        FaultCode::ContactorFailedToClose
        | FaultCode::LockFailure
        | FaultCode::IsolationFault
        | FaultCode::PlcSilent
        | FaultCode::ModuleOvertemp
        | FaultCode::ModuleSilent
        | FaultCode::ModuleFault => v1::FaultSeverity::Error,
    }
}

/// The fault's scope from its subject (`segment 1 gc`, `gun 0`, `module 3`, as the
/// controller writes them); a subject of another shape is scoped to the whole segment.
pub fn scope(segment: SegmentId, subject: &str) -> (v1::FaultScope, String) {
    let words: Vec<&str> = subject.split_whitespace().collect();
    let number = |w: &str| w.parse::<u32>().ok().map(|n| n.to_string());
    let parsed = match words.as_slice() {
        ["segment", n] => number(n).map(|n| (v1::FaultScope::Segment, n)),
        ["segment", n, "gc"] => number(n).map(|n| (v1::FaultScope::GunContactor, n)),
        ["segment", n, "mn"] => number(n).map(|n| (v1::FaultScope::TieContactor, n)),
        ["gun", n] => number(n).map(|n| (v1::FaultScope::Gun, n)),
        ["module", n] => number(n).map(|n| (v1::FaultScope::Module, n)),
        ["module", n, "mc"] | ["segment", _, "mc", n] => {
            number(n).map(|n| (v1::FaultScope::ModuleContactor, n))
        }
        _ => None,
    };
    parsed.unwrap_or((v1::FaultScope::Segment, segment.to_string()))
}

/// A measurement that tripped a fault, as `ringhub.v1` carries it.
pub fn evidence(measured: &ringhub_cluster::record::Evidence) -> v1::Evidence {
    v1::Evidence {
        key: measured.key.clone(),
        value: Some(v1::evidence::Value::IntValue(measured.value)),
        unit: measured.unit.clone(),
    }
}

/// A local fault as a `ringhub.v1.Fault`. It has no hub-unique id yet (`fault_id` 0: the
/// latch assigns one when the cluster commits it); its clear rule is the operator for the
/// codes that need one (S4, S9), else the condition going away (the controller drops it).
pub fn fault(segment: SegmentId, local: &LocalFault, origin: &Origin) -> v1::Fault {
    let (scope, scope_id) = scope(segment, &local.subject);
    let raised_ms = u64::try_from(local.raised_at.as_millis()).unwrap_or(u64::MAX);
    v1::Fault {
        fault_id: 0,
        code: local.code.as_str().to_owned(),
        severity: severity(local.code) as i32,
        scope: scope as i32,
        scope_id,
        reason: local.detail.clone(),
        evidence: std::iter::once(v1::Evidence {
            key: "subject".to_owned(),
            value: Some(v1::evidence::Value::TextValue(local.subject.clone())),
            unit: String::new(),
        })
        .chain(local.evidence.iter().map(evidence))
        .collect(),
        raised_by_node_id: origin.node.to_string(),
        raised_unix_ms: origin.started_unix_ms.saturating_add(raised_ms),
        clear_rule: if local.code.needs_operator() {
            v1::ClearRule::Operator
        } else {
            v1::ClearRule::ConditionGone
        } as i32,
        clear_hold_ms: 0,
        status: v1::FaultStatus::Active as i32,
        cleared_unix_ms: None,
        cleared_by: String::new(),
        clear_reason: String::new(),
        plan_epoch: 0,
        repeat_count: 0,
        last_seen_unix_ms: None,
    }
}

/// One entry of `node/<node>/conditions`.
pub fn fault_condition(condition: &FaultCondition) -> v1::FaultCondition {
    v1::FaultCondition {
        code: condition.code.as_str().to_owned(),
        subject: condition.subject.clone(),
        holds: condition.holds,
        why: condition.why.clone(),
    }
}

/// The `<id>` of a local fault's key `fault/<id>`: `<segment>-<code>-<subject>` in lower
/// case with every other character as `-` (`1-contactor-welded-segment-1-gc`). One key per
/// code and subject, so two modules of a segment with the same fault do not share a key;
/// never a bare number, so it cannot collide with a latch id of the cluster.
pub fn fault_key_id(segment: SegmentId, local: &LocalFault) -> String {
    let slug = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    let mut id = format!(
        "{segment}-{}-{}",
        slug(local.code.as_str()),
        slug(&local.subject)
    );
    // Collapse runs of '-' and trim them at the end (an empty subject).
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    id.trim_end_matches('-').to_owned()
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
