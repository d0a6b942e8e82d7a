//! The Raft storage of a node in its redb file (issue 7, "Storage"): the log with its
//! vote, committed index and purge point ([`LogStore`]), and the hub record's current
//! snapshot ([`StateMachineStore`]; the record itself lives in memory and is rebuilt at
//! start from the snapshot and the committed log).
//!
//! ```text
//!   table "raft_log"    index (u64) -> entry           (JSON of openraft's Entry)
//!   table "raft_meta"   "vote" | "committed" | "last_purged" -> JSON
//!   table "raft_sm"     "snapshot" -> {meta, data}     (data: the record's JSON)
//! ```
//!
//! Durability: every write is one redb transaction committed with `Durability::Immediate`
//! (fsync before commit returns): an append is reported flushed only after that, and a
//! vote is durable before `save_vote` returns, as openraft requires; the committed index
//! alone is written without fsync (a stale one only means less to re-apply at start). openraft 0.9 awaits
//! each append's flush before the next, so there is no batch to group; one fsync per
//! append is the cost of S6. The blocking work runs in `spawn_blocking`, never holding a
//! redb transaction across an `.await`.
//!
//! Corruption is an error, never a reset: the file is opened with redb's integrity check,
//! an existing empty file (truncated) is refused, and the state machine's values are
//! decoded at open ([`OpenError`]); a log entry that does not decode when read is an
//! `openraft::StorageError` naming its index.

mod log;
mod state_machine;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use redb::Database;

pub use self::log::LogStore;
pub use self::state_machine::{RecordReader, StateMachineStore};

/// Why the storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// redb refused the file.
    #[error("raft store {path}: {message}")]
    Database {
        /// The file.
        path: String,
        /// redb's message.
        message: String,
    },
    /// A stored value does not decode.
    #[error("raft store {path}: {what}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// Which value.
        what: String,
        /// Why.
        message: String,
    },
}

/// Opens (or creates) the Raft storage at `path` for the ring `topology`, checking every
/// page and decoding the state machine's values.
pub fn open(path: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    let display = path.display().to_string();
    let database_error = |message: String| OpenError::Database {
        path: display.clone(),
        message,
    };
    let existed = match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => {
            return Err(database_error(
                "the file is empty (truncated?); refusing to start over in it".into(),
            ));
        }
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(database_error(e.to_string())),
    };
    let mut builder = Database::builder();
    builder.set_check_integrity_on_open(true);
    let opened = if existed {
        builder.open(path)
    } else {
        builder.create(path)
    };
    let db = opened.map_err(|e| database_error(e.to_string()))?;
    let db = Arc::new(db);
    let log = LogStore::new(db.clone());
    let sm = StateMachineStore::load(db).map_err(|(what, message)| OpenError::Corrupt {
        path: display,
        what,
        message,
    })?;
    Ok((log, sm))
}

/// Runs blocking redb work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, std::io::Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("storage task failed: {e}")))
}
