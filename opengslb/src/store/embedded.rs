//! The embedded backend: a redb file in `overwatch.data_dir`. redb commits are copy-on-write with
//! checksummed pages and an fsync before `commit` returns, so an acknowledged change survives a crash
//! and a torn write is rolled back to the last commit, never half-applied.
//!
//! Besides one table per kind, the `meta` table holds the schema version (the tables and keys this
//! build reads) and the number of the last change, written in the same transaction as the change.

use std::{
    fs::OpenOptions,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, TableDefinition, TableHandle as _,
};
use tokio::sync::broadcast;

use super::{Backend, RawChange, StoreError, Table};

/// The store's file in `data_dir`.
pub const FILE_NAME: &str = "opengslb.redb";

/// The schema this build writes and the newest it reads: the tables of [`Table`], keys as
/// [`super::Kind::encode_key`] writes them, values as the codec does.
pub const SCHEMA_VERSION: u64 = 1;

pub(super) const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
pub(super) const SCHEMA_KEY: &str = "schema_version";
const SEQ_KEY: &str = "seq";

/// How many changes a subscriber may fall behind before it is told it lagged.
const CHANGES_BUFFER: usize = 1024;

fn def(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

/// A redb file holding the store.
pub struct Embedded {
    db: Database,
    location: String,
    /// Held across a write and its announcement, so changes are announced in the order they were
    /// numbered.
    changes: Mutex<broadcast::Sender<RawChange>>,
}

impl Embedded {
    /// Opens the store in `data_dir` ([`FILE_NAME`]), creating the directory and an empty store (owner
    /// only) if there is none. A file that is not a store this build reads is an error, and is left
    /// untouched.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(FILE_NAME);
        let location = path.display().to_string();
        let io = |source| StoreError::Io {
            location: location.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        create_owner_only(&path).map_err(io)?;
        // The file is small: checking every page's checksum on open turns a damaged page into an
        // error naming the file here, rather than a failure at some later read.
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(&path)
            .map_err(|e| from_redb(&location, e.into()))?;
        let store = Self {
            db,
            location,
            changes: Mutex::new(broadcast::channel(CHANGES_BUFFER).0),
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Where the file is.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.location)
    }

    /// Checks the schema of an existing store, or writes it into a new one.
    fn check_schema(&self) -> Result<(), StoreError> {
        let err = |e: redb::Error| from_redb(&self.location, e);
        let read = self.db.begin_read().map_err(|e| err(e.into()))?;
        let names: Vec<String> = read
            .list_tables()
            .map_err(|e| err(e.into()))?
            .map(|t| t.name().to_owned())
            .collect();
        if names.iter().any(|n| n == META.name()) {
            let meta = read.open_table(META).map_err(|e| err(e.into()))?;
            let found = meta
                .get(SCHEMA_KEY)
                .map_err(|e| err(e.into()))?
                .map(|g| g.value());
            return match found {
                Some(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                    location: self.location.clone(),
                    found: v,
                    supported: SCHEMA_VERSION,
                }),
                Some(0) | None => Err(self.corrupt("the meta table has no schema version")),
                Some(_) => Ok(()),
            };
        }
        if let Some(other) = names.first() {
            return Err(self.corrupt(&format!(
                "it has a table {other:?} but no meta table: not an opengslb store"
            )));
        }
        drop(read);
        let write = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut meta = write.open_table(META).map_err(|e| err(e.into()))?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION)
                .map_err(|e| err(e.into()))?;
            meta.insert(SEQ_KEY, 0).map_err(|e| err(e.into()))?;
            // Every table exists from the start, so reads never meet a missing one.
            for table in Table::ALL {
                write.open_table(def(table)).map_err(|e| err(e.into()))?;
            }
        }
        write.commit().map_err(|e| err(e.into()))
    }

    fn corrupt(&self, reason: &str) -> StoreError {
        StoreError::Corrupt {
            location: self.location.clone(),
            reason: reason.to_owned(),
        }
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        from_redb(&self.location, e.into())
    }

    /// Writes (`Some`) or deletes (`None`) one record and bumps the change number, in one durable
    /// transaction; returns the number, or `None` for a deletion of nothing.
    fn write(
        &self,
        table: Table,
        key: &str,
        value: Option<&[u8]>,
        only_new: bool,
    ) -> Result<Option<u64>, StoreError> {
        let changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let write = self.db.begin_write().map_err(|e| self.err(e))?;
        let seq = {
            let mut t = write.open_table(def(table)).map_err(|e| self.err(e))?;
            let existed = match value {
                Some(_) if only_new && t.get(key).map_err(|e| self.err(e))?.is_some() => {
                    return Ok(None);
                }
                Some(v) => {
                    t.insert(key, v).map_err(|e| self.err(e))?;
                    true
                }
                None => t.remove(key).map_err(|e| self.err(e))?.is_some(),
            };
            if !existed {
                return Ok(None);
            }
            let mut meta = write.open_table(META).map_err(|e| self.err(e))?;
            let seq = meta
                .get(SEQ_KEY)
                .map_err(|e| self.err(e))?
                .map_or(0, |g| g.value())
                + 1;
            meta.insert(SEQ_KEY, seq).map_err(|e| self.err(e))?;
            seq
        };
        write.commit().map_err(|e| self.err(e))?;
        // No subscriber is not an error.
        let _ = changes.send(RawChange {
            seq,
            table,
            key: key.to_owned(),
            value: value.map(Arc::from),
        });
        Ok(Some(seq))
    }
}

impl Backend for Embedded {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = read.open_table(def(table)).map_err(|e| self.err(e))?;
        let value = t.get(key).map_err(|e| self.err(e))?;
        Ok(value.map(|g| g.value().to_vec()))
    }

    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = read.open_table(def(table)).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        self.write(table, key, Some(value), false)?
            .ok_or_else(|| self.corrupt("a write changed nothing"))
    }

    fn put_new(&self, table: Table, key: &str, value: &[u8]) -> Result<Option<u64>, StoreError> {
        self.write(table, key, Some(value), true)
    }

    fn delete(&self, table: Table, key: &str) -> Result<Option<u64>, StoreError> {
        self.write(table, key, None, false)
    }

    fn seq(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = read.open_table(META).map_err(|e| self.err(e))?;
        let seq = meta.get(SEQ_KEY).map_err(|e| self.err(e))?;
        Ok(seq.map_or(0, |g| g.value()))
    }

    fn subscribe(&self) -> broadcast::Receiver<RawChange> {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .subscribe()
    }

    fn location(&self) -> &str {
        &self.location
    }
}

/// Creates the file owner-only if missing (it holds token digests), and makes an existing one so: one
/// copied in by hand may be readable by others.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// A redb error, named for what it means to an operator.
fn from_redb(location: &str, e: redb::Error) -> StoreError {
    let location = location.to_owned();
    match e {
        redb::Error::DatabaseAlreadyOpen => StoreError::Busy { location },
        redb::Error::Corrupted(reason) => StoreError::Corrupt { location, reason },
        redb::Error::UpgradeRequired(v) => StoreError::Corrupt {
            location,
            reason: format!("redb file format {v}, which this build's redb does not read"),
        },
        redb::Error::TableTypeMismatch { .. } | redb::Error::TypeDefinitionChanged { .. } => {
            StoreError::Corrupt {
                location,
                reason: e.to_string(),
            }
        }
        // redb reports a file that does not start as a redb file as invalid data.
        redb::Error::Io(source) if source.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt {
                location,
                reason: source.to_string(),
            }
        }
        redb::Error::Io(source) => StoreError::Io { location, source },
        other => StoreError::Backend {
            location,
            source: Box::new(other),
        },
    }
}
