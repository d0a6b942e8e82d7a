//! How the harness looks at the hub: the simulator's control API (ground truth, the
//! referee, EVs and hardware faults), each node's Prometheus metrics, each node's admin
//! queryable over Zenoh (its own record, not the freshest one), and the operator's CLI.
//!
//! Every wait polls a condition until a deadline ([`eventually`]) and fails with what it
//! last saw; nothing sleeps to "wait for" something.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message as _;
use ringhub_proto::v1::{self, admin_reply, admin_request};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::error::{ChaosError, Result};

/// How often a condition is probed while waiting for it.
const POLL: Duration = Duration::from_millis(100);
/// Longest one HTTP exchange or CLI run may take.
const REQUEST: Duration = Duration::from_secs(10);

/// Probes `probe` until it returns `Ok`, failing after `timeout` with its last `Err`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => {
                return Err(ChaosError::Timeout {
                    what: what.to_owned(),
                    after: timeout,
                    last,
                });
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// One HTTP/1.1 exchange (`Connection: close`); the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String)> {
    let request = format!("{method} {path}");
    let fail = |detail: String| ChaosError::Control {
        request: request.clone(),
        detail,
    };
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok::<_, ChaosError>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(REQUEST, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {REQUEST:?}")))??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail(format!("no HTTP head in {response:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("no status in {head:?}")))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The body of a chunked transfer.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// The simulator's control API.
#[derive(Debug, Clone, Copy)]
pub struct Control(pub SocketAddr);

impl Control {
    /// A request whose answer must be 2xx; the answer's JSON.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, text) = http(self.0, method, path, body.as_ref()).await?;
        if !(200..300).contains(&status) {
            return Err(ChaosError::Control {
                request: format!("{method} {path} {}", body.unwrap_or_default()),
                detail: format!("{status}: {text}"),
            });
        }
        serde_json::from_str(&text).map_err(|e| ChaosError::Control {
            request: format!("{method} {path}"),
            detail: format!("{e}: {text}"),
        })
    }

    /// The ground truth.
    pub async fn state(&self) -> Result<Value> {
        self.call("GET", "/state", None).await
    }

    /// Every violation the referee recorded.
    pub async fn violations(&self) -> Result<Vec<Value>> {
        let all = self.call("GET", "/violations", None).await?;
        Ok(all.as_array().cloned().unwrap_or_default())
    }

    /// Plugs an EV in.
    pub async fn plug(&self, ev: Value) -> Result<()> {
        self.call("POST", "/ev/plug", Some(ev)).await.map(drop)
    }

    /// Unplugs gun `gun`'s EV.
    pub async fn unplug(&self, gun: u16) -> Result<()> {
        self.call("POST", "/ev/unplug", Some(json!({"gun": gun})))
            .await
            .map(drop)
    }

    /// Presents a card at gun `gun`.
    pub async fn rfid(&self, gun: u16, tag: &str) -> Result<()> {
        self.call("POST", "/rfid", Some(json!({"gun": gun, "id_tag": tag})))
            .await
            .map(drop)
    }

    /// Injects a hardware fault; its id.
    pub async fn inject(&self, kind: &str, target: u16, contactor: Option<&str>) -> Result<u64> {
        let mut body = json!({"kind": kind, "target": target});
        if let Some(contactor) = contactor {
            body["contactor"] = json!(contactor);
        }
        let answer = self.call("POST", "/faults", Some(body)).await?;
        answer["id"].as_u64().ok_or_else(|| ChaosError::Control {
            request: "POST /faults".into(),
            detail: format!("no id in {answer}"),
        })
    }

    /// Repairs an injected fault.
    pub async fn repair(&self, id: u64) -> Result<()> {
        self.call("DELETE", &format!("/faults/{id}"), None)
            .await
            .map(drop)
    }
}

/// Gun `id` of a ground truth.
pub fn gun(state: &Value, id: u64) -> Value {
    state["guns"]
        .as_array()
        .and_then(|guns| guns.iter().find(|g| g["id"] == id))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Contactor `name` of segment `id` of a ground truth: (commanded, closed).
pub fn contactor(state: &Value, id: u64, name: &str) -> (bool, bool) {
    state["segments"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["segment"] == id || s["id"] == id))
        .and_then(|s| s["contactors"].as_array())
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .map_or((false, false), |c| {
            (c["commanded"] == true, c["closed"] == true)
        })
}

/// The power gun `id` delivers, kW, from the ground truth (current × its island's
/// voltage).
pub fn delivered_kw(state: &Value, id: u64) -> f64 {
    let volts = state["islands"]
        .as_array()
        .and_then(|islands| {
            islands.iter().find(|i| {
                i["energised_guns"]
                    .as_array()
                    .is_some_and(|g| g.contains(&id.into()))
            })
        })
        .and_then(|i| i["voltage_v"].as_f64())
        .unwrap_or(0.0);
    gun(state, id)["current_a"].as_f64().unwrap_or(0.0) * volts / 1000.0
}

/// A parsed `/metrics` scrape: (name, labels) → value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    /// The first sample of `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    /// A gauge without labels, 0 when absent.
    pub fn value(&self, name: &str) -> f64 {
        self.get(name, &[]).unwrap_or(0.0)
    }
}

/// `GET /metrics` of a node.
pub async fn scrape(addr: SocketAddr) -> Result<Metrics> {
    let (status, body) = http(addr, "GET", "/metrics", None).await?;
    if status != 200 {
        return Err(ChaosError::Control {
            request: format!("GET {addr}/metrics"),
            detail: format!("status {status}"),
        });
    }
    Ok(Metrics(body.lines().filter_map(parse_sample).collect()))
}

/// One sample line of the text format (the node's label values have no escapes).
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_owned(), v.trim_matches('"').to_owned()))
        })
        .collect();
    Some((name.to_owned(), labels, value.parse().ok()?))
}

/// Runs the operator's CLI `ringhub` with `args` against the hub of `config`, through
/// `endpoints`; its stdout.
pub async fn cli(
    program: &Path,
    config: &Path,
    endpoints: &[String],
    args: &[&str],
) -> Result<String> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .kill_on_drop(true);
    for endpoint in endpoints {
        command.args(["--connect", endpoint]);
    }
    let line = format!("ringhub {}", args.join(" "));
    let output = tokio::time::timeout(REQUEST, command.output())
        .await
        .map_err(|_| ChaosError::Command {
            command: line.clone(),
            detail: format!("took longer than {REQUEST:?}"),
        })?
        .map_err(|e| ChaosError::Command {
            command: line.clone(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ChaosError::Command {
            command: line,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// What one node says about itself: its own record, not the freshest of the hub.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Its answer to GetStatus.
    pub status: v1::GetStatusReply,
    /// Every latch of its record, active and cleared.
    pub latches: Vec<v1::Fault>,
}

impl NodeView {
    /// The epoch of the plan in its record.
    pub fn plan_epoch(&self) -> u64 {
        self.status.plan.as_ref().map_or(0, |p| p.epoch)
    }

    /// Its latches as (id, code, scope id, status), sorted: what must agree.
    pub fn latch_keys(&self) -> Vec<(u64, String, String, i32)> {
        let mut keys: Vec<_> = self
            .latches
            .iter()
            .map(|f| (f.fault_id, f.code.clone(), f.scope_id.clone(), f.status))
            .collect();
        keys.sort();
        keys
    }
}

/// A Zenoh session that asks each node's admin queryable (`ringhub/<hub>/admin/<node>`)
/// by name. Gossip is off, so the session only talks to the endpoints it is given.
pub struct Admin {
    /// The session.
    session: zenoh::Session,
    /// The hub id, for keys.
    hub: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Connects to `endpoints`.
    pub async fn connect(hub: &str, endpoints: &[String]) -> Result<Self> {
        let zenoh_error = |detail: String| ChaosError::Process {
            process: "zenoh session".into(),
            detail,
        };
        let mut config = ringhub_node::publish::zenoh_config(&[], endpoints)
            .map_err(|e| zenoh_error(e.to_string()))?;
        for (key, value) in [
            ("connect/timeout_ms", "1000"),
            ("transport/unicast/open_timeout", "1000"),
        ] {
            config
                .insert_json5(key, value)
                .map_err(|e| zenoh_error(format!("{key}: {e}")))?;
        }
        let session = tokio::time::timeout(REQUEST, zenoh::open(config))
            .await
            .map_err(|_| zenoh_error("open timed out".into()))?
            .map_err(|e| zenoh_error(e.to_string()))?;
        Ok(Self {
            session,
            hub: hub.to_owned(),
        })
    }

    /// Asks `node` one command; its answer.
    async fn ask(
        &self,
        node: &str,
        command: admin_request::Command,
    ) -> std::result::Result<admin_reply::Outcome, String> {
        let request = v1::AdminRequest {
            request_id: format!("chaos-{:016x}", ringhub_node::publish::new_boot_id()),
            operator: "chaos-tests".into(),
            command: Some(command),
        };
        let key = ringhub_node::admin::admin_key(&self.hub, node);
        let replies = self
            .session
            .get(&key)
            .payload(request.encode_to_vec())
            .timeout(Duration::from_secs(2))
            .await
            .map_err(|e| format!("query {key}: {e}"))?;
        while let Ok(reply) = replies.recv_async().await {
            let Ok(sample) = reply.result() else { continue };
            let bytes = sample.payload().to_bytes();
            if let Ok(answer) = v1::AdminReply::decode(bytes.as_ref())
                && answer.request_id == request.request_id
                && answer.node_id == node
                && let Some(outcome) = answer.outcome
            {
                return Ok(outcome);
            }
        }
        Err(format!("{node} did not answer {key}"))
    }

    /// `node`'s own status and latches.
    pub async fn view(&self, node: &str) -> std::result::Result<NodeView, String> {
        let status = match self
            .ask(
                node,
                admin_request::Command::GetStatus(v1::GetStatusRequest {}),
            )
            .await?
        {
            admin_reply::Outcome::GetStatus(status) => status,
            other => return Err(format!("{node} answered GetStatus with {other:?}")),
        };
        let latches = match self
            .ask(
                node,
                admin_request::Command::ListFaults(v1::ListFaultsRequest {
                    include_cleared: true,
                    limit: 10_000,
                    ..Default::default()
                }),
            )
            .await?
        {
            admin_reply::Outcome::ListFaults(list) => list.faults,
            other => return Err(format!("{node} answered ListFaults with {other:?}")),
        };
        Ok(NodeView { status, latches })
    }

    /// Closes the session.
    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}
