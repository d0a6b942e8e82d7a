//! The ring as the hub config builds it (fixed while the cluster runs), and what the
//! record adds to it: segments out of service and the ties' observed states.

use std::collections::BTreeMap;

use ringhub_proto::config::{CabinetId, GunId, HubConfig, ModuleId, SegmentId, Tie};
use serde::{Deserialize, Serialize};

use super::Watts;

/// One segment as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSpec {
    /// Its position in ring order.
    pub id: SegmentId,
    /// The cabinet (node) that drives it.
    pub cabinet: CabinetId,
    /// Whether its tie to the next segment is fitted.
    pub tie_fitted: bool,
    /// Its gun, if any.
    pub gun: Option<GunId>,
    /// Its modules.
    pub modules: Vec<ModuleId>,
}

/// The ring: segments in ring order, each joined to the next by its tie (the last one's
/// closes the ring), and the site limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The segments, by position.
    pub segments: Vec<SegmentSpec>,
    /// The most power the site may grant (S8).
    pub site_limit: Watts,
}

impl Topology {
    /// The ring of `config`.
    pub fn from_config(config: &HubConfig) -> Self {
        let segments = config
            .segments
            .iter()
            .map(|s| SegmentSpec {
                id: s.id,
                cabinet: s.cabinet.clone(),
                tie_fitted: s.tie == Tie::Fitted,
                gun: s.gun.as_ref().map(|g| g.id),
                modules: s.modules.iter().map(|m| m.id).collect(),
            })
            .collect();
        Self {
            segments,
            site_limit: Watts::from_kilowatts(config.hub.site_limit.0),
        }
    }

    /// Whether this ring grows `old` without changing it: every segment of `old` is here
    /// as it was, in the same order; new segments and cabinets only add. What is wrong
    /// otherwise.
    pub fn extends(&self, old: &Topology) -> Result<(), String> {
        let kept: Vec<&SegmentSpec> = self
            .segments
            .iter()
            .filter(|s| old.segment(s.id).is_some())
            .collect();
        if kept.len() != old.segments.len() {
            return Err("a segment of the ring in force is missing".into());
        }
        for (now, was) in kept.iter().zip(&old.segments) {
            if now.id != was.id {
                return Err(format!("segment {} moved in the ring order", was.id));
            }
            if *now != was {
                return Err(format!("segment {} changed", was.id));
            }
        }
        let mut ids: Vec<SegmentId> = self.segments.iter().map(|s| s.id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() != self.segments.len() {
            return Err("a segment id appears twice".into());
        }
        Ok(())
    }

    /// The segment `id`.
    pub fn segment(&self, id: SegmentId) -> Option<&SegmentSpec> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// The segment after `id` in ring order (its tie's other side).
    pub fn next(&self, id: SegmentId) -> Option<SegmentId> {
        let at = self.segments.iter().position(|s| s.id == id)?;
        Some(self.segments[(at + 1) % self.segments.len()].id)
    }

    /// The segment a module sits on.
    pub fn segment_of_module(&self, module: ModuleId) -> Option<SegmentId> {
        self.segments
            .iter()
            .find(|s| s.modules.contains(&module))
            .map(|s| s.id)
    }

    /// The segment a gun sits on.
    pub fn segment_of_gun(&self, gun: GunId) -> Option<SegmentId> {
        self.segments
            .iter()
            .find(|s| s.gun == Some(gun))
            .map(|s| s.id)
    }
}

/// What a tie's feedback says, against what it was commanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TieObservation {
    /// Open, as commanded.
    Open,
    /// Closed, as commanded.
    Closed,
    /// Closed although commanded open: welded (S9).
    WeldedClosed,
    /// Open although commanded closed.
    StuckOpen,
}

/// Why a segment is out of service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfService {
    /// What took it out (a latch code, `cabinet lost`, an operator's reason).
    pub reason: String,
    /// Power the segment's gun may still draw beyond the plan's reach (its cabinet is
    /// lost and charges on in degraded mode with the budget it had, S7): kept out of
    /// every budget until the segment rejoins (S8).
    #[serde(default)]
    pub reserved: Watts,
    /// For a lost cabinet: how many reports it had made when it was taken out; it
    /// rejoins only on a report made after that (see `steward`).
    #[serde(default)]
    pub reports_before: u64,
}

/// What the record adds to a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentState {
    /// Set while the segment must not be planned into any island but its own, idle.
    pub out_of_service: Option<OutOfService>,
    /// The last observed state of its tie, if reported.
    pub tie: Option<TieObservation>,
}

/// The record's per-segment states, by segment.
pub type SegmentStates = BTreeMap<SegmentId, SegmentState>;
