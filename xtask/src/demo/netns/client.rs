//! The client host's traffic: resolve `app.demo.local` at the overwatch, GET `/` from the address it
//! answers, record the outcome; a few hundred times a second, on a thread inside the client's namespace.
//! The records are what every figure of the demo is computed from.

use std::{
    collections::BTreeSet,
    fs::File,
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType},
};

use super::{node::enter_netns, stop};

/// Requests a second the loop aims at.
const RATE: u32 = 250;
/// Bounds of the loop, whatever happens to the rest of the demo.
const MAX_REQUESTS: usize = 250_000;
const MAX_TIME: Duration = Duration::from_secs(600);
/// For each DNS reply and each HTTP connect and read.
const TIMEOUT: Duration = Duration::from_secs(1);

/// One request: when its DNS reply came (since the run began), what it answered, and whether the GET
/// to the first answer got a 200.
pub struct Record {
    pub at: Duration,
    pub answer: Vec<Ipv4Addr>,
    pub ok: bool,
}

/// The request loop, stopped and joined on drop.
pub struct Client {
    records: Arc<Mutex<Vec<Record>>>,
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Client {
    /// Starts the loop in the namespace `netns`, asking `dns` for `name`, timing from `t0`.
    pub fn start(netns: File, t0: Instant, dns: SocketAddr, name: &'static str) -> Result<Self> {
        let records = Arc::new(Mutex::new(Vec::new()));
        let quit = Arc::new(AtomicBool::new(false));
        let (r, q) = (records.clone(), quit.clone());
        let thread = thread::Builder::new()
            .name("client".into())
            .spawn(move || -> Result<()> {
                enter_netns(&netns)?;
                let mut resolver = Resolver::new(dns, name)?;
                let period = Duration::from_secs(1) / RATE;
                let started = Instant::now();
                let mut next = started;
                for _ in 0..MAX_REQUESTS {
                    if q.load(Ordering::SeqCst) || stop::requested() || started.elapsed() > MAX_TIME
                    {
                        break;
                    }
                    let answer = resolver.resolve().unwrap_or_default();
                    let at = t0.elapsed();
                    let ok = answer.first().is_some_and(|&a| {
                        get((a, 80).into(), name, "/").is_some_and(|(status, _)| status == 200)
                    });
                    lock(&r).push(Record { at, answer, ok });
                    next += period;
                    let now = Instant::now();
                    match next.checked_duration_since(now) {
                        Some(ahead) => thread::sleep(ahead),
                        // Behind (a stall, timeouts): go on from now rather than burst to catch up.
                        None => next = now,
                    }
                }
                Ok(())
            })
            .context("starting the client thread")?;
        Ok(Self {
            records,
            quit,
            thread: Some(thread),
        })
    }

    /// The records so far, in time order.
    pub fn records(&self) -> MutexGuard<'_, Vec<Record>> {
        lock(&self.records)
    }

    /// Stops the loop and waits for it; its error, if it had one.
    pub fn stop(&mut self) -> Result<()> {
        self.quit.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the client thread panicked"),
            None => Ok(()),
        }
    }

    /// Whether the loop still runs (it ends at its bounds or on an error).
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn lock(m: &Mutex<Vec<Record>>) -> MutexGuard<'_, Vec<Record>> {
    // A poisoned lock only means a panic elsewhere; the records themselves are whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the records say, between two moments or over the whole run.
pub trait Records {
    /// The records from `from` on.
    fn since(&self, from: Duration) -> &[Record];
    /// When the last answer with `ip` came, from `from` on.
    fn last_with(&self, ip: Ipv4Addr, from: Duration) -> Option<Duration> {
        self.since(from)
            .iter()
            .rev()
            .find(|r| r.answer.contains(&ip))
            .map(|r| r.at)
    }
    /// When the first answer with `ip` came, from `from` on.
    fn first_with(&self, ip: Ipv4Addr, from: Duration) -> Option<Duration> {
        self.since(from)
            .iter()
            .find(|r| r.answer.contains(&ip))
            .map(|r| r.at)
    }
    /// Every address answered from `from` on.
    fn answered(&self, from: Duration) -> BTreeSet<Ipv4Addr> {
        self.since(from)
            .iter()
            .flat_map(|r| r.answer.iter().copied())
            .collect()
    }
    /// Failed requests from `from` until `to`.
    fn failed(&self, from: Duration, to: Duration) -> usize {
        self.since(from)
            .iter()
            .take_while(|r| r.at < to)
            .filter(|r| !r.ok)
            .count()
    }
}

impl Records for [Record] {
    fn since(&self, from: Duration) -> &[Record] {
        &self[self.partition_point(|r| r.at < from)..]
    }
}

/// A UDP socket to one DNS server, asking A for one name; create it inside the client's namespace.
pub struct Resolver {
    sock: UdpSocket,
    name: Name,
    id: u16,
}

impl Resolver {
    /// A resolver of `name` at `server`.
    pub fn new(server: SocketAddr, name: &str) -> Result<Self> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding a UDP socket")?;
        sock.connect(server)?;
        Ok(Self {
            sock,
            name: Name::from_ascii(name)?,
            id: 0,
        })
    }

    /// The A records of the answer, or `None` when no reply came within [`TIMEOUT`].
    pub fn resolve(&mut self) -> Option<Vec<Ipv4Addr>> {
        self.id = self.id.wrapping_add(1);
        let mut q = Message::query();
        q.metadata.id = self.id;
        q.add_query(Query::query(self.name.clone(), RecordType::A));
        self.sock.send(&q.to_vec().ok()?).ok()?;
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock.set_read_timeout(Some(left)).ok()?;
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            // A late reply to an earlier query that timed out is not this one's.
            let Ok(reply) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if reply.metadata.id != self.id {
                continue;
            }
            return Some(
                reply
                    .answers
                    .iter()
                    .filter_map(|rr| match &rr.data {
                        RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect(),
            );
        }
    }
}

/// `GET path` over HTTP/1.0 from `addr` with `Host: host`: the status and the body, or `None` when the
/// connection was refused or nothing answered within [`TIMEOUT`].
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    s.set_write_timeout(Some(TIMEOUT)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.take(1 << 20).read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ms: u64, last: u8, ok: bool) -> Record {
        Record {
            at: Duration::from_millis(ms),
            answer: vec![Ipv4Addr::new(10, 20, 0, last)],
            ok,
        }
    }

    #[test]
    fn records_answer_by_time() {
        let ms = Duration::from_millis;
        let two = Ipv4Addr::new(10, 20, 0, 22);
        let r = [
            rec(10, 22, true),
            rec(20, 21, false),
            rec(30, 22, false),
            rec(40, 23, true),
            rec(50, 22, true),
        ];
        assert_eq!(r.since(ms(30)).len(), 3);
        assert_eq!(r.last_with(two, ms(0)), Some(ms(50)));
        assert_eq!(r.first_with(two, ms(11)), Some(ms(30)));
        assert_eq!(r.first_with(two, ms(51)), None);
        assert_eq!(r.failed(ms(0), ms(30)), 1);
        assert_eq!(r.failed(ms(0), ms(31)), 2);
        assert_eq!(r.answered(ms(35)).len(), 2);
    }
}
