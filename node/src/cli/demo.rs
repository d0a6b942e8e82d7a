//! `ringhub demo`: a whole simulated hub on loopback, on the embedded demo config
//! (`deploy/hubs/demo.toml`): the simulator in this process, one `ringhub node` process
//! per cabinet talking to it over socketcand, EVs arriving on a script, and a live table
//! of what the nodes publish on Zenoh next to what the simulator says is physically
//! true. It ends after `--duration` (or on Ctrl-C), and fails if the simulator's referee
//! saw any safety violation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prost::Message;
use ringhub_proto::config::{DEMO_TOML, HubConfig};
use ringhub_proto::v1;
use ringhub_sim::server::{Sim, SimOptions};
use ringhub_sim::world::{Action, EvSpec};
use serde_json::Value;

/// `ringhub demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Seed of the simulator's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One EV of the script: when it arrives, where, and what it is like.
struct Arrival {
    /// Seconds after start.
    at_s: u64,
    /// What plugs in.
    ev: EvSpec,
}

fn script() -> Vec<Arrival> {
    let ev = |gun, battery_v, soc, max_current_a, target_soc| EvSpec {
        gun,
        battery_v,
        soc,
        max_current_a,
        target_soc,
        ev_mac: None,
        emaid: None,
        capacity_kwh: 40.0,
    };
    vec![
        Arrival {
            at_s: 1,
            ev: ev(0, 400.0, 30.0, 200.0, 80.0),
        },
        Arrival {
            at_s: 3,
            ev: ev(2, 800.0, 55.0, 120.0, 90.0),
        },
        Arrival {
            at_s: 5,
            ev: ev(4, 380.0, 10.0, 250.0, 60.0),
        },
        Arrival {
            at_s: 8,
            ev: ev(1, 420.0, 70.0, 150.0, 72.0),
        },
    ]
}

/// Child processes, killed when the demo ends however it ends.
struct Nodes(Vec<(String, Child)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = HubConfig::demo();
    let dir = std::env::temp_dir().join(format!("ringhub-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_path = dir.join("demo.toml");
    std::fs::write(&config_path, DEMO_TOML).context("writing the demo config")?;

    let sim = Sim::start(SimOptions::new(config.clone(), args.seed))
        .await
        .context("starting the simulator")?;
    println!(
        "simulator: socketcand {} · control http://{}",
        sim.socketcand_addr(),
        sim.control_addr()
    );
    let nodes = start_nodes(&config, &config_path, &dir)?;
    let mut watch = GunWatch::connect(&config).await?;
    let world = sim.world();

    let started = Instant::now();
    let mut arrivals = script().into_iter().peekable();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stop = tokio::time::sleep(args.duration.map_or(Duration::MAX / 4, Duration::from_secs));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
            _ = super::node::wait_for_signal() => break,
        }
        let elapsed = started.elapsed().as_secs();
        while let Some(arrival) = arrivals.next_if(|a| a.at_s <= elapsed) {
            let gun = arrival.ev.gun;
            match world.apply(Action::Plug(arrival.ev)).await? {
                Ok(_) => println!("t={elapsed:>3}s  an EV plugs into gun {gun}"),
                Err(error) => println!("t={elapsed:>3}s  plug into gun {gun} refused: {error}"),
            }
        }
        watch.drain();
        let truth = world.state().await?;
        print_table(elapsed, &truth, &watch.sessions);
        check_nodes_alive(&nodes)?;
    }
    let violations = world.violations().await?;
    sim.shutdown();
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
    if violations.is_empty() {
        println!("referee: no safety violations");
        Ok(())
    } else {
        for v in &violations {
            println!(
                "VIOLATION {} at {} ms: {} — {}",
                v.invariant, v.time_ms, v.subject, v.detail
            );
        }
        bail!("{} safety violation(s)", violations.len())
    }
}

fn start_nodes(config: &HubConfig, config_path: &Path, dir: &Path) -> anyhow::Result<Nodes> {
    let exe = std::env::current_exe().context("locating the ringhub binary")?;
    let mut nodes = Nodes(Vec::new());
    for cabinet in &config.cabinets {
        let id = cabinet.id.to_string();
        let log = dir.join(format!("{id}.log"));
        let child = Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(config_path)
            .args(["--node", &id])
            .arg("--data-dir")
            .arg(dir.join(&id))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(&log)
                    .with_context(|| format!("creating {}", log.display()))?,
            )
            .spawn()
            .with_context(|| format!("starting the node of {id}"))?;
        println!(
            "node {id}: metrics http://{}/metrics · log {}",
            cabinet.metrics,
            log.display()
        );
        nodes.0.push((id, child));
    }
    Ok(nodes)
}

fn check_nodes_alive(nodes: &Nodes) -> anyhow::Result<()> {
    for (id, child) in &nodes.0 {
        let pid = child.id();
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            bail!("the node of {id} exited; see its log");
        }
    }
    Ok(())
}

/// The gun sessions the nodes publish on Zenoh.
struct GunWatch {
    /// Keeps the session open.
    _session: zenoh::Session,
    /// Publications as they arrive.
    subscriber:
        zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    /// Latest session per gun.
    sessions: BTreeMap<u32, v1::GunSession>,
}

impl GunWatch {
    async fn connect(config: &HubConfig) -> anyhow::Result<Self> {
        let endpoints: Vec<String> = config
            .cabinets
            .iter()
            .flat_map(|c| c.zenoh_listen.clone())
            .collect();
        let zenoh_config = crate::publish::zenoh_config(&[], &endpoints)?;
        let session = zenoh::open(zenoh_config)
            .await
            .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
        let key = format!("ringhub/{}/gun/*/session", config.hub.id);
        let subscriber = session
            .declare_subscriber(key)
            .await
            .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
        Ok(Self {
            _session: session,
            subscriber,
            sessions: BTreeMap::new(),
        })
    }

    fn drain(&mut self) {
        while let Ok(Some(sample)) = self.subscriber.try_recv() {
            if let Ok(session) = v1::GunSession::decode(sample.payload().to_bytes().as_ref()) {
                self.sessions.insert(session.gun_id, session);
            }
        }
    }
}

fn print_table(elapsed: u64, truth: &Value, sessions: &BTreeMap<u32, v1::GunSession>) {
    println!(
        "t={elapsed:>3}s  gun  node status     phase          | sim: CP  HLC phase             A       kW    SoC    kWh"
    );
    for gun in truth["guns"].as_array().into_iter().flatten() {
        let id = gun["id"].as_u64().unwrap_or_default() as u32;
        let (status, phase) = sessions
            .get(&id)
            .map_or(("-".to_owned(), "-".to_owned()), |s| {
                (
                    short(s.ocpp_status().as_str_name(), "OCPP_STATUS_"),
                    short(s.phase().as_str_name(), "SESSION_PHASE_"),
                )
            });
        // Rounding leaves a -0.0 now and then; a table should not show it.
        let current = gun["current_a"].as_f64().unwrap_or_default() + 0.0;
        let volts = truth["segments"][gun["segment"].as_u64().unwrap_or_default() as usize]["bus_voltage_v"]
            .as_f64()
            .unwrap_or_default();
        let soc = gun["soc"]
            .as_f64()
            .map_or("-".to_owned(), |s| format!("{s:.1}%"));
        println!(
            "        {id:>3}  {status:<14} {phase:<14} |      {:<3} {:<20} {current:>6.1} {:>7.1} {soc:>6} {:>6.2}",
            gun["cp_state"].as_str().unwrap_or("?"),
            gun["hlc_phase"].as_str().unwrap_or("?"),
            (volts * current / 1000.0).max(0.0),
            gun["energy_kwh"].as_f64().unwrap_or_default(),
        );
    }
    println!(
        "        islands: {} · referee violations: {}",
        truth["islands"].as_array().map_or(0, Vec::len),
        truth["violations"]
    );
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}
