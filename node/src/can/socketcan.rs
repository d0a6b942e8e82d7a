//! A Linux SocketCAN interface (`can0` on the cabinet's hardware), through the socketcan
//! crate's tokio socket. Receive timestamps come from the kernel (`SO_TIMESTAMPNS`), so
//! they mark when the frame arrived, not when this task got around to reading it.
//!
//! The only work here besides IO is converting between ringhub's `CanFrame` and the
//! socketcan crate's; those conversions are pure and tested without an interface.

use ringhub_proto::can::{CanFrame, CanId};
use socketcan::{EmbeddedFrame, ExtendedId, Id, SocketOptions, StandardId};

use super::{CanBus, CanError, PeerError, ReceivedFrame, TransportError, unix_micros};

/// An open SocketCAN interface.
#[derive(Debug)]
pub struct SocketCanBus {
    /// The raw CAN socket bound to the interface.
    socket: socketcan::tokio::CanSocket,
    /// Interface name, for errors.
    interface: String,
    /// The bus URI, for errors.
    uri: String,
}

impl SocketCanBus {
    /// Opens `interface` (e.g. `can0`). Must be called within a tokio runtime. A missing
    /// interface is an error naming it.
    pub fn open(interface: &str) -> Result<Self, CanError> {
        let uri = format!("socketcan:{interface}");
        let failed = |source| CanError::Transport {
            bus: uri.clone(),
            source: TransportError::OpenInterface {
                interface: interface.to_owned(),
                source,
            },
        };
        let socket = socketcan::tokio::CanSocket::open(interface).map_err(failed)?;
        socket.set_recv_timestamp(true).map_err(failed)?;
        Ok(Self {
            socket,
            interface: interface.to_owned(),
            uri,
        })
    }

    fn io_error(&self, action: &'static str, source: std::io::Error) -> CanError {
        let source = TransportError::Io {
            action,
            address: self.interface.clone(),
            source,
        };
        CanError::Transport {
            bus: self.uri.clone(),
            source,
        }
    }
}

impl CanBus for SocketCanBus {
    /// Cancel-safe: the socket is read only when a whole frame is ready.
    async fn recv(&mut self) -> Result<ReceivedFrame, CanError> {
        let (frame, time) = self
            .socket
            .read_frame_with_timestamp()
            .await
            .map_err(|e| self.io_error("read", e))?;
        let frame = from_socketcan(&frame).map_err(|kind| CanError::Peer {
            bus: self.uri.clone(),
            source: PeerError::UnsupportedFrame {
                interface: self.interface.clone(),
                kind,
            },
        })?;
        Ok(ReceivedFrame {
            frame,
            timestamp_us: unix_micros(time),
        })
    }

    async fn send(&mut self, frame: CanFrame) -> Result<(), CanError> {
        let Some(native) = to_socketcan(&frame) else {
            return Err(CanError::InvalidFrame {
                bus: self.uri.clone(),
                frame,
            });
        };
        self.socket
            .write_frame(native)
            .await
            .map_err(|e| self.io_error("write", e))
    }
}

/// A ringhub frame as a socketcan data frame; `None` if its id is out of range.
fn to_socketcan(frame: &CanFrame) -> Option<socketcan::CanFrame> {
    let id = match frame.id() {
        CanId::Standard(id) => Id::Standard(StandardId::new(id)?),
        CanId::Extended(id) => Id::Extended(ExtendedId::new(id)?),
    };
    socketcan::CanDataFrame::new(id, frame.data()).map(socketcan::CanFrame::Data)
}

/// A socketcan frame as a ringhub frame; the frame kind's name if ringhub has no use for
/// it (remote and error frames).
fn from_socketcan(frame: &socketcan::CanFrame) -> Result<CanFrame, &'static str> {
    let data = match frame {
        socketcan::CanFrame::Data(data) => data,
        socketcan::CanFrame::Remote(_) => return Err("remote"),
        socketcan::CanFrame::Error(_) => return Err("error"),
    };
    let id = match data.id() {
        Id::Standard(id) => CanId::Standard(id.as_raw()),
        Id::Extended(id) => CanId::Extended(id.as_raw()),
    };
    CanFrame::new(id, data.data()).ok_or("oversized")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::can::ErrorKind;

    #[test]
    fn frames_convert_both_ways_with_both_id_widths() {
        for frame in [
            CanFrame::new(CanId::Standard(0x123), &[0xDE, 0xAD]).unwrap(),
            CanFrame::new(CanId::Standard(0x7FF), &[]).unwrap(),
            CanFrame::new(CanId::Extended(0x1801_0003), &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
            CanFrame::new(CanId::Extended(0x123), &[0]).unwrap(),
        ] {
            let native = to_socketcan(&frame).unwrap();
            assert_eq!(native.is_extended(), frame.id().is_extended(), "{frame}");
            assert_eq!(from_socketcan(&native), Ok(frame));
        }
    }

    #[test]
    fn out_of_range_ids_do_not_convert() {
        assert!(to_socketcan(&CanFrame::new(CanId::Standard(0x800), &[]).unwrap()).is_none());
        assert!(to_socketcan(&CanFrame::new(CanId::Extended(0x2000_0000), &[]).unwrap()).is_none());
    }

    #[test]
    fn remote_frames_are_refused_by_name() {
        let remote =
            socketcan::CanRemoteFrame::new_remote(StandardId::new(0x10).unwrap(), 2).unwrap();
        assert_eq!(
            from_socketcan(&socketcan::CanFrame::Remote(remote)),
            Err("remote")
        );
    }

    #[tokio::test]
    async fn a_missing_interface_is_named_in_the_error() {
        let err = SocketCanBus::open("rhnocan7").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        let message = err.to_string();
        assert!(
            message.contains("socketcan:rhnocan7") && message.contains("\"rhnocan7\""),
            "{message}"
        );
    }
}
