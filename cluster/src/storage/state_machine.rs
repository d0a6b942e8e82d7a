//! The hub record as openraft's state machine. It lives in memory; only its snapshots are
//! stored. At start it is the current snapshot's (or a new record), and openraft
//! re-applies the committed log after it (`LogStore::read_committed`), so an apply costs
//! no disk write and does not grow with the record.

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
use crate::record::{HubRecord, Outcome, RecordState};
use crate::types::{NodeId, TypeConfig};

/// `raft_sm`: `snapshot` → [`StoredSnapshot`].
const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_sm");

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// The record and how far it has applied the log, taken together for a snapshot.
#[derive(Debug, Clone)]
struct Applied {
    /// The last entry applied.
    last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    membership: StoredMembership<NodeId, BasicNode>,
    /// The record.
    record: RecordState,
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
    /// The state machine stored in `db`, or an empty record. A value that does not
    /// decode is an error naming it.
    pub(super) fn load(db: Arc<Database>) -> std::result::Result<Self, (String, String)> {
        let stored: Option<StoredSnapshot> = read_value(&db, "snapshot")?;
        let inner = match stored {
            Some(snapshot) => {
                let state: RecordState = serde_json::from_slice(&snapshot.data)
                    .map_err(|e| ("raft_sm snapshot data".to_owned(), e.to_string()))?;
                Inner {
                    record: HubRecord::restore(state),
                    last_applied: snapshot.meta.last_log_id,
                    membership: snapshot.meta.last_membership,
                }
            }
            None => Inner {
                record: HubRecord::empty(),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        Ok(Self {
            db,
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

/// Stores `snapshot` durably as the current one: what the state machine starts from.
async fn store_snapshot(db: &Arc<Database>, snapshot: &StoredSnapshot) -> std::io::Result<()> {
    let value = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
    let db = db.clone();
    blocking(move || -> std::io::Result<()> {
        let txn = db.begin_write().map_err(std::io::Error::other)?;
        txn.open_table(SM)
            .map_err(std::io::Error::other)?
            .insert("snapshot", value.as_slice())
            .map_err(std::io::Error::other)?;
        txn.commit().map_err(std::io::Error::other)
    })
    .await?
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
            inner.record = HubRecord::restore(state);
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
        }
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        store_snapshot(&self.db, &stored)
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
        store_snapshot(&self.db, &stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
