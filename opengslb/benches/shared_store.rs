//! The shared store, measured: how long an operator's change made through one overwatch's API takes to
//! reach the DNS answers of every overwatch sharing an etcd cluster with it. Three overwatches (the
//! `opengslb` binary) and a three-member etcd cluster, all on loopback; an override on a static backend
//! is set and cleared in turn through overwatch 1, and each overwatch is asked about the name until its
//! answer shows the change; then the same with etcd's leader killed the moment the change is made.
//! Writes one JSON object (`--json-out FILE`); `--smoke` runs 5 changes and 1 with the leader killed
//! instead of 50 and 5.
//!
//! Needs `etcd` and `etcdctl` (Debian packages etcd-server and etcd-client), no root. `cargo xtask bench` runs it (`--only
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
    let (changes, failovers) = if smoke { (5, 1) } else { (50, 5) };
    let started = Instant::now();
    let mut f = Figures::default();
    // A failure to set up is reported as the section's outcome; the lab's guards take everything down
    // as an error returns or a panic unwinds.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(changes, failovers, &mut f)
    }));
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
        "markdown": markdown(changes, failovers, &f, &goals),
        "goals": goals,
        "figures": {
            "smoke": smoke,
            "changes": changes,
            "every_ms": every.as_ref().map(Stats::json),
            "first_ms": Stats::of(&f.first).as_ref().map(Stats::json),
            "others_ms": Stats::of(&f.others).as_ref().map(Stats::json),
            "api_ms": Stats::of(&f.api).as_ref().map(Stats::json),
            "failovers": failovers,
            "failover_every_ms": Stats::of(&f.failover_every).as_ref().map(Stats::json),
            "failover_api_ms": Stats::of(&f.failover_api).as_ref().map(Stats::json),
            "failover_refused": f.failover_refused,
            "failover_errors": f.failover_errors,
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
    /// Per change made as etcd's leader was killed: to every overwatch's answer.
    failover_every: Vec<Duration>,
    /// Per such change: until the API accepted it (the operator sending it again on each refusal).
    failover_api: Vec<Duration>,
    /// Requests the API refused meanwhile, and the first refusal of each change that had one.
    failover_refused: usize,
    failover_errors: Vec<String>,
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

fn markdown(changes: usize, failovers: usize, f: &Figures, goals: &[Value]) -> String {
    let mut m = String::from("### Shared store\n\n");
    let _ = write!(
        m,
        "Three overwatches (the `opengslb` binary, each with its own data dir, DNS and API port) share \
         a three-member etcd cluster (Debian's etcd {version}, data on disk, heartbeat {hb} ms, election \
         timeout {el} ms), all on loopback: `overwatch.store.etcd` with the three endpoints and prefix \
         `{PREFIX}`. {changes} times, an override on the static backend {BACKEND} of `{NAME}` is set \
         (`PUT /api/v1/overrides/{NAME}/{BACKEND}`) or cleared (`DELETE`), in turn, through overwatch \
         1's API; each overwatch is then asked for `{NAME}` A over UDP every {poll} ms until its answer \
         lacks (or holds again) {BACKEND}. Times are from the request sent. Then {failovers} times, \
         etcd's leader is killed (SIGKILL) and the next change sent at once, again as soon as the API \
         refuses it, timed from the first request; the member is restarted and the cluster healthy \
         again before the next.\n\n",
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
        ("every overwatch, etcd's leader killed", &f.failover_every),
        (
            "(the API accepts it, etcd's leader killed)",
            &f.failover_api,
        ),
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
    if !f.failover_errors.is_empty() {
        let _ = writeln!(
            m,
            "\nWith etcd's leader killed, the API refused a request {} times ({} of the {} changes \
             were refused at least once); the first refusal of each:\n",
            f.failover_refused,
            f.failover_errors.len(),
            f.failover_every.len(),
        );
        let mut seen: Vec<(&String, usize)> = Vec::new();
        for e in &f.failover_errors {
            match seen.iter_mut().find(|(s, _)| *s == e) {
                Some((_, n)) => *n += 1,
                None => seen.push((e, 1)),
            }
        }
        for (e, n) in seen {
            let times = if n > 1 {
                format!(" (×{n})")
            } else {
                String::new()
            };
            let _ = writeln!(m, "- `{e}`{times}");
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

/// The cluster, the overwatches and a DNS client for each, and whether the backend is out now.
struct Lab {
    // Fields drop in this order: the overwatches stop while etcd still answers them, and the
    // directory goes once nothing in it runs.
    ows: Vec<Overwatch>,
    askers: Vec<Asker>,
    etcd: EtcdCluster<'static>,
    out: bool,
    _dir: TempDir,
}

impl Lab {
    fn start(f: &mut Figures) -> Result<Self, String> {
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
        let ows: Vec<Overwatch> = (0..OVERWATCHES)
            .map(|i| Overwatch::start(&dir.0, i, &etcd.endpoints_yaml()))
            .collect();
        let askers = ows
            .iter()
            .map(|o| {
                let mut a = Asker::new(o.dns);
                // A lost datagram costs a retry, not a blind spell in the measurement.
                a.set_timeout(Duration::from_millis(200));
                a
            })
            .collect();
        let mut lab = Self {
            ows,
            askers,
            etcd,
            out: false,
            _dir: dir,
        };
        // Ready, and answering with the backend in (no override left from before: the prefix is fresh).
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..OVERWATCHES {
            loop {
                if stopping() {
                    return Err("stopped".into());
                }
                let o = &mut lab.ows[i];
                if !o.running() {
                    return Err(format!("overwatch {} exited:\n{}", i + 1, tail(&o.log())));
                }
                let ready = call(o.api, "GET", "/api/v1/ready", &[], None).0 == 200;
                if ready
                    && lab.askers[i]
                        .a(NAME, false)
                        .is_some_and(|a| shows(&a, false))
                {
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
        Ok(lab)
    }

    /// Asks overwatch 1's API once to take the backend out (PUT) or put it back (DELETE), the other of
    /// what it is now; the status and body.
    fn request(&self) -> (u16, String) {
        let auth = format!("Bearer {TOKEN}");
        let headers = [("Authorization", auth.as_str()), ("X-User", "bench")];
        let path = format!("/api/v1/overrides/{NAME}/{BACKEND}");
        if self.out {
            call(self.ows[0].api, "DELETE", &path, &headers, None)
        } else {
            let body = r#"{"healthy": false, "reason": "bench"}"#;
            call(self.ows[0].api, "PUT", &path, &headers, Some(body))
        }
    }

    /// The change's name in messages.
    fn what(&self) -> &'static str {
        if self.out { "back" } else { "out" }
    }

    /// When each overwatch's answer showed the change (`out`), from `sent`, polling every `POLL` for
    /// at most `GIVE_UP`; `None` for one that did not.
    fn reached(&mut self, out: bool, sent: Instant) -> [Option<Duration>; OVERWATCHES] {
        let mut reached = [None; OVERWATCHES];
        // Bounded in time by GIVE_UP and in count by it over the poll interval.
        let rounds = (GIVE_UP.as_millis() / POLL.as_millis()) as usize;
        for _ in 0..rounds {
            for (i, asker) in self.askers.iter_mut().enumerate() {
                if reached[i].is_none() && asker.a(NAME, false).is_some_and(|a| shows(&a, out)) {
                    reached[i] = Some(sent.elapsed());
                }
            }
            if reached.iter().all(Option::is_some) || sent.elapsed() > GIVE_UP || stopping() {
                break;
            }
            thread::sleep(POLL);
        }
        reached
    }

    /// The latest of `reached`, or an error naming the overwatches it did not reach.
    fn every(&self, reached: &[Option<Duration>], n: usize) -> Result<Duration, String> {
        if let Some(all) = reached.iter().copied().collect::<Option<Vec<_>>>() {
            return Ok(all.into_iter().max().unwrap_or_default());
        }
        let missing: Vec<String> = (0..OVERWATCHES)
            .filter(|&i| reached[i].is_none())
            .map(|i| (i + 1).to_string())
            .collect();
        Err(format!(
            "change {n} ({}) did not reach overwatch {} within {} s; stopped there",
            if self.out { "out" } else { "back" },
            missing.join(" and "),
            GIVE_UP.as_secs()
        ))
    }
}

fn run(changes: usize, failovers: usize, f: &mut Figures) -> Result<(), String> {
    let mut lab = Lab::start(f)?;
    // One unmeasured change out and back first: connections and watches settle.
    for n in 0..changes + 2 {
        if stopping() {
            return Err("stopped".into());
        }
        let measured = n >= 2;
        let sent = Instant::now();
        let (status, body) = lab.request();
        let api = sent.elapsed();
        let want = if lab.out { 204 } else { 200 };
        if status != want {
            return Err(format!(
                "taking the backend {} answered {status} (want {want}): {body}\n{}",
                lab.what(),
                tail(&lab.ows[0].log())
            ));
        }
        lab.out = !lab.out;
        let reached = lab.reached(lab.out, sent);
        if !measured {
            continue;
        }
        f.api.push(api);
        f.first.extend(reached[0]);
        f.others.extend(reached[1..].iter().flatten());
        match lab.every(&reached, n - 1) {
            Ok(every) => f.every.push(every),
            Err(e) => {
                // Its time counts as what was waited (the goal is missed); the overwatches' states
                // now differ, so a further change would measure nothing true.
                f.every.push(sent.elapsed());
                return Err(e);
            }
        }
    }
    let s = Stats::of(&f.every);
    eprintln!(
        "shared_store: {} changes, every overwatch: median {}, max {}",
        f.every.len(),
        s.as_ref().map_or("–".into(), |s| show(s.p50)),
        s.as_ref().map_or("–".into(), |s| show(s.max)),
    );

    // The same change the moment etcd's leader is killed: the write and the watches must find the
    // other two members (which elect a new leader in about a second). An operator whose request
    // fails sends it again at once.
    for n in 0..failovers {
        if stopping() {
            return Err("stopped".into());
        }
        let leader = lab
            .etcd
            .leader()
            .ok_or_else(|| format!("etcd has no agreed leader\n{}", lab.etcd.logs()))?;
        lab.etcd.kill(leader);
        let sent = Instant::now();
        let mut failed = Vec::new();
        loop {
            let (status, body) = lab.request();
            if (200..300).contains(&status) {
                break;
            }
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            failed.push(format!("{status}: {}", message.trim()));
            if sent.elapsed() > GIVE_UP || failed.len() >= 100 || stopping() {
                return Err(format!(
                    "with etcd's leader killed, taking the backend {} failed {} times in {}: {}",
                    lab.what(),
                    failed.len(),
                    show(sent.elapsed()),
                    failed.join("; ")
                ));
            }
        }
        f.failover_api.push(sent.elapsed());
        f.failover_refused += failed.len();
        if let Some(first) = failed.first() {
            f.failover_errors.push(first.clone());
        }
        lab.out = !lab.out;
        let reached = lab.reached(lab.out, sent);
        match lab.every(&reached, n + 1) {
            Ok(every) => f.failover_every.push(every),
            Err(e) => {
                f.failover_every.push(sent.elapsed());
                return Err(format!("with etcd's leader killed, {e}"));
            }
        }
        lab.etcd.restart(leader);
        lab.etcd.wait_healthy(Duration::from_secs(30));
    }
    if failovers > 0 {
        let s = Stats::of(&f.failover_every);
        eprintln!(
            "shared_store: {failovers} changes as etcd's leader was killed, every overwatch: median {}, max {}; {} requests refused",
            s.as_ref().map_or("–".into(), |s| show(s.p50)),
            s.as_ref().map_or("–".into(), |s| show(s.max)),
            f.failover_refused
        );
    }
    Ok(())
}
