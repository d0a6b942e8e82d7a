//! The Prometheus rules and the Grafana dashboards name only metrics the nodes export
//! (issue 9, "Observability"): a renamed or removed metric fails here, not silently on a
//! site's dashboard.
//!
//! Every `ringhub_…` identifier in `deploy/prometheus/rules/*.yml`,
//! `deploy/prometheus/tests/*.yml` and `deploy/grafana/dashboards/*.json` is collected
//! (an identifier with a `:` is a recording rule, and must be recorded by the rules). The
//! demo hub then runs as three node processes on the simulator until the leader has
//! committed a plan, an undecodable frame is put on cab-a's bus, and the nodes' live
//! `/metrics` must list every name (a histogram's `_bucket`, `_sum` and `_count` by its
//! family). The exporter lists a metric only once it has a value, so the few that only
//! an event sets (a CAN error, a refused request, entering degraded mode) are listed in
//! [`ONLY_ON_EVENTS`]; each of those must at least be described by the node (registered
//! with help text by `ringhub_node::metrics::describe`), and must not be missing from a
//! scrape for any other reason.
//!
//! A second test generates a promtool unit test from the node's fault catalog: the rules'
//! `code:ringhub_faults_active:severity` gives every fault code the severity its latch
//! has (`ringhub_node::latches::classify`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::cluster::planned_hub;
use common::csms::workspace_root;
use common::{STEP, TempDir, bounded, eventually, scrape_text, start_sim};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use ringhub_cluster::record::Severity;
use ringhub_node::can::{CanBus, SocketcandAddr, SocketcandBus};
use ringhub_proto::can::CanFrame;
use ringhub_proto::config::HubConfig;
use ringhub_proto::socketcand::BusName;

/// Metrics a node lists only once something happens that a healthy demo hub does not
/// do; their names are checked against the node's descriptions instead.
const ONLY_ON_EVENTS: &[&str] = &[
    // A CAN transport error (`kind` label per error).
    "ringhub_can_errors_total",
    // Counted when a node first degrades.
    "ringhub_node_degraded_entries_total",
    // Failures and refusals.
    "ringhub_latch_write_failures_total",
    "ringhub_latch_changes_refused_total",
    "ringhub_raft_refused_requests_total",
    "ringhub_admin_rejected_requests_total",
    // Only with OCPP, once a malformed frame arrived (`identity` label).
    "ringhub_ocpp_rejected_frames_total",
    // Only with OCPP: a charge point's connection to its CSMS (`identity` label).
    "ringhub_ocpp_connected",
];

/// A frame no message of the DBC catalog has: the node counts it in
/// `ringhub_can_decode_errors_total`.
const UNDECODABLE: &str = "7FF#00";

/// The files whose metric names are checked, relative to the workspace root, by
/// directory and extension.
const SOURCES: &[(&str, &str)] = &[
    ("deploy/prometheus/rules", "yml"),
    ("deploy/prometheus/tests", "yml"),
    ("deploy/grafana/dashboards", "json"),
];

/// Where a name was found: file, line.
type Place = (PathBuf, usize);

/// What the deploy files name.
#[derive(Debug, Default)]
struct References {
    /// Metric names, with the first place each appears.
    metrics: BTreeMap<String, Place>,
    /// Recording rule names used (with a `:`), with the first place each appears.
    recordings_used: BTreeMap<String, Place>,
    /// Recording rule names the rules define (`record: NAME`).
    recorded: BTreeSet<String>,
}

fn source_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for (dir, ext) in SOURCES {
        let dir = root.join(dir);
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().and_then(|e| e.to_str()) == Some(ext) {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "json")),
        "no dashboard found: {files:?}"
    );
    files
}

/// Collects every identifier that names a ringhub metric or recording rule.
fn references() -> References {
    let mut refs = References::default();
    for file in source_files() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let relative = file
            .strip_prefix(workspace_root())
            .unwrap_or(&file)
            .to_path_buf();
        for (n, line) in text.lines().enumerate() {
            if let Some(name) = line.trim_start().strip_prefix("- record:") {
                refs.recorded.insert(name.trim().to_owned());
            }
            let tokens = line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            for token in tokens {
                let token = token.trim_end_matches(':');
                if !token.contains("ringhub_") {
                    continue;
                }
                let place = (relative.clone(), n + 1);
                let map = if token.contains(':') {
                    &mut refs.recordings_used
                } else {
                    &mut refs.metrics
                };
                map.entry(token.to_owned()).or_insert(place);
            }
        }
    }
    refs
}

/// The metric families one scrape lists (`# TYPE` lines), with their types, and every
/// sample's name.
#[derive(Debug, Default)]
struct Exported {
    families: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exported {
    fn add(&mut self, body: &str) {
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    self.families.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                self.samples.insert(line[..end].to_owned());
            }
        }
    }

    /// Whether `name` is a family or a sample of one (`_bucket`, `_sum`, `_count` of a
    /// histogram).
    fn has(&self, name: &str) -> bool {
        self.families.contains_key(name) || self.samples.contains(name)
    }
}

/// The family a histogram sample belongs to, if `name` is one of a histogram's series.
fn histogram_family<'a>(name: &'a str, kinds: &BTreeMap<String, String>) -> Option<&'a str> {
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let family = name.strip_suffix(suffix)?;
        (kinds.get(family).map(String::as_str) == Some("histogram")).then_some(family)
    })
}

/// Keeps the name and type of every metric described to it.
#[derive(Debug, Default)]
struct Descriptions(Mutex<BTreeMap<String, String>>);

impl Descriptions {
    fn note(&self, key: &KeyName, kind: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.as_str().to_owned(), kind.to_owned());
    }
}

impl Recorder for Descriptions {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.note(&key, "counter");
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.note(&key, "gauge");
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.note(&key, "histogram");
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Every metric the node describes, with its type.
fn described() -> BTreeMap<String, String> {
    let recorder = Descriptions::default();
    metrics::with_local_recorder(&recorder, ringhub_node::metrics::describe);
    recorder.0.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn place(p: &Place) -> String {
    format!("{}:{}", p.0.display(), p.1)
}

#[test]
fn recording_rules_used_are_defined_and_event_metrics_are_described() {
    let refs = references();
    let undefined: Vec<String> = refs
        .recordings_used
        .iter()
        .filter(|(name, _)| !refs.recorded.contains(*name))
        .map(|(name, p)| format!("{name} ({})", place(p)))
        .collect();
    assert!(
        undefined.is_empty(),
        "recording rules used but not recorded in deploy/prometheus/rules: {undefined:?}"
    );
    let described = described();
    let undescribed: Vec<&&str> = ONLY_ON_EVENTS
        .iter()
        .filter(|name| !described.contains_key(**name))
        .collect();
    assert!(
        undescribed.is_empty(),
        "metrics listed as set only on events that the node does not describe: {undescribed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_dashboards_name_is_exported() {
    bounded(async {
        let refs = references();
        assert!(
            refs.metrics.len() >= 20,
            "too few metric names found in the deploy files: {:?}",
            refs.metrics.keys()
        );
        let described = described();

        let sim = start_sim(HubConfig::demo(), 23).await;
        let dir = TempDir::new("observability");
        let (nodes, _endpoints) = planned_hub(&sim, &dir, None).await;

        // A frame that does not decode, on cab-a's bus, from a second client of the
        // simulator's socketcand server (the bus's other clients see it, as on CAN).
        let socketcand = sim.socketcand_addr();
        let mut bus = SocketcandBus::connect(&SocketcandAddr {
            host: socketcand.ip().to_string(),
            port: socketcand.port(),
            bus: BusName::new("cab-a").expect("bus name"),
        })
        .await
        .expect("open cab-a's bus");
        let frame: CanFrame = UNDECODABLE.parse().expect("frame syntax");

        eventually(
            "every metric the deploy files name in a scrape",
            STEP,
            async || {
                // Again on each try: the node may have joined the bus after the last one.
                bus.send(frame).await.map_err(|e| e.to_string())?;
                let mut exported = Exported::default();
                for node in &nodes {
                    exported.add(&scrape_text(node.metrics).await?);
                }
                let mut kinds = described.clone();
                kinds.extend(exported.families.clone());
                let missing: Vec<String> = refs
                    .metrics
                    .iter()
                    .filter(|(name, _)| {
                        let family = histogram_family(name, &kinds).unwrap_or(name);
                        let event_only =
                            ONLY_ON_EVENTS.contains(&family) && described.contains_key(family);
                        let found = exported.has(name) || exported.has(family) || event_only;
                        !found
                    })
                    .map(|(name, p)| format!("{name} ({})", place(p)))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "not exported by any node: {missing:?}\nexported families: {:?}",
                        exported.families.keys()
                    ))
                }
            },
        )
        .await;
    })
    .await;
}

/// The severity label the rules give a code's faults.
fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Warning => "warning",
        Severity::Error => "error",
        Severity::Critical => "critical",
    }
}

/// A promtool unit test: one active fault of every code, and the recorded severity of
/// each as the node's catalog gives it.
fn severity_test(rules: &Path) -> String {
    let labels = |code: &str| format!(r#"hub="demo",cabinet="cab-a",segment="0",code="{code}""#);
    let mut series = String::new();
    let mut expected = String::new();
    for code in ringhub_node::metrics::FAULT_CODES {
        let (severity, _) = ringhub_node::latches::classify(code);
        let code = code.as_str();
        series.push_str(&format!(
            "      - series: 'ringhub_faults_active{{{}}}'\n        values: '1x2'\n",
            labels(code)
        ));
        expected.push_str(&format!(
            "          - labels: 'code:ringhub_faults_active:severity{{{},fault_severity=\"{}\"}}'\n            value: 1\n",
            labels(code),
            severity_label(severity)
        ));
    }
    format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    promql_expr_test:\n      - expr: code:ringhub_faults_active:severity\n        eval_time: 1m\n        exp_samples:\n{expected}",
        rules.display()
    )
}

#[test]
fn fault_severities_in_the_rules_follow_the_catalog() {
    let promtool = match std::env::var("PROMTOOL") {
        Ok(path) if !path.is_empty() => path,
        _ if std::env::var("RINGHUB_REQUIRE_PROMTOOL").as_deref() == Ok("1") => panic!(
            "RINGHUB_REQUIRE_PROMTOOL=1 but PROMTOOL is not set: run ./scripts/install-promtool and set PROMTOOL to its output"
        ),
        _ => {
            eprintln!("skipped: set PROMTOOL=/path/to/promtool to check the rules' severities");
            return;
        }
    };
    let rules = workspace_root().join("deploy/prometheus/rules/ringhub.rules.yml");
    let dir = TempDir::new("severities");
    let test = dir.path().join("severities.test.yml");
    let text = severity_test(&rules);
    std::fs::File::create(&test)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write the generated test");
    let output = Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(&test)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run PROMTOOL={promtool}: {e}"));
    assert!(
        output.status.success(),
        "the rules' fault severities differ from the catalog's ({}):\n{}{}\n--- generated test ---\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
