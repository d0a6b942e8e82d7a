//! An AC/DC power module: it regulates its output voltage to the host's setpoint within
//! a current and power limit, ramps toward new setpoints, heats with load, derates when
//! hot and trips at its shutdown temperature. It turns itself off when the host stops
//! talking to it, as real modules do.

use ringhub_proto::can::messages::{ModuleFaults, ModuleOutput, ModuleState, ModuleStatus};
use ringhub_proto::units::{Amps, Celsius, Kilowatts, Volts};

/// How fast the output voltage follows its setpoint.
const VOLTAGE_RAMP_V_PER_S: f64 = 1000.0;
/// How fast the current limit follows its setpoint.
const CURRENT_RAMP_A_PER_S: f64 = 500.0;
/// Temperature of the cooling air.
const AMBIENT_C: f64 = 25.0;
/// Thermal time constant.
const THERMAL_TAU_S: f64 = 60.0;
/// Steady-state rise per kW of output (45 K at 50 kW).
const RISE_K_PER_KW: f64 = 0.9;
/// Above this the available power falls linearly...
const DERATE_START_C: f64 = 75.0;
/// ...to zero here, where the module trips.
const SHUTDOWN_C: f64 = 95.0;
/// A tripped module restarts once it has cooled below this.
const RESTART_C: f64 = 70.0;
/// Extra heating of an injected overtemperature (a blocked fan): settles near 88 °C idle.
const BLOCKED_FAN_RISE_K: f64 = 63.0;
/// Silence from the host after which the module turns itself off.
pub const COMMS_TIMEOUT_MS: u64 = 1_000;

/// Ratings from the hub config.
#[derive(Debug, Clone, Copy)]
pub struct Ratings {
    pub max_power: Kilowatts,
    pub max_current: Amps,
    pub max_voltage: Volts,
}

/// One power module.
#[derive(Debug, Clone)]
pub struct PowerModule {
    /// What it can do when cool.
    ratings: Ratings,
    /// Output commanded on.
    enabled: bool,
    /// Voltage setpoint from the host.
    setpoint: Volts,
    /// Current limit from the host.
    current_setpoint: Amps,
    /// Power limit from the host.
    power_setpoint: Kilowatts,
    /// Regulated output voltage, ramping toward the setpoint.
    output_voltage: f64,
    /// Current limit in force, ramping toward the setpoint.
    current_limit: f64,
    /// Current delivered, as the electrical solution found it.
    output_current: f64,
    /// Hottest internal temperature.
    temperature: f64,
    /// Shut down for temperature until cooled.
    tripped: bool,
    /// Host silent for too long.
    comms_lost: bool,
    /// Last frame from the host.
    last_command_ms: u64,
    /// Injected: the fan is blocked.
    blocked_fan: bool,
}

impl PowerModule {
    pub fn new(ratings: Ratings, now_ms: u64) -> Self {
        Self {
            ratings,
            enabled: false,
            setpoint: Volts(0.0),
            current_setpoint: Amps(0.0),
            power_setpoint: Kilowatts(0.0),
            output_voltage: 0.0,
            current_limit: 0.0,
            output_current: 0.0,
            temperature: AMBIENT_C,
            tripped: false,
            comms_lost: false,
            last_command_ms: now_ms,
            blocked_fan: false,
        }
    }

    pub fn ratings(&self) -> Ratings {
        self.ratings
    }

    /// Host command: setpoint.
    pub fn set_setpoint(&mut self, voltage: Volts, current: Amps, power: Kilowatts, now_ms: u64) {
        self.setpoint = Volts(voltage.0.min(self.ratings.max_voltage.0));
        self.current_setpoint = current;
        self.power_setpoint = power;
        self.heard_from_host(now_ms);
    }

    /// Host command: output on or off.
    pub fn set_enabled(&mut self, enabled: bool, now_ms: u64) {
        self.enabled = enabled;
        self.heard_from_host(now_ms);
    }

    fn heard_from_host(&mut self, now_ms: u64) {
        self.last_command_ms = now_ms;
        self.comms_lost = false;
    }

    /// Whether the output stage runs.
    pub fn is_on(&self) -> bool {
        self.enabled && !self.tripped && !self.comms_lost
    }

    /// Power it can deliver now, after thermal derating.
    pub fn available_power(&self) -> f64 {
        if self.tripped {
            return 0.0;
        }
        let derate =
            ((SHUTDOWN_C - self.temperature) / (SHUTDOWN_C - DERATE_START_C)).clamp(0.0, 1.0);
        self.ratings.max_power.0 * derate
    }

    /// Regulated output voltage (0 when off).
    pub fn output_voltage(&self) -> f64 {
        self.output_voltage
    }

    /// The most current it will deliver at `bus_voltage`: the ramped limit, capped by the
    /// power limit, the derated power, and 110 % of rating (modules allow short overload;
    /// the referee flags anything above 100 %).
    pub fn current_capability(&self, bus_voltage: f64) -> f64 {
        if !self.is_on() {
            return 0.0;
        }
        let power_kw = self.power_setpoint.0.min(self.available_power());
        let by_power = if bus_voltage > 1.0 {
            power_kw * 1000.0 / bus_voltage
        } else {
            f64::INFINITY
        };
        self.current_limit
            .min(by_power)
            .min(self.ratings.max_current.0 * 1.1)
            .max(0.0)
    }

    pub fn output_current(&self) -> f64 {
        self.output_current
    }

    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Records the current the electrical solution assigned.
    pub fn set_output_current(&mut self, amps: f64) {
        self.output_current = amps;
    }

    /// Injects or clears a blocked fan.
    pub fn set_blocked_fan(&mut self, blocked: bool) {
        self.blocked_fan = blocked;
    }

    /// Trips the module as its overtemperature protection would.
    pub fn trip(&mut self) {
        self.temperature = self.temperature.max(SHUTDOWN_C);
        self.tripped = true;
    }

    /// Advances ramps, temperature and protections by `dt_ms`.
    pub fn step(&mut self, dt_ms: u64, now_ms: u64) {
        let dt = dt_ms as f64 / 1000.0;
        if now_ms.saturating_sub(self.last_command_ms) > COMMS_TIMEOUT_MS {
            self.comms_lost = true;
        }
        let (target_v, target_i) = if self.is_on() {
            (self.setpoint.0, self.current_setpoint.0)
        } else {
            (0.0, 0.0)
        };
        self.output_voltage = ramp(self.output_voltage, target_v, VOLTAGE_RAMP_V_PER_S * dt);
        self.current_limit = ramp(self.current_limit, target_i, CURRENT_RAMP_A_PER_S * dt);
        let power_kw = self.output_voltage * self.output_current / 1000.0;
        let fan_rise = if self.blocked_fan {
            BLOCKED_FAN_RISE_K
        } else {
            0.0
        };
        let steady = AMBIENT_C + RISE_K_PER_KW * power_kw + fan_rise;
        self.temperature += (steady - self.temperature) * (1.0 - (-dt / THERMAL_TAU_S).exp());
        if self.temperature >= SHUTDOWN_C {
            self.tripped = true;
        } else if self.tripped && self.temperature < RESTART_C {
            self.tripped = false;
        }
    }

    /// The status frame.
    pub fn status(&self, bus_voltage: f64) -> ModuleStatus {
        let state = if self.tripped || self.comms_lost {
            ModuleState::Fault
        } else if !self.enabled {
            ModuleState::Off
        } else if (self.output_voltage - self.setpoint.0).abs() > 5.0 {
            ModuleState::Ramping
        } else if self.available_power() < self.ratings.max_power.0 {
            ModuleState::Derated
        } else {
            ModuleState::On
        };
        ModuleStatus {
            output_voltage: Volts(round1(if self.is_on() {
                bus_voltage.clamp(0.0, 1000.0)
            } else {
                0.0
            })),
            output_current: Amps(round1(self.output_current.clamp(0.0, 500.0))),
            temperature: Celsius(self.temperature.round().clamp(-40.0, 215.0)),
            state,
            available_power: Kilowatts((self.available_power() * 100.0).round() / 100.0),
        }
    }

    /// The faults frame.
    pub fn faults(&self) -> ModuleFaults {
        ModuleFaults {
            over_temperature: self.tripped || self.temperature > DERATE_START_C,
            communication_loss: self.comms_lost,
            ..ModuleFaults::default()
        }
    }

    /// The enable command as last received, for the ground truth.
    pub fn commanded_output(&self) -> ModuleOutput {
        if self.enabled {
            ModuleOutput::On
        } else {
            ModuleOutput::Off
        }
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped
    }
}

fn ramp(from: f64, to: f64, max_step: f64) -> f64 {
    from + (to - from).clamp(-max_step, max_step)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> PowerModule {
        let ratings = Ratings {
            max_power: Kilowatts(50.0),
            max_current: Amps(150.0),
            max_voltage: Volts(1000.0),
        };
        PowerModule::new(ratings, 0)
    }

    #[test]
    fn output_ramps_to_the_setpoint() {
        let mut m = module();
        m.set_enabled(true, 0);
        m.set_setpoint(Volts(400.0), Amps(100.0), Kilowatts(50.0), 0);
        m.step(100, 100);
        assert!(
            (m.output_voltage() - 100.0).abs() < 1e-9,
            "1000 V/s for 100 ms"
        );
        for t in 2..=5 {
            m.set_enabled(true, t * 100);
            m.step(100, t * 100);
        }
        assert!((m.output_voltage() - 400.0).abs() < 1e-9);
    }

    #[test]
    fn capability_is_capped_by_power_and_rating() {
        let mut m = module();
        m.set_enabled(true, 0);
        m.set_setpoint(Volts(400.0), Amps(500.0), Kilowatts(50.0), 0);
        m.step(1_000, 1_000);
        assert!(
            (m.current_capability(400.0) - 125.0).abs() < 1e-9,
            "50 kW at 400 V"
        );
        assert!(
            (m.current_capability(200.0) - 165.0).abs() < 1e-9,
            "110 % of 150 A"
        );
    }

    #[test]
    fn load_heats_it_and_a_hot_module_derates_then_trips() {
        let mut m = module();
        m.set_enabled(true, 0);
        m.set_setpoint(Volts(500.0), Amps(100.0), Kilowatts(50.0), 0);
        m.set_output_current(100.0);
        for t in 1..=600 {
            m.set_enabled(true, t * 1_000);
            m.step(1_000, t * 1_000);
        }
        assert!(
            (m.temperature() - 70.0).abs() < 1.0,
            "50 kW settles near 70 °C: {}",
            m.temperature()
        );
        m.set_blocked_fan(true);
        for t in 601..=1_200 {
            m.set_enabled(true, t * 1_000);
            m.step(1_000, t * 1_000);
        }
        assert!(
            m.is_tripped(),
            "a blocked fan at full load trips it: {}",
            m.temperature()
        );
        assert_eq!(m.current_capability(500.0), 0.0);
        assert!(m.faults().over_temperature);
    }

    #[test]
    fn a_silent_host_turns_it_off() {
        let mut m = module();
        m.set_enabled(true, 0);
        m.step(10, COMMS_TIMEOUT_MS);
        assert!(m.is_on());
        m.step(10, COMMS_TIMEOUT_MS + 1);
        assert!(!m.is_on());
        assert!(m.faults().communication_loss);
    }
}
