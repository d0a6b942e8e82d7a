//! A CAN bus served by socketcand over TCP: how the node reaches the simulator's cabinet
//! buses, and a CAN interface on another machine. The wire format is the pure codec in
//! `ringhub_proto::socketcand`; this module only moves its bytes.
//!
//! [`SocketcandBus::connect`] runs the raw-mode handshake (`< hi >`, `< open BUS >`,
//! `< ok >`, `< rawmode >`, `< ok >`) under one deadline, then [`CanBus::recv`] yields
//! `< frame … >` messages and [`CanBus::send`] writes `< send … >`. After the handshake a
//! malformed message, a server `< error … >` and a message no server should send are
//! returned as errors the bus survives ([`Recovery::Skip`](super::Recovery::Skip)); only a
//! closed or broken connection ends it.

use std::time::Duration;

use ringhub_proto::can::{CanFrame, CanId};
use ringhub_proto::socketcand::{BusName, Decoder, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CanBus, CanError, PeerError, ReceivedFrame, SocketcandAddr, TransportError};

/// How long connecting and the handshake may take together. A server that accepts the
/// connection but never greets is treated as down.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes asked of the socket per read: a few dozen frames.
const READ_CHUNK: usize = 4096;

/// A connected socketcand bus in raw mode.
#[derive(Debug)]
pub struct SocketcandBus {
    /// The connection to the server.
    stream: TcpStream,
    /// Turns received bytes into messages; holds a partial message between reads.
    decoder: Decoder,
    /// Scratch space for socket reads.
    read_buf: Box<[u8; READ_CHUNK]>,
    /// The bus URI, for errors.
    uri: String,
    /// `HOST:PORT`, for errors.
    server: String,
}

impl SocketcandBus {
    /// Connects to `addr`'s server and opens its bus in raw mode.
    pub async fn connect(addr: &SocketcandAddr) -> Result<Self, CanError> {
        let uri = format!("socketcand:{addr}");
        let attempt = async {
            let mut bus = Self::connect_tcp(addr, &uri).await?;
            bus.handshake(&addr.bus).await?;
            Ok(bus)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_elapsed| {
                let timeout_ms = HANDSHAKE_TIMEOUT.as_millis();
                let source = TransportError::HandshakeTimeout {
                    address: addr.server(),
                    timeout_ms,
                };
                Err(CanError::Transport {
                    bus: uri.clone(),
                    source,
                })
            })
    }

    async fn connect_tcp(addr: &SocketcandAddr, uri: &str) -> Result<Self, CanError> {
        let server = addr.server();
        let failed = |source| CanError::Transport {
            bus: uri.to_owned(),
            source,
        };
        let stream = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(|source| {
                failed(TransportError::Connect {
                    address: server.clone(),
                    source,
                })
            })?;
        // Frames are small and latency matters more than packet count.
        stream.set_nodelay(true).map_err(|source| {
            failed(TransportError::Io {
                action: "set TCP_NODELAY",
                address: server.clone(),
                source,
            })
        })?;
        Ok(Self {
            stream,
            decoder: Decoder::new(),
            read_buf: Box::new([0; READ_CHUNK]),
            uri: uri.to_owned(),
            server,
        })
    }

    /// `< hi >`, `< open BUS >`, `< ok >`, `< rawmode >`, `< ok >`.
    async fn handshake(&mut self, bus: &BusName) -> Result<(), CanError> {
        self.expect(&Message::Hi, "< hi >").await?;
        self.write(&Message::Open(bus.clone())).await?;
        let expected = "< ok > or < error … >";
        match self.handshake_reply(expected).await? {
            Message::Ok => {}
            Message::Error(text) => {
                let address = self.server.clone();
                return Err(self.peer_error(PeerError::Refused {
                    address,
                    bus_name: bus.to_string(),
                    text,
                }));
            }
            other => return Err(self.handshake_error(expected, other.to_string())),
        }
        self.write(&Message::RawMode).await?;
        self.expect(&Message::Ok, "< ok >").await
    }

    /// Reads one handshake message and checks it is `expected`.
    async fn expect(&mut self, expected: &Message, spelled: &'static str) -> Result<(), CanError> {
        let message = self.handshake_reply(spelled).await?;
        if &message == expected {
            Ok(())
        } else {
            Err(self.handshake_error(spelled, message.to_string()))
        }
    }

    /// Reads one handshake message. Input that does not decode fails the handshake:
    /// unlike a bad frame later on, there is nothing to skip to.
    async fn handshake_reply(&mut self, expected: &'static str) -> Result<Message, CanError> {
        match self.next_message().await {
            Err(CanError::Peer {
                source: PeerError::MalformedMessage { source, .. },
                ..
            }) => Err(self.handshake_error(expected, source.to_string())),
            other => other,
        }
    }

    fn handshake_error(&self, expected: &'static str, got: String) -> CanError {
        self.peer_error(PeerError::Handshake {
            address: self.server.clone(),
            expected,
            got,
        })
    }

    /// The next message, reading as needed. Cancel-safe: received bytes are kept in the
    /// decoder, and a read either completes or reads nothing.
    async fn next_message(&mut self) -> Result<Message, CanError> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(source) => {
                    let address = self.server.clone();
                    return Err(self.peer_error(PeerError::MalformedMessage { address, source }));
                }
            }
            let read = self.stream.read(&mut self.read_buf[..]).await;
            match read {
                Ok(0) => {
                    return Err(self.transport_error(TransportError::Closed {
                        address: self.server.clone(),
                    }));
                }
                Ok(len) => self.decoder.feed(&self.read_buf[..len]),
                Err(source) => {
                    let address = self.server.clone();
                    return Err(self.transport_error(TransportError::Io {
                        action: "read",
                        address,
                        source,
                    }));
                }
            }
        }
    }

    async fn write(&mut self, message: &Message) -> Result<(), CanError> {
        let written = self.stream.write_all(&message.encode()).await;
        written.map_err(|source| {
            let address = self.server.clone();
            self.transport_error(TransportError::Io {
                action: "write",
                address,
                source,
            })
        })
    }

    fn transport_error(&self, source: TransportError) -> CanError {
        CanError::Transport {
            bus: self.uri.clone(),
            source,
        }
    }

    fn peer_error(&self, source: PeerError) -> CanError {
        CanError::Peer {
            bus: self.uri.clone(),
            source,
        }
    }
}

impl CanBus for SocketcandBus {
    async fn recv(&mut self) -> Result<ReceivedFrame, CanError> {
        let address = self.server.clone();
        match self.next_message().await? {
            Message::Frame {
                frame,
                timestamp_us,
            } => Ok(ReceivedFrame {
                frame,
                timestamp_us,
            }),
            Message::Error(text) => Err(self.peer_error(PeerError::ServerError { address, text })),
            other => Err(self.peer_error(PeerError::Unexpected {
                address,
                message: other.to_string(),
            })),
        }
    }

    async fn send(&mut self, frame: CanFrame) -> Result<(), CanError> {
        let in_range = match frame.id() {
            CanId::Standard(id) => CanId::standard(id).is_some(),
            CanId::Extended(id) => CanId::extended(id).is_some(),
        };
        if !in_range {
            return Err(CanError::InvalidFrame {
                bus: self.uri.clone(),
                frame,
            });
        }
        self.write(&Message::Send(frame)).await
    }
}
