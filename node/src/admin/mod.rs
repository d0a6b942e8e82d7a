//! The operator's view of the hub over Zenoh (issue 7, "Operator view"): every node
//! answers [`v1::AdminRequest`]s on the queryable `ringhub/<hub>/admin/<node>`, so that
//! `ringhub status` and `ringhub faults` work from any machine that reaches the bus, and
//! keep working while some nodes are down.
//!
//! - A node answers from the record as it has applied it and from its own Raft view;
//!   the CLI asks every node at once and shows each node's own answer next to the
//!   record of the most advanced one.
//! - A clear is committed through the Raft log before it is answered: an ok reply means
//!   the clear will not be lost.
//! - A request that does not decode is answered with an error that says why, and counted.

pub mod convert;

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use ringhub_cluster::conditions::Condition;
use ringhub_cluster::network::WriteError;
use ringhub_cluster::record::{
    ClearError, Clearer, ClientId, Command, LatchId, LatchStatus, Outcome, Rejection, Request,
};
use ringhub_cluster::service::{Cluster, alive_now};
use ringhub_proto::config::HubConfig;
use ringhub_proto::v1::{self, admin_reply, admin_request};
use tokio::sync::Mutex;

/// Counts admin requests that did not decode.
pub const ADMIN_REJECTED: &str = "ringhub_admin_rejected_requests_total";

/// How long a status waits for the other nodes' liveliness tokens.
const LIVELINESS_WAIT: Duration = Duration::from_millis(300);

/// The key a node answers on.
pub fn admin_key(hub: &str, node: &str) -> String {
    format!("ringhub/{hub}/admin/{node}")
}

/// What the server needs.
struct Server {
    cluster: Arc<Cluster>,
    session: zenoh::Session,
    config: HubConfig,
    node: String,
    /// Clears are written one at a time, so their serials reach the record in order.
    writer: Mutex<Writer>,
}

/// The admin client's name in the record and its last serial.
struct Writer {
    client: ClientId,
    serial: u64,
}

/// Answers admin requests until the session closes.
pub async fn serve(
    session: zenoh::Session,
    cluster: Arc<Cluster>,
    config: HubConfig,
    node: String,
    boot_id: u64,
) -> Result<(), zenoh::Error> {
    let hub = config.hub.id.to_string();
    let queryable = session.declare_queryable(admin_key(&hub, &node)).await?;
    let server = Arc::new(Server {
        cluster,
        session: session.clone(),
        config,
        writer: Mutex::new(Writer {
            client: ClientId(format!("admin@{node}/{boot_id:016x}")),
            serial: 0,
        }),
        node,
    });
    while let Ok(query) = queryable.recv_async().await {
        let server = server.clone();
        tokio::spawn(async move {
            let payload = query.payload().map(|p| p.to_bytes().into_owned());
            let reply = server.answer(payload.as_deref().unwrap_or_default()).await;
            if let Err(error) = query
                .reply(query.key_expr().clone(), reply.encode_to_vec())
                .await
            {
                tracing::debug!(%error, "admin reply not sent");
            }
        });
    }
    Ok(())
}

/// An error reply's outcome.
fn error(code: v1::AdminErrorCode, reason: impl Into<String>) -> admin_reply::Outcome {
    admin_reply::Outcome::Error(v1::AdminError {
        code: code as i32,
        reason: reason.into(),
    })
}

impl Server {
    async fn answer(&self, payload: &[u8]) -> v1::AdminReply {
        let request = match v1::AdminRequest::decode(payload) {
            Ok(request) => request,
            Err(e) => {
                metrics::counter!(ADMIN_REJECTED).increment(1);
                tracing::warn!(error = %e, "undecodable admin request");
                return self.reply(
                    String::new(),
                    error(
                        v1::AdminErrorCode::InvalidArgument,
                        format!("the request is not an AdminRequest: {e}"),
                    ),
                );
            }
        };
        let outcome = match &request.command {
            Some(admin_request::Command::GetStatus(_)) => self.status().await,
            Some(admin_request::Command::ListFaults(filter)) => self.faults(filter),
            Some(admin_request::Command::ClearFault(clear)) => {
                self.clear(&request.operator, clear).await
            }
            Some(_) => error(
                v1::AdminErrorCode::InvalidArgument,
                "this node does not serve that command yet",
            ),
            None => {
                metrics::counter!(ADMIN_REJECTED).increment(1);
                error(
                    v1::AdminErrorCode::InvalidArgument,
                    "the request has no command",
                )
            }
        };
        self.reply(request.request_id, outcome)
    }

    fn reply(&self, request_id: String, outcome: admin_reply::Outcome) -> v1::AdminReply {
        v1::AdminReply {
            request_id,
            node_id: self.node.clone(),
            outcome: Some(outcome),
        }
    }

    async fn status(&self) -> admin_reply::Outcome {
        let metrics = self.cluster.metrics().borrow().clone();
        let raft = convert::raft(&metrics);
        let alive = self.alive_nodes().await;
        let hub = self.config.hub.id.to_string();
        let reply = self.cluster.record().read(|record| {
            let leader_name = raft
                .members
                .iter()
                .find(|m| m.raft_id == raft.leader_raft_id && raft.leader_raft_id != 0)
                .map(|m| m.node_id.clone())
                .unwrap_or_default();
            let reached = &record.snapshot().reached;
            let nodes = self
                .config
                .cabinets
                .iter()
                .map(|cabinet| {
                    let name = cabinet.id.to_string();
                    v1::NodeStatus {
                        alive: alive.contains(&name),
                        leader: name == leader_name,
                        reached_epoch: reached.get(&cabinet.id).map_or(0, |e| e.0),
                        version: if name == self.node {
                            env!("CARGO_PKG_VERSION").to_owned()
                        } else {
                            String::new()
                        },
                        last_seen_unix_ms: 0,
                        cabinet_id: name.clone(),
                        node_id: name,
                    }
                })
                .collect();
            let node_epochs = reached
                .iter()
                .map(|(node, epoch)| v1::NodeEpoch {
                    node_id: node.to_string(),
                    reached_epoch: epoch.0,
                    reported_unix_ms: 0,
                })
                .collect();
            v1::GetStatusReply {
                hub_id: hub,
                leader_node_id: leader_name,
                nodes,
                plan: record.plan().map(|p| convert::plan(p, record.topology())),
                segments: Vec::new(),
                guns: Vec::new(),
                modules: Vec::new(),
                active_fault_count: u32::try_from(record.active_latches().count())
                    .unwrap_or(u32::MAX),
                raft: None,
                segment_records: convert::segment_records(record),
                node_epochs,
                demands: Vec::new(),
            }
        });
        let watts = |w: ringhub_cluster::record::Watts| u32::try_from(w.0).unwrap_or(u32::MAX);
        let demands = self
            .cluster
            .demand_book()
            .guns()
            .map(|(gun, demand, rating)| v1::PlannedDemand {
                gun_id: u32::from(gun.0),
                demand_w: watts(demand),
                rating_w: watts(rating),
            })
            .collect();
        admin_reply::Outcome::GetStatus(v1::GetStatusReply {
            raft: Some(raft),
            demands,
            ..reply
        })
    }

    /// The nodes whose liveliness token this node sees.
    async fn alive_nodes(&self) -> Vec<String> {
        let hub = self.config.hub.id.to_string();
        alive_now(&self.session, &hub, LIVELINESS_WAIT)
            .await
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn faults(&self, filter: &v1::ListFaultsRequest) -> admin_reply::Outcome {
        let limit = if filter.limit == 0 {
            100
        } else {
            filter.limit as usize
        };
        let (mut faults, matched) = self.cluster.record().read(|record| {
            let all: Vec<v1::Fault> = record
                .latches()
                .values()
                .rev()
                .filter(|l| filter.include_cleared || l.is_active())
                .map(|l| convert::fault(l, record.topology()))
                .filter(|f| matches(f, filter))
                .collect();
            let matched = all.len();
            (all, matched)
        });
        faults.truncate(limit);
        admin_reply::Outcome::ListFaults(v1::ListFaultsReply {
            faults,
            truncated: matched > limit,
        })
    }

    async fn clear(&self, operator: &str, clear: &v1::ClearFaultRequest) -> admin_reply::Outcome {
        if operator.trim().is_empty() || clear.reason.trim().is_empty() {
            return error(
                v1::AdminErrorCode::InvalidArgument,
                "a clear needs the operator's name and a reason",
            );
        }
        let id = LatchId(clear.fault_id);
        if let Some(why) = self.still_holds(id) {
            return error(v1::AdminErrorCode::Refused, why);
        }
        let mut writer = self.writer.lock().await;
        writer.serial += 1;
        let request = Request {
            client: writer.client.clone(),
            serial: writer.serial,
            command: Command::ClearLatch {
                id,
                by: Clearer::Operator {
                    name: operator.to_owned(),
                    reason: clear.reason.clone(),
                },
                at_unix_ms: crate::publish::unix_ms(),
            },
        };
        let by = match &request.command {
            Command::ClearLatch { by, at_unix_ms, .. } => LatchStatus::Cleared {
                by: by.clone(),
                at_unix_ms: *at_unix_ms,
            },
            _ => LatchStatus::Active,
        };
        let outcome = self.cluster.write(request).await;
        drop(writer);
        match outcome {
            Ok(Outcome::Applied(_)) => {
                // Committed; this node may not have applied it yet: show it as cleared.
                let fault = self.cluster.record().read(|record| {
                    record.latches().get(&id).map(|latch| {
                        let mut latch = latch.clone();
                        if latch.is_active() {
                            latch.status = by;
                        }
                        convert::fault(&latch, record.topology())
                    })
                });
                admin_reply::Outcome::ClearFault(v1::ClearFaultReply { fault })
            }
            Ok(Outcome::Rejected(Rejection::Clear(ClearError::Unknown(_)))) => {
                error(v1::AdminErrorCode::NotFound, format!("{id} does not exist"))
            }
            Ok(Outcome::Rejected(rejection)) => {
                error(v1::AdminErrorCode::Refused, rejection.to_string())
            }
            Err(WriteError::NoLeader) => error(
                v1::AdminErrorCode::NoQuorum,
                "no Raft leader is known: the clear cannot be committed now",
            ),
            Err(e) => error(
                v1::AdminErrorCode::Timeout,
                format!("{e}; it may still commit: list the faults to see"),
            ),
        }
    }
}

impl Server {
    /// Why latch `id` may not be cleared now: the node that raised it reports that what
    /// tripped it is still there. A node not heard from does not refuse it: its
    /// controller judges the clear again when it hears of it.
    fn still_holds(&self, id: LatchId) -> Option<String> {
        let (node, code, subject) = self.cluster.record().read(|record| {
            let spec = &record.latches().get(&id)?.spec;
            Some((
                spec.raised_by.clone(),
                spec.code.clone(),
                spec.subject.clone(),
            ))
        })?;
        match self.cluster.condition(&node, &code, &subject) {
            Condition::Holds(why) => Some(format!(
                "{id} ({code} on {subject}) still holds, as {node} reports it: {why}"
            )),
            Condition::Gone { .. } | Condition::Unknown => None,
        }
    }
}

/// Whether `fault` passes every filter that is set.
fn matches(fault: &v1::Fault, filter: &v1::ListFaultsRequest) -> bool {
    let scope_ok = filter.scope() == v1::FaultScope::Unspecified
        || (fault.scope() == filter.scope()
            && (filter.scope_id.is_empty() || fault.scope_id == filter.scope_id));
    let severity_ok = filter.min_severity() == v1::FaultSeverity::Unspecified
        || fault.severity >= filter.min_severity;
    let since_ok = filter
        .raised_since_unix_ms
        .is_none_or(|since| fault.raised_unix_ms >= since);
    scope_ok && severity_ok && since_ok && fault.code.starts_with(&filter.code_prefix)
}
