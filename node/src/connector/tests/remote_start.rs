//! Remote start (OCPP 1.6 §5.11 RemoteStartTransaction): the node has already accepted
//! the id tag, so the gun takes it without asking, but only when it is free.

use super::*;

fn remote() -> IdToken {
    IdToken::Remote("CSMS-TAG-7".into())
}

#[test]
fn a_remote_start_on_an_idle_gun_charges_with_the_remote_token() {
    let mut rig = Rig::new(AuthPolicy::Token);
    // Whatever the gun reads itself is refused: only the remote token can carry this.
    rig.answer = |_| AuthDecision::Rejected;
    rig.run(300);
    let now = rig.now();
    rig.controllers[0]
        .handle_command(Command::RemoteStart(remote()), now)
        .unwrap();
    rig.run(100);
    let gun = rig.gun(0);
    assert_eq!(gun.status, ConnectorStatus::Preparing);
    assert_eq!(gun.token, Some(remote()));
    assert!(
        rig.config_writes
            .iter()
            .any(|w| w.segment == 0 && w.write == ConfigWrite::AuthGranted(AuthStatus::Accepted)),
        "the PLC is told at once"
    );

    rig.run(5_000);
    rig.plug(0, 90.0);
    rig.run_until(15_000, "energy flowing", |r| {
        r.first_event(|e| matches!(e, ConnectorEvent::SessionStarted { .. }))
            .is_some()
    });
    let started = rig.events.iter().find_map(|(_, e)| match e {
        ConnectorEvent::SessionStarted { token, .. } => Some(token.clone()),
        _ => None,
    });
    assert_eq!(started, Some(Some(remote())));
    assert!(
        !rig.events.iter().any(|(_, e)| matches!(
            e,
            ConnectorEvent::Authorize { .. } | ConnectorEvent::TokenExpired { .. }
        )),
        "already decided: nothing asked, nothing expired"
    );
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_remote_start_is_refused_while_charging_or_unavailable() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.charging_at_full_current();
    let now = rig.now();
    let error = rig.controllers[0]
        .handle_command(Command::RemoteStart(remote()), now)
        .unwrap_err();
    assert_eq!(
        error,
        CommandError::Busy {
            why: "a session is running"
        }
    );
    assert_eq!(error.to_string(), "the gun is busy: a session is running");
    rig.run(500);
    let gun = rig.gun(0);
    assert_eq!((gun.phase, gun.token), (SessionPhase::Charging, None));

    // Gun 1 is idle but taken out of use.
    let now = rig.now();
    rig.controllers[1]
        .handle_command(Command::SetAvailable(false), now)
        .unwrap();
    let now = rig.now();
    assert_eq!(
        rig.controllers[1].handle_command(Command::RemoteStart(remote()), now),
        Err(CommandError::Unavailable)
    );
    rig.run(100);
    assert_eq!(rig.gun(1).token, None);
    assert!(
        !rig.config_writes
            .iter()
            .any(|w| w.segment == 1 && w.write == ConfigWrite::AuthGranted(AuthStatus::Accepted))
    );
}

#[test]
fn a_remote_start_is_refused_on_a_faulted_gun_and_on_one_holding_an_accepted_card() {
    // No PLC frames at all: PLC_SILENT blocks the gun.
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.advance(1_000);
    bench.sent();
    assert_eq!(
        bench.command(Command::RemoteStart(remote())),
        Err(CommandError::Blocked(FaultCode::PlcSilent))
    );
    assert_eq!(config_writes(&bench.sent()), []);

    // A driver's card was accepted before plug-in: the gun is theirs.
    let mut bench = Bench::new(AuthPolicy::Token);
    let unplugged = info(CpState::A, AuthStatus::None, LockState::Unlocked);
    bench.hold(500, unplugged);
    let card = IdToken::Rfid("04A23B1C".into());
    bench.controller.on_rfid("04A23B1C".into(), bench.now());
    let now = bench.now();
    bench
        .controller
        .handle_auth_decision(&card, AuthDecision::Accepted, now);
    assert!(matches!(
        bench.command(Command::RemoteStart(remote())),
        Err(CommandError::Busy { .. })
    ));
    assert_eq!(bench.gun().token, Some(card));
}

#[test]
fn a_remote_start_takes_over_a_plugged_gun_whose_token_is_undecided() {
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.hold(500, info(CpState::B, AuthStatus::None, LockState::Unlocked));
    bench.controller.on_rfid("04A23B1C".into(), bench.now());
    bench.sent();
    bench.events();

    bench.command(Command::RemoteStart(remote())).unwrap();
    assert_eq!(
        config_writes(&bench.sent()),
        [ConfigWrite::AuthGranted(AuthStatus::Accepted)]
    );
    assert!(
        !bench
            .events()
            .iter()
            .any(|e| matches!(e, ConnectorEvent::Authorize { .. }))
    );
    // The card's answer comes later and is for a token the gun dropped.
    let now = bench.now();
    bench.controller.handle_auth_decision(
        &IdToken::Rfid("04A23B1C".into()),
        AuthDecision::Rejected,
        now,
    );
    assert_eq!(config_writes(&bench.sent()), []);
    assert_eq!(bench.gun().phase, SessionPhase::Authorising);

    bench.hold(
        1_000,
        info(CpState::C, AuthStatus::Accepted, LockState::Locked),
    );
    let gun = bench.gun();
    assert_eq!(gun.phase, SessionPhase::WaitingForEv);
    assert_eq!(gun.token, Some(remote()));
    assert!(matches!(
        bench.command(Command::RemoteStart(IdToken::Remote("OTHER".into()))),
        Err(CommandError::Busy { .. })
    ));
}
