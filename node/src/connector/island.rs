//! The segment's part in a shared island (DESIGN.md §1, §4): the plan in force makes it
//! the island's *host* (its gun draws on other segments' modules too), a *donor* (its
//! modules feed a gun on another segment, and its own gun stays off, S2), or leaves it
//! *alone*; and it says whether the segment's tie to the next one is closed.
//!
//! The node refreshes the part on every tick ([`SegmentController::set_island`]); the
//! controller carries it out on its own measurements:
//!
//! - **Tie, make (S3).** The tie closes only when the segment's bus and the far side,
//!   as the tie driver measures it, are both below 60 V or within 10 V (S3 allows 20),
//!   and have stayed so, each side steady within 5 V, for 200 ms.
//!   A donor brings its bus there: while its path to the host is open it precharges to
//!   the host's measured bus voltage (modules on at a precharge current, no load).
//! - **Tie, break (S4).** A tie the plan opens is opened once the driver measures less
//!   than 5 A through it. The current falls because a segment cut off from its host
//!   ramps its modules to zero and the host caps its gun to what it keeps. If it does
//!   not fall within [`TIE_RAMP_DOWN`], the tie is opened as an emergency, latched as
//!   OPEN_UNDER_LOAD; with the PLC silent, at once (when in doubt, open).
//! - **Separation (S2).** A gun precharges and closes its contactor only while every
//!   tie around its island reads open, so a segment cut off from another gun's island
//!   never energises its own gun while still joined to it.
//! - **Sharing.** A connected donor's modules regulate to the host's voltage and deliver
//!   the host's share of their current capability, as the host's own modules do; a
//!   donor that has not heard its host ramps to zero.
//!
//! [`SegmentController::island_reached`] says when the part is carried out, for the
//! epoch report that lets the leader go on to the next plan (break before make).

use std::time::{Duration, Instant};

use ringhub_cluster::record::Evidence;
use ringhub_proto::units::{Amps, Volts};

use super::controller::{SegmentController, Which};
use super::modules::Setpoint;
use super::snapshot::FaultCode;

/// How long the current through a tie the plan opens may take to fall below 5 A.
pub const TIE_RAMP_DOWN: Duration = Duration::from_secs(2);
/// How long a tie the plan closes may wait for its two sides to match. Past it the
/// segment's part counts as done, the tie is reported stuck open so that the planner
/// stops counting on it (a segment without modules between an energised host and a
/// donor can never be matched), and it is tried again once the plan lets it open.
pub const TIE_MAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A tie closes across at most this difference (S3 allows 20 V; the margin covers
/// measurement error and the voltage moving during the contactor's travel).
const TIE_MATCH_V: f64 = 10.0;
/// Both sides below this are de-energised (S3).
const DEAD_BUS_V: f64 = 60.0;
/// A tie opens below this (S4).
const OPEN_BELOW_A: f64 = 5.0;
/// The match (or both sides dead) must hold this long, with both sides' buses steady
/// within [`STEADY_V`], before the tie closes: a side still ramping or discharging can
/// pass through a match, or sit within it while both fall, without staying there.
const TIE_MATCH_HOLD: Duration = Duration::from_millis(200);
const STEADY_V: f64 = 5.0;
/// Current a donor's modules give, together, while they precharge its bus.
const DONOR_PRECHARGE_A: f64 = 5.0;

/// What a host asks of every module in its island.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HostSetpoint {
    /// Bus voltage on the host's segment: a donor not yet connected precharges to it.
    pub bus_voltage: Volts,
    /// Voltage the island's modules regulate to; 0 while the gun draws nothing.
    pub voltage: Volts,
    /// Fraction of its current capability that each module delivers, 0 to 1.
    pub share: f64,
}

/// The segment's role in the island the plan in force puts it in.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum IslandRole {
    /// Its gun, if any, runs on its own modules only: an island of one, or a segment
    /// cut off from its island on the way between two plans.
    #[default]
    Alone,
    /// Its gun is the island's: it also draws on the donors' modules, of which `donors`
    /// amperes are connected and following now.
    Host { donors: Amps },
    /// Its modules feed the gun on another segment; its own gun stays off (S2).
    Donor {
        /// The host's latest setpoint, if heard recently.
        host: Option<HostSetpoint>,
        /// Its bus is joined to the host's by closed ties.
        connected: bool,
        /// The modules the plan gives the host (bit i: module i); the others rest (S1).
        modules: u8,
    },
}

/// The plan's wishes for the segment, as the node sees them now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IslandPart {
    pub role: IslandRole,
    /// The plan closes the segment's tie to the next one.
    pub tie_closed: bool,
    /// Every tie around the segment's island that the plan opens reads open: only then
    /// may its gun precharge and close its contactor (S2). A segment cut off from its
    /// island on the way between two plans waits here until its ties have opened.
    pub separated: bool,
}

impl Default for IslandPart {
    /// A segment on its own, ties open: a controller used without a node around it.
    fn default() -> Self {
        Self {
            role: IslandRole::Alone,
            tie_closed: false,
            separated: true,
        }
    }
}

/// What a donor tells its host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DonorStatus {
    /// Joined to the host and following its setpoint.
    pub connected: bool,
    /// Current its modules can give at the host's voltage.
    pub capability: Amps,
}

impl SegmentController {
    /// The part the plan in force gives the segment; acted on from the next tick.
    pub fn set_island(&mut self, part: IslandPart) {
        self.island = part;
    }

    pub(super) fn is_donor(&self) -> bool {
        matches!(self.island.role, IslandRole::Donor { .. })
    }

    /// Current of the donors' modules that the gun may draw on, as a host.
    pub(super) fn donor_current(&self) -> f64 {
        match self.island.role {
            IslandRole::Host { donors } => donors.0.max(0.0),
            _ => 0.0,
        }
    }

    /// What the segment asks of its donors, as a host; `None` otherwise.
    pub fn host_setpoint(&self) -> Option<HostSetpoint> {
        matches!(self.island.role, IslandRole::Host { .. }).then_some(self.host_out)
    }

    /// What the segment tells its host, as a donor; `None` otherwise.
    pub fn donor_status(&self, now: Instant) -> Option<DonorStatus> {
        let IslandRole::Donor {
            host,
            connected,
            modules,
        } = self.island.role
        else {
            return None;
        };
        let voltage = host.map_or(0.0, |h| h.voltage.0.max(h.bus_voltage.0));
        let capability = self
            .modules
            .iter()
            .enumerate()
            .filter(|(i, m)| modules >> i & 1 == 1 && m.in_service(now))
            .map(|(_, m)| m.current_capability(voltage, now))
            .sum();
        Some(DonorStatus {
            connected,
            capability: Amps(capability),
        })
    }

    /// The plan has wanted the tie closed for [`TIE_MAKE_TIMEOUT`] and its sides never
    /// matched.
    pub fn tie_unmade(&self, now: Instant) -> bool {
        !self.relays.wanted(Which::Tie)
            && self
                .tie_wanted_since
                .is_some_and(|since| now.duration_since(since) >= TIE_MAKE_TIMEOUT)
    }

    /// The tie's feedback, with a tie fitted and the PLC heard.
    pub fn tie_reads_closed(&self) -> Option<bool> {
        let feedback = self.plc.feedback.filter(|_| self.setup.tie_fitted)?;
        Some(feedback.closed.ties & 1 == 1)
    }

    /// The part is carried out: the tie reads as the plan wants it, and a donor's gun
    /// contactor reads open. A segment whose PLC is silent has nothing left to do: its
    /// watchdog has opened everything.
    pub fn island_reached(&self, now: Instant) -> bool {
        let Some(feedback) = self.plc.feedback.filter(|_| self.plc_online(now)) else {
            return true;
        };
        let tie_closed = feedback.closed.ties & 1 == 1;
        let tie_ok = !self.setup.tie_fitted
            || self.tie_unmade(now)
            || (tie_closed == self.island.tie_closed
                && self.relays.wanted(Which::Tie) == self.island.tie_closed);
        let gun_ok = !self.is_donor() || feedback.closed.gun & 1 == 0;
        tie_ok && gun_ok
    }

    /// A donor's modules: following the host once connected, precharging the bus to
    /// the host's while not, off when the host's bus is dead or the host is not heard.
    pub(super) fn donate(&mut self, now: Instant) {
        let IslandRole::Donor {
            host,
            connected,
            modules,
        } = self.island.role
        else {
            return;
        };
        let Some(host) = host else {
            // Not heard: ramp to zero, stay connected to what the plan gave.
            for m in &mut self.modules {
                m.setpoint.current = Amps(0.0);
            }
            return;
        };
        if connected {
            if host.voltage.0 <= 0.0 {
                // The host draws nothing: modules off, still joined.
                for m in &mut self.modules {
                    m.setpoint = Setpoint::default();
                }
                return;
            }
            let share = host.share.clamp(0.0, 1.0);
            self.drive_each(
                host.voltage.0,
                modules,
                |capability| capability * share,
                now,
            );
        } else if host.bus_voltage.0 >= DEAD_BUS_V {
            let each = DONOR_PRECHARGE_A / modules.count_ones().max(1) as f64;
            let bus = host.bus_voltage.0;
            self.drive_each(bus, modules, |capability| capability.min(each), now);
        } else {
            // Both sides stay dead until the tie closes.
            self.release_modules(now);
        }
    }

    /// The tie: closed when the plan wants it and S3 holds, opened when the plan no
    /// longer wants it and S4 allows (see the module docs).
    pub(super) fn step_tie(&mut self, now: Instant) {
        if !self.setup.tie_fitted {
            return;
        }
        let online = self.plc_online(now);
        let want = self.island.tie_closed && !self.out_of_service && online;
        let commanded = self.relays.wanted(Which::Tie);
        if !want {
            self.tie_wanted_since = None;
        }
        if want && !commanded {
            self.tie_draining_since = None;
            self.tie_wanted_since.get_or_insert(now);
            let near = self.plc.feedback.map_or(0.0, |f| f.bus_voltage.0);
            let far = self.plc.tie.map_or(0.0, |t| t.far_bus_voltage.0);
            let steady = |(at_near, at_far): (f64, f64)| {
                (near - at_near).abs() < STEADY_V && (far - at_far).abs() < STEADY_V
            };
            self.tie_match_since = match self.tie_match_since {
                Some((since, at)) if self.tie_matched() && steady(at) => Some((since, at)),
                _ if self.tie_matched() => Some((now, (near, far))),
                _ => None,
            };
            if self
                .tie_match_since
                .is_some_and(|(since, _)| now.duration_since(since) >= TIE_MATCH_HOLD)
            {
                self.relays.set(Which::Tie, true, now);
                self.tie_match_since = None;
                self.tie_wanted_since = None;
            }
            return;
        }
        self.tie_match_since = None;
        if want || !commanded {
            self.tie_draining_since = None;
            return;
        }
        let current = self.plc.tie.filter(|_| online).map(|t| t.current.0.abs());
        let since = *self.tie_draining_since.get_or_insert(now);
        match current {
            Some(amps) if amps < OPEN_BELOW_A => {
                self.relays.set(Which::Tie, false, now);
                self.tie_draining_since = None;
            }
            Some(amps) if now.duration_since(since) >= TIE_RAMP_DOWN => {
                let subject = format!("segment {} mn", self.setup.segment);
                let uptime = self.uptime(now);
                let evidence = vec![
                    Evidence::tenths("tie_current", amps, "A"),
                    Evidence::tenths("open_below", OPEN_BELOW_A, "A"),
                    Evidence::millis("ramp_down", TIE_RAMP_DOWN),
                ];
                self.faults.raise_with(
                    FaultCode::OpenUnderLoad,
                    &subject,
                    format!(
                        "{amps:.1} A still through the tie {} ms after the plan opened it",
                        TIE_RAMP_DOWN.as_millis()
                    ),
                    evidence,
                    uptime,
                );
                self.relays.emergency = true;
                self.relays.set(Which::Tie, false, now);
                self.tie_draining_since = None;
            }
            Some(_) => {}
            None => {
                // The current is unknown: open now, flagged as the emergency it is.
                self.relays.emergency = true;
                self.relays.set(Which::Tie, false, now);
                self.tie_draining_since = None;
            }
        }
    }

    /// S3 on the tie driver's fresh measurements: both sides dead, or matched.
    fn tie_matched(&self) -> bool {
        let (Some(feedback), Some(tie)) = (self.plc.feedback, self.plc.tie) else {
            return false;
        };
        let (near, far) = (feedback.bus_voltage.0, tie.far_bus_voltage.0);
        (near < DEAD_BUS_V && far < DEAD_BUS_V) || (near - far).abs() <= TIE_MATCH_V
    }
}
