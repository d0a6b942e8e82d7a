//! A scenario file replayed twice with the same seed produces the same ground-truth log,
//! byte for byte, through the `ringhub-sim` binary; a bad file is refused naming its
//! line and field.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest a scenario run may take.
const DEADLINE: Duration = Duration::from_secs(60);

const SCENARIO: &str = r#"# An EV charges on gun 1 while a module of its cabinet overheats; no host is connected.
seed = 11
duration_ms = 4000

[[at]]
time_ms = 100
action = "plug"
gun = 1
battery_v = 420.0
soc = 30.0
max_current_a = 150.0
target_soc = 80.0
ev_mac = "02:00:00:00:00:07"
emaid = "DEABCC12345678"

[[at]]
time_ms = 500
action = "rfid"
gun = 1
id_tag = "04A2B3C4"

[[at]]
time_ms = 1000
action = "inject_fault"
kind = "module_overtemp"
target = 2

[[at]]
time_ms = 2500
action = "clear_fault"
id = 1

[[at]]
time_ms = 3000
action = "unplug"
gun = 1
"#;

/// A child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ringhub-sim` with `args` to completion within [`DEADLINE`]: status and stderr.
fn run_sim(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_ringhub-sim"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ringhub-sim starts"),
    );
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let (done, finished) = mpsc::channel();
    // stderr ends when the process does.
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = done.send(text);
    });
    let stderr = finished
        .recv_timeout(DEADLINE)
        .expect("ringhub-sim finishes the scenario in time");
    let status = child.0.wait().expect("exit status");
    (status, stderr)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("scenario-replay-{name}"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn replay(dir: &Path, scenario: &Path, run: &str, seed: &[&str]) -> Vec<u8> {
    let log = dir.join(format!("truth-{run}.jsonl"));
    let mut args = vec![
        "--scenario",
        scenario.to_str().expect("UTF-8 path"),
        "--truth-log",
        log.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(seed);
    let (status, stderr) = run_sim(&args);
    assert!(status.success(), "run {run}: {status}: {stderr}");
    std::fs::read(&log).expect("truth log")
}

#[test]
fn the_same_seed_replays_the_same_truth_log() {
    let dir = scratch("same-seed");
    let scenario = dir.join("charge.toml");
    std::fs::write(&scenario, SCENARIO).expect("write scenario");

    let first = replay(&dir, &scenario, "1", &[]);
    let second = replay(&dir, &scenario, "2", &[]);
    assert!(first == second, "two runs of the same seed differ");

    // One state line every 100 ms from 0 to 4000, violations in between.
    let lines: Vec<serde_json::Value> = first
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("each line is JSON"))
        .collect();
    let states: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("state").is_some()).collect();
    assert_eq!(states.len(), 41);
    assert_eq!(states[0]["time_ms"], 0);
    assert_eq!(states[40]["time_ms"], 4000);
    let plugged_at = |t: u64| {
        let state = states
            .iter()
            .find(|s| s["time_ms"] == t)
            .expect("a state at t");
        state["state"]["guns"][1]["plugged"].clone()
    };
    assert_eq!(plugged_at(0), false);
    assert_eq!(plugged_at(200), true);

    // The seed matters only through the world: an explicit --seed equal to the file's
    // changes nothing.
    let explicit = replay(&dir, &scenario, "3", &["--seed", "11"]);
    assert!(
        explicit == first,
        "--seed 11 differs from the file's seed 11"
    );
}

#[test]
fn a_bad_scenario_is_refused_naming_line_and_field() {
    let dir = scratch("bad");
    let scenario = dir.join("bad.toml");
    std::fs::write(
        &scenario,
        SCENARIO.replace("gun = 1\nid_tag", "gun = \"one\"\nid_tag"),
    )
    .expect("write scenario");
    let (status, stderr) = run_sim(&["--scenario", scenario.to_str().expect("UTF-8 path")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let expected = format!("{}:19: at[1].gun: invalid type", scenario.display());
    assert!(stderr.contains(&expected), "{stderr}");
}
