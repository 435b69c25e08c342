//! The overwatch process: builds the answer table from the config, loads the XDP program, fills its maps,
//! attaches it, and runs until SIGINT or SIGTERM, then detaches and unpins.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use tracing::{debug, info, warn};

use crate::{
    config::{Config, RoutingAlgorithm},
    table::{AnswerTable, NameSpec, Policy},
    xdp::{self, Dataplane},
};

/// Process options that are not config keys.
#[derive(Clone, Debug)]
pub struct Options {
    /// Leave XDP attached and pinned on exit.
    pub keep_attached: bool,
    /// The bpffs directory to pin under.
    pub bpffs_root: PathBuf,
}

/// The answer table a config describes.
pub fn table_from_config(cfg: &Config) -> AnswerTable {
    let specs: Vec<NameSpec> = cfg
        .domain_records()
        .into_iter()
        .map(|d| NameSpec {
            name: d.name,
            ttl: d.ttl,
            policy: match d.algorithm {
                RoutingAlgorithm::RoundRobin => Policy::RoundRobin,
                _ => Policy::Userspace,
            },
            max_answers: d.max_answers,
            v4: d.v4,
            v6: d.v6,
        })
        .collect();
    AnswerTable::from_specs(&specs)
}

/// The addresses XDP answers on: the listen address, or for a wildcard every address of the attached
/// interfaces.
fn listen_addresses(listen: IpAddr, interfaces: &[String]) -> anyhow::Result<Vec<IpAddr>> {
    if !listen.is_unspecified() {
        return Ok(vec![listen]);
    }
    let mut out = Vec::new();
    for iface in interfaces {
        let addrs =
            xdp::ifaddrs::addresses(iface).with_context(|| format!("addresses of {iface}"))?;
        out.extend(
            addrs
                .into_iter()
                .filter(|a| a.is_ipv4() == listen.is_ipv4() || listen.is_ipv6()),
        );
    }
    Ok(out)
}

/// Runs the overwatch until a shutdown signal.
pub fn run(cfg: Config, opts: Options) -> anyhow::Result<()> {
    let table = table_from_config(&cfg);
    let listen = cfg.dns.listen_address;
    let xdp_cfg = &cfg.dns.xdp;
    if xdp_cfg.interfaces.is_empty() {
        bail!(
            "dns.xdp.interfaces is empty: this build answers DNS from XDP only (the userspace server \
             comes with the authoritative-server issue)"
        );
    }
    let mut dp = Dataplane::load(Some(&opts.bpffs_root)).context(
        "cannot load the XDP program (needs root, or CAP_BPF and CAP_NET_ADMIN, and a kernel with XDP)",
    )?;
    dp.configure(listen.port(), xdp_cfg.udp_size)?;
    let addrs = listen_addresses(listen.ip(), &xdp_cfg.interfaces)?;
    dp.add_listen(&addrs)?;
    let plan = dp.apply(&table)?;
    for (name, why) in &plan.skipped {
        warn!(name = %name.name, qtype = name.qtype, why, "not in the XDP map");
    }
    for iface in &xdp_cfg.interfaces {
        dp.attach(iface, xdp_cfg.mode).with_context(|| {
            format!("XDP cannot attach to {iface}; no userspace DNS server yet, so exiting")
        })?;
    }
    info!(
        entries = plan.upserts.len(),
        listen = ?addrs,
        port = listen.port(),
        pins = %xdp::pin_dir(&opts.bpffs_root).display(),
        "answering A/AAAA from XDP; `opengslb xdp counters` shows the counters"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    if let Ok(c) = dp.counters() {
                        debug!(answered = c.answered(), "xdp counters");
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;

    if let Ok(c) = dp.counters() {
        info!(answered = c.answered(), "shutting down");
        for counter in opengslb_common::counters::Counter::ALL {
            let n = c.get(counter);
            if n != 0 {
                info!(counter = counter.name(), n, "xdp counter");
            }
        }
    }
    if opts.keep_attached {
        info!("leaving XDP attached and pinned (--keep-attached)");
        std::mem::forget(dp);
    } else {
        dp.shutdown();
    }
    Ok(())
}
