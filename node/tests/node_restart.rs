//! A `ringhub-node` killed with SIGKILL in the middle of a session (issue 5, "Tests"):
//! no shutdown code runs, so what makes the hub safe is the PLC's own watchdog, which
//! stops the EV and opens every relay of the node's segments once the host heartbeat
//! stops. A node restarted on the same data dir must then come back to a consistent
//! picture: the session over (the EV still plugged), nothing energised, no contactor
//! commanded closed that is open, the pending token from its store replayed, and the gun
//! Available once the EV leaves. The referee records no violation throughout.

mod common;

use common::{
    CARD, Rig, act, assert_no_violations, bounded, demo_with_local_auth, describe_gun, ev, gun,
    not_open, segment,
};
use ringhub_proto::v1::{self, ContactorState, OcppStatus};
use ringhub_sim::world::Action;

/// Gun 0 on segment 0, cabinet cab-a.
const GUN: u16 = 0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_the_watchdog_to_open_and_restarts_consistent() {
    bounded(async {
        let (text, config) = demo_with_local_auth(&[CARD]);
        let mut rig = Rig::start("restart", config, Some(&text), "local").await;
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
        rig.start_charging(ev(GUN, 30.0, 80.0, 75.0)).await;

        // SIGKILL mid-session.
        rig.kill_node();
        rig.wait_sim("the watchdog to open every relay of cab-a", |s| {
            let open = not_open(s, 0).is_empty() && not_open(s, 1).is_empty();
            if open && gun(s, 0)["energised"] == false {
                Ok(())
            } else {
                Err(describe_gun(s, 0))
            }
        })
        .await;
        let killed = rig.monitor.seen();
        assert!(
            killed
                .plc_states
                .contains(&(0, "WatchdogTripped".to_owned())),
            "segment 0's PLC watchdog tripped: {:?}",
            killed.plc_states
        );
        let s = rig.state().await;
        assert_eq!(
            segment(&s, 0)["plc_state"],
            "WatchdogTripped",
            "until a host returns"
        );
        assert_eq!(gun(&s, 0)["plugged"], true, "the EV is still plugged in");
        assert_no_violations(&rig.world).await;

        // The node comes back on the same data dir.
        rig.monitor.reset();
        rig.restart_node().await;
        assert!(
            rig.node.log_text().contains("replaying a pending token"),
            "the pending RFID token is replayed from the store:\n{}",
            rig.node.log_text()
        );
        let zenoh = common::ZenohWatch::connect(&rig.node.zenoh).await;
        let finishing = zenoh.wait_status(GUN.into(), OcppStatus::Finishing).await;
        assert_eq!(
            finishing.phase,
            v1::SessionPhase::Finished as i32,
            "the session is over, not resumed"
        );
        rig.wait_sim("the PLC back to Ready, the lock released", |s| {
            if segment(s, 0)["plc_state"] == "Ready" && gun(s, 0)["lock"] == "Unlocked" {
                Ok(())
            } else {
                Err(describe_gun(s, 0))
            }
        })
        .await;
        let m = rig.wait_phase(GUN, "finished").await;
        assert_eq!(m.gun("ringhub_gun_power_watts", GUN), 0.0);

        // No contactor the node commands closed is open in the hardware, and none is
        // commanded at all: the restarted node does not pick the session up again.
        let published = zenoh.published();
        let seg0 = published.segments.get(&0).expect("segment 0 published");
        let mut commanded: Vec<i32> = Vec::new();
        commanded.extend(seg0.gun_contactor.map(|c| c.commanded));
        commanded.extend(seg0.tie_contactor.map(|c| c.commanded));
        commanded.extend(
            seg0.module_contactors
                .iter()
                .filter_map(|m| m.contactor.map(|c| c.commanded)),
        );
        assert_eq!(commanded.len(), 4, "gc, mn, mc0, mc1: {seg0:?}");
        assert!(
            commanded.iter().all(|c| *c == ContactorState::Open as i32),
            "the restarted node commands nothing closed: {seg0:?}"
        );
        let s = rig.state().await;
        assert!(not_open(&s, 0).is_empty(), "{}", describe_gun(&s, 0));

        // The driver leaves; the gun is Available again.
        rig.unplug_and_wait(GUN).await;
        zenoh.wait_status(GUN.into(), OcppStatus::Available).await;
        rig.wait_phase(GUN, "idle").await;

        let after = rig.monitor.seen();
        assert!(
            !after.energised.contains(&0),
            "never energised after the restart: {after:?}"
        );
        assert!(
            !after.commanded.iter().any(|(s, _)| *s == 0),
            "nothing of segment 0 commanded closed after the restart: {after:?}"
        );
        assert_no_violations(&rig.world).await;
    })
    .await;
}
