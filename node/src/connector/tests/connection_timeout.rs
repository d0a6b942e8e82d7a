//! The connection timeout (OCPP 1.6 §9.1 ConnectionTimeOut): a preparation that does not
//! reach WaitingForEv in time is cancelled, whichever came first, token or EV.

use super::*;

const TAG: &str = "04A23B1C";

fn card() -> IdToken {
    IdToken::Rfid(TAG.into())
}

fn unplugged() -> PlcMessage {
    info(CpState::A, AuthStatus::None, LockState::Unlocked)
}

fn plugged() -> PlcMessage {
    info(CpState::B, AuthStatus::None, LockState::Unlocked)
}

fn expired(events: &[ConnectorEvent]) -> bool {
    events.contains(&ConnectorEvent::TokenExpired {
        gun: GunId(0),
        token: card(),
    })
}

#[test]
fn a_token_without_a_plug_in_expires_after_the_connection_timeout() {
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.hold(1_000, unplugged());
    bench.controller.on_rfid(TAG.into(), bench.now());
    bench.hold(100, unplugged());
    assert_eq!(bench.gun().status, ConnectorStatus::Preparing);
    bench.sent();
    bench.events();

    // The token came at 1.0 s: 59.9 s later it still waits for its EV.
    bench.hold(59_800, unplugged());
    assert!(!expired(&bench.events()));
    assert_eq!(bench.gun().token, Some(card()));
    bench.sent();

    bench.hold(200, unplugged());
    let events = bench.events();
    assert!(expired(&events), "{events:?}");
    assert!(events.contains(&ConnectorEvent::StatusChanged {
        gun: GunId(0),
        status: ConnectorStatus::Available
    }));
    assert_eq!(
        config_writes(&bench.sent()),
        [ConfigWrite::AuthGranted(AuthStatus::None)]
    );
    let gun = bench.gun();
    assert_eq!((gun.status, gun.token), (ConnectorStatus::Available, None));

    // A decision that arrives late is for a token the gun no longer holds.
    let now = bench.now();
    bench
        .controller
        .handle_auth_decision(&card(), AuthDecision::Accepted, now);
    assert_eq!(config_writes(&bench.sent()), []);
    assert_eq!(bench.gun().status, ConnectorStatus::Available);
}

#[test]
fn an_ev_without_a_token_is_cancelled_after_the_connection_timeout_and_must_be_unplugged() {
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.hold(500, unplugged());
    // Plugged in at 0.5 s.
    bench.hold(59_900, plugged());
    assert_eq!(bench.gun().phase, SessionPhase::Authorising);
    assert_eq!(bench.gun().status, ConnectorStatus::Preparing);
    let mut sent = bench.sent();
    bench.events();

    bench.hold(200, plugged());
    sent.extend(bench.sent());
    let gun = bench.gun();
    assert_eq!(gun.phase, SessionPhase::Finished);
    assert_eq!(gun.last_stop, Some(StopReason::ConnectionTimeout));
    assert_eq!(gun.status, ConnectorStatus::Finishing);
    let events = bench.events();
    // No token and no energy: no session for OCPP to close, only the status.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ConnectorEvent::SessionEnded { .. })),
        "{events:?}"
    );
    assert!(events.contains(&ConnectorEvent::StatusChanged {
        gun: GunId(0),
        status: ConnectorStatus::Finishing
    }));
    assert_eq!(
        config_writes(&sent),
        [ConfigWrite::AuthGranted(AuthStatus::Rejected)],
        "the EV is told no; the lock was never commanded"
    );
    assert!(
        relay_commands(&sent)
            .iter()
            .all(|c| c.closed == Default::default())
    );

    // A card presented now does not revive the session: the EV must leave first.
    bench.controller.on_rfid(TAG.into(), bench.now());
    bench.hold(5_000, plugged());
    assert!(
        !bench
            .events()
            .iter()
            .any(|e| matches!(e, ConnectorEvent::Authorize { .. }))
    );
    assert_eq!(bench.gun().status, ConnectorStatus::Finishing);

    bench.hold(200, unplugged());
    let gun = bench.gun();
    assert_eq!(
        (gun.phase, gun.status),
        (SessionPhase::Idle, ConnectorStatus::Available)
    );
}

#[test]
fn a_plugged_ev_whose_token_is_never_decided_ends_with_connection_timeout() {
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.hold(500, unplugged());
    bench.hold(1_000, plugged());
    bench.controller.on_rfid(TAG.into(), bench.now());
    // Plugged in at 0.5 s, the card at 1.5 s: the clock runs from the plug-in.
    bench.hold(59_200, plugged());
    let ended = bench.events().into_iter().find_map(|e| match e {
        ConnectorEvent::SessionEnded { reason, energy, .. } => Some((reason, energy)),
        _ => None,
    });
    // The node deletes the pending token on it; no transaction was ever started.
    assert_eq!(
        ended,
        Some((StopReason::ConnectionTimeout, KilowattHours(0.0)))
    );
    // The answer comes too late to let the PLC go ahead.
    let now = bench.now();
    bench.sent();
    bench
        .controller
        .handle_auth_decision(&card(), AuthDecision::Accepted, now);
    assert!(
        !config_writes(&bench.sent()).contains(&ConfigWrite::AuthGranted(AuthStatus::Accepted))
    );
    assert_eq!(bench.gun().phase, SessionPhase::Finished);
}

#[test]
fn a_token_accepted_before_the_connection_timeout_prevents_it() {
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.hold(500, unplugged());
    bench.hold(50_000, plugged());
    bench.controller.on_rfid(TAG.into(), bench.now());
    let now = bench.now();
    bench
        .controller
        .handle_auth_decision(&card(), AuthDecision::Accepted, now);
    // The PLC confirms and the lock holds; the EV takes its time to reach precharge.
    bench.hold(
        30_000,
        info(CpState::C, AuthStatus::Accepted, LockState::Locked),
    );
    let gun = bench.gun();
    assert_eq!(gun.phase, SessionPhase::WaitingForEv, "{gun:?}");
    assert_eq!(gun.last_stop, None);
    assert!(
        !bench
            .events()
            .iter()
            .any(|e| matches!(e, ConnectorEvent::SessionEnded { .. }))
    );
}

#[test]
fn a_shorter_connection_timeout_applies_to_a_running_preparation() {
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.hold(500, unplugged());
    bench.controller.on_rfid(TAG.into(), bench.now());
    bench.hold(10_000, unplugged());
    assert!(!expired(&bench.events()));

    // Measured from when the preparation began, 10 s ago: over at once.
    bench
        .command(Command::SetConnectionTimeout(Duration::from_secs(5)))
        .unwrap();
    assert!(expired(&bench.events()));
    assert_eq!(
        bench.controller.setup().timing.connection_timeout,
        Duration::from_secs(5)
    );

    // The next preparation gets the new timeout.
    bench.controller.on_rfid(TAG.into(), bench.now());
    bench.hold(4_900, unplugged());
    assert!(!expired(&bench.events()));
    bench.hold(200, unplugged());
    assert!(expired(&bench.events()));
}

#[test]
fn a_restored_token_gets_a_fresh_connection_timeout() {
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.hold(500, unplugged());
    bench.controller.on_rfid(TAG.into(), bench.now());
    bench.hold(40_000, unplugged());
    // The node restarted and replays what it persisted.
    let now = bench.now();
    bench
        .controller
        .restore_token(card(), Some(AuthDecision::Accepted), now);
    // 99.9 s after the card, 59.9 s after the restore.
    bench.hold(59_900, unplugged());
    assert!(!expired(&bench.events()));
    assert_eq!(bench.gun().status, ConnectorStatus::Preparing);
    bench.hold(200, unplugged());
    assert!(expired(&bench.events()));
    assert_eq!(bench.gun().status, ConnectorStatus::Available);
}
