//! The cluster as a node runs it (issue 7): the Raft member of its cabinet, on the node's
//! Zenoh session, with its storage in the node's data dir.
//!
//! - The voters are the hub config's cabinets, in config order: cabinet `i` is Raft node
//!   `i + 1`, and its name is what the membership carries, so that RPCs go to
//!   `ringhub/<hub>/raft/<cabinet>`.
//! - Every node initialises the cluster with that membership at every start: openraft
//!   takes it only on a node that has never voted or logged anything, so a restart never
//!   re-initialises, and identical memberships everywhere make the first start safe.
//! - The node declares its liveliness token `ringhub/<hub>/node/<cabinet>/alive` for as
//!   long as the cluster runs.
//! - Timing: heartbeat 100 ms, election timeout 400–800 ms, inside the 1 s Zenoh link
//!   lease, so that a lost leader is replaced in about a second.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, RaftMetrics};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::network::{WriteError, ZenohNetwork, serve};
use crate::record::{Outcome, Request, Topology};
use crate::storage::{self, OpenError, RecordReader};
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
}

/// The running member.
pub struct Cluster {
    /// This node's Raft id.
    id: NodeId,
    /// The Raft instance.
    raft: Raft<TypeConfig>,
    /// The record as applied here.
    record: RecordReader,
    /// The task answering RPCs.
    server: JoinHandle<()>,
    /// This node's liveliness, withdrawn on drop.
    _alive: zenoh::liveliness::LivelinessToken,
    /// The node's Zenoh session, for forwarded writes.
    session: zenoh::Session,
    /// The hub, for keys.
    hub: String,
}

/// How long a forwarded write waits for the leader's answer.
const WRITE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The Raft timing (see the module docs).
fn raft_config(cluster_name: &str) -> Result<Config, ClusterError> {
    Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
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
        let topology = config.topology.clone();
        let (log, sm) = tokio::task::spawn_blocking(move || storage::open(&path, topology))
            .await
            .map_err(|e| ClusterError::Raft(format!("storage task: {e}")))??;
        let record = sm.reader();
        let network = ZenohNetwork::new(session.clone(), config.hub.clone(), id);
        let raft = Raft::new(id, Arc::new(raft_config(&config.hub)?), network, log, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let server = tokio::spawn({
            let (session, hub, me, raft) = (
                session.clone(),
                config.hub.clone(),
                config.me.clone(),
                raft.clone(),
            );
            async move {
                if let Err(error) = serve(session, hub, me, id, raft).await {
                    tracing::error!(%error, "Raft RPC server stopped");
                }
            }
        });
        let alive = session
            .liveliness()
            .declare_token(format!("ringhub/{}/node/{}/alive", config.hub, config.me))
            .await
            .map_err(|e| ClusterError::Zenoh(e.to_string()))?;
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
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(id, "cluster initialised from the hub config"),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                tracing::info!(id, "cluster already initialised: joining it");
            }
            Err(error) => tracing::warn!(id, %error, "cluster initialisation refused"),
        }
        Ok(Self {
            id,
            raft,
            record,
            server,
            _alive: alive,
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

    /// The record as applied on this node.
    pub fn record(&self) -> &RecordReader {
        &self.record
    }

    /// Raft's metrics, as they change.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// Commits `request` to the record (forwarded to the leader when this node does not
    /// lead) and returns its outcome.
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

    /// Stops Raft and the RPC server.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "Raft did not stop cleanly");
        }
        self.server.abort();
    }
}
