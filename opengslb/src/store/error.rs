//! What can go wrong with the store. Every error names the store (its file) and, for a record, its
//! table and key; none is recovered from by starting empty.

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's file or directory could not be read or written.
    #[error("store {location}: {source}")]
    Io {
        /// The file or directory.
        location: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process has the store open.
    #[error(
        "store {location} is in use by another process (another overwatch with the same data_dir?)"
    )]
    Busy {
        /// The file.
        location: String,
    },
    /// The file is not a store this build can read: damaged, or not one of ours. It is left as it is.
    #[error(
        "store {location} is corrupt: {reason}; it was left untouched: restore it from a backup, or move it aside to start empty (losing overrides, API-made domains, servers, regions, geolocation mappings and token pins)"
    )]
    Corrupt {
        /// The file.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a later version, with a schema this build does not know.
    #[error(
        "store {location} has schema version {found}, newer than this build's {supported}: run the version that wrote it (the file was left untouched)"
    )]
    NewerSchema {
        /// The file.
        location: String,
        /// Its schema version.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
    /// A record was written by a later version, in a format this build does not know.
    #[error(
        "store {location}: record {key:?} in {table} has format {found}, newer than this build's {supported}: run the version that wrote it"
    )]
    NewerRecord {
        /// The file.
        location: String,
        /// Its table.
        table: &'static str,
        /// Its key.
        key: String,
        /// Its format.
        found: u8,
        /// The newest this build reads.
        supported: u8,
    },
    /// A record does not decode.
    #[error("store {location}: record {key:?} in {table} is corrupt: {reason}")]
    CorruptRecord {
        /// The file.
        location: String,
        /// Its table.
        table: &'static str,
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A record could not be encoded.
    #[error("store {location}: record {key:?} in {table} cannot be encoded: {reason}")]
    Encode {
        /// The file.
        location: String,
        /// Its table.
        table: &'static str,
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The backend failed otherwise (a transaction could not start or commit).
    #[error("store {location}: {source}")]
    Backend {
        /// The file.
        location: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A subscriber fell behind and missed changes: it must list again.
    #[error("store {location}: {missed} changes missed by a slow reader")]
    Lagged {
        /// The file.
        location: String,
        /// How many.
        missed: u64,
    },
    /// A shared store cannot be reached now: the change was not made (or, after a timeout, may be made
    /// later by etcd). The last state read from it is kept and served.
    #[error(
        "store {location} cannot be reached ({reason}); the last state read from it is still served"
    )]
    Unavailable {
        /// The cluster.
        location: String,
        /// Why.
        reason: String,
    },
    /// The store was closed.
    #[error("store {location} was closed")]
    Closed {
        /// The file.
        location: String,
    },
    /// The pin file of earlier versions could not be imported.
    #[error("cannot import the token pins of {file}: {source}")]
    Legacy {
        /// The pin file.
        file: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
