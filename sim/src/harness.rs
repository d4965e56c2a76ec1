//! The turmoil world: Redis hosts serving the model over simulated TCP (one node, a primary
//! with lagging replicas, or a cluster of shards: see [`crate::topology`]), gateway hosts
//! with an open-loop load, a limiter and a connection pool each, an upstream, and the
//! scheduled faults. [`run`] returns the event log; judging it is the checker's job.
//!
//! Determinism: one `u64` seed. turmoil gets it (`rng_seed`), and a ChaCha8 master stream
//! hands each component its own seed in a fixed order (the Redis nodes, derived from one
//! draw; then gateway 0, 1, ...).
//! Time is turmoil's: events carry true simulated ms; each host's clock is that plus its own
//! offset (which clock-step faults move). Nothing here reads the wall clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ratelab::algo::reservation::SuccessQuota;
use ratelab::algo::{RateQuota, WindowQuota};
use ratelab::keys::{Identity, KeyScheme};
use ratelab::limiter::atomic::{
    self, Algorithm, MultiLimiter, PipelinedFixedWindow, ScriptClock, ScriptLimiter, ShardedLimiter,
};
use ratelab::limiter::hybrid::{HybridLimiter, HybridLocal, SLACK_PERCENT_DEFAULT};
use ratelab::limiter::legacy::GatewayClock;
use ratelab::limiter::legacy::email::{EmailLimiter, EmailQuota};
use ratelab::limiter::legacy::in_memory::{InMemoryRateLimiter, MemoryListLogLimiter};
use ratelab::limiter::legacy::list_log::{ListLogLimiter, ListLogQuota};
use ratelab::limiter::legacy::model_request::{
    self, ModelQuota, ModelRequestLimiter, NewapiScriptLoader, TokenBucketLimiter,
};
use ratelab::limiter::{Limiter, LimiterError, OutcomeLimiter, Request, Verdict};
use ratelab::memory::MemoryLimiter;
use ratelab::model::{Durable, Model, NodeConfig, Reply, SharedModel};
use ratelab::redis::{Reload, Usage};
use ratelab::resp::server::{Clock, serve_connection};

use crate::dynamics::Dynamics;
use crate::event::{ErrorClass, Event, Outcome};
use crate::per_limit::{self, Recorded, SchemePlan, Turns};
use crate::pool::{Pool, REDIS_PORT, Target};
use crate::scenario::{
    Arrivals, Durability, FailModeSetting, FaultKind, GatewayGroup, IdentityKind, LimiterKind,
    Persistence, Popularity, SHARDED_SCHEME_DEFAULT, Scenario, ScriptReload, Topology,
};
use crate::topology::{
    ClusterClient, GatewayRedis, Load, ModelSlot, ReplicaLink, cluster_config, replicate,
};

/// Unix ms at simulated time zero (2023-11-14): every clock starts here plus its offset.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// The first Redis host's name (the only one standalone, the primary when replicated).
pub const REDIS_HOST: &str = "redis-0";

/// The replica a failover promotes.
pub const PROMOTED_HOST: &str = "redis-1";

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Every event, in the order it happened.
    pub events: Vec<Event>,
    /// Simulated ms the run took (load, drain, and the end).
    pub simulated_ms: u64,
    /// Every Redis round trip of every request, in the order they ended: only from
    /// [`run_traced`] (empty otherwise).
    pub round_trips: Vec<RoundTrip>,
}

/// One Redis round trip of one request (a command, or a pipeline), for drawing a
/// counterexample: which request, when it asked (pool wait included) and when the reply
/// came, and the commands' names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundTrip {
    /// The request (as in the log).
    pub id: u64,
    /// When the request asked for it, true simulated ms.
    pub sent_ms: u64,
    /// When the reply (or the error) came back.
    pub replied_ms: u64,
    /// The commands' names (`LLEN`, `EVALSHA`).
    pub commands: Vec<&'static str>,
    /// Whether a reply came (false: a transport error or timeout).
    pub ok: bool,
}

/// Where a traced run writes its round trips.
type Trace = Arc<Mutex<Vec<RoundTrip>>>;

/// A command's name, as Redis spells it.
fn command_name(cmd: &ratelab::redis::Cmd) -> &'static str {
    use ratelab::redis::Cmd;
    match cmd {
        Cmd::Ping => "PING",
        Cmd::Time => "TIME",
        Cmd::Get { .. } => "GET",
        Cmd::Incr { .. } => "INCR",
        Cmd::IncrBy { .. } => "INCRBY",
        Cmd::Expire { .. } => "EXPIRE",
        Cmd::PExpire { .. } => "PEXPIRE",
        Cmd::Ttl { .. } => "TTL",
        Cmd::Del { .. } => "DEL",
        Cmd::LLen { .. } => "LLEN",
        Cmd::LPush { .. } => "LPUSH",
        Cmd::LIndex { .. } => "LINDEX",
        Cmd::LTrim { .. } => "LTRIM",
        Cmd::ScriptLoad { .. } => "SCRIPT LOAD",
        Cmd::EvalSha { .. } | Cmd::EvalShaDigest { .. } => "EVALSHA",
        Cmd::Eval { .. } => "EVAL",
        Cmd::FCall { .. } => "FCALL",
        Cmd::FunctionLoad => "FUNCTION LOAD",
    }
}

/// One request's Redis: the gateway's handle and, in a traced run, where each round trip is
/// written. Tracing only records (it adds no await), so a traced run is the untraced one.
struct RequestRedis {
    inner: GatewayRedis,
    trace: Option<(u64, Trace)>,
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

/// Why a run could not complete.
#[derive(Debug)]
pub struct HarnessError(pub String);

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the simulation failed: {}", self.0)
    }
}

impl std::error::Error for HarnessError {}

type Log = Arc<Mutex<Vec<Event>>>;

fn push(log: &Log, event: Event) {
    log.lock()
        .expect("the event log lock is never held across a panic")
        .push(event);
}

/// True simulated time in ms, inside a host.
fn sim_now_ms() -> u64 {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// A host's clock: true time plus its (movable) offset, in Unix ms.
fn skewed_ms(true_ms: u64, offset: &AtomicI64) -> u64 {
    let base = i128::from(EPOCH_MS) + i128::from(true_ms);
    let skewed = base + i128::from(offset.load(Ordering::Relaxed));
    u64::try_from(skewed.max(0)).unwrap_or(u64::MAX)
}

/// How long gateways wait for in-flight requests after the load stops, and the hard bound on
/// simulated time. Every wait in the gateway has its own timeout, so these are only reached
/// when something is stuck; hitting the hard bound fails the run loudly.
fn drain_ms(scenario: &Scenario) -> u64 {
    let worst_command = scenario.worst_command_ms();
    // At most six sequential commands per request (the legacy model limit's worst case).
    scenario.upstream.latency.max_ms() + 6 * worst_command + 1_000
}

/// What a [`Tamper`] sees of one decision.
#[derive(Clone, Debug)]
pub struct TamperCall<'a> {
    /// The gateway's index.
    pub gateway: u32,
    /// The logical key (as in the log).
    pub key: &'a str,
    /// True simulated time of the decision, ms.
    pub at_ms: u64,
    /// The limiter's answer: `Some(allowed)`, or `None` when it could not decide.
    pub allowed: Option<bool>,
}

/// What a [`Tamper`] does to a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TamperAction {
    /// Leave it.
    Keep,
    /// Admit the request whatever the limiter said (its state in Redis does not count it:
    /// the admission is one beyond what the limiter would have done).
    Admit,
    /// Panic inside the request's task (a limiter bug under a fault).
    Panic,
    /// Turn the answer into a reply the client cannot parse (a protocol desync).
    ProtocolError,
}

/// A wrong limiter, for tests of the checker: a hook that sees every decision and may
/// change it. Real runs have none; sensitivity tests use one to admit exactly one request
/// too many and show that the checker catches it.
pub type Tamper = Arc<dyn Fn(&TamperCall<'_>) -> TamperAction + Send + Sync>;

/// Runs `scenario` with `seed` and returns its event log.
pub fn run(scenario: &Scenario, seed: u64) -> Result<RunOutput, HarnessError> {
    run_tampered(scenario, seed, None)
}

/// [`run`], also recording every request's Redis round trips ([`RunOutput::round_trips`]);
/// the events are those of [`run`].
pub fn run_traced(scenario: &Scenario, seed: u64) -> Result<RunOutput, HarnessError> {
    run_inner(scenario, Seeds::one(seed), None, None, true)
}

/// [`run`] with a [`Tamper`] wrapped around every gateway's limiter.
pub fn run_tampered(
    scenario: &Scenario,
    seed: u64,
    tamper: Option<Tamper>,
) -> Result<RunOutput, HarnessError> {
    run_with(scenario, Seeds::one(seed), tamper, None)
}

/// A run's two seeds. `load` draws what the gateways do (arrivals, limit kinds, keys,
/// upstream latencies and outcomes); `network` draws how the world answers (turmoil's
/// message latencies, the per-link distributions, the Redis nodes' seeds). One seed for both
/// is a run as [`run`] makes it; the same load under another network seed sends the same
/// requests with different timing (`shardcheck --simulate`'s noise floor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// The load's seed.
    pub load: u64,
    /// The network's and the Redis nodes' seed.
    pub network: u64,
}

impl Seeds {
    /// One seed for both.
    pub fn one(seed: u64) -> Seeds {
        Seeds {
            load: seed,
            network: seed,
        }
    }
}

/// [`run_tampered`] with the two seeds apart and, with a [`SchemePlan`], every gateway
/// deciding under a key scheme file's per-limit templates instead of the scenario's limiter.
pub fn run_with(
    scenario: &Scenario,
    seeds: Seeds,
    tamper: Option<Tamper>,
    schemes: Option<Arc<SchemePlan>>,
) -> Result<RunOutput, HarnessError> {
    run_inner(scenario, seeds, tamper, schemes, false)
}

/// Every run: [`run_with`], and with `traced` each request's round trips recorded.
fn run_inner(
    scenario: &Scenario,
    seeds: Seeds,
    tamper: Option<Tamper>,
    schemes: Option<Arc<SchemePlan>>,
    traced: bool,
) -> Result<RunOutput, HarnessError> {
    scenario
        .validate()
        .map_err(|error| HarnessError(error.to_string()))?;
    // A time-scaled scenario runs as its k = 1 equivalent (every duration × k); the events
    // are in that slower clock (`Scenario::scaled`).
    let scaled = scenario.scaled();
    let scenario = &scaled;
    // The Redis seed is the network master's first draw, the gateways' the load master's
    // next ones (so with one seed for both, every draw is the one a single master made).
    let mut master = ChaCha8Rng::seed_from_u64(seeds.network);
    let redis_seed = master.next_u64();
    let mut load_master = ChaCha8Rng::seed_from_u64(seeds.load);
    let _redis_seed_of_load = load_master.next_u64();
    let gateway_count = scenario.gateway_count();
    let gateway_seeds: Vec<u64> = (0..gateway_count).map(|_| load_master.next_u64()).collect();
    let seed = seeds.network;

    let drain = drain_ms(scenario);
    let bound_ms = scenario.duration_ms + drain + 5_000;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_millis(bound_ms))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(scenario.network.min_latency_ms))
        .max_message_latency(Duration::from_millis(scenario.network.max_latency_ms))
        .tcp_capacity(1 << 16)
        .build();

    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let trace: Option<Trace> = traced.then(|| Arc::new(Mutex::new(Vec::new())));
    // Each host's clock offset, by name; clock-step faults add to them.
    let mut offsets: BTreeMap<String, Arc<AtomicI64>> = BTreeMap::new();
    let redis_hosts = scenario.redis.hosts();
    for host in &redis_hosts {
        offsets.insert(
            host.clone(),
            Arc::new(AtomicI64::new(scenario.redis.clock_offset_ms)),
        );
    }
    for index in 0..gateway_count {
        let group = scenario
            .gateway_group(index)
            .expect("index below the count");
        offsets.insert(
            format!("gateway-{index}"),
            Arc::new(AtomicI64::new(group.clock_offset_ms)),
        );
    }

    // Each Redis host's live model, replaced by a fresh one at each (re)start of the host.
    let models: BTreeMap<String, ModelSlot> = redis_hosts
        .iter()
        .map(|host| (host.clone(), Arc::new(Mutex::new(None))))
        .collect();
    let replication_stopped = Arc::new(AtomicBool::new(false));
    // What a restarting `redis-0` loads before it serves: set by the fault loop just before
    // the bounce, taken by the new process.
    let restore: Restore = Arc::new(Mutex::new(None));
    let shards = u32::try_from(redis_hosts.len()).expect("at most REDIS_NODES_MAX");
    for (index, host) in (0u32..).zip(&redis_hosts) {
        let cluster =
            (scenario.redis.topology == Topology::Cluster).then(|| cluster_config(index, shards));
        let replica_of =
            (scenario.redis.topology == Topology::Replicated && index > 0).then(|| ReplicaLink {
                primary: Arc::clone(&models[REDIS_HOST]),
                lag_ms: scenario.redis.replication_lag_ms,
                stopped: Arc::clone(&replication_stopped),
            });
        let node = RedisHost {
            host: host.clone(),
            // Every node its own seed, derived, so that adding nodes changes nothing else.
            seed: redis_seed.wrapping_add(u64::from(index) << 32),
            cluster,
            replica_of,
            model: Arc::clone(&models[host]),
            offset: Arc::clone(&offsets[host]),
            restore: if host == REDIS_HOST {
                Arc::clone(&restore)
            } else {
                Arc::new(Mutex::new(None))
            },
        };
        node.add_to(&mut sim);
    }

    // Where gateways send commands: the current primary (moved by a failover), or the
    // cluster's nodes; the cluster's load counters.
    let primary: Target = Arc::new(Mutex::new(REDIS_HOST.to_owned()));
    let load: Arc<Mutex<Load>> = Arc::new(Mutex::new(Load::default()));

    for index in 0..gateway_count {
        let group = scenario
            .gateway_group(index)
            .expect("index below the count")
            .clone();
        let gateway = Gateway {
            index,
            group,
            // The group's own limit (new-api's group override), if it has one.
            scenario: scenario.for_group(
                scenario
                    .gateway_group(index)
                    .expect("index below the count"),
            ),
            seed: gateway_seeds[usize::try_from(index).expect("small")],
            offset: Arc::clone(&offsets[&format!("gateway-{index}")]),
            log: Arc::clone(&log),
            drain_ms: drain,
            primary: Arc::clone(&primary),
            redis_hosts: redis_hosts.clone(),
            load: Arc::clone(&load),
            tamper: tamper.clone(),
            schemes: schemes.clone(),
            trace: trace.clone(),
        };
        sim.client(format!("gateway-{index}"), gateway.run());
    }

    // Fault actions in time order: (at_ms, fault index, is_end).
    let mut actions: Vec<(u64, usize, bool)> = Vec::new();
    for (index, fault) in scenario.faults.iter().enumerate() {
        actions.push((fault.at_ms, index, false));
        if matches!(
            fault.kind,
            FaultKind::Partition { .. } | FaultKind::Hold { .. }
        ) {
            actions.push((fault.at_ms + fault.kind.outage_ms(), index, true));
        }
    }
    actions.sort();
    let mut next_action = 0;
    let mut dynamics = Dynamics::new(scenario, seed, &offsets);
    // Redis restarts: (fault index, the model that served before): the restart took effect
    // when another model serves at the end.
    let mut restarted: Vec<(usize, Option<SharedModel>)> = Vec::new();
    let mut disk = Disk::new(scenario);
    loop {
        let now_ms = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
        dynamics.advance(&mut sim, now_ms);
        // Fsyncs and snapshots due now happen before any fault of this instant.
        disk.sync(now_ms, &models[REDIS_HOST]);
        while let Some(&(at_ms, index, is_end)) = actions.get(next_action) {
            if at_ms > now_ms {
                break;
            }
            next_action += 1;
            let kind = &scenario.faults[index].kind;
            let (what, took_effect) = if let FaultKind::Flush {} = kind {
                // FLUSHALL on whichever node is the primary now.
                let host = primary
                    .lock()
                    .expect("the target lock is never held across a panic")
                    .clone();
                flush(&models[&host], now_ms, &offsets[&host])
            } else {
                // What the harness can tell now; a restart is judged at the end, by which
                // model serves then.
                let took_effect = match kind {
                    FaultKind::RedisRestart { .. } => {
                        let before = current_model(&models[REDIS_HOST]);
                        *restore
                            .lock()
                            .expect("the restore lock is never held across a panic") =
                            disk.durable_at_restart(kind, now_ms, before.as_ref());
                        restarted.push((index, before));
                        None
                    }
                    FaultKind::ClockStep { host, step_ms } => {
                        Some(offsets.contains_key(host) && *step_ms != 0)
                    }
                    FaultKind::Failover {} if !is_end => Some(true),
                    _ => None,
                };
                let failover = Failover {
                    primary: &primary,
                    replication_stopped: &replication_stopped,
                };
                let what = apply_fault(&mut sim, kind, is_end, &offsets, &failover);
                (what, took_effect)
            };
            push(
                &log,
                Event::Fault {
                    index,
                    at_ms: now_ms,
                    what,
                    took_effect,
                },
            );
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => return Err(HarnessError(error.to_string())),
        }
    }
    let simulated_ms = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
    mark_restarts(&log, &restarted, &models[REDIS_HOST]);
    for (host, drift_ms) in dynamics.drifted() {
        push(
            &log,
            Event::ClockDrift {
                at_ms: simulated_ms,
                host,
                drift_ms,
            },
        );
    }
    if scenario.redis.topology == Topology::Cluster {
        let load = load
            .lock()
            .expect("the load lock is never held across a panic");
        push(
            &log,
            Event::Load {
                at_ms: simulated_ms,
                nodes: redis_hosts
                    .iter()
                    .map(|host| (host.clone(), load.nodes.get(host).copied().unwrap_or(0)))
                    .collect(),
                slots: load
                    .slots
                    .iter()
                    .map(|(slot, count)| (*slot, *count))
                    .collect(),
                redirects: load.redirects,
            },
        );
    }
    // The data the gateways see at the end: the current primary's, or every shard's.
    let serving: Vec<String> = match scenario.redis.topology {
        Topology::Cluster => redis_hosts.clone(),
        _ => vec![
            primary
                .lock()
                .expect("the target lock is never held across a panic")
                .clone(),
        ],
    };
    let mut keys = Vec::new();
    let mut levels = Vec::new();
    let mut any = false;
    for host in &serving {
        let model = models[host]
            .lock()
            .expect("the model slot lock is never held across a panic")
            .clone();
        if let Some(model) = model {
            any = true;
            let node_ms = skewed_ms(simulated_ms, &offsets[host]);
            let host_keys = snapshot(&model, node_ms);
            levels.extend(bucket_levels(&model, node_ms, &host_keys));
            keys.extend(host_keys);
        }
    }
    if any {
        keys.sort();
        levels.sort();
        push(
            &log,
            Event::Snapshot {
                at_ms: simulated_ms,
                keys,
                levels,
            },
        );
    }
    drop(sim);
    let events = std::mem::take(
        &mut *log
            .lock()
            .expect("the event log lock is never held across a panic"),
    );
    let round_trips = trace.map_or_else(Vec::new, |trace| {
        std::mem::take(
            &mut *trace
                .lock()
                .expect("the trace lock is never held across a panic"),
        )
    });
    Ok(RunOutput {
        events,
        simulated_ms,
        round_trips,
    })
}

/// The model a Redis host serves now, if it has started.
fn current_model(slot: &ModelSlot) -> Option<SharedModel> {
    slot.lock()
        .expect("the model slot lock is never held across a panic")
        .clone()
}

/// Sets `took_effect` on each Redis restart's event: the node really restarted when the
/// model serving at the end is not the one that served before the restart.
fn mark_restarts(log: &Log, restarted: &[(usize, Option<SharedModel>)], slot: &ModelSlot) {
    let now = current_model(slot);
    let mut events = log
        .lock()
        .expect("the event log lock is never held across a panic");
    for (fault, before) in restarted {
        let effect = match (before, &now) {
            (Some(before), Some(now)) => !Arc::ptr_eq(before, now),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        for event in events.iter_mut() {
            if let Event::Fault {
                index, took_effect, ..
            } = event
                && index == fault
                && took_effect.is_none()
            {
                *took_effect = Some(effect);
                break;
            }
        }
    }
}

/// What a failover moves.
struct Failover<'a> {
    primary: &'a Target,
    replication_stopped: &'a AtomicBool,
}

/// Applies (or ends) one fault and says what happened.
fn apply_fault(
    sim: &mut turmoil::Sim<'_>,
    kind: &FaultKind,
    is_end: bool,
    offsets: &BTreeMap<String, Arc<AtomicI64>>,
    failover: &Failover<'_>,
) -> String {
    match kind {
        FaultKind::Partition { a, b, oneway, .. } => match (is_end, oneway) {
            (false, false) => {
                sim.partition(a.as_str(), b.as_str());
                format!("partition {a} <-> {b}")
            }
            (false, true) => {
                sim.partition_oneway(a.as_str(), b.as_str());
                format!("partition {a} -> {b}")
            }
            (true, false) => {
                sim.repair(a.as_str(), b.as_str());
                format!("repair {a} <-> {b}")
            }
            (true, true) => {
                sim.repair_oneway(a.as_str(), b.as_str());
                format!("repair {a} -> {b}")
            }
        },
        FaultKind::Hold { a, b, .. } if is_end => {
            sim.release(a.as_str(), b.as_str());
            format!("release {a} <-> {b}")
        }
        FaultKind::Hold { a, b, .. } => {
            sim.hold(a.as_str(), b.as_str());
            format!("hold {a} <-> {b}")
        }
        FaultKind::RedisRestart { persistence, .. } => {
            sim.bounce(REDIS_HOST);
            let kept = match persistence {
                Persistence::None => "data and script cache lost",
                Persistence::AofAlways => "aof_always: every write kept, script cache lost",
                Persistence::AofEverysec => {
                    "aof_everysec: data as of the last fsync kept, script cache lost"
                }
                Persistence::Rdb => "rdb: the last snapshot kept, script cache lost",
            };
            format!("restart {REDIS_HOST} ({kept})")
        }
        FaultKind::Failover {} => {
            // Replication stops first, so the promoted replica keeps exactly what it had
            // received; then the old primary dies (its connections break) and every
            // gateway's pool dials the new one.
            failover.replication_stopped.store(true, Ordering::Relaxed);
            sim.crash(REDIS_HOST);
            *failover
                .primary
                .lock()
                .expect("the target lock is never held across a panic") = PROMOTED_HOST.to_owned();
            format!(
                "failover: {REDIS_HOST} dies, {PROMOTED_HOST} promoted (unreplicated writes lost, script cache empty)"
            )
        }
        FaultKind::ClockStep { host, step_ms } => {
            if let Some(offset) = offsets.get(host) {
                offset.fetch_add(*step_ms, Ordering::Relaxed);
            }
            format!("clock step {host} by {step_ms} ms")
        }
        FaultKind::Flush {} => "flush (applied by the caller)".to_owned(),
        FaultKind::LinkLatency { a, b, latency_ms } => {
            sim.set_link_latency(a.as_str(), b.as_str(), Duration::from_millis(*latency_ms));
            format!("latency {a} <-> {b} = {latency_ms} ms")
        }
        // The gateway restarts itself at this time (it knows its schedule): see
        // `Gateway::run`.
        FaultKind::GatewayRestart { host, down_ms } => format!(
            "restart {host} (in-flight requests aborted, in-memory state and script loader lost; down {down_ms} ms)"
        ),
    }
}

/// FLUSHALL on the live model at the node's time (the node stays up; scripts are kept).
fn flush(
    current_model: &Arc<Mutex<Option<SharedModel>>>,
    true_ms: u64,
    offset: &AtomicI64,
) -> (String, Option<bool>) {
    let model = current_model
        .lock()
        .expect("the model slot lock is never held across a panic")
        .clone();
    let Some(model) = model else {
        return (
            format!("flush {REDIS_HOST}: not started yet, nothing to flush"),
            Some(false),
        );
    };
    let mut model = model
        .lock()
        .expect("the model lock is never held across a panic");
    let mut session = model.connect("fault:0");
    let node_ms = skewed_ms(true_ms, offset);
    let keys = match model.exec(node_ms, &mut session, &[b"DBSIZE".to_vec()]) {
        Reply::Integer(keys) => keys,
        _ => 0,
    };
    let reply = model.exec(node_ms, &mut session, &[b"FLUSHALL".to_vec()]);
    model.disconnect(&mut session);
    (
        format!("flush {REDIS_HOST} (FLUSHALL: {reply:?}, {keys} keys removed)"),
        Some(keys > 0),
    )
}

/// The `tokens` and `credit` fields of every hash among `keys` (token bucket levels).
fn bucket_levels(
    model: &SharedModel,
    node_ms: u64,
    keys: &[(String, i64)],
) -> Vec<(String, String, String)> {
    let mut model = model
        .lock()
        .expect("the model lock is never held across a panic");
    let mut session = model.connect("checker:1");
    let mut out = Vec::new();
    for (key, _) in keys {
        for field in ["tokens", "credit"] {
            let line = [
                b"HGET".to_vec(),
                key.as_bytes().to_vec(),
                field.as_bytes().to_vec(),
            ];
            // Non-hash keys answer WRONGTYPE, hashes without the field nil: both skipped.
            if let Reply::Bulk(value) = model.exec(node_ms, &mut session, &line) {
                out.push((
                    key.clone(),
                    field.to_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
        }
    }
    model.disconnect(&mut session);
    out
}

/// What a restarting node loads before it serves (`None`: it starts empty).
type Restore = Arc<Mutex<Option<Durable>>>;

/// `redis-0`'s disk: the durable copies its periodic persistence (`aof_everysec`'s fsync,
/// `rdb`'s snapshots) has made, held outside the turmoil host so that they outlive it. A
/// copy is taken at every multiple of each interval some later restart needs (simulated
/// time from 0), and only while such a restart is still ahead.
struct Disk {
    /// Per interval (ms): the next sync instant, the last restart that needs it, and the copy
    /// made at the last sync (`None` before the node first served).
    periodic: BTreeMap<u64, (u64, u64, Option<Durable>)>,
}

impl Disk {
    fn new(scenario: &Scenario) -> Disk {
        let mut periodic: BTreeMap<u64, (u64, u64, Option<Durable>)> = BTreeMap::new();
        for fault in &scenario.faults {
            if let Some(every) = fault.kind.sync_every_ms() {
                let entry = periodic.entry(every.max(1)).or_insert((0, 0, None));
                entry.1 = entry.1.max(fault.at_ms);
            }
        }
        Disk { periodic }
    }

    /// Takes the copies due at `now_ms`.
    fn sync(&mut self, now_ms: u64, slot: &ModelSlot) {
        for (every, (next_ms, last_needed_ms, copy)) in &mut self.periodic {
            if *next_ms > now_ms || now_ms > *last_needed_ms {
                continue;
            }
            // The checker assumes the sync happened exactly at the multiple
            // (`FaultKind::durability`): with 1 ms ticks every instant is visited.
            assert_eq!(
                now_ms, *next_ms,
                "a sync instant was skipped: the harness steps 1 ms at a time"
            );
            *copy = current_model(slot).map(|model| {
                model
                    .lock()
                    .expect("the model lock is never held across a panic")
                    .durable()
            });
            *next_ms = now_ms + *every;
        }
    }

    /// What a restart (`kind`, at `now_ms`) of the node now serving as `before` loads.
    fn durable_at_restart(
        &self,
        kind: &FaultKind,
        now_ms: u64,
        before: Option<&SharedModel>,
    ) -> Option<Durable> {
        match kind.durability(now_ms)? {
            Durability::Nothing => None,
            Durability::Everything => before.map(|model| {
                model
                    .lock()
                    .expect("the model lock is never held across a panic")
                    .durable()
            }),
            Durability::AsOf { .. } => {
                let every = kind.sync_every_ms()?.max(1);
                self.periodic.get(&every)?.2.clone()
            }
        }
    }
}

/// One Redis host: its node configuration and, for a replica, what it follows.
struct RedisHost {
    host: String,
    seed: u64,
    cluster: Option<ratelab::model::ClusterConfig>,
    replica_of: Option<ReplicaLink>,
    model: ModelSlot,
    offset: Arc<AtomicI64>,
    /// What the next (re)start loads.
    restore: Restore,
}

impl RedisHost {
    fn add_to(self, sim: &mut turmoil::Sim<'_>) {
        let starts = Arc::new(AtomicI64::new(0));
        let host = self.host.clone();
        sim.host(host, move || {
            let slot = Arc::clone(&self.model);
            let offset = Arc::clone(&self.offset);
            let cluster = self.cluster.clone();
            let replica_of = self.replica_of.clone();
            let durable = self
                .restore
                .lock()
                .expect("the restore lock is never held across a panic")
                .take();
            // A restarted node gets a new seed, derived, so the run stays reproducible.
            let start = starts.fetch_add(1, Ordering::Relaxed);
            let node_seed = self.seed.wrapping_add(start.unsigned_abs());
            async move {
                let config = NodeConfig {
                    port: REDIS_PORT,
                    cluster,
                    ..NodeConfig::standalone(node_seed)
                };
                let mut fresh = Model::new(config);
                if let Some(durable) = durable {
                    // Loaded before the listener binds, as Redis loads its AOF or RDB file.
                    fresh.restore_durable(durable);
                }
                let model: SharedModel = Arc::new(Mutex::new(fresh));
                *slot
                    .lock()
                    .expect("the model slot lock is never held across a panic") =
                    Some(Arc::clone(&model));
                if let Some(link) = replica_of {
                    tokio::spawn(replicate(link, Arc::clone(&model), sim_now_ms));
                }
                let clock: Clock = Arc::new(move || skewed_ms(sim_now_ms(), &offset));
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", REDIS_PORT)).await?;
                loop {
                    let (stream, peer) = listener.accept().await?;
                    let model = Arc::clone(&model);
                    let clock = Arc::clone(&clock);
                    tokio::spawn(async move {
                        // A dropped connection is the client's problem, not the server's.
                        let _ = serve_connection(stream, model, clock, peer.to_string()).await;
                    });
                }
            }
        });
    }
}

/// Every key of database 0 with its PTTL, in key order.
fn snapshot(model: &SharedModel, node_ms: u64) -> Vec<(String, i64)> {
    let mut model = model
        .lock()
        .expect("the model lock is never held across a panic");
    let mut session = model.connect("checker:0");
    let keys = match model.exec(node_ms, &mut session, &[b"KEYS".to_vec(), b"*".to_vec()]) {
        Reply::Array(items) => items,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for item in keys {
        let Reply::Bulk(key) = item else { continue };
        let ttl = match model.exec(node_ms, &mut session, &[b"PTTL".to_vec(), key.clone()]) {
            Reply::Integer(ttl) => ttl,
            _ => -2,
        };
        out.push((String::from_utf8_lossy(&key).into_owned(), ttl));
    }
    model.disconnect(&mut session);
    out.sort();
    out
}

/// One gateway host.
struct Gateway {
    index: u32,
    group: GatewayGroup,
    scenario: Scenario,
    seed: u64,
    offset: Arc<AtomicI64>,
    log: Log,
    drain_ms: u64,
    /// The host single-node pools dial (a failover moves it).
    primary: Target,
    /// Every Redis host (the cluster's nodes).
    redis_hosts: Vec<String>,
    /// The cluster's load counters, shared by every gateway.
    load: Arc<Mutex<Load>>,
    /// A test's wrong limiter, if any.
    tamper: Option<Tamper>,
    /// Per-limit key schemes to decide under instead of `group.limiter`, if any.
    schemes: Option<Arc<SchemePlan>>,
    /// Where round trips go in a traced run.
    trace: Option<Trace>,
}

/// How a gateway reaches Redis.
enum Connector {
    /// One pool to the current primary.
    Single(Arc<Pool>),
    /// A slot router over a pool per node.
    Cluster(Arc<ClusterClient>),
}

impl Connector {
    fn handle(&self) -> GatewayRedis {
        match self {
            Connector::Single(pool) => GatewayRedis::Single(pool.handle()),
            Connector::Cluster(client) => GatewayRedis::Cluster(client.handle()),
        }
    }
}

/// What the arrival loop decided about one request before it runs.
struct Planned {
    id: u64,
    /// The limit kind drawn from `load.mix`; `None` without a mix.
    kind: Option<IdentityKind>,
    key: u64,
    upstream_ms: u64,
    upstream_ok: bool,
}

/// Per-gateway state every request task shares.
struct Shared {
    index: u32,
    kind: LimiterKind,
    fail_mode: FailModeSetting,
    scheme: KeyScheme,
    clock: GatewayClock,
    offset: Arc<AtomicI64>,
    pool: Connector,
    /// new-api's process-wide script loader (`sync.Once`): one per gateway.
    loader: Arc<NewapiScriptLoader>,
    scenario: Scenario,
    cost: u64,
    log: Log,
    /// This gateway's process-wide in-memory store (new-api's `inMemoryRateLimiter`).
    memory_list: Arc<InMemoryRateLimiter>,
    /// This gateway's sharded in-process GCRA, for `memory_gcra`.
    memory_gcra: Option<Arc<MemoryLimiter>>,
    /// The user group it serves.
    group: Option<String>,
    /// What its script limiters do after NOSCRIPT (one flag per gateway process).
    reload: Reload,
    /// Requests logged and not yet decided: a restart logs each as aborted.
    pending: Mutex<std::collections::BTreeSet<u64>>,
    /// A test's wrong limiter, if any.
    tamper: Option<Tamper>,
    /// `multi_limit`: each limit's key scheme and GCRA quota.
    multi_limits: Vec<(KeyScheme, RateQuota)>,
    /// `sharded_gcra`: the round robin's turns so far (one per request).
    shard_turns: AtomicU64,
    /// `hybrid_gcra`: this process's deny cache and pre-check.
    hybrid: Option<Arc<HybridLocal>>,
    /// Per-limit key schemes to decide under, if any.
    schemes: Option<Arc<SchemePlan>>,
    /// Their sharded limits' round-robin turns.
    scheme_turns: Turns,
    /// Where round trips go in a traced run.
    trace: Option<Trace>,
}

/// One gateway process: what a restart throws away.
struct Process {
    shared: Arc<Shared>,
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

    async fn run(self) -> turmoil::Result {
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
            // makes the per-request spawn a small aligned allocation (measured, see the log).
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
    request: std::pin::Pin<Box<F>>,
    shared: Arc<Shared>,
    id: u64,
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

/// Cumulative weights for key draws (`None`: uniform, no table).
pub(crate) fn key_weights(keys: u64, popularity: &Popularity) -> Option<Vec<f64>> {
    match popularity {
        Popularity::Uniform | Popularity::Hot { .. } => None,
        Popularity::Zipf { s } => {
            let mut total = 0.0;
            let table = (0..keys)
                .map(|key| {
                    total += 1.0 / ((key + 1) as f64).powf(*s);
                    total
                })
                .collect();
            Some(table)
        }
    }
}

pub(crate) fn draw_key(
    rng: &mut ChaCha8Rng,
    keys: u64,
    popularity: &Popularity,
    weights: &Option<Vec<f64>>,
) -> u64 {
    match (popularity, weights) {
        (Popularity::Zipf { .. }, Some(table)) => {
            let total = *table.last().expect("at least one key");
            let target = rng.random::<f64>() * total;
            let index = table.partition_point(|&cumulative| cumulative <= target);
            u64::try_from(index.min(table.len() - 1)).expect("fits")
        }
        (Popularity::Hot { share }, _) if keys > 1 => {
            if rng.random_bool(*share) {
                0
            } else {
                rng.random_range(1..keys)
            }
        }
        _ => rng.random_range(0..keys),
    }
}

/// The logical key's name in the log: `k3` without a mix, `ip:k3`, `user:k3` or `model:k3`
/// with one, so the checker bounds each (kind, key) on its own.
pub fn key_name(kind: Option<IdentityKind>, key: u64) -> String {
    match kind {
        None => format!("k{key}"),
        Some(kind) => format!("{}:k{key}", kind.name()),
    }
}

/// The logical key named `name` in the log (`k3`, `ip:k3`): its kind and number, the
/// inverse of [`key_name`].
pub fn parse_key_name(name: &str) -> Option<(Option<IdentityKind>, u64)> {
    let (kind, number) = match name.split_once(':') {
        None => (None, name),
        Some((kind, number)) => (
            Some(
                IdentityKind::ALL
                    .into_iter()
                    .find(|candidate| candidate.name() == kind)?,
            ),
            number,
        ),
    };
    Some((kind, number.strip_prefix('k')?.parse().ok()?))
}

/// The identity a request on logical key `key` presents to `limiter`.
///
/// Without a mix (`kind` is `None`): namespace `GA` (new-api's global API mark) for the IP
/// list, `model` otherwise; ip `10.0.a.b` from the key, user the key, model `gpt-4o`.
///
/// With a mix, every field a key template can name is distinct per (kind, key), so each
/// becomes its own rate-limited identity under any template naming `$user` or `$ip`:
/// * namespace: the kind (`ip`, `user`, `model`) for atomic and in-process GCRA limiters;
///   legacy limiters keep new-api's fixed keys (mark `GA` for path A's IP lists, in Redis
///   and in memory), since new-api applies the same limit whatever the caller is;
/// * ip: `10.<c>.a.b`, c = 0 for ip, 1 for user, 2 for model: each kind's callers come from
///   their own /16, so new-api's IP-keyed limits (path A, email, the in-memory list) count
///   each (kind, key) apart;
/// * user: the key for the user kind, `ip-<key>` and `model-<key>` for the others: every
///   shipped template (the default `rl:$ns:{u:$user}` among them) and new-api's user-keyed
///   limits (the model request limits key by user id) hash on the user, so a fixed user
///   would fold all of a kind's keys into one;
/// * model: `model-<key>` for the model kind, `gpt-4o` otherwise.
pub fn identity(
    limiter: LimiterKind,
    kind: Option<IdentityKind>,
    key: u64,
    group: &str,
) -> Identity {
    let low = format!("{}.{}", key / 256 % 256, key % 256);
    let Some(kind) = kind else {
        let namespace = match limiter {
            // new-api's mark for the global API limit (`GA`).
            LimiterKind::LegacyIpList => "GA",
            // new-api's mark for the user limiter (`SR`).
            LimiterKind::LegacyUserList => "SR",
            _ => "model",
        };
        return Identity::new(namespace)
            .with("ip", format!("10.0.{low}"))
            .with("user", user_id(limiter, key))
            .with("group", group)
            .with("model", "gpt-4o");
    };
    let namespace = match limiter {
        // Path A, in Redis or in memory: new-api's global API mark for every request.
        LimiterKind::LegacyIpList | LimiterKind::LegacyMemoryList => "GA",
        LimiterKind::LegacyUserList => "SR",
        _ if limiter.is_legacy() => "model",
        _ => kind.name(),
    };
    let user = match kind {
        IdentityKind::User => user_id(limiter, key),
        IdentityKind::Ip | IdentityKind::Model => format!("{}-{key}", kind.name()),
    };
    let model = match kind {
        IdentityKind::Model => format!("model-{key}"),
        IdentityKind::Ip | IdentityKind::User => "gpt-4o".to_owned(),
    };
    Identity::new(namespace)
        .with("ip", format!("10.{}.{low}", kind.index()))
        .with("user", user)
        .with("group", group)
        .with("model", model)
}

/// A user id for logical key `key`: the key itself, but from 1 for new-api's user list,
/// which refuses user 0 (new-api's 401 for a request without a user).
fn user_id(limiter: LimiterKind, key: u64) -> String {
    match limiter {
        LimiterKind::LegacyUserList => (key + 1).to_string(),
        _ => key.to_string(),
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
async fn serve_request(shared: Arc<Shared>, planned: Planned) {
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
