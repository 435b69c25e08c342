//! The machine a run measured on, read at its start.

use std::{fs, process::Command};

use serde_json::{Value, json};

/// CPU, cores, kernel, load and date.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    /// The 1, 5 and 15 minute load averages.
    pub load: String,
    /// UTC, ISO 8601.
    pub date: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let first_words = |path: &str, n: usize| {
            fs::read_to_string(path)
                .map(|s| s.split_whitespace().take(n).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: first_words("/proc/sys/kernel/osrelease", 1),
            load: first_words("/proc/loadavg", 3),
            date,
        }
    }

    pub fn json(&self) -> Value {
        json!({"cpu": self.cpu, "cores": self.cores, "kernel": self.kernel, "load_average": self.load,
               "date": self.date})
    }
}
