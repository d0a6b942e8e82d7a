//! Three `ringhub-node` processes, one per cabinet of the demo hub, on the simulator, each
//! with its own data dir and its Zenoh session on loopback (issue 7, "Tests"): they elect
//! a Raft leader among the config's cabinets; the leader is killed with SIGKILL, and the
//! two others elect a new one. Each node's view comes from its Prometheus metrics.
//!
//! ```text
//!   cab-a ◄──Zenoh──► cab-b ◄──Zenoh──► cab-c      (each also socketcand → Sim)
//! ```

mod common;

use common::{
    NodeArgs, NodeProcess, STEP, TempDir, bounded, eventually, free_port, scrape, start_sim,
};
use ringhub_proto::config::HubConfig;

const CABINETS: [&str; 3] = ["cab-a", "cab-b", "cab-c"];

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replace_it_after_a_sigkill() {
    bounded(async {
        let sim = start_sim(HubConfig::demo(), 7).await;
        let dir = TempDir::new("cluster");
        let endpoints: Vec<String> = CABINETS
            .iter()
            .map(|_| format!("tcp/127.0.0.1:{}", free_port()))
            .collect();
        let mut nodes: Vec<NodeProcess> = CABINETS
            .iter()
            .enumerate()
            .map(|(i, &cabinet)| {
                let args = NodeArgs {
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
                };
                NodeProcess::spawn(&args, dir.path())
            })
            .collect();

        let all: Vec<&NodeProcess> = nodes.iter().collect();
        let first = agreed_leader(&all, None, "a leader all three nodes follow").await;
        assert!((1..=3).contains(&first), "a cabinet of the config: {first}");
        let leader_metrics = scrape(nodes[(first - 1) as usize].metrics)
            .await
            .expect("scrape");
        assert_eq!(leader_metrics.get("ringhub_raft_is_leader", &[]), Some(1.0));

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
    })
    .await;
}
