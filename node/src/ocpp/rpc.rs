//! OCPP-J 1.6 RPC framing (OCPP-J 1.6 §4): every WebSocket text message is a JSON array.
//!
//! ```text
//! CALL        [2, "<messageId>", "<Action>", {payload}]
//! CALLRESULT  [3, "<messageId>", {payload}]
//! CALLERROR   [4, "<messageId>", "<errorCode>", "<errorDescription>", {errorDetails}]
//! ```
//!
//! [`Frame::parse`] checks the array's shape only; the payload is decoded against its
//! action by [`super::messages`]. A frame that fails the check becomes a [`RejectedFrame`]
//! that keeps the message id when it could be read, so that a malformed CALL can be
//! answered with a CALLERROR naming it ([`RejectedFrame::reply`]) while the connection stays
//! up. Message type numbers other than 2, 3 and 4 are ignored, as §4.1.3 requires.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The longest message id OCPP-J 1.6 §4.1.4 allows.
pub const MAX_MESSAGE_ID_LEN: usize = 36;

/// The CALLERROR codes of OCPP-J 1.6 §4.2.3, spelled as the spec spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The requested action is not known by the receiver.
    NotImplemented,
    /// The requested action is recognised but not supported by the receiver.
    NotSupported,
    /// An internal error occurred and the receiver could not process the action.
    InternalError,
    /// The payload for the action is incomplete.
    ProtocolError,
    /// A security issue prevented the receiver from completing the action.
    SecurityError,
    /// The payload is syntactically incorrect or does not conform to the action's PDU.
    FormationViolation,
    /// The payload is syntactically correct but a field holds an invalid value.
    PropertyConstraintViolation,
    /// The payload is syntactically correct but a field violates occurrence constraints
    /// (the spec's spelling, with one "r").
    #[serde(alias = "OccurrenceConstraintViolation")]
    OccurenceConstraintViolation,
    /// The payload is syntactically correct but a field violates data type constraints.
    TypeConstraintViolation,
    /// Any other error.
    GenericError,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotImplemented => "NotImplemented",
            Self::NotSupported => "NotSupported",
            Self::InternalError => "InternalError",
            Self::ProtocolError => "ProtocolError",
            Self::SecurityError => "SecurityError",
            Self::FormationViolation => "FormationViolation",
            Self::PropertyConstraintViolation => "PropertyConstraintViolation",
            Self::OccurenceConstraintViolation => "OccurenceConstraintViolation",
            Self::TypeConstraintViolation => "TypeConstraintViolation",
            Self::GenericError => "GenericError",
        }
    }

    /// Reads a received code. Codes from other OCPP versions are mapped to their 1.6
    /// meaning and anything else to GenericError, so that the CALLERROR still answers its
    /// CALL.
    pub fn from_wire(code: &str) -> Self {
        match code {
            "NotImplemented" => Self::NotImplemented,
            "NotSupported" => Self::NotSupported,
            "InternalError" => Self::InternalError,
            "ProtocolError" => Self::ProtocolError,
            "SecurityError" => Self::SecurityError,
            "FormationViolation" | "FormatViolation" => Self::FormationViolation,
            "PropertyConstraintViolation" => Self::PropertyConstraintViolation,
            "OccurenceConstraintViolation" | "OccurrenceConstraintViolation" => {
                Self::OccurenceConstraintViolation
            }
            "TypeConstraintViolation" => Self::TypeConstraintViolation,
            _ => Self::GenericError,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message id: unique per CALL on a connection, at most 36 characters (§4.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MessageId(String);

impl MessageId {
    /// Accepts `id` if it is at most [`MAX_MESSAGE_ID_LEN`] characters long.
    pub fn new(id: impl Into<String>) -> Result<Self, FrameError> {
        let id = id.into();
        let len = id.chars().count();
        if len > MAX_MESSAGE_ID_LEN {
            return Err(FrameError::MessageIdTooLong { len });
        }
        Ok(Self(id))
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A source of message ids for outgoing CALLs. The runtime uses [`SequentialIds`];
/// tests inject their own.
pub trait MessageIds {
    /// An id no earlier call on this source returned.
    fn next_id(&mut self) -> MessageId;
}

/// `<seed>-<counter>` ids, both in hex. The counter makes ids unique within one source;
/// the seed (random or the boot time, chosen by the caller) makes them unique across
/// restarts, so a CSMS never sees an id reused on a reconnect.
#[derive(Debug, Clone)]
pub struct SequentialIds {
    /// Distinguishes this source from those of earlier boots.
    seed: u64,
    /// The counter of the next id.
    next: u64,
}

impl SequentialIds {
    /// A source whose ids start with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, next: 0 }
    }
}

impl MessageIds for SequentialIds {
    fn next_id(&mut self) -> MessageId {
        let id = format!("{:x}-{:x}", self.seed, self.next);
        self.next = self.next.wrapping_add(1);
        // At most 16 + 1 + 16 = 33 characters.
        MessageId(id)
    }
}

/// A CALL: a request from one side to the other.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Pairs the CALL with its CALLRESULT or CALLERROR.
    pub id: MessageId,
    /// The action's name, e.g. "BootNotification".
    pub action: String,
    /// The request payload, a JSON object.
    pub payload: Value,
}

/// A CALLRESULT: the successful answer to a CALL.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    /// The id of the CALL it answers.
    pub id: MessageId,
    /// The confirmation payload, a JSON object.
    pub payload: Value,
}

/// A CALLERROR: the answer to a CALL that could not be processed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// The id of the CALL it answers.
    pub id: MessageId,
    /// What went wrong, from §4.2.3's table.
    pub code: ErrorCode,
    /// A human-readable description ("" when there is none).
    pub description: String,
    /// Details as a JSON object ({} when there are none).
    pub details: Map<String, Value>,
}

/// One OCPP-J message.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// MessageTypeId 2.
    Call(Call),
    /// MessageTypeId 3.
    CallResult(CallResult),
    /// MessageTypeId 4.
    CallError(CallError),
}

/// The three message type numbers of §4.1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 2: request.
    Call,
    /// 3: response.
    CallResult,
    /// 4: error response.
    CallError,
}

impl MessageType {
    /// The number on the wire.
    pub fn number(self) -> u64 {
        match self {
            Self::Call => 2,
            Self::CallResult => 3,
            Self::CallError => 4,
        }
    }

    /// How many elements its array has.
    fn arity(self) -> usize {
        match self {
            Self::Call => 4,
            Self::CallResult => 3,
            Self::CallError => 5,
        }
    }
}

/// What is wrong with a frame's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an array.
    #[error("not a JSON array")]
    NotArray,
    /// The first element is missing or not a non-negative integer.
    #[error("message type id missing or not an integer")]
    BadMessageType,
    /// The message type number is not 2, 3 or 4; the frame is to be ignored.
    #[error("unknown message type id {0}")]
    UnknownMessageType(u64),
    /// The second element is missing or not a string.
    #[error("message id missing or not a string")]
    BadMessageId,
    /// The message id is longer than 36 characters.
    #[error("message id of {len} characters exceeds {MAX_MESSAGE_ID_LEN}")]
    MessageIdTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The array has the wrong number of elements for its type.
    #[error("{found} elements where message type {message_type} has {expected}")]
    WrongLength {
        /// The message type number.
        message_type: u64,
        /// How many elements the type has.
        expected: usize,
        /// How many the frame has.
        found: usize,
    },
    /// A CALL's action is not a string.
    #[error("action is not a string")]
    BadAction,
    /// A payload or error details element is not a JSON object.
    #[error("payload is not a JSON object")]
    PayloadNotObject,
    /// A CALLERROR's code or description is not a string.
    #[error("error code or description is not a string")]
    BadErrorFields,
}

/// A frame that failed [`Frame::parse`], with what could be recovered of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rejected OCPP-J frame: {error}")]
pub struct RejectedFrame {
    /// The frame's message type, when its first element was 2, 3 or 4.
    pub message_type: Option<MessageType>,
    /// The frame's message id, when it was a valid one.
    pub message_id: Option<MessageId>,
    /// What was wrong.
    pub error: FrameError,
}

impl RejectedFrame {
    /// The CALLERROR code the defect calls for (an unknown message type is never answered;
    /// its code, NotSupported, only classifies it).
    pub fn code(&self) -> ErrorCode {
        match self.error {
            FrameError::UnknownMessageType(_) => ErrorCode::NotSupported,
            FrameError::NotJson(_)
            | FrameError::NotArray
            | FrameError::BadMessageType
            | FrameError::BadMessageId
            | FrameError::MessageIdTooLong { .. }
            | FrameError::WrongLength { .. }
            | FrameError::BadAction
            | FrameError::PayloadNotObject
            | FrameError::BadErrorFields => ErrorCode::FormationViolation,
        }
    }

    /// The CALLERROR to send back, if any: only a malformed CALL whose id could be read
    /// is answered. A broken CALLRESULT or CALLERROR cannot be answered (the other side
    /// awaits nothing), and an unknown message type is ignored (§4.1.3).
    pub fn reply(&self) -> Option<Frame> {
        if self.message_type != Some(MessageType::Call) {
            return None;
        }
        let id = self.message_id.clone()?;
        Some(Frame::error(id, self.code(), self.error.to_string()))
    }
}

impl Frame {
    /// A CALLERROR answering `id`, with empty details.
    pub fn error(id: MessageId, code: ErrorCode, description: impl Into<String>) -> Self {
        Self::CallError(CallError {
            id,
            code,
            description: description.into(),
            details: Map::new(),
        })
    }

    /// The frame's message id.
    pub fn id(&self) -> &MessageId {
        match self {
            Self::Call(c) => &c.id,
            Self::CallResult(r) => &r.id,
            Self::CallError(e) => &e.id,
        }
    }

    /// Parses one WebSocket text message.
    pub fn parse(text: &str) -> Result<Self, RejectedFrame> {
        let reject = |message_type, message_id, error| RejectedFrame {
            message_type,
            message_id,
            error,
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| reject(None, None, FrameError::NotJson(e.to_string())))?;
        let Value::Array(mut items) = value else {
            return Err(reject(None, None, FrameError::NotArray));
        };
        let number = items
            .first()
            .and_then(Value::as_u64)
            .ok_or_else(|| reject(None, None, FrameError::BadMessageType))?;
        let message_type = match number {
            2 => MessageType::Call,
            3 => MessageType::CallResult,
            4 => MessageType::CallError,
            other => return Err(reject(None, None, FrameError::UnknownMessageType(other))),
        };
        let id_text = items
            .get(1)
            .and_then(Value::as_str)
            .ok_or_else(|| reject(Some(message_type), None, FrameError::BadMessageId))?;
        let id = MessageId::new(id_text).map_err(|e| reject(Some(message_type), None, e))?;
        let reject = |error| reject(Some(message_type), Some(id.clone()), error);
        if items.len() != message_type.arity() {
            return Err(reject(FrameError::WrongLength {
                message_type: number,
                expected: message_type.arity(),
                found: items.len(),
            }));
        }
        // The arity check makes the last element present.
        let last = items.pop().unwrap_or(Value::Null);
        if !last.is_object() {
            return Err(reject(FrameError::PayloadNotObject));
        }
        let frame = match message_type {
            MessageType::Call => {
                let action = items[2]
                    .as_str()
                    .ok_or_else(|| reject(FrameError::BadAction))?;
                Self::Call(Call {
                    id: id.clone(),
                    action: action.to_owned(),
                    payload: last,
                })
            }
            MessageType::CallResult => Self::CallResult(CallResult {
                id: id.clone(),
                payload: last,
            }),
            MessageType::CallError => {
                let (Some(code), Some(description)) = (items[2].as_str(), items[3].as_str()) else {
                    return Err(reject(FrameError::BadErrorFields));
                };
                let Value::Object(details) = last else {
                    return Err(reject(FrameError::PayloadNotObject));
                };
                Self::CallError(CallError {
                    id: id.clone(),
                    code: ErrorCode::from_wire(code),
                    description: description.to_owned(),
                    details,
                })
            }
        };
        Ok(frame)
    }

    /// The frame as a WebSocket text message.
    pub fn encode(&self) -> String {
        let value = match self {
            Self::Call(c) => json!([2, c.id, c.action, c.payload]),
            Self::CallResult(r) => json!([3, r.id, r.payload]),
            Self::CallError(e) => json!([4, e.id, e.code, e.description, e.details]),
        };
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn id(s: &str) -> MessageId {
        MessageId::new(s).unwrap()
    }

    #[test]
    fn call_parses_and_round_trips() {
        let text = r#"[2,"19223201","BootNotification",{"chargePointVendor":"VendorX","chargePointModel":"SingleSocketCharger"}]"#;
        let frame = Frame::parse(text).unwrap();
        let Frame::Call(call) = &frame else {
            panic!("{frame:?}")
        };
        assert_eq!(call.id, id("19223201"));
        assert_eq!(call.action, "BootNotification");
        assert_eq!(call.payload["chargePointModel"], "SingleSocketCharger");
        assert_eq!(frame.encode(), text);
    }

    #[test]
    fn call_result_parses_and_round_trips() {
        let text = r#"[3,"19223201",{"currentTime":"2013-02-01T20:53:32.486Z","interval":300,"status":"Accepted"}]"#;
        let frame = Frame::parse(text).unwrap();
        assert!(matches!(&frame, Frame::CallResult(r) if r.payload["interval"] == 300));
        assert_eq!(frame.id(), &id("19223201"));
        assert_eq!(frame.encode(), text);
    }

    #[test]
    fn call_error_parses_and_round_trips() {
        let text =
            r#"[4,"162376037","NotSupported","SetDisplayMessageRequest not implemented",{}]"#;
        let frame = Frame::parse(text).unwrap();
        let Frame::CallError(e) = &frame else {
            panic!("{frame:?}")
        };
        assert_eq!(e.code, ErrorCode::NotSupported);
        assert_eq!(e.description, "SetDisplayMessageRequest not implemented");
        assert!(e.details.is_empty());
        assert_eq!(frame.encode(), text);
    }

    #[test]
    fn whitespace_between_elements_is_accepted() {
        let frame = Frame::parse("[ 2 , \"a\" ,\n \"Heartbeat\" , { } ]").unwrap();
        assert_eq!(frame.encode(), r#"[2,"a","Heartbeat",{}]"#);
    }

    #[test]
    fn error_codes_keep_the_spec_spellings() {
        for code in [
            ErrorCode::NotImplemented,
            ErrorCode::NotSupported,
            ErrorCode::InternalError,
            ErrorCode::ProtocolError,
            ErrorCode::SecurityError,
            ErrorCode::FormationViolation,
            ErrorCode::PropertyConstraintViolation,
            ErrorCode::OccurenceConstraintViolation,
            ErrorCode::TypeConstraintViolation,
            ErrorCode::GenericError,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert_eq!(ErrorCode::from_wire(code.as_str()), code);
        }
        assert_eq!(
            ErrorCode::from_wire("OccurrenceConstraintViolation"),
            ErrorCode::OccurenceConstraintViolation
        );
        assert_eq!(
            ErrorCode::from_wire("FormatViolation"),
            ErrorCode::FormationViolation
        );
        assert_eq!(ErrorCode::from_wire("Teapot"), ErrorCode::GenericError);
    }

    /// Parses `text`, expecting it rejected.
    fn reject(text: &str) -> RejectedFrame {
        Frame::parse(text).expect_err(text)
    }

    #[test]
    fn garbage_is_a_formation_violation_without_reply() {
        for text in [
            "",
            "not json",
            "{\"a\":1}",
            "[]",
            "[\"2\",\"a\",\"Heartbeat\",{}]",
            "[-1]",
        ] {
            let r = reject(text);
            assert_eq!(r.code(), ErrorCode::FormationViolation, "{text}");
            assert_eq!(r.message_id, None, "{text}");
            assert_eq!(r.reply(), None, "{text}");
        }
        assert_eq!(reject("[2]").error, FrameError::BadMessageId);
        assert_eq!(
            reject("[2, 17, \"Heartbeat\", {}]").error,
            FrameError::BadMessageId
        );
    }

    #[test]
    fn unknown_message_type_is_ignored() {
        let r = reject(r#"[5,"a","Heartbeat",{}]"#);
        assert_eq!(r.error, FrameError::UnknownMessageType(5));
        assert_eq!(r.reply(), None);
    }

    #[test]
    fn malformed_call_is_answered_with_its_id() {
        let cases = [
            (
                r#"[2,"m1","Heartbeat"]"#,
                FrameError::WrongLength {
                    message_type: 2,
                    expected: 4,
                    found: 3,
                },
            ),
            (
                r#"[2,"m1","Heartbeat",{},{}]"#,
                FrameError::WrongLength {
                    message_type: 2,
                    expected: 4,
                    found: 5,
                },
            ),
            (r#"[2,"m1",7,{}]"#, FrameError::BadAction),
            (r#"[2,"m1","Heartbeat",[]]"#, FrameError::PayloadNotObject),
            (r#"[2,"m1","Heartbeat","{}"]"#, FrameError::PayloadNotObject),
        ];
        for (text, error) in cases {
            let r = reject(text);
            assert_eq!(r.error, error, "{text}");
            assert_eq!(r.message_id, Some(id("m1")));
            let Some(Frame::CallError(reply)) = r.reply() else {
                panic!("{text}: no reply")
            };
            assert_eq!(reply.id, id("m1"));
            assert_eq!(reply.code, ErrorCode::FormationViolation);
        }
    }

    #[test]
    fn malformed_results_and_errors_are_not_answered() {
        let r = reject(r#"[3,"m2"]"#);
        assert_eq!(r.message_type, Some(MessageType::CallResult));
        assert_eq!(r.message_id, Some(id("m2")));
        assert_eq!(r.reply(), None);
        let r = reject(r#"[4,"m3",1,"x",{}]"#);
        assert_eq!(r.error, FrameError::BadErrorFields);
        assert_eq!(r.reply(), None);
        let r = reject(r#"[4,"m3","GenericError","x",null]"#);
        assert_eq!(r.error, FrameError::PayloadNotObject);
    }

    #[test]
    fn message_ids_longer_than_36_are_rejected() {
        assert!(MessageId::new("a".repeat(36)).is_ok());
        let long = "a".repeat(37);
        let r = reject(&format!(r#"[2,"{long}","Heartbeat",{{}}]"#));
        assert_eq!(r.error, FrameError::MessageIdTooLong { len: 37 });
        assert_eq!(r.message_id, None);
        assert_eq!(r.reply(), None);
    }

    #[test]
    fn sequential_ids_are_unique_and_fit() {
        let mut ids = SequentialIds::new(u64::MAX);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let next = ids.next_id();
            assert!(next.as_str().len() <= MAX_MESSAGE_ID_LEN);
            assert!(seen.insert(next));
        }
        // Sources seeded differently (two boots) never collide.
        let mut other = SequentialIds::new(1);
        assert!((0..10_000).all(|_| !seen.contains(&other.next_id())));
    }

    #[test]
    fn message_id_sources_are_injectable() {
        struct Fixed(Vec<&'static str>);
        impl MessageIds for Fixed {
            fn next_id(&mut self) -> MessageId {
                MessageId::new(self.0.remove(0)).unwrap()
            }
        }
        fn call(ids: &mut impl MessageIds) -> Frame {
            Frame::Call(Call {
                id: ids.next_id(),
                action: "Heartbeat".into(),
                payload: json!({}),
            })
        }
        let mut ids = Fixed(vec!["first", "second"]);
        assert_eq!(call(&mut ids).encode(), r#"[2,"first","Heartbeat",{}]"#);
        assert_eq!(call(&mut ids).encode(), r#"[2,"second","Heartbeat",{}]"#);
    }
}
