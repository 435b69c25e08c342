//! The docker compose demo: images from the host's binaries, then `docker-compose up -d --build`.
//!
//! The steps are the README's plain ones (build, copy the binary, base image, compose up), so that what
//! this command does and what a user types by hand stay the same thing: the base image comes from the
//! demo's own `scripts/base-image.sh`.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use xtask::{cargo, command_line, exec, is_root, target_dir, which};

use super::DEMO_DIR;

/// The base image `scripts/base-image.sh` builds (under this fixed tag, once).
const BASE_IMAGE: &str = "opengslb-demo-base:bookworm";
/// The override for hosts that refuse privileged containers.
const CAPS_FILE: &str = "docker-compose.caps.yml";
/// How long the overwatch may take to be ready and the agents to be answered, after `up`.
const READY_WITHIN: Duration = Duration::from_secs(90);
/// The three webapps as `dns-answers` (in the client image) prints them.
const ALL_WEBAPPS: &str = "10.20.0.21 10.20.0.22 10.20.0.23";

/// Options of `cargo xtask demo docker`.
#[derive(clap::Args)]
pub struct Options {
    /// Add docker-compose.caps.yml: the overwatch gets NET_ADMIN and SYS_ADMIN instead of running
    /// privileged. Without this flag it is added when docker refuses a privileged container here.
    #[arg(long)]
    pub caps: bool,
    /// Build the base image again even if it is present.
    #[arg(long)]
    pub rebuild_base: bool,
    /// `down`: stop and remove the demo.
    #[command(subcommand)]
    pub command: Option<DockerCommand>,
}

/// What `cargo xtask demo docker` does other than bringing the demo up.
#[derive(clap::Subcommand)]
pub enum DockerCommand {
    /// `docker-compose down -v`: remove the demo's containers, network and volume (images stay).
    Down,
}

/// Brings the demo up (or down, with `down`), saying what it does at each step.
pub fn run(root: &Path, opengslb: Option<&Path>, opts: Options) -> Result<()> {
    if !is_root() {
        bail!(
            "xtask demo docker must run as root: it talks to dockerd's socket and builds the base image \
             with debootstrap (try `sudo -E cargo xtask demo docker`)"
        );
    }
    let dir = root.join(DEMO_DIR);
    if let Some(DockerCommand::Down) = opts.command {
        step("removing the demo: containers, network and the overwatch's volume");
        return exec(compose(&dir, false)?.args(["down", "-v"]));
    }
    let started = Instant::now();
    step("setup: docker.io, docker-compose, debootstrap and the build tools");
    crate::setup::ensure()?;

    let bin = match opengslb {
        Some(p) => {
            step(&format!("using the opengslb binary {}", p.display()));
            p.to_path_buf()
        }
        None => {
            step("building opengslb (release)");
            exec(cargo(root).args(["build", "--release", "--package", "opengslb"]))?;
            target_dir(root).join("release/opengslb")
        }
    };
    copy_binary(&bin, &dir.join("bin/opengslb"))?;

    step("checking that dockerd answers (docker info)");
    docker_reachable()?;

    step(&format!(
        "base image {BASE_IMAGE} (built once, then cached)"
    ));
    let mut base = Command::new("sh");
    base.arg(dir.join("scripts/base-image.sh"))
        .current_dir(&dir);
    if opts.rebuild_base {
        base.arg("--rebuild");
    }
    exec(&mut base)?;

    let caps = opts.caps || privileged_refused()?;
    step(&format!(
        "docker-compose up -d --build ({})",
        if caps {
            "overwatch with NET_ADMIN and SYS_ADMIN: docker-compose.caps.yml"
        } else {
            "overwatch privileged"
        }
    ));
    exec(compose(&dir, caps)?.args(["up", "-d", "--build"]))?;

    step("waiting for the overwatch to be ready and the three webapps to be answered");
    let xdp = wait_ready()?;
    eprintln!(
        "demo docker: up in {:.0} s; XDP {xdp}{}",
        started.elapsed().as_secs_f64(),
        if xdp == "attached" {
            " (docker exec overwatch opengslb xdp counters)"
        } else {
            ": the userspace server answers (docker logs overwatch says why)"
        }
    );
    eprintln!(
        "\nNext:\n  ssh -p 2222 root@localhost        (password demo), then ./demo.sh\n  \
         docker exec client dig @10.20.0.10 app.demo.local +short\n  \
         cd {DEMO_DIR} && ./scripts/drain.sh webapp2 on\n  \
         cargo xtask demo docker down       (removes it)"
    );
    Ok(())
}

fn step(what: &str) {
    eprintln!("==> demo docker: {what}");
}

/// Copies the binary into the demo's gitignored bin/, where the Dockerfiles COPY it from. Through a
/// temporary name: a build reading a half-written binary would bake it into the images.
fn copy_binary(from: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().context("bin/ has a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(".opengslb.tmp");
    fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))?;
    eprintln!("demo docker: {} -> {}", from.display(), to.display());
    Ok(())
}

/// `timeout SECS cmd...`: a docker command that cannot hang the demo when dockerd does.
fn bounded(secs: u32, args: &[&str]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg(secs.to_string()).args(args);
    cmd
}

fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .with_context(|| format!("cannot start `{}`", command_line(cmd)))
}

/// Fails saying how to start dockerd when it does not answer. Starting one here would leave a root
/// daemon running after this command, owned by nobody: that is the user's (or the init system's) call.
fn docker_reachable() -> Result<()> {
    let out = output(&mut bounded(
        30,
        &["docker", "info", "--format", "{{.ServerVersion}}"],
    ))?;
    if out.status.success() {
        eprintln!(
            "demo docker: dockerd {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
        return Ok(());
    }
    bail!(
        "dockerd does not answer ({}). Start it:\n  systemctl start docker\nor, without systemd:\n  \
         dockerd > /var/log/dockerd.log 2>&1 &",
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Whether docker refuses a privileged container here (some sandboxes and rootless setups do: runc's
/// "unable to apply caps"), tried with the base image, which is local by now.
fn privileged_refused() -> Result<bool> {
    let out = output(&mut bounded(
        60,
        &[
            "docker",
            "run",
            "--rm",
            "--privileged",
            "--network",
            "none",
            BASE_IMAGE,
            "true",
        ],
    ))?;
    if out.status.success() {
        return Ok(false);
    }
    let why = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "demo docker: docker refuses privileged containers here ({}): using {CAPS_FILE}",
        why.lines().next().unwrap_or("").trim()
    );
    Ok(true)
}

/// `docker-compose` (Debian's 1.29, which setup installs) or else `docker compose` v2, in the demo's
/// directory, with the caps override when asked.
fn compose(dir: &Path, caps: bool) -> Result<Command> {
    let mut cmd = if let Some(bin) = which("docker-compose") {
        Command::new(bin)
    } else if Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        bail!(
            "neither docker-compose nor `docker compose` is installed: apt-get install docker-compose \
             (`cargo xtask setup` does)"
        );
    };
    cmd.current_dir(dir).args(["-f", "docker-compose.yml"]);
    if caps {
        cmd.args(["-f", CAPS_FILE]);
    }
    Ok(cmd)
}

/// Waits until the overwatch is ready and the client's `dns-answers` shows all three webapps; returns
/// the API's XDP state (`attached`, `unavailable`).
fn wait_ready() -> Result<String> {
    let start = Instant::now();
    let mut ready = None;
    let mut answers = String::new();
    while start.elapsed() < READY_WITHIN {
        if ready.is_none() {
            let out = output(&mut bounded(
                10,
                &[
                    "docker",
                    "exec",
                    "client",
                    "curl",
                    "-s",
                    "--max-time",
                    "2",
                    "http://10.20.0.10:8080/api/v1/ready",
                ],
            ))?;
            let body = String::from_utf8_lossy(&out.stdout);
            if body.contains("\"ready\":true") {
                let xdp = json_str(&body, "xdp").unwrap_or("unknown").to_owned();
                eprintln!(
                    "demo docker: overwatch ready after {:.1} s (XDP {xdp})",
                    start.elapsed().as_secs_f64()
                );
                ready = Some(xdp);
            }
        }
        if let Some(xdp) = &ready {
            let out = output(&mut bounded(
                20,
                &["docker", "exec", "client", "dns-answers"],
            ))?;
            let now = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if now != answers {
                eprintln!(
                    "demo docker: +{:.1} s  DNS answers: {}",
                    start.elapsed().as_secs_f64(),
                    if now.is_empty() { "(none)" } else { &now }
                );
                answers = now;
            }
            if answers == ALL_WEBAPPS {
                return Ok(xdp.clone());
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
    bail!(
        "the demo was not ready within {READY_WITHIN:?} (overwatch ready: {}, DNS answers: {answers:?}); \
         see `docker logs overwatch` and `docker logs webapp1`",
        ready.is_some()
    )
}

/// The string value of `"key":"value"` in compact JSON: enough for the one field read here, without a
/// JSON parser in xtask.
fn json_str<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let rest = &json[json.find(&format!("\"{key}\":\""))? + key.len() + 4..];
    rest.split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_str_reads_a_compact_field() {
        let body = r#"{"ready":true,"dns_ready":true,"xdp":"attached"}"#;
        assert_eq!(json_str(body, "xdp"), Some("attached"));
        assert_eq!(json_str(body, "message"), None);
    }
}
