//! The calls the CSMS initiates (OCPP 1.6 §5) that ringhub answers, and their
//! confirmations: ChangeAvailability, ChangeConfiguration, ClearCache,
//! GetConfiguration, GetLocalListVersion, RemoteStartTransaction (with its optional
//! ChargingProfile, §7.8), RemoteStopTransaction, Reset, SendLocalList, TriggerMessage and
//! UnlockConnector. DataTransfer shares its types with the charge point's.

use serde::{Deserialize, Serialize};

use super::{IdTagInfo, OcppCall};
use crate::ocpp::types::{CiString20, CiString50, CiString500, DateTime};

/// Operative or Inoperative (§7.2 AvailabilityType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AvailabilityType {
    /// Not available for charging.
    Inoperative,
    /// Available for charging.
    Operative,
}

/// ChangeAvailability.req (§6.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeAvailabilityRequest {
    /// The connector, or 0 for the whole charge point.
    pub connector_id: u32,
    /// The availability to change to.
    #[serde(rename = "type")]
    pub kind: AvailabilityType,
}

/// The answer to a ChangeAvailability (§7.3 AvailabilityStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AvailabilityStatus {
    /// Changed.
    Accepted,
    /// Cannot be changed.
    Rejected,
    /// Will change when the running transaction ends.
    Scheduled,
}

/// ChangeAvailability.conf (§6.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeAvailabilityResponse {
    /// Whether and when the change happens.
    pub status: AvailabilityStatus,
}

impl OcppCall for ChangeAvailabilityRequest {
    const ACTION: &'static str = "ChangeAvailability";
    type Response = ChangeAvailabilityResponse;
}

/// ChangeConfiguration.req (§6.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeConfigurationRequest {
    /// The configuration key (§9).
    pub key: CiString50,
    /// Its new value, as text.
    pub value: CiString500,
}

/// The answer to a ChangeConfiguration (§7.9 ConfigurationStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfigurationStatus {
    /// Changed and in effect.
    Accepted,
    /// Not changed (read-only, or the value is invalid).
    Rejected,
    /// Changed, in effect after a reboot.
    RebootRequired,
    /// The key is not supported.
    NotSupported,
}

/// ChangeConfiguration.conf (§6.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeConfigurationResponse {
    /// Whether the change was made.
    pub status: ConfigurationStatus,
}

impl OcppCall for ChangeConfigurationRequest {
    const ACTION: &'static str = "ChangeConfiguration";
    type Response = ChangeConfigurationResponse;
}

/// ClearCache.req (§6.9): empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearCacheRequest {}

/// Accepted or Rejected: the answer to ClearCache, RemoteStart/StopTransaction and Reset
/// (§7.4 ClearCacheStatus, §7.38 RemoteStartStopStatus, §7.42 ResetStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AcceptedRejected {
    /// Will be or was done.
    Accepted,
    /// Will not be done.
    Rejected,
}

/// ClearCache.conf (§6.10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearCacheResponse {
    /// Whether the Authorization Cache was cleared.
    pub status: AcceptedRejected,
}

impl OcppCall for ClearCacheRequest {
    const ACTION: &'static str = "ClearCache";
    type Response = ClearCacheResponse;
}

/// GetConfiguration.req (§6.23).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetConfigurationRequest {
    /// The keys asked for; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<CiString50>>,
}

/// One configuration key and its value (§7.29 KeyValue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    /// The key's name.
    pub key: CiString50,
    /// Whether ChangeConfiguration may change it.
    pub readonly: bool,
    /// Its value, absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<CiString500>,
}

/// GetConfiguration.conf (§6.24).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetConfigurationResponse {
    /// The known keys asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_key: Option<Vec<KeyValue>>,
    /// The keys asked for that are not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_key: Option<Vec<CiString50>>,
}

impl OcppCall for GetConfigurationRequest {
    const ACTION: &'static str = "GetConfiguration";
    type Response = GetConfigurationResponse;
}

/// GetLocalListVersion.req (§6.25): empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetLocalListVersionRequest {}

/// GetLocalListVersion.conf (§6.26).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetLocalListVersionResponse {
    /// The list's version; 0 when the list is empty, -1 when lists are not supported.
    pub list_version: i32,
}

impl OcppCall for GetLocalListVersionRequest {
    const ACTION: &'static str = "GetLocalListVersion";
    type Response = GetLocalListVersionResponse;
}

/// What a charging profile is for (§7.13 ChargingProfilePurposeType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChargingProfilePurpose {
    /// A limit on the whole charge point.
    ChargePointMaxProfile,
    /// The default for new transactions.
    TxDefaultProfile,
    /// For one transaction; the only purpose RemoteStartTransaction allows.
    TxProfile,
}

/// How a schedule is anchored in time (§7.12 ChargingProfileKindType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChargingProfileKind {
    /// From `startSchedule`.
    Absolute,
    /// Repeating daily or weekly from `startSchedule`.
    Recurring,
    /// From the start of the transaction.
    Relative,
}

/// How a Recurring schedule repeats (§7.37 RecurrencyKindType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecurrencyKind {
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
}

/// The unit of a schedule's limits (§7.14 ChargingRateUnitType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChargingRateUnit {
    /// Amperes per phase.
    A,
    /// Watts.
    W,
}

/// One period of a schedule (§7.16 ChargingSchedulePeriod).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChargingSchedulePeriod {
    /// Seconds from the schedule's start.
    pub start_period: i32,
    /// The limit in the schedule's unit (one decimal).
    pub limit: f64,
    /// How many phases may be used; absent means 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_phases: Option<i32>,
}

/// A schedule of limits (§7.15 ChargingSchedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChargingSchedule {
    /// Seconds the schedule lasts; absent means until the transaction ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i32>,
    /// When an Absolute or Recurring schedule starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_schedule: Option<DateTime>,
    /// The unit of the limits.
    pub charging_rate_unit: ChargingRateUnit,
    /// The periods, in order of `start_period`.
    pub charging_schedule_period: Vec<ChargingSchedulePeriod>,
    /// The EV's minimum charging rate, in the schedule's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_charging_rate: Option<f64>,
}

/// A charging profile (§7.8 ChargingProfile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChargingProfile {
    /// The profile's id.
    pub charging_profile_id: i32,
    /// The transaction it is for (TxProfile only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<i32>,
    /// Priority among profiles of the same purpose; higher wins.
    pub stack_level: i32,
    /// What the profile is for.
    pub charging_profile_purpose: ChargingProfilePurpose,
    /// How its schedule is anchored.
    pub charging_profile_kind: ChargingProfileKind,
    /// How a Recurring schedule repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrency_kind: Option<RecurrencyKind>,
    /// When the profile becomes valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime>,
    /// When it stops being valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<DateTime>,
    /// The limits.
    pub charging_schedule: ChargingSchedule,
}

/// RemoteStartTransaction.req (§6.33).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteStartTransactionRequest {
    /// The connector to start on; absent lets the charge point choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_id: Option<u32>,
    /// The token to start the transaction with.
    pub id_tag: CiString20,
    /// Limits for the transaction (purpose TxProfile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charging_profile: Option<ChargingProfile>,
}

/// RemoteStartTransaction.conf (§6.34).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteStartTransactionResponse {
    /// Whether the charge point will try to start the transaction.
    pub status: AcceptedRejected,
}

impl OcppCall for RemoteStartTransactionRequest {
    const ACTION: &'static str = "RemoteStartTransaction";
    type Response = RemoteStartTransactionResponse;
}

/// RemoteStopTransaction.req (§6.35).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteStopTransactionRequest {
    /// The transaction to stop.
    pub transaction_id: i32,
}

/// RemoteStopTransaction.conf (§6.36).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteStopTransactionResponse {
    /// Whether the charge point will stop it.
    pub status: AcceptedRejected,
}

impl OcppCall for RemoteStopTransactionRequest {
    const ACTION: &'static str = "RemoteStopTransaction";
    type Response = RemoteStopTransactionResponse;
}

/// Hard or Soft (§7.43 ResetType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResetType {
    /// Restart the hardware, transactions or not.
    Hard,
    /// Stop transactions gracefully, then restart the software.
    Soft,
}

/// Reset.req (§6.37).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Which kind of reset.
    #[serde(rename = "type")]
    pub kind: ResetType,
}

/// Reset.conf (§6.38).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetResponse {
    /// Whether the charge point will reset.
    pub status: AcceptedRejected,
}

impl OcppCall for ResetRequest {
    const ACTION: &'static str = "Reset";
    type Response = ResetResponse;
}

/// One entry of a Local Authorization List (§7.1 AuthorizationData).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationData {
    /// The token.
    pub id_tag: CiString20,
    /// Its status; absent in a Differential update removes the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_tag_info: Option<IdTagInfo>,
}

/// Full or Differential (§7.46 UpdateType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpdateType {
    /// Apply the entries as changes to the current list.
    Differential,
    /// Replace the current list.
    Full,
}

/// SendLocalList.req (§6.39).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendLocalListRequest {
    /// The list's version after the update.
    pub list_version: i32,
    /// The entries; absent or empty with Full clears the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_authorization_list: Option<Vec<AuthorizationData>>,
    /// Full or Differential.
    pub update_type: UpdateType,
}

/// The answer to a SendLocalList (§7.50 UpdateStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpdateStatus {
    /// The list was updated.
    Accepted,
    /// The update failed.
    Failed,
    /// Local Authorization Lists are not supported.
    NotSupported,
    /// The version did not follow the current list's.
    VersionMismatch,
}

/// SendLocalList.conf (§6.40).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendLocalListResponse {
    /// Whether the list was updated.
    pub status: UpdateStatus,
}

impl OcppCall for SendLocalListRequest {
    const ACTION: &'static str = "SendLocalList";
    type Response = SendLocalListResponse;
}

/// The message TriggerMessage asks for (§7.34 MessageTrigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageTrigger {
    /// A BootNotification.
    BootNotification,
    /// A DiagnosticsStatusNotification.
    DiagnosticsStatusNotification,
    /// A FirmwareStatusNotification.
    FirmwareStatusNotification,
    /// A Heartbeat.
    Heartbeat,
    /// MeterValues of the connector.
    MeterValues,
    /// A StatusNotification of the connector.
    StatusNotification,
}

/// TriggerMessage.req (§6.51).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerMessageRequest {
    /// The message wanted.
    pub requested_message: MessageTrigger,
    /// The connector it is wanted for; absent means the charge point or all connectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_id: Option<u32>,
}

/// The answer to a TriggerMessage (§7.49 TriggerMessageStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TriggerMessageStatus {
    /// The message will be sent.
    Accepted,
    /// It will not be sent.
    Rejected,
    /// The requested message is not implemented.
    NotImplemented,
}

/// TriggerMessage.conf (§6.52).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerMessageResponse {
    /// Whether the message will be sent.
    pub status: TriggerMessageStatus,
}

impl OcppCall for TriggerMessageRequest {
    const ACTION: &'static str = "TriggerMessage";
    type Response = TriggerMessageResponse;
}

/// UnlockConnector.req (§6.53).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnlockConnectorRequest {
    /// The connector to unlock.
    pub connector_id: u32,
}

/// The answer to an UnlockConnector (§7.51 UnlockStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnlockStatus {
    /// Unlocked.
    Unlocked,
    /// The unlock failed.
    UnlockFailed,
    /// The connector has no lock.
    NotSupported,
}

/// UnlockConnector.conf (§6.54).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlockConnectorResponse {
    /// Whether the connector was unlocked.
    pub status: UnlockStatus,
}

impl OcppCall for UnlockConnectorRequest {
    const ACTION: &'static str = "UnlockConnector";
    type Response = UnlockConnectorResponse;
}
