//! What the bench targets (`opengslb/benches/`, run by `cargo xtask bench`) share: their command line,
//! stopping on a signal, and the goals of the JSON section each writes (`xtask/src/bench/targets.rs`).

use std::{
    any::Any,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// `--json-out FILE` and whether `--smoke` was given; exits with `NAME --json-out FILE [--smoke]` when
/// there is no file. Anything else (`cargo bench` passes `--bench`, a filter) means nothing here.
pub fn args(name: &str) -> (PathBuf, bool) {
    let mut json_out = None;
    let mut smoke = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json-out" => json_out = args.next().map(PathBuf::from),
            "--smoke" => smoke = true,
            _ => {}
        }
    }
    let Some(json_out) = json_out else {
        eprintln!("usage: {name} --json-out FILE [--smoke]");
        std::process::exit(2);
    };
    (json_out, smoke)
}

/// Set by SIGTERM or SIGINT once [`stop_on_signals`] ran.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// From now on SIGTERM and SIGINT (`cargo xtask bench` past its bound, Ctrl-C) only set a flag: every
/// loop asks [`stopping`] and ends, and what the bench made is removed as it unwinds.
pub fn stop_on_signals() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether a signal asked the bench to stop.
pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Writes the section (pretty JSON) to `path` and says so, with the time since `started`.
pub fn write_section(name: &str, path: &Path, section: &Value, started: Instant) {
    let text = serde_json::to_string_pretty(section).expect("JSON");
    std::fs::write(path, text + "\n").unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!(
        "{name}: done in {:.1} s, wrote {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
}

/// Milliseconds, to the microsecond, for the figures.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A duration as people read it: ms below 10 s.
pub fn show(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

/// A goal of at most `target`: met, or missed by how much, or not measured; values shown by `show`.
pub fn goal(
    name: &str,
    target: Duration,
    value: Option<Duration>,
    show: fn(Duration) -> String,
) -> Value {
    let target_text = if target.subsec_nanos() == 0 {
        format!("≤ {} s", target.as_secs())
    } else {
        format!("≤ {} ms", target.as_millis())
    };
    match value {
        Some(v) => {
            let met = v <= target;
            json!({
                "name": name, "target": target_text, "value": show(v), "met": met,
                "missed_by": (!met).then(|| format!("{} ({:.2}× the target)", show(v - target), v.as_secs_f64() / target.as_secs_f64())),
            })
        }
        None => {
            json!({"name": name, "target": target_text, "value": "not measured", "met": null, "missed_by": null})
        }
    }
}

/// "met", "missed by …" or "not measured".
fn verdict(g: &Value) -> String {
    match (g["met"].as_bool(), g["missed_by"].as_str()) {
        (Some(true), _) => "met".into(),
        (Some(false), Some(by)) => format!("missed by {by}"),
        (Some(false), None) => "missed".into(),
        (None, _) => "not measured".into(),
    }
}

/// The goals as a markdown table, after a blank line.
pub fn goals_table(goals: &[Value]) -> String {
    let mut m = String::from("\n| goal | target | value | |\n|---|---|---|---|\n");
    for g in goals {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} |",
            g["name"].as_str().unwrap_or(""),
            g["target"].as_str().unwrap_or(""),
            g["value"].as_str().unwrap_or(""),
            verdict(g),
        );
    }
    m
}

/// What a panic caught by `catch_unwind` said.
pub fn panic_text(e: &(dyn Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic".to_owned())
}
