//! The firmware of one segment's PLC board, and the hardware it runs: the gun contactor,
//! the module contactors, the tie contactor, the lock actuator, the meters, and the EV
//! plugged into its gun.
//!
//! It behaves as the PLC boards of real DC chargers do (IEC 61851-1 control pilot,
//! ISO 15118-3 SLAC, DIN 70121 / ISO 15118-2 message phases), paced in real time:
//!
//! ```text
//!  plug ─► CP B ─► SLAC (~1.5 s) ─► SupportedAppProtocol ─► SessionSetup (EV identity
//!  frames) ─► ServiceDiscovery ─► PaymentSelection ─► Authorization (AuthPending until
//!  param 20 says Accepted) ─► ChargeParameterDiscovery ─► CP C ─► CableCheck (lock
//!  confirmed, isolation tested) ─► PreCharge (EV contactors close; the host matches the
//!  bus to the battery and closes GC) ─► PowerDelivery ─► CurrentDemand ─► (EV full,
//!  host stop, unplug) ─► PowerDeliveryStop ─► WeldingDetection ─► SessionStop
//! ```
//!
//! It obeys the host through config writes (param 20 authorisation, param 30 lock) and
//! relay commands, and protects itself: the gun contactor refuses to close without
//! Accepted authorisation, a confirmed lock and a matched precharge (S5), and when the
//! host's heartbeat stops it asks the EV to stop, waits for the current to fall, and
//! opens every contactor (the watchdog).

use ringhub_proto::can::messages::{
    AuthStatus, ChargeInfo, ConfigWrite, Contactors, CpState, EvsePresent, HlcError, HlcPhase,
    HlcProtocol, HostHeartbeat, IsolationState, LockCommand, LockState, Meter, MeterSource,
    PlcHeartbeat, PlcState, RefusedReason, RelayCommand, RelayFeedback, Session, SlacState,
    TieFeedback,
};
use ringhub_proto::units::{Amps, Celsius, KilowattHours, Percent, Volts};

use super::contactor::Contactor;
use super::ev::{Ev, INTERNAL_RESISTANCE_OHM};

/// Time the lock actuator takes to move.
const LOCK_TRAVEL_MS: u64 = 300;
/// SLAC matching takes this long, plus the seeded jitter the world adds.
pub const SLAC_MS: u64 = 1_500;
/// Each quick request/response phase of the high-level session.
const MESSAGE_PHASE_MS: u64 = 100;
/// The isolation test of CableCheck.
const CABLE_CHECK_MS: u64 = 1_000;
/// How long the EV waits for an authorisation decision (ISO 15118-2 allows 60 s of
/// EVSEProcessing=Ongoing).
const AUTHORIZATION_TIMEOUT_MS: u64 = 60_000;
/// How long the EV waits for the lock before giving up on CableCheck.
const LOCK_TIMEOUT_MS: u64 = 5_000;
/// How long the EV waits in PreCharge for the EVSE to match its voltage and close.
const PRECHARGE_TIMEOUT_MS: u64 = 10_000;
/// Precharge is matched when the bus is this close to the battery (S5, S3).
pub const PRECHARGE_MATCH_V: f64 = 20.0;
/// After PowerDeliveryStop the EV opens its contactors once current is below this...
const EV_OPEN_BELOW_A: f64 = 1.0;
/// ...or after this long regardless.
const EV_STOP_TIMEOUT_MS: u64 = 2_000;
/// WeldingDetection phase.
const WELDING_DETECTION_MS: u64 = 500;
/// The watchdog opens contactors once they carry less than this (S4)...
pub const OPEN_UNDER_LOAD_A: f64 = 5.0;
/// ...or after this long since it tripped, as an emergency.
const WATCHDOG_RAMP_DOWN_MS: u64 = 1_500;
/// Relative error of the shunt against the meter when a disagreement is injected.
const DISAGREEMENT: f64 = 0.15;

/// Where the charging session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No EV, or an EV that has finished or failed its session.
    Idle,
    /// SLAC matching.
    Slac,
    /// A timed message phase, moving on at `until`.
    Message(HlcPhase),
    /// Waiting for param 20.
    Authorization,
    /// CableCheck: waiting for the lock to be confirmed.
    WaitLock,
    /// CableCheck: testing isolation.
    IsolationTest,
    /// Waiting for the host to match the bus and close GC.
    PreCharge,
    /// Energy flows.
    CurrentDemand,
    /// The EV asked to stop; waiting for current to fall before it opens.
    PowerDeliveryStop,
}

/// What the world tells the PLC each step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measurements {
    /// Segment bus voltage.
    pub bus_voltage: f64,
    /// Current into the EV through GC.
    pub gun_current: f64,
    /// Largest current through any of this segment's closed contactors.
    pub largest_contactor_current: f64,
    /// Bus voltage of the next segment, as the tie driver sees it across the tie.
    pub far_bus_voltage: f64,
    /// Current through the tie, positive toward the next segment.
    pub tie_current: f64,
}

/// Faults injected into the PLC board or its gun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectedFaults {
    /// The lock actuator never reaches Locked.
    pub lock_failure: bool,
    /// The PLC meter reads invalid.
    pub meter_failure: bool,
    /// The shunt disagrees with the meter.
    pub meter_disagreement: bool,
    /// The isolation monitor reports a fault.
    pub isolation_fault: bool,
    /// The PLC stops sending frames.
    pub silent: bool,
    /// The control pilot is faulty (shorted diode, pilot to PE): CP state E.
    pub pilot_error: bool,
    /// The dispenser's emergency stop button is pressed. The PLC reports it; opening
    /// the contactors is the host's job (the hard-wired interlock is not modelled).
    pub emergency_stop: bool,
}

/// One segment's PLC and its hardware.
#[derive(Debug, Clone)]
pub struct Plc {
    /// Whether a gun is fitted.
    has_gun: bool,
    /// Gun contactor, if a gun is fitted.
    pub gc: Option<Contactor>,
    /// Module contactors, one per module of the segment.
    pub mc: Vec<Contactor>,
    /// Tie contactor to the next segment, if fitted.
    pub mn: Option<Contactor>,
    /// The EV at the gun.
    pub ev: Option<Ev>,
    /// The EV's own contactors: closed from PreCharge until it stops.
    ev_contactors_closed: bool,
    /// The EV was asked to leave; it does when the lock lets it.
    unplug_requested: bool,
    /// Injected faults.
    pub faults: InjectedFaults,

    /// Firmware state.
    state: PlcState,
    /// Last host heartbeat, if any arrived.
    last_host_heartbeat_ms: Option<u64>,
    /// Watchdog period, from the host's heartbeat (the config's default until then).
    watchdog_timeout_ms: u64,
    /// When the watchdog tripped, while it is tripped.
    tripped_at_ms: Option<u64>,
    /// Heartbeat counter.
    counter: u8,
    /// Boot time, for uptime.
    booted_at_ms: u64,

    /// Param 20.
    auth: AuthStatus,
    /// A token (RFID or EV identity) awaits the host's decision.
    auth_pending: bool,
    /// Param 30.
    lock_command: LockCommand,
    /// Lock actuator position.
    lock: LockState,
    /// When the actuator finishes moving.
    lock_moves_at: Option<u64>,

    /// Last applied relay command's sequence.
    ack_sequence: u8,
    /// Why the last command was not carried out in full.
    refused: RefusedReason,

    /// Session phase and when it began.
    phase: Phase,
    phase_since_ms: u64,
    /// When the current timed phase ends.
    phase_until_ms: u64,
    slac: SlacState,
    protocol: HlcProtocol,
    hlc_phase: HlcPhase,
    hlc_error: HlcError,
    /// Isolation monitor result.
    isolation: IsolationState,
    /// EVSE present output and stop request from the host.
    present: Option<EvsePresent>,
    /// Energy registers of the meter and the shunt, kWh.
    meter_energy: [f64; 2],
    /// Latest measurements.
    measured: Measurements,
    /// Next EV identity transfer id.
    next_transfer_id: u8,
}

/// What the PLC wants sent, besides its periodic frames.
#[derive(Debug, Clone, PartialEq)]
pub enum PlcOutput {
    /// The EV identity became known: send it as a transfer.
    EvIdentity { transfer_id: u8 },
}

impl Plc {
    pub fn new(
        has_gun: bool,
        modules: usize,
        tie_fitted: bool,
        (operate_ms, release_ms): (u64, u64),
        watchdog_timeout_ms: u64,
        now_ms: u64,
    ) -> Self {
        let contactor = || Contactor::new(operate_ms, release_ms);
        Self {
            has_gun,
            gc: has_gun.then(contactor),
            mc: (0..modules).map(|_| contactor()).collect(),
            mn: tie_fitted.then(contactor),
            ev: None,
            ev_contactors_closed: false,
            unplug_requested: false,
            faults: InjectedFaults::default(),
            state: PlcState::Ready,
            last_host_heartbeat_ms: None,
            watchdog_timeout_ms,
            tripped_at_ms: None,
            counter: 0,
            booted_at_ms: now_ms,
            auth: AuthStatus::None,
            auth_pending: false,
            lock_command: LockCommand::Unlock,
            lock: LockState::Unlocked,
            lock_moves_at: None,
            ack_sequence: 0,
            refused: RefusedReason::None,
            phase: Phase::Idle,
            phase_since_ms: now_ms,
            phase_until_ms: now_ms,
            slac: SlacState::Idle,
            protocol: HlcProtocol::None,
            hlc_phase: HlcPhase::Idle,
            hlc_error: HlcError::None,
            isolation: IsolationState::Invalid,
            present: None,
            meter_energy: [0.0; 2],
            measured: Measurements::default(),
            next_transfer_id: 0,
        }
    }

    pub fn has_gun(&self) -> bool {
        self.has_gun
    }

    pub fn state(&self) -> PlcState {
        self.state
    }

    pub fn auth(&self) -> AuthStatus {
        self.auth
    }

    pub fn lock(&self) -> LockState {
        self.lock
    }

    pub fn hlc_phase(&self) -> HlcPhase {
        self.hlc_phase
    }

    /// Whether the EV's contactors are closed, so that its battery is on the gun.
    pub fn ev_connected(&self) -> bool {
        self.ev.is_some() && self.ev_contactors_closed
    }

    /// Battery voltage on the gun side of GC (0 when the EV's contactors are open).
    pub fn gun_side_voltage(&self) -> f64 {
        match &self.ev {
            Some(ev) if self.ev_contactors_closed => ev.ocv(),
            _ => 0.0,
        }
    }

    /// The control pilot state (IEC 61851-1) as the PLC measures and drives it: A
    /// without an EV; with one, E on a pilot error, F while the EVSE is not available
    /// (the watchdog has tripped or the PLC is in fault), else C while the EV is ready
    /// for energy and B before and after.
    pub fn cp_state(&self) -> CpState {
        if self.ev.is_none() {
            CpState::A
        } else if self.faults.pilot_error {
            CpState::E
        } else if matches!(self.state, PlcState::WatchdogTripped | PlcState::Fault) {
            CpState::F
        } else if matches!(
            self.phase,
            Phase::WaitLock
                | Phase::IsolationTest
                | Phase::PreCharge
                | Phase::CurrentDemand
                | Phase::Message(HlcPhase::ChargeParameterDiscovery)
        ) {
            CpState::C
        } else {
            CpState::B
        }
    }

    fn enter(&mut self, phase: Phase, now_ms: u64, duration_ms: u64) {
        self.phase = phase;
        self.phase_since_ms = now_ms;
        self.phase_until_ms = now_ms + duration_ms;
        self.hlc_phase = match phase {
            Phase::Idle | Phase::Slac => self.hlc_phase,
            Phase::Message(phase) => phase,
            Phase::Authorization => HlcPhase::Authorization,
            Phase::WaitLock | Phase::IsolationTest => HlcPhase::CableCheck,
            Phase::PreCharge => HlcPhase::PreCharge,
            Phase::CurrentDemand => HlcPhase::CurrentDemand,
            Phase::PowerDeliveryStop => HlcPhase::PowerDeliveryStop,
        };
    }

    fn fail(&mut self, error: HlcError, now_ms: u64) {
        self.hlc_error = error;
        self.hlc_phase = HlcPhase::Failed;
        self.ev_contactors_closed = false;
        self.phase = Phase::Idle;
        self.phase_since_ms = now_ms;
    }

    /// An EV plugs in; SLAC starts. `slac_ms` is the matching time for this session.
    pub fn plug(&mut self, ev: Ev, slac_ms: u64, now_ms: u64) {
        self.protocol = if ev.spec.emaid.is_some() {
            HlcProtocol::Iso15118v2
        } else {
            HlcProtocol::Din70121
        };
        self.ev = Some(ev);
        self.unplug_requested = false;
        self.hlc_error = HlcError::None;
        self.hlc_phase = HlcPhase::Idle;
        self.slac = SlacState::Matching;
        self.enter(Phase::Slac, now_ms, slac_ms);
    }

    /// The driver wants to leave: the EV stops if it charges, and goes once unlocked.
    pub fn request_unplug(&mut self, now_ms: u64) {
        self.unplug_requested = true;
        // A session past PreCharge stops first (its CurrentDemand sees the request too).
        if self.ev_contactors_closed && self.phase != Phase::PowerDeliveryStop {
            self.enter(Phase::PowerDeliveryStop, now_ms, EV_STOP_TIMEOUT_MS);
        }
    }

    /// A card is presented at the dispenser.
    pub fn rfid(&mut self) {
        if self.auth != AuthStatus::Accepted {
            self.auth_pending = true;
        }
    }

    fn unplug(&mut self, now_ms: u64) {
        self.ev = None;
        self.ev_contactors_closed = false;
        self.unplug_requested = false;
        self.auth = AuthStatus::None;
        self.auth_pending = false;
        self.slac = SlacState::Idle;
        self.protocol = HlcProtocol::None;
        self.hlc_phase = HlcPhase::Idle;
        self.hlc_error = HlcError::None;
        self.isolation = IsolationState::Invalid;
        self.enter(Phase::Idle, now_ms, 0);
    }

    /// A host heartbeat arrived.
    pub fn handle_heartbeat(&mut self, heartbeat: HostHeartbeat, now_ms: u64) {
        self.last_host_heartbeat_ms = Some(now_ms);
        self.watchdog_timeout_ms = heartbeat.watchdog_timeout_ms.into();
        if self.state == PlcState::WatchdogTripped && self.tripped_at_ms.is_none() {
            self.state = PlcState::Ready;
        }
    }

    /// A config write arrived.
    pub fn handle_config(&mut self, write: ConfigWrite, now_ms: u64) {
        match write {
            ConfigWrite::AuthGranted(status) => {
                self.auth = status;
                if matches!(status, AuthStatus::Accepted | AuthStatus::Rejected) {
                    self.auth_pending = false;
                }
            }
            ConfigWrite::Lock(command) if command != self.lock_command => {
                self.lock_command = command;
                self.lock_moves_at = Some(now_ms + LOCK_TRAVEL_MS);
            }
            ConfigWrite::Lock(_) => {}
        }
    }

    /// EVSE present values (and a stop request) from the host.
    pub fn handle_present(&mut self, present: EvsePresent, now_ms: u64) {
        self.present = Some(present);
        if present.stop_requested && matches!(self.phase, Phase::CurrentDemand | Phase::PreCharge) {
            self.enter(Phase::PowerDeliveryStop, now_ms, EV_STOP_TIMEOUT_MS);
        }
    }

    /// A relay command arrived: apply what is allowed, refuse the rest with a reason.
    pub fn handle_relay_command(&mut self, command: RelayCommand, now_ms: u64) {
        self.ack_sequence = command.sequence;
        self.refused = RefusedReason::None;
        if self.state == PlcState::WatchdogTripped {
            self.refused = RefusedReason::WatchdogTripped;
            return;
        }
        let want_gc = command.closed.gun & 1 == 1;
        if let Some(gc) = &mut self.gc {
            let refusal = if !want_gc || gc.commanded() {
                None
            } else if self.auth != AuthStatus::Accepted {
                Some(RefusedReason::AuthNotAccepted)
            } else if self.lock != LockState::Locked {
                Some(RefusedReason::LockNotConfirmed)
            } else if self.ev_contactors_closed
                && (self.measured.bus_voltage - self.ev.as_ref().map_or(0.0, Ev::ocv)).abs()
                    > PRECHARGE_MATCH_V
            {
                Some(RefusedReason::Interlock)
            } else {
                None
            };
            match refusal {
                Some(reason) => self.refused = reason,
                None => gc.command(want_gc, command.emergency, now_ms),
            }
        }
        for (i, mc) in self.mc.iter_mut().enumerate() {
            mc.command(
                command.closed.modules >> i & 1 == 1,
                command.emergency,
                now_ms,
            );
        }
        if let Some(mn) = &mut self.mn {
            mn.command(command.closed.ties & 1 == 1, command.emergency, now_ms);
        }
    }

    fn open_everything(&mut self, emergency: bool, now_ms: u64) {
        self.gc
            .iter_mut()
            .chain(self.mc.iter_mut())
            .chain(self.mn.iter_mut())
            .for_each(|c| c.command(false, emergency, now_ms));
    }

    /// Whether the watchdog has tripped and is still holding the contactors open.
    pub fn watchdog_tripped(&self) -> bool {
        self.state == PlcState::WatchdogTripped
    }

    /// Runs timers, the session and the watchdog. Returns what to send.
    pub fn step(&mut self, measured: Measurements, now_ms: u64) -> Vec<PlcOutput> {
        self.measured = measured;
        let mut outputs = Vec::new();
        self.step_watchdog(now_ms);
        if let Some(at) = self.lock_moves_at
            && now_ms >= at
        {
            self.lock_moves_at = None;
            self.lock = match self.lock_command {
                LockCommand::Unlock => LockState::Unlocked,
                LockCommand::Lock if self.faults.lock_failure => LockState::Fault,
                LockCommand::Lock => LockState::Locked,
            };
        }
        if self.faults.isolation_fault {
            self.isolation = IsolationState::Fault;
        } else if self.isolation == IsolationState::Fault {
            // Repaired: the monitor no longer measures a fault.
            self.isolation = IsolationState::Invalid;
        }
        self.step_session(now_ms, &mut outputs);
        if self.unplug_requested && self.lock != LockState::Locked && !self.ev_contactors_closed {
            self.unplug(now_ms);
        }
        outputs
    }

    fn step_watchdog(&mut self, now_ms: u64) {
        let silent_for = self
            .last_host_heartbeat_ms
            .map(|at| now_ms.saturating_sub(at));
        if self.tripped_at_ms.is_none()
            && silent_for.is_some_and(|ms| ms > self.watchdog_timeout_ms)
        {
            self.state = PlcState::WatchdogTripped;
            self.tripped_at_ms = Some(now_ms);
            if matches!(self.phase, Phase::CurrentDemand | Phase::PreCharge) {
                self.enter(Phase::PowerDeliveryStop, now_ms, EV_STOP_TIMEOUT_MS);
            }
        }
        let Some(tripped_at) = self.tripped_at_ms else {
            return;
        };
        let quiet = self.measured.largest_contactor_current < OPEN_UNDER_LOAD_A;
        let late = now_ms.saturating_sub(tripped_at) >= WATCHDOG_RAMP_DOWN_MS;
        if quiet || late {
            // Opening above 5 A after the host vanished is the PLC's own emergency
            // action, which S4 allows.
            self.open_everything(!quiet, now_ms);
            self.tripped_at_ms = None;
            // The state stays WatchdogTripped until the host's heartbeat returns.
            if silent_for.is_some_and(|ms| ms <= self.watchdog_timeout_ms) {
                self.state = PlcState::Ready;
            }
        }
    }

    fn step_session(&mut self, now_ms: u64, outputs: &mut Vec<PlcOutput>) {
        // A pilot error (CP state E) ends the session at once: the EV opens its
        // contactors.
        if self.ev.is_some() && self.faults.pilot_error {
            if self.phase != Phase::Idle {
                self.fail(HlcError::EvError, now_ms);
            }
            return;
        }
        let Some(ev) = &self.ev else { return };
        let timed_out = now_ms >= self.phase_until_ms;
        let since = now_ms.saturating_sub(self.phase_since_ms);
        match self.phase {
            Phase::Idle => {}
            Phase::Slac if timed_out => {
                self.slac = SlacState::Matched;
                self.enter(
                    Phase::Message(HlcPhase::SupportedAppProtocol),
                    now_ms,
                    MESSAGE_PHASE_MS,
                );
            }
            Phase::Message(phase) if timed_out => match phase {
                HlcPhase::SupportedAppProtocol => {
                    self.enter(
                        Phase::Message(HlcPhase::SessionSetup),
                        now_ms,
                        MESSAGE_PHASE_MS,
                    );
                    // The EVCCID (MAC) arrives in SessionSetupReq; the contract id with it
                    // for Plug & Charge.
                    outputs.push(PlcOutput::EvIdentity {
                        transfer_id: self.next_transfer_id,
                    });
                    self.next_transfer_id = (self.next_transfer_id + 1) % 16;
                }
                HlcPhase::SessionSetup => self.enter(
                    Phase::Message(HlcPhase::ServiceDiscovery),
                    now_ms,
                    MESSAGE_PHASE_MS,
                ),
                HlcPhase::ServiceDiscovery => self.enter(
                    Phase::Message(HlcPhase::PaymentSelection),
                    now_ms,
                    MESSAGE_PHASE_MS,
                ),
                HlcPhase::PaymentSelection => {
                    if self.auth != AuthStatus::Accepted {
                        self.auth_pending = true;
                    }
                    self.enter(Phase::Authorization, now_ms, AUTHORIZATION_TIMEOUT_MS);
                }
                HlcPhase::ChargeParameterDiscovery => {
                    self.enter(Phase::WaitLock, now_ms, LOCK_TIMEOUT_MS)
                }
                HlcPhase::PowerDelivery => self.enter(Phase::CurrentDemand, now_ms, 0),
                HlcPhase::WeldingDetection => self.enter(
                    Phase::Message(HlcPhase::SessionStop),
                    now_ms,
                    MESSAGE_PHASE_MS,
                ),
                HlcPhase::SessionStop => self.enter(Phase::Idle, now_ms, 0),
                _ => {}
            },
            Phase::Authorization => match self.auth {
                AuthStatus::Accepted => {
                    self.enter(
                        Phase::Message(HlcPhase::ChargeParameterDiscovery),
                        now_ms,
                        MESSAGE_PHASE_MS * 2,
                    );
                }
                AuthStatus::Rejected => self.fail(HlcError::EvseStopped, now_ms),
                _ if timed_out => self.fail(HlcError::MessageTimeout, now_ms),
                _ => {}
            },
            Phase::WaitLock => {
                if self.lock == LockState::Locked {
                    self.isolation = IsolationState::Invalid;
                    self.enter(Phase::IsolationTest, now_ms, CABLE_CHECK_MS);
                } else if timed_out || self.lock == LockState::Fault {
                    self.fail(HlcError::CableCheckFailed, now_ms);
                }
            }
            Phase::IsolationTest => {
                if self.isolation == IsolationState::Fault || self.lock != LockState::Locked {
                    self.fail(HlcError::CableCheckFailed, now_ms);
                } else if timed_out {
                    self.isolation = IsolationState::Valid;
                    self.ev_contactors_closed = true;
                    self.enter(Phase::PreCharge, now_ms, PRECHARGE_TIMEOUT_MS);
                }
            }
            Phase::PreCharge => {
                if self.gc.as_ref().is_some_and(Contactor::is_closed) {
                    self.enter(
                        Phase::Message(HlcPhase::PowerDelivery),
                        now_ms,
                        MESSAGE_PHASE_MS,
                    );
                } else if timed_out {
                    self.fail(HlcError::PreChargeFailed, now_ms);
                }
            }
            Phase::CurrentDemand => {
                let gc_open = !self.gc.as_ref().is_some_and(Contactor::is_closed);
                if gc_open {
                    // The PLC sees its gun contactor open under a running session and
                    // tells the EV (ISO 15118-2 EVSE_EmergencyShutdown).
                    self.fail(HlcError::EvseStopped, now_ms);
                } else if ev.is_full() || self.unplug_requested {
                    self.enter(Phase::PowerDeliveryStop, now_ms, EV_STOP_TIMEOUT_MS);
                }
            }
            Phase::PowerDeliveryStop => {
                if self.measured.gun_current.abs() < EV_OPEN_BELOW_A || since >= EV_STOP_TIMEOUT_MS
                {
                    self.ev_contactors_closed = false;
                    self.enter(
                        Phase::Message(HlcPhase::WeldingDetection),
                        now_ms,
                        WELDING_DETECTION_MS,
                    );
                }
            }
            Phase::Slac | Phase::Message(_) => {}
        }
    }

    /// Charges the EV with what flowed in the last step.
    pub fn deliver(&mut self, volts: f64, amps: f64, dt_ms: u64) {
        if let Some(ev) = &mut self.ev {
            ev.charge(volts, amps.max(0.0), dt_ms);
        }
        let kwh = volts * amps.max(0.0) * dt_ms as f64 / 3_600_000_000.0;
        self.meter_energy[0] += kwh;
        self.meter_energy[1] += kwh
            * if self.faults.meter_disagreement {
                1.0 + DISAGREEMENT
            } else {
                1.0
            };
    }

    fn contactors(&self, f: impl Fn(&Contactor) -> bool) -> Contactors {
        let mask = |c: Option<&Contactor>| u8::from(c.is_some_and(&f));
        Contactors {
            gun: mask(self.gc.as_ref()),
            modules: self
                .mc
                .iter()
                .enumerate()
                .fold(0, |m, (i, c)| m | u8::from(f(c)) << i),
            ties: mask(self.mn.as_ref()),
        }
    }

    /// The relay feedback frame.
    pub fn relay_feedback(&self) -> RelayFeedback {
        RelayFeedback {
            closed: self.contactors(Contactor::is_closed),
            faulted: self.contactors(Contactor::disagrees),
            bus_voltage: Volts(round1(self.measured.bus_voltage.clamp(0.0, 1500.0))),
            ack_sequence: self.ack_sequence,
            refused: self.refused,
        }
    }

    /// The tie feedback frame, if a tie (and so its driver) is fitted.
    pub fn tie_feedback(&self) -> Option<TieFeedback> {
        self.mn.as_ref()?;
        Some(TieFeedback {
            far_bus_voltage: Volts(round1(self.measured.far_bus_voltage.clamp(0.0, 1500.0))),
            current: Amps(round1(self.measured.tie_current.clamp(-1000.0, 1000.0))),
        })
    }

    /// The charge info frame.
    pub fn charge_info(&self) -> ChargeInfo {
        ChargeInfo {
            cp: self.cp_state(),
            auth_pending: self.auth_pending,
            auth: self.auth,
            lock: self.lock,
            isolation: self.isolation,
            emergency_stop: self.faults.emergency_stop,
            connector_overtemp: false,
            rcd_trip: false,
            plc_fault: false,
            connector_temperature: Celsius(25.0 + (self.measured.gun_current.abs() / 50.0).round()),
        }
    }

    /// The session frame.
    pub fn session(&self) -> Session {
        let (target_v, target_i, soc) = match &self.ev {
            Some(ev) => {
                let (v, i) = match self.phase {
                    Phase::PreCharge => (ev.ocv(), 2.0),
                    Phase::CurrentDemand => (ev.max_voltage(), ev.requested_current()),
                    _ => (0.0, 0.0),
                };
                (v, i, ev.soc())
            }
            None => (0.0, 0.0, 0.0),
        };
        Session {
            slac: self.slac,
            protocol: self.protocol,
            phase: self.hlc_phase,
            ev_target_voltage: Volts(round1(target_v.clamp(0.0, 1500.0))),
            ev_target_current: Amps(round1(target_i.clamp(0.0, 1000.0))),
            soc: Percent(soc.floor().clamp(0.0, 100.0) as u8),
            ev_ready: matches!(self.phase, Phase::PreCharge | Phase::CurrentDemand),
            error: self.hlc_error,
        }
    }

    /// The two meter frames: the PLC's meter and the shunt.
    pub fn meters(&self) -> [Meter; 2] {
        let v = round1(self.measured.bus_voltage.clamp(0.0, 1500.0));
        let i = self.measured.gun_current.clamp(-1000.0, 1000.0);
        let meter = if self.faults.meter_failure {
            Meter {
                source: MeterSource::PlcMeter,
                valid: false,
                voltage: Volts(0.0),
                current: Amps(0.0),
                energy: KilowattHours(0.0),
            }
        } else {
            Meter {
                source: MeterSource::PlcMeter,
                valid: true,
                voltage: Volts(v),
                current: Amps(round1(i)),
                energy: KilowattHours(register(self.meter_energy[0])),
            }
        };
        let skew = if self.faults.meter_disagreement {
            1.0 + DISAGREEMENT
        } else {
            1.0
        };
        let shunt = Meter {
            source: MeterSource::Shunt,
            valid: true,
            voltage: Volts(v),
            current: Amps(round1((i * skew).clamp(-1000.0, 1000.0))),
            energy: KilowattHours(register(self.meter_energy[1])),
        };
        [meter, shunt]
    }

    /// The heartbeat frame; advances its counter.
    pub fn heartbeat(&mut self, now_ms: u64) -> PlcHeartbeat {
        self.counter = self.counter.wrapping_add(1);
        PlcHeartbeat {
            counter: self.counter,
            state: self.state,
            firmware_major: 1,
            firmware_minor: 4,
            uptime_s: u32::try_from(now_ms.saturating_sub(self.booted_at_ms) / 1000)
                .unwrap_or(u32::MAX),
        }
    }

    /// The EV's MAC and contract id, for the identity transfer.
    pub fn ev_identity(&self) -> Option<(&str, Option<&str>)> {
        let ev = self.ev.as_ref()?;
        Some((
            ev.spec.ev_mac.as_deref().unwrap_or("02:00:00:00:00:01"),
            ev.spec.emaid.as_deref(),
        ))
    }

    /// Internal resistance of the EV, for the electrical solution.
    pub fn ev_resistance(&self) -> f64 {
        INTERNAL_RESISTANCE_OHM
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// An energy register as the meter frame carries it: 10 Wh steps, wrapping.
fn register(kwh: f64) -> f64 {
    ((kwh * 100.0).floor() % 16_777_216.0) / 100.0
}
