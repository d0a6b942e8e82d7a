//! The calls the charge point sends, their confirmations, and why a call can fail.
//!
//! OCPP-J 1.6 §4.1.1 allows one outstanding CALL per connection: the charge point keeps
//! its calls in a queue and sends the next one only when the previous one got its
//! CALLRESULT or CALLERROR, or timed out. Whatever the outcome, the call comes back to the
//! node as [`super::Event::Answered`] together with the request it answers, except for
//! the transaction-related calls, which `transactions.rs` keeps until they are confirmed.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::Value;

use super::super::messages::OcppCall;
use super::super::messages::charge_point::{
    AuthorizeRequest, AuthorizeResponse, BootNotificationRequest, BootNotificationResponse,
    DataTransferRequest, DataTransferResponse, HeartbeatRequest, HeartbeatResponse,
    MeterValuesRequest, MeterValuesResponse, StartTransactionRequest, StartTransactionResponse,
    StatusNotificationRequest, StatusNotificationResponse, StopTransactionRequest,
    StopTransactionResponse,
};
use super::super::rpc::{ErrorCode, Frame, MessageId};
use super::super::types::PayloadError;
use super::journal::Seq;

/// A call the charge point sends to the CSMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingCall {
    /// Authorize.req, queued by the node.
    Authorize(AuthorizeRequest),
    /// BootNotification.req, sent by the core on connect and on retry.
    BootNotification(BootNotificationRequest),
    /// DataTransfer.req, queued by the node.
    DataTransfer(DataTransferRequest),
    /// Heartbeat.req, sent by the core when idle.
    Heartbeat(HeartbeatRequest),
    /// MeterValues.req: from the journal when it has a transactionId, else queued by the
    /// node.
    MeterValues(MeterValuesRequest),
    /// StartTransaction.req, from the journal.
    StartTransaction(StartTransactionRequest),
    /// StatusNotification.req, sent by the core when a status has lasted long enough.
    StatusNotification(StatusNotificationRequest),
    /// StopTransaction.req, from the journal.
    StopTransaction(StopTransactionRequest),
}

/// The confirmation of an [`OutgoingCall`], of the matching variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Authorize.conf.
    Authorize(AuthorizeResponse),
    /// BootNotification.conf.
    BootNotification(BootNotificationResponse),
    /// DataTransfer.conf.
    DataTransfer(DataTransferResponse),
    /// Heartbeat.conf.
    Heartbeat(HeartbeatResponse),
    /// MeterValues.conf.
    MeterValues(MeterValuesResponse),
    /// StartTransaction.conf.
    StartTransaction(StartTransactionResponse),
    /// StatusNotification.conf.
    StatusNotification(StatusNotificationResponse),
    /// StopTransaction.conf.
    StopTransaction(StopTransactionResponse),
}

/// Why a call got no confirmation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The CSMS answered with a CALLERROR.
    #[error("CALLERROR {code}: {description}")]
    CallError {
        /// Its error code.
        code: ErrorCode,
        /// Its description.
        description: String,
    },
    /// The CSMS answered with a CALLRESULT that does not fit the confirmation's schema.
    #[error("malformed confirmation: {0}")]
    BadResponse(PayloadError),
    /// No answer within the response timeout.
    #[error("no response within the response timeout")]
    Timeout,
    /// The connection closed before the answer, or was down when the call was queued.
    #[error("not connected")]
    NotConnected,
}

impl OutgoingCall {
    /// The call as a CALL frame with message id `id`.
    pub(super) fn to_frame(&self, id: MessageId) -> Frame {
        match self {
            Self::Authorize(r) => r.to_call(id),
            Self::BootNotification(r) => r.to_call(id),
            Self::DataTransfer(r) => r.to_call(id),
            Self::Heartbeat(r) => r.to_call(id),
            Self::MeterValues(r) => r.to_call(id),
            Self::StartTransaction(r) => r.to_call(id),
            Self::StatusNotification(r) => r.to_call(id),
            Self::StopTransaction(r) => r.to_call(id),
        }
    }

    /// Decodes a CALLRESULT payload as this call's confirmation.
    pub(super) fn decode(&self, payload: &Value) -> Result<Confirmation, PayloadError> {
        Ok(match self {
            Self::Authorize(_) => {
                Confirmation::Authorize(AuthorizeRequest::decode_response(payload)?)
            }
            Self::BootNotification(_) => {
                Confirmation::BootNotification(BootNotificationRequest::decode_response(payload)?)
            }
            Self::DataTransfer(_) => {
                Confirmation::DataTransfer(DataTransferRequest::decode_response(payload)?)
            }
            Self::Heartbeat(_) => {
                Confirmation::Heartbeat(HeartbeatRequest::decode_response(payload)?)
            }
            Self::MeterValues(_) => {
                Confirmation::MeterValues(MeterValuesRequest::decode_response(payload)?)
            }
            Self::StartTransaction(_) => {
                Confirmation::StartTransaction(StartTransactionRequest::decode_response(payload)?)
            }
            Self::StatusNotification(_) => Confirmation::StatusNotification(
                StatusNotificationRequest::decode_response(payload)?,
            ),
            Self::StopTransaction(_) => {
                Confirmation::StopTransaction(StopTransactionRequest::decode_response(payload)?)
            }
        })
    }
}

/// The CALL awaiting its answer.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    /// Its message id, which the answer must carry.
    pub(super) id: MessageId,
    /// The request, handed back with the answer.
    pub(super) call: OutgoingCall,
    /// The journal position of a transaction-related call, which stays stored until
    /// confirmed.
    pub(super) journal: Option<Seq>,
}

/// The queue of calls and the one in flight.
#[derive(Debug, Clone, Default)]
pub(super) struct Outbox {
    /// Calls waiting for the one in flight to be answered, oldest first.
    pub(super) queue: VecDeque<OutgoingCall>,
    /// The CALL sent and not yet answered.
    pub(super) in_flight: Option<InFlight>,
    /// When the last CALL went out: the start of the idle period a Heartbeat ends.
    pub(super) last_sent: Option<Instant>,
}

impl Outbox {
    /// Takes the call in flight if `id` is its id.
    pub(super) fn take_answered(&mut self, id: &MessageId) -> Option<InFlight> {
        if self.in_flight.as_ref().is_some_and(|f| f.id == *id) {
            self.in_flight.take()
        } else {
            None
        }
    }

    /// Whether a Heartbeat is queued or in flight.
    pub(super) fn has_heartbeat(&self) -> bool {
        let is_heartbeat = |c: &OutgoingCall| matches!(c, OutgoingCall::Heartbeat(_));
        self.queue.iter().any(is_heartbeat)
            || self
                .in_flight
                .as_ref()
                .is_some_and(|f| is_heartbeat(&f.call))
    }
}
