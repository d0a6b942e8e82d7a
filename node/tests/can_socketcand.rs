//! The socketcand client against a socketcand server over real TCP on 127.0.0.1. The
//! server is written here, on the same pure codec the simulator serves with, and each
//! test scripts it step by step, so every exchange is explicit and nothing waits on a
//! clock: each step has a deadline instead.

use std::future::Future;
use std::time::Duration;

use ringhub_node::can::{
    BusUri, CanBus, CanError, ErrorKind, ReceivedFrame, ReconnectPolicy, ReconnectingBus, Recovery,
    SocketcandAddr, SocketcandBus,
};
use ringhub_proto::can::{CanFrame, CanId};
use ringhub_proto::socketcand::{BusName, Decoder, ErrorText, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest any single step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// Reconnect quickly, so the tests spend no time in backoff.
const FAST: ReconnectPolicy = ReconnectPolicy {
    initial_delay: Duration::from_millis(10),
    max_delay: Duration::from_millis(50),
};

async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, step)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn frame(id: CanId, data: &[u8]) -> CanFrame {
    CanFrame::new(id, data).expect("at most 8 bytes")
}

/// A socketcand server on an ephemeral port.
struct Server {
    /// Accepts client connections.
    listener: TcpListener,
    /// Where it listens.
    port: u16,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("bound address").port();
        Self { listener, port }
    }

    fn addr(&self, bus: &str) -> SocketcandAddr {
        SocketcandAddr {
            host: "127.0.0.1".into(),
            port: self.port,
            bus: BusName::new(bus).expect("valid bus name"),
        }
    }

    fn uri(&self, bus: &str) -> BusUri {
        BusUri::Socketcand(self.addr(bus))
    }

    /// Accepts a client and greets it with `< hi >`.
    async fn accept(&self) -> Peer {
        let (stream, _) = self.listener.accept().await.expect("accept");
        let mut peer = Peer {
            stream,
            decoder: Decoder::new(),
        };
        peer.write(&Message::Hi).await;
        peer
    }

    /// Accepts a client and serves it `bus` in raw mode, checking what it asks for.
    async fn accept_bus(&self, bus: &str) -> Peer {
        let mut peer = self.accept().await;
        assert_eq!(
            peer.read().await,
            Message::Open(BusName::new(bus).expect("valid bus name"))
        );
        peer.write(&Message::Ok).await;
        assert_eq!(peer.read().await, Message::RawMode);
        peer.write(&Message::Ok).await;
        peer
    }

    /// Connects a client to `bus` while serving it: both ends, ready for frames.
    async fn connect_client(&self, bus: &str) -> (SocketcandBus, Peer) {
        let addr = self.addr(bus);
        let (client, peer) = tokio::join!(SocketcandBus::connect(&addr), self.accept_bus(bus));
        (client.expect("client connects"), peer)
    }

    /// Accepts a client, refuses whatever bus it opens, as socketcand does, and hangs up.
    async fn refuse(&self) {
        let mut peer = self.accept().await;
        assert!(matches!(peer.read().await, Message::Open(_)));
        peer.write(&Message::Error(
            ErrorText::new("could not open bus").expect("valid text"),
        ))
        .await;
    }
}

/// The server's end of one connection.
struct Peer {
    /// The connection.
    stream: TcpStream,
    /// Decodes what the client sends.
    decoder: Decoder,
}

impl Peer {
    async fn read(&mut self) -> Message {
        loop {
            if let Some(message) = self
                .decoder
                .next_message()
                .expect("client sent a malformed message")
            {
                return message;
            }
            let mut buf = [0; 512];
            let len = self.stream.read(&mut buf).await.expect("server read");
            assert_ne!(len, 0, "client closed the connection");
            self.decoder.feed(&buf[..len]);
        }
    }

    async fn write(&mut self, message: &Message) {
        self.write_raw(&message.encode()).await;
    }

    async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("server write");
    }

    async fn deliver(&mut self, frame: CanFrame, timestamp_us: u64) {
        self.write(&Message::Frame {
            frame,
            timestamp_us,
        })
        .await;
    }
}

#[tokio::test]
async fn handshake_then_frames_flow_both_ways_with_both_id_widths() {
    let server = Server::start().await;
    let (mut client, mut peer) = within("handshake", server.connect_client("cab-a")).await;

    let standard = frame(CanId::Standard(0x123), &[0xDE, 0xAD, 0xBE, 0xEF]);
    let extended = frame(CanId::Extended(0x1801_0003), &[0x01, 0x02]);
    let empty = frame(CanId::Standard(0x7FF), &[]);
    peer.deliver(standard, 1_700_000_000_000_042).await;
    peer.deliver(extended, 1_700_000_000_000_043).await;
    peer.deliver(empty, 1_700_000_000_000_044).await;
    assert_eq!(
        within("standard frame", client.recv()).await.unwrap(),
        ReceivedFrame {
            frame: standard,
            timestamp_us: 1_700_000_000_000_042
        }
    );
    assert_eq!(
        within("extended frame", client.recv()).await.unwrap(),
        ReceivedFrame {
            frame: extended,
            timestamp_us: 1_700_000_000_000_043
        }
    );
    assert_eq!(
        within("empty frame", client.recv()).await.unwrap().frame,
        empty
    );

    within("send standard", client.send(standard))
        .await
        .unwrap();
    within("send extended", client.send(extended))
        .await
        .unwrap();
    assert_eq!(
        within("server reads standard", peer.read())
            .await
            .to_string(),
        "< send 123 4 DE AD BE EF >"
    );
    assert_eq!(
        within("server reads extended", peer.read())
            .await
            .to_string(),
        "< send 18010003 2 01 02 >"
    );

    let out_of_range = frame(CanId::Standard(0x800), &[]);
    let err = within("send out of range", client.send(out_of_range))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidFrame);
}

#[tokio::test]
async fn client_survives_garbage_malformed_messages_and_server_errors() {
    let server = Server::start().await;
    let (mut client, mut peer) = within("handshake", server.connect_client("cab-a")).await;

    peer.write_raw(b"junk").await; // bytes outside any message
    peer.write_raw(b"< frame 12 1.000000 00 >").await; // 2-digit id: neither width
    peer.write_raw(b"< error bus-off >").await; // the server reports trouble
    peer.write_raw(b"< hi >").await; // a second greeting: not a frame
    peer.deliver(frame(CanId::Standard(0x100), &[7]), 3_000_000)
        .await;

    let garbage = within("garbage", client.recv()).await.unwrap_err();
    assert_eq!(garbage.kind(), ErrorKind::Malformed);
    assert!(garbage.to_string().contains("\"junk\""), "{garbage}");
    let malformed = within("malformed", client.recv()).await.unwrap_err();
    assert_eq!(
        (malformed.kind(), malformed.recovery()),
        (ErrorKind::Malformed, Recovery::Skip)
    );
    assert!(malformed.to_string().contains("\"12\""), "{malformed}");
    let server_error = within("server error", client.recv()).await.unwrap_err();
    assert_eq!(server_error.kind(), ErrorKind::ServerError);
    assert!(
        server_error.to_string().contains("bus-off"),
        "{server_error}"
    );
    let unexpected = within("unexpected", client.recv()).await.unwrap_err();
    assert_eq!(unexpected.kind(), ErrorKind::Unexpected);
    let received = within("frame after the bad input", client.recv())
        .await
        .unwrap();
    assert_eq!(received.frame, frame(CanId::Standard(0x100), &[7]));
}

#[tokio::test]
async fn malformed_message_is_skipped_and_counted_and_later_frames_arrive() {
    let server = Server::start().await;
    let mut bus = ReconnectingBus::new(server.uri("cab-a"), FAST);
    let (first, mut peer) = within("connect and first frame", async {
        tokio::join!(bus.recv(), async {
            let mut peer = server.accept_bus("cab-a").await;
            peer.write_raw(
                concat!(
                    "< frame 123 1.000000 01 >",      //       good
                    "< frame 123 oops 01 >",          //       bad timestamp
                    "< frame 00000456 2.000000 02 >", // good, extended
                )
                .as_bytes(),
            )
            .await;
            peer
        })
    })
    .await;
    assert_eq!(first.unwrap().frame, frame(CanId::Standard(0x123), &[1]));
    let second = within("frame after the malformed one", bus.recv())
        .await
        .unwrap();
    assert_eq!(second.frame, frame(CanId::Extended(0x456), &[2]));

    let stats = bus.stats();
    assert_eq!(stats.errors_of(ErrorKind::Malformed), 1);
    assert_eq!(stats.frames_received, 2);
    assert_eq!(stats.reconnects, 0);
    assert!(bus.is_open(), "a malformed message must not drop the link");

    peer.deliver(frame(CanId::Standard(0x124), &[]), 4_000_000)
        .await;
    assert_eq!(
        within("third frame", bus.recv()).await.unwrap().frame.id(),
        CanId::Standard(0x124)
    );
}

#[tokio::test]
async fn dropped_connection_is_reopened_and_frames_flow_again() {
    let server = Server::start().await;
    let mut bus = ReconnectingBus::new(server.uri("cab-a"), FAST);
    let before = frame(CanId::Standard(0x1A0), &[1]);
    let after = frame(CanId::Extended(0x1234_5678), &[2]);

    let (received, peer) = within("first connection", async {
        tokio::join!(bus.recv(), async {
            let mut peer = server.accept_bus("cab-a").await;
            peer.deliver(before, 1_000_000).await;
            peer
        })
    })
    .await;
    assert_eq!(received.unwrap().frame, before);
    drop(peer); // the server goes away

    let (received, mut peer) = within("second connection", async {
        tokio::join!(bus.recv(), async {
            let mut peer = server.accept_bus("cab-a").await;
            peer.deliver(after, 2_000_000).await;
            peer
        })
    })
    .await;
    assert_eq!(received.unwrap().frame, after);

    let command = frame(CanId::Standard(0x200), &[0xAA, 0x55]);
    within("send after reconnect", bus.send(command))
        .await
        .unwrap();
    assert_eq!(
        within("server reads the command", peer.read()).await,
        Message::Send(command)
    );

    let stats = bus.stats();
    assert_eq!(stats.reconnects, 1);
    assert_eq!(stats.errors_of(ErrorKind::Closed), 1);
    assert_eq!((stats.frames_received, stats.frames_sent), (2, 1));
}

#[tokio::test]
async fn unknown_bus_is_refused_with_the_servers_error() {
    let server = Server::start().await;
    let addr = server.addr("cab-z");
    let (client, ()) = within("refusal", async {
        tokio::join!(SocketcandBus::connect(&addr), server.refuse())
    })
    .await;
    let err = client.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused);
    let message = err.to_string();
    let server_address = format!("127.0.0.1:{}", server.port);
    for part in ["cab-z", "could not open bus", server_address.as_str()] {
        assert!(message.contains(part), "{message:?} should name {part:?}");
    }
    assert!(matches!(err, CanError::Peer { .. }));
}

#[tokio::test]
async fn refused_open_is_retried_until_the_bus_is_served() {
    let server = Server::start().await;
    let mut bus = ReconnectingBus::new(server.uri("cab-a"), FAST);
    let served = frame(CanId::Standard(0x321), &[3]);
    let (received, _peer) = within("third attempt", async {
        tokio::join!(bus.recv(), async {
            server.refuse().await;
            server.refuse().await;
            let mut peer = server.accept_bus("cab-a").await;
            peer.deliver(served, 1_000_000).await;
            peer
        })
    })
    .await;
    assert_eq!(received.unwrap().frame, served);
    assert_eq!(bus.stats().errors_of(ErrorKind::Refused), 2);
    assert_eq!(
        bus.stats().reconnects,
        0,
        "the first successful open is not a reconnect"
    );
}

#[tokio::test]
async fn a_server_that_does_not_greet_fails_the_handshake() {
    let server = Server::start().await;
    let addr = server.addr("cab-a");
    let (client, ()) = within("bad greeting", async {
        tokio::join!(SocketcandBus::connect(&addr), async {
            let (mut stream, _) = server.listener.accept().await.unwrap();
            stream.write_all(b"< ok >").await.unwrap();
        })
    })
    .await;
    let err = client.unwrap_err();
    assert_eq!(
        (err.kind(), err.recovery()),
        (ErrorKind::Handshake, Recovery::Reconnect)
    );
    assert!(err.to_string().contains("< hi >"), "{err}");
}
