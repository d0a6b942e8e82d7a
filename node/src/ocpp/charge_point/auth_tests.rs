//! Deterministic tests of authorisation in the charge point core (OCPP 1.6 §3.5, §4.1,
//! §5.4, §5.9, §5.15): who decides an idTag, and what the core keeps of it. The rules
//! themselves are tested in `authorization.rs`; these check the wiring: the CALLs from
//! the CSMS, the journal, the connection states and the confirmations that feed the
//! cache.

use std::time::Instant;

use serde_json::{Value, json};

use super::tests::{
    action, charge_point, config, csms_call, events, one, registered, reply, s, sent, tag,
};
use super::*;
use crate::ocpp::rpc::SequentialIds;

/// The one decision waiting, as (idTag, accepted, authority).
fn decision(cp: &mut ChargePoint) -> (String, bool, Authority) {
    let decided: Vec<_> = events(cp)
        .into_iter()
        .filter_map(|e| match e {
            Event::Authorized {
                id_tag,
                accepted,
                authority,
                ..
            } => Some((id_tag.to_string(), accepted, authority)),
            _ => None,
        })
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    decided.into_iter().next().unwrap()
}

/// Authorizes `id_tag` at `now` and checks the one decision that follows.
fn assert_decided(
    cp: &mut ChargePoint,
    id_tag: &str,
    now: Instant,
    accepted: bool,
    authority: Authority,
) {
    cp.authorize(tag(id_tag), now);
    assert_eq!(
        decision(cp),
        (id_tag.to_owned(), accepted, authority),
        "{id_tag}"
    );
}

/// Sends ChangeConfiguration and checks it was Accepted.
fn set(cp: &mut ChargePoint, key: &str, value: &str, now: Instant) {
    csms_call(
        cp,
        "set",
        "ChangeConfiguration",
        json!({"key": key, "value": value}),
        now,
    );
    assert_eq!(one(cp)[2], json!({"status": "Accepted"}), "{key}={value}");
}

/// Sends SendLocalList and returns its status.
fn send_list(cp: &mut ChargePoint, payload: Value, now: Instant) -> Value {
    csms_call(cp, "list", "SendLocalList", payload, now);
    one(cp)[2]["status"].clone()
}

/// A Full list with version 3: "LISTED" Accepted, "BLOCKED" Blocked.
fn full_list() -> Value {
    json!({
        "listVersion": 3,
        "updateType": "Full",
        "localAuthorizationList": [
            {"idTag": "LISTED", "idTagInfo": {"status": "Accepted"}},
            {"idTag": "BLOCKED", "idTagInfo": {"status": "Blocked"}},
        ]
    })
}

#[test]
fn online_the_csms_decides_and_its_answer_fills_the_cache() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    cp.authorize(tag("card1"), t0);
    let authorize = one(&mut cp);
    assert_eq!(action(&authorize), "Authorize");
    reply(
        &mut cp,
        &authorize,
        json!({"idTagInfo": {"status": "Accepted", "expiryDate": "2024-05-02T00:00:00Z"}}),
        t0 + s(1),
    );
    assert_eq!(decision(&mut cp), ("card1".into(), true, Authority::Csms));
    let cached = &cp.auth().cache[&TagKey::from("CARD1")];
    assert_eq!(
        cached.info.status,
        crate::ocpp::messages::AuthorizationStatus::Accepted
    );
    assert_eq!(cp.journal().load().unwrap().auth, cp.auth().clone());
    // A refusal is cached too, and refuses.
    cp.authorize(tag("card2"), t0 + s(2));
    let authorize = one(&mut cp);
    reply(
        &mut cp,
        &authorize,
        json!({"idTagInfo": {"status": "Blocked"}}),
        t0 + s(2),
    );
    assert_eq!(decision(&mut cp), ("card2".into(), false, Authority::Csms));
    assert_eq!(cp.auth().cache.len(), 2);
}

#[test]
fn local_pre_authorize_decides_listed_and_cached_tags_without_asking() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    assert_eq!(send_list(&mut cp, full_list(), t0), "Accepted");
    // Without LocalPreAuthorize the CSMS is asked even for a listed tag.
    cp.authorize(tag("listed"), t0);
    assert_eq!(action(&one(&mut cp)), "Authorize");
    cp.handle_disconnected();
    events(&mut cp);
    registered(&mut cp, t0 + s(1), 300);
    set(&mut cp, "LocalPreAuthorize", "true", t0 + s(1));
    events(&mut cp);
    cp.authorize(tag("listed"), t0 + s(2));
    assert!(sent(&mut cp).is_empty(), "nothing asked");
    assert_eq!(
        decision(&mut cp),
        (
            "listed".into(),
            true,
            Authority::Local(AuthSource::LocalList)
        )
    );
    // A listed tag that is not Accepted still goes to the CSMS.
    cp.authorize(tag("BLOCKED"), t0 + s(3));
    assert_eq!(action(&one(&mut cp)), "Authorize");
}

#[test]
fn offline_the_list_the_cache_and_unknown_tags_follow_their_keys() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    assert_eq!(send_list(&mut cp, full_list(), t0), "Accepted");
    cp.authorize(tag("CACHED"), t0);
    let authorize = one(&mut cp);
    reply(
        &mut cp,
        &authorize,
        json!({"idTagInfo": {"status": "Accepted"}}),
        t0,
    );
    events(&mut cp);
    cp.handle_disconnected();

    // LocalAuthorizeOffline is true by default: listed and cached Accepted tags charge.
    assert_decided(
        &mut cp,
        "LISTED",
        t0 + s(1),
        true,
        Authority::Local(AuthSource::LocalList),
    );
    assert_decided(
        &mut cp,
        "cached",
        t0 + s(1),
        true,
        Authority::Local(AuthSource::Cache),
    );
    assert_decided(
        &mut cp,
        "BLOCKED",
        t0 + s(1),
        false,
        Authority::Local(AuthSource::LocalList),
    );
    // An unknown tag: refused unless AllowOfflineTxForUnknownId.
    assert_decided(
        &mut cp,
        "STRANGER",
        t0 + s(1),
        false,
        Authority::Local(AuthSource::OfflineUnknown),
    );
    registered(&mut cp, t0 + s(2), 300);
    set(&mut cp, "AllowOfflineTxForUnknownId", "true", t0 + s(2));
    set(&mut cp, "LocalAuthorizeOffline", "false", t0 + s(2));
    events(&mut cp);
    cp.handle_disconnected();
    assert_decided(
        &mut cp,
        "STRANGER",
        t0 + s(3),
        true,
        Authority::Local(AuthSource::OfflineUnknown),
    );
    // Without LocalAuthorizeOffline a known tag is refused offline, even an Accepted one.
    assert_decided(
        &mut cp,
        "LISTED",
        t0 + s(3),
        false,
        Authority::Local(AuthSource::Offline),
    );
}

#[test]
fn an_authorize_without_answer_is_decided_offline() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 3_600);
    assert_eq!(send_list(&mut cp, full_list(), t0), "Accepted");
    cp.authorize(tag("LISTED"), t0);
    assert_eq!(action(&one(&mut cp)), "Authorize");
    cp.handle_timeout(t0 + s(30));
    assert_eq!(
        decision(&mut cp),
        (
            "LISTED".into(),
            true,
            Authority::Local(AuthSource::LocalList)
        )
    );
}

#[test]
fn authorize_while_booting_waits_and_pending_decides_offline() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    cp.handle_connected(t0);
    let boot = one(&mut cp);
    cp.authorize(tag("A"), t0);
    assert!(events(&mut cp).is_empty(), "booting: waits for the CSMS");
    reply(
        &mut cp,
        &boot,
        json!({"status": "Pending", "currentTime": "2024-05-01T12:00:00Z", "interval": 10}),
        t0,
    );
    assert_eq!(
        decision(&mut cp),
        (
            "A".into(),
            false,
            Authority::Local(AuthSource::OfflineUnknown)
        )
    );
}

#[test]
fn a_start_transaction_confirmation_fills_the_cache() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    let timestamp = crate::ocpp::types::DateTime::from_unix_millis(1_714_564_800_000);
    cp.start_transaction(1, tag("rfid9"), 100, timestamp, t0)
        .unwrap();
    let start = one(&mut cp);
    reply(
        &mut cp,
        &start,
        json!({"transactionId": 5, "idTagInfo": {"status": "Blocked"}}),
        t0,
    );
    assert_eq!(
        cp.auth().cache[&TagKey::from("RFID9")].info.status,
        crate::ocpp::messages::AuthorizationStatus::Blocked
    );
}

#[test]
fn local_list_calls_are_answered_stored_and_survive_a_restart() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    csms_call(&mut cp, "v0", "GetLocalListVersion", json!({}), t0);
    assert_eq!(one(&mut cp), json!([3, "v0", {"listVersion": 0}]));
    assert_eq!(send_list(&mut cp, full_list(), t0), "Accepted");
    // A Differential with an old version is refused and changes nothing.
    let stale = json!({"listVersion": 3, "updateType": "Differential",
        "localAuthorizationList": [{"idTag": "NEW", "idTagInfo": {"status": "Accepted"}}]});
    assert_eq!(send_list(&mut cp, stale, t0), "VersionMismatch");
    let diff = json!({"listVersion": 4, "updateType": "Differential",
        "localAuthorizationList": [{"idTag": "NEW", "idTagInfo": {"status": "Accepted"}},
                                   {"idTag": "BLOCKED"}]});
    assert_eq!(send_list(&mut cp, diff, t0), "Accepted");
    csms_call(&mut cp, "v1", "GetLocalListVersion", json!({}), t0);
    assert_eq!(one(&mut cp), json!([3, "v1", {"listVersion": 4}]));
    let listed: Vec<_> = cp.auth().list.keys().map(TagKey::as_str).collect();
    assert_eq!(listed, ["LISTED", "NEW"]);

    let restarted = ChargePoint::with_journal(
        config(),
        Box::new(SequentialIds::new(1)),
        Box::new(MemoryJournal::new(cp.journal().load().unwrap())),
    )
    .unwrap();
    assert_eq!(restarted.auth(), cp.auth());

    // With the list disabled: NotSupported, and version -1.
    set(&mut cp, "LocalAuthListEnabled", "false", t0);
    assert_eq!(send_list(&mut cp, full_list(), t0), "NotSupported");
    csms_call(&mut cp, "v2", "GetLocalListVersion", json!({}), t0);
    assert_eq!(one(&mut cp), json!([3, "v2", {"listVersion": -1}]));
}

#[test]
fn clear_cache_empties_it_durably() {
    let mut cp = charge_point();
    let t0 = Instant::now();
    registered(&mut cp, t0, 300);
    cp.authorize(tag("CACHED"), t0);
    let authorize = one(&mut cp);
    reply(
        &mut cp,
        &authorize,
        json!({"idTagInfo": {"status": "Accepted"}}),
        t0,
    );
    assert_eq!(cp.auth().cache.len(), 1);
    csms_call(&mut cp, "cc", "ClearCache", json!({}), t0);
    assert_eq!(one(&mut cp), json!([3, "cc", {"status": "Accepted"}]));
    assert!(cp.auth().cache.is_empty());
    assert!(cp.journal().load().unwrap().auth.cache.is_empty());
    // Offline now, the tag is unknown.
    cp.handle_disconnected();
    events(&mut cp);
    assert_decided(
        &mut cp,
        "CACHED",
        t0 + s(1),
        false,
        Authority::Local(AuthSource::OfflineUnknown),
    );
}
