//! The scenarios: what breaks, chosen by the seed (victims, durations, fault kinds), each
//! bounded in time. A scenario only injects faults and watches what must hold *while*
//! they last (S7 on a cut-off node, detection of hardware faults); the checks every
//! scenario ends with are in [`crate::checks`].
//!
//! | family | scenarios |
//! | --- | --- |
//! | process | `kill-leader`, `kill-follower`, `pause-leader`, `pause-follower`, `kill-overlap`, `pause-kill-overlap` |
//! | network (namespaces only) | `partition-leader`, `partition-follower`, `partition-oneway`, `partition-pair`, `net-slow` |
//! | CAN | `can-disconnect`, `can-garbage`, `can-burst`, `plc-silent`, `module-silent` |
//! | hardware | `hw-weld`, `hw-overtemp`, `hw-isolation`, `hw-lock` |
//! | mixed | `mixed`: three seeded faults of any family in a row |

use std::time::{Duration, Instant};

use crate::checks::{Finding, IsolationWatch, LEASE, LatchLog};
use crate::error::Result;
use crate::hub::{CABINETS, Hub};
use crate::netns::LinkFault;
use crate::probe::{Admin, Control, eventually, scrape};
use crate::rng::Rng;

/// One scenario of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// What it does, for `--list`.
    pub about: &'static str,
    /// It cuts the network, so it needs namespaces.
    pub network: bool,
}

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "kill-leader",
        about: "SIGKILL the Raft leader, restart it 1-4 s later",
        network: false,
    },
    Scenario {
        name: "kill-follower",
        about: "SIGKILL a follower, restart it 1-4 s later",
        network: false,
    },
    Scenario {
        name: "pause-leader",
        about: "SIGSTOP the leader past its lease (2-5 s), SIGCONT",
        network: false,
    },
    Scenario {
        name: "pause-follower",
        about: "SIGSTOP a follower past its lease (2-5 s), SIGCONT",
        network: false,
    },
    Scenario {
        name: "kill-overlap",
        about: "SIGKILL two nodes one after the other (majority lost), restart both staggered",
        network: false,
    },
    Scenario {
        name: "pause-kill-overlap",
        about: "SIGSTOP the leader, SIGKILL a follower while it is stopped, bring both back",
        network: false,
    },
    Scenario {
        name: "partition-leader",
        about: "cut the leader off from both peers (both ways) for 5-8 s; S7 on it",
        network: true,
    },
    Scenario {
        name: "partition-follower",
        about: "cut a follower off from both peers (both ways) for 5-8 s; S7 on it",
        network: true,
    },
    Scenario {
        name: "partition-oneway",
        about: "drop what one node sends to another (one way) for 3-7 s",
        network: true,
    },
    Scenario {
        name: "partition-pair",
        about: "cut two nodes apart (both ways), the third sees both, for 3-7 s",
        network: true,
    },
    Scenario {
        name: "net-slow",
        about: "64 kbit/s links with a short queue (delay and loss) around one node for 4-8 s",
        network: true,
    },
    Scenario {
        name: "can-disconnect",
        about: "pull a cabinet's CAN bus for 0.3-3 s, then plug it back",
        network: false,
    },
    Scenario {
        name: "can-garbage",
        about: "corrupt frames (wrong DLC), unknown ids and a malformed line on a cabinet's bus",
        network: false,
    },
    Scenario {
        name: "can-burst",
        about: "a burst of 2,000-5,000 frames of unknown ids on a cabinet's bus",
        network: false,
    },
    Scenario {
        name: "plc-silent",
        about: "a PLC stops sending for 2-4 s (PLC_SILENT)",
        network: false,
    },
    Scenario {
        name: "module-silent",
        about: "a power module stops sending for 2-4 s (MODULE_SILENT)",
        network: false,
    },
    Scenario {
        name: "hw-weld",
        about: "a charging gun's contactor welds, the EV leaves (CONTACTOR_WELDED, S9)",
        network: false,
    },
    Scenario {
        name: "hw-overtemp",
        about: "a module in use trips on overtemperature",
        network: false,
    },
    Scenario {
        name: "hw-isolation",
        about: "a charging gun's isolation monitor trips (ISOLATION_FAULT)",
        network: false,
    },
    Scenario {
        name: "hw-lock",
        about: "an idle gun's lock fails, an EV arrives there (LOCK_FAILURE)",
        network: false,
    },
    Scenario {
        name: "mixed",
        about: "three seeded faults of any family, one after the other",
        network: false,
    },
];

/// Finds a scenario by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// Longest a hardware fault may take to be latched.
const DETECT: Duration = Duration::from_secs(20);

/// What a scenario works on, and what it found while its faults lasted.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The hub.
    pub hub: &'a mut Hub,
    /// The seeded choices.
    pub rng: Rng,
    /// Faults injected so far.
    pub faults: u32,
    /// What went wrong while the faults lasted.
    pub findings: Vec<Finding>,
    /// Guns with an EV plugged in.
    pub guns: Vec<u16>,
    /// Every latch seen.
    pub latches: LatchLog,
    /// When the last fault ended: recovery is timed from here.
    pub last_fault_end: Instant,
    /// When the run started, for the event log.
    started: Instant,
}

impl<'a> Ctx<'a> {
    /// A context on `hub` with the seeded stream `rng`.
    pub fn new(hub: &'a mut Hub, rng: Rng, guns: Vec<u16>) -> Self {
        Self {
            hub,
            rng,
            faults: 0,
            findings: Vec::new(),
            guns,
            latches: LatchLog::default(),
            last_fault_end: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Logs what happens, with the time since the start.
    pub fn event(&self, text: &str) {
        eprintln!("  [{:7.2}s] {text}", self.started.elapsed().as_secs_f64());
    }

    /// The simulator's control API.
    fn control(&self) -> Control {
        Control(self.hub.sim.control)
    }

    /// Counts one fault injected.
    fn injected(&mut self, text: &str) {
        self.faults += 1;
        self.event(text);
    }

    /// Marks the end of a fault.
    fn ended(&mut self, text: &str) {
        self.last_fault_end = Instant::now();
        self.event(text);
    }
}

/// The index of the node that leads, once one does.
pub async fn leader(hub: &Hub) -> Result<usize> {
    let metrics: Vec<_> = hub.nodes.iter().map(|n| n.metrics).collect();
    eventually("a Raft leader", Duration::from_secs(30), async || {
        let mut seen = Vec::new();
        for (i, addr) in metrics.iter().enumerate() {
            match scrape(*addr).await {
                Ok(m) if m.value("ringhub_raft_is_leader") == 1.0 => return Ok(i),
                Ok(_) => seen.push(format!("{} follows", CABINETS[i])),
                Err(e) => seen.push(format!("{}: {e}", CABINETS[i])),
            }
        }
        Err(seen.join("; "))
    })
    .await
}

/// A node other than `not`, seeded.
fn other(rng: &mut Rng, not: usize) -> usize {
    let others: Vec<usize> = (0..CABINETS.len()).filter(|&i| i != not).collect();
    *rng.pick(&others)
}

/// Plays scenario `name`'s faults on the hub.
pub async fn play(name: &str, ctx: &mut Ctx<'_>) -> Result<()> {
    match name {
        "mixed" => {
            let namespaces = ctx.hub.net.is_some();
            let pool: Vec<&'static str> = SCENARIOS
                .iter()
                .filter(|s| s.name != "mixed" && (namespaces || !s.network))
                .map(|s| s.name)
                .collect();
            for _ in 0..3 {
                let next = *ctx.rng.pick(&pool);
                ctx.event(&format!("mixed: {next}"));
                Box::pin(play(next, ctx)).await?;
                tokio::time::sleep(ctx.rng.millis(500, 3000)).await;
            }
            Ok(())
        }
        "kill-leader" | "kill-follower" => {
            let lead = leader(ctx.hub).await?;
            let victim = if name == "kill-leader" {
                lead
            } else {
                other(&mut ctx.rng, lead)
            };
            let hold = ctx.rng.millis(1000, 4000);
            ctx.hub.nodes[victim].kill();
            ctx.injected(&format!("SIGKILL {} for {hold:?}", CABINETS[victim]));
            tokio::time::sleep(hold).await;
            ctx.hub.nodes[victim].restart()?;
            ctx.ended(&format!("restarted {}", CABINETS[victim]));
            Ok(())
        }
        "pause-leader" | "pause-follower" => {
            let lead = leader(ctx.hub).await?;
            let victim = if name == "pause-leader" {
                lead
            } else {
                other(&mut ctx.rng, lead)
            };
            let hold = LEASE + ctx.rng.millis(500, 3500);
            ctx.hub.nodes[victim].proc.signal("STOP")?;
            ctx.injected(&format!("SIGSTOP {} for {hold:?}", CABINETS[victim]));
            tokio::time::sleep(hold).await;
            ctx.hub.nodes[victim].proc.signal("CONT")?;
            ctx.ended(&format!("SIGCONT {}", CABINETS[victim]));
            Ok(())
        }
        "kill-overlap" => {
            let first = ctx.rng.index(CABINETS.len());
            let second = other(&mut ctx.rng, first);
            ctx.hub.nodes[first].kill();
            ctx.injected(&format!("SIGKILL {}", CABINETS[first]));
            tokio::time::sleep(ctx.rng.millis(500, 2000)).await;
            ctx.hub.nodes[second].kill();
            ctx.injected(&format!("SIGKILL {} (no majority left)", CABINETS[second]));
            tokio::time::sleep(ctx.rng.millis(1000, 3000)).await;
            ctx.hub.nodes[first].restart()?;
            ctx.event(&format!("restarted {}", CABINETS[first]));
            tokio::time::sleep(ctx.rng.millis(500, 2000)).await;
            ctx.hub.nodes[second].restart()?;
            ctx.ended(&format!("restarted {}", CABINETS[second]));
            Ok(())
        }
        "pause-kill-overlap" => {
            let lead = leader(ctx.hub).await?;
            let follower = other(&mut ctx.rng, lead);
            ctx.hub.nodes[lead].proc.signal("STOP")?;
            ctx.injected(&format!("SIGSTOP {} (leader)", CABINETS[lead]));
            tokio::time::sleep(ctx.rng.millis(500, 1500)).await;
            ctx.hub.nodes[follower].kill();
            ctx.injected(&format!("SIGKILL {}", CABINETS[follower]));
            tokio::time::sleep(LEASE + ctx.rng.millis(0, 2000)).await;
            ctx.hub.nodes[lead].proc.signal("CONT")?;
            ctx.event(&format!("SIGCONT {}", CABINETS[lead]));
            tokio::time::sleep(ctx.rng.millis(500, 2000)).await;
            ctx.hub.nodes[follower].restart()?;
            ctx.ended(&format!("restarted {}", CABINETS[follower]));
            Ok(())
        }
        "partition-leader" | "partition-follower" => {
            let lead = leader(ctx.hub).await?;
            let victim = if name == "partition-leader" {
                lead
            } else {
                other(&mut ctx.rng, lead)
            };
            let hold = ctx.rng.millis(3000, 7000);
            let mut watch = IsolationWatch::before(ctx.hub, victim).await;
            network(ctx.hub)?.isolate(victim)?;
            ctx.injected(&format!(
                "cut {} off from its peers for {hold:?}",
                CABINETS[victim]
            ));
            watch.during(ctx.hub, hold).await;
            network(ctx.hub)?.heal()?;
            if let Some(after) = watch.degraded_after {
                ctx.event(&format!(
                    "{} went degraded {after:?} after the cut",
                    CABINETS[victim]
                ));
            }
            ctx.findings.append(&mut watch.findings);
            ctx.ended("healed");
            Ok(())
        }
        "partition-oneway" => {
            let from = ctx.rng.index(CABINETS.len());
            let to = other(&mut ctx.rng, from);
            let hold = ctx.rng.millis(3000, 7000);
            network(ctx.hub)?.impair(from, to, LinkFault::Cut)?;
            ctx.injected(&format!(
                "drop {} -> {} for {hold:?}",
                CABINETS[from], CABINETS[to]
            ));
            tokio::time::sleep(hold).await;
            network(ctx.hub)?.heal()?;
            ctx.ended("healed");
            Ok(())
        }
        "partition-pair" => {
            let a = ctx.rng.index(CABINETS.len());
            let b = other(&mut ctx.rng, a);
            let hold = ctx.rng.millis(3000, 7000);
            network(ctx.hub)?.cut_both(a, b)?;
            ctx.injected(&format!(
                "cut {} <-> {} for {hold:?}",
                CABINETS[a], CABINETS[b]
            ));
            tokio::time::sleep(hold).await;
            network(ctx.hub)?.heal()?;
            ctx.ended("healed");
            Ok(())
        }
        "net-slow" => {
            let victim = ctx.rng.index(CABINETS.len());
            let hold = ctx.rng.millis(4000, 8000);
            let net = network(ctx.hub)?;
            for peer in (0..CABINETS.len()).filter(|&p| p != victim) {
                net.impair(victim, peer, LinkFault::Slow)?;
                net.impair(peer, victim, LinkFault::Slow)?;
            }
            ctx.injected(&format!(
                "64 kbit/s links around {} for {hold:?}",
                CABINETS[victim]
            ));
            tokio::time::sleep(hold).await;
            network(ctx.hub)?.heal()?;
            ctx.ended("healed");
            Ok(())
        }
        "can-disconnect" => {
            let cabinet = ctx.rng.index(CABINETS.len());
            let hold = ctx.rng.millis(300, 3000);
            ctx.hub.can[cabinet].disconnect();
            ctx.injected(&format!(
                "CAN bus of {} pulled for {hold:?}",
                CABINETS[cabinet]
            ));
            tokio::time::sleep(hold).await;
            ctx.hub.can[cabinet].reconnect();
            ctx.ended("CAN bus plugged back");
            Ok(())
        }
        "can-garbage" | "can-burst" => {
            let cabinet = ctx.rng.index(CABINETS.len());
            let lines = if name == "can-burst" {
                burst(&mut ctx.rng)
            } else {
                garbage(&mut ctx.rng)
            };
            let relay = &ctx.hub.can[cabinet];
            let raw = eventually(
                "the node's CAN connection in raw mode",
                Duration::from_secs(20),
                async || match relay.raw_connections() {
                    0 => Err("no raw-mode connection".into()),
                    n => Ok(n),
                },
            )
            .await?;
            relay.inject(&lines);
            ctx.injected(&format!(
                "{} bad frames into {}'s bus ({raw} connection)",
                lines.len(),
                CABINETS[cabinet]
            ));
            ctx.ended("injected");
            Ok(())
        }
        "plc-silent" => {
            let segment = ctx.rng.range(0, 5) as u16;
            hardware(
                ctx,
                "plc_silence",
                segment,
                None,
                "PLC_SILENT",
                &segment.to_string(),
            )
            .await
        }
        "module-silent" => {
            let module = ctx.rng.range(0, 11) as u16;
            hardware(
                ctx,
                "module_silence",
                module,
                None,
                "MODULE_SILENT",
                &module.to_string(),
            )
            .await
        }
        "hw-overtemp" => {
            // A module of a charging gun's own segment: it is in use.
            let gun = *ctx.rng.pick(&ctx.guns.clone());
            let module = gun * 2 + ctx.rng.range(0, 1) as u16;
            hardware(
                ctx,
                "module_trip",
                module,
                None,
                "MODULE_",
                &module.to_string(),
            )
            .await
        }
        "hw-isolation" => {
            let gun = *ctx.rng.pick(&ctx.guns.clone());
            hardware(
                ctx,
                "isolation_fault",
                gun,
                None,
                "ISOLATION_FAULT",
                &gun.to_string(),
            )
            .await
        }
        "hw-weld" => {
            let gun = *ctx.rng.pick(&ctx.guns.clone());
            let control = ctx.control();
            let id = control.inject("contactor_weld", gun, Some("gc")).await?;
            ctx.injected(&format!("gun {gun}'s contactor welds"));
            // The weld shows once the contactor is told to open: the EV leaves.
            control.unplug(gun).await?;
            ctx.guns.retain(|&g| g != gun);
            ctx.event(&format!("the EV leaves gun {gun}"));
            expect_latch(ctx, "CONTACTOR_WELDED", None).await;
            control.repair(id).await?;
            ctx.ended(
                "the contactor is replaced in the simulator (the latch stays for an operator)",
            );
            Ok(())
        }
        "hw-lock" => {
            let idle: Vec<u16> = (0..6).filter(|g| !ctx.guns.contains(g)).collect();
            let gun = *ctx.rng.pick(&idle);
            let control = ctx.control();
            let id = control.inject("lock_failure", gun, None).await?;
            ctx.injected(&format!("gun {gun}'s lock fails"));
            crate::workload::arrive(control, &[gun], &mut ctx.rng).await?;
            ctx.event(&format!("an EV arrives at gun {gun}"));
            expect_latch(ctx, "LOCK_FAILURE", Some(&gun.to_string())).await;
            control.unplug(gun).await?;
            control.repair(id).await?;
            ctx.ended("the lock is repaired and the EV has left");
            Ok(())
        }
        other => Err(crate::error::ChaosError::UnknownScenario(other.to_owned())),
    }
}

/// The namespaces, or why a network scenario cannot run.
fn network(hub: &mut Hub) -> Result<&mut crate::netns::Network> {
    hub.net
        .as_mut()
        .ok_or_else(|| crate::error::ChaosError::Command {
            command: "ip netns".into(),
            detail: "no namespaces on this machine: network scenarios cannot run".into(),
        })
}

/// Injects a simulator fault for 2-4 s, expects a latch whose code starts with `code`,
/// and repairs it.
async fn hardware(
    ctx: &mut Ctx<'_>,
    kind: &str,
    target: u16,
    contactor: Option<&str>,
    code: &str,
    scope_id: &str,
) -> Result<()> {
    let control = ctx.control();
    let hold = ctx.rng.millis(2000, 4000);
    let id = control.inject(kind, target, contactor).await?;
    ctx.injected(&format!("{kind} on {target} for at least {hold:?}"));
    let started = Instant::now();
    expect_latch(ctx, code, Some(scope_id)).await;
    tokio::time::sleep(hold.saturating_sub(started.elapsed())).await;
    control.repair(id).await?;
    ctx.ended(&format!("{kind} repaired"));
    Ok(())
}

/// Waits for a latch whose code starts with `code` (on `scope_id` when given) in some
/// node's record; a `detection` finding if none comes within [`DETECT`].
async fn expect_latch(ctx: &mut Ctx<'_>, code: &str, scope_id: Option<&str>) {
    let admin = match Admin::connect("demo", &ctx.hub.endpoints()).await {
        Ok(admin) => admin,
        Err(e) => {
            ctx.findings.push(Finding::new("harness", e.to_string()));
            return;
        }
    };
    let found =
        eventually(&format!("a {code} latch"), DETECT, async || {
            let mut seen = Vec::new();
            for cabinet in CABINETS {
                if let Ok(view) = admin.view(cabinet).await {
                    if view.latches.iter().any(|l| {
                        l.code.starts_with(code) && scope_id.is_none_or(|s| l.scope_id == s)
                    }) {
                        return Ok(view);
                    }
                    seen.extend(
                        view.latches
                            .iter()
                            .map(|l| format!("{}@{}", l.code, l.scope_id)),
                    );
                }
            }
            Err(format!("latches {seen:?}"))
        })
        .await;
    admin.close().await;
    match found {
        Ok(view) => {
            ctx.latches.record(std::slice::from_ref(&view));
            ctx.event(&format!("{code} latched"));
        }
        Err(e) => ctx.findings.push(Finding::new("detection", e.to_string())),
    }
}

/// Frames no node should act on: wrong lengths on known ids, unknown ids, a reserved
/// extended id, and one malformed line.
fn garbage(rng: &mut Rng) -> Vec<String> {
    // PLC → host ids of the DBC, slot 0 and 1: RelayFeedback, ChargeInfo, PlcHeartbeat.
    let known = [0x0A0u32, 0x0B0, 0x1A0, 0x0A1, 0x0B1, 0x1A1];
    let mut lines = Vec::new();
    for _ in 0..rng.range(5, 20) {
        let id = *rng.pick(&known);
        // One byte where the DBC says 4 or 8.
        lines.push(format!(
            "< frame {id:03X} 0.000000 {:02X} >",
            rng.range(0, 255)
        ));
    }
    for _ in 0..rng.range(5, 20) {
        lines.push(format!(
            "< frame {:03X} 0.000000 DEADBEEF >",
            rng.range(0x600, 0x7FF)
        ));
    }
    lines.push(format!(
        "< frame {:08X} 0.000000 00 >",
        0x1F00_0000 + rng.range(0, 0xFFFF)
    ));
    if rng.chance(50) {
        lines.push("< frame ZZZ not-a-time XY >".to_owned());
    }
    lines
}

/// A burst of frames of unknown ids.
fn burst(rng: &mut Rng) -> Vec<String> {
    let count = rng.range(2000, 5000);
    (0..count)
        .map(|i| {
            format!(
                "< frame {:03X} 0.000000 {:016X} >",
                0x700 + (i % 0x80),
                rng.next_u64()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_a_unique_name() {
        let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len());
    }

    #[test]
    fn garbage_lines_are_socketcand_shaped() {
        let mut rng = Rng::new(3);
        for line in garbage(&mut rng).iter().chain(&burst(&mut rng)) {
            assert!(line.starts_with("< ") && line.ends_with(" >"), "{line}");
        }
    }
}
