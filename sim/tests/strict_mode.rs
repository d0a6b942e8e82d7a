//! `--strict` stops the simulator at the first safety violation, with status 1 and the
//! violation printed, and `--violations-log` records it as a JSON line: in virtual time
//! (a scenario) and in real time (a host misbehaving over socketcand).
//!
//! The violation is S9: a tie contactor welds, the host opens it (the weld is reported),
//! and more than the grace time later the host commands it closed again.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};

use common::{DEADLINE, http, within};
use ringhub_node::can::{CanBus, SocketcandAddr, SocketcandBus};
use ringhub_proto::can::CanFrame;
use ringhub_proto::socketcand::BusName;
use serde_json::Value;

/// RelayCommand to PLC slot 0 (segment 0 on cab-a): sequence, GC, MC, MN masks, emergency.
const CLOSE_TIE: &str = "100#0100000100";
const OPEN_TIE: &str = "100#0200000000";
const CLOSE_TIE_AGAIN: &str = "100#0300000100";

/// A child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim(args: &[&str]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_ringhub-sim"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ringhub-sim starts"),
    )
}

/// Waits for the process to end (its stderr closes): exit code and stderr.
async fn finish(mut child: Running) -> (Option<i32>, String) {
    let mut stderr: ChildStderr = child.0.stderr.take().expect("piped stderr");
    let text = within(
        "ringhub-sim to exit",
        tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        }),
    )
    .await
    .expect("reader thread");
    let status = child.0.wait().expect("exit status");
    (status.code(), text)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("strict-{name}"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn frame(text: &str) -> CanFrame {
    text.parse().expect("candump syntax")
}

#[tokio::test]
async fn a_strict_scenario_stops_at_the_first_violation() {
    let dir = scratch("scenario");
    let scenario = dir.join("weld.toml");
    let steps = [(100, CLOSE_TIE), (500, OPEN_TIE), (2000, CLOSE_TIE_AGAIN)]
        .iter()
        .map(|(t, f)| {
            format!(
                "[[at]]\ntime_ms = {t}\naction = \"send\"\ncabinet = \"cab-a\"\nframe = \"{f}\"\n"
            )
        })
        .collect::<String>();
    let text = format!(
        "duration_ms = 5000\n[[at]]\ntime_ms = 0\naction = \"inject_fault\"\nkind = \"contactor_weld\"\ntarget = 0\ncontactor = \"mn\"\n{steps}"
    );
    std::fs::write(&scenario, text).expect("write scenario");
    let log = dir.join("truth.jsonl");
    let child = sim(&[
        "--scenario",
        scenario.to_str().expect("UTF-8"),
        "--truth-log",
        log.to_str().expect("UTF-8"),
        "--strict",
    ]);
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"invariant\":\"S9\""), "{stderr}");
    let log = std::fs::read_to_string(&log).expect("truth log");
    let last: Value = serde_json::from_str(log.lines().last().expect("lines")).expect("JSON");
    assert_eq!(last["violation"]["invariant"], "S9", "{last}");
    assert_eq!(last["time_ms"], 2000, "{last}");
}

/// The contactor `name` of segment `segment` in a ground truth.
fn contactor<'a>(state: &'a Value, segment: usize, name: &str) -> &'a Value {
    state["segments"][segment]["contactors"]
        .as_array()
        .expect("contactors")
        .iter()
        .find(|c| c["name"] == name)
        .expect("the contactor")
}

/// Polls the ground truth until `done` holds for it; returns it.
async fn state_until(api: SocketAddr, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    within(what, async {
        loop {
            let state = http(api, "GET", "/state", None).await.body;
            if done(&state) {
                return state;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test]
async fn a_strict_simulator_exits_when_a_host_recloses_a_welded_tie() {
    let dir = scratch("real-time");
    let violations = dir.join("violations.jsonl");
    let mut child = sim(&[
        "--port",
        "0",
        "--control",
        "127.0.0.1:0",
        "--strict",
        "--violations-log",
        violations.to_str().expect("UTF-8"),
    ]);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let ready = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .expect("ready line in time")
    .expect("reader thread")
    .expect("stdout");
    let ready: Value = serde_json::from_str(&ready).expect("the ready line is JSON");
    let api: SocketAddr = ready["control"]
        .as_str()
        .expect("control")
        .parse()
        .expect("addr");
    let bus_port: SocketAddr = ready["socketcand"]
        .as_str()
        .expect("bus")
        .parse()
        .expect("addr");
    let addr = SocketcandAddr {
        host: "127.0.0.1".into(),
        port: bus_port.port(),
        bus: BusName::new("cab-a").expect("name"),
    };
    let mut host = within("connect", SocketcandBus::connect(&addr))
        .await
        .expect("connects");

    let weld = r#"{"kind": "contactor_weld", "target": 0, "contactor": "mn"}"#;
    assert_eq!(http(api, "POST", "/faults", Some(weld)).await.status, 201);
    host.send(frame(CLOSE_TIE)).await.expect("send");
    state_until(api, "the tie to close", |s| {
        contactor(s, 0, "mn")["closed"] == true
    })
    .await;
    host.send(frame(OPEN_TIE)).await.expect("send");
    let opened = state_until(api, "the open command", |s| {
        contactor(s, 0, "mn")["commanded"] == false
    })
    .await;
    // Past the grace time in sim time, the host closes it again.
    let after = opened["time_ms"].as_u64().expect("time") + 1_200;
    state_until(api, "the grace time to pass", |s| {
        s["time_ms"].as_u64().is_some_and(|t| t >= after)
    })
    .await;
    assert_eq!(
        http(api, "GET", "/violations", None).await.body,
        serde_json::json!([])
    );
    host.send(frame(CLOSE_TIE_AGAIN)).await.expect("send");

    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"invariant\":\"S9\""), "{stderr}");
    let log = std::fs::read_to_string(&violations).expect("violations log");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(lines[0]["invariant"], "S9");
    assert_eq!(lines[0]["subject"], "segment 0 mn");
}
