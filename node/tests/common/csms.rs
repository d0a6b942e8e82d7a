//! csms.py, the test CSMS built on the Python `ocpp` package (see its module docs), as a
//! child process of the OCPP tests, and the demo hub pointed at it.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringhub_proto::config::{DEMO_TOML, HubConfig};
use ringhub_sim::world::Action;
use serde_json::Value;

use super::{CARD, Rig, STEP, act, describe_gun, gun};

/// A card the CSMS does not know.
pub const UNKNOWN_CARD: &str = "DEADBEEF";

/// The workspace root, where `scripts/` lives.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_owned()
}

/// csms.py, running; killed and reaped on drop.
pub struct Csms {
    /// The Python process.
    child: Child,
    /// Its command channel (see csms.py's docs).
    stdin: ChildStdin,
    /// Its stdout, one JSON line per event, from a reader thread.
    lines: mpsc::Receiver<Value>,
    /// Every line seen so far, for failure messages and later searches.
    pub seen: Vec<Value>,
    /// The port it listens on.
    port: u16,
}

impl Csms {
    /// Installs the CSMS's requirements, starts it on a free port accepting `accept`.
    pub fn start(accept: &[&str]) -> Self {
        Self::start_with(accept, &[])
    }

    /// [`Self::start`], with more of csms.py's options.
    pub fn start_with(accept: &[&str], options: &[&str]) -> Self {
        Self::start_on(0, accept, options)
    }

    /// [`Self::start_with`] on `port` (0: a free one), e.g. the port of a CSMS that was
    /// killed, to come back where the charge points look for it.
    pub fn start_on(port: u16, accept: &[&str], options: &[&str]) -> Self {
        let root = workspace_root();
        let output = Command::new(root.join("scripts/python-env"))
            .arg("node/tests/ocpp_csms/requirements.txt")
            .current_dir(&root)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/python-env");
        assert!(output.status.success(), "scripts/python-env failed");
        let venv = PathBuf::from(String::from_utf8(output.stdout).expect("UTF-8").trim());
        let mut child = Command::new(venv.join("bin/python"))
            .arg(root.join("node/tests/ocpp_csms/csms.py"))
            .arg(port.to_string())
            .args(["--sample-interval", "1"])
            .args(options)
            .arg("--accept")
            .args(accept)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn csms.py");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("csms.py printed {line:?}: {e}"));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        let mut csms = Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            port: 0,
        };
        let ready = csms.wait_for("listening", |v| v.get("listening").is_some());
        csms.port = ready["listening"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("a port number");
        csms
    }

    /// Its endpoint, without the identity.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ocpp", self.port)
    }

    /// The first line, seen before or arriving within [`STEP`], that `matches`.
    pub fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_from(0, what, matches)
    }

    /// [`Self::wait_for`], among the lines from the `from`th on (see [`Self::mark`]).
    pub fn wait_for_from(
        &mut self,
        from: usize,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(line) = self.seen.iter().skip(from).find(|v| matches(v)) {
            return line.clone();
        }
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "csms.py logged no {what} within {STEP:?} ({e}); it logged:\n{}",
                    self.seen
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Collects every line csms.py prints during `period`.
    pub fn drain(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return,
            }
        }
    }

    /// How many lines were seen so far: where [`Self::wait_for_from`] starts to look for
    /// what comes after now.
    pub fn mark(&mut self) -> usize {
        self.drain(Duration::ZERO);
        self.seen.len()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL: the connections drop without a close) and reaps it.
    pub fn kill(&mut self) {
        // Fails only if it has exited already; it is reaped either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `command` to RH-DEMO-A through csms.py's stdin and returns the status the
    /// charge point answered with.
    pub fn command(&mut self, command: &str, action: &str) -> Value {
        self.response(command, action)["status"].clone()
    }

    /// Sends `command` to RH-DEMO-A through csms.py's stdin and returns the whole
    /// answer (`result` holds its fields).
    pub fn response(&mut self, command: &str, action: &str) -> Value {
        let from = self.mark();
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .expect("write to csms.py");
        let response = self.wait_for_from(from, action, |v| {
            v["event"] == "response" && v["cp"] == "RH-DEMO-A" && v["action"] == action
        });
        assert_eq!(response["error"], Value::Null, "{response}");
        response
    }

    /// The first CALL `action` received from RH-DEMO-A from the `from`th line on that
    /// `matches` its payload; it must have passed the schema check.
    pub fn call_from(
        &mut self,
        from: usize,
        action: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let line = self.wait_for_from(from, action, |v| {
            v["event"] == "received"
                && v["cp"] == "RH-DEMO-A"
                && v["action"] == action
                && matches(&v["payload"])
        });
        assert_eq!(line["valid"], true, "schema check of {line}");
        line
    }

    /// Every CALL `action` from RH-DEMO-A seen so far.
    pub fn calls(&self, action: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "received" && v["cp"] == "RH-DEMO-A" && v["action"] == action)
            .cloned()
            .collect()
    }

    /// The first CALL `action` received from RH-DEMO-A that `matches` its payload;
    /// it must have passed the schema check.
    pub fn call(&mut self, action: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.call_from(0, action, matches)
    }
}

impl Drop for Csms {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The demo hub with cab-a on OCPP and disp-a pointed at `csms_url`: the TOML text and
/// the parsed config.
pub fn demo_with_csms(csms_url: &str) -> (String, HubConfig) {
    // cab-a is the first cabinet, so its `auth` line is the first one.
    let free = "\nauth = \"free\"\n";
    assert!(DEMO_TOML.contains(free), "the demo config changed shape");
    let text = DEMO_TOML.replacen(free, "\nauth = \"ocpp\"\n", 1);
    let identity = "ocpp_identity = \"RH-DEMO-A\"\n";
    assert!(text.contains(identity), "the demo config changed shape");
    let text = text.replacen(identity, &format!("{identity}csms_url = {csms_url:?}\n"), 1);
    let config = HubConfig::parse(&text, "demo-ocpp.toml").expect("the edited demo parses");
    (text, config)
}

/// Presents the accepted card at gun 0 and waits until the CSMS has authorised it and
/// gun 0's PLC holds param 20 Accepted.
pub async fn present_accepted_card(rig: &Rig, csms: &mut Csms) {
    act(
        &rig.world,
        Action::Rfid {
            gun: 0,
            id_tag: CARD.into(),
        },
    )
    .await;
    csms.call("Authorize", |p| p["idTag"] == CARD);
    rig.wait_sim("param 20 Accepted at gun 0's PLC", |s| {
        if gun(s, 0)["auth"] == "Accepted" {
            Ok(())
        } else {
            Err(describe_gun(s, 0))
        }
    })
    .await;
}

/// The transactionId the CSMS gave RH-DEMO-A's StartTransaction.
pub fn confirmed_transaction_id(csms: &mut Csms) -> Value {
    let transaction = csms.wait_for("the StartTransaction's transactionId", |v| {
        v["event"] == "transaction" && v["cp"] == "RH-DEMO-A"
    });
    transaction["transactionId"].clone()
}

/// Now, in Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}
