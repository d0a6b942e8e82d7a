//! The hub record in the admin protocol's words (`admin.proto`, `fault.proto`,
//! `plan.proto`). Pure.

use openraft::{RaftMetrics, ServerState};
use ringhub_cluster::record::{
    ClearRule, Clearer, HubRecord, Latch, LatchStatus, Plan, Severity, TieObservation, Topology,
};
use ringhub_proto::config::SegmentId;
use ringhub_proto::v1;

/// A latch as a [`v1::Fault`].
pub fn fault(latch: &Latch, topology: &Topology) -> v1::Fault {
    let spec = &latch.spec;
    let (scope, scope_id) = scope(&spec.subject, topology);
    let (clear_rule, hold_ms) = match spec.clear_rule {
        ClearRule::Operator => (v1::ClearRule::Operator, 0),
        ClearRule::ConditionGone { hold_ms } => (v1::ClearRule::ConditionGone, hold_ms),
        ClearRule::Unplug => (v1::ClearRule::Unplug, 0),
    };
    let (status, cleared_unix_ms, cleared_by, clear_reason) = match &latch.status {
        LatchStatus::Active => (v1::FaultStatus::Active, None, String::new(), String::new()),
        LatchStatus::Cleared { by, at_unix_ms } => {
            let (who, why) = match by {
                Clearer::Operator { name, reason } => (name.clone(), reason.clone()),
                Clearer::Rule { node, reason } if reason.is_empty() => (
                    "rule".to_owned(),
                    format!("the condition went away, as {node} judged it"),
                ),
                Clearer::Rule { node, reason } => (format!("rule ({node})"), reason.clone()),
            };
            (v1::FaultStatus::Cleared, Some(*at_unix_ms), who, why)
        }
    };
    v1::Fault {
        fault_id: latch.id.0,
        code: spec.code.clone(),
        severity: severity(spec.severity) as i32,
        scope: scope as i32,
        scope_id,
        reason: spec.detail.clone(),
        evidence: spec
            .evidence
            .iter()
            .map(crate::publish::convert::evidence)
            .collect(),
        raised_by_node_id: spec.raised_by.to_string(),
        raised_unix_ms: spec.raised_unix_ms,
        clear_rule: clear_rule as i32,
        clear_hold_ms: hold_ms,
        status: status as i32,
        cleared_unix_ms,
        cleared_by,
        clear_reason,
        plan_epoch: latch.plan_epoch.0,
        repeat_count: latch.repeat_count,
        last_seen_unix_ms: latch.last_seen_unix_ms,
    }
}

/// A severity in the protocol's words.
pub fn severity(severity: Severity) -> v1::FaultSeverity {
    match severity {
        Severity::Warning => v1::FaultSeverity::Warning,
        Severity::Error => v1::FaultSeverity::Error,
        Severity::Critical => v1::FaultSeverity::Critical,
    }
}

/// The scope a controller's subject names: `segment 1`, `segment 1 gc`, `segment 1 mn`,
/// `segment 1 mc0` (the segment's first module's contactor), `gun 2`, `module 3`,
/// `cabinet cab-b`; anything else is unspecified, with the subject as the id.
pub fn scope(subject: &str, topology: &Topology) -> (v1::FaultScope, String) {
    let words: Vec<&str> = subject.split(' ').collect();
    let segment = |id: &str| id.parse::<u16>().ok().map(SegmentId);
    match words.as_slice() {
        ["segment", id] if segment(id).is_some() => (v1::FaultScope::Segment, (*id).to_owned()),
        ["segment", id, "gc"] if segment(id).is_some() => {
            (v1::FaultScope::GunContactor, (*id).to_owned())
        }
        ["segment", id, "mn"] if segment(id).is_some() => {
            (v1::FaultScope::TieContactor, (*id).to_owned())
        }
        ["segment", id, contactor] if contactor.starts_with("mc") => {
            let module = segment(id)
                .and_then(|s| topology.segment(s))
                .zip(contactor[2..].parse::<usize>().ok())
                .and_then(|(spec, index)| spec.modules.get(index));
            match module {
                Some(module) => (v1::FaultScope::ModuleContactor, module.to_string()),
                None => (v1::FaultScope::Unspecified, subject.to_owned()),
            }
        }
        ["gun", id] if id.parse::<u16>().is_ok() => (v1::FaultScope::Gun, (*id).to_owned()),
        ["module", id] if id.parse::<u16>().is_ok() => (v1::FaultScope::Module, (*id).to_owned()),
        ["cabinet", id] => (v1::FaultScope::Cabinet, (*id).to_owned()),
        _ => (v1::FaultScope::Unspecified, subject.to_owned()),
    }
}

/// The plan in force as a [`v1::Plan`]; a tie is planned closed when it joins two
/// segments of one island.
pub fn plan(plan: &Plan, topology: &Topology) -> v1::Plan {
    let island_of = |segment: SegmentId| {
        plan.islands
            .iter()
            .position(|island| island.segments.contains(&segment))
    };
    let ties = topology
        .segments
        .iter()
        .map(|spec| {
            let joined = topology.next(spec.id).is_some_and(|next| {
                next != spec.id
                    && island_of(spec.id).is_some()
                    && island_of(spec.id) == island_of(next)
            });
            v1::TieState {
                segment_id: u32::from(spec.id.0),
                fitted: spec.tie_fitted,
                planned: if spec.tie_fitted && joined {
                    v1::ContactorState::Closed
                } else {
                    v1::ContactorState::Open
                } as i32,
            }
        })
        .collect();
    let watts = |w: u64| u32::try_from(w).unwrap_or(u32::MAX);
    let granted: u64 = plan.islands.iter().map(|i| i.budget.0).sum();
    v1::Plan {
        epoch: plan.epoch.0,
        committed_unix_ms: plan.proposed_unix_ms,
        site_limit_w: watts(topology.site_limit.0),
        granted_power_w: watts(granted),
        islands: plan
            .islands
            .iter()
            .map(|island| v1::Island {
                segment_ids: island.segments.iter().map(|s| u32::from(s.0)).collect(),
                gun_id: island.gun.map(|g| u32::from(g.0)),
                module_ids: island.modules.iter().map(|m| u32::from(m.0)).collect(),
                granted_power_w: watts(island.budget.0),
            })
            .collect(),
        ties,
        reason: plan.reason.clone(),
    }
}

/// What the record says about each segment.
pub fn segment_records(record: &HubRecord) -> Vec<v1::SegmentRecord> {
    let states = &record.snapshot().segments;
    record
        .topology()
        .segments
        .iter()
        .map(|spec| {
            let state = states.get(&spec.id);
            let out = state.and_then(|s| s.out_of_service.as_ref());
            let tie = state.and_then(|s| s.tie).map(|tie| match tie {
                TieObservation::Open => "open",
                TieObservation::Closed => "closed",
                TieObservation::WeldedClosed => "welded_closed",
                TieObservation::StuckOpen => "stuck_open",
            });
            v1::SegmentRecord {
                segment_id: u32::from(spec.id.0),
                cabinet_id: spec.cabinet.to_string(),
                in_service: out.is_none(),
                out_of_service_reason: out.map(|o| o.reason.clone()).unwrap_or_default(),
                tie_observed: tie.unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

/// One node's Raft view as a [`v1::RaftStatus`].
pub fn raft(metrics: &RaftMetrics<u64, openraft::BasicNode>) -> v1::RaftStatus {
    let role = match metrics.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    let membership = metrics.membership_config.membership();
    let members = membership
        .nodes()
        .map(|(id, node)| v1::RaftMember {
            raft_id: *id,
            node_id: node.addr.clone(),
            voter: membership.voter_ids().any(|v| v == *id),
        })
        .collect();
    v1::RaftStatus {
        raft_id: metrics.id,
        term: metrics.current_term,
        leader_raft_id: metrics.current_leader.unwrap_or(0),
        role: role.to_owned(),
        last_log_index: metrics.last_log_index.unwrap_or(0),
        applied_index: metrics.last_applied.map_or(0, |l| l.index),
        millis_since_quorum_ack: metrics.millis_since_quorum_ack,
        members,
    }
}

#[cfg(test)]
mod tests {
    use ringhub_proto::config::HubConfig;

    use super::*;

    #[test]
    fn subjects_name_their_scope() {
        let topology = Topology::from_config(&HubConfig::demo());
        let cases = [
            ("segment 1", v1::FaultScope::Segment, "1"),
            ("segment 1 gc", v1::FaultScope::GunContactor, "1"),
            ("segment 1 mn", v1::FaultScope::TieContactor, "1"),
            ("segment 1 mc1", v1::FaultScope::ModuleContactor, "3"),
            (
                "segment 1 mc7",
                v1::FaultScope::Unspecified,
                "segment 1 mc7",
            ),
            ("gun 4", v1::FaultScope::Gun, "4"),
            ("module 11", v1::FaultScope::Module, "11"),
            ("cabinet cab-b", v1::FaultScope::Cabinet, "cab-b"),
            ("the hub", v1::FaultScope::Unspecified, "the hub"),
        ];
        for (subject, want, id) in cases {
            assert_eq!(
                scope(subject, &topology),
                (want, id.to_owned()),
                "{subject}"
            );
        }
    }

    #[test]
    fn the_initial_plan_has_every_tie_open_and_every_segment_alone() {
        let record = HubRecord::new(Topology::from_config(&HubConfig::demo()));
        let plan = plan(record.plan().expect("initial plan"), record.topology());
        assert_eq!(plan.islands.len(), 6);
        assert_eq!(plan.ties.len(), 6);
        assert!(
            plan.ties
                .iter()
                .all(|t| t.planned() == v1::ContactorState::Open)
        );
        assert!(plan.islands.iter().all(|i| i.segment_ids.len() == 1));
    }
}
