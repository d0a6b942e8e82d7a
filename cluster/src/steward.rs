//! The leader's steward (issue 7, "Node loss and partitions"): what the Raft leader writes
//! to the record on its own. Pure: [`Steward::poll`] takes the time, the record and the
//! cabinets whose liveliness tokens are seen, and returns the next command to commit.
//!
//! - **Ring**: when the leader's hub config grows the ring (cabinets added), the new ring
//!   goes into the log first; the rest follows on it (cabinets are made voters by the
//!   service, see `service.rs`).
//! - **Loss**: a cabinet whose token is gone has its in-service segments taken out of
//!   service as `<cabinet> lost`, each keeping in reserve the budget its gun had: that
//!   node may charge on in degraded mode with it (S7), so no one else may be granted it
//!   (S8). A cabinet that had reported before is latched `CABINET_LOST`, cleared by its
//!   rule once it has rejoined.
//! - **Plan**: the planner's plan (`planner`), from the record and the demand book
//!   (`demand`): max-min fair budgets for the guns that ask, within the site limit less
//!   what lost cabinets keep, out-of-service segments idle. A change commits the next
//!   epoch; one that raises some budgets goes in two epochs, break-before-make: first
//!   every budget that falls (and none that rises), then, once every node in service has
//!   reported reaching that, the rises (S8 holds whichever nodes apply which epoch
//!   first). The leader's first plan is committed even if it grants nothing yet.
//! - **Faults**: a segment with a latched fault that makes it unsafe to share goes out of
//!   service, and back once the fault is cleared (see `isolation`).
//! - **Return**: a cabinet seen again rejoins only once the lease and the PLC watchdog
//!   have passed since it was lost (its PLCs have opened what they held, S7), it has
//!   reported since it was taken out (the record keeps its report count from then), at
//!   the epoch in force, and its ties read open as the plan wants.
//!
//! Nothing is marked lost during a grace period after the steward starts (a new leader
//! has not seen every token yet). A steward that finds segments out of service as lost
//! without having seen the loss itself (a new leader) waits the hold time from then.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ringhub_proto::config::{CabinetId, SegmentId};

use crate::demand::DemandBook;
use crate::handover;
use crate::planner;
use crate::record::{
    ClearRule, Clearer, Command, Epoch, Evidence, HubRecord, Island, Latch, LatchSpec,
    OutOfService, Plan, SegmentSpec, TieObservation, Topology, Watts,
};

/// The reason that marks a segment out of service because its cabinet is lost.
pub fn lost_reason(cabinet: &CabinetId) -> String {
    format!("{cabinet} lost")
}

/// The code of the latch a lost cabinet raises: the steward raises and clears it.
pub const LOST_CODE: &str = "CABINET_LOST";

/// The subject of a lost cabinet's latch.
fn lost_subject(cabinet: &CabinetId) -> String {
    format!("cabinet {cabinet}")
}

/// A cabinet the steward has seen lost.
#[derive(Debug, Clone, Copy)]
struct Lost {
    /// When the loss was seen (or, for a new leader, first found in the record).
    since: Instant,
}

/// See the module docs.
#[derive(Debug)]
pub struct Steward {
    /// The ring of this leader's hub config.
    ring: Topology,
    /// Lease plus PLC watchdog: how long after a loss its neighbourhood stays untouched.
    hold: Duration,
    /// Before this, nothing is marked lost.
    grace_until: Instant,
    /// Cabinets lost or not yet rejoined.
    lost: BTreeMap<CabinetId, Lost>,
    /// The leader it runs on, which raises and clears `CABINET_LOST`.
    me: CabinetId,
}

impl Steward {
    /// A steward that starts at `now`, on the leader `me` whose hub config has `ring`.
    pub fn new(
        now: Instant,
        ring: Topology,
        hold: Duration,
        grace: Duration,
        me: CabinetId,
    ) -> Self {
        Self {
            ring,
            hold,
            grace_until: now + grace,
            lost: BTreeMap::new(),
            me,
        }
    }

    /// The next moment after `now` when [`Self::poll`] may have something new without
    /// any input changing (the grace or a hold ends).
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let holds = self.lost.values().map(|l| l.since + self.hold);
        std::iter::once(self.grace_until)
            .chain(holds)
            .filter(|&at| at > now)
            .min()
    }

    /// The next command to commit, or `None` when the record is as it should be.
    pub fn poll(
        &mut self,
        now: Instant,
        record: &HubRecord,
        alive: &BTreeSet<CabinetId>,
        book: &DemandBook,
        now_unix_ms: u64,
    ) -> Option<Command> {
        if *record.topology() != self.ring && self.ring.extends(record.topology()).is_ok() {
            return Some(Command::SetTopology(self.ring.clone()));
        }
        if now < self.grace_until {
            return None;
        }
        let cabinets: BTreeSet<&CabinetId> = record
            .topology()
            .segments
            .iter()
            .map(|s| &s.cabinet)
            .collect();
        for cabinet in cabinets {
            let command = if alive.contains(cabinet) {
                self.returning(now, record, cabinet, now_unix_ms)
            } else {
                self.gone(now, record, cabinet, now_unix_ms)
            };
            if command.is_some() {
                return command;
            }
        }
        if let Some(command) = crate::isolation::poll(record, alive) {
            return Some(command);
        }
        let current = record.plan()?;
        let desired = fair_plan(record, book, Epoch(current.epoch.0 + 1), now_unix_ms);
        // Nothing was granted before the first plan: no step needed.
        if current.epoch == Epoch(0) {
            return Some(Command::CommitPlan(desired));
        }
        if desired.islands == current.islands {
            return None;
        }
        // Break before make: what the desired plan takes away (ties it opens, modules it
        // moves, budgets that fall) goes first, in a plan that gives nothing. It is safe
        // beside any earlier epoch, so it goes at once: a node slow to report does not
        // hold up a fall (a tripped module, a session ended).
        let states = &record.snapshot().segments;
        let lower = handover::lowered(record.topology(), states, current, &desired);
        let reached = reached_everywhere(record, current.epoch);
        if lower.islands != current.islands && !(reached && same_shape(&lower, current)) {
            return Some(Command::CommitPlan(lower));
        }
        // What gives (a tie closed, a module handed over, a budget raised) waits until
        // every node in service has reached the epoch in force, so that any two epochs
        // nodes may hold keep S1, S2 and S8. Budgets alone may fall and rise in one step.
        if !reached {
            return None;
        }
        let limit = planner::from_record::input(record, book).site_limit;
        Some(Command::CommitPlan(transition_step(
            current, &desired, limit,
        )))
    }

    /// A cabinet without its token: its in-service segments go out of service, then, if
    /// it had ever reported, it is latched lost.
    fn gone(
        &mut self,
        now: Instant,
        record: &HubRecord,
        cabinet: &CabinetId,
        now_unix_ms: u64,
    ) -> Option<Command> {
        self.lost
            .entry(cabinet.clone())
            .or_insert(Lost { since: now });
        let reports = record.snapshot().reports.get(cabinet).copied().unwrap_or(0);
        if let Some(segment) =
            segments_of(record, cabinet).find(|s| out_of_service(record, s.id).is_none())
        {
            return Some(Command::SetOutOfService {
                segment: segment.id,
                out: Some(OutOfService {
                    reason: lost_reason(cabinet),
                    reserved: budget_of(record, segment.id),
                    reports_before: reports,
                }),
            });
        }
        if reports == 0 || lost_latch(record, cabinet).is_some() {
            return None;
        }
        let reserved: u64 = segments_of(record, cabinet)
            .filter_map(|s| out_of_service(record, s.id))
            .map(|o| o.reserved.0)
            .sum();
        let spec = crate::faults::spec(LOST_CODE)?;
        Some(Command::RaiseLatch(LatchSpec {
            code: LOST_CODE.into(),
            subject: lost_subject(cabinet),
            severity: spec.severity,
            detail: format!(
                "no liveliness token from {cabinet}: its segments are out of service, \
                 their budgets kept in reserve"
            ),
            evidence: vec![
                Evidence {
                    key: "reserved".into(),
                    value: i64::try_from(reserved).unwrap_or(i64::MAX),
                    unit: "W".into(),
                },
                Evidence {
                    key: "plan_epoch".into(),
                    value: i64::try_from(record.epoch().0).unwrap_or(i64::MAX),
                    unit: String::new(),
                },
            ],
            raised_by: self.me.clone(),
            raised_unix_ms: now_unix_ms,
            clear_rule: spec.clear,
        }))
    }

    /// Clears `cabinet`'s lost latch by its rule, if it has one that its rule may clear.
    fn clear_lost(
        &self,
        record: &HubRecord,
        cabinet: &CabinetId,
        now_unix_ms: u64,
    ) -> Option<Command> {
        let latch = lost_latch(record, cabinet)?;
        (latch.spec.clear_rule != ClearRule::Operator).then(|| Command::ClearLatch {
            id: latch.id,
            by: Clearer::Rule {
                node: self.me.clone(),
                reason: format!(
                    "{cabinet} is back: it reported {}, its ties read open and its segments are in service",
                    record.epoch()
                ),
            },
            at_unix_ms: now_unix_ms,
        })
    }

    /// A cabinet with its token: if it was lost, it rejoins when ready.
    fn returning(
        &mut self,
        now: Instant,
        record: &HubRecord,
        cabinet: &CabinetId,
        now_unix_ms: u64,
    ) -> Option<Command> {
        let reason = lost_reason(cabinet);
        let marked: Vec<(SegmentId, u64)> = segments_of(record, cabinet)
            .filter_map(|s| out_of_service(record, s.id).map(|o| (s.id, o)))
            .filter(|(_, o)| o.reason == reason)
            .map(|(id, o)| (id, o.reports_before))
            .collect();
        let reports = record.snapshot().reports.get(cabinet).copied().unwrap_or(0);
        let lost = match self.lost.get(cabinet) {
            Some(lost) => *lost,
            // Back in before this leader saw it (an earlier leader put it back).
            None if marked.is_empty() => return self.clear_lost(record, cabinet, now_unix_ms),
            // Marked by an earlier leader: wait the hold from now.
            None => *self
                .lost
                .entry(cabinet.clone())
                .or_insert(Lost { since: now }),
        };
        let reported_since = marked.iter().all(|&(_, before)| reports > before);
        let ready = now >= lost.since + self.hold
            && reported_since
            && record.snapshot().reached.get(cabinet) == Some(&record.epoch())
            && ties_open(record, cabinet);
        if !ready {
            return None;
        }
        match marked.first() {
            Some(&(segment, _)) => Some(Command::SetOutOfService { segment, out: None }),
            None => {
                self.lost.remove(cabinet);
                self.clear_lost(record, cabinet, now_unix_ms)
            }
        }
    }
}

/// `cabinet`'s active lost latch.
fn lost_latch<'a>(record: &'a HubRecord, cabinet: &CabinetId) -> Option<&'a Latch> {
    let subject = lost_subject(cabinet);
    record
        .active_latches()
        .find(|l| l.spec.code == LOST_CODE && l.spec.subject == subject)
}

fn segments_of<'a>(
    record: &'a HubRecord,
    cabinet: &'a CabinetId,
) -> impl Iterator<Item = &'a SegmentSpec> {
    record
        .topology()
        .segments
        .iter()
        .filter(move |s| s.cabinet == *cabinet)
}

/// Why `segment` is out of service, if it is.
pub(crate) fn out_of_service(record: &HubRecord, segment: SegmentId) -> Option<&OutOfService> {
    record
        .snapshot()
        .segments
        .get(&segment)
        .and_then(|s| s.out_of_service.as_ref())
}

/// The budget the plan in force grants the gun on `segment`.
pub(crate) fn budget_of(record: &HubRecord, segment: SegmentId) -> Watts {
    let gun = record.topology().segment(segment).and_then(|s| s.gun);
    record
        .plan()
        .and_then(|p| p.islands.iter().find(|i| i.gun.is_some() && i.gun == gun))
        .map_or(Watts(0), |i| i.budget)
}

/// Every fitted tie of `cabinet` reads open, as the plan wants.
fn ties_open(record: &HubRecord, cabinet: &CabinetId) -> bool {
    segments_of(record, cabinet)
        .filter(|s| s.tie_fitted)
        .all(|s| {
            record
                .snapshot()
                .segments
                .get(&s.id)
                .and_then(|state| state.tie)
                == Some(TieObservation::Open)
        })
}

/// The next epoch on the way from `current` to `desired`, break-before-make for budgets:
/// every budget that falls falls now; one that rises rises now only as far as the power
/// `limit` leaves when each gun is counted at the larger of its two budgets, so that S8
/// holds whichever nodes apply which of the two epochs first. What does not fit rises in
/// a later epoch, once the falls are in force everywhere. `desired` itself when
/// everything fits.
pub fn transition_step(current: &Plan, desired: &Plan, limit: Watts) -> Plan {
    let old = budgets_of(current);
    // Before any rise, the larger of each gun's two budgets is its old one.
    let held: u64 = old.values().map(|b| b.0).sum();
    let mut headroom = limit.0.saturating_sub(held);
    let islands: Vec<Island> = desired
        .islands
        .iter()
        .map(|island| {
            let Some(gun) = island.gun else {
                return island.clone();
            };
            let before = old.get(&gun).copied().unwrap_or_default();
            let budget = if island.budget <= before {
                island.budget
            } else {
                let rise = (island.budget.0 - before.0).min(headroom);
                headroom -= rise;
                Watts(before.0 + rise)
            };
            Island {
                budget,
                ..island.clone()
            }
        })
        .collect();
    if islands == desired.islands {
        return desired.clone();
    }
    Plan {
        islands,
        reason: format!(
            "{} (falls first, rises as the limit allows)",
            desired.reason
        ),
        ..desired.clone()
    }
}

/// The two plans differ in budgets only.
fn same_shape(a: &Plan, b: &Plan) -> bool {
    a.islands.len() == b.islands.len()
        && a.islands
            .iter()
            .zip(&b.islands)
            .all(|(x, y)| (&x.segments, x.gun, &x.modules) == (&y.segments, y.gun, &y.modules))
}

/// Each served gun's budget in `plan`.
fn budgets_of(plan: &Plan) -> BTreeMap<ringhub_proto::config::GunId, Watts> {
    plan.islands
        .iter()
        .filter_map(|i| i.gun.map(|g| (g, i.budget)))
        .collect()
}

/// Every cabinet with a segment in service has reported reaching `epoch`.
fn reached_everywhere(record: &HubRecord, epoch: Epoch) -> bool {
    record
        .topology()
        .segments
        .iter()
        .filter(|s| out_of_service(record, s.id).is_none())
        .all(|s| {
            record
                .snapshot()
                .reached
                .get(&s.cabinet)
                .is_some_and(|r| *r >= epoch)
        })
}

/// The planner's plan for epoch `epoch` of `record` (see the module docs).
pub fn fair_plan(record: &HubRecord, book: &DemandBook, epoch: Epoch, now_unix_ms: u64) -> Plan {
    let input = planner::from_record::input(record, book);
    let planned = planner::plan(&input);
    let served = planned.islands.iter().filter(|i| i.gun.is_some()).count();
    let mut reason = format!("max-min fair: {served} gun(s) served");
    let out: Vec<String> = record
        .topology()
        .segments
        .iter()
        .filter_map(|s| out_of_service(record, s.id).map(|o| format!("{} ({})", s.id, o.reason)))
        .collect();
    if !out.is_empty() {
        reason.push_str(&format!("; out of service: {}", out.join(", ")));
    }
    planned.to_plan(&input, epoch, reason, now_unix_ms)
}

#[cfg(test)]
mod tests {
    use ringhub_proto::config::HubConfig;

    use super::*;
    use crate::record::{Applied, ClientId, Outcome, Request};

    const HOLD: Duration = Duration::from_millis(2_000);
    const GRACE: Duration = Duration::from_millis(1_000);

    fn cab(name: &str) -> CabinetId {
        CabinetId::new(name).expect("cabinet id")
    }

    fn demo_ring() -> Topology {
        Topology::from_config(&HubConfig::demo())
    }

    fn all() -> BTreeSet<CabinetId> {
        ["cab-a", "cab-b", "cab-c"].into_iter().map(cab).collect()
    }

    /// A book where every gun of `ring` (rated 500 kW, modules 50 kW) asks 200 kW.
    fn everyone_asking(ring: &Topology) -> DemandBook {
        let ratings = crate::demand::Ratings {
            guns: ring
                .segments
                .iter()
                .filter_map(|s| s.gun)
                .map(|g| (g, Watts(500_000)))
                .collect(),
            modules: ring
                .segments
                .iter()
                .flat_map(|s| s.modules.iter().map(|&m| (m, Watts(50_000))))
                .collect(),
        };
        let mut book = DemandBook::new(ratings);
        for gun in ring.segments.iter().filter_map(|s| s.gun) {
            book.assume(gun, Watts(200_000));
        }
        book
    }

    /// A record, what the guns ask, and the requests the steward and the nodes made.
    struct Hub {
        record: HubRecord,
        book: DemandBook,
        serial: u64,
    }

    impl Hub {
        /// The demo hub (400 kW, six guns of 100 kW of modules each), every gun asking.
        fn new() -> Self {
            Self::with_limit(demo_ring().site_limit)
        }

        fn with_limit(site_limit: Watts) -> Self {
            let ring = Topology {
                site_limit,
                ..demo_ring()
            };
            Self {
                book: everyone_asking(&ring),
                record: HubRecord::new(ring),
                serial: 0,
            }
        }

        fn apply(&mut self, client: &str, command: Command) -> Outcome {
            self.serial += 1;
            self.record.apply(&Request {
                client: ClientId(client.into()),
                serial: self.serial,
                command,
            })
        }

        /// Commits what the steward asks until it is content; the commands, in order.
        fn settle(
            &mut self,
            steward: &mut Steward,
            now: Instant,
            alive: &BTreeSet<CabinetId>,
        ) -> Vec<Command> {
            let mut done = Vec::new();
            while let Some(command) = steward.poll(now, &self.record, alive, &self.book, 1) {
                let outcome = self.apply("steward", command.clone());
                assert!(
                    matches!(outcome, Outcome::Applied(_)),
                    "{command:?}: {outcome:?}"
                );
                done.push(command);
                assert!(done.len() < 20, "the steward does not settle: {done:?}");
            }
            done
        }

        /// What a node reports after applying the plan in force: its ties, then its epoch.
        fn report(&mut self, node: &str, tie: TieObservation) {
            let segments: Vec<SegmentId> = segments_of(&self.record, &cab(node))
                .map(|s| s.id)
                .collect();
            for segment in segments {
                self.apply(
                    node,
                    Command::ObserveTie {
                        segment,
                        observed: tie,
                    },
                );
            }
            let epoch = self.record.epoch();
            assert!(matches!(
                self.apply(
                    node,
                    Command::ReportEpoch {
                        node: cab(node),
                        epoch
                    }
                ),
                Outcome::Applied(Applied::Reached(_))
            ));
        }

        fn out(&self, segment: u16) -> Option<&OutOfService> {
            out_of_service(&self.record, SegmentId(segment))
        }

        fn budgets(&self) -> Vec<u64> {
            let plan = self.record.plan().expect("plan");
            plan.islands.iter().map(|i| i.budget.0).collect()
        }
    }

    #[test]
    fn a_grown_ring_goes_into_the_log_first_and_the_plan_places_its_segments() {
        let (mut hub, t0) = (Hub::new(), Instant::now());
        let mut grown = demo_ring();
        let mut added = grown.segments[5].clone();
        added.id = SegmentId(6);
        added.cabinet = cab("cab-d");
        added.gun = Some(ringhub_proto::config::GunId(6));
        added.modules = vec![
            ringhub_proto::config::ModuleId(12),
            ringhub_proto::config::ModuleId(13),
        ];
        grown.segments.push(added);
        hub.book = everyone_asking(&grown);
        let mut steward = Steward::new(t0, grown.clone(), HOLD, GRACE, cab("cab-a"));
        assert_eq!(
            steward.poll(t0, &hub.record, &all(), &hub.book, 1),
            Some(Command::SetTopology(grown.clone())),
            "even in the grace period"
        );
        let mut with_d = all();
        with_d.insert(cab("cab-d"));
        hub.settle(&mut steward, t0 + GRACE, &with_d);
        assert_eq!(hub.record.topology(), &grown);
        let plan = hub.record.plan().expect("plan");
        assert_eq!(plan.islands.len(), 7);
        assert_eq!(
            hub.budgets(),
            vec![hub.record.topology().site_limit.0 / 7; 7]
        );
        // A leader whose config has the old, smaller ring does not shrink it.
        let mut old = Steward::new(t0, demo_ring(), HOLD, GRACE, cab("cab-a"));
        assert!(hub.settle(&mut old, t0 + GRACE, &with_d).is_empty());
    }

    #[test]
    fn the_first_plan_gives_every_asking_gun_its_own_modules_and_a_fair_share() {
        let (mut hub, t0) = (Hub::new(), Instant::now());
        let mut steward = Steward::new(t0, demo_ring(), HOLD, GRACE, cab("cab-a"));
        assert_eq!(
            steward.poll(t0, &hub.record, &all(), &hub.book, 1),
            None,
            "grace"
        );
        let done = hub.settle(&mut steward, t0 + GRACE, &all());
        assert_eq!(done.len(), 1, "{done:?}");
        let plan = hub.record.plan().expect("plan");
        assert_eq!(plan.epoch, Epoch(1));
        assert!(plan.closed_ties().is_empty(), "ties open");
        let limit = hub.record.topology().site_limit.0;
        assert_eq!(hub.budgets(), vec![limit / 6; 6]);
        for island in &plan.islands {
            let spec = hub
                .record
                .topology()
                .segment(island.segments[0])
                .expect("segment");
            assert_eq!(island.gun, spec.gun);
            assert_eq!(island.modules, spec.modules);
        }
        assert!(
            hub.settle(&mut steward, t0 + GRACE, &all()).is_empty(),
            "content"
        );
    }

    #[test]
    fn budgets_follow_demand_and_a_new_gun_rises_as_the_others_fall() {
        let t0 = Instant::now();
        let ring = Topology {
            site_limit: Watts(150_000),
            ..demo_ring()
        };
        let mut hub = Hub {
            book: DemandBook::new(crate::demand::Ratings::from_config(&HubConfig::demo())),
            record: HubRecord::new(ring.clone()),
            serial: 0,
        };
        let mut steward = Steward::new(t0, ring.clone(), HOLD, GRACE, cab("cab-a"));
        let t1 = t0 + GRACE;
        assert_eq!(
            hub.settle(&mut steward, t1, &all()).len(),
            1,
            "the first plan"
        );
        assert_eq!(hub.budgets(), vec![0; 6], "nobody asks");
        // Gun 0 asks: it gets what its modules give.
        hub.book = everyone_asking(&Topology {
            segments: ring.segments[..1].to_vec(),
            ..ring.clone()
        });
        assert!(
            hub.settle(&mut steward, t1, &all()).is_empty(),
            "epoch 1 is not applied yet"
        );
        for node in ["cab-a", "cab-b", "cab-c"] {
            hub.report(node, TieObservation::Open);
        }
        assert_eq!(hub.settle(&mut steward, t1, &all()).len(), 1, "room for it");
        assert_eq!(hub.budgets()[0], 100_000);
        for node in ["cab-a", "cab-b", "cab-c"] {
            hub.report(node, TieObservation::Open);
        }
        // Gun 2 asks too: 150 kW are shared 75/75; gun 0 falls to 75 and gun 2 gets the
        // 50 kW left beside gun 0's old 100, then the rest once that is applied.
        hub.book = everyone_asking(&Topology {
            segments: vec![ring.segments[0].clone(), ring.segments[2].clone()],
            ..ring.clone()
        });
        assert_eq!(hub.settle(&mut steward, t1, &all()).len(), 1);
        assert_eq!(
            hub.budgets()[..3],
            [75_000, 0, 50_000],
            "what fits beside the old budgets"
        );
        assert!(
            hub.settle(&mut steward, t1, &all()).is_empty(),
            "nodes have not applied it"
        );
        for node in ["cab-a", "cab-b", "cab-c"] {
            hub.report(node, TieObservation::Open);
        }
        assert_eq!(hub.settle(&mut steward, t1, &all()).len(), 1);
        assert_eq!(hub.budgets()[..3], [75_000, 0, 75_000]);
    }

    #[test]
    fn a_node_slow_to_report_holds_up_rises_but_not_falls() {
        let t0 = Instant::now();
        let ring = Topology {
            site_limit: Watts(150_000),
            ..demo_ring()
        };
        let both = Topology {
            segments: vec![ring.segments[0].clone(), ring.segments[2].clone()],
            ..ring.clone()
        };
        let mut hub = Hub {
            book: everyone_asking(&both),
            record: HubRecord::new(ring.clone()),
            serial: 0,
        };
        let mut steward = Steward::new(t0, ring.clone(), HOLD, GRACE, cab("cab-a"));
        let t1 = t0 + GRACE;
        hub.settle(&mut steward, t1, &all());
        assert_eq!(hub.budgets()[..3], [75_000, 0, 75_000]);
        // Gun 2's session ends; cab-c has not reported the epoch in force.
        for node in ["cab-a", "cab-b"] {
            hub.report(node, TieObservation::Open);
        }
        hub.book = everyone_asking(&Topology {
            segments: ring.segments[..1].to_vec(),
            ..ring.clone()
        });
        assert_eq!(hub.settle(&mut steward, t1, &all()).len(), 1, "the fall");
        assert_eq!(hub.budgets()[..3], [75_000, 0, 0], "gun 0's rise waits");
        assert!(hub.settle(&mut steward, t1, &all()).is_empty());
        for node in ["cab-a", "cab-b", "cab-c"] {
            hub.report(node, TieObservation::Open);
        }
        assert_eq!(hub.settle(&mut steward, t1, &all()).len(), 1, "the rise");
        assert_eq!(hub.budgets()[..3], [100_000, 0, 0]);
    }

    #[test]
    fn a_lost_cabinet_is_taken_out_keeping_its_budget_and_rejoins_only_when_safe() {
        let (mut hub, t0) = (Hub::new(), Instant::now());
        let mut steward = Steward::new(t0, demo_ring(), HOLD, GRACE, cab("cab-a"));
        let t1 = t0 + GRACE;
        hub.settle(&mut steward, t1, &all());
        for node in ["cab-a", "cab-b", "cab-c"] {
            hub.report(node, TieObservation::Open);
        }
        let limit = hub.record.topology().site_limit.0;
        let share = limit / 6;

        // cab-b (segments 2 and 3) is gone.
        let mut without_b = all();
        without_b.remove(&cab("cab-b"));
        let done = hub.settle(&mut steward, t1, &without_b);
        assert_eq!(
            done.len(),
            4,
            "two segments out, a latch, one plan: {done:?}"
        );
        let lost: Vec<&Latch> = hub.record.active_latches().collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(
            (lost[0].spec.code.as_str(), lost[0].spec.subject.as_str()),
            ("CABINET_LOST", "cabinet cab-b")
        );
        assert_eq!(
            lost[0].spec.evidence[0].value,
            2 * share as i64,
            "reserved W"
        );
        for segment in [2, 3] {
            let out = hub.out(segment).expect("out of service");
            assert_eq!(out.reason, "cab-b lost");
            assert_eq!(out.reserved, Watts(share), "keeps what it may still draw");
        }
        let plan = hub.record.plan().expect("plan");
        assert_eq!(plan.epoch, Epoch(2));
        let budgets = hub.budgets();
        assert_eq!((budgets[2], budgets[3]), (0, 0), "idle in the plan");
        let granted: u64 = budgets.iter().sum();
        assert!(granted + 2 * share <= limit, "S8 with the reserve");
        // What cab-b's guns had goes to the others once the two others applied that.
        for node in ["cab-a", "cab-c"] {
            hub.report(node, TieObservation::Open);
        }
        assert_eq!(hub.settle(&mut steward, t1, &without_b).len(), 1);
        assert_eq!(hub.budgets()[0], (limit - 2 * share) / 4);
        for node in ["cab-a", "cab-c"] {
            hub.report(node, TieObservation::Open);
        }

        // Its report from before the loss does not count; one made since, with a tie
        // that reads closed, does not do either, nor does any before the hold passed.
        let t2 = t1 + Duration::from_millis(500);
        assert!(
            hub.settle(&mut steward, t2, &all()).is_empty(),
            "no report since"
        );
        hub.report("cab-b", TieObservation::Closed);
        assert!(hub.settle(&mut steward, t2, &all()).is_empty());
        assert_eq!(steward.poll_timeout(t2), Some(t1 + HOLD));
        let t3 = t1 + HOLD;
        assert!(
            hub.settle(&mut steward, t3, &all()).is_empty(),
            "a tie reads closed"
        );
        hub.report("cab-b", TieObservation::Open);
        assert!(hub.settle(&mut steward, t2, &all()).is_empty(), "the hold");
        // Its ties read open at the epoch in force: it rejoins, and the plan shares again.
        hub.report("cab-b", TieObservation::Open);
        let done = hub.settle(&mut steward, t3, &all());
        assert_eq!(
            done.len(),
            4,
            "two segments back, the latch cleared, one plan: {done:?}"
        );
        assert!(hub.out(2).is_none() && hub.out(3).is_none());
        let Some(Command::ClearLatch {
            by: Clearer::Rule { node, reason },
            ..
        }) = done
            .iter()
            .find(|c| matches!(c, Command::ClearLatch { .. }))
        else {
            panic!("the latch cleared by rule: {done:?}");
        };
        assert_eq!(node, &cab("cab-a"));
        assert!(reason.starts_with("cab-b is back"), "{reason}");
        assert_eq!(hub.record.active_latches().count(), 0);
        // The reserve is free again: its guns' shares fit beside the others' at once.
        assert_eq!(hub.budgets(), vec![share; 6]);
    }

    #[test]
    fn a_module_with_an_active_latch_gives_nothing_until_it_clears() {
        let mut hub = Hub::new();
        let module = ringhub_proto::config::ModuleId(3);
        let planned = |hub: &Hub| fair_plan(&hub.record, &hub.book, Epoch(9), 1).owners();
        assert!(planned(&hub).contains_key(&module), "every module serves");
        let hot = LatchSpec {
            code: "MODULE_OVERTEMP".into(),
            subject: "module 3".into(),
            severity: crate::record::Severity::Error,
            detail: "96 °C".into(),
            evidence: Vec::new(),
            raised_by: cab("cab-a"),
            raised_unix_ms: 1,
            clear_rule: ClearRule::ConditionGone { hold_ms: 10_000 },
        };
        let Outcome::Applied(Applied::Latched { id, .. }) =
            hub.apply("cab-a", Command::RaiseLatch(hot))
        else {
            panic!("latched");
        };
        assert!(
            !planned(&hub).contains_key(&module),
            "derated while latched"
        );
        let cleared = Command::ClearLatch {
            id,
            by: Clearer::Rule {
                node: cab("cab-a"),
                reason: "cooled".into(),
            },
            at_unix_ms: 2,
        };
        assert!(matches!(hub.apply("steward", cleared), Outcome::Applied(_)));
        assert!(planned(&hub).contains_key(&module), "back once cleared");
    }

    #[test]
    fn budgets_fall_before_they_rise_so_any_mix_of_two_epochs_keeps_s8() {
        // 300 kW for six guns of 100 kW: each change of who is in service moves budgets.
        let (mut hub, t0) = (Hub::with_limit(Watts(300_000)), Instant::now());
        let mut steward =
            Steward::new(t0, hub.record.topology().clone(), HOLD, GRACE, cab("cab-a"));
        let t1 = t0 + GRACE;
        hub.settle(&mut steward, t1, &all());
        let limit = hub.record.topology().site_limit.0;
        let mut plans = vec![hub.record.plan().expect("plan").clone()];
        let mut take = |hub: &mut Hub, steward: &mut Steward, reason: &str| {
            hub.apply(
                "cab-a",
                Command::SetOutOfService {
                    segment: SegmentId(0),
                    out: (reason == "out").then(|| OutOfService {
                        reason: "CONTACTOR_WELDED".into(),
                        reserved: Watts(0),
                        reports_before: 0,
                    }),
                },
            );
            for _ in 0..3 {
                hub.settle(steward, t1, &all());
                for node in ["cab-a", "cab-b", "cab-c"] {
                    hub.report(node, TieObservation::Open);
                }
                let plan = hub.record.plan().expect("plan").clone();
                if plans.last() != Some(&plan) {
                    plans.push(plan);
                }
            }
        };
        take(&mut hub, &mut steward, "out");
        take(&mut hub, &mut steward, "back");
        assert!(
            plans.len() >= 5,
            "each change went in two epochs: {}",
            plans.len()
        );
        for pair in plans.windows(2) {
            let budget = |plan: &Plan, gun| {
                plan.islands
                    .iter()
                    .find(|i| i.gun == Some(gun))
                    .map_or(0, |i| i.budget.0)
            };
            let worst: u64 = (0..6)
                .map(ringhub_proto::config::GunId)
                .map(|gun| budget(&pair[0], gun).max(budget(&pair[1], gun)))
                .sum();
            assert!(
                worst <= limit,
                "epochs {} -> {}: {worst} W if each node keeps the larger",
                pair[0].epoch,
                pair[1].epoch
            );
        }
    }

    #[test]
    fn a_segment_out_for_a_weld_stays_out_when_its_cabinet_returns() {
        let (mut hub, t0) = (Hub::new(), Instant::now());
        let mut steward = Steward::new(t0, demo_ring(), HOLD, GRACE, cab("cab-a"));
        let t1 = t0 + GRACE;
        hub.apply(
            "cab-a",
            Command::SetOutOfService {
                segment: SegmentId(0),
                out: Some(OutOfService {
                    reason: "CONTACTOR_WELDED".into(),
                    reserved: Watts(0),
                    reports_before: 0,
                }),
            },
        );
        hub.settle(&mut steward, t1, &all());
        assert_eq!(hub.budgets()[0], 0);
        let mut without_a = all();
        without_a.remove(&cab("cab-a"));
        hub.settle(&mut steward, t1, &without_a);
        hub.report("cab-a", TieObservation::Open);
        hub.settle(&mut steward, t1 + HOLD, &all());
        hub.report("cab-a", TieObservation::Open);
        hub.settle(&mut steward, t1 + HOLD, &all());
        assert_eq!(
            hub.out(0).map(|o| o.reason.as_str()),
            Some("CONTACTOR_WELDED")
        );
        assert!(hub.out(1).is_none(), "segment 1 rejoined");
    }

    #[test]
    fn a_new_leader_finding_a_lost_cabinet_waits_the_hold_from_its_start() {
        let (mut hub, t0) = (Hub::new(), Instant::now());
        let mut first = Steward::new(t0, demo_ring(), HOLD, GRACE, cab("cab-a"));
        let t1 = t0 + GRACE;
        let mut without_c = all();
        without_c.remove(&cab("cab-c"));
        hub.settle(&mut first, t1, &without_c);
        assert!(hub.out(4).is_some());
        // Leadership moves; cab-c is back and reports.
        let t2 = t1 + HOLD * 3;
        let mut second = Steward::new(t2, demo_ring(), HOLD, GRACE, cab("cab-a"));
        let t3 = t2 + GRACE;
        hub.settle(&mut second, t3, &all());
        hub.report("cab-c", TieObservation::Open);
        assert!(
            hub.settle(&mut second, t3, &all()).is_empty(),
            "holds from its own start"
        );
        hub.report("cab-c", TieObservation::Open);
        let done = hub.settle(&mut second, t3 + HOLD, &all());
        assert!(!done.is_empty());
        assert!(hub.out(4).is_none() && hub.out(5).is_none());
    }

    #[test]
    fn a_shared_island_is_cut_before_a_newcomer_gets_its_modules_back() {
        use ringhub_proto::config::GunId;
        let (t0, ring) = (Instant::now(), demo_ring());
        let mut hub = Hub {
            book: DemandBook::new(crate::demand::Ratings::from_config(&HubConfig::demo())),
            record: HubRecord::new(ring.clone()),
            serial: 0,
        };
        let mut steward = Steward::new(t0, ring, HOLD, GRACE, cab("cab-a"));
        let t1 = t0 + GRACE;
        let everyone_reports = |hub: &mut Hub| {
            for node in ["cab-a", "cab-b", "cab-c"] {
                hub.report(node, TieObservation::Open);
            }
        };
        hub.settle(&mut steward, t1, &all());
        everyone_reports(&mut hub);
        // Gun 1 alone asks 300 kW: it grows over its neighbours' modules.
        hub.book.assume(GunId(1), Watts(300_000));
        assert_eq!(hub.settle(&mut steward, t1, &all()).len(), 1);
        let shared = hub.record.plan().expect("plan").clone();
        let island = shared
            .islands
            .iter()
            .find(|i| i.gun == Some(GunId(1)))
            .expect("gun 1 served");
        assert_eq!((island.segments.len(), island.budget), (3, Watts(300_000)));
        let donor = island
            .segments
            .iter()
            .copied()
            .find(|&s| s != SegmentId(1))
            .expect("a donor");
        everyone_reports(&mut hub);
        // The donor's own gun asks: first the cut, which gives nothing...
        hub.book.assume(GunId(donor.0), Watts(100_000));
        assert_eq!(hub.settle(&mut steward, t1, &all()).len(), 1);
        let cut = hub.record.plan().expect("plan").clone();
        assert!(handover::gives_nothing(&shared, &cut), "{cut:?}");
        assert!(
            cut.islands
                .iter()
                .any(|i| i.segments.contains(&donor) && i.gun.is_none()),
            "the donor's segment cut off and idle: {cut:?}"
        );
        assert!(
            hub.settle(&mut steward, t1, &all()).is_empty(),
            "nothing is given before every node has reached the cut"
        );
        // ...then, once reached, the make: the newcomer is served on its own segment.
        everyone_reports(&mut hub);
        assert_eq!(hub.settle(&mut steward, t1, &all()).len(), 1);
        let made = hub.record.plan().expect("plan");
        let newcomer = made
            .islands
            .iter()
            .find(|i| i.gun == Some(GunId(donor.0)))
            .expect("the newcomer served");
        assert!(newcomer.budget >= Watts(100_000), "{made:?}");
    }

    /// A plan granting `budgets[i]` to gun `i` on segment `i` alone (0: no gun).
    fn plan_of(budgets: &[u64]) -> Plan {
        Plan {
            epoch: Epoch(1),
            islands: budgets
                .iter()
                .enumerate()
                .map(|(i, &b)| Island {
                    segments: vec![SegmentId(i as u16)],
                    gun: (b > 0).then_some(ringhub_proto::config::GunId(i as u16)),
                    modules: Vec::new(),
                    budget: Watts(b),
                })
                .collect(),
            reason: String::new(),
            proposed_unix_ms: 0,
        }
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_step_keeps_s8_for_any_mix_and_the_steps_reach_the_desired_plan(
            (current, desired, limit) in (1usize..8).prop_flat_map(|n| (
                proptest::collection::vec(0u64..200, n),
                proptest::collection::vec(0u64..200, n),
                300u64..1200,
            ))
        ) {
            // Both ends keep S8 on their own, as the record checks.
            let fit = |b: &[u64]| {
                let total: u64 = b.iter().sum();
                let scale = |x: u64| if total > limit { x * limit / total } else { x };
                b.iter().map(|&x| scale(x)).collect::<Vec<u64>>()
            };
            let (current, desired) = (fit(&current), fit(&desired));
            let mut from = plan_of(&current);
            let to = plan_of(&desired);
            for _ in 0..3 {
                let step = transition_step(&from, &to, Watts(limit));
                let worst: u64 = from
                    .islands
                    .iter()
                    .zip(&step.islands)
                    .map(|(a, b)| a.budget.0.max(b.budget.0))
                    .sum();
                prop_assert!(worst <= limit, "{worst} W over {limit} W");
                if step.islands == to.islands {
                    return Ok(());
                }
                from = step;
            }
            prop_assert!(false, "not there in three epochs");
        }
    }
}
