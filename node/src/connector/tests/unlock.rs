//! Unlock (OCPP 1.6 §5.18 UnlockConnector): a running session is stopped and unlocks only
//! once de-energised; a lock stuck on an idle gun is released at once.

use super::*;

fn unlock_writes(rig: &Rig) -> Vec<&ConfigSent> {
    rig.config_writes
        .iter()
        .filter(|w| w.segment == 0 && w.write == ConfigWrite::Lock(LockCommand::Unlock))
        .collect()
}

#[test]
fn unlock_on_a_charging_gun_ramps_down_before_releasing_the_lock() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.charging_at_full_current();
    assert_eq!(rig.gun(0).lock, LockState::Locked);
    let asked_at = rig.world.now_ms();
    let now = rig.now();
    rig.controllers[0]
        .handle_command(Command::Unlock, now)
        .unwrap();
    rig.run_until(10_000, "the lock released", |r| {
        r.gun(0).lock == LockState::Unlocked
    });

    let writes = unlock_writes(&rig);
    assert!(!writes.is_empty());
    for write in &writes {
        assert!(
            !write.gun_energised && write.gun_current_a < 1.0,
            "unlock written at {} ms with {} A flowing",
            write.ms,
            write.gun_current_a
        );
    }
    let opened = rig
        .relay_commands
        .iter()
        .find(|(ms, c)| *ms >= asked_at && c.closed.gun == 0)
        .unwrap();
    assert!(!opened.1.emergency, "ramped down, not cut");
    assert!(opened.0 <= writes[0].ms, "opened before unlocking");
    let gun = rig.gun(0);
    assert_eq!(gun.last_stop, Some(StopReason::Remote));
    assert_eq!(gun.status, ConnectorStatus::Finishing);
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn unlock_on_an_idle_gun_with_a_stuck_lock_writes_the_unlock_command() {
    let mut bench = Bench::new(AuthPolicy::Free);
    bench.hold(500, info(CpState::A, AuthStatus::None, LockState::Locked));
    assert_eq!(bench.gun().phase, SessionPhase::Idle);
    assert_eq!(bench.gun().lock, LockState::Locked);
    bench.sent();
    bench.command(Command::Unlock).unwrap();
    assert_eq!(
        config_writes(&bench.sent()),
        [ConfigWrite::Lock(LockCommand::Unlock)]
    );
}

#[test]
fn unlock_is_refused_while_current_can_flow() {
    let mut bench = Bench::new(AuthPolicy::Free);
    // What the PLC measures: the gun contactor's feedback, the bus and the current.
    let measure = |b: &mut Bench, amps: f64, gc: u8| {
        b.feed(PlcMessage::Meter(Meter {
            source: MeterSource::PlcMeter,
            valid: true,
            voltage: Volts(400.0),
            current: Amps(amps),
            energy: KilowattHours(1.0),
        }));
        b.feed(PlcMessage::RelayFeedback(RelayFeedback {
            closed: ringhub_proto::can::messages::Contactors {
                gun: gc,
                modules: 0,
                ties: 0,
            },
            faulted: Default::default(),
            bus_voltage: Volts(if gc == 1 { 400.0 } else { 0.0 }),
            ack_sequence: b.controller.relays.sequence,
            refused: ringhub_proto::can::messages::RefusedReason::None,
        }));
    };
    measure(&mut bench, 100.0, 1);
    // A finished session whose gun contactor still reads closed with current flowing,
    // the EV still plugged in.
    let gun = bench.controller.gun.as_mut().unwrap();
    gun.state = session::State::Finished {
        reason: StopReason::Remote,
    };
    gun.lock_written = Some(LockCommand::Lock);
    bench.feed(info(CpState::C, AuthStatus::Accepted, LockState::Locked));
    assert!(matches!(
        bench.controller.gun.as_ref().unwrap().state,
        session::State::Finished { .. }
    ));
    assert_eq!(bench.command(Command::Unlock), Err(CommandError::Energised));
    assert!(!config_writes(&bench.sent()).contains(&ConfigWrite::Lock(LockCommand::Unlock)));

    // Once the contactor opens and the current is gone, the gun unlocks on its own.
    measure(&mut bench, 0.0, 0);
    assert!(config_writes(&bench.sent()).contains(&ConfigWrite::Lock(LockCommand::Unlock)));
}
