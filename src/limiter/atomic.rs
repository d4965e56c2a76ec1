//! The redesign: one atomic script, one round trip, per decision.
//!
//! [`ScriptLimiter`] runs one of the window or rate scripts in `lua/` (fixed window, sliding
//! window counter, token bucket, GCRA) with EVALSHA, falling back to EVAL when the server lost
//! its script cache (one extra round trip, counted). [`PipelinedFixedWindow`] is the fixed
//! window without Lua, as Envoy's ratelimit does it. [`Rollout`] switches one limit between a
//! legacy and an atomic implementation, so a rollout can be rolled back one limit at a time.

use crate::algo::{Decision, RateQuota, WindowQuota};
use crate::keys::KeyScheme;
use crate::model::Reply;
use crate::redis::{Cmd, Metered, Redis, Reload, Script, Usage, run_script_with};

use super::{Limiter, LimiterError, Request, Verdict};

/// Which script a [`ScriptLimiter`] runs, with its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `lua/fixed_window.lua`: L per aligned window; 2L in a trailing window.
    FixedWindow(WindowQuota),
    /// `lua/sliding_window.lua`: L per aligned window; at most 2L in a trailing window.
    SlidingWindow(WindowQuota),
    /// `lua/token_bucket.lua`: B + ⌊Δ/T⌋ in any interval Δ.
    TokenBucket(RateQuota),
    /// `lua/gcra.lua`: B + ⌊Δ/T⌋ in any interval Δ.
    Gcra(RateQuota),
    /// `lua/sliding_log.lua`: exactly L in every trailing window.
    SlidingLog(WindowQuota),
}

impl Algorithm {
    /// The script that implements it.
    pub fn script(self) -> Script {
        match self {
            Algorithm::FixedWindow(_) => Script::FixedWindow,
            Algorithm::SlidingWindow(_) => Script::SlidingWindow,
            Algorithm::TokenBucket(_) => Script::TokenBucket,
            Algorithm::Gcra(_) => Script::Gcra,
            Algorithm::SlidingLog(_) => Script::SlidingLog,
        }
    }

    /// ARGV for a request of `cost` units; `now_ms` is `None` for Redis TIME.
    pub fn args(self, cost: u64, now_ms: Option<u64>) -> Vec<Vec<u8>> {
        let (first, second) = match self {
            Algorithm::FixedWindow(quota)
            | Algorithm::SlidingWindow(quota)
            | Algorithm::SlidingLog(quota) => (quota.limit(), quota.window_ms()),
            Algorithm::TokenBucket(quota) | Algorithm::Gcra(quota) => {
                (quota.burst(), quota.interval_ms())
            }
        };
        vec![
            first.to_string().into_bytes(),
            second.to_string().into_bytes(),
            cost.to_string().into_bytes(),
            now_ms
                .map(|now_ms| now_ms.to_string())
                .unwrap_or_default()
                .into_bytes(),
        ]
    }
}

/// Where a script's clock comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptClock {
    /// Redis TIME: one clock for every gateway (the production choice).
    Redis,
    /// The request's gateway time, passed as ARGV: exact replay in tests, and a way to model a
    /// deployment that cannot call TIME in scripts (some managed Redis services forbid it).
    Gateway,
}

impl ScriptClock {
    /// The time a script is given: the request's for [`ScriptClock::Gateway`], none (the
    /// script reads TIME) for [`ScriptClock::Redis`].
    pub fn now_ms(self, request_ms: u64) -> Option<u64> {
        match self {
            ScriptClock::Redis => None,
            ScriptClock::Gateway => Some(request_ms),
        }
    }

    /// [`ScriptClock::now_ms`] as the script's ARGV entry: empty when the script reads TIME.
    pub fn now_arg(self, request_ms: u64) -> Vec<u8> {
        self.now_ms(request_ms)
            .map_or_else(Vec::new, |ms| ms.to_string().into_bytes())
    }
}

/// Parses the scripts' reply `{allowed, remaining, retry_after_ms (-1 = never), reset_after_ms}`.
pub fn parse_decision(reply: &Reply) -> Result<Decision, LimiterError> {
    let Reply::Array(items) = reply else {
        return Err(LimiterError::Reply(format!(
            "expected a 4-element array, got {reply:?}"
        )));
    };
    let numbers: Vec<i64> = items
        .iter()
        .map(|item| match item {
            Reply::Integer(value) => Ok(*value),
            other => Err(LimiterError::Reply(format!(
                "expected an integer, got {other:?}"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let [allowed, remaining, retry_after_ms, reset_after_ms] = numbers[..] else {
        return Err(LimiterError::Reply(format!(
            "expected 4 integers, got {}",
            numbers.len()
        )));
    };
    let non_negative = |value: i64| {
        u64::try_from(value).map_err(|_| LimiterError::Reply(format!("negative value {value}")))
    };
    Ok(Decision {
        allowed: allowed == 1,
        remaining: non_negative(remaining)?,
        retry_after_ms: if retry_after_ms == -1 {
            u64::MAX
        } else {
            non_negative(retry_after_ms)?
        },
        reset_after_ms: non_negative(reset_after_ms)?,
    })
}

/// One script per decision.
pub struct ScriptLimiter<R> {
    redis: Metered<R>,
    scheme: KeyScheme,
    algorithm: Algorithm,
    clock: ScriptClock,
    reload: Reload,
}

impl<R: Redis> ScriptLimiter<R> {
    /// A limiter that keys requests with `scheme` (its shard 0) and decides with `algorithm`.
    pub fn new(
        redis: R,
        scheme: KeyScheme,
        algorithm: Algorithm,
        clock: ScriptClock,
    ) -> ScriptLimiter<R> {
        ScriptLimiter {
            redis: Metered::new(redis),
            scheme,
            algorithm,
            clock,
            reload: Reload::default(),
        }
    }

    /// What to do after NOSCRIPT (default: go-redis's EVALSHA then EVAL).
    pub fn with_reload(mut self, reload: Reload) -> ScriptLimiter<R> {
        self.reload = reload;
        self
    }

    /// The backend, for inspection.
    pub fn redis_mut(&mut self) -> &mut R {
        self.redis.inner_mut()
    }
}

impl<R: Redis> Limiter for ScriptLimiter<R> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let key = self.scheme.render(&request.identity, 0)?;
        let now_ms = self.clock.now_ms(request.now_ms);
        let before = self.redis.usage();
        let reply = run_script_with(
            &mut self.redis,
            self.algorithm.script(),
            vec![key],
            self.algorithm.args(request.cost, now_ms),
            &self.reload,
        )
        .await?;
        let decision = parse_decision(&reply)?;
        Ok(Verdict {
            decision,
            usage: self.redis.usage() - before,
        })
    }
}

/// A fixed window without Lua, as Envoy's ratelimit does it: the window start (from the
/// gateway clock) is part of the key, and `INCRBY key cost` and `PEXPIRE key window` go in one
/// pipeline, one round trip.
///
/// What it gives up against [`Algorithm::FixedWindow`]: denied requests are counted too (the
/// INCRBY runs before the comparison), so a flood of denials keeps a key over its limit until
/// the window ends (never over-admission, but under-admission); gateways with skewed clocks use
/// different keys near a boundary (up to L extra per extra live key); and it needs no script
/// cache, no TIME in scripts, and works on any Redis.
pub struct PipelinedFixedWindow<R> {
    redis: Metered<R>,
    scheme: KeyScheme,
    quota: WindowQuota,
}

impl<R: Redis> PipelinedFixedWindow<R> {
    /// A limiter keyed by `scheme` (with `:<window start ms>` appended).
    pub fn new(redis: R, scheme: KeyScheme, quota: WindowQuota) -> PipelinedFixedWindow<R> {
        PipelinedFixedWindow {
            redis: Metered::new(redis),
            scheme,
            quota,
        }
    }
}

impl<R: Redis> Limiter for PipelinedFixedWindow<R> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let window_ms = self.quota.window_ms();
        let window_start_ms = request.now_ms - request.now_ms % window_ms;
        let mut key = self.scheme.render(&request.identity, 0)?;
        key.extend_from_slice(format!(":{window_start_ms}").as_bytes());
        let by = i64::try_from(request.cost)
            .map_err(|_| LimiterError::Reply("cost above i64::MAX".to_owned()))?;
        let before = self.redis.usage();
        let replies = self
            .redis
            .pipeline(vec![
                Cmd::IncrBy {
                    key: key.clone(),
                    by,
                },
                Cmd::PExpire {
                    key,
                    ttl_ms: i64::try_from(window_ms).expect("window below 2^53"),
                },
            ])
            .await?;
        let count = match replies.first() {
            Some(Reply::Integer(count)) => u64::try_from(*count).unwrap_or(0),
            other => return Err(LimiterError::Reply(format!("INCRBY answered {other:?}"))),
        };
        let limit = self.quota.limit();
        let reset_after_ms = window_start_ms + window_ms - request.now_ms;
        let allowed = count <= limit;
        let decision = Decision {
            allowed,
            remaining: limit.saturating_sub(count),
            retry_after_ms: if allowed {
                0
            } else if request.cost > limit {
                u64::MAX
            } else {
                reset_after_ms
            },
            reset_after_ms,
        };
        Ok(Verdict {
            decision,
            usage: self.redis.usage() - before,
        })
    }
}

/// One limit that can run either implementation: the rollback switch of a rollout. A gateway
/// fleet can mix them during a rollout (old and new gateways sharing one Redis).
pub enum Rollout<L, A> {
    /// The legacy implementation.
    Legacy(L),
    /// The atomic implementation.
    Atomic(A),
}

impl<L: Limiter, A: Limiter> Limiter for Rollout<L, A> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        match self {
            Rollout::Legacy(limiter) => limiter.check(request).await,
            Rollout::Atomic(limiter) => limiter.check(request).await,
        }
    }
}

/// Several GCRA limits on one request, all or nothing, in one script call
/// (`lua/multi_limit.lua`): the global, per-user and per-model limits merged into one check
/// limits. Each limit has its own key scheme; on Redis Cluster all of one request's keys must
/// share a hash tag (`{u:<user>}`), which `KeyScheme::plan_user` provides.
pub struct MultiLimiter<R> {
    redis: Metered<R>,
    limits: Vec<(KeyScheme, RateQuota)>,
    clock: ScriptClock,
    reload: Reload,
}

impl<R: Redis> MultiLimiter<R> {
    /// A limiter over `limits` (at least one).
    pub fn new(
        redis: R,
        limits: Vec<(KeyScheme, RateQuota)>,
        clock: ScriptClock,
    ) -> MultiLimiter<R> {
        assert!(!limits.is_empty(), "a multi-limit needs at least one limit");
        MultiLimiter {
            redis: Metered::new(redis),
            limits,
            clock,
            reload: Reload::default(),
        }
    }

    /// What to do after NOSCRIPT (default: go-redis's EVALSHA then EVAL).
    pub fn with_reload(mut self, reload: Reload) -> Self {
        self.reload = reload;
        self
    }

    /// Decides and also says which limit refused (0-based), if any.
    pub async fn check_detailed(
        &mut self,
        request: &Request,
    ) -> Result<(Verdict, Option<usize>), LimiterError> {
        let keys = self
            .limits
            .iter()
            .map(|(scheme, _)| scheme.render(&request.identity, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let mut args = vec![
            request.cost.to_string().into_bytes(),
            self.clock.now_arg(request.now_ms),
        ];
        for (_, quota) in &self.limits {
            args.push(quota.burst().to_string().into_bytes());
            args.push(quota.interval_ms().to_string().into_bytes());
        }
        let before = self.redis.usage();
        let reply = run_script_with(
            &mut self.redis,
            Script::MultiLimit,
            keys,
            args,
            &self.reload,
        )
        .await?;
        let numbers = integers(&reply, 5)?;
        let decision = parse_decision(&Reply::Array(
            [numbers[0], numbers[2], numbers[3], numbers[4]]
                .into_iter()
                .map(Reply::Integer)
                .collect(),
        ))?;
        let denied_by = usize::try_from(numbers[1])
            .ok()
            .and_then(|index| index.checked_sub(1));
        Ok((
            Verdict {
                decision,
                usage: self.redis.usage() - before,
            },
            denied_by,
        ))
    }
}

impl<R: Redis> Limiter for MultiLimiter<R> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        Ok(self.check_detailed(request).await?.0)
    }
}

/// The integers of an array reply of exactly `count` integers.
fn integers(reply: &Reply, count: usize) -> Result<Vec<i64>, LimiterError> {
    let Reply::Array(items) = reply else {
        return Err(LimiterError::Reply(format!(
            "expected an array of {count} integers, got {reply:?}"
        )));
    };
    let numbers = items
        .iter()
        .map(|item| match item {
            Reply::Integer(value) => Ok(*value),
            other => Err(LimiterError::Reply(format!(
                "expected an integer, got {other:?}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if numbers.len() != count {
        return Err(LimiterError::Reply(format!(
            "expected {count} integers, got {}",
            numbers.len()
        )));
    }
    Ok(numbers)
}

/// A success limit by reservation (`lua/success_reserve.lua` and `lua/success_complete.lua`):
/// the fix for race R1. Admission reserves a slot, so requests in flight count; completion
/// records the success or releases the slot. One round trip each.
pub struct SuccessLimiter<R> {
    redis: Metered<R>,
    scheme: KeyScheme,
    quota: crate::algo::reservation::SuccessQuota,
    clock: ScriptClock,
    reload: Reload,
}

/// What admission hands back: the three keys and the reservation id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuccessTicket {
    keys: Vec<Vec<u8>>,
    id: Vec<u8>,
}

impl<R: Redis> SuccessLimiter<R> {
    /// A success limiter. The scheme's key gets the suffixes `:ok`, `:res` and `:seq` (so a
    /// hash tag in the scheme keeps all three in one slot).
    pub fn new(
        redis: R,
        scheme: KeyScheme,
        quota: crate::algo::reservation::SuccessQuota,
        clock: ScriptClock,
    ) -> SuccessLimiter<R> {
        SuccessLimiter {
            redis: Metered::new(redis),
            scheme,
            quota,
            clock,
            reload: Reload::default(),
        }
    }

    /// What to do after NOSCRIPT (default: go-redis's EVALSHA then EVAL).
    pub fn with_reload(mut self, reload: Reload) -> Self {
        self.reload = reload;
        self
    }
}

impl<R: Redis> super::OutcomeLimiter for SuccessLimiter<R> {
    type Ticket = SuccessTicket;

    async fn admit(
        &mut self,
        request: &Request,
    ) -> Result<(Verdict, Option<SuccessTicket>), LimiterError> {
        let base = self.scheme.render(&request.identity, 0)?;
        let keys: Vec<Vec<u8>> = [&b":ok"[..], b":res", b":seq"]
            .iter()
            .map(|suffix| [base.as_slice(), suffix].concat())
            .collect();
        let args = vec![
            self.quota.limit().to_string().into_bytes(),
            self.quota.window_ms().to_string().into_bytes(),
            self.quota.lease_ms().to_string().into_bytes(),
            self.clock.now_arg(request.now_ms),
        ];
        let before = self.redis.usage();
        let reply = run_script_with(
            &mut self.redis,
            Script::SuccessReserve,
            keys.clone(),
            args,
            &self.reload,
        )
        .await?;
        let (numbers, id) = match &reply {
            Reply::Array(items) if items.len() == 5 => match &items[4] {
                Reply::Bulk(id) => (integers(&Reply::Array(items[..4].to_vec()), 4)?, id.clone()),
                other => {
                    return Err(LimiterError::Reply(format!(
                        "expected a reservation id, got {other:?}"
                    )));
                }
            },
            other => {
                return Err(LimiterError::Reply(format!(
                    "expected 5 elements, got {other:?}"
                )));
            }
        };
        let decision = parse_decision(&Reply::Array(
            numbers.into_iter().map(Reply::Integer).collect(),
        ))?;
        let ticket = decision.allowed.then_some(SuccessTicket { keys, id });
        Ok((
            Verdict {
                decision,
                usage: self.redis.usage() - before,
            },
            ticket,
        ))
    }

    async fn complete(
        &mut self,
        ticket: SuccessTicket,
        succeeded: bool,
        now_ms: u64,
    ) -> Result<Usage, LimiterError> {
        let args = vec![
            ticket.id,
            if succeeded {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            },
            self.quota.window_ms().to_string().into_bytes(),
            self.clock.now_arg(now_ms),
        ];
        let before = self.redis.usage();
        let reply = run_script_with(
            &mut self.redis,
            Script::SuccessComplete,
            ticket.keys,
            args,
            &self.reload,
        )
        .await?;
        integers(&reply, 2)?;
        Ok(self.redis.usage() - before)
    }
}

/// One hot limit split over N keys on different slots (a scheme with `$shard` inside its hash
/// tag, e.g. `KeyScheme::plan_sharded`), so that its load spreads over a cluster.
///
/// **Split.** Shard i gets `⌊L/N⌋` (plus one for the first `L mod N` shards) of a window
/// limit, or of a burst, and a rate quota's interval is multiplied by N, so the shards' quotas
/// add up exactly to the whole.
///
/// **Rebalancing rule.** Each gateway sends its requests to the shards in turn (round robin);
/// a request its shard refuses is tried once on the next shard (a second round trip), so one
/// drained shard does not refuse traffic that another could take.
///
/// **Bound.** Over-admission: none beyond the unsharded algorithm's bound, since every shard
/// keeps its own share's bound and the shares add up to the whole (window algorithms: L per
/// aligned window; rate algorithms: `Σ (B_i + ⌊Δ/(N·T)⌋) ≤ B + ⌊Δ/T⌋`). Under-admission: a
/// request can be refused while shards it did not probe still have room (at most N − 2 of
/// them).
pub struct ShardedLimiter<R> {
    redis: Metered<R>,
    scheme: KeyScheme,
    shards: Vec<Algorithm>,
    next_shard: usize,
    clock: ScriptClock,
    reload: Reload,
}

impl<R: Redis> ShardedLimiter<R> {
    /// Splits `algorithm`'s quota over the scheme's shards. Fails when the quota is smaller
    /// than the shard count (a shard would get nothing).
    pub fn new(
        redis: R,
        scheme: KeyScheme,
        algorithm: Algorithm,
        clock: ScriptClock,
    ) -> Result<ShardedLimiter<R>, crate::algo::QuotaError> {
        let count = u64::from(scheme.shards());
        let share = |total: u64, index: u64| total / count + u64::from(index < total % count);
        let shards = (0..count)
            .map(|index| match algorithm {
                Algorithm::FixedWindow(quota) => {
                    WindowQuota::new(share(quota.limit(), index), quota.window_ms())
                        .map(Algorithm::FixedWindow)
                }
                Algorithm::SlidingWindow(quota) => {
                    WindowQuota::new(share(quota.limit(), index), quota.window_ms())
                        .map(Algorithm::SlidingWindow)
                }
                Algorithm::SlidingLog(quota) => {
                    WindowQuota::new(share(quota.limit(), index), quota.window_ms())
                        .map(Algorithm::SlidingLog)
                }
                Algorithm::TokenBucket(quota) => {
                    RateQuota::new(share(quota.burst(), index), quota.interval_ms() * count)
                        .map(Algorithm::TokenBucket)
                }
                Algorithm::Gcra(quota) => {
                    RateQuota::new(share(quota.burst(), index), quota.interval_ms() * count)
                        .map(Algorithm::Gcra)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ShardedLimiter {
            redis: Metered::new(redis),
            scheme,
            shards,
            next_shard: 0,
            clock,
            reload: Reload::default(),
        })
    }

    /// What to do after NOSCRIPT (default: go-redis's EVALSHA then EVAL).
    pub fn with_reload(mut self, reload: Reload) -> Self {
        self.reload = reload;
        self
    }

    /// Starts the round robin at shard `turn mod N`: a gateway that makes a limiter per
    /// request (one per connection) keeps one counter of turns, so that its requests still
    /// visit the shards in turn.
    pub fn starting_at(mut self, turn: u64) -> Self {
        let count = u64::try_from(self.shards.len()).expect("fits");
        self.next_shard = usize::try_from(turn % count).expect("below the shard count");
        self
    }

    async fn try_shard(
        &mut self,
        request: &Request,
        shard: usize,
    ) -> Result<Decision, LimiterError> {
        let key = self.scheme.render(
            &request.identity,
            u32::try_from(shard).expect("shard count is a u32"),
        )?;
        let algorithm = self.shards[shard];
        let now_ms = self.clock.now_ms(request.now_ms);
        let reply = run_script_with(
            &mut self.redis,
            algorithm.script(),
            vec![key],
            algorithm.args(request.cost, now_ms),
            &self.reload,
        )
        .await?;
        parse_decision(&reply)
    }
}

impl<R: Redis> Limiter for ShardedLimiter<R> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let before = self.redis.usage();
        let first = self.next_shard;
        self.next_shard = (self.next_shard + 1) % self.shards.len();
        let mut decision = self.try_shard(request, first).await?;
        if !decision.allowed && self.shards.len() > 1 {
            decision = self
                .try_shard(request, (first + 1) % self.shards.len())
                .await?;
        }
        Ok(Verdict {
            decision,
            usage: self.redis.usage() - before,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::keys::Identity;
    use crate::model::{Model, NodeConfig};
    use crate::redis::Local;

    /// A model-backed Redis whose clock the test moves by hand.
    fn local() -> (Local, Arc<AtomicU64>) {
        let now_ms = Arc::new(AtomicU64::new(1_700_000_000_000));
        let clock_now = now_ms.clone();
        let model = Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(3))));
        let local = Local::connect(model, Arc::new(move || clock_now.load(Ordering::SeqCst)));
        (local, now_ms)
    }

    fn request(user: &str, cost: u64, now_ms: u64) -> Request {
        Request {
            identity: Identity::new("api").with("user", user),
            cost,
            now_ms,
        }
    }

    /// Runs `(gateway now_ms, cost, expected allowed)` through `limiter` and checks that every
    /// decision cost exactly the expected round trips.
    async fn check<L: Limiter>(limiter: &mut L, round_trips: u64, steps: &[(u64, u64, bool)]) {
        for &(now_ms, cost, allowed) in steps {
            let verdict = limiter.check(&request("7", cost, now_ms)).await.unwrap();
            assert_eq!(verdict.decision.allowed, allowed, "at {now_ms} cost {cost}");
            assert_eq!(verdict.usage.round_trips, round_trips, "at {now_ms}");
        }
    }

    #[tokio::test]
    async fn pipelined_fixed_window_counts_denials_and_resets_by_key() {
        let (redis, _) = local();
        let scheme = KeyScheme::parse("rl:$ns:$user", 1).unwrap();
        let mut limiter =
            PipelinedFixedWindow::new(redis, scheme, WindowQuota::new(2, 1_000).unwrap());
        let t = 1_700_000_000_000;
        check(
            &mut limiter,
            1,
            &[
                (t, 1, true),
                (t + 10, 1, true),
                (t + 20, 1, false),
                (t + 999, 1, false),
                (t + 1_000, 1, true),
            ],
        )
        .await;
        let verdict = limiter.check(&request("7", 1, t + 1_001)).await.unwrap();
        assert_eq!(
            (verdict.decision.allowed, verdict.usage.commands),
            (true, 2)
        );
    }

    #[tokio::test]
    async fn regression_success_ids_survive_the_counter_expiring() {
        // Postmortem: found by proptests/tests/props/scripts_vs_algo.rs. Reservation ids came from a
        // counter key that expires with the others; once every lease had run out, the counter
        // restarted at 1 and a new reservation took the id of a ticket still held by a slow
        // request. Completing that old ticket then removed the new reservation, and the next
        // admission got through: two in flight against a limit of 1. Ids are now
        // "<reservation ms>:<counter>".
        use crate::limiter::OutcomeLimiter;
        let (redis, clock) = local();
        let t = clock.load(Ordering::SeqCst);
        let quota = crate::algo::reservation::SuccessQuota::new(1, 1_000, 700).unwrap();
        let scheme = KeyScheme::parse("rl:ok:{u:$user}", 1).unwrap();
        let mut limiter = SuccessLimiter::new(redis, scheme, quota, ScriptClock::Redis);
        let (first, slow) = limiter.admit(&request("7", 1, t)).await.unwrap();
        assert!(first.decision.allowed);
        clock.store(t + 701, Ordering::SeqCst);
        let (second, _fast) = limiter.admit(&request("7", 1, t + 701)).await.unwrap();
        assert!(second.decision.allowed, "the slow request's lease expired");
        limiter
            .complete(slow.unwrap(), true, t + 701)
            .await
            .unwrap();
        clock.store(t + 702, Ordering::SeqCst);
        let (third, _) = limiter.admit(&request("7", 1, t + 702)).await.unwrap();
        assert!(
            !third.decision.allowed,
            "one success and one reservation fill a limit of 1"
        );
    }

    #[tokio::test]
    async fn sharded_limiter_splits_the_quota_and_keeps_the_whole_bound() {
        let (redis, clock) = local();
        let scheme = KeyScheme::plan_sharded(4).unwrap();
        let quota = RateQuota::new(10, 100).unwrap();
        let mut limiter = ShardedLimiter::new(
            redis,
            scheme.clone(),
            Algorithm::Gcra(quota),
            ScriptClock::Redis,
        )
        .unwrap();
        let identity = Identity::new("global");
        let slots: std::collections::BTreeSet<u16> = scheme
            .render_all(&identity)
            .unwrap()
            .iter()
            .map(|key| crate::keys::key_slot(key))
            .collect();
        assert_eq!(slots.len(), 4, "each shard on its own slot");
        // A burst at one instant: the shards' bursts (3, 3, 2, 2) add up to exactly 10.
        let t = clock.load(Ordering::SeqCst);
        let mut admitted = 0;
        let mut round_trips = Vec::new();
        for _ in 0..14 {
            let request = Request {
                identity: identity.clone(),
                cost: 1,
                now_ms: t,
            };
            let verdict = limiter.check(&request).await.unwrap();
            admitted += u64::from(verdict.decision.allowed);
            round_trips.push(verdict.usage.round_trips);
        }
        assert_eq!(admitted, 10);
        assert!(
            round_trips[1..]
                .iter()
                .all(|&trips| trips == 1 || trips == 2),
            "{round_trips:?}"
        );
        // Over time: never more than B + floor(delta / T) in any interval.
        let mut times = vec![t; 10];
        for step in 1..400u64 {
            let now_ms = t + step * 7;
            clock.store(now_ms, Ordering::SeqCst);
            let request = Request {
                identity: identity.clone(),
                cost: 1,
                now_ms,
            };
            if limiter.check(&request).await.unwrap().decision.allowed {
                times.push(now_ms);
            }
        }
        for span_ms in [0, 99, 100, 1_000, 2_799] {
            let worst = crate::algo::testing::max_in_closed_interval(&times, span_ms);
            assert!(worst <= 10 + span_ms / 100, "{worst} in {span_ms} ms");
        }
        assert!(
            ShardedLimiter::new(
                local().0,
                KeyScheme::plan_sharded(4).unwrap(),
                Algorithm::Gcra(RateQuota::new(3, 100).unwrap()),
                ScriptClock::Redis
            )
            .is_err(),
            "a quota below the shard count is refused"
        );
    }

    #[tokio::test]
    async fn sharded_limiters_made_per_request_take_turns_with_starting_at() {
        // Goal: a gateway that makes one limiter per request still visits the shards in
        // turn. Method: burst 4 over 4 shards (1 each), four requests at one instant, each
        // through a fresh limiter; started at turns 0..4 all four are admitted in one round
        // trip each, while four limiters all starting at shard 0 admit only two (shard 0,
        // then shard 1 on the retry).
        let quota = RateQuota::new(4, 100).unwrap();
        let t = 1_700_000_000_000;
        for (turns, admitted_expected) in [([0u64, 1, 2, 3], 4), ([0, 0, 0, 0], 2)] {
            let model = Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(3))));
            let mut admitted = 0;
            for turn in turns {
                let mut limiter = ShardedLimiter::new(
                    Local::connect(Arc::clone(&model), Arc::new(move || t)),
                    KeyScheme::plan_sharded(4).unwrap(),
                    Algorithm::Gcra(quota),
                    ScriptClock::Redis,
                )
                .unwrap()
                .starting_at(turn);
                let request = Request {
                    identity: Identity::new("global"),
                    cost: 1,
                    now_ms: t,
                };
                let verdict = limiter.check(&request).await.unwrap();
                admitted += u64::from(verdict.decision.allowed);
                // The first call meets an empty script cache (EVALSHA, then EVAL).
                if admitted_expected == 4 && turn > 0 {
                    assert_eq!(verdict.usage.round_trips, 1, "turn {turn}");
                }
            }
            assert_eq!(admitted, admitted_expected, "turns {turns:?}");
        }
    }

    /// Passes everything through, but the first EVAL fails as a pool timeout would; logs
    /// which script command each call was.
    struct FirstEvalTimesOut<R> {
        inner: R,
        failed: bool,
        log: Vec<&'static str>,
    }

    impl<R: Redis> Redis for FirstEvalTimesOut<R> {
        async fn exec(&mut self, cmd: Cmd) -> Result<Reply, crate::redis::Error> {
            let name = match &cmd {
                Cmd::Eval { .. } => "EVAL",
                Cmd::EvalSha { .. } => "EVALSHA",
                Cmd::FCall { .. } => "FCALL",
                Cmd::FunctionLoad => "FUNCTION LOAD",
                _ => "other",
            };
            self.log.push(name);
            if name == "EVAL" && !self.failed {
                self.failed = true;
                return Err(crate::redis::Error::Timeout);
            }
            self.inner.exec(cmd).await
        }

        async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, crate::redis::Error> {
            self.inner.pipeline(cmds).await
        }
    }

    #[tokio::test]
    async fn after_noscript_eval_until_loaded_needs_one_round_trip() {
        // Goal: `Reload::EvalUntilLoaded` makes a cold script cache cost one round trip per
        // decision (EVAL) until an EVAL is answered, where go-redis's way costs two (EVALSHA,
        // NOSCRIPT, EVAL) and, behind a saturated pool, never loads the script. Method: a
        // fresh model (empty cache) whose first EVAL fails as a pool timeout; three decisions
        // under each policy, with the commands each one sent.
        let quota = RateQuota::new(100, 10).unwrap();
        let scheme = KeyScheme::parse("rl:$ns:$user", 1).unwrap();
        let cases: [(Reload, [&[&str]; 3]); 2] = [
            (
                Reload::EvalShaThenEval,
                [&["EVALSHA", "EVAL"], &["EVALSHA", "EVAL"], &["EVALSHA"]],
            ),
            (
                Reload::eval_until_loaded(),
                [&["EVALSHA", "EVAL"], &["EVAL"], &["EVALSHA"]],
            ),
        ];
        for (reload, expected) in cases {
            let backend = FirstEvalTimesOut {
                inner: local().0,
                failed: false,
                log: Vec::new(),
            };
            let mut limiter = ScriptLimiter::new(
                backend,
                scheme.clone(),
                Algorithm::Gcra(quota),
                ScriptClock::Redis,
            )
            .with_reload(reload.clone());
            for (index, commands) in expected.iter().enumerate() {
                let outcome = limiter.check(&request("1", 1, 0)).await;
                assert_eq!(outcome.is_ok(), index > 0, "{reload:?} decision {index}");
                let sent = std::mem::take(&mut limiter.redis_mut().log);
                assert_eq!(sent, *commands, "{reload:?} decision {index}");
            }
        }
    }

    #[tokio::test]
    async fn the_fcall_policy_loads_the_library_when_missing_and_decides_as_evalsha() {
        // Goal: `Reload::Fcall` calls the script's function, loads the library on "Function
        // not found" (once per server), keeps working through SCRIPT FLUSH and through a
        // restart that keeps the functions, and decides exactly as EVALSHA does.
        let quota = RateQuota::new(3, 100).unwrap();
        let scheme = KeyScheme::parse("rl:$ns:$user", 1).unwrap();
        let limiter_on = |model: Arc<std::sync::Mutex<Model>>, reload: Reload| {
            let backend = FirstEvalTimesOut {
                inner: Local::connect(model, Arc::new(|| 1_700_000_000_000)),
                failed: true,
                log: Vec::new(),
            };
            ScriptLimiter::new(
                backend,
                scheme.clone(),
                Algorithm::Gcra(quota),
                ScriptClock::Redis,
            )
            .with_reload(reload)
        };
        let fcall_model = Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(3))));
        let sha_model = Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(3))));
        let mut by_fcall = limiter_on(Arc::clone(&fcall_model), Reload::Fcall);
        let mut by_sha = limiter_on(sha_model, Reload::EvalShaThenEval);
        let mut allowed = Vec::new();
        for index in 0..6 {
            let request = request("1", 1, 1_700_000_000_000);
            let fcall = by_fcall.check(&request).await.unwrap().decision;
            let sha = by_sha.check(&request).await.unwrap().decision;
            assert_eq!(fcall, sha, "decision {index}");
            allowed.push(fcall.allowed);
            let sent = std::mem::take(&mut by_fcall.redis_mut().log);
            let expected: &[&str] = if index == 0 {
                &["FCALL", "FUNCTION LOAD", "FCALL"]
            } else {
                &["FCALL"]
            };
            assert_eq!(sent, expected, "decision {index}");
        }
        assert_eq!(
            allowed,
            [true, true, true, false, false, false],
            "the burst of 3 holds"
        );
        // SCRIPT FLUSH leaves functions alone.
        fcall_model.lock().unwrap().flush_scripts();
        by_fcall
            .check(&request("2", 1, 1_700_000_000_000))
            .await
            .unwrap();
        assert_eq!(std::mem::take(&mut by_fcall.redis_mut().log), ["FCALL"]);
        // A restart that keeps the functions (persistence) but not the data or the cache.
        let restarted = Model::new(NodeConfig::standalone(3));
        let functions = fcall_model.lock().unwrap().functions.clone();
        *fcall_model.lock().unwrap() = restarted;
        fcall_model.lock().unwrap().functions = functions;
        let verdict = by_fcall
            .check(&request("1", 1, 1_700_000_000_000))
            .await
            .unwrap();
        assert!(
            verdict.decision.allowed,
            "the data was lost, the functions were not"
        );
        assert_eq!(std::mem::take(&mut by_fcall.redis_mut().log), ["FCALL"]);
        // A restart without them: the library is loaded again.
        *fcall_model.lock().unwrap() = Model::new(NodeConfig::standalone(3));
        by_fcall
            .check(&request("1", 1, 1_700_000_000_000))
            .await
            .unwrap();
        assert_eq!(
            std::mem::take(&mut by_fcall.redis_mut().log),
            ["FCALL", "FUNCTION LOAD", "FCALL"]
        );
    }

    #[tokio::test]
    async fn rollout_switches_between_implementations() {
        let (redis, _) = local();
        let scheme = KeyScheme::parse("rl:$ns:$user", 1).unwrap();
        let quota = WindowQuota::new(1, 1_000).unwrap();
        let mut legacy: Rollout<PipelinedFixedWindow<Local>, ScriptLimiter<Local>> =
            Rollout::Legacy(PipelinedFixedWindow::new(redis, scheme.clone(), quota));
        let t = 1_700_000_000_000;
        assert!(
            legacy
                .check(&request("7", 1, t))
                .await
                .unwrap()
                .decision
                .allowed
        );
        assert!(
            !legacy
                .check(&request("7", 1, t))
                .await
                .unwrap()
                .decision
                .allowed
        );
        let (redis, _) = local();
        let mut atomic: Rollout<PipelinedFixedWindow<Local>, ScriptLimiter<Local>> =
            Rollout::Atomic(ScriptLimiter::new(
                redis,
                scheme,
                Algorithm::FixedWindow(quota),
                ScriptClock::Gateway,
            ));
        let verdict = atomic.check(&request("7", 1, t)).await.unwrap();
        assert!(verdict.decision.allowed);
        assert_eq!(
            verdict.usage.round_trips, 2,
            "EVALSHA, NOSCRIPT, EVAL on a fresh node"
        );
    }

    #[test]
    fn script_replies_parse_into_decisions() {
        let reply = Reply::Array(vec![
            Reply::Integer(0),
            Reply::Integer(3),
            Reply::Integer(-1),
            Reply::Integer(250),
        ]);
        let decision = parse_decision(&reply).unwrap();
        assert_eq!(
            decision,
            Decision {
                allowed: false,
                remaining: 3,
                retry_after_ms: u64::MAX,
                reset_after_ms: 250
            }
        );
        assert!(parse_decision(&Reply::Integer(1)).is_err());
        assert!(parse_decision(&Reply::Array(vec![Reply::Integer(1)])).is_err());
        assert!(
            parse_decision(&Reply::Array(vec![
                Reply::Integer(1),
                Reply::Integer(-5),
                Reply::Integer(0),
                Reply::Integer(0)
            ]))
            .is_err()
        );
    }

    #[test]
    fn the_script_clock_gives_the_request_time_or_none() {
        assert_eq!(ScriptClock::Gateway.now_ms(1_234), Some(1_234));
        assert_eq!(ScriptClock::Redis.now_ms(1_234), None);
        assert_eq!(ScriptClock::Gateway.now_arg(1_234), b"1234".to_vec());
        assert!(ScriptClock::Redis.now_arg(1_234).is_empty());
    }
}
