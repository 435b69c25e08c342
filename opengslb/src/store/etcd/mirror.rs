//! The mirror of everything under the prefix, shared by the driver (which writes it) and the store's
//! handles (which read it), and the link to the cluster as callers see it.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::store::{RawChange, Table};

/// What a caller sees of the store's link to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Whether the cluster answered the last check and the mirror follows it.
    pub up: bool,
    /// Why it is down, when it is.
    pub reason: Option<String>,
    /// When `up` last changed (or the store opened), ms since the Unix epoch.
    pub since_ms: u64,
    /// The last revision the mirror holds.
    pub revision: u64,
}

/// Records read at once: by table and key, their revision and bytes.
pub(super) type Records = BTreeMap<(Table, String), (u64, Arc<[u8]>)>;

/// One record's last known state: the revision that wrote it, and its bytes (`None`: deleted).
#[derive(Debug, Clone)]
struct Slot {
    revision: u64,
    value: Option<Arc<[u8]>>,
}

/// Everything under the prefix as last read, with deletions remembered by revision so an older change
/// arriving late never undoes a newer one.
#[derive(Default)]
pub(super) struct Mirror {
    pub(super) revision: u64,
    slots: BTreeMap<(Table, String), Slot>,
}

impl Mirror {
    /// The record under `key`.
    pub(super) fn get(&self, table: Table, key: &str) -> Option<Vec<u8>> {
        self.slots
            .get(&(table, key.to_owned()))
            .and_then(|s| s.value.as_deref().map(<[u8]>::to_vec))
    }

    /// Every record of `table`, in key order.
    pub(super) fn list(&self, table: Table) -> Vec<(String, Vec<u8>)> {
        self.slots
            .iter()
            .filter(|((t, _), _)| *t == table)
            .filter_map(|((_, k), s)| s.value.as_deref().map(|v| (k.clone(), v.to_vec())))
            .collect()
    }
}

pub(super) struct Shared {
    pub(super) location: String,
    /// Held across a change to the mirror and its announcement, so they happen in one order.
    mirror: Mutex<Mirror>,
    pub(super) changes: broadcast::Sender<RawChange>,
    pub(super) up: AtomicBool,
    link: Mutex<Link>,
}

impl Shared {
    /// An empty mirror, not connected yet, announcing to subscribers up to `buffer` changes behind.
    pub(super) fn new(location: String, buffer: usize) -> Self {
        Self {
            location,
            mirror: Mutex::new(Mirror::default()),
            changes: broadcast::channel(buffer).0,
            up: AtomicBool::new(false),
            link: Mutex::new(Link {
                up: false,
                reason: Some("not connected yet".to_owned()),
                since_ms: crate::gossip::unix_ms(),
                revision: 0,
            }),
        }
    }

    /// The link now, with the mirror's revision.
    pub(super) fn link(&self) -> Link {
        let mut link = self
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        link.revision = self.mirror().revision;
        link
    }

    pub(super) fn mirror(&self) -> MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one change seen at `revision`; announces it when it changes what a reader sees.
    pub(super) fn apply(&self, revision: u64, table: Table, key: &str, value: Option<Arc<[u8]>>) {
        let mut m = self.mirror();
        m.revision = m.revision.max(revision);
        let slot = m.slots.entry((table, key.to_owned())).or_insert(Slot {
            revision: 0,
            value: None,
        });
        if slot.revision >= revision {
            return;
        }
        let same = slot.value == value;
        slot.revision = revision;
        slot.value.clone_from(&value);
        if !same {
            // No subscriber is not an error.
            let _ = self.changes.send(RawChange {
                seq: revision,
                table,
                key: key.to_owned(),
                value,
            });
        }
    }

    /// Takes a full read at `revision`: what differs from the mirror is applied and announced, and a
    /// record the mirror has but the read does not was deleted meanwhile.
    pub(super) fn resync(&self, revision: u64, records: Records) {
        let gone: Vec<(Table, String)> = {
            let m = self.mirror();
            m.slots
                .iter()
                .filter(|(k, s)| s.value.is_some() && !records.contains_key(*k))
                .map(|(k, _)| k.clone())
                .collect()
        };
        for (table, key) in gone {
            self.apply(revision, table, &key, None);
        }
        for ((table, key), (rev, value)) in records {
            self.apply(rev, table, &key, Some(value));
        }
        let mut m = self.mirror();
        m.revision = m.revision.max(revision);
        // A deletion the read already reflects needs no remembering: any later change has a higher
        // revision.
        m.slots
            .retain(|_, s| s.value.is_some() || s.revision > revision);
    }

    /// Every change up to `revision` has been applied.
    pub(super) fn caught_up(&self, revision: u64) {
        let mut m = self.mirror();
        m.revision = m.revision.max(revision);
    }

    pub(super) fn set_link(&self, up: bool, reason: Option<String>) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        if link.up != up {
            link.since_ms = crate::gossip::unix_ms();
            if up {
                info!(store = %self.location, "the shared store is reachable: changes are accepted");
            } else {
                warn!(
                    store = %self.location,
                    reason = reason.as_deref().unwrap_or(""),
                    "the shared store cannot be reached: serving the last state, refusing changes"
                );
            }
        }
        link.up = up;
        link.reason = reason;
        self.up.store(up, Ordering::Release);
    }
}
