//! The storage against openraft's own conformance suite, then what the suite does not
//! cover: surviving a reopen (the log, the vote, the committed index and the snapshot;
//! the record is rebuilt from them as openraft does at start), and refusing a corrupt
//! value.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite, blank_ent};
use openraft::{EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageError, Vote};

use super::*;
use crate::record::{ClientId, Command, LatchSpec, Request};
use crate::types::{NodeId, TypeConfig};

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ringhub-raft-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("raft.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh store per suite test.
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new("suite");
        let (log, sm) = open(&dir.file()).expect("open");
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}

fn latch_request(serial: u64) -> Request {
    Request {
        client: ClientId("cab-a/1".into()),
        serial,
        command: Command::RaiseLatch(LatchSpec {
            evidence: Vec::new(),
            code: "CONTACTOR_WELDED".into(),
            subject: format!("segment {serial} gc"),
            severity: crate::record::Severity::Critical,
            detail: "test".into(),
            raised_by: "cab-a".parse().unwrap(),
            raised_unix_ms: serial,
            clear_rule: crate::record::ClearRule::Operator,
        }),
    }
}

#[tokio::test]
async fn the_log_vote_committed_index_and_snapshot_survive_a_reopen() {
    let dir = TempDir::new("reopen");
    let mut entries = vec![blank_ent::<TypeConfig>(1, 1, 1)];
    for i in 2..=5 {
        let mut entry = blank_ent::<TypeConfig>(1, 1, i);
        entry.payload = EntryPayload::Normal(latch_request(i));
        entries.push(entry);
    }
    {
        let (mut log, mut sm) = open(&dir.file()).expect("open");
        log.save_vote(&Vote::new(3, 1)).await.expect("vote");
        log.blocking_append(entries.clone())
            .await
            .expect("append, flushed");
        let outcomes = sm.apply(entries[..3].to_vec()).await.expect("apply");
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes[0].is_none(), "a blank entry answers nothing");
        assert!(outcomes[1].is_some());
        // A snapshot at index 3, then two more entries applied and committed.
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        sm.apply(entries[3..].to_vec()).await.expect("apply");
        log.save_committed(Some(entries[4].log_id))
            .await
            .expect("committed");
        // A durable write after it, as an append or a vote would be.
        log.save_vote(&Vote::new(3, 1)).await.expect("vote");
    }
    let (mut log, mut sm) = open(&dir.file()).expect("reopen");
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id.map(|l| l.index), Some(5));
    // The record starts from the snapshot...
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied.map(|l| l.index), Some(3));
    assert_eq!(sm.reader().read(|r| r.latches().len()), 2);
    // ...and openraft re-applies the committed log after it.
    let committed = log.read_committed().await.expect("committed");
    assert_eq!(committed.map(|l| l.index), Some(5));
    let rest = log.try_get_log_entries(4..=5).await.expect("entries");
    sm.apply(rest).await.expect("re-apply");
    assert_eq!(sm.reader().read(|r| r.latches().len()), 4);
}

#[test]
fn a_corrupt_record_is_refused_naming_it() {
    let dir = TempDir::new("corrupt");
    drop(open(&dir.file()).expect("create"));
    {
        let db = redb::Database::open(dir.file()).expect("open raw");
        let txn = db.begin_write().expect("write");
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("raft_sm"))
            .expect("table")
            .insert("snapshot", b"{not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }
    let error = open(&dir.file()).expect_err("corrupt");
    let message = error.to_string();
    assert!(message.contains("raft_sm snapshot"), "{message}");
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
}

#[test]
fn a_truncated_file_is_refused_not_reset() {
    let dir = TempDir::new("truncated");
    drop(open(&dir.file()).expect("create"));
    std::fs::write(dir.file(), b"").expect("truncate");
    let message = open(&dir.file()).expect_err("empty file").to_string();
    assert!(message.contains("empty"), "{message}");
    let len = std::fs::metadata(dir.file()).expect("still there").len();
    assert_eq!(len, 0, "nothing was written into it");
}
