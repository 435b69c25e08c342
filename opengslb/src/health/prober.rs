//! The scheduler: probes every target on its interval, a bounded number at a time, and reports each result.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Probe, ProbeResult, Target};

/// First probes are spread over at most this long (or the interval, if shorter), so a start-up or reload
/// with many targets does not fire them all in the same instant, yet every status is known soon.
const START_SPREAD: Duration = Duration::from_secs(1);

/// Intervals are raised to at least this, so a zero interval (which config validation rejects anyway) cannot
/// turn a target's task into a busy loop.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// One target to probe periodically, under the caller's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled<K> {
    /// The caller's name for this target; results come back tagged with it. Unique within a set (a later
    /// entry replaces an earlier one with the same key).
    pub key: K,
    /// What to probe.
    pub target: Target,
    /// Time between scheduled probes (at least 10 ms).
    pub interval: Duration,
}

/// Handle to a running scheduler, spawned by [`Prober::spawn`].
///
/// Each target is probed every `interval`, its first probe after a random offset of up to a second (less for
/// shorter intervals); at most `concurrency` probes are in flight across all targets. After a failure that
/// follows a pass, the target is probed again at once, so a fresh failure is confirmed (or dismissed) without
/// waiting a whole interval: a dead backend is out within about one interval, not interval × threshold.
/// Every result, including the re-probe's, is sent on the results channel.
///
/// Probing stops when the token is cancelled or the results receiver is dropped; dropping this handle only
/// gives up the ability to [`update`](Self::update) the set.
#[derive(Debug)]
pub struct Prober<K> {
    targets: watch::Sender<Vec<Scheduled<K>>>,
    nudges: mpsc::Sender<Vec<K>>,
}

/// Requests to probe now that may wait for the supervisor; more are refused, not queued without bound.
const NUDGES_QUEUED: usize = 16;

impl<K> Prober<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    /// Starts probing `targets` on `tracker`, reporting each result as `(key, result)` on `results`. Must be
    /// called within a Tokio runtime. `concurrency` is raised to at least 1.
    pub fn spawn(
        targets: Vec<Scheduled<K>>,
        concurrency: usize,
        results: mpsc::Sender<(K, ProbeResult)>,
        tracker: &TaskTracker,
        token: CancellationToken,
    ) -> Self {
        let (tx, rx) = watch::channel(targets);
        let (nudges, nudged) = mpsc::channel(NUDGES_QUEUED);
        let supervisor = Supervisor {
            wanted: rx,
            nudged,
            running: HashMap::new(),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            results,
            tracker: tracker.clone(),
            token,
        };
        tracker.spawn(supervisor.run());
        Self {
            targets: tx,
            nudges,
        }
    }

    /// Probes `keys` now, out of schedule: each at once, or right after its probe in flight; its
    /// schedule then restarts from that probe. Keys not in the set are ignored. False when too many
    /// such requests wait already (or the prober stopped): nothing is probed for this one.
    pub fn probe_now(&self, keys: Vec<K>) -> bool {
        self.nudges.try_send(keys).is_ok()
    }

    /// Replaces the target set (e.g. on a config reload). A target whose key, target and interval are all
    /// unchanged keeps its schedule and its last result (for the re-probe rule); a changed one starts afresh;
    /// one no longer listed stops, and sends no result once the update is applied (which happens before any
    /// new target's first probe). Updates in quick succession are coalesced: only the latest set is applied.
    pub fn update(&self, targets: Vec<Scheduled<K>>) {
        self.targets.send_replace(targets);
    }
}

/// Owns the per-target tasks and applies target-set updates to them.
struct Supervisor<K> {
    wanted: watch::Receiver<Vec<Scheduled<K>>>,
    nudged: mpsc::Receiver<Vec<K>>,
    running: HashMap<K, Running>,
    permits: Arc<Semaphore>,
    results: mpsc::Sender<(K, ProbeResult)>,
    tracker: TaskTracker,
    token: CancellationToken,
}

/// A target's task, as the supervisor knows it.
struct Running {
    target: Target,
    interval: Duration,
    token: CancellationToken,
    nudge: Arc<Notify>,
}

impl<K> Supervisor<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    async fn run(mut self) {
        self.apply();
        let mut updates_open = true;
        loop {
            tokio::select! {
                () = self.token.cancelled() => break,
                // Nobody reads results any more: probing would be wasted traffic on the backends.
                () = self.results.closed() => break,
                changed = self.wanted.changed(), if updates_open => match changed {
                    Ok(()) => self.apply(),
                    // The handle is gone: the set can no longer change, but it is still probed.
                    Err(_) => updates_open = false,
                },
                Some(keys) = self.nudged.recv() => {
                    for key in keys {
                        if let Some(r) = self.running.get(&key) {
                            r.nudge.notify_one();
                        }
                    }
                }
            }
        }
        // Targets' tokens are children of `self.token`, but on a closed results channel it is not cancelled.
        for running in self.running.values() {
            running.token.cancel();
        }
    }

    /// Brings the running tasks in line with the latest wanted set.
    fn apply(&mut self) {
        let wanted = self.wanted.borrow_and_update().clone();
        let mut next: HashMap<K, Running> = HashMap::with_capacity(wanted.len());
        for Scheduled {
            key,
            target,
            interval,
        } in wanted
        {
            let interval = interval.max(MIN_INTERVAL);
            // A duplicate key within the set: the later entry wins.
            if let Some(earlier) = next.remove(&key) {
                earlier.token.cancel();
            }
            let running = match self.running.remove(&key) {
                Some(r) if r.target == target && r.interval == interval => r,
                previous => {
                    if let Some(previous) = previous {
                        previous.token.cancel();
                    }
                    self.start(key.clone(), target, interval)
                }
            };
            next.insert(key, running);
        }
        // Whatever is left was dropped from the set.
        for (_, gone) in self.running.drain() {
            gone.token.cancel();
        }
        self.running = next;
    }

    fn start(&self, key: K, target: Target, interval: Duration) -> Running {
        let token = self.token.child_token();
        let nudge = Arc::new(Notify::new());
        let task = TargetTask {
            nudge: Arc::clone(&nudge),
            offset: start_offset(&key, interval),
            key,
            target: target.clone(),
            interval,
            permits: Arc::clone(&self.permits),
            results: self.results.clone(),
            token: token.clone(),
        };
        self.tracker.spawn(task.run());
        Running {
            target,
            interval,
            token,
            nudge,
        }
    }
}

/// A random delay before a target's first probe, below `min(interval, START_SPREAD)`.
fn start_offset<K: Hash>(key: &K, interval: Duration) -> Duration {
    let spread = u64::try_from(interval.min(START_SPREAD).as_nanos()).unwrap_or(u64::MAX);
    // `RandomState` is seeded randomly per instance: a cheap random number without a `rand` dependency.
    Duration::from_nanos(RandomState::new().hash_one(key) % spread.max(1))
}

/// The loop that probes one target.
struct TargetTask<K> {
    key: K,
    target: Target,
    interval: Duration,
    offset: Duration,
    permits: Arc<Semaphore>,
    results: mpsc::Sender<(K, ProbeResult)>,
    token: CancellationToken,
    /// Probe now ([`Prober::probe_now`]).
    nudge: Arc<Notify>,
}

impl<K> TargetTask<K>
where
    K: Clone + Send + 'static,
{
    async fn run(self) {
        // Built inside the task, not by the supervisor: for HTTPS it loads the system's roots.
        let probe = Probe::new(self.target.clone());
        let mut due = Instant::now() + self.offset;
        let mut last_ok = None;
        loop {
            let nudged = tokio::select! {
                biased;
                () = self.token.cancelled() => return,
                () = sleep_until(due) => false,
                () = self.nudge.notified() => true,
            };
            let Some(result) = self.probe_once(&probe).await else {
                return;
            };
            // Only a failure right after a pass is re-probed: a target that keeps failing is probed on its
            // interval, not hammered.
            let reprobe = !result.ok && last_ok == Some(true);
            last_ok = Some(result.ok);
            if !self.report(result).await {
                return;
            }
            if reprobe {
                let Some(result) = self.probe_once(&probe).await else {
                    return;
                };
                last_ok = Some(result.ok);
                if !self.report(result).await {
                    return;
                }
            }
            // Ticks missed while waiting for a permit or on a slow probe are skipped, not fired in a burst.
            due += self.interval;
            let now = Instant::now();
            // A probe out of schedule restarts it: the next one is an interval later, not sooner.
            if due <= now || nudged {
                due = now + self.interval;
            }
        }
    }

    /// One probe under a concurrency permit; `None` once cancelled.
    async fn probe_once(&self, probe: &Probe) -> Option<ProbeResult> {
        tokio::select! {
            biased;
            () = self.token.cancelled() => None,
            result = async {
                // The semaphore is never closed, so this only fails if that changes: stop rather than spin.
                let _permit = self.permits.acquire().await.ok()?;
                let result = probe.run().await;
                if let Some(error) = &result.error {
                    tracing::debug!(
                        address = %self.target.address,
                        port = self.target.port,
                        error = %error,
                        "health probe failed"
                    );
                }
                Some(result)
            } => result,
        }
    }

    /// Sends a result; `false` once cancelled or when nobody reads results any more.
    async fn report(&self, result: ProbeResult) -> bool {
        tokio::select! {
            biased;
            () = self.token.cancelled() => false,
            sent = self.results.send((self.key.clone(), result)) => sent.is_ok(),
        }
    }
}
