//! Shared islands on the node (issue 8; DESIGN.md §1, §4): what the plan in force asks
//! of each of this cabinet's segments, and what the node knows of the rest of the ring
//! to carry it out.
//!
//! [`parts`] reads the plan: a segment whose gun the island serves is its *host*, every
//! other segment of a served island a *donor*, the rest *alone*; and each segment's tie
//! is closed where the island goes on past it. [`Wire`] collects what arrives from the
//! ring (every segment's tie feedback, each host's setpoint, each donor's status, with
//! when each arrived) and turns a part into the controller's [`IslandPart`] of the
//! moment: a host counts only donors heard from recently and connected; a donor
//! follows only a host heard from recently, and counts as connected only when every
//! tie between it and its host reads closed. `link.rs` is the Zenoh shell around it.
//!
//! Safety never rests on what arrives here: each tie's owner closes and opens it only
//! on its own measurements (S3, S4), and a donor that stops hearing its host ramps to
//! zero.

pub mod link;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringhub_cluster::record::{HubRecord, Topology};
use ringhub_proto::config::{CabinetId, GunId, SegmentId};
use ringhub_proto::units::Amps;

use crate::connector::{DonorStatus, HostSetpoint, IslandPart, IslandRole};

/// A host's setpoint or a donor's status older than this is not followed or counted.
pub const HEARD_WITHIN: Duration = Duration::from_millis(500);
/// A segment's tie feedback older than this is unknown (it is published every 200 ms).
const TIE_HEARD_WITHIN: Duration = Duration::from_millis(1_000);

/// What the plan in force asks of one of this node's segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub segment: SegmentId,
    pub role: Role,
    /// The plan closes the segment's tie to the next one.
    pub tie_closed: bool,
    /// The fitted ties around its island (the one ending on its first segment, the
    /// one leaving its last) that must read open before its gun may energise (S2).
    pub boundary: Vec<SegmentId>,
}

impl Part {
    /// What the metrics show of it.
    pub fn metrics_view(&self) -> crate::metrics::SegmentIsland {
        let (role, gun) = match self.role {
            Role::Alone => ("alone", None),
            Role::Host { gun, .. } => ("host", Some(gun)),
            Role::Donor { gun, .. } => ("donor", Some(gun)),
        };
        crate::metrics::SegmentIsland {
            segment: self.segment,
            role,
            gun,
        }
    }
}

/// See [`Part`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An island of one, or an idle island: the segment's own gun and modules only.
    Alone,
    /// Its gun is the island's, and `donors` are the island's other segments.
    Host { gun: GunId, donors: Vec<SegmentId> },
    /// Its modules in `modules` (bit i: its module i) feed `gun`; `path` are the
    /// segments whose ties join it to the host's segment.
    Donor {
        gun: GunId,
        path: Vec<SegmentId>,
        modules: u8,
    },
}

/// The parts of `node`'s segments in the plan in force; every segment alone before the
/// first plan.
pub fn parts(record: &HubRecord, node: &CabinetId) -> Vec<Part> {
    let topology = record.topology();
    let own = topology.segments.iter().filter(|s| s.cabinet == *node);
    let Some(plan) = record.plan() else {
        return alone(record, node);
    };
    let closed = plan.closed_ties();
    own.map(|spec| {
        let island = plan.islands.iter().find(|i| i.segments.contains(&spec.id));
        let host = island.and_then(|i| {
            let gun = i.gun?;
            Some((i, gun, topology.segment_of_gun(gun)?))
        });
        let role = match host {
            None => Role::Alone,
            Some((island, gun, host)) if host == spec.id => Role::Host {
                gun,
                donors: island
                    .segments
                    .iter()
                    .copied()
                    .filter(|&s| s != host)
                    .collect(),
            },
            Some((island, gun, host)) => {
                let at = |s: SegmentId| island.segments.iter().position(|&x| x == s);
                let (me, them) = (at(spec.id).unwrap_or(0), at(host).unwrap_or(0));
                let modules = spec
                    .modules
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| island.modules.contains(m))
                    .fold(0u8, |mask, (i, _)| mask | 1 << i);
                Role::Donor {
                    gun,
                    path: island.segments[me.min(them)..me.max(them)].to_vec(),
                    modules,
                }
            }
        };
        let alone = [spec.id];
        let arc = island.map_or(&alone[..], |i| &i.segments[..]);
        Part {
            segment: spec.id,
            role,
            tie_closed: closed.contains(&spec.id),
            boundary: boundary(topology, arc),
        }
    })
    .collect()
}

/// The fitted ties around the arc `segments`: the previous segment's, which ends on its
/// first segment, and its last segment's.
fn boundary(topology: &Topology, segments: &[SegmentId]) -> Vec<SegmentId> {
    let ring = &topology.segments;
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return Vec::new();
    };
    let before = ring
        .iter()
        .position(|s| s.id == *first)
        .map(|i| &ring[(i + ring.len() - 1) % ring.len()]);
    let mut ties: Vec<SegmentId> = before
        .into_iter()
        .chain(topology.segment(*last))
        .filter(|s| s.tie_fitted)
        .map(|s| s.id)
        .collect();
    ties.dedup();
    ties
}

/// Every segment of `node` alone, its tie open: the degraded mode of S7.
pub fn alone(record: &HubRecord, node: &CabinetId) -> Vec<Part> {
    record
        .topology()
        .segments
        .iter()
        .filter(|s| s.cabinet == *node)
        .map(|s| Part {
            segment: s.id,
            role: Role::Alone,
            tie_closed: false,
            boundary: boundary(record.topology(), &[s.id]),
        })
        .collect()
}

/// What the node has heard from the ring, and when (see the module docs).
#[derive(Debug, Default)]
pub struct Wire {
    ties: HashMap<SegmentId, (bool, Instant)>,
    hosts: HashMap<GunId, (HostSetpoint, Instant)>,
    donors: HashMap<(GunId, SegmentId), (DonorStatus, Instant)>,
}

impl Wire {
    /// Segment `segment`'s tie reads `closed`.
    pub fn tie(&mut self, segment: SegmentId, closed: bool, at: Instant) {
        self.ties.insert(segment, (closed, at));
    }

    /// `gun`'s host asks this of its island.
    pub fn host(&mut self, gun: GunId, setpoint: HostSetpoint, at: Instant) {
        self.hosts.insert(gun, (setpoint, at));
    }

    /// Donor `segment` of `gun`'s island says this.
    pub fn donor(&mut self, gun: GunId, segment: SegmentId, status: DonorStatus, at: Instant) {
        self.donors.insert((gun, segment), (status, at));
    }

    /// The controller's part now. A boundary tie not heard of lately counts as open only
    /// when `unknown_is_open` (the node has been degraded past the lease, and the
    /// majority opens what is next to it, S7).
    pub fn input(&self, part: &Part, now: Instant, unknown_is_open: bool) -> IslandPart {
        let fresh = |at: &Instant, within: Duration| now.saturating_duration_since(*at) < within;
        let separated = part.boundary.iter().all(|s| {
            match self
                .ties
                .get(s)
                .filter(|(_, at)| fresh(at, TIE_HEARD_WITHIN))
            {
                Some((closed, _)) => !closed,
                None => unknown_is_open,
            }
        });
        let role = match &part.role {
            Role::Alone => IslandRole::Alone,
            Role::Host { gun, donors } => IslandRole::Host {
                donors: Amps(
                    donors
                        .iter()
                        .filter_map(|&s| self.donors.get(&(*gun, s)))
                        .filter(|(status, at)| status.connected && fresh(at, HEARD_WITHIN))
                        .map(|(status, _)| status.capability.0)
                        .sum(),
                ),
            },
            Role::Donor { gun, path, modules } => IslandRole::Donor {
                host: self
                    .hosts
                    .get(gun)
                    .filter(|(_, at)| fresh(at, HEARD_WITHIN))
                    .map(|(setpoint, _)| *setpoint),
                connected: path.iter().all(|s| {
                    self.ties
                        .get(s)
                        .is_some_and(|(closed, at)| *closed && fresh(at, TIE_HEARD_WITHIN))
                }),
                modules: *modules,
            },
        };
        IslandPart {
            role,
            tie_closed: part.tie_closed,
            separated,
        }
    }
}

#[cfg(test)]
mod tests;
