//! What the data plane keeps in bpffs, so that it outlives the overwatch: one link per interface at the pin
//! root, `link_<mode>_<iface>`, and the maps in a directory named for their layout, `<layout>/`. A new
//! overwatch takes the links over (replacing the program through them, atomically) and adopts the maps
//! when their layout is its own; otherwise it fills fresh maps in `<layout>_new/` and renames that
//! directory into place once its program answers from them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    maps::MapInfo,
    programs::{links::PinnedLink, xdp::XdpMode},
};
use opengslb_common::maps::LAYOUT_VERSION;
use tracing::{info, warn};

use super::{PINNED_MAPS, XdpError, mode_name};

/// Where pins live by default.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf/opengslb";

/// The pin directory for this build's map layout under `root` (default [`BPFFS_ROOT`]).
pub fn pin_dir(root: &Path) -> PathBuf {
    root.join(format!("{LAYOUT_VERSION:08x}"))
}

/// Where fresh maps wait until the program that uses them is attached (bpffs refuses names with a dot).
pub(super) fn staging_dir(root: &Path) -> PathBuf {
    root.join(format!("{LAYOUT_VERSION:08x}_new"))
}

/// The pin of the link attaching XDP to `iface` in `mode`. The mode is in the name because a link cannot
/// change it: a run configured for another mode attaches anew.
pub fn link_pin(root: &Path, iface: &str, mode: XdpMode) -> PathBuf {
    root.join(format!("link_{}_{iface}", mode_name(mode)))
}

/// The link a previous run left pinned for `iface`, and its mode.
pub(super) fn find_link(root: &Path, iface: &str) -> Option<(PathBuf, XdpMode)> {
    [
        XdpMode::Driver,
        XdpMode::Skb,
        XdpMode::Hardware,
        XdpMode::Default,
    ]
    .into_iter()
    .map(|m| (link_pin(root, iface, m), m))
    .find(|(p, _)| p.exists())
}

/// Every link pinned under `root`.
pub(super) fn links(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("link_"))
        .map(|e| e.path())
        .collect()
}

/// Removes a link's pin, which detaches it once no process holds it open.
pub(super) fn unpin_link(path: &Path) {
    match PinnedLink::from_pin(path) {
        Ok(l) => {
            if let Err(e) = l.unpin() {
                warn!(path = %path.display(), error = %e, "cannot unpin an XDP link");
            }
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot open an XDP link pin; removing it");
            let _ = fs::remove_file(path);
        }
    }
}

/// What a map is, as far as adopting it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MapShape {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl std::fmt::Display for MapShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type {} key {} value {} max_entries {} flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

/// The shapes of the pinned maps as the object `bytes` defines them.
pub(super) fn object_shapes(bytes: &[u8]) -> Result<Vec<(&'static str, MapShape)>, XdpError> {
    let obj = aya_obj::Object::parse(bytes).map_err(|e| XdpError::Load(Box::new(e.into())))?;
    PINNED_MAPS
        .into_iter()
        .map(|name| {
            let m = obj.maps.get(name).ok_or(XdpError::Map {
                name,
                source: aya::maps::MapError::InvalidName { name: name.into() },
            })?;
            Ok((
                name,
                MapShape {
                    map_type: m.map_type(),
                    key_size: m.key_size(),
                    value_size: m.value_size(),
                    max_entries: m.max_entries(),
                    flags: m.map_flags(),
                },
            ))
        })
        .collect()
}

/// The shape of the map pinned at `path`, from the kernel.
fn pinned_shape(path: &Path) -> Result<MapShape, String> {
    let info = MapInfo::from_pin(path).map_err(|e| e.to_string())?;
    Ok(MapShape {
        map_type: info.map_type().map_or(u32::MAX, |t| t as u32),
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    })
}

/// Whether the maps pinned in `dir` are the ones `expected` describes, every one of them; `Err` says
/// why not.
pub(super) fn adoptable(dir: &Path, expected: &[(&str, MapShape)]) -> Result<(), String> {
    for (name, want) in expected {
        let path = dir.join(name);
        if !path.exists() {
            return Err(format!("{name} is not pinned"));
        }
        let have = pinned_shape(&path).map_err(|e| format!("{name}: {e}"))?;
        if have != *want {
            return Err(format!("{name} is {have}, this program's is {want}"));
        }
    }
    Ok(())
}

/// Removes a directory of map pins and the directory.
pub(super) fn remove_maps(dir: &Path) -> Result<(), XdpError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        fs::remove_file(&path).map_err(|source| XdpError::Pin {
            what: "removing the pin",
            path,
            source,
        })?;
    }
    fs::remove_dir(dir).map_err(|source| XdpError::Pin {
        what: "removing",
        path: dir.to_path_buf(),
        source,
    })
}

/// Removes the map directories under `root` other than `keep` (other layouts', a staging directory an
/// interrupted start left), whose maps no attached program uses any more.
pub(super) fn remove_other_maps(root: &Path, keep: &Path) -> Result<(), XdpError> {
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != keep && entry.file_type().is_ok_and(|t| t.is_dir()) {
            info!(dir = %path.display(), "removing maps no program uses any more");
            remove_maps(&path)?;
        }
    }
    Ok(())
}

/// Creates `dir` empty, removing what an interrupted start left there.
pub(super) fn fresh_dir(dir: &Path) -> Result<(), XdpError> {
    remove_maps(dir)?;
    fs::create_dir_all(dir).map_err(|source| XdpError::Pin {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })
}

/// Moves the staged maps into place, replacing what `dir` held (maps the program no longer uses).
pub(super) fn promote(staging: &Path, dir: &Path) -> Result<(), XdpError> {
    remove_maps(dir)?;
    fs::rename(staging, dir).map_err(|source| XdpError::Pin {
        what: "renaming the fresh maps' directory to",
        path: dir.to_path_buf(),
        source,
    })
}

/// Removes everything pinned under `root`: links (which detaches them) and maps, then `root` itself
/// where it can (not where it is a mount point, as under the systemd unit).
pub fn remove_all(root: &Path) -> Result<(), XdpError> {
    for link in links(root) {
        unpin_link(&link);
    }
    remove_other_maps(root, Path::new(""))?;
    let _ = fs::remove_dir(root);
    Ok(())
}
