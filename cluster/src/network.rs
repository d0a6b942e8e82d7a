//! Raft RPCs over Zenoh (issue 7, "Transport and membership"): every node answers queries
//! on `ringhub/<hub>/raft/<node>` ([`serve`]), `<node>` being its cabinet's name, which
//! the membership carries as each member's `BasicNode::addr`; a node calls another by
//! querying its key ([`ZenohNetwork`]), with openraft's own per-RPC time limit as the
//! query's timeout.
//!
//! ```text
//!  openraft ─RaftNetwork──► get(ringhub/<hub>/raft/<to>, RaftRequest) ──Zenoh──► queryable
//!           ◄──────────── RaftReply { ok | raft_error | refused } ◄──────────── raft.<rpc>()
//! ```
//!
//! - No reply at all (no live queryable under the key, or none within the timeout) is
//!   `Unreachable`: openraft backs off and tries again.
//! - A reply Raft refused carries openraft's `RaftError`, handed back as a
//!   `RemoteError` (the snapshot sender needs it to restart a chunked transfer).
//! - A reply that does not decode, or an envelope the peer refused, is a `NetworkError`.
//!   The serving side names what was wrong in its refusal, logs it and counts it
//!   ([`RAFT_REFUSED`]); nothing of it reaches Raft.
//!
//! Envelopes are protobuf (`ringhub.v1.RaftRequest` / `RaftReply`); the Raft messages
//! inside are openraft's types as JSON.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, Raft};
use prost::Message;
use ringhub_proto::v1::{RaftReply, RaftRequest, raft_reply, raft_request};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::record::{Outcome, Request};
use crate::types::{NodeId, TypeConfig};

/// The Zenoh key the node named `node` answers Raft RPCs on.
pub fn raft_key(hub: &str, node: &str) -> String {
    format!("ringhub/{hub}/raft/{node}")
}

/// The client side: makes a [`Connection`] per peer for openraft.
#[derive(Debug, Clone)]
pub struct ZenohNetwork {
    /// The node's Zenoh session.
    session: zenoh::Session,
    /// The hub, for keys.
    hub: String,
    /// This node's Raft id, stamped on every request.
    from: NodeId,
}

impl ZenohNetwork {
    /// The network of node `from` of hub `hub` over `session`.
    pub fn new(session: zenoh::Session, hub: impl Into<String>, from: NodeId) -> Self {
        Self {
            session,
            hub: hub.into(),
            from,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for ZenohNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            session: self.session.clone(),
            key: raft_key(&self.hub, &node.addr),
            from: self.from,
            target,
        }
    }
}

/// RPCs to one peer.
#[derive(Debug)]
pub struct Connection {
    /// The node's Zenoh session.
    session: zenoh::Session,
    /// The peer's key.
    key: String,
    /// This node's Raft id.
    from: NodeId,
    /// The peer's Raft id.
    target: NodeId,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// A network failure named `what`.
fn network<E: Error>(
    what: impl std::fmt::Display,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&AnyError::error(what.to_string())))
}

impl Connection {
    /// Sends `rpc` and waits up to `ttl` for its reply.
    async fn call<T, E>(&self, rpc: raft_request::Rpc, ttl: Duration) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let request = RaftRequest {
            from_node: self.from,
            to_node: self.target,
            rpc: Some(rpc),
        };
        let replies = self
            .session
            .get(&self.key)
            .payload(request.encode_to_vec())
            .timeout(ttl)
            .await
            .map_err(|e| network(format!("query {}: {e}", self.key)))?;
        let Ok(reply) = replies.recv_async().await else {
            let why = AnyError::error(format!("no reply on {} within {ttl:?}", self.key));
            return Err(RPCError::Unreachable(Unreachable::new(&why)));
        };
        let sample = reply
            .into_result()
            .map_err(|e| network(format!("{} replied with an error: {e:?}", self.key)))?;
        let bytes = sample.payload().to_bytes();
        let reply = RaftReply::decode(bytes.as_ref())
            .map_err(|e| network(format!("{}: undecodable reply: {e}", self.key)))?;
        match reply.result {
            Some(raft_reply::Result::Ok(json)) => serde_json::from_slice(&json)
                .map_err(|e| network(format!("{}: undecodable response: {e}", self.key))),
            Some(raft_reply::Result::RaftError(json)) => {
                let error: RaftError<NodeId, E> = serde_json::from_slice(&json)
                    .map_err(|e| network(format!("{}: undecodable error: {e}", self.key)))?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, error)))
            }
            Some(raft_reply::Result::Refused(why)) => {
                Err(network(format!("{} refused the request: {why}", self.key)))
            }
            None => Err(network(format!("{}: empty reply", self.key))),
        }
    }
}

/// Why a write to the record did not commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No leader is known (an election is on, or no majority is reachable).
    #[error("no Raft leader known")]
    NoLeader,
    /// The leader could not be reached or refused the write.
    #[error("write not committed: {0}")]
    Failed(String),
    /// Not committed within the write's time limit: a leader that cannot reach a
    /// majority, or a leadership change under way. It may still commit; sent again, it
    /// applies once.
    #[error("write not committed within {0:?}")]
    TimedOut(Duration),
}

/// How many times a write follows a leader change before it gives up.
const WRITE_HOPS: usize = 3;

/// Commits `request` to the record and returns its outcome: through `raft` when this
/// node leads, else forwarded to the leader over `session`. The whole write, local or
/// forwarded, takes at most `ttl`: a leader that cannot reach a majority would hold a
/// local `client_write` for as long as it lasts, so every caller (and a node shutting
/// down) gets [`WriteError::TimedOut`] instead. The record applies a request once however
/// often it is sent, so a write retried after a lost answer or a time-out is safe.
pub async fn write(
    raft: &Raft<TypeConfig>,
    session: &zenoh::Session,
    hub: &str,
    me: NodeId,
    request: Request,
    ttl: Duration,
) -> Result<Outcome, WriteError> {
    let deadline = tokio::time::Instant::now() + ttl;
    tokio::time::timeout_at(
        deadline,
        write_hops(raft, session, hub, me, request, deadline),
    )
    .await
    .unwrap_or(Err(WriteError::TimedOut(ttl)))
}

/// [`write`] without its time limit: the local write, then up to [`WRITE_HOPS`] leaders,
/// each forwarded query waiting no later than `deadline`.
async fn write_hops(
    raft: &Raft<TypeConfig>,
    session: &zenoh::Session,
    hub: &str,
    me: NodeId,
    request: Request,
    deadline: tokio::time::Instant,
) -> Result<Outcome, WriteError> {
    let mut leader: Option<(NodeId, String)> = None;
    for _ in 0..WRITE_HOPS {
        let forward = match leader.take() {
            None => match raft.client_write(request.clone()).await {
                Ok(response) => return outcome(response.data),
                Err(e) => e
                    .into_forward_to_leader::<BasicNode>()
                    .ok_or_else(|| WriteError::Failed("refused by this node".into()))?,
            },
            Some((id, node)) => {
                let connection = Connection {
                    session: session.clone(),
                    key: raft_key(hub, &node),
                    from: me,
                    target: id,
                };
                let json = serde_json::to_vec(&request).unwrap_or_default();
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let sent: RpcResult<
                    Option<Outcome>,
                    openraft::error::ClientWriteError<NodeId, BasicNode>,
                > = connection
                    .call(raft_request::Rpc::ClientWrite(json), left)
                    .await;
                match sent {
                    Ok(data) => return outcome(data),
                    Err(RPCError::RemoteError(remote)) => remote
                        .source
                        .into_forward_to_leader::<BasicNode>()
                        .ok_or_else(|| WriteError::Failed(format!("refused by node {id}")))?,
                    Err(e) => return Err(WriteError::Failed(e.to_string())),
                }
            }
        };
        match (forward.leader_id, forward.leader_node) {
            (Some(id), Some(node)) if id != me => leader = Some((id, node.addr)),
            _ => return Err(WriteError::NoLeader),
        }
    }
    Err(WriteError::Failed(format!(
        "the leader moved {WRITE_HOPS} times"
    )))
}

/// The outcome of a committed Normal entry.
fn outcome(data: Option<Outcome>) -> Result<Outcome, WriteError> {
    data.ok_or_else(|| WriteError::Failed("the entry answered nothing".into()))
}

/// The JSON of an openraft message; they always encode.
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(
            raft_request::Rpc::AppendEntries(json(&rpc)),
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(raft_request::Rpc::Vote(json(&rpc)), option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(
            raft_request::Rpc::InstallSnapshot(json(&rpc)),
            option.hard_ttl(),
        )
        .await
    }
}

/// Answers Raft RPCs for node `node` (Raft id `id`) of hub `hub` until the session
/// closes; every append or snapshot a current leader sends touches `contact`.
pub async fn serve(
    session: zenoh::Session,
    hub: String,
    node: String,
    id: NodeId,
    raft: Raft<TypeConfig>,
    contact: LeaderContact,
) -> Result<(), zenoh::Error> {
    let queryable = session.declare_queryable(raft_key(&hub, &node)).await?;
    while let Ok(query) = queryable.recv_async().await {
        let (raft, contact) = (raft.clone(), contact.clone());
        tokio::spawn(async move {
            let payload = query.payload().map(|p| p.to_bytes().into_owned());
            let (reply, from_leader) = answer(&raft, id, payload.as_deref()).await;
            if from_leader {
                contact.touch();
            }
            if let Err(error) = query
                .reply(query.key_expr().clone(), reply.encode_to_vec())
                .await
            {
                tracing::debug!(%error, "Raft reply not sent");
            }
        });
    }
    Ok(())
}

/// Counts Raft requests refused as unusable (garbage, another node's).
pub const RAFT_REFUSED: &str = "ringhub_raft_refused_requests_total";

/// The memberships that the nodes of `hub` answering within `wait` are in (Raft id →
/// cabinet name; empty for a node in none).
pub async fn probe_memberships(
    session: &zenoh::Session,
    hub: &str,
    wait: Duration,
) -> Vec<BTreeMap<NodeId, String>> {
    probe(
        session,
        hub,
        raft_request::Rpc::Membership(Vec::new()),
        wait,
    )
    .await
}

/// The last log index of each node of `hub` answering within `wait`.
pub async fn probe_log_lengths(
    session: &zenoh::Session,
    hub: &str,
    wait: Duration,
) -> Vec<Option<u64>> {
    probe(session, hub, raft_request::Rpc::LogLength(Vec::new()), wait).await
}

/// Asks every node of `hub` `rpc` (a probe, for no node in particular); the answers that
/// decode as `T`.
async fn probe<T: DeserializeOwned>(
    session: &zenoh::Session,
    hub: &str,
    rpc: raft_request::Rpc,
    wait: Duration,
) -> Vec<T> {
    let request = RaftRequest {
        from_node: 0,
        to_node: 0,
        rpc: Some(rpc),
    };
    let key = raft_key(hub, "*");
    let Ok(replies) = session
        .get(&key)
        .target(zenoh::query::QueryTarget::All)
        .payload(request.encode_to_vec())
        .timeout(wait)
        .await
    else {
        return Vec::new();
    };
    let mut answers = Vec::new();
    while let Ok(reply) = replies.recv_async().await {
        let Ok(sample) = reply.into_result() else {
            continue;
        };
        let bytes = sample.payload().to_bytes();
        if let Ok(RaftReply {
            result: Some(raft_reply::Result::Ok(json)),
        }) = RaftReply::decode(bytes.as_ref())
            && let Ok(answer) = serde_json::from_slice(&json)
        {
            answers.push(answer);
        }
    }
    answers
}

/// When this node last heard a current leader: the last append or snapshot it accepted.
#[derive(Debug, Clone)]
pub struct LeaderContact(Arc<Mutex<Instant>>);

impl LeaderContact {
    /// Contact as of `now` (a starting node gives the leader a full timeout to appear).
    pub fn new(now: Instant) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    /// A current leader was heard now.
    pub fn touch(&self) {
        self.touch_at(Instant::now());
    }

    /// A current leader was heard at `at` (or the node treats it so).
    pub fn touch_at(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// When a current leader was last heard.
    pub fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reply to one query, and whether it was a current leader's append or snapshot.
async fn answer(
    raft: &Raft<TypeConfig>,
    node: NodeId,
    payload: Option<&[u8]>,
) -> (RaftReply, bool) {
    let refused = |why: String| {
        tracing::warn!(node, %why, "Raft request refused");
        metrics::counter!(RAFT_REFUSED).increment(1);
        (
            RaftReply {
                result: Some(raft_reply::Result::Refused(why)),
            },
            false,
        )
    };
    let request = match RaftRequest::decode(payload.unwrap_or_default()) {
        Ok(request) => request,
        Err(e) => return refused(format!("undecodable request: {e}")),
    };
    if let Some(raft_request::Rpc::Membership(_)) = request.rpc {
        let members: BTreeMap<NodeId, String> = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        return (reply(Ok::<_, String>(members)), false);
    }
    if let Some(raft_request::Rpc::LogLength(_)) = request.rpc {
        let last = raft.metrics().borrow().last_log_index;
        return (reply(Ok::<_, String>(last)), false);
    }
    if request.to_node != node {
        return refused(format!(
            "request for node {} reached node {node}",
            request.to_node
        ));
    }
    match request.rpc {
        Some(raft_request::Rpc::AppendEntries(json)) => match serde_json::from_slice(&json) {
            Ok(rpc) => {
                let result = raft.append_entries(rpc).await;
                let current =
                    matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_)));
                (reply(result), current)
            }
            Err(e) => refused(format!("undecodable AppendEntries: {e}")),
        },
        Some(raft_request::Rpc::Vote(json)) => match serde_json::from_slice(&json) {
            Ok(rpc) => (reply(raft.vote(rpc).await), false),
            Err(e) => refused(format!("undecodable Vote: {e}")),
        },
        Some(raft_request::Rpc::InstallSnapshot(json)) => match serde_json::from_slice(&json) {
            Ok(rpc) => {
                let result = raft.install_snapshot(rpc).await;
                let current = result.is_ok();
                (reply(result), current)
            }
            Err(e) => refused(format!("undecodable InstallSnapshot: {e}")),
        },
        Some(raft_request::Rpc::ClientWrite(json)) => {
            match serde_json::from_slice::<Request>(&json) {
                Ok(request) => (
                    reply(raft.client_write(request).await.map(|r| r.data)),
                    false,
                ),
                Err(e) => refused(format!("undecodable client write: {e}")),
            }
        }
        // Answered above, before the addressee is checked.
        Some(raft_request::Rpc::Membership(_) | raft_request::Rpc::LogLength(_)) => {
            refused("probe".into())
        }
        None => refused("no RPC in the request".into()),
    }
}

/// The reply carrying `result`.
fn reply<T: Serialize, E: Serialize>(result: Result<T, E>) -> RaftReply {
    RaftReply {
        result: Some(match result {
            Ok(response) => raft_reply::Result::Ok(json(&response)),
            Err(error) => raft_reply::Result::RaftError(json(&error)),
        }),
    }
}
