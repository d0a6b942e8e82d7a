//! The Zenoh publisher against a real subscriber: two Zenoh sessions on loopback TCP, one
//! publishing a cabinet's snapshots through [`Publisher`], the other subscribed under
//! `ringhub/demo/**` decoding the protobuf. Nothing waits on a clock: each step has a
//! deadline instead, and publications repeat (as the node's ≥ 5 Hz loop does) until the
//! subscriber, whose declaration travels to the publisher asynchronously, has them.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::time::Duration;

use prost::Message;
use ringhub_node::connector::snapshot::{
    ConnectorStatus, ContactorView, FaultCode, FaultCondition, GunSnapshot, IdToken, LocalFault,
    MeterView, ModuleSnapshot, SegmentSnapshot, SessionPhase,
};
use ringhub_node::publish::{Catalog, Origin, Publisher, new_boot_id, unix_ms, zenoh_config};
use ringhub_proto::can::ModuleAddress;
use ringhub_proto::can::messages::{
    AuthStatus, CpState, HlcPhase, HlcProtocol, IsolationState, LockState, MeterSource,
    ModuleFaults, SlacState,
};
use ringhub_proto::config::{CabinetId, GunId, HubConfig, HubId, ModuleId, SegmentId};
use ringhub_proto::units::{Amps, Celsius, KilowattHours, Kilowatts, Percent, Volts};
use ringhub_proto::v1;
use zenoh::sample::SampleKind;

/// Longest any single step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// How often the snapshots are published while waiting (the node's 200 ms cadence, faster).
const REPUBLISH: Duration = Duration::from_millis(50);

/// Runs `step` (a future, or a Zenoh builder) with [`DEADLINE`].
async fn within<T>(what: &str, step: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, step.into_future())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind loopback")
        .port()
}

fn contactor(closed: bool) -> ContactorView {
    ContactorView {
        commanded: closed,
        closed,
        faulted: false,
    }
}

fn snapshot(faults: Vec<LocalFault>) -> SegmentSnapshot {
    SegmentSnapshot {
        segment: SegmentId(1),
        plc_online: true,
        plc_silent_for: Duration::from_millis(20),
        bus_voltage: Volts(400.0),
        gc: Some(contactor(true)),
        mc: vec![(ModuleId(2), contactor(true))],
        mn: Some(contactor(false)),
        isolation: IsolationState::Valid,
        relay_sequence: 12,
        out_of_service: false,
        gun: Some(GunSnapshot {
            gun: GunId(1),
            phase: SessionPhase::Charging,
            status: ConnectorStatus::Charging,
            available: true,
            cp: CpState::C,
            slac: SlacState::Matched,
            protocol: HlcProtocol::Din70121,
            hlc_phase: HlcPhase::CurrentDemand,
            ev_identity: None,
            token: Some(IdToken::Rfid("04A2B3C4".into())),
            auth: AuthStatus::Accepted,
            lock: LockState::Locked,
            meter: Some(MeterView {
                source: MeterSource::PlcMeter,
                voltage: Volts(400.5),
                current: Amps(100.0),
                energy_register: KilowattHours(10.0),
            }),
            session_energy: KilowattHours(1.5),
            soc: Some(Percent(42)),
            ev_target_voltage: Volts(401.0),
            ev_target_current: Amps(100.0),
            offered_current: Amps(100.0),
            power: Kilowatts(40.05),
            last_stop: None,
            budget: None,
        }),
        modules: vec![ModuleSnapshot {
            module: ModuleId(2),
            address: ModuleAddress(2),
            online: true,
            enabled: true,
            setpoint_voltage: Volts(401.0),
            setpoint_current: Amps(100.0),
            output_voltage: Volts(400.5),
            output_current: Amps(99.9),
            temperature: Celsius(45.5),
            rated_power: Kilowatts(50.0),
            available_power: Kilowatts(50.0),
            faults: ModuleFaults::default(),
            out_of_service: false,
        }],
        conditions: faults
            .iter()
            .map(|f| FaultCondition {
                code: f.code,
                subject: f.subject.clone(),
                holds: true,
                why: f.detail.clone(),
            })
            .collect(),
        faults,
        contactor_operations: 4,
    }
}

fn lock_fault() -> LocalFault {
    LocalFault {
        evidence: Vec::new(),
        code: FaultCode::LockFailure,
        subject: "gun 1".into(),
        detail: "lock feedback Unlocked 500 ms after Lock".into(),
        raised_at: Duration::from_secs(2),
    }
}

/// What the subscriber has seen: the latest payload per key, and every fault update.
#[derive(Default)]
struct Seen {
    latest: BTreeMap<String, Vec<u8>>,
    fault_updates: Vec<(String, v1::FaultUpdate)>,
}

const SEG_KEY: &str = "ringhub/demo/seg/1/state";
const GUN_KEY: &str = "ringhub/demo/gun/1/session";
const MODULE_KEY: &str = "ringhub/demo/module/2/state";
const FAULT_KEY: &str = "ringhub/demo/fault/1-lock-failure-gun-1";
const CONDITIONS_KEY: &str = "ringhub/demo/node/cab-a/conditions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_decodes_every_publication() {
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let publisher_session = within(
        "the publisher's session",
        zenoh::open(zenoh_config(std::slice::from_ref(&endpoint), &[]).expect("config")),
    )
    .await
    .expect("open the publisher's session");
    let subscriber_session = within(
        "the subscriber's session",
        zenoh::open(zenoh_config(&[], std::slice::from_ref(&endpoint)).expect("config")),
    )
    .await
    .expect("open the subscriber's session");

    let subscriber = within(
        "the subscriber",
        subscriber_session.declare_subscriber("ringhub/demo/**"),
    )
    .await
    .expect("declare subscriber");
    let alive = within(
        "the liveliness subscriber",
        subscriber_session
            .liveliness()
            .declare_subscriber("ringhub/demo/node/*/alive")
            .history(true),
    )
    .await
    .expect("declare liveliness subscriber");

    let config = HubConfig::demo();
    let cabinet = CabinetId::new("cab-a").expect("cabinet id");
    let boot_id = new_boot_id();
    let started = unix_ms();
    let origin = Origin {
        hub: HubId::new("demo").expect("hub id"),
        node: cabinet.clone(),
        boot_id,
        started_unix_ms: started,
    };
    let mut publisher = within(
        "the publisher",
        Publisher::new(
            publisher_session,
            origin,
            Catalog::from_config(&config, &cabinet),
        ),
    )
    .await
    .expect("publisher");

    // The node's liveliness token reaches the other session.
    let token = within("the liveliness token", alive.recv_async())
        .await
        .expect("liveliness sample");
    assert_eq!(token.key_expr().as_str(), "ringhub/demo/node/cab-a/alive");
    assert_eq!(token.kind(), SampleKind::Put);

    // Publish until every state key has arrived: then the subscriber's declaration has
    // reached the publisher, and nothing published from here on is missed.
    let healthy = [snapshot(vec![])];
    let mut seen = Seen::default();
    within("every state key", async {
        loop {
            publisher.publish(&healthy).await.expect("publish");
            collect(&subscriber, &mut seen).await;
            if [SEG_KEY, GUN_KEY, MODULE_KEY, CONDITIONS_KEY]
                .iter()
                .all(|k| seen.latest.contains_key(*k))
            {
                break;
            }
        }
    })
    .await;
    assert!(seen.fault_updates.is_empty(), "no fault yet");

    // A fault appears and stays for a second publication, then goes.
    let with_fault = [snapshot(vec![lock_fault()])];
    publisher.publish(&with_fault).await.expect("publish");
    publisher.publish(&with_fault).await.expect("publish");
    publisher.publish(&healthy).await.expect("publish");
    within("three fault updates", async {
        while seen.fault_updates.len() < 3 {
            collect(&subscriber, &mut seen).await;
        }
    })
    .await;

    // The last publication was healthy: the node's conditions say so.
    let conditions = v1::FaultConditions::decode(seen.latest[CONDITIONS_KEY].as_slice())
        .expect("FaultConditions");
    assert_eq!(conditions.header.expect("header").node_id, "cab-a");
    assert_eq!(conditions.conditions, []);

    let seg = v1::SegmentState::decode(seen.latest[SEG_KEY].as_slice()).expect("SegmentState");
    let header = seg.header.clone().expect("header");
    assert_eq!(header.hub_id, "demo");
    assert_eq!(header.node_id, "cab-a");
    assert_eq!(header.boot_id, boot_id);
    assert!(header.seq >= 1);
    assert!(header.sent_unix_ms >= started);
    assert_eq!(seg.segment_id, 1);
    assert_eq!(seg.cabinet_id, "cab-a");
    assert_eq!(seg.bus_voltage_dv, 4000);
    assert_eq!(seg.plc_last_seen_ms, 20);
    assert_eq!(seg.relay_command_seq, 12);
    assert_eq!(seg.isolation, v1::IsolationState::Valid as i32);
    assert_eq!(
        seg.tie_contactor.map(|c| c.feedback),
        Some(v1::ContactorState::Open as i32)
    );
    assert_eq!(
        seg.capabilities.map(|c| c.module_ids),
        Some(vec![2]),
        "capabilities"
    );

    let gun = v1::GunSession::decode(seen.latest[GUN_KEY].as_slice()).expect("GunSession");
    assert_eq!(gun.gun_id, 1);
    assert_eq!(gun.segment_id, 1);
    assert_eq!(gun.phase, v1::SessionPhase::Charging as i32);
    assert_eq!(gun.hlc_protocol, v1::HlcProtocol::Din70121 as i32);
    assert_eq!(gun.auth_method, v1::AuthMethod::Rfid as i32);
    assert_eq!(gun.id_token, "04A2B3C4");
    assert_eq!(gun.session_energy_wh, 1500);
    assert_eq!(gun.soc_percent, Some(42));
    let meter = gun.meter.expect("meter");
    assert_eq!(meter.source, v1::MeterSource::PlcMeter as i32);
    assert_eq!(meter.voltage_dv, 4005);
    assert_eq!(meter.current_da, 1000);
    assert_eq!(meter.power_w, 40_050);
    let demo_gun = config.gun(GunId(1)).expect("demo gun 1");
    assert_eq!(gun.ocpp_connector_id, demo_gun.connector.0);
    assert!(!gun.ocpp_charge_point_id.is_empty());

    let module = v1::ModuleState::decode(seen.latest[MODULE_KEY].as_slice()).expect("ModuleState");
    assert_eq!(module.module_id, 2);
    assert_eq!(module.segment_id, 1);
    assert_eq!(module.output_current_da, 999);
    assert_eq!(module.temperature_dc, 455);
    assert_eq!(module.rated_power_w, 50_000);
    assert_eq!(
        module.contactor.map(|c| c.feedback),
        Some(v1::ContactorState::Closed as i32)
    );

    let updates: Vec<&v1::FaultUpdate> = seen
        .fault_updates
        .iter()
        .map(|(key, update)| {
            assert_eq!(key, FAULT_KEY);
            update
        })
        .collect();
    let transitions: Vec<i32> = updates.iter().map(|u| u.transition).collect();
    assert_eq!(
        transitions,
        vec![
            v1::FaultTransition::Raised as i32,
            v1::FaultTransition::Refresh as i32,
            v1::FaultTransition::Cleared as i32,
        ]
    );
    let seqs: Vec<u64> = updates
        .iter()
        .map(|u| u.header.as_ref().expect("header").seq)
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3],
        "per-key sequence numbers from 1, no gaps"
    );
    let raised = updates[0].fault.clone().expect("fault");
    assert_eq!(raised.code, "LOCK_FAILURE");
    assert_eq!(raised.scope, v1::FaultScope::Gun as i32);
    assert_eq!(raised.scope_id, "1");
    assert_eq!(raised.reason, "lock feedback Unlocked 500 ms after Lock");
    assert_eq!(raised.raised_by_node_id, "cab-a");
    assert_eq!(raised.status, v1::FaultStatus::Active as i32);
    assert_eq!(raised.raised_unix_ms, started + 2000);
    assert_eq!(raised.cleared_unix_ms, None);
    let cleared = updates[2].fault.clone().expect("fault");
    assert_eq!(cleared.status, v1::FaultStatus::Cleared as i32);
    assert!(cleared.cleared_unix_ms.is_some());
    assert_eq!(cleared.code, "LOCK_FAILURE");

    // Closing undeclares the token: the other session sees the node leave.
    within("closing", publisher.close()).await.expect("close");
    let gone = within("the token's removal", alive.recv_async())
        .await
        .expect("liveliness sample");
    assert_eq!(gone.key_expr().as_str(), "ringhub/demo/node/cab-a/alive");
    assert_eq!(gone.kind(), SampleKind::Delete);

    within("closing the subscriber", subscriber_session.close())
        .await
        .expect("close");
}

/// Takes what has arrived, waiting at most [`REPUBLISH`] for the first sample.
async fn collect(
    subscriber: &zenoh::pubsub::Subscriber<
        zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>,
    >,
    seen: &mut Seen,
) {
    let Ok(first) = tokio::time::timeout(REPUBLISH, subscriber.recv_async()).await else {
        return;
    };
    let mut next = first.ok();
    while let Some(sample) = next {
        let key = sample.key_expr().as_str().to_owned();
        let bytes = sample.payload().to_bytes().into_owned();
        if key.starts_with("ringhub/demo/fault/") {
            let update = v1::FaultUpdate::decode(bytes.as_slice()).expect("FaultUpdate");
            seen.fault_updates.push((key.clone(), update));
        }
        seen.latest.insert(key, bytes);
        next = subscriber.try_recv().ok().flatten();
    }
}
