//! `cargo xtask demo` end to end, with the opengslb this test was built with: Demo 2 in network
//! namespaces, its three scenarios on webapp2 (nginx stopped, drain file, agent killed), and the figures
//! its `--json` reports held to what the design promises. A drain loses no request; every change leaves
//! DNS within its bound (the drain at once, a stopped nginx within the agent's checks, a killed agent
//! within its missed reports) and comes back; no answer ever names anything but the three webapps; and
//! XDP answered.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the demo's namespaces.

mod common;

use std::time::Duration;

/// The demo takes about 20 s; compiling xtask first, when it is not built yet, a few minutes more.
const BOUND: Duration = Duration::from_secs(900);

/// Runs `cargo xtask demo --json --opengslb <ours>` and returns its JSON and its stderr.
fn run_demo() -> (serde_json::Value, String) {
    common::xtask::run_json(&["demo", "--json"], BOUND)
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn demo_drains_without_a_failed_request_and_every_scenario_comes_back() {
    common::require_root();
    let (v, log) = run_demo();
    eprintln!("{log}");
    let n = |path: &str| -> u64 {
        path.split('.')
            .fold(&v, |v, key| &v[key])
            .as_u64()
            .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
    };
    println!(
        "demo: {} requests, {} failed; foreign answers {}; XDP answered {}",
        n("requests"),
        n("failed_requests"),
        n("foreign_answers"),
        n("xdp_answered")
    );
    for s in ["nginx_stop", "drain", "agent_kill"] {
        println!(
            "demo: {s}: out of DNS after {} ms, {} failed requests, back after {} ms",
            n(&format!("{s}.removal_ms")),
            n(&format!("{s}.failed_requests")),
            n(&format!("{s}.recovery_ms"))
        );
    }

    assert_eq!(n("drain.failed_requests"), 0, "a drain loses no request");
    assert_eq!(
        n("foreign_answers"),
        0,
        "DNS answers only 10.20.0.21-23, from the start"
    );
    assert!(n("drain.removal_ms") <= 1000, "the drain acts at once");
    // The agent checks every 2 s and re-probes a failure at once: about 2 s, and a loaded machine.
    assert!(n("nginx_stop.removal_ms") <= 7500);
    // Three missed reports (0.9 s), or SWIM's verdict: about 1 s, and a loaded machine.
    assert!(n("agent_kill.removal_ms") <= 9000);
    for s in ["nginx_stop", "drain", "agent_kill"] {
        assert!(n(&format!("{s}.recovery_ms")) <= 21_000, "{s} comes back");
    }
    assert!(n("xdp_answered") > 0, "XDP answered in the kernel");
}
