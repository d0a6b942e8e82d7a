//! Temperature derating with hysteresis: full capability below a start temperature,
//! falling linearly to zero at a shutdown temperature, and, once shut down, nothing until
//! the temperature has fallen below a recovery threshold.
//!
//! ```text
//!  factor
//!   1 ─────────┐
//!              │╲
//!              │  ╲
//!   0          │    ╲___________ (shut down until below `recovery`)
//!          recovery start   shutdown   → temperature
//! ```

/// Thresholds of one derating curve, in °C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DerateCurve {
    /// Derating begins here.
    pub start: f64,
    /// Capability reaches zero here, and the device is shut down.
    pub shutdown: f64,
    /// A shut-down device returns below this.
    pub recovery: f64,
}

impl DerateCurve {
    /// Power modules: derate from 75 °C, shut down at 95 °C, back below 70 °C.
    pub const MODULE: Self = Self {
        start: 75.0,
        shutdown: 95.0,
        recovery: 70.0,
    };
    /// Gun connector and cable: derate from 60 °C, stop at 90 °C, back below 55 °C.
    pub const CONNECTOR: Self = Self {
        start: 60.0,
        shutdown: 90.0,
        recovery: 55.0,
    };
}

/// The state of one derated device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Derate {
    /// Its curve.
    curve: DerateCurve,
    /// Shut down, waiting to cool below recovery.
    shut_down: bool,
    /// Latest capability factor, 0..=1.
    factor: f64,
}

impl Derate {
    pub fn new(curve: DerateCurve) -> Self {
        Self {
            curve,
            shut_down: false,
            factor: 1.0,
        }
    }

    /// Updates with a new temperature; returns the capability factor.
    pub fn update(&mut self, temperature: f64) -> f64 {
        let c = self.curve;
        if temperature >= c.shutdown {
            self.shut_down = true;
        } else if self.shut_down && temperature < c.recovery {
            self.shut_down = false;
        }
        self.factor = if self.shut_down {
            0.0
        } else {
            ((c.shutdown - temperature) / (c.shutdown - c.start)).clamp(0.0, 1.0)
        };
        self.factor
    }

    pub fn factor(&self) -> f64 {
        self.factor
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_between_start_and_shutdown() {
        let mut d = Derate::new(DerateCurve::MODULE);
        assert_eq!(d.update(40.0), 1.0);
        assert_eq!(d.update(75.0), 1.0);
        assert!((d.update(85.0) - 0.5).abs() < 1e-9);
        assert!(!d.is_shut_down());
    }

    #[test]
    fn shutdown_holds_until_recovery() {
        let mut d = Derate::new(DerateCurve::MODULE);
        assert_eq!(d.update(95.0), 0.0);
        assert!(d.is_shut_down());
        assert_eq!(
            d.update(80.0),
            0.0,
            "still shut down above the recovery threshold"
        );
        assert_eq!(d.update(72.0), 0.0);
        assert_eq!(d.update(69.0), 1.0);
        assert!(!d.is_shut_down());
    }
}
