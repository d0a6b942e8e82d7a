//! From text to a [`HubConfig`]: TOML syntax, then serde into the `raw` types (which
//! refuses unknown and missing fields, wrong types and integers out of range), then the
//! checks serde cannot make — ids, references, uniqueness, ratings — in file order, so the
//! first error reported is the first one in the file as far as possible.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::error::Source;
use super::ids::IdError;
use super::raw::{
    RawCabinet, RawDispenser, RawFile, RawGun, RawHub, RawModule, RawSegment, RawSim,
};
use super::{
    AuthMode, Cabinet, CabinetId, ConfigError, ConnectorId, CsmsSecurity, Dispenser, DispenserId,
    Gun, GunId, Hub, HubConfig, HubId, Module, ModuleId, Segment, SegmentId, SimConfig,
};
use crate::can::{ModuleAddress, PlcSlot};
use crate::units::{Amps, Kilowatts, Volts};

type Result<T> = std::result::Result<T, ConfigError>;

/// Parses and validates a config text.
pub(super) fn parse(text: &str, origin: &str) -> Result<HubConfig> {
    let src = Source { origin, text };
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| src.syntax_error(&e))?;
    let raw: RawFile = serde_path_to_error::deserialize(deserializer)
        .map_err(|e| src.serde_error(&e.path().to_string(), e.inner()))?;
    Validator::new(src).file(raw)
}

/// The first place an id was seen, to name it when the id comes again.
#[derive(Debug)]
struct Seen {
    /// The field path of the first occurrence.
    field: String,
    /// Its line.
    line: usize,
}

/// Validation state: the source for errors, and what has been seen so far.
#[derive(Debug)]
struct Validator<'a> {
    /// Where the text came from.
    src: Source<'a>,
}

impl<'a> Validator<'a> {
    fn new(src: Source<'a>) -> Self {
        Self { src }
    }

    fn error<T>(&self, spanned: &Spanned<T>, field: &str, message: String) -> ConfigError {
        self.src.error(&spanned.span(), field, message)
    }

    /// Records `key` as seen at `field`, or fails naming the first place it was seen.
    fn unique<K: Eq + Hash, T>(
        &self,
        seen: &mut HashMap<K, Seen>,
        key: K,
        at: &Spanned<T>,
        field: &str,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        match seen.entry(key) {
            Entry::Occupied(first) => Err(self.error(
                at,
                field,
                format!(
                    "duplicate {}: {} (line {}) has it too",
                    what(),
                    first.get().field,
                    first.get().line
                ),
            )),
            Entry::Vacant(slot) => {
                slot.insert(Seen {
                    field: field.to_owned(),
                    line: self.src.line_of(at.span().start),
                });
                Ok(())
            }
        }
    }

    fn text_id<T: FromStr<Err = IdError>>(&self, id: &Spanned<String>, field: &str) -> Result<T> {
        id.get_ref()
            .parse()
            .map_err(|e: IdError| self.error(id, field, e.to_string()))
    }

    /// A rating or limit: a finite number above zero.
    fn positive(&self, value: &Spanned<f64>, field: &str) -> Result<f64> {
        let v = *value.get_ref();
        if v > 0.0 && v.is_finite() {
            Ok(v)
        } else {
            Err(self.error(value, field, format!("must be above 0, not {v}")))
        }
    }

    fn non_empty(&self, value: &Spanned<String>, field: &str) -> Result<String> {
        if value.get_ref().trim().is_empty() {
            Err(self.error(value, field, "cannot be empty".to_owned()))
        } else {
            Ok(value.get_ref().clone())
        }
    }

    fn socket_addr(
        &self,
        value: &Spanned<String>,
        field: &str,
        example: &str,
    ) -> Result<SocketAddr> {
        value.get_ref().parse().map_err(|_| {
            self.error(
                value,
                field,
                format!(
                    "{:?} is not an IP address and port (like \"{example}\")",
                    value.get_ref()
                ),
            )
        })
    }

    /// Zenoh endpoints: `<protocol>/<address>`, as in `tcp/127.0.0.1:7447`.
    fn endpoints(&self, list: &[Spanned<String>], field: &str) -> Result<Vec<String>> {
        list.iter()
            .enumerate()
            .map(|(i, endpoint)| {
                let text = endpoint.get_ref();
                let well_formed = text.split_once('/').is_some_and(|(protocol, address)| {
                    !protocol.is_empty()
                        && protocol.chars().all(|c| c.is_ascii_alphanumeric())
                        && !address.is_empty()
                });
                if well_formed {
                    Ok(text.clone())
                } else {
                    Err(self.error(
                        endpoint,
                        &format!("{field}[{i}]"),
                        format!(
                            "{text:?} is not a Zenoh endpoint <protocol>/<address> \
                             (like \"tcp/127.0.0.1:7447\")"
                        ),
                    ))
                }
            })
            .collect()
    }

    fn file(&self, raw: RawFile) -> Result<HubConfig> {
        let hub = self.hub(raw.hub.get_ref())?;
        let sim = self.sim(raw.sim)?;
        if raw.cabinets.is_empty() {
            return Err(self.error(
                &raw.hub,
                "cabinets",
                "the hub has no cabinets: add at least one [[cabinets]] table".to_owned(),
            ));
        }
        if raw.segments.is_empty() {
            return Err(self.error(
                &raw.hub,
                "segments",
                "the hub has no segments: add at least one [[segments]] table".to_owned(),
            ));
        }
        let mut cabinets = self.cabinets(&raw.cabinets)?;
        let dispensers = self.dispensers(&raw.dispensers)?;
        let segments = self.segments(&raw.segments, &cabinets, &dispensers)?;

        for (i, (cabinet, raw_cabinet)) in cabinets.iter().zip(&raw.cabinets).enumerate() {
            if !segments.iter().any(|s| s.cabinet == cabinet.id) {
                return Err(self.error(
                    &raw_cabinet.get_ref().id,
                    &format!("cabinets[{i}].id"),
                    format!(
                        "cabinet {:?} has no segment: give it one, or remove it",
                        cabinet.id.as_str()
                    ),
                ));
            }
        }
        for (i, (dispenser, raw_dispenser)) in dispensers.iter().zip(&raw.dispensers).enumerate() {
            let has_gun = segments
                .iter()
                .filter_map(|s| s.gun.as_ref())
                .any(|g| g.dispenser == dispenser.id);
            if !has_gun {
                return Err(self.error(
                    &raw_dispenser.get_ref().id,
                    &format!("dispensers[{i}].id"),
                    format!(
                        "dispenser {:?} has no gun: name it in a [segments.gun] table, or remove it",
                        dispenser.id.as_str()
                    ),
                ));
            }
        }

        // Default mesh: each node connects to the cabinets listed before it, so that
        // every pair has one link, opened by one side (see `Cabinet::zenoh_connect`).
        for (i, raw_cabinet) in raw.cabinets.iter().enumerate() {
            if raw_cabinet.get_ref().zenoh_connect.is_none() {
                let others = cabinets
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j < i)
                    .flat_map(|(_, c)| c.zenoh_listen.iter().cloned())
                    .collect();
                if let Some(cabinet) = cabinets.get_mut(i) {
                    cabinet.zenoh_connect = others;
                }
            }
        }
        self.one_link_per_pair(&raw.cabinets, &cabinets)?;

        Ok(HubConfig {
            hub,
            sim,
            cabinets,
            segments,
            dispensers,
        })
    }

    fn hub(&self, raw: &RawHub) -> Result<Hub> {
        Ok(Hub {
            id: self.text_id::<HubId>(&raw.id, "hub.id")?,
            site_limit: Kilowatts(self.positive(&raw.site_limit_kw, "hub.site_limit_kw")?),
        })
    }

    fn sim(&self, raw: Option<RawSim>) -> Result<SimConfig> {
        let mut sim = SimConfig::default();
        let Some(raw) = raw else { return Ok(sim) };
        if let Some(port) = raw.socketcand_port {
            sim.socketcand_port = port;
        }
        if let Some(ms) = raw.contactor_delay_ms {
            sim.contactor_delay = Duration::from_millis(*ms.get_ref());
        }
        if let Some(ms) = raw.watchdog_timeout_ms {
            if *ms.get_ref() == 0 {
                return Err(self.error(
                    &ms,
                    "sim.watchdog_timeout_ms",
                    "must be above 0".to_owned(),
                ));
            }
            sim.watchdog_timeout = Duration::from_millis(*ms.get_ref());
        }
        if let Some(control) = &raw.control {
            sim.control = self.socket_addr(control, "sim.control", "127.0.0.1:29537")?;
        }
        Ok(sim)
    }

    fn cabinets(&self, raw: &[Spanned<RawCabinet>]) -> Result<Vec<Cabinet>> {
        let mut ids = HashMap::new();
        let mut cabinets = Vec::with_capacity(raw.len());
        for (i, raw) in raw.iter().enumerate() {
            let raw = raw.get_ref();
            let at = |name: &str| format!("cabinets[{i}].{name}");
            let id: CabinetId = self.text_id(&raw.id, &at("id"))?;
            self.unique(&mut ids, id.clone(), &raw.id, &at("id"), || {
                format!("cabinet id {:?}", id.as_str())
            })?;
            let auth = raw.auth.as_ref().map(|a| *a.get_ref()).unwrap_or_default();
            let local_auth_list = match (&raw.local_auth_list, &raw.auth) {
                (Some(list), _) if auth != AuthMode::Local => {
                    return Err(self.error(
                        list,
                        &at("local_auth_list"),
                        "is used only with auth = \"local\"".to_owned(),
                    ));
                }
                (None, Some(auth_at)) if auth == AuthMode::Local => {
                    return Err(self.error(
                        auth_at,
                        &at("auth"),
                        "auth = \"local\" needs a local_auth_list of the id tokens to accept"
                            .to_owned(),
                    ));
                }
                (Some(list), _) => list
                    .get_ref()
                    .iter()
                    .enumerate()
                    .map(|(j, token)| self.non_empty(token, &at(&format!("local_auth_list[{j}]"))))
                    .collect::<Result<_>>()?,
                (None, _) => Vec::new(),
            };
            let connect = match &raw.zenoh_connect {
                Some(list) => self.endpoints(list, &at("zenoh_connect"))?,
                None => Vec::new(), // filled in once every cabinet is known
            };
            cabinets.push(Cabinet {
                id,
                can: self.non_empty(&raw.can, &at("can"))?,
                data_dir: PathBuf::from(self.non_empty(&raw.data_dir, &at("data_dir"))?),
                metrics: self.socket_addr(&raw.metrics, &at("metrics"), "127.0.0.1:9101")?,
                zenoh_listen: self.endpoints(&raw.zenoh_listen, &at("zenoh_listen"))?,
                zenoh_connect: connect,
                auth,
                local_auth_list,
            });
        }
        Ok(cabinets)
    }

    /// Refuses two cabinets that connect to each other (see `Cabinet::zenoh_connect`),
    /// naming an endpoint the file wrote: the later cabinet's, or else the earlier one's
    /// (the default mesh never connects a cabinet to one listed after it).
    fn one_link_per_pair(&self, raw: &[Spanned<RawCabinet>], cabinets: &[Cabinet]) -> Result<()> {
        let connects = |from: &Cabinet, to: &Cabinet| {
            from.zenoh_connect
                .iter()
                .position(|e| to.zenoh_listen.contains(e))
        };
        let written = |i: usize| raw.get(i).and_then(|r| r.get_ref().zenoh_connect.as_ref());
        for (i, later) in cabinets.iter().enumerate() {
            for (j, earlier) in cabinets[..i].iter().enumerate() {
                let (Some(k_later), Some(k_earlier)) =
                    (connects(later, earlier), connects(earlier, later))
                else {
                    continue;
                };
                let (at, k, from, to) = if written(i).is_some() {
                    (i, k_later, later, earlier)
                } else {
                    (j, k_earlier, earlier, later)
                };
                if let Some(endpoint) = written(at).and_then(|list| list.get(k)) {
                    return Err(self.error(
                        endpoint,
                        &format!("cabinets[{at}].zenoh_connect[{k}]"),
                        format!(
                            "{} connects to {} here, and {} connects to {} too: keep one link \
                             per pair (leave zenoh_connect out and the cabinet listed later \
                             connects), two can lose messages after a node stalls",
                            from.id, to.id, to.id, from.id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn dispensers(&self, raw: &[Spanned<RawDispenser>]) -> Result<Vec<Dispenser>> {
        let mut ids = HashMap::new();
        let mut identities = HashMap::new();
        let mut dispensers = Vec::with_capacity(raw.len());
        for (i, raw) in raw.iter().enumerate() {
            let raw = raw.get_ref();
            let at = |name: &str| format!("dispensers[{i}].{name}");
            let id: DispenserId = self.text_id(&raw.id, &at("id"))?;
            self.unique(&mut ids, id.clone(), &raw.id, &at("id"), || {
                format!("dispenser id {:?}", id.as_str())
            })?;
            let identity = raw.ocpp_identity.get_ref();
            if identity.is_empty() || identity.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(self.error(
                    &raw.ocpp_identity,
                    &at("ocpp_identity"),
                    format!(
                        "{identity:?} cannot be a charge point identity: it must be non-empty, \
                         without spaces or '/' (it ends the CSMS URL)"
                    ),
                ));
            }
            self.unique(
                &mut identities,
                identity.clone(),
                &raw.ocpp_identity,
                &at("ocpp_identity"),
                || format!("OCPP identity {identity:?}"),
            )?;
            let csms_url = match &raw.csms_url {
                Some(url) => {
                    let text = url.get_ref();
                    let rest = text
                        .strip_prefix("ws://")
                        .or_else(|| text.strip_prefix("wss://"));
                    if rest.is_none_or(str::is_empty) {
                        return Err(self.error(
                            url,
                            &at("csms_url"),
                            format!("{text:?} is not a ws:// or wss:// URL"),
                        ));
                    }
                    Some(text.clone())
                }
                None => None,
            };
            let (security, csms_ca_file) = self.csms_security(raw, &format!("dispensers[{i}]"))?;
            dispensers.push(Dispenser {
                id,
                ocpp_identity: identity.clone(),
                csms_url,
                security,
                csms_ca_file,
                transaction_start: raw
                    .transaction_start
                    .as_ref()
                    .map(|t| *t.get_ref())
                    .unwrap_or_default(),
            });
        }
        Ok(dispensers)
    }

    /// A dispenser's security profile, password file and CA file, checked against each
    /// other and against its `csms_url` (already known to be `ws://` or `wss://`). Profile
    /// 1 is kept to `ws://` and profile 2 to `wss://`, so that the number says whether
    /// the link is encrypted.
    fn csms_security(
        &self,
        raw: &RawDispenser,
        path: &str,
    ) -> Result<(CsmsSecurity, Option<PathBuf>)> {
        let at = |name: &str| format!("{path}.{name}");
        let profile = raw.security_profile.as_ref().map_or(0, |p| *p.get_ref());
        if let Some(spanned) = &raw.security_profile {
            match profile {
                0..=2 => {}
                3 => {
                    return Err(self.error(
                        spanned,
                        &at("security_profile"),
                        "security profile 3 (TLS client certificates) is not supported: use 2 \
                         (Basic auth over wss://)"
                            .to_owned(),
                    ));
                }
                other => {
                    return Err(self.error(
                        spanned,
                        &at("security_profile"),
                        format!(
                            "{other} is not a security profile: use 0 (no credentials), 1 \
                             (Basic auth over ws://) or 2 (Basic auth over wss://)"
                        ),
                    ));
                }
            }
        }

        let password_file = match &raw.csms_password_file {
            Some(file) if profile == 0 => {
                return Err(self.error(
                    file,
                    &at("csms_password_file"),
                    "is used only with security_profile = 1 or 2".to_owned(),
                ));
            }
            Some(file) => Some(PathBuf::from(
                self.non_empty(file, &at("csms_password_file"))?,
            )),
            None => None,
        };
        let security = match (profile, password_file, &raw.security_profile) {
            (1, Some(password_file), _) => CsmsSecurity::BasicAuth { password_file },
            (2, Some(password_file), _) => CsmsSecurity::TlsBasicAuth { password_file },
            (1 | 2, None, Some(spanned)) => {
                return Err(self.error(
                    spanned,
                    &at("security_profile"),
                    format!(
                        "security_profile = {profile} needs csms_password_file, the file \
                         holding the AuthorizationKey (the Basic auth password)"
                    ),
                ));
            }
            // Profile 0: a profile 1 or 2 was written down, so it has a span above.
            _ => CsmsSecurity::Unsecured,
        };

        if let (Some(written), Some(url)) = (&raw.security_profile, &raw.csms_url) {
            let line = self.src.line_of(written.span().start);
            let tls = url.get_ref().starts_with("wss://");
            let wrong = match (&security, tls) {
                (CsmsSecurity::BasicAuth { .. }, true) => Some(format!(
                    "security_profile = 1 (line {line}) is Basic auth over plain ws://: for \
                     {:?} use security_profile = 2",
                    url.get_ref()
                )),
                (CsmsSecurity::TlsBasicAuth { .. }, false) => Some(format!(
                    "security_profile = 2 (line {line}) sends the password over TLS only: the \
                     URL must be wss://, not {:?}",
                    url.get_ref()
                )),
                _ => None,
            };
            if let Some(message) = wrong {
                return Err(self.error(url, &at("csms_url"), message));
            }
        }

        let ca_file = match &raw.csms_ca_file {
            Some(file) => {
                let plain_url = raw
                    .csms_url
                    .as_ref()
                    .is_some_and(|url| url.get_ref().starts_with("ws://"));
                if plain_url || matches!(security, CsmsSecurity::BasicAuth { .. }) {
                    return Err(self.error(
                        file,
                        &at("csms_ca_file"),
                        "is used only over wss:// (security_profile = 2, or 0 with a wss:// \
                         csms_url)"
                            .to_owned(),
                    ));
                }
                Some(PathBuf::from(self.non_empty(file, &at("csms_ca_file"))?))
            }
            None => None,
        };
        Ok((security, ca_file))
    }

    fn segments(
        &self,
        raw: &[Spanned<RawSegment>],
        cabinets: &[Cabinet],
        dispensers: &[Dispenser],
    ) -> Result<Vec<Segment>> {
        let mut slots = HashMap::new();
        let mut gun_ids = HashMap::new();
        let mut connectors = HashMap::new();
        let mut module_ids = HashMap::new();
        let mut addresses = HashMap::new();
        let mut segments = Vec::with_capacity(raw.len());
        for (i, raw) in raw.iter().enumerate() {
            let raw = raw.get_ref();
            let at = |name: &str| format!("segments[{i}].{name}");

            let id = *raw.id.get_ref();
            if usize::from(id) != i {
                return Err(self.error(
                    &raw.id,
                    &at("id"),
                    format!(
                        "segment id {id} at ring position {i}: segments are listed in ring \
                         order and numbered from 0, so this one must be {i}"
                    ),
                ));
            }

            let name = raw.cabinet.get_ref();
            let Some(cabinet) = cabinets.iter().find(|c| c.id == name.as_str()) else {
                let known: Vec<&str> = cabinets.iter().map(|c| c.id.as_str()).collect();
                return Err(self.error(
                    &raw.cabinet,
                    &at("cabinet"),
                    format!("unknown cabinet {name:?} (known: {})", known.join(", ")),
                ));
            };

            let slot = *raw.plc_slot.get_ref();
            let Some(plc_slot) = PlcSlot::new(slot) else {
                return Err(self.error(
                    &raw.plc_slot,
                    &at("plc_slot"),
                    format!("PLC slot {slot} is out of range 0..={}", PlcSlot::COUNT - 1),
                ));
            };
            self.unique(
                &mut slots,
                (cabinet.id.clone(), plc_slot),
                &raw.plc_slot,
                &at("plc_slot"),
                || format!("PLC slot {slot} on cabinet {:?}", cabinet.id.as_str()),
            )?;

            let gun = match &raw.gun {
                Some(gun) => {
                    Some(self.gun(gun, &at("gun"), dispensers, &mut gun_ids, &mut connectors)?)
                }
                None => None,
            };

            let mut modules = Vec::with_capacity(raw.modules.len());
            for (j, module) in raw.modules.iter().enumerate() {
                modules.push(self.module(
                    module,
                    &at(&format!("modules[{j}]")),
                    &cabinet.id,
                    &mut module_ids,
                    &mut addresses,
                )?);
            }

            segments.push(Segment {
                id: SegmentId(id),
                cabinet: cabinet.id.clone(),
                plc_slot,
                tie: raw.tie,
                gun,
                modules,
            });
        }
        Ok(segments)
    }

    fn gun(
        &self,
        raw: &RawGun,
        path: &str,
        dispensers: &[Dispenser],
        ids: &mut HashMap<u16, Seen>,
        connectors: &mut HashMap<(DispenserId, u32), Seen>,
    ) -> Result<Gun> {
        let at = |name: &str| format!("{path}.{name}");
        let id = *raw.id.get_ref();
        self.unique(ids, id, &raw.id, &at("id"), || format!("gun id {id}"))?;
        let max_current = Amps(self.positive(&raw.max_current_a, &at("max_current_a"))?);
        let max_voltage = Volts(self.positive(&raw.max_voltage_v, &at("max_voltage_v"))?);

        let name = raw.dispenser.get_ref();
        let Some(dispenser) = dispensers.iter().find(|d| d.id == name.as_str()) else {
            let known: Vec<&str> = dispensers.iter().map(|d| d.id.as_str()).collect();
            let known = if known.is_empty() {
                "none: add a [[dispensers]] table".to_owned()
            } else {
                format!("known: {}", known.join(", "))
            };
            return Err(self.error(
                &raw.dispenser,
                &at("dispenser"),
                format!("unknown dispenser {name:?} ({known})"),
            ));
        };

        let connector = *raw.connector.get_ref();
        if connector == 0 {
            return Err(self.error(
                &raw.connector,
                &at("connector"),
                "OCPP connector ids count from 1 (0 is the charge point itself)".to_owned(),
            ));
        }
        self.unique(
            connectors,
            (dispenser.id.clone(), connector),
            &raw.connector,
            &at("connector"),
            || {
                format!(
                    "connector {connector} on dispenser {:?}",
                    dispenser.id.as_str()
                )
            },
        )?;

        Ok(Gun {
            id: GunId(id),
            max_current,
            max_voltage,
            dispenser: dispenser.id.clone(),
            connector: ConnectorId(connector),
        })
    }

    fn module(
        &self,
        raw: &RawModule,
        path: &str,
        cabinet: &CabinetId,
        ids: &mut HashMap<u16, Seen>,
        addresses: &mut HashMap<(CabinetId, u8), Seen>,
    ) -> Result<Module> {
        let at = |name: &str| format!("{path}.{name}");
        let id = *raw.id.get_ref();
        self.unique(ids, id, &raw.id, &at("id"), || format!("module id {id}"))?;
        let address = *raw.address.get_ref();
        self.unique(
            addresses,
            (cabinet.clone(), address),
            &raw.address,
            &at("address"),
            || format!("module address {address} on cabinet {:?}", cabinet.as_str()),
        )?;
        Ok(Module {
            id: ModuleId(id),
            address: ModuleAddress(address),
            max_power: Kilowatts(self.positive(&raw.max_power_kw, &at("max_power_kw"))?),
            max_current: Amps(self.positive(&raw.max_current_a, &at("max_current_a"))?),
            max_voltage: Volts(self.positive(&raw.max_voltage_v, &at("max_voltage_v"))?),
        })
    }
}
