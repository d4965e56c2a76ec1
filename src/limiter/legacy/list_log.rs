//! Paths A and B: new-api's sliding log on a Redis LIST, one round trip per command.

use crate::algo::{Decision, QuotaError};
use crate::keys::KeyScheme;
use crate::limiter::{Limiter, LimiterError, Request, Verdict};
use crate::redis::{Cmd, Metered, Redis};

use super::{
    GatewayClock, NEWAPI_KEY_TTL_S, check_count, check_window, parse_newapi_time, read_integer,
    read_oldest, render_key, usage_since, whole_seconds_between, write_ignored,
};

/// "At most `max` admissions in any trailing `duration_s` seconds", as new-api's
/// `maxRequestNum` and `duration` (for example GA = 180 per 180 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListLogQuota {
    max: u64,
    duration_s: u64,
}

impl ListLogQuota {
    /// `max` may be 0 (new-api does not skip it; see [`ListLogLimiter`]). `duration_s` must
    /// be positive and small enough that its milliseconds fit an `i64`.
    pub fn new(max: i64, duration_s: i64) -> Result<ListLogQuota, QuotaError> {
        Ok(ListLogQuota {
            max: check_count("max", max, i64::MAX)?,
            duration_s: check_window("duration_s", duration_s, i64::MAX / 1_000)?,
        })
    }

    /// Admissions per window.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The window in seconds.
    pub fn duration_s(&self) -> u64 {
        self.duration_s
    }
}

/// new-api's `redisRateLimiter` (path A, the IP limiter behind GA/GW/CT/DW/UP) and
/// `userRedisRateLimiter` (path B, the per-user search limiter), command for command:
///
/// ```text
/// LLEN key                        error -> Err (new-api: 500, empty body)
/// below max:  LPUSH now, EXPIRE key 1200                      allow, 3 round trips
/// full:       LINDEX key -1 (any failure reads as "", which fails to parse -> Err)
///             whole seconds since it < duration: EXPIRE 1200  deny,  3 round trips
///             otherwise: LPUSH now, LTRIM 0 max-1, EXPIRE 1200 allow, 5 round trips
/// ```
///
/// Entries are the gateway's local wall clock with a literal `Z` ([`GatewayClock`]); the
/// comparison reparses both sides and truncates to whole seconds. Write results are ignored.
/// `max == 0` is not skipped: `LLEN` is 0, `0 < 0` is false, `LINDEX` on the missing key
/// gives nil, and every request errors (new-api's 500).
///
/// Known races (reference section 4): R2 (two requests read the same aged-out oldest entry),
/// R3 (concurrent admissions below the limit push the list past `max`: no LTRIM on that
/// branch), R6 (gateways in different zones or with skewed clocks), R7 (the key vanishes
/// between LLEN and LINDEX: spurious error), R8 (lost or duplicated writes), R11 (a window
/// above 1200 s outlives the key's TTL), R14 (spoofable client IP, path A).
///
/// Every timestamp of one decision is the request's `now_ms` (new-api reads `time.Now()` a few
/// microseconds apart); the gap between round trips is what the races need, not the stamps.
pub struct ListLogLimiter<R> {
    redis: Metered<R>,
    scheme: KeyScheme,
    quota: ListLogQuota,
    clock: GatewayClock,
    refuse_user_zero: bool,
}

impl<R: Redis> ListLogLimiter<R> {
    /// A list-log limiter on keys from `scheme`.
    pub fn new(
        redis: R,
        scheme: KeyScheme,
        quota: ListLogQuota,
        clock: GatewayClock,
    ) -> ListLogLimiter<R> {
        ListLogLimiter {
            redis: Metered::new(redis),
            scheme,
            quota,
            clock,
            refuse_user_zero: false,
        }
    }

    /// Path A (`redisRateLimiter`): key `rateLimit:<mark><ip>`; the identity's namespace is
    /// the mark (`GA`, `GW`, `CT`...) and its `ip` field the client IP.
    pub fn newapi_ip(redis: R, quota: ListLogQuota, clock: GatewayClock) -> ListLogLimiter<R> {
        ListLogLimiter::new(redis, KeyScheme::newapi_ip(), quota, clock)
    }

    /// Path B (`userRedisRateLimiter`): key `rateLimit:<mark>:user:<id>` (new-api's mark is
    /// `SR`). A request whose `user` is `0` is refused before any Redis call (new-api's 401).
    pub fn newapi_user(redis: R, quota: ListLogQuota, clock: GatewayClock) -> ListLogLimiter<R> {
        ListLogLimiter {
            refuse_user_zero: true,
            ..ListLogLimiter::new(redis, KeyScheme::newapi_user(), quota, clock)
        }
    }

    /// The backend, metered.
    pub fn redis_mut(&mut self) -> &mut Metered<R> {
        &mut self.redis
    }

    /// Whether the request's `user` is `0` (new-api's `c.GetInt("id")` of an anonymous
    /// caller). The identity exposes fields only through key schemes, so render just it.
    fn user_is_zero(&self, request: &Request) -> Result<bool, LimiterError> {
        let user_only = KeyScheme::parse("$user", 1).expect("a valid template");
        Ok(render_key(&user_only, &request.identity)? == b"0")
    }

    async fn decide(&mut self, request: &Request) -> Result<Decision, LimiterError> {
        let key = render_key(&self.scheme, &request.identity)?;
        let ttl_ms = u64::try_from(NEWAPI_KEY_TTL_S).expect("positive") * 1_000;
        let stamp = self.clock.stamp(request.now_ms);
        let length = read_integer(&mut self.redis, Cmd::LLen { key: key.clone() }).await?;
        let max = self.quota.max;
        if u64::try_from(length).is_ok_and(|length| length < max) || length < 0 {
            self.push_and_refresh(&key, stamp, false).await;
            return Ok(Decision {
                allowed: true,
                remaining: max.saturating_sub(u64::try_from(length).unwrap_or(0) + 1),
                retry_after_ms: 0,
                reset_after_ms: ttl_ms,
            });
        }
        let oldest_text = read_oldest(&mut self.redis, &key).await;
        let oldest_ms = parse_newapi_time(&oldest_text).map_err(LimiterError::Reply)?;
        // new-api reparses its own "now" too; a year outside 0000..9999 fails here as in Go.
        let now_ms = parse_newapi_time(&stamp).map_err(LimiterError::Reply)?;
        let window_s = i64::try_from(self.quota.duration_s).expect("validated");
        if whole_seconds_between(oldest_ms, now_ms) < window_s {
            write_ignored(
                &mut self.redis,
                Cmd::Expire {
                    key,
                    ttl_s: NEWAPI_KEY_TTL_S,
                },
            )
            .await;
            // Admissible once now - oldest reaches the window in whole milliseconds.
            let wait_ms = (window_s * 1_000).saturating_sub(now_ms.saturating_sub(oldest_ms));
            return Ok(Decision {
                allowed: false,
                remaining: 0,
                retry_after_ms: u64::try_from(wait_ms).unwrap_or(0).max(1),
                reset_after_ms: ttl_ms,
            });
        }
        self.push_and_refresh(&key, stamp, true).await;
        Ok(Decision {
            allowed: true,
            remaining: 0,
            retry_after_ms: 0,
            reset_after_ms: ttl_ms,
        })
    }

    async fn push_and_refresh(&mut self, key: &[u8], stamp: String, trim: bool) {
        write_ignored(
            &mut self.redis,
            Cmd::LPush {
                key: key.to_vec(),
                value: stamp.into_bytes(),
            },
        )
        .await;
        if trim {
            write_ignored(
                &mut self.redis,
                Cmd::LTrim {
                    key: key.to_vec(),
                    start: 0,
                    // With max == 0 this is LTRIM 0 -1, which keeps everything (as in Go): it
                    // happens only when another writer filled the list.
                    stop: i64::try_from(self.quota.max).expect("validated") - 1,
                },
            )
            .await;
        }
        write_ignored(
            &mut self.redis,
            Cmd::Expire {
                key: key.to_vec(),
                ttl_s: NEWAPI_KEY_TTL_S,
            },
        )
        .await;
    }
}

impl<R: Redis> Limiter for ListLogLimiter<R> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let before = self.redis.usage();
        if self.refuse_user_zero && self.user_is_zero(request)? {
            // new-api answers 401 (no user) before touching Redis: a refusal, never retried.
            return Ok(Verdict {
                decision: Decision {
                    allowed: false,
                    remaining: 0,
                    retry_after_ms: u64::MAX,
                    reset_after_ms: 0,
                },
                usage: usage_since(&self.redis, before),
            });
        }
        let decision = self.decide(request).await?;
        Ok(Verdict {
            decision,
            usage: usage_since(&self.redis, before),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{
        Lockstep, Recording, alternate, block_on, client, drain, list, node, run,
    };
    use super::*;
    use crate::keys::Identity;
    use crate::model::Reply;

    const T0_MS: u64 = 1_773_856_223_123; // 2026-03-18T17:50:23.123Z

    fn ip_request(now_ms: u64) -> Request {
        Request {
            identity: Identity::new("GA").with("ip", "203.0.113.7"),
            cost: 1,
            now_ms,
        }
    }

    /// `(time offset ms, allowed or error, round trips, commands)`.
    type Step<'a> = (u64, Result<bool, ()>, u64, &'a [&'a str]);

    /// One step: `(time offset ms, allowed?, round trips, commands sent)`; `Err` steps say
    /// the check must fail. Runs them in order on one path-A limiter (max 2, window 10 s).
    fn check(max: i64, steps: &[Step<'_>]) {
        let (model, clock) = node(T0_MS);
        let (recording, log) = Recording::new(client(&model, &clock));
        let mut limiter = ListLogLimiter::newapi_ip(
            recording,
            ListLogQuota::new(max, 10).unwrap(),
            GatewayClock::UTC,
        );
        for (index, &(offset_ms, expected, round_trips, commands)) in steps.iter().enumerate() {
            clock.set(T0_MS + offset_ms);
            let result = block_on(limiter.check(&ip_request(T0_MS + offset_ms)));
            match (result, expected) {
                (Ok(verdict), Ok(allowed)) => {
                    assert_eq!(verdict.decision.allowed, allowed, "step {index}");
                    assert_eq!(verdict.usage.round_trips, round_trips, "step {index}");
                }
                (Err(_), Err(())) => {}
                (other, _) => panic!("step {index}: {other:?}"),
            }
            assert_eq!(drain(&log), commands, "step {index}");
        }
    }

    const K: &str = "rateLimit:GA203.0.113.7";

    #[test]
    fn path_a_sends_new_apis_commands_and_truncates_to_whole_seconds() {
        check(
            2,
            &[
                (
                    0,
                    Ok(true),
                    3,
                    &[
                        "LLEN rateLimit:GA203.0.113.7",
                        "LPUSH rateLimit:GA203.0.113.7 2026-03-18T17:50:23.123Z",
                        "EXPIRE rateLimit:GA203.0.113.7 1200",
                    ],
                ),
                (
                    500,
                    Ok(true),
                    3,
                    &[
                        "LLEN rateLimit:GA203.0.113.7",
                        "LPUSH rateLimit:GA203.0.113.7 2026-03-18T17:50:23.623Z",
                        "EXPIRE rateLimit:GA203.0.113.7 1200",
                    ],
                ),
                // Full: 9.999 s after the oldest truncates to 9 < 10: deny, TTL refreshed.
                (
                    9_999,
                    Ok(false),
                    3,
                    &[
                        "LLEN rateLimit:GA203.0.113.7",
                        "LINDEX rateLimit:GA203.0.113.7 -1",
                        "EXPIRE rateLimit:GA203.0.113.7 1200",
                    ],
                ),
                // 10.000 s: allowed through the full branch with LTRIM.
                (
                    10_000,
                    Ok(true),
                    5,
                    &[
                        "LLEN rateLimit:GA203.0.113.7",
                        "LINDEX rateLimit:GA203.0.113.7 -1",
                        "LPUSH rateLimit:GA203.0.113.7 2026-03-18T17:50:33.123Z",
                        "LTRIM rateLimit:GA203.0.113.7 0 1",
                        "EXPIRE rateLimit:GA203.0.113.7 1200",
                    ],
                ),
                // The oldest is now the 0.5 s entry: 10.499 s later is 9 whole seconds.
                (
                    10_499,
                    Ok(false),
                    3,
                    &[
                        "LLEN rateLimit:GA203.0.113.7",
                        "LINDEX rateLimit:GA203.0.113.7 -1",
                        "EXPIRE rateLimit:GA203.0.113.7 1200",
                    ],
                ),
            ],
        );
    }

    #[test]
    fn max_zero_errors_on_every_request_as_new_api_does() {
        let steps: &[Step<'_>] = &[
            (
                0,
                Err(()),
                2,
                &[
                    "LLEN rateLimit:GA203.0.113.7",
                    "LINDEX rateLimit:GA203.0.113.7 -1",
                ],
            ),
            (
                60_000,
                Err(()),
                2,
                &[
                    "LLEN rateLimit:GA203.0.113.7",
                    "LINDEX rateLimit:GA203.0.113.7 -1",
                ],
            ),
        ];
        check(0, steps);
    }

    #[test]
    fn ttl_is_refreshed_on_admissions_and_denials() {
        let (model, clock) = node(T0_MS);
        let mut limiter = ListLogLimiter::newapi_ip(
            client(&model, &clock),
            ListLogQuota::new(1, 60).unwrap(),
            GatewayClock::UTC,
        );
        let at = |offset_s: u64| T0_MS + offset_s * 1_000;
        assert!(
            block_on(limiter.check(&ip_request(at(0))))
                .unwrap()
                .decision
                .allowed
        );
        clock.set(at(100));
        assert_eq!(run(&model, clock.now(), &["TTL", K]), Reply::Integer(1_100));
        // Full and aged out: the 5-round-trip admission, TTL back to 1200.
        let verdict = block_on(limiter.check(&ip_request(at(100)))).unwrap();
        assert!(verdict.decision.allowed);
        assert_eq!(verdict.usage.round_trips, 5);
        assert_eq!(run(&model, clock.now(), &["TTL", K]), Reply::Integer(1_200));
        clock.set(at(130));
        assert_eq!(run(&model, clock.now(), &["TTL", K]), Reply::Integer(1_170));
        let verdict = block_on(limiter.check(&ip_request(at(130)))).unwrap();
        assert!(!verdict.decision.allowed);
        assert_eq!(verdict.decision.retry_after_ms, 30_000);
        assert_eq!(run(&model, clock.now(), &["TTL", K]), Reply::Integer(1_200));
        assert_eq!(list(&model, clock.now(), K), ["2026-03-18T17:52:03.123Z"]);
    }

    #[test]
    fn read_failures_are_errors_and_a_vanished_key_is_r7() {
        let (model, clock) = node(T0_MS);
        let mut limiter = ListLogLimiter::newapi_ip(
            client(&model, &clock),
            ListLogQuota::new(1, 60).unwrap(),
            GatewayClock::UTC,
        );
        run(&model, T0_MS, &["SET", K, "not a list"]);
        assert!(matches!(
            block_on(limiter.check(&ip_request(T0_MS))),
            Err(LimiterError::Reply(line)) if line.starts_with("WRONGTYPE")
        ));
        // A full list whose oldest entry is garbage: the parse fails.
        run(&model, T0_MS, &["DEL", K]);
        run(&model, T0_MS, &["LPUSH", K, "garbage"]);
        assert!(matches!(
            block_on(limiter.check(&ip_request(T0_MS))),
            Err(LimiterError::Reply(line)) if line.contains("cannot parse \"garbage\"")
        ));
    }

    #[test]
    fn path_b_refuses_user_zero_without_redis_and_keys_by_user() {
        let (model, clock) = node(T0_MS);
        let (recording, log) = Recording::new(client(&model, &clock));
        let mut limiter = ListLogLimiter::newapi_user(
            recording,
            ListLogQuota::new(10, 60).unwrap(),
            GatewayClock::UTC,
        );
        let request = |user: &str| Request {
            identity: Identity::new("SR").with("user", user),
            cost: 1,
            now_ms: T0_MS,
        };
        let verdict = block_on(limiter.check(&request("0"))).unwrap();
        assert!(!verdict.decision.allowed);
        assert_eq!(verdict.usage.round_trips, 0);
        assert!(drain(&log).is_empty());
        let verdict = block_on(limiter.check(&request("42"))).unwrap();
        assert!(verdict.decision.allowed);
        assert_eq!(verdict.decision.remaining, 9);
        assert_eq!(
            drain(&log),
            [
                "LLEN rateLimit:SR:user:42",
                "LPUSH rateLimit:SR:user:42 2026-03-18T17:50:23.123Z",
                "EXPIRE rateLimit:SR:user:42 1200"
            ]
        );
    }

    #[test]
    fn r3_concurrent_admissions_below_the_limit_overfill_the_list() {
        let (model, clock) = node(T0_MS);
        let quota = ListLogQuota::new(1, 60).unwrap();
        let mut first =
            ListLogLimiter::newapi_ip(Lockstep(client(&model, &clock)), quota, GatewayClock::UTC);
        let mut second =
            ListLogLimiter::newapi_ip(Lockstep(client(&model, &clock)), quota, GatewayClock::UTC);
        let request = ip_request(T0_MS);
        // Lockstep: LLEN, LLEN, LPUSH, LPUSH, EXPIRE, EXPIRE.
        let (a, b) = alternate(first.check(&request), second.check(&request));
        assert!(a.unwrap().decision.allowed);
        assert!(b.unwrap().decision.allowed);
        assert_eq!(list(&model, T0_MS, K).len(), 2, "two entries against max 1");
        // Sequentially, the second is denied: the race is what admitted it.
        run(&model, T0_MS, &["DEL", K]);
        assert!(block_on(first.check(&request)).unwrap().decision.allowed);
        assert!(!block_on(second.check(&request)).unwrap().decision.allowed);
    }

    #[test]
    fn r2_two_requests_read_the_same_aged_out_entry() {
        let (model, clock) = node(T0_MS);
        let quota = ListLogQuota::new(1, 60).unwrap();
        let mut first =
            ListLogLimiter::newapi_ip(Lockstep(client(&model, &clock)), quota, GatewayClock::UTC);
        let mut second =
            ListLogLimiter::newapi_ip(Lockstep(client(&model, &clock)), quota, GatewayClock::UTC);
        assert!(
            block_on(first.check(&ip_request(T0_MS)))
                .unwrap()
                .decision
                .allowed
        );
        let later = T0_MS + 60_000;
        clock.set(later);
        let request = ip_request(later);
        // LLEN, LLEN, LINDEX, LINDEX (both read the T0 entry), then both push.
        let (a, b) = alternate(first.check(&request), second.check(&request));
        assert!(a.unwrap().decision.allowed);
        assert!(
            b.unwrap().decision.allowed,
            "two admissions in one window of max 1"
        );
        assert_eq!(list(&model, later, K).len(), 1, "LTRIM hides the second");
    }

    #[test]
    fn r6_a_gateway_east_of_utc_locks_out_a_gateway_in_utc() {
        let (model, clock) = node(T0_MS);
        let quota = ListLogQuota::new(1, 60).unwrap();
        let shanghai = GatewayClock::new(8 * 3_600).unwrap();
        let mut east = ListLogLimiter::newapi_ip(client(&model, &clock), quota, shanghai);
        let mut utc = ListLogLimiter::newapi_ip(client(&model, &clock), quota, GatewayClock::UTC);
        assert!(
            block_on(east.check(&ip_request(T0_MS)))
                .unwrap()
                .decision
                .allowed
        );
        assert_eq!(list(&model, T0_MS, K), ["2026-03-19T01:50:23.123Z"]);
        // Ten minutes later (inside the key's 1200 s TTL), UTC sees the entry 7 h 50 min in
        // the future: denied.
        let later = T0_MS + 600_000;
        clock.set(later);
        let verdict = block_on(utc.check(&ip_request(later))).unwrap();
        assert!(!verdict.decision.allowed);
        assert!(verdict.decision.retry_after_ms > 7 * 3_600_000);
        // And the east gateway sees UTC-written entries as 8 h old: always admitted.
        run(&model, later, &["DEL", K]);
        assert!(
            block_on(utc.check(&ip_request(later)))
                .unwrap()
                .decision
                .allowed
        );
        assert!(
            block_on(east.check(&ip_request(later)))
                .unwrap()
                .decision
                .allowed
        );
    }

    #[test]
    fn quotas_are_validated() {
        assert!(ListLogQuota::new(-1, 60).is_err());
        assert!(ListLogQuota::new(1, 0).is_err());
        assert!(ListLogQuota::new(1, -5).is_err());
        assert!(ListLogQuota::new(1, i64::MAX).is_err());
        assert_eq!(ListLogQuota::new(0, 1).unwrap().max(), 0);
    }
}
