//! GCRA (the generic cell rate algorithm): one stored number per key, the theoretical arrival
//! time (TAT). A request of cost c is admitted when `max(TAT, now) + c·T − now ≤ B·T`, and
//! then TAT becomes `max(TAT, now) + c·T`. A denial writes nothing.
//!
//! **Bound.** Exact oracle: at most `B + ⌊Δ/T⌋` units in any closed interval of length Δ.
//! TAT never decreases.
//!
//! **Clock.** The script uses Redis `TIME` in milliseconds. With a single primary the bound is
//! exact; a failover to a primary whose clock is ε ahead admits up to ⌈ε/T⌉ extra.

use super::{Decision, RateQuota};

/// Decides one request of `cost` units at `now_ms` against the stored TAT (`None`: a fresh
/// key). Returns the decision and the TAT to store (`None`: leave the key unchanged).
pub fn decide(
    quota: RateQuota,
    tat_ms: Option<u64>,
    now_ms: u64,
    cost: u64,
) -> (Decision, Option<u64>) {
    let interval_ms = quota.interval_ms();
    let capacity_ms = quota.capacity_ms();
    let tat_ms_now = tat_ms.unwrap_or(now_ms).max(now_ms);
    let used_ms = tat_ms_now - now_ms;
    let allowed = cost <= quota.burst() && used_ms + cost * interval_ms <= capacity_ms;
    let (stored, used_after_ms) = if allowed {
        let new_tat_ms = tat_ms_now + cost * interval_ms;
        assert!(
            tat_ms.is_none_or(|old| new_tat_ms >= old),
            "TAT never decreases"
        );
        (Some(new_tat_ms), used_ms + cost * interval_ms)
    } else {
        (None, used_ms)
    };
    let retry_after_ms = if allowed {
        0
    } else if cost > quota.burst() {
        u64::MAX
    } else {
        used_ms + cost * interval_ms - capacity_ms
    };
    let decision = Decision {
        allowed,
        // A clock that stepped back can leave more than the capacity in use: nothing remains.
        remaining: capacity_ms.saturating_sub(used_after_ms) / interval_ms,
        retry_after_ms,
        reset_after_ms: used_after_ms,
    };
    (decision, stored)
}

/// A decision over several GCRA limits at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiDecision {
    /// The combined decision: allowed only if every limit admits. `remaining` is the smallest
    /// over the limits, `retry_after_ms` the largest wait among the limits that refused, and
    /// `reset_after_ms` the largest.
    pub decision: Decision,
    /// The index of the first limit that refused, if any.
    pub denied_by: Option<usize>,
}

/// Several limits on one request (a user's total, per-model and per-group limits), decided all
/// or nothing: either every limit admits and every TAT advances, or nothing changes. Each
/// limit keeps its own bound `B_i + ⌊Δ/T_i⌋`; a request never spends one limit's quota when
/// another refused it (the bug Envoy's ratelimit #427 describes).
///
/// `limits` pairs each quota with its stored TAT. Returns the decision and, per limit, the
/// TAT to store (`None`: leave unchanged).
pub fn decide_all(
    limits: &[(RateQuota, Option<u64>)],
    now_ms: u64,
    cost: u64,
) -> (MultiDecision, Vec<Option<u64>>) {
    struct Limit {
        quota: RateQuota,
        tat_ms: u64,
        used_ms: u64,
        fits: bool,
    }
    let checked: Vec<Limit> = limits
        .iter()
        .map(|&(quota, tat_ms)| {
            let tat_ms = tat_ms.unwrap_or(now_ms).max(now_ms);
            let used_ms = tat_ms - now_ms;
            let fits = cost <= quota.burst()
                && used_ms + cost * quota.interval_ms() <= quota.capacity_ms();
            Limit {
                quota,
                tat_ms,
                used_ms,
                fits,
            }
        })
        .collect();
    let denied_by = checked.iter().position(|limit| !limit.fits);
    let allowed = denied_by.is_none();
    let mut remaining: Option<u64> = None;
    let mut retry_after_ms = 0u64;
    let mut reset_after_ms = 0u64;
    let mut stores = Vec::with_capacity(checked.len());
    for limit in &checked {
        let interval_ms = limit.quota.interval_ms();
        let used_after_ms = if allowed {
            limit.used_ms + cost * interval_ms
        } else {
            limit.used_ms
        };
        stores.push((allowed && cost > 0).then_some(limit.tat_ms + cost * interval_ms));
        if !limit.fits {
            retry_after_ms = if cost > limit.quota.burst() || retry_after_ms == u64::MAX {
                u64::MAX
            } else {
                retry_after_ms.max(limit.used_ms + cost * interval_ms - limit.quota.capacity_ms())
            };
        }
        let left = limit.quota.capacity_ms().saturating_sub(used_after_ms) / interval_ms;
        remaining = Some(remaining.map_or(left, |smallest| smallest.min(left)));
        reset_after_ms = reset_after_ms.max(used_after_ms);
    }
    let decision = Decision {
        allowed,
        remaining: remaining.unwrap_or(0),
        retry_after_ms,
        reset_after_ms,
    };
    (
        MultiDecision {
            decision,
            denied_by,
        },
        stores,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{arrivals, check_steps, max_in_closed_interval};
    use crate::algo::token_bucket;

    /// Runs requests `(now_ms, cost, expected allowed, expected remaining)` in order.
    fn check(burst: u64, interval_ms: u64, steps: &[(u64, u64, bool, u64)]) {
        let quota = RateQuota::new(burst, interval_ms).unwrap();
        let mut tat = None;
        check_steps(steps, |now_ms, cost| {
            let (decision, stored) = decide(quota, tat, now_ms, cost);
            tat = stored.or(tat);
            decision
        });
    }

    #[test]
    fn gcra_bursts_then_spaces_by_the_interval() {
        check(
            2,
            100,
            &[
                (0, 1, true, 1),
                (0, 1, true, 0),
                (0, 1, false, 0),
                (99, 1, false, 0),
                (100, 1, true, 0),
                (1_000, 2, true, 0),
            ],
        );
    }

    #[test]
    fn gcra_limit_one_same_millisecond_and_cost_above_burst() {
        check(
            1,
            10,
            &[(5, 1, true, 0), (5, 1, false, 0), (15, 1, true, 0)],
        );
        let quota = RateQuota::new(3, 10).unwrap();
        let (decision, stored) = decide(quota, None, 0, 4);
        assert_eq!(
            (decision.allowed, decision.retry_after_ms, stored),
            (false, u64::MAX, None)
        );
        // A cost of exactly the burst waits for an empty TAT, not forever (cargo-mutants'
        // `>` -> `>=` survived without this line).
        let (_, tat) = decide(quota, None, 0, 1);
        assert_eq!(decide(quota, tat, 0, 3).0.retry_after_ms, 10);
    }

    #[test]
    fn gcra_agrees_with_the_token_bucket() {
        for seed in 0..20 {
            let quota = RateQuota::new(5, 30).unwrap();
            let mut tat = None;
            let mut bucket = None;
            for (index, now_ms) in arrivals(seed, 1_000, 50).into_iter().enumerate() {
                let cost = 1 + (index as u64 % 3);
                let (gcra_decision, stored) = decide(quota, tat, now_ms, cost);
                let (bucket_decision, next) = token_bucket::decide(quota, bucket, now_ms, cost);
                assert_eq!(gcra_decision, bucket_decision, "seed {seed} at {now_ms}");
                tat = stored.or(tat);
                bucket = Some(next);
            }
        }
    }

    #[test]
    fn gcra_all_or_nothing_spends_no_quota_on_a_refusal() {
        let total = RateQuota::new(3, 100).unwrap();
        let per_model = RateQuota::new(1, 1_000).unwrap();
        let mut tats = [None, None];
        let mut admitted = 0;
        for _ in 0..3 {
            let limits = [(total, tats[0]), (per_model, tats[1])];
            let (multi, stores) = decide_all(&limits, 10, 1);
            if multi.decision.allowed {
                admitted += 1;
            } else {
                assert_eq!(multi.denied_by, Some(1));
                assert_eq!(multi.decision.retry_after_ms, 1_000);
            }
            for (tat, store) in tats.iter_mut().zip(stores) {
                *tat = store.or(*tat);
            }
        }
        assert_eq!(admitted, 1, "the per-model limit admits one");
        // The refusals did not spend the total: two units of it are still there.
        let (total_alone, _) = decide(total, tats[0], 10, 2);
        assert!(total_alone.allowed);
        let (single, stores) = decide_all(&[(total, None)], 10, 1);
        assert_eq!(single.decision, decide(total, None, 10, 1).0);
        assert_eq!(stores, vec![Some(110)]);
        let (empty, stores) = decide_all(&[], 10, 1);
        assert!(empty.decision.allowed && stores.is_empty());
    }

    #[test]
    fn gcra_all_or_nothing_never_fits_when_one_limit_is_too_small() {
        // A cost above any one limit's burst can never be admitted, whatever the others say:
        // "never" (u64::MAX) wins over every finite wait, in either order of the limits.
        let wide = RateQuota::new(3, 100).unwrap();
        let narrow = RateQuota::new(1, 100).unwrap();
        let (_, spent) = decide(wide, None, 10, 3);
        for limits in [
            [(narrow, None), (wide, spent)],
            [(wide, spent), (narrow, None)],
        ] {
            let (multi, stores) = decide_all(&limits, 10, 2);
            assert!(!multi.decision.allowed);
            assert_eq!(multi.decision.retry_after_ms, u64::MAX, "{limits:?}");
            assert_eq!(stores, vec![None, None]);
        }
        let (multi, _) = decide_all(&[(wide, spent), (narrow, None)], 10, 1);
        assert_eq!(
            (multi.denied_by, multi.decision.retry_after_ms),
            (Some(0), 100),
            "a finite wait when every limit can hold the cost"
        );
    }

    #[test]
    fn gcra_all_or_nothing_peek_writes_nothing() {
        // Cost 0 asks without spending: nothing is stored (the script skips its SET, whose
        // PX would be 0 on a full key, which Redis refuses), and the answer is the remaining
        // room of the tightest limit.
        let total = RateQuota::new(3, 100).unwrap();
        let per_model = RateQuota::new(2, 100).unwrap();
        let (_, tat) = decide(per_model, None, 10, 1);
        let (multi, stores) = decide_all(&[(total, None), (per_model, tat)], 10, 0);
        assert!(multi.decision.allowed);
        assert_eq!(multi.decision.remaining, 1);
        assert_eq!(stores, vec![None, None]);
    }

    #[test]
    fn regression_gcra_after_a_backward_clock_step_has_nothing_remaining() {
        // Postmortem: found by `ratelab explore` (seed 2097). After the clock steps back further
        // than a key's free capacity, TAT - now exceeds the capacity; "remaining" was computed
        // as capacity - used and went negative in Lua (and would underflow here).
        let quota = RateQuota::new(2, 100).unwrap();
        let (_, tat) = decide(quota, None, 10_000, 2);
        let (decision, stored) = decide(quota, tat, 9_000, 1);
        assert_eq!(
            (decision.allowed, decision.remaining, stored),
            (false, 0, None)
        );
        assert_eq!(decision.retry_after_ms, 1_100);
        let (multi, _) = decide_all(&[(quota, tat)], 9_000, 1);
        assert_eq!(multi.decision, decision);
    }

    #[test]
    fn gcra_meets_its_exact_oracle() {
        for seed in 0..20 {
            let quota = RateQuota::new(3, 40).unwrap();
            let mut tat = None;
            let mut admitted = Vec::new();
            for now_ms in arrivals(seed, 2_000, 30) {
                let (decision, stored) = decide(quota, tat, now_ms, 1);
                tat = stored.or(tat);
                if decision.allowed {
                    admitted.push(now_ms);
                }
            }
            for span_ms in [0, 39, 40, 80, 500] {
                assert!(
                    max_in_closed_interval(&admitted, span_ms) <= 3 + span_ms / 40,
                    "seed {seed} span {span_ms}"
                );
            }
        }
    }
}
