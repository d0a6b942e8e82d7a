//! Deterministic tests of the charge point core: time is injected, message ids are
//! sequential from seed 0 ("0-0", "0-1", …). The helpers serve the transaction tests in
//! `transactions.rs` too.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::ocpp::messages::central_system::{AcceptedRejected, RemoteStartTransactionResponse};
use crate::ocpp::messages::charge_point::DataTransferStatus;
use crate::ocpp::rpc::SequentialIds;
use crate::ocpp::types::CiString50;

/// Seconds.
pub(super) fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A two-connector charge point, not connected.
pub(super) fn charge_point() -> ChargePoint {
    ChargePoint::new(config(), Box::new(SequentialIds::new(0)))
}

/// The configuration of a two-connector charge point.
pub(super) fn config() -> Config {
    let boot = BootNotificationRequest {
        charge_point_vendor: CiString20::new("ringhub").unwrap(),
        charge_point_model: CiString20::new("RH-360").unwrap(),
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

/// Every frame waiting to go out, as JSON.
pub(super) fn sent(cp: &mut ChargePoint) -> Vec<Value> {
    std::iter::from_fn(|| cp.poll_transmit())
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect()
}

/// The single frame waiting to go out.
pub(super) fn one(cp: &mut ChargePoint) -> Value {
    let mut frames = sent(cp);
    assert_eq!(frames.len(), 1, "{frames:?}");
    frames.remove(0)
}

/// Every event waiting.
pub(super) fn events(cp: &mut ChargePoint) -> Vec<Event> {
    std::iter::from_fn(|| cp.poll_event()).collect()
}

/// The action of a CALL frame.
pub(super) fn action(frame: &Value) -> &str {
    assert_eq!(frame[0], 2, "{frame}");
    frame[2].as_str().unwrap()
}

/// Answers the CALL `frame` with `payload`.
pub(super) fn reply(cp: &mut ChargePoint, frame: &Value, payload: Value, now: Instant) {
    cp.handle_text(&json!([3, frame[1], payload]).to_string(), now);
}

/// A BootNotification confirmation.
pub(super) fn boot_conf(status: &str, interval: i64) -> Value {
    json!({"status": status, "currentTime": "2024-05-01T12:00:00.000Z", "interval": interval})
}

/// Connects at `t0` and accepts the boot with heartbeat `interval`; drains everything.
pub(super) fn registered(cp: &mut ChargePoint, t0: Instant, interval: i64) {
    cp.handle_connected(t0);
    let boot = one(cp);
    assert_eq!(action(&boot), "BootNotification");
    reply(cp, &boot, boot_conf("Accepted", interval), t0);
    assert_eq!(cp.registration(), Registration::Accepted);
    events(cp);
}

/// A CALL from the CSMS.
pub(super) fn csms_call(
    cp: &mut ChargePoint,
    id: &str,
    action: &str,
    payload: Value,
    now: Instant,
) {
    cp.handle_text(&json!([2, id, action, payload]).to_string(), now);
}

/// An idTag.
pub(super) fn tag(t: &str) -> CiString20 {
    CiString20::new(t).unwrap()
}

#[test]
fn boot_notification_goes_first_and_alone_until_accepted() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    assert_eq!(cp.poll_timeout(), None);
    cp.handle_connected(t0);
    let boot = one(&mut cp);
    assert_eq!(
        boot,
        json!([2, "0-0", "BootNotification", {"chargePointVendor": "ringhub", "chargePointModel": "RH-360"}])
    );
    cp.authorize(tag("04E91C5A"), t0);
    cp.set_status(
        1,
        ChargePointStatus::Available,
        ChargePointErrorCode::NoError,
        StatusDetail::default(),
        t0,
    )
    .unwrap();
    assert!(sent(&mut cp).is_empty());
    reply(&mut cp, &boot, boot_conf("Accepted", 300), t0 + s(1));
    // The queued Authorize, then the status.
    let authorize = one(&mut cp);
    assert_eq!(action(&authorize), "Authorize");
    reply(
        &mut cp,
        &authorize,
        json!({"idTagInfo": {"status": "Accepted"}}),
        t0 + s(1),
    );
    let status = one(&mut cp);
    assert_eq!(
        status,
        json!([2, "0-2", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": "2024-05-01T11:59:59.000Z"}])
    );
    let events = events(&mut cp);
    assert!(matches!(
        &events[0],
        Event::Answered { request: OutgoingCall::BootNotification(_), outcome: Ok(Confirmation::BootNotification(c)) }
            if c.status == RegistrationStatus::Accepted
    ));
    assert!(matches!(
        &events[1],
        Event::Authorized { id_tag, accepted: true, info: Some(info), authority: Authority::Csms }
            if id_tag.as_str() == "04E91C5A" && info.status == crate::ocpp::messages::AuthorizationStatus::Accepted
    ));
}

#[test]
fn pending_retries_after_the_interval_and_answers_csms_calls() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    cp.handle_connected(t0);
    let boot = one(&mut cp);
    reply(&mut cp, &boot, boot_conf("Pending", 10), t0);
    assert_eq!(cp.registration(), Registration::Pending);
    assert_eq!(cp.poll_timeout(), Some(t0 + s(10)));
    // The CSMS may talk while Pending; an Authorize cannot go out, so the offline rules
    // decide it at once (an unknown idTag: refused).
    cp.authorize(tag("A"), t0 + s(1));
    assert!(matches!(
        events(&mut cp).last(),
        Some(Event::Authorized {
            accepted: false,
            authority: Authority::Local(AuthSource::OfflineUnknown),
            ..
        })
    ));
    csms_call(
        &mut cp,
        "c1",
        "GetConfiguration",
        json!({"key": ["HeartbeatInterval"]}),
        t0 + s(2),
    );
    assert_eq!(
        one(&mut cp),
        json!([3, "c1", {"configurationKey": [{"key": "HeartbeatInterval", "readonly": false, "value": "300"}]}])
    );
    cp.handle_timeout(t0 + s(9));
    assert!(sent(&mut cp).is_empty());
    cp.handle_timeout(t0 + s(10));
    let again = one(&mut cp);
    assert_eq!(
        (action(&again), &again[1]),
        ("BootNotification", &json!("0-1"))
    );
    reply(&mut cp, &again, boot_conf("Accepted", 300), t0 + s(11));
    assert!(
        sent(&mut cp).is_empty(),
        "the Authorize was decided, not kept"
    );
}

#[test]
fn rejected_without_interval_waits_the_default_retry_and_sends_nothing() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    cp.handle_connected(t0);
    let boot = one(&mut cp);
    reply(&mut cp, &boot, boot_conf("Rejected", 0), t0);
    assert_eq!(cp.registration(), Registration::Rejected);
    assert_eq!(cp.poll_timeout(), Some(t0 + s(60)));
    // A trigger is refused while Rejected.
    csms_call(
        &mut cp,
        "t1",
        "TriggerMessage",
        json!({"requestedMessage": "Heartbeat"}),
        t0,
    );
    assert_eq!(one(&mut cp), json!([3, "t1", {"status": "Rejected"}]));
    cp.handle_timeout(t0 + s(60));
    assert_eq!(action(&one(&mut cp)), "BootNotification");
}

#[test]
fn unanswered_boot_times_out_and_retries() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    cp.handle_connected(t0);
    one(&mut cp);
    assert_eq!(cp.poll_timeout(), Some(t0 + s(30)));
    cp.handle_timeout(t0 + s(30));
    assert!(matches!(
        events(&mut cp).as_slice(),
        [Event::Answered {
            request: OutgoingCall::BootNotification(_),
            outcome: Err(CallFailure::Timeout)
        }]
    ));
    assert_eq!(cp.registration(), Registration::Booting);
    assert_eq!(cp.poll_timeout(), Some(t0 + s(90)));
    cp.handle_timeout(t0 + s(90));
    assert_eq!(action(&one(&mut cp)), "BootNotification");
}

#[test]
fn heartbeat_follows_idleness_and_the_configured_interval() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 100);
    assert_eq!(cp.configuration().int(HEARTBEAT_INTERVAL), Some(100));
    assert_eq!(cp.poll_timeout(), Some(t0 + s(100)));
    // Traffic at t0+50 postpones it.
    cp.authorize(tag("A"), t0 + s(50));
    let authorize = one(&mut cp);
    reply(
        &mut cp,
        &authorize,
        json!({"idTagInfo": {"status": "Invalid"}}),
        t0 + s(51),
    );
    assert_eq!(cp.poll_timeout(), Some(t0 + s(150)));
    cp.handle_timeout(t0 + s(150));
    let heartbeat = one(&mut cp);
    assert_eq!(action(&heartbeat), "Heartbeat");
    reply(
        &mut cp,
        &heartbeat,
        json!({"currentTime": "2024-05-01T13:00:00Z"}),
        t0 + s(150),
    );
    assert_eq!(
        cp.wall_clock(t0 + s(151)).unwrap().as_str(),
        "2024-05-01T13:00:01.000Z"
    );
    assert_eq!(cp.poll_timeout(), Some(t0 + s(250)));
    // A shorter interval takes effect at once.
    csms_call(
        &mut cp,
        "c1",
        "ChangeConfiguration",
        json!({"key": "HeartbeatInterval", "value": "20"}),
        t0 + s(160),
    );
    assert_eq!(one(&mut cp), json!([3, "c1", {"status": "Accepted"}]));
    assert!(matches!(
        events(&mut cp).last(),
        Some(Event::ConfigurationChanged { key: "HeartbeatInterval", value }) if value == "20"
    ));
    assert_eq!(cp.poll_timeout(), Some(t0 + s(170)));
    cp.handle_timeout(t0 + s(170));
    assert_eq!(action(&one(&mut cp)), "Heartbeat");
}

#[test]
fn change_configuration_checks_keys_types_and_ranges() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    let cases = [
        ("NumberOfConnectors", "3", "Rejected"),
        ("SupportedFeatureProfiles", "Core", "Rejected"),
        ("GetConfigurationMaxKeys", "10", "Rejected"),
        ("NoSuchKey", "1", "NotSupported"),
        ("HeartbeatInterval", "abc", "Rejected"),
        ("HeartbeatInterval", "0", "Rejected"),
        ("HeartbeatInterval", "86401", "Rejected"),
        ("LocalPreAuthorize", "yes", "Rejected"),
        ("LocalPreAuthorize", "TRUE", "Accepted"),
        ("MeterValuesSampledData", "Voltage,Bogus", "Rejected"),
        (
            "MeterValuesSampledData",
            "Voltage, Current.Import",
            "Accepted",
        ),
        ("StopTxnSampledData", "", "Accepted"),
        ("TransactionMessageAttempts", "11", "Rejected"),
        ("transactionmessageattempts", "5", "Accepted"),
        ("MinimumStatusDuration", "15", "Accepted"),
    ];
    for (i, (key, value, status)) in cases.into_iter().enumerate() {
        let id = format!("c{i}");
        csms_call(
            &mut cp,
            &id,
            "ChangeConfiguration",
            json!({"key": key, "value": value}),
            t0,
        );
        assert_eq!(
            one(&mut cp),
            json!([3, id, {"status": status}]),
            "{key}={value}"
        );
    }
    let keys = cp.configuration();
    assert_eq!(keys.bool("LocalPreAuthorize"), Some(true));
    assert_eq!(
        keys.get("MeterValuesSampledData"),
        Some("Voltage,Current.Import")
    );
    assert_eq!(keys.int("TransactionMessageAttempts"), Some(5));
    assert_eq!(keys.int(HEARTBEAT_INTERVAL), Some(300));
    assert_eq!(keys.get("NumberOfConnectors"), Some("2"));
    let changed: Vec<_> = events(&mut cp)
        .into_iter()
        .map(|e| match e {
            Event::ConfigurationChanged { key, .. } => key,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        changed,
        [
            "LocalPreAuthorize",
            "MeterValuesSampledData",
            "StopTxnSampledData",
            "TransactionMessageAttempts",
            "MinimumStatusDuration"
        ]
    );
}

/// A journal whose writes fail from the moment `fail` is set.
struct FailingJournal {
    inner: MemoryJournal,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Journal for FailingJournal {
    fn load(&self) -> Result<JournalState, JournalError> {
        self.inner.load()
    }

    fn write(&mut self, changes: Vec<JournalWrite>) -> Result<(), JournalError> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(JournalError("disk full".into()));
        }
        self.inner.write(changes)
    }
}

#[test]
fn configuration_changes_are_stored_and_survive_a_restart() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    for (i, (key, value)) in [
        ("meterValueSampleInterval", "15"),
        ("LocalPreAuthorize", "True"),
    ]
    .into_iter()
    .enumerate()
    {
        csms_call(
            &mut cp,
            &format!("c{i}"),
            "ChangeConfiguration",
            json!({"key": key, "value": value}),
            t0,
        );
        assert_eq!(one(&mut cp)[2], json!({"status": "Accepted"}));
    }
    // Stored under the canonical name, in canonical form.
    let stored = cp.journal().load().unwrap().settings;
    assert_eq!(stored["MeterValueSampleInterval"], "15");
    assert_eq!(stored["LocalPreAuthorize"], "true");
    let restarted = ChargePoint::with_journal(
        config(),
        Box::new(SequentialIds::new(1)),
        Box::new(MemoryJournal::new(cp.journal().load().unwrap())),
    )
    .unwrap();
    assert_eq!(
        restarted.configuration().int("MeterValueSampleInterval"),
        Some(15)
    );
    assert_eq!(
        restarted.configuration().bool("LocalPreAuthorize"),
        Some(true)
    );
}

#[test]
fn a_stored_value_that_no_longer_fits_is_reported_not_applied() {
    let mut state = JournalState::default();
    state
        .settings
        .insert("HeartbeatInterval".into(), "999999".into());
    state
        .settings
        .insert("NumberOfConnectors".into(), "9".into());
    let mut cp = ChargePoint::with_journal(
        config(),
        Box::new(SequentialIds::new(1)),
        Box::new(MemoryJournal::new(state)),
    )
    .unwrap();
    assert_eq!(cp.configuration().int(HEARTBEAT_INTERVAL), Some(300));
    assert_eq!(cp.configuration().get("NumberOfConnectors"), Some("2"));
    let reported: Vec<String> = events(&mut cp)
        .into_iter()
        .map(|e| match e {
            Event::JournalFailed(error) => error.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(
        reported[0].contains("HeartbeatInterval=\"999999\""),
        "{reported:?}"
    );
}

#[test]
fn a_change_the_journal_cannot_store_is_rejected_and_not_applied() {
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let journal = FailingJournal {
        inner: MemoryJournal::default(),
        fail: fail.clone(),
    };
    let mut cp =
        ChargePoint::with_journal(config(), Box::new(SequentialIds::new(0)), Box::new(journal))
            .unwrap();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    fail.store(true, std::sync::atomic::Ordering::Relaxed);
    csms_call(
        &mut cp,
        "c1",
        "ChangeConfiguration",
        json!({"key": "HeartbeatInterval", "value": "20"}),
        t0,
    );
    assert_eq!(one(&mut cp), json!([3, "c1", {"status": "Rejected"}]));
    assert_eq!(cp.configuration().int(HEARTBEAT_INTERVAL), Some(300));
    assert!(matches!(
        events(&mut cp).last(),
        Some(Event::JournalFailed(_))
    ));
    assert!(cp.store_availability(&[0, 1, 2], false).is_err());
    assert!(cp.stored_availability().is_empty());
    fail.store(false, std::sync::atomic::Ordering::Relaxed);
    cp.store_availability(&[0, 1, 2], false).unwrap();
    cp.store_availability(&[0, 2], true).unwrap();
    assert_eq!(
        cp.stored_availability().iter().collect::<Vec<_>>(),
        [(&0, &true), (&1, &false), (&2, &true)]
    );
    assert_eq!(cp.journal().load().unwrap().availability.len(), 3);
}

#[test]
fn get_configuration_lists_every_core_key_and_names_unknown_ones() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    csms_call(&mut cp, "g1", "GetConfiguration", json!({}), t0);
    let all = one(&mut cp);
    let keys = all[2]["configurationKey"].as_array().unwrap();
    let find = |name: &str| {
        keys.iter()
            .find(|k| k["key"] == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    for name in [
        "HeartbeatInterval",
        "ConnectionTimeOut",
        "MeterValueSampleInterval",
        "ClockAlignedDataInterval",
        "MeterValuesSampledData",
        "StopTxnSampledData",
        "LocalPreAuthorize",
        "LocalAuthorizeOffline",
        "AllowOfflineTxForUnknownId",
        "AuthorizeRemoteTxRequests",
        "AuthorizationCacheEnabled",
        "LocalAuthListEnabled",
        "TransactionMessageAttempts",
        "TransactionMessageRetryInterval",
        "MinimumStatusDuration",
    ] {
        assert_eq!(find(name)["readonly"], false, "{name}");
    }
    for name in [
        "NumberOfConnectors",
        "SupportedFeatureProfiles",
        "GetConfigurationMaxKeys",
    ] {
        assert_eq!(find(name)["readonly"], true, "{name}");
    }
    assert_eq!(find("NumberOfConnectors")["value"], "2");
    assert!(all[2].get("unknownKey").is_none());
    csms_call(
        &mut cp,
        "g2",
        "GetConfiguration",
        json!({"key": ["heartbeatinterval", "Nope"]}),
        t0,
    );
    assert_eq!(
        one(&mut cp),
        json!([3, "g2", {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": false, "value": "300"}],
            "unknownKey": ["Nope"]
        }])
    );
}

#[test]
fn one_call_at_a_time_and_unknown_answers_are_counted() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    cp.authorize(tag("A"), t0);
    cp.authorize(tag("B"), t0);
    let first = one(&mut cp);
    assert_eq!(first[3]["idTag"], "A");
    assert!(sent(&mut cp).is_empty());
    // Answers naming another id change nothing.
    cp.handle_text(
        r#"[3,"nope",{"idTagInfo":{"status":"Accepted"}}]"#,
        t0 + s(1),
    );
    cp.handle_text(r#"[4,"nope","GenericError","",{}]"#, t0 + s(1));
    assert_eq!(cp.unknown_responses(), 2);
    assert!(sent(&mut cp).is_empty());
    assert!(events(&mut cp).is_empty());
    // A CALLERROR answers it; the second goes.
    cp.handle_text(
        &json!([4, first[1], "InternalError", "db down", {}]).to_string(),
        t0 + s(2),
    );
    let second = one(&mut cp);
    assert_eq!(second[3]["idTag"], "B");
    // The CSMS could not decide: the offline rules did.
    assert!(matches!(
        events(&mut cp).as_slice(),
        [Event::Authorized { id_tag, accepted: false, authority: Authority::Local(AuthSource::OfflineUnknown), .. }]
            if id_tag.as_str() == "A"
    ));
    // A late answer to the first is unknown now.
    reply(
        &mut cp,
        &first,
        json!({"idTagInfo": {"status": "Accepted"}}),
        t0 + s(3),
    );
    assert_eq!(cp.unknown_responses(), 3);
}

#[test]
fn a_call_without_answer_times_out_and_the_next_goes() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 3_600);
    let vendor = crate::ocpp::types::CiString255::new("ringhub").unwrap();
    cp.data_transfer(
        DataTransferRequest {
            vendor_id: vendor,
            message_id: None,
            data: None,
        },
        t0,
    );
    cp.authorize(tag("A"), t0);
    assert_eq!(action(&one(&mut cp)), "DataTransfer");
    assert_eq!(cp.poll_timeout(), Some(t0 + s(30)));
    cp.handle_timeout(t0 + s(29));
    assert!(sent(&mut cp).is_empty());
    cp.handle_timeout(t0 + s(30));
    assert_eq!(action(&one(&mut cp)), "Authorize");
    assert!(matches!(
        events(&mut cp).as_slice(),
        [Event::Answered {
            request: OutgoingCall::DataTransfer(_),
            outcome: Err(CallFailure::Timeout)
        }]
    ));
}

#[test]
fn bad_confirmations_fail_the_call() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 3_600);
    for _ in 0..2 {
        cp.data_transfer(
            DataTransferRequest {
                vendor_id: crate::ocpp::types::CiString255::new("ringhub").unwrap(),
                message_id: None,
                data: None,
            },
            t0,
        );
    }
    let first = one(&mut cp);
    reply(&mut cp, &first, json!({"status": "Maybe"}), t0);
    let second = one(&mut cp);
    // A CALLRESULT too broken to parse, but with the id of the call in flight.
    cp.handle_text(&format!(r#"[3,{}]"#, second[1]), t0);
    let events = events(&mut cp);
    assert!(matches!(
        &events[0],
        Event::Answered { outcome: Err(CallFailure::BadResponse(e)), .. } if e.code == ErrorCode::PropertyConstraintViolation
    ));
    assert!(matches!(
        &events[1],
        Event::Answered { outcome: Err(CallFailure::BadResponse(e)), .. } if e.code == ErrorCode::FormationViolation
    ));
    assert_eq!(cp.poll_timeout(), Some(t0 + s(3_600)));
}

#[test]
fn csms_calls_are_answered_while_our_call_is_outstanding() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    cp.authorize(tag("A"), t0);
    one(&mut cp);
    csms_call(
        &mut cp,
        "x",
        "ChangeConfiguration",
        json!({"key": "ConnectionTimeOut", "value": "90"}),
        t0,
    );
    assert_eq!(one(&mut cp), json!([3, "x", {"status": "Accepted"}]));
}

#[test]
fn malformed_csms_calls_get_the_callerror_they_earn() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    let cases = [
        (r#"[2,"m1","Reset"]"#, json!(["m1", "FormationViolation"])),
        (
            r#"[2,"m2","Frobnicate",{}]"#,
            json!(["m2", "NotImplemented"]),
        ),
        (r#"[2,"m3","Heartbeat",{}]"#, json!(["m3", "NotSupported"])),
        (r#"[2,"m4","Reset",{}]"#, json!(["m4", "ProtocolError"])),
        (
            r#"[2,"m5","Reset",{"type":"Medium"}]"#,
            json!(["m5", "PropertyConstraintViolation"]),
        ),
        (
            r#"[2,"m6","Reset",{"type":"Hard","extra":1}]"#,
            json!(["m6", "FormationViolation"]),
        ),
    ];
    for (text, expected) in cases {
        cp.handle_text(text, t0);
        let frame = one(&mut cp);
        assert_eq!(
            (frame[0].clone(), json!([frame[1], frame[2]])),
            (json!(4), expected),
            "{text}"
        );
    }
    // Without a readable id nothing can be answered.
    cp.handle_text("not json", t0);
    cp.handle_text(r#"[7,"x",{}]"#, t0);
    assert!(sent(&mut cp).is_empty());
    assert!(events(&mut cp).is_empty());
}

#[test]
fn requests_for_the_node_come_with_a_typed_responder() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    csms_call(
        &mut cp,
        "r1",
        "RemoteStartTransaction",
        json!({"connectorId": 1, "idTag": "T1"}),
        t0,
    );
    csms_call(&mut cp, "r2", "Reset", json!({"type": "Soft"}), t0);
    csms_call(
        &mut cp,
        "r3",
        "TriggerMessage",
        json!({"requestedMessage": "MeterValues"}),
        t0,
    );
    csms_call(&mut cp, "r4", "DataTransfer", json!({"vendorId": "x"}), t0);
    assert!(sent(&mut cp).is_empty());
    let mut events = events(&mut cp).into_iter();
    let Some(Event::Request(CsmsRequest::RemoteStartTransaction(request, responder))) =
        events.next()
    else {
        panic!()
    };
    assert_eq!(
        (request.connector_id, request.id_tag.as_str()),
        (Some(1), "T1")
    );
    assert_eq!(responder.id().as_str(), "r1");
    assert!(
        matches!(events.next(), Some(Event::Request(CsmsRequest::Reset(r, _))) if r.kind == crate::ocpp::messages::central_system::ResetType::Soft)
    );
    assert!(
        matches!(events.next(), Some(Event::Request(CsmsRequest::TriggerMessage(r, _))) if r.requested_message == MessageTrigger::MeterValues)
    );
    let Some(Event::Request(CsmsRequest::DataTransfer(_, data_responder))) = events.next() else {
        panic!()
    };
    assert!(cp.answer(
        responder,
        &RemoteStartTransactionResponse {
            status: AcceptedRejected::Accepted
        }
    ));
    assert_eq!(one(&mut cp), json!([3, "r1", {"status": "Accepted"}]));
    // After a reconnect the old connection's responders send nothing.
    cp.handle_disconnected();
    cp.handle_connected(t0 + s(1));
    sent(&mut cp);
    let response = crate::ocpp::messages::charge_point::DataTransferResponse {
        status: DataTransferStatus::UnknownVendorId,
        data: None,
    };
    assert!(!cp.answer(data_responder, &response));
    assert!(sent(&mut cp).is_empty());
}

#[test]
fn disconnect_fails_pending_calls_and_reconnect_boots_again() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    cp.authorize(tag("A"), t0);
    cp.authorize(tag("B"), t0);
    one(&mut cp);
    cp.handle_disconnected();
    assert_eq!(cp.registration(), Registration::Disconnected);
    assert_eq!(cp.poll_timeout(), None);
    // The Authorize calls cut by the disconnect get the offline decision.
    let failed: Vec<_> = events(&mut cp)
        .into_iter()
        .map(|e| match e {
            Event::Authorized {
                id_tag,
                accepted: false,
                authority: Authority::Local(_),
                ..
            } => id_tag,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(failed, [tag("A"), tag("B")]);
    // While down, calls fail at once and frames are ignored.
    cp.data_transfer(
        DataTransferRequest {
            vendor_id: crate::ocpp::types::CiString255::new("ringhub").unwrap(),
            message_id: None,
            data: None,
        },
        t0 + s(1),
    );
    assert!(matches!(
        events(&mut cp).as_slice(),
        [Event::Answered {
            outcome: Err(CallFailure::NotConnected),
            ..
        }]
    ));
    cp.handle_text(r#"[2,"z","Reset",{"type":"Hard"}]"#, t0 + s(1));
    assert!(sent(&mut cp).is_empty() && events(&mut cp).is_empty());
    cp.handle_connected(t0 + s(2));
    let boot = one(&mut cp);
    assert_eq!(
        (action(&boot), &boot[1]),
        ("BootNotification", &json!("0-2"))
    );
}

#[test]
fn status_is_sent_on_change_only() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    let set = |cp: &mut ChargePoint, c, st, at| {
        cp.set_status(
            c,
            st,
            ChargePointErrorCode::NoError,
            StatusDetail::default(),
            at,
        )
        .unwrap()
    };
    set(&mut cp, 0, ChargePointStatus::Available, t0);
    let first = one(&mut cp);
    assert_eq!(first[3]["connectorId"], 0);
    set(&mut cp, 0, ChargePointStatus::Available, t0 + s(1));
    reply(&mut cp, &first, json!({}), t0 + s(1));
    assert!(sent(&mut cp).is_empty());
    let detail = StatusDetail {
        info: Some(CiString50::new("isolation fault").unwrap()),
        vendor_error_code: Some(CiString50::new("IMD-3").unwrap()),
    };
    cp.set_status(
        2,
        ChargePointStatus::Faulted,
        ChargePointErrorCode::GroundFailure,
        detail,
        t0 + s(2),
    )
    .unwrap();
    assert_eq!(
        one(&mut cp)[3],
        json!({"connectorId": 2, "errorCode": "GroundFailure", "info": "isolation fault", "status": "Faulted",
               "timestamp": "2024-05-01T12:00:02.000Z", "vendorErrorCode": "IMD-3"})
    );
    assert_eq!(cp.status(2), Some(ChargePointStatus::Faulted));
    assert_eq!(
        cp.set_status(
            3,
            ChargePointStatus::Available,
            ChargePointErrorCode::NoError,
            StatusDetail::default(),
            t0
        ),
        Err(UnknownConnector {
            connector: 3,
            count: 2
        })
    );
}

#[test]
fn minimum_status_duration_holds_back_short_statuses() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 3_600);
    csms_call(
        &mut cp,
        "c",
        "ChangeConfiguration",
        json!({"key": "MinimumStatusDuration", "value": "10"}),
        t0,
    );
    sent(&mut cp);
    let set = |cp: &mut ChargePoint, st, at| {
        cp.set_status(
            1,
            st,
            ChargePointErrorCode::NoError,
            StatusDetail::default(),
            at,
        )
        .unwrap()
    };
    set(&mut cp, ChargePointStatus::Available, t0);
    assert!(sent(&mut cp).is_empty());
    assert_eq!(cp.poll_timeout(), Some(t0 + s(10)));
    cp.handle_timeout(t0 + s(10));
    let available = one(&mut cp);
    assert_eq!(available[3]["status"], "Available");
    reply(&mut cp, &available, json!({}), t0 + s(10));
    // Preparing for 5 s, then Charging: only Charging is reported, 10 s after it began.
    set(&mut cp, ChargePointStatus::Preparing, t0 + s(20));
    set(&mut cp, ChargePointStatus::Charging, t0 + s(25));
    assert_eq!(cp.poll_timeout(), Some(t0 + s(35)));
    cp.handle_timeout(t0 + s(30));
    assert!(sent(&mut cp).is_empty());
    cp.handle_timeout(t0 + s(35));
    let charging = one(&mut cp);
    assert_eq!(
        charging[3],
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": "2024-05-01T12:00:25.000Z"})
    );
    reply(&mut cp, &charging, json!({}), t0 + s(35));
    // A blip away and back is never reported.
    set(&mut cp, ChargePointStatus::SuspendedEv, t0 + s(40));
    set(&mut cp, ChargePointStatus::Charging, t0 + s(43));
    cp.handle_timeout(t0 + s(60));
    assert!(sent(&mut cp).is_empty());
    assert_eq!(cp.poll_timeout(), Some(t0 + s(35 + 3_600)));
}

#[test]
fn statuses_are_reported_again_after_a_new_registration() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 3_600);
    cp.set_status(
        1,
        ChargePointStatus::Available,
        ChargePointErrorCode::NoError,
        StatusDetail::default(),
        t0,
    )
    .unwrap();
    let status = one(&mut cp);
    reply(&mut cp, &status, json!({}), t0);
    cp.handle_disconnected();
    // Offline changes are kept and reported after the next Accepted.
    cp.set_status(
        1,
        ChargePointStatus::Preparing,
        ChargePointErrorCode::NoError,
        StatusDetail::default(),
        t0 + s(5),
    )
    .unwrap();
    registered(&mut cp, t0 + s(10), 3_600);
    let again = one(&mut cp);
    assert_eq!(
        (action(&again), &again[3]["status"]),
        ("StatusNotification", &json!("Preparing"))
    );
}

#[test]
fn trigger_message_sends_heartbeat_and_statuses() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    cp.handle_connected(t0);
    let boot = one(&mut cp);
    cp.set_status(
        1,
        ChargePointStatus::Available,
        ChargePointErrorCode::NoError,
        StatusDetail::default(),
        t0,
    )
    .unwrap();
    reply(&mut cp, &boot, boot_conf("Pending", 60), t0);
    // While Pending, triggered messages are the only ones that may go.
    csms_call(
        &mut cp,
        "t1",
        "TriggerMessage",
        json!({"requestedMessage": "StatusNotification", "connectorId": 1}),
        t0,
    );
    let frames = sent(&mut cp);
    assert_eq!(frames[0], json!([3, "t1", {"status": "Accepted"}]));
    assert_eq!(
        (action(&frames[1]), &frames[1][3]["status"]),
        ("StatusNotification", &json!("Available"))
    );
    reply(&mut cp, &frames[1], json!({}), t0);
    csms_call(
        &mut cp,
        "t2",
        "TriggerMessage",
        json!({"requestedMessage": "StatusNotification", "connectorId": 9}),
        t0,
    );
    assert_eq!(one(&mut cp), json!([3, "t2", {"status": "Rejected"}]));
    csms_call(
        &mut cp,
        "t3",
        "TriggerMessage",
        json!({"requestedMessage": "Heartbeat"}),
        t0,
    );
    let frames = sent(&mut cp);
    assert_eq!(frames[0], json!([3, "t3", {"status": "Accepted"}]));
    assert_eq!(action(&frames[1]), "Heartbeat");
}

#[test]
fn malformed_frames_from_the_csms_are_counted() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    assert_eq!(cp.rejected_frames(), 0);
    cp.handle_text("not json", t0);
    cp.handle_text(r#"[2,"m1","Reset",{"type":"Medium"}]"#, t0);
    cp.handle_text(r#"[2,"m2","Reset",{"type":"Soft"}]"#, t0);
    assert_eq!(
        cp.rejected_frames(),
        2,
        "the well-formed Reset is not counted"
    );
}
