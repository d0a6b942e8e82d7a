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
use ringhub_proto::socketcand::{Decoder, Message};
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
        let server = addr.server();
        let handshake = async {
            let stream = TcpStream::connect((addr.host.as_str(), addr.port))
                .await
                .map_err(|source| {
                    transport(
                        &uri,
                        TransportError::Connect {
                            address: server.clone(),
                            source,
                        },
                    )
                })?;
            // Frames are small and latency matters more than packet count.
            stream.set_nodelay(true).map_err(|source| {
                transport(
                    &uri,
                    TransportError::Io {
                        action: "set TCP_NODELAY",
                        address: server.clone(),
                        source,
                    },
                )
            })?;
            let mut bus = Self {
                stream,
                decoder: Decoder::new(),
                read_buf: Box::new([0; READ_CHUNK]),
                uri: uri.clone(),
                server: server.clone(),
            };
            bus.expect(&Message::Hi, "< hi >").await?;
            bus.write(&Message::Open(addr.bus.clone())).await?;
            match bus.handshake_reply("< ok > or < error … >").await? {
                Message::Ok => {}
                Message::Error(text) => {
                    let source = PeerError::Refused {
                        address: server.clone(),
                        bus_name: addr.bus.to_string(),
                        text,
                    };
                    return Err(CanError::Peer {
                        bus: uri.clone(),
                        source,
                    });
                }
                other => {
                    return Err(bus.handshake_error("< ok > or < error … >", other.to_string()));
                }
            }
            bus.write(&Message::RawMode).await?;
            bus.expect(&Message::Ok, "< ok >").await?;
            Ok(bus)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .unwrap_or_else(|_elapsed| {
                let source = TransportError::HandshakeTimeout {
                    address: server.clone(),
                    timeout_ms: HANDSHAKE_TIMEOUT.as_millis(),
                };
                Err(transport(&uri, source))
            })
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
        let source = PeerError::Handshake {
            address: self.server.clone(),
            expected,
            got,
        };
        CanError::Peer {
            bus: self.uri.clone(),
            source,
        }
    }

    /// The next message, reading as needed. Cancel-safe: received bytes are kept in the
    /// decoder, and a read either completes or reads nothing.
    async fn next_message(&mut self) -> Result<Message, CanError> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(source) => {
                    let source = PeerError::MalformedMessage {
                        address: self.server.clone(),
                        source,
                    };
                    return Err(CanError::Peer {
                        bus: self.uri.clone(),
                        source,
                    });
                }
            }
            let read = self.stream.read(&mut self.read_buf[..]).await;
            match read {
                Ok(0) => {
                    return Err(transport(
                        &self.uri,
                        TransportError::Closed {
                            address: self.server.clone(),
                        },
                    ));
                }
                Ok(len) => self.decoder.feed(&self.read_buf[..len]),
                Err(source) => {
                    let source = TransportError::Io {
                        action: "read",
                        address: self.server.clone(),
                        source,
                    };
                    return Err(transport(&self.uri, source));
                }
            }
        }
    }

    async fn write(&mut self, message: &Message) -> Result<(), CanError> {
        self.stream
            .write_all(&message.encode())
            .await
            .map_err(|source| {
                transport(
                    &self.uri,
                    TransportError::Io {
                        action: "write",
                        address: self.server.clone(),
                        source,
                    },
                )
            })
    }
}

impl CanBus for SocketcandBus {
    async fn recv(&mut self) -> Result<ReceivedFrame, CanError> {
        match self.next_message().await? {
            Message::Frame {
                frame,
                timestamp_us,
            } => Ok(ReceivedFrame {
                frame,
                timestamp_us,
            }),
            Message::Error(text) => {
                let source = PeerError::ServerError {
                    address: self.server.clone(),
                    text,
                };
                Err(CanError::Peer {
                    bus: self.uri.clone(),
                    source,
                })
            }
            other => {
                let source = PeerError::Unexpected {
                    address: self.server.clone(),
                    message: other.to_string(),
                };
                Err(CanError::Peer {
                    bus: self.uri.clone(),
                    source,
                })
            }
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

fn transport(uri: &str, source: TransportError) -> CanError {
    CanError::Transport {
        bus: uri.to_owned(),
        source,
    }
}
