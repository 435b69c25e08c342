//! The userspace DNS server under bad input, in-process on 127.0.0.1 (no privileges): garbage, truncated
//! and malformed messages, compression loops, over-long labels and names, responses, huge and slow TCP
//! messages, idle clients and too many connections. Each gets the right RCODE or is dropped, is counted,
//! and the server keeps answering. Every wait is bounded.

mod common;

use std::{
    net::{Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use common::rng::Rng;
use hickory_proto::{
    op::Message,
    rr::{RData, RecordType},
};
use opengslb::{
    config::Config,
    dns::{
        DropReason, ReplyKind, Snapshot, Zone,
        server::{self, ServerConfig, Stats},
    },
    overwatch::table_from_config,
};
use opengslb_common::ratelimit::RateLimit;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream, UdpSocket},
    sync::watch,
    time::{sleep, timeout},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The bound on every wait for something that should happen; generous: waiting costs time only on failure.
const WAIT: Duration = Duration::from_secs(10);
/// The idle timeout of the servers under test.
const IDLE: Duration = Duration::from_millis(300);
/// The per-client TCP cap of the test servers: above the overall caps most tests use, below the one
/// the per-client test uses.
const PER_CLIENT: usize = 8;

/// A 63-byte label: sixteen AAAA records under it do not fit in 512 bytes.
const LONG: &str = "big-answer-0123456789-0123456789-0123456789-0123456789-01234567";

fn config_yaml() -> String {
    let mut servers = String::new();
    for a in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"] {
        servers.push_str(&format!(
            "      - {{ address: \"{a}\", service: app.demo.local }}\n"
        ));
    }
    for i in 1..=16 {
        servers.push_str(&format!(
            "      - {{ address: \"2001:db8:1::{i:x}\", service: {LONG}.demo.local }}\n"
        ));
    }
    format!(
        "\
dns:
  listen_address: \"127.0.0.1:5353\"
  zones: [demo.local]
regions:
  - name: r
    servers:
{servers}domains:
  - {{ name: app.demo.local, regions: [r], ttl: 5 }}
  - {{ name: {LONG}.demo.local, regions: [r], max_answers: 16 }}
"
    )
}

/// A server running in this process.
struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    token: CancellationToken,
    tracker: TaskTracker,
    _snapshots: watch::Sender<Arc<Snapshot>>,
}

impl Server {
    async fn start(idle: Duration, max_connections: usize) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), idle, max_connections).await
    }

    async fn start_on(listen: SocketAddr, idle: Duration, max_connections: usize) -> Self {
        let cfg = Config::from_yaml_str(&config_yaml()).expect("test config is valid");
        let zones = Zone::from_config(&cfg).expect("zones");
        let table = table_from_config(&cfg);
        let rendered = table.render();
        let snap = Arc::new(Snapshot::new(table, &rendered, zones, 1, 1232));
        let (tx, rx) = watch::channel(snap);
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let sc = ServerConfig {
            listen,
            udp_sockets: 2,
            tcp_max_connections: max_connections,
            tcp_max_per_client: PER_CLIENT,
            tcp_idle_timeout: idle,
            rate_limit: RateLimit::default(),
        };
        let server = server::start(sc, rx, &tracker, token.clone())
            .await
            .unwrap_or_else(|e| panic!("the server binds {listen}: {e}"));
        Self {
            addr: server.local_addr,
            stats: server.stats,
            token,
            tracker,
            _snapshots: tx,
        }
    }

    /// Stops the server; every task must end promptly (nothing stalls it).
    async fn stop(self) {
        self.token.cancel();
        self.tracker.close();
        timeout(WAIT, self.tracker.wait())
            .await
            .expect("the server's tasks end after cancellation");
    }

    /// Every message the server has given a verdict on.
    fn seen(&self) -> u64 {
        self.replies() + self.drops()
    }

    fn replies(&self) -> u64 {
        self.stats.summary().iter().map(|(_, n)| n).sum()
    }

    fn drops(&self) -> u64 {
        self.stats.drops(DropReason::TooShort) + self.stats.drops(DropReason::Response)
    }

    /// A normal query still gets the right answer over UDP and TCP: the server is alive.
    async fn check_alive(&self) {
        let q = query(0x5a5a, "app.demo.local", A);
        let sock = udp_client(self.addr).await;
        let r = udp_ask(&sock, &q).await;
        check_app_answer(&r, &q);
        let mut tcp = tcp_connect(self.addr).await;
        let r = tcp_ask(&mut tcp, &q).await;
        check_app_answer(&r, &q);
    }
}

/// Polls `cond` until it holds; fails after [`WAIT`].
async fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_within(WAIT, what, cond).await;
}

/// Polls `cond` until it holds; fails after `bound`.
async fn wait_within(bound: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < bound, "timed out waiting for {what}");
        sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Messages.

const A: u16 = 1;
const AAAA: u16 = 28;
const QR: u16 = 0x8000;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;

fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).expect("label length fits a byte"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn header(id: u16, flags: u16, qd: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, 0, 0, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// An OPT record: UDP size, version, no flags, no options.
fn opt(udp: u16, version: u8) -> Vec<u8> {
    let [u0, u1] = udp.to_be_bytes();
    vec![0, 0, 41, u0, u1, 0, version, 0, 0, 0, 0]
}

fn query_with(id: u16, flags: u16, name: &str, qtype: u16, opts: &[Vec<u8>]) -> Vec<u8> {
    let mut m = header(id, flags, 1, opts.len() as u16);
    m.extend(wire(name));
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    for o in opts {
        m.extend_from_slice(o);
    }
    m
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    query_with(id, RD, name, qtype, &[])
}

/// A query whose question name is these raw bytes.
fn query_raw_name(id: u16, name: &[u8]) -> Vec<u8> {
    let mut m = header(id, RD, 1, 0);
    m.extend_from_slice(name);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[track_caller]
fn parse(b: &[u8]) -> Message {
    Message::from_vec(b).unwrap_or_else(|e| panic!("reply does not parse ({e}): {b:02x?}"))
}

/// The full RCODE (the OPT's extended bits included).
fn rcode(r: &[u8]) -> u16 {
    u16::from(parse(r).metadata.response_code)
}

/// A reply to `q`: its ID, QR=1.
#[track_caller]
fn check_reply_to(r: &[u8], q: &[u8]) {
    assert!(r.len() >= 12, "reply shorter than a header: {r:02x?}");
    assert_eq!(r[..2], q[..2], "the reply carries the query's ID");
    assert_ne!(be16(r, 2) & QR, 0, "QR=1");
}

/// The answer to `app.demo.local A`.
#[track_caller]
fn check_app_answer(r: &[u8], q: &[u8]) {
    check_reply_to(r, q);
    let m = parse(r);
    assert_eq!(rcode(r), 0, "NOERROR: {m}");
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 1, "{m}");
    let RData::A(a) = &m.answers[0].data else {
        panic!("not an A record: {m}");
    };
    assert_eq!(a.0.octets()[..3], [192, 0, 2]);
}

/// The malformed queries and what each must get: (what, message, RCODE, kind).
fn malformed() -> Vec<(String, Vec<u8>, u16, ReplyKind)> {
    let mut out = Vec::new();
    let good = query(0x0101, "app.demo.local", A);
    for len in [12, 13, 16, 20, good.len() - 3, good.len() - 1] {
        out.push((
            format!("question cut at {len} bytes"),
            good[..len].to_vec(),
            1,
            ReplyKind::FormErr,
        ));
    }
    let loops: [&[u8]; 3] = [
        &[0xc0, 12],
        &[0xc0, 14, 0xc0, 12],
        &[3, b'a', b'p', b'p', 0xc0, 12],
    ];
    for (i, name) in loops.into_iter().enumerate() {
        out.push((
            format!("compression loop {name:02x?}"),
            query_raw_name(0x0200 + i as u16, name),
            1,
            ReplyKind::FormErr,
        ));
    }
    let mut long_label = vec![64];
    long_label.extend([b'a'; 64]);
    long_label.extend(wire("demo.local"));
    out.push((
        "a 64-byte label".into(),
        query_raw_name(0x0300, &long_label),
        1,
        ReplyKind::FormErr,
    ));
    // Four 63-byte labels and demo.local: 4 * 64 + 12 = 268 bytes on the wire.
    let long_name = format!("{l}.{l}.{l}.{l}.demo.local", l = "x".repeat(63));
    out.push((
        "a 268-byte name".into(),
        query(0x0400, &long_name, A),
        1,
        ReplyKind::FormErr,
    ));
    out.push((
        "two OPT records".into(),
        query_with(
            0x0500,
            RD,
            "app.demo.local",
            A,
            &[opt(1232, 0), opt(1232, 0)],
        ),
        1,
        ReplyKind::FormErr,
    ));
    out.push((
        "EDNS version 1".into(),
        query_with(0x0600, RD, "app.demo.local", A, &[opt(1232, 1)]),
        16,
        ReplyKind::BadVers,
    ));
    out.push((
        "opcode 2".into(),
        query_with(0x0700, RD | (2 << 11), "app.demo.local", A, &[]),
        4,
        ReplyKind::NotImp,
    ));
    out
}

/// How many of each kind `malformed()` holds.
fn malformed_kinds(kind: ReplyKind) -> u64 {
    malformed().iter().filter(|(_, _, _, k)| *k == kind).count() as u64
}

/// After the whole `malformed()` table: every FORMERR counted, and the one BADVERS and one NOTIMP.
fn assert_malformed_counted(srv: &Server) {
    assert_eq!(
        srv.stats.replies(ReplyKind::FormErr),
        malformed_kinds(ReplyKind::FormErr)
    );
    assert_eq!(srv.stats.replies(ReplyKind::BadVers), 1);
    assert_eq!(srv.stats.replies(ReplyKind::NotImp), 1);
}

// ---------------------------------------------------------------------------------------------------
// Transport helpers.

async fn udp_client(server: SocketAddr) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.connect(server).await.expect("connect");
    sock
}

async fn udp_recv(sock: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 65_535];
    let n = timeout(WAIT, sock.recv(&mut buf))
        .await
        .expect("a UDP reply within the wait")
        .expect("recv");
    buf.truncate(n);
    buf
}

async fn udp_ask(sock: &UdpSocket, q: &[u8]) -> Vec<u8> {
    sock.send(q).await.expect("send");
    udp_recv(sock).await
}

/// Sends `q` and returns every datagram received before its reply, which must come next-in-order;
/// the server handles one client's datagrams in order, so this proves what earlier messages got.
async fn udp_until_reply(sock: &UdpSocket, q: &[u8]) -> Vec<Vec<u8>> {
    sock.send(q).await.expect("send");
    let mut before = Vec::new();
    loop {
        let r = udp_recv(sock).await;
        if r.len() >= 12 && r[..2] == q[..2] && r.get(12..q.len()) == q.get(12..) {
            return before;
        }
        before.push(r);
    }
}

async fn tcp_connect(server: SocketAddr) -> TcpStream {
    timeout(WAIT, TcpStream::connect(server))
        .await
        .expect("connect within the wait")
        .expect("connect")
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = u16::try_from(msg.len())
        .expect("fits a TCP frame")
        .to_be_bytes()
        .to_vec();
    f.extend_from_slice(msg);
    f
}

async fn tcp_read_reply(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    timeout(WAIT, s.read_exact(&mut len))
        .await
        .expect("a TCP reply within the wait")
        .expect("read the length");
    let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
    timeout(WAIT, s.read_exact(&mut r))
        .await
        .expect("the whole reply within the wait")
        .expect("read the reply");
    r
}

async fn tcp_ask(s: &mut TcpStream, q: &[u8]) -> Vec<u8> {
    s.write_all(&frame(q)).await.expect("write");
    tcp_read_reply(s).await
}

/// Waits for the server to close the connection (EOF, or a reset if data was left unread).
async fn tcp_wait_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 512];
    match timeout(WAIT, s.read(&mut buf)).await {
        Err(_) => panic!("the server did not close the connection within {WAIT:?}"),
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!("unexpected {n} bytes from the server: {:02x?}", &buf[..n]),
    }
}

// ---------------------------------------------------------------------------------------------------
// UDP.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_garbage_is_answered_or_dropped_and_counted() {
    let srv = Server::start(IDLE, 4).await;
    let sock = udp_client(srv.addr).await;
    let mut rng = Rng::new(0x0123_4567_89ab_cdef);
    let (mut short, mut responses, mut replied, mut sent) = (0u64, 0u64, 0u64, 0u64);
    const BATCHES: u16 = 40;
    for batch in 0..BATCHES {
        let mut batch_replied = 0;
        for i in 0..25 {
            let len = rng.below_usize(600);
            let mut msg = rng.bytes(len);
            if i % 2 == 1 && msg.len() >= 12 {
                // A plausible header (QR=0, opcode QUERY, QDCOUNT 1) over noise: FORMERR territory.
                msg[2] &= 0x01;
                msg[3] &= 0x10;
                msg[4..6].copy_from_slice(&[0, 1]);
            }
            if msg.len() < 12 {
                short += 1;
            } else if msg[2] & 0x80 != 0 {
                responses += 1;
            } else {
                batch_replied += 1;
            }
            sock.send(&msg).await.expect("send");
            sent += 1;
        }
        // The sentinel's reply comes after the batch's: exactly one reply per message that is not
        // dropped, each a response that parses.
        let sentinel = query(0xf000 | batch, "app.demo.local", A);
        let before = udp_until_reply(&sock, &sentinel).await;
        sent += 1;
        for r in &before {
            assert!(r.len() >= 12, "a reply shorter than a header: {r:02x?}");
            assert_ne!(r[2] & 0x80, 0, "QR=1 in {r:02x?}");
            parse(r);
        }
        assert_eq!(
            before.len(),
            batch_replied,
            "batch {batch}: replies received"
        );
        replied += batch_replied as u64;
    }
    wait_for("every datagram counted", || srv.seen() == sent).await;
    assert_eq!(srv.stats.drops(DropReason::TooShort), short);
    assert_eq!(srv.stats.drops(DropReason::Response), responses);
    assert!(short > 0 && responses > 0 && replied > 0);
    // Every other message got a reply, plus one answer per sentinel.
    assert_eq!(srv.replies(), replied + u64::from(BATCHES));
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_short_messages_and_responses_are_dropped_and_counted() {
    let srv = Server::start(IDLE, 4).await;
    let sock = udp_client(srv.addr).await;
    let good = query(0x1111, "app.demo.local", A);
    for len in 0..12 {
        sock.send(&good[..len]).await.expect("send");
    }
    // A well-formed response, and a response that is otherwise garbage.
    let mut response = good.clone();
    response[2] |= 0x80;
    sock.send(&response).await.expect("send");
    let mut junk = vec![0xff; 100];
    junk[2] = 0x80;
    sock.send(&junk).await.expect("send");
    // Nothing comes back before the reply to the next query.
    let before = udp_until_reply(&sock, &query(0x2222, "app.demo.local", A)).await;
    assert!(
        before.is_empty(),
        "replies to dropped messages: {before:02x?}"
    );
    wait_for("the drops counted", || srv.drops() == 14).await;
    assert_eq!(srv.stats.drops(DropReason::TooShort), 12);
    assert_eq!(srv.stats.drops(DropReason::Response), 2);
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_malformed_queries_get_their_rcodes() {
    let srv = Server::start(IDLE, 4).await;
    let sock = udp_client(srv.addr).await;
    for (what, q, want, _) in malformed() {
        let r = udp_ask(&sock, &q).await;
        check_reply_to(&r, &q);
        assert_eq!(rcode(&r), want, "{what}");
    }
    assert_malformed_counted(&srv);
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_large_answer_is_truncated_without_edns() {
    let srv = Server::start(IDLE, 4).await;
    let sock = udp_client(srv.addr).await;
    let name = format!("{LONG}.demo.local");

    let q = query(0x3333, &name, AAAA);
    let r = udp_ask(&sock, &q).await;
    check_reply_to(&r, &q);
    assert_ne!(be16(&r, 2) & TC, 0, "TC=1");
    assert!(r.len() <= 512, "{} bytes over UDP without EDNS", r.len());
    assert_eq!(parse(&r).answers.len(), 0);
    assert_eq!(srv.stats.replies(ReplyKind::Truncated), 1);

    // With EDNS and room for it: whole.
    let q = query_with(0x3334, RD, &name, AAAA, &[opt(4096, 0)]);
    let r = udp_ask(&sock, &q).await;
    assert_eq!(be16(&r, 2) & TC, 0);
    assert_eq!(parse(&r).answers.len(), 16);

    // Over TCP, without EDNS: whole, TC=0.
    let q = query(0x3335, &name, AAAA);
    let mut tcp = tcp_connect(srv.addr).await;
    let r = tcp_ask(&mut tcp, &q).await;
    check_reply_to(&r, &q);
    assert_eq!(be16(&r, 2) & TC, 0, "TC=0 over TCP");
    assert!(r.len() > 512, "{} bytes", r.len());
    let m = parse(&r);
    assert_eq!(m.answers.len(), 16);
    let want: Vec<Ipv6Addr> = (1..=16)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i))
        .collect();
    // All sixteen, in rotated order (the UDP queries above moved the rotation on).
    let mut got: Vec<Ipv6Addr> = m
        .answers
        .iter()
        .map(|a| match &a.data {
            RData::AAAA(x) => x.0,
            _ => panic!("not AAAA: {a}"),
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert!(
        m.answers
            .iter()
            .all(|a| a.record_type() == RecordType::AAAA)
    );
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// TCP.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_malformed_queries_pipelined_get_their_rcodes() {
    let srv = Server::start(IDLE, 4).await;
    let mut tcp = tcp_connect(srv.addr).await;
    let cases = malformed();
    let all: Vec<u8> = cases.iter().flat_map(|(_, q, _, _)| frame(q)).collect();
    tcp.write_all(&all).await.expect("write");
    for (what, q, want, _) in &cases {
        let r = tcp_read_reply(&mut tcp).await;
        check_reply_to(&r, q);
        assert_eq!(rcode(&r), *want, "{what}");
    }
    // The same connection still answers.
    let q = query(0x4444, "app.demo.local", A);
    check_app_answer(&tcp_ask(&mut tcp, &q).await, &q);
    assert_malformed_counted(&srv);
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelined_queries_are_answered_in_order() {
    let srv = Server::start(IDLE, 4).await;
    let mut tcp = tcp_connect(srv.addr).await;
    let q1 = query(0x0001, "app.demo.local", A);
    let q2 = query(0x0002, "nope.demo.local", A);
    let mut both = frame(&q1);
    both.extend(frame(&q2));
    tcp.write_all(&both).await.expect("write");
    let r1 = tcp_read_reply(&mut tcp).await;
    let r2 = tcp_read_reply(&mut tcp).await;
    check_app_answer(&r1, &q1);
    check_reply_to(&r2, &q2);
    assert_eq!(rcode(&r2), 3, "NXDOMAIN");

    // A message split across writes, down to single bytes, is put back together.
    let q3 = query(0x0003, "app.demo.local", A);
    for b in frame(&q3) {
        tcp.write_all(&[b]).await.expect("write");
        tcp.flush().await.expect("flush");
        sleep(Duration::from_millis(1)).await;
    }
    check_app_answer(&tcp_read_reply(&mut tcp).await, &q3);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_huge_length_prefix_then_silence_times_out() {
    let srv = Server::start(IDLE, 4).await;
    // Timed from before the connect: the server's idle timer cannot have started earlier, so the close
    // comes at least IDLE later.
    let start = Instant::now();
    let mut tcp = tcp_connect(srv.addr).await;
    tcp.write_all(&[0xff, 0xff, 1, 2, 3]).await.expect("write");
    tcp_wait_closed(&mut tcp).await;
    let took = start.elapsed();
    assert!(
        took >= IDLE,
        "closed after {took:?}, before the idle timeout"
    );
    wait_for("the timeout counted", || timeouts(&srv) == 1).await;
    assert_eq!(srv.seen(), 0, "no message was handled");
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_silent_client_times_out() {
    let srv = Server::start(IDLE, 4).await;
    // Timed from before the connect: the server's idle timer cannot have started earlier.
    let start = Instant::now();
    let mut tcp = tcp_connect(srv.addr).await;
    tcp_wait_closed(&mut tcp).await;
    let took = start.elapsed();
    assert!(
        took >= IDLE,
        "closed after {took:?}, before the idle timeout"
    );
    wait_for("the timeout counted", || timeouts(&srv) == 1).await;
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_slow_client_is_held_to_the_idle_limit() {
    // One byte every 50 ms: each gap is well under the idle timeout, but the message as a whole is not,
    // and the server closes the connection long before the 100-byte message could complete (5 s).
    let srv = Server::start(IDLE, 4).await;
    let tcp = tcp_connect(srv.addr).await;
    let (mut rd, mut wr) = tcp.into_split();
    let trickle = tokio::spawn(async move {
        if wr.write_all(&[0, 100]).await.is_err() {
            return;
        }
        for _ in 0..100 {
            sleep(Duration::from_millis(50)).await;
            if wr.write_all(&[0]).await.is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, rd.read(&mut buf))
        .await
        .expect("the server closes the connection within the wait");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "unexpected data from the server: {n:?}"
    );
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    trickle.abort();
    wait_for("the timeout counted", || timeouts(&srv) == 1).await;
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_tcp_connection() {
    let idle = Duration::from_secs(5);
    let srv = Server::start(idle, 64).await;
    let from = |ip: [u8; 4]| async move {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.bind(SocketAddr::from((ip, 0))).expect("bind");
        timeout(WAIT, sock.connect(srv.addr))
            .await
            .expect("connect within the wait")
            .expect("connect")
    };
    // A connection from `ip` that gets an answer, trying again while the server has not yet seen a
    // close that frees a slot.
    let served = |ip: [u8; 4]| async move {
        for i in 0..50u16 {
            let mut s = from(ip).await;
            let q = query(0x0f00 + i, "app.demo.local", A);
            s.write_all(&frame(&q)).await.expect("write");
            let mut len = [0u8; 2];
            if timeout(WAIT, s.read_exact(&mut len))
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return s;
            }
            sleep(Duration::from_millis(20)).await;
        }
        panic!("no connection from {ip:?} was served");
    };
    let mut held = Vec::new();
    for i in 0..PER_CLIENT as u16 {
        let mut s = from([127, 0, 0, 1]).await;
        let q = query(0x0d00 + i, "app.demo.local", A);
        check_app_answer(&tcp_ask(&mut s, &q).await, &q);
        held.push(s);
    }
    let mut extra = from([127, 0, 0, 1]).await;
    tcp_wait_closed(&mut extra).await;
    wait_for("the refusal counted", || refused(&srv) == 1).await;
    // Another client is served meanwhile, and the first again once it closes one.
    let mut other = from([127, 0, 0, 2]).await;
    let q = query(0x0e00, "app.demo.local", A);
    check_app_answer(&tcp_ask(&mut other, &q).await, &q);
    drop(held.pop());
    held.push(served([127, 0, 0, 1]).await);
    assert_eq!(timeouts(&srv), 0);
    drop(held);
    served([127, 0, 0, 1]).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_over_the_cap_are_refused_until_idle_ones_time_out() {
    // A longer idle timeout here, so the held connections surely outlive the refusals (the whole
    // refusal sequence and the held connection's query must fit in it, even on a slow machine).
    let idle = Duration::from_secs(5);
    let srv = Server::start(idle, 4).await;
    let mut held = Vec::new();
    for i in 0..4u16 {
        let mut s = tcp_connect(srv.addr).await;
        let q = query(0x0a00 + i, "app.demo.local", A);
        check_app_answer(&tcp_ask(&mut s, &q).await, &q);
        held.push(s);
    }
    for i in 0..2u64 {
        let mut extra = tcp_connect(srv.addr).await;
        tcp_wait_closed(&mut extra).await;
        // The counters, not the clock, tell a refusal from an idle timeout.
        wait_for("the refusal counted", || refused(&srv) == i + 1).await;
        assert_eq!(timeouts(&srv), 0, "refused, not timed out");
    }
    // The held connections still work.
    let q = query(0x0b00, "app.demo.local", A);
    check_app_answer(&tcp_ask(&mut held[0], &q).await, &q);
    // Once they idle out, new connections are served again.
    wait_within(idle + WAIT, "the held connections to time out", || {
        timeouts(&srv) == 4
    })
    .await;
    for s in &mut held {
        tcp_wait_closed(s).await;
    }
    let mut fresh = tcp_connect(srv.addr).await;
    let q = query(0x0c00, "app.demo.local", A);
    check_app_answer(&tcp_ask(&mut fresh, &q).await, &q);
    assert_eq!(refused(&srv), 2);
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_responses_and_empty_messages_close_the_connection() {
    let srv = Server::start(IDLE, 4).await;
    let mut response = query(0x5555, "app.demo.local", A);
    response[2] |= 0x80;
    let mut tcp = tcp_connect(srv.addr).await;
    tcp.write_all(&frame(&response)).await.expect("write");
    tcp_wait_closed(&mut tcp).await;
    // The server counts a timeout before it closes: the counters, not the clock, tell a drop from one.
    assert_eq!(timeouts(&srv), 0, "dropped, not timed out");
    assert_eq!(srv.stats.drops(DropReason::Response), 1);

    let mut tcp = tcp_connect(srv.addr).await;
    tcp.write_all(&[0, 0]).await.expect("write");
    tcp_wait_closed(&mut tcp).await;
    wait_for("the short message counted", || {
        srv.stats.drops(DropReason::TooShort) == 1
    })
    .await;
    let mut tcp = tcp_connect(srv.addr).await;
    tcp.write_all(&frame(&response[..5])).await.expect("write");
    tcp_wait_closed(&mut tcp).await;
    wait_for("the short message counted", || {
        srv.stats.drops(DropReason::TooShort) == 2
    })
    .await;
    assert_eq!(srv.replies(), 0);
    assert_eq!(timeouts(&srv), 0);
    srv.check_alive().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_message_of_the_largest_size_is_read_and_answered() {
    let srv = Server::start(IDLE, 4).await;
    // A header, QDCOUNT 1, then 0xff: a pointer to 0x3fff, past the name: FORMERR.
    let mut big = header(0x6666, RD, 1, 0);
    big.resize(65_535, 0xff);
    let q = query(0x6667, "app.demo.local", A);
    let mut tcp = tcp_connect(srv.addr).await;
    let mut both = frame(&big);
    both.extend(frame(&q));
    tcp.write_all(&both).await.expect("write");
    let r = tcp_read_reply(&mut tcp).await;
    check_reply_to(&r, &big);
    assert_eq!(rcode(&r), 1, "FORMERR");
    check_app_answer(&tcp_read_reply(&mut tcp).await, &q);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_client_that_never_reads_is_timed_out() {
    // Queries for the 16-record answer, never reading a reply, into a tiny receive buffer: the server's
    // writes block, and it gives up after the idle timeout instead of waiting forever.
    let srv = Server::start(IDLE, 4).await;
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(1).expect("SO_RCVBUF");
    let tcp = timeout(WAIT, sock.connect(srv.addr))
        .await
        .expect("connect within the wait")
        .expect("connect");
    let (_rd, mut wr) = tcp.into_split();
    let q = frame(&query(0x7777, &format!("{LONG}.demo.local"), AAAA));
    let flood = tokio::spawn(async move {
        for _ in 0..20_000 {
            if wr.write_all(&q).await.is_err() {
                return;
            }
        }
    });
    wait_for("the stalled writer timed out", || timeouts(&srv) == 1).await;
    flood.abort();
    srv.check_alive().await;
    srv.stop().await;
}

fn timeouts(srv: &Server) -> u64 {
    srv.stats
        .tcp_timeouts
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn refused(srv: &Server) -> u64 {
    srv.stats
        .tcp_refused
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// `opengslb_dns_queries_total`: replies by configured domain (any case), type and RCODE; 1000 random
/// names and an unusual type all land under `other`, so the label set stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_counts_name_configured_domains_and_fold_the_rest_into_other() {
    let srv = Server::start(IDLE, 4).await;
    let sock = udp_client(srv.addr).await;
    let mut rng = Rng::new(0x5eed_0fc0_5e00_0001);
    for i in 0..1000u16 {
        let name = format!("r{:016x}.demo.local", rng.next_u64());
        check_reply_to(
            &udp_ask(&sock, &query(i, &name, A)).await,
            &query(i, &name, A),
        );
    }
    for (i, name) in ["app.demo.local", "APP.Demo.Local"].into_iter().enumerate() {
        let q = query(0x7000 + i as u16, name, A);
        check_reply_to(&udp_ask(&sock, &q).await, &q);
    }
    let q = query(0x7100, "app.demo.local", 99);
    check_reply_to(&udp_ask(&sock, &q).await, &q);
    let q = query(0x7101, "elsewhere.example", AAAA);
    check_reply_to(&udp_ask(&sock, &q).await, &q);
    wait_for("every query counted", || srv.replies() == 1004).await;
    let rows: Vec<(String, &str, &str, u64)> = srv
        .stats
        .queries
        .rows()
        .into_iter()
        .map(|(d, t, s, n)| (d.to_string(), t, s, n))
        .collect();
    println!("{rows:?}");
    let want = |d: &str, t: &str, s: &str, n: u64| {
        assert!(
            rows.contains(&(d.to_owned(), t, s, n)),
            "({d}, {t}, {s}) {n} in {rows:?}"
        );
    };
    want("app.demo.local", "A", "NOERROR", 2);
    want("app.demo.local", "other", "NOERROR", 1);
    want("other", "A", "NXDOMAIN", 1000);
    want("other", "AAAA", "REFUSED", 1);
    assert_eq!(rows.len(), 4, "{rows:?}");
    srv.stop().await;
}

/// A listener on a wildcard address answers from the address each query was sent to, over IPv4, IPv6
/// and IPv4 on a dual-stack socket: a client that asked 127.0.0.2 (connected to it, as resolvers'
/// sockets are) takes only a reply from 127.0.0.2, which the kernel's own choice of source (127.0.0.1,
/// loopback's primary address) is not.
#[tokio::test]
async fn a_wildcard_listener_answers_from_the_address_asked() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let srv = Server::start_on(listen.parse().expect("address"), IDLE, 64).await;
        let port = srv.addr.port();
        let mut asked = vec![("127.0.0.1", "127.0.0.2"), ("127.0.0.3", "127.0.0.1")];
        if listen.starts_with('[') {
            asked.push(("::1", "::1"));
        }
        for (from, to) in asked {
            let sock = UdpSocket::bind((from, 0)).await.expect("bind");
            sock.connect((to, port)).await.expect("connect");
            let q = query(0x7107, "app.demo.local", A);
            sock.send(&q).await.expect("send");
            let mut buf = vec![0u8; 65_535];
            let n = timeout(Duration::from_secs(3), sock.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{listen}: a reply from {to} to a query sent to it"))
                .expect("recv");
            check_app_answer(&buf[..n], &q);
        }
        srv.stop().await;
    }
}
