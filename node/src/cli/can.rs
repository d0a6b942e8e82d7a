//! `ringhub can …`: look at CAN frames the way the DBC describes them.
//!
//! - `decode 123#DEADBEEF` prints one JSON object, or the error and a non-zero exit;
//! - `dump URI` decodes a live bus or a log, one JSON line per frame;
//! - `encode MESSAGE SIGNAL=VALUE…` prints the frame in candump syntax.
//!
//! The JSON is `{"message", "id", "address", "signals": {name: value}}`, where a value is
//! the physical (scaled) number, or the value-table label for an enumerated signal.

use ringhub_proto::can::{CanFrame, CanMessage, CodecError, SignalInput, SignalValue, ringhub};
use serde_json::{Map, Value, json};

use crate::can::{
    AnyBus, BusUri, CanBus, CanError, CandumpReplay, ErrorKind, Pacing, ReceivedFrame, Recovery,
};

/// Decodes a frame, through both the catalog and the typed messages, so that the CLI
/// rejects exactly what the node rejects.
pub fn decode(frame: &CanFrame) -> Result<Value, CodecError> {
    let decoded = ringhub().decode(frame)?;
    CanMessage::decode(frame)?;
    let signals: Map<String, Value> = decoded
        .signals
        .iter()
        .map(|signal| {
            let value = match signal.value() {
                SignalValue::Label(label) => json!(label),
                SignalValue::Integer(value) => json!(value),
                SignalValue::Float(value) => json!(value),
            };
            (signal.def.name.clone(), value)
        })
        .collect();
    Ok(json!({
        "message": decoded.message.name,
        "id": frame.id().raw(),
        "address": decoded.address,
        "signals": signals,
    }))
}

/// Why `ringhub can encode` arguments are not usable.
#[derive(Debug, thiserror::Error)]
pub enum EncodeArgsError {
    #[error("argument {0:?} is not SIGNAL=VALUE")]
    NotAnAssignment(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Encodes `MESSAGE SIGNAL=VALUE…`: a VALUE that parses as a number is physical, any
/// other is a value-table label.
pub fn encode(
    message: &str,
    address: u16,
    assignments: &[String],
) -> Result<CanFrame, EncodeArgsError> {
    let values = assignments
        .iter()
        .map(|arg| {
            let (name, value) = arg
                .split_once('=')
                .ok_or_else(|| EncodeArgsError::NotAnAssignment(arg.clone()))?;
            let input = match value.parse::<f64>() {
                Ok(number) => SignalInput::Physical(number),
                Err(_) => SignalInput::Label(value.to_owned()),
            };
            Ok((name.to_owned(), input))
        })
        .collect::<Result<Vec<_>, EncodeArgsError>>()?;
    Ok(ringhub().encode(message, address, &values)?)
}

/// One line of `ringhub can dump`: the decoded frame with its receive time, or the
/// frame and why it did not decode.
pub fn dump_line(received: &ReceivedFrame) -> Value {
    let timestamp = received.timestamp_us as f64 / 1e6;
    match decode(&received.frame) {
        Ok(Value::Object(mut object)) => {
            object.insert("timestamp".into(), json!(timestamp));
            Value::Object(object)
        }
        Ok(other) => other,
        Err(error) => json!({
            "timestamp": timestamp,
            "frame": received.frame.to_string(),
            "error": error.to_string(),
        }),
    }
}

/// Decodes every frame of `uri` to `out` until the bus ends or `limit` frames were seen.
/// A log is read as fast as possible. Input the bus itself got wrong (a malformed log
/// line or socketcand message) is printed as an error line and skipped; a transport
/// failure ends the dump with its error. Returns how many lines were errors.
pub async fn dump(
    uri: &BusUri,
    limit: Option<u64>,
    out: &mut impl std::io::Write,
) -> Result<u64, CanError> {
    let mut bus = match uri {
        BusUri::Candump { path } => {
            AnyBus::Candump(CandumpReplay::open(path, Pacing::AsFastAsPossible).await?)
        }
        live => AnyBus::open(live).await?,
    };
    let (mut seen, mut bad) = (0, 0);
    while limit.is_none_or(|limit| seen < limit) {
        let line = match bus.recv().await {
            Ok(received) => dump_line(&received),
            Err(error) if error.recovery() == Recovery::Skip => {
                json!({ "error": error.to_string() })
            }
            Err(error) if error.kind() == ErrorKind::Ended => break,
            Err(error) => return Err(error),
        };
        bad += u64::from(line.get("error").is_some());
        seen += 1;
        // A closed stdout (`| head`) ends the dump like the end of the bus.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_prints_message_id_and_physical_signals() {
        let frame: CanFrame = "0A3#21030000A60E07".parse().unwrap();
        let err = decode(&frame).unwrap_err();
        assert!(err.to_string().contains("DLC 7, expected 8"), "{err}");

        let frame: CanFrame = "0A3#21030000A60E0701".parse().unwrap();
        let value = decode(&frame).unwrap();
        assert_eq!(value["message"], "RelayFeedback");
        assert_eq!(value["id"], 0xA3);
        assert_eq!(value["address"], 3);
        assert_eq!(value["signals"]["BusVoltage"], 375.0);
        assert_eq!(value["signals"]["AckSequence"], 7);
        assert_eq!(value["signals"]["RefusedReason"], "AuthNotAccepted");
        let names: Vec<&String> = value["signals"].as_object().unwrap().keys().collect();
        assert_eq!(
            names.first().map(|s| s.as_str()),
            Some("GcFeedback"),
            "signals keep DBC order"
        );
    }

    #[test]
    fn encode_takes_numbers_and_labels() {
        let args = [
            "ParamId=AuthGranted".to_owned(),
            "AuthGranted=Accepted".to_owned(),
        ];
        assert_eq!(
            encode("ConfigWrite", 5, &args).unwrap().to_string(),
            "125#1402"
        );
        let args = [
            "MaxVoltage=920".to_owned(),
            "MaxCurrent=500".into(),
            "MaxPower=350".into(),
            "MinVoltage=150".into(),
        ];
        assert_eq!(
            encode("EvseLimits", 0, &args).unwrap().to_string(),
            "130#F0238813AC0DDC05"
        );
        assert!(matches!(
            encode("ConfigWrite", 0, &["ParamId".to_owned()]),
            Err(EncodeArgsError::NotAnAssignment(_))
        ));
    }
}
