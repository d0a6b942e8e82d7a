//! A node that stalled restarts in place.
//!
//! A node stopped (SIGSTOP, a frozen VM) or starved for at least the Zenoh link lease
//! comes back to peers that have dropped its transports. Zenoh 1.10 can then reconnect
//! half-way: one side keeps the key and interest declarations of the old transport, the
//! other starts afresh, and from then on what the node sends is routed nowhere ("Route
//! data with unknown scope") while the Raft log still reaches it. The node would stay
//! cut off from the leader for good. Its PLC watchdog (500 ms) has already opened every
//! contactor it held, so the node gives up nothing by starting again, as after a crash:
//! what must survive is in its store. It re-executes its own binary with the same
//! arguments, so the process keeps its id and its supervisor sees no exit.

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringhub_cluster::transport::LINK_LEASE_MS;

/// A gap this long or longer in a thread that only sleeps is a stall of the process:
/// the peers have dropped the node's transports.
pub const STALL_LIMIT: Duration = Duration::from_millis(LINK_LEASE_MS);

/// How often the watching thread wakes.
const BEAT: Duration = Duration::from_millis(100);

/// Carries the number of restarts after a stall into the re-executed process.
pub const RESTARTS_ENV: &str = "RINGHUB_STALL_RESTARTS";

/// Restarts after a stall since the node was started from outside.
pub const RESTARTS_METRIC: &str = "ringhub_node_stall_restarts_total";

/// The stall, if the process went from `last` to `now` without running.
pub fn overran(last: Instant, now: Instant) -> Option<Duration> {
    let gap = now.saturating_duration_since(last);
    (gap >= STALL_LIMIT).then_some(gap)
}

/// Watches the process from a thread of its own that only sleeps and beats: it falls
/// behind only when the whole process does, never because the control loop is busy
/// (a bus that is not ready, a slow disk).
#[derive(Debug)]
pub struct StallWatch {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// What the beats count from.
    base: Instant,
    /// The last beat, in ns since `base`.
    beat_ns: AtomicU64,
    /// The longest stall the thread saw itself wake from, in ms; 0 for none.
    stalled_ms: AtomicU64,
}

impl Shared {
    fn beat(&self) -> Instant {
        self.base + Duration::from_nanos(self.beat_ns.load(Ordering::Acquire))
    }
}

impl StallWatch {
    /// Starts the watching thread.
    pub fn start() -> std::io::Result<Self> {
        let base = Instant::now();
        let shared = Arc::new(Shared {
            base,
            beat_ns: AtomicU64::new(0),
            stalled_ms: AtomicU64::new(0),
        });
        let beating = shared.clone();
        std::thread::Builder::new()
            .name("stall-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(BEAT);
                    let now = Instant::now();
                    if let Some(gap) = overran(beating.beat(), now) {
                        let ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
                        beating.stalled_ms.fetch_max(ms, Ordering::AcqRel);
                    }
                    let ns = now.saturating_duration_since(beating.base).as_nanos();
                    beating
                        .beat_ns
                        .store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Release);
                }
            })?;
        Ok(Self { shared })
    }

    /// The stall the process is waking from at `now`, if any: one the thread saw, or a
    /// beat already too old (the thread has not run since).
    pub fn stalled(&self, now: Instant) -> Option<Duration> {
        let seen = self.shared.stalled_ms.load(Ordering::Acquire);
        (seen > 0)
            .then(|| Duration::from_millis(seen))
            .or_else(|| overran(self.shared.beat(), now))
    }
}

/// The restarts after a stall that the environment says happened before this process.
pub fn restarts_so_far(value: Option<OsString>) -> u64 {
    value
        .and_then(|v| v.into_string().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Replaces this process with a fresh run of the same binary and arguments, counting
/// the restart in [`RESTARTS_ENV`]. Returns only if that fails.
pub fn restart_in_place(gap: Duration) -> std::io::Error {
    use std::os::unix::process::CommandExt;

    let restarts = restarts_so_far(std::env::var_os(RESTARTS_ENV)) + 1;
    tracing::error!(
        gap_ms = gap.as_millis(),
        restarts,
        "the node stalled for at least the Zenoh link lease: restarting in place, as after a crash"
    );
    // The running binary itself, even if a newer one has replaced its file since.
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "ringhub".into());
    std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(RESTARTS_ENV, restarts.to_string())
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_of_the_link_lease_or_more_is_a_stall_and_shorter_ones_are_not() {
        let start = Instant::now();
        assert_eq!(overran(start, start + Duration::from_millis(100)), None);
        let almost = start + STALL_LIMIT - Duration::from_millis(1);
        assert_eq!(overran(start, almost), None, "just under the lease");
        assert_eq!(overran(start, start + STALL_LIMIT), Some(STALL_LIMIT));
        assert_eq!(overran(start, start), None);
    }

    #[test]
    fn a_running_process_is_not_stalled() {
        let watch = StallWatch::start().expect("the thread starts");
        assert_eq!(watch.stalled(Instant::now()), None);
        // Asked from a moment past the limit, the beat is too old: the thread cannot
        // have run since (what the control loop sees when it wakes first).
        let later = Instant::now() + STALL_LIMIT + BEAT * 2;
        assert!(watch.stalled(later).is_some());
    }

    #[test]
    fn the_restart_count_is_read_from_the_environment_and_garbage_counts_as_none() {
        assert_eq!(restarts_so_far(None), 0);
        assert_eq!(restarts_so_far(Some("3".into())), 3);
        assert_eq!(restarts_so_far(Some("three".into())), 0);
    }
}
