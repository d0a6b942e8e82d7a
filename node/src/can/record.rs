//! Recording a bus's traffic as a `candump -l` log, the format can-utils, python-can and
//! our own replay ([`CandumpReplay`](super::CandumpReplay)) read. [`RecordingBus`] wraps
//! any [`CanBus`] and logs both directions, as `candump` on a SocketCAN interface sees
//! its own host's frames too.
//!
//! Lines go through an 8 KiB buffer to a plain `std` file, written on the calling task's
//! thread: a full buffer costs one short write into the page cache. Where the disk may
//! stall, record from a task of its own fed by a channel. The buffer is flushed by
//! [`CandumpRecorder::flush`] and on drop.
//!
//! A recording is a by-product: when writing it fails, [`RecordingBus`] logs the failure
//! and the bus carries on, rather than losing the frame the caller asked for.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ringhub_proto::can::{CanFrame, LogLine};

use super::{CanBus, CanError, ReceivedFrame, TransportError, now_micros};

/// Writes frames to a `candump -l` log file.
#[derive(Debug)]
pub struct CandumpRecorder {
    /// The log file, buffered.
    writer: BufWriter<File>,
    /// Interface name written on every line (`can0`, or the cabinet's name).
    interface: String,
    /// The file's path, for errors.
    path: PathBuf,
}

impl CandumpRecorder {
    /// Creates (or truncates) the log at `path`; lines will name `interface`.
    pub fn create(path: &Path, interface: &str) -> Result<Self, CanError> {
        let file = File::create(path).map_err(|source| {
            Self::error(
                path,
                TransportError::OpenFile {
                    path: path.to_owned(),
                    source,
                },
            )
        })?;
        Ok(Self {
            writer: BufWriter::new(file),
            interface: interface.to_owned(),
            path: path.to_owned(),
        })
    }

    /// Appends one line for `frame`, seen at `timestamp_us` (microseconds since the Unix
    /// epoch).
    pub fn record(&mut self, frame: CanFrame, timestamp_us: u64) -> Result<(), CanError> {
        let line = LogLine {
            timestamp_us,
            interface: self.interface.clone(),
            frame,
        };
        writeln!(self.writer, "{line}").map_err(|source| self.write_error(source))
    }

    /// Writes buffered lines to the file.
    pub fn flush(&mut self) -> Result<(), CanError> {
        self.writer
            .flush()
            .map_err(|source| self.write_error(source))
    }

    fn write_error(&self, source: std::io::Error) -> CanError {
        Self::error(
            &self.path,
            TransportError::WriteFile {
                path: self.path.clone(),
                source,
            },
        )
    }

    fn error(path: &Path, source: TransportError) -> CanError {
        CanError::Transport {
            bus: format!("candump:{}", path.display()),
            source,
        }
    }
}

/// A bus whose received and sent frames are also written to a log. Received frames keep
/// the bus's timestamp; sent frames are stamped when they were sent.
#[derive(Debug)]
pub struct RecordingBus<B> {
    /// The bus being recorded.
    bus: B,
    /// Where its traffic goes.
    recorder: CandumpRecorder,
}

impl<B: CanBus> RecordingBus<B> {
    pub fn new(bus: B, recorder: CandumpRecorder) -> Self {
        Self { bus, recorder }
    }

    /// The recorder, e.g. to flush it.
    pub fn recorder_mut(&mut self) -> &mut CandumpRecorder {
        &mut self.recorder
    }

    /// The bus and the recorder, parted.
    pub fn into_parts(self) -> (B, CandumpRecorder) {
        (self.bus, self.recorder)
    }
}

impl<B: CanBus + Send> CanBus for RecordingBus<B> {
    /// Cancel-safe if the inner bus's `recv` is: recording happens after the frame is in
    /// hand, without awaiting.
    async fn recv(&mut self) -> Result<ReceivedFrame, CanError> {
        let received = self.bus.recv().await?;
        self.record(received.frame, received.timestamp_us);
        Ok(received)
    }

    async fn send(&mut self, frame: CanFrame) -> Result<(), CanError> {
        self.bus.send(frame).await?;
        self.record(frame, now_micros());
        Ok(())
    }
}

impl<B> RecordingBus<B> {
    fn record(&mut self, frame: CanFrame, timestamp_us: u64) {
        if let Err(error) = self.recorder.record(frame, timestamp_us) {
            tracing::warn!(%error, "frame not recorded");
        }
    }
}
