//! The latch outbox: the faults a node's controllers raised, on their way into the Raft
//! log, one at a time and in order. Pure: the shell persists each change before it is
//! pushed here, sends what [`Outbox::poll`] returns, and reports the outcome.
//!
//! - **Retried with the same number**: a write that failed (no leader, a lost answer) is
//!   sent again under the same client serial, so the record applies it once.
//! - **Nothing twice**: a raise whose latch the record already holds active (sent by a
//!   previous run, or restored into a controller from the record) is forgotten instead of
//!   sent.
//! - **No clears**: the leader clears latches by their rule (`ringhub_cluster::clearing`).
//!   A clear stored by a node from before that is forgotten: sending it would skip the
//!   rule's hold.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ringhub_cluster::record::{ClientId, Command, HubRecord, LatchId, LatchSpec, Request};

/// What a controller did to one of its faults, as it must reach the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatchChange {
    /// Latch this fault.
    Raise(LatchSpec),
    /// The fault's condition was gone. Only a node from before the leader judged the
    /// clear rules stored these; they are read back, and forgotten.
    Clear {
        /// Its code.
        code: String,
        /// Its subject.
        subject: String,
        /// When, Unix ms.
        at_unix_ms: u64,
    },
}

impl LatchChange {
    /// The code and subject it is about.
    pub fn key(&self) -> (&str, &str) {
        match self {
            Self::Raise(spec) => (&spec.code, &spec.subject),
            Self::Clear { code, subject, .. } => (code, subject),
        }
    }
}

/// The local number of a change, under which the shell stores it until it is done.
pub type ChangeSeq = u64;

/// What the shell should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this request to the record, then call [`Outbox::handle_answer`] or
    /// [`Outbox::handle_failure`].
    Send(Request),
    /// The change needs no write (see the module docs): delete it from the store.
    Forget(ChangeSeq),
}

/// The first wait before a failed write is retried; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// See the module docs.
#[derive(Debug)]
pub struct Outbox {
    /// This run's client name in the record.
    client: ClientId,
    /// The serial of the last request handed out.
    serial: u64,
    /// Changes not yet done, oldest first.
    queue: VecDeque<(ChangeSeq, LatchChange)>,
    /// The head's request while it is being written: retried as is.
    in_flight: Option<Request>,
    /// Whether the shell is waiting for the in-flight request's answer.
    awaiting: bool,
    /// No retry before this.
    retry_at: Option<Instant>,
    /// The next wait after a failure.
    backoff: Duration,
}

impl Outbox {
    /// An empty outbox sending as `client` (new on every start).
    pub fn new(client: ClientId) -> Self {
        Self {
            client,
            serial: 0,
            queue: VecDeque::new(),
            in_flight: None,
            awaiting: false,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// Adds a change; the shell has stored it under `seq` (increasing).
    pub fn push(&mut self, seq: ChangeSeq, change: LatchChange) {
        self.queue.push_back((seq, change));
    }

    /// How many changes are not done yet.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether every change is done.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When [`Self::poll`] may have something after a failure.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The next thing to do, judged against `record` (this node's applied copy); `None`
    /// while a write is awaited, during a backoff, or when nothing is queued.
    pub fn poll(&mut self, now: Instant, record: &HubRecord) -> Option<Action> {
        if self.awaiting || self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        self.retry_at = None;
        if let Some(request) = &self.in_flight {
            self.awaiting = true;
            return Some(Action::Send(request.clone()));
        }
        let (_, change) = self.queue.front()?;
        let command = match change {
            LatchChange::Raise(spec) => {
                if active_latch(record, &spec.code, &spec.subject).is_some() {
                    return self.forget_head();
                }
                Command::RaiseLatch(spec.clone())
            }
            LatchChange::Clear { .. } => return self.forget_head(),
        };
        self.serial += 1;
        let request = Request {
            client: self.client.clone(),
            serial: self.serial,
            command,
        };
        self.in_flight = Some(request.clone());
        self.awaiting = true;
        Some(Action::Send(request))
    }

    /// The record answered the in-flight request: the head is done; returns its number,
    /// to delete from the store. A refusal is final (the record would refuse a retry
    /// alike), so it is done too; the shell logs it.
    pub fn handle_answer(&mut self) -> Option<ChangeSeq> {
        if !self.awaiting {
            return None;
        }
        self.awaiting = false;
        self.in_flight = None;
        self.backoff = FIRST_BACKOFF;
        self.queue.pop_front().map(|(seq, _)| seq)
    }

    /// The write failed without an answer: the same request goes again after a backoff.
    pub fn handle_failure(&mut self, now: Instant) {
        if !self.awaiting {
            return;
        }
        self.awaiting = false;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn forget_head(&mut self) -> Option<Action> {
        self.queue.pop_front().map(|(seq, _)| Action::Forget(seq))
    }
}

/// The active latch of `code` on `subject` in `record`.
fn active_latch(record: &HubRecord, code: &str, subject: &str) -> Option<LatchId> {
    record
        .active_latches()
        .find(|l| l.spec.code == code && l.spec.subject == subject)
        .map(|l| l.id)
}

#[cfg(test)]
mod tests {
    use ringhub_cluster::record::{ClearRule, Outcome, Severity, Topology};
    use ringhub_proto::config::{CabinetId, HubConfig};

    use super::*;

    fn record() -> HubRecord {
        HubRecord::new(Topology::from_config(&HubConfig::demo()))
    }

    fn cab(name: &str) -> CabinetId {
        CabinetId::new(name).expect("cabinet id")
    }

    fn spec(code: &str, subject: &str, rule: ClearRule) -> LatchSpec {
        LatchSpec {
            evidence: Vec::new(),
            code: code.into(),
            subject: subject.into(),
            severity: Severity::Error,
            detail: "seen".into(),
            raised_by: cab("cab-a"),
            raised_unix_ms: 1_000,
            clear_rule: rule,
        }
    }

    fn outbox() -> Outbox {
        Outbox::new(ClientId("cab-a/boot-1".into()))
    }

    /// Sends the head, applies it to `record` as the leader would, and answers.
    fn commit(outbox: &mut Outbox, record: &mut HubRecord, now: Instant) -> (Request, Outcome) {
        let Some(Action::Send(request)) = outbox.poll(now, record) else {
            panic!("expected a request");
        };
        let outcome = record.apply(&request);
        outbox.handle_answer().expect("a change was done");
        (request, outcome)
    }

    #[test]
    fn a_clear_stored_by_an_older_node_is_forgotten_for_the_leader_to_judge() {
        let (mut record, now) = (record(), Instant::now());
        let mut outbox = outbox();
        let rule = ClearRule::ConditionGone { hold_ms: 3_000 };
        outbox.push(1, LatchChange::Raise(spec("PLC_SILENT", "segment 0", rule)));
        outbox.push(
            2,
            LatchChange::Clear {
                code: "PLC_SILENT".into(),
                subject: "segment 0".into(),
                at_unix_ms: 2_000,
            },
        );
        let (raise, _) = commit(&mut outbox, &mut record, now);
        assert_eq!(raise.serial, 1);
        assert_eq!(outbox.poll(now, &record), Some(Action::Forget(2)));
        assert_eq!(
            record.active_latches().count(),
            1,
            "the hold is the leader's"
        );
        assert!(outbox.is_empty());
        assert_eq!(outbox.poll(now, &record), None);
    }

    #[test]
    fn a_failed_write_is_retried_after_a_backoff_under_the_same_serial() {
        let (mut record, now) = (record(), Instant::now());
        let mut outbox = outbox();
        outbox.push(
            7,
            LatchChange::Raise(spec("X", "gun 0", ClearRule::Operator)),
        );
        let Some(Action::Send(first)) = outbox.poll(now, &record) else {
            panic!("expected a request");
        };
        assert_eq!(outbox.poll(now, &record), None, "one write at a time");
        outbox.handle_failure(now);
        assert_eq!(outbox.poll(now, &record), None, "backing off");
        let later = outbox.poll_timeout().expect("a retry time");
        assert!(later > now);
        let Some(Action::Send(again)) = outbox.poll(later, &record) else {
            panic!("expected the retry");
        };
        assert_eq!(again, first);
        // The first attempt had in fact committed: the retry gets the same answer.
        let outcome = record.apply(&first);
        assert_eq!(record.apply(&again), outcome);
        assert_eq!(outbox.handle_answer(), Some(7));
        assert_eq!(record.latches().len(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let (record, now) = (record(), Instant::now());
        let mut outbox = outbox();
        outbox.push(
            1,
            LatchChange::Raise(spec("X", "gun 0", ClearRule::Operator)),
        );
        let mut waits = Vec::new();
        let mut at = now;
        for _ in 0..8 {
            assert!(matches!(outbox.poll(at, &record), Some(Action::Send(_))));
            outbox.handle_failure(at);
            let next = outbox.poll_timeout().expect("retry time");
            waits.push(next - at);
            at = next;
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().expect("waits"), MAX_BACKOFF);
    }

    #[test]
    fn a_raise_the_record_already_holds_is_forgotten_not_sent() {
        let (mut record, now) = (record(), Instant::now());
        let rule = ClearRule::Operator;
        // A previous run committed it, then died before deleting its stored copy.
        let mut before = Outbox::new(ClientId("cab-a/boot-0".into()));
        before.push(
            1,
            LatchChange::Raise(spec("CONTACTOR_WELDED", "segment 0 gc", rule)),
        );
        commit(&mut before, &mut record, now);
        let mut outbox = outbox();
        outbox.push(
            1,
            LatchChange::Raise(spec("CONTACTOR_WELDED", "segment 0 gc", rule)),
        );
        assert_eq!(outbox.poll(now, &record), Some(Action::Forget(1)));
        let latch = record.active_latches().next().expect("one latch");
        assert_eq!(latch.repeat_count, 0, "not counted again");
    }
}
