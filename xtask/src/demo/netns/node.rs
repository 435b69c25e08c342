//! A host of the demo and the processes it runs. A process enters the host's network namespace and a
//! mount and UTS namespace of its own, where the host's directories (under the run's temp dir) stand on
//! `/tmp`, `/run` and `/var/lib/opengslb` and the host name is the host's: as in a container, each webapp
//! has its own `/tmp/drain` and `/run/opengslb-agent/agent.sock`, so Demo 2's config files work unchanged.
//! `/sys` is a sysfs of the host's network namespace with the machine's bpffs moved onto it; everything
//! else is the machine's.

use std::{
    ffi::CString,
    fs::{self, File},
    net::Ipv4Addr,
    os::{
        fd::AsRawFd as _,
        unix::{ffi::OsStrExt as _, process::CommandExt as _},
    },
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use anyhow::{Context as _, Result, bail};

/// The host's directories, under its own one, and where its processes see them. `/var/lib/opengslb` is
/// the overwatch's `data_dir`.
const PRIVATE: [(&str, &str); 3] = [
    ("tmp", "/tmp"),
    ("run", "/run"),
    ("state", "/var/lib/opengslb"),
];

/// One host: a network namespace and a directory of its own.
pub struct Node {
    /// `overwatch`, `webapp1`, …: also its host name.
    pub name: &'static str,
    /// Its address on eth0.
    pub addr: Ipv4Addr,
    netns: File,
    /// Its directory on this machine (logs, and what its processes see as `/tmp`, `/run`, …).
    pub dir: PathBuf,
}

impl Node {
    /// The host `name` in the namespace whose file is `netns`, with its directories under `run_dir`.
    pub fn new(name: &'static str, addr: Ipv4Addr, netns: &Path, run_dir: &Path) -> Result<Self> {
        let dir = run_dir.join(name);
        for (sub, _) in PRIVATE {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let netns = File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
        Ok(Self {
            name,
            addr,
            netns,
            dir,
        })
    }

    /// Where a path its processes see (under `/tmp`, `/run` or `/var/lib/opengslb`) is on this machine.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        PRIVATE
            .iter()
            .find_map(|(sub, at)| {
                let rest = Path::new(inside).strip_prefix(at).ok()?;
                Some(self.dir.join(sub).join(rest))
            })
            .unwrap_or_else(|| panic!("{inside} is not in a private directory of the node"))
    }

    /// Writes `text` to the path its processes see as `inside`, owner-only (config files hold the
    /// gossip key and the service token).
    pub fn write(&self, inside: &str, text: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.host_path(inside);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        Ok(())
    }

    /// The namespace file, for a thread to enter.
    pub fn netns(&self) -> Result<File> {
        Ok(self.netns.try_clone()?)
    }

    /// A command that runs `program` inside the node.
    pub fn command(&self, program: &Path) -> Result<Command> {
        let cstr = |p: &[u8]| CString::new(p).context("a path with a NUL byte");
        // Bound by path, resolved in the new mount namespace (a bind from an fd opened before would be a
        // mount of another namespace, which the kernel refuses). The directory holding the run's dir (on
        // /tmp, usually) goes last: once it is covered, paths under it lead elsewhere.
        let mut binds = Vec::new();
        let mut order = PRIVATE;
        order.sort_by_key(|(_, at)| self.dir.starts_with(at));
        for (sub, at) in order {
            binds.push((
                cstr(self.dir.join(sub).as_os_str().as_bytes())?,
                cstr(at.as_bytes())?,
            ));
        }
        let host = cstr(self.name.as_bytes())?;
        let ns = self.netns.try_clone()?;
        // A program under a directory the node has its own of (a build in a clone under /tmp, say) is
        // hidden once those are mounted: it is executed through a descriptor opened here instead.
        let through_fd = if hidden_in_node(program) {
            Some(File::open(program).with_context(|| format!("opening {}", program.display()))?)
        } else {
            None
        };
        let exe = match &through_fd {
            Some(f) => PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())),
            None => program.to_path_buf(),
        };
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let mut cmd = Command::new(exe);
        // SAFETY: between fork and exec only async-signal-safe calls (setns, unshare, sethostname, mount,
        // umount2, open_tree, move_mount, close, setpgid, prctl, getppid) on values prepared before the
        // fork; nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                let ok = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                ok(libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET))?;
                ok(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
                ok(libc::sethostname(host.as_ptr(), host.as_bytes().len()))?;
                // Private, so our mounts reach no other namespace and the host's unmounts none of ours.
                ok(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                // Our copy of /run/netns would keep every namespace on the machine alive as long as
                // this process runs, other runs' and tests' included.
                libc::umount2(c"/run/netns".as_ptr(), libc::MNT_DETACH);
                // A sysfs of the node's network namespace, as `ip netns exec` and containers have: the
                // host's would show the host's interfaces (the host's eth0 instead of the node's, which
                // makes the overwatch take the veth for a device with a driver). bpffs moves over onto it.
                let bpffs = libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    c"/sys/fs/bpf".as_ptr(),
                    libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
                ) as libc::c_int;
                if bpffs < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                ok(libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH))?;
                ok(libc::mount(
                    c"sysfs".as_ptr(),
                    c"/sys".as_ptr(),
                    c"sysfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ))?;
                ok(libc::syscall(
                    libc::SYS_move_mount,
                    bpffs,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    c"/sys/fs/bpf".as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                ) as libc::c_int)?;
                libc::close(bpffs);
                for (from, at) in &binds {
                    ok(libc::mount(
                        from.as_ptr(),
                        at.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                }
                // Its own process group: Ctrl-C in the terminal reaches the demo alone, which then
                // stops everything in order.
                ok(libc::setpgid(0, 0))?;
                // Should the demo itself be killed, nothing it started lives on.
                ok(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the demo exited"));
                }
                if let Some(f) = &through_fd {
                    // Kept across exec, so that /proc/self/fd/N names the program.
                    if libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// Runs `f` on a thread inside the node's network namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let ns = self.netns()?;
        thread::scope(|s| {
            s.spawn(move || {
                enter_netns(&ns)?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("a thread in {} panicked", self.name))?
        })
    }
}

/// Moves the calling thread into the network namespace `ns`.
pub fn enter_netns(ns: &File) -> Result<()> {
    // SAFETY: setns on the calling thread with an open namespace fd.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "cannot enter a network namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Whether `path` lies under one of the directories a node's processes see privately: a program there
/// is not found by its path once the node's directories are mounted.
fn hidden_in_node(path: &Path) -> bool {
    PRIVATE.iter().any(|(_, at)| path.starts_with(at))
}
