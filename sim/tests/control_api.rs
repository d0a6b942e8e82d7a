//! The control API over real HTTP: an EV plugged in shows in the ground truth, a bad
//! request is refused naming the field, and a fault is injected and cleared by id.

mod common;

use common::{http, start_demo, within};
use serde_json::{Value, json};

const PLUG: &str = r#"{"gun": 2, "battery_v": 400.0, "soc": 20.0, "max_current_a": 200.0,
    "target_soc": 80.0, "ev_mac": "02:00:00:00:00:01", "emaid": "DEABCC12345678"}"#;

fn gun(state: &Value, id: u64) -> &Value {
    state["guns"]
        .as_array()
        .expect("guns")
        .iter()
        .find(|g| g["id"] == id)
        .unwrap_or_else(|| panic!("gun {id} in {state}"))
}

#[tokio::test]
async fn a_plugged_ev_shows_in_the_state_and_leaves_on_unplug() {
    let sim = start_demo().await;
    let api = sim.control_addr();
    let state = http(api, "GET", "/state", None).await;
    assert_eq!(state.status, 200);
    assert_eq!(gun(&state.body, 2)["plugged"], false);

    let plugged = http(api, "POST", "/ev/plug", Some(PLUG)).await;
    assert_eq!((plugged.status, &plugged.body), (200, &json!({"ok": true})));
    let state = http(api, "GET", "/state", None).await;
    assert_eq!(gun(&state.body, 2)["plugged"], true, "{}", state.body);

    let unplugged = http(api, "POST", "/ev/unplug", Some(r#"{"gun": 2}"#)).await;
    assert_eq!(unplugged.status, 200, "{:?}", unplugged.body);
    // The EV leaves once the lock lets it, within sim time: wait for it.
    within("the EV to leave", async {
        loop {
            let state = http(api, "GET", "/state", None).await;
            if gun(&state.body, 2)["plugged"] == false {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let sim = start_demo().await;
    let api = sim.control_addr();
    let cases = [
        (
            "/ev/plug",
            PLUG.replace("\"soc\"", "\"charge\""),
            400,
            "charge",
        ),
        (
            "/ev/plug",
            PLUG.replace("400.0", "\"high\""),
            400,
            "battery_v",
        ),
        (
            "/ev/plug",
            PLUG.replace("\"target_soc\": 80.0,", ""),
            400,
            "target_soc",
        ),
        (
            "/ev/plug",
            PLUG.replace("\"gun\": 2", "\"gun\": 99"),
            422,
            "gun",
        ),
        ("/ev/unplug", r#"{"gun": -1}"#.to_owned(), 400, "gun"),
        ("/rfid", r#"{"gun": 0}"#.to_owned(), 400, "id_tag"),
        (
            "/faults",
            r#"{"kind": "melt", "target": 0}"#.to_owned(),
            400,
            "kind",
        ),
        ("/faults", "not json".to_owned(), 400, "body"),
    ];
    for (path, body, status, field) in cases {
        let answer = http(api, "POST", path, Some(&body)).await;
        assert_eq!(answer.status, status, "{path} {body}: {:?}", answer.body);
        assert_eq!(
            answer.body["field"], field,
            "{path} {body}: {:?}",
            answer.body
        );
        let error = answer.body["error"].as_str().expect("an error text");
        assert!(error.starts_with(&format!("{field}: ")), "{error}");
    }
    let unknown = http(api, "GET", "/nowhere", None).await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body["error"]
            .as_str()
            .expect("text")
            .contains("/nowhere")
    );
}

#[tokio::test]
async fn a_fault_is_injected_and_cleared_by_id() {
    let sim = start_demo().await;
    let api = sim.control_addr();
    let injected = http(
        api,
        "POST",
        "/faults",
        Some(r#"{"kind": "module_overtemp", "target": 3}"#),
    )
    .await;
    assert_eq!(injected.status, 201, "{:?}", injected.body);
    let id = injected.body["id"].as_u64().expect("a fault id");
    let state = http(api, "GET", "/state", None).await;
    let faults = state.body["faults"].as_array().expect("faults");
    assert!(faults.iter().any(|f| f["id"] == id), "{faults:?}");

    let cleared = http(api, "DELETE", &format!("/faults/{id}"), None).await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.body);
    let state = http(api, "GET", "/state", None).await;
    let faults = state.body["faults"].as_array().expect("faults");
    assert!(faults.iter().all(|f| f["id"] != id), "{faults:?}");

    let again = http(api, "DELETE", &format!("/faults/{id}"), None).await;
    assert_eq!(again.status, 404, "{:?}", again.body);
    let bad = http(api, "DELETE", "/faults/seven", None).await;
    assert_eq!((bad.status, &bad.body["field"]), (400, &json!("id")));

    let violations = http(api, "GET", "/violations", None).await;
    assert_eq!((violations.status, violations.body), (200, json!([])));
}
