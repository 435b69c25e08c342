//! The overwatch's control loop as a state machine. It owns the control plane and the book of agents;
//! [`Overwatch::handle`] takes one [`Input`] and the time, and returns the [`Effect`]s to carry out. It
//! never waits, reads a socket or a clock: the shell in [`super::run`] turns gossip, timers, probe
//! results and signals into inputs, and publishes, reschedules probes and updates the metrics as the
//! effects say.

use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Instant};

use tracing::{error, info, warn};

use super::{
    agents::AckDue,
    backend_id,
    control::{Control, Published},
    reports::Reports,
};
use crate::{
    api::{ApiError, BookView, Change, Targets},
    config::{Config, GossipKey},
    gossip::{
        node::Event,
        wire::{ACK_VERSION, Ack, AckBackend, MAX_NODE_ID, Served},
    },
    health::{CheckOutcome, ProbeResult, Scheduled},
    name::DnsName,
    registry::{BackendKey, BackendStatus, NameStatus, Override, Source},
    store::{
        self, BackendId, Key, OverrideRecord, PinRecord, Record,
        objects::{self, ApiObject, ApiObjects, ObjectChange, ObjectKey, Refusal},
    },
    table::AnswerTable,
};

/// What the loop reacts to.
pub(super) enum Input {
    /// The first publish, before anything else.
    Start,
    /// Gossip events, in the order they arrived.
    Gossip(Vec<Event>),
    /// The next agent deadline ([`Overwatch::deadline`]) passed. `queued` is what gossip had queued by
    /// then: it is applied first, so a loop that fell behind never takes its own backlog for silence.
    Deadline {
        /// Events that arrived before the deadline was judged.
        queued: Vec<Event>,
    },
    /// An external validation result.
    Probe(BackendKey, ProbeResult),
    /// SIGHUP, with the new config, already loaded and validated.
    Reload(Box<Config>),
    /// The one-second tick: staleness, expiry and latency order move with time alone. `queued` as for
    /// [`Input::Deadline`].
    Tick {
        /// Events that arrived before the tick.
        queued: Vec<Event>,
    },
    /// Changes from the API, already stored ([`Overwatch::check`] accepted each).
    Api(Vec<Change>),
    /// Changes the store announced, in its order: this overwatch's own (already applied: a no-op)
    /// and, for a shared store, other overwatches'.
    Stored(Vec<store::Event>),
    /// Everything the store holds, after its announcements were missed: what is not in it goes.
    StoredAll(Box<StoredAll>),
    /// SIGINT or SIGTERM.
    Shutdown,
}

/// A whole store's overrides, API-made objects and pins.
pub(super) struct StoredAll {
    /// The API's objects.
    pub objects: ApiObjects,
    /// The overrides.
    pub overrides: Vec<OverrideRecord>,
    /// The token pins.
    pub pins: Vec<PinRecord>,
}

/// What the shell does for an input, in order.
pub(super) enum Effect {
    /// Write this table to both DNS paths.
    Publish(Published),
    /// Probe these backends from now on.
    Probes(Vec<Scheduled<BackendKey>>),
    /// Show the backends' status and the names' all-down state at `/metrics`.
    Status {
        /// Every backend.
        backends: Vec<BackendStatus>,
        /// Every configured name.
        names: Vec<NameStatus>,
    },
    /// Show this view of the book of agents at `/metrics`.
    Book(BookView),
    /// The config now running (the file's with the API's objects), and the API's objects in it.
    Objects {
        /// The effective config.
        effective: Arc<Config>,
        /// The objects made through the API that it holds.
        api: Arc<ApiObjects>,
    },
    /// Seal this ack payload and send it to the agent at `to`. Comes after the publish it speaks of.
    Ack {
        /// The agent's gossip socket.
        to: SocketAddr,
        /// The encoded [`Ack`].
        payload: Vec<u8>,
    },
    /// Seal and open gossip with this key ring from now on (a reload changed it).
    GossipKeys(Vec<GossipKey>),
    /// Stop the loop.
    Stop,
}

/// What a publish changes, to compare over time (shared with the publish, not copied).
type PublishedState = Arc<AnswerTable>;

fn state_of(p: &Published) -> PublishedState {
    p.table.clone()
}

/// The overwatch's state: the control plane, the book of agents (when gossip is on), the running
/// config, the objects made through the API, and what was last published.
pub(super) struct Overwatch {
    control: Control,
    reports: Option<Reports>,
    /// The config file's config.
    running: Config,
    /// Where `running` was read from, for messages.
    source: String,
    /// Every object made through the API, as stored.
    stored: ApiObjects,
    /// Those of `stored` that validate with `running`.
    applied: Arc<ApiObjects>,
    /// `running` with `applied`: what the control plane runs from.
    effective: Arc<Config>,
    last: Option<PublishedState>,
    /// The names whose last published answers are their all-down policy's.
    all_down: HashSet<DnsName>,
    /// This overwatch's name in acks: its node id, or the host name.
    node_id: String,
}

impl Overwatch {
    /// The state a config describes; nothing is published until [`Input::Start`].
    pub fn new(cfg: &Config) -> Self {
        Self {
            control: Control::new(cfg),
            reports: Reports::new(cfg),
            running: cfg.clone(),
            source: "(the embedded default)".to_owned(),
            stored: ApiObjects::default(),
            applied: Arc::default(),
            effective: Arc::new(cfg.clone()),
            last: None,
            all_down: HashSet::new(),
            node_id: ack_node_id(
                &cfg.overwatch
                    .identity
                    .node_id
                    .clone()
                    .unwrap_or_else(crate::gossip::member::hostname),
            ),
        }
    }

    /// Names the config file in messages (a refused change to one of its objects names it).
    pub fn set_config_source(&mut self, source: String) {
        self.source = source;
    }

    /// The objects made through the API, from the store, before the first publish; those that no
    /// longer validate with the file's config are logged and left out.
    pub fn restore_objects(&mut self, stored: ApiObjects) {
        self.stored = stored;
        self.apply_objects();
    }

    /// Rebuilds the effective config from the file's and the stored objects, and runs from it: static
    /// backends follow it, agent backends and all runtime state (overrides, validation) stay.
    fn apply_objects(&mut self) {
        let (effective, applied, left_out) = self.stored.merge_lenient(&self.running);
        for e in left_out {
            match e.object {
                Some(key) => error!(
                    object = %key,
                    reason = %e.message,
                    "an object made through the API no longer validates with the config file: \
                     left out (it stays stored; fix the file or delete it through the API)"
                ),
                None => error!(
                    reason = %e.message,
                    "the objects made through the API do not validate with the config file: all \
                     left out (they stay stored)"
                ),
            }
        }
        self.effective = Arc::new(effective);
        self.applied = Arc::new(applied);
        self.control.reload(&self.effective);
        if let Some(r) = self.reports.as_mut() {
            r.reload(&self.effective);
        }
    }

    fn objects_effect(&self) -> Effect {
        Effect::Objects {
            effective: self.effective.clone(),
            api: self.applied.clone(),
        }
    }

    /// What external validation probes, for the prober's first schedule.
    pub fn probes(&self) -> Vec<Scheduled<BackendKey>> {
        self.control.probes()
    }

    /// When the next agent goes dead if it stays silent; the shell feeds [`Input::Deadline`] then.
    pub fn deadline(&self) -> Option<Instant> {
        self.reports.as_ref().and_then(Reports::deadline)
    }

    /// Handles one input at `now` (`wall_ms` on the wall clock, which reports are judged by).
    pub fn handle(&mut self, input: Input, now: Instant, wall_ms: u64) -> Vec<Effect> {
        match input {
            Input::Start => {
                let mut out = vec![self.objects_effect()];
                out.extend(self.publish(now, true));
                if let Some(r) = &self.reports {
                    out.push(Effect::Book(r.view(now, wall_ms)));
                }
                out
            }
            Input::Gossip(events) => {
                let changed = self.reports.as_mut().is_some_and(|r| {
                    r.handle(
                        events,
                        &mut self.control.registry,
                        &self.control.learned,
                        now,
                        wall_ms,
                    )
                });
                let mut out = self.publish_if(changed, now);
                out.extend(self.acks());
                out
            }
            Input::Deadline { queued } => {
                let changed = self.reports.as_mut().is_some_and(|r| {
                    let applied = r.handle(
                        queued,
                        &mut self.control.registry,
                        &self.control.learned,
                        now,
                        wall_ms,
                    );
                    r.expire(&mut self.control.registry, now) | applied
                });
                let mut out = self.publish_if(changed, now);
                out.extend(self.acks());
                out
            }
            Input::Probe(key, result) => {
                let outcome = CheckOutcome {
                    ok: result.ok,
                    definitive: result.definitive,
                    latency: result.ok.then_some(result.latency),
                };
                let changed = self.control.apply_probe(&key, outcome);
                if changed {
                    info!(backend = %key, ok = result.ok, error = ?result.error, "validation changed a backend's status");
                }
                self.publish_if(changed, now)
            }
            Input::Reload(new) => {
                let ring = self.reload(*new);
                let mut out: Vec<Effect> = ring.into_iter().map(Effect::GossipKeys).collect();
                out.extend([Effect::Probes(self.control.probes()), self.objects_effect()]);
                out.extend(self.publish(now, true));
                out
            }
            Input::Tick { queued } => {
                let mut out = Vec::new();
                self.control.registry.expire(now);
                self.control.prune_learned(now);
                // Expiry also forgets long-gone agents, which no alive agent's deadline would prompt.
                if let Some(r) = self.reports.as_mut() {
                    r.handle(
                        queued,
                        &mut self.control.registry,
                        &self.control.learned,
                        now,
                        wall_ms,
                    );
                    r.expire(&mut self.control.registry, now);
                    // Once a second, not per report: a view walks every agent.
                    out.push(Effect::Book(r.view(now, wall_ms)));
                }
                out.extend(self.publish(now, false));
                out.extend(self.acks());
                out
            }
            Input::Api(changes) => {
                let mut objects_changed = false;
                for change in changes {
                    let applied = match change {
                        Change::SetOverride(key, o) => self.control.registry.set_override(&key, o),
                        Change::ClearOverride(key) => self.control.registry.clear_override(&key),
                        Change::Object(c) => {
                            match c {
                                ObjectChange::Put { object, .. } => self.stored.put(object),
                                ObjectChange::Delete(key) => {
                                    self.stored.remove(&key);
                                }
                            }
                            objects_changed = true;
                            Ok(true)
                        }
                    };
                    if let Err(e) = applied {
                        warn!(error = %e, "API change not applied");
                    }
                }
                if !objects_changed {
                    // The status goes out even when the table stays the same (an override that
                    // agrees with the backend's own status), so the API shows the change at once.
                    return self.publish(now, false);
                }
                self.apply_objects();
                let mut out = vec![Effect::Probes(self.control.probes()), self.objects_effect()];
                out.extend(self.publish(now, true));
                out
            }
            Input::Stored(events) => self.stored(events, now),
            Input::StoredAll(all) => {
                let events = self.resync_events(*all);
                self.stored(events, now)
            }
            Input::Shutdown => vec![Effect::Stop],
        }
    }

    /// Applies what the store announced. Each event states a record's new content, so applying one
    /// twice, or one this overwatch already applied when it made the change, changes nothing; only a
    /// real change republishes.
    fn stored(&mut self, events: Vec<store::Event>, now: Instant) -> Vec<Effect> {
        let mut objects = self.stored.clone();
        let mut changed = false;
        for event in events {
            match event {
                store::Event::Put(Record::Overrides(r)) => {
                    let key = BackendKey::new(r.backend.service, r.backend.address, r.backend.port);
                    let o = Override {
                        healthy: r.healthy,
                        reason: r.reason,
                        by: r.by,
                        at_ms: r.at_ms,
                    };
                    changed |= self.control.registry.restore_override(&key, o);
                }
                store::Event::Delete(Key::Overrides(id)) => {
                    let key = BackendKey::new(id.service, id.address, id.port);
                    changed |= self.control.registry.forget_override(&key);
                }
                store::Event::Put(Record::Pins(p)) => {
                    if let Some(r) = self.reports.as_mut() {
                        r.pin_stored(&p.service, Some(p.digest));
                    }
                }
                store::Event::Delete(Key::Pins(service)) => {
                    if let Some(r) = self.reports.as_mut() {
                        r.pin_stored(&service, None);
                    }
                }
                store::Event::Put(Record::Domains(d)) => objects.put(ApiObject::Domain(d)),
                store::Event::Put(Record::Regions(r)) => objects.put(ApiObject::Region(r)),
                store::Event::Put(Record::Servers(v)) => objects.put(ApiObject::Server(v)),
                store::Event::Put(Record::GeoMappings(m)) => objects.put(ApiObject::GeoMapping(m)),
                store::Event::Delete(Key::Domains(n)) => {
                    objects.remove(&ObjectKey::Domain(n));
                }
                store::Event::Delete(Key::Regions(n)) => {
                    objects.remove(&ObjectKey::Region(n));
                }
                store::Event::Delete(Key::Servers(id)) => {
                    objects.remove(&ObjectKey::Server(id));
                }
                store::Event::Delete(Key::GeoMappings(c)) => {
                    objects.remove(&ObjectKey::GeoMapping(c));
                }
            }
        }
        if objects != self.stored {
            info!(
                objects = objects.len(),
                "objects made through the API changed in the store"
            );
            self.stored = objects;
            self.apply_objects();
            let mut out = vec![Effect::Probes(self.control.probes()), self.objects_effect()];
            out.extend(self.publish(now, true));
            return out;
        }
        if changed {
            return self.publish(now, false);
        }
        Vec::new()
    }

    /// The events that bring this overwatch to `all`: deletions of what it holds and `all` lacks,
    /// then every record of `all`.
    fn resync_events(&self, all: StoredAll) -> Vec<store::Event> {
        use store::Event::{Delete, Put};
        let mut events = Vec::new();
        let keep: HashSet<BackendId> = all.overrides.iter().map(|r| r.backend.clone()).collect();
        for key in self.control.registry.override_keys() {
            let id = backend_id(&key);
            if !keep.contains(&id) {
                events.push(Delete(Key::Overrides(id)));
            }
        }
        let (old, new) = (&self.stored, &all.objects);
        events.extend(
            old.domains
                .keys()
                .filter(|k| !new.domains.contains_key(*k))
                .map(|k| Delete(Key::Domains(k.clone()))),
        );
        events.extend(
            old.regions
                .keys()
                .filter(|k| !new.regions.contains_key(*k))
                .map(|k| Delete(Key::Regions(k.clone()))),
        );
        events.extend(
            old.servers
                .keys()
                .filter(|k| !new.servers.contains_key(*k))
                .map(|k| Delete(Key::Servers(k.clone()))),
        );
        events.extend(
            old.geo_mappings
                .keys()
                .filter(|k| !new.geo_mappings.contains_key(*k))
                .map(|k| Delete(Key::GeoMappings(*k))),
        );
        let StoredAll {
            objects,
            overrides,
            pins,
        } = all;
        events.extend(overrides.into_iter().map(|r| Put(Record::Overrides(r))));
        events.extend(
            objects
                .domains
                .into_values()
                .map(|d| Put(Record::Domains(d))),
        );
        events.extend(
            objects
                .regions
                .into_values()
                .map(|r| Put(Record::Regions(r))),
        );
        events.extend(
            objects
                .servers
                .into_values()
                .map(|v| Put(Record::Servers(v))),
        );
        events.extend(
            objects
                .geo_mappings
                .into_values()
                .map(|m| Put(Record::GeoMappings(m))),
        );
        events.extend(pins.into_iter().map(|p| Put(Record::Pins(p))));
        events
    }

    /// Whether an API change can be applied now; asked before it is stored.
    pub fn check(&self, change: &Change) -> Result<(), ApiError> {
        let key = match change {
            Change::SetOverride(key, _) | Change::ClearOverride(key) => key,
            Change::Object(c) => {
                return objects::check(&self.running, &self.source, &self.stored, c).map_err(|r| {
                    match r {
                        Refusal::Conflict(m) => ApiError::conflict(m),
                        Refusal::NotFound(m) => ApiError::not_found(m),
                        Refusal::Invalid(m) => ApiError::bad_request(m),
                    }
                });
            }
        };
        match self.control.registry.get(key) {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!("no backend {key}"))),
        }
    }

    /// The static backends `targets` names that validation probes, for a request to probe them now:
    /// 409 when validation is off or a backend named is not probed (agent and API ones), 404 when no
    /// backend matches.
    pub fn validation_targets(&self, targets: &Targets) -> Result<Vec<BackendKey>, ApiError> {
        if !self.running.overwatch.validation.enabled {
            return Err(ApiError::conflict(
                "external validation is off (overwatch.validation.enabled: false)",
            ));
        }
        let keys: Vec<BackendKey> = self
            .control
            .probes()
            .into_iter()
            .map(|p| p.key)
            .filter(|k| targets.matches(k))
            .collect();
        if keys.is_empty() && *targets != Targets::All {
            let known = self
                .control
                .registry
                .iter()
                .any(|b| targets.matches(&b.key));
            return Err(if known {
                ApiError::conflict(
                    "only static backends are validated by the overwatch; agents check their own",
                )
            } else {
                ApiError::not_found("no backend matches service, address and port")
            });
        }
        Ok(keys)
    }

    /// Overrides kept from before a restart; those of backends not known yet wait for them.
    pub fn restore_overrides(
        &mut self,
        overrides: impl IntoIterator<Item = (BackendKey, Override)>,
    ) {
        for (key, o) in overrides {
            self.control.registry.restore_override(&key, o);
        }
    }

    /// Takes a new config: domains, servers, agent tokens and the gossip key ring (returned when it
    /// changed, for the running node); the rest needs a restart, and says so by key.
    fn reload(&mut self, mut new: Config) -> Option<Vec<GossipKey>> {
        let running = &self.running;
        let (old_g, new_g) = (&running.overwatch.gossip, &new.overwatch.gossip);
        let ring_changed = old_g.key_ring() != new_g.key_ring();
        // Gossip runs only with a key: turning it on or off starts or stops the node, a restart.
        let ring_live =
            ring_changed && !old_g.key_ring().is_empty() && !new_g.key_ring().is_empty();
        let restart: Vec<&str> = [
            (
                "dns.listen_address",
                new.dns.listen_address != running.dns.listen_address,
            ),
            ("dns.xdp", new.dns.xdp != running.dns.xdp),
            ("dns.zones", new.dns.zones != running.dns.zones),
            ("dns.soa", new.dns.soa != running.dns.soa),
            (
                "dns.rate_limit",
                new.dns.rate_limit != running.dns.rate_limit,
            ),
            (
                "dns.nameservers",
                new.dns.nameservers != running.dns.nameservers,
            ),
            ("metrics", new.metrics != running.metrics),
            (
                "overwatch.gossip.encryption_key (turning gossip on or off)",
                ring_changed && !ring_live,
            ),
            (
                "overwatch.gossip.bind_address",
                new_g.bind_address != old_g.bind_address,
            ),
            (
                "overwatch.gossip.probe_interval",
                new_g.probe_interval != old_g.probe_interval,
            ),
            (
                "overwatch.gossip.probe_timeout",
                new_g.probe_timeout != old_g.probe_timeout,
            ),
            (
                "overwatch.gossip.gossip_interval",
                new_g.gossip_interval != old_g.gossip_interval,
            ),
            ("logging", new.logging != running.logging),
            (
                "overwatch.identity",
                new.overwatch.identity != running.overwatch.identity,
            ),
            (
                "overwatch.store",
                new.overwatch.store != running.overwatch.store,
            ),
            (
                "overwatch.data_dir",
                new.overwatch.data_dir != running.overwatch.data_dir,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        if !restart.is_empty() {
            warn!(
                keys = %restart.join(", "),
                "SIGHUP: changes to these keys need a restart; applying the domains, servers, agent tokens and gossip key ring only"
            );
        }
        // The gossip section and the identity stay as they run, so that a later reload compares with
        // what runs (and warns again while a change waits for a restart); only a live ring is taken.
        let mut gossip = old_g.clone();
        if ring_live {
            gossip.encryption_key.clone_from(&new_g.encryption_key);
            gossip.encryption_keys.clone_from(&new_g.encryption_keys);
        }
        let ring = ring_live.then(|| gossip.key_ring().to_vec());
        new.overwatch.gossip = gossip;
        new.overwatch
            .identity
            .clone_from(&running.overwatch.identity);
        // The store too: the API writes to the one opened at start, and the pins stay with it.
        new.overwatch.store.clone_from(&running.overwatch.store);
        new.overwatch
            .data_dir
            .clone_from(&running.overwatch.data_dir);
        if let Some(r) = &ring {
            info!(
                keys = r.len(),
                "SIGHUP: gossip key ring changed: applied to the running node"
            );
        }
        info!("SIGHUP: config reloaded");
        self.running = new;
        // The stored objects join the new file's config, as at start-up.
        self.apply_objects();
        ring
    }

    fn publish_if(&mut self, changed: bool, now: Instant) -> Vec<Effect> {
        if changed {
            self.publish(now, true)
        } else {
            Vec::new()
        }
    }

    /// The control plane's state at `now`, to publish when `force` or when it differs from the last.
    /// The status goes to the metrics either way: report ages move with time alone, and a name goes
    /// all-down under policy `all` with its table unchanged.
    fn publish(&mut self, now: Instant, force: bool) -> Vec<Effect> {
        let mut p = self.control.publish(now);
        let names = std::mem::take(&mut p.names);
        self.all_down = names
            .iter()
            .filter(|n| n.all_down)
            .map(|n| n.name.clone())
            .collect();
        let state = state_of(&p);
        let mut out = Vec::with_capacity(2);
        if force || self.last.as_ref() != Some(&state) {
            out.push(Effect::Publish(p));
        }
        self.last = Some(state);
        let mut backends = self.control.registry.status_view(now);
        // The registry holds the API's servers as static ones (they are in the effective config);
        // they are shown as what they are.
        if !self.applied.servers.is_empty() {
            for b in &mut backends {
                let id = BackendId::new(b.key.service.clone(), b.key.address, b.key.port);
                if b.source == Source::Static && self.applied.servers.contains_key(&id) {
                    b.source = Source::Api;
                }
            }
        }
        out.push(Effect::Status { backends, names });
        out
    }

    /// Acks for the reports applied since the last call, from the table published now: whatever this
    /// input published (or left as it was) already reflects them.
    fn acks(&mut self) -> Vec<Effect> {
        let Some(r) = self.reports.as_mut() else {
            return Vec::new();
        };
        let due = r.take_acks();
        let Some(table) = self.last.as_ref() else {
            return Vec::new();
        };
        due.into_iter()
            .map(|d| Effect::Ack {
                to: d.to,
                payload: ack_of(&self.node_id, table, &self.all_down, &d).encode(),
            })
            .collect()
    }
}

/// What `table` says of the backends of the report `due` acknowledges.
fn ack_of(node_id: &str, table: &AnswerTable, all_down: &HashSet<DnsName>, due: &AckDue) -> Ack {
    use opengslb_common::maps::{QTYPE_A, QTYPE_AAAA};
    let backends = due
        .backends
        .iter()
        .map(|key| {
            let qtype = if key.address.is_ipv4() {
                QTYPE_A
            } else {
                QTYPE_AAAA
            };
            let answered = table
                .get(&key.service, qtype)
                .is_some_and(|e| e.records.contains(&key.address));
            let served = match (answered, all_down.contains(&key.service)) {
                (false, _) => Served::No,
                (true, false) => Served::Yes,
                (true, true) => Served::AllDown,
            };
            AckBackend {
                service: key.service.to_string(),
                address: key.address,
                port: key.port,
                served,
            }
        })
        .collect();
    Ack {
        version: ACK_VERSION,
        node_id: node_id.to_owned(),
        started_ms: due.started_ms,
        seq: due.seq,
        backends,
    }
}

/// A node id as an ack may carry it (printable ASCII, bounded): a host name is whatever the system says,
/// and a configured id may be longer than an ack allows.
fn ack_node_id(id: &str) -> String {
    let shown: String = id
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(MAX_NODE_ID)
        .collect();
    if shown.is_empty() {
        "overwatch".to_owned()
    } else {
        shown
    }
}

#[cfg(test)]
mod tests;
