//! A parser for the DBC subset that `proto/can/ringhub.dbc` uses, and the model it builds.
//!
//! The DBC file is the single source of truth for CAN ids, signals, scaling and value
//! tables (DESIGN.md §5); the codec reads this model rather than restating the layout.
//! The subset: `VERSION`, `NS_`, `BS_`, `BU_`, `BO_`/`SG_` (little- and big-endian,
//! signed and unsigned, simple multiplexing with `M`/`mN`), `CM_`, `BA_DEF_`,
//! `BA_DEF_DEF_`, `BA_` and `VAL_`. Anything that would change how bits are read and that
//! the codec does not implement (float signals, extended multiplexing) is rejected with
//! its line number instead of being misread.

use std::collections::HashMap;

use super::bits::{self, ByteOrder};
use super::frame::CanId;

/// The extended-frame flag in a DBC message id.
const DBC_EXTENDED_FLAG: u32 = 0x8000_0000;

/// Attribute naming how many low bits of a message id address the sender or receiver.
pub const ADDRESS_BITS_ATTRIBUTE: &str = "RingHubAddressBits";
/// The conventional cycle-time attribute (Vector's `GenMsgCycleTime`), in milliseconds.
pub const CYCLE_TIME_ATTRIBUTE: &str = "GenMsgCycleTime";

/// A whole DBC file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dbc {
    /// The `VERSION` string.
    pub version: String,
    /// Node names from `BU_`.
    pub nodes: Vec<String>,
    /// Messages in file order.
    pub messages: Vec<MessageDef>,
    /// The file-level `CM_` comment.
    pub comment: Option<String>,
}

/// One `BO_` message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageDef {
    /// Message name, unique in the file.
    pub name: String,
    /// Id of address 0; the low `address_bits` bits carry the address.
    pub id: CanId,
    /// Exact payload length; a frame of another length is rejected.
    pub dlc: u8,
    /// Transmitting node.
    pub sender: String,
    /// Signals in file order.
    pub signals: Vec<SignalDef>,
    /// `CM_ BO_` comment.
    pub comment: Option<String>,
    /// `GenMsgCycleTime`, if the message is periodic.
    pub cycle_time_ms: Option<u32>,
    /// Low id bits that address one of several identical devices on the bus.
    pub address_bits: u8,
}

/// One `SG_` signal.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalDef {
    /// Signal name, unique in its message.
    pub name: String,
    /// Whether it is a multiplexer, multiplexed, or always present.
    pub mux: MuxRole,
    /// Start bit in DBC numbering (LSB for little-endian, MSB for big-endian).
    pub start_bit: u16,
    /// Width in bits, 1..=64.
    pub length: u8,
    /// `@1` little-endian (Intel) or `@0` big-endian (Motorola).
    pub byte_order: ByteOrder,
    /// Two's complement (`-`) or unsigned (`+`).
    pub signed: bool,
    /// physical = raw × factor + offset.
    pub factor: f64,
    /// physical = raw × factor + offset.
    pub offset: f64,
    /// Smallest valid physical value; `minimum == maximum == 0` means unbounded.
    pub minimum: f64,
    /// Largest valid physical value.
    pub maximum: f64,
    /// Physical unit.
    pub unit: String,
    /// Receiving nodes.
    pub receivers: Vec<String>,
    /// `CM_ SG_` comment.
    pub comment: Option<String>,
    /// `VAL_` table: raw value → label. When present, any other raw value is reserved.
    pub values: Vec<(i64, String)>,
}

/// The multiplexing role of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxRole {
    /// Present in every frame of the message.
    Plain,
    /// Selects which multiplexed signals are present (`M`).
    Multiplexer,
    /// Present only when the multiplexer's raw value equals this (`mN`).
    Multiplexed(u64),
}

impl MessageDef {
    /// The signal named `name`.
    pub fn signal(&self, name: &str) -> Option<&SignalDef> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// The multiplexer signal, if the message has one.
    pub fn multiplexer(&self) -> Option<&SignalDef> {
        self.signals.iter().find(|s| s.mux == MuxRole::Multiplexer)
    }
}

impl SignalDef {
    /// Whether the message bounds the physical value.
    pub fn is_bounded(&self) -> bool {
        !(self.minimum == 0.0 && self.maximum == 0.0)
    }

    /// The label of a raw value, if the signal has a value table with that entry.
    pub fn label_of(&self, raw: i64) -> Option<&str> {
        self.values
            .iter()
            .find(|(value, _)| *value == raw)
            .map(|(_, label)| label.as_str())
    }

    /// The raw value of a label.
    pub fn value_of(&self, label: &str) -> Option<i64> {
        self.values
            .iter()
            .find(|(_, l)| l == label)
            .map(|(value, _)| *value)
    }
}

/// A DBC text that does not parse or does not make sense, with the line it is on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("DBC line {line}: {message}")]
pub struct DbcError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

/// Parses a DBC text and checks that it is self-consistent.
pub fn parse(text: &str) -> Result<Dbc, DbcError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        dbc: Dbc::default(),
        attributes: Attributes::default(),
    };
    parser.file()?;
    parser.finish()
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Ident(String),
    Number(String),
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: TokenKind,
    /// 1-based line of the token's first character.
    line: usize,
    /// 0-based column: statements start in column 0, continuation lines are indented.
    column: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, DbcError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line, mut line_start) = (0, 1, 0);
    while i < chars.len() {
        let c = chars[i];
        let column = i - line_start;
        let starts_number = c.is_ascii_digit()
            || ((c == '-' || c == '+')
                && chars
                    .get(i + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == '.'));
        if c == '\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let start_line = line;
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(DbcError {
                            line: start_line,
                            message: "unterminated string".into(),
                        });
                    }
                    Some('"') => break,
                    Some('\\') if chars.get(i + 1) == Some(&'"') => {
                        value.push('"');
                        i += 1;
                    }
                    Some(ch) => {
                        if *ch == '\n' {
                            line += 1;
                            line_start = i + 1;
                        }
                        value.push(*ch);
                    }
                }
                i += 1;
            }
            i += 1;
            tokens.push(Token {
                kind: TokenKind::Str(value),
                line: start_line,
                column,
            });
        } else if starts_number {
            let start = i;
            i += 1;
            while let Some(&n) = chars.get(i) {
                let exponent_sign = (n == '-' || n == '+') && matches!(chars[i - 1], 'e' | 'E');
                if n.is_ascii_digit() || n == '.' || n == 'e' || n == 'E' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            let number = chars[start..i].iter().collect();
            tokens.push(Token {
                kind: TokenKind::Number(number),
                line,
                column,
            });
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '_')
            {
                i += 1;
            }
            let ident = chars[start..i].iter().collect();
            tokens.push(Token {
                kind: TokenKind::Ident(ident),
                line,
                column,
            });
        } else if ":|@()[],;+-".contains(c) {
            tokens.push(Token {
                kind: TokenKind::Punct(c),
                line,
                column,
            });
            i += 1;
        } else {
            return Err(DbcError {
                line,
                message: format!("unexpected character {c:?}"),
            });
        }
    }
    Ok(tokens)
}

/// Attribute values as written, resolved into typed fields when the file is complete.
#[derive(Debug, Default)]
struct Attributes {
    /// `BA_DEF_DEF_` defaults by attribute name.
    defaults: HashMap<String, String>,
    /// `BA_ … BO_` values by (raw DBC id, attribute name), with their line.
    messages: HashMap<(u32, String), (String, usize)>,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    dbc: Dbc,
    attributes: Attributes,
}

impl Parser {
    fn line(&self) -> usize {
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .map_or(1, |t| t.line)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, DbcError> {
        Err(DbcError {
            line: self.line(),
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<&TokenKind> {
        self.tokens.get(self.pos).map(|t| &t.kind)
    }

    fn next(&mut self) -> Result<TokenKind, DbcError> {
        match self.tokens.get(self.pos) {
            Some(token) => {
                self.pos += 1;
                Ok(token.kind.clone())
            }
            None => self.error("unexpected end of file"),
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, DbcError> {
        match self.next()? {
            TokenKind::Ident(name) => Ok(name),
            other => {
                self.pos -= 1;
                self.error(format!("expected {what}, found {other:?}"))
            }
        }
    }

    fn string(&mut self, what: &str) -> Result<String, DbcError> {
        match self.next()? {
            TokenKind::Str(value) => Ok(value),
            other => {
                self.pos -= 1;
                self.error(format!(
                    "expected {what} (a quoted string), found {other:?}"
                ))
            }
        }
    }

    fn number_text(&mut self, what: &str) -> Result<String, DbcError> {
        match self.next()? {
            TokenKind::Number(text) => Ok(text),
            other => {
                self.pos -= 1;
                self.error(format!("expected {what} (a number), found {other:?}"))
            }
        }
    }

    fn float(&mut self, what: &str) -> Result<f64, DbcError> {
        let text = self.number_text(what)?;
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => self.error(format!("{what} {text:?} is not a finite number")),
        }
    }

    fn integer<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, DbcError> {
        let text = self.number_text(what)?;
        match text.parse::<T>() {
            Ok(value) => Ok(value),
            Err(_) => self.error(format!("{what} {text:?} is not a valid integer here")),
        }
    }

    fn punct(&mut self, expected: char) -> Result<(), DbcError> {
        match self.next()? {
            TokenKind::Punct(c) if c == expected => Ok(()),
            other => {
                self.pos -= 1;
                self.error(format!("expected '{expected}', found {other:?}"))
            }
        }
    }

    /// Skips to and past the next `;`.
    fn skip_statement(&mut self) -> Result<(), DbcError> {
        while self.next()? != TokenKind::Punct(';') {}
        Ok(())
    }

    /// Skips the rest of a block whose continuation lines are indented (`NS_`, `BS_`).
    fn skip_block(&mut self, keyword_line: usize) {
        while let Some(token) = self.tokens.get(self.pos) {
            if token.line != keyword_line && token.column == 0 {
                break;
            }
            self.pos += 1;
        }
    }

    fn file(&mut self) -> Result<(), DbcError> {
        while self.pos < self.tokens.len() {
            let line = self.line();
            let keyword = self.ident("a DBC keyword")?;
            match keyword.as_str() {
                "VERSION" => self.dbc.version = self.string("version")?,
                "NS_" | "BS_" => self.skip_block(line),
                "BU_" => {
                    self.punct(':')?;
                    while let Some(TokenKind::Ident(_)) = self.peek() {
                        if self.tokens[self.pos].line != line {
                            break;
                        }
                        let node = self.ident("node name")?;
                        self.dbc.nodes.push(node);
                    }
                }
                "BO_" => self.message()?,
                "SG_" => self.signal()?,
                "CM_" => self.comment()?,
                "BA_DEF_DEF_" => {
                    let name = self.string("attribute name")?;
                    let value = self.attribute_value()?;
                    self.attributes.defaults.insert(name, value);
                    self.punct(';')?;
                }
                "BA_" => self.attribute()?,
                "VAL_" => self.value_table()?,
                "BA_DEF_" | "VAL_TABLE_" | "BO_TX_BU_" | "EV_" | "ENVVAR_DATA_" | "SGTYPE_" => {
                    self.skip_statement()?;
                }
                "SIG_VALTYPE_" => {
                    return self.error("float signals (SIG_VALTYPE_) are not supported");
                }
                "SG_MUL_VAL_" => {
                    return self.error("extended multiplexing (SG_MUL_VAL_) is not supported");
                }
                other => {
                    self.pos -= 1;
                    return self.error(format!("unknown keyword {other:?}"));
                }
            }
        }
        Ok(())
    }

    fn message(&mut self) -> Result<(), DbcError> {
        let raw_id: u32 = self.integer("message id")?;
        let name = self.ident("message name")?;
        self.punct(':')?;
        let dlc: u8 = self.integer("message length")?;
        let sender = self.ident("sender node")?;
        let id = if raw_id & DBC_EXTENDED_FLAG != 0 {
            CanId::extended(raw_id & !DBC_EXTENDED_FLAG)
        } else {
            u16::try_from(raw_id).ok().and_then(CanId::standard)
        };
        let Some(id) = id else {
            return self.error(format!("message {name}: id {raw_id} is out of range"));
        };
        if dlc > 8 {
            return self.error(format!("message {name}: length {dlc} exceeds 8 bytes"));
        }
        self.dbc.messages.push(MessageDef {
            name,
            id,
            dlc,
            sender,
            signals: Vec::new(),
            comment: None,
            cycle_time_ms: None,
            address_bits: 0,
        });
        Ok(())
    }

    fn signal(&mut self) -> Result<(), DbcError> {
        let line = self.line();
        let name = self.ident("signal name")?;
        let mux = match self.peek() {
            Some(TokenKind::Ident(tag)) if tag == "M" => {
                self.pos += 1;
                MuxRole::Multiplexer
            }
            Some(TokenKind::Ident(tag)) if tag.starts_with('m') => {
                let tag = tag.clone();
                let Ok(value) = tag[1..].parse::<u64>() else {
                    return self.error(format!("signal {name}: bad multiplex tag {tag:?}"));
                };
                self.pos += 1;
                MuxRole::Multiplexed(value)
            }
            _ => MuxRole::Plain,
        };
        self.punct(':')?;
        let start_bit: u16 = self.integer("start bit")?;
        self.punct('|')?;
        let length: u8 = self.integer("signal length")?;
        self.punct('@')?;
        let byte_order = match self.integer::<u8>("byte order")? {
            0 => ByteOrder::BigEndian,
            1 => ByteOrder::LittleEndian,
            other => return self.error(format!("signal {name}: byte order {other} is not 0 or 1")),
        };
        let signed = match self.next()? {
            TokenKind::Punct('-') => true,
            TokenKind::Punct('+') => false,
            other => {
                return self.error(format!(
                    "signal {name}: expected '+' or '-', found {other:?}"
                ));
            }
        };
        self.punct('(')?;
        let factor = self.float("factor")?;
        self.punct(',')?;
        let offset = self.float("offset")?;
        self.punct(')')?;
        self.punct('[')?;
        let minimum = self.float("minimum")?;
        self.punct('|')?;
        let maximum = self.float("maximum")?;
        self.punct(']')?;
        let unit = self.string("unit")?;
        let mut receivers = Vec::new();
        while let Some(token) = self.tokens.get(self.pos) {
            match &token.kind {
                TokenKind::Ident(receiver) if token.line == line => {
                    receivers.push(receiver.clone())
                }
                TokenKind::Punct(',') if token.line == line => {}
                _ => break,
            }
            self.pos += 1;
        }
        let Some(message) = self.dbc.messages.last_mut() else {
            return Err(DbcError {
                line,
                message: format!("signal {name} outside any BO_ message"),
            });
        };
        if factor == 0.0 {
            return Err(DbcError {
                line,
                message: format!("signal {name}: factor is zero"),
            });
        }
        if length == 0 || length > 64 || (length == 64 && !signed) {
            return Err(DbcError {
                line,
                message: format!(
                    "signal {name}: length {length} is not supported (1..=63 unsigned, 1..=64 signed)"
                ),
            });
        }
        message.signals.push(SignalDef {
            name,
            mux,
            start_bit,
            length,
            byte_order,
            signed,
            factor,
            offset,
            minimum,
            maximum,
            unit,
            receivers,
            comment: None,
            values: Vec::new(),
        });
        Ok(())
    }

    fn message_mut(&mut self, raw_id: u32) -> Result<&mut MessageDef, DbcError> {
        let line = self.line();
        self.dbc
            .messages
            .iter_mut()
            .find(|m| dbc_raw_id(m.id) == raw_id)
            .ok_or(DbcError {
                line,
                message: format!("no message with id {raw_id}"),
            })
    }

    fn signal_mut(&mut self, raw_id: u32, signal: &str) -> Result<&mut SignalDef, DbcError> {
        let line = self.line();
        let message = self.message_mut(raw_id)?;
        let name = message.name.clone();
        message
            .signals
            .iter_mut()
            .find(|s| s.name == signal)
            .ok_or(DbcError {
                line,
                message: format!("message {name} has no signal {signal:?}"),
            })
    }

    fn comment(&mut self) -> Result<(), DbcError> {
        match self.peek() {
            Some(TokenKind::Str(_)) => self.dbc.comment = Some(self.string("comment")?),
            Some(TokenKind::Ident(kind)) if kind == "BO_" => {
                self.pos += 1;
                let raw_id = self.integer("message id")?;
                let text = self.string("comment")?;
                self.message_mut(raw_id)?.comment = Some(text);
            }
            Some(TokenKind::Ident(kind)) if kind == "SG_" => {
                self.pos += 1;
                let raw_id = self.integer("message id")?;
                let signal = self.ident("signal name")?;
                let text = self.string("comment")?;
                self.signal_mut(raw_id, &signal)?.comment = Some(text);
            }
            _ => {
                // Comments on nodes and environment variables carry no codec meaning.
                while !matches!(self.peek(), Some(TokenKind::Str(_)) | None) {
                    self.pos += 1;
                }
                self.string("comment")?;
            }
        }
        self.punct(';')
    }

    fn attribute_value(&mut self) -> Result<String, DbcError> {
        match self.next()? {
            TokenKind::Number(text) | TokenKind::Str(text) => Ok(text),
            other => self.error(format!("expected an attribute value, found {other:?}")),
        }
    }

    fn attribute(&mut self) -> Result<(), DbcError> {
        let line = self.line();
        let name = self.string("attribute name")?;
        if let Some(TokenKind::Ident(kind)) = self.peek()
            && kind == "BO_"
        {
            self.pos += 1;
            let raw_id: u32 = self.integer("message id")?;
            let value = self.attribute_value()?;
            self.attributes
                .messages
                .insert((raw_id, name), (value, line));
            return self.punct(';');
        }
        // Attributes of the file, nodes and signals carry no codec meaning.
        self.skip_statement()
    }

    fn value_table(&mut self) -> Result<(), DbcError> {
        let raw_id: u32 = self.integer("message id")?;
        let signal = self.ident("signal name")?;
        let mut values = Vec::new();
        while let Some(TokenKind::Number(_)) = self.peek() {
            let raw: i64 = self.integer("value")?;
            let label = self.string("value label")?;
            values.push((raw, label));
        }
        self.punct(';')?;
        self.signal_mut(raw_id, &signal)?.values = values;
        Ok(())
    }

    /// Resolves attributes and checks what the codec relies on: ids, lengths, layout.
    fn finish(mut self) -> Result<Dbc, DbcError> {
        let attributes = std::mem::take(&mut self.attributes);
        let message_attribute = |raw_id: u32, name: &str| -> Result<Option<u64>, DbcError> {
            let (text, line) = match attributes.messages.get(&(raw_id, name.to_owned())) {
                Some((text, line)) => (text.as_str(), *line),
                None => match attributes.defaults.get(name) {
                    Some(text) => (text.as_str(), 0),
                    None => return Ok(None),
                },
            };
            text.parse().map(Some).map_err(|_| DbcError {
                line,
                message: format!("attribute {name}: {text:?} is not an integer"),
            })
        };
        let mut names = HashMap::new();
        for message in &mut self.dbc.messages {
            let raw_id = dbc_raw_id(message.id);
            let at = |message: String| DbcError { line: 0, message };
            if let Some(other) = names.insert(message.name.clone(), raw_id) {
                return Err(at(format!(
                    "message {} is defined twice (ids {other} and {raw_id})",
                    message.name
                )));
            }
            message.cycle_time_ms = message_attribute(raw_id, CYCLE_TIME_ATTRIBUTE)?
                .filter(|ms| *ms > 0)
                .map(|ms| u32::try_from(ms).unwrap_or(u32::MAX));
            let address_bits = message_attribute(raw_id, ADDRESS_BITS_ATTRIBUTE)?.unwrap_or(0);
            message.address_bits = match u8::try_from(address_bits) {
                Ok(bits) if bits <= 8 => bits,
                _ => {
                    return Err(at(format!(
                        "message {}: {ADDRESS_BITS_ATTRIBUTE} {address_bits} exceeds 8",
                        message.name
                    )));
                }
            };
            if message.id.raw() & ((1 << message.address_bits) - 1) != 0 {
                return Err(at(format!(
                    "message {}: id {:X} has address bits set; list the id of address 0",
                    message.name,
                    message.id.raw()
                )));
            }
            check_layout(message).map_err(at)?;
        }
        let mut ids: Vec<(CanId, u8, &str)> = self
            .dbc
            .messages
            .iter()
            .map(|m| (m.id, m.address_bits, m.name.as_str()))
            .collect();
        ids.sort();
        for pair in ids.windows(2) {
            let [(id_a, bits_a, name_a), (id_b, _, name_b)] = pair else {
                continue;
            };
            let same_space = id_a.is_extended() == id_b.is_extended();
            if same_space && id_b.raw() <= id_a.raw() + ((1 << bits_a) - 1) {
                return Err(DbcError {
                    line: 0,
                    message: format!("ids of {name_a} and {name_b} overlap"),
                });
            }
        }
        Ok(self.dbc)
    }
}

/// A message id as the DBC file writes it, with the extended flag.
pub fn dbc_raw_id(id: CanId) -> u32 {
    match id {
        CanId::Standard(id) => u32::from(id),
        CanId::Extended(id) => id | DBC_EXTENDED_FLAG,
    }
}

/// Checks that every signal fits the payload, that multiplexing is well formed, and
/// that signals present at the same time do not share bits.
fn check_layout(message: &MessageDef) -> Result<(), String> {
    let name = &message.name;
    let multiplexers = message
        .signals
        .iter()
        .filter(|s| s.mux == MuxRole::Multiplexer)
        .count();
    if multiplexers > 1 {
        return Err(format!(
            "message {name} has {multiplexers} multiplexers; at most one is supported"
        ));
    }
    let mut masks = Vec::with_capacity(message.signals.len());
    for signal in &message.signals {
        if matches!(signal.mux, MuxRole::Multiplexed(_)) && multiplexers == 0 {
            return Err(format!(
                "{name}.{}: multiplexed signal without a multiplexer",
                signal.name
            ));
        }
        let mask = bits::occupied(
            signal.start_bit,
            signal.length,
            signal.byte_order,
            message.dlc,
        )
        .ok_or_else(|| {
            format!(
                "{name}.{}: does not fit in {} bytes",
                signal.name, message.dlc
            )
        })?;
        masks.push(mask);
    }
    for (i, a) in message.signals.iter().enumerate() {
        for (j, b) in message.signals.iter().enumerate().skip(i + 1) {
            let exclusive = matches!((a.mux, b.mux), (MuxRole::Multiplexed(x), MuxRole::Multiplexed(y)) if x != y);
            if !exclusive && masks[i] & masks[j] != 0 {
                return Err(format!("{name}: signals {} and {} overlap", a.name, b.name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"VERSION "t"

NS_ :
	CM_
	BA_

BS_:

BU_: HOST PLC

BO_ 256 Demo: 3 HOST
 SG_ Mode M : 0|4@1+ (1,0) [0|2] "" PLC
 SG_ Temp m1 : 8|8@1- (0.5,-10) [-50|50] "degC" PLC,HOST
 SG_ Big m2 : 15|16@0+ (1,0) [0|0] "" PLC

CM_ BO_ 256 "A demo message.";
CM_ SG_ 256 Temp "Temperature, \"quoted\".";
BA_DEF_ BO_ "RingHubAddressBits" INT 0 8;
BA_DEF_DEF_ "RingHubAddressBits" 0;
BA_ "RingHubAddressBits" BO_ 256 4;
VAL_ 256 Mode 0 "Off" 1 "Temp" 2 "Big" ;
"#;

    #[test]
    fn parses_messages_signals_and_metadata() {
        let dbc = parse(SMALL).unwrap();
        assert_eq!(dbc.version, "t");
        assert_eq!(dbc.nodes, ["HOST", "PLC"]);
        let demo = &dbc.messages[0];
        assert_eq!(
            (demo.name.as_str(), demo.id, demo.dlc),
            ("Demo", CanId::Standard(0x100), 3)
        );
        assert_eq!(demo.address_bits, 4);
        assert_eq!(demo.comment.as_deref(), Some("A demo message."));
        let temp = demo.signal("Temp").unwrap();
        assert_eq!(temp.mux, MuxRole::Multiplexed(1));
        assert!(temp.signed);
        assert_eq!(
            (temp.factor, temp.offset, temp.minimum, temp.maximum),
            (0.5, -10.0, -50.0, 50.0)
        );
        assert_eq!(temp.receivers, ["PLC", "HOST"]);
        assert_eq!(temp.comment.as_deref(), Some("Temperature, \"quoted\"."));
        let big = demo.signal("Big").unwrap();
        assert_eq!(big.byte_order, ByteOrder::BigEndian);
        assert!(!big.is_bounded());
        assert_eq!(demo.multiplexer().unwrap().label_of(2), Some("Big"));
    }

    #[test]
    fn the_shipped_catalog_parses() {
        let dbc = parse(include_str!("../../can/ringhub.dbc")).unwrap();
        assert!(dbc.messages.len() >= 16);
        assert!(
            dbc.messages.iter().all(|m| m.address_bits > 0),
            "every ringhub frame is addressed"
        );
    }

    fn error_line(text: &str) -> (usize, String) {
        let error = parse(text).unwrap_err();
        (error.line, error.message)
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let (line, message) = error_line("BO_ 256 A: 9 HOST\n");
        assert_eq!(line, 1);
        assert!(message.contains("exceeds 8 bytes"), "{message}");

        let (line, message) = error_line("BO_ 256 A: 1 HOST\n SG_ X : 4|8@1+ (1,0) [0|0] \"\" B\n");
        assert_eq!(line, 0);
        assert!(message.contains("does not fit"), "{message}");

        let (line, message) = error_line(
            "BO_ 256 A: 2 HOST\n SG_ X : 0|8@1+ (1,0) [0|0] \"\" B\n SG_ Y : 4|8@1+ (1,0) [0|0] \"\" B\n",
        );
        assert_eq!(line, 0);
        assert!(message.contains("overlap"), "{message}");

        let (line, message) = error_line("BO_ 256 A: 1 HOST\n\nVAL_ 256 Nope 0 \"x\" ;\n");
        assert_eq!(line, 3);
        assert!(message.contains("no signal"), "{message}");

        let (line, message) = error_line("BO_ 256 A: 1 HOST\n SG_ X : 0|8@2+ (1,0) [0|0] \"\" B\n");
        assert_eq!(line, 2);
        assert!(message.contains("byte order"), "{message}");

        let (_, message) = error_line("BO_ 256 A: 1 HOST\nSIG_VALTYPE_ 256 X : 1;\n");
        assert!(message.contains("float signals"), "{message}");

        let (line, message) = error_line("VERSION \"x\nBU_: A\n");
        assert_eq!(line, 1);
        assert!(message.contains("unterminated"), "{message}");

        let (_, message) = error_line("BO_ 257 A: 1 HOST\nBA_ \"RingHubAddressBits\" BO_ 257 4;\n");
        assert!(message.contains("address bits set"), "{message}");

        let (_, message) = error_line(
            "BO_ 256 A: 1 HOST\nBO_ 260 B: 1 HOST\nBA_ \"RingHubAddressBits\" BO_ 256 4;\n",
        );
        assert!(message.contains("overlap"), "{message}");

        let (line, message) = error_line("BOGUS_ 1;\n");
        assert_eq!(line, 1);
        assert!(message.contains("unknown keyword"), "{message}");
    }
}
