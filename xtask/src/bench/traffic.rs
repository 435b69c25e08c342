//! The traffic runs, server after server on one lab: throughput at rising rates, one fixed-rate run
//! with `bpf_stats` on (ns per packet of the server's XDP programs, CPU per answered query), and
//! dnsperf's latency.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::lab::Lab;
use super::load::{self, Latency, Step};
use super::servers::{self, Kind, Programs, SERVERS, Server};
use super::xdp::{self, RunStats, Sysctl};

/// The rates and durations of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// kxdpgun's rates, rising, qps.
    pub rates: Vec<u64>,
    /// Seconds per rate.
    pub secs: u64,
    /// The fixed-rate run's rate and seconds.
    pub fixed_rate: u64,
    pub fixed_secs: u64,
    /// dnsperf's rate and seconds.
    pub latency_qps: u64,
    pub latency_secs: u64,
}

impl Plan {
    pub fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                rates: vec![1_000, 2_000],
                secs: 1,
                fixed_rate: 2_000,
                fixed_secs: 1,
                latency_qps: 1_000,
                latency_secs: 1,
            }
        } else {
            Self {
                rates: vec![
                    25_000, 50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000,
                ],
                secs: 5,
                // A rate every server answers (almost) fully on a machine of this kind, so that CPU per
                // answer is not skewed by queries a saturated server drops.
                fixed_rate: 50_000,
                fixed_secs: 5,
                latency_qps: 20_000,
                latency_secs: 5,
            }
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "rates": self.rates, "secs_per_rate": self.secs,
            "fixed_rate": self.fixed_rate, "fixed_secs": self.fixed_secs,
            "latency_qps": self.latency_qps, "latency_secs": self.latency_secs,
        })
    }
}

/// The fixed-rate run.
#[derive(Clone, Copy, Debug)]
pub struct Fixed {
    pub step: Step,
    /// The server process's utime + stime over the run, ns.
    pub process_cpu_ns: u64,
    /// The server-side XDP programs' `bpf_stats` over the run (none without XDP).
    pub xdp: Option<RunStats>,
}

impl Fixed {
    /// ns per packet of the server's XDP programs.
    pub fn xdp_ns_per_packet(&self) -> Option<f64> {
        self.xdp
            .filter(|s| s.run_cnt > 0)
            .map(|s| s.run_time_ns as f64 / s.run_cnt as f64)
    }
    /// (process CPU + XDP run time) / answers, ns.
    pub fn cpu_ns_per_answer(&self) -> Option<f64> {
        let total = self.process_cpu_ns + self.xdp.map_or(0, |s| s.run_time_ns);
        (self.step.answered > 0).then(|| total as f64 / self.step.answered as f64)
    }
}

/// What one server measured.
#[derive(Clone, Debug)]
pub struct Measured {
    pub server: Server,
    /// Why it was not measured, when it was not.
    pub skipped: Option<String>,
    pub steps: Vec<Step>,
    pub fixed: Option<Fixed>,
    pub latency: Option<Latency>,
}

/// A step counts as answered at ≥ this fraction.
pub const ANSWERED: f64 = 0.99;

impl Measured {
    /// The highest step with ≥99 % answered (a dip at a lower rate, from a busy machine, does not
    /// hide it).
    pub fn best(&self) -> Option<&Step> {
        self.steps
            .iter()
            .rfind(|s| s.answered_fraction() >= ANSWERED)
    }

    /// Whether the generator, not the server, was the limit: it answered ≥99 % at the top rate, or
    /// kxdpgun sent less than asked at a rate the server kept up with.
    pub fn generator_limited(&self) -> bool {
        let all = !self.steps.is_empty() && self.best() == self.steps.last();
        all || self
            .steps
            .iter()
            .any(|s| s.sent_fraction() < ANSWERED && s.answered_fraction() >= ANSWERED)
    }

    pub fn json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                json!({
                    "offered": s.offered, "secs": s.secs, "sent": s.sent, "answered": s.answered,
                    "answered_fraction": s.answered_fraction(), "sent_fraction": s.sent_fraction(),
                })
            })
            .collect();
        let fixed = self.fixed.map(|f| {
            json!({
                "rate": f.step.offered, "secs": f.step.secs, "sent": f.step.sent,
                "answered": f.step.answered, "process_cpu_ns": f.process_cpu_ns,
                "xdp_run_time_ns": f.xdp.map(|s| s.run_time_ns), "xdp_run_cnt": f.xdp.map(|s| s.run_cnt),
                "xdp_ns_per_packet": f.xdp_ns_per_packet(), "cpu_ns_per_answer": f.cpu_ns_per_answer(),
            })
        });
        let latency = self.latency.as_ref().map(|l| {
            json!({
                "sent": l.sent, "completed": l.completed,
                "avg_us": l.avg * 1e6, "min_us": l.min * 1e6, "max_us": l.max * 1e6,
                "stddev_us": l.stddev * 1e6,
                "p50_us": l.percentiles[0] * 1e6, "p90_us": l.percentiles[1] * 1e6,
                "p99_us": l.percentiles[2] * 1e6, "p99_9_us": l.percentiles[3] * 1e6,
            })
        });
        json!({
            "label": self.server.label,
            "skipped": self.skipped,
            "steps": steps,
            "best_rate_99": self.best().map(Step::answered_rate),
            "best_offered_99": self.best().map(|s| s.offered),
            "generator_limited": self.generator_limited(),
            "fixed": fixed,
            "latency": latency,
        })
    }
}

/// Runs every server in turn; the lab, the servers and the stats setting are cleaned up whatever
/// happens.
pub fn run(plan: &Plan, programs: &Programs, dir: &Path, bpffs: &Path) -> Result<Vec<Measured>> {
    let lab = Lab::create(&std::env::temp_dir(), Path::new("/sys/fs/bpf"))?;
    let _buffers = Sysctl::rmem_default()?;
    let mut all = Vec::new();
    for server in SERVERS {
        if server.kind == Kind::Floor && programs.xdp_cost.is_none() {
            all.push(Measured {
                server,
                skipped: Some("no `xdp_cost` bench target to attach the floor program".to_owned()),
                steps: Vec::new(),
                fixed: None,
                latency: None,
            });
            continue;
        }
        eprintln!("bench: {}", server.label);
        all.push(measure(&server, &lab, plan, programs, dir, bpffs)?);
    }
    Ok(all)
}

fn measure(
    server: &Server,
    lab: &Lab,
    plan: &Plan,
    programs: &Programs,
    dir: &Path,
    bpffs: &Path,
) -> Result<Measured> {
    let running = servers::start(server, lab, programs, dir, bpffs)?;
    let mut steps = Vec::new();
    for &rate in &plan.rates {
        let s = load::kxdpgun(lab, dir, rate, plan.secs)?;
        eprintln!(
            "bench:   {rate:>7} qps offered: sent {:.1} %, answered {:.2} %",
            s.sent_fraction() * 100.0,
            s.answered_fraction() * 100.0
        );
        steps.push(s);
    }

    let pid = running.pid().context("the server exited")?;
    let progs = if server.xdp() {
        xdp::attached(&lab.server_ns, &lab.server_if)?
    } else {
        Vec::new()
    };
    let stats = Sysctl::bpf_stats()?;
    let (cpu0, run0) = (process_cpu_ns(pid)?, xdp::total_stats(&progs)?);
    let step = load::kxdpgun(lab, dir, plan.fixed_rate, plan.fixed_secs)?;
    let (cpu1, run1) = (process_cpu_ns(pid)?, xdp::total_stats(&progs)?);
    drop(stats);
    let fixed = Fixed {
        step,
        process_cpu_ns: cpu1.saturating_sub(cpu0),
        xdp: (!progs.is_empty()).then(|| run1.since(run0)),
    };
    eprintln!(
        "bench:   fixed {} qps: XDP {} ns/packet, {} ns CPU per answer",
        plan.fixed_rate,
        fixed
            .xdp_ns_per_packet()
            .map_or("-".into(), |n| format!("{n:.0}")),
        fixed
            .cpu_ns_per_answer()
            .map_or("-".into(), |n| format!("{n:.0}")),
    );

    let latency = if server.latency {
        // dnsperf's replies from XDP_TX reach its socket only with a native program on its veth.
        let _pass = xdp::PassProgram::attach(lab, &lab.client_if)?;
        let l = load::dnsperf(lab, dir, plan.latency_qps, plan.latency_secs)?;
        eprintln!(
            "bench:   dnsperf {} qps: average {:.1} µs, p99 {:.1} µs",
            plan.latency_qps,
            l.avg * 1e6,
            l.percentiles[2] * 1e6
        );
        Some(l)
    } else {
        None
    };
    drop(running);
    Ok(Measured {
        server: *server,
        skipped: None,
        steps,
        fixed: Some(fixed),
        latency,
    })
}

/// utime + stime of process `pid` (all its threads, those that ended included), ns.
fn process_cpu_ns(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("/proc/{pid}/stat: {stat}"))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1_000_000_000 / hz)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line; the command name may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// How long a run of `plan` takes at least, for the report.
pub fn min_duration(plan: &Plan, servers: usize) -> Duration {
    let per = plan.rates.len() as u64 * plan.secs + plan.fixed_secs + plan.latency_secs;
    Duration::from_secs(per * servers as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(steps: &[(u64, u64, u64)]) -> Measured {
        Measured {
            server: SERVERS[0],
            skipped: None,
            steps: steps
                .iter()
                .map(|&(offered, sent, answered)| Step {
                    offered,
                    secs: 1,
                    sent,
                    answered,
                })
                .collect(),
            fixed: None,
            latency: None,
        }
    }

    #[test]
    fn the_best_rate_is_the_highest_answered_step() {
        let m = measured(&[
            (100, 100, 100),
            (200, 200, 199),
            (300, 300, 150),
            (400, 400, 100),
        ]);
        assert_eq!(m.best().map(|s| s.offered), Some(200));
        assert!(!m.generator_limited());
        let dip = measured(&[(100, 100, 98), (200, 200, 200), (300, 300, 150)]);
        assert_eq!(dip.best().map(|s| s.offered), Some(200));
        let all = measured(&[(100, 100, 100), (200, 200, 200)]);
        assert_eq!(all.best().map(|s| s.offered), Some(200));
        assert!(all.generator_limited(), "answered at the top rate");
        let short = measured(&[(100, 100, 100), (200, 150, 150), (300, 160, 100)]);
        assert!(
            short.generator_limited(),
            "sent less than asked and answered all of it"
        );
        assert!(measured(&[(100, 100, 10)]).best().is_none());
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 4 0 1 2 3";
        assert_eq!(cpu_ticks(stat), Some(280));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn cost_per_answer_adds_the_program_time() {
        let f = Fixed {
            step: Step {
                offered: 10,
                secs: 1,
                sent: 10,
                answered: 10,
            },
            process_cpu_ns: 1000,
            xdp: Some(RunStats {
                run_time_ns: 500,
                run_cnt: 10,
            }),
        };
        assert_eq!(f.xdp_ns_per_packet(), Some(50.0));
        assert_eq!(f.cpu_ns_per_answer(), Some(150.0));
    }
}
