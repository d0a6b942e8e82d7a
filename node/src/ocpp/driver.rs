//! The IO around [`ChargePoint`]: one tokio task per dispenser identity that owns the
//! sans-IO core and the WebSocket, and talks to the control task by messages only
//! (issue 6, first slice: boot, status, authorize).
//!
//! ```text
//!  control task ──DriverCommand (mpsc)──► driver task (per dispenser) ──text──► CSMS
//!       ▲   Status{gun,status,fault}       ChargePoint + Reconnector ◄─text───
//!       │   Authorize{gun,token}                 │
//!       └──────────── AuthResult (mpsc) ◄────────┘  Authorize.conf, or the local list
//! ```
//!
//! The control task never awaits the CSMS: it sends a command and goes on; the decision
//! of an Authorize comes back later as an [`AuthResult`] it selects on.
//!
//! The driver follows the core's contract (see [`super::charge_point`]): after every
//! input it sends what `poll_transmit` yields, handles what `poll_event` yields, and
//! sleeps until `poll_timeout`.
//!
//! - **Status** (OCPP 1.6 §4.9): the gun's [`ConnectorStatus`] maps one to one onto
//!   ChargePointStatus, on the gun's connector id. Faulted carries the
//!   ChargePointErrorCode of the node's fault (§7.6), its code as `vendorErrorCode` and
//!   its subject as `info`.
//! - **Authorize** (§4.1): IdTagInfo Accepted accepts; every other status rejects. When
//!   the CSMS cannot be asked (not connected, or no answer within the response timeout)
//!   the token is accepted only if LocalAuthorizeOffline is true and the cabinet's local
//!   list holds it (§3.4.4 "Local Authorization List").
//! - **CALLs from the CSMS** that need the node (remote start/stop, availability, reset,
//!   unlock, local list, cache, vendor data) are refused with the status the spec has for
//!   "not carried out" until the node implements them.

use std::collections::VecDeque;
use std::time::Instant;

use ringhub_proto::config::GunId;
use tokio::sync::{mpsc, watch};

use super::charge_point::{
    CallFailure, ChargePoint, Config, Confirmation, CsmsRequest, Event, OutgoingCall, StatusDetail,
};
use super::messages::AuthorizationStatus;
use super::messages::central_system::{
    AcceptedRejected, AvailabilityStatus, ChangeAvailabilityResponse, ClearCacheResponse,
    GetLocalListVersionResponse, RemoteStartTransactionResponse, RemoteStopTransactionResponse,
    ResetResponse, SendLocalListResponse, TriggerMessageResponse, TriggerMessageStatus,
    UnlockConnectorResponse, UnlockStatus, UpdateStatus,
};
use super::messages::charge_point::{
    BootNotificationRequest, ChargePointErrorCode, ChargePointStatus, DataTransferResponse,
    DataTransferStatus,
};
use super::rpc::{Frame, SequentialIds};
use super::transport::{Connection, Reconnector, TransportConfig};
use super::types::{CiString, CiString20};
use crate::can::ReconnectPolicy;
use crate::connector::{AuthDecision, ConnectorStatus, FaultCode, IdToken, LocalFault};
use crate::options::OcppDispenser;

/// The configuration key that lets the local list decide while the CSMS is unreachable.
const LOCAL_AUTHORIZE_OFFLINE: &str = "LocalAuthorizeOffline";

/// What the control task tells a driver.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverCommand {
    /// A gun's status changed (or its fault did, while Faulted).
    Status {
        /// The gun's OCPP connector id on this dispenser.
        connector: u32,
        /// Its new status.
        status: ConnectorStatus,
        /// The fault behind a Faulted status, for its error code and texts.
        fault: Option<LocalFault>,
    },
    /// Ask whether `token` may charge on `gun`.
    Authorize {
        /// The gun the token was presented at, echoed in the result.
        gun: GunId,
        /// The token.
        token: IdToken,
    },
}

/// The decision on one [`DriverCommand::Authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResult {
    /// The gun it was asked for.
    pub gun: GunId,
    /// The token decided.
    pub token: IdToken,
    /// Accepted or Rejected.
    pub decision: AuthDecision,
}

/// The control task's side of the drivers: which driver serves which gun, and where
/// their decisions arrive.
#[derive(Debug)]
pub struct Drivers {
    /// Per gun: the driver's command channel and the gun's connector id.
    guns: Vec<(GunId, u32, mpsc::UnboundedSender<DriverCommand>)>,
    /// Authorize decisions from every driver.
    pub decisions: mpsc::UnboundedReceiver<AuthResult>,
}

impl Drivers {
    /// Starts one driver task per dispenser that has a CSMS URL; they stop when
    /// `shutdown` turns true. `local_list` serves LocalAuthorizeOffline.
    pub fn start(
        dispensers: &[OcppDispenser],
        local_list: &[String],
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let (decisions_tx, decisions) = mpsc::unbounded_channel();
        let mut guns = Vec::new();
        for dispenser in dispensers {
            let Some(url) = &dispenser.csms_url else {
                tracing::warn!(dispenser = %dispenser.id, "no CSMS URL: the dispenser stays offline");
                continue;
            };
            let (commands_tx, commands) = mpsc::unbounded_channel();
            for &(gun, connector) in &dispenser.guns {
                guns.push((gun, connector, commands_tx.clone()));
            }
            let driver = Driver {
                cp: ChargePoint::new(
                    Config::new(boot_notification(), dispenser.connectors),
                    Box::new(SequentialIds::new(crate::can::backoff::random_u64())),
                ),
                identity: dispenser.identity.clone(),
                local_list: local_list.to_vec(),
                pending: VecDeque::new(),
                decisions: decisions_tx.clone(),
            };
            let transport = TransportConfig::new(url.clone(), dispenser.identity.clone());
            tokio::spawn(driver.run(
                Reconnector::new(transport, ReconnectPolicy::default()),
                commands,
                shutdown.clone(),
            ));
        }
        Self { guns, decisions }
    }

    /// Reports `gun`'s status; a gun no driver serves is ignored.
    pub fn status(&self, gun: GunId, status: ConnectorStatus, fault: Option<LocalFault>) {
        if let Some((_, connector, tx)) = self.guns.iter().find(|(g, ..)| *g == gun) {
            send(
                tx,
                DriverCommand::Status {
                    connector: *connector,
                    status,
                    fault,
                },
            );
        }
    }

    /// Asks for a decision on `token` at `gun`; it arrives on [`Self::decisions`]. False,
    /// asking nothing, when no driver serves `gun`.
    pub fn authorize(&self, gun: GunId, token: &IdToken) -> bool {
        let Some((.., tx)) = self.guns.iter().find(|(g, ..)| *g == gun) else {
            return false;
        };
        send(
            tx,
            DriverCommand::Authorize {
                gun,
                token: token.clone(),
            },
        );
        true
    }
}

/// Sends without waiting; a driver that has stopped only logs.
fn send(tx: &mpsc::UnboundedSender<DriverCommand>, command: DriverCommand) {
    if tx.send(command).is_err() {
        tracing::warn!("OCPP driver stopped; command dropped");
    }
}

/// The BootNotification of a ringhub dispenser.
fn boot_notification() -> BootNotificationRequest {
    BootNotificationRequest {
        charge_point_vendor: CiString::new("ringhub").expect("7 characters fit 20"),
        charge_point_model: CiString::new("ringhub-dc").expect("10 characters fit 20"),
        charge_point_serial_number: None,
        charge_box_serial_number: None,
        firmware_version: CiString::new(env!("CARGO_PKG_VERSION")).ok(),
        iccid: None,
        imsi: None,
        meter_type: None,
        meter_serial_number: None,
    }
}

/// One dispenser's driver task state (the connection lives in [`Driver::run`]).
struct Driver {
    /// The sans-IO charge point.
    cp: ChargePoint,
    /// The charge point identity, for logs.
    identity: String,
    /// The cabinet's local list, for LocalAuthorizeOffline.
    local_list: Vec<String>,
    /// Authorize calls asked and not yet answered, in the order they were queued.
    pending: VecDeque<(GunId, IdToken, CiString20)>,
    /// Where decisions go.
    decisions: mpsc::UnboundedSender<AuthResult>,
}

impl Driver {
    /// Connects, reconnects and drives the core until shutdown or until the control
    /// task drops its senders.
    async fn run(
        mut self,
        mut reconnector: Reconnector,
        mut commands: mpsc::UnboundedReceiver<DriverCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tracing::info!(identity = %self.identity, url = %reconnector.config().url(), "OCPP driver running");
        // Set once the transport config proved unusable: the dispenser stays offline.
        let mut unusable = false;
        loop {
            // Offline: connect, while commands and timers keep being served.
            let mut connection = {
                let connect = reconnector.connect();
                tokio::pin!(connect);
                loop {
                    let deadline = self.cp.poll_timeout();
                    tokio::select! {
                        result = &mut connect, if !unusable => match result {
                            Ok(connection) => break connection,
                            Err(error) => {
                                tracing::error!(identity = %self.identity, %error, "CSMS unusable; the dispenser stays offline");
                                unusable = true;
                            }
                        },
                        command = commands.recv() => match command {
                            Some(command) => self.handle_command(command),
                            None => return,
                        },
                        () = sleep_until(deadline) => self.cp.handle_timeout(Instant::now()),
                        _ = shutdown.changed() => return,
                    }
                    self.drain_events();
                }
            };
            tracing::info!(identity = %self.identity, url = connection.url(), "CSMS connected");
            self.cp.handle_connected(Instant::now());
            let mut stop = false;
            // Online until the connection breaks.
            loop {
                if let Err(error) = self.transmit(&mut connection).await {
                    tracing::warn!(identity = %self.identity, %error, "CSMS send failed");
                    break;
                }
                if self.drain_events() {
                    reconnector.reset();
                }
                if stop {
                    break;
                }
                let deadline = self.cp.poll_timeout();
                tokio::select! {
                    received = connection.recv() => match received {
                        Ok(text) => self.cp.handle_text(&text, Instant::now()),
                        Err(error) => {
                            tracing::warn!(identity = %self.identity, %error, "CSMS connection lost");
                            break;
                        }
                    },
                    command = commands.recv() => match command {
                        Some(command) => self.handle_command(command),
                        None => stop = true,
                    },
                    () = sleep_until(deadline) => self.cp.handle_timeout(Instant::now()),
                    _ = shutdown.changed() => stop = true,
                }
            }
            self.cp.handle_disconnected();
            self.drain_events();
            if stop {
                if let Err(error) = connection.close().await {
                    tracing::debug!(identity = %self.identity, %error, "CSMS close");
                }
                return;
            }
        }
    }

    /// Sends every frame the core has ready, in order.
    async fn transmit(
        &mut self,
        connection: &mut Connection,
    ) -> Result<(), super::transport::TransportError> {
        while let Some(text) = self.cp.poll_transmit() {
            match Frame::parse(&text) {
                Ok(frame) => connection.send(&frame).await?,
                Err(rejected) => {
                    tracing::error!(identity = %self.identity, %text, error = %rejected.error, "the core produced a frame that does not parse");
                }
            }
        }
        Ok(())
    }

    fn handle_command(&mut self, command: DriverCommand) {
        let now = Instant::now();
        match command {
            DriverCommand::Status {
                connector,
                status,
                fault,
            } => {
                let (status, error_code, detail) = ocpp_status(status, fault.as_ref());
                if let Err(error) = self
                    .cp
                    .set_status(connector, status, error_code, detail, now)
                {
                    tracing::error!(identity = %self.identity, %error, "status not reported");
                }
            }
            DriverCommand::Authorize { gun, token } => match CiString20::new(token.id_tag()) {
                Ok(id_tag) => {
                    self.pending.push_back((gun, token, id_tag.clone()));
                    self.cp.authorize(id_tag, now);
                }
                Err(_) => {
                    tracing::info!(identity = %self.identity, %gun, %token, "idTag longer than 20 characters: rejected");
                    self.decide(gun, token, AuthDecision::Rejected);
                }
            },
        }
    }

    /// Handles the core's events; true if the CSMS answered any call (the link works).
    fn drain_events(&mut self) -> bool {
        let mut answered = false;
        while let Some(event) = self.cp.poll_event() {
            match event {
                Event::Answered { request, outcome } => {
                    answered |= outcome.is_ok();
                    self.handle_answer(request, outcome);
                }
                Event::Request(request) => self.refuse(request),
                Event::ConfigurationChanged { key, value } => {
                    tracing::info!(identity = %self.identity, key, %value, "configuration changed");
                }
                // This driver starts no transaction yet, so the core reports none of its
                // transaction events; they are logged should one appear.
                other => {
                    tracing::warn!(identity = %self.identity, event = ?other, "event not handled");
                }
            }
        }
        answered
    }

    fn handle_answer(&mut self, request: OutgoingCall, outcome: Result<Confirmation, CallFailure>) {
        match (request, outcome) {
            (OutgoingCall::Authorize(request), outcome) => {
                let Some(index) = self
                    .pending
                    .iter()
                    .position(|(.., tag)| *tag == request.id_tag)
                else {
                    tracing::warn!(identity = %self.identity, id_tag = %request.id_tag, "Authorize answered that nobody asked");
                    return;
                };
                let Some((gun, token, _)) = self.pending.remove(index) else {
                    return;
                };
                let decision = match outcome {
                    Ok(Confirmation::Authorize(conf)) => {
                        tracing::info!(identity = %self.identity, %gun, %token, status = ?conf.id_tag_info.status, "Authorize answered");
                        if conf.id_tag_info.status == AuthorizationStatus::Accepted {
                            AuthDecision::Accepted
                        } else {
                            AuthDecision::Rejected
                        }
                    }
                    Err(failure @ (CallFailure::NotConnected | CallFailure::Timeout)) => {
                        let offline = self
                            .cp
                            .configuration()
                            .bool(LOCAL_AUTHORIZE_OFFLINE)
                            .unwrap_or(false);
                        let listed = self
                            .local_list
                            .iter()
                            .any(|t| t.eq_ignore_ascii_case(token.id_tag()));
                        tracing::info!(identity = %self.identity, %gun, %token, %failure, offline, listed, "CSMS unreachable: local list decides");
                        if offline && listed {
                            AuthDecision::Accepted
                        } else {
                            AuthDecision::Rejected
                        }
                    }
                    Ok(other) => {
                        tracing::warn!(identity = %self.identity, ?other, "Authorize got another call's confirmation");
                        AuthDecision::Rejected
                    }
                    Err(failure) => {
                        tracing::warn!(identity = %self.identity, %gun, %token, %failure, "Authorize failed");
                        AuthDecision::Rejected
                    }
                };
                self.decide(gun, token, decision);
            }
            (OutgoingCall::BootNotification(_), Ok(Confirmation::BootNotification(conf))) => {
                tracing::info!(identity = %self.identity, status = ?conf.status, interval = conf.interval, "BootNotification answered");
            }
            (request, Ok(_)) => {
                tracing::debug!(identity = %self.identity, ?request, "answered");
            }
            (request, Err(failure)) => {
                tracing::warn!(identity = %self.identity, ?request, %failure, "call failed");
            }
        }
    }

    fn decide(&self, gun: GunId, token: IdToken, decision: AuthDecision) {
        if self
            .decisions
            .send(AuthResult {
                gun,
                token,
                decision,
            })
            .is_err()
        {
            tracing::debug!(identity = %self.identity, "control task gone; decision dropped");
        }
    }

    /// Answers a CALL this slice does not carry out with the spec's refusal.
    fn refuse(&mut self, request: CsmsRequest) {
        tracing::info!(identity = %self.identity, ?request, "CSMS request refused: not supported yet");
        let rejected = AcceptedRejected::Rejected;
        match request {
            CsmsRequest::ChangeAvailability(_, r) => self.cp.answer(
                r,
                &ChangeAvailabilityResponse {
                    status: AvailabilityStatus::Rejected,
                },
            ),
            CsmsRequest::ClearCache(_, r) => {
                self.cp.answer(r, &ClearCacheResponse { status: rejected })
            }
            CsmsRequest::DataTransfer(_, r) => self.cp.answer(
                r,
                &DataTransferResponse {
                    status: DataTransferStatus::UnknownVendorId,
                    data: None,
                },
            ),
            CsmsRequest::GetLocalListVersion(_, r) => self
                .cp
                .answer(r, &GetLocalListVersionResponse { list_version: 0 }),
            CsmsRequest::RemoteStartTransaction(_, r) => self
                .cp
                .answer(r, &RemoteStartTransactionResponse { status: rejected }),
            CsmsRequest::RemoteStopTransaction(_, r) => self
                .cp
                .answer(r, &RemoteStopTransactionResponse { status: rejected }),
            CsmsRequest::Reset(_, r) => self.cp.answer(r, &ResetResponse { status: rejected }),
            CsmsRequest::SendLocalList(_, r) => self.cp.answer(
                r,
                &SendLocalListResponse {
                    status: UpdateStatus::NotSupported,
                },
            ),
            CsmsRequest::TriggerMessage(_, r) => self.cp.answer(
                r,
                &TriggerMessageResponse {
                    status: TriggerMessageStatus::NotImplemented,
                },
            ),
            CsmsRequest::UnlockConnector(_, r) => self.cp.answer(
                r,
                &UnlockConnectorResponse {
                    status: UnlockStatus::NotSupported,
                },
            ),
        };
    }
}

/// Sleeps until `deadline`, forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The StatusNotification fields for a gun's status and the fault behind it.
pub fn ocpp_status(
    status: ConnectorStatus,
    fault: Option<&LocalFault>,
) -> (ChargePointStatus, ChargePointErrorCode, StatusDetail) {
    let status = match status {
        ConnectorStatus::Available => ChargePointStatus::Available,
        ConnectorStatus::Preparing => ChargePointStatus::Preparing,
        ConnectorStatus::Charging => ChargePointStatus::Charging,
        ConnectorStatus::SuspendedEv => ChargePointStatus::SuspendedEv,
        ConnectorStatus::SuspendedEvse => ChargePointStatus::SuspendedEvse,
        ConnectorStatus::Finishing => ChargePointStatus::Finishing,
        ConnectorStatus::Unavailable => ChargePointStatus::Unavailable,
        ConnectorStatus::Faulted => ChargePointStatus::Faulted,
    };
    if status != ChargePointStatus::Faulted {
        return (
            status,
            ChargePointErrorCode::NoError,
            StatusDetail::default(),
        );
    }
    let Some(fault) = fault else {
        return (
            status,
            ChargePointErrorCode::InternalError,
            StatusDetail::default(),
        );
    };
    let detail = StatusDetail {
        info: CiString::new(truncate(&fault.subject, 50)).ok(),
        vendor_error_code: CiString::new(fault.code.as_str()).ok(),
    };
    (status, error_code(fault.code), detail)
}

/// The ChargePointErrorCode (OCPP 1.6 §7.6) closest to a node fault.
fn error_code(code: FaultCode) -> ChargePointErrorCode {
    match code {
        FaultCode::ContactorWelded
        | FaultCode::ContactorFailedToClose
        | FaultCode::OpenUnderLoad => ChargePointErrorCode::PowerSwitchFailure,
        FaultCode::LockFailure => ChargePointErrorCode::ConnectorLockFailure,
        FaultCode::MeterFailure | FaultCode::MeterDisagreement => {
            ChargePointErrorCode::PowerMeterFailure
        }
        FaultCode::IsolationFault => ChargePointErrorCode::GroundFailure,
        FaultCode::ModuleOvertemp => ChargePointErrorCode::HighTemperature,
        FaultCode::PlcSilent | FaultCode::ModuleSilent | FaultCode::ModuleFault => {
            ChargePointErrorCode::InternalError
        }
        FaultCode::EmergencyStop => ChargePointErrorCode::OtherError,
    }
}

/// At most `max` characters of `text`.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fault(code: FaultCode) -> LocalFault {
        LocalFault {
            code,
            subject: "segment 0 gc".into(),
            detail: "feedback closed 300 ms after open".into(),
            raised_at: Duration::from_secs(1),
        }
    }

    #[test]
    fn statuses_map_one_to_one_without_error() {
        let (status, code, detail) = ocpp_status(ConnectorStatus::Preparing, None);
        assert_eq!(status, ChargePointStatus::Preparing);
        assert_eq!(code, ChargePointErrorCode::NoError);
        assert_eq!(detail, StatusDetail::default());
        let (status, ..) = ocpp_status(ConnectorStatus::SuspendedEvse, None);
        assert_eq!(status, ChargePointStatus::SuspendedEvse);
    }

    #[test]
    fn faulted_carries_the_fault() {
        let (status, code, detail) = ocpp_status(
            ConnectorStatus::Faulted,
            Some(&fault(FaultCode::ContactorWelded)),
        );
        assert_eq!(status, ChargePointStatus::Faulted);
        assert_eq!(code, ChargePointErrorCode::PowerSwitchFailure);
        assert_eq!(
            detail.vendor_error_code.map(|c| c.to_string()).as_deref(),
            Some("CONTACTOR_WELDED")
        );
        assert_eq!(
            detail.info.map(|c| c.to_string()).as_deref(),
            Some("segment 0 gc")
        );
        let (_, code, _) = ocpp_status(ConnectorStatus::Faulted, None);
        assert_eq!(code, ChargePointErrorCode::InternalError);
    }
}
