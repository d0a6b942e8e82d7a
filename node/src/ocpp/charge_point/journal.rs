//! The persistence seam of a charge point: everything it must not forget across a
//! restart (OCPP 1.6 §3.16 "Transaction-related messages", §4.7 "Offline behaviour", issue
//! 6 "Persistence").
//!
//! StartTransaction, StopTransaction and MeterValues with a transactionId are written to a
//! [`Journal`] before they are sent and removed only when confirmed. Beside them the
//! journal keeps the configuration keys the CSMS changed and the connectors' availability.
//! Everything is changed only through [`Journal::write`], one atomic batch at a time:
//!
//! ```text
//!  transactions: LocalTxId ─► TxRecord { connector, transaction_id: Option<i32>, stopped }
//!  messages:     Seq       ─► TxMessage::{Start | Stop | MeterValues} { local, request }
//!  settings:     key       ─► value        (ChangeConfiguration, canonical key name)
//!  availability: connector ─► operative    (ChangeAvailability; absent = operative)
//!  auth:         the Local Authorization List and the Authorization Cache (AuthState)
//! ```
//!
//! Each crash point recovers from what the batches left behind:
//! - **Start stored / Start sent**: the record has no transactionId and the Start is still
//!   in `messages`: it is sent again (at least once, as §4.7 allows);
//! - **Start confirmed**: the batch that stores the transactionId in the record also
//!   deletes the Start, so a confirmed Start is never sent twice, and the Stop and
//!   MeterValues queued with the local id get the real one when they go out;
//! - **Stop stored / Stop sent**: the Stop is in `messages` and the record is `stopped`:
//!   the Stop is sent again and no second Stop can be made for the transaction;
//! - **Stop confirmed**: the batch deletes the Stop and the record together.
//!
//! [`MemoryJournal`] is the pure in-memory implementation used by the tests;
//! `crate::store::RedbJournal` keeps it in the node's redb store (one redb write
//! transaction per [`Journal::write`]), which the daemon's OCPP driver uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::messages::charge_point::{
    MeterValuesRequest, StartTransactionRequest, StopTransactionRequest,
};
use super::authorization::{AuthChange, AuthState};

/// The charge point's own id of a transaction, given when it starts: the provisional id
/// until the CSMS's transactionId is known.
pub type LocalTxId = u64;

/// The position of a message in the journal; messages go out in this order.
pub type Seq = u64;

/// A transaction the journal knows of: started, and not yet stopped and confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    /// The connector it runs on.
    pub connector: u32,
    /// The CSMS's transactionId, once the StartTransaction.conf gave it.
    pub transaction_id: Option<i32>,
    /// A StopTransaction has been stored for it.
    pub stopped: bool,
}

/// A transaction-related message waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxMessage {
    /// StartTransaction.req of transaction `local`.
    Start {
        /// The transaction.
        local: LocalTxId,
        /// The request, as sent.
        request: StartTransactionRequest,
    },
    /// StopTransaction.req of transaction `local`; its `transaction_id` is filled in when
    /// it is sent.
    Stop {
        /// The transaction.
        local: LocalTxId,
        /// The request, transactionId aside.
        request: StopTransactionRequest,
    },
    /// MeterValues.req of transaction `local`; its `transaction_id` is filled in when it
    /// is sent.
    MeterValues {
        /// The transaction.
        local: LocalTxId,
        /// The request, transactionId aside.
        request: MeterValuesRequest,
    },
}

impl TxMessage {
    /// The transaction the message belongs to.
    pub fn local(&self) -> LocalTxId {
        match self {
            Self::Start { local, .. }
            | Self::Stop { local, .. }
            | Self::MeterValues { local, .. } => *local,
        }
    }
}

/// One change within an atomic [`Journal::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalWrite {
    /// Stores or replaces a transaction record.
    PutTransaction(LocalTxId, TxRecord),
    /// Deletes a transaction record.
    DeleteTransaction(LocalTxId),
    /// Stores a message.
    PutMessage(Seq, TxMessage),
    /// Deletes a message.
    DeleteMessage(Seq),
    /// Stores the value of a configuration key, by its canonical name.
    PutSetting {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// Stores whether a connector (0: the whole charge point) is operative.
    PutAvailability {
        /// The connector.
        connector: u32,
        /// Operative (true) or Inoperative.
        operative: bool,
    },
    /// Changes the Local Authorization List or the Authorization Cache.
    Auth(AuthChange),
}

/// Everything a journal holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalState {
    /// The transactions not yet stopped and confirmed, by local id.
    pub transactions: BTreeMap<LocalTxId, TxRecord>,
    /// The unconfirmed messages, in sending order.
    pub messages: BTreeMap<Seq, TxMessage>,
    /// The configuration keys the CSMS changed, by canonical name.
    pub settings: BTreeMap<String, String>,
    /// The connectors whose availability was changed, and whether they are operative.
    pub availability: BTreeMap<u32, bool>,
    /// The Local Authorization List and the Authorization Cache.
    pub auth: AuthState,
}

impl JournalState {
    /// Applies one change.
    pub fn apply(&mut self, change: JournalWrite) {
        match change {
            JournalWrite::PutTransaction(local, record) => {
                self.transactions.insert(local, record);
            }
            JournalWrite::DeleteTransaction(local) => {
                self.transactions.remove(&local);
            }
            JournalWrite::PutMessage(seq, message) => {
                self.messages.insert(seq, message);
            }
            JournalWrite::DeleteMessage(seq) => {
                self.messages.remove(&seq);
            }
            JournalWrite::PutSetting { key, value } => {
                self.settings.insert(key, value);
            }
            JournalWrite::PutAvailability {
                connector,
                operative,
            } => {
                self.availability.insert(connector, operative);
            }
            JournalWrite::Auth(change) => self.auth.apply(change),
        }
    }
}

/// The journal could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction journal: {0}")]
pub struct JournalError(pub String);

/// Durable storage of a charge point's state; see the module docs.
pub trait Journal {
    /// Everything stored, as left by the last completed write.
    fn load(&self) -> Result<JournalState, JournalError>;

    /// Applies `changes` all together or not at all, durably before it returns.
    fn write(&mut self, changes: Vec<JournalWrite>) -> Result<(), JournalError>;
}

/// A journal in memory: for tests, and for a charge point that need not survive a
/// restart. Cloning it is what a restart sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryJournal {
    /// The contents.
    state: JournalState,
}

impl MemoryJournal {
    /// A journal holding `state`.
    pub fn new(state: JournalState) -> Self {
        Self { state }
    }
}

impl Journal for MemoryJournal {
    fn load(&self) -> Result<JournalState, JournalError> {
        Ok(self.state.clone())
    }

    fn write(&mut self, changes: Vec<JournalWrite>) -> Result<(), JournalError> {
        for change in changes {
            self.state.apply(change);
        }
        Ok(())
    }
}
