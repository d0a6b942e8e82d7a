//! The charge point's timers: a small enum and a fixed table (quinn-proto
//! `connection/timer.rs`). [`super::ChargePoint::poll_timeout`] is the earliest entry;
//! [`super::ChargePoint::handle_timeout`] handles each expired one.

use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Send BootNotification again after a Pending, a Rejected or a failed attempt.
    BootRetry,
    /// The connection has been idle for HeartbeatInterval: send a Heartbeat.
    Heartbeat,
    /// The CALL in flight has waited its response timeout.
    Response,
    /// A connector's status has lasted MinimumStatusDuration and is due to be sent.
    Status,
}

impl Timer {
    /// Every timer, in the order expired ones are handled.
    pub(super) const ALL: [Self; 4] = [
        Self::Response,
        Self::BootRetry,
        Self::Status,
        Self::Heartbeat,
    ];

    /// The timer's slot in the table.
    fn index(self) -> usize {
        match self {
            Self::BootRetry => 0,
            Self::Heartbeat => 1,
            Self::Response => 2,
            Self::Status => 3,
        }
    }
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(super) struct TimerTable {
    /// Indexed by [`Timer::index`].
    deadlines: [Option<Instant>; 4],
}

impl TimerTable {
    /// Arms `timer` for `at`, replacing its earlier deadline.
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Sets or clears `timer`.
    pub(super) fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        self.deadlines[timer.index()] = at;
    }

    /// Disarms `timer`.
    pub(super) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// The deadline of `timer`, if armed.
    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// Whether `timer` is armed and due at `now`; if so it is disarmed.
    pub(super) fn expire(&mut self, timer: Timer, now: Instant) -> bool {
        let due = self.get(timer).is_some_and(|at| at <= now);
        if due {
            self.stop(timer);
        }
        due
    }

    /// The earliest armed deadline.
    pub(super) fn earliest(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms every timer.
    pub(super) fn clear(&mut self) {
        self.deadlines = [None; 4];
    }
}
