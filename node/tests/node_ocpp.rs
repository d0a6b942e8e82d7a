//! A real `ringhub-node` as an OCPP 1.6J charge point (issue 6: boot, status, authorize,
//! a transaction with its meter values, RemoteStopTransaction and ChangeAvailability sent
//! through csms.py's stdin commands), judged by `tests/ocpp_csms/csms.py`, whose `ocpp` package validates every
//! message against the OCA JSON schemas, while the simulator plays the hardware.
//!
//! ```text
//!  csms.py (--accept CARD) ◄── ws://…/RH-DEMO-A ── ringhub-node cab-a ◄─ socketcand ─ Sim
//! ```
//!
//! Gun 0 is connector 1 of dispenser disp-a (identity RH-DEMO-A), gun 1 connector 2.
//! The plug-in → StatusNotification(Preparing) latency is measured at the CSMS: the plug
//! time is taken by this process just before the simulator's Plug action, the receive
//! time is csms.py's `t`; both read this machine's wall clock. The authorised →
//! StartTransaction latency starts at the CSMS's receipt of the Authorize it answered at
//! once; the energy-flowing → StartTransaction one at the first sample of this process's
//! poll of the simulator (every 5 ms) that shows gun 0 energised with current flowing.
//! The CSMS sets MeterValueSampleInterval to 1 s after boot, so that a short session
//! carries meter values.

mod common;

use std::time::{Duration, Instant};

use common::csms::{
    Csms, UNKNOWN_CARD, confirmed_transaction_id, demo_with_csms, present_accepted_card, unix_now,
};
use common::{
    CARD, Rig, STEP, act, assert_no_violations, bounded, describe_gun, ev, gun, not_open, state,
};
use ringhub_sim::world::Action;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_status_and_authorize_against_the_csms() {
    bounded(async {
        let mut csms = Csms::start(&[CARD]);
        let (text, config) = demo_with_csms(&csms.url());
        let rig = Rig::start("ocpp", config, Some(&text), "ocpp").await;

        // Boot: a schema-valid BootNotification, then Available for both connectors.
        let boot = csms.call("BootNotification", |_| true);
        assert_eq!(boot["payload"]["chargePointVendor"], "ringhub");
        for connector in [1, 2] {
            csms.call("StatusNotification", |p| {
                p["connectorId"] == connector && p["status"] == "Available"
            });
        }

        // Plug-in at gun 1 (connector 2): Preparing, timed at the CSMS.
        let plugged_at = unix_now();
        act(&rig.world, Action::Plug(ev(1, 50.0, 52.0, 2.0))).await;
        let preparing = csms.call("StatusNotification", |p| {
            p["connectorId"] == 2 && p["status"] == "Preparing"
        });
        let received_at = preparing["t"].as_f64().expect("a receive time");
        assert!(received_at >= plugged_at, "Preparing came after the plug");
        println!(
            "plug-in -> StatusNotification(Preparing) at the CSMS: {:.1} ms",
            (received_at - plugged_at) * 1000.0
        );

        // Then a card the CSMS does not know, at gun 1: asked, refused, never energised.
        act(
            &rig.world,
            Action::Rfid {
                gun: 1,
                id_tag: UNKNOWN_CARD.into(),
            },
        )
        .await;
        csms.call("Authorize", |p| p["idTag"] == UNKNOWN_CARD);
        rig.wait_sim("gun 1's token refused at the PLC", |s| {
            if gun(s, 1)["auth"] == "Rejected" {
                Ok(())
            } else {
                Err(describe_gun(s, 1))
            }
        })
        .await;

        // The accepted card at gun 0 (connector 1): Authorize, then a charging session.
        act(
            &rig.world,
            Action::Rfid {
                gun: 0,
                id_tag: CARD.into(),
            },
        )
        .await;
        let authorised_at = csms.call("Authorize", |p| p["idTag"] == CARD)["t"]
            .as_f64()
            .expect("a receive time");
        csms.call("StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Preparing"
        });
        rig.wait_sim("param 20 Accepted at gun 0's PLC", |s| {
            if gun(s, 0)["auth"] == "Accepted" {
                Ok(())
            } else {
                Err(describe_gun(s, 0))
            }
        })
        .await;
        // A 2 kWh EV from 50 % to 53 %: about 60 Wh, a few seconds, ended by the EV.
        let world = rig.world.clone();
        let energy_flowing = async move {
            let deadline = Instant::now() + STEP;
            loop {
                let s = state(&world).await;
                let g = gun(&s, 0);
                if g["energised"] == true && g["current_a"].as_f64().unwrap_or(0.0) > 0.0 {
                    return unix_now();
                }
                assert!(
                    Instant::now() < deadline,
                    "gun 0 not energised: {}",
                    describe_gun(&s, 0)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let (_, energy_at) =
            tokio::join!(rig.start_charging(ev(0, 50.0, 53.0, 2.0)), energy_flowing);

        // Gun 1, plugged with a refused card, stayed dead throughout (the monitor samples
        // every 10 ms); gun 0 was energised.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seen = rig.monitor.seen();
        assert!(seen.energised.contains(&0), "gun 0 was energised");
        assert!(!seen.energised.contains(&1), "gun 1 was never energised");

        // The transaction: Start with the card on connector 1, sent as energy flowed.
        let configured = csms.wait_for("MeterValueSampleInterval set", |v| {
            v["event"] == "configured" && v["cp"] == "RH-DEMO-A"
        });
        assert_eq!(configured["status"], "Accepted", "{configured}");
        let start = csms.call("StartTransaction", |p| p["connectorId"] == 1);
        assert_eq!(start["payload"]["idTag"], CARD, "{start}");
        let meter_start = start["payload"]["meterStart"].as_i64().expect("meterStart");
        let started_at = start["t"].as_f64().expect("a receive time");
        println!(
            "authorised (Authorize at the CSMS) -> StartTransaction at the CSMS: {:.1} ms \
             (includes plug-in, lock, cable check and precharge)",
            (started_at - authorised_at) * 1000.0
        );
        println!(
            "energy flowing (simulator poll) -> StartTransaction at the CSMS: {:.1} ms",
            (started_at - energy_at) * 1000.0
        );
        let transaction_id = confirmed_transaction_id(&mut csms);

        // Periodic meter values of that transaction, tagged with the trusted meter.
        let meter = csms.call("MeterValues", |p| p["transactionId"] == transaction_id);
        let sampled = &meter["payload"]["meterValue"][0]["sampledValue"];
        let energy = sampled
            .as_array()
            .and_then(|values| {
                values
                    .iter()
                    .find(|v| v["measurand"] == "Energy.Active.Import.Register")
            })
            .unwrap_or_else(|| panic!("no energy register in {meter}"));
        assert_eq!(energy["context"], "Sample.Periodic", "{meter}");
        assert_eq!(energy["unit"], "Wh", "{meter}");
        assert!(
            energy["location"] == "Outlet" || energy["location"] == "Body",
            "the meter source as location: {meter}"
        );

        // The EV reaches its target and stops: StopTransaction of the same transaction.
        let stop = csms.call("StopTransaction", |p| p["transactionId"] == transaction_id);
        let meter_stop = stop["payload"]["meterStop"].as_i64().expect("meterStop");
        assert!(meter_stop >= meter_start, "meterStop ≥ meterStart: {stop}");
        assert_eq!(stop["payload"]["reason"], "Local", "the EV stopped: {stop}");
        println!(
            "transaction {transaction_id}: meterStart {meter_start} Wh, meterStop {meter_stop} Wh"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_the_csms_refuses_is_stopped() {
    bounded(async {
        // The CSMS accepts the card at Authorize and refuses it at StartTransaction.
        let mut csms = Csms::start_with(&[CARD], &["--refuse-at-start", CARD]);
        let (text, config) = demo_with_csms(&csms.url());
        let rig = Rig::start("ocpp-refused", config, Some(&text), "ocpp").await;
        csms.call("StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Available"
        });

        act(
            &rig.world,
            Action::Rfid {
                gun: 0,
                id_tag: CARD.into(),
            },
        )
        .await;
        csms.call("Authorize", |p| p["idTag"] == CARD);
        act(&rig.world, Action::Plug(ev(0, 50.0, 90.0, 50.0))).await;

        // Start, refused; the node stops the session at once, with DeAuthorized.
        let start = csms.call("StartTransaction", |p| p["connectorId"] == 1);
        assert_eq!(start["payload"]["idTag"], CARD, "{start}");
        let transaction_id = confirmed_transaction_id(&mut csms);
        let stop = csms.call("StopTransaction", |p| p["transactionId"] == transaction_id);
        assert_eq!(stop["payload"]["reason"], "DeAuthorized", "{stop}");
        assert!(
            stop["payload"]["meterStop"].as_i64() >= start["payload"]["meterStart"].as_i64(),
            "meterStop ≥ meterStart: {stop}"
        );
        println!(
            "StartTransaction -> StopTransaction(DeAuthorized) at the CSMS: {:.1} ms",
            (stop["t"].as_f64().unwrap_or(0.0) - start["t"].as_f64().unwrap_or(0.0)) * 1000.0
        );

        // The EV, far from its target, is still plugged but no longer energised.
        rig.wait_sim("gun 0 de-energised with the EV still plugged", |s| {
            let g = gun(s, 0);
            if g["plugged"] == true && g["energised"] == false {
                Ok(())
            } else {
                Err(describe_gun(s, 0))
            }
        })
        .await;
    })
    .await;
}

/// How a test stops the node mid-transaction.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// SIGKILL: no shutdown path runs, as in a crash or a power cut.
    Kill,
    /// SIGTERM: the node stops cleanly.
    Terminate,
}

/// A node stopped by `cut` after the CSMS confirmed its StartTransaction, restarted on
/// the same data dir: the Start is not sent again, and the transaction the stop cut is
/// stopped once, with `reason`.
async fn a_transaction_cut_by(cut: Cut, reason: &str) {
    let mut csms = Csms::start(&[CARD]);
    let (text, config) = demo_with_csms(&csms.url());
    let mut rig = Rig::start("ocpp-restart", config, Some(&text), "ocpp").await;
    csms.call("StatusNotification", |p| {
        p["connectorId"] == 1 && p["status"] == "Available"
    });
    present_accepted_card(&rig, &mut csms).await;
    // A long session: 75 kWh from 30 % to 80 %.
    rig.start_charging(ev(0, 30.0, 80.0, 75.0)).await;
    let start = csms.call("StartTransaction", |p| p["connectorId"] == 1);
    let meter_start = start["payload"]["meterStart"].as_i64().expect("meterStart");
    let transaction_id = confirmed_transaction_id(&mut csms);
    // A MeterValues with the transactionId: the node has the confirmation (and its
    // journal the transactionId) before it is stopped.
    csms.call("MeterValues", |p| p["transactionId"] == transaction_id);

    match cut {
        Cut::Kill => rig.kill_node(),
        Cut::Terminate => rig.terminate_node(),
    }
    rig.wait_sim("the watchdog to open every relay of cab-a", |s| {
        if not_open(s, 0).is_empty() && not_open(s, 1).is_empty() {
            Ok(())
        } else {
            Err(describe_gun(s, 0))
        }
    })
    .await;
    rig.restart_node().await;

    // The cut transaction's Stop, schema-valid, with the reason.
    let stop = csms.call("StopTransaction", |p| p["transactionId"] == transaction_id);
    assert_eq!(stop["payload"]["reason"], reason, "{stop}");
    let meter_stop = stop["payload"]["meterStop"].as_i64().expect("meterStop");
    assert!(meter_stop >= meter_start, "meterStop ≥ meterStart: {stop}");
    println!(
        "transaction {transaction_id} cut by {cut:?}: meterStart {meter_start} Wh, \
         meterStop {meter_stop} Wh, reason {reason}"
    );

    // Exactly one StartTransaction for it, none sent again after the restart.
    csms.drain(Duration::from_secs(3));
    let starts: Vec<Value> = csms
        .calls("StartTransaction")
        .into_iter()
        .filter(|v| v["payload"]["timestamp"] == start["payload"]["timestamp"])
        .collect();
    assert_eq!(starts.len(), 1, "one StartTransaction: {starts:?}");
    let stops = csms
        .calls("StopTransaction")
        .into_iter()
        .filter(|v| v["payload"]["transactionId"] == transaction_id)
        .count();
    assert_eq!(
        stops, 1,
        "one StopTransaction for transaction {transaction_id}"
    );
    assert_no_violations(&rig.world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cut_by_a_sigkill_is_stopped_with_power_loss() {
    bounded(a_transaction_cut_by(Cut::Kill, "PowerLoss")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cut_by_a_clean_stop_is_stopped_with_reboot() {
    bounded(a_transaction_cut_by(Cut::Terminate, "Reboot")).await;
}

/// The CSMS's calls into the charge point: RemoteStopTransaction of an unknown and of a
/// running transaction, ChangeAvailability during a transaction (Scheduled, applied when
/// it ends, without cutting it) and of an idle connector (Accepted at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_stop_and_change_availability() {
    bounded(async {
        let mut csms = Csms::start(&[CARD]);
        let (text, config) = demo_with_csms(&csms.url());
        let mut rig = Rig::start("ocpp-remote", config, Some(&text), "ocpp").await;
        csms.call("StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Available"
        });

        // No such transaction: Rejected.
        let status = csms.command("remote_stop 999", "RemoteStopTransaction");
        assert_eq!(status, "Rejected");

        // A long session on gun 0 (connector 1): 75 kWh from 30 % to 80 %.
        present_accepted_card(&rig, &mut csms).await;
        rig.start_charging(ev(0, 30.0, 80.0, 75.0)).await;
        let start = csms.call("StartTransaction", |p| p["connectorId"] == 1);
        let transaction_id = confirmed_transaction_id(&mut csms);
        // A MeterValues with the transactionId: the node has its confirmation.
        csms.call("MeterValues", |p| p["transactionId"] == transaction_id);

        // Inoperative during the transaction: Scheduled, and the transaction runs on.
        let status = csms.command("change_availability 1 Inoperative", "ChangeAvailability");
        assert_eq!(status, "Scheduled");
        csms.drain(Duration::from_millis(1500));
        assert!(
            csms.calls("StopTransaction").is_empty(),
            "the Scheduled change cut no transaction"
        );
        let s = state(&rig.world).await;
        assert_eq!(gun(&s, 0)["energised"], true, "{}", describe_gun(&s, 0));

        // RemoteStopTransaction: Accepted, then its Stop with reason Remote.
        let status = csms.command(
            &format!("remote_stop {transaction_id}"),
            "RemoteStopTransaction",
        );
        assert_eq!(status, "Accepted");
        let stop = csms.call("StopTransaction", |p| p["transactionId"] == transaction_id);
        assert_eq!(stop["payload"]["reason"], "Remote", "{stop}");
        assert!(
            stop["payload"]["meterStop"].as_i64() >= start["payload"]["meterStart"].as_i64(),
            "meterStop ≥ meterStart: {stop}"
        );
        rig.wait_sim("gun 0 de-energised with the EV still plugged", |s| {
            let g = gun(s, 0);
            if g["plugged"] == true && g["energised"] == false {
                Ok(())
            } else {
                Err(describe_gun(s, 0))
            }
        })
        .await;

        // The scheduled change took effect when the transaction ended: unplugged, the
        // connector is Unavailable; Operative makes it Available.
        let from = csms.mark();
        act(&rig.world, Action::Unplug { gun: 0 }).await;
        csms.call_from(from, "StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Unavailable"
        });
        let from = csms.mark();
        let status = csms.command("change_availability 1 Operative", "ChangeAvailability");
        assert_eq!(status, "Accepted");
        csms.call_from(from, "StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Available"
        });

        // Idle connector 1 made Inoperative: Accepted, then Unavailable; Operative again:
        // Accepted, then Available.
        let from = csms.mark();
        let status = csms.command("change_availability 1 Inoperative", "ChangeAvailability");
        assert_eq!(status, "Accepted");
        csms.call_from(from, "StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Unavailable"
        });
        let from = csms.mark();
        let status = csms.command("change_availability 1 Operative", "ChangeAvailability");
        assert_eq!(status, "Accepted");
        csms.call_from(from, "StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Available"
        });

        // Inoperative persists across a restart (§5.2): after it, connector 1 is reported
        // Unavailable.
        let status = csms.command("change_availability 1 Inoperative", "ChangeAvailability");
        assert_eq!(status, "Accepted");
        rig.terminate_node();
        let from = csms.mark();
        rig.restart_node().await;
        csms.call_from(from, "BootNotification", |_| true);
        csms.call_from(from, "StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Unavailable"
        });
        assert_no_violations(&rig.world).await;
    })
    .await;
}
