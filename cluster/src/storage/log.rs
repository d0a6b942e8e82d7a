//! The Raft log, vote and purge point in redb.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::blocking;
use crate::types::{NodeId, TypeConfig};

/// `raft_log`: index → JSON of the entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// `raft_meta`: `vote`, `last_purged` → JSON.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// The log store; clones share the database (openraft reads with several at once).
#[derive(Debug, Clone)]
pub struct LogStore {
    /// The node's Raft database.
    db: Arc<Database>,
}

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

impl LogStore {
    pub(super) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    /// A `raft_meta` value.
    async fn meta<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> std::io::Result<Option<T>> {
        let db = self.db.clone();
        blocking(move || -> std::io::Result<Option<T>> {
            let txn = db.begin_read().map_err(std::io::Error::other)?;
            let table = match txn.open_table(META) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(std::io::Error::other(e)),
            };
            let Some(value) = table.get(key).map_err(std::io::Error::other)? else {
                return Ok(None);
            };
            serde_json::from_slice(value.value())
                .map(Some)
                .map_err(|e| std::io::Error::other(format!("raft_meta {key}: {e}")))
        })
        .await?
    }

    /// Runs `f` in one durable write transaction.
    async fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> std::result::Result<(), redb::Error> + Send + 'static,
    ) -> std::io::Result<()> {
        let db = self.db.clone();
        blocking(move || -> std::io::Result<()> {
            let txn = db.begin_write().map_err(std::io::Error::other)?;
            f(&txn).map_err(std::io::Error::other)?;
            txn.commit().map_err(std::io::Error::other)
        })
        .await?
    }
}

/// The JSON of `value`; openraft's types always encode.
fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(std::io::Error::other)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        let read = blocking(move || -> std::io::Result<Vec<Entry<TypeConfig>>> {
            let txn = db.begin_read().map_err(std::io::Error::other)?;
            let table = match txn.open_table(LOG) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(std::io::Error::other(e)),
            };
            let mut entries = Vec::new();
            for item in table.range(bounds).map_err(std::io::Error::other)? {
                let (key, value) = item.map_err(std::io::Error::other)?;
                let entry = serde_json::from_slice(value.value())
                    .map_err(|e| std::io::Error::other(format!("raft_log {}: {e}", key.value())))?;
                entries.push(entry);
            }
            Ok(entries)
        })
        .await;
        read.and_then(|r| r)
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self
            .meta("last_purged")
            .await
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let db = self.db.clone();
        let last = blocking(move || -> std::io::Result<Option<LogId<NodeId>>> {
            let txn = db.begin_read().map_err(std::io::Error::other)?;
            let table = match txn.open_table(LOG) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(std::io::Error::other(e)),
            };
            let Some((_, value)) = table.last().map_err(std::io::Error::other)? else {
                return Ok(None);
            };
            let entry: Entry<TypeConfig> =
                serde_json::from_slice(value.value()).map_err(std::io::Error::other)?;
            Ok(Some(entry.log_id))
        })
        .await
        .and_then(|r| r)
        .map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let value = encode(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.write(move |txn| {
            txn.open_table(META)?.insert("vote", value.as_slice())?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.meta("vote")
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// Not fsynced: the next durable write (an append, a vote) carries it to disk. Lost
    /// in a crash, it only means a restart re-applies less of the log and learns the
    /// rest of the commit index from the leader.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        let value = encode(&committed).map_err(|e| StorageIOError::write_logs(&e))?;
        let db = self.db.clone();
        blocking(move || -> std::io::Result<()> {
            let mut txn = db.begin_write().map_err(std::io::Error::other)?;
            txn.set_durability(redb::Durability::None)
                .map_err(std::io::Error::other)?;
            {
                let mut table = txn.open_table(META).map_err(std::io::Error::other)?;
                table
                    .insert("committed", value.as_slice())
                    .map_err(std::io::Error::other)?;
            }
            txn.commit().map_err(std::io::Error::other)
        })
        .await
        .and_then(|r| r)
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> = self
            .meta("committed")
            .await
            .map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, encode(&entry)?)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let written = self
            .write(move |txn| {
                let mut table = txn.open_table(LOG)?;
                for (index, value) in &encoded {
                    table.insert(*index, value.as_slice())?;
                }
                Ok(())
            })
            .await;
        // Committed with fsync: the entries are durable now.
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.write(move |txn| {
            remove_range(&mut txn.open_table(LOG)?, log_id.index..)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let value = encode(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        // The purge point and the deletion in one transaction: never a gap unaccounted.
        self.write(move |txn| {
            txn.open_table(META)?
                .insert("last_purged", value.as_slice())?;
            remove_range(&mut txn.open_table(LOG)?, ..=log_id.index)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// Deletes the entries of `range`.
fn remove_range(
    table: &mut redb::Table<'_, u64, &'static [u8]>,
    range: impl RangeBounds<u64>,
) -> std::result::Result<(), redb::Error> {
    let keys: Vec<u64> = table
        .range(range)?
        .map(|item| item.map(|(key, _)| key.value()))
        .collect::<std::result::Result<_, _>>()?;
    for key in keys {
        table.remove(key)?;
    }
    Ok(())
}
