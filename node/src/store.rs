//! The node's crash-safe store: what must outlive the process, kept in one redb file,
//! `<data_dir>/node.redb`.
//!
//! For now that is the pending authorisation token of each gun (issue 5, "Auth gating"):
//! a token the node has seen (an RFID read, the EV's MAC or contract id, a remote start)
//! together with the decision it wrote to the PLC as config parameter 20. A node that
//! restarts mid-session reads them back and replays the decision to the PLC, so that a
//! session that was Accepted is not dropped and one that was Rejected is not granted by
//! a reboot (DESIGN.md S5).
//!
//! It also holds the OCPP transaction journal (issue 6, "Persistence"): the transactions
//! and transaction-related messages not yet confirmed by the CSMS, see
//! [`crate::ocpp::charge_point::Journal`] and [`RedbJournal`].
//!
//! ```text
//!   table "meta"                  "format" -> 1            (what wrote this file)
//!   table "pending_tokens"        gun id (u16) -> value    (one per gun at most)
//!   table "journal_transactions"  LocalTxId (u64) -> value
//!   table "journal_messages"      Seq (u64) -> value       (sending order = key order)
//!
//!   pending token = JSON {"v":1,"kind":"rfid","id_tag":"04A2B3C4","decision":"ongoing",
//!                         "stored_unix_ms":1700000000000}
//!   transaction   = JSON {"v":1,"connector":1,"transaction_id":42,"stopped":false}
//!                         (transaction_id null until the CSMS gave it)
//!   message       = JSON {"v":1,"kind":"start","local":7,"request":{...}}
//!                         (kind start | stop | meter_values; request = the OCPP 1.6 JSON
//!                          payload of the StartTransaction / StopTransaction / MeterValues
//!                          .req, whose layout the OCPP schemas fix)
//! ```
//!
//! The journal tables were added without changing the format marker: a file without them
//! holds an empty journal, and a node that predates them ignores them.
//!
//! Values are encoded explicitly (JSON with a version field `v`), not with a Rust type's
//! derived layout, so a rename in the code cannot silently change the file format; a value
//! that does not decode is an error naming its key.
//!
//! Durability: every write is its own redb transaction committed with
//! `Durability::Immediate` (redb's default: fsync before `commit` returns), so a method
//! that returned `Ok` survives a crash or power loss. A journal batch
//! ([`Store::write_journal`]) is one such transaction: all of its changes or none.
//!
//! Corruption: the file is opened with redb's integrity check (every page checksum is
//! verified), an empty existing file is refused (redb would otherwise initialise a new
//! database in it), and every stored value is decoded once at open. Any of these failing
//! is a [`StoreError`] naming the file; the store is never reset behind the operator's
//! back. A crash (the node killed mid-write) is not corruption: redb recovers the last
//! committed transaction.
//!
//! All methods block on file IO (and fsync); async callers run them in
//! `tokio::task::spawn_blocking`. [`Store`] is a cheap clone for that purpose.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ringhub_proto::can::messages::AuthStatus;
use ringhub_proto::config::GunId;

use crate::connector::snapshot::IdToken;
use crate::ocpp::charge_point::{
    Journal, JournalError, JournalState, JournalWrite, LocalTxId, Seq, TxMessage, TxRecord,
};
use crate::ocpp::messages::charge_point::{
    MeterValuesRequest, StartTransactionRequest, StopTransactionRequest,
};

/// The file name of the store inside the node's data dir.
pub const FILE_NAME: &str = "node.redb";

/// What wrote the file: bumped when the tables change incompatibly.
const FORMAT: u32 = 1;

/// The version of the token value encoding (`"v"` in the JSON).
const TOKEN_VERSION: u32 = 1;

/// `meta`: facts about the file itself.
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// `pending_tokens`: gun id → encoded [`PendingToken`].
const TOKENS: TableDefinition<u16, &[u8]> = TableDefinition::new("pending_tokens");

/// The version of the journal value encodings (`"v"` in the JSON).
const JOURNAL_VERSION: u32 = 1;

/// `journal_transactions`: local transaction id → encoded [`TxRecord`].
const JOURNAL_TRANSACTIONS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("journal_transactions");

/// `journal_messages`: sequence number → encoded [`TxMessage`].
const JOURNAL_MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("journal_messages");

/// The key of a journal entry, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalKey {
    /// A transaction record, by local transaction id.
    Transaction(LocalTxId),
    /// A message, by sequence number.
    Message(Seq),
}

impl fmt::Display for JournalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transaction(local) => write!(f, "transaction {local}"),
            Self::Message(seq) => write!(f, "message {seq}"),
        }
    }
}

/// A gun's pending authorisation: the token and what the node decided about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingToken {
    /// The token presented for the gun.
    pub token: IdToken,
    /// The decision written to the PLC as param 20 (None until asked, Ongoing while
    /// checked, then Accepted or Rejected).
    pub decision: AuthStatus,
    /// Wall clock when it was stored, ms since the Unix epoch (for expiry and the operator).
    pub stored_unix_ms: u64,
}

/// Why the store failed. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data dir or the file cannot be created or read.
    #[error("store {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The file exists but is empty: truncated, or a crash while it was first created.
    #[error(
        "store {0}: the file is empty (truncated?); refusing to start over in it: move it away to start with an empty store"
    )]
    Empty(PathBuf),
    /// redb refused the file or failed: corruption, not a redb file, locked by another process.
    #[error("store {path}: {what}: {message}")]
    Database {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    /// The file was written by another program or an incompatible version of this one.
    #[error("store {path}: format {found:?} is not the format {FORMAT} this node writes")]
    Format { path: PathBuf, found: Option<u32> },
    /// A stored value does not decode.
    #[error("store {path}: pending token of gun {gun}: {reason}")]
    Decode {
        path: PathBuf,
        gun: GunId,
        reason: String,
    },
    /// A journal value does not decode, or (never expected) does not encode.
    #[error("store {path}: transaction journal {key}: {reason}")]
    Journal {
        path: PathBuf,
        key: JournalKey,
        reason: String,
    },
}

impl From<StoreError> for JournalError {
    fn from(error: StoreError) -> Self {
        JournalError(error.to_string())
    }
}

/// The node's store. Clones share one open database.
#[derive(Debug, Clone)]
pub struct Store {
    /// The open database.
    db: Arc<Database>,
    /// Its file, for error messages.
    path: PathBuf,
}

impl Store {
    /// The store's path in a data dir.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Opens the store at `path`, creating it (and its directory) when absent. Checks the
    /// whole file: page checksums, the format marker, and every stored value.
    ///
    /// Blocking: reads the whole file and fsyncs.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| StoreError::Io {
                path,
                action,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("cannot create its directory"))?;
        }
        let existed = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == 0 => return Err(StoreError::Empty(path)),
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io("cannot read its metadata")(e)),
        };
        let mut builder = Database::builder();
        builder.set_check_integrity_on_open(true);
        let opened = if existed {
            builder.open(&path)
        } else {
            builder.create(&path)
        };
        let db = opened.map_err(|e| StoreError::Database {
            path: path.clone(),
            what: "cannot open the database",
            message: e.to_string(),
        })?;
        let store = Store {
            db: Arc::new(db),
            path,
        };
        store.check_format(existed)?;
        // Decode every value now, so that garbage is found at start, not mid-session.
        store.tokens()?;
        store.journal_state()?;
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores (or replaces) the pending token of `gun`, durably.
    ///
    /// Blocking: commits with fsync.
    pub fn put_token(&self, gun: GunId, pending: &PendingToken) -> Result<(), StoreError> {
        let value = encode_token(pending);
        self.write(|txn| {
            let mut table = txn.open_table(TOKENS)?;
            table.insert(gun.0, value.as_slice())?;
            Ok(())
        })
    }

    /// Forgets the pending token of `gun`, durably; returns whether there was one.
    ///
    /// Blocking: commits with fsync.
    pub fn remove_token(&self, gun: GunId) -> Result<bool, StoreError> {
        let mut removed = false;
        self.write(|txn| {
            let mut table = txn.open_table(TOKENS)?;
            removed = table.remove(gun.0)?.is_some();
            Ok(())
        })?;
        Ok(removed)
    }

    /// Every pending token, by gun id.
    ///
    /// Blocking: reads the file.
    pub fn tokens(&self) -> Result<Vec<(GunId, PendingToken)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error("read", e))?;
        let table = match txn.open_table(TOKENS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.db_error("read", e)),
        };
        let mut tokens = Vec::new();
        for entry in table.iter().map_err(|e| self.db_error("read", e))? {
            let (key, value) = entry.map_err(|e| self.db_error("read", e))?;
            let gun = GunId(key.value());
            let pending = decode_token(value.value()).map_err(|reason| StoreError::Decode {
                path: self.path.clone(),
                gun,
                reason,
            })?;
            tokens.push((gun, pending));
        }
        Ok(tokens)
    }

    /// Everything the transaction journal holds, messages in sending order.
    ///
    /// Blocking: reads the file.
    pub fn journal_state(&self) -> Result<JournalState, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error("read", e))?;
        let mut state = JournalState::default();
        for (local, bytes) in self.read_journal_table(&txn, JOURNAL_TRANSACTIONS)? {
            let record = decode_record(&bytes)
                .map_err(|reason| self.journal_error(JournalKey::Transaction(local), reason))?;
            state.transactions.insert(local, record);
        }
        for (seq, bytes) in self.read_journal_table(&txn, JOURNAL_MESSAGES)? {
            let message = decode_message(&bytes)
                .map_err(|reason| self.journal_error(JournalKey::Message(seq), reason))?;
            state.messages.insert(seq, message);
        }
        Ok(state)
    }

    /// Applies `changes` to the transaction journal, in order, in one durable write
    /// transaction: after an error nothing of the batch is stored.
    ///
    /// Blocking: commits with fsync.
    pub fn write_journal(&self, changes: Vec<JournalWrite>) -> Result<(), StoreError> {
        self.write_journal_failing_at(changes, None)
    }

    /// [`Store::write_journal`], failing (for tests) just before applying change
    /// `fail_at`, inside the write transaction.
    fn write_journal_failing_at(
        &self,
        changes: Vec<JournalWrite>,
        fail_at: Option<usize>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        // Encode everything before the transaction starts: (key, Some(value) to store or
        // None to delete).
        let ops = changes
            .into_iter()
            .map(|change| match change {
                JournalWrite::PutTransaction(local, record) => {
                    Ok((JournalKey::Transaction(local), Some(encode_record(&record))))
                }
                JournalWrite::DeleteTransaction(local) => {
                    Ok((JournalKey::Transaction(local), None))
                }
                JournalWrite::PutMessage(seq, message) => {
                    let key = JournalKey::Message(seq);
                    let value = encode_message(&message)
                        .map_err(|reason| self.journal_error(key, reason))?;
                    Ok((key, Some(value)))
                }
                JournalWrite::DeleteMessage(seq) => Ok((JournalKey::Message(seq), None)),
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(|txn| {
            let mut transactions = txn.open_table(JOURNAL_TRANSACTIONS)?;
            let mut messages = txn.open_table(JOURNAL_MESSAGES)?;
            for (index, (key, value)) in ops.iter().enumerate() {
                if fail_at == Some(index) {
                    return Err(redb::Error::Io(std::io::Error::other(format!(
                        "injected failure before change {index}"
                    ))));
                }
                let (table, id) = match *key {
                    JournalKey::Transaction(local) => (&mut transactions, local),
                    JournalKey::Message(seq) => (&mut messages, seq),
                };
                match value {
                    Some(value) => {
                        table.insert(id, value.as_slice())?;
                    }
                    None => {
                        table.remove(id)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Every entry of a journal table, in key order; none when the table was never made.
    fn read_journal_table(
        &self,
        txn: &redb::ReadTransaction,
        definition: TableDefinition<u64, &[u8]>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let table = match txn.open_table(definition) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.db_error("read", e)),
        };
        let mut entries = Vec::new();
        for entry in table.iter().map_err(|e| self.db_error("read", e))? {
            let (key, value) = entry.map_err(|e| self.db_error("read", e))?;
            entries.push((key.value(), value.value().to_vec()));
        }
        Ok(entries)
    }

    fn journal_error(&self, key: JournalKey, reason: String) -> StoreError {
        StoreError::Journal {
            path: self.path.clone(),
            key,
            reason,
        }
    }

    /// Writes the format marker into a new file, or checks it in an existing one.
    fn check_format(&self, existed: bool) -> Result<(), StoreError> {
        let found = {
            let txn = self.db.begin_read().map_err(|e| self.db_error("read", e))?;
            match txn.open_table(META) {
                Ok(table) => table
                    .get("format")
                    .map_err(|e| self.db_error("read", e))?
                    .map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.db_error("read", e)),
            }
        };
        match found {
            Some(FORMAT) => Ok(()),
            None if !existed => self.write(|txn| {
                txn.open_table(META)?.insert("format", FORMAT)?;
                Ok(())
            }),
            found => Err(StoreError::Format {
                path: self.path.clone(),
                found,
            }),
        }
    }

    /// Runs `f` in a write transaction and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.db_error("write", e))?;
        f(&txn).map_err(|e| self.db_error("write", e))?;
        txn.commit().map_err(|e| self.db_error("commit", e))
    }

    fn db_error(&self, what: &'static str, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            what,
            message: e.into().to_string(),
        }
    }
}

/// The OCPP transaction journal in the node's store: one durable redb write transaction
/// per [`Journal::write`]. Clones share the store.
#[derive(Debug, Clone)]
pub struct RedbJournal {
    /// The store holding the journal tables.
    store: Store,
}

impl RedbJournal {
    /// The journal in `store` (already checked by [`Store::open`]).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The store it lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Journal for RedbJournal {
    fn load(&self) -> Result<JournalState, JournalError> {
        Ok(self.store.journal_state()?)
    }

    fn write(&mut self, changes: Vec<JournalWrite>) -> Result<(), JournalError> {
        Ok(self.store.write_journal(changes)?)
    }
}

/// The on-disk form of a [`PendingToken`], version 1.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenV1 {
    /// Encoding version, [`TOKEN_VERSION`].
    v: u32,
    /// `rfid`, `mac`, `emaid` or `remote`, as [`IdToken`]'s `Display` spells the kind.
    kind: String,
    /// The id tag.
    id_tag: String,
    /// `none`, `ongoing`, `accepted` or `rejected`.
    decision: String,
    /// [`PendingToken::stored_unix_ms`].
    stored_unix_ms: u64,
}

/// Reads only the version, to tell an unknown version from garbage.
#[derive(serde::Deserialize)]
struct Versioned {
    v: u32,
}

fn encode_token(pending: &PendingToken) -> Vec<u8> {
    let kind = match pending.token {
        IdToken::Rfid(_) => "rfid",
        IdToken::EvMac(_) => "mac",
        IdToken::Contract(_) => "emaid",
        IdToken::Remote(_) => "remote",
    };
    let decision = match pending.decision {
        AuthStatus::None => "none",
        AuthStatus::Ongoing => "ongoing",
        AuthStatus::Accepted => "accepted",
        AuthStatus::Rejected => "rejected",
    };
    let value = TokenV1 {
        v: TOKEN_VERSION,
        kind: kind.to_owned(),
        id_tag: pending.token.id_tag().to_owned(),
        decision: decision.to_owned(),
        stored_unix_ms: pending.stored_unix_ms,
    };
    // Serialising a struct of strings and integers cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

fn decode_token(bytes: &[u8]) -> Result<PendingToken, String> {
    let version: Versioned =
        serde_json::from_slice(bytes).map_err(|e| format!("not a versioned JSON value: {e}"))?;
    if version.v != TOKEN_VERSION {
        return Err(format!(
            "encoding version {} is unknown (this node reads {TOKEN_VERSION})",
            version.v
        ));
    }
    let value: TokenV1 =
        serde_json::from_slice(bytes).map_err(|e| format!("bad version 1 value: {e}"))?;
    let tag = value.id_tag;
    let token = match value.kind.as_str() {
        "rfid" => IdToken::Rfid(tag),
        "mac" => IdToken::EvMac(tag),
        "emaid" => IdToken::Contract(tag),
        "remote" => IdToken::Remote(tag),
        other => return Err(format!("unknown token kind {other:?}")),
    };
    let decision = match value.decision.as_str() {
        "none" => AuthStatus::None,
        "ongoing" => AuthStatus::Ongoing,
        "accepted" => AuthStatus::Accepted,
        "rejected" => AuthStatus::Rejected,
        other => return Err(format!("unknown decision {other:?}")),
    };
    Ok(PendingToken {
        token,
        decision,
        stored_unix_ms: value.stored_unix_ms,
    })
}

/// The on-disk form of a [`TxRecord`], version 1.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TxRecordV1 {
    /// Encoding version, [`JOURNAL_VERSION`].
    v: u32,
    /// [`TxRecord::connector`].
    connector: u32,
    /// [`TxRecord::transaction_id`]; null until known.
    transaction_id: Option<i32>,
    /// [`TxRecord::stopped`].
    stopped: bool,
}

/// The on-disk form of a [`TxMessage`], version 1.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TxMessageV1 {
    /// Encoding version, [`JOURNAL_VERSION`].
    v: u32,
    /// `start`, `stop` or `meter_values`.
    kind: String,
    /// The local transaction id.
    local: LocalTxId,
    /// The request as its OCPP 1.6 JSON payload.
    request: serde_json::Value,
}

/// Checks the `"v"` of a journal value, telling an unknown version from garbage.
fn check_journal_version(bytes: &[u8]) -> Result<(), String> {
    let version: Versioned =
        serde_json::from_slice(bytes).map_err(|e| format!("not a versioned JSON value: {e}"))?;
    if version.v != JOURNAL_VERSION {
        return Err(format!(
            "encoding version {} is unknown (this node reads {JOURNAL_VERSION})",
            version.v
        ));
    }
    Ok(())
}

fn encode_record(record: &TxRecord) -> Vec<u8> {
    let value = TxRecordV1 {
        v: JOURNAL_VERSION,
        connector: record.connector,
        transaction_id: record.transaction_id,
        stopped: record.stopped,
    };
    // Serialising a struct of integers and booleans cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

fn decode_record(bytes: &[u8]) -> Result<TxRecord, String> {
    check_journal_version(bytes)?;
    let value: TxRecordV1 =
        serde_json::from_slice(bytes).map_err(|e| format!("bad version 1 value: {e}"))?;
    Ok(TxRecord {
        connector: value.connector,
        transaction_id: value.transaction_id,
        stopped: value.stopped,
    })
}

fn encode_message(message: &TxMessage) -> Result<Vec<u8>, String> {
    let (kind, request) = match message {
        TxMessage::Start { request, .. } => ("start", serde_json::to_value(request)),
        TxMessage::Stop { request, .. } => ("stop", serde_json::to_value(request)),
        TxMessage::MeterValues { request, .. } => ("meter_values", serde_json::to_value(request)),
    };
    let value = TxMessageV1 {
        v: JOURNAL_VERSION,
        kind: kind.to_owned(),
        local: message.local(),
        request: request.map_err(|e| format!("cannot encode the {kind} request: {e}"))?,
    };
    serde_json::to_vec(&value).map_err(|e| format!("cannot encode: {e}"))
}

fn decode_message(bytes: &[u8]) -> Result<TxMessage, String> {
    check_journal_version(bytes)?;
    let value: TxMessageV1 =
        serde_json::from_slice(bytes).map_err(|e| format!("bad version 1 value: {e}"))?;
    let local = value.local;
    let kind = value.kind;
    let bad = |e: serde_json::Error| format!("bad {kind} request: {e}");
    Ok(match kind.as_str() {
        "start" => TxMessage::Start {
            local,
            request: serde_json::from_value::<StartTransactionRequest>(value.request)
                .map_err(bad)?,
        },
        "stop" => TxMessage::Stop {
            local,
            request: serde_json::from_value::<StopTransactionRequest>(value.request)
                .map_err(bad)?,
        },
        "meter_values" => TxMessage::MeterValues {
            local,
            request: serde_json::from_value::<MeterValuesRequest>(value.request).map_err(bad)?,
        },
        other => return Err(format!("unknown message kind {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::ocpp::charge_point::MemoryJournal;
    use crate::ocpp::messages::charge_point::Reason;
    use crate::ocpp::messages::meter::{MeterValue, SampledValue};
    use crate::ocpp::types::{CiString20, DateTime};

    /// A directory under the system temp dir, unique per process and test, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("ringhub-store-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            Self(dir)
        }

        fn store_path(&self) -> PathBuf {
            Store::path_in(&self.0)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rfid(tag: &str, decision: AuthStatus) -> PendingToken {
        PendingToken {
            token: IdToken::Rfid(tag.into()),
            decision,
            stored_unix_ms: 1_700_000_000_123,
        }
    }

    /// A store file with two tokens in it, closed.
    fn filled(dir: &TempDir) -> PathBuf {
        let path = dir.store_path();
        let store = Store::open(&path).expect("open new store");
        store
            .put_token(GunId(0), &rfid("04A2B3C4D5E6F7", AuthStatus::Accepted))
            .expect("put");
        store
            .put_token(GunId(3), &rfid("DEADBEEF", AuthStatus::Ongoing))
            .expect("put");
        path
    }

    #[test]
    fn tokens_survive_reopening() {
        let dir = TempDir::new("reopen");
        let path = dir.store_path();
        let tokens = [
            (GunId(0), rfid("04A2B3C4D5E6F7", AuthStatus::Ongoing)),
            (
                GunId(1),
                PendingToken {
                    token: IdToken::EvMac("0A1B2C3D4E5F".into()),
                    decision: AuthStatus::Accepted,
                    stored_unix_ms: 1,
                },
            ),
            (
                GunId(2),
                PendingToken {
                    token: IdToken::Contract("DE-ABC-C123456789-X".into()),
                    decision: AuthStatus::Rejected,
                    stored_unix_ms: 2,
                },
            ),
            (
                GunId(7),
                PendingToken {
                    token: IdToken::Remote("remote-42".into()),
                    decision: AuthStatus::None,
                    stored_unix_ms: u64::MAX,
                },
            ),
        ];
        {
            let store = Store::open(&path).expect("open new store");
            assert_eq!(store.tokens().expect("tokens"), vec![]);
            for (gun, token) in &tokens {
                store.put_token(*gun, token).expect("put");
            }
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.tokens().expect("tokens"), tokens.to_vec());
    }

    #[test]
    fn put_replaces_and_remove_forgets() {
        let dir = TempDir::new("replace");
        let path = filled(&dir);
        {
            let store = Store::open(&path).expect("reopen");
            store
                .put_token(GunId(3), &rfid("DEADBEEF", AuthStatus::Rejected))
                .expect("replace");
            assert!(store.remove_token(GunId(0)).expect("remove"));
            assert!(!store.remove_token(GunId(0)).expect("remove again"));
            assert!(!store.remove_token(GunId(9)).expect("remove absent"));
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(
            store.tokens().expect("tokens"),
            vec![(GunId(3), rfid("DEADBEEF", AuthStatus::Rejected))]
        );
    }

    #[test]
    fn creates_the_data_dir() {
        let dir = TempDir::new("mkdir");
        let path = dir.0.join("a").join("b").join(FILE_NAME);
        Store::open(&path).expect("open in a new dir");
        assert!(path.is_file());
    }

    #[test]
    fn a_second_open_of_an_open_store_is_refused() {
        let dir = TempDir::new("locked");
        let path = dir.store_path();
        let _first = Store::open(&path).expect("open");
        let err = Store::open(&path).expect_err("second open");
        assert!(
            matches!(err, StoreError::Database { .. }),
            "unexpected error {err:?}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn an_empty_file_is_refused_not_reset() {
        let dir = TempDir::new("empty");
        let path = filled(&dir);
        std::fs::File::create(&path).expect("truncate to zero");
        let err = Store::open(&path).expect_err("empty file");
        assert!(
            matches!(err, StoreError::Empty(_)),
            "unexpected error {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("empty"), "{message}");
        // Refusing did not write anything.
        assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 0);
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = TempDir::new("truncated");
        let path = filled(&dir);
        let len = std::fs::metadata(&path).expect("metadata").len();
        for keep in [len / 2, 700, 100] {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open file");
            file.set_len(keep).expect("truncate");
            drop(file);
            let err = Store::open(&path).expect_err("truncated file");
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string()),
                "kept {keep} of {len} bytes: {message}"
            );
            assert_eq!(
                std::fs::metadata(&path).expect("metadata").len(),
                keep,
                "the refused file was changed"
            );
        }
    }

    #[test]
    fn a_scribbled_file_is_refused() {
        let dir = TempDir::new("scribbled");
        let path = filled(&dir);
        let original = std::fs::read(&path).expect("read");
        // Over the header, and over every later 4 KiB page in turn (where the tables live).
        let mut offsets = vec![0u64];
        offsets.extend((4096..original.len() as u64).step_by(4096).map(|o| o + 64));
        let mut refused = 0;
        for offset in offsets {
            std::fs::write(&path, &original).expect("restore");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open file");
            file.seek(SeekFrom::Start(offset)).expect("seek");
            file.write_all(&[0xA5; 256]).expect("scribble");
            drop(file);
            match Store::open(&path) {
                Err(err) => {
                    let message = err.to_string();
                    assert!(message.contains(&path.display().to_string()), "{message}");
                    refused += 1;
                }
                // A page that no committed tree uses (free space) may be scribbled on
                // harmlessly; then what is read back must still be what was written.
                Ok(store) => assert_eq!(
                    store.tokens().expect("tokens"),
                    vec![
                        (GunId(0), rfid("04A2B3C4D5E6F7", AuthStatus::Accepted)),
                        (GunId(3), rfid("DEADBEEF", AuthStatus::Ongoing)),
                    ],
                    "scribbling at {offset} changed the data without an error"
                ),
            }
        }
        assert!(refused >= 2, "only {refused} scribbles were detected");
    }

    #[test]
    fn a_foreign_redb_file_is_refused() {
        let dir = TempDir::new("foreign");
        let path = dir.store_path();
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("write");
            txn.open_table(TableDefinition::<&str, &str>::new("other"))
                .expect("table")
                .insert("k", "v")
                .expect("insert");
            txn.commit().expect("commit");
        }
        let err = Store::open(&path).expect_err("foreign file");
        assert!(
            matches!(err, StoreError::Format { found: None, .. }),
            "unexpected error {err:?}"
        );
    }

    #[test]
    fn a_garbage_value_is_an_error_naming_its_gun() {
        let dir = TempDir::new("garbage");
        let path = filled(&dir);
        let cases: [(&[u8], &str); 5] = [
            (b"\x00\x01garbage", "not a versioned JSON value"),
            (br#"{"v":2,"anything":true}"#, "encoding version 2 is unknown"),
            (
                br#"{"v":1,"kind":"fingerprint","id_tag":"x","decision":"none","stored_unix_ms":0}"#,
                "unknown token kind \"fingerprint\"",
            ),
            (
                br#"{"v":1,"kind":"rfid","id_tag":"x","decision":"maybe","stored_unix_ms":0}"#,
                "unknown decision \"maybe\"",
            ),
            (br#"{"v":1,"kind":"rfid"}"#, "bad version 1 value"),
        ];
        for (value, expected) in cases {
            {
                let db = Database::open(&path).expect("open raw");
                let txn = db.begin_write().expect("write");
                txn.open_table(TOKENS)
                    .expect("table")
                    .insert(3u16, value)
                    .expect("insert");
                txn.commit().expect("commit");
            }
            let err = Store::open(&path).expect_err("garbage value");
            assert!(
                matches!(err, StoreError::Decode { gun: GunId(3), .. }),
                "unexpected error {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains("gun 3"), "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }

    #[test]
    fn the_encoding_is_explicit_json() {
        let bytes = encode_token(&PendingToken {
            token: IdToken::EvMac("0A1B2C3D4E5F".into()),
            decision: AuthStatus::Ongoing,
            stored_unix_ms: 42,
        });
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            r#"{"v":1,"kind":"mac","id_tag":"0A1B2C3D4E5F","decision":"ongoing","stored_unix_ms":42}"#
        );
    }

    // ---- the transaction journal ----

    fn timestamp(secs: i64) -> DateTime {
        DateTime::from_unix_millis(1_714_564_800_000 + secs * 1000)
    }

    fn start_message(local: LocalTxId, connector: u32) -> TxMessage {
        TxMessage::Start {
            local,
            request: StartTransactionRequest {
                connector_id: connector,
                id_tag: CiString20::new("04A2B3C4").expect("id tag"),
                meter_start: 1000,
                reservation_id: Some(7),
                timestamp: timestamp(0),
            },
        }
    }

    fn meter_message(local: LocalTxId, wh: u32) -> TxMessage {
        TxMessage::MeterValues {
            local,
            request: MeterValuesRequest {
                connector_id: 1,
                transaction_id: None,
                meter_value: vec![MeterValue {
                    timestamp: timestamp(300),
                    sampled_value: vec![SampledValue {
                        value: wh.to_string(),
                        context: None,
                        format: None,
                        measurand: None,
                        phase: None,
                        location: None,
                        unit: None,
                    }],
                }],
            },
        }
    }

    fn stop_message(local: LocalTxId) -> TxMessage {
        TxMessage::Stop {
            local,
            request: StopTransactionRequest {
                id_tag: None,
                meter_stop: 5000,
                timestamp: timestamp(600),
                transaction_id: 0,
                reason: Some(Reason::Local),
                transaction_data: None,
            },
        }
    }

    fn record(connector: u32, transaction_id: Option<i32>, stopped: bool) -> TxRecord {
        TxRecord {
            connector,
            transaction_id,
            stopped,
        }
    }

    /// A new, empty redb journal in `dir`.
    fn redb_journal(dir: &TempDir) -> RedbJournal {
        RedbJournal::new(Store::open(dir.store_path()).expect("open new store"))
    }

    /// The behaviour every [`Journal`] shares: batches apply in order, puts replace,
    /// deletes forget (absent keys too), messages come back in sequence order.
    fn behaves_like_a_journal(journal: &mut dyn Journal) {
        use JournalWrite::*;
        assert_eq!(journal.load().expect("load"), JournalState::default());
        journal.write(vec![]).expect("empty batch");
        assert_eq!(journal.load().expect("load"), JournalState::default());

        // Written out of order; read in key order.
        journal
            .write(vec![
                PutMessage(10, meter_message(1, 3000)),
                PutTransaction(1, record(1, None, false)),
                PutMessage(2, start_message(1, 1)),
                PutMessage(u64::MAX, stop_message(1)),
            ])
            .expect("first batch");
        let mut expected = JournalState::default();
        expected.transactions.insert(1, record(1, None, false));
        expected.messages.insert(2, start_message(1, 1));
        expected.messages.insert(10, meter_message(1, 3000));
        expected.messages.insert(u64::MAX, stop_message(1));
        let loaded = journal.load().expect("load");
        assert_eq!(loaded, expected);
        assert_eq!(
            loaded.messages.keys().copied().collect::<Vec<_>>(),
            vec![2, 10, u64::MAX]
        );

        // Replace, delete, delete what is absent, and a put then delete of one key in
        // the same batch: later changes win.
        journal
            .write(vec![
                PutTransaction(1, record(1, Some(42), true)),
                DeleteMessage(2),
                DeleteMessage(99),
                DeleteTransaction(5),
                PutTransaction(2, record(2, None, false)),
                PutMessage(11, start_message(2, 2)),
                DeleteMessage(11),
                DeleteTransaction(2),
            ])
            .expect("second batch");
        expected.transactions.insert(1, record(1, Some(42), true));
        expected.messages.remove(&2);
        assert_eq!(journal.load().expect("load"), expected);

        // Deleting everything leaves an empty journal.
        journal
            .write(vec![
                DeleteMessage(10),
                DeleteMessage(u64::MAX),
                DeleteTransaction(1),
            ])
            .expect("third batch");
        assert_eq!(journal.load().expect("load"), JournalState::default());
    }

    #[test]
    fn the_memory_journal_behaves_like_a_journal() {
        behaves_like_a_journal(&mut MemoryJournal::default());
    }

    #[test]
    fn the_redb_journal_behaves_like_a_journal() {
        let dir = TempDir::new("journal-behaviour");
        behaves_like_a_journal(&mut redb_journal(&dir));
    }

    /// Batches in the shape the charge point writes them.
    fn batches() -> Vec<Vec<JournalWrite>> {
        use JournalWrite::*;
        vec![
            vec![
                PutTransaction(1, record(1, None, false)),
                PutMessage(1, start_message(1, 1)),
            ],
            vec![PutMessage(2, meter_message(1, 3000))],
            vec![
                PutTransaction(2, record(2, None, false)),
                PutMessage(3, start_message(2, 2)),
            ],
            vec![
                PutTransaction(1, record(1, None, true)),
                PutMessage(4, stop_message(1)),
            ],
            vec![
                PutTransaction(1, record(1, Some(42), true)),
                DeleteMessage(1),
            ],
            vec![PutMessage(5, meter_message(2, 7000))],
        ]
    }

    #[test]
    fn the_redb_journal_survives_reopening_identically() {
        let dir = TempDir::new("journal-reopen");
        let mut memory = MemoryJournal::default();
        {
            let mut journal = redb_journal(&dir);
            for batch in batches() {
                memory.write(batch.clone()).expect("memory write");
                journal.write(batch).expect("redb write");
                assert_eq!(journal.load().expect("load"), memory.load().expect("load"));
            }
        }
        let expected = memory.load().expect("load");
        assert_eq!(
            expected.messages.keys().copied().collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        let store = Store::open(dir.store_path()).expect("reopen");
        assert_eq!(store.journal_state().expect("journal"), expected);
        let journal = RedbJournal::new(store);
        let loaded = journal.load().expect("load");
        assert_eq!(loaded, expected);
        // Same order, entry by entry.
        assert_eq!(
            loaded.messages.into_iter().collect::<Vec<_>>(),
            expected.messages.into_iter().collect::<Vec<_>>()
        );
        // The tokens beside it are untouched.
        assert_eq!(journal.store().tokens().expect("tokens"), vec![]);
    }

    #[test]
    fn a_failed_batch_stores_nothing_of_itself() {
        use JournalWrite::*;
        let dir = TempDir::new("journal-atomic");
        let mut memory = MemoryJournal::default();
        let store = Store::open(dir.store_path()).expect("open");
        for batch in batches() {
            memory.write(batch.clone()).expect("memory write");
            store.write_journal(batch).expect("write");
        }
        let before = memory.load().expect("load");
        // Every change is visible on its own: a new record, a deleted record, a deleted
        // message, a new message.
        let batch = vec![
            PutTransaction(3, record(1, None, false)),
            DeleteTransaction(2),
            DeleteMessage(2),
            PutMessage(6, stop_message(2)),
        ];
        // Fails after 1, 2 and 3 of the 4 changes were applied inside the transaction.
        for fail_at in 1..batch.len() {
            let err = store
                .write_journal_failing_at(batch.clone(), Some(fail_at))
                .expect_err("injected failure");
            let message = err.to_string();
            assert!(message.contains("injected failure"), "{message}");
            assert!(message.contains(&store.path().display().to_string()));
            assert_eq!(store.journal_state().expect("journal"), before);
        }
        drop(store);
        let store = Store::open(dir.store_path()).expect("reopen");
        assert_eq!(store.journal_state().expect("journal"), before);
        // The aborted transactions left the store writable, and the whole batch applies.
        store.write_journal(batch.clone()).expect("write");
        memory.write(batch).expect("memory write");
        drop(store);
        let store = Store::open(dir.store_path()).expect("reopen");
        assert_eq!(
            store.journal_state().expect("journal"),
            memory.load().expect("load")
        );
    }

    #[test]
    fn the_journal_error_names_the_file() {
        let dir = TempDir::new("journal-error");
        let store = Store::open(dir.store_path()).expect("open");
        let err = JournalError::from(
            store
                .write_journal_failing_at(vec![JournalWrite::DeleteMessage(1)], Some(0))
                .expect_err("injected failure"),
        );
        let message = err.to_string();
        assert!(
            message.starts_with("transaction journal: store "),
            "{message}"
        );
        assert!(
            message.contains(&store.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_garbage_journal_value_is_an_error_naming_its_key() {
        let dir = TempDir::new("journal-garbage");
        let path = dir.store_path();
        {
            let mut journal = redb_journal(&dir);
            for batch in batches() {
                journal.write(batch).expect("write");
            }
        }
        let original = std::fs::read(&path).expect("read");
        let start = br#"{"connectorId":1,"idTag":"X","meterStart":0,"timestamp":"2024-05-01T12:00:00.000Z"}"#;
        let good_start = format!(
            r#"{{"v":1,"kind":"start","local":1,"request":{}}}"#,
            String::from_utf8_lossy(start)
        );
        let unknown_kind = good_start.replace(r#""start""#, r#""boot""#);
        let bad_request = good_start.replace(r#""idTag":"X","#, "");
        let cases: [(JournalKey, &[u8], &str); 8] = [
            (
                JournalKey::Message(3),
                b"\x00\x01garbage",
                "not a versioned JSON value",
            ),
            (
                JournalKey::Message(4),
                br#"{"v":2,"anything":true}"#,
                "encoding version 2 is unknown",
            ),
            (
                JournalKey::Message(5),
                unknown_kind.as_bytes(),
                "unknown message kind \"boot\"",
            ),
            (
                JournalKey::Message(2),
                bad_request.as_bytes(),
                "bad start request",
            ),
            (
                JournalKey::Message(2),
                br#"{"v":1,"kind":"stop","local":1}"#,
                "bad version 1 value",
            ),
            (
                JournalKey::Transaction(2),
                b"",
                "not a versioned JSON value",
            ),
            (
                JournalKey::Transaction(1),
                br#"{"v":1,"connector":1,"transaction_id":"42","stopped":false}"#,
                "bad version 1 value",
            ),
            (
                JournalKey::Transaction(1),
                br#"{"v":1,"connector":1,"transaction_id":null,"stopped":false,"x":1}"#,
                "bad version 1 value",
            ),
        ];
        for (key, value, expected) in cases {
            std::fs::write(&path, &original).expect("restore");
            {
                let db = Database::open(&path).expect("open raw");
                let txn = db.begin_write().expect("write");
                let (table, id) = match key {
                    JournalKey::Transaction(local) => (JOURNAL_TRANSACTIONS, local),
                    JournalKey::Message(seq) => (JOURNAL_MESSAGES, seq),
                };
                txn.open_table(table)
                    .expect("table")
                    .insert(id, value)
                    .expect("insert");
                txn.commit().expect("commit");
            }
            let err = Store::open(&path).expect_err("garbage value");
            assert!(
                matches!(&err, StoreError::Journal { key: k, .. } if *k == key),
                "unexpected error {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(&format!("journal {key}:")), "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        // A good value written the same way is read back.
        std::fs::write(&path, &original).expect("restore");
        {
            let db = Database::open(&path).expect("open raw");
            let txn = db.begin_write().expect("write");
            txn.open_table(JOURNAL_MESSAGES)
                .expect("table")
                .insert(9, good_start.as_bytes())
                .expect("insert");
            txn.commit().expect("commit");
        }
        let state = Store::open(&path)
            .expect("good value")
            .journal_state()
            .expect("journal");
        assert!(matches!(
            &state.messages[&9],
            TxMessage::Start { local: 1, request } if request.id_tag.as_str() == "X"
        ));
    }

    #[test]
    fn a_truncated_journal_file_is_refused() {
        let dir = TempDir::new("journal-truncated");
        let path = dir.store_path();
        {
            let mut journal = redb_journal(&dir);
            for batch in batches() {
                journal.write(batch).expect("write");
            }
        }
        let len = std::fs::metadata(&path).expect("metadata").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open file");
        file.set_len(len / 2).expect("truncate");
        drop(file);
        let err = Store::open(&path).expect_err("truncated file");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn the_journal_encoding_is_explicit_json() {
        assert_eq!(
            String::from_utf8(encode_record(&record(2, Some(42), true))).expect("utf-8"),
            r#"{"v":1,"connector":2,"transaction_id":42,"stopped":true}"#
        );
        assert_eq!(
            String::from_utf8(encode_record(&record(2, None, false))).expect("utf-8"),
            r#"{"v":1,"connector":2,"transaction_id":null,"stopped":false}"#
        );
        assert_eq!(
            String::from_utf8(encode_message(&start_message(7, 1)).expect("encode"))
                .expect("utf-8"),
            r#"{"v":1,"kind":"start","local":7,"request":{"connectorId":1,"idTag":"04A2B3C4","meterStart":1000,"reservationId":7,"timestamp":"2024-05-01T12:00:00.000Z"}}"#
        );
        assert_eq!(
            String::from_utf8(encode_message(&stop_message(7)).expect("encode")).expect("utf-8"),
            r#"{"v":1,"kind":"stop","local":7,"request":{"meterStop":5000,"timestamp":"2024-05-01T12:10:00.000Z","transactionId":0,"reason":"Local"}}"#
        );
        let meter = String::from_utf8(encode_message(&meter_message(7, 3000)).expect("encode"))
            .expect("utf-8");
        assert!(
            meter.starts_with(r#"{"v":1,"kind":"meter_values","local":7,"request":{"#),
            "{meter}"
        );
        for message in [start_message(7, 1), stop_message(7), meter_message(7, 3000)] {
            let bytes = encode_message(&message).expect("encode");
            assert_eq!(decode_message(&bytes).expect("decode"), message);
        }
    }

    #[test]
    fn a_charge_point_restarts_from_the_redb_journal() {
        use std::time::Instant;

        use crate::ocpp::charge_point::{ChargePoint, Config};
        use crate::ocpp::messages::charge_point::BootNotificationRequest;
        use crate::ocpp::rpc::SequentialIds;

        let config = || {
            Config::new(
                BootNotificationRequest {
                    charge_point_vendor: CiString20::new("ringhub").expect("vendor"),
                    charge_point_model: CiString20::new("RH-360").expect("model"),
                    charge_point_serial_number: None,
                    charge_box_serial_number: None,
                    firmware_version: None,
                    iccid: None,
                    imsi: None,
                    meter_type: None,
                    meter_serial_number: None,
                },
                2,
            )
        };
        let over = |store: Store| {
            ChargePoint::with_journal(
                config(),
                Box::new(SequentialIds::new(1)),
                Box::new(RedbJournal::new(store)),
            )
            .expect("charge point")
        };
        let dir = TempDir::new("journal-charge-point");
        let now = Instant::now();
        let tag = || CiString20::new("TAG1").expect("tag");
        let (state, open) = {
            let mut cp = over(Store::open(dir.store_path()).expect("open"));
            cp.start_transaction(1, tag(), 1000, timestamp(0), now)
                .expect("start 1");
            let TxMessage::MeterValues { request, .. } = meter_message(1, 3000) else {
                unreachable!()
            };
            cp.meter_values(1, request.meter_value, now)
                .expect("meter values");
            cp.start_transaction(2, tag(), 2000, timestamp(10), now)
                .expect("start 2");
            cp.stop_transaction(1, 5000, Reason::Local, timestamp(600), now)
                .expect("stop 1");
            assert_eq!(cp.pending_transaction_messages(), 4);
            (cp.journal().load().expect("load"), cp.open_transactions())
        };
        assert_eq!(state.transactions.len(), 2);
        assert_eq!(state.messages.len(), 4);
        let cp = over(Store::open(dir.store_path()).expect("reopen"));
        assert_eq!(cp.pending_transaction_messages(), 4);
        assert_eq!(cp.open_transactions(), open);
        assert_eq!(cp.journal().load().expect("load"), state);
    }
}
