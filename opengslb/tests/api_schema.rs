//! The API against its own OpenAPI document: schemathesis (from PyPI, in a virtual environment under
//! `target/`) generates requests from `/api/v1/openapi.json`, sends them to a running overwatch with the
//! token, and checks that none gets a server error and every answer matches the document. `cargo xtask
//! test` installs schemathesis first; a plain `cargo test` installs it here if it can, and when it
//! cannot (no python3-venv, no network) says so on stderr: never a silent pass.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    labs,
    netns::{Proc, TempDir},
};

const TOKEN: &str = "api-token-0123456789";
/// Kept within one major version: the flags below are schemathesis 4's.
const SCHEMATHESIS: &str = "schemathesis>=4.32,<5";
/// The whole run (about 10 s here) is stopped past this.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// `target/schemathesis-venv`, where `cargo xtask test` puts it.
fn venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d));
    target.join("schemathesis-venv")
}

/// The schemathesis executable, installed if missing; `Err` says why it is not there.
fn schemathesis() -> Result<PathBuf, String> {
    let venv = venv();
    let bin = venv.join("bin/schemathesis");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!(
        "api_schema: installing {SCHEMATHESIS} into {} (about 40 s)",
        venv.display()
    );
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", SCHEMATHESIS]))?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} missing after pip install", bin.display()))
    }
}

fn overwatch(dir: &TempDir, api: SocketAddr, dns: u16) -> Proc {
    let config = format!(
        r#"mode: overwatch
overwatch:
  validation: {{ enabled: true }}
  data_dir: {data}
dns:
  listen_address: "127.0.0.1:{dns}"
  zones: [demo.local]
regions:
  - name: eu
    health_check: {{ type: tcp, interval: 10m, timeout: 500ms }}
    servers:
      - {{ address: 127.0.0.2, port: 9, service: app.demo.local }}
      - {{ address: "2001:db8::1", service: app.demo.local }}
domains:
  - {{ name: app.demo.local, regions: [eu], ttl: 5 }}
api:
  enabled: true
  address: "{api}"
  allowed_networks: [127.0.0.0/8]
  token: "{TOKEN}"
"#,
        data = dir.0.join("data").display(),
    );
    common::write_private(&dir.0.join("overwatch.yaml"), &config);
    labs::spawn(
        Path::new(env!("CARGO_BIN_EXE_opengslb")),
        &dir.0,
        "overwatch",
    )
}

#[test]
fn every_answer_matches_the_openapi_document() {
    let bin = match schemathesis() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("api_schema: SKIPPED, schemathesis is not available: {why}");
            eprintln!(
                "api_schema: `cargo xtask setup` installs python3-venv; PyPI must be reachable"
            );
            return;
        }
    };
    let dir = TempDir::new("api-schema");
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, common::free_port()));
    let _overwatch = overwatch(&dir, api, common::free_port());
    let log = || std::fs::read_to_string(dir.0.join("overwatch.log")).unwrap_or_default();
    labs::wait_ready(api, log);

    let started = Instant::now();
    let mut child = Command::new(&bin)
        .arg("run")
        .arg(format!("http://{api}/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", "20"])
        // `/servers/{id}` takes `service/address/port` in one segment: most strings schemathesis makes
        // for it are dropped before sending, which its health check would count as a failure.
        .arg("--suppress-health-check=filter_too_much")
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .env("NO_COLOR", "1")
        .current_dir(&dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run schemathesis");
    // Read while it runs: a long report must not fill the pipe and stall it.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    // The summary (and any failure) is the end of its report.
    let tail: Vec<&str> = out.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    eprintln!(
        "schemathesis ({:.1} s):\n{}\n{err}",
        started.elapsed().as_secs_f64(),
        tail.join("\n")
    );
    let status = status.unwrap_or_else(|| panic!("schemathesis still running after {RUN_LIMIT:?}"));
    assert!(
        status.success(),
        "schemathesis failed ({status}):\n{out}\n{err}\noverwatch log:\n{}",
        log()
    );
    assert!(
        !log().contains("panicked"),
        "the overwatch panicked under generated requests:\n{}",
        log()
    );
}
