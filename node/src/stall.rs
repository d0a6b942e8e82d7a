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
use std::time::{Duration, Instant};

use ringhub_cluster::transport::LINK_LEASE_MS;

/// A gap between two ticks of the control loop this long or longer is a stall: the
/// peers have dropped the node's transports.
pub const STALL_LIMIT: Duration = Duration::from_millis(LINK_LEASE_MS);

/// Carries the number of restarts after a stall into the re-executed process.
pub const RESTARTS_ENV: &str = "RINGHUB_STALL_RESTARTS";

/// Restarts after a stall since the node was started from outside.
pub const RESTARTS_METRIC: &str = "ringhub_node_stall_restarts_total";

/// Watches the gaps between the control loop's ticks.
#[derive(Debug, Default)]
pub struct StallWatch {
    last: Option<Instant>,
}

impl StallWatch {
    /// Notes a tick at `now`; returns the gap since the previous one if it was a stall.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        let gap = self.last.map(|last| now.saturating_duration_since(last));
        self.last = Some(now);
        gap.filter(|&gap| gap >= STALL_LIMIT)
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
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => return error,
    };
    std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(RESTARTS_ENV, restarts.to_string())
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_of_the_link_lease_or_more_is_a_stall_and_shorter_ones_are_not() {
        let start = Instant::now();
        let mut watch = StallWatch::default();
        assert_eq!(
            watch.tick(start),
            None,
            "the first tick has nothing to compare"
        );
        let short = start + Duration::from_millis(10);
        assert_eq!(watch.tick(short), None);
        let almost = short + STALL_LIMIT - Duration::from_millis(1);
        assert_eq!(watch.tick(almost), None, "just under the lease");
        let stalled = almost + STALL_LIMIT;
        assert_eq!(watch.tick(stalled), Some(STALL_LIMIT));
        let next = stalled + Duration::from_millis(10);
        assert_eq!(
            watch.tick(next),
            None,
            "counted from the last tick, not the start"
        );
    }

    #[test]
    fn the_restart_count_is_read_from_the_environment_and_garbage_counts_as_none() {
        assert_eq!(restarts_so_far(None), 0);
        assert_eq!(restarts_so_far(Some("3".into())), 3);
        assert_eq!(restarts_so_far(Some("three".into())), 0);
    }
}
