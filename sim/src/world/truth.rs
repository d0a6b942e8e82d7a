//! The ground truth as the control API's `GET /state` and the truth log show it.

use serde::Serialize;

use super::contactor::{Contactor, ContactorFault};
use super::{World, named_contactors};

/// Everything physically true about the hub at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct GroundTruth {
    /// Simulation time, ms.
    pub time_ms: u64,
    pub segments: Vec<SegmentTruth>,
    pub modules: Vec<ModuleTruth>,
    pub guns: Vec<GunTruth>,
    pub islands: Vec<IslandTruth>,
    /// Faults injected and not cleared.
    pub faults: Vec<FaultTruth>,
    /// Frames from hosts that did not decode.
    pub malformed_frames: u64,
    /// Violations so far.
    pub violations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentTruth {
    pub id: usize,
    pub cabinet: String,
    pub bus_voltage_v: f64,
    pub contactors: Vec<ContactorTruth>,
    /// PLC firmware state (`Ready`, `WatchdogTripped`…).
    pub plc_state: String,
    /// The PLC is silenced by an injected fault.
    pub plc_silent: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactorTruth {
    /// `gc`, `mc0`…, `mn`.
    pub name: String,
    pub commanded: bool,
    pub closed: bool,
    pub fault: Option<ContactorFault>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleTruth {
    pub id: u16,
    pub segment: usize,
    pub on: bool,
    pub output_voltage_v: f64,
    pub output_current_a: f64,
    pub temperature_c: f64,
    pub available_kw: f64,
    pub tripped: bool,
    pub silent: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GunTruth {
    pub id: u16,
    pub segment: usize,
    pub plugged: bool,
    pub cp_state: String,
    pub hlc_phase: String,
    pub auth: String,
    pub lock: String,
    /// GC closed onto a connected EV.
    pub energised: bool,
    pub current_a: f64,
    /// Energy delivered into the EV since it plugged in.
    pub energy_kwh: f64,
    pub soc: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IslandTruth {
    pub segments: Vec<usize>,
    pub voltage_v: f64,
    /// Guns energised in this island (more than one is an S2 violation).
    pub energised_guns: Vec<u16>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultTruth {
    pub id: u64,
    #[serde(flatten)]
    pub spec: super::FaultSpec,
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

impl World {
    /// The ground truth now.
    pub fn state(&self) -> GroundTruth {
        let energised = |s: usize| {
            let plc = &self.segments[s].plc;
            plc.gc.as_ref().is_some_and(Contactor::is_closed) && plc.ev_connected()
        };
        GroundTruth {
            time_ms: self.now_ms,
            segments: self
                .segments
                .iter()
                .enumerate()
                .map(|(id, s)| SegmentTruth {
                    id,
                    cabinet: s.cabinet.to_string(),
                    bus_voltage_v: round(self.solution.bus_voltage[id], 1),
                    contactors: named_contactors(&s.plc)
                        .map(|(name, c)| ContactorTruth {
                            name,
                            commanded: c.commanded(),
                            closed: c.is_closed(),
                            fault: c.fault(),
                        })
                        .collect(),
                    plc_state: s.plc.state().to_string(),
                    plc_silent: s.plc.faults.silent,
                })
                .collect(),
            modules: self
                .modules
                .iter()
                .map(|m| ModuleTruth {
                    id: m.id,
                    segment: m.segment,
                    on: m.module.is_on(),
                    output_voltage_v: round(m.module.output_voltage(), 1),
                    output_current_a: round(m.module.output_current(), 1),
                    temperature_c: round(m.module.temperature(), 1),
                    available_kw: round(m.module.available_power(), 2),
                    tripped: m.module.is_tripped(),
                    silent: m.silent,
                })
                .collect(),
            guns: self
                .segments
                .iter()
                .enumerate()
                .filter_map(|(index, s)| {
                    let id = s.gun?;
                    Some(GunTruth {
                        id,
                        segment: index,
                        plugged: s.plc.ev.is_some(),
                        cp_state: s.plc.cp_state().to_string(),
                        hlc_phase: s.plc.hlc_phase().to_string(),
                        auth: s.plc.auth().to_string(),
                        lock: s.plc.lock().to_string(),
                        energised: energised(index),
                        current_a: round(self.gun_current[index], 1),
                        energy_kwh: round(s.plc.ev.as_ref().map_or(0.0, |ev| ev.energy_kwh()), 3),
                        soc: s.plc.ev.as_ref().map(|ev| round(ev.soc(), 2)),
                    })
                })
                .collect(),
            islands: self
                .solution
                .islands
                .iter()
                .map(|island| IslandTruth {
                    segments: island.segments.clone(),
                    voltage_v: round(island.voltage, 1),
                    energised_guns: island
                        .segments
                        .iter()
                        .filter(|&&s| energised(s))
                        .filter_map(|&s| self.segments[s].gun)
                        .collect(),
                })
                .collect(),
            faults: self
                .faults
                .iter()
                .map(|(id, f)| FaultTruth {
                    id: *id,
                    spec: f.spec.clone(),
                })
                .collect(),
            malformed_frames: self.malformed_frames,
            violations: self.referee.violations().len(),
        }
    }
}
