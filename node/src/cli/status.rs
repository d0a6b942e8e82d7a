//! `ringhub status` and `ringhub faults`: the hub as its nodes see it, over Zenoh, from
//! any machine that reaches the bus (see `crate::admin` for the node side).
//!
//! The CLI joins the bus as a Zenoh peer that only connects (to the config's endpoints,
//! or `--connect`), asks every node at once, and waits for the answers up to
//! `--timeout-ms`. A node that does not answer is shown as such; the record shown is the
//! one of the node that has applied the most of the log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prost::Message;
use ringhub_cluster::service::alive_now;
use ringhub_proto::config::HubConfig;
use ringhub_proto::v1::{self, admin_reply, admin_request};
use serde::Serialize;

/// How to reach the hub.
#[derive(Debug, Clone, clap::Args)]
pub struct Reach {
    /// The hub config (TOML); the embedded demo hub when not given.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Zenoh endpoint to connect to (repeatable); every cabinet's `zenoh_listen` when
    /// not given.
    #[arg(long, global = true)]
    pub connect: Vec<String>,
    /// How long to wait for the nodes' answers.
    #[arg(long, global = true, default_value_t = 2_000)]
    pub timeout_ms: u64,
}

/// `ringhub status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub reach: Reach,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `ringhub faults`.
#[derive(Debug, Clone, clap::Args)]
pub struct FaultsArgs {
    #[command(flatten)]
    pub reach: Reach,
    /// Also list cleared latches (history).
    #[arg(long)]
    pub all: bool,
    /// Only faults of this scope: hub, cabinet, node, segment, gun, module,
    /// gun_contactor, module_contactor or tie_contactor.
    #[arg(long, global = true, value_parser = parse_scope)]
    pub scope: Option<v1::FaultScope>,
    /// With --scope: only this one (`2`, `cab-a`).
    #[arg(long, global = true)]
    pub scope_id: Option<String>,
    /// Only faults at least this severe: warning, error or critical.
    #[arg(long, global = true, value_parser = parse_severity)]
    pub severity: Option<v1::FaultSeverity>,
    /// Only faults whose code starts with this (`CONTACTOR_`).
    #[arg(long, global = true)]
    pub code: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<FaultsAction>,
}

/// What to do with faults besides listing them.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum FaultsAction {
    /// Every latch, active and cleared, newest first, with who cleared it and why.
    History,
    /// Print the fault catalog: every code, its severity, scope, effect, OCPP error code,
    /// what to do and how it clears (Markdown, or JSON with --json). Needs no hub.
    Catalog,
    /// Clear one latch through the Raft log, with your name and a reason.
    Clear {
        /// The latch's id.
        id: u64,
        /// Why it is safe to clear now.
        #[arg(long)]
        reason: String,
        /// Who clears it; $USER when not given.
        #[arg(long)]
        operator: Option<String>,
    },
}

/// One node's answer, or why there is none.
#[derive(Debug, Clone)]
struct Answer {
    node: String,
    reply: v1::AdminReply,
}

/// The hub config `reach` names.
fn load(reach: &Reach) -> anyhow::Result<HubConfig> {
    Ok(match &reach.config {
        Some(path) => HubConfig::load(path)?,
        None => HubConfig::demo(),
    })
}

/// Asks `node` (every node of the hub when `None`) `command` and returns the answers.
async fn ask(
    reach: &Reach,
    operator: &str,
    command: admin_request::Command,
    node: Option<&str>,
) -> anyhow::Result<(HubConfig, Vec<Answer>)> {
    let config = load(reach)?;
    let connect = if reach.connect.is_empty() {
        config
            .cabinets
            .iter()
            .flat_map(|c| c.zenoh_listen.iter().cloned())
            .collect()
    } else {
        reach.connect.clone()
    };
    let mut zenoh_config = crate::publish::zenoh_config(&[], &connect)?;
    // A hung node accepts TCP but never finishes Zenoh's handshake: do not wait for it.
    let wait = reach.timeout_ms.min(1_000).to_string();
    for key in ["connect/timeout_ms", "transport/unicast/open_timeout"] {
        zenoh_config
            .insert_json5(key, &wait)
            .map_err(|e| anyhow::anyhow!("zenoh config {key}: {e}"))?;
    }
    let session = zenoh::open(zenoh_config)
        .await
        .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
    let request = v1::AdminRequest {
        request_id: format!("{:016x}", crate::publish::new_boot_id()),
        operator: operator.to_owned(),
        command: Some(command),
    };
    let timeout = Duration::from_millis(reach.timeout_ms);
    let deadline = Instant::now() + timeout;
    // The connections come up in the background: give them a moment before asking.
    let settled = Instant::now() + (timeout / 2).min(Duration::from_secs(1));
    while session.info().peers_zid().await.count() < connect.len() && Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hub = config.hub.id.to_string();
    let mut answers = Vec::new();
    // Ask everyone (or `node`), then each node whose liveliness token is seen and that
    // has not answered: a node's declarations may reach this fresh session late.
    let mut targets = vec![node.unwrap_or("*").to_owned()];
    while Instant::now() < deadline {
        for target in &targets {
            let key = crate::admin::admin_key(&hub, target);
            let got = query(&session, &key, &request, deadline).await?;
            answers.extend(got);
        }
        if node.is_some() && !answers.is_empty() {
            break;
        }
        let alive = alive_nodes(&session, &hub, deadline).await;
        targets = alive
            .into_iter()
            .filter(|n| node.is_none_or(|only| only == n))
            .filter(|n| !answers.iter().any(|a: &Answer| a.node == *n))
            .collect();
        if targets.is_empty() && !answers.is_empty() {
            break;
        }
        if targets.is_empty() {
            // Nobody reachable so far: look again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            targets = vec![node.unwrap_or("*").to_owned()];
        }
    }
    let _ = session.close().await;
    answers.sort_by(|a, b| a.node.cmp(&b.node));
    Ok((config, answers))
}

/// The answers to `request` on `key`, until every matching node answered or `deadline`.
async fn query(
    session: &zenoh::Session,
    key: &str,
    request: &v1::AdminRequest,
    deadline: Instant,
) -> anyhow::Result<Vec<Answer>> {
    let replies = session
        .get(key)
        .target(zenoh::query::QueryTarget::All)
        .payload(request.encode_to_vec())
        .timeout(deadline.saturating_duration_since(Instant::now()))
        .await
        .map_err(|e| anyhow::anyhow!("query {key}: {e}"))?;
    let mut answers = Vec::new();
    while let Ok(reply) = replies.recv_async().await {
        let Ok(sample) = reply.result() else { continue };
        let bytes = sample.payload().to_bytes();
        match v1::AdminReply::decode(bytes.as_ref()) {
            Ok(reply) if reply.request_id == request.request_id => answers.push(Answer {
                node: reply.node_id.clone(),
                reply,
            }),
            Ok(_) => {}
            Err(e) => eprintln!("{}: undecodable answer: {e}", sample.key_expr()),
        }
    }
    Ok(answers)
}

/// The nodes whose liveliness token is seen.
async fn alive_nodes(session: &zenoh::Session, hub: &str, deadline: Instant) -> Vec<String> {
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_millis(300));
    alive_now(session, hub, wait)
        .await
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The status as `--json` prints it.
#[derive(Debug, Serialize)]
struct StatusView {
    hub: String,
    leader: Option<String>,
    term: u64,
    /// Highest applied index any node reported: everything up to it is committed.
    commit_index: u64,
    nodes: Vec<NodeView>,
    /// The node whose record is shown.
    record_from: Option<String>,
    plan_epoch: u64,
    islands: Vec<IslandView>,
    /// What each gun asks, as the node whose record is shown sees it.
    demands: Vec<DemandView>,
    segments: Vec<SegmentView>,
    faults: Vec<FaultView>,
}

#[derive(Debug, Serialize)]
struct DemandView {
    gun: u32,
    demand_w: u32,
    rating_w: u32,
}

#[derive(Debug, Serialize)]
struct NodeView {
    node: String,
    answered: bool,
    alive: bool,
    /// In the Raft membership: a voter (true), a learner (false), or not at all (null).
    voter: Option<bool>,
    role: Option<String>,
    raft_id: Option<u64>,
    term: Option<u64>,
    applied_index: Option<u64>,
    reached_epoch: u64,
}

#[derive(Debug, Serialize)]
struct IslandView {
    segments: Vec<u32>,
    gun: Option<u32>,
    modules: Vec<u32>,
    granted_w: u32,
}

#[derive(Debug, Serialize)]
struct SegmentView {
    segment: u32,
    cabinet: String,
    in_service: bool,
    reason: String,
    tie_observed: String,
}

#[derive(Debug, Serialize)]
struct FaultView {
    id: u64,
    code: String,
    severity: String,
    scope: String,
    scope_id: String,
    reason: String,
    /// The measurements that made it latch, `key=value unit`.
    evidence: Vec<String>,
    raised_by: String,
    raised_unix_ms: u64,
    clear_rule: String,
    status: String,
    cleared_by: String,
    clear_reason: String,
    /// When it was cleared; absent while active.
    cleared_unix_ms: Option<u64>,
    plan_epoch: u64,
    repeat_count: u32,
}

/// One measurement as `key=value unit`, deci-units in their whole unit (`dA` as `A`).
fn evidence_text(evidence: &v1::Evidence) -> String {
    use v1::evidence::Value;
    let key = &evidence.key;
    let unit = evidence.unit.as_str();
    match (&evidence.value, unit.strip_prefix('d')) {
        (Some(Value::IntValue(v)), Some(whole)) if !whole.is_empty() => {
            format!("{key}={} {whole}", *v as f64 / 10.0)
        }
        (Some(Value::IntValue(v)), _) => format!("{key}={v} {unit}"),
        (Some(Value::FloatValue(v)), _) => format!("{key}={v} {unit}"),
        (Some(Value::BoolValue(v)), _) => format!("{key}={v}"),
        (Some(Value::TextValue(v)), _) => format!("{key}={v}"),
        (None, _) => key.clone(),
    }
    .trim_end()
    .to_owned()
}

fn fault_view(fault: &v1::Fault) -> FaultView {
    let name = |s: &str, prefix: &str| s.strip_prefix(prefix).unwrap_or(s).to_ascii_lowercase();
    FaultView {
        id: fault.fault_id,
        code: fault.code.clone(),
        severity: name(fault.severity().as_str_name(), "FAULT_SEVERITY_"),
        scope: name(fault.scope().as_str_name(), "FAULT_SCOPE_"),
        scope_id: fault.scope_id.clone(),
        reason: fault.reason.clone(),
        evidence: fault.evidence.iter().map(evidence_text).collect(),
        raised_by: fault.raised_by_node_id.clone(),
        raised_unix_ms: fault.raised_unix_ms,
        clear_rule: name(fault.clear_rule().as_str_name(), "CLEAR_RULE_"),
        status: name(fault.status().as_str_name(), "FAULT_STATUS_"),
        cleared_by: fault.cleared_by.clone(),
        clear_reason: fault.clear_reason.clone(),
        cleared_unix_ms: fault.cleared_unix_ms,
        plan_epoch: fault.plan_epoch,
        repeat_count: fault.repeat_count,
    }
}

/// Runs `ringhub status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let (config, answers) = ask(
        &args.reach,
        &operator_name(None),
        admin_request::Command::GetStatus(v1::GetStatusRequest {}),
        None,
    )
    .await?;
    let statuses: Vec<(&str, &v1::GetStatusReply)> = answers
        .iter()
        .filter_map(|a| match &a.reply.outcome {
            Some(admin_reply::Outcome::GetStatus(s)) => Some((a.node.as_str(), s)),
            _ => None,
        })
        .collect();
    if statuses.is_empty() {
        bail!(
            "no node of hub {} answered within {} ms: are the nodes running, and is {:?} reachable?",
            config.hub.id,
            args.reach.timeout_ms,
            args.reach.connect
        );
    }
    let applied = |s: &v1::GetStatusReply| s.raft.as_ref().map_or(0, |r| r.applied_index);
    let best = statuses
        .iter()
        .max_by_key(|(_, s)| (applied(s), s.raft.as_ref().map_or(0, |r| r.term)))
        .copied();
    let faults = fetch_faults(&args.reach, v1::ListFaultsRequest::default())
        .await
        .unwrap_or_default();
    let view = StatusView {
        hub: config.hub.id.to_string(),
        leader: statuses
            .iter()
            .filter(|(_, s)| !s.leader_node_id.is_empty())
            .max_by_key(|(_, s)| s.raft.as_ref().map_or(0, |r| r.term))
            .map(|(_, s)| s.leader_node_id.clone()),
        term: statuses
            .iter()
            .filter_map(|(_, s)| s.raft.as_ref().map(|r| r.term))
            .max()
            .unwrap_or(0),
        commit_index: statuses.iter().map(|(_, s)| applied(s)).max().unwrap_or(0),
        nodes: config
            .cabinets
            .iter()
            .map(|cabinet| {
                let name = cabinet.id.to_string();
                let own = statuses.iter().find(|(n, _)| *n == name).map(|(_, s)| s);
                let raft = own.and_then(|s| s.raft.as_ref());
                let seen = best.and_then(|(_, s)| s.nodes.iter().find(|n| n.node_id == name));
                let member = best
                    .and_then(|(_, s)| s.raft.as_ref())
                    .and_then(|r| r.members.iter().find(|m| m.node_id == name));
                NodeView {
                    voter: member.map(|m| m.voter),
                    answered: own.is_some(),
                    alive: own.is_some() || seen.is_some_and(|n| n.alive),
                    role: raft.map(|r| r.role.clone()),
                    raft_id: raft.map(|r| r.raft_id),
                    term: raft.map(|r| r.term),
                    applied_index: raft.map(|r| r.applied_index),
                    reached_epoch: seen.map_or(0, |n| n.reached_epoch),
                    node: name,
                }
            })
            .collect(),
        record_from: best.map(|(n, _)| n.to_owned()),
        plan_epoch: best
            .and_then(|(_, s)| s.plan.as_ref())
            .map_or(0, |p| p.epoch),
        islands: best
            .and_then(|(_, s)| s.plan.as_ref())
            .map(|p| {
                p.islands
                    .iter()
                    .map(|i| IslandView {
                        segments: i.segment_ids.clone(),
                        gun: i.gun_id,
                        modules: i.module_ids.clone(),
                        granted_w: i.granted_power_w,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        demands: best
            .map(|(_, s)| {
                s.demands
                    .iter()
                    .map(|d| DemandView {
                        gun: d.gun_id,
                        demand_w: d.demand_w,
                        rating_w: d.rating_w,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        segments: best
            .map(|(_, s)| {
                s.segment_records
                    .iter()
                    .map(|r| SegmentView {
                        segment: r.segment_id,
                        cabinet: r.cabinet_id.clone(),
                        in_service: r.in_service,
                        reason: r.out_of_service_reason.clone(),
                        tie_observed: r.tie_observed.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        faults: faults.iter().map(fault_view).collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_status(&view);
    }
    Ok(())
}

fn print_status(view: &StatusView) {
    println!(
        "hub {}   leader {}   term {}   commit index {}   plan epoch {}",
        view.hub,
        view.leader.as_deref().unwrap_or("none"),
        view.term,
        view.commit_index,
        view.plan_epoch
    );
    println!();
    println!(
        "{:<12} {:<10} {:<8} {:>5} {:>7} {:>8} {:>8}",
        "NODE", "ROLE", "MEMBER", "ALIVE", "TERM", "APPLIED", "EPOCH"
    );
    for node in &view.nodes {
        let or_dash = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        let member = match node.voter {
            Some(true) => "voter",
            Some(false) => "learner",
            None => "-",
        };
        println!(
            "{:<12} {:<10} {:<8} {:>5} {:>7} {:>8} {:>8}",
            node.node,
            node.role
                .as_deref()
                .unwrap_or(if node.answered { "?" } else { "no answer" }),
            member,
            if node.alive { "yes" } else { "no" },
            or_dash(node.term),
            or_dash(node.applied_index),
            node.reached_epoch
        );
    }
    println!();
    println!(
        "{:<8} {:<10} {:<11} {:<14} REASON",
        "SEGMENT", "CABINET", "IN SERVICE", "TIE"
    );
    for segment in &view.segments {
        println!(
            "{:<8} {:<10} {:<11} {:<14} {}",
            segment.segment,
            segment.cabinet,
            if segment.in_service { "yes" } else { "no" },
            if segment.tie_observed.is_empty() {
                "-"
            } else {
                &segment.tie_observed
            },
            segment.reason
        );
    }
    println!();
    println!(
        "{:<16} {:<6} {:<16} {:>10} {:>10}",
        "ISLAND", "GUN", "MODULES", "ASKS", "GRANTED"
    );
    for island in &view.islands {
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let asks = island
            .gun
            .and_then(|g| view.demands.iter().find(|d| d.gun == g))
            .map_or("-".to_owned(), |d| format!("{} W", d.demand_w));
        println!(
            "{:<16} {:<6} {:<16} {:>10} {:>8} W",
            list(&island.segments),
            island.gun.map_or("-".to_owned(), |g| g.to_string()),
            if island.modules.is_empty() {
                "-".to_owned()
            } else {
                list(&island.modules)
            },
            asks,
            island.granted_w
        );
    }
    println!();
    print_faults(&view.faults);
}

fn print_faults(faults: &[FaultView]) {
    if faults.is_empty() {
        println!("no latched faults");
        return;
    }
    println!(
        "{:>4} {:<26} {:<9} {:<18} {:<8} {:<10} {:<9} DETAIL",
        "ID", "CODE", "SEVERITY", "SCOPE", "BY", "CLEAR", "STATUS"
    );
    for f in faults {
        println!(
            "{:>4} {:<26} {:<9} {:<18} {:<8} {:<10} {:<9} {}",
            f.id,
            f.code,
            f.severity,
            format!("{} {}", f.scope, f.scope_id),
            f.raised_by,
            f.clear_rule,
            f.status,
            if f.evidence.is_empty() {
                f.reason.clone()
            } else {
                format!("{} ({})", f.reason, f.evidence.join(", "))
            }
        );
    }
}

/// The latches, from the most advanced node that answers.
async fn fetch_faults(
    reach: &Reach,
    filter: v1::ListFaultsRequest,
) -> anyhow::Result<Vec<v1::Fault>> {
    let (config, answers) = ask(
        reach,
        &operator_name(None),
        admin_request::Command::ListFaults(v1::ListFaultsRequest {
            limit: 1_000,
            ..filter
        }),
        None,
    )
    .await?;
    answers
        .into_iter()
        .filter_map(|a| match a.reply.outcome {
            Some(admin_reply::Outcome::ListFaults(list)) => Some(list.faults),
            _ => None,
        })
        .max_by_key(|faults| (faults.len(), faults.first().map_or(0, |f| f.fault_id)))
        .with_context(|| format!("no node of hub {} answered", config.hub.id))
}

/// Runs `ringhub faults`.
pub async fn faults(args: FaultsArgs) -> anyhow::Result<()> {
    if let Some(FaultsAction::Catalog) = &args.action {
        let catalog = ringhub_cluster::faults::CATALOG;
        if args.json {
            println!("{}", serde_json::to_string_pretty(catalog)?);
        } else {
            print!("{}", ringhub_cluster::faults::markdown());
        }
        return Ok(());
    }
    if let Some(FaultsAction::Clear {
        id,
        reason,
        operator,
    }) = &args.action
    {
        return clear(
            &args.reach,
            *id,
            reason,
            &operator_name(operator.as_deref()),
            args.json,
        )
        .await;
    }
    let filter = v1::ListFaultsRequest {
        include_cleared: args.all || matches!(args.action, Some(FaultsAction::History)),
        scope: args.scope.unwrap_or_default().into(),
        scope_id: args.scope_id.clone().unwrap_or_default(),
        min_severity: args.severity.unwrap_or_default().into(),
        code_prefix: args.code.clone().unwrap_or_default(),
        ..v1::ListFaultsRequest::default()
    };
    let faults: Vec<FaultView> = fetch_faults(&args.reach, filter)
        .await?
        .iter()
        .map(fault_view)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&faults)?);
    } else {
        print_faults(&faults);
    }
    Ok(())
}

/// `--scope`: a fault scope by its lower-case name.
fn parse_scope(name: &str) -> Result<v1::FaultScope, String> {
    v1::FaultScope::from_str_name(&format!("FAULT_SCOPE_{}", name.to_ascii_uppercase()))
        .filter(|scope| *scope != v1::FaultScope::Unspecified)
        .ok_or_else(|| {
            format!(
                "unknown scope {name:?}: hub, cabinet, node, segment, gun, module, \
                 gun_contactor, module_contactor or tie_contactor"
            )
        })
}

/// `--severity`: a fault severity by its lower-case name.
fn parse_severity(name: &str) -> Result<v1::FaultSeverity, String> {
    v1::FaultSeverity::from_str_name(&format!("FAULT_SEVERITY_{}", name.to_ascii_uppercase()))
        .filter(|severity| *severity != v1::FaultSeverity::Unspecified)
        .ok_or_else(|| format!("unknown severity {name:?}: warning, error or critical"))
}

/// Asks the nodes one at a time, in config order, to commit the clear, until one answers.
/// How long a clear waits at least for its node's answer: a second longer than the
/// cluster lets a write take to commit, leader changes included.
const CLEAR_WAIT: Duration = Duration::from_secs(ringhub_cluster::service::WRITE_TTL.as_secs() + 1);

async fn clear(
    reach: &Reach,
    id: u64,
    reason: &str,
    operator: &str,
    json: bool,
) -> anyhow::Result<()> {
    let config = load(reach)?;
    // A clear is a Raft write: give it the time the cluster gives one to commit.
    let reach = &Reach {
        timeout_ms: reach.timeout_ms.max(CLEAR_WAIT.as_millis() as u64),
        ..reach.clone()
    };
    let mut answers = Vec::new();
    for cabinet in &config.cabinets {
        let command = admin_request::Command::ClearFault(v1::ClearFaultRequest {
            fault_id: id,
            reason: reason.to_owned(),
        });
        answers = ask(reach, operator, command, Some(cabinet.id.as_ref()))
            .await?
            .1;
        if !answers.is_empty() {
            break;
        }
    }
    let mut errors = Vec::new();
    for answer in &answers {
        match &answer.reply.outcome {
            Some(admin_reply::Outcome::ClearFault(v1::ClearFaultReply { fault: Some(fault) })) => {
                let view = fault_view(fault);
                if json {
                    println!("{}", serde_json::to_string_pretty(&view)?);
                } else {
                    println!(
                        "latch {} ({}) cleared by {}: {}",
                        view.id, view.code, view.cleared_by, view.clear_reason
                    );
                }
                return Ok(());
            }
            Some(admin_reply::Outcome::Error(error)) => {
                errors.push(format!("{}: {}", answer.node, error.reason))
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        bail!("no node of hub {} answered", config.hub.id);
    }
    bail!("the clear was refused: {}", errors.join("; "))
}

/// The operator's name: given, or the login name.
fn operator_name(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".to_owned())
}
