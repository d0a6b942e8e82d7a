//! The demo's live view of the ring: what the nodes publish on Zenoh (each gun's session
//! and the budget the committed plan grants it, the latched faults) beside what the
//! simulator says is physically true (islands, currents, module temperatures). On a
//! terminal each frame replaces the last; otherwise frames follow one another.

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::time::Duration;

use prost::Message;
use ringhub_proto::config::HubConfig;
use ringhub_proto::v1;
use serde_json::Value;

type Subscriber =
    zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>;

/// How many recent scenario events the view keeps.
const EVENTS: usize = 8;

/// See the module docs.
pub(super) struct HubView {
    /// The hub config, for the site limit and cabinets.
    config: HubConfig,
    /// Keeps the subscriptions alive.
    _session: zenoh::Session,
    /// `gun/*/session` publications.
    sessions_sub: Subscriber,
    /// `fault/*` publications.
    faults_sub: Subscriber,
    /// Latest session per gun.
    sessions: BTreeMap<u32, v1::GunSession>,
    /// Faults in force, by key.
    faults: BTreeMap<String, v1::Fault>,
    /// Where the demo's processes are, shown above every frame.
    intro: Vec<String>,
    /// Recent scenario events, newest last.
    events: VecDeque<String>,
    /// Redraw in place (a terminal) or print frame after frame.
    in_place: bool,
}

impl HubView {
    /// Subscribes to the hub's publications through the cabinets' Zenoh endpoints.
    pub(super) async fn connect(config: &HubConfig, intro: Vec<String>) -> anyhow::Result<Self> {
        let endpoints: Vec<String> = config
            .cabinets
            .iter()
            .flat_map(|c| c.zenoh_listen.clone())
            .collect();
        let zenoh_config = crate::publish::zenoh_config(&[], &endpoints)?;
        let session = zenoh::open(zenoh_config)
            .await
            .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
        let hub = &config.hub.id;
        let subscribe = async |key: String| {
            session
                .declare_subscriber(key)
                .await
                .map_err(|e| anyhow::anyhow!("zenoh: {e}"))
        };
        let sessions_sub = subscribe(format!("ringhub/{hub}/gun/*/session")).await?;
        let faults_sub = subscribe(format!("ringhub/{hub}/fault/*")).await?;
        let in_place = std::io::stdout().is_terminal();
        if !in_place {
            for line in &intro {
                println!("{line}");
            }
        }
        Ok(Self {
            config: config.clone(),
            _session: session,
            sessions_sub,
            faults_sub,
            sessions: BTreeMap::new(),
            faults: BTreeMap::new(),
            intro,
            events: VecDeque::new(),
            in_place,
        })
    }

    /// Notes a scenario event.
    pub(super) fn event(&mut self, at: Duration, line: String) {
        let line = format!("t={:>4}s  {line}", at.as_secs());
        if !self.in_place {
            println!("{line}");
        }
        self.events.push_back(line);
        while self.events.len() > EVENTS {
            self.events.pop_front();
        }
    }

    /// Takes in what arrived since the last call.
    pub(super) fn drain(&mut self) {
        while let Ok(Some(sample)) = self.sessions_sub.try_recv() {
            if let Ok(session) = v1::GunSession::decode(sample.payload().to_bytes().as_ref()) {
                self.sessions.insert(session.gun_id, session);
            }
        }
        while let Ok(Some(sample)) = self.faults_sub.try_recv() {
            let key = sample.key_expr().as_str().to_owned();
            let Ok(update) = v1::FaultUpdate::decode(sample.payload().to_bytes().as_ref()) else {
                continue;
            };
            match update.fault {
                Some(fault) if fault.status() != v1::FaultStatus::Cleared => {
                    self.faults.insert(key, fault);
                }
                _ => {
                    self.faults.remove(&key);
                }
            }
        }
    }

    /// Prints one frame.
    pub(super) fn render(&self, at: Duration, truth: &Value) {
        let mut out = String::new();
        if self.in_place {
            // Home the cursor and clear the screen, then the intro.
            out.push_str("\x1b[H\x1b[2J");
            for line in &self.intro {
                out.push_str(line);
                out.push('\n');
            }
        }
        let epoch = self
            .sessions
            .values()
            .map(|s| s.plan_epoch)
            .max()
            .unwrap_or(0);
        let granted: u64 = self
            .sessions
            .values()
            .map(|s| u64::from(s.granted_power_w))
            .sum();
        let guns = truth["guns"].as_array().cloned().unwrap_or_default();
        let delivering: f64 = guns.iter().map(|g| delivered_kw(truth, g)).sum();
        out.push_str(&format!(
            "t={:>4}s · plan epoch {epoch} · site limit {:.0} kW · granted {:.1} kW · delivering {delivering:.1} kW · referee violations: {}\n",
            at.as_secs(),
            self.config.hub.site_limit.0,
            granted as f64 / 1000.0,
            truth["violations"]
        ));
        out.push_str(&ring_line(truth));
        out.push_str(
            "  gun seg cabinet  OCPP status     phase            grant kW │ sim: HLC phase            A      kW    SoC  modules\n",
        );
        for gun in &guns {
            out.push_str(&self.gun_line(truth, gun));
        }
        if self.faults.is_empty() {
            out.push_str("  faults: none\n");
        }
        for fault in self.faults.values() {
            out.push_str(&format!(
                "  fault {} {} on {} {}: {}\n",
                fault.fault_id,
                fault.code,
                short(fault.scope().as_str_name(), "FAULT_SCOPE_"),
                fault.scope_id,
                fault.reason
            ));
        }
        if self.in_place {
            out.push_str("  recent events:\n");
            for line in &self.events {
                out.push_str(&format!("    {line}\n"));
            }
            out.push_str("  Ctrl-C stops the demo and every node it started.\n");
        }
        print!("{out}");
    }

    /// One gun's row: the node's view, then the simulator's.
    fn gun_line(&self, truth: &Value, gun: &Value) -> String {
        let id = gun["id"].as_u64().unwrap_or_default();
        let segment = gun["segment"].as_u64().unwrap_or_default();
        let cabinet = truth["segments"][segment as usize]["cabinet"]
            .as_str()
            .unwrap_or("?");
        let session = u32::try_from(id).ok().and_then(|id| self.sessions.get(&id));
        let (status, phase, grant) = session.map_or(("-".into(), "-".into(), 0.0), |s| {
            (
                short(s.ocpp_status().as_str_name(), "OCPP_STATUS_"),
                short(s.phase().as_str_name(), "SESSION_PHASE_"),
                f64::from(s.granted_power_w) / 1000.0,
            )
        });
        // Rounding leaves a -0.0 now and then; a table should not show it.
        let current = gun["current_a"].as_f64().unwrap_or_default() + 0.0;
        let soc = gun["soc"]
            .as_f64()
            .map_or("-".to_owned(), |s| format!("{s:.1}%"));
        format!(
            "  {id:>3} {segment:>3} {cabinet:<8} {status:<15} {phase:<16} {grant:>8.1} │      {:<20} {current:>6.1} {:>7.1} {soc:>6}  {}\n",
            gun["hlc_phase"].as_str().unwrap_or("?"),
            delivered_kw(truth, gun),
            modules_of(truth, segment),
        )
    }
}

/// The ring as the simulator's contactors have it: each segment with its cabinet and the
/// gun its island energises (`→g1`), and each tie closed (`═`) or open (`┊`).
fn ring_line(truth: &Value) -> String {
    let mut line = String::from("  ring: ");
    let islands = truth["islands"].as_array().cloned().unwrap_or_default();
    for segment in truth["segments"].as_array().into_iter().flatten() {
        let tie_closed = segment["contactors"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == "mn" && c["closed"] == true);
        let feeds: String = islands
            .iter()
            .filter(|i| {
                i["segments"]
                    .as_array()
                    .is_some_and(|s| s.contains(&segment["id"]))
            })
            .flat_map(|i| i["energised_guns"].as_array().cloned().unwrap_or_default())
            .map(|g| format!("→g{g}"))
            .collect();
        line.push_str(&format!(
            "[{} {}{}]{}",
            segment["id"],
            segment["cabinet"].as_str().unwrap_or("?"),
            feeds,
            if tie_closed { "═" } else { "┊" }
        ));
    }
    line.push_str("  (═ tie closed, ┊ open; →g: the gun the island feeds)\n");
    line
}

/// The power `gun` delivers now, kW: its current at its island's voltage.
fn delivered_kw(truth: &Value, gun: &Value) -> f64 {
    let id = gun["id"].clone();
    let volts = truth["islands"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| {
            i["energised_guns"]
                .as_array()
                .is_some_and(|g| g.contains(&id))
        })
        .and_then(|i| i["voltage_v"].as_f64())
        .unwrap_or(0.0);
    (gun["current_a"].as_f64().unwrap_or(0.0) * volts / 1000.0).max(0.0)
}

/// The segment's modules: available kW and temperature, `trip` when tripped.
fn modules_of(truth: &Value, segment: u64) -> String {
    truth["modules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["segment"] == segment)
        .map(|m| {
            if m["tripped"] == true {
                format!("m{}:trip", m["id"])
            } else {
                format!(
                    "m{}:{:.0}kW/{:.0}°C",
                    m["id"],
                    m["available_kw"].as_f64().unwrap_or(0.0),
                    m["temperature_c"].as_f64().unwrap_or(0.0)
                )
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}
