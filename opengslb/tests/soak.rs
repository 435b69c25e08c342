//! The soak: fifty agents under a steady query load (dnsperf across a veth pair, XDP and userspace
//! answering) drain and return at random, through their drain files and control sockets, while the
//! overwatch reloads its config every 3 s, an agent is killed with SIGKILL and started again, and
//! overrides are set and cleared through the API. For about a minute after a 10 s warm-up: every drain
//! is out of both DNS paths within 1 s of being asked for, every change and return shows up in DNS and
//! every drain in the agents' reports, no reload is refused or lost, no log has an ERROR line, and the
//! overwatch's resident memory grows by less than half after the warm-up. The work is in
//! `common/soak.rs`, shared with the 10-minute `soak` bench target; `OPENGSLB_SOAK_SECONDS` sets the
//! soak's length here.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). All traffic stays inside the namespaces it
//! creates.

mod common;

use std::{path::Path, time::Duration};

use common::soak::{self, Settings, ms};

/// The bounds: a drain out of DNS within 1 s, memory growth under 50 % after the warm-up.
const DRAIN_BOUND: Duration = Duration::from_secs(1);
const RSS_GROWTH_BOUND: f64 = 50.0;

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn fifty_agents_churn_under_load_through_reloads_kills_and_overrides() {
    common::require_root();
    let secs: u64 = std::env::var("OPENGSLB_SOAK_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("OPENGSLB_SOAK_SECONDS: a number of seconds")
        })
        .unwrap_or(60);
    let f = soak::run(&Settings {
        bin: Path::new(env!("CARGO_BIN_EXE_opengslb")).to_owned(),
        tag: "soak",
        warmup: Duration::from_secs(10),
        soak: Duration::from_secs(secs),
        qps: 2_000,
        seed: 0x50a6_0001,
        kill_every: Duration::from_secs(60),
    });
    println!("{}", f.summary());
    let problems = f.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let d = f.drain_stats().expect("drains were measured");
    // About four changes a second, most of them drains: far fewer means the churn did not run.
    assert!(
        d.n as u64 >= secs / 2,
        "only {} drains in {secs} s of soak",
        d.n
    );
    assert!(
        d.max <= DRAIN_BOUND,
        "every drain out of DNS within {DRAIN_BOUND:?}: the slowest took {:.1} ms (p99 {:.1} ms)",
        ms(d.max),
        ms(d.p99)
    );
    for kind in ["override set", "override cleared", "SIGKILL", "restart"] {
        assert!(
            f.took.get(kind).is_some_and(|t| !t.is_empty()),
            "no {kind} in the churn"
        );
    }
    let growth = f.rss_growth_percent();
    assert!(
        growth < RSS_GROWTH_BOUND,
        "the overwatch's VmRSS grew {growth:.1} % after the warm-up ({} -> {} KiB)",
        f.rss_start_kib,
        f.rss_end_kib
    );
}

/// The log check finds what it looks for, and only that.
#[test]
fn error_lines_are_found_in_text_logs() {
    let log = "2026-12-03T09:00:00.000001Z  INFO opengslb::agent: reporting status=\"draining\"\n\
               2026-12-03T09:00:00.000002Z ERROR opengslb::overwatch::publisher: updating the XDP map failed\n\
               2026-12-03T09:00:00.000003Z  WARN opengslb::overwatch: an ERROR in a message\n";
    let found = soak::errors(log, "overwatch");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("updating the XDP map failed"));
}
