//! Demo 2 in docker, as users run it: `cargo xtask demo docker` brings up the compose project (with this
//! test's own opengslb binary and the caps override, since some hosts refuse privileged containers), then
//! everything is looked at from inside the client container, as the seed's walkthrough does: the three
//! webapps answered, `./scripts/drain.sh webapp2 on` taking webapp2 out of DNS while its nginx still
//! answers `/health` with 200 and the API says `agent_draining`, XDP answering, the drain undone, and the
//! client's guided `demo.sh` run through both scenarios with its host commands run as a user would.
//!
//! Needs root and docker.io (`cargo xtask setup` installs it): starts dockerd if none runs, and stops it
//! after. The base image is built once (one to two minutes with debootstrap) and cached by docker.

mod common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    AT_ONCE,
    netns::{Proc, TempDir, wait_every, wait_for},
};

const DEMO_DIR: &str = "demos/demo-2-agent-overwatch";
const BASE_IMAGE: &str = "opengslb-demo-base:bookworm";
const ALL: &str = "10.20.0.21 10.20.0.22 10.20.0.23";
const WITHOUT_2: &str = "10.20.0.21 10.20.0.23";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// Runs `args` under `timeout SECS` in the demo's directory; its stdout if it succeeded.
fn try_run(secs: u32, args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .args(args)
        .current_dir(workspace().join(DEMO_DIR))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn run(secs: u32, args: &[&str]) -> String {
    try_run(secs, args).unwrap_or_else(|e| panic!("{e}"))
}

/// `docker exec client ...`: the test looks at the demo only from where the seed's user stands.
fn client(args: &[&str]) -> String {
    let mut full = vec!["docker", "exec", "client"];
    full.extend_from_slice(args);
    run(30, &full)
}

fn answers() -> String {
    client(&["dns-answers"])
}

/// `cargo xtask ARGS`, the way users bring the demo up and down.
fn xtask(args: &[&str]) -> Result<(), String> {
    let status = Command::new("timeout")
        // Cold: the base image (a minute or three) and the xtask binary (under a minute).
        .arg("1200")
        .arg(env!("CARGO"))
        .arg("xtask")
        .args(args)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo xtask: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo xtask {args:?}: {status}"))
    }
}

/// dockerd, started here if none answers, stopped on drop if it was.
fn dockerd(log: &Path) -> Option<Proc> {
    if try_run(20, &["docker", "info"]).is_ok() {
        println!("dockerd: already running");
        return None;
    }
    let bin = ["/usr/bin/dockerd", "/usr/sbin/dockerd"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("dockerd is not installed: `cargo xtask setup` installs docker.io");
    let proc = Proc::spawn(Command::new(bin), log);
    assert!(
        wait_for(Duration::from_secs(60), || try_run(10, &["docker", "info"])
            .is_ok()),
        "dockerd did not answer within 60 s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    println!("dockerd: started for this test (log {})", log.display());
    Some(proc)
}

/// Takes the demo down when dropped, so a failing test leaves no containers behind.
struct Up(bool);

impl Up {
    fn down(&mut self) {
        if std::mem::take(&mut self.0) {
            xtask(&["demo", "docker", "down"]).expect("cargo xtask demo docker down");
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.0 {
            let _ = xtask(&["demo", "docker", "down"]);
        }
    }
}

/// webapp2 as `/api/v1/overwatch/backends` shows it.
fn webapp2_backend() -> serde_json::Value {
    let body = client(&[
        "curl",
        "-s",
        "--max-time",
        "2",
        "http://10.20.0.10:8080/api/v1/overwatch/backends?service=app.demo.local",
    ]);
    let all: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    all["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["address"] == "10.20.0.22"))
        .cloned()
        .unwrap_or_else(|| panic!("no 10.20.0.22 in {body}"))
}

/// Waits (every 0: each look is a `docker exec` of nine digs, a few hundred ms) until DNS shows
/// `want`; returns how long that took.
fn until_answers(want: &str, within: Duration) -> Duration {
    let t = Instant::now();
    let mut seen = String::new();
    assert!(
        wait_every(Duration::ZERO, within, || {
            seen = answers();
            seen == want
        }),
        "DNS answers {seen:?}, not {want:?}, after {within:?}"
    );
    t.elapsed()
}

/// Runs the client's demo.sh as a user would: each `host$ ` line it prints is run on the host, in the
/// demo's directory, then Enter is pressed. Returns its output.
fn guided_demo() -> String {
    let mut child = Command::new("timeout")
        .args(["300", "docker", "exec", "-i", "client"])
        .args(["env", "DEMO_WAIT=60", "DEMO_PROMPT=60", "/root/demo.sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker exec -i client /root/demo.sh");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut text = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("demo.sh's output");
        println!("  demo.sh| {line}");
        if let Some(cmd) = line.strip_prefix("host$ ") {
            let out = run(60, &["sh", "-c", cmd]);
            println!("  host$ {cmd}\n  {out}");
            stdin.write_all(b"\n").expect("pressing Enter");
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().expect("demo.sh");
    assert!(status.success(), "demo.sh failed ({status}):\n{text}");
    text
}

#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn docker_demo_drains_webapp2_out_of_dns_while_its_nginx_stays_up() {
    common::require_root();
    let started = Instant::now();
    let dir = TempDir::new("docker");
    let _dockerd = dockerd(&dir.0.join("dockerd.log"));
    let cold = try_run(20, &["docker", "image", "inspect", BASE_IMAGE]).is_err();
    println!(
        "base image {BASE_IMAGE}: {}",
        if cold {
            "absent: built now (cold)"
        } else {
            "cached (warm)"
        }
    );

    let mut up = Up(true);
    let bin = env!("CARGO_BIN_EXE_opengslb");
    xtask(&["demo", "docker", "--caps", "--opengslb", bin]).expect("the demo comes up");
    let ready = started.elapsed();
    println!("demo up after {:.1} min", ready.as_secs_f64() / 60.0);

    // xtask waited for these already; the test says so itself.
    until_answers(ALL, Duration::from_secs(60));
    for i in 1..=3 {
        let page = client(&[
            "curl",
            "-s",
            "--max-time",
            "2",
            &format!("http://10.20.0.2{i}/"),
        ]);
        assert_eq!(page, format!("Hello from webapp{i}"));
    }

    // ./scripts/drain.sh webapp2 on
    run(30, &["./scripts/drain.sh", "webapp2", "on"]);
    // The agent reports the drain at once; each look costs a docker exec, hence twice AT_ONCE.
    let out = until_answers(WITHOUT_2, 2 * AT_ONCE);
    println!("drain file -> webapp2 out of DNS (as the client sees it): {out:.1?}");
    let code = client(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "2",
        "http://10.20.0.22/health",
    ]);
    assert_eq!(code, "200", "nginx on webapp2 still answers /health");
    let mut b = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(15), || {
            b = webapp2_backend();
            b["reason"] == "agent_draining" && b["validation_healthy"] == true
        }),
        "the API shows webapp2 drained by its agent while validation passes: {b}"
    );
    println!(
        "API: webapp2 {} reason {} validation_healthy {}",
        b["effective_status"], b["reason"], b["validation_healthy"]
    );

    let counters = run(
        30,
        &["docker", "exec", "overwatch", "opengslb", "xdp", "counters"],
    );
    let answered: u64 = counters
        .lines()
        .find_map(|l| l.strip_prefix("answered "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `answered N` in:\n{counters}"));
    println!("XDP answered {answered} queries");
    assert!(answered > 0, "XDP answers in the container:\n{counters}");

    // ./scripts/drain.sh webapp2 off
    run(30, &["./scripts/drain.sh", "webapp2", "off"]);
    let back = until_answers(ALL, 2 * AT_ONCE);
    println!("drain file removed -> webapp2 back in DNS: {back:.1?}");

    let t = Instant::now();
    let walkthrough = guided_demo();
    let figures: Vec<&str> = walkthrough
        .lines()
        .filter(|l| l.starts_with("webapp2 ") && l.contains(" after "))
        .collect();
    assert_eq!(
        figures.len(),
        4,
        "demo.sh saw webapp2 leave and return twice:\n{walkthrough}"
    );
    println!(
        "demo.sh, both scenarios, in {:.0?}: {}",
        t.elapsed(),
        figures.join("; ")
    );

    up.down();
    println!(
        "docker demo test ({}): {:.1} min, of which up {:.1} min",
        if cold { "cold" } else { "warm" },
        started.elapsed().as_secs_f64() / 60.0,
        ready.as_secs_f64() / 60.0
    );
}
