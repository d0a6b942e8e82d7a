//! The socketcand TCP protocol in raw mode, as a pure codec: bytes in, [`Message`]s out,
//! and [`Message`]s back to bytes. Both ends use it: the node's socketcand client, and the
//! simulator, which serves each cabinet's CAN bus with it so that a node — or python-can's
//! `socketcand` interface — cannot tell it from a remote CAN interface (DESIGN.md §5,
//! "CAN transports").
//!
//! The protocol is linux-can/socketcand `doc/protocol.md`; where the document is vague, the
//! daemon (`state_raw.c`, `state_nobus.c`) and python-can's client decide. Every message is
//! ASCII text between `<` and `>`, words separated by spaces; nothing separates messages.
//!
//! ```text
//!  client                                server
//!    |                        < hi >       |  greeting on connect
//!    |  < open cab-a >                     |  pick a bus (at most 16 characters)
//!    |                        < ok >       |  or < error could not open bus >, then close
//!    |  < rawmode >                        |  every frame of the bus, unfiltered
//!    |                        < ok >       |
//!    |        < frame 123 1700000000.000042 DEADBEEF >
//!    |  < send 123 4 DE AD BE EF >         |
//!    |  < echo >                           |  answered with < echo > (liveness probe)
//! ```
//!
//! Details both peers rely on:
//! - An id is 3 hex digits when standard (11-bit) and 8 when extended (29-bit); the digit
//!   count alone marks it extended. socketcand reads 8 digits as extended, python-can reads
//!   anything but 3 as extended, so only 3 and 8 mean the same to both and only those decode.
//! - `frame` carries its timestamp as `SECONDS.MICROS` and its data as one run of hex
//!   digits. socketcand writes `"< frame ID TS " + hex + " >"`, so an empty frame has two
//!   spaces before `>`; python-can splits on single spaces and fails without that empty
//!   word, so [`Message::encode`] writes it too. The decoder takes one space or two.
//! - `send` gives the DLC in decimal, then each byte as its own hex word; python-can writes
//!   bytes unpadded (`a`), so the decoder takes one or two digits.
//! - python-can reads each handshake reply with one `recv` and compares it with `< hi >` or
//!   `< ok >` exactly: a server writes each reply on its own, without trailing whitespace.
//!
//! Decoding never panics. Garbage between messages, a message cut short by a new `<`, an
//! oversized message and a malformed one each yield a [`DecodeError`] naming the fault; the
//! decoder has then dropped the bad bytes and resumes at the next `<`.

use std::fmt;
use std::str::FromStr;

use crate::can::{CanFrame, CanId};

/// Longest message, `<` to `>` inclusive. An extended `frame` with 8 bytes, the longest
/// raw-mode message, stays under 64 bytes even with a 20-digit seconds count; the rest is
/// room for error texts.
pub const MAX_MESSAGE_LEN: usize = 256;

/// Longest bus name, as socketcand's protocol document allows.
pub const MAX_BUS_NAME_LEN: usize = 16;

/// Longest error text: what is left of [`MAX_MESSAGE_LEN`] after `< error  >`.
pub const MAX_ERROR_TEXT_LEN: usize = MAX_MESSAGE_LEN - "< error  >".len();

/// Longest excerpt of bad input quoted in an error.
const EXCERPT_LEN: usize = 64;

/// One socketcand message, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Server greeting, sent on connect.
    Hi,
    /// Client asks for a bus.
    Open(BusName),
    /// Server accepts the last command (`open`, `rawmode`).
    Ok,
    /// Client asks for every frame of the bus, unfiltered.
    RawMode,
    /// Server reports a failure; after a refused `open` it closes the connection.
    Error(ErrorText),
    /// Liveness probe; the server answers with the same message.
    Echo,
    /// Server delivers a frame seen on the bus.
    Frame {
        /// The frame.
        frame: CanFrame,
        /// When the server saw it, in microseconds since the Unix epoch.
        timestamp_us: u64,
    },
    /// Client asks the server to put a frame on the bus.
    Send(CanFrame),
}

impl Message {
    /// The message as it goes on the wire.
    ///
    /// Ids are written as they are: an id outside its range (possible only by building
    /// `CanId::Standard` or `CanId::Extended` directly) is rejected by the receiving decoder.
    pub fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses the text between `<` and `>`.
    fn parse_body(body: &str) -> Result<Self, Malformed> {
        let body = body.trim();
        let (command, args) = body.split_once(' ').unwrap_or((body, ""));
        let args = args.trim();
        let mut words = args.split_ascii_whitespace();
        let no_args = |message: Self, command| {
            if args.is_empty() {
                Ok(message)
            } else {
                Err(Malformed::Arguments {
                    command,
                    expected: "no arguments",
                })
            }
        };
        match command {
            "" => Err(Malformed::Empty),
            "hi" => no_args(Self::Hi, "hi"),
            "ok" => no_args(Self::Ok, "ok"),
            "rawmode" => no_args(Self::RawMode, "rawmode"),
            "echo" => no_args(Self::Echo, "echo"),
            "error" => ErrorText::new(args)
                .map(Self::Error)
                .map_err(Malformed::BadText),
            "open" => match (words.next(), words.next()) {
                (Some(name), None) => name.parse().map(Self::Open).map_err(Malformed::BadText),
                _ => Err(Malformed::Arguments {
                    command: "open",
                    expected: "one bus name",
                }),
            },
            "frame" => {
                let expected = Malformed::Arguments {
                    command: "frame",
                    expected: "ID SECONDS.MICROS [DATA]",
                };
                let (Some(id), Some(timestamp), data, None) =
                    (words.next(), words.next(), words.next(), words.next())
                else {
                    return Err(expected);
                };
                let id = parse_id(id)?;
                let timestamp_us = parse_timestamp(timestamp)?;
                let data = parse_hex_run(data.unwrap_or(""))?;
                let frame =
                    CanFrame::new(id, &data).ok_or_else(|| Malformed::BadData(excerpt(args)))?;
                Ok(Self::Frame {
                    frame,
                    timestamp_us,
                })
            }
            "send" => {
                let (Some(id), Some(dlc)) = (words.next(), words.next()) else {
                    return Err(Malformed::Arguments {
                        command: "send",
                        expected: "ID DLC [BYTE]…",
                    });
                };
                let id = parse_id(id)?;
                let dlc = dlc
                    .parse::<u8>()
                    .ok()
                    .filter(|&dlc| usize::from(dlc) <= crate::can::MAX_DATA_LEN)
                    .ok_or_else(|| Malformed::BadDlc(excerpt(dlc)))?;
                let data = words.map(parse_byte).collect::<Result<Vec<u8>, _>>()?;
                if data.len() != usize::from(dlc) {
                    return Err(Malformed::DlcMismatch {
                        dlc,
                        bytes: data.len(),
                    });
                }
                CanFrame::new(id, &data)
                    .map(Self::Send)
                    .ok_or(Malformed::DlcMismatch {
                        dlc,
                        bytes: data.len(),
                    })
            }
            other => Err(Malformed::UnknownCommand(excerpt(other))),
        }
    }
}

impl fmt::Display for Message {
    /// The wire form, e.g. `< frame 123 1700000000.000042 DEADBEEF >`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hi => f.write_str("< hi >"),
            Self::Open(bus) => write!(f, "< open {bus} >"),
            Self::Ok => f.write_str("< ok >"),
            Self::RawMode => f.write_str("< rawmode >"),
            Self::Error(text) if text.as_str().is_empty() => f.write_str("< error >"),
            Self::Error(text) => write!(f, "< error {text} >"),
            Self::Echo => f.write_str("< echo >"),
            Self::Frame {
                frame,
                timestamp_us,
            } => {
                let (secs, micros) = (timestamp_us / 1_000_000, timestamp_us % 1_000_000);
                write!(f, "< frame {} {secs}.{micros:06} ", frame.id())?;
                for byte in frame.data() {
                    write!(f, "{byte:02X}")?;
                }
                f.write_str(" >")
            }
            Self::Send(frame) => {
                write!(f, "< send {} {}", frame.id(), frame.dlc())?;
                for byte in frame.data() {
                    write!(f, " {byte:02X}")?;
                }
                f.write_str(" >")
            }
        }
    }
}

/// The name of a bus a socketcand server offers: 1 to 16 printable ASCII characters, no
/// spaces, no `<` or `>`, so that `< open NAME >` frames unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusName(String);

impl BusName {
    /// A bus name, or why `name` cannot be one.
    pub fn new(name: &str) -> Result<Self, TextError> {
        if name.is_empty() {
            return Err(TextError::Empty);
        }
        if name.len() > MAX_BUS_NAME_LEN {
            return Err(TextError::TooLong {
                len: name.len(),
                max: MAX_BUS_NAME_LEN,
            });
        }
        if let Some(c) = name.chars().find(|&c| !is_text_char(c) || c == ' ') {
            return Err(TextError::BadChar(c));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BusName {
    type Err = TextError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl fmt::Display for BusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The text of an `< error … >` message: printable ASCII without `<` or `>`, at most
/// [`MAX_ERROR_TEXT_LEN`] characters, no leading or trailing spaces. May be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorText(String);

impl ErrorText {
    /// An error text, or why `text` cannot be one.
    pub fn new(text: &str) -> Result<Self, TextError> {
        let text = text.trim_matches(' ');
        if text.len() > MAX_ERROR_TEXT_LEN {
            return Err(TextError::TooLong {
                len: text.len(),
                max: MAX_ERROR_TEXT_LEN,
            });
        }
        if let Some(c) = text.chars().find(|&c| !is_text_char(c)) {
            return Err(TextError::BadChar(c));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Printable ASCII (space included) other than the message delimiters.
fn is_text_char(c: char) -> bool {
    matches!(c, ' '..='~') && c != '<' && c != '>'
}

/// Why a text cannot be a [`BusName`] or an [`ErrorText`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("is empty")]
    Empty,
    #[error("has {len} characters; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error(
        "contains {0:?}; only printable ASCII other than '<' and '>' is allowed (and no space in a bus name)"
    )]
    BadChar(char),
}

/// Why the decoder could not turn input into a message. The decoder has dropped the bad
/// bytes; the next call carries on from the next `<`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes of garbage outside any '< … >' message: {excerpt:?}")]
    Garbage {
        /// How many bytes were dropped.
        len: usize,
        /// The first of them, lossily decoded.
        excerpt: String,
    },
    #[error("message {excerpt:?} was cut short by a new '<' before its closing '>'")]
    Unterminated {
        /// The cut-short message, lossily decoded.
        excerpt: String,
    },
    #[error(
        "message is longer than {MAX_MESSAGE_LEN} bytes (got {len} without the end in sight); dropped up to the next '<'"
    )]
    TooLong {
        /// How many bytes of the message had arrived when it was dropped.
        len: usize,
    },
    #[error("malformed message {message:?}: {reason}")]
    Malformed {
        /// The message, lossily decoded and cut to a readable length.
        message: String,
        /// What is wrong with it.
        reason: Malformed,
    },
}

/// What is wrong with a message that is delimited correctly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not ASCII text")]
    NotAscii,
    #[error("no command word")]
    Empty,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("'{command}' takes {expected}")]
    Arguments {
        command: &'static str,
        expected: &'static str,
    },
    #[error("id {0:?} is not 3 hex digits (standard) or 8 hex digits (extended)")]
    BadId(String),
    #[error("id {0:?} is out of range for its length (standard ≤ 7FF, extended ≤ 1FFFFFFF)")]
    IdOutOfRange(String),
    #[error("timestamp {0:?} is not SECONDS.MICROS (1 to 6 fraction digits)")]
    BadTimestamp(String),
    #[error("data {0:?} is not an even number of hex digits, at most 16")]
    BadData(String),
    #[error("DLC {0:?} is not a decimal number from 0 to 8")]
    BadDlc(String),
    #[error("data byte {0:?} is not one or two hex digits")]
    BadByte(String),
    #[error("DLC {dlc} announces a different count than the {bytes} data bytes that follow")]
    DlcMismatch { dlc: u8, bytes: usize },
    #[error("text {0}")]
    BadText(TextError),
}

/// Turns a byte stream into messages. Feed it whatever the socket delivered, then call
/// [`Decoder::next_message`] until it returns `Ok(None)`.
///
/// Memory is bounded: once drained, the decoder holds at most one partial message of up
/// to [`MAX_MESSAGE_LEN`] bytes.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes received; those before `start` are decoded and dropped at the next `feed`.
    buffer: Vec<u8>,
    /// Where undecoded input begins in `buffer`.
    start: usize,
    /// Set after an oversized message: its tail is dropped silently up to the next `<`.
    skipping: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.drain(..self.start);
        self.start = 0;
        self.buffer.extend_from_slice(bytes);
    }

    /// How many received bytes are not decoded yet (a partial message at the end of a
    /// stream shows up here).
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The next message, `Ok(None)` if more input is needed, or an error naming what was
    /// wrong with the input it dropped.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if self.skipping {
            let pending = &self.buffer[self.start..];
            match pending.iter().position(|&b| b == b'<') {
                Some(at) => {
                    self.start += at;
                    self.skipping = false;
                }
                None => {
                    self.start = self.buffer.len();
                    return Ok(None);
                }
            }
        }
        let pending = &self.buffer[self.start..];
        let whitespace = pending
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        self.start += whitespace;
        let pending = &pending[whitespace..];

        let Some(&first) = pending.first() else {
            return Ok(None);
        };
        if first != b'<' {
            let len = pending
                .iter()
                .position(|&b| b == b'<')
                .unwrap_or(pending.len());
            let excerpt = excerpt(&String::from_utf8_lossy(&pending[..len]));
            self.start += len;
            return Err(DecodeError::Garbage { len, excerpt });
        }
        let Some(end) = pending
            .iter()
            .skip(1)
            .position(|&b| b == b'<' || b == b'>')
            .map(|i| i + 1)
        else {
            if pending.len() > MAX_MESSAGE_LEN {
                let len = pending.len();
                self.start = self.buffer.len();
                self.skipping = true;
                return Err(DecodeError::TooLong { len });
            }
            return Ok(None);
        };
        if pending[end] == b'<' {
            let excerpt = excerpt(&String::from_utf8_lossy(&pending[..end]));
            self.start += end;
            return Err(DecodeError::Unterminated { excerpt });
        }
        let len = end + 1;
        self.start += len;
        if len > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong { len });
        }
        let message = &pending[..len];
        let malformed = |reason| DecodeError::Malformed {
            message: excerpt(&String::from_utf8_lossy(message)),
            reason,
        };
        let body = std::str::from_utf8(&message[1..end])
            .ok()
            .filter(|body| body.is_ascii())
            .ok_or_else(|| malformed(Malformed::NotAscii))?;
        Message::parse_body(body).map(Some).map_err(malformed)
    }
}

/// An id in socketcand spelling: 3 hex digits standard, 8 extended.
fn parse_id(text: &str) -> Result<CanId, Malformed> {
    let bad = || Malformed::BadId(excerpt(text));
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let out_of_range = || Malformed::IdOutOfRange(text.to_owned());
    match text.len() {
        3 => u16::from_str_radix(text, 16)
            .ok()
            .and_then(CanId::standard)
            .ok_or_else(out_of_range),
        8 => u32::from_str_radix(text, 16)
            .ok()
            .and_then(CanId::extended)
            .ok_or_else(out_of_range),
        _ => Err(bad()),
    }
}

/// `SECONDS.MICROS` to microseconds; a short fraction counts from the left (`1.5` is 1.5 s).
fn parse_timestamp(text: &str) -> Result<u64, Malformed> {
    let bad = || Malformed::BadTimestamp(excerpt(text));
    let (secs, fraction) = text.split_once('.').ok_or_else(bad)?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(secs) || !all_digits(fraction) || fraction.len() > 6 {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let micros: u64 = format!("{fraction:0<6}").parse().map_err(|_| bad())?;
    secs.checked_mul(1_000_000)
        .and_then(|us| us.checked_add(micros))
        .ok_or_else(bad)
}

/// A run of hex digits, two per byte, as `frame` carries its data.
fn parse_hex_run(text: &str) -> Result<Vec<u8>, Malformed> {
    let bad = || Malformed::BadData(excerpt(text));
    if !text.len().is_multiple_of(2) || text.len() > 2 * crate::can::MAX_DATA_LEN {
        return Err(bad());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// One data byte of a `send`: one or two hex digits.
fn parse_byte(text: &str) -> Result<u8, Malformed> {
    let bad = || Malformed::BadByte(excerpt(text));
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    u8::from_str_radix(text, 16).map_err(|_| bad())
}

/// At most [`EXCERPT_LEN`] characters of `text`, for error messages.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_LEN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` in one chunk and decodes until the decoder needs more.
    fn decode_all(input: &[u8]) -> Vec<Result<Message, DecodeError>> {
        let mut decoder = Decoder::new();
        decoder.feed(input);
        drain(&mut decoder)
    }

    fn drain(decoder: &mut Decoder) -> Vec<Result<Message, DecodeError>> {
        std::iter::from_fn(|| decoder.next_message().transpose()).collect()
    }

    fn frame(id: CanId, data: &[u8]) -> CanFrame {
        CanFrame::new(id, data).unwrap()
    }

    fn malformed_reason(result: &Result<Message, DecodeError>) -> Malformed {
        match result {
            Err(DecodeError::Malformed { reason, .. }) => reason.clone(),
            other => panic!("expected a malformed message, got {other:?}"),
        }
    }

    #[test]
    fn handshake_messages_encode_as_socketcand_writes_them() {
        assert_eq!(Message::Hi.encode(), b"< hi >");
        assert_eq!(
            Message::Open("cab-a".parse().unwrap()).encode(),
            b"< open cab-a >"
        );
        assert_eq!(Message::Ok.encode(), b"< ok >");
        assert_eq!(Message::RawMode.encode(), b"< rawmode >");
        assert_eq!(Message::Echo.encode(), b"< echo >");
        let text = ErrorText::new("could not open bus").unwrap();
        assert_eq!(
            Message::Error(text).encode(),
            b"< error could not open bus >"
        );
        assert_eq!(
            Message::Error(ErrorText::new("").unwrap()).encode(),
            b"< error >"
        );
    }

    #[test]
    fn frames_encode_with_both_id_widths() {
        let standard = Message::Frame {
            frame: frame(CanId::Standard(0x123), &[0xDE, 0xAD]),
            timestamp_us: 23_424_242,
        };
        assert_eq!(standard.to_string(), "< frame 123 23.424242 DEAD >");
        let extended = Message::Frame {
            frame: frame(CanId::Extended(0x1801_0003), &[1]),
            timestamp_us: 1_000_000,
        };
        assert_eq!(extended.to_string(), "< frame 18010003 1.000000 01 >");
        let send = Message::Send(frame(CanId::Extended(0x1AAA_AAAA), &[0x01, 0xF1]));
        assert_eq!(send.to_string(), "< send 1AAAAAAA 2 01 F1 >");
        let send_empty = Message::Send(frame(CanId::Standard(0x7FF), &[]));
        assert_eq!(send_empty.to_string(), "< send 7FF 0 >");
    }

    #[test]
    fn empty_frame_keeps_the_empty_data_word_python_can_needs() {
        let empty = Message::Frame {
            frame: frame(CanId::Standard(0x123), &[]),
            timestamp_us: 5,
        };
        assert_eq!(empty.to_string(), "< frame 123 0.000005  >");
        assert_eq!(decode_all(&empty.encode()), vec![Ok(empty.clone())]);
        // As the protocol document spells it, with a single space.
        assert_eq!(decode_all(b"< frame 123 0.000005 >"), vec![Ok(empty)]);
    }

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Message::Hi,
            Message::Open("can0".parse().unwrap()),
            Message::Ok,
            Message::RawMode,
            Message::Error(ErrorText::new("unknown command").unwrap()),
            Message::Echo,
            Message::Frame {
                frame: frame(CanId::Standard(0), &[0; 8]),
                timestamp_us: u64::MAX,
            },
            Message::Frame {
                frame: frame(CanId::Extended(CanId::MAX_EXTENDED), &[0xFF]),
                timestamp_us: 0,
            },
            Message::Send(frame(CanId::Standard(CanId::MAX_STANDARD), &[1, 2, 3])),
            Message::Send(frame(CanId::Extended(0), &[])),
        ];
        let wire: Vec<u8> = messages.iter().flat_map(Message::encode).collect();
        let decoded: Vec<_> = decode_all(&wire).into_iter().map(Result::unwrap).collect();
        assert_eq!(decoded, messages);
    }

    #[test]
    fn partial_input_waits_for_the_rest() {
        let mut decoder = Decoder::new();
        decoder.feed(b"< fra"); // command cut in the middle
        assert_eq!(decoder.next_message(), Ok(None));
        decoder.feed(b"me 123 1.000042 DEAD"); // id, timestamp, half the data
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.buffered(), 25);
        decoder.feed(b"BEEF >"); // rest of the data, terminator
        let expected = Message::Frame {
            frame: frame(CanId::Standard(0x123), &[0xDE, 0xAD, 0xBE, 0xEF]),
            timestamp_us: 1_000_042,
        };
        assert_eq!(decoder.next_message(), Ok(Some(expected)));
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn empty_input_needs_more() {
        let mut decoder = Decoder::new();
        assert_eq!(decoder.next_message(), Ok(None));
        decoder.feed(b"");
        assert_eq!(decoder.next_message(), Ok(None));
    }

    #[test]
    fn byte_at_a_time_input_decodes() {
        let wire = b"< hi >< frame 00000123 1.5 0102 >";
        let mut decoder = Decoder::new();
        let mut decoded = Vec::new();
        for byte in wire {
            decoder.feed(&[*byte]);
            decoded.extend(drain(&mut decoder));
        }
        let frame = Message::Frame {
            frame: frame(CanId::Extended(0x123), &[1, 2]),
            timestamp_us: 1_500_000,
        };
        assert_eq!(decoded, vec![Ok(Message::Hi), Ok(frame)]);
    }

    #[test]
    fn several_messages_in_one_chunk() {
        let chunk = concat!(
            "< hi >",                      //                          greeting
            "< ok >",                      //                          reply to open
            "\r\n ", //                           whitespace between messages is not garbage
            "< frame 7FF 2.000001 00 >", //       standard id, one byte
            "< frame 1FFFFFFF 3.000000 >", //     extended id, no data
            "< echo >", //                        probe answer
        );
        let decoded: Vec<_> = decode_all(chunk.as_bytes())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            decoded,
            vec![
                Message::Hi,
                Message::Ok,
                Message::Frame {
                    frame: frame(CanId::Standard(0x7FF), &[0]),
                    timestamp_us: 2_000_001
                },
                Message::Frame {
                    frame: frame(CanId::Extended(0x1FFF_FFFF), &[]),
                    timestamp_us: 3_000_000
                },
                Message::Echo,
            ]
        );
    }

    #[test]
    fn send_from_python_can_with_unpadded_lowercase_bytes() {
        // Verbatim output of python-can 4.6 `convert_can_message_to_ascii_message`.
        let decoded = decode_all(
            concat!(
                "< send 1AAAAAAA 2 1 f1 >",           // extended, bytes unpadded
                "< send 123 0  >",                    // no data: two spaces
                "< send 7FF 8 de ad be ef 0 1 2 a >", // lowercase, one digit
            )
            .as_bytes(),
        );
        let expected = [
            frame(CanId::Extended(0x1AAA_AAAA), &[0x01, 0xF1]),
            frame(CanId::Standard(0x123), &[]),
            frame(
                CanId::Standard(0x7FF),
                &[0xDE, 0xAD, 0xBE, 0xEF, 0, 1, 2, 0xA],
            ),
        ];
        assert_eq!(decoded, expected.map(|frame| Ok(Message::Send(frame))));
    }

    #[test]
    fn garbage_between_messages_is_reported_then_skipped() {
        let decoded = decode_all(b"xyz< ok >junk");
        assert_eq!(
            decoded,
            vec![
                Err(DecodeError::Garbage {
                    len: 3,
                    excerpt: "xyz".into()
                }),
                Ok(Message::Ok),
                Err(DecodeError::Garbage {
                    len: 4,
                    excerpt: "junk".into()
                }),
            ]
        );
    }

    #[test]
    fn a_message_cut_short_by_a_new_one_is_reported() {
        let decoded = decode_all(b"< frame 123 1.0< ok >");
        assert_eq!(
            decoded,
            vec![
                Err(DecodeError::Unterminated {
                    excerpt: "< frame 123 1.0".into()
                }),
                Ok(Message::Ok)
            ]
        );
    }

    #[test]
    fn oversized_message_is_dropped_up_to_the_next_message() {
        let mut decoder = Decoder::new();
        decoder.feed(b"< error ");
        decoder.feed(&[b'x'; MAX_MESSAGE_LEN]); // no '>' in sight
        assert_eq!(
            decoder.next_message(),
            Err(DecodeError::TooLong {
                len: MAX_MESSAGE_LEN + 8
            })
        );
        assert_eq!(decoder.buffered(), 0, "the oversized message is not kept");
        decoder.feed(b"xxx >"); // its tail: dropped without a second error
        decoder.feed(b"< hi >");
        assert_eq!(decoder.next_message(), Ok(Some(Message::Hi)));

        // Complete but too long, in one chunk with the next message.
        let mut long = b"< error ".to_vec();
        long.extend([b'y'; MAX_MESSAGE_LEN]);
        long.extend(b" >< ok >");
        assert_eq!(
            decode_all(&long),
            vec![
                Err(DecodeError::TooLong {
                    len: MAX_MESSAGE_LEN + 10
                }),
                Ok(Message::Ok)
            ]
        );
    }

    #[test]
    fn malformed_messages_name_what_is_wrong_and_decoding_goes_on() {
        let cases: &[(&[u8], Malformed)] = &[
            (b"< >", Malformed::Empty),
            (b"< bogus 1 2 >", Malformed::UnknownCommand("bogus".into())),
            (
                b"< hi there >",
                Malformed::Arguments {
                    command: "hi",
                    expected: "no arguments",
                },
            ),
            (
                b"< open >",
                Malformed::Arguments {
                    command: "open",
                    expected: "one bus name",
                },
            ),
            (
                b"< open a b >",
                Malformed::Arguments {
                    command: "open",
                    expected: "one bus name",
                },
            ),
            (
                b"< open a-bus-name-that-is-too-long >",
                Malformed::BadText(TextError::TooLong { len: 27, max: 16 }),
            ),
            (
                b"< frame 123 >",
                Malformed::Arguments {
                    command: "frame",
                    expected: "ID SECONDS.MICROS [DATA]",
                },
            ),
            (b"< frame 12 1.000000 00 >", Malformed::BadId("12".into())), // 2 digits: neither width
            (
                b"< frame 0123 1.000000 00 >",
                Malformed::BadId("0123".into()),
            ), // 4 digits
            (b"< frame 12G 1.000000 00 >", Malformed::BadId("12G".into())),
            (
                b"< frame 800 1.000000 00 >",
                Malformed::IdOutOfRange("800".into()),
            ), // > 7FF
            (
                b"< frame 20000000 1.000000 >",
                Malformed::IdOutOfRange("20000000".into()),
            ), // > 1FFFFFFF
            (b"< frame 123 1 00 >", Malformed::BadTimestamp("1".into())), // no fraction
            (
                b"< frame 123 1.1234567 00 >",
                Malformed::BadTimestamp("1.1234567".into()),
            ), // 7 digits
            (
                b"< frame 123 x.000000 00 >",
                Malformed::BadTimestamp("x.000000".into()),
            ),
            (
                b"< frame 123 99999999999999999999.0 >",
                Malformed::BadTimestamp("99999999999999999999.0".into()),
            ),
            (
                b"< frame 123 1.000000 ABC >",
                Malformed::BadData("ABC".into()),
            ), // odd digit count
            (
                b"< frame 123 1.000000 000102030405060708 >",
                Malformed::BadData("000102030405060708".into()),
            ), // 9 bytes
            (
                b"< frame 123 1.000000 DE AD >",
                Malformed::Arguments {
                    command: "frame",
                    expected: "ID SECONDS.MICROS [DATA]",
                },
            ),
            (
                b"< send 123 >",
                Malformed::Arguments {
                    command: "send",
                    expected: "ID DLC [BYTE]…",
                },
            ),
            (b"< send 123 9 >", Malformed::BadDlc("9".into())),
            (
                b"< send 123 2 01 >",
                Malformed::DlcMismatch { dlc: 2, bytes: 1 },
            ),
            (
                b"< send 123 1 01 02 >",
                Malformed::DlcMismatch { dlc: 1, bytes: 2 },
            ),
            (b"< send 123 1 100 >", Malformed::BadByte("100".into())),
            (b"< error caf\xC3\xA9 >", Malformed::NotAscii),
            (
                b"< error tab\there >",
                Malformed::BadText(TextError::BadChar('\t')),
            ),
        ];
        for (input, reason) in cases {
            let mut wire = input.to_vec();
            wire.extend(b"< ok >"); // a good message right after the bad one
            let decoded = decode_all(&wire);
            assert_eq!(
                decoded.len(),
                2,
                "{:?}: {decoded:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                &malformed_reason(&decoded[0]),
                reason,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(decoded[1], Ok(Message::Ok));
        }
    }

    #[test]
    fn errors_quote_the_offending_input() {
        let decoded = decode_all(b"< frame 12 1.000000 00 >");
        let text = decoded[0].as_ref().unwrap_err().to_string();
        assert!(
            text.contains("< frame 12 1.000000 00 >") && text.contains("\"12\""),
            "{text}"
        );
    }

    #[test]
    fn bus_names_are_checked() {
        assert_eq!(BusName::new("cab-a").unwrap().as_str(), "cab-a");
        assert_eq!(BusName::new(""), Err(TextError::Empty));
        assert_eq!(BusName::new("can 0"), Err(TextError::BadChar(' ')));
        assert_eq!(BusName::new("can>"), Err(TextError::BadChar('>')));
        assert_eq!(
            BusName::new("0123456789abcdefX"),
            Err(TextError::TooLong { len: 17, max: 16 })
        );
        assert!(ErrorText::new(&"e".repeat(MAX_ERROR_TEXT_LEN + 1)).is_err());
        assert_eq!(ErrorText::new("  padded ").unwrap().as_str(), "padded");
    }

    fn any_frame() -> impl Strategy<Value = CanFrame> {
        let id = prop_oneof![
            (0..=CanId::MAX_STANDARD).prop_map(CanId::Standard),
            (0..=CanId::MAX_EXTENDED).prop_map(CanId::Extended),
        ];
        (id, prop::collection::vec(any::<u8>(), 0..=8)).prop_map(|(id, data)| frame(id, &data))
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_in_arbitrary_chunks_never_panic(
            bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'<'), Just(b'>'), Just(b' ')], 0..1024),
            chunk in 1usize..64,
        ) {
            let mut decoder = Decoder::new();
            for piece in bytes.chunks(chunk) {
                decoder.feed(piece);
                drain(&mut decoder);
                prop_assert!(decoder.buffered() <= MAX_MESSAGE_LEN);
            }
        }

        #[test]
        fn frames_and_sends_round_trip(frame in any_frame(), timestamp_us in any::<u64>(), chunk in 1usize..16) {
            let messages = vec![Message::Frame { frame, timestamp_us }, Message::Send(frame)];
            let wire: Vec<u8> = messages.iter().flat_map(Message::encode).collect();
            let mut decoder = Decoder::new();
            let mut decoded = Vec::new();
            for piece in wire.chunks(chunk) {
                decoder.feed(piece);
                decoded.extend(drain(&mut decoder));
            }
            prop_assert_eq!(decoded, messages.into_iter().map(Ok).collect::<Vec<_>>());
        }
    }
}
