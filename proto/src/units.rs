//! Physical quantities as types, so that a voltage cannot be passed where a current is
//! expected. Values are in the SI-derived unit the hub works in (V, A, kW, kWh, °C);
//! wire scaling (decivolts and the like) belongs to the codecs, not to these types.

use std::fmt;

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub f64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $unit)
            }
        }
    };
}

quantity!(
    /// Electric potential in volts.
    Volts, "V"
);
quantity!(
    /// Electric current in amperes; positive toward the EV.
    Amps, "A"
);
quantity!(
    /// Power in kilowatts.
    Kilowatts, "kW"
);
quantity!(
    /// Energy in kilowatt-hours.
    KilowattHours, "kWh"
);
quantity!(
    /// Temperature in degrees Celsius.
    Celsius, "°C"
);

/// State of charge or another ratio, in whole percent (0..=100).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Percent(pub u8);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_with_their_unit() {
        assert_eq!(Volts(400.5).to_string(), "400.5 V");
        assert_eq!(Celsius(-5.0).to_string(), "-5 °C");
        assert_eq!(Percent(80).to_string(), "80 %");
    }
}
