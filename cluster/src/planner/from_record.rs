//! The planner's input on the leader: the ring and the segments' states from the record,
//! what the guns ask and the modules give from the demand book, and the plan in force.

use super::{Current, GunDemand, ModulePower, PlannerInput, SegmentInput, TieState};
use crate::demand::DemandBook;
use crate::record::{HubRecord, SegmentSpec, TieObservation, Watts};

/// The input for planning the next epoch of `record`.
///
/// The site limit is what is left after lost cabinets' reserves (S7, S8). A tie seen
/// welded is planned welded (its two segments share an island, S2); every other tie is
/// planned as absent for now: the nodes carry out islands of one segment only, each gun
/// on its own segment's modules, until the node side of module sharing (break-before-make
/// tie and module hand-overs) lands.
pub fn input(record: &HubRecord, book: &DemandBook) -> PlannerInput {
    let topology = record.topology();
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
                        available: book.available(module),
                    })
                    .collect(),
            })
            .collect(),
        current: record.plan().map(Current::of_plan).unwrap_or_default(),
    }
}

/// See [`input`].
fn tie(record: &HubRecord, spec: &SegmentSpec) -> TieState {
    let seen = record.snapshot().segments.get(&spec.id).and_then(|s| s.tie);
    match seen {
        Some(TieObservation::WeldedClosed) if spec.tie_fitted => TieState::WeldedClosed,
        _ => TieState::Absent,
    }
}
