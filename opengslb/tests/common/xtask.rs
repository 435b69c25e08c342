//! Running `cargo xtask …` from a test, with the opengslb the test was built with, bounded in time.

use std::{
    ffi::OsStr,
    io::Read as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// Runs `cargo xtask <args> --opengslb <ours>` for at most `bound`; the JSON object it printed last on
/// stdout, and its stderr. Panics (with its stderr) if it fails or runs past `bound`, after SIGTERM
/// let it remove what it made.
pub fn run_json(args: &[&str], bound: Duration) -> (serde_json::Value, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    // A nested cargo does not wait on this test's build: `cargo test` holds the build directory's lock
    // only while it compiles, not while the tests run. Going through `cargo xtask` (rather than a path
    // into the target dir) runs the xtask of this checkout, rebuilt if its sources changed.
    let mut child = Command::new(env!("CARGO"))
        .current_dir(root)
        .arg("xtask")
        .args(args)
        .arg("--opengslb")
        .arg(OsStr::new(env!("CARGO_BIN_EXE_opengslb")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo xtask starts");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped")));
    let stderr = read(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for cargo xtask") {
            break status;
        }
        if Instant::now() >= deadline {
            // SIGTERM first: xtask then removes its namespaces and pins before it exits.
            // SAFETY: kill on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            thread::sleep(Duration::from_secs(20));
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cargo xtask {args:?} ran past {bound:?}\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(200));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success(),
        "cargo xtask {args:?} failed ({status}):\n{stderr}"
    );
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line on stdout: {stdout:?}\n{stderr}"));
    let json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    (json, stderr)
}
