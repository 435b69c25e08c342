//! The opengslb bench targets (`opengslb/benches/NAME.rs`, `harness = false`): whichever exist are
//! built and run with `--json-out FILE [--smoke]`, each writing one section of the report as a JSON
//! object `{section, markdown, goals, figures}`.

use std::{
    fs,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use xtask::{cargo, command_line};

/// The package whose bench targets are run.
const PACKAGE: &str = "opengslb";

/// The names of the package's bench targets, from `cargo metadata`.
pub fn names(root: &Path) -> Result<Vec<String>> {
    let out = cargo(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("cargo metadata's JSON")?;
    Ok(bench_targets(&v))
}

fn bench_targets(metadata: &Value) -> Vec<String> {
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == PACKAGE)
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// Builds the bench targets `names`: in release (`cargo bench --no-run`) for a real run; for a smoke
/// run in the test profile (`cargo test --no-run`), which reuses what `cargo test` built. Their
/// executables by name; progress on stderr.
pub fn build(root: &Path, names: &[String], smoke: bool) -> Result<Vec<(String, PathBuf)>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = cargo(root);
    cmd.arg(if smoke { "test" } else { "bench" });
    cmd.args(["-p", PACKAGE, "--no-run", "--message-format=json"]);
    for n in names {
        cmd.args(["--bench", n]);
    }
    eprintln!("$ {}", command_line(&cmd));
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    let messages = String::from_utf8_lossy(&out.stdout);
    // With --message-format=json, the compiler's warnings and errors come as JSON on stdout.
    for m in messages
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if m["reason"] == "compiler-message"
            && let Some(text) = m["message"]["rendered"].as_str()
        {
            eprint!("{text}");
        }
    }
    if !out.status.success() {
        bail!("building the bench targets failed ({})", out.status);
    }
    let built = executables(&messages);
    for n in names {
        if !built.iter().any(|(b, _)| b == n) {
            bail!("cargo built no executable for bench target {n}");
        }
    }
    Ok(built)
}

/// The bench executables in cargo's `--message-format=json` lines.
fn executables(messages: &str) -> Vec<(String, PathBuf)> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"))
        })
        .filter_map(|m| {
            Some((
                m["target"]["name"].as_str()?.to_owned(),
                PathBuf::from(m["executable"].as_str()?),
            ))
        })
        .collect()
}

/// Runs one bench executable with `args` besides its usual ones (stdout to our stderr, which keeps
/// `--json`'s stdout one object), for at most `limit`; the section it wrote, checked for its shape.
pub fn run(exe: &Path, dir: &Path, smoke: bool, args: &[String], limit: Duration) -> Result<Value> {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = dir.join(format!("section-{name}.json"));
    let mut cmd = Command::new(exe);
    cmd.arg("--json-out").arg(&out);
    if smoke {
        cmd.arg("--smoke");
    }
    cmd.args(args);
    let line = command_line(&cmd);
    eprintln!("$ {line}");
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let status = super::load::wait_bounded(&mut child, &line, limit)?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    let text =
        fs::read_to_string(&out).with_context(|| format!("`{line}` wrote no {}", out.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", out.display()))?;
    check_section(&v).with_context(|| format!("{}", out.display()))?;
    Ok(v)
}

/// A section has a title, markdown, and goals of `{name, target, value, met}`.
fn check_section(v: &Value) -> Result<()> {
    if !v["section"].is_string() || !v["markdown"].is_string() {
        bail!("a section needs `section` and `markdown` strings");
    }
    for g in v["goals"].as_array().into_iter().flatten() {
        if !(g["name"].is_string() && g["target"].is_string() && g["value"].is_string()) {
            bail!("a goal needs `name`, `target` and `value` strings: {g}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_targets_and_their_executables_are_found() {
        let meta: Value = serde_json::from_str(
            r#"{"packages":[{"name":"opengslb","targets":[
                {"name":"opengslb","kind":["lib"]},{"name":"control","kind":["bench"]}]},
               {"name":"xtask","targets":[{"name":"other","kind":["bench"]}]}]}"#,
        )
        .unwrap();
        assert_eq!(bench_targets(&meta), ["control"]);
        let msgs = r#"{"reason":"compiler-artifact","target":{"name":"opengslb","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"control","kind":["bench"]},"executable":"/t/release/deps/control-1"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executables(msgs),
            [(
                "control".to_owned(),
                PathBuf::from("/t/release/deps/control-1")
            )]
        );
    }

    #[test]
    fn a_section_is_checked_for_its_shape() {
        let ok: Value = serde_json::from_str(
            r#"{"section":"S","markdown":"m","goals":[{"name":"g","target":"t","value":"v","met":true}]}"#,
        )
        .unwrap();
        assert!(check_section(&ok).is_ok());
        let bad: Value = serde_json::from_str(r#"{"section":"S","goals":[]}"#).unwrap();
        assert!(check_section(&bad).is_err());
    }
}
