//! `ringhub plan --input FILE.json` as an operator runs it: the binary on a file.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn ringhub_plan(input: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringhub"))
        .arg("plan")
        .arg("--input")
        .arg(input)
        .output()
        .expect("run ringhub plan")
}

fn demo_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/what-if/demo.json")
}

#[test]
fn the_demo_ring_is_planned_as_json() {
    let out = ringhub_plan(&demo_file());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    // Gun 0 asks 180 kW: two segments' modules. Gun 3 asks 60 kW: its own two.
    assert_eq!(answer["grants"]["0"], 180.0);
    assert_eq!(answer["grants"]["3"], 60.0);
    let islands = answer["islands"].as_array().expect("islands");
    let served: Vec<&Value> = islands.iter().filter(|i| !i["gun"].is_null()).collect();
    assert_eq!(served.len(), 2, "{answer:#}");
    let gun0 = served.iter().find(|i| i["gun"] == 0).expect("gun 0 served");
    assert_eq!(
        gun0["segments"].as_array().map(Vec::len),
        Some(2),
        "{answer:#}"
    );
    assert_eq!(
        gun0["modules"].as_array().map(Vec::len),
        Some(4),
        "{answer:#}"
    );
    // Every segment is in exactly one island.
    let mut segments: Vec<u64> = islands
        .iter()
        .flat_map(|i| i["segments"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_u64())
        .collect();
    segments.sort();
    assert_eq!(segments, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_bad_file_is_refused_with_the_path_of_the_bad_field() {
    let dir = std::env::temp_dir().join(format!("ringhub-plan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut ring: Value =
        serde_json::from_str(&std::fs::read_to_string(demo_file()).expect("read demo file"))
            .expect("JSON");
    ring["segments"][4]["modules"][1]["available_kw"] = "lots".into();
    let path = dir.join("bad.json");
    std::fs::write(&path, ring.to_string()).expect("write");
    let out = ringhub_plan(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("segments[4].modules[1].available_kw: invalid type"),
        "{stderr}"
    );
}
