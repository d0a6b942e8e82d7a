//! Zenoh publication of what the segment controllers show (DESIGN.md §4, §5; issue 5,
//! "Outputs"): the high-rate facts travel as Zenoh publications, protobuf `ringhub.v1`.
//!
//! ```text
//!   ringhub/<hub>/seg/<seg>/state        SegmentState     one per segment of the cabinet
//!   ringhub/<hub>/gun/<gun>/session      GunSession       one per fitted gun
//!   ringhub/<hub>/module/<module>/state  ModuleState      one per module
//!   ringhub/<hub>/fault/<id>             FaultUpdate      one per active local fault
//!   ringhub/<hub>/node/<node>/conditions FaultConditions  whether each fault still holds
//!   ringhub/<hub>/node/<node>/alive      liveliness token, while the session is up
//! ```
//!
//! Local faults have no hub-unique id until the cluster latches them, so their `<id>` is
//! [`convert::fault_key_id`], `<segment>-<code>-<subject>` (`1-contactor-welded-segment-1-gc`):
//! one chunk, so a subscriber on `fault/*` sees them next to the latched ones, and never a
//! bare number, so the two cannot collide. A fault is published `RAISED` when it appears,
//! `REFRESH` on every later call while active, and `CLEARED` once when it is gone.
//!
//! The caller decides the cadence: [`Publisher::publish`] sends everything it is given, and
//! the node calls it on every change and at least every 200 ms (DESIGN.md §4). Every
//! message opens with a [`v1::Header`] whose `seq` counts per key from 1, and whose
//! `boot_id` changes with each process ([`new_boot_id`]).
//!
//! The conversions are pure and live in [`convert`]; this file only adds the session,
//! sequence numbers and the wall clock.

pub mod convert;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use ringhub_proto::config::{GunId, HubId, ModuleId, SegmentId};
use ringhub_proto::v1;
use zenoh::Session;
use zenoh::liveliness::LivelinessToken;

use crate::connector::snapshot::SegmentSnapshot;

pub use convert::{Catalog, GunInfo, Origin};

pub use ringhub_cluster::transport::LINK_LEASE_MS;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A config value Zenoh refuses (a bad endpoint from the hub config or a flag).
    #[error("zenoh config {key} = {value}: {message}")]
    Config {
        key: &'static str,
        value: String,
        message: String,
    },
    /// A key expression Zenoh refuses, or a declaration that failed.
    #[error("zenoh: cannot declare {what} {key}: {message}")]
    Declare {
        what: &'static str,
        key: String,
        message: String,
    },
    /// A put that failed (the session is closed).
    #[error("zenoh: cannot put {key}: {message}")]
    Put { key: String, message: String },
}

/// A Zenoh config for a node ([`ringhub_cluster::transport::peer_config`]).
pub fn zenoh_config(listen: &[String], connect: &[String]) -> Result<zenoh::Config, PublishError> {
    ringhub_cluster::transport::peer_config(listen, connect).map_err(|e| PublishError::Config {
        key: e.key,
        value: e.value,
        message: e.message,
    })
}

/// A random 64-bit value for [`v1::Header::boot_id`], from the OS-seeded hasher keys
/// mixed with the clock and the process id.
pub fn new_boot_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Wall clock, ms since the Unix epoch (0 before 1970: a broken clock, not a crash).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The key expressions under `ringhub/<hub>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `ringhub/<hub>`.
    prefix: String,
}

impl Keys {
    pub fn new(hub: &HubId) -> Self {
        Self {
            prefix: format!("ringhub/{hub}"),
        }
    }

    pub fn segment(&self, segment: SegmentId) -> String {
        format!("{}/seg/{segment}/state", self.prefix)
    }

    pub fn gun(&self, gun: GunId) -> String {
        format!("{}/gun/{gun}/session", self.prefix)
    }

    pub fn module(&self, module: ModuleId) -> String {
        format!("{}/module/{module}/state", self.prefix)
    }

    /// `fault/<id>`; `id` is a latch id or a [`convert::fault_key_id`].
    pub fn fault(&self, id: &str) -> String {
        format!("{}/fault/{id}", self.prefix)
    }

    pub fn alive(&self, node: &str) -> String {
        format!("{}/node/{node}/alive", self.prefix)
    }

    pub fn conditions(&self, node: &str) -> String {
        format!("{}/node/{node}/conditions", self.prefix)
    }
}

/// Per-key sequence numbers and the rest of the header.
#[derive(Debug, Clone)]
pub struct Sequencer {
    /// Hub, node and boot id.
    origin: Origin,
    /// Last `seq` sent per key.
    last: HashMap<String, u64>,
}

impl Sequencer {
    pub fn new(origin: Origin) -> Self {
        Self {
            origin,
            last: HashMap::new(),
        }
    }

    /// The header of the next publication on `key`: `seq` 1 for the first one.
    pub fn next(&mut self, key: &str, sent_unix_ms: u64) -> v1::Header {
        let seq = self.last.entry(key.to_owned()).or_insert(0);
        *seq += 1;
        v1::Header {
            hub_id: self.origin.hub.to_string(),
            node_id: self.origin.node.to_string(),
            boot_id: self.origin.boot_id,
            seq: *seq,
            sent_unix_ms,
        }
    }
}

/// The node's publications on one Zenoh session, with its liveliness token.
pub struct Publisher {
    /// The session everything is declared on.
    session: Session,
    /// Who publishes.
    origin: Origin,
    /// Config facts for gun sessions.
    catalog: Catalog,
    /// Key expressions.
    keys: Keys,
    /// Sequence numbers per key.
    sequencer: Sequencer,
    /// Declared publishers by key; a fault's is dropped once its clear is sent.
    publishers: HashMap<String, zenoh::pubsub::Publisher<'static>>,
    /// Faults published as active, by key, to send `CLEARED` when they go.
    active_faults: BTreeMap<String, v1::Fault>,
    /// `ringhub/<hub>/node/<node>/alive`, held while the publisher lives.
    alive: LivelinessToken,
    /// The plan epoch the node has applied, stamped on gun sessions and segment states.
    plan_epoch: u64,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("origin", &self.origin)
            .field("publishers", &self.publishers.len())
            .field("active_faults", &self.active_faults.keys())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Declares the node's liveliness token on `session`; publishers are declared as keys
    /// first appear.
    pub async fn new(
        session: Session,
        origin: Origin,
        catalog: Catalog,
    ) -> Result<Self, PublishError> {
        let keys = Keys::new(&origin.hub);
        let alive_key = keys.alive(origin.node.as_str());
        let alive = session
            .liveliness()
            .declare_token(alive_key.clone())
            .await
            .map_err(|e| PublishError::Declare {
                what: "liveliness token",
                key: alive_key,
                message: e.to_string(),
            })?;
        Ok(Self {
            session,
            sequencer: Sequencer::new(origin.clone()),
            origin,
            catalog,
            keys,
            publishers: HashMap::new(),
            active_faults: BTreeMap::new(),
            alive,
            plan_epoch: 0,
        })
    }

    /// The session, e.g. to declare more on it.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Publishes every segment, gun, module and local fault of `snapshots`, and the clear
    /// of every fault published before that is no longer there.
    /// Stamps what follows with the plan epoch the node has applied.
    pub fn set_plan_epoch(&mut self, epoch: u64) {
        self.plan_epoch = epoch;
    }

    pub async fn publish(&mut self, snapshots: &[SegmentSnapshot]) -> Result<(), PublishError> {
        let now = unix_ms();
        let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
        let mut faults_now = BTreeMap::new();
        for snap in snapshots {
            let key = self.keys.segment(snap.segment);
            let header = self.sequencer.next(&key, now);
            let state = convert::segment_state(snap, &self.origin.node, self.plan_epoch, header);
            messages.push((key, state.encode_to_vec()));
            if let Some(gun) = &snap.gun {
                let key = self.keys.gun(gun.gun);
                let header = self.sequencer.next(&key, now);
                let session = convert::gun_session(
                    snap.segment,
                    gun,
                    &self.catalog,
                    self.plan_epoch,
                    header,
                    now,
                );
                messages.push((key, session.encode_to_vec()));
            }
            for module in &snap.modules {
                let key = self.keys.module(module.module);
                let header = self.sequencer.next(&key, now);
                let state = convert::module_state(snap, module, header);
                messages.push((key, state.encode_to_vec()));
            }
            for local in &snap.faults {
                let key = self.keys.fault(&convert::fault_key_id(snap.segment, local));
                faults_now.insert(key, convert::fault(snap.segment, local, &self.origin));
            }
        }
        let key = self.keys.conditions(self.origin.node.as_str());
        let conditions = v1::FaultConditions {
            header: Some(self.sequencer.next(&key, now)),
            conditions: snapshots
                .iter()
                .flat_map(|s| &s.conditions)
                .map(convert::fault_condition)
                .collect(),
        };
        messages.push((key, conditions.encode_to_vec()));
        let mut cleared = Vec::new();
        for (key, fault) in &faults_now {
            let transition = match self.active_faults.get(key) {
                Some(_) => v1::FaultTransition::Refresh,
                None => v1::FaultTransition::Raised,
            };
            let update = v1::FaultUpdate {
                header: Some(self.sequencer.next(key, now)),
                transition: transition as i32,
                fault: Some(fault.clone()),
            };
            messages.push((key.clone(), update.encode_to_vec()));
        }
        for (key, mut fault) in std::mem::take(&mut self.active_faults) {
            if faults_now.contains_key(&key) {
                continue;
            }
            fault.status = v1::FaultStatus::Cleared as i32;
            fault.cleared_unix_ms = Some(now);
            fault.cleared_by = "rule".to_owned();
            let update = v1::FaultUpdate {
                header: Some(self.sequencer.next(&key, now)),
                transition: v1::FaultTransition::Cleared as i32,
                fault: Some(fault),
            };
            messages.push((key.clone(), update.encode_to_vec()));
            cleared.push(key);
        }
        self.active_faults = faults_now;
        for (key, payload) in messages {
            self.put(&key, payload).await?;
        }
        for key in cleared {
            if let Some(publisher) = self.publishers.remove(&key) {
                // Undeclaring only frees resources; a failure changes nothing for subscribers.
                let _ = publisher.undeclare().await;
            }
        }
        Ok(())
    }

    /// Puts `payload` on `key`, declaring its publisher the first time.
    async fn put(&mut self, key: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        if !self.publishers.contains_key(key) {
            let publisher = self
                .session
                .declare_publisher(key.to_owned())
                .await
                .map_err(|e| PublishError::Declare {
                    what: "publisher",
                    key: key.to_owned(),
                    message: e.to_string(),
                })?;
            self.publishers.insert(key.to_owned(), publisher);
        }
        let Some(publisher) = self.publishers.get(key) else {
            unreachable!("declared just above")
        };
        publisher.put(payload).await.map_err(|e| PublishError::Put {
            key: key.to_owned(),
            message: e.to_string(),
        })
    }

    /// Undeclares everything (the liveliness token goes, so peers see the node leave at
    /// once rather than after the lease) and closes the session.
    pub async fn close(self) -> Result<(), PublishError> {
        let Self {
            session,
            publishers,
            alive,
            ..
        } = self;
        drop(publishers);
        let _ = alive.undeclare().await;
        session.close().await.map_err(|e| PublishError::Put {
            key: "(session close)".to_owned(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            hub: HubId::new("demo").expect("hub"),
            node: ringhub_proto::config::CabinetId::new("cab-a").expect("cabinet"),
            boot_id: 9,
            started_unix_ms: 0,
        }
    }

    #[test]
    fn keys_follow_the_design() {
        let keys = Keys::new(&HubId::new("demo").expect("hub"));
        assert_eq!(keys.segment(SegmentId(2)), "ringhub/demo/seg/2/state");
        assert_eq!(keys.gun(GunId(3)), "ringhub/demo/gun/3/session");
        assert_eq!(keys.module(ModuleId(11)), "ringhub/demo/module/11/state");
        assert_eq!(
            keys.fault("1-lock-failure-gun-1"),
            "ringhub/demo/fault/1-lock-failure-gun-1"
        );
        assert_eq!(keys.alive("cab-a"), "ringhub/demo/node/cab-a/alive");
    }

    #[test]
    fn sequence_numbers_count_per_key_from_one() {
        let mut seq = Sequencer::new(origin());
        let a1 = seq.next("a", 10);
        let a2 = seq.next("a", 11);
        let b1 = seq.next("b", 12);
        assert_eq!((a1.seq, a2.seq, b1.seq), (1, 2, 1));
        assert_eq!(a2.missed_since(&a1), Some(0));
        assert_eq!(a1.hub_id, "demo");
        assert_eq!(a1.node_id, "cab-a");
        assert_eq!(a1.boot_id, 9);
        assert_eq!(b1.sent_unix_ms, 12);
    }

    #[test]
    fn boot_ids_differ() {
        assert_ne!(new_boot_id(), new_boot_id());
    }

    #[test]
    fn zenoh_config_sets_peer_mode_endpoints_scouting_and_lease() {
        let config = zenoh_config(
            &["tcp/127.0.0.1:7447".to_owned()],
            &["tcp/127.0.0.1:7448".to_owned(), "tcp/[::1]:7449".to_owned()],
        )
        .expect("config");
        let get = |key: &str| config.get_json(key).expect(key);
        assert_eq!(get("mode"), r#""peer""#);
        assert_eq!(get("listen/endpoints"), r#"["tcp/127.0.0.1:7447"]"#);
        assert_eq!(
            get("connect/endpoints"),
            r#"["tcp/127.0.0.1:7448","tcp/[::1]:7449"]"#
        );
        assert_eq!(get("scouting/multicast/enabled"), "false");
        assert_eq!(get("scouting/gossip/enabled"), "false");
        assert_eq!(get("transport/link/tx/lease"), "1000");
    }

    #[test]
    fn zenoh_config_names_a_bad_endpoint() {
        let err = zenoh_config(&["not an endpoint".to_owned()], &[]).expect_err("bad endpoint");
        let message = err.to_string();
        assert!(message.contains("listen/endpoints"), "{message}");
        assert!(message.contains("not an endpoint"), "{message}");
    }
}
