//! Three `ringhub-node` processes, one per cabinet of the demo hub, on the simulator, each
//! with its own data dir and its Zenoh session on loopback (issue 7, "Tests"):
//!
//! - they elect a Raft leader among the config's cabinets; the leader is killed with
//!   SIGKILL, and the two others elect a new one (each node's view from its metrics);
//! - a latch raised just before its raiser is killed survives: raised while its node has
//!   no majority (so it is only in that node's store when the node is killed), it reaches
//!   the record once the hub is back, as `ringhub faults` shows from outside, and the
//!   restarted raiser holds it (S6, S9) until an operator clears it with
//!   `ringhub faults clear`; meanwhile the island manager holds its segment out of
//!   service, and puts it back once cleared;
//! - a node paused (SIGSTOP) past its lease: its PLCs' watchdogs open its contactors, the
//!   others take its segments out of service and re-plan around it while an EV on
//!   another cabinet charges on; resumed (SIGCONT), it finds itself degraded, catches up,
//!   reports, and its segments rejoin;
//! - a cabinet added at the end of the hub config: the nodes restart one by one on the
//!   new config, the leader puts the grown ring into the log, the new node finds the
//!   running cluster instead of starting its own, and it joins as a learner, then a
//!   voter, and its segments go into service.
//!
//! ```text
//!   cab-a ◄──Zenoh──► cab-b ◄──Zenoh──► cab-c      (each also socketcand → Sim)
//! ```

mod common;

use common::cluster::{hub_args, ringhub, segment_status, status};
use common::{
    NodeArgs, NodeProcess, STEP, TempDir, act, assert_no_violations, bounded, describe_gun, ev,
    eventually, free_port, gun, inject, scrape, start_sim, state,
};
use ringhub_proto::config::{DEMO_TOML, HubConfig};
use ringhub_sim::world::{Action, FaultKind};
use serde_json::Value;

/// The leader id every node of `nodes` reports, once they all report the same one, other
/// than `not`.
async fn agreed_leader(nodes: &[&NodeProcess], not: Option<u64>, what: &str) -> u64 {
    eventually(what, STEP, async || {
        let mut seen = Vec::new();
        for node in nodes {
            let metrics = scrape(node.metrics).await?;
            let leader = metrics
                .get("ringhub_raft_leader_id", &[])
                .ok_or("no ringhub_raft_leader_id yet")?;
            seen.push(leader);
        }
        match seen.first() {
            Some(&leader)
                if leader > 0.0
                    && Some(leader as u64) != not
                    && seen.iter().all(|&l| l == leader) =>
            {
                Ok(leader as u64)
            }
            _ => Err(format!("leaders seen: {seen:?}")),
        }
    })
    .await
}

/// Every latch (active and cleared) as `ringhub faults --all --json` lists it.
async fn latches(endpoints: &[String]) -> Result<Vec<Value>, String> {
    let out = ringhub(&["faults", "--all", "--json"], endpoints).await?;
    serde_json::from_str(&out).map_err(|e| format!("faults JSON: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replace_it_after_a_sigkill() {
    bounded(async {
        let sim = start_sim(HubConfig::demo(), 7).await;
        let dir = TempDir::new("cluster");
        let mut nodes: Vec<NodeProcess> = hub_args(&sim, &dir)
            .iter()
            .map(|args| NodeProcess::spawn(args, dir.path()))
            .collect();
        let all: Vec<&NodeProcess> = nodes.iter().collect();
        let first = agreed_leader(&all, None, "a leader all three nodes follow").await;
        assert!((1..=3).contains(&first), "a cabinet of the config: {first}");
        let leader_metrics = scrape(nodes[(first - 1) as usize].metrics)
            .await
            .expect("scrape");
        assert_eq!(leader_metrics.get("ringhub_raft_is_leader", &[]), Some(1.0));

        // A follower's PLC goes silent: a latch in the record before the leader dies.
        let endpoints: Vec<String> = nodes.iter().map(|n| n.zenoh.clone()).collect();
        let follower = (first % 3) as u16;
        let segment = follower * 2;
        let scope_id = segment.to_string();
        inject(&sim.world(), FaultKind::PlcSilence, segment, "").await;
        let before = eventually("the PLC_SILENT latch in the record", STEP, async || {
            let all = latches(&endpoints).await?;
            let silent: Vec<Value> = all
                .into_iter()
                .filter(|l| l["code"] == "PLC_SILENT" && l["scope_id"] == scope_id.as_str())
                .collect();
            if silent.len() == 1 {
                Ok(silent)
            } else {
                Err(format!("{silent:?}"))
            }
        })
        .await;

        // SIGKILL: no shutdown path runs; the survivors must notice and elect anew.
        nodes[(first - 1) as usize].kill();
        let killed_at = std::time::Instant::now();
        let survivors: Vec<&NodeProcess> = nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i as u64 != first - 1)
            .map(|(_, n)| n)
            .collect();
        let second = agreed_leader(
            &survivors,
            Some(first),
            "a new leader both survivors follow",
        )
        .await;
        for (i, node) in nodes.iter_mut().enumerate() {
            if i as u64 != first - 1 {
                node.assert_running();
            }
        }
        println!(
            "cabinet {first} led; SIGKILL; both survivors follow cabinet {second} after {} ms \
             (seen through 50 ms metric polls)",
            killed_at.elapsed().as_millis()
        );
        // The record is intact under the new leader: the latch is there, as it was.
        let survivors: Vec<String> = endpoints
            .iter()
            .enumerate()
            .filter(|&(i, _)| i as u64 != first - 1)
            .map(|(_, e)| e.clone())
            .collect();
        let after = latches(&survivors).await.expect("faults after the kill");
        let same: Vec<&Value> = after
            .iter()
            .filter(|l| l["id"] == before[0]["id"])
            .collect();
        assert_eq!(same, [&before[0]], "the latch as it was: {after:?}");
        assert_no_violations(&sim.world()).await;
    })
    .await;
}

/// Waits until `node`'s metrics count `active` ISOLATION_FAULTs on segment 2 (gun 2).
async fn isolation_fault_on_gun_2(node: &NodeProcess, active: f64, what: &str) {
    eventually(what, STEP, async || {
        let metrics = scrape(node.metrics).await?;
        match metrics.fault(2, "ISOLATION_FAULT") {
            n if n == active => Ok(()),
            other => Err(format!("ISOLATION_FAULT on segment 2: {other}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latch_raised_just_before_its_raiser_is_killed_survives() {
    bounded(async {
        let sim = start_sim(HubConfig::demo(), 11).await;
        let dir = TempDir::new("cluster-latch");
        let args = hub_args(&sim, &dir);
        let mut nodes: Vec<NodeProcess> = args
            .iter()
            .map(|args| NodeProcess::spawn(args, dir.path()))
            .collect();
        let all: Vec<&NodeProcess> = nodes.iter().collect();
        agreed_leader(&all, None, "a leader all three nodes follow").await;
        let world = sim.world();

        // cab-a and cab-c die: cab-b has no majority, so what it latches now cannot commit.
        nodes[0].kill();
        nodes[2].kill();
        // cab-b's gun 2 sees an isolation fault, a latch only an operator may clear.
        let fault = inject(&world, FaultKind::IsolationFault, 2, "").await;
        eventually(
            "cab-b to store the latch it cannot commit",
            STEP,
            async || {
                let metrics = scrape(nodes[1].metrics).await?;
                match metrics.get("ringhub_latch_changes_pending", &[]) {
                    Some(1.0) => Ok(()),
                    other => Err(format!("pending latch changes: {other:?}")),
                }
            },
        )
        .await;
        // cab-b dies too, with the latch only in its store; the condition is repaired
        // meanwhile, so only that store can bring the latch back.
        nodes[1].kill();
        act(&world, Action::ClearFault { id: fault }).await;
        for (node, args) in nodes.iter_mut().zip(&args) {
            *node = NodeProcess::spawn(args, dir.path());
        }
        let endpoints: Vec<String> = nodes.iter().map(|n| n.zenoh.clone()).collect();

        let latch = eventually(
            "the latch in the record, seen by ringhub faults",
            STEP,
            async || {
                let all = latches(&endpoints).await?;
                let isolation: Vec<&Value> = all
                    .iter()
                    .filter(|l| l["code"] == "ISOLATION_FAULT")
                    .collect();
                match isolation.as_slice() {
                    [one] => Ok((*one).clone()),
                    [] => Err(format!("no isolation latch yet: {all:?}")),
                    more => panic!("the latch was recorded more than once: {more:?}"),
                }
            },
        )
        .await;
        assert_eq!(latch["status"], "active");
        assert_eq!(latch["scope"], "gun");
        assert_eq!(latch["scope_id"], "2");
        assert_eq!(latch["raised_by"], "cab-b");
        assert_eq!(latch["clear_rule"], "operator");
        assert_eq!(latch["repeat_count"], 0, "sent again, applied once");
        // An operator narrows the list by scope and severity.
        let listed = async |args: &[&str]| -> Vec<Value> {
            let out = ringhub(args, &endpoints).await.expect("ringhub faults");
            serde_json::from_str(&out).expect("faults JSON")
        };
        let severe = listed(&[
            "faults",
            "--scope",
            "gun",
            "--severity",
            "critical",
            "--json",
        ])
        .await;
        assert!(severe.iter().any(|l| l["id"] == latch["id"]), "{severe:?}");
        let modules = listed(&["faults", "--scope", "module", "--json"]).await;
        assert!(
            modules.iter().all(|l| l["scope"] == "module"),
            "{modules:?}"
        );
        let unknown = ringhub(&["faults", "--scope", "moon"], &endpoints).await;
        assert!(
            unknown
                .as_ref()
                .is_err_and(|e| e.contains("unknown scope \"moon\"")),
            "{unknown:?}"
        );
        assert!(
            nodes[1]
                .log_text()
                .contains("sending latch changes stored before the restart"),
            "the latch came from cab-b's store"
        );

        // The restarted cab-b holds it: gun 2 stays faulted though the EV side is fine.
        isolation_fault_on_gun_2(&nodes[1], 1.0, "cab-b to hold the latch again").await;
        // The island manager holds its segment out of service while it is latched.
        eventually("segment 2 out of service for the fault", STEP, async || {
            let status = status(&endpoints).await?;
            let segment = segment_status(&status, 2);
            let reason = segment["reason"].as_str().unwrap_or_default();
            if segment["in_service"] == false && reason.starts_with("ISOLATION_FAULT (latch ") {
                Ok(())
            } else {
                Err(format!("{segment}"))
            }
        })
        .await;

        // A clear without a reason is refused; with one it is committed and cab-b follows.
        let id = latch["id"].as_u64().expect("latch id").to_string();
        let refused = ringhub(&["faults", "clear", &id, "--reason", " "], &endpoints).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("needs the operator's name and a reason")),
            "{refused:?}"
        );
        let cleared = ringhub(
            &[
                "faults",
                "clear",
                &id,
                "--reason",
                "insulation checked",
                "--operator",
                "ops",
            ],
            &endpoints,
        )
        .await
        .expect("cleared");
        assert!(cleared.contains("cleared by ops"), "{cleared}");
        isolation_fault_on_gun_2(&nodes[1], 0.0, "cab-b to let the fault go").await;
        eventually("segment 2 back in service", STEP, async || {
            let status = status(&endpoints).await?;
            let segment = segment_status(&status, 2);
            if segment["in_service"] == true {
                Ok(())
            } else {
                Err(format!("{segment}"))
            }
        })
        .await;
        let after = latches(&endpoints).await.expect("faults");
        let history: Vec<&Value> = after
            .iter()
            .filter(|l| l["code"] == "ISOLATION_FAULT")
            .collect();
        assert_eq!(history.len(), 1, "{after:?}");
        assert_eq!(history[0]["status"], "cleared");
        assert_eq!(history[0]["cleared_by"], "ops");
        let history = listed(&["faults", "history", "--code", "ISOLATION", "--json"]).await;
        assert!(
            matches!(history.as_slice(), [one] if one["status"] == "cleared"),
            "{history:?}"
        );
        for node in &mut nodes {
            node.assert_running();
        }
        assert_no_violations(&world).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_planned_around_and_rejoins_when_it_resumes() {
    bounded(async {
        let sim = start_sim(HubConfig::demo(), 13).await;
        let dir = TempDir::new("cluster-pause");
        let nodes: Vec<NodeProcess> = hub_args(&sim, &dir)
            .iter()
            .map(|args| NodeProcess::spawn(args, dir.path()))
            .collect();
        let endpoints: Vec<String> = nodes.iter().map(|n| n.zenoh.clone()).collect();
        let world = sim.world();
        let first_epoch = eventually(
            "a plan that shares the site among all guns",
            STEP,
            async || {
                let status = status(&endpoints).await?;
                let epoch = status["plan_epoch"].as_u64().unwrap_or(0);
                let all_in = (0..6).all(|s| segment_status(&status, s)["in_service"] == true);
                if epoch >= 1 && all_in {
                    Ok(epoch)
                } else {
                    Err(format!("{status}"))
                }
            },
        )
        .await;

        // EVs charge on cab-a's gun 0 and on cab-b's gun 2.
        for g in [0, 2] {
            act(&world, Action::Plug(ev(g, 40.0, 90.0, 60.0))).await;
        }
        eventually("both EVs charging", STEP, async || {
            let truth = state(&world).await;
            if [0, 2]
                .iter()
                .all(|&g| gun(&truth, g)["current_a"].as_f64().unwrap_or(0.0) > 50.0)
            {
                Ok(())
            } else {
                Err(format!(
                    "{}\n{}",
                    describe_gun(&truth, 0),
                    describe_gun(&truth, 2)
                ))
            }
        })
        .await;

        // cab-b hangs: its PLCs stop hearing it, the others stop seeing it.
        nodes[1].signal("STOP");
        let replanned = eventually(
            "cab-b's segments out of service and a new plan",
            STEP,
            async || {
                let status = status(&endpoints).await?;
                let out = [2, 3].iter().all(|&s| {
                    let seg = segment_status(&status, s);
                    seg["in_service"] == false && seg["reason"] == "cab-b lost"
                });
                let epoch = status["plan_epoch"].as_u64().unwrap_or(0);
                if out && epoch > first_epoch {
                    Ok(status)
                } else {
                    Err(format!("{status}"))
                }
            },
        )
        .await;
        let replanned_epoch = replanned["plan_epoch"].as_u64().expect("epoch");
        let islands = replanned["islands"].as_array().expect("islands");
        for island in islands {
            if island["segments"] == serde_json::json!([2])
                || island["segments"] == serde_json::json!([3])
            {
                assert!(
                    island["gun"].is_null() && island["granted_w"] == 0,
                    "idle: {island}"
                );
            }
        }
        eventually(
            "cab-b's PLC watchdog to de-energise gun 2",
            STEP,
            async || {
                let truth = state(&world).await;
                if gun(&truth, 2)["energised"] == false {
                    Ok(())
                } else {
                    Err(describe_gun(&truth, 2))
                }
            },
        )
        .await;
        let truth = state(&world).await;
        assert!(
            gun(&truth, 0)["current_a"].as_f64().unwrap_or(0.0) > 50.0,
            "gun 0 on cab-a charges on: {}",
            describe_gun(&truth, 0)
        );

        // cab-b resumes, finds it stalled past the Zenoh lease and restarts in place
        // (`stall`), then rejoins.
        nodes[1].signal("CONT");
        eventually("cab-b's segments back in service", STEP, async || {
            let status = status(&endpoints).await?;
            let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
            // Every node answers, so the record shown is the most advanced one.
            let all_answered = nodes.len() == 3 && nodes.iter().all(|n| n["answered"] == true);
            let back = [2, 3]
                .iter()
                .all(|&s| segment_status(&status, s)["in_service"] == true);
            let epoch = status["plan_epoch"].as_u64().unwrap_or(0);
            let b_reached = nodes
                .iter()
                .find(|n| n["node"] == "cab-b")
                .and_then(|n| n["reached_epoch"].as_u64());
            // Gun 2's session ended when its PLC tripped: the plan may stay as it was.
            if all_answered && back && epoch >= replanned_epoch && b_reached == Some(epoch) {
                Ok(())
            } else {
                Err(format!("{status}"))
            }
        })
        .await;
        let metrics = scrape(nodes[1].metrics).await.expect("scrape cab-b");
        assert_eq!(
            metrics.get("ringhub_node_stall_restarts_total", &[]),
            Some(1.0),
            "cab-b restarted in place once"
        );
        assert_eq!(metrics.get("ringhub_node_degraded", &[]), Some(0.0));
        for (i, cabinet) in [(0, "cab-a"), (2, "cab-c")] {
            let metrics = scrape(nodes[i].metrics).await.expect("scrape");
            assert_eq!(
                metrics.get("ringhub_node_stall_restarts_total", &[]),
                Some(0.0),
                "{cabinet} kept running: no stall of its own"
            );
        }
        // The loss was latched, and its rule cleared it once cab-b had rejoined.
        let lost = eventually("CABINET_LOST cleared by its rule", STEP, async || {
            let all = latches(&endpoints).await?;
            let lost: Vec<&Value> = all
                .iter()
                .filter(|l| l["code"] == "CABINET_LOST" && l["scope_id"] == "cab-b")
                .collect();
            match lost.as_slice() {
                [one] if one["status"] == "cleared" => Ok((*one).clone()),
                _ => Err(format!("{lost:?}")),
            }
        })
        .await;
        assert!(
            lost["clear_reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("cab-b is back")),
            "{lost}"
        );
        assert_no_violations(&world).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_clears_by_rule_and_an_operator_clear_waits_for_the_condition() {
    bounded(async {
        let sim = start_sim(HubConfig::demo(), 12).await;
        let dir = TempDir::new("cluster-rules");
        let args = hub_args(&sim, &dir);
        let nodes: Vec<NodeProcess> = args
            .iter()
            .map(|args| NodeProcess::spawn(args, dir.path()))
            .collect();
        let all: Vec<&NodeProcess> = nodes.iter().collect();
        agreed_leader(&all, None, "a leader all three nodes follow").await;
        let endpoints: Vec<String> = nodes.iter().map(|n| n.zenoh.clone()).collect();
        let world = sim.world();
        let latch_of = async |code: &str| -> Value {
            eventually(&format!("a {code} latch"), STEP, async || {
                let all = latches(&endpoints).await?;
                all.into_iter()
                    .find(|l| l["code"] == code)
                    .ok_or_else(|| format!("no {code} latch yet"))
            })
            .await
        };

        // An isolation fault needs an operator, whose clear is refused while the
        // monitor still reports it, with the reason, and committed once it does not.
        let isolation = inject(&world, FaultKind::IsolationFault, 2, "").await;
        let latch = latch_of("ISOLATION_FAULT").await;
        let id = latch["id"].as_u64().expect("latch id").to_string();
        let clear = ["faults", "clear", &id, "--reason", "insulation checked"];
        let refused = eventually(
            "the clear refused while it holds",
            STEP,
            async || match ringhub(&clear, &endpoints).await {
                Err(e) if e.contains("still holds, as cab-b reports it") => Ok(e),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
        assert!(refused.contains("isolation monitor"), "{refused}");
        act(&world, Action::ClearFault { id: isolation }).await;
        let cleared = eventually("the clear committed", STEP, async || {
            ringhub(&clear, &endpoints).await
        })
        .await;
        assert!(cleared.contains("cleared by"), "{cleared}");

        // A silent PLC clears by its rule: the leader clears it once cab-c has reported
        // it gone for the whole 3 s hold, and says so.
        let silence = inject(&world, FaultKind::PlcSilence, 4, "").await;
        latch_of("PLC_SILENT").await;
        act(&world, Action::ClearFault { id: silence }).await;
        let repaired = common::csms::unix_now();
        let latch = eventually("PLC_SILENT cleared by rule", STEP, async || {
            let latch = latch_of("PLC_SILENT").await;
            if latch["status"] == "cleared" {
                Ok(latch)
            } else {
                Err(format!("{latch}"))
            }
        })
        .await;
        let cleared_by = latch["cleared_by"].as_str().unwrap_or_default();
        let reason = latch["clear_reason"].as_str().unwrap_or_default();
        assert!(cleared_by.starts_with("rule (cab-"), "{latch}");
        assert!(
            reason.starts_with("cab-c has not seen PLC_SILENT on segment 4 for"),
            "{latch}"
        );
        let cleared_s = latch["cleared_unix_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        assert!(
            cleared_s >= repaired + 2.5,
            "cleared {:.1} s after the repair: within the hold",
            cleared_s - repaired
        );
        assert_no_violations(&world).await;
    })
    .await;
}

/// A fourth cabinet for the demo hub, appended to its config: segments 6 and 7 after
/// segment 5 in the ring, with guns 6 and 7 and modules 12 to 15.
const CAB_D: &str = r#"
[[cabinets]]
id = "cab-d"
can = "socketcand:127.0.0.1:29536/cab-d"
data_dir = "/tmp/ringhub/demo/cab-d"
metrics = "127.0.0.1:9104"
zenoh_listen = ["tcp/127.0.0.1:7450"]
auth = "free"

[[dispensers]]
id = "disp-d"
ocpp_identity = "RH-DEMO-D"

[[segments]]
id = 6
cabinet = "cab-d"
plc_slot = 0

[segments.gun]
id = 6
max_current_a = 500
max_voltage_v = 1000
dispenser = "disp-d"
connector = 1

[[segments.modules]]
id = 12
address = 0
max_power_kw = 50
max_current_a = 150
max_voltage_v = 1000

[[segments.modules]]
id = 13
address = 1
max_power_kw = 50
max_current_a = 150
max_voltage_v = 1000

[[segments]]
id = 7
cabinet = "cab-d"
plc_slot = 1

[segments.gun]
id = 7
max_current_a = 500
max_voltage_v = 1000
dispenser = "disp-d"
connector = 2

[[segments.modules]]
id = 14
address = 2
max_power_kw = 50
max_current_a = 150
max_voltage_v = 1000

[[segments.modules]]
id = 15
address = 3
max_power_kw = 50
max_current_a = 150
max_voltage_v = 1000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cabinet_added_to_the_config_joins_as_a_learner_then_a_voter() {
    bounded(async {
        let text = format!("{DEMO_TOML}{CAB_D}");
        let grown = HubConfig::parse(&text, "demo-4.toml").expect("the grown config parses");
        let sim = start_sim(grown, 17).await;
        let dir = TempDir::new("cluster-grow");
        let path = dir.path().join("demo-4.toml");
        std::fs::write(&path, &text).expect("write the grown config");
        let mut args = hub_args(&sim, &dir);
        let mut nodes: Vec<NodeProcess> = args
            .iter()
            .map(|args| NodeProcess::spawn(args, dir.path()))
            .collect();
        let endpoints: Vec<String> = nodes.iter().map(|n| n.zenoh.clone()).collect();
        eventually("a plan on the three-cabinet ring", STEP, async || {
            let status = status(&endpoints).await?;
            match status["plan_epoch"].as_u64() {
                Some(epoch) if epoch >= 1 => Ok(()),
                _ => Err(format!("{status}")),
            }
        })
        .await;

        // The operator adds cab-d at the end of the config and restarts the nodes on it,
        // while the cluster runs: a node stopped as leader, or with a report or a plan
        // change under way, still stops within its limit.
        for i in 0..3 {
            let took = nodes[i].terminate();
            println!(
                "{} stopped {} ms after SIGTERM",
                args[i].node,
                took.as_millis()
            );
            args[i].config = Some(path.clone());
            nodes[i] = NodeProcess::spawn(&args[i], dir.path());
            let all: Vec<&NodeProcess> = nodes.iter().collect();
            agreed_leader(&all, None, "a leader after a restart").await;
        }
        let cab_d = NodeArgs {
            node: "cab-d",
            auth: "free",
            config: Some(path.clone()),
            data_dir: dir.path().join("cab-d"),
            socketcand: sim.socketcand_addr(),
            zenoh_listen: Some(format!("tcp/127.0.0.1:{}", free_port())),
            zenoh_connect: endpoints.clone(),
        };
        nodes.push(NodeProcess::spawn(&cab_d, dir.path()));
        let mut all_four = endpoints.clone();
        all_four.push(nodes[3].zenoh.clone());
        let config = path.to_str().expect("utf-8 path").to_owned();
        eventually(
            "cab-d a voter and its segments in service",
            STEP * 2,
            async || {
                let out = ringhub(&["status", "--json", "--config", &config], &all_four).await?;
                let status: Value =
                    serde_json::from_str(&out).map_err(|e| format!("status JSON: {e}: {out}"))?;
                let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
                let voters = nodes.iter().filter(|n| n["voter"] == true).count();
                let d_answered = nodes
                    .iter()
                    .any(|n| n["node"] == "cab-d" && n["answered"] == true);
                let segments = status["segments"].as_array().cloned().unwrap_or_default();
                let in_service = segments.iter().filter(|s| s["in_service"] == true).count();
                // The plan places all eight segments (no EV asks: every island idle).
                let islands = status["islands"].as_array().map_or(0, Vec::len);
                if voters == 4
                    && d_answered
                    && segments.len() == 8
                    && in_service == 8
                    && islands == 8
                {
                    Ok(())
                } else {
                    Err(format!("{status}"))
                }
            },
        )
        .await;
        assert!(
            nodes[3].log_text().contains("a cluster runs: joining it"),
            "cab-d joined the running cluster, it did not start its own"
        );
        for node in &mut nodes {
            node.assert_running();
        }
        assert_no_violations(&sim.world()).await;
    })
    .await;
}
