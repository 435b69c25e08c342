//! The shared backend: an etcd cluster that several overwatches name in `overwatch.store.etcd`. Each
//! record is one key, `<prefix><table>/<key>`, holding the same bytes as the embedded store; a change's
//! number is etcd's revision of it, so changes are ordered across every overwatch.
//!
//! A driver thread owns the client. It reads everything under the prefix, then watches it from the next
//! revision, and keeps a mirror: reads are served from the mirror, so an overwatch that loses etcd still
//! has its last state. Every change that reaches the mirror (this overwatch's own writes, and others'
//! through the watch) is announced once, in revision order per key. The driver checks the cluster
//! every second; when a check, the watch or the connection fails, the store is unavailable (writes are
//! refused, reads still answer) and the driver reconnects, reads everything again and announces what
//! differs from the mirror, so an overwatch catches up with what it missed.

use std::{
    sync::{Arc, atomic::Ordering, mpsc as std_mpsc},
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, mpsc};
use tracing::warn;

use super::{Backend, RawChange, StoreError, Table};
use crate::config::EtcdConfig;
use driver::{Driver, Op, Request};
pub use mirror::Link;
use mirror::Shared;

mod driver;
mod mirror;
#[cfg(test)]
mod tests;

/// How many changes a subscriber may fall behind before it is told it lagged.
const CHANGES_BUFFER: usize = 1024;

/// The store in an etcd cluster.
pub struct Etcd {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
    request_timeout: Duration,
}

impl Etcd {
    /// Starts following the cluster and waits up to `dial_timeout` + `request_timeout` for the first
    /// full read. A cluster that cannot be reached by then is not an error: the store starts empty and
    /// unavailable, and fills once the cluster answers. TLS files that cannot be read are.
    pub fn open(cfg: &EtcdConfig) -> Result<Self, StoreError> {
        let location = format!("etcd {} {}", cfg.endpoints.join(","), cfg.prefix);
        let shared = Arc::new(Shared::new(location.clone(), CHANGES_BUFFER));
        let tx = Driver::spawn(cfg, shared.clone())?;
        let store = Self {
            shared,
            requests: tx,
            request_timeout: cfg.request_timeout,
        };
        let until = Instant::now() + cfg.dial_timeout + cfg.request_timeout;
        while !store.shared.up.load(Ordering::Acquire) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !store.shared.up.load(Ordering::Acquire) {
            warn!(store = %location, "the shared store cannot be reached at start-up: starting without what it holds, catching up when it answers");
        }
        Ok(store)
    }

    /// The link to the cluster now.
    pub fn link(&self) -> Link {
        self.shared.link()
    }

    fn unavailable(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            location: self.shared.location.clone(),
            reason: reason.into(),
        }
    }

    /// Hands a write to the driver and waits for it. A store down for longer than a request may take
    /// refuses at once, so an outage does not hold every caller for a timeout; one that just went down
    /// gives the driver that long to reconnect.
    fn write(&self, table: Table, key: &str, op: Op) -> Result<Option<u64>, StoreError> {
        if !self.shared.up.load(Ordering::Acquire) {
            let link = self.link();
            let down_ms = crate::gossip::unix_ms().saturating_sub(link.since_ms);
            if u128::from(down_ms) > self.request_timeout.as_millis() {
                return Err(self.unavailable(link.reason.unwrap_or_default()));
            }
        }
        let (reply, answer) = std_mpsc::sync_channel(1);
        let deadline = Instant::now() + self.request_timeout;
        self.requests
            .send(Request {
                table,
                key: key.to_owned(),
                op,
                deadline,
                reply,
            })
            .map_err(|_| self.unavailable("the store's driver stopped"))?;
        // A little past the driver's own deadline, which answers first.
        match answer.recv_timeout(self.request_timeout + Duration::from_millis(500)) {
            Ok(result) => result.map_err(|reason| self.unavailable(reason)),
            Err(_) => {
                Err(self.unavailable("no answer within overwatch.store.etcd.request_timeout"))
            }
        }
    }
}

impl Backend for Etcd {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.shared.mirror().get(table, key))
    }

    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.shared.mirror().list(table))
    }

    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        self.write(table, key, Op::Put(value.to_vec()))?
            .ok_or_else(|| self.unavailable("etcd answered a write without a revision"))
    }

    fn put_new(&self, table: Table, key: &str, value: &[u8]) -> Result<Option<u64>, StoreError> {
        self.write(table, key, Op::PutNew(value.to_vec()))
    }

    fn delete(&self, table: Table, key: &str) -> Result<Option<u64>, StoreError> {
        self.write(table, key, Op::Delete)
    }

    fn seq(&self) -> Result<u64, StoreError> {
        Ok(self.shared.mirror().revision)
    }

    fn subscribe(&self) -> broadcast::Receiver<RawChange> {
        // Under the mirror's lock: a subscriber then sees every change after what a read shows.
        let _m = self.shared.mirror();
        self.shared.changes.subscribe()
    }

    fn location(&self) -> &str {
        &self.shared.location
    }

    fn link(&self) -> Option<Link> {
        Some(Self::link(self))
    }
}
