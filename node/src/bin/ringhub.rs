//! `ringhub`: the operator's command line for a ringhub hub.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringhub_node::can::BusUri;
use ringhub_node::cli;
use ringhub_proto::can::CanFrame;

#[derive(Debug, Parser)]
#[command(
    name = "ringhub",
    version,
    about = "Operate a ringhub DC fast-charging hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a simulated hub on loopback: the simulator, a node per cabinet, and EVs.
    Demo(cli::demo::DemoArgs),
    /// Run one cabinet's node (the same as `ringhub-node`).
    Node(cli::node::NodeArgs),
    /// The hub's Raft cluster, record, islands and latched faults, as its nodes see it.
    Status(cli::status::StatusArgs),
    /// Latched faults: list them, or clear one.
    Faults(cli::status::FaultsArgs),
    /// Plan a ring given as JSON: islands, owners and grants (a what-if tool).
    Plan(cli::plan::PlanArgs),
    /// Decode, dump and encode CAN frames with the hub's DBC catalog.
    #[command(subcommand)]
    Can(CanCommand),
}

#[derive(Debug, Subcommand)]
enum CanCommand {
    /// Decode one frame given in candump syntax (123#DEADBEEF; 8 hex digits for a 29-bit id).
    Decode {
        /// The frame.
        frame: String,
    },
    /// Decode a live bus or a candump log, one JSON line per frame.
    Dump {
        /// socketcan:IFACE, socketcand:HOST:PORT/BUS or candump:FILE.
        uri: String,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Encode a message from SIGNAL=VALUE pairs (a number, or a value-table label).
    Encode {
        /// The DBC message name, e.g. RelayCommand.
        message: String,
        /// SIGNAL=VALUE for every signal of the message.
        signals: Vec<String>,
        /// PLC slot (0..15) or module address (0..255) carried in the id.
        #[arg(long, default_value_t = 0)]
        address: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => {
            cli::node::init_logging("warn");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(cli::demo::run(args))?;
        }
        Command::Node(args) => {
            cli::node::init_logging("info,zenoh=warn");
            cli::node::run(args)?;
        }
        Command::Status(args) => {
            cli::node::init_logging("error");
            one_worker()?.block_on(cli::status::status(args))?;
        }
        Command::Faults(args) => {
            cli::node::init_logging("error");
            one_worker()?.block_on(cli::status::faults(args))?;
        }
        Command::Plan(args) => {
            println!("{}", cli::plan::run(&args.input)?);
        }
        Command::Can(CanCommand::Decode { frame }) => {
            let frame: CanFrame = frame.parse().with_context(|| format!("frame {frame:?}"))?;
            let value = cli::can::decode(&frame).with_context(|| format!("frame {frame}"))?;
            println!("{value}");
        }
        Command::Can(CanCommand::Encode {
            message,
            signals,
            address,
        }) => {
            println!("{}", cli::can::encode(&message, address, &signals)?);
        }
        Command::Can(CanCommand::Dump { uri, count }) => {
            let uri: BusUri = uri.parse()?;
            let runtime = current_thread()?;
            let mut stdout = std::io::stdout().lock();
            let bad = runtime.block_on(cli::can::dump(&uri, count, &mut stdout))?;
            stdout.flush()?;
            if bad > 0 {
                eprintln!("{bad} frame(s) did not decode");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A runtime for the CLI's conversations over Zenoh, which needs a multi-thread one.
fn one_worker() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// A single-threaded runtime for the CLI's short conversations.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
