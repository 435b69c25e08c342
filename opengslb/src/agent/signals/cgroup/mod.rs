//! CPU and memory use as this process's cgroup sees them, read from cgroup v2
//! files with a fallback to host-wide figures from procfs.

mod cpu;
mod memory;

use std::fs;
use std::path::{Path, PathBuf};

pub use cpu::CpuSampler;
pub use memory::memory_percent;

pub(super) fn read_string(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Value of `key` in files made of `key value` lines (`cpu.stat`, `memory.stat`).
pub(super) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()? == key {
            fields.next()?.parse().ok()
        } else {
            None
        }
    })
}

/// Components of this process's cgroup v2 path, or `None` without cgroup v2.
pub(super) fn cgroup_v2_components(root: &Path) -> Option<Vec<String>> {
    let text = read_string(&root.join("proc/self/cgroup"))?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let mut components = Vec::new();
    for component in path.trim().split('/') {
        match component {
            "" | "." => {}
            // A process moved outside its cgroup namespace sees a path relative
            // to the namespace root, which does not exist under our mount.
            ".." => return None,
            other => components.push(other.to_owned()),
        }
    }
    Some(components)
}

/// Cgroup directories from the process's own cgroup up to the mount root.
///
/// The mount root is included because inside a cgroup namespace (the usual
/// container setup) the container's own limits live there and the process
/// path is just `/`.
pub(super) fn cgroup_chain(root: &Path, components: &[String]) -> Vec<PathBuf> {
    let base = root.join("sys/fs/cgroup");
    (0..=components.len())
        .rev()
        .map(|depth| {
            components
                .iter()
                .take(depth)
                .fold(base.clone(), |dir, component| dir.join(component))
        })
        .collect()
}
