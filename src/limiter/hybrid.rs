//! The hybrid limiter of the storage comparison: a local pre-check in process memory in front
//! of Redis, with Redis as the authority for everything the pre-check lets through.
//!
//! Two local parts, both of which can only *deny*:
//! * a deny cache, as Envoy's ratelimit keeps one: a key the authority refused is refused
//!   locally until the authority's retry-after has passed, with no round trip;
//! * a pre-check: a local GCRA over this gateway's own traffic, with the authority's rate and
//!   a burst widened by a slack (default 20 %). This gateway's traffic is part of the total, so
//!   when it alone exceeds the limit by the slack, the authority would refuse too; the slack
//!   absorbs the difference between the gateway's clock and Redis's.
//!
//! **Bound across G gateways.** No over-admission beyond the authority's own bound, for any G:
//! a request is admitted only when the authority admits it. (An asynchronous local *counter*
//! would over-admit by about (G − 1) × rate × sync interval; this design trades that for one
//! round trip per admitted request.) The cost is possible under-admission: a gateway whose own
//! traffic exceeds the limit plus slack is refused locally even if Redis has room because other
//! gateways are idle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::algo::{Decision, RateQuota};
use crate::keys::KeyScheme;
use crate::memory::MemoryLimiter;
use crate::redis::Usage;

use super::{Limiter, LimiterError, Request, Verdict};

/// The default pre-check slack: 20 % above the authority's burst.
pub const SLACK_PERCENT_DEFAULT: u64 = 20;

/// The hybrid's local parts (pre-check and deny cache): one per gateway process, shared by
/// every [`HybridLimiter`] made with [`HybridLimiter::over`], so that concurrent requests
/// (each with its own authority and connection) see one local state.
pub struct HybridLocal {
    scheme: KeyScheme,
    local: MemoryLimiter,
    /// Keys the authority refused, and until when (gateway ms). Never held across an await.
    denied_until_ms: Mutex<BTreeMap<Vec<u8>, u64>>,
    /// Bound on the deny cache's size, so it cannot grow without limit.
    deny_cache_keys_max: usize,
}

impl HybridLocal {
    /// Local parts for an authority whose quota is `quota`, keyed with `scheme`;
    /// `slack_percent` widens the local burst (use [`SLACK_PERCENT_DEFAULT`]).
    pub fn new(
        scheme: KeyScheme,
        quota: RateQuota,
        slack_percent: u64,
    ) -> Result<HybridLocal, crate::algo::QuotaError> {
        let widened = quota.burst() + (quota.burst() * slack_percent).div_ceil(100);
        let local = RateQuota::new(widened, quota.interval_ms())?;
        Ok(HybridLocal {
            scheme,
            local: MemoryLimiter::with_seed(local, 0),
            denied_until_ms: Mutex::new(BTreeMap::new()),
            deny_cache_keys_max: 100_000,
        })
    }

    fn denials(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, u64>> {
        // A panic elsewhere cannot leave the map half-written (every update is one call).
        self.denied_until_ms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The local answer for `request`: `Ok(Err(denial))` when a local part refuses it,
    /// `Ok(Ok(key))` when the authority must decide.
    fn precheck(&self, request: &Request) -> Result<Result<Vec<u8>, Verdict>, LimiterError> {
        let key = self.scheme.render(&request.identity, 0)?;
        let now_ms = request.now_ms.max(1);
        {
            let mut denials = self.denials();
            if let Some(&until_ms) = denials.get(&key) {
                if until_ms > now_ms {
                    return Ok(Err(local_denial(until_ms - now_ms)));
                }
                denials.remove(&key);
            }
        }
        let local = self.local.check(&key, now_ms, request.cost);
        if !local.allowed {
            return Ok(Err(local_denial(local.retry_after_ms)));
        }
        Ok(Ok(key))
    }

    /// Remembers the authority's refusal of `key` until its retry-after has passed.
    fn remember(&self, key: Vec<u8>, now_ms: u64, decision: &Decision) {
        if decision.allowed || decision.retry_after_ms == u64::MAX {
            return;
        }
        let mut denials = self.denials();
        if denials.len() >= self.deny_cache_keys_max {
            // Drop entries that have run out; if none has, forget the cache rather than
            // grow it (forgetting only costs round trips, never correctness).
            denials.retain(|_, until_ms| *until_ms > now_ms);
            if denials.len() >= self.deny_cache_keys_max {
                denials.clear();
            }
        }
        denials.insert(key, now_ms.saturating_add(decision.retry_after_ms));
    }
}

fn local_denial(retry_after_ms: u64) -> Verdict {
    Verdict {
        decision: Decision {
            allowed: false,
            remaining: 0,
            retry_after_ms,
            reset_after_ms: retry_after_ms,
        },
        usage: Usage::default(),
    }
}

/// A local pre-check and deny cache in front of an authoritative limiter.
pub struct HybridLimiter<L> {
    authority: L,
    local: Arc<HybridLocal>,
}

impl<L: Limiter> HybridLimiter<L> {
    /// Wraps `authority`, whose quota is `quota`, keying the local state with `scheme`.
    /// `slack_percent` widens the local burst (use [`SLACK_PERCENT_DEFAULT`]).
    pub fn new(
        authority: L,
        scheme: KeyScheme,
        quota: RateQuota,
        slack_percent: u64,
    ) -> Result<HybridLimiter<L>, crate::algo::QuotaError> {
        let local = HybridLocal::new(scheme, quota, slack_percent)?;
        Ok(HybridLimiter::over(authority, Arc::new(local)))
    }

    /// Wraps `authority` with local parts shared with other limiters of the same process.
    pub fn over(authority: L, local: Arc<HybridLocal>) -> HybridLimiter<L> {
        HybridLimiter { authority, local }
    }
}

impl<L: Limiter> Limiter for HybridLimiter<L> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let key = match self.local.precheck(request)? {
            Ok(key) => key,
            Err(denial) => return Ok(denial),
        };
        let verdict = self.authority.check(request).await?;
        self.local
            .remember(key, request.now_ms.max(1), &verdict.decision);
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::keys::Identity;
    use crate::limiter::atomic::{Algorithm, ScriptClock, ScriptLimiter};
    use crate::model::{Model, NodeConfig};
    use crate::redis::Local;

    fn hybrid(
        burst: u64,
        interval_ms: u64,
    ) -> (HybridLimiter<ScriptLimiter<Local>>, Arc<AtomicU64>) {
        let now_ms = Arc::new(AtomicU64::new(1_700_000_000_000));
        let clock_now = now_ms.clone();
        let model = Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(4))));
        let redis = Local::connect(model, Arc::new(move || clock_now.load(Ordering::SeqCst)));
        let scheme = KeyScheme::parse("rl:$ns:{$user}", 1).unwrap();
        let quota = RateQuota::new(burst, interval_ms).unwrap();
        let authority = ScriptLimiter::new(
            redis,
            scheme.clone(),
            Algorithm::Gcra(quota),
            ScriptClock::Redis,
        );
        (
            HybridLimiter::new(authority, scheme, quota, SLACK_PERCENT_DEFAULT).unwrap(),
            now_ms,
        )
    }

    fn request(now_ms: u64) -> Request {
        Request {
            identity: Identity::new("api").with("user", "9"),
            cost: 1,
            now_ms,
        }
    }

    #[tokio::test]
    async fn hybrid_caches_denials_and_asks_redis_otherwise() {
        let (mut limiter, clock) = hybrid(3, 1_000);
        let t = clock.load(Ordering::SeqCst);
        for _ in 0..3 {
            let verdict = limiter.check(&request(t)).await.unwrap();
            assert!(verdict.decision.allowed);
            assert!(
                verdict.usage.round_trips >= 1,
                "the authority decides every admission"
            );
        }
        let refused = limiter.check(&request(t)).await.unwrap();
        assert!(!refused.decision.allowed);
        assert_eq!(refused.usage.round_trips, 1, "the authority refused it");
        let cached = limiter.check(&request(t + 10)).await.unwrap();
        assert!(!cached.decision.allowed);
        assert_eq!(cached.usage.round_trips, 0, "the deny cache answers");
        assert_eq!(
            cached.decision.retry_after_ms,
            refused.decision.retry_after_ms - 10
        );
        let later = t + refused.decision.retry_after_ms;
        clock.store(later, Ordering::SeqCst);
        assert!(
            limiter
                .check(&request(later))
                .await
                .unwrap()
                .decision
                .allowed
        );
    }

    #[tokio::test]
    async fn hybrids_over_one_local_share_its_deny_cache() {
        // Goal: limiters made per request over one `HybridLocal` (a gateway's process) see
        // one another's denials. Method: on one model, exhaust the authority (burst 2)
        // through one limiter, then ask through a second limiter over the same local parts:
        // it is answered with no round trip; a limiter over fresh local parts asks Redis.
        let t = 1_700_000_000_000;
        let model = Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(4))));
        let scheme = KeyScheme::parse("rl:$ns:{$user}", 1).unwrap();
        let quota = RateQuota::new(2, 1_000).unwrap();
        let authority = || {
            let redis = Local::connect(Arc::clone(&model), Arc::new(move || t));
            ScriptLimiter::new(
                redis,
                scheme.clone(),
                Algorithm::Gcra(quota),
                ScriptClock::Redis,
            )
        };
        let local =
            Arc::new(HybridLocal::new(scheme.clone(), quota, SLACK_PERCENT_DEFAULT).unwrap());
        let mut first = HybridLimiter::over(authority(), Arc::clone(&local));
        for _ in 0..3 {
            first.check(&request(t)).await.unwrap();
        }
        let mut second = HybridLimiter::over(authority(), Arc::clone(&local));
        let shared = second.check(&request(t + 1)).await.unwrap();
        assert!(!shared.decision.allowed);
        assert_eq!(shared.usage.round_trips, 0, "the shared deny cache answers");
        let mut fresh =
            HybridLimiter::new(authority(), scheme.clone(), quota, SLACK_PERCENT_DEFAULT).unwrap();
        let asked = fresh.check(&request(t + 1)).await.unwrap();
        assert!(!asked.decision.allowed);
        assert_eq!(asked.usage.round_trips, 1, "fresh local parts know nothing");
    }

    #[tokio::test]
    async fn hybrid_never_admits_more_than_its_authority_allows() {
        let (mut limiter, clock) = hybrid(4, 50);
        let t = clock.load(Ordering::SeqCst);
        let mut admitted = Vec::new();
        let mut local_answers = 0;
        for now_ms in crate::algo::testing::arrivals(3, 1_500, 30) {
            let now_ms = now_ms - 1_000_000 + t;
            clock.store(now_ms, Ordering::SeqCst);
            let verdict = limiter.check(&request(now_ms)).await.unwrap();
            local_answers += u64::from(verdict.usage.round_trips == 0);
            if verdict.decision.allowed {
                admitted.push(now_ms);
            }
        }
        assert!(local_answers > 0, "some denials were answered locally");
        for span_ms in [0, 49, 50, 500, 5_000] {
            let worst = crate::algo::testing::max_in_closed_interval(&admitted, span_ms);
            assert!(worst <= 4 + span_ms / 50, "{worst} in {span_ms} ms");
        }
    }
}
