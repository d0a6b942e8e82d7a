//! A TCP relay in the harness between the nodes (in their namespaces) and a server on
//! the root namespace's loopback (the simulator's socketcand bus, the CSMS): both listen
//! on 127.0.0.1 only, and the nodes reach the relay on the bridge's address.
//!
//! The relay of a cabinet's CAN bus is also where CAN faults happen, on the wire the node
//! reads, as a broken cable or a babbling device would cause them:
//!
//! - [`Relay::disconnect`]: drops the node's connections and refuses new ones (the bus
//!   cable pulled) until [`Relay::reconnect`];
//! - [`Relay::inject`]: socketcand frame lines written to the node between the server's
//!   lines, once the node has switched the connection to raw mode (corrupt frames,
//!   unknown ids, bursts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::error::{ChaosError, Result};

/// What the relay's tasks share.
#[derive(Debug)]
struct Shared {
    /// Refusing connections (the cable is out).
    cut: AtomicBool,
    /// Lines to write to every raw-mode connection.
    inject: broadcast::Sender<Arc<Vec<u8>>>,
    /// Bumped on every disconnect: live connections end when it changes.
    generation: watch::Sender<u64>,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Connections in raw mode now.
    raw: AtomicU64,
}

/// A relay; its tasks end when it is dropped.
#[derive(Debug)]
pub struct Relay {
    /// Where the nodes connect.
    pub addr: SocketAddr,
    /// The accept loop.
    task: JoinHandle<()>,
    /// Its state.
    shared: Arc<Shared>,
}

impl Relay {
    /// Listens on `listen` (port 0: any) and relays every connection to `target`;
    /// `socketcand`: the stream is socketcand's `< … >` lines (frames can be injected).
    pub async fn start(listen: SocketAddr, target: SocketAddr, socketcand: bool) -> Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(ChaosError::io(format!("relay bind {listen}")))?;
        let addr = listener
            .local_addr()
            .map_err(ChaosError::io("relay address"))?;
        let (inject, _) = broadcast::channel(8192);
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            inject,
            generation: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            raw: AtomicU64::new(0),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if state.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                state.accepted.fetch_add(1, Ordering::Relaxed);
                connections.spawn(relay_one(client, target, socketcand, state.clone()));
                // Reap the finished ones so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, task, shared })
    }

    /// Drops every connection and refuses new ones.
    pub fn disconnect(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn reconnect(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Writes `lines` to every connection in raw mode; how many connections got them.
    pub fn inject(&self, lines: &[String]) -> u64 {
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(line.as_bytes());
        }
        let _ = self.shared.inject.send(Arc::new(bytes));
        self.shared.raw.load(Ordering::SeqCst)
    }

    /// Connections in raw mode now.
    pub fn raw_connections(&self) -> u64 {
        self.shared.raw.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

/// Relays one connection until either side closes or the relay disconnects.
async fn relay_one(client: TcpStream, target: SocketAddr, socketcand: bool, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut generation = shared.generation.subscribe();
    generation.mark_unchanged();
    let mut injected = shared.inject.subscribe();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let raw = Arc::new(AtomicBool::new(false));
    // Node → server: passed through; watched for the switch to raw mode.
    let upstream_raw = raw.clone();
    let upstream_shared = shared.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut seen = Vec::new();
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if socketcand && !upstream_raw.load(Ordering::SeqCst) {
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(7).any(|w| w == b"rawmode") {
                    upstream_raw.store(true, Ordering::SeqCst);
                    upstream_shared.raw.fetch_add(1, Ordering::SeqCst);
                }
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Server → node: forwarded up to the last complete `< … >` line, so that injected
    // lines go in between lines, never inside one.
    let downstream_raw = raw.clone();
    let downstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            tokio::select! {
                read = server_read.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    let end = if socketcand {
                        pending.iter().rposition(|&b| b == b'>')
                    } else {
                        pending.len().checked_sub(1)
                    };
                    if let Some(end) = end {
                        let rest = pending.split_off(end + 1);
                        if client_write.write_all(&pending).await.is_err() {
                            return;
                        }
                        pending = rest;
                    }
                }
                lines = injected.recv() => {
                    match lines {
                        Ok(lines) if downstream_raw.load(Ordering::SeqCst) => {
                            if client_write.write_all(&lines).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        _ = generation.changed() => {}
    }
    if raw.load(Ordering::SeqCst) {
        shared.raw.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-connection echo-ish server: sends `< hi >`, then echoes.
    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(b"< hi >").await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !got.windows(needle.len()).any(|w| w == needle) {
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .expect("in time")
                .expect("read");
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[tokio::test]
    async fn relays_injects_in_raw_mode_and_disconnects() {
        let target = server().await;
        let relay = Relay::start("127.0.0.1:0".parse().expect("addr"), target, true)
            .await
            .expect("relay");
        let mut client = TcpStream::connect(relay.addr).await.expect("connect");
        read_until(&mut client, b"< hi >").await;
        client.write_all(b"< rawmode >").await.expect("write");
        read_until(&mut client, b"< rawmode >").await;
        assert_eq!(relay.raw_connections(), 1);
        relay.inject(&["< frame 5A5 0.0 00 >".to_owned()]);
        read_until(&mut client, b"< frame 5A5 0.0 00 >").await;
        relay.disconnect();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "the relay closed the connection");
        relay.reconnect();
        let mut again = TcpStream::connect(relay.addr).await.expect("connect");
        read_until(&mut again, b"< hi >").await;
        assert_eq!(relay.accepted(), 2);
    }
}
