//! `ringhub demo`: a whole simulated hub on loopback, on the embedded demo config
//! (`deploy/hubs/demo.toml`): the simulator in this process, one `ringhub node` process
//! per cabinet talking to it over socketcand, a scripted day of EV arrivals and faults
//! (`deploy/scenarios/demo-day.toml`, or `--scenario FILE` in the simulator's scenario
//! format), and a live view of the ring: the plan's grants next to what the simulator says
//! is physically true (see `view`). It ends on Ctrl-C (or after `--duration`), stops
//! every node it started, and fails if the simulator's referee saw a safety violation.

mod view;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringhub_proto::config::{DEMO_TOML, HubConfig};
use ringhub_sim::server::scenario::Scenario;
use ringhub_sim::server::{Sim, SimOptions};

use self::view::HubView;

/// The day the demo plays unless told otherwise.
const DEMO_DAY: &str = include_str!("../../../../deploy/scenarios/demo-day.toml");

/// `ringhub demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Seed of the simulator's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Play this scenario (the simulator's format) instead of the demo day.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
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

/// The scenario to play.
fn scenario(args: &DemoArgs) -> anyhow::Result<Scenario> {
    Ok(match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::parse(DEMO_DAY, "deploy/scenarios/demo-day.toml")?,
    })
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let scenario = scenario(&args)?;
    let config = HubConfig::demo();
    let dir = std::env::temp_dir().join(format!("ringhub-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_path = dir.join("demo.toml");
    std::fs::write(&config_path, DEMO_TOML).context("writing the demo config")?;

    let sim = Sim::start(SimOptions::new(config.clone(), args.seed))
        .await
        .context("starting the simulator")?;
    let mut intro = vec![format!(
        "simulator: socketcand {} · control http://{} · scenario {} ({} actions)",
        sim.socketcand_addr(),
        sim.control_addr(),
        scenario.origin,
        scenario.entries.len()
    )];
    let nodes = start_nodes(&config, &config_path, &dir, &mut intro)?;
    let mut view = HubView::connect(&config, intro).await?;
    let world = sim.world();

    let started = Instant::now();
    let mut entries = scenario.entries.into_iter().peekable();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stop = tokio::time::sleep(args.duration.map_or(Duration::MAX / 4, Duration::from_secs));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
            _ = super::node::wait_for_signal() => break,
        }
        let elapsed = started.elapsed();
        let now_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        while let Some(entry) = entries.next_if(|e| e.time_ms <= now_ms) {
            let what = describe(&entry.action);
            let line = match world.apply(entry.action).await? {
                Ok(_) => what,
                Err(error) => format!("{what}: refused ({error})"),
            };
            view.event(elapsed, line);
        }
        view.drain();
        let truth = world.state().await?;
        view.render(elapsed, &truth);
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

/// A scenario action in a few words.
fn describe(action: &ringhub_sim::world::Action) -> String {
    use ringhub_sim::world::Action;
    match action {
        Action::Plug(ev) => format!(
            "an EV plugs into gun {} ({:.0} V, {:.0} A, {:.0} → {:.0} %)",
            ev.gun, ev.battery_v, ev.max_current_a, ev.soc, ev.target_soc
        ),
        Action::Unplug { gun } => format!("the EV on gun {gun} leaves"),
        Action::InjectFault(spec) => format!("fault: {:?} on {}", spec.kind, spec.target),
        Action::ClearFault { id } => format!("fault {id} cleared"),
        other => format!("{other:?}"),
    }
}

fn start_nodes(
    config: &HubConfig,
    config_path: &Path,
    dir: &Path,
    intro: &mut Vec<String>,
) -> anyhow::Result<Nodes> {
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
        intro.push(format!(
            "node {id}: metrics http://{}/metrics · log {}",
            cabinet.metrics,
            log.display()
        ));
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
