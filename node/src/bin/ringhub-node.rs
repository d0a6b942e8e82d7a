//! `ringhub-node`: the daemon of one power cabinet.
//!
//! ```text
//! ringhub-node --config deploy/hubs/demo.toml --node cab-a [--data-dir DIR]
//!     [--metrics 127.0.0.1:PORT] [--zenoh-listen EP]... [--zenoh-connect EP]...
//!     [--can URI] [--auth free|local|ocpp]
//! ```

use std::process::ExitCode;

use clap::Parser;
use ringhub_node::cli::node::{self, NodeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "ringhub-node",
    version,
    about = "Run one power cabinet of a ringhub hub"
)]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> ExitCode {
    node::init_logging("info,zenoh=warn");
    match node::run(Args::parse().node) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringhub-node: {error:#}");
            ExitCode::from(2)
        }
    }
}
