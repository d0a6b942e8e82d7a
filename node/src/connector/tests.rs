//! The controller against the simulator's pure world, in lock-step simulated time: the
//! same frames a real PLC sends, no sockets, no clock. Plus hand-fed frames for paths
//! the simulator cannot produce on demand.

use std::time::{Duration, Instant};

use ringhub_proto::can::messages::{
    AuthStatus, ChargeInfo, ConfigWrite, CpState, IsolationState, LockCommand, LockState, Meter,
    MeterSource, PlcMessage, RelayCommand, RelayFeedback,
};
use ringhub_proto::can::{CanMessage, PlcSlot};
use ringhub_proto::config::{CabinetId, GunId, HubConfig};
use ringhub_proto::units::{Amps, Celsius, KilowattHours, Volts};
use ringhub_sim::world::{Action, ActionReply, EvSpec, FaultKind, FaultSpec, World};

use super::*;

mod connection_timeout;
mod islands;
mod remote_start;
mod unlock;

/// The controllers of cab-a (segments 0 and 1) wired to a simulated hub.
struct Rig {
    world: World,
    cabinet: CabinetId,
    controllers: Vec<SegmentController>,
    t0: Instant,
    events: Vec<(u64, ConnectorEvent)>,
    /// Relay commands sent, with their time.
    relay_commands: Vec<(u64, RelayCommand)>,
    /// Config writes sent, with what the world's gun looked like as they went out.
    config_writes: Vec<ConfigSent>,
    /// How the "authorisation source" answers.
    answer: fn(&IdToken) -> AuthDecision,
}

/// A config write a controller sent, and the ground truth of its gun at that moment.
struct ConfigSent {
    ms: u64,
    /// Index of the controller that sent it.
    segment: usize,
    write: ConfigWrite,
    /// The gun contactor was closed onto the EV.
    gun_energised: bool,
    gun_current_a: f64,
}

fn setups(config: &HubConfig, auth: AuthPolicy) -> Vec<SegmentSetup> {
    let cabinet = &config.cabinets[0].id;
    config
        .segments_of(cabinet)
        .map(|segment| SegmentSetup::from_config(segment, auth, Timing::default()))
        .collect()
}

fn accept_all(_: &IdToken) -> AuthDecision {
    AuthDecision::Accepted
}

impl Rig {
    fn new(auth: AuthPolicy) -> Self {
        let config = HubConfig::demo();
        let t0 = Instant::now();
        let controllers = setups(&config, auth)
            .into_iter()
            .map(|s| SegmentController::new(s, t0))
            .collect();
        Rig {
            world: World::new(&config, 7),
            cabinet: config.cabinets[0].id.clone(),
            controllers,
            t0,
            events: Vec::new(),
            relay_commands: Vec::new(),
            config_writes: Vec::new(),
            answer: accept_all,
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.world.now_ms())
    }

    fn step(&mut self) {
        let now = self.now();
        for controller in &mut self.controllers {
            controller.handle_timeout(now);
        }
        self.drain(now);
        self.world.step();
        let now = self.now();
        while let Some(transmit) = self.world.poll_transmit() {
            if transmit.cabinet != self.cabinet {
                continue;
            }
            let message = CanMessage::decode(&transmit.frame).unwrap();
            for controller in &mut self.controllers {
                controller.handle_frame(&message, now);
            }
            self.drain(now);
        }
    }

    /// Carries the controllers' frames to the world and their events to the log,
    /// answering authorisation requests.
    fn drain(&mut self, now: Instant) {
        let ms = self.world.now_ms();
        for i in 0..self.controllers.len() {
            while let Some(message) = self.controllers[i].poll_transmit() {
                if let CanMessage::Plc {
                    message: PlcMessage::RelayCommand(command),
                    ..
                } = message
                {
                    self.relay_commands.push((ms, command));
                }
                if let CanMessage::Plc {
                    message: PlcMessage::ConfigWrite(write),
                    ..
                } = message
                {
                    let id = self.controllers[i].setup().gun.map(|g| g.id.0);
                    let gun = self
                        .world
                        .state()
                        .guns
                        .into_iter()
                        .find(|g| Some(g.id) == id);
                    self.config_writes.push(ConfigSent {
                        ms,
                        segment: i,
                        write,
                        gun_energised: gun.as_ref().is_some_and(|g| g.energised),
                        gun_current_a: gun.map_or(0.0, |g| g.current_a),
                    });
                }
                self.world
                    .handle_frame(&self.cabinet, message.encode().unwrap());
            }
            while let Some(event) = self.controllers[i].poll_event() {
                if let ConnectorEvent::Authorize { token, .. } = &event {
                    let decision = (self.answer)(token);
                    self.controllers[i].handle_auth_decision(&token.clone(), decision, now);
                }
                self.events.push((ms, event));
            }
        }
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms / World::STEP_MS {
            self.step();
        }
    }

    fn run_until(&mut self, limit_ms: u64, what: &str, condition: impl Fn(&Rig) -> bool) {
        let deadline = self.world.now_ms() + limit_ms;
        while !condition(self) {
            assert!(
                self.world.now_ms() < deadline,
                "timed out waiting for {what} at {} ms; events: {:#?}",
                self.world.now_ms(),
                self.events
            );
            self.step();
        }
    }

    fn gun(&self, s: usize) -> GunSnapshot {
        self.controllers[s].snapshot(self.now()).gun.unwrap()
    }

    fn plug(&mut self, gun: u16, target_soc: f64) {
        let spec = EvSpec {
            gun,
            battery_v: 400.0,
            soc: 50.0,
            max_current_a: 200.0,
            target_soc,
            ev_mac: Some("02:00:00:00:00:0A".into()),
            emaid: None,
            capacity_kwh: 10.0,
        };
        self.world.apply(Action::Plug(spec)).unwrap();
    }

    /// Plugs an EV into gun 0 and runs until it takes its full 200 A.
    fn charging_at_full_current(&mut self) {
        self.run(300);
        self.plug(0, 90.0);
        self.run_until(15_000, "full current", |r| {
            r.gun(0).meter.is_some_and(|m| m.current.0 > 190.0)
        });
    }

    fn inject(&mut self, kind: FaultKind, target: u16, contactor: Option<&str>) -> u64 {
        let spec = FaultSpec {
            kind,
            target,
            contactor: contactor.map(str::to_owned),
        };
        let ActionReply::FaultInjected { id } =
            self.world.apply(Action::InjectFault(spec)).unwrap()
        else {
            panic!("no fault id")
        };
        id
    }

    fn statuses(&self, gun: u16) -> Vec<ConnectorStatus> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                ConnectorEvent::StatusChanged { gun: g, status } if *g == GunId(gun) => {
                    Some(*status)
                }
                _ => None,
            })
            .collect()
    }

    fn first_event(&self, pick: impl Fn(&ConnectorEvent) -> bool) -> Option<u64> {
        self.events.iter().find(|(_, e)| pick(e)).map(|(ms, _)| *ms)
    }

    fn violations(&self) -> Vec<String> {
        self.world
            .violations()
            .iter()
            .map(|v| format!("{} {}: {}", v.invariant, v.subject, v.detail))
            .collect()
    }

    fn faults(&self, s: usize) -> Vec<FaultCode> {
        self.controllers[s]
            .snapshot(self.now())
            .faults
            .iter()
            .map(|f| f.code)
            .collect()
    }
}

#[test]
fn a_free_vend_session_runs_from_plug_in_to_unplug_without_violations() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(500);
    rig.plug(0, 51.0);
    let plugged_at = rig.world.now_ms();
    rig.run_until(15_000, "charging", |r| {
        r.gun(0).status == ConnectorStatus::Charging
    });
    let preparing = rig
        .first_event(|e| {
            matches!(
                e,
                ConnectorEvent::StatusChanged {
                    status: ConnectorStatus::Preparing,
                    ..
                }
            )
        })
        .unwrap();
    assert!(
        preparing - plugged_at <= 100,
        "Preparing {} ms after plug-in",
        preparing - plugged_at
    );
    rig.run_until(2_000, "full current", |r| {
        r.gun(0).meter.is_some_and(|m| m.current.0 > 190.0)
    });
    let gun = rig.gun(0);
    assert_eq!(gun.meter.unwrap().source, MeterSource::PlcMeter);
    assert!(gun.power.0 > 75.0, "{gun:?}");
    rig.run_until(120_000, "the EV to finish", |r| {
        r.gun(0).phase == SessionPhase::Finished
    });
    rig.run_until(2_000, "unlock", |r| r.gun(0).lock == LockState::Unlocked);
    rig.world.apply(Action::Unplug { gun: 0 }).unwrap();
    rig.run_until(2_000, "available", |r| {
        r.gun(0).status == ConnectorStatus::Available
    });

    assert_eq!(rig.violations(), Vec::<String>::new());
    let started = rig
        .first_event(|e| matches!(e, ConnectorEvent::SessionStarted { .. }))
        .unwrap();
    let ended = rig.events.iter().find_map(|(_, e)| match e {
        ConnectorEvent::SessionEnded { reason, energy, .. } => Some((*reason, *energy)),
        _ => None,
    });
    let (reason, energy) = ended.unwrap();
    assert_eq!(reason, StopReason::EvStopped);
    assert!(energy.0 > 0.09, "1 % of a 10 kWh pack: {energy:?}");
    assert!(started > preparing);
    assert_eq!(
        rig.statuses(0),
        [
            ConnectorStatus::Available,
            ConnectorStatus::Preparing,
            ConnectorStatus::Charging,
            ConnectorStatus::Finishing,
            ConnectorStatus::Available
        ]
    );
    // Ties to other cabinets stay open: no relay command ever closed one.
    assert!(rig.relay_commands.iter().all(|(_, c)| c.closed.ties == 0));
    assert!(rig.controllers[0].snapshot(rig.now()).faults.is_empty());
}

#[test]
fn an_rfid_card_presented_before_plug_in_authorises_the_session() {
    let mut rig = Rig::new(AuthPolicy::Token);
    rig.answer = |token| {
        if matches!(token, IdToken::Rfid(uid) if uid == "04A23B1C") {
            AuthDecision::Accepted
        } else {
            AuthDecision::Rejected
        }
    };
    rig.run(300);
    rig.world
        .apply(Action::Rfid {
            gun: 0,
            id_tag: "04A23B1C".into(),
        })
        .unwrap();
    rig.run(100);
    assert_eq!(
        rig.gun(0).status,
        ConnectorStatus::Preparing,
        "a presented token is Preparing before plug-in"
    );
    rig.plug(0, 90.0);
    rig.run_until(15_000, "energy flowing", |r| {
        r.first_event(|e| matches!(e, ConnectorEvent::SessionStarted { .. }))
            .is_some()
    });
    let started = rig.events.iter().find_map(|(_, e)| match e {
        ConnectorEvent::SessionStarted { token, .. } => Some(token.clone()),
        _ => None,
    });
    assert_eq!(started, Some(Some(IdToken::Rfid("04A23B1C".into()))));
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_rejected_token_never_energises_the_gun() {
    let mut rig = Rig::new(AuthPolicy::Token);
    rig.answer = |_| AuthDecision::Rejected;
    rig.run(300);
    rig.plug(0, 90.0);
    rig.run_until(10_000, "the session to end", |r| {
        r.gun(0).last_stop == Some(StopReason::Rejected)
    });
    rig.run(1_000);
    assert!(
        rig.relay_commands.iter().all(|(_, c)| c.closed.gun == 0),
        "GC never commanded"
    );
    let asked = rig.events.iter().find_map(|(_, e)| match e {
        ConnectorEvent::Authorize { token, .. } => Some(token.clone()),
        _ => None,
    });
    assert_eq!(
        asked,
        Some(IdToken::EvMac("02000000000A".into())),
        "AutoCharge: the EV's MAC is the token"
    );
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_lock_failure_stops_before_energising_and_clears_when_the_ev_leaves() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    rig.inject(FaultKind::LockFailure, 0, None);
    rig.plug(0, 90.0);
    rig.run_until(10_000, "lock failure", |r| {
        r.faults(0).contains(&FaultCode::LockFailure)
    });
    assert_eq!(rig.gun(0).status, ConnectorStatus::Faulted);
    rig.run(1_000);
    assert!(
        rig.relay_commands.iter().all(|(_, c)| c.closed.gun == 0),
        "never energised"
    );
    rig.world.apply(Action::Unplug { gun: 0 }).unwrap();
    rig.run_until(3_000, "available again", |r| {
        r.gun(0).status == ConnectorStatus::Available
    });
    assert!(rig.faults(0).is_empty());
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_welded_gun_contactor_takes_the_segment_out_of_service_until_cleared() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    rig.plug(0, 90.0);
    rig.run_until(15_000, "charging", |r| {
        r.gun(0).status == ConnectorStatus::Charging
    });
    rig.inject(FaultKind::ContactorWeld, 0, Some("gc"));
    {
        let now = rig.now();
        rig.controllers[0].handle_command(Command::StopSession, now)
    }
    .unwrap();
    rig.run_until(3_000, "the weld", |r| {
        r.faults(0).contains(&FaultCode::ContactorWelded)
    });
    let snapshot = rig.controllers[0].snapshot(rig.now());
    assert!(snapshot.out_of_service);
    assert_eq!(snapshot.gun.unwrap().status, ConnectorStatus::Faulted);
    // The latch carries what tripped it: how long the feedback stayed closed, against
    // what limit, and the bus voltage then.
    let weld = snapshot
        .faults
        .iter()
        .find(|f| f.code == FaultCode::ContactorWelded)
        .expect("the weld");
    let keys: Vec<&str> = weld.evidence.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "closed_after_open_command",
            "release_timeout",
            "bus_voltage"
        ]
    );
    assert!(weld.evidence[0].value >= weld.evidence[1].value, "{weld:?}");
    let error = {
        let now = rig.now();
        rig.controllers[0].handle_command(Command::ClearFault(FaultCode::ContactorWelded), now)
    }
    .unwrap_err();
    assert!(
        matches!(error, CommandError::ConditionHolds { .. }),
        "{error}"
    );
    rig.run(2_000);
    assert!(
        rig.controllers[0].snapshot(rig.now()).out_of_service,
        "stays out of service"
    );
    assert!(
        rig.violations().is_empty(),
        "ramped down before opening, never re-commanded: {:?}",
        rig.violations()
    );
}

#[test]
fn the_plan_budget_caps_the_current_offered_to_the_ev() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.charging_at_full_current();
    let now = rig.now();
    rig.controllers[0]
        .handle_command(Command::SetBudget(Some(Kilowatts(40.0))), now)
        .expect("budget");
    rig.run_until(3_000, "the current to follow the budget", |r| {
        r.gun(0)
            .meter
            .is_some_and(|m| m.current.0 * m.voltage.0 <= 40_500.0)
    });
    let offered = rig.gun(0).offered_current.0;
    let voltage = rig.gun(0).meter.expect("meter").voltage.0;
    assert!(
        offered * voltage.max(150.0) <= 40_100.0,
        "{offered} A at {voltage} V"
    );
    let now = rig.now();
    rig.controllers[0]
        .handle_command(Command::SetBudget(None), now)
        .expect("budget");
    rig.run_until(5_000, "full current again", |r| {
        r.gun(0).meter.is_some_and(|m| m.current.0 > 190.0)
    });
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_weld_restored_from_the_record_keeps_the_gun_from_charging() {
    let mut rig = Rig::new(AuthPolicy::Free);
    let weld = |subject: &str| LocalFault {
        evidence: Vec::new(),
        code: FaultCode::ContactorWelded,
        subject: subject.into(),
        detail: "restored".into(),
        raised_at: Duration::ZERO,
    };
    let now = rig.now();
    assert!(
        !rig.controllers[0].restore_fault(&weld("segment 2 gc"), now),
        "not this segment's"
    );
    assert!(
        !rig.controllers[0].restore_fault(&weld("segment 10 gc"), now),
        "segment 10 is not segment 1"
    );
    assert!(rig.controllers[0].restore_fault(&weld("segment 0 gc"), now));
    assert!(rig.controllers[0].snapshot(now).out_of_service);
    rig.run(300);
    rig.plug(0, 90.0);
    rig.run(5_000);
    assert_eq!(rig.gun(0).status, ConnectorStatus::Faulted);
    assert!(
        !rig.world.state().guns.iter().any(|g| g.energised),
        "never energised while the weld is latched"
    );
    // No contactor is stuck in truth: the operator's clear is accepted.
    let now = rig.now();
    rig.controllers[0]
        .handle_command(Command::ClearFault(FaultCode::ContactorWelded), now)
        .expect("cleared");
    assert!(!rig.controllers[0].snapshot(now).out_of_service);
}

#[test]
fn a_tripped_module_leaves_the_island_and_the_session_goes_on() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.charging_at_full_current();
    rig.inject(FaultKind::ModuleTrip, 0, None);
    rig.run_until(2_000, "module 0 out", |r| {
        r.controllers[0].snapshot(r.now()).modules[0].out_of_service
    });
    rig.run(1_000);
    let snapshot = rig.controllers[0].snapshot(rig.now());
    let hot = snapshot
        .faults
        .iter()
        .find(|f| f.code == FaultCode::ModuleOvertemp)
        .expect("overtemperature latched");
    let temperature = &hot.evidence[0];
    assert_eq!(
        (temperature.key.as_str(), temperature.unit.as_str()),
        ("temperature", "dC")
    );
    assert!(temperature.value > 0, "{temperature:?}");
    // Active and holding: what the leader's clear rule reads.
    let condition = snapshot
        .conditions
        .iter()
        .find(|c| c.code == FaultCode::ModuleOvertemp)
        .expect("its condition");
    assert!(condition.holds, "{condition:?}");
    assert!(
        !snapshot.mc[0].1.commanded,
        "the tripped module's contactor is opened"
    );
    let gun = snapshot.gun.unwrap();
    assert_eq!(gun.phase, SessionPhase::Charging);
    assert!(
        gun.offered_current.0 < 150.0,
        "one 50 kW module left: {gun:?}"
    );
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_failed_meter_falls_back_to_the_shunt() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    rig.plug(0, 90.0);
    rig.run_until(15_000, "charging", |r| {
        r.gun(0).status == ConnectorStatus::Charging
    });
    rig.inject(FaultKind::MeterFailure, 0, None);
    rig.run(1_000);
    assert!(rig.faults(0).contains(&FaultCode::MeterFailure));
    let gun = rig.gun(0);
    assert_eq!(gun.meter.unwrap().source, MeterSource::Shunt);
    assert_eq!(
        gun.phase,
        SessionPhase::Charging,
        "charging goes on on the shunt"
    );
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_meter_disagreement_is_flagged() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    rig.plug(0, 90.0);
    rig.run_until(15_000, "charging", |r| {
        r.gun(0).meter.is_some_and(|m| m.current.0 > 100.0)
    });
    rig.inject(FaultKind::MeterDisagreement, 0, None);
    rig.run_until(3_000, "disagreement", |r| {
        r.faults(0).contains(&FaultCode::MeterDisagreement)
    });
    assert_eq!(
        rig.gun(0).meter.unwrap().source,
        MeterSource::PlcMeter,
        "the calibrated meter stays trusted"
    );
}

#[test]
fn a_silent_plc_stops_the_session_safely() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.charging_at_full_current();
    rig.inject(FaultKind::PlcSilence, 0, None);
    rig.run_until(2_000, "PLC silent", |r| {
        r.faults(0).contains(&FaultCode::PlcSilent)
    });
    let snapshot = rig.controllers[0].snapshot(rig.now());
    let evidence: Vec<(&str, i64)> = snapshot.faults[0]
        .evidence
        .iter()
        .map(|e| (e.key.as_str(), e.value))
        .collect();
    assert!(
        matches!(evidence.as_slice(), [("plc_silent_for", silent), ("limit", limit)] if silent >= limit),
        "{evidence:?}"
    );
    rig.run_until(3_000, "gun contactor open", |r| {
        r.world.state().segments[0]
            .contactors
            .iter()
            .all(|c| !c.closed)
    });
    assert_eq!(rig.gun(0).status, ConnectorStatus::Faulted);
    assert!(
        rig.violations().is_empty(),
        "ramped down on module current: {:?}",
        rig.violations()
    );
}

#[test]
fn an_operator_disable_makes_the_gun_unavailable() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    {
        let now = rig.now();
        rig.controllers[0].handle_command(Command::SetAvailable(false), now)
    }
    .unwrap();
    rig.run(100);
    assert_eq!(rig.gun(0).status, ConnectorStatus::Unavailable);
    rig.plug(0, 90.0);
    rig.run(5_000);
    assert!(
        rig.relay_commands
            .iter()
            .all(|(_, c)| c.closed.gun == 0 && c.closed.modules == 0)
    );
    assert!(matches!(
        {
            let now = rig.now();
            rig.controllers[1].handle_command(Command::ClearFault(FaultCode::ContactorWelded), now)
        },
        Err(CommandError::NotActive(FaultCode::ContactorWelded))
    ));
}

/// A controller fed by hand, for paths the simulator does not produce.
struct Bench {
    controller: SegmentController,
    t0: Instant,
    ms: u64,
}

impl Bench {
    fn new(auth: AuthPolicy) -> Self {
        let t0 = Instant::now();
        let setup = setups(&HubConfig::demo(), auth).remove(0);
        Bench {
            controller: SegmentController::new(setup, t0),
            t0,
            ms: 0,
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.ms)
    }

    fn feed(&mut self, message: PlcMessage) {
        let now = self.now();
        self.controller.handle_frame(
            &CanMessage::Plc {
                slot: PlcSlot::new(0).unwrap(),
                message,
            },
            now,
        );
    }

    fn sent(&mut self) -> Vec<CanMessage> {
        std::iter::from_fn(|| self.controller.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<ConnectorEvent> {
        std::iter::from_fn(|| self.controller.poll_event()).collect()
    }

    /// Runs `ms` with the PLC repeating `frame` every 100 ms, as a live PLC does, so
    /// it never counts as silent.
    fn hold(&mut self, ms: u64, frame: PlcMessage) {
        for _ in 0..ms / 100 {
            self.feed(frame);
            self.advance(100);
        }
    }

    fn command(&mut self, command: Command) -> Result<(), CommandError> {
        let now = self.now();
        self.controller.handle_command(command, now)
    }

    fn gun(&self) -> GunSnapshot {
        self.controller.snapshot(self.now()).gun.unwrap()
    }

    fn advance(&mut self, ms: u64) {
        for _ in 0..ms / 10 {
            self.ms += 10;
            let now = self.now();
            self.controller.handle_timeout(now);
        }
    }
}

fn info(cp: CpState, auth: AuthStatus, lock: LockState) -> PlcMessage {
    PlcMessage::ChargeInfo(ChargeInfo {
        cp,
        auth_pending: false,
        auth,
        lock,
        isolation: IsolationState::Valid,
        emergency_stop: false,
        connector_overtemp: false,
        rcd_trip: false,
        plc_fault: false,
        connector_temperature: Celsius(30.0),
    })
}

fn config_writes(sent: &[CanMessage]) -> Vec<ConfigWrite> {
    sent.iter()
        .filter_map(|m| match m {
            CanMessage::Plc {
                message: PlcMessage::ConfigWrite(w),
                ..
            } => Some(*w),
            _ => None,
        })
        .collect()
}

fn relay_commands(sent: &[CanMessage]) -> Vec<RelayCommand> {
    sent.iter()
        .filter_map(|m| match m {
            CanMessage::Plc {
                message: PlcMessage::RelayCommand(c),
                ..
            } => Some(*c),
            _ => None,
        })
        .collect()
}

#[test]
fn current_that_will_not_fall_is_cut_as_a_latched_emergency() {
    let mut bench = Bench::new(AuthPolicy::Free);
    // Force the state the simulator reaches in a session, then stop with current stuck.
    let gun = bench.controller.gun.as_mut().unwrap();
    gun.state = session::State::RampingDown {
        since: bench.t0,
        reason: StopReason::Remote,
    };
    bench
        .controller
        .relays
        .set(controller::Which::Gun, true, bench.t0);
    let stuck = |b: &mut Bench| {
        let meter = Meter {
            source: MeterSource::PlcMeter,
            valid: true,
            voltage: Volts(400.0),
            current: Amps(100.0),
            energy: KilowattHours(1.0),
        };
        b.feed(PlcMessage::Meter(meter));
        b.feed(info(CpState::C, AuthStatus::Accepted, LockState::Locked));
        b.feed(PlcMessage::RelayFeedback(RelayFeedback {
            closed: ringhub_proto::can::messages::Contactors {
                gun: 1,
                modules: 3,
                ties: 0,
            },
            faulted: Default::default(),
            bus_voltage: Volts(400.0),
            ack_sequence: b.controller.relays.sequence,
            refused: ringhub_proto::can::messages::RefusedReason::None,
        }));
    };
    stuck(&mut bench);
    assert!(
        relay_commands(&bench.sent())
            .iter()
            .all(|c| c.closed.gun == 1),
        "no open while 100 A flow"
    );
    for _ in 0..98 {
        bench.advance(10);
        stuck(&mut bench);
    }
    assert!(
        relay_commands(&bench.sent())
            .iter()
            .all(|c| c.closed.gun == 1),
        "no open before the timeout"
    );
    bench.advance(30);
    stuck(&mut bench);
    let commands = relay_commands(&bench.sent());
    let open = commands
        .iter()
        .find(|c| c.closed.gun == 0)
        .expect("opened at the timeout");
    assert!(
        open.emergency,
        "an open under load carries the emergency flag"
    );
    assert!(bench.events().iter().any(|e| matches!(e, ConnectorEvent::Fault { fault, raised: true } if fault.code == FaultCode::OpenUnderLoad)));
    assert!(FaultCode::OpenUnderLoad.needs_operator());
}

#[test]
fn a_restarted_node_replays_a_pending_token_to_the_plc() {
    let mut bench = Bench::new(AuthPolicy::Token);
    bench.feed(info(CpState::B, AuthStatus::None, LockState::Unlocked));
    bench.sent();
    bench.events();
    let token = IdToken::Rfid("04A23B1C".into());
    bench
        .controller
        .restore_token(token.clone(), None, bench.t0);
    let writes = config_writes(&bench.sent());
    assert_eq!(writes, [ConfigWrite::AuthGranted(AuthStatus::Ongoing)]);
    assert!(bench.events().contains(&ConnectorEvent::Authorize {
        gun: GunId(0),
        token: token.clone()
    }));
    bench
        .controller
        .restore_token(token, Some(AuthDecision::Accepted), bench.t0);
    let sent = bench.sent();
    assert!(sent.iter().any(|m| matches!(
        m,
        CanMessage::Plc {
            message: PlcMessage::ConfigWrite(ConfigWrite::AuthGranted(AuthStatus::Accepted)),
            ..
        }
    )));
}

#[test]
fn the_gun_contactor_is_never_commanded_before_the_plc_confirms_authorisation_and_lock() {
    let mut bench = Bench::new(AuthPolicy::Token);
    let plc_says = |b: &mut Bench, ms: u64| {
        for _ in 0..ms / 100 {
            b.feed(info(CpState::C, AuthStatus::None, LockState::Locked));
            b.advance(100);
        }
    };
    plc_says(&mut bench, 500);
    let token = IdToken::Rfid("01020304".into());
    bench.controller.on_rfid("01020304".into(), bench.now());
    bench
        .controller
        .handle_auth_decision(&token, AuthDecision::Accepted, bench.now());
    // The PLC has not confirmed Accepted yet: no lock command, no GC.
    plc_says(&mut bench, 1_000);
    let sent = bench.sent();
    assert!(relay_commands(&sent).iter().all(|c| c.closed.gun == 0));
    assert!(!sent.iter().any(|m| matches!(
        m,
        CanMessage::Plc {
            message: PlcMessage::ConfigWrite(ConfigWrite::Lock(_)),
            ..
        }
    )));
    assert_eq!(
        bench.controller.snapshot(bench.now()).gun.unwrap().phase,
        SessionPhase::Authorising
    );
}

#[test]
fn an_emergency_stop_opens_the_gun_contactor_in_the_same_call() {
    let mut bench = Bench::new(AuthPolicy::Free);
    let gun = bench.controller.gun.as_mut().unwrap();
    gun.state = session::State::Charging;
    bench
        .controller
        .relays
        .set(controller::Which::Gun, true, bench.t0);
    let meter = Meter {
        source: MeterSource::PlcMeter,
        valid: true,
        voltage: Volts(400.0),
        current: Amps(100.0),
        energy: KilowattHours(1.0),
    };
    bench.feed(PlcMessage::Meter(meter));
    bench.feed(info(CpState::C, AuthStatus::Accepted, LockState::Locked));
    bench.sent();
    bench.events();
    let PlcMessage::ChargeInfo(mut pressed) =
        info(CpState::C, AuthStatus::Accepted, LockState::Locked)
    else {
        unreachable!()
    };
    pressed.emergency_stop = true;
    bench.feed(PlcMessage::ChargeInfo(pressed));
    let commands = relay_commands(&bench.sent());
    assert!(
        commands.iter().any(|c| c.closed.gun == 0 && c.emergency),
        "{commands:?}"
    );
    let raised: Vec<FaultCode> = bench
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ConnectorEvent::Fault {
                fault,
                raised: true,
            } => Some(fault.code),
            _ => None,
        })
        .collect();
    assert!(
        raised.contains(&FaultCode::EmergencyStop) && raised.contains(&FaultCode::OpenUnderLoad),
        "{raised:?}"
    );
}

#[test]
fn an_emergency_stop_during_charging_opens_at_once_as_an_emergency() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.charging_at_full_current();
    rig.inject(FaultKind::EmergencyStop, 0, None);
    let pressed_at = rig.world.now_ms();
    rig.run_until(1_000, "gun contactor open", |r| {
        r.world.state().segments[0]
            .contactors
            .iter()
            .any(|c| c.name == "gc" && !c.closed)
    });
    let command_at = rig
        .relay_commands
        .iter()
        .find(|(ms, c)| *ms >= pressed_at && c.closed.gun == 0)
        .unwrap();
    assert!(command_at.1.emergency);
    assert!(
        command_at.0 - pressed_at <= 20,
        "commanded within a step or two: {} ms",
        command_at.0 - pressed_at
    );
    let faults = rig.faults(0);
    assert!(
        faults.contains(&FaultCode::EmergencyStop) && faults.contains(&FaultCode::OpenUnderLoad),
        "{faults:?}"
    );
    assert!(
        rig.violations().is_empty(),
        "an emergency open is allowed by S4: {:?}",
        rig.violations()
    );
}

#[test]
fn config_writes_go_out_in_the_order_they_were_made() {
    let mut bench = Bench::new(AuthPolicy::Free);
    bench.sent();
    bench.controller.write_auth(AuthStatus::None);
    bench.controller.write_auth(AuthStatus::Accepted);
    let writes = config_writes(&bench.sent());
    assert_eq!(
        writes,
        [
            ConfigWrite::AuthGranted(AuthStatus::None),
            ConfigWrite::AuthGranted(AuthStatus::Accepted)
        ],
        "the last decision written is the one the PLC keeps"
    );
}

#[test]
fn a_gun_contactor_that_fails_to_close_is_a_fault_and_nothing_is_left_energised() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    rig.inject(FaultKind::ContactorFailToClose, 0, Some("gc"));
    rig.plug(0, 90.0);
    rig.run_until(15_000, "fail-to-close", |r| {
        r.faults(0).contains(&FaultCode::ContactorFailedToClose)
    });
    rig.run_until(3_000, "modules released", |r| {
        r.world.state().segments[0]
            .contactors
            .iter()
            .all(|c| !c.closed)
    });
    let gun = rig.gun(0);
    assert_eq!(gun.status, ConnectorStatus::Faulted);
    assert_eq!(
        gun.last_stop,
        Some(StopReason::Fault(FaultCode::ContactorFailedToClose))
    );
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_failed_high_level_session_ends_with_its_reason() {
    use ringhub_proto::can::messages::{HlcError, HlcPhase, HlcProtocol, Session, SlacState};
    use ringhub_proto::units::Percent;
    let mut bench = Bench::new(AuthPolicy::Free);
    for _ in 0..5 {
        bench.feed(info(CpState::C, AuthStatus::Accepted, LockState::Locked));
        bench.advance(100);
    }
    assert_eq!(
        bench.controller.snapshot(bench.now()).gun.unwrap().phase,
        SessionPhase::WaitingForEv
    );
    bench.events();
    let failed = Session {
        slac: SlacState::Matched,
        protocol: HlcProtocol::Din70121,
        phase: HlcPhase::Failed,
        ev_target_voltage: Volts(0.0),
        ev_target_current: Amps(0.0),
        soc: Percent(40),
        ev_ready: false,
        error: HlcError::SequenceError,
    };
    bench.feed(PlcMessage::Session(failed));
    let ended = bench.events().into_iter().find_map(|e| match e {
        ConnectorEvent::SessionEnded { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(ended, Some(StopReason::HlcFailed(HlcError::SequenceError)));
}

#[test]
fn a_silent_module_is_disconnected_as_an_emergency_and_the_session_goes_on() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.charging_at_full_current();
    rig.inject(FaultKind::ModuleSilence, 0, None);
    rig.run_until(3_000, "module 0 disconnected", |r| {
        r.world.state().segments[0]
            .contactors
            .iter()
            .any(|c| c.name == "mc0" && !c.closed)
    });
    let opened = rig
        .relay_commands
        .iter()
        .rev()
        .find(|(_, c)| c.closed.modules & 1 == 0 && c.closed.gun == 1)
        .unwrap();
    assert!(
        opened.1.emergency
            || rig
                .relay_commands
                .iter()
                .any(|(ms, c)| *ms == opened.0 && c.emergency)
    );
    assert!(rig.faults(0).contains(&FaultCode::ModuleSilent));
    rig.run(1_000);
    assert_eq!(
        rig.gun(0).phase,
        SessionPhase::Charging,
        "charging goes on with module 1"
    );
    assert!(rig.violations().is_empty(), "{:?}", rig.violations());
}

#[test]
fn a_gun_made_unavailable_and_available_again_while_idle_charges_normally() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    let now = rig.now();
    rig.controllers[0]
        .handle_command(Command::SetAvailable(false), now)
        .unwrap();
    rig.run(200);
    let now = rig.now();
    rig.controllers[0]
        .handle_command(Command::SetAvailable(true), now)
        .unwrap();
    rig.run(200);
    assert_eq!(rig.gun(0).status, ConnectorStatus::Available);
    rig.plug(0, 90.0);
    rig.run_until(15_000, "charging", |r| {
        r.gun(0).status == ConnectorStatus::Charging
    });
    rig.run(1_000);
    assert_eq!(
        rig.gun(0).phase,
        SessionPhase::Charging,
        "no stale stop request ends the session"
    );
}
