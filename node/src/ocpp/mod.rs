//! OCPP 1.6J toward the operator's CSMS (DESIGN.md §5 "OCPP", issue 6). Everything but
//! `transport` is pure, without IO.
//!
//! - [`charge_point`]: the sans-IO charge point of one connection: boot, heartbeat, one
//!   outstanding CALL, CSMS calls, configuration keys, StatusNotification;
//! - [`transport`]: the OCPP-J WebSocket client (subprotocol `ocpp1.6`, security
//!   profiles 1 and 2 with rustls) and its reconnecting wrapper;
//! - [`rpc`]: OCPP-J 1.6 §4 framing: CALL, CALLRESULT and CALLERROR arrays, the
//!   CALLERROR codes, message ids and their generator;
//! - [`messages`]: the payloads of every action ringhub sends or answers, and the typed
//!   [`messages::Request`] a CSMS call decodes into;
//! - [`types`]: the constrained field types (CiString, dateTime) and the classification
//!   of a bad payload into its CALLERROR code.
//!
//! ```text
//! text frame ──Frame::parse──► Frame::Call ──Request::from_call──► Request
//!      ▲            │ Err: RejectedFrame::reply()        │ Err: PayloadError::reply()
//!      └──encode────┴──────────────────────────────────◄─┘
//! ```

pub mod charge_point;
pub mod dispenser;
pub mod driver;
pub mod messages;
pub mod rpc;
pub mod transport;
pub mod types;
