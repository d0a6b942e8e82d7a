//! The DC side of the ring: which segments form islands, and what voltage and currents
//! each island settles at.
//!
//! Segment i's tie joins it to segment i+1, the last back to 0. An island is a maximal
//! arc of segments joined by closed ties (the whole ring when every tie is closed). In an
//! island, modules are voltage sources with a current limit (they regulate to their
//! setpoint until they hit the limit), EVs are batteries behind an internal resistance,
//! and a bleed resistor discharges the bus when nothing holds it up. The island's voltage
//! is where supply equals demand; it is found by bisection, since supply falls and demand
//! rises with voltage.

/// Output resistance of a module in voltage regulation: small, so parallel modules at
/// one setpoint share current and hit their limits together.
const SOURCE_RESISTANCE_OHM: f64 = 0.02;
/// Discharge resistor across every bus.
const BLEED_RESISTANCE_OHM: f64 = 10_000.0;
/// Time constant of a bus discharging through its bleed resistor.
const DISCHARGE_TAU_MS: f64 = 200.0;

/// A module connected to its segment's bus.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Segment whose bus it feeds.
    pub segment: usize,
    /// Regulated voltage.
    pub voltage: f64,
    /// Current limit.
    pub capability: f64,
}

/// An EV connected to its segment's bus (gun contactor and EV contactors closed).
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Segment whose bus feeds it.
    pub segment: usize,
    /// Battery open-circuit voltage.
    pub ocv: f64,
    /// Battery internal resistance.
    pub resistance: f64,
}

/// An island and its voltage.
#[derive(Debug, Clone, PartialEq)]
pub struct Island {
    /// Segments in ring order, from the start of the arc.
    pub segments: Vec<usize>,
    /// Bus voltage of the whole island.
    pub voltage: f64,
}

/// What the ring settles at.
#[derive(Debug, Clone)]
pub struct Solution {
    /// The islands.
    pub islands: Vec<Island>,
    /// Bus voltage per segment.
    pub bus_voltage: Vec<f64>,
    /// Current per source, in the order given.
    pub source_current: Vec<f64>,
    /// Current per load (positive into the EV), in the order given.
    pub load_current: Vec<f64>,
    /// Current through each tie, positive from segment i to i+1.
    pub tie_current: Vec<f64>,
}

/// The islands formed by `ties_closed` (tie i joins segment i and i+1).
pub fn islands(ties_closed: &[bool]) -> Vec<Vec<usize>> {
    let n = ties_closed.len();
    let Some(open) = ties_closed.iter().position(|closed| !closed) else {
        return vec![(0..n).collect()];
    };
    let start = (open + 1) % n;
    let mut result = Vec::new();
    let mut arc = Vec::new();
    for k in 0..n {
        let segment = (start + k) % n;
        arc.push(segment);
        if !ties_closed[segment] {
            result.push(std::mem::take(&mut arc));
        }
    }
    result
}

/// Solves every island for the step of `dt_ms` that follows `previous_voltage`.
pub fn solve(
    ties_closed: &[bool],
    sources: &[Source],
    loads: &[Load],
    previous_voltage: &[f64],
    dt_ms: u64,
) -> Solution {
    let n = ties_closed.len();
    let mut solution = Solution {
        islands: Vec::new(),
        bus_voltage: vec![0.0; n],
        source_current: vec![0.0; sources.len()],
        load_current: vec![0.0; loads.len()],
        tie_current: vec![0.0; n],
    };
    for segments in islands(ties_closed) {
        let mut member = vec![false; n];
        segments.iter().for_each(|&s| member[s] = true);
        let island_sources: Vec<usize> = (0..sources.len())
            .filter(|&i| member[sources[i].segment])
            .collect();
        let island_loads: Vec<usize> = (0..loads.len())
            .filter(|&i| member[loads[i].segment])
            .collect();
        let capability: f64 = island_sources.iter().map(|&i| sources[i].capability).sum();
        let voltage = if capability <= 0.0 && island_loads.is_empty() {
            let mean =
                segments.iter().map(|&s| previous_voltage[s]).sum::<f64>() / segments.len() as f64;
            mean * (-(dt_ms as f64) / DISCHARGE_TAU_MS).exp()
        } else {
            let source_current = |i: usize, v: f64| {
                ((sources[i].voltage - v) / SOURCE_RESISTANCE_OHM).clamp(0.0, sources[i].capability)
            };
            let load_current = |i: usize, v: f64| (v - loads[i].ocv) / loads[i].resistance;
            let surplus = |v: f64| {
                island_sources
                    .iter()
                    .map(|&i| source_current(i, v))
                    .sum::<f64>()
                    - island_loads
                        .iter()
                        .map(|&i| load_current(i, v))
                        .sum::<f64>()
                    - v / BLEED_RESISTANCE_OHM
            };
            let highest = island_sources
                .iter()
                .map(|&i| sources[i].voltage)
                .chain(island_loads.iter().map(|&i| loads[i].ocv))
                .fold(0.0, f64::max);
            let (mut lo, mut hi) = (0.0, highest + 1.0);
            for _ in 0..60 {
                let mid = (lo + hi) / 2.0;
                if surplus(mid) > 0.0 {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            let v = (lo + hi) / 2.0;
            island_sources
                .iter()
                .for_each(|&i| solution.source_current[i] = source_current(i, v));
            island_loads
                .iter()
                .for_each(|&i| solution.load_current[i] = load_current(i, v));
            v
        };
        segments
            .iter()
            .for_each(|&s| solution.bus_voltage[s] = voltage);
        tie_currents(
            &segments,
            ties_closed,
            sources,
            loads,
            &solution.source_current,
            &solution.load_current,
            &mut solution.tie_current,
        );
        solution.islands.push(Island { segments, voltage });
    }
    solution
}

/// Current through the closed ties of one island: the net injection of the segments on
/// one side. Around a closed ring the split is the one that minimises losses over equal
/// tie resistances: the cumulative sums less their mean.
fn tie_currents(
    segments: &[usize],
    ties_closed: &[bool],
    sources: &[Source],
    loads: &[Load],
    source_current: &[f64],
    load_current: &[f64],
    tie_current: &mut [f64],
) {
    let injection = |s: usize| {
        let supplied: f64 = sources
            .iter()
            .zip(source_current)
            .filter(|(src, _)| src.segment == s)
            .map(|(_, i)| i)
            .sum();
        let drawn: f64 = loads
            .iter()
            .zip(load_current)
            .filter(|(load, _)| load.segment == s)
            .map(|(_, i)| i)
            .sum();
        supplied - drawn
    };
    let mut cumulative = 0.0;
    let mut sums = Vec::with_capacity(segments.len());
    for &s in segments {
        cumulative += injection(s);
        sums.push(cumulative);
    }
    let whole_ring = segments.iter().all(|&s| ties_closed[s]);
    let circulating = if whole_ring {
        sums.iter().sum::<f64>() / sums.len() as f64
    } else {
        0.0
    };
    for (&s, sum) in segments.iter().zip(&sums) {
        if ties_closed[s] {
            tie_current[s] = sum - circulating;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn islands_are_arcs_between_open_ties() {
        assert_eq!(islands(&[true, true, true]), vec![vec![0, 1, 2]]);
        assert_eq!(
            islands(&[false, false, false]),
            vec![vec![1], vec![2], vec![0]]
        );
        assert_eq!(
            islands(&[true, true, false, true, false]),
            vec![vec![3, 4], vec![0, 1, 2]]
        );
        // Tie 3 closes the ring from 3 back to 0; tie 1 is the only gap.
        assert_eq!(islands(&[true, false, true, true]), vec![vec![2, 3, 0, 1]]);
    }

    #[test]
    fn parallel_modules_share_a_current_limited_load() {
        // Two modules at 450 V, 100 A each, feeding an EV at 400 V through 0.05 Ω.
        let sources = [
            Source {
                segment: 0,
                voltage: 450.0,
                capability: 100.0,
            },
            Source {
                segment: 1,
                voltage: 450.0,
                capability: 100.0,
            },
        ];
        let loads = [Load {
            segment: 0,
            ocv: 400.0,
            resistance: 0.05,
        }];
        let s = solve(&[true, false], &sources, &loads, &[0.0, 0.0], 10);
        assert_eq!(s.islands.len(), 1);
        assert!(
            (s.source_current[0] - 100.0).abs() < 1e-6
                && (s.source_current[1] - 100.0).abs() < 1e-6
        );
        // The bleed resistor takes a few tens of milliamps.
        assert!(
            (s.load_current[0] - 200.0).abs() < 0.1,
            "{}",
            s.load_current[0]
        );
        assert!(
            (s.bus_voltage[0] - 410.0).abs() < 0.01,
            "400 V + 200 A × 0.05 Ω"
        );
        // Tie 0 carries segment 1's module current to segment 0 (negative: from 1 to 0).
        assert!(
            (s.tie_current[0] + 100.0).abs() < 0.1,
            "{:?}",
            s.tie_current
        );
        assert_eq!(s.tie_current[1], 0.0, "tie 1 is open");
    }

    #[test]
    fn an_unloaded_bus_sits_at_the_setpoint_and_an_unfed_one_discharges() {
        let sources = [Source {
            segment: 0,
            voltage: 500.0,
            capability: 50.0,
        }];
        let s = solve(&[false, false], &sources, &[], &[0.0, 300.0], 200);
        assert!((s.bus_voltage[0] - 500.0).abs() < 0.1);
        assert!((s.bus_voltage[1] - 300.0 / std::f64::consts::E).abs() < 1e-9);
    }

    #[test]
    fn a_battery_alone_holds_its_bus() {
        let loads = [Load {
            segment: 1,
            ocv: 380.0,
            resistance: 0.05,
        }];
        let s = solve(&[false, false], &[], &loads, &[0.0, 0.0], 10);
        assert!((s.bus_voltage[1] - 380.0).abs() < 0.1);
        assert!(s.load_current[0].abs() < 0.1);
    }

    #[test]
    fn around_a_closed_ring_current_splits_both_ways() {
        // Source on segment 0, load on segment 2 of a 4-segment closed ring: half goes
        // each way round.
        let sources = [Source {
            segment: 0,
            voltage: 450.0,
            capability: 100.0,
        }];
        let loads = [Load {
            segment: 2,
            ocv: 400.0,
            resistance: 0.05,
        }];
        let s = solve(&[true; 4], &sources, &loads, &[0.0; 4], 10);
        assert!((s.tie_current[0] - 50.0).abs() < 0.1, "{:?}", s.tie_current);
        assert!((s.tie_current[1] - 50.0).abs() < 0.1);
        assert!((s.tie_current[2] + 50.0).abs() < 0.1);
        assert!((s.tie_current[3] + 50.0).abs() < 0.1);
    }
}
