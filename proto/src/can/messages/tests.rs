use proptest::prelude::*;

use super::*;
use crate::can::catalog::{SignalInput, ringhub};
use crate::can::dbc::{MessageDef, MuxRole, SignalDef};
use crate::can::frame::CanId;
use crate::units::{Amps, Celsius, Volts};

fn frame(text: &str) -> CanFrame {
    text.parse().unwrap()
}

/// The raw values a signal may take: its value table, or its range clipped to its width.
fn raw_choices(def: &SignalDef) -> (i64, i64, Option<Vec<i64>>) {
    if !def.values.is_empty() {
        return (0, 0, Some(def.values.iter().map(|(v, _)| *v).collect()));
    }
    let (width_lo, width_hi) = if def.signed {
        (-(1i64 << (def.length - 1)), (1i64 << (def.length - 1)) - 1)
    } else {
        (0, (1i64 << def.length) - 1)
    };
    let lo = ((def.minimum - def.offset) / def.factor - 1e-9).ceil() as i64;
    let hi = ((def.maximum - def.offset) / def.factor + 1e-9).floor() as i64;
    (lo.max(width_lo), hi.min(width_hi), None)
}

fn pick(def: &SignalDef, seed: u64) -> i64 {
    match raw_choices(def) {
        (_, _, Some(values)) => values[(seed % values.len() as u64) as usize],
        (lo, hi, None) => lo + (seed % ((hi - lo) as u64 + 1)) as i64,
    }
}

/// A valid frame of `message` with signal values drawn from `seeds`; returns the raw values.
fn valid_frame(
    message: &MessageDef,
    address: u16,
    seeds: &[u64],
) -> (CanFrame, Vec<(String, i64)>) {
    let mut writer = FrameWriter::new(message, address).unwrap();
    let mux = message.multiplexer().map(|_| {
        let selectable: Vec<u64> = message
            .signals
            .iter()
            .filter_map(|s| match s.mux {
                MuxRole::Multiplexed(v) => Some(v),
                _ => None,
            })
            .collect();
        selectable[(seeds[0] % selectable.len() as u64) as usize] as i64
    });
    let mut raws = Vec::new();
    for (i, def) in message.signals.iter().enumerate() {
        let raw = match def.mux {
            MuxRole::Multiplexer => mux.unwrap_or_default(),
            MuxRole::Multiplexed(v) if Some(v as i64) != mux => continue,
            _ => pick(def, seeds[i + 1]),
        };
        raws.push((def.name.clone(), raw));
    }
    if message.name == "RfidRead" {
        // Bytes past the UID length must be zero: derive the UID signals from the length.
        let len = raws[0].1 as u32;
        let uid_bits = |offset: u32, width: u32, value: i64| {
            let keep = len.saturating_sub(offset).min(width) * 8;
            if keep >= 64 {
                value
            } else {
                value & ((1i64 << keep) - 1)
            }
        };
        raws[1].1 = uid_bits(0, 4, raws[1].1);
        raws[2].1 = uid_bits(4, 3, raws[2].1);
    }
    for (name, raw) in &raws {
        let def = message.signal(name).unwrap();
        writer
            .set(name, *raw as f64 * def.factor + def.offset)
            .unwrap();
    }
    (writer.finish(), raws)
}

fn any_message() -> impl Strategy<Value = (usize, u16, Vec<u64>)> {
    let count = ringhub().dbc().messages.len();
    (
        0..count,
        any::<u16>(),
        prop::collection::vec(any::<u64>(), 16),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every message of the catalog: a valid frame decodes to the values written, and the
    /// typed message encodes back to the same bytes.
    #[test]
    fn every_message_round_trips((index, address, seeds) in any_message()) {
        let message = &ringhub().dbc().messages[index];
        let address = address % (1 << message.address_bits);
        let (frame, raws) = valid_frame(message, address, &seeds);

        let decoded = ringhub().decode(&frame).unwrap();
        prop_assert_eq!(u16::from(decoded.address), address);
        let decoded_raws: Vec<(String, i64)> = decoded.signals.iter().map(|s| (s.def.name.clone(), s.raw)).collect();
        prop_assert_eq!(&decoded_raws, &raws);

        let typed = CanMessage::decode(&frame).unwrap();
        prop_assert_eq!(typed.encode().unwrap(), frame);

        // The generic encoder, given the decoded values, writes the same frame too.
        let inputs: Vec<(String, SignalInput)> = decoded
            .signals
            .iter()
            .map(|s| (s.def.name.clone(), SignalInput::Physical(s.physical)))
            .collect();
        prop_assert_eq!(ringhub().encode(&message.name, address, &inputs).unwrap(), frame);
    }

    /// Arbitrary bytes never panic the decoder, and whatever it accepts re-encodes to a
    /// frame that decodes to the same message.
    #[test]
    fn arbitrary_frames_decode_or_fail_cleanly(
        extended in any::<bool>(),
        raw_id in any::<u32>(),
        data in prop::collection::vec(any::<u8>(), 0..=8),
    ) {
        let id = if extended {
            CanId::Extended(raw_id & CanId::MAX_EXTENDED)
        } else {
            CanId::Standard((raw_id & 0x1FF) as u16)
        };
        let frame = CanFrame::new(id, &data).unwrap();
        if let Ok(message) = CanMessage::decode(&frame) {
            let again = message.encode().unwrap();
            prop_assert_eq!(CanMessage::decode(&again).unwrap(), message);
        }
    }
}

#[test]
fn config_write_auth_granted_accepted() {
    let frame = CanMessage::Plc {
        slot: PlcSlot::new(5).unwrap(),
        message: PlcMessage::ConfigWrite(ConfigWrite::AuthGranted(AuthStatus::Accepted)),
    }
    .encode()
    .unwrap();
    // 0x120 + slot 5; byte 0 ParamId 20 (0x14); byte 1 Accepted (2).
    assert_eq!(frame.to_string(), "125#1402");
}

#[test]
fn charge_info_field_by_field() {
    let frame = frame(concat!(
        "0B1#",
        "52", // CpState C (2); AuthPending 1 (bit 4); AuthGranted Accepted (2, bits 5..6)
        "05", // LockState Locked (1); IsolationState Valid (1, bits 10..12)
        "01", // EmergencyStop
        "5A", // ConnectorTemp 90 - 40 = 50 °C
    ));
    let CanMessage::Plc {
        slot,
        message: PlcMessage::ChargeInfo(info),
    } = CanMessage::decode(&frame).unwrap()
    else {
        panic!("not ChargeInfo");
    };
    assert_eq!(slot.get(), 1);
    assert_eq!(info.cp, CpState::C);
    assert!(info.auth_pending);
    assert_eq!(info.auth, AuthStatus::Accepted);
    assert_eq!(info.lock, LockState::Locked);
    assert_eq!(info.isolation, IsolationState::Valid);
    assert!(info.emergency_stop && !info.rcd_trip);
    assert_eq!(info.connector_temperature, Celsius(50.0));
}

#[test]
fn module_setpoint_scales_to_decivolts() {
    let message = CanMessage::Module {
        address: ModuleAddress(7),
        message: ModuleMessage::Setpoint(ModuleSetpoint {
            voltage: Volts(400.0),
            current_limit: Amps(125.5),
            power_limit: crate::units::Kilowatts(50.0),
        }),
    };
    // 400.0 V = 4000 = 0x0FA0; 125.5 A = 1255 = 0x04E7; 50 kW = 5000 = 0x1388.
    assert_eq!(
        message.encode().unwrap().to_string(),
        "18010007#A00FE7048813"
    );
}

#[test]
fn encode_refuses_what_the_dbc_does_not_allow() {
    let limits = |volts| CanMessage::Plc {
        slot: PlcSlot::default(),
        message: PlcMessage::EvseLimits(EvseLimits {
            max_voltage: Volts(volts),
            max_current: Amps(100.0),
            max_power: crate::units::Kilowatts(50.0),
            min_voltage: Volts(150.0),
        }),
    };
    assert!(limits(920.0).encode().is_ok());
    let error = limits(1600.0).encode().unwrap_err();
    assert_eq!(
        error.to_string(),
        "EvseLimits.MaxVoltage: 1600 V is outside [0, 1500]"
    );
    let relay = CanMessage::Plc {
        slot: PlcSlot::default(),
        message: PlcMessage::RelayFeedback(RelayFeedback {
            closed: Contactors {
                gun: 0x10,
                modules: 0,
                ties: 0,
            },
            faulted: Contactors::default(),
            bus_voltage: Volts(0.0),
            ack_sequence: 0,
            refused: RefusedReason::None,
        }),
    };
    assert!(
        matches!(relay.encode(), Err(CodecError::OutOfRange { signal, .. }) if signal == "GcFeedback")
    );
}

#[test]
fn rfid_uid_round_trips_and_rejects_trailing_garbage() {
    let uid = RfidUid::new(&[0x04, 0xA2, 0x3B, 0x1C]).unwrap();
    let message = CanMessage::Plc {
        slot: PlcSlot::default(),
        message: PlcMessage::RfidRead(RfidRead { uid }),
    };
    let encoded = message.encode().unwrap();
    assert_eq!(encoded.to_string(), "1C0#0404A23B1C000000");
    assert_eq!(CanMessage::decode(&encoded).unwrap(), message);
    assert_eq!(uid.to_string(), "04A23B1C");
    // Length 4 but a fifth byte set.
    let error = CanMessage::decode(&frame("1C0#0404A23B1C990000")).unwrap_err();
    assert!(matches!(error, CodecError::Inconsistent { .. }), "{error}");
    assert!(RfidUid::new(&[]).is_none() && RfidUid::new(&[0; 8]).is_none());
}

#[test]
fn ev_identity_header_carries_the_mac_first_octet_lowest() {
    let mac = MacAddress([0x00, 0x7D, 0xFA, 0x01, 0x02, 0x03]);
    let message = CanMessage::Plc {
        slot: PlcSlot::new(2).unwrap(),
        message: PlcMessage::EvIdentity(EvIdentityFrame {
            transfer_id: 9,
            part: EvIdentityPart::Header { mac, emaid_len: 14 },
        }),
    };
    let frame = message.encode().unwrap();
    // byte 0: FrameIndex 0, TransferId 9 (high nibble); bytes 1..6 MAC; byte 7 length 14.
    assert_eq!(frame.to_string(), "1B2#90007DFA0102030E");
    assert_eq!(CanMessage::decode(&frame).unwrap(), message);
    assert_eq!(mac.to_string(), "00:7D:FA:01:02:03");
}

#[test]
fn tie_feedback_round_trips_with_a_negative_current() {
    let message = CanMessage::Plc {
        slot: PlcSlot::new(3).unwrap(),
        message: PlcMessage::TieFeedback(TieFeedback {
            far_bus_voltage: Volts(398.7),
            current: Amps(-12.5),
        }),
    };
    let encoded = message.encode().unwrap();
    // 0x0C0 + slot 3; 398.7 V = 3987 = 0x0F93; -12.5 A = -125 = 0xFF83 (two's complement).
    assert_eq!(encoded.to_string(), "0C3#930F83FF");
    let CanMessage::Plc {
        slot,
        message: PlcMessage::TieFeedback(tie),
    } = CanMessage::decode(&encoded).unwrap()
    else {
        panic!("not TieFeedback");
    };
    assert_eq!(slot.get(), 3);
    assert!((tie.far_bus_voltage.0 - 398.7).abs() < 1e-9);
    assert!((tie.current.0 + 12.5).abs() < 1e-9);

    // Full scale both ways; a DLC other than 4 is refused.
    let extreme = |amps| CanMessage::Plc {
        slot: PlcSlot::default(),
        message: PlcMessage::TieFeedback(TieFeedback {
            far_bus_voltage: Volts(1500.0),
            current: Amps(amps),
        }),
    };
    for amps in [-1000.0, 1000.0] {
        let encoded = extreme(amps).encode().unwrap();
        assert_eq!(CanMessage::decode(&encoded).unwrap(), extreme(amps));
    }
    assert!(matches!(
        extreme(-1000.1).encode(),
        Err(CodecError::OutOfRange { signal, .. }) if signal == "TieCurrent"
    ));
    assert!(matches!(
        CanMessage::decode(&frame("0C0#930F83FF00")),
        Err(CodecError::WrongDlc { .. })
    ));
}
