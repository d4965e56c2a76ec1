//! A run described as data: a [`Scenario`] read from TOML, or drawn from a seed.
//!
//! Every field is documented here and in `sim/scenarios/README.md`. [`Scenario::validate`]
//! rejects values the harness cannot run, naming the field (`gateways[1].pool.size`) and the
//! problem, so a bad file is exit code 2 and never a panic. [`Scenario::swarm`] draws every
//! knob from a ChaCha8 stream (swarm testing, as TigerBeetle's VOPR does): a seed is a
//! scenario.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Longest simulated run accepted, in ms (an hour): bounds the number of turmoil steps.
pub const DURATION_MS_MAX: u64 = 3_600_000;
/// Most gateways in one run.
pub const GATEWAYS_MAX: u32 = 64;
/// Highest total arrival rate accepted, requests per simulated second.
pub const RATE_PER_S_MAX: f64 = 200_000.0;
/// Most requests one run may generate; a run that would exceed it is refused up front.
pub const REQUESTS_MAX: u64 = 2_000_000;
/// Most distinct keys the load may touch.
pub const KEYS_MAX: u64 = 1_000_000;
/// Longest timeout, latency or fault duration accepted, in ms (ten minutes).
pub const SPAN_MS_MAX: u64 = 600_000;

/// One simulation run: topology, limiter, load, upstream and faults.
///
/// ```toml
/// duration_ms = 5000
/// [limit]
/// limit = 10
/// window_ms = 1000
/// [[gateways]]
/// count = 2
/// limiter = "atomic_gcra"
/// [load]
/// rate_per_s = 200
/// keys = 4
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// How long the load generators send requests, in simulated ms. In-flight requests then
    /// finish (bounded by the upstream's and the pool's own limits).
    pub duration_ms: u64,
    /// The simulated network between every pair of hosts.
    #[serde(default)]
    pub network: Network,
    /// The Redis node or nodes (`redis-0` standalone by default; replicated or a cluster).
    #[serde(default)]
    pub redis: RedisNode,
    /// Gateway groups; group `g` with `count = n` adds n hosts `gateway-<i>` in order.
    pub gateways: Vec<GatewayGroup>,
    /// The limit every gateway enforces.
    pub limit: Limit,
    /// The open-loop load, shared evenly by all gateways.
    pub load: Load,
    /// The model API behind the gateways.
    #[serde(default)]
    pub upstream: Upstream,
    /// Scheduled faults, fired by the harness at their time.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Runs the scenario through a clock `time_scale` times slower: every duration (latencies,
    /// windows, timeouts, fault times, the run's length, the load's gaps) is multiplied by it
    /// and the recorded decision latencies are divided by it again, so that a one-way latency
    /// below the simulation's 1 ms tick (`network.min_latency_us`) can be run. `None`: derived
    /// from the µs latencies (the smallest scale that makes them whole ms), else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<u64>,
}

/// Largest `time_scale` accepted (the scaled run takes that many more turmoil steps).
pub const TIME_SCALE_MAX: u64 = 100;

/// Link latency for every message (turmoil's `min/max_message_latency`), and per-link
/// latency distributions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Smallest one-way latency, ms.
    pub min_latency_ms: u64,
    /// Largest one-way latency, ms (turmoil draws in between, exponentially).
    pub max_latency_ms: u64,
    /// How often each `links` entry draws a new latency, simulated ms. turmoil gives a link
    /// one latency, not a distribution, so the harness samples the distribution every
    /// `resample_ms` and sets the link's latency to the draw until the next one.
    pub resample_ms: u64,
    /// Links whose latency follows their own distribution instead of the network's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkLatencySpec>,
    /// Smallest one-way latency in µs, instead of `min_latency_ms` (give both µs fields or
    /// neither). A latency that is not a whole ms runs time-scaled (see `time_scale`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_latency_us: Option<u64>,
    /// Largest one-way latency in µs, instead of `max_latency_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_us: Option<u64>,
}

/// Default `network.resample_ms`: a new draw every 10 simulated ms.
pub const RESAMPLE_MS_DEFAULT: u64 = 10;

impl Default for Network {
    fn default() -> Network {
        Network {
            min_latency_ms: 1,
            max_latency_ms: 1,
            resample_ms: RESAMPLE_MS_DEFAULT,
            links: Vec::new(),
            min_latency_us: None,
            max_latency_us: None,
        }
    }
}

/// One link's latency distribution (both directions), resampled every
/// `network.resample_ms` from the link's own seeded stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkLatencySpec {
    /// One end (`redis-<i>` or `gateway-<i>`).
    pub a: String,
    /// The other end.
    pub b: String,
    /// The one-way latency distribution, ms.
    pub latency: Latency,
}

/// Largest clock drift accepted, parts per million (a clock at most twice as fast, or
/// stopped).
pub const DRIFT_PPM_MAX: u64 = 1_000_000;

/// The Redis node (or nodes: see `topology`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisNode {
    /// Added to true time for everything the node sees as time (TIME, expiry), ms.
    pub clock_offset_ms: i64,
    /// One node, a primary with replicas, or a cluster of shards.
    pub topology: Topology,
    /// Replicated: how many replicas (`redis-1..=redis-<replicas>`).
    pub replicas: u32,
    /// Replicated: how long a write takes to reach the replicas, ms. Writes a replica has not
    /// received when it is promoted are lost.
    pub replication_lag_ms: u64,
    /// Cluster: how many shards (`redis-0..redis-<shards - 1>`), each owning an equal slot
    /// range.
    pub shards: u32,
    /// Every Redis node's clock drift, parts per million: the offset grows by
    /// `drift_ppm * elapsed / 10^6` (positive: the clock runs fast).
    pub drift_ppm: i64,
}

impl Default for RedisNode {
    fn default() -> RedisNode {
        RedisNode {
            clock_offset_ms: 0,
            topology: Topology::Standalone,
            replicas: 1,
            replication_lag_ms: 0,
            shards: 3,
            drift_ppm: 0,
        }
    }
}

/// Most replicas, or shards, one run may have.
pub const REDIS_NODES_MAX: u32 = 16;

/// How the Redis nodes are arranged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// One node, `redis-0`.
    #[default]
    Standalone,
    /// A primary `redis-0` and replicas that apply its writes `replication_lag_ms` later; a
    /// `failover` fault promotes `redis-1`.
    Replicated,
    /// `shards` nodes, each owning a slot range; gateways route by slot and follow MOVED.
    Cluster,
}

impl RedisNode {
    /// The Redis hosts' names, `redis-0` first.
    pub fn hosts(&self) -> Vec<String> {
        let count = match self.topology {
            Topology::Standalone => 1,
            Topology::Replicated => 1 + self.replicas,
            Topology::Cluster => self.shards,
        };
        (0..count).map(|index| format!("redis-{index}")).collect()
    }
}

/// Which limiter a gateway runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimiterKind {
    /// new-api path A: the IP list log (LLEN, LINDEX, LPUSH, LTRIM, EXPIRE); stated bound L
    /// per window; window in whole seconds.
    LegacyIpList,
    /// new-api path C: success list (C1, M = `limit.limit`) then token bucket (C2, N =
    /// `limit.total`, 0 = off), success recorded after the upstream call; window in whole
    /// minutes.
    LegacyModelRequest,
    /// new-api path C2 alone: the token bucket script by EVALSHA, no NOSCRIPT fallback; N =
    /// `limit.limit` per window of whole minutes.
    LegacyTokenBucket,
    /// The atomic GCRA script: burst L, one unit every window/L.
    AtomicGcra,
    /// The atomic fixed window script: L per aligned window.
    AtomicFixedWindow,
    /// The atomic sliding log script: L per trailing window.
    AtomicSlidingLog,
    /// The atomic token bucket script: burst L, one unit every window/L.
    AtomicTokenBucket,
    /// The atomic success limit by reservation: M = `limit.limit` successes per window.
    SuccessReservation,
    /// new-api's in-memory sliding log (`common/rate-limit.go`, path A in memory mode): one
    /// store per gateway, swept every `memory_cleanup_ms` (new-api: 20 min); L per window of
    /// whole seconds, per gateway.
    LegacyMemoryList,
    /// The sharded in-process GCRA (`MemoryLimiter`): burst L, one unit every window/L, per
    /// gateway; its sweep only drops keys whose state equals a fresh key's.
    MemoryGcra,
    /// new-api path D (email verification): INCR, then EXPIRE in a second round trip when
    /// the count is 1; L per window of whole seconds from the key's first request.
    LegacyEmail,
    /// The atomic sliding window counter (`lua/sliding_window.lua`): L per aligned window
    /// (Redis clock), so at most 2L in any trailing window.
    AtomicSlidingWindow,
    /// The fixed window without Lua (`PipelinedFixedWindow`): INCRBY and PEXPIRE in one
    /// pipeline on a key named by the gateway clock's window; L per aligned window of the
    /// gateway clock, so 2L in any trailing window when the gateways' clocks agree.
    PipelinedFixedWindow,
    /// The merged multi-limit script (`MultiLimiter`, `lua/multi_limit.lua`): every GCRA
    /// limit in `gateways.limits` (for example global, per-user and per-model keys under one
    /// hash tag) checked and consumed all or nothing in one call; each limit's key within
    /// its own B + ⌊Δ/T⌋.
    MultiLimit,
    /// The sharded counter (`ShardedLimiter` over GCRA): one limit split over
    /// `gateways.key_shards` keys (shard i gets ⌊L/N⌋, plus one for i < L mod N, and
    /// interval N·T), visited round robin, a refused request tried once on the next shard;
    /// the shares add up to the whole, so B + ⌊Δ/T⌋ per logical key.
    ShardedGcra,
    /// The hybrid (`HybridLimiter`): a deny cache and a local GCRA pre-check (burst + 20 %)
    /// per gateway in front of the atomic GCRA script, the authority. Its local parts only
    /// deny, so its bound is the authority's: B + ⌊Δ/T⌋.
    HybridGcra,
    /// new-api path B (`userRedisRateLimiter`): path A's list log on the user's key
    /// (`rateLimit:SR:user:<id>`, user ids from 1: id 0 is new-api's 401); stated bound L
    /// per window; window in whole seconds.
    LegacyUserList,
}

impl LimiterKind {
    /// Every kind, for swarm draws (the swarm draws the first [`LimiterKind::SWARM_FIRST`]
    /// first and the rest last, so that adding kinds kept the earlier seeds' scenarios).
    /// `LegacyUserList` is left out: it is path A's code on another key (the swarm draws
    /// path A), and adding a kind would change every later seed's draws.
    pub const ALL: [LimiterKind; 16] = [
        LimiterKind::LegacyIpList,
        LimiterKind::LegacyModelRequest,
        LimiterKind::LegacyTokenBucket,
        LimiterKind::AtomicGcra,
        LimiterKind::AtomicFixedWindow,
        LimiterKind::AtomicSlidingLog,
        LimiterKind::AtomicTokenBucket,
        LimiterKind::SuccessReservation,
        LimiterKind::LegacyMemoryList,
        LimiterKind::MemoryGcra,
        LimiterKind::LegacyEmail,
        LimiterKind::AtomicSlidingWindow,
        LimiterKind::PipelinedFixedWindow,
        LimiterKind::MultiLimit,
        LimiterKind::ShardedGcra,
        LimiterKind::HybridGcra,
    ];

    /// How many of [`LimiterKind::ALL`] the swarm's first draw picks from.
    pub const SWARM_FIRST: usize = 11;

    /// Whether its decisions depend on the gateway's clock, so that a gateway clock step
    /// lets it start over (new-api's limiters and the pipelined fixed window, whose key
    /// names the gateway's window).
    pub fn uses_gateway_clock(self) -> bool {
        self.is_legacy() || self == LimiterKind::PipelinedFixedWindow
    }

    /// Whether the limit counts successes (reported after the upstream call).
    pub fn counts_successes(self) -> bool {
        matches!(
            self,
            LimiterKind::LegacyModelRequest | LimiterKind::SuccessReservation
        )
    }

    /// Whether it is one of new-api's limiters (gateway-clock stamps, whole-second windows).
    pub fn is_legacy(self) -> bool {
        matches!(
            self,
            LimiterKind::LegacyIpList
                | LimiterKind::LegacyUserList
                | LimiterKind::LegacyModelRequest
                | LimiterKind::LegacyTokenBucket
                | LimiterKind::LegacyMemoryList
                | LimiterKind::LegacyEmail
        )
    }

    /// Whether it keeps its state in the gateway's process, not in Redis.
    pub fn is_in_memory(self) -> bool {
        matches!(
            self,
            LimiterKind::LegacyMemoryList | LimiterKind::MemoryGcra
        )
    }
}

/// What a gateway does when its limiter cannot decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailModeSetting {
    /// Admit (counted as fail-open, outside the bound).
    Open,
    /// Refuse with a 5xx (new-api's behaviour).
    Closed,
}

/// One group of identical gateways.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayGroup {
    /// How many gateways of this kind.
    #[serde(default = "one")]
    pub count: u32,
    /// The limiter they run.
    pub limiter: LimiterKind,
    /// Key template for the atomic limiters (fields `$ns`, `$user`, `$ip`, `$group`,
    /// `$model`); `None` uses `rl:$ns:{u:$user}`. Legacy limiters always use new-api's keys.
    #[serde(default)]
    pub key_scheme: Option<String>,
    /// The connection pool.
    #[serde(default)]
    pub pool: Pool,
    /// What to do when the limiter cannot decide.
    #[serde(default = "closed")]
    pub fail_mode: FailModeSetting,
    /// Added to true time for the gateway's clock (the `now_ms` legacy limiters stamp), ms.
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// The gateway's zone east of UTC, seconds (new-api writes local time with a literal Z).
    #[serde(default)]
    pub tz_offset_s: i64,
    /// In-memory limiters: how often the gateway sweeps its store, ms (for
    /// `legacy_memory_list` also the idle age after which a key is dropped, new-api's
    /// `expirationDuration`). `None`: new-api's 20 minutes. Scaled down, it shows race R11
    /// in a short run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_cleanup_ms: Option<u64>,
    /// The user group these gateways serve (`$group` in key templates); `None`: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// This group's own L (new-api's per-group override of `limit.limit`); `None`: the
    /// scenario's. When any group sets it, the checker judges each group's admissions
    /// against its own bound (`group_admissions_within_bound`) instead of the first group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The gateways' clock drift, parts per million: each one's clock offset grows by
    /// `drift_ppm * elapsed / 10^6` on top of `clock_offset_ms` and clock steps (positive:
    /// the clock runs fast).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drift_ppm: i64,
    /// What the atomic script limiters do after NOSCRIPT.
    #[serde(default, skip_serializing_if = "ScriptReload::is_default")]
    pub script_reload: ScriptReload,
    /// `sharded_gcra`: how many keys the limit is split over (`$shard` in the key
    /// template); `None`: [`KEY_SHARDS_DEFAULT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_shards: Option<u32>,
    /// `multi_limit`: the limits its one script checks, each a key template and its L per
    /// `limit.window_ms` (a GCRA rate: burst L, one unit every window/L). Required for
    /// `multi_limit`, refused for every other kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<MultiLimitSpec>,
}

/// Default `gateways.key_shards`.
pub const KEY_SHARDS_DEFAULT: u32 = 4;

/// Most `gateways.key_shards` (and most `gateways.limits` entries).
pub const KEY_SHARDS_MAX: u32 = 16;

/// The default key template of `sharded_gcra`: each shard its own hash tag, so that on a
/// cluster the shards spread over slots.
pub const SHARDED_SCHEME_DEFAULT: &str = "rl:$ns:{u:$user:$shard}";

/// One limit of a `multi_limit` gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiLimitSpec {
    /// Its key template (`$ns`, `$user`, `$ip`, `$group`, `$model`). On a cluster every
    /// limit's key of one request must share a hash tag (e.g. `{$group}`), or the script
    /// fails with CROSSSLOT.
    pub key_scheme: String,
    /// Its L per `limit.window_ms`.
    pub limit: u64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// What a gateway's atomic script limiters do when Redis has lost its script cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptReload {
    /// go-redis's `Script.Run`: EVALSHA, then EVAL on NOSCRIPT (two trips through the pool).
    #[default]
    EvalshaThenEval,
    /// After a NOSCRIPT, EVAL first (one trip) until an EVAL is answered; shared by the
    /// gateway's limiters (`ratelab::redis::Reload::EvalUntilLoaded`).
    EvalUntilLoaded,
    /// Redis Functions: FCALL, and FUNCTION LOAD REPLACE of the library of every `lua/`
    /// script on "Function not found" (`ratelab::redis::Reload::Fcall`).
    Fcall,
}

impl ScriptReload {
    fn is_default(&self) -> bool {
        *self == ScriptReload::default()
    }
}

/// new-api's in-memory sweep period and idle age (`Init(20 min)`), ms.
pub const MEMORY_CLEANUP_MS_DEFAULT: u64 = 1_200_000;

impl GatewayGroup {
    /// The in-memory sweep period, ms.
    pub fn memory_cleanup_ms(&self) -> u64 {
        self.memory_cleanup_ms.unwrap_or(MEMORY_CLEANUP_MS_DEFAULT)
    }

    /// `sharded_gcra`'s shard count.
    pub fn key_shards(&self) -> u32 {
        self.key_shards.unwrap_or(KEY_SHARDS_DEFAULT)
    }
}

fn one() -> u32 {
    1
}

fn closed() -> FailModeSetting {
    FailModeSetting::Closed
}

/// A go-redis-like connection pool. The defaults are go-redis v8's as new-api configures
/// them (pool 10, pool timeout 4 s, read timeout 3 s, dial 5 s, 3 retries, 8-512 ms backoff).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// Most connections open at once.
    pub size: u32,
    /// How long a command waits for a free connection before failing, ms.
    pub pool_timeout_ms: u64,
    /// How long one command waits for its reply, ms.
    pub read_timeout_ms: u64,
    /// How long a connect may take, ms.
    pub dial_timeout_ms: u64,
    /// Retries after a transport error or timeout (go-redis `MaxRetries`).
    pub retries: u32,
    /// First retry backoff, ms; doubled per retry.
    pub backoff_min_ms: u64,
    /// Largest retry backoff, ms.
    pub backoff_max_ms: u64,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            size: 10,
            pool_timeout_ms: 4_000,
            read_timeout_ms: 3_000,
            dial_timeout_ms: 5_000,
            retries: 3,
            backoff_min_ms: 8,
            backoff_max_ms: 512,
        }
    }
}

impl Pool {
    /// The longest one command can take before it fails for good: pool wait, then each
    /// attempt's dial and read timeouts and the backoffs between them.
    pub fn worst_command_ms(&self) -> u64 {
        let attempts = u64::from(self.retries) + 1;
        let backoff: u64 = (0..self.retries)
            .map(|retry| self.backoff_ms(retry))
            .sum::<u64>();
        self.pool_timeout_ms
            .saturating_add(attempts.saturating_mul(self.dial_timeout_ms + self.read_timeout_ms))
            .saturating_add(backoff)
    }

    /// The backoff before retry number `retry` (0-based).
    pub fn backoff_ms(&self, retry: u32) -> u64 {
        self.backoff_min_ms
            .saturating_mul(1u64 << retry.min(20))
            .min(self.backoff_max_ms)
    }
}

/// The limit every gateway enforces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// L (or M for success limits, N for the legacy token bucket): units per window.
    pub limit: u64,
    /// The window, ms. Legacy IP lists need whole seconds, legacy model limits whole minutes.
    pub window_ms: u64,
    /// The legacy model request limit's total N (its token bucket); 0 turns it off.
    #[serde(default)]
    pub total: u64,
    /// How long a success reservation lives without completion, ms; `None`: twice the
    /// upstream's longest latency plus the pool's worst command time (so no lease expires
    /// before its request completes, the reservation bound's condition).
    #[serde(default)]
    pub lease_ms: Option<u64>,
}

/// How arrivals are spaced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Equal gaps.
    Steady,
    /// `size` requests at once, then a gap that keeps the average rate.
    Bursts {
        /// Requests per burst.
        size: u32,
    },
}

/// Which key a request uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Popularity {
    /// Every key equally likely.
    Uniform,
    /// Key k (0-based) with weight 1/(k+1)^s.
    Zipf {
        /// The skew; 0 is uniform, 1 is classic Zipf.
        s: f64,
    },
    /// Key 0 with probability `share`, the others uniformly.
    Hot {
        /// Share of requests on the hot key, in [0, 1].
        share: f64,
    },
}

/// The open-loop load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Requests per simulated second, all gateways together.
    pub rate_per_s: f64,
    /// How arrivals are spaced.
    #[serde(default = "poisson")]
    pub arrivals: Arrivals,
    /// Distinct keys (users or IPs).
    #[serde(default = "one_u64")]
    pub keys: u64,
    /// How keys are drawn.
    #[serde(default = "uniform")]
    pub popularity: Popularity,
    /// Units per request.
    #[serde(default = "one_u64")]
    pub cost: u64,
    /// Which limit each request falls under (IP, user, model), by weight; `None`: every
    /// request is the same kind, keyed as before mixes existed (logical keys `k<n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<Mix>,
}

/// Which kind of limit a request falls under: the identity its key stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A limit per client IP (new-api's path A).
    Ip,
    /// A limit per user.
    User,
    /// A limit per model.
    Model,
}

impl IdentityKind {
    /// Every kind, in the order a mix lists them.
    pub const ALL: [IdentityKind; 3] = [IdentityKind::Ip, IdentityKind::User, IdentityKind::Model];

    /// The kind's name: its field in `load.mix`, its key namespace, its logical-key prefix.
    pub fn name(self) -> &'static str {
        match self {
            IdentityKind::Ip => "ip",
            IdentityKind::User => "user",
            IdentityKind::Model => "model",
        }
    }

    /// A small number per kind (0, 1, 2), for address ranges.
    pub fn index(self) -> u64 {
        match self {
            IdentityKind::Ip => 0,
            IdentityKind::User => 1,
            IdentityKind::Model => 2,
        }
    }
}

/// Weights of the limit kinds in the load: a request is of kind `ip` with probability
/// `ip / (ip + user + model)`, and so on. Each is finite and non-negative; one is positive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    /// Weight of requests limited per client IP.
    pub ip: f64,
    /// Weight of requests limited per user.
    pub user: f64,
    /// Weight of requests limited per model.
    pub model: f64,
}

impl Mix {
    /// The weight of `kind`.
    pub fn weight(&self, kind: IdentityKind) -> f64 {
        match kind {
            IdentityKind::Ip => self.ip,
            IdentityKind::User => self.user,
            IdentityKind::Model => self.model,
        }
    }

    /// Checks the weights, naming the offending field (`load.mix.ip`).
    fn validate(&self) -> Result<(), ScenarioError> {
        for kind in IdentityKind::ALL {
            let weight = self.weight(kind);
            if !(weight.is_finite() && (0.0..=1e12).contains(&weight)) {
                return Err(problem(
                    format!("load.mix.{}", kind.name()),
                    format!("must be a weight in [0, 1e12] (got {weight})"),
                ));
            }
        }
        if IdentityKind::ALL
            .iter()
            .all(|&kind| self.weight(kind) == 0.0)
        {
            return Err(problem("load.mix", "at least one weight must be positive"));
        }
        Ok(())
    }

    /// Draws one request's kind: one uniform draw from `rng`, mapped onto the cumulative
    /// weights; a zero weight is never drawn.
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> IdentityKind {
        let total: f64 = IdentityKind::ALL
            .iter()
            .map(|&kind| self.weight(kind))
            .sum();
        let target = rng.random::<f64>() * total;
        let mut cumulative = 0.0;
        let mut last = IdentityKind::Ip;
        for kind in IdentityKind::ALL {
            let weight = self.weight(kind);
            if weight <= 0.0 {
                continue;
            }
            cumulative += weight;
            last = kind;
            if target < cumulative {
                return kind;
            }
        }
        // Rounding can leave the target at the total: the last positive kind takes it.
        last
    }
}

fn poisson() -> Arrivals {
    Arrivals::Poisson
}

fn uniform() -> Popularity {
    Popularity::Uniform
}

fn one_u64() -> u64 {
    1
}

/// A latency distribution, ms. Every draw is capped at `SPAN_MS_MAX`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always `ms`.
    Fixed {
        /// The latency.
        ms: u64,
    },
    /// Uniform in `[min_ms, max_ms]`.
    Uniform {
        /// Smallest.
        min_ms: u64,
        /// Largest.
        max_ms: u64,
    },
    /// Exponential with mean `mean_ms`, capped at `max_ms`.
    Exponential {
        /// The mean.
        mean_ms: u64,
        /// The cap.
        max_ms: u64,
    },
    /// Lognormal with median `median_ms` and shape `sigma`, capped at `max_ms` (streaming
    /// responses: mostly short, a long tail).
    Lognormal {
        /// The median.
        median_ms: u64,
        /// The shape (standard deviation of the log).
        sigma: f64,
        /// The cap.
        max_ms: u64,
    },
}

impl Latency {
    /// The longest latency this distribution can draw.
    pub fn max_ms(&self) -> u64 {
        match self {
            Latency::Fixed { ms } => *ms,
            Latency::Uniform { max_ms, .. }
            | Latency::Exponential { max_ms, .. }
            | Latency::Lognormal { max_ms, .. } => *max_ms,
        }
    }

    /// The distribution with every ms value multiplied by `k`.
    pub fn scaled(&self, k: u64) -> Latency {
        let ms = |value: u64| value.saturating_mul(k);
        match *self {
            Latency::Fixed { ms: value } => Latency::Fixed { ms: ms(value) },
            Latency::Uniform { min_ms, max_ms } => Latency::Uniform {
                min_ms: ms(min_ms),
                max_ms: ms(max_ms),
            },
            Latency::Exponential { mean_ms, max_ms } => Latency::Exponential {
                mean_ms: ms(mean_ms),
                max_ms: ms(max_ms),
            },
            Latency::Lognormal {
                median_ms,
                sigma,
                max_ms,
            } => Latency::Lognormal {
                median_ms: ms(median_ms),
                sigma,
                max_ms: ms(max_ms),
            },
        }
    }

    /// Draws one latency.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        match self {
            Latency::Fixed { ms } => *ms,
            Latency::Uniform { min_ms, max_ms } => rng.random_range(*min_ms..=*max_ms),
            Latency::Exponential { mean_ms, max_ms } => {
                let draw = exponential(rng) * *mean_ms as f64;
                (draw as u64).min(*max_ms)
            }
            Latency::Lognormal {
                median_ms,
                sigma,
                max_ms,
            } => {
                let draw = *median_ms as f64 * (sigma * standard_normal(rng)).exp();
                // `as` saturates (NaN to 0), so any draw lands in range.
                (draw as u64).min(*max_ms)
            }
        }
    }
}

/// A unit-mean exponential draw.
pub fn exponential(rng: &mut ChaCha8Rng) -> f64 {
    // 1 - u is in (0, 1], so the log is finite.
    let u: f64 = rng.random();
    -(1.0 - u).ln()
}

/// The time from one arrival to the next, µs, at `rate_per_us`: exponential for Poisson,
/// constant for steady, and for bursts `size` arrivals at once then a gap worth all of them
/// (`in_burst` counts the burst so far). The harness and `shardcheck`'s traffic both draw
/// arrivals through this, so they see the same requests from one seed.
pub fn arrival_gap_us(
    arrivals: &Arrivals,
    rng: &mut ChaCha8Rng,
    rate_per_us: f64,
    in_burst: &mut u32,
) -> f64 {
    match arrivals {
        Arrivals::Poisson => exponential(rng) / rate_per_us,
        Arrivals::Steady => 1.0 / rate_per_us,
        Arrivals::Bursts { size } => {
            *in_burst += 1;
            if *in_burst >= *size {
                *in_burst = 0;
                f64::from(*size) / rate_per_us
            } else {
                0.0
            }
        }
    }
}

/// A standard normal draw (Box-Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The model API behind the gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// How long a call takes.
    pub latency: Latency,
    /// Probability that a call fails (status ≥ 400: not a success).
    pub error_rate: f64,
}

impl Default for Upstream {
    fn default() -> Upstream {
        Upstream {
            latency: Latency::Fixed { ms: 20 },
            error_rate: 0.0,
        }
    }
}

/// One scheduled fault. (Unknown fields are refused by [`FaultKind`], which receives every
/// field but `at_ms`: serde cannot deny unknown fields on a struct that flattens.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// When it fires, simulated ms from the start.
    pub at_ms: u64,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// What a fault does. Host names are `redis-0` and `gateway-<i>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// Cut the link between `a` and `b` (only `a` → `b` when `oneway`) for `duration_ms`.
    Partition {
        /// One end.
        a: String,
        /// The other end.
        b: String,
        /// Only messages from `a` to `b` are lost.
        #[serde(default)]
        oneway: bool,
        /// How long until the link is repaired.
        duration_ms: u64,
    },
    /// Hold every message between `a` and `b` for `duration_ms`, then deliver them.
    Hold {
        /// One end.
        a: String,
        /// The other end.
        b: String,
        /// How long until release.
        duration_ms: u64,
    },
    /// Crash `redis-0` and start it again at once. What the new process finds is what its
    /// `persistence` had made durable by then (nothing without persistence); the script
    /// cache is always lost.
    RedisRestart {
        /// What survives: `none` (the default), `aof_always`, `aof_everysec` or `rdb`.
        #[serde(default, skip_serializing_if = "Persistence::is_none")]
        persistence: Persistence,
        /// `rdb` only (and required there): a snapshot every this many ms of simulated time
        /// from the start (Redis's `save` interval).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rdb_every_ms: Option<u64>,
    },
    /// Step a host's clock by `step_ms` (negative: backwards) from now on.
    ClockStep {
        /// `redis-0` or `gateway-<i>`.
        host: String,
        /// The step.
        step_ms: i64,
    },
    /// FLUSHALL on `redis-0` (as an operator or `maxmemory` eviction would drop keys): data
    /// lost, scripts kept, the node healthy throughout (race R7).
    Flush {},
    /// Replicated topology: the primary `redis-0` dies and `redis-1` is promoted. Gateways
    /// dial `redis-1` from now on (pooled connections to `redis-0` break); its script cache
    /// is empty, and the writes it had not received yet are lost.
    Failover {},
    /// Set the one-way latency between `a` and `b` to `latency_ms` from now on.
    LinkLatency {
        /// One end.
        a: String,
        /// The other end.
        b: String,
        /// The new latency.
        latency_ms: u64,
    },
    /// Crash gateway `host`'s process and start it again: its in-flight requests die (no
    /// decision or completion is logged for them; what they already sent to Redis stays
    /// done), its pool's connections close, and the new process starts with empty
    /// in-memory limiters and a fresh script loader. For `down_ms` it takes no requests: the
    /// arrivals it would have had in that span are not generated (a load balancer routes
    /// around a dead gateway; the others' load does not grow).
    GatewayRestart {
        /// `gateway-<i>`.
        host: String,
        /// How long the gateway is down before the new process takes requests, ms.
        #[serde(default)]
        down_ms: u64,
    },
}

/// How a Redis node keeps its data across a restart (Redis's `appendonly`/`appendfsync` and
/// `save`). A restart here is the loss of the machine's memory (power loss, a VM killed): what
/// survives is what reached the disk by the last fsync or snapshot. (A crash of the process
/// alone loses less under `aof_everysec`: Redis writes the AOF before it replies, and the
/// kernel's page cache outlives the process; only an OS crash loses the unsynced second.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    /// No persistence (`appendonly no`, no `save`): the node restarts empty.
    #[default]
    None,
    /// `appendfsync always`: every write is fsynced before its reply; every acknowledged
    /// write survives.
    AofAlways,
    /// `appendfsync everysec`: one fsync per second; the state as of the last whole second
    /// of simulated time survives, the writes after it are lost.
    AofEverysec,
    /// RDB snapshots every `rdb_every_ms`: the last snapshot survives.
    Rdb,
}

impl Persistence {
    /// Whether this is the default, `none` (left out when a scenario is written back).
    pub fn is_none(&self) -> bool {
        *self == Persistence::None
    }
}

/// How often `aof_everysec` fsyncs, ms.
pub const AOF_FSYNC_EVERY_MS: u64 = 1_000;

/// What a Redis restart at `at_ms` brings back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Nothing: the node restarts empty.
    Nothing,
    /// Every write up to the restart.
    Everything,
    /// The state as of `synced_at_ms` (simulated ms), the last fsync or snapshot at or before
    /// the restart; the writes after it are lost.
    AsOf {
        /// When the kept state was made durable.
        synced_at_ms: u64,
    },
}

impl FaultKind {
    /// For a Redis restart, how often its persistence makes the state durable (ms), when it
    /// does so periodically (`aof_everysec`, `rdb`).
    pub fn sync_every_ms(&self) -> Option<u64> {
        match self {
            // A time-scaled scenario carries the scaled fsync period in `rdb_every_ms`
            // (`Scenario::scaled`; a file may not set it for AOF).
            FaultKind::RedisRestart {
                persistence: Persistence::AofEverysec,
                rdb_every_ms,
            } => Some(rdb_every_ms.unwrap_or(AOF_FSYNC_EVERY_MS)),
            FaultKind::RedisRestart {
                persistence: Persistence::Rdb,
                rdb_every_ms,
            } => *rdb_every_ms,
            _ => None,
        }
    }

    /// For a Redis restart at `at_ms`, what its persistence brings back (`None` for other
    /// faults). Periodic syncs happen at every multiple of the interval from 0, the restart's
    /// own instant included: the harness takes the copy before it applies the fault.
    pub fn durability(&self, at_ms: u64) -> Option<Durability> {
        let FaultKind::RedisRestart { persistence, .. } = self else {
            return None;
        };
        Some(match persistence {
            Persistence::None => Durability::Nothing,
            Persistence::AofAlways => Durability::Everything,
            Persistence::AofEverysec | Persistence::Rdb => {
                let every = self.sync_every_ms().unwrap_or(AOF_FSYNC_EVERY_MS).max(1);
                Durability::AsOf {
                    synced_at_ms: at_ms / every * every,
                }
            }
        })
    }

    /// How long the fault makes Redis unhealthy for someone, from its firing (0 for faults
    /// that do not: a clock step, a latency change).
    pub fn outage_ms(&self) -> u64 {
        match self {
            FaultKind::Partition { duration_ms, .. } | FaultKind::Hold { duration_ms, .. } => {
                *duration_ms
            }
            FaultKind::RedisRestart { .. } | FaultKind::Failover {} => 1,
            // A gateway restart leaves Redis healthy.
            FaultKind::ClockStep { .. }
            | FaultKind::LinkLatency { .. }
            | FaultKind::Flush {}
            | FaultKind::GatewayRestart { .. } => 0,
        }
    }
}

/// A scenario the harness cannot run: which field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The field's path, as in the file (`gateways[0].pool.size`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ScenarioError {}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> ScenarioError {
    ScenarioError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks a latency distribution found at `field` (`upstream.latency`).
fn validate_latency(field: &str, latency: &Latency) -> Result<(), ScenarioError> {
    at_most(&format!("{field}.max_ms"), latency.max_ms(), SPAN_MS_MAX)?;
    match latency {
        Latency::Uniform { min_ms, max_ms } if min_ms > max_ms => Err(problem(
            format!("{field}.min_ms"),
            format!("must not exceed {field}.max_ms"),
        )),
        Latency::Lognormal { sigma, .. } if !(0.0..=5.0).contains(sigma) => {
            Err(problem(format!("{field}.sigma"), "must be in [0, 5]"))
        }
        _ => Ok(()),
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn at_most(field: &str, value: u64, max: u64) -> Result<(), ScenarioError> {
    if value > max {
        return Err(problem(
            field,
            format!("must be at most {max} (got {value})"),
        ));
    }
    Ok(())
}

impl Scenario {
    /// Parses and validates TOML. A syntax or type error names the line and the key (toml's
    /// message); a value error names the field.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text)
            .map_err(|error| problem("scenario", error.to_string().trim_end().to_owned()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The scenario as TOML (printed before a run; it parses back to the same scenario).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|error| format!("# not printable as TOML: {error}"))
    }

    /// Total number of gateways.
    pub fn gateway_count(&self) -> u32 {
        self.gateways.iter().map(|group| group.count).sum()
    }

    /// The group of gateway `index` (0-based over all groups).
    pub fn gateway_group(&self, index: u32) -> Option<&GatewayGroup> {
        let mut first = 0;
        for group in &self.gateways {
            if index < first + group.count {
                return Some(group);
            }
            first += group.count;
        }
        None
    }

    /// The index of the group gateway `index` belongs to.
    pub fn group_index(&self, index: u32) -> Option<usize> {
        let mut first = 0;
        for (group_index, group) in self.gateways.iter().enumerate() {
            if index < first + group.count {
                return Some(group_index);
            }
            first += group.count;
        }
        None
    }

    /// Whether some group overrides the limit (per-group quotas, race R5).
    pub fn has_group_limits(&self) -> bool {
        self.gateways.iter().any(|group| group.limit.is_some())
    }

    /// The scenario as group `group` sees it: its own limit in `limit.limit`.
    pub fn for_group(&self, group: &GatewayGroup) -> Scenario {
        let mut scenario = self.clone();
        if let Some(limit) = group.limit {
            scenario.limit.limit = limit;
        }
        scenario
    }

    /// The longest one pooled command may take in any gateway group (dial, write, read):
    /// what a request waits for a command before its pool gives up.
    pub fn worst_command_ms(&self) -> u64 {
        self.gateways
            .iter()
            .map(|group| group.pool.worst_command_ms())
            .max()
            .unwrap_or(0)
    }

    /// The reservation lease used by `success_reservation`.
    pub fn lease_ms(&self) -> u64 {
        self.limit.lease_ms.unwrap_or_else(|| {
            let worst_pool = self.worst_command_ms();
            2 * self.upstream.latency.max_ms() + worst_pool + 1_000
        })
    }

    /// The time scale k the scenario runs at: `time_scale`, else the smallest k that makes
    /// the µs latencies whole ms (1000 / gcd(1000, µs)), else 1.
    pub fn time_scale(&self) -> u64 {
        if let Some(scale) = self.time_scale {
            return scale;
        }
        match (self.network.min_latency_us, self.network.max_latency_us) {
            (None, None) => 1,
            (min, max) => {
                let us = gcd(min.unwrap_or(0), max.unwrap_or(0));
                1_000 / gcd(1_000, us)
            }
        }
    }

    /// The same run seen through a clock [`Scenario::time_scale`] times slower, as the
    /// harness runs it: every field with a time unit multiplied by k (µs latencies turned into
    /// the whole ms they then are; defaults that hold a duration made explicit and scaled),
    /// the load's rate divided by k, and `time_scale` 1. At k = 1 (no µs latencies) it is the
    /// scenario itself. Call on a validated scenario.
    pub fn scaled(&self) -> Scenario {
        let k = self.time_scale();
        let micros = self.network.min_latency_us.is_some() || self.network.max_latency_us.is_some();
        if k == 1 && !micros {
            let mut same = self.clone();
            same.time_scale = None;
            return same;
        }
        let ms = |value: u64| value.saturating_mul(k);
        let signed = |value: i64| value.saturating_mul(k as i64);
        let mut out = self.clone();
        out.time_scale = None;
        out.duration_ms = ms(self.duration_ms);
        let network = &mut out.network;
        network.min_latency_ms = match self.network.min_latency_us {
            Some(us) => us.saturating_mul(k) / 1_000,
            None => ms(self.network.min_latency_ms),
        };
        network.max_latency_ms = match self.network.max_latency_us {
            Some(us) => us.saturating_mul(k) / 1_000,
            None => ms(self.network.max_latency_ms),
        };
        network.min_latency_us = None;
        network.max_latency_us = None;
        network.resample_ms = ms(self.network.resample_ms);
        for link in &mut network.links {
            link.latency = link.latency.scaled(k);
        }
        out.redis.clock_offset_ms = signed(self.redis.clock_offset_ms);
        out.redis.replication_lag_ms = ms(self.redis.replication_lag_ms);
        for group in &mut out.gateways {
            group.clock_offset_ms = signed(group.clock_offset_ms);
            group.tz_offset_s = signed(group.tz_offset_s);
            group.memory_cleanup_ms = Some(ms(group.memory_cleanup_ms()));
            let pool = &mut group.pool;
            pool.pool_timeout_ms = ms(pool.pool_timeout_ms);
            pool.read_timeout_ms = ms(pool.read_timeout_ms);
            pool.dial_timeout_ms = ms(pool.dial_timeout_ms);
            pool.backoff_min_ms = ms(pool.backoff_min_ms);
            pool.backoff_max_ms = ms(pool.backoff_max_ms);
        }
        out.limit.window_ms = ms(self.limit.window_ms);
        out.limit.lease_ms = Some(ms(self.lease_ms()));
        out.load.rate_per_s = self.load.rate_per_s / k as f64;
        out.upstream.latency = self.upstream.latency.scaled(k);
        for fault in &mut out.faults {
            fault.at_ms = ms(fault.at_ms);
            match &mut fault.kind {
                FaultKind::Partition { duration_ms, .. } | FaultKind::Hold { duration_ms, .. } => {
                    *duration_ms = ms(*duration_ms);
                }
                FaultKind::RedisRestart {
                    persistence,
                    rdb_every_ms,
                } => {
                    if *persistence == Persistence::AofEverysec {
                        *rdb_every_ms = Some(AOF_FSYNC_EVERY_MS);
                    }
                    *rdb_every_ms = rdb_every_ms.map(ms);
                }
                FaultKind::ClockStep { step_ms, .. } => *step_ms = signed(*step_ms),
                FaultKind::LinkLatency { latency_ms, .. } => *latency_ms = ms(*latency_ms),
                FaultKind::GatewayRestart { down_ms, .. } => *down_ms = ms(*down_ms),
                FaultKind::Flush {} | FaultKind::Failover {} => {}
            }
        }
        out
    }

    /// Checks `time_scale` and the µs latencies, naming the field.
    fn validate_time_scale(&self) -> Result<(), ScenarioError> {
        if let Some(scale) = self.time_scale {
            if scale == 0 {
                return Err(problem("time_scale", "must be at least 1"));
            }
            at_most("time_scale", scale, TIME_SCALE_MAX)?;
        }
        let network = &self.network;
        let (min_us, max_us) = match (network.min_latency_us, network.max_latency_us) {
            (None, None) => return Ok(()),
            (Some(min), Some(max)) => (min, max),
            (None, Some(_)) => {
                return Err(problem(
                    "network.min_latency_us",
                    "missing: give both network.min_latency_us and network.max_latency_us",
                ));
            }
            (Some(_), None) => {
                return Err(problem(
                    "network.max_latency_us",
                    "missing: give both network.min_latency_us and network.max_latency_us",
                ));
            }
        };
        let defaults = Network::default();
        if network.min_latency_ms != defaults.min_latency_ms
            || network.max_latency_ms != defaults.max_latency_ms
        {
            return Err(problem(
                "network.min_latency_us",
                "give the network latency in ms or in µs, not both",
            ));
        }
        if min_us > max_us {
            return Err(problem(
                "network.min_latency_us",
                "must not exceed network.max_latency_us",
            ));
        }
        at_most("network.max_latency_us", max_us, SPAN_MS_MAX * 1_000)?;
        let k = self.time_scale();
        for (field, us) in [
            ("network.min_latency_us", min_us),
            ("network.max_latency_us", max_us),
        ] {
            if self.time_scale.is_some() && us.saturating_mul(k) % 1_000 != 0 {
                return Err(problem(
                    field,
                    format!(
                        "{us} µs is not a whole ms at time_scale {k} (the simulation ticks in \
                         ms: {us} × {k} must be a multiple of 1000)"
                    ),
                ));
            }
            if self.time_scale.is_none() && k > TIME_SCALE_MAX {
                return Err(problem(
                    field,
                    format!(
                        "{us} µs is below what the simulation represents: it needs time_scale \
                         {k}, and at most {TIME_SCALE_MAX} is accepted (use a multiple of 10 µs)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks every value the harness relies on.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.validate_time_scale()?;
        let k = self.time_scale();
        if k > 1 && self.duration_ms.saturating_mul(k) > DURATION_MS_MAX {
            return Err(problem(
                "time_scale",
                format!(
                    "duration_ms × time_scale ({} × {k}) must be at most {DURATION_MS_MAX}",
                    self.duration_ms
                ),
            ));
        }
        if self.duration_ms == 0 {
            return Err(problem("duration_ms", "must be at least 1"));
        }
        at_most("duration_ms", self.duration_ms, DURATION_MS_MAX)?;
        at_most(
            "network.max_latency_ms",
            self.network.max_latency_ms,
            SPAN_MS_MAX,
        )?;
        if self.network.min_latency_ms > self.network.max_latency_ms {
            return Err(problem(
                "network.min_latency_ms",
                "must not exceed network.max_latency_ms",
            ));
        }
        at_most(
            "redis.drift_ppm",
            self.redis.drift_ppm.unsigned_abs(),
            DRIFT_PPM_MAX,
        )?;
        if self.redis.clock_offset_ms.unsigned_abs() > DURATION_MS_MAX * 24 * 365 {
            return Err(problem("redis.clock_offset_ms", "must be within a year"));
        }
        if self.gateways.is_empty() {
            return Err(problem("gateways", "needs at least one gateway group"));
        }
        let mut total = 0u32;
        for (index, group) in self.gateways.iter().enumerate() {
            let at = |field: &str| format!("gateways[{index}].{field}");
            if group.count == 0 {
                return Err(problem(at("count"), "must be at least 1"));
            }
            total = total.saturating_add(group.count);
            let pool = &group.pool;
            if pool.size == 0 {
                return Err(problem(at("pool.size"), "must be at least 1"));
            }
            at_most(&at("pool.size"), u64::from(pool.size), 10_000)?;
            at_most(&at("pool.retries"), u64::from(pool.retries), 10)?;
            for (name, value) in [
                ("pool.pool_timeout_ms", pool.pool_timeout_ms),
                ("pool.read_timeout_ms", pool.read_timeout_ms),
                ("pool.dial_timeout_ms", pool.dial_timeout_ms),
                ("pool.backoff_min_ms", pool.backoff_min_ms),
                ("pool.backoff_max_ms", pool.backoff_max_ms),
            ] {
                at_most(&at(name), value, SPAN_MS_MAX)?;
            }
            for (name, value) in [
                ("pool.read_timeout_ms", pool.read_timeout_ms),
                ("pool.dial_timeout_ms", pool.dial_timeout_ms),
            ] {
                if value == 0 {
                    return Err(problem(at(name), "must be at least 1"));
                }
            }
            at_most(
                &at("drift_ppm"),
                group.drift_ppm.unsigned_abs(),
                DRIFT_PPM_MAX,
            )?;
            if group.clock_offset_ms.unsigned_abs() > DURATION_MS_MAX * 24 * 365 {
                return Err(problem(at("clock_offset_ms"), "must be within a year"));
            }
            ratelab::limiter::legacy::GatewayClock::new(group.tz_offset_s)
                .map_err(|error| problem(at("tz_offset_s"), error.problem))?;
            if let Some(template) = &group.key_scheme {
                let shards = match group.limiter {
                    LimiterKind::ShardedGcra => group.key_shards(),
                    _ => 1,
                };
                ratelab::keys::KeyScheme::parse(template, shards)
                    .map_err(|error| problem(at("key_scheme"), error.to_string()))?;
            }
            self.validate_kind_fields(group, index)?;
            if group.limit == Some(0) {
                return Err(problem(at("limit"), "must be at least 1"));
            }
            self.for_group(group)
                .validate_limit_for(group.limiter, &at("limiter"))?;
            if let Some(cleanup_ms) = group.memory_cleanup_ms {
                if cleanup_ms < 1_000 {
                    return Err(problem(at("memory_cleanup_ms"), "must be at least 1000"));
                }
                at_most(&at("memory_cleanup_ms"), cleanup_ms, 24 * 3_600_000)?;
            }
        }
        at_most("gateways", u64::from(total), u64::from(GATEWAYS_MAX))?;
        let load = &self.load;
        if !(load.rate_per_s > 0.0 && load.rate_per_s <= RATE_PER_S_MAX) {
            return Err(problem(
                "load.rate_per_s",
                format!("must be in (0, {RATE_PER_S_MAX}] (got {})", load.rate_per_s),
            ));
        }
        let requests = load.rate_per_s * self.duration_ms as f64 / 1_000.0;
        if requests > REQUESTS_MAX as f64 {
            return Err(problem(
                "load.rate_per_s",
                format!(
                    "rate × duration is about {requests:.0} requests, above the {REQUESTS_MAX} a run allows"
                ),
            ));
        }
        if load.keys == 0 {
            return Err(problem("load.keys", "must be at least 1"));
        }
        at_most("load.keys", load.keys, KEYS_MAX)?;
        if load.cost == 0 {
            return Err(problem("load.cost", "must be at least 1"));
        }
        at_most("load.cost", load.cost, 1_000_000)?;
        match load.arrivals {
            Arrivals::Bursts { size } if size == 0 || size > 100_000 => {
                return Err(problem("load.arrivals.size", "must be in 1..=100000"));
            }
            _ => {}
        }
        match load.popularity {
            Popularity::Zipf { s } if !(0.0..=10.0).contains(&s) => {
                return Err(problem("load.popularity.s", "must be in [0, 10]"));
            }
            Popularity::Hot { share } if !(0.0..=1.0).contains(&share) => {
                return Err(problem("load.popularity.share", "must be in [0, 1]"));
            }
            _ => {}
        }
        if let Some(mix) = &load.mix {
            mix.validate()?;
        }
        self.validate_upstream()?;
        self.validate_faults(total)?;
        self.validate_links(total)
    }

    /// Whether `name` is one of the run's hosts.
    fn has_host(&self, name: &str, gateways: u32) -> bool {
        self.redis.hosts().iter().any(|host| host == name)
            || name
                .strip_prefix("gateway-")
                .and_then(|index| index.parse::<u32>().ok())
                .is_some_and(|index| index < gateways)
    }

    fn validate_links(&self, gateways: u32) -> Result<(), ScenarioError> {
        let network = &self.network;
        if network.resample_ms == 0 {
            return Err(problem("network.resample_ms", "must be at least 1"));
        }
        at_most("network.resample_ms", network.resample_ms, SPAN_MS_MAX)?;
        at_most("network.links", network.links.len() as u64, 256)?;
        for (index, link) in network.links.iter().enumerate() {
            let at = |field: &str| format!("network.links[{index}].{field}");
            for (name, host) in [("a", &link.a), ("b", &link.b)] {
                if !self.has_host(host, gateways) {
                    return Err(problem(
                        at(name),
                        format!(
                            "unknown host {host:?} (hosts: {}, gateway-0..gateway-{})",
                            self.redis.hosts().join(", "),
                            gateways - 1
                        ),
                    ));
                }
            }
            if link.a == link.b {
                return Err(problem(at("b"), "must differ from a"));
            }
            validate_latency(&at("latency"), &link.latency)?;
        }
        Ok(())
    }

    /// The fields only one kind reads: `key_shards` (`sharded_gcra`) and `limits`
    /// (`multi_limit`); set for another kind they would be silently ignored, so they are
    /// refused.
    fn validate_kind_fields(
        &self,
        group: &GatewayGroup,
        index: usize,
    ) -> Result<(), ScenarioError> {
        let at = |field: &str| format!("gateways[{index}].{field}");
        let kind = group.limiter;
        if let Some(shards) = group.key_shards {
            if kind != LimiterKind::ShardedGcra {
                return Err(problem(at("key_shards"), "only sharded_gcra reads it"));
            }
            if shards == 0 {
                return Err(problem(at("key_shards"), "must be at least 1"));
            }
            at_most(
                &at("key_shards"),
                u64::from(shards),
                u64::from(KEY_SHARDS_MAX),
            )?;
        }
        if kind == LimiterKind::ShardedGcra {
            let limit = group.limit.unwrap_or(self.limit.limit);
            if limit < u64::from(group.key_shards()) {
                return Err(problem(
                    at("key_shards"),
                    format!(
                        "{} shards need a limit of at least as many (got {limit}): a shard would get nothing",
                        group.key_shards()
                    ),
                ));
            }
        }
        if kind != LimiterKind::MultiLimit {
            if !group.limits.is_empty() {
                return Err(problem(at("limits"), "only multi_limit reads it"));
            }
            return Ok(());
        }
        if group.limit.is_some() {
            return Err(problem(
                at("limit"),
                "multi_limit states each of its limits in gateways.limits",
            ));
        }
        if group.key_scheme.is_some() {
            return Err(problem(
                at("key_scheme"),
                "multi_limit names each limit's key in gateways.limits",
            ));
        }
        if group.limits.is_empty() {
            return Err(problem(
                at("limits"),
                "multi_limit needs at least one limit ({ key_scheme, limit })",
            ));
        }
        at_most(
            &at("limits"),
            group.limits.len() as u64,
            u64::from(KEY_SHARDS_MAX),
        )?;
        for (position, spec) in group.limits.iter().enumerate() {
            let field = |name: &str| at(&format!("limits[{position}].{name}"));
            ratelab::keys::KeyScheme::parse(&spec.key_scheme, 1)
                .map_err(|error| problem(field("key_scheme"), error.to_string()))?;
            if spec.limit == 0 {
                return Err(problem(field("limit"), "must be at least 1"));
            }
            at_most(&field("limit"), spec.limit, i32::MAX as u64)?;
            if self.limit.window_ms < spec.limit {
                return Err(problem(
                    field("limit"),
                    "must be at most limit.window_ms (one unit per whole ms)",
                ));
            }
        }
        Ok(())
    }

    fn validate_limit_for(&self, kind: LimiterKind, field: &str) -> Result<(), ScenarioError> {
        let limit = &self.limit;
        if limit.limit == 0 {
            return Err(problem("limit.limit", "must be at least 1"));
        }
        at_most("limit.limit", limit.limit, i32::MAX as u64)?;
        at_most("limit.total", limit.total, i32::MAX as u64)?;
        if limit.window_ms == 0 {
            return Err(problem("limit.window_ms", "must be at least 1"));
        }
        at_most("limit.window_ms", limit.window_ms, 24 * 3_600_000)?;
        match kind {
            LimiterKind::LegacyIpList
            | LimiterKind::LegacyUserList
            | LimiterKind::LegacyMemoryList
            | LimiterKind::LegacyEmail
                if !limit.window_ms.is_multiple_of(1_000) =>
            {
                Err(problem(
                    "limit.window_ms",
                    format!("{field} counts whole seconds: use a multiple of 1000"),
                ))
            }
            LimiterKind::LegacyModelRequest | LimiterKind::LegacyTokenBucket
                if !limit.window_ms.is_multiple_of(60_000) =>
            {
                Err(problem(
                    "limit.window_ms",
                    format!("{field} counts whole minutes: use a multiple of 60000"),
                ))
            }
            LimiterKind::AtomicGcra
            | LimiterKind::AtomicTokenBucket
            | LimiterKind::MemoryGcra
            | LimiterKind::ShardedGcra
            | LimiterKind::HybridGcra
                if limit.window_ms < limit.limit =>
            {
                Err(problem(
                    "limit.window_ms",
                    "must be at least limit.limit (one unit per whole ms)",
                ))
            }
            LimiterKind::SuccessReservation if limit.lease_ms == Some(0) => {
                Err(problem("limit.lease_ms", "must be at least 1"))
            }
            _ => Ok(()),
        }
    }

    fn validate_upstream(&self) -> Result<(), ScenarioError> {
        let upstream = &self.upstream;
        if !(0.0..=1.0).contains(&upstream.error_rate) {
            return Err(problem("upstream.error_rate", "must be in [0, 1]"));
        }
        validate_latency("upstream.latency", &upstream.latency)
    }

    fn validate_redis(&self) -> Result<(), ScenarioError> {
        let redis = &self.redis;
        match redis.topology {
            Topology::Standalone => Ok(()),
            Topology::Replicated => {
                if redis.replicas == 0 {
                    return Err(problem("redis.replicas", "must be at least 1"));
                }
                at_most(
                    "redis.replicas",
                    u64::from(redis.replicas),
                    u64::from(REDIS_NODES_MAX),
                )?;
                at_most(
                    "redis.replication_lag_ms",
                    redis.replication_lag_ms,
                    SPAN_MS_MAX,
                )
            }
            Topology::Cluster => {
                if redis.shards == 0 {
                    return Err(problem("redis.shards", "must be at least 1"));
                }
                at_most(
                    "redis.shards",
                    u64::from(redis.shards),
                    u64::from(REDIS_NODES_MAX),
                )
            }
        }
    }

    fn validate_faults(&self, gateways: u32) -> Result<(), ScenarioError> {
        self.validate_redis()?;
        let redis_hosts = self.redis.hosts();
        let host_ok = |name: &str| {
            redis_hosts.iter().any(|host| host == name)
                || name
                    .strip_prefix("gateway-")
                    .and_then(|index| index.parse::<u32>().ok())
                    .is_some_and(|index| index < gateways)
        };
        for (index, fault) in self.faults.iter().enumerate() {
            let at = |field: &str| format!("faults[{index}].{field}");
            at_most(&at("at_ms"), fault.at_ms, self.duration_ms)?;
            let hosts: Vec<(&str, &String)> = match &fault.kind {
                FaultKind::Partition { a, b, .. }
                | FaultKind::Hold { a, b, .. }
                | FaultKind::LinkLatency { a, b, .. } => vec![("a", a), ("b", b)],
                FaultKind::ClockStep { host, .. } => vec![("host", host)],
                FaultKind::GatewayRestart { host, .. } if !host.starts_with("gateway-") => {
                    return Err(problem(
                        at("host"),
                        format!(
                            "a gateway_restart needs a gateway (gateway-0..gateway-{}), got {host:?}",
                            gateways - 1
                        ),
                    ));
                }
                FaultKind::GatewayRestart { host, .. } => vec![("host", host)],
                FaultKind::RedisRestart { .. } | FaultKind::Flush {} => Vec::new(),
                FaultKind::Failover {} if self.redis.topology != Topology::Replicated => {
                    return Err(problem(
                        at("kind"),
                        "failover needs redis.topology = \"replicated\"",
                    ));
                }
                FaultKind::Failover {}
                    if self.faults[..index]
                        .iter()
                        .any(|earlier| matches!(earlier.kind, FaultKind::Failover {})) =>
                {
                    return Err(problem(
                        at("kind"),
                        "at most one failover per run (redis-1 is the one replica promoted)",
                    ));
                }
                FaultKind::Failover {} => Vec::new(),
            };
            for (name, host) in &hosts {
                if !host_ok(host) {
                    return Err(problem(
                        at(name),
                        format!(
                            "unknown host {host:?} (hosts: {}, gateway-0..gateway-{})",
                            redis_hosts.join(", "),
                            gateways - 1
                        ),
                    ));
                }
            }
            if let [(_, a), (_, b)] = hosts[..]
                && a == b
            {
                return Err(problem(at("b"), "must differ from a"));
            }
            match &fault.kind {
                FaultKind::Partition { duration_ms, .. } | FaultKind::Hold { duration_ms, .. } => {
                    at_most(&at("duration_ms"), *duration_ms, SPAN_MS_MAX)?;
                }
                FaultKind::ClockStep { step_ms, .. } => {
                    at_most(&at("step_ms"), step_ms.unsigned_abs(), 7 * 24 * 3_600_000)?;
                }
                FaultKind::LinkLatency { latency_ms, .. } => {
                    at_most(&at("latency_ms"), *latency_ms, SPAN_MS_MAX)?;
                }
                FaultKind::GatewayRestart { down_ms, .. } => {
                    at_most(&at("down_ms"), *down_ms, SPAN_MS_MAX)?;
                }
                FaultKind::RedisRestart {
                    persistence,
                    rdb_every_ms,
                } => match (persistence, rdb_every_ms) {
                    (Persistence::Rdb, None) => {
                        return Err(problem(
                            at("rdb_every_ms"),
                            "persistence = \"rdb\" needs rdb_every_ms (the snapshot interval)",
                        ));
                    }
                    (Persistence::Rdb, Some(every)) => {
                        if *every == 0 {
                            return Err(problem(at("rdb_every_ms"), "must be at least 1"));
                        }
                        at_most(&at("rdb_every_ms"), *every, SPAN_MS_MAX)?;
                    }
                    (_, Some(_)) => {
                        return Err(problem(
                            at("rdb_every_ms"),
                            "only with persistence = \"rdb\"",
                        ));
                    }
                    (_, None) => {}
                },
                FaultKind::Flush {} | FaultKind::Failover {} => {}
            }
        }
        Ok(())
    }

    /// A scenario drawn entirely from `seed` (swarm testing): every knob comes from one
    /// ChaCha8 stream in a fixed order, and the result always validates. Sizes stay small
    /// enough that one seed runs in well under a second. The draws cover every
    /// [`LimiterKind::ALL`] entry, the three topologies (standalone; replicated, 1-2
    /// replicas, 0-200 ms lag; a cluster of 2-4 shards), every fault kind (a failover only
    /// when replicated, at most one; a gateway restart in one seed of eight, drawn last), up to two per-link latency distributions, and gateway
    /// (±20%) and Redis (±0.1%) clock drift, and in one seed of four a mix of limit kinds.
    /// The kinds after the first [`LimiterKind::SWARM_FIRST`] replace the drawn one last,
    /// in 5 seeds of 16 (each kind then equally likely), with their own fields drawn
    /// (`key_shards` 1-4, at most L; a multi-limit's 1-3 limits under `{$group}`). In one
    /// seed of three whose limiters weight by cost, requests cost 2-4 units.
    pub fn swarm(seed: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let duration_ms = rng.random_range(1_000..=3_000u64);
        let limiter = LimiterKind::ALL[rng.random_range(0..LimiterKind::SWARM_FIRST)];
        let window_ms = match limiter {
            LimiterKind::LegacyModelRequest | LimiterKind::LegacyTokenBucket => 60_000,
            _ => 1_000 * rng.random_range(1..=5u64),
        };
        let limit = rng.random_range(1..=20u64);
        let max_latency_ms = rng.random_range(1..=5u64);
        let network = Network {
            min_latency_ms: rng.random_range(0..=max_latency_ms),
            max_latency_ms,
            ..Network::default()
        };
        let groups = rng.random_range(1..=2usize);
        let mut gateways = Vec::new();
        for group in 0..groups {
            // A second group may run the replacement: a rolling upgrade on one Redis (the
            // IP list and the sliding log state the same bound, L per trailing window).
            let upgrade = group > 0 && rng.random_bool(0.5);
            let kind = match limiter {
                LimiterKind::LegacyIpList if upgrade => LimiterKind::AtomicSlidingLog,
                _ => limiter,
            };
            gateways.push(GatewayGroup {
                count: rng.random_range(1..=3),
                limiter: kind,
                key_scheme: None,
                pool: Pool {
                    size: rng.random_range(1..=10),
                    pool_timeout_ms: rng.random_range(50..=1_000),
                    read_timeout_ms: rng.random_range(20..=500),
                    dial_timeout_ms: rng.random_range(20..=500),
                    retries: rng.random_range(0..=3),
                    backoff_min_ms: 8,
                    backoff_max_ms: 512,
                },
                fail_mode: if rng.random_bool(0.5) {
                    FailModeSetting::Open
                } else {
                    FailModeSetting::Closed
                },
                clock_offset_ms: if rng.random_bool(0.2) {
                    rng.random_range(-2_000..=2_000)
                } else {
                    0
                },
                tz_offset_s: 0,
                // In-memory stores: sometimes a sweep short enough to run (race R11).
                memory_cleanup_ms: (kind.is_in_memory() && rng.random_bool(0.5))
                    .then(|| 1_000 * rng.random_range(1..=5u64)),
                group: None,
                limit: None,
                drift_ppm: 0,
                script_reload: ScriptReload::default(),
                key_shards: None,
                limits: Vec::new(),
            });
        }
        let gateway_count: u32 = gateways.iter().map(|group| group.count).sum();
        let load = Load {
            rate_per_s: f64::from(rng.random_range(10..=150u32)),
            arrivals: match rng.random_range(0..3) {
                0 => Arrivals::Poisson,
                1 => Arrivals::Steady,
                _ => Arrivals::Bursts {
                    size: rng.random_range(2..=20),
                },
            },
            keys: rng.random_range(1..=8),
            popularity: match rng.random_range(0..3) {
                0 => Popularity::Uniform,
                1 => Popularity::Zipf {
                    s: rng.random_range(0.5..1.5),
                },
                _ => Popularity::Hot {
                    share: rng.random_range(0.5..0.95),
                },
            },
            cost: 1,
            mix: None,
        };
        let upstream = Upstream {
            latency: match rng.random_range(0..3) {
                0 => Latency::Fixed {
                    ms: rng.random_range(1..=200),
                },
                1 => Latency::Uniform {
                    min_ms: 10,
                    max_ms: rng.random_range(10..=2_000),
                },
                _ => Latency::Lognormal {
                    median_ms: rng.random_range(10..=500),
                    sigma: rng.random_range(0.1..1.5),
                    max_ms: 5_000,
                },
            },
            error_rate: rng.random_range(0.0..0.3),
        };
        let redis = swarm_redis(&mut rng);
        let redis_hosts = redis.hosts();
        let mut faults = Vec::new();
        for _ in 0..rng.random_range(0..=3) {
            let at_ms = rng.random_range(0..duration_ms);
            let gateway = format!("gateway-{}", rng.random_range(0..gateway_count));
            let node = redis_hosts[rng.random_range(0..redis_hosts.len())].clone();
            let kind = match rng.random_range(0..7) {
                0 => FaultKind::Partition {
                    a: gateway,
                    b: node,
                    oneway: rng.random_bool(0.3),
                    duration_ms: rng.random_range(10..=2_000),
                },
                1 => FaultKind::Hold {
                    a: gateway,
                    b: node,
                    duration_ms: rng.random_range(10..=1_000),
                },
                2 => FaultKind::RedisRestart {
                    persistence: Persistence::None,
                    rdb_every_ms: None,
                },
                3 => FaultKind::ClockStep {
                    host: if rng.random_bool(0.5) { gateway } else { node },
                    step_ms: rng.random_range(-3_000..=3_000),
                },
                4 => FaultKind::Flush {},
                // At most one failover, and only with replicas to promote.
                5 if redis.topology == Topology::Replicated
                    && !faults
                        .iter()
                        .any(|fault: &Fault| matches!(fault.kind, FaultKind::Failover {})) =>
                {
                    FaultKind::Failover {}
                }
                _ => FaultKind::LinkLatency {
                    a: gateway,
                    b: node,
                    latency_ms: rng.random_range(1..=50),
                },
            };
            faults.push(Fault { at_ms, kind });
        }
        // Per-link latency distributions and clock drift, drawn after the faults so that
        // the draws above keep their order.
        let mut network = network;
        for _ in 0..rng.random_range(0..=2) {
            let a = format!("gateway-{}", rng.random_range(0..gateway_count));
            let b = redis_hosts[rng.random_range(0..redis_hosts.len())].clone();
            let latency = match rng.random_range(0..4) {
                0 => Latency::Fixed {
                    ms: rng.random_range(1..=30),
                },
                1 => Latency::Uniform {
                    min_ms: 1,
                    max_ms: rng.random_range(1..=40),
                },
                2 => Latency::Exponential {
                    mean_ms: rng.random_range(1..=20),
                    max_ms: 100,
                },
                _ => Latency::Lognormal {
                    median_ms: rng.random_range(1..=20),
                    sigma: rng.random_range(0.1..1.0),
                    max_ms: 100,
                },
            };
            network.links.push(LinkLatencySpec { a, b, latency });
        }
        network.resample_ms = rng.random_range(1..=50);
        for group in &mut gateways {
            if rng.random_bool(0.2) {
                group.drift_ppm = rng.random_range(-200_000..=200_000);
            }
        }
        let mut redis = redis;
        if rng.random_bool(0.1) {
            redis.drift_ppm = rng.random_range(-1_000..=1_000);
        }
        // A mix of limit kinds in one seed of four, drawn last so that the draws above
        // keep their order; weights 0-3, so one kind is sometimes absent.
        let mut load = load;
        if rng.random_bool(0.25) {
            let mut mix = Mix {
                ip: f64::from(rng.random_range(0..=3u32)),
                user: f64::from(rng.random_range(0..=3u32)),
                model: f64::from(rng.random_range(0..=3u32)),
            };
            if mix.ip + mix.user + mix.model == 0.0 {
                mix.user = 1.0;
            }
            load.mix = Some(mix);
        }
        // The NOSCRIPT policy, drawn after the mix for the same reason.
        for group in &mut gateways {
            if rng.random_bool(0.25) {
                group.script_reload = ScriptReload::EvalUntilLoaded;
            }
        }
        // A gateway restart in one seed of eight, drawn last (not from the fault kinds'
        // range above, which would move every seed's faults): the seeds that do not draw one
        // are the scenarios they were.
        if rng.random_bool(0.125) {
            let at_ms = rng.random_range(0..duration_ms);
            faults.push(Fault {
                at_ms,
                kind: FaultKind::GatewayRestart {
                    host: format!("gateway-{}", rng.random_range(0..gateway_count)),
                    down_ms: rng.random_range(0..=500),
                },
            });
        }
        // The kinds added after the first eleven, drawn last for the same reason: in 5 seeds
        // of 16 every group's kind is replaced by one of them, so that each of the sixteen
        // kinds is equally likely.
        let added = LimiterKind::ALL.len() - LimiterKind::SWARM_FIRST;
        if rng.random_range(0..LimiterKind::ALL.len()) < added {
            let kind = LimiterKind::ALL[LimiterKind::SWARM_FIRST + rng.random_range(0..added)];
            let limits = swarm_multi_limits(&mut rng, limit);
            let key_shards = rng.random_range(1..=limit.min(u64::from(KEY_SHARDS_DEFAULT)));
            for group in &mut gateways {
                group.limiter = kind;
                group.memory_cleanup_ms = None;
                if kind == LimiterKind::MultiLimit {
                    group.limits = limits.clone();
                }
                if kind == LimiterKind::ShardedGcra {
                    group.key_shards = Some(u32::try_from(key_shards).expect("at most 4"));
                }
            }
        }
        // Costs above one in one seed of three where every group weights requests by cost
        // (the legacy limiters count requests), so that the weighting runs in simulation;
        // drawn after everything else (the added kinds too) so that the draws above keep
        // their order.
        if limit >= 2
            && gateways.iter().all(|group| !group.limiter.is_legacy())
            && rng.random_bool(1.0 / 3.0)
        {
            load.cost = rng.random_range(2..=limit.min(4));
        }
        faults.sort_by_key(|fault| fault.at_ms);
        Scenario {
            duration_ms,
            network,
            redis,
            gateways,
            limit: Limit {
                limit,
                window_ms,
                total: 0,
                lease_ms: None,
            },
            load,
            upstream,
            faults,
            time_scale: None,
        }
    }
}

/// A swarm `multi_limit`'s limits, all under the group's hash tag (legal on a cluster): the
/// per-user limit L, and each half the time a global limit of 1-4 L and a per-model limit
/// of 1-3 L.
fn swarm_multi_limits(rng: &mut ChaCha8Rng, limit: u64) -> Vec<MultiLimitSpec> {
    let mut limits = vec![MultiLimitSpec {
        key_scheme: "rl:user:{$group}:$user".to_owned(),
        limit,
    }];
    if rng.random_bool(0.5) {
        limits.push(MultiLimitSpec {
            key_scheme: "rl:global:{$group}".to_owned(),
            limit: limit * rng.random_range(1..=4),
        });
    }
    if rng.random_bool(0.5) {
        limits.push(MultiLimitSpec {
            key_scheme: "rl:model:{$group}:$model".to_owned(),
            limit: limit * rng.random_range(1..=3),
        });
    }
    limits
}

/// The Redis topology of a swarm scenario: standalone, replicated with a lag, or a cluster
/// of 2-4 shards, each a third of the time.
fn swarm_redis(rng: &mut ChaCha8Rng) -> RedisNode {
    match rng.random_range(0..3) {
        0 => RedisNode::default(),
        1 => RedisNode {
            topology: Topology::Replicated,
            replicas: rng.random_range(1..=2),
            replication_lag_ms: rng.random_range(0..=200),
            ..RedisNode::default()
        },
        _ => RedisNode {
            topology: Topology::Cluster,
            shards: rng.random_range(2..=4),
            ..RedisNode::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
duration_ms = 1000
[limit]
limit = 5
window_ms = 1000
[[gateways]]
limiter = "atomic_gcra"
[load]
rate_per_s = 10
"#;

    /// Parses `MINIMAL` with `extra` appended (or `MINIMAL` edited by `edit`), and checks the
    /// error's field, or success when `field` is `None`.
    fn check(text: &str, field: Option<&str>) {
        let outcome = Scenario::from_toml(text);
        match (outcome, field) {
            (Ok(_), None) => {}
            (Err(error), Some(field)) => assert!(
                error.to_string().contains(field),
                "expected an error naming {field:?}, got {error}"
            ),
            (Ok(_), Some(field)) => panic!("expected an error naming {field:?}, got Ok"),
            (Err(error), None) => panic!("expected Ok, got {error}"),
        }
    }

    #[test]
    fn bad_files_name_the_field() {
        let cases: &[(String, Option<&str>)] = &[
            (MINIMAL.to_owned(), None),
            (
                MINIMAL.replace("duration_ms = 1000", "duration_ms = 0"),
                Some("duration_ms"),
            ),
            (
                MINIMAL.replace("limit = 5", "limit = 0"),
                Some("limit.limit"),
            ),
            (
                MINIMAL.replace("atomic_gcra", "atomic_magic"),
                Some("atomic_magic"),
            ),
            (
                MINIMAL.replace("rate_per_s = 10", "rate_per_s = -1"),
                Some("load.rate_per_s"),
            ),
            (
                MINIMAL.replace("rate_per_s = 10", "rate_per_s = \"x\""),
                Some("rate_per_s"),
            ),
            (format!("{MINIMAL}colour = 1\n"), Some("colour")),
            (
                MINIMAL
                    .replace("atomic_gcra", "legacy_ip_list")
                    .replace("window_ms = 1000", "window_ms = 1500"),
                Some("limit.window_ms"),
            ),
            (
                format!(
                    "{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"partition\"\na = \"gateway-3\"\nb = \"redis-0\"\nduration_ms = 5\n"
                ),
                Some("faults[0].a"),
            ),
            (
                format!("{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"redis_restart\"\n"),
                None,
            ),
            (
                format!("{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"redis_restart\"\nhots = 1\n"),
                Some("hots"),
            ),
            (
                format!("{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"meteor\"\n"),
                Some("meteor"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"atomic_gcra\"\n[gateways.pool]\nsize = 0",
                ),
                Some("gateways[0].pool.size"),
            ),
            (
                format!("{MINIMAL}[upstream]\nerror_rate = 2.0\n"),
                Some("upstream.error_rate"),
            ),
            (
                format!("{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"flush\"\n"),
                None,
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"legacy_memory_list\"\nmemory_cleanup_ms = 999",
                ),
                Some("gateways[0].memory_cleanup_ms"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"atomic_gcra\"\ngroup = \"vip\"\nlimit = 0",
                ),
                Some("gateways[0].limit"),
            ),
            (
                MINIMAL
                    .replace("limiter = \"atomic_gcra\"", "limiter = \"legacy_email\"")
                    .replace("window_ms = 1000", "window_ms = 1500"),
                Some("limit.window_ms"),
            ),
            // A group's own limit is validated against the window like the scenario's.
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"atomic_gcra\"\nlimit = 5000",
                ),
                Some("limit.window_ms"),
            ),
            // A gateway restart names an existing gateway, not a Redis node.
            (
                format!(
                    "{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"gateway_restart\"\nhost = \"gateway-0\"\ndown_ms = 100\n"
                ),
                None,
            ),
            (
                format!(
                    "{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"gateway_restart\"\nhost = \"gateway-1\"\n"
                ),
                Some("faults[0].host"),
            ),
            (
                format!(
                    "{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"gateway_restart\"\nhost = \"redis-0\"\n"
                ),
                Some("faults[0].host: a gateway_restart needs a gateway"),
            ),
            (
                format!(
                    "{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"gateway_restart\"\nhost = \"gateway-0\"\ndown_ms = 600001\n"
                ),
                Some("faults[0].down_ms"),
            ),
            (
                format!("{MINIMAL}[[faults]]\nat_ms = 10\nkind = \"gateway_restart\"\n"),
                Some("host"),
            ),
            // A mix of limit kinds: weights non-negative, finite, one positive.
            (
                MINIMAL.replace(
                    "rate_per_s = 10",
                    "rate_per_s = 10\nmix = { ip = 2, user = 1.5 }",
                ),
                None,
            ),
            (
                MINIMAL.replace("rate_per_s = 10", "rate_per_s = 10\nmix = { ip = -1 }"),
                Some("load.mix.ip"),
            ),
            (
                MINIMAL.replace(
                    "rate_per_s = 10",
                    "rate_per_s = 10\nmix = { ip = 1, model = nan }",
                ),
                Some("load.mix.model"),
            ),
            (
                MINIMAL.replace(
                    "rate_per_s = 10",
                    "rate_per_s = 10\nmix = { ip = 0, user = 0 }",
                ),
                Some("load.mix: at least one weight must be positive"),
            ),
            (
                MINIMAL.replace("rate_per_s = 10", "rate_per_s = 10\nmix = { ipv6 = 1 }"),
                Some("ipv6"),
            ),
            (
                MINIMAL.replace("rate_per_s = 10", "rate_per_s = 10\nmix = { user = \"x\" }"),
                Some("user"),
            ),
            // Fields one kind reads: refused for the others, checked for theirs.
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"atomic_gcra\"\nkey_shards = 2",
                ),
                Some("gateways[0].key_shards: only sharded_gcra reads it"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"sharded_gcra\"\nkey_shards = 2",
                ),
                None,
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"sharded_gcra\"\nkey_shards = 8",
                ),
                Some("gateways[0].key_shards: 8 shards need a limit of at least as many"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"sharded_gcra\"\nkey_shards = 2\nkey_scheme = \"rl:{$user}\"",
                ),
                Some("gateways[0].key_scheme"),
            ),
            (
                MINIMAL.replace("atomic_gcra", "multi_limit"),
                Some("gateways[0].limits: multi_limit needs at least one limit"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"multi_limit\"\nlimits = [{ key_scheme = \"rl:g:{$group}\", limit = 3 }, { key_scheme = \"rl:u:{$group}:$user\", limit = 2 }]",
                ),
                None,
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"atomic_gcra\"\nlimits = [{ key_scheme = \"rl:g\", limit = 3 }]",
                ),
                Some("gateways[0].limits: only multi_limit reads it"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"multi_limit\"\nlimits = [{ key_scheme = \"rl:g\", limit = 3 }, { key_scheme = \"rl:u\", limit = 0 }]",
                ),
                Some("gateways[0].limits[1].limit"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"multi_limit\"\nlimits = [{ key_scheme = \"rl:$\", limit = 3 }]",
                ),
                Some("gateways[0].limits[0].key_scheme"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"multi_limit\"\nlimits = [{ key_scheme = \"rl:g\", limit = 2000 }]",
                ),
                Some("gateways[0].limits[0].limit"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"multi_limit\"\nlimit = 4\nlimits = [{ key_scheme = \"rl:g\", limit = 3 }]",
                ),
                Some("gateways[0].limit: multi_limit states each"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"multi_limit\"\nkey_scheme = \"rl:$user\"\nlimits = [{ key_scheme = \"rl:g\", limit = 3 }]",
                ),
                Some("gateways[0].key_scheme: multi_limit names each"),
            ),
            (
                MINIMAL.replace(
                    "limiter = \"atomic_gcra\"",
                    "limiter = \"multi_limit\"\nlimits = [{ key_scheme = \"rl:g\", limit = 3, colour = 1 }]",
                ),
                Some("colour"),
            ),
        ];
        for (text, field) in cases {
            check(text, *field);
        }
    }

    #[test]
    fn mix_draws_each_kind_at_its_weight_and_never_a_zero_weight() {
        // Goal: `Mix::draw` honours the weights exactly in expectation and never draws a
        // kind of weight 0. Method: 20 000 draws from a fixed ChaCha8 seed for three mixes;
        // each kind's share must be within 0.02 of its weight's share (about 4 standard
        // deviations at this count), and a zero weight must get no draw at all.
        let mixes = [
            Mix {
                ip: 2.0,
                user: 1.0,
                model: 1.0,
            },
            Mix {
                ip: 0.0,
                user: 3.0,
                model: 1.0,
            },
            Mix {
                ip: 0.0,
                user: 0.0,
                model: 0.5,
            },
        ];
        for mix in mixes {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let draws = 20_000;
            let mut counts = [0u32; 3];
            for _ in 0..draws {
                counts[usize::try_from(mix.draw(&mut rng).index()).expect("small")] += 1;
            }
            let total = mix.ip + mix.user + mix.model;
            for kind in IdentityKind::ALL {
                let count = counts[usize::try_from(kind.index()).expect("small")];
                let share = f64::from(count) / f64::from(draws);
                let expected = mix.weight(kind) / total;
                assert!(
                    (share - expected).abs() < 0.02,
                    "{mix:?}: {} drawn {share:.3}, weight says {expected:.3}",
                    kind.name()
                );
                if mix.weight(kind) == 0.0 {
                    assert_eq!(count, 0, "{mix:?}: a zero weight was drawn");
                }
            }
        }
    }

    #[test]
    fn swarm_scenarios_validate_and_round_trip() {
        for seed in 0..200 {
            let scenario = Scenario::swarm(seed);
            scenario
                .validate()
                .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
            assert_eq!(Scenario::swarm(seed), scenario, "seed {seed} is not stable");
            let text = scenario.to_toml();
            let back = Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
            assert_eq!(back, scenario, "seed {seed} does not round-trip");
        }
    }
}
