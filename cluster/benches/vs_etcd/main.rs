//! Our Raft cluster against etcd, side by side on one machine in one run (issue 7; the
//! target is DESIGN.md §6, "fault latch committed on a 3-node cluster (loopback)
//! < 20 ms p99").
//!
//! Two things are measured on each side, three members each, every member its own process
//! with its storage fsync'd in a temp dir under /tmp:
//!
//! - **Commit latency**: `--writes` sequential writes, each timed by its client from the
//!   call to the answer, first on the leader and then through a follower, each after
//!   `--warmup` writes that are not counted. Ours is a latch raise
//!   (`Command::RaiseLatch`, what a node commits when it sees a fault) through
//!   `Cluster::write` in a member; etcd's is a put of a 200-byte value.
//! - **Leader kill → new leader**: the leader's process is SIGKILLed, and the time runs
//!   from the kill to the moment both survivors name the same new leader, `--kills`
//!   times. The killed member restarts on its data and names the leader before the next
//!   kill. etcd runs twice for this: with its default timing and tuned close to ours.
//!
//! ```text
//!  this binary (driver) ──spawns──► 3 × this binary as members (RINGHUB_BENCH_MEMBER=i):
//!      │   stdin: `write <n> <same|new>`       Cluster::start on a Zenoh peer session
//!      │   stdout: `leader <id|none> term <t>`  (loopback TCP, no scouting), redb
//!      │           on every change, `wrote <ns>…`
//!      └──spawns──► 3 × etcd on loopback ◄── HTTP/1.1 keep-alive from the driver:
//!                   POST /v3/kv/put, POST /v3/maintenance/status (polled every 5 ms)
//! ```
//!
//! What differs between the sides, and is printed with the results: our writes start
//! inside a member (a node commits its own faults), etcd's come from another process
//! over HTTP to etcd's gRPC-JSON gateway, which adds a JSON→gRPC hop inside etcd (ours
//! has JSON in a protobuf envelope on the Zenoh hop of a forwarded write). Our leader
//! changes are pushed (openraft's metrics watch, printed at once); etcd's are polled, so
//! its times carry up to one poll period more.
//!
//! Run it with `scripts/bench-cluster` (which installs etcd first); `--help` lists the
//! options.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

mod etcd;
mod member;
mod report;
mod ringhub;

/// Set (to the cabinet index) when this binary runs as one of our members.
const MEMBER_ENV: &str = "RINGHUB_BENCH_MEMBER";
/// The three members' Zenoh endpoints, comma-separated, in cabinet order.
const ENDPOINTS_ENV: &str = "RINGHUB_BENCH_ENDPOINTS";
/// The member's data dir.
const DIR_ENV: &str = "RINGHUB_BENCH_DIR";

/// Every cluster here has three members.
const MEMBERS: usize = 3;
/// Longest wait for a cluster to form, a leader to be agreed or a member to catch up.
const STEP: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let result = match std::env::var(MEMBER_ENV) {
        Ok(index) => member::run(&index),
        Err(_) => drive(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vs_etcd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What a run measures.
#[derive(Debug, Clone, Copy)]
struct Options {
    /// Counted writes per row.
    writes: usize,
    /// Uncounted writes before each row: first connections, first allocations.
    warmup: usize,
    /// Leader kills per cluster.
    kills: usize,
    /// Whether each of our writes raises a new latch rather than repeating one.
    latches: Latches,
}

/// Which latch our writes raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Latches {
    /// The same one every time: a repeat, still one committed log entry; the record
    /// keeps its size.
    Same,
    /// A new one every time: the record grows by one latch per write.
    New,
}

const USAGE: &str = "\
usage: vs_etcd [--writes N] [--warmup N] [--kills N] [--new-latches]
  --writes N       counted writes per row (default 1000)
  --warmup N       uncounted writes before each row (default 50)
  --kills N        leader kills per cluster (default 8)
  --new-latches    raise a new latch on every write instead of repeating one";

impl Options {
    /// Parses the arguments; `None` when help was asked for. Cargo adds `--bench`.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Self>> {
        let mut options = Self {
            writes: 1000,
            warmup: 50,
            kills: 8,
            latches: Latches::Same,
        };
        while let Some(arg) = args.next() {
            let mut count = |name: &str| -> Result<usize> {
                let value = args
                    .next()
                    .with_context(|| format!("{name} needs a number"))?;
                value
                    .parse()
                    .with_context(|| format!("{name} {value:?}: not a count"))
            };
            match arg.as_str() {
                "--writes" => options.writes = count("--writes")?,
                "--warmup" => options.warmup = count("--warmup")?,
                "--kills" => options.kills = count("--kills")?,
                "--new-latches" => options.latches = Latches::New,
                "--bench" => {}
                "-h" | "--help" => return Ok(None),
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        ensure!(
            options.writes > 0 && options.kills > 0,
            "--writes and --kills must be at least 1"
        );
        Ok(Some(options))
    }
}

/// Runs both sides and prints the table.
fn drive() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let dir = TempDir::new()?;

    progress("ringhub: starting 3 members");
    let mut ringhub = ringhub::Cluster::start(&dir.0.join("ringhub"), options.latches)?;
    let ours = Side {
        writes: Some(commit_latency(&mut ringhub, &options, "ringhub")?),
        kills: failovers(&mut ringhub, options.kills, "ringhub")?,
    };
    drop(ringhub);

    progress("etcd (defaults): starting 3 members");
    let mut etcd = etcd::Cluster::start(&dir.0.join("etcd-defaults"), etcd::DEFAULTS)?;
    let version = etcd.version().to_owned();
    let etcd_defaults = Side {
        writes: Some(commit_latency(&mut etcd, &options, "etcd")?),
        kills: failovers(&mut etcd, options.kills, "etcd (defaults)")?,
    };
    drop(etcd);

    progress("etcd (tuned): starting 3 members");
    let mut etcd = etcd::Cluster::start(&dir.0.join("etcd-tuned"), etcd::TUNED)?;
    let etcd_tuned = Side {
        writes: None,
        kills: failovers(&mut etcd, options.kills, "etcd (tuned)")?,
    };
    drop(etcd);

    report::print(&report::Run {
        options,
        dir: &dir.0,
        etcd_version: &version,
        ringhub: ours,
        etcd_defaults,
        etcd_tuned,
    });
    Ok(())
}

/// A cluster of three member processes, as the measurements drive it. Members are named
/// by index, 0 to 2.
trait Members {
    /// Waits until every one of `members` names the same leader, which is not `not`.
    fn agreed_leader(&mut self, members: &[usize], not: Option<usize>) -> Result<Leader>;
    /// Commits `n` writes one after the other through `member`; returns each one's time.
    fn writes(&mut self, member: usize, n: usize) -> Result<Vec<Duration>>;
    /// SIGKILLs `member`; returns when the signal was sent.
    fn kill(&mut self, member: usize) -> Result<Instant>;
    /// Starts `member`, on its data if it ran before.
    fn restart(&mut self, member: usize) -> Result<()>;
}

/// A leader the members agree on.
#[derive(Debug, Clone, Copy)]
struct Leader {
    /// Which member leads.
    member: usize,
    /// The Raft term it leads in: more than one past the last leader's means elections
    /// that failed before it (etcd's status may show the old term for a moment).
    term: u64,
    /// When the last of the members was seen naming it.
    seen_at: Instant,
}

/// What one side measured.
#[derive(Debug)]
struct Side {
    /// Commit latency on the leader and through a follower, if measured.
    writes: Option<Writes>,
    /// Leader kill → new leader, one per kill.
    kills: Vec<Duration>,
}

/// Commit latencies.
#[derive(Debug)]
struct Writes {
    /// Written on the leader.
    leader: Vec<Duration>,
    /// Written through a follower.
    follower: Vec<Duration>,
}

const ALL: [usize; MEMBERS] = [0, 1, 2];

/// Times the writes on the leader, then through a follower.
fn commit_latency(cluster: &mut impl Members, options: &Options, side: &str) -> Result<Writes> {
    let leader = cluster.agreed_leader(&ALL, None)?.member;
    let mut row = |member: usize, role: &str| -> Result<Vec<Duration>> {
        progress(&format!(
            "{side}: {} writes after {} warm-up, on {role}",
            options.writes, options.warmup
        ));
        cluster.writes(member, options.warmup)?;
        cluster.writes(member, options.writes)
    };
    Ok(Writes {
        leader: row(leader, "the leader")?,
        follower: row((leader + 1) % MEMBERS, "a follower")?,
    })
}

/// Kills the leader `kills` times; returns each kill → new leader time.
fn failovers(cluster: &mut impl Members, kills: usize, side: &str) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(kills);
    for kill in 1..=kills {
        let old = cluster.agreed_leader(&ALL, None)?;
        let killed_at = cluster.kill(old.member)?;
        let survivors: Vec<usize> = ALL.into_iter().filter(|m| *m != old.member).collect();
        let new = cluster.agreed_leader(&survivors, Some(old.member))?;
        let time = new.seen_at.saturating_duration_since(killed_at);
        progress(&format!(
            "{side}: kill {kill}/{kills}: member {} (term {}) killed, member {} leads \
             (term {}) after {} ms",
            old.member,
            old.term,
            new.member,
            new.term,
            time.as_millis()
        ));
        times.push(time);
        cluster.restart(old.member)?;
    }
    cluster.agreed_leader(&ALL, None)?;
    Ok(times)
}

/// A line on stderr, so that stdout has only the table.
fn progress(what: &str) {
    eprintln!("vs_etcd: {what}");
}

/// A directory under /tmp, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("ringhub-vs-etcd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, SIGKILLed and reaped on drop, so none outlives the run.
#[derive(Debug)]
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` with its stderr (and stdout unless piped) into `log`.
fn spawn(command: &mut Command, log: &Path, piped_stdout: bool) -> Result<Process> {
    let file = File::create(log).with_context(|| format!("create {}", log.display()))?;
    let stdout = if piped_stdout {
        Stdio::piped()
    } else {
        Stdio::from(file.try_clone()?)
    };
    let child = command
        .stdout(stdout)
        .stderr(file)
        .spawn()
        .with_context(|| format!("start {:?}", command.get_program()))?;
    Ok(Process(child))
}

/// A free TCP port on loopback (free when asked; taken by the member soon after).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The last lines of a log, for an error message (the temp dir goes with the run).
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Time left until `deadline`, or an error naming what did not happen in time.
fn left(deadline: Instant, waiting_for: &str) -> Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow!("timed out waiting for {waiting_for}"))
}
