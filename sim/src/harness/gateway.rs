//! A gateway host: its process (limiter, pool, the request tasks; what a restart throws
//! away), the open-loop arrival loop, and how a request task survives its own panic.

use super::*;

/// One gateway host.
pub(super) struct Gateway {
    pub(super) index: u32,
    pub(super) group: GatewayGroup,
    pub(super) scenario: Scenario,
    pub(super) seed: u64,
    pub(super) offset: Arc<AtomicI64>,
    pub(super) log: Log,
    pub(super) drain_ms: u64,
    /// The host single-node pools dial (a failover moves it).
    pub(super) primary: Target,
    /// Every Redis host (the cluster's nodes).
    pub(super) redis_hosts: Vec<String>,
    /// The cluster's load counters, shared by every gateway.
    pub(super) load: Arc<Mutex<Load>>,
    /// A test's wrong limiter, if any.
    pub(super) tamper: Option<Tamper>,
    /// Per-limit key schemes to decide under instead of `group.limiter`, if any.
    pub(super) schemes: Option<Arc<SchemePlan>>,
    /// Where round trips go in a traced run.
    pub(super) trace: Option<Trace>,
}

/// How a gateway reaches Redis.
pub(super) enum Connector {
    /// One pool to the current primary.
    Single(Arc<Pool>),
    /// A slot router over a pool per node.
    Cluster(Arc<ClusterClient>),
}

impl Connector {
    pub(super) fn handle(&self) -> GatewayRedis {
        match self {
            Connector::Single(pool) => GatewayRedis::Single(pool.handle()),
            Connector::Cluster(client) => GatewayRedis::Cluster(client.handle()),
        }
    }
}

/// What the arrival loop decided about one request before it runs.
pub(super) struct Planned {
    pub(super) id: u64,
    /// The limit kind drawn from `load.mix`; `None` without a mix.
    pub(super) kind: Option<IdentityKind>,
    pub(super) key: u64,
    pub(super) upstream_ms: u64,
    pub(super) upstream_ok: bool,
}

/// Per-gateway state every request task shares.
pub(super) struct Shared {
    pub(super) index: u32,
    pub(super) kind: LimiterKind,
    pub(super) fail_mode: FailModeSetting,
    pub(super) scheme: KeyScheme,
    pub(super) clock: GatewayClock,
    pub(super) offset: Arc<AtomicI64>,
    pub(super) pool: Connector,
    /// new-api's process-wide script loader (`sync.Once`): one per gateway.
    pub(super) loader: Arc<NewapiScriptLoader>,
    pub(super) scenario: Scenario,
    pub(super) cost: u64,
    pub(super) log: Log,
    /// This gateway's process-wide in-memory store (new-api's `inMemoryRateLimiter`).
    pub(super) memory_list: Arc<InMemoryRateLimiter>,
    /// This gateway's sharded in-process GCRA, for `memory_gcra`.
    pub(super) memory_gcra: Option<Arc<MemoryLimiter>>,
    /// The user group it serves.
    pub(super) group: Option<String>,
    /// What its script limiters do after NOSCRIPT (one flag per gateway process).
    pub(super) reload: Reload,
    /// Requests logged and not yet decided: a restart logs each as aborted.
    pub(super) pending: Mutex<std::collections::BTreeSet<u64>>,
    /// A test's wrong limiter, if any.
    pub(super) tamper: Option<Tamper>,
    /// `multi_limit`: each limit's key scheme and GCRA quota.
    pub(super) multi_limits: Vec<(KeyScheme, RateQuota)>,
    /// `sharded_gcra`: the round robin's turns so far (one per request).
    pub(super) shard_turns: AtomicU64,
    /// `hybrid_gcra`: this process's deny cache and pre-check.
    pub(super) hybrid: Option<Arc<HybridLocal>>,
    /// Per-limit key schemes to decide under, if any.
    pub(super) schemes: Option<Arc<SchemePlan>>,
    /// Their sharded limits' round-robin turns.
    pub(super) scheme_turns: Turns,
    /// Where round trips go in a traced run.
    pub(super) trace: Option<Trace>,
}

/// One gateway process: what a restart throws away.
struct Process {
    pub(super) shared: Arc<Shared>,
    /// The in-memory store's sweep task (new-api's `clearExpiredItems` goroutine).
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// This gateway's scheduled restarts, `(at_ms, down_ms)` in time order.
    fn restarts(&self) -> Vec<(u64, u64)> {
        let name = format!("gateway-{}", self.index);
        let mut restarts: Vec<(u64, u64)> = self
            .scenario
            .faults
            .iter()
            .filter_map(|fault| match &fault.kind {
                FaultKind::GatewayRestart { host, down_ms } if *host == name => {
                    Some((fault.at_ms, *down_ms))
                }
                _ => None,
            })
            .collect();
        restarts.sort_unstable();
        restarts
    }

    /// Starts a gateway process at `started_ms` (true time): empty in-memory stores, a new
    /// script loader and reload flag, a new pool (no connections yet).
    fn start_process(&self, started_ms: u64) -> Result<Process, Box<dyn std::error::Error>> {
        let (default_template, shards) = match self.group.limiter {
            LimiterKind::ShardedGcra => (SHARDED_SCHEME_DEFAULT, self.group.key_shards()),
            _ => ("rl:$ns:{u:$user}", 1),
        };
        let scheme = KeyScheme::parse(
            self.group.key_scheme.as_deref().unwrap_or(default_template),
            shards,
        )
        .map_err(|error| error.to_string())?;
        let window_ms = self.scenario.limit.window_ms;
        let multi_limits = self
            .group
            .limits
            .iter()
            .map(|spec| {
                Ok::<_, String>((
                    KeyScheme::parse(&spec.key_scheme, 1).map_err(|error| error.to_string())?,
                    RateQuota::per_window(spec.limit, window_ms)
                        .map_err(|error| error.to_string())?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A restarted process starts with an empty deny cache and pre-check (they only deny,
        // so losing them is no reset).
        let hybrid = match self.group.limiter {
            LimiterKind::HybridGcra => Some(Arc::new(
                HybridLocal::new(
                    scheme.clone(),
                    RateQuota::per_window(self.scenario.limit.limit, window_ms)
                        .map_err(|error| error.to_string())?,
                    SLACK_PERCENT_DEFAULT,
                )
                .map_err(|error| error.to_string())?,
            )),
            _ => None,
        };
        // The first `init` wins (as in new-api), so the scenario's sweep age sticks.
        let memory_list = InMemoryRateLimiter::new();
        let cleanup_ms = self.group.memory_cleanup_ms();
        memory_list.init(i64::try_from(cleanup_ms / 1_000).expect("validated: at most a day"));
        let memory_gcra = match self.group.limiter {
            LimiterKind::MemoryGcra => Some(Arc::new(MemoryLimiter::with_seed(
                RateQuota::per_window(self.scenario.limit.limit, self.scenario.limit.window_ms)
                    .map_err(|error| error.to_string())?,
                self.seed,
            ))),
            _ => None,
        };
        let mut sweeper = None;
        if self.group.limiter.is_in_memory() {
            // new-api's `clearExpiredItems` goroutine: sleep, sweep, until the run ends.
            let memory_list = Arc::clone(&memory_list);
            let memory_gcra = memory_gcra.clone();
            let offset = Arc::clone(&self.offset);
            let sweeps =
                (self.scenario.duration_ms + self.drain_ms).saturating_sub(started_ms) / cleanup_ms;
            sweeper = Some(tokio::spawn(async move {
                for _ in 0..sweeps {
                    tokio::time::sleep(Duration::from_millis(cleanup_ms)).await;
                    let now_ms = skewed_ms(sim_now_ms(), &offset);
                    memory_list.cleanup(i64::try_from(now_ms / 1_000).expect("fits"));
                    if let Some(memory_gcra) = &memory_gcra {
                        memory_gcra.cleanup(now_ms);
                    }
                }
            }));
        }
        let shared = Arc::new(Shared {
            index: self.index,
            kind: self.group.limiter,
            fail_mode: self.group.fail_mode,
            scheme,
            clock: GatewayClock::new(self.group.tz_offset_s).map_err(|error| error.problem)?,
            offset: Arc::clone(&self.offset),
            pool: match self.scenario.redis.topology {
                Topology::Cluster => Connector::Cluster(ClusterClient::new(
                    &self.redis_hosts,
                    &self.group.pool,
                    Arc::clone(&self.load),
                )),
                _ => Connector::Single(Pool::following(
                    self.group.pool.clone(),
                    Arc::clone(&self.primary),
                )),
            },
            loader: NewapiScriptLoader::new(),
            scenario: self.scenario.clone(),
            cost: self.scenario.load.cost,
            log: Arc::clone(&self.log),
            memory_list,
            memory_gcra,
            group: self.group.group.clone(),
            reload: match self.group.script_reload {
                ScriptReload::EvalshaThenEval => Reload::EvalShaThenEval,
                ScriptReload::EvalUntilLoaded => Reload::eval_until_loaded(),
                ScriptReload::Fcall => Reload::Fcall,
            },
            pending: Mutex::new(std::collections::BTreeSet::new()),
            tamper: self.tamper.clone(),
            multi_limits,
            shard_turns: AtomicU64::new(0),
            hybrid,
            schemes: self.schemes.clone(),
            scheme_turns: Mutex::new(BTreeMap::new()),
            trace: self.trace.clone(),
        });
        Ok(Process { shared, sweeper })
    }

    pub(super) async fn run(self) -> turmoil::Result {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut process = self.start_process(0)?;
        // A restart (a `gateway_restart` fault) is emulated here: turmoil cannot bounce a
        // client host, and the gateway knows its restart times from the scenario. The
        // arrival stream goes on drawing through a restart, so that every arrival after it
        // is the one the run without the fault has; arrivals while the gateway is down are
        // drawn and dropped.
        let restarts = self.restarts();
        let mut next_restart = 0;
        let mut down_until_ms = 0u64;
        let load = &self.scenario.load;
        let gateways = f64::from(self.scenario.gateway_count());
        let rate_per_us = load.rate_per_s / gateways / 1_000_000.0;
        let weights = key_weights(load.keys, &load.popularity);
        let duration_us = self.scenario.duration_ms.saturating_mul(1_000);
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut at_us = 0.0f64;
        let mut sequence: u64 = 0;
        let mut in_burst: u32 = 0;
        if load.arrivals == Arrivals::Steady {
            // Steady gateways start at a random phase, so that two of them do not march in
            // lockstep (which would make every arrival a race).
            at_us = rng.random::<f64>() / rate_per_us;
        }
        loop {
            at_us += crate::scenario::arrival_gap_us(
                &load.arrivals,
                &mut rng,
                rate_per_us,
                &mut in_burst,
            );
            let load_over = at_us >= duration_us as f64;
            // Restarts due before this arrival (or, once the load is over, every one left:
            // the drain below would otherwise let the old process finish its requests).
            while let Some(&(restart_ms, down_ms)) = restarts.get(next_restart) {
                if !load_over && (restart_ms.saturating_mul(1_000) as f64) > at_us {
                    break;
                }
                next_restart += 1;
                tokio::time::sleep_until(start + Duration::from_millis(restart_ms)).await;
                // The old process dies: dropping the set aborts every request task (an
                // aborted request logs nothing more), and with the last of them its pool
                // and its connections go.
                tasks = tokio::task::JoinSet::new();
                let undecided = std::mem::take(
                    &mut *process
                        .shared
                        .pending
                        .lock()
                        .expect("the pending lock is never held across a panic"),
                );
                for id in undecided {
                    push(
                        &self.log,
                        Event::Aborted {
                            id,
                            at_ms: sim_now_ms(),
                        },
                    );
                }
                if let Some(sweeper) = process.sweeper.take() {
                    sweeper.abort();
                }
                process = self.start_process(restart_ms)?;
                down_until_ms = down_until_ms.max(restart_ms.saturating_add(down_ms));
            }
            if load_over {
                break;
            }
            // `as` saturates; at_us is below duration_us here.
            tokio::time::sleep_until(start + Duration::from_micros(at_us as u64)).await;
            // The kind first (only with a mix, so that runs without one draw exactly as
            // before), then the key with the scenario's popularity.
            let kind = load.mix.as_ref().map(|mix| mix.draw(&mut rng));
            let key = draw_key(&mut rng, load.keys, &load.popularity, &weights);
            let upstream_ms = self.scenario.upstream.latency.sample(&mut rng);
            let upstream_ok = !rng.random_bool(self.scenario.upstream.error_rate);
            let planned = Planned {
                id: (u64::from(self.index) << 32) | sequence,
                kind,
                key,
                upstream_ms,
                upstream_ok,
            };
            sequence += 1;
            if (at_us as u64) < down_until_ms.saturating_mul(1_000) {
                // The gateway is down: a load balancer sends this request elsewhere (or
                // nowhere); it never reaches this gateway.
                continue;
            }
            // Boxed: the task cell then holds a pointer, not the whole (large) future, which
            // makes the per-request spawn a small aligned allocation (faster in
            // `ratelab bench --only sim`).
            let id = planned.id;
            tasks.spawn(Unwinding {
                request: Box::pin(serve_request(Arc::clone(&process.shared), planned)),
                shared: Arc::clone(&process.shared),
                id,
            });
            // Reap finished tasks so the set stays small under a long run.
            while tasks.try_join_next().is_some() {}
        }
        let drained = tokio::time::timeout(Duration::from_millis(self.drain_ms), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            return Err(format!(
                "gateway-{} still had requests in flight {} ms after the load stopped",
                self.index, self.drain_ms
            )
            .into());
        }
        Ok(())
    }
}

/// A request task that survives its own panic. The turmoil runtime shuts down when any
/// task panics, which would end the whole run with the panic instead of a verdict: a
/// limiter that panics under a fault must be *judged* (its request ends with no decision,
/// which fails `every_request_resolved`). The panic is caught where the task is polled, the
/// task ends, and the request stays unresolved in the log; the panic message still goes to
/// stderr through the panic hook. A panicked request is no longer pending, so a later
/// gateway restart does not log it as aborted.
struct Unwinding<F> {
    pub(super) request: std::pin::Pin<Box<F>>,
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
}

impl<F: std::future::Future<Output = ()>> std::future::Future for Unwinding<F> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let request = self.request.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| request.poll(cx))) {
            Ok(poll) => poll,
            // A panicked future is never polled again: the task ends here.
            Err(_) => {
                if let Ok(mut pending) = self.shared.pending.lock() {
                    pending.remove(&self.id);
                }
                std::task::Poll::Ready(())
            }
        }
    }
}
