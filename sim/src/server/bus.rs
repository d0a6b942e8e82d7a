//! The socketcand server: every cabinet's CAN bus on one TCP port, the cabinet id as the
//! bus name, so that a node (or python-can's `socketcand` interface) cannot tell the
//! simulator from a remote CAN interface (DESIGN.md §5, "CAN transports"). The wire format
//! is `ringhub_proto::socketcand`; this module moves its bytes.
//!
//! ```text
//!  client                                  server
//!    |                          < hi >       |   on connect
//!    |  < open cab-a >                       |
//!    |                          < ok >       |   or < error could not open bus … >, close
//!    |  < rawmode >                          |
//!    |                          < ok >       |
//!    |          < frame 0A0 1700000000.000042 0102… >   every frame of the bus
//!    |  < send 110 4 01 00 F4 01 >           |   to the world and the bus's other clients
//! ```
//!
//! A bus is a `broadcast` channel: the runner publishes each frame the world transmits,
//! and a client's `< send … >` is published too (tagged with its sender, which does not
//! see its own frame, as on CAN) and handed to the world. The broadcast ring is each
//! client's bounded queue: a client that falls behind loses the oldest frames (counted,
//! logged) and the world never waits. A client that stops reading altogether is
//! disconnected when a write has not completed within [`WRITE_TIMEOUT`].
//!
//! Bad input (a malformed message, a command out of place) is answered with
//! `< error … >` and counted; the connection stays. Only an unknown bus closes it, as
//! socketcand does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringhub_proto::can::CanFrame;
use ringhub_proto::config::CabinetId;
use ringhub_proto::socketcand::{Decoder, ErrorText, MAX_ERROR_TEXT_LEN, Message};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};

use super::Shutdown;

/// Frames a bus holds for its slowest client before that client loses the oldest: about
/// a second of a busy cabinet's traffic.
pub const BUS_QUEUE: usize = 4096;

/// Most clients served at once, all buses together; further connections wait in the
/// listen backlog.
pub const MAX_CLIENTS: usize = 64;

/// A client whose socket accepts no bytes for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames written to a client in one write, at most.
const WRITE_BATCH: usize = 64;

/// Bytes asked of a client's socket per read.
const READ_CHUNK: usize = 4096;

/// A frame on a bus.
#[derive(Debug, Clone, Copy)]
pub struct BusFrame {
    /// The frame.
    pub frame: CanFrame,
    /// When it appeared on the bus, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The client that sent it; `None` when the world did. Its sender does not get it back.
    pub origin: Option<u64>,
}

/// A frame a client sent, for the world.
#[derive(Debug, Clone)]
pub struct HostFrame {
    /// The bus it was sent on.
    pub cabinet: CabinetId,
    /// The frame.
    pub frame: CanFrame,
}

/// The server's counters, all buses together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BusStats {
    /// Connections accepted.
    pub connections: u64,
    /// Frames written to clients.
    pub frames_out: u64,
    /// Frames clients sent.
    pub frames_in: u64,
    /// Messages from clients answered with `< error … >`.
    pub bad_input: u64,
    /// Frames a slow client lost.
    pub dropped: u64,
    /// Clients disconnected because they stopped reading.
    pub slow_disconnects: u64,
}

/// The counters, shared by every connection.
#[derive(Debug, Default)]
struct Counters {
    /// See [`BusStats`].
    connections: AtomicU64,
    /// See [`BusStats`].
    frames_out: AtomicU64,
    /// See [`BusStats`].
    frames_in: AtomicU64,
    /// See [`BusStats`].
    bad_input: AtomicU64,
    /// See [`BusStats`].
    dropped: AtomicU64,
    /// See [`BusStats`].
    slow_disconnects: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// Every cabinet's bus. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Buses {
    /// What is shared.
    inner: Arc<Inner>,
}

/// The buses and the counters.
#[derive(Debug)]
struct Inner {
    /// One broadcast channel per cabinet, by bus name.
    buses: BTreeMap<String, (CabinetId, broadcast::Sender<BusFrame>)>,
    /// Counters.
    counters: Counters,
    /// The id of the next client.
    next_client: AtomicU64,
}

impl Buses {
    /// One bus per cabinet.
    pub fn new(cabinets: impl IntoIterator<Item = CabinetId>) -> Self {
        let buses = cabinets
            .into_iter()
            .map(|id| {
                let (tx, _) = broadcast::channel(BUS_QUEUE);
                (id.as_str().to_owned(), (id, tx))
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                buses,
                counters: Counters::default(),
                next_client: AtomicU64::new(0),
            }),
        }
    }

    /// Puts a frame the world transmitted on `cabinet`'s bus. Never waits; a bus without
    /// clients drops it, as a bus without listeners does.
    pub fn publish(&self, cabinet: &CabinetId, frame: CanFrame, timestamp_us: u64) {
        if let Some((_, bus)) = self.inner.buses.get(cabinet.as_str()) {
            let _no_clients = bus.send(BusFrame {
                frame,
                timestamp_us,
                origin: None,
            });
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> BusStats {
        let c = &self.inner.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BusStats {
            connections: get(&c.connections),
            frames_out: get(&c.frames_out),
            frames_in: get(&c.frames_in),
            bad_input: get(&c.bad_input),
            dropped: get(&c.dropped),
            slow_disconnects: get(&c.slow_disconnects),
        }
    }

    /// The bus names, comma-separated, for error texts.
    fn names(&self) -> String {
        let names: Vec<&str> = self.inner.buses.keys().map(String::as_str).collect();
        names.join(", ")
    }
}

/// Accepts clients until shutdown, serving each in its own task.
pub async fn serve(
    listener: TcpListener,
    buses: Buses,
    to_world: mpsc::Sender<HostFrame>,
    mut shutdown: Shutdown,
) {
    let limit = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Per-connection errors (the peer gave up before accept); the listener
                // itself is fine. Keep accepting.
                tracing::warn!(%error, "socketcand accept failed");
                continue;
            }
        };
        // Frames are small and latency matters more than packet count.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let id = buses.inner.next_client.fetch_add(1, Ordering::Relaxed);
        bump(&buses.inner.counters.connections, 1);
        let connection = Connection {
            stream,
            peer: peer.to_string(),
            id,
            buses: buses.clone(),
            to_world: to_world.clone(),
            shutdown: shutdown.clone(),
            decoder: Decoder::new(),
            bus: None,
            raw: false,
        };
        connections.spawn(async move {
            connection.run().await;
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    // Connections see the same shutdown signal and end on their own.
    while connections.join_next().await.is_some() {}
}

/// The bus a client opened.
#[derive(Debug)]
struct OpenBus {
    /// Which cabinet's.
    cabinet: CabinetId,
    /// Its frames, for this client.
    rx: broadcast::Receiver<BusFrame>,
    /// Publishes this client's frames to the bus's other clients.
    tx: broadcast::Sender<BusFrame>,
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The client closed it, or shutdown.
    Closed,
    /// Reading or writing failed.
    Io(std::io::Error),
    /// The client did not read for [`WRITE_TIMEOUT`].
    Slow,
    /// The client asked for a bus that does not exist.
    UnknownBus,
}

/// What woke a connection up.
#[derive(Debug)]
enum Event {
    /// Shutdown was signalled.
    Shutdown,
    /// The client sent bytes (or closed, `Ok(0)`).
    Read(std::io::Result<usize>),
    /// The bus has a frame (or the client lost some).
    Frame(Result<BusFrame, broadcast::error::RecvError>),
}

/// The bus's next frame, once the client is in raw mode; never before.
async fn next_frame(
    bus: &mut Option<OpenBus>,
    raw: bool,
) -> Result<BusFrame, broadcast::error::RecvError> {
    match bus {
        Some(bus) if raw => bus.rx.recv().await,
        _ => std::future::pending().await,
    }
}

/// One client.
#[derive(Debug)]
struct Connection {
    /// The socket.
    stream: TcpStream,
    /// The client's address, for logs.
    peer: String,
    /// Tags the frames it sends.
    id: u64,
    /// Every bus.
    buses: Buses,
    /// Frames it sends, for the world.
    to_world: mpsc::Sender<HostFrame>,
    /// Ends the connection.
    shutdown: Shutdown,
    /// What it sent so far.
    decoder: Decoder,
    /// The bus it opened.
    bus: Option<OpenBus>,
    /// Whether it asked for raw mode: only then does it get frames.
    raw: bool,
}

impl Connection {
    async fn run(mut self) {
        tracing::debug!(peer = %self.peer, "socketcand client connected");
        let end = self.serve().await;
        let bus = self.bus.as_ref().map(|b| b.cabinet.as_str().to_owned());
        let bus = bus.as_deref().unwrap_or("-");
        match end {
            End::Closed => tracing::debug!(peer = %self.peer, bus, "socketcand client left"),
            End::UnknownBus => {}
            End::Io(error) => {
                tracing::info!(peer = %self.peer, bus, %error, "socketcand client dropped");
            }
            End::Slow => {
                bump(&self.buses.inner.counters.slow_disconnects, 1);
                tracing::warn!(
                    peer = %self.peer,
                    bus,
                    timeout_ms = WRITE_TIMEOUT.as_millis(),
                    "socketcand client stopped reading; disconnected"
                );
            }
        }
    }

    async fn serve(&mut self) -> End {
        if let Err(end) = self.write(&Message::Hi.encode()).await {
            return end;
        }
        let mut buf = vec![0; READ_CHUNK];
        let mut shutdown = self.shutdown.clone();
        loop {
            let event = {
                let (stream, bus, raw) = (&mut self.stream, &mut self.bus, self.raw);
                tokio::select! {
                    _ = shutdown.wait() => Event::Shutdown,
                    read = stream.read(&mut buf) => Event::Read(read),
                    frame = next_frame(bus, raw) => Event::Frame(frame),
                }
            };
            match event {
                Event::Shutdown | Event::Read(Ok(0)) => return End::Closed,
                Event::Read(Ok(len)) => {
                    self.decoder.feed(&buf[..len]);
                    if let Err(end) = self.handle_input().await {
                        return end;
                    }
                }
                Event::Read(Err(error)) => return End::Io(error),
                Event::Frame(frame) => {
                    if let Err(end) = self.deliver(frame).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Answers every complete message received so far.
    async fn handle_input(&mut self) -> Result<(), End> {
        loop {
            match self.decoder.next_message() {
                Ok(None) => return Ok(()),
                Ok(Some(message)) => self.handle(message).await?,
                Err(error) => self.refuse(&error.to_string()).await?,
            }
        }
    }

    async fn handle(&mut self, message: Message) -> Result<(), End> {
        match message {
            Message::Open(name) => {
                if let Some(bus) = &self.bus {
                    let text = format!("bus {} is already open", bus.cabinet.as_str());
                    return self.refuse(&text).await;
                }
                let Some((cabinet, tx)) = self.buses.inner.buses.get(name.as_str()) else {
                    let text = format!(
                        "could not open bus {name}: no such bus (buses: {})",
                        self.buses.names()
                    );
                    bump(&self.buses.inner.counters.bad_input, 1);
                    self.write(&Message::Error(error_text(&text)).encode())
                        .await?;
                    tracing::info!(peer = %self.peer, bus = %name, "socketcand client asked for an unknown bus");
                    return Err(End::UnknownBus);
                };
                self.bus = Some(OpenBus {
                    cabinet: cabinet.clone(),
                    rx: tx.subscribe(),
                    tx: tx.clone(),
                });
                self.write(&Message::Ok.encode()).await
            }
            Message::RawMode => {
                let Some(bus) = &mut self.bus else {
                    return self.refuse("open a bus first: < open BUS >").await;
                };
                // Frames from before raw mode are not delivered.
                bus.rx = bus.rx.resubscribe();
                self.raw = true;
                self.write(&Message::Ok.encode()).await
            }
            Message::Echo => self.write(&Message::Echo.encode()).await,
            Message::Send(frame) => {
                let Some(bus) = &self.bus else {
                    return self.refuse("open a bus first: < open BUS >").await;
                };
                bump(&self.buses.inner.counters.frames_in, 1);
                let _no_other_clients = bus.tx.send(BusFrame {
                    frame,
                    timestamp_us: now_us(),
                    origin: Some(self.id),
                });
                let host_frame = HostFrame {
                    cabinet: bus.cabinet.clone(),
                    frame,
                };
                // Waits while the world is behind: back-pressure on this client only.
                if self.to_world.send(host_frame).await.is_err() {
                    // The world has stopped: shutting down.
                    return Err(End::Closed);
                }
                Ok(())
            }
            other @ (Message::Hi | Message::Ok | Message::Error(_) | Message::Frame { .. }) => {
                let text = format!("{other} is sent by servers, not clients");
                self.refuse(&text).await
            }
        }
    }

    /// Answers bad input with `< error … >`, counts it and keeps the connection.
    async fn refuse(&mut self, text: &str) -> Result<(), End> {
        bump(&self.buses.inner.counters.bad_input, 1);
        tracing::debug!(peer = %self.peer, text, "bad input from a socketcand client");
        self.write(&Message::Error(error_text(text)).encode()).await
    }

    /// Writes `first` and whatever else the bus has ready, in one write.
    async fn deliver(
        &mut self,
        first: Result<BusFrame, broadcast::error::RecvError>,
    ) -> Result<(), End> {
        let Some(bus) = &mut self.bus else {
            return Ok(());
        };
        let mut out = Vec::new();
        let mut count: u64 = 0;
        let mut next = Some(first);
        while let Some(received) = next.take() {
            match received {
                Ok(frame) if frame.origin == Some(self.id) => {}
                Ok(frame) => {
                    let message = Message::Frame {
                        frame: frame.frame,
                        timestamp_us: frame.timestamp_us,
                    };
                    out.extend_from_slice(&message.encode());
                    count += 1;
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    bump(&self.buses.inner.counters.dropped, lost);
                    tracing::warn!(
                        peer = %self.peer,
                        bus = bus.cabinet.as_str(),
                        lost,
                        "socketcand client is too slow; its oldest frames were dropped"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return Err(End::Closed),
            }
            if count < WRITE_BATCH as u64 {
                next = match bus.rx.try_recv() {
                    Ok(frame) => Some(Ok(frame)),
                    Err(broadcast::error::TryRecvError::Lagged(lost)) => {
                        Some(Err(broadcast::error::RecvError::Lagged(lost)))
                    }
                    Err(_empty_or_closed) => None,
                };
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        self.write(&out).await?;
        bump(&self.buses.inner.counters.frames_out, count);
        Ok(())
    }

    /// One write, given up after [`WRITE_TIMEOUT`] or at shutdown.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = shutdown.wait() => Err(End::Closed),
            written = tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(bytes)) => {
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(End::Io(error)),
                    Err(_elapsed) => Err(End::Slow),
                }
            }
        }
    }
}

/// `text` as an error text: characters the protocol cannot carry become `?`, and it is
/// cut to the longest allowed.
fn error_text(text: &str) -> ErrorText {
    let clean: String = text
        .chars()
        .map(|c| match c {
            '<' => '(',
            '>' => ')',
            ' '..='~' => c,
            _ => '?',
        })
        .take(MAX_ERROR_TEXT_LEN)
        .collect();
    ErrorText::new(&clean).unwrap_or_else(|_| {
        ErrorText::new("bad input").unwrap_or_else(|_| unreachable!("a valid error text"))
    })
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_carry_any_input() {
        let text = error_text("malformed message \"< frame >\": bad ü");
        assert_eq!(text.as_str(), "malformed message \"( frame )\": bad ?");
        let long = "x".repeat(1000);
        assert_eq!(error_text(&long).as_str().len(), MAX_ERROR_TEXT_LEN);
    }
}
