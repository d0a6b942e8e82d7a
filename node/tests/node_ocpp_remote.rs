//! A real `ringhub-node` as an OCPP 1.6J charge point, driven by the CSMS (issue 6,
//! "Tests"): the Local Authorization List, RemoteStartTransaction, UnlockConnector,
//! TriggerMessage and Reset sent through csms.py's stdin commands, and a CSMS outage with
//! transactions running, starting and ending through it. csms.py's `ocpp` package
//! validates every message against the OCA JSON schemas; the simulator plays the
//! hardware.
//!
//! ```text
//!  csms.py ◄── ws://…/RH-DEMO-A ── ringhub-node cab-a ◄─ socketcand ─ Sim
//! ```
//!
//! Gun 0 is connector 1 of RH-DEMO-A, gun 1 connector 2.

mod common;

use common::csms::{
    Csms, confirmed_transaction_id, demo_with_csms, present_accepted_card, unix_now,
};
use common::{CARD, Rig, act, assert_no_violations, bounded, describe_gun, ev, gun, inject};
use ringhub_sim::world::{Action, FaultKind};
use serde_json::Value;

/// The id tag the CSMS starts sessions with remotely.
const REMOTE_TAG: &str = "REMOTE01";

/// Sets configuration `key` to `value` through the CSMS; it must be Accepted.
fn configure(csms: &mut Csms, key: &str, value: &str) {
    let status = csms.command(
        &format!("change_configuration {key} {value}"),
        "ChangeConfiguration",
    );
    assert_eq!(status, "Accepted", "{key}={value}");
}

/// The Unix time of an OCPP timestamp.
fn unix(timestamp: &Value) -> f64 {
    let text = timestamp.as_str().expect("a timestamp string");
    let parsed = chrono_free_parse(text);
    parsed.unwrap_or_else(|| panic!("unparsable timestamp {text}"))
}

/// Parses `YYYY-MM-DDTHH:MM:SS(.fff)Z` without a date library.
fn chrono_free_parse(text: &str) -> Option<f64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

#[test]
fn timestamps_parse() {
    assert_eq!(chrono_free_parse("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(
        chrono_free_parse("2024-05-01T12:00:00.500Z"),
        Some(1_714_564_800.5)
    );
    assert_eq!(chrono_free_parse("2024-05-01 12:00:00"), None);
}

/// The Local Authorization List, a remote start, an unlock that ends the session, a
/// triggered MeterValues and a Soft reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_list_remote_start_unlock_trigger_and_reset() {
    bounded(async {
        let mut csms = Csms::start(&[CARD, REMOTE_TAG]);
        let (text, config) = demo_with_csms(&csms.url());
        let rig = Rig::start("ocpp-remote-start", config, Some(&text), "ocpp").await;
        csms.call("StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Available"
        });
        // Connector 0, the dispenser itself, follows ChangeAvailability of connector 0.
        csms.call("StatusNotification", |p| {
            p["connectorId"] == 0 && p["status"] == "Available"
        });
        let from = csms.mark();
        assert_eq!(
            csms.command("change_availability 0 Inoperative", "ChangeAvailability"),
            "Accepted"
        );
        for connector in [0, 1, 2] {
            csms.call_from(from, "StatusNotification", |p| {
                p["connectorId"] == connector && p["status"] == "Unavailable"
            });
        }
        let from = csms.mark();
        assert_eq!(
            csms.command("change_availability 0 Operative", "ChangeAvailability"),
            "Accepted"
        );
        for connector in [0, 1, 2] {
            csms.call_from(from, "StatusNotification", |p| {
                p["connectorId"] == connector && p["status"] == "Available"
            });
        }

        // ConnectionTimeOut: a card presented without a plug-in is forgotten after it.
        configure(&mut csms, "ConnectionTimeOut", "2");
        let from = csms.mark();
        act(
            &rig.world,
            Action::Rfid {
                gun: 1,
                id_tag: CARD.into(),
            },
        )
        .await;
        let preparing = csms.call_from(from, "StatusNotification", |p| {
            p["connectorId"] == 2 && p["status"] == "Preparing"
        });
        let available = csms.call_from(from, "StatusNotification", |p| {
            p["connectorId"] == 2 && p["status"] == "Available"
        });
        let waited =
            unix(&available["payload"]["timestamp"]) - unix(&preparing["payload"]["timestamp"]);
        // The timeout runs from the card's arrival; Preparing is stamped when its
        // notification is built, up to a few control ticks later (one CI run saw 1.993 s).
        assert!(
            (1.9..3.0).contains(&waited),
            "Preparing lasted {waited} s, not 2 s"
        );
        configure(&mut csms, "ConnectionTimeOut", "60");

        // ClockAlignedDataInterval: every gun's reading on whole seconds of the wall
        // clock, with context Sample.Clock.
        configure(&mut csms, "ClockAlignedDataInterval", "1");
        let from = csms.mark();
        for connector in [1, 2] {
            let aligned = csms.call_from(from, "MeterValues", |p| {
                p["connectorId"] == connector
                    && p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
            });
            let at = unix(&aligned["payload"]["meterValue"][0]["timestamp"]);
            assert!(at.fract() < 0.2, "aligned to the second: {aligned}");
            assert!(
                aligned["payload"].get("transactionId").is_none(),
                "{aligned}"
            );
        }
        configure(&mut csms, "ClockAlignedDataInterval", "0");

        // The Local Authorization List: stored, and its version reported.
        let status = csms.command(
            "send_local_list 1 Full LISTED1=Accepted BLOCKED1=Blocked",
            "SendLocalList",
        );
        assert_eq!(status, "Accepted");
        let version = csms.response("get_local_list_version", "GetLocalListVersion");
        assert_eq!(version["result"]["list_version"], 1, "{version}");
        let status = csms.command(
            "send_local_list 1 Differential LISTED2=Accepted",
            "SendLocalList",
        );
        assert_eq!(status, "VersionMismatch");

        // A connector that does not exist, and one busy with nothing: Rejected /
        // Accepted; the remote token makes connector 1 Preparing before any plug-in.
        let status = csms.command(
            &format!("remote_start 9 {REMOTE_TAG}"),
            "RemoteStartTransaction",
        );
        assert_eq!(status, "Rejected");
        let from = csms.mark();
        let status = csms.command(
            &format!("remote_start 1 {REMOTE_TAG}"),
            "RemoteStartTransaction",
        );
        assert_eq!(status, "Accepted");
        csms.call_from(from, "StatusNotification", |p| {
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

        // The EV arrives: the transaction carries the remote id tag.
        rig.start_charging(ev(0, 30.0, 80.0, 75.0)).await;
        let start = csms.call("StartTransaction", |p| p["connectorId"] == 1);
        assert_eq!(start["payload"]["idTag"], REMOTE_TAG, "{start}");
        let transaction_id = confirmed_transaction_id(&mut csms);
        // A second remote start on the busy connector is Rejected.
        let status = csms.command(
            &format!("remote_start 1 {REMOTE_TAG}"),
            "RemoteStartTransaction",
        );
        assert_eq!(status, "Rejected");

        // TriggerMessage MeterValues: Accepted, and a reading with context Trigger.
        let from = csms.mark();
        let status = csms.command("trigger MeterValues 1", "TriggerMessage");
        assert_eq!(status, "Accepted");
        let triggered = csms.call_from(from, "MeterValues", |p| {
            p["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
        });
        assert_eq!(triggered["payload"]["transactionId"], transaction_id);

        // UnlockConnector during the transaction: the session ramps down and stops with
        // UnlockCommand, then the lock opens and the answer is Unlocked.
        let status = csms.command("unlock 1", "UnlockConnector");
        assert_eq!(status, "Unlocked");
        let stop = csms.call("StopTransaction", |p| p["transactionId"] == transaction_id);
        assert_eq!(stop["payload"]["reason"], "UnlockCommand", "{stop}");
        // Its transactionData: the Begin and End readings of StopTxnSampledData (by
        // default the energy register, in Wh; 10 Wh steps, so this short session may
        // show none), in order.
        let data = stop["payload"]["transactionData"]
            .as_array()
            .expect("transactionData");
        let readings: Vec<(&str, f64)> = data
            .iter()
            .map(|m| {
                let v = &m["sampledValue"][0];
                assert_eq!(v["measurand"], "Energy.Active.Import.Register", "{m}");
                (
                    v["context"].as_str().expect("context"),
                    v["value"]
                        .as_str()
                        .and_then(|x| x.parse().ok())
                        .expect("Wh"),
                )
            })
            .collect();
        assert_eq!(readings.len(), 2, "{data:?}");
        assert_eq!(
            (readings[0].0, readings[1].0),
            ("Transaction.Begin", "Transaction.End")
        );
        assert!(
            readings[1].1 >= readings[0].1,
            "a register only grows: {readings:?}"
        );
        assert_eq!(
            data[1]["timestamp"], stop["payload"]["timestamp"],
            "End is the stop"
        );
        let s = rig.state().await;
        assert_eq!(gun(&s, 0)["energised"], false, "{}", describe_gun(&s, 0));
        act(&rig.world, Action::Unplug { gun: 0 }).await;

        // AuthorizeRemoteTxRequests: a remote idTag goes through Authorize first; one the
        // CSMS refuses never reaches the gun, the next accepted one does.
        configure(&mut csms, "AuthorizeRemoteTxRequests", "true");
        let from = csms.mark();
        let status = csms.command("remote_start 2 STRANGER", "RemoteStartTransaction");
        assert_eq!(status, "Accepted");
        csms.call_from(from, "Authorize", |p| p["idTag"] == "STRANGER");
        let status = csms.command(
            &format!("remote_start 2 {REMOTE_TAG}"),
            "RemoteStartTransaction",
        );
        assert_eq!(status, "Accepted");
        csms.call_from(from, "Authorize", |p| p["idTag"] == REMOTE_TAG);
        csms.call_from(from, "StatusNotification", |p| {
            p["connectorId"] == 2 && p["status"] == "Preparing"
        });
        rig.start_charging(ev(1, 30.0, 80.0, 75.0)).await;
        let start = csms.call_from(from, "StartTransaction", |p| p["connectorId"] == 2);
        assert_eq!(start["payload"]["idTag"], REMOTE_TAG, "{start}");

        // A Soft reset: Accepted, the connection closes and the charge point boots again.
        let from = csms.mark();
        let status = csms.command("reset Soft", "Reset");
        assert_eq!(status, "Accepted");
        // The session on gun 1 stops with SoftReset before the connection closes.
        let stop = csms.call_from(from, "StopTransaction", |_| true);
        assert_eq!(stop["payload"]["reason"], "SoftReset", "{stop}");
        let disconnect = csms.wait_for_from(from, "the reset's disconnect", |v| {
            v["event"] == "disconnected" && v["cp"] == "RH-DEMO-A"
        });
        let position = |line: &Value| csms.seen.iter().position(|v| v == line);
        assert!(
            position(&stop) < position(&disconnect),
            "a Soft reset delivers the Stop first"
        );
        csms.call_from(from, "BootNotification", |_| true);
        assert_no_violations(&rig.world).await;
    })
    .await;
}

/// The CSMS dies while gun 0 charges. Offline, gun 0's session ends (its Stop waits in
/// the journal), and a card the charge point has cached starts a session on gun 1,
/// whose Start, MeterValues and Stop wait too. A new CSMS on the same port gets all of
/// them after the BootNotification, in order, with the transactionId it gave the offline
/// Start mapped into that transaction's MeterValues and Stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csms_outage_with_transactions_running_through_it() {
    bounded(async {
        let mut csms = Csms::start(&[CARD]);
        let port = csms.port();
        let (text, config) = demo_with_csms(&csms.url());
        let rig = Rig::start("ocpp-outage", config, Some(&text), "ocpp").await;
        csms.call("StatusNotification", |p| {
            p["connectorId"] == 2 && p["status"] == "Available"
        });
        // Online: the card is authorised (and cached), gun 0 charges.
        present_accepted_card(&rig, &mut csms).await;
        rig.start_charging(ev(0, 30.0, 80.0, 75.0)).await;
        let first_id = confirmed_transaction_id(&mut csms);
        csms.call("MeterValues", |p| p["transactionId"] == first_id);

        // The CSMS dies.
        csms.kill();
        let outage_began = unix_now();

        // Offline, gun 0's session ends: its EV's control pilot fails.
        let pilot = inject(&rig.world, FaultKind::PilotError, 0, "").await;
        rig.wait_sim("gun 0 de-energised", |s| {
            if gun(s, 0)["energised"] == false {
                Ok(())
            } else {
                Err(describe_gun(s, 0))
            }
        })
        .await;
        act(&rig.world, Action::ClearFault { id: pilot }).await;

        // Offline, the cached card starts gun 1, which charges for a while.
        act(
            &rig.world,
            Action::Rfid {
                gun: 1,
                id_tag: CARD.into(),
            },
        )
        .await;
        rig.wait_sim("param 20 Accepted at gun 1's PLC (from the cache)", |s| {
            if gun(s, 1)["auth"] == "Accepted" {
                Ok(())
            } else {
                Err(describe_gun(s, 1))
            }
        })
        .await;
        rig.start_charging(ev(1, 30.0, 80.0, 75.0)).await;
        // Two seconds of charging: two or more 1 s meter samples wait in the journal.
        let energised_at = unix_now();
        rig.wait_sim("gun 1 charging for 2 s", |s| {
            if unix_now() - energised_at >= 2.0 && gun(s, 1)["energised"] == true {
                Ok(())
            } else {
                Err(describe_gun(s, 1))
            }
        })
        .await;
        let pilot = inject(&rig.world, FaultKind::PilotError, 1, "").await;
        rig.wait_sim("gun 1 de-energised", |s| {
            if gun(s, 1)["energised"] == false {
                Ok(())
            } else {
                Err(describe_gun(s, 1))
            }
        })
        .await;
        act(&rig.world, Action::ClearFault { id: pilot }).await;
        let outage_ended = unix_now();

        // A new CSMS where the old one was; its transaction ids start at 100.
        let mut csms = Csms::start_on(port, &[CARD], &["--first-transaction-id", "100"]);
        csms.call("BootNotification", |_| true);
        let stop_first = csms.call("StopTransaction", |p| p["transactionId"] == first_id);
        let start_offline = csms.call("StartTransaction", |p| p["connectorId"] == 2);
        assert_eq!(start_offline["payload"]["idTag"], CARD);
        let offline_id = confirmed_transaction_id(&mut csms);
        assert_eq!(offline_id, 100);
        let stop_offline = csms.call("StopTransaction", |p| p["transactionId"] == offline_id);
        let samples: Vec<Value> = csms
            .calls("MeterValues")
            .into_iter()
            .filter(|v| v["payload"]["transactionId"] == offline_id)
            .collect();
        assert!(samples.len() >= 2, "offline samples: {samples:?}");

        // Order: the older transaction's Stop, then the offline Start, its samples, its
        // Stop; nothing of them was sent before the new CSMS's BootNotification answer.
        let position = |line: &Value| {
            csms.seen
                .iter()
                .position(|v| v == line)
                .expect("a line seen")
        };
        assert!(position(&stop_first) < position(&start_offline));
        assert!(samples.iter().all(|m| position(m) > position(&start_offline)));
        assert!(samples.iter().all(|m| position(m) < position(&stop_offline)));
        // Their timestamps are those of the outage, not of the delivery.
        for line in [&stop_first, &start_offline, &stop_offline] {
            let at = unix(&line["payload"]["timestamp"]);
            assert!(
                (outage_began - 1.0..=outage_ended + 1.0).contains(&at),
                "{at} outside the outage [{outage_began}, {outage_ended}]: {line}"
            );
        }
        for sample in &samples {
            let at = unix(&sample["payload"]["meterValue"][0]["timestamp"]);
            assert!((outage_began - 1.0..=outage_ended + 1.0).contains(&at), "{sample}");
        }
        let starts = csms.calls("StartTransaction").len();
        assert_eq!(starts, 1, "only the offline Start is new to this CSMS");
        println!(
            "outage of {:.1} s: delivered after reconnect: Stop {first_id}, Start → {offline_id}, {} MeterValues, Stop {offline_id}",
            outage_ended - outage_began,
            samples.len()
        );
        assert_no_violations(&rig.world).await;
    })
    .await;
}

/// With `transaction_start = "ev_connected"` the StartTransaction goes out when the EV is
/// plugged in and authorised, before any energy flows; by default (every other test) it
/// waits for energy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_can_start_on_ev_connect() {
    bounded(async {
        let mut csms = Csms::start(&[CARD]);
        let (text, _) = demo_with_csms(&csms.url());
        let identity = "ocpp_identity = \"RH-DEMO-A\"\n";
        let text = text.replacen(
            identity,
            &format!("{identity}transaction_start = \"ev_connected\"\n"),
            1,
        );
        let config = ringhub_proto::config::HubConfig::parse(&text, "ev-connected.toml")
            .expect("the edited demo parses");
        let rig = Rig::start("ocpp-ev-connected", config, Some(&text), "ocpp").await;
        csms.call("StatusNotification", |p| {
            p["connectorId"] == 1 && p["status"] == "Available"
        });
        present_accepted_card(&rig, &mut csms).await;
        let world = rig.world.clone();
        let energy_flowing = async move {
            let deadline = std::time::Instant::now() + common::STEP;
            loop {
                let s = common::state(&world).await;
                let g = gun(&s, 0);
                if g["energised"] == true && g["current_a"].as_f64().unwrap_or(0.0) > 0.0 {
                    return unix_now();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}",
                    describe_gun(&s, 0)
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        let (_, energy_at) =
            tokio::join!(rig.start_charging(ev(0, 30.0, 80.0, 75.0)), energy_flowing);
        let start = csms.call("StartTransaction", |p| p["connectorId"] == 1);
        let started_at = start["t"].as_f64().expect("a receive time");
        assert!(
            started_at < energy_at,
            "StartTransaction at {started_at}, energy from {energy_at}"
        );
        println!(
            "StartTransaction {:.0} ms before energy flowed",
            (energy_at - started_at) * 1000.0
        );
        assert_no_violations(&rig.world).await;
    })
    .await;
}
