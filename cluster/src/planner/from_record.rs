//! The planner's input on the leader: the ring and the segments' states from the record,
//! what the guns ask and the modules give from the demand book, and the plan in force.

use std::collections::BTreeSet;

use ringhub_proto::config::ModuleId;

use super::{Current, GunDemand, ModulePower, PlannerInput, SegmentInput, TieState};
use crate::demand::DemandBook;
use crate::record::{HubRecord, SegmentSpec, TieObservation, Watts};

/// The input for planning the next epoch of `record`.
///
/// The site limit is what is left after lost cabinets' reserves (S7, S8). A fitted tie is
/// planned as its nodes last saw it: welded closed (its two segments share an island,
/// S2), stuck open (never closed again until it reads open), or usable. A module with an
/// active latch (`module N`) gives nothing until the latch clears, by its rule after the
/// hold or by an operator: the catalog's derate lasts as long as the latch.
pub fn input(record: &HubRecord, book: &DemandBook) -> PlannerInput {
    let topology = record.topology();
    let latched: BTreeSet<ModuleId> = record
        .active_latches()
        .filter_map(|l| crate::isolation::module_of(&l.spec.subject))
        .collect();
    let reserved: u64 = record
        .snapshot()
        .segments
        .values()
        .filter_map(|s| s.out_of_service.as_ref())
        .map(|o| o.reserved.0)
        .sum();
    PlannerInput {
        site_limit: Watts(topology.site_limit.0.saturating_sub(reserved)),
        segments: topology
            .segments
            .iter()
            .map(|spec| SegmentInput {
                id: spec.id,
                in_service: crate::steward::out_of_service(record, spec.id).is_none(),
                tie_to_next: tie(record, spec),
                gun: spec.gun.map(|gun| GunDemand {
                    id: gun,
                    max: book.rating(gun),
                    demand: book.demand(gun),
                }),
                modules: spec
                    .modules
                    .iter()
                    .map(|&module| ModulePower {
                        id: module,
                        available: if latched.contains(&module) {
                            Watts(0)
                        } else {
                            book.available(module)
                        },
                    })
                    .collect(),
            })
            .collect(),
        current: record.plan().map(Current::of_plan).unwrap_or_default(),
    }
}

/// See [`input`].
fn tie(record: &HubRecord, spec: &SegmentSpec) -> TieState {
    if !spec.tie_fitted {
        return TieState::Absent;
    }
    let seen = record.snapshot().segments.get(&spec.id).and_then(|s| s.tie);
    match seen {
        Some(TieObservation::WeldedClosed) => TieState::WeldedClosed,
        Some(TieObservation::StuckOpen) => TieState::StuckOpen,
        Some(TieObservation::Open | TieObservation::Closed) | None => TieState::Ok,
    }
}
