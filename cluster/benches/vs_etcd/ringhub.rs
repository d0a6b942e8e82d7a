//! Our side, as the driver sees it: three copies of this binary, spoken to over their
//! stdin and stdout.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::{
    ALL, DIR_ENV, ENDPOINTS_ENV, Latches, Leader, MEMBER_ENV, MEMBERS, Members, Process, STEP,
    free_port, left, log_tail, spawn,
};

/// What a member said, and when the driver read it.
#[derive(Debug)]
struct Event {
    /// Which member.
    member: usize,
    /// Which start of it, to drop what a killed one said last.
    incarnation: u64,
    /// When the line was read.
    at: Instant,
    /// The line; `None` when its stdout closed.
    line: Option<String>,
}

/// What a member said of the leader.
#[derive(Debug, Clone, Copy)]
struct Named {
    /// The leader's member index; `None` while it knows of none.
    leader: Option<usize>,
    /// The member's Raft term.
    term: u64,
    /// When the driver read it.
    at: Instant,
}

/// A running member.
#[derive(Debug)]
struct Member {
    /// Where commands go.
    stdin: ChildStdin,
    /// The process.
    process: Process,
    /// Which start of it this is.
    incarnation: u64,
}

/// The three members.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The members by index; `None` while killed.
    members: Vec<Option<Member>>,
    /// What each member last said of the leader, since its start.
    named: Vec<Option<Named>>,
    /// Every member's lines, from one reader thread per start.
    events: mpsc::Receiver<Event>,
    /// Handed to each reader thread.
    sender: mpsc::Sender<Event>,
    /// The members' Zenoh endpoints, in cabinet order.
    endpoints: Vec<String>,
    /// Where the members keep their data and logs.
    dir: PathBuf,
    /// Which latch the writes raise.
    latches: Latches,
    /// Starts so far.
    starts: u64,
}

impl Cluster {
    /// Starts three members in `dir` and waits until they agree on a leader.
    pub(crate) fn start(dir: &Path, latches: Latches) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let endpoints = (0..MEMBERS)
            .map(|_| Ok(format!("tcp/127.0.0.1:{}", free_port()?)))
            .collect::<Result<_>>()?;
        let (sender, events) = mpsc::channel();
        let mut cluster = Self {
            members: (0..MEMBERS).map(|_| None).collect(),
            named: vec![None; MEMBERS],
            events,
            sender,
            endpoints,
            dir: dir.to_owned(),
            latches,
            starts: 0,
        };
        for member in ALL {
            cluster.restart(member)?;
        }
        cluster.agreed_leader(&ALL, None)?;
        Ok(cluster)
    }

    /// The next line of a running member, updating what it named; fails at `deadline`
    /// or when the member exits.
    fn next_line(&mut self, deadline: Instant, waiting_for: &str) -> Result<(usize, String)> {
        loop {
            let event = self
                .events
                .recv_timeout(left(deadline, waiting_for)?)
                .map_err(|_| anyhow!("timed out waiting for {waiting_for}"))?;
            let current = self.members[event.member].as_ref();
            if current.map(|m| m.incarnation) != Some(event.incarnation) {
                continue;
            }
            let Some(line) = event.line else {
                bail!(
                    "ringhub member {} exited; its log ends:\n{}",
                    event.member,
                    log_tail(&self.log(event.member))
                );
            };
            if let Some((leader, term)) = parse_leader(&line) {
                self.named[event.member] = Some(Named {
                    leader,
                    term,
                    at: event.at,
                });
            }
            return Ok((event.member, line));
        }
    }

    /// The leader all of `members` name now, if they agree on one other than `not`.
    fn agreement(&self, members: &[usize], not: Option<usize>) -> Option<Leader> {
        let named: Vec<Named> = members
            .iter()
            .map(|m| self.named[*m])
            .collect::<Option<_>>()?;
        let leader = named.first()?.leader?;
        let agreed = named.iter().all(|n| n.leader == Some(leader))
            && Some(leader) != not
            && leader < MEMBERS;
        agreed.then(|| Leader {
            member: leader,
            term: named.iter().map(|n| n.term).max().unwrap_or_default(),
            seen_at: named.iter().map(|n| n.at).max().unwrap_or(named[0].at),
        })
    }

    fn log(&self, member: usize) -> PathBuf {
        self.dir.join(format!("member-{member}.log"))
    }
}

/// `leader <id|none> term <t>` → the leader's member index (Raft id − 1) and the term.
fn parse_leader(line: &str) -> Option<(Option<usize>, u64)> {
    let mut words = line.strip_prefix("leader ")?.split(' ');
    let leader = match words.next()? {
        "none" => None,
        id => id.parse::<usize>().ok()?.checked_sub(1),
    };
    let term = words.nth(1)?.parse().ok()?;
    Some((leader, term))
}

impl Members for Cluster {
    fn agreed_leader(&mut self, members: &[usize], not: Option<usize>) -> Result<Leader> {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(agreed) = self.agreement(members, not) {
                return Ok(agreed);
            }
            self.next_line(deadline, "ringhub members to agree on a leader")?;
        }
    }

    fn writes(&mut self, member: usize, n: usize) -> Result<Vec<Duration>> {
        let mode = match self.latches {
            Latches::Same => "same",
            Latches::New => "new",
        };
        let running = self.members[member]
            .as_mut()
            .context("writing through a killed member")?;
        writeln!(running.stdin, "write {n} {mode}")?;
        let per_write = Duration::from_millis(20);
        let deadline =
            Instant::now() + STEP + per_write.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        loop {
            let (from, line) = self.next_line(deadline, "ringhub writes")?;
            if from != member {
                continue;
            }
            if let Some(times) = line.strip_prefix("wrote") {
                return times
                    .split_whitespace()
                    .map(|ns| Ok(Duration::from_nanos(ns.parse()?)))
                    .collect();
            }
            if let Some(why) = line.strip_prefix("failed ") {
                bail!("ringhub member {member}: write failed: {why}");
            }
        }
    }

    fn kill(&mut self, member: usize) -> Result<Instant> {
        let mut running = self.members[member]
            .take()
            .context("killing a killed member")?;
        running.process.0.kill()?;
        let at = Instant::now();
        running.process.0.wait()?;
        self.named[member] = None;
        Ok(at)
    }

    fn restart(&mut self, member: usize) -> Result<()> {
        self.starts += 1;
        let incarnation = self.starts;
        let mut process = spawn(
            Command::new(std::env::current_exe()?)
                .env(MEMBER_ENV, member.to_string())
                .env(ENDPOINTS_ENV, self.endpoints.join(","))
                .env(DIR_ENV, self.dir.join(format!("member-{member}")))
                .stdin(Stdio::piped()),
            &self.log(member),
            true,
        )?;
        let stdin = process.0.stdin.take().context("member stdin")?;
        let stdout = process.0.stdout.take().context("member stdout")?;
        let sender = self.sender.clone();
        std::thread::spawn(move || {
            let event = |line| Event {
                member,
                incarnation,
                at: Instant::now(),
                line,
            };
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(event(Some(line))).is_err() {
                    return;
                }
            }
            let _ = sender.send(event(None));
        });
        self.named[member] = None;
        self.members[member] = Some(Member {
            stdin,
            process,
            incarnation,
        });
        Ok(())
    }
}
