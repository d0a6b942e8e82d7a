//! Replay of a `candump -l` log as a bus: what a recorded session looked like to the node,
//! played back into drivers for regression tests and post-mortems (DESIGN.md §5, "Recording
//! and replay use the candump log format").
//!
//! Each line is `(SECONDS.MICROS) IFACE ID#DATA` (`ringhub_proto::can::LogLine`); every
//! interface in the file is replayed. A frame keeps its recorded timestamp, so recording
//! a replay reproduces the log. Pacing is chosen at open: as fast as possible, or spaced
//! as recorded, starting when the first frame is read. A malformed line is returned as an
//! error naming `file:line`, which the bus survives: the next `recv` reads on. What is sent
//! to a replay goes nowhere, as on a bus nobody else listens to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ringhub_proto::can::{CanFrame, LogLine};
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::time::Instant;

use super::{CanBus, CanError, PeerError, ReceivedFrame, TransportError};

/// How fast a replay delivers its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Each frame as soon as it is asked for.
    AsFastAsPossible,
    /// Frames spaced as their timestamps are, like the bus they were recorded on.
    Timestamps,
}

/// A `candump -l` log played back as a bus.
#[derive(Debug)]
pub struct CandumpReplay {
    /// The log, line by line.
    lines: Lines<BufReader<File>>,
    /// The log's path, for errors.
    path: PathBuf,
    /// The bus URI, for errors.
    uri: String,
    /// Number of the last line read (1-based), for errors.
    line: usize,
    /// Spacing of deliveries in `Pacing::Timestamps`; `None` when as fast as possible.
    pacer: Option<Pacer>,
    /// A frame read but not delivered yet, because `recv` was cancelled while waiting for
    /// its time.
    pending: Option<ReceivedFrame>,
}

impl CandumpReplay {
    /// Opens the log at `path`.
    pub async fn open(path: &Path, pacing: Pacing) -> Result<Self, CanError> {
        let uri = format!("candump:{}", path.display());
        let file = File::open(path)
            .await
            .map_err(|source| CanError::Transport {
                bus: uri.clone(),
                source: TransportError::OpenFile {
                    path: path.to_owned(),
                    source,
                },
            })?;
        let pacer = match pacing {
            Pacing::AsFastAsPossible => None,
            Pacing::Timestamps => Some(Pacer::default()),
        };
        Ok(Self {
            lines: BufReader::new(file).lines(),
            path: path.to_owned(),
            uri,
            line: 0,
            pacer,
            pending: None,
        })
    }

    /// The next frame in the file, skipping blank lines. Cancel-safe (`next_line` is).
    async fn read_frame(&mut self) -> Result<ReceivedFrame, CanError> {
        loop {
            let text = self
                .lines
                .next_line()
                .await
                .map_err(|source| CanError::Transport {
                    bus: self.uri.clone(),
                    source: TransportError::ReadFile {
                        path: self.path.clone(),
                        source,
                    },
                })?;
            let Some(text) = text else {
                return Err(CanError::Ended {
                    bus: self.uri.clone(),
                });
            };
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            return match text.parse::<LogLine>() {
                Ok(line) => Ok(ReceivedFrame {
                    frame: line.frame,
                    timestamp_us: line.timestamp_us,
                }),
                Err(source) => Err(CanError::Peer {
                    bus: self.uri.clone(),
                    source: PeerError::MalformedLine {
                        path: self.path.clone(),
                        line: self.line,
                        source,
                    },
                }),
            };
        }
    }
}

impl CanBus for CandumpReplay {
    async fn recv(&mut self) -> Result<ReceivedFrame, CanError> {
        let received = match self.pending.take() {
            Some(received) => received,
            None => self.read_frame().await?,
        };
        if let Some(pacer) = &mut self.pacer {
            let due = pacer.due(received.timestamp_us, Instant::now());
            self.pending = Some(received);
            tokio::time::sleep_until(due).await;
            self.pending = None;
        }
        Ok(received)
    }

    /// Accepts and drops the frame.
    async fn send(&mut self, _frame: CanFrame) -> Result<(), CanError> {
        Ok(())
    }
}

/// Maps log timestamps to wall-clock instants: the first frame is due when it is read,
/// each later one as long after it as it was recorded. Pure, so the spacing is tested
/// without waiting.
#[derive(Debug, Default)]
struct Pacer {
    /// The first frame's timestamp and the instant it was due.
    origin: Option<(u64, Instant)>,
}

impl Pacer {
    /// When the frame recorded at `timestamp_us` is due. A timestamp earlier than the
    /// first one (a log out of order) is due at once.
    fn due(&mut self, timestamp_us: u64, now: Instant) -> Instant {
        let (origin_us, origin_at) = *self.origin.get_or_insert((timestamp_us, now));
        origin_at + Duration::from_micros(timestamp_us.saturating_sub(origin_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_frames_as_recorded() {
        let mut pacer = Pacer::default();
        let start = Instant::now();
        assert_eq!(pacer.due(1_700_000_000_000_000, start), start);
        let later = start + Duration::from_secs(3); // whenever the next one is read
        assert_eq!(
            pacer.due(1_700_000_000_250_000, later),
            start + Duration::from_millis(250)
        );
        assert_eq!(
            pacer.due(1_700_000_001_000_000, later),
            start + Duration::from_secs(1)
        );
    }

    #[test]
    fn pacer_delivers_out_of_order_frames_at_once() {
        let mut pacer = Pacer::default();
        let start = Instant::now();
        pacer.due(1_000_000, start);
        assert_eq!(pacer.due(500_000, start + Duration::from_millis(1)), start);
    }
}
