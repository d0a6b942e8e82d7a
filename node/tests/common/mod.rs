//! What the node's integration tests against the simulator share (issue 5, "Tests"):
//!
//! ```text
//!   test process                                     child process
//!   ┌──────────────────────────────┐  socketcand/TCP  ┌──────────────┐
//!   │ in-process Sim (free ports) ◄┼──────────────────┤ ringhub-node │
//!   │   WorldHandle: act, state    │                  │  (SIGKILL in │
//!   │ Monitor: samples the truth   │  Zenoh/TCP       │   Drop)      │
//!   │ ZenohWatch: GunSession, ... ◄┼──────────────────┤              │
//!   │ scrape(): GET /metrics      ◄┼──────────────────┤              │
//!   └──────────────────────────────┘                  └──────────────┘
//! ```
//!
//! The node is a real process talking to the simulator over its real socketcand socket;
//! the test drives the simulated world through the same handle the control API uses. No
//! step waits on a clock: every wait polls a condition until a deadline, and fails with
//! what it last saw. Every spawned node is killed (SIGKILL) and reaped in `Drop`, and its
//! stderr, kept in a temp dir, is printed when a test fails.

#![allow(dead_code, unreachable_pub)]

pub mod cluster;
pub mod csms;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use ringhub_proto::config::{DEMO_TOML, HubConfig};
use ringhub_proto::v1;
use ringhub_sim::server::runner::WorldHandle;
use ringhub_sim::server::{Sim, SimOptions};
use ringhub_sim::world::{Action, ActionReply, EvSpec, FaultKind, FaultSpec, Violation};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Longest a single awaited condition may take.
pub const STEP: Duration = Duration::from_secs(20);
/// Longest a whole test may take; a hung test fails instead of stalling the suite.
pub const TEST_BUDGET: Duration = Duration::from_secs(120);
/// How often a condition is probed while waiting for it.
const POLL: Duration = Duration::from_millis(50);
/// How often the [`Monitor`] samples the ground truth (the physics step is 10 ms; a
/// contactor takes 30 ms to move, so nothing that moves a contactor is missed).
const SAMPLE: Duration = Duration::from_millis(10);
/// Longest a killed node may take to be reaped.
const REAP: Duration = Duration::from_secs(5);

/// The card the local-auth tests present.
pub const CARD: &str = "04A23B1C";

/// Runs a whole test body within [`TEST_BUDGET`].
pub async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BUDGET, test)
        .await
        .unwrap_or_else(|_| panic!("the test took longer than {TEST_BUDGET:?}"))
}

/// Probes `probe` until it returns `Ok`, failing after `timeout` with its last `Err`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A loopback port that was free a moment ago, and that no other test of this process
/// was handed (the OS may give a port just released here to the next caller).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind loopback")
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A directory removed when dropped, unless the test failed (then it is kept, and named,
/// for the post-mortem).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ringhub-node-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for the post-mortem: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The demo hub with cabinet `cab-a` on local authorisation accepting `tags`: the TOML
/// text (for the node's `--config`) and the parsed config (for the simulator).
pub fn demo_with_local_auth(tags: &[&str]) -> (String, HubConfig) {
    let list = tags
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    // cab-a is the first cabinet, so its `auth` line is the first one.
    let free = "\nauth = \"free\"\n";
    assert!(DEMO_TOML.contains(free), "the demo config changed shape");
    let text = DEMO_TOML.replacen(
        free,
        &format!("\nauth = \"local\"\nlocal_auth_list = [{list}]\n"),
        1,
    );
    let config = HubConfig::parse(&text, "demo-local.toml").expect("the edited demo parses");
    let cab_a = config
        .cabinets
        .iter()
        .find(|c| c.id == "cab-a")
        .expect("cab-a");
    assert_eq!(cab_a.local_auth_list, tags, "the list landed on cab-a");
    (text, config)
}

/// The simulator of `config` on free loopback ports.
pub async fn start_sim(config: HubConfig, seed: u64) -> Sim {
    tokio::time::timeout(STEP, Sim::start(SimOptions::ephemeral(config, seed)))
        .await
        .expect("the simulator starts in time")
        .expect("the simulator starts")
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// `--node`: the cabinet the node runs.
    pub node: &'static str,
    /// `--auth`.
    pub auth: &'static str,
    /// `--config`; the embedded demo hub when `None`.
    pub config: Option<PathBuf>,
    /// `--data-dir`; keep it to restart the same node.
    pub data_dir: PathBuf,
    /// The simulator's socketcand server.
    pub socketcand: SocketAddr,
    /// `--zenoh-listen`; a free loopback port when `None`.
    pub zenoh_listen: Option<String>,
    /// `--zenoh-connect`; the config's (the cabinets listed before) when empty.
    pub zenoh_connect: Vec<String>,
}

/// A `ringhub-node` process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    /// The process; `None` once killed.
    child: Option<Child>,
    /// Its Prometheus address.
    pub metrics: SocketAddr,
    /// Its Zenoh listen endpoint.
    pub zenoh: String,
    /// Where its stderr goes.
    log: PathBuf,
}

impl NodeProcess {
    /// Starts the node on fresh ports, logging into `log_dir`.
    pub fn spawn(args: &NodeArgs, log_dir: &Path) -> Self {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let zenoh = args
            .zenoh_listen
            .clone()
            .unwrap_or_else(|| format!("tcp/127.0.0.1:{}", free_port()));
        let log = log_dir.join(format!("node-{n}.log"));
        let stderr = std::fs::File::create(&log).expect("create the node log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringhub-node"));
        command
            .args(["--node", args.node, "--auth", args.auth])
            .arg("--can")
            .arg(format!("socketcand:{}/{}", args.socketcand, args.node))
            .arg("--data-dir")
            .arg(&args.data_dir)
            .arg("--metrics")
            .arg(metrics.to_string())
            .args(["--zenoh-listen", &zenoh])
            .env("RUST_LOG", "info,zenoh=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(config) = &args.config {
            command.arg("--config").arg(config);
        }
        for endpoint in &args.zenoh_connect {
            command.arg("--zenoh-connect").arg(endpoint);
        }
        let child = command.spawn().expect("spawn ringhub-node");
        Self {
            child: Some(child),
            metrics,
            zenoh,
            log,
        }
    }

    /// Kills the node with SIGKILL (no shutdown path runs) and reaps it.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Fails only if it has exited already; it is reaped below either way.
        let _ = child.kill();
        let deadline = Instant::now() + REAP;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!("ringhub-node {} not reaped within {REAP:?}", child.id());
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Stops the node with SIGTERM, its clean shutdown path, and reaps it; fails unless it
    /// exits successfully within [`REAP`] after the signal. Returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(signalled.success(), "kill -TERM {} failed", child.id());
        let signalled_at = Instant::now();
        let deadline = signalled_at + REAP;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "ringhub-node exited with {status}:\n{}",
                        self.log_text()
                    );
                    return signalled_at.elapsed();
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ringhub-node did not stop within {REAP:?} of SIGTERM:\n{}",
                        self.log_text()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(error) => panic!("waiting for ringhub-node: {error}"),
            }
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the node.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the node was killed");
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {} failed", child.id());
    }

    /// Fails if the node has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("the node was killed");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ringhub-node exited ({status}):\n{}", self.log_text());
        }
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// One sample of a Prometheus scrape.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub Vec<Sample>);

impl Metrics {
    /// The value of the first sample of `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// `ringhub_faults_active{segment, code}`, 0 when absent.
    pub fn fault(&self, segment: u16, code: &str) -> f64 {
        let segment = segment.to_string();
        self.get(
            "ringhub_faults_active",
            &[("segment", &segment), ("code", code)],
        )
        .unwrap_or(0.0)
    }

    /// The session phase of `gun` (the `phase` label of the series at 1).
    pub fn phase(&self, gun: u16) -> Option<String> {
        let gun = gun.to_string();
        self.0
            .iter()
            .find(|s| {
                s.name == "ringhub_gun_session_phase"
                    && s.labels.get("gun") == Some(&gun)
                    && s.value == 1.0
            })
            .and_then(|s| s.labels.get("phase").cloned())
    }

    /// A gun gauge (`ringhub_gun_<what>`), 0 when absent.
    pub fn gun(&self, name: &str, gun: u16) -> f64 {
        let gun = gun.to_string();
        self.get(name, &[("gun", &gun)]).unwrap_or(0.0)
    }

    /// `ringhub_plc_online{segment}`.
    pub fn plc_online(&self, segment: u16) -> Option<f64> {
        let segment = segment.to_string();
        self.get("ringhub_plc_online", &[("segment", &segment)])
    }
}

/// `GET /metrics` over HTTP/1.0.
pub async fn scrape(addr: SocketAddr) -> Result<Metrics, String> {
    let body = scrape_text(addr).await?;
    Ok(Metrics(body.lines().filter_map(parse_sample).collect()))
}

/// `GET /metrics` over HTTP/1.0: the body.
pub async fn scrape_text(addr: SocketAddr) -> Result<String, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        String::from_utf8(response).map_err(|e| e.to_string())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "the scrape timed out".to_owned())??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {response:?}"))?;
    if !head.contains(" 200") {
        return Err(format!("scrape answered {head}"));
    }
    Ok(body.to_owned())
}

/// One sample line of the text format (the node's label values have no escapes).
fn parse_sample(line: &str) -> Option<Sample> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_owned(), v.trim_matches('"').to_owned()))
        })
        .collect();
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: value.parse().ok()?,
    })
}

/// The ground truth, as `GET /state` serves it.
pub async fn state(world: &WorldHandle) -> Value {
    world.state().await.expect("the simulated world runs")
}

/// Gun `id` in a ground-truth state.
pub fn gun(state: &Value, id: u64) -> &Value {
    state["guns"]
        .as_array()
        .and_then(|guns| guns.iter().find(|g| g["id"] == id))
        .unwrap_or_else(|| panic!("no gun {id} in the state"))
}

/// Segment `id` in a ground-truth state.
pub fn segment(state: &Value, id: u64) -> &Value {
    state["segments"]
        .as_array()
        .and_then(|segments| segments.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no segment {id} in the state"))
}

/// Contactor `name` (`gc`, `mc0`…, `mn`) of segment `id`.
pub fn contactor<'a>(state: &'a Value, id: u64, name: &str) -> &'a Value {
    segment(state, id)["contactors"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no contactor {name} on segment {id}"))
}

/// Contactors of segment `id` commanded or closed, by name: what is not fully open.
pub fn not_open(state: &Value, id: u64) -> Vec<String> {
    segment(state, id)["contactors"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["commanded"] == true || c["closed"] == true)
                .map(|c| c.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A short line about gun `id` for failure messages.
pub fn describe_gun(state: &Value, id: u64) -> String {
    let g = gun(state, id);
    format!(
        "gun {id}: plugged {} cp {} hlc {} auth {} lock {} energised {} {} A {} kWh soc {}; seg {id} plc {} contactors {:?}",
        g["plugged"],
        g["cp_state"],
        g["hlc_phase"],
        g["auth"],
        g["lock"],
        g["energised"],
        g["current_a"],
        g["energy_kwh"],
        g["soc"],
        segment(state, id)["plc_state"],
        not_open(state, id),
    )
}

/// The EV the tests plug in: 400 V, 100 A.
pub fn ev(gun: u16, soc: f64, target_soc: f64, capacity_kwh: f64) -> EvSpec {
    EvSpec {
        gun,
        battery_v: 400.0,
        soc,
        max_current_a: 100.0,
        target_soc,
        ev_mac: Some("02:00:00:00:00:AA".into()),
        emaid: None,
        capacity_kwh,
    }
}

/// Applies an action the world must accept.
pub async fn act(world: &WorldHandle, action: Action) -> ActionReply {
    let what = format!("{action:?}");
    world
        .apply(action)
        .await
        .expect("the simulated world runs")
        .unwrap_or_else(|e| panic!("the world refused {what}: {e}"))
}

/// Injects a fault; its id.
pub async fn inject(world: &WorldHandle, kind: FaultKind, target: u16, contactor: &str) -> u64 {
    let spec = FaultSpec {
        kind,
        target,
        contactor: (!contactor.is_empty()).then(|| contactor.to_owned()),
    };
    match act(world, Action::InjectFault(spec)).await {
        ActionReply::FaultInjected { id } => id,
        other => panic!("fault injection answered {other:?}"),
    }
}

/// Every violation the referee has recorded.
pub async fn violations(world: &WorldHandle) -> Vec<Violation> {
    world.violations().await.expect("the simulated world runs")
}

/// Fails with the list if the referee recorded any violation.
pub async fn assert_no_violations(world: &WorldHandle) {
    let all = violations(world).await;
    assert!(
        all.is_empty(),
        "the referee recorded {} violation(s): {all:#?}",
        all.len()
    );
}

/// What the [`Monitor`] has seen since it started or was last reset.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Samples taken.
    pub samples: u64,
    /// Guns seen energised (GC closed onto a connected EV).
    pub energised: BTreeSet<u64>,
    /// Highest current seen per gun.
    pub max_current: BTreeMap<u64, f64>,
    /// (segment, contactor) seen commanded closed at the PLC.
    pub commanded: BTreeSet<(u64, String)>,
    /// (segment, PLC firmware state) seen.
    pub plc_states: BTreeSet<(u64, String)>,
    /// (gun, HLC phase) seen.
    pub hlc_phases: BTreeSet<(u64, String)>,
}

/// Samples the ground truth every 10 ms in the background, so that a test can assert on
/// what happened between its own looks (a gun that was never energised, a watchdog
/// state that came and went).
#[derive(Debug)]
pub struct Monitor {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Monitor {
    pub fn start(world: WorldHandle) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE);
            loop {
                tick.tick().await;
                let Ok(state) = world.state().await else {
                    return;
                };
                let mut seen = record.lock().unwrap_or_else(|p| p.into_inner());
                seen.samples += 1;
                for g in state["guns"].as_array().into_iter().flatten() {
                    let id = g["id"].as_u64().unwrap_or(u64::MAX);
                    if g["energised"] == true {
                        seen.energised.insert(id);
                    }
                    let current = g["current_a"].as_f64().unwrap_or(0.0);
                    let max = seen.max_current.entry(id).or_insert(0.0);
                    *max = max.max(current);
                    if let Some(phase) = g["hlc_phase"].as_str() {
                        seen.hlc_phases.insert((id, phase.to_owned()));
                    }
                }
                for s in state["segments"].as_array().into_iter().flatten() {
                    let id = s["id"].as_u64().unwrap_or(u64::MAX);
                    if let Some(plc) = s["plc_state"].as_str() {
                        seen.plc_states.insert((id, plc.to_owned()));
                    }
                    for c in s["contactors"].as_array().into_iter().flatten() {
                        if c["commanded"] == true {
                            let name = c["name"].as_str().unwrap_or("?").to_owned();
                            seen.commanded.insert((id, name));
                        }
                    }
                }
            }
        });
        Self { seen, task }
    }

    /// What was seen so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets what was seen; returns it.
    pub fn reset(&self) -> Seen {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until at least `n` more samples have been taken: the window a negative
    /// assertion ("never energised") covers.
    pub async fn observe(&self, what: &str, n: u64) -> Seen {
        let start = self.seen().samples;
        eventually(what, STEP, async || {
            let seen = self.seen();
            if seen.samples >= start + n {
                Ok(seen)
            } else {
                Err(format!("{} samples", seen.samples - start))
            }
        })
        .await
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a Zenoh subscriber on `ringhub/demo/**` has received.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Latest `gun/<gun>/session` per gun.
    pub guns: BTreeMap<u32, v1::GunSession>,
    /// Latest `seg/<seg>/state` per segment.
    pub segments: BTreeMap<u32, v1::SegmentState>,
    /// OCPP statuses published per gun, consecutive repeats collapsed.
    pub statuses: BTreeMap<u32, Vec<v1::OcppStatus>>,
    /// Session phases published per gun, consecutive repeats collapsed.
    pub phases: BTreeMap<u32, Vec<v1::SessionPhase>>,
    /// Highest meter power published per gun, W.
    pub max_power_w: BTreeMap<u32, i64>,
    /// Samples that did not decode.
    pub undecodable: u64,
}

impl Published {
    /// The latest OCPP status of `gun`.
    pub fn status(&self, gun: u32) -> Option<v1::OcppStatus> {
        self.guns
            .get(&gun)
            .and_then(|g| v1::OcppStatus::try_from(g.ocpp_status).ok())
    }

    /// The latest session phase of `gun`.
    pub fn phase(&self, gun: u32) -> Option<v1::SessionPhase> {
        self.guns
            .get(&gun)
            .and_then(|g| v1::SessionPhase::try_from(g.phase).ok())
    }

    /// Whether `wanted` appears in order within the statuses published for `gun`.
    pub fn statuses_in_order(&self, gun: u32, wanted: &[v1::OcppStatus]) -> bool {
        let mut wanted = wanted.iter().peekable();
        for status in self.statuses.get(&gun).into_iter().flatten() {
            if wanted.peek() == Some(&status) {
                wanted.next();
            }
        }
        wanted.peek().is_none()
    }
}

/// A Zenoh session connected to one node, subscribed to everything under `ringhub/demo/`.
pub struct ZenohWatch {
    published: Arc<Mutex<Published>>,
    /// Kept alive: dropping it undeclares the subscriber.
    _subscriber: zenoh::pubsub::Subscriber<()>,
    _session: zenoh::Session,
}

impl std::fmt::Debug for ZenohWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZenohWatch").finish_non_exhaustive()
    }
}

impl ZenohWatch {
    /// Connects to `endpoint` and subscribes; returns once a gun session has arrived.
    pub async fn connect(endpoint: &str) -> Self {
        let config = ringhub_node::publish::zenoh_config(&[], &[endpoint.to_owned()])
            .expect("a Zenoh config");
        let session = tokio::time::timeout(STEP, zenoh::open(config))
            .await
            .expect("the Zenoh session opens in time")
            .expect("the Zenoh session opens");
        let published = Arc::new(Mutex::new(Published::default()));
        let record = published.clone();
        let subscriber = tokio::time::timeout(
            STEP,
            session
                .declare_subscriber("ringhub/demo/**")
                .callback(move |sample| {
                    let key = sample.key_expr().as_str().to_owned();
                    let bytes = sample.payload().to_bytes();
                    let mut p = record.lock().unwrap_or_else(|p| p.into_inner());
                    if key.ends_with("/session") {
                        match v1::GunSession::decode(bytes.as_ref()) {
                            Ok(g) => p.record_gun(g),
                            Err(_) => p.undecodable += 1,
                        }
                    } else if key.contains("/seg/") && key.ends_with("/state") {
                        match v1::SegmentState::decode(bytes.as_ref()) {
                            Ok(s) => {
                                p.segments.insert(s.segment_id, s);
                            }
                            Err(_) => p.undecodable += 1,
                        }
                    }
                }),
        )
        .await
        .expect("the subscriber is declared in time")
        .expect("declare the subscriber");
        let watch = Self {
            published,
            _subscriber: subscriber,
            _session: session,
        };
        eventually("a first gun session on Zenoh", STEP, async || {
            let p = watch.published();
            if p.guns.is_empty() {
                Err("nothing yet".into())
            } else {
                Ok(())
            }
        })
        .await;
        watch
    }

    /// What has arrived so far.
    pub fn published(&self) -> Published {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the latest publication of `gun` has OCPP status `status`.
    pub async fn wait_status(&self, gun: u32, status: v1::OcppStatus) -> v1::GunSession {
        eventually(
            &format!("gun {gun} {status:?} on Zenoh"),
            STEP,
            async || {
                let p = self.published();
                match p.guns.get(&gun) {
                    Some(g) if g.ocpp_status == status as i32 => Ok(g.clone()),
                    Some(g) => Err(format!(
                        "{:?} / {:?}",
                        v1::OcppStatus::try_from(g.ocpp_status),
                        v1::SessionPhase::try_from(g.phase)
                    )),
                    None => Err("no publication".into()),
                }
            },
        )
        .await
    }
}

impl Published {
    fn record_gun(&mut self, g: v1::GunSession) {
        let id = g.gun_id;
        if let Ok(status) = v1::OcppStatus::try_from(g.ocpp_status) {
            let seen = self.statuses.entry(id).or_default();
            if seen.last() != Some(&status) {
                seen.push(status);
            }
        }
        if let Ok(phase) = v1::SessionPhase::try_from(g.phase) {
            let seen = self.phases.entry(id).or_default();
            if seen.last() != Some(&phase) {
                seen.push(phase);
            }
        }
        if let Some(meter) = &g.meter {
            let max = self.max_power_w.entry(id).or_insert(0);
            *max = (*max).max(i64::from(meter.power_w));
        }
        self.guns.insert(id, g);
    }
}

/// A simulator, a node of cabinet `cab-a` against it, and the observers.
#[derive(Debug)]
pub struct Rig {
    /// Declared first: fields drop in declaration order, so the node process is killed
    /// before the simulator it talks to stops and before its temp dir goes.
    pub node: NodeProcess,
    pub monitor: Monitor,
    pub sim: Sim,
    pub world: WorldHandle,
    /// The node's `--data-dir` (inside `dir`).
    pub data_dir: PathBuf,
    /// How the node was started, to restart it.
    pub args: NodeArgs,
    pub dir: TempDir,
}

impl Rig {
    /// Starts the simulator of `config` and a node with `--auth auth` (and `--config`
    /// from `config_text` when given), and waits until the node sees both PLCs of cab-a.
    pub async fn start(
        name: &str,
        config: HubConfig,
        config_text: Option<&str>,
        auth: &'static str,
    ) -> Self {
        let dir = TempDir::new(name);
        let config_path = config_text.map(|text| {
            let path = dir.path().join("hub.toml");
            std::fs::write(&path, text).expect("write the hub config");
            path
        });
        let sim = start_sim(config, 7).await;
        let world = sim.world();
        let monitor = Monitor::start(world.clone());
        let data_dir = dir.path().join("data");
        let args = NodeArgs {
            node: "cab-a",
            auth,
            config: config_path,
            data_dir: data_dir.clone(),
            socketcand: sim.socketcand_addr(),
            zenoh_listen: None,
            zenoh_connect: Vec::new(),
        };
        let node = NodeProcess::spawn(&args, dir.path());
        let mut rig = Self {
            node,
            monitor,
            sim,
            world,
            data_dir,
            args,
            dir,
        };
        rig.wait_ready().await;
        rig
    }

    /// Waits until the node's metrics say both PLCs of cab-a are online.
    pub async fn wait_ready(&mut self) {
        self.node.assert_running();
        let addr = self.node.metrics;
        eventually("the node to see its PLCs", STEP, async || {
            let m = scrape(addr).await?;
            match (m.plc_online(0), m.plc_online(1)) {
                (Some(a), Some(b)) if a == 1.0 && b == 1.0 => Ok(()),
                other => Err(format!("plc_online {other:?}")),
            }
        })
        .await;
        self.node.assert_running();
    }

    /// Kills the node with SIGKILL.
    pub fn kill_node(&mut self) {
        self.node.kill();
    }

    /// Stops the node cleanly (SIGTERM).
    pub fn terminate_node(&mut self) {
        self.node.terminate();
    }

    /// Starts the node again with the same data dir (fresh ports).
    pub async fn restart_node(&mut self) {
        self.node.kill();
        self.node = NodeProcess::spawn(&self.args, self.dir.path());
        self.wait_ready().await;
    }

    /// The ground truth now.
    pub async fn state(&self) -> Value {
        state(&self.world).await
    }

    /// A scrape of the node's metrics.
    pub async fn metrics(&self) -> Metrics {
        scrape(self.node.metrics)
            .await
            .unwrap_or_else(|e| panic!("scrape: {e}"))
    }

    /// Waits until `check` accepts the ground truth.
    pub async fn wait_sim<T>(&self, what: &str, check: impl Fn(&Value) -> Result<T, String>) -> T {
        eventually(what, STEP, async || check(&self.state().await)).await
    }

    /// Waits until `check` accepts a scrape of the node's metrics.
    pub async fn wait_metrics<T>(
        &self,
        what: &str,
        check: impl Fn(&Metrics) -> Result<T, String>,
    ) -> T {
        let addr = self.node.metrics;
        eventually(what, STEP, async || check(&scrape(addr).await?)).await
    }

    /// Waits until the node's metrics show `code` active (count ≥ 1) on `segment`.
    pub async fn wait_fault(&self, segment: u16, code: &str) -> Metrics {
        self.wait_metrics(&format!("{code} on segment {segment}"), |m| {
            if m.fault(segment, code) >= 1.0 {
                Ok(m.clone())
            } else {
                Err(active_faults(m))
            }
        })
        .await
    }

    /// Waits until the node's metrics show gun `gun` in session phase `phase`.
    pub async fn wait_phase(&self, gun: u16, phase: &str) -> Metrics {
        self.wait_metrics(&format!("gun {gun} in phase {phase}"), |m| {
            match m.phase(gun) {
                Some(p) if p == phase => Ok(m.clone()),
                other => Err(format!("phase {other:?}; {}", active_faults(m))),
            }
        })
        .await
    }

    /// Plugs `spec` in and waits until the gun is energised, current flows in
    /// CurrentDemand, and the node's metrics say Charging with power.
    pub async fn start_charging(&self, spec: EvSpec) -> Metrics {
        let id = u64::from(spec.gun);
        let gun_id = spec.gun;
        act(&self.world, Action::Plug(spec)).await;
        self.wait_sim(&format!("gun {id} charging"), |s| {
            let g = gun(s, id);
            if g["energised"] == true
                && g["hlc_phase"] == "CurrentDemand"
                && g["current_a"].as_f64().unwrap_or(0.0) > 10.0
            {
                Ok(())
            } else {
                Err(describe_gun(s, id))
            }
        })
        .await;
        self.wait_metrics(&format!("gun {gun_id} charging in the metrics"), |m| {
            let power = m.gun("ringhub_gun_power_watts", gun_id);
            if m.phase(gun_id).as_deref() == Some("charging") && power > 1000.0 {
                Ok(m.clone())
            } else {
                Err(format!("phase {:?}, {power} W", m.phase(gun_id)))
            }
        })
        .await
    }

    /// Unplugs the EV and waits until it has left and every contactor of the gun's
    /// segment is open.
    pub async fn unplug_and_wait(&self, id: u16) {
        act(&self.world, Action::Unplug { gun: id }).await;
        let id = u64::from(id);
        self.wait_sim(&format!("the EV to leave gun {id}"), |s| {
            if gun(s, id)["plugged"] == false && not_open(s, id).is_empty() {
                Ok(())
            } else {
                Err(describe_gun(s, id))
            }
        })
        .await;
    }
}

/// The active faults of a scrape, for failure messages.
pub fn active_faults(m: &Metrics) -> String {
    let mut out = String::from("active faults:");
    for s in m.0.iter().filter(|s| s.name == "ringhub_faults_active") {
        if s.value > 0.0 {
            let _ = write!(
                out,
                " {}@seg{}={}",
                s.labels.get("code").map_or("?", String::as_str),
                s.labels.get("segment").map_or("?", String::as_str),
                s.value
            );
        }
    }
    out
}
