//! The cluster as a node runs it (issue 7): the Raft member of its cabinet, on the node's
//! Zenoh session, with its storage in the node's data dir.
//!
//! - The voters are the hub config's cabinets, in config order: cabinet `i` is Raft node
//!   `i + 1`, and its name is what the membership carries, so that RPCs go to
//!   `ringhub/<hub>/raft/<cabinet>`.
//! - A node starting for the first time first asks the hub's members for the cluster they
//!   are in: when one runs, the node waits to be added (a cabinet added to the config);
//!   else it initialises the cluster with the config's cabinets, as every other new node
//!   does, and identical memberships everywhere make the first start safe. openraft takes
//!   the initialisation only on a node that has never voted or logged anything, so a
//!   restart never re-initialises.
//! - Cabinets added at the end of the hub config: the leader puts the grown ring into the
//!   log (the steward) and adds each new cabinet as a learner, then, once it has caught
//!   up, as a voter. Raft ids follow the config's order, so a config whose order changed
//!   is refused at start.
//! - The node declares its liveliness token `ringhub/<hub>/node/<cabinet>/alive` for as
//!   long as the cluster runs.
//! - Timing: heartbeat 100 ms, election timeout 300–600 ms after the leader's 600 ms
//!   lease, so a lost leader is replaced in about 0.9–1.2 s; a shorter timeout than this
//!   trips elections on a loaded 2-core machine.
//! - Members campaign through [`crate::campaign`]: after the leader's lease plus a
//!   timeout drawn afresh each round, so that two survivors do not split the vote round
//!   after round; a restarted or resumed member hears the leader before it may campaign.
//! - It watches every node's liveliness token ([`Cluster::alive`]), and while it leads it
//!   runs the [`Steward`]: lost cabinets out of service, the plan in force, returning
//!   cabinets back in; and the [`Clearing`]: latches cleared by their rule once every
//!   node's published conditions show them gone for their hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, RaftMetrics, ServerState};
use ringhub_proto::config::CabinetId;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zenoh::sample::SampleKind;

use crate::campaign::{Campaign, campaign_loop};
use crate::clearing::Clearing;
use crate::conditions::{Condition, ConditionBook};
use crate::demand::{DemandBook, Ratings};
use crate::network::{LeaderContact, WriteError, ZenohNetwork, probe_memberships, serve};
use crate::record::{ClientId, Command, Outcome, Request, Topology};
use crate::steward::Steward;
use crate::storage::{self, OpenError, RecordReader};
use crate::telemetry::Telemetry;
use crate::types::{NodeId, TypeConfig};

/// What a node needs to run its cluster member.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The hub, for Zenoh keys.
    pub hub: String,
    /// The cabinets, in hub config order: the voters.
    pub cabinets: Vec<String>,
    /// This node's cabinet.
    pub me: String,
    /// Where the Raft storage lives (`raft.redb` in it).
    pub data_dir: PathBuf,
    /// The ring, from the hub config.
    pub topology: Topology,
    /// How long after a cabinet is lost its neighbourhood stays untouched: the lease
    /// plus the PLC watchdog (S7).
    pub hold: Duration,
    /// The guns' and modules' ratings, from the hub config, for the planner.
    pub ratings: Ratings,
}

/// Why the cluster member did not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// This node's cabinet is not in the hub config.
    #[error("cabinet {0:?} is not one of the hub's cabinets")]
    NotAMember(String),
    /// The Raft storage did not open.
    #[error(transparent)]
    Storage(#[from] OpenError),
    /// openraft refused the configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
    /// Zenoh refused a declaration.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// The running cluster knows this node's Raft id under another cabinet: the hub
    /// config's cabinet order changed.
    #[error(
        "the running cluster has Raft node {id} as {found:?}, but this config makes {me:?} node {id}: keep the cabinets' order in the hub config and add new ones at the end"
    )]
    IdTaken {
        /// The Raft id.
        id: NodeId,
        /// The cabinet the cluster has under it.
        found: String,
        /// This node's cabinet.
        me: String,
    },
}

/// The running member.
pub struct Cluster {
    /// This node's Raft id.
    id: NodeId,
    /// The Raft instance.
    raft: Raft<TypeConfig>,
    /// The record as applied here.
    record: RecordReader,
    /// The tasks answering RPCs, watching liveliness, and stewarding.
    tasks: Vec<JoinHandle<()>>,
    /// The cabinets whose liveliness token is seen.
    alive: watch::Receiver<BTreeSet<CabinetId>>,
    /// What the guns ask and the modules give, from telemetry.
    book: watch::Receiver<DemandBook>,
    /// Every node's fault conditions, from telemetry.
    conditions: watch::Receiver<ConditionBook>,
    /// This node's liveliness, withdrawn on drop.
    _alive: zenoh::liveliness::LivelinessToken,
    /// The node's Zenoh session, for forwarded writes.
    session: zenoh::Session,
    /// The hub, for keys.
    hub: String,
}

/// How long a write may take, on this node as leader or forwarded to the leader, before
/// [`Cluster::write`] gives up with [`WriteError::TimedOut`].
pub const WRITE_TTL: Duration = Duration::from_secs(5);
/// How long [`Cluster::shutdown`] waits for Raft to stop before it leaves it behind.
const RAFT_SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Leader heartbeat period, ms.
pub const HEARTBEAT_MS: u64 = 100;
/// Election timeouts are drawn from this range, ms.
pub const ELECTION_TIMEOUT_MS: std::ops::Range<u64> = 300..600;

/// The Raft timing (see the module docs).
fn raft_config(cluster_name: &str) -> Result<Config, ClusterError> {
    Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS.start,
        election_timeout_max: ELECTION_TIMEOUT_MS.end,
        install_snapshot_timeout: 2_000,
        ..Config::default()
    }
    .validate()
    .map_err(|e| ClusterError::Raft(e.to_string()))
}

impl Cluster {
    /// Starts this node's member on `session` (see the module docs).
    pub async fn start(
        session: &zenoh::Session,
        config: ClusterConfig,
    ) -> Result<Self, ClusterError> {
        let index = config
            .cabinets
            .iter()
            .position(|c| *c == config.me)
            .ok_or_else(|| ClusterError::NotAMember(config.me.clone()))?;
        let id = NodeId::try_from(index).map_or(NodeId::MAX, |i| i + 1);
        let path = config.data_dir.join("raft.redb");
        let (log, sm) = tokio::task::spawn_blocking(move || storage::open(&path))
            .await
            .map_err(|e| ClusterError::Raft(format!("storage task: {e}")))??;
        let record = sm.reader();
        let mut log = log;
        let voted = openraft::storage::RaftLogStorage::read_vote(&mut log)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?
            .is_some();
        let network = ZenohNetwork::new(session.clone(), config.hub.clone(), id);
        let raft_config = Config {
            // Members campaign through `campaign` (a fresh timeout each round).
            enable_elect: false,
            ..raft_config(&config.hub)?
        };
        let raft = Raft::new(id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let contact = LeaderContact::new(Instant::now());
        let campaigner = tokio::spawn(campaign_loop(Campaign {
            raft: raft.clone(),
            contact: contact.clone(),
            session: session.clone(),
            hub: config.hub.clone(),
            lease: Duration::from_millis(ELECTION_TIMEOUT_MS.end),
            timeouts: ELECTION_TIMEOUT_MS,
        }));
        let server = tokio::spawn({
            let (session, hub, me, raft) = (
                session.clone(),
                config.hub.clone(),
                config.me.clone(),
                raft.clone(),
            );
            async move {
                if let Err(error) = serve(session, hub, me, id, raft, contact).await {
                    tracing::error!(%error, "Raft RPC server stopped");
                }
            }
        });
        let token = session
            .liveliness()
            .declare_token(format!("ringhub/{}/node/{}/alive", config.hub, config.me))
            .await
            .map_err(|e| ClusterError::Zenoh(e.to_string()))?;
        let (alive_tx, alive) = watch::channel(BTreeSet::new());
        let subscriber = session
            .liveliness()
            .declare_subscriber(format!("ringhub/{}/node/*/alive", config.hub))
            .history(true)
            .await
            .map_err(|e| ClusterError::Zenoh(e.to_string()))?;
        let watcher = tokio::spawn(watch_alive(
            session.clone(),
            subscriber,
            config.hub.clone(),
            alive_tx,
        ));
        let (book_tx, book) = watch::channel(DemandBook::new(config.ratings.clone()));
        let (conditions_tx, conditions) = watch::channel(ConditionBook::new());
        let telemetry = Telemetry::subscribe(session, &config.hub)
            .await
            .map_err(|e| ClusterError::Zenoh(e.to_string()))?;
        let telemetry = tokio::spawn(telemetry.run(book_tx, conditions_tx));
        let steward = tokio::spawn(steward_loop(
            raft.clone(),
            record.clone(),
            Inputs {
                alive: alive.clone(),
                book: book.clone(),
                conditions: conditions.clone(),
            },
            config.clone(),
        ));
        let members: BTreeMap<NodeId, BasicNode> = config
            .cabinets
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (
                    NodeId::try_from(i).map_or(NodeId::MAX, |i| i + 1),
                    BasicNode::new(name),
                )
            })
            .collect();
        join_or_initialize(&raft, session, &config, id, members, !voted).await?;
        Ok(Self {
            id,
            raft,
            record,
            tasks: vec![server, watcher, telemetry, steward, campaigner],
            alive,
            book,
            conditions,
            _alive: token,
            session: session.clone(),
            hub: config.hub,
        })
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft instance (writes, reads, membership).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// What the guns ask and the modules give, as this node's planner would see them.
    pub fn demand_book(&self) -> DemandBook {
        self.book.borrow().clone()
    }

    /// The condition of `code` on `subject` as `node` reports it now.
    pub fn condition(&self, node: &CabinetId, code: &str, subject: &str) -> Condition {
        self.conditions
            .borrow()
            .condition(node, code, subject, Instant::now())
    }

    /// The record as applied on this node.
    pub fn record(&self) -> &RecordReader {
        &self.record
    }

    /// The cabinets whose liveliness token this node sees, itself included, as they change.
    pub fn alive(&self) -> watch::Receiver<BTreeSet<CabinetId>> {
        self.alive.clone()
    }

    /// Raft's metrics, as they change.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// Commits `request` to the record (forwarded to the leader when this node does not
    /// lead) and returns its outcome, or an error within [`WRITE_TTL`].
    pub async fn write(&self, request: Request) -> Result<Outcome, WriteError> {
        crate::network::write(
            &self.raft,
            &self.session,
            &self.hub,
            self.id,
            request,
            WRITE_TTL,
        )
        .await
    }

    /// Stops the tasks and Raft, waiting at most [`RAFT_SHUTDOWN_LIMIT`] for Raft: a core
    /// stuck in a storage call must not keep the node from exiting. Leaving it behind is
    /// no worse than a crash, which Raft is built to survive.
    pub async fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        match tokio::time::timeout(RAFT_SHUTDOWN_LIMIT, self.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "Raft did not stop cleanly"),
            Err(_) => tracing::warn!(
                limit = ?RAFT_SHUTDOWN_LIMIT,
                "Raft did not stop within its limit: left behind"
            ),
        }
    }
}

/// Plan epochs this node's steward committed while leading.
pub const PLANS_COMMITTED: &str = "ringhub_plan_epochs_committed_total";

/// How often the liveliness view is rebuilt from a query, beside the subscriber's events.
const ALIVE_RESYNC: Duration = Duration::from_secs(1);

/// Keeps `alive` up to date: from the subscriber's put and delete events, and every
/// [`ALIVE_RESYNC`] from a liveliness query, which is the authority. The query matters
/// after a peer resumes from a pause: Zenoh may drop its re-declared token on the way
/// ("unknown wire expr") while the query still finds it.
async fn watch_alive(
    session: zenoh::Session,
    subscriber: zenoh::pubsub::Subscriber<
        zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>,
    >,
    hub: String,
    alive: watch::Sender<BTreeSet<CabinetId>>,
) {
    let prefix = alive_prefix(&hub);
    let name_of = |key: &str| cabinet_of_token(&prefix, key);
    let mut resync = tokio::time::interval(ALIVE_RESYNC);
    loop {
        tokio::select! {
            sample = subscriber.recv_async() => {
                let Ok(sample) = sample else { return };
                let Some(name) = name_of(sample.key_expr().as_str()) else { continue };
                alive.send_modify(|alive| {
                    match sample.kind() {
                        SampleKind::Put => alive.insert(name),
                        SampleKind::Delete => alive.remove(&name),
                    };
                });
            }
            _ = resync.tick() => {
                let Some(seen) = alive_now(&session, &hub, ALIVE_RESYNC / 2).await else {
                    continue;
                };
                alive.send_if_modified(|alive| {
                    let changed = *alive != seen;
                    if changed {
                        tracing::debug!(?seen, was = ?alive, "liveliness view resynced");
                        *alive = seen;
                    }
                    changed
                });
            }
        }
    }
}

/// The key prefix of the liveliness tokens of `hub`'s nodes.
fn alive_prefix(hub: &str) -> String {
    format!("ringhub/{hub}/node/")
}

/// The cabinet whose token `key` is, under `prefix`.
fn cabinet_of_token(prefix: &str, key: &str) -> Option<CabinetId> {
    key.strip_prefix(prefix)
        .and_then(|k| k.strip_suffix("/alive"))
        .and_then(|n| CabinetId::new(n).ok())
}

/// The cabinets of `hub` whose liveliness token `session` finds now, waiting at most
/// `wait`; `None` when the query could not be made.
pub async fn alive_now(
    session: &zenoh::Session,
    hub: &str,
    wait: Duration,
) -> Option<BTreeSet<CabinetId>> {
    let prefix = alive_prefix(hub);
    let replies = session
        .liveliness()
        .get(format!("{prefix}*/alive"))
        .timeout(wait)
        .await
        .ok()?;
    let mut alive = BTreeSet::new();
    while let Ok(reply) = replies.recv_async().await {
        if let Some(name) = reply
            .result()
            .ok()
            .and_then(|s| cabinet_of_token(&prefix, s.key_expr().as_str()))
        {
            alive.insert(name);
        }
    }
    Some(alive)
}

/// How long a node starting for the first time looks for a running cluster.
const JOIN_PROBE: Duration = Duration::from_millis(1_500);

/// Initialises the cluster with the config's cabinets, unless this node has a log already
/// (openraft would refuse: it is a restart) or a running cluster answers the membership
/// probe (a cabinet added to the hub: its leader adds this node, see [`grow_membership`]).
async fn join_or_initialize(
    raft: &Raft<TypeConfig>,
    session: &zenoh::Session,
    config: &ClusterConfig,
    id: NodeId,
    members: BTreeMap<NodeId, BasicNode>,
    fresh: bool,
) -> Result<(), ClusterError> {
    if fresh {
        let running = probe_memberships(session, &config.hub, JOIN_PROBE)
            .await
            .into_iter()
            .find(|m| !m.is_empty());
        if let Some(running) = running {
            if let Some(found) = running.get(&id).filter(|name| **name != config.me) {
                return Err(ClusterError::IdTaken {
                    id,
                    found: found.clone(),
                    me: config.me.clone(),
                });
            }
            tracing::info!(id, members = ?running, "a cluster runs: joining it, its leader adds this node");
            return Ok(());
        }
    }
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(id, "cluster initialised from the hub config"),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            tracing::info!(id, "cluster already initialised: joining it");
        }
        Err(error) => tracing::warn!(id, %error, "cluster initialisation refused"),
    }
    Ok(())
}

/// How far behind the leader's log a learner may be to become a voter.
const CAUGHT_UP: u64 = 10;
/// The wait after a membership change failed (one in progress, no quorum).
const MEMBERSHIP_RETRY: Duration = Duration::from_millis(200);

/// Makes the cabinets of the ring in force that are not voters yet members: a learner
/// first, then, once it has caught up with the log, a voter. One step per call; true
/// when it took one.
async fn grow_membership(
    raft: &Raft<TypeConfig>,
    record: &RecordReader,
    config: &ClusterConfig,
) -> bool {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
    let cabinets: BTreeSet<String> = record.read(|r| {
        r.topology()
            .segments
            .iter()
            .map(|s| s.cabinet.to_string())
            .collect()
    });
    for (index, name) in config.cabinets.iter().enumerate() {
        let id = NodeId::try_from(index).map_or(NodeId::MAX, |i| i + 1);
        if !cabinets.contains(name) || voters.contains(&id) {
            continue;
        }
        if !learners.contains(&id) {
            tracing::info!(id, cabinet = %name, "a cabinet joins the ring: adding it as a learner");
            if let Err(error) = raft.add_learner(id, BasicNode::new(name), false).await {
                tracing::warn!(%error, "learner not added");
                tokio::time::sleep(MEMBERSHIP_RETRY).await;
            }
            return true;
        }
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).copied().flatten())
            .map_or(0, |l| l.index);
        let last = metrics.last_log_index.unwrap_or(0);
        if matched + CAUGHT_UP >= last && matched > 0 {
            tracing::info!(id, cabinet = %name, "the learner caught up: making it a voter");
            let change = openraft::ChangeMembers::AddVoterIds(BTreeSet::from([id]));
            if let Err(error) = raft.change_membership(change, false).await {
                tracing::warn!(%error, "voter not added");
                tokio::time::sleep(MEMBERSHIP_RETRY).await;
            }
            return true;
        }
    }
    false
}

/// How long a new leader waits for the liveliness tokens before it marks anyone lost.
const STEWARD_GRACE: Duration = Duration::from_secs(2);
/// Longest sleep of the steward when nothing changes.
const STEWARD_IDLE: Duration = Duration::from_millis(500);

/// What the steward judges from, besides the record.
struct Inputs {
    alive: watch::Receiver<BTreeSet<CabinetId>>,
    book: watch::Receiver<DemandBook>,
    conditions: watch::Receiver<ConditionBook>,
}

/// Runs a [`Steward`] and the [`Clearing`] of the clear rules for as long as this node
/// leads, new ones each time it becomes leader; their commands go through this node's
/// Raft.
async fn steward_loop(
    raft: Raft<TypeConfig>,
    record: RecordReader,
    inputs: Inputs,
    config: ClusterConfig,
) {
    let Inputs {
        mut alive,
        mut book,
        conditions,
    } = inputs;
    let Ok(me) = CabinetId::new(&config.me) else {
        tracing::error!(me = %config.me, "not a cabinet name: this node cannot steward");
        return;
    };
    let me = &me;
    let mut metrics = raft.metrics();
    loop {
        let term = loop {
            let m = metrics.borrow_and_update().clone();
            if m.state == ServerState::Leader {
                break m.current_term;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        };
        let mut steward = Steward::new(
            Instant::now(),
            config.topology.clone(),
            config.hold,
            STEWARD_GRACE,
            me.clone(),
        );
        let mut clearing = Clearing::new();
        let client = ClientId(format!("steward@{me}/term-{term}/{}", unix_ms()));
        let mut serial = 0;
        tracing::info!(term, "leading: the steward runs");
        loop {
            let m = metrics.borrow_and_update().clone();
            if m.state != ServerState::Leader || m.current_term != term {
                tracing::info!(term, "no longer leading: the steward stops");
                break;
            }
            let now = Instant::now();
            let command = {
                let alive = alive.borrow_and_update().clone();
                let book = book.borrow_and_update().clone();
                let conditions = conditions.borrow().clone();
                record.read(|r| {
                    steward
                        .poll(now, r, &alive, &book, unix_ms())
                        .or_else(|| clearing.poll(now, r, &conditions, me, unix_ms()))
                })
            };
            if command.is_none() && grow_membership(&raft, &record, &config).await {
                continue;
            }
            if let Some(command) = command {
                serial += 1;
                let request = Request {
                    client: client.clone(),
                    serial,
                    command: command.clone(),
                };
                match raft.client_write(request).await {
                    Ok(response) => {
                        if matches!(command, Command::CommitPlan(_)) {
                            metrics::counter!(PLANS_COMMITTED).increment(1);
                        }
                        tracing::info!(?command, outcome = ?response.data, "steward committed")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "steward write failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                continue;
            }
            let wake = steward
                .poll_timeout(now)
                .unwrap_or(now + STEWARD_IDLE)
                .min(now + STEWARD_IDLE);
            tokio::select! {
                _ = alive.changed() => {}
                _ = book.changed() => {}
                changed = metrics.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}

/// The wall clock, Unix ms, for the times the record keeps.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
