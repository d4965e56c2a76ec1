//! One traffic under two key schemes: `shardcheck`'s engine.
//!
//! The traffic is replayed request by request through the in-process Redis model (the `lua/`
//! scripts on a `Local` backend, time set to each request's arrival, the scripts given that
//! time), once per scheme; decisions are compared one by one. Beside that, per scheme: the
//! keys, slots and nodes the traffic touches, collisions (from the templates, and confirmed
//! when two identities of the traffic meet on one key), CROSSSLOT decisions on a cluster, the
//! admission bound of each limit and the memory the keys take. Last, the cut-over: the same
//! traffic with gateways switching from the old scheme to the new one at staggered times, on
//! one shared model, where a key whose name changes starts a fresh counter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ratelab::algo::RateQuota;
use ratelab::keys::{KeyScheme, Spread, key_slot};
use ratelab::limiter::atomic::{
    Algorithm, MultiLimiter, ScriptClock, ScriptLimiter, ShardedLimiter,
};
use ratelab::limiter::{Limiter, Request};
use ratelab::model::{Model, NodeConfig, Reply, SharedModel};
use ratelab::redis::Local;
use serde::Serialize;

use crate::schemes::{Limit, SchemeSet};
use crate::traffic::TrafficRequest;

/// How many examples each finding lists.
pub const EXAMPLES_MAX: usize = 5;

/// One limit's decision on one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decided {
    /// The limit kind.
    pub kind: String,
    /// The key it was decided on (the first shard probed).
    pub key: String,
    /// Allowed or not.
    pub allowed: bool,
}

/// A request decided differently under the two schemes.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    /// The request's index in the traffic.
    pub index: usize,
    /// Its arrival.
    pub at_ms: u64,
    /// Its identity fields.
    pub fields: BTreeMap<String, String>,
    /// Its decisions under the first scheme.
    pub before: Vec<Decided>,
    /// Under the second.
    pub after: Vec<Decided>,
}

/// Decisions that differ.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Differences {
    /// Requests with at least one differing decision.
    pub count: u64,
    /// `count` over all requests.
    pub share: f64,
    /// Differing decisions per limit kind.
    pub per_limit: BTreeMap<String, u64>,
    /// The first few.
    pub examples: Vec<Difference>,
}

/// Two different (limit, identity) pairs on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Collision {
    /// The limit kinds (the same one twice for a key that reads two ways).
    pub kinds: (String, String),
    /// Why: `separator` (one template reads two ways) or `namespace` (two templates meet).
    pub cause: String,
    /// The shortest key both produce.
    pub witness: String,
}

/// A collision seen in the traffic.
#[derive(Clone, Debug, Serialize)]
pub struct Confirmed {
    /// The key.
    pub key: String,
    /// The first (limit kind, identity) on it.
    pub first: (String, String),
    /// The second.
    pub second: (String, String),
}

/// A decision whose keys span slots on a cluster.
#[derive(Clone, Debug, Serialize)]
pub struct CrossSlot {
    /// The request's index.
    pub index: usize,
    /// The keys decided together and their slots.
    pub keys: Vec<(String, u16)>,
}

/// A limit's admission bound under a scheme.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bound {
    /// The limit kind.
    pub kind: String,
    /// Algorithm, L, window and shards, as written.
    pub quota: String,
    /// The most one identity can be admitted in any trailing window (all shards together:
    /// the split quotas add up to the whole, so sharding does not raise it).
    pub upper_per_window: u64,
    /// The fewest admissions that can come before a first refusal in a window: L unsharded;
    /// with N shards probed in turn, one refusal after two drained shards, `2·⌊L/N⌋`.
    pub floor_before_refusal: u64,
    /// Why.
    pub why: String,
}

/// The memory a scheme's keys take at the end of the replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// Distinct keys the traffic touched.
    pub keys_touched: u64,
    /// Keys alive at the end.
    pub keys_live: u64,
    /// Sum of `MEMORY USAGE` over live keys (the model's estimate of Redis's footprint).
    pub bytes: u64,
}

/// Where the load lands.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Load {
    /// Distinct keys.
    pub keys: u64,
    /// Commands (one per key probed).
    pub commands: u64,
    /// Slots used.
    pub slots_used: u64,
    /// Hottest slot and its share.
    pub hottest_slot: Option<(u16, f64)>,
    /// Hottest node and its share.
    pub hottest_node: Option<(u32, f64)>,
    /// Hottest node over the mean per node.
    pub node_max_over_mean: f64,
    /// Per node: (keys, commands).
    pub per_node: Vec<(u64, u64)>,
    /// The ten busiest slots: (slot, keys, commands).
    pub top_slots: Vec<(u16, u64, u64)>,
    /// Slots over four times the median slot.
    pub hot_slots: u64,
    /// The longest run of neighbouring hot slots and its share of commands.
    pub hot_run: Option<(u16, u16)>,
    /// That run's share.
    pub hot_run_share: f64,
}

/// One scheme's findings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SchemeReport {
    /// The scheme's name.
    pub name: String,
    /// Cluster (true) or standalone.
    pub cluster: bool,
    /// Nodes.
    pub nodes: u32,
    /// Load per slot and node.
    pub load: Load,
    /// Collisions found from the templates.
    pub collisions: Vec<Collision>,
    /// Collisions seen in the traffic: how many keys, and the first few.
    pub confirmed_count: u64,
    /// The first confirmed collisions.
    pub confirmed: Vec<Confirmed>,
    /// Decisions whose keys span slots (cluster only): how many.
    pub crossslot_count: u64,
    /// The first few.
    pub crossslot: Vec<CrossSlot>,
    /// Each limit's bound.
    pub bounds: Vec<Bound>,
    /// Field values in the traffic outside the alphabet the scheme declares for them (the
    /// collision analysis assumed they cannot occur): how many, and the first.
    pub outside_alphabet: u64,
    /// The first such value, `field=value`.
    pub outside_alphabet_example: Option<String>,
    /// Memory.
    pub memory: Memory,
}

/// The cut-over: gateways switching one by one.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cutover {
    /// Gateways, and when each switched (ms).
    pub switch_ms: Vec<u64>,
    /// Logical keys (limit kind and identity) in the traffic.
    pub logical_keys: u64,
    /// Of those, how many get a new Redis key (a fresh counter at the switch).
    pub keys_renamed: u64,
    /// The worst excess seen: admissions in one trailing window during the cut-over over the
    /// most the old scheme alone admitted there.
    pub worst_over_admission: u64,
    /// The logical key it happened on.
    pub worst_key: Option<String>,
    /// Its bound: the new scheme's upper bound when the key is renamed (two counters), else 0.
    pub worst_bound: u64,
    /// The most admissions seen in one trailing window on one logical key during the
    /// cut-over.
    pub worst_in_window: u64,
    /// The logical key it happened on.
    pub worst_in_window_key: Option<String>,
    /// Its bound: the sum of both schemes' upper bounds when the key is renamed (two
    /// counters, each up to its own bound), else the larger of the two.
    pub bound_in_window: u64,
}

/// Everything `shardcheck` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Requests replayed.
    pub requests: u64,
    /// The first scheme.
    pub before: SchemeReport,
    /// The second.
    pub after: SchemeReport,
    /// Decisions that differ.
    pub differences: Differences,
    /// The cut-over.
    pub cutover: Cutover,
}

impl Report {
    /// What changed in semantics (empty: nothing; exit 0): decisions, collisions, CROSSSLOT.
    pub fn semantic_changes(&self) -> Vec<String> {
        let mut changes = Vec::new();
        if self.differences.count > 0 {
            changes.push(format!("{} decisions differ", self.differences.count));
        }
        let shapes = |report: &SchemeReport| -> BTreeSet<(String, String, String)> {
            report
                .collisions
                .iter()
                .map(|c| (c.kinds.0.clone(), c.kinds.1.clone(), c.cause.clone()))
                .collect()
        };
        if shapes(&self.before) != shapes(&self.after)
            || self.before.confirmed_count != self.after.confirmed_count
        {
            changes.push("collisions changed".to_owned());
        }
        if self.before.crossslot_count != self.after.crossslot_count {
            changes.push(format!(
                "CROSSSLOT decisions {} -> {}",
                self.before.crossslot_count, self.after.crossslot_count
            ));
        }
        changes
    }
}

/// Why a comparison cannot run (bad input: exit 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareError(pub String);

impl std::fmt::Display for CompareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompareError {}

/// Compares `before` and `after` on `traffic`.
pub fn compare(
    before: &SchemeSet,
    after: &SchemeSet,
    traffic: &[TrafficRequest],
) -> Result<Report, CompareError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|error| CompareError(format!("cannot start a runtime: {error}")))?;
    let old = runtime.block_on(replay(before, traffic))?;
    let new = runtime.block_on(replay(after, traffic))?;
    let differences = differences(traffic, &old.decisions, &new.decisions);
    let cutover = runtime.block_on(cutover(before, after, traffic, &old.admitted))?;
    Ok(Report {
        requests: traffic.len() as u64,
        before: old.report,
        after: new.report,
        differences,
        cutover,
    })
}

fn differences(
    traffic: &[TrafficRequest],
    before: &[Vec<Decided>],
    after: &[Vec<Decided>],
) -> Differences {
    let mut found = Differences::default();
    for (index, (old, new)) in before.iter().zip(after).enumerate() {
        let kinds: BTreeSet<&String> = old.iter().chain(new).map(|d| &d.kind).collect();
        let mut differs = false;
        for kind in kinds {
            let verdict =
                |list: &[Decided]| list.iter().find(|d| &d.kind == kind).map(|d| d.allowed);
            if verdict(old) != verdict(new) {
                differs = true;
                *found.per_limit.entry(kind.clone()).or_insert(0) += 1;
            }
        }
        if differs {
            found.count += 1;
            if found.examples.len() < EXAMPLES_MAX {
                found.examples.push(Difference {
                    index,
                    at_ms: traffic[index].at_ms,
                    fields: traffic[index].fields.clone(),
                    before: old.clone(),
                    after: new.clone(),
                });
            }
        }
    }
    found.share = if traffic.is_empty() {
        0.0
    } else {
        found.count as f64 / traffic.len() as f64
    };
    found
}

/// A limit's limiter on the in-process model: shard 0 only, or sharded.
enum OneLimit {
    Single(ScriptLimiter<Local>),
    Sharded(ShardedLimiter<Local>),
    /// A merged group: one `multi_limit.lua` call, all or nothing.
    Merged(MultiLimiter<Local>),
}

impl OneLimit {
    fn new(
        limit: &Limit,
        model: &SharedModel,
        now: &Arc<AtomicU64>,
    ) -> Result<OneLimit, CompareError> {
        let clock_source = Arc::clone(now);
        let local = Local::connect(
            Arc::clone(model),
            Arc::new(move || clock_source.load(Ordering::Relaxed)),
        );
        if limit.scheme.shards() > 1 {
            ShardedLimiter::new(
                local,
                limit.scheme.clone(),
                limit.algorithm,
                ScriptClock::Gateway,
            )
            .map(OneLimit::Sharded)
            .map_err(|error| CompareError(format!("limits.{}: {error}", limit.kind)))
        } else {
            Ok(OneLimit::Single(ScriptLimiter::new(
                local,
                limit.scheme.clone(),
                limit.algorithm,
                ScriptClock::Gateway,
            )))
        }
    }

    /// One call deciding every kind of `call` (a merged group of `set`) at once.
    fn merged(
        set: &SchemeSet,
        call: &[String],
        model: &SharedModel,
        now: &Arc<AtomicU64>,
    ) -> OneLimit {
        let clock_source = Arc::clone(now);
        let local = Local::connect(
            Arc::clone(model),
            Arc::new(move || clock_source.load(Ordering::Relaxed)),
        );
        OneLimit::Merged(MultiLimiter::new(
            local,
            merged_limits(set, call),
            ScriptClock::Gateway,
        ))
    }

    async fn check(&mut self, request: &Request) -> Result<bool, CompareError> {
        let verdict = match self {
            OneLimit::Single(limiter) => limiter.check(request).await,
            OneLimit::Sharded(limiter) => limiter.check(request).await,
            OneLimit::Merged(limiter) => limiter.check(request).await,
        };
        verdict
            .map(|verdict| verdict.decision.allowed)
            .map_err(|error| CompareError(format!("the model refused a decision: {error}")))
    }
}

/// The (key scheme, quota) of each kind of a merged call, `$ns` written in.
pub fn merged_limits(set: &SchemeSet, call: &[String]) -> Vec<(KeyScheme, RateQuota)> {
    call.iter()
        .map(|kind| {
            let limit = &set.limits[kind];
            let Algorithm::Gcra(quota) = limit.algorithm else {
                unreachable!("SchemeSet::merged admits only GCRA limits")
            };
            (limit.scheme_with_namespace(), quota)
        })
        .collect()
}

fn fresh_model() -> SharedModel {
    Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(0))))
}

/// One scheme's replay.
struct Replayed {
    decisions: Vec<Vec<Decided>>,
    /// Per logical key (kind and the identity its template names): admitted (ms, cost).
    admitted: BTreeMap<String, Vec<(u64, u64)>>,
    report: SchemeReport,
}

/// The logical key of `kind` for `request` under `limit`: the kind and the fields its
/// template names.
pub(crate) fn logical_key(limit: &Limit, request: &TrafficRequest) -> String {
    let mut name = limit.kind.clone();
    for field in limit.scheme.identity_fields() {
        name.push_str(&format!(
            " {field}={}",
            request.fields.get(field).map_or("", String::as_str)
        ));
    }
    name
}

fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Renders `kind`'s key at `shard` for `request`.
fn render<'a>(
    set: &'a SchemeSet,
    kind: &str,
    request: &TrafficRequest,
    index: usize,
    shard: u32,
) -> Result<(&'a Limit, Vec<u8>), CompareError> {
    let limit = set.limits.get(kind).ok_or_else(|| {
        CompareError(format!(
            "request {index}: limits: {kind:?} is not a limit of scheme {}",
            set.name
        ))
    })?;
    let key = limit
        .scheme
        .render(&request.identity(&limit.namespace), shard)
        .map_err(|error| {
            CompareError(format!(
                "request {index}: limits.{kind} in {}: {error}",
                set.name
            ))
        })?;
    Ok((limit, key))
}

/// Per-replay bookkeeping beside the decisions.
struct Tally {
    spread: Spread,
    owners: std::collections::HashMap<Vec<u8>, (String, String)>,
    confirmed: BTreeMap<Vec<u8>, Confirmed>,
    crossslot_count: u64,
    crossslot: Vec<CrossSlot>,
    outside_alphabet: u64,
    outside_alphabet_example: Option<String>,
}

async fn replay(set: &SchemeSet, traffic: &[TrafficRequest]) -> Result<Replayed, CompareError> {
    let model = fresh_model();
    let now = Arc::new(AtomicU64::new(0));
    let mut limiters: BTreeMap<String, (OneLimit, u32)> = BTreeMap::new();
    for (kind, limit) in &set.limits {
        limiters.insert(kind.clone(), (OneLimit::new(limit, &model, &now)?, 0));
    }
    let mut merged: BTreeMap<Vec<String>, OneLimit> = BTreeMap::new();
    let mut tally = Tally {
        spread: Spread::new(set.map.clone()),
        owners: std::collections::HashMap::new(),
        confirmed: BTreeMap::new(),
        crossslot_count: 0,
        crossslot: Vec::new(),
        outside_alphabet: 0,
        outside_alphabet_example: None,
    };
    let mut decisions = Vec::with_capacity(traffic.len());
    let mut admitted: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (index, request) in traffic.iter().enumerate() {
        now.store(request.at_ms, Ordering::Relaxed);
        let mut decided = Vec::new();
        for call in set.calls(&request.limits) {
            if call.len() > 1 {
                merged_call(
                    set,
                    (&model, &now),
                    &mut merged,
                    (index, request),
                    &call,
                    (&mut tally, &mut admitted, &mut decided),
                )
                .await?;
                continue;
            }
            let kind = call.into_iter().next().expect("a call has a kind");
            // Rendering first refuses a kind the scheme lacks (bad input, not a panic).
            render(set, &kind, request, index, 0)?;
            let (limiter, next_shard) = limiters.get_mut(&kind).expect("every limit has one");
            let shards = set.limits[&kind].scheme.shards();
            let shard = *next_shard % shards;
            *next_shard = (*next_shard + 1) % shards;
            let (limit, key) = render(set, &kind, request, index, shard)?;
            tally.spread.touch(&key);
            let identity = request.identity(&limit.namespace);
            let allowed = limiter
                .check(&Request {
                    identity,
                    cost: request.cost,
                    now_ms: request.at_ms,
                })
                .await?;
            if !allowed && shards > 1 {
                // The sharded limiter probed the next shard too.
                tally
                    .spread
                    .touch(&render(set, &kind, request, index, (shard + 1) % shards)?.1);
            }
            let logical = logical_key(limit, request);
            note_owner(&mut tally, &key, &kind, &logical);
            note_alphabet(set, &mut tally, limit, request);
            if allowed {
                admitted
                    .entry(logical)
                    .or_default()
                    .push((request.at_ms, request.cost));
            }
            decided.push(Decided {
                kind,
                key: lossy(&key),
                allowed,
            });
        }
        decided.sort_by(|a, b| a.kind.cmp(&b.kind));
        if set.cluster {
            note_crossslot(set, &mut tally, index, &request.limits, &decided);
        }
        decisions.push(decided);
    }
    let report = scheme_report(set, tally, &model, traffic.last().map_or(0, |r| r.at_ms));
    Ok(Replayed {
        decisions,
        admitted,
        report,
    })
}

/// Admissions per logical key: (ms, cost).
type Admitted = BTreeMap<String, Vec<(u64, u64)>>;

/// One merged call of `set` (all of `call`'s limits in one script, all or nothing) on
/// `request`, noted as the per-limit calls are.
async fn merged_call(
    set: &SchemeSet,
    (model, now): (&SharedModel, &Arc<AtomicU64>),
    merged: &mut BTreeMap<Vec<String>, OneLimit>,
    (index, request): (usize, &TrafficRequest),
    call: &[String],
    (tally, admitted, decided): (&mut Tally, &mut Admitted, &mut Vec<Decided>),
) -> Result<(), CompareError> {
    let mut keys = Vec::new();
    for kind in call {
        keys.push(render(set, kind, request, index, 0)?);
    }
    let limiter = merged
        .entry(call.to_vec())
        .or_insert_with(|| OneLimit::merged(set, call, model, now));
    let allowed = limiter
        .check(&Request {
            identity: request.identity(""),
            cost: request.cost,
            now_ms: request.at_ms,
        })
        .await?;
    for (kind, (limit, key)) in call.iter().zip(keys) {
        tally.spread.touch(&key);
        let logical = logical_key(limit, request);
        note_owner(tally, &key, kind, &logical);
        note_alphabet(set, tally, limit, request);
        if allowed {
            admitted
                .entry(logical)
                .or_default()
                .push((request.at_ms, request.cost));
        }
        decided.push(Decided {
            kind: kind.clone(),
            key: lossy(&key),
            allowed,
        });
    }
    Ok(())
}

fn note_owner(tally: &mut Tally, key: &[u8], kind: &str, logical: &str) {
    match tally.owners.get(key) {
        None => {
            tally
                .owners
                .insert(key.to_vec(), (kind.to_owned(), logical.to_owned()));
        }
        Some(owner) if owner.1 != logical => {
            if !tally.confirmed.contains_key(key) {
                tally.confirmed.insert(
                    key.to_vec(),
                    Confirmed {
                        key: lossy(key),
                        first: owner.clone(),
                        second: (kind.to_owned(), logical.to_owned()),
                    },
                );
            }
        }
        Some(_) => {}
    }
}

fn note_alphabet(set: &SchemeSet, tally: &mut Tally, limit: &Limit, request: &TrafficRequest) {
    for field in limit.scheme.identity_fields() {
        let Some(value) = request.fields.get(field) else {
            continue;
        };
        let alphabet = set.alphabet(field);
        if !value.bytes().all(|byte| alphabet.contains(byte)) {
            tally.outside_alphabet += 1;
            if tally.outside_alphabet_example.is_none() {
                tally.outside_alphabet_example = Some(format!("{field}={value:?}"));
            }
        }
    }
}

fn note_crossslot(
    set: &SchemeSet,
    tally: &mut Tally,
    index: usize,
    kinds: &[String],
    decided: &[Decided],
) {
    for group in &set.together {
        if !group.iter().any(|kind| kinds.contains(kind)) {
            continue;
        }
        let keys: Vec<(String, u16)> = decided
            .iter()
            .filter(|d| group.contains(&d.kind))
            .map(|d| (d.key.clone(), key_slot(d.key.as_bytes())))
            .collect();
        let slots: BTreeSet<u16> = keys.iter().map(|&(_, slot)| slot).collect();
        if slots.len() > 1 {
            tally.crossslot_count += 1;
            if tally.crossslot.len() < EXAMPLES_MAX {
                tally.crossslot.push(CrossSlot { index, keys });
            }
        }
    }
}

fn scheme_report(set: &SchemeSet, tally: Tally, model: &SharedModel, end_ms: u64) -> SchemeReport {
    let summary = tally.spread.summary();
    let load = Load {
        keys: summary.keys,
        commands: summary.commands,
        slots_used: summary.slots_used,
        hottest_slot: summary.hottest_slot,
        hottest_node: summary.hottest_node,
        node_max_over_mean: summary.node_max_over_mean,
        per_node: summary.per_node,
        top_slots: tally.spread.top_slots(10),
        hot_slots: summary.hot.count,
        hot_run: summary.hot.longest_run,
        hot_run_share: summary.hot.longest_run_share,
    };
    SchemeReport {
        name: set.name.clone(),
        cluster: set.cluster,
        nodes: set.map.nodes(),
        memory: memory(model, end_ms, summary.keys),
        load,
        collisions: collisions(set),
        confirmed_count: tally.confirmed.len() as u64,
        confirmed: tally.confirmed.into_values().take(EXAMPLES_MAX).collect(),
        crossslot_count: tally.crossslot_count,
        crossslot: tally.crossslot,
        outside_alphabet: tally.outside_alphabet,
        outside_alphabet_example: tally.outside_alphabet_example,
        bounds: set.limits.values().map(bound).collect(),
    }
}

/// Every collision the templates allow, with a witness key.
pub fn collisions(set: &SchemeSet) -> Vec<Collision> {
    let limits: Vec<&Limit> = set.limits.values().collect();
    let mut found = Vec::new();
    for (i, first) in limits.iter().enumerate() {
        let pattern = set.pattern(first);
        if let Some(witness) = pattern.ambiguity() {
            found.push(Collision {
                kinds: (first.kind.clone(), first.kind.clone()),
                cause: "separator".to_owned(),
                witness: lossy(&witness),
            });
        }
        for second in &limits[i + 1..] {
            if let Some(witness) = pattern.overlap(&set.pattern(second)) {
                found.push(Collision {
                    kinds: (first.kind.clone(), second.kind.clone()),
                    cause: "namespace".to_owned(),
                    witness: lossy(&witness),
                });
            }
        }
    }
    found
}

/// A limit's bound (see [`Bound`]).
pub fn bound(limit: &Limit) -> Bound {
    let l = limit.limit;
    let (upper, why) = match limit.algorithm {
        Algorithm::SlidingLog(_) => (l, "sliding log: L in every trailing window"),
        Algorithm::FixedWindow(_) => (
            2 * l,
            "fixed window: L per aligned window, 2L across a boundary",
        ),
        Algorithm::SlidingWindow(_) => (
            2 * l,
            "sliding window counter: at most 2L in a trailing window",
        ),
        Algorithm::TokenBucket(_) | Algorithm::Gcra(_) => (
            2 * l,
            "burst L plus L refilled over the window: 2L in a trailing window",
        ),
    };
    let shards = u64::from(limit.scheme.shards());
    let floor = if shards > 1 { 2 * (l / shards) } else { l };
    Bound {
        kind: limit.kind.clone(),
        quota: format!(
            "{} L={} window={}ms shards={}",
            limit.algorithm_name, l, limit.window_ms, shards
        ),
        upper_per_window: upper,
        floor_before_refusal: floor.min(l),
        why: why.to_owned(),
    }
}

fn memory(model: &SharedModel, end_ms: u64, keys_touched: u64) -> Memory {
    let mut model = model
        .lock()
        .expect("the model lock is never held across a panic");
    let mut session = model.connect("shardcheck");
    let keys = match model.exec(end_ms, &mut session, &[b"KEYS".to_vec(), b"*".to_vec()]) {
        Reply::Array(keys) => keys,
        _ => Vec::new(),
    };
    let mut bytes = 0u64;
    let mut live = 0u64;
    for key in keys {
        if let Reply::Bulk(key) = key {
            live += 1;
            let argv = [b"MEMORY".to_vec(), b"USAGE".to_vec(), key];
            if let Reply::Integer(size) = model.exec(end_ms, &mut session, &argv) {
                bytes += u64::try_from(size).unwrap_or(0);
            }
        }
    }
    model.disconnect(&mut session);
    Memory {
        keys_touched,
        keys_live: live,
        bytes,
    }
}

/// The most units admitted in any trailing window of `window_ms` (sorted by time).
fn max_in_window(admitted: &[(u64, u64)], window_ms: u64) -> u64 {
    let (mut best, mut sum, mut start) = (0u64, 0u64, 0usize);
    for &(at_ms, cost) in admitted {
        sum = sum.saturating_add(cost);
        while at_ms - admitted[start].0 >= window_ms {
            sum -= admitted[start].1;
            start += 1;
        }
        best = best.max(sum);
    }
    best
}

/// Fills the cut-over's worst over-admission: per logical key, the most admitted in one
/// trailing window during the cut-over over the most the old scheme alone admitted.
pub(crate) fn worst_over_admission(
    report: &mut Cutover,
    (before, after): (&SchemeSet, &SchemeSet),
    admitted: &BTreeMap<String, Vec<(u64, u64)>>,
    old_admitted: &BTreeMap<String, Vec<(u64, u64)>>,
    renamed: &BTreeMap<String, bool>,
) {
    for (logical, times) in admitted {
        let kind = logical.split(' ').next().unwrap_or_default();
        let Some(limit) = before.limits.get(kind) else {
            continue;
        };
        let seen = max_in_window(times, limit.window_ms);
        let alone = old_admitted
            .get(logical)
            .map_or(0, |times| max_in_window(times, limit.window_ms));
        let is_renamed = renamed.get(logical).copied().unwrap_or(false);
        let new_upper = after
            .limits
            .get(kind)
            .map_or(0, |limit| bound(limit).upper_per_window);
        let old_upper = bound(limit).upper_per_window;
        if seen > report.worst_in_window {
            report.worst_in_window = seen;
            report.worst_in_window_key = Some(logical.clone());
            report.bound_in_window = if is_renamed {
                old_upper + new_upper
            } else {
                old_upper.max(new_upper)
            };
        }
        let excess = seen.saturating_sub(alone);
        if excess > report.worst_over_admission {
            report.worst_over_admission = excess;
            report.worst_key = Some(logical.clone());
            report.worst_bound = if is_renamed { new_upper } else { 0 };
        }
    }
}

/// When each gateway switches to the new scheme: gateway g of G at
/// `first + span·(g+1)/(G+1)`.
pub(crate) fn switch_times(first_ms: u64, last_ms: u64, traffic: &[TrafficRequest]) -> Vec<u64> {
    let gateways = traffic
        .iter()
        .map(|request| request.gateway.unwrap_or(0) + 1)
        .max()
        .unwrap_or(1);
    let span = last_ms - first_ms;
    (0..u64::from(gateways))
        .map(|g| {
            let offset = u128::from(span) * u128::from(g + 1) / (u128::from(gateways) + 1);
            first_ms + u64::try_from(offset).expect("below the span")
        })
        .collect()
}

async fn cutover(
    before: &SchemeSet,
    after: &SchemeSet,
    traffic: &[TrafficRequest],
    old_admitted: &BTreeMap<String, Vec<(u64, u64)>>,
) -> Result<Cutover, CompareError> {
    let (Some(first), Some(last)) = (traffic.first(), traffic.last()) else {
        return Ok(Cutover::default());
    };
    let switch_ms = switch_times(first.at_ms, last.at_ms, traffic);
    let model = fresh_model();
    let now = Arc::new(AtomicU64::new(0));
    let mut limiters: BTreeMap<(u32, bool, Vec<String>), OneLimit> = BTreeMap::new();
    let mut admitted: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut renamed: BTreeMap<String, bool> = BTreeMap::new();
    for (index, request) in traffic.iter().enumerate() {
        now.store(request.at_ms, Ordering::Relaxed);
        let gateway = request.gateway.unwrap_or(0);
        let new = request.at_ms >= switch_ms[usize::try_from(gateway).expect("fits")];
        let set = if new { after } else { before };
        for call in set.calls(&request.limits) {
            let mut logicals = Vec::new();
            for kind in &call {
                let (old_limit, old_key) = render(before, kind, request, index, 0)
                    .or_else(|_| render(set, kind, request, index, 0))?;
                let logical = logical_key(old_limit, request);
                if !renamed.contains_key(&logical) {
                    let new_key = render(after, kind, request, index, 0).map(|(_, key)| key);
                    renamed.insert(logical.clone(), new_key.map_or(true, |key| key != old_key));
                }
                logicals.push(logical);
            }
            let (limit, _) = render(set, &call[0], request, index, 0)?;
            let limiter = match limiters.entry((gateway, new, call.clone())) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    if call.len() > 1 {
                        entry.insert(OneLimit::merged(set, &call, &model, &now))
                    } else {
                        entry.insert(OneLimit::new(limit, &model, &now)?)
                    }
                }
            };
            let allowed = limiter
                .check(&Request {
                    identity: request.identity(&limit.namespace),
                    cost: request.cost,
                    now_ms: request.at_ms,
                })
                .await?;
            if allowed {
                for logical in logicals {
                    admitted
                        .entry(logical)
                        .or_default()
                        .push((request.at_ms, request.cost));
                }
            }
        }
    }
    let mut report = Cutover {
        switch_ms,
        logical_keys: renamed.len() as u64,
        keys_renamed: renamed.values().filter(|&&renamed| renamed).count() as u64,
        ..Cutover::default()
    };
    worst_over_admission(
        &mut report,
        (before, after),
        &admitted,
        old_admitted,
        &renamed,
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    //! Each finding with a scheme pair that must trigger it and one that must not, on the
    //! shipped scenario's traffic (seed 1) or a hand-made trace.

    use super::*;
    use crate::scenario::Scenario;

    const BASE: &str = include_str!("../schemes/examples/base.toml");

    fn set(text: &str) -> SchemeSet {
        SchemeSet::from_toml(text, "test")
            .unwrap_or_else(|error| panic!("a shipped scheme is bad: {error}"))
    }

    fn example(name: &str) -> SchemeSet {
        let path = format!(
            "{}/schemes/examples/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        set(&std::fs::read_to_string(path).expect("shipped"))
    }

    fn traffic(seed: u64) -> Vec<TrafficRequest> {
        let text = include_str!("../scenarios/mixed-limit-kinds.toml");
        crate::traffic::from_scenario(&Scenario::from_toml(text).unwrap(), seed).unwrap()
    }

    #[test]
    fn identical_schemes_change_nothing_and_the_traffic_is_denied_some() {
        // Goal: the null pair passes, on traffic that exercises the limits (denials happen,
        // so a decision could have differed). Method: base against base.
        let base = set(BASE);
        let requests = traffic(1);
        let report = compare(&base, &base, &requests).unwrap();
        assert!(report.semantic_changes().is_empty());
        assert_eq!(report.differences.count, 0);
        assert_eq!(report.before.outside_alphabet, 0);
        assert_eq!(report.cutover.keys_renamed, 0);
        assert_eq!(report.cutover.worst_over_admission, 0);
        let replayed = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(replay(&base, &requests))
            .unwrap();
        let denied = replayed
            .decisions
            .iter()
            .flatten()
            .filter(|d| !d.allowed)
            .count();
        assert!(
            denied > 50,
            "only {denied} denials: the traffic does not test the limits"
        );
    }

    #[test]
    fn one_traffic_gives_one_report() {
        // Goal: determinism: the same schemes and traffic give the same report, byte for
        // byte. Method: compare twice (fresh models each time) and serialise both.
        let current = set(include_str!("../schemes/new-api-current.toml"));
        let planned = set(include_str!("../schemes/new-api-planned.toml"));
        let requests = traffic(2);
        let first = serde_json::to_string(&compare(&current, &planned, &requests).unwrap());
        let second = serde_json::to_string(&compare(&current, &planned, &requests).unwrap());
        assert_eq!(first.unwrap(), second.unwrap());
    }

    #[test]
    fn a_hash_tag_change_moves_load_and_nothing_else() {
        // Goal: load moves are reported, not failures. Method: base against tag-move.
        let report = compare(&set(BASE), &example("tag-move"), &traffic(1)).unwrap();
        assert!(
            report.semantic_changes().is_empty(),
            "{:?}",
            report.semantic_changes()
        );
        assert_ne!(report.before.load.per_node, report.after.load.per_node);
        assert_eq!(report.before.load.commands, report.after.load.commands);
    }

    #[test]
    fn a_rename_resets_every_counter_at_the_cut_over() {
        // Goal: a rename decides the same but, during the cut-over, admits more than the old
        // scheme alone, within the bound of a second counter. Method: base against rename;
        // base against itself admits nothing extra.
        let report = compare(&set(BASE), &example("rename"), &traffic(1)).unwrap();
        assert!(report.semantic_changes().is_empty());
        let cutover = &report.cutover;
        assert_eq!(cutover.keys_renamed, cutover.logical_keys);
        assert!(cutover.worst_over_admission > 0, "{cutover:?}");
        assert!(
            cutover.worst_over_admission <= cutover.worst_bound,
            "{cutover:?}"
        );
    }

    #[test]
    fn a_separator_fields_may_hold_is_a_collision_found_and_confirmed() {
        // Goal: found from the template (with a witness), confirmed when the traffic holds
        // two identities on one key, and then their shared counter changes decisions.
        // Method: base against separator on a trace of two such identities.
        let mut requests = Vec::new();
        for index in 0..24u64 {
            let (model, group) = if index % 2 == 0 {
                ("gpt-4o", "vip")
            } else {
                ("gpt", "4o-vip")
            };
            requests.push(TrafficRequest {
                at_ms: 1_000 + index * 10,
                limits: vec!["model".to_owned()],
                fields: [("user", "7"), ("model", model), ("group", group)]
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value.to_owned()))
                    .collect(),
                cost: 1,
                gateway: Some(0),
            });
        }
        let report = compare(&set(BASE), &example("separator"), &requests).unwrap();
        assert!(report.before.collisions.is_empty());
        assert_eq!(report.before.confirmed_count, 0);
        let found = &report.after.collisions;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].cause, "separator");
        assert_eq!(report.after.confirmed_count, 1);
        assert_eq!(report.after.confirmed[0].key, "rl:model:{u:7}:gpt-4o-vip");
        assert!(
            report
                .differences
                .per_limit
                .get("model")
                .copied()
                .unwrap_or(0)
                > 0
        );
        assert!(!report.semantic_changes().is_empty());
    }

    #[test]
    fn a_multi_limit_that_loses_its_common_tag_is_crossslot() {
        // Goal: every model request (total and success decided together) is CROSSSLOT once
        // the success key loses the tag; none before. Method: base against lost-tag.
        let requests = traffic(1);
        let model_requests = requests.iter().filter(|r| r.limits == ["model"]).count() as u64;
        let report = compare(&set(BASE), &example("lost-tag"), &requests).unwrap();
        assert_eq!(report.before.crossslot_count, 0);
        assert_eq!(report.after.crossslot_count, model_requests);
        let keys = &report.after.crossslot[0].keys;
        assert_ne!(keys[0].1, keys[1].1, "{keys:?}");
        assert_eq!(report.differences.count, 0);
        assert!(!report.semantic_changes().is_empty());
    }

    #[test]
    fn a_shard_count_change_changes_the_bound_and_the_decisions() {
        // Goal: splitting a limit keeps its upper bound but lowers what it admits before a
        // refusal, and the replay shows the decisions that change. Method: base vs shards.
        let report = compare(&set(BASE), &example("shards"), &traffic(1)).unwrap();
        let ip = |report: &SchemeReport| {
            report
                .bounds
                .iter()
                .find(|b| b.kind == "ip")
                .cloned()
                .unwrap()
        };
        assert_eq!(
            ip(&report.before).upper_per_window,
            ip(&report.after).upper_per_window
        );
        assert_eq!(
            (
                ip(&report.before).floor_before_refusal,
                ip(&report.after).floor_before_refusal
            ),
            (10, 4)
        );
        assert!(report.differences.per_limit.get("ip").copied().unwrap_or(0) > 0);
        assert_eq!(
            report.differences.per_limit.len(),
            1,
            "only the ip limit changed"
        );
    }

    #[test]
    fn new_api_current_against_planned() {
        // Goal: the migration's numbers, pinned: no collision and no CROSSSLOT either side,
        // every key renamed, and the sharded GA limit the only source of differing decisions.
        let current = set(include_str!("../schemes/new-api-current.toml"));
        let planned = set(include_str!("../schemes/new-api-planned.toml"));
        let report = compare(&current, &planned, &traffic(1)).unwrap();
        assert!(report.before.collisions.is_empty() && report.after.collisions.is_empty());
        assert_eq!(
            (report.before.crossslot_count, report.after.crossslot_count),
            (0, 0)
        );
        assert_eq!(report.cutover.keys_renamed, report.cutover.logical_keys);
        assert_eq!(report.before.load.node_max_over_mean, 1.0);
        // The scenario's model users are `model-<k>`: not new-api's digit ids, and said so.
        assert!(report.before.outside_alphabet > 0);
        assert_eq!(
            report.before.outside_alphabet_example.as_deref(),
            Some("user=\"model-2\"")
        );
        assert!(report.differences.per_limit.keys().all(|kind| kind == "ip"));
    }

    #[test]
    fn new_api_keys_collide_only_if_user_ids_stop_being_digits() {
        // Goal: Envoy's collision, checked on new-api's `rateLimit:` keys. Method: the
        // shipped scheme (ids are digits: no collision), then the same keys with ids that may
        // hold letters: the bucket key `rateLimit:<id>`, which has no namespace of its own,
        // meets the GA IP key.
        let text = include_str!("../schemes/new-api-current.toml");
        assert_eq!(collisions(&set(text)), Vec::new());
        let letters = set(&text.replace("user = \"0-9\"", ""));
        assert_eq!(
            collisions(&letters),
            vec![Collision {
                kinds: ("ip".to_owned(), "model".to_owned()),
                cause: "namespace".to_owned(),
                witness: "rateLimit:GA0".to_owned(),
            }]
        );
    }

    #[test]
    fn bijective_renderings_never_change_a_decision() {
        // Goal: the property of section 4: when the keys of two schemes are a bijection of
        // each other, the replay finds no differing decision. Method: 12 seeded draws of a
        // prefix, separator, hash-tag style and namespaces, each template keeping every field
        // apart (model last, separators no other field holds), on three traffic seeds;
        // injectivity is checked on the traffic (no confirmed collision) before judging.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
        let base = set(BASE);
        for draw in 0..12 {
            let prefix = ["rl:", "RL/", "limits.", "x"][rng.random_range(0..4)];
            let sep = [":", "/", "|"][rng.random_range(0..3)];
            let tag = |field: &str, style: usize| match style {
                0 => format!("{{u{sep}${field}}}"),
                1 => format!("{{${field}}}"),
                _ => format!("${field}"),
            };
            let style = rng.random_range(0..3);
            let ns = |kind: &str, suffix: u32| format!("{kind}{suffix}");
            let suffix = rng.random_range(0..100);
            let text = format!(
                "together = [[\"model\", \"success\"]]\n[topology]\nkind = \"cluster\"\nmasters = {}\n\
                 [limits.ip]\ntemplate = \"{prefix}{}{sep}{}\"\nalgorithm = \"gcra\"\nlimit = 10\nwindow_ms = 1000\n\
                 [limits.user]\ntemplate = \"{prefix}{}{sep}{}\"\nalgorithm = \"gcra\"\nlimit = 10\nwindow_ms = 1000\n\
                 [limits.model]\ntemplate = \"{prefix}{}{sep}{}{sep}$group{sep}$model\"\nalgorithm = \"gcra\"\nlimit = 10\nwindow_ms = 1000\n\
                 [limits.success]\ntemplate = \"{prefix}{}{sep}{}\"\nalgorithm = \"sliding_log\"\nlimit = 8\nwindow_ms = 1000\n",
                rng.random_range(1..7),
                ns("ip", suffix),
                tag("ip", style),
                ns("user", suffix),
                tag("user", style),
                ns("model", suffix),
                tag("user", style),
                ns("success", suffix),
                tag("user", style),
            );
            let renamed = set(&text);
            let requests = traffic(1 + draw % 3);
            let report = compare(&base, &renamed, &requests).unwrap();
            assert_eq!(
                report.after.confirmed_count, 0,
                "not a bijection on this traffic:\n{text}"
            );
            assert_eq!(
                report.differences.count, 0,
                "draw {draw}:\n{text}\n{:?}",
                report.differences.examples
            );
        }
    }

    #[test]
    fn a_merged_multi_limit_is_one_call_all_or_nothing() {
        // Goal: a `together` group of GCRA limits is replayed as the one `multi_limit.lua`
        // call it is, not limit by limit: a request the model limit refuses charges the
        // user limit nothing. Method: user L=10 and model L=2 per second, decided together
        // (merged) or, with the group removed, each by its own call; ten requests under both
        // limits at once, then eight on other models. Merged: two pass, the user
        // limit keeps eight for the later ones (each on a model of its own); per limit: the
        // user limit admits all ten of the first (its own call) and has none left.
        let text = "together = [[\"user\", \"model\"]]\n\
            [limits.user]\ntemplate = \"rl:$ns:{u:$user}\"\nalgorithm = \"gcra\"\nlimit = 10\nwindow_ms = 1000\n\
            [limits.model]\ntemplate = \"rl:$ns:{u:$user}:$model\"\nalgorithm = \"gcra\"\nlimit = 2\nwindow_ms = 1000\n";
        let merged = set(text);
        assert!(merged.merged(&merged.together[0]));
        assert_eq!(
            merged.calls(&["model".to_owned()]),
            vec![vec!["model".to_owned(), "user".to_owned()]]
        );
        let mut separate = merged.clone();
        separate.together.clear();
        let request = |at_ms: u64, model: String| TrafficRequest {
            at_ms,
            limits: vec!["user".to_owned(), "model".to_owned()],
            fields: [("user", "7".to_owned()), ("model", model)]
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            cost: 1,
            gateway: Some(0),
        };
        let mut requests: Vec<TrafficRequest> = (0..10)
            .map(|i| request(1_000 + i, "gpt-4o".to_owned()))
            .collect();
        requests.extend((0..8).map(|i| request(1_020 + i, format!("model-{i}"))));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let allowed = |set: &SchemeSet, kind: &str, range: std::ops::Range<usize>| {
            let replayed = runtime.block_on(replay(set, &requests)).unwrap();
            replayed.decisions[range]
                .iter()
                .flatten()
                .filter(|d| d.kind == kind && d.allowed)
                .count()
        };
        assert_eq!(allowed(&merged, "model", 0..10), 2);
        assert_eq!(allowed(&merged, "user", 0..10), 2, "all or nothing");
        assert_eq!(allowed(&merged, "user", 10..18), 8);
        assert_eq!(allowed(&separate, "model", 0..10), 2);
        assert_eq!(
            allowed(&separate, "user", 0..10),
            10,
            "charged by its own call"
        );
        assert_eq!(allowed(&separate, "user", 10..18), 0);
        let report = compare(&separate, &merged, &requests).unwrap();
        assert_eq!(report.differences.per_limit.get("user"), Some(&16));
    }
}
