use ringhub_cluster::record::{
    ClientId, Command, Epoch, Island, Outcome, Plan, Request, Topology, Watts,
};
use ringhub_proto::config::{DEMO_TOML, HubConfig, ModuleId};
use ringhub_proto::units::Volts;

use super::*;

fn cab(name: &str) -> CabinetId {
    CabinetId::new(name).expect("a valid id")
}

fn island(segments: &[u16], gun: Option<u16>, modules: &[u16], budget: u64) -> Island {
    Island {
        segments: segments.iter().map(|&s| SegmentId(s)).collect(),
        gun: gun.map(GunId),
        modules: modules.iter().map(|&m| ModuleId(m)).collect(),
        budget: Watts(budget),
    }
}

/// The demo ring (cab-a: segments 0-1, cab-b: 2-3, cab-c: 4-5) with gun 1 holding
/// segments 1, 2 and 3, and all their modules but module 7.
fn shared() -> HubRecord {
    let config = HubConfig::parse(DEMO_TOML, "demo.toml").expect("demo config");
    let mut record = HubRecord::new(Topology::from_config(&config));
    let plan = Plan {
        epoch: Epoch(1),
        islands: vec![
            island(&[0], None, &[], 0),
            island(&[1, 2, 3], Some(1), &[2, 3, 4, 5, 6], 250_000),
            island(&[4], None, &[], 0),
            island(&[5], None, &[], 0),
        ],
        reason: "test".into(),
        proposed_unix_ms: 0,
    };
    let outcome = record.apply(&Request {
        client: ClientId("test".into()),
        serial: 1,
        command: Command::CommitPlan(plan),
    });
    assert!(matches!(outcome, Outcome::Applied(_)), "{outcome:?}");
    record
}

#[test]
fn the_plan_makes_the_guns_segment_host_and_the_others_donors_across_cabinets() {
    let record = shared();
    assert_eq!(
        parts(&record, &cab("cab-a")),
        vec![
            Part {
                segment: SegmentId(0),
                role: Role::Alone,
                tie_closed: false,
                boundary: vec![SegmentId(5), SegmentId(0)],
            },
            Part {
                segment: SegmentId(1),
                role: Role::Host {
                    gun: GunId(1),
                    donors: vec![SegmentId(2), SegmentId(3)],
                },
                tie_closed: true,
                boundary: vec![SegmentId(0), SegmentId(3)],
            },
        ]
    );
    assert_eq!(
        parts(&record, &cab("cab-b")),
        vec![
            Part {
                segment: SegmentId(2),
                role: Role::Donor {
                    gun: GunId(1),
                    path: vec![SegmentId(1)],
                    modules: 0b11,
                },
                tie_closed: true,
                boundary: vec![SegmentId(0), SegmentId(3)],
            },
            Part {
                segment: SegmentId(3),
                role: Role::Donor {
                    gun: GunId(1),
                    path: vec![SegmentId(1), SegmentId(2)],
                    modules: 0b01,
                },
                tie_closed: false,
                boundary: vec![SegmentId(0), SegmentId(3)],
            },
        ],
        "segment 3 joins through ties 1 and 2, and gives only the module the plan names"
    );
    assert!(
        alone(&record, &cab("cab-b"))
            .iter()
            .all(|p| p.role == Role::Alone && !p.tie_closed)
    );
}

#[test]
fn a_donor_follows_a_host_heard_lately_and_is_connected_only_through_closed_ties() {
    let record = shared();
    let far = parts(&record, &cab("cab-b")).remove(1);
    let (mut wire, t0) = (Wire::default(), Instant::now());
    let setpoint = HostSetpoint {
        bus_voltage: Volts(400.0),
        voltage: Volts(410.0),
        share: 0.5,
    };
    wire.host(GunId(1), setpoint, t0);
    wire.tie(SegmentId(1), true, t0);
    wire.tie(SegmentId(2), false, t0);
    let role = |wire: &Wire, now| wire.input(&far, now, false).role;
    assert_eq!(
        role(&wire, t0),
        IslandRole::Donor {
            host: Some(setpoint),
            connected: false,
            modules: 0b01,
        }
    );
    wire.tie(SegmentId(2), true, t0);
    assert!(matches!(
        role(&wire, t0),
        IslandRole::Donor {
            connected: true,
            ..
        }
    ));
    assert!(
        matches!(
            role(&wire, t0 + HEARD_WITHIN),
            IslandRole::Donor {
                host: None,
                connected: true,
                ..
            }
        ),
        "a host not heard for {HEARD_WITHIN:?} is not followed"
    );
    assert!(
        matches!(
            role(&wire, t0 + TIE_HEARD_WITHIN),
            IslandRole::Donor {
                connected: false,
                ..
            }
        ),
        "ties not heard of are not closed"
    );
}

#[test]
fn a_host_counts_the_connected_donors_it_heard_lately() {
    let record = shared();
    let host = parts(&record, &cab("cab-a")).remove(1);
    let (mut wire, t0) = (Wire::default(), Instant::now());
    let status = |connected, amps| DonorStatus {
        connected,
        capability: Amps(amps),
    };
    wire.donor(GunId(1), SegmentId(2), status(true, 250.0), t0);
    wire.donor(GunId(1), SegmentId(3), status(false, 125.0), t0);
    wire.donor(GunId(4), SegmentId(4), status(true, 999.0), t0);
    let donors = |wire: &Wire, now| match wire.input(&host, now, false).role {
        IslandRole::Host { donors } => donors.0,
        other => panic!("{other:?}"),
    };
    assert_eq!(donors(&wire, t0), 250.0, "segment 3 is not connected yet");
    wire.donor(GunId(1), SegmentId(3), status(true, 125.0), t0);
    assert_eq!(donors(&wire, t0), 375.0);
    assert_eq!(
        donors(&wire, t0 + HEARD_WITHIN),
        0.0,
        "silent donors count for nothing"
    );
}

#[test]
fn a_gun_may_energise_only_once_the_ties_around_its_island_read_open() {
    let record = shared();
    let alone = parts(&record, &cab("cab-a")).remove(0);
    let (mut wire, t0) = (Wire::default(), Instant::now());
    let separated =
        |wire: &Wire, now, unknown_is_open| wire.input(&alone, now, unknown_is_open).separated;
    assert!(!separated(&wire, t0, false), "ties not heard of");
    assert!(separated(&wire, t0, true), "unless degraded long enough");
    wire.tie(SegmentId(5), false, t0);
    wire.tie(SegmentId(0), true, t0);
    assert!(
        !separated(&wire, t0, true),
        "its own tie still reads closed"
    );
    wire.tie(SegmentId(0), false, t0);
    assert!(separated(&wire, t0, false));
    assert!(
        !separated(&wire, t0 + TIE_HEARD_WITHIN, false),
        "news grows stale"
    );
}
