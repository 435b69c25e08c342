//! `cargo xtask bench --smoke` end to end, with the opengslb this test was built with: every server
//! measured at tiny rates for a second each, every figure present and sane, the report and its plot
//! written where asked (never to docs/), and nothing left behind: namespaces, XDP programs on them,
//! `kernel.bpf_stats_enabled`, `net.core.rmem_default`. Speed is not judged here: the figures of a smoke run mean nothing.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the bench's namespaces.

mod common;

use std::{fs, time::Duration};

use common::netns::TempDir;
use serde_json::Value;

/// The smoke run measures for about a minute; compiling xtask first, when it is not built yet, a few
/// minutes more.
const BOUND: Duration = Duration::from_secs(900);

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn the_bench_measures_every_server_and_cleans_up() {
    common::require_root();
    let stats_before = fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap();
    let rmem_before = fs::read_to_string("/proc/sys/net/core/rmem_default").unwrap();
    let dir = TempDir::new("bench");
    let out = dir.0.join("benchmarks.md");
    let out_arg = out.display().to_string();
    let (v, log) =
        common::xtask::run_json(&["bench", "--smoke", "--json", "--out", &out_arg], BOUND);
    eprintln!("{log}");

    assert_eq!(v["smoke"], true);
    let servers = v["servers"].as_object().expect("servers");
    for key in [
        "ours_xdp_driver",
        "ours_xdp_skb",
        "ours_userspace",
        "knot_xdp",
        "knot_udp",
    ] {
        let s = &servers[key];
        assert!(s["skipped"].is_null(), "{key} was skipped: {s}");
        let steps = s["steps"].as_array().expect("steps");
        assert!(!steps.is_empty(), "{key}: no throughput steps");
        for step in steps {
            let f = num(&step["answered_fraction"], "answered_fraction");
            assert!((0.0..=1.0).contains(&f), "{key}: {step}");
            assert!(
                num(&step["sent"], "sent") > 0.0,
                "{key}: kxdpgun sent nothing: {step}"
            );
        }
        let fixed = &s["fixed"];
        assert!(num(&fixed["answered"], "answered") > 0.0, "{key}: {fixed}");
        assert!(
            num(&fixed["cpu_ns_per_answer"], "cpu") > 0.0,
            "{key}: {fixed}"
        );
        if key != "ours_userspace" && key != "knot_udp" {
            assert!(
                num(&fixed["xdp_ns_per_packet"], "ns per packet") > 0.0,
                "{key}: {fixed}"
            );
        }
        if key != "ours_xdp_skb" {
            let l = &s["latency"];
            assert!(num(&l["avg_us"], "avg") > 0.0, "{key}: {l}");
            assert!(num(&l["completed"], "completed") > 0.0, "{key}: {l}");
            assert!(
                num(&l["p99_us"], "p99") >= num(&l["p50_us"], "p50"),
                "{key}: {l}"
            );
        }
    }
    // With the xdp_cost bench target there, the floor program is measured under load too.
    if v["sections"].get("xdp_cost").is_some() {
        let floor = &servers["floor"];
        assert!(floor["skipped"].is_null(), "{floor}");
        assert!(
            num(&floor["fixed"]["xdp_ns_per_packet"], "floor ns per packet") > 0.0,
            "{floor}"
        );
    }
    let goals = v["goals"].as_array().expect("goals");
    assert!(goals.len() >= 5, "{goals:?}");
    for g in goals {
        assert!(g["name"].is_string() && g["value"].is_string(), "{g}");
    }
    for (name, s) in v["sections"].as_object().expect("sections") {
        assert!(s["markdown"].is_string(), "section {name}: {s}");
    }

    let report = fs::read_to_string(&out).expect("the report");
    for heading in [
        "## Machine",
        "## Goals",
        "## Throughput",
        "## Cost per query under load",
        "## Latency",
    ] {
        assert!(report.contains(heading), "no {heading} in the report");
    }
    let svg = fs::read_to_string(dir.0.join("bench/answered.svg")).expect("the plot");
    assert!(svg.starts_with("<svg"), "{svg}");

    let ns = common::netns::sh(&["ip", "netns", "list"]);
    let pid_prefix = "ogsbench-";
    let left: Vec<String> = String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter(|l| l.starts_with(pid_prefix))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap(),
        stats_before,
        "kernel.bpf_stats_enabled restored"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/core/rmem_default").unwrap(),
        rmem_before,
        "net.core.rmem_default restored"
    );
}
