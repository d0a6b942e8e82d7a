//! Three Raft nodes in one process, each with its own redb file and its own Zenoh session
//! (peer mode, explicit TCP endpoints on loopback, scouting off): they elect a leader,
//! replicate a latch to every record, and, when the leader stops and its session closes,
//! elect another one that goes on committing with the record intact. A leader left
//! without a majority gives a write up within its time limit instead of holding it (and
//! a node shutting down) for as long as the partition lasts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, ServerState};
use prost::Message;
use ringhub_cluster::network::{WriteError, ZenohNetwork, serve, write};
use ringhub_cluster::record::{
    ClearRule, ClientId, Command, LatchSpec, Outcome, Request, Severity,
};
use ringhub_cluster::storage::{self, StateMachineStore};
use ringhub_cluster::types::{NodeId, TypeConfig};

/// How long any one awaited condition may take.
const STEP: Duration = Duration::from_secs(20);

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ringhub-raft-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A node's Zenoh config listening on `listen` and connecting to `connect`.
fn zenoh_config(listen: &str, connect: &[String]) -> zenoh::Config {
    ringhub_cluster::transport::peer_config(&[listen.to_owned()], connect).expect("zenoh config")
}

/// The cabinet name of node `id`.
fn name(id: NodeId) -> String {
    format!("cab-{id}")
}

/// One running node.
struct Node {
    id: NodeId,
    raft: Raft<TypeConfig>,
    record: ringhub_cluster::storage::RecordReader,
    session: zenoh::Session,
}

/// The Raft timing of these tests.
fn raft_config() -> Config {
    Config {
        cluster_name: "ringhub-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        install_snapshot_timeout: 1000,
        ..Config::default()
    }
}

async fn start_with(id: NodeId, endpoints: &[String], dir: &TempDir, config: Config) -> Node {
    let index = usize::try_from(id - 1).expect("small");
    // One link per pair, opened by the later node, as a hub config's default mesh has it.
    let (earlier, rest) = endpoints.split_at(index);
    let session = zenoh::open(zenoh_config(&rest[0], earlier))
        .await
        .expect("zenoh session");
    let (log, sm): (_, StateMachineStore) =
        storage::open(&dir.0.join(format!("node-{id}.redb"))).expect("storage");
    let record = sm.reader();
    let config = Arc::new(config.validate().expect("a valid config"));
    let network = ZenohNetwork::new(session.clone(), "test", id);
    let raft = Raft::new(id, config, network, log, sm).await.expect("raft");
    tokio::spawn(serve(
        session.clone(),
        "test".into(),
        name(id),
        id,
        raft.clone(),
        ringhub_cluster::network::LeaderContact::new(std::time::Instant::now()),
    ));
    Node {
        id,
        raft,
        record,
        session,
    }
}

/// Initialises every node with the same three members: one wins, the others are told it
/// is done already (NotAllowed), which is fine.
/// Three members on fresh loopback ports, initialised, and the leader they elect; their
/// Zenoh endpoints, to start one again.
async fn three_members(
    dir: &TempDir,
    config: impl Fn() -> Config,
) -> (Vec<Node>, Vec<String>, NodeId) {
    let endpoints: Vec<String> = (0..3)
        .map(|_| format!("tcp/127.0.0.1:{}", free_port()))
        .collect();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start_with(id, &endpoints, dir, config()).await);
    }
    initialize(&nodes).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let first = leader(&all).await;
    (nodes, endpoints, first)
}

async fn initialize(nodes: &[Node]) {
    let members: BTreeMap<NodeId, BasicNode> =
        (1..=3).map(|id| (id, BasicNode::new(name(id)))).collect();
    for node in nodes {
        let _ = node.raft.initialize(members.clone()).await;
    }
}

/// Waits until `nodes` agree on a leader among them; returns its id.
async fn leader(nodes: &[&Node]) -> NodeId {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|n| n.raft.metrics().borrow().current_leader)
            .collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| *l == Some(*leader))
            && nodes.iter().any(|n| n.id == *leader)
        {
            return *leader;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn weld(serial: u64, subject: &str) -> Request {
    Request {
        client: ClientId("test/1".into()),
        serial,
        command: Command::RaiseLatch(LatchSpec {
            evidence: Vec::new(),
            code: "CONTACTOR_WELDED".into(),
            subject: subject.into(),
            severity: Severity::Critical,
            detail: "test".into(),
            raised_by: "cab-a".parse().expect("id"),
            raised_unix_ms: serial,
            clear_rule: ClearRule::Operator,
        }),
    }
}

/// Waits until every node of `nodes` has applied up to `index` and holds `latches`.
async fn replicated(nodes: &[&Node], index: u64, latches: usize) {
    for node in nodes {
        node.raft
            .wait(Some(STEP))
            .applied_index_at_least(Some(index), "the latch applied")
            .await
            .unwrap_or_else(|e| panic!("node {} did not apply {index}: {e}", node.id));
        assert_eq!(
            node.record.read(|r| r.latches().len()),
            latches,
            "node {}",
            node.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_and_survive_the_leader() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let dir = TempDir::new("elect");
        let (nodes, _endpoints, first) = three_members(&dir, raft_config).await;
        let leader_node = nodes.iter().find(|n| n.id == first).expect("leader");
        let written = leader_node
            .raft
            .client_write(weld(1, "segment 0 gc"))
            .await
            .expect("committed");
        assert!(
            matches!(written.data, Some(Outcome::Applied(_))),
            "{:?}",
            written.data
        );
        let all: Vec<&Node> = nodes.iter().collect();
        replicated(&all, written.log_id.index, 1).await;

        // Garbage, and a request for another node, are refused by name; Raft goes on.
        for (payload, expected) in [
            (b"\xff\xff garbage".to_vec(), "undecodable request"),
            (
                ringhub_proto::v1::RaftRequest {
                    from_node: 9,
                    to_node: 7,
                    rpc: None,
                }
                .encode_to_vec(),
                "request for node 7 reached node 1",
            ),
        ] {
            let replies = nodes[1]
                .session
                .get(ringhub_cluster::network::raft_key("test", &name(1)))
                .payload(payload)
                .timeout(STEP)
                .await
                .expect("query");
            let reply = replies.recv_async().await.expect("a reply");
            let sample = reply.into_result().expect("a sample");
            let bytes = sample.payload().to_bytes().into_owned();
            let reply = ringhub_proto::v1::RaftReply::decode(bytes.as_slice()).expect("decodes");
            match reply.result {
                Some(ringhub_proto::v1::raft_reply::Result::Refused(why)) => {
                    assert!(why.contains(expected), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }

        // The leader stops and its Zenoh session closes: the others elect another.
        let (gone, survivors): (Vec<Node>, Vec<Node>) =
            nodes.into_iter().partition(|n| n.id == first);
        for node in gone {
            node.raft.shutdown().await.expect("shutdown");
            node.session.close().await.expect("close");
        }
        let alive: Vec<&Node> = survivors.iter().collect();
        let second = leader(&alive).await;
        assert_ne!(second, first);
        let new_leader = survivors.iter().find(|n| n.id == second).expect("leader");
        assert_eq!(
            new_leader.raft.metrics().borrow().state,
            ServerState::Leader
        );
        // A write through the follower reaches the new leader and commits on both.
        let follower = survivors
            .iter()
            .find(|n| n.id != second)
            .expect("a follower");
        let outcome = write(
            &follower.raft,
            &follower.session,
            "test",
            follower.id,
            weld(2, "segment 1 gc"),
            STEP,
        )
        .await
        .expect("forwarded and committed");
        assert!(matches!(outcome, Outcome::Applied(_)), "{outcome:?}");
        let index = new_leader
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        replicated(&alive, index, 2).await;
        println!("leader {first} stopped; {second} took over; both latches on both survivors");
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_away_for_long_catches_up_from_a_snapshot() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let dir = TempDir::new("snapshot");
        // Snapshot every 10 entries and keep no log behind it: what the away member
        // missed is gone from every log by the time it returns.
        let config = || Config {
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..raft_config()
        };
        let (mut nodes, endpoints, first) = three_members(&dir, config).await;
        // A follower goes away.
        let away_id = if first == 3 { 2 } else { 3 };
        let index = nodes.iter().position(|n| n.id == away_id).expect("away");
        let away = nodes.remove(index);
        away.raft.shutdown().await.expect("shutdown");
        away.session.close().await.expect("close");
        drop(away);

        let leader_node = nodes.iter().find(|n| n.id == first).expect("leader");
        let mut last = 0;
        for serial in 1..=40 {
            let written = leader_node
                .raft
                .client_write(weld(serial, &format!("segment {} mc{serial}", serial % 6)))
                .await
                .expect("committed");
            last = written.log_id.index;
        }
        leader_node
            .raft
            .wait(Some(STEP))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index > 10),
                "the leader purged its log behind a snapshot",
            )
            .await
            .expect("purged");

        // It returns on its old storage and can only catch up from a snapshot.
        let back = start_with(away_id, &endpoints, &dir, config()).await;
        back.raft
            .wait(Some(STEP))
            .applied_index_at_least(Some(last), "caught up")
            .await
            .expect("the returning member catches up");
        assert!(
            back.raft.metrics().borrow().snapshot.is_some(),
            "it installed a snapshot"
        );
        let latches = |node: &Node| node.record.read(|r| r.latches().clone());
        assert_eq!(latches(&back), latches(leader_node));
        assert_eq!(latches(&back).len(), 40);
    })
    .await
    .expect("the test took longer than 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_a_majority_gives_a_write_up_within_its_ttl() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let dir = TempDir::new("no-quorum");
        let (nodes, _endpoints, first) = three_members(&dir, raft_config).await;

        // Both followers stop: the leader is alone, and still thinks it leads.
        let (leaders, followers): (Vec<Node>, Vec<Node>) =
            nodes.into_iter().partition(|n| n.id == first);
        for node in followers {
            node.raft.shutdown().await.expect("shutdown");
            node.session.close().await.expect("close");
        }
        let alone = &leaders[0];
        assert_eq!(alone.raft.metrics().borrow().state, ServerState::Leader);

        // Its own write cannot commit: it ends with TimedOut at its ttl, not never.
        let ttl = Duration::from_millis(800);
        let started = std::time::Instant::now();
        let written = write(
            &alone.raft,
            &alone.session,
            "test",
            alone.id,
            weld(1, "segment 0 gc"),
            ttl,
        )
        .await;
        let took = started.elapsed();
        assert!(
            matches!(written, Err(WriteError::TimedOut(t)) if t == ttl),
            "{written:?}"
        );
        assert!(took >= ttl, "gave up early, after {took:?}");
        assert!(took < ttl + Duration::from_secs(2), "took {took:?}");

        // The write left behind does not hold Raft up either.
        tokio::time::timeout(STEP, alone.raft.shutdown())
            .await
            .expect("Raft stops with a write pending")
            .expect("shutdown");
        println!("leader {first} alone: the write gave up after {took:?} (ttl {ttl:?})");
    })
    .await
    .expect("the test took longer than 120 s");
}
