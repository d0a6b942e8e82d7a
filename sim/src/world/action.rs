//! What the outside world can do to the simulated hub: plug and unplug EVs, present RFID
//! cards, inject and clear faults, and put frames on a bus as a host would. The control
//! API and scenario files carry these as JSON/TOML objects tagged by `action`.

use serde::{Deserialize, Serialize};

pub use super::ev::EvSpec;

/// One action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// An EV plugs into a gun.
    Plug(EvSpec),
    /// The EV at a gun leaves (once the lock lets it).
    Unplug { gun: u16 },
    /// A card is presented at a gun's dispenser.
    Rfid { gun: u16, id_tag: String },
    /// Something breaks.
    InjectFault(FaultSpec),
    /// A previously injected fault is repaired.
    ClearFault { id: u64 },
    /// A frame appears on a cabinet's bus as if its host had sent it.
    Send { cabinet: String, frame: String },
}

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What breaks.
    pub kind: FaultKind,
    /// Module id for module faults, segment id for contactor and PLC faults, gun id for
    /// gun faults.
    pub target: u16,
    /// For contactor faults: `gc`, `mn`, or `mc0`, `mc1`… (the segment's module contactors).
    #[serde(default)]
    pub contactor: Option<String>,
}

/// The faults the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A module's fan is blocked: it heats up, derates, and trips under load.
    ModuleOvertemp,
    /// A module trips on its overtemperature protection now.
    ModuleTrip,
    /// A module stops sending frames.
    ModuleSilence,
    /// A contactor welds: once closed it stays closed.
    ContactorWeld,
    /// A contactor no longer closes.
    ContactorFailToClose,
    /// A gun's lock never reaches Locked.
    LockFailure,
    /// A gun's PLC meter reads invalid.
    MeterFailure,
    /// A gun's shunt disagrees with its meter by 15 %.
    MeterDisagreement,
    /// A gun's isolation monitor reports a fault.
    IsolationFault,
    /// A segment's PLC stops sending frames.
    PlcSilence,
    /// A gun's control pilot fails (CP state E): the EV ends its session.
    PilotError,
    /// A gun's dispenser has its emergency stop pressed.
    EmergencyStop,
}

/// What an action returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", untagged)]
pub enum ActionReply {
    /// Done; nothing to report.
    Done,
    /// The fault was injected under this id.
    FaultInjected { id: u64 },
}

/// An action that cannot be carried out, with the request field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ActionError {
    /// The field of the request that is wrong.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ActionError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_from_tagged_json() {
        let plug: Action = serde_json::from_str(
            r#"{"action":"plug","gun":1,"battery_v":400,"soc":20,"max_current_a":200,"target_soc":80}"#,
        )
        .unwrap();
        assert!(
            matches!(plug, Action::Plug(EvSpec { gun: 1, capacity_kwh, .. }) if capacity_kwh == 75.0)
        );
        let fault: Action = serde_json::from_str(
            r#"{"action":"inject_fault","kind":"contactor_weld","target":2,"contactor":"mn"}"#,
        )
        .unwrap();
        assert!(matches!(
            fault,
            Action::InjectFault(FaultSpec {
                kind: FaultKind::ContactorWeld,
                target: 2,
                ..
            })
        ));
        let error = serde_json::from_str::<Action>(r#"{"action":"plug","gun":1,"battery":400}"#)
            .unwrap_err();
        assert!(error.to_string().contains("battery"), "{error}");
    }
}
