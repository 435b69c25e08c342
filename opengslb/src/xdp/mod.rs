//! The XDP data plane: loads the embedded program, fills its maps from the answer table, attaches it to
//! interfaces through BPF links pinned under bpffs, and reads its counters.

mod answers;
mod metrics;
pub mod object;
mod pins;
pub mod sync;

use std::{
    fmt, fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, Map, MapData, MapError, PerCpuArray,
        lpm_trie::{Key as LpmKey, LpmTrie},
    },
    programs::{
        ProgramError, Xdp,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpMode},
    },
};
use opengslb_common::{
    counters::{COUNTER_COUNT, Counter},
    maps::{
        CONFIG_MAP, COUNTERS_MAP, GEO_MAP, LISTEN_MAP, LISTEN_MORE, ListenKey, PROGRAM_NAME,
        RATE_MAP, RECORDS_MAP, ROTATION_MAP, RecordKey, RecordValue, STALE_PASS, XdpConfig,
    },
    ratelimit::RateLimit,
};
use tracing::{info, warn};

/// How to attach (`dns.xdp.mode`); `auto` uses generic (skb) mode on virtual interfaces (lo, veth:
/// their native mode needs a program on the peer and has almost no tailroom) and native mode elsewhere.
pub use crate::config::XdpMode as AttachMode;
use crate::{
    routing::PrefixTable,
    table::{EntryKey, Rendered},
};
pub use metrics::CounterMetrics;
pub use pins::{BPFFS_ROOT, link_pin, pin_dir, remove_all};

/// The maps that are pinned, so tools (and `opengslb xdp counters`) can read them while we run, and a
/// restart carries them over (the rate buckets too: a restart does not lift a flood's limit).
const PINNED_MAPS: [&str; 7] = [
    RECORDS_MAP,
    LISTEN_MAP,
    CONFIG_MAP,
    COUNTERS_MAP,
    ROTATION_MAP,
    GEO_MAP,
    RATE_MAP,
];

/// What can go wrong in the data plane.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The binary was built without the XDP object.
    #[error("this binary holds no XDP program ({0}); run `cargo xtask setup`, then rebuild")]
    NoObject(&'static str),
    /// The object could not be loaded (parse, maps, BTF).
    #[error("loading the XDP object failed")]
    Load(#[source] Box<aya::EbpfError>),
    /// The program is missing, of the wrong type, or the kernel refused it.
    #[error("the XDP program could not be loaded")]
    Program(#[source] ProgramError),
    /// A map is missing or an operation on it failed.
    #[error("map {name}")]
    Map {
        /// The map.
        name: &'static str,
        /// The cause.
        #[source]
        source: MapError,
    },
    /// Attaching failed.
    #[error("attaching XDP to {iface} in {mode} mode failed")]
    Attach {
        /// The interface.
        iface: String,
        /// The mode tried.
        mode: &'static str,
        /// The cause.
        #[source]
        source: ProgramError,
    },
    /// A bpffs operation failed.
    #[error("{what} {}", path.display())]
    Pin {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> XdpError {
    move |source| XdpError::Map { name, source }
}

fn mode_name(m: XdpMode) -> &'static str {
    match m {
        XdpMode::Driver => "driver",
        XdpMode::Skb => "skb",
        XdpMode::Hardware => "hardware",
        XdpMode::Default => "default",
    }
}

/// One attachment: the link, pinned when the data plane pins.
struct Attachment {
    iface: String,
    mode: XdpMode,
    link: FdLink,
    pin: Option<PathBuf>,
}

/// Summed counters, one per [`Counter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters(pub [u64; COUNTER_COUNT as usize]);

impl Counters {
    /// One counter's total.
    pub fn get(&self, c: Counter) -> u64 {
        self.0.get(c.index() as usize).copied().unwrap_or(0)
    }

    /// Queries answered from XDP.
    pub fn answered(&self) -> u64 {
        self.get(Counter::AnsweredA) + self.get(Counter::AnsweredAaaa)
    }

    /// Reads the pinned counters map of a running overwatch.
    pub fn read_pinned(dir: &Path) -> Result<Self, XdpError> {
        let data = MapData::from_pin(dir.join(COUNTERS_MAP)).map_err(map_err(COUNTERS_MAP))?;
        let map = PerCpuArray::<_, u64>::try_from(Map::PerCpuArray(data))
            .map_err(map_err(COUNTERS_MAP))?;
        sum_counters(&map)
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in Counter::ALL {
            let v = self.get(c);
            if v != 0 {
                writeln!(f, "{:<16} {v}", c.name())?;
            }
        }
        Ok(())
    }
}

fn sum_counters(map: &PerCpuArray<MapData, u64>) -> Result<Counters, XdpError> {
    let mut out = [0u64; COUNTER_COUNT as usize];
    for (i, slot) in out.iter_mut().enumerate() {
        let per_cpu = map.get(&(i as u32), 0).map_err(map_err(COUNTERS_MAP))?;
        *slot = per_cpu.iter().sum();
    }
    Ok(Counters(out))
}

/// The loaded program and its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    records: HashMap<MapData, RecordKey, RecordValue>,
    listen: HashMap<MapData, ListenKey, u8>,
    config: Array<MapData, XdpConfig>,
    /// What the config map holds.
    cfg: XdpConfig,
    counters: PerCpuArray<MapData, u64>,
    /// Per entry: its round-robin position and answer count, per CPU (see `ROTATION_MAP`).
    rotation: PerCpuArray<MapData, u64>,
    /// The answer counts of the entries in the map, as last reported (see [`Dataplane::take_answers`]).
    tally: answers::Tally,
    geo: LpmTrie<MapData, [u8; 16], u8>,
    /// What the geolocation trie holds, as we wrote it: (key, prefix length) → region id.
    geo_current: std::collections::HashMap<([u8; 16], u32), u8>,
    sync: sync::RecordSync,
    attachments: Vec<Attachment>,
    /// The pin root, when pinning.
    root: Option<PathBuf>,
    /// Whether the maps are a previous run's, which [`Dataplane::commit`] then rids of what this run's
    /// table does not hold.
    adopted: bool,
    /// Where the maps are pinned: the layout's directory, or while fresh maps wait for
    /// [`Dataplane::commit`], its staging directory.
    maps_dir: Option<PathBuf>,
    /// Whether [`Dataplane::set_geo`] has written the trie.
    geo_set: bool,
}

impl Dataplane {
    /// Loads the embedded program into the kernel (verifier included) without attaching it. With a pin
    /// root, the maps are pinned there (see [`pins`]): a previous run's are adopted when their layout is
    /// this program's, else fresh ones wait in a staging directory until [`Dataplane::commit`].
    pub fn load(pin_root: Option<&Path>) -> Result<Self, XdpError> {
        let bytes = object::bytes().ok_or(XdpError::NoObject(
            object::MISSING_REASON.unwrap_or("built without a BPF toolchain"),
        ))?;
        Self::load_bytes(bytes, pin_root)
    }

    /// [`Dataplane::load`] from given object bytes.
    pub fn load_bytes(bytes: &[u8], pin_root: Option<&Path>) -> Result<Self, XdpError> {
        let mut loader = EbpfLoader::new();
        let mut adopted = false;
        let mut maps_dir = None;
        if let Some(root) = pin_root {
            check_bpffs(root)?;
            let dir = pin_dir(root);
            let expected = pins::object_shapes(bytes)?;
            let target = match pins::adoptable(&dir, &expected) {
                Ok(()) => {
                    info!(dir = %dir.display(), "adopting the maps a previous run left pinned");
                    adopted = true;
                    dir
                }
                Err(why) => {
                    if dir.exists() {
                        warn!(dir = %dir.display(), why, "the pinned maps do not fit this program: \
                              fresh ones replace them once it is attached");
                    }
                    let staging = pins::staging_dir(root);
                    pins::fresh_dir(&staging)?;
                    staging
                }
            };
            for name in PINNED_MAPS {
                loader.map_pin_path(name, target.join(name));
            }
            maps_dir = Some(target);
        }
        let mut ebpf = loader
            .load(bytes)
            .map_err(|e| XdpError::Load(Box::new(e)))?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(XdpError::Program(ProgramError::NotLoaded))?
            .try_into()
            .map_err(XdpError::Program)?;
        prog.load().map_err(XdpError::Program)?;

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(XdpError::Map {
                name,
                source: MapError::InvalidName { name: name.into() },
            })
        };
        let records: HashMap<MapData, RecordKey, RecordValue> =
            HashMap::try_from(take(&mut ebpf, RECORDS_MAP)?).map_err(map_err(RECORDS_MAP))?;
        let listen =
            HashMap::try_from(take(&mut ebpf, LISTEN_MAP)?).map_err(map_err(LISTEN_MAP))?;
        let config: Array<MapData, XdpConfig> =
            Array::try_from(take(&mut ebpf, CONFIG_MAP)?).map_err(map_err(CONFIG_MAP))?;
        let counters =
            PerCpuArray::try_from(take(&mut ebpf, COUNTERS_MAP)?).map_err(map_err(COUNTERS_MAP))?;
        let geo: LpmTrie<MapData, [u8; 16], u8> =
            LpmTrie::try_from(take(&mut ebpf, GEO_MAP)?).map_err(map_err(GEO_MAP))?;
        let rotation =
            PerCpuArray::try_from(take(&mut ebpf, ROTATION_MAP)?).map_err(map_err(ROTATION_MAP))?;
        // An adopted config keeps the previous run's listen addresses until `set_listen` replaces them:
        // a config without them would pass every query meanwhile.
        let cfg = if adopted {
            config.get(&0, 0).map_err(map_err(CONFIG_MAP))?
        } else {
            XdpConfig::default()
        };
        let geo_current = if adopted {
            geo.iter()
                .filter_map(Result::ok)
                .map(|(k, region)| ((k.data(), k.prefix_len()), region))
                .collect()
        } else {
            std::collections::HashMap::new()
        };
        Ok(Self {
            ebpf,
            records,
            listen,
            config,
            cfg,
            counters,
            rotation,
            tally: answers::Tally::new(adopted),
            geo,
            geo_current,
            sync: sync::RecordSync::default(),
            attachments: Vec::new(),
            root: pin_root.map(Path::to_path_buf),
            adopted,
            maps_dir,
            geo_set: false,
        })
    }

    /// The loaded program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn program_mut(&mut self) -> Result<&mut Xdp, XdpError> {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(XdpError::Program(ProgramError::NotLoaded))?
            .try_into()
            .map_err(XdpError::Program)
    }

    /// Sets the DNS port and the UDP size we advertise, and stamps the heartbeat.
    pub fn configure(&mut self, port: u16, udp_size: u16) -> Result<(), XdpError> {
        self.cfg.port = port;
        self.cfg.udp_size = udp_size;
        self.heartbeat()
    }

    /// After how long without a [`Dataplane::heartbeat`] the table is stale (zero: never), and whether
    /// a stale table then answers nothing (`pass`) rather than keep answering.
    pub fn set_staleness(&mut self, after: Duration, pass: bool) -> Result<(), XdpError> {
        self.cfg.stale_after_ns = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
        if pass {
            self.cfg.flags |= STALE_PASS;
        } else {
            self.cfg.flags &= !STALE_PASS;
        }
        self.heartbeat()
    }

    /// Limits the responses the program sends each client prefix (`RateLimit::default()`: no limit).
    pub fn set_rate_limit(&mut self, limit: RateLimit) -> Result<(), XdpError> {
        self.cfg.rate = limit;
        self.heartbeat()
    }

    /// Tells the program the overwatch is alive: its table is current as of now.
    pub fn heartbeat(&mut self) -> Result<(), XdpError> {
        self.cfg.heartbeat_ns = monotonic_coarse_ns();
        self.config.set(0, self.cfg, 0).map_err(map_err(CONFIG_MAP))
    }

    /// Makes the program answer on exactly `addrs`. New addresses enter the map before the config names
    /// them, and old ones leave it after, so that a running program (an adopted one's) never passes a
    /// query for an address it answers on before and after.
    pub fn set_listen(&mut self, addrs: &[IpAddr]) -> Result<(), XdpError> {
        let keys: std::collections::HashSet<ListenKey> = addrs
            .iter()
            .map(|a| match a {
                IpAddr::V4(v4) => ListenKey::v4(v4.octets()),
                IpAddr::V6(v6) => ListenKey::v6(v6.octets()),
            })
            .collect();
        let mut cfg = XdpConfig {
            listen4_count: 0,
            listen6_count: 0,
            flags: self.cfg.flags & !LISTEN_MORE,
            listen4: Default::default(),
            listen6: Default::default(),
            ..self.cfg
        };
        for key in &keys {
            self.listen.insert(key, 1, 0).map_err(map_err(LISTEN_MAP))?;
            cfg.add_listen(key);
        }
        self.cfg = cfg;
        self.config
            .set(0, self.cfg, 0)
            .map_err(map_err(CONFIG_MAP))?;
        let old: Vec<ListenKey> = self
            .listen
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keys.contains(k))
            .collect();
        for key in old {
            match self.listen.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(LISTEN_MAP)(e)),
            }
        }
        Ok(())
    }

    /// Brings the records map in step with a rendered table, writing only what changed.
    pub fn apply(&mut self, rendered: &Rendered) -> Result<sync::Plan, XdpError> {
        let plan = self.sync.plan(rendered);
        let rotation = &self.rotation;
        let read = |slot| answers::total(rotation, slot);
        for (name, entry @ (k, v)) in &plan.upserts {
            self.records.insert(k, v, 0).map_err(map_err(RECORDS_MAP))?;
            self.sync.upserted(name, *entry);
            self.tally.written(name, v.slot, read);
        }
        for (name, key) in &plan.removals {
            if let Some(k) = key {
                match self.records.remove(k) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(map_err(RECORDS_MAP)(e)),
                }
            }
            self.sync.removed(name);
            self.tally.removed(name, read);
        }
        Ok(plan)
    }

    /// Makes the geolocation trie hold exactly `table` (client prefix → region id, in the trie's key form:
    /// [`PrefixTable::lpm_entries`]), writing only what changed: new and changed prefixes first, then
    /// removals. Returns how many prefixes were written or removed.
    pub fn set_geo(&mut self, table: &PrefixTable<u8>) -> Result<usize, XdpError> {
        self.geo_set = true;
        // A key without a value is one the trie must miss on: 0, no region.
        let wanted: std::collections::HashMap<([u8; 16], u32), u8> = table
            .lpm_entries()
            .map(|(k, region)| ((k.data, k.prefix_len), region.copied().unwrap_or(0)))
            .collect();
        let mut written = 0;
        for (&(data, len), &region) in &wanted {
            if self.geo_current.get(&(data, len)) != Some(&region) {
                self.geo
                    .insert(&LpmKey::new(len, data), region, 0)
                    .map_err(map_err(GEO_MAP))?;
                self.geo_current.insert((data, len), region);
                written += 1;
            }
        }
        let stale: Vec<([u8; 16], u32)> = self
            .geo_current
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .copied()
            .collect();
        for (data, len) in stale {
            match self.geo.remove(&LpmKey::new(len, data)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(GEO_MAP)(e)),
            }
            self.geo_current.remove(&(data, len));
            written += 1;
        }
        Ok(written)
    }

    /// The counters summed over CPUs.
    pub fn counters(&self) -> Result<Counters, XdpError> {
        sum_counters(&self.counters)
    }

    /// The queries the program answered per entry since the last call, reading at most `max` entries'
    /// per-CPU counters (one system call each), the next call going on from there; entries removed from the
    /// map meanwhile are reported once more with what they answered until then.
    pub fn take_answers(&mut self, max: usize) -> Vec<(EntryKey, u64)> {
        let rotation = &self.rotation;
        self.tally.take(max, |slot| answers::total(rotation, slot))
    }

    /// Attaches to `iface`; returns the mode used. When the data plane pins, the link is pinned too; a
    /// link a previous run left pinned for `iface` in a mode `mode` allows takes the program instead, in
    /// one step, so that no packet meets an interface without it.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<XdpMode, XdpError> {
        if let Some(root) = self.root.clone()
            && let Some((path, was)) = pins::find_link(&root, iface)
        {
            let fits = match mode {
                AttachMode::Auto => true,
                AttachMode::Driver => was == XdpMode::Driver,
                AttachMode::Skb => was == XdpMode::Skb,
            };
            if fits {
                match self.replace_through(&path) {
                    Ok(link) => {
                        info!(
                            iface,
                            mode = mode_name(was),
                            "XDP program replaced through the pinned link"
                        );
                        self.attachments.push(Attachment {
                            iface: iface.into(),
                            mode: was,
                            link,
                            pin: Some(path),
                        });
                        return Ok(was);
                    }
                    // E.g. ENOLINK: the interface it was attached to went away.
                    Err(e) => {
                        warn!(iface, error = %e, "the pinned XDP link cannot take the program: attaching anew")
                    }
                }
            } else {
                warn!(iface, from = mode_name(was), to = ?mode, "the XDP mode changes: detaching and attaching \
                      anew (queries meanwhile go to userspace)");
            }
            pins::unpin_link(&path);
        }
        let prog = self.program_mut()?;
        let try_attach = |prog: &mut Xdp, m: XdpMode| {
            prog.attach(iface, m).map_err(|source| XdpError::Attach {
                iface: iface.into(),
                mode: mode_name(m),
                source,
            })
        };
        let (id, used) = match mode {
            AttachMode::Driver => (try_attach(prog, XdpMode::Driver)?, XdpMode::Driver),
            AttachMode::Skb => (try_attach(prog, XdpMode::Skb)?, XdpMode::Skb),
            AttachMode::Auto if is_virtual(iface) => {
                (try_attach(prog, XdpMode::Skb)?, XdpMode::Skb)
            }
            AttachMode::Auto => match try_attach(prog, XdpMode::Driver) {
                Ok(id) => (id, XdpMode::Driver),
                Err(e) => {
                    warn!(iface, error = %e, "native XDP unavailable, using generic (skb) mode");
                    (try_attach(prog, XdpMode::Skb)?, XdpMode::Skb)
                }
            },
        };
        let link = prog.take_link(id).map_err(XdpError::Program)?;
        let mut link = FdLink::try_from(link).map_err(|e| XdpError::Attach {
            iface: iface.into(),
            mode: mode_name(used),
            source: ProgramError::IOError(io::Error::other(format!(
                "kernel attached without a BPF link: {e}"
            ))),
        })?;
        let mut pin = None;
        if let Some(root) = &self.root {
            let path = link_pin(root, iface, used);
            // Pinning consumes the link; reopen it from the pin so it can be unpinned on shutdown.
            let pinned = link.pin(&path).map_err(|e| XdpError::Pin {
                what: "pinning",
                path: path.clone(),
                source: io::Error::other(e.to_string()),
            })?;
            link = FdLink::from(pinned);
            pin = Some(path);
        }
        info!(iface, mode = mode_name(used), "XDP attached");
        self.attachments.push(Attachment {
            iface: iface.into(),
            mode: used,
            link,
            pin,
        });
        Ok(used)
    }

    /// Gives the link pinned at `path` this program (`BPF_LINK_UPDATE`: atomic for the packets).
    fn replace_through(&mut self, path: &Path) -> Result<FdLink, XdpError> {
        let fail = |what: String| XdpError::Pin {
            what: "replacing the program through",
            path: path.to_path_buf(),
            source: io::Error::other(what),
        };
        let pinned = PinnedLink::from_pin(path).map_err(|e| fail(e.to_string()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| fail(e.to_string()))?;
        let prog = self.program_mut()?;
        let id = prog
            .attach_to_link(link)
            .map_err(|e| fail(format!("{e}: {}", source_chain(&e))))?;
        let link = prog.take_link(id).map_err(XdpError::Program)?;
        FdLink::try_from(link).map_err(|e| fail(e.to_string()))
    }

    /// Ends the start-up, once the table is in the maps and the program attached: a previous run's maps
    /// lose what this run's table does not hold, fresh maps take the place of the pinned ones, and links
    /// to interfaces no longer configured are detached.
    pub fn commit(&mut self) -> Result<(), XdpError> {
        let Some(root) = self.root.clone() else {
            return Ok(());
        };
        for path in pins::links(&root) {
            if !self
                .attachments
                .iter()
                .any(|a| a.pin.as_ref() == Some(&path))
            {
                warn!(link = %path.display(), "detaching XDP from an interface no longer configured");
                pins::unpin_link(&path);
            }
        }
        if self.adopted {
            let leftover: Vec<RecordKey> = {
                let held = self.sync.keys();
                self.records
                    .keys()
                    .filter_map(Result::ok)
                    .filter(|k| !held.contains(k))
                    .collect()
            };
            for k in &leftover {
                match self.records.remove(k) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(map_err(RECORDS_MAP)(e)),
                }
            }
            if !self.geo_set {
                self.set_geo(&PrefixTable::new())?;
            }
            info!(
                removed = leftover.len(),
                "the adopted maps hold this run's table"
            );
        }
        let dir = pin_dir(&root);
        if self.maps_dir.as_ref() != Some(&dir)
            && let Some(staging) = self.maps_dir.take()
        {
            pins::promote(&staging, &dir)?;
            info!(dir = %dir.display(), "fresh maps pinned");
            self.maps_dir = Some(dir.clone());
        }
        pins::remove_other_maps(&root, &dir)
    }

    /// Detaches from every interface and removes every pin under the pin root.
    pub fn shutdown(&mut self) {
        for att in self.attachments.drain(..) {
            if let Some(path) = &att.pin {
                let _ = fs::remove_file(path);
            }
            // Dropping the last link fd detaches the program (the pin is gone, so nothing else holds it).
            drop(att.link);
            info!(iface = %att.iface, mode = mode_name(att.mode), "XDP detached");
        }
        if let Some(root) = self.root.take()
            && let Err(e) = remove_all(&root)
        {
            warn!(error = %e, "cannot remove every pin");
        }
    }

    /// Leaves the program attached and its maps pinned, answering from the last table, for the next
    /// overwatch to take over.
    pub fn leave(mut self) {
        for att in self.attachments.drain(..) {
            info!(iface = %att.iface, mode = mode_name(att.mode), "XDP stays attached");
        }
        // Drop then removes nothing. Without a pin root the links were the fds just dropped: detached.
        self.root = None;
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Pins need a bpffs: refuse clearly where `root` is not on one (e.g. /sys/fs/bpf not mounted), or where
/// this user cannot reach it (systemd mounts /sys/fs/bpf with mode 0700).
fn check_bpffs(root: &Path) -> Result<(), XdpError> {
    let mut probe = root.to_path_buf();
    loop {
        match fs::metadata(&probe) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(XdpError::Pin {
                    what: "this user cannot reach the pin directory (make one it owns and can enter, \
                           see docs/operations.md):",
                    path: root.to_path_buf(),
                    source: e,
                });
            }
            Err(_) => {
                if !probe.pop() {
                    break;
                }
            }
        }
    }
    use nix::sys::statfs::{BPF_FS_MAGIC, statfs};
    if statfs(&probe).is_ok_and(|st| st.filesystem_type() == BPF_FS_MAGIC) {
        return Ok(());
    }
    Err(XdpError::Pin {
        what: "not on a bpffs (mount one: `mount -t bpf bpf /sys/fs/bpf`):",
        path: root.to_path_buf(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })
}

/// Virtual interfaces (lo, veth, bridges, ...) sit on no bus: the kernel's driver info for them has an
/// empty bus address, or there is none. Asked through a socket, which lives in this thread's network
/// namespace; `/sys/class/net` would describe whichever namespace mounted `/sys`, so a process that
/// entered a namespace without remounting it (`nsenter --net`, setns) would judge the wrong interface.
fn is_virtual(iface: &str) -> bool {
    bus_info(iface).is_none_or(|bus| bus.is_empty())
}

/// The interface's bus address from `ETHTOOL_GDRVINFO` (e.g. `0000:00:03.0`), or `None` when the
/// driver does not answer (lo) or there is no such interface.
fn bus_info(iface: &str) -> Option<String> {
    // struct ethtool_drvinfo from <linux/ethtool.h>.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    // SAFETY: as above.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&raw mut info).cast();
    // SAFETY: a plain socket call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `req` names the interface and points at `info`, which outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &raw mut req) };
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    let len = info.bus_info.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.bus_info[..len]).into_owned())
}

/// `CLOCK_MONOTONIC_COARSE` in ns: the clock the program reads with `bpf_ktime_get_coarse_ns`, and
/// the heartbeat's.
pub fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; this clock always exists on Linux ≥ 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_refused_off_a_bpffs() {
        // The temp dir is on an ordinary filesystem; a path below it that does not exist yet is judged
        // by its nearest existing parent.
        let dir = std::env::temp_dir();
        for root in [dir.clone(), dir.join("opengslb-no-such-dir/pins")] {
            let err = check_bpffs(&root).unwrap_err().to_string();
            assert!(err.contains("not on a bpffs"), "{}: {err}", root.display());
        }
        // Where the kernel's bpffs is mounted (as `cargo xtask setup` does), it is accepted.
        let bpffs = Path::new("/sys/fs/bpf");
        let mounted = fs::read_to_string("/proc/self/mounts")
            .is_ok_and(|m| m.lines().any(|l| l.starts_with("bpf /sys/fs/bpf bpf ")));
        if mounted {
            assert!(check_bpffs(bpffs).is_ok());
        } else {
            println!("no bpffs on /sys/fs/bpf: its acceptance is not checked here");
        }
    }
}
