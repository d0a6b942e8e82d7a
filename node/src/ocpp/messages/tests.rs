//! Every message round-trips through its wire form; bad payloads earn the right
//! CALLERROR code. The examples follow the OCPP 1.6J schemas field by field.

use serde_json::{Value, json};

use super::central_system::*;
use super::charge_point::*;
use super::*;
use crate::ocpp::rpc::{MessageId, MessageIds, SequentialIds};

/// Decodes `request` and `response` as `T` and its confirmation, and checks that both
/// encode back to the same JSON.
fn round_trip<T: OcppCall + std::fmt::Debug>(request: Value, response: Value) -> (T, T::Response) {
    let req: T = decode_payload(&request).unwrap_or_else(|e| panic!("{}: {e}", T::ACTION));
    assert_eq!(
        serde_json::to_value(&req).unwrap(),
        request,
        "{}",
        T::ACTION
    );
    let conf = T::decode_response(&response).unwrap_or_else(|e| panic!("{}.conf: {e}", T::ACTION));
    assert_eq!(
        serde_json::to_value(&conf).unwrap(),
        response,
        "{}.conf",
        T::ACTION
    );
    (req, conf)
}

#[test]
fn authorize_round_trips() {
    let (req, conf) = round_trip::<AuthorizeRequest>(
        json!({"idTag": "04E91C5A123456"}),
        json!({"idTagInfo": {"expiryDate": "2024-06-01T00:00:00Z", "parentIdTag": "FLEET-7", "status": "Accepted"}}),
    );
    assert_eq!(req.id_tag.as_str(), "04E91C5A123456");
    assert_eq!(conf.id_tag_info.status, AuthorizationStatus::Accepted);
    for status in ["Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"] {
        round_trip::<AuthorizeRequest>(
            json!({"idTag": "A"}),
            json!({"idTagInfo": {"status": status}}),
        );
    }
}

#[test]
fn boot_notification_round_trips() {
    let (req, conf) = round_trip::<BootNotificationRequest>(
        json!({
            "chargePointVendor": "Ringhub",
            "chargePointModel": "RH-DC-4x150",
            "chargePointSerialNumber": "RH-2024-000117",
            "chargeBoxSerialNumber": "CB-000117",
            "firmwareVersion": "0.1.0",
            "iccid": "8931440400012345678",
            "imsi": "204043012345678",
            "meterType": "DC shunt",
            "meterSerialNumber": "SH-99812"
        }),
        json!({"status": "Accepted", "currentTime": "2024-05-01T10:00:00.000Z", "interval": 300}),
    );
    assert_eq!(req.charge_point_model.as_str(), "RH-DC-4x150");
    assert_eq!(conf.status, RegistrationStatus::Accepted);
    assert_eq!(conf.current_time.unix_millis(), 1_714_557_600_000);
    let (_, conf) = round_trip::<BootNotificationRequest>(
        json!({"chargePointVendor": "Ringhub", "chargePointModel": "RH"}),
        json!({"status": "Pending", "currentTime": "2024-05-01T10:00:00Z", "interval": 60}),
    );
    assert_eq!(conf.status, RegistrationStatus::Pending);
}

#[test]
fn data_transfer_round_trips() {
    for status in [
        "Accepted",
        "Rejected",
        "UnknownMessageId",
        "UnknownVendorId",
    ] {
        round_trip::<DataTransferRequest>(
            json!({"vendorId": "com.ringhub", "messageId": "islandPlan", "data": "{\"epoch\":7}"}),
            json!({"status": status, "data": "ok"}),
        );
    }
    round_trip::<DataTransferRequest>(
        json!({"vendorId": "com.ringhub"}),
        json!({"status": "Rejected"}),
    );
    let request = Request::parse("DataTransfer", &json!({"vendorId": "x"})).unwrap();
    assert_eq!(request.action(), "DataTransfer");
}

#[test]
fn heartbeat_round_trips() {
    let (_, conf) = round_trip::<HeartbeatRequest>(
        json!({}),
        json!({"currentTime": "2024-05-01T10:05:00+02:00"}),
    );
    assert_eq!(conf.current_time.unix_millis(), 1_714_550_700_000);
}

#[test]
fn meter_values_round_trip() {
    let (req, _) = round_trip::<MeterValuesRequest>(
        json!({
            "connectorId": 1,
            "transactionId": 170,
            "meterValue": [{
                "timestamp": "2024-05-01T10:01:00Z",
                "sampledValue": [
                    {"value": "1520", "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": "98.4", "context": "Sample.Periodic", "measurand": "Current.Import", "unit": "A"},
                    {"value": "150000", "measurand": "Power.Offered", "unit": "W"},
                    {"value": "45", "measurand": "SoC", "location": "EV", "unit": "Percent"},
                    {"value": "38.5", "measurand": "Temperature", "location": "Body", "unit": "Celsius"}
                ]
            }]
        }),
        json!({}),
    );
    assert_eq!(req.transaction_id, Some(170));
    let err = decode_payload::<MeterValuesRequest>(&json!({"connectorId": 1, "meterValue": []}))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::OccurenceConstraintViolation);
}

#[test]
fn start_transaction_round_trips() {
    let (req, conf) = round_trip::<StartTransactionRequest>(
        json!({"connectorId": 2, "idTag": "04E91C5A123456", "meterStart": 0, "reservationId": 4, "timestamp": "2024-05-01T10:00:01.250Z"}),
        json!({"idTagInfo": {"status": "Accepted"}, "transactionId": 170}),
    );
    assert_eq!(req.connector_id, 2);
    assert_eq!(conf.transaction_id, 170);
}

#[test]
fn status_notification_round_trips() {
    round_trip::<StatusNotificationRequest>(
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Preparing", "timestamp": "2024-05-01T09:59:58Z"}),
        json!({}),
    );
    let (req, _) = round_trip::<StatusNotificationRequest>(
        json!({
            "connectorId": 0,
            "errorCode": "PowerSwitchFailure",
            "info": "welded gun contactor",
            "status": "Faulted",
            "timestamp": "2024-05-01T09:59:58Z",
            "vendorId": "com.ringhub",
            "vendorErrorCode": "S9-GC-WELD"
        }),
        json!({}),
    );
    assert_eq!(req.error_code, ChargePointErrorCode::PowerSwitchFailure);
    let statuses = [
        (ChargePointStatus::Available, "Available"),
        (ChargePointStatus::Preparing, "Preparing"),
        (ChargePointStatus::Charging, "Charging"),
        (ChargePointStatus::SuspendedEvse, "SuspendedEVSE"),
        (ChargePointStatus::SuspendedEv, "SuspendedEV"),
        (ChargePointStatus::Finishing, "Finishing"),
        (ChargePointStatus::Reserved, "Reserved"),
        (ChargePointStatus::Unavailable, "Unavailable"),
        (ChargePointStatus::Faulted, "Faulted"),
    ];
    for (status, spelling) in statuses {
        assert_eq!(json!(status), spelling);
    }
    let codes = [
        "ConnectorLockFailure",
        "EVCommunicationError",
        "GroundFailure",
        "HighTemperature",
        "InternalError",
        "LocalListConflict",
        "NoError",
        "OtherError",
        "OverCurrentFailure",
        "PowerMeterFailure",
        "PowerSwitchFailure",
        "ReaderFailure",
        "ResetFailure",
        "UnderVoltage",
        "OverVoltage",
        "WeakSignal",
    ];
    for code in codes {
        let parsed: ChargePointErrorCode = serde_json::from_value(json!(code)).unwrap();
        assert_eq!(json!(parsed), code);
    }
    assert_eq!(
        json!(ChargePointErrorCode::EvCommunicationError),
        "EVCommunicationError"
    );
}

#[test]
fn stop_transaction_round_trips() {
    let (req, _) = round_trip::<StopTransactionRequest>(
        json!({
            "idTag": "04E91C5A123456",
            "meterStop": 23500,
            "timestamp": "2024-05-01T10:40:00Z",
            "transactionId": 170,
            "reason": "EVDisconnected",
            "transactionData": [
                {"timestamp": "2024-05-01T10:00:01Z", "sampledValue": [{"value": "0", "context": "Transaction.Begin"}]},
                {"timestamp": "2024-05-01T10:40:00Z", "sampledValue": [{"value": "23500", "context": "Transaction.End"}]}
            ]
        }),
        json!({"idTagInfo": {"status": "Accepted"}}),
    );
    assert_eq!(req.reason, Some(Reason::EvDisconnected));
    round_trip::<StopTransactionRequest>(
        json!({"meterStop": 0, "timestamp": "2024-05-01T10:40:00Z", "transactionId": -1}),
        json!({}),
    );
    let reasons = [
        "EmergencyStop",
        "EVDisconnected",
        "HardReset",
        "Local",
        "Other",
        "PowerLoss",
        "Reboot",
        "Remote",
        "SoftReset",
        "UnlockCommand",
        "DeAuthorized",
    ];
    for reason in reasons {
        let parsed: Reason = serde_json::from_value(json!(reason)).unwrap();
        assert_eq!(json!(parsed), reason);
    }
}

#[test]
fn change_availability_round_trips() {
    for (kind, status) in [
        ("Inoperative", "Scheduled"),
        ("Operative", "Accepted"),
        ("Operative", "Rejected"),
    ] {
        round_trip::<ChangeAvailabilityRequest>(
            json!({"connectorId": 0, "type": kind}),
            json!({"status": status}),
        );
    }
}

#[test]
fn change_configuration_round_trips() {
    for status in ["Accepted", "Rejected", "RebootRequired", "NotSupported"] {
        round_trip::<ChangeConfigurationRequest>(
            json!({"key": "MeterValueSampleInterval", "value": "60"}),
            json!({"status": status}),
        );
    }
}

#[test]
fn clear_cache_round_trips() {
    round_trip::<ClearCacheRequest>(json!({}), json!({"status": "Accepted"}));
}

#[test]
fn get_configuration_round_trips() {
    round_trip::<GetConfigurationRequest>(json!({}), json!({}));
    let (req, conf) = round_trip::<GetConfigurationRequest>(
        json!({"key": ["HeartbeatInterval", "NoSuchKey"]}),
        json!({
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": false, "value": "300"},
                {"key": "NumberOfConnectors", "readonly": true, "value": "4"},
                {"key": "AuthorizationKey", "readonly": false}
            ],
            "unknownKey": ["NoSuchKey"]
        }),
    );
    assert_eq!(req.key.map(|k| k.len()), Some(2));
    assert_eq!(conf.configuration_key.map(|k| k[1].readonly), Some(true));
}

#[test]
fn get_local_list_version_round_trips() {
    round_trip::<GetLocalListVersionRequest>(json!({}), json!({"listVersion": -1}));
}

#[test]
fn remote_start_transaction_round_trips() {
    round_trip::<RemoteStartTransactionRequest>(
        json!({"idTag": "APP-5512"}),
        json!({"status": "Rejected"}),
    );
    let (req, _) = round_trip::<RemoteStartTransactionRequest>(
        json!({
            "connectorId": 1,
            "idTag": "APP-5512",
            "chargingProfile": {
                "chargingProfileId": 12,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "recurrencyKind": "Daily",
                "validFrom": "2024-05-01T00:00:00Z",
                "validTo": "2024-06-01T00:00:00Z",
                "chargingSchedule": {
                    "duration": 3600,
                    "startSchedule": "2024-05-01T10:00:00Z",
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 50000.0, "numberPhases": 3},
                        {"startPeriod": 1800, "limit": 22000.5}
                    ],
                    "minChargingRate": 1000.0
                }
            }
        }),
        json!({"status": "Accepted"}),
    );
    let profile = req.charging_profile.unwrap();
    assert_eq!(
        profile.charging_profile_purpose,
        ChargingProfilePurpose::TxProfile
    );
    assert_eq!(
        profile.charging_schedule.charging_schedule_period[1].limit,
        22000.5
    );
}

#[test]
fn remote_stop_transaction_round_trips() {
    round_trip::<RemoteStopTransactionRequest>(
        json!({"transactionId": 170}),
        json!({"status": "Accepted"}),
    );
}

#[test]
fn reset_round_trips() {
    let (req, _) =
        round_trip::<ResetRequest>(json!({"type": "Hard"}), json!({"status": "Accepted"}));
    assert_eq!(req.kind, ResetType::Hard);
    round_trip::<ResetRequest>(json!({"type": "Soft"}), json!({"status": "Rejected"}));
}

#[test]
fn send_local_list_round_trips() {
    for status in ["Accepted", "Failed", "NotSupported", "VersionMismatch"] {
        round_trip::<SendLocalListRequest>(
            json!({
                "listVersion": 3,
                "localAuthorizationList": [
                    {"idTag": "04E91C5A123456", "idTagInfo": {"status": "Accepted", "expiryDate": "2025-01-01T00:00:00Z"}},
                    {"idTag": "0BADC0FFEE"}
                ],
                "updateType": "Differential"
            }),
            json!({"status": status}),
        );
    }
    round_trip::<SendLocalListRequest>(
        json!({"listVersion": 0, "updateType": "Full"}),
        json!({"status": "Accepted"}),
    );
}

#[test]
fn trigger_message_round_trips() {
    let messages = [
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    ];
    for (message, status) in messages.into_iter().zip(
        ["Accepted", "Rejected", "NotImplemented"]
            .into_iter()
            .cycle(),
    ) {
        round_trip::<TriggerMessageRequest>(
            json!({"requestedMessage": message, "connectorId": 1}),
            json!({"status": status}),
        );
    }
    round_trip::<TriggerMessageRequest>(
        json!({"requestedMessage": "Heartbeat"}),
        json!({"status": "Accepted"}),
    );
}

#[test]
fn unlock_connector_round_trips() {
    for status in ["Unlocked", "UnlockFailed", "NotSupported"] {
        round_trip::<UnlockConnectorRequest>(json!({"connectorId": 1}), json!({"status": status}));
    }
}

#[test]
fn every_csms_action_parses_into_its_request() {
    let calls = [
        (
            "ChangeAvailability",
            json!({"connectorId": 1, "type": "Inoperative"}),
        ),
        (
            "ChangeConfiguration",
            json!({"key": "HeartbeatInterval", "value": "120"}),
        ),
        ("ClearCache", json!({})),
        ("DataTransfer", json!({"vendorId": "com.ringhub"})),
        ("GetConfiguration", json!({"key": ["HeartbeatInterval"]})),
        ("GetLocalListVersion", json!({})),
        ("RemoteStartTransaction", json!({"idTag": "APP-5512"})),
        ("RemoteStopTransaction", json!({"transactionId": 170})),
        ("Reset", json!({"type": "Soft"})),
        (
            "SendLocalList",
            json!({"listVersion": 1, "updateType": "Full"}),
        ),
        (
            "TriggerMessage",
            json!({"requestedMessage": "StatusNotification"}),
        ),
        ("UnlockConnector", json!({"connectorId": 2})),
    ];
    for (action, payload) in calls {
        let request = Request::parse(action, &payload).unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(request.action(), action);
    }
    let request = Request::parse("Reset", &json!({"type": "Hard"})).unwrap();
    assert_eq!(
        request,
        Request::Reset(ResetRequest {
            kind: ResetType::Hard
        })
    );
}

#[test]
fn unknown_and_unsupported_actions() {
    let err = Request::parse("BrewCoffee", &json!({})).unwrap_err();
    assert_eq!(err.code, ErrorCode::NotImplemented);
    for action in [
        "ReserveNow",
        "SetChargingProfile",
        "UpdateFirmware",
        "Heartbeat",
    ] {
        assert_eq!(
            Request::parse(action, &json!({})).unwrap_err().code,
            ErrorCode::NotSupported,
            "{action}"
        );
    }
}

#[test]
fn bad_payloads_earn_their_error_codes() {
    let cases = [
        // A required field missing: the payload is incomplete.
        ("Reset", json!({}), ErrorCode::ProtocolError),
        ("RemoteStopTransaction", json!({}), ErrorCode::ProtocolError),
        // A field the schema does not have (additionalProperties false).
        (
            "Reset",
            json!({"type": "Hard", "when": "now"}),
            ErrorCode::FormationViolation,
        ),
        (
            "ClearCache",
            json!({"all": true}),
            ErrorCode::FormationViolation,
        ),
        (
            "GetLocalListVersion",
            json!({"x": 1}),
            ErrorCode::FormationViolation,
        ),
        (
            "RemoteStartTransaction",
            json!({"idTag": "A", "chargingProfile": {
            "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative", "priority": 1,
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": []}}}),
            ErrorCode::FormationViolation,
        ),
        // The wrong JSON type.
        (
            "RemoteStopTransaction",
            json!({"transactionId": "170"}),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            "UnlockConnector",
            json!({"connectorId": 1.5}),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            "GetConfiguration",
            json!({"key": "HeartbeatInterval"}),
            ErrorCode::TypeConstraintViolation,
        ),
        (
            "SendLocalList",
            json!({"listVersion": 1, "updateType": "Full",
            "localAuthorizationList": [{"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": "tomorrow"}}]}),
            ErrorCode::TypeConstraintViolation,
        ),
        // A value outside what the field allows.
        (
            "Reset",
            json!({"type": "Medium"}),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            "UnlockConnector",
            json!({"connectorId": -1}),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            "ChangeConfiguration",
            json!({"key": "K".repeat(51), "value": "1"}),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            "ChangeConfiguration",
            json!({"key": "K", "value": "v".repeat(501)}),
            ErrorCode::PropertyConstraintViolation,
        ),
        (
            "DataTransfer",
            json!({"vendorId": "v".repeat(256)}),
            ErrorCode::PropertyConstraintViolation,
        ),
    ];
    for (action, payload, code) in cases {
        let err = Request::parse(action, &payload).unwrap_err();
        assert_eq!(err.code, code, "{action} {payload}: {err}");
    }
}

#[test]
fn id_tag_of_21_characters_is_rejected() {
    let twenty = "0123456789ABCDEFGHIJ";
    let twenty_one = "0123456789ABCDEFGHIJK";
    assert!(Request::parse("RemoteStartTransaction", &json!({"idTag": twenty})).is_ok());
    let err = Request::parse("RemoteStartTransaction", &json!({"idTag": twenty_one})).unwrap_err();
    assert_eq!(err.code, ErrorCode::PropertyConstraintViolation);
    let err = decode_payload::<AuthorizeRequest>(&json!({"idTag": twenty_one})).unwrap_err();
    assert_eq!(err.code, ErrorCode::PropertyConstraintViolation);
    let list = json!({"listVersion": 1, "updateType": "Full", "localAuthorizationList": [
        {"idTag": twenty, "idTagInfo": {"status": "Accepted", "parentIdTag": twenty_one}}]});
    assert_eq!(
        Request::parse("SendLocalList", &list).unwrap_err().code,
        ErrorCode::PropertyConstraintViolation
    );
    assert!(CiString20::new(twenty_one).is_err());
}

#[test]
fn unknown_fields_are_rejected_in_confirmations_too() {
    let err = BootNotificationRequest::decode_response(&json!({
        "status": "Accepted", "currentTime": "2024-05-01T10:00:00Z", "interval": 300, "retry": 1
    }))
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::FormationViolation);
    let err = StartTransactionRequest::decode_response(&json!({
        "idTagInfo": {"status": "Accepted", "groupId": "x"}, "transactionId": 1
    }))
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::FormationViolation);
    let err = StatusNotificationRequest::decode_response(&json!({"ok": true})).unwrap_err();
    assert_eq!(err.code, ErrorCode::FormationViolation);
}

#[test]
fn calls_and_results_encode_as_frames() {
    let mut ids = SequentialIds::new(0x5eed);
    let request = StatusNotificationRequest {
        connector_id: 1,
        error_code: ChargePointErrorCode::NoError,
        info: None,
        status: ChargePointStatus::Preparing,
        timestamp: Some(DateTime::from_unix_millis(1_714_557_598_000)),
        vendor_id: None,
        vendor_error_code: None,
    };
    assert_eq!(
        request.to_call(ids.next_id()).encode(),
        r#"[2,"5eed-0","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Preparing","timestamp":"2024-05-01T09:59:58.000Z"}]"#
    );
    let id = MessageId::new("csms-42").unwrap();
    let reply = call_result(
        id,
        &ResetResponse {
            status: AcceptedRejected::Accepted,
        },
    );
    assert_eq!(reply.encode(), r#"[3,"csms-42",{"status":"Accepted"}]"#);
}

#[test]
fn a_csms_call_decodes_or_yields_its_callerror() {
    let Frame::Call(call) =
        Frame::parse(r#"[2,"c1","UnlockConnector",{"connectorId":2}]"#).unwrap()
    else {
        panic!("not a call")
    };
    assert_eq!(
        Request::from_call(&call),
        Ok(Request::UnlockConnector(UnlockConnectorRequest {
            connector_id: 2
        }))
    );
    let Frame::Call(call) =
        Frame::parse(r#"[2,"c2","GetDiagnostics",{"location":"ftp://x"}]"#).unwrap()
    else {
        panic!("not a call")
    };
    let Frame::CallError(reply) = Request::from_call(&call).unwrap_err().reply(call.id) else {
        panic!("not a CALLERROR")
    };
    assert_eq!(reply.id.as_str(), "c2");
    assert_eq!(reply.code, ErrorCode::NotSupported);
    let Frame::Call(call) = Frame::parse(r#"[2,"c3","Reset",{"type":"Warm"}]"#).unwrap() else {
        panic!("not a call")
    };
    let reply = Request::from_call(&call).unwrap_err().reply(call.id);
    assert!(
        reply
            .encode()
            .starts_with(r#"[4,"c3","PropertyConstraintViolation","#),
        "{}",
        reply.encode()
    );
}
