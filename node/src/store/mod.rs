//! The node's crash-safe store: what must outlive the process, kept in one redb file,
//! `<data_dir>/node.redb`.
//!
//! - The pending authorisation token of each gun (issue 5, "Auth gating"): a token the
//!   node has seen (an RFID read, the EV's MAC or contract id, a remote start) together
//!   with the decision it wrote to the PLC as config parameter 20. A node that restarts
//!   mid-session reads them back and replays the decision to the PLC, so that a session
//!   that was Accepted is not dropped and one that was Rejected is not granted by a
//!   reboot (DESIGN.md S5).
//! - The journal of each OCPP charge point (issue 6, "Persistence"), see `journal.rs`.
//! - The latch changes on their way into the Raft log (issue 7, S6), see `latches.rs`.
//! - Whether the node last stopped cleanly, so that a transaction the stop cut is ended
//!   with reason Reboot, and one a crash or power cut ended with PowerLoss.
//!
//! ```text
//!   table "meta"            "format" -> 2            (what wrote this file)
//!                           "clean_shutdown" -> 1    (present only after a clean stop)
//!   table "pending_tokens"  gun id (u16) -> value    (one per gun at most)
//!   table "ocpp_*"          see journal.rs
//!   table "pending_latches" see latches.rs
//!
//!   pending token = JSON {"v":1,"kind":"rfid","id_tag":"04A2B3C4","decision":"ongoing",
//!                         "stored_unix_ms":1700000000000}
//! ```
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

mod journal;
mod latches;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ringhub_proto::can::messages::AuthStatus;
use ringhub_proto::config::GunId;

pub use self::journal::{JournalKey, RedbJournal};
use crate::connector::snapshot::IdToken;
use crate::ocpp::charge_point::JournalError;

/// The file name of the store inside the node's data dir.
pub const FILE_NAME: &str = "node.redb";

/// What wrote the file: bumped when the tables change incompatibly.
const FORMAT: u32 = 2;

/// The key in `meta` present only after a clean stop.
const CLEAN_SHUTDOWN: &str = "clean_shutdown";

/// The version of the token value encoding (`"v"` in the JSON).
const TOKEN_VERSION: u32 = 1;

/// `meta`: facts about the file itself.
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// `pending_tokens`: gun id → encoded [`PendingToken`].
const TOKENS: TableDefinition<u16, &[u8]> = TableDefinition::new("pending_tokens");

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
    #[error("store {path}: OCPP journal of {identity}, {key}: {reason}")]
    Journal {
        path: PathBuf,
        identity: String,
        key: JournalKey,
        reason: String,
    },
    /// A pending latch change does not decode.
    #[error("store {path}: latch change {seq}: {reason}")]
    Latch {
        path: PathBuf,
        seq: u64,
        reason: String,
    },
    /// A format 1 file still holds a journal without dispenser identities.
    #[error(
        "store {0}: format 1 with unconfirmed OCPP transaction messages, which this version cannot assign to a dispenser: let the previous version deliver them, or move the file away"
    )]
    LegacyJournal(PathBuf),
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
        store.journal_states()?;
        store.latch_changes()?;
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

    /// Writes the format marker into a new file, or checks it in an existing one.
    /// Upgrades a format 1 file whose journal is empty (see `journal.rs`).
    fn check_format(&self, existed: bool) -> Result<(), StoreError> {
        match self.meta("format")? {
            Some(FORMAT) => Ok(()),
            None if !existed => self.write(|txn| {
                txn.open_table(META)?.insert("format", FORMAT)?;
                Ok(())
            }),
            Some(1) if self.legacy_journal_is_empty()? => self.write(|txn| {
                Self::drop_legacy_journal(txn)?;
                txn.open_table(META)?.insert("format", FORMAT)?;
                Ok(())
            }),
            Some(1) => Err(StoreError::LegacyJournal(self.path.clone())),
            found => Err(StoreError::Format {
                path: self.path.clone(),
                found,
            }),
        }
    }

    /// A value of the `meta` table.
    fn meta(&self, key: &str) -> Result<Option<u32>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error("read", e))?;
        match txn.open_table(META) {
            Ok(table) => Ok(table
                .get(key)
                .map_err(|e| self.db_error("read", e))?
                .map(|v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.db_error("read", e)),
        }
    }

    /// Records, durably, that the node is stopping cleanly; the next start reads it with
    /// [`Store::take_clean_shutdown`].
    ///
    /// Blocking: commits with fsync.
    pub fn mark_clean_shutdown(&self) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(META)?.insert(CLEAN_SHUTDOWN, 1)?;
            Ok(())
        })
    }

    /// Whether the previous run stopped cleanly; forgets it durably, so that a crash of
    /// this run is not taken for a clean stop.
    ///
    /// Blocking: commits with fsync.
    pub fn take_clean_shutdown(&self) -> Result<bool, StoreError> {
        let mut clean = false;
        self.write(|txn| {
            clean = txn.open_table(META)?.remove(CLEAN_SHUTDOWN)?.is_some();
            Ok(())
        })?;
        Ok(clean)
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

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A directory under the system temp dir, unique per process and test, removed on drop.
    pub(super) struct TempDir(PathBuf);

    impl TempDir {
        pub(super) fn new(name: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("ringhub-store-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            Self(dir)
        }

        pub(super) fn store_path(&self) -> PathBuf {
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

    #[test]
    fn a_clean_shutdown_is_read_once() {
        let dir = TempDir::new("clean-shutdown");
        let path = dir.store_path();
        let store = Store::open(&path).expect("open");
        assert!(!store.take_clean_shutdown().expect("take"), "a new store");
        store.mark_clean_shutdown().expect("mark");
        drop(store);
        let store = Store::open(&path).expect("reopen");
        assert!(
            store.take_clean_shutdown().expect("take"),
            "after a clean stop"
        );
        drop(store);
        // The run that took it crashed: the next start sees no clean stop.
        let store = Store::open(&path).expect("reopen");
        assert!(!store.take_clean_shutdown().expect("take"), "after a crash");
    }
}
