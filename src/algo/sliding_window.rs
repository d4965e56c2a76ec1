//! Sliding window counter: the current aligned window's count plus the previous window's
//! count weighted by how much of the trailing window still overlaps it (Cloudflare's
//! approximation: two numbers per key instead of a log).
//!
//! A request of cost c at elapsed time e into the current window is admitted when
//! `previous × (W − e) + (current + c) × W ≤ L × W`: integer arithmetic, so the Lua script and
//! this function agree exactly.
//!
//! **Bound.** `current ≤ L` always, so at most L per aligned window and at most 2L in any
//! trailing window of length W. In practice it is far closer to L than a fixed window.

use super::{Decision, WindowQuota};

/// The stored state: the current window's start and the two counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Start of the current window, in ms.
    pub window_start_ms: u64,
    /// Units admitted in the current window.
    pub current: u64,
    /// Units admitted in the window before it.
    pub previous: u64,
}

/// Decides one request of `cost` units at `now_ms`. Returns the decision and the state to store.
pub fn decide(
    quota: WindowQuota,
    state: Option<State>,
    now_ms: u64,
    cost: u64,
) -> (Decision, State) {
    let window_ms = quota.window_ms();
    let limit = quota.limit();
    let window_start_ms = now_ms - now_ms % window_ms;
    let (mut current, previous) = match state {
        Some(state) if state.window_start_ms == window_start_ms => (state.current, state.previous),
        Some(state) if state.window_start_ms + window_ms == window_start_ms => (0, state.current),
        _ => (0, 0),
    };
    let elapsed_ms = now_ms - window_start_ms;
    // Everything is scaled by W; products stay below 2^53 because L × W does.
    let budget = limit * window_ms;
    let weighted = previous * (window_ms - elapsed_ms) + current * window_ms;
    let allowed = cost <= limit && weighted + cost * window_ms <= budget;
    if allowed {
        current += cost;
    }
    let weighted_after = previous * (window_ms - elapsed_ms) + current * window_ms;
    let remaining = (budget - weighted_after.min(budget)) / window_ms;
    let retry_after_ms = if allowed {
        0
    } else if cost > limit {
        u64::MAX
    } else {
        retry_after(limit, window_ms, elapsed_ms, current, previous, cost)
    };
    // Both counts matter until the current window has become "previous" and then aged out.
    let reset_after_ms = window_ms - elapsed_ms + window_ms;
    let decision = Decision {
        allowed,
        remaining,
        retry_after_ms,
        reset_after_ms,
    };
    (
        decision,
        State {
            window_start_ms,
            current,
            previous,
        },
    )
}

/// The wait until a denied request of `cost` would fit, assuming nothing else is admitted.
fn retry_after(
    limit: u64,
    window_ms: u64,
    elapsed_ms: u64,
    current: u64,
    previous: u64,
    cost: u64,
) -> u64 {
    let budget = limit * window_ms;
    if current + cost <= limit && previous > 0 {
        // Still in this window: need previous × (W − e') ≤ (L − current − cost) × W.
        let room = (limit - current - cost) * window_ms;
        // Smallest e' with previous × (W − e') ≤ room: e' ≥ W − room / previous.
        let overlap_max = room / previous;
        let elapsed_needed = window_ms - overlap_max.min(window_ms);
        return elapsed_needed.saturating_sub(elapsed_ms).max(1);
    }
    // In the next window, `current` becomes the previous count: need
    // current × (W − e'') + cost × W ≤ budget.
    let until_next_ms = window_ms - elapsed_ms;
    if current == 0 {
        return until_next_ms;
    }
    let room = budget - cost * window_ms;
    let overlap_max = room / current;
    until_next_ms + (window_ms - overlap_max.min(window_ms))
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
    fn sliding_window_weights_the_previous_window() {
        // 10 in window 0; at 1_500 half of them still count, so 5 more fit, not 10.
        let mut steps = vec![(900, 10, true, 0)];
        steps.extend((0..5).map(|i| (1_500, 1, true, 4 - i)));
        steps.push((1_500, 1, false, 0));
        // At 1_900 only 10 % of the old window counts: 1 unit, plus 5 current.
        steps.push((1_900, 4, true, 0));
        check(10, 1_000, &steps);
    }

    #[test]
    fn sliding_window_forgets_windows_older_than_the_previous() {
        check(2, 100, &[(50, 2, true, 0), (250, 2, true, 0)]);
    }

    #[test]
    fn sliding_window_limit_one_and_cost_edges() {
        check(
            1,
            100,
            &[
                (0, 1, true, 0),
                (99, 1, false, 0),
                (100, 1, false, 0),
                (200, 1, true, 0),
            ],
        );
        let quota = WindowQuota::new(3, 100).unwrap();
        assert_eq!(decide(quota, None, 0, 4).0.retry_after_ms, u64::MAX);
        // A cost of exactly the limit fits once this window's one unit has slid out: a
        // finite wait of at most two windows (cargo-mutants' `>` -> `>=` survived without).
        let (_, state) = decide(quota, None, 0, 1);
        let retry_after_ms = decide(quota, Some(state), 0, 3).0.retry_after_ms;
        assert!(retry_after_ms <= 200, "{retry_after_ms}");
    }

    #[test]
    fn sliding_window_retry_after_is_when_the_request_fits() {
        // Costs 1 to 3, so that a denial meets every shape: room left in this window once
        // the previous one slides out, or none until the next window (with this window's
        // count still weighing there). Postmortem: with cost 2 only, a current count one
        // below the limit never occurred, and retry_after's `&&` -> `||` (which then
        // subtracts past zero) survived.
        let quota = WindowQuota::new(10, 1_000).unwrap();
        let (mut in_this_window, mut in_the_next) = (0, 0);
        for seed in 0..10 {
            let mut state = None;
            for (index, now_ms) in arrivals(seed, 400, 120).into_iter().enumerate() {
                let cost = 1 + index as u64 % 3;
                let (decision, next) = decide(quota, state, now_ms, cost);
                if !decision.allowed {
                    let wait = decision.retry_after_ms;
                    assert!(
                        !decide(quota, Some(next), now_ms + wait - 1, cost).0.allowed,
                        "seed {seed}: too early at {now_ms}+{wait}"
                    );
                    assert!(
                        decide(quota, Some(next), now_ms + wait, cost).0.allowed,
                        "seed {seed}: not yet at {now_ms}+{wait}"
                    );
                    if (now_ms + wait) / 1_000 == now_ms / 1_000 {
                        in_this_window += 1;
                    } else {
                        in_the_next += 1;
                    }
                }
                state = Some(next);
            }
        }
        assert!(
            in_this_window > 20 && in_the_next > 20,
            "both kinds of wait: {in_this_window} in this window, {in_the_next} in the next"
        );
    }

    #[test]
    fn sliding_window_reset_after_is_when_the_state_stops_mattering() {
        // `reset_after_ms` is the key's TTL: the stored counts weigh on decisions until then
        // (a full-limit request is still refused one millisecond before) and not after.
        let quota = WindowQuota::new(10, 1_000).unwrap();
        let mut checked = 0;
        for seed in 0..10 {
            let mut state = None;
            for (index, now_ms) in arrivals(seed, 300, 150).into_iter().enumerate() {
                let (decision, next) = decide(quota, state, now_ms, 1 + index as u64 % 3);
                state = Some(next);
                let reset_ms = now_ms + decision.reset_after_ms;
                let full = decide(quota, Some(next), reset_ms, 10).0;
                assert!(
                    full.allowed,
                    "seed {seed}: state still weighs at {reset_ms}"
                );
                if next.current > 0 {
                    checked += 1;
                    assert!(
                        !decide(quota, Some(next), reset_ms - 1, 10).0.allowed,
                        "seed {seed}: state already forgotten at {reset_ms} - 1"
                    );
                }
            }
        }
        assert!(checked > 1_000, "{checked}");
    }

    #[test]
    fn sliding_window_stays_within_its_bounds() {
        for seed in 0..20 {
            let quota = WindowQuota::new(8, 1_000).unwrap();
            let mut state = None;
            let mut admitted = Vec::new();
            for now_ms in arrivals(seed, 3_000, 100) {
                let (decision, next) = decide(quota, state, now_ms, 1);
                state = Some(next);
                if decision.allowed {
                    admitted.push(now_ms);
                }
            }
            assert!(
                max_in_trailing_window(&admitted, 1_000) <= 16,
                "seed {seed}"
            );
            for window in admitted.chunk_by(|a, b| a / 1_000 == b / 1_000) {
                assert!(window.len() <= 8, "seed {seed}");
            }
        }
    }
}
