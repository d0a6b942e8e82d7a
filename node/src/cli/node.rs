//! `ringhub-node` (and `ringhub node`): run one cabinet. The flags override the hub
//! config's values for this cabinet.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use ringhub_proto::config::{AuthMode, HubConfig};
use tokio::sync::watch;

use crate::options::{NodeOptions, Overrides, parse_auth};
use crate::runtime::Ended;
use crate::stall;

/// The node's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The hub config (TOML); the embedded demo hub when not given.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's cabinet id in the config.
    #[arg(long)]
    pub node: String,
    /// Where the node keeps its crash-safe state.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Prometheus scrape address.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Zenoh endpoint to listen on (repeatable), e.g. tcp/127.0.0.1:7447.
    #[arg(long)]
    pub zenoh_listen: Vec<String>,
    /// Zenoh endpoint to connect to (repeatable). Of two cabinets, only one may name the
    /// other: one link per pair, as the hub config's default mesh has it.
    #[arg(long)]
    pub zenoh_connect: Vec<String>,
    /// The cabinet's CAN bus: socketcan:IFACE, socketcand:HOST:PORT/BUS or candump:FILE.
    #[arg(long)]
    pub can: Option<String>,
    /// Who may charge.
    #[arg(long, value_parser = parse_auth)]
    pub auth: Option<AuthMode>,
    /// The CSMS (ws:// or wss://) of every dispenser on this cabinet, in place of the
    /// config's `csms_url`; implies `--auth ocpp`. The dispensers keep their configured
    /// security profile, password file and CA.
    #[arg(long)]
    pub csms: Option<String>,
}

/// Runs the node until SIGINT or SIGTERM.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => HubConfig::load(path)?,
        None => HubConfig::demo(),
    };
    let overrides = Overrides {
        data_dir: args.data_dir,
        metrics: args.metrics,
        zenoh_listen: (!args.zenoh_listen.is_empty()).then_some(args.zenoh_listen),
        zenoh_connect: (!args.zenoh_connect.is_empty()).then_some(args.zenoh_connect),
        can: args.can,
        auth: args.auth,
        csms: args.csms,
    };
    let options = NodeOptions::resolve(&config, &args.node, overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ended = runtime.block_on(async move {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            let _ = stop.send(true);
        });
        crate::runtime::run(&config, options, stopped).await
    })?;
    match ended {
        Ended::Stopped => Ok(()),
        // The runtime's threads are still going: the restart replaces them all at once.
        Ended::Stalled(gap) => {
            Err(stall::restart_in_place(gap)).context("restarting in place after a stall")
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr at `default` (e.g. `info,zenoh=warn`) unless `RUST_LOG` says otherwise.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
