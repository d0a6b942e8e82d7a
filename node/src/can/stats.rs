//! A bus's traffic and trouble, counted twice: as `metrics` counters for Prometheus, and
//! as plain numbers ([`BusStats`]) on the wrapper, for tests and the operator CLI.
//!
//! | counter | labels |
//! | --- | --- |
//! | `ringhub_can_frames_received_total` | `bus` |
//! | `ringhub_can_frames_sent_total` | `bus` |
//! | `ringhub_can_errors_total` | `bus`, `kind` ([`ErrorKind::as_str`]) |
//! | `ringhub_can_reconnects_total` | `bus` |
//!
//! `bus` is the bus URI. Counter handles are taken when the bus is created, so install
//! the metrics recorder before creating buses.

use std::collections::BTreeMap;

use metrics::{Counter, Unit, counter, describe_counter};

use super::ErrorKind;

const FRAMES_RECEIVED: &str = "ringhub_can_frames_received_total";
const FRAMES_SENT: &str = "ringhub_can_frames_sent_total";
const ERRORS: &str = "ringhub_can_errors_total";
const RECONNECTS: &str = "ringhub_can_reconnects_total";
/// Frames received that the DBC catalog cannot decode, by bus.
pub const DECODE_ERRORS: &str = "ringhub_can_decode_errors_total";

/// Registers the help text and unit of every CAN counter with the installed recorder.
pub fn describe_metrics() {
    describe_counter!(
        FRAMES_RECEIVED,
        Unit::Count,
        "CAN frames received from the bus."
    );
    describe_counter!(FRAMES_SENT, Unit::Count, "CAN frames put on the bus.");
    describe_counter!(
        ERRORS,
        Unit::Count,
        "CAN bus errors, by kind; skipped input included."
    );
    describe_counter!(
        RECONNECTS,
        Unit::Count,
        "Times a dropped CAN bus was opened again."
    );
    describe_counter!(
        DECODE_ERRORS,
        Unit::Count,
        "CAN frames received that the DBC catalog cannot decode (unknown id, bad length or value)."
    );
}

/// What happened on one bus since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Frames delivered to the caller.
    pub frames_received: u64,
    /// Frames the transport accepted.
    pub frames_sent: u64,
    /// Times the bus was opened again after dropping (the first open does not count).
    pub reconnects: u64,
    /// Errors by kind, skipped ones included; kinds never seen are absent.
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl BusStats {
    /// Errors of `kind` so far.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.get(&kind).copied().unwrap_or(0)
    }
}

/// The counters of one bus: the numbers and the metrics, updated together.
#[derive(Debug)]
pub(super) struct Meters {
    /// The `bus` label.
    bus: String,
    /// The numbers.
    stats: BusStats,
    /// `ringhub_can_frames_received_total{bus}`.
    received: Counter,
    /// `ringhub_can_frames_sent_total{bus}`.
    sent: Counter,
    /// `ringhub_can_reconnects_total{bus}`.
    reconnects: Counter,
}

impl Meters {
    pub(super) fn new(bus: String) -> Self {
        Self {
            received: counter!(FRAMES_RECEIVED, "bus" => bus.clone()),
            sent: counter!(FRAMES_SENT, "bus" => bus.clone()),
            reconnects: counter!(RECONNECTS, "bus" => bus.clone()),
            stats: BusStats::default(),
            bus,
        }
    }

    pub(super) fn stats(&self) -> &BusStats {
        &self.stats
    }

    pub(super) fn frame_received(&mut self) {
        self.stats.frames_received += 1;
        self.received.increment(1);
    }

    pub(super) fn frame_sent(&mut self) {
        self.stats.frames_sent += 1;
        self.sent.increment(1);
    }

    pub(super) fn reconnected(&mut self) {
        self.stats.reconnects += 1;
        self.reconnects.increment(1);
    }

    pub(super) fn error(&mut self, kind: ErrorKind) {
        *self.stats.errors.entry(kind).or_default() += 1;
        counter!(ERRORS, "bus" => self.bus.clone(), "kind" => kind.as_str()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString};

    use super::*;

    /// Keeps every counter as `name{label=value,…}` → value.
    #[derive(Debug, Default)]
    struct TestRecorder {
        /// The counters registered so far.
        counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    }

    impl TestRecorder {
        fn value(&self, key: &str) -> u64 {
            let counters = self.counters.lock().unwrap();
            counters
                .get(key)
                .unwrap_or_else(|| panic!("no counter {key}; have {:?}", counters.keys()))
                .load(Ordering::Relaxed)
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<_> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Counter::from_arc(
                self.counters
                    .lock()
                    .unwrap()
                    .entry(name)
                    .or_default()
                    .clone(),
            )
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn numbers_and_metrics_count_the_same_events() {
        let recorder = TestRecorder::default();
        let stats = metrics::with_local_recorder(&recorder, || {
            let mut meters = Meters::new("socketcan:can0".into());
            meters.frame_received();
            meters.frame_received();
            meters.frame_sent();
            meters.reconnected();
            meters.error(ErrorKind::Malformed);
            meters.error(ErrorKind::Malformed);
            meters.error(ErrorKind::Closed);
            meters.stats().clone()
        });

        assert_eq!(
            (stats.frames_received, stats.frames_sent, stats.reconnects),
            (2, 1, 1)
        );
        assert_eq!(
            (
                stats.errors_of(ErrorKind::Malformed),
                stats.errors_of(ErrorKind::Closed)
            ),
            (2, 1)
        );
        assert_eq!(stats.errors_of(ErrorKind::Io), 0);

        assert_eq!(
            recorder.value("ringhub_can_frames_received_total{bus=socketcan:can0}"),
            2
        );
        assert_eq!(
            recorder.value("ringhub_can_frames_sent_total{bus=socketcan:can0}"),
            1
        );
        assert_eq!(
            recorder.value("ringhub_can_reconnects_total{bus=socketcan:can0}"),
            1
        );
        assert_eq!(
            recorder.value("ringhub_can_errors_total{bus=socketcan:can0,kind=malformed}"),
            2
        );
        assert_eq!(
            recorder.value("ringhub_can_errors_total{bus=socketcan:can0,kind=closed}"),
            1
        );
    }
}
