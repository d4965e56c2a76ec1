//! Path C: new-api's model request limit in Redis mode. C1 is the success list
//! (`redisRateLimitHandler`'s check + `recordRedisRequest`), C2 the token bucket script
//! (`RedisLimiter.Allow` + `limiter.New`), and [`ModelRequestLimiter`] the two in new-api's
//! order.

use std::sync::{Arc, Mutex};

use crate::algo::{Decision, LUA_EXACT_MAX, QuotaError};
use crate::keys::KeyScheme;
use crate::limiter::{Limiter, LimiterError, OutcomeLimiter, Request, Verdict};
use crate::model::Reply;
use crate::redis::{Cmd, Metered, Redis, Script, Usage};

use super::{
    GatewayClock, check_count, check_window, parse_newapi_time, read_integer, read_oldest,
    render_key, usage_since, whole_seconds_between, write_ignored,
};

/// Largest count new-api's settings validation accepts (`2^31 - 1`).
pub const MAX_MODEL_COUNT: i64 = i32::MAX as i64;

/// Largest `DurationMinutes` accepted here: a year. new-api sets no bound; this keeps every
/// window's seconds and the bucket's capacity exact in Lua.
pub const MAX_WINDOW_MINUTES: i64 = 525_600;

/// new-api's model request settings: `ModelRequestRateLimitCount` (N, total, 0 = off),
/// `ModelRequestRateLimitSuccessCount` (M, successes, 0 = unlimited in Redis mode) and
/// `ModelRequestRateLimitDurationMinutes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelQuota {
    total_max: u64,
    success_max: u64,
    window_s: u64,
}

impl ModelQuota {
    /// Counts in `0..=2^31-1`, the window in `1..=`[`MAX_WINDOW_MINUTES`] minutes, and the
    /// bucket's capacity N × D below 2^53 (exact in Lua).
    pub fn new(
        total_max: i64,
        success_max: i64,
        window_minutes: i64,
    ) -> Result<ModelQuota, QuotaError> {
        let total_max = check_count("total_max", total_max, MAX_MODEL_COUNT)?;
        let success_max = check_count("success_max", success_max, MAX_MODEL_COUNT)?;
        let window_s = check_window("window_minutes", window_minutes, MAX_WINDOW_MINUTES)? * 60;
        if total_max * window_s >= LUA_EXACT_MAX {
            return Err(QuotaError {
                field: "total_max",
                problem: format!(
                    "the bucket capacity total_max × window_s must stay below 2^53 (got {total_max} × {window_s})"
                ),
            });
        }
        Ok(ModelQuota {
            total_max,
            success_max,
            window_s,
        })
    }

    /// N: requests per window for the token bucket; 0 skips it.
    pub fn total_max(&self) -> u64 {
        self.total_max
    }

    /// M: successes per window; 0 means unlimited (Redis mode).
    pub fn success_max(&self) -> u64 {
        self.success_max
    }

    /// D: the window in seconds (`DurationMinutes * 60`).
    pub fn window_s(&self) -> u64 {
        self.window_s
    }
}

/// What a success-list admission hands back: the list to record into, or nothing to record
/// when M = 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuccessTicket {
    key: Option<Vec<u8>>,
}

/// C1's logic without a connection, so that [`SuccessLimiter`] and [`ModelRequestLimiter`]
/// share it.
#[derive(Clone, Debug)]
pub struct SuccessLog {
    scheme: KeyScheme,
    success_max: u64,
    window_s: u64,
    clock: GatewayClock,
}

impl SuccessLog {
    /// The success list of `quota` on new-api's key `rateLimit:MRRLS:<user>`.
    pub fn new(quota: ModelQuota, clock: GatewayClock) -> SuccessLog {
        SuccessLog {
            scheme: KeyScheme::newapi_success(),
            success_max: quota.success_max,
            window_s: quota.window_s,
            clock,
        }
    }

    fn ttl_s(&self) -> i64 {
        i64::try_from(self.window_s).expect("validated")
    }

    /// The check before the upstream call: LLEN [+ LINDEX] [+ EXPIRE on deny]. Nothing is
    /// written on admission.
    pub async fn admit<R: Redis>(
        &self,
        redis: &mut Metered<R>,
        request: &Request,
    ) -> Result<(Decision, Option<SuccessTicket>), LimiterError> {
        let window_ms = self.window_s * 1_000;
        if self.success_max == 0 {
            let decision = Decision {
                allowed: true,
                remaining: u64::MAX,
                retry_after_ms: 0,
                reset_after_ms: 0,
            };
            return Ok((decision, Some(SuccessTicket { key: None })));
        }
        let key = render_key(&self.scheme, &request.identity)?;
        let length = read_integer(redis, Cmd::LLen { key: key.clone() }).await?;
        let length = u64::try_from(length).unwrap_or(0);
        let allowed = |remaining| Decision {
            allowed: true,
            remaining,
            retry_after_ms: 0,
            reset_after_ms: window_ms,
        };
        if length < self.success_max {
            let remaining = self.success_max - length - 1;
            return Ok((allowed(remaining), Some(SuccessTicket { key: Some(key) })));
        }
        let oldest_ms =
            parse_newapi_time(&read_oldest(redis, &key).await).map_err(LimiterError::Reply)?;
        let now_ms =
            parse_newapi_time(&self.clock.stamp(request.now_ms)).map_err(LimiterError::Reply)?;
        let window_s = self.ttl_s();
        if whole_seconds_between(oldest_ms, now_ms) < window_s {
            write_ignored(
                redis,
                Cmd::Expire {
                    key,
                    ttl_s: window_s,
                },
            )
            .await;
            let wait_ms = (window_s * 1_000).saturating_sub(now_ms.saturating_sub(oldest_ms));
            let decision = Decision {
                allowed: false,
                remaining: 0,
                retry_after_ms: u64::try_from(wait_ms).unwrap_or(0).max(1),
                reset_after_ms: window_ms,
            };
            return Ok((decision, None));
        }
        Ok((allowed(0), Some(SuccessTicket { key: Some(key) })))
    }

    /// `recordRedisRequest` after the upstream call: on success LPUSH the completion time,
    /// LTRIM 0 M-1, EXPIRE D, every result ignored; nothing on failure or when M = 0.
    pub async fn record<R: Redis>(
        &self,
        redis: &mut Metered<R>,
        ticket: SuccessTicket,
        succeeded: bool,
        now_ms: u64,
    ) {
        let Some(key) = ticket.key else { return };
        if !succeeded {
            return;
        }
        let value = self.clock.stamp(now_ms).into_bytes();
        write_ignored(
            redis,
            Cmd::LPush {
                key: key.clone(),
                value,
            },
        )
        .await;
        write_ignored(
            redis,
            Cmd::LTrim {
                key: key.clone(),
                start: 0,
                stop: i64::try_from(self.success_max).expect("validated") - 1,
            },
        )
        .await;
        write_ignored(
            redis,
            Cmd::Expire {
                key,
                ttl_s: self.ttl_s(),
            },
        )
        .await;
    }
}

/// C1: new-api's model **success** limit in Redis mode (`redisRateLimitHandler`'s success
/// check, then `recordRedisRequest` after the upstream call).
///
/// * `admit`: M = 0 admits without any Redis call. Otherwise `LLEN rateLimit:MRRLS:<user>`
///   (error -> `Err`, new-api's 500 `rate_limit_check_failed`); below M admit (1 round trip);
///   full: `LINDEX -1` (nil/unparseable -> `Err`), whole seconds since the oldest < D ->
///   `EXPIRE D` and deny (3 round trips), else admit (2 round trips).
/// * `complete(success)`: `LPUSH` the gateway time at completion, `LTRIM 0 M-1`, `EXPIRE D`
///   (3 round trips, errors ignored); nothing on failure.
///
/// Known races: **R1** (the check and the record are separated by the whole upstream call,
/// so K concurrent requests all pass with M = 1, and LTRIM then erases the evidence), R2 (two
/// requests read the same aged-out oldest entry), R5 (per-user key shared by groups with
/// different M), R6 (gateway zones and skew), R7 (key gone between LLEN and LINDEX), R8
/// (lost records), R10 (what counts as a success), R13 (config races).
pub struct SuccessLimiter<R> {
    redis: Metered<R>,
    log: SuccessLog,
}

impl<R: Redis> SuccessLimiter<R> {
    /// The success limit of `quota` (only M and D matter).
    pub fn new(redis: R, quota: ModelQuota, clock: GatewayClock) -> SuccessLimiter<R> {
        SuccessLimiter {
            redis: Metered::new(redis),
            log: SuccessLog::new(quota, clock),
        }
    }

    /// The backend, metered.
    pub fn redis_mut(&mut self) -> &mut Metered<R> {
        &mut self.redis
    }
}

impl<R: Redis> OutcomeLimiter for SuccessLimiter<R> {
    type Ticket = SuccessTicket;

    async fn admit(
        &mut self,
        request: &Request,
    ) -> Result<(Verdict, Option<SuccessTicket>), LimiterError> {
        let before = self.redis.usage();
        let (decision, ticket) = self.log.admit(&mut self.redis, request).await?;
        let usage = usage_since(&self.redis, before);
        Ok((Verdict { decision, usage }, ticket))
    }

    async fn complete(
        &mut self,
        ticket: SuccessTicket,
        succeeded: bool,
        now_ms: u64,
    ) -> Result<Usage, LimiterError> {
        let before = self.redis.usage();
        self.log
            .record(&mut self.redis, ticket, succeeded, now_ms)
            .await;
        Ok(usage_since(&self.redis, before))
    }
}

/// Where the process-wide loader stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LoadState {
    Unloaded,
    Loading,
    Loaded(String),
}

/// new-api's `limiter.New` with its package-level `sync.Once`: the first call that reaches
/// the token bucket sends `SCRIPT LOAD` and keeps the digest Redis answers; if that load
/// fails, the digest stays `""` for the life of the loader (the "process"). It never loads
/// again, whatever happens to Redis's script cache (issues #4782, #6412).
///
/// Share one loader (`Arc`) between every limiter of one simulated gateway process. Callers
/// that arrive while the first is loading wait for it, as `sync.Once` makes them.
#[derive(Debug)]
pub struct NewapiScriptLoader {
    state: Mutex<LoadState>,
    /// Wakes the callers that arrived while the first call was loading. (An earlier version
    /// let them spin by yielding; under turmoil a spinning task never lets a tick end.)
    loaded: tokio::sync::Notify,
}

/// Marks the load finished (with `""`) if the loading future is dropped half-way: `sync.Once`
/// also counts a panicking first call as done, and waiters must not wait forever.
struct LoadGuard<'a> {
    loader: &'a NewapiScriptLoader,
    finished: bool,
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.loader.finish(String::new());
        }
    }
}

impl NewapiScriptLoader {
    /// A loader that has not loaded yet (a fresh gateway process).
    pub fn new() -> Arc<NewapiScriptLoader> {
        Arc::new(NewapiScriptLoader {
            state: Mutex::new(LoadState::Unloaded),
            loaded: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoadState> {
        // A panic while holding this lock would need a bug in the few lines below.
        self.state
            .lock()
            .expect("no panic while the loader lock is held")
    }

    fn finish(&self, sha: String) {
        *self.lock() = LoadState::Loaded(sha);
        self.loaded.notify_waiters();
    }

    /// The digest held, once the load has happened (`Some("")` after a failed load).
    pub fn sha(&self) -> Option<String> {
        match &*self.lock() {
            LoadState::Loaded(sha) => Some(sha.clone()),
            _ => None,
        }
    }

    /// The digest, loading it through `redis` on the first call.
    pub async fn get_or_load<R: Redis>(&self, redis: &mut Metered<R>) -> String {
        loop {
            let waiting = {
                let mut state = self.lock();
                match &*state {
                    LoadState::Loaded(sha) => return sha.clone(),
                    LoadState::Unloaded => {
                        *state = LoadState::Loading;
                        break;
                    }
                    // Registered before the lock is released, so `finish` cannot slip
                    // between this check and the wait.
                    LoadState::Loading => self.loaded.notified(),
                }
            };
            waiting.await;
        }
        let mut guard = LoadGuard {
            loader: self,
            finished: false,
        };
        let reply = redis
            .exec(Cmd::ScriptLoad {
                script: Script::NewapiTokenBucket,
            })
            .await;
        // new-api only logs a failed load; the digest stays empty.
        let sha = match reply {
            Ok(Reply::Bulk(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        };
        self.finish(sha.clone());
        guard.finished = true;
        sha
    }
}

/// C2's logic without a connection: the bucket parameters and the shared loader.
#[derive(Clone, Debug)]
pub struct NewapiBucket {
    scheme: KeyScheme,
    total_max: u64,
    window_s: u64,
    loader: Arc<NewapiScriptLoader>,
}

impl NewapiBucket {
    /// The bucket of `quota` (only N and D matter) on new-api's key `rateLimit:<user>`.
    pub fn new(quota: ModelQuota, loader: Arc<NewapiScriptLoader>) -> NewapiBucket {
        NewapiBucket {
            scheme: KeyScheme::newapi_bucket(),
            total_max: quota.total_max,
            window_s: quota.window_s,
            loader,
        }
    }

    /// The loader this bucket shares.
    pub fn loader(&self) -> &Arc<NewapiScriptLoader> {
        &self.loader
    }

    /// `RedisLimiter.Allow`: `SCRIPT LOAD` once per loader, then `EVALSHA sha 1 key D N N*D`
    /// with no NOSCRIPT fallback. Allowed iff the reply is the integer 1. N = 0 skips it.
    pub async fn allow<R: Redis>(
        &self,
        redis: &mut Metered<R>,
        request: &Request,
    ) -> Result<Decision, LimiterError> {
        let window_ms = self.window_s * 1_000;
        if self.total_max == 0 {
            return Ok(Decision {
                allowed: true,
                remaining: u64::MAX,
                retry_after_ms: 0,
                reset_after_ms: 0,
            });
        }
        let key = render_key(&self.scheme, &request.identity)?;
        let sha = self.loader.get_or_load(redis).await;
        let args = [
            self.window_s,
            self.total_max,
            self.total_max * self.window_s,
        ]
        .iter()
        .map(|value| value.to_string().into_bytes())
        .collect();
        let reply = redis
            .exec(Cmd::EvalShaDigest {
                sha,
                keys: vec![key],
                args,
            })
            .await?;
        // go-redis's `Cmd.Int()`: an integer, or a bulk string holding one.
        let result = match reply {
            Reply::Integer(value) => value,
            Reply::Bulk(ref bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or_else(|| LimiterError::Reply(format!("not an integer: {reply:?}")))?,
            Reply::Error(line) => return Err(LimiterError::Reply(line)),
            other => {
                return Err(LimiterError::Reply(format!(
                    "expected an integer, got {other:?}"
                )));
            }
        };
        let allowed = result == 1;
        Ok(Decision {
            allowed,
            // The script answers only 1 or 0: what is left is not known to the gateway.
            remaining: 0,
            // From an empty bucket one request (D tokens at N per second) takes ⌈D/N⌉ s.
            retry_after_ms: if allowed {
                0
            } else {
                self.window_s.div_ceil(self.total_max) * 1_000
            },
            reset_after_ms: window_ms,
        })
    }
}

/// C2: new-api's model **total** limit in Redis mode (`RedisLimiter.Allow`, loaded by
/// `limiter.New`): the `lua/newapi_token_bucket.lua` script with ARGV requested = D,
/// rate = N, capacity = N × D, on `rateLimit:<user>`. One round trip per decision, plus one
/// `SCRIPT LOAD` the first time a loader is used; N = 0 skips it (0 round trips).
///
/// No NOSCRIPT fallback: after `SCRIPT FLUSH`, a restart or a failover every call is
/// `Err(LimiterError::Reply("NOSCRIPT ..."))` for the life of the loader, and if the first
/// load failed the digest is `""` and every call fails the same way.
///
/// Known races and anomalies: R4 (atomic, but up to about 2N − 1 per D-window against a
/// stated N), R5 (one bucket per user shared by groups with different N: each call
/// re-clamps it), R8 (a retried EVALSHA debits twice), R9 (Redis clock steps: tokens can go
/// negative), R13 (config races). The hash never gets a TTL.
pub struct TokenBucketLimiter<R> {
    redis: Metered<R>,
    bucket: NewapiBucket,
}

impl<R: Redis> TokenBucketLimiter<R> {
    /// A bucket with its own loader (its own "process").
    pub fn new(redis: R, quota: ModelQuota) -> TokenBucketLimiter<R> {
        TokenBucketLimiter::with_loader(redis, quota, NewapiScriptLoader::new())
    }

    /// A bucket sharing `loader` with the other limiters of one gateway process.
    pub fn with_loader(
        redis: R,
        quota: ModelQuota,
        loader: Arc<NewapiScriptLoader>,
    ) -> TokenBucketLimiter<R> {
        TokenBucketLimiter {
            redis: Metered::new(redis),
            bucket: NewapiBucket::new(quota, loader),
        }
    }

    /// The shared loader, to build another limiter of the same process.
    pub fn loader(&self) -> Arc<NewapiScriptLoader> {
        self.bucket.loader.clone()
    }

    /// Another limiter of the same process on another connection: same quota, same loader
    /// (so it neither loads again nor recovers from a lost script cache).
    pub fn sibling<S: Redis>(&self, redis: S) -> TokenBucketLimiter<S> {
        TokenBucketLimiter {
            redis: Metered::new(redis),
            bucket: self.bucket.clone(),
        }
    }

    /// The backend, metered.
    pub fn redis_mut(&mut self) -> &mut Metered<R> {
        &mut self.redis
    }
}

impl<R: Redis> Limiter for TokenBucketLimiter<R> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let before = self.redis.usage();
        let decision = self.bucket.allow(&mut self.redis, request).await?;
        Ok(Verdict {
            decision,
            usage: usage_since(&self.redis, before),
        })
    }
}

/// new-api's whole model request limit in Redis mode (`redisRateLimitHandler`, section 2.3):
/// the success check (C1) first, then the token bucket (C2) when N > 0, then, after the
/// upstream call, the success record.
///
/// | Outcome | Round trips |
/// |---|---|
/// | admitted, succeeded, list below M | LLEN + EVALSHA, then 3 = **5** |
/// | admitted, succeeded, list full but aged out | LLEN + LINDEX + EVALSHA, then 3 = **6** |
/// | admitted, upstream failed | 2-3, then 0 |
/// | denied by the success check | LLEN + LINDEX + EXPIRE = 3 (no token spent) |
/// | denied by the bucket | LLEN [+ LINDEX] + EVALSHA = 2-3 |
///
/// plus one SCRIPT LOAD the first time the shared loader is used. M = 0 and N > 0: only
/// EVALSHA; M = N = 0: no Redis call at all.
///
/// Known races: those of [`SuccessLimiter`] (R1 above all) and [`TokenBucketLimiter`].
pub struct ModelRequestLimiter<R> {
    redis: Metered<R>,
    success: SuccessLog,
    bucket: NewapiBucket,
}

impl<R: Redis> ModelRequestLimiter<R> {
    /// The model request limit of `quota`, with a loader of its own.
    pub fn new(redis: R, quota: ModelQuota, clock: GatewayClock) -> ModelRequestLimiter<R> {
        ModelRequestLimiter::with_loader(redis, quota, clock, NewapiScriptLoader::new())
    }

    /// The model request limit of `quota`, sharing `loader` with its gateway process.
    pub fn with_loader(
        redis: R,
        quota: ModelQuota,
        clock: GatewayClock,
        loader: Arc<NewapiScriptLoader>,
    ) -> ModelRequestLimiter<R> {
        ModelRequestLimiter {
            redis: Metered::new(redis),
            success: SuccessLog::new(quota, clock),
            bucket: NewapiBucket::new(quota, loader),
        }
    }

    /// The shared loader.
    pub fn loader(&self) -> Arc<NewapiScriptLoader> {
        self.bucket.loader.clone()
    }

    /// The backend, metered.
    pub fn redis_mut(&mut self) -> &mut Metered<R> {
        &mut self.redis
    }
}

impl<R: Redis> OutcomeLimiter for ModelRequestLimiter<R> {
    type Ticket = SuccessTicket;

    async fn admit(
        &mut self,
        request: &Request,
    ) -> Result<(Verdict, Option<SuccessTicket>), LimiterError> {
        let before = self.redis.usage();
        let (success, ticket) = self.success.admit(&mut self.redis, request).await?;
        let Some(ticket) = ticket.filter(|_| success.allowed) else {
            let usage = usage_since(&self.redis, before);
            return Ok((
                Verdict {
                    decision: success,
                    usage,
                },
                None,
            ));
        };
        let total = self.bucket.allow(&mut self.redis, request).await?;
        let usage = usage_since(&self.redis, before);
        if !total.allowed {
            // Gin's Abort: the chain does not run and the status (429) stops the record.
            return Ok((
                Verdict {
                    decision: total,
                    usage,
                },
                None,
            ));
        }
        let decision = Decision {
            allowed: true,
            remaining: success.remaining.min(total.remaining),
            retry_after_ms: 0,
            reset_after_ms: success.reset_after_ms.max(total.reset_after_ms),
        };
        Ok((Verdict { decision, usage }, Some(ticket)))
    }

    async fn complete(
        &mut self,
        ticket: SuccessTicket,
        succeeded: bool,
        now_ms: u64,
    ) -> Result<Usage, LimiterError> {
        let before = self.redis.usage();
        self.success
            .record(&mut self.redis, ticket, succeeded, now_ms)
            .await;
        Ok(usage_since(&self.redis, before))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{
        Lockstep, Recording, alternate, block_on, client, drain, list, node, run,
    };
    use super::*;
    use crate::keys::Identity;
    use crate::redis::Error;

    const T0_MS: u64 = 1_773_856_223_123; // 2026-03-18T17:50:23.123Z
    const SUCCESS_KEY: &str = "rateLimit:MRRLS:7";

    fn request(now_ms: u64) -> Request {
        Request {
            identity: Identity::new("model").with("user", "7"),
            cost: 1,
            now_ms,
        }
    }

    /// One step of an outcome limiter: at `offset ms`, admit; expect `allowed` and the
    /// commands; then, if admitted, complete with `Some(succeeded)` and expect its commands.
    type Step<'a> = (u64, bool, &'a [&'a str], Option<bool>, &'a [&'a str]);

    /// Runs `steps` on a limiter built by `build` over a recording client, checking that
    /// every verdict's usage equals the commands recorded.
    fn check<L, F>(build: F, steps: &[Step<'_>]) -> crate::model::SharedModel
    where
        L: OutcomeLimiter,
        F: FnOnce(Recording<crate::redis::Local>) -> L,
    {
        let (model, clock) = node(T0_MS);
        let (recording, log) = Recording::new(client(&model, &clock));
        let mut limiter = build(recording);
        for (index, &(offset_ms, allowed, admit_commands, outcome, complete_commands)) in
            steps.iter().enumerate()
        {
            let now_ms = T0_MS + offset_ms;
            clock.set(now_ms);
            let (verdict, ticket) = block_on(limiter.admit(&request(now_ms))).unwrap();
            assert_eq!(verdict.decision.allowed, allowed, "step {index}");
            assert_eq!(
                ticket.is_some(),
                allowed,
                "step {index}: a ticket iff allowed"
            );
            assert_eq!(drain(&log), admit_commands, "step {index} admit");
            assert_eq!(
                verdict.usage.round_trips,
                admit_commands.len() as u64,
                "step {index} admit round trips"
            );
            if let (Some(ticket), Some(succeeded)) = (ticket, outcome) {
                let usage = block_on(limiter.complete(ticket, succeeded, now_ms)).unwrap();
                assert_eq!(drain(&log), complete_commands, "step {index} complete");
                assert_eq!(usage.round_trips, complete_commands.len() as u64);
            }
        }
        model
    }

    fn quota(total: i64, success: i64, minutes: i64) -> ModelQuota {
        ModelQuota::new(total, success, minutes).unwrap()
    }

    const LLEN: &str = "LLEN rateLimit:MRRLS:7";
    const LINDEX: &str = "LINDEX rateLimit:MRRLS:7 -1";
    const EXPIRE: &str = "EXPIRE rateLimit:MRRLS:7 60";
    const LTRIM: &str = "LTRIM rateLimit:MRRLS:7 0 1";

    #[test]
    fn c1_checks_before_and_records_completions_after() {
        let model = check(
            |redis| SuccessLimiter::new(redis, quota(0, 2, 1), GatewayClock::UTC),
            &[
                (
                    0,
                    true,
                    &[LLEN],
                    Some(true),
                    &[
                        "LPUSH rateLimit:MRRLS:7 2026-03-18T17:50:23.123Z",
                        LTRIM,
                        EXPIRE,
                    ],
                ),
                // A failed request records nothing.
                (1_000, true, &[LLEN], Some(false), &[]),
                (
                    5_000,
                    true,
                    &[LLEN],
                    Some(true),
                    &[
                        "LPUSH rateLimit:MRRLS:7 2026-03-18T17:50:28.123Z",
                        LTRIM,
                        EXPIRE,
                    ],
                ),
                // Full: 59.999 s after the oldest truncates to 59 < 60: deny, TTL refreshed.
                (59_999, false, &[LLEN, LINDEX, EXPIRE], None, &[]),
                // 60 s: admitted through LINDEX, nothing written until completion.
                (
                    60_000,
                    true,
                    &[LLEN, LINDEX],
                    Some(true),
                    &[
                        "LPUSH rateLimit:MRRLS:7 2026-03-18T17:51:23.123Z",
                        LTRIM,
                        EXPIRE,
                    ],
                ),
            ],
        );
        assert_eq!(
            list(&model, T0_MS + 60_000, SUCCESS_KEY),
            ["2026-03-18T17:51:23.123Z", "2026-03-18T17:50:28.123Z"]
        );
        assert_eq!(
            run(&model, T0_MS + 60_000, &["TTL", SUCCESS_KEY]),
            Reply::Integer(60)
        );
    }

    #[test]
    fn c1_with_m_zero_never_calls_redis() {
        check(
            |redis| SuccessLimiter::new(redis, quota(0, 0, 1), GatewayClock::UTC),
            &[
                (0, true, &[], Some(true), &[]),
                (1, true, &[], Some(true), &[]),
            ],
        );
    }

    #[test]
    fn c1_errors_on_unreadable_lists() {
        let (model, clock) = node(T0_MS);
        let mut limiter =
            SuccessLimiter::new(client(&model, &clock), quota(0, 1, 1), GatewayClock::UTC);
        run(&model, T0_MS, &["SET", SUCCESS_KEY, "x"]);
        assert!(block_on(limiter.admit(&request(T0_MS))).is_err());
        run(&model, T0_MS, &["DEL", SUCCESS_KEY]);
        run(&model, T0_MS, &["RPUSH", SUCCESS_KEY, "not a time"]);
        assert!(block_on(limiter.admit(&request(T0_MS))).is_err());
    }

    #[test]
    fn r1_two_admissions_before_completion_give_two_successes_with_m_one() {
        let (model, clock) = node(T0_MS);
        let mut limiter =
            SuccessLimiter::new(client(&model, &clock), quota(0, 1, 1), GatewayClock::UTC);
        let (first, first_ticket) = block_on(limiter.admit(&request(T0_MS))).unwrap();
        let (second, second_ticket) = block_on(limiter.admit(&request(T0_MS + 10))).unwrap();
        assert!(first.decision.allowed && second.decision.allowed);
        // Both streams finish 30 s later and succeed: 2 successes against M = 1.
        let done_ms = T0_MS + 30_000;
        block_on(limiter.complete(first_ticket.unwrap(), true, done_ms)).unwrap();
        block_on(limiter.complete(second_ticket.unwrap(), true, done_ms + 1)).unwrap();
        // LTRIM kept one: the evidence of the second success is gone.
        assert_eq!(
            list(&model, done_ms, SUCCESS_KEY),
            ["2026-03-18T17:50:53.124Z"]
        );
        // Sequentially, the next one is denied.
        assert!(
            !block_on(limiter.admit(&request(done_ms + 2)))
                .unwrap()
                .0
                .decision
                .allowed
        );
    }

    /// A backend whose SCRIPT LOAD never gets through.
    struct LoadFails<R>(R);

    impl<R: Redis> Redis for LoadFails<R> {
        async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
            if let Cmd::ScriptLoad { .. } = cmd {
                return Err(Error::Timeout);
            }
            self.0.exec(cmd).await
        }

        async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
            self.0.pipeline(cmds).await
        }
    }

    #[test]
    fn c2_a_failed_load_leaves_the_digest_empty_for_good() {
        let (model, clock) = node(T0_MS);
        let (recording, log) = Recording::new(client(&model, &clock));
        let mut limiter = TokenBucketLimiter::new(LoadFails(recording), quota(2, 0, 1));
        for attempt in 0..3 {
            let result = block_on(limiter.check(&request(T0_MS)));
            assert!(
                matches!(&result, Err(LimiterError::Reply(line)) if line.starts_with("NOSCRIPT")),
                "attempt {attempt}: {result:?}"
            );
            assert_eq!(
                drain(&log),
                ["EVALSHA  1 rateLimit:7 60 2 120"],
                "attempt {attempt}"
            );
        }
        assert_eq!(limiter.loader().sha(), Some(String::new()));
    }

    #[test]
    fn c2_loads_once_per_process_and_noscript_sticks_after_a_flush() {
        let (model, clock) = node(T0_MS);
        let (recording, log) = Recording::new(client(&model, &clock));
        let mut limiter = TokenBucketLimiter::new(recording, quota(2, 0, 1));
        let sha = Script::NewapiTokenBucket.sha();
        let evalsha = format!("EVALSHA {sha} 1 rateLimit:7 60 2 120");
        let verdict = block_on(limiter.check(&request(T0_MS))).unwrap();
        assert!(verdict.decision.allowed);
        assert_eq!(verdict.usage.round_trips, 2);
        assert_eq!(drain(&log), ["SCRIPT LOAD <script>", evalsha.as_str()]);
        // A sibling of the same process does not load again.
        let mut sibling = limiter.sibling(client(&model, &clock));
        let verdict = block_on(sibling.check(&request(T0_MS))).unwrap();
        assert!(verdict.decision.allowed);
        assert_eq!(verdict.usage.round_trips, 1);
        // Burst N = 2 spent: denied, one round trip.
        let verdict = block_on(limiter.check(&request(T0_MS))).unwrap();
        assert!(!verdict.decision.allowed);
        assert_eq!(drain(&log), [evalsha.as_str()]);
        run(&model, T0_MS, &["SCRIPT", "FLUSH"]);
        for attempt in 0..3 {
            clock.set(T0_MS + 60_000 * (attempt + 1));
            let result = block_on(limiter.check(&request(clock.now())));
            assert!(
                matches!(&result, Err(LimiterError::Reply(line)) if line.starts_with("NOSCRIPT")),
                "attempt {attempt}: {result:?}"
            );
            assert_eq!(drain(&log), [evalsha.as_str()], "no reload, no EVAL");
        }
        // A restarted gateway (a new loader) loads again and recovers.
        let mut restarted = TokenBucketLimiter::new(client(&model, &clock), quota(2, 0, 1));
        assert!(
            block_on(restarted.check(&request(clock.now())))
                .unwrap()
                .decision
                .allowed
        );
    }

    #[test]
    fn c2_concurrent_first_calls_share_one_load() {
        let (model, clock) = node(T0_MS);
        let (first_redis, first_log) = Recording::new(client(&model, &clock));
        let (second_redis, second_log) = Recording::new(client(&model, &clock));
        let mut first = TokenBucketLimiter::new(Lockstep(first_redis), quota(5, 0, 1));
        let mut second = first.sibling(Lockstep(second_redis));
        let request = request(T0_MS);
        let (first_verdict, second_verdict) =
            alternate(first.check(&request), second.check(&request));
        // Both decide (burst 5: both admitted) on the one loaded script.
        for (which, verdict) in [("first", first_verdict), ("second", second_verdict)] {
            let verdict = verdict.unwrap_or_else(|error| panic!("{which}: {error}"));
            assert!(verdict.decision.allowed, "{which}: {verdict:?}");
        }
        let loads = drain(&first_log)
            .into_iter()
            .chain(drain(&second_log))
            .filter(|line| line.starts_with("SCRIPT LOAD"))
            .count();
        assert_eq!(loads, 1);
        assert!(first.loader().sha().is_some());
    }

    #[test]
    fn c2_with_n_zero_is_skipped() {
        let (model, clock) = node(T0_MS);
        let (recording, log) = Recording::new(client(&model, &clock));
        let mut limiter = TokenBucketLimiter::new(recording, quota(0, 5, 1));
        let verdict = block_on(limiter.check(&request(T0_MS))).unwrap();
        assert!(verdict.decision.allowed);
        assert_eq!(verdict.usage.round_trips, 0);
        assert!(drain(&log).is_empty());
        assert_eq!(limiter.loader().sha(), None, "no load without a bucket");
    }

    fn evalsha(total: u64) -> String {
        format!(
            "EVALSHA {} 1 rateLimit:7 60 {total} {}",
            Script::NewapiTokenBucket.sha(),
            total * 60
        )
    }

    #[test]
    fn combined_limit_round_trips_match_the_reference_table() {
        let evalsha = evalsha(5);
        let evalsha = evalsha.as_str();
        let model = check(
            |redis| ModelRequestLimiter::new(redis, quota(5, 2, 1), GatewayClock::UTC),
            &[
                // First use: SCRIPT LOAD too. Then 3 after.
                (
                    0,
                    true,
                    &[LLEN, "SCRIPT LOAD <script>", evalsha],
                    Some(true),
                    &[
                        "LPUSH rateLimit:MRRLS:7 2026-03-18T17:50:23.123Z",
                        LTRIM,
                        EXPIRE,
                    ],
                ),
                // Below M: 2 + 3 = 5.
                (
                    1_000,
                    true,
                    &[LLEN, evalsha],
                    Some(true),
                    &[
                        "LPUSH rateLimit:MRRLS:7 2026-03-18T17:50:24.123Z",
                        LTRIM,
                        EXPIRE,
                    ],
                ),
                // Denied by the success check: 3, no token spent.
                (2_000, false, &[LLEN, LINDEX, EXPIRE], None, &[]),
                // Full but aged out: 3 + 3 = 6.
                (
                    60_000,
                    true,
                    &[LLEN, LINDEX, evalsha],
                    Some(true),
                    &[
                        "LPUSH rateLimit:MRRLS:7 2026-03-18T17:51:23.123Z",
                        LTRIM,
                        EXPIRE,
                    ],
                ),
                // Admitted, upstream failed: 3 then 0.
                (61_000, true, &[LLEN, LINDEX, evalsha], Some(false), &[]),
            ],
        );
        // Capacity 300, 60 tokens a request, 5 per second: 300-60 = 240; +5-60 = 185; the
        // success denial spends nothing; +295 capped at 300, -60 = 240; +5-60 = 185.
        assert_eq!(
            run(&model, T0_MS + 61_000, &["HGET", "rateLimit:7", "tokens"]),
            Reply::Bulk(b"185".to_vec())
        );
    }

    #[test]
    fn combined_limit_bucket_denial_and_the_skips() {
        let evalsha = evalsha(1);
        let evalsha = evalsha.as_str();
        // M = 0, N = 1: only EVALSHA; the second is denied by the bucket.
        check(
            |redis| ModelRequestLimiter::new(redis, quota(1, 0, 1), GatewayClock::UTC),
            &[
                (0, true, &["SCRIPT LOAD <script>", evalsha], Some(true), &[]),
                (1_000, false, &[evalsha], None, &[]),
            ],
        );
        // M = N = 0: no Redis call at all.
        check(
            |redis| ModelRequestLimiter::new(redis, quota(0, 0, 1), GatewayClock::UTC),
            &[(0, true, &[], Some(true), &[])],
        );
        // Bucket denial with the success list on: LLEN + EVALSHA, nothing recorded.
        check(
            |redis| ModelRequestLimiter::new(redis, quota(1, 3, 1), GatewayClock::UTC),
            &[
                (
                    0,
                    true,
                    &[LLEN, "SCRIPT LOAD <script>", evalsha],
                    Some(false),
                    &[],
                ),
                (1_000, false, &[LLEN, evalsha], None, &[]),
            ],
        );
    }

    #[test]
    fn model_quotas_are_validated() {
        assert!(ModelQuota::new(-1, 1, 1).is_err());
        assert!(ModelQuota::new(1, -1, 1).is_err());
        assert!(ModelQuota::new(1, 1, 0).is_err());
        assert!(ModelQuota::new(MAX_MODEL_COUNT + 1, 1, 1).is_err());
        assert!(ModelQuota::new(1, 1, MAX_WINDOW_MINUTES + 1).is_err());
        // Capacity N × D must stay exact in Lua.
        assert!(ModelQuota::new(MAX_MODEL_COUNT, 1, MAX_WINDOW_MINUTES).is_err());
        let quota = ModelQuota::new(MAX_MODEL_COUNT, 0, 1).unwrap();
        assert_eq!(quota.window_s(), 60);
        assert_eq!(quota.success_max(), 0);
    }
}
