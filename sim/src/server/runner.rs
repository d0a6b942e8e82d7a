//! The task that owns the [`World`] (an actor, as mini-redis's `Db` task would be): it
//! steps the world in real time, hands what the world transmits to the buses, records
//! violations, and answers control requests sent to it through an `mpsc` with `oneshot`
//! replies ([`WorldHandle`]). Nothing else touches the world, so nothing locks it.
//!
//! ## Pacing
//! Sim time is pinned to the wall clock: after `t` ms of real time the world has taken
//! `t / STEP_MS` steps. A tokio interval (`MissedTickBehavior::Skip`) only wakes the task;
//! on each wake it steps until sim time has caught up with the wall clock. This is
//! `Burst` without its drift: a late wake-up runs the missed steps back to back, so a
//! node's 100 ms heartbeat still meets the PLC watchdog in the same time base as on
//! hardware, and timestamps never drift from real time. What `Burst` would do after a
//! long stall (the process stopped, a debugger) is wrong for a hub, though: replaying
//! seconds of physics in one burst with no host input would trip every watchdog. So a
//! catch-up is capped at [`MAX_CATCH_UP_STEPS`]; beyond that the lag is dropped with a
//! warning and the sim clock resumes from where it is.
//!
//! Between the steps of a catch-up, frames from the hosts are handed to the world first,
//! so a host frame is never applied later than the step after it arrived.
//!
//! Frame timestamps are the sim time mapped onto the wall clock at start: the frames of
//! one step share the timestamp of that step, as a bus analyser would show them.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use crate::world::{Action, ActionError, ActionReply, Violation, World};

use super::Shutdown;
use super::bus::{Buses, HostFrame, now_us};

/// The longest catch-up after a stall, in steps (500 ms of sim time).
pub const MAX_CATCH_UP_STEPS: u64 = 50;

/// A request to the world.
#[derive(Debug)]
pub enum Request {
    /// Apply an action; the reply says how it went.
    Apply(Action, oneshot::Sender<Result<ActionReply, ActionError>>),
    /// The ground truth now, as JSON.
    State(oneshot::Sender<serde_json::Value>),
    /// Every violation so far.
    Violations(oneshot::Sender<Vec<Violation>>),
}

/// The runner has stopped (shutdown, or a strict violation): nobody answers any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the simulated world has stopped")]
pub struct WorldGone;

/// Sends requests to the runner. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct WorldHandle {
    /// The runner's inbox.
    tx: mpsc::Sender<Request>,
}

impl WorldHandle {
    pub(crate) fn new(tx: mpsc::Sender<Request>) -> Self {
        Self { tx }
    }

    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, WorldGone> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(request(reply)).await.map_err(|_| WorldGone)?;
        answer.await.map_err(|_| WorldGone)
    }

    /// Applies `action` at the world's next turn.
    pub async fn apply(
        &self,
        action: Action,
    ) -> Result<Result<ActionReply, ActionError>, WorldGone> {
        self.ask(|reply| Request::Apply(action, reply)).await
    }

    /// The ground truth, as `GET /state` serves it.
    pub async fn state(&self) -> Result<serde_json::Value, WorldGone> {
        self.ask(Request::State).await
    }

    /// Every violation so far.
    pub async fn violations(&self) -> Result<Vec<Violation>, WorldGone> {
        self.ask(Request::Violations).await
    }
}

/// The JSONL violations log: one JSON object per line, flushed per line so that a crash
/// loses nothing and `tail -f` shows each as it happens.
#[derive(Debug)]
pub struct ViolationLog {
    /// The file; `None` when no log was asked for.
    out: Option<BufWriter<File>>,
}

impl ViolationLog {
    /// Creates (truncates) the log file.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self {
            out: Some(BufWriter::new(File::create(path)?)),
        })
    }

    /// No log.
    pub fn none() -> Self {
        Self { out: None }
    }

    /// Appends one violation.
    pub fn record(&mut self, violation: &Violation) -> io::Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        serde_json::to_writer(&mut *out, violation)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// How the runner ended.
#[derive(Debug)]
pub enum RunnerExit {
    /// Shutdown was signalled.
    Shutdown,
    /// `strict` was set and the referee saw this.
    StrictViolation(Violation),
}

/// The world, stepped in real time, and everything it talks to.
#[derive(Debug)]
pub struct RealTime {
    /// The simulated hub.
    pub world: World,
    /// Where transmitted frames go.
    pub buses: Buses,
    /// Frames the hosts sent.
    pub host_frames: mpsc::Receiver<HostFrame>,
    /// Control requests.
    pub requests: mpsc::Receiver<Request>,
    /// Where violations are recorded.
    pub violations: ViolationLog,
    /// Stop at the first violation.
    pub strict: bool,
    /// Stops the runner.
    pub shutdown: Shutdown,
}

impl RealTime {
    /// Steps the world until shutdown or, with `strict`, the first violation. Fails only
    /// when the violations log cannot be written.
    pub async fn run(mut self) -> io::Result<RunnerExit> {
        let step = Duration::from_millis(World::STEP_MS);
        let start = Instant::now();
        // Sim time 0 on the wall clock, for frame timestamps.
        let epoch_us = now_us();
        // Sim time dropped after stalls longer than a catch-up.
        let mut dropped_ms = 0;
        let mut ticker = tokio::time::interval_at(start + step, step);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => return Ok(RunnerExit::Shutdown),
                _ = ticker.tick() => {
                    let real_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let due_ms = real_ms.saturating_sub(dropped_ms);
                    let mut steps = 0;
                    while self.world.now_ms() + World::STEP_MS <= due_ms {
                        if steps == MAX_CATCH_UP_STEPS {
                            let behind_ms = due_ms - self.world.now_ms();
                            dropped_ms += behind_ms;
                            tracing::warn!(behind_ms, "the simulator fell behind real time; skipping ahead");
                            break;
                        }
                        while let Ok(host) = self.host_frames.try_recv() {
                            self.world.handle_frame(&host.cabinet, host.frame);
                        }
                        self.world.step();
                        steps += 1;
                        let timestamp_us = epoch_us + (self.world.now_ms() + dropped_ms) * 1000;
                        if let Some(violation) = self.drain(timestamp_us)? {
                            return Ok(RunnerExit::StrictViolation(violation));
                        }
                    }
                }
                Some(host) = self.host_frames.recv() => {
                    self.world.handle_frame(&host.cabinet, host.frame);
                }
                Some(request) = self.requests.recv() => self.serve(request),
            }
        }
    }

    /// Hands the world's frames to the buses and records its violations; with `strict`,
    /// returns the first violation.
    fn drain(&mut self, timestamp_us: u64) -> io::Result<Option<Violation>> {
        while let Some(transmit) = self.world.poll_transmit() {
            self.buses
                .publish(&transmit.cabinet, transmit.frame, timestamp_us);
        }
        while let Some(violation) = self.world.poll_violation() {
            tracing::warn!(
                time_ms = violation.time_ms,
                invariant = %violation.invariant,
                subject = %violation.subject,
                detail = %violation.detail,
                "safety invariant violated"
            );
            self.violations.record(&violation)?;
            if self.strict {
                return Ok(Some(violation));
            }
        }
        Ok(None)
    }

    fn serve(&mut self, request: Request) {
        // A requester that gave up does not care about the answer.
        match request {
            Request::Apply(action, reply) => {
                let _ = reply.send(self.world.apply(action));
            }
            Request::State(reply) => {
                let state = serde_json::to_value(self.world.state()).unwrap_or_else(|error| {
                    serde_json::json!({ "error": format!("cannot serialize the state: {error}") })
                });
                let _ = reply.send(state);
            }
            Request::Violations(reply) => {
                let _ = reply.send(self.world.violations().to_vec());
            }
        }
    }
}
