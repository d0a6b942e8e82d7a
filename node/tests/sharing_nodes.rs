//! Module sharing across cabinets on a running hub (issue 8, "End to end"): three node
//! processes on the simulator's demo hub (400 kW, six segments of 100 kW of modules,
//! two segments per cabinet, every tie fitted):
//!
//! - a gun alone with an EV that wants far more than its segment's modules grows its
//!   island over idle neighbours, across a cabinet boundary, and charges on them;
//! - an EV arrives on one of those neighbours: the island is cut before the newcomer
//!   takes its modules back (break before make), and both charge;
//! - the cabinet that hosted a donor is killed: the others re-plan without it;
//!
//! with zero referee violations throughout (S2 one gun per island, S3 ties closed only
//! matched or dead, S4 nothing opened under load).

mod common;

use std::time::Instant;

use common::cluster::{CABINETS, delivered_kw, granted, planned_hub, status};
use common::{
    STEP, TempDir, act, assert_no_violations, bounded, describe_gun, eventually, start_sim, state,
};
use ringhub_proto::config::HubConfig;
use ringhub_sim::world::{Action, EvSpec};
use serde_json::Value;

/// An 800 V-class EV that takes up to 500 A at about 750 V: far more than one
/// segment's two 50 kW modules.
fn big_ev(gun: u16) -> EvSpec {
    EvSpec {
        gun,
        battery_v: 750.0,
        soc: 20.0,
        max_current_a: 500.0,
        target_soc: 90.0,
        ev_mac: Some(format!("02:00:00:00:01:{gun:02X}")),
        emaid: None,
        capacity_kwh: 100.0,
    }
}

/// The segments of the island that serves `gun` in a status.
fn island_of(status: &Value, gun: u64) -> Vec<u64> {
    status["islands"]
        .as_array()
        .and_then(|islands| islands.iter().find(|i| i["gun"] == gun))
        .and_then(|i| i["segments"].as_array())
        .map(|s| s.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The demo hub's cabinet of segment `segment` (two segments per cabinet, in order).
fn cabinet_of(segment: u64) -> &'static str {
    CABINETS[segment as usize / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gun_draws_modules_across_cabinets_and_hands_them_back_when_a_neighbour_arrives() {
    bounded(async {
        let config = HubConfig::demo();
        let sim = start_sim(config, 23).await;
        let dir = TempDir::new("sharing");
        let (mut nodes, endpoints) = planned_hub(&sim, &dir, None).await;
        let world = sim.world();

        // Gun 1 (segment 1, cab-a) alone: its island grows into another cabinet, and it
        // delivers more than its own two modules could.
        act(&world, Action::Plug(big_ev(1))).await;
        let donor = eventually(
            "gun 1 charging on another cabinet's modules",
            STEP,
            async || {
                let status = status(&endpoints).await?;
                let truth = state(&world).await;
                let island = island_of(&status, 1);
                let kw = delivered_kw(&truth, 1);
                let abroad = island.iter().copied().find(|&s| cabinet_of(s) != "cab-a");
                match abroad {
                    Some(segment) if kw > 150.0 => Ok(segment),
                    _ => Err(format!(
                        "island {island:?}, {kw:.1} kW: {}",
                        describe_gun(&truth, 1)
                    )),
                }
            },
        )
        .await;

        // An EV arrives on that donor segment's gun (in the demo, gun n sits on segment
        // n): the island is cut, and both guns charge.
        let arrival = Instant::now();
        act(&world, Action::Plug(big_ev(donor as u16))).await;
        eventually(
            "both guns charging on islands of their own",
            STEP,
            async || {
                let status = status(&endpoints).await?;
                let truth = state(&world).await;
                let (first, second) = (island_of(&status, 1), island_of(&status, donor));
                let (a, b) = (delivered_kw(&truth, 1), delivered_kw(&truth, donor));
                let apart = !first.contains(&donor) && second.contains(&donor);
                if apart && a > 30.0 && b > 30.0 {
                    Ok(())
                } else {
                    Err(format!(
                        "gun 1 on {first:?} {a:.1} kW, gun {donor} on {second:?} {b:.1} kW\n{}\n{}",
                        describe_gun(&truth, 1),
                        describe_gun(&truth, donor)
                    ))
                }
            },
        )
        .await;
        eprintln!(
            "a neighbour's EV on a donor segment -> both charging: {:?}",
            arrival.elapsed()
        );
        let shown = status(&endpoints).await.expect("status");
        let total = granted(&shown, 1) + granted(&shown, donor);
        assert!(total <= 400_000, "S8: {total} W granted: {shown}");

        // The donor's cabinet is killed: the survivors plan without its segments, and
        // gun 1 charges on.
        let victim = CABINETS
            .iter()
            .position(|&c| c == cabinet_of(donor))
            .expect("a cabinet of the demo");
        nodes.remove(victim).kill();
        let survivors: Vec<String> = endpoints
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, e)| e.clone())
            .collect();
        eventually(
            "gun 1 re-planned without the lost cabinet",
            STEP,
            async || {
                let status = status(&survivors).await?;
                let truth = state(&world).await;
                let island = island_of(&status, 1);
                let kw = delivered_kw(&truth, 1);
                let clear = island.iter().all(|&s| cabinet_of(s) != cabinet_of(donor));
                if clear && !island.is_empty() && kw > 30.0 {
                    Ok(())
                } else {
                    Err(format!("island {island:?}, {kw:.1} kW"))
                }
            },
        )
        .await;
        assert_no_violations(&world).await;
    })
    .await;
}
