//! The node's view of one power module: what it reports, whether it still talks, how
//! much it may give after derating, and the setpoint the node last sent it.

use std::time::{Duration, Instant};

use ringhub_proto::can::ModuleAddress;
use ringhub_proto::can::messages::{ModuleFaults, ModuleStatus};
use ringhub_proto::config::ModuleId;
use ringhub_proto::units::{Amps, Celsius, Kilowatts, Volts};

use super::derate::{Derate, DerateCurve};
use super::snapshot::ModuleSnapshot;

/// A module whose status has not arrived for this long is offline (10 status periods).
pub(super) const MODULE_SILENCE: Duration = Duration::from_millis(1_000);

/// A module as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModuleSetup {
    pub id: ModuleId,
    pub address: ModuleAddress,
    pub max_power: Kilowatts,
    pub max_current: Amps,
    pub max_voltage: Volts,
}

/// What the node commands a module to do.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Setpoint {
    /// Output on.
    pub(super) enabled: bool,
    pub(super) voltage: Volts,
    pub(super) current: Amps,
    pub(super) power: Kilowatts,
}

/// One module.
#[derive(Debug, Clone)]
pub(super) struct ModuleTracker {
    /// From the config.
    pub(super) setup: ModuleSetup,
    /// Latest status frame.
    status: Option<ModuleStatus>,
    /// Latest faults frame.
    faults: ModuleFaults,
    /// When its last frame arrived.
    last_seen: Option<Instant>,
    /// Temperature derating.
    derate: Derate,
    /// What the node last commanded.
    pub(super) setpoint: Setpoint,
    /// Since when it has been out of service with its contactor still closed.
    pub(super) draining_since: Option<Instant>,
}

impl ModuleTracker {
    pub(super) fn new(setup: ModuleSetup) -> Self {
        Self {
            setup,
            status: None,
            faults: ModuleFaults::default(),
            last_seen: None,
            derate: Derate::new(DerateCurve::MODULE),
            setpoint: Setpoint::default(),
            draining_since: None,
        }
    }

    pub(super) fn handle_status(&mut self, status: ModuleStatus, now: Instant) {
        self.derate.update(status.temperature.0);
        self.status = Some(status);
        self.last_seen = Some(now);
    }

    pub(super) fn handle_faults(&mut self, faults: ModuleFaults, now: Instant) {
        self.faults = faults;
        self.last_seen = Some(now);
    }

    /// Its frames arrive.
    pub(super) fn is_online(&self, now: Instant) -> bool {
        self.last_seen
            .is_some_and(|at| now.duration_since(at) < MODULE_SILENCE)
    }

    /// Past its shutdown temperature, until it has cooled below recovery.
    pub(super) fn is_overheated(&self) -> bool {
        self.derate.is_shut_down()
    }

    /// Reports a fault other than temperature (which derating handles).
    pub(super) fn has_hard_fault(&self) -> bool {
        let f = self.faults;
        f.output_overvoltage
            || f.output_overcurrent
            || f.input_fault
            || f.fan_failure
            || f.short_circuit
            || f.internal_fault
    }

    /// Whether it may be part of an island.
    pub(super) fn in_service(&self, now: Instant) -> bool {
        self.is_online(now) && !self.is_overheated() && !self.has_hard_fault()
    }

    /// Power it may give now: its rating after the node's derating, and no more than it
    /// says it can.
    pub(super) fn available_power(&self, now: Instant) -> f64 {
        if !self.in_service(now) {
            return 0.0;
        }
        let derated = self.setup.max_power.0 * self.derate.factor();
        self.status
            .map_or(derated, |s| derated.min(s.available_power.0))
    }

    /// Current it may give at `voltage`, within its rating and available power.
    pub(super) fn current_capability(&self, voltage: f64, now: Instant) -> f64 {
        let by_power = if voltage > 1.0 {
            self.available_power(now) * 1000.0 / voltage
        } else {
            self.setup.max_current.0
        };
        by_power.min(self.setup.max_current.0)
    }

    /// Output current it reports (0 if offline).
    pub(super) fn output_current(&self, now: Instant) -> f64 {
        if self.is_online(now) {
            self.status.map_or(0.0, |s| s.output_current.0)
        } else {
            0.0
        }
    }

    pub(super) fn temperature(&self) -> Option<f64> {
        self.status.map(|s| s.temperature.0)
    }

    pub(super) fn snapshot(&self, now: Instant) -> ModuleSnapshot {
        let status = self.status;
        ModuleSnapshot {
            module: self.setup.id,
            address: self.setup.address,
            online: self.is_online(now),
            enabled: self.setpoint.enabled,
            setpoint_voltage: self.setpoint.voltage,
            setpoint_current: self.setpoint.current,
            output_voltage: status.map_or(Volts(0.0), |s| s.output_voltage),
            output_current: status.map_or(Amps(0.0), |s| s.output_current),
            temperature: status.map_or(Celsius(0.0), |s| s.temperature),
            rated_power: self.setup.max_power,
            available_power: Kilowatts(self.available_power(now)),
            faults: self.faults,
            out_of_service: !self.in_service(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use ringhub_proto::can::messages::ModuleState;

    use super::*;

    fn tracker() -> ModuleTracker {
        ModuleTracker::new(ModuleSetup {
            id: ModuleId(3),
            address: ModuleAddress(1),
            max_power: Kilowatts(50.0),
            max_current: Amps(150.0),
            max_voltage: Volts(1000.0),
        })
    }

    fn status(temperature: f64) -> ModuleStatus {
        ModuleStatus {
            output_voltage: Volts(400.0),
            output_current: Amps(100.0),
            temperature: Celsius(temperature),
            state: ModuleState::On,
            available_power: Kilowatts(50.0),
        }
    }

    #[test]
    fn derates_with_temperature_and_leaves_service_past_shutdown() {
        let (mut m, t0) = (tracker(), Instant::now());
        m.handle_status(status(40.0), t0);
        assert_eq!(m.available_power(t0), 50.0);
        assert!((m.current_capability(400.0, t0) - 125.0).abs() < 1e-9);
        m.handle_status(status(85.0), t0);
        assert!((m.available_power(t0) - 25.0).abs() < 1e-9);
        m.handle_status(status(96.0), t0);
        assert!(!m.in_service(t0));
        m.handle_status(status(75.0), t0);
        assert!(!m.in_service(t0), "hysteresis: back only below 70 °C");
        m.handle_status(status(65.0), t0);
        assert!(m.in_service(t0));
    }

    #[test]
    fn a_silent_module_is_offline() {
        let (mut m, t0) = (tracker(), Instant::now());
        assert!(!m.is_online(t0), "never heard from");
        m.handle_status(status(40.0), t0);
        assert!(m.is_online(t0 + Duration::from_millis(999)));
        assert!(!m.is_online(t0 + MODULE_SILENCE));
        assert_eq!(m.output_current(t0 + MODULE_SILENCE), 0.0);
    }

    #[test]
    fn a_hard_fault_takes_it_out() {
        let (mut m, t0) = (tracker(), Instant::now());
        m.handle_status(status(40.0), t0);
        m.handle_faults(
            ModuleFaults {
                short_circuit: true,
                ..ModuleFaults::default()
            },
            t0,
        );
        assert!(!m.in_service(t0));
        assert_eq!(m.available_power(t0), 0.0);
    }
}
