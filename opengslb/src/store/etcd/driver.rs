//! The thread that owns the etcd client: it connects, reads everything, follows the watch, checks
//! the cluster every second, makes the writes, and reconnects when any of that fails.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, mpsc as std_mpsc},
    time::{Duration, Instant},
};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::mpsc;

use super::mirror::Shared;
use crate::{
    config::EtcdConfig,
    store::{StoreError, Table},
};

/// How often the driver checks that the cluster answers.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a write waits before trying again after a member could not be reached.
const RETRY_AFTER: Duration = Duration::from_millis(50);
/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A write for the driver to make.
pub(super) enum Op {
    Put(Vec<u8>),
    /// A write only if no record is there (a trust-on-first-use pin).
    PutNew(Vec<u8>),
    Delete,
}

pub(super) struct Request {
    pub(super) table: Table,
    pub(super) key: String,
    pub(super) op: Op,
    pub(super) deadline: Instant,
    pub(super) reply: std_mpsc::SyncSender<Result<Option<u64>, String>>,
}

fn connect_options(cfg: &EtcdConfig, location: &str) -> Result<ConnectOptions, StoreError> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(cfg.dial_timeout)
        .with_timeout(cfg.request_timeout)
        .with_keep_alive(CHECK_EVERY, cfg.request_timeout)
        .with_keep_alive_while_idle(true)
        // A member cut off from the others cancels watches rather than keeping them silent.
        .with_require_leader(true);
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        o = o.with_user(user.clone(), password.expose());
    }
    if let Some(t) = &cfg.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| StoreError::Io {
                location: format!("{location}: {}", path.display()),
                source,
            })
        };
        let mut tls = TlsOptions::new();
        if let Some(ca) = &t.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &t.server_name {
            tls = tls.domain_name(name.clone());
        }
        o = o.with_tls(tls);
    }
    Ok(o)
}

/// Why a session with the cluster ended.
enum End {
    /// Every handle to the store was dropped.
    Closed,
    /// The cluster stopped answering; reconnect.
    Lost(String),
}

pub(super) struct Driver {
    shared: Arc<Shared>,
    endpoints: Vec<String>,
    prefix: String,
    options: ConnectOptions,
    dial_timeout: Duration,
    request_timeout: Duration,
    /// Writes waiting for a session, each until its deadline.
    pending: VecDeque<Request>,
}

impl Driver {
    /// Starts the driver's thread, with a runtime of its own (the store's callers block); the
    /// sender its writes go to. TLS files that cannot be read are an error.
    pub(super) fn spawn(
        cfg: &EtcdConfig,
        shared: Arc<Shared>,
    ) -> Result<mpsc::UnboundedSender<Request>, StoreError> {
        let location = shared.location.clone();
        let io = |source| StoreError::Io {
            location: location.clone(),
            source,
        };
        let driver = Self {
            options: connect_options(cfg, &location)?,
            shared,
            endpoints: cfg.endpoints.clone(),
            prefix: cfg.prefix.clone(),
            dial_timeout: cfg.dial_timeout,
            request_timeout: cfg.request_timeout,
            pending: VecDeque::new(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io)?;
        std::thread::Builder::new()
            .name("store-etcd".to_owned())
            .spawn(move || rt.block_on(driver.run(rx)))
            .map_err(io)?;
        Ok(tx)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let end = match self.connect().await {
                Ok(client) => {
                    backoff = Duration::from_millis(100);
                    self.session(client, &mut rx).await
                }
                Err(reason) => End::Lost(reason),
            };
            match end {
                End::Closed => return,
                End::Lost(reason) => self.shared.set_link(false, Some(reason)),
            }
            // Writes keep arriving while down: each waits for the next session until its deadline.
            let until = tokio::time::Instant::now() + backoff;
            loop {
                self.expire_pending();
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    r = rx.recv() => match r {
                        Some(r) => self.pending.push_back(r),
                        None => return,
                    },
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn expire_pending(&mut self) {
        let now = Instant::now();
        let link = self.shared.link().reason.unwrap_or_default();
        self.pending.retain(|r| {
            if r.deadline > now {
                return true;
            }
            let _ = r.reply.send(Err(link.clone()));
            false
        });
    }

    async fn connect(&self) -> Result<Client, String> {
        let connect = Client::connect(&self.endpoints, Some(self.options.clone()));
        match tokio::time::timeout(self.dial_timeout + self.request_timeout, connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("cannot connect: {}", describe(&e))),
            Err(_) => Err("cannot connect: timed out".to_owned()),
        }
    }

    /// One connection's life: read everything, follow the watch, make the writes.
    async fn session(
        &mut self,
        mut client: Client,
        rx: &mut mpsc::UnboundedReceiver<Request>,
    ) -> End {
        let revision = match self.read_all(&mut client).await {
            Ok(r) => r,
            Err(e) => return End::Lost(e),
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(i64::try_from(revision + 1).unwrap_or(i64::MAX));
        let watch = client.watch(self.prefix.as_bytes(), Some(options));
        let mut watch = match tokio::time::timeout(self.request_timeout, watch).await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => return End::Lost(format!("cannot watch: {}", describe(&e))),
            Err(_) => return End::Lost("cannot watch: timed out".to_owned()),
        };
        self.shared.set_link(true, None);
        while let Some(r) = self.pending.pop_front() {
            self.serve(&mut client, r).await;
        }
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = watch.message() => match m {
                    Ok(Some(resp)) if resp.canceled() => {
                        return End::Lost(format!(
                            "the watch was cancelled: {} (compacted at {})",
                            resp.cancel_reason(),
                            resp.compact_revision()
                        ));
                    }
                    Ok(Some(resp)) => {
                        for event in resp.events() {
                            self.on_event(event);
                        }
                        // A progress report: every change up to its revision has been sent.
                        if resp.events().is_empty() && !resp.created() {
                            let revision = resp.header().map_or(0, |h| h.revision());
                            self.shared.caught_up(u64::try_from(revision).unwrap_or(0));
                        }
                    }
                    Ok(None) => return End::Lost("the watch ended".to_owned()),
                    Err(e) => return End::Lost(format!("the watch failed: {}", describe(&e))),
                },
                r = rx.recv() => match r {
                    Some(r) => self.serve(&mut client, r).await,
                    None => return End::Closed,
                },
                _ = check.tick() => {
                    // A linearizable read: it needs a leader and a quorum, so it fails on a member
                    // cut off from the others, and when this overwatch is cut off from all of them.
                    let opts = GetOptions::new().with_count_only();
                    let key = format!("{}health", self.prefix);
                    match tokio::time::timeout(self.request_timeout, client.get(key, Some(opts))).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return End::Lost(format!("the check failed: {}", describe(&e))),
                        Err(_) => return End::Lost("the check timed out".to_owned()),
                    }
                    // The watch then reports the cluster's revision, which writes under other
                    // prefixes move too: overwatches that have every change show the same one.
                    if let Err(e) = watch.request_progress().await {
                        return End::Lost(format!("the watch failed: {}", describe(&e)));
                    }
                }
            }
        }
    }

    /// Reads every record under the prefix into the mirror; returns the revision read at.
    async fn read_all(&self, client: &mut Client) -> Result<u64, String> {
        let get = client.get(
            self.prefix.as_bytes(),
            Some(GetOptions::new().with_prefix()),
        );
        let resp = match tokio::time::timeout(self.request_timeout, get).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(format!("cannot read: {}", describe(&e))),
            Err(_) => return Err("cannot read: timed out".to_owned()),
        };
        let revision = resp
            .header()
            .map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0));
        let mut records = BTreeMap::new();
        for kv in resp.kvs() {
            if let Some((table, key)) = self.parse_key(kv.key()) {
                let rev = u64::try_from(kv.mod_revision()).unwrap_or(0);
                records.insert((table, key), (rev, Arc::from(kv.value())));
            }
        }
        self.shared.resync(revision, records);
        Ok(revision)
    }

    fn on_event(&self, event: &etcd_client::Event) {
        let Some(kv) = event.kv() else { return };
        let Some((table, key)) = self.parse_key(kv.key()) else {
            return;
        };
        let revision = u64::try_from(kv.mod_revision()).unwrap_or(0);
        let value = match event.event_type() {
            EventType::Put => Some(Arc::from(kv.value())),
            EventType::Delete => None,
        };
        self.shared.apply(revision, table, &key, value);
    }

    /// `<prefix><table>/<key>` as a table and a key; other keys under the prefix (the health key, a
    /// table of a later version) are not records of this build.
    fn parse_key(&self, raw: &[u8]) -> Option<(Table, String)> {
        let rest = std::str::from_utf8(raw).ok()?.strip_prefix(&self.prefix)?;
        let (name, key) = rest.split_once('/')?;
        let table = Table::ALL.into_iter().find(|t| t.name() == name)?;
        Some((table, key.to_owned()))
    }

    fn etcd_key(&self, table: Table, key: &str) -> String {
        format!("{}{}/{key}", self.prefix, table.name())
    }

    /// Makes one write and answers it; a change made is applied to the mirror (and announced) before
    /// the answer, so the writer reads its own write. A member that cannot be reached, or an election
    /// under way, is retried (on whichever member the client picks next) until the request's
    /// deadline: every write here may be made twice without harm (a put of the same bytes, a deletion,
    /// a put only if absent).
    async fn serve(&self, client: &mut Client, r: Request) {
        let full = self.etcd_key(r.table, &r.key);
        let mut tried = false;
        let answer = loop {
            let left = r.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !tried {
                break Err("no member could be reached in time".to_owned());
            }
            tried = true;
            // Each try gets half the time left, so a try stuck on a dead member leaves room for one
            // on another.
            let attempt = (left / 2).max(Duration::from_millis(100)).min(left);
            match tokio::time::timeout(attempt, self.write(client, &full, &r.op)).await {
                Ok(Ok(Some(revision))) => {
                    let value = match &r.op {
                        Op::Put(v) | Op::PutNew(v) => Some(Arc::from(v.as_slice())),
                        Op::Delete => None,
                    };
                    self.shared.apply(revision, r.table, &r.key, value);
                    break Ok(Some(revision));
                }
                Ok(Ok(None)) => break Ok(None),
                Ok(Err(e)) if !transient(&e) => {
                    break Err(format!("etcd refused the write: {}", describe(&e)));
                }
                Ok(Err(e)) if Instant::now() + RETRY_AFTER >= r.deadline => {
                    break Err(format!("the write failed: {}", describe(&e)));
                }
                Err(_) if Instant::now() >= r.deadline => {
                    break Err("the write timed out; etcd may still make it, and every overwatch then shows it".to_owned());
                }
                Ok(Err(_)) | Err(_) => tokio::time::sleep(RETRY_AFTER).await,
            }
        };
        let _ = r.reply.send(answer);
    }

    /// The revision of the change, or `None` when nothing changed (a deletion of nothing, a new record
    /// where one exists).
    async fn write(
        &self,
        client: &mut Client,
        full: &str,
        op: &Op,
    ) -> Result<Option<u64>, etcd_client::Error> {
        let revision = |h: Option<&etcd_client::ResponseHeader>| {
            h.map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0))
        };
        match op {
            Op::Put(v) => {
                let resp = client.put(full, v.clone(), None).await?;
                Ok(Some(revision(resp.header())))
            }
            Op::Delete => {
                let resp = client.delete(full, None).await?;
                Ok((resp.deleted() > 0).then(|| revision(resp.header())))
            }
            Op::PutNew(v) => {
                let txn = Txn::new()
                    .when([Compare::create_revision(full, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(full, v.clone(), None)]);
                let resp = client.txn(txn).await?;
                Ok(resp.succeeded().then(|| revision(resp.header())))
            }
        }
    }
}

/// Whether an error may pass: a member that cannot be reached, a timeout, no leader yet.
fn transient(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown
        ),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// An error in an operator's words: the gRPC status and etcd's message, without the transport's
/// internals.
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.message().is_empty() => {
            s.code().description().to_owned()
        }
        etcd_client::Error::GRpcStatus(s) => {
            format!("{}: {}", s.code().description(), s.message())
        }
        etcd_client::Error::TransportError(_) => "no member could be connected to".to_owned(),
        other => other.to_string(),
    }
}
