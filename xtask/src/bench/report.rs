//! docs/benchmarks.md and the `--json` object, from one run's figures.

use std::{fmt::Write as _, time::Duration};

use serde_json::{Map, Value, json};

use super::goals::Goal;
use super::lab::{CLIENT_IP, NICE, SERVER_IP};
use super::load::{NAME, PERCENTILES};
use super::machine::Machine;
use super::servers;
use super::traffic::{Measured, Plan};

/// Install, build and measuring times, printed apart.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub install: Duration,
    pub build: Duration,
    pub measure: Duration,
}

/// Everything one run found.
pub struct Run {
    pub machine: Machine,
    pub timings: Timings,
    pub plan: Plan,
    pub smoke: bool,
    pub measured: Vec<Measured>,
    pub traffic_goals: Vec<Goal>,
    /// Bench targets' sections, by target name.
    pub sections: Vec<(String, Value)>,
    /// Plots written, as paths relative to the report (`bench/answered.svg`).
    pub plots: Vec<(&'static str, String)>,
}

impl Run {
    /// Every goal: the traffic ones, then each section's.
    pub fn goals(&self) -> Vec<Goal> {
        let mut all = self.traffic_goals.clone();
        for (_, s) in &self.sections {
            all.extend(
                s["goals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(Goal::from_json),
            );
        }
        all
    }

    pub fn json(&self) -> Value {
        let servers: Map<String, Value> = self
            .measured
            .iter()
            .map(|m| (m.server.key.to_owned(), m.json()))
            .collect();
        let sections: Map<String, Value> = self.sections.iter().cloned().collect();
        json!({
            "smoke": self.smoke,
            "machine": self.machine.json(),
            "timings_s": {
                "install": self.timings.install.as_secs_f64(),
                "build": self.timings.build.as_secs_f64(),
                "measure": self.timings.measure.as_secs_f64(),
            },
            "plan": self.plan.json(),
            "servers": servers,
            "goals": self.goals().iter().map(Goal::json).collect::<Vec<_>>(),
            "sections": sections,
        })
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let t = &self.timings;
        let m = &self.machine;
        let _ = writeln!(
            md,
            "# Benchmarks\n\n\
             Written by `cargo xtask bench` (as root), plots included; rerun it to measure this machine and \
             rewrite this page (`--json` prints every figure as one JSON object, `--smoke` checks the bench \
             in seconds without touching this page, `--only soak` runs one part, printing its section \
             without touching this page either, and `--soak-minutes N` sets the soak's length). This run measured for {:.0} s (install {:.0} s and \
             build {:.0} s apart). Absolute figures vary about 2× between machines of this kind and with \
             their load: compare within one run, as the ratios below do.\n",
            t.measure.as_secs_f64(),
            t.install.as_secs_f64(),
            t.build.as_secs_f64()
        );
        if self.smoke {
            md.push_str(
                "**This is a smoke run** (tiny rates, seconds): its figures mean nothing.\n\n",
            );
        }
        let _ = writeln!(
            md,
            "## Machine\n\n| CPU | cores | kernel | load average at start (1, 5, 15 min) | date |\n\
             |---|---|---|---|---|\n| {} | {} | {} | {} | {} |\n",
            m.cpu, m.cores, m.kernel, m.load, m.date
        );
        let load1: f64 = m
            .load
            .split_whitespace()
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0.0);
        if load1 >= 1.0 {
            let _ = writeln!(
                md,
                "Other work was running when this run started (load average {load1} on {} cores): it shares \
                 the cores with the servers and generators, and the figures carry its noise.\n",
                m.cores
            );
        }

        md.push_str("## Goals\n\n| goal | target | measured | result |\n|---|---|---|---|\n");
        for g in self.goals() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                g.name,
                g.target,
                g.value,
                g.verdict()
            );
        }
        md.push('\n');

        self.setup(&mut md);
        self.throughput(&mut md);
        self.under_load(&mut md);
        self.latency(&mut md);
        for (name, s) in &self.sections {
            let _ = writeln!(
                md,
                "## {}\n\n(bench target `{name}`: `cargo bench -p opengslb --bench {name}`)\n",
                s["section"].as_str().unwrap_or(name)
            );
            md.push_str(s["markdown"].as_str().unwrap_or("").trim_end());
            md.push_str("\n\n");
            if let Some((_, plot)) = self.plots.iter().find(|(k, _)| *k == "cost")
                && name == "xdp_cost"
            {
                let _ = writeln!(
                    md,
                    "![ns per packet by query kind, next to the floor]({plot})\n"
                );
            }
        }
        md
    }

    fn setup(&self, md: &mut String) {
        let p = &self.plan;
        let _ = writeln!(
            md,
            "## Setup\n\n\
             Two network namespaces made by the bench, joined by one veth pair with one queue each way; \
             server {SERVER_IP} (pinned to CPU 0), client {CLIENT_IP} (generators pinned to CPU 1). Servers \
             and generators run at nice {NICE}, so that other work on a shared machine disturbs them less. \
             `net.core.rmem_default` is {} MiB while they run (the old value is restored after), so every \
             server's UDP sockets get the receive buffer an operator would give them, not the kernel's 208 KiB, \
             which a pause of a few ms overflows at these rates. Every \
             server serves the same answer: `{NAME} A`, three A records ({}), TTL 60, asked without EDNS; \
             one `kdig` checks it before each server is measured, and the run fails if it is wrong. Servers:\n",
            super::xdp::RMEM_DEFAULT >> 20,
            servers::RECORDS.join(", ")
        );
        md.push_str(
            "| server | command (`{dir}`: the run's temp directory; without `ip netns exec`, the bench \
             enters the namespace with setns and pins the process to CPU 0 itself) |\n|---|---|\n",
        );
        for s in servers::SERVERS {
            let _ = writeln!(md, "| {} | `{}` |", s.label, s.command_line());
        }
        let _ = writeln!(
            md,
            "\nOur config (`dns.xdp` left out for the userspace run):\n\n```yaml\n{}```\n\n\
             Knot's (`xdp:` only in XDP mode; its zone has the same three A records):\n\n```yaml\n{}```\n",
            servers::ours_config(
                Some("driver"),
                "<server veth>",
                std::path::Path::new("{dir}/ours_xdp_driver-data")
            ),
            servers::knot_config(
                true,
                "<server veth>",
                std::path::Path::new("{dir}"),
                "knot_xdp"
            )
        );
        let _ = writeln!(
            md,
            "The loads, from the client namespace:\n\n```sh\n\
             # throughput: each rate for {secs} s ({rates})\n\
             ip netns exec <client ns> kxdpgun -t {secs} -Q <rate> -F 1 -i queries.txt -I <client veth> -l {CLIENT_IP} -L <client MAC> -R <server MAC> {SERVER_IP}\n\
             ip link set dev <client veth> xdp off    # kxdpgun leaves its program attached\n\
             # cost under load: one kxdpgun run at {fr} qps for {fs} s, with\n\
             sysctl -w kernel.bpf_stats_enabled=1     # the old value is restored after\n\
             bpftool prog show id <server-side XDP program> -j   # run_time_ns, run_cnt before and after\n\
             cat /proc/<server pid>/stat              # utime + stime before and after\n\
             # latency, with a native XDP_PASS program on the client veth (XDP_TX into a veth is delivered only then)\n\
             ip netns exec <client ns> taskset -c 1 dnsperf -s {SERVER_IP} -d queries.txt -l {ls} -Q {lq} -c 1 -v\n```\n\n\
             `queries.txt` holds `{NAME}. A` (kxdpgun) or `{NAME} A` (dnsperf).\n",
            secs = p.secs,
            rates = p
                .rates
                .iter()
                .map(|r| format!("{}k", r / 1000))
                .collect::<Vec<_>>()
                .join(", "),
            fr = p.fixed_rate,
            fs = p.fixed_secs,
            ls = p.latency_secs,
            lq = p.latency_qps,
        );
        let skipped: Vec<String> = self
            .measured
            .iter()
            .filter_map(|m| Some(format!("{}: {}", m.server.label, m.skipped.as_ref()?)))
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(md, "Not measured in this run: {}.\n", skipped.join("; "));
        }
    }

    fn measured_servers(&self) -> impl Iterator<Item = &Measured> {
        self.measured.iter().filter(|m| m.skipped.is_none())
    }

    fn throughput(&self, md: &mut String) {
        let servers: Vec<&Measured> = self.measured_servers().collect();
        md.push_str("## Throughput\n\nAnswered (NOERROR replies / queries sent) at each offered rate:\n\n| offered qps |");
        for m in &servers {
            let _ = write!(md, " {} |", m.server.label);
        }
        md.push_str("\n|---:|");
        md.push_str(&"---:|".repeat(servers.len()));
        md.push('\n');
        for (i, rate) in self.plan.rates.iter().enumerate() {
            let _ = write!(md, "| {rate} |");
            for m in &servers {
                match m.steps.get(i) {
                    Some(s) if s.sent_fraction() < 0.99 => {
                        let _ = write!(
                            md,
                            " {:.1} % (sent {:.0} %) |",
                            s.answered_fraction() * 100.0,
                            s.sent_fraction() * 100.0
                        );
                    }
                    Some(s) => {
                        let _ = write!(md, " {:.1} % |", s.answered_fraction() * 100.0);
                    }
                    None => md.push_str(" – |"),
                }
            }
            md.push('\n');
        }
        md.push_str(
            "\n\"sent\": where kxdpgun sent less than asked, the share it sent.\n\n\
             \"Best rate\": the answers per second at the highest offered rate with ≥99 % answered. \"Limited \
             by the generator\": the server answered ≥99 % at the top rate, or at a rate kxdpgun could not \
             send in full.\n\n\
             | server | best rate with ≥99 % answered (answers/s) | at offered | limited by |\n|---|---:|---:|---|\n",
        );
        for m in &servers {
            let (rate, offered) = m.best().map_or(("–".into(), "–".into()), |s| {
                (format!("{:.0}", s.answered_rate()), s.offered.to_string())
            });
            let limit = if m.generator_limited() {
                "the generator (the server answered all it was sent)"
            } else {
                "the server"
            };
            let _ = writeln!(md, "| {} | {rate} | {offered} | {limit} |", m.server.label);
        }
        if let Some((_, plot)) = self.plots.iter().find(|(k, _)| *k == "answered") {
            let _ = writeln!(md, "\n![answered fraction against offered rate]({plot})");
        }
        md.push('\n');
    }

    fn under_load(&self, md: &mut String) {
        let p = &self.plan;
        let _ = writeln!(
            md,
            "## Cost per query under load\n\n\
             One kxdpgun run at {} qps for {} s per server with `kernel.bpf_stats_enabled=1`. \"XDP program\": \
             the server-side XDP programs' run time / run count (ours; Knot's own program in XDP mode; not \
             kxdpgun's on the client). \"CPU per answer\": (the server process's utime + stime + the XDP \
             programs' run time) / NOERROR answers. On a veth the receiving program runs on the sender's \
             core, which is why its time is added from `bpf_stats`; kernel time spent outside the server \
             process and the program (the veth's own softirq work) is not counted for any server.\n\n\
             | server | answered | XDP program, ns/packet | process CPU, ms | XDP programs, ms | CPU per answer, ns |\n\
             |---|---:|---:|---:|---:|---:|",
            p.fixed_rate, p.fixed_secs
        );
        for m in self.measured_servers() {
            let Some(f) = m.fixed else { continue };
            let _ = writeln!(
                md,
                "| {} | {} of {} | {} | {:.0} | {} | {} |",
                m.server.label,
                f.step.answered,
                f.step.sent,
                f.xdp_ns_per_packet()
                    .map_or("–".into(), |n| format!("{n:.0}")),
                f.process_cpu_ns as f64 / 1e6,
                f.xdp.map_or("–".into(), |s| format!(
                    "{:.0}",
                    s.run_time_ns as f64 / 1e6
                )),
                f.cpu_ns_per_answer()
                    .map_or("–".into(), |n| format!("{n:.0}")),
            );
        }
        md.push('\n');
    }

    fn latency(&self, md: &mut String) {
        let p = &self.plan;
        let _ = write!(
            md,
            "## Latency\n\ndnsperf at {} qps for {} s, one client, pinned to CPU 1; percentiles from its \
             per-query report (`-v`, µs resolution). µs:\n\n\
             | server | average | ",
            p.latency_qps, p.latency_secs
        );
        for q in PERCENTILES {
            let _ = write!(md, "p{q} | ");
        }
        md.push_str("min | max | std dev | completed |\n|---|");
        md.push_str(&"---:|".repeat(PERCENTILES.len() + 5));
        md.push('\n');
        for m in self.measured_servers() {
            let Some(l) = &m.latency else { continue };
            let _ = write!(md, "| {} | {:.1} |", m.server.label, l.avg * 1e6);
            for v in l.percentiles {
                let _ = write!(md, " {:.0} |", v * 1e6);
            }
            let _ = writeln!(
                md,
                " {:.0} | {:.0} | {:.1} | {} of {} |",
                l.min * 1e6,
                l.max * 1e6,
                l.stddev * 1e6,
                l.completed,
                l.sent
            );
        }
        md.push('\n');
    }
}

/// One line per goal, for the terminal.
pub fn summary(goals: &[Goal]) -> String {
    goals
        .iter()
        .map(|g| {
            format!(
                "  {}: {} (target {}): {}",
                g.name,
                g.value,
                g.target,
                g.verdict()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
