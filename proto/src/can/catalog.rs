//! The CAN catalog: the DBC model indexed for lookup, and the generic codec that turns a
//! frame into named, scaled signal values and back, checking everything the DBC states.
//!
//! Decoding rejects a frame whose id is not in the catalog, whose DLC differs from the
//! message's, whose enumerated signal holds a value outside its value table (reserved),
//! or whose signal lies outside its `[min|max]`. Encoding refuses the same things, so
//! the node can never put a frame on the bus that its own decoder would reject.
//! Typed messages (`messages.rs`) sit on top of this; the CLI and the cross-checks with
//! `cantools` use it directly.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::bits;
use super::dbc::{self, Dbc, MessageDef, MuxRole, SignalDef};
use super::frame::{CanFrame, CanId};
use super::messages::DbcEnum;

/// The DBC text compiled into every binary.
pub const RINGHUB_DBC: &str = include_str!("../../can/ringhub.dbc");

static RINGHUB: LazyLock<Catalog> = LazyLock::new(|| {
    // The shipped DBC is checked by unit tests; failing here is a build defect.
    Catalog::new(dbc::parse(RINGHUB_DBC).expect("proto/can/ringhub.dbc must parse"))
});

/// The catalog of `proto/can/ringhub.dbc`.
pub fn ringhub() -> &'static Catalog {
    &RINGHUB
}

/// A DBC model with its id and name indexes.
#[derive(Debug)]
pub struct Catalog {
    /// The parsed DBC.
    dbc: Dbc,
    /// Every addressable id → (message index, address). At most 16 × 2⁸ entries.
    by_id: HashMap<CanId, (usize, u8)>,
    /// Message name → message index.
    by_name: HashMap<String, usize>,
}

/// Why a frame could not be decoded or a message could not be encoded. Every variant
/// names the message and, where one is at fault, the signal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown CAN id {id}: no message in the catalog has it")]
    UnknownId { id: CanId },
    #[error("{message} (id {id}): DLC {actual}, expected {expected}")]
    WrongDlc {
        message: String,
        id: CanId,
        actual: u8,
        expected: u8,
    },
    #[error("{message}.{signal}: raw value {raw} is reserved (not in the signal's value table)")]
    ReservedValue {
        message: String,
        signal: String,
        raw: i64,
    },
    #[error("{message}.{signal}: {value}{unit} is outside [{minimum}, {maximum}]")]
    OutOfRange {
        message: String,
        signal: String,
        value: f64,
        unit: String,
        minimum: f64,
        maximum: f64,
    },
    #[error("{message}.{signal}: multiplexer value {raw} selects no signals")]
    UnknownMultiplexer {
        message: String,
        signal: String,
        raw: i64,
    },
    #[error("{message}.{signal}: {value} does not fit in the signal's {length} bits")]
    NotRepresentable {
        message: String,
        signal: String,
        value: f64,
        length: u8,
    },
    #[error("{message}.{signal}: {label:?} is not one of {expected}")]
    UnknownLabel {
        message: String,
        signal: String,
        label: String,
        expected: String,
    },
    #[error("{message}: no signal {signal:?} (or it is not present for this multiplexer value)")]
    UnknownSignal { message: String, signal: String },
    #[error("{message}.{signal}: no value given")]
    MissingSignal { message: String, signal: String },
    #[error("{message}.{signal}: {reason}")]
    Inconsistent {
        message: String,
        signal: String,
        reason: String,
    },
    #[error("unknown message {name:?}")]
    UnknownMessage { name: String },
    #[error("{message}: address {address} does not fit in {bits} address bits")]
    BadAddress {
        message: String,
        address: u16,
        bits: u8,
    },
}

/// A decoded frame: its message, the address carried in its id, and the signals present.
#[derive(Debug, Clone)]
pub struct Decoded<'c> {
    /// The catalog entry.
    pub message: &'c MessageDef,
    /// The low id bits (PLC slot or module address).
    pub address: u8,
    /// Signals present in this frame, in DBC order (multiplexed ones only when selected).
    pub signals: Vec<DecodedSignal<'c>>,
}

/// One decoded signal.
#[derive(Debug, Clone, Copy)]
pub struct DecodedSignal<'c> {
    /// The catalog entry.
    pub def: &'c SignalDef,
    /// Raw value, sign-extended for signed signals.
    pub raw: i64,
    /// raw × factor + offset.
    pub physical: f64,
}

/// A signal value as a person reads it: a label, an exact integer, or a scaled number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SignalValue<'c> {
    /// The value-table label.
    Label(&'c str),
    /// An unscaled integer signal.
    Integer(i64),
    /// A scaled signal.
    Float(f64),
}

/// A value given to the generic encoder.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalInput {
    /// A physical (scaled) value.
    Physical(f64),
    /// A value-table label.
    Label(String),
}

impl<'c> DecodedSignal<'c> {
    /// The value as the CLI prints it.
    pub fn value(&self) -> SignalValue<'c> {
        if let Some(label) = self.def.label_of(self.raw) {
            SignalValue::Label(label)
        } else if is_integral(self.def) {
            SignalValue::Integer(self.physical as i64)
        } else {
            SignalValue::Float(round_to_resolution(self.physical, self.def))
        }
    }
}

/// Rounds away the binary noise of decimal scaling (3 × 0.1 = 0.30000000000000004), to
/// the decimal places that the factor and offset can produce.
fn round_to_resolution(physical: f64, def: &SignalDef) -> f64 {
    let places = |x: f64| {
        (0..=9)
            .find(|&d| ((x * 10f64.powi(d)).fract()).abs() < 1e-9)
            .unwrap_or(9)
    };
    let scale = 10f64.powi(places(def.factor.abs()).max(places(def.offset.abs())));
    (physical * scale).round() / scale
}

/// Whether every raw value maps to an integer physical value.
fn is_integral(def: &SignalDef) -> bool {
    def.factor.fract() == 0.0 && def.offset.fract() == 0.0
}

impl<'c> Decoded<'c> {
    fn missing(&self, signal: &str) -> CodecError {
        CodecError::UnknownSignal {
            message: self.message.name.clone(),
            signal: signal.to_owned(),
        }
    }

    /// The signal named `name`, if present in this frame.
    pub fn signal(&self, name: &str) -> Result<&DecodedSignal<'c>, CodecError> {
        self.signals
            .iter()
            .find(|s| s.def.name == name)
            .ok_or_else(|| self.missing(name))
    }

    /// The physical value of a signal.
    pub fn physical(&self, name: &str) -> Result<f64, CodecError> {
        Ok(self.signal(name)?.physical)
    }

    /// The raw value of a signal.
    pub fn raw(&self, name: &str) -> Result<i64, CodecError> {
        Ok(self.signal(name)?.raw)
    }

    /// A one-bit flag.
    pub fn flag(&self, name: &str) -> Result<bool, CodecError> {
        Ok(self.raw(name)? != 0)
    }

    /// A raw value converted to a narrower integer type (the DBC range guarantees it fits).
    pub fn int<T: TryFrom<i64>>(&self, name: &str) -> Result<T, CodecError> {
        let signal = self.signal(name)?;
        T::try_from(signal.raw).map_err(|_| CodecError::NotRepresentable {
            message: self.message.name.clone(),
            signal: name.to_owned(),
            value: signal.physical,
            length: signal.def.length,
        })
    }
}

impl Catalog {
    /// Indexes a parsed DBC.
    pub fn new(dbc: Dbc) -> Self {
        let mut by_id = HashMap::new();
        let mut by_name = HashMap::new();
        for (index, message) in dbc.messages.iter().enumerate() {
            by_name.insert(message.name.clone(), index);
            for address in 0..(1u32 << message.address_bits) {
                let id = match message.id {
                    CanId::Standard(base) => CanId::Standard(base | address as u16),
                    CanId::Extended(base) => CanId::Extended(base | address),
                };
                by_id.insert(id, (index, address as u8));
            }
        }
        Self {
            dbc,
            by_id,
            by_name,
        }
    }

    /// The underlying DBC model.
    pub fn dbc(&self) -> &Dbc {
        &self.dbc
    }

    /// The message named `name`.
    pub fn message(&self, name: &str) -> Result<&MessageDef, CodecError> {
        self.by_name
            .get(name)
            .map(|&index| &self.dbc.messages[index])
            .ok_or_else(|| CodecError::UnknownMessage {
                name: name.to_owned(),
            })
    }

    /// The message and address a frame id belongs to.
    pub fn lookup(&self, id: CanId) -> Option<(&MessageDef, u8)> {
        self.by_id
            .get(&id)
            .map(|&(index, address)| (&self.dbc.messages[index], address))
    }

    /// Decodes and validates a frame.
    pub fn decode(&self, frame: &CanFrame) -> Result<Decoded<'_>, CodecError> {
        let id = frame.id();
        let (message, address) = self.lookup(id).ok_or(CodecError::UnknownId { id })?;
        if frame.dlc() != message.dlc {
            return Err(CodecError::WrongDlc {
                message: message.name.clone(),
                id,
                actual: frame.dlc(),
                expected: message.dlc,
            });
        }
        let payload = frame.data();
        let mux = match message.multiplexer() {
            Some(def) => {
                let signal = decode_signal(message, def, payload)?;
                let selects_any = message
                    .signals
                    .iter()
                    .any(|s| s.mux == MuxRole::Multiplexed(signal.raw as u64));
                if !selects_any {
                    return Err(CodecError::UnknownMultiplexer {
                        message: message.name.clone(),
                        signal: def.name.clone(),
                        raw: signal.raw,
                    });
                }
                Some(signal.raw as u64)
            }
            None => None,
        };
        let signals = message
            .signals
            .iter()
            .filter(|def| is_present(def, mux))
            .map(|def| decode_signal(message, def, payload))
            .collect::<Result<_, _>>()?;
        Ok(Decoded {
            message,
            address,
            signals,
        })
    }

    /// Encodes a message from named values, by label or physical value. Every signal
    /// present for the chosen multiplexer value must be given, and no other.
    pub fn encode(
        &self,
        name: &str,
        address: u16,
        values: &[(String, SignalInput)],
    ) -> Result<CanFrame, CodecError> {
        let message = self.message(name)?;
        let mut writer = FrameWriter::new(message, address)?;
        let input = |signal: &str| values.iter().find(|(n, _)| n == signal).map(|(_, v)| v);
        let mux = match message.multiplexer() {
            Some(def) => {
                let value = input(&def.name).ok_or_else(|| missing(message, def))?;
                writer.set_input(&def.name, value)?;
                Some(def.raw_of(message, value)? as u64)
            }
            None => None,
        };
        for (signal, _) in values {
            let def = message.signal(signal).filter(|def| is_present(def, mux));
            if def.is_none() {
                return Err(CodecError::UnknownSignal {
                    message: message.name.clone(),
                    signal: signal.clone(),
                });
            }
        }
        for def in message
            .signals
            .iter()
            .filter(|def| is_present(def, mux) && def.mux != MuxRole::Multiplexer)
        {
            let value = input(&def.name).ok_or_else(|| missing(message, def))?;
            writer.set_input(&def.name, value)?;
        }
        Ok(writer.finish())
    }
}

fn missing(message: &MessageDef, def: &SignalDef) -> CodecError {
    CodecError::MissingSignal {
        message: message.name.clone(),
        signal: def.name.clone(),
    }
}

/// Whether a signal is in a frame whose multiplexer holds `mux`.
fn is_present(def: &SignalDef, mux: Option<u64>) -> bool {
    match def.mux {
        MuxRole::Plain | MuxRole::Multiplexer => true,
        MuxRole::Multiplexed(value) => mux == Some(value),
    }
}

fn decode_signal<'c>(
    message: &MessageDef,
    def: &'c SignalDef,
    payload: &[u8],
) -> Result<DecodedSignal<'c>, CodecError> {
    let bits =
        bits::extract(payload, def.start_bit, def.length, def.byte_order).ok_or_else(|| {
            CodecError::NotRepresentable {
                message: message.name.clone(),
                signal: def.name.clone(),
                value: f64::NAN,
                length: def.length,
            }
        })?;
    let raw = if def.signed {
        bits::sign_extend(bits, def.length)
    } else {
        bits as i64
    };
    if !def.values.is_empty() && def.label_of(raw).is_none() {
        return Err(CodecError::ReservedValue {
            message: message.name.clone(),
            signal: def.name.clone(),
            raw,
        });
    }
    let physical = raw as f64 * def.factor + def.offset;
    def.check_range(message, physical)?;
    Ok(DecodedSignal { def, raw, physical })
}

impl SignalDef {
    fn check_range(&self, message: &MessageDef, physical: f64) -> Result<(), CodecError> {
        // Scaling by a decimal factor is inexact in binary: allow a millionth of a step.
        let slack = self.factor.abs() * 1e-6;
        let outside = physical < self.minimum - slack || physical > self.maximum + slack;
        if physical.is_nan() || (self.is_bounded() && outside) {
            return Err(CodecError::OutOfRange {
                message: message.name.clone(),
                signal: self.name.clone(),
                value: physical,
                unit: if self.unit.is_empty() {
                    String::new()
                } else {
                    format!(" {}", self.unit)
                },
                minimum: self.minimum,
                maximum: self.maximum,
            });
        }
        Ok(())
    }

    /// The raw value for an input, checked against the value table, range and width.
    fn raw_of(&self, message: &MessageDef, input: &SignalInput) -> Result<i64, CodecError> {
        match input {
            SignalInput::Label(label) => {
                self.value_of(label)
                    .ok_or_else(|| CodecError::UnknownLabel {
                        message: message.name.clone(),
                        signal: self.name.clone(),
                        label: label.clone(),
                        expected: self
                            .values
                            .iter()
                            .map(|(_, l)| l.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
            SignalInput::Physical(physical) => self.raw_of_physical(message, *physical),
        }
    }

    fn raw_of_physical(&self, message: &MessageDef, physical: f64) -> Result<i64, CodecError> {
        self.check_range(message, physical)?;
        let raw = ((physical - self.offset) / self.factor).round();
        let (low, high) = if self.signed {
            (
                -(2f64.powi(i32::from(self.length) - 1)),
                2f64.powi(i32::from(self.length) - 1) - 1.0,
            )
        } else {
            (0.0, 2f64.powi(i32::from(self.length)) - 1.0)
        };
        if !(low..=high).contains(&raw) {
            return Err(CodecError::NotRepresentable {
                message: message.name.clone(),
                signal: self.name.clone(),
                value: physical,
                length: self.length,
            });
        }
        let raw = raw as i64;
        if !self.values.is_empty() && self.label_of(raw).is_none() {
            return Err(CodecError::ReservedValue {
                message: message.name.clone(),
                signal: self.name.clone(),
                raw,
            });
        }
        Ok(raw)
    }
}

/// Builds one frame signal by signal, checking each value as it is set.
#[derive(Debug)]
pub struct FrameWriter<'c> {
    /// The message being built.
    message: &'c MessageDef,
    /// The frame id, address included.
    id: CanId,
    /// Payload; unused bits stay zero.
    payload: [u8; 8],
}

impl<'c> FrameWriter<'c> {
    /// Starts a frame of `message` for `address`.
    pub fn new(message: &'c MessageDef, address: u16) -> Result<Self, CodecError> {
        if u32::from(address) >= 1 << message.address_bits {
            return Err(CodecError::BadAddress {
                message: message.name.clone(),
                address,
                bits: message.address_bits,
            });
        }
        let id = match message.id {
            CanId::Standard(base) => CanId::Standard(base | address),
            CanId::Extended(base) => CanId::Extended(base | u32::from(address)),
        };
        Ok(Self {
            message,
            id,
            payload: [0; 8],
        })
    }

    fn def(&self, signal: &str) -> Result<&'c SignalDef, CodecError> {
        self.message
            .signal(signal)
            .ok_or_else(|| CodecError::UnknownSignal {
                message: self.message.name.clone(),
                signal: signal.to_owned(),
            })
    }

    fn put(&mut self, def: &SignalDef, raw: i64) {
        let dlc = usize::from(self.message.dlc);
        // The DBC parser checked that every signal fits the message length.
        let _fits = bits::insert(
            &mut self.payload[..dlc],
            def.start_bit,
            def.length,
            def.byte_order,
            raw as u64,
        );
    }

    /// Sets a signal from its physical value.
    pub fn set(&mut self, signal: &str, physical: f64) -> Result<&mut Self, CodecError> {
        let def = self.def(signal)?;
        let raw = def.raw_of_physical(self.message, physical)?;
        self.put(def, raw);
        Ok(self)
    }

    /// Sets a signal from a label or physical value.
    pub fn set_input(
        &mut self,
        signal: &str,
        input: &SignalInput,
    ) -> Result<&mut Self, CodecError> {
        let def = self.def(signal)?;
        let raw = def.raw_of(self.message, input)?;
        self.put(def, raw);
        Ok(self)
    }

    /// Sets an enumerated signal.
    pub fn set_enum<T: DbcEnum>(
        &mut self,
        signal: &str,
        value: T,
    ) -> Result<&mut Self, CodecError> {
        self.set(signal, value.raw() as f64)
    }

    /// Sets a one-bit flag.
    pub fn set_flag(&mut self, signal: &str, value: bool) -> Result<&mut Self, CodecError> {
        self.set(signal, if value { 1.0 } else { 0.0 })
    }

    /// The finished frame.
    pub fn finish(self) -> CanFrame {
        let dlc = usize::from(self.message.dlc);
        CanFrame::new(self.id, &self.payload[..dlc])
            .unwrap_or_else(|| unreachable!("DLC is at most 8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> CanFrame {
        text.parse().unwrap()
    }

    #[test]
    fn decodes_a_relay_feedback_frame_field_by_field() {
        let frame = frame(concat!(
            "0A3#", "21",   // GcFeedback 1 (gun closed), MnFeedback 2 (bit 1)
            "03",   // McFeedback: modules 0 and 1 closed
            "00",   // GcFault, MnFault: none
            "00",   // McFault: none
            "A60E", // BusVoltage 0x0EA6 = 3750 → 375.0 V
            "07",   // AckSequence 7
            "00",   // RefusedReason None
        ));
        let decoded = ringhub().decode(&frame).unwrap();
        assert_eq!(decoded.message.name, "RelayFeedback");
        assert_eq!(decoded.address, 3);
        assert_eq!(decoded.raw("GcFeedback").unwrap(), 1);
        assert_eq!(decoded.raw("MnFeedback").unwrap(), 2);
        assert_eq!(decoded.raw("McFeedback").unwrap(), 3);
        assert!((decoded.physical("BusVoltage").unwrap() - 375.0).abs() < 1e-9);
        assert_eq!(
            decoded.signal("AckSequence").unwrap().value(),
            SignalValue::Integer(7)
        );
        assert_eq!(
            decoded.signal("RefusedReason").unwrap().value(),
            SignalValue::Label("None")
        );
    }

    #[test]
    fn rejects_unknown_ids_wrong_dlc_reserved_values_and_out_of_range() {
        let catalog = ringhub();
        assert!(matches!(
            catalog.decode(&frame("7FF#00")),
            Err(CodecError::UnknownId { .. })
        ));
        // An extended id with a standard message's number is a different id.
        assert!(matches!(
            catalog.decode(&frame("000000A0#00")),
            Err(CodecError::UnknownId { .. })
        ));
        let error = catalog.decode(&frame("0A0#00")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "RelayFeedback (id 0A0): DLC 1, expected 8"
        );
        // ChargeInfo.CpState 7 is not in the value table.
        let error = catalog.decode(&frame("0B0#07000000")).unwrap_err();
        assert_eq!(
            error,
            CodecError::ReservedValue {
                message: "ChargeInfo".into(),
                signal: "CpState".into(),
                raw: 7
            }
        );
        // RelayFeedback.BusVoltage 0xFFFF = 6553.5 V exceeds 1500 V.
        let error = catalog.decode(&frame("0A0#00000000FFFF0000")).unwrap_err();
        assert!(
            matches!(&error, CodecError::OutOfRange { signal, .. } if signal == "BusVoltage"),
            "{error}"
        );
        assert!(
            error.to_string().contains("6553.5 V is outside [0, 1500]"),
            "{error}"
        );
    }

    #[test]
    fn multiplexer_selects_the_signals_present() {
        let catalog = ringhub();
        let decoded = catalog.decode(&frame("120#1402")).unwrap();
        assert_eq!(
            decoded.signal("ParamId").unwrap().value(),
            SignalValue::Label("AuthGranted")
        );
        assert_eq!(
            decoded.signal("AuthGranted").unwrap().value(),
            SignalValue::Label("Accepted")
        );
        assert!(decoded.signal("LockCommand").is_err());
        // Param 25 is not a parameter.
        assert!(matches!(
            catalog.decode(&frame("120#1900")),
            Err(CodecError::ReservedValue { .. })
        ));
    }

    #[test]
    fn generic_encode_checks_every_input() {
        let catalog = ringhub();
        let label = |s: &str| SignalInput::Label(s.to_owned());
        let values = [
            ("ParamId".to_owned(), label("Lock")),
            ("LockCommand".to_owned(), label("Lock")),
        ];
        assert_eq!(
            catalog
                .encode("ConfigWrite", 2, &values)
                .unwrap()
                .to_string(),
            "122#1E01"
        );

        let wrong_mux = [
            ("ParamId".to_owned(), label("Lock")),
            ("AuthGranted".to_owned(), label("Accepted")),
        ];
        assert!(matches!(
            catalog.encode("ConfigWrite", 0, &wrong_mux),
            Err(CodecError::UnknownSignal { .. })
        ));

        let missing = [("ParamId".to_owned(), label("Lock"))];
        assert!(matches!(
            catalog.encode("ConfigWrite", 0, &missing),
            Err(CodecError::MissingSignal { .. })
        ));

        let bad_label = [
            ("ParamId".to_owned(), label("Lock")),
            ("LockCommand".to_owned(), label("Open")),
        ];
        let error = catalog.encode("ConfigWrite", 0, &bad_label).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ConfigWrite.LockCommand: \"Open\" is not one of Unlock, Lock"
        );

        let address = [
            ("ParamId".to_owned(), label("Lock")),
            ("LockCommand".to_owned(), label("Lock")),
        ];
        assert!(matches!(
            catalog.encode("ConfigWrite", 16, &address),
            Err(CodecError::BadAddress { .. })
        ));
        assert!(matches!(
            catalog.encode("Nope", 0, &[]),
            Err(CodecError::UnknownMessage { .. })
        ));
    }

    #[test]
    fn writer_refuses_out_of_range_and_unrepresentable_values() {
        let message = ringhub().message("EvseLimits").unwrap();
        let mut writer = FrameWriter::new(message, 0).unwrap();
        assert!(matches!(
            writer.set("MaxVoltage", 1500.1),
            Err(CodecError::OutOfRange { .. })
        ));
        assert!(matches!(
            writer.set("MaxVoltage", -0.1),
            Err(CodecError::OutOfRange { .. })
        ));
        assert!(matches!(
            writer.set("MaxVoltage", f64::NAN),
            Err(CodecError::OutOfRange { .. })
        ));
        writer.set("MaxVoltage", 1500.0).unwrap();
        let uptime = ringhub().message("PlcHeartbeat").unwrap();
        let mut writer = FrameWriter::new(uptime, 0).unwrap();
        assert!(matches!(
            writer.set("Uptime", 4_294_967_296.0),
            Err(CodecError::OutOfRange { .. })
        ));
    }

    #[test]
    fn module_frames_carry_the_address_in_the_low_byte() {
        let decoded = ringhub()
            .decode(&frame("1810002A#E803DC056400C800"))
            .unwrap();
        assert_eq!(decoded.message.name, "ModuleStatus");
        assert_eq!(decoded.address, 0x2A);
    }
}
