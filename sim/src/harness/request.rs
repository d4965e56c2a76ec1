//! One request's life: its Redis connection (metered and traced), the limiter's decision
//! (`admit`), the upstream call and the success or failure it reports.

use super::*;

/// One request's Redis: the gateway's handle and, in a traced run, where each round trip is
/// written. Tracing only records (it adds no await), so a traced run is the untraced one.
struct RequestRedis {
    inner: GatewayRedis,
    pub(super) trace: Option<(u64, Trace)>,
}

impl RequestRedis {
    fn record(&self, sent_ms: u64, commands: Vec<&'static str>, ok: bool) {
        if let Some((id, trace)) = &self.trace {
            trace
                .lock()
                .expect("the trace lock is never held across a panic")
                .push(RoundTrip {
                    id: *id,
                    sent_ms,
                    replied_ms: sim_now_ms(),
                    commands,
                    ok,
                });
        }
    }
}

impl ratelab::redis::Redis for RequestRedis {
    async fn exec(&mut self, cmd: ratelab::redis::Cmd) -> Result<Reply, ratelab::redis::Error> {
        let sent_ms = sim_now_ms();
        let names = self.trace.as_ref().map(|_| vec![command_name(&cmd)]);
        let reply = self.inner.exec(cmd).await;
        if let Some(names) = names {
            self.record(sent_ms, names, reply.is_ok());
        }
        reply
    }

    async fn pipeline(
        &mut self,
        cmds: Vec<ratelab::redis::Cmd>,
    ) -> Result<Vec<Reply>, ratelab::redis::Error> {
        let sent_ms = sim_now_ms();
        let names = self
            .trace
            .as_ref()
            .map(|_| cmds.iter().map(command_name).collect());
        let replies = self.inner.pipeline(cmds).await;
        if let Some(names) = names {
            self.record(sent_ms, names, replies.is_ok());
        }
        replies
    }
}

/// One admission's result, whichever limiter family made it.
enum Admission {
    /// Decided; an outcome limiter kept itself and its ticket to report the outcome.
    Decided(Verdict, Option<Completer>),
    /// Could not decide.
    Failed(LimiterError),
}

/// An outcome limiter waiting for its request's outcome.
enum Completer {
    Legacy(
        Box<ModelRequestLimiter<RequestRedis>>,
        model_request::SuccessTicket,
    ),
    Reservation(
        Box<atomic::SuccessLimiter<RequestRedis>>,
        atomic::SuccessTicket,
    ),
}

impl Completer {
    async fn complete(self, succeeded: bool, now_ms: u64) -> Result<Usage, LimiterError> {
        match self {
            Completer::Legacy(mut limiter, ticket) => {
                limiter.complete(ticket, succeeded, now_ms).await
            }
            Completer::Reservation(mut limiter, ticket) => {
                limiter.complete(ticket, succeeded, now_ms).await
            }
        }
    }
}

fn decided(result: Result<Verdict, LimiterError>) -> Admission {
    match result {
        Ok(verdict) => Admission::Decided(verdict, None),
        Err(error) => Admission::Failed(error),
    }
}

async fn admit(shared: &Shared, redis: RequestRedis, request: &Request) -> Admission {
    let limit = &shared.scenario.limit;
    let window_s = i64::try_from(limit.window_ms / 1_000).expect("validated: at most a day");
    let minutes = window_s / 60;
    let count = |value: u64| i64::try_from(value).expect("validated: below 2^31");
    let quota_failed = |error: ratelab::algo::QuotaError| {
        Admission::Failed(LimiterError::Reply(error.to_string()))
    };
    let window = || WindowQuota::new(limit.limit, limit.window_ms);
    let rate = || RateQuota::per_window(limit.limit, limit.window_ms);
    let algorithm = match shared.kind {
        LimiterKind::AtomicGcra => Some(rate().map(Algorithm::Gcra)),
        LimiterKind::AtomicTokenBucket => Some(rate().map(Algorithm::TokenBucket)),
        LimiterKind::AtomicFixedWindow => Some(window().map(Algorithm::FixedWindow)),
        LimiterKind::AtomicSlidingLog => Some(window().map(Algorithm::SlidingLog)),
        LimiterKind::AtomicSlidingWindow => Some(window().map(Algorithm::SlidingWindow)),
        _ => None,
    };
    if let Some(algorithm) = algorithm {
        return match algorithm {
            Ok(algorithm) => {
                let mut limiter =
                    ScriptLimiter::new(redis, shared.scheme.clone(), algorithm, ScriptClock::Redis)
                        .with_reload(shared.reload.clone());
                decided(limiter.check(request).await)
            }
            Err(error) => quota_failed(error),
        };
    }
    match shared.kind {
        LimiterKind::LegacyIpList => match ListLogQuota::new(count(limit.limit), window_s) {
            Ok(quota) => {
                let mut limiter = ListLogLimiter::newapi_ip(redis, quota, shared.clock);
                decided(limiter.check(request).await)
            }
            Err(error) => quota_failed(error),
        },
        LimiterKind::LegacyUserList => match ListLogQuota::new(count(limit.limit), window_s) {
            Ok(quota) => {
                let mut limiter = ListLogLimiter::newapi_user(redis, quota, shared.clock);
                decided(limiter.check(request).await)
            }
            Err(error) => quota_failed(error),
        },
        LimiterKind::LegacyTokenBucket => match ModelQuota::new(count(limit.limit), 0, minutes) {
            Ok(quota) => {
                let mut limiter =
                    TokenBucketLimiter::with_loader(redis, quota, Arc::clone(&shared.loader));
                decided(limiter.check(request).await)
            }
            Err(error) => quota_failed(error),
        },
        LimiterKind::LegacyModelRequest => {
            match ModelQuota::new(count(limit.total), count(limit.limit), minutes) {
                Ok(quota) => {
                    let mut limiter = Box::new(ModelRequestLimiter::with_loader(
                        redis,
                        quota,
                        shared.clock,
                        Arc::clone(&shared.loader),
                    ));
                    match limiter.admit(request).await {
                        Ok((verdict, ticket)) => Admission::Decided(
                            verdict,
                            ticket.map(|ticket| Completer::Legacy(limiter, ticket)),
                        ),
                        Err(error) => Admission::Failed(error),
                    }
                }
                Err(error) => quota_failed(error),
            }
        }
        LimiterKind::SuccessReservation => {
            match SuccessQuota::new(limit.limit, limit.window_ms, shared.scenario.lease_ms()) {
                Ok(quota) => {
                    let mut limiter = Box::new(
                        atomic::SuccessLimiter::new(
                            redis,
                            shared.scheme.clone(),
                            quota,
                            ScriptClock::Redis,
                        )
                        .with_reload(shared.reload.clone()),
                    );
                    match limiter.admit(request).await {
                        Ok((verdict, ticket)) => Admission::Decided(
                            verdict,
                            ticket.map(|ticket| Completer::Reservation(limiter, ticket)),
                        ),
                        Err(error) => Admission::Failed(error),
                    }
                }
                Err(error) => quota_failed(error),
            }
        }
        LimiterKind::LegacyMemoryList => match ListLogQuota::new(count(limit.limit), window_s) {
            Ok(quota) => {
                let mut limiter =
                    MemoryListLogLimiter::newapi_ip(Arc::clone(&shared.memory_list), quota);
                decided(limiter.check(request).await)
            }
            Err(error) => quota_failed(error),
        },
        LimiterKind::MemoryGcra => {
            let Some(memory) = &shared.memory_gcra else {
                return Admission::Failed(LimiterError::Reply("no memory limiter".to_owned()));
            };
            match shared.scheme.render(&request.identity, 0) {
                Ok(key) => {
                    let decision = memory.check(&key, request.now_ms.max(1), request.cost);
                    Admission::Decided(
                        Verdict {
                            decision,
                            usage: Usage::default(),
                        },
                        None,
                    )
                }
                Err(error) => Admission::Failed(LimiterError::Reply(error.to_string())),
            }
        }
        LimiterKind::LegacyEmail => match EmailQuota::new(count(limit.limit), window_s) {
            Ok(quota) => {
                let mut limiter = EmailLimiter::new(redis, quota);
                decided(limiter.check(request).await)
            }
            Err(error) => quota_failed(error),
        },
        LimiterKind::PipelinedFixedWindow => match window() {
            Ok(quota) => {
                let mut limiter = PipelinedFixedWindow::new(redis, shared.scheme.clone(), quota);
                decided(limiter.check(request).await)
            }
            Err(error) => quota_failed(error),
        },
        LimiterKind::MultiLimit => {
            let mut limiter =
                MultiLimiter::new(redis, shared.multi_limits.clone(), ScriptClock::Redis)
                    .with_reload(shared.reload.clone());
            decided(limiter.check(request).await)
        }
        LimiterKind::ShardedGcra => match rate() {
            Ok(quota) => match ShardedLimiter::new(
                redis,
                shared.scheme.clone(),
                Algorithm::Gcra(quota),
                ScriptClock::Redis,
            ) {
                Ok(limiter) => {
                    // One turn per request: the gateway's requests visit the shards in turn.
                    let turn = shared.shard_turns.fetch_add(1, Ordering::Relaxed);
                    let mut limiter = limiter.with_reload(shared.reload.clone()).starting_at(turn);
                    decided(limiter.check(request).await)
                }
                Err(error) => quota_failed(error),
            },
            Err(error) => quota_failed(error),
        },
        LimiterKind::HybridGcra => match (rate(), &shared.hybrid) {
            (Ok(quota), Some(local)) => {
                let authority = ScriptLimiter::new(
                    redis,
                    shared.scheme.clone(),
                    Algorithm::Gcra(quota),
                    ScriptClock::Redis,
                )
                .with_reload(shared.reload.clone());
                let mut limiter = HybridLimiter::over(authority, Arc::clone(local));
                decided(limiter.check(request).await)
            }
            (Err(error), _) => quota_failed(error),
            (Ok(_), None) => Admission::Failed(LimiterError::Reply("no hybrid state".to_owned())),
        },
        LimiterKind::AtomicGcra
        | LimiterKind::AtomicTokenBucket
        | LimiterKind::AtomicFixedWindow
        | LimiterKind::AtomicSlidingLog
        | LimiterKind::AtomicSlidingWindow => {
            unreachable!("handled by the script branch above")
        }
    }
}

/// A request decided under per-limit key schemes (`shardcheck --simulate`), recorded limit
/// by limit.
async fn admit_schemes(
    shared: &Shared,
    plan: &SchemePlan,
    planned: &Planned,
    arrived_ms: u64,
    request: &Request,
) -> Admission {
    let traffic = crate::traffic::request_of(
        planned.kind,
        planned.key,
        shared.group.as_deref().unwrap_or("default"),
        (arrived_ms, shared.cost, shared.index),
    );
    let (result, new, limits) = per_limit::decide(
        plan,
        &traffic,
        request,
        (
            || shared.pool.handle(),
            shared.reload.clone(),
            &shared.scheme_turns,
        ),
    )
    .await;
    plan.record(
        planned.id,
        Recorded {
            request: traffic,
            decided_ms: sim_now_ms(),
            new,
            decided: limits,
        },
    );
    decided(result)
}

/// One request, from arrival to the end of its upstream call.
pub(super) async fn serve_request(shared: Arc<Shared>, planned: Planned) {
    let arrived_ms = sim_now_ms();
    push(
        &shared.log,
        Event::Request {
            id: planned.id,
            gateway: shared.index,
            key: key_name(planned.kind, planned.key),
            at_ms: arrived_ms,
            cost: shared.cost,
        },
    );
    shared
        .pending
        .lock()
        .expect("the pending lock is never held across a panic")
        .insert(planned.id);
    let redis = RequestRedis {
        inner: shared.pool.handle(),
        trace: shared
            .trace
            .as_ref()
            .map(|trace| (planned.id, Arc::clone(trace))),
    };
    let pool_wait = redis.inner.pool_wait_counter();
    let request = Request {
        identity: identity(
            shared.kind,
            planned.kind,
            planned.key,
            shared.group.as_deref().unwrap_or("default"),
        ),
        cost: shared.cost,
        now_ms: skewed_ms(arrived_ms, &shared.offset),
    };
    let mut admission = match &shared.schemes {
        Some(plan) => admit_schemes(&shared, plan, &planned, arrived_ms, &request).await,
        None => admit(&shared, redis, &request).await,
    };
    let decided_ms = sim_now_ms();
    if let Some(tamper) = &shared.tamper {
        let key = key_name(planned.kind, planned.key);
        let call = TamperCall {
            gateway: shared.index,
            key: &key,
            at_ms: decided_ms,
            allowed: match &admission {
                Admission::Decided(verdict, _) => Some(verdict.decision.allowed),
                Admission::Failed(_) => None,
            },
        };
        match tamper(&call) {
            TamperAction::Keep => {}
            TamperAction::Admit => {
                if let Admission::Decided(verdict, _) = &mut admission {
                    verdict.decision.allowed = true;
                }
            }
            TamperAction::Panic => panic!("a tampered limiter panics on request {:#x}", planned.id),
            TamperAction::ProtocolError => {
                admission = Admission::Failed(LimiterError::Redis(
                    ratelab::redis::Error::Protocol("a tampered reply".to_owned()),
                ));
            }
        }
    }
    let (outcome, usage, error, error_class, completer) = match admission {
        Admission::Decided(verdict, completer) => {
            let outcome = if verdict.decision.allowed {
                Outcome::Allowed
            } else {
                Outcome::Denied
            };
            (outcome, verdict.usage, None, None, completer)
        }
        Admission::Failed(error) => {
            let outcome = match shared.fail_mode {
                FailModeSetting::Open => Outcome::FailOpen,
                FailModeSetting::Closed => Outcome::Error,
            };
            let class = match error {
                // A reply the client cannot parse is no transport hiccup: judged apart.
                LimiterError::Redis(ratelab::redis::Error::Protocol(_)) => ErrorClass::Protocol,
                LimiterError::Redis(_) => ErrorClass::Transport,
                LimiterError::Key(_) => ErrorClass::Key,
                _ => ErrorClass::Reply,
            };
            (
                outcome,
                Usage::default(),
                Some(error.to_string()),
                Some(class),
                None,
            )
        }
    };
    push(
        &shared.log,
        Event::Decision {
            id: planned.id,
            at_ms: decided_ms,
            outcome,
            latency_ms: decided_ms - arrived_ms,
            round_trips: usage.round_trips,
            commands: usage.commands,
            pool_wait_ms: pool_wait.load(Ordering::Relaxed),
            error,
            error_class,
        },
    );
    shared
        .pending
        .lock()
        .expect("the pending lock is never held across a panic")
        .remove(&planned.id);
    if !matches!(outcome, Outcome::Allowed | Outcome::FailOpen) {
        return;
    }
    tokio::time::sleep(Duration::from_millis(planned.upstream_ms)).await;
    let finished_ms = sim_now_ms();
    let recorded_at_ms = match completer {
        Some(completer) => {
            let now_ms = skewed_ms(finished_ms, &shared.offset);
            match completer.complete(planned.upstream_ok, now_ms).await {
                Ok(_) if planned.upstream_ok => Some(sim_now_ms()),
                _ => None,
            }
        }
        None => None,
    };
    push(
        &shared.log,
        Event::Completion {
            id: planned.id,
            at_ms: finished_ms,
            success: planned.upstream_ok,
            recorded_at_ms,
        },
    );
}
