//! A shared island within cab-a, against the simulator's pure world: gun 0 (segment 0)
//! draws on segment 1's modules through tie 0, then gives them back. The node's island
//! wire is played here in lock-step: segment 0 hosts, segment 1 donates, each hearing
//! the other's latest word at once.

use super::*;

/// Each segment's part, as the node would hand it over from the plan in force.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// Every segment alone, ties open.
    Apart,
    /// Gun 0's island spans segments 0 and 1, with the donor's modules in the mask.
    Shared(u8),
}

impl Rig {
    fn set_plan(&mut self, plan: Plan) {
        let now = self.now();
        // Segment 5's tie (cab-c, no host here) stays open; ties 0 and 1 as they read.
        let open = |c: &SegmentController| c.tie_reads_closed() != Some(true);
        let (tie0_open, tie1_open) = (open(&self.controllers[0]), open(&self.controllers[1]));
        let (host, donor) = match plan {
            Plan::Apart => {
                let alone = IslandPart {
                    separated: tie0_open && tie1_open,
                    ..IslandPart::default()
                };
                (alone, alone)
            }
            Plan::Shared(modules) => {
                let status = self.controllers[1].donor_status(now);
                let donors = status
                    .filter(|s| s.connected)
                    .map_or(0.0, |s| s.capability.0);
                let host = IslandPart {
                    role: IslandRole::Host {
                        donors: Amps(donors),
                    },
                    tie_closed: true,
                    separated: tie1_open,
                };
                let donor = IslandPart {
                    role: IslandRole::Donor {
                        host: self.controllers[0].host_setpoint(),
                        connected: self.controllers[0].tie_reads_closed() == Some(true),
                        modules,
                    },
                    tie_closed: false,
                    separated: tie1_open,
                };
                (host, donor)
            }
        };
        self.controllers[0].set_island(host);
        self.controllers[1].set_island(donor);
    }

    fn run_plan(&mut self, plan: Plan, limit_ms: u64, what: &str, done: impl Fn(&Rig) -> bool) {
        let deadline = self.world.now_ms() + limit_ms;
        while !done(self) {
            assert!(
                self.world.now_ms() < deadline,
                "timed out waiting for {what} at {} ms: {:?}",
                self.world.now_ms(),
                self.violations()
            );
            self.set_plan(plan);
            self.step();
        }
    }

    fn hold(&mut self, plan: Plan, ms: u64) {
        for _ in 0..ms / World::STEP_MS {
            self.set_plan(plan);
            self.step();
        }
    }

    fn gun_current(&self) -> f64 {
        self.gun(0).meter.map_or(0.0, |m| m.current.0)
    }

    fn tie_closed(&self) -> bool {
        self.controllers[0].tie_reads_closed() == Some(true)
    }
}

/// An EV that takes 400 A at about 400 V: more than segment 0's two modules give
/// (2 × 50 kW, 250 A at 400 V).
fn hungry() -> EvSpec {
    EvSpec {
        gun: 0,
        battery_v: 400.0,
        soc: 20.0,
        max_current_a: 400.0,
        target_soc: 90.0,
        ev_mac: Some("02:00:00:00:00:0C".into()),
        emaid: None,
        capacity_kwh: 80.0,
    }
}

#[test]
fn a_gun_draws_on_its_neighbours_modules_and_gives_them_back_break_before_make() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    rig.world.apply(Action::Plug(hungry())).unwrap();
    rig.run_plan(Plan::Apart, 15_000, "charging on its own modules", |r| {
        r.gun_current() > 230.0
    });
    rig.hold(Plan::Apart, 1_000);
    let alone = rig.gun_current();
    assert!(alone < 260.0, "its own modules give 250 A: {alone:.1} A");

    // Make: segment 1 precharges to the host's bus, the tie closes matched (S3), and
    // the donor's modules join the gun's.
    rig.run_plan(Plan::Shared(0b11), 5_000, "the tie closed", Rig::tie_closed);
    rig.run_plan(Plan::Shared(0b11), 5_000, "the donor's current", |r| {
        r.gun_current() > 380.0
    });
    assert!(
        rig.controllers[0].island_reached(rig.now())
            && rig.controllers[1].island_reached(rig.now())
    );
    assert_eq!(rig.gun(0).status, ConnectorStatus::Charging);

    // Break: the donor ramps to zero, the host keeps to its own modules, and the tie
    // opens once less than 5 A flow through it (S4).
    rig.run_plan(Plan::Apart, 5_000, "the tie open", |r| !r.tie_closed());
    rig.run_plan(Plan::Apart, 2_000, "the donor's contactors open", |r| {
        r.controllers[1]
            .snapshot(r.now())
            .mc
            .iter()
            .all(|(_, view)| !view.closed)
    });
    rig.run_plan(Plan::Apart, 2_000, "the gun back on its own modules", |r| {
        r.gun_current() < 260.0
    });
    assert_eq!(rig.gun(0).status, ConnectorStatus::Charging);

    assert_eq!(rig.violations(), Vec::<String>::new());
    assert!(rig.faults(0).is_empty() && rig.faults(1).is_empty());
    let ties: Vec<_> = rig
        .relay_commands
        .iter()
        .filter(|(_, c)| c.closed.ties != 0)
        .collect();
    assert!(!ties.is_empty(), "the tie was commanded closed");
    assert!(
        rig.relay_commands.iter().all(|(_, c)| !c.emergency),
        "nothing opened as an emergency"
    );
}

#[test]
fn a_donor_keeps_its_own_gun_off_until_the_plan_hands_its_modules_back() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    // Nothing energised yet: both buses dead, the tie closes at once; then gun 0's EV
    // charges on both segments' modules.
    rig.run_plan(Plan::Shared(0b11), 2_000, "the tie closed", Rig::tie_closed);
    rig.world.apply(Action::Plug(hungry())).unwrap();
    rig.run_plan(Plan::Shared(0b11), 15_000, "the shared current", |r| {
        r.gun_current() > 380.0
    });
    // An EV on the donor's gun is authorised and locked, but never precharged (S2).
    rig.world
        .apply(Action::Plug(EvSpec {
            gun: 1,
            ev_mac: Some("02:00:00:00:00:0D".into()),
            ..hungry()
        }))
        .unwrap();
    rig.run_plan(Plan::Shared(0b11), 8_000, "the EV waiting", |r| {
        r.gun(1).phase == SessionPhase::WaitingForEv
    });
    rig.hold(Plan::Shared(0b11), 3_000);
    let donor = rig.controllers[1].snapshot(rig.now());
    assert_eq!(
        donor.gun.as_ref().unwrap().phase,
        SessionPhase::WaitingForEv
    );
    assert!(!donor.gc.unwrap().commanded, "its gun contactor stays open");
    // The plan gives each gun its own modules: the waiting donor ramps down, the tie
    // opens below 5 A, and both guns charge.
    rig.run_plan(Plan::Apart, 5_000, "the tie open", |r| !r.tie_closed());
    rig.run_plan(Plan::Apart, 15_000, "both charging", |r| {
        r.gun(1).status == ConnectorStatus::Charging && r.gun(0).status == ConnectorStatus::Charging
    });
    assert_eq!(rig.violations(), Vec::<String>::new());
    assert!(rig.faults(0).is_empty() && rig.faults(1).is_empty());
}

#[test]
fn a_tie_whose_sides_never_match_is_given_up_and_reported_stuck() {
    let mut rig = Rig::new(AuthPolicy::Free);
    rig.run(300);
    rig.world.apply(Action::Plug(hungry())).unwrap();
    rig.run_plan(Plan::Apart, 15_000, "charging", |r| r.gun_current() > 230.0);
    // The donor gives no module: its bus stays dead beside the energised host's, and
    // S3 never lets the tie close.
    let asked = rig.now();
    rig.run_plan(Plan::Shared(0), 15_000, "the tie given up", |r| {
        r.controllers[0].tie_unmade(r.now())
    });
    let waited = rig.now().duration_since(asked);
    assert!(waited >= TIE_MAKE_TIMEOUT, "{waited:?}");
    assert!(!rig.tie_closed());
    assert!(
        rig.controllers[0].island_reached(rig.now()),
        "the part counts as done, so the next plans are not held up"
    );
    assert_eq!(rig.violations(), Vec::<String>::new());
}
