//! What the guns ask and the modules can give, as the planner should see it (issue 8,
//! "End to end"). Pure: [`DemandBook`] takes the nodes' Zenoh publications
//! (`gun/<gun>/session`, `module/<module>/state`) and says when the plan should be made
//! again. High-rate facts travel on Zenoh, never through the log (DESIGN.md §4): every
//! node keeps a book, so a new leader plans from fresh telemetry at once.
//!
//! - **A gun's demand**: nothing while no session wants power (idle, finished, faulted,
//!   ramping down, or still waiting for authorisation: an EV waiting for a card holds no
//!   share of the site); once authorised and preparing (up to and through precharge),
//!   what the EV said it accepts at most (ChargeParameterDiscovery), or the gun's rating
//!   before it said; once the EV is in CurrentDemand, the current it asks at the voltage
//!   the meter reads, and at least [`ENERGISED_FLOOR`]: a suspended EV keeps its gun's
//!   segment out of other guns' islands. Always within the gun's rating.
//! - **A module's power**: what its node says it can give after derating; nothing while
//!   it is offline or faulted; its rating before anything is heard.
//! - **Hysteresis**: a value the planner already planned with moves only when the new
//!   one differs by more than [`BAND`] (or starts or stops being zero), so that a
//!   tapering EV does not make a new plan epoch every second. A rise counts at once; a
//!   fall only once it has lasted [`FALL_HOLD`] (a dip while an EV ramps must not hand its
//!   power away), except a fall to nothing (the session ended), which counts at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ringhub_proto::config::{GunId, HubConfig, ModuleId};
use ringhub_proto::v1::{self, HlcPhase, SessionPhase};

use crate::record::Watts;

/// Changes smaller than this (absolute, or 10 % of the value) do not re-plan.
pub const BAND: Watts = Watts(5_000);

/// How long a fall must last before the planner sees it.
pub const FALL_HOLD: Duration = Duration::from_secs(2);

/// The least an energised gun asks (see [`gun_demand`]).
pub const ENERGISED_FLOOR: Watts = Watts(1_000);

/// A publication the book cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    /// A gun the hub config does not have.
    #[error("gun {0} is not in the hub config")]
    UnknownGun(u32),
    /// A module the hub config does not have.
    #[error("module {0} is not in the hub config")]
    UnknownModule(u32),
}

/// What the config rates each gun and module at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ratings {
    /// Each gun's most power: its rated current at its rated voltage.
    pub guns: BTreeMap<GunId, Watts>,
    /// Each module's nameplate power.
    pub modules: BTreeMap<ModuleId, Watts>,
}

impl Ratings {
    /// The ratings in `config`.
    pub fn from_config(config: &HubConfig) -> Self {
        let guns = config
            .segments
            .iter()
            .filter_map(|s| s.gun.as_ref())
            .map(|g| {
                let kw = g.max_current.0 * g.max_voltage.0 / 1000.0;
                (g.id, Watts::from_kilowatts(kw))
            })
            .collect();
        let modules = config
            .segments
            .iter()
            .flat_map(|s| &s.modules)
            .map(|m| (m.id, Watts::from_kilowatts(m.max_power.0)))
            .collect();
        Self { guns, modules }
    }
}

/// One value as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    /// The value the planner sees: moves only past the band, falls only after the hold.
    planned: Watts,
    /// Since when every value heard has been below the band under `planned`.
    falling_since: Option<Instant>,
}

impl Tracked {
    fn new(value: Watts) -> Self {
        Self {
            planned: value,
            falling_since: None,
        }
    }

    /// Takes `value` heard at `now`; true if the planned value moved.
    fn hear(&mut self, value: Watts, now: Instant) -> bool {
        if !beyond_band(self.planned, value) {
            self.falling_since = None;
            return false;
        }
        let falling = value < self.planned && value.0 > 0;
        if falling {
            let since = *self.falling_since.get_or_insert(now);
            if now.duration_since(since) < FALL_HOLD {
                return false;
            }
        }
        self.planned = value;
        self.falling_since = None;
        true
    }
}

/// Whether going from `old` to `new` is worth a new plan.
fn beyond_band(old: Watts, new: Watts) -> bool {
    if (old.0 == 0) != (new.0 == 0) {
        return true;
    }
    let band = BAND.0.max(old.0 / 10);
    old.0.abs_diff(new.0) > band
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandBook {
    ratings: Ratings,
    /// Per gun, its demand.
    guns: BTreeMap<GunId, Tracked>,
    /// Per module, the power it can give.
    modules: BTreeMap<ModuleId, Tracked>,
}

impl DemandBook {
    /// A book that has heard nothing yet: every gun idle, every module at its rating.
    pub fn new(ratings: Ratings) -> Self {
        let guns = ratings
            .guns
            .keys()
            .map(|&g| (g, Tracked::new(Watts(0))))
            .collect();
        let modules = ratings
            .modules
            .iter()
            .map(|(&m, &rated)| (m, Tracked::new(rated)))
            .collect();
        Self {
            ratings,
            guns,
            modules,
        }
    }

    /// Takes a gun's session heard at `now`; true if the planner should plan again.
    pub fn handle_gun(
        &mut self,
        session: &v1::GunSession,
        now: Instant,
    ) -> Result<bool, TelemetryError> {
        let id = u16::try_from(session.gun_id)
            .ok()
            .map(GunId)
            .filter(|g| self.guns.contains_key(g))
            .ok_or(TelemetryError::UnknownGun(session.gun_id))?;
        let rating = self.ratings.guns.get(&id).copied().unwrap_or_default();
        let asked = gun_demand(session, rating);
        Ok(self.guns.get_mut(&id).is_some_and(|t| t.hear(asked, now)))
    }

    /// Takes a module's state heard at `now`; true if the planner should plan again.
    pub fn handle_module(
        &mut self,
        state: &v1::ModuleState,
        now: Instant,
    ) -> Result<bool, TelemetryError> {
        let id = u16::try_from(state.module_id)
            .ok()
            .map(ModuleId)
            .filter(|m| self.modules.contains_key(m))
            .ok_or(TelemetryError::UnknownModule(state.module_id))?;
        let rated = self.ratings.modules.get(&id).copied().unwrap_or_default();
        let can_give = if state.online && state.faults.is_empty() {
            Watts(u64::from(state.available_power_w)).min(rated)
        } else {
            Watts(0)
        };
        Ok(self
            .modules
            .get_mut(&id)
            .is_some_and(|t| t.hear(can_give, now)))
    }

    /// Sets what `gun` asks as if it had been heard, for simulations and tests.
    pub fn assume(&mut self, gun: GunId, demand: Watts) {
        if let Some(tracked) = self.guns.get_mut(&gun) {
            *tracked = Tracked::new(demand);
        }
    }

    /// Every gun with what it asks and its rating, as the planner should see them.
    pub fn guns(&self) -> impl Iterator<Item = (GunId, Watts, Watts)> + '_ {
        self.guns
            .iter()
            .map(|(&gun, tracked)| (gun, tracked.planned, self.rating(gun)))
    }

    /// What `gun` asks, as the planner should see it.
    pub fn demand(&self, gun: GunId) -> Watts {
        self.guns.get(&gun).map_or(Watts(0), |t| t.planned)
    }

    /// What `gun` is rated for.
    pub fn rating(&self, gun: GunId) -> Watts {
        self.ratings.guns.get(&gun).copied().unwrap_or_default()
    }

    /// What `module` can give, as the planner should see it.
    pub fn available(&self, module: ModuleId) -> Watts {
        self.modules.get(&module).map_or(Watts(0), |t| t.planned)
    }
}

/// What a session asks for (see the module docs).
fn gun_demand(session: &v1::GunSession, rating: Watts) -> Watts {
    let watts = |dv: u32, da: u32| Watts(u64::from(dv) * u64::from(da) / 100);
    let asked = match session.phase() {
        SessionPhase::Unspecified
        | SessionPhase::Idle
        | SessionPhase::Authorising
        | SessionPhase::Finished
        | SessionPhase::Faulted
        | SessionPhase::RampingDown => Watts(0),
        SessionPhase::Charging if session.hlc_phase() == HlcPhase::CurrentDemand => {
            let volts = session
                .meter
                .as_ref()
                .map(|m| m.voltage_dv)
                .filter(|&dv| dv > 0)
                .unwrap_or(session.ev_target_voltage_dv);
            // An energised gun keeps a share however little it asks: its segment must
            // stay its island's host, never another gun's donor (S2).
            watts(volts, session.ev_target_current_da).max(ENERGISED_FLOOR)
        }
        SessionPhase::WaitingForPower | SessionPhase::Precharge | SessionPhase::Charging => {
            match (session.ev_max_voltage_dv, session.ev_max_current_da) {
                (0, _) | (_, 0) => rating,
                (dv, da) => watts(dv, da),
            }
        }
    };
    asked.min(rating)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> DemandBook {
        DemandBook::new(Ratings {
            guns: BTreeMap::from([(GunId(0), Watts(350_000))]),
            modules: BTreeMap::from([(ModuleId(4), Watts(50_000))]),
        })
    }

    fn session(phase: SessionPhase, edit: impl FnOnce(&mut v1::GunSession)) -> v1::GunSession {
        let mut session = v1::GunSession {
            gun_id: 0,
            ..Default::default()
        };
        session.set_phase(phase);
        edit(&mut session);
        session
    }

    /// A session in CurrentDemand asking `da` deciamps at 400 V.
    fn asking(da: u32) -> v1::GunSession {
        session(SessionPhase::Charging, |s| {
            s.set_hlc_phase(HlcPhase::CurrentDemand);
            s.ev_target_voltage_dv = 4_000;
            s.ev_target_current_da = da;
        })
    }

    #[test]
    fn a_suspended_ev_keeps_a_floor_so_its_segment_stays_its_own() {
        let (mut book, t0) = (book(), Instant::now());
        assert_eq!(book.handle_gun(&asking(0), t0), Ok(true));
        assert_eq!(book.demand(GunId(0)), ENERGISED_FLOOR);
    }

    #[test]
    fn a_preparing_session_asks_what_the_ev_accepts_or_the_rating() {
        let (mut book, t0) = (book(), Instant::now());
        assert_eq!(book.demand(GunId(0)), Watts(0));
        let waiting_for_a_card = session(SessionPhase::Authorising, |_| {});
        assert_eq!(book.handle_gun(&waiting_for_a_card, t0), Ok(false));
        let plugged = session(SessionPhase::WaitingForPower, |_| {});
        assert_eq!(book.handle_gun(&plugged, t0), Ok(true));
        assert_eq!(book.demand(GunId(0)), Watts(350_000));
        // Charging, but the EV still in precharge with its 2 A: still preparing.
        let closing = session(SessionPhase::Charging, |s| {
            s.set_hlc_phase(HlcPhase::PreCharge);
            s.ev_target_voltage_dv = 4_000;
            s.ev_target_current_da = 20;
        });
        assert_eq!(book.handle_gun(&closing, t0), Ok(false));
        assert_eq!(book.demand(GunId(0)), Watts(350_000));
        let told = session(SessionPhase::Precharge, |s| {
            s.ev_max_voltage_dv = 4_000; // 400 V
            s.ev_max_current_da = 2_000; // 200 A
        });
        let later = t0 + FALL_HOLD;
        assert_eq!(book.handle_gun(&told, t0), Ok(false), "a fall waits");
        assert_eq!(book.handle_gun(&told, later), Ok(true));
        assert_eq!(book.demand(GunId(0)), Watts(80_000));
    }

    #[test]
    fn a_charging_session_asks_its_current_at_the_metered_voltage() {
        let (mut book, t0) = (book(), Instant::now());
        let mut charging = asking(1_500); // 150 A
        charging.ev_target_voltage_dv = 4_500;
        charging.meter = Some(v1::MeterReading {
            voltage_dv: 4_000, // 400 V
            ..Default::default()
        });
        assert_eq!(book.handle_gun(&charging, t0), Ok(true));
        assert_eq!(book.demand(GunId(0)), Watts(60_000));
        // Past the rating, the rating.
        book.handle_gun(&asking(9_000), t0).expect("known gun");
        assert_eq!(book.demand(GunId(0)), Watts(350_000));
    }

    #[test]
    fn rises_count_at_once_falls_after_the_hold_and_stopping_at_once() {
        let (mut book, t0) = (book(), Instant::now());
        assert_eq!(book.handle_gun(&asking(2_500), t0), Ok(true)); // 100 kW
        assert_eq!(book.handle_gun(&asking(2_300), t0), Ok(false)); // 92 kW: within 10 kW
        assert_eq!(book.demand(GunId(0)), Watts(100_000));
        // A dip to 40 kW that does not last is not planned with.
        assert_eq!(book.handle_gun(&asking(1_000), t0), Ok(false));
        assert_eq!(
            book.handle_gun(&asking(2_500), t0 + FALL_HOLD / 2),
            Ok(false)
        );
        assert_eq!(book.handle_gun(&asking(1_000), t0 + FALL_HOLD), Ok(false));
        assert_eq!(book.demand(GunId(0)), Watts(100_000));
        // One that lasts is.
        let t1 = t0 + FALL_HOLD * 2;
        assert_eq!(book.handle_gun(&asking(1_000), t1), Ok(true));
        assert_eq!(book.demand(GunId(0)), Watts(40_000));
        assert_eq!(
            book.handle_gun(&asking(3_000), t1),
            Ok(true),
            "a rise at once"
        );
        let done = session(SessionPhase::RampingDown, |_| {});
        assert_eq!(book.handle_gun(&done, t1), Ok(true), "a stop at once");
        assert_eq!(book.demand(GunId(0)), Watts(0));
    }

    #[test]
    fn a_module_gives_its_derated_power_and_nothing_when_faulted_or_offline() {
        let (mut book, t0) = (book(), Instant::now());
        assert_eq!(book.available(ModuleId(4)), Watts(50_000));
        let state = |online: bool, available_w: u32, faulted: bool| v1::ModuleState {
            module_id: 4,
            online,
            available_power_w: available_w,
            faults: if faulted { vec![1] } else { vec![] },
            ..Default::default()
        };
        let later = t0 + FALL_HOLD;
        assert_eq!(
            book.handle_module(&state(true, 30_000, false), t0),
            Ok(false)
        );
        assert_eq!(
            book.handle_module(&state(true, 30_000, false), later),
            Ok(true)
        );
        assert_eq!(book.available(ModuleId(4)), Watts(30_000));
        assert_eq!(
            book.handle_module(&state(true, 30_000, true), later),
            Ok(true)
        );
        assert_eq!(book.available(ModuleId(4)), Watts(0), "faulted: at once");
        book.handle_module(&state(true, 60_000, false), later)
            .expect("known");
        assert_eq!(
            book.available(ModuleId(4)),
            Watts(50_000),
            "never above its rating"
        );
        book.handle_module(&state(false, 50_000, false), later)
            .expect("known");
        assert_eq!(book.available(ModuleId(4)), Watts(0));
    }

    #[test]
    fn publications_about_unknown_guns_and_modules_are_refused() {
        let (mut book, t0) = (book(), Instant::now());
        let stranger = session(SessionPhase::Charging, |s| s.gun_id = 70_000);
        assert_eq!(
            book.handle_gun(&stranger, t0),
            Err(TelemetryError::UnknownGun(70_000))
        );
        let state = v1::ModuleState {
            module_id: 9,
            ..Default::default()
        };
        assert_eq!(
            book.handle_module(&state, t0),
            Err(TelemetryError::UnknownModule(9))
        );
    }
}
