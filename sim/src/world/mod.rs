//! The simulated hardware of a whole hub, pure: no clock, no sockets.
//!
//! The [`World`] holds every segment (its PLC board, contactors and the EV at its gun)
//! and every power module, and advances them in fixed physics steps:
//!
//! ```text
//!  handle_frame ─► PLC / module commands        apply ─► plug, unplug, RFID, faults
//!        step: contactors move ─► referee checks what moved (S3, S4, S5, S9)
//!              modules ramp and heat ─► islands solved ─► EVs charge
//!              PLC firmware (session, watchdog) ─► referee checks states (S2, ratings)
//!              periodic and on-change frames ─► poll_transmit
//! ```
//!
//! Time is the step count: the same config, seed and inputs give the same world.

mod action;
pub mod contactor;
pub mod electrical;
pub mod ev;
pub mod module;
pub mod plc;
pub mod referee;
mod truth;

use std::collections::{BTreeSet, HashMap, VecDeque};

use ringhub_proto::can::ev_identity::EvIdentity;
use ringhub_proto::can::messages::{
    AuthStatus, LockState, MacAddress, ModuleMessage, PlcMessage, RfidRead, RfidUid,
};
use ringhub_proto::can::{CanFrame, CanMessage, ModuleAddress, PlcSlot};
use ringhub_proto::config::{CabinetId, HubConfig, Tie};

pub use self::action::{Action, ActionError, ActionReply, EvSpec, FaultKind, FaultSpec};
pub use self::referee::Violation;
pub use self::truth::GroundTruth;

use self::contactor::{Contactor, ContactorFault};
use self::electrical::{Load, Solution, Source};
use self::ev::Ev;
use self::module::{PowerModule, Ratings};
use self::plc::{Measurements, OPEN_UNDER_LOAD_A, PRECHARGE_MATCH_V, Plc, PlcOutput, SLAC_MS};
use self::referee::{Referee, WELD_GRACE_MS, tie_close_allowed};

/// A frame a device puts on its cabinet's bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The cabinet whose bus carries it.
    pub cabinet: CabinetId,
    /// The frame.
    pub frame: CanFrame,
}

/// Cycle times of the periodic frames, from the DBC's GenMsgCycleTime.
const RELAY_FEEDBACK_MS: u64 = 50;
const CHARGE_INFO_MS: u64 = 100;
const SESSION_MS: u64 = 100;
const METER_MS: u64 = 200;
const PLC_HEARTBEAT_MS: u64 = 100;
const MODULE_STATUS_MS: u64 = 100;
const MODULE_FAULTS_MS: u64 = 500;
/// Extra SLAC matching time drawn per session, so sessions do not run in lock-step.
const SLAC_JITTER_MS: u64 = 500;

/// One segment: its place, its PLC board and what it last reported.
#[derive(Debug)]
struct SegmentSim {
    /// Cabinet whose bus the PLC is on.
    cabinet: CabinetId,
    /// The PLC's slot on that bus.
    slot: PlcSlot,
    /// Gun id, if a gun is fitted.
    gun: Option<u16>,
    /// Firmware and hardware.
    plc: Plc,
    /// Indices into `World::modules`, in module-contactor order.
    modules: Vec<usize>,
    /// Last relay feedback, tie feedback and charge info sent, to send again on change.
    last_feedback: Option<ringhub_proto::can::messages::RelayFeedback>,
    last_tie: Option<ringhub_proto::can::messages::TieFeedback>,
    last_info: Option<ringhub_proto::can::messages::ChargeInfo>,
    /// When each contactor's weld was first reported, by contactor name.
    weld_reported_at: HashMap<String, u64>,
}

/// One power module and where it sits.
#[derive(Debug)]
struct ModuleSim {
    /// Module id from the config.
    id: u16,
    /// Segment index whose bus its contactor connects to.
    segment: usize,
    /// Its position among the segment's module contactors.
    contactor: usize,
    /// Cabinet whose bus it is on.
    cabinet: CabinetId,
    /// Its address on that bus.
    address: ModuleAddress,
    /// The module itself.
    module: PowerModule,
    /// Injected: it stops sending frames.
    silent: bool,
    /// Last faults frame sent, to send again on change.
    last_faults: Option<ringhub_proto::can::messages::ModuleFaults>,
}

/// A fault injected through [`Action::InjectFault`], kept to undo it.
#[derive(Debug, Clone)]
struct InjectedFault {
    /// What was injected.
    spec: FaultSpec,
    /// Resolved target: segment or module index.
    index: usize,
}

/// The whole hub's hardware.
#[derive(Debug)]
pub struct World {
    /// The hub as configured.
    config: HubConfig,
    /// Simulation time, ms since start.
    now_ms: u64,
    /// Seeded generator for the few random choices (SLAC timing).
    rng: SplitMix64,
    /// Segments in ring order.
    segments: Vec<SegmentSim>,
    /// Every module.
    modules: Vec<ModuleSim>,
    /// The electrical state after the last step.
    solution: Solution,
    /// Safety invariants.
    referee: Referee,
    /// Frames waiting to go out.
    outbox: VecDeque<Transmit>,
    /// Faults injected and not cleared, by id.
    faults: std::collections::BTreeMap<u64, InjectedFault>,
    /// Next fault id.
    next_fault_id: u64,
    /// Current into each segment's EV, from the last solution.
    gun_current: Vec<f64>,
    /// Frames from hosts that did not decode.
    malformed_frames: u64,
}

impl World {
    /// The physics step.
    pub const STEP_MS: u64 = 10;

    /// A hub as the config describes it, every contactor open, no EV, time 0.
    pub fn new(config: &HubConfig, seed: u64) -> World {
        let delay_ms = u64::try_from(config.sim.contactor_delay.as_millis()).unwrap_or(u64::MAX);
        let watchdog_ms =
            u64::try_from(config.sim.watchdog_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut segments = Vec::new();
        let mut modules = Vec::new();
        for (index, segment) in config.segments.iter().enumerate() {
            let mut module_indices = Vec::new();
            for (contactor, module) in segment.modules.iter().enumerate() {
                module_indices.push(modules.len());
                let ratings = Ratings {
                    max_power: module.max_power,
                    max_current: module.max_current,
                    max_voltage: module.max_voltage,
                };
                modules.push(ModuleSim {
                    id: module.id.0,
                    segment: index,
                    contactor,
                    cabinet: segment.cabinet.clone(),
                    address: module.address,
                    module: PowerModule::new(ratings, 0),
                    silent: false,
                    last_faults: None,
                });
            }
            let plc = Plc::new(
                segment.gun.is_some(),
                segment.modules.len(),
                segment.tie == Tie::Fitted,
                (delay_ms, delay_ms),
                watchdog_ms,
                0,
            );
            segments.push(SegmentSim {
                cabinet: segment.cabinet.clone(),
                slot: segment.plc_slot,
                gun: segment.gun.as_ref().map(|gun| gun.id.0),
                plc,
                modules: module_indices,
                last_feedback: None,
                last_tie: None,
                last_info: None,
                weld_reported_at: HashMap::new(),
            });
        }
        let n = segments.len();
        World {
            config: config.clone(),
            now_ms: 0,
            rng: SplitMix64(seed),
            segments,
            modules,
            solution: electrical::solve(&vec![false; n], &[], &[], &vec![0.0; n], 0),
            referee: Referee::default(),
            outbox: VecDeque::new(),
            faults: std::collections::BTreeMap::new(),
            next_fault_id: 1,
            gun_current: vec![0.0; n],
            malformed_frames: 0,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// A host sent `frame` on `cabinet`'s bus.
    pub fn handle_frame(&mut self, cabinet: &CabinetId, frame: CanFrame) {
        let now = self.now_ms;
        let Ok(message) = CanMessage::decode(&frame) else {
            self.malformed_frames += 1;
            return;
        };
        match message {
            CanMessage::Plc { slot, message } => {
                let Some(index) = self
                    .segments
                    .iter()
                    .position(|s| &s.cabinet == cabinet && s.slot == slot)
                else {
                    return;
                };
                let segment = &mut self.segments[index];
                match message {
                    PlcMessage::RelayCommand(command) => {
                        segment.plc.handle_relay_command(command, now);
                        self.check_welded_commanded(index);
                    }
                    PlcMessage::HostHeartbeat(heartbeat) => {
                        segment.plc.handle_heartbeat(heartbeat, now)
                    }
                    PlcMessage::ConfigWrite(write) => segment.plc.handle_config(write, now),
                    PlcMessage::EvsePresent(present) => segment.plc.handle_present(present, now),
                    // Limits are for the EV's information; the physics needs only what flows.
                    PlcMessage::EvseLimits(_) => {}
                    // Frames a PLC sends, not a host: another device's business.
                    _ => {}
                }
            }
            CanMessage::Module { address, message } => {
                let Some(sim) = self
                    .modules
                    .iter_mut()
                    .find(|m| &m.cabinet == cabinet && m.address == address)
                else {
                    return;
                };
                match message {
                    ModuleMessage::Setpoint(s) => {
                        sim.module
                            .set_setpoint(s.voltage, s.current_limit, s.power_limit, now)
                    }
                    ModuleMessage::Enable(e) => sim.module.set_enabled(
                        e.output == ringhub_proto::can::messages::ModuleOutput::On,
                        now,
                    ),
                    ModuleMessage::Status(_) | ModuleMessage::Faults(_) => {}
                }
            }
        }
    }

    /// S9: a contactor whose weld the PLC has reported for longer than the grace time
    /// must not be commanded closed again.
    fn check_welded_commanded(&mut self, index: usize) {
        let now = self.now_ms;
        let segment = &self.segments[index];
        for (name, contactor) in named_contactors(&segment.plc) {
            let reported = segment
                .weld_reported_at
                .get(&name)
                .is_some_and(|at| now.saturating_sub(*at) >= WELD_GRACE_MS);
            if reported
                && contactor.fault() == Some(ContactorFault::Welded)
                && contactor.commanded()
            {
                self.referee.event(
                    now,
                    "S9",
                    format!("segment {index} {name}"),
                    "host commanded a contactor closed after its weld was reported".into(),
                );
            }
        }
    }

    /// Carries out an action from the control API or a scenario.
    pub fn apply(&mut self, action: Action) -> Result<ActionReply, ActionError> {
        let now = self.now_ms;
        match action {
            Action::Plug(spec) => {
                let index = self.gun_segment(spec.gun)?;
                let mac = spec.ev_mac.as_deref().map(parse_mac).transpose()?;
                let identity = EvIdentity {
                    mac: mac.unwrap_or_default(),
                    emaid: spec.emaid.clone(),
                };
                identity
                    .frames(0)
                    .map_err(|e| ActionError::new("emaid", e.to_string()))?;
                let ev = Ev::new(spec).map_err(|e| ActionError::new(e.field, e.message))?;
                let plc = &mut self.segments[index].plc;
                if plc.ev.is_some() {
                    return Err(ActionError::new("gun", "an EV is already plugged in"));
                }
                let slac_ms = SLAC_MS + self.rng.next() % SLAC_JITTER_MS;
                plc.plug(ev, slac_ms, now);
            }
            Action::Unplug { gun } => {
                let index = self.gun_segment(gun)?;
                let plc = &mut self.segments[index].plc;
                if plc.ev.is_none() {
                    return Err(ActionError::new("gun", "no EV is plugged in"));
                }
                plc.request_unplug(now);
            }
            Action::Rfid { gun, id_tag } => {
                let index = self.gun_segment(gun)?;
                let uid = parse_uid(&id_tag).ok_or_else(|| {
                    ActionError::new(
                        "id_tag",
                        "must be the card UID: 2 to 14 hex digits (1 to 7 bytes)",
                    )
                })?;
                let segment = &mut self.segments[index];
                segment.plc.rfid();
                if !segment.plc.faults.silent {
                    let message = CanMessage::Plc {
                        slot: segment.slot,
                        message: PlcMessage::RfidRead(RfidRead { uid }),
                    };
                    push_frame(&mut self.outbox, &segment.cabinet, message);
                }
            }
            Action::InjectFault(spec) => {
                let index = self.fault_target(&spec)?;
                self.set_fault(&spec, index, true);
                let id = self.next_fault_id;
                self.next_fault_id += 1;
                self.faults.insert(id, InjectedFault { spec, index });
                return Ok(ActionReply::FaultInjected { id });
            }
            Action::ClearFault { id } => {
                let fault = self
                    .faults
                    .remove(&id)
                    .ok_or_else(|| ActionError::new("id", format!("no injected fault {id}")))?;
                self.set_fault(&fault.spec, fault.index, false);
            }
            Action::Send { cabinet, frame } => {
                let cabinet = self
                    .config
                    .cabinets
                    .iter()
                    .find(|c| c.id.as_str() == cabinet)
                    .map(|c| c.id.clone())
                    .ok_or_else(|| {
                        ActionError::new("cabinet", format!("unknown cabinet {cabinet:?}"))
                    })?;
                let frame: CanFrame =
                    frame
                        .parse()
                        .map_err(|e: ringhub_proto::can::FrameSyntaxError| {
                            ActionError::new("frame", e.to_string())
                        })?;
                self.handle_frame(&cabinet, frame);
            }
        }
        Ok(ActionReply::Done)
    }

    fn gun_segment(&self, gun: u16) -> Result<usize, ActionError> {
        self.segments
            .iter()
            .position(|s| s.gun == Some(gun))
            .ok_or_else(|| ActionError::new("gun", format!("no gun {gun}")))
    }

    /// The segment or module index a fault applies to.
    fn fault_target(&self, spec: &FaultSpec) -> Result<usize, ActionError> {
        let target = spec.target;
        match spec.kind {
            FaultKind::ModuleOvertemp | FaultKind::ModuleTrip | FaultKind::ModuleSilence => self
                .modules
                .iter()
                .position(|m| m.id == target)
                .ok_or_else(|| ActionError::new("target", format!("no module {target}"))),
            FaultKind::ContactorWeld | FaultKind::ContactorFailToClose => {
                let index = usize::from(target);
                let segment = self
                    .segments
                    .get(index)
                    .ok_or_else(|| ActionError::new("target", format!("no segment {target}")))?;
                let name = spec
                    .contactor
                    .as_deref()
                    .ok_or_else(|| ActionError::new("contactor", "required: gc, mn or mcN"))?;
                if !named_contactors(&segment.plc).any(|(n, _)| n == name) {
                    return Err(ActionError::new(
                        "contactor",
                        format!("segment {target} has no contactor {name:?}"),
                    ));
                }
                Ok(index)
            }
            FaultKind::PlcSilence => {
                let index = usize::from(target);
                self.segments
                    .get(index)
                    .map(|_| index)
                    .ok_or_else(|| ActionError::new("target", format!("no segment {target}")))
            }
            FaultKind::LockFailure
            | FaultKind::MeterFailure
            | FaultKind::MeterDisagreement
            | FaultKind::IsolationFault
            | FaultKind::PilotError
            | FaultKind::EmergencyStop => self
                .gun_segment(target)
                .map_err(|_| ActionError::new("target", format!("no gun {target}"))),
        }
    }

    fn set_fault(&mut self, spec: &FaultSpec, index: usize, on: bool) {
        match spec.kind {
            FaultKind::ModuleOvertemp => self.modules[index].module.set_blocked_fan(on),
            FaultKind::ModuleTrip if on => self.modules[index].module.trip(),
            FaultKind::ModuleTrip => {}
            FaultKind::ModuleSilence => self.modules[index].silent = on,
            FaultKind::ContactorWeld | FaultKind::ContactorFailToClose => {
                let fault = match spec.kind {
                    FaultKind::ContactorWeld => ContactorFault::Welded,
                    _ => ContactorFault::FailToClose,
                };
                let name = spec.contactor.as_deref().unwrap_or_default();
                if let Some(contactor) = contactor_mut(&mut self.segments[index].plc, name) {
                    contactor.set_fault(on.then_some(fault));
                }
            }
            FaultKind::PlcSilence => self.segments[index].plc.faults.silent = on,
            FaultKind::LockFailure => self.segments[index].plc.faults.lock_failure = on,
            FaultKind::MeterFailure => self.segments[index].plc.faults.meter_failure = on,
            FaultKind::MeterDisagreement => self.segments[index].plc.faults.meter_disagreement = on,
            FaultKind::IsolationFault => self.segments[index].plc.faults.isolation_fault = on,
            FaultKind::PilotError => self.segments[index].plc.faults.pilot_error = on,
            FaultKind::EmergencyStop => self.segments[index].plc.faults.emergency_stop = on,
        }
    }

    /// Advances the world by one step.
    pub fn step(&mut self) {
        let dt = Self::STEP_MS;
        self.now_ms += dt;
        let now = self.now_ms;
        self.move_contactors();
        for sim in &mut self.modules {
            sim.module.step(dt, now);
        }
        self.solve(dt);
        for index in 0..self.segments.len() {
            let measured = self.measurements(index);
            for output in self.segments[index].plc.step(measured, now) {
                let PlcOutput::EvIdentity { transfer_id } = output;
                self.send_identity(index, transfer_id);
            }
        }
        self.check_states();
        self.send_periodic();
    }

    /// Moves every contactor whose delay has passed, and checks each move against S3,
    /// S4 and S5 with the voltages and currents from just before it.
    fn move_contactors(&mut self) {
        let now = self.now_ms;
        let n = self.segments.len();
        for index in 0..n {
            let before = self.solution.bus_voltage.clone();
            let gun_current = self.gun_current(index);
            let tie_current = self.solution.tie_current[index];
            let module_currents: Vec<f64> = self.segments[index]
                .modules
                .iter()
                .map(|&m| self.modules[m].module.output_current())
                .collect();
            let segment = &mut self.segments[index];
            let mut events = Vec::new();
            if let Some(gc) = &mut segment.plc.gc
                && gc.step(now)
            {
                events.push((
                    "gc".to_owned(),
                    gc.is_closed(),
                    gun_current,
                    gc.opened_in_emergency(),
                ));
            }
            for (i, mc) in segment.plc.mc.iter_mut().enumerate() {
                if mc.step(now) {
                    events.push((
                        format!("mc{i}"),
                        mc.is_closed(),
                        module_currents[i],
                        mc.opened_in_emergency(),
                    ));
                }
            }
            if let Some(mn) = &mut segment.plc.mn
                && mn.step(now)
            {
                events.push((
                    "mn".to_owned(),
                    mn.is_closed(),
                    tie_current,
                    mn.opened_in_emergency(),
                ));
            }
            for (name, closed, current, emergency) in events {
                let subject = format!("segment {index} {name}");
                if !closed && current.abs() > OPEN_UNDER_LOAD_A && !emergency {
                    self.referee.event(
                        now,
                        "S4",
                        subject,
                        format!(
                            "opened carrying {:.1} A without the emergency flag",
                            current.abs()
                        ),
                    );
                } else if closed && name == "mn" {
                    let (a, b) = (before[index], before[(index + 1) % n]);
                    if !tie_close_allowed(a, b) {
                        self.referee.event(
                            now,
                            "S3",
                            format!("tie {index}-{}", (index + 1) % n),
                            format!(
                                "closed across {:.1} V ({a:.1} V and {b:.1} V)",
                                (a - b).abs()
                            ),
                        );
                    }
                } else if closed && name == "gc" {
                    let plc = &self.segments[index].plc;
                    let mismatch = (before[index] - plc.gun_side_voltage()).abs();
                    let problem = if plc.auth() != AuthStatus::Accepted {
                        Some(format!("authorisation is {}", plc.auth()))
                    } else if plc.lock() != LockState::Locked {
                        Some(format!("lock is {}", plc.lock()))
                    } else if plc.ev_connected() && mismatch > PRECHARGE_MATCH_V {
                        Some(format!("bus and battery differ by {mismatch:.1} V"))
                    } else {
                        None
                    };
                    if let Some(problem) = problem {
                        self.referee.event(
                            now,
                            "S5",
                            subject,
                            format!("gun contactor closed while {problem}"),
                        );
                    }
                }
            }
        }
    }

    /// Solves the ring with the contactors as they are, and lets current flow.
    fn solve(&mut self, dt: u64) {
        let ties: Vec<bool> = self
            .segments
            .iter()
            .map(|s| s.plc.mn.as_ref().is_some_and(Contactor::is_closed))
            .collect();
        let mut source_of = Vec::new();
        let mut sources = Vec::new();
        for (m, sim) in self.modules.iter().enumerate() {
            let connected = self.segments[sim.segment].plc.mc[sim.contactor].is_closed();
            if connected && sim.module.is_on() {
                let bus = self.solution.bus_voltage[sim.segment];
                sources.push(Source {
                    segment: sim.segment,
                    voltage: sim.module.output_voltage(),
                    capability: sim.module.current_capability(bus),
                });
                source_of.push(m);
            }
        }
        let mut load_of = Vec::new();
        let mut loads = Vec::new();
        for (index, segment) in self.segments.iter().enumerate() {
            let gc_closed = segment.plc.gc.as_ref().is_some_and(Contactor::is_closed);
            if gc_closed && segment.plc.ev_connected() {
                loads.push(Load {
                    segment: index,
                    ocv: segment.plc.gun_side_voltage(),
                    resistance: segment.plc.ev_resistance(),
                });
                load_of.push(index);
            }
        }
        let solution = electrical::solve(&ties, &sources, &loads, &self.solution.bus_voltage, dt);
        for sim in &mut self.modules {
            sim.module.set_output_current(0.0);
        }
        for (k, &m) in source_of.iter().enumerate() {
            self.modules[m]
                .module
                .set_output_current(solution.source_current[k]);
        }
        for (k, &index) in load_of.iter().enumerate() {
            self.segments[index].plc.deliver(
                solution.bus_voltage[index],
                solution.load_current[k],
                dt,
            );
        }
        self.gun_current = vec![0.0; self.segments.len()];
        for (k, &index) in load_of.iter().enumerate() {
            self.gun_current[index] = solution.load_current[k];
        }
        self.solution = solution;
    }

    fn gun_current(&self, index: usize) -> f64 {
        self.gun_current[index]
    }

    /// What segment `index`'s PLC measures.
    fn measurements(&self, index: usize) -> Measurements {
        let segment = &self.segments[index];
        let n = self.segments.len();
        let mut largest: f64 = 0.0;
        if segment.plc.gc.as_ref().is_some_and(Contactor::is_closed) {
            largest = largest.max(self.gun_current[index].abs());
        }
        for &m in &segment.modules {
            largest = largest.max(self.modules[m].module.output_current().abs());
        }
        // Its own tie, and the previous segment's tie, which ends on this bus.
        largest = largest.max(self.solution.tie_current[index].abs());
        largest = largest.max(self.solution.tie_current[(index + n - 1) % n].abs());
        Measurements {
            bus_voltage: self.solution.bus_voltage[index],
            gun_current: self.gun_current[index],
            largest_contactor_current: largest,
            far_bus_voltage: self.solution.bus_voltage[(index + 1) % n],
            tie_current: self.solution.tie_current[index],
        }
    }

    /// Conditions that must never hold: two energised guns in an island (S2), a module
    /// above its rated current. Also notes when each weld is first reported (S9).
    fn check_states(&mut self) {
        let now = self.now_ms;
        let mut islands_alive = BTreeSet::new();
        for island in &self.solution.islands {
            let subject = format!(
                "island {}",
                island
                    .segments
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join("-")
            );
            let energised: Vec<usize> = island
                .segments
                .iter()
                .copied()
                .filter(|&s| {
                    let plc = &self.segments[s].plc;
                    plc.gc.as_ref().is_some_and(Contactor::is_closed) && plc.ev_connected()
                })
                .collect();
            let guns: Vec<String> = energised
                .iter()
                .filter_map(|&s| self.segments[s].gun)
                .map(|g| g.to_string())
                .collect();
            self.referee
                .condition(now, "S2", subject.clone(), energised.len() > 1, || {
                    format!(
                        "guns {} energised in one island at {:.1} V",
                        guns.join(" and "),
                        island.voltage
                    )
                });
            islands_alive.insert(subject);
        }
        self.referee.retain_ongoing("S2", &islands_alive);
        for sim in &self.modules {
            let rated = sim.module.ratings().max_current.0;
            let current = sim.module.output_current();
            self.referee.condition(
                now,
                "module_overcurrent",
                format!("module {}", sim.id),
                current > rated + 0.5,
                || format!("delivers {current:.1} A, rated {rated:.1} A"),
            );
        }
        for segment in &mut self.segments {
            let welded: Vec<String> = named_contactors(&segment.plc)
                .filter(|(_, c)| c.fault() == Some(ContactorFault::Welded) && c.disagrees())
                .map(|(name, _)| name)
                .collect();
            segment
                .weld_reported_at
                .retain(|name, _| welded.contains(name));
            for name in welded {
                segment.weld_reported_at.entry(name).or_insert(now);
            }
        }
    }

    /// Queues the frames of an EV identity transfer.
    fn send_identity(&mut self, index: usize, transfer_id: u8) {
        let segment = &self.segments[index];
        let Some((mac, emaid)) = segment.plc.ev_identity() else {
            return;
        };
        let identity = EvIdentity {
            mac: parse_mac(mac).unwrap_or_default(),
            emaid: emaid.map(str::to_owned),
        };
        // Checked when the EV was plugged in.
        let Ok(frames) = identity.frames(transfer_id) else {
            return;
        };
        if segment.plc.faults.silent {
            return;
        }
        for frame in frames {
            let message = CanMessage::Plc {
                slot: segment.slot,
                message: PlcMessage::EvIdentity(frame),
            };
            push_frame(&mut self.outbox, &segment.cabinet, message);
        }
    }

    /// Queues the frames that are due: periodic ones at their DBC cycle time (staggered
    /// per device so a bus is not hit in bursts), relay and tie feedback, charge info and
    /// module faults also at once when they change.
    fn send_periodic(&mut self) {
        let now = self.now_ms;
        let due = |period: u64, stagger: usize| {
            (now + stagger as u64 * World::STEP_MS).is_multiple_of(period)
        };
        for (index, segment) in self.segments.iter_mut().enumerate() {
            if segment.plc.faults.silent {
                continue;
            }
            let (slot, cabinet) = (segment.slot, segment.cabinet.clone());
            let mut send = |message: PlcMessage| {
                push_frame(
                    &mut self.outbox,
                    &cabinet,
                    CanMessage::Plc { slot, message },
                )
            };
            let feedback = segment.plc.relay_feedback();
            if due(RELAY_FEEDBACK_MS, index) || segment.last_feedback != Some(feedback) {
                send(PlcMessage::RelayFeedback(feedback));
                segment.last_feedback = Some(feedback);
            }
            // With the relay feedback, so both describe the same instant.
            if let Some(tie) = segment.plc.tie_feedback()
                && (due(RELAY_FEEDBACK_MS, index) || segment.last_tie != Some(tie))
            {
                send(PlcMessage::TieFeedback(tie));
                segment.last_tie = Some(tie);
            }
            if segment.plc.has_gun() {
                let info = segment.plc.charge_info();
                if due(CHARGE_INFO_MS, index) || segment.last_info != Some(info) {
                    send(PlcMessage::ChargeInfo(info));
                    segment.last_info = Some(info);
                }
                if due(SESSION_MS, index + 3) {
                    send(PlcMessage::Session(segment.plc.session()));
                }
                if due(METER_MS, index + 5) {
                    for meter in segment.plc.meters() {
                        send(PlcMessage::Meter(meter));
                    }
                }
            }
            if due(PLC_HEARTBEAT_MS, index + 7) {
                send(PlcMessage::PlcHeartbeat(segment.plc.heartbeat(now)));
            }
        }
        for (m, sim) in self.modules.iter_mut().enumerate() {
            if sim.silent {
                continue;
            }
            let address = sim.address;
            let bus = self.solution.bus_voltage[sim.segment];
            if due(MODULE_STATUS_MS, m) {
                let message = CanMessage::Module {
                    address,
                    message: ModuleMessage::Status(sim.module.status(bus)),
                };
                push_frame(&mut self.outbox, &sim.cabinet, message);
            }
            let faults = sim.module.faults();
            if due(MODULE_FAULTS_MS, m) || sim.last_faults != Some(faults) {
                let message = CanMessage::Module {
                    address,
                    message: ModuleMessage::Faults(faults),
                };
                push_frame(&mut self.outbox, &sim.cabinet, message);
                sim.last_faults = Some(faults);
            }
        }
    }

    /// The next frame a device put on a bus.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next violation not yet polled.
    pub fn poll_violation(&mut self) -> Option<Violation> {
        self.referee.poll()
    }

    /// Every violation so far.
    pub fn violations(&self) -> &[Violation] {
        self.referee.violations()
    }
}

/// A segment's contactors by name: `gc`, `mc0`…, `mn`.
fn named_contactors(plc: &Plc) -> impl Iterator<Item = (String, &Contactor)> {
    let gc = plc.gc.iter().map(|c| ("gc".to_owned(), c));
    let mc = plc
        .mc
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("mc{i}"), c));
    let mn = plc.mn.iter().map(|c| ("mn".to_owned(), c));
    gc.chain(mc).chain(mn)
}

fn contactor_mut<'a>(plc: &'a mut Plc, name: &str) -> Option<&'a mut Contactor> {
    match name {
        "gc" => plc.gc.as_mut(),
        "mn" => plc.mn.as_mut(),
        _ => name
            .strip_prefix("mc")?
            .parse::<usize>()
            .ok()
            .and_then(|i| plc.mc.get_mut(i)),
    }
}

fn push_frame(outbox: &mut VecDeque<Transmit>, cabinet: &CabinetId, message: CanMessage) {
    // Every value the firmware produces is within the DBC's ranges; a frame that does
    // not encode is a simulator defect, and is left out rather than sent wrong.
    if let Ok(frame) = message.encode() {
        outbox.push_back(Transmit {
            cabinet: cabinet.clone(),
            frame,
        });
    } else {
        debug_assert!(
            false,
            "simulator produced an unencodable frame: {message:?}"
        );
    }
}

/// Parses "AA:BB:CC:DD:EE:FF".
fn parse_mac(text: &str) -> Result<MacAddress, ActionError> {
    let bad = || {
        ActionError::new(
            "ev_mac",
            format!("{text:?} is not a MAC address like 02:00:00:00:00:01"),
        )
    };
    let bytes: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let bytes: [u8; 6] = bytes.try_into().map_err(|_| bad())?;
    Ok(MacAddress(bytes))
}

/// Parses a card UID written as hex.
fn parse_uid(text: &str) -> Option<RfidUid> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    RfidUid::new(&bytes)
}

/// A small, fixed, seedable generator (SplitMix64), so that a seed means the same run
/// on every build.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;
