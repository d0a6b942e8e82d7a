//! A classic CAN 2.0 frame, as every transport carries it, and its candump text forms.
//!
//! Two text forms exist, both from can-utils:
//! - the compact frame syntax `123#DEADBEEF` (`cansend`, `candump -L`): three hex digits
//!   for an 11-bit id, eight for a 29-bit id, then up to eight data bytes in hex;
//! - the log line `(1700000000.123456) can0 123#DEADBEEF` written by `candump -l`.

use std::fmt;
use std::str::FromStr;

/// Largest payload of a classic CAN frame.
pub const MAX_DATA_LEN: usize = 8;

/// An arbitration id: 11-bit standard or 29-bit extended. The two spaces are distinct on
/// the bus (the IDE bit), so `Standard(0x100)` and `Extended(0x100)` are different ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanId {
    /// 11-bit id, 0..=0x7FF.
    Standard(u16),
    /// 29-bit id, 0..=0x1FFF_FFFF.
    Extended(u32),
}

impl CanId {
    /// Largest 11-bit id.
    pub const MAX_STANDARD: u16 = 0x7FF;
    /// Largest 29-bit id.
    pub const MAX_EXTENDED: u32 = 0x1FFF_FFFF;

    /// A standard id, or `None` if it does not fit in 11 bits.
    pub fn standard(id: u16) -> Option<Self> {
        (id <= Self::MAX_STANDARD).then_some(Self::Standard(id))
    }

    /// An extended id, or `None` if it does not fit in 29 bits.
    pub fn extended(id: u32) -> Option<Self> {
        (id <= Self::MAX_EXTENDED).then_some(Self::Extended(id))
    }

    /// The id as a plain number (without the extended flag).
    pub fn raw(self) -> u32 {
        match self {
            Self::Standard(id) => u32::from(id),
            Self::Extended(id) => id,
        }
    }

    pub fn is_extended(self) -> bool {
        matches!(self, Self::Extended(_))
    }
}

impl fmt::Display for CanId {
    /// The candump spelling: 3 hex digits for standard ids, 8 for extended ones.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standard(id) => write!(f, "{id:03X}"),
            Self::Extended(id) => write!(f, "{id:08X}"),
        }
    }
}

/// A data frame. Remote frames and CAN FD are not used by ringhub.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CanFrame {
    /// Arbitration id.
    id: CanId,
    /// Payload length, 0..=8 (the DLC).
    len: u8,
    /// Payload; bytes past `len` are always zero so that equality is by content.
    data: [u8; MAX_DATA_LEN],
}

impl CanFrame {
    /// A frame, or `None` if `data` is longer than eight bytes.
    pub fn new(id: CanId, data: &[u8]) -> Option<Self> {
        if data.len() > MAX_DATA_LEN {
            return None;
        }
        let mut buf = [0; MAX_DATA_LEN];
        buf[..data.len()].copy_from_slice(data);
        Some(Self {
            id,
            len: data.len() as u8,
            data: buf,
        })
    }

    pub fn id(&self) -> CanId {
        self.id
    }

    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }

    /// The data length code (0..=8).
    pub fn dlc(&self) -> u8 {
        self.len
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanFrame({self})")
    }
}

impl fmt::Display for CanFrame {
    /// The candump frame syntax, `123#DEADBEEF`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#", self.id)?;
        for byte in self.data() {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

/// Why a candump text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameSyntaxError {
    #[error("missing '#' between id and data (expected e.g. 123#DEADBEEF)")]
    MissingSeparator,
    #[error("id {0:?} is not 3 hex digits (standard) or 8 hex digits (extended)")]
    BadId(String),
    #[error("id {0:?} is out of range for its length (standard ≤ 7FF, extended ≤ 1FFFFFFF)")]
    IdOutOfRange(String),
    #[error("data {0:?} is not an even number of hex digits")]
    BadData(String),
    #[error("data has {0} bytes; a classic CAN frame carries at most 8")]
    TooLong(usize),
    #[error("remote and CAN FD frames are not supported: {0:?}")]
    Unsupported(String),
    #[error("log line {0:?} is not '(SECONDS.MICROS) INTERFACE FRAME'")]
    BadLogLine(String),
}

impl FromStr for CanFrame {
    type Err = FrameSyntaxError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (id_text, data_text) = text
            .split_once('#')
            .ok_or(FrameSyntaxError::MissingSeparator)?;
        if data_text.starts_with('#') || data_text.starts_with(['R', 'r']) {
            return Err(FrameSyntaxError::Unsupported(text.to_owned()));
        }
        let id = parse_id(id_text)?;
        let data_text = data_text.replace('.', "");
        if data_text.len() % 2 != 0 || !data_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FrameSyntaxError::BadData(data_text));
        }
        let bytes: Vec<u8> = (0..data_text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&data_text[i..i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| FrameSyntaxError::BadData(data_text.clone()))?;
        CanFrame::new(id, &bytes).ok_or(FrameSyntaxError::TooLong(bytes.len()))
    }
}

fn parse_id(text: &str) -> Result<CanId, FrameSyntaxError> {
    let bad = || FrameSyntaxError::BadId(text.to_owned());
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let out_of_range = || FrameSyntaxError::IdOutOfRange(text.to_owned());
    match text.len() {
        3 => {
            let id = u16::from_str_radix(text, 16).map_err(|_| bad())?;
            CanId::standard(id).ok_or_else(out_of_range)
        }
        8 => {
            let id = u32::from_str_radix(text, 16).map_err(|_| bad())?;
            CanId::extended(id).ok_or_else(out_of_range)
        }
        _ => Err(bad()),
    }
}

/// One line of a `candump -l` log: `(1700000000.123456) can0 123#DEADBEEF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Capture time in microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Interface name as recorded (`can0`, or a cabinet id for a socketcand bus).
    pub interface: String,
    /// The frame.
    pub frame: CanFrame,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.timestamp_us / 1_000_000;
        let micros = self.timestamp_us % 1_000_000;
        write!(f, "({secs}.{micros:06}) {} {}", self.interface, self.frame)
    }
}

impl FromStr for LogLine {
    type Err = FrameSyntaxError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let bad = || FrameSyntaxError::BadLogLine(line.to_owned());
        let mut parts = line.split_whitespace();
        let (Some(stamp), Some(interface), Some(frame), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let stamp = stamp
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(bad)?;
        let (secs, micros) = stamp.split_once('.').ok_or_else(bad)?;
        if micros.len() != 6 {
            return Err(bad());
        }
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        let micros: u64 = micros.parse().map_err(|_| bad())?;
        Ok(LogLine {
            timestamp_us: secs * 1_000_000 + micros,
            interface: interface.to_owned(),
            frame: frame.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_frame_round_trips_through_text() {
        let frame: CanFrame = "123#DEADBEEF".parse().unwrap();
        assert_eq!(frame.id(), CanId::Standard(0x123));
        assert_eq!(frame.data(), &[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(frame.to_string(), "123#DEADBEEF");
    }

    #[test]
    fn extended_frame_needs_eight_digits() {
        let frame: CanFrame = "18010003#0102".parse().unwrap();
        assert_eq!(frame.id(), CanId::Extended(0x1801_0003));
        assert_eq!(frame.to_string(), "18010003#0102");
        assert_eq!(
            "00000123#".parse::<CanFrame>().unwrap().id(),
            CanId::Extended(0x123)
        );
    }

    #[test]
    fn empty_payload_is_a_frame() {
        let frame: CanFrame = "7FF#".parse().unwrap();
        assert_eq!(frame.dlc(), 0);
    }

    #[test]
    fn dotted_data_from_cansend_is_accepted() {
        let frame: CanFrame = "123#DE.AD.BE.EF".parse().unwrap();
        assert_eq!(frame.data(), &[0xDE, 0xAD, 0xBE, 0xEF]);
    }

    #[test]
    fn malformed_text_names_what_is_wrong() {
        assert_eq!(
            "123DEAD".parse::<CanFrame>(),
            Err(FrameSyntaxError::MissingSeparator)
        );
        assert_eq!(
            "12#00".parse::<CanFrame>(),
            Err(FrameSyntaxError::BadId("12".into()))
        );
        assert_eq!(
            "800#00".parse::<CanFrame>(),
            Err(FrameSyntaxError::IdOutOfRange("800".into()))
        );
        assert_eq!(
            "20000000#00".parse::<CanFrame>(),
            Err(FrameSyntaxError::IdOutOfRange("20000000".into()))
        );
        assert_eq!(
            "123#ABC".parse::<CanFrame>(),
            Err(FrameSyntaxError::BadData("ABC".into()))
        );
        assert_eq!(
            "123#0G".parse::<CanFrame>(),
            Err(FrameSyntaxError::BadData("0G".into()))
        );
        assert_eq!(
            "123#000102030405060708".parse::<CanFrame>(),
            Err(FrameSyntaxError::TooLong(9))
        );
        assert!(matches!(
            "123#R".parse::<CanFrame>(),
            Err(FrameSyntaxError::Unsupported(_))
        ));
        assert!(matches!(
            "123##1AA".parse::<CanFrame>(),
            Err(FrameSyntaxError::Unsupported(_))
        ));
    }

    #[test]
    fn log_line_round_trips() {
        let text = "(1700000000.000042) cab-a 1D3#0102";
        let line: LogLine = text.parse().unwrap();
        assert_eq!(line.timestamp_us, 1_700_000_000_000_042);
        assert_eq!(line.interface, "cab-a");
        assert_eq!(line.frame.to_string(), "1D3#0102");
        assert_eq!(line.to_string(), text);
    }

    #[test]
    fn bad_log_lines_are_rejected() {
        for text in [
            "",
            "(1.000001) can0",
            "1.000001 can0 123#00",
            "(1.1) can0 123#00",
            "(x.000001) can0 123#00",
        ] {
            assert!(
                text.parse::<LogLine>().is_err(),
                "{text:?} should not parse"
            );
        }
    }
}
