//! The overwatch process: builds the answer table from the config, loads the XDP program, fills its maps,
//! attaches it, and runs until SIGINT or SIGTERM, then detaches and unpins.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};

mod actor;
pub mod agents;
pub mod control;
mod gossip;
pub mod policy;
mod publisher;
mod reports;
mod run_metrics;

use actor::{Effect, Input, Overwatch};
use agents::BookMetrics;
use control::Control;
use publisher::Publisher;
use run_metrics::RunMetrics;

use crate::{
    api::{self, Api, ApiError, Change, Readiness, View},
    config::{self, Config, WhenStale},
    dns::{
        Snapshot, Zone,
        server::{self, ServerConfig},
    },
    gossip::unix_ms,
    health::Prober,
    metrics::{self, Metrics},
    registry::{BackendKey, StatusMetrics},
    store::{
        self, BackendId, Changes, Domains, GeoMappings, OverrideRecord, Overrides, Regions,
        Servers, Store, StoreError,
        objects::{ApiObject, ApiObjects, ObjectChange, ObjectKey},
    },
    table::{AnswerTable, Rendered},
    xdp::{self, Dataplane},
};

/// Process options that are not config keys.
#[derive(Clone, Debug)]
pub struct Options {
    /// Detach XDP and remove its pins on exit, rather than leave it answering for the next overwatch.
    pub detach_on_exit: bool,
    /// The XDP object to load instead of the built-in one.
    pub xdp_object: Option<PathBuf>,
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
    Arc::unwrap_or_clone(Control::new(cfg).publish(Instant::now()).table)
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
    let root = Some(opts.bpffs_root.as_path());
    let loaded = match &opts.xdp_object {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the XDP object {}", path.display()))?;
            Dataplane::load_bytes(&bytes, root)
        }
        None => Dataplane::load(root),
    };
    let mut dp = loaded.context(
        "cannot load the XDP program (needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and a kernel \
         with XDP)",
    )?;
    dp.configure(listen.port(), xdp_cfg.udp_size)?;
    dp.set_staleness(xdp_cfg.stale_after, xdp_cfg.when_stale == WhenStale::Pass)?;
    dp.set_rate_limit(cfg.dns.rate_limit.limit())?;
    let addrs = listen_addresses(listen.ip(), &xdp_cfg.interfaces)?;
    dp.set_listen(&addrs)?;
    Ok((dp, addrs))
}

/// Detaches what a previous run left attached, when this run will not take it over (XDP off in the
/// config, or its program does not load): nothing should answer from a table no one updates.
fn retire_previous(root: &std::path::Path) {
    if std::fs::read_dir(root).is_ok_and(|mut d| d.next().is_some()) {
        warn!(
            pins = %root.display(),
            "detaching the XDP program a previous run left attached: this run cannot update its maps"
        );
        if let Err(e) = xdp::remove_all(root) {
            warn!(error = %e, "cannot remove every pin");
        }
    }
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
    dp.commit()
        .context("XDP is attached, but the pins could not be brought in step")?;
    info!(
        listen = ?addrs,
        port = cfg.dns.listen_address.port(),
        pins = %xdp::pin_dir(&opts.bpffs_root).display(),
        "XDP answers A/AAAA; `opengslb xdp counters` shows its counters"
    );
    Ok(())
}

/// Runs the overwatch until a shutdown signal. SIGHUP re-reads `opts.config` and publishes its table; a
/// config that fails to load or validate is refused and the running one kept.
///
/// This is the loop's I/O shell: it turns gossip, timers, probe results and signals into
/// [`actor::Input`]s for the [`Overwatch`] state machine, and carries out the effects it returns.
pub fn run(cfg: Config, opts: Options) -> anyhow::Result<()> {
    let mut overwatch = Overwatch::new(&cfg);
    if let Some(path) = &opts.config {
        overwatch.set_config_source(path.display().to_string());
    }
    // Objects and overrides made through the API come back before the first publish. A store that
    // cannot be read is logged and leaves the API unable to change anything: never a silent reset.
    let mut changes = None;
    let store = match Store::from_config(&cfg.overwatch) {
        Ok(store) => {
            // Before the first read: a change made meanwhile (by another overwatch) then comes after.
            changes = Some(store.changes());
            // Objects first: an override of an API-made server then finds its backend.
            let objects = ApiObjects::load(&store).context("objects made through the API")?;
            if !objects.is_empty() {
                info!(
                    objects = objects.len(),
                    "objects made through the API restored from the store"
                );
            }
            overwatch.restore_objects(objects);
            let kept = store.list::<Overrides>().context("stored overrides")?;
            if !kept.is_empty() {
                info!(overrides = kept.len(), "overrides restored from the store");
            }
            overwatch.restore_overrides(kept);
            Some(store)
        }
        Err(e) if cfg.api.enabled => {
            error!(error = %e, "the store cannot be opened: API changes are refused");
            None
        }
        Err(e) => {
            warn!(error = %e, "the store cannot be opened: overrides kept there are not restored");
            None
        }
    };
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
        retire_previous(&opts.bpffs_root);
        (None, Vec::new())
    } else {
        match load_xdp(&cfg, &opts) {
            Ok((dp, addrs)) => (Some(dp), addrs),
            Err(e) => {
                let off = unavailable(e)?;
                retire_previous(&opts.bpffs_root);
                (off, Vec::new())
            }
        }
    };
    // Replaced by the first publish below, before the server starts: nothing answers from it.
    let (tx, snap_rx) = watch::channel(Arc::new(Snapshot::new(
        AnswerTable::default(),
        &Rendered::default(),
        zones.clone(),
        0,
        cfg.dns.xdp.udp_size,
    )));
    let (view_tx, view_rx) = watch::channel(Arc::new(View::default()));
    let mut shell = Shell {
        publisher: Publisher::new(dp, tx, zones, cfg.dns.xdp.udp_size),
        status: Arc::default(),
        book: Arc::default(),
        run: Arc::default(),
        prober: None,
        view: View {
            regions: cfg.regions.iter().map(|r| r.name.clone()).collect(),
            readiness: Readiness {
                published: false,
                xdp: "pending",
            },
            validation_enabled: cfg.overwatch.validation.enabled,
            node_id: cfg
                .overwatch
                .identity
                .node_id
                .clone()
                .unwrap_or_else(crate::gossip::member::hostname),
            region: cfg.overwatch.identity.region.clone(),
            started_ms: unix_ms(),
            config_source: opts.config.as_ref().map_or_else(
                || "(the embedded default)".to_owned(),
                |p| p.display().to_string(),
            ),
            ..View::default()
        },
        view_tx,
        store,
        gossip: None,
    };
    // The first publish fills the XDP maps before the program is attached, through the same path as
    // every later one, so that it is timed and shown at `/metrics` like them.
    shell.apply(overwatch.handle(Input::Start, Instant::now(), unix_ms()));
    if let Some(dp) = shell.publisher.dp.as_mut()
        && let Err(e) = attach_xdp(dp, &cfg, &addrs, &opts)
    {
        shell.publisher.dp = unavailable(e)?;
        shell.view.readiness.xdp = "unavailable";
    } else {
        shell.view.readiness.xdp = if shell.publisher.dp.is_some() {
            "attached"
        } else if cfg.dns.xdp.interfaces.is_empty() {
            "off"
        } else {
            "unavailable"
        };
    }
    shell.show();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let result = rt.block_on(async {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut metrics = Metrics::new();
        shell.publisher.register(&mut metrics);
        let server = if opts.xdp_only {
            info!("--xdp-only: no userspace DNS listener; queries XDP passes go unanswered");
            None
        } else {
            let sc = ServerConfig {
                rate_limit: cfg.dns.rate_limit.limit(),
                ..ServerConfig::new(cfg.dns.listen_address)
            };
            let s = server::start(sc, snap_rx, &tracker, token.clone())
                .await
                .with_context(|| format!("cannot listen on {}", cfg.dns.listen_address))?;
            metrics.collect(s.stats.clone());
            shell.publisher.count_queries_in(s.stats.queries.clone());
            Some(s)
        };
        metrics.collect(shell.publisher.queries());
        let mut gossip = gossip::Gossip::start(&cfg, &tracker, token.clone()).await?;
        if let Some(g) = &gossip {
            shell.gossip.clone_from(&g.node);
            metrics.collect(g.stats.clone());
            metrics.collect(shell.book.clone());
        }
        metrics.collect(shell.status.clone());
        metrics.collect(shell.run.clone());
        if cfg.metrics.enabled {
            let listener = tokio::net::TcpListener::bind(cfg.metrics.address)
                .await
                .with_context(|| format!("metrics.address {}", cfg.metrics.address))?;
            let (m, t) = (Arc::new(metrics), token.clone());
            tracker.spawn(async move {
                if let Err(e) = metrics::serve(listener, m, t).await {
                    error!(error = %e, "metrics server stopped");
                }
            });
        }
        let (api_tx, mut api_rx) = mpsc::channel::<api::Request>(64);
        let (validate_tx, mut validate_rx) = mpsc::channel::<api::ValidateRequest>(16);
        if cfg.api.enabled {
            let listener = tokio::net::TcpListener::bind(cfg.api.address)
                .await
                .with_context(|| format!("api.address {}", cfg.api.address))?;
            let api = Api::new(view_rx, api_tx, api::Access::from_config(&cfg.api))
                .with_validation(validate_tx);
            let t = token.clone();
            tracker.spawn(async move {
                if let Err(e) = api::serve(listener, api, t).await {
                    error!(error = %e, "API server stopped");
                }
            });
        } else {
            drop((api_tx, validate_tx));
        }
        let (probe_tx, mut probe_rx) = mpsc::channel(1024);
        let probes = overwatch.probes();
        if !probes.is_empty() {
            let v = &cfg.overwatch.validation;
            info!(
                backends = probes.len(),
                every_at_most = ?v.check_interval,
                timeout_at_most = ?v.check_timeout,
                "external validation running"
            );
        }
        shell.prober = Some(Prober::spawn(
            probes,
            control::PROBE_CONCURRENCY,
            probe_tx,
            &tracker,
            token.clone(),
        ));
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        // Created once: a signal that arrives while the loop body runs is still delivered.
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            // Far enough to never fire, near enough not to overflow `Instant`.
            let agent_deadline = overwatch
                .deadline()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let input = tokio::select! {
                _ = int.recv() => Input::Shutdown,
                events = next_gossip(&mut gossip) => Input::Gossip(events),
                () = tokio::time::sleep_until(agent_deadline.into()) => Input::Deadline {
                    queued: gossip.as_mut().map(gossip::Gossip::queued).unwrap_or_default(),
                },
                _ = term.recv() => Input::Shutdown,
                _ = hup.recv() => match load_config(&opts) {
                    Ok(new) => {
                        shell.run.reloaded(true);
                        Input::Reload(Box::new(new))
                    }
                    Err(refused) => {
                        if refused {
                            shell.run.reloaded(false);
                        }
                        continue;
                    }
                },
                Some((key, result)) = probe_rx.recv() => {
                    shell.run.probed(key.service.as_ref(), result.ok, result.latency);
                    Input::Probe(key, result)
                }
                Some(request) = api_rx.recv() => {
                    shell.api_request(&mut overwatch, request);
                    continue;
                }
                Some(request) = validate_rx.recv() => {
                    shell.validate(&overwatch, request);
                    continue;
                }
                input = next_stored(&mut changes, shell.store.as_deref()) => input,
                _ = tick.tick() => {
                    shell.show_link();
                    shell.publisher.heartbeat();
                    shell.publisher.read_counters();
                    Input::Tick {
                        queued: gossip.as_mut().map(gossip::Gossip::queued).unwrap_or_default(),
                    }
                }
            };
            if !shell.apply(overwatch.handle(input, Instant::now(), unix_ms())) {
                break;
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

    if let Some(mut dp) = shell.publisher.dp.take() {
        if let Ok(c) = dp.counters() {
            info!(answered = c.answered(), "shutting down");
            for counter in opengslb_common::counters::Counter::ALL {
                let n = c.get(counter);
                if n != 0 {
                    info!(counter = counter.name(), n, "xdp counter");
                }
            }
        }
        if opts.detach_on_exit {
            dp.shutdown();
        } else {
            info!(
                pins = %opts.bpffs_root.display(),
                "XDP stays attached, answering from the last table until the next overwatch takes it over \
                 (`opengslb xdp detach` detaches it)"
            );
            dp.leave();
        }
    }
    result
}

/// What carries out the state machine's effects.
struct Shell {
    publisher: Publisher,
    status: Arc<StatusMetrics>,
    book: Arc<BookMetrics>,
    run: Arc<RunMetrics>,
    /// Started with the runtime, after the first publish.
    prober: Option<Prober<BackendKey>>,
    /// What the API shows, kept up to date from the effects.
    view: View,
    view_tx: watch::Sender<Arc<View>>,
    /// Where API changes are kept; `None` when it could not be opened.
    store: Option<Arc<Store>>,
    /// The gossip node acks go out through; `None` when gossip is off.
    gossip: Option<crate::gossip::node::Node>,
}

impl Shell {
    /// Carries out `effects` in order, then hands the API one view of the result; false once one says
    /// stop.
    fn apply(&mut self, effects: Vec<Effect>) -> bool {
        let mut view_changed = false;
        for effect in effects {
            match effect {
                Effect::Publish(p) => {
                    // What the API explains is what the DNS paths answer from, not a recomputation.
                    self.view.table = p.table.clone();
                    self.view.placement.clone_from(&p.placement);
                    self.view.learned.clone_from(&p.learned);
                    self.publisher.publish(p);
                    self.view.readiness.published = true;
                    view_changed = true;
                }
                Effect::Probes(p) => {
                    if let Some(prober) = &self.prober {
                        prober.update(p);
                    }
                }
                Effect::Status { backends, names } => {
                    self.view.backends.clone_from(&backends);
                    self.view.names.clone_from(&names);
                    self.status.set(backends, names);
                    view_changed = true;
                }
                Effect::Book(view) => {
                    self.view.book = Some(Arc::new(view.clone()));
                    self.book.set(view);
                    view_changed = true;
                }
                Effect::Objects { effective, api } => {
                    self.view.regions = effective.regions.iter().map(|r| r.name.clone()).collect();
                    self.view.effective = effective;
                    self.view.api_objects = api;
                    view_changed = true;
                }
                Effect::Ack { to, payload } => {
                    if let Some(node) = &self.gossip {
                        node.send_ack(to, payload);
                    }
                }
                Effect::GossipKeys(keys) => match &self.gossip {
                    Some(node) => {
                        if let Err(e) = node.set_keys(&keys) {
                            error!(error = %e, "the gossip key ring could not be replaced");
                        }
                    }
                    None => warn!("the gossip key ring changed, but gossip is not running"),
                },
                Effect::Stop => return false,
            }
        }
        if view_changed {
            self.show();
        }
        true
    }
}

impl Shell {
    /// Shows the shared store's link (reachable or not) in the view and the metrics.
    fn show_link(&mut self) {
        let link = self.store.as_ref().and_then(|s| s.link());
        self.run.store_link(link.as_ref());
        if link != self.view.store_link {
            self.view.store_link = link;
            self.show();
        }
    }

    /// Hands the API the current view.
    fn show(&mut self) {
        self.view.wall_ms = unix_ms();
        self.view_tx.send_replace(Arc::new(self.view.clone()));
    }

    /// An API request: checked against the state, stored, applied and published, then answered. The
    /// answer comes after the publish, so a query sent after it sees the change.
    fn api_request(&mut self, overwatch: &mut Overwatch, request: api::Request) {
        let result = request
            .changes
            .iter()
            .try_for_each(|c| overwatch.check(c))
            .and_then(|()| self.persist(&request.changes));
        if result.is_ok() {
            let effects = overwatch.handle(Input::Api(request.changes), Instant::now(), unix_ms());
            self.apply(effects);
        }
        // The caller may have gone (a closed connection): the change stands either way.
        let _ = request.reply.send(result);
    }

    /// A request to probe backends now: handed to the prober, whose results come back as inputs.
    fn validate(&self, overwatch: &Overwatch, request: api::ValidateRequest) {
        let result = overwatch
            .validation_targets(&request.targets)
            .and_then(|keys| {
                let prober = self
                    .prober
                    .as_ref()
                    .ok_or_else(|| ApiError::unavailable("the prober is not running yet"))?;
                if keys.is_empty() || prober.probe_now(keys.clone()) {
                    Ok(keys)
                } else {
                    Err(ApiError::unavailable(
                        "too many validation requests at once; try again",
                    ))
                }
            });
        // The caller may have gone: the probes run either way.
        let _ = request.reply.send(result);
    }

    /// Stores changes durably before they are applied.
    fn persist(&self, changes: &[Change]) -> Result<(), ApiError> {
        let store = self.store.as_ref().ok_or_else(|| {
            ApiError::unavailable("the store could not be opened at start-up: see the log")
        })?;
        for change in changes {
            let stored = match change {
                Change::SetOverride(key, o) => store
                    .put::<Overrides>(&OverrideRecord {
                        backend: backend_id(key),
                        healthy: o.healthy,
                        reason: o.reason.clone(),
                        by: o.by.clone(),
                        at_ms: o.at_ms,
                    })
                    .map(drop),
                Change::ClearOverride(key) => store.delete::<Overrides>(&backend_id(key)).map(drop),
                Change::Object(ObjectChange::Put { object, .. }) => match object {
                    ApiObject::Domain(d) => store.put::<Domains>(d),
                    ApiObject::Region(r) => store.put::<Regions>(r),
                    ApiObject::Server(v) => store.put::<Servers>(v),
                    ApiObject::GeoMapping(m) => store.put::<GeoMappings>(m),
                }
                .map(drop),
                Change::Object(ObjectChange::Delete(key)) => match key {
                    ObjectKey::Domain(n) => store.delete::<Domains>(n),
                    ObjectKey::Region(n) => store.delete::<Regions>(n),
                    ObjectKey::Server(id) => store.delete::<Servers>(id),
                    ObjectKey::GeoMapping(c) => store.delete::<GeoMappings>(c),
                }
                .map(drop),
            };
            stored.map_err(|e| {
                ApiError::unavailable(format!("the change could not be stored: {e}"))
            })?;
        }
        Ok(())
    }
}

fn backend_id(key: &BackendKey) -> BackendId {
    BackendId::new(key.service.clone(), key.address, key.port)
}

/// The next changes the store announced, with every one already waiting, or everything it holds when
/// some were missed; never when there is no store.
async fn next_stored(changes: &mut Option<Changes>, store: Option<&Store>) -> Input {
    let (Some(rx), Some(store)) = (changes.as_mut(), store) else {
        return std::future::pending().await;
    };
    let mut events = Vec::new();
    let mut next = Some(rx.recv().await);
    while let Some(result) = next.take() {
        match result {
            Ok(change) => events.push(change.event),
            Err(StoreError::Lagged { missed, .. }) => {
                warn!(
                    missed,
                    "store changes were missed: reading the whole store again"
                );
                return match stored_all(store) {
                    Ok(all) => Input::StoredAll(Box::new(all)),
                    Err(e) => {
                        error!(error = %e, "the store cannot be read: keeping the running state");
                        Input::Stored(Vec::new())
                    }
                };
            }
            Err(StoreError::Closed { .. }) => {
                *changes = None;
                break;
            }
            Err(e) => error!(error = %e, "a change in the store cannot be read: left out"),
        }
        next = changes.as_mut().and_then(Changes::try_recv);
    }
    Input::Stored(events)
}

/// Everything the store holds.
fn stored_all(store: &Store) -> Result<actor::StoredAll, StoreError> {
    Ok(actor::StoredAll {
        objects: ApiObjects::load(store)?,
        overrides: store.list::<Overrides>()?,
        pins: store.list::<store::Pins>()?,
    })
}

/// The next gossip events, or never when gossip is off.
async fn next_gossip(gossip: &mut Option<gossip::Gossip>) -> Vec<crate::gossip::node::Event> {
    match gossip {
        Some(g) => g.next().await,
        None => std::future::pending().await,
    }
}

/// SIGHUP: re-reads the config file. `Err(true)` (logged) when it is refused; `Err(false)` when there is
/// no file to re-read (the embedded default).
fn load_config(opts: &Options) -> Result<Config, bool> {
    let Some(path) = &opts.config else {
        warn!("SIGHUP: running the embedded default config, nothing to reload");
        return Err(false);
    };
    Config::load(path)
        .and_then(|cfg| config::check_file_mode(path, &cfg).map(|()| cfg))
        .map_err(|e| {
            error!(
                error = format!("{e:#}"),
                "SIGHUP: the new config is refused; keeping the running one"
            );
            true
        })
}
