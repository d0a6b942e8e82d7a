//! What every scenario must leave true once its faults are over (DESIGN.md §2):
//!
//! - **referee**: the simulator's referee saw no violation of S1–S9 on the ground truth;
//! - **convergence**: every node answers for itself with the same leader, the same plan
//!   epoch and the same latches, and none is degraded;
//! - **S6**: every latch seen during the run is still in the record, active, or cleared
//!   by its rule (an operator-only latch stays active: the suite never clears one);
//! - **S7**: a node cut off from the majority went degraded within its lease (plus
//!   margin), opened its ties to other cabinets, and its guns drew no more than they
//!   held when it was cut off (checked while the cut lasts, see [`IsolationWatch`]);
//! - **transactions**: the CSMS saw each StartTransaction once, transaction ids unique,
//!   and exactly one StopTransaction for each once every EV has left.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ringhub_proto::v1;
use serde_json::Value;

use crate::hub::{CABINETS, Hub};
use crate::probe::{Admin, Control, NodeView, cli, delivered_kw, eventually, scrape};

/// Longest the hub may take to agree again once the faults are over.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// A node's lease (README, "Lease and degraded mode").
pub const LEASE: Duration = Duration::from_millis(1500);
/// Slack on top of the lease for a node to notice and report it: Zenoh's link lease
/// (1 s) before the peers' liveliness tokens go, and 2 s of margin. The partition
/// scenarios hold their cut longer than lease and slack together.
const DEGRADED_MARGIN: Duration = Duration::from_secs(3);
/// Longest the CSMS may take to see every transaction stopped after the EVs left.
const STOPPED: Duration = Duration::from_secs(45);
/// What a cut-off gun may draw above what it held: metering noise.
const HELD_SLACK_KW: f64 = 2.0;

/// One thing a scenario found wrong.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The check: `referee`, `convergence`, `S6`, `S7`, `transactions`, `crash`, `harness`.
    pub check: &'static str,
    /// What was wrong.
    pub detail: String,
}

impl Finding {
    /// A finding of `check`.
    pub fn new(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            detail: detail.into(),
        }
    }
}

/// The referee's violations, one finding each.
pub async fn referee(control: Control) -> Vec<Finding> {
    match control.violations().await {
        Ok(all) => all
            .into_iter()
            .map(|v| Finding::new("referee", v.to_string()))
            .collect(),
        Err(e) => vec![Finding::new("harness", format!("reading the referee: {e}"))],
    }
}

/// Each node's own view, once they all agree; how long that took.
pub async fn converge(hub: &Hub) -> Result<(Duration, Vec<NodeView>), Finding> {
    let started = Instant::now();
    let admin = Admin::connect("demo", &hub.endpoints())
        .await
        .map_err(|e| Finding::new("harness", e.to_string()))?;
    let metrics: Vec<_> = hub.nodes.iter().map(|n| n.metrics).collect();
    let agreed = eventually("every node to agree on the record", CONVERGE, async || {
        let mut views = Vec::new();
        for cabinet in CABINETS {
            views.push(admin.view(cabinet).await?);
        }
        for (cabinet, addr) in CABINETS.iter().zip(&metrics) {
            let m = scrape(*addr).await.map_err(|e| e.to_string())?;
            if m.value("ringhub_node_degraded") != 0.0 {
                return Err(format!("{cabinet} is degraded"));
            }
        }
        let first = &views[0];
        let leader = &first.status.leader_node_id;
        if leader.is_empty() {
            return Err("no leader".into());
        }
        for (cabinet, view) in CABINETS.iter().zip(&views) {
            if &view.status.leader_node_id != leader {
                return Err(format!(
                    "{cabinet} follows {:?}, cab-a {leader:?}",
                    view.status.leader_node_id
                ));
            }
            if view.plan_epoch() != first.plan_epoch() {
                return Err(format!(
                    "{cabinet} at plan epoch {}, cab-a at {}",
                    view.plan_epoch(),
                    first.plan_epoch()
                ));
            }
            if view.latch_keys() != first.latch_keys() {
                return Err(format!(
                    "{cabinet} holds latches {:?}, cab-a {:?}",
                    view.latch_keys(),
                    first.latch_keys()
                ));
            }
            let behind: Vec<String> = view
                .status
                .node_epochs
                .iter()
                .filter(|e| e.reached_epoch != first.plan_epoch())
                .map(|e| format!("{e:?}"))
                .collect();
            if !behind.is_empty() {
                return Err(format!("{cabinet} sees nodes behind: {behind:?}"));
            }
        }
        Ok(views)
    })
    .await;
    admin.close().await;
    agreed
        .map(|views| (started.elapsed(), views))
        .map_err(|e| Finding::new("convergence", e.to_string()))
}

/// Every latch seen so far, by id: the most recent view of it.
#[derive(Debug, Default, Clone)]
pub struct LatchLog(pub BTreeMap<u64, v1::Fault>);

impl LatchLog {
    /// Adds what `views` hold.
    pub fn record(&mut self, views: &[NodeView]) {
        for view in views {
            for latch in &view.latches {
                self.0.insert(latch.fault_id, latch.clone());
            }
        }
    }
}

/// Takes a snapshot of whatever latches the reachable nodes hold now (best effort: a
/// node that is down or cut off is skipped).
pub async fn snapshot(hub: &Hub, log: &mut LatchLog) {
    let Ok(admin) = Admin::connect("demo", &hub.endpoints()).await else {
        return;
    };
    for cabinet in CABINETS {
        if let Ok(view) = admin.view(cabinet).await {
            log.record(std::slice::from_ref(&view));
        }
    }
    admin.close().await;
}

/// S6 on `ringhub faults history --json`, asked of each node alone.
pub async fn s6(hub: &Hub, seen: &LatchLog) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (cabinet, endpoint) in CABINETS.iter().zip(hub.endpoints()) {
        let out = cli(
            &hub.cli,
            &hub.config,
            std::slice::from_ref(&endpoint),
            &["faults", "history", "--json"],
        )
        .await;
        let history: Vec<Value> = match out
            .map_err(|e| e.to_string())
            .and_then(|o| serde_json::from_str(&o).map_err(|e| format!("{e}: {o}")))
        {
            Ok(history) => history,
            Err(e) => {
                findings.push(Finding::new(
                    "S6",
                    format!("{cabinet}: faults history: {e}"),
                ));
                continue;
            }
        };
        let by_id: BTreeMap<u64, &Value> = history
            .iter()
            .filter_map(|l| Some((l["id"].as_u64()?, l)))
            .collect();
        for (id, latch) in &seen.0 {
            let Some(now) = by_id.get(id) else {
                findings.push(Finding::new(
                    "S6",
                    format!(
                        "{cabinet}: latch {id} {} on {} seen earlier is gone from the history",
                        latch.code, latch.scope_id
                    ),
                ));
                continue;
            };
            let operator_only = latch.clear_rule == v1::ClearRule::Operator as i32;
            if operator_only && now["status"] != "active" {
                findings.push(Finding::new(
                    "S6",
                    format!("{cabinet}: operator-only latch {id} {} is {now} though no operator cleared it", latch.code),
                ));
            }
        }
        for latch in &history {
            if latch["status"] == "cleared" && latch["cleared_by"].as_str().unwrap_or("").is_empty()
            {
                findings.push(Finding::new(
                    "S6",
                    format!("{cabinet}: latch cleared by nobody: {latch}"),
                ));
            }
        }
    }
    findings
}

/// Watches a node cut off from the majority (S7), from the moment it is cut off.
#[derive(Debug)]
pub struct IsolationWatch {
    /// The cabinet's index.
    victim: usize,
    /// What each of its guns was granted before the cut, kW.
    held_kw: BTreeMap<u64, f64>,
    /// The plan in force before the cut joins the previous cabinet's last segment to
    /// this one's first: a tie close in flight then is the plan carried out, not the
    /// majority acting on a cut it cannot know of yet.
    tie_in_planned: bool,
    /// Findings so far.
    pub findings: Vec<Finding>,
    /// When it went degraded, after the cut.
    pub degraded_after: Option<Duration>,
}

impl IsolationWatch {
    /// Reads what `victim`'s guns hold, and whether the plan ties it to the previous
    /// cabinet, before it is cut off.
    pub async fn before(hub: &Hub, victim: usize) -> Self {
        let mut held_kw = BTreeMap::new();
        let island_gun = |m: &crate::probe::Metrics, segment: usize| {
            m.get(
                "ringhub_segment_island_gun",
                &[("segment", &segment.to_string())],
            )
            .filter(|&gun| gun >= 0.0)
        };
        let first_segment = victim * 2;
        let previous_segment = segment_before(victim);
        let mut victims_gun = None;
        if let Ok(m) = scrape(hub.nodes[victim].metrics).await {
            for gun in guns_of(victim) {
                let granted = m
                    .get(
                        "ringhub_gun_granted_power_watts",
                        &[("gun", &gun.to_string())],
                    )
                    .unwrap_or(0.0);
                held_kw.insert(gun, granted / 1000.0);
            }
            victims_gun = island_gun(&m, first_segment);
        }
        let previous = hub.nodes[previous_segment / 2].metrics;
        let previous_gun = scrape(previous)
            .await
            .ok()
            .and_then(|m| island_gun(&m, previous_segment));
        Self {
            victim,
            held_kw,
            tie_in_planned: victims_gun.is_some() && victims_gun == previous_gun,
            findings: Vec::new(),
            degraded_after: None,
        }
    }

    /// Called right after the cut, for as long as it lasts (`hold`): samples the ground
    /// truth and the node's standing every 100 ms, then judges the samples. The node
    /// must go degraded within its lease (plus Zenoh's link lease and margin), its tie
    /// to the next cabinet must be open once it has had time to ramp down (2 s), its
    /// guns must draw no more than they held, and the majority must not close the tie
    /// from the previous cabinet into it (but for a close the plan had in flight).
    pub async fn during(&mut self, hub: &Hub, hold: Duration) {
        let cut_at = Instant::now();
        let control = Control(hub.sim.control);
        let addr = hub.nodes[self.victim].metrics;
        let cabinet = CABINETS[self.victim];
        let own_tie = (self.victim * 2 + 1) as u64;
        let neighbour_tie = segment_before(self.victim) as u64;
        let majority: Vec<(usize, std::net::SocketAddr)> = hub
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.victim)
            .map(|(i, n)| (i, n.metrics))
            .collect();
        let mut samples: Vec<Sample> = Vec::new();
        while cut_at.elapsed() < hold {
            let at = cut_at.elapsed();
            let degraded = scrape(addr)
                .await
                .ok()
                .map(|m| m.value("ringhub_node_degraded") == 1.0);
            let mut others = Vec::new();
            for (i, addr) in &majority {
                let view = scrape(*addr).await.ok().map(|m| {
                    (
                        m.value("ringhub_node_degraded") == 1.0,
                        m.value("ringhub_raft_leader_id") as u64,
                    )
                });
                others.push((*i, view));
            }
            if let Ok(state) = control.state().await {
                samples.push(Sample {
                    at,
                    degraded,
                    majority: others,
                    own_tie_closed: crate::probe::contactor(&state, own_tie, "mn").1,
                    neighbour_tie_closed: crate::probe::contactor(&state, neighbour_tie, "mn").1,
                    kw: self
                        .held_kw
                        .keys()
                        .map(|&g| (g, delivered_kw(&state, g)))
                        .collect(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.judge(cabinet, own_tie, neighbour_tie, hold, &samples);
    }

    /// Turns the samples of a cut into findings.
    fn judge(
        &mut self,
        cabinet: &str,
        own_tie: u64,
        neighbour_tie: u64,
        hold: Duration,
        samples: &[Sample],
    ) {
        let deadline = LEASE + DEGRADED_MARGIN;
        let degraded_at = samples
            .iter()
            .find(|s| s.degraded == Some(true))
            .map(|s| s.at);
        self.degraded_after = degraded_at;
        if degraded_at.is_none_or(|at| at > deadline) && hold > deadline {
            self.findings.push(Finding::new(
                "S7",
                format!("{cabinet} cut off: not degraded within {deadline:?} (first seen degraded: {degraded_at:?})"),
            ));
        }
        let settled = degraded_at.unwrap_or(deadline) + Duration::from_secs(2);
        if let Some(s) = samples.iter().find(|s| s.at > settled && s.own_tie_closed) {
            self.findings.push(Finding::new(
                "S7",
                format!(
                    "{cabinet} cut off: its tie to the next cabinet (segment {own_tie} mn) still closed {:?} after the cut",
                    s.at
                ),
            ));
        }
        // A close the plan had in flight at the cut lands within the lease; one later is
        // the majority's own doing.
        let in_flight = |s: &Sample| self.tie_in_planned && s.at < LEASE;
        if let Some(s) = samples
            .windows(2)
            .filter(|w| !w[0].neighbour_tie_closed && w[1].neighbour_tie_closed)
            .map(|w| &w[1])
            .find(|s| !in_flight(s))
        {
            self.findings.push(Finding::new(
                "S7",
                format!(
                    "{cabinet} cut off: the majority closed the tie into it (segment {neighbour_tie} mn) {:?} after the cut",
                    s.at
                ),
            ));
        }
        // The majority carries on: by the last second of a cut longer than the lease and
        // its slack, the other nodes are not degraded and follow one leader among them.
        if hold > deadline + Duration::from_secs(1) {
            let end: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.at + Duration::from_secs(1) >= hold)
                .collect();
            let victim_id = self.victim as u64 + 1;
            let stuck = end.iter().find(|s| {
                let leaders: Vec<u64> = s
                    .majority
                    .iter()
                    .filter_map(|(_, v)| v.map(|v| v.1))
                    .collect();
                s.majority
                    .iter()
                    .any(|(_, v)| v.is_none_or(|(degraded, _)| degraded))
                    || leaders.len() != s.majority.len()
                    || leaders
                        .iter()
                        .any(|&l| l == 0 || l == victim_id || l != leaders[0])
            });
            if let Some(s) = stuck {
                let views: Vec<String> = s
                    .majority
                    .iter()
                    .map(|(i, v)| match v {
                        Some((degraded, leader)) => {
                            format!("{} degraded={degraded} leader_id={leader}", CABINETS[*i])
                        }
                        None => format!("{} no metrics", CABINETS[*i]),
                    })
                    .collect();
                self.findings.push(Finding::new(
                    "S7",
                    format!(
                        "{cabinet} cut off: the majority is not carrying on {:?} into a {hold:?} cut: {}",
                        s.at,
                        views.join(", ")
                    ),
                ));
            }
        }
        let after = degraded_at.unwrap_or(LEASE * 2);
        for s in samples.iter().filter(|s| s.at > after) {
            for (gun, kw) in &s.kw {
                let held = self.held_kw.get(gun).copied().unwrap_or(0.0);
                if *kw > held * 1.05 + HELD_SLACK_KW {
                    self.findings.push(Finding::new(
                        "S7",
                        format!(
                            "{cabinet} cut off: gun {gun} draws {kw:.1} kW {:?} after the cut, it held {held:.1} kW",
                            s.at
                        ),
                    ));
                    return;
                }
            }
        }
    }
}

/// One look at a cut-off cabinet.
#[derive(Debug, Clone)]
struct Sample {
    /// Since the cut.
    at: Duration,
    /// What its metrics said (None: no answer).
    degraded: Option<bool>,
    /// Its tie to the next cabinet, as the relay feedback shows it.
    own_tie_closed: bool,
    /// The previous cabinet's tie into it.
    neighbour_tie_closed: bool,
    /// Its guns' delivered power, kW.
    kw: Vec<(u64, f64)>,
    /// Each other node's (degraded, Raft leader id) from its metrics.
    majority: Vec<(usize, Option<(bool, u64)>)>,
}

/// The previous cabinet's last segment in the demo ring (six segments, two per
/// cabinet): its tie (`mn`) leads into cabinet `index`'s first segment.
fn segment_before(index: usize) -> usize {
    (index * 2 + 5) % 6
}

/// The guns of cabinet `index` in the demo hub (two per cabinet, gun n on segment n).
fn guns_of(index: usize) -> [u64; 2] {
    [index as u64 * 2, index as u64 * 2 + 1]
}

/// The transactions the CSMS saw, per charge point.
#[derive(Debug, Default)]
struct Ledger {
    /// transactionId → (cp, connectorId, meterStart, timestamp) of its StartTransaction.
    started: BTreeMap<i64, (String, Value, Value, Value)>,
    /// transactionId → StopTransactions seen.
    stopped: BTreeMap<i64, u32>,
    /// (cp, connectorId, meterStart, timestamp) of StartTransactions seen more than once.
    repeated: Vec<String>,
    /// Ids handed out twice.
    reused: Vec<i64>,
}

/// Reads csms.py's lines: each `received` StartTransaction is followed by the
/// `transaction` line of the id it was given.
fn ledger(lines: &[Value]) -> Ledger {
    let mut ledger = Ledger::default();
    let mut waiting: BTreeMap<String, Vec<(Value, Value, Value)>> = BTreeMap::new();
    let mut starts: BTreeSet<String> = BTreeSet::new();
    for line in lines {
        let cp = line["cp"].as_str().unwrap_or_default().to_owned();
        match (line["event"].as_str(), line["action"].as_str()) {
            (Some("received"), Some("StartTransaction")) => {
                let p = &line["payload"];
                let key = format!(
                    "{cp} {} {} {}",
                    p["connectorId"], p["meterStart"], p["timestamp"]
                );
                if !starts.insert(key.clone()) {
                    ledger.repeated.push(key);
                }
                waiting.entry(cp).or_default().push((
                    p["connectorId"].clone(),
                    p["meterStart"].clone(),
                    p["timestamp"].clone(),
                ));
            }
            (Some("transaction"), _) => {
                let Some(id) = line["transactionId"].as_i64() else {
                    continue;
                };
                let start = waiting
                    .get_mut(&cp)
                    .and_then(|w| (!w.is_empty()).then(|| w.remove(0)));
                let (connector, meter, at) = start.unwrap_or_default();
                if ledger
                    .started
                    .insert(id, (cp, connector, meter, at))
                    .is_some()
                {
                    ledger.reused.push(id);
                }
            }
            (Some("received"), Some("StopTransaction")) => {
                if let Some(id) = line["payload"]["transactionId"].as_i64() {
                    *ledger.stopped.entry(id).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    ledger
}

/// The CSMS's charge point and connector of `gun` in the demo hub (two guns per
/// dispenser, connectors 1 and 2).
fn connector_of(gun: u64) -> (String, i64) {
    let identity = ["RH-DEMO-A", "RH-DEMO-B", "RH-DEMO-C"][(gun / 2) as usize % 3];
    (identity.to_owned(), (gun % 2) as i64 + 1)
}

/// Every gun that delivers current must be inside a transaction the CSMS knows is open:
/// energy is never delivered outside one. Probed until it holds, for a while (a
/// StartTransaction may be on its way).
pub async fn open_transactions(hub: &Hub) -> Vec<Finding> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let findings = charging_outside_transactions(hub).await;
        if findings.is_empty() || Instant::now() >= deadline {
            return findings;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One look for guns delivering current outside a transaction.
async fn charging_outside_transactions(hub: &Hub) -> Vec<Finding> {
    let control = Control(hub.sim.control);
    let state = match control.state().await {
        Ok(state) => state,
        Err(e) => return vec![Finding::new("harness", e.to_string())],
    };
    let ledger = ledger(&hub.csms.lines());
    let open: BTreeSet<(String, i64)> = ledger
        .started
        .iter()
        .filter(|(id, _)| !ledger.stopped.contains_key(id))
        .filter_map(|(_, (cp, connector, _, _))| Some((cp.clone(), connector.as_i64()?)))
        .collect();
    let mut findings = Vec::new();
    for gun in 0..6u64 {
        let current = crate::probe::gun(&state, gun)["current_a"]
            .as_f64()
            .unwrap_or(0.0);
        let (cp, connector) = connector_of(gun);
        if current > 5.0 && !open.contains(&(cp.clone(), connector)) {
            findings.push(Finding::new(
                "transactions",
                format!("gun {gun} delivers {current:.0} A with no open transaction on {cp} connector {connector}"),
            ));
        }
    }
    findings
}

/// Waits until every transaction the CSMS started is stopped (the EVs have left), then
/// checks there is none lost or duplicated.
pub async fn transactions(hub: &Hub) -> Vec<Finding> {
    let done = eventually(
        "a StopTransaction for every transaction",
        STOPPED,
        async || {
            let ledger = ledger(&hub.csms.lines());
            let open: Vec<i64> = ledger
                .started
                .keys()
                .filter(|id| !ledger.stopped.contains_key(id))
                .copied()
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("no StopTransaction yet for {open:?}"))
            }
        },
    )
    .await;
    let mut findings = Vec::new();
    if let Err(e) = done {
        findings.push(Finding::new("transactions", format!("lost: {e}")));
    }
    let ledger = ledger(&hub.csms.lines());
    eprintln!(
        "  the CSMS saw {} transaction(s) started, {} StopTransaction(s)",
        ledger.started.len(),
        ledger.stopped.values().sum::<u32>()
    );
    if ledger.started.is_empty() {
        findings.push(Finding::new(
            "transactions",
            "the CSMS saw no transaction at all",
        ));
    }
    for key in &ledger.repeated {
        findings.push(Finding::new(
            "transactions",
            format!("StartTransaction sent twice: {key}"),
        ));
    }
    for id in &ledger.reused {
        findings.push(Finding::new(
            "transactions",
            format!("transaction id {id} reused"),
        ));
    }
    for (id, count) in &ledger.stopped {
        if *count > 1 {
            findings.push(Finding::new(
                "transactions",
                format!("transaction {id} stopped {count} times"),
            ));
        }
        if !ledger.started.contains_key(id) {
            findings.push(Finding::new(
                "transactions",
                format!("StopTransaction for transaction {id}, which the CSMS never started"),
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_ledger_pairs_starts_with_ids_and_counts_stops() {
        let lines = vec![
            json!({"event": "received", "cp": "A", "action": "StartTransaction", "payload": {"connectorId": 1, "meterStart": 0, "timestamp": "t1"}}),
            json!({"event": "transaction", "cp": "A", "transactionId": 1}),
            json!({"event": "received", "cp": "A", "action": "StartTransaction", "payload": {"connectorId": 1, "meterStart": 0, "timestamp": "t1"}}),
            json!({"event": "transaction", "cp": "A", "transactionId": 2}),
            json!({"event": "received", "cp": "A", "action": "StopTransaction", "payload": {"transactionId": 1}}),
            json!({"event": "received", "cp": "A", "action": "StopTransaction", "payload": {"transactionId": 1}}),
        ];
        let ledger = ledger(&lines);
        assert_eq!(ledger.started.len(), 2);
        assert_eq!(ledger.repeated.len(), 1, "the same start twice");
        assert_eq!(ledger.stopped.get(&1), Some(&2));
        assert!(!ledger.stopped.contains_key(&2));
    }

    /// The S7 findings about the tie into cab-a when the previous cabinet's tie reads
    /// closed from `closed_from_ms` after the cut (samples every 100 ms for 4 s, cab-a
    /// degraded from 2 s on).
    fn tie_in_findings(tie_in_planned: bool, closed_from_ms: u64) -> Vec<Finding> {
        let mut watch = IsolationWatch {
            victim: 0,
            held_kw: BTreeMap::new(),
            tie_in_planned,
            findings: Vec::new(),
            degraded_after: None,
        };
        let samples: Vec<Sample> = (0..40)
            .map(|i| Sample {
                at: Duration::from_millis(i * 100),
                degraded: Some(i >= 20),
                own_tie_closed: false,
                neighbour_tie_closed: i * 100 >= closed_from_ms,
                kw: Vec::new(),
                majority: Vec::new(),
            })
            .collect();
        watch.judge("cab-a", 1, 5, Duration::from_secs(4), &samples);
        watch
            .findings
            .into_iter()
            .filter(|f| f.detail.contains("closed the tie into it"))
            .collect()
    }

    #[test]
    fn a_tie_into_a_cut_node_may_close_only_as_the_plan_had_it_in_flight() {
        assert!(
            tie_in_findings(true, 300).is_empty(),
            "the plan joined them: a close 300 ms into the cut was under way"
        );
        assert_eq!(
            tie_in_findings(false, 300).len(),
            1,
            "no plan joined them: the majority closed it"
        );
        assert_eq!(
            tie_in_findings(true, 2000).len(),
            1,
            "planned, but closed after the lease: the majority acted on its own"
        );
    }
}
