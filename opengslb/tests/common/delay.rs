//! A delay line of our own, since this kernel has no `netem`: a TUN device in a router namespace. Policy
//! routing sends the packets to delay into it; a thread reads each one and writes it back into the device
//! `delay` later, where the kernel takes it as received on the device and forwards it on (a rule sends
//! what comes in on the device through the main table, so nothing loops). Stopped on drop, and after
//! `max_run` in any case.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::netns::Netns;

/// `_IOW('T', 202, int)`, which the libc crate does not carry.
const TUNSETIFF: libc::Ioctl = 0x4004_54ca;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A running delay line.
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
    /// The device's name.
    pub dev: String,
}

impl DelayLine {
    /// Creates the TUN device `dev` in `ns`, up, and starts delaying what is routed into it by `delay`.
    pub fn start(ns: &Netns, dev: &str, delay: Duration, max_run: Duration) -> Self {
        // The device belongs to the namespace of the thread that creates it; the file works from
        // anywhere after.
        let tun = ns.enter(|| open_tun(dev));
        ns.exec(&["ip", "link", "set", dev, "up"]);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || run(tun, delay, max_run, &flag));
        Self {
            stop,
            thread: Some(thread),
            dev: dev.to_owned(),
        }
    }

    /// Stops it; returns how many packets it passed.
    pub fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().unwrap_or_default())
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn open_tun(dev: &str) -> File {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("/dev/net/tun");
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    assert!(dev.len() < libc::IFNAMSIZ, "{dev}: name too long");
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    // SAFETY: TUNSETIFF reads a `struct ifreq`, which `IfReq` lays out, from a live buffer.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {dev}: {}",
        std::io::Error::last_os_error()
    );
    tun
}

/// Reads packets and writes each back `delay` after it came; returns how many went through.
fn run(mut tun: File, delay: Duration, max_run: Duration, stop: &AtomicBool) -> u64 {
    let end = Instant::now() + max_run;
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut passed = 0;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let now = Instant::now();
        while queue.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, packet)) = queue.pop_front()
                && tun.write_all(&packet).is_ok()
            {
                passed += 1;
            }
        }
        // Wake for the next packet due, a new one, or a look at `stop`: at most 20 ms.
        let wait = queue
            .front()
            .map_or(Duration::from_millis(20), |(due, _)| {
                due.saturating_duration_since(now)
            })
            .min(Duration::from_millis(20));
        let mut pfd = libc::pollfd {
            fd: tun.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(20);
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready > 0 && pfd.revents & libc::POLLIN != 0 {
            match tun.read(&mut buf) {
                Ok(n) if n > 0 => queue.push_back((Instant::now() + delay, buf[..n].to_vec())),
                _ => {}
            }
        }
    }
    passed
}
