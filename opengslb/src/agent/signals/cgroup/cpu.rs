//! CPU use against the tightest `cpu.max` quota, or host-wide from `/proc/stat`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{cgroup_chain, cgroup_v2_components, keyed_value, read_string};
use crate::agent::signals::clamp_percent;

/// Samples CPU use as a percentage of the CPU this process's cgroup may use.
///
/// Uses cgroup v2 (`cpu.stat` against the tightest `cpu.max` of the cgroup
/// and its ancestors) and falls back to host-wide use from `/proc/stat` when
/// cgroup v2 is not available.
#[derive(Debug, Clone)]
pub struct CpuSampler {
    root: PathBuf,
    host_cpus: f64,
    baseline: Option<CpuBaseline>,
}

#[derive(Debug, Clone, Copy)]
enum CpuBaseline {
    Cgroup { usage_usec: u64, at: Instant },
    Host { busy: u64, total: u64 },
}

enum CpuReading {
    Cgroup {
        usage_usec: u64,
        allowed_cpus: Option<f64>,
    },
    Host {
        busy: u64,
        total: u64,
    },
}

impl CpuSampler {
    /// Creates a sampler reading files below `root` (`/` in production).
    ///
    /// `host_cpus` is the number of online CPUs; it applies when no cgroup
    /// limit is set and caps quotas larger than the machine.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>, host_cpus: f64) -> Self {
        Self {
            root: root.into(),
            host_cpus,
            baseline: None,
        }
    }

    /// Percent (`0..=100`) of the allowed CPU used since the previous sample.
    ///
    /// Returns `None` on the first sample, when the files cannot be read, when
    /// a counter went backwards or the source switched between cgroup and
    /// host (both restart the baseline), and when no time has passed.
    pub fn sample(&mut self, now: Instant) -> Option<f64> {
        match self.read()? {
            CpuReading::Cgroup {
                usage_usec,
                allowed_cpus,
            } => {
                let previous = self.baseline.replace(CpuBaseline::Cgroup {
                    usage_usec,
                    at: now,
                });
                let Some(CpuBaseline::Cgroup {
                    usage_usec: previous_usage,
                    at: previous_at,
                }) = previous
                else {
                    return None;
                };
                let used_usec = usage_usec.checked_sub(previous_usage)?;
                let elapsed_usec = now.checked_duration_since(previous_at)?.as_secs_f64() * 1e6;
                let capacity_usec = elapsed_usec * allowed_cpus?;
                if capacity_usec <= 0.0 {
                    return None;
                }
                clamp_percent(used_usec as f64 / capacity_usec * 100.0)
            }
            CpuReading::Host { busy, total } => {
                let previous = self.baseline.replace(CpuBaseline::Host { busy, total });
                let Some(CpuBaseline::Host {
                    busy: previous_busy,
                    total: previous_total,
                }) = previous
                else {
                    return None;
                };
                let busy_delta = busy.checked_sub(previous_busy)?;
                let total_delta = total.checked_sub(previous_total)?;
                if total_delta == 0 {
                    return None;
                }
                clamp_percent(busy_delta as f64 / total_delta as f64 * 100.0)
            }
        }
    }

    fn read(&self) -> Option<CpuReading> {
        if let Some(reading) = self.read_cgroup() {
            return Some(reading);
        }
        let (busy, total) = read_proc_stat(&self.root)?;
        Some(CpuReading::Host { busy, total })
    }

    fn read_cgroup(&self) -> Option<CpuReading> {
        let components = cgroup_v2_components(&self.root)?;
        let chain = cgroup_chain(&self.root, &components);
        let leaf = chain.first()?;
        let usage_usec = keyed_value(&read_string(&leaf.join("cpu.stat"))?, "usage_usec")?;
        // Limits are re-read on every sample because they can be resized live.
        let limit = chain
            .iter()
            .filter_map(|dir| parse_cpu_max(&read_string(&dir.join("cpu.max"))?))
            .reduce(f64::min);
        let host = (self.host_cpus.is_finite() && self.host_cpus > 0.0).then_some(self.host_cpus);
        // A quota above the machine's size cannot be used in full.
        let allowed_cpus = match (limit, host) {
            (Some(limit), Some(host)) => Some(limit.min(host)),
            (Some(limit), None) => Some(limit),
            (None, host) => host,
        };
        Some(CpuReading::Cgroup {
            usage_usec,
            allowed_cpus,
        })
    }
}

/// Busy and total jiffies from the aggregate line of `/proc/stat`.
fn read_proc_stat(root: &Path) -> Option<(u64, u64)> {
    let text = read_string(&root.join("proc/stat"))?;
    let mut fields = text.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // Only user..steal: guest and guest_nice are already counted in user and
    // nice, so adding them would count guest time twice.
    let values = fields
        .take(8)
        .map(|field| field.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    let idle = values.get(3)?;
    let iowait = values.get(4).copied().unwrap_or(0);
    let total = values.iter().try_fold(0u64, |sum, &v| sum.checked_add(v))?;
    let busy = total.saturating_sub(idle.saturating_add(iowait));
    Some((busy, total))
}

/// Allowed CPUs from a `cpu.max` body; `None` when unlimited or unreadable.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    if quota == "max" {
        return None;
    }
    let quota = quota.parse::<u64>().ok()?;
    // The kernel accepts a bare quota on write and keeps the default period.
    let period = match fields.next() {
        Some(period) => period.parse::<u64>().ok()?,
        None => 100_000,
    };
    if period == 0 {
        return None;
    }
    Some(quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::signals::test_support::{CTR, FakeRoot, POD, assert_close, pod_tree, secs};

    fn cpu_stat(root: &FakeRoot, usage_usec: u64) {
        root.write(
            &format!("{CTR}/cpu.stat"),
            &format!("usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 2\n"),
        );
    }

    /// Two samples one second apart with `used_usec` of CPU in between.
    fn cpu_after_one_second(root: &FakeRoot, host_cpus: f64, used_usec: u64) -> Option<f64> {
        let mut sampler = CpuSampler::new(&root.path, host_cpus);
        let t0 = Instant::now();
        cpu_stat(root, 5_000_000);
        assert_eq!(sampler.sample(t0), None, "first sample has no baseline");
        cpu_stat(root, 5_000_000 + used_usec);
        sampler.sample(t0 + secs(1))
    }

    #[test]
    fn cpu_parent_limit_tighter_than_child() {
        let root = pod_tree("cpu-parent");
        root.write(&format!("{CTR}/cpu.max"), "max 100000\n");
        root.write(&format!("{POD}/cpu.max"), "50000 100000\n");
        // 0.25 CPU-seconds in 1 s against 0.5 allowed CPUs.
        assert_close(cpu_after_one_second(&root, 4.0, 250_000), 50.0);
    }

    #[test]
    fn cpu_child_limit_tighter_than_parent() {
        let root = pod_tree("cpu-child");
        root.write(&format!("{CTR}/cpu.max"), "10000 50000\n");
        root.write(&format!("{POD}/cpu.max"), "100000 100000\n");
        assert_close(cpu_after_one_second(&root, 4.0, 100_000), 50.0);
    }

    #[test]
    fn cpu_limit_at_mount_root_applies_inside_cgroup_namespace() {
        let root = FakeRoot::new("cpu-ns");
        root.write("proc/self/cgroup", "0::/\n");
        root.write("sys/fs/cgroup/cpu.stat", "usage_usec 1000\n");
        root.write("sys/fs/cgroup/cpu.max", "200000 100000\n");
        let mut sampler = CpuSampler::new(&root.path, 8.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        root.write("sys/fs/cgroup/cpu.stat", "usage_usec 1001000\n");
        assert_close(sampler.sample(t0 + secs(2)), 25.0);
    }

    #[test]
    fn cpu_without_limit_uses_host_cpus() {
        let root = pod_tree("cpu-max");
        root.write(&format!("{CTR}/cpu.max"), "max 100000\n");
        root.write(&format!("{POD}/cpu.max"), "max 100000\n");
        assert_close(cpu_after_one_second(&root, 4.0, 1_000_000), 25.0);
    }

    #[test]
    fn cpu_quota_above_host_is_capped_by_host() {
        let root = pod_tree("cpu-big");
        root.write(&format!("{CTR}/cpu.max"), "800000 100000\n");
        assert_close(cpu_after_one_second(&root, 2.0, 1_000_000), 50.0);
    }

    #[test]
    fn cpu_is_clamped_to_100() {
        let root = pod_tree("cpu-clamp");
        root.write(&format!("{CTR}/cpu.max"), "10000 100000\n");
        assert_close(cpu_after_one_second(&root, 4.0, 900_000), 100.0);
    }

    #[test]
    fn cpu_counter_going_backwards_restarts_baseline() {
        let root = pod_tree("cpu-reset");
        let mut sampler = CpuSampler::new(&root.path, 1.0);
        let t0 = Instant::now();
        cpu_stat(&root, 5_000_000);
        assert_eq!(sampler.sample(t0), None);
        cpu_stat(&root, 1_000_000);
        assert_eq!(sampler.sample(t0 + secs(1)), None);
        cpu_stat(&root, 1_500_000);
        assert_close(sampler.sample(t0 + secs(2)), 50.0);
    }

    #[test]
    fn cpu_missing_files_give_none() {
        let root = FakeRoot::new("cpu-missing");
        let mut sampler = CpuSampler::new(&root.path, 4.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        assert_eq!(sampler.sample(t0 + secs(1)), None);

        // cgroup v2 path known but no cpu.stat and no /proc/stat either.
        let root = pod_tree("cpu-missing-stat");
        let mut sampler = CpuSampler::new(&root.path, 4.0);
        assert_eq!(sampler.sample(t0), None);
        assert_eq!(sampler.sample(t0 + secs(1)), None);
    }

    #[test]
    fn cpu_falls_back_to_proc_stat_without_cgroup_v2() {
        let root = FakeRoot::new("cpu-host");
        root.write("proc/self/cgroup", "4:cpu,cpuacct:/docker/abc\n");
        // user nice system idle iowait irq softirq steal guest guest_nice
        root.write(
            "proc/stat",
            "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 100 0 100 700 100 0 0 0 0 0\n",
        );
        let mut sampler = CpuSampler::new(&root.path, 1.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        // +200 busy (user/system), +600 idle, +200 iowait; guest grows by 500
        // but is already part of user, so it must not count again.
        root.write("proc/stat", "cpu  200 0 200 1300 300 0 0 0 500 0\n");
        assert_close(sampler.sample(t0 + secs(1)), 20.0);
    }

    #[test]
    fn cpu_falls_back_when_cgroup_v2_lacks_cpu_stat() {
        let root = pod_tree("cpu-host2");
        root.write("proc/stat", "cpu  0 0 0 100 0 0 0 0\n");
        let mut sampler = CpuSampler::new(&root.path, 1.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        root.write("proc/stat", "cpu  30 0 20 150 0 0 0 0\n");
        assert_close(sampler.sample(t0 + secs(1)), 50.0);
    }

    #[test]
    fn cpu_unresolvable_namespace_path_uses_host() {
        let root = FakeRoot::new("cpu-dotdot");
        root.write("proc/self/cgroup", "0::/../../other\n");
        root.write("sys/fs/cgroup/cpu.stat", "usage_usec 0\n");
        root.write("sys/fs/cgroup/other/cpu.stat", "usage_usec 0\n");
        root.write("proc/stat", "cpu  0 0 0 100 0 0 0 0\n");
        let mut sampler = CpuSampler::new(&root.path, 1.0);
        let t0 = Instant::now();
        assert_eq!(sampler.sample(t0), None);
        root.write("sys/fs/cgroup/cpu.stat", "usage_usec 1000000\n");
        root.write("sys/fs/cgroup/other/cpu.stat", "usage_usec 1000000\n");
        root.write("proc/stat", "cpu  10 0 0 190 0 0 0 0\n");
        assert_close(sampler.sample(t0 + secs(1)), 10.0);
    }
}
