//! A hub of three node processes, one per cabinet of the demo hub, and the operator's
//! CLI pointed at it: what the multi-node tests share.

use std::path::Path;
use std::time::Duration;

use ringhub_sim::server::Sim;
use serde_json::Value;

use super::{NodeArgs, NodeProcess, STEP, TempDir, eventually, free_port, gun};

/// The demo hub's cabinets.
pub const CABINETS: [&str; 3] = ["cab-a", "cab-b", "cab-c"];

/// The three nodes' start arguments: each listens on its own loopback port and connects
/// to the two others.
pub fn hub_args(sim: &Sim, dir: &TempDir) -> Vec<NodeArgs> {
    let endpoints: Vec<String> = CABINETS
        .iter()
        .map(|_| format!("tcp/127.0.0.1:{}", free_port()))
        .collect();
    CABINETS
        .iter()
        .enumerate()
        .map(|(i, &cabinet)| NodeArgs {
            node: cabinet,
            auth: "free",
            config: None,
            data_dir: dir.path().join(cabinet),
            socketcand: sim.socketcand_addr(),
            zenoh_listen: Some(endpoints[i].clone()),
            zenoh_connect: endpoints
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, e)| e.clone())
                .collect(),
        })
        .collect()
}

/// Runs the `ringhub` CLI with `args`, reaching the hub through `endpoints`; its stdout
/// when it succeeds, its stderr when it fails.
pub async fn ringhub(args: &[&str], endpoints: &[String]) -> Result<String, String> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringhub"));
    command.args(args).kill_on_drop(true);
    for endpoint in endpoints {
        command.args(["--connect", endpoint]);
    }
    let output = tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .map_err(|_| format!("ringhub {args:?} took longer than 10 s"))?
        .map_err(|e| format!("ringhub {args:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `ringhub status --json`.
pub async fn status(endpoints: &[String]) -> Result<Value, String> {
    let out = ringhub(&["status", "--json"], endpoints).await?;
    serde_json::from_str(&out).map_err(|e| format!("status JSON: {e}: {out}"))
}

/// The record's view of segment `id` in a status; null while the record has no ring.
pub fn segment_status(status: &Value, id: u64) -> &Value {
    static NONE: Value = Value::Null;
    status["segments"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["segment"] == id))
        .unwrap_or(&NONE)
}

/// What the plan in force grants `gun`, watts.
pub fn granted(status: &Value, gun: u64) -> u64 {
    status["islands"]
        .as_array()
        .and_then(|islands| islands.iter().find(|i| i["gun"] == gun))
        .and_then(|i| i["granted_w"].as_u64())
        .unwrap_or(0)
}

/// The power a gun delivers now, as the simulator's physics say, kW.
pub fn delivered_kw(truth: &Value, id: u64) -> f64 {
    let g = gun(truth, id);
    let volts = truth["islands"]
        .as_array()
        .and_then(|islands| {
            islands.iter().find(|i| {
                i["energised_guns"]
                    .as_array()
                    .is_some_and(|g| g.contains(&id.into()))
            })
        })
        .and_then(|i| i["voltage_v"].as_f64())
        .unwrap_or(0.0);
    g["current_a"].as_f64().unwrap_or(0.0) * volts / 1000.0
}

/// The three nodes on `sim`, reading `config` instead of the demo hub's when given, once
/// the leader has committed a first plan; with their Zenoh endpoints.
pub async fn planned_hub(
    sim: &Sim,
    dir: &TempDir,
    config: Option<&Path>,
) -> (Vec<NodeProcess>, Vec<String>) {
    let nodes: Vec<NodeProcess> = hub_args(sim, dir)
        .into_iter()
        .map(|mut args| {
            if let Some(config) = config {
                args.config = Some(config.to_path_buf());
            }
            NodeProcess::spawn(&args, dir.path())
        })
        .collect();
    let endpoints: Vec<String> = nodes.iter().map(|n| n.zenoh.clone()).collect();
    eventually("a first plan", STEP, async || {
        let status = status(&endpoints).await?;
        match status["plan_epoch"].as_u64() {
            Some(epoch) if epoch >= 1 => Ok(()),
            _ => Err(format!("{status}")),
        }
    })
    .await;
    (nodes, endpoints)
}
