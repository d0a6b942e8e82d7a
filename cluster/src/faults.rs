//! The fault catalog (issue 9): every fault the hub latches, with what an operator needs
//! to know of it. One table, read by the nodes when they latch a fault (severity, clear
//! rule), by the OCPP charge point (ChargePointErrorCode), by `ringhub faults catalog`,
//! and rendered into `docs/faults.md`, which a test keeps equal to [`markdown`].
//!
//! The vendor error code sent to the CSMS beside the ChargePointErrorCode is the stable
//! code itself (`CONTACTOR_WELDED`): it fits OCPP's 50 characters and reads the same in
//! the CSMS, the logs, `ringhub faults` and this catalog.

use serde::Serialize;

use crate::record::{ClearRule, RETRY_CAP, Severity};

/// What a fault is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Hub,
    Cabinet,
    Segment,
    Gun,
    Module,
    Contactor,
}

/// What the hub does about a fault while it is latched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Reported; charging goes on unchanged.
    Report,
    /// The module leaves its island; the planner grants what the others give.
    Derate,
    /// The gun's session stops and no new one starts until it clears.
    StopSession,
    /// The segment leaves service: its island ramps down and the ties around it open.
    SegmentOutOfService,
    /// Every segment of the cabinet leaves service, its budgets kept in reserve (S7, S8).
    CabinetOutOfService,
}

/// One fault of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultSpec {
    /// Stable code: logs, metrics, Zenoh, the CSMS's vendorErrorCode.
    pub code: &'static str,
    pub severity: Severity,
    pub scope: Scope,
    /// What happened, in one line.
    pub reason: &'static str,
    /// What an operator should do.
    pub action: &'static str,
    pub effect: Effect,
    /// OCPP 1.6 ChargePointErrorCode (§7.6) of StatusNotification Faulted.
    pub ocpp_error: &'static str,
    /// How the latch may be cleared.
    pub clear: ClearRule,
    /// When it clears, in words.
    pub clears_when: &'static str,
}

/// Cleared by the leader once the node has reported the condition gone for `hold_ms`
/// (see `clearing`); long enough that a restarted node has detected it again.
const fn gone_for(hold_ms: u32) -> ClearRule {
    ClearRule::ConditionGone { hold_ms }
}

/// The catalog, in the order the docs list it.
pub const CATALOG: &[FaultSpec] = &[
    FaultSpec {
        code: "CONTACTOR_WELDED",
        severity: Severity::Critical,
        scope: Scope::Contactor,
        reason: "A contactor reads closed after an open command, or voltage stays behind it (S9).",
        action: "Isolate the segment, inspect and replace the contactor, then clear the latch with a reason.",
        effect: Effect::SegmentOutOfService,
        ocpp_error: "PowerSwitchFailure",
        clear: ClearRule::Operator,
        clears_when: "an operator clears it, and only once the feedback reads open",
    },
    FaultSpec {
        code: "OPEN_UNDER_LOAD",
        severity: Severity::Critical,
        scope: Scope::Contactor,
        reason: "A contactor was opened carrying more than 5 A, as an emergency (S4).",
        action: "Inspect the contactor for arc wear, find why the current did not fall, then clear the latch.",
        effect: Effect::StopSession,
        ocpp_error: "PowerSwitchFailure",
        clear: ClearRule::Operator,
        clears_when: "an operator clears it",
    },
    FaultSpec {
        code: "CONTACTOR_FAILED_TO_CLOSE",
        severity: Severity::Error,
        scope: Scope::Contactor,
        reason: "A contactor did not read closed within its operate time.",
        action: "Check the coil supply and the auxiliary contact; a tie that fails again is planned around.",
        effect: Effect::StopSession,
        ocpp_error: "PowerSwitchFailure",
        clear: gone_for(1_000),
        clears_when: "the EV leaves",
    },
    FaultSpec {
        code: "ISOLATION_FAULT",
        severity: Severity::Critical,
        scope: Scope::Segment,
        reason: "The isolation monitor measured a fault between the DC bus and earth.",
        action: "Inspect the cable, the connector and the EV inlet for damaged insulation; clear once the monitor reads OK.",
        effect: Effect::SegmentOutOfService,
        ocpp_error: "GroundFailure",
        clear: ClearRule::Operator,
        clears_when: "an operator clears it, and only once the monitor reads OK",
    },
    FaultSpec {
        code: "PLC_SILENT",
        severity: Severity::Error,
        scope: Scope::Segment,
        reason: "No frame from the segment's PLC board for 500 ms; its watchdog opens its contactors.",
        action: "Check the PLC board's supply and its CAN wiring and termination.",
        effect: Effect::SegmentOutOfService,
        ocpp_error: "InternalError",
        clear: gone_for(3_000),
        clears_when: "the PLC is heard again",
    },
    FaultSpec {
        code: "EMERGENCY_STOP",
        severity: Severity::Critical,
        scope: Scope::Gun,
        reason: "The dispenser's emergency stop was pressed, or its residual-current device tripped.",
        action: "Find out why it was pressed or tripped before releasing it.",
        effect: Effect::StopSession,
        ocpp_error: "OtherError",
        clear: gone_for(2_000),
        clears_when: "the button is released and the RCD reset",
    },
    FaultSpec {
        code: "LOCK_FAILURE",
        severity: Severity::Error,
        scope: Scope::Gun,
        reason: "The connector lock did not reach Locked, or lost it while energising.",
        action: "Check the lock actuator and the cable's latch.",
        effect: Effect::StopSession,
        ocpp_error: "ConnectorLockFailure",
        clear: gone_for(1_000),
        clears_when: "the EV leaves",
    },
    FaultSpec {
        code: "METER_FAILURE",
        severity: Severity::Warning,
        scope: Scope::Gun,
        reason: "The PLC's meter reads invalid; energy is measured on the shunt.",
        action: "Replace or re-seal the meter; billing uses the shunt meanwhile.",
        effect: Effect::Report,
        ocpp_error: "PowerMeterFailure",
        clear: gone_for(10_000),
        clears_when: "the meter reads valid again",
    },
    FaultSpec {
        code: "METER_DISAGREEMENT",
        severity: Severity::Warning,
        scope: Scope::Gun,
        reason: "The PLC's meter and the shunt differ by more than 2 A and 3 %.",
        action: "Calibrate the shunt or replace the meter.",
        effect: Effect::Report,
        ocpp_error: "PowerMeterFailure",
        clear: gone_for(10_000),
        clears_when: "they agree again",
    },
    FaultSpec {
        code: "MODULE_OVERTEMP",
        severity: Severity::Error,
        scope: Scope::Module,
        reason: "A power module is past its shutdown temperature.",
        action: "Check the module's fans, filters and the cabinet's cooling.",
        effect: Effect::Derate,
        ocpp_error: "HighTemperature",
        clear: gone_for(10_000),
        clears_when: "it has cooled below its recovery temperature",
    },
    FaultSpec {
        code: "MODULE_SILENT",
        severity: Severity::Error,
        scope: Scope::Module,
        reason: "No status from a power module for 1 s.",
        action: "Check the module's supply and its CAN connection.",
        effect: Effect::Derate,
        ocpp_error: "InternalError",
        clear: gone_for(3_000),
        clears_when: "it is heard again",
    },
    FaultSpec {
        code: "MODULE_FAULT",
        severity: Severity::Error,
        scope: Scope::Module,
        reason: "A power module reports a fault (over-voltage, over-current, input, fan, short, internal).",
        action: "Read the module's fault flags in `ringhub status`; replace it if it repeats.",
        effect: Effect::Derate,
        ocpp_error: "InternalError",
        clear: gone_for(5_000),
        clears_when: "the module reports no fault",
    },
    FaultSpec {
        code: "CABINET_LOST",
        severity: Severity::Error,
        scope: Scope::Cabinet,
        reason: "The cabinet's node was out of reach past its lease and the PLC watchdog.",
        action: "Check the cabinet's supply and network; it rejoins by itself once it is back.",
        effect: Effect::CabinetOutOfService,
        ocpp_error: "OtherError",
        clear: gone_for(0),
        clears_when: "the cabinet is back, has reported the epoch in force and its ties read open",
    },
];

/// The catalog's entry for `code`.
pub fn spec(code: &str) -> Option<&'static FaultSpec> {
    CATALOG.iter().find(|s| s.code == code)
}

/// The clear rule in words, for operators.
fn rule(clear: ClearRule) -> String {
    match clear {
        ClearRule::Operator => "operator".into(),
        ClearRule::ConditionGone { hold_ms: 0 } => "by rule".into(),
        ClearRule::ConditionGone { hold_ms } => {
            format!("by rule, gone {} s", f64::from(hold_ms) / 1000.0)
        }
        ClearRule::Unplug => "on unplug".into(),
    }
}

/// The catalog as `docs/faults.md`.
pub fn markdown() -> String {
    let mut out = format!(
        "# Fault catalog\n\n\
         Every fault the hub latches. Generated from `cluster/src/faults.rs` by\n\
         `ringhub faults catalog`; a test keeps this file equal to it.\n\n\
         The vendor error code sent to the CSMS is the code itself. Faults cleared *by rule*\n\
         are cleared by the Raft leader once the node that raised them has reported the\n\
         condition gone for the hold time given (*gone 3 s*); a fault cleared by its rule\n\
         {RETRY_CAP} times within an hour needs an operator the next time. *Operator* faults clear\n\
         only with `ringhub faults clear ID --reason TEXT`, and a clear is refused while\n\
         the condition still holds. Every raise and clear is in the Raft log, with who\n\
         cleared it and why.\n\n\
         | code | severity | scope | effect | OCPP error code | cleared |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for s in CATALOG {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            s.code,
            words(&s.severity),
            words(&s.scope),
            words(&s.effect),
            s.ocpp_error,
            rule(s.clear)
        ));
    }
    for s in CATALOG {
        out.push_str(&format!(
            "\n## `{}`\n\n{}\n\n- **Do:** {}\n- **Effect:** {}\n- **Clears:** {}, {}.\n",
            s.code,
            s.reason,
            s.action,
            words(&s.effect),
            rule(s.clear),
            s.clears_when
        ));
    }
    out
}

/// A serde enum's snake_case name, spaced.
fn words(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn codes_are_unique_and_shouty() {
        let codes: BTreeSet<&str> = CATALOG.iter().map(|s| s.code).collect();
        assert_eq!(codes.len(), CATALOG.len());
        for code in codes {
            assert!(
                code.chars().all(|c| c.is_ascii_uppercase() || c == '_') && code.len() <= 50,
                "{code}: a stable code fits OCPP's vendorErrorCode"
            );
        }
    }

    #[test]
    fn safety_latches_need_an_operator() {
        for code in ["CONTACTOR_WELDED", "OPEN_UNDER_LOAD", "ISOLATION_FAULT"] {
            let spec = spec(code).expect(code);
            assert_eq!(spec.clear, ClearRule::Operator, "{code}");
            assert_eq!(spec.severity, Severity::Critical, "{code}");
        }
    }

    #[test]
    fn the_docs_are_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/faults.md");
        let docs = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            docs == markdown(),
            "docs/faults.md is not the catalog: run `ringhub faults catalog > docs/faults.md`"
        );
    }
}
