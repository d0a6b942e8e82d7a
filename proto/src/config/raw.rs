//! The serde layer: the file exactly as written, every value that validation may refuse
//! wrapped in [`Spanned`] so that its error can name the line. serde itself refuses unknown
//! fields, missing fields, wrong types and integers out of their type's range; everything
//! else is `validate`'s job.

use serde::Deserialize;
use toml::Spanned;

use super::{AuthMode, Tie, TransactionStart};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    /// `[hub]`; spanned to point at when the hub is empty.
    pub(super) hub: Spanned<RawHub>,
    /// `[sim]`, all defaults when left out.
    #[serde(default)]
    pub(super) sim: Option<RawSim>,
    /// `[[cabinets]]`.
    #[serde(default)]
    pub(super) cabinets: Vec<Spanned<RawCabinet>>,
    /// `[[segments]]`, in ring order.
    #[serde(default)]
    pub(super) segments: Vec<Spanned<RawSegment>>,
    /// `[[dispensers]]`.
    #[serde(default)]
    pub(super) dispensers: Vec<Spanned<RawDispenser>>,
}

/// `[hub]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHub {
    /// The hub id for Zenoh keys.
    pub(super) id: Spanned<String>,
    /// The grid connection's limit.
    pub(super) site_limit_kw: Spanned<f64>,
}

/// `[sim]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSim {
    /// Where the simulator serves the CAN buses.
    pub(super) socketcand_port: Option<u16>,
    /// Simulated contactor travel time.
    pub(super) contactor_delay_ms: Option<Spanned<u64>>,
    /// Simulated PLC host-heartbeat watchdog.
    pub(super) watchdog_timeout_ms: Option<Spanned<u64>>,
    /// The simulator's control socket.
    pub(super) control: Option<Spanned<String>>,
}

/// One `[[cabinets]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCabinet {
    /// The cabinet id.
    pub(super) id: Spanned<String>,
    /// The CAN bus URI, parsed by the node.
    pub(super) can: Spanned<String>,
    /// Where the node keeps its state.
    pub(super) data_dir: Spanned<String>,
    /// Prometheus scrape address.
    pub(super) metrics: Spanned<String>,
    /// Zenoh endpoints to listen on.
    pub(super) zenoh_listen: Vec<Spanned<String>>,
    /// Zenoh endpoints to connect to; default every other cabinet's `zenoh_listen`.
    pub(super) zenoh_connect: Option<Vec<Spanned<String>>>,
    /// Who may charge.
    pub(super) auth: Option<Spanned<AuthMode>>,
    /// The id tokens accepted with `auth = "local"`.
    pub(super) local_auth_list: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One `[[segments]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegment {
    /// Must equal the segment's position in the list.
    pub(super) id: Spanned<u16>,
    /// The cabinet whose bus carries the segment's PLC.
    pub(super) cabinet: Spanned<String>,
    /// The PLC's slot on that bus.
    pub(super) plc_slot: Spanned<u8>,
    /// The tie to the next segment.
    #[serde(default)]
    pub(super) tie: Tie,
    /// `[segments.gun]`, absent on a module-only segment.
    pub(super) gun: Option<RawGun>,
    /// `[[segments.modules]]`, none on a gun-only segment.
    #[serde(default)]
    pub(super) modules: Vec<RawModule>,
}

/// `[segments.gun]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGun {
    /// Unique in the hub.
    pub(super) id: Spanned<u16>,
    /// The cable's current rating.
    pub(super) max_current_a: Spanned<f64>,
    /// The cable's voltage rating.
    pub(super) max_voltage_v: Spanned<f64>,
    /// The dispenser the gun hangs on.
    pub(super) dispenser: Spanned<String>,
    /// Its OCPP connector id in that dispenser.
    pub(super) connector: Spanned<u32>,
}

/// One `[[segments.modules]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModule {
    /// Unique in the hub.
    pub(super) id: Spanned<u16>,
    /// CAN address on the cabinet's bus.
    pub(super) address: Spanned<u8>,
    /// Rated output power.
    pub(super) max_power_kw: Spanned<f64>,
    /// Rated output current.
    pub(super) max_current_a: Spanned<f64>,
    /// Rated output voltage.
    pub(super) max_voltage_v: Spanned<f64>,
}

/// One `[[dispensers]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDispenser {
    /// The dispenser id guns refer to.
    pub(super) id: Spanned<String>,
    /// The OCPP charge point identity.
    pub(super) ocpp_identity: Spanned<String>,
    /// The CSMS WebSocket URL.
    pub(super) csms_url: Option<Spanned<String>>,
    /// The OCPP 1.6 security profile, 0 when left out; signed so that `-1` gets our
    /// message rather than serde's.
    pub(super) security_profile: Option<Spanned<i64>>,
    /// The file holding the Basic auth password (profiles 1 and 2).
    pub(super) csms_password_file: Option<Spanned<String>>,
    /// A PEM file of the CAs trusted for `wss://`.
    pub(super) csms_ca_file: Option<Spanned<String>>,
    /// When its transactions start.
    pub(super) transaction_start: Option<Spanned<TransactionStart>>,
}
