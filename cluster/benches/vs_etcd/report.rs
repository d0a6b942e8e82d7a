//! The table.

use ringhub_cluster::service::{ELECTION_TIMEOUT_MS, HEARTBEAT_MS};
use std::path::Path;
use std::time::Duration;

use crate::{Latches, Options, Side, etcd};

/// Everything measured, and how.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    /// The options the run had.
    pub(crate) options: Options,
    /// Where the data was.
    pub(crate) dir: &'a Path,
    /// etcd's version, as it reported it.
    pub(crate) etcd_version: &'a str,
    /// Our cluster.
    pub(crate) ringhub: Side,
    /// etcd with its default timing: writes and kills.
    pub(crate) etcd_defaults: Side,
    /// etcd tuned close to ours: kills.
    pub(crate) etcd_tuned: Side,
}

/// p50, p99 and max of some times.
#[derive(Debug, Clone, Copy)]
struct Summary {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Summary {
    fn of(times: &[Duration]) -> Self {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        // Nearest rank: the smallest time with at least p of all at or below it.
        let rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1];
        Self {
            p50: rank(50),
            p99: rank(99),
            max: sorted[sorted.len() - 1],
        }
    }

    fn ratio(self, other: Self) -> [f64; 3] {
        let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        [
            r(self.p50, other.p50),
            r(self.p99, other.p99),
            r(self.max, other.max),
        ]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn header(title: &str) {
    println!(
        "\n{title:<52} {:>9} {:>9} {:>9}",
        "p50 ms", "p99 ms", "max ms"
    );
}

fn row(label: &str, s: Summary, decimals: usize) {
    println!(
        "  {label:<50} {:>9.decimals$} {:>9.decimals$} {:>9.decimals$}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
}

fn ratio_row(label: &str, r: [f64; 3]) {
    println!("  {label:<50} {:>8.2}x {:>8.2}x {:>8.2}x", r[0], r[1], r[2]);
}

pub(crate) fn print(run: &Run<'_>) {
    let o = run.options;
    let (d, t) = (etcd::DEFAULTS, etcd::TUNED);
    let latches = match o.latches {
        Latches::Same => "the same latch every time (a repeat: still one committed log entry)",
        Latches::New => "a new latch every time (the record grows by one per write)",
    };
    println!(
        "\nringhub vs etcd: 3 members each, every member a process, loopback TCP, \
         storage fsync'd under {}",
        run.dir.display()
    );
    let (heartbeat, election) = (HEARTBEAT_MS, ELECTION_TIMEOUT_MS);
    println!(
        "  ringhub: openraft 0.9 over Zenoh (peer mode, TCP), redb; heartbeat {heartbeat} ms, \
         election timeout {}-{} ms",
        election.start, election.end
    );
    println!(
        "           (a follower campaigns after the old leader's {} ms lease plus a timeout \
         drawn afresh each round, cluster/src/campaign.rs: {}-{} ms after the last heartbeat)",
        election.end,
        election.end + election.start,
        election.end * 2
    );
    println!("           writes: Cluster::write(RaiseLatch) called inside a member, {latches};");
    println!(
        "           through a follower it is forwarded to the leader over Zenoh \
         (protobuf envelope, JSON request)"
    );
    println!(
        "  etcd {}: puts of a {}-byte value from the bench process over HTTP/1.1 \
         keep-alive to the gRPC-JSON gateway",
        run.etcd_version,
        etcd::VALUE_BYTES
    );
    println!(
        "           (POST /v3/kv/put); caveat: the gateway adds a JSON->gRPC hop inside \
         etcd, and the client is one process away"
    );
    println!(
        "           etcd defaults: --heartbeat-interval={} --election-timeout={}   \
         etcd tuned: --heartbeat-interval={} --election-timeout={}",
        d.heartbeat_ms, d.election_ms, t.heartbeat_ms, t.election_ms
    );
    println!("           (etcd draws each election timeout in 1-2 x the flag)");
    println!(
        "  leader kill: SIGKILL -> both survivors name the same new leader (ringhub: \
         pushed from openraft's metrics; etcd: /v3/maintenance/status polled every {} ms)",
        etcd::POLL.as_millis()
    );

    header(&format!(
        "commit latency, {} writes per row after {} warm-up",
        o.writes, o.warmup
    ));
    if let (Some(ours), Some(theirs)) = (&run.ringhub.writes, &run.etcd_defaults.writes) {
        let ours = (Summary::of(&ours.leader), Summary::of(&ours.follower));
        let theirs = (Summary::of(&theirs.leader), Summary::of(&theirs.follower));
        row("ringhub  latch raise, on the leader", ours.0, 2);
        row("ringhub  latch raise, through a follower", ours.1, 2);
        row("etcd     put, on the leader", theirs.0, 2);
        row("etcd     put, through a follower", theirs.1, 2);
        ratio_row("ratio ringhub/etcd, on the leader", ours.0.ratio(theirs.0));
        ratio_row(
            "ratio ringhub/etcd, through a follower",
            ours.1.ratio(theirs.1),
        );
    }

    header(&format!(
        "leader kill -> new leader, {} kills each",
        o.kills
    ));
    let ours = Summary::of(&run.ringhub.kills);
    let defaults = Summary::of(&run.etcd_defaults.kills);
    let tuned = Summary::of(&run.etcd_tuned.kills);
    let label = format!(
        "ringhub        (heartbeat {HEARTBEAT_MS}, election {}-{})",
        ELECTION_TIMEOUT_MS.start, ELECTION_TIMEOUT_MS.end
    );
    row(&label, ours, 0);
    row(
        &format!(
            "etcd defaults  (heartbeat {}, election {})",
            d.heartbeat_ms, d.election_ms
        ),
        defaults,
        0,
    );
    row(
        &format!(
            "etcd tuned     (heartbeat {}, election {})",
            t.heartbeat_ms, t.election_ms
        ),
        tuned,
        0,
    );
    ratio_row("ratio ringhub/etcd defaults", ours.ratio(defaults));
    ratio_row("ratio ringhub/etcd tuned", ours.ratio(tuned));
    println!("  (p99 by nearest rank: with fewer than 100 kills it is the max)");
}
