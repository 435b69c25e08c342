//! The pin file of earlier versions (`agent-tokens.pinned` in `data_dir`: one `service hex-digest` per
//! line), imported into the store once so an upgrade keeps its pins, then renamed so it is never read
//! again (a pin deleted later must not come back from it).

use std::path::Path;

use tracing::{info, warn};

use super::{PinRecord, Pins, Store, StoreError, record::from_hex};

/// The pin file of earlier versions, in `data_dir`.
pub const PIN_FILE: &str = "agent-tokens.pinned";

/// What the pin file is renamed to once imported.
pub const IMPORTED_PIN_FILE: &str = "agent-tokens.pinned.imported";

/// The pins of `data_dir`'s pin file; none when there is no file. A file that exists but cannot be read
/// is an error, so the caller can fail closed rather than let the first reporter pin a service anew.
/// Malformed lines are skipped with a warning.
pub fn read_pins(data_dir: &Path) -> Result<Vec<PinRecord>, StoreError> {
    let path = data_dir.join(PIN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Legacy {
                file: path.display().to_string(),
                source,
            });
        }
    };
    let mut pins = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let parsed = line
            .split_once(' ')
            .and_then(|(s, hex)| Some((s.parse().ok()?, from_hex(hex)?)));
        match parsed {
            Some((service, digest)) => pins.push(PinRecord { service, digest }),
            None if line.trim().is_empty() => {}
            None => warn!(file = %path.display(), line = n + 1, "malformed pin line skipped"),
        }
    }
    Ok(pins)
}

/// Imports `data_dir`'s pin file into `store`, if there is one: pins of services the store has no pin
/// for are added (the store's win: they are newer), durably, before the file is renamed. Returns how many
/// were added. A file that cannot be read is an error ([`read_pins`]).
pub fn import_pins(store: &Store, data_dir: &Path) -> Result<usize, StoreError> {
    let path = data_dir.join(PIN_FILE);
    if !path.exists() && std::fs::symlink_metadata(&path).is_err() {
        return Ok(0);
    }
    let mut added = 0;
    for pin in read_pins(data_dir)? {
        if store.get::<Pins>(&pin.service)?.is_none() {
            store.put::<Pins>(&pin)?;
            added += 1;
        }
    }
    let imported = data_dir.join(IMPORTED_PIN_FILE);
    match std::fs::rename(&path, &imported) {
        Ok(()) => info!(
            file = %path.display(),
            store = store.location(),
            added,
            renamed_to = %imported.display(),
            "agent token pins imported into the store"
        ),
        // Importing again is harmless unless a pin was deleted since; say so.
        Err(e) => warn!(
            file = %path.display(),
            error = %e,
            "agent token pins imported, but the file could not be renamed: it will be imported again at the next start; remove it"
        ),
    }
    Ok(added)
}
