//! `ringhub demo`, the README's first command, runs a simulated hub with a node per
//! cabinet, charges the scripted EVs, shares modules between segments on the way, and
//! ends with no safety violation.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the demo if the test ends early.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_charges_its_evs_without_violations() {
    let child = Command::new(env!("CARGO_BIN_EXE_ringhub"))
        .args(["demo", "--duration", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringhub demo");
    let mut demo = Demo(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = demo.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not end within 90 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    demo.0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    let mut err = String::new();
    demo.0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert!(status.success(), "demo failed: {status}\n{out}\n{err}");
    assert!(out.contains("referee: no safety violations"), "{out}");
    // Some frame shows a shared island: a segment feeding another segment's gun (in the
    // demo, gun n sits on segment n).
    let shared = out
        .lines()
        .filter_map(|line| line.split_once("ring: ").map(|(_, ring)| ring))
        .flat_map(|ring| ring.split('[').skip(1))
        .any(|segment| {
            let id = segment.split_whitespace().next().unwrap_or_default();
            segment
                .split(']')
                .next()
                .unwrap_or_default()
                .split("→g")
                .skip(1)
                .any(|gun| gun != id)
        });
    assert!(
        shared,
        "no frame shows modules shared between segments:\n{out}"
    );
    // The last frame: the nodes report the scripted EVs charging on the plan's grants,
    // which stay within the demo hub's 400 kW.
    let last_frame = out.rsplit("t=").next().unwrap_or_default();
    let granted: f64 = last_frame
        .split("granted ")
        .nth(1)
        .and_then(|rest| rest.split(" kW").next())
        .and_then(|kw| kw.parse().ok())
        .unwrap_or_else(|| panic!("no granted total in:\n{last_frame}"));
    assert!(granted > 0.0 && granted <= 400.0, "{last_frame}");
    let charging = last_frame
        .lines()
        .filter(|line| line.contains('│'))
        .filter(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            // gun, segment, cabinet, OCPP status, phase, grant kW, │, …
            columns.get(4) == Some(&"charging")
                && columns.get(5).and_then(|kw| kw.parse::<f64>().ok()) > Some(0.0)
        })
        .count();
    assert!(
        charging >= 3,
        "at least three guns charging on a grant at the end:\n{last_frame}"
    );
}
