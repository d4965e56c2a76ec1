//! new-api's in-memory limiter store (`common/rate-limit.go`, one-api's first-commit code):
//! one map behind one global mutex. The limiters built on it are in
//! `limiter::legacy::in_memory`; it lives here, outside the Redis features, so that its
//! synchronisation comes from `crate::sync` and `loom-tests` can explore it as built.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering};

/// What the one global mutex guards.
#[derive(Debug, Default)]
struct Store {
    /// Key -> Unix seconds of its admissions, oldest first. A BTreeMap so that the cleanup
    /// sweep visits keys in one order on every run.
    queues: BTreeMap<Vec<u8>, Vec<i64>>,
    /// Set by the first `init`; `None` until then (new-api starts no sweep before `Init`).
    expiration_s: Option<i64>,
}

/// new-api's `InMemoryRateLimiter`: one map from key to a queue of Unix seconds behind **one
/// global mutex** shared by every limiter (IP, user, email, model) of the process.
///
/// Known races and anomalies: R11 (the cleanup sweep drops idle keys after 20 minutes even when
/// the window is longer, handing the quota back), R12 (each instance has its own map), a queue
/// longer than a lowered `max` keeps its length (PR #6960), and the sweep holds the one lock
/// for a scan of every key.
pub struct InMemoryRateLimiter {
    store: Mutex<Store>,
    /// Go's unlocked `store != nil`: set once `init` has run.
    initialised: AtomicBool,
}

impl Default for InMemoryRateLimiter {
    fn default() -> InMemoryRateLimiter {
        InMemoryRateLimiter {
            store: Mutex::new(Store::default()),
            initialised: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for InMemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryRateLimiter")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl InMemoryRateLimiter {
    /// An empty limiter, not yet initialised.
    pub fn new() -> Arc<InMemoryRateLimiter> {
        Arc::new(InMemoryRateLimiter::default())
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // Nothing below panics while the lock is held; recover the data if a caller did.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Init(expiration)`: the first call sets the cleanup horizon; later calls do nothing
    /// (in memory mode `rateLimitFactory` calls it first, with 20 minutes).
    ///
    /// Go checks `store == nil` **before** taking the lock, then again under it. Go's plain
    /// read is a data race; safe Rust cannot express one, so the first check is a relaxed
    /// atomic here: the double check's logic as built, without the undefined behaviour.
    pub fn init(&self, expiration_s: i64) {
        if self.initialised.load(Ordering::Relaxed) {
            return;
        }
        let mut store = self.lock();
        if store.expiration_s.is_none() {
            store.expiration_s = Some(expiration_s);
            self.initialised.store(true, Ordering::Relaxed);
        }
    }

    /// The horizon set by the first `init`.
    pub fn expiration_s(&self) -> Option<i64> {
        self.lock().expiration_s
    }

    /// `Request(key, max, duration)` at `now_s`, atomic under the global mutex:
    /// a missing key is created and admitted (even when `max == 0`); a queue shorter than
    /// `max` takes `now_s`; otherwise, if `now_s - oldest >= duration_s`, the oldest is
    /// dropped and `now_s` appended; else deny.
    pub fn request(&self, key: &[u8], max: u64, duration_s: i64, now_s: i64) -> bool {
        let mut store = self.lock();
        let Some(queue) = store.queues.get_mut(key) else {
            // Go reserves `max` slots up front; only the first entry matters here.
            store.queues.insert(key.to_vec(), vec![now_s]);
            return true;
        };
        if u64::try_from(queue.len()).is_ok_and(|length| length < max) {
            queue.push(now_s);
            return true;
        }
        match queue.first() {
            Some(&oldest) if now_s.saturating_sub(oldest) >= duration_s => {
                queue.remove(0);
                queue.push(now_s);
                true
            }
            Some(_) => false,
            // Unreachable in new-api (a queue is born with one entry and never shrinks);
            // Go would index out of range. Admit rather than panic.
            None => {
                queue.push(now_s);
                true
            }
        }
    }

    /// `clearExpiredItems`'s sweep at `now_s` (new-api runs it every 20 minutes): deletes
    /// every key whose queue is empty or whose newest entry is more than the expiration old.
    /// Returns how many keys went. Does nothing before `init`.
    pub fn cleanup(&self, now_s: i64) -> usize {
        let mut store = self.lock();
        let Some(expiration_s) = store.expiration_s else {
            return 0;
        };
        let before = store.queues.len();
        store.queues.retain(|_, queue| {
            queue
                .last()
                .is_some_and(|&newest| now_s.saturating_sub(newest) <= expiration_s)
        });
        before - store.queues.len()
    }

    /// The queue at `key`, oldest first (to inspect).
    pub fn queue(&self, key: &[u8]) -> Option<Vec<i64>> {
        self.lock().queues.get(key).cloned()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.lock().queues.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
