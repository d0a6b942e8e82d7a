//! The OCPP charge points' journals in the node's store (issue 6, "Persistence"): one
//! [`Journal`] per dispenser identity, each the durable state of one charge point (see
//! [`crate::ocpp::charge_point::Journal`]).
//!
//! ```text
//!   table "ocpp_transactions"  (identity, LocalTxId u64) -> transaction value
//!   table "ocpp_messages"      (identity, Seq u64) -> message value  (sending order = key order)
//!   table "ocpp_settings"      (identity, key) -> value               (ChangeConfiguration)
//!   table "ocpp_availability"  (identity, connector u32) -> "Operative" | "Inoperative"
//!   table "ocpp_local_list"    identity -> local list value           (SendLocalList)
//!   table "ocpp_auth_cache"    (identity, idTag in upper case) -> cache entry value
//!
//!   transaction = JSON {"v":1,"connector":1,"transaction_id":42,"stopped":false}
//!                      (transaction_id null until the CSMS gave it)
//!   message     = JSON {"v":1,"kind":"start","local":7,"request":{...}}
//!                      (kind start | stop | meter_values; request = the OCPP 1.6 JSON
//!                       payload of the StartTransaction / StopTransaction / MeterValues
//!                       .req, whose layout the OCPP schemas fix)
//!   local list  = JSON {"v":1,"version":3,"entries":[{"idTag":"04A2B3C4","idTagInfo":{...}}]}
//!                      (entries as OCPP 1.6 AuthorizationData)
//!   cache entry = JSON {"v":1,"idTagInfo":{...},"last_used":17}   (OCPP 1.6 IdTagInfo)
//! ```
//!
//! Keys lead with the identity, so the dispensers of one cabinet never see each other's
//! entries. A [`Journal::write`] is one durable redb write transaction: all of its
//! changes or none. Every value is decoded when the store opens; one that does not is a
//! [`StoreError::Journal`] naming the identity and the key.
//!
//! Format 1 of the file kept one journal without identities in the tables
//! `journal_transactions` and `journal_messages`; [`Store::open`] upgrades such a file
//! when those tables are empty and refuses it otherwise (its transactions would have no
//! dispenser to go to).

use std::collections::BTreeMap;
use std::fmt;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Store, StoreError, Versioned};
use crate::ocpp::charge_point::{
    AuthChange, CacheEntry, Journal, JournalError, JournalState, JournalWrite, LocalTxId, Seq,
    TagKey, TxMessage, TxRecord,
};
use crate::ocpp::messages::IdTagInfo;
use crate::ocpp::messages::central_system::AuthorizationData;
use crate::ocpp::messages::charge_point::{
    MeterValuesRequest, StartTransactionRequest, StopTransactionRequest,
};
use crate::ocpp::types::CiString20;

/// The version of the journal value encodings (`"v"` in the JSON).
const JOURNAL_VERSION: u32 = 1;

/// `ocpp_transactions`: (identity, local transaction id) → encoded [`TxRecord`].
const TRANSACTIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("ocpp_transactions");

/// `ocpp_messages`: (identity, sequence number) → encoded [`TxMessage`].
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("ocpp_messages");

/// `ocpp_settings`: (identity, canonical key name) → value.
const SETTINGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("ocpp_settings");

/// `ocpp_availability`: (identity, connector) → `Operative` or `Inoperative`.
const AVAILABILITY: TableDefinition<(&str, u32), &str> = TableDefinition::new("ocpp_availability");

/// `ocpp_local_list`: identity → encoded Local Authorization List.
const LOCAL_LIST: TableDefinition<&str, &[u8]> = TableDefinition::new("ocpp_local_list");

/// `ocpp_auth_cache`: (identity, idTag in upper case) → encoded [`CacheEntry`].
const AUTH_CACHE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("ocpp_auth_cache");

/// Format 1's journal tables, without identities.
const LEGACY_TABLES: [TableDefinition<u64, &[u8]>; 2] = [
    TableDefinition::new("journal_transactions"),
    TableDefinition::new("journal_messages"),
];

/// The key of a journal entry, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalKey {
    /// A transaction record, by local transaction id.
    Transaction(LocalTxId),
    /// A message, by sequence number.
    Message(Seq),
    /// A configuration key.
    Setting(String),
    /// A connector's availability.
    Availability(u32),
    /// The Local Authorization List.
    LocalList,
    /// An Authorization Cache entry, by idTag.
    CacheEntry(String),
}

impl fmt::Display for JournalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transaction(local) => write!(f, "transaction {local}"),
            Self::Message(seq) => write!(f, "message {seq}"),
            Self::Setting(key) => write!(f, "setting {key}"),
            Self::Availability(connector) => write!(f, "availability of connector {connector}"),
            Self::LocalList => write!(f, "local authorization list"),
            Self::CacheEntry(tag) => write!(f, "authorization cache entry {tag}"),
        }
    }
}

/// One encoded change: the value to store under a key, or `None` to delete it.
enum Op {
    Transaction(LocalTxId, Option<Vec<u8>>),
    Message(Seq, Option<Vec<u8>>),
    Setting(String, String),
    Availability(u32, &'static str),
    LocalList(Vec<u8>),
    CacheEntry(String, Option<Vec<u8>>),
    ClearCache,
}

impl Store {
    /// Every charge point's journal, by identity.
    ///
    /// Blocking: reads the file.
    pub fn journal_states(&self) -> Result<BTreeMap<String, JournalState>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error("read", e))?;
        let mut states: BTreeMap<String, JournalState> = BTreeMap::new();
        macro_rules! each {
            ($table:expr, |$identity:ident, $key:ident, $value:ident| $body:block) => {
                match txn.open_table($table) {
                    Ok(table) => {
                        for entry in table.iter().map_err(|e| self.db_error("read", e))? {
                            let (k, v) = entry.map_err(|e| self.db_error("read", e))?;
                            let ($identity, $key) = k.value();
                            let $value = v.value();
                            $body
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(self.db_error("read", e)),
                }
            };
        }
        each!(TRANSACTIONS, |identity, local, bytes| {
            let record = decode_record(bytes).map_err(|reason| {
                self.journal_error(identity, JournalKey::Transaction(local), reason)
            })?;
            let state = states.entry(identity.to_owned()).or_default();
            state.transactions.insert(local, record);
        });
        each!(MESSAGES, |identity, seq, bytes| {
            let message = decode_message(bytes)
                .map_err(|reason| self.journal_error(identity, JournalKey::Message(seq), reason))?;
            let state = states.entry(identity.to_owned()).or_default();
            state.messages.insert(seq, message);
        });
        each!(SETTINGS, |identity, key, value| {
            let state = states.entry(identity.to_owned()).or_default();
            state.settings.insert(key.to_owned(), value.to_owned());
        });
        each!(AVAILABILITY, |identity, connector, value| {
            let operative = match value {
                "Operative" => true,
                "Inoperative" => false,
                other => {
                    return Err(self.journal_error(
                        identity,
                        JournalKey::Availability(connector),
                        format!("{other:?} is neither Operative nor Inoperative"),
                    ));
                }
            };
            let state = states.entry(identity.to_owned()).or_default();
            state.availability.insert(connector, operative);
        });
        match txn.open_table(LOCAL_LIST) {
            Ok(table) => {
                for entry in table.iter().map_err(|e| self.db_error("read", e))? {
                    let (k, v) = entry.map_err(|e| self.db_error("read", e))?;
                    let identity = k.value();
                    let (version, entries) = decode_local_list(v.value()).map_err(|reason| {
                        self.journal_error(identity, JournalKey::LocalList, reason)
                    })?;
                    let auth = &mut states.entry(identity.to_owned()).or_default().auth;
                    auth.list_version = version;
                    auth.list = entries;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.db_error("read", e)),
        }
        each!(AUTH_CACHE, |identity, tag, bytes| {
            let entry = decode_cache_entry(bytes).map_err(|reason| {
                self.journal_error(identity, JournalKey::CacheEntry(tag.to_owned()), reason)
            })?;
            let state = states.entry(identity.to_owned()).or_default();
            state.auth.cache.insert(TagKey::from(tag), entry);
        });
        Ok(states)
    }

    /// The journal of the charge point `identity` (empty if it has none).
    ///
    /// Blocking: reads the file.
    pub fn journal_state(&self, identity: &str) -> Result<JournalState, StoreError> {
        Ok(self.journal_states()?.remove(identity).unwrap_or_default())
    }

    /// Applies `changes` to the journal of `identity`, in order, in one durable write
    /// transaction: after an error nothing of the batch is stored.
    ///
    /// Blocking: commits with fsync.
    pub fn write_journal(
        &self,
        identity: &str,
        changes: Vec<JournalWrite>,
    ) -> Result<(), StoreError> {
        self.write_journal_failing_at(identity, changes, None)
    }

    /// [`Store::write_journal`], failing (for tests) just before applying change
    /// `fail_at`, inside the write transaction.
    fn write_journal_failing_at(
        &self,
        identity: &str,
        changes: Vec<JournalWrite>,
        fail_at: Option<usize>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        // Encode everything before the transaction starts.
        let ops = changes
            .into_iter()
            .map(|change| {
                Ok(match change {
                    JournalWrite::PutTransaction(local, record) => {
                        Op::Transaction(local, Some(encode_record(&record)))
                    }
                    JournalWrite::DeleteTransaction(local) => Op::Transaction(local, None),
                    JournalWrite::PutMessage(seq, message) => {
                        let value = encode_message(&message).map_err(|reason| {
                            self.journal_error(identity, JournalKey::Message(seq), reason)
                        })?;
                        Op::Message(seq, Some(value))
                    }
                    JournalWrite::DeleteMessage(seq) => Op::Message(seq, None),
                    JournalWrite::PutSetting { key, value } => Op::Setting(key, value),
                    JournalWrite::PutAvailability {
                        connector,
                        operative,
                    } => Op::Availability(
                        connector,
                        if operative {
                            "Operative"
                        } else {
                            "Inoperative"
                        },
                    ),
                    JournalWrite::Auth(AuthChange::PutList { version, entries }) => {
                        let value = encode_local_list(version, &entries).map_err(|reason| {
                            self.journal_error(identity, JournalKey::LocalList, reason)
                        })?;
                        Op::LocalList(value)
                    }
                    JournalWrite::Auth(AuthChange::PutCacheEntry(tag, entry)) => {
                        Op::CacheEntry(tag.as_str().to_owned(), Some(encode_cache_entry(&entry)))
                    }
                    JournalWrite::Auth(AuthChange::DeleteCacheEntry(tag)) => {
                        Op::CacheEntry(tag.as_str().to_owned(), None)
                    }
                    JournalWrite::Auth(AuthChange::ClearCache) => Op::ClearCache,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(|txn| {
            let mut transactions = txn.open_table(TRANSACTIONS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut settings = txn.open_table(SETTINGS)?;
            let mut availability = txn.open_table(AVAILABILITY)?;
            let mut local_list = txn.open_table(LOCAL_LIST)?;
            let mut cache = txn.open_table(AUTH_CACHE)?;
            for (index, op) in ops.iter().enumerate() {
                if fail_at == Some(index) {
                    return Err(redb::Error::Io(std::io::Error::other(format!(
                        "injected failure before change {index}"
                    ))));
                }
                match op {
                    Op::Transaction(local, Some(value)) => {
                        transactions.insert((identity, *local), value.as_slice())?;
                    }
                    Op::Transaction(local, None) => {
                        transactions.remove((identity, *local))?;
                    }
                    Op::Message(seq, Some(value)) => {
                        messages.insert((identity, *seq), value.as_slice())?;
                    }
                    Op::Message(seq, None) => {
                        messages.remove((identity, *seq))?;
                    }
                    Op::Setting(key, value) => {
                        settings.insert((identity, key.as_str()), value.as_str())?;
                    }
                    Op::Availability(connector, value) => {
                        availability.insert((identity, *connector), *value)?;
                    }
                    Op::LocalList(value) => {
                        local_list.insert(identity, value.as_slice())?;
                    }
                    Op::CacheEntry(tag, Some(value)) => {
                        cache.insert((identity, tag.as_str()), value.as_slice())?;
                    }
                    Op::CacheEntry(tag, None) => {
                        cache.remove((identity, tag.as_str()))?;
                    }
                    Op::ClearCache => {
                        let mut tags = Vec::new();
                        for entry in cache.range((identity, "")..)? {
                            let (key, _) = entry?;
                            let (owner, tag) = key.value();
                            if owner != identity {
                                break;
                            }
                            tags.push(tag.to_owned());
                        }
                        for tag in tags {
                            cache.remove((identity, tag.as_str()))?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// Whether format 1's journal tables are absent or empty.
    pub(super) fn legacy_journal_is_empty(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.db_error("read", e))?;
        for definition in LEGACY_TABLES {
            match txn.open_table(definition) {
                Ok(table) => {
                    if !table.is_empty().map_err(|e| self.db_error("read", e))? {
                        return Ok(false);
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(self.db_error("read", e)),
            }
        }
        Ok(true)
    }

    /// Deletes format 1's (empty) journal tables, inside the upgrade's transaction.
    pub(super) fn drop_legacy_journal(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        for definition in LEGACY_TABLES {
            txn.delete_table(definition)?;
        }
        Ok(())
    }

    fn journal_error(&self, identity: &str, key: JournalKey, reason: String) -> StoreError {
        StoreError::Journal {
            path: self.path.clone(),
            identity: identity.to_owned(),
            key,
            reason,
        }
    }
}

/// The journal of one charge point in the node's store: one durable redb write
/// transaction per [`Journal::write`]. Clones share the store.
#[derive(Debug, Clone)]
pub struct RedbJournal {
    /// The store holding the journal tables.
    store: Store,
    /// The charge point identity its keys lead with.
    identity: String,
}

impl RedbJournal {
    /// The journal of `identity` in `store` (already checked by [`Store::open`]).
    pub fn new(store: Store, identity: impl Into<String>) -> Self {
        Self {
            store,
            identity: identity.into(),
        }
    }
}

impl Journal for RedbJournal {
    fn load(&self) -> Result<JournalState, JournalError> {
        Ok(self.store.journal_state(&self.identity)?)
    }

    fn write(&mut self, changes: Vec<JournalWrite>) -> Result<(), JournalError> {
        Ok(self.store.write_journal(&self.identity, changes)?)
    }
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

/// The on-disk form of the Local Authorization List, version 1.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalListV1 {
    /// Encoding version, [`JOURNAL_VERSION`].
    v: u32,
    /// The listVersion.
    version: i32,
    /// The entries as OCPP 1.6 AuthorizationData.
    entries: Vec<AuthorizationData>,
}

/// The on-disk form of an Authorization Cache entry, version 1.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheEntryV1 {
    /// Encoding version, [`JOURNAL_VERSION`].
    v: u32,
    /// [`CacheEntry::info`] as OCPP 1.6 IdTagInfo.
    #[serde(rename = "idTagInfo")]
    id_tag_info: IdTagInfo,
    /// [`CacheEntry::last_used`].
    last_used: u64,
}

fn encode_local_list(
    version: i32,
    entries: &BTreeMap<TagKey, IdTagInfo>,
) -> Result<Vec<u8>, String> {
    let entries = entries
        .iter()
        .map(|(tag, info)| {
            Ok(AuthorizationData {
                id_tag: CiString20::new(tag.as_str())
                    .map_err(|e| format!("idTag {tag} does not fit: {e}"))?,
                id_tag_info: Some(info.clone()),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let value = LocalListV1 {
        v: JOURNAL_VERSION,
        version,
        entries,
    };
    serde_json::to_vec(&value).map_err(|e| format!("cannot encode: {e}"))
}

fn decode_local_list(bytes: &[u8]) -> Result<(i32, BTreeMap<TagKey, IdTagInfo>), String> {
    check_journal_version(bytes)?;
    let value: LocalListV1 =
        serde_json::from_slice(bytes).map_err(|e| format!("bad version 1 value: {e}"))?;
    let mut entries = BTreeMap::new();
    for data in value.entries {
        let info = data
            .id_tag_info
            .ok_or_else(|| format!("entry {} has no idTagInfo", data.id_tag))?;
        entries.insert(TagKey::new(&data.id_tag), info);
    }
    Ok((value.version, entries))
}

fn encode_cache_entry(entry: &CacheEntry) -> Vec<u8> {
    let value = CacheEntryV1 {
        v: JOURNAL_VERSION,
        id_tag_info: entry.info.clone(),
        last_used: entry.last_used,
    };
    // IdTagInfo is strings, an enum and a timestamp: serialising it cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

fn decode_cache_entry(bytes: &[u8]) -> Result<CacheEntry, String> {
    check_journal_version(bytes)?;
    let value: CacheEntryV1 =
        serde_json::from_slice(bytes).map_err(|e| format!("bad version 1 value: {e}"))?;
    Ok(CacheEntry {
        info: value.id_tag_info,
        last_used: value.last_used,
    })
}
#[cfg(test)]
mod tests {
    use redb::Database;

    use super::super::tests::TempDir;
    use super::*;
    use crate::ocpp::charge_point::MemoryJournal;
    use crate::ocpp::messages::charge_point::Reason;
    use crate::ocpp::messages::meter::{MeterValue, SampledValue};
    use crate::ocpp::types::{CiString20, DateTime};

    /// The identity most tests write under.
    const ID: &str = "RH-A";

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
        RedbJournal::new(Store::open(dir.store_path()).expect("open new store"), ID)
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

        // Settings and availability: puts replace, per key.
        journal
            .write(vec![
                PutSetting {
                    key: "HeartbeatInterval".into(),
                    value: "60".into(),
                },
                PutAvailability {
                    connector: 0,
                    operative: false,
                },
                PutAvailability {
                    connector: 2,
                    operative: false,
                },
            ])
            .expect("settings batch");
        journal
            .write(vec![
                PutSetting {
                    key: "HeartbeatInterval".into(),
                    value: "30".into(),
                },
                PutAvailability {
                    connector: 0,
                    operative: true,
                },
            ])
            .expect("settings batch");
        expected
            .settings
            .insert("HeartbeatInterval".into(), "30".into());
        expected.availability.insert(0, true);
        expected.availability.insert(2, false);
        assert_eq!(journal.load().expect("load"), expected);

        // Deleting every transaction and message leaves the settings.
        journal
            .write(vec![
                DeleteMessage(10),
                DeleteMessage(u64::MAX),
                DeleteTransaction(1),
            ])
            .expect("third batch");
        expected.transactions.clear();
        expected.messages.clear();
        assert_eq!(journal.load().expect("load"), expected);
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
        assert_eq!(store.journal_state(ID).expect("journal"), expected);
        let journal = RedbJournal::new(store.clone(), ID);
        let loaded = journal.load().expect("load");
        assert_eq!(loaded, expected);
        // Same order, entry by entry.
        assert_eq!(
            loaded.messages.into_iter().collect::<Vec<_>>(),
            expected.messages.into_iter().collect::<Vec<_>>()
        );
        // The tokens beside it are untouched.
        assert_eq!(store.tokens().expect("tokens"), vec![]);
    }

    #[test]
    fn a_failed_batch_stores_nothing_of_itself() {
        use JournalWrite::*;
        let dir = TempDir::new("journal-atomic");
        let mut memory = MemoryJournal::default();
        let store = Store::open(dir.store_path()).expect("open");
        for batch in batches() {
            memory.write(batch.clone()).expect("memory write");
            store.write_journal(ID, batch).expect("write");
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
                .write_journal_failing_at(ID, batch.clone(), Some(fail_at))
                .expect_err("injected failure");
            let message = err.to_string();
            assert!(message.contains("injected failure"), "{message}");
            assert!(message.contains(&store.path().display().to_string()));
            assert_eq!(store.journal_state(ID).expect("journal"), before);
        }
        drop(store);
        let store = Store::open(dir.store_path()).expect("reopen");
        assert_eq!(store.journal_state(ID).expect("journal"), before);
        // The aborted transactions left the store writable, and the whole batch applies.
        store.write_journal(ID, batch.clone()).expect("write");
        memory.write(batch).expect("memory write");
        drop(store);
        let store = Store::open(dir.store_path()).expect("reopen");
        assert_eq!(
            store.journal_state(ID).expect("journal"),
            memory.load().expect("load")
        );
    }

    #[test]
    fn the_journal_error_names_the_file() {
        let dir = TempDir::new("journal-error");
        let store = Store::open(dir.store_path()).expect("open");
        let err = JournalError::from(
            store
                .write_journal_failing_at(ID, vec![JournalWrite::DeleteMessage(1)], Some(0))
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
                    JournalKey::Transaction(local) => (TRANSACTIONS, local),
                    JournalKey::Message(seq) => (MESSAGES, seq),
                    _ => unreachable!("only records and messages are bytes"),
                };
                txn.open_table(table)
                    .expect("table")
                    .insert((ID, id), value)
                    .expect("insert");
                txn.commit().expect("commit");
            }
            let err = Store::open(&path).expect_err("garbage value");
            assert!(
                matches!(&err, StoreError::Journal { key: k, .. } if *k == key),
                "unexpected error {err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("journal of {ID}, {key}:")),
                "{message}"
            );
            assert!(message.contains(expected), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        // A good value written the same way is read back.
        std::fs::write(&path, &original).expect("restore");
        {
            let db = Database::open(&path).expect("open raw");
            let txn = db.begin_write().expect("write");
            txn.open_table(MESSAGES)
                .expect("table")
                .insert((ID, 9), good_start.as_bytes())
                .expect("insert");
            txn.commit().expect("commit");
        }
        let state = Store::open(&path)
            .expect("good value")
            .journal_state(ID)
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
                Box::new(RedbJournal::new(store, ID)),
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
            cp.stop_transaction(1, 5000, Reason::Local, timestamp(600), vec![], now)
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

    #[test]
    fn identities_keep_separate_journals() {
        let dir = TempDir::new("journal-identities");
        let store = Store::open(dir.store_path()).expect("open");
        let mut a = RedbJournal::new(store.clone(), "RH-A");
        let mut b = RedbJournal::new(store.clone(), "RH-B");
        a.write(vec![
            JournalWrite::PutTransaction(0, record(1, None, false)),
            JournalWrite::PutMessage(0, start_message(0, 1)),
        ])
        .expect("a");
        b.write(vec![
            JournalWrite::PutTransaction(0, record(2, Some(9), false)),
            JournalWrite::PutSetting {
                key: "MeterValueSampleInterval".into(),
                value: "10".into(),
            },
        ])
        .expect("b");
        let (a, b) = (a.load().expect("a"), b.load().expect("b"));
        assert_eq!(a.transactions[&0], record(1, None, false));
        assert_eq!(a.messages.len(), 1);
        assert!(a.settings.is_empty());
        assert_eq!(b.transactions[&0], record(2, Some(9), false));
        assert!(b.messages.is_empty());
        assert_eq!(b.settings["MeterValueSampleInterval"], "10");
        assert_eq!(
            store
                .journal_states()
                .expect("all")
                .keys()
                .collect::<Vec<_>>(),
            ["RH-A", "RH-B"]
        );
        assert_eq!(
            store.journal_state("RH-C").expect("none"),
            JournalState::default()
        );
    }

    #[test]
    fn a_bad_availability_value_is_an_error_naming_it() {
        let dir = TempDir::new("journal-availability");
        let path = dir.store_path();
        drop(Store::open(&path).expect("create"));
        {
            let db = Database::open(&path).expect("open raw");
            let txn = db.begin_write().expect("write");
            txn.open_table(AVAILABILITY)
                .expect("table")
                .insert((ID, 1), "Sometimes")
                .expect("insert");
            txn.commit().expect("commit");
        }
        let message = Store::open(&path).expect_err("bad value").to_string();
        assert!(
            message.contains("journal of RH-A, availability of connector 1: \"Sometimes\""),
            "{message}"
        );
    }

    /// A format 1 file, as the previous version wrote it, with `messages` in its journal.
    fn format_1_file(dir: &TempDir, messages: u64) -> std::path::PathBuf {
        let path = dir.store_path();
        let db = Database::create(&path).expect("create raw");
        let txn = db.begin_write().expect("write");
        txn.open_table(TableDefinition::<&str, u32>::new("meta"))
            .expect("meta")
            .insert("format", 1)
            .expect("format");
        let mut table = txn.open_table(LEGACY_TABLES[1]).expect("legacy");
        for seq in 0..messages {
            table
                .insert(
                    seq,
                    encode_message(&stop_message(1)).expect("encode").as_slice(),
                )
                .expect("insert");
        }
        drop(table);
        txn.commit().expect("commit");
        path
    }

    #[test]
    fn a_format_1_file_with_an_empty_journal_is_upgraded() {
        let dir = TempDir::new("journal-upgrade");
        let path = format_1_file(&dir, 0);
        let store = Store::open(&path).expect("upgraded");
        assert_eq!(
            store.meta("format").expect("meta"),
            Some(super::super::FORMAT)
        );
        assert!(store.legacy_journal_is_empty().expect("legacy"));
        drop(store);
        Store::open(&path).expect("opens again as format 2");
    }

    #[test]
    fn a_format_1_file_with_messages_is_refused_not_dropped() {
        let dir = TempDir::new("journal-legacy");
        let path = format_1_file(&dir, 2);
        let err = Store::open(&path).expect_err("legacy journal");
        assert!(matches!(err, StoreError::LegacyJournal(_)), "{err:?}");
        assert!(err.to_string().contains("move the file away"), "{err}");
        // Refusing changed nothing: the messages are still there.
        let db = Database::open(&path).expect("open raw");
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(LEGACY_TABLES[1]).expect("legacy");
        assert_eq!(table.len().expect("len"), 2);
    }

    fn info(status: &str) -> IdTagInfo {
        serde_json::from_value(serde_json::json!({"status": status})).expect("IdTagInfo")
    }

    fn cache_put(tag: &str, status: &str, last_used: u64) -> JournalWrite {
        JournalWrite::Auth(AuthChange::PutCacheEntry(
            TagKey::from(tag),
            CacheEntry {
                info: info(status),
                last_used,
            },
        ))
    }

    #[test]
    fn the_local_list_and_the_cache_survive_reopening_per_identity() {
        let dir = TempDir::new("journal-auth");
        let store = Store::open(dir.store_path()).expect("open");
        let mut a = RedbJournal::new(store.clone(), "RH-A");
        let mut b = RedbJournal::new(store.clone(), "RH-B");
        let list: BTreeMap<TagKey, IdTagInfo> = [
            (TagKey::from("04a2b3c4"), info("Accepted")),
            (TagKey::from("DEADBEEF"), info("Blocked")),
        ]
        .into_iter()
        .collect();
        a.write(vec![
            JournalWrite::Auth(AuthChange::PutList {
                version: 7,
                entries: list.clone(),
            }),
            cache_put("CAFE01", "Accepted", 1),
            cache_put("CAFE02", "Invalid", 2),
        ])
        .expect("a");
        b.write(vec![cache_put("CAFE01", "Blocked", 5)]).expect("b");
        // ClearCache empties RH-A's cache only; a deleted entry is gone.
        a.write(vec![
            JournalWrite::Auth(AuthChange::ClearCache),
            cache_put("CAFE03", "Accepted", 3),
        ])
        .expect("clear");
        b.write(vec![
            cache_put("CAFE09", "Accepted", 6),
            JournalWrite::Auth(AuthChange::DeleteCacheEntry(TagKey::from("CAFE09"))),
        ])
        .expect("delete");
        drop((a, b, store));

        let store = Store::open(dir.store_path()).expect("reopen");
        let a = store.journal_state("RH-A").expect("a").auth;
        assert_eq!(a.list_version, 7);
        assert_eq!(a.list, list);
        assert_eq!(
            a.cache.keys().map(TagKey::as_str).collect::<Vec<_>>(),
            ["CAFE03"]
        );
        let b = store.journal_state("RH-B").expect("b").auth;
        assert_eq!(b.list_version, 0);
        assert!(b.list.is_empty());
        assert_eq!(b.cache.len(), 1);
        assert_eq!(b.cache[&TagKey::from("cafe01")].info, info("Blocked"));
        assert_eq!(b.cache[&TagKey::from("cafe01")].last_used, 5);
    }

    #[test]
    fn a_bad_cache_entry_is_an_error_naming_it() {
        let dir = TempDir::new("journal-cache-garbage");
        let path = dir.store_path();
        drop(Store::open(&path).expect("create"));
        {
            let db = Database::open(&path).expect("open raw");
            let txn = db.begin_write().expect("write");
            txn.open_table(AUTH_CACHE)
                .expect("table")
                .insert(
                    (ID, "CAFE01"),
                    br#"{"v":1,"idTagInfo":{"status":"Maybe"},"last_used":1}"#.as_slice(),
                )
                .expect("insert");
            txn.commit().expect("commit");
        }
        let message = Store::open(&path).expect_err("bad value").to_string();
        assert!(
            message
                .contains("journal of RH-A, authorization cache entry CAFE01: bad version 1 value"),
            "{message}"
        );
    }

    #[test]
    fn the_auth_encoding_is_explicit_json() {
        let list: BTreeMap<TagKey, IdTagInfo> = [(TagKey::from("04A2B3C4"), info("Accepted"))]
            .into_iter()
            .collect();
        assert_eq!(
            String::from_utf8(encode_local_list(3, &list).expect("encode")).expect("utf-8"),
            r#"{"v":1,"version":3,"entries":[{"idTag":"04A2B3C4","idTagInfo":{"status":"Accepted"}}]}"#
        );
        let entry = CacheEntry {
            info: info("Blocked"),
            last_used: 17,
        };
        let bytes = encode_cache_entry(&entry);
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf-8"),
            r#"{"v":1,"idTagInfo":{"status":"Blocked"},"last_used":17}"#
        );
        assert_eq!(decode_cache_entry(&bytes).expect("decode"), entry);
    }
}
