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

mod faults;
mod gateway;
mod keys;
mod redis_host;
mod request;

use self::faults::*;
use self::gateway::*;
use self::redis_host::*;
use self::request::*;

pub(crate) use self::keys::{draw_key, key_weights};
pub use self::keys::{identity, key_name, parse_key_name};

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

    let world = World::new(scenario, traced);
    world.add_redis_hosts(&mut sim, scenario, redis_seed);
    let gateways = GatewayPlan {
        seeds: gateway_seeds,
        drain_ms: drain,
        tamper,
        schemes,
    };
    world.add_gateways(&mut sim, scenario, gateways);

    let actions = fault_actions(scenario);
    let mut next_action = 0;
    let mut dynamics = Dynamics::new(scenario, seed, &world.offsets);
    // Redis restarts: (fault index, the model that served before): the restart took effect
    // when another model serves at the end.
    let mut restarted: Vec<(usize, Option<SharedModel>)> = Vec::new();
    let mut disk = Disk::new(scenario);
    loop {
        let now_ms = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
        dynamics.advance(&mut sim, now_ms);
        // Fsyncs and snapshots due now happen before any fault of this instant.
        disk.sync(now_ms, &world.models[REDIS_HOST]);
        while let Some(&(at_ms, index, is_end)) = actions.get(next_action) {
            if at_ms > now_ms {
                break;
            }
            next_action += 1;
            let fault = DueFault {
                index,
                is_end,
                now_ms,
            };
            world.apply(&mut sim, scenario, fault, &mut disk, &mut restarted);
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => return Err(HarnessError(error.to_string())),
        }
    }
    let simulated_ms = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
    mark_restarts(&world.log, &restarted, &world.models[REDIS_HOST]);
    for (host, drift_ms) in dynamics.drifted() {
        push(
            &world.log,
            Event::ClockDrift {
                at_ms: simulated_ms,
                host,
                drift_ms,
            },
        );
    }
    if scenario.redis.topology == Topology::Cluster {
        world.push_cluster_load(simulated_ms);
    }
    world.push_snapshot(scenario, simulated_ms);
    drop(sim);
    Ok(world.output(simulated_ms))
}

/// The handles every part of one run shares: the log, the hosts' clocks and models, where
/// gateways send commands, and the cluster's load counters.
struct World {
    log: Log,
    trace: Option<Trace>,
    /// Each host's clock offset, by name; clock-step faults add to them.
    offsets: BTreeMap<String, Arc<AtomicI64>>,
    redis_hosts: Vec<String>,
    /// Each Redis host's live model, replaced by a fresh one at each (re)start of the host.
    models: BTreeMap<String, ModelSlot>,
    replication_stopped: Arc<AtomicBool>,
    /// What a restarting `redis-0` loads before it serves: set by the fault loop just before
    /// the bounce, taken by the new process.
    restore: Restore,
    /// Where gateways send commands: the current primary (moved by a failover), or the
    /// cluster's nodes.
    primary: Target,
    load: Arc<Mutex<Load>>,
}

/// What every gateway of a run gets besides its group: its seed (by index), how long it
/// drains, the checker-test tamper and the per-limit key plan.
struct GatewayPlan {
    seeds: Vec<u64>,
    drain_ms: u64,
    tamper: Option<Tamper>,
    schemes: Option<Arc<SchemePlan>>,
}

/// A fault action due now: the fault's index, whether it is the end of an outage, and the
/// instant.
#[derive(Clone, Copy)]
struct DueFault {
    index: usize,
    is_end: bool,
    now_ms: u64,
}

impl World {
    fn new(scenario: &Scenario, traced: bool) -> World {
        let redis_hosts = scenario.redis.hosts();
        let mut offsets: BTreeMap<String, Arc<AtomicI64>> = BTreeMap::new();
        for host in &redis_hosts {
            offsets.insert(
                host.clone(),
                Arc::new(AtomicI64::new(scenario.redis.clock_offset_ms)),
            );
        }
        for index in 0..scenario.gateway_count() {
            let group = scenario
                .gateway_group(index)
                .expect("index below the count");
            offsets.insert(
                format!("gateway-{index}"),
                Arc::new(AtomicI64::new(group.clock_offset_ms)),
            );
        }
        let models = redis_hosts
            .iter()
            .map(|host| (host.clone(), Arc::new(Mutex::new(None))))
            .collect();
        World {
            log: Arc::new(Mutex::new(Vec::new())),
            trace: traced.then(|| Arc::new(Mutex::new(Vec::new()))),
            offsets,
            redis_hosts,
            models,
            replication_stopped: Arc::new(AtomicBool::new(false)),
            restore: Arc::new(Mutex::new(None)),
            primary: Arc::new(Mutex::new(REDIS_HOST.to_owned())),
            load: Arc::new(Mutex::new(Load::default())),
        }
    }

    /// Adds every Redis host to the simulation, in name order.
    fn add_redis_hosts(&self, sim: &mut turmoil::Sim<'_>, scenario: &Scenario, redis_seed: u64) {
        let shards = u32::try_from(self.redis_hosts.len()).expect("at most REDIS_NODES_MAX");
        for (index, host) in (0u32..).zip(&self.redis_hosts) {
            let cluster = (scenario.redis.topology == Topology::Cluster)
                .then(|| cluster_config(index, shards));
            let replica_of =
                (scenario.redis.topology == Topology::Replicated && index > 0).then(|| {
                    ReplicaLink {
                        primary: Arc::clone(&self.models[REDIS_HOST]),
                        lag_ms: scenario.redis.replication_lag_ms,
                        stopped: Arc::clone(&self.replication_stopped),
                    }
                });
            let node = RedisHost {
                host: host.clone(),
                // Every node its own seed, derived, so that adding nodes changes nothing else.
                seed: redis_seed.wrapping_add(u64::from(index) << 32),
                cluster,
                replica_of,
                model: Arc::clone(&self.models[host]),
                offset: Arc::clone(&self.offsets[host]),
                restore: if host == REDIS_HOST {
                    Arc::clone(&self.restore)
                } else {
                    Arc::new(Mutex::new(None))
                },
            };
            node.add_to(sim);
        }
    }

    /// Adds every gateway to the simulation, in index order, each with its group's settings
    /// and its own seed.
    fn add_gateways(&self, sim: &mut turmoil::Sim<'_>, scenario: &Scenario, plan: GatewayPlan) {
        for index in 0..scenario.gateway_count() {
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
                seed: plan.seeds[usize::try_from(index).expect("small")],
                offset: Arc::clone(&self.offsets[&format!("gateway-{index}")]),
                log: Arc::clone(&self.log),
                drain_ms: plan.drain_ms,
                primary: Arc::clone(&self.primary),
                redis_hosts: self.redis_hosts.clone(),
                load: Arc::clone(&self.load),
                tamper: plan.tamper.clone(),
                schemes: plan.schemes.clone(),
                trace: self.trace.clone(),
            };
            sim.client(format!("gateway-{index}"), gateway.run());
        }
    }

    /// Applies one due fault action and logs it, with whether it took effect where the
    /// harness can tell now (a restart is judged at the end, by which model serves then).
    fn apply(
        &self,
        sim: &mut turmoil::Sim<'_>,
        scenario: &Scenario,
        due: DueFault,
        disk: &mut Disk,
        restarted: &mut Vec<(usize, Option<SharedModel>)>,
    ) {
        let DueFault {
            index,
            is_end,
            now_ms,
        } = due;
        let kind = &scenario.faults[index].kind;
        let (what, took_effect) = if let FaultKind::Flush {} = kind {
            // FLUSHALL on whichever node is the primary now.
            let host = self
                .primary
                .lock()
                .expect("the target lock is never held across a panic")
                .clone();
            flush(&self.models[&host], now_ms, &self.offsets[&host])
        } else {
            let took_effect = match kind {
                FaultKind::RedisRestart { .. } => {
                    let before = current_model(&self.models[REDIS_HOST]);
                    *self
                        .restore
                        .lock()
                        .expect("the restore lock is never held across a panic") =
                        disk.durable_at_restart(kind, now_ms, before.as_ref());
                    restarted.push((index, before));
                    None
                }
                FaultKind::ClockStep { host, step_ms } => {
                    Some(self.offsets.contains_key(host) && *step_ms != 0)
                }
                FaultKind::Failover {} if !is_end => Some(true),
                _ => None,
            };
            let failover = Failover {
                primary: &self.primary,
                replication_stopped: &self.replication_stopped,
            };
            let what = apply_fault(sim, kind, is_end, &self.offsets, &failover);
            (what, took_effect)
        };
        push(
            &self.log,
            Event::Fault {
                index,
                at_ms: now_ms,
                what,
                took_effect,
            },
        );
    }

    /// Logs the cluster's load: commands per node and per slot, and MOVED redirects.
    fn push_cluster_load(&self, simulated_ms: u64) {
        let load = self
            .load
            .lock()
            .expect("the load lock is never held across a panic");
        push(
            &self.log,
            Event::Load {
                at_ms: simulated_ms,
                nodes: self
                    .redis_hosts
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

    /// Logs the data the gateways see at the end (the current primary's, or every
    /// shard's): each key's TTL and each bucket's level, when any node is up.
    fn push_snapshot(&self, scenario: &Scenario, simulated_ms: u64) {
        let serving: Vec<String> = match scenario.redis.topology {
            Topology::Cluster => self.redis_hosts.clone(),
            _ => vec![
                self.primary
                    .lock()
                    .expect("the target lock is never held across a panic")
                    .clone(),
            ],
        };
        let mut keys = Vec::new();
        let mut levels = Vec::new();
        let mut any = false;
        for host in &serving {
            let model = self.models[host]
                .lock()
                .expect("the model slot lock is never held across a panic")
                .clone();
            if let Some(model) = model {
                any = true;
                let node_ms = skewed_ms(simulated_ms, &self.offsets[host]);
                let host_keys = snapshot(&model, node_ms);
                levels.extend(bucket_levels(&model, node_ms, &host_keys));
                keys.extend(host_keys);
            }
        }
        if any {
            keys.sort();
            levels.sort();
            push(
                &self.log,
                Event::Snapshot {
                    at_ms: simulated_ms,
                    keys,
                    levels,
                },
            );
        }
    }

    /// The run's output: the event log and the traced round trips, taken out.
    fn output(self, simulated_ms: u64) -> RunOutput {
        let events = std::mem::take(
            &mut *self
                .log
                .lock()
                .expect("the event log lock is never held across a panic"),
        );
        let round_trips = self.trace.map_or_else(Vec::new, |trace| {
            std::mem::take(
                &mut *trace
                    .lock()
                    .expect("the trace lock is never held across a panic"),
            )
        });
        RunOutput {
            events,
            simulated_ms,
            round_trips,
        }
    }
}

/// Fault actions in time order: (at_ms, fault index, is_end); a partition or hold also
/// ends.
fn fault_actions(scenario: &Scenario) -> Vec<(u64, usize, bool)> {
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
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a host's clock is the epoch plus true time plus its offset, moved at once by a
    /// clock step, and never below the Unix epoch whatever the step.
    #[test]
    fn a_host_clock_is_true_time_plus_its_offset() {
        let offset = AtomicI64::new(0);
        assert_eq!(skewed_ms(250, &offset), EPOCH_MS + 250);
        offset.store(-1_000, Ordering::Relaxed);
        assert_eq!(skewed_ms(250, &offset), EPOCH_MS - 750);
        offset.store(i64::MIN, Ordering::Relaxed);
        assert_eq!(skewed_ms(250, &offset), 0);
    }
}
