//! Running as a service (`dist/systemd/`): the units pass `systemd-analyze verify`, and each capability
//! the overwatch's unit grants is explained in it and in docs/operations.md. Then, as root (`cargo xtask
//! test`), what the unit sets up is done by hand: the overwatch runs as a user that is not root, under
//! `setpriv` with no new privileges and exactly the unit's capabilities, on a bpffs mounted 0700 as
//! systemd mounts it, with its pin directory made for that user and bind-mounted where the user can
//! reach it (the unit's `ExecStartPre=+` and `BindPaths=`), from a config file only that user can read.
//! It attaches XDP, which answers `dig` from a peer namespace, and answers on port 53 from userspace;
//! an agent run as the same user with no capability at all reports to it. Without any one of the unit's
//! capabilities, or without the bind mount, what needs it fails.

mod common;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use aya::programs::xdp::XdpMode;
use common::{
    labs::{self, AGENT_TOKEN, KEY},
    netns::{Netns, Proc, TempDir, Veth, sh, wait_for},
};
use opengslb::xdp::{Counters, link_pin, pin_dir};
use opengslb_common::counters::Counter;

const OVERWATCH_UNIT: &str = "opengslb-overwatch.service";
const AGENT_UNIT: &str = "opengslb-agent.service";
/// Where the units run the binary from; the tests put the one they were built with in its place.
const INSTALLED: &str = "/usr/local/bin/opengslb";

const SERVER: &str = "198.18.3.1";
const GOSSIP: u16 = 7946;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_opengslb"))
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn unit_text(unit: &str) -> String {
    let path = repo_file(&format!("dist/systemd/{unit}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values of `key=` in a unit, split at spaces (empty when the key is set to nothing).
fn unit_values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in the unit"));
    line.split_whitespace().map(str::to_owned).collect()
}

/// The capabilities a unit grants: its `AmbientCapabilities=`, which must be its whole
/// `CapabilityBoundingSet=` too.
fn unit_caps(unit: &str) -> Vec<String> {
    let text = unit_text(unit);
    let ambient = unit_values(&text, "AmbientCapabilities");
    let bounding = unit_values(&text, "CapabilityBoundingSet");
    assert_eq!(
        ambient, bounding,
        "{unit}: ambient and bounding sets differ"
    );
    ambient
}

/// A capability's number (include/uapi/linux/capability.h), for the masks in /proc/PID/status.
fn cap_bit(cap: &str) -> u32 {
    match cap {
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_ADMIN" => 21,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("add {other} to cap_bit"),
    }
}

/// `systemd-analyze verify` on `text` saved as `<dir>/<name>`: whether it passed, and what it said.
fn verify(dir: &Path, name: &str, text: &str) -> (bool, String) {
    let copy = dir.join(name);
    std::fs::write(&copy, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd; `cargo xtask setup` installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_units_pass_systemd_analyze_verify_and_explain_each_capability() {
    let dir = TempDir::new("units");
    for unit in [OVERWATCH_UNIT, AGENT_UNIT] {
        let text = unit_text(unit);
        assert!(text.contains(&format!("ExecStart={INSTALLED} ")), "{unit}");
        // verify checks that the binary exists: the one this test was built with stands in.
        let text = text.replace(INSTALLED, &bin().display().to_string());
        let (passed, said) = verify(&dir.0, unit, &text);
        println!("systemd-analyze verify {unit}: passed {passed}, said {said:?}");
        // It exits 0 for a unit it only warns about, naming the file: nothing may name ours.
        assert!(passed && !said.contains(unit), "{unit}: {said}");
        let typo = text.replace("ProtectSystem=", "ProtectSistem=");
        let (_, said) = verify(&dir.0, &format!("typo-{unit}"), &typo);
        assert!(
            said.contains("Unknown key 'ProtectSistem'"),
            "a typo in {unit} is reported: {said}"
        );
    }

    assert!(unit_caps(AGENT_UNIT).is_empty(), "the agent needs none");
    let caps = unit_caps(OVERWATCH_UNIT);
    assert!(!caps.is_empty());
    let unit = unit_text(OVERWATCH_UNIT);
    let doc = std::fs::read_to_string(repo_file("docs/operations.md")).unwrap();
    for cap in &caps {
        assert!(
            unit.lines()
                .any(|l| l.starts_with('#') && l.split_whitespace().nth(1) == Some(cap)),
            "a comment in the unit says why it has {cap}"
        );
        assert!(
            doc.lines().any(|l| l.starts_with(&format!("| `{cap}` |"))),
            "docs/operations.md says why the unit has {cap}"
        );
    }
}

/// The user the tests run the services as: `nobody`, whose uid and gid.
fn user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = sh(&["id", flag, "nobody"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("an id")
    };
    (id("-u"), id("-g"))
}

/// `setpriv` as the unit runs a process: `user`, no supplementary groups, no new privileges, and
/// exactly `caps` (inheritable, ambient and bounding), then `program`.
fn setpriv(ns: &Netns, user: (u32, u32), caps: &[String], program: &Path) -> Command {
    let set = std::iter::once("-all".to_owned())
        .chain(
            caps.iter()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = ns.command(Path::new("setpriv"));
    cmd.arg(format!("--reuid={}", user.0))
        .arg(format!("--regid={}", user.1))
        .args(["--clear-groups", "--no-new-privs"])
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg("--")
        .arg(program);
    cmd
}

/// Makes `path` belong to `user`.
fn chown(path: &Path, user: (u32, u32)) {
    sh(&[
        "chown",
        &format!("{}:{}", user.0, user.1),
        &path.display().to_string(),
    ]);
}

/// A directory owned by `user`, mode 0700 (as the unit's `StateDirectory=`, `RuntimeDirectory=`).
fn user_dir(path: &Path, user: (u32, u32)) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown(path, user);
    path.to_path_buf()
}

/// The scene: a server namespace with XDP's interface, a client namespace, the service user and its
/// files.
struct Scene {
    srv: Netns,
    cli: Netns,
    veth: Veth,
    user: (u32, u32),
    dir: TempDir,
    config: PathBuf,
    /// The binary, where the user can reach it (the one the test was built with may lie under a
    /// directory only root can enter, as `/root`).
    bin: PathBuf,
}

impl Scene {
    fn new(tag: &str) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        common::require_root();
        let srv = Netns::new(&format!("{tag}s"));
        let cli = Netns::new(&format!("{tag}c"));
        let veth = Veth::new(&srv, &cli, &[&format!("{SERVER}/24")], &["198.18.3.2/24"]);
        let user = user();
        let dir = TempDir::new(tag);
        // The user walks through it to its own files.
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let state = user_dir(&dir.0.join("state"), user);
        let config = dir.0.join("overwatch.yaml");
        common::write_private(&config, &overwatch_config(&veth.a, &state));
        chown(&config, user);
        let installed = dir.0.join("opengslb");
        std::fs::hard_link(bin(), &installed)
            .or_else(|_| std::fs::copy(bin(), &installed).map(drop))
            .expect("the binary in the scene's directory");
        Self {
            srv,
            cli,
            veth,
            user,
            dir,
            config,
            bin: installed,
        }
    }

    /// Starts the overwatch as the unit does, with `caps`, logging to `<dir>/<tag>.log`; with `bound`
    /// false, without the bind mount: it is given the pin directory inside the bpffs that is closed to it.
    fn overwatch(&self, caps: &[String], tag: &str, bound: bool) -> Overwatch {
        // A bpffs as systemd mounts it (mode 0700: only root may enter), in a mount namespace of the
        // overwatch's own, so it goes when the overwatch does; the pin directory made for the user
        // (`ExecStartPre=+install -d ...`) and bind-mounted where the user can reach it (`BindPaths=`).
        let bpffs = self.dir.0.join(format!("{tag}-bpffs"));
        let bind = self.dir.0.join(format!("{tag}-bpf"));
        std::fs::create_dir_all(&bpffs).unwrap();
        std::fs::create_dir_all(&bind).unwrap();
        let script = r#"set -e
mount -t bpf -o mode=0700 bpf "$1"
install -d -o "$3" -g "$4" -m 0700 "$1/opengslb"
mount --bind "$1/opengslb" "$2"
shift 4
exec "$@""#;
        let priv_cmd = setpriv(&self.srv, self.user, caps, &self.bin);
        let mut cmd = self.srv.command(Path::new("unshare"));
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&bpffs)
        .arg(&bind)
        .arg(self.user.0.to_string())
        .arg(self.user.1.to_string())
        .arg(priv_cmd.get_program())
        .args(priv_cmd.get_args())
        .args(["overwatch", "--detach-on-exit", "--config"])
        .arg(&self.config)
        .arg("--bpffs-root")
        .arg(if bound {
            bind.clone()
        } else {
            bpffs.join("opengslb")
        });
        let log = self.dir.0.join(format!("{tag}.log"));
        let proc = Proc::spawn(cmd, &log);
        let pid = proc.child.as_ref().expect("spawned").id();
        Overwatch {
            proc,
            // The pins as the overwatch sees them, through its own mount namespace.
            root: PathBuf::from(format!("/proc/{pid}/root{}", bind.display())),
            pid,
            log,
        }
    }

    /// One `dig +short` from the client namespace: what it printed.
    fn dig_short(&self, name: &str, qtype: &str) -> String {
        let at = format!("@{SERVER}");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.cli.name, "dig", &at, name, qtype])
            .args(["+short", "+tries=1", "+time=2"])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The addresses `app.demo.local` A is answered with, sorted.
    fn dig(&self) -> Vec<IpAddr> {
        let mut got: Vec<IpAddr> = self
            .dig_short("app.demo.local", "A")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        got.sort();
        got
    }
}

fn overwatch_config(iface: &str, state: &Path) -> String {
    format!(
        r#"mode: overwatch
logging: {{ format: text }}
overwatch:
  validation: {{ enabled: false }}
  data_dir: {state}
  gossip: {{ bind_address: "127.0.0.1:{GOSSIP}", encryption_key: "{KEY}" }}
  agent_tokens: {{ app.demo.local: "{AGENT_TOKEN}" }}
dns:
  listen_address: "0.0.0.0:53"
  zones: [demo.local]
  default_ttl: 5
  xdp: {{ interfaces: [{iface}], mode: skb }}
regions:
  - name: local
    servers:
      - {{ address: 192.0.2.1, service: app.demo.local }}
domains:
  - {{ name: app.demo.local, regions: [local], ttl: 5, max_answers: 16 }}
"#,
        state = state.display(),
    )
}

/// A running overwatch: its process, where its pins are, and its log.
struct Overwatch {
    proc: Proc,
    pid: u32,
    root: PathBuf,
    log: PathBuf,
}

impl Overwatch {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has ended (reaped here).
    fn exited(&mut self) -> bool {
        let child = self.proc.child.as_mut().expect("spawned");
        child.try_wait().expect("wait").is_some()
    }
}

/// A process's uid and capability sets, from /proc/PID/status: (`Uid`, [`CapInh`, `CapPrm`, `CapEff`,
/// `CapBnd`, `CapAmb`], `NoNewPrivs`).
fn identity(pid: u32) -> (u32, Vec<u64>, bool) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> &str {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} in {status}"))
            .trim()
    };
    let uid = field("Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let caps = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .map(|f| u64::from_str_radix(field(f), 16).unwrap())
        .to_vec();
    (uid, caps, field("NoNewPrivs") == "1")
}

fn mask(caps: &[String]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1 << cap_bit(c))
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn the_overwatch_runs_unprivileged_with_the_units_capabilities_and_answers_from_xdp() {
    let scene = Scene::new("svc");
    let caps = unit_caps(OVERWATCH_UNIT);
    println!("the unit's capabilities: {caps:?}");
    let started = std::time::Instant::now();
    let mut ow = scene.overwatch(&caps, "overwatch", true);
    let link = link_pin(&ow.root, &scene.veth.a, XdpMode::Skb);
    assert!(
        wait_for(Duration::from_secs(20), || link.exists() || ow.exited()),
        "the overwatch did not attach XDP: {}",
        ow.log()
    );
    assert!(link.exists(), "{}", ow.log());
    println!(
        "XDP attached and pinned {:.1} s after the start",
        started.elapsed().as_secs_f64()
    );
    let (uid, sets, no_new_privs) = identity(ow.pid);
    let want = mask(&caps);
    assert_eq!(uid, scene.user.0, "it runs as the service user");
    assert_eq!(
        sets,
        [want, want, want, want, want],
        "inheritable, permitted, effective, bounding and ambient sets are the unit's"
    );
    assert!(no_new_privs);
    let shown = scene.srv.exec(&["ip", "link", "show", &scene.veth.a]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("xdpgeneric"), "XDP attached: {shown}");

    let before = Counters::read_pinned(&pin_dir(&ow.root)).expect("the pinned counters");
    let queries = 6;
    for _ in 0..queries {
        let got = scene.dig();
        assert_eq!(got, [IpAddr::from([192, 0, 2, 1])], "{}", ow.log());
    }
    let after = Counters::read_pinned(&pin_dir(&ow.root)).unwrap();
    assert_eq!(
        after.get(Counter::AnsweredA) - before.get(Counter::AnsweredA),
        queries,
        "XDP answered every query: {after}"
    );
    // XDP passes SOA queries: the userspace server bound port 53 as this user.
    let soa = scene.dig_short("demo.local", "SOA");
    assert!(
        soa.contains("hostmaster.demo.local."),
        "userspace answers on port 53: {soa}\n{}",
        ow.log()
    );

    // The agent, as its unit runs it: the same user, no capability at all. It checks the overwatch's
    // TCP port 53 and reports it as 127.0.0.1.
    let agent_caps = unit_caps(AGENT_UNIT);
    let run = user_dir(&scene.dir.0.join("agent-run"), scene.user);
    let agent_cfg = scene.dir.0.join("agent.yaml");
    common::write_private(&agent_cfg, &labs::agent(&run, GOSSIP, 53));
    chown(&agent_cfg, scene.user);
    let mut cmd = setpriv(&scene.srv, scene.user, &agent_caps, &scene.bin);
    cmd.args(["agent", "--config"]).arg(&agent_cfg);
    let agent_log = scene.dir.0.join("agent.log");
    let agent = Proc::spawn(cmd, &agent_log);
    let started = std::time::Instant::now();
    let reported = [IpAddr::from([127, 0, 0, 1]), IpAddr::from([192, 0, 2, 1])];
    assert!(
        wait_for(Duration::from_secs(15), || scene.dig() == reported),
        "the agent's backend reaches DNS: {:?}\nagent: {}\noverwatch: {}",
        scene.dig(),
        std::fs::read_to_string(&agent_log).unwrap_or_default(),
        ow.log()
    );
    println!(
        "the agent's backend in DNS {:.1} s after the agent started",
        started.elapsed().as_secs_f64()
    );
    let agent_pid = agent.child.as_ref().unwrap().id();
    let (uid, sets, no_new_privs) = identity(agent_pid);
    assert_eq!((uid, sets, no_new_privs), (scene.user.0, vec![0; 5], true));
    drop(agent);

    assert!(ow.proc.interrupt(), "a clean exit on SIGINT: {}", ow.log());
}

/// What fails without each of the unit's capabilities: what its log then says, in one line.
fn symptom(cap: &str) -> &'static [&'static str] {
    const NO_XDP: &str = "XDP is not available";
    match cap {
        "CAP_BPF" => &[NO_XDP, "failed to create map", "Operation not permitted"],
        "CAP_NET_ADMIN" => &[
            NO_XDP,
            "BPF_PROG_LOAD syscall returned Operation not permitted",
        ],
        "CAP_PERFMON" => &[NO_XDP, "pointer -= pointer prohibited"],
        "CAP_NET_BIND_SERVICE" => &["cannot listen on 0.0.0.0:53: Permission denied"],
        other => panic!("say what fails without {other}"),
    }
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn without_any_one_of_the_units_capabilities_or_its_bind_mount_the_overwatch_cannot_do_its_job() {
    let scene = Scene::new("svcx");
    let caps = unit_caps(OVERWATCH_UNIT);
    for dropped in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != dropped).cloned().collect();
        let tag = dropped.to_lowercase();
        let ow = scene.overwatch(&fewer, &tag, true);
        let want = symptom(dropped);
        let line = || {
            ow.log()
                .lines()
                .find(|l| want.iter().all(|w| l.contains(w)))
                .map(str::to_owned)
        };
        assert!(
            wait_for(Duration::from_secs(20), || line().is_some()),
            "without {dropped}: no line with {want:?} in the log:\n{}",
            ow.log()
        );
        let line = line().unwrap_or_default();
        // The verifier's log is long: print what leads up to the reason.
        let reason = want.last().expect("a fragment");
        let end = line.find(reason).map_or(0, |at| at + reason.len());
        let start = line.floor_char_boundary(end.saturating_sub(160));
        println!("without {dropped}: ...{}", &line[start..end]);
        drop(ow);
    }
    // With them all but without the unit's bind mount, the pin directory is out of the user's reach.
    let ow = scene.overwatch(&caps, "unbound", false);
    let want = "this user cannot reach the pin directory";
    assert!(
        wait_for(Duration::from_secs(20), || ow.log().contains(want)),
        "without the bind mount: {want:?} not in the log:\n{}",
        ow.log()
    );
    println!("without the bind mount: {want}");
}
