//! One of our members: this binary started with [`MEMBER_ENV`], running a cabinet's
//! cluster member as a node does (`node/src/runtime.rs`, `run`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use openraft::{BasicNode, RaftMetrics};
use ringhub_cluster::record::{
    ClearRule, ClientId, Command, LatchSpec, Outcome, Request, Severity, Topology,
};
use ringhub_cluster::service::{Cluster, ClusterConfig};
use ringhub_cluster::types::NodeId;
use ringhub_proto::config::{CabinetId, HubConfig};
use tokio::sync::{mpsc, watch};

use crate::{DIR_ENV, ENDPOINTS_ENV, Latches, MEMBER_ENV};

/// The PLC watchdog a node assumes by default (`node/src/connector`, `Timing::watchdog`):
/// with the lease, how long a lost cabinet's neighbourhood is left alone.
const PLC_WATCHDOG: Duration = Duration::from_millis(500);

/// Runs member `index` until its stdin closes.
pub(crate) fn run(index: &str) -> Result<()> {
    let index: usize = index.parse().context(MEMBER_ENV)?;
    let endpoints: Vec<String> = std::env::var(ENDPOINTS_ENV)
        .context(ENDPOINTS_ENV)?
        .split(',')
        .map(str::to_owned)
        .collect();
    let data_dir = PathBuf::from(std::env::var(DIR_ENV).context(DIR_ENV)?);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve(index, endpoints, data_dir))
}

/// The hub config every member runs: the demo hub's cabinets and ring.
fn hub_config() -> Result<HubConfig> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/hubs/demo.toml");
    Ok(HubConfig::load(path)?)
}

async fn serve(index: usize, endpoints: Vec<String>, data_dir: PathBuf) -> Result<()> {
    let hub = hub_config()?;
    let cabinets: Vec<String> = hub.cabinets.iter().map(|c| c.id.to_string()).collect();
    let me = cabinets
        .get(index)
        .with_context(|| format!("no cabinet {index} in the demo hub"))?
        .clone();
    let listen = endpoints
        .get(index)
        .with_context(|| format!("no endpoint {index}"))?;
    // One link per pair, opened by the later member, as a hub config's default mesh has it.
    let connect = endpoints[..index].to_vec();
    let session = zenoh::open(zenoh_config(listen, &connect)?)
        .await
        .map_err(|e| anyhow!("zenoh session: {e}"))?;
    let cluster = Cluster::start(
        &session,
        ClusterConfig {
            hub: hub.hub.id.to_string(),
            cabinets,
            me: me.clone(),
            data_dir,
            topology: Topology::from_config(&hub),
            hold: ringhub_cluster::lease::LEASE + PLC_WATCHDOG,
            ratings: ringhub_cluster::demand::Ratings::from_config(&hub),
        },
    )
    .await?;
    tokio::spawn(report_leaders(cluster.metrics()));
    let mut writer = Writer {
        client: ClientId(format!("vs-etcd/{me}/{}", std::process::id())),
        serial: 0,
        raised_by: me.parse()?,
    };
    let mut commands = stdin_lines();
    while let Some(command) = commands.recv().await {
        match parse_write(&command) {
            Some((n, latches)) => match writer.writes(&cluster, n, latches).await {
                Ok(times) => println!("wrote {times}"),
                Err(why) => println!("failed {why}"),
            },
            None => println!("failed unknown command {command:?}"),
        }
    }
    cluster.shutdown().await;
    session
        .close()
        .await
        .map_err(|e| anyhow!("zenoh close: {e}"))
}

/// A peer-mode session on loopback, as a node opens it.
fn zenoh_config(listen: &str, connect: &[String]) -> Result<zenoh::Config> {
    Ok(ringhub_cluster::transport::peer_config(
        &[listen.to_owned()],
        connect,
    )?)
}

/// Prints `leader <id|none> term <t>` whenever the leader this member knows changes.
async fn report_leaders(mut metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>) {
    let mut last = None;
    loop {
        let (leader, term) = {
            let now = metrics.borrow_and_update();
            (now.current_leader, now.current_term)
        };
        if last != Some(leader) {
            let id = leader.map_or_else(|| "none".to_owned(), |id| id.to_string());
            println!("leader {id} term {term}");
            last = Some(leader);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Stdin's lines; a blocking thread reads them, since tokio's stdin is the same.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if sender.blocking_send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// `write <n> <same|new>`.
fn parse_write(command: &str) -> Option<(usize, Latches)> {
    let mut words = command.split_whitespace();
    (words.next()? == "write").then_some(())?;
    let n = words.next()?.parse().ok()?;
    let latches = match words.next()? {
        "same" => Latches::Same,
        "new" => Latches::New,
        _ => return None,
    };
    Some((n, latches))
}

/// This member as a client of the record.
struct Writer {
    /// New on every start, so that serials start again at 1.
    client: ClientId,
    /// The last serial sent.
    serial: u64,
    /// This cabinet, as the latches' origin.
    raised_by: CabinetId,
}

impl Writer {
    /// Commits `n` latch raises one after the other; returns their times in ns,
    /// space-separated.
    async fn writes(&mut self, cluster: &Cluster, n: usize, latches: Latches) -> Result<String> {
        let mut times = String::new();
        for _ in 0..n {
            self.serial += 1;
            let request = self.raise(latches);
            let start = Instant::now();
            let outcome = cluster.write(request).await?;
            let time = start.elapsed();
            if let Outcome::Rejected(why) = outcome {
                bail!("write {} rejected: {why}", self.serial);
            }
            times.push_str(&format!(" {}", time.as_nanos()));
        }
        Ok(times)
    }

    /// The next request: a latch raise, a new latch or the same one again.
    fn raise(&self, latches: Latches) -> Request {
        let subject = match latches {
            Latches::Same => "vs_etcd".to_owned(),
            Latches::New => format!("vs_etcd {} {}", self.client.0, self.serial),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Request {
            client: self.client.clone(),
            serial: self.serial,
            command: Command::RaiseLatch(LatchSpec {
                evidence: Vec::new(),
                code: "BENCH_LATCH".into(),
                subject,
                severity: Severity::Warning,
                detail: "raised by the vs_etcd benchmark".into(),
                raised_by: self.raised_by.clone(),
                raised_unix_ms: now,
                clear_rule: ClearRule::Operator,
            }),
        }
    }
}
