//! Latched faults through the Raft log (issue 7, S6): the faults the controllers raise
//! become latches in the replicated hub record, so that no crash, restart, leader change
//! or partition loses one.
//!
//! ```text
//!  control task ──LatchChange (mpsc)──► latch task: store it (redb, fsync)
//!                                          │  Outbox::poll ──► Cluster::write ──► Raft log
//!                                          └─ committed: delete it from the store
//! ```
//!
//! - Each change is stored before it is sent and deleted once committed: a node killed
//!   in between sends it again on its next start (see [`outbox`] for why that applies
//!   once).
//! - Clears are not sent from here: the leader clears a latch by its rule once this
//!   node's published conditions (`node/<node>/conditions`) have shown it gone for its
//!   hold (`ringhub_cluster::clearing`), and an operator clears the others. A clear by
//!   rule still stored from before the leader judged them goes out as it was.
//! - At start, the latches the record holds for this node's segments that need an
//!   operator are put back into the controllers ([`restore`]), so that a restart does not
//!   forget a weld and close the contactor again.

mod outbox;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringhub_cluster::faults::Scope;
use ringhub_cluster::record::{
    ClearError, ClearRule, ClientId, HubRecord, Latch, LatchSpec, LatchStatus, Outcome, Rejection,
    Severity,
};
use ringhub_cluster::service::Cluster;
use ringhub_proto::config::CabinetId;
use tokio::sync::{mpsc, watch};

pub use self::outbox::{Action, ChangeSeq, LatchChange, Outbox};
use crate::connector::{FaultCode, LocalFault};
use crate::store::{Store, StoreError};

/// How bad a controller's fault is, and how its latch may be cleared: as the fault
/// catalog says (a code missing from it would be latched for an operator to look at).
pub fn classify(code: FaultCode) -> (Severity, ClearRule) {
    ringhub_cluster::faults::spec(code.as_str())
        .map_or((Severity::Error, ClearRule::Operator), |spec| {
            (spec.severity, spec.clear)
        })
}

/// The change that latches a fault a controller raised.
pub fn raise_of(fault: &LocalFault, node: &CabinetId, now_unix_ms: u64) -> LatchChange {
    let (severity, clear_rule) = classify(fault.code);
    LatchChange::Raise(LatchSpec {
        evidence: fault.evidence.clone(),
        code: fault.code.as_str().to_owned(),
        subject: fault.subject.clone(),
        severity,
        detail: fault.detail.clone(),
        raised_by: node.clone(),
        raised_unix_ms: now_unix_ms,
        clear_rule,
    })
}

/// The latches of `node` that need an operator and are active in `record`, or raised in
/// `pending` and not cleared there: what its controllers must hold again after a start.
pub fn restore(
    record: &HubRecord,
    pending: &[(ChangeSeq, LatchChange)],
    node: &CabinetId,
) -> Vec<LocalFault> {
    let mut faults: Vec<LocalFault> = Vec::new();
    let mut add = |code: &str, subject: &str, detail: &str| {
        let Ok(code) = code.parse::<FaultCode>() else {
            return;
        };
        if code.needs_operator()
            && !faults
                .iter()
                .any(|f| f.code == code && f.subject == subject)
        {
            faults.push(LocalFault {
                evidence: Vec::new(),
                code,
                subject: subject.to_owned(),
                detail: format!("restored from the hub record: {detail}"),
                raised_at: Duration::ZERO,
            });
        }
    };
    for latch in record
        .active_latches()
        .filter(|l| l.spec.raised_by == *node)
    {
        add(&latch.spec.code, &latch.spec.subject, &latch.spec.detail);
    }
    for (_, change) in pending {
        if let LatchChange::Raise(spec) = change {
            add(&spec.code, &spec.subject, &spec.detail);
        }
    }
    faults
}

/// The active latch of `record` that holds the whole hub, or `node`'s whole cabinet
/// (`CABINET_LOST` of `cabinet <node>`): what connector 0 of its dispensers reports.
pub fn site_latch<'a>(record: &'a HubRecord, node: &CabinetId) -> Option<&'a Latch> {
    let cabinet = format!("cabinet {node}");
    record.active_latches().find(|l| {
        match ringhub_cluster::faults::spec(&l.spec.code).map(|s| s.scope) {
            Some(Scope::Hub) => true,
            Some(Scope::Cabinet) => l.spec.subject == cabinet,
            _ => false,
        }
    })
}

/// Whether `record` shows the latch of `code` on `subject` raised by `node` cleared by an
/// operator, with none active: the controller may let its local fault go.
pub fn cleared_by_operator(
    record: &HubRecord,
    node: &CabinetId,
    code: &str,
    subject: &str,
) -> bool {
    let mut ours =
        record.latches().values().rev().filter(|l| {
            l.spec.raised_by == *node && l.spec.code == code && l.spec.subject == subject
        });
    ours.next().is_some_and(|newest| {
        matches!(
            &newest.status,
            LatchStatus::Cleared {
                by: ringhub_cluster::record::Clearer::Operator { .. },
                ..
            }
        )
    })
}

/// Runs the outbox against the cluster until `shutdown`, then stores what the control
/// task still sends until it stops (see the module docs).
pub async fn run(
    cluster: Arc<Cluster>,
    store: Arc<Store>,
    node: CabinetId,
    boot_id: u64,
    pending: Vec<(ChangeSeq, LatchChange)>,
    mut changes: mpsc::UnboundedReceiver<LatchChange>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_seq = pending.last().map_or(1, |(seq, _)| seq + 1);
    let mut outbox = Outbox::new(ClientId(format!("{node}/{boot_id:016x}")));
    if !pending.is_empty() {
        tracing::info!(
            count = pending.len(),
            "sending latch changes stored before the restart"
        );
    }
    for (seq, change) in pending {
        outbox.push(seq, change);
    }
    let mut write: Option<std::pin::Pin<Box<dyn Future<Output = _> + Send>>> = None;
    loop {
        metrics::gauge!(crate::metrics::LATCHES_PENDING).set(outbox.len() as f64);
        if write.is_none() {
            match cluster.record().read(|r| outbox.poll(Instant::now(), r)) {
                Some(Action::Send(request)) => {
                    let cluster = cluster.clone();
                    write = Some(Box::pin(async move { cluster.write(request).await }));
                }
                Some(Action::Forget(seq)) => {
                    tracing::debug!(seq, "latch change needs no write");
                    forget(&store, seq).await;
                    continue;
                }
                None => {}
            }
        }
        let retry = outbox.poll_timeout();
        tokio::select! {
            result = async { write.as_mut().expect("guarded").await }, if write.is_some() => {
                write = None;
                match result {
                    Ok(outcome) => {
                        report(&outcome);
                        if let Some(seq) = outbox.handle_answer() {
                            forget(&store, seq).await;
                        }
                    }
                    Err(error) => {
                        metrics::counter!(crate::metrics::LATCH_WRITE_FAILURES).increment(1);
                        tracing::warn!(%error, "latch change not committed yet; retrying");
                        outbox.handle_failure(Instant::now());
                    }
                }
            }
            change = changes.recv() => {
                let Some(change) = change else { break };
                let seq = next_seq;
                next_seq += 1;
                if let Err(error) = keep(&store, seq, &change).await {
                    // Still sent: the record is the durable copy; only a crash before
                    // the commit could lose it now.
                    tracing::error!(%error, "could not store a latch change");
                }
                outbox.push(seq, change);
            }
            () = sleep_until(retry), if retry.is_some() => {}
            _ = shutdown.changed() => break,
        }
    }
    // A write in flight is dropped: its change stays stored and goes out on the next
    // start. Until the control task stops (it drops its sender then), what it still
    // raises or clears is stored the same way, so no change falls between the two (S6).
    drop(write);
    let mut stored = 0;
    while let Some(change) = changes.recv().await {
        if let Err(error) = keep(&store, next_seq, &change).await {
            tracing::error!(%error, "could not store a latch change at shutdown");
        }
        next_seq += 1;
        stored += 1;
    }
    if stored > 0 {
        tracing::info!(
            stored,
            "latch changes stored at shutdown, to send on the next start"
        );
    }
    metrics::gauge!(crate::metrics::LATCHES_PENDING).set((outbox.len() + stored) as f64);
}

/// Logs what the record did with a change.
fn report(outcome: &Outcome) {
    match outcome {
        Outcome::Applied(applied) => tracing::info!(?applied, "latch change committed"),
        Outcome::Rejected(Rejection::Clear(ClearError::NeedsOperator { id, code })) => {
            tracing::info!(%id, %code, "latch stays until an operator clears it");
        }
        Outcome::Rejected(rejection) => {
            metrics::counter!(crate::metrics::LATCHES_REFUSED).increment(1);
            tracing::warn!(%rejection, "the hub record refused a latch change");
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn keep(store: &Arc<Store>, seq: ChangeSeq, change: &LatchChange) -> Result<(), StoreError> {
    let (store, change) = (store.clone(), change.clone());
    tokio::task::spawn_blocking(move || store.put_latch_change(seq, &change))
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Io {
                path: std::path::PathBuf::new(),
                action: "store task failed",
                source: std::io::Error::other(e.to_string()),
            })
        })
}

async fn forget(store: &Arc<Store>, seq: ChangeSeq) {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.remove_latch_change(seq)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, seq, "could not delete a sent latch change"),
        Err(error) => tracing::error!(%error, "store task failed"),
    }
}

#[cfg(test)]
mod tests {
    use ringhub_cluster::record::{Clearer, ClientId, Command, Request, Topology};
    use ringhub_proto::config::HubConfig;

    use super::*;

    fn cab(name: &str) -> CabinetId {
        CabinetId::new(name).expect("cabinet id")
    }

    fn fault(code: FaultCode, subject: &str) -> LocalFault {
        LocalFault {
            evidence: Vec::new(),
            code,
            subject: subject.into(),
            detail: "seen".into(),
            raised_at: Duration::ZERO,
        }
    }

    fn apply(record: &mut HubRecord, serial: u64, command: Command) -> Outcome {
        record.apply(&Request {
            client: ClientId("test".into()),
            serial,
            command,
        })
    }

    fn raise(record: &mut HubRecord, serial: u64, node: &str, code: FaultCode, subject: &str) {
        let LatchChange::Raise(spec) = raise_of(&fault(code, subject), &cab(node), 1) else {
            panic!("a raise");
        };
        apply(record, serial, Command::RaiseLatch(spec));
    }

    #[test]
    fn every_code_reads_back_from_its_name() {
        for code in FaultCode::ALL {
            assert_eq!(code.as_str().parse::<FaultCode>(), Ok(code));
        }
        assert!("WELDED".parse::<FaultCode>().is_err());
    }

    #[test]
    fn every_code_needing_an_operator_is_critical_and_operator_cleared() {
        for code in FaultCode::ALL {
            let (severity, rule) = classify(code);
            assert_eq!(code.needs_operator(), rule == ClearRule::Operator, "{code}");
            if code.needs_operator() {
                assert_eq!(severity, Severity::Critical, "{code}");
            }
        }
    }

    #[test]
    fn a_latch_carries_the_faults_evidence_into_the_record() {
        let mut record = HubRecord::new(Topology::from_config(&HubConfig::demo()));
        let tripped = LocalFault {
            evidence: vec![ringhub_cluster::record::Evidence::tenths(
                "tie_current",
                81.24,
                "A",
            )],
            ..fault(FaultCode::OpenUnderLoad, "segment 1 mn")
        };
        let LatchChange::Raise(spec) = raise_of(&tripped, &cab("cab-a"), 1) else {
            panic!("a raise")
        };
        apply(&mut record, 1, Command::RaiseLatch(spec));
        let latch = record.latches().values().next().expect("latched");
        let evidence = &latch.spec.evidence;
        assert_eq!(
            (
                evidence[0].key.as_str(),
                evidence[0].value,
                evidence[0].unit.as_str()
            ),
            ("tie_current", 812, "dA")
        );
    }

    #[test]
    fn a_restart_restores_only_this_nodes_operator_latches() {
        let mut record = HubRecord::new(Topology::from_config(&HubConfig::demo()));
        raise(
            &mut record,
            1,
            "cab-a",
            FaultCode::ContactorWelded,
            "segment 0 gc",
        );
        raise(&mut record, 2, "cab-a", FaultCode::PlcSilent, "segment 1");
        raise(
            &mut record,
            3,
            "cab-b",
            FaultCode::ContactorWelded,
            "segment 2 gc",
        );
        let pending = [(
            9,
            raise_of(
                &fault(FaultCode::OpenUnderLoad, "segment 1 gc"),
                &cab("cab-a"),
                5,
            ),
        )];
        let restored = restore(&record, &pending, &cab("cab-a"));
        let got: Vec<_> = restored
            .iter()
            .map(|f| (f.code, f.subject.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (FaultCode::ContactorWelded, "segment 0 gc"),
                (FaultCode::OpenUnderLoad, "segment 1 gc"),
            ]
        );
    }

    #[test]
    fn only_a_latch_on_this_cabinet_or_the_hub_holds_its_dispensers() {
        let mut record = HubRecord::new(Topology::from_config(&HubConfig::demo()));
        let mut lost = |serial, subject: &str| {
            let LatchChange::Raise(mut spec) =
                raise_of(&fault(FaultCode::PlcSilent, subject), &cab("cab-a"), 1)
            else {
                panic!("a raise")
            };
            spec.code = "CABINET_LOST".into();
            apply(&mut record, serial, Command::RaiseLatch(spec));
        };
        lost(1, "cabinet cab-b");
        raise(&mut record, 2, "cab-a", FaultCode::PlcSilent, "segment 0");
        assert_eq!(
            site_latch(&record, &cab("cab-a")),
            None,
            "cab-b's, a segment's"
        );
        let held = site_latch(&record, &cab("cab-b")).expect("cab-b is held");
        assert_eq!(
            (held.spec.code.as_str(), held.spec.subject.as_str()),
            ("CABINET_LOST", "cabinet cab-b")
        );
    }

    #[test]
    fn an_operator_clear_shows_only_when_the_newest_latch_is_cleared_by_one() {
        let (node, code, subject) = (cab("cab-a"), "CONTACTOR_WELDED", "segment 0 gc");
        let mut record = HubRecord::new(Topology::from_config(&HubConfig::demo()));
        assert!(!cleared_by_operator(&record, &node, code, subject));
        raise(&mut record, 1, "cab-a", FaultCode::ContactorWelded, subject);
        assert!(!cleared_by_operator(&record, &node, code, subject));
        let id = record.active_latches().next().expect("latch").id;
        let by = Clearer::Operator {
            name: "ops".into(),
            reason: "replaced".into(),
        };
        apply(
            &mut record,
            2,
            Command::ClearLatch {
                id,
                by,
                at_unix_ms: 2,
            },
        );
        assert!(cleared_by_operator(&record, &node, code, subject));
        raise(&mut record, 3, "cab-a", FaultCode::ContactorWelded, subject);
        assert!(
            !cleared_by_operator(&record, &node, code, subject),
            "welded again"
        );
    }
}
