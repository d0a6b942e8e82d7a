//! An electric vehicle at a gun: a battery (open-circuit voltage rising with state of
//! charge, behind an internal resistance) and a battery management system that asks for
//! current along a charging curve and stops at its target state of charge.

use serde::{Deserialize, Serialize};

/// Internal resistance of the pack.
pub const INTERNAL_RESISTANCE_OHM: f64 = 0.05;
/// Open-circuit voltage rise from 0 % to 100 % state of charge, relative to nominal.
const OCV_SPAN: f64 = 0.15;
/// Above this state of charge the requested current tapers.
const TAPER_START_SOC: f64 = 80.0;

/// What the control API's `/ev/plug` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvSpec {
    /// Gun to plug into.
    pub gun: u16,
    /// Battery voltage at the plug-in state of charge.
    pub battery_v: f64,
    /// State of charge at plug-in, percent.
    pub soc: f64,
    /// Most current the EV accepts.
    pub max_current_a: f64,
    /// State of charge at which it stops, percent.
    pub target_soc: f64,
    /// EV MAC for SLAC, "AA:BB:CC:DD:EE:FF".
    #[serde(default)]
    pub ev_mac: Option<String>,
    /// Contract id for Plug & Charge.
    #[serde(default)]
    pub emaid: Option<String>,
    /// Usable pack energy.
    #[serde(default = "default_capacity")]
    pub capacity_kwh: f64,
}

fn default_capacity() -> f64 {
    75.0
}

/// Why an EV cannot be plugged in as described.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EvSpecError {
    /// The request field at fault.
    pub field: &'static str,
    pub message: String,
}

/// The battery and its management system.
#[derive(Debug, Clone)]
pub struct Ev {
    /// As plugged in.
    pub spec: EvSpec,
    /// State of charge now, percent.
    soc: f64,
    /// Open-circuit voltage at 0 % state of charge.
    ocv_at_empty: f64,
    /// Energy taken so far, kWh.
    energy_kwh: f64,
}

impl Ev {
    pub fn new(spec: EvSpec) -> Result<Self, EvSpecError> {
        let bad = |field, message: &str| {
            Err(EvSpecError {
                field,
                message: message.to_owned(),
            })
        };
        if !(150.0..=1000.0).contains(&spec.battery_v) {
            return bad("battery_v", "must be between 150 and 1000 V");
        }
        if !(0.0..=100.0).contains(&spec.soc) {
            return bad("soc", "must be between 0 and 100 %");
        }
        if !(0.0..=100.0).contains(&spec.target_soc) {
            return bad("target_soc", "must be between 0 and 100 %");
        }
        if !(spec.max_current_a > 0.0 && spec.max_current_a <= 1000.0) {
            return bad("max_current_a", "must be above 0 and at most 1000 A");
        }
        if !(spec.capacity_kwh > 0.0 && spec.capacity_kwh <= 500.0) {
            return bad("capacity_kwh", "must be above 0 and at most 500 kWh");
        }
        let nominal = spec.battery_v / (1.0 + OCV_SPAN * (spec.soc / 100.0 - 0.5));
        let ocv_at_empty = nominal * (1.0 - OCV_SPAN / 2.0);
        Ok(Self {
            soc: spec.soc,
            ocv_at_empty,
            energy_kwh: 0.0,
            spec,
        })
    }

    pub fn soc(&self) -> f64 {
        self.soc
    }

    pub fn energy_kwh(&self) -> f64 {
        self.energy_kwh
    }

    /// Open-circuit voltage now.
    pub fn ocv(&self) -> f64 {
        self.ocv_at_empty * (1.0 + OCV_SPAN * self.soc / 100.0 / (1.0 - OCV_SPAN / 2.0))
    }

    /// Whether the battery management system wants no more energy.
    pub fn is_full(&self) -> bool {
        self.soc >= self.spec.target_soc
    }

    /// Current the BMS asks for: its maximum, tapering above 80 % to a tenth at 100 %.
    pub fn requested_current(&self) -> f64 {
        if self.is_full() {
            return 0.0;
        }
        let taper = if self.soc <= TAPER_START_SOC {
            1.0
        } else {
            1.0 - 0.9 * (self.soc - TAPER_START_SOC) / (100.0 - TAPER_START_SOC)
        };
        self.spec.max_current_a * taper
    }

    /// The highest voltage the EV accepts: what it reports as its target voltage.
    pub fn max_voltage(&self) -> f64 {
        (self.ocv() + self.spec.max_current_a * INTERNAL_RESISTANCE_OHM + 10.0).min(1000.0)
    }

    /// Charges the pack with `amps` at `volts` for `dt_ms`.
    pub fn charge(&mut self, volts: f64, amps: f64, dt_ms: u64) {
        let kwh = volts * amps * dt_ms as f64 / 3_600_000_000.0;
        self.energy_kwh += kwh;
        self.soc = (self.soc + 100.0 * kwh / self.spec.capacity_kwh).clamp(0.0, 100.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> EvSpec {
        EvSpec {
            gun: 0,
            battery_v: 400.0,
            soc: 20.0,
            max_current_a: 200.0,
            target_soc: 80.0,
            ev_mac: None,
            emaid: None,
            capacity_kwh: 60.0,
        }
    }

    #[test]
    fn battery_voltage_starts_at_the_plug_in_value_and_rises_with_charge() {
        let mut ev = Ev::new(spec()).unwrap();
        assert!((ev.ocv() - 400.0).abs() < 1e-9);
        ev.charge(400.0, 150.0, 3_600_000);
        assert!((ev.energy_kwh() - 60.0).abs() < 1e-9);
        assert!(ev.is_full());
        assert!(ev.ocv() > 400.0);
    }

    #[test]
    fn requested_current_tapers_near_full() {
        let ev = Ev::new(EvSpec {
            soc: 90.0,
            target_soc: 100.0,
            ..spec()
        })
        .unwrap();
        assert!((ev.requested_current() - 110.0).abs() < 1e-9);
        let full = Ev::new(EvSpec {
            soc: 80.0,
            ..spec()
        })
        .unwrap();
        assert_eq!(full.requested_current(), 0.0);
    }

    #[test]
    fn a_bad_spec_names_its_field() {
        let error = Ev::new(EvSpec {
            battery_v: 50.0,
            ..spec()
        })
        .unwrap_err();
        assert_eq!(error.field, "battery_v");
        assert_eq!(
            Ev::new(EvSpec {
                max_current_a: 0.0,
                ..spec()
            })
            .unwrap_err()
            .field,
            "max_current_a"
        );
    }
}
