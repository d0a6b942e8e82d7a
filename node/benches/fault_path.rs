//! Benchmarks of the safety path (DESIGN.md §6), printed as a table:
//!
//! - fault frame in → relay open command out, in process: a charging segment controller
//!   is handed an emergency-stop ChargeInfo frame, timed until its RelayCommand opening
//!   the gun contactor comes out (target < 5 ms p99);
//! - the controller's CPU per 1,000 frames/s: a recorded charging session's frames
//!   replayed through the controllers of a cabinet;
//! - end to end with the simulator (`--e2e`): a real `ringhub-node` process on the
//!   simulator's socketcand bus, an emergency stop pressed in the simulator, timed by a
//!   third client on the bus from the fault frame to the node's open command.
//!
//! `cargo bench -p ringhub-node --bench fault_path [-- --e2e]`

use std::time::{Duration, Instant};

use ringhub_node::connector::{
    AuthPolicy, ConnectorStatus, SegmentController, SegmentSetup, Timing,
};
use ringhub_proto::can::messages::RelayCommand;
use ringhub_proto::can::{CanFrame, CanMessage, PlcMessage};
use ringhub_proto::config::HubConfig;
use ringhub_sim::world::{Action, EvSpec, World};

fn setups(config: &HubConfig) -> Vec<SegmentSetup> {
    let cabinet = &config.cabinets[0].id;
    config
        .segments_of(cabinet)
        .map(|segment| SegmentSetup::from_config(segment, AuthPolicy::Free, Timing::default()))
        .collect()
}

/// Runs cab-a's controllers against the simulated hub in lock-step until gun 0 charges
/// (and `extra_ms` more), recording every frame the hardware sent.
fn charging_controllers(extra_ms: u64) -> (Vec<SegmentController>, Vec<CanFrame>, Instant) {
    let config = HubConfig::demo();
    let cabinet = config.cabinets[0].id.clone();
    let mut world = World::new(&config, 1);
    let t0 = Instant::now();
    let mut controllers: Vec<SegmentController> = setups(&config)
        .into_iter()
        .map(|s| SegmentController::new(s, t0))
        .collect();
    let spec = EvSpec {
        gun: 0,
        battery_v: 400.0,
        soc: 20.0,
        max_current_a: 200.0,
        target_soc: 90.0,
        ev_mac: None,
        emaid: None,
        capacity_kwh: 75.0,
    };
    world.apply(Action::Plug(spec)).expect("plug");
    let mut recorded = Vec::new();
    let mut charging_since = None;
    loop {
        let now = t0 + Duration::from_millis(world.now_ms());
        for c in &mut controllers {
            c.handle_timeout(now);
            while let Some(m) = c.poll_transmit() {
                world.handle_frame(&cabinet, m.encode().expect("encode"));
            }
            while c.poll_event().is_some() {}
        }
        world.step();
        let now = t0 + Duration::from_millis(world.now_ms());
        while let Some(t) = world.poll_transmit() {
            if t.cabinet != cabinet {
                continue;
            }
            recorded.push(t.frame);
            let message = CanMessage::decode(&t.frame).expect("decode");
            for c in &mut controllers {
                c.handle_frame(&message, now);
            }
        }
        let charging = controllers[0]
            .snapshot(now)
            .gun
            .is_some_and(|g| g.status == ConnectorStatus::Charging);
        match (charging, charging_since) {
            (true, None) => charging_since = Some(world.now_ms()),
            (true, Some(since)) if world.now_ms() >= since + extra_ms => break,
            _ => {}
        }
        assert!(
            world.now_ms() < 60_000,
            "no charging session in a minute of simulated time"
        );
    }
    (
        controllers,
        recorded,
        t0 + Duration::from_millis(world.now_ms()),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn row(what: &str, samples: &mut [Duration], target: &str) {
    samples.sort();
    println!(
        "| {what} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {target} |",
        samples.len(),
        percentile(samples, 0.5).as_secs_f64() * 1e6,
        percentile(samples, 0.99).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6,
    );
}

fn in_process_fault_path() {
    let (controllers, _, now) = charging_controllers(2_000);
    let info = controllers[0].snapshot(now);
    assert!(
        info.gun
            .as_ref()
            .is_some_and(|g| g.status == ConnectorStatus::Charging)
    );
    let pressed = {
        let mut info = ringhub_proto::can::messages::ChargeInfo {
            cp: ringhub_proto::can::messages::CpState::C,
            auth_pending: false,
            auth: ringhub_proto::can::messages::AuthStatus::Accepted,
            lock: ringhub_proto::can::messages::LockState::Locked,
            isolation: ringhub_proto::can::messages::IsolationState::Valid,
            emergency_stop: false,
            connector_overtemp: false,
            rcd_trip: false,
            plc_fault: false,
            connector_temperature: ringhub_proto::units::Celsius(30.0),
        };
        info.emergency_stop = true;
        CanMessage::Plc {
            slot: ringhub_proto::can::PlcSlot::new(0).expect("slot"),
            message: PlcMessage::ChargeInfo(info),
        }
    };
    let frame = pressed.encode().expect("encode");
    let mut samples = Vec::new();
    for _ in 0..5_000 {
        let mut c = controllers[0].clone();
        while c.poll_transmit().is_some() {}
        let start = Instant::now();
        let message = CanMessage::decode(&frame).expect("decode");
        c.handle_frame(&message, now);
        let opened = std::iter::from_fn(|| c.poll_transmit()).any(|m| {
            matches!(m, CanMessage::Plc { message: PlcMessage::RelayCommand(RelayCommand { closed, emergency: true, .. }), .. } if closed.gun == 0)
        });
        samples.push(start.elapsed());
        assert!(opened, "the emergency stop must open the gun contactor");
    }
    row(
        "E-stop frame in → GC open command out (decode + controller)",
        &mut samples,
        "< 5 ms p99",
    );
}

fn controller_cpu() {
    let (_, recorded, _) = charging_controllers(10_000);
    let config = HubConfig::demo();
    let t0 = Instant::now();
    let mut controllers: Vec<SegmentController> = setups(&config)
        .into_iter()
        .map(|s| SegmentController::new(s, t0))
        .collect();
    let start = Instant::now();
    let rounds = 5;
    for round in 0..rounds {
        for (i, frame) in recorded.iter().enumerate() {
            let now = t0 + Duration::from_micros((round * recorded.len() + i) as u64 * 100);
            let message = CanMessage::decode(frame).expect("decode");
            for c in &mut controllers {
                c.handle_frame(&message, now);
                while c.poll_transmit().is_some() {}
                while c.poll_event().is_some() {}
            }
        }
    }
    let frames = recorded.len() * rounds;
    let per_frame = start.elapsed() / frames as u32;
    println!(
        "| controller CPU per frame ({} frames of a charging cabinet, 2 segments) | {frames} | {:.1} µs | | | |",
        recorded.len(),
        per_frame.as_secs_f64() * 1e6
    );
    println!(
        "| ⇒ CPU at 1,000 frames/s | | {:.2} % of one core | | | 8,000 frames/s per bus ⇒ {:.1} % |",
        per_frame.as_secs_f64() * 1000.0 * 100.0,
        per_frame.as_secs_f64() * 8000.0 * 100.0
    );
}

fn main() {
    let e2e = std::env::args().any(|a| a == "--e2e");
    println!("| path | samples | p50 | p99 | max | target |");
    println!("| --- | --- | --- | --- | --- | --- |");
    in_process_fault_path();
    controller_cpu();
    if e2e {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(end_to_end(20));
    }
}

/// Kills the node when the benchmark ends, however it ends.
struct NodeProcess(std::process::Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A real `ringhub-node` on the simulator's bus; a third client on the bus times each
/// emergency stop from the simulator's ChargeInfo frame to the node's open command.
async fn end_to_end(sessions: usize) {
    use ringhub_node::can::{BusUri, CanBus, SocketcandBus};
    use ringhub_sim::server::{Sim, SimOptions};
    use ringhub_sim::world::{FaultKind, FaultSpec};

    let sim = Sim::start(SimOptions::ephemeral(HubConfig::demo(), 3))
        .await
        .expect("simulator");
    let uri = format!("socketcand:{}/cab-a", sim.socketcand_addr());
    let data_dir = std::env::temp_dir().join(format!("ringhub-bench-{}", std::process::id()));
    let _node = NodeProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_ringhub-node"))
            .args(["--node", "cab-a", "--auth", "free", "--can", &uri])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--metrics", &format!("127.0.0.1:{}", free_port())])
            .args(["--zenoh-listen", &format!("tcp/127.0.0.1:{}", free_port())])
            .stderr(
                std::fs::File::create(std::env::temp_dir().join("ringhub-bench-node.log"))
                    .expect("node log"),
            )
            .spawn()
            .expect("ringhub-node"),
    );
    let BusUri::Socketcand(addr) = uri.parse().expect("uri") else {
        unreachable!()
    };
    let mut sniffer = SocketcandBus::connect(&addr).await.expect("sniffer");
    let world = sim.world();
    let mut samples = Vec::new();
    let deadline = |secs| tokio::time::Instant::now() + Duration::from_secs(secs);
    for _ in 0..sessions {
        // 3 A: the emergency open then interrupts no load, so no operator fault blocks the next run.
        let spec = EvSpec {
            gun: 0,
            battery_v: 400.0,
            soc: 20.0,
            max_current_a: 3.0,
            target_soc: 90.0,
            ev_mac: None,
            emaid: None,
            capacity_kwh: 75.0,
        };
        world
            .apply(Action::Plug(spec))
            .await
            .expect("world")
            .expect("plug");
        let until = deadline(30);
        loop {
            let state = world.state().await.expect("world");
            if state["guns"][0]["energised"] == true {
                break;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "no session: {}",
                state["guns"][0]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fault = FaultSpec {
            kind: FaultKind::EmergencyStop,
            target: 0,
            contactor: None,
        };
        let reply = world
            .apply(Action::InjectFault(fault))
            .await
            .expect("world")
            .expect("inject");
        let ringhub_sim::world::ActionReply::FaultInjected { id } = reply else {
            unreachable!()
        };
        let (mut fault_seen, until) = (None, deadline(5));
        let sample = loop {
            let received = tokio::time::timeout_at(until, sniffer.recv())
                .await
                .expect("timed out")
                .expect("bus");
            match CanMessage::decode(&received.frame) {
                Ok(CanMessage::Plc {
                    message: PlcMessage::ChargeInfo(info),
                    ..
                }) if info.emergency_stop && fault_seen.is_none() => {
                    fault_seen = Some(Instant::now());
                }
                Ok(CanMessage::Plc {
                    message: PlcMessage::RelayCommand(command),
                    ..
                }) if command.emergency && command.closed.gun == 0 => {
                    if let Some(seen) = fault_seen {
                        break seen.elapsed();
                    }
                }
                _ => {}
            }
        };
        samples.push(sample);
        world
            .apply(Action::ClearFault { id })
            .await
            .expect("world")
            .expect("clear");
        world
            .apply(Action::Unplug { gun: 0 })
            .await
            .expect("world")
            .expect("unplug");
        let until = deadline(10);
        loop {
            let state = world.state().await.expect("world");
            if state["guns"][0]["plugged"] == false {
                break;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the EV did not leave: {}",
                state["guns"][0]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let violations = world.violations().await.expect("world");
    row(
        "E-stop frame on the bus → node's GC open command on the bus (end to end, socketcand)",
        &mut samples,
        "< 5 ms p99",
    );
    println!(
        "referee violations during the end-to-end run: {}",
        violations.len()
    );
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&data_dir);
}
