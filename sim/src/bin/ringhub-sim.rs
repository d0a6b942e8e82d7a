//! `ringhub-sim`: the virtual hub. Serves every cabinet's CAN bus over socketcand and the
//! control API over HTTP, in real time; or runs a scenario file in virtual time and exits.
//!
//! ```text
//! ringhub-sim [--config hub.toml] [--port 29536] [--control 127.0.0.1:29537] [--seed 1]
//!             [--strict] [--violations-log v.jsonl]
//! ringhub-sim --scenario s.toml [--truth-log truth.jsonl] [--seed N] [--strict]
//! ```
//!
//! Once both servers listen, one JSON line goes to stdout, with the bound addresses (port
//! 0 picks free ports): `{"socketcand":"127.0.0.1:29536","control":"127.0.0.1:29537"}`.
//! Logs go to stderr (`RUST_LOG` filters them). Exit status: 0 after SIGINT/SIGTERM or a
//! finished scenario, 1 on a violation under `--strict`, 2 when it cannot start.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ringhub_proto::config::HubConfig;
use ringhub_sim::server::scenario::Scenario;
use ringhub_sim::server::{Exit, Sim, SimOptions};
use ringhub_sim::world::Violation;

/// The seed when neither `--seed` nor the scenario gives one.
const DEFAULT_SEED: u64 = 1;

/// The virtual hub: a multi-cabinet DC charging hub's hardware behind socketcand.
#[derive(Debug, Parser)]
#[command(name = "ringhub-sim", version)]
struct Args {
    /// The hub config (deploy/hubs/*.toml); the embedded demo hub when left out.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The socketcand port, on 127.0.0.1 (0: any free port); the config's
    /// `sim.socketcand_port` when left out.
    #[arg(long)]
    port: Option<u16>,
    /// The control API's address; the config's `sim.control` when left out.
    #[arg(long, value_name = "ADDR")]
    control: Option<SocketAddr>,
    /// Seeds every random choice [default: the scenario's seed, else 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Exit with status 1 at the first safety violation, printing it.
    #[arg(long)]
    strict: bool,
    /// Append each violation to this file as a JSON line.
    #[arg(long, value_name = "FILE")]
    violations_log: Option<PathBuf>,
    /// Run this scenario in virtual time and exit.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Where the scenario's ground-truth log goes; stdout when left out.
    #[arg(long, value_name = "FILE", requires = "scenario")]
    truth_log: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let outcome = if args.scenario.is_some() {
        run_scenario(&args)
    } else {
        tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")
            .and_then(|runtime| runtime.block_on(serve(&args)))
    };
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(violation)) => {
            let json = serde_json::to_string(&violation).unwrap_or_default();
            eprintln!("ringhub-sim: --strict: safety invariant violated: {json}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("ringhub-sim: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn config(args: &Args) -> anyhow::Result<HubConfig> {
    match &args.config {
        Some(path) => Ok(HubConfig::load(path)?),
        None => Ok(HubConfig::demo()),
    }
}

/// Runs the scenario; the violation that stopped it under `--strict`.
fn run_scenario(args: &Args) -> anyhow::Result<Option<Violation>> {
    let config = config(args)?;
    let path = args.scenario.as_ref().context("no scenario")?;
    let scenario = Scenario::load(path)?;
    let seed = args.seed.or(scenario.seed).unwrap_or(DEFAULT_SEED);
    let mut out: Box<dyn Write> = match &args.truth_log {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create the truth log {}", path.display())
            })?))
        }
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let outcome = scenario.run(&config, seed, args.strict, &mut out)?;
    tracing::info!(
        scenario = %path.display(),
        seed,
        end_ms = outcome.end_ms,
        violations = outcome.violations,
        "scenario done"
    );
    Ok(outcome.stopped_by)
}

/// Serves until SIGINT/SIGTERM; the violation that stopped it under `--strict`.
async fn serve(args: &Args) -> anyhow::Result<Option<Violation>> {
    let config = config(args)?;
    let mut options = SimOptions::new(config, args.seed.unwrap_or(DEFAULT_SEED));
    if let Some(port) = args.port {
        options.socketcand.set_port(port);
    }
    if let Some(control) = args.control {
        options.control = control;
    }
    if !options.control.ip().is_loopback() {
        tracing::warn!(control = %options.control, "the control API can weld contactors; it is meant for loopback only");
    }
    options.strict = args.strict;
    options.violations_log = args.violations_log.clone();
    let sim = Sim::start(options).await?;
    let ready = serde_json::json!({
        "socketcand": sim.socketcand_addr().to_string(),
        "control": sim.control_addr().to_string(),
    });
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    drop(stdout);

    let stopper = sim.stopper();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping");
        stopper.stop();
    });
    let exit = sim.wait().await?;
    Ok(match exit {
        Exit::Shutdown => None,
        Exit::StrictViolation(violation) => Some(violation),
    })
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
