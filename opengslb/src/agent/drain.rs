//! The ways to drain an agent's backends by hand: the drain file, watched with inotify, and the control
//! socket behind `opengslb agent drain on|off`.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
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
    fn parse(line: &str) -> Option<Self> {
        match line.trim() {
            "drain on" => Some(Self::Drain),
            "drain off" => Some(Self::Undrain),
            "status" => Some(Self::Status),
            _ => None,
        }
    }

    fn line(self) -> &'static str {
        match self {
            Self::Drain => "drain on\n",
            Self::Undrain => "drain off\n",
            Self::Status => "status\n",
        }
    }
}

/// Serves the control socket: each connection sends one command line and gets one line back,
/// `ok draining=<bool>` or `error: ...`. The manual drain state is published on `drain`. The socket is
/// made owner-only (0600): draining a backend is an operator's act.
pub fn serve(
    path: &Path,
    drain: watch::Sender<bool>,
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
            spawner.spawn(async move {
                let _permit = permit;
                let exchange =
                    tokio::time::timeout(std::time::Duration::from_secs(2), handle(stream, &drain));
                if let Err(e) | Ok(Err(e)) = exchange.await.map_err(anyhow::Error::from) {
                    debug!(error = %e, "control socket exchange failed");
                }
            });
        }
        let _ = std::fs::remove_file(&owned);
    });
    Ok(())
}

async fn handle(stream: UnixStream, drain: &watch::Sender<bool>) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(256)).read_line(&mut line).await?;
    let reply = match Command::parse(&line) {
        Some(cmd) => {
            match cmd {
                Command::Drain | Command::Undrain => {
                    let on = cmd == Command::Drain;
                    if drain.send_replace(on) != on {
                        info!(draining = on, "manual drain set through the control socket");
                    }
                }
                Command::Status => {}
            }
            format!("ok draining={}\n", *drain.borrow())
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

use tokio::io::AsyncReadExt as _;

/// Sends one command to a running agent's control socket and returns its reply line.
pub async fn send(path: &Path, cmd: Command) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach the agent at {} (is it running? see agent.control_socket)",
            path.display()
        )
    })?;
    stream.write_all(cmd.line().as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    let reply = reply.trim().to_owned();
    if let Some(e) = reply.strip_prefix("error: ") {
        anyhow::bail!("the agent refused the command: {e}");
    }
    Ok(reply)
}
