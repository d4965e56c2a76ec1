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

use crate::algo::{Decision, RateQuota};
use crate::keys::KeyScheme;
use crate::memory::MemoryLimiter;
use crate::redis::Usage;

use super::{Limiter, LimiterError, Request, Verdict};

/// The default pre-check slack: 20 % above the authority's burst.
pub const SLACK_PERCENT_DEFAULT: u64 = 20;

/// A local pre-check and deny cache in front of an authoritative limiter.
pub struct HybridLimiter<L> {
    authority: L,
    scheme: KeyScheme,
    local: MemoryLimiter,
    /// Keys the authority refused, and until when (gateway ms).
    denied_until_ms: BTreeMap<Vec<u8>, u64>,
    /// Bound on the deny cache's size, so it cannot grow without limit.
    deny_cache_keys_max: usize,
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
        let widened = quota.burst() + (quota.burst() * slack_percent).div_ceil(100);
        let local = RateQuota::new(widened, quota.interval_ms())?;
        Ok(HybridLimiter {
            authority,
            scheme,
            local: MemoryLimiter::with_seed(local, 0),
            denied_until_ms: BTreeMap::new(),
            deny_cache_keys_max: 100_000,
        })
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
}

impl<L: Limiter> Limiter for HybridLimiter<L> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let key = self.scheme.render(&request.identity, 0)?;
        let now_ms = request.now_ms.max(1);
        if let Some(&until_ms) = self.denied_until_ms.get(&key) {
            if until_ms > now_ms {
                return Ok(Self::local_denial(until_ms - now_ms));
            }
            self.denied_until_ms.remove(&key);
        }
        let local = self.local.check(&key, now_ms, request.cost);
        if !local.allowed {
            return Ok(Self::local_denial(local.retry_after_ms));
        }
        let verdict = self.authority.check(request).await?;
        if !verdict.decision.allowed && verdict.decision.retry_after_ms != u64::MAX {
            if self.denied_until_ms.len() >= self.deny_cache_keys_max {
                // Drop entries that have run out; if none has, forget the cache rather than
                // grow it (forgetting only costs round trips, never correctness).
                self.denied_until_ms
                    .retain(|_, until_ms| *until_ms > now_ms);
                if self.denied_until_ms.len() >= self.deny_cache_keys_max {
                    self.denied_until_ms.clear();
                }
            }
            self.denied_until_ms
                .insert(key, now_ms.saturating_add(verdict.decision.retry_after_ms));
        }
        Ok(verdict)
    }
}
