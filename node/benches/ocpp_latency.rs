//! How fast the CSMS hears of a plug-in and of a transaction (issue 6, "Report …
//! latencies (p50/p99) measured at the CSMS"; DESIGN.md: plug-in → Preparing < 500 ms).
//!
//! ```text
//!  cargo bench -p ringhub-node --bench ocpp_latency [-- --runs N]
//! ```
//!
//! It runs twice: with the default `transaction_start = "energy"` (the transaction starts
//! when energy flows) and with `"ev_connected"` (it starts once the EV is plugged in and
//! authorised: DESIGN.md's "authorised and plugged → StartTransaction sent < 500 ms").
//!
//! A real `ringhub-node` (built with the bench profile) runs the demo's cab-a against the
//! simulator, with dispenser RH-DEMO-A on csms.py, the test CSMS built on the Python
//! `ocpp` package. Each run, on gun 1 (connector 2):
//!
//! 1. plug-in → StatusNotification(Preparing): from just before the simulator's Plug
//!    action to csms.py's receive time;
//! 2. authorised → StartTransaction: from csms.py's receipt of the Authorize it accepts
//!    at once (the EV is already plugged in) to its receipt of the StartTransaction; with
//!    `energy` this includes what the EV does in between (SLAC, cable check, precharge),
//!    as a driver experiences it;
//! 3. energy flowing → StartTransaction: from the first sample of this process's 5 ms
//!    poll of the simulator that shows the gun energised with current flowing, to
//!    csms.py's receipt of the StartTransaction: the node's own share.
//!
//! then RemoteStopTransaction, unplug, and Available again. All times are this machine's
//! wall clock, read by this process and by csms.py.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::csms::{Csms, demo_with_csms, unix_now};
use common::{CARD, Rig, STEP, act, describe_gun, ev, gun, state};
use ringhub_proto::config::HubConfig;
use ringhub_sim::world::Action;

/// Runs when `--runs` is not given.
const DEFAULT_RUNS: usize = 20;

fn main() {
    let runs = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map_or(DEFAULT_RUNS, |n| n.parse().expect("--runs takes a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for mode in ["energy", "ev_connected"] {
        runtime.block_on(bench(runs, mode));
    }
}

/// Milliseconds per measure, one per run.
#[derive(Default)]
struct Samples {
    preparing: Vec<f64>,
    authorised: Vec<f64>,
    energy: Vec<f64>,
}

async fn bench(runs: usize, mode: &str) {
    let mut csms = Csms::start(&[CARD]);
    let (text, _) = demo_with_csms(&csms.url());
    let identity = "ocpp_identity = \"RH-DEMO-A\"\n";
    let text = text.replacen(
        identity,
        &format!("{identity}transaction_start = {mode:?}\n"),
        1,
    );
    let config = HubConfig::parse(&text, "latency.toml").expect("the edited demo parses");
    let rig = Rig::start("ocpp-latency", config, Some(&text), "ocpp").await;
    csms.call("StatusNotification", |p| {
        p["connectorId"] == 2 && p["status"] == "Available"
    });
    let mut samples = Samples::default();
    for run in 0..runs {
        one_run(&rig, &mut csms, &mut samples).await;
        eprint!("\rrun {}/{runs}", run + 1);
    }
    eprintln!();
    println!("OCPP latency at the CSMS, transaction_start = {mode:?}, {runs} runs (ms)");
    println!("| measure | p50 | p99 | max |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, values) in [
        (
            "plug-in → StatusNotification(Preparing)",
            &mut samples.preparing,
        ),
        ("authorised → StartTransaction", &mut samples.authorised),
        (
            "energy flowing → StartTransaction (< 0: before it)",
            &mut samples.energy,
        ),
    ] {
        values.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            percentile(values, 0.50),
            percentile(values, 0.99),
            values.last().copied().unwrap_or(f64::NAN)
        );
    }
}

/// One session on gun 1, measured; it leaves the gun Available.
async fn one_run(rig: &Rig, csms: &mut Csms, samples: &mut Samples) {
    let from = csms.mark();
    let plugged_at = unix_now();
    act(&rig.world, Action::Plug(ev(1, 30.0, 80.0, 75.0))).await;
    let preparing = csms.call_from(from, "StatusNotification", |p| {
        p["connectorId"] == 2 && p["status"] == "Preparing"
    });
    samples
        .preparing
        .push((seconds(&preparing["t"]) - plugged_at) * 1000.0);

    act(
        &rig.world,
        Action::Rfid {
            gun: 1,
            id_tag: CARD.into(),
        },
    )
    .await;
    let authorised_at = seconds(&csms.call_from(from, "Authorize", |p| p["idTag"] == CARD)["t"]);
    let energy_at = energy_flowing(rig).await;
    let start = csms.call_from(from, "StartTransaction", |p| p["connectorId"] == 2);
    let started_at = seconds(&start["t"]);
    samples
        .authorised
        .push((started_at - authorised_at) * 1000.0);
    samples.energy.push((started_at - energy_at) * 1000.0);

    let transaction = csms.wait_for_from(from, "the transactionId", |v| {
        v["event"] == "transaction" && v["cp"] == "RH-DEMO-A"
    });
    let id = transaction["transactionId"].clone();
    // The CSMS logs the id before its answer goes out: a MeterValues carrying it shows
    // the node has it.
    csms.call_from(from, "MeterValues", |p| p["transactionId"] == id);
    let status = csms.command(&format!("remote_stop {id}"), "RemoteStopTransaction");
    assert_eq!(status, "Accepted");
    csms.call_from(from, "StopTransaction", |p| p["transactionId"] == id);
    rig.unplug_and_wait(1).await;
    csms.call_from(from, "StatusNotification", |p| {
        p["connectorId"] == 2 && p["status"] == "Available"
    });
}

/// When this process first sees gun 1 energised with current flowing (5 ms polls).
async fn energy_flowing(rig: &Rig) -> f64 {
    let deadline = Instant::now() + STEP;
    loop {
        let s = state(&rig.world).await;
        let g = gun(&s, 1);
        if g["energised"] == true && g["current_a"].as_f64().unwrap_or(0.0) > 0.0 {
            return unix_now();
        }
        assert!(
            Instant::now() < deadline,
            "gun 1 not energised: {}",
            describe_gun(&s, 1)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A csms.py receive time.
fn seconds(t: &serde_json::Value) -> f64 {
    t.as_f64().expect("a receive time")
}

/// The `p` quantile of sorted `values` (nearest rank).
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = (p * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
