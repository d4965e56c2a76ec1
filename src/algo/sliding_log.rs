//! Sliding log: one timestamp per admitted unit; a request is admitted when the units inside
//! the trailing window `(now - W, now]` plus its cost stay within L.
//!
//! **Bound.** Exact: at most L units in every trailing window of length W, for any arrival
//! order. The price is memory: up to L timestamps per key (a Redis sorted set in the script).
//!
//! **Clock.** Timestamps are compared with each other, so they must come from one clock: the
//! script uses Redis `TIME`.

use super::{Decision, WindowQuota};

/// Decides one request of `cost` units at `now_ms`. `log` holds the admitted timestamps in
/// ascending order; it is pruned of entries outside the window and, when the request is
/// admitted, `cost` copies of `now_ms` are inserted in order (after a clock step back, later
/// entries stay last). The caller stores `log` afterwards.
pub fn decide(quota: WindowQuota, log: &mut Vec<u64>, now_ms: u64, cost: u64) -> Decision {
    let window_ms = quota.window_ms();
    // Entries at or before now - W have left the window.
    let horizon_ms = now_ms.saturating_sub(window_ms);
    let expired = log.partition_point(|&at| at <= horizon_ms && now_ms >= window_ms);
    log.drain(..expired);
    let used = u64::try_from(log.len()).expect("fits");
    let allowed = used
        .checked_add(cost)
        .is_some_and(|after| after <= quota.limit());
    if allowed {
        // In time order even when the clock stepped back (entries from the "future" stay
        // after it), as the script's sorted set orders them by score.
        let at = log.partition_point(|&entry| entry <= now_ms);
        log.splice(
            at..at,
            std::iter::repeat_n(
                now_ms,
                usize::try_from(cost).expect("cost ≤ limit fits usize"),
            ),
        );
    }
    let used = u64::try_from(log.len()).expect("fits");
    let retry_after_ms = if allowed {
        0
    } else if cost > quota.limit() {
        u64::MAX
    } else {
        // The request fits once `used + cost - limit` of the oldest entries have left.
        let must_leave = usize::try_from(used + cost - quota.limit()).expect("fits");
        log[must_leave - 1] + window_ms - now_ms
    };
    let reset_after_ms = log.last().map_or(0, |newest| newest + window_ms - now_ms);
    Decision {
        allowed,
        remaining: quota.limit() - used,
        retry_after_ms,
        reset_after_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{arrivals, check_steps, max_in_trailing_window};

    /// Runs requests `(now_ms, cost, expected allowed, expected remaining)` in order.
    fn check(limit: u64, window_ms: u64, steps: &[(u64, u64, bool, u64)]) {
        let quota = WindowQuota::new(limit, window_ms).unwrap();
        let mut log = Vec::new();
        check_steps(steps, |now_ms, cost| decide(quota, &mut log, now_ms, cost));
    }

    #[test]
    fn sliding_log_frees_units_exactly_one_window_later() {
        check(
            2,
            1_000,
            &[
                (100, 1, true, 1),
                (600, 1, true, 0),
                (1_099, 1, false, 0),
                (1_100, 1, true, 0),
                (1_599, 1, false, 0),
                (1_600, 1, true, 0),
            ],
        );
    }

    #[test]
    fn sliding_log_counts_cost_and_limit_one() {
        check(
            3,
            100,
            &[
                (0, 2, true, 1),
                (1, 2, false, 1),
                (1, 1, true, 0),
                (1, 0, true, 0),
            ],
        );
        check(
            1,
            10,
            &[
                (5, 1, true, 0),
                (5, 1, false, 0),
                (14, 1, false, 0),
                (15, 1, true, 0),
            ],
        );
    }

    #[test]
    fn sliding_log_retry_after_waits_for_enough_entries() {
        let quota = WindowQuota::new(3, 1_000).unwrap();
        let mut log = Vec::new();
        for now_ms in [0, 100, 200] {
            assert!(decide(quota, &mut log, now_ms, 1).allowed);
        }
        let decision = decide(quota, &mut log, 300, 2);
        assert_eq!(
            (
                decision.allowed,
                decision.retry_after_ms,
                decision.reset_after_ms
            ),
            (false, 800, 900)
        );
        assert_eq!(decide(quota, &mut log, 300, 4).retry_after_ms, u64::MAX);
        // A cost of exactly the limit fits once every entry has left: a finite wait (a
        // mutant answering "never" for cost == limit survived without this line).
        assert_eq!(decide(quota, &mut log, 300, 3).retry_after_ms, 900);
    }

    #[test]
    fn sliding_log_never_exceeds_the_limit_in_any_trailing_window() {
        for seed in 0..20 {
            let quota = WindowQuota::new(5, 1_000).unwrap();
            let mut log = Vec::new();
            let mut admitted = Vec::new();
            for now_ms in arrivals(seed, 2_000, 300) {
                if decide(quota, &mut log, now_ms, 1).allowed {
                    admitted.push(now_ms);
                }
            }
            assert!(
                admitted.len() > 50,
                "seed {seed}: the test must admit something"
            );
            assert_eq!(max_in_trailing_window(&admitted, 1_000), 5, "seed {seed}");
        }
    }
}
