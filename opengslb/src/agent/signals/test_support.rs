//! Test fixtures shared by the signal tests: fake filesystem roots with a
//! cgroup v2 tree, and assertions on percentages.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::MetricSelector;

/// A throwaway directory standing in for `/`, removed on drop.
pub(super) struct FakeRoot {
    pub(super) path: PathBuf,
}

impl FakeRoot {
    pub(super) fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "opengslb-signals-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    pub(super) fn write(&self, relative: &str, contents: &str) {
        let path = self.path.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    pub(super) fn remove(&self, relative: &str) {
        fs::remove_file(self.path.join(relative)).unwrap();
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

pub(super) fn assert_close(actual: Option<f64>, expected: f64) {
    let actual = actual.unwrap_or_else(|| panic!("expected Some({expected}), got None"));
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected}, got {actual}"
    );
}

pub(super) fn selector(text: &str) -> MetricSelector {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) const POD: &str = "sys/fs/cgroup/kubepods/pod1";
pub(super) const CTR: &str = "sys/fs/cgroup/kubepods/pod1/ctr";

pub(super) fn pod_tree(tag: &str) -> FakeRoot {
    let root = FakeRoot::new(tag);
    root.write(
        "proc/self/cgroup",
        "12:memory:/legacy\n0::/kubepods/pod1/ctr\n",
    );
    root
}
