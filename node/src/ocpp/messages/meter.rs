//! MeterValue and SampledValue (OCPP 1.6 §7.31, §7.45) with the enumerations that qualify
//! a reading: ReadingContext, ValueFormat, Measurand, Phase, Location, UnitOfMeasure
//! (§7.40, §7.47, §7.35, §7.36, §7.33, §7.48), spelled as the JSON schemas spell them.

use serde::{Deserialize, Deserializer, Serialize};

use crate::ocpp::types::{DateTime, occurence_error};

/// Why a sample was taken (§7.40); absent means Sample.Periodic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReadingContext {
    /// At the start of an interruption (e.g. a power loss).
    #[serde(rename = "Interruption.Begin")]
    InterruptionBegin,
    /// At the end of an interruption.
    #[serde(rename = "Interruption.End")]
    InterruptionEnd,
    /// Any other reason.
    Other,
    /// At a clock-aligned interval (ClockAlignedDataInterval).
    #[serde(rename = "Sample.Clock")]
    SampleClock,
    /// At a periodic interval from the transaction start (MeterValueSampleInterval).
    #[serde(rename = "Sample.Periodic")]
    SamplePeriodic,
    /// At the start of a transaction.
    #[serde(rename = "Transaction.Begin")]
    TransactionBegin,
    /// At the end of a transaction.
    #[serde(rename = "Transaction.End")]
    TransactionEnd,
    /// In answer to a TriggerMessage.
    Trigger,
}

/// How `value` is encoded (§7.47); absent means Raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ValueFormat {
    /// A number as text.
    Raw,
    /// A signed binary block, hex-encoded.
    SignedData,
}

/// What was measured (§7.35); absent means Energy.Active.Import.Register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Measurand {
    /// Energy exported by the EV, register (Wh or kWh).
    #[serde(rename = "Energy.Active.Export.Register")]
    EnergyActiveExportRegister,
    /// Energy imported by the EV, register (Wh or kWh).
    #[serde(rename = "Energy.Active.Import.Register")]
    EnergyActiveImportRegister,
    /// Reactive energy exported, register (varh or kvarh).
    #[serde(rename = "Energy.Reactive.Export.Register")]
    EnergyReactiveExportRegister,
    /// Reactive energy imported, register (varh or kvarh).
    #[serde(rename = "Energy.Reactive.Import.Register")]
    EnergyReactiveImportRegister,
    /// Energy exported over the last interval.
    #[serde(rename = "Energy.Active.Export.Interval")]
    EnergyActiveExportInterval,
    /// Energy imported over the last interval.
    #[serde(rename = "Energy.Active.Import.Interval")]
    EnergyActiveImportInterval,
    /// Reactive energy exported over the last interval.
    #[serde(rename = "Energy.Reactive.Export.Interval")]
    EnergyReactiveExportInterval,
    /// Reactive energy imported over the last interval.
    #[serde(rename = "Energy.Reactive.Import.Interval")]
    EnergyReactiveImportInterval,
    /// Instantaneous active power exported by the EV.
    #[serde(rename = "Power.Active.Export")]
    PowerActiveExport,
    /// Instantaneous active power imported by the EV.
    #[serde(rename = "Power.Active.Import")]
    PowerActiveImport,
    /// Maximum power offered to the EV.
    #[serde(rename = "Power.Offered")]
    PowerOffered,
    /// Instantaneous reactive power exported.
    #[serde(rename = "Power.Reactive.Export")]
    PowerReactiveExport,
    /// Instantaneous reactive power imported.
    #[serde(rename = "Power.Reactive.Import")]
    PowerReactiveImport,
    /// Instantaneous power factor.
    #[serde(rename = "Power.Factor")]
    PowerFactor,
    /// Instantaneous current flow to the EV.
    #[serde(rename = "Current.Import")]
    CurrentImport,
    /// Instantaneous current flow from the EV.
    #[serde(rename = "Current.Export")]
    CurrentExport,
    /// Maximum current offered to the EV.
    #[serde(rename = "Current.Offered")]
    CurrentOffered,
    /// Instantaneous AC RMS or DC voltage.
    Voltage,
    /// Instantaneous grid frequency.
    Frequency,
    /// A temperature reading.
    Temperature,
    /// The EV's state of charge, in percent.
    SoC,
    /// A fan speed.
    #[serde(rename = "RPM")]
    Rpm,
}

/// Which phase or phases a reading is for (§7.36).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Phase 1.
    L1,
    /// Phase 2.
    L2,
    /// Phase 3.
    L3,
    /// Neutral.
    N,
    /// Phase 1 to neutral.
    #[serde(rename = "L1-N")]
    L1N,
    /// Phase 2 to neutral.
    #[serde(rename = "L2-N")]
    L2N,
    /// Phase 3 to neutral.
    #[serde(rename = "L3-N")]
    L3N,
    /// Phase 1 to phase 2.
    #[serde(rename = "L1-L2")]
    L1L2,
    /// Phase 2 to phase 3.
    #[serde(rename = "L2-L3")]
    L2L3,
    /// Phase 3 to phase 1.
    #[serde(rename = "L3-L1")]
    L3L1,
}

/// Where a reading was taken (§7.33); absent means Outlet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Location {
    /// The charge point's body (e.g. an internal temperature).
    Body,
    /// The cable, between the connector and the EV.
    Cable,
    /// The EV.
    #[serde(rename = "EV")]
    Ev,
    /// The network connection of the charge point.
    Inlet,
    /// The connector.
    Outlet,
}

/// The unit of `value` (§7.48); absent means Wh. "Celcius" is the schema's historic
/// misspelling, accepted next to "Celsius".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnitOfMeasure {
    /// Watt-hours.
    Wh,
    /// Kilowatt-hours.
    #[serde(rename = "kWh")]
    KWh,
    /// Var-hours.
    #[serde(rename = "varh")]
    Varh,
    /// Kilovar-hours.
    #[serde(rename = "kvarh")]
    Kvarh,
    /// Watts.
    W,
    /// Kilowatts.
    #[serde(rename = "kW")]
    KW,
    /// Volt-amperes.
    #[serde(rename = "VA")]
    Va,
    /// Kilovolt-amperes.
    #[serde(rename = "kVA")]
    KVa,
    /// Vars.
    #[serde(rename = "var")]
    Var,
    /// Kilovars.
    #[serde(rename = "kvar")]
    Kvar,
    /// Amperes.
    A,
    /// Volts.
    V,
    /// Kelvin.
    K,
    /// Degrees Celsius, as the 1.6 schema misspells it.
    Celcius,
    /// Degrees Celsius.
    Celsius,
    /// Degrees Fahrenheit.
    Fahrenheit,
    /// Percent (SoC).
    Percent,
}

/// One reading (§7.45).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampledValue {
    /// The reading as text (a number for Raw, hex for SignedData).
    pub value: String,
    /// Why it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ReadingContext>,
    /// How `value` is encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ValueFormat>,
    /// What it measures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurand: Option<Measurand>,
    /// The phase(s) it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Where it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Its unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitOfMeasure>,
}

/// Readings taken at one instant (§7.31).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeterValue {
    /// When they were taken.
    pub timestamp: DateTime,
    /// The readings, at least one.
    #[serde(deserialize_with = "non_empty")]
    pub sampled_value: Vec<SampledValue>,
}

/// Deserializes a list the spec requires to hold at least one element (cardinality 1..*).
pub(crate) fn non_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<T>::deserialize(deserializer)?;
    if items.is_empty() {
        return Err(occurence_error("a list of cardinality 1..* is empty"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ocpp::rpc::ErrorCode;
    use crate::ocpp::types::decode_payload;

    #[test]
    fn enum_spellings_match_the_schema() {
        let cases = [
            (
                json!(ReadingContext::InterruptionBegin),
                "Interruption.Begin",
            ),
            (json!(ReadingContext::SampleClock), "Sample.Clock"),
            (json!(ReadingContext::TransactionEnd), "Transaction.End"),
            (json!(ValueFormat::SignedData), "SignedData"),
            (
                json!(Measurand::EnergyActiveImportRegister),
                "Energy.Active.Import.Register",
            ),
            (
                json!(Measurand::EnergyReactiveExportInterval),
                "Energy.Reactive.Export.Interval",
            ),
            (json!(Measurand::PowerOffered), "Power.Offered"),
            (json!(Measurand::CurrentOffered), "Current.Offered"),
            (json!(Measurand::SoC), "SoC"),
            (json!(Measurand::Rpm), "RPM"),
            (json!(Phase::L1N), "L1-N"),
            (json!(Phase::L3L1), "L3-L1"),
            (json!(Location::Ev), "EV"),
            (json!(UnitOfMeasure::KWh), "kWh"),
            (json!(UnitOfMeasure::Kvarh), "kvarh"),
            (json!(UnitOfMeasure::KVa), "kVA"),
            (json!(UnitOfMeasure::Celcius), "Celcius"),
            (json!(UnitOfMeasure::Percent), "Percent"),
        ];
        for (value, spelling) in cases {
            assert_eq!(value, spelling);
        }
    }

    #[test]
    fn meter_value_round_trips() {
        let wire = json!({
            "timestamp": "2024-05-01T10:00:00Z",
            "sampledValue": [
                {"value": "12345", "context": "Sample.Periodic", "format": "Raw",
                 "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
                {"value": "402.5", "measurand": "Voltage", "unit": "V"},
                {"value": "81", "measurand": "SoC", "location": "EV", "unit": "Percent"},
                {"value": "230.1", "measurand": "Voltage", "phase": "L2-N", "unit": "V"}
            ]
        });
        let mv: MeterValue = decode_payload(&wire).unwrap();
        assert_eq!(mv.sampled_value[2].location, Some(Location::Ev));
        assert_eq!(serde_json::to_value(&mv).unwrap(), wire);
    }

    #[test]
    fn bad_meter_values_are_classified() {
        let cases = [
            (
                json!({"timestamp": "2024-05-01T10:00:00Z", "sampledValue": []}),
                ErrorCode::OccurenceConstraintViolation,
            ),
            (
                json!({"timestamp": "2024-05-01T10:00:00Z",
                    "sampledValue": [{"value": "1", "unit": "Hz"}]}),
                ErrorCode::PropertyConstraintViolation,
            ),
            (
                json!({"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [{"value": 1}]}),
                ErrorCode::TypeConstraintViolation,
            ),
            (
                json!({"timestamp": "2024-05-01T10:00:00Z",
                    "sampledValue": [{"value": "1", "source": "shunt"}]}),
                ErrorCode::FormationViolation,
            ),
            (
                json!({"sampledValue": [{"value": "1"}]}),
                ErrorCode::ProtocolError,
            ),
        ];
        for (wire, code) in cases {
            let err = decode_payload::<MeterValue>(&wire).unwrap_err();
            assert_eq!(err.code, code, "{wire}: {err}");
        }
    }
}
