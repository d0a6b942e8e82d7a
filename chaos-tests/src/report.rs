//! What a run reports: each scenario's outcome with the command that replays it, and
//! for `--long` one table row per scenario (seeds, faults injected, findings, recovery
//! time p50/p99).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::checks::Finding;
use crate::hub::Placement;

/// How one scenario run with one seed ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// Where the nodes ran.
    pub placement: Option<Placement>,
    /// Faults injected.
    pub faults: u32,
    /// What was found wrong.
    pub findings: Vec<Finding>,
    /// From the end of the last fault until every node agreed again.
    pub recovery: Option<Duration>,
    /// The whole run, start to checks.
    pub wall: Duration,
    /// The run's directory (logs, data), kept when it failed.
    pub dir: PathBuf,
}

impl Outcome {
    /// Whether it found nothing wrong.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// The command that replays it.
    pub fn replay(&self) -> String {
        format!(
            "cargo run -p chaos-tests -- --scenario {} --seed {}",
            self.scenario, self.seed
        )
    }

    /// A few lines for the console.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let placement = match self.placement {
            Some(Placement::Namespaces) => "network namespaces",
            Some(Placement::Loopback) => "loopback (no namespaces)",
            None => "not started",
        };
        let recovery = self
            .recovery
            .map_or_else(|| "-".to_owned(), |r| format!("{:.2} s", r.as_secs_f64()));
        let _ = writeln!(
            out,
            "{} {} seed {}: {} fault(s), recovery {recovery}, {:.1} s, on {placement}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.scenario,
            self.seed,
            self.faults,
            self.wall.as_secs_f64(),
        );
        for finding in &self.findings {
            let _ = writeln!(out, "  [{}] {}", finding.check, finding.detail);
        }
        if !self.passed() {
            let _ = writeln!(out, "  seed {}; replay: {}", self.seed, self.replay());
            let _ = writeln!(out, "  logs kept in {}", self.dir.display());
        }
        out
    }
}

/// The `p`th percentile (0-100) of `values`, nearest rank.
pub fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The `--long` table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut rows: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for outcome in outcomes {
        rows.entry(outcome.scenario).or_default().push(outcome);
    }
    let seconds = |d: Option<Duration>| {
        d.map_or_else(|| "-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | seeds | faults injected | violations (all checks) | recovery p50 | recovery p99 | failed seeds |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for (scenario, runs) in rows {
        let faults: u32 = runs.iter().map(|o| o.faults).sum();
        let violations: usize = runs.iter().map(|o| o.findings.len()).sum();
        let recoveries: Vec<Duration> = runs.iter().filter_map(|o| o.recovery).collect();
        let failed: Vec<String> = runs
            .iter()
            .filter(|o| !o.passed())
            .map(|o| o.seed.to_string())
            .collect();
        let _ = writeln!(
            out,
            "| {scenario} | {} | {faults} | {violations} | {} | {} | {} |",
            runs.len(),
            seconds(percentile(&recoveries, 50.0)),
            seconds(percentile(&recoveries, 99.0)),
            if failed.is_empty() {
                "-".to_owned()
            } else {
                failed.join(" ")
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(
            percentile(&[Duration::from_secs(3)], 99.0),
            Some(Duration::from_secs(3))
        );
        assert_eq!(percentile(&[], 50.0), None);
    }
}
