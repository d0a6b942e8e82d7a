//! The cabinet's CAN bus, whatever carries it (DESIGN.md §5, "CAN transports").
//!
//! On hardware the bus is a SocketCAN interface; against the simulator, or a CAN interface
//! on another machine, it is a socketcand TCP connection; for analysis and regression
//! tests it is the replay of a `candump -l` log. The drivers above see one trait,
//! [`CanBus`], and a URI in the hub config picks the backend:
//!
//! ```text
//!               BusUri ──► AnyBus::open ──┬─ SocketCanBus    socketcan:can0
//!                                         ├─ SocketcandBus   socketcand:HOST:PORT/BUS
//!                                         └─ CandumpReplay   candump:FILE
//!
//!  drivers ◄──► ReconnectingBus ◄──► AnyBus     reopens a dropped link with backoff,
//!                                               skips bad input, counts everything
//!  RecordingBus<B> ◄──► B                       tees any bus's traffic to a candump log
//! ```
//!
//! Errors say who is at fault and what to do next ([`Recovery`]): a malformed message is
//! skipped, a dropped link is reopened, an exhausted replay ends the stream.
//!
//! `recv` and `send` both take `&mut self`, so one task owns a bus; a task that must both
//! receive and send puts `recv` in a `select!` with its outgoing queue. Every `recv` is
//! cancel-safe for that reason (a frame is never lost by dropping the future); `send` is
//! not (a frame may be half-written).

pub(crate) mod backoff;
mod candump;
mod error;
mod reconnect;
mod record;
mod socketcan;
mod socketcand;
mod stats;
mod uri;

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use ringhub_proto::can::CanFrame;

pub use self::backoff::ReconnectPolicy;
pub use self::candump::{CandumpReplay, Pacing};
pub use self::error::{CanError, ErrorKind, PeerError, Recovery, TransportError};
pub use self::reconnect::ReconnectingBus;
pub use self::record::{CandumpRecorder, RecordingBus};
pub use self::socketcan::SocketCanBus;
pub use self::socketcand::SocketcandBus;
pub use self::stats::{BusStats, DECODE_ERRORS, describe_metrics};
pub use self::uri::{BusUri, SocketcandAddr, UriError};

/// A frame as it came off the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// The frame.
    pub frame: CanFrame,
    /// When it was received, in microseconds since the Unix epoch, by the clock of whoever
    /// saw it: the kernel (SocketCAN), the socketcand server, or the log being replayed.
    pub timestamp_us: u64,
}

/// A CAN bus: frames in, frames out.
pub trait CanBus {
    /// The next frame. Cancel-safe: dropping the future loses no frame.
    fn recv(&mut self) -> impl Future<Output = Result<ReceivedFrame, CanError>> + Send;

    /// Puts `frame` on the bus. Not cancel-safe: a dropped future may have sent part of it.
    fn send(&mut self, frame: CanFrame) -> impl Future<Output = Result<(), CanError>> + Send;
}

/// One of the backends, chosen at run time from a [`BusUri`].
#[derive(Debug)]
pub enum AnyBus {
    /// `socketcan:IFACE`.
    SocketCan(SocketCanBus),
    /// `socketcand:HOST:PORT/BUS`.
    Socketcand(SocketcandBus),
    /// `candump:FILE`, paced by its timestamps.
    Candump(CandumpReplay),
}

impl AnyBus {
    /// Opens the bus `uri` names. A replay is paced by its timestamps, as the bus it
    /// stands for was; use [`CandumpReplay::open`] to replay as fast as possible.
    pub async fn open(uri: &BusUri) -> Result<Self, CanError> {
        match uri {
            BusUri::SocketCan { interface } => SocketCanBus::open(interface).map(Self::SocketCan),
            BusUri::Socketcand(addr) => SocketcandBus::connect(addr).await.map(Self::Socketcand),
            BusUri::Candump { path } => CandumpReplay::open(path, Pacing::Timestamps)
                .await
                .map(Self::Candump),
        }
    }
}

impl CanBus for AnyBus {
    async fn recv(&mut self) -> Result<ReceivedFrame, CanError> {
        match self {
            Self::SocketCan(bus) => bus.recv().await,
            Self::Socketcand(bus) => bus.recv().await,
            Self::Candump(bus) => bus.recv().await,
        }
    }

    async fn send(&mut self, frame: CanFrame) -> Result<(), CanError> {
        match self {
            Self::SocketCan(bus) => bus.send(frame).await,
            Self::Socketcand(bus) => bus.send(frame).await,
            Self::Candump(bus) => bus.send(frame).await,
        }
    }
}

/// Microseconds since the Unix epoch of `time` (0 for times before it).
fn unix_micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
    })
}

/// Microseconds since the Unix epoch, now.
fn now_micros() -> u64 {
    unix_micros(SystemTime::now())
}
