//! How long the planner takes against hub size (DESIGN.md §6: a 64-segment / 128-module
//! / 64-gun hub in well under 1 ms). Prints a table: `cargo bench -p ringhub-cluster
//! --bench plan_latency`.
//!
//! Every hub is N guns / 2N modules of 50 kW, every tie fitted, the site limit at 60 %
//! of the modules. Loads: every gun asking 150 kW; a quarter of them asking; one gun
//! alone; and every gun asking with a tenth of the segments' modules dead (the search
//! then may not assume short arcs). Each plan is made from the previous one's contactors.

use std::time::{Duration, Instant};

use ringhub_cluster::planner::{
    Current, GunDemand, ModulePower, PlannerInput, SegmentInput, TieState, plan,
};
use ringhub_cluster::record::Watts;
use ringhub_proto::config::{GunId, ModuleId, SegmentId};

fn hub(segments: u16, asking: impl Fn(u16) -> bool, dead: impl Fn(u16) -> bool) -> PlannerInput {
    PlannerInput {
        site_limit: Watts(u64::from(segments) * 60_000),
        segments: (0..segments)
            .map(|s| SegmentInput {
                id: SegmentId(s),
                in_service: true,
                tie_to_next: TieState::Ok,
                gun: Some(GunDemand {
                    id: GunId(s),
                    max: Watts(350_000),
                    demand: Watts(if asking(s) { 150_000 } else { 0 }),
                }),
                modules: (0..2)
                    .map(|i| ModulePower {
                        id: ModuleId(2 * s + i),
                        available: Watts(if dead(s) { 0 } else { 50_000 }),
                    })
                    .collect(),
            })
            .collect(),
        current: Current::default(),
    }
}

/// p50, p99 and max of planning `input` again and again from its own last plan, within
/// about `budget`.
fn measure(mut input: PlannerInput, budget: Duration) -> (Duration, Duration, Duration, usize) {
    let first = plan(&input);
    input.current = Current::of_planned(&first);
    let mut times = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget || times.len() < 5 {
        let at = Instant::now();
        let planned = plan(&input);
        times.push(at.elapsed());
        std::hint::black_box(planned);
    }
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    (pick(0.5), pick(0.99), times[times.len() - 1], times.len())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 100 } else { 1000 });
    println!("| segments | load | p50 | p99 | max | runs |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    for segments in [6u16, 12, 24, 64, 128, 256, 512] {
        let loads: [(&str, PlannerInput); 4] = [
            ("every gun", hub(segments, |_| true, |_| false)),
            ("a quarter", hub(segments, |s| s % 4 == 0, |_| false)),
            ("one gun", hub(segments, |s| s == 0, |_| false)),
            (
                "every gun, 10 % dead",
                hub(segments, |_| true, |s| s % 10 == 3),
            ),
        ];
        for (load, input) in loads {
            let (p50, p99, max, runs) = measure(input, budget);
            println!("| {segments} | {load} | {p50:.1?} | {p99:.1?} | {max:.1?} | {runs} |");
        }
    }
}
