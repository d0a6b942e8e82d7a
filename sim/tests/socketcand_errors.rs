//! The socketcand server refuses what it cannot serve and survives what it cannot parse:
//! an unknown bus is refused with the known buses named, and malformed input is answered
//! with `< error … >`, counted, and the connection goes on.

mod common;

use common::{bus_addr, start_demo, within};
use ringhub_node::can::SocketcandBus;
use ringhub_proto::socketcand::{BusName, Decoder, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A hand-driven client, to send what no real client would.
struct RawClient {
    /// The connection.
    stream: TcpStream,
    /// Decodes the server's messages.
    decoder: Decoder,
}

impl RawClient {
    async fn connect(sim: &ringhub_sim::server::Sim) -> Self {
        let stream = within("connect", TcpStream::connect(sim.socketcand_addr()))
            .await
            .expect("connects");
        let mut client = Self {
            stream,
            decoder: Decoder::new(),
        };
        assert_eq!(client.next().await, Message::Hi);
        client
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The server's next message other than a frame.
    async fn next_reply(&mut self) -> Message {
        loop {
            match self.next().await {
                Message::Frame { .. } => {}
                other => return other,
            }
        }
    }

    async fn next(&mut self) -> Message {
        within("a message from the server", async {
            loop {
                if let Some(message) = self.decoder.next_message().expect("server speaks well") {
                    return message;
                }
                let mut buf = [0; 4096];
                let len = self.stream.read(&mut buf).await.expect("read");
                assert_ne!(len, 0, "the server closed the connection");
                self.decoder.feed(&buf[..len]);
            }
        })
        .await
    }
}

#[tokio::test]
async fn an_unknown_bus_is_refused_naming_the_known_ones() {
    let sim = start_demo().await;
    let mut addr = bus_addr(&sim, "cab-a");
    addr.bus = BusName::new("cab-z").expect("valid name");
    let error = within("the refusal", SocketcandBus::connect(&addr))
        .await
        .expect_err("cab-z does not exist");
    let text = error.to_string();
    for name in ["cab-z", "cab-a", "cab-b", "cab-c"] {
        assert!(text.contains(name), "{name} missing from {text:?}");
    }
}

#[tokio::test]
async fn malformed_input_is_answered_and_the_connection_survives() {
    let sim = start_demo().await;
    let mut client = RawClient::connect(&sim).await;
    client.write(b"< open cab-a >").await;
    assert_eq!(client.next().await, Message::Ok);
    client.write(b"< rawmode >").await;
    assert_eq!(client.next().await, Message::Ok);

    // A DLC that does not match the bytes, an unknown command, and a server's message.
    for bad in [
        &b"< send 110 4 01 02 >"[..],
        b"< launch rockets >",
        b"< hi >",
    ] {
        client.write(bad).await;
        let reply = client.next_reply().await;
        assert!(
            matches!(reply, Message::Error(_)),
            "{} answered with {reply}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(sim.bus_stats().bad_input, 3);

    // Still served: an echo is answered, and frames keep coming.
    client.write(b"< echo >").await;
    assert_eq!(client.next_reply().await, Message::Echo);
    assert!(matches!(client.next().await, Message::Frame { .. }));
}

#[tokio::test]
async fn commands_out_of_order_are_refused_until_a_bus_is_open() {
    let sim = start_demo().await;
    let mut client = RawClient::connect(&sim).await;
    client.write(b"< rawmode >").await;
    assert!(matches!(client.next().await, Message::Error(_)));
    client.write(b"< send 110 1 00 >").await;
    assert!(matches!(client.next().await, Message::Error(_)));
    client.write(b"< open cab-b >").await;
    assert_eq!(client.next().await, Message::Ok);
    client.write(b"< open cab-c >").await;
    assert!(matches!(client.next().await, Message::Error(_)));
    client.write(b"< rawmode >").await;
    assert_eq!(client.next().await, Message::Ok);
    assert!(matches!(client.next().await, Message::Frame { .. }));
}
