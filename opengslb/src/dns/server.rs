//! The UDP and TCP listeners. UDP uses one SO_REUSEPORT socket per core, so the kernel spreads queries
//! over them; TCP has a connection cap and idle timeouts, so slow or idle clients cannot hold the server.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opengslb_common::ratelimit::{RateLimit, Verdict};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{Semaphore, watch},
    time::timeout,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use super::{
    per_client::PerClient,
    queries::QueryCounts,
    rate_limit::RateLimiter,
    respond::{DropReason, Outcome, QueryContext, ReplyKind, respond, truncated},
    udp::{self, Datagrams},
    zone::Snapshot,
};

/// Listener settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen (UDP and TCP).
    pub listen: SocketAddr,
    /// UDP sockets (one per core by default).
    pub udp_sockets: usize,
    /// Most TCP connections open at once; more are closed on accept.
    pub tcp_max_connections: usize,
    /// Most TCP connections one client (an IPv4 address, an IPv6 /64) has open at once; more are closed
    /// on accept, so that one client cannot take every connection.
    pub tcp_max_per_client: usize,
    /// A TCP connection idle this long (or this slow to send a message) is closed.
    pub tcp_idle_timeout: Duration,
    /// Responses a second per UDP client prefix (TCP is not limited: its source cannot be spoofed).
    pub rate_limit: RateLimit,
}

impl ServerConfig {
    /// Defaults for `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            udp_sockets: std::thread::available_parallelism().map_or(1, |n| n.get()),
            tcp_max_connections: 1024,
            tcp_max_per_client: 16,
            tcp_idle_timeout: Duration::from_secs(10),
            rate_limit: RateLimit::default(),
        }
    }
}

/// Counters of what the server did.
#[derive(Debug, Default)]
pub struct Stats {
    replies: [AtomicU64; 10],
    drops: [AtomicU64; 2],
    /// TCP connections refused at the cap, overall or the client's.
    pub tcp_refused: AtomicU64,
    /// TCP connections closed for idling or slowness (reading a message or writing a reply).
    pub tcp_timeouts: AtomicU64,
    /// UDP responses not sent: over their client prefix's rate.
    pub rate_limited: AtomicU64,
    /// UDP responses sent truncated instead: over their client prefix's rate, and slipped.
    pub rate_slipped: AtomicU64,
    /// Replies by domain, type and status (shared with the XDP program's counts, which the overwatch
    /// adds; shown by its own collector).
    pub queries: Arc<QueryCounts>,
}

const KINDS: [ReplyKind; 9] = [
    ReplyKind::Fast,
    ReplyKind::Answer,
    ReplyKind::NoData,
    ReplyKind::NxDomain,
    ReplyKind::Refused,
    ReplyKind::FormErr,
    ReplyKind::NotImp,
    ReplyKind::BadVers,
    ReplyKind::Truncated,
];

impl Stats {
    fn count(&self, snap: &Snapshot, o: &Outcome) {
        match o {
            Outcome::Reply(bytes, k) => {
                self.queries.count(snap, bytes, *k);
                let i = KINDS.iter().position(|x| x == k).unwrap_or(0);
                if let Some(c) = self.replies.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outcome::Drop(r) => {
                let i = usize::from(*r == DropReason::Response);
                if let Some(c) = self.drops.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Replies of one kind so far.
    pub fn replies(&self, kind: ReplyKind) -> u64 {
        let i = KINDS.iter().position(|x| *x == kind).unwrap_or(0);
        self.replies.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Messages dropped for a reason so far.
    pub fn drops(&self, reason: DropReason) -> u64 {
        let i = usize::from(reason == DropReason::Response);
        self.drops.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// `(kind, count)` for every reply kind, for logs.
    pub fn summary(&self) -> Vec<(ReplyKind, u64)> {
        KINDS.iter().map(|k| (*k, self.replies(*k))).collect()
    }
}

/// The running server.
pub struct DnsServer {
    /// Its counters.
    pub stats: Arc<Stats>,
    /// The UDP address it is bound to.
    pub local_addr: SocketAddr,
}

/// Binds the sockets (so bind errors surface before anything runs) and spawns the tasks on `tracker`.
pub async fn start(
    cfg: ServerConfig,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    tracker: &TaskTracker,
    token: CancellationToken,
) -> io::Result<DnsServer> {
    let stats = Arc::new(Stats::default());
    let (sockets, tcp, local_addr) = bind(&cfg)?;
    // One limiter for every socket: the kernel spreads one client's queries over them.
    let limiter = RateLimiter::new(cfg.rate_limit).map(Arc::new);
    for sock in sockets {
        let sock = Datagrams::new(UdpSocket::from_std(sock)?)?;
        tracker.spawn(udp_loop(
            sock,
            snapshots.clone(),
            stats.clone(),
            limiter.clone(),
            token.clone(),
        ));
    }
    tracker.spawn(tcp_loop(
        tcp,
        cfg.clone(),
        snapshots,
        stats.clone(),
        tracker.clone(),
        token,
    ));
    info!(listen = %local_addr, udp_sockets = cfg.udp_sockets, "userspace DNS server listening (UDP and TCP)");
    Ok(DnsServer { stats, local_addr })
}

/// Binds the UDP sockets and the TCP listener on one port. With port 0 the kernel picks the UDP port,
/// which may be taken for TCP: then the whole set is bound again on another port, a few times.
fn bind(cfg: &ServerConfig) -> io::Result<(Vec<std::net::UdpSocket>, TcpListener, SocketAddr)> {
    let attempts = if cfg.listen.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let first = reuseport_udp(cfg.listen)?;
        let local_addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..cfg.udp_sockets.max(1) {
            sockets.push(reuseport_udp(local_addr)?);
        }
        match tcp_listener(local_addr) {
            Ok(tcp) => return Ok((sockets, tcp, local_addr)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Each UDP socket's receive buffer. The kernel's default (`net.core.rmem_default`, 208 KiB) holds only
/// about 280 queries (each costs its buffer ~770 bytes), so any pause of a few ms at tens of thousands of
/// queries a second drops queries; 4 MiB rides out ~70 ms at 80 k qps.
pub const UDP_RECV_BUFFER: usize = 4 << 20;

fn reuseport_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    set_recv_buffer(&s, UDP_RECV_BUFFER);
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `[::]` serves IPv4 too.
        s.set_only_v6(false)?;
    }
    s.set_nonblocking(true)?;
    udp::want_destinations(&s, addr)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Sets the receive buffer to `bytes`: past `net.core.rmem_max` where allowed (`SO_RCVBUFFORCE` needs
/// `CAP_NET_ADMIN`, which the XDP path needs anyway), else as far as that limit lets (`SO_RCVBUF`).
fn set_recv_buffer(s: &Socket, bytes: usize) {
    use std::os::fd::AsRawFd as _;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket fd and a pointer to a c_int of the size given.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const v).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced && let Err(e) = s.set_recv_buffer_size(bytes) {
        debug!(error = %e, "udp receive buffer");
    }
    if let Ok(got) = s.recv_buffer_size()
        && got < bytes
    {
        debug!(
            wanted = bytes,
            got, "udp receive buffer capped by net.core.rmem_max (no CAP_NET_ADMIN)"
        );
    }
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

async fn udp_loop(
    mut sock: Datagrams,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stats: Arc<Stats>,
    limiter: Option<Arc<RateLimiter>>,
    token: CancellationToken,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, peer, dest) = tokio::select! {
            () = token.cancelled() => return,
            r = sock.recv(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "udp receive");
                    continue;
                }
            },
        };
        // Limited before anything is answered: a flood costs a lookup per query, not a reply.
        let verdict = limiter
            .as_ref()
            .map_or(Verdict::Answer, |l| l.check(peer.ip()));
        if verdict == Verdict::Drop {
            stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let snap = snapshots.borrow().clone();
        let ctx = QueryContext::udp().from_client(peer.ip());
        let outcome = respond(&snap, buf.get(..len).unwrap_or(&[]), &ctx);
        let reply = match outcome {
            Outcome::Reply(bytes, _) if verdict == Verdict::Slip => {
                stats.rate_slipped.fetch_add(1, Ordering::Relaxed);
                truncated(&bytes)
            }
            outcome => {
                stats.count(&snap, &outcome);
                match outcome {
                    Outcome::Reply(bytes, _) => Some(bytes),
                    Outcome::Drop(_) => None,
                }
            }
        };
        if let Some(bytes) = reply
            && let Err(e) = sock.send(&bytes, peer, dest).await
        {
            debug!(error = %e, %peer, "udp send");
        }
    }
}

async fn tcp_loop(
    listener: TcpListener,
    cfg: ServerConfig,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stats: Arc<Stats>,
    tracker: TaskTracker,
    token: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(cfg.tcp_max_connections));
    let per_client = Arc::new(PerClient::default());
    loop {
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(client) = per_client.take(peer.ip(), cfg.tcp_max_per_client) else {
            stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let (snapshots, stats, token, idle) = (
            snapshots.clone(),
            stats.clone(),
            token.clone(),
            cfg.tcp_idle_timeout,
        );
        tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                r = tcp_conn(stream, peer, snapshots, &stats, idle) => {
                    if let Err(e) = r {
                        debug!(error = %e, %peer, "tcp connection closed");
                    }
                }
            }
            drop(permit);
            drop(client);
        });
    }
}

/// Serves one connection: length-prefixed messages (RFC 1035 §4.2.2, RFC 7766), until the client closes,
/// idles past `idle`, or sends something that gets no reply.
async fn tcp_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stats: &Stats,
    idle: Duration,
) -> io::Result<()> {
    let ctx = QueryContext::tcp().from_client(peer.ip());
    let mut buf = vec![0u8; 65_535];
    loop {
        let mut len = [0u8; 2];
        match timeout(idle, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                stats.tcp_timeouts.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        let len = usize::from(u16::from_be_bytes(len));
        let Some(msg) = buf.get_mut(..len) else {
            return Ok(());
        };
        // A client announcing a long message and sending it slowly is held to the same limit.
        match timeout(idle, stream.read_exact(msg)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                stats.tcp_timeouts.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        let snap = snapshots.borrow().clone();
        let outcome = respond(&snap, msg, &ctx);
        stats.count(&snap, &outcome);
        let Outcome::Reply(bytes, _) = outcome else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(bytes.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&bytes);
        // A client that does not read its replies is as slow as one that does not send.
        match timeout(idle, stream.write_all(&framed)).await {
            Ok(r) => r?,
            Err(_) => {
                stats.tcp_timeouts.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_sockets_get_a_large_receive_buffer() {
        let sock = Socket::from(reuseport_udp("127.0.0.1:0".parse().unwrap()).unwrap());
        let got = sock.recv_buffer_size().unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // The kernel reports twice what was set (its bookkeeping overhead).
            assert!(got >= UDP_RECV_BUFFER, "receive buffer {got} bytes as root");
        } else {
            println!("not root: the receive buffer ({got} bytes) is capped by net.core.rmem_max");
        }
    }
}
