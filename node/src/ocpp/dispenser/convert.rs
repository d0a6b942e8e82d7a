//! Mappings between the node's words and OCPP's: statuses and their error codes, stop
//! reasons, and meter readings as MeterValue samples.

use ringhub_proto::can::messages::MeterSource;
use ringhub_proto::units::KilowattHours;

use super::super::charge_point::StatusDetail;
use super::super::messages::charge_point::{ChargePointErrorCode, ChargePointStatus, Reason};
use super::super::messages::meter::{
    Location, Measurand, MeterValue, ReadingContext, SampledValue, UnitOfMeasure, ValueFormat,
};
use super::super::types::{CiString, DateTime};
use super::GunReading;
use crate::connector::{ConnectorStatus, FaultCode, LocalFault, StopReason};

/// The OCPP Reason (§7.40) of a session's end.
///
/// - EvStopped → **Local**: the EV ended the session itself (full, or its driver stopped
///   it from the vehicle) with the cable still in: a regular, user-side termination at
///   the charge point, which is what Local means ("stopped locally on request of the
///   user"). EVDisconnected is kept for a cable that was actually pulled.
/// - Unplugged → EVDisconnected; Remote → Remote (also an operator's stop); Rejected →
///   DeAuthorized; Fault(EmergencyStop) → EmergencyStop; every other fault, a failed
///   high-level session and a pilot fault → Other.
pub fn stop_reason(reason: StopReason) -> Reason {
    match reason {
        StopReason::EvStopped => Reason::Local,
        StopReason::Unplugged => Reason::EvDisconnected,
        StopReason::Remote => Reason::Remote,
        StopReason::Rejected => Reason::DeAuthorized,
        StopReason::Fault(FaultCode::EmergencyStop) => Reason::EmergencyStop,
        StopReason::Fault(_)
        | StopReason::HlcFailed(_)
        | StopReason::PilotFault(_)
        | StopReason::ConnectionTimeout => Reason::Other,
    }
}

/// Energy in whole Wh, saturating.
pub fn watt_hours(energy: KilowattHours) -> i32 {
    // `as` saturates, and maps NaN to 0.
    (energy.0 * 1000.0).round() as i32
}

/// The measurands a `*Data` configuration key lists (MeterValuesSampledData,
/// MeterValuesAlignedData); the key table has checked every name.
pub(super) fn measurands(value: &str) -> Vec<Measurand> {
    value
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .filter_map(|m| serde_json::from_value(serde_json::Value::from(m)).ok())
        .collect()
}

/// The sample of a reading with `context`, one SampledValue per wanted measurand that
/// the node measures (energy register, power, current and voltage from the trusted meter;
/// SoC from the EV); none without a trusted meter or when nothing wanted is measured.
pub(super) fn meter_value(
    reading: &GunReading,
    timestamp: DateTime,
    context: ReadingContext,
    wanted: &[Measurand],
) -> Option<MeterValue> {
    let meter = reading.meter?;
    let location = match meter.source {
        MeterSource::PlcMeter => Location::Outlet,
        MeterSource::Shunt => Location::Body,
    };
    let sampled_value: Vec<SampledValue> = wanted
        .iter()
        .filter_map(|&measurand| {
            let (value, unit, location) = match measurand {
                Measurand::EnergyActiveImportRegister => (
                    watt_hours(meter.energy_register).to_string(),
                    UnitOfMeasure::Wh,
                    location,
                ),
                Measurand::PowerActiveImport => (
                    format!("{:.0}", meter.voltage.0 * meter.current.0),
                    UnitOfMeasure::W,
                    location,
                ),
                Measurand::CurrentImport => (
                    format!("{:.1}", meter.current.0),
                    UnitOfMeasure::A,
                    location,
                ),
                Measurand::Voltage => (
                    format!("{:.1}", meter.voltage.0),
                    UnitOfMeasure::V,
                    location,
                ),
                Measurand::SoC => (
                    reading.soc?.0.to_string(),
                    UnitOfMeasure::Percent,
                    Location::Ev,
                ),
                _ => return None,
            };
            Some(SampledValue {
                value,
                context: Some(context),
                format: Some(ValueFormat::Raw),
                measurand: Some(measurand),
                phase: None,
                location: Some(location),
                unit: Some(unit),
            })
        })
        .collect();
    (!sampled_value.is_empty()).then_some(MeterValue {
        timestamp,
        sampled_value,
    })
}

/// The StatusNotification fields for a gun's status and the fault behind it.
pub fn ocpp_status(
    status: ConnectorStatus,
    fault: Option<&LocalFault>,
) -> (ChargePointStatus, ChargePointErrorCode, StatusDetail) {
    let status = match status {
        ConnectorStatus::Available => ChargePointStatus::Available,
        ConnectorStatus::Preparing => ChargePointStatus::Preparing,
        ConnectorStatus::Charging => ChargePointStatus::Charging,
        ConnectorStatus::SuspendedEv => ChargePointStatus::SuspendedEv,
        ConnectorStatus::SuspendedEvse => ChargePointStatus::SuspendedEvse,
        ConnectorStatus::Finishing => ChargePointStatus::Finishing,
        ConnectorStatus::Unavailable => ChargePointStatus::Unavailable,
        ConnectorStatus::Faulted => ChargePointStatus::Faulted,
    };
    if status != ChargePointStatus::Faulted {
        return (
            status,
            ChargePointErrorCode::NoError,
            StatusDetail::default(),
        );
    }
    match fault {
        Some(fault) => faulted(fault.code.as_str(), &fault.subject),
        None => (
            status,
            ChargePointErrorCode::InternalError,
            StatusDetail::default(),
        ),
    }
}

/// Faulted for the catalog's fault `code` on `subject`: the catalog's
/// ChargePointErrorCode (OCPP 1.6 §7.6), the code as vendorErrorCode, the subject as info.
pub(super) fn faulted(
    code: &str,
    subject: &str,
) -> (ChargePointStatus, ChargePointErrorCode, StatusDetail) {
    let error_code = ringhub_cluster::faults::spec(code)
        .and_then(|spec| serde_json::from_value(serde_json::json!(spec.ocpp_error)).ok())
        .unwrap_or(ChargePointErrorCode::InternalError);
    let detail = StatusDetail {
        info: CiString::new(truncate(subject, 50)).ok(),
        vendor_error_code: CiString::new(truncate(code, 50)).ok(),
    };
    (ChargePointStatus::Faulted, error_code, detail)
}

/// At most `max` characters of `text`.
pub(super) fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ringhub_proto::can::messages::LockState;
    use ringhub_proto::config::GunId;
    use ringhub_proto::units::Percent;

    use super::*;
    use crate::connector::MeterView;

    #[test]
    fn every_catalog_fault_has_a_real_ocpp_error_code() {
        for code in FaultCode::ALL {
            assert!(
                ringhub_cluster::faults::spec(code.as_str()).is_some(),
                "{code} is not in the fault catalog"
            );
        }
        for spec in ringhub_cluster::faults::CATALOG {
            let parsed: Result<ChargePointErrorCode, _> =
                serde_json::from_value(serde_json::json!(spec.ocpp_error));
            assert!(
                parsed.is_ok(),
                "{}: {} is not OCPP 1.6",
                spec.code,
                spec.ocpp_error
            );
        }
        let (status, error_code, detail) = faulted("CABINET_LOST", "cabinet cab-b");
        assert_eq!(
            (status, error_code),
            (ChargePointStatus::Faulted, ChargePointErrorCode::OtherError)
        );
        assert_eq!(
            detail.vendor_error_code.map(|c| c.to_string()),
            Some("CABINET_LOST".into())
        );
        assert_eq!(
            detail.info.map(|c| c.to_string()),
            Some("cabinet cab-b".into())
        );
    }

    /// Every measurand the node measures, in the default order.
    const ALL: &str =
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC";

    fn fault(code: FaultCode) -> LocalFault {
        LocalFault {
            evidence: Vec::new(),
            code,
            subject: "segment 0 gc".into(),
            detail: "feedback closed 300 ms after open".into(),
            raised_at: Duration::from_secs(1),
        }
    }

    #[test]
    fn statuses_map_one_to_one_without_error() {
        let (status, code, detail) = ocpp_status(ConnectorStatus::Preparing, None);
        assert_eq!(status, ChargePointStatus::Preparing);
        assert_eq!(code, ChargePointErrorCode::NoError);
        assert_eq!(detail, StatusDetail::default());
        let (status, ..) = ocpp_status(ConnectorStatus::SuspendedEvse, None);
        assert_eq!(status, ChargePointStatus::SuspendedEvse);
    }

    #[test]
    fn faulted_carries_the_fault() {
        let (status, code, detail) = ocpp_status(
            ConnectorStatus::Faulted,
            Some(&fault(FaultCode::ContactorWelded)),
        );
        assert_eq!(status, ChargePointStatus::Faulted);
        assert_eq!(code, ChargePointErrorCode::PowerSwitchFailure);
        assert_eq!(
            detail.vendor_error_code.map(|c| c.to_string()).as_deref(),
            Some("CONTACTOR_WELDED")
        );
        assert_eq!(
            detail.info.map(|c| c.to_string()).as_deref(),
            Some("segment 0 gc")
        );
        let (_, code, _) = ocpp_status(ConnectorStatus::Faulted, None);
        assert_eq!(code, ChargePointErrorCode::InternalError);
    }

    #[test]
    fn stop_reasons_map_to_ocpp() {
        assert_eq!(stop_reason(StopReason::EvStopped), Reason::Local);
        assert_eq!(stop_reason(StopReason::Unplugged), Reason::EvDisconnected);
        assert_eq!(stop_reason(StopReason::Remote), Reason::Remote);
        assert_eq!(stop_reason(StopReason::Rejected), Reason::DeAuthorized);
        assert_eq!(
            stop_reason(StopReason::Fault(FaultCode::EmergencyStop)),
            Reason::EmergencyStop
        );
        assert_eq!(
            stop_reason(StopReason::Fault(FaultCode::IsolationFault)),
            Reason::Other
        );
    }

    #[test]
    fn samples_carry_the_trusted_meter_as_location() {
        use ringhub_proto::units::{Amps, Volts};
        let reading = |source| GunReading {
            gun: GunId(0),
            meter: Some(MeterView {
                source,
                voltage: Volts(400.0),
                current: Amps(100.0),
                energy_register: KilowattHours(12.3456),
            }),
            soc: Some(Percent(51)),
            lock: LockState::Locked,
        };
        let at = DateTime::from_unix_millis(1_700_000_000_000);
        let all = measurands(ALL);
        let periodic = ReadingContext::SamplePeriodic;
        let value = meter_value(&reading(MeterSource::PlcMeter), at.clone(), periodic, &all)
            .expect("a sample");
        let seen: Vec<_> = value
            .sampled_value
            .iter()
            .map(|v| (v.measurand, v.value.as_str(), v.unit, v.location))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    Some(Measurand::EnergyActiveImportRegister),
                    "12346",
                    Some(UnitOfMeasure::Wh),
                    Some(Location::Outlet)
                ),
                (
                    Some(Measurand::PowerActiveImport),
                    "40000",
                    Some(UnitOfMeasure::W),
                    Some(Location::Outlet)
                ),
                (
                    Some(Measurand::CurrentImport),
                    "100.0",
                    Some(UnitOfMeasure::A),
                    Some(Location::Outlet)
                ),
                (
                    Some(Measurand::Voltage),
                    "400.0",
                    Some(UnitOfMeasure::V),
                    Some(Location::Outlet)
                ),
                (
                    Some(Measurand::SoC),
                    "51",
                    Some(UnitOfMeasure::Percent),
                    Some(Location::Ev)
                ),
            ]
        );
        assert!(
            value
                .sampled_value
                .iter()
                .all(|v| v.context == Some(ReadingContext::SamplePeriodic))
        );
        let shunt = meter_value(&reading(MeterSource::Shunt), at.clone(), periodic, &all)
            .expect("a sample");
        assert_eq!(shunt.sampled_value[0].location, Some(Location::Body));
        let unmetered = GunReading {
            meter: None,
            ..reading(MeterSource::Shunt)
        };
        assert_eq!(meter_value(&unmetered, at, periodic, &all), None);
    }

    #[test]
    fn samples_follow_the_configured_measurands_and_context() {
        use ringhub_proto::units::{Amps, Volts};
        let reading = GunReading {
            gun: GunId(0),
            meter: Some(MeterView {
                source: MeterSource::PlcMeter,
                voltage: Volts(400.0),
                current: Amps(10.0),
                energy_register: KilowattHours(1.0),
            }),
            soc: None,
            lock: LockState::Locked,
        };
        let at = DateTime::from_unix_millis(1_700_000_000_000);
        let wanted = measurands("Voltage, SoC,Energy.Active.Import.Register");
        let value = meter_value(&reading, at.clone(), ReadingContext::SampleClock, &wanted)
            .expect("a sample");
        // In the configured order; SoC left out, since the EV did not tell it.
        let seen: Vec<_> = value
            .sampled_value
            .iter()
            .map(|v| (v.measurand, v.value.as_str(), v.context))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    Some(Measurand::Voltage),
                    "400.0",
                    Some(ReadingContext::SampleClock)
                ),
                (
                    Some(Measurand::EnergyActiveImportRegister),
                    "1000",
                    Some(ReadingContext::SampleClock)
                ),
            ]
        );
        // Only measurands the node does not measure (or none): no sample at all.
        let unmeasured = measurands("Temperature,Frequency");
        assert_eq!(unmeasured.len(), 2);
        assert_eq!(
            meter_value(&reading, at.clone(), ReadingContext::Trigger, &unmeasured),
            None
        );
        assert_eq!(
            meter_value(&reading, at, ReadingContext::Trigger, &[]),
            None
        );
    }
}
