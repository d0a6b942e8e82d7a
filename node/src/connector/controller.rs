//! The segment controller: frame intake, supervision of the PLC, the contactors, the
//! modules and the meters, and the periodic commands. The gun's session lives in
//! `session.rs`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ringhub_proto::can::ev_identity::{Assembler, AssemblyEvent};
use ringhub_proto::can::messages::{
    AuthStatus, ChargeInfo, ConfigWrite, Contactors, EvseLimits, EvsePresent, HostHeartbeat,
    HostState, IsolationState, LockCommand, ModuleEnable, ModuleOutput, ModuleSetpoint,
    PlcHeartbeat, PlcState, RefusedReason, RelayCommand, RelayFeedback, Session, TieFeedback,
};
use ringhub_proto::can::{CanMessage, ModuleMessage, PlcMessage};
use ringhub_proto::units::{Amps, KilowattHours, Kilowatts, Volts};

use super::derate::{Derate, DerateCurve};
use ringhub_cluster::record::Evidence;

use super::faults::FaultList;
use super::island::{HostSetpoint, IslandPart};
use super::meter::MeterValidator;
use super::modules::ModuleTracker;
use super::session::GunSession;
use super::snapshot::{ContactorView, FaultCode, FaultCondition, LocalFault, SegmentSnapshot};
use super::{AuthDecision, Command, CommandError, ConnectorEvent, SegmentSetup};

/// Lowest output voltage the modules regulate, offered to the EV.
const MIN_VOLTAGE: f64 = 150.0;

/// A contactor of the segment, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Gun,
    Module(usize),
    Tie,
}

/// What the PLC last told the node.
#[derive(Debug, Clone, Default)]
pub(super) struct PlcView {
    /// When any frame from it last arrived.
    pub last_frame: Option<Instant>,
    pub heartbeat: Option<PlcHeartbeat>,
    pub info: Option<ChargeInfo>,
    pub session: Option<Session>,
    pub feedback: Option<RelayFeedback>,
    /// What the tie driver measures (only with a tie fitted).
    pub tie: Option<TieFeedback>,
}

/// The relay command the node wants, and when each contactor's command last changed.
#[derive(Debug, Clone)]
pub(super) struct Relays {
    /// Contactors to close.
    pub desired: Contactors,
    /// Send the next command with the emergency flag.
    pub emergency: bool,
    /// Sequence of the last command sent.
    pub sequence: u8,
    /// When the desired state of each contactor last changed: gun, modules…, tie.
    changed_at: Vec<Instant>,
    /// The desired state changed since the last command was sent.
    dirty: bool,
    /// Commands that changed some contactor's position.
    operations: u64,
}

impl Relays {
    fn index(&self, which: Which) -> usize {
        match which {
            Which::Gun => 0,
            Which::Module(i) => 1 + i,
            Which::Tie => self.changed_at.len() - 1,
        }
    }

    pub(super) fn wanted(&self, which: Which) -> bool {
        bit(self.desired, which)
    }

    /// Asks for a contactor to be closed or opened.
    pub(super) fn set(&mut self, which: Which, close: bool, now: Instant) {
        if self.wanted(which) == close {
            return;
        }
        let mask = |m: u8, i: usize| if close { m | 1 << i } else { m & !(1 << i) };
        match which {
            Which::Gun => self.desired.gun = mask(self.desired.gun, 0),
            Which::Module(i) => self.desired.modules = mask(self.desired.modules, i),
            Which::Tie => self.desired.ties = mask(self.desired.ties, 0),
        }
        let index = self.index(which);
        self.changed_at[index] = now;
        self.dirty = true;
        self.operations += 1;
    }

    /// How long ago a contactor's desired state last changed.
    pub(super) fn since_change(&self, which: Which, now: Instant) -> Duration {
        now.duration_since(self.changed_at[self.index(which)])
    }
}

fn bit(contactors: Contactors, which: Which) -> bool {
    match which {
        Which::Gun => contactors.gun & 1 == 1,
        Which::Module(i) => contactors.modules >> i & 1 == 1,
        Which::Tie => contactors.ties & 1 == 1,
    }
}

/// The controller of one segment. Cloning it forks the whole state (for what-if runs
/// and benchmarks).
#[derive(Debug, Clone)]
pub struct SegmentController {
    /// As configured.
    pub(super) setup: SegmentSetup,
    /// When the controller started, for fault timestamps.
    started: Instant,
    /// The PLC's latest frames.
    pub(super) plc: PlcView,
    /// Relay commands.
    pub(super) relays: Relays,
    /// The segment's modules.
    pub(super) modules: Vec<ModuleTracker>,
    /// Meter validation for the gun.
    pub(super) meter: MeterValidator,
    /// EV identity reassembly.
    assembler: Assembler,
    /// Connector temperature derating.
    pub(super) connector_derate: Derate,
    /// Active local faults.
    pub(super) faults: FaultList,
    /// Out of service until an operator clears its fault.
    pub(super) out_of_service: bool,
    /// The power the committed plan grants the gun; `None`: no plan applied yet.
    pub(super) budget: Option<Kilowatts>,
    /// The segment's part in its island, as the node last gave it.
    pub(super) island: IslandPart,
    /// What the segment asks of its donors while it hosts an island.
    pub(super) host_out: HostSetpoint,
    /// Since when the tie the plan opens has been waiting for its current to fall.
    pub(super) tie_draining_since: Option<Instant>,
    /// Since when the tie the plan closes has been matched, and the two sides' bus
    /// voltages then (this segment's, the far side's).
    pub(super) tie_match_since: Option<(Instant, (f64, f64))>,
    /// Since when the plan has wanted the tie closed.
    pub(super) tie_wanted_since: Option<Instant>,
    /// The gun's session, if a gun is fitted.
    pub(super) gun: Option<GunSession>,
    /// Messages to send.
    outbox: VecDeque<CanMessage>,
    /// Messages that go out before the periodic ones, in the order they were made:
    /// relay commands and config writes.
    urgent: VecDeque<CanMessage>,
    /// Events to report.
    pub(super) events: VecDeque<ConnectorEvent>,
    /// Next host heartbeat.
    next_heartbeat: Instant,
    /// Next periodic relay command, setpoints and limits.
    next_command: Instant,
    /// Next EVSE present frame.
    next_present: Instant,
    /// Next control tick.
    next_tick: Instant,
    /// Host heartbeat counter.
    heartbeat_counter: u8,
}

impl SegmentController {
    pub fn new(setup: SegmentSetup, now: Instant) -> Self {
        let contactors = 2 + setup.modules.len();
        let gun = setup.gun.map(GunSession::new);
        Self {
            plc: PlcView::default(),
            relays: Relays {
                desired: Contactors::default(),
                emergency: false,
                sequence: 0,
                changed_at: vec![now; contactors],
                dirty: true,
                operations: 0,
            },
            modules: setup
                .modules
                .iter()
                .copied()
                .map(ModuleTracker::new)
                .collect(),
            meter: MeterValidator::default(),
            assembler: Assembler::default(),
            connector_derate: Derate::new(DerateCurve::CONNECTOR),
            faults: FaultList::default(),
            out_of_service: false,
            budget: None,
            island: IslandPart::default(),
            host_out: HostSetpoint::default(),
            tie_draining_since: None,
            tie_match_since: None,
            tie_wanted_since: None,
            gun,
            outbox: VecDeque::new(),
            urgent: VecDeque::new(),
            events: VecDeque::new(),
            next_heartbeat: now,
            next_command: now,
            next_present: now,
            next_tick: now,
            heartbeat_counter: 0,
            started: now,
            setup,
        }
    }

    pub fn setup(&self) -> &SegmentSetup {
        &self.setup
    }

    /// The faults active now, oldest first.
    pub fn faults(&self) -> &[LocalFault] {
        self.faults.active()
    }

    /// Puts back a fault that the hub record holds for this segment, after a restart, so
    /// that a latch an operator must clear (S9) keeps blocking what it blocked. It is not
    /// reported as a new fault (no event): it is latched already. Returns false, changing
    /// nothing, when the fault is about another segment.
    pub fn restore_fault(&mut self, fault: &LocalFault, now: Instant) -> bool {
        let segment = format!("segment {}", self.setup.segment);
        let ours = fault.subject == segment
            || fault
                .subject
                .strip_prefix(&segment)
                .is_some_and(|rest| rest.starts_with(' '))
            || self
                .setup
                .gun
                .is_some_and(|g| fault.subject == format!("gun {}", g.id.0))
            || self
                .setup
                .modules
                .iter()
                .any(|m| fault.subject == format!("module {}", m.id));
        if !ours {
            return false;
        }
        if self.faults.restore(fault.clone()) && fault.code == FaultCode::ContactorWelded {
            self.out_of_service = true;
        }
        self.control(now);
        true
    }

    /// Uptime, for fault timestamps.
    pub(super) fn uptime(&self, now: Instant) -> Duration {
        now.duration_since(self.started)
    }

    /// A frame from this segment's PLC or one of its modules. Frames that belong to
    /// other devices are ignored; the node routes by slot and address.
    pub fn handle_frame(&mut self, message: &CanMessage, now: Instant) {
        match *message {
            CanMessage::Plc { slot, message } if slot == self.setup.slot => {
                self.handle_plc(message, now)
            }
            CanMessage::Module { address, message } => {
                let Some(module) = self.modules.iter_mut().find(|m| m.setup.address == address)
                else {
                    return;
                };
                match message {
                    ModuleMessage::Status(status) => module.handle_status(status, now),
                    ModuleMessage::Faults(faults) => module.handle_faults(faults, now),
                    ModuleMessage::Setpoint(_) | ModuleMessage::Enable(_) => {}
                }
            }
            CanMessage::Plc { .. } => {}
        }
    }

    fn handle_plc(&mut self, message: PlcMessage, now: Instant) {
        self.plc.last_frame = Some(now);
        match message {
            PlcMessage::PlcHeartbeat(heartbeat) => self.plc.heartbeat = Some(heartbeat),
            PlcMessage::ChargeInfo(info) => {
                self.connector_derate.update(info.connector_temperature.0);
                self.plc.info = Some(info);
            }
            PlcMessage::Session(session) => self.plc.session = Some(session),
            PlcMessage::RelayFeedback(feedback) => self.plc.feedback = Some(feedback),
            PlcMessage::TieFeedback(tie) => self.plc.tie = Some(tie),
            PlcMessage::Meter(meter) => self.meter.update(meter, now),
            PlcMessage::EvIdentity(frame) => {
                self.assembler.handle_frame(self.setup.slot, frame, now);
                while let Some(event) = self.assembler.poll_event() {
                    if let AssemblyEvent::Complete { identity, .. } = event {
                        self.on_identity(identity, now);
                    }
                }
            }
            PlcMessage::RfidRead(read) => self.on_rfid(read.uid.to_string(), now),
            // Host-to-PLC frames: another host on the bus, or our own echo.
            PlcMessage::RelayCommand(_)
            | PlcMessage::HostHeartbeat(_)
            | PlcMessage::ConfigWrite(_)
            | PlcMessage::EvseLimits(_)
            | PlcMessage::EvsePresent(_) => {}
        }
        // Control runs on events too, not only on the tick: a fault frame acts at once.
        self.control(now);
    }

    /// The answer of the authorisation source for `token`.
    pub fn handle_auth_decision(
        &mut self,
        token: &super::IdToken,
        decision: AuthDecision,
        now: Instant,
    ) {
        self.on_decision(token, decision, now);
        self.control(now);
    }

    /// An operator or CSMS command; a refused one changes nothing.
    pub fn handle_command(&mut self, command: Command, now: Instant) -> Result<(), CommandError> {
        match command {
            Command::SetAvailable(available) => {
                let gun = self.gun.as_mut().ok_or(CommandError::NoGun)?;
                gun.available = available;
                if !available {
                    gun.stop_requested = true;
                }
            }
            Command::StopSession => {
                self.gun.as_mut().ok_or(CommandError::NoGun)?.stop_requested = true
            }
            Command::ClearFault(code) => self.clear_fault(code)?,
            Command::SetConnectionTimeout(timeout) => {
                self.setup.timing.connection_timeout = timeout
            }
            Command::RemoteStart(token) => self.remote_start(token, now)?,
            Command::Unlock => self.unlock(now)?,
            Command::SetBudget(budget) => self.budget = budget,
        }
        self.control(now);
        Ok(())
    }

    fn clear_fault(&mut self, code: FaultCode) -> Result<(), CommandError> {
        let subjects: Vec<String> = self
            .faults
            .active()
            .iter()
            .filter(|f| f.code == code)
            .map(|f| f.subject.clone())
            .collect();
        if subjects.is_empty() {
            return Err(CommandError::NotActive(code));
        }
        if let Some(why) = self.still_holds(code) {
            return Err(CommandError::ConditionHolds { code, why });
        }
        for subject in subjects {
            self.faults.clear(code, &subject);
        }
        if !self.faults.any(FaultCode::ContactorWelded) {
            self.out_of_service = false;
        }
        Ok(())
    }

    /// Why an operator may not clear `code` yet: what tripped it is still there. Only
    /// the faults an operator clears are judged here; the others clear by themselves
    /// once their condition is gone.
    fn still_holds(&self, code: FaultCode) -> Option<String> {
        match code {
            FaultCode::ContactorWelded => {
                let feedback = self.plc.feedback?;
                let stuck = [Which::Gun, Which::Tie]
                    .into_iter()
                    .chain((0..self.modules.len()).map(Which::Module))
                    .any(|w| bit(feedback.closed, w) && !self.relays.wanted(w));
                stuck.then(|| {
                    "feedback still shows a contactor closed that was commanded open".into()
                })
            }
            FaultCode::IsolationFault => self
                .plc
                .info
                .is_some_and(|i| i.isolation == IsolationState::Fault)
                .then(|| "the isolation monitor still reports a fault".into()),
            _ => None,
        }
    }

    /// Each active fault and whether its condition holds: a fault cleared by its rule
    /// is active exactly while it holds; one that needs an operator holds while
    /// [`Self::still_holds`] says so.
    fn conditions(&self) -> Vec<FaultCondition> {
        self.faults
            .active()
            .iter()
            .map(|fault| {
                let why = if fault.code.needs_operator() {
                    self.still_holds(fault.code)
                } else {
                    Some(fault.detail.clone())
                };
                FaultCondition {
                    code: fault.code,
                    subject: fault.subject.clone(),
                    holds: why.is_some(),
                    why: why.unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The fast tick: supervision, the session, and periodic frames.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.setup.timing.tick;
        self.control(now);
    }

    /// When [`Self::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    /// Supervision, session, commands: run on every tick and every event.
    pub(super) fn control(&mut self, now: Instant) {
        self.supervise(now);
        self.host_out.bus_voltage = self.plc.feedback.map_or(Volts(0.0), |f| f.bus_voltage);
        self.step_session(now);
        self.step_tie(now);
        self.send_commands(now);
        while let Some((fault, raised)) = self.faults.poll_change() {
            self.events
                .push_back(ConnectorEvent::Fault { fault, raised });
        }
        self.report_status();
    }

    pub(super) fn plc_online(&self, now: Instant) -> bool {
        self.plc
            .last_frame
            .is_some_and(|at| now.duration_since(at) < self.setup.timing.plc_silence)
    }

    fn subject(&self, which: Which) -> String {
        let segment = self.setup.segment;
        match which {
            Which::Gun => format!("segment {segment} gc"),
            Which::Module(i) => format!("segment {segment} mc{i}"),
            Which::Tie => format!("segment {segment} mn"),
        }
    }

    /// Raises and clears the faults that follow from what the devices report.
    fn supervise(&mut self, now: Instant) {
        let uptime = self.uptime(now);
        let segment = format!("segment {}", self.setup.segment);
        let online = self.plc_online(now);
        // Give the PLC a silence period from start before calling it lost.
        let lost = !online && self.uptime(now) >= self.setup.timing.plc_silence;
        let silence = self
            .plc
            .last_frame
            .map_or(uptime, |at| now.duration_since(at));
        self.faults.set(
            FaultCode::PlcSilent,
            &segment,
            lost,
            || {
                let detail = format!("no frame for {} ms", silence.as_millis());
                let evidence = vec![
                    Evidence::millis("plc_silent_for", silence),
                    Evidence::millis("limit", self.setup.timing.plc_silence),
                ];
                (detail, evidence)
            },
            uptime,
        );
        if let Some(heartbeat) = self.plc.heartbeat
            && heartbeat.state == PlcState::WatchdogTripped
            && online
        {
            // The PLC opened everything on its own: what the node wants must follow, as
            // a new command, so that feedback is judged against it (from now, once the
            // PLC acknowledges it) and not against the command from before the trip.
            let all = [Which::Gun, Which::Tie]
                .into_iter()
                .chain((0..self.modules.len()).map(Which::Module));
            for which in all {
                self.relays.set(which, false, now);
            }
        }
        for i in 0..self.modules.len() {
            let module = &self.modules[i];
            let subject = format!("module {}", module.setup.id);
            let silent = !module.is_online(now) && uptime >= super::modules::MODULE_SILENCE;
            let hot = module.is_overheated();
            let hard = module.has_hard_fault();
            let temperature = module.temperature().unwrap_or_default();
            self.faults.set(
                FaultCode::ModuleSilent,
                &subject,
                silent,
                || {
                    let limit = Evidence::millis("limit", super::modules::MODULE_SILENCE);
                    ("no status for 1 s".into(), vec![limit])
                },
                uptime,
            );
            self.faults.set(
                FaultCode::ModuleOvertemp,
                &subject,
                hot,
                || {
                    let detail = format!("{temperature:.0} °C, past its shutdown temperature");
                    (
                        detail,
                        vec![Evidence::tenths("temperature", temperature, "C")],
                    )
                },
                uptime,
            );
            self.faults.set(
                FaultCode::ModuleFault,
                &subject,
                hard,
                || ("the module reports a fault".into(), Vec::new()),
                uptime,
            );
        }
        if self.gun.is_some() {
            let gun = format!("gun {}", self.gun.as_ref().map_or(0, |g| g.setup.id.0));
            let failed = self.meter.meter_failed(now);
            let disagree = self.meter.disagreement();
            self.faults.set(
                FaultCode::MeterFailure,
                &gun,
                failed,
                || {
                    let detail = "the PLC meter reads invalid; using the shunt".into();
                    (detail, Vec::new())
                },
                uptime,
            );
            self.faults.set(
                FaultCode::MeterDisagreement,
                &gun,
                disagree,
                || ("meter and shunt differ beyond 2 A / 3 %".into(), Vec::new()),
                uptime,
            );
            let info = self.plc.info;
            let pressed = info.is_some_and(|i| i.emergency_stop || i.rcd_trip);
            let why = || {
                let flag = |key: &str, on: bool| Evidence {
                    key: key.into(),
                    value: i64::from(on),
                    unit: String::new(),
                };
                let (stop, rcd) = info.map_or((false, false), |i| (i.emergency_stop, i.rcd_trip));
                let detail = if stop {
                    "the emergency stop is pressed"
                } else {
                    "the residual-current device tripped"
                };
                (
                    detail.to_owned(),
                    vec![flag("emergency_stop", stop), flag("rcd_trip", rcd)],
                )
            };
            self.faults
                .set(FaultCode::EmergencyStop, &gun, pressed, why, uptime);
            if self
                .plc
                .info
                .is_some_and(|i| i.isolation == IsolationState::Fault)
            {
                let bus = self.plc.feedback.map_or(0.0, |f| f.bus_voltage.0);
                self.faults.raise_with(
                    FaultCode::IsolationFault,
                    &gun,
                    "the isolation monitor reports a fault".into(),
                    vec![Evidence::tenths("bus_voltage", bus, "V")],
                    uptime,
                );
            }
        }
        self.supervise_contactors(now);
    }

    /// Welds (S9) and failures to close, from feedback against command.
    fn supervise_contactors(&mut self, now: Instant) {
        let Some(feedback) = self.plc.feedback else {
            return;
        };
        if !self.plc_online(now) {
            return;
        }
        let uptime = self.uptime(now);
        let timing = self.setup.timing;
        let mut all = vec![Which::Gun, Which::Tie];
        all.extend((0..self.modules.len()).map(Which::Module));
        for which in all {
            let wanted = self.relays.wanted(which);
            let closed = bit(feedback.closed, which);
            let since = self.relays.since_change(which, now);
            let acknowledged = feedback.ack_sequence == self.relays.sequence;
            if !wanted && closed && since >= timing.release_timeout && acknowledged {
                let subject = self.subject(which);
                let detail = format!(
                    "feedback closed {} ms after the open command",
                    since.as_millis()
                );
                let evidence = vec![
                    Evidence::millis("closed_after_open_command", since),
                    Evidence::millis("release_timeout", timing.release_timeout),
                    Evidence::tenths("bus_voltage", feedback.bus_voltage.0, "V"),
                ];
                if self.faults.raise_with(
                    FaultCode::ContactorWelded,
                    &subject,
                    detail,
                    evidence,
                    uptime,
                ) {
                    self.out_of_service = true;
                }
            }
            let refused = acknowledged && feedback.refused != RefusedReason::None;
            if wanted && !closed && since >= timing.operate_timeout && !refused && acknowledged {
                let subject = self.subject(which);
                let detail = format!(
                    "feedback open {} ms after the close command",
                    since.as_millis()
                );
                self.faults
                    .raise(FaultCode::ContactorFailedToClose, &subject, detail, uptime);
            }
        }
    }

    /// Sends what is due: heartbeats, relay commands (on change and periodically),
    /// module setpoints, EVSE limits and present values.
    fn send_commands(&mut self, now: Instant) {
        let timing = self.setup.timing;
        let slot = self.setup.slot;
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + timing.heartbeat;
            self.heartbeat_counter = self.heartbeat_counter.wrapping_add(1);
            let watchdog_timeout_ms =
                u16::try_from(timing.watchdog.as_millis()).unwrap_or(u16::MAX);
            let heartbeat = HostHeartbeat {
                counter: self.heartbeat_counter,
                state: HostState::Running,
                watchdog_timeout_ms,
            };
            self.outbox.push_back(CanMessage::Plc {
                slot,
                message: PlcMessage::HostHeartbeat(heartbeat),
            });
        }
        let periodic = now >= self.next_command;
        if periodic {
            self.next_command = now + timing.command_period;
        }
        if periodic || self.relays.dirty {
            if self.relays.dirty {
                self.relays.sequence = self.relays.sequence.wrapping_add(1);
            }
            self.relays.dirty = false;
            let command = RelayCommand {
                sequence: self.relays.sequence,
                closed: self.relays.desired,
                emergency: self.relays.emergency,
            };
            self.urgent.push_back(CanMessage::Plc {
                slot,
                message: PlcMessage::RelayCommand(command),
            });
            // The flag belongs to the command that ordered the emergency open; the PLC
            // remembers it for that opening, and later commands are ordinary again.
            self.relays.emergency = false;
        }
        if periodic {
            for module in &self.modules {
                let sp = module.setpoint;
                let setpoint = ModuleSetpoint {
                    voltage: Volts(round1(sp.voltage.0.clamp(0.0, 1000.0))),
                    current_limit: Amps(round1(sp.current.0.clamp(0.0, 500.0))),
                    power_limit: Kilowatts((sp.power.0.clamp(0.0, 200.0) * 100.0).floor() / 100.0),
                };
                let output = if sp.enabled {
                    ModuleOutput::On
                } else {
                    ModuleOutput::Off
                };
                let address = module.setup.address;
                self.outbox.push_back(CanMessage::Module {
                    address,
                    message: ModuleMessage::Setpoint(setpoint),
                });
                let enable = ModuleEnable {
                    output,
                    sequence: 0,
                };
                self.outbox.push_back(CanMessage::Module {
                    address,
                    message: ModuleMessage::Enable(enable),
                });
            }
        }
        let Some(gun) = &self.gun else { return };
        let plugged = gun.plugged(&self.plc);
        if periodic && plugged {
            let offered = self.offered_current(now);
            let limits = EvseLimits {
                max_voltage: Volts(round1(
                    gun.setup.max_voltage.0.min(self.max_module_voltage()),
                )),
                max_current: Amps(round1(offered)),
                max_power: Kilowatts(round1(self.available_power(now).min(1000.0))),
                min_voltage: Volts(MIN_VOLTAGE),
            };
            self.outbox.push_back(CanMessage::Plc {
                slot,
                message: PlcMessage::EvseLimits(limits),
            });
        }
        if now >= self.next_present && plugged {
            self.next_present = now + timing.present_period;
            let reading = self.meter.trusted(now);
            let present = EvsePresent {
                voltage: Volts(round1(self.plc.feedback.map_or(0.0, |f| f.bus_voltage.0))),
                current: Amps(round1(
                    reading.map_or(0.0, |r| r.current.0).clamp(0.0, 1000.0),
                )),
                current_limit_achieved: false,
                voltage_limit_achieved: false,
                power_limit_achieved: false,
                stop_requested: gun.evse_stop(),
            };
            self.outbox.push_back(CanMessage::Plc {
                slot,
                message: PlcMessage::EvsePresent(present),
            });
        }
    }

    fn max_module_voltage(&self) -> f64 {
        self.modules
            .iter()
            .map(|m| m.setup.max_voltage.0)
            .fold(0.0, f64::max)
    }

    /// The voltage the EV asks for, or the lowest the modules regulate.
    fn ev_voltage(&self) -> f64 {
        self.plc
            .session
            .map_or(0.0, |s| s.ev_target_voltage.0)
            .max(MIN_VOLTAGE)
    }

    /// Power the segment's in-service modules, and a host's connected donors, can give
    /// now, within the budget.
    pub(super) fn available_power(&self, now: Instant) -> f64 {
        let voltage = self.ev_voltage();
        let modules: f64 = self
            .modules
            .iter()
            .map(|m| m.available_power(now))
            .sum::<f64>()
            + self.donor_current() * voltage / 1000.0;
        self.budget.map_or(modules, |b| modules.min(b.0))
    }

    /// Current offered to the EV: the modules' capability at the EV's voltage, after
    /// derating, capped by the gun's rating, its connector's temperature and the plan's
    /// budget.
    pub(super) fn offered_current(&self, now: Instant) -> f64 {
        let Some(gun) = &self.gun else { return 0.0 };
        let voltage = self.ev_voltage();
        let modules: f64 = self
            .modules
            .iter()
            .map(|m| m.current_capability(voltage, now))
            .sum::<f64>()
            + self.donor_current();
        let budget = self
            .budget
            .map_or(f64::INFINITY, |b| b.0 * 1000.0 / voltage);
        modules
            .min(gun.setup.max_current.0 * self.connector_derate.factor())
            .min(budget)
    }

    /// Writes a PLC config parameter.
    pub(super) fn write_config(&mut self, write: ConfigWrite) {
        self.urgent.push_back(CanMessage::Plc {
            slot: self.setup.slot,
            message: PlcMessage::ConfigWrite(write),
        });
    }

    /// Writes param 20.
    pub(super) fn write_auth(&mut self, status: AuthStatus) {
        self.write_config(ConfigWrite::AuthGranted(status));
    }

    /// Writes param 30.
    pub(super) fn write_lock(&mut self, command: LockCommand) {
        self.write_config(ConfigWrite::Lock(command));
    }

    /// The next message to put on the bus.
    pub fn poll_transmit(&mut self) -> Option<CanMessage> {
        self.urgent.pop_front().or_else(|| self.outbox.pop_front())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConnectorEvent> {
        self.events.pop_front()
    }

    /// Energy of the running session from the trusted meter.
    pub(super) fn session_energy(&self) -> KilowattHours {
        KilowattHours(self.meter.energy())
    }

    /// What the segment looks like now.
    pub fn snapshot(&self, now: Instant) -> SegmentSnapshot {
        let feedback = self.plc.feedback;
        let view = |which: Which| ContactorView {
            commanded: self.relays.wanted(which),
            closed: feedback.is_some_and(|f| bit(f.closed, which)),
            faulted: feedback.is_some_and(|f| bit(f.faulted, which)),
        };
        SegmentSnapshot {
            segment: self.setup.segment,
            plc_online: self.plc_online(now),
            plc_silent_for: self
                .plc
                .last_frame
                .map_or(self.uptime(now), |at| now.duration_since(at)),
            bus_voltage: feedback.map_or(Volts(0.0), |f| f.bus_voltage),
            gc: self.setup.gun.map(|_| view(Which::Gun)),
            mc: self
                .modules
                .iter()
                .enumerate()
                .map(|(i, m)| (m.setup.id, view(Which::Module(i))))
                .collect(),
            mn: self.setup.tie_fitted.then(|| view(Which::Tie)),
            isolation: self
                .plc
                .info
                .map_or(IsolationState::Invalid, |i| i.isolation),
            relay_sequence: self.relays.sequence,
            out_of_service: self.out_of_service,
            gun: self.gun.as_ref().map(|g| self.gun_snapshot(g, now)),
            modules: self.modules.iter().map(|m| m.snapshot(now)).collect(),
            faults: self.faults.active().to_vec(),
            conditions: self.conditions(),
            contactor_operations: self.relays.operations,
        }
    }
}

pub(super) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
