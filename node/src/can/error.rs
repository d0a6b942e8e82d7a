//! What can go wrong on a CAN bus, sorted by who is at fault — the transport, the peer, or
//! the caller — and, for each, what to do about it ([`Recovery`]). The reconnecting
//! wrapper acts on [`CanError::recovery`] and labels its error counter with
//! [`CanError::kind`]; a bad URI is the config's fault and has its own error,
//! [`UriError`](super::UriError), raised before any bus exists.

use std::io;
use std::path::PathBuf;

use ringhub_proto::can::{CanFrame, FrameSyntaxError};
use ringhub_proto::socketcand::{DecodeError, ErrorText};

/// Any failure of a bus operation. Every variant names the bus (its URI).
#[derive(Debug, thiserror::Error)]
pub enum CanError {
    /// The transport failed: the bus is unusable until it is opened again.
    #[error("{bus}: {source}")]
    Transport {
        /// The bus, as its URI.
        bus: String,
        /// What failed.
        #[source]
        source: TransportError,
    },
    /// The peer (a socketcand server, the bus, a log file) sent something wrong.
    #[error("{bus}: {source}")]
    Peer {
        /// The bus, as its URI.
        bus: String,
        /// What it sent.
        #[source]
        source: PeerError,
    },
    /// The caller asked to send a frame whose id is out of range for its width (possible
    /// only by building `CanId::Standard`/`CanId::Extended` directly). Nothing was sent.
    #[error(
        "{bus}: cannot send {frame}: its id is out of range (standard ≤ 7FF, extended ≤ 1FFFFFFF)"
    )]
    InvalidFrame {
        /// The bus, as its URI.
        bus: String,
        /// The frame that was refused.
        frame: CanFrame,
    },
    /// A replay has delivered its last frame.
    #[error("{bus}: replay reached the end of its log")]
    Ended {
        /// The bus, as its URI.
        bus: String,
    },
}

/// How a transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot open CAN interface {interface:?}: {source}")]
    OpenInterface {
        interface: String,
        source: io::Error,
    },
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("{address} did not complete the handshake within {timeout_ms} ms")]
    HandshakeTimeout { address: String, timeout_ms: u128 },
    #[error("connection closed by {address}")]
    Closed { address: String },
    #[error("{action} failed on {address}: {source}")]
    Io {
        action: &'static str,
        address: String,
        source: io::Error,
    },
    #[error("cannot open {}: {source}", path.display())]
    OpenFile { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    WriteFile { path: PathBuf, source: io::Error },
}

/// What a peer sent that it should not have.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{address} sent a malformed message (skipped): {source}")]
    MalformedMessage {
        address: String,
        source: DecodeError,
    },
    #[error("{}:{line}: malformed candump line (skipped): {source}", path.display())]
    MalformedLine {
        path: PathBuf,
        line: usize,
        source: FrameSyntaxError,
    },
    #[error("{address} refused to open bus {bus_name}: {text}")]
    Refused {
        address: String,
        bus_name: String,
        text: ErrorText,
    },
    #[error("{address} answered {got:?} where the handshake expects {expected}")]
    Handshake {
        address: String,
        expected: &'static str,
        got: String,
    },
    #[error("{address} reported an error: {text}")]
    ServerError { address: String, text: ErrorText },
    #[error(
        "{address} sent {message:?}, which a server does not send after the handshake (skipped)"
    )]
    Unexpected { address: String, message: String },
    #[error("{interface} delivered a {kind} frame, which ringhub does not use (skipped)")]
    UnsupportedFrame {
        interface: String,
        kind: &'static str,
    },
}

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The bus is still usable: note the error and carry on.
    Skip,
    /// The bus is unusable: open it again, after a backoff.
    Reconnect,
    /// Nothing will help: hand the error to the caller.
    GiveUp,
}

/// A coarse, stable name for each error, for metric labels and test assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// A socket, connection or file operation failed.
    Io,
    /// The peer closed the connection.
    Closed,
    /// The handshake took too long.
    Timeout,
    /// The server refused to open the bus.
    Refused,
    /// The server answered the handshake with something else.
    Handshake,
    /// A message or log line did not parse.
    Malformed,
    /// The server reported an error after the handshake.
    ServerError,
    /// A well-formed message or frame that has no business arriving.
    Unexpected,
    /// The caller's frame cannot be sent.
    InvalidFrame,
    /// A replay ran out of frames.
    Ended,
}

impl ErrorKind {
    /// The label value, e.g. `malformed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Io => "io",
            Self::Closed => "closed",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Handshake => "handshake",
            Self::Malformed => "malformed",
            Self::ServerError => "server_error",
            Self::Unexpected => "unexpected",
            Self::InvalidFrame => "invalid_frame",
            Self::Ended => "ended",
        }
    }

    /// What to do after an error of this kind. A refused `open` is retried: the simulator
    /// may not serve the bus yet.
    pub fn recovery(self) -> Recovery {
        match self {
            Self::Io | Self::Closed | Self::Timeout | Self::Refused | Self::Handshake => {
                Recovery::Reconnect
            }
            Self::Malformed | Self::ServerError | Self::Unexpected | Self::InvalidFrame => {
                Recovery::Skip
            }
            Self::Ended => Recovery::GiveUp,
        }
    }
}

impl CanError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Transport { source, .. } => match source {
                TransportError::Closed { .. } => ErrorKind::Closed,
                TransportError::HandshakeTimeout { .. } => ErrorKind::Timeout,
                TransportError::OpenInterface { .. }
                | TransportError::Connect { .. }
                | TransportError::Io { .. }
                | TransportError::OpenFile { .. }
                | TransportError::ReadFile { .. }
                | TransportError::WriteFile { .. } => ErrorKind::Io,
            },
            Self::Peer { source, .. } => match source {
                PeerError::MalformedMessage { .. } | PeerError::MalformedLine { .. } => {
                    ErrorKind::Malformed
                }
                PeerError::Refused { .. } => ErrorKind::Refused,
                PeerError::Handshake { .. } => ErrorKind::Handshake,
                PeerError::ServerError { .. } => ErrorKind::ServerError,
                PeerError::Unexpected { .. } | PeerError::UnsupportedFrame { .. } => {
                    ErrorKind::Unexpected
                }
            },
            Self::InvalidFrame { .. } => ErrorKind::InvalidFrame,
            Self::Ended { .. } => ErrorKind::Ended,
        }
    }

    pub fn recovery(&self) -> Recovery {
        self.kind().recovery()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_connection_reconnects_and_a_bad_message_is_skipped() {
        let closed = CanError::Transport {
            bus: "socketcand:127.0.0.1:1/can0".into(),
            source: TransportError::Closed {
                address: "127.0.0.1:1".into(),
            },
        };
        assert_eq!(closed.recovery(), Recovery::Reconnect);
        assert_eq!(
            closed.to_string(),
            "socketcand:127.0.0.1:1/can0: connection closed by 127.0.0.1:1"
        );

        let malformed = CanError::Peer {
            bus: "candump:x.log".into(),
            source: PeerError::MalformedLine {
                path: "x.log".into(),
                line: 3,
                source: FrameSyntaxError::MissingSeparator,
            },
        };
        assert_eq!(malformed.kind(), ErrorKind::Malformed);
        assert_eq!(malformed.recovery(), Recovery::Skip);
        assert!(
            malformed
                .to_string()
                .starts_with("candump:x.log: x.log:3: malformed candump line")
        );

        assert_eq!(
            CanError::Ended {
                bus: "candump:x.log".into()
            }
            .recovery(),
            Recovery::GiveUp
        );
    }
}
