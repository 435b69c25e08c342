//! Hitless restarts and upgrades, measured from outside. dnsperf, in a client namespace, sends a steady
//! load across a veth pair to a name XDP answers, while a checker asks the same name and compares every
//! answer with the configured records; meanwhile the overwatch is stopped and started again: by SIGTERM,
//! by kill -9, onto a variant build of the XDP program whose maps are the same (a compatible program
//! change), onto one whose LISTEN map is larger (a changed map layout), and back. Each must lose no
//! query and answer nothing wrong; the link must be the one the first start pinned (the program was
//! replaced through it, never detached). A first restart with `--detach-on-exit`, the behaviour before
//! the data plane outlived its overwatch, shows what the test sees when queries are lost. Last, a restart
//! with a name fewer in the config: the adopted records map loses it.
//!
//! Needs root: `cargo xtask test` runs it (`--ignored`). The variant objects are built by the test into
//! its own target dir (about 40 s the first time).

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread,
    time::{Duration, Instant},
};

use aya::{
    maps::{HashMap as AyaHashMap, Map, MapData, MapInfo},
    programs::{
        links::{FdLink, PinnedLink},
        loaded_programs,
        xdp::XdpMode,
    },
};
use common::netns::{Netns, Proc, TempDir, Veth, wait_for};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType},
};
use opengslb::xdp::{link_pin, pin_dir};
use opengslb_common::maps::{LISTEN_MAP, MAX_LISTEN, RECORDS_MAP, RecordKey, RecordValue};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 2);
const NAME: &str = "app.demo.local.";
const RECORDS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(192, 0, 2, 2),
    Ipv4Addr::new(192, 0, 2, 3),
];
/// dnsperf's rate and run; the restart happens [`RESTART_AT`] into it and must be over well before its end.
const QPS: u64 = 5_000;
const LOAD_SECS: u64 = 10;
const RESTART_AT: Duration = Duration::from_millis(1_500);

/// The config; `gone` adds the name `gone.demo.local`, which a later config drops.
fn config(iface: &str, gone: bool) -> String {
    let (server, domain) = if gone {
        (
            "\n      - { address: 192.0.2.9, service: gone.demo.local }",
            "\n  - { name: gone.demo.local, routing_algorithm: round-robin, regions: [local] }",
        )
    } else {
        ("", "")
    };
    format!(
        r#"mode: overwatch
overwatch: {{ validation: {{ enabled: false }} }}
dns:
  listen_address: "{SERVER}:53"
  zones: [demo.local]
  xdp: {{ interfaces: [{iface}], mode: skb }}
regions:
  - name: local
    servers:
      - {{ address: 192.0.2.1, service: app.demo.local }}
      - {{ address: 192.0.2.2, service: app.demo.local }}
      - {{ address: 192.0.2.3, service: app.demo.local }}{server}
domains:
  - {{ name: app.demo.local, routing_algorithm: round-robin, regions: [local], ttl: 5, max_answers: 3 }}{domain}
"#
    )
}

/// Removes what the overwatches pinned, however the test ends.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = opengslb::xdp::remove_all(&self.0);
    }
}

/// The variant objects, built once into this test's own target dir.
fn variant(feature: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bpf-variants");
    let built = ebpf_builder::build_variant(root, &[feature], &target)
        .unwrap_or_else(|e| panic!("building the {feature} object: {e}"));
    // Every variant leaves its object at the same path: keep each under its own name.
    let kept = target.join(format!("{feature}.o"));
    std::fs::copy(&built, &kept).expect("copy the object");
    kept
}

struct Lab {
    srv: Netns,
    cli: Netns,
    veth: Veth,
    dir: TempDir,
    cfg: PathBuf,
    root: PathBuf,
    starts: std::cell::Cell<usize>,
}

impl Lab {
    /// Starts an overwatch; returns it once XDP answers for it (its attach and pins are done).
    fn start(&self, object: Option<&Path>, detach_on_exit: bool) -> (Proc, PathBuf) {
        self.start_until(object, detach_on_exit, "XDP answers A/AAAA")
    }

    /// Starts an overwatch; returns it once its userspace server listens, with `marker` logged before.
    fn start_until(
        &self,
        object: Option<&Path>,
        detach_on_exit: bool,
        marker: &str,
    ) -> (Proc, PathBuf) {
        let n = self.starts.get() + 1;
        self.starts.set(n);
        let log = self.dir.0.join(format!("overwatch-{n}.log"));
        let mut cmd = self.srv.command(Path::new(env!("CARGO_BIN_EXE_opengslb")));
        cmd.args(["overwatch", "--config"])
            .arg(&self.cfg)
            .arg("--bpffs-root")
            .arg(&self.root);
        if let Some(o) = object {
            cmd.arg("--xdp-object").arg(o);
        }
        if detach_on_exit {
            cmd.arg("--detach-on-exit");
        }
        let p = Proc::spawn(cmd, &log);
        let listening = "userspace DNS server listening";
        let ready = wait_for(Duration::from_secs(30), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains(listening))
        }) && std::fs::read_to_string(&log).is_ok_and(|l| l.contains(marker));
        assert!(
            ready,
            "overwatch {n} not ready within 30 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        (p, log)
    }

    fn link(&self) -> PathBuf {
        link_pin(&self.root, &self.veth.a, XdpMode::Skb)
    }
}

/// The attached link's id and its program's id, tag and map ids.
fn attached(link: &Path) -> (u32, u32, u64, Vec<u32>) {
    let l = FdLink::from(PinnedLink::from_pin(link).expect("the link pin"));
    let info = l.info().expect("link info");
    let prog = loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == info.program_id())
        .expect("the attached program");
    let maps = prog.map_ids().ok().flatten().unwrap_or_default();
    (info.id(), prog.id(), prog.tag(), maps)
}

/// What the checker saw.
#[derive(Default)]
struct Tally {
    right: AtomicU64,
    wrong: AtomicU64,
    missing: AtomicU64,
}

/// Asks for [`NAME`] every millisecond until `stop`, from the client namespace, counting answers that
/// hold exactly [`RECORDS`], other answers, and queries with no reply within 2 s.
fn checker(cli: &Netns, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> thread::JoinHandle<()> {
    let ns = cli.name.clone();
    thread::spawn(move || {
        let there = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
        // SAFETY: setns on this thread with a valid namespace fd.
        assert_eq!(
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&there), libc::CLONE_NEWNET) },
            0
        );
        let sock = UdpSocket::bind((CLIENT, 0)).expect("bind");
        sock.connect(SocketAddr::from((SERVER, 53)))
            .expect("connect");
        let mut id = 0u16;
        let mut buf = [0u8; 1500];
        while !stop.load(Relaxed) {
            id = id.wrapping_add(1);
            let mut m = Message::query();
            m.metadata.id = id;
            m.add_query(Query::query(
                Name::from_ascii(NAME).expect("name"),
                RecordType::A,
            ));
            let _ = sock.send(&m.to_vec().expect("encode"));
            let deadline = Instant::now() + Duration::from_secs(2);
            let outcome = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break &tally.missing;
                }
                sock.set_read_timeout(Some(left)).expect("timeout");
                match sock.recv(&mut buf) {
                    Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                        let mut got: Vec<Ipv4Addr> = Message::from_vec(&buf[..n])
                            .map(|r| {
                                r.answers
                                    .iter()
                                    .filter_map(|rr| match &rr.data {
                                        RData::A(a) => Some(a.0),
                                        _ => None,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        got.sort();
                        break if got == RECORDS {
                            &tally.right
                        } else {
                            &tally.wrong
                        };
                    }
                    // A late reply to an earlier query.
                    Ok(_) => {}
                    // ECONNREFUSED (no listener) or the timeout: no answer.
                    Err(_) => {
                        thread::sleep(left.min(Duration::from_millis(1)));
                    }
                }
            };
            outcome.fetch_add(1, Relaxed);
            thread::sleep(Duration::from_millis(1));
        }
    })
}

/// dnsperf's counts: sent, completed, NOERROR.
fn dnsperf_counts(out: &str) -> (u64, u64, u64) {
    let num = |key: &str| -> u64 {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` in dnsperf's output:\n{out}"))
    };
    let noerror = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Response codes:"))
        .and_then(|s| s.split_whitespace().skip_while(|w| *w != "NOERROR").nth(1))
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    (num("Queries sent:"), num("Queries completed:"), noerror)
}

/// One restart under load: what was lost and what was wrong.
struct Outcome {
    sent: u64,
    lost: u64,
    not_noerror: u64,
    checked: u64,
    wrong: u64,
    missing: u64,
    restart: Duration,
    /// Packets the machine's kernel dropped on the way (a socket's receive buffer full because dnsperf
    /// was not scheduled in time, a CPU's input backlog full): lost to a starved measurement, not by the
    /// server. Counted so that a run on a busy machine is told apart from a lost query.
    kernel_drops: u64,
}

/// Packets the kernel dropped because a CPU's input backlog was full (`/proc/net/softnet_stat`, second
/// column, summed over CPUs; the whole machine's).
fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .expect("softnet_stat")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .sum()
}

/// The client namespace's count of UDP datagrams dropped for a full receive buffer.
fn rcvbuf_errors(ns: &Netns) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "cat", "/proc/net/snmp"])
        .output()
        .expect("read /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (
        udp.next().expect("Udp header"),
        udp.next().expect("Udp values"),
    );
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .expect("RcvbufErrors")
}

/// Runs dnsperf for [`LOAD_SECS`] with the checker beside it, and `restart` [`RESTART_AT`] into it.
fn under_load(lab: &Lab, restart: impl FnOnce() -> (Proc, PathBuf)) -> (Outcome, Proc, PathBuf) {
    let queries = lab.dir.0.join("queries.txt");
    std::fs::write(&queries, format!("{NAME} A\n")).expect("queries");
    let drops_before = rcvbuf_errors(&lab.cli);
    let backlog_before = backlog_drops();
    let perf: Child = Command::new("ip")
        .args(["netns", "exec", &lab.cli.name, "dnsperf", "-s"])
        .arg(SERVER.to_string())
        .arg("-d")
        .arg(&queries)
        .args([
            "-l",
            &LOAD_SECS.to_string(),
            "-Q",
            &QPS.to_string(),
            "-t",
            "2",
        ])
        // As many in flight as the rate sends in the timeout: a gap in the answers then shows as queries
        // lost, where dnsperf's default (100) would stop sending and hide it.
        .args(["-q", &(QPS * 2).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsperf (installed by cargo xtask setup)");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let check = checker(&lab.cli, stop.clone(), tally.clone());
    let began = Instant::now();
    thread::sleep(RESTART_AT);
    let t = Instant::now();
    let (p, log) = restart();
    let took = t.elapsed();
    // Bounded: dnsperf stops by itself after LOAD_SECS and its 2 s timeout.
    let out = perf.wait_with_output().expect("dnsperf ran");
    let elapsed = began.elapsed();
    stop.store(true, Relaxed);
    check.join().expect("checker");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dnsperf failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        RESTART_AT + took + Duration::from_secs(1) < elapsed,
        "the restart ({took:?}) did not end within the load ({elapsed:?}): nothing measured"
    );
    let (sent, completed, noerror) = dnsperf_counts(&text);
    let outcome = Outcome {
        sent,
        lost: sent - completed,
        not_noerror: completed - noerror,
        checked: tally.right.load(Relaxed)
            + tally.wrong.load(Relaxed)
            + tally.missing.load(Relaxed),
        wrong: tally.wrong.load(Relaxed),
        missing: tally.missing.load(Relaxed),
        restart: took,
        kernel_drops: rcvbuf_errors(&lab.cli) - drops_before + backlog_drops() - backlog_before,
    };
    (outcome, p, log)
}

fn sigterm(mut p: Proc) {
    let mut child = p.child.take().expect("running");
    // SAFETY: kill on a child we have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let ok = wait_for(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(ok, "the overwatch did not stop within 15 s of SIGTERM");
}

fn sigkill(mut p: Proc) {
    let mut child = p.child.take().expect("running");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// How many entries the pinned records map holds.
fn records_in_map(root: &Path) -> usize {
    let data = MapData::from_pin(pin_dir(root).join(RECORDS_MAP)).expect("the pinned RECORDS map");
    let map: AyaHashMap<_, RecordKey, RecordValue> =
        AyaHashMap::try_from(Map::HashMap(data)).expect("a hash map");
    map.keys().filter(Result::is_ok).count()
}

/// The addresses `dig +short NAME` prints from the client namespace, one a line (its error messages,
/// also on stdout, left out).
fn dig_short(lab: &Lab, name: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.cli.name, "dig"])
        .arg(format!("@{SERVER}"))
        .args([name, "A", "+short", "+tries=2", "+time=2"])
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.parse::<Ipv4Addr>().is_ok())
        .collect::<Vec<_>>()
        .join("\n")
}

fn listen_max_entries(root: &Path) -> u32 {
    MapInfo::from_pin(pin_dir(root).join(LISTEN_MAP))
        .expect("the pinned LISTEN map")
        .max_entries()
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn restarts_and_upgrades_lose_no_query() {
    common::require_root();
    let program_variant = variant("variant-program");
    let layout_variant = variant("variant-layout");

    let srv = Netns::new("rs-s");
    let cli = Netns::new("rs-c");
    let veth = Veth::new(
        &srv,
        &cli,
        &[&format!("{SERVER}/24")],
        &[&format!("{CLIENT}/24")],
    );
    let dir = TempDir::new("restart");
    let cfg = dir.0.join("overwatch.yaml");
    std::fs::write(&cfg, config(&veth.a, true)).expect("config");
    let root = Path::new("/sys/fs/bpf").join(format!("ogs-test-{}-restart", std::process::id()));
    let _pins = Pins(root.clone());
    let lab = Lab {
        srv,
        cli,
        veth,
        dir,
        cfg,
        root,
        starts: std::cell::Cell::new(0),
    };

    // The behaviour before: the stopped overwatch detaches, the next attaches anew.
    let (first, _) = lab.start(None, true);
    let (base, ow, _) = under_load(&lab, || {
        sigterm(first);
        lab.start(None, false)
    });
    let (link_id, _, builtin_tag, _) = attached(&lab.link());

    let mut report = vec![("SIGTERM + start, --detach-on-exit", base)];
    let mut ow = Some(ow);
    type Stop = fn(Proc);
    let cases: [(&str, Stop, Option<&Path>); 5] = [
        ("SIGTERM + start", sigterm, None),
        ("kill -9 + start", sigkill, None),
        (
            "SIGTERM + start, program variant",
            sigterm,
            Some(&program_variant),
        ),
        (
            "SIGTERM + start, layout variant",
            sigterm,
            Some(&layout_variant),
        ),
        ("SIGTERM + start, back to the built-in", sigterm, None),
    ];
    for (name, stop, object) in cases {
        let old = ow.take().expect("running");
        let (outcome, next, log) = under_load(&lab, || {
            stop(old);
            lab.start(object, false)
        });
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let (id, prog, tag, maps) = attached(&lab.link());
        assert_eq!(
            id, link_id,
            "{name}: the link was replaced, not kept:\n{logged}"
        );
        assert!(
            logged.contains("XDP program replaced through the pinned link"),
            "{name}:\n{logged}"
        );
        let listen_id = MapInfo::from_pin(pin_dir(&lab.root).join(LISTEN_MAP))
            .expect("LISTEN pinned")
            .id();
        assert!(
            maps.contains(&listen_id),
            "{name}: program {prog} does not use the pinned LISTEN map {listen_id} ({maps:?})"
        );
        let layout_changes = name.contains("layout") || name.contains("back");
        assert_eq!(
            logged.contains("adopting the maps a previous run left pinned"),
            !layout_changes,
            "{name}:\n{logged}"
        );
        let want_listen = if name.contains("layout variant") {
            MAX_LISTEN * 2
        } else {
            MAX_LISTEN
        };
        assert_eq!(listen_max_entries(&lab.root), want_listen, "{name}");
        // The tag hashes the instructions, not the maps: only the program variant's differs.
        if name.contains("program variant") {
            assert_ne!(
                tag, builtin_tag,
                "{name}: the variant's program is attached"
            );
        } else {
            assert_eq!(tag, builtin_tag, "{name}: the built-in's code is attached");
        }
        report.push((name, outcome));
        ow = Some(next);
    }

    println!(
        "{:<40} {:>8} {:>6} {:>8} {:>8} {:>6} {:>8} {:>10}",
        "restart under load", "sent", "lost", "dropped", "checked", "wrong", "missing", "restart"
    );
    for (name, o) in &report {
        println!(
            "{name:<40} {:>8} {:>6} {:>8} {:>8} {:>6} {:>8} {:>9.2}s",
            o.sent,
            o.lost,
            o.kernel_drops,
            o.checked,
            o.wrong,
            o.missing,
            o.restart.as_secs_f64()
        );
    }
    for (name, o) in &report {
        assert_eq!(o.wrong, 0, "{name}: wrong answers");
        assert_eq!(o.not_noerror, 0, "{name}: answers other than NOERROR");
        assert!(o.sent > QPS, "{name}: dnsperf sent {} queries", o.sent);
    }
    let (base_name, base) = &report[0];
    assert!(
        base.lost > 0 && base.missing > 0,
        "{base_name}: a detaching restart lost nothing, so this test cannot see a loss"
    );
    for (name, o) in &report[1..] {
        assert_eq!(
            o.missing, 0,
            "{name}: the checker's queries went unanswered"
        );
        assert!(
            o.lost <= o.kernel_drops,
            "{name}: {} queries lost, only {} of them dropped by the client's kernel",
            o.lost,
            o.kernel_drops
        );
    }

    // A restart with a name fewer: the adopted map loses it, so XDP no longer answers it (userspace
    // says NXDOMAIN).
    let before = records_in_map(&lab.root);
    assert_eq!(
        dig_short(&lab, "gone.demo.local"),
        "192.0.2.9",
        "XDP answers gone.demo.local"
    );
    std::fs::write(&lab.cfg, config(&lab.veth.a, false)).expect("config");
    sigterm(ow.take().expect("running"));
    let (next, log) = lab.start(None, false);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("adopting the maps"), "{logged}");
    assert_eq!(records_in_map(&lab.root), before - 1, "{logged}");
    assert_eq!(
        dig_short(&lab, "gone.demo.local"),
        "",
        "gone.demo.local is no longer answered"
    );
    ow = Some(next);

    // Stopped without --detach-on-exit, XDP still answers; `opengslb xdp detach` ends that.
    sigterm(ow.take().expect("running"));
    assert!(lab.link().exists(), "the link stays pinned");
    let out = Command::new(env!("CARGO_BIN_EXE_opengslb"))
        .args(["xdp", "detach", "--bpffs-root"])
        .arg(&lab.root)
        .output()
        .expect("opengslb xdp detach");
    assert!(out.status.success(), "{out:?}");
    assert!(!lab.root.exists(), "every pin removed");
    assert_eq!(dig_short(&lab, NAME), "", "nothing answers once detached");

    // A run that cannot take the data plane over (its program does not load) detaches what the last
    // one left, so that nothing answers from a table no one updates; its userspace server answers.
    let (ow, log) = lab.start(None, false);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged.contains("replaced through"),
        "a fresh attach:\n{logged}"
    );
    sigterm(ow);
    assert!(lab.link().exists(), "the link stays pinned");
    let broken = lab.dir.0.join("broken.o");
    std::fs::write(&broken, b"not an ELF object").expect("write");
    let (ow, log) = lab.start_until(
        Some(&broken),
        true,
        "detaching the XDP program a previous run",
    );
    assert!(
        !lab.link().exists(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        dig_short(&lab, NAME).lines().count(),
        3,
        "userspace answers"
    );
    sigterm(ow);
}
