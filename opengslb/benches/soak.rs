//! The soak, long: the `soak` test's run (`tests/common/soak.rs`) for ten minutes after a minute of
//! warm-up, with the release binary, judged against the bench's goals: no drained backend answered
//! later than 200 ms after its drain (p99 and max), and the overwatch's resident memory growing by less
//! than 10 % after the warm-up. Writes one JSON object (`--json-out FILE`); `--minutes N` sets the
//! soak's length, `--smoke` soaks 10 s after 5 s of warm-up.
//!
//! Needs root (network namespaces, XDP). `cargo xtask bench` runs it (`--only soak` alone);
//! standalone: `cargo bench -p opengslb --bench soak -- --json-out F`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use common::{
    bench,
    soak::{self, Figures, Settings, Stats, ms},
};
use serde_json::{Value, json};

const DRAIN_GOAL: Duration = Duration::from_millis(200);
const RSS_GOAL_PERCENT: f64 = 10.0;

fn main() {
    let mut json_out = None;
    let mut smoke = false;
    let mut minutes = 10.0_f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json-out" => json_out = args.next().map(PathBuf::from),
            "--smoke" => smoke = true,
            "--minutes" => {
                minutes = args
                    .next()
                    .and_then(|m| m.parse().ok())
                    .filter(|m: &f64| m.is_finite() && *m > 0.0)
                    .unwrap_or_else(|| {
                        eprintln!("soak: --minutes takes a positive number");
                        std::process::exit(2);
                    });
            }
            // `cargo bench` passes `--bench`; a filter or other harness flags mean nothing here.
            _ => {}
        }
    }
    let Some(json_out) = json_out else {
        eprintln!("usage: soak --json-out FILE [--smoke] [--minutes N]");
        std::process::exit(2);
    };
    let (warmup, length) = if smoke {
        (Duration::from_secs(5), Duration::from_secs(10))
    } else {
        (
            Duration::from_secs(60),
            Duration::from_secs_f64(minutes * 60.0),
        )
    };
    let settings = Settings {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_opengslb")),
        tag: "soakb",
        warmup,
        soak: length,
        qps: 2_000,
        seed: 0x50a6_0002,
        kill_every: Duration::from_secs(60),
    };
    eprintln!(
        "soak: {} s of warm-up, then {} s of soak",
        warmup.as_secs(),
        length.as_secs()
    );
    // A failure to set up is reported as the section's outcome rather than losing the bench's run;
    // the lab's guards take everything down as the panic unwinds.
    let out = match std::panic::catch_unwind(|| soak::run(&settings)) {
        Ok(f) => {
            eprint!("{}", f.summary());
            section(&settings, smoke, &f)
        }
        Err(e) => {
            let why = bench::panic_text(&*e);
            json!({
                "section": "Soak",
                "markdown": format!("### Soak\n\nThe soak did not run: {why}\n"),
                "goals": [
                    goal_ms("Soak: drained backend answered after its drain, p99", None),
                    goal_ms("Soak: drained backend answered after its drain, max", None),
                    goal_rss(None),
                ],
                "figures": {"error": why},
            })
        }
    };
    let text = serde_json::to_string_pretty(&out).expect("JSON");
    std::fs::write(&json_out, text + "\n")
        .unwrap_or_else(|e| panic!("writing {}: {e}", json_out.display()));
}

fn show(d: Duration) -> String {
    format!("{:.1} ms", ms(d))
}

fn goal_ms(name: &str, value: Option<Duration>) -> Value {
    bench::goal(name, DRAIN_GOAL, value, show)
}

fn goal_rss(f: Option<&Figures>) -> Value {
    let name = "Soak: overwatch RSS growth after the warm-up";
    let target = format!("< {RSS_GOAL_PERCENT:.0} %");
    match f.filter(|f| f.rss_start_kib > 0 && f.rss_end_kib > 0) {
        Some(f) => {
            let g = f.rss_growth_percent();
            let met = g < RSS_GOAL_PERCENT;
            json!({"name": name, "target": target,
                   "value": format!("{g:+.1} % ({} → {} KiB)", f.rss_start_kib, f.rss_end_kib),
                   "met": met, "missed_by": (!met).then(|| format!("{:.1} points", g - RSS_GOAL_PERCENT))})
        }
        None => {
            json!({"name": name, "target": target, "value": "not measured", "met": null, "missed_by": null})
        }
    }
}

fn stats_json(s: &Stats) -> Value {
    json!({"n": s.n, "p50_ms": ms(s.p50), "p99_ms": ms(s.p99), "max_ms": ms(s.max)})
}

fn section(set: &Settings, smoke: bool, f: &Figures) -> Value {
    let drain = f.drain_stats();
    let problems = f.problems();
    let goals = vec![
        goal_ms(
            "Soak: drained backend answered after its drain, p99",
            drain.map(|d| d.p99),
        ),
        goal_ms(
            "Soak: drained backend answered after its drain, max",
            drain.map(|d| d.max),
        ),
        goal_rss(Some(f)),
    ];
    let mut m = String::from("### Soak\n\n");
    let _ = write!(
        m,
        "{agents} agents (real `opengslb agent` processes, each checking a TCP listener of its own) \
         report five names to one overwatch, in a network namespace the bench creates; dnsperf sends \
         {qps} A queries a second across a veth pair (XDP answers them), and a poller asks each name \
         with a change pending every few ms (the others in turn, every ~5 ms) plainly (XDP) and with EDNS Client \
         Subnet (userspace). Meanwhile a change every \
         100–400 ms: a drain by the drain file or the control socket, or an API override, each returned \
         0.3–2.5 s after DNS shows it out; a SIGHUP every 3 s; one agent killed with SIGKILL and \
         restarted every minute. {warm} s of warm-up, then {soak} s measured for memory; the times \
         cover both. A change is in DNS at the first poll round sent after it was asked for in which \
         both paths agree with it.\n\n",
        agents = soak::AGENTS,
        qps = set.qps,
        warm = set.warmup.as_secs(),
        soak = set.soak.as_secs(),
    );
    m.push_str(
        "| change | asked | seen in DNS | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (kind, times) in &f.took {
        if let Some(s) = Stats::of(times) {
            let _ = writeln!(
                m,
                "| {kind} | {} | {} | {} | {} | {} |",
                f.asked.get(kind).copied().unwrap_or(0),
                s.n,
                show(s.p50),
                show(s.p99),
                show(s.max)
            );
        }
    }
    let _ = write!(
        m,
        "\n| figure | value |\n|---|---|\n\
         | dnsperf: sent, answered | {sent}, {done} in {secs:.0} s ({qps:.0} qps) |\n\
         | XDP: plain A answered, ECS queries passed to userspace | {xa}, {xe} |\n\
         | poll rounds (a path silent for 250 ms) | {polls} ({silent}) |\n\
         | resolution: how much earlier a change may have reached DNS than measured, p50 / max | {res} |\n\
         | rounds missing a backend that was back in DNS | {abs} |\n\
         | overwatch VmRSS after the warm-up → end (most seen) | {r0} → {r1} KiB ({g:+.1} %; {rmax} KiB) |\n\
         | SIGHUPs, logged reloads, `reloads_total{{success}}` | {rs}, {rl}, {rok} |\n\
         | drains asked, draining reports logged by the agents | {da}, {dr} |\n\
         | agent reports by result | {rep:?} |\n\
         | kills, agents declared dead | {kills}, {deaths} |\n\
         | `/api/v1/overwatch/stats` at the end | {api} |\n\
         | ERROR lines in the logs | {errs} |\n\
         | failures | {fails} |\n",
        sent = f.load.sent,
        done = f.load.completed,
        secs = f.load.seconds,
        qps = f.load.completed as f64 / f.load.seconds.max(1e-9),
        xa = f.xdp_answered,
        xe = f.xdp_passed_ecs,
        polls = f.polls,
        silent = f.poll_timeouts,
        res = f.resolution.map_or("–".into(), |r| format!(
            "{} / {}",
            show(r.p50),
            show(r.max)
        )),
        abs = f.absences,
        r0 = f.rss_start_kib,
        r1 = f.rss_end_kib,
        g = f.rss_growth_percent(),
        rmax = f.rss_max_kib,
        rs = f.reloads_sent,
        rl = f.reloads_logged,
        rok = f.reloads_success,
        da = f.drains_asked,
        dr = f.drains_reported,
        rep = f.reports,
        kills = f.kills,
        deaths = f.deaths,
        api = f.api_end,
        errs = f.error_lines.len(),
        fails = problems.len(),
    );
    if !problems.is_empty() {
        m.push_str("\nWhat did not hold:\n\n");
        for p in problems.iter().take(10) {
            let _ = writeln!(m, "- {}", p.lines().next().unwrap_or(""));
        }
    }
    m.push_str(&bench::goals_table(&goals));
    let _ = write!(
        m,
        "\nRun by `cargo xtask bench` (alone: `cargo xtask bench --only soak [--soak-minutes N]`); \
         standalone, as root: `cargo bench -p opengslb --bench soak -- --json-out soak.json{}`.\n",
        if smoke { " --smoke" } else { "" }
    );
    let took: serde_json::Map<String, Value> = f
        .took
        .iter()
        .filter_map(|(k, v)| Some(((*k).to_owned(), stats_json(&Stats::of(v)?))))
        .collect();
    json!({
        "section": "Soak",
        "markdown": m,
        "goals": goals,
        "figures": {
            "smoke": smoke,
            "warmup_s": set.warmup.as_secs_f64(),
            "soak_s": set.soak.as_secs_f64(),
            "drain_ms": drain.as_ref().map(stats_json),
            "changes_ms": took,
            "asked": f.asked,
            "dnsperf": {"sent": f.load.sent, "completed": f.load.completed, "seconds": f.load.seconds},
            "xdp_answered": f.xdp_answered,
            "xdp_passed_ecs": f.xdp_passed_ecs,
            "polls": f.polls,
            "poll_timeouts": f.poll_timeouts,
            "resolution_ms": f.resolution.as_ref().map(stats_json),
            "absences": f.absences,
            "rss_kib": {"start": f.rss_start_kib, "end": f.rss_end_kib, "max": f.rss_max_kib},
            "rss_growth_percent": f.rss_growth_percent(),
            "reloads": {"sent": f.reloads_sent, "logged": f.reloads_logged, "success": f.reloads_success, "failure": f.reloads_failure},
            "drains": {"asked": f.drains_asked, "reported": f.drains_reported},
            "reports": f.reports,
            "kills": f.kills,
            "deaths": f.deaths,
            "error_lines": f.error_lines,
            "problems": problems,
            "seconds": f.elapsed.as_secs_f64(),
        },
    })
}
