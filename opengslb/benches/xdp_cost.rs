//! `cargo xtask bench`'s cost section: ns per packet of the XDP program for each query kind, by
//! `BPF_PROG_TEST_RUN` one fresh frame per run (`tests/common/cost.rs`), next to the floor program (the
//! least an XDP responder does), and the verifier's instruction count.
//!
//! `xdp_cost --json-out FILE [--smoke]` writes the section; `xdp_cost --attach-floor IFACE` attaches the
//! floor program to IFACE (native mode, else skb), prints `attached`, and detaches on SIGTERM or SIGINT,
//! for the traffic bench to measure it under load. Needs root.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{fmt::Write as _, path::PathBuf};

use aya::programs::xdp::XdpMode;
use common::cost::{Programs, cases, floor_program, load_floor, measure};
use serde_json::json;

/// The A answer's goals: by the measure, and next to the floor in the same run.
const GOAL_NS: f64 = 150.0;
const GOAL_FLOOR_RATIO: f64 = 1.2;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(iface) = value("--attach-floor") {
        return attach_floor(&iface);
    }
    let Some(out) = value("--json-out").map(PathBuf::from) else {
        eprintln!("usage: xdp_cost --json-out FILE [--smoke] | --attach-floor IFACE");
        std::process::exit(2);
    };
    let smoke = args.iter().any(|a| a == "--smoke");
    common::require_root();
    common::pin_to_cpu0();
    let (packets, rounds) = if smoke { (500, 3) } else { (10_000, 15) };
    let mut p = Programs::load(None);
    let verified = p.verified_instructions();
    let cases = cases();
    eprintln!(
        "xdp_cost: {} kinds, {rounds} rounds of {packets} runs",
        cases.len()
    );
    let costs = measure(&mut p, &cases, packets, rounds);
    let floor = cases
        .iter()
        .zip(&costs)
        .find(|(c, _)| c.floor)
        .map(|(_, c)| *c)
        .expect("a floor case");
    let a = costs[0];

    let mut md = String::new();
    let _ = writeln!(md, "### Cost per query in the XDP program\n");
    let _ = writeln!(
        md,
        "ns per packet by the kernel's accounting (`BPF_ENABLE_STATS`: `run_time_ns / run_cnt`), each run \
         one `BPF_PROG_TEST_RUN` on a fresh copy of the frame, {rounds} rounds of {packets} runs per kind, \
         the kinds interleaved, pinned to CPU 0; the median and the lowest round. The floor is our minimal \
         XDP_TX responder (`opengslb-ebpf/src/floor.rs`: IPv4, one fixed record appended, headers turned \
         around, one counter). Every answer also counts its name for `opengslb_dns_queries_total`: that \
         count is the entry's rotation counter, which the program kept before, so it adds no instruction. \
         The rate-limited rows run with response rate limiting on (`dns.rate_limit`): a limit never \
         reached (the cost of keeping the client's bucket), and one reached, the response then dropped or \
         sent truncated.\n"
    );
    let _ = writeln!(md, "| query | median ns | lowest ns | median ÷ floor |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    let mut json_cases = Vec::new();
    for (case, c) in cases.iter().zip(&costs) {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.2} |",
            case.name,
            c.median,
            c.min,
            c.median / floor.median
        );
        if !case.floor {
            json_cases.push(json!({"name": case.name, "median_ns": c.median, "min_ns": c.min}));
        }
    }
    let _ = writeln!(
        md,
        "\nThe verifier processed {verified} instructions for the program (its limit is 1,000,000).\n\n\
         Standalone: `cargo bench -p opengslb --bench xdp_cost -- --json-out F` (as root)."
    );
    let ratio = a.median / floor.median;
    // In the form `cargo xtask bench` reports its own goals in: how far off goes in `missed_by`.
    let goals = [
        goal(
            "XDP A answer, ns per packet (test run, median)",
            &format!("≤ {GOAL_NS:.0} ns"),
            &format!("{:.0} ns", a.median),
            (a.median > GOAL_NS).then(|| {
                format!(
                    "{:.0} ns ({:.1}× the target)",
                    a.median - GOAL_NS,
                    a.median / GOAL_NS
                )
            }),
        ),
        goal(
            "XDP A answer ÷ minimal responder (test run, medians)",
            &format!("≤ {GOAL_FLOOR_RATIO}×"),
            &format!("{ratio:.2}× ({:.0} vs {:.0} ns)", a.median, floor.median),
            (ratio > GOAL_FLOOR_RATIO).then(|| format!("{:.2}×", ratio - GOAL_FLOOR_RATIO)),
        ),
    ];
    let doc = json!({
        "section": "XDP cost per query",
        "markdown": md,
        "goals": goals,
        "figures": {
            "cases": json_cases,
            "floor": {"median_ns": floor.median, "min_ns": floor.min},
            "verified_instructions": verified,
            "packets": packets,
            "rounds": rounds,
        },
    });
    std::fs::write(&out, serde_json::to_vec_pretty(&doc).unwrap()).expect("writing --json-out");
    eprint!("{md}");
}

/// A goal line: met when `missed_by` (how far off) is `None`.
fn goal(name: &str, target: &str, value: &str, missed_by: Option<String>) -> serde_json::Value {
    json!({"name": name, "target": target, "value": value, "met": missed_by.is_none(),
           "missed_by": missed_by})
}

/// Attaches the floor program to `iface` until SIGTERM or SIGINT.
fn attach_floor(iface: &str) {
    common::require_root();
    let bytes = opengslb::xdp::object::bytes().expect("an XDP object");
    let mut ebpf = load_floor(bytes);
    let prog = floor_program(&mut ebpf);
    let mode = match prog.attach(iface, XdpMode::Driver) {
        Ok(_) => "driver",
        Err(_) => {
            prog.attach(iface, XdpMode::Skb)
                .expect("attaching the floor program");
            "skb"
        }
    };
    // SAFETY: plain signal-mask calls on this thread's own set; sigwait then takes the signal.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        println!("attached {mode}");
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
    }
    // Dropping the object detaches the program.
    drop(ebpf);
}
