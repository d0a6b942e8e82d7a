//! The chaos suite's short profile, as CI runs it (`cargo test -p chaos-tests`): one
//! scenario of each family with a fixed seed (see `chaos_tests::SHORT`), the whole hub
//! as processes, in network namespaces where the machine allows (else on loopback, with
//! the network scenario replaced, and it says so). A few minutes at most; every wait is a
//! condition with a deadline. A failure names the seed and the command that replays it.

use chaos_tests::hub::Bins;
use chaos_tests::{Options, namespaces_available, placement_name, run_all, short_profile};

#[test]
fn the_short_chaos_profile_finds_nothing_wrong() {
    let options = Options {
        namespaces: true,
        build: false,
    };
    let bins = Bins::locate(options.build).expect("the hub's binaries and the CSMS's virtualenv");
    let namespaces = namespaces_available(&options);
    eprintln!(
        "chaos-tests short profile: nodes on {}",
        placement_name(namespaces)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = std::time::Instant::now();
    let outcomes = runtime.block_on(run_all(&short_profile(namespaces), &bins, namespaces));
    eprintln!("short profile: {:.0} s", started.elapsed().as_secs_f64());
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.render())
        .collect();
    assert!(
        failed.is_empty(),
        "the chaos suite found:\n{}",
        failed.join("\n")
    );
}
