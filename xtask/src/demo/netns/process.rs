//! The demo's processes: each started with its output appended to its own log, checked for exiting on
//! its own, and stopped in order at the end.

use std::{
    fs::{self, OpenOptions},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// A process of the demo, its output appended to its log, so a restarted one keeps its first life's.
pub struct Proc {
    /// `webapp2 agent`, …
    pub label: String,
    /// Its log on this machine.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr to `log`.
    pub fn spawn(label: String, cmd: &mut Command, log: PathBuf) -> Result<Self> {
        let mut p = Self {
            label,
            log,
            child: None,
        };
        p.respawn(cmd)?;
        Ok(p)
    }

    /// Starts it (again) with `cmd`; it must not be running.
    pub fn respawn(&mut self, cmd: &mut Command) -> Result<()> {
        assert!(self.child.is_none(), "{} runs already", self.label);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", self.label))?;
        self.child = Some(child);
        Ok(())
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it was started and has not been reaped.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Fails when it exited though nobody stopped it.
    pub fn check(&mut self) -> Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            bail!("{} exited on its own ({status})", self.label);
        }
        Ok(())
    }

    /// Sends `sig` (if it runs).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: kill on our own child, not yet reaped, so the pid is still its.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
    }

    /// Waits up to `timeout` for it to exit and reaps it; `None` if it still runs.
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let Some(child) = &mut self.child else {
            bail!("{} is not running", self.label);
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its log's last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops every process: SIGTERM (the overwatch detaches XDP and removes its pins, an agent says it
/// leaves), up to 5 s for all, then SIGKILL.
pub fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter() {
        p.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in procs.iter_mut().filter(|p| p.running()) {
        let left = deadline.saturating_duration_since(Instant::now());
        if !matches!(p.wait(left), Ok(Some(_))) {
            p.kill();
        }
    }
}
