//! The chaos suite (DESIGN.md §3, §7; issue 9): the whole hub as processes, the
//! simulator `ringhub-sim`, one `ringhub-node` per cabinet, each in its own network
//! namespace, and the test CSMS `csms.py`, attacked while EVs charge:
//!
//! - process faults: SIGKILL and restart, SIGSTOP/SIGCONT past the lease, of the leader
//!   and of followers, one at a time and overlapping;
//! - network faults between nodes: full and one-way cuts, the leader cut off, slow and
//!   lossy links (`tc` rules on the namespaces' veths, see [`netns`]);
//! - CAN faults on the wire the node reads (a relay, see [`relay`]): the bus pulled and
//!   plugged back, corrupt and unknown frames, bursts; a silent PLC or module;
//! - hardware faults from the simulator: welds, overtemperature, isolation, lock failure.
//!
//! Every scenario is seeded ([`rng`]) and bounded in time, and ends with the checks of
//! [`checks`]. A failure prints the seed and the command that replays it.
//!
//! ```text
//! cargo run -p chaos-tests -- --list
//! cargo run -p chaos-tests -- --scenario partition-leader --seed 7
//! cargo run -p chaos-tests -- --short            # what CI runs (tests/short.rs)
//! cargo run -p chaos-tests -- --long --seeds 5   # every scenario, many seeds, a table
//! ```

pub mod checks;
pub mod error;
pub mod hub;
pub mod netns;
pub mod probe;
pub mod relay;
pub mod report;
pub mod rng;
pub mod scenarios;
pub mod workload;

use std::time::{Duration, Instant};

use crate::checks::Finding;
use crate::error::Result;
use crate::hub::{Bins, CABINETS, Hub};
use crate::probe::{Control, eventually, scrape};
use crate::report::Outcome;
use crate::rng::Rng;
use crate::scenarios::{Ctx, Scenario};

/// Longest one scenario may take, start to last check.
pub const BUDGET: Duration = Duration::from_secs(300);
/// Longest the hub may take from start to a plan, a leader and every CSMS connection.
const READY: Duration = Duration::from_secs(60);

/// The short profile CI runs: one scenario of each family, fixed seeds. The network one
/// is replaced by a process one where namespaces are not available.
pub const SHORT: &[(&str, u64)] = &[
    ("kill-leader", 1),
    ("pause-follower", 1),
    ("partition-leader", 1),
    ("partition-pair", 1),
    ("can-disconnect", 1),
    ("hw-weld", 1),
];

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Put each node in a network namespace when the machine allows.
    pub namespaces: bool,
    /// Build the workspace's binaries first (under cargo).
    pub build: bool,
}

/// Whether this run can use namespaces.
pub fn namespaces_available(options: &Options) -> bool {
    options.namespaces && netns::available()
}

/// Runs `scenario` with `seed`; never panics, every failure is a finding.
pub async fn run_one(
    scenario: &'static Scenario,
    seed: u64,
    bins: &Bins,
    namespaces: bool,
) -> Outcome {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "ringhub-chaos-{}-{seed}-{}",
        scenario.name,
        std::process::id()
    ));
    let mut outcome = Outcome {
        scenario: scenario.name,
        seed,
        placement: None,
        faults: 0,
        findings: Vec::new(),
        recovery: None,
        wall: Duration::ZERO,
        dir: dir.clone(),
    };
    if scenario.network && !namespaces {
        outcome.findings.push(Finding::new(
            "harness",
            "a network scenario needs namespaces, not available here",
        ));
        return outcome;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        outcome
            .findings
            .push(Finding::new("harness", format!("{}: {e}", dir.display())));
        return outcome;
    }
    eprintln!("== {} seed {seed}: {}", scenario.name, scenario.about);
    match tokio::time::timeout(
        BUDGET,
        body(scenario, seed, bins, namespaces, &dir, &mut outcome),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => outcome
            .findings
            .push(Finding::new("harness", e.to_string())),
        Err(_) => outcome.findings.push(Finding::new(
            "harness",
            format!("the scenario took longer than {BUDGET:?}"),
        )),
    }
    outcome.wall = started.elapsed();
    if outcome.passed() && std::env::var_os("RINGHUB_CHAOS_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

/// The scenario: start, charge, attack, check.
async fn body(
    scenario: &'static Scenario,
    seed: u64,
    bins: &Bins,
    namespaces: bool,
    dir: &std::path::Path,
    outcome: &mut Outcome,
) -> Result<()> {
    let mut hub = Hub::start(bins, seed, namespaces, dir).await?;
    outcome.placement = Some(hub.placement);
    let result = attack(scenario, seed, &mut hub, outcome).await;
    if !outcome.passed() || result.is_err() {
        for node in &hub.nodes {
            eprintln!(
                "--- last lines of {} ---\n{}",
                node.proc.log.display(),
                node.proc.log_tail(15)
            );
        }
    }
    result
}

/// Everything after the hub has started.
async fn attack(
    scenario: &'static Scenario,
    seed: u64,
    hub: &mut Hub,
    outcome: &mut Outcome,
) -> Result<()> {
    let control = Control(hub.sim.control);
    wait_ready(hub).await?;
    let mut rng = Rng::new(seed);
    let guns = workload::choose_guns(&mut rng);
    workload::arrive(control, &guns, &mut rng).await?;
    workload::wait_charging(control, &guns).await?;
    let mut ctx = Ctx::new(hub, rng, guns);
    ctx.event("EVs charging");
    // The faults come at a seeded moment of the sessions, not always right at their start.
    let settle = ctx.rng.millis(0, 4000);
    tokio::time::sleep(settle).await;
    let mut latches = checks::LatchLog::default();
    checks::snapshot(ctx.hub, &mut latches).await;

    scenarios::play(scenario.name, &mut ctx).await?;
    outcome.faults = ctx.faults;
    let mut findings = std::mem::take(&mut ctx.findings);
    latches.0.extend(std::mem::take(&mut ctx.latches.0));
    let fault_end = ctx.last_fault_end;
    let guns = ctx.guns.clone();
    drop(ctx);

    for node in &mut hub.nodes {
        if !node.proc.running() {
            findings.push(Finding::new(
                "crash",
                format!("{} exited:\n{}", node.proc.name, node.proc.log_tail(20)),
            ));
            node.restart()?;
        }
    }
    match checks::converge(hub).await {
        Ok((_, views)) => {
            outcome.recovery = Some(fault_end.elapsed());
            latches.record(&views);
        }
        Err(finding) => findings.push(finding),
    }
    findings.extend(checks::s6(hub, &latches).await);
    findings.extend(checks::open_transactions(hub).await);
    workload::leave(control, &guns).await?;
    findings.extend(checks::transactions(hub).await);
    findings.extend(checks::referee(control).await);
    outcome.findings.extend(findings);
    Ok(())
}

/// Waits for a leader, a first plan on every node and every dispenser on the CSMS.
async fn wait_ready(hub: &Hub) -> Result<()> {
    let metrics: Vec<_> = hub.nodes.iter().map(|n| n.metrics).collect();
    eventually(
        "a leader, a plan on every node and every CSMS connection",
        READY,
        async || {
            let mut leaders = 0;
            for (cabinet, addr) in CABINETS.iter().zip(&metrics) {
                let m = scrape(*addr).await.map_err(|e| format!("{cabinet}: {e}"))?;
                if m.value("ringhub_plan_epoch_applied") < 1.0 {
                    return Err(format!("{cabinet} has applied no plan"));
                }
                if m.value("ringhub_ocpp_connected") != 1.0 {
                    return Err(format!("{cabinet} is not connected to the CSMS"));
                }
                leaders += u32::from(m.value("ringhub_raft_is_leader") == 1.0);
            }
            if leaders == 1 {
                Ok(())
            } else {
                Err(format!("{leaders} leaders"))
            }
        },
    )
    .await
}

/// Runs `runs` one after the other, printing each outcome as it ends.
pub async fn run_all(
    runs: &[(&'static Scenario, u64)],
    bins: &Bins,
    namespaces: bool,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (scenario, seed) in runs {
        let outcome = run_one(scenario, *seed, bins, namespaces).await;
        eprint!("{}", outcome.render());
        outcomes.push(outcome);
    }
    outcomes
}

/// The short profile's runs on this machine: network scenarios become `pause-leader`
/// without namespaces (and it says so).
pub fn short_profile(namespaces: bool) -> Vec<(&'static Scenario, u64)> {
    SHORT
        .iter()
        .filter_map(|(name, seed)| {
            let scenario = scenarios::find(name)?;
            if scenario.network && !namespaces {
                eprintln!("no network namespaces here: {name} replaced by pause-leader");
                return scenarios::find("pause-leader").map(|s| (s, *seed));
            }
            Some((scenario, *seed))
        })
        .collect()
}

/// Placement in words.
pub fn placement_name(namespaces: bool) -> &'static str {
    if namespaces {
        "network namespaces (one per node, veth + bridge, tc u32/htb cuts)"
    } else {
        "loopback (no namespaces: network scenarios skipped)"
    }
}
