//! The configuration-key table answered by GetConfiguration and changed by
//! ChangeConfiguration (OCPP 1.6 §5.8, §5.3, keys of §9.1 "Core Profile" and §9.2 "Local
//! Auth List Management Profile").
//!
//! Each key has a type and, for integers, a range; a value is checked against both before
//! it is taken. Readonly keys are listed with `readonly: true` and refuse changes
//! (Rejected); unknown keys are NotSupported; a value of the wrong type or out of range is
//! Rejected. Keys are matched without regard to ASCII case, as CiString50 is. The core
//! stores every accepted change in its journal before it answers, and applies the stored
//! values when it starts again.

use super::super::messages::central_system::{
    ConfigurationStatus, GetConfigurationRequest, GetConfigurationResponse, KeyValue,
};
use super::super::messages::meter::Measurand;
use super::super::types::{CiString50, CiString500};

/// HeartbeatInterval: seconds of idleness before a Heartbeat.
pub const HEARTBEAT_INTERVAL: &str = "HeartbeatInterval";
/// MinimumStatusDuration: seconds a status must last before it is reported.
pub const MINIMUM_STATUS_DURATION: &str = "MinimumStatusDuration";

/// What values a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// "true" or "false" (ASCII case ignored; stored lower case).
    Bool,
    /// A decimal integer within the inclusive range.
    Int {
        /// The least value accepted.
        min: i64,
        /// The greatest value accepted.
        max: i64,
    },
    /// A comma-separated list of measurands (§7.31), at most this many.
    Measurands(usize),
    /// Free text (CiString500).
    Text,
}

/// One key's definition.
#[derive(Debug, Clone, Copy)]
struct KeyDef {
    /// The key's name, as the spec spells it.
    name: &'static str,
    /// Whether the CSMS may change it.
    readonly: bool,
    /// Its type and range.
    kind: Kind,
    /// Its value before any change.
    default: &'static str,
}

/// The most measurands a `*Data` key may list (MeterValuesSampledDataMaxLength).
const MAX_MEASURANDS: usize = 8;
/// One day in seconds, the upper bound for the interval keys.
const DAY: i64 = 86_400;

/// Shorthand for a read-write key.
const fn rw(name: &'static str, kind: Kind, default: &'static str) -> KeyDef {
    KeyDef {
        name,
        readonly: false,
        kind,
        default,
    }
}

/// Shorthand for a read-only key.
const fn ro(name: &'static str, kind: Kind, default: &'static str) -> KeyDef {
    KeyDef {
        name,
        readonly: true,
        kind,
        default,
    }
}

/// Shorthand for an integer kind.
const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

/// The keys ringhub supports, in GetConfiguration order. NumberOfConnectors is added by
/// [`ConfigKeys::new`], which knows the count.
const KEYS: &[KeyDef] = &[
    rw("AllowOfflineTxForUnknownId", Kind::Bool, "false"),
    rw("AuthorizationCacheEnabled", Kind::Bool, "true"),
    rw("AuthorizeRemoteTxRequests", Kind::Bool, "false"),
    rw("ClockAlignedDataInterval", int(0, DAY), "0"),
    rw("ConnectionTimeOut", int(1, 3_600), "60"),
    rw("ConnectorPhaseRotation", Kind::Text, "NotApplicable"),
    ro("GetConfigurationMaxKeys", int(1, 100), "64"),
    rw(HEARTBEAT_INTERVAL, int(1, DAY), "300"),
    rw("LocalAuthListEnabled", Kind::Bool, "true"),
    ro("LocalAuthListMaxLength", int(0, 10_000), "1000"),
    rw("LocalAuthorizeOffline", Kind::Bool, "true"),
    rw("LocalPreAuthorize", Kind::Bool, "false"),
    rw(
        "MeterValuesAlignedData",
        Kind::Measurands(MAX_MEASURANDS),
        "Energy.Active.Import.Register",
    ),
    rw(
        "MeterValuesSampledData",
        Kind::Measurands(MAX_MEASURANDS),
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC",
    ),
    ro("MeterValuesSampledDataMaxLength", int(1, 100), "8"),
    rw("MeterValueSampleInterval", int(0, DAY), "60"),
    rw(MINIMUM_STATUS_DURATION, int(0, 3_600), "0"),
    rw("ResetRetries", int(0, 10), "3"),
    ro("SendLocalListMaxLength", int(0, 10_000), "100"),
    // A DC session ends when its cable leaves the EV; neither can be configured away.
    ro("StopTransactionOnEVSideDisconnect", Kind::Bool, "true"),
    rw("StopTransactionOnInvalidId", Kind::Bool, "true"),
    rw("StopTxnAlignedData", Kind::Measurands(MAX_MEASURANDS), ""),
    rw(
        "StopTxnSampledData",
        Kind::Measurands(MAX_MEASURANDS),
        "Energy.Active.Import.Register",
    ),
    ro(
        "SupportedFeatureProfiles",
        Kind::Text,
        "Core,LocalAuthListManagement,RemoteTrigger",
    ),
    rw("TransactionMessageAttempts", int(1, 10), "3"),
    rw("TransactionMessageRetryInterval", int(1, 3_600), "60"),
    ro("UnlockConnectorOnEVSideDisconnect", Kind::Bool, "true"),
];

/// The definition of NumberOfConnectors; its value comes from the hub config.
const NUMBER_OF_CONNECTORS: KeyDef = ro("NumberOfConnectors", int(1, 100), "1");

/// A key with its current value.
#[derive(Debug, Clone)]
struct Entry {
    /// Its definition.
    def: KeyDef,
    /// Its value, normalised (booleans lower case, integers without leading zeros).
    value: String,
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No such key (NotSupported).
    #[error("unknown configuration key {0:?}")]
    UnknownKey(String),
    /// The key may not be changed (Rejected).
    #[error("configuration key {0} is read-only")]
    ReadOnly(&'static str),
    /// The value does not fit the key's type or range (Rejected).
    #[error("bad value {value:?} for {key}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The refused value.
        value: String,
    },
}

impl ConfigError {
    /// The ChangeConfiguration status this refusal answers with.
    pub fn status(&self) -> ConfigurationStatus {
        match self {
            Self::UnknownKey(_) => ConfigurationStatus::NotSupported,
            Self::ReadOnly(_) | Self::BadValue { .. } => ConfigurationStatus::Rejected,
        }
    }
}

/// The configuration keys of one charge point and their values.
#[derive(Debug, Clone)]
pub struct ConfigKeys {
    /// Every supported key, in GetConfiguration order.
    entries: Vec<Entry>,
}

impl ConfigKeys {
    /// The defaults, with NumberOfConnectors set to `connectors`.
    pub fn new(connectors: u32) -> Self {
        let mut entries: Vec<Entry> = KEYS
            .iter()
            .map(|def| Entry {
                def: *def,
                value: def.default.to_owned(),
            })
            .collect();
        entries.push(Entry {
            def: NUMBER_OF_CONNECTORS,
            value: connectors.to_string(),
        });
        entries.sort_by_key(|e| e.def.name);
        Self { entries }
    }

    /// The entry of `key`, matched ignoring ASCII case.
    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.def.name.eq_ignore_ascii_case(key))
    }

    /// The current value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    /// The value of an integer key.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }

    /// The value of a boolean key.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.parse().ok()
    }

    /// Checks that `key` is writable and that `value` fits its type and range; returns
    /// the key's canonical name and the value in its canonical form, changing nothing.
    pub fn check(&self, key: &str, value: &str) -> Result<(&'static str, String), ConfigError> {
        let entry = self
            .entry(key)
            .ok_or_else(|| ConfigError::UnknownKey(key.to_owned()))?;
        let name = entry.def.name;
        if entry.def.readonly {
            return Err(ConfigError::ReadOnly(name));
        }
        let value = normalise(entry.def.kind, value).ok_or_else(|| ConfigError::BadValue {
            key: name,
            value: value.to_owned(),
        })?;
        Ok((name, value))
    }

    /// Sets `key` to `value` after [`Self::check`]ing it. Returns the key's canonical name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&'static str, ConfigError> {
        let (name, value) = self.check(key, value)?;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.def.name == name) {
            entry.value = value;
        }
        Ok(name)
    }

    /// Answers GetConfiguration: every key when none is named, else the named ones, with
    /// names not supported listed as unknown.
    pub(super) fn report(&self, request: &GetConfigurationRequest) -> GetConfigurationResponse {
        let key_value = |e: &Entry| KeyValue {
            key: CiString50::new(e.def.name).expect("key names are short"),
            readonly: e.def.readonly,
            value: CiString500::new(e.value.clone()).ok(),
        };
        let (known, unknown) = match request.key.as_deref() {
            None | Some([]) => (self.entries.iter().map(key_value).collect(), Vec::new()),
            Some(keys) => {
                let mut known = Vec::new();
                let mut unknown = Vec::new();
                for key in keys {
                    match self.entry(key.as_str()) {
                        Some(e) => known.push(key_value(e)),
                        None => unknown.push(key.clone()),
                    }
                }
                (known, unknown)
            }
        };
        GetConfigurationResponse {
            configuration_key: (!known.is_empty()).then_some(known),
            unknown_key: (!unknown.is_empty()).then_some(unknown),
        }
    }
}

/// `value` in its canonical form if it fits `kind`.
fn normalise(kind: Kind, value: &str) -> Option<String> {
    let value = value.trim();
    match kind {
        Kind::Bool => {
            let b = if value.eq_ignore_ascii_case("true") {
                true
            } else if value.eq_ignore_ascii_case("false") {
                false
            } else {
                return None;
            };
            Some(b.to_string())
        }
        Kind::Int { min, max } => {
            let n: i64 = value.parse().ok()?;
            (min..=max).contains(&n).then(|| n.to_string())
        }
        Kind::Measurands(max) => {
            if value.is_empty() {
                return Some(String::new());
            }
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            let all_known = items
                .iter()
                .all(|m| serde_json::from_value::<Measurand>(serde_json::Value::from(*m)).is_ok());
            (all_known && items.len() <= max).then(|| items.join(","))
        }
        Kind::Text => CiString500::new(value).ok().map(|_| value.to_owned()),
    }
}
