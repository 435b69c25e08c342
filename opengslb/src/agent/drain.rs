//! The ways to drain an agent's backends by hand: the drain file, watched with inotify, and the control
//! socket behind `opengslb agent drain on|off [--wait]`. A waiting drain is answered once every
//! overwatch the agent reports to has acknowledged a report carrying it ([`Confirm`]).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher as _};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::watch,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use crate::gossip::wire::{Ack, Served};

/// The longest wait a drain command may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// How long a client may take to send its command line.
const READ_WITHIN: Duration = Duration::from_secs(2);

/// Exit status of `drain --wait` when an overwatch did not confirm in time.
pub const EXIT_TIMEOUT: u8 = 1;

/// Exit status of `drain on --wait` when an overwatch still answers with a drained backend because
/// its name's all-down policy answers with every backend.
pub const EXIT_ALL_DOWN: u8 = 2;

/// Watches the drain file: `true` while it exists. Returns the watch receiver and the watcher, which
/// must be kept alive. The file's directory is watched (the file itself may not exist yet), and every
/// event on it re-checks the file, so a rename or an editor's replace is seen as well as a create.
pub fn watch_file(path: &Path) -> anyhow::Result<(watch::Receiver<bool>, notify::INotifyWatcher)> {
    let dir = path
        .parent()
        .context("the drain file has no directory")?
        .to_path_buf();
    let (tx, rx) = watch::channel(path.exists());
    let file = path.to_path_buf();
    let name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::INotifyWatcher::new(
        move |event: notify::Result<notify::Event>| {
            let relevant = match &event {
                Ok(e) => {
                    e.need_rescan() || e.paths.iter().any(|p| p.file_name() == name.as_deref())
                }
                Err(_) => true,
            };
            if relevant {
                tx.send_if_modified(|present| {
                    let now = file.exists();
                    std::mem::replace(present, now) != now
                });
            }
        },
        notify::Config::default(),
    )
    .context("cannot start inotify")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok((rx, watcher))
}

/// A command on the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Drain every backend until `Undrain`.
    Drain,
    /// End a drain started by `Drain`.
    Undrain,
    /// Only report the state.
    Status,
}

impl Command {
    /// A command line: the command, and for a drain an optional ` wait=<ms>`.
    fn parse(line: &str) -> Option<(Self, Option<Duration>)> {
        let line = line.trim();
        let (cmd, wait) = match line.split_once(" wait=") {
            Some((cmd, ms)) => {
                let ms: u64 = ms.parse().ok()?;
                (cmd, Some(Duration::from_millis(ms).min(MAX_WAIT)))
            }
            None => (line, None),
        };
        match (cmd, wait) {
            ("drain on", _) => Some((Self::Drain, wait)),
            ("drain off", _) => Some((Self::Undrain, wait)),
            ("status", None) => Some((Self::Status, None)),
            _ => None,
        }
    }

    fn line(self, wait: Option<Duration>) -> String {
        let cmd = match self {
            Self::Drain => "drain on",
            Self::Undrain => "drain off",
            Self::Status => "status",
        };
        match wait {
            Some(w) => format!("{cmd} wait={}\n", w.as_millis()),
            None => format!("{cmd}\n"),
        }
    }
}

/// What the agent's loop knows of the overwatches' acks, for drain commands that wait.
#[derive(Clone, Debug, Default)]
pub struct Confirm {
    /// The manual drain as the loop last applied it.
    pub manual: bool,
    /// The number of the first report that carried it: an ack of that report or a later one speaks
    /// of a table that reflects it.
    pub since_seq: u64,
    /// The overwatches reports go to.
    pub overwatches: Vec<SocketAddr>,
    /// The latest ack from each overwatch, of this agent process's reports.
    pub acks: BTreeMap<SocketAddr, Ack>,
}

/// Where a waiting drain stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every overwatch confirmed; they are named.
    Confirmed(Vec<String>),
    /// Every overwatch answered, but some still serve a drained backend under an all-down policy: one
    /// message each.
    AllDown(Vec<String>),
    /// These overwatches have not confirmed yet (and these messages say which serve by all-down).
    Waiting {
        /// The overwatches yet to confirm.
        missing: Vec<String>,
        /// All-down messages so far.
        all_down: Vec<String>,
    },
}

impl Confirm {
    /// Whether every overwatch has acknowledged a report at or after [`Confirm::since_seq`] with the
    /// backends out (`on`) or served (`off`).
    pub fn verdict(&self, on: bool) -> Verdict {
        let mut confirmed = Vec::new();
        let mut missing = Vec::new();
        let mut all_down = Vec::new();
        for addr in &self.overwatches {
            let Some(ack) = self.acks.get(addr).filter(|a| a.seq >= self.since_seq) else {
                missing.push(addr.to_string());
                continue;
            };
            let name = format!("{} ({addr})", ack.node_id);
            let done = if on {
                let held: Vec<&str> = ack
                    .backends
                    .iter()
                    .filter(|b| b.served == Served::AllDown)
                    .map(|b| b.service.as_str())
                    .collect();
                for service in &held {
                    all_down.push(format!(
                        "overwatch {name} still answers {service} with this agent's backend: every \
                         backend of the name is out and its all-down policy answers with them all"
                    ));
                }
                held.is_empty() && ack.backends.iter().all(|b| b.served == Served::No)
            } else {
                !ack.backends.is_empty() && ack.backends.iter().all(|b| b.served != Served::No)
            };
            if done {
                confirmed.push(name);
            } else if !(on && ack.backends.iter().any(|b| b.served == Served::AllDown)) {
                missing.push(name);
            }
        }
        if self.overwatches.is_empty() {
            missing.push("(no overwatch address resolved)".to_owned());
        }
        if !missing.is_empty() {
            Verdict::Waiting { missing, all_down }
        } else if !all_down.is_empty() {
            Verdict::AllDown(all_down)
        } else {
            Verdict::Confirmed(confirmed)
        }
    }
}

/// A waiting drain's outcome, as the command reports it: its message and exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WaitFailure {
    /// [`EXIT_TIMEOUT`] or [`EXIT_ALL_DOWN`].
    pub code: u8,
    /// What the agent said.
    pub message: String,
}

/// Serves the control socket: each connection sends one command line and gets one line back,
/// `ok draining=<bool>` or `error: ...`; a drain with ` wait=<ms>` is answered once `confirm` says
/// every overwatch reflects it (`ok ...`), when one still serves it by all-down (`all-down ...`), or at
/// the timeout (`timeout ...`). The manual drain state is published on `drain`, at once either way. The
/// socket is made owner-only (0600): draining a backend is an operator's act.
pub fn serve(
    path: &Path,
    drain: watch::Sender<bool>,
    confirm: watch::Receiver<Confirm>,
    tracker: &TaskTracker,
    token: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt as _;
        // Only a socket is ours to replace: a mistyped path must never delete someone's file.
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket (agent.control_socket)",
                path.display()
            );
        }
        // A socket left by a crashed agent; connecting would fail, so it can go.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another agent is listening on {} (agent.control_socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Owner-only from its creation: no window in which another user could connect. The mask is the
    // process's, set back right after the bind.
    use nix::sys::stat::{Mode, umask};
    let old_mask = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old_mask);
    let listener = bound
        .with_context(|| format!("cannot listen on {} (agent.control_socket)", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let owned: PathBuf = path.to_path_buf();
    let drain = std::sync::Arc::new(drain);
    // A few exchanges at once, each cut off after 2 s: a client that never writes holds up nobody.
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let spawner = tracker.clone();
    tracker.spawn(async move {
        loop {
            let stream = tokio::select! {
                () = token.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        debug!(error = %e, "control socket accept failed");
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                debug!("control socket busy: connection closed");
                continue;
            };
            let drain = drain.clone();
            let confirm = confirm.clone();
            spawner.spawn(async move {
                let _permit = permit;
                // The read is bounded by READ_WITHIN, a wait by its own timeout (at most MAX_WAIT).
                let exchange =
                    tokio::time::timeout(READ_WITHIN + MAX_WAIT, handle(stream, &drain, confirm));
                if let Err(e) | Ok(Err(e)) = exchange.await.map_err(anyhow::Error::from) {
                    debug!(error = %e, "control socket exchange failed");
                }
            });
        }
        let _ = std::fs::remove_file(&owned);
    });
    Ok(())
}

async fn handle(
    stream: UnixStream,
    drain: &watch::Sender<bool>,
    confirm: watch::Receiver<Confirm>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::time::timeout(
        READ_WITHIN,
        BufReader::new(read.take(256)).read_line(&mut line),
    )
    .await??;
    let reply = match Command::parse(&line) {
        Some((cmd, wait)) => {
            match cmd {
                Command::Drain | Command::Undrain => {
                    let on = cmd == Command::Drain;
                    if drain.send_replace(on) != on {
                        info!(draining = on, "manual drain set through the control socket");
                    }
                }
                Command::Status => {}
            }
            match wait {
                Some(within) => wait_for(cmd == Command::Drain, within, confirm).await,
                None => format!("ok draining={}\n", *drain.borrow()),
            }
        }
        None => {
            warn!("unknown control socket command");
            "error: unknown command (expected \"drain on\", \"drain off\" or \"status\")\n"
                .to_owned()
        }
    };
    write.write_all(reply.as_bytes()).await?;
    Ok(())
}

/// Waits until `confirm` says every overwatch reflects the manual drain `on`, or `within` passes;
/// returns the reply line.
async fn wait_for(on: bool, within: Duration, mut confirm: watch::Receiver<Confirm>) -> String {
    let started = tokio::time::Instant::now();
    let deadline = started + within;
    loop {
        let verdict = {
            let c = confirm.borrow_and_update();
            // Until the loop has applied this drain, its view speaks of the previous state.
            (c.manual == on).then(|| c.verdict(on))
        };
        match verdict {
            Some(Verdict::Confirmed(names)) => {
                let ms = started.elapsed().as_millis();
                info!(draining = on, ms, "every overwatch confirmed the drain");
                return format!(
                    "ok draining={on} confirmed by {} in {ms} ms\n",
                    names.join(", ")
                );
            }
            Some(Verdict::AllDown(messages)) => {
                return format!("all-down draining={on}: {}\n", messages.join("; "));
            }
            _ => {}
        }
        if tokio::time::timeout_at(deadline, confirm.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    let (missing, all_down) = match confirm.borrow().verdict(on) {
        Verdict::Waiting { missing, all_down } => (missing, all_down),
        // Confirmed at the last moment, or the loop never applied it: judged once more below.
        Verdict::Confirmed(_) | Verdict::AllDown(_) => (Vec::new(), Vec::new()),
    };
    let missing = if missing.is_empty() {
        "the agent's loop did not apply the drain".to_owned()
    } else {
        missing.join(", ")
    };
    let mut reply = format!(
        "timeout draining={on}: not confirmed within {} ms by {missing}",
        within.as_millis()
    );
    for m in all_down {
        reply.push_str("; ");
        reply.push_str(&m);
    }
    reply.push('\n');
    reply
}

use tokio::io::AsyncReadExt as _;

/// Sends one command to a running agent's control socket and returns its reply line. A drain with
/// `wait` returns once the agent answers: an all-down or timeout answer is a [`WaitFailure`].
pub async fn send(path: &Path, cmd: Command, wait: Option<Duration>) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach the agent at {} (is it running? see agent.control_socket)",
            path.display()
        )
    })?;
    stream.write_all(cmd.line(wait).as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    let reply = reply.trim().to_owned();
    if let Some(e) = reply.strip_prefix("error: ") {
        if wait.is_some() {
            anyhow::bail!(
                "the agent refused the command: {e} (an agent of an earlier version cannot wait; drop --wait)"
            );
        }
        anyhow::bail!("the agent refused the command: {e}");
    }
    if reply.is_empty() {
        anyhow::bail!("the agent closed the control socket without an answer");
    }
    let code = if reply.starts_with("timeout ") {
        EXIT_TIMEOUT
    } else if reply.starts_with("all-down ") {
        EXIT_ALL_DOWN
    } else {
        return Ok(reply);
    };
    Err(WaitFailure {
        code,
        message: reply,
    }
    .into())
}
