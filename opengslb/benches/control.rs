//! The control plane, measured: how fast a drained or crashed backend leaves DNS, what loading 100,000
//! names into the answer table and the XDP maps costs, and how many table changes a second reach the maps
//! while queries flow. Writes one JSON object (`--json-out FILE`); `--smoke` runs seconds with tiny counts.
//!
//! Needs root (network namespaces, XDP). `cargo xtask bench` runs it; standalone:
//! `cargo bench -p opengslb --bench control -- --json-out F`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use common::{
    bench::{self, ms, show, stopping},
    dnsq::Asker,
    labs,
    netns::{Netns, Proc, TempDir, wait_every},
};
use opengslb::{
    table::{AnswerTable, NameSpec, Policy, Renderer},
    xdp::{AttachMode, Counters, Dataplane, pin_dir},
};
use opengslb_common::{counters::Counter, maps::MAX_ENTRIES};
use serde_json::{Value, json};

/// Exits (non-zero) when a signal asked us to stop; call only where nothing is left to clean up.
fn exit_if_stopped() {
    if stopping() {
        eprintln!("control: stopped by a signal");
        std::process::exit(1);
    }
}

const DRAIN_GOAL: Duration = Duration::from_millis(200);
const CRASH_GOAL: Duration = Duration::from_secs(3);
const LOAD_GOAL: Duration = Duration::from_secs(2);

/// How much to do: the full run or a smoke run of seconds.
struct Plan {
    smoke: bool,
    drain_trials: usize,
    crash_trials: usize,
    names: usize,
    /// Names whose second backend goes out and back in the update phase.
    changing: usize,
    update_rounds: usize,
    update_time: Duration,
}

impl Plan {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                smoke,
                drain_trials: 3,
                crash_trials: 1,
                names: 20_000,
                changing: 200,
                update_rounds: 6,
                update_time: Duration::from_secs(2),
            }
        } else {
            Self {
                smoke,
                drain_trials: 50,
                crash_trials: 5,
                names: 100_000,
                changing: 1_000,
                update_rounds: 60,
                update_time: Duration::from_secs(15),
            }
        }
    }
}

fn main() {
    let (json_out, smoke) = bench::args("control");
    common::require_root();
    bench::stop_on_signals();
    let plan = Plan::new(smoke);
    let started = Instant::now();

    let lab = lab_figures(&plan);
    exit_if_stopped();
    let load = load_figures(&plan);
    exit_if_stopped();

    let mut goals = vec![
        goal(
            "Drain to out of DNS, p99",
            DRAIN_GOAL,
            lab.drain.as_ref().map(|s| s.p99),
        ),
        goal(
            "Agent crash to out of DNS, max",
            CRASH_GOAL,
            lab.crash.as_ref().map(|s| s.max),
        ),
    ];
    goals.push(goal(
        &format!(
            "{} names built and loaded into the maps",
            thousands(plan.names)
        ),
        LOAD_GOAL,
        Some(load.total),
    ));

    let markdown = markdown(&plan, &lab, &load, &goals);
    let out = json!({
        "section": "Control plane",
        "markdown": markdown,
        "goals": goals,
        "figures": {
            "smoke": plan.smoke,
            "drain_ms": lab.drain.as_ref().map(Stats::json),
            "drain_back_ms": lab.back.as_ref().map(Stats::json),
            "drain_polls_answered_by_xdp": lab.xdp_share,
            "crash_ms": lab.crash.as_ref().map(Stats::json),
            "names": plan.names,
            "entries": load.entries,
            "left_to_userspace": load.left,
            "map_capacity": MAX_ENTRIES,
            "table_build_ms": ms(load.build),
            "render_ms": ms(load.render),
            "map_write_ms": ms(load.write),
            "load_total_ms": ms(load.total),
            "program_load_ms": ms(load.program),
            "rss_growth_bytes": load.rss_growth,
            "records_map_bytes": load.records_bytes,
            "all_maps_bytes": load.maps_bytes,
            "updates": load.updates.as_ref().map(Updates::json),
        },
        "seconds": started.elapsed().as_secs_f64(),
    });
    bench::write_section("control", &json_out, &out, started);
    // A full run keeps the other figures and says in its section that the lab did not finish; the smoke
    // run, which exists to prove the bench works, fails.
    if plan.smoke && lab.error.is_some() {
        eprintln!("control: the lab did not run to the end");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------------
// Figures and their presentation.

/// Percentiles of a set of durations.
struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Option<Self> {
        v.sort();
        let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
        (!v.is_empty()).then(|| Self {
            n: v.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        })
    }

    fn json(&self) -> Value {
        json!({"trials": self.n, "p50": ms(self.p50), "p99": ms(self.p99), "max": ms(self.max)})
    }

    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {} | {} | {} | {} |\n",
            self.n,
            show(self.p50),
            show(self.p99),
            show(self.max)
        )
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A goal of at most `target`, shown as people read it.
fn goal(name: &str, target: Duration, value: Option<Duration>) -> Value {
    bench::goal(name, target, value, show)
}

fn markdown(plan: &Plan, lab: &LabFigures, load: &LoadFigures, goals: &[Value]) -> String {
    let mut m = String::from("### Control plane\n\n");
    m.push_str(
        "An overwatch and an agent, real processes of the release `opengslb` binary, in a network \
         namespace the bench creates; the overwatch answers `app.demo.local` from XDP on the namespace's \
         `lo` (generic mode) and from userspace. The agent's TCP-checked backend is the one taken out. \
         DNS is asked about every millisecond, plainly (the XDP path) and with EDNS Client Subnet \
         (which XDP passes to userspace); the backend is out when both answers lack it.\n\n",
    );
    m.push_str("| from | to | trials | p50 | p99 | max |\n|---|---|---|---|---|---|\n");
    for (from, to, s) in [
        ("drain file written", "out of both answers", &lab.drain),
        ("drain file removed", "back in both answers", &lab.back),
        ("`kill -9` of the agent", "out of both answers", &lab.crash),
    ] {
        match s {
            Some(s) => m.push_str(&format!("| {from} {}", s.row(to))),
            None => m.push_str(&format!("| {from} | {to} | 0 | – | – | – |\n")),
        }
    }
    if let Some(share) = lab.xdp_share {
        let _ = writeln!(
            m,
            "\nOf the plain queries sent while measuring, {:.1} % were answered by the XDP program \
             (its counters; the rest by userspace).",
            share * 100.0
        );
    }
    if let Some(e) = &lab.error {
        let _ = writeln!(m, "\nThe lab did not run to the end: {e}");
    }

    let _ = write!(
        m,
        "\n{names} names, each with one A and one AAAA record ({entries} table entries; the records map \
         holds {cap}), built into the answer table, rendered, and written into the maps of a freshly \
         loaded XDP program, in this process:\n\n\
         | step | time |\n|---|---|\n\
         | answer table built | {build} |\n| rendered (map keys and values) | {render} |\n\
         | written into the records map | {write} |\n| **total** | **{total}** |\n\
         | (loading the program, before) | {program} |\n\n\
         | memory | bytes |\n|---|---|\n\
         | process RSS growth (program, table, rendering, map writes) | {rss} |\n| records map (`bpftool map show`, `bytes_memlock`) | {rec} |\n\
         | all the program's maps | {all} |\n\n\
         Entries left to userspace: **{left}**.\n",
        names = thousands(plan.names),
        entries = thousands(load.entries),
        cap = thousands(MAX_ENTRIES as usize),
        build = show(load.build),
        render = show(load.render),
        write = show(load.write),
        total = show(load.total),
        program = show(load.program),
        rss = mib(load.rss_growth),
        rec = mib(load.records_bytes),
        all = mib(load.maps_bytes),
        left = load.left,
    );

    match &load.updates {
        Some(u) => {
            let _ = write!(
                m,
                "\nTable changes with queries flowing: that program attached to `lo` of a namespace, \
                 one thread querying it over UDP, one query at a time, while the other alternates \
                 the table between {chg} names having their second backend and not; each change is \
                 rendered and applied as the overwatch publishes (only the changed entries are \
                 written).\n\n\
                 | figure | value |\n|---|---|\n\
                 | table changes applied | {rounds} in {secs:.1} s: **{rate:.1} per second** |\n\
                 | one change (render + plan + write), p50 / max | {p50} / {max} |\n\
                 | map entries written or removed | {written}: **{wrate:.0} per second** of applying (plan + writes) |\n\
                 | queries sent meanwhile | {sent} |\n\
                 | answered (by XDP, from its counters) | {answered} ({xdp}) |\n\
                 | answered wrongly | **{wrong}** |\n| unanswered within 3 s | {lost} |\n",
                chg = thousands(plan.changing),
                rounds = u.rounds,
                secs = u.elapsed.as_secs_f64(),
                rate = u.rounds as f64 / u.elapsed.as_secs_f64(),
                p50 = show(u.round.p50),
                max = show(u.round.max),
                written = u.written,
                wrate = u.written as f64 / u.write_time.as_secs_f64().max(1e-9),
                sent = u.flow.sent,
                answered = u.flow.answered,
                xdp = u.xdp_answered,
                wrong = u.flow.wrong,
                lost = u.flow.lost,
            );
            if let Some(w) = &u.flow.first_wrong {
                let _ = writeln!(m, "\nFirst wrong answer: {w}");
            }
        }
        None => m.push_str("\nTable changes with queries flowing: not measured (see the log).\n"),
    }

    m.push_str(&bench::goals_table(goals));
    let _ = write!(
        m,
        "\nRun by `cargo xtask bench`; standalone, as root: \
         `cargo bench -p opengslb --bench control -- --json-out control.json{}`.\n",
        if plan.smoke { " --smoke" } else { "" }
    );
    m
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------------------------------------------
// Drain and crash: an overwatch and an agent in a namespace.

#[derive(Default)]
struct LabFigures {
    drain: Option<Stats>,
    back: Option<Stats>,
    crash: Option<Stats>,
    /// The share of plain queries the XDP program answered.
    xdp_share: Option<f64>,
    error: Option<String>,
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

/// A TCP port that accepts connections, for the agent's check; closed on drop.
struct Backend {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Backend {
    fn start(ns: &Netns, addr: SocketAddr) -> Self {
        let l = ns
            .enter(|| TcpListener::bind(addr))
            .expect("bind the backend");
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A bpffs directory removed on drop, whatever the overwatch left in it.
struct PinRoot(PathBuf);

impl Drop for PinRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lab_figures(plan: &Plan) -> LabFigures {
    let mut f = LabFigures::default();
    if let Err(e) = run_lab(plan, &mut f) {
        eprintln!("control: lab: {e}");
        f.error = Some(e);
    }
    f
}

const NAME: &str = "app.demo.local";
/// The agent's backend: its checked address, advertised as the address it reaches the overwatch from.
const AGENT_BACKEND: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn run_lab(plan: &Plan, f: &mut LabFigures) -> Result<(), String> {
    // Dropped in reverse order: processes, then the backend, pins, files and the namespace.
    let ns = Netns::new("ctl");
    let dir = TempDir::new("ctl");
    let pins = PinRoot(Path::new("/sys/fs/bpf").join(&ns.name));
    let (api, gossip, check_port) = ("127.0.0.1:8080".parse().unwrap(), 7946, 8081);
    let _backend = Backend::start(&ns, (AGENT_BACKEND, check_port).into());

    let ow_text = labs::overwatch(&dir.0, 53, api, gossip, "");
    let with_xdp = ow_text.replacen(
        "  default_ttl: 5\n",
        "  default_ttl: 5\n  xdp: { interfaces: [lo], mode: skb }\n",
        1,
    );
    if with_xdp == ow_text {
        return Err("the lab config has no `default_ttl: 5` line to add XDP after".into());
    }
    let ow_cfg = dir.0.join("overwatch.yaml");
    common::write_private(&ow_cfg, &with_xdp);
    let ag_cfg = dir.0.join("agent.yaml");
    common::write_private(&ag_cfg, &labs::agent(&dir.0, gossip, check_port));
    let ow_log = dir.0.join("overwatch.log");
    let ag_log = dir.0.join("agent.log");
    let log = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    let mut cmd = ns.command(bin());
    cmd.args(["overwatch", "--detach-on-exit", "--config"])
        .arg(&ow_cfg)
        .arg("--bpffs-root")
        .arg(&pins.0);
    let mut ow = Proc::spawn(cmd, &ow_log);
    let ready = ns.enter(|| {
        wait_every(Duration::from_millis(20), Duration::from_secs(15), || {
            common::http::call(api, "GET", "/api/v1/ready", &[], None).0 == 200
        })
    });
    if !ready {
        return Err(format!(
            "the overwatch was not ready within 15 s\n{}",
            log(&ow_log)
        ));
    }
    let spawn_agent = || {
        let mut cmd = ns.command(bin());
        cmd.args(["agent", "--config"]).arg(&ag_cfg);
        Proc::spawn(cmd, &ag_log)
    };
    let mut agent = spawn_agent();
    let mut dns = ns.enter(|| Asker::new("127.0.0.1:53".parse().unwrap()));
    // In (or out) when both paths agree that the backend is in (or out) of the answer.
    let state = |dns: &mut Asker| -> Option<bool> {
        let xdp = dns.a(NAME, false)?.contains(&AGENT_BACKEND);
        let user = dns.a(NAME, true)?.contains(&AGENT_BACKEND);
        (xdp == user).then_some(xdp)
    };
    let counters = || Counters::read_pinned(&pin_dir(&pins.0)).ok();
    let before = counters();
    let mut plain_sent: u64 = 0;
    let mut wait_state = |dns: &mut Asker, want: bool, step: Duration, limit: Duration| {
        let t0 = Instant::now();
        let ok = wait_every(step, limit, || {
            plain_sent += 1;
            stopping() || state(dns) == Some(want)
        });
        (ok && !stopping()).then(|| t0.elapsed())
    };
    eprintln!("control: waiting for the agent's backend in DNS");
    if wait_state(
        &mut dns,
        true,
        Duration::from_millis(20),
        Duration::from_secs(20),
    )
    .is_none()
    {
        return Err(format!(
            "the agent's backend never came into DNS\n{}\n{}",
            log(&ow_log),
            log(&ag_log)
        ));
    }

    let drain_file = dir.0.join("drain");
    let (mut out, mut back) = (Vec::new(), Vec::new());
    let result = (|| {
        for trial in 0..plan.drain_trials {
            for (drain, times) in [(true, &mut out), (false, &mut back)] {
                let done = if drain {
                    std::fs::File::create(&drain_file).map(drop)
                } else {
                    std::fs::remove_file(&drain_file)
                };
                done.map_err(|e| e.to_string())?;
                let took = wait_state(
                    &mut dns,
                    !drain,
                    Duration::from_millis(1),
                    Duration::from_secs(10),
                )
                .ok_or(format!(
                    "drain trial {trial}: {} DNS after 10 s",
                    if drain { "still in" } else { "not back in" }
                ))?;
                times.push(took);
            }
            if trial % 10 == 9 || trial + 1 == plan.drain_trials {
                eprintln!("control: drain trial {}/{}", trial + 1, plan.drain_trials);
            }
        }
        Ok::<(), String>(())
    })();
    f.drain = Stats::of(out);
    f.back = Stats::of(back);
    result?;

    let mut crash = Vec::new();
    let result = (|| {
        for trial in 0..plan.crash_trials {
            if let Some(mut c) = agent.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let took = wait_state(
                &mut dns,
                false,
                Duration::from_millis(2),
                Duration::from_secs(15),
            )
            .ok_or(format!(
                "crash trial {trial}: still in DNS 15 s after the kill"
            ))?;
            crash.push(took);
            eprintln!(
                "control: crash trial {}/{}: out after {}",
                trial + 1,
                plan.crash_trials,
                show(took)
            );
            if trial + 1 < plan.crash_trials {
                agent = spawn_agent();
                wait_state(
                    &mut dns,
                    true,
                    Duration::from_millis(20),
                    Duration::from_secs(30),
                )
                .ok_or(format!(
                    "crash trial {trial}: the restarted agent never came back"
                ))?;
            }
        }
        Ok::<(), String>(())
    })();
    f.crash = Stats::of(crash);
    if let (Some(b), Some(a)) = (before, counters()) {
        let answered = a.get(Counter::AnsweredA) - b.get(Counter::AnsweredA);
        f.xdp_share = Some(answered as f64 / plain_sent.max(1) as f64);
    }
    drop(agent);
    ow.interrupt();
    result
}

// ---------------------------------------------------------------------------------------------------
// 100,000 names into the maps, then table changes with queries flowing.

struct LoadFigures {
    entries: usize,
    left: usize,
    build: Duration,
    render: Duration,
    write: Duration,
    total: Duration,
    program: Duration,
    rss_growth: u64,
    records_bytes: u64,
    maps_bytes: u64,
    updates: Option<Updates>,
}

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn v4(i: usize, second: bool) -> Ipv4Addr {
    let [_, a, b, c] = (i as u32).to_be_bytes();
    Ipv4Addr::new(if second { 11 } else { 10 }, a, b, c)
}

fn name(i: usize) -> String {
    format!("n{i}.bench.test")
}

/// The specs of `n` names, each with one A and one AAAA record; the first `changing` also have a second
/// A record when `with_second`.
fn specs(n: usize, changing: usize, with_second: bool) -> Vec<NameSpec> {
    (0..n)
        .map(|i| {
            let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
            let mut addrs = vec![IpAddr::V4(v4(i, false)), IpAddr::V6(v6)];
            if with_second && i < changing {
                addrs.push(IpAddr::V4(v4(i, true)));
            }
            NameSpec::new(
                name(i).parse().expect("name"),
                5,
                Policy::RoundRobin,
                2,
                addrs,
            )
        })
        .collect()
}

/// `bytes_memlock` of each of the program's maps, by map name.
fn map_bytes(dp: &mut Dataplane) -> Vec<(String, u64)> {
    let ids = dp
        .program_mut()
        .ok()
        .and_then(|p| p.info().ok())
        .and_then(|i| i.map_ids().ok().flatten())
        .unwrap_or_default();
    ids.iter()
        .filter_map(|id| {
            let out = Command::new("bpftool")
                .args(["map", "show", "id", &id.to_string(), "-j"])
                .output()
                .ok()?;
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            Some((v["name"].as_str()?.to_owned(), v["bytes_memlock"].as_u64()?))
        })
        .collect()
}

fn load_figures(plan: &Plan) -> LoadFigures {
    eprintln!("control: loading {} names", thousands(plan.names));
    let rss0 = rss();
    let t = Instant::now();
    let mut dp =
        Dataplane::load(None).expect("the XDP program loads (built with the BPF toolchain)");
    dp.configure(53, 1232).expect("configure");
    dp.set_listen(&[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .expect("listen");
    let program = t.elapsed();

    let with = specs(plan.names, plan.changing, true);
    let t = Instant::now();
    let table_in = AnswerTable::from_specs(&with);
    let build = t.elapsed();
    let mut renderer = Renderer::default();
    let t = Instant::now();
    let rendered = renderer.render(&table_in);
    let render = t.elapsed();
    let t = Instant::now();
    let applied = dp
        .apply(&rendered)
        .expect("the table is written into the map");
    let write = t.elapsed();
    let rss_growth = rss().saturating_sub(rss0);
    let maps = map_bytes(&mut dp);
    let records_bytes = maps
        .iter()
        .find(|(n, _)| n == opengslb_common::maps::RECORDS_MAP)
        .map_or(0, |(_, b)| *b);
    let maps_bytes = maps.iter().map(|(_, b)| b).sum();
    eprintln!(
        "control: {} entries written in {}, {} left to userspace",
        applied.upserts.len(),
        show(write),
        applied.skipped.len()
    );
    let mut f = LoadFigures {
        entries: table_in.len(),
        left: applied.skipped.len(),
        build,
        render,
        write,
        total: build + render + write,
        program,
        rss_growth,
        records_bytes,
        maps_bytes,
        updates: None,
    };
    drop(with);

    let table_out = AnswerTable::from_specs(&specs(plan.names, plan.changing, false));
    match updates(plan, &mut dp, &mut renderer, [table_out, table_in]) {
        Ok(u) => f.updates = Some(u),
        Err(e) => eprintln!("control: updates: {e}"),
    }
    f
}

/// What the query thread saw.
#[derive(Default)]
struct Flow {
    sent: u64,
    answered: u64,
    wrong: u64,
    lost: u64,
    first_wrong: Option<String>,
}

struct Updates {
    rounds: usize,
    elapsed: Duration,
    round: Stats,
    written: usize,
    write_time: Duration,
    flow: Flow,
    xdp_answered: u64,
}

impl Updates {
    fn json(&self) -> Value {
        json!({
            "changes": self.rounds,
            "seconds": self.elapsed.as_secs_f64(),
            "changes_per_second": self.rounds as f64 / self.elapsed.as_secs_f64(),
            "change_ms": self.round.json(),
            "entries_written": self.written,
            "entries_written_per_second": self.written as f64 / self.write_time.as_secs_f64().max(1e-9),
            "queries_sent": self.flow.sent,
            "answered": self.flow.answered,
            "answered_by_xdp": self.xdp_answered,
            "answered_wrongly": self.flow.wrong,
            "unanswered": self.flow.lost,
        })
    }
}

/// Alternates the table between `tables` while a thread queries the attached program.
fn updates(
    plan: &Plan,
    dp: &mut Dataplane,
    renderer: &mut Renderer,
    tables: [AnswerTable; 2],
) -> Result<Updates, String> {
    let ns = Netns::new("upd");
    ns.enter(|| dp.attach("lo", AttachMode::Skb))
        .map_err(|e| format!("attaching to lo: {e}"))?;
    let before = dp.counters().map_err(|e| e.to_string())?;
    let stop = AtomicBool::new(false);
    let (names, changing) = (plan.names, plan.changing);
    let deadline = Instant::now() + plan.update_time + Duration::from_secs(5);
    let result = thread::scope(|s| {
        let flow = s.spawn(|| ns.enter(|| query_flow(names, changing, &stop, deadline)));
        // Let queries flow before the first change.
        thread::sleep(Duration::from_millis(200));
        let (mut rounds, mut written, mut write_time) = (Vec::new(), 0, Duration::ZERO);
        let t0 = Instant::now();
        let mut err = None;
        for round in 0..plan.update_rounds {
            if t0.elapsed() > plan.update_time || stopping() {
                break;
            }
            let t = Instant::now();
            let rendered = renderer.render(&tables[round % 2]);
            let tw = Instant::now();
            match dp.apply(&rendered) {
                Ok(p) => written += p.upserts.len() + p.removals.len(),
                Err(e) => {
                    err = Some(format!("round {round}: {e}"));
                    break;
                }
            }
            write_time += tw.elapsed();
            rounds.push(t.elapsed());
        }
        let elapsed = t0.elapsed();
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let flow = flow
            .join()
            .map_err(|_| "the query thread panicked".to_owned())?;
        if let Some(e) = err {
            return Err(e);
        }
        let n = rounds.len();
        Ok(Updates {
            rounds: n,
            elapsed,
            round: Stats::of(rounds).ok_or("no change was applied")?,
            written,
            write_time,
            flow,
            xdp_answered: 0,
        })
    });
    let after = dp.counters().map_err(|e| e.to_string())?;
    // Dropping the data plane (by the caller) detaches it; the namespace goes after.
    dp.shutdown();
    drop(ns);
    let mut u = result?;
    u.xdp_answered = after.get(Counter::AnsweredA) - before.get(Counter::AnsweredA);
    eprintln!(
        "control: {} changes in {:.1} s, {} queries answered, {} wrongly",
        u.rounds,
        u.elapsed.as_secs_f64(),
        u.flow.answered,
        u.flow.wrong
    );
    Ok(u)
}

/// Queries names over UDP to 127.0.0.1:53, one at a time, half of them among the changing names, and
/// checks every answer against what the name may hold, until `stop` (or the deadline, or 10 M queries).
fn query_flow(names: usize, changing: usize, stop: &AtomicBool, deadline: Instant) -> Flow {
    let mut f = Flow::default();
    let mut dns = Asker::new("127.0.0.1:53".parse().expect("address"));
    let mut rng = common::rng::Rng::new(15);
    while !stop.load(Ordering::Relaxed)
        && !stopping()
        && Instant::now() < deadline
        && f.sent < 10_000_000
    {
        let i = if rng.coin() {
            rng.below_usize(changing)
        } else {
            rng.below_usize(names)
        };
        f.sent += 1;
        // Sorted A records; an error reply has none, and every name has at least one.
        let Some(got) = dns.a(&name(i), false) else {
            f.lost += 1;
            continue;
        };
        f.answered += 1;
        let ok = got == [v4(i, false)] || (i < changing && got == [v4(i, false), v4(i, true)]);
        if !ok {
            f.wrong += 1;
            if f.first_wrong.is_none() {
                f.first_wrong = Some(format!("{}: {got:?}", name(i)));
            }
        }
    }
    f
}
