//! How a record is held as bytes: a format byte, then the record as JSON. The format byte lets a later
//! version change the encoding and still read what this one wrote, and lets this one refuse, rather than
//! misread, what a later one wrote. JSON keeps a record readable with generic tools (`etcdctl get`).

use serde::{Serialize, de::DeserializeOwned};

use super::{StoreError, Table};

/// The encoding this build writes and the newest it reads.
pub const FORMAT: u8 = 1;

/// Why bytes did not decode; [`DecodeError::at`] says where.
#[derive(Debug)]
pub enum DecodeError {
    /// Written by a later version.
    Newer(u8),
    /// Not a record of this kind.
    Corrupt(String),
}

impl DecodeError {
    /// The error for the record under `key` in `table` of the store at `location`.
    pub fn at(self, location: &str, table: Table, key: &str) -> StoreError {
        match self {
            Self::Newer(found) => StoreError::NewerRecord {
                location: location.to_owned(),
                table: table.name(),
                key: key.to_owned(),
                found,
                supported: FORMAT,
            },
            Self::Corrupt(reason) => StoreError::CorruptRecord {
                location: location.to_owned(),
                table: table.name(),
                key: key.to_owned(),
                reason,
            },
        }
    }
}

/// The bytes of `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = vec![FORMAT];
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// The record in `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Corrupt("empty value".to_owned())),
        Some((&FORMAT, body)) => {
            serde_json::from_slice(body).map_err(|e| DecodeError::Corrupt(e.to_string()))
        }
        Some((&v, _)) if v > FORMAT => Err(DecodeError::Newer(v)),
        Some((&v, _)) => Err(DecodeError::Corrupt(format!("unknown format byte {v}"))),
    }
}
