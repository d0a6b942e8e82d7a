//! The connector state machine of a gun: from plug-in through authorisation, lock,
//! precharge, charging and ramp-down to unplug, with the stop and fault paths. Each
//! state is one variant; transitions happen in [`SegmentController::step_session`] when
//! their conditions hold, on every event and every fast tick.

use std::time::{Duration, Instant};

use ringhub_proto::can::ev_identity::EvIdentity;
use ringhub_proto::can::messages::{
    AuthStatus, CpState, HlcError, HlcPhase, LockCommand, LockState, SlacState,
};
use ringhub_proto::units::{Amps, KilowattHours, Kilowatts, Percent, Volts};

use ringhub_cluster::record::Evidence;

use super::controller::{PlcView, SegmentController, Which, round1};
use super::modules::Setpoint;
use super::snapshot::{
    ConnectorStatus, FaultCode, GunSnapshot, IdToken, MeterView, SessionPhase, StopReason,
};
use super::{AuthDecision, AuthPolicy, CommandError, ConnectorEvent, GunSetup};

/// The bus must be this close to the battery before the gun contactor closes (S5 allows
/// 20 V; the margin covers meter error and the PLC's own check).
const PRECHARGE_MATCH_V: f64 = 10.0;
/// Current limit while precharging the bus.
const PRECHARGE_CURRENT_A: f64 = 5.0;
/// Below this the gun contactor may open (S4).
const OPEN_BELOW_A: f64 = 5.0;
/// Below this the connector counts as de-energised, for unlocking.
const DEENERGISED_A: f64 = 1.0;
/// Below this a bus is de-energised (DESIGN.md S3's 60 V).
const DEAD_BUS_V: f64 = 60.0;
/// The EV asks for less than this: it draws nothing (SuspendedEV).
const EV_IDLE_A: f64 = 1.0;
/// Precharge must finish within this.
const PRECHARGE_TIMEOUT: Duration = Duration::from_secs(8);

/// Where a gun's session is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum State {
    /// No EV.
    Idle,
    /// Plugged in; a token is awaited or being decided.
    Authorising,
    /// Authorised; locked (or locking), waiting for the EV to reach PreCharge.
    WaitingForEv { lock_commanded: Instant },
    /// Bringing the bus to the battery's voltage.
    Precharge { since: Instant },
    /// Gun contactor commanded closed; awaiting feedback.
    ClosingGc { since: Instant },
    /// Energy flows.
    Charging,
    /// Current is being brought to zero before opening.
    RampingDown { since: Instant, reason: StopReason },
    /// Gun contactor commanded open; awaiting feedback.
    OpeningGc { since: Instant, reason: StopReason },
    /// De-energised; unlocking and waiting for the EV to leave.
    Finished { reason: StopReason },
}

/// A gun and its session.
#[derive(Debug, Clone)]
pub(super) struct GunSession {
    /// As configured.
    pub setup: GunSetup,
    /// Where the session is.
    pub state: State,
    /// The operator allows sessions.
    pub available: bool,
    /// The operator (or CSMS) asked the running session to stop.
    pub stop_requested: bool,
    /// The token of this session (or of a pre-authorisation before plug-in).
    pub token: Option<IdToken>,
    /// The decision on `token`.
    pub decision: Option<AuthDecision>,
    /// The EV's identity, once reassembled.
    pub identity: Option<EvIdentity>,
    /// Since when the lock has read Locked without interruption.
    pub locked_since: Option<Instant>,
    /// The last lock command written.
    pub lock_written: Option<LockCommand>,
    /// Energy started flowing in this session (a transaction exists).
    pub started: bool,
    /// The last status reported.
    pub last_status: Option<ConnectorStatus>,
    /// Why the last session ended.
    pub last_stop: Option<StopReason>,
    /// When the preparation began (first token before plug-in, or plug-in under
    /// [`AuthPolicy::Token`]), for the connection timeout; `None` once WaitingForEv is
    /// reached or the preparation ends.
    pub preparing_since: Option<Instant>,
}

impl GunSession {
    pub(super) fn new(setup: GunSetup) -> Self {
        Self {
            setup,
            state: State::Idle,
            available: true,
            stop_requested: false,
            token: None,
            decision: None,
            identity: None,
            locked_since: None,
            lock_written: None,
            started: false,
            last_status: None,
            last_stop: None,
            preparing_since: None,
        }
    }

    /// An EV may be connected: anything but control pilot A. In E (pilot error) and F
    /// (EVSE not available) the EV is still there as far as anyone knows, so the session
    /// is stopped, not forgotten.
    pub(super) fn plugged(&self, plc: &PlcView) -> bool {
        plc.info.is_some_and(|i| i.cp != CpState::A)
    }

    /// The EV should be told to stop (EVSENotification StopCharging).
    pub(super) fn evse_stop(&self) -> bool {
        matches!(
            self.state,
            State::RampingDown { .. } | State::OpeningGc { .. }
        ) || self.stop_requested
    }

    fn locked(&self, now: Instant, debounce: Duration) -> bool {
        self.locked_since
            .is_some_and(|since| now.duration_since(since) >= debounce)
    }

    fn phase(&self) -> SessionPhase {
        match self.state {
            State::Idle => SessionPhase::Idle,
            State::Authorising => SessionPhase::Authorising,
            State::WaitingForEv { .. } => SessionPhase::WaitingForEv,
            State::Precharge { .. } | State::ClosingGc { .. } => SessionPhase::Precharge,
            State::Charging => SessionPhase::Charging,
            State::RampingDown { .. } | State::OpeningGc { .. } => SessionPhase::RampingDown,
            State::Finished {
                reason: StopReason::Fault(_),
            } => SessionPhase::Faulted,
            State::Finished { .. } => SessionPhase::Finished,
        }
    }
}

/// Faults that stop a session and keep the gun from starting another while active.
const BLOCKING: [FaultCode; 7] = [
    FaultCode::EmergencyStop,
    FaultCode::ContactorWelded,
    FaultCode::OpenUnderLoad,
    FaultCode::IsolationFault,
    FaultCode::PlcSilent,
    FaultCode::LockFailure,
    FaultCode::ContactorFailedToClose,
];

impl SegmentController {
    fn gun_mut(&mut self) -> Option<&mut GunSession> {
        self.gun.as_mut()
    }

    /// A token arrived: ask about it if the session needs one and has none yet. A token
    /// before plug-in starts the preparation clock.
    fn offer_token(&mut self, token: IdToken, now: Instant) {
        let policy = self.setup.auth;
        let Some(gun) = self.gun.as_mut() else { return };
        let wants = policy == AuthPolicy::Token
            && matches!(gun.state, State::Idle | State::Authorising)
            && (gun.token.is_none() || gun.decision == Some(AuthDecision::Rejected));
        if !wants {
            return;
        }
        gun.token = Some(token.clone());
        gun.decision = None;
        gun.preparing_since.get_or_insert(now);
        let id = gun.setup.id;
        self.write_auth(AuthStatus::Ongoing);
        self.events
            .push_back(ConnectorEvent::Authorize { gun: id, token });
    }

    pub(super) fn on_rfid(&mut self, uid: String, now: Instant) {
        self.offer_token(IdToken::Rfid(uid), now);
    }

    pub(super) fn on_identity(&mut self, identity: EvIdentity, now: Instant) {
        let Some(gun) = self.gun_mut() else { return };
        gun.identity = Some(identity.clone());
        let id = gun.setup.id;
        self.events.push_back(ConnectorEvent::IdentityReceived {
            gun: id,
            identity: identity.clone(),
        });
        let token = match &identity.emaid {
            Some(emaid) => IdToken::Contract(emaid.clone()),
            None => IdToken::EvMac(identity.mac.0.iter().map(|b| format!("{b:02X}")).collect()),
        };
        self.offer_token(token, now);
    }

    pub(super) fn on_decision(&mut self, token: &IdToken, decision: AuthDecision, _now: Instant) {
        let Some(gun) = self.gun_mut() else { return };
        // A decision that arrives after its session ended (a connection timeout with the
        // EV still plugged) must not tell the PLC to go ahead.
        let preparing = matches!(gun.state, State::Idle | State::Authorising);
        if gun.token.as_ref() != Some(token) || gun.decision.is_some() || !preparing {
            return;
        }
        gun.decision = Some(decision);
        self.write_auth(match decision {
            AuthDecision::Accepted => AuthStatus::Accepted,
            AuthDecision::Rejected => AuthStatus::Rejected,
        });
    }

    /// Restores a token that was pending when the node stopped, with its decision if one
    /// had been made; the decision is written to the PLC again, or asked again. The
    /// connection timeout starts afresh: how long the node was down is unknown.
    pub fn restore_token(&mut self, token: IdToken, decision: Option<AuthDecision>, now: Instant) {
        let Some(gun) = self.gun_mut() else { return };
        gun.token = Some(token.clone());
        gun.decision = decision;
        if matches!(gun.state, State::Idle | State::Authorising) {
            gun.preparing_since = Some(now);
        }
        let id = gun.setup.id;
        match decision {
            Some(AuthDecision::Accepted) => self.write_auth(AuthStatus::Accepted),
            Some(AuthDecision::Rejected) => self.write_auth(AuthStatus::Rejected),
            None => {
                self.write_auth(AuthStatus::Ongoing);
                self.events
                    .push_back(ConnectorEvent::Authorize { gun: id, token });
            }
        }
        self.control(now);
    }

    /// The current through the gun, as the larger of the trusted meter and the modules'
    /// output (either may be missing: a silent PLC, silent modules); `None` when neither
    /// is known, which never counts as "no current".
    fn gun_current(&self, now: Instant) -> Option<f64> {
        let meter = self
            .meter
            .trusted(now)
            .filter(|_| self.plc_online(now))
            .map(|r| r.current.0.abs());
        let online: Vec<f64> = self
            .modules
            .iter()
            .filter(|m| m.setpoint.enabled && m.is_online(now))
            .map(|m| m.output_current(now).abs())
            .collect();
        let modules = (!online.is_empty()).then(|| online.iter().sum::<f64>());
        match (meter, modules) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn blocked(&self) -> bool {
        self.blocking_fault().is_some()
    }

    /// The fault that keeps the gun from starting a session, if any.
    pub(super) fn blocking_fault(&self) -> Option<FaultCode> {
        BLOCKING
            .iter()
            .copied()
            .find(|&code| self.faults.any(code))
            .or(self.out_of_service.then_some(FaultCode::ContactorWelded))
    }

    /// No current can flow through the gun: its contactor is commanded open, and either
    /// reads open or the bus behind it is dead (a welded contactor must not hold the EV
    /// forever), and no current is measured.
    fn deenergised(&self, now: Instant) -> bool {
        let feedback = self.plc.feedback;
        let gc_open = feedback.is_none_or(|f| f.closed.gun & 1 == 0);
        let bus_dead = feedback.is_some_and(|f| f.bus_voltage.0 < DEAD_BUS_V);
        !self.relays.wanted(Which::Gun)
            && (gc_open || bus_dead)
            && self.gun_current(now).is_none_or(|i| i < DEENERGISED_A)
    }

    /// [`super::Command::Unlock`]: a running session is stopped (it unlocks once
    /// de-energised, in Finished); otherwise the lock is released at once, unless current
    /// can flow.
    pub(super) fn unlock(&mut self, now: Instant) -> Result<(), CommandError> {
        let deenergised = self.deenergised(now);
        let gun = self.gun.as_mut().ok_or(CommandError::NoGun)?;
        match gun.state {
            State::WaitingForEv { .. }
            | State::Precharge { .. }
            | State::ClosingGc { .. }
            | State::Charging
            | State::RampingDown { .. }
            | State::OpeningGc { .. } => gun.stop_requested = true,
            State::Idle | State::Authorising | State::Finished { .. } if deenergised => {
                gun.lock_written = Some(LockCommand::Unlock);
                self.write_lock(LockCommand::Unlock);
            }
            State::Idle | State::Authorising | State::Finished { .. } => {
                return Err(CommandError::Energised);
            }
        }
        Ok(())
    }

    /// Module setpoints: `voltage` at `current` in total, shared among the in-service
    /// modules, and a host's connected donors, by capability; out-of-service modules off
    /// and disconnected. What the donors are asked for goes out as the host's setpoint.
    fn drive_modules(&mut self, voltage: f64, current: f64, now: Instant) {
        let own: f64 = self
            .modules
            .iter()
            .filter(|m| m.in_service(now))
            .map(|m| m.current_capability(voltage, now))
            .sum();
        let total = own + self.donor_current();
        let share = if total > 0.0 {
            current.min(total) / total
        } else {
            0.0
        };
        self.host_out.voltage = Volts(voltage);
        self.host_out.share = share;
        self.drive_each(voltage, u8::MAX, |capability| capability * share, now);
    }

    /// Each in-service module of `modules` (bit i: module i) on at `voltage` and
    /// `current_of` its current capability, its contactor closed; the others off and
    /// drained (S4).
    pub(super) fn drive_each(
        &mut self,
        voltage: f64,
        modules: u8,
        current_of: impl Fn(f64) -> f64,
        now: Instant,
    ) {
        for i in 0..self.modules.len() {
            let module = &self.modules[i];
            let capability = if modules >> i & 1 == 1 && module.in_service(now) {
                module.current_capability(voltage, now)
            } else {
                0.0
            };
            if capability > 0.0 {
                let power = module.available_power(now);
                self.modules[i].setpoint = Setpoint {
                    enabled: true,
                    voltage: Volts(voltage),
                    current: Amps(current_of(capability)),
                    power: Kilowatts(power),
                };
                self.modules[i].draining_since = None;
                self.relays.set(Which::Module(i), true, now);
            } else {
                self.modules[i].setpoint = Setpoint::default();
                self.drain_module(i, now);
            }
        }
    }

    /// Takes a module that left service out of the island without opening its contactor
    /// under load (S4): turned off, its contactor opens once it reports less than 5 A, or
    /// after the ramp-down time as an emergency that latches a fault. A silent module's
    /// current is unknown: its contactor opens at once, flagged as an emergency (when in
    /// doubt, open).
    fn drain_module(&mut self, i: usize, now: Instant) {
        if !self.relays.wanted(Which::Module(i)) {
            self.modules[i].draining_since = None;
            return;
        }
        let module = &self.modules[i];
        let current = module
            .is_online(now)
            .then(|| module.output_current(now).abs());
        let since = *self.modules[i].draining_since.get_or_insert(now);
        match current {
            Some(amps) if amps < OPEN_BELOW_A => self.relays.set(Which::Module(i), false, now),
            Some(amps) if now.duration_since(since) >= self.setup.timing.open_under_load => {
                let subject = format!("segment {} mc{i}", self.setup.segment);
                let uptime = self.uptime(now);
                let evidence = vec![
                    Evidence::tenths("module_current", amps, "A"),
                    Evidence::tenths("open_below", OPEN_BELOW_A, "A"),
                    Evidence::millis("ramp_down", self.setup.timing.open_under_load),
                ];
                self.faults.raise_with(
                    FaultCode::OpenUnderLoad,
                    &subject,
                    format!("module still delivers {amps:.1} A after ramp-down"),
                    evidence,
                    uptime,
                );
                self.relays.emergency = true;
                self.relays.set(Which::Module(i), false, now);
            }
            Some(_) => {}
            None => {
                self.relays.emergency = true;
                self.relays.set(Which::Module(i), false, now);
            }
        }
    }

    /// Modules off, and disconnected once they carry less than 5 A (S4); the host's
    /// donors are asked for nothing.
    pub(super) fn release_modules(&mut self, now: Instant) {
        self.host_out.voltage = Volts(0.0);
        self.host_out.share = 0.0;
        for i in 0..self.modules.len() {
            self.modules[i].setpoint = Setpoint::default();
            self.drain_module(i, now);
        }
    }

    /// Modules while the gun draws nothing: a donor's feed its host, others rest.
    fn idle_modules(&mut self, now: Instant) {
        if self.is_donor() {
            self.donate(now);
        } else {
            self.release_modules(now);
        }
    }

    fn begin_stop(&mut self, reason: StopReason, now: Instant) {
        if let Some(gun) = self.gun_mut() {
            gun.state = State::RampingDown { since: now, reason };
        }
    }

    fn fault_stop(&mut self, code: FaultCode, detail: String, now: Instant) {
        let subject = format!("gun {}", self.gun.as_ref().map_or(0, |g| g.setup.id.0));
        let uptime = self.uptime(now);
        self.faults.raise(code, &subject, detail, uptime);
        self.begin_stop(StopReason::Fault(code), now);
    }

    /// Ends the session: reports it, and forgets its token.
    fn finish(&mut self, reason: StopReason) {
        let energy = self.session_energy();
        let Some(gun) = self.gun.as_mut() else { return };
        gun.state = State::Finished { reason };
        gun.last_stop = Some(reason);
        gun.stop_requested = false;
        gun.preparing_since = None;
        if gun.token.is_some() || gun.started || self.setup.auth == AuthPolicy::Free {
            let id = gun.setup.id;
            self.events.push_back(ConnectorEvent::SessionEnded {
                gun: id,
                reason,
                energy,
            });
        }
        gun.started = false;
    }

    /// Why a session that has begun must stop now, if it must.
    fn stop_reason(&self) -> Option<StopReason> {
        let gun = self.gun.as_ref()?;
        let session = self.plc.session;
        let info = self.plc.info;
        if !gun.plugged(&self.plc) {
            return Some(StopReason::Unplugged);
        }
        if let Some(code) = self.blocking_fault() {
            return Some(StopReason::Fault(code));
        }
        if let Some(cp) = info
            .map(|i| i.cp)
            .filter(|cp| matches!(cp, CpState::E | CpState::F))
        {
            return Some(StopReason::PilotFault(cp));
        }
        if gun.stop_requested || !gun.available {
            return Some(StopReason::Remote);
        }
        if let Some(s) = session {
            if s.error != HlcError::None
                || s.phase == HlcPhase::Failed
                || s.slac == SlacState::Failed
            {
                return Some(StopReason::HlcFailed(s.error));
            }
            if matches!(
                s.phase,
                HlcPhase::PowerDeliveryStop | HlcPhase::WeldingDetection | HlcPhase::SessionStop
            ) {
                return Some(StopReason::EvStopped);
            }
        }
        if info.is_some_and(|i| i.lock != LockState::Locked)
            && gun.lock_written == Some(LockCommand::Lock)
        {
            return Some(StopReason::Fault(FaultCode::LockFailure));
        }
        None
    }

    /// [`Self::stop_reason`], raising the fault a lost lock is.
    fn must_stop(&mut self, now: Instant) -> Option<StopReason> {
        // The plan gave the segment's modules to another gun: this one may not energise
        // (S2). The planner keeps an energised gun in service, so this is a safeguard.
        if self.is_donor() {
            return Some(StopReason::Remote);
        }
        let reason = self.stop_reason()?;
        if reason == StopReason::Fault(FaultCode::LockFailure) {
            let lock = self.plc.info.map_or(LockState::Unlocked, |i| i.lock);
            let subject = format!("gun {}", self.gun.as_ref().map_or(0, |g| g.setup.id.0));
            let uptime = self.uptime(now);
            self.faults.raise(
                FaultCode::LockFailure,
                &subject,
                format!("lock reads {lock} while energising"),
                uptime,
            );
        }
        Some(reason)
    }

    /// An emergency stop (the button, or the RCD) opens the gun contactor at once, without
    /// waiting for current to fall: the one case where S4 allows opening under load. If
    /// current flows, that is latched as its own fault for an operator.
    fn emergency_open(&mut self, now: Instant) {
        let Some(gun) = &self.gun else { return };
        let energised = self.relays.wanted(Which::Gun)
            || self.plc.feedback.is_some_and(|f| f.closed.gun & 1 == 1);
        if !energised {
            return;
        }
        let reason = match gun.state {
            State::RampingDown { reason, .. } | State::OpeningGc { reason, .. } => reason,
            _ => StopReason::Fault(FaultCode::EmergencyStop),
        };
        self.relays.emergency = true;
        self.relays.set(Which::Gun, false, now);
        for m in &mut self.modules {
            m.setpoint.current = Amps(0.0);
        }
        if let Some(current) = self.gun_current(now).filter(|i| *i >= OPEN_BELOW_A) {
            let subject = format!("segment {} gc", self.setup.segment);
            let uptime = self.uptime(now);
            self.faults.raise_with(
                FaultCode::OpenUnderLoad,
                &subject,
                format!("emergency stop opened it carrying {current:.1} A"),
                vec![Evidence::tenths("gun_current", current, "A")],
                uptime,
            );
        }
        if let Some(g) = self.gun_mut()
            && !matches!(g.state, State::OpeningGc { .. })
        {
            g.state = State::OpeningGc { since: now, reason };
        }
    }

    /// Advances the gun's session.
    pub(super) fn step_session(&mut self, now: Instant) {
        if self.faults.any(FaultCode::EmergencyStop) {
            self.emergency_open(now);
        }
        let Some(gun) = self.gun.clone() else {
            self.idle_modules(now);
            return;
        };
        let timing = self.setup.timing;
        let info = self.plc.info;
        let session = self.plc.session;
        let plugged = gun.plugged(&self.plc);
        let lock = info.map_or(LockState::Unlocked, |i| i.lock);
        if let Some(g) = self.gun.as_mut() {
            g.locked_since = if lock == LockState::Locked {
                Some(g.locked_since.unwrap_or(now))
            } else {
                None
            };
        }
        let locked = self
            .gun
            .as_ref()
            .is_some_and(|g| g.locked(now, timing.lock_debounce));
        let plc_accepted = info.is_some_and(|i| i.auth == AuthStatus::Accepted);
        match gun.state {
            State::Idle => {
                // An emergency open is over once the EV has left.
                self.relays.emergency = false;
                self.idle_modules(now);
                self.relays.set(Which::Gun, false, now);
                if self.preparation_expired(&gun, now) {
                    self.expire_token();
                }
                let ready =
                    info.is_some_and(|i| matches!(i.cp, CpState::B | CpState::C | CpState::D));
                if ready && gun.available && !self.blocked() {
                    self.meter.reset_energy();
                    let policy = self.setup.auth;
                    if let Some(g) = self.gun_mut() {
                        g.state = State::Authorising;
                        g.last_stop = None;
                        // A stop asked for while idle (an availability change) belongs to
                        // no session; the new one starts clean.
                        g.stop_requested = false;
                        // Free vend accepts at once: only a token can keep an EV waiting.
                        if policy == AuthPolicy::Token {
                            g.preparing_since.get_or_insert(now);
                        }
                    }
                }
            }
            State::Authorising => {
                // Nothing is energised before precharge: the modules rest, or feed the
                // host whose donor the segment is.
                self.idle_modules(now);
                if !plugged {
                    self.finish(StopReason::Unplugged);
                } else if self.blocked() || !gun.available {
                    self.finish(StopReason::Remote);
                } else if gun.decision == Some(AuthDecision::Rejected) {
                    self.finish(StopReason::Rejected);
                } else if self.setup.auth == AuthPolicy::Free && gun.decision.is_none() {
                    if let Some(g) = self.gun_mut() {
                        g.decision = Some(AuthDecision::Accepted);
                    }
                    self.write_auth(AuthStatus::Accepted);
                } else if plc_accepted && gun.decision == Some(AuthDecision::Accepted) {
                    // Lock before anything is energised.
                    self.write_lock(LockCommand::Lock);
                    if let Some(g) = self.gun_mut() {
                        g.lock_written = Some(LockCommand::Lock);
                        g.state = State::WaitingForEv {
                            lock_commanded: now,
                        };
                        // From here the lock and HLC timeouts govern.
                        g.preparing_since = None;
                    }
                    let meter_start = self
                        .meter
                        .trusted(now)
                        .map_or(KilowattHours(0.0), |m| m.energy);
                    self.events.push_back(ConnectorEvent::EvConnected {
                        gun: gun.setup.id,
                        token: gun.token.clone(),
                        meter_start,
                    });
                } else if self.preparation_expired(&gun, now) {
                    // Nothing was commanded closed in Authorising; the EV is told no and
                    // must be unplugged to start over.
                    self.write_auth(AuthStatus::Rejected);
                    self.finish(StopReason::ConnectionTimeout);
                }
            }
            State::WaitingForEv { lock_commanded } => {
                self.idle_modules(now);
                // The lock is still moving here: only a lock fault or the timeout is a failure.
                let stop = self
                    .stop_reason()
                    .filter(|r| *r != StopReason::Fault(FaultCode::LockFailure));
                if lock == LockState::Fault
                    || (!locked && now.duration_since(lock_commanded) >= timing.lock_timeout)
                {
                    let detail = format!(
                        "lock reads {lock} {} ms after the lock command",
                        now.duration_since(lock_commanded).as_millis()
                    );
                    let subject = format!("gun {}", gun.setup.id);
                    let uptime = self.uptime(now);
                    self.faults
                        .raise(FaultCode::LockFailure, &subject, detail, uptime);
                    self.finish(StopReason::Fault(FaultCode::LockFailure));
                } else if let Some(reason) = stop {
                    self.finish(reason);
                } else if locked
                    && session.is_some_and(|s| s.phase == HlcPhase::PreCharge)
                    && !self.is_donor()
                    && self.island.separated
                    && let Some(g) = self.gun_mut()
                {
                    g.state = State::Precharge { since: now };
                }
            }
            State::Precharge { since } => {
                let target = session.map_or(0.0, |s| s.ev_target_voltage.0);
                let bus = self.plc.feedback.map_or(0.0, |f| f.bus_voltage.0);
                if let Some(reason) = self.must_stop(now) {
                    self.begin_stop(reason, now);
                } else if now.duration_since(since) >= PRECHARGE_TIMEOUT {
                    self.begin_stop(StopReason::HlcFailed(HlcError::PreChargeFailed), now);
                } else {
                    self.drive_modules(target, PRECHARGE_CURRENT_A, now);
                    if target > 0.0
                        && (bus - target).abs() <= PRECHARGE_MATCH_V
                        && plc_accepted
                        && locked
                        && self.island.separated
                    {
                        self.relays.set(Which::Gun, true, now);
                        if let Some(g) = self.gun_mut() {
                            g.state = State::ClosingGc { since: now };
                        }
                    }
                }
            }
            State::ClosingGc { since } => {
                let target = session.map_or(0.0, |s| s.ev_target_voltage.0);
                self.drive_modules(target, PRECHARGE_CURRENT_A, now);
                let feedback = self.plc.feedback;
                let closed = feedback.is_some_and(|f| f.closed.gun & 1 == 1);
                let refused = feedback
                    .filter(|f| {
                        f.ack_sequence == self.relays.sequence
                            && f.refused != ringhub_proto::can::messages::RefusedReason::None
                    })
                    .map(|f| f.refused);
                if let Some(reason) = self.must_stop(now) {
                    self.begin_stop(reason, now);
                } else if closed {
                    if let Some(g) = self.gun_mut() {
                        g.state = State::Charging;
                    }
                } else if let Some(refused) = refused {
                    self.fault_stop(
                        FaultCode::ContactorFailedToClose,
                        format!("the PLC refused to close the gun contactor: {refused}"),
                        now,
                    );
                } else if now.duration_since(since) >= timing.operate_timeout {
                    self.fault_stop(
                        FaultCode::ContactorFailedToClose,
                        "no closed feedback from the gun contactor".into(),
                        now,
                    );
                }
            }
            State::Charging => {
                let stop = match session {
                    Some(_) => self.must_stop(now),
                    None => Some(StopReason::HlcFailed(HlcError::None)),
                };
                if let Some(reason) = stop {
                    // Ramp-down starts in this same call: a fault frame acts at once.
                    self.begin_stop(reason, now);
                    self.step_session(now);
                    return;
                }
                let Some(s) = session else { return };
                let voltage = s.ev_target_voltage.0.min(gun.setup.max_voltage.0);
                let current = s.ev_target_current.0.min(self.offered_current(now));
                self.drive_modules(voltage, current, now);
                let flowing = self.gun_current(now).is_some_and(|i| i >= DEENERGISED_A);
                if flowing && !gun.started {
                    let meter_start = self
                        .meter
                        .trusted(now)
                        .map_or(KilowattHours(0.0), |m| m.energy);
                    if let Some(g) = self.gun_mut() {
                        g.started = true;
                        let (id, token) = (g.setup.id, g.token.clone());
                        self.events.push_back(ConnectorEvent::SessionStarted {
                            gun: id,
                            token,
                            meter_start,
                        });
                    }
                }
            }
            State::RampingDown { since, reason } => {
                let voltage = session
                    .map_or(0.0, |s| s.ev_target_voltage.0)
                    .max(self.plc.feedback.map_or(0.0, |f| f.bus_voltage.0));
                for m in &mut self.modules {
                    m.setpoint.current = Amps(0.0);
                    m.setpoint.voltage = Volts(voltage.min(m.setup.max_voltage.0));
                }
                self.host_out.share = 0.0;
                let current = self.gun_current(now);
                let gc_open = self.plc.feedback.is_none_or(|f| f.closed.gun & 1 == 0)
                    && !self.relays.wanted(Which::Gun);
                if current.is_some_and(|i| i < OPEN_BELOW_A) || gc_open {
                    self.relays.set(Which::Gun, false, now);
                    if let Some(g) = self.gun_mut() {
                        g.state = State::OpeningGc { since: now, reason };
                    }
                } else if now.duration_since(since) >= timing.open_under_load {
                    // S4: opening under load only as an emergency, which latches a fault.
                    self.relays.emergency = true;
                    self.relays.set(Which::Gun, false, now);
                    let subject = format!("segment {} gc", self.setup.segment);
                    let uptime = self.uptime(now);
                    let detail = match current {
                        Some(amps) => format!(
                            "{amps:.1} A still flowing {} ms after ramp-down began",
                            timing.open_under_load.as_millis()
                        ),
                        None => format!(
                            "current unknown {} ms after ramp-down began",
                            timing.open_under_load.as_millis()
                        ),
                    };
                    let mut evidence = vec![
                        Evidence::millis("ramp_down", timing.open_under_load),
                        Evidence::tenths("open_below", OPEN_BELOW_A, "A"),
                    ];
                    evidence.extend(current.map(|a| Evidence::tenths("gun_current", a, "A")));
                    self.faults.raise_with(
                        FaultCode::OpenUnderLoad,
                        &subject,
                        detail,
                        evidence,
                        uptime,
                    );
                    if let Some(g) = self.gun_mut() {
                        g.state = State::OpeningGc { since: now, reason };
                    }
                }
            }
            State::OpeningGc { since, reason } => {
                let gc_open = self.plc.feedback.is_none_or(|f| f.closed.gun & 1 == 0);
                if gc_open
                    || now.duration_since(since) >= timing.release_timeout
                    || !self.plc_online(now)
                {
                    // A gun contactor still closed now is a weld: supervision latches it.
                    self.release_modules(now);
                    self.finish(reason);
                }
            }
            State::Finished { .. } => {
                self.idle_modules(now);
                self.relays.set(Which::Gun, false, now);
                // Unlock only when de-energised.
                if self.deenergised(now) && gun.lock_written == Some(LockCommand::Lock) {
                    self.write_lock(LockCommand::Unlock);
                    if let Some(g) = self.gun_mut() {
                        g.lock_written = Some(LockCommand::Unlock);
                    }
                }
                if !plugged {
                    let gun_subject = format!("gun {}", gun.setup.id);
                    // The EV has left: faults that only mattered to its session clear.
                    self.faults.clear(FaultCode::LockFailure, &gun_subject);
                    self.faults
                        .clear(FaultCode::ContactorFailedToClose, &gun_subject);
                    self.faults.clear(
                        FaultCode::ContactorFailedToClose,
                        &format!("segment {} gc", self.setup.segment),
                    );
                    if let Some(g) = self.gun_mut() {
                        g.state = State::Idle;
                        g.token = None;
                        g.decision = None;
                        g.identity = None;
                        g.lock_written = None;
                        g.preparing_since = None;
                    }
                    // The last session frame describes the EV that left; the next EV's
                    // session must not be judged by it.
                    self.plc.session = None;
                    self.write_auth(AuthStatus::None);
                }
            }
        }
    }

    /// Emits a status event when the gun's OCPP status changes.
    pub(super) fn report_status(&mut self) {
        let Some(gun) = &self.gun else { return };
        let status = self.status(gun);
        if gun.last_status != Some(status) {
            let id = gun.setup.id;
            if let Some(g) = self.gun_mut() {
                g.last_status = Some(status);
            }
            self.events
                .push_back(ConnectorEvent::StatusChanged { gun: id, status });
        }
    }

    /// The OCPP 1.6 status of the gun (§4.9, ChargePointStatus).
    fn status(&self, gun: &GunSession) -> ConnectorStatus {
        if self.blocked() {
            return ConnectorStatus::Faulted;
        }
        let plugged = gun.plugged(&self.plc);
        match gun.state {
            State::Idle if !gun.available => ConnectorStatus::Unavailable,
            State::Idle if gun.token.is_some() => ConnectorStatus::Preparing,
            State::Idle => ConnectorStatus::Available,
            State::Authorising
            | State::WaitingForEv { .. }
            | State::Precharge { .. }
            | State::ClosingGc { .. } => ConnectorStatus::Preparing,
            State::Charging => {
                let demand = self
                    .plc
                    .session
                    .filter(|s| s.phase == HlcPhase::CurrentDemand);
                let offered = self.modules.iter().any(|m| m.setpoint.enabled);
                if !offered {
                    ConnectorStatus::SuspendedEvse
                } else if demand.is_some_and(|s| s.ev_target_current.0 < EV_IDLE_A) {
                    ConnectorStatus::SuspendedEv
                } else {
                    ConnectorStatus::Charging
                }
            }
            State::RampingDown { .. } | State::OpeningGc { .. } | State::Finished { .. }
                if plugged =>
            {
                ConnectorStatus::Finishing
            }
            State::RampingDown { .. } | State::OpeningGc { .. } | State::Finished { .. } => {
                ConnectorStatus::Available
            }
        }
    }

    pub(super) fn gun_snapshot(&self, gun: &GunSession, now: Instant) -> GunSnapshot {
        let info = self.plc.info;
        let session = self.plc.session;
        let reading = self.meter.trusted(now);
        let current = reading.map_or(0.0, |r| r.current.0);
        let voltage = reading.map_or(0.0, |r| r.voltage.0);
        GunSnapshot {
            gun: gun.setup.id,
            phase: gun.phase(),
            status: self.status(gun),
            available: gun.available,
            cp: info.map_or(CpState::A, |i| i.cp),
            slac: session.map_or(SlacState::Idle, |s| s.slac),
            protocol: session.map_or(ringhub_proto::can::messages::HlcProtocol::None, |s| {
                s.protocol
            }),
            hlc_phase: session.map_or(HlcPhase::Idle, |s| s.phase),
            ev_identity: gun.identity.clone(),
            token: gun.token.clone(),
            auth: info.map_or(AuthStatus::None, |i| i.auth),
            lock: info.map_or(LockState::Unlocked, |i| i.lock),
            meter: reading.map(|r| MeterView {
                source: r.source,
                voltage: r.voltage,
                current: r.current,
                energy_register: r.energy,
            }),
            session_energy: self.session_energy(),
            soc: session
                .filter(|_| gun.plugged(&self.plc))
                .map(|s| s.soc)
                .filter(|soc| *soc > Percent(0)),
            ev_target_voltage: session.map_or(Volts(0.0), |s| s.ev_target_voltage),
            ev_target_current: session.map_or(Amps(0.0), |s| s.ev_target_current),
            offered_current: Amps(round1(self.offered_current(now))),
            power: Kilowatts(round1(voltage * current / 1000.0)),
            last_stop: gun.last_stop,
            budget: self.budget,
        }
    }
}
