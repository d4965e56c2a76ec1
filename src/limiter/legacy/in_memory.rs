//! new-api's in-memory limiter (`common/rate-limit.go`, one-api's first-commit code) and the
//! memory-mode limiters built on it: `memoryRateLimiter` (paths A/B) and
//! `memoryRateLimitHandler` (path C).

use std::sync::Arc;

use crate::algo::Decision;
use crate::keys::KeyScheme;
use crate::limiter::{Limiter, LimiterError, OutcomeLimiter, Request, Verdict};
use crate::redis::Usage;

use super::list_log::ListLogQuota;
use super::model_request::ModelQuota;
use super::{NEWAPI_KEY_TTL_S, render_key};

/// The store lives in `crate::newapi_memory` (no Redis, no tokio) so that `loom-tests` can
/// model it; it is re-exported here beside the limiters built on it.
pub use crate::newapi_memory::InMemoryRateLimiter;

fn unix_seconds(now_ms: u64) -> i64 {
    i64::try_from(now_ms / 1_000).expect("u64 ms / 1000 fits i64")
}

fn decision(allowed: bool, window_s: u64) -> Decision {
    Decision {
        allowed,
        // new-api's memory limiter answers yes or no; it never says how much is left or when.
        remaining: 0,
        retry_after_ms: if allowed { 0 } else { window_s * 1_000 },
        reset_after_ms: window_s * 1_000,
    }
}

/// new-api's `memoryRateLimiter` (paths A and B in memory mode): one `Request(mark + ip, max,
/// duration)` per request, keyed `<mark><ip>` (or `SR:user:<id>`). Zero round trips.
///
/// Known races: R11 (cleanup shorter than the window), R12 (no shared state between
/// instances), R14 (spoofable client IP); `max == 0` admits about one per window.
pub struct MemoryListLogLimiter {
    store: Arc<InMemoryRateLimiter>,
    scheme: KeyScheme,
    quota: ListLogQuota,
}

impl MemoryListLogLimiter {
    /// Path A in memory mode on `store`; like `rateLimitFactory`, calls `init(20 min)`.
    pub fn newapi_ip(store: Arc<InMemoryRateLimiter>, quota: ListLogQuota) -> MemoryListLogLimiter {
        store.init(NEWAPI_KEY_TTL_S);
        MemoryListLogLimiter {
            store,
            scheme: KeyScheme::parse("$ns$ip", 1).expect("a valid template"),
            quota,
        }
    }

    /// Path B in memory mode: key `<mark>:user:<id>`.
    pub fn newapi_user(
        store: Arc<InMemoryRateLimiter>,
        quota: ListLogQuota,
    ) -> MemoryListLogLimiter {
        store.init(NEWAPI_KEY_TTL_S);
        MemoryListLogLimiter {
            store,
            scheme: KeyScheme::parse("$ns:user:$user", 1).expect("a valid template"),
            quota,
        }
    }
}

impl Limiter for MemoryListLogLimiter {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let key = render_key(&self.scheme, &request.identity)?;
        let duration_s = i64::try_from(self.quota.duration_s()).expect("validated");
        let allowed = self.store.request(
            &key,
            self.quota.max(),
            duration_s,
            unix_seconds(request.now_ms),
        );
        Ok(Verdict {
            decision: decision(allowed, self.quota.duration_s()),
            usage: Usage::default(),
        })
    }
}

/// A memory-mode admission: the user whose success is recorded on completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryModelTicket {
    user: Vec<u8>,
}

/// new-api's `memoryRateLimitHandler` (path C in memory mode), on one shared store:
///
/// 1. `init(D)` (a no-op once anything has initialised the store);
/// 2. N > 0: `Request("MRRL<user>", N, D)`, deny on false;
/// 3. always: `Request("MRRLS<user>_check", M, D)`, deny on false. This **records every
///    admission**, so the "success" limit counts failures too, and M = 0 means about one per
///    window, not unlimited;
/// 4. on success only: `Request("MRRLS<user>", M, D)`, result ignored, key never read.
///
/// The total check runs first, so a request the success check denies has already spent a
/// total slot (Redis mode is the other way round). Zero round trips.
///
/// Known races and anomalies: R11 (windows above 20 minutes lose their keys to the sweep),
/// R12 (per-instance state), R5 (per-user keys shared across groups, PR #6960).
pub struct MemoryModelLimiter {
    store: Arc<InMemoryRateLimiter>,
    quota: ModelQuota,
}

impl MemoryModelLimiter {
    /// The model limit of `quota` on `store`.
    pub fn new(store: Arc<InMemoryRateLimiter>, quota: ModelQuota) -> MemoryModelLimiter {
        MemoryModelLimiter { store, quota }
    }

    fn user(request: &Request) -> Result<Vec<u8>, LimiterError> {
        render_key(
            &KeyScheme::parse("$user", 1).expect("a valid template"),
            &request.identity,
        )
    }

    fn window_s(&self) -> i64 {
        i64::try_from(self.quota.window_s()).expect("validated")
    }
}

fn with_prefix(prefix: &[u8], user: &[u8], suffix: &[u8]) -> Vec<u8> {
    [prefix, user, suffix].concat()
}

impl OutcomeLimiter for MemoryModelLimiter {
    type Ticket = MemoryModelTicket;

    async fn admit(
        &mut self,
        request: &Request,
    ) -> Result<(Verdict, Option<MemoryModelTicket>), LimiterError> {
        let user = MemoryModelLimiter::user(request)?;
        let now_s = unix_seconds(request.now_ms);
        let window_s = self.window_s();
        self.store.init(window_s);
        let total = self.quota.total_max();
        let allowed = (total == 0
            || self
                .store
                .request(&with_prefix(b"MRRL", &user, b""), total, window_s, now_s))
            && self.store.request(
                &with_prefix(b"MRRLS", &user, b"_check"),
                self.quota.success_max(),
                window_s,
                now_s,
            );
        let verdict = Verdict {
            decision: decision(allowed, self.quota.window_s()),
            usage: Usage::default(),
        };
        Ok((verdict, allowed.then_some(MemoryModelTicket { user })))
    }

    async fn complete(
        &mut self,
        ticket: MemoryModelTicket,
        succeeded: bool,
        now_ms: u64,
    ) -> Result<Usage, LimiterError> {
        if succeeded {
            // The result is ignored and this key is never read: dead state, as in new-api.
            let _ = self.store.request(
                &with_prefix(b"MRRLS", &ticket.user, b""),
                self.quota.success_max(),
                self.window_s(),
                unix_seconds(now_ms),
            );
        }
        Ok(Usage::default())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::block_on;
    use super::*;
    use crate::keys::Identity;

    /// `(key, max, duration_s, now_s, allowed)` in order on one store.
    fn check(steps: &[(&str, u64, i64, i64, bool)]) -> Arc<InMemoryRateLimiter> {
        let store = InMemoryRateLimiter::new();
        for (index, &(key, max, duration_s, now_s, allowed)) in steps.iter().enumerate() {
            assert_eq!(
                store.request(key.as_bytes(), max, duration_s, now_s),
                allowed,
                "step {index}: {key} at {now_s}"
            );
        }
        store
    }

    #[test]
    fn request_is_a_sliding_log_capped_at_max() {
        let store = check(&[
            ("a", 2, 10, 100, true),
            ("a", 2, 10, 101, true),
            ("a", 2, 10, 109, false),
            ("a", 2, 10, 110, true),  // 110 - 100 >= 10: drop 100
            ("a", 2, 10, 110, false), // oldest is 101
            ("b", 2, 10, 110, true),
            ("a", 2, 10, 111, true),
        ]);
        assert_eq!(store.queue(b"a"), Some(vec![110, 111]));
    }

    #[test]
    fn max_zero_admits_a_missing_key_then_one_per_window() {
        check(&[
            ("z", 0, 60, 0, true),
            ("z", 0, 60, 59, false),
            ("z", 0, 60, 60, true),
            ("z", 0, 60, 61, false),
        ]);
    }

    #[test]
    fn a_lowered_max_keeps_the_long_queue_and_over_admits() {
        let store = check(&[
            ("u", 3, 60, 0, true),
            ("u", 3, 60, 10, true),
            ("u", 3, 60, 20, true),
            // max drops to 1: the queue keeps 3 entries, the check compares against 0 s.
            ("u", 1, 60, 60, true),
            ("u", 1, 60, 70, true),
        ]);
        assert_eq!(store.queue(b"u").map(|queue| queue.len()), Some(3));
    }

    #[test]
    fn init_first_call_wins_and_cleanup_causes_r11() {
        let store = InMemoryRateLimiter::new();
        assert_eq!(store.cleanup(1_000_000), 0, "no sweep before init");
        store.init(1_200);
        store.init(60);
        assert_eq!(store.expiration_s(), Some(1_200));
        // A 1-per-hour window: admitted at 0, denied at 1000 s.
        assert!(store.request(b"slow", 1, 3_600, 0));
        assert!(store.request(b"busy", 5, 60, 1_000));
        assert!(!store.request(b"slow", 1, 3_600, 1_000));
        // At 1200 s the newest entry is exactly 1200 s old: kept.
        assert_eq!(store.cleanup(1_200), 0);
        // At 1201 s it goes, mid-window: the quota comes back (R11).
        assert_eq!(store.cleanup(1_201), 1);
        assert!(store.request(b"slow", 1, 3_600, 1_202));
        assert_eq!(store.len(), 2);
        assert_eq!(store.cleanup(10_000), 2);
        assert!(store.is_empty());
    }

    fn model_request(now_s: u64) -> Request {
        Request {
            identity: Identity::new("model").with("user", "7"),
            cost: 1,
            now_ms: now_s * 1_000,
        }
    }

    #[test]
    fn memory_model_limit_counts_failures_and_checks_total_first() {
        let store = InMemoryRateLimiter::new();
        // N = 3, M = 2, 1 minute.
        let mut limiter = MemoryModelLimiter::new(store.clone(), ModelQuota::new(3, 2, 1).unwrap());
        let (verdict, ticket) = block_on(limiter.admit(&model_request(0))).unwrap();
        assert!(verdict.decision.allowed);
        assert_eq!(verdict.usage, Usage::default());
        // The first admission failed upstream: it still counted against the "success" check.
        block_on(limiter.complete(ticket.unwrap(), false, 1_000)).unwrap();
        assert_eq!(store.queue(b"MRRLS7"), None);
        let (verdict, ticket) = block_on(limiter.admit(&model_request(1))).unwrap();
        assert!(verdict.decision.allowed);
        block_on(limiter.complete(ticket.unwrap(), true, 2_000)).unwrap();
        assert_eq!(store.queue(b"MRRLS7"), Some(vec![2]));
        // Third: the total (3) passes and is spent, the success check (2) denies.
        let (verdict, ticket) = block_on(limiter.admit(&model_request(2))).unwrap();
        assert!(!verdict.decision.allowed);
        assert!(ticket.is_none());
        assert_eq!(store.queue(b"MRRL7"), Some(vec![0, 1, 2]));
        assert_eq!(store.queue(b"MRRLS7_check"), Some(vec![0, 1]));
        // Init(D = 60) ran first on this store, so it set the horizon.
        assert_eq!(store.expiration_s(), Some(60));
    }

    #[test]
    fn memory_model_with_m_zero_admits_one_per_window_and_n_zero_skips_total() {
        let store = InMemoryRateLimiter::new();
        store.init(NEWAPI_KEY_TTL_S);
        let mut limiter = MemoryModelLimiter::new(store.clone(), ModelQuota::new(0, 0, 1).unwrap());
        let allowed = |limiter: &mut MemoryModelLimiter, now_s| {
            block_on(limiter.admit(&model_request(now_s)))
                .unwrap()
                .0
                .decision
                .allowed
        };
        assert!(allowed(&mut limiter, 0));
        assert!(!allowed(&mut limiter, 30));
        assert!(allowed(&mut limiter, 60));
        assert_eq!(store.queue(b"MRRL7"), None, "N = 0 never touches the total");
        assert_eq!(store.expiration_s(), Some(NEWAPI_KEY_TTL_S));
    }

    /// Postmortem, the verdict table's "new-api in-memory list, none: violated" (one gateway,
    /// no fault, up to 4 over at L = 10 per 1 s): the store keeps Unix **seconds**, and
    /// `now - q[0] >= duration` compares whole seconds. Ten requests at 1.998 s fill the
    /// queue with `1`; at 2.000 s, 2 − 1 ≥ 1 ages each `1` out in turn, so ten more pass:
    /// 2L admitted within 2 ms where the stated limit is L per second. Faithful to new-api
    /// (`time.Now().Unix()`), not a bug of ours; the Redis IP list truncates the same way.
    #[test]
    fn memory_list_counts_whole_seconds_so_2l_pass_across_a_second_boundary() {
        let store = InMemoryRateLimiter::new();
        let mut limiter =
            MemoryListLogLimiter::newapi_ip(store.clone(), ListLogQuota::new(10, 1).unwrap());
        let request = |now_ms| Request {
            identity: Identity::new("GA").with("ip", "1.2.3.4"),
            cost: 1,
            now_ms,
        };
        let mut allowed = |now_ms| {
            (0..11)
                .filter(|_| {
                    block_on(limiter.check(&request(now_ms)))
                        .unwrap()
                        .decision
                        .allowed
                })
                .count()
        };
        assert_eq!(allowed(1_998), 10, "the 11th at 1.998 s is denied");
        assert_eq!(allowed(2_000), 10, "2 ms later, ten more");
        assert_eq!(store.queue(b"GA1.2.3.4"), Some(vec![2; 10]));
    }

    #[test]
    fn memory_list_log_keys_by_mark_and_ip() {
        let store = InMemoryRateLimiter::new();
        let mut limiter =
            MemoryListLogLimiter::newapi_ip(store.clone(), ListLogQuota::new(1, 60).unwrap());
        let request = Request {
            identity: Identity::new("GA").with("ip", "1.2.3.4"),
            cost: 1,
            now_ms: 5_000,
        };
        assert!(block_on(limiter.check(&request)).unwrap().decision.allowed);
        assert!(!block_on(limiter.check(&request)).unwrap().decision.allowed);
        assert_eq!(store.queue(b"GA1.2.3.4"), Some(vec![5]));
        assert_eq!(store.expiration_s(), Some(1_200));
        let mut user =
            MemoryListLogLimiter::newapi_user(store.clone(), ListLogQuota::new(1, 60).unwrap());
        let request = Request {
            identity: Identity::new("SR").with("user", "9"),
            cost: 1,
            now_ms: 5_000,
        };
        assert!(block_on(user.check(&request)).unwrap().decision.allowed);
        assert_eq!(store.queue(b"SR:user:9"), Some(vec![5]));
    }
}
