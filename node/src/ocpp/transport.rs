//! The OCPP-J 1.6 WebSocket client: one connection per charge point identity toward the
//! CSMS, carrying the text frames of [`super::rpc`].
//!
//! ```text
//! TransportConfig ──Connection::connect──► Connection ──send(&Frame) / recv() → text──►
//!        │                                     ▲
//!        └──Reconnector::connect── retries ────┘  capped, jittered backoff
//!                                                 (crate::can::backoff::Backoff)
//! ```
//!
//! - The URL is `<csms_url>/<identity>`, the identity percent-encoded (OCPP-J 1.6 §3.1.1),
//!   over `ws://` or `wss://`.
//! - The client asks for the subprotocol `ocpp1.6` and only that (OCPP-J 1.6 §3.1.2); a
//!   server that does not select it is refused ([`TransportError::SubprotocolRefused`]).
//! - Security profiles (OCPP 1.6 Security Whitepaper, edition 3, §2): profile 1 sends
//!   HTTP Basic auth `identity:password` (RFC 7617), profile 2 the same over TLS only.
//!   TLS is rustls with the ring provider; the server is checked against the CAs of a
//!   PEM file when one is configured (an operator's private PKI), else against the Mozilla
//!   roots of `webpki-roots`.
//! - Pings from the CSMS are answered by tungstenite itself, while [`Connection::recv`]
//!   is being polled.
//! - Nothing waits on a silent CSMS forever: a send that the socket does not take within
//!   [`TransportConfig::send_timeout`] fails as a lost connection, and
//!   [`Connection::close`] gives up on the CSMS's close frame after [`CLOSE_TIMEOUT`]
//!   (RFC 6455 §7.1.1 lets the client drop the TCP connection when the server does not
//!   close it), so a stopping node is never held by its CSMS.
//!
//! The connection carries text only: parsing a frame, answering a malformed one with a
//! CALLERROR and matching a CALLRESULT to its CALL belong to the layer above.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt as _, StreamExt as _};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::rpc::Frame;
use crate::can::ReconnectPolicy;
use crate::can::backoff::{Backoff, random_u64};

/// The WebSocket subprotocol of OCPP 1.6J (OCPP-J 1.6 §3.1.2).
pub const SUBPROTOCOL: &str = "ocpp1.6";

/// How long [`Connection::close`] waits for the CSMS to take our close frame and answer
/// with its own before dropping the connection: a node stopping on SIGTERM closes every
/// connection, and a CSMS that went silent must not hold it (and its clean-shutdown mark)
/// forever. A live CSMS answers in one round trip; 2 s covers a slow cellular link.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The default [`TransportConfig::send_timeout`]: OCPP-J frames are a few kB, so a socket
/// that takes none of one for 10 s has a peer that stopped reading.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How a charge point proves who it is (OCPP 1.6 Security Whitepaper §2).
#[derive(Clone, PartialEq, Eq)]
pub enum SecurityProfile {
    /// No credentials: for labs and tests, not for an operator's CSMS.
    Unsecured,
    /// Profile 1: HTTP Basic auth `identity:password`, over `ws://` or `wss://`.
    BasicAuth {
        /// The AuthorizationKey the CSMS holds for this identity.
        password: String,
    },
    /// Profile 2: HTTP Basic auth over TLS; a `ws://` URL is refused.
    TlsBasicAuth {
        /// The AuthorizationKey the CSMS holds for this identity.
        password: String,
    },
}

impl SecurityProfile {
    /// The Basic auth password, if the profile sends one.
    fn password(&self) -> Option<&str> {
        match self {
            Self::Unsecured => None,
            Self::BasicAuth { password } | Self::TlsBasicAuth { password } => Some(password),
        }
    }
}

impl fmt::Debug for SecurityProfile {
    /// Names the profile, never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unsecured => "Unsecured",
            Self::BasicAuth { .. } => "BasicAuth { password: <redacted> }",
            Self::TlsBasicAuth { .. } => "TlsBasicAuth { password: <redacted> }",
        })
    }
}

/// Where and how one charge point connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// The CSMS endpoint, `ws://` or `wss://`, without the identity.
    pub csms_url: String,
    /// The charge point identity, appended to the URL as its last path segment.
    pub identity: String,
    /// The credentials sent during the handshake.
    pub security: SecurityProfile,
    /// A PEM file of the CAs trusted for `wss://`, in place of the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// How long the TCP, TLS and WebSocket handshakes may take together.
    pub connect_timeout: Duration,
    /// How long one [`Connection::send`] may wait for the socket to take its frame before
    /// the connection counts as lost.
    pub send_timeout: Duration,
}

impl TransportConfig {
    /// `csms_url` and `identity` without credentials or custom CA, with a 10 s connect
    /// timeout and a [`SEND_TIMEOUT`] send timeout.
    pub fn new(csms_url: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            csms_url: csms_url.into(),
            identity: identity.into(),
            security: SecurityProfile::Unsecured,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            send_timeout: SEND_TIMEOUT,
        }
    }

    /// The URL connected to: `<csms_url>/<identity>`, the identity percent-encoded.
    pub fn url(&self) -> String {
        format!(
            "{}/{}",
            self.csms_url.trim_end_matches('/'),
            percent_encode(&self.identity)
        )
    }
}

/// Why a connection could not be made or broke, by who is at fault. Every variant names
/// the URL.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Config: the URL is not a `ws://` or `wss://` URL with a host.
    #[error("CSMS URL {url}: {reason}")]
    BadUrl {
        /// The URL as built from the config.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Config: security profile 2 with a `ws://` URL.
    #[error("CSMS URL {url}: security profile 2 requires wss://")]
    TlsRequired {
        /// The URL as built from the config.
        url: String,
    },
    /// Config: Basic auth cannot carry an identity containing ':' (RFC 7617 §2).
    #[error(
        "CSMS URL {url}: identity {identity:?} contains ':', which HTTP Basic auth cannot carry"
    )]
    IdentityNotBasicAuth {
        /// The URL as built from the config.
        url: String,
        /// The offending identity.
        identity: String,
    },
    /// Config: the CA file could not be read or holds no usable certificate.
    #[error("CSMS URL {url}: CA file {}: {reason}", path.display())]
    CaFile {
        /// The URL the CA was for.
        url: String,
        /// The configured PEM file.
        path: PathBuf,
        /// What went wrong reading it.
        reason: String,
    },
    /// Transport: the handshakes did not finish in time.
    #[error("connecting to {url}: no answer within {after:?}")]
    ConnectTimeout {
        /// The URL connected to.
        url: String,
        /// The configured connect timeout.
        after: Duration,
    },
    /// Transport: TCP, TLS or the WebSocket handshake failed.
    #[error("connecting to {url}: {source}")]
    Connect {
        /// The URL connected to.
        url: String,
        /// The failure, as tungstenite reports it.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// Peer: the CSMS answered the upgrade with an HTTP error (401: bad credentials).
    #[error("connecting to {url}: the CSMS refused the WebSocket upgrade with HTTP {status}")]
    HttpRefused {
        /// The URL connected to.
        url: String,
        /// The HTTP status of the answer.
        status: u16,
    },
    /// Peer: the CSMS did not select the subprotocol ocpp1.6.
    #[error("connecting to {url}: the CSMS did not select subprotocol {SUBPROTOCOL} ({reason})")]
    SubprotocolRefused {
        /// The URL connected to.
        url: String,
        /// What the CSMS answered instead, as tungstenite words it.
        reason: String,
    },
    /// Peer: the CSMS sent a binary message; OCPP-J uses text only. The connection stays
    /// open.
    #[error("{url}: the CSMS sent a binary message of {len} bytes; OCPP-J uses text")]
    BinaryMessage {
        /// The URL of the connection.
        url: String,
        /// Its length.
        len: usize,
    },
    /// Peer or transport: the connection is closed.
    #[error("{url}: connection closed{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Closed {
        /// The URL of the connection.
        url: String,
        /// The close frame's code and reason, or the failure that ended it.
        reason: Option<String>,
    },
}

impl TransportError {
    /// Whether the config is at fault, so that retrying cannot help.
    pub fn is_config_error(&self) -> bool {
        match self {
            Self::BadUrl { .. }
            | Self::TlsRequired { .. }
            | Self::IdentityNotBasicAuth { .. }
            | Self::CaFile { .. } => true,
            Self::ConnectTimeout { .. }
            | Self::Connect { .. }
            | Self::HttpRefused { .. }
            | Self::SubprotocolRefused { .. }
            | Self::BinaryMessage { .. }
            | Self::Closed { .. } => false,
        }
    }
}

/// One open OCPP-J WebSocket.
#[derive(Debug)]
pub struct Connection {
    /// The URL connected to, for errors and logs.
    url: String,
    /// The WebSocket, over TCP or TLS.
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The limit of one send, from [`TransportConfig::send_timeout`].
    send_timeout: Duration,
}

impl Connection {
    /// Opens the WebSocket of `config`: TCP (Nagle off, every frame is a latency), TLS for
    /// `wss://`, then the upgrade asking for [`SUBPROTOCOL`] with the profile's credentials.
    pub async fn connect(config: &TransportConfig) -> Result<Self, TransportError> {
        let url = config.url();
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| bad_url(&url, e.to_string()))?;
        let tls = match request.uri().scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => return Err(bad_url(&url, "the scheme is not ws:// or wss://".into())),
        };
        if request
            .uri()
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
        {
            return Err(bad_url(
                &url,
                "credentials belong in the security profile, not the URL".into(),
            ));
        }
        if matches!(config.security, SecurityProfile::TlsBasicAuth { .. }) && !tls {
            return Err(TransportError::TlsRequired { url });
        }
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        if let Some(password) = config.security.password() {
            if config.identity.contains(':') {
                return Err(TransportError::IdentityNotBasicAuth {
                    url,
                    identity: config.identity.clone(),
                });
            }
            let credentials = BASE64.encode(format!("{}:{password}", config.identity));
            let value = HeaderValue::from_str(&format!("Basic {credentials}"))
                .map_err(|e| bad_url(&url, e.to_string()))?;
            headers.insert("Authorization", value);
        }
        let connector = if tls {
            Connector::Rustls(tls_config(&url, config.ca_file.as_deref())?)
        } else {
            Connector::Plain
        };
        let handshake =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
        let (stream, _response) = tokio::time::timeout(config.connect_timeout, handshake)
            .await
            .map_err(|_| TransportError::ConnectTimeout {
                url: url.clone(),
                after: config.connect_timeout,
            })?
            .map_err(|e| handshake_error(&url, e))?;
        Ok(Self {
            url,
            stream,
            send_timeout: config.send_timeout,
        })
    }

    /// The URL connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one frame as a text message. A frame the socket has not taken within
    /// [`TransportConfig::send_timeout`] (the CSMS stopped reading) fails as
    /// [`TransportError::Closed`]; the connection is then unusable, as after any failed
    /// send. Not cancel-safe: a dropped send may have written part of the frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        match tokio::time::timeout(
            self.send_timeout,
            self.stream.send(Message::text(frame.encode())),
        )
        .await
        {
            Ok(sent) => sent.map_err(|e| closed(&self.url, &e)),
            Err(_) => Err(self.closed_by_peer(Some(format!(
                "the CSMS took no frame within {:?}",
                self.send_timeout
            )))),
        }
    }

    /// The next text message. Pings are answered and pongs skipped on the way. Cancel-safe:
    /// dropping the future loses no message.
    pub async fn recv(&mut self) -> Result<String, TransportError> {
        loop {
            let message = match self.stream.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(closed(&self.url, &e)),
                None => return Err(self.closed_by_peer(None)),
            };
            match message {
                Message::Text(text) => return Ok(text.as_str().to_owned()),
                Message::Binary(data) => {
                    return Err(TransportError::BinaryMessage {
                        url: self.url.clone(),
                        len: data.len(),
                    });
                }
                Message::Close(frame) => {
                    return Err(
                        self.closed_by_peer(frame.map(|f| format!("{} {}", f.code, f.reason)))
                    );
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Closes the WebSocket with a Normal Closure and waits up to [`CLOSE_TIMEOUT`] for
    /// the CSMS's answer; then the connection is dropped whatever the CSMS did. A CSMS that
    /// did not answer in time is a [`TransportError::Closed`] saying so.
    pub async fn close(mut self) -> Result<(), TransportError> {
        let handshake = async {
            self.stream
                .close(None)
                .await
                .map_err(|e| closed(&self.url, &e))?;
            // Drain until the CSMS's close frame ends the stream.
            while let Some(Ok(_)) = self.stream.next().await {}
            Ok(())
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, handshake).await {
            Ok(result) => result,
            Err(_) => Err(self.closed_by_peer(Some(format!(
                "the CSMS did not answer the close within {CLOSE_TIMEOUT:?}"
            )))),
        }
    }

    /// A [`TransportError::Closed`] for this connection.
    fn closed_by_peer(&self, reason: Option<String>) -> TransportError {
        TransportError::Closed {
            url: self.url.clone(),
            reason,
        }
    }
}

/// Connects one identity, retrying failures with capped, jittered exponential backoff.
/// The first attempt goes out at once; every later one (after a failure or a dropped
/// connection) waits out the next delay, until [`Reconnector::reset`] says the link
/// worked.
#[derive(Debug)]
pub struct Reconnector {
    /// Where to connect.
    config: TransportConfig,
    /// The delay schedule.
    backoff: Backoff,
    /// Whether an attempt was made already, so the next one waits.
    attempted: bool,
}

impl Reconnector {
    /// A reconnector for `config`, its delays bounded by `policy`.
    pub fn new(config: TransportConfig, policy: ReconnectPolicy) -> Self {
        Self {
            config,
            backoff: Backoff::new(policy),
            attempted: false,
        }
    }

    /// The config connected with.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Connects, retrying until it succeeds. Fails only with an error of the config
    /// ([`TransportError::is_config_error`]), which no retry can cure; the others are
    /// logged and retried.
    pub async fn connect(&mut self) -> Result<Connection, TransportError> {
        loop {
            if self.attempted {
                tokio::time::sleep(self.backoff.next_delay(random_u64())).await;
            }
            self.attempted = true;
            match Connection::connect(&self.config).await {
                Ok(connection) => return Ok(connection),
                Err(e) if e.is_config_error() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "CSMS connection failed; retrying"),
            }
        }
    }

    /// The connection carried traffic (the CSMS answered a CALL): the next reconnect
    /// starts the schedule over from its shortest delay.
    pub fn reset(&mut self) {
        self.backoff.reset();
    }
}

/// The rustls client config for `wss://`: ring, TLS 1.2 and 1.3, the CAs of `ca_file` or
/// the Mozilla roots, no client certificate.
fn tls_config(url: &str, ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TransportError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_error = |reason: String| TransportError::CaFile {
                url: url.to_owned(),
                path: path.to_owned(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
            for cert in certs {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no CERTIFICATE block".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_url(url, format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Sorts a failed handshake by who is at fault.
fn handshake_error(url: &str, error: tungstenite::Error) -> TransportError {
    let url = url.to_owned();
    match error {
        tungstenite::Error::Http(response) => TransportError::HttpRefused {
            url,
            status: response.status().as_u16(),
        },
        tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(e)) => {
            TransportError::SubprotocolRefused {
                url,
                reason: e.to_string(),
            }
        }
        tungstenite::Error::Url(e) => bad_url(&url, e.to_string()),
        other => TransportError::Connect {
            url,
            source: Box::new(other),
        },
    }
}

/// A [`TransportError::BadUrl`].
fn bad_url(url: &str, reason: String) -> TransportError {
    TransportError::BadUrl {
        url: url.to_owned(),
        reason,
    }
}

/// A [`TransportError::Closed`] for a failed read or write on an open connection.
fn closed(url: &str, error: &tungstenite::Error) -> TransportError {
    let reason = match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => None,
        other => Some(other.to_string()),
    };
    TransportError::Closed {
        url: url.to_owned(),
        reason,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so that an identity is
/// one path segment whatever it holds.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> TransportConfig {
        TransportConfig::new(url, "CP-1")
    }

    #[test]
    fn url_appends_the_percent_encoded_identity() {
        assert_eq!(
            config("ws://csms:9000/ocpp").url(),
            "ws://csms:9000/ocpp/CP-1"
        );
        assert_eq!(config("ws://csms/ocpp/").url(), "ws://csms/ocpp/CP-1");
        let odd = TransportConfig::new("wss://csms", "hub 1/gun#2é");
        assert_eq!(odd.url(), "wss://csms/hub%201%2Fgun%232%C3%A9");
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let profile = SecurityProfile::TlsBasicAuth {
            password: "s3cret".into(),
        };
        let text = format!("{profile:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("TlsBasicAuth"));
    }

    async fn connect_error(config: TransportConfig) -> TransportError {
        match Connection::connect(&config).await {
            Ok(_) => panic!("{} connected", config.url()),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn config_errors_are_caught_before_connecting() {
        let e = connect_error(config("http://csms")).await;
        assert!(matches!(e, TransportError::BadUrl { .. }), "{e}");
        assert!(e.is_config_error());
        assert!(e.to_string().contains("http://csms/CP-1"), "{e}");

        let e = connect_error(config("ws://user:pw@csms")).await;
        assert!(matches!(e, TransportError::BadUrl { .. }), "{e}");

        let mut profile2 = config("ws://csms");
        profile2.security = SecurityProfile::TlsBasicAuth {
            password: "pw".into(),
        };
        let e = connect_error(profile2).await;
        assert!(matches!(e, TransportError::TlsRequired { .. }), "{e}");

        let mut colon = TransportConfig::new("ws://csms", "a:b");
        colon.security = SecurityProfile::BasicAuth {
            password: "pw".into(),
        };
        let e = connect_error(colon).await;
        assert!(
            matches!(e, TransportError::IdentityNotBasicAuth { .. }),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_bad_ca_file_is_a_config_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("ringhub-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        for path in [dir.join("missing.pem"), empty] {
            let mut wss = config("wss://csms");
            wss.ca_file = Some(path.clone());
            let e = connect_error(wss).await;
            assert!(matches!(e, TransportError::CaFile { .. }), "{e}");
            assert!(e.is_config_error());
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_refused_tcp_connection_names_the_url() {
        // Bind then drop a listener: nothing listens on that port any more.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let e = connect_error(config(&format!("ws://127.0.0.1:{port}"))).await;
        assert!(matches!(e, TransportError::Connect { .. }), "{e}");
        assert!(!e.is_config_error());
        assert!(
            e.to_string()
                .contains(&format!("ws://127.0.0.1:{port}/CP-1")),
            "{e}"
        );
    }
}
