//! Carrying out the committed plan on this node's segments, and reporting it (issue 7,
//! "Node loss and partitions"; DESIGN.md §4).
//!
//! - While the node is joined (`lease::Standing::Joined`), each new epoch's budgets go to the
//!   guns' controllers and its island parts to the segments (`islands`); once every
//!   segment has carried its part out (ties as the plan wants them, donors' guns off),
//!   the node reports its ties as their feedback shows them and the epoch it reached.
//!   The leader gives nothing new before every node has reached the epoch in force
//!   (break before make, `ringhub_cluster::handover`).
//! - While degraded, the node applies nothing new: it charges on with the budgets it has,
//!   which the majority keeps in reserve for it (S7, S8); every segment is alone, its
//!   donors ramp down and its ties open.
//! - A segment of this node that the record holds out of service as lost keeps its
//!   reserve as its budget: that is what the majority counted it may draw.
//!
//! [`budgets`] and [`tie_observation`] are pure; [`report_loop`] writes the reports.

use std::sync::Arc;
use std::time::Duration;

use ringhub_cluster::record::{ClientId, Command, Epoch, HubRecord, Request, TieObservation};
use ringhub_cluster::service::Cluster;
use ringhub_cluster::steward::lost_reason;
use ringhub_proto::config::{CabinetId, SegmentId};
use ringhub_proto::units::Kilowatts;
use tokio::sync::watch;

use crate::connector::ContactorView;

/// The budget of the gun on each of `node`'s segments in the record's plan (see the
/// module docs); segments without a gun are left out.
pub fn budgets(record: &HubRecord, node: &CabinetId) -> Vec<(SegmentId, Kilowatts)> {
    let lost = lost_reason(node);
    record
        .topology()
        .segments
        .iter()
        .filter(|s| s.cabinet == *node)
        .filter_map(|s| {
            let gun = s.gun?;
            let out = record
                .snapshot()
                .segments
                .get(&s.id)
                .and_then(|state| state.out_of_service.as_ref());
            let watts = match out {
                Some(out) if out.reason == lost => out.reserved.0,
                _ => record
                    .plan()
                    .and_then(|p| p.islands.iter().find(|i| i.gun == Some(gun)))
                    .map_or(0, |i| i.budget.0),
            };
            // Budgets are whole watts, far below 2^53: exact as f64.
            Some((s.id, Kilowatts(watts as f64 / 1000.0)))
        })
        .collect()
}

/// What a tie's command and feedback say; `unmade`: the plan wanted it closed and its
/// two sides never matched (see [`crate::connector::TIE_MAKE_TIMEOUT`]), so the planner
/// should not count on it until it is seen open again.
pub fn tie_observation(view: &ContactorView, unmade: bool) -> TieObservation {
    if unmade && !view.closed {
        return TieObservation::StuckOpen;
    }
    match (view.commanded, view.closed) {
        (false, false) => TieObservation::Open,
        (true, true) => TieObservation::Closed,
        (false, true) => TieObservation::WeldedClosed,
        (true, false) => TieObservation::StuckOpen,
    }
}

/// What the node tells the record after applying an epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The epoch it reached.
    pub epoch: Epoch,
    /// Its fitted ties as their feedback shows them.
    pub ties: Vec<(SegmentId, TieObservation)>,
    /// Why it reports now, for the log.
    pub why: &'static str,
}

/// How long a failed report waits before it is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// Writes each report handed over on `reports` (ties first, then the epoch), retrying a
/// failed write until it succeeds or a newer report replaces it, until `shutdown`. A
/// write in flight is dropped on `shutdown`: a report is not durable, the next start
/// reports again.
pub async fn report_loop(
    cluster: Arc<Cluster>,
    node: CabinetId,
    boot_id: u64,
    mut reports: watch::Receiver<Option<Report>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = ClientId(format!("reports@{node}/{boot_id:016x}"));
    let mut serial = 0;
    loop {
        tokio::select! {
            changed = reports.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let Some(report) = reports.borrow_and_update().clone() else {
            continue;
        };
        let commands = report
            .ties
            .iter()
            .map(|&(segment, observed)| Command::ObserveTie { segment, observed })
            .chain(std::iter::once(Command::ReportEpoch {
                node: node.clone(),
                epoch: report.epoch,
            }));
        'report: for command in commands {
            serial += 1;
            let request = Request {
                client: client.clone(),
                serial,
                command,
            };
            loop {
                let written = tokio::select! {
                    written = cluster.write(request.clone()) => written,
                    _ = shutdown.changed() => return,
                };
                match written {
                    Ok(outcome) => {
                        tracing::debug!(?outcome, "report committed");
                        break;
                    }
                    Err(error) => tracing::debug!(%error, "report not committed; retrying"),
                }
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    _ = shutdown.changed() => return,
                }
                if reports.has_changed().unwrap_or(false) {
                    break 'report;
                }
            }
        }
        tracing::info!(
            epoch = report.epoch.0,
            why = report.why,
            "reported the epoch reached"
        );
    }
}

#[cfg(test)]
mod tests {
    use ringhub_cluster::demand::{DemandBook, Ratings};
    use ringhub_cluster::record::{OutOfService, Topology, Watts};
    use ringhub_cluster::steward::fair_plan;
    use ringhub_proto::config::HubConfig;

    use super::*;

    fn cab(name: &str) -> CabinetId {
        CabinetId::new(name).expect("cabinet id")
    }

    fn apply(record: &mut HubRecord, serial: u64, command: Command) {
        let outcome = record.apply(&Request {
            client: ClientId("test".into()),
            serial,
            command,
        });
        assert!(
            matches!(outcome, ringhub_cluster::record::Outcome::Applied(_)),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_node_takes_its_guns_budgets_and_a_lost_one_keeps_its_reserve() {
        let mut record = HubRecord::new(Topology::from_config(&HubConfig::demo()));
        assert_eq!(
            budgets(&record, &cab("cab-b")),
            [
                (SegmentId(2), Kilowatts(0.0)),
                (SegmentId(3), Kilowatts(0.0))
            ],
            "the initial plan grants nothing"
        );
        let mut book = DemandBook::new(Ratings::from_config(&HubConfig::demo()));
        // Guns 0 to 3 ask 200 kW each: their modules give 100 kW, the site 400 kW.
        for gun in 0..4 {
            book.assume(ringhub_proto::config::GunId(gun), Watts(200_000));
        }
        let plan = fair_plan(&record, &book, Epoch(1), 1);
        apply(&mut record, 1, Command::CommitPlan(plan));
        assert_eq!(
            budgets(&record, &cab("cab-b")),
            [
                (SegmentId(2), Kilowatts(100.0)),
                (SegmentId(3), Kilowatts(100.0))
            ]
        );
        apply(
            &mut record,
            2,
            Command::SetOutOfService {
                segment: SegmentId(2),
                out: Some(OutOfService {
                    reason: lost_reason(&cab("cab-b")),
                    reserved: Watts(100_000),
                    reports_before: 0,
                }),
            },
        );
        let plan = fair_plan(&record, &book, Epoch(2), 2);
        apply(&mut record, 3, Command::CommitPlan(plan));
        let got = budgets(&record, &cab("cab-b"));
        assert_eq!(got[0], (SegmentId(2), Kilowatts(100.0)), "its reserve");
        assert_eq!(got[1], (SegmentId(3), Kilowatts(100.0)), "(400 - 100) / 3");
    }

    #[test]
    fn tie_feedback_against_its_command() {
        let view = |commanded, closed| ContactorView {
            commanded,
            closed,
            faulted: false,
        };
        assert_eq!(
            tie_observation(&view(false, false), false),
            TieObservation::Open
        );
        assert_eq!(
            tie_observation(&view(true, true), false),
            TieObservation::Closed
        );
        assert_eq!(
            tie_observation(&view(false, true), false),
            TieObservation::WeldedClosed
        );
        assert_eq!(
            tie_observation(&view(true, false), false),
            TieObservation::StuckOpen
        );
        assert_eq!(
            tie_observation(&view(false, false), true),
            TieObservation::StuckOpen,
            "never matched"
        );
    }
}
