//! The overwatch process: builds the answer table from the config, loads the XDP program, fills its maps,
//! attaches it, and runs until SIGINT or SIGTERM, then detaches and unpins.

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info, warn};

pub mod agents;
pub mod control;
mod gossip;

use control::{Control, Published};

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::Config,
    dns::{
        Snapshot, Zone,
        server::{self, ServerConfig},
    },
    health::{CheckOutcome, Prober},
    metrics::{self, Metrics},
    routing::Candidate,
    table::{AnswerTable, Rendered, Renderer},
    xdp::{self, Dataplane},
};

/// Process options that are not config keys.
#[derive(Clone, Debug)]
pub struct Options {
    /// Leave XDP attached and pinned on exit.
    pub keep_attached: bool,
    /// The bpffs directory to pin under.
    pub bpffs_root: PathBuf,
    /// Run no userspace listener and fail if XDP cannot attach (proves the XDP path answers alone).
    pub xdp_only: bool,
    /// The config file, for SIGHUP reloads (`None`: the embedded default).
    pub config: Option<PathBuf>,
}

/// The answer table a config describes before any health or latency data: every configured backend in,
/// as the control plane first publishes it.
pub fn table_from_config(cfg: &Config) -> AnswerTable {
    Control::new(cfg).publish(Instant::now()).table
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
            crate::net::addresses(iface).with_context(|| format!("addresses of {iface}"))?;
        out.extend(
            addrs
                .into_iter()
                .filter(|a| a.is_ipv4() == listen.is_ipv4() || listen.is_ipv6()),
        );
    }
    Ok(out)
}

/// Loads the XDP program and gives it its settings and listen addresses; the first publish fills its
/// maps, and [`attach_xdp`] then attaches it.
fn load_xdp(cfg: &Config, opts: &Options) -> anyhow::Result<(Dataplane, Vec<IpAddr>)> {
    let listen = cfg.dns.listen_address;
    let xdp_cfg = &cfg.dns.xdp;
    let mut dp = Dataplane::load(Some(&opts.bpffs_root)).context(
        "cannot load the XDP program (needs root, or CAP_BPF and CAP_NET_ADMIN, and a kernel with XDP)",
    )?;
    dp.configure(listen.port(), xdp_cfg.udp_size)?;
    let addrs = listen_addresses(listen.ip(), &xdp_cfg.interfaces)?;
    dp.add_listen(&addrs)?;
    Ok((dp, addrs))
}

/// Attaches the loaded, filled program to the configured interfaces.
fn attach_xdp(
    dp: &mut Dataplane,
    cfg: &Config,
    addrs: &[IpAddr],
    opts: &Options,
) -> anyhow::Result<()> {
    let xdp_cfg = &cfg.dns.xdp;
    for iface in &xdp_cfg.interfaces {
        dp.attach(iface, xdp_cfg.mode)
            .with_context(|| format!("XDP cannot attach to {iface}"))?;
    }
    info!(
        listen = ?addrs,
        port = cfg.dns.listen_address.port(),
        pins = %xdp::pin_dir(&opts.bpffs_root).display(),
        "XDP answers A/AAAA; `opengslb xdp counters` shows its counters"
    );
    Ok(())
}

/// The SOA serial for a new table: seconds since the epoch, kept increasing past `previous`.
fn next_serial(previous: u32) -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    now.max(previous.wrapping_add(1))
}

/// Publishes answer tables: writes the XDP map incrementally, then switches the userspace server to a
/// new snapshot (with a new SOA serial), and times the two.
struct Publisher {
    dp: Option<Dataplane>,
    /// Renders each table once, for the XDP map and the userspace snapshot alike.
    renderer: Renderer,
    /// The geolocation table last written to the XDP trie.
    geo: Option<Arc<crate::routing::GeoTable>>,
    tx: watch::Sender<Arc<Snapshot>>,
    zones: Vec<Zone>,
    serial: u32,
    udp_size: u16,
    metrics: Arc<Metrics>,
}

impl Publisher {
    fn publish(&mut self, published: Published) {
        let started = Instant::now();
        let Published {
            table, routes, geo, ..
        } = published;
        // The trie changes only with the config (each config builds a new one). A failed write is tried
        // again at the next publish: `self.geo` keeps the table last written in full.
        let mut geo_written = true;
        if let Some(dp) = self.dp.as_mut() {
            let same = match (&self.geo, &geo) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                let empty = crate::routing::PrefixTable::new();
                match dp.set_geo(geo.as_ref().map_or(&empty, |g| g.prefixes())) {
                    Ok(written) => debug!(written, "XDP geolocation trie updated"),
                    Err(e) => {
                        geo_written = false;
                        error!(
                            error = format!("{e:#}"),
                            "updating the XDP geolocation trie failed"
                        );
                    }
                }
            }
        }
        if geo_written {
            self.geo.clone_from(&geo);
        }
        let rendered = self.renderer.render(&table);
        if let Some(dp) = self.dp.as_mut() {
            match dp.apply(&rendered) {
                Ok(plan) => {
                    for (name, why) in &plan.skipped {
                        debug!(name = %name.name, qtype = name.qtype, why, "not in the XDP map: answered by userspace");
                    }
                    debug!(
                        written = plan.upserts.len(),
                        removed = plan.removals.len(),
                        "XDP map updated"
                    );
                }
                // The XDP map keeps its previous entries; userspace still gets the new table.
                Err(e) => error!(error = format!("{e:#}"), "updating the XDP map failed"),
            }
        }
        self.serial = next_serial(self.serial);
        let snap = Snapshot::new(
            table,
            &rendered,
            self.zones.clone(),
            self.serial,
            self.udp_size,
        )
        .with_routes(routes)
        .with_geo(geo);
        self.tx.send_replace(Arc::new(snap));
        self.metrics.observe_table_sync(started.elapsed());
    }
}

/// Runs the overwatch until a shutdown signal. SIGHUP re-reads `opts.config` and publishes its table; a
/// config that fails to load or validate is refused and the running one kept.
pub fn run(cfg: Config, opts: Options) -> anyhow::Result<()> {
    let mut control = Control::new(&cfg);
    let zones = Zone::from_config(&cfg).context("dns.zones")?;
    // XDP unavailable: the userspace server answers alone, unless `--xdp-only`.
    let unavailable = |e: anyhow::Error| {
        if opts.xdp_only {
            return Err(e);
        }
        warn!(
            error = format!("{e:#}"),
            "XDP is not available: the userspace server answers every query"
        );
        Ok(None)
    };
    let (dp, addrs) = if cfg.dns.xdp.interfaces.is_empty() {
        if opts.xdp_only {
            bail!("--xdp-only, but dns.xdp.interfaces is empty");
        }
        info!("dns.xdp.interfaces is empty: every query is answered by the userspace server");
        (None, Vec::new())
    } else {
        match load_xdp(&cfg, &opts) {
            Ok((dp, addrs)) => (Some(dp), addrs),
            Err(e) => (unavailable(e)?, Vec::new()),
        }
    };
    let metrics = Arc::new(Metrics::new());
    // Replaced by the first publish below, before the server starts: nothing answers from it.
    let (tx, snap_rx) = watch::channel(Arc::new(Snapshot::new(
        AnswerTable::default(),
        &Rendered::default(),
        zones.clone(),
        0,
        cfg.dns.xdp.udp_size,
    )));
    let mut publisher = Publisher {
        dp,
        renderer: Renderer::default(),
        geo: None,
        tx,
        zones,
        serial: 0,
        udp_size: cfg.dns.xdp.udp_size,
        metrics: metrics.clone(),
    };
    // The first publish fills the XDP maps before the program is attached, through the same path as
    // every later one, so that it is timed and shown at `/metrics` like them.
    let mut last = publish(&mut control, &mut publisher, Instant::now(), None);
    if let Some(dp) = publisher.dp.as_mut()
        && let Err(e) = attach_xdp(dp, &cfg, &addrs, &opts)
    {
        publisher.dp = unavailable(e)?;
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let result = rt.block_on(async {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let server = if opts.xdp_only {
            info!("--xdp-only: no userspace DNS listener; queries XDP passes go unanswered");
            None
        } else {
            let sc = ServerConfig::new(cfg.dns.listen_address);
            let s = server::start(sc, snap_rx, &tracker, token.clone())
                .await
                .with_context(|| format!("cannot listen on {}", cfg.dns.listen_address))?;
            *metrics
                .sources
                .dns
                .lock()
                .map_err(|_| anyhow::anyhow!("metrics lock"))? = Some(s.stats.clone());
            Some(s)
        };
        if cfg.metrics.enabled {
            let listener = tokio::net::TcpListener::bind(cfg.metrics.address)
                .await
                .with_context(|| format!("metrics.address {}", cfg.metrics.address))?;
            let (m, t) = (metrics.clone(), token.clone());
            tracker.spawn(async move {
                if let Err(e) = metrics::serve(listener, m, t).await {
                    error!(error = %e, "metrics server stopped");
                }
            });
        }
        let (probe_tx, mut probe_rx) = mpsc::channel(1024);
        let probes = control.probes();
        if !probes.is_empty() {
            info!(backends = probes.len(), "external validation running");
        }
        let prober = Prober::spawn(
            probes,
            control::PROBE_CONCURRENCY,
            probe_tx,
            &tracker,
            token.clone(),
        );
        let mut gossip = gossip::Gossip::start(&cfg, &tracker, token.clone(), metrics.clone()).await?;
        let mut running = cfg.clone();
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        // Created once: a signal that arrives while the loop body runs is still delivered.
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            // Far enough to never fire, near enough not to overflow `Instant`.
            let agent_deadline = gossip
                .as_ref()
                .and_then(gossip::Gossip::deadline)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = int.recv() => break,
                events = next_gossip(&mut gossip) => {
                    let now = Instant::now();
                    if let Some(g) = gossip.as_mut()
                        && g.handle(events, &mut control.registry, now)
                    {
                        last = publish(&mut control, &mut publisher, now, None);
                    }
                }
                () = tokio::time::sleep_until(agent_deadline.into()) => {
                    let now = Instant::now();
                    if let Some(g) = gossip.as_mut()
                        && g.expire(&mut control.registry, now)
                    {
                        last = publish(&mut control, &mut publisher, now, None);
                    }
                }
                _ = term.recv() => break,
                _ = hup.recv() => {
                    if let Some(new) = reload(&opts, &running) {
                        control.reload(&new);
                        if let Some(g) = gossip.as_mut() {
                            g.reload(&new);
                        }
                        prober.update(control.probes());
                        running = new;
                        last = publish(&mut control, &mut publisher, Instant::now(), None);
                    }
                }
                Some((key, result)) = probe_rx.recv() => {
                    let outcome = CheckOutcome {
                        ok: result.ok,
                        definitive: result.definitive,
                        latency: result.ok.then_some(result.latency),
                    };
                    if control.apply_probe(&key, outcome) {
                        info!(backend = %key, ok = result.ok, error = ?result.error, "validation changed a backend's status");
                        last = publish(&mut control, &mut publisher, Instant::now(), None);
                    }
                }
                _ = tick.tick() => {
                    // Staleness and expiry move with time, and latency routing with probe averages.
                    let now = Instant::now();
                    control.registry.expire(now);
                    // Also forgets long-gone agents, which no alive agent's deadline would prompt.
                    if let Some(g) = gossip.as_mut() {
                        g.expire(&mut control.registry, now);
                        g.update_metrics();
                    }
                    last = publish(&mut control, &mut publisher, now, Some(&last));
                    if let Some(c) = publisher.dp.as_ref().and_then(|d| d.counters().ok())
                        && let Ok(mut slot) = metrics.sources.xdp.lock()
                    {
                        *slot = Some(c);
                    }
                }
            }
        }
        token.cancel();
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop within 10 s");
        }
        if let Some(s) = server {
            for (kind, n) in s.stats.summary() {
                if n != 0 {
                    info!(kind = ?kind, n, "userspace replies");
                }
            }
        }
        anyhow::Ok(())
    });

    if let Some(mut dp) = publisher.dp.take() {
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
    }
    result
}

/// Publishes the control plane's state at `now` to both DNS paths, unless it is `unchanged_from`; returns
/// it, to compare later states with. The names' all-down state and the backends' status go to the
/// metrics either way: report ages move with time alone, and a name goes all-down under policy `all`
/// with its table unchanged.
fn publish(
    control: &mut Control,
    publisher: &mut Publisher,
    now: Instant,
    unchanged_from: Option<&PublishedState>,
) -> PublishedState {
    let mut p = control.publish(now);
    let names = std::mem::take(&mut p.names);
    let state = state_of(&p);
    if unchanged_from != Some(&state) {
        publisher.publish(p);
    }
    publisher.metrics.set_names(names);
    publisher
        .metrics
        .set_backends(control.registry.status_view(now));
    state
}

/// The next gossip event, or never when gossip is off.
async fn next_gossip(gossip: &mut Option<gossip::Gossip>) -> Vec<crate::gossip::node::Event> {
    match gossip {
        Some(g) => g.next().await,
        None => std::future::pending().await,
    }
}

/// SIGHUP: re-read the config file and publish its table. Settings that need a restart (listen address,
/// XDP interfaces, zones) are reported and not applied.
fn reload(opts: &Options, running: &Config) -> Option<Config> {
    let Some(path) = &opts.config else {
        warn!("SIGHUP: running the embedded default config, nothing to reload");
        return None;
    };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!(
                error = format!("{e:#}"),
                "SIGHUP: the new config is refused; keeping the running one"
            );
            return None;
        }
    };
    if new.dns.listen_address != running.dns.listen_address
        || new.dns.xdp != running.dns.xdp
        || new.dns.zones != running.dns.zones
        || new.dns.soa != running.dns.soa
        || new.dns.nameservers != running.dns.nameservers
        || new.metrics != running.metrics
        || new.overwatch.gossip != running.overwatch.gossip
    {
        warn!(
            "SIGHUP: changes to dns.listen_address, dns.xdp, dns.zones, dns.soa, dns.nameservers, metrics or overwatch.gossip need a restart; applying the domains, servers and agent tokens only"
        );
    }
    info!("SIGHUP: config reloaded");
    Some(new)
}

/// What a publish changes, to compare over time: the table, and the routes' candidates.
type PublishedState = (AnswerTable, Vec<(String, Vec<Candidate>)>);

fn state_of(p: &Published) -> PublishedState {
    let mut routes: Vec<(String, Vec<Candidate>)> = p
        .routes
        .iter()
        .map(|(k, r)| (k.clone(), r.candidates.clone()))
        .collect();
    routes.sort_by(|a, b| a.0.cmp(&b.0));
    (p.table.clone(), routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::BackendKey;

    const CONFIG: &str = "\
dns: { zones: [example.com] }
regions:
  - name: eu
    servers:
      - { address: 192.0.2.1, service: app.example.com }
      - { address: 192.0.2.2, service: app.example.com }
      - { address: 192.0.2.9, service: other.example.com }
domains:
  - { name: app.example.com, regions: [eu] }
  - { name: other.example.com, regions: [eu], all_down: empty }
";

    /// A publisher without XDP, whose snapshots nobody reads.
    fn publisher(metrics: Arc<Metrics>) -> Publisher {
        let empty = Snapshot::new(
            AnswerTable::default(),
            &Rendered::default(),
            Vec::new(),
            0,
            1232,
        );
        let (tx, _) = watch::channel(Arc::new(empty));
        Publisher {
            dp: None,
            renderer: Renderer::default(),
            geo: None,
            tx,
            zones: Vec::new(),
            serial: 0,
            udp_size: 1232,
            metrics,
        }
    }

    /// Under policy `all` the table is the same with every backend in or out, so the gauge cannot wait
    /// for a changed table.
    #[test]
    fn name_all_down_shows_while_the_policy_answers() {
        let cfg = Config::from_yaml_str(CONFIG).expect("test config");
        let mut control = Control::new(&cfg);
        let metrics = Arc::new(Metrics::new());
        let mut publisher = publisher(metrics.clone());
        let now = Instant::now();
        let app = |v: u8| {
            format!("opengslb_name_all_down{{name=\"app.example.com\",policy=\"all\"}} {v}\n")
        };
        let other = "opengslb_name_all_down{name=\"other.example.com\",policy=\"empty\"} 0\n";

        let first = publish(&mut control, &mut publisher, now, None);
        let text = metrics.render();
        assert!(text.contains(&app(0)) && text.contains(other), "{text}");
        assert!(
            text.contains("# HELP opengslb_backend_up 1 while the backend's own status is healthy")
                && text.contains("see opengslb_name_all_down"),
            "{text}"
        );

        let key = |a: &str| BackendKey::new("app.example.com", a.parse().expect("address"), 80);
        for a in ["192.0.2.1", "192.0.2.2"] {
            control
                .registry
                .set_override(&key(a), false, "test", "test")
                .expect("a backend");
        }
        let down = publish(&mut control, &mut publisher, now, Some(&first));
        assert!(down == first, "policy `all`: the same table");
        let text = metrics.render();
        assert!(text.contains(&app(1)) && text.contains(other), "{text}");

        control
            .registry
            .clear_override(&key("192.0.2.1"))
            .expect("a backend");
        publish(&mut control, &mut publisher, now, Some(&down));
        let text = metrics.render();
        assert!(text.contains(&app(0)) && text.contains(other), "{text}");
    }
}
