//! The storage against openraft's own conformance suite, then what the suite does not
//! cover: surviving a reopen, and refusing a corrupt value.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite, blank_ent};
use openraft::{EntryPayload, RaftLogReader, StorageError, Vote};
use ringhub_proto::config::HubConfig;

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

fn ring() -> Topology {
    Topology::from_config(&HubConfig::demo())
}

/// A fresh store per suite test.
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new("suite");
        let (log, sm) = open(&dir.file(), ring()).expect("open");
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
async fn the_log_vote_and_record_survive_a_reopen() {
    let dir = TempDir::new("reopen");
    {
        let (mut log, mut sm) = open(&dir.file(), ring()).expect("open");
        log.save_vote(&Vote::new(3, 1)).await.expect("vote");
        let mut entries = vec![blank_ent::<TypeConfig>(1, 1, 1)];
        for i in 2..=3 {
            let mut entry = blank_ent::<TypeConfig>(1, 1, i);
            entry.payload = EntryPayload::Normal(latch_request(i));
            entries.push(entry);
        }
        log.blocking_append(entries.clone())
            .await
            .expect("append, flushed");
        let outcomes = sm.apply(entries).await.expect("apply");
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes[0].is_none(), "a blank entry answers nothing");
        assert!(outcomes[1].is_some());
    }
    let (mut log, mut sm) = open(&dir.file(), ring()).expect("reopen");
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
    let entries = log.try_get_log_entries(2..=3).await.expect("entries");
    assert_eq!(entries.len(), 2);
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied.map(|l| l.index), Some(3));
    assert_eq!(sm.reader().read(|r| r.latches().len()), 2);
}

#[test]
fn a_corrupt_record_is_refused_naming_it() {
    let dir = TempDir::new("corrupt");
    drop(open(&dir.file(), ring()).expect("create"));
    {
        let db = redb::Database::open(dir.file()).expect("open raw");
        let txn = db.begin_write().expect("write");
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("raft_sm"))
            .expect("table")
            .insert("applied", b"{not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }
    let error = open(&dir.file(), ring()).expect_err("corrupt");
    let message = error.to_string();
    assert!(message.contains("raft_sm applied"), "{message}");
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
}

#[test]
fn a_truncated_file_is_refused_not_reset() {
    let dir = TempDir::new("truncated");
    drop(open(&dir.file(), ring()).expect("create"));
    std::fs::write(dir.file(), b"").expect("truncate");
    let message = open(&dir.file(), ring())
        .expect_err("empty file")
        .to_string();
    assert!(message.contains("empty"), "{message}");
    let len = std::fs::metadata(dir.file()).expect("still there").len();
    assert_eq!(len, 0, "nothing was written into it");
}
