//! Prometheus metrics of the node (issue 5, "Outputs"; DESIGN.md §7: checked with
//! `promtool`): served as text on `http://<metrics>/metrics` by
//! metrics-exporter-prometheus, recorded through the `metrics` facade.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `ringhub_gun_power_watts` | gauge | hub, cabinet, segment, gun |
//! | `ringhub_gun_current_amperes` | gauge | hub, cabinet, segment, gun |
//! | `ringhub_gun_voltage_volts` | gauge | hub, cabinet, segment, gun |
//! | `ringhub_gun_session_energy_joules` | gauge | hub, cabinet, segment, gun |
//! | `ringhub_gun_offered_current_amperes` | gauge | hub, cabinet, segment, gun |
//! | `ringhub_gun_granted_power_watts` | gauge, once a plan grants the gun a budget | hub, cabinet, segment, gun |
//! | `ringhub_gun_session_phase` | gauge, 1 for the current phase and 0 for the others | hub, cabinet, segment, gun, phase |
//! | `ringhub_module_output_current_amperes` | gauge | hub, cabinet, segment, module |
//! | `ringhub_module_output_voltage_volts` | gauge | hub, cabinet, segment, module |
//! | `ringhub_module_temperature_celsius` | gauge | hub, cabinet, segment, module |
//! | `ringhub_module_available_power_watts` | gauge | hub, cabinet, segment, module |
//! | `ringhub_contactor_operations_total` | counter | hub, cabinet, segment |
//! | `ringhub_faults_active` | gauge, count per code (0 for codes not active) | hub, cabinet, segment, code |
//! | `ringhub_plc_online` | gauge, 0 or 1 | hub, cabinet, segment |
//! | `ringhub_controller_tick_seconds` | histogram | — |
//! | `ringhub_raft_term`, `ringhub_raft_leader_id`, `ringhub_raft_is_leader`, `ringhub_raft_last_applied_index` | gauge | — |
//! | `ringhub_latch_changes_pending`, `ringhub_node_degraded`, `ringhub_plan_epoch_applied` | gauge | — |
//! | `ringhub_latches_active` | gauge, per catalog code (0 when none) | code, clear (`operator` or `rule`) |
//! | `ringhub_plan_epochs_committed_total`, `ringhub_telemetry_rejected_total` | counter | — (telemetry: kind) |
//! | `ringhub_node_degraded_entries_total`, `ringhub_node_stall_restarts_total` | counter | — |
//! | `ringhub_admin_rejected_requests_total`, `ringhub_raft_refused_requests_total` | counter | — |
//! | `ringhub_latch_write_failures_total`, `ringhub_latch_changes_refused_total` | counter | — |
//!
//! plus the CAN counters of [`crate::can::describe_metrics`]. Values are in base units
//! (W, A, V, J, °C, s) as Prometheus naming wants (and `promtool` checks), converted from
//! the controller's kW and kWh. A gun without a meter reading shows 0 V and 0 A.
//!
//! The recorder is global to the process: install it once, before creating the CAN buses
//! (their counter handles are taken at creation).

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

use crate::connector::snapshot::{FaultCode, SegmentSnapshot, SessionPhase};

/// Malformed frames received from the CSMS, per charge point identity.
pub const OCPP_REJECTED: &str = "ringhub_ocpp_rejected_frames_total";
/// 1 while the charge point's WebSocket to the CSMS is open, per charge point identity.
pub const OCPP_CONNECTED: &str = "ringhub_ocpp_connected";
/// The gun whose island the plan in force puts a segment in; -1 for none.
pub const ISLAND_GUN: &str = "ringhub_segment_island_gun";
/// 1 for the segment's role in its island (host, donor or alone), 0 for the others.
pub const ISLAND_ROLE: &str = "ringhub_segment_island_role";
/// 1 while the segment's tie to the next one reads closed.
pub const TIE_CLOSED: &str = "ringhub_tie_closed";
pub const GUN_POWER: &str = "ringhub_gun_power_watts";
pub const GUN_CURRENT: &str = "ringhub_gun_current_amperes";
pub const GUN_VOLTAGE: &str = "ringhub_gun_voltage_volts";
/// Joules, not watt-hours: Prometheus wants base units, and `promtool check metrics`
/// refuses `hours` (1 kWh = 3.6 MJ; a dashboard divides by 3.6e6).
pub const GUN_ENERGY: &str = "ringhub_gun_session_energy_joules";
pub const GUN_PHASE: &str = "ringhub_gun_session_phase";
pub const GUN_OFFERED: &str = "ringhub_gun_offered_current_amperes";
pub const GUN_GRANTED: &str = "ringhub_gun_granted_power_watts";
pub const PLAN_EPOCH: &str = "ringhub_plan_epoch_applied";
pub const MODULE_CURRENT: &str = "ringhub_module_output_current_amperes";
pub const MODULE_VOLTAGE: &str = "ringhub_module_output_voltage_volts";
pub const MODULE_TEMPERATURE: &str = "ringhub_module_temperature_celsius";
pub const MODULE_AVAILABLE: &str = "ringhub_module_available_power_watts";
pub const CONTACTOR_OPERATIONS: &str = "ringhub_contactor_operations_total";
pub const FAULTS_ACTIVE: &str = "ringhub_faults_active";
pub const PLC_ONLINE: &str = "ringhub_plc_online";
pub const TICK: &str = "ringhub_controller_tick_seconds";
pub const RAFT_TERM: &str = "ringhub_raft_term";
pub const RAFT_LEADER: &str = "ringhub_raft_leader_id";
pub const RAFT_IS_LEADER: &str = "ringhub_raft_is_leader";
pub const RAFT_APPLIED: &str = "ringhub_raft_last_applied_index";
pub const DEGRADED: &str = "ringhub_node_degraded";
pub const DEGRADED_ENTRIES: &str = "ringhub_node_degraded_entries_total";
pub const LATCHES_PENDING: &str = "ringhub_latch_changes_pending";
/// Active latches of the hub record, per code and by who may clear them.
pub const LATCHES_ACTIVE: &str = "ringhub_latches_active";
pub const LATCH_WRITE_FAILURES: &str = "ringhub_latch_write_failures_total";
pub const LATCHES_REFUSED: &str = "ringhub_latch_changes_refused_total";

/// Buckets of [`TICK`], seconds: a tick is tens of microseconds; the 5 ms fault path
/// budget (DESIGN.md §6) must be visible.
pub const TICK_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1,
];

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listener cannot bind, or a recorder is already installed.
    #[error("metrics on {addr}: {source}")]
    Install {
        addr: SocketAddr,
        source: BuildError,
    },
}

/// Installs the Prometheus recorder as the process's global recorder and serves it over
/// HTTP on `addr` (any path; scrape `/metrics`), then describes every metric. Inside a
/// tokio runtime the listener runs on it; outside one, on a thread of its own.
pub fn install(addr: SocketAddr) -> Result<(), MetricsError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(TICK.to_owned()), &TICK_BUCKETS)
        .and_then(PrometheusBuilder::install)
        .map_err(|source| MetricsError::Install { addr, source })?;
    describe();
    Ok(())
}

/// Registers help text and unit of every node metric, CAN counters included. The
/// `metrics` crate has no electrical units, so those are in the names and help texts;
/// counts and seconds are also given as a [`Unit`].
pub fn describe() {
    describe_counter!(
        OCPP_REJECTED,
        Unit::Count,
        "Malformed OCPP frames received from the CSMS."
    );
    describe_gauge!(
        LATCHES_ACTIVE,
        "Active latches of the hub record, per fault code, by who may clear them (clear: operator or rule)."
    );
    describe_gauge!(
        OCPP_CONNECTED,
        "1 while the charge point's connection to the CSMS is open."
    );
    describe_gauge!(
        ISLAND_GUN,
        "The gun whose island the plan in force puts the segment in; -1 for none."
    );
    describe_gauge!(
        ISLAND_ROLE,
        "1 for the segment's role in its island (host, donor or alone)."
    );
    describe_gauge!(
        TIE_CLOSED,
        "1 while the segment's tie to the next segment reads closed."
    );
    describe_gauge!(GUN_POWER, "Power delivered by the gun now, watts.");
    describe_gauge!(
        GUN_CURRENT,
        "Gun output current from the trusted meter source, amperes."
    );
    describe_gauge!(
        GUN_VOLTAGE,
        "Gun output voltage from the trusted meter source, volts."
    );
    describe_gauge!(
        GUN_ENERGY,
        "Energy delivered in the gun's current session, joules (3.6e6 per kWh)."
    );
    describe_gauge!(
        GUN_PHASE,
        "1 for the gun's current session phase, 0 for the other phases."
    );
    describe_gauge!(
        GUN_OFFERED,
        "Current offered to the EV after derating, rating and budget, amperes."
    );
    describe_gauge!(
        GUN_GRANTED,
        "Power the plan in force grants the gun, watts (absent before a plan has)."
    );
    describe_gauge!(
        PLAN_EPOCH,
        "The plan epoch whose budgets this node's guns have (0: none yet)."
    );
    describe_gauge!(MODULE_CURRENT, "Power module output current, amperes.");
    describe_gauge!(MODULE_VOLTAGE, "Power module output voltage, volts.");
    describe_gauge!(
        MODULE_TEMPERATURE,
        "Power module hottest internal temperature, degrees Celsius."
    );
    describe_gauge!(
        MODULE_AVAILABLE,
        "Power the module can deliver now after derating, watts."
    );
    describe_counter!(
        CONTACTOR_OPERATIONS,
        Unit::Count,
        "Contactor close and open commands on the segment since the node started."
    );
    describe_gauge!(
        FAULTS_ACTIVE,
        Unit::Count,
        "Active local faults on the segment, by code."
    );
    describe_gauge!(
        PLC_ONLINE,
        "1 while the segment's PLC board heartbeat arrives, else 0."
    );
    describe_histogram!(
        TICK,
        Unit::Seconds,
        "Time the connector controllers take to handle one tick or event."
    );
    describe_gauge!(RAFT_TERM, "The Raft term this node is in.");
    describe_gauge!(
        RAFT_LEADER,
        "The Raft id of the leader this node follows (cabinet position + 1); 0 when it knows none."
    );
    describe_gauge!(
        RAFT_IS_LEADER,
        "1 while this node is the Raft leader, else 0."
    );
    describe_gauge!(
        RAFT_APPLIED,
        "The index of the last Raft log entry applied to this node's hub record."
    );
    describe_counter!(
        crate::admin::ADMIN_REJECTED,
        Unit::Count,
        "Operator (admin) requests over Zenoh that did not decode or named no command."
    );
    describe_counter!(
        ringhub_cluster::network::RAFT_REFUSED,
        Unit::Count,
        "Raft requests over Zenoh refused as unusable (undecodable, or for another node)."
    );
    describe_counter!(
        ringhub_cluster::service::PLANS_COMMITTED,
        Unit::Count,
        "Plan epochs this node's steward committed while it led the cluster."
    );
    describe_gauge!(
        DEGRADED,
        "1 while the node has had no contact with a Raft majority for longer than its lease (degraded local mode, S7), else 0."
    );
    describe_counter!(
        DEGRADED_ENTRIES,
        Unit::Count,
        "Times the node entered degraded local mode since it started."
    );
    describe_counter!(
        crate::stall::RESTARTS_METRIC,
        Unit::Count,
        "Times the node restarted in place after its control loop stalled for the Zenoh link lease or longer."
    );
    describe_gauge!(
        LATCHES_PENDING,
        Unit::Count,
        "Fault raises and clears stored on this node and not yet in the Raft log."
    );
    describe_counter!(
        LATCH_WRITE_FAILURES,
        Unit::Count,
        "Writes of latch changes to the Raft log that failed and are retried."
    );
    describe_counter!(
        LATCHES_REFUSED,
        Unit::Count,
        "Latch changes the hub record refused (a clear against its rule)."
    );
    crate::can::describe_metrics();
}

/// The `phase` label of a session phase.
pub fn phase_label(phase: SessionPhase) -> &'static str {
    match phase {
        SessionPhase::Idle => "idle",
        SessionPhase::Authorising => "authorising",
        SessionPhase::WaitingForEv => "waiting_for_ev",
        SessionPhase::Precharge => "precharge",
        SessionPhase::Charging => "charging",
        SessionPhase::RampingDown => "ramping_down",
        SessionPhase::Finished => "finished",
        SessionPhase::Faulted => "faulted",
    }
}

/// Every phase, for the 0/1 series.
pub const PHASES: [SessionPhase; 8] = [
    SessionPhase::Idle,
    SessionPhase::Authorising,
    SessionPhase::WaitingForEv,
    SessionPhase::Precharge,
    SessionPhase::Charging,
    SessionPhase::RampingDown,
    SessionPhase::Finished,
    SessionPhase::Faulted,
];

/// Every fault code, for the per-code series.
pub const FAULT_CODES: [FaultCode; 12] = FaultCode::ALL;

/// A code's place in [`FAULT_CODES`]. Exhaustive, so that a new code fails to compile
/// here until it is listed.
fn code_index(code: FaultCode) -> usize {
    match code {
        FaultCode::ContactorWelded => 0,
        FaultCode::ContactorFailedToClose => 1,
        FaultCode::OpenUnderLoad => 2,
        FaultCode::LockFailure => 3,
        FaultCode::MeterFailure => 4,
        FaultCode::MeterDisagreement => 5,
        FaultCode::IsolationFault => 6,
        FaultCode::PlcSilent => 7,
        FaultCode::ModuleOvertemp => 8,
        FaultCode::ModuleSilent => 9,
        FaultCode::ModuleFault => 10,
        FaultCode::EmergencyStop => 11,
    }
}

/// Sets every gauge and counter from the controllers' snapshots.
pub fn record(snapshots: &[SegmentSnapshot], hub: &str, cabinet: &str) {
    for snap in snapshots {
        let segment = snap.segment.to_string();
        let base = [
            ("hub", hub.to_owned()),
            ("cabinet", cabinet.to_owned()),
            ("segment", segment),
        ];
        gauge!(PLC_ONLINE, &base).set(f64::from(u8::from(snap.plc_online)));
        if let Some(tie) = &snap.mn {
            gauge!(TIE_CLOSED, &base).set(f64::from(u8::from(tie.closed)));
        }
        counter!(CONTACTOR_OPERATIONS, &base).absolute(snap.contactor_operations);

        let mut per_code = [0u32; FAULT_CODES.len()];
        for fault in &snap.faults {
            per_code[code_index(fault.code)] += 1;
        }
        for (code, count) in FAULT_CODES.iter().zip(per_code) {
            let labels = with(&base, ("code", code.as_str().to_owned()));
            gauge!(FAULTS_ACTIVE, &labels).set(f64::from(count));
        }

        if let Some(gun) = &snap.gun {
            let labels = with(&base, ("gun", gun.gun.to_string()));
            let (voltage, current) = gun.meter.map_or((0.0, 0.0), |m| (m.voltage.0, m.current.0));
            gauge!(GUN_POWER, &labels).set(gun.power.0 * 1000.0);
            gauge!(GUN_CURRENT, &labels).set(current);
            gauge!(GUN_VOLTAGE, &labels).set(voltage);
            gauge!(GUN_ENERGY, &labels).set(gun.session_energy.0 * 3.6e6);
            gauge!(GUN_OFFERED, &labels).set(gun.offered_current.0);
            if let Some(budget) = gun.budget {
                gauge!(GUN_GRANTED, &labels).set(budget.0 * 1000.0);
            }
            for phase in PHASES {
                let labels = with(&labels, ("phase", phase_label(phase).to_owned()));
                gauge!(GUN_PHASE, &labels).set(f64::from(u8::from(phase == gun.phase)));
            }
        }

        for module in &snap.modules {
            let labels = with(&base, ("module", module.module.to_string()));
            gauge!(MODULE_CURRENT, &labels).set(module.output_current.0);
            gauge!(MODULE_VOLTAGE, &labels).set(module.output_voltage.0);
            gauge!(MODULE_TEMPERATURE, &labels).set(module.temperature.0);
            gauge!(MODULE_AVAILABLE, &labels).set(module.available_power.0 * 1000.0);
        }
    }
}

/// A segment's place in the plan in force, for [`record_islands`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentIsland {
    pub segment: ringhub_proto::config::SegmentId,
    /// `host`, `donor` or `alone`.
    pub role: &'static str,
    /// The gun its island serves.
    pub gun: Option<ringhub_proto::config::GunId>,
}

/// The roles of [`ISLAND_ROLE`].
pub const ISLAND_ROLES: [&str; 3] = ["host", "donor", "alone"];

/// Sets the island gauges: which gun's island each segment is in, and its role there.
pub fn record_islands(islands: &[SegmentIsland], hub: &str, cabinet: &str) {
    for island in islands {
        let base = [
            ("hub", hub.to_owned()),
            ("cabinet", cabinet.to_owned()),
            ("segment", island.segment.to_string()),
        ];
        gauge!(ISLAND_GUN, &base).set(island.gun.map_or(-1.0, |g| f64::from(g.0)));
        for role in ISLAND_ROLES {
            let labels = with(&base, ("role", role.to_owned()));
            gauge!(ISLAND_ROLE, &labels).set(f64::from(u8::from(role == island.role)));
        }
    }
}

/// Records how long one controller tick took.
pub fn record_tick(duration: Duration) {
    histogram!(TICK).record(duration.as_secs_f64());
}

/// `labels` plus one more.
fn with(
    labels: &[(&'static str, String)],
    extra: (&'static str, String),
) -> Vec<(&'static str, String)> {
    let mut all = labels.to_vec();
    all.push(extra);
    all
}

/// Records the active latches of the hub record (this node's copy): per catalog code,
/// how many an operator must clear and how many their rule clears, 0 when none.
pub fn record_latches(record: &ringhub_cluster::record::HubRecord) {
    use ringhub_cluster::record::ClearRule;
    for spec in ringhub_cluster::faults::CATALOG {
        let active = || record.active_latches().filter(|l| l.spec.code == spec.code);
        let operator = active()
            .filter(|l| l.spec.clear_rule == ClearRule::Operator)
            .count();
        let rule = active().count() - operator;
        for (clear, count) in [("operator", operator), ("rule", rule)] {
            let labels = [("code", spec.code), ("clear", clear)];
            gauge!(LATCHES_ACTIVE, &labels).set(count as f64);
        }
    }
}

/// Records a change of the node's standing (S7).
pub fn record_standing(standing: ringhub_cluster::lease::Standing) {
    let degraded = standing == ringhub_cluster::lease::Standing::Degraded;
    gauge!(DEGRADED).set(if degraded { 1.0 } else { 0.0 });
    if degraded {
        counter!(DEGRADED_ENTRIES).increment(1);
    }
}

/// Records this node's view of the Raft cluster.
pub fn record_raft(metrics: &openraft::RaftMetrics<u64, openraft::BasicNode>) {
    let is_leader = metrics.state == openraft::ServerState::Leader;
    // Terms and indexes stay far below 2^53: exact as f64.
    gauge!(RAFT_TERM).set(metrics.current_term as f64);
    gauge!(RAFT_LEADER).set(metrics.current_leader.unwrap_or(0) as f64);
    gauge!(RAFT_IS_LEADER).set(if is_leader { 1.0 } else { 0.0 });
    gauge!(RAFT_APPLIED).set(metrics.last_applied.map_or(0, |l| l.index) as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_place() {
        for (i, code) in FAULT_CODES.iter().enumerate() {
            assert_eq!(code_index(*code), i, "{code}");
        }
    }

    #[test]
    fn phase_labels_are_distinct_snake_case() {
        let labels: std::collections::BTreeSet<_> =
            PHASES.iter().map(|p| phase_label(*p)).collect();
        assert_eq!(labels.len(), PHASES.len());
        assert!(
            labels
                .iter()
                .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
