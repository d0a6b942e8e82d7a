//! The hub record as openraft's state machine, kept in redb with what it has applied.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::blocking;
use crate::record::{HubRecord, Outcome, RecordState, Topology};
use crate::types::{NodeId, TypeConfig};

/// `raft_sm`: `applied` → [`Applied`], `snapshot` → [`StoredSnapshot`].
const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_sm");

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// The record and how far it has applied the log, stored as one value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Applied {
    /// The last entry applied.
    last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    membership: StoredMembership<NodeId, BasicNode>,
    /// The record.
    record: RecordState,
}

/// [`Applied`] borrowed, to encode without copying the record; the same JSON.
#[derive(Serialize)]
struct AppliedRef<'a> {
    last_applied: &'a Option<LogId<NodeId>>,
    membership: &'a StoredMembership<NodeId, BasicNode>,
    record: &'a RecordState,
}

/// The current snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    /// openraft's description of it.
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// The JSON of the [`RecordState`].
    data: Vec<u8>,
}

/// The record in memory, and what it has applied.
#[derive(Debug)]
struct Inner {
    record: HubRecord,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// The state machine store. The record is shared with readers ([`Self::reader`]).
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    /// The node's Raft database.
    db: Arc<Database>,
    /// The ring the record is about.
    topology: Topology,
    /// The record and its applied position.
    inner: Arc<RwLock<Inner>>,
    /// Snapshots built so far, for unique ids.
    built: u64,
}

/// A read-only handle on the record as applied on this node.
#[derive(Debug, Clone)]
pub struct RecordReader(Arc<RwLock<Inner>>);

impl RecordReader {
    /// Runs `f` on the record as applied now.
    pub fn read<T>(&self, f: impl FnOnce(&HubRecord) -> T) -> T {
        let inner = self.0.read().unwrap_or_else(|p| p.into_inner());
        f(&inner.record)
    }
}

impl StateMachineStore {
    /// The state machine stored in `db`, or a new record on `topology`. A value that does
    /// not decode is an error naming it.
    pub(super) fn load(
        db: Arc<Database>,
        topology: Topology,
    ) -> std::result::Result<Self, (String, String)> {
        let stored: Option<Applied> = read_value(&db, "applied")?;
        let inner = match stored {
            Some(applied) => Inner {
                record: HubRecord::restore(topology.clone(), applied.record),
                last_applied: applied.last_applied,
                membership: applied.membership,
            },
            None => Inner {
                record: HubRecord::new(topology.clone()),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        // The snapshot decodes too, so that garbage is found at start.
        let _: Option<StoredSnapshot> = read_value(&db, "snapshot")?;
        Ok(Self {
            db,
            topology,
            inner: Arc::new(RwLock::new(inner)),
            built: 0,
        })
    }

    /// A handle for reading the record.
    pub fn reader(&self) -> RecordReader {
        RecordReader(self.inner.clone())
    }

    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the record as it is now (and `snapshot`, if given) in one durable
    /// transaction.
    async fn store(&self, snapshot: Option<StoredSnapshot>) -> std::io::Result<()> {
        let applied = self.encode_applied()?;
        let snapshot = snapshot
            .map(|s| serde_json::to_vec(&s))
            .transpose()
            .map_err(std::io::Error::other)?;
        let db = self.db.clone();
        blocking(move || -> std::io::Result<()> {
            let txn = db.begin_write().map_err(std::io::Error::other)?;
            {
                let mut table = txn.open_table(SM).map_err(std::io::Error::other)?;
                table
                    .insert("applied", applied.as_slice())
                    .map_err(std::io::Error::other)?;
                if let Some(snapshot) = &snapshot {
                    table
                        .insert("snapshot", snapshot.as_slice())
                        .map_err(std::io::Error::other)?;
                }
            }
            txn.commit().map_err(std::io::Error::other)
        })
        .await?
    }

    /// The JSON of [`Applied`] as it is now, encoded under the lock instead of from a
    /// copy of the record: this runs for every applied batch.
    fn encode_applied(&self) -> std::io::Result<Vec<u8>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        serde_json::to_vec(&AppliedRef {
            last_applied: &inner.last_applied,
            membership: &inner.membership,
            record: inner.record.snapshot(),
        })
        .map_err(std::io::Error::other)
    }

    /// A copy of what is applied, for a snapshot built while applying goes on.
    fn applied(&self) -> Applied {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        Applied {
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
            record: inner.record.snapshot().clone(),
        }
    }
}

/// A decoded `raft_sm` value; `Err((what, why))` when it does not decode.
fn read_value<T: serde::de::DeserializeOwned>(
    db: &Database,
    key: &str,
) -> std::result::Result<Option<T>, (String, String)> {
    let what = || format!("raft_sm {key}");
    let txn = db.begin_read().map_err(|e| (what(), e.to_string()))?;
    let table = match txn.open_table(SM) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err((what(), e.to_string())),
    };
    let Some(value) = table.get(key).map_err(|e| (what(), e.to_string()))? else {
        return Ok(None);
    };
    serde_json::from_slice(value.value())
        .map(Some)
        .map_err(|e| (what(), e.to_string()))
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<Outcome>>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let outcomes = {
            let mut inner = self.lock();
            let mut outcomes = Vec::new();
            for entry in entries {
                inner.last_applied = Some(entry.log_id);
                outcomes.push(match entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Normal(request) => Some(inner.record.apply(&request)),
                    EntryPayload::Membership(membership) => {
                        inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                        None
                    }
                });
            }
            outcomes
        };
        self.store(None)
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.built += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            applied: self.applied(),
            serial: self.built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let state: RecordState = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        {
            let mut inner = self.lock();
            inner.record = HubRecord::restore(self.topology.clone(), state);
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
        }
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.store(Some(stored))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> =
            read_value(&self.db, "snapshot").map_err(|(what, why)| {
                StorageIOError::read_snapshot(
                    None,
                    &std::io::Error::other(format!("{what}: {why}")),
                )
            })?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Builds a snapshot of the record as it was when the builder was made.
#[derive(Debug)]
pub struct SnapshotBuilder {
    /// Where the snapshot is stored.
    db: Arc<Database>,
    /// The record and its position, taken together.
    applied: Applied,
    /// This builder's number, for a unique snapshot id.
    serial: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let data = serde_json::to_vec(&self.applied.record)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let last = self.applied.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.applied.membership.clone(),
            snapshot_id: format!("{}-{}", last.map_or(0, |l| l.index), self.serial),
        };
        // openraft sends it to lagging followers later: it must be stored, with the
        // record state it describes (which may be older than the live one).
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let db = self.db.clone();
        let value =
            serde_json::to_vec(&stored).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        blocking(move || -> std::io::Result<()> {
            let txn = db.begin_write().map_err(std::io::Error::other)?;
            txn.open_table(SM)
                .map_err(std::io::Error::other)?
                .insert("snapshot", value.as_slice())
                .map_err(std::io::Error::other)?;
            txn.commit().map_err(std::io::Error::other)
        })
        .await
        .and_then(|r| r)
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
