//! Transaction-related messages: StartTransaction, StopTransaction and MeterValues with a
//! transactionId (OCPP 1.6 §3.16, §4.7, §4.8, §4.10), kept in a [`Journal`] from before
//! they are sent until they are confirmed.
//!
//! ```text
//!  start/stop/meter_values ──write──► Journal ──head, once Accepted──► CALL
//!                                        ▲                              │
//!                                        └── delete (or record the ─────┘ CALLRESULT
//!                                            transactionId) on confirmation
//! ```
//!
//! - **Order**: the messages go out one at a time in the order they were stored, after
//!   BootNotification is Accepted and before the node's other queued calls (§4.7: they
//!   are delivered in chronological order, and the CSMS needs the transaction before its
//!   meter values and its end). While disconnected they simply wait.
//! - **Retries** (§4.7, keys TransactionMessageAttempts and
//!   TransactionMessageRetryInterval, §9.1): a CALLERROR, a malformed confirmation or a
//!   response timeout counts as a failed attempt; the message is sent again after
//!   RetryInterval × attempts, and dropped after TransactionMessageAttempts attempts. A
//!   lost connection is no attempt: the message goes out again after the next Accepted.
//! - **Provisional ids**: a transaction gets a [`LocalTxId`] when it starts. Its Stop and
//!   MeterValues are stored with it and get the CSMS's transactionId when they are sent,
//!   so a Start confirmed after they were queued maps its id into them. When the Start
//!   was dropped, no id will ever come, and its Stop and MeterValues are dropped too.
//! - **Restarts**: see `journal.rs` for how each crash point recovers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::messages::charge_point::{
    MeterValuesRequest, StartTransactionRequest, StopTransactionRequest,
};
use super::journal::{
    Journal, JournalError, JournalState, JournalWrite, LocalTxId, Seq, TxMessage, TxRecord,
};
use super::{CallFailure, Confirmation, Event, OutgoingCall};

/// TransactionMessageAttempts: how often a transaction-related message is tried.
pub const TRANSACTION_MESSAGE_ATTEMPTS: &str = "TransactionMessageAttempts";
/// TransactionMessageRetryInterval: seconds before the first retry, multiplied by the
/// number of attempts so far for the next ones.
pub const TRANSACTION_MESSAGE_RETRY_INTERVAL: &str = "TransactionMessageRetryInterval";

/// Why a transaction command was refused; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The connector does not exist (transactions run on connectors 1..=N).
    #[error("no connector {0}")]
    UnknownConnector(u32),
    /// A transaction already runs on the connector.
    #[error("a transaction already runs on connector {0}")]
    AlreadyRunning(u32),
    /// No transaction runs on the connector.
    #[error("no transaction runs on connector {0}")]
    NoTransaction(u32),
    /// MeterValues.req needs at least one MeterValue.
    #[error("no meter values to send")]
    NoReadings,
    /// The journal refused the write.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A transaction that has started and whose Stop has not been stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTransaction {
    /// The charge point's id of it.
    pub local: LocalTxId,
    /// The connector it runs on.
    pub connector: u32,
    /// The CSMS's transactionId, once confirmed.
    pub transaction_id: Option<i32>,
}

/// The journal, its contents in memory, and the retry state of its oldest message.
pub(super) struct Transactions {
    /// Where every change is written before it is made in `state`.
    journal: Box<dyn Journal + Send>,
    /// What the journal holds, to read without IO.
    state: JournalState,
    /// The next local transaction id.
    next_local: LocalTxId,
    /// The next message position.
    next_seq: Seq,
    /// Failed attempts of the oldest message.
    attempts: u32,
    /// The oldest message waits until then before it is tried again.
    retry_at: Option<Instant>,
}

impl Transactions {
    /// Takes over what `journal` holds.
    pub(super) fn new(journal: Box<dyn Journal + Send>) -> Result<Self, JournalError> {
        let state = journal.load()?;
        let next_local = state.transactions.keys().next_back().map_or(0, |l| l + 1);
        let next_seq = state.messages.keys().next_back().map_or(0, |s| s + 1);
        Ok(Self {
            journal,
            state,
            next_local,
            next_seq,
            attempts: 0,
            retry_at: None,
        })
    }

    /// The journal.
    pub(super) fn journal(&self) -> &dyn Journal {
        &*self.journal
    }

    /// The transactions started and not yet stopped, oldest first.
    pub(super) fn open(&self) -> Vec<OpenTransaction> {
        self.state
            .transactions
            .iter()
            .filter(|(_, r)| !r.stopped)
            .map(|(&local, r)| OpenTransaction {
                local,
                connector: r.connector,
                transaction_id: r.transaction_id,
            })
            .collect()
    }

    /// The open transaction on `connector`.
    pub(super) fn open_on(&self, connector: u32) -> Option<OpenTransaction> {
        self.open().into_iter().find(|t| t.connector == connector)
    }

    /// How many messages wait for their confirmation.
    pub(super) fn pending(&self) -> usize {
        self.state.messages.len()
    }

    /// When the oldest message may be retried.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Ends the retry wait if it is over at `now`.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
        }
    }

    /// The connection closed: the message in flight stays stored for the next one, and
    /// waits no longer.
    pub(super) fn handle_disconnected(&mut self) {
        self.retry_at = None;
    }

    /// Stores the StartTransaction of a new transaction on its connector.
    pub(super) fn start(
        &mut self,
        request: StartTransactionRequest,
    ) -> Result<LocalTxId, TransactionError> {
        let connector = request.connector_id;
        if self.open_on(connector).is_some() {
            return Err(TransactionError::AlreadyRunning(connector));
        }
        let local = self.next_local;
        let seq = self.next_seq;
        let record = TxRecord {
            connector,
            transaction_id: None,
            stopped: false,
        };
        self.write(vec![
            JournalWrite::PutTransaction(local, record),
            JournalWrite::PutMessage(seq, TxMessage::Start { local, request }),
        ])?;
        self.next_local += 1;
        self.next_seq += 1;
        Ok(local)
    }

    /// Stores the StopTransaction of the open transaction on `request`'s connector.
    pub(super) fn stop(
        &mut self,
        connector: u32,
        request: StopTransactionRequest,
    ) -> Result<LocalTxId, TransactionError> {
        let open = self
            .open_on(connector)
            .ok_or(TransactionError::NoTransaction(connector))?;
        let seq = self.next_seq;
        let record = TxRecord {
            connector,
            transaction_id: open.transaction_id,
            stopped: true,
        };
        self.write(vec![
            JournalWrite::PutTransaction(open.local, record),
            JournalWrite::PutMessage(
                seq,
                TxMessage::Stop {
                    local: open.local,
                    request,
                },
            ),
        ])?;
        self.next_seq += 1;
        Ok(open.local)
    }

    /// Stores MeterValues of the open transaction `local`.
    pub(super) fn meter_values(
        &mut self,
        local: LocalTxId,
        request: MeterValuesRequest,
    ) -> Result<(), TransactionError> {
        let seq = self.next_seq;
        self.write(vec![JournalWrite::PutMessage(
            seq,
            TxMessage::MeterValues { local, request },
        )])?;
        self.next_seq += 1;
        Ok(())
    }

    /// The oldest message as the call to send, unless it waits for a retry. Messages of
    /// a transaction whose Start was dropped are dropped on the way.
    pub(super) fn next(&mut self, events: &mut VecDeque<Event>) -> Option<(Seq, OutgoingCall)> {
        if self.retry_at.is_some() {
            return None;
        }
        loop {
            let (&seq, message) = self.state.messages.first_key_value()?;
            let local = message.local();
            let id = self
                .state
                .transactions
                .get(&local)
                .and_then(|r| r.transaction_id);
            let call = match (message.clone(), id) {
                (TxMessage::Start { request, .. }, _) => OutgoingCall::StartTransaction(request),
                (TxMessage::Stop { mut request, .. }, Some(id)) => {
                    request.transaction_id = id;
                    OutgoingCall::StopTransaction(request)
                }
                (TxMessage::MeterValues { mut request, .. }, Some(id)) => {
                    request.transaction_id = Some(id);
                    OutgoingCall::MeterValues(request)
                }
                (TxMessage::Stop { request, .. }, None) => {
                    self.drop_message(seq, OutgoingCall::StopTransaction(request), None, events);
                    continue;
                }
                (TxMessage::MeterValues { request, .. }, None) => {
                    self.drop_message(seq, OutgoingCall::MeterValues(request), None, events);
                    continue;
                }
            };
            return Some((seq, call));
        }
    }

    /// The message `seq`, sent as `call`, got `outcome`. `attempts` and `retry_interval`
    /// are the current TransactionMessageAttempts and TransactionMessageRetryInterval.
    pub(super) fn answered(
        &mut self,
        seq: Seq,
        call: OutgoingCall,
        outcome: Result<Confirmation, CallFailure>,
        (attempts, retry_interval): (u32, Duration),
        now: Instant,
        events: &mut VecDeque<Event>,
    ) {
        let Some(message) = self.state.messages.get(&seq).cloned() else {
            return;
        };
        let local = message.local();
        match outcome {
            Ok(confirmation) => {
                self.attempts = 0;
                let mut changes = vec![JournalWrite::DeleteMessage(seq)];
                match (&message, &confirmation) {
                    (TxMessage::Start { .. }, Confirmation::StartTransaction(conf)) => {
                        if let Some(record) = self.state.transactions.get(&local) {
                            let record = TxRecord {
                                transaction_id: Some(conf.transaction_id),
                                ..record.clone()
                            };
                            let connector = record.connector;
                            changes.insert(0, JournalWrite::PutTransaction(local, record));
                            self.force(changes, events);
                            events.push_back(Event::TransactionStarted {
                                connector,
                                local,
                                transaction_id: conf.transaction_id,
                                id_tag_info: conf.id_tag_info.clone(),
                            });
                            return;
                        }
                    }
                    (TxMessage::Stop { .. }, _) => {
                        changes.push(JournalWrite::DeleteTransaction(local));
                    }
                    _ => {}
                }
                self.force(changes, events);
                events.push_back(Event::Answered {
                    request: call,
                    outcome: Ok(confirmation),
                });
            }
            Err(failure) => {
                self.attempts += 1;
                if self.attempts >= attempts {
                    self.drop_message(seq, call, Some(failure), events);
                } else {
                    self.retry_at = Some(now + retry_interval * self.attempts);
                }
            }
        }
    }

    /// Gives up on message `seq`; a Stop takes its transaction with it.
    fn drop_message(
        &mut self,
        seq: Seq,
        request: OutgoingCall,
        failure: Option<CallFailure>,
        events: &mut VecDeque<Event>,
    ) {
        self.attempts = 0;
        let mut changes = vec![JournalWrite::DeleteMessage(seq)];
        if let Some(TxMessage::Stop { local, .. }) = self.state.messages.get(&seq) {
            changes.push(JournalWrite::DeleteTransaction(*local));
        }
        self.force(changes, events);
        events.push_back(Event::TransactionMessageDropped { request, failure });
    }

    /// Everything the journal holds.
    pub(super) fn state(&self) -> &JournalState {
        &self.state
    }

    /// Writes `changes` to the journal, then to memory.
    pub(super) fn write(&mut self, changes: Vec<JournalWrite>) -> Result<(), JournalError> {
        self.journal.write(changes.clone())?;
        for change in changes {
            self.state.apply(change);
        }
        Ok(())
    }

    /// Writes `changes` that have happened whatever the journal says: memory follows the
    /// CSMS even when the journal failed, which is reported.
    fn force(&mut self, changes: Vec<JournalWrite>, events: &mut VecDeque<Event>) {
        if let Err(error) = self.journal.write(changes.clone()) {
            events.push_back(Event::JournalFailed(error));
        }
        for change in changes {
            self.state.apply(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::{Value, json};

    use super::super::tests::{
        action, boot_conf, charge_point, config, csms_call, events, one, registered, reply, s,
        sent, tag,
    };
    use super::super::*;
    use crate::ocpp::messages::AuthorizationStatus;
    use crate::ocpp::messages::meter::SampledValue;
    use crate::ocpp::rpc::SequentialIds;

    /// A wall-clock time `secs` after 2024-05-01T12:00:00Z.
    fn at(secs: i64) -> DateTime {
        DateTime::from_unix_millis(1_714_564_800_000 + secs * 1000)
    }

    /// One energy reading of `wh` at `at(secs)`.
    fn reading(wh: u32, secs: i64) -> Vec<MeterValue> {
        vec![MeterValue {
            timestamp: at(secs),
            sampled_value: vec![SampledValue {
                value: wh.to_string(),
                context: None,
                format: None,
                measurand: None,
                phase: None,
                location: None,
                unit: None,
            }],
        }]
    }

    /// A StartTransaction.conf.
    fn start_conf(transaction_id: i32, status: &str) -> Value {
        json!({"transactionId": transaction_id, "idTagInfo": {"status": status}})
    }

    /// Answers the CALL `frame` with a CALLERROR.
    fn call_error(cp: &mut ChargePoint, frame: &Value, now: Instant) {
        cp.handle_text(
            &json!([4, frame[1], "InternalError", "busy", {}]).to_string(),
            now,
        );
    }

    /// What a restart sees: a new core over a copy of `cp`'s journal.
    fn restart(cp: &ChargePoint) -> ChargePoint {
        let journal = MemoryJournal::new(cp.journal().load().unwrap());
        ChargePoint::with_journal(config(), Box::new(SequentialIds::new(1)), Box::new(journal))
            .unwrap()
    }

    /// Starts a transaction on connector 1 with idTag "TAG1" and 1000 Wh.
    fn start(cp: &mut ChargePoint, now: Instant) -> LocalTxId {
        cp.start_transaction(1, tag("TAG1"), 1000, at(0), now)
            .unwrap()
    }

    /// Stops the transaction on connector 1 at 5000 Wh.
    fn stop(cp: &mut ChargePoint, now: Instant) {
        cp.stop_transaction(1, 5000, Reason::Local, at(600), vec![], now)
            .unwrap();
    }

    #[test]
    fn offline_messages_go_out_in_order_first_with_the_confirmed_id() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        let local = start(&mut cp, t0);
        cp.meter_values(1, reading(3000, 300), t0).unwrap();
        stop(&mut cp, t0);
        assert!(events(&mut cp).is_empty(), "stored, not failed");
        assert_eq!(cp.pending_transaction_messages(), 3);
        assert!(cp.open_transactions().is_empty(), "stopped");

        cp.handle_connected(t0 + s(1));
        let boot = one(&mut cp);
        // Queued before Accepted, sent after the journal.
        cp.authorize(tag("OTHER"), t0 + s(1));
        assert!(sent(&mut cp).is_empty());
        reply(&mut cp, &boot, boot_conf("Accepted", 300), t0 + s(2));
        let start = one(&mut cp);
        assert_eq!(
            start,
            json!([2, "0-1", "StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2024-05-01T12:00:00.000Z"}])
        );
        reply(&mut cp, &start, start_conf(42, "Accepted"), t0 + s(3));
        let meter = one(&mut cp);
        assert_eq!(action(&meter), "MeterValues");
        assert_eq!(meter[3]["transactionId"], 42);
        assert_eq!(
            meter[3]["meterValue"][0]["sampledValue"][0]["value"],
            "3000"
        );
        reply(&mut cp, &meter, json!({}), t0 + s(4));
        let stop = one(&mut cp);
        assert_eq!(
            stop,
            json!([2, "0-3", "StopTransaction", {"meterStop": 5000, "timestamp": "2024-05-01T12:10:00.000Z", "transactionId": 42, "reason": "Local"}])
        );
        reply(&mut cp, &stop, json!({}), t0 + s(5));
        assert_eq!(action(&one(&mut cp)), "Authorize");
        assert_eq!(cp.pending_transaction_messages(), 0);
        let left = cp.journal().load().unwrap();
        assert!(left.transactions.is_empty() && left.messages.is_empty());

        let events = events(&mut cp);
        assert!(matches!(
            &events[1],
            Event::TransactionStarted { connector: 1, local: l, transaction_id: 42, id_tag_info }
                if *l == local && id_tag_info.status == AuthorizationStatus::Accepted
        ));
        assert!(matches!(
            &events[2],
            Event::Answered { request: OutgoingCall::MeterValues(r), outcome: Ok(Confirmation::MeterValues(_)) }
                if r.transaction_id == Some(42)
        ));
        assert!(matches!(
            &events[3],
            Event::Answered { request: OutgoingCall::StopTransaction(r), outcome: Ok(Confirmation::StopTransaction(_)) }
                if r.transaction_id == 42
        ));
    }

    #[test]
    fn a_start_confirmed_while_its_stop_waits_maps_its_id_into_it() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        registered(&mut cp, t0, 300);
        start(&mut cp, t0);
        let start = one(&mut cp);
        assert_eq!(action(&start), "StartTransaction");
        // Stored while the Start is in flight: provisional id.
        cp.meter_values(1, reading(1500, 60), t0 + s(1)).unwrap();
        stop(&mut cp, t0 + s(2));
        assert!(sent(&mut cp).is_empty(), "one CALL at a time");
        reply(&mut cp, &start, start_conf(7, "Accepted"), t0 + s(3));
        let meter = one(&mut cp);
        assert_eq!(meter[3]["transactionId"], 7);
        reply(&mut cp, &meter, json!({}), t0 + s(4));
        let stop = one(&mut cp);
        assert_eq!(stop[3]["transactionId"], 7);
    }

    #[test]
    fn an_invalid_id_tag_is_reported_and_the_node_can_stop_at_once() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        registered(&mut cp, t0, 300);
        start(&mut cp, t0);
        let start = one(&mut cp);
        reply(&mut cp, &start, start_conf(9, "Invalid"), t0 + s(1));
        let events = events(&mut cp);
        let [
            Event::TransactionStarted {
                connector: 1,
                transaction_id: 9,
                id_tag_info,
                ..
            },
        ] = &events[..]
        else {
            panic!("{events:?}");
        };
        assert_eq!(id_tag_info.status, AuthorizationStatus::Invalid);
        assert_eq!(cp.open_transactions()[0].transaction_id, Some(9));
        cp.stop_transaction(1, 1000, Reason::DeAuthorized, at(1), vec![], t0 + s(1))
            .unwrap();
        let stop = one(&mut cp);
        assert_eq!(stop[3]["transactionId"], 9);
        assert_eq!(stop[3]["reason"], "DeAuthorized");
    }

    #[test]
    fn failed_attempts_are_retried_after_interval_times_attempts_then_dropped() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        registered(&mut cp, t0, 3600);
        for (id, key, value) in [
            ("c1", TRANSACTION_MESSAGE_ATTEMPTS, "3"),
            ("c2", TRANSACTION_MESSAGE_RETRY_INTERVAL, "10"),
        ] {
            csms_call(
                &mut cp,
                id,
                "ChangeConfiguration",
                json!({"key": key, "value": value}),
                t0,
            );
            assert_eq!(one(&mut cp)[2]["status"], "Accepted");
        }
        events(&mut cp);
        start(&mut cp, t0);
        cp.meter_values(1, reading(1500, 60), t0).unwrap();
        stop(&mut cp, t0);

        // Attempt 1: CALLERROR; the retry waits 10 s, other calls go meanwhile.
        let first = one(&mut cp);
        assert_eq!(action(&first), "StartTransaction");
        call_error(&mut cp, &first, t0 + s(1));
        assert_eq!(cp.poll_timeout(), Some(t0 + s(11)));
        cp.authorize(tag("OTHER"), t0 + s(2));
        let authorize = one(&mut cp);
        assert_eq!(action(&authorize), "Authorize");
        reply(
            &mut cp,
            &authorize,
            json!({"idTagInfo": {"status": "Accepted"}}),
            t0 + s(3),
        );
        cp.handle_timeout(t0 + s(10));
        assert!(sent(&mut cp).is_empty());

        // Attempt 2: no answer within the 30 s response timeout; the retry waits 20 s.
        cp.handle_timeout(t0 + s(11));
        let second = one(&mut cp);
        assert_eq!(action(&second), "StartTransaction");
        assert_eq!(second[3], first[3]);
        cp.handle_timeout(t0 + s(41));
        assert!(sent(&mut cp).is_empty());
        assert_eq!(cp.poll_timeout(), Some(t0 + s(61)));

        // Attempt 3: CALLERROR again: the Start is given up, and with it the messages
        // that would have needed its transactionId.
        cp.handle_timeout(t0 + s(61));
        let third = one(&mut cp);
        call_error(&mut cp, &third, t0 + s(62));
        assert!(sent(&mut cp).is_empty());
        let events = events(&mut cp);
        let dropped: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::TransactionMessageDropped { request, failure } => {
                    Some((request.clone(), failure.clone()))
                }
                _ => None,
            })
            .collect();
        assert!(matches!(
            &dropped[..],
            [
                (
                    OutgoingCall::StartTransaction(_),
                    Some(CallFailure::CallError { .. })
                ),
                (OutgoingCall::MeterValues(_), None),
                (OutgoingCall::StopTransaction(_), None),
            ]
        ));
        let left = cp.journal().load().unwrap();
        assert!(left.transactions.is_empty() && left.messages.is_empty());
        assert!(cp.open_transactions().is_empty());
    }

    #[test]
    fn a_lost_connection_is_no_attempt_and_the_message_goes_again() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        registered(&mut cp, t0, 300);
        start(&mut cp, t0);
        let first = one(&mut cp);
        cp.handle_disconnected();
        assert!(events(&mut cp).is_empty(), "not failed: kept for later");
        registered(&mut cp, t0 + s(5), 300);
        let again = one(&mut cp);
        assert_eq!(action(&again), "StartTransaction");
        assert_eq!(again[3], first[3]);
    }

    #[test]
    fn meter_values_outside_a_transaction_carry_no_id_and_are_not_kept() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        cp.meter_values(2, reading(10, 0), t0).unwrap();
        assert!(matches!(
            &events(&mut cp)[..],
            [Event::Answered {
                request: OutgoingCall::MeterValues(_),
                outcome: Err(CallFailure::NotConnected)
            }]
        ));
        registered(&mut cp, t0, 300);
        cp.meter_values(0, reading(10, 0), t0).unwrap();
        let meter = one(&mut cp);
        assert_eq!(
            meter[3],
            json!({"connectorId": 0, "meterValue": [{"timestamp": "2024-05-01T12:00:00.000Z", "sampledValue": [{"value": "10"}]}]})
        );
        assert_eq!(cp.pending_transaction_messages(), 0);
    }

    #[test]
    fn commands_that_make_no_sense_are_refused_and_store_nothing() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        assert_eq!(
            cp.start_transaction(0, tag("T"), 0, at(0), t0),
            Err(TransactionError::UnknownConnector(0))
        );
        assert_eq!(
            cp.start_transaction(3, tag("T"), 0, at(0), t0),
            Err(TransactionError::UnknownConnector(3))
        );
        assert_eq!(
            cp.stop_transaction(1, 0, Reason::Local, at(0), vec![], t0),
            Err(TransactionError::NoTransaction(1))
        );
        assert_eq!(
            cp.meter_values(1, Vec::new(), t0),
            Err(TransactionError::NoReadings)
        );
        assert_eq!(cp.pending_transaction_messages(), 0);
        start(&mut cp, t0);
        assert_eq!(
            cp.start_transaction(1, tag("T"), 0, at(0), t0),
            Err(TransactionError::AlreadyRunning(1))
        );
        stop(&mut cp, t0);
        assert_eq!(
            cp.stop_transaction(1, 0, Reason::Local, at(0), vec![], t0),
            Err(TransactionError::NoTransaction(1))
        );
        assert_eq!(cp.pending_transaction_messages(), 2);
    }

    #[test]
    fn restart_after_start_stored_sends_the_start() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        start(&mut cp, t0);
        let mut cp = restart(&cp);
        assert_eq!(cp.open_transactions().len(), 1);
        cp.handle_connected(t0);
        let boot = one(&mut cp);
        reply(&mut cp, &boot, boot_conf("Accepted", 300), t0);
        let start = one(&mut cp);
        assert_eq!(action(&start), "StartTransaction");
        reply(&mut cp, &start, start_conf(5, "Accepted"), t0 + s(1));
        assert_eq!(cp.open_transactions()[0].transaction_id, Some(5));
    }

    #[test]
    fn restart_after_start_sent_sends_it_again() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        registered(&mut cp, t0, 300);
        start(&mut cp, t0);
        let before = one(&mut cp);
        let mut cp = restart(&cp);
        registered(&mut cp, t0 + s(1), 300);
        let after = one(&mut cp);
        assert_eq!(action(&after), "StartTransaction");
        assert_eq!(after[3], before[3]);
    }

    #[test]
    fn restart_after_start_confirmed_sends_no_second_start() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        registered(&mut cp, t0, 300);
        let local = start(&mut cp, t0);
        let start = one(&mut cp);
        reply(&mut cp, &start, start_conf(11, "Accepted"), t0);
        let mut cp = restart(&cp);
        registered(&mut cp, t0 + s(1), 300);
        assert!(sent(&mut cp).is_empty(), "no duplicate StartTransaction");
        // The transaction a reboot cut is known, with its id, to be stopped.
        assert_eq!(
            cp.open_transactions(),
            vec![OpenTransaction {
                local,
                connector: 1,
                transaction_id: Some(11)
            }]
        );
        cp.stop_transaction(1, 2000, Reason::Reboot, at(5), vec![], t0 + s(1))
            .unwrap();
        let stop = one(&mut cp);
        assert_eq!(stop[3]["transactionId"], 11);
        assert_eq!(stop[3]["reason"], "Reboot");
        // A new transaction after the restart gets a fresh local id.
        let next = cp
            .start_transaction(2, tag("TAG2"), 0, at(6), t0 + s(2))
            .unwrap();
        assert_ne!(next, local);
    }

    #[test]
    fn restart_after_stop_stored_sends_start_then_stop_with_the_id() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        start(&mut cp, t0);
        cp.meter_values(1, reading(2000, 30), t0).unwrap();
        stop(&mut cp, t0);
        let mut cp = restart(&cp);
        assert!(cp.open_transactions().is_empty(), "already stopped");
        assert_eq!(
            cp.stop_transaction(1, 0, Reason::Local, at(0), vec![], t0),
            Err(TransactionError::NoTransaction(1)),
            "no second Stop"
        );
        registered(&mut cp, t0 + s(1), 300);
        let start = one(&mut cp);
        reply(&mut cp, &start, start_conf(21, "Accepted"), t0 + s(2));
        let meter = one(&mut cp);
        assert_eq!(meter[3]["transactionId"], 21);
        reply(&mut cp, &meter, json!({}), t0 + s(3));
        let stop = one(&mut cp);
        assert_eq!(action(&stop), "StopTransaction");
        assert_eq!(stop[3]["transactionId"], 21);
    }

    #[test]
    fn restart_after_stop_stored_behind_a_confirmed_start_sends_only_the_stop() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        registered(&mut cp, t0, 300);
        start(&mut cp, t0);
        let start = one(&mut cp);
        reply(&mut cp, &start, start_conf(31, "Accepted"), t0);
        cp.handle_disconnected();
        stop(&mut cp, t0 + s(1));
        let mut cp = restart(&cp);
        registered(&mut cp, t0 + s(2), 300);
        let stop = one(&mut cp);
        assert_eq!(action(&stop), "StopTransaction");
        assert_eq!(stop[3]["transactionId"], 31);
    }

    #[test]
    fn restart_after_stop_sent_sends_it_again_until_confirmed() {
        let mut cp = charge_point();
        let t0 = Instant::now();
        registered(&mut cp, t0, 300);
        start(&mut cp, t0);
        let start = one(&mut cp);
        reply(&mut cp, &start, start_conf(41, "Accepted"), t0);
        stop(&mut cp, t0 + s(1));
        let before = one(&mut cp);
        let mut cp = restart(&cp);
        registered(&mut cp, t0 + s(2), 300);
        let after = one(&mut cp);
        assert_eq!(after[3], before[3]);
        reply(&mut cp, &after, json!({}), t0 + s(3));
        let left = cp.journal().load().unwrap();
        assert!(left.transactions.is_empty() && left.messages.is_empty());
        // And a restart now has nothing to send.
        let mut cp = restart(&cp);
        registered(&mut cp, t0 + s(4), 300);
        assert!(sent(&mut cp).is_empty());
    }
}
