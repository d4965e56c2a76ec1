//! Fixed window: one counter per aligned window `[k·W, (k+1)·W)`.
//!
//! **Bound.** At most L units are admitted in each aligned window, so at most 2L in any
//! trailing window of length W (L at the end of one window, L at the start of the next).
//! Denied requests are not counted, so a flood of denials does not extend a lockout.
//!
//! **Clock.** The window is computed from `now_ms`, whoever supplies it: the Lua script takes
//! it from the gateway (so that the window start can be part of the key, as Envoy's
//! ratelimit does) and documents the skew that implies.

use super::{Decision, WindowQuota};

/// The stored state: which window the count belongs to, and the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Start of the counted window, in ms.
    pub window_start_ms: u64,
    /// Units admitted in that window.
    pub count: u64,
}

/// Decides one request of `cost` units at `now_ms` against the stored `state`.
/// Returns the decision and the state to store.
pub fn decide(
    quota: WindowQuota,
    state: Option<State>,
    now_ms: u64,
    cost: u64,
) -> (Decision, State) {
    let window_ms = quota.window_ms();
    let window_start_ms = now_ms - now_ms % window_ms;
    let count = match state {
        Some(state) if state.window_start_ms == window_start_ms => state.count,
        _ => 0,
    };
    let reset_after_ms = window_start_ms + window_ms - now_ms;
    let allowed = count
        .checked_add(cost)
        .is_some_and(|after| after <= quota.limit());
    let count = if allowed { count + cost } else { count };
    let retry_after_ms = if allowed {
        0
    } else if cost > quota.limit() {
        u64::MAX
    } else {
        reset_after_ms
    };
    let decision = Decision {
        allowed,
        remaining: quota.limit() - count,
        retry_after_ms,
        reset_after_ms,
    };
    (
        decision,
        State {
            window_start_ms,
            count,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{arrivals, check_steps, max_in_trailing_window};

    /// Runs requests `(now_ms, cost, expected allowed, expected remaining)` in order.
    fn check(limit: u64, window_ms: u64, steps: &[(u64, u64, bool, u64)]) {
        let quota = WindowQuota::new(limit, window_ms).unwrap();
        let mut state = None;
        check_steps(steps, |now_ms, cost| {
            let (decision, next) = decide(quota, state, now_ms, cost);
            state = Some(next);
            decision
        });
    }

    #[test]
    fn fixed_window_resets_at_the_boundary() {
        check(
            2,
            1_000,
            &[
                (0, 1, true, 1),
                (999, 1, true, 0),
                (999, 1, false, 0),
                (1_000, 1, true, 1),
            ],
        );
    }

    #[test]
    fn fixed_window_counts_cost_and_limit_one() {
        check(
            5,
            100,
            &[
                (10, 3, true, 2),
                (20, 3, false, 2),
                (30, 2, true, 0),
                (30, 0, true, 0),
            ],
        );
        check(
            1,
            100,
            &[
                (0, 1, true, 0),
                (0, 1, false, 0),
                (99, 1, false, 0),
                (100, 1, true, 0),
            ],
        );
    }

    #[test]
    fn fixed_window_cost_above_limit_is_never_admitted() {
        let quota = WindowQuota::new(3, 100).unwrap();
        let (decision, _) = decide(quota, None, 0, 4);
        assert!(!decision.allowed);
        assert_eq!(decision.retry_after_ms, u64::MAX);
    }

    #[test]
    fn fixed_window_retry_after_points_at_the_next_window() {
        let quota = WindowQuota::new(1, 1_000).unwrap();
        let (_, state) = decide(quota, None, 250, 1);
        let (decision, _) = decide(quota, Some(state), 400, 1);
        assert_eq!(
            (
                decision.allowed,
                decision.retry_after_ms,
                decision.reset_after_ms
            ),
            (false, 600, 600)
        );
    }

    #[test]
    fn fixed_window_admits_at_most_two_limits_in_a_trailing_window() {
        for seed in 0..20 {
            let quota = WindowQuota::new(7, 1_000).unwrap();
            let mut state = None;
            let mut admitted = Vec::new();
            for now_ms in arrivals(seed, 2_000, 150) {
                let (decision, next) = decide(quota, state, now_ms, 1);
                state = Some(next);
                if decision.allowed {
                    admitted.push(now_ms);
                }
            }
            assert!(
                max_in_trailing_window(&admitted, 1_000) <= 14,
                "seed {seed}"
            );
        }
        // The bound is reached: L at the end of one window and L at the start of the next.
        let quota = WindowQuota::new(7, 1_000).unwrap();
        let mut state = None;
        let mut admitted = Vec::new();
        for now_ms in [999; 7].into_iter().chain([1_000; 7]) {
            let (decision, next) = decide(quota, state, now_ms, 1);
            state = Some(next);
            assert!(decision.allowed);
            admitted.push(now_ms);
        }
        assert_eq!(max_in_trailing_window(&admitted, 1_000), 14);
    }
}
