//! The shared store, measured: how long an operator's change made through one overwatch's API takes to
//! reach the DNS answers of every overwatch sharing an etcd cluster with it. Three overwatches (the
//! `opengslb` binary) and a three-member etcd cluster, all on loopback; an override on a static backend
//! is set and cleared in turn through overwatch 1, and each overwatch is asked about the name until its
//! answer shows the change. Writes one JSON object (`--json-out FILE`); `--smoke` runs 5 changes
//! instead of 50.
//!
//! Needs `etcd` (Debian package etcd-server), no root. `cargo xtask bench` runs it (`--only
//! shared_store` alone); standalone: `cargo bench -p opengslb --bench shared_store -- --json-out F`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use common::{
    bench::{self, ms, show, stopping},
    dnsq::Asker,
    etcd::EtcdCluster,
    http::call,
    labs::{self, TOKEN},
    netns::{Proc, TempDir},
};
use serde_json::{Value, json};

/// The design's goal: an operator's change is in every overwatch's answers within 3 s.
const GOAL: Duration = Duration::from_secs(3);
/// How long one change may take to show before the trial counts as not reached: far past the goal.
const GIVE_UP: Duration = Duration::from_secs(15);
/// How often each overwatch is asked while a change is awaited.
const POLL: Duration = Duration::from_millis(2);
/// How many overwatches share the store.
const OVERWATCHES: usize = 3;
const NAME: &str = "app.demo.local";
/// The static backend taken out and put back.
const BACKEND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PREFIX: &str = "/opengslb-bench/";

fn main() {
    let (json_out, smoke) = bench::args("shared_store");
    bench::stop_on_signals();
    let changes = if smoke { 5 } else { 50 };
    let started = Instant::now();
    let mut f = Figures::default();
    // A failure to set up is reported as the section's outcome; the lab's guards take everything down
    // as an error returns or a panic unwinds.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(changes, &mut f)));
    if let Err(e) = outcome.unwrap_or_else(|p| Err(bench::panic_text(&*p))) {
        eprintln!("shared_store: {e}");
        f.error = Some(e);
    }
    if stopping() {
        eprintln!("shared_store: stopped by a signal");
        std::process::exit(1);
    }

    let every = Stats::of(&f.every);
    let goals = vec![goal(
        "An override reaches every overwatch's DNS, max",
        every.as_ref().map(|s| s.max),
    )];
    let section = json!({
        "section": "Shared store",
        "markdown": markdown(changes, &f, &goals),
        "goals": goals,
        "figures": {
            "smoke": smoke,
            "changes": changes,
            "every_ms": every.as_ref().map(Stats::json),
            "first_ms": Stats::of(&f.first).as_ref().map(Stats::json),
            "others_ms": Stats::of(&f.others).as_ref().map(Stats::json),
            "api_ms": Stats::of(&f.api).as_ref().map(Stats::json),
            "etcd_healthy_ms": f.etcd_up.map(ms),
            "overwatches_ready_ms": f.ready.map(ms),
            "error": f.error,
        },
        "seconds": started.elapsed().as_secs_f64(),
    });
    bench::write_section("shared_store", &json_out, &section, started);
    // A full run keeps the other sections' figures and says in its own what went wrong; the smoke run,
    // which exists to prove the bench works, fails.
    if smoke && f.error.is_some() {
        eprintln!("shared_store: the run did not measure every change");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------
// Figures and their presentation.

#[derive(Default)]
struct Figures {
    /// Per change: from the API request sent to the last overwatch's answer showing it (for a change
    /// that never showed everywhere, how long it was awaited).
    every: Vec<Duration>,
    /// Per change: to overwatch 1's answer (the one the change was made on).
    first: Vec<Duration>,
    /// Per change and other overwatch: to its answer.
    others: Vec<Duration>,
    /// Per change: the API request's own time (it returns once the change is stored and published).
    api: Vec<Duration>,
    etcd_up: Option<Duration>,
    ready: Option<Duration>,
    error: Option<String>,
}

/// Order statistics of a set of durations.
struct Stats {
    n: usize,
    min: Duration,
    p50: Duration,
    p95: Duration,
    max: Duration,
}

impl Stats {
    fn of(v: &[Duration]) -> Option<Self> {
        let mut v = v.to_vec();
        v.sort();
        let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
        (!v.is_empty()).then(|| Self {
            n: v.len(),
            min: at(0.0),
            p50: at(0.5),
            p95: at(0.95),
            max: at(1.0),
        })
    }

    fn json(&self) -> Value {
        json!({"n": self.n, "min": ms(self.min), "p50": ms(self.p50), "p95": ms(self.p95), "max": ms(self.max)})
    }
}

fn goal(name: &str, value: Option<Duration>) -> Value {
    bench::goal(name, GOAL, value, show)
}

fn markdown(changes: usize, f: &Figures, goals: &[Value]) -> String {
    let mut m = String::from("### Shared store\n\n");
    let _ = write!(
        m,
        "Three overwatches (the `opengslb` binary, each with its own data dir, DNS and API port) share \
         a three-member etcd cluster (Debian's etcd {version}, data on disk, heartbeat {hb} ms, election \
         timeout {el} ms), all on loopback: `overwatch.store.etcd` with the three endpoints and prefix \
         `{PREFIX}`. {changes} times, an override on the static backend {BACKEND} of `{NAME}` is set \
         (`PUT /api/v1/overrides/{NAME}/{BACKEND}`) or cleared (`DELETE`), in turn, through overwatch \
         1's API; each overwatch is then asked for `{NAME}` A over UDP every {poll} ms until its answer \
         lacks (or holds again) {BACKEND}. Times are from the request sent.\n\n",
        version = etcd_version(),
        hb = common::etcd::HEARTBEAT_MS,
        el = common::etcd::ELECTION_MS,
        poll = POLL.as_millis(),
    );
    m.push_str("| change reaches | n | min | median | p95 | max |\n|---|---|---|---|---|---|\n");
    for (what, v) in [
        ("every overwatch (the last of the three)", &f.every),
        ("overwatch 1, where it was made", &f.first),
        ("overwatch 2 or 3", &f.others),
        ("(the API request returns)", &f.api),
    ] {
        match Stats::of(v) {
            Some(s) => {
                let _ = writeln!(
                    m,
                    "| {what} | {} | {} | {} | {} | {} |",
                    s.n,
                    show(s.min),
                    show(s.p50),
                    show(s.p95),
                    show(s.max)
                );
            }
            None => {
                let _ = writeln!(m, "| {what} | 0 | – | – | – | – |");
            }
        }
    }
    if let Some(e) = &f.error {
        let _ = writeln!(m, "\nThe run did not finish: {e}");
    }
    m.push_str(&bench::goals_table(goals));
    m.push_str(
        "\nRun by `cargo xtask bench`; standalone: \
         `cargo bench -p opengslb --bench shared_store -- --json-out shared_store.json`.\n",
    );
    m
}

/// `etcd --version`'s first line's version, or "?".
fn etcd_version() -> String {
    std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("etcd Version: "))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------------------------------
// The lab.

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

/// One overwatch: its directory (config, log, data), DNS port and API address.
struct Overwatch {
    dir: PathBuf,
    dns: SocketAddr,
    api: SocketAddr,
    proc: Proc,
}

impl Overwatch {
    fn start(root: &Path, i: usize, endpoints: &str) -> Self {
        let dir = root.join(format!("ow{}", i + 1));
        std::fs::create_dir_all(&dir).expect("overwatch dir");
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
        let (dns, gossip) = (common::free_port(), common::free_port());
        let store = format!(
            "  store:\n    etcd:\n      endpoints: {endpoints}\n      prefix: \"{PREFIX}\"\n"
        );
        let config = labs::overwatch(&dir, dns, api, gossip, &store);
        common::write_private(&dir.join("overwatch.yaml"), &config);
        Self {
            proc: labs::spawn(bin(), &dir, "overwatch"),
            dir,
            dns: SocketAddr::from((Ipv4Addr::LOCALHOST, dns)),
            api,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("overwatch.log")).unwrap_or_default()
    }

    /// Whether it runs still.
    fn running(&mut self) -> bool {
        self.proc
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// The tail of a log, for an error message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Whether an answer shows the change: the backend absent when it was taken out, present when back.
fn shows(answer: &[Ipv4Addr], out: bool) -> bool {
    answer.contains(&BACKEND) != out
}

fn run(changes: usize, f: &mut Figures) -> Result<(), String> {
    // On disk (the temp dir), as a deployment's etcd is: every write waits for an fsync on a quorum.
    let dir = TempDir::new("shared-store-bench");
    let mut etcd = EtcdCluster::loopback(3, &dir.0.join("etcd"));
    f.etcd_up = Some(etcd.wait_healthy(Duration::from_secs(30)));
    eprintln!(
        "shared_store: etcd healthy in {} ({})",
        show(f.etcd_up.unwrap_or_default()),
        etcd.endpoints().join(" ")
    );

    let started = Instant::now();
    let mut ows: Vec<Overwatch> = (0..OVERWATCHES)
        .map(|i| Overwatch::start(&dir.0, i, &etcd.endpoints_yaml()))
        .collect();
    let mut askers: Vec<Asker> = ows
        .iter()
        .map(|o| {
            let mut a = Asker::new(o.dns);
            // A lost datagram costs a retry, not a blind spell in the measurement.
            a.set_timeout(Duration::from_millis(200));
            a
        })
        .collect();
    // Ready, and answering with the backend in (no override left from before: the prefix is fresh).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, o) in ows.iter_mut().enumerate() {
        loop {
            if stopping() {
                return Err("stopped".into());
            }
            if !o.running() {
                return Err(format!("overwatch {} exited:\n{}", i + 1, tail(&o.log())));
            }
            let ready = call(o.api, "GET", "/api/v1/ready", &[], None).0 == 200;
            if ready && askers[i].a(NAME, false).is_some_and(|a| shows(&a, false)) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "overwatch {} not ready and answering within 30 s:\n{}",
                    i + 1,
                    tail(&o.log())
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    f.ready = Some(started.elapsed());
    eprintln!(
        "shared_store: {OVERWATCHES} overwatches ready in {}",
        show(started.elapsed())
    );

    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str()), ("X-User", "bench")];
    let path = format!("/api/v1/overrides/{NAME}/{BACKEND}");
    // One unmeasured change out and back first: connections and watches settle.
    for trial in 0..changes + 2 {
        if stopping() {
            return Err("stopped".into());
        }
        let measured = trial >= 2;
        let out = trial % 2 == 0;
        let sent = Instant::now();
        let (status, body) = if out {
            call(
                ows[0].api,
                "PUT",
                &path,
                &headers,
                Some(r#"{"healthy": false, "reason": "bench"}"#),
            )
        } else {
            call(ows[0].api, "DELETE", &path, &headers, None)
        };
        let api = sent.elapsed();
        let want = if out { 200 } else { 204 };
        if status != want {
            return Err(format!(
                "{} {path} answered {status} (want {want}): {body}\n{}",
                if out { "PUT" } else { "DELETE" },
                tail(&ows[0].log())
            ));
        }
        let mut reached: [Option<Duration>; OVERWATCHES] = [None; OVERWATCHES];
        // Bounded in time by GIVE_UP and in count by it over the poll interval.
        let rounds = (GIVE_UP.as_millis() / POLL.as_millis()) as usize;
        for _ in 0..rounds {
            for (i, asker) in askers.iter_mut().enumerate() {
                if reached[i].is_none() && asker.a(NAME, false).is_some_and(|a| shows(&a, out)) {
                    reached[i] = Some(sent.elapsed());
                }
            }
            if reached.iter().all(Option::is_some) || sent.elapsed() > GIVE_UP || stopping() {
                break;
            }
            thread::sleep(POLL);
        }
        if !measured {
            continue;
        }
        f.api.push(api);
        if let Some(first) = reached[0] {
            f.first.push(first);
        }
        f.others.extend(reached[1..].iter().flatten());
        if let Some(all) = reached.iter().copied().collect::<Option<Vec<_>>>() {
            f.every.push(all.into_iter().max().unwrap_or_default());
            continue;
        }
        // Its time counts as what was waited (the goal is missed); the overwatches' states now differ,
        // so a further change would measure nothing true.
        f.every.push(sent.elapsed());
        let missing: Vec<String> = (0..OVERWATCHES)
            .filter(|&i| reached[i].is_none())
            .map(|i| (i + 1).to_string())
            .collect();
        return Err(format!(
            "change {} ({}) did not reach overwatch {} within {} s; stopped there",
            trial - 1,
            if out { "out" } else { "back" },
            missing.join(" and "),
            GIVE_UP.as_secs()
        ));
    }
    let s = Stats::of(&f.every);
    eprintln!(
        "shared_store: {} changes, every overwatch: median {}, max {}",
        f.every.len(),
        s.as_ref().map_or("–".into(), |s| show(s.p50)),
        s.as_ref().map_or("–".into(), |s| show(s.max)),
    );
    drop(ows);
    drop(etcd);
    Ok(())
}
