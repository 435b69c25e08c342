//! What the XDP program costs per packet (see `common/cost.rs`), printed for each query kind next to the
//! floor program's cost: the median and the minimum over rounds of ns per packet (docs/xdp.md, "Cost per
//! packet", and `cargo xtask bench` report such figures). `OPENGSLB_COST_PACKETS` (default 10,000) and
//! `OPENGSLB_COST_ROUNDS` (default 15) set the sample size; `OPENGSLB_COST_OBJECT` names another object
//! file to measure instead of the embedded one, so that two builds can be compared on one machine under
//! the same load; `OPENGSLB_COST_ONLY` names the one case to run (e.g. to profile it).
//!
//! Needs root: `cargo xtask test` runs this (`--ignored`).

mod common;

use common::cost::{Programs, cases, measure};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn cost_per_packet() {
    common::require_root();
    common::pin_to_cpu0();
    let packets = env_or("OPENGSLB_COST_PACKETS", 10_000);
    let rounds = env_or("OPENGSLB_COST_ROUNDS", 15);
    let object = std::env::var_os("OPENGSLB_COST_OBJECT").map(|path| {
        println!("measuring {}", path.display());
        std::fs::read(&path).expect("OPENGSLB_COST_OBJECT is readable")
    });
    let mut p = Programs::load(object.as_deref());
    println!(
        "the verifier processed {} instructions",
        p.verified_instructions()
    );
    let mut cases = cases();
    if let Ok(only) = std::env::var("OPENGSLB_COST_ONLY") {
        cases.retain(|c| c.name == only);
        assert!(!cases.is_empty(), "OPENGSLB_COST_ONLY={only} names no case");
    }
    let costs = measure(&mut p, &cases, packets, rounds);
    println!(
        "ns per packet (kernel run_time_ns / run_cnt), over {rounds} rounds of {packets}: median, min"
    );
    for (case, c) in cases.iter().zip(&costs) {
        assert!(c.min > 0.0, "{}: no time accounted", case.name);
        println!("  {:<36} {:>6.1} {:>6.1}", case.name, c.median, c.min);
    }
}
