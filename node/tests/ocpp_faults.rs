//! What the CSMS hears of a latched fault (issue 9, "CSMS"): three `ringhub-node`
//! processes on the simulator, cab-a's dispenser RH-DEMO-A on `tests/ocpp_csms/csms.py`,
//! whose `ocpp` package checks every message against the OCA JSON schemas.
//!
//! An isolation fault on gun 0 sends StatusNotification Faulted on connector 1 with the
//! catalog's ChargePointErrorCode (GroundFailure), the code as vendorErrorCode and the
//! subject as info; an operator's clear, once the monitor reads OK, brings it back to
//! Available with NoError. Repeated, the fault → Faulted latency at the CSMS is printed
//! (p50, p99): the fault time is taken by this process just before the simulator's
//! InjectFault, the receive time is csms.py's `t`, both on this machine's wall clock.

mod common;

use common::cluster::{hub_args, ringhub};
use common::csms::{Csms, demo_with_csms, unix_now};
use common::{NodeProcess, STEP, TempDir, act, assert_no_violations, bounded, eventually, inject};
use ringhub_sim::world::{Action, FaultKind};
use serde_json::Value;

/// How many faults are timed.
const ROUNDS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latched_gun_fault_is_faulted_at_the_csms_with_the_catalogs_codes() {
    bounded(async {
        let mut csms = Csms::start(&[]);
        let (text, config) = demo_with_csms(&csms.url());
        let dir = TempDir::new("ocpp-faults");
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).expect("write the hub config");
        let sim = common::start_sim(config, 21).await;
        let nodes: Vec<NodeProcess> = hub_args(&sim, &dir)
            .into_iter()
            .map(|mut args| {
                args.config = Some(path.clone());
                if args.node == "cab-a" {
                    args.auth = "ocpp";
                }
                NodeProcess::spawn(&args, dir.path())
            })
            .collect();
        let endpoints: Vec<String> = nodes.iter().map(|n| n.zenoh.clone()).collect();
        csms.call("StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Available"
        });
        let world = sim.world();

        let mut latencies = Vec::new();
        for round in 0..ROUNDS {
            let from = csms.mark();
            let injected_at = unix_now();
            let fault = inject(&world, FaultKind::IsolationFault, 0, "").await;
            let faulted = csms.call_from(from, "StatusNotification", |p| {
                p["connectorId"] == 1 && p["status"] == "Faulted"
            });
            latencies.push(faulted["t"].as_f64().expect("receive time") - injected_at);
            let payload = &faulted["payload"];
            assert_eq!(payload["errorCode"], "GroundFailure", "{faulted}");
            assert_eq!(payload["vendorErrorCode"], "ISOLATION_FAULT", "{faulted}");
            assert_eq!(payload["info"], "gun 0", "{faulted}");

            // The operator clears it once the monitor reads OK: Available again.
            act(&world, Action::ClearFault { id: fault }).await;
            let latch = eventually("the active latch", STEP, async || {
                let out = ringhub(&["faults", "--json"], &endpoints).await?;
                let active: Vec<Value> = serde_json::from_str(&out).map_err(|e| e.to_string())?;
                active
                    .into_iter()
                    .find(|l| l["code"] == "ISOLATION_FAULT")
                    .ok_or_else(|| format!("round {round}: no active latch yet: {out}"))
            })
            .await;
            let id = latch["id"].as_u64().expect("latch id").to_string();
            let from = csms.mark();
            eventually("the operator's clear", STEP, async || {
                ringhub(
                    &["faults", "clear", &id, "--reason", "insulation checked"],
                    &endpoints,
                )
                .await
            })
            .await;
            let available = csms.call_from(from, "StatusNotification", |p| {
                p["connectorId"] == 1 && p["status"] == "Available"
            });
            assert_eq!(available["payload"]["errorCode"], "NoError", "{available}");
        }

        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize] * 1e3;
        println!(
            "fault -> StatusNotification(Faulted) at the CSMS over {ROUNDS} faults: \
             p50 {:.1} ms, p99 {:.1} ms",
            at(0.5),
            at(0.99)
        );
        assert!(
            latencies.iter().all(|&l| l > 0.0),
            "Faulted came after the fault"
        );
        assert_no_violations(&world).await;
    })
    .await;
}
