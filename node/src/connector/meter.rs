//! Meter validation and fallback. The PLC reports two readings per gun: its calibrated
//! meter and a DC shunt. The calibrated meter is trusted while it is valid and fresh; if
//! it fails, the shunt takes over. The two are compared all the time, and a disagreement
//! beyond tolerance that lasts is flagged. Session energy accumulates from the trusted
//! source's register, so a switch of source neither loses nor double-counts energy.

use std::time::{Duration, Instant};

use ringhub_proto::can::messages::{Meter, MeterSource};

/// A reading older than this is stale.
const STALE_AFTER: Duration = Duration::from_millis(1_000);
/// Absolute tolerance between the meter and the shunt.
const TOLERANCE_A: f64 = 2.0;
/// Relative tolerance between the meter and the shunt.
const TOLERANCE_RATIO: f64 = 0.03;
/// A disagreement (or agreement) must last this long to change the verdict.
const PERSISTENCE: Duration = Duration::from_millis(1_000);
/// A register step larger than this between two readings is not believed.
const MAX_STEP_KWH: f64 = 5.0;

/// The meter validator of one gun.
#[derive(Debug, Clone, Default)]
pub(super) struct MeterValidator {
    /// Latest PLC meter reading and when it came.
    plc: Option<(Meter, Instant)>,
    /// Latest shunt reading and when it came.
    shunt: Option<(Meter, Instant)>,
    /// Since when the comparison has said the opposite of `disagreement`.
    flip_since: Option<Instant>,
    /// The sources disagree (persistently).
    disagreement: bool,
    /// Register of the trusted source at its previous reading, with the source.
    last_register: Option<(MeterSource, f64)>,
    /// Energy accumulated since the last reset, kWh.
    energy: f64,
}

impl MeterValidator {
    /// Takes a reading.
    pub(super) fn update(&mut self, meter: Meter, now: Instant) {
        match meter.source {
            MeterSource::PlcMeter => self.plc = Some((meter, now)),
            MeterSource::Shunt => self.shunt = Some((meter, now)),
        }
        self.compare(now);
        if let Some(trusted) = self.trusted(now)
            && trusted.source == meter.source
        {
            let register = meter.energy.0;
            if let Some((source, last)) = self.last_register
                && source == meter.source
            {
                let step = register - last;
                if (0.0..MAX_STEP_KWH).contains(&step) {
                    self.energy += step;
                }
            }
            self.last_register = Some((meter.source, register));
        }
    }

    fn compare(&mut self, now: Instant) {
        let (Some((plc, _)), Some((shunt, _))) = (
            self.fresh(MeterSource::PlcMeter, now),
            self.fresh(MeterSource::Shunt, now),
        ) else {
            return;
        };
        if !plc.valid || !shunt.valid {
            return;
        }
        let (a, b) = (plc.current.0, shunt.current.0);
        let differs = (a - b).abs() > TOLERANCE_A.max(TOLERANCE_RATIO * a.abs().max(b.abs()));
        if differs == self.disagreement {
            self.flip_since = None;
        } else {
            let since = *self.flip_since.get_or_insert(now);
            if now.duration_since(since) >= PERSISTENCE {
                self.disagreement = differs;
                self.flip_since = None;
            }
        }
    }

    fn fresh(&self, source: MeterSource, now: Instant) -> Option<(Meter, Instant)> {
        let reading = match source {
            MeterSource::PlcMeter => self.plc,
            MeterSource::Shunt => self.shunt,
        };
        reading.filter(|(_, at)| now.duration_since(*at) < STALE_AFTER)
    }

    /// The reading to use: the PLC meter while valid and fresh, else the shunt.
    pub(super) fn trusted(&self, now: Instant) -> Option<Meter> {
        let plc = self
            .fresh(MeterSource::PlcMeter, now)
            .map(|(m, _)| m)
            .filter(|m| m.valid);
        plc.or_else(|| {
            self.fresh(MeterSource::Shunt, now)
                .map(|(m, _)| m)
                .filter(|m| m.valid)
        })
    }

    /// Whether the PLC meter has failed (invalid, or silent while the shunt reports).
    pub(super) fn meter_failed(&self, now: Instant) -> bool {
        match self.fresh(MeterSource::PlcMeter, now) {
            Some((meter, _)) => !meter.valid,
            None => self.fresh(MeterSource::Shunt, now).is_some(),
        }
    }

    /// Whether the meter and the shunt persistently disagree.
    pub(super) fn disagreement(&self) -> bool {
        self.disagreement
    }

    /// Energy since the last [`Self::reset_energy`], kWh.
    pub(super) fn energy(&self) -> f64 {
        self.energy
    }

    /// Starts counting a new session's energy.
    pub(super) fn reset_energy(&mut self) {
        self.energy = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use ringhub_proto::units::{Amps, KilowattHours, Volts};

    use super::*;

    fn reading(source: MeterSource, valid: bool, amps: f64, kwh: f64) -> Meter {
        Meter {
            source,
            valid,
            voltage: Volts(400.0),
            current: Amps(amps),
            energy: KilowattHours(kwh),
        }
    }

    #[test]
    fn trusts_the_meter_and_falls_back_to_the_shunt() {
        let (mut v, t0) = (MeterValidator::default(), Instant::now());
        v.update(reading(MeterSource::PlcMeter, true, 100.0, 10.0), t0);
        v.update(reading(MeterSource::Shunt, true, 100.5, 20.0), t0);
        assert_eq!(v.trusted(t0).unwrap().source, MeterSource::PlcMeter);
        v.update(reading(MeterSource::PlcMeter, false, 0.0, 0.0), t0);
        assert_eq!(v.trusted(t0).unwrap().source, MeterSource::Shunt);
        assert!(v.meter_failed(t0));
        // A silent meter is a failed meter too.
        let later = t0 + Duration::from_millis(1_500);
        v.update(reading(MeterSource::Shunt, true, 100.0, 20.1), later);
        assert!(v.meter_failed(later));
        assert_eq!(v.trusted(later).unwrap().source, MeterSource::Shunt);
    }

    #[test]
    fn a_lasting_disagreement_is_flagged_and_a_blip_is_not() {
        let (mut v, t0) = (MeterValidator::default(), Instant::now());
        let at = |ms| t0 + Duration::from_millis(ms);
        v.update(reading(MeterSource::PlcMeter, true, 100.0, 0.0), at(0));
        v.update(reading(MeterSource::Shunt, true, 115.0, 0.0), at(0));
        v.update(reading(MeterSource::Shunt, true, 100.0, 0.0), at(200));
        v.update(reading(MeterSource::Shunt, true, 115.0, 0.0), at(400));
        v.update(reading(MeterSource::PlcMeter, true, 100.0, 0.0), at(1_000));
        assert!(!v.disagreement(), "a blip does not count");
        v.update(reading(MeterSource::Shunt, true, 115.0, 0.0), at(1_400));
        assert!(v.disagreement());
        v.update(reading(MeterSource::Shunt, true, 101.0, 0.0), at(1_600));
        v.update(reading(MeterSource::PlcMeter, true, 100.0, 0.0), at(2_200));
        assert!(v.disagreement(), "not yet a second of agreement");
        v.update(reading(MeterSource::Shunt, true, 101.0, 0.0), at(2_600));
        assert!(!v.disagreement(), "agreement for a second clears it");
    }

    #[test]
    fn energy_follows_the_trusted_register_across_a_source_switch() {
        let (mut v, t0) = (MeterValidator::default(), Instant::now());
        let at = |ms| t0 + Duration::from_millis(ms);
        v.update(reading(MeterSource::PlcMeter, true, 100.0, 10.00), at(0));
        v.update(reading(MeterSource::Shunt, true, 100.0, 50.00), at(0));
        v.update(reading(MeterSource::PlcMeter, true, 100.0, 10.50), at(200));
        v.update(reading(MeterSource::PlcMeter, false, 0.0, 0.0), at(400));
        v.update(reading(MeterSource::Shunt, true, 100.0, 50.20), at(400));
        v.update(reading(MeterSource::Shunt, true, 100.0, 50.45), at(600));
        assert!(
            (v.energy() - 0.75).abs() < 1e-9,
            "0.5 from the meter, then 0.25 from the shunt: {}",
            v.energy()
        );
    }
}
