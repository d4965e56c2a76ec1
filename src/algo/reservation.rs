//! Success limits by reservation: the fix for race R1 (new-api checks "successes below M"
//! before the upstream call and records the success after it, so every request in flight
//! passes the check).
//!
//! Admission reserves a slot: it counts the successes inside the trailing window *plus* the
//! live reservations, and admits only if that total is below M. Completion turns the
//! reservation into a success stamped with the completion time, or releases it on failure. A
//! reservation that is never completed (a crashed gateway) is released when its lease expires.
//!
//! **Bound.** Successes completed in any trailing window of length W stay at most M, for any
//! interleaving of admissions and completions, as long as no lease expires before its request
//! completes. Proof sketch: take the successes completed in `(τ − W, τ]`, ordered by admission;
//! at the last one's admission every other one was either still reserved or already a success
//! inside the window, so it saw at least k − 1 slots taken and k − 1 < M. Each lease that
//! expires before a successful completion adds at most one to the bound: choose the lease
//! longer than the slowest upstream call.

use std::collections::BTreeMap;

use super::{Decision, QuotaError, quota_error};

/// "At most `limit` successes per `window_ms`", with reservations held for `lease_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuccessQuota {
    limit: u64,
    window_ms: u64,
    lease_ms: u64,
}

impl SuccessQuota {
    /// A success quota; every value must be positive and `limit × window_ms` below 2^53.
    pub fn new(limit: u64, window_ms: u64, lease_ms: u64) -> Result<SuccessQuota, QuotaError> {
        super::WindowQuota::new(limit, window_ms)?;
        if lease_ms == 0 {
            return Err(quota_error("lease_ms", "must be at least 1 ms"));
        }
        Ok(SuccessQuota {
            limit,
            window_ms,
            lease_ms,
        })
    }

    /// Successes per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window in ms.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// How long a reservation lives without completion.
    pub fn lease_ms(&self) -> u64 {
        self.lease_ms
    }
}

/// The stored state: completed successes and live reservations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Completion times of the successes, by reservation id.
    pub successes: BTreeMap<u64, u64>,
    /// Lease expiry times of the live reservations, by id.
    pub reservations: BTreeMap<u64, u64>,
    /// The last id handed out.
    pub last_id: u64,
}

fn prune(quota: SuccessQuota, state: &mut State, now_ms: u64) {
    if now_ms >= quota.window_ms {
        let horizon_ms = now_ms - quota.window_ms;
        state.successes.retain(|_, at| *at > horizon_ms);
    }
    // A lease that has reached its expiry is released.
    state.reservations.retain(|_, expiry| *expiry > now_ms);
}

/// Admission at `now_ms`: reserves a slot if successes in the window plus live reservations
/// are below the limit. Returns the decision and the reservation id when admitted.
pub fn reserve(quota: SuccessQuota, state: &mut State, now_ms: u64) -> (Decision, Option<u64>) {
    prune(quota, state, now_ms);
    let used = u64::try_from(state.successes.len() + state.reservations.len()).expect("fits");
    let allowed = used < quota.limit;
    let id = allowed.then(|| {
        state.last_id += 1;
        state
            .reservations
            .insert(state.last_id, now_ms + quota.lease_ms);
        state.last_id
    });
    let used_after = used + u64::from(allowed);
    // The earliest moment a slot could free: the oldest success leaving the window, or the
    // earliest lease expiring (a completion may free one sooner).
    let oldest_success = state
        .successes
        .values()
        .min()
        .map(|at| at + quota.window_ms - now_ms);
    let earliest_lease = state
        .reservations
        .values()
        .min()
        .map(|expiry| expiry - now_ms);
    let retry_after_ms = if allowed {
        0
    } else {
        [oldest_success, earliest_lease]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(0)
    };
    let reset_after_ms = state
        .successes
        .values()
        .map(|at| at + quota.window_ms - now_ms)
        .chain(state.reservations.values().map(|expiry| expiry - now_ms))
        .max()
        .unwrap_or(0);
    let decision = Decision {
        allowed,
        remaining: quota.limit - used_after.min(quota.limit),
        retry_after_ms,
        reset_after_ms,
    };
    (decision, id)
}

/// Completion of reservation `id` at `now_ms`. A success is recorded (even if the lease had
/// expired: the request did succeed, and the bound above says what that costs); a failure only
/// releases the slot. Returns whether the reservation was still held.
pub fn complete(
    quota: SuccessQuota,
    state: &mut State,
    id: u64,
    succeeded: bool,
    now_ms: u64,
) -> bool {
    prune(quota, state, now_ms);
    let held = state.reservations.remove(&id).is_some();
    if succeeded {
        state.successes.insert(id, now_ms);
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_while_requests_are_in_flight() {
        // R1: with M = 1, new-api admits every request that arrives before the first
        // completes; reservations admit one.
        let quota = SuccessQuota::new(1, 60_000, 120_000).unwrap();
        let mut state = State::default();
        let (first, id) = reserve(quota, &mut state, 0);
        assert!(first.allowed);
        for now_ms in [1, 10, 1_000] {
            assert!(!reserve(quota, &mut state, now_ms).0.allowed);
        }
        assert!(complete(quota, &mut state, id.unwrap(), true, 30_000));
        assert!(
            !reserve(quota, &mut state, 30_001).0.allowed,
            "the success counts for a window"
        );
        assert!(!reserve(quota, &mut state, 89_999).0.allowed);
        assert!(
            reserve(quota, &mut state, 90_001).0.allowed,
            "it left the window"
        );
    }

    #[test]
    fn a_failure_releases_its_slot_and_a_lease_expires() {
        let quota = SuccessQuota::new(1, 1_000, 500).unwrap();
        let mut state = State::default();
        let (_, id) = reserve(quota, &mut state, 0);
        assert!(complete(quota, &mut state, id.unwrap(), false, 100));
        let (decision, id) = reserve(quota, &mut state, 100);
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 0);
        let denied = reserve(quota, &mut state, 599).0;
        assert_eq!((denied.allowed, denied.retry_after_ms), (false, 1));
        assert!(
            reserve(quota, &mut state, 600).0.allowed,
            "the lease expired at 600"
        );
        assert!(!complete(quota, &mut state, id.unwrap(), false, 700));
    }

    #[test]
    fn success_quota_keeps_its_values_and_refuses_zero() {
        let quota = SuccessQuota::new(3, 1_000, 250).unwrap();
        assert_eq!(
            (quota.limit(), quota.window_ms(), quota.lease_ms()),
            (3, 1_000, 250)
        );
        assert_eq!(
            SuccessQuota::new(3, 1_000, 0).unwrap_err().field,
            "lease_ms"
        );
        assert_eq!(SuccessQuota::new(0, 1_000, 250).unwrap_err().field, "limit");
        assert_eq!(SuccessQuota::new(3, 0, 250).unwrap_err().field, "window_ms");
    }

    #[test]
    fn a_success_leaves_the_window_exactly_one_window_after_it() {
        // The window is `(now - W, now]`: a success stamped at 1_000 counts at 1_999 and not
        // at 2_000, and the denial at 1_999 says so.
        let quota = SuccessQuota::new(1, 1_000, 100).unwrap();
        let mut state = State::default();
        let (_, id) = reserve(quota, &mut state, 950);
        assert!(complete(quota, &mut state, id.unwrap(), true, 1_000));
        let denied = reserve(quota, &mut state, 1_999).0;
        assert_eq!(
            (denied.allowed, denied.retry_after_ms, denied.reset_after_ms),
            (false, 1, 1)
        );
        assert!(reserve(quota, &mut state, 2_000).0.allowed);
    }

    #[test]
    fn retry_after_and_reset_after_are_exact() {
        // Goal: `retry_after_ms` is the first moment a slot frees (a success leaving the
        // window or a lease expiring) and `reset_after_ms` the moment the state is empty.
        // Method: seeded interleavings where leases are shorter than some calls and some
        // calls never complete, so both successes and leases decide the waits; every answer
        // is checked on a copy of the state one millisecond before and at the moment it names.
        let quota = SuccessQuota::new(3, 1_000, 300).unwrap();
        let (mut denials, mut by_success, mut by_lease) = (0, 0, 0);
        for seed in 0..30u64 {
            let mut state = State::default();
            let mut in_flight: Vec<(u64, u64)> = Vec::new();
            let times = crate::algo::testing::arrivals(seed, 300, 60);
            for (step, now_ms) in times.into_iter().enumerate() {
                let step = step as u64;
                in_flight.retain(|&(id, done_ms)| {
                    if done_ms > now_ms {
                        return true;
                    }
                    complete(quota, &mut state, id, (id + seed) % 5 != 0, now_ms);
                    false
                });
                let before = state.clone();
                let (decision, id) = reserve(quota, &mut state, now_ms);
                let held = state.successes.len() + state.reservations.len();
                let mut at_reset = state.clone();
                prune(quota, &mut at_reset, now_ms + decision.reset_after_ms);
                assert_eq!(
                    at_reset,
                    State {
                        last_id: state.last_id,
                        ..State::default()
                    }
                );
                if decision.reset_after_ms > 0 {
                    let mut before_reset = state.clone();
                    prune(
                        quota,
                        &mut before_reset,
                        now_ms + decision.reset_after_ms - 1,
                    );
                    assert_ne!(
                        before_reset.successes.len() + before_reset.reservations.len(),
                        0
                    );
                }
                if let Some(id) = id {
                    // One call in seven never completes (a crashed gateway).
                    if (id + seed) % 7 != 0 {
                        in_flight.push((id, now_ms + (step * 53 + seed) % 500));
                    }
                    continue;
                }
                denials += 1;
                let wait = decision.retry_after_ms;
                assert!(wait > 0, "seed {seed} at {now_ms}: a denial waits");
                let mut early = before.clone();
                assert!(
                    !reserve(quota, &mut early, now_ms + wait - 1).0.allowed,
                    "seed {seed} at {now_ms}: a slot freed before {wait} ms"
                );
                if held == 3 {
                    let mut on_time = before.clone();
                    assert!(
                        reserve(quota, &mut on_time, now_ms + wait).0.allowed,
                        "seed {seed} at {now_ms}: no slot after {wait} ms"
                    );
                }
                let success_frees = state.successes.values().min().map(|at| at + 1_000 - now_ms);
                if success_frees == Some(wait) {
                    by_success += 1;
                } else {
                    by_lease += 1;
                }
            }
        }
        assert!(
            denials > 100 && by_success > 20 && by_lease > 20,
            "the cases must exercise both waits: {denials} denials, {by_success} by a \
             success, {by_lease} by a lease"
        );
    }

    #[test]
    fn successes_in_any_window_stay_within_the_limit() {
        // Random interleavings of admissions and completions (leases longer than any call).
        let quota = SuccessQuota::new(3, 1_000, 1_000_000).unwrap();
        for seed in 0..30u64 {
            let mut state = State::default();
            let mut in_flight: Vec<(u64, u64)> = Vec::new();
            let mut completions = Vec::new();
            let times = crate::algo::testing::arrivals(seed, 600, 40);
            for (step, now_ms) in times.into_iter().enumerate() {
                let step = step as u64;
                in_flight.retain(|&(id, done_ms)| {
                    if done_ms <= now_ms {
                        let succeeded = (id + seed) % 4 != 0;
                        complete(quota, &mut state, id, succeeded, now_ms);
                        if succeeded {
                            completions.push(now_ms);
                        }
                        false
                    } else {
                        true
                    }
                });
                if let (decision, Some(id)) = reserve(quota, &mut state, now_ms) {
                    assert!(decision.allowed);
                    in_flight.push((id, now_ms + (step * 37 + seed) % 900));
                }
            }
            completions.sort_unstable();
            assert!(
                completions.len() > 10,
                "seed {seed}: the test must record successes"
            );
            let worst = crate::algo::testing::max_in_trailing_window(&completions, 1_000);
            assert!(worst <= 3, "seed {seed}: {worst} successes in one window");
        }
    }
}
