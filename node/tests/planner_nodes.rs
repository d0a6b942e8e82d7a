//! The leader's planner on a running hub (issue 8, "End to end"): three node processes
//! on the simulator, a site limit that binds, and the budgets following what the EVs ask
//! and what the modules can give, as `ringhub status` shows them and the simulator's
//! physics confirm:
//!
//! - a gun alone gets all its modules give;
//! - a second EV arrives: the site limit is shared max-min fairly, the first gun's budget
//!   lowered before the second one's is raised (S8), and both charge;
//! - a module of the second gun trips: its grant shrinks to what is left, and the first
//!   gun gets the power freed;
//!
//! with zero referee violations throughout. The hub has no ties, so each gun charges on
//! its own segment's modules; `sharing_nodes.rs` shares modules across cabinets.

mod common;

use std::time::Instant;

use common::cluster::{delivered_kw, granted, planned_hub, status};
use common::{
    STEP, TempDir, act, assert_no_violations, bounded, describe_gun, eventually, inject, scrape,
    start_sim, state,
};
use ringhub_proto::config::{DEMO_TOML, HubConfig};
use ringhub_sim::world::{Action, EvSpec, FaultKind};

/// The demo hub with a 150 kW grid connection and no ties: two guns of 100 kW of
/// modules each contend, each on its own segment's modules.
fn tight_hub() -> String {
    let tight = DEMO_TOML
        .replace("site_limit_kw = 400", "site_limit_kw = 150")
        .replace("tie = \"fitted\"", "tie = \"absent\"");
    assert!(
        tight.contains("site_limit_kw = 150") && tight.contains("tie = \"absent\""),
        "the demo config names its site limit and its ties"
    );
    tight
}

/// An EV that takes up to 250 A at about 400 V: 100 kW, more than its share.
fn hungry_ev(gun: u16) -> EvSpec {
    EvSpec {
        gun,
        battery_v: 400.0,
        soc: 20.0,
        max_current_a: 250.0,
        target_soc: 90.0,
        ev_mac: Some("02:00:00:00:00:BB".into()),
        emaid: None,
        capacity_kwh: 80.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_follow_demand_and_derating_within_the_site_limit() {
    bounded(async {
        let text = tight_hub();
        let config = HubConfig::parse(&text, "tight.toml").expect("the tight config parses");
        let sim = start_sim(config, 21).await;
        let dir = TempDir::new("planner");
        let path = dir.path().join("tight.toml");
        std::fs::write(&path, &text).expect("write the config");
        let (nodes, endpoints) = planned_hub(&sim, &dir, Some(&path)).await;
        let world = sim.world();

        // Gun 0 (cab-a) alone: all its two modules give.
        act(&world, Action::Plug(hungry_ev(0))).await;
        eventually("gun 0 granted its modules and charging", STEP, async || {
            let status = status(&endpoints).await?;
            let truth = state(&world).await;
            if granted(&status, 0) == 100_000 && delivered_kw(&truth, 0) > 60.0 {
                Ok(())
            } else {
                Err(format!("{status}\n{}", describe_gun(&truth, 0)))
            }
        })
        .await;

        // Gun 2 (cab-b) arrives: 150 kW shared 75/75, and both charge.
        let arrival = Instant::now();
        act(&world, Action::Plug(hungry_ev(2))).await;
        eventually("both guns granted 75 kW", STEP, async || {
            let status = status(&endpoints).await?;
            match (granted(&status, 0), granted(&status, 2)) {
                (75_000, 75_000) => Ok(()),
                shares => Err(format!("{shares:?}")),
            }
        })
        .await;
        let planned = arrival.elapsed();
        // `ringhub status` shows what each gun asks beside what it is granted.
        let shown = status(&endpoints).await.expect("status");
        let asks = |gun: u64| {
            shown["demands"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["gun"] == gun))
                .and_then(|d| d["demand_w"].as_u64())
                .unwrap_or(0)
        };
        assert!(asks(0) > 75_000 && asks(2) > 75_000, "{shown}");
        assert_eq!(asks(1), 0, "gun 1 has no EV: {shown}");
        // The nodes export what they were granted, and the leader the epochs it committed.
        eventually("the grants in the nodes' metrics", STEP, async || {
            let a = scrape(nodes[0].metrics).await?;
            let b = scrape(nodes[1].metrics).await?;
            let grants = (
                a.gun("ringhub_gun_granted_power_watts", 0),
                b.gun("ringhub_gun_granted_power_watts", 2),
            );
            let mut committed = 0.0;
            for node in &nodes {
                let m = scrape(node.metrics).await?;
                committed += m
                    .get("ringhub_plan_epochs_committed_total", &[])
                    .unwrap_or(0.0);
            }
            if grants == (75_000.0, 75_000.0) && committed >= 3.0 {
                Ok(())
            } else {
                Err(format!("{grants:?}, {committed} epochs committed"))
            }
        })
        .await;
        eventually("both guns granted 75 kW and charging", STEP, async || {
            let status = status(&endpoints).await?;
            let truth = state(&world).await;
            let shares = (granted(&status, 0), granted(&status, 2));
            if shares == (75_000, 75_000)
                && delivered_kw(&truth, 0) > 30.0
                && delivered_kw(&truth, 2) > 30.0
            {
                Ok(())
            } else {
                Err(format!(
                    "{shares:?}\n{}\n{}",
                    describe_gun(&truth, 0),
                    describe_gun(&truth, 2)
                ))
            }
        })
        .await;
        eprintln!(
            "arrival of a second EV -> both shares planned: {planned:?}; -> both charging: {:?}",
            arrival.elapsed()
        );
        eventually("the first gun held to its share", STEP, async || {
            let truth = state(&world).await;
            let kw = delivered_kw(&truth, 0);
            if kw <= 75.0 * 1.05 {
                Ok(())
            } else {
                Err(format!("{kw:.1} kW: {}", describe_gun(&truth, 0)))
            }
        })
        .await;

        // Module 4 (segment 2, gun 2's) trips: gun 2 keeps 50 kW, gun 0 takes the rest.
        inject(&world, FaultKind::ModuleTrip, 4, "").await;
        eventually("gun 2's grant shrunk, gun 0's grown", STEP, async || {
            let status = status(&endpoints).await?;
            let shares = (granted(&status, 0), granted(&status, 2));
            if shares.1 <= 50_000 && shares.0 >= 95_000 && shares.0 + shares.1 <= 150_000 {
                Ok(())
            } else {
                Err(format!("{shares:?}: {status}"))
            }
        })
        .await;
        assert_no_violations(&world).await;
    })
    .await;
}
