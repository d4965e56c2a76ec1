//! A keyed in-memory GCRA limiter built for contention: sharded maps, one atomic per key, no
//! global lock on the hot path.
//!
//! # Why this shape
//!
//! new-api's memory limiter keeps every key's sliding log behind one global mutex, and its
//! 20-minute cleanup holds that mutex while it scans every key (and drops keys whose window is
//! longer than 20 minutes, race R11). Here:
//!
//! * Keys are spread over [`SHARDS`] shards by hash. A shard is an `RwLock` around a map from
//!   key to an `AtomicU64` holding the key's theoretical arrival time (TAT). A decision takes
//!   the shard's *read* lock and updates the TAT with a compare-and-swap loop, so decisions on
//!   different keys, and on the same key, never wait for each other's locks; only the first
//!   request for a new key takes a shard's write lock, once.
//! * GCRA needs one number per key, so the whole state fits one atomic: there is no window of
//!   time in which a key is half-updated.
//! * [`MemoryLimiter::cleanup`] removes only keys whose TAT is at or before `now`: such a key is
//!   indistinguishable from a missing one (a fresh key starts full), so cleanup can never hand
//!   out quota that a key inside its window still owes. It takes one shard's write lock at a
//!   time, never all of them.
//!
//! **Bound.** Per key, exactly [`crate::algo::gcra`]'s: at most `B + ⌊Δ/T⌋` units in any
//! interval of length Δ, whatever the thread interleaving (checked by loom in `loom-tests/`).
//!
//! **Memory.** A key costs its bytes plus about 48 bytes of map entry (boxed key pointer and
//! length, the atomic, hash-table control byte and load-factor slack); `bytes_per_key` in
//! `ratelab bench` measures it at one million keys.
//!
//! **Determinism.** Keys are hashed with SipHash: [`MemoryLimiter::new`] keys it from the OS
//! (so clients cannot aim keys at one shard or bucket), and [`MemoryLimiter::with_seed`] fixes
//! it, which simulations and loom need (loom replays each interleaving and requires every run
//! to touch the same objects). The only iteration is
//! `retain` in cleanup, whose outcome does not depend on order.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher, RandomState};

use crate::algo::{Decision, RateQuota};
use crate::sync::{AtomicU64, Ordering, RwLock};

/// Number of shards: a power of two well above the core counts this runs on, so two hot keys
/// rarely share a lock's cache line.
pub const SHARDS: usize = 64;

/// TAT value meaning "no state": the key behaves as fresh.
const EMPTY: u64 = 0;

/// How keys are hashed: SipHash either with keys drawn from the OS (production: clients
/// cannot aim keys at one shard), or with fixed keys and a 64-bit seed written first
/// (simulation and loom: same seed, same layout).
#[derive(Clone, Debug)]
enum KeyHasher {
    Random(RandomState),
    Seeded(u64),
}

impl KeyHasher {
    /// The key's hash: computed once per decision, then used both to pick the shard and, as
    /// it is, inside the shard's table (see [`PassThrough`]).
    fn hash_key(&self, key: &[u8]) -> u64 {
        match self {
            KeyHasher::Random(state) => state.hash_one(key),
            KeyHasher::Seeded(seed) => {
                let mut hasher = DefaultHasher::new();
                hasher.write_u64(*seed);
                hasher.write(key);
                hasher.finish()
            }
        }
    }
}

/// A stored key with its precomputed hash.
struct StoredKey {
    hash: u64,
    bytes: Box<[u8]>,
}

/// What the shard tables compare: a stored key, or a borrowed probe with the same hash, so
/// that a lookup neither allocates nor hashes the key a second time.
trait KeyView {
    fn hash_value(&self) -> u64;
    fn bytes(&self) -> &[u8];
}

impl KeyView for StoredKey {
    fn hash_value(&self) -> u64 {
        self.hash
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

struct Probe<'a> {
    hash: u64,
    bytes: &'a [u8],
}

impl KeyView for Probe<'_> {
    fn hash_value(&self) -> u64 {
        self.hash
    }

    fn bytes(&self) -> &[u8] {
        self.bytes
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for StoredKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash_value());
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.hash_value() == other.hash_value() && self.bytes() == other.bytes()
    }
}

impl Eq for dyn KeyView + '_ {}

impl Hash for StoredKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.bytes == other.bytes
    }
}

impl Eq for StoredKey {}

/// The shard tables' hasher: the key's hash was computed already, so it passes through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever used (see the `Hash` impls above); fold anything else in
        // rather than lose it.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type Shard = RwLock<HashMap<StoredKey, AtomicU64, BuildHasherDefault<PassThrough>>>;

/// A keyed GCRA limiter in process memory.
pub struct MemoryLimiter {
    quota: RateQuota,
    hasher: KeyHasher,
    shards: Vec<Shard>,
}

impl MemoryLimiter {
    /// A limiter with the given quota for every key.
    ///
    /// ```
    /// use ratelab::algo::RateQuota;
    /// use ratelab::memory::MemoryLimiter;
    /// let limiter = MemoryLimiter::new(RateQuota::new(2, 500).unwrap());
    /// assert!(limiter.check(b"user:1", 1_000, 1).allowed);
    /// assert!(limiter.check(b"user:1", 1_000, 1).allowed);
    /// assert!(!limiter.check(b"user:1", 1_000, 1).allowed);
    /// ```
    pub fn new(quota: RateQuota) -> MemoryLimiter {
        MemoryLimiter::with_hasher(quota, KeyHasher::Random(RandomState::new()))
    }

    /// A limiter whose key hashing is fixed by `seed`: same seed, same layout, same
    /// behaviour run after run.
    pub fn with_seed(quota: RateQuota, seed: u64) -> MemoryLimiter {
        MemoryLimiter::with_hasher(quota, KeyHasher::Seeded(seed))
    }

    fn with_hasher(quota: RateQuota, hasher: KeyHasher) -> MemoryLimiter {
        MemoryLimiter {
            quota,
            hasher,
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::default()))
                .collect(),
        }
    }

    /// The quota every key gets.
    pub fn quota(&self) -> RateQuota {
        self.quota
    }

    /// Decides one request of `cost` units for `key` at `now_ms` (which must be positive:
    /// zero is the empty marker). Never blocks on other keys' decisions.
    pub fn check(&self, key: &[u8], now_ms: u64, cost: u64) -> Decision {
        assert!(now_ms > EMPTY, "now_ms must be positive");
        let hash = self.hasher.hash_key(key);
        // The middle bits pick the shard: the table inside uses the low bits for its slot and
        // the top seven as tags, so neither loses entropy.
        let shard =
            &self.shards[usize::try_from((hash >> 32) % SHARDS as u64).expect("below SHARDS")];
        let probe = Probe { hash, bytes: key };
        {
            let map = shard
                .read()
                .expect("no code panics while holding a shard lock");
            if let Some(tat) = map.get(&probe as &dyn KeyView) {
                return self.update(tat, now_ms, cost);
            }
        }
        let mut map = shard
            .write()
            .expect("no code panics while holding a shard lock");
        let stored = StoredKey {
            hash,
            bytes: key.into(),
        };
        let tat = map.entry(stored).or_insert_with(|| AtomicU64::new(EMPTY));
        self.update(tat, now_ms, cost)
    }

    /// The compare-and-swap loop: read the TAT, decide, and publish the new TAT only if no
    /// other thread changed it meanwhile; otherwise decide again on the fresher value.
    fn update(&self, tat: &AtomicU64, now_ms: u64, cost: u64) -> Decision {
        let mut current = tat.load(Ordering::Acquire);
        loop {
            let stored = (current != EMPTY).then_some(current);
            let (decision, next) = crate::algo::gcra::decide(self.quota, stored, now_ms, cost);
            let Some(next) = next else {
                return decision;
            };
            match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return decision,
                Err(actual) => current = actual,
            }
        }
    }

    /// Removes every key whose state is equivalent to a fresh key at `now_ms` (TAT ≤ now).
    /// Returns how many keys were removed. Locks one shard at a time.
    pub fn cleanup(&self, now_ms: u64) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = shard
                .write()
                .expect("no code panics while holding a shard lock");
            let before = map.len();
            map.retain(|_, tat| tat.load(Ordering::Acquire) > now_ms);
            removed += before - map.len();
        }
        removed
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .read()
                    .expect("no code panics while holding a shard lock")
                    .len()
            })
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Runs `(key, now_ms, cost, expected allowed)` in order on one limiter.
    fn check(burst: u64, interval_ms: u64, steps: &[(&str, u64, u64, bool)]) -> MemoryLimiter {
        let limiter = MemoryLimiter::new(RateQuota::new(burst, interval_ms).unwrap());
        for &(key, now_ms, cost, allowed) in steps {
            assert_eq!(
                limiter.check(key.as_bytes(), now_ms, cost).allowed,
                allowed,
                "{key} at {now_ms}"
            );
        }
        limiter
    }

    #[test]
    fn memory_limiter_keeps_keys_apart() {
        check(
            1,
            100,
            &[
                ("a", 1, 1, true),
                ("a", 1, 1, false),
                ("b", 1, 1, true),
                ("a", 101, 1, true),
            ],
        );
    }

    #[test]
    fn memory_limiter_keeps_thousands_of_keys_apart() {
        // Goal: keys that share a table group and a tag are still told apart. Method: 20,000
        // keys (about 300 per shard, so the table's 7-bit tags collide) each get their one
        // unit and then a denial. Postmortem: a mutation making the probe's equality always
        // true survived `memory_limiter_keeps_keys_apart`, whose two keys never share a tag.
        let limiter = MemoryLimiter::with_seed(RateQuota::new(1, 100).unwrap(), 3);
        let keys: Vec<String> = (0..20_000).map(|index| format!("user:{index}")).collect();
        for key in &keys {
            assert!(
                limiter.check(key.as_bytes(), 10, 1).allowed,
                "{key} is fresh"
            );
        }
        for key in &keys {
            assert!(
                !limiter.check(key.as_bytes(), 10, 1).allowed,
                "{key} is spent"
            );
        }
        assert_eq!(limiter.len(), keys.len());
        assert!(!limiter.is_empty());
        // The point of the shards: keys spread over all of them, so that two hot keys seldom
        // share a lock. With 20,000 keys each shard's share is near 312; allow 2x either way.
        let sizes: Vec<usize> = limiter
            .shards
            .iter()
            .map(|shard| shard.read().unwrap().len())
            .collect();
        let average = keys.len() / SHARDS;
        assert!(
            sizes
                .iter()
                .all(|&size| size > average / 2 && size < average * 2),
            "{sizes:?}"
        );
    }

    #[test]
    fn shard_tables_tell_apart_keys_whose_hashes_collide() {
        // Goal: two keys with the same 64-bit hash are two entries, and a lookup finds each by
        // its bytes. SipHash collisions cannot be found without its keys, so the test builds
        // the table's entries with a chosen hash; the limiter's own tests cannot reach this.
        let mut table: HashMap<StoredKey, AtomicU64, BuildHasherDefault<PassThrough>> =
            HashMap::default();
        for (bytes, tat) in [(&b"a"[..], 10), (&b"b"[..], 20)] {
            let key = StoredKey {
                hash: 7,
                bytes: bytes.into(),
            };
            assert!(
                table.insert(key, AtomicU64::new(tat)).is_none(),
                "a new key"
            );
        }
        assert_eq!(table.len(), 2);
        let tat_of = |bytes: &[u8]| {
            let probe = Probe { hash: 7, bytes };
            table
                .get(&probe as &dyn KeyView)
                .map(|tat| tat.load(Ordering::Acquire))
        };
        assert_eq!(
            (tat_of(b"a"), tat_of(b"b"), tat_of(b"c")),
            (Some(10), Some(20), None)
        );
        // The write path: a thread that missed on its read lock and then takes the write lock
        // must find the entry another thread inserted meanwhile, not add a second, fresh one
        // (which would hand the key its burst twice).
        let again = StoredKey {
            hash: 7,
            bytes: b"a".as_slice().into(),
        };
        let tat = table.entry(again).or_insert_with(|| AtomicU64::new(EMPTY));
        assert_eq!(tat.load(Ordering::Acquire), 10);
        assert_eq!(table.len(), 2);
    }

    #[test]
    #[should_panic(expected = "now_ms must be positive")]
    fn memory_limiter_refuses_time_zero() {
        // `check`'s documented contract: 0 is the stored "no state" marker, so time starts
        // at 1; a caller passing 0 is told at once instead of getting a silent answer.
        MemoryLimiter::with_seed(RateQuota::new(1, 100).unwrap(), 1).check(b"k", 0, 1);
    }

    #[test]
    fn memory_limiter_agrees_with_gcra() {
        let quota = RateQuota::new(3, 20).unwrap();
        let limiter = MemoryLimiter::new(quota);
        let mut tat = None;
        for (index, now_ms) in crate::algo::testing::arrivals(9, 500, 25)
            .into_iter()
            .enumerate()
        {
            let cost = 1 + index as u64 % 2;
            let (expected, stored) = crate::algo::gcra::decide(quota, tat, now_ms, cost);
            tat = stored.or(tat);
            assert_eq!(limiter.check(b"k", now_ms, cost), expected, "at {now_ms}");
        }
    }

    #[test]
    fn memory_limiter_cleanup_drops_only_keys_back_at_full() {
        let limiter = check(2, 100, &[("idle", 1, 1, true), ("busy", 1_000, 2, true)]);
        // At 150 "idle" is full again (TAT 101); "busy" owes until 1_200.
        assert_eq!(limiter.cleanup(150), 1);
        assert_eq!(limiter.len(), 1);
        assert!(
            !limiter.check(b"busy", 1_100, 2).allowed,
            "cleanup must not refund busy"
        );
        assert_eq!(limiter.cleanup(1_200), 1);
        assert!(limiter.is_empty());
    }

    #[test]
    fn memory_limiter_never_over_admits_under_threads() {
        let limiter = std::sync::Arc::new(MemoryLimiter::new(RateQuota::new(100, 1_000).unwrap()));
        let admitted: usize = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..1_000)
                        .filter(|_| limiter.check(b"hot", 5, 1).allowed)
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .sum();
        assert_eq!(admitted, 100);
    }
}
