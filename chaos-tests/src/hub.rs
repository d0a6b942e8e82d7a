//! The whole hub as processes: the simulator (`ringhub-sim`), the test CSMS (`csms.py`
//! on the Python `ocpp` package), one `ringhub-node` per cabinet (each in its own network
//! namespace when the machine allows), and the relays that connect them.
//!
//! ```text
//!   ringhub-sim ◄─ 127.0.0.1 ─ CAN relay per cabinet ◄─ bridge ─ ringhub-node (netns)
//!   csms.py     ◄─ 127.0.0.1 ─ OCPP relay           ◄─ bridge ─┘      ▲ Zenoh ▼
//!                                                         other nodes (netns)
//! ```
//!
//! Every process is killed (SIGKILL, after SIGCONT if paused) and reaped in `Drop`, and
//! keeps its stderr in the run's directory, which is kept when a scenario fails.

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ringhub_proto::config::DEMO_TOML;
use serde_json::Value;

use crate::error::{ChaosError, Result};
use crate::netns::Network;
use crate::relay::Relay;

/// The demo hub's cabinets, in config order (Raft ids 1, 2, 3).
pub const CABINETS: [&str; 3] = ["cab-a", "cab-b", "cab-c"];
/// Longest a process may take to start answering.
const START: Duration = Duration::from_secs(30);
/// Longest a killed process may take to be reaped.
const REAP: Duration = Duration::from_secs(5);
/// The port every node listens on for Zenoh inside its own namespace.
const ZENOH_PORT: u16 = 7447;
/// The port of every node's metrics inside its own namespace.
const METRICS_PORT: u16 = 9100;

/// The workspace root, where `scripts/` and `node/tests/ocpp_csms/` live.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// The programs the hub is made of.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `ringhub-node`.
    pub node: PathBuf,
    /// `ringhub`, the operator's CLI.
    pub cli: PathBuf,
    /// `ringhub-sim`.
    pub sim: PathBuf,
    /// The virtualenv's Python, with the `ocpp` package.
    pub python: PathBuf,
}

impl Bins {
    /// Finds the workspace's binaries beside this program (building them first when run
    /// under cargo and `build` is set) and the CSMS's virtualenv (made by
    /// `scripts/python-env`).
    pub fn locate(build: bool) -> Result<Self> {
        let exe = std::env::current_exe().map_err(ChaosError::io("current_exe"))?;
        let mut dir = exe
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        if dir.ends_with("deps") {
            dir.pop();
        }
        if let Ok(over) = std::env::var("RINGHUB_BIN_DIR") {
            dir = PathBuf::from(over);
        }
        let bins = |dir: &Path| Self {
            node: dir.join("ringhub-node"),
            cli: dir.join("ringhub"),
            sim: dir.join("ringhub-sim"),
            python: PathBuf::new(),
        };
        let found = bins(&dir);
        let missing = !(found.node.exists() && found.cli.exists() && found.sim.exists());
        if build || missing {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut command = Command::new(&cargo);
            command
                .args([
                    "build",
                    "-q",
                    "--bins",
                    "-p",
                    "ringhub-node",
                    "-p",
                    "ringhub-sim",
                ])
                .current_dir(workspace_root());
            if dir.ends_with("release") {
                command.arg("--release");
            }
            let status = command.status().map_err(|e| ChaosError::Command {
                command: format!("{cargo} build"),
                detail: e.to_string(),
            })?;
            if !status.success() {
                return Err(ChaosError::Command {
                    command: format!("{cargo} build --bins -p ringhub-node -p ringhub-sim"),
                    detail: status.to_string(),
                });
            }
        }
        let root = workspace_root();
        let venv = crate::netns::run(
            &root.join("scripts/python-env").to_string_lossy(),
            &[&root
                .join("node/tests/ocpp_csms/requirements.txt")
                .to_string_lossy()],
        )?;
        Ok(Self {
            python: PathBuf::from(venv.trim()).join("bin/python"),
            ..bins(&dir)
        })
    }
}

/// A child process, killed and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    /// Its name in reports.
    pub name: String,
    /// The process; `None` once killed.
    child: Option<Child>,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// Stopped by SIGSTOP and not yet continued.
    paused: bool,
}

impl Proc {
    /// Spawns `command` with its stderr to `log`.
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Result<Self> {
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(ChaosError::io(format!("create {}", log.display())))?;
        command.stdin(Stdio::null()).stderr(stderr);
        let child = command.spawn().map_err(|e| ChaosError::Process {
            process: name.to_owned(),
            detail: format!("spawn: {e}"),
        })?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log,
            paused: false,
        })
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it was started and has not exited.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`…).
    pub fn signal(&mut self, signal: &str) -> Result<()> {
        let pid = self.pid().ok_or_else(|| ChaosError::Process {
            process: self.name.clone(),
            detail: format!("SIG{signal} to a process that is not running"),
        })?;
        crate::netns::run("kill", &[&format!("-{signal}"), &pid.to_string()])?;
        match signal {
            "STOP" => self.paused = true,
            "CONT" => self.paused = false,
            _ => {}
        }
        Ok(())
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Fails only when it has exited already; reaped below either way.
        let _ = child.kill();
        if self.paused {
            let _ = crate::netns::run("kill", &["-CONT", &child.id().to_string()]);
            self.paused = false;
        }
        let deadline = Instant::now() + REAP;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "{} (pid {}) not reaped within {REAP:?}",
            self.name,
            child.id()
        );
    }

    /// The last `lines` lines of its stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a child's stdout into JSON lines on a thread.
fn json_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<Value> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            if sender.send(value).is_err() {
                return;
            }
        }
    });
    lines
}

/// `ringhub-sim`, serving the hub's buses and its control API.
#[derive(Debug)]
pub struct SimProcess {
    /// The process.
    pub proc: Proc,
    /// Its socketcand server, on loopback.
    pub socketcand: SocketAddr,
    /// Its control API, on loopback.
    pub control: SocketAddr,
}

impl SimProcess {
    /// Starts the simulator of `config` with `seed`.
    pub fn start(bins: &Bins, config: &Path, seed: u64, dir: &Path) -> Result<Self> {
        let mut command = Command::new(&bins.sim);
        command
            .arg("--config")
            .arg(config)
            .args(["--port", "0", "--control", "127.0.0.1:0", "--seed"])
            .arg(seed.to_string())
            .arg("--violations-log")
            .arg(dir.join("violations.jsonl"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn("ringhub-sim", command, dir.join("sim.log"))?;
        let stdout = proc
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .ok_or_else(|| ChaosError::Process {
                process: "ringhub-sim".into(),
                detail: "no stdout".into(),
            })?;
        let ready = json_lines(stdout)
            .recv_timeout(START)
            .map_err(|e| ChaosError::Process {
                process: "ringhub-sim".into(),
                detail: format!("no ready line ({e}): {}", proc.log_tail(20)),
            })?;
        let addr = |key: &str| -> Result<SocketAddr> {
            ready[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ChaosError::Process {
                    process: "ringhub-sim".into(),
                    detail: format!("ready line without {key}: {ready}"),
                })
        };
        Ok(Self {
            socketcand: addr("socketcand")?,
            control: addr("control")?,
            proc,
        })
    }
}

/// csms.py, logging every OCPP message as a JSON line.
#[derive(Debug)]
pub struct CsmsProcess {
    /// The process.
    pub proc: Proc,
    /// Where it listens, on loopback.
    pub addr: SocketAddr,
    /// Every line it printed so far, filled by a thread.
    lines: Arc<Mutex<Vec<Value>>>,
}

impl CsmsProcess {
    /// Starts csms.py accepting `tags`.
    pub fn start(bins: &Bins, tags: &[&str], dir: &Path) -> Result<Self> {
        let mut command = Command::new(&bins.python);
        command
            .arg(workspace_root().join("node/tests/ocpp_csms/csms.py"))
            .arg("0")
            .arg("--accept")
            .args(tags)
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn("csms.py", command, dir.join("csms.log"))?;
        let stdout = proc
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .ok_or_else(|| ChaosError::Process {
                process: "csms.py".into(),
                detail: "no stdout".into(),
            })?;
        let receiver = json_lines(stdout);
        let ready = receiver
            .recv_timeout(START)
            .map_err(|e| ChaosError::Process {
                process: "csms.py".into(),
                detail: format!("no listening line ({e}): {}", proc.log_tail(20)),
            })?;
        let port = ready["listening"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| ChaosError::Process {
                process: "csms.py".into(),
                detail: format!("first line {ready}"),
            })?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let record = lines.clone();
        let log = dir.join("csms.jsonl");
        std::thread::spawn(move || {
            use std::io::Write as _;
            let mut file = std::fs::File::create(log).ok();
            while let Ok(line) = receiver.recv() {
                if let Some(file) = file.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                record.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Ok(Self {
            proc,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            lines,
        })
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One cabinet's node.
#[derive(Debug)]
pub struct NodeProcess {
    /// Its cabinet.
    pub cabinet: &'static str,
    /// Its command line after the program, to restart it as it was.
    args: Vec<String>,
    /// Its namespace, when it runs in one.
    netns: Option<String>,
    /// The process.
    pub proc: Proc,
    /// Its Prometheus endpoint.
    pub metrics: SocketAddr,
    /// Its Zenoh listen endpoint.
    pub zenoh: String,
    /// The node program.
    program: PathBuf,
    /// Its log file.
    log: PathBuf,
}

/// Spawns a node program with `args`, inside `netns` when given.
fn spawn_node(
    cabinet: &str,
    program: &Path,
    netns: Option<&str>,
    args: &[String],
    log: &Path,
) -> Result<Proc> {
    let mut command = match netns {
        Some(netns) => {
            // `ip netns exec` execs the program in place: the pid is the node's.
            let mut c = Command::new("ip");
            c.args(["netns", "exec", netns]).arg(program);
            c
        }
        None => Command::new(program),
    };
    command
        .args(args)
        .env("RUST_LOG", "info,zenoh=warn,openraft=warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null());
    Proc::spawn(&format!("ringhub-node {cabinet}"), command, log.to_owned())
}

impl NodeProcess {
    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again on the same data dir and addresses.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.kill();
        self.proc = spawn_node(
            self.cabinet,
            &self.program,
            self.netns.as_deref(),
            &self.args,
            &self.log,
        )?;
        Ok(())
    }
}

/// How the nodes were placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// One network namespace per node: network faults are real cuts.
    Namespaces,
    /// Every node on loopback: network faults cannot be injected.
    Loopback,
}

/// The hub, its processes and its wiring. Fields drop in declaration order: the nodes
/// first, the namespaces last.
#[derive(Debug)]
pub struct Hub {
    /// The nodes, in cabinet order.
    pub nodes: Vec<NodeProcess>,
    /// Each cabinet's CAN relay, in cabinet order.
    pub can: Vec<Relay>,
    /// The nodes' way to the CSMS.
    pub ocpp_relay: Relay,
    /// The CSMS.
    pub csms: CsmsProcess,
    /// The simulator.
    pub sim: SimProcess,
    /// The namespaces, when used.
    pub net: Option<Network>,
    /// How the nodes were placed.
    pub placement: Placement,
    /// The hub config every process reads.
    pub config: PathBuf,
    /// The operator's CLI, `ringhub`.
    pub cli: PathBuf,
    /// The run's directory: config, data dirs, logs.
    pub dir: PathBuf,
}

/// The card every EV of the suite presents; the CSMS accepts it.
pub const CARD: &str = "C4A05001";

impl Hub {
    /// Starts the simulator, the CSMS and every node, in namespaces when `namespaces`
    /// and the machine allows it.
    pub async fn start(bins: &Bins, seed: u64, namespaces: bool, dir: &Path) -> Result<Self> {
        let text = DEMO_TOML.replace("auth = \"free\"", "auth = \"ocpp\"");
        let config = dir.join("hub.toml");
        std::fs::write(&config, text).map_err(ChaosError::io("write hub.toml"))?;
        let net = if namespaces {
            crate::netns::clean_stale();
            Some(Network::create(CABINETS.len())?)
        } else {
            None
        };
        let placement = if net.is_some() {
            Placement::Namespaces
        } else {
            Placement::Loopback
        };
        let host: IpAddr = net
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |n| IpAddr::V4(n.host_ip));
        let sim = SimProcess::start(bins, &config, seed, dir)?;
        let csms = CsmsProcess::start(bins, &[CARD], dir)?;
        let ocpp_relay = Relay::start(SocketAddr::new(host, 0), csms.addr, false).await?;
        let mut can = Vec::new();
        for _ in CABINETS {
            can.push(Relay::start(SocketAddr::new(host, 0), sim.socketcand, true).await?);
        }
        let addrs: Vec<(SocketAddr, SocketAddr)> = match &net {
            Some(net) => net
                .nodes
                .iter()
                .map(|n| {
                    (
                        SocketAddr::new(IpAddr::V4(n.ip), ZENOH_PORT),
                        SocketAddr::new(IpAddr::V4(n.ip), METRICS_PORT),
                    )
                })
                .collect(),
            None => CABINETS
                .iter()
                .map(|_| (free_loopback(), free_loopback()))
                .collect(),
        };
        let mut nodes = Vec::new();
        for (i, cabinet) in CABINETS.iter().enumerate() {
            let zenoh = format!("tcp/{}", addrs[i].0);
            let data_dir = dir.join(cabinet);
            let mut args = vec![
                "--node".to_owned(),
                (*cabinet).to_owned(),
                "--config".to_owned(),
                config.to_string_lossy().into_owned(),
                "--can".to_owned(),
                format!("socketcand:{}/{cabinet}", can[i].addr),
                "--data-dir".to_owned(),
                data_dir.to_string_lossy().into_owned(),
                "--metrics".to_owned(),
                addrs[i].1.to_string(),
                "--zenoh-listen".to_owned(),
                zenoh.clone(),
                "--csms".to_owned(),
                format!("ws://{}/ocpp", ocpp_relay.addr),
            ];
            // One link per pair, as the config's default mesh has it.
            for (j, (peer, _)) in addrs.iter().enumerate() {
                if j < i {
                    args.push("--zenoh-connect".to_owned());
                    args.push(format!("tcp/{peer}"));
                }
            }
            let netns = net.as_ref().map(|n| n.nodes[i].netns.clone());
            let log = dir.join(format!("{cabinet}.log"));
            let proc = spawn_node(cabinet, &bins.node, netns.as_deref(), &args, &log)?;
            nodes.push(NodeProcess {
                cabinet,
                args,
                netns,
                proc,
                metrics: addrs[i].1,
                zenoh,
                program: bins.node.clone(),
                log,
            });
        }
        Ok(Self {
            nodes,
            can,
            ocpp_relay,
            csms,
            sim,
            net,
            placement,
            config,
            cli: bins.cli.clone(),
            dir: dir.to_owned(),
        })
    }

    /// Every node's Zenoh endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.zenoh.clone()).collect()
    }
}

/// A loopback address whose port was free a moment ago.
fn free_loopback() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}
