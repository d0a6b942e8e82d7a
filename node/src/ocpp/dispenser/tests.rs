//! Deterministic tests of the dispenser: time is injected, the CSMS is text frames fed to
//! the charge point, the control task is the commands fed in and the reports drained,
//! the journal is in memory. Gun 0 is connector 1, gun 1 connector 2; the local clock
//! reads 2024-05-01T12:00:00.500Z at `t0`, the CSMS's 12:00:00.000Z at boot.

use std::time::{Duration, Instant};

use ringhub_proto::can::messages::{LockState, MeterSource};
use ringhub_proto::units::{Amps, KilowattHours, Volts};
use serde_json::{Value, json};

use super::*;
use crate::connector::FaultCode;
use crate::ocpp::charge_point::{Config, MemoryJournal};
use crate::ocpp::messages::charge_point::BootNotificationRequest;
use crate::ocpp::rpc::SequentialIds;

/// Seconds.
fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config() -> Config {
    let boot = BootNotificationRequest {
        charge_point_vendor: CiString20::new("ringhub").unwrap(),
        charge_point_model: CiString20::new("ringhub-dc").unwrap(),
        charge_point_serial_number: None,
        charge_box_serial_number: None,
        firmware_version: None,
        iccid: None,
        imsi: None,
        meter_type: None,
        meter_serial_number: None,
    };
    Config::new(boot, 2)
}

/// A dispenser over `journal`, started at `t0`.
fn dispenser_over(journal: MemoryJournal, previous: PreviousStop, t0: Instant) -> Dispenser {
    let cp =
        ChargePoint::with_journal(config(), Box::new(SequentialIds::new(0)), Box::new(journal))
            .unwrap();
    let guns = vec![(GunId(0), 1), (GunId(1), 2)];
    Dispenser::new(cp, "RH-T", guns, previous, (t0, 1_714_564_800_500))
}

/// A new dispenser, started, with both guns Available and a trusted reading each.
fn dispenser(t0: Instant) -> Dispenser {
    let mut d = dispenser_over(MemoryJournal::default(), PreviousStop::Crash, t0);
    assert!(d.start(t0).is_empty());
    d.set_readings(vec![
        reading(0, 1.0, LockState::Unlocked),
        reading(1, 2.0, LockState::Unlocked),
    ]);
    for connector in [1, 2] {
        status(&mut d, connector, ConnectorStatus::Available, t0);
    }
    reports(&mut d);
    d
}

/// A trusted PLC-meter reading of `gun` with `kwh` on the register.
fn reading(gun: u16, kwh: f64, lock: LockState) -> GunReading {
    GunReading {
        gun: GunId(gun),
        meter: Some(MeterView {
            source: MeterSource::PlcMeter,
            voltage: Volts(400.0),
            current: Amps(50.0),
            energy_register: KilowattHours(kwh),
        }),
        soc: None,
        lock,
    }
}

fn status(d: &mut Dispenser, connector: u32, status: ConnectorStatus, now: Instant) {
    command(
        d,
        DriverCommand::Status {
            connector,
            status,
            fault: None,
        },
        now,
    );
}

fn command(d: &mut Dispenser, command: DriverCommand, now: Instant) {
    d.handle_command(command, now);
    d.handle_events(now);
}

/// Connects and accepts the boot (CSMS time 12:00:00.000Z), then answers everything the
/// boot lets out (the statuses).
fn connect(d: &mut Dispenser, now: Instant) {
    connect_keeping(d, now);
    settle(d, now);
}

/// Plays a CSMS that accepts everything: answers every CALL as it goes out, until none
/// is left; returns every frame that went out.
fn settle(d: &mut Dispenser, now: Instant) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let frames = sent(d);
        if frames.is_empty() {
            return all;
        }
        for frame in &frames {
            if frame[0] != 2 {
                continue;
            }
            let answer = match frame[2].as_str().unwrap() {
                "StartTransaction" => {
                    json!({"transactionId": 1, "idTagInfo": {"status": "Accepted"}})
                }
                "Authorize" => json!({"idTagInfo": {"status": "Accepted"}}),
                "Heartbeat" => json!({"currentTime": "2024-05-01T12:00:00.000Z"}),
                _ => json!({}),
            };
            reply(d, frame, answer, now);
        }
        all.extend(frames);
    }
}

/// Every frame waiting to go out.
fn sent(d: &mut Dispenser) -> Vec<Value> {
    std::iter::from_fn(|| d.charge_point().poll_transmit())
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect()
}

/// The single frame waiting to go out.
fn one(d: &mut Dispenser) -> Value {
    let mut frames = sent(d);
    assert_eq!(frames.len(), 1, "{frames:?}");
    frames.remove(0)
}

/// Every CALL of `action` waiting to go out.
fn calls(d: &mut Dispenser, action: &str) -> Vec<Value> {
    sent(d).into_iter().filter(|f| f[2] == action).collect()
}

fn reply(d: &mut Dispenser, frame: &Value, payload: Value, now: Instant) {
    d.charge_point()
        .handle_text(&json!([3, frame[1], payload]).to_string(), now);
    d.handle_events(now);
}

/// A CALL from the CSMS with message id `id`, whose answer the test reads itself.
fn csms_call(d: &mut Dispenser, id: &str, action: &str, payload: Value, now: Instant) {
    d.charge_point()
        .handle_text(&json!([2, id, action, payload]).to_string(), now);
    d.handle_events(now);
}

/// A CALL from the CSMS; returns the answer's payload.
fn csms(d: &mut Dispenser, action: &str, payload: Value, now: Instant) -> Value {
    csms_call(d, "c", action, payload, now);
    let answer = sent(d)
        .into_iter()
        .find(|f| f[0] == 3 && f[1] == "c")
        .unwrap_or_else(|| panic!("no answer to {action}"));
    answer[2].clone()
}

fn reports(d: &mut Dispenser) -> Vec<DriverReport> {
    std::iter::from_fn(|| d.poll_report()).collect()
}

/// Starts a transaction on `connector` and has the CSMS confirm it as `transaction_id`.
fn transaction(d: &mut Dispenser, connector: u32, transaction_id: i32, now: Instant) {
    command(
        d,
        DriverCommand::StartTransaction {
            connector,
            id_tag: "CARD".into(),
            meter_start_wh: 1000,
        },
        now,
    );
    let start = one(d);
    assert_eq!(start[2], "StartTransaction");
    reply(
        d,
        &start,
        json!({"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}),
        now,
    );
    sent(d);
}

fn stopped(d: &mut Dispenser, connector: u32, now: Instant) {
    command(
        d,
        DriverCommand::StopTransaction {
            connector,
            reason: Reason::Local,
            energy_wh: 500,
        },
        now,
    );
}

#[test]
fn remote_start_picks_a_free_connector_and_hands_it_the_token() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    status(&mut d, 2, ConnectorStatus::Preparing, t0);
    // No connector named: a Preparing one before an Available one.
    let answer = csms(&mut d, "RemoteStartTransaction", json!({"idTag": "R1"}), t0);
    assert_eq!(answer, json!({"status": "Accepted"}));
    assert_eq!(
        reports(&mut d),
        [DriverReport::RemoteStart {
            gun: GunId(1),
            token: IdToken::Remote("R1".into())
        }]
    );
    // A connector that does not exist, and one that is charging: Rejected, nothing asked.
    status(&mut d, 1, ConnectorStatus::Charging, t0);
    for connector in [9, 1] {
        let answer = csms(
            &mut d,
            "RemoteStartTransaction",
            json!({"idTag": "R1", "connectorId": connector}),
            t0,
        );
        assert_eq!(
            answer,
            json!({"status": "Rejected"}),
            "connector {connector}"
        );
    }
    assert!(reports(&mut d).is_empty());
}

#[test]
fn authorize_remote_tx_requests_asks_before_the_gun_gets_the_token() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    let set = json!({"key": "AuthorizeRemoteTxRequests", "value": "true"});
    assert_eq!(
        csms(&mut d, "ChangeConfiguration", set, t0)["status"],
        "Accepted"
    );
    for (tag, verdict, expected) in [
        ("BAD", "Invalid", vec![]),
        (
            "GOOD",
            "Accepted",
            vec![DriverReport::RemoteStart {
                gun: GunId(0),
                token: IdToken::Remote("GOOD".into()),
            }],
        ),
    ] {
        let start = json!({"idTag": tag, "connectorId": 1});
        csms_call(&mut d, "r", "RemoteStartTransaction", start, t0);
        let frames = sent(&mut d);
        assert_eq!(frames[0], json!([3, "r", {"status": "Accepted"}]));
        assert_eq!(frames[1][2], "Authorize");
        assert!(
            reports(&mut d).is_empty(),
            "nothing before the Authorize answer"
        );
        reply(
            &mut d,
            &frames[1],
            json!({"idTagInfo": {"status": verdict}}),
            t0,
        );
        assert_eq!(reports(&mut d), expected, "{tag}");
    }
}

#[test]
fn a_soft_reset_stops_sessions_and_waits_for_their_stops_to_be_confirmed() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    transaction(&mut d, 1, 7, t0);
    assert_eq!(
        csms(&mut d, "Reset", json!({"type": "Soft"}), t0)["status"],
        "Accepted"
    );
    assert_eq!(
        reports(&mut d),
        [DriverReport::StopSession { gun: GunId(0) }]
    );
    assert_eq!(d.take_due_reset(t0), None, "a session runs");
    stopped(&mut d, 1, t0 + s(2));
    let stop = one(&mut d);
    assert_eq!(stop[3]["reason"], "SoftReset");
    assert_eq!(
        d.take_due_reset(t0 + s(2)),
        None,
        "its Stop is not confirmed"
    );
    reply(&mut d, &stop, json!({}), t0 + s(3));
    assert_eq!(d.take_due_reset(t0 + s(3)), Some(ResetType::Soft));
    assert_eq!(d.take_due_reset(t0 + s(3)), None, "carried out once");
}

#[test]
fn a_soft_reset_goes_ahead_after_its_grace_and_a_hard_one_at_once() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    transaction(&mut d, 1, 7, t0);
    assert_eq!(
        csms(&mut d, "Reset", json!({"type": "Soft"}), t0)["status"],
        "Accepted"
    );
    assert_eq!(
        d.poll_timeout(t0)
            .map(|at| at <= t0 + requests::SOFT_RESET_GRACE),
        Some(true)
    );
    assert_eq!(
        d.take_due_reset(t0 + requests::SOFT_RESET_GRACE - s(1)),
        None
    );
    assert_eq!(
        d.take_due_reset(t0 + requests::SOFT_RESET_GRACE),
        Some(ResetType::Soft)
    );
    assert_eq!(
        csms(&mut d, "Reset", json!({"type": "Hard"}), t0)["status"],
        "Accepted"
    );
    assert_eq!(d.take_due_reset(t0), Some(ResetType::Hard));
    // The session still ends, with the reason of the first reset that stopped it.
    stopped(&mut d, 1, t0 + s(40));
    assert_eq!(
        calls(&mut d, "StopTransaction")[0][3]["reason"],
        "SoftReset"
    );
}

#[test]
fn unlock_answers_when_the_lock_opens_or_fails_after_the_wait() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    d.set_readings(vec![
        reading(0, 1.0, LockState::Locked),
        reading(1, 2.0, LockState::Locked),
    ]);
    // Gun 0 opens its lock after a second: Unlocked.
    csms_call(
        &mut d,
        "u1",
        "UnlockConnector",
        json!({"connectorId": 1}),
        t0,
    );
    assert!(sent(&mut d).is_empty(), "the answer waits for the lock");
    assert_eq!(reports(&mut d), [DriverReport::Unlock { gun: GunId(0) }]);
    assert_eq!(d.poll_timeout(t0), Some(t0 + UNLOCK_POLL));
    d.set_readings(vec![
        reading(0, 1.0, LockState::Unlocked),
        reading(1, 2.0, LockState::Locked),
    ]);
    d.handle_timeout(t0 + s(1));
    assert_eq!(one(&mut d), json!([3, "u1", {"status": "Unlocked"}]));
    // Gun 1's lock stays closed: UnlockFailed after the wait, not before.
    csms_call(
        &mut d,
        "u2",
        "UnlockConnector",
        json!({"connectorId": 2}),
        t0 + s(1),
    );
    d.handle_timeout(t0 + s(1) + requests::UNLOCK_WAIT - Duration::from_millis(1));
    assert!(sent(&mut d).is_empty());
    d.handle_timeout(t0 + s(1) + requests::UNLOCK_WAIT);
    assert_eq!(one(&mut d), json!([3, "u2", {"status": "UnlockFailed"}]));
    // No such gun.
    let answer = csms(
        &mut d,
        "UnlockConnector",
        json!({"connectorId": 5}),
        t0 + s(20),
    );
    assert_eq!(answer, json!({"status": "NotSupported"}));
}

#[test]
fn unlock_during_a_transaction_stops_it_with_unlock_command() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    transaction(&mut d, 1, 7, t0);
    d.set_readings(vec![reading(0, 1.0, LockState::Locked)]);
    csms_call(
        &mut d,
        "u",
        "UnlockConnector",
        json!({"connectorId": 1}),
        t0,
    );
    assert_eq!(
        reports(&mut d),
        [
            DriverReport::StopSession { gun: GunId(0) },
            DriverReport::Unlock { gun: GunId(0) }
        ]
    );
    // The lock reads Unlocked only after the session ended.
    stopped(&mut d, 1, t0 + s(2));
    let stop = calls(&mut d, "StopTransaction");
    assert_eq!(stop[0][3]["reason"], "UnlockCommand");
    d.set_readings(vec![reading(0, 1.5, LockState::Unlocked)]);
    d.handle_timeout(t0 + s(3));
    assert_eq!(one(&mut d), json!([3, "u", {"status": "Unlocked"}]));
}

#[test]
fn change_availability_is_scheduled_behind_a_transaction_and_survives_a_restart() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    transaction(&mut d, 1, 7, t0);
    csms_call(
        &mut d,
        "ca",
        "ChangeAvailability",
        json!({"connectorId": 0, "type": "Inoperative"}),
        t0,
    );
    let frames = settle(&mut d, t0);
    assert!(
        frames.contains(&json!([3, "ca", {"status": "Scheduled"}])),
        "{frames:?}"
    );
    // Connector 0 reports the dispenser Unavailable at once.
    let dispenser_status = frames
        .iter()
        .rfind(|f| f[2] == "StatusNotification" && f[3]["connectorId"] == 0)
        .expect("connector 0 reported");
    assert_eq!(dispenser_status[3]["status"], "Unavailable");
    // The idle gun at once; the busy one when its transaction ends.
    assert_eq!(
        reports(&mut d),
        [DriverReport::SetAvailable {
            gun: GunId(1),
            available: false
        }]
    );
    stopped(&mut d, 1, t0 + s(1));
    assert_eq!(
        reports(&mut d),
        [DriverReport::SetAvailable {
            gun: GunId(0),
            available: false
        }]
    );

    // A restart applies it again before anything else.
    let journal = MemoryJournal::new(d.charge_point().journal().load().unwrap());
    let mut again = dispenser_over(journal, PreviousStop::Clean, t0 + s(5));
    again.start(t0 + s(5));
    let restored: Vec<_> = reports(&mut again)
        .into_iter()
        .filter(|r| matches!(r, DriverReport::SetAvailable { .. }))
        .collect();
    assert_eq!(
        restored,
        [
            DriverReport::SetAvailable {
                gun: GunId(0),
                available: false
            },
            DriverReport::SetAvailable {
                gun: GunId(1),
                available: false
            }
        ]
    );
}

#[test]
fn connector_0_is_faulted_while_a_latch_holds_the_cabinet() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    let zero = |d: &mut Dispenser, at| -> Vec<Value> {
        settle(d, at)
            .into_iter()
            .filter(|f| f[2] == "StatusNotification" && f[3]["connectorId"] == 0)
            .collect()
    };
    zero(&mut d, t0 + s(1));
    let lost = SiteFault {
        code: "CABINET_LOST".into(),
        subject: "cabinet cab-a".into(),
    };
    command(
        &mut d,
        DriverCommand::SiteFault(Some(lost.clone())),
        t0 + s(1),
    );
    let sent = zero(&mut d, t0 + s(2));
    let [faulted] = sent.as_slice() else {
        panic!("one StatusNotification: {sent:?}")
    };
    assert_eq!(faulted[3]["status"], "Faulted");
    assert_eq!(faulted[3]["errorCode"], "OtherError");
    assert_eq!(faulted[3]["vendorErrorCode"], "CABINET_LOST");
    assert_eq!(faulted[3]["info"], "cabinet cab-a");
    // Told again: nothing new. Cleared: Available.
    command(&mut d, DriverCommand::SiteFault(Some(lost)), t0 + s(2));
    assert_eq!(zero(&mut d, t0 + s(3)), Vec::<Value>::new());
    command(&mut d, DriverCommand::SiteFault(None), t0 + s(3));
    let sent = zero(&mut d, t0 + s(4));
    assert_eq!(sent.last().unwrap()[3]["status"], "Available", "{sent:?}");
    assert_eq!(sent.last().unwrap()[3]["errorCode"], "NoError");
}

#[test]
fn connector_0_is_faulted_while_the_emergency_stop_holds_a_gun() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    let fault = LocalFault {
        evidence: Vec::new(),
        code: FaultCode::EmergencyStop,
        subject: "gun 1".into(),
        detail: "emergency stop pressed".into(),
        raised_at: s(1),
    };
    command(
        &mut d,
        DriverCommand::Status {
            connector: 2,
            status: ConnectorStatus::Faulted,
            fault: Some(fault),
        },
        t0,
    );
    let zero: Vec<Value> = settle(&mut d, t0 + s(1))
        .into_iter()
        .filter(|f| f[2] == "StatusNotification" && f[3]["connectorId"] == 0)
        .collect();
    assert_eq!(zero.last().unwrap()[3]["status"], "Faulted", "{zero:?}");
    assert_eq!(zero.last().unwrap()[3]["vendorErrorCode"], "EMERGENCY_STOP");
    status(&mut d, 2, ConnectorStatus::Available, t0 + s(1));
    let zero: Vec<Value> = settle(&mut d, t0 + s(1))
        .into_iter()
        .filter(|f| f[2] == "StatusNotification" && f[3]["connectorId"] == 0)
        .collect();
    assert_eq!(zero.last().unwrap()[3]["status"], "Available", "{zero:?}");
}

#[test]
fn clock_aligned_readings_fall_on_whole_intervals_of_the_wall_clock() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    // The CSMS's clock rules once it told it: 12:00:00.000 at t0, so the next 10 s
    // boundary is at t0 + 10 s.
    connect(&mut d, t0);
    let set = json!({"key": "ClockAlignedDataInterval", "value": "10"});
    assert_eq!(
        csms(&mut d, "ChangeConfiguration", set, t0)["status"],
        "Accepted"
    );
    assert_eq!(d.poll_timeout(t0), Some(t0 + s(10)));
    d.handle_timeout(t0 + s(10));
    // One MeterValues per gun, Sample.Clock, MeterValuesAlignedData (the register).
    let frames = settle(&mut d, t0 + s(10));
    let aligned: Vec<&Value> = frames.iter().filter(|f| f[2] == "MeterValues").collect();
    let connectors: Vec<&Value> = aligned.iter().map(|f| &f[3]["connectorId"]).collect();
    assert_eq!(connectors, [&json!(1), &json!(2)], "{frames:?}");
    for frame in aligned {
        let value = &frame[3]["meterValue"][0];
        assert_eq!(value["timestamp"], "2024-05-01T12:00:10.000Z");
        assert_eq!(value["sampledValue"][0]["context"], "Sample.Clock");
        assert_eq!(
            value["sampledValue"][0]["measurand"],
            "Energy.Active.Import.Register"
        );
    }
    assert_eq!(
        d.poll_timeout(t0 + s(10)).map(|at| at > t0 + s(10)),
        Some(true)
    );
    // A timer that fires late (a loaded machine) still stamps the boundary it was due at.
    let late = t0 + s(20) + Duration::from_millis(300);
    d.handle_timeout(late);
    let frames = settle(&mut d, late);
    let stamps: Vec<&Value> = frames
        .iter()
        .filter(|f| f[2] == "MeterValues")
        .map(|f| &f[3]["meterValue"][0]["timestamp"])
        .collect();
    assert_eq!(
        stamps,
        [
            &json!("2024-05-01T12:00:20.000Z"),
            &json!("2024-05-01T12:00:20.000Z")
        ]
    );
}

#[test]
fn the_local_clock_aligns_readings_before_the_csms_tells_its_time() {
    let t0 = Instant::now();
    let journal = MemoryJournal::new(crate::ocpp::charge_point::JournalState {
        settings: [("ClockAlignedDataInterval".to_owned(), "10".to_owned())].into(),
        ..Default::default()
    });
    let mut d = dispenser_over(journal, PreviousStop::Crash, t0);
    d.start(t0);
    // …:00.500 at t0: the next 10 s boundary is 9.5 s away.
    assert_eq!(d.poll_timeout(t0), Some(t0 + Duration::from_millis(9_500)));
}

#[test]
fn periodic_samples_carry_the_configured_measurands() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    connect(&mut d, t0);
    let set = json!({"key": "MeterValuesSampledData", "value": "Voltage,Current.Import"});
    assert_eq!(
        csms(&mut d, "ChangeConfiguration", set, t0)["status"],
        "Accepted"
    );
    transaction(&mut d, 1, 7, t0);
    let due = d.poll_timeout(t0).expect("a sample is due");
    assert_eq!(due, t0 + s(60), "MeterValueSampleInterval defaults to 60 s");
    d.handle_timeout(due);
    let meter = calls(&mut d, "MeterValues");
    assert_eq!(meter[0][3]["transactionId"], 7);
    let measurands: Vec<&Value> = meter[0][3]["meterValue"][0]["sampledValue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["measurand"])
        .collect();
    assert_eq!(measurands, [&json!("Voltage"), &json!("Current.Import")]);
}

#[test]
fn a_refused_id_tag_stops_the_session_unless_configured_not_to() {
    let t0 = Instant::now();
    for (stop_on_invalid, expected) in [
        ("true", vec![DriverReport::StopSession { gun: GunId(0) }]),
        ("false", vec![]),
    ] {
        let mut d = dispenser(t0);
        connect(&mut d, t0);
        let set = json!({"key": "StopTransactionOnInvalidId", "value": stop_on_invalid});
        assert_eq!(
            csms(&mut d, "ChangeConfiguration", set, t0)["status"],
            "Accepted"
        );
        command(
            &mut d,
            DriverCommand::StartTransaction {
                connector: 1,
                id_tag: "CARD".into(),
                meter_start_wh: 0,
            },
            t0,
        );
        let start = one(&mut d);
        reply(
            &mut d,
            &start,
            json!({"transactionId": 3, "idTagInfo": {"status": "Invalid"}}),
            t0,
        );
        assert_eq!(
            reports(&mut d),
            expected,
            "StopTransactionOnInvalidId={stop_on_invalid}"
        );
        stopped(&mut d, 1, t0 + s(1));
        let reason = calls(&mut d, "StopTransaction")[0][3]["reason"].clone();
        let wanted = if stop_on_invalid == "true" {
            "DeAuthorized"
        } else {
            "Local"
        };
        assert_eq!(reason, wanted);
    }
}

#[test]
fn a_transaction_cut_by_a_restart_stops_with_the_reading_and_the_restart_reason() {
    for (previous, reason) in [
        (PreviousStop::Crash, "PowerLoss"),
        (PreviousStop::Clean, "Reboot"),
    ] {
        let t0 = Instant::now();
        let mut d = dispenser(t0);
        connect(&mut d, t0);
        transaction(&mut d, 2, 9, t0);
        // The node stops; the journal is what the next run sees.
        let journal = MemoryJournal::new(d.charge_point().journal().load().unwrap());
        let mut again = dispenser_over(journal, previous, t0 + s(10));
        assert_eq!(again.start(t0 + s(10)), [(GunId(1), 2)]);
        again.set_readings(vec![reading(1, 12.345, LockState::Unlocked)]);
        again.recover(t0 + s(10));
        connect_keeping(&mut again, t0 + s(11));
        let stop = calls(&mut again, "StopTransaction");
        assert_eq!(stop.len(), 1, "{stop:?}");
        assert_eq!(stop[0][3]["transactionId"], 9);
        assert_eq!(stop[0][3]["meterStop"], 12_345);
        assert_eq!(stop[0][3]["reason"], reason);
    }
}

/// Connects and accepts the boot, leaving what follows to be read.
fn connect_keeping(d: &mut Dispenser, now: Instant) {
    d.charge_point().handle_connected(now);
    let boot = one(d);
    reply(
        d,
        &boot,
        json!({"status": "Accepted", "currentTime": "2024-05-01T12:00:00.000Z", "interval": 3600}),
        now,
    );
}

#[test]
fn decisions_go_back_to_the_gun_that_asked() {
    let t0 = Instant::now();
    let mut d = dispenser(t0);
    // Offline, an unknown card is refused by the offline rules.
    command(
        &mut d,
        DriverCommand::Authorize {
            gun: GunId(1),
            token: IdToken::Rfid("CAFE".into()),
        },
        t0,
    );
    assert_eq!(
        reports(&mut d),
        [DriverReport::Auth(AuthResult {
            gun: GunId(1),
            token: IdToken::Rfid("CAFE".into()),
            decision: AuthDecision::Rejected
        })]
    );
    // Online, the CSMS decides.
    connect(&mut d, t0);
    command(
        &mut d,
        DriverCommand::Authorize {
            gun: GunId(0),
            token: IdToken::Rfid("CAFE".into()),
        },
        t0,
    );
    let authorize = one(&mut d);
    reply(
        &mut d,
        &authorize,
        json!({"idTagInfo": {"status": "Accepted"}}),
        t0,
    );
    assert_eq!(
        reports(&mut d),
        [DriverReport::Auth(AuthResult {
            gun: GunId(0),
            token: IdToken::Rfid("CAFE".into()),
            decision: AuthDecision::Accepted
        })]
    );
}
