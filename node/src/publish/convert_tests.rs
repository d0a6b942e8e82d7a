//! Field-by-field tests of the conversions, units included.

use std::time::Duration;

use ringhub_proto::can::ModuleAddress;
use ringhub_proto::can::ev_identity::EvIdentity;
use ringhub_proto::can::messages::{HlcError, MacAddress};
use ringhub_proto::config::ModuleId;
use ringhub_proto::units::Percent;

use super::*;
use crate::connector::snapshot::StopReason;

fn header(seq: u64) -> v1::Header {
    v1::Header {
        hub_id: "demo".into(),
        node_id: "cab-a".into(),
        boot_id: 77,
        seq,
        sent_unix_ms: 1_700_000_000_000,
    }
}

fn origin() -> Origin {
    Origin {
        hub: HubId::new("demo").expect("hub id"),
        node: CabinetId::new("cab-a").expect("cabinet id"),
        boot_id: 77,
        started_unix_ms: 1_700_000_000_000,
    }
}

fn cabinet() -> CabinetId {
    CabinetId::new("cab-a").expect("cabinet id")
}

fn view(commanded: bool, closed: bool, faulted: bool) -> ContactorView {
    ContactorView {
        commanded,
        closed,
        faulted,
    }
}

fn gun() -> GunSnapshot {
    GunSnapshot {
        gun: GunId(1),
        phase: SessionPhase::Charging,
        status: ConnectorStatus::Charging,
        available: true,
        cp: CpState::C,
        slac: SlacState::Matched,
        protocol: HlcProtocol::Iso15118v2,
        hlc_phase: HlcPhase::CurrentDemand,
        ev_identity: Some(EvIdentity {
            mac: MacAddress([0x0A, 0x1B, 0x2C, 0x3D, 0x4E, 0x5F]),
            emaid: Some("DEABCC123456789".into()),
        }),
        token: Some(IdToken::Rfid("04A2B3C4D5E6F7".into())),
        auth: AuthStatus::Accepted,
        lock: LockState::Locked,
        meter: Some(MeterView {
            source: MeterSource::Shunt,
            voltage: Volts(401.26),
            current: Amps(-12.34),
            energy_register: KilowattHours(1234.5678),
        }),
        session_energy: KilowattHours(12.3456),
        soc: Some(Percent(57)),
        ev_target_voltage: Volts(410.04),
        ev_target_current: Amps(150.05),
        offered_current: Amps(140.0),
        power: Kilowatts(60.2),
        last_stop: Some(StopReason::HlcFailed(HlcError::MessageTimeout)),
        budget: Some(Kilowatts(75.5)),
    }
}

fn module(id: u16, online: bool) -> ModuleSnapshot {
    ModuleSnapshot {
        module: ModuleId(id),
        address: ModuleAddress(0x10 + id as u8),
        online,
        enabled: true,
        setpoint_voltage: Volts(410.0),
        setpoint_current: Amps(75.04),
        output_voltage: Volts(401.15),
        output_current: Amps(74.96),
        temperature: Celsius(-3.45),
        rated_power: Kilowatts(50.0),
        available_power: Kilowatts(37.5004),
        faults: ModuleFaults {
            fan_failure: true,
            input_fault: true,
            vendor_code: 0xBEEF,
            ..ModuleFaults::default()
        },
        out_of_service: false,
    }
}

fn segment() -> SegmentSnapshot {
    SegmentSnapshot {
        segment: SegmentId(1),
        plc_online: true,
        plc_silent_for: Duration::from_micros(42_900),
        bus_voltage: Volts(399.95),
        gc: Some(view(true, true, false)),
        mc: vec![
            (ModuleId(2), view(true, true, false)),
            (ModuleId(3), view(false, true, true)),
        ],
        mn: None,
        isolation: IsolationState::Warning,
        relay_sequence: 200,
        out_of_service: false,
        gun: Some(gun()),
        modules: vec![module(2, true), module(3, false)],
        faults: vec![LocalFault {
            evidence: vec![ringhub_cluster::record::Evidence::millis(
                "closed_after_open_command",
                Duration::from_millis(200),
            )],
            code: FaultCode::ContactorWelded,
            subject: "module 3 mc".into(),
            detail: "feedback closed 200 ms after open".into(),
            raised_at: Duration::from_millis(1500),
        }],
        conditions: vec![FaultCondition {
            code: FaultCode::ContactorWelded,
            subject: "module 3 mc".into(),
            holds: true,
            why: "feedback still shows a contactor closed that was commanded open".into(),
        }],
        contactor_operations: 17,
    }
}

#[test]
fn units_round_and_clamp() {
    assert_eq!(dv(Volts(400.04)), 4000);
    assert_eq!(dv(Volts(400.05)), 4001);
    assert_eq!(dv(Volts(-5.0)), 0, "negative voltage clamps to 0");
    assert_eq!(dv(Volts(f64::NAN)), 0);
    assert_eq!(dv(Volts(1e12)), u32::MAX, "saturates");
    assert_eq!(da(Amps(-12.34)), -123);
    assert_eq!(da(Amps(-12.36)), -124);
    assert_eq!(da_unsigned(Amps(-1.0)), 0);
    assert_eq!(dc(Celsius(-3.45)), -35, "rounds half away from zero");
    assert_eq!(dc(Celsius(85.04)), 850);
    assert_eq!(watts_u32(Kilowatts(37.5004)), 37_500);
    assert_eq!(wh(KilowattHours(12.3456)), 12_346);
    assert_eq!(wh(KilowattHours(-1.0)), 0);
}

#[test]
fn segment_state_field_by_field() {
    let snap = segment();
    let state = segment_state(&snap, &cabinet(), 0, header(5));
    assert_eq!(state.header, Some(header(5)));
    assert_eq!(state.segment_id, 1);
    assert_eq!(state.cabinet_id, "cab-a");
    assert_eq!(
        state.capabilities,
        Some(v1::SegmentCapabilities {
            gun_fitted: true,
            tie_fitted: false,
            module_ids: vec![2, 3],
        })
    );
    let closed = v1::ContactorState::Closed as i32;
    let open = v1::ContactorState::Open as i32;
    assert_eq!(
        state.gun_contactor,
        Some(v1::ContactorStatus {
            commanded: closed,
            feedback: closed,
            fault: false
        })
    );
    assert_eq!(
        state.module_contactors,
        vec![
            v1::ModuleContactor {
                module_id: 2,
                contactor: Some(v1::ContactorStatus {
                    commanded: closed,
                    feedback: closed,
                    fault: false
                }),
            },
            v1::ModuleContactor {
                module_id: 3,
                contactor: Some(v1::ContactorStatus {
                    commanded: open,
                    feedback: closed,
                    fault: true
                }),
            },
        ]
    );
    assert_eq!(state.tie_contactor, None, "no tie fitted");
    assert_eq!(state.bus_voltage_dv, 4000, "399.95 V in decivolts");
    assert_eq!(state.tie_current_da, None);
    assert_eq!(state.isolation, v1::IsolationState::Warning as i32);
    assert_eq!(state.isolation_resistance_kohm, None);
    assert!(state.plc_online);
    assert_eq!(state.plc_last_seen_ms, 42);
    assert_eq!(state.relay_command_seq, 200);
    assert_eq!(state.plan_epoch_reached, 0);
    assert!(state.active_fault_ids.is_empty());
}

#[test]
fn tie_contactor_when_fitted() {
    let mut snap = segment();
    snap.mn = Some(view(false, false, false));
    snap.gc = None;
    let state = segment_state(&snap, &cabinet(), 0, header(1));
    let caps = state.capabilities.expect("capabilities");
    assert!(caps.tie_fitted);
    assert!(!caps.gun_fitted);
    assert_eq!(state.gun_contactor, None);
    assert_eq!(
        state.tie_contactor,
        Some(v1::ContactorStatus {
            commanded: v1::ContactorState::Open as i32,
            feedback: v1::ContactorState::Open as i32,
            fault: false,
        })
    );
}

fn catalog() -> Catalog {
    Catalog {
        auth: AuthMode::Local,
        guns: [(
            GunId(1),
            GunInfo {
                ocpp_charge_point_id: "demo-disp-a".into(),
                ocpp_connector_id: 2,
            },
        )]
        .into(),
    }
}

#[test]
fn gun_session_field_by_field() {
    let session = gun_session(
        SegmentId(1),
        &gun(),
        &catalog(),
        7,
        header(9),
        1_700_000_000_500,
    );
    assert_eq!(session.header, Some(header(9)));
    assert_eq!(session.gun_id, 1);
    assert_eq!(session.segment_id, 1);
    assert_eq!(session.ocpp_charge_point_id, "demo-disp-a");
    assert_eq!(session.ocpp_connector_id, 2);
    assert_eq!(session.availability, v1::Availability::Operative as i32);
    assert_eq!(session.phase, v1::SessionPhase::Charging as i32);
    assert_eq!(session.cp_state, v1::CpState::C as i32);
    assert_eq!(session.slac_state, v1::SlacState::Matched as i32);
    assert_eq!(session.hlc_protocol, v1::HlcProtocol::Iso151182 as i32);
    assert_eq!(session.hlc_phase, v1::HlcPhase::CurrentDemand as i32);
    assert_eq!(
        session.ev_identity,
        Some(v1::EvIdentity {
            ev_mac: vec![0x0A, 0x1B, 0x2C, 0x3D, 0x4E, 0x5F],
            emaid: "DEABCC123456789".into(),
        })
    );
    assert_eq!(session.auth_method, v1::AuthMethod::Rfid as i32);
    assert_eq!(session.auth_state, v1::AuthState::Accepted as i32);
    assert_eq!(session.id_token, "04A2B3C4D5E6F7");
    assert_eq!(session.lock_state, v1::LockState::Locked as i32);
    assert_eq!(
        session.meter,
        Some(v1::MeterReading {
            source: v1::MeterSource::Shunt as i32,
            voltage_dv: 4013,
            current_da: -123,
            // 401.26 V × -12.34 A = -4951.5484 W
            power_w: -4952,
            energy_register_wh: 1_234_568,
            measured_unix_ms: 1_700_000_000_500,
        })
    );
    assert_eq!(session.session_energy_wh, 12_346);
    assert_eq!(session.soc_percent, Some(57));
    assert_eq!(session.ev_target_voltage_dv, 4100);
    assert_eq!(session.ev_target_current_da, 1501);
    assert_eq!(session.ev_max_voltage_dv, 0);
    assert_eq!(session.ev_max_current_da, 0);
    assert_eq!(session.granted_power_w, 75_500);
    assert_eq!(session.plan_epoch, 7);
    assert_eq!(session.ocpp_status, v1::OcppStatus::Charging as i32);
    assert_eq!(session.transaction_id, "");
    assert_eq!(session.session_started_unix_ms, None);
    assert!(session.active_fault_ids.is_empty());
}

#[test]
fn gun_session_without_ev() {
    let mut idle = gun();
    idle.phase = SessionPhase::Idle;
    idle.status = ConnectorStatus::Unavailable;
    idle.available = false;
    idle.ev_identity = None;
    idle.token = None;
    idle.meter = None;
    idle.soc = None;
    let session = gun_session(SegmentId(1), &idle, &Catalog::default(), 0, header(1), 0);
    assert_eq!(session.availability, v1::Availability::Inoperative as i32);
    assert_eq!(session.phase, v1::SessionPhase::Idle as i32);
    assert_eq!(session.ocpp_status, v1::OcppStatus::Unavailable as i32);
    assert_eq!(session.ev_identity, None);
    assert_eq!(session.meter, None);
    assert_eq!(session.soc_percent, None);
    assert_eq!(session.id_token, "");
    // Catalog::default() runs free vend: no token still means authorised by the config.
    assert_eq!(session.auth_method, v1::AuthMethod::Free as i32);
    assert_eq!(
        session.ocpp_charge_point_id, "",
        "gun unknown to the catalog"
    );
}

#[test]
fn module_state_field_by_field() {
    let snap = segment();
    let state = module_state(&snap, &snap.modules[0], header(3));
    assert_eq!(state.header, Some(header(3)));
    assert_eq!(state.module_id, 2);
    assert_eq!(state.segment_id, 1);
    assert!(state.online);
    assert!(state.enabled);
    assert_eq!(
        state.contactor,
        Some(v1::ContactorStatus {
            commanded: v1::ContactorState::Closed as i32,
            feedback: v1::ContactorState::Closed as i32,
            fault: false,
        })
    );
    assert_eq!(state.output_voltage_dv, 4012, "401.15 V");
    assert_eq!(state.output_current_da, 750, "74.96 A");
    assert_eq!(state.setpoint_voltage_dv, 4100);
    assert_eq!(state.setpoint_current_da, 750, "75.04 A");
    assert_eq!(state.temperature_dc, -35, "-3.45 °C");
    assert_eq!(state.rated_power_w, 50_000);
    assert_eq!(state.available_power_w, 37_500);
    assert_eq!(state.derate_reason, v1::DerateReason::Temperature as i32);
    assert_eq!(state.faults, vec![v1::ModuleFault::Fan as i32]);
    // fan (bit 4) + input (bit 3) + vendor code in the high half
    assert_eq!(state.fault_bits, 0xBEEF_0018);
    assert_eq!(state.owner_gun_id, None);
    assert_eq!(state.plan_epoch, 0);
}

#[test]
fn silent_module_reports_communication_and_its_mc() {
    let snap = segment();
    let mut silent = snap.modules[1].clone();
    silent.available_power = silent.rated_power;
    let state = module_state(&snap, &silent, header(1));
    assert!(!state.online);
    assert_eq!(
        state.faults,
        vec![
            v1::ModuleFault::Fan as i32,
            v1::ModuleFault::Communication as i32
        ]
    );
    assert_eq!(state.derate_reason, v1::DerateReason::Unspecified as i32);
    assert_eq!(
        state.contactor.map(|c| (c.commanded, c.feedback, c.fault)),
        Some((
            v1::ContactorState::Open as i32,
            v1::ContactorState::Closed as i32,
            true
        ))
    );
}

#[test]
fn every_module_fault_flag_has_its_bit() {
    let all = ModuleFaults {
        over_temperature: true,
        output_overvoltage: true,
        output_overcurrent: true,
        input_fault: true,
        fan_failure: true,
        short_circuit: true,
        communication_loss: true,
        internal_fault: true,
        vendor_code: 0,
    };
    assert_eq!(module_fault_bits(&all), 0xFF);
    assert_eq!(
        module_faults(&all, true),
        vec![
            v1::ModuleFault::OverTemperature,
            v1::ModuleFault::OutputOverVoltage,
            v1::ModuleFault::OutputOverCurrent,
            v1::ModuleFault::OutputShort,
            v1::ModuleFault::Fan,
            v1::ModuleFault::Internal,
        ]
    );
    assert_eq!(module_faults(&ModuleFaults::default(), true), vec![]);
}

#[test]
fn local_fault_field_by_field() {
    let snap = segment();
    let f = fault(SegmentId(1), &snap.faults[0], &origin());
    assert_eq!(f.fault_id, 0, "no latch id before the cluster");
    assert_eq!(f.code, "CONTACTOR_WELDED");
    assert_eq!(f.severity, v1::FaultSeverity::Critical as i32);
    assert_eq!(f.scope, v1::FaultScope::ModuleContactor as i32);
    assert_eq!(f.scope_id, "3");
    assert_eq!(f.reason, "feedback closed 200 ms after open");
    assert_eq!(
        f.evidence,
        vec![
            v1::Evidence {
                key: "subject".into(),
                value: Some(v1::evidence::Value::TextValue("module 3 mc".into())),
                unit: String::new(),
            },
            v1::Evidence {
                key: "closed_after_open_command".into(),
                value: Some(v1::evidence::Value::IntValue(200)),
                unit: "ms".into(),
            }
        ]
    );
    assert_eq!(f.raised_by_node_id, "cab-a");
    assert_eq!(f.raised_unix_ms, 1_700_000_001_500, "start + 1.5 s uptime");
    assert_eq!(f.clear_rule, v1::ClearRule::Operator as i32);
    assert_eq!(f.status, v1::FaultStatus::Active as i32);
    assert_eq!(f.cleared_unix_ms, None);
}

#[test]
fn fault_severity_and_clear_rule_follow_the_code() {
    let mut local = segment().faults[0].clone();
    local.code = FaultCode::MeterDisagreement;
    local.subject = "gun 1".into();
    let f = fault(SegmentId(1), &local, &origin());
    assert_eq!(f.severity, v1::FaultSeverity::Warning as i32);
    assert_eq!(f.clear_rule, v1::ClearRule::ConditionGone as i32);
    assert_eq!(
        (f.scope, f.scope_id.as_str()),
        (v1::FaultScope::Gun as i32, "1")
    );
    local.code = FaultCode::PlcSilent;
    assert_eq!(
        fault(SegmentId(1), &local, &origin()).severity,
        v1::FaultSeverity::Error as i32
    );
}

#[test]
fn fault_scopes_from_subjects() {
    let s = SegmentId(4);
    let cases = [
        ("segment 4", v1::FaultScope::Segment, "4"),
        ("segment 4 gc", v1::FaultScope::GunContactor, "4"),
        ("segment 4 mn", v1::FaultScope::TieContactor, "4"),
        ("segment 4 mc 9", v1::FaultScope::ModuleContactor, "9"),
        ("gun 7", v1::FaultScope::Gun, "7"),
        ("module 9", v1::FaultScope::Module, "9"),
        ("module 9 mc", v1::FaultScope::ModuleContactor, "9"),
        ("something else", v1::FaultScope::Segment, "4"),
        ("gun x", v1::FaultScope::Segment, "4"),
        ("", v1::FaultScope::Segment, "4"),
    ];
    for (subject, expected, id) in cases {
        assert_eq!(scope(s, subject), (expected, id.to_owned()), "{subject:?}");
    }
}

#[test]
fn fault_keys_are_one_chunk_and_distinct_per_subject() {
    let mut a = segment().faults[0].clone();
    a.code = FaultCode::ModuleOvertemp;
    a.subject = "module 3".into();
    let mut b = a.clone();
    b.subject = "module 4".into();
    assert_eq!(fault_key_id(SegmentId(1), &a), "1-module-overtemp-module-3");
    assert_eq!(fault_key_id(SegmentId(1), &b), "1-module-overtemp-module-4");
    b.subject = " weird/*subject$ ".into();
    let id = fault_key_id(SegmentId(1), &b);
    assert_eq!(id, "1-module-overtemp-weird-subject");
    assert!(!id.contains(['/', '*', '$', '?', '#']));
}

#[test]
fn every_enum_maps_to_a_specified_value() {
    use ringhub_proto::can::messages::DbcEnum;
    for &cp in CpState::ALL {
        assert_ne!(cp_state(cp), v1::CpState::Unspecified);
    }
    for &s in SlacState::ALL {
        assert_ne!(slac_state(s), v1::SlacState::Unspecified);
    }
    for &p in HlcProtocol::ALL {
        assert_ne!(hlc_protocol(p), v1::HlcProtocol::Unspecified);
    }
    for &p in HlcPhase::ALL {
        assert_ne!(hlc_phase(p), v1::HlcPhase::Unspecified);
    }
    for &a in AuthStatus::ALL {
        assert_ne!(auth_state(a), v1::AuthState::Unspecified);
    }
    for &l in LockState::ALL {
        assert_ne!(lock_state(l), v1::LockState::Unspecified);
    }
    for &i in IsolationState::ALL {
        assert_ne!(isolation_state(i), v1::IsolationState::Unspecified);
    }
    for &m in MeterSource::ALL {
        assert_ne!(meter_source(m), v1::MeterSource::Unspecified);
    }
    assert_eq!(hlc_phase(HlcPhase::Failed), v1::HlcPhase::Error);
    assert_eq!(
        hlc_phase(HlcPhase::PaymentSelection),
        v1::HlcPhase::ServiceDiscovery
    );
    assert_eq!(
        session_phase(SessionPhase::WaitingForEv),
        v1::SessionPhase::WaitingForPower
    );
    assert_eq!(
        ocpp_status(ConnectorStatus::SuspendedEvse),
        v1::OcppStatus::SuspendedEvse
    );
    assert_eq!(
        auth_method(Some(&IdToken::Contract("X".into())), AuthMode::Free),
        v1::AuthMethod::Contract
    );
    assert_eq!(
        auth_method(None, AuthMode::Ocpp),
        v1::AuthMethod::Unspecified
    );
}

#[test]
fn catalog_from_the_demo_config() {
    let config = HubConfig::demo();
    let cat = Catalog::from_config(&config, &cabinet());
    assert_eq!(cat.auth, AuthMode::Free);
    let ids: Vec<GunId> = cat.guns.keys().copied().collect();
    let expected: Vec<GunId> = config
        .segments_of(&cabinet())
        .filter_map(|s| s.gun.as_ref().map(|g| g.id))
        .collect();
    assert_eq!(ids, expected);
    assert!(!ids.is_empty());
    for (id, info) in &cat.guns {
        let gun = config.gun(*id).expect("gun in config");
        let dispenser = config
            .dispensers
            .iter()
            .find(|d| d.id == gun.dispenser)
            .expect("dispenser");
        assert_eq!(info.ocpp_charge_point_id, dispenser.ocpp_identity);
        assert_eq!(info.ocpp_connector_id, gun.connector.0);
    }
}

#[test]
fn a_condition_goes_out_with_its_code_subject_and_why() {
    let snap = segment();
    let sent: Vec<v1::FaultCondition> = snap.conditions.iter().map(fault_condition).collect();
    assert_eq!(
        sent,
        [v1::FaultCondition {
            code: "CONTACTOR_WELDED".into(),
            subject: "module 3 mc".into(),
            holds: true,
            why: "feedback still shows a contactor closed that was commanded open".into(),
        }]
    );
}
