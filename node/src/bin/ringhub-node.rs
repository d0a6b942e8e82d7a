//! `ringhub-node`: the daemon of one power cabinet.
//!
//! ```text
//! ringhub-node --config deploy/hubs/demo.toml --node cab-a [--data-dir DIR]
//!     [--metrics 127.0.0.1:PORT] [--zenoh-listen EP]... [--zenoh-connect EP]...
//!     [--can URI] [--auth free|local|ocpp]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ringhub_node::options::{NodeOptions, Overrides, parse_auth};
use ringhub_proto::config::{AuthMode, HubConfig};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "ringhub-node",
    version,
    about = "Run one power cabinet of a ringhub hub"
)]
struct Args {
    /// The hub config (TOML); the embedded demo hub when not given.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's cabinet id in the config.
    #[arg(long)]
    node: String,
    /// Where the node keeps its crash-safe state.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Prometheus scrape address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Zenoh endpoint to listen on (repeatable), e.g. tcp/127.0.0.1:7447.
    #[arg(long)]
    zenoh_listen: Vec<String>,
    /// Zenoh endpoint to connect to (repeatable).
    #[arg(long)]
    zenoh_connect: Vec<String>,
    /// The cabinet's CAN bus: socketcan:IFACE, socketcand:HOST:PORT/BUS or candump:FILE.
    #[arg(long)]
    can: Option<String>,
    /// Who may charge.
    #[arg(long, value_parser = parse_auth)]
    auth: Option<AuthMode>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,zenoh=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringhub-node: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
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
    };
    let options = NodeOptions::resolve(&config, &args.node, overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            let _ = stop.send(true);
        });
        ringhub_node::runtime::run(&config, options, stopped).await
    })?;
    Ok(())
}

async fn wait_for_signal() {
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
