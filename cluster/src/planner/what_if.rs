//! The what-if file format of `ringhub plan --input FILE.json`: operators describe the
//! ring as it is (or as it might be: "what if this module dies?") and read the plan back.
//! A bad file is refused with the JSON path of the field at fault.
//!
//! Input, segments in ring order (segment i's tie joins it to segment i + 1, the last
//! one's back to the first):
//!
//! ```json
//! {"site_limit_kw": 600,
//!  "segments": [{"id": 0, "cabinet": "cab-a", "in_service": true, "tie_to_next": "ok",
//!                "gun": {"id": 0, "max_kw": 350, "demand_kw": 120},
//!                "modules": [{"id": 0, "available_kw": 50}]}],
//!  "current": {"ties_closed": [0], "islands": [...]}}
//! ```
//!
//! `tie_to_next` is `ok`, `absent`, `stuck_open` or `welded_closed`; `in_service`
//! defaults to true, `tie_to_next` to `ok`; `gun` may be null. `current` is optional: a
//! previous answer, so that the plan moves as few contactors from it as it can. The
//! answer is [`Answer`].

use std::collections::{BTreeMap, BTreeSet};

use ringhub_proto::config::{GunId, ModuleId, SegmentId};
use serde::{Deserialize, Serialize};

use super::{Current, GunDemand, ModulePower, Planned, PlannerInput, SegmentInput, TieState};
use crate::record::Watts;

/// A what-if file that cannot be planned: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WhatIfError {
    /// The JSON path of the field at fault (`segments[2].tie_to_next`), `.` for the whole.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl WhatIfError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    site_limit_kw: f64,
    segments: Vec<FileSegment>,
    #[serde(default)]
    current: Option<Answer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSegment {
    id: u16,
    cabinet: String,
    #[serde(default = "yes")]
    in_service: bool,
    #[serde(default)]
    tie_to_next: FileTie,
    #[serde(default)]
    gun: Option<FileGun>,
    #[serde(default)]
    modules: Vec<FileModule>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FileTie {
    #[default]
    Ok,
    Absent,
    StuckOpen,
    WeldedClosed,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGun {
    id: u16,
    max_kw: f64,
    demand_kw: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModule {
    id: u16,
    available_kw: f64,
}

/// The plan as the what-if tool prints it (and takes back as `current`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The islands of in-service segments, in ring order.
    pub islands: Vec<AnswerIsland>,
    /// The segments whose tie to the next is closed.
    pub ties_closed: Vec<u16>,
    /// Each gun with demand and what it is granted, kW.
    #[serde(default)]
    pub grants: BTreeMap<String, f64>,
    /// How many contactors move from `current` (0 without one).
    #[serde(default)]
    pub contactor_changes: u32,
}

/// One island of an [`Answer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerIsland {
    /// Its segments in ring order.
    pub segments: Vec<u16>,
    /// The gun it serves, or null.
    pub gun: Option<u16>,
    /// The modules it connects to that gun.
    pub modules: Vec<u16>,
    /// What the gun is granted, kW.
    #[serde(default)]
    pub granted_kw: f64,
}

/// Reads a what-if file.
pub fn parse(text: &str) -> Result<PlannerInput, WhatIfError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        WhatIfError::at(path, error.into_inner().to_string())
    })?;
    validate(file)
}

fn kilowatts(path: String, kw: f64) -> Result<Watts, WhatIfError> {
    if !kw.is_finite() || kw < 0.0 {
        return Err(WhatIfError::at(
            path,
            format!("{kw} is not a power (kW, 0 or more)"),
        ));
    }
    Ok(Watts::from_kilowatts(kw))
}

fn validate(file: File) -> Result<PlannerInput, WhatIfError> {
    if file.segments.is_empty() {
        return Err(WhatIfError::at("segments", "the ring has no segment"));
    }
    let site_limit = kilowatts("site_limit_kw".into(), file.site_limit_kw)?;
    let (mut segment_ids, mut gun_ids, mut module_ids) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut segments = Vec::new();
    for (s, segment) in file.segments.into_iter().enumerate() {
        let at = |field: &str| format!("segments[{s}].{field}");
        if !segment_ids.insert(segment.id) {
            return Err(WhatIfError::at(
                at("id"),
                format!("segment {} appears twice", segment.id),
            ));
        }
        if segment.cabinet.is_empty() {
            return Err(WhatIfError::at(at("cabinet"), "empty cabinet name"));
        }
        let gun = match segment.gun {
            None => None,
            Some(gun) => {
                if !gun_ids.insert(gun.id) {
                    return Err(WhatIfError::at(
                        at("gun.id"),
                        format!("gun {} appears twice", gun.id),
                    ));
                }
                Some(GunDemand {
                    id: GunId(gun.id),
                    max: kilowatts(at("gun.max_kw"), gun.max_kw)?,
                    demand: kilowatts(at("gun.demand_kw"), gun.demand_kw)?,
                })
            }
        };
        let mut modules = Vec::new();
        for (m, module) in segment.modules.into_iter().enumerate() {
            let at = |field: &str| format!("segments[{s}].modules[{m}].{field}");
            if !module_ids.insert(module.id) {
                return Err(WhatIfError::at(
                    at("id"),
                    format!("module {} appears twice", module.id),
                ));
            }
            modules.push(ModulePower {
                id: ModuleId(module.id),
                available: kilowatts(at("available_kw"), module.available_kw)?,
            });
        }
        segments.push(SegmentInput {
            id: SegmentId(segment.id),
            in_service: segment.in_service,
            tie_to_next: match segment.tie_to_next {
                FileTie::Ok => TieState::Ok,
                FileTie::Absent => TieState::Absent,
                FileTie::StuckOpen => TieState::StuckOpen,
                FileTie::WeldedClosed => TieState::WeldedClosed,
            },
            gun,
            modules,
        });
    }
    let current = match file.current {
        None => Current::default(),
        Some(answer) => current(&answer, &segment_ids, &gun_ids, &module_ids)?,
    };
    Ok(PlannerInput {
        site_limit,
        segments,
        current,
    })
}

/// The contactors a previous answer set, checked against the ring.
fn current(
    answer: &Answer,
    segments: &BTreeSet<u16>,
    guns: &BTreeSet<u16>,
    modules: &BTreeSet<u16>,
) -> Result<Current, WhatIfError> {
    let mut current = Current::default();
    for (t, &tie) in answer.ties_closed.iter().enumerate() {
        if !segments.contains(&tie) {
            let path = format!("current.ties_closed[{t}]");
            return Err(WhatIfError::at(path, format!("no segment {tie}")));
        }
        current.closed_ties.insert(SegmentId(tie));
    }
    for (i, island) in answer.islands.iter().enumerate() {
        let Some(gun) = island.gun else { continue };
        if !guns.contains(&gun) {
            let path = format!("current.islands[{i}].gun");
            return Err(WhatIfError::at(path, format!("no gun {gun}")));
        }
        current.energised.insert(GunId(gun));
        for (m, &module) in island.modules.iter().enumerate() {
            if !modules.contains(&module) {
                let path = format!("current.islands[{i}].modules[{m}]");
                return Err(WhatIfError::at(path, format!("no module {module}")));
            }
            current.owners.insert(ModuleId(module), GunId(gun));
        }
    }
    Ok(current)
}

fn kw(watts: Watts) -> f64 {
    watts.0 as f64 / 1000.0
}

/// The answer to print for `planned`.
pub fn answer(planned: &Planned) -> Answer {
    Answer {
        islands: planned
            .islands
            .iter()
            .map(|island| AnswerIsland {
                segments: island.segments.iter().map(|s| s.0).collect(),
                gun: island.gun.map(|g| g.0),
                modules: island.modules.iter().map(|m| m.0).collect(),
                granted_kw: kw(island.granted),
            })
            .collect(),
        ties_closed: planned.closed_ties.iter().map(|s| s.0).collect(),
        grants: planned
            .grants
            .iter()
            .map(|(gun, granted)| (gun.0.to_string(), kw(*granted)))
            .collect(),
        contactor_changes: planned.changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: &str = r#"{
        "site_limit_kw": 300,
        "segments": [
            {"id": 0, "cabinet": "cab-a", "tie_to_next": "ok",
             "gun": {"id": 0, "max_kw": 350, "demand_kw": 150},
             "modules": [{"id": 0, "available_kw": 50}, {"id": 1, "available_kw": 50}]},
            {"id": 1, "cabinet": "cab-a", "tie_to_next": "absent",
             "gun": {"id": 1, "max_kw": 350, "demand_kw": 0},
             "modules": [{"id": 2, "available_kw": 50}, {"id": 3, "available_kw": 50}]},
            {"id": 2, "cabinet": "cab-b", "in_service": false, "gun": null, "modules": []}
        ]
    }"#;

    #[test]
    fn a_ring_is_planned_and_printed() {
        let input = parse(RING).expect("a valid file");
        let answer = answer(&super::super::plan(&input));
        assert_eq!(answer.grants.get("0"), Some(&150.0));
        assert_eq!(answer.ties_closed, vec![0]);
        assert_eq!(answer.islands[0].segments, vec![0, 1]);
        assert_eq!(answer.islands[0].modules, vec![0, 1, 2, 3]);
        assert!(answer.islands.iter().all(|i| !i.segments.contains(&2)));
    }

    #[test]
    fn a_previous_answer_is_taken_back_as_current() {
        let input = parse(RING).expect("a valid file");
        let first = answer(&super::super::plan(&input));
        let mut file: serde_json::Value = serde_json::from_str(RING).expect("JSON");
        file["current"] = serde_json::to_value(&first).expect("JSON");
        let again = parse(&file.to_string()).expect("a valid file");
        assert_eq!(again.current.closed_ties, BTreeSet::from([SegmentId(0)]));
        assert_eq!(answer(&super::super::plan(&again)).contactor_changes, 0);
    }

    fn error_of(edit: impl FnOnce(&mut serde_json::Value)) -> WhatIfError {
        let mut file: serde_json::Value = serde_json::from_str(RING).expect("JSON");
        edit(&mut file);
        parse(&file.to_string()).expect_err("a bad file")
    }

    #[test]
    fn a_bad_field_is_named_by_its_path() {
        let error = error_of(|f| f["segments"][1]["tie_to_next"] = "loose".into());
        assert_eq!(error.path, "segments[1].tie_to_next");
        assert!(error.message.contains("unknown variant `loose`"), "{error}");

        let error = error_of(|f| f["segments"][0]["gun"]["demand_kw"] = (-5.0).into());
        assert_eq!(error.path, "segments[0].gun.demand_kw");

        let error = error_of(|f| f["segments"][0]["modules"][1]["id"] = 0.into());
        assert_eq!(
            error.to_string(),
            "segments[0].modules[1].id: module 0 appears twice"
        );

        let error = error_of(|f| {
            f["segments"][2]
                .as_object_mut()
                .expect("object")
                .remove("cabinet");
        });
        assert_eq!(error.path, "segments[2]");
        assert!(error.message.contains("missing field `cabinet`"), "{error}");

        let error = error_of(|f| f["segments"][0]["speed"] = 3.into());
        assert!(error.message.contains("unknown field `speed`"), "{error}");

        let error =
            error_of(|f| f["current"] = serde_json::json!({"islands": [], "ties_closed": [7]}));
        assert_eq!(error.to_string(), "current.ties_closed[0]: no segment 7");

        assert_eq!(parse("[").expect_err("not JSON").path, ".");
    }
}
