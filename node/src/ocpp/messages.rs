//! The OCPP 1.6J payloads ringhub sends and answers, as serde types checked against the
//! OCA JSON schemas of OCPP 1.6 (edition 2, errata applied): camelCase names, no unknown
//! fields (every schema sets `additionalProperties: false`), CiString bounds and RFC 3339
//! dates enforced while decoding.
//!
//! - [`charge_point`]: the calls the charge point initiates (§4 of the spec);
//! - [`central_system`]: the calls the CSMS initiates that ringhub answers (§5);
//! - [`meter`]: MeterValue and SampledValue with their enumerations.
//!
//! Every request type implements [`OcppCall`], which names its action and its
//! confirmation. A CALL from the CSMS becomes a [`Request`] through
//! [`Request::from_call`]; a failure carries the code of the CALLERROR to answer with
//! ([`PayloadError::reply`]), chosen by OCPP-J 1.6 §4.2.3: NotImplemented for an action
//! the spec does not know, NotSupported for one ringhub does not take, ProtocolError for
//! a missing field, FormationViolation for an unknown field, TypeConstraintViolation for
//! a wrong JSON type or a malformed date, PropertyConstraintViolation for an out-of-range
//! value (too long a string, an unknown enumeration value, a negative connector id), and
//! OccurenceConstraintViolation for an empty list the spec requires non-empty.

pub mod central_system;
pub mod charge_point;
pub mod meter;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rpc::{Call, CallResult, ErrorCode, Frame, MessageId};
use super::types::{CiString20, DateTime, PayloadError, decode_payload};
use central_system::{
    ChangeAvailabilityRequest, ChangeConfigurationRequest, ClearCacheRequest,
    GetConfigurationRequest, GetLocalListVersionRequest, RemoteStartTransactionRequest,
    RemoteStopTransactionRequest, ResetRequest, SendLocalListRequest, TriggerMessageRequest,
    UnlockConnectorRequest,
};
use charge_point::DataTransferRequest;

/// A request type: its action name and the confirmation it is answered with.
pub trait OcppCall: Serialize + DeserializeOwned {
    /// The action name in the CALL frame.
    const ACTION: &'static str;
    /// The confirmation's payload type.
    type Response: Serialize + DeserializeOwned;

    /// This request as a CALL with message id `id`.
    fn to_call(&self, id: MessageId) -> Frame {
        Frame::Call(Call {
            id,
            action: Self::ACTION.to_owned(),
            payload: to_payload(self),
        })
    }

    /// Decodes a CALLRESULT's payload as this request's confirmation.
    fn decode_response(payload: &Value) -> Result<Self::Response, PayloadError> {
        decode_payload(payload)
    }
}

/// The CALLRESULT answering the CALL `id` with `response`.
pub fn call_result<R: Serialize>(id: MessageId, response: &R) -> Frame {
    Frame::CallResult(CallResult {
        id,
        payload: to_payload(response),
    })
}

/// Encodes a payload. The message types are plain structs with string keys and finite
/// fields, which serde_json always encodes.
fn to_payload<T: Serialize + ?Sized>(payload: &T) -> Value {
    serde_json::to_value(payload).expect("OCPP payload types always encode")
}

/// The status of an idTag (§7.2 AuthorizationStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthorizationStatus {
    /// Allowed to charge.
    Accepted,
    /// Blocked.
    Blocked,
    /// Expired.
    Expired,
    /// Unknown.
    Invalid,
    /// Already in another transaction, where concurrent transactions are not allowed.
    #[serde(rename = "ConcurrentTx")]
    ConcurrentTx,
}

/// What the CSMS says about an idTag (§7.30 IdTagInfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdTagInfo {
    /// Until when the idTag may be cached as authorised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_date: Option<DateTime>,
    /// The group the idTag belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id_tag: Option<CiString20>,
    /// Whether it may charge.
    pub status: AuthorizationStatus,
}

/// The OCPP 1.6 actions ringhub recognises but does not take from the CSMS: the optional
/// profiles it does not implement (Reservation, Smart Charging, Firmware Management) and
/// the calls only a charge point sends. They are answered with NotSupported.
const NOT_SUPPORTED: &[&str] = &[
    "Authorize",
    "BootNotification",
    "CancelReservation",
    "ClearChargingProfile",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "GetCompositeSchedule",
    "GetDiagnostics",
    "Heartbeat",
    "MeterValues",
    "ReserveNow",
    "SetChargingProfile",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
    "UpdateFirmware",
];

/// A call from the CSMS that ringhub answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// ChangeAvailability.req.
    ChangeAvailability(ChangeAvailabilityRequest),
    /// ChangeConfiguration.req.
    ChangeConfiguration(ChangeConfigurationRequest),
    /// ClearCache.req.
    ClearCache(ClearCacheRequest),
    /// DataTransfer.req.
    DataTransfer(DataTransferRequest),
    /// GetConfiguration.req.
    GetConfiguration(GetConfigurationRequest),
    /// GetLocalListVersion.req.
    GetLocalListVersion(GetLocalListVersionRequest),
    /// RemoteStartTransaction.req.
    RemoteStartTransaction(RemoteStartTransactionRequest),
    /// RemoteStopTransaction.req.
    RemoteStopTransaction(RemoteStopTransactionRequest),
    /// Reset.req.
    Reset(ResetRequest),
    /// SendLocalList.req.
    SendLocalList(SendLocalListRequest),
    /// TriggerMessage.req.
    TriggerMessage(TriggerMessageRequest),
    /// UnlockConnector.req.
    UnlockConnector(UnlockConnectorRequest),
}

impl Request {
    /// Decodes the payload of a CALL for `action`.
    pub fn parse(action: &str, payload: &Value) -> Result<Self, PayloadError> {
        Ok(match action {
            ChangeAvailabilityRequest::ACTION => Self::ChangeAvailability(decode_payload(payload)?),
            ChangeConfigurationRequest::ACTION => {
                Self::ChangeConfiguration(decode_payload(payload)?)
            }
            ClearCacheRequest::ACTION => Self::ClearCache(decode_payload(payload)?),
            DataTransferRequest::ACTION => Self::DataTransfer(decode_payload(payload)?),
            GetConfigurationRequest::ACTION => Self::GetConfiguration(decode_payload(payload)?),
            GetLocalListVersionRequest::ACTION => {
                Self::GetLocalListVersion(decode_payload(payload)?)
            }
            RemoteStartTransactionRequest::ACTION => {
                Self::RemoteStartTransaction(decode_payload(payload)?)
            }
            RemoteStopTransactionRequest::ACTION => {
                Self::RemoteStopTransaction(decode_payload(payload)?)
            }
            ResetRequest::ACTION => Self::Reset(decode_payload(payload)?),
            SendLocalListRequest::ACTION => Self::SendLocalList(decode_payload(payload)?),
            TriggerMessageRequest::ACTION => Self::TriggerMessage(decode_payload(payload)?),
            UnlockConnectorRequest::ACTION => Self::UnlockConnector(decode_payload(payload)?),
            other if NOT_SUPPORTED.contains(&other) => {
                return Err(PayloadError::new(
                    ErrorCode::NotSupported,
                    format!("{other} is not supported by this charge point"),
                ));
            }
            other => {
                return Err(PayloadError::new(
                    ErrorCode::NotImplemented,
                    format!("unknown action {other:?}"),
                ));
            }
        })
    }

    /// Decodes a CALL's payload for its action.
    pub fn from_call(call: &Call) -> Result<Self, PayloadError> {
        Self::parse(&call.action, &call.payload)
    }

    /// The request's action name.
    pub fn action(&self) -> &'static str {
        match self {
            Self::ChangeAvailability(_) => ChangeAvailabilityRequest::ACTION,
            Self::ChangeConfiguration(_) => ChangeConfigurationRequest::ACTION,
            Self::ClearCache(_) => ClearCacheRequest::ACTION,
            Self::DataTransfer(_) => DataTransferRequest::ACTION,
            Self::GetConfiguration(_) => GetConfigurationRequest::ACTION,
            Self::GetLocalListVersion(_) => GetLocalListVersionRequest::ACTION,
            Self::RemoteStartTransaction(_) => RemoteStartTransactionRequest::ACTION,
            Self::RemoteStopTransaction(_) => RemoteStopTransactionRequest::ACTION,
            Self::Reset(_) => ResetRequest::ACTION,
            Self::SendLocalList(_) => SendLocalListRequest::ACTION,
            Self::TriggerMessage(_) => TriggerMessageRequest::ACTION,
            Self::UnlockConnector(_) => UnlockConnectorRequest::ACTION,
        }
    }
}

#[cfg(test)]
mod tests;
