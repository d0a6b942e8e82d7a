//! The OCPP-J transport against an independent CSMS: `tests/ocpp_csms/csms.py`, built on
//! the Python `ocpp` package, which checks every message against the OCA JSON schemas of
//! OCPP 1.6. Plus a tiny in-process tokio-tungstenite server for what a real CSMS would
//! not do (skip the subprotocol, refuse the first upgrades).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use ringhub_node::can::ReconnectPolicy;
use ringhub_node::ocpp::messages::OcppCall;
use ringhub_node::ocpp::messages::charge_point::{
    BootNotificationRequest, HeartbeatRequest, RegistrationStatus,
};
use ringhub_node::ocpp::rpc::{Call, Frame, MessageId};
use ringhub_node::ocpp::transport::{
    CLOSE_TIMEOUT, Connection, Reconnector, SecurityProfile, TransportConfig, TransportError,
};
use ringhub_node::ocpp::types::CiString;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

/// How long the CSMS may take to start, answer or log.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long a killed CSMS may take to be reaped.
const REAP: Duration = Duration::from_secs(5);

/// The workspace root, where `scripts/` lives.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_owned()
}

/// The project's virtualenv with the CSMS's requirements installed (once per test binary).
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let root = workspace_root();
        let output = Command::new(root.join("scripts/python-env"))
            .arg("node/tests/ocpp_csms/requirements.txt")
            .current_dir(&root)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/python-env");
        assert!(output.status.success(), "scripts/python-env failed");
        PathBuf::from(
            String::from_utf8(output.stdout)
                .expect("a UTF-8 path")
                .trim(),
        )
    })
}

/// csms.py, running; killed and reaped on drop.
struct Csms {
    /// The Python process.
    child: Option<Child>,
    /// Its stdout, one JSON line per message, from a reader thread.
    lines: mpsc::Receiver<Value>,
    /// The port it listens on.
    port: u16,
}

impl Csms {
    /// Starts csms.py on a free port with `args` and waits for it to listen.
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(venv().join("bin/python"))
            .arg(workspace_root().join("node/tests/ocpp_csms/csms.py"))
            .arg("0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn csms.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("csms.py printed {line:?}: {e}"));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        let mut csms = Self {
            child: Some(child),
            lines,
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
    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ocpp", self.port)
    }

    /// Its endpoint when started with `--tls`.
    fn tls_url(&self) -> String {
        format!("wss://127.0.0.1:{}/ocpp", self.port)
    }

    /// The next logged line matching `matches`, skipping the others; fails after
    /// [`DEADLINE`].
    fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("csms.py logged no {what} within {DEADLINE:?}: {e}"),
            }
        }
    }

    /// The log line of the CALL `id` the CSMS received.
    fn received_call(&mut self, id: &str) -> Value {
        self.wait_for(&format!("CALL {id}"), |v| {
            v["event"] == "received" && v["type"] == 2 && v["id"] == id
        })
    }
}

impl Drop for Csms {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Fails only if it has exited already; it is reaped below either way.
        let _ = child.kill();
        let deadline = Instant::now() + REAP;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!("csms.py {} not reaped within {REAP:?}", child.id());
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// The next text message, as a frame answering `id`; fails after [`DEADLINE`].
async fn answer(connection: &mut Connection, id: &MessageId) -> Value {
    let text = tokio::time::timeout(DEADLINE, connection.recv())
        .await
        .expect("the CSMS answers in time")
        .expect("the connection stays open");
    match Frame::parse(&text).expect("a well-formed frame") {
        Frame::CallResult(result) if &result.id == id => result.payload,
        other => panic!("expected the CALLRESULT of {id}, got {other:?}"),
    }
}

fn boot_notification() -> BootNotificationRequest {
    BootNotificationRequest {
        charge_point_vendor: CiString::new("ringhub").expect("fits"),
        charge_point_model: CiString::new("DC-360").expect("fits"),
        charge_point_serial_number: Some(CiString::new("cab-a-1").expect("fits")),
        charge_box_serial_number: None,
        firmware_version: Some(CiString::new(env!("CARGO_PKG_VERSION")).expect("fits")),
        iccid: None,
        imsi: None,
        meter_type: None,
        meter_serial_number: None,
    }
}

/// Sends a BootNotification and checks the CSMS accepted it.
async fn boot(connection: &mut Connection, id: &str) {
    let id = MessageId::new(id).expect("a short id");
    connection
        .send(&boot_notification().to_call(id.clone()))
        .await
        .expect("send");
    let payload = answer(connection, &id).await;
    let boot = BootNotificationRequest::decode_response(&payload).expect("a valid .conf");
    assert_eq!(boot.status, RegistrationStatus::Accepted);
    assert_eq!(boot.interval, 300);
}

fn basic_auth(csms: &Csms, password: &str) -> TransportConfig {
    let mut config = TransportConfig::new(csms.url(), "CP-1");
    config.security = SecurityProfile::BasicAuth {
        password: password.into(),
    };
    config
}

#[tokio::test]
async fn boot_and_heartbeat_reach_the_csms_schema_valid() {
    let mut csms = Csms::start(&["--password", "s3cret"]);
    let mut connection = Connection::connect(&basic_auth(&csms, "s3cret"))
        .await
        .expect("connect to csms.py");
    let connected = csms.wait_for("connected", |v| v["event"] == "connected");
    assert_eq!(connected["cp"], "CP-1");
    assert_eq!(connected["subprotocol"], "ocpp1.6");

    boot(&mut connection, "boot-1").await;

    let heartbeat_id = MessageId::new("heartbeat-1").unwrap();
    connection
        .send(&HeartbeatRequest {}.to_call(heartbeat_id.clone()))
        .await
        .unwrap();
    let payload = answer(&mut connection, &heartbeat_id).await;
    HeartbeatRequest::decode_response(&payload).expect("a valid .conf");

    let boot = csms.received_call("boot-1");
    assert_eq!(boot["action"], "BootNotification");
    assert_eq!(boot["valid"], true, "{boot}");
    assert_eq!(boot["payload"]["chargePointVendor"], "ringhub");
    let heartbeat = csms.received_call("heartbeat-1");
    assert_eq!(heartbeat["action"], "Heartbeat");
    assert_eq!(heartbeat["valid"], true, "{heartbeat}");
    assert!(heartbeat["t"].as_f64() >= boot["t"].as_f64());

    connection.close().await.expect("a clean close");
    let closed = csms.wait_for("disconnected", |v| v["event"] == "disconnected");
    assert_eq!(closed["cp"], "CP-1");
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_http_401() {
    let csms = Csms::start(&["--password", "s3cret"]);
    let config = basic_auth(&csms, "guess");
    let error = Connection::connect(&config).await.unwrap_err();
    assert!(
        matches!(error, TransportError::HttpRefused { status: 401, .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&config.url()), "{error}");
}

/// How [`tiny_server`] answers one upgrade.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Upgrade, selecting no subprotocol.
    NoSubprotocol,
    /// Upgrade, selecting ocpp1.6.
    Ocpp16,
    /// Refuse with this HTTP status.
    Refuse(StatusCode),
}

impl Callback for Answer {
    fn on_request(self, _: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
        match self {
            Self::NoSubprotocol => Ok(response),
            Self::Ocpp16 => {
                response.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static("ocpp1.6"),
                );
                Ok(response)
            }
            Self::Refuse(status) => {
                let mut refusal = ErrorResponse::new(None);
                *refusal.status_mut() = status;
                Err(refusal)
            }
        }
    }
}

/// A WebSocket server on a free port that answers the upgrade of attempt 0, 1, … with
/// `answer(attempt)`. Returns its endpoint.
async fn tiny_server(answer: impl Fn(usize) -> Answer + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let url = format!("ws://{}/ocpp", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        let mut attempt = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let callback = answer(attempt);
            attempt += 1;
            tokio::spawn(async move {
                // The client hangs up on a refused upgrade; that failure is expected.
                if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_server_without_the_ocpp16_subprotocol_is_refused() {
    let url = tiny_server(|_| Answer::NoSubprotocol).await;
    let config = TransportConfig::new(url, "CP-1");
    let error = Connection::connect(&config).await.unwrap_err();
    assert!(
        matches!(error, TransportError::SubprotocolRefused { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains(&config.url()), "{text}");
    assert!(text.contains("ocpp1.6"), "{text}");
}

#[tokio::test]
async fn the_reconnector_retries_until_the_csms_accepts() {
    // Refuses the first two upgrades with 503, then accepts with ocpp1.6.
    let url = tiny_server(|attempt| {
        if attempt < 2 {
            Answer::Refuse(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            Answer::Ocpp16
        }
    })
    .await;
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(8),
    };
    let mut reconnector = Reconnector::new(TransportConfig::new(&url, "CP-1"), policy);
    let connection = tokio::time::timeout(DEADLINE, reconnector.connect())
        .await
        .expect("connected in time")
        .expect("no config error");
    assert_eq!(connection.url(), format!("{url}/CP-1"));

    // A config error is returned at once instead of being retried.
    let mut broken = Reconnector::new(TransportConfig::new("http://csms", "CP-1"), policy);
    let error = tokio::time::timeout(DEADLINE, broken.connect())
        .await
        .expect("no retry loop")
        .unwrap_err();
    assert!(error.is_config_error(), "{error}");
}

/// A CSMS that accepts one connection with ocpp1.6 and then goes silent: it never reads
/// again, so it neither takes frames nor answers a close. Returns its endpoint.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let url = format!("ws://{}/ocpp", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let ws = tokio_tungstenite::accept_hdr_async(stream, Answer::Ocpp16)
            .await
            .expect("upgrade");
        // Held open and never polled until the test's runtime ends.
        std::future::pending::<()>().await;
        drop(ws);
    });
    url
}

#[tokio::test]
async fn close_gives_up_on_a_csms_that_never_answers() {
    let url = silent_server().await;
    let connection = Connection::connect(&TransportConfig::new(url, "CP-1"))
        .await
        .expect("connect");
    let started = Instant::now();
    let error = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(2), connection.close())
        .await
        .expect("close returns within its limit")
        .unwrap_err();
    assert!(
        started.elapsed() >= CLOSE_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, TransportError::Closed { .. }), "{error}");
    assert!(
        error.to_string().contains("did not answer the close"),
        "{error}"
    );
}

#[tokio::test]
async fn a_send_the_csms_never_takes_fails_as_a_lost_connection() {
    let url = silent_server().await;
    let mut config = TransportConfig::new(url, "CP-1");
    config.send_timeout = Duration::from_millis(200);
    let mut connection = Connection::connect(&config).await.expect("connect");
    // 1 MB frames fill the socket buffers of both ends within a few dozen sends.
    let frame = Frame::Call(Call {
        id: MessageId::new("big").expect("a short id"),
        action: "DataTransfer".into(),
        payload: serde_json::json!({ "vendorId": "ringhub", "data": "x".repeat(1 << 20) }),
    });
    let error = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Err(error) = connection.send(&frame).await {
                return error;
            }
        }
    })
    .await
    .expect("a send fails within its limit");
    assert!(matches!(error, TransportError::Closed { .. }), "{error}");
    assert!(!error.is_config_error());
    assert!(
        error.to_string().contains("took no frame within 200ms"),
        "{error}"
    );
}

/// A test CA and a certificate for 127.0.0.1 signed by it, as PEM files in a fresh
/// directory that is removed on drop.
struct TestPki {
    /// Holds ca.pem, server.pem and server.key.
    dir: PathBuf,
}

impl TestPki {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ringhub-ocpp-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ringhub test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.join(name), pem).expect("write a PEM file");
        };
        write("ca.pem", ca.pem());
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn profile_2_runs_over_wss_trusting_the_configured_ca() {
    let pki = TestPki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let mut csms = Csms::start(&["--password", "s3cret", "--tls", &cert, &key]);
    let mut config = TransportConfig::new(csms.tls_url(), "CP-1");
    config.security = SecurityProfile::TlsBasicAuth {
        password: "s3cret".into(),
    };

    // The Mozilla roots do not know the test CA.
    let error = Connection::connect(&config).await.unwrap_err();
    assert!(matches!(error, TransportError::Connect { .. }), "{error}");
    assert!(!error.is_config_error());
    let text = error.to_string();
    assert!(text.contains(&config.url()), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");

    config.ca_file = Some(pki.dir.join("ca.pem"));
    let mut connection = Connection::connect(&config)
        .await
        .expect("connect over wss://");
    boot(&mut connection, "boot-tls").await;
    let logged = csms.received_call("boot-tls");
    assert_eq!(logged["valid"], true, "{logged}");
}
