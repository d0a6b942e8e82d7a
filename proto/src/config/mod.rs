//! The hub config file (`deploy/hubs/*.toml`): one file describes a whole hub, and the same
//! file is read by the simulator (`ringhub-sim`, the virtual hardware) and by every node
//! (`ringhub-node`, one per cabinet), so that both agree on the ring (DESIGN.md §1).
//!
//! ```text
//!  [hub]            id, site_limit_kw
//!  [sim]            the simulator's ports and timings (optional)
//!  [[cabinets]]     id, can, data_dir, metrics, zenoh_listen, zenoh_connect, auth, ...
//!  [[segments]]     in ring order: id = position, cabinet, plc_slot, tie
//!    [segments.gun]         id, ratings, dispenser, connector   (none: module-only)
//!    [[segments.modules]]   id, address, ratings                (none: gun-only)
//!  [[dispensers]]   id, ocpp_identity, csms_url,
//!                   security_profile, csms_password_file, csms_ca_file,
//!                   transaction_start ("energy" | "ev_connected")
//! ```
//!
//! Segment `i`'s tie joins it to segment `i + 1`; the last segment's tie closes the ring
//! back to segment 0. `deploy/hubs/demo.toml` ([`DEMO_TOML`]) is the commented example.
//!
//! Parsing is pure ([`HubConfig::parse`]); [`HubConfig::load`] only adds reading the file.
//! It is done in two layers: serde reads the text into `raw` types that keep every value's
//! byte span, and `validate` checks them and builds the typed model below. Every refusal
//! is a [`ConfigError`] naming the file, the line and the field path.
//!
//! File paths a dispenser names (`csms_password_file`, `csms_ca_file`) are relative to the
//! config file's directory when the config is [loaded](HubConfig::load), so that a hub's
//! secrets can sit next to its config wherever the node is started from; a text given to
//! [`HubConfig::parse`] has no directory and keeps them as written (relative to the
//! working directory). The files themselves are read by the node, not here.

mod error;
mod ids;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
pub use ids::{CabinetId, ConnectorId, DispenserId, GunId, HubId, IdError, ModuleId, SegmentId};

use crate::can::{ModuleAddress, PlcSlot};
use crate::units::{Amps, Kilowatts, Volts};

/// The demo hub (`deploy/hubs/demo.toml`): 3 cabinets, 6 segments, 6 guns, 12 modules.
pub const DEMO_TOML: &str = include_str!("../../../deploy/hubs/demo.toml");

/// The origin [`HubConfig::demo`] reports in errors.
pub const DEMO_ORIGIN: &str = "deploy/hubs/demo.toml";

/// A whole hub, validated: every id is unique, every reference resolves, every rating is
/// positive. The fields are public so that tests and tools can adjust addresses and ports;
/// whoever changes ids or references keeps them consistent (the accessors then return
/// `None` rather than panic).
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// `[hub]`.
    pub hub: Hub,
    /// `[sim]`, with defaults for what the file leaves out.
    pub sim: SimConfig,
    /// `[[cabinets]]`, in file order.
    pub cabinets: Vec<Cabinet>,
    /// `[[segments]]`, in ring order: `segments[i].id == SegmentId(i)`.
    pub segments: Vec<Segment>,
    /// `[[dispensers]]`, in file order.
    pub dispensers: Vec<Dispenser>,
}

/// `[hub]`: what the whole hub shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Hub {
    /// The `<hub>` in every Zenoh key `ringhub/<hub>/…`.
    pub id: HubId,
    /// The grid connection: the granted power of all guns together stays below it (S8).
    pub site_limit: Kilowatts,
}

/// `[sim]`: the virtual hardware's ports and timings; nodes ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// TCP port where the simulator serves every cabinet's CAN bus (socketcand protocol).
    pub socketcand_port: u16,
    /// How long a simulated contactor takes to close or open.
    pub contactor_delay: Duration,
    /// How long a simulated PLC waits for the host heartbeat before opening its contactors.
    pub watchdog_timeout: Duration,
    /// The simulator's control socket, where scenarios plug in EVs and inject faults.
    pub control: SocketAddr,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            socketcand_port: 29536,
            contactor_delay: Duration::from_millis(30),
            watchdog_timeout: Duration::from_millis(500),
            control: SocketAddr::from(([127, 0, 0, 1], 29537)),
        }
    }
}

/// One power cabinet: one node, one CAN bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Cabinet {
    /// The cabinet's id; also its node's name.
    pub id: CabinetId,
    /// The CAN bus URI (`socketcan:can0`, `socketcand:HOST:PORT/BUS`); the node parses it.
    pub can: String,
    /// Where the node keeps its Raft log and state.
    pub data_dir: PathBuf,
    /// The Prometheus scrape address.
    pub metrics: SocketAddr,
    /// Zenoh endpoints the node listens on (`tcp/127.0.0.1:7447`).
    pub zenoh_listen: Vec<String>,
    /// Zenoh endpoints the node connects to; when the file leaves it out, the
    /// `zenoh_listen` of every cabinet listed before this one. One side per pair opens
    /// the link: Zenoh (1.10) adds a peer's new inbound link to a transport it still
    /// believes alive after a pause, and the two sides then disagree on declared keys.
    /// With one opener, the stale side refuses the second link until its lease ends.
    /// A config where two cabinets connect to each other is refused.
    pub zenoh_connect: Vec<String>,
    /// Who may charge on this cabinet's guns.
    pub auth: AuthMode,
    /// The id tokens accepted with [`AuthMode::Local`]; empty otherwise.
    pub local_auth_list: Vec<String>,
}

/// How a cabinet authorises a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone charges; no authorisation asked.
    #[default]
    Free,
    /// Only the id tokens of the cabinet's `local_auth_list`.
    Local,
    /// The CSMS decides (OCPP 1.6 `Authorize`).
    Ocpp,
}

/// When a dispenser's OCPP transactions start (issue 6, "Timing": "as soon as authorised
/// + plugged + energy flowing, or on EV connect, per configuration").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStart {
    /// When energy flows to the EV (authorised, plugged, and current above 1 A): the
    /// transaction bills only sessions that charged.
    #[default]
    Energy,
    /// As soon as the EV is plugged in and the session authorised (the lock closes), so
    /// the CSMS sees the transaction also when the EV never draws energy.
    EvConnected,
}

/// Whether a segment's tie contactor to the next segment exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tie {
    /// Fitted: the planner may close it.
    #[default]
    Fitted,
    /// Not built: the ring is cut here for good.
    Absent,
}

/// A section of DC bus with its PLC board, gun and modules (DESIGN.md §1).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Its position in ring order.
    pub id: SegmentId,
    /// The cabinet whose bus carries its PLC board and modules.
    pub cabinet: CabinetId,
    /// The PLC board's slot on that bus.
    pub plc_slot: PlcSlot,
    /// The tie to the next segment in ring order.
    pub tie: Tie,
    /// The gun; `None` on a module-only segment.
    pub gun: Option<Gun>,
    /// The power modules; empty on a gun-only segment.
    pub modules: Vec<Module>,
}

/// A charging gun (connector) and its cable's ratings.
#[derive(Debug, Clone, PartialEq)]
pub struct Gun {
    /// Unique in the hub.
    pub id: GunId,
    /// The cable's current rating.
    pub max_current: Amps,
    /// The cable's voltage rating.
    pub max_voltage: Volts,
    /// The dispenser (OCPP charge point) it hangs on.
    pub dispenser: DispenserId,
    /// Its OCPP connector id in that dispenser.
    pub connector: ConnectorId,
}

/// An AC/DC power module and its ratings.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// Unique in the hub.
    pub id: ModuleId,
    /// Its address on its cabinet's CAN bus.
    pub address: ModuleAddress,
    /// Rated output power.
    pub max_power: Kilowatts,
    /// Rated output current.
    pub max_current: Amps,
    /// Rated output voltage.
    pub max_voltage: Volts,
}

/// A dispenser: one OCPP charge point toward the CSMS, with one connector per gun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispenser {
    /// What guns refer to.
    pub id: DispenserId,
    /// The charge point identity (the last segment of the CSMS URL path in OCPP-J).
    pub ocpp_identity: String,
    /// The CSMS to connect to (`ws://` or `wss://`); `None` when none is configured.
    pub csms_url: Option<String>,
    /// How it proves itself to the CSMS (`security_profile`, `csms_password_file`).
    pub security: CsmsSecurity,
    /// The CAs trusted for `wss://` in place of the public roots (an operator's private
    /// PKI); `None`: the Mozilla roots.
    pub csms_ca_file: Option<PathBuf>,
    /// When its transactions start (`transaction_start`, default `energy`).
    pub transaction_start: TransactionStart,
}

/// An OCPP 1.6 security profile a dispenser may use toward its CSMS (OCPP 1.6 Security
/// Whitepaper, edition 3, §2). Profile 3 (TLS client certificates) is not supported.
///
/// The config holds where the password is, never the password: secrets do not belong in
/// a file that is copied to every cabinet and kept in version control.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CsmsSecurity {
    /// Profile 0: no credentials, for labs and tests.
    #[default]
    Unsecured,
    /// Profile 1: HTTP Basic auth over `ws://`.
    BasicAuth {
        /// The file holding the AuthorizationKey (the Basic auth password).
        password_file: PathBuf,
    },
    /// Profile 2: HTTP Basic auth over `wss://` (TLS).
    TlsBasicAuth {
        /// The file holding the AuthorizationKey (the Basic auth password).
        password_file: PathBuf,
    },
}

impl CsmsSecurity {
    /// The profile's number, as `security_profile` writes it.
    pub fn profile(&self) -> u8 {
        match self {
            Self::Unsecured => 0,
            Self::BasicAuth { .. } => 1,
            Self::TlsBasicAuth { .. } => 2,
        }
    }

    /// The password file, if the profile sends a password.
    pub fn password_file(&self) -> Option<&Path> {
        match self {
            Self::Unsecured => None,
            Self::BasicAuth { password_file } | Self::TlsBasicAuth { password_file } => {
                Some(password_file)
            }
        }
    }

    /// Whether the profile needs TLS (`wss://`).
    pub fn needs_tls(&self) -> bool {
        matches!(self, Self::TlsBasicAuth { .. })
    }

    /// The password file, by mutable reference, to rebase it.
    fn password_file_mut(&mut self) -> Option<&mut PathBuf> {
        match self {
            Self::Unsecured => None,
            Self::BasicAuth { password_file } | Self::TlsBasicAuth { password_file } => {
                Some(password_file)
            }
        }
    }
}

/// The two segments next to one around the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingNeighbours {
    /// The previous segment; its tie joins it to this one.
    pub prev: SegmentId,
    /// The next segment; this segment's tie joins them.
    pub next: SegmentId,
}

impl HubConfig {
    /// Parses and validates a config text. `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        validate::parse(text, origin)
    }

    /// Reads and parses a config file: the only IO of this module.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        let mut config = Self::parse(&text, &origin)?;
        if let Some(dir) = path.parent() {
            config.rebase_files(dir);
        }
        Ok(config)
    }

    /// Makes the relative file paths of the dispensers relative to `dir`, the config
    /// file's directory (see the module docs).
    fn rebase_files(&mut self, dir: &Path) {
        for dispenser in &mut self.dispensers {
            let files = dispenser
                .security
                .password_file_mut()
                .into_iter()
                .chain(dispenser.csms_ca_file.as_mut());
            for file in files {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
    }

    /// The demo hub ([`DEMO_TOML`]).
    pub fn demo() -> Self {
        // The unit tests parse DEMO_TOML, so this cannot fail in a tested build.
        Self::parse(DEMO_TOML, DEMO_ORIGIN).expect("deploy/hubs/demo.toml is a valid hub")
    }

    /// A cabinet by id.
    pub fn cabinet(&self, id: &CabinetId) -> Option<&Cabinet> {
        self.cabinets.iter().find(|c| &c.id == id)
    }

    /// A segment by id.
    pub fn segment(&self, id: SegmentId) -> Option<&Segment> {
        self.segments.get(id.index()).filter(|s| s.id == id)
    }

    /// A cabinet's segments, in ring order.
    pub fn segments_of<'a>(&'a self, cabinet: &'a CabinetId) -> impl Iterator<Item = &'a Segment> {
        self.segments.iter().filter(move |s| &s.cabinet == cabinet)
    }

    /// The cabinet a segment belongs to.
    pub fn cabinet_of_segment(&self, id: SegmentId) -> Option<&Cabinet> {
        self.cabinet(&self.segment(id)?.cabinet)
    }

    /// Every gun, in ring order, with its segment.
    pub fn guns(&self) -> impl Iterator<Item = (&Segment, &Gun)> {
        self.segments
            .iter()
            .filter_map(|s| s.gun.as_ref().map(|g| (s, g)))
    }

    /// A gun by id.
    pub fn gun(&self, id: GunId) -> Option<&Gun> {
        self.guns().find(|(_, g)| g.id == id).map(|(_, g)| g)
    }

    /// The segment a gun is on.
    pub fn segment_of_gun(&self, id: GunId) -> Option<&Segment> {
        self.guns().find(|(_, g)| g.id == id).map(|(s, _)| s)
    }

    /// The cabinet a gun belongs to.
    pub fn cabinet_of_gun(&self, id: GunId) -> Option<&Cabinet> {
        self.cabinet(&self.segment_of_gun(id)?.cabinet)
    }

    /// Every module, in ring order, with its segment.
    pub fn modules(&self) -> impl Iterator<Item = (&Segment, &Module)> {
        self.segments
            .iter()
            .flat_map(|s| s.modules.iter().map(move |m| (s, m)))
    }

    /// A module by id.
    pub fn module(&self, id: ModuleId) -> Option<&Module> {
        self.modules().find(|(_, m)| m.id == id).map(|(_, m)| m)
    }

    /// The segment a module is on.
    pub fn segment_of_module(&self, id: ModuleId) -> Option<&Segment> {
        self.modules().find(|(_, m)| m.id == id).map(|(s, _)| s)
    }

    /// The cabinet a module belongs to.
    pub fn cabinet_of_module(&self, id: ModuleId) -> Option<&Cabinet> {
        self.cabinet(&self.segment_of_module(id)?.cabinet)
    }

    /// A segment's neighbours around the ring, whether or not the ties between are fitted.
    /// A one-segment ring is its own neighbour.
    pub fn neighbours(&self, id: SegmentId) -> Option<RingNeighbours> {
        self.segment(id)?;
        let n = self.segments.len();
        let i = id.index();
        let at = |i: usize| self.segments.get(i).map(|s| s.id);
        Some(RingNeighbours {
            prev: at((i + n - 1) % n)?,
            next: at((i + 1) % n)?,
        })
    }

    /// Every tie around the ring: the segment it leaves, the next one, and whether it is
    /// fitted.
    pub fn ties(&self) -> impl Iterator<Item = (SegmentId, SegmentId, Tie)> {
        let n = self.segments.len();
        self.segments
            .iter()
            .enumerate()
            .map(move |(i, s)| (s.id, self.segments[(i + 1) % n].id, s.tie))
    }

    /// A dispenser by id.
    pub fn dispenser(&self, id: &DispenserId) -> Option<&Dispenser> {
        self.dispensers.iter().find(|d| &d.id == id)
    }

    /// The dispenser a gun hangs on.
    pub fn dispenser_of_gun(&self, id: GunId) -> Option<&Dispenser> {
        self.dispenser(&self.gun(id)?.dispenser)
    }

    /// A dispenser's guns, in ring order.
    pub fn guns_of<'a>(&'a self, dispenser: &'a DispenserId) -> impl Iterator<Item = &'a Gun> {
        self.guns()
            .map(|(_, g)| g)
            .filter(move |g| &g.dispenser == dispenser)
    }
}
