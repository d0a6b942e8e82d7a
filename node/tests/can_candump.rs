//! candump replay and recording through real files: a log replayed into a recorder comes
//! out as it went in, minus its malformed lines, which are reported with `file:line`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringhub_node::can::{
    BusUri, CanBus, CanError, CandumpRecorder, CandumpReplay, ErrorKind, Pacing, ReconnectPolicy,
    ReconnectingBus, RecordingBus,
};
use ringhub_proto::can::{CanFrame, CanId, LogLine};

/// Longest any single step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, step)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A file in the temp directory, unique to this test, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        Self(
            std::env::temp_dir().join(format!("ringhub-{name}-{}-{nanos}.log", std::process::id())),
        )
    }

    fn with_contents(name: &str, contents: &str) -> Self {
        let file = Self::new(name);
        std::fs::write(&file.0, contents).expect("write temp file");
        file
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const GOOD_LINES: [&str; 3] = [
    "(1700000000.000042) cab-a 123#DEADBEEF",  // standard id
    "(1700000000.001000) cab-a 18010003#0102", // extended id
    "(1700000000.003000) cab-a 7FF#",          // no data
];

/// The good lines with a blank line (skipped silently) and a malformed one (line 4).
fn log_with_a_bad_line() -> String {
    format!(
        "{}\n{}\n\n(1700000000.002000) cab-a 12#00\n{}\n",
        GOOD_LINES[0], GOOD_LINES[1], GOOD_LINES[2]
    )
}

#[tokio::test]
async fn replaying_a_log_into_a_recorder_reproduces_it() {
    let input = TempFile::with_contents("replay-in", &log_with_a_bad_line());
    let output = TempFile::new("replay-out");
    let replay = CandumpReplay::open(input.path(), Pacing::AsFastAsPossible)
        .await
        .unwrap();
    let mut bus = RecordingBus::new(
        replay,
        CandumpRecorder::create(output.path(), "cab-a").unwrap(),
    );

    let mut frames = Vec::new();
    let mut errors = Vec::new();
    loop {
        match within("next line", bus.recv()).await {
            Ok(received) => frames.push(received),
            Err(CanError::Ended { .. }) => break,
            Err(error) => errors.push(error),
        }
    }
    assert_eq!(frames.len(), 3);
    assert_eq!(
        frames[0].frame,
        CanFrame::new(CanId::Standard(0x123), &[0xDE, 0xAD, 0xBE, 0xEF]).unwrap()
    );
    assert_eq!(frames[0].timestamp_us, 1_700_000_000_000_042);
    assert_eq!(frames[1].frame.id(), CanId::Extended(0x1801_0003));

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind(), ErrorKind::Malformed);
    let location = format!("{}:4:", input.path().display());
    assert!(
        errors[0].to_string().contains(&location),
        "{} should name {location}",
        errors[0]
    );

    bus.recorder_mut().flush().unwrap();
    let recorded = std::fs::read_to_string(output.path()).unwrap();
    assert_eq!(recorded.lines().collect::<Vec<_>>(), GOOD_LINES);
}

#[tokio::test]
async fn sent_frames_are_recorded_when_sent() {
    let input = TempFile::with_contents("send-in", "");
    let output = TempFile::new("send-out");
    let replay = CandumpReplay::open(input.path(), Pacing::AsFastAsPossible)
        .await
        .unwrap();
    let mut bus = RecordingBus::new(
        replay,
        CandumpRecorder::create(output.path(), "can0").unwrap(),
    );

    let frame = CanFrame::new(CanId::Extended(0x0C00_0001), &[9, 8, 7]).unwrap();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    within("send", bus.send(frame)).await.unwrap();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    assert!(matches!(
        within("end of empty log", bus.recv()).await,
        Err(CanError::Ended { .. })
    ));
    drop(bus); // flushes

    let recorded = std::fs::read_to_string(output.path()).unwrap();
    let line: LogLine = recorded.trim_end().parse().unwrap();
    assert_eq!((line.interface.as_str(), line.frame), ("can0", frame));
    assert!(
        (before..=after).contains(&u128::from(line.timestamp_us)),
        "{recorded}"
    );
}

#[tokio::test]
async fn paced_replay_spaces_frames_as_recorded_and_fast_replay_does_not() {
    let log = "(1700000000.000000) can0 100#\n(1700000000.150000) can0 101#\n(1700003600.000000) can0 102#\n";
    let input = TempFile::with_contents("paced", log);

    let mut paced = CandumpReplay::open(input.path(), Pacing::Timestamps)
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    within("first paced frame", paced.recv()).await.unwrap();
    within("second paced frame", paced.recv()).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "paced frames came {:?} apart",
        start.elapsed()
    );

    // The third frame is an hour later in the log; as fast as possible, it comes at once.
    let mut fast = CandumpReplay::open(input.path(), Pacing::AsFastAsPossible)
        .await
        .unwrap();
    for _ in 0..3 {
        within("fast frame", fast.recv()).await.unwrap();
    }
}

#[tokio::test]
async fn reconnecting_bus_over_a_replay_counts_skipped_lines_and_stops_at_the_end() {
    let input = TempFile::with_contents("wrapped", &log_with_a_bad_line());
    let uri: BusUri = format!("candump:{}", input.path().display())
        .parse()
        .unwrap();
    let mut bus = ReconnectingBus::new(uri, ReconnectPolicy::default());
    for _ in 0..3 {
        within("frame", bus.recv()).await.unwrap();
    }
    let end = within("end", bus.recv()).await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::Ended);
    let stats = bus.stats();
    assert_eq!(
        (stats.frames_received, stats.errors_of(ErrorKind::Malformed)),
        (3, 1)
    );
    assert_eq!(stats.reconnects, 0);
}

#[tokio::test]
async fn a_missing_log_is_named_in_the_error() {
    let missing = TempFile::new("missing");
    let err = CandumpReplay::open(missing.path(), Pacing::AsFastAsPossible)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string()
            .contains(&missing.path().display().to_string()),
        "{err}"
    );
}
