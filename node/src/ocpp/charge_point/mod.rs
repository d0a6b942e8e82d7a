//! The sans-IO core of one OCPP 1.6J charge point connection (issue 6, "Connection" and
//! "Messages"), quinn-proto style: it never reads a clock, a socket or a file.
//!
//! ```text
//!   handle_connected / handle_disconnected / handle_text / handle_timeout   (input, with now)
//!   authorize / data_transfer / set_status / answer,
//!   start_transaction / stop_transaction / meter_values                      (commands)
//!                    │
//!              ┌─────▼──────┐  poll_transmit ─► text frames for the WebSocket
//!              │ ChargePoint│  poll_event    ─► requests to carry out, answers to our calls
//!              └────────────┘  poll_timeout  ─► when to call handle_timeout next
//! ```
//!
//! Methods fall into four groups: getters ([`ChargePoint::registration`],
//! [`ChargePoint::configuration`], …); `handle_*`, which feed in what happened; commands,
//! which ask for something; and `poll_*`, which drain what the core wants done. After any
//! `handle_*` or command the driver drains `poll_transmit` (send each frame in order),
//! then `poll_event`, then re-arms its sleep with `poll_timeout`.
//!
//! Behaviour, by spec section:
//! - **Registration** (OCPP 1.6 §4.2, §9.1.10): on connect BootNotification goes out first
//!   and nothing else is sent until it is Accepted. Pending and Rejected retry after the
//!   `interval` of the answer (after [`Config::boot_retry`] when it is 0, or when the boot
//!   fails or times out). While Pending the CSMS may send calls; the charge point answers
//!   them and sends only what TriggerMessage asked for. Accepted sets HeartbeatInterval
//!   from `interval`, and every known connector status is reported again.
//! - **Heartbeat** (§4.6): sent when no CALL went out for HeartbeatInterval. Changing the
//!   key takes effect at once (the deadline is the last CALL plus the new interval).
//! - **One outstanding CALL** (OCPP-J 1.6 §4.1.1): the others wait in a queue; the next
//!   one goes when the previous got its CALLRESULT/CALLERROR or its response timeout
//!   ([`Config::response_timeout`], 30 s by default) expired. Answers with an unknown id
//!   are ignored and counted ([`ChargePoint::unknown_responses`]). Every outcome comes back
//!   as [`Event::Answered`] with its request.
//! - **CALLs from the CSMS** (OCPP-J 1.6 §4.2) are answered at once, not behind our
//!   outstanding call: a malformed one with the CALLERROR [`Frame::parse`] or
//!   [`Request::from_call`] names; GetConfiguration and ChangeConfiguration from the key
//!   table ([`ConfigKeys`]); SendLocalList, GetLocalListVersion and ClearCache from the
//!   authorisation state (`authorization.rs`); TriggerMessage for BootNotification,
//!   Heartbeat and StatusNotification here; the rest become [`Event::Request`] with a
//!   typed [`Responder`] for [`ChargePoint::answer`].
//! - **Authorize** (§3.5, §4.1): see [`ChargePoint::authorize`] and `authorization.rs`;
//!   every decision comes as one [`Event::Authorized`].
//! - **StatusNotification** (§4.9): see `status.rs` — sent on change, once the status
//!   has lasted MinimumStatusDuration, the newest status winning.
//! - **Transactions** (§3.16, §4.7, §4.8, §4.10): see `transactions.rs` and `journal.rs`.
//!   StartTransaction, StopTransaction and transaction MeterValues are stored in the
//!   [`Journal`] before they are sent, go out in order after Accepted ahead of the other
//!   queued calls, are retried per TransactionMessageAttempts and
//!   TransactionMessageRetryInterval, and are removed only when confirmed; a new core over
//!   the same journal picks them up where the old one stopped.
//! - **Disconnect**: the call in flight and every queued call are dropped and reported as
//!   failed with [`CallFailure::NotConnected`], except transaction-related ones, which
//!   stay in the journal for the next connection; statuses are not lost, since all are
//!   reported again after the next Accepted. Requests from the CSMS not yet answered are
//!   abandoned: their [`Responder`]s no longer send anything.
//!
//! Wall-clock timestamps (StatusNotification's `timestamp`) come from the CSMS's
//! `currentTime` in the last BootNotification or Heartbeat confirmation, advanced by the
//! injected `now`; before the first one, statuses carry no timestamp.

mod authorization;
mod config_keys;
mod journal;
mod outbox;
mod status;
mod timer;
mod transactions;

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::messages::central_system::{
    AcceptedRejected, ChangeAvailabilityRequest, ChangeConfigurationResponse, ClearCacheResponse,
    ConfigurationStatus, GetLocalListVersionResponse, MessageTrigger,
    RemoteStartTransactionRequest, RemoteStopTransactionRequest, ResetRequest,
    SendLocalListRequest, SendLocalListResponse, TriggerMessageRequest, TriggerMessageResponse,
    TriggerMessageStatus, UnlockConnectorRequest, UpdateStatus,
};
use super::messages::charge_point::{
    AuthorizeRequest, BootNotificationRequest, ChargePointErrorCode, ChargePointStatus,
    DataTransferRequest, HeartbeatRequest, MeterValuesRequest, Reason, RegistrationStatus,
    StartTransactionRequest, StopTransactionRequest,
};
use super::messages::meter::MeterValue;
use super::messages::{AuthorizationStatus, IdTagInfo, OcppCall, Request, call_result};
use super::rpc::{ErrorCode, Frame, MessageId, MessageIds, MessageType};
use super::types::{CiString20, DateTime, PayloadError};
pub use authorization::{
    AuthChange, AuthKeys, AuthSource, AuthState, CacheEntry, LocalDecision, TagKey,
};
/// How many idTags the Authorization Cache keeps (no OCPP 1.6 key sets it).
pub const AUTH_CACHE_CAPACITY: usize = 1_000;

pub use config_keys::{ConfigError, ConfigKeys, HEARTBEAT_INTERVAL, MINIMUM_STATUS_DURATION};
pub use journal::{
    Journal, JournalError, JournalState, JournalWrite, LocalTxId, MemoryJournal, Seq, TxMessage,
    TxRecord,
};
pub use outbox::{CallFailure, Confirmation, OutgoingCall};
use outbox::{InFlight, Outbox};
use status::Statuses;
pub use status::{StatusDetail, UnknownConnector};
use timer::{Timer, TimerTable};
use transactions::Transactions;
pub use transactions::{
    OpenTransaction, TRANSACTION_MESSAGE_ATTEMPTS, TRANSACTION_MESSAGE_RETRY_INTERVAL,
    TransactionError,
};

/// What the charge point is, and how patient it is.
#[derive(Debug, Clone)]
pub struct Config {
    /// The BootNotification.req sent on every connect.
    pub boot: BootNotificationRequest,
    /// NumberOfConnectors: connectors 1..=N, plus connector 0 for the charge point.
    pub connectors: u32,
    /// How long a CALL waits for its answer before it counts as failed.
    pub response_timeout: Duration,
    /// The wait before BootNotification is retried when the CSMS gives no interval or the
    /// attempt failed.
    pub boot_retry: Duration,
}

impl Config {
    /// The defaults: a 30 s response timeout and a 60 s boot retry.
    pub fn new(boot: BootNotificationRequest, connectors: u32) -> Self {
        Self {
            boot,
            connectors,
            response_timeout: Duration::from_secs(30),
            boot_retry: Duration::from_secs(60),
        }
    }
}

/// Where the connection stands with the CSMS (OCPP 1.6 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// No connection.
    Disconnected,
    /// Connected; BootNotification sent or about to be, no answer yet.
    Booting,
    /// The CSMS answered Pending: only BootNotification and triggered messages go out.
    Pending,
    /// The CSMS answered Rejected: nothing goes out until the retry.
    Rejected,
    /// Registered: every call may go out.
    Accepted,
}

/// The handle for answering one CALL from the CSMS with `T`'s confirmation. It is used up
/// by [`ChargePoint::answer`]; one from an earlier connection sends nothing.
#[derive(Debug)]
pub struct Responder<T> {
    /// The CALL's message id, which the CALLRESULT carries.
    id: MessageId,
    /// The connection the CALL came over.
    epoch: u64,
    /// The request type, which fixes the response type.
    request: PhantomData<fn() -> T>,
}

impl<T> Responder<T> {
    /// The message id of the CALL to answer.
    pub fn id(&self) -> &MessageId {
        &self.id
    }
}

/// A CALL from the CSMS for the node to carry out and answer.
#[derive(Debug)]
pub enum CsmsRequest {
    /// ChangeAvailability.req (§5.2).
    ChangeAvailability(
        ChangeAvailabilityRequest,
        Responder<ChangeAvailabilityRequest>,
    ),
    /// DataTransfer.req (§5.5).
    DataTransfer(DataTransferRequest, Responder<DataTransferRequest>),
    /// RemoteStartTransaction.req (§5.11).
    RemoteStartTransaction(
        RemoteStartTransactionRequest,
        Responder<RemoteStartTransactionRequest>,
    ),
    /// RemoteStopTransaction.req (§5.12).
    RemoteStopTransaction(
        RemoteStopTransactionRequest,
        Responder<RemoteStopTransactionRequest>,
    ),
    /// Reset.req (§5.14).
    Reset(ResetRequest, Responder<ResetRequest>),
    /// TriggerMessage.req for a message other than BootNotification, Heartbeat and
    /// StatusNotification (§5.17), which the core handles itself.
    TriggerMessage(TriggerMessageRequest, Responder<TriggerMessageRequest>),
    /// UnlockConnector.req (§5.18).
    UnlockConnector(UnlockConnectorRequest, Responder<UnlockConnectorRequest>),
}

/// Something for the node.
#[derive(Debug)]
pub enum Event {
    /// One of our calls got its confirmation, or failed.
    Answered {
        /// The request.
        request: OutgoingCall,
        /// Its confirmation, or why there is none.
        outcome: Result<Confirmation, CallFailure>,
    },
    /// The CSMS asks for something; answer it with [`ChargePoint::answer`].
    Request(CsmsRequest),
    /// The CSMS confirmed the StartTransaction of transaction `local`. When `id_tag_info`
    /// is not Accepted the node stops the transaction (StopTransactionOnInvalidId, §4.8).
    TransactionStarted {
        /// The connector the transaction runs on.
        connector: u32,
        /// The charge point's id of the transaction.
        local: LocalTxId,
        /// The CSMS's id of it, now used by its Stop and MeterValues.
        transaction_id: i32,
        /// The CSMS's verdict on the idTag.
        id_tag_info: IdTagInfo,
    },
    /// A transaction-related message was given up and deleted from the journal: after
    /// TransactionMessageAttempts failed attempts (`failure` is the last one), or, with
    /// no failure, because the Start of its transaction was given up, so that no
    /// transactionId will ever come for it.
    TransactionMessageDropped {
        /// The message.
        request: OutgoingCall,
        /// The last attempt's failure.
        failure: Option<CallFailure>,
    },
    /// The journal failed to record a confirmation or a drop; memory went ahead.
    JournalFailed(JournalError),
    /// The decision on one [`ChargePoint::authorize`]; exactly one comes for every call.
    Authorized {
        /// The idTag decided.
        id_tag: CiString20,
        /// It may charge.
        accepted: bool,
        /// What the deciding party said about it, if anything.
        info: Option<IdTagInfo>,
        /// Who decided.
        authority: Authority,
    },
    /// ChangeConfiguration changed a key (already in effect in the core).
    ConfigurationChanged {
        /// The key's canonical name.
        key: &'static str,
        /// Its new value.
        value: String,
    },
}

/// Who decided an [`Event::Authorized`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The CSMS, by Authorize.conf.
    Csms,
    /// The charge point itself, by the rule named (the CSMS was not asked, or could not
    /// be reached).
    Local(AuthSource),
}

/// The sans-IO core of one charge point connection; see the module docs.
pub struct ChargePoint {
    /// Identity, connectors and timeouts.
    config: Config,
    /// The source of message ids for our CALLs.
    ids: Box<dyn MessageIds + Send>,
    /// Where the connection stands.
    registration: Registration,
    /// A BootNotification is due as soon as nothing is in flight.
    boot_wanted: bool,
    /// Counts connections, so that a [`Responder`] from an earlier one is refused.
    epoch: u64,
    /// Calls triggered by the CSMS (allowed while Pending), sent before the queue.
    triggered: VecDeque<OutgoingCall>,
    /// The queue of calls and the one in flight.
    outbox: Outbox,
    /// The configuration keys.
    keys: ConfigKeys,
    /// Connector statuses and what was reported of them.
    statuses: Statuses,
    /// The journal of transaction-related messages and their retry state.
    transactions: Transactions,
    /// The deadlines.
    timers: TimerTable,
    /// The CSMS's clock: an instant and the Unix milliseconds it said then.
    clock: Option<(Instant, i64)>,
    /// Text frames to send, in order.
    transmit: VecDeque<String>,
    /// Events for the node, in order.
    events: VecDeque<Event>,
    /// CALLRESULTs and CALLERRORs that answered no call in flight.
    unknown_responses: u64,
    /// Frames from the CSMS that did not parse, or CALLs whose payload was refused.
    rejected_frames: u64,
}

impl std::fmt::Debug for ChargePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargePoint")
            .field("registration", &self.registration)
            .field("outbox", &self.outbox)
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

impl ChargePoint {
    /// A disconnected charge point with the default configuration keys and a
    /// [`MemoryJournal`], which does not survive a restart.
    pub fn new(config: Config, ids: Box<dyn MessageIds + Send>) -> Self {
        let transactions = Transactions::new(Box::new(MemoryJournal::default()))
            .expect("an empty memory journal loads");
        Self::with_transactions(config, ids, transactions)
    }

    /// A disconnected charge point over `journal`: the messages it holds go out after the
    /// next Accepted, in order.
    pub fn with_journal(
        config: Config,
        ids: Box<dyn MessageIds + Send>,
        journal: Box<dyn Journal + Send>,
    ) -> Result<Self, JournalError> {
        Ok(Self::with_transactions(
            config,
            ids,
            Transactions::new(journal)?,
        ))
    }

    /// A disconnected charge point with `transactions`.
    fn with_transactions(
        config: Config,
        ids: Box<dyn MessageIds + Send>,
        transactions: Transactions,
    ) -> Self {
        let mut keys = ConfigKeys::new(config.connectors);
        let mut events = VecDeque::new();
        for (key, value) in &transactions.state().settings {
            if let Err(refused) = keys.set(key, value) {
                events.push_back(Event::JournalFailed(JournalError(format!(
                    "stored configuration {key}={value:?} not applied: {refused}"
                ))));
            }
        }
        Self {
            transactions,
            keys,
            statuses: Statuses::new(config.connectors),
            config,
            ids,
            registration: Registration::Disconnected,
            boot_wanted: false,
            epoch: 0,
            triggered: VecDeque::new(),
            outbox: Outbox::default(),
            timers: TimerTable::default(),
            clock: None,
            transmit: VecDeque::new(),
            events,
            unknown_responses: 0,
            rejected_frames: 0,
        }
    }

    // ---- getters ----

    /// Where the connection stands.
    pub fn registration(&self) -> Registration {
        self.registration
    }

    /// The configuration keys.
    pub fn configuration(&self) -> &ConfigKeys {
        &self.keys
    }

    /// The current status of `connector`, if one was set.
    pub fn status(&self, connector: u32) -> Option<ChargePointStatus> {
        self.statuses.current(connector)
    }

    /// The transactions started and not yet stopped, oldest first: after a restart, the
    /// ones a reboot cut, to stop with reason PowerLoss or Reboot.
    pub fn open_transactions(&self) -> Vec<OpenTransaction> {
        self.transactions.open()
    }

    /// How many transaction-related messages wait for their confirmation.
    pub fn pending_transaction_messages(&self) -> usize {
        self.transactions.pending()
    }

    /// The journal of transaction-related messages.
    pub fn journal(&self) -> &dyn Journal {
        self.transactions.journal()
    }

    /// The Local Authorization List and the Authorization Cache.
    pub fn auth(&self) -> &AuthState {
        &self.transactions.state().auth
    }

    /// The availability the CSMS gave connectors (0: the charge point), as stored by
    /// [`Self::store_availability`]; a connector not listed is operative.
    pub fn stored_availability(&self) -> &BTreeMap<u32, bool> {
        &self.transactions.state().availability
    }

    /// Stores, durably and all together, whether `connectors` are operative, so that they
    /// stay so across a restart (ChangeAvailability, §5.2: "persistent across reboots").
    pub fn store_availability(
        &mut self,
        connectors: &[u32],
        operative: bool,
    ) -> Result<(), JournalError> {
        let changes = connectors
            .iter()
            .map(|&connector| JournalWrite::PutAvailability {
                connector,
                operative,
            })
            .collect();
        self.transactions.write(changes)
    }

    /// How many CALLRESULTs and CALLERRORs answered no call in flight.
    pub fn unknown_responses(&self) -> u64 {
        self.unknown_responses
    }

    /// How many frames from the CSMS were malformed (answered with a CALLERROR where the
    /// spec says so, ignored otherwise).
    pub fn rejected_frames(&self) -> u64 {
        self.rejected_frames
    }

    /// The CSMS's time at `now`, once a confirmation has told it.
    pub fn wall_clock(&self, now: Instant) -> Option<DateTime> {
        wall_time(self.clock, now)
    }

    // ---- handle_* ----

    /// The WebSocket is open: BootNotification goes out first. A connect while connected
    /// counts as a disconnect followed by a connect.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.registration != Registration::Disconnected {
            self.handle_disconnected();
        }
        self.registration = Registration::Booting;
        self.boot_wanted = true;
        self.pump(now);
    }

    /// The WebSocket closed: every call queued or in flight fails with
    /// [`CallFailure::NotConnected`], unsent frames are discarded, and the [`Responder`]s
    /// of this connection go stale.
    pub fn handle_disconnected(&mut self) {
        if self.registration == Registration::Disconnected {
            return;
        }
        self.registration = Registration::Disconnected;
        self.boot_wanted = false;
        self.epoch += 1;
        self.timers.clear();
        self.transmit.clear();
        self.transactions.handle_disconnected();
        // A transaction-related call stays in the journal.
        let in_flight = self
            .outbox
            .in_flight
            .take()
            .filter(|f| f.journal.is_none())
            .map(|f| f.call);
        let dropped: Vec<_> = in_flight
            .into_iter()
            .chain(self.triggered.drain(..))
            .chain(self.outbox.queue.drain(..))
            .collect();
        for request in dropped {
            match request {
                OutgoingCall::Authorize(r) => self.authorize_offline(&r.id_tag, Instant::now()),
                request => self.events.push_back(Event::Answered {
                    request,
                    outcome: Err(CallFailure::NotConnected),
                }),
            }
        }
    }

    /// A text frame arrived.
    pub fn handle_text(&mut self, text: &str, now: Instant) {
        if self.registration == Registration::Disconnected {
            return;
        }
        match Frame::parse(text) {
            Ok(Frame::Call(call)) => self.handle_call(call.id.clone(), Request::from_call(&call)),
            Ok(Frame::CallResult(result)) => {
                self.handle_answer(&result.id, now, |call| {
                    call.decode(&result.payload)
                        .map_err(CallFailure::BadResponse)
                });
            }
            Ok(Frame::CallError(error)) => {
                self.handle_answer(&error.id, now, |_| {
                    Err(CallFailure::CallError {
                        code: error.code,
                        description: error.description.clone(),
                    })
                });
            }
            Err(rejected) => {
                self.rejected_frames += 1;
                if let Some(reply) = rejected.reply() {
                    self.transmit.push_back(reply.encode());
                } else if let (Some(MessageType::CallResult | MessageType::CallError), Some(id)) =
                    (rejected.message_type, &rejected.message_id)
                {
                    let description = rejected.error.to_string();
                    self.handle_answer(id, now, |_| {
                        Err(CallFailure::BadResponse(PayloadError::new(
                            ErrorCode::FormationViolation,
                            description,
                        )))
                    });
                }
            }
        }
        self.pump(now);
    }

    /// Handles every timer expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if !self.timers.expire(timer, now) {
                continue;
            }
            match timer {
                Timer::Response => {
                    if let Some(in_flight) = self.outbox.in_flight.take() {
                        self.answered(in_flight, Err(CallFailure::Timeout), now);
                    }
                }
                Timer::BootRetry => self.boot_wanted = true,
                Timer::Heartbeat => {
                    if !self.has_heartbeat() {
                        self.outbox
                            .queue
                            .push_back(OutgoingCall::Heartbeat(HeartbeatRequest {}));
                    }
                }
                // Due statuses are picked up by the pump.
                Timer::Status => {}
            }
        }
        self.transactions.handle_timeout(now);
        self.pump(now);
    }

    // ---- commands ----

    /// Decides whether `id_tag` may charge (§4.1, §3.5): the decision comes as one
    /// [`Event::Authorized`]. Online (registered, or booting), the Local Authorization List
    /// and the cache decide at once under LocalPreAuthorize, else Authorize.req goes to the
    /// CSMS; offline, or when the CSMS cannot answer (not connected, response timeout,
    /// CALLERROR), the offline rules decide (LocalAuthorizeOffline,
    /// AllowOfflineTxForUnknownId). Every IdTagInfo the CSMS gives updates the cache.
    pub fn authorize(&mut self, id_tag: CiString20, now: Instant) {
        let online = matches!(
            self.registration,
            Registration::Accepted | Registration::Booting
        );
        if !self.decide_locally(&id_tag, online, now) {
            self.outbox
                .queue
                .push_back(OutgoingCall::Authorize(AuthorizeRequest { id_tag }));
            self.pump(now);
        }
    }

    /// Sends vendor-specific data (§4.3); the answer comes as [`Event::Answered`].
    pub fn data_transfer(&mut self, request: DataTransferRequest, now: Instant) {
        self.enqueue(OutgoingCall::DataTransfer(request), now);
    }

    /// Records the status of `connector` (0 for the charge point itself); it is reported
    /// once it has lasted MinimumStatusDuration, if it is then still the newest.
    pub fn set_status(
        &mut self,
        connector: u32,
        status: ChargePointStatus,
        error_code: ChargePointErrorCode,
        detail: StatusDetail,
        now: Instant,
    ) -> Result<(), UnknownConnector> {
        self.statuses
            .set(connector, status, error_code, detail, now)?;
        self.pump(now);
        Ok(())
    }

    /// Answers a CALL from the CSMS. Returns false, sending nothing, when the connection
    /// it came over has closed since.
    pub fn answer<T: OcppCall>(&mut self, responder: Responder<T>, response: &T::Response) -> bool {
        if responder.epoch != self.epoch || self.registration == Registration::Disconnected {
            return false;
        }
        self.transmit
            .push_back(call_result(responder.id, response).encode());
        true
    }

    /// Starts a transaction on `connector` (§4.8): its StartTransaction is stored in the
    /// journal and sent once registered. `timestamp_now` is the wall-clock start time.
    /// Returns the transaction's local id; the CSMS's comes as [`Event::TransactionStarted`].
    pub fn start_transaction(
        &mut self,
        connector: u32,
        id_tag: CiString20,
        meter_start_wh: i32,
        timestamp_now: DateTime,
        now: Instant,
    ) -> Result<LocalTxId, TransactionError> {
        if connector == 0 || !self.statuses.exists(connector) {
            return Err(TransactionError::UnknownConnector(connector));
        }
        let local = self.transactions.start(StartTransactionRequest {
            connector_id: connector,
            id_tag,
            meter_start: meter_start_wh,
            reservation_id: None,
            timestamp: timestamp_now,
        })?;
        self.pump(now);
        Ok(local)
    }

    /// Stops the transaction on `connector` (§4.10): its StopTransaction is stored in the
    /// journal and sent after everything stored before it, with the CSMS's transactionId.
    /// `timestamp_now` is the wall-clock stop time; `transaction_data`, the readings the
    /// Stop carries (StopTxnSampledData, §9.1), none when empty.
    pub fn stop_transaction(
        &mut self,
        connector: u32,
        meter_stop_wh: i32,
        reason: Reason,
        timestamp_now: DateTime,
        transaction_data: Vec<MeterValue>,
        now: Instant,
    ) -> Result<LocalTxId, TransactionError> {
        let local = self.transactions.stop(
            connector,
            StopTransactionRequest {
                id_tag: None,
                meter_stop: meter_stop_wh,
                timestamp: timestamp_now,
                // Filled in when sent.
                transaction_id: 0,
                reason: Some(reason),
                transaction_data: (!transaction_data.is_empty()).then_some(transaction_data),
            },
        )?;
        self.pump(now);
        Ok(local)
    }

    /// Sends readings of `connector` (§4.7): stored in the journal with the transaction
    /// when one runs on the connector, else queued like [`Self::authorize`] (and failed at
    /// once while disconnected).
    pub fn meter_values(
        &mut self,
        connector: u32,
        values: Vec<MeterValue>,
        now: Instant,
    ) -> Result<(), TransactionError> {
        if !self.statuses.exists(connector) {
            return Err(TransactionError::UnknownConnector(connector));
        }
        if values.is_empty() {
            return Err(TransactionError::NoReadings);
        }
        let request = MeterValuesRequest {
            connector_id: connector,
            transaction_id: None,
            meter_value: values,
        };
        match self.transactions.open_on(connector) {
            Some(open) => {
                self.transactions.meter_values(open.local, request)?;
                self.pump(now);
            }
            None => self.enqueue(OutgoingCall::MeterValues(request), now),
        }
        Ok(())
    }

    // ---- poll_* ----

    /// The next text frame to send.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmit.pop_front()
    }

    /// The next event for the node.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = self
            .transactions
            .retry_at()
            .filter(|_| self.registration == Registration::Accepted);
        self.timers.earliest().into_iter().chain(retry).min()
    }

    // ---- internals ----

    /// HeartbeatInterval as a duration.
    fn heartbeat_interval(&self) -> Duration {
        let secs = self.keys.int(HEARTBEAT_INTERVAL).unwrap_or(0);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    /// MinimumStatusDuration as a duration.
    fn minimum_status_duration(&self) -> Duration {
        let secs = self.keys.int(MINIMUM_STATUS_DURATION).unwrap_or(0);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    /// TransactionMessageAttempts.
    fn transaction_attempts(&self) -> u32 {
        let attempts = self.keys.int(TRANSACTION_MESSAGE_ATTEMPTS).unwrap_or(1);
        u32::try_from(attempts).unwrap_or(1).max(1)
    }

    /// TransactionMessageRetryInterval as a duration.
    fn transaction_retry_interval(&self) -> Duration {
        let secs = self
            .keys
            .int(TRANSACTION_MESSAGE_RETRY_INTERVAL)
            .unwrap_or(0);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    /// Whether a Heartbeat is waiting or in flight.
    fn has_heartbeat(&self) -> bool {
        self.outbox.has_heartbeat()
            || self
                .triggered
                .iter()
                .any(|c| matches!(c, OutgoingCall::Heartbeat(_)))
    }

    /// Queues a call from the node, or fails it at once while disconnected.
    fn enqueue(&mut self, call: OutgoingCall, now: Instant) {
        if self.registration == Registration::Disconnected {
            self.events.push_back(Event::Answered {
                request: call,
                outcome: Err(CallFailure::NotConnected),
            });
            return;
        }
        self.outbox.queue.push_back(call);
        self.pump(now);
    }

    /// Answers or hands on a CALL from the CSMS.
    fn handle_call(&mut self, id: MessageId, request: Result<Request, PayloadError>) {
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                self.rejected_frames += 1;
                self.transmit.push_back(error.reply(id).encode());
                return;
            }
        };
        let epoch = self.epoch;
        let request = match request {
            Request::GetConfiguration(r) => {
                let response = self.keys.report(&r);
                self.transmit.push_back(call_result(id, &response).encode());
                return;
            }
            Request::ChangeConfiguration(r) => {
                let status = self.change_configuration(r.key.as_str(), r.value.as_str());
                let response = ChangeConfigurationResponse { status };
                self.transmit.push_back(call_result(id, &response).encode());
                return;
            }
            Request::TriggerMessage(r)
                if matches!(
                    r.requested_message,
                    MessageTrigger::BootNotification
                        | MessageTrigger::Heartbeat
                        | MessageTrigger::StatusNotification
                ) =>
            {
                let status = self.trigger(&r);
                let response = TriggerMessageResponse { status };
                self.transmit.push_back(call_result(id, &response).encode());
                return;
            }
            Request::ChangeAvailability(r) => {
                CsmsRequest::ChangeAvailability(r, responder(&id, epoch))
            }
            Request::ClearCache(_) => {
                let status = self.clear_cache();
                self.transmit
                    .push_back(call_result(id, &ClearCacheResponse { status }).encode());
                return;
            }
            Request::DataTransfer(r) => CsmsRequest::DataTransfer(r, responder(&id, epoch)),
            Request::GetLocalListVersion(_) => {
                let list_version = self.auth().list_version(self.auth_keys());
                let response = GetLocalListVersionResponse { list_version };
                self.transmit.push_back(call_result(id, &response).encode());
                return;
            }
            Request::RemoteStartTransaction(r) => {
                CsmsRequest::RemoteStartTransaction(r, responder(&id, epoch))
            }
            Request::RemoteStopTransaction(r) => {
                CsmsRequest::RemoteStopTransaction(r, responder(&id, epoch))
            }
            Request::Reset(r) => CsmsRequest::Reset(r, responder(&id, epoch)),
            Request::SendLocalList(r) => {
                let status = self.send_local_list(&r);
                self.transmit
                    .push_back(call_result(id, &SendLocalListResponse { status }).encode());
                return;
            }
            Request::TriggerMessage(r) => CsmsRequest::TriggerMessage(r, responder(&id, epoch)),
            Request::UnlockConnector(r) => CsmsRequest::UnlockConnector(r, responder(&id, epoch)),
        };
        self.events.push_back(Event::Request(request));
    }

    /// The configuration keys authorisation follows.
    fn auth_keys(&self) -> AuthKeys {
        let flag = |key| self.keys.bool(key).unwrap_or(false);
        let count = |key| {
            self.keys
                .int(key)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0)
        };
        AuthKeys {
            local_auth_list_enabled: flag("LocalAuthListEnabled"),
            authorization_cache_enabled: flag("AuthorizationCacheEnabled"),
            local_pre_authorize: flag("LocalPreAuthorize"),
            local_authorize_offline: flag("LocalAuthorizeOffline"),
            allow_offline_tx_for_unknown_id: flag("AllowOfflineTxForUnknownId"),
            local_auth_list_max_length: count("LocalAuthListMaxLength"),
            send_local_list_max_length: count("SendLocalListMaxLength"),
            cache_capacity: AUTH_CACHE_CAPACITY,
        }
    }

    /// Runs `change` on a copy of the authorisation state and stores the changes it made;
    /// the live state takes them only once they are stored.
    fn change_auth<T>(
        &mut self,
        change: impl FnOnce(&mut AuthState, AuthKeys) -> (T, Vec<AuthChange>),
    ) -> Result<T, JournalError> {
        let mut next = self.auth().clone();
        let (result, changes) = change(&mut next, self.auth_keys());
        if !changes.is_empty() {
            self.transactions
                .write(changes.into_iter().map(JournalWrite::Auth).collect())?;
        }
        Ok(result)
    }

    /// Decides `id_tag` from the list and the cache if the rules allow; false when the
    /// CSMS must be asked.
    fn decide_locally(&mut self, id_tag: &CiString20, online: bool, now: Instant) -> bool {
        let wall = self.wall_clock(now);
        let decision = self
            .auth()
            .decide(id_tag, online, wall.as_ref(), self.auth_keys());
        let (accepted, info, source) = match decision {
            LocalDecision::AskCsms => return false,
            LocalDecision::Accepted { info, source } => (true, Some(info), source),
            LocalDecision::Rejected { info, source } => (false, info, source),
        };
        if accepted && source == AuthSource::Cache {
            let touched =
                self.change_auth(|auth, _| ((), auth.touch(id_tag).into_iter().collect()));
            if let Err(error) = touched {
                self.events.push_back(Event::JournalFailed(error));
            }
        }
        self.events.push_back(Event::Authorized {
            id_tag: id_tag.clone(),
            accepted,
            info,
            authority: Authority::Local(source),
        });
        true
    }

    /// The CSMS could not decide `id_tag`: the offline rules do.
    fn authorize_offline(&mut self, id_tag: &CiString20, now: Instant) {
        if !self.decide_locally(id_tag, false, now) {
            // Offline, every idTag gets a local decision; refuse if that ever changes.
            self.events.push_back(Event::Authorized {
                id_tag: id_tag.clone(),
                accepted: false,
                info: None,
                authority: Authority::Local(AuthSource::Offline),
            });
        }
    }

    /// Stores what the CSMS said about `id_tag` in the cache (§3.5.2).
    fn record_id_tag(&mut self, id_tag: &CiString20, info: &IdTagInfo, now: Instant) {
        let wall = self.wall_clock(now);
        let recorded =
            self.change_auth(|auth, keys| ((), auth.record(id_tag, info, wall.as_ref(), keys)));
        if let Err(error) = recorded {
            self.events.push_back(Event::JournalFailed(error));
        }
    }

    /// SendLocalList (§5.15): Failed when the journal cannot store the new list.
    fn send_local_list(&mut self, request: &SendLocalListRequest) -> UpdateStatus {
        match self.change_auth(|auth, keys| auth.send_local_list(request, keys)) {
            Ok(status) => status,
            Err(error) => {
                self.events.push_back(Event::JournalFailed(error));
                UpdateStatus::Failed
            }
        }
    }

    /// ClearCache (§5.4): Rejected when the journal cannot store the cleared cache.
    fn clear_cache(&mut self) -> AcceptedRejected {
        match self.change_auth(|auth, keys| auth.clear_cache(keys)) {
            Ok(status) => status,
            Err(error) => {
                self.events.push_back(Event::JournalFailed(error));
                AcceptedRejected::Rejected
            }
        }
    }

    /// ChangeConfiguration (§5.3): a value that fits is stored in the journal, then takes
    /// effect; one the journal could not store is Rejected and changes nothing.
    fn change_configuration(&mut self, key: &str, value: &str) -> ConfigurationStatus {
        let (key, value) = match self.keys.check(key, value) {
            Ok(checked) => checked,
            Err(refused) => return refused.status(),
        };
        let stored = self.transactions.write(vec![JournalWrite::PutSetting {
            key: key.to_owned(),
            value: value.clone(),
        }]);
        if let Err(error) = stored {
            self.events.push_back(Event::JournalFailed(error));
            return ConfigurationStatus::Rejected;
        }
        // `check` passed, so `set` does.
        let _ = self.keys.set(key, &value);
        self.events
            .push_back(Event::ConfigurationChanged { key, value });
        ConfigurationStatus::Accepted
    }

    /// Queues what a TriggerMessage for BootNotification, Heartbeat or StatusNotification
    /// asks for (§5.17):
    /// Accepted while Pending or Accepted (triggered messages are the ones a Pending charge
    /// point may send, §4.2), Rejected otherwise or for a connector that does not exist.
    fn trigger(&mut self, request: &TriggerMessageRequest) -> TriggerMessageStatus {
        let may_send = matches!(
            self.registration,
            Registration::Pending | Registration::Accepted
        );
        let connector_ok = request.connector_id.is_none_or(|c| self.statuses.exists(c));
        if !may_send || !connector_ok {
            return TriggerMessageStatus::Rejected;
        }
        if request.requested_message == MessageTrigger::BootNotification {
            self.triggered
                .push_back(OutgoingCall::BootNotification(self.config.boot.clone()));
        } else if request.requested_message == MessageTrigger::Heartbeat {
            if !self.has_heartbeat() {
                self.triggered
                    .push_back(OutgoingCall::Heartbeat(HeartbeatRequest {}));
            }
        } else {
            let clock = self.clock;
            let current = self
                .statuses
                .take_current(request.connector_id, |at| wall_time(clock, at));
            self.triggered
                .extend(current.into_iter().map(OutgoingCall::StatusNotification));
        }
        TriggerMessageStatus::Accepted
    }

    /// Takes the answer to the call in flight with message id `id`, or counts it unknown.
    fn handle_answer(
        &mut self,
        id: &MessageId,
        now: Instant,
        outcome: impl FnOnce(&OutgoingCall) -> Result<Confirmation, CallFailure>,
    ) {
        match self.outbox.take_answered(id) {
            Some(in_flight) => {
                let outcome = outcome(&in_flight.call);
                self.answered(in_flight, outcome, now);
            }
            None => self.unknown_responses += 1,
        }
    }

    /// The call in flight is done: hands a transaction-related one to the journal, acts
    /// on BootNotification and Heartbeat confirmations and reports the outcome.
    fn answered(
        &mut self,
        in_flight: InFlight,
        outcome: Result<Confirmation, CallFailure>,
        now: Instant,
    ) {
        self.timers.stop(Timer::Response);
        let InFlight { call, journal, .. } = in_flight;
        if let (OutgoingCall::StartTransaction(request), Ok(Confirmation::StartTransaction(conf))) =
            (&call, &outcome)
        {
            self.record_id_tag(&request.id_tag, &conf.id_tag_info, now);
        }
        if let OutgoingCall::Authorize(request) = &call {
            match outcome {
                Ok(Confirmation::Authorize(conf)) => {
                    self.record_id_tag(&request.id_tag, &conf.id_tag_info, now);
                    self.events.push_back(Event::Authorized {
                        id_tag: request.id_tag.clone(),
                        accepted: conf.id_tag_info.status == AuthorizationStatus::Accepted,
                        info: Some(conf.id_tag_info),
                        authority: Authority::Csms,
                    });
                }
                _ => self.authorize_offline(&request.id_tag, now),
            }
            return;
        }
        if let Some(seq) = journal {
            let retry = (
                self.transaction_attempts(),
                self.transaction_retry_interval(),
            );
            self.transactions
                .answered(seq, call, outcome, retry, now, &mut self.events);
            return;
        }
        match (&call, &outcome) {
            (_, Ok(Confirmation::BootNotification(conf))) => {
                self.set_clock(now, &conf.current_time);
                let retry = Duration::from_secs(u64::try_from(conf.interval).unwrap_or(0));
                match conf.status {
                    RegistrationStatus::Accepted => {
                        self.registration = Registration::Accepted;
                        if conf.interval > 0 {
                            // An interval outside the key's range keeps the old one.
                            let _ = self
                                .keys
                                .set(HEARTBEAT_INTERVAL, &conf.interval.to_string());
                        }
                        self.statuses.forget_reported();
                    }
                    RegistrationStatus::Pending => {
                        self.registration = Registration::Pending;
                        self.retry_boot(retry, now);
                        self.decide_queued_offline(now);
                    }
                    RegistrationStatus::Rejected => {
                        self.registration = Registration::Rejected;
                        self.retry_boot(retry, now);
                        self.decide_queued_offline(now);
                    }
                }
            }
            (OutgoingCall::BootNotification(_), Err(_)) => self.retry_boot(Duration::ZERO, now),
            (_, Ok(Confirmation::Heartbeat(conf))) => self.set_clock(now, &conf.current_time),
            _ => {}
        }
        self.events.push_back(Event::Answered {
            request: call,
            outcome,
        });
    }

    /// Not registered after all: the Authorize calls waiting for registration get the
    /// offline decision now rather than an answer much later.
    fn decide_queued_offline(&mut self, now: Instant) {
        let (waiting, rest): (VecDeque<_>, VecDeque<_>) = self
            .outbox
            .queue
            .drain(..)
            .partition(|call| matches!(call, OutgoingCall::Authorize(_)));
        self.outbox.queue = rest;
        for call in waiting {
            if let OutgoingCall::Authorize(request) = call {
                self.authorize_offline(&request.id_tag, now);
            }
        }
    }

    /// Schedules the next BootNotification after `interval`, or after the configured
    /// retry when it is zero.
    fn retry_boot(&mut self, interval: Duration, now: Instant) {
        let wait = if interval.is_zero() {
            self.config.boot_retry
        } else {
            interval
        };
        self.timers.set(Timer::BootRetry, now + wait);
    }

    /// Notes the CSMS's time.
    fn set_clock(&mut self, now: Instant, time: &DateTime) {
        self.clock = Some((now, time.unix_millis()));
    }

    /// Queues due statuses, sends the next call if none is in flight, and re-arms the
    /// timers that follow from the state.
    fn pump(&mut self, now: Instant) {
        let accepted = self.registration == Registration::Accepted;
        if accepted {
            let clock = self.clock;
            let min = self.minimum_status_duration();
            let due = self.statuses.take_due(min, now, |at| wall_time(clock, at));
            self.outbox
                .queue
                .extend(due.into_iter().map(OutgoingCall::StatusNotification));
        }
        if self.registration != Registration::Disconnected && self.outbox.in_flight.is_none() {
            let next = if self.boot_wanted && !accepted {
                self.boot_wanted = false;
                Some((
                    OutgoingCall::BootNotification(self.config.boot.clone()),
                    None,
                ))
            } else if matches!(
                self.registration,
                Registration::Pending | Registration::Accepted
            ) {
                self.triggered
                    .pop_front()
                    .map(|call| (call, None))
                    .or_else(|| {
                        accepted
                            .then(|| self.transactions.next(&mut self.events))
                            .flatten()
                            .map(|(seq, call)| (call, Some(seq)))
                    })
                    .or_else(|| {
                        accepted
                            .then(|| self.outbox.queue.pop_front())
                            .flatten()
                            .map(|call| (call, None))
                    })
            } else {
                None
            };
            if let Some((call, journal)) = next {
                let id = self.ids.next_id();
                self.transmit.push_back(call.to_frame(id.clone()).encode());
                self.outbox.in_flight = Some(InFlight { id, call, journal });
                self.outbox.last_sent = Some(now);
                self.timers
                    .set(Timer::Response, now + self.config.response_timeout);
            }
        }
        let status_due = accepted
            .then(|| self.statuses.next_due(self.minimum_status_duration()))
            .flatten();
        self.timers.set_opt(Timer::Status, status_due);
        let heartbeat_due = (accepted && !self.has_heartbeat())
            .then(|| {
                self.outbox
                    .last_sent
                    .map(|at| at + self.heartbeat_interval())
            })
            .flatten();
        self.timers.set_opt(Timer::Heartbeat, heartbeat_due);
    }
}

/// The responder for the CALL `id` received on connection `epoch`.
fn responder<T>(id: &MessageId, epoch: u64) -> Responder<T> {
    Responder {
        id: id.clone(),
        epoch,
        request: PhantomData,
    }
}

/// The CSMS's time at `at`, given the clock reading `clock`.
fn wall_time(clock: Option<(Instant, i64)>, at: Instant) -> Option<DateTime> {
    let (base, millis) = clock?;
    let offset = if at >= base {
        i64::try_from(at.duration_since(base).as_millis()).ok()?
    } else {
        -i64::try_from(base.duration_since(at).as_millis()).ok()?
    };
    Some(DateTime::from_unix_millis(millis + offset))
}
