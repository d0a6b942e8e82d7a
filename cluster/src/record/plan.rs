//! Plan epochs: how the ring is cut into islands, which gun each serves, which modules it
//! holds and each gun's power budget (DESIGN.md §4), and the checks a plan must pass
//! before the record takes it: S1, S2 and S8, and the ring's shape.

use std::collections::{BTreeMap, BTreeSet};

use ringhub_proto::config::{GunId, ModuleId, SegmentId};
use serde::{Deserialize, Serialize};

use super::Watts;
use super::topology::{SegmentStates, Topology};

/// A plan's number: each committed plan is the previous one's plus one.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

/// A connected arc of the ring joined by closed ties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Island {
    /// Its segments in ring order, each joined to the next by its closed tie.
    pub segments: Vec<SegmentId>,
    /// The one gun it energises (S2); `None` for an idle island.
    pub gun: Option<GunId>,
    /// The modules the gun holds, all on segments of this island (S1).
    pub modules: Vec<ModuleId>,
    /// The power granted to the gun (S8).
    pub budget: Watts,
}

/// One plan epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Its number.
    pub epoch: Epoch,
    /// The islands; every segment is in exactly one.
    pub islands: Vec<Island>,
    /// Why it was made (`gun 3 plugged`, `cab-b lost`), for operators.
    pub reason: String,
    /// The leader's clock when it was proposed, Unix ms.
    pub proposed_unix_ms: u64,
}

/// Why a plan was refused; the record is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PlanError {
    /// Plans must follow one another.
    #[error("plan {got} does not follow {current}: expected epoch {}", current.0 + 1)]
    WrongEpoch {
        /// The epoch in force.
        current: Epoch,
        /// The epoch proposed.
        got: Epoch,
    },
    /// A segment the ring does not have.
    #[error("island {island}: no segment {segment} in the ring")]
    UnknownSegment {
        /// The island's index in the plan.
        island: usize,
        /// The segment.
        segment: SegmentId,
    },
    /// An island without segments.
    #[error("island {island} has no segment")]
    EmptyIsland {
        /// The island's index in the plan.
        island: usize,
    },
    /// A segment in two islands, or twice in one.
    #[error("segment {segment} is in more than one island")]
    SegmentTwice {
        /// The segment.
        segment: SegmentId,
    },
    /// A segment left out of every island.
    #[error("segment {segment} is in no island")]
    SegmentMissing {
        /// The segment.
        segment: SegmentId,
    },
    /// Two segments of an island not next to each other in ring order.
    #[error("island {island}: segment {to} does not follow segment {from} around the ring")]
    NotAnArc {
        /// The island's index in the plan.
        island: usize,
        /// The earlier segment.
        from: SegmentId,
        /// The segment that should follow it.
        to: SegmentId,
    },
    /// An island joined over a tie that is not fitted, or welded open.
    #[error("island {island}: the tie from segment {segment} cannot close ({why})")]
    TieUnusable {
        /// The island's index in the plan.
        island: usize,
        /// The tie's segment.
        segment: SegmentId,
        /// Not fitted, or stuck open.
        why: String,
    },
    /// S2: the island's gun is not on one of its segments.
    #[error("island {island}: gun {gun} is not on one of its segments (S2)")]
    GunOutside {
        /// The island's index in the plan.
        island: usize,
        /// The gun.
        gun: GunId,
    },
    /// S1: a module outside its island, twice, or held by no gun.
    #[error("island {island}: module {module} {why} (S1)")]
    ModuleMisplaced {
        /// The island's index in the plan.
        island: usize,
        /// The module.
        module: ModuleId,
        /// What is wrong.
        why: String,
    },
    /// A segment out of service in a shared island, or energised.
    #[error(
        "island {island}: segment {segment} is out of service ({reason}) and must stay alone and idle"
    )]
    OutOfService {
        /// The island's index in the plan.
        island: usize,
        /// The segment.
        segment: SegmentId,
        /// Why it is out of service.
        reason: String,
    },
    /// A budget for an island without a gun.
    #[error("island {island} grants {budget} without a gun")]
    BudgetWithoutGun {
        /// The island's index in the plan.
        island: usize,
        /// The budget.
        budget: Watts,
    },
    /// S8: more power granted (with what lost cabinets may still draw) than the site
    /// may draw.
    #[error(
        "the plan grants {granted} (with what lost cabinets keep), above the site limit of {limit} (S8)"
    )]
    OverSiteLimit {
        /// The sum of the budgets.
        granted: Watts,
        /// The site limit.
        limit: Watts,
    },
}

impl Plan {
    /// Checks the plan against the ring, the segments' states and the epoch in force.
    pub fn check(
        &self,
        topology: &Topology,
        states: &SegmentStates,
        current: Epoch,
    ) -> Result<(), PlanError> {
        if self.epoch.0 != current.0 + 1 {
            return Err(PlanError::WrongEpoch {
                current,
                got: self.epoch,
            });
        }
        let mut seen_segments = BTreeSet::new();
        let mut seen_modules = BTreeSet::new();
        let mut granted = Watts(0);
        for (index, island) in self.islands.iter().enumerate() {
            check_shape(index, island, topology, states, &mut seen_segments)?;
            check_gun_and_modules(index, island, topology, &mut seen_modules)?;
            granted = Watts(granted.0.saturating_add(island.budget.0));
        }
        if let Some(missing) = topology
            .segments
            .iter()
            .find(|s| !seen_segments.contains(&s.id))
        {
            return Err(PlanError::SegmentMissing {
                segment: missing.id,
            });
        }
        let reserved: u64 = states
            .values()
            .filter_map(|s| s.out_of_service.as_ref())
            .map(|out| out.reserved.0)
            .sum();
        let granted = Watts(granted.0.saturating_add(reserved));
        if granted > topology.site_limit {
            return Err(PlanError::OverSiteLimit {
                granted,
                limit: topology.site_limit,
            });
        }
        Ok(())
    }

    /// The ties this plan closes: the tie of every segment whose successor is in the
    /// same island after it.
    pub fn closed_ties(&self) -> BTreeSet<SegmentId> {
        self.islands
            .iter()
            .flat_map(|island| island.segments.windows(2).map(|pair| pair[0]))
            .collect()
    }

    /// The gun that holds each module.
    pub fn owners(&self) -> BTreeMap<ModuleId, GunId> {
        self.islands
            .iter()
            .filter_map(|island| island.gun.map(|gun| (island, gun)))
            .flat_map(|(island, gun)| island.modules.iter().map(move |&m| (m, gun)))
            .collect()
    }

    /// The plan every hub starts from: each segment its own island, ties open, no gun
    /// energised, nothing granted.
    pub fn initial(topology: &Topology) -> Self {
        Self {
            epoch: Epoch(0),
            islands: topology
                .segments
                .iter()
                .map(|s| Island {
                    segments: vec![s.id],
                    gun: None,
                    modules: Vec::new(),
                    budget: Watts(0),
                })
                .collect(),
            reason: "initial: every segment alone, ties open".into(),
            proposed_unix_ms: 0,
        }
    }
}

/// The island's segments: known, each in one island only, an arc over usable ties, and
/// an out-of-service segment alone and idle.
fn check_shape(
    index: usize,
    island: &Island,
    topology: &Topology,
    states: &SegmentStates,
    seen: &mut BTreeSet<SegmentId>,
) -> Result<(), PlanError> {
    if island.segments.is_empty() {
        return Err(PlanError::EmptyIsland { island: index });
    }
    for &segment in &island.segments {
        if topology.segment(segment).is_none() {
            return Err(PlanError::UnknownSegment {
                island: index,
                segment,
            });
        }
        if !seen.insert(segment) {
            return Err(PlanError::SegmentTwice { segment });
        }
        if let Some(out) = states.get(&segment).and_then(|s| s.out_of_service.as_ref())
            && (island.segments.len() > 1 || island.gun.is_some() || !island.modules.is_empty())
        {
            return Err(PlanError::OutOfService {
                island: index,
                segment,
                reason: out.reason.clone(),
            });
        }
    }
    for pair in island.segments.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        if topology.next(from) != Some(to) {
            return Err(PlanError::NotAnArc {
                island: index,
                from,
                to,
            });
        }
        let fitted = topology.segment(from).is_some_and(|s| s.tie_fitted);
        let stuck = states
            .get(&from)
            .is_some_and(|s| s.tie == Some(super::topology::TieObservation::StuckOpen));
        if !fitted || stuck {
            return Err(PlanError::TieUnusable {
                island: index,
                segment: from,
                why: if fitted { "stuck open" } else { "not fitted" }.into(),
            });
        }
    }
    Ok(())
}

/// S2 and S1: the gun on the island, each module on the island and held once, modules
/// and budget only with a gun.
fn check_gun_and_modules(
    index: usize,
    island: &Island,
    topology: &Topology,
    seen: &mut BTreeSet<ModuleId>,
) -> Result<(), PlanError> {
    if let Some(gun) = island.gun {
        let on = topology.segment_of_gun(gun);
        if on.is_none_or(|s| !island.segments.contains(&s)) {
            return Err(PlanError::GunOutside { island: index, gun });
        }
    } else if island.budget.0 > 0 {
        return Err(PlanError::BudgetWithoutGun {
            island: index,
            budget: island.budget,
        });
    }
    for &module in &island.modules {
        let misplaced = |why: &str| PlanError::ModuleMisplaced {
            island: index,
            module,
            why: why.into(),
        };
        if island.gun.is_none() {
            return Err(misplaced("is held by no gun"));
        }
        match topology.segment_of_module(module) {
            None => return Err(misplaced("does not exist")),
            Some(segment) if !island.segments.contains(&segment) => {
                return Err(misplaced("sits on a segment outside the island"));
            }
            Some(_) => {}
        }
        if !seen.insert(module) {
            return Err(misplaced("is held twice"));
        }
    }
    Ok(())
}
