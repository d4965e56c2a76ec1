//! Token bucket with millisecond precision, kept as integer "credit": a full bucket holds
//! `B × T` ms of credit, time adds one ms of credit per ms, and a unit costs T ms of credit.
//! Integer state means the Lua script computes exactly what this function computes.
//!
//! **Bound.** At most `B + ⌊Δ/T⌋` units in any closed interval of length Δ (B at once, then one
//! per T). Equivalent to GCRA with the same quota; the two differ only in what they store.
//!
//! **Clock.** The script uses Redis `TIME` (milliseconds), so gateway skew does not matter;
//! a backward step of the Redis clock adds no credit (elapsed time is clamped at zero) and the
//! stored time never moves backwards.

use super::{Decision, RateQuota};

/// The stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Credit in ms, `0 ..= B × T`.
    pub credit_ms: u64,
    /// When the credit was last brought up to date.
    pub last_ms: u64,
}

/// Decides one request of `cost` units at `now_ms`. A missing state is a full bucket.
/// Returns the decision and the state to store (always stored, with a TTL of
/// `reset_after_ms`, after which a missing key is again a full bucket).
pub fn decide(quota: RateQuota, state: Option<State>, now_ms: u64, cost: u64) -> (Decision, State) {
    let capacity_ms = quota.capacity_ms();
    let interval_ms = quota.interval_ms();
    let (credit_ms, last_ms) = match state {
        Some(state) => {
            let elapsed_ms = now_ms.saturating_sub(state.last_ms);
            (
                capacity_ms.min(state.credit_ms.saturating_add(elapsed_ms)),
                state.last_ms.max(now_ms),
            )
        }
        None => (capacity_ms, now_ms),
    };
    assert!(
        credit_ms <= capacity_ms,
        "credit never exceeds the capacity"
    );
    let needed_ms = cost.checked_mul(interval_ms);
    let allowed =
        needed_ms.is_some_and(|needed_ms| cost <= quota.burst() && needed_ms <= credit_ms);
    let credit_ms = if allowed {
        credit_ms - cost * interval_ms
    } else {
        credit_ms
    };
    let retry_after_ms = if allowed {
        0
    } else if cost > quota.burst() {
        u64::MAX
    } else {
        cost * interval_ms - credit_ms
    };
    let decision = Decision {
        allowed,
        remaining: credit_ms / interval_ms,
        retry_after_ms,
        reset_after_ms: capacity_ms - credit_ms,
    };
    (decision, State { credit_ms, last_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{arrivals, check_steps, max_in_closed_interval};

    /// Runs requests `(now_ms, cost, expected allowed, expected remaining)` in order.
    fn check(burst: u64, interval_ms: u64, steps: &[(u64, u64, bool, u64)]) {
        let quota = RateQuota::new(burst, interval_ms).unwrap();
        let mut state = None;
        check_steps(steps, |now_ms, cost| {
            let (decision, next) = decide(quota, state, now_ms, cost);
            state = Some(next);
            decision
        });
    }

    #[test]
    fn token_bucket_bursts_then_refills_one_per_interval() {
        check(
            3,
            100,
            &[
                (0, 1, true, 2),
                (0, 1, true, 1),
                (0, 1, true, 0),
                (0, 1, false, 0),
                (99, 1, false, 0),
                (100, 1, true, 0),
                (450, 1, true, 2),
            ],
        );
    }

    #[test]
    fn token_bucket_counts_cost_and_refuses_more_than_burst() {
        check(
            5,
            10,
            &[
                (0, 4, true, 1),
                (0, 2, false, 1),
                (10, 2, true, 0),
                (10, 0, true, 0),
            ],
        );
        let quota = RateQuota::new(5, 10).unwrap();
        assert_eq!(decide(quota, None, 0, 6).0.retry_after_ms, u64::MAX);
        // A cost of exactly the burst waits for a full bucket, not forever (a mutant
        // answering "never" for cost == burst survived without this line).
        let (_, state) = decide(quota, None, 0, 1);
        assert_eq!(decide(quota, Some(state), 0, 5).0.retry_after_ms, 10);
    }

    #[test]
    fn token_bucket_ignores_a_clock_that_steps_back() {
        let quota = RateQuota::new(1, 1_000).unwrap();
        let (_, state) = decide(quota, None, 10_000, 1);
        let (decision, state) = decide(quota, Some(state), 5_000, 1);
        assert!(!decision.allowed);
        assert_eq!(state.last_ms, 10_000);
        assert!(decide(quota, Some(state), 11_000, 1).0.allowed);
    }

    #[test]
    fn token_bucket_retry_after_and_reset_after_are_exact() {
        let quota = RateQuota::new(4, 250).unwrap();
        let (_, state) = decide(quota, None, 0, 4);
        let (decision, state) = decide(quota, Some(state), 100, 2);
        assert_eq!(
            (
                decision.allowed,
                decision.retry_after_ms,
                decision.reset_after_ms
            ),
            (false, 400, 900)
        );
        assert!(!decide(quota, Some(state), 499, 2).0.allowed);
        assert!(decide(quota, Some(state), 500, 2).0.allowed);
    }

    #[test]
    fn token_bucket_admits_at_most_burst_plus_elapsed_intervals() {
        for seed in 0..20 {
            let quota = RateQuota::new(4, 50).unwrap();
            let mut state = None;
            let mut admitted = Vec::new();
            for now_ms in arrivals(seed, 2_000, 40) {
                let (decision, next) = decide(quota, state, now_ms, 1);
                state = Some(next);
                if decision.allowed {
                    admitted.push(now_ms);
                }
            }
            for span_ms in [0, 1, 49, 50, 99, 100, 1_000] {
                assert!(
                    max_in_closed_interval(&admitted, span_ms) <= 4 + span_ms / 50,
                    "seed {seed} span {span_ms}"
                );
            }
        }
    }
}
