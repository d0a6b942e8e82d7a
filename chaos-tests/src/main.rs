//! `chaos-tests`: runs the chaos suite's scenarios against the whole hub as processes.
//!
//! ```text
//! chaos-tests [--short]                      the CI profile (the default)
//! chaos-tests --scenario NAME [--seed N]     one scenario, e.g. to replay a failure
//! chaos-tests --long [--seeds N] [--scenario NAME]...   many seeds, then a table
//! chaos-tests --list                         the scenarios
//! ```
//!
//! Exit status 1 when a scenario found something wrong; each failure prints its seed and
//! the command that replays it.

use std::process::ExitCode;

use chaos_tests::hub::Bins;
use chaos_tests::scenarios::{SCENARIOS, Scenario, find};
use chaos_tests::{Options, namespaces_available, placement_name, report, run_all, short_profile};
use clap::Parser;

/// The chaos suite of ringhub.
#[derive(Debug, Parser)]
#[command(name = "chaos-tests", version)]
struct Args {
    /// Run these scenarios (repeatable); with --long, only these.
    #[arg(long)]
    scenario: Vec<String>,
    /// The seed of a single run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The CI profile: a few scenarios with fixed seeds (the default).
    #[arg(long)]
    short: bool,
    /// Every scenario (or those named) with seeds 1..=--seeds, then a table.
    #[arg(long)]
    long: bool,
    /// How many seeds each scenario runs with under --long.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Keep every node on loopback even where namespaces are available.
    #[arg(long)]
    loopback: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if args.list {
        for s in SCENARIOS {
            let net = if s.network { " (namespaces)" } else { "" };
            println!("{:20} {}{net}", s.name, s.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let named: Vec<&'static Scenario> = args
        .scenario
        .iter()
        .map(|n| {
            find(n).ok_or_else(|| anyhow::anyhow!("unknown scenario {n:?}; --list names them"))
        })
        .collect::<anyhow::Result<_>>()?;
    let options = Options {
        namespaces: !args.loopback,
        build: true,
    };
    let bins = Bins::locate(options.build)?;
    let namespaces = namespaces_available(&options);
    eprintln!("chaos-tests: nodes on {}", placement_name(namespaces));
    let runs: Vec<(&'static Scenario, u64)> = if args.long {
        let chosen: Vec<&'static Scenario> = if named.is_empty() {
            SCENARIOS
                .iter()
                .filter(|s| namespaces || !s.network)
                .collect()
        } else {
            named
        };
        chosen
            .into_iter()
            .flat_map(|s| (1..=args.seeds).map(move |seed| (s, seed)))
            .collect()
    } else if !named.is_empty() {
        named.into_iter().map(|s| (s, args.seed)).collect()
    } else {
        short_profile(namespaces)
    };
    // Network scenarios need namespaces: without them they are skipped, and said so.
    let (runs, skipped): (Vec<_>, Vec<_>) = runs
        .into_iter()
        .partition(|(s, _)| namespaces || !s.network);
    for (scenario, seed) in &skipped {
        eprintln!(
            "SKIP {} seed {seed}: needs network namespaces",
            scenario.name
        );
    }
    let started = std::time::Instant::now();
    let outcomes = run_all(&runs, &bins, namespaces).await;
    let failed: Vec<&report::Outcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    println!();
    if args.long {
        println!("{}", report::table(&outcomes));
    }
    println!(
        "{} run(s), {} failed, {} skipped, {:.0} s, nodes on {}",
        outcomes.len(),
        failed.len(),
        skipped.len(),
        started.elapsed().as_secs_f64(),
        placement_name(namespaces)
    );
    for outcome in &failed {
        println!(
            "FAILED {} seed {}: {}",
            outcome.scenario,
            outcome.seed,
            outcome.replay()
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
