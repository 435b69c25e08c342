//! Memory working set against the tightest `memory.max`, or host-wide from
//! `/proc/meminfo`.

use std::path::Path;

use super::{cgroup_chain, cgroup_v2_components, keyed_value, read_string};
use crate::agent::signals::clamp_percent;

/// Memory use in percent (`0..=100`) of what this process's cgroup may use.
///
/// The working set is cgroup v2 `memory.current` minus `inactive_file` (as
/// docker and the kubelet compute it, since inactive page cache is reclaimed
/// before an OOM kill), against the tightest `memory.max` of the cgroup and
/// its ancestors, capped at the host's `MemTotal`. Without any limit the
/// host-wide use from `/proc/meminfo` (`MemTotal` against `MemAvailable`) is
/// returned. `None` when the needed files cannot be read.
pub fn memory_percent(root: impl AsRef<Path>) -> Option<f64> {
    let root = root.as_ref();
    let host = read_meminfo(root);
    if let Some(components) = cgroup_v2_components(root) {
        let chain = cgroup_chain(root, &components);
        let limit = chain
            .iter()
            .filter_map(|dir| parse_memory_max(&read_string(&dir.join("memory.max"))?))
            .min();
        if let Some(limit) = limit {
            let leaf = chain.first()?;
            let current = read_string(&leaf.join("memory.current"))?
                .trim()
                .parse::<u64>()
                .ok()?;
            let inactive_file = read_string(&leaf.join("memory.stat"))
                .and_then(|stat| keyed_value(&stat, "inactive_file"))
                .unwrap_or(0);
            let working_set = current.saturating_sub(inactive_file);
            // A limit above the machine's memory is never the one that bites.
            let limit = host.map_or(limit, |(total, _)| limit.min(total));
            return percent_of(working_set, limit);
        }
    }
    let (total, available) = host?;
    percent_of(total.saturating_sub(available), total)
}

fn percent_of(part: u64, whole: u64) -> Option<f64> {
    if whole == 0 {
        return None;
    }
    clamp_percent(part as f64 / whole as f64 * 100.0)
}

/// `MemTotal` and `MemAvailable` in bytes.
fn read_meminfo(root: &Path) -> Option<(u64, u64)> {
    let text = read_string(&root.join("proc/meminfo"))?;
    let field = |key: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            let kib = rest.split_whitespace().next()?.parse::<u64>().ok()?;
            kib.checked_mul(1024)
        })
    };
    let total = field("MemTotal")?;
    if total == 0 {
        return None;
    }
    Some((total, field("MemAvailable")?))
}

/// Limit in bytes from a `memory.max` body; `None` when unlimited or unusable.
fn parse_memory_max(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    // A zero limit would make every percentage infinite; it is never a real
    // configuration for a process that is running, so it is ignored.
    text.parse::<u64>().ok().filter(|&limit| limit > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::signals::test_support::{CTR, FakeRoot, POD, assert_close, pod_tree};

    #[test]
    fn memory_subtracts_inactive_file_and_uses_parent_limit() {
        let root = pod_tree("mem-parent");
        root.write(&format!("{CTR}/memory.current"), "629145600\n");
        root.write(
            &format!("{CTR}/memory.stat"),
            "anon 400000000\nactive_file 1\ninactive_file 104857600\n",
        );
        root.write(&format!("{CTR}/memory.max"), "max\n");
        root.write(&format!("{POD}/memory.max"), "1073741824\n");
        // (600 MiB - 100 MiB) / 1 GiB
        assert_close(memory_percent(&root.path), 500.0 / 1024.0 * 100.0);
    }

    #[test]
    fn memory_child_limit_tighter_than_parent() {
        let root = pod_tree("mem-child");
        root.write(&format!("{CTR}/memory.current"), "300\n");
        root.write(&format!("{CTR}/memory.max"), "400\n");
        root.write(&format!("{POD}/memory.max"), "1000\n");
        assert_close(memory_percent(&root.path), 75.0);
    }

    #[test]
    fn memory_limit_capped_by_host_total() {
        let root = pod_tree("mem-host-cap");
        root.write(&format!("{CTR}/memory.current"), "512000\n");
        root.write(&format!("{CTR}/memory.max"), "999999999999\n");
        root.write("proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 900 kB\n");
        assert_close(memory_percent(&root.path), 50.0);
    }

    #[test]
    fn memory_inactive_file_above_current_gives_zero() {
        let root = pod_tree("mem-zero");
        root.write(&format!("{CTR}/memory.current"), "100\n");
        root.write(&format!("{CTR}/memory.stat"), "inactive_file 500\n");
        root.write(&format!("{CTR}/memory.max"), "1000\n");
        assert_close(memory_percent(&root.path), 0.0);
    }

    #[test]
    fn memory_without_limit_uses_meminfo() {
        let root = pod_tree("mem-meminfo");
        root.write(&format!("{CTR}/memory.current"), "100\n");
        root.write(&format!("{CTR}/memory.max"), "max\n");
        root.write(&format!("{POD}/memory.max"), "max\n");
        root.write(
            "proc/meminfo",
            "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    4000 kB\n",
        );
        assert_close(memory_percent(&root.path), 75.0);
    }

    #[test]
    fn memory_without_cgroup_v2_uses_meminfo() {
        let root = FakeRoot::new("mem-v1");
        root.write("proc/self/cgroup", "9:memory:/docker/abc\n");
        root.write("proc/meminfo", "MemTotal: 2000 kB\nMemAvailable: 1500 kB\n");
        assert_close(memory_percent(&root.path), 25.0);
    }

    #[test]
    fn memory_missing_files_give_none() {
        let root = pod_tree("mem-missing");
        root.write(&format!("{POD}/memory.max"), "1000\n");
        root.write("proc/meminfo", "MemTotal: 2000 kB\nMemAvailable: 1500 kB\n");
        // A limit exists but memory.current does not: host use would mislead.
        assert_eq!(memory_percent(&root.path), None);

        let empty = FakeRoot::new("mem-empty");
        assert_eq!(memory_percent(&empty.path), None);

        root.remove("proc/meminfo");
        root.remove(&format!("{POD}/memory.max"));
        assert_eq!(memory_percent(&root.path), None);
    }
}
