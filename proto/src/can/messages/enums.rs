//! The DBC value tables as Rust enums. The DBC stays the source of truth: a test below
//! checks that every enum lists exactly the labels and values of its `VAL_` tables.

/// An enum that mirrors a DBC value table.
pub trait DbcEnum: Sized + Copy + 'static {
    /// Every variant, in value order.
    const ALL: &'static [Self];
    /// The variant for a raw value, if there is one.
    fn from_raw(raw: i64) -> Option<Self>;
    /// The raw value on the wire.
    fn raw(self) -> i64;
    /// The value-table label.
    fn label(self) -> &'static str;
}

macro_rules! dbc_enum {
    ($(#[$doc:meta])* pub enum $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $value,)+
        }

        impl DbcEnum for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];

            fn from_raw(raw: i64) -> Option<Self> {
                match raw {
                    $($value => Some(Self::$variant),)+
                    _ => None,
                }
            }

            fn raw(self) -> i64 {
                self as i64
            }

            fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

dbc_enum! {
    /// What the host is doing, as told to the PLCs in its heartbeat.
    pub enum HostState {
        Booting = 0,
        Running = 1,
        /// Cut off from the cluster majority: local modules only (S7).
        Degraded = 2,
        ShuttingDown = 3,
    }
}

dbc_enum! {
    /// PLC configuration parameters the host writes.
    pub enum ParamId {
        /// Param 20: the authorisation decision.
        AuthGranted = 20,
        /// Param 30: the connector lock.
        Lock = 30,
    }
}

dbc_enum! {
    /// Param 20, `auth_granted`: the host's decision on the pending id token.
    pub enum AuthStatus {
        None = 0,
        Ongoing = 1,
        Accepted = 2,
        Rejected = 3,
    }
}

dbc_enum! {
    /// Param 30: connector lock actuator command.
    pub enum LockCommand {
        Unlock = 0,
        Lock = 1,
    }
}

dbc_enum! {
    /// Why a PLC did not carry out a relay command.
    pub enum RefusedReason {
        None = 0,
        /// GC may close only when param 20 is Accepted (S5).
        AuthNotAccepted = 1,
        /// GC may close only when the lock is confirmed (S5).
        LockNotConfirmed = 2,
        WatchdogTripped = 3,
        /// A tie or module interlock (S3) forbade it.
        Interlock = 4,
        EmergencyStop = 5,
        /// Opening was refused because current flows (S4) and Emergency was not set.
        UnderLoad = 6,
    }
}

dbc_enum! {
    /// IEC 61851-1 control pilot state.
    pub enum CpState {
        /// No vehicle connected.
        A = 0,
        /// Vehicle connected, not ready.
        B = 1,
        /// Vehicle ready to charge.
        C = 2,
        /// Ready, ventilation required.
        D = 3,
        /// Error: pilot shorted or no pilot.
        E = 4,
        /// EVSE not available.
        F = 5,
    }
}

dbc_enum! {
    /// Debounced lock actuator feedback.
    pub enum LockState {
        Unlocked = 0,
        Locked = 1,
        Fault = 2,
    }
}

dbc_enum! {
    /// Isolation monitor result, as ISO 15118-2 EVSEIsolationStatus.
    pub enum IsolationState {
        Invalid = 0,
        Valid = 1,
        Warning = 2,
        Fault = 3,
        NoImd = 4,
    }
}

dbc_enum! {
    /// ISO 15118-3 SLAC matching progress.
    pub enum SlacState {
        Idle = 0,
        Matching = 1,
        Matched = 2,
        Failed = 3,
    }
}

dbc_enum! {
    /// The high-level protocol negotiated in SupportedAppProtocol.
    pub enum HlcProtocol {
        None = 0,
        Din70121 = 1,
        Iso15118v2 = 2,
        Iso15118v20 = 3,
    }
}

dbc_enum! {
    /// The DIN 70121 / ISO 15118-2 message phase the session is in.
    pub enum HlcPhase {
        Idle = 0,
        SupportedAppProtocol = 1,
        SessionSetup = 2,
        ServiceDiscovery = 3,
        PaymentSelection = 4,
        Authorization = 5,
        ChargeParameterDiscovery = 6,
        CableCheck = 7,
        PreCharge = 8,
        PowerDelivery = 9,
        CurrentDemand = 10,
        PowerDeliveryStop = 11,
        WeldingDetection = 12,
        SessionStop = 13,
        Failed = 14,
    }
}

dbc_enum! {
    /// Why a high-level session failed or ended.
    pub enum HlcError {
        None = 0,
        SlacFailed = 1,
        SequenceError = 2,
        MessageTimeout = 3,
        CableCheckFailed = 4,
        PreChargeFailed = 5,
        EvError = 6,
        EvStopped = 7,
        EvseStopped = 8,
    }
}

dbc_enum! {
    /// Which instrument a meter reading comes from.
    pub enum MeterSource {
        /// The PLC's calibrated meter.
        PlcMeter = 0,
        /// The DC shunt.
        Shunt = 1,
    }
}

dbc_enum! {
    /// PLC firmware state from its heartbeat.
    pub enum PlcState {
        Booting = 0,
        Ready = 1,
        Fault = 2,
        /// The host heartbeat stopped; the PLC opened its contactors.
        WatchdogTripped = 3,
    }
}

dbc_enum! {
    /// Power module output command.
    pub enum ModuleOutput {
        Off = 0,
        On = 1,
    }
}

dbc_enum! {
    /// Power module state.
    pub enum ModuleState {
        Off = 0,
        Ramping = 1,
        On = 2,
        /// Delivering less than rated (temperature, input).
        Derated = 3,
        Fault = 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::can::catalog::ringhub;

    fn table<T: DbcEnum>() -> Vec<(i64, String)> {
        T::ALL
            .iter()
            .map(|v| (v.raw(), v.label().to_owned()))
            .collect()
    }

    #[test]
    fn every_enum_matches_its_dbc_value_tables() {
        // Each Rust enum with the (message, signal) value tables it mirrors.
        type Uses<'a> = &'a [(Vec<(i64, String)>, &'a [(&'a str, &'a str)])];
        let uses: Uses<'_> = &[
            (table::<HostState>(), &[("HostHeartbeat", "HostState")]),
            (table::<ParamId>(), &[("ConfigWrite", "ParamId")]),
            (
                table::<AuthStatus>(),
                &[
                    ("ConfigWrite", "AuthGranted"),
                    ("ChargeInfo", "AuthGranted"),
                ],
            ),
            (table::<LockCommand>(), &[("ConfigWrite", "LockCommand")]),
            (
                table::<RefusedReason>(),
                &[("RelayFeedback", "RefusedReason")],
            ),
            (table::<CpState>(), &[("ChargeInfo", "CpState")]),
            (table::<LockState>(), &[("ChargeInfo", "LockState")]),
            (
                table::<IsolationState>(),
                &[("ChargeInfo", "IsolationState")],
            ),
            (table::<SlacState>(), &[("Session", "SlacState")]),
            (table::<HlcProtocol>(), &[("Session", "HlcProtocol")]),
            (table::<HlcPhase>(), &[("Session", "HlcPhase")]),
            (table::<HlcError>(), &[("Session", "HlcError")]),
            (table::<MeterSource>(), &[("Meter", "Source")]),
            (table::<PlcState>(), &[("PlcHeartbeat", "PlcState")]),
            (table::<ModuleOutput>(), &[("ModuleEnable", "Enable")]),
            (table::<ModuleState>(), &[("ModuleStatus", "State")]),
        ];
        let mut covered = 0;
        for (rust, signals) in uses {
            for (message, signal) in *signals {
                let def = ringhub().message(message).unwrap().signal(signal).unwrap();
                assert_eq!(&def.values, rust, "{message}.{signal}");
                covered += 1;
            }
        }
        let tables = ringhub()
            .dbc()
            .messages
            .iter()
            .flat_map(|m| &m.signals)
            .filter(|s| !s.values.is_empty())
            .count();
        assert_eq!(covered, tables, "every DBC value table has a Rust enum");
    }

    #[test]
    fn from_raw_rejects_unlisted_values() {
        assert_eq!(CpState::from_raw(5), Some(CpState::F));
        assert_eq!(CpState::from_raw(6), None);
        assert_eq!(ParamId::from_raw(25), None);
        assert_eq!(AuthStatus::Accepted.to_string(), "Accepted");
    }
}
