//! What the simulator's integration tests share: an in-process simulator on free loopback
//! ports, deadlines instead of sleeps, a socketcand client, and a bare HTTP/1.1 client for
//! the control API (one request per connection, so that no HTTP client crate is needed).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use ringhub_node::can::{CanBus, ReceivedFrame, SocketcandAddr, SocketcandBus};
use ringhub_proto::can::CanFrame;
use ringhub_proto::config::HubConfig;
use ringhub_proto::socketcand::BusName;
use ringhub_sim::server::{Sim, SimOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any single step may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `step`, failing the test if it takes longer than [`DEADLINE`].
pub async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, step)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The demo hub on free loopback ports.
pub async fn start_demo() -> Sim {
    Sim::start(SimOptions::ephemeral(HubConfig::demo(), 1))
        .await
        .expect("simulator starts")
}

/// Where bus `bus` of `sim` is served.
pub fn bus_addr(sim: &Sim, bus: &str) -> SocketcandAddr {
    SocketcandAddr {
        host: "127.0.0.1".into(),
        port: sim.socketcand_addr().port(),
        bus: BusName::new(bus).expect("valid bus name"),
    }
}

/// A socketcand client on bus `bus` of `sim`, in raw mode.
pub async fn connect(sim: &Sim, bus: &str) -> SocketcandBus {
    within(
        "the socketcand handshake",
        SocketcandBus::connect(&bus_addr(sim, bus)),
    )
    .await
    .expect("client connects")
}

/// Receives until a frame satisfies `wanted`, within the deadline.
pub async fn recv_until(
    bus: &mut SocketcandBus,
    what: &str,
    mut wanted: impl FnMut(&CanFrame) -> bool,
) -> ReceivedFrame {
    within(what, async {
        loop {
            let received = bus.recv().await.expect("the bus stays up");
            if wanted(&received.frame) {
                return received;
            }
        }
    })
    .await
}

/// A control API answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body (`Null` when empty).
    pub body: serde_json::Value,
}

/// One HTTP/1.1 request with a JSON body, `Connection: close`.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Answer {
    within(&format!("{method} {path}"), async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the API");
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("receive");
        let response = String::from_utf8(response).expect("UTF-8 response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("a complete response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "chunked answers are not expected: {head}"
        );
        let body = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body {body:?}: {e}"))
        };
        Answer { status, body }
    })
    .await
}
