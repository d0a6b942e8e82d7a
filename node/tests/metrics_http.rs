//! The Prometheus exporter over real HTTP: the recorder is installed once for this test
//! process (it is global) on a loopback port, one snapshot is recorded, and each test
//! scrapes `/metrics` with a plain HTTP/1.0 request. The text is parsed here and checked
//! name by name, label by label; and, where Prometheus's own `promtool` is available
//! (`PROMTOOL=/path/to/promtool`, set by `./scripts/test`), promtool checks it too.
//! With `RINGHUB_REQUIRE_PROMTOOL=1` a missing promtool fails the test instead of skipping.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ringhub_node::connector::snapshot::{
    ConnectorStatus, ContactorView, FaultCode, GunSnapshot, LocalFault, MeterView, ModuleSnapshot,
    SegmentSnapshot, SessionPhase,
};
use ringhub_node::metrics;
use ringhub_proto::can::ModuleAddress;
use ringhub_proto::can::messages::{
    AuthStatus, CpState, HlcPhase, HlcProtocol, IsolationState, LockState, MeterSource,
    ModuleFaults, SlacState,
};
use ringhub_proto::config::{GunId, ModuleId, SegmentId};
use ringhub_proto::units::{Amps, Celsius, KilowattHours, Kilowatts, Volts};

/// Longest a scrape may take.
const DEADLINE: Duration = Duration::from_secs(10);

fn fault(code: FaultCode, subject: &str) -> LocalFault {
    LocalFault {
        evidence: Vec::new(),
        code,
        subject: subject.into(),
        detail: String::new(),
        raised_at: Duration::ZERO,
    }
}

fn snapshot(contactor_operations: u64) -> SegmentSnapshot {
    SegmentSnapshot {
        segment: SegmentId(1),
        plc_online: true,
        plc_silent_for: Duration::from_millis(5),
        bus_voltage: Volts(400.0),
        gc: Some(ContactorView::default()),
        mc: vec![(ModuleId(2), ContactorView::default())],
        mn: None,
        isolation: IsolationState::Valid,
        relay_sequence: 1,
        out_of_service: false,
        gun: Some(GunSnapshot {
            gun: GunId(1),
            phase: SessionPhase::Charging,
            status: ConnectorStatus::Charging,
            available: true,
            cp: CpState::C,
            slac: SlacState::Matched,
            protocol: HlcProtocol::Iso15118v2,
            hlc_phase: HlcPhase::CurrentDemand,
            ev_identity: None,
            token: None,
            auth: AuthStatus::Accepted,
            lock: LockState::Locked,
            meter: Some(MeterView {
                source: MeterSource::PlcMeter,
                voltage: Volts(400.5),
                current: Amps(120.25),
                energy_register: KilowattHours(100.0),
            }),
            session_energy: KilowattHours(12.5),
            soc: None,
            ev_target_voltage: Volts(401.0),
            ev_target_current: Amps(125.0),
            offered_current: Amps(130.5),
            power: Kilowatts(48.16),
            last_stop: None,
            budget: None,
        }),
        modules: vec![ModuleSnapshot {
            module: ModuleId(2),
            address: ModuleAddress(2),
            online: true,
            enabled: true,
            setpoint_voltage: Volts(401.0),
            setpoint_current: Amps(62.5),
            output_voltage: Volts(400.25),
            output_current: Amps(60.5),
            temperature: Celsius(55.5),
            rated_power: Kilowatts(50.0),
            available_power: Kilowatts(42.5),
            faults: ModuleFaults::default(),
            out_of_service: false,
        }],
        conditions: Vec::new(),
        faults: vec![
            fault(FaultCode::ModuleOvertemp, "module 2"),
            fault(FaultCode::ModuleOvertemp, "module 3"),
            fault(FaultCode::MeterDisagreement, "gun 1"),
        ],
        contactor_operations,
    }
}

/// Installs the exporter once for the process and records the test's data; returns its
/// address.
fn server() -> SocketAddr {
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    *SERVER.get_or_init(|| {
        // A port that was free a moment ago (the exporter binds it itself).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind loopback");
        // No tokio runtime here: the exporter runs on a thread of its own.
        metrics::install(addr).expect("install the exporter");
        metrics::record(&[snapshot(17)], "demo", "cab-a");
        // The counter is absolute: a later, larger count replaces it.
        metrics::record(&[snapshot(20)], "demo", "cab-a");
        metrics::record_tick(Duration::from_micros(300));
        metrics::record_tick(Duration::from_millis(3));
        addr
    })
}

/// `GET /metrics` over HTTP/1.0; the body.
fn scrape() -> String {
    let addr = server();
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(started.elapsed() < DEADLINE, "scrape took too long");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head and body");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    body.to_owned()
}

/// One sample line: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format's sample lines (the label values here have no escapes).
fn samples(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("numeric value"),
            }
        })
        .collect()
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = all
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

const SEG: [(&str, &str); 3] = [("hub", "demo"), ("cabinet", "cab-a"), ("segment", "1")];

fn gun_labels() -> Vec<(&'static str, &'static str)> {
    let mut labels = SEG.to_vec();
    labels.push(("gun", "1"));
    labels
}

fn module_labels() -> Vec<(&'static str, &'static str)> {
    let mut labels = SEG.to_vec();
    labels.push(("module", "2"));
    labels
}

#[test]
fn scrape_has_every_metric_with_labels_and_values() {
    let body = scrape();
    let all = samples(&body);

    // Base units: kW → W, kWh → J.
    assert_eq!(
        value(&all, "ringhub_gun_power_watts", &gun_labels()),
        48160.0
    );
    assert_eq!(
        value(&all, "ringhub_gun_current_amperes", &gun_labels()),
        120.25
    );
    assert_eq!(
        value(&all, "ringhub_gun_voltage_volts", &gun_labels()),
        400.5
    );
    // 12.5 kWh in joules.
    assert_eq!(
        value(&all, "ringhub_gun_session_energy_joules", &gun_labels()),
        45_000_000.0
    );
    assert_eq!(
        value(&all, "ringhub_gun_offered_current_amperes", &gun_labels()),
        130.5
    );
    // One series per phase, 1 only for the current one.
    for phase in metrics::PHASES {
        let label = metrics::phase_label(phase);
        let mut labels = gun_labels();
        labels.push(("phase", label));
        let expected = if phase == SessionPhase::Charging {
            1.0
        } else {
            0.0
        };
        assert_eq!(
            value(&all, "ringhub_gun_session_phase", &labels),
            expected,
            "{label}"
        );
    }

    assert_eq!(
        value(
            &all,
            "ringhub_module_output_current_amperes",
            &module_labels()
        ),
        60.5
    );
    assert_eq!(
        value(
            &all,
            "ringhub_module_output_voltage_volts",
            &module_labels()
        ),
        400.25
    );
    assert_eq!(
        value(&all, "ringhub_module_temperature_celsius", &module_labels()),
        55.5
    );
    assert_eq!(
        value(
            &all,
            "ringhub_module_available_power_watts",
            &module_labels()
        ),
        42500.0
    );

    assert_eq!(
        value(&all, "ringhub_contactor_operations_total", &SEG),
        20.0
    );
    assert_eq!(value(&all, "ringhub_plc_online", &SEG), 1.0);
    for code in metrics::FAULT_CODES {
        let mut labels = SEG.to_vec();
        labels.push(("code", code.as_str()));
        let expected = match code {
            FaultCode::ModuleOvertemp => 2.0,
            FaultCode::MeterDisagreement => 1.0,
            _ => 0.0,
        };
        assert_eq!(
            value(&all, "ringhub_faults_active", &labels),
            expected,
            "{code}"
        );
    }

    // The tick histogram: 300 µs and 3 ms.
    let tick = "ringhub_controller_tick_seconds";
    assert_eq!(value(&all, &format!("{tick}_count"), &[]), 2.0);
    let sum = value(&all, &format!("{tick}_sum"), &[]);
    assert!((sum - 0.0033).abs() < 1e-9, "sum {sum}");
    assert_eq!(
        value(&all, &format!("{tick}_bucket"), &[("le", "0.00025")]),
        0.0
    );
    assert_eq!(
        value(&all, &format!("{tick}_bucket"), &[("le", "0.0005")]),
        1.0
    );
    assert_eq!(
        value(&all, &format!("{tick}_bucket"), &[("le", "0.005")]),
        2.0
    );
    assert_eq!(
        value(&all, &format!("{tick}_bucket"), &[("le", "+Inf")]),
        2.0
    );

    // Help and type for each family.
    for (name, kind) in [
        ("ringhub_gun_power_watts", "gauge"),
        ("ringhub_gun_current_amperes", "gauge"),
        ("ringhub_gun_voltage_volts", "gauge"),
        ("ringhub_gun_session_energy_joules", "gauge"),
        ("ringhub_gun_session_phase", "gauge"),
        ("ringhub_gun_offered_current_amperes", "gauge"),
        ("ringhub_module_output_current_amperes", "gauge"),
        ("ringhub_module_output_voltage_volts", "gauge"),
        ("ringhub_module_temperature_celsius", "gauge"),
        ("ringhub_module_available_power_watts", "gauge"),
        ("ringhub_contactor_operations_total", "counter"),
        ("ringhub_faults_active", "gauge"),
        ("ringhub_plc_online", "gauge"),
        ("ringhub_controller_tick_seconds", "histogram"),
    ] {
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 12),
            "no help text for {name}"
        );
        assert!(
            body.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "no TYPE {kind} for {name}"
        );
    }
}

#[test]
fn promtool_accepts_the_scrape() {
    let promtool = match std::env::var("PROMTOOL") {
        Ok(path) if !path.is_empty() => path,
        _ if std::env::var("RINGHUB_REQUIRE_PROMTOOL").as_deref() == Ok("1") => panic!(
            "RINGHUB_REQUIRE_PROMTOOL=1 but PROMTOOL is not set: run ./scripts/install-promtool and set PROMTOOL to its output"
        ),
        _ => {
            eprintln!("skipped: set PROMTOOL=/path/to/promtool to check the scrape with promtool");
            return;
        }
    };
    let body = scrape();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run PROMTOOL={promtool}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write the scrape to promtool");
    let output = child.wait_with_output().expect("promtool output");
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- scrape ---\n{body}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
