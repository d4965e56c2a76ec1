//! Pure decision cores: every rate-limiting algorithm as a function of (quota, state, now, cost).
//!
//! No IO, no async, no clock reads: the caller passes `now_ms` and the stored state, and gets
//! back a [`Decision`] and the state to store. These functions are the reference that the Lua
//! scripts in `lua/` and the in-memory limiters are checked against, so each one states its
//! admission bound in its documentation and checks it in its tests.
//!
//! | Module | State | Admission bound |
//! |---|---|---|
//! | [`fixed_window`] | counter per aligned window | L per aligned window; 2L in a trailing window of length W |
//! | [`sliding_log`] | one timestamp per admitted unit | L in every trailing window of length W |
//! | [`sliding_window`] | current and previous window counters | L per aligned window; 2L in a trailing window |
//! | [`token_bucket`] | credit and last refill time | B + ⌊Δ/T⌋ in any interval of length Δ |
//! | [`gcra`] | theoretical arrival time | B + ⌊Δ/T⌋ in any interval of length Δ |
//! | [`reservation`] | successes and live reservations | M successes in every trailing window |
//!
//! Costs: a request of cost `c` counts as `c` units. Cost 0 is a peek (it is allowed when
//! the state has room for nothing more, and it changes nothing). A cost above the quota's
//! capacity can never be admitted: it is denied with `retry_after_ms = u64::MAX`.

pub mod fixed_window;
pub mod gcra;
pub mod reservation;
pub mod sliding_log;
pub mod sliding_window;
pub mod token_bucket;

use std::fmt;

/// Largest integer a Lua 5.1 number (an IEEE double) holds exactly. Quotas are kept below it
/// so that the Lua scripts compute exactly what these functions compute.
pub const LUA_EXACT_MAX: u64 = 1 << 53;

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Units still available right after this decision.
    pub remaining: u64,
    /// When denied: how long until the same request could be admitted (`u64::MAX`: never,
    /// the cost exceeds the capacity). Zero when allowed.
    pub retry_after_ms: u64,
    /// How long until the state is back to full capacity (for fixed windows: until the window
    /// ends). Also the TTL the stored state needs.
    pub reset_after_ms: u64,
}

/// A quota that cannot be used: the error names the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaError {
    /// The offending field, e.g. `limit`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid quota: {}: {}", self.field, self.problem)
    }
}

impl std::error::Error for QuotaError {}

fn quota_error(field: &'static str, problem: impl Into<String>) -> QuotaError {
    QuotaError {
        field,
        problem: problem.into(),
    }
}

/// "At most `limit` units per `window_ms`": the quota of the window algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowQuota {
    limit: u64,
    window_ms: u64,
}

impl WindowQuota {
    /// A window quota. `limit` and `window_ms` must be positive, and `limit × window_ms` must
    /// stay below 2^53 so that the Lua scripts compute it exactly.
    ///
    /// ```
    /// use ratelab::algo::WindowQuota;
    /// let quota = WindowQuota::new(100, 60_000).unwrap();
    /// assert_eq!(quota.limit(), 100);
    /// assert!(WindowQuota::new(0, 1_000).is_err());
    /// ```
    pub fn new(limit: u64, window_ms: u64) -> Result<WindowQuota, QuotaError> {
        if limit == 0 {
            return Err(quota_error(
                "limit",
                "must be at least 1 (a limit of 0 admits nothing; say \"disabled\" instead)",
            ));
        }
        if window_ms == 0 {
            return Err(quota_error("window_ms", "must be at least 1 ms"));
        }
        if limit
            .checked_mul(window_ms)
            .is_none_or(|product| product >= LUA_EXACT_MAX)
        {
            return Err(quota_error(
                "limit",
                format!("limit × window_ms must stay below 2^53 (got {limit} × {window_ms})"),
            ));
        }
        Ok(WindowQuota { limit, window_ms })
    }

    /// Units per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window length in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }
}

/// "A burst of `burst` units, refilled one unit every `interval_ms`": the quota of the token
/// bucket and GCRA. A steady rate of `burst` per window is `interval_ms = window / burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateQuota {
    burst: u64,
    interval_ms: u64,
}

impl RateQuota {
    /// A rate quota. Both values must be positive and `burst × interval_ms` below 2^53.
    ///
    /// ```
    /// use ratelab::algo::RateQuota;
    /// let quota = RateQuota::new(10, 100).unwrap(); // 10 at once, then 10 per second
    /// assert_eq!(quota.capacity_ms(), 1_000);
    /// ```
    pub fn new(burst: u64, interval_ms: u64) -> Result<RateQuota, QuotaError> {
        if burst == 0 {
            return Err(quota_error("burst", "must be at least 1"));
        }
        if interval_ms == 0 {
            return Err(quota_error("interval_ms", "must be at least 1 ms"));
        }
        if burst
            .checked_mul(interval_ms)
            .is_none_or(|product| product >= LUA_EXACT_MAX)
        {
            return Err(quota_error(
                "burst",
                format!("burst × interval_ms must stay below 2^53 (got {burst} × {interval_ms})"),
            ));
        }
        Ok(RateQuota { burst, interval_ms })
    }

    /// `limit` per `window_ms` as a rate: burst `limit`, one unit every `window_ms / limit`.
    /// The window must be at least `limit` ms so that the interval is a whole millisecond.
    pub fn per_window(limit: u64, window_ms: u64) -> Result<RateQuota, QuotaError> {
        if limit == 0 {
            return Err(quota_error("limit", "must be at least 1"));
        }
        if window_ms < limit {
            return Err(quota_error(
                "window_ms",
                format!(
                    "must be at least the limit ({limit}) so that one unit refills in a whole millisecond"
                ),
            ));
        }
        RateQuota::new(limit, window_ms / limit)
    }

    /// Units that can be admitted at once.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Milliseconds to refill one unit (the emission interval T).
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }

    /// Milliseconds from empty to full: burst × interval.
    pub fn capacity_ms(&self) -> u64 {
        self.burst * self.interval_ms
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the algorithms' tests: a seeded arrival generator and a brute-force
    //! count of admissions in the worst window.

    /// A deterministic sequence of arrival times: bursts and gaps drawn from a splitmix64
    /// stream, so that every test sees the same "random" traffic.
    pub fn arrivals(seed: u64, count: usize, gap_ms_max: u64) -> Vec<u64> {
        let mut state = seed;
        let mut now_ms = 1_000_000;
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // Half the arrivals land on the same millisecond as the previous one: bursts.
            if z.is_multiple_of(2) {
                now_ms += (z >> 1) % (gap_ms_max + 1);
            }
            times.push(now_ms);
        }
        times
    }

    /// Runs requests `(now_ms, cost, expected allowed, expected remaining)` in order through
    /// `decide`, which holds the algorithm's quota and state, and checks each decision.
    pub fn check_steps(
        steps: &[(u64, u64, bool, u64)],
        mut decide: impl FnMut(u64, u64) -> super::Decision,
    ) {
        for &(now_ms, cost, allowed, remaining) in steps {
            let decision = decide(now_ms, cost);
            assert_eq!(
                (decision.allowed, decision.remaining),
                (allowed, remaining),
                "at {now_ms} cost {cost}"
            );
        }
    }

    /// The most admissions inside any half-open window `(t - span, t]` (sorted input).
    pub fn max_in_trailing_window(admitted_ms: &[u64], span_ms: u64) -> u64 {
        let mut best = 0;
        let mut start = 0;
        for end in 0..admitted_ms.len() {
            while admitted_ms[end] - admitted_ms[start] >= span_ms {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        u64::try_from(best).expect("fits")
    }

    /// The most admissions inside any closed interval `[t, t + span]` (sorted input).
    pub fn max_in_closed_interval(admitted_ms: &[u64], span_ms: u64) -> u64 {
        let mut best = 0;
        let mut start = 0;
        for end in 0..admitted_ms.len() {
            while admitted_ms[end] - admitted_ms[start] > span_ms {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        u64::try_from(best).expect("fits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_errors_name_the_field_and_the_problem() {
        let error = WindowQuota::new(0, 1_000).unwrap_err();
        assert_eq!(error.field, "limit");
        assert_eq!(
            error.to_string(),
            format!("invalid quota: limit: {}", error.problem)
        );
        assert!(error.to_string().contains("at least 1"), "{error}");
    }

    #[test]
    fn per_window_spreads_the_limit_over_the_window() {
        // `limit` per `window_ms` becomes a burst of `limit` refilled every window / limit
        // ms, rounded down (a faster refill, never a slower one).
        let quota = RateQuota::per_window(5, 1_000).unwrap();
        assert_eq!((quota.burst(), quota.interval_ms()), (5, 200));
        let quota = RateQuota::per_window(3, 1_000).unwrap();
        assert_eq!((quota.burst(), quota.interval_ms()), (3, 333));
        // The edge: one unit per millisecond is still whole.
        let quota = RateQuota::per_window(4, 4).unwrap();
        assert_eq!((quota.burst(), quota.interval_ms()), (4, 1));
        assert_eq!(RateQuota::per_window(5, 4).unwrap_err().field, "window_ms");
        assert_eq!(RateQuota::per_window(0, 1_000).unwrap_err().field, "limit");
    }
}
