//! Path D: new-api's email verification limit, a fixed window on INCR.

use crate::algo::{Decision, QuotaError};
use crate::keys::KeyScheme;
use crate::limiter::{Limiter, LimiterError, Request, Verdict};
use crate::model::Reply;
use crate::redis::{Cmd, Metered, Redis};

use super::{check_count, check_window, read_integer, render_key, usage_since, write_ignored};

/// new-api's email limit: 2 per 30 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmailQuota {
    limit: u64,
    window_s: u64,
}

impl EmailQuota {
    /// new-api's values: 2 requests per 30 s window.
    pub const NEWAPI: EmailQuota = EmailQuota {
        limit: 2,
        window_s: 30,
    };

    /// `limit` (0 denies everything after INCR) per `window_s` (at least 1 s).
    pub fn new(limit: i64, window_s: i64) -> Result<EmailQuota, QuotaError> {
        Ok(EmailQuota {
            limit: check_count("limit", limit, i64::MAX)?,
            window_s: check_window("window_s", window_s, i64::MAX / 1_000)?,
        })
    }

    /// Requests per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window in seconds.
    pub fn window_s(&self) -> u64 {
        self.window_s
    }
}

impl Default for EmailQuota {
    fn default() -> EmailQuota {
        EmailQuota::NEWAPI
    }
}

/// new-api's `EmailVerificationRateLimit` (path D), on `emailVerification:EV:<ip>`:
///
/// ```text
/// INCR key                         error -> Err (new-api falls back to its memory limiter,
///                                  whose map is nil in Redis mode: a recovered panic)
/// count == 1: EXPIRE key window    error ignored
/// count <= limit: allow            1-2 round trips
/// else TTL key: deny, retry after the TTL     2 round trips
/// ```
///
/// Known races: INCR and EXPIRE are two commands, so a lost EXPIRE leaves a counter that never
/// expires and locks that IP out for good (reported as `retry_after_ms == u64::MAX`); R14
/// (the client IP is spoofable).
pub struct EmailLimiter<R> {
    redis: Metered<R>,
    scheme: KeyScheme,
    quota: EmailQuota,
}

impl<R: Redis> EmailLimiter<R> {
    /// The limiter on new-api's key: the identity's namespace is the mark (`EV`), its `ip`
    /// field the client IP.
    pub fn new(redis: R, quota: EmailQuota) -> EmailLimiter<R> {
        EmailLimiter {
            redis: Metered::new(redis),
            scheme: KeyScheme::newapi_email(),
            quota,
        }
    }

    /// The backend, metered.
    pub fn redis_mut(&mut self) -> &mut Metered<R> {
        &mut self.redis
    }

    async fn decide(&mut self, request: &Request) -> Result<Decision, LimiterError> {
        let key = render_key(&self.scheme, &request.identity)?;
        let window_ms = self.quota.window_s * 1_000;
        let count = read_integer(&mut self.redis, Cmd::Incr { key: key.clone() }).await?;
        if count == 1 {
            write_ignored(
                &mut self.redis,
                Cmd::Expire {
                    key: key.clone(),
                    ttl_s: i64::try_from(self.quota.window_s).expect("validated"),
                },
            )
            .await;
        }
        let count = u64::try_from(count).unwrap_or(0);
        if count <= self.quota.limit {
            return Ok(Decision {
                allowed: true,
                remaining: self.quota.limit - count,
                retry_after_ms: 0,
                reset_after_ms: window_ms,
            });
        }
        // The TTL only words the 429; a failed read still denies, quoting the whole window.
        let retry_after_ms = match self.redis.exec(Cmd::Ttl { key }).await {
            // TTL rounds to the nearest second; a denial still waits at least 1 ms.
            Ok(Reply::Integer(ttl_s)) if ttl_s >= 0 => {
                (u64::try_from(ttl_s).expect("non-negative") * 1_000).max(1)
            }
            // -1: the EXPIRE was lost and the key lives forever.
            Ok(Reply::Integer(-1)) => u64::MAX,
            // -2: the key expired between INCR and TTL: try again at once.
            Ok(Reply::Integer(_)) => 1,
            _ => window_ms,
        };
        Ok(Decision {
            allowed: false,
            remaining: 0,
            retry_after_ms,
            reset_after_ms: if retry_after_ms == u64::MAX {
                u64::MAX
            } else {
                retry_after_ms
            },
        })
    }
}

impl<R: Redis> Limiter for EmailLimiter<R> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let before = self.redis.usage();
        let decision = self.decide(request).await?;
        Ok(Verdict {
            decision,
            usage: usage_since(&self.redis, before),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Recording, block_on, client, drain, node, run};
    use super::*;
    use crate::keys::Identity;

    const T0_MS: u64 = 1_700_000_000_000;
    const K: &str = "emailVerification:EV:10.0.0.1";

    /// `(offset ms, allowed, retry_after_ms, commands)` in order on one limiter.
    fn check(quota: EmailQuota, setup: &[&[&str]], steps: &[(u64, bool, u64, &[&str])]) {
        let (model, clock) = node(T0_MS);
        for line in setup {
            run(&model, T0_MS, line);
        }
        let (recording, log) = Recording::new(client(&model, &clock));
        let mut limiter = EmailLimiter::new(recording, quota);
        for (index, &(offset_ms, allowed, retry_after_ms, commands)) in steps.iter().enumerate() {
            clock.set(T0_MS + offset_ms);
            let request = Request {
                identity: Identity::new("EV").with("ip", "10.0.0.1"),
                cost: 1,
                now_ms: T0_MS + offset_ms,
            };
            let verdict = block_on(limiter.check(&request)).unwrap();
            assert_eq!(verdict.decision.allowed, allowed, "step {index}");
            assert_eq!(
                verdict.decision.retry_after_ms, retry_after_ms,
                "step {index}"
            );
            let sent = drain(&log);
            assert_eq!(sent, commands, "step {index}");
            assert_eq!(verdict.usage.round_trips, sent.len() as u64, "step {index}");
        }
    }

    #[test]
    fn email_limit_counts_in_a_fixed_window() {
        check(
            EmailQuota::default(),
            &[],
            &[
                (
                    0,
                    true,
                    0,
                    &[
                        "INCR emailVerification:EV:10.0.0.1",
                        "EXPIRE emailVerification:EV:10.0.0.1 30",
                    ],
                ),
                (1_000, true, 0, &["INCR emailVerification:EV:10.0.0.1"]),
                (
                    2_000,
                    false,
                    28_000,
                    &[
                        "INCR emailVerification:EV:10.0.0.1",
                        "TTL emailVerification:EV:10.0.0.1",
                    ],
                ),
                (
                    29_999,
                    false,
                    1,
                    &[
                        "INCR emailVerification:EV:10.0.0.1",
                        "TTL emailVerification:EV:10.0.0.1",
                    ],
                ),
                // Redis keeps a key until its expiry time has passed: still the old window.
                (
                    30_000,
                    false,
                    1,
                    &[
                        "INCR emailVerification:EV:10.0.0.1",
                        "TTL emailVerification:EV:10.0.0.1",
                    ],
                ),
                (
                    30_001,
                    true,
                    0,
                    &[
                        "INCR emailVerification:EV:10.0.0.1",
                        "EXPIRE emailVerification:EV:10.0.0.1 30",
                    ],
                ),
            ],
        );
    }

    #[test]
    fn a_lost_expire_locks_the_ip_out_forever() {
        // A counter left without TTL (the EXPIRE after INCR was lost).
        check(
            EmailQuota::new(1, 30).unwrap(),
            &[&["SET", K, "5"]],
            &[(
                3_600_000,
                false,
                u64::MAX,
                &[
                    "INCR emailVerification:EV:10.0.0.1",
                    "TTL emailVerification:EV:10.0.0.1",
                ],
            )],
        );
    }

    #[test]
    fn incr_errors_and_bad_quotas_are_refused() {
        let (model, clock) = node(T0_MS);
        run(&model, T0_MS, &["SET", K, "not a number"]);
        let mut limiter = EmailLimiter::new(client(&model, &clock), EmailQuota::NEWAPI);
        let request = Request {
            identity: Identity::new("EV").with("ip", "10.0.0.1"),
            cost: 1,
            now_ms: T0_MS,
        };
        assert!(matches!(
            block_on(limiter.check(&request)),
            Err(LimiterError::Reply(line)) if line == "ERR value is not an integer or out of range"
        ));
        assert!(EmailQuota::new(-1, 30).is_err());
        assert!(EmailQuota::new(2, 0).is_err());
        assert_eq!(EmailQuota::new(0, 1).unwrap().limit(), 0);
    }
}
