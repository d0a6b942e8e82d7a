//! A full charging session of a real `ringhub-node` process against the simulator over
//! socketcand (issue 5, "Tests"): RFID authorisation from the local list, plug, lock,
//! SLAC/HLC, precharge, charge to the EV's target state of charge, stop, unlock, unplug,
//! with zero referee violations (DESIGN.md §2).
//!
//! The card is presented before the EV is plugged in (pre-authorisation, as at a
//! dispenser that reads the card first): the node then has its token decided before the
//! EV's MAC (AutoCharge) arrives, so the MAC is not offered as a second token.

mod common;

use common::{
    CARD, Rig, act, assert_no_violations, bounded, demo_with_local_auth, describe_gun, ev, gun,
    not_open,
};
use ringhub_proto::v1::{self, OcppStatus};
use ringhub_sim::world::Action;

/// Gun 0 on segment 0, cabinet cab-a.
const GUN: u16 = 0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfid_session_charges_to_target_soc_and_ends_available() {
    bounded(async {
        let (text, config) = demo_with_local_auth(&[CARD]);
        let rig = Rig::start("session", config, Some(&text), "local").await;
        let zenoh = common::ZenohWatch::connect(&rig.node.zenoh).await;
        zenoh.wait_status(GUN.into(), OcppStatus::Available).await;
        let idle = rig.state().await;
        assert_eq!(gun(&idle, 0)["auth"], "None", "{}", describe_gun(&idle, 0));

        // A card from the local list: the node writes Accepted to param 20.
        act(
            &rig.world,
            Action::Rfid {
                gun: GUN,
                id_tag: CARD.into(),
            },
        )
        .await;
        rig.wait_sim("param 20 Accepted at the PLC", |s| {
            if gun(s, 0)["auth"] == "Accepted" {
                Ok(())
            } else {
                Err(describe_gun(s, 0))
            }
        })
        .await;
        let authorised = zenoh.wait_status(GUN.into(), OcppStatus::Preparing).await;
        assert_eq!(authorised.id_token, CARD);
        assert_eq!(authorised.auth_method, v1::AuthMethod::Rfid as i32);

        // 2 kWh pack from 50 % to 52 %: 40 Wh, a few seconds at 40 kW.
        let charging = rig.start_charging(ev(GUN, 50.0, 52.0, 2.0)).await;
        assert!(
            charging.gun("ringhub_gun_current_amperes", GUN) > 10.0,
            "the node measures the current"
        );
        let during = rig.state().await;
        assert_eq!(gun(&during, 0)["lock"], "Locked", "energised only locked");
        zenoh.wait_status(GUN.into(), OcppStatus::Charging).await;

        // The EV stops at its target; the node ramps down, opens GC, unlocks.
        rig.wait_sim("the session to end at the target SoC", |s| {
            let g = gun(s, 0);
            let soc = g["soc"].as_f64().unwrap_or(0.0);
            if soc >= 52.0 && g["energised"] == false && g["lock"] == "Unlocked" {
                Ok(())
            } else {
                Err(describe_gun(s, 0))
            }
        })
        .await;
        let finished = rig.wait_phase(GUN, "finished").await;
        let finishing = zenoh.wait_status(GUN.into(), OcppStatus::Finishing).await;
        let after = rig.state().await;
        assert_eq!(
            not_open(&after, 0),
            Vec::<String>::new(),
            "every contactor of segment 0 open after the session"
        );
        assert_eq!(gun(&after, 0)["plugged"], true, "the EV is still there");

        // Energy: the EV took some, and the node's trusted meter agrees within a register
        // step (10 Wh) and a meter period.
        let ev_kwh = gun(&after, 0)["energy_kwh"].as_f64().unwrap_or(0.0);
        assert!(ev_kwh >= 0.035, "the EV took {ev_kwh} kWh, 40 Wh were due");
        let node_kwh = finished.gun("ringhub_gun_session_energy_joules", GUN) / 3.6e6;
        assert!(
            (node_kwh - ev_kwh).abs() <= 0.02,
            "node metered {node_kwh} kWh, the EV took {ev_kwh} kWh"
        );
        assert_eq!(
            finishing.session_energy_wh,
            (node_kwh * 1000.0).round() as u64,
            "Zenoh and Prometheus report the same session energy"
        );

        // The driver leaves; the gun is Available again.
        rig.unplug_and_wait(GUN).await;
        let available = zenoh.wait_status(GUN.into(), OcppStatus::Available).await;
        assert!(available.id_token.is_empty(), "the token went with the EV");
        let end = rig.wait_phase(GUN, "idle").await;
        assert_eq!(end.gun("ringhub_gun_power_watts", GUN), 0.0);

        let published = zenoh.published();
        assert!(
            published.statuses_in_order(
                GUN.into(),
                &[
                    OcppStatus::Available,
                    OcppStatus::Preparing,
                    OcppStatus::Charging,
                    OcppStatus::Finishing,
                    OcppStatus::Available,
                ]
            ),
            "statuses published: {:?}",
            published.statuses.get(&u32::from(GUN))
        );
        assert!(
            published
                .max_power_w
                .get(&u32::from(GUN))
                .copied()
                .unwrap_or(0)
                > 10_000,
            "Zenoh showed power while charging: {:?}",
            published.max_power_w
        );
        assert_eq!(published.undecodable, 0, "every publication decodes");

        let seen = rig.monitor.seen();
        assert!(seen.energised.contains(&0), "gun 0 was energised");
        assert!(
            !seen.energised.contains(&1),
            "gun 1 was never energised: {seen:?}"
        );
        // (The EV may leave during WeldingDetection, before SessionStop.)
        for phase in ["PreCharge", "CurrentDemand", "PowerDeliveryStop"] {
            assert!(
                seen.hlc_phases.contains(&(0, phase.to_owned())),
                "HLC went through {phase}: {:?}",
                seen.hlc_phases
            );
        }
        assert_no_violations(&rig.world).await;
    })
    .await;
}
