//! Per-limit key templates in the simulation: gateways that decide each request under a key
//! scheme file's limits (`schemes::SchemeSet`) instead of the scenario's one limiter, for
//! `shardcheck --simulate`. A request falls under the limit kinds of its `load.mix` kind (and
//! their `together` groups); each kind's key is rendered from that scheme's template with the
//! request's fields (the same fields `traffic::from_scenario` gives the in-process replay),
//! and decided by that limit's `lua/` script on the simulated Redis with the Redis clock. A
//! merged group (GCRA limits only) is one `multi_limit.lua` call, all or nothing.
//!
//! A plan may name a second scheme and, per gateway, when it switches: the fleet's rolling
//! cut-over, each gateway deciding through `atomic::Rollout` (the old scheme as its legacy
//! arm, the new one as its atomic arm). Every decision is recorded per limit, by request id,
//! so that runs can be compared request by request.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ratelab::limiter::atomic::{MultiLimiter, Rollout, ScriptClock, ScriptLimiter, ShardedLimiter};
use ratelab::limiter::{Limiter, LimiterError, Request, Verdict};
use ratelab::redis::{Redis, Reload, Usage};

use crate::schemes::SchemeSet;
use crate::traffic::TrafficRequest;

/// Which scheme(s) a simulated run's gateways decide under.
#[derive(Debug)]
pub struct SchemePlan {
    /// The scheme every gateway starts with.
    pub before: SchemeSet,
    /// The scheme gateways switch to, and when gateway g switches (true simulated ms,
    /// `switch_ms[g]`; a gateway past the end of the list never switches).
    pub after: Option<(SchemeSet, Vec<u64>)>,
    record: Mutex<BTreeMap<u64, Recorded>>,
}

/// One limit's decision in the simulation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LimitDecision {
    /// The limit kind.
    pub kind: String,
    /// Its key (the first shard probed).
    pub key: String,
    /// Allowed, denied, or `None`: the call failed (timeout, CROSSSLOT...).
    pub allowed: Option<bool>,
}

/// One request's decisions in a simulated run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The request as the traffic names it (fields, limit kinds, gateway, arrival ms).
    pub request: TrafficRequest,
    /// True simulated ms at the decision.
    pub decided_ms: u64,
    /// Decided under the second scheme.
    pub new: bool,
    /// Per limit, in call order (a failed call ends the request: later kinds are absent).
    pub decided: Vec<LimitDecision>,
}

impl SchemePlan {
    /// Every gateway under `before` throughout.
    pub fn one(before: SchemeSet) -> SchemePlan {
        SchemePlan {
            before,
            after: None,
            record: Mutex::new(BTreeMap::new()),
        }
    }

    /// Gateways switch from `before` to `after`, gateway g at `switch_ms[g]`.
    pub fn cutover(before: SchemeSet, after: SchemeSet, switch_ms: Vec<u64>) -> SchemePlan {
        SchemePlan {
            before,
            after: Some((after, switch_ms)),
            record: Mutex::new(BTreeMap::new()),
        }
    }

    /// The scheme gateway `gateway` uses at `at_ms`, and whether it is the second.
    pub(crate) fn scheme_at(&self, gateway: u32, at_ms: u64) -> (&SchemeSet, bool) {
        match &self.after {
            Some((after, switch_ms))
                if usize::try_from(gateway)
                    .ok()
                    .and_then(|index| switch_ms.get(index))
                    .is_some_and(|&switch| at_ms >= switch) =>
            {
                (after, true)
            }
            _ => (&self.before, false),
        }
    }

    pub(crate) fn record(&self, id: u64, recorded: Recorded) {
        self.record
            .lock()
            .expect("the record lock is never held across a panic")
            .insert(id, recorded);
    }

    /// The decisions recorded so far, by request id.
    pub fn recorded(&self) -> BTreeMap<u64, Recorded> {
        self.record
            .lock()
            .expect("the record lock is never held across a panic")
            .clone()
    }
}

/// One gateway process's round-robin turns per sharded limit kind.
pub(crate) type Turns = Mutex<BTreeMap<String, u64>>;

/// One request decided under one scheme: every call it makes, one after another.
pub(crate) struct SchemeLimiter<'a, R, F> {
    set: &'a SchemeSet,
    traffic: &'a TrafficRequest,
    connect: F,
    reload: Reload,
    turns: &'a Turns,
    /// What each call decided.
    pub(crate) decided: Vec<LimitDecision>,
    _redis: std::marker::PhantomData<fn() -> R>,
}

impl<'a, R: Redis + Send, F: FnMut() -> R + Send> SchemeLimiter<'a, R, F> {
    pub(crate) fn new(
        set: &'a SchemeSet,
        traffic: &'a TrafficRequest,
        connect: F,
        reload: Reload,
        turns: &'a Turns,
    ) -> Self {
        SchemeLimiter {
            set,
            traffic,
            connect,
            reload,
            turns,
            decided: Vec::new(),
            _redis: std::marker::PhantomData,
        }
    }

    fn turn(&self, kind: &str) -> u64 {
        let mut turns = self
            .turns
            .lock()
            .expect("the turns lock is never held across a panic");
        let turn = turns.entry(kind.to_owned()).or_insert(0);
        *turn += 1;
        *turn - 1
    }

    async fn call(&mut self, call: &[String], request: &Request) -> Result<Verdict, LimiterError> {
        let redis = (self.connect)();
        if call.len() > 1 {
            let limits = crate::compare::merged_limits(self.set, call);
            let mut limiter = MultiLimiter::new(redis, limits, ScriptClock::Redis)
                .with_reload(self.reload.clone());
            let identity = Request {
                identity: self.traffic.identity(""),
                ..request.clone()
            };
            return limiter.check(&identity).await;
        }
        let limit = &self.set.limits[&call[0]];
        let request = Request {
            identity: self.traffic.identity(&limit.namespace),
            ..request.clone()
        };
        if limit.scheme.shards() > 1 {
            let turn = self.turn(&limit.kind);
            let mut limiter = ShardedLimiter::new(
                redis,
                limit.scheme.clone(),
                limit.algorithm,
                ScriptClock::Redis,
            )
            .map_err(|error| LimiterError::Reply(error.to_string()))?
            .with_reload(self.reload.clone())
            .starting_at(turn);
            limiter.check(&request).await
        } else {
            let mut limiter = ScriptLimiter::new(
                redis,
                limit.scheme.clone(),
                limit.algorithm,
                ScriptClock::Redis,
            )
            .with_reload(self.reload.clone());
            limiter.check(&request).await
        }
    }
}

impl<R: Redis + Send, F: FnMut() -> R + Send> Limiter for SchemeLimiter<'_, R, F> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let mut combined: Option<Verdict> = None;
        let mut usage = Usage::default();
        for call in self.set.calls(&self.traffic.limits) {
            let keys: Vec<String> = call
                .iter()
                .map(|kind| {
                    let limit = self.set.limits.get(kind).ok_or_else(|| {
                        LimiterError::Reply(format!(
                            "{kind:?} is not a limit of scheme {}",
                            self.set.name
                        ))
                    })?;
                    limit
                        .scheme
                        .render(&self.traffic.identity(&limit.namespace), 0)
                        .map(|key| String::from_utf8_lossy(&key).into_owned())
                        .map_err(LimiterError::from)
                })
                .collect::<Result<_, _>>()?;
            let result = self.call(&call, request).await;
            let allowed = result.as_ref().ok().map(|verdict| verdict.decision.allowed);
            for (kind, key) in call.iter().zip(keys) {
                self.decided.push(LimitDecision {
                    kind: kind.clone(),
                    key,
                    allowed,
                });
            }
            let verdict = result?;
            usage.round_trips += verdict.usage.round_trips;
            usage.commands += verdict.usage.commands;
            // The request's verdict: the first refusal, else the last admission.
            if combined.as_ref().is_none_or(|first| first.decision.allowed) {
                combined = Some(verdict);
            }
        }
        let mut verdict = combined.ok_or_else(|| {
            LimiterError::Reply(format!(
                "the scheme {} has no limit for {:?}",
                self.set.name, self.traffic.limits
            ))
        })?;
        verdict.usage = usage;
        Ok(verdict)
    }
}

/// Decides `traffic` on gateway `gateway` at true ms `at_ms` under `plan`, through the
/// fleet's rollout switch; returns the verdict and what each limit decided.
pub(crate) async fn decide<R: Redis + Send, F: FnMut() -> R + Send>(
    plan: &SchemePlan,
    traffic: &TrafficRequest,
    request: &Request,
    (connect, reload, turns): (F, Reload, &Turns),
) -> (Result<Verdict, LimiterError>, bool, Vec<LimitDecision>) {
    let gateway = traffic.gateway.unwrap_or(0);
    let (set, new) = plan.scheme_at(gateway, traffic.at_ms);
    let limiter = SchemeLimiter::new(set, traffic, connect, reload, turns);
    let mut limiter = if new {
        Rollout::Atomic(limiter)
    } else {
        Rollout::Legacy(limiter)
    };
    let result = limiter.check(request).await;
    let (Rollout::Legacy(limiter) | Rollout::Atomic(limiter)) = limiter;
    (result, new, limiter.decided)
}
