//! The load generators, run in the client's namespace pinned to CPU 1, and what their output says:
//! kxdpgun (AF_XDP, for throughput and fixed-rate runs) and dnsperf (sockets, for latency).

use std::{
    fs::{self, File},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::lab::{CLIENT_IP, Lab, SERVER_IP};
use super::xdp;
use crate::demo::netns::stop;

/// The one question every server is asked (kxdpgun's and dnsperf's query files).
pub const NAME: &str = "www.bench.test";

/// Runs `cmd` with stdout and stderr to files under `dir` (dnsperf -v writes a line per query), for at
/// most `limit`, then kills it; its stdout, or an error with its stderr if it failed.
fn run_bounded(cmd: &mut Command, dir: &Path, tag: &str, limit: Duration) -> Result<String> {
    let line = xtask::command_line(cmd);
    let (out_path, err_path) = (
        dir.join(format!("{tag}.out")),
        dir.join(format!("{tag}.err")),
    );
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let status = wait_bounded(&mut child, &line, limit)?;
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        bail!(
            "`{line}` failed ({status}): {}{}",
            stdout.trim(),
            stderr.trim()
        );
    }
    Ok(stdout)
}

/// Waits for `child` (started as `line`) for at most `limit`, or until Ctrl-C: then SIGTERM, so it can
/// remove what it made, and SIGKILL 5 s later.
pub fn wait_bounded(child: &mut Child, line: &str, limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() >= deadline || stop::requested() {
            // SAFETY: kill on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let grace = Instant::now() + Duration::from_secs(5);
            while Instant::now() < grace && child.try_wait()?.is_none() {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            stop::check()?;
            bail!("`{line}` still ran after {limit:?}: stopped");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// What one kxdpgun run counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The rate asked for, queries per second.
    pub offered: u64,
    /// Seconds it ran.
    pub secs: u64,
    /// Queries it sent.
    pub sent: u64,
    /// Replies with NOERROR.
    pub answered: u64,
}

impl Step {
    /// Answered / sent (0 when nothing was sent).
    pub fn answered_fraction(&self) -> f64 {
        ratio(self.answered, self.sent)
    }
    /// Sent / offered: below 0.99, the generator could not send the rate asked for.
    pub fn sent_fraction(&self) -> f64 {
        ratio(self.sent, self.offered * self.secs)
    }
    /// Answers per second.
    pub fn answered_rate(&self) -> f64 {
        self.answered as f64 / self.secs.max(1) as f64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// kxdpgun at `rate` qps for `secs` from the client's end of the veth, pinned to CPU 1; the program it
/// leaves on the client's veth is detached after, whatever happened.
pub fn kxdpgun(lab: &Lab, dir: &Path, rate: u64, secs: u64) -> Result<Step> {
    let queries = dir.join("queries-kxdpgun.txt");
    fs::write(&queries, format!("{NAME}. A\n"))?;
    let (rate_s, secs_s) = (rate.to_string(), secs.to_string());
    let (client_ip, server_ip) = (CLIENT_IP.to_string(), SERVER_IP.to_string());
    let queries_s = queries.display().to_string();
    let mut cmd = Lab::exec_in(
        &lab.client_ns,
        &[
            "kxdpgun",
            "-t",
            &secs_s,
            "-Q",
            &rate_s,
            "-F",
            "1",
            "-i",
            &queries_s,
            "-I",
            &lab.client_if,
            "-l",
            &client_ip,
            "-L",
            &lab.client_mac,
            "-R",
            &lab.server_mac,
            &server_ip,
        ],
    );
    let out = run_bounded(&mut cmd, dir, "kxdpgun", Duration::from_secs(secs + 20));
    xdp::detach(&lab.client_ns, &lab.client_if);
    let out = out?;
    parse_kxdpgun(&out, rate, secs).with_context(|| format!("kxdpgun's output:\n{out}"))
}

/// The totals of kxdpgun 3.2's report (`total queries: N (R pps)`, `responded NOERROR: N`).
fn parse_kxdpgun(out: &str, offered: u64, secs: u64) -> Result<Step> {
    let field = |key: &str| -> Option<u64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let sent = field("total queries:").context("no `total queries:` line")?;
    // No NOERROR line when nothing was answered.
    let answered = field("responded NOERROR:").unwrap_or(0);
    Ok(Step {
        offered,
        secs,
        sent,
        answered,
    })
}

/// What dnsperf measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    pub sent: u64,
    pub completed: u64,
    /// Seconds: average, min, max, standard deviation (dnsperf's summary).
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub stddev: f64,
    /// Percentiles 50, 90, 99, 99.9 of the per-query latencies (`-v`), seconds.
    pub percentiles: [f64; 4],
}

/// The percentiles reported, as in [`Latency::percentiles`].
pub const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

/// dnsperf at `qps` for `secs`, one client, pinned to CPU 1, reporting each query (`-v`).
pub fn dnsperf(lab: &Lab, dir: &Path, qps: u64, secs: u64) -> Result<Latency> {
    let queries = dir.join("queries-dnsperf.txt");
    fs::write(&queries, format!("{NAME} A\n"))?;
    let (qps_s, secs_s) = (qps.to_string(), secs.to_string());
    let (server_ip, queries_s) = (SERVER_IP.to_string(), queries.display().to_string());
    let mut cmd = Lab::exec_in(
        &lab.client_ns,
        &[
            "taskset", "-c", "1", "dnsperf", "-s", &server_ip, "-d", &queries_s, "-l", &secs_s,
            "-Q", &qps_s, "-c", "1", "-v",
        ],
    );
    let out = run_bounded(&mut cmd, dir, "dnsperf", Duration::from_secs(secs + 20))?;
    parse_dnsperf(&out).with_context(|| {
        let head: String = out.lines().take(20).collect::<Vec<_>>().join("\n");
        format!("dnsperf's output began:\n{head}")
    })
}

fn parse_dnsperf(out: &str) -> Result<Latency> {
    let after =
        |key: &str| -> Option<&str> { out.lines().find_map(|l| l.trim().strip_prefix(key)) };
    let first_num = |s: &str| -> Option<f64> {
        s.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .find(|w| !w.is_empty())
            .and_then(|w| w.parse().ok())
    };
    let sent = after("Queries sent:")
        .and_then(first_num)
        .context("no `Queries sent:`")? as u64;
    let completed = after("Queries completed:")
        .and_then(first_num)
        .context("no `Queries completed:`")? as u64;
    // `Average Latency (s):  0.000772 (min 0.000402, max 0.019581)`
    let avg_line = after("Average Latency (s):").context("no `Average Latency`")?;
    let avg = first_num(avg_line).context("average latency")?;
    let num_after = |s: &str, key: &str| s.split(key).nth(1).and_then(first_num);
    let min = num_after(avg_line, "min").context("min latency")?;
    let max = num_after(avg_line, "max").context("max latency")?;
    let stddev = after("Latency StdDev (s):")
        .and_then(first_num)
        .unwrap_or(0.0);
    // `> NOERROR www.bench.test A 0.000123`
    let mut each: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    each.sort_by(f64::total_cmp);
    Ok(Latency {
        sent,
        completed,
        avg,
        min,
        max,
        stddev,
        percentiles: PERCENTILES.map(|p| percentile(&each, p)),
    })
}

/// The `p`th percentile (nearest rank) of sorted `v`; 0 for none.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// One `kdig` A query from the client's namespace; the addresses answered, sorted.
pub fn kdig(lab: &Lab) -> Result<(Vec<String>, String)> {
    let out = Lab::exec_in(
        &lab.client_ns,
        &[
            "kdig",
            &format!("@{SERVER_IP}"),
            NAME,
            "A",
            "+retry=0",
            "+time=2",
        ],
    )
    .output()
    .context("cannot run kdig")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((answer_addresses(&text), text))
}

/// The A records' addresses in kdig's (or dig's) answer section, sorted.
fn answer_addresses(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[3] == "A").then(|| f[4].to_owned())
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kxdpgun_report_is_parsed() {
        let out = "using interface obc1, XDP threads 1, UDP, native mode\n\
                   thread#00: sent 2999990, received 2974571\n\
                   total queries:     2999990 (299999 pps)\n\
                   total replies:     2974571 (297457 pps) (99%)\n\
                   average DNS reply size: 48 B\n\
                   responded NOERROR:   2974571\n\
                   duration: 10 s\n";
        let s = parse_kxdpgun(out, 300_000, 10).unwrap();
        assert_eq!(s.sent, 2_999_990);
        assert_eq!(s.answered, 2_974_571);
        assert!((s.answered_fraction() - 0.9915).abs() < 1e-3);
        assert!(s.sent_fraction() > 0.99);
        let none = parse_kxdpgun("total queries: 100 (100 pps)\ntotal replies: 0", 100, 1).unwrap();
        assert_eq!(none.answered, 0);
        assert!(parse_kxdpgun("failed to initialize", 1, 1).is_err());
    }

    #[test]
    fn dnsperf_report_is_parsed() {
        let out = "[Status] Sending queries\n\
                   > NOERROR www.bench.test A 0.000030\n\
                   > NOERROR www.bench.test A 0.000010\n\
                   > NOERROR www.bench.test A 0.000020\n\
                   Statistics:\n\n  Queries sent:         3\n  Queries completed:    3 (100.00%)\n\
                   \x20 Average Latency (s):  0.000020 (min 0.000010, max 0.000030)\n\
                   \x20 Latency StdDev (s):   0.000008\n";
        let l = parse_dnsperf(out).unwrap();
        assert_eq!((l.sent, l.completed), (3, 3));
        assert_eq!(
            (l.avg, l.min, l.max, l.stddev),
            (0.00002, 0.00001, 0.00003, 0.000008)
        );
        assert_eq!(l.percentiles, [0.00002, 0.00003, 0.00003, 0.00003]);
        assert!(parse_dnsperf("Error: could not open").is_err());
    }

    #[test]
    fn kdig_answers_are_read() {
        let out = ";; ->>HEADER<<- opcode: QUERY; status: NOERROR; id: 1\n\
                   ;; ANSWER SECTION:\n\
                   www.bench.test.     \t60\tIN\tA\t192.0.2.2\n\
                   www.bench.test.     \t60\tIN\tA\t192.0.2.1\n\
                   ;; Received 80 B\n";
        assert_eq!(answer_addresses(out), ["192.0.2.1", "192.0.2.2"]);
    }
}
