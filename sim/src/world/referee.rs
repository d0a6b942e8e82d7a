//! The referee: checks the physical part of the safety invariants (DESIGN.md §2) on the
//! ground truth at every physics step, and records each violation once, when it begins.
//!
//! - S1: a module is connected to at most one island. Each simulated module has one
//!   contactor to its own segment's bus, so this holds by construction; the ownership
//!   half of S1 (only the island whose gun owns it) is the cluster's to check.
//! - S2: at most one energised gun (GC closed onto a connected EV) per island.
//! - S3: a tie closes only across less than 20 V, or with both sides below 60 V.
//! - S4: no contactor opens above 5 A unless the host (or the PLC watchdog) flagged an
//!   emergency.
//! - S5: a gun contactor closes only with authorisation Accepted, the lock confirmed and
//!   the bus matched to the EV's battery.
//! - Modules: no module delivers more than its rated current.
//! - S9: a host that keeps commanding a contactor closed after its weld was reported.

use std::collections::BTreeSet;

use serde::Serialize;

/// Two sides of a tie may differ by this much when it closes (S3).
pub const TIE_MATCH_V: f64 = 20.0;
/// Below this a bus counts as de-energised (S3).
pub const DEENERGISED_V: f64 = 60.0;
/// A reported weld gives the host this long to stop commanding the contactor closed.
pub const WELD_GRACE_MS: u64 = 1_000;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Simulation time it was seen, ms.
    pub time_ms: u64,
    /// `S2`, `S3`, `S4`, `S5`, `S9` or `module_overcurrent`.
    pub invariant: String,
    /// What it is about: `tie 2-3`, `segment 1 gc`, `module 4`, `island 0-1`.
    pub subject: String,
    /// The evidence.
    pub detail: String,
}

/// Records violations, and remembers which conditions are ongoing so that a lasting
/// condition is reported once, not at every step.
#[derive(Debug, Default)]
pub struct Referee {
    /// Every violation so far.
    violations: Vec<Violation>,
    /// Index of the first violation not yet polled.
    polled: usize,
    /// Ongoing conditions (invariant, subject), reported already.
    ongoing: BTreeSet<(String, String)>,
}

impl Referee {
    /// Records a one-off event (a contactor moved when it should not have).
    pub fn event(&mut self, time_ms: u64, invariant: &str, subject: String, detail: String) {
        self.violations.push(Violation {
            time_ms,
            invariant: invariant.to_owned(),
            subject,
            detail,
        });
    }

    /// Records a lasting condition when it begins; `holds` false ends it.
    pub fn condition(
        &mut self,
        time_ms: u64,
        invariant: &str,
        subject: String,
        holds: bool,
        detail: impl FnOnce() -> String,
    ) {
        let key = (invariant.to_owned(), subject);
        if !holds {
            self.ongoing.remove(&key);
        } else if !self.ongoing.contains(&key) {
            self.violations.push(Violation {
                time_ms,
                invariant: key.0.clone(),
                subject: key.1.clone(),
                detail: detail(),
            });
            self.ongoing.insert(key);
        }
    }

    /// Forgets ongoing conditions whose subject is not in `alive` for `invariant`, so
    /// they are reported again if they come back.
    pub fn retain_ongoing(&mut self, invariant: &str, alive: &BTreeSet<String>) {
        self.ongoing
            .retain(|(inv, subject)| inv != invariant || alive.contains(subject));
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The next violation not yet polled.
    pub fn poll(&mut self) -> Option<Violation> {
        let violation = self.violations.get(self.polled).cloned();
        self.polled += usize::from(violation.is_some());
        violation
    }
}

/// Whether closing a tie between buses at `a` and `b` volts keeps S3.
pub fn tie_close_allowed(a: f64, b: f64) -> bool {
    (a < DEENERGISED_V && b < DEENERGISED_V) || (a - b).abs() <= TIE_MATCH_V
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_condition_is_reported_once_per_occurrence() {
        let mut referee = Referee::default();
        for t in 0..5 {
            referee.condition(t, "S2", "island 0-1".into(), true, || "two guns".into());
        }
        referee.condition(5, "S2", "island 0-1".into(), false, String::new);
        referee.condition(6, "S2", "island 0-1".into(), true, || "again".into());
        let times: Vec<u64> = std::iter::from_fn(|| referee.poll())
            .map(|v| v.time_ms)
            .collect();
        assert_eq!(times, [0, 6]);
    }

    #[test]
    fn tie_rule_matches_s3() {
        assert!(tie_close_allowed(0.0, 59.0));
        assert!(tie_close_allowed(400.0, 415.0));
        assert!(!tie_close_allowed(400.0, 300.0));
        assert!(!tie_close_allowed(0.0, 100.0));
    }
}
