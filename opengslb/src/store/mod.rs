//! What the overwatch keeps across restarts and reloads: operators' overrides, the domains, servers,
//! regions and geolocation mappings made through the API, and the trust-on-first-use token pins.
//!
//! [`Store`] is one typed interface over a [`Backend`] that holds bytes under a table and a key, numbers
//! every change, and announces it. The typed layer (records, their versioned encoding) is shared by every
//! backend, so the shared backend ([`Etcd`], `overwatch.store.etcd`) holds the same values as the
//! embedded one ([`Embedded`], redb in `overwatch.data_dir`), and another overwatch's changes arrive
//! through [`Store::changes`] like this one's.
//!
//! Every call blocks until it is done, and a write until it is durable: async code calls it from
//! `spawn_blocking`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, Weak},
};

use tokio::sync::broadcast;

use crate::config::{EtcdConfig, OverwatchConfig};

mod codec;
mod embedded;
mod error;
mod etcd;
pub mod legacy;
pub mod objects;
mod record;

pub use embedded::{Embedded, FILE_NAME, SCHEMA_VERSION};
pub use error::StoreError;
pub use etcd::{Etcd, Link};
pub use record::{
    BackendId, DomainRecord, Domains, GeoMappingRecord, GeoMappings, HealthCheckRecord, Key, Kind,
    LatencyRecord, OverrideRecord, Overrides, PinRecord, Pins, Record, RegionRecord, Regions,
    ServerRecord, Servers,
};

/// The tables, one per kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Operators' overrides, by backend.
    Overrides,
    /// Domains made through the API, by name.
    Domains,
    /// Servers made through the API, by backend.
    Servers,
    /// Regions made through the API, by name.
    Regions,
    /// Custom geolocation mappings made through the API, by CIDR.
    GeoMappings,
    /// Trust-on-first-use token pins, by service.
    Pins,
}

impl Table {
    /// Every table.
    pub const ALL: [Self; 6] = [
        Self::Overrides,
        Self::Domains,
        Self::Servers,
        Self::Regions,
        Self::GeoMappings,
        Self::Pins,
    ];

    /// Its name in the backend; part of the stored format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Overrides => "overrides",
            Self::Domains => "domains",
            Self::Servers => "servers",
            Self::Regions => "regions",
            Self::GeoMappings => "geo_mappings",
            Self::Pins => "pins",
        }
    }
}

/// One change as the backend saw it: `value` is `None` for a deletion.
#[derive(Debug, Clone)]
pub struct RawChange {
    /// The change's number: every change gets the next one, so they order changes across the store.
    pub seq: u64,
    /// Where.
    pub table: Table,
    /// Which record.
    pub key: String,
    /// The encoded record, or `None` when it was deleted.
    pub value: Option<Arc<[u8]>>,
}

/// Where records live. Implementations write durably before returning, number changes with increasing
/// numbers (the embedded store from 1 without gaps; etcd by its revisions), and announce each committed
/// change (their own and, for a shared store, other writers') on [`Backend::subscribe`], in that order
/// for any one key.
pub trait Backend: Send + Sync + 'static {
    /// The encoded record under `key`.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every record of `table`, in key order.
    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Writes a record; returns the change's number once it is durable.
    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<u64, StoreError>;
    /// Writes a record only if none is under `key`, atomically even across writers; the change's
    /// number, or `None` (nothing written) if one was there.
    fn put_new(&self, table: Table, key: &str, value: &[u8]) -> Result<Option<u64>, StoreError>;
    /// Deletes a record; returns the change's number once it is durable, `None` if there was none.
    fn delete(&self, table: Table, key: &str) -> Result<Option<u64>, StoreError>;
    /// The number of the last change.
    fn seq(&self) -> Result<u64, StoreError>;
    /// Changes committed from now on.
    fn subscribe(&self) -> broadcast::Receiver<RawChange>;
    /// Where the records are, for messages (a file, an endpoint).
    fn location(&self) -> &str;
    /// For a shared store, its link to the cluster; `None` for a local one, which is always there.
    fn link(&self) -> Option<Link> {
        None
    }
}

/// Which store an overwatch's config names: one process opens each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded store in this directory.
    Embedded(PathBuf),
    /// An etcd cluster.
    Etcd(EtcdConfig),
}

impl Location {
    /// The store `overwatch.store` names: etcd when configured, else the embedded one in `data_dir`.
    pub fn of(cfg: &OverwatchConfig) -> Self {
        match &cfg.store.etcd {
            Some(etcd) => Self::Etcd(etcd.clone()),
            None => Self::Embedded(cfg.data_dir.clone()),
        }
    }

    /// Whether several overwatches share it.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Etcd(_))
    }
}

impl From<&Path> for Location {
    fn from(dir: &Path) -> Self {
        Self::Embedded(dir.to_owned())
    }
}

impl From<&PathBuf> for Location {
    fn from(dir: &PathBuf) -> Self {
        Self::Embedded(dir.clone())
    }
}

/// A change to a record, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Its number ([`RawChange::seq`]).
    pub seq: u64,
    /// What changed.
    pub event: Event,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A record was written (created or replaced).
    Put(Record),
    /// The record under this key was deleted.
    Delete(Key),
}

/// The persistence interface: typed records over a [`Backend`].
pub struct Store {
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.backend.location())
            .finish()
    }
}

/// Stores open in this process, by file or cluster: redb refuses a second open of one file, and one
/// watch of a cluster is enough, so the book of agents and the API share one.
static OPEN: Mutex<Vec<(Location, Weak<Store>)>> = Mutex::new(Vec::new());

impl Store {
    /// A store over any backend.
    pub fn with_backend(backend: impl Backend) -> Self {
        Self {
            backend: Box::new(backend),
        }
    }

    /// The embedded store in `data_dir` ([`FILE_NAME`]), created if missing.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Embedded::open(data_dir).map(Self::with_backend)
    }

    /// The overwatch's store, as `overwatch.store` names it, shared with whoever else in this process
    /// has it open.
    pub fn from_config(cfg: &OverwatchConfig) -> Result<Arc<Self>, StoreError> {
        Self::at(&Location::of(cfg))
    }

    /// The embedded store in `data_dir`, shared: while one handle is alive, every call gets it; once all
    /// are dropped the file is closed.
    pub fn shared(data_dir: &Path) -> Result<Arc<Self>, StoreError> {
        Self::at(&Location::Embedded(data_dir.to_owned()))
    }

    /// The store at `location`, shared: while one handle is alive, every call gets it; once all are
    /// dropped the file is closed (or the cluster let go).
    pub fn at(location: &Location) -> Result<Arc<Self>, StoreError> {
        let location = match location {
            Location::Embedded(dir) => {
                Location::Embedded(std::path::absolute(dir).map_err(|source| StoreError::Io {
                    location: dir.display().to_string(),
                    source,
                })?)
            }
            other => other.clone(),
        };
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(store) = open
            .iter()
            .find(|(l, _)| *l == location)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(store);
        }
        let store = Arc::new(match &location {
            Location::Embedded(dir) => Self::open(dir)?,
            Location::Etcd(cfg) => Self::with_backend(Etcd::open(cfg)?),
        });
        open.push((location, Arc::downgrade(&store)));
        Ok(store)
    }

    /// For a shared store, its link to the cluster; `None` for the embedded one.
    pub fn link(&self) -> Option<Link> {
        self.backend.link()
    }

    /// Where the records are.
    pub fn location(&self) -> &str {
        self.backend.location()
    }

    /// The record of kind `K` under `key`.
    pub fn get<K: Kind>(&self, key: &K::Key) -> Result<Option<K::Value>, StoreError> {
        let key = K::encode_key(key);
        self.backend
            .get(K::TABLE, &key)?
            .map(|bytes| self.decode::<K>(&key, &bytes))
            .transpose()
    }

    /// Every record of kind `K`, in key order.
    pub fn list<K: Kind>(&self) -> Result<Vec<K::Value>, StoreError> {
        self.backend
            .list(K::TABLE)?
            .into_iter()
            .map(|(key, bytes)| self.decode::<K>(&key, &bytes))
            .collect()
    }

    /// Writes a record (its key is part of it), replacing any under that key; returns the change's
    /// number once it is durable.
    pub fn put<K: Kind>(&self, value: &K::Value) -> Result<u64, StoreError> {
        let (key, bytes) = self.encoded::<K>(value)?;
        self.backend.put(K::TABLE, &key, &bytes)
    }

    fn encoded<K: Kind>(&self, value: &K::Value) -> Result<(String, Vec<u8>), StoreError> {
        let key = K::encode_key(&K::key_of(value));
        let bytes = codec::encode(value).map_err(|e| StoreError::Encode {
            location: self.location().to_owned(),
            table: K::TABLE.name(),
            key: key.clone(),
            reason: e.to_string(),
        })?;
        Ok((key, bytes))
    }

    /// Writes a record only if none is under its key, atomically even across overwatches sharing the
    /// store; the change's number, or `None` when one was there (and nothing was written).
    pub fn put_new<K: Kind>(&self, value: &K::Value) -> Result<Option<u64>, StoreError> {
        let (key, bytes) = self.encoded::<K>(value)?;
        self.backend.put_new(K::TABLE, &key, &bytes)
    }

    /// Deletes the record under `key`; returns the change's number once it is durable, or `None` if
    /// there was no such record.
    pub fn delete<K: Kind>(&self, key: &K::Key) -> Result<Option<u64>, StoreError> {
        self.backend.delete(K::TABLE, &K::encode_key(key))
    }

    /// The number of the last change: a reader that lists everything and then follows [`Self::changes`]
    /// from a subscription taken before the listing skips changes numbered up to this.
    pub fn seq(&self) -> Result<u64, StoreError> {
        self.backend.seq()
    }

    /// Changes from now on, decoded.
    pub fn changes(&self) -> Changes {
        Changes {
            rx: self.backend.subscribe(),
            location: self.location().to_owned(),
        }
    }

    fn decode<K: Kind>(&self, key: &str, bytes: &[u8]) -> Result<K::Value, StoreError> {
        codec::decode(bytes).map_err(|e| e.at(self.location(), K::TABLE, key))
    }
}

/// A subscription to a store's changes.
#[derive(Debug)]
pub struct Changes {
    rx: broadcast::Receiver<RawChange>,
    location: String,
}

impl Changes {
    /// The next change. [`StoreError::Lagged`] means changes were missed (the reader was too slow): list
    /// again. [`StoreError::Closed`]: the store is gone.
    pub async fn recv(&mut self) -> Result<Change, StoreError> {
        let raw = self.rx.recv().await;
        self.decoded(raw)
    }

    /// The next change if one is waiting, without waiting; `None` when none is.
    pub fn try_recv(&mut self) -> Option<Result<Change, StoreError>> {
        use broadcast::error::{RecvError, TryRecvError};
        let raw = match self.rx.try_recv() {
            Ok(raw) => Ok(raw),
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(TryRecvError::Closed) => Err(RecvError::Closed),
        };
        Some(self.decoded(raw))
    }

    fn decoded(
        &self,
        raw: Result<RawChange, broadcast::error::RecvError>,
    ) -> Result<Change, StoreError> {
        use broadcast::error::RecvError;
        let raw = match raw {
            Ok(raw) => raw,
            Err(RecvError::Lagged(missed)) => {
                return Err(StoreError::Lagged {
                    location: self.location.clone(),
                    missed,
                });
            }
            Err(RecvError::Closed) => {
                return Err(StoreError::Closed {
                    location: self.location.clone(),
                });
            }
        };
        let event = record::event(raw.table, &raw.key, raw.value.as_deref())
            .map_err(|e| e.at(&self.location, raw.table, &raw.key))?;
        Ok(Change {
            seq: raw.seq,
            event,
        })
    }
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;
