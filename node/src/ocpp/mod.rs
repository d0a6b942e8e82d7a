//! OCPP 1.6J toward the operator's CSMS (DESIGN.md §5 "OCPP", issue 6): the message
//! layer, pure and without IO.
//!
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

pub mod messages;
pub mod rpc;
pub mod types;
