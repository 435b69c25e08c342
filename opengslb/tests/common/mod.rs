//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod bench;
pub mod cost;
pub mod delay;
pub mod dnsq;
pub mod etcd;
pub mod frames;
pub mod http;
pub mod labs;
pub mod netns;
pub mod nginx;
pub mod rng;
pub mod soak;
pub mod xtask;

/// How long a change the design makes at once (an agent's drain or leave, reported the moment it
/// happens) may take to reach DNS: far more than 3x what it needs, since waiting longer costs time only
/// when a test fails, and a loaded machine running debug builds is slow at random.
pub const AT_ONCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether we run as root; the privileged tests say so and fail when not.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (run it through `cargo xtask test`)"
    );
}

/// Pins the calling thread to CPU 0, so per-CPU state (rotation counters) is one sequence.
pub fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity act on it and on this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// Writes a config file owner-only (0600), as a file that holds secrets (gossip keys, tokens) must be:
/// the overwatch and the agent refuse it otherwise.
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::{
        io::Write as _,
        os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    // A file that was there keeps its mode through open.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
