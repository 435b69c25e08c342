//! The program's maps and the only code that touches their memory through raw pointers. Each accessor
//! returns a plain value or a reference whose validity it argues once, here; the rest of the program is
//! safe code over what they return. (The maps live here, not in `main.rs`, so that each argument sits
//! beside the declaration it rests on, such as `BPF_F_NO_PREALLOC`.)

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
};
use opengslb_common::{
    counters::{COUNTER_COUNT, Counter},
    dns::Scratch,
    frame::Dest,
    maps::{
        GeoKey, ListenKey, MAX_ENTRIES, MAX_GEO, MAX_LISTEN, RecordKey, RecordValue, XdpConfig,
    },
    ratelimit::{MAX_RATE_ENTRIES, RateLimit, RateState, Verdict},
};

/// `BPF_F_NO_PREALLOC`: elements are freed by RCU, so a value being read is never reused for another key
/// while an update replaces it (the aliasing caveat on aya-ebpf's `HashMap::get`).
const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
static RECORDS: HashMap<RecordKey, RecordValue> =
    HashMap::with_max_entries(MAX_ENTRIES, BPF_F_NO_PREALLOC);

#[cfg(not(feature = "variant-layout"))]
#[map]
static LISTEN: HashMap<ListenKey, u8> = HashMap::with_max_entries(MAX_LISTEN, 0);
#[cfg(feature = "variant-layout")]
#[map]
static LISTEN: HashMap<ListenKey, u8> = HashMap::with_max_entries(MAX_LISTEN * 2, 0);

#[map]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

#[map]
static ROTATION: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_ENTRIES, 0);

/// Client prefix (16 bytes, IPv4 mapped as `::ffff:a.b.c.d`) → region id (see `maps::GEO_MAP`).
#[map]
static GEO: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_GEO, 0);

/// Client prefix (16 bytes, see `RateLimit::key`) → its response rate bucket.
#[map]
static RATE: LruHashMap<[u8; 16], RateState> = LruHashMap::with_max_entries(MAX_RATE_ENTRIES, 0);

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

/// The floor program's own counters: answered, passed.
#[map]
static FLOOR_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

// SAFETY (for every per-CPU accessor below): a per-CPU map value is this CPU's alone, and XDP programs
// do not nest on one CPU, so while the program runs nothing else reads or writes it.

/// The program's settings.
#[inline(always)]
pub fn config() -> Option<&'static XdpConfig> {
    let p = CONFIG.get_ptr(0)?;
    // SAFETY: an array map's value stays valid while the program runs; userspace may rewrite it
    // meanwhile, which at worst mixes an old and a new setting for one packet.
    Some(unsafe { &*p })
}

/// This CPU's working memory. Called once per packet: a second call would alias the first's reference.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    let p = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: see above; the entry point takes it once.
    Some(unsafe { &mut *p })
}

/// The records map entry for `key`.
#[inline(always)]
pub fn record(key: &RecordKey) -> Option<&'static RecordValue> {
    let p = RECORDS.get_ptr(key)?;
    // SAFETY: with BPF_F_NO_PREALLOC the element stays valid for this RCU read section (the whole run of
    // the program) even if userspace replaces or deletes it meanwhile; nothing here writes it.
    Some(unsafe { &*p })
}

/// The rotation position of entry `slot` on this CPU, which then moves on by one. The position is the
/// count of this CPU's answers for the entry, which the overwatch sums into its per-name query counts: the
/// per-name counter costs no more than the rotation did.
#[inline(always)]
pub fn next_rotation(slot: u32) -> Option<u32> {
    let p = ROTATION.get_ptr_mut(slot)?;
    // SAFETY: see above.
    unsafe {
        let r = *p;
        *p = r.wrapping_add(1);
        Some(r as u32)
    }
}

/// Whether we answer on the address `key` names.
#[inline(always)]
pub fn listening(cfg: &XdpConfig, dest: Dest) -> bool {
    let inline = match dest {
        Dest::V4(a) => cfg.listens4(a),
        Dest::V6(a) => cfg.listens6(&a),
    };
    inline.unwrap_or_else(|| LISTEN.get_ptr(dest.key()).is_some())
}

/// The region id the geolocation trie gives `key` (0: none). `key` should live in map memory (scratch),
/// as the lookup helper allows: then the paths that filled it leave no different stack behind.
#[inline(always)]
pub fn region(key: &GeoKey) -> u8 {
    // SAFETY: `GeoKey` is `#[repr(C)]` u32 + [u8; 16] with no padding, the layout of `Key<[u8; 16]>`
    // (packed, alignment 1), and at least as aligned: the assertion below pins both.
    let key: &Key<[u8; 16]> = unsafe { &*core::ptr::from_ref(key).cast() };
    GEO.get(key).copied().unwrap_or(0)
}

const _: () = assert!(
    size_of::<GeoKey>() == size_of::<Key<[u8; 16]>>()
        && align_of::<GeoKey>() >= align_of::<Key<[u8; 16]>>()
);

/// Takes one response from the bucket of the client prefix `key` at `now_ns` (a new prefix gets a full
/// bucket), or says what to do instead.
#[inline(always)]
pub fn rate_check(key: &[u8; 16], now_ns: u64, limit: &RateLimit) -> Verdict {
    match RATE.get_ptr_mut(key) {
        // SAFETY: the element stays valid for this RCU read section. Other CPUs may update it at the
        // same time, and the LRU may hand it to another prefix meanwhile: either loses or mixes one
        // update, so a prefix gets a response more or less, never a fault.
        Some(p) => unsafe { (*p).check(now_ns, limit) },
        None => {
            // A full map evicts its least recently used prefix; failing that, the response goes out.
            let _ = RATE.insert(key, RateState::first(now_ns, limit), 0);
            Verdict::Answer
        }
    }
}

/// Adds one to counter `c` on this CPU.
#[inline(always)]
pub fn bump(c: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c.index()) {
        // SAFETY: see above.
        unsafe { *p += 1 };
    }
}

/// The compatible program change of the `variant-program` build: packets seen, in a map of its own.
#[cfg(feature = "variant-program")]
#[map]
static VARIANT_SEEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Counts a packet in the `variant-program` build's own map.
#[cfg(feature = "variant-program")]
#[inline(always)]
pub fn bump_variant() {
    if let Some(p) = VARIANT_SEEN.get_ptr_mut(0) {
        // SAFETY: as for `bump`.
        unsafe { *p += 1 };
    }
}

/// Counts one packet of the floor program: answered or passed.
#[inline(always)]
pub fn bump_floor(answered: bool) {
    if let Some(p) = FLOOR_COUNTERS.get_ptr_mut(u32::from(!answered)) {
        // SAFETY: as for `bump`.
        unsafe { *p += 1 };
    }
}
