//! The bus the node's drivers hold: it opens its URI on first use, reopens it whenever the
//! transport drops, skips input the peer got wrong, and counts all of it (see `stats`).
//! A cabinet's controllers must outlive a simulator restart, a flapping TCP link or a
//! CAN adapter re-plugged; none of that should reach them as more than a pause.
//!
//! ```text
//!   recv/send ──► link up? ── no ──► wait out the backoff ──► open ── fails ──┐
//!                    │ yes                     ▲                            │
//!                    ▼                         └──────── count, log ◄───────┘
//!               link.recv/send ── Skip error ──► count, log, recv again
//!                    │          ── Reconnect error ──► count, log, drop link
//!                    ▼          ── GiveUp error ──► to the caller
//!                 frame
//! ```
//!
//! `recv` and `send` wait for the link, as long as it takes: wrap them in a timeout where
//! a late frame is worse than none. A `send` that fails is not retried (a relay command
//! resent late may do harm); the caller gets the error and decides.

use ringhub_proto::can::CanFrame;
use tokio::time::Instant;

use super::backoff::{Backoff, random_u64};
use super::stats::Meters;
use super::{AnyBus, BusStats, BusUri, CanBus, CanError, ReceivedFrame, ReconnectPolicy, Recovery};

/// A bus that keeps itself open.
#[derive(Debug)]
pub struct ReconnectingBus {
    /// What to open.
    uri: BusUri,
    /// The open bus; `None` while down.
    link: Option<AnyBus>,
    /// Delays between attempts to open.
    backoff: Backoff,
    /// Earliest time of the next attempt to open; `None` to try at once.
    retry_at: Option<Instant>,
    /// Whether the bus was ever open, so that the first open is not counted as a reconnect.
    was_open: bool,
    /// Counts for metrics and [`ReconnectingBus::stats`].
    meters: Meters,
}

impl ReconnectingBus {
    /// A bus that opens `uri` on first use. Creating it does no IO.
    pub fn new(uri: BusUri, policy: ReconnectPolicy) -> Self {
        Self {
            meters: Meters::new(uri.to_string()),
            uri,
            link: None,
            backoff: Backoff::new(policy),
            retry_at: None,
            was_open: false,
        }
    }

    pub fn uri(&self) -> &BusUri {
        &self.uri
    }

    /// Whether the link is up right now.
    pub fn is_open(&self) -> bool {
        self.link.is_some()
    }

    /// Frames, errors and reconnects so far.
    pub fn stats(&self) -> &BusStats {
        self.meters.stats()
    }

    /// The open link, opening it first if it is down.
    async fn link(&mut self) -> Result<&mut AnyBus, CanError> {
        let bus = match self.link.take() {
            Some(bus) => bus,
            None => self.open().await?,
        };
        Ok(self.link.insert(bus))
    }

    /// Opens the bus, retrying after each failure until it opens or an error says to give
    /// up. Cancel-safe: the time of the next attempt is kept, so a new call waits it out.
    async fn open(&mut self) -> Result<AnyBus, CanError> {
        loop {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
            }
            match AnyBus::open(&self.uri).await {
                Ok(bus) => {
                    self.retry_at = None;
                    if self.was_open {
                        self.meters.reconnected();
                        tracing::info!(bus = %self.uri, reconnects = self.stats().reconnects, "CAN bus reopened");
                    } else {
                        tracing::info!(bus = %self.uri, "CAN bus open");
                    }
                    self.was_open = true;
                    return Ok(bus);
                }
                Err(error) if error.recovery() == Recovery::GiveUp => {
                    self.meters.error(error.kind());
                    return Err(error);
                }
                Err(error) => self.link_failed(&error),
            }
        }
    }

    /// Counts and logs an error from the link; drops the link if the error broke it.
    fn note(&mut self, error: &CanError) {
        match error.recovery() {
            Recovery::Skip => {
                self.meters.error(error.kind());
                tracing::warn!(bus = %self.uri, %error, "CAN input skipped");
            }
            Recovery::Reconnect => {
                self.link = None;
                self.link_failed(error);
            }
            Recovery::GiveUp => self.meters.error(error.kind()),
        }
    }

    /// Counts and logs a failure to open or keep the link, and schedules the next attempt.
    fn link_failed(&mut self, error: &CanError) {
        self.meters.error(error.kind());
        let delay = self.backoff.next_delay(random_u64());
        self.retry_at = Some(Instant::now() + delay);
        tracing::warn!(bus = %self.uri, %error, retry_in_ms = delay.as_millis(), "CAN bus down; reopening");
    }
}

impl CanBus for ReconnectingBus {
    /// Cancel-safe: every await in here is.
    async fn recv(&mut self) -> Result<ReceivedFrame, CanError> {
        loop {
            let result = self.link().await?.recv().await;
            match result {
                Ok(received) => {
                    self.backoff.reset();
                    self.meters.frame_received();
                    return Ok(received);
                }
                Err(error) => {
                    self.note(&error);
                    if error.recovery() == Recovery::GiveUp {
                        return Err(error);
                    }
                }
            }
        }
    }

    async fn send(&mut self, frame: CanFrame) -> Result<(), CanError> {
        let result = self.link().await?.send(frame).await;
        match result {
            Ok(()) => {
                self.backoff.reset();
                self.meters.frame_sent();
                Ok(())
            }
            Err(error) => {
                self.note(&error);
                Err(error)
            }
        }
    }
}
