//! Real network cuts between the nodes: one Linux network namespace per node, each with a
//! veth pair whose outer end sits on a bridge in the root namespace, where the harness,
//! the simulator's relays and the CSMS's relay listen on the bridge's address.
//!
//! ```text
//!   root netns:  bridge rhc<pid>b 10.213.S.1 ── relays (socketcand, OCPP), probes, CLI
//!                  │            │            │
//!               veth h0      veth h1      veth h2
//!   netns:      n0 .10       n1 .11       n2 .12      (one ringhub-node each)
//! ```
//!
//! Faults are traffic-control rules on the egress of a node's inner veth end, matched on
//! the destination address, so one rule is a one-way cut and two rules a full one: an
//! HTB root whose class 1:9 ends in a `pfifo limit 0` (every packet dropped) and whose
//! class 1:8 is a 64 kbit/s link with a short queue (queueing delay and tail drop). This
//! kernel has no `netem`, no `gact` and no `matchall`, so this is what `tc` can do here:
//! `u32` filters, `htb` and `pfifo`. Traffic to the bridge address is never matched, so
//! the harness sees every node even while they cannot see each other.
//!
//! Names carry the harness's pid (`rhc<pid>…`): a run cleans up what a killed run left
//! behind (names whose pid is gone) before it starts, and its own in `Drop`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{ChaosError, Result};

/// `tc`, where Debian puts it (root's PATH may lack /usr/sbin).
const TC: &str = "/usr/sbin/tc";
/// The first two octets of every address the suite gives out.
const NET: [u8; 2] = [10, 213];
/// The HTB class whose queue drops every packet: a cut.
const CUT_CLASS: &str = "1:9";
/// The HTB class of the slow link: 64 kbit/s, a 30-packet queue.
const SLOW_CLASS: &str = "1:8";

/// What a rule does to the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// Every packet is dropped.
    Cut,
    /// 64 kbit/s with a short queue: delay under load, drops when it fills.
    Slow,
}

/// One node's namespace.
#[derive(Debug, Clone)]
pub struct NodeNet {
    /// The namespace's name, for `ip netns exec`.
    pub netns: String,
    /// The veth end inside it, where the rules go.
    inner: String,
    /// The node's address.
    pub ip: Ipv4Addr,
}

/// The namespaces of one hub, removed on drop.
#[derive(Debug)]
pub struct Network {
    /// The bridge in the root namespace.
    bridge: String,
    /// The outer veth ends, deleted on drop (deleting one end deletes the pair).
    outer: Vec<String>,
    /// The bridge's address: where the nodes reach the harness.
    pub host_ip: Ipv4Addr,
    /// The nodes' namespaces, in cabinet order.
    pub nodes: Vec<NodeNet>,
    /// The rules in force, (from, to) → what, to heal them.
    rules: BTreeMap<(usize, usize), LinkFault>,
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| ChaosError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ChaosError::Command {
            command,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The pid in a name `rhc<pid>…`, if it is one of ours.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("rhc")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether process `pid` is alive.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills whatever still runs in namespace `name` (a node of a killed run), then
/// deletes it.
fn delete_netns(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
    }
    let _ = run("ip", &["netns", "del", name]);
}

/// Removes the namespaces and links of runs whose process is gone, and kills the nodes
/// left running in them.
pub fn clean_stale() {
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if owner_pid(name).is_some_and(|pid| !alive(pid)) {
                delete_netns(name);
            }
        }
    }
    if let Ok(list) = run("ip", &["-o", "link", "show"]) {
        for line in list.lines() {
            // "7: rhc123h0@if6: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if owner_pid(name).is_some_and(|pid| !alive(pid)) {
                let _ = run("ip", &["link", "del", name]);
            }
        }
    }
}

/// Whether this machine lets us make namespaces (root, `ip netns`, `tc` with `htb`).
pub fn available() -> bool {
    let probe = format!("rhc{}probe", std::process::id());
    let made = run("ip", &["netns", "add", &probe]).is_ok();
    let _ = run("ip", &["netns", "del", &probe]);
    made && std::path::Path::new(TC).exists()
}

impl Network {
    /// Namespaces for `count` nodes on a fresh bridge.
    pub fn create(count: usize) -> Result<Self> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let k = RUN.fetch_add(1, Ordering::Relaxed) % 100;
        let prefix = format!("rhc{}x{k}", std::process::id());
        let used = run("ip", &["-o", "-4", "addr", "show"])?;
        let subnet = (1..=254u8)
            .find(|s| !used.contains(&format!("{}.{}.{s}.", NET[0], NET[1])))
            .ok_or_else(|| ChaosError::Command {
                command: "ip -4 addr show".into(),
                detail: "no free 10.213.x.0/24 subnet".into(),
            })?;
        let host_ip = Ipv4Addr::new(NET[0], NET[1], subnet, 1);
        let mut network = Self {
            bridge: format!("{prefix}b"),
            outer: Vec::new(),
            host_ip,
            nodes: Vec::new(),
            rules: BTreeMap::new(),
        };
        let bridge = network.bridge.clone();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{host_ip}/24"), "dev", &bridge],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for i in 0..count {
            let netns = format!("{prefix}n{i}");
            let outer = format!("{prefix}h{i}");
            let inner = format!("{prefix}i{i}");
            let ip = Ipv4Addr::new(NET[0], NET[1], subnet, 10 + i as u8);
            run("ip", &["netns", "add", &netns])?;
            network.nodes.push(NodeNet {
                netns: netns.clone(),
                inner: inner.clone(),
                ip,
            });
            run(
                "ip",
                &[
                    "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                ],
            )?;
            network.outer.push(outer.clone());
            run("ip", &["link", "set", &inner, "netns", &netns])?;
            run("ip", &["link", "set", &outer, "master", &bridge])?;
            run("ip", &["link", "set", &outer, "up"])?;
            let ns = |args: &[&str]| -> Result<String> {
                let mut all = vec!["-n", netns.as_str()];
                all.extend_from_slice(args);
                run("ip", &all)
            };
            ns(&["addr", "add", &format!("{ip}/24"), "dev", &inner])?;
            ns(&["link", "set", &inner, "up"])?;
            ns(&["link", "set", "lo", "up"])?;
            network.install_classes(i)?;
        }
        Ok(network)
    }

    /// The HTB root and the cut and slow classes on node `i`'s inner veth end.
    fn install_classes(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let tc = |args: &[&str]| -> Result<String> {
            let mut all = vec!["-n", node.netns.as_str()];
            all.extend_from_slice(args);
            run(TC, &all)
        };
        let dev = node.inner.as_str();
        tc(&[
            "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1",
        ])?;
        for (class, rate) in [
            ("1:1", "10gbit"),
            (CUT_CLASS, "10gbit"),
            (SLOW_CLASS, "64kbit"),
        ] {
            tc(&[
                "class", "add", "dev", dev, "parent", "1:", "classid", class, "htb", "rate", rate,
                "ceil", rate,
            ])?;
        }
        tc(&[
            "qdisc", "add", "dev", dev, "parent", CUT_CLASS, "pfifo", "limit", "0",
        ])?;
        tc(&[
            "qdisc", "add", "dev", dev, "parent", SLOW_CLASS, "pfifo", "limit", "30",
        ])?;
        Ok(())
    }

    /// The filter priority of the rule toward node `to`: one rule per destination.
    fn priority(to: usize) -> String {
        (10 + to).to_string()
    }

    /// Applies `fault` to the packets node `from` sends to node `to` (one way).
    pub fn impair(&mut self, from: usize, to: usize, fault: LinkFault) -> Result<()> {
        if self.rules.contains_key(&(from, to)) {
            self.remove(from, to)?;
        }
        let node = &self.nodes[from];
        let dst = format!("{}/32", self.nodes[to].ip);
        let class = match fault {
            LinkFault::Cut => CUT_CLASS,
            LinkFault::Slow => SLOW_CLASS,
        };
        let prio = Self::priority(to);
        run(
            TC,
            &[
                "-n",
                &node.netns,
                "filter",
                "add",
                "dev",
                &node.inner,
                "parent",
                "1:",
                "protocol",
                "ip",
                "prio",
                &prio,
                "u32",
                "match",
                "ip",
                "dst",
                &dst,
                "flowid",
                class,
            ],
        )?;
        self.rules.insert((from, to), fault);
        Ok(())
    }

    /// Removes the rule on what `from` sends to `to`.
    fn remove(&mut self, from: usize, to: usize) -> Result<()> {
        let node = &self.nodes[from];
        let prio = Self::priority(to);
        run(
            TC,
            &[
                "-n",
                &node.netns,
                "filter",
                "del",
                "dev",
                &node.inner,
                "parent",
                "1:",
                "protocol",
                "ip",
                "prio",
                &prio,
            ],
        )?;
        self.rules.remove(&(from, to));
        Ok(())
    }

    /// Cuts both ways between `a` and `b`.
    pub fn cut_both(&mut self, a: usize, b: usize) -> Result<()> {
        self.impair(a, b, LinkFault::Cut)?;
        self.impair(b, a, LinkFault::Cut)
    }

    /// Cuts `victim` off from every other node, both ways.
    pub fn isolate(&mut self, victim: usize) -> Result<()> {
        for other in 0..self.nodes.len() {
            if other != victim {
                self.cut_both(victim, other)?;
            }
        }
        Ok(())
    }

    /// Removes every rule.
    pub fn heal(&mut self) -> Result<()> {
        let rules: Vec<(usize, usize)> = self.rules.keys().copied().collect();
        for (from, to) in rules {
            self.remove(from, to)?;
        }
        Ok(())
    }

    /// The rules in force, for the report.
    pub fn rules(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|((from, to), fault)| format!("{from}->{to} {fault:?}"))
            .collect()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for node in &self.nodes {
            delete_netns(&node.netns);
        }
        for outer in &self.outer {
            let _ = run("ip", &["link", "del", outer]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_are_read_from_our_names_only() {
        assert_eq!(owner_pid("rhc1234x0n2"), Some(1234));
        assert_eq!(owner_pid("rhc77b"), Some(77));
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("rhcb"), None);
    }
}
