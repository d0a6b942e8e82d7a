//! etcd's side: three `etcd` processes, spoken to over the HTTP/JSON gateway.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{ALL, Leader, MEMBERS, Members, Process, STEP, free_port, left, log_tail, spawn};

/// etcd's raft timing flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// `--heartbeat-interval`, ms.
    pub(crate) heartbeat_ms: u32,
    /// `--election-timeout`, ms.
    pub(crate) election_ms: u32,
}

/// etcd's defaults.
pub(crate) const DEFAULTS: Timing = Timing {
    heartbeat_ms: 100,
    election_ms: 1000,
};

/// Close to ours (heartbeat 100 ms, election 300–600 ms, after a 600 ms leader lease):
/// etcd draws its election timeout between one and two times the flag, so 600 gives
/// 600–1200 ms; etcd refuses less than five heartbeats.
pub(crate) const TUNED: Timing = Timing {
    heartbeat_ms: 100,
    election_ms: 600,
};

/// How often the survivors' status is asked while waiting for a leader.
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// Longest wait for one HTTP answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The size of a put's value: about the JSON of one of our latch requests.
pub(crate) const VALUE_BYTES: usize = 200;

/// A member.
#[derive(Debug)]
struct Member {
    /// Its `--name`.
    name: String,
    /// Its client port.
    client_port: u16,
    /// Its peer port.
    peer_port: u16,
    /// Its etcd member id, once a status has told it.
    id: Option<u64>,
    /// The process; `None` while killed.
    process: Option<Process>,
    /// A keep-alive connection to its client port.
    http: Http,
}

/// The three members.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The members by index.
    members: Vec<Member>,
    /// Where their data and logs are.
    dir: PathBuf,
    /// Their raft timing.
    timing: Timing,
    /// What `etcd` reported as its version.
    version: String,
    /// The body of every put.
    put: String,
}

impl Cluster {
    /// Starts three members in `dir` and waits until they agree on a leader.
    pub(crate) fn start(dir: &Path, timing: Timing) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let members = (0..MEMBERS)
            .map(|i| {
                let client_port = free_port()?;
                Ok(Member {
                    name: format!("m{i}"),
                    client_port,
                    peer_port: free_port()?,
                    id: None,
                    process: None,
                    http: Http::new(SocketAddr::from(([127, 0, 0, 1], client_port))),
                })
            })
            .collect::<Result<_>>()?;
        let put = serde_json::json!({
            "key": STANDARD.encode("vs_etcd"),
            "value": STANDARD.encode([b'x'; VALUE_BYTES]),
        })
        .to_string();
        let mut cluster = Self {
            members,
            dir: dir.to_owned(),
            timing,
            version: String::new(),
            put,
        };
        for member in ALL {
            cluster.restart(member)?;
        }
        cluster.agreed_leader(&ALL, None)?;
        Ok(cluster)
    }

    /// The version the members report.
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// `--initial-cluster`.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Asks `member` for its status; returns the leader it names (0: none) and its term.
    fn leader_of(&mut self, member: usize) -> Result<(u64, u64)> {
        let status = self.members[member]
            .http
            .post("/v3/maintenance/status", "{}")?;
        let status: serde_json::Value = serde_json::from_slice(&status)?;
        // uint64 fields are JSON strings, and left out when zero.
        let number = |value: &serde_json::Value| -> Result<u64> {
            match value {
                serde_json::Value::Null => Ok(0),
                serde_json::Value::String(id) => Ok(id.parse()?),
                other => other.as_u64().context("a number"),
            }
        };
        self.members[member].id = Some(number(&status["header"]["member_id"])?);
        if let Some(version) = status["version"].as_str() {
            version.clone_into(&mut self.version);
        }
        Ok((number(&status["leader"])?, number(&status["raftTerm"])?))
    }

    /// Fails, with the end of its log, if one of `members` has exited.
    fn check_running(&mut self, members: &[usize]) -> Result<()> {
        for member in members {
            let m = &mut self.members[*member];
            if let Some(process) = &mut m.process
                && let Some(status) = process.0.try_wait()?
            {
                bail!(
                    "etcd {} exited ({status}); its log ends:\n{}",
                    m.name,
                    log_tail(&self.dir.join(format!("{}.log", m.name)))
                );
            }
        }
        Ok(())
    }

    /// The index of the member with etcd id `id`.
    fn index_of(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == Some(id))
    }
}

impl Members for Cluster {
    fn agreed_leader(&mut self, members: &[usize], not: Option<usize>) -> Result<Leader> {
        let deadline = Instant::now() + STEP;
        loop {
            let named: Option<Vec<(u64, u64)>> =
                members.iter().map(|m| self.leader_of(*m).ok()).collect();
            let seen_at = Instant::now();
            if let Some(named) = named
                && let Some((leader, _)) = named.first().copied()
                && named.iter().all(|(l, _)| *l == leader)
                && let Some(member) = self.index_of(leader)
                && Some(member) != not
            {
                let term = named.iter().map(|(_, t)| *t).max().unwrap_or_default();
                return Ok(Leader {
                    member,
                    term,
                    seen_at,
                });
            }
            self.check_running(members)?;
            left(deadline, "etcd members to agree on a leader")?;
            std::thread::sleep(POLL);
        }
    }

    fn writes(&mut self, member: usize, n: usize) -> Result<Vec<Duration>> {
        let http = &mut self.members[member].http;
        (0..n)
            .map(|_| {
                let start = Instant::now();
                http.post("/v3/kv/put", &self.put)?;
                Ok(start.elapsed())
            })
            .collect()
    }

    fn kill(&mut self, member: usize) -> Result<Instant> {
        let mut process = self.members[member]
            .process
            .take()
            .context("killing a killed member")?;
        process.0.kill()?;
        let at = Instant::now();
        process.0.wait()?;
        Ok(at)
    }

    fn restart(&mut self, member: usize) -> Result<()> {
        let initial_cluster = self.initial_cluster();
        let timing = self.timing;
        let data_dir = self.dir.join(&self.members[member].name);
        let log = self.dir.join(format!("{}.log", self.members[member].name));
        let m = &mut self.members[member];
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let mut command = Command::new("etcd");
        command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                &format!("vs-etcd-{}", std::process::id()),
            ])
            .arg(format!("--heartbeat-interval={}", timing.heartbeat_ms))
            .arg(format!("--election-timeout={}", timing.election_ms))
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null());
        m.process = Some(
            spawn(&mut command, &log, false)
                .context("etcd did not start: is it installed (scripts/install-etcd)?")?,
        );
        Ok(())
    }
}

/// A keep-alive HTTP/1.1 connection to one member, reopened after any failure. Only
/// what etcd's gateway answers is understood: a status line, headers with a
/// Content-Length, a body.
#[derive(Debug)]
struct Http {
    /// The member's client address.
    addr: SocketAddr,
    /// The open connection, if any.
    connection: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            connection: None,
        }
    }

    /// POSTs the JSON `body` to `path`; returns the answer's body if it is 200 OK.
    fn post(&mut self, path: &str, body: &str) -> Result<Vec<u8>> {
        let answer = self.exchange(path, body);
        if answer.is_err() {
            self.connection = None;
        }
        answer
    }

    fn exchange(&mut self, path: &str, body: &str) -> Result<Vec<u8>> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, HTTP_TIMEOUT)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
                stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
                self.connection.insert(BufReader::new(stream))
            }
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        connection.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        connection.read_line(&mut line)?;
        let status = line.split(' ').nth(1).unwrap_or_default().to_owned();
        let mut length = None;
        loop {
            line.clear();
            ensure!(
                connection.read_line(&mut line)? > 0,
                "{path}: connection closed"
            );
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>()?);
            }
        }
        let mut answer = vec![0; length.with_context(|| format!("{path}: no length"))?];
        connection.read_exact(&mut answer)?;
        ensure!(
            status == "200",
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        Ok(answer)
    }
}
