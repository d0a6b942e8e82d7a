//! The island manager's planner (issue 8): how to cut the ring into islands and share the
//! power modules between the guns, fairly and never unsafely. Pure: [`plan`] takes the
//! ring as it is now and returns the plan; it reads no clock and does no IO, so the leader
//! runs it on every relevant change and `ringhub plan` runs it on a file.
//!
//! ```text
//!   tie:   ok      ok      welded   absent   ok      ok  (back to seg 0)
//!   seg 0 ─── 1 ─────── 2 ══════ 3 ──╳── 4 ────── 5 ──────┐
//!   gun A     ·         gun B    ·        gun C   ·       │
//!   └─ island: A + modules of 0,1 ┘└ B: 2,3 ┘  └ C: 4,5 ─┘
//! ```
//!
//! - **Islands** are arcs of in-service segments joined by closed ties; at most one gun
//!   per island is energised (S2) and every module it connects is on the island (S1).
//!   Welded-closed ties keep their segments together, absent and stuck-open ties never
//!   close, out-of-service segments are in no island, and a segment welded to an
//!   out-of-service one is kept idle (its bus is the faulted one's). The planner never
//!   closes every tie of the ring: a closed loop lets current circulate through ties (S3).
//! - **Objective**: the active guns' grants sorted ascending are lexicographically as
//!   large as any valid plan can make them (max-min fairness; each gun capped by its
//!   demand and rating, and the site limit shared by water-filling, S8); among those, the
//!   plan that moves the fewest contactors (ties, module contactors, gun contactors) from
//!   the current one, so sessions are not reshuffled for nothing.
//! - **Search**: an exact dynamic programme over the ring (see `search`), checked against
//!   an exhaustive search on every small ring in the tests.

mod fairness;
pub mod from_record;
mod ring;
mod search;
pub mod what_if;

#[cfg(test)]
mod exhaustive;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use ringhub_proto::config::{GunId, ModuleId, SegmentId};

use crate::record::{Epoch, Island, Plan, Watts};

pub use fairness::water_fill;

/// What a tie can do, as the island manager knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieState {
    /// Fitted and obeying: the planner may open or close it.
    Ok,
    /// Not fitted: always open.
    Absent,
    /// Commanded closed, stayed open: never closed again until repaired.
    StuckOpen,
    /// Commanded open, stayed closed: its two segments share an island (S9 latched).
    WeldedClosed,
}

/// A gun and what it asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GunDemand {
    /// Its id.
    pub id: GunId,
    /// Its rating: never granted more.
    pub max: Watts,
    /// What its EV asks for now; zero when idle.
    pub demand: Watts,
}

impl GunDemand {
    /// What the gun could use: its demand within its rating.
    pub fn want(&self) -> Watts {
        self.demand.min(self.max)
    }
}

/// A power module and what it can give now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModulePower {
    /// Its id.
    pub id: ModuleId,
    /// Its power after derating; zero when it is faulted or gone.
    pub available: Watts,
}

/// One segment of the ring, in ring order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInput {
    /// Its id.
    pub id: SegmentId,
    /// False while a fault or a lost cabinet keeps it out of every island.
    pub in_service: bool,
    /// Its tie to the next segment around the ring.
    pub tie_to_next: TieState,
    /// Its gun, if fitted.
    pub gun: Option<GunDemand>,
    /// Its modules.
    pub modules: Vec<ModulePower>,
}

/// The contactors as the plan in force sets them: what a new plan should move least.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// The segments whose tie to the next is closed.
    pub closed_ties: BTreeSet<SegmentId>,
    /// Which gun holds each connected module.
    pub owners: BTreeMap<ModuleId, GunId>,
    /// The guns energised (their island serves them).
    pub energised: BTreeSet<GunId>,
}

impl Current {
    /// The contactors as `planned` leaves them: the plan in force for the next one.
    pub fn of_planned(planned: &Planned) -> Self {
        Self {
            closed_ties: planned.closed_ties.clone(),
            owners: planned
                .islands
                .iter()
                .filter_map(|i| i.gun.map(|g| (i, g)))
                .flat_map(|(i, g)| i.modules.iter().map(move |&m| (m, g)))
                .collect(),
            energised: planned.islands.iter().filter_map(|i| i.gun).collect(),
        }
    }

    /// The contactors as `plan` sets them.
    pub fn of_plan(plan: &Plan) -> Self {
        Self {
            closed_ties: plan.closed_ties(),
            owners: plan.owners(),
            energised: plan.islands.iter().filter_map(|i| i.gun).collect(),
        }
    }
}

/// Everything the planner looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerInput {
    /// The most the site may draw (S8).
    pub site_limit: Watts,
    /// The ring, in order: segment i's tie joins it to segment i + 1, the last one's back
    /// to the first.
    pub segments: Vec<SegmentInput>,
    /// The plan in force.
    pub current: Current,
}

/// One island of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedIsland {
    /// Its segments in ring order, each joined to the next by a closed tie.
    pub segments: Vec<SegmentId>,
    /// The gun it energises, if any.
    pub gun: Option<GunId>,
    /// The modules it connects to that gun.
    pub modules: Vec<ModuleId>,
    /// The power granted to the gun.
    pub granted: Watts,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The islands of in-service segments, in ring order.
    pub islands: Vec<PlannedIsland>,
    /// The segments whose tie to the next is closed (welded ones included).
    pub closed_ties: BTreeSet<SegmentId>,
    /// What every gun with demand is granted (zero for one that cannot be served).
    pub grants: BTreeMap<GunId, Watts>,
    /// How many contactors differ from the plan in force.
    pub changes: u32,
}

impl Planned {
    /// The active guns' grants, ascending: the vector the planner maximises.
    pub fn fairness_vector(&self) -> Vec<Watts> {
        let mut grants: Vec<Watts> = self.grants.values().copied().collect();
        grants.sort();
        grants
    }

    /// The plan epoch `epoch` that carries this plan out: its islands, and every segment
    /// not in one (out of service) alone and idle.
    pub fn to_plan(&self, input: &PlannerInput, epoch: Epoch, reason: String, now_ms: u64) -> Plan {
        let mut islands: Vec<(usize, Island)> = self
            .islands
            .iter()
            .map(|island| {
                let first = position(input, island.segments[0]);
                let island = Island {
                    segments: island.segments.clone(),
                    gun: island.gun,
                    modules: island.modules.clone(),
                    budget: island.granted,
                };
                (first, island)
            })
            .collect();
        let planned: BTreeSet<SegmentId> = self
            .islands
            .iter()
            .flat_map(|i| i.segments.iter().copied())
            .collect();
        for (at, segment) in input.segments.iter().enumerate() {
            if !planned.contains(&segment.id) {
                islands.push((
                    at,
                    Island {
                        segments: vec![segment.id],
                        gun: None,
                        modules: Vec::new(),
                        budget: Watts(0),
                    },
                ));
            }
        }
        islands.sort_by_key(|(at, _)| *at);
        Plan {
            epoch,
            islands: islands.into_iter().map(|(_, island)| island).collect(),
            reason,
            proposed_unix_ms: now_ms,
        }
    }
}

fn position(input: &PlannerInput, id: SegmentId) -> usize {
    input
        .segments
        .iter()
        .position(|s| s.id == id)
        .unwrap_or(usize::MAX)
}

/// The plan for `input`: see the module docs.
pub fn plan(input: &PlannerInput) -> Planned {
    let ring = ring::Ring::new(input);
    let choice = search::best(&ring);
    ring.planned(&choice)
}
