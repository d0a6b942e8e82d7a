//! The CALLs from the CSMS that the dispenser carries out (OCPP 1.6 §5): each answers through
//! the core's [`Responder`], at once or, for UnlockConnector, once the lock has moved.
//! What each one does is in the module docs of [`super`].

use std::time::{Duration, Instant};

use ringhub_proto::can::messages::LockState;

use super::super::charge_point::{CsmsRequest, JournalError, Responder};
use super::super::messages::central_system::{
    AcceptedRejected, AvailabilityStatus, AvailabilityType, ChangeAvailabilityRequest,
    ChangeAvailabilityResponse, MessageTrigger, RemoteStartTransactionRequest,
    RemoteStartTransactionResponse, RemoteStopTransactionRequest, RemoteStopTransactionResponse,
    ResetRequest, ResetResponse, ResetType, TriggerMessageRequest, TriggerMessageResponse,
    TriggerMessageStatus, UnlockConnectorRequest, UnlockConnectorResponse, UnlockStatus,
};
use super::super::messages::charge_point::{DataTransferResponse, DataTransferStatus, Reason};
use super::super::messages::meter::ReadingContext;
use super::{Dispenser, DriverReport, METER_VALUES_SAMPLED_DATA, meter_value};
use crate::connector::{ConnectorStatus, IdToken};

/// How long UnlockConnector waits for the lock to read Unlocked (a running session ramps
/// down first) before it answers UnlockFailed.
pub(super) const UNLOCK_WAIT: Duration = Duration::from_secs(15);
/// How long a Soft reset waits for the sessions it stopped to end before it reconnects.
pub(super) const SOFT_RESET_GRACE: Duration = Duration::from_secs(30);

/// A Reset answered Accepted and not yet carried out.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingReset {
    /// Soft or Hard.
    pub kind: ResetType,
    /// A Soft reset goes ahead then even if sessions are still ending.
    pub deadline: Instant,
}

/// An UnlockConnector waiting for the lock.
#[derive(Debug)]
pub(super) struct PendingUnlock {
    /// The connector.
    pub connector: u32,
    /// UnlockFailed after this.
    pub deadline: Instant,
    /// The answer to send.
    pub responder: Responder<UnlockConnectorRequest>,
}

impl Dispenser {
    /// Carries out a CALL from the CSMS (see the module docs of [`super`]).
    pub(super) fn handle_request(&mut self, request: CsmsRequest, now: Instant) {
        let sent = match request {
            CsmsRequest::ChangeAvailability(request, r) => {
                self.change_availability(&request, r, now)
            }
            CsmsRequest::DataTransfer(request, r) => {
                tracing::info!(identity = %self.identity, vendor = %request.vendor_id, "DataTransfer from the CSMS: no vendor extension known");
                self.cp.answer(
                    r,
                    &DataTransferResponse {
                        status: DataTransferStatus::UnknownVendorId,
                        data: None,
                    },
                )
            }
            CsmsRequest::RemoteStartTransaction(request, r) => self.remote_start(&request, r, now),
            CsmsRequest::RemoteStopTransaction(request, r) => self.remote_stop(&request, r),
            CsmsRequest::Reset(request, r) => self.reset(&request, r, now),
            CsmsRequest::TriggerMessage(request, r) => self.trigger(&request, r, now),
            CsmsRequest::UnlockConnector(request, r) => {
                self.unlock(&request, r, now);
                true
            }
        };
        if !sent {
            tracing::debug!(identity = %self.identity, "the connection closed before the answer");
        }
    }

    /// RemoteStartTransaction (§5.11): Accepted when the connector (the one named, else
    /// the first Preparing, else the first Available) has no transaction and is Available
    /// or Preparing. With AuthorizeRemoteTxRequests the idTag is authorised first (list,
    /// cache or CSMS) and the gun gets it only if accepted; otherwise at once.
    fn remote_start(
        &mut self,
        request: &RemoteStartTransactionRequest,
        responder: Responder<RemoteStartTransactionRequest>,
        now: Instant,
    ) -> bool {
        let free = |status: Option<&ConnectorStatus>| {
            matches!(
                status,
                Some(ConnectorStatus::Available | ConnectorStatus::Preparing)
            )
        };
        let chosen = match request.connector_id {
            Some(connector) => self
                .guns
                .iter()
                .find(|&&(_, c)| c == connector)
                .copied()
                .filter(|&(_, c)| free(self.statuses.get(&c)) && !self.running.contains_key(&c)),
            None => [ConnectorStatus::Preparing, ConnectorStatus::Available]
                .into_iter()
                .find_map(|wanted| {
                    self.guns.iter().copied().find(|&(_, c)| {
                        self.statuses.get(&c) == Some(&wanted) && !self.running.contains_key(&c)
                    })
                }),
        };
        let status = if chosen.is_some() {
            AcceptedRejected::Accepted
        } else {
            tracing::info!(identity = %self.identity, connector = ?request.connector_id, statuses = ?self.statuses, "RemoteStartTransaction: no free connector, rejected");
            AcceptedRejected::Rejected
        };
        // The answer first: an Authorize it causes comes after it on the wire.
        let sent = self
            .cp
            .answer(responder, &RemoteStartTransactionResponse { status });
        if let Some((gun, connector)) = chosen {
            let id_tag = request.id_tag.clone();
            let token = IdToken::Remote(id_tag.to_string());
            let authorize = self
                .cp
                .configuration()
                .bool(AUTHORIZE_REMOTE_TX_REQUESTS)
                .unwrap_or(false);
            tracing::info!(identity = %self.identity, %gun, connector, %id_tag, authorize, "RemoteStartTransaction accepted");
            if authorize {
                self.pending.push_back((gun, token, id_tag.clone()));
                self.cp.authorize(id_tag, now);
            } else {
                self.report(DriverReport::RemoteStart { gun, token });
            }
        }
        sent
    }

    /// RemoteStopTransaction (see the module docs); true if the answer was sent.
    fn remote_stop(
        &mut self,
        request: &RemoteStopTransactionRequest,
        responder: Responder<RemoteStopTransactionRequest>,
    ) -> bool {
        let transaction_id = request.transaction_id;
        let gun = self
            .cp
            .open_transactions()
            .into_iter()
            .find(|open| {
                open.transaction_id == Some(transaction_id)
                    && self.running.contains_key(&open.connector)
            })
            .and_then(|open| self.guns.iter().find(|(_, c)| *c == open.connector))
            .map(|&(gun, _)| gun);
        let status = match gun {
            Some(gun) => {
                tracing::info!(identity = %self.identity, %gun, transaction_id, "RemoteStopTransaction: stopping the session");
                self.report(DriverReport::StopSession { gun });
                AcceptedRejected::Accepted
            }
            None => {
                tracing::info!(identity = %self.identity, transaction_id, "RemoteStopTransaction of no running transaction: rejected");
                AcceptedRejected::Rejected
            }
        };
        self.cp
            .answer(responder, &RemoteStopTransactionResponse { status })
    }

    /// ChangeAvailability (see the module docs); true if the answer was sent.
    fn change_availability(
        &mut self,
        request: &ChangeAvailabilityRequest,
        responder: Responder<ChangeAvailabilityRequest>,
        now: Instant,
    ) -> bool {
        let available = request.kind == AvailabilityType::Operative;
        let connectors: Vec<u32> = self
            .guns
            .iter()
            .map(|&(_, c)| c)
            .filter(|&c| request.connector_id == 0 || c == request.connector_id)
            .collect();
        let status = if connectors.is_empty() {
            tracing::info!(identity = %self.identity, connector = request.connector_id, "ChangeAvailability of an unknown connector: rejected");
            AvailabilityStatus::Rejected
        } else if let Err(error) = self.store_availability(request.connector_id, available) {
            tracing::error!(identity = %self.identity, %error, "ChangeAvailability not stored: rejected");
            AvailabilityStatus::Rejected
        } else {
            let mut status = AvailabilityStatus::Accepted;
            for connector in connectors {
                if self.running.contains_key(&connector) {
                    self.scheduled.insert(connector, available);
                    status = AvailabilityStatus::Scheduled;
                } else {
                    self.scheduled.remove(&connector);
                    self.set_available(connector, available);
                }
            }
            tracing::info!(identity = %self.identity, connector = request.connector_id, available, ?status, "ChangeAvailability");
            self.report_dispenser_status(now);
            status
        };
        self.cp
            .answer(responder, &ChangeAvailabilityResponse { status })
    }

    /// Stores `connector`'s availability; for connector 0, every gun's follows it, so
    /// their own entries are overwritten too.
    fn store_availability(&mut self, connector: u32, available: bool) -> Result<(), JournalError> {
        let connectors: Vec<u32> = if connector == 0 {
            std::iter::once(0)
                .chain(self.guns.iter().map(|&(_, c)| c))
                .collect()
        } else {
            vec![connector]
        };
        self.cp.store_availability(&connectors, available)
    }

    /// Applies the availability stored by earlier ChangeAvailability calls.
    pub(super) fn restore_availability(&mut self) {
        let stored = self.cp.stored_availability().clone();
        for (connector, available) in stored {
            if connector != 0 && !available {
                tracing::info!(identity = %self.identity, connector, "Inoperative since before the restart");
                self.set_available(connector, false);
            }
        }
    }

    /// Reset (§5.14): Accepted; every running session is stopped with reason SoftReset or
    /// HardReset, then the connection to the CSMS is closed and opened again, with a new
    /// BootNotification: at once for Hard; for Soft once the sessions have ended and the
    /// CSMS has confirmed their Stops (at most [`SOFT_RESET_GRACE`]). The node process itself keeps running: it serves
    /// other dispensers, and its sessions are what a restart of the charge point would
    /// cut. Their Stops, journaled, go out after the new boot.
    fn reset(
        &mut self,
        request: &ResetRequest,
        responder: Responder<ResetRequest>,
        now: Instant,
    ) -> bool {
        let reason = match request.kind {
            ResetType::Soft => Reason::SoftReset,
            ResetType::Hard => Reason::HardReset,
        };
        let connectors: Vec<u32> = self.running.keys().copied().collect();
        for connector in connectors {
            self.stop_with(connector, reason);
        }
        tracing::info!(identity = %self.identity, kind = ?request.kind, running = self.running.len(), "Reset accepted");
        self.reset = Some(PendingReset {
            kind: request.kind,
            deadline: now + SOFT_RESET_GRACE,
        });
        self.cp.answer(
            responder,
            &ResetResponse {
                status: AcceptedRejected::Accepted,
            },
        )
    }

    /// The accepted Reset, once it is to be carried out: the shell then closes the
    /// connection and connects again.
    pub fn take_due_reset(&mut self, now: Instant) -> Option<ResetType> {
        if self.reset_due(now) {
            self.reset.take().map(|r| r.kind)
        } else {
            None
        }
    }

    /// Whether the accepted Reset is to be carried out now.
    fn reset_due(&self, now: Instant) -> bool {
        self.reset.is_some_and(|reset| match reset.kind {
            ResetType::Hard => true,
            ResetType::Soft => {
                let settled =
                    self.running.is_empty() && self.cp.pending_transaction_messages() == 0;
                settled || now >= reset.deadline
            }
        })
    }

    /// Stops the session on `connector` through the control task; its Stop carries
    /// `reason` (unless an earlier stop already chose one).
    pub(super) fn stop_with(&mut self, connector: u32, reason: Reason) {
        if let Some(running) = self.running.get_mut(&connector) {
            running.stop_reason.get_or_insert(reason);
        }
        if let Some(gun) = self.gun_of(connector) {
            self.report(DriverReport::StopSession { gun });
        }
    }

    /// UnlockConnector (§5.18): a running session is stopped first (reason
    /// UnlockCommand); the gun is told to unlock, which it does once de-energised, and the
    /// answer waits for the lock to read Unlocked: Unlocked, or UnlockFailed after
    /// [`UNLOCK_WAIT`]. A connector that is not a gun of this dispenser: NotSupported.
    fn unlock(
        &mut self,
        request: &UnlockConnectorRequest,
        responder: Responder<UnlockConnectorRequest>,
        now: Instant,
    ) {
        let connector = request.connector_id;
        let Some(gun) = self.gun_of(connector) else {
            tracing::info!(identity = %self.identity, connector, "UnlockConnector of no gun: NotSupported");
            self.cp.answer(
                responder,
                &UnlockConnectorResponse {
                    status: UnlockStatus::NotSupported,
                },
            );
            return;
        };
        if self.running.contains_key(&connector) {
            self.stop_with(connector, Reason::UnlockCommand);
        }
        tracing::info!(identity = %self.identity, %gun, connector, "UnlockConnector");
        self.report(DriverReport::Unlock { gun });
        self.unlocks.push(PendingUnlock {
            connector,
            deadline: now + UNLOCK_WAIT,
            responder,
        });
        self.check_unlocks(now);
    }

    /// Answers the UnlockConnector calls whose lock has opened, or whose wait is over.
    pub(super) fn check_unlocks(&mut self, now: Instant) {
        let mut waiting = Vec::new();
        for unlock in std::mem::take(&mut self.unlocks) {
            let lock = self
                .gun_of(unlock.connector)
                .and_then(|gun| self.reading(gun))
                .map(|r| r.lock);
            let unlocked =
                lock == Some(LockState::Unlocked) && !self.running.contains_key(&unlock.connector);
            let status = if unlocked {
                UnlockStatus::Unlocked
            } else if now >= unlock.deadline {
                UnlockStatus::UnlockFailed
            } else {
                waiting.push(unlock);
                continue;
            };
            tracing::info!(identity = %self.identity, connector = unlock.connector, ?status, ?lock, "UnlockConnector answered");
            self.cp
                .answer(unlock.responder, &UnlockConnectorResponse { status });
        }
        self.unlocks = waiting;
    }

    /// TriggerMessage (§5.17) for what the core does not send itself: MeterValues sends
    /// the latest trusted reading of the connector (of every gun without one) with context
    /// Trigger; DiagnosticsStatusNotification and FirmwareStatusNotification belong to
    /// profiles ringhub does not implement: NotImplemented.
    fn trigger(
        &mut self,
        request: &TriggerMessageRequest,
        responder: Responder<TriggerMessageRequest>,
        now: Instant,
    ) -> bool {
        let status = match request.requested_message {
            MessageTrigger::MeterValues => {
                let connectors: Vec<u32> = self
                    .guns
                    .iter()
                    .map(|&(_, c)| c)
                    .filter(|&c| request.connector_id.is_none_or(|wanted| wanted == c))
                    .collect();
                if connectors.is_empty() {
                    TriggerMessageStatus::Rejected
                } else {
                    let timestamp = self.timestamp(now);
                    let wanted = self.measurands(METER_VALUES_SAMPLED_DATA);
                    for connector in connectors {
                        let value = self
                            .gun_of(connector)
                            .and_then(|gun| self.reading(gun))
                            .and_then(|r| {
                                meter_value(&r, timestamp.clone(), ReadingContext::Trigger, &wanted)
                            });
                        if let Some(value) = value
                            && let Err(error) = self.cp.meter_values(connector, vec![value], now)
                        {
                            tracing::warn!(identity = %self.identity, connector, %error, "triggered MeterValues not sent");
                        }
                    }
                    TriggerMessageStatus::Accepted
                }
            }
            _ => TriggerMessageStatus::NotImplemented,
        };
        tracing::info!(identity = %self.identity, requested = ?request.requested_message, connector = ?request.connector_id, ?status, "TriggerMessage");
        self.cp
            .answer(responder, &TriggerMessageResponse { status })
    }
}

/// The configuration key that makes a RemoteStartTransaction's idTag go through Authorize.
const AUTHORIZE_REMOTE_TX_REQUESTS: &str = "AuthorizeRemoteTxRequests";
