//! The calls a charge point initiates (OCPP 1.6 §4) and their confirmations:
//! Authorize, BootNotification, DataTransfer (also sent by the CSMS), Heartbeat,
//! MeterValues, StartTransaction, StatusNotification and StopTransaction.

use serde::{Deserialize, Serialize};

use super::meter::{MeterValue, non_empty};
use super::{IdTagInfo, OcppCall};
use crate::ocpp::types::{CiString20, CiString25, CiString50, CiString255, DateTime};

/// Authorize.req (§6.1): may this idTag charge?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The token presented.
    pub id_tag: CiString20,
}

/// Authorize.conf (§6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizeResponse {
    /// The CSMS's verdict on the token.
    pub id_tag_info: IdTagInfo,
}

impl OcppCall for AuthorizeRequest {
    const ACTION: &'static str = "Authorize";
    type Response = AuthorizeResponse;
}

/// BootNotification.req (§6.3): who this charge point is, sent after every boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootNotificationRequest {
    /// Vendor of the charge point.
    pub charge_point_vendor: CiString20,
    /// Model of the charge point.
    pub charge_point_model: CiString20,
    /// Serial number of the charge point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_point_serial_number: Option<CiString25>,
    /// Serial number of the charge box (deprecated by the spec, still in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_box_serial_number: Option<CiString25>,
    /// Firmware version of the main controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<CiString50>,
    /// ICCID of the modem's SIM card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iccid: Option<CiString20>,
    /// IMSI of the modem's SIM card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imsi: Option<CiString20>,
    /// Type of the main energy meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_type: Option<CiString25>,
    /// Serial number of the main energy meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_serial_number: Option<CiString25>,
}

/// The CSMS's answer to a BootNotification (§7.44 RegistrationStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegistrationStatus {
    /// Registered: heartbeat at `interval`.
    Accepted,
    /// Not yet: retry the BootNotification after `interval`, answer CSMS calls meanwhile.
    Pending,
    /// Refused: retry after `interval`, send nothing else.
    Rejected,
}

/// BootNotification.conf (§6.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootNotificationResponse {
    /// Whether the charge point is registered.
    pub status: RegistrationStatus,
    /// The CSMS's clock, to set ours by.
    pub current_time: DateTime,
    /// Seconds: the heartbeat interval if accepted, else the retry delay.
    pub interval: i32,
}

impl OcppCall for BootNotificationRequest {
    const ACTION: &'static str = "BootNotification";
    type Response = BootNotificationResponse;
}

/// DataTransfer.req (§6.17, §6.18 for the CSMS side): a vendor-specific exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataTransferRequest {
    /// Identifies the vendor-specific implementation.
    pub vendor_id: CiString255,
    /// Identifies the message within the vendor's implementation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<CiString50>,
    /// Free text, without length limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// How a DataTransfer was received (§7.18 DataTransferStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataTransferStatus {
    /// Accepted.
    Accepted,
    /// Rejected.
    Rejected,
    /// The messageId is not known to the receiver.
    UnknownMessageId,
    /// The vendorId is not known to the receiver.
    UnknownVendorId,
}

/// DataTransfer.conf (§6.19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataTransferResponse {
    /// How the request was received.
    pub status: DataTransferStatus,
    /// Free text in answer, without length limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl OcppCall for DataTransferRequest {
    const ACTION: &'static str = "DataTransfer";
    type Response = DataTransferResponse;
}

/// Heartbeat.req (§6.27): an empty keep-alive that also fetches the CSMS's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {}

/// Heartbeat.conf (§6.28).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatResponse {
    /// The CSMS's clock.
    pub current_time: DateTime,
}

impl OcppCall for HeartbeatRequest {
    const ACTION: &'static str = "Heartbeat";
    type Response = HeartbeatResponse;
}

/// MeterValues.req (§6.31): readings of one connector, in or out of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeterValuesRequest {
    /// The connector (0 for the main meter).
    pub connector_id: u32,
    /// The transaction the readings belong to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<i32>,
    /// The readings, at least one instant.
    #[serde(deserialize_with = "non_empty")]
    pub meter_value: Vec<MeterValue>,
}

/// MeterValues.conf (§6.32): empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterValuesResponse {}

impl OcppCall for MeterValuesRequest {
    const ACTION: &'static str = "MeterValues";
    type Response = MeterValuesResponse;
}

/// StartTransaction.req (§6.45): a transaction started on a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartTransactionRequest {
    /// The connector, > 0.
    pub connector_id: u32,
    /// The token the transaction was started with.
    pub id_tag: CiString20,
    /// The meter register at the start, in Wh.
    pub meter_start: i32,
    /// The reservation this transaction ends, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<i32>,
    /// When it started.
    pub timestamp: DateTime,
}

/// StartTransaction.conf (§6.46).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartTransactionResponse {
    /// The CSMS's verdict on the token.
    pub id_tag_info: IdTagInfo,
    /// The id the CSMS gave the transaction.
    pub transaction_id: i32,
}

impl OcppCall for StartTransactionRequest {
    const ACTION: &'static str = "StartTransaction";
    type Response = StartTransactionResponse;
}

/// A connector's or the charge point's error (§7.6 ChargePointErrorCode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChargePointErrorCode {
    /// The connector lock failed.
    ConnectorLockFailure,
    /// Communication with the EV failed (e.g. the control pilot or HLC).
    #[serde(rename = "EVCommunicationError")]
    EvCommunicationError,
    /// A ground fault circuit interrupter tripped.
    GroundFailure,
    /// The temperature inside the charge point is too high.
    HighTemperature,
    /// A software or hardware error inside the charge point.
    InternalError,
    /// The idTag's authorization conflicts with the Local Authorization List.
    LocalListConflict,
    /// No error.
    NoError,
    /// Another error; see vendorErrorCode.
    OtherError,
    /// Over-current protection tripped.
    OverCurrentFailure,
    /// The input voltage is too high.
    OverVoltage,
    /// The power meter failed.
    PowerMeterFailure,
    /// A contactor or relay failed.
    PowerSwitchFailure,
    /// The idTag reader failed.
    ReaderFailure,
    /// A reset could not be carried out.
    ResetFailure,
    /// The input voltage is too low.
    UnderVoltage,
    /// The wireless signal is too weak.
    WeakSignal,
}

/// A connector's or the charge point's status (§7.7 ChargePointStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChargePointStatus {
    /// Free for a new user.
    Available,
    /// Plugged in or token presented, no transaction yet.
    Preparing,
    /// Energy flows to the EV.
    Charging,
    /// The EV may charge but the charger offers no energy.
    #[serde(rename = "SuspendedEVSE")]
    SuspendedEvse,
    /// The charger offers energy but the EV draws none.
    #[serde(rename = "SuspendedEV")]
    SuspendedEv,
    /// The transaction has stopped; the connector is not yet free.
    Finishing,
    /// Reserved by ReserveNow.
    Reserved,
    /// Not available for charging (ChangeAvailability Inoperative).
    Unavailable,
    /// In an error state.
    Faulted,
}

/// StatusNotification.req (§6.47): a status change of a connector or the charge point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusNotificationRequest {
    /// The connector, or 0 for the charge point's main controller.
    pub connector_id: u32,
    /// The error, NoError when there is none.
    pub error_code: ChargePointErrorCode,
    /// Free-form information about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<CiString50>,
    /// The new status.
    pub status: ChargePointStatus,
    /// When the status was reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime>,
    /// Identifies the vendor of `vendor_error_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<CiString255>,
    /// The vendor's own error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_error_code: Option<CiString50>,
}

/// StatusNotification.conf (§6.48): empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusNotificationResponse {}

impl OcppCall for StatusNotificationRequest {
    const ACTION: &'static str = "StatusNotification";
    type Response = StatusNotificationResponse;
}

/// Why a transaction stopped (§7.39 Reason); absent means Local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The deauthorization of the token (e.g. a StartTransaction.conf not Accepted).
    DeAuthorized,
    /// The emergency stop button was pressed.
    EmergencyStop,
    /// The cable was unplugged at the EV.
    #[serde(rename = "EVDisconnected")]
    EvDisconnected,
    /// A hard reset.
    HardReset,
    /// Stopped locally by the user (the default).
    Local,
    /// Any other reason.
    Other,
    /// Complete loss of power.
    PowerLoss,
    /// A reboot not commanded by a Reset.
    Reboot,
    /// Stopped by RemoteStopTransaction.
    Remote,
    /// A soft reset.
    SoftReset,
    /// Stopped by UnlockConnector.
    UnlockCommand,
}

/// StopTransaction.req (§6.49): a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopTransactionRequest {
    /// The token that stopped it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_tag: Option<CiString20>,
    /// The meter register at the stop, in Wh.
    pub meter_stop: i32,
    /// When it stopped.
    pub timestamp: DateTime,
    /// The id from the StartTransaction.conf.
    pub transaction_id: i32,
    /// Why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Transaction-related readings (StopTxnSampledData / StopTxnAlignedData).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_data: Option<Vec<MeterValue>>,
}

/// StopTransaction.conf (§6.50).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopTransactionResponse {
    /// The CSMS's verdict on the stopping token, when one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_tag_info: Option<IdTagInfo>,
}

impl OcppCall for StopTransactionRequest {
    const ACTION: &'static str = "StopTransaction";
    type Response = StopTransactionResponse;
}
