//! The bounds: each limiter's stated bound (`admission_bound`, `success_bound`), the
//! allowances faults earn (`Resets`), and the checks that hold a ledger's per-key series to
//! them: the worst excess, the time margin, the resolution, the aligned windows and the
//! multi-limit's limits.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::dynamics::drift_ms;
use crate::event::{Event, Outcome};
use crate::harness::EPOCH_MS;
use crate::scenario::{
    Durability, Fault, FaultKind, LimiterKind, SHARDED_SCHEME_DEFAULT, Scenario, Topology,
};

use super::*;

/// The bound checks: admissions and successes per key within the limiter's stated bound
/// (per group when groups have their own), the multi-limit's limits, and the aligned
/// windows; with the margins, the resolution and the failover excess they find. Returns the
/// verdicts and a timeline per violated bound.
pub(crate) fn judge(
    scenario: &Scenario,
    events: &[Event],
    ledger: &mut Ledger<'_>,
) -> (Vec<Verdict>, Vec<String>) {
    let Ledger {
        metrics,
        requests,
        admissions,
        successes,
        aligned,
        gateway_margins,
        grouped,
        group_admissions,
        ..
    } = ledger;
    let grouped = *grouped;
    let mut verdicts = Vec::new();
    let mut timelines = Vec::new();
    // The first group states the limit; a second kind on the same keys (a rolling upgrade)
    // is judged against it, so an upgrade that doubles the limit is found.
    let first_kind = scenario.gateways[0].limiter;
    let kinds: Vec<LimiterKind> = scenario
        .gateways
        .iter()
        .map(|group| group.limiter)
        .collect();
    let bucket_margin = if kinds.iter().any(|kind| kind.is_legacy()) {
        1_000
    } else {
        0
    };
    let resets = resets(scenario, &kinds);
    let failover_at_ms: Vec<u64> = scenario
        .faults
        .iter()
        .filter(|fault| matches!(fault.kind, FaultKind::Failover {}))
        .map(|fault| fault.at_ms)
        .collect();
    metrics.failovers = u64::try_from(failover_at_ms.len()).expect("fits");
    if metrics.failovers > 0 {
        metrics.failover_allowance = scenario.limit.limit + 1;
    }
    // The same resets without the failovers: the plain bound, against which a failover's
    // lost writes show as excess.
    let plain_resets = {
        let mut plain = resets.clone();
        for at in &failover_at_ms {
            if let Some(position) = plain.at_ms.iter().position(|reset| reset == at) {
                plain.at_ms.remove(position);
            }
        }
        plain
    };
    let mut bound_checks = Vec::new();
    // With per-group limits the first group's bound says nothing about the others' keys;
    // each group is judged against its own below.
    if let Some(bound) = admission_bound(first_kind, scenario).filter(|_| !grouped) {
        bound_checks.push(("admissions_within_bound", "admissions", bound, &*admissions));
    }
    if let Some(bound) = success_bound(first_kind, scenario) {
        bound_checks.push(("successes_within_bound", "successes", bound, &*successes));
    }
    let worst_command_ms = scenario.worst_command_ms();
    let success_resets = Resets {
        reach_ms: scenario.upstream.latency.max_ms() + worst_command_ms,
        ..resets.clone()
    };
    let extra_of = |bound: Bound| match bound {
        Bound::Rate { .. } => bucket_margin,
        Bound::Window { .. } => 0,
    };
    let mut key_margins: Vec<u64> = Vec::new();
    for (name, what, bound, per_key) in bound_checks {
        let all_resets = if what == "successes" {
            &success_resets
        } else {
            &resets
        };
        let extra = extra_of(bound);
        let mut worst: Option<Excess> = None;
        let mut keys_over = 0;
        // The key with the widest margin: whether the check may judge.
        let mut widest: Option<(u64, &String)> = None;
        // The finest resolution over keys (0: none judged yet).
        let mut finest = 0;
        for (key, points) in per_key {
            let mut points = points.clone();
            points.sort_unstable();
            let resets = &all_resets.for_key(scenario, key);
            let plain_resets = &plain_resets.for_key(scenario, key);
            let walked = judge_windows(&points, bound, extra, resets, true);
            finest = finer(finest, walked.resolution);
            let margin = key_margin_ms(&points, extra);
            if what == "admissions" {
                key_margins.push(margin);
                metrics.unjudged_admissions += wide_points(&points, extra, bound);
            }
            if widest.is_none_or(|(widest, _)| margin > widest) {
                widest = Some((margin, key));
            }
            if what == "admissions"
                && metrics.failovers > 0
                && let Some((_, _, counted, allowed)) =
                    worst_excess(&points, bound, extra, plain_resets)
            {
                metrics.failover_excess = metrics.failover_excess.max(counted - allowed);
            }
            if let Some((start_ms, end_ms, counted, allowed)) = walked.worst {
                keys_over += 1;
                let excess = Excess {
                    key: key.clone(),
                    start_ms,
                    end_ms,
                    counted,
                    allowed,
                };
                if worst
                    .as_ref()
                    .is_none_or(|worst| counted - allowed > worst.counted - worst.allowed)
                {
                    worst = Some(excess);
                }
            }
        }
        let (margin, widest_key) = widest.map_or((0, "-"), |(margin, key)| (margin, key.as_str()));
        let refused = margin * MARGIN_SHARE_MAX > bound_span_ms(bound);
        if what == "admissions" {
            metrics.over_admission_max = worst
                .as_ref()
                .map_or(0, |excess| excess.counted - excess.allowed);
            metrics.over_admission_resolution = finest;
        } else {
            metrics.success_resolution = finest;
        }
        let detail = match &worst {
            _ if refused => format!(
                "refused to judge: key {widest_key}'s time margin {margin} ms is more than 1/{MARGIN_SHARE_MAX} of the bound's {} ms ({bound}), so it could hide {} units{}",
                bound_span_ms(bound),
                hidden_by_margin(bound, margin),
                worst.as_ref().map_or(String::new(), |excess| format!(
                    "; even so, key {} had {} {what} in [{} ms, {} ms] where {} are allowed",
                    excess.key, excess.counted, excess.start_ms, excess.end_ms, excess.allowed
                ))
            ),
            None => format!(
                "every key within {bound} (widest time margin {margin} ms on key {widest_key}; sees an over-admission of {finest} at the tightest place; {} admissions too slow to place; {} reset allowances, each only where a key had admitted before it; {} fail-open admissions not counted)",
                metrics.unjudged_admissions,
                all_resets.at_ms.len() + all_resets.shard_resets.len(),
                metrics.fail_open
            ),
            Some(excess) => format!(
                "{keys_over} key(s) over {bound}; worst: key {} had {} {what} in [{} ms, {} ms] where {} are allowed",
                excess.key, excess.counted, excess.start_ms, excess.end_ms, excess.allowed
            ),
        };
        if let Some(excess) = &worst {
            timelines.push(timeline(name, excess, events, requests));
        }
        verdicts.push(Verdict {
            name: name.to_owned(),
            kind: VerdictKind::Safety,
            held: worst.is_none() && !refused,
            detail,
        });
    }

    if first_kind == LimiterKind::MultiLimit {
        verdicts.push(multi_limit_verdict(
            scenario,
            events,
            bucket_margin,
            &resets,
            metrics,
            &mut key_margins,
        ));
    }

    if !grouped && kinds.iter().all(|kind| clock_aligned(*kind)) {
        verdicts.push(aligned_windows_verdict(scenario, aligned, &resets, metrics));
    }

    if grouped {
        let mut over = Vec::new();
        let mut refusals = Vec::new();
        let mut finest = 0;
        for ((group, key), points) in group_admissions.iter() {
            let settings = &scenario.gateways[*group];
            let Some(bound) = admission_bound(settings.limiter, &scenario.for_group(settings))
            else {
                continue;
            };
            let extra = extra_of(bound);
            let mut points = points.clone();
            points.sort_unstable();
            let margin = key_margin_ms(&points, extra);
            key_margins.push(margin);
            metrics.unjudged_admissions += wide_points(&points, extra, bound);
            let resets = &resets.for_key(scenario, key);
            let walked = judge_windows(&points, bound, extra, resets, true);
            finest = finer(finest, walked.resolution);
            if margin * MARGIN_SHARE_MAX > bound_span_ms(bound) {
                refusals.push(format!(
                    "group {group} key {key}: time margin {margin} ms against {bound}"
                ));
            }
            if let Some((start_ms, end_ms, counted, allowed)) = walked.worst {
                metrics.over_admission_max = metrics.over_admission_max.max(counted - allowed);
                over.push(format!(
                    "group {group} ({}) key {key}: {counted} admissions in [{start_ms} ms, {end_ms} ms] where {allowed} are allowed ({bound})",
                    settings.group.as_deref().unwrap_or("default")
                ));
            }
        }
        metrics.over_admission_resolution = finest;
        verdicts.push(Verdict {
            name: "group_admissions_within_bound".to_owned(),
            kind: VerdictKind::Safety,
            held: over.is_empty() && refusals.is_empty(),
            detail: if let Some(refusal) = refusals.first() {
                format!("refused to judge: {refusal} (more than 1/{MARGIN_SHARE_MAX} of its span)")
            } else if over.is_empty() {
                format!(
                    "every group's admissions on every key within its own bound (sees an over-admission of {finest} at the tightest place)"
                )
            } else {
                format!("{} (group, key) pairs over: {}", over.len(), over[0])
            },
        });
    }
    key_margins.sort_unstable();
    metrics.margin_ms_max = key_margins.last().copied().unwrap_or(0);
    metrics.margin_ms_p50_key = percentile(&key_margins, 500);
    metrics.margin_ms_per_gateway = std::mem::take(gateway_margins).into_iter().collect();
    (verdicts, timelines)
}

/// A limiter's stated bound on weighted events per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// At most `limit` in every trailing window of `span_ms`.
    Window {
        /// The most allowed.
        limit: u64,
        /// The window.
        span_ms: u64,
    },
    /// At most `burst + ⌊Δ / interval_ms⌋` in every interval of length Δ.
    Rate {
        /// B.
        burst: u64,
        /// T.
        interval_ms: u64,
    },
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Window { limit, span_ms } => write!(f, "{limit} per {span_ms} ms window"),
            Bound::Rate { burst, interval_ms } => {
                write!(f, "{burst} + floor(Δ / {interval_ms} ms) in any Δ")
            }
        }
    }
}

/// The bound on admissions (weighted by cost) of `kind`, if it states one.
pub fn admission_bound(kind: LimiterKind, scenario: &Scenario) -> Option<Bound> {
    let limit = scenario.limit.limit;
    let window_ms = scenario.limit.window_ms;
    match kind {
        LimiterKind::LegacyIpList
        | LimiterKind::LegacyUserList
        | LimiterKind::AtomicSlidingLog
        | LimiterKind::LegacyMemoryList => Some(Bound::Window {
            limit,
            span_ms: window_ms,
        }),
        // new-api's email INCR is a fixed window that starts at the key's first request; the
        // sliding window counter and the pipelined fixed window admit L per aligned window.
        LimiterKind::AtomicFixedWindow
        | LimiterKind::LegacyEmail
        | LimiterKind::AtomicSlidingWindow
        | LimiterKind::PipelinedFixedWindow => Some(Bound::Window {
            limit: 2 * limit,
            span_ms: window_ms,
        }),
        LimiterKind::AtomicGcra
        | LimiterKind::AtomicTokenBucket
        | LimiterKind::LegacyTokenBucket
        | LimiterKind::MemoryGcra
        // The shards' shares add up to the whole; the hybrid admits only what its
        // authority (the GCRA script) admits.
        | LimiterKind::ShardedGcra
        | LimiterKind::HybridGcra => Some(Bound::Rate {
            burst: limit,
            interval_ms: window_ms / limit,
        }),
        LimiterKind::LegacyModelRequest if scenario.limit.total > 0 => Some(Bound::Rate {
            burst: scenario.limit.total,
            interval_ms: window_ms / scenario.limit.total,
        }),
        // Each of its limits is judged on its own keys: `multi_limit_verdict`.
        LimiterKind::LegacyModelRequest
        | LimiterKind::SuccessReservation
        | LimiterKind::MultiLimit => None,
    }
}

/// The bound on successes of `kind`, if it is a success limit.
pub fn success_bound(kind: LimiterKind, scenario: &Scenario) -> Option<Bound> {
    kind.counts_successes().then_some(Bound::Window {
        limit: scenario.limit.limit,
        span_ms: scenario.limit.window_ms,
    })
}

/// The fault instants that lawfully let a limiter start over: Redis restarts (each by its
/// persistence: [`restart_reset`]), flushes, failovers, forward Redis clock steps (and backward ones for clock-aligned
/// windows), the same gateway clock steps when a legacy limiter (gateway time) runs, and
/// restarts of a gateway whose limiter keeps its state in the process (`legacy_memory_list`,
/// `memory_gcra`: the new process starts empty). A restart of a gateway with a Redis-backed
/// limiter is no reset: the state is in Redis and survives it.
pub fn resets(scenario: &Scenario, kinds: &[LimiterKind]) -> Resets {
    let legacy = kinds.iter().any(|kind| kind.uses_gateway_clock());
    let in_memory_gateway = |host: &str| {
        host.strip_prefix("gateway-")
            .and_then(|index| index.parse::<u32>().ok())
            .and_then(|index| scenario.gateway_group(index))
            .is_some_and(|group| group.limiter.is_in_memory())
    };
    let is_reset = |fault: &&Fault| match &fault.kind {
        FaultKind::RedisRestart { .. } => restart_reset(&fault.kind, fault.at_ms).is_some(),
        FaultKind::Flush {} | FaultKind::Failover {} => true,
        // A step back only makes a limiter stricter (its state looks newer), except
        // where windows are aligned to the clock: stepping into an earlier window finds
        // no count for it.
        FaultKind::ClockStep { host, step_ms } => {
            (legacy || host.starts_with("redis-"))
                && (*step_ms > 0 || kinds.iter().any(|kind| clock_aligned(*kind)))
        }
        FaultKind::GatewayRestart { host, .. } => in_memory_gateway(host),
        _ => false,
    };
    let mut at_ms: Vec<u64> = scenario
        .faults
        .iter()
        .filter(is_reset)
        .map(|fault| fault.at_ms)
        .collect();
    at_ms.sort_unstable();
    // A restart that kept an earlier state forgets less, unless a full reset shares its
    // instant (then that one forgets everything before it).
    let mut kept_as_of_ms: BTreeMap<u64, u64> = BTreeMap::new();
    for fault in &scenario.faults {
        if let Some(Some(kept)) = restart_reset(&fault.kind, fault.at_ms) {
            kept_as_of_ms.insert(fault.at_ms, kept);
        }
    }
    kept_as_of_ms.retain(|at, _| {
        at_ms.iter().filter(|reset| *reset == at).count()
            == scenario
                .faults
                .iter()
                .filter(|fault| {
                    fault.at_ms == *at && matches!(restart_reset(&fault.kind, *at), Some(Some(_)))
                })
                .count()
    });
    // On a cluster a Redis restart bounces `redis-0`, and a Redis clock step moves one
    // node's clock: only the keys whose slot that node owns are reset (`Resets::for_key`).
    let mut shard_resets = Vec::new();
    if scenario.redis.topology == Topology::Cluster {
        for fault in scenario.faults.iter().filter(is_reset) {
            let node = match &fault.kind {
                FaultKind::RedisRestart { .. } => Some(0),
                FaultKind::ClockStep { host, .. } if !legacy => redis_node(host),
                _ => None,
            };
            if let Some(node) = node
                && let Some(position) = at_ms.iter().position(|&at| at == fault.at_ms)
            {
                at_ms.remove(position);
                shard_resets.push((node, fault.at_ms));
            }
        }
    }
    Resets {
        at_ms,
        reach_ms: 0,
        shard_resets,
        kept_as_of_ms,
    }
}

/// Whether a key of the log (`k3`, `ip:k3`) or a rendered Redis key lives, on a cluster, on
/// the node a Redis restart bounces (`redis-0`, the first slot range). Always true off a
/// cluster. [`key_on_node`] for node 0.
pub fn on_restarted_shard(scenario: &Scenario, key: &str) -> bool {
    key_on_node(scenario, key, 0)
}

/// Whether a key of the log (`k3`, `ip:k3`) or a rendered Redis key lives, on a cluster, on
/// `redis-<node>`: rendered as each gateway group renders it (its template, every shard of
/// a sharded key), any of its Redis keys in that node's slots. A key the log cannot name is
/// taken to be there (a reset's allowance is then granted, never wrongly withheld). Always
/// true off a cluster.
pub fn key_on_node(scenario: &Scenario, key: &str, node: u32) -> bool {
    use crate::harness::{identity, parse_key_name};
    use crate::topology::shard_slots;
    use ratelab::keys::{KeyScheme, key_slot};

    if scenario.redis.topology != Topology::Cluster {
        return true;
    }
    let (low, high) = shard_slots(node, scenario.redis.shards.max(1));
    let on_node = |rendered: &[u8]| (low..=high).contains(&key_slot(rendered));
    let Some((kind, number)) = parse_key_name(key) else {
        // A rendered key (the multi-limit's per-limit keys).
        return on_node(key.as_bytes());
    };
    scenario.gateways.iter().any(|group| {
        let (template, shards) = match group.limiter {
            LimiterKind::ShardedGcra => (SHARDED_SCHEME_DEFAULT, group.key_shards()),
            _ => ("rl:$ns:{u:$user}", 1),
        };
        let who = identity(
            group.limiter,
            kind,
            number,
            group.group.as_deref().unwrap_or("default"),
        );
        let Ok(scheme) = KeyScheme::parse(group.key_scheme.as_deref().unwrap_or(template), shards)
        else {
            return true;
        };
        match scheme.render_all(&who) {
            Ok(keys) => keys.iter().any(|rendered| on_node(rendered)),
            Err(_) => true,
        }
    })
}

/// The one cluster node that holds `key` (what [`key_on_node`] says of exactly one node),
/// or `None` when it is on several or cannot be told. Off a cluster, node 0.
fn key_node(scenario: &Scenario, key: &str) -> Option<u32> {
    if scenario.redis.topology != Topology::Cluster {
        return Some(0);
    }
    let mut nodes =
        (0..scenario.redis.shards.max(1)).filter(|&node| key_on_node(scenario, key, node));
    match (nodes.next(), nodes.next()) {
        (Some(node), None) => Some(node),
        _ => None,
    }
}

/// The node number of a Redis host name (`redis-2` → 2).
fn redis_node(host: &str) -> Option<u32> {
    host.strip_prefix("redis-")?.parse().ok()
}

/// The reset a Redis restart at `at_ms` is, by its persistence: `None` when it is none;
/// `Some(None)` when it forgets every write before it; `Some(Some(kept_ms))` when it forgets
/// only the writes after `kept_ms`. Without persistence the node starts empty (today's
/// allowance: what a key admitted before the restart). `aof_always` kept every acknowledged
/// write, so it earns no allowance. `aof_everysec` kept the state of its last whole-second
/// fsync, so a key's allowance is at most what it admitted in the last second before the
/// restart; `rdb` kept its last snapshot, so what the key admitted since that snapshot.
pub fn restart_reset(kind: &FaultKind, at_ms: u64) -> Option<Option<u64>> {
    match kind.durability(at_ms)? {
        Durability::Nothing => Some(None),
        Durability::Everything => None,
        Durability::AsOf { synced_at_ms } => Some(Some(synced_at_ms)),
    }
}

/// Whether `kind`'s windows are aligned to its clock (a step back re-enters a window whose
/// count is gone). A kind whose state only ages with the clock (logs, GCRA, buckets) is
/// made stricter by a step back and earns no allowance for it.
pub(crate) fn clock_aligned(kind: LimiterKind) -> bool {
    matches!(
        kind,
        LimiterKind::AtomicFixedWindow
            | LimiterKind::AtomicSlidingWindow
            | LimiterKind::PipelinedFixedWindow
    )
}

/// The worst window found for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Excess {
    key: String,
    start_ms: u64,
    end_ms: u64,
    counted: u64,
    allowed: u64,
}

/// Instants at which a limiter may lawfully start over (a Redis restart loses its state; a
/// clock step moves its windows). Each is worth at most one more `base + 1` in a window or
/// interval that contains it, and only as much as that key had admitted in it before the
/// reset: a reset that forgets nothing of a key earns that key nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resets {
    /// Sorted times, ms: resets of every key.
    pub at_ms: Vec<u64>,
    /// Cluster: resets of one node only, `(node, at_ms)`: a Redis restart (it bounces
    /// `redis-0`) or a clock step of `redis-<node>`. They reset only the keys whose slot that
    /// node owns; [`Resets::for_key`] adds them for those keys.
    pub shard_resets: Vec<(u32, u64)>,
    /// How long after a reset its effect lasts, ms: 0 for admissions; for successes, the
    /// longest a request admitted before it can take to complete after it (its success lands
    /// on the fresh state that no longer holds its reservation).
    pub reach_ms: u64,
    /// For a restart that brought back the state of an earlier fsync or snapshot: its
    /// instant → that sync's instant. Only what a key may have admitted after the sync was
    /// forgotten, so only that is excused (a point whose latest time is at or before the sync
    /// surely ran before it).
    pub kept_as_of_ms: BTreeMap<u64, u64>,
}

impl Resets {
    /// The resets of `key`: every reset, plus each cluster node's own resets when the key
    /// lives on that node ([`key_on_node`]). The one place that decides which resets a key
    /// earns an allowance for.
    pub fn for_key(&self, scenario: &Scenario, key: &str) -> Resets {
        let mut at_ms = self.at_ms.clone();
        let mut on_node: BTreeMap<u32, bool> = BTreeMap::new();
        for &(node, at) in &self.shard_resets {
            if *on_node
                .entry(node)
                .or_insert_with(|| key_on_node(scenario, key, node))
            {
                at_ms.push(at);
            }
        }
        at_ms.sort_unstable();
        Resets {
            at_ms,
            reach_ms: self.reach_ms,
            shard_resets: Vec::new(),
            kept_as_of_ms: self.kept_as_of_ms.clone(),
        }
    }

    /// What the resets inside `[start_ms, end_ms]` excuse in `set`: per reset, the set's
    /// weight that may lie before it (its earliest time at or before the reset, plus the
    /// reach), capped at `base_plus_one`.
    pub(super) fn allowance(
        &self,
        set: &[Point],
        start_ms: u64,
        end_ms: u64,
        base_plus_one: u64,
    ) -> u64 {
        self.at_ms
            .iter()
            .filter(|&&at| at + self.reach_ms >= start_ms && at <= end_ms)
            .map(|&at| {
                let kept = self.kept_as_of_ms.get(&at).copied();
                let before: u64 = set
                    .iter()
                    .filter(|point| point.1 <= at + self.reach_ms)
                    .filter(|point| kept.is_none_or(|kept| point.0 > kept))
                    .map(|point| point.2)
                    .sum();
                before.min(base_plus_one)
            })
            .sum()
    }
}

/// What one walk over a key's windows finds: the worst excess over the bound, if any, as
/// `(start_ms, end_ms, counted, allowed)`, and the resolution (see [`judge_windows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Walked {
    pub(crate) worst: Option<(u64, u64, u64, u64)>,
    /// `None` for a key without admissions, or when the walk was not asked for it.
    pub(crate) resolution: Option<u64>,
}

/// The one walk over every window or interval the check judges on `points` (sorted by
/// their latest time), finding both the worst excess over `bound` and, when
/// `with_resolution`, the resolution.
///
/// **The sets.** For each end `e` (a point's latest time) the walk takes every point that
/// surely lies in a window or interval ending at `e`: latest at most `e`, earliest at or
/// after the start. A window takes every such point whose earliest is within `span - 1`
/// of `e` (and each tail of it that surely starts after a reset inside it: a tail may
/// exceed the base limit while the whole, which earns the reset's allowance, does not); an
/// interval tries each start `s` (an earliest time) and is allowed
/// `burst + floor((e - s + extra) / T)`. A slow point is left out of a set it cannot surely
/// be in, without widening the set. `extra_ms` widens every span (new-api's bucket, whose
/// Redis TIME has whole seconds). Each set is allowed its base plus the reset allowances
/// ([`Resets::allowance`]).
///
/// **Excess**: the set over its allowance by the most (the first found among equals).
/// **Resolution**: the smallest over-admission (units) the check sees on this key's log:
/// 1 plus the least headroom `allowed - counted` over every set, so one unit more admitted
/// inside the tightest of them fails the verdict. Computed from the log, not from a
/// formula on the margin: a saturated key's resolution is 1 whatever its margin, an idle
/// key's is large.
///
/// Each finding prunes only what cannot change it, and the walk skips a set (or stops
/// moving a start back) only when neither finding can change, so both are exact.
pub(crate) fn judge_windows(
    points: &[Point],
    bound: Bound,
    extra_ms: u64,
    resets: &Resets,
    with_resolution: bool,
) -> Walked {
    let mut worst: Option<(u64, u64, u64, u64)> = None;
    let mut consider = |start: u64, end: u64, counted: u64, allowed: u64| {
        if counted > allowed
            && worst.is_none_or(|(_, _, worst_counted, worst_allowed)| {
                counted - allowed > worst_counted - worst_allowed
            })
        {
            worst = Some((start, end, counted, allowed));
        }
    };
    // The least headroom seen so far.
    let mut least: Option<u64> = None;
    let note = |least: &mut Option<u64>, headroom: u64| {
        *least = Some(least.map_or(headroom, |least| least.min(headroom)));
    };
    let weight_of = |set: &[Point]| set.iter().map(|point| point.2).sum::<u64>();
    match bound {
        Bound::Window { limit, span_ms } => {
            // A window no wider than `extra_ms` holds no excess to judge; its resolution is
            // still taken over one-millisecond windows.
            let with_excess = span_ms > extra_ms;
            let span = span_ms.saturating_sub(extra_ms).max(1);
            for last in 0..points.len() {
                let end = points[last].0;
                // Points ending after `end - span` (earlier ones cannot start after it).
                let from = points.partition_point(|point| point.0 + span <= end);
                let set: Vec<Point> = points[from..=last]
                    .iter()
                    .filter(|point| point.1 + span > end)
                    .copied()
                    .collect();
                let counted = weight_of(&set);
                // A tail holds at most the whole's count and earns at least no allowance,
                // so its headroom is at least the whole's bare headroom: a set at or below
                // the limit has no excess, and one whose bare headroom is no less than the
                // least seen cannot lower it.
                let excess_here = with_excess && counted > limit;
                let bare = limit.saturating_sub(counted);
                let resolution_here = with_resolution && least.is_none_or(|least| bare < least);
                if !excess_here && !resolution_here {
                    continue;
                }
                let start = set.iter().map(|point| point.1).min().unwrap_or(end);
                let mut sets = vec![set.clone()];
                for &at in &resets.at_ms {
                    if at >= start && at <= end {
                        sets.push(set.iter().filter(|point| point.1 > at).copied().collect());
                    }
                }
                for set in sets {
                    let counted = weight_of(&set);
                    let over = excess_here && counted > limit;
                    if !over && !resolution_here {
                        continue;
                    }
                    let set_start = set.iter().map(|point| point.1).min().unwrap_or(end);
                    let allowed = limit + resets.allowance(&set, set_start, end, limit + 1);
                    if over {
                        consider(set_start, end, counted, allowed);
                    }
                    if resolution_here {
                        note(&mut least, allowed.saturating_sub(counted));
                    }
                }
            }
        }
        Bound::Rate { burst, interval_ms } => {
            let interval = interval_ms.max(1);
            // The points with latest at most `end`, by earliest time.
            let mut by_earliest: Vec<Point> = Vec::with_capacity(points.len());
            let mut total = 0;
            for &point in points {
                let position = by_earliest.partition_point(|other| other.1 <= point.1);
                by_earliest.insert(position, point);
                total += point.2;
                let end = point.0;
                let mut counted = 0;
                for index in (0..by_earliest.len()).rev() {
                    counted += by_earliest[index].2;
                    let start = by_earliest[index].1;
                    let base = burst + (end - start + extra_ms) / interval;
                    let over = counted > base;
                    let bare = base.saturating_sub(counted);
                    let resolution_here = with_resolution && least.is_none_or(|least| bare < least);
                    if over || resolution_here {
                        let set = &by_earliest[index..];
                        let allowed = base + resets.allowance(set, start, end, burst + 1);
                        if over {
                            consider(start, end, counted, allowed);
                        }
                        if resolution_here {
                            note(&mut least, allowed.saturating_sub(counted));
                        }
                    }
                    // Moving the start back adds at most `total - counted` to the count and
                    // only grows the base. Once the base is ahead by more than that, no
                    // earlier start can exceed it; once `base - total` is no less than the
                    // least headroom, no earlier start can lower it.
                    let no_excess_before = base.saturating_sub(counted) > total - counted;
                    let no_finer_before = !with_resolution
                        || least.is_some_and(|least| base.saturating_sub(total) >= least);
                    if no_excess_before && no_finer_before {
                        break;
                    }
                }
            }
        }
    }
    Walked {
        worst,
        resolution: least.map(|headroom| headroom + 1),
    }
}

/// The worst excess over `bound` in `points` sorted by their latest time, if any, as
/// `(start_ms, end_ms, counted, allowed)`: [`judge_windows`] without the resolution.
pub(crate) fn worst_excess(
    points: &[Point],
    bound: Bound,
    extra_ms: u64,
    resets: &Resets,
) -> Option<(u64, u64, u64, u64)> {
    judge_windows(points, bound, extra_ms, resets, false).worst
}

/// The span a bound judges over, ms: the window, or for a rate the burst's refill time.
pub(crate) fn bound_span_ms(bound: Bound) -> u64 {
    match bound {
        Bound::Window { span_ms, .. } => span_ms,
        Bound::Rate { burst, interval_ms } => burst.saturating_mul(interval_ms),
    }
}

/// The smaller of two resolutions, where 0 means none judged.
pub(crate) fn finer(resolution: u64, other: Option<u64>) -> u64 {
    match other {
        Some(other) if resolution == 0 || other < resolution => other,
        _ => resolution,
    }
}

/// What a time margin could hide at the bound's rate (`ceil(margin × limit / window)`, or
/// `ceil(margin / T)`): said when the check refuses a margin.
pub(crate) fn hidden_by_margin(bound: Bound, margin_ms: u64) -> u64 {
    match bound {
        Bound::Window { limit, span_ms } => (margin_ms * limit).div_ceil(span_ms.max(1)),
        Bound::Rate { interval_ms, .. } => margin_ms.div_ceil(interval_ms.max(1)),
    }
}

/// The largest margin against a bound's span that the check still judges under: a quarter.
/// Beyond it the check refuses (a failed verdict, never "ok"): a margin that wide would
/// hide a quarter of the limit.
pub const MARGIN_SHARE_MAX: u64 = 4;

/// A key's margin, ms: the 90th percentile of its admission intervals (its usual paths),
/// plus `extra_ms`. The few wider ones (a request held by a partition, a retry after a
/// timeout) are counted apart by [`wide_points`]: each can hide at most itself.
pub(crate) fn key_margin_ms(points: &[Point], extra_ms: u64) -> u64 {
    let mut widths: Vec<u64> = points
        .iter()
        .map(|&(latest, earliest, _)| latest - earliest)
        .collect();
    widths.sort_unstable();
    percentile(&widths, 900) + extra_ms
}

/// The weight of the admissions whose own interval (plus `extra_ms`) is wider than the
/// refusal threshold: the check cannot place them in a window finely, so an over-admission
/// among them may go unseen, at most their weight.
pub(crate) fn wide_points(points: &[Point], extra_ms: u64, bound: Bound) -> u64 {
    points
        .iter()
        .filter(|&&(latest, earliest, _)| {
            (latest - earliest + extra_ms) * MARGIN_SHARE_MAX > bound_span_ms(bound)
        })
        .map(|point| point.2)
        .sum()
}

/// A host's clock as the harness moves it, as a function of true time: the Unix epoch of
/// the simulation, the host's offset, its clock steps (from their instant on) and its
/// drift (`dynamics::drift_ms`).
pub(crate) struct HostClock {
    pub(crate) offset_ms: i64,
    pub(crate) drift_ppm: i64,
    pub(crate) steps: Vec<(u64, i64)>,
}

impl HostClock {
    fn of(scenario: &Scenario, host: &str) -> HostClock {
        let (offset_ms, drift_ppm) = if host.starts_with("redis-") {
            (scenario.redis.clock_offset_ms, scenario.redis.drift_ppm)
        } else {
            host.strip_prefix("gateway-")
                .and_then(|index| index.parse::<u32>().ok())
                .and_then(|index| scenario.gateway_group(index))
                .map_or((0, 0), |group| (group.clock_offset_ms, group.drift_ppm))
        };
        let steps = scenario
            .faults
            .iter()
            .filter_map(|fault| match &fault.kind {
                FaultKind::ClockStep {
                    host: stepped,
                    step_ms,
                } if stepped == host => Some((fault.at_ms, *step_ms)),
                _ => None,
            })
            .collect();
        HostClock {
            offset_ms,
            drift_ppm,
            steps,
        }
    }

    fn at(&self, true_ms: u64) -> i128 {
        let stepped: i128 = self
            .steps
            .iter()
            .filter(|(at, _)| *at <= true_ms)
            .map(|(_, step)| i128::from(*step))
            .sum();
        i128::from(EPOCH_MS)
            + i128::from(true_ms)
            + i128::from(self.offset_ms)
            + stepped
            + i128::from(drift_ms(self.drift_ppm, true_ms))
    }

    /// The aligned window (its start on this clock) that every instant of `[earliest,
    /// latest]` (true time) falls in, and the most of it elapsed by `latest`; `None` when
    /// the interval may straddle a boundary or a step (then the point is placed in no
    /// window: left out, it can only hide an over-admission, never invent one). A drifting
    /// clock is read one ms either way (the harness applies drift once per ms).
    pub(crate) fn window(&self, earliest: u64, latest: u64, span_ms: u64) -> Option<(i128, u64)> {
        if self
            .steps
            .iter()
            .any(|(at, _)| *at >= earliest && *at <= latest)
        {
            return None;
        }
        let slack = i128::from(self.drift_ppm != 0);
        let span = i128::from(span_ms.max(1));
        let low = self.at(earliest) - slack;
        let high = self.at(latest) + slack;
        let start = low - low.rem_euclid(span);
        (high < start + span).then(|| {
            let elapsed = u64::try_from(high - start).unwrap_or(0);
            (start, elapsed)
        })
    }
}

/// `admissions_within_aligned_windows`, for the clock-aligned kinds (the fixed window
/// script, the sliding window counter, the pipelined fixed window): their exact bound, on
/// the clock they read, where the trailing check can only say 2L.
///
/// * Fixed window (script or pipelined): at most L units per aligned window `[kW, (k+1)W)`
///   of its clock: the count of window k is one number (a hash field; an INCR'd key) that
///   admits only while `count + cost <= L`.
/// * Sliding window counter: at the admission of a unit at `e` ms into aligned window k+1,
///   `current × W + previous × (W − e) <= L × W` (exact integers in the script), with
///   `current` every unit window k+1 admitted up to and including it and `previous` window
///   k's units. So per aligned window at most L (previous ≥ 0), and L only where the window
///   before was empty. The check takes, for each admission, the units of its window surely
///   run before it (decided before it arrived) and the largest `e` its interval allows,
///   both lower bounds of what the script saw.
///
/// The clock: Redis's for the scripts (`redis-0`; `redis-1` after a failover promotes it;
/// on a cluster, the node that holds the key);
/// each admitting gateway's own clock, read at the request's arrival, for the pipelined
/// window. So a clock-skewed pair of gateways keeps L per window id (each counts on its own
/// key) while the trailing check, in true time, still shows the 2L breach it causes.
///
/// Resets (restarts, flushes, failovers, clock steps) excuse, per window, what the key
/// admitted in it before each reset, at most L each (the count starts from 0 after one):
/// [`Resets::allowance`] with base L.
pub(crate) fn aligned_windows_verdict(
    scenario: &Scenario,
    per_key: &BTreeMap<String, Vec<AlignedPoint>>,
    resets: &Resets,
    metrics: &mut Metrics,
) -> Verdict {
    let limit = scenario.limit.limit;
    let span = scenario.limit.window_ms.max(1);
    let kind_of = |gateway: u32| {
        scenario
            .gateway_group(gateway)
            .map_or(LimiterKind::AtomicFixedWindow, |group| group.limiter)
    };
    let sliding = scenario
        .gateways
        .iter()
        .all(|group| group.limiter == LimiterKind::AtomicSlidingWindow);
    let failover_ms = scenario
        .faults
        .iter()
        .find(|fault| matches!(fault.kind, FaultKind::Failover {}))
        .map(|fault| fault.at_ms);
    let redis_clocks = [
        HostClock::of(scenario, crate::harness::REDIS_HOST),
        HostClock::of(scenario, crate::harness::PROMOTED_HOST),
    ];
    let mut node_clocks: BTreeMap<u32, HostClock> = BTreeMap::new();
    let mut gateway_clocks: BTreeMap<u32, HostClock> = BTreeMap::new();
    let mut worst: Option<Excess> = None;
    let mut keys_over = 0;
    let mut unplaced = 0;
    let mut finest: Option<u64> = None;
    let mut windows_judged = 0;
    for (key, points) in per_key {
        let resets = resets.for_key(scenario, key);
        // On a cluster the scripts read the clock of the node that holds the key.
        let node = (scenario.redis.topology == Topology::Cluster).then(|| key_node(scenario, key));
        // Window start (on its clock) -> (point, elapsed at its latest).
        let mut windows: BTreeMap<i128, Vec<(Point, u64)>> = BTreeMap::new();
        for &(point, gateway) in points {
            let (latest, earliest, _) = point;
            let placed = if kind_of(gateway).uses_gateway_clock() {
                // Read at arrival: exactly the earliest time.
                gateway_clocks
                    .entry(gateway)
                    .or_insert_with(|| HostClock::of(scenario, &format!("gateway-{gateway}")))
                    .window(earliest, earliest, span)
            } else if let Some(node) = node {
                // A key on no one node (unnamed, or split) is placed nowhere.
                node.and_then(|node| {
                    node_clocks
                        .entry(node)
                        .or_insert_with(|| HostClock::of(scenario, &format!("redis-{node}")))
                        .window(earliest, latest, span)
                })
            } else {
                match failover_ms {
                    Some(at) if earliest <= at && latest >= at => None,
                    Some(at) if earliest > at => redis_clocks[1].window(earliest, latest, span),
                    _ => redis_clocks[0].window(earliest, latest, span),
                }
            };
            match placed {
                Some((start, elapsed)) => windows.entry(start).or_default().push((point, elapsed)),
                None => unplaced += point.2,
            }
        }
        let mut consider = |excess: Excess| {
            if worst
                .as_ref()
                .is_none_or(|worst| excess.counted - excess.allowed > worst.counted - worst.allowed)
            {
                worst = Some(excess);
            }
        };
        let mut key_over = false;
        for (start, placed) in &windows {
            windows_judged += 1;
            let set: Vec<Point> = placed.iter().map(|(point, _)| *point).collect();
            let counted: u64 = set.iter().map(|point| point.2).sum();
            let first = set.iter().map(|point| point.1).min().unwrap_or(0);
            let last = set.iter().map(|point| point.0).max().unwrap_or(0);
            let allowed = limit + resets.allowance(&set, first, last, limit);
            let headroom = allowed.saturating_sub(counted);
            finest = Some(finest.map_or(headroom + 1, |finest| finest.min(headroom + 1)));
            if counted > allowed {
                key_over = true;
                consider(Excess {
                    key: key.clone(),
                    start_ms: first,
                    end_ms: last,
                    counted,
                    allowed,
                });
            }
            if !sliding {
                continue;
            }
            // The window before (empty when nothing of it was placed).
            let previous_all: Vec<Point> = windows
                .get(&(start - i128::from(span)))
                .map(|placed| placed.iter().map(|(point, _)| *point).collect())
                .unwrap_or_default();
            for &(admission, elapsed) in placed {
                // Of the window before, only the units surely run before this admission: a
                // clock stepped back revisits that window later in true time, and what it
                // admits then was not in the count this admission saw.
                let previous: Vec<Point> = previous_all
                    .iter()
                    .filter(|point| point.0 < admission.1)
                    .copied()
                    .collect();
                let previous_units: u64 = previous.iter().map(|point| point.2).sum();
                // Units of this window surely run before it, and itself.
                let mut before: Vec<Point> = set
                    .iter()
                    .filter(|point| point.0 < admission.1)
                    .copied()
                    .collect();
                let current = before.iter().map(|point| point.2).sum::<u64>() + admission.2;
                before.push(admission);
                before.extend(&previous);
                let set_start = before.iter().map(|point| point.1).min().unwrap_or(0);
                let allowance = resets.allowance(&before, set_start, admission.0, limit);
                let weighted = current * span + previous_units * span.saturating_sub(elapsed);
                let budget = (limit + allowance) * span;
                let resolution = budget.saturating_sub(weighted) / span + 1;
                finest = Some(finest.map_or(resolution, |finest| finest.min(resolution)));
                if weighted > budget {
                    key_over = true;
                    let over = (weighted - budget).div_ceil(span);
                    consider(Excess {
                        key: key.clone(),
                        start_ms: set_start,
                        end_ms: admission.0,
                        counted: limit + allowance + over,
                        allowed: limit + allowance,
                    });
                }
            }
        }
        keys_over += u64::from(key_over);
    }
    let over = worst
        .as_ref()
        .map_or(0, |excess| excess.counted - excess.allowed);
    metrics.over_admission_max = metrics.over_admission_max.max(over);
    metrics.over_admission_resolution = finer(metrics.over_admission_resolution, finest);
    let what = if sliding {
        "L × W ≥ current × W + previous × (W − elapsed) at each admission, so L per aligned window"
    } else {
        "L per aligned window"
    };
    Verdict {
        name: "admissions_within_aligned_windows".to_owned(),
        kind: VerdictKind::Safety,
        held: worst.is_none(),
        detail: match &worst {
            None => format!(
                "every key within {what} ({limit} per {span} ms on the limiter's clock; {windows_judged} windows judged; {unplaced} admissions not placeable in one window; sees an over-admission of {} at the tightest place)",
                finest.unwrap_or(0)
            ),
            Some(excess) => format!(
                "{keys_over} key(s) over {what} ({limit} per {span} ms on the limiter's clock); worst: key {} had {} units (weighted) in one aligned window, admitted in [{} ms, {} ms] (true time), where {} are allowed",
                excess.key, excess.counted, excess.start_ms, excess.end_ms, excess.allowed
            ),
        },
    }
}

/// `admissions_within_bound` for `multi_limit`: every limit its script checks is judged on
/// its own keys. Each admission counts (weighted by cost) on the key each limit of its
/// gateway's group renders for it (`rl:global:{$group}` collects every request of the
/// group, `rl:user:{$group}:$user` one user's), and each key must stay within its limit's
/// B + ⌊Δ/T⌋ (L per `limit.window_ms` as a GCRA rate), with the usual margin and resets.
/// A template several groups name is judged against the first group's limit for it.
/// Each key's margin joins `key_margins` (the run's `margin_ms_max` and median).
pub(crate) fn multi_limit_verdict(
    scenario: &Scenario,
    events: &[Event],
    extra_ms: u64,
    resets: &Resets,
    metrics: &mut Metrics,
    key_margins: &mut Vec<u64>,
) -> Verdict {
    let mut bounds: BTreeMap<String, Bound> = BTreeMap::new();
    for group in &scenario.gateways {
        for spec in &group.limits {
            bounds
                .entry(spec.key_scheme.clone())
                .or_insert(Bound::Rate {
                    burst: spec.limit,
                    interval_ms: scenario.limit.window_ms / spec.limit,
                });
        }
    }
    let points = multi_limit_points(scenario, events);
    // The worst (template, excess), by how far it went over.
    let mut worst: Option<(String, Excess)> = None;
    let mut keys_over = 0;
    let mut margin_max = 0;
    // The first key whose margin is too wide to judge, with that margin.
    let mut refused: Option<(String, u64)> = None;
    for ((template, key), admitted) in &points {
        let Some(&bound) = bounds.get(template) else {
            continue;
        };
        let mut admitted = admitted.clone();
        admitted.sort_unstable();
        let margin = key_margin_ms(&admitted, extra_ms);
        margin_max = margin_max.max(margin);
        key_margins.push(margin);
        let resets = &resets.for_key(scenario, key);
        let walked = judge_windows(&admitted, bound, extra_ms, resets, true);
        metrics.over_admission_resolution =
            finer(metrics.over_admission_resolution, walked.resolution);
        metrics.unjudged_admissions += wide_points(&admitted, extra_ms, bound);
        if margin * MARGIN_SHARE_MAX > bound_span_ms(bound) {
            refused.get_or_insert((key.clone(), margin));
        }
        let Some((start_ms, end_ms, counted, allowed)) = walked.worst else {
            continue;
        };
        keys_over += 1;
        if worst
            .as_ref()
            .is_none_or(|(_, worst)| counted - allowed > worst.counted - worst.allowed)
        {
            let excess = Excess {
                key: key.clone(),
                start_ms,
                end_ms,
                counted,
                allowed,
            };
            worst = Some((template.clone(), excess));
        }
    }
    metrics.over_admission_max = worst
        .as_ref()
        .map_or(0, |(_, excess)| excess.counted - excess.allowed);
    let detail = match (&worst, &refused) {
        (_, Some((key, margin))) => format!(
            "refused to judge: key {key}'s time margin {margin} ms is more than 1/{MARGIN_SHARE_MAX} of its limit's span"
        ),
        (None, None) => format!(
            "every key of its {} limit(s) within its own bound ({}; widest time margin {margin_max} ms; {} reset allowances); {} keys judged",
            bounds.len(),
            bounds
                .iter()
                .map(|(template, bound)| format!("{template}: {bound}"))
                .collect::<Vec<_>>()
                .join(", "),
            resets.at_ms.len(),
            points.len()
        ),
        (Some((template, excess)), None) => format!(
            "{keys_over} key(s) over their limit's bound; worst: limit {template} ({}) key {} had {} admissions in [{} ms, {} ms] where {} are allowed",
            bounds[template],
            excess.key,
            excess.counted,
            excess.start_ms,
            excess.end_ms,
            excess.allowed
        ),
    };
    Verdict {
        name: "admissions_within_bound".to_owned(),
        kind: VerdictKind::Safety,
        held: worst.is_none() && refused.is_none(),
        detail,
    }
}

/// The multi-limit's admissions `(time, weight)` per (limit template, rendered key): each
/// admission once on the key of every limit its gateway's group checks.
pub(crate) fn multi_limit_points(
    scenario: &Scenario,
    events: &[Event],
) -> BTreeMap<(String, String), Vec<Point>> {
    use crate::harness::{identity, parse_key_name};
    use ratelab::keys::KeyScheme;

    let mut requests: BTreeMap<u64, (u32, &str, u64, u64)> = BTreeMap::new();
    let mut points: BTreeMap<(String, String), Vec<Point>> = BTreeMap::new();
    for event in events {
        match event {
            Event::Request {
                id,
                gateway,
                key,
                cost,
                at_ms,
            } => {
                requests.insert(*id, (*gateway, key.as_str(), *cost, *at_ms));
            }
            Event::Decision {
                id,
                at_ms,
                outcome: Outcome::Allowed,
                ..
            } => {
                let Some(&(gateway, key, cost, arrived_ms)) = requests.get(id) else {
                    continue;
                };
                let (Some(group), Some((kind, number))) =
                    (scenario.gateway_group(gateway), parse_key_name(key))
                else {
                    continue;
                };
                let who = identity(
                    group.limiter,
                    kind,
                    number,
                    group.group.as_deref().unwrap_or("default"),
                );
                for spec in &group.limits {
                    // The harness made the same keys (it failed the request otherwise).
                    let Ok(rendered) = KeyScheme::parse(&spec.key_scheme, 1)
                        .and_then(|scheme| scheme.render(&who, 0))
                    else {
                        continue;
                    };
                    let rendered = String::from_utf8_lossy(&rendered).into_owned();
                    points
                        .entry((spec.key_scheme.clone(), rendered))
                        .or_default()
                        .push((*at_ms, arrived_ms.min(*at_ms), cost));
                }
            }
            _ => {}
        }
    }
    points
}

/// The offending key's events in its worst window (and a little before), at most 40 lines.
pub(crate) fn timeline(
    name: &str,
    excess: &Excess,
    events: &[Event],
    requests: &BTreeMap<u64, (u32, String, u64, u64)>,
) -> String {
    const LINES_MAX: usize = 40;
    let mut out = format!(
        "  timeline for {name}: key {} from {} ms to {} ms\n",
        excess.key, excess.start_ms, excess.end_ms
    );
    let lead_ms = 50;
    let mut lines = 0;
    let mut skipped = 0;
    for event in events {
        let at_ms = match event {
            Event::Completion {
                recorded_at_ms: Some(recorded),
                ..
            } => *recorded,
            other => other.at_ms(),
        };
        if at_ms + lead_ms < excess.start_ms || at_ms > excess.end_ms {
            continue;
        }
        let line = match event {
            Event::Fault { what, .. } => format!("fault: {what}"),
            _ => {
                let Some(id) = event.request_id() else {
                    continue;
                };
                let Some((gateway, key, _, _)) = requests.get(&id) else {
                    continue;
                };
                if *key != excess.key {
                    continue;
                }
                let what = match event {
                    Event::Request { .. } => "arrives".to_owned(),
                    Event::Decision {
                        outcome,
                        round_trips,
                        ..
                    } => format!("{outcome:?} after {round_trips} round trips"),
                    Event::Completion {
                        success,
                        recorded_at_ms,
                        ..
                    } => match (success, recorded_at_ms) {
                        (true, Some(_)) => "upstream ok, success recorded".to_owned(),
                        (true, None) => "upstream ok, not recorded".to_owned(),
                        (false, _) => "upstream failed".to_owned(),
                    },
                    _ => continue,
                };
                format!("gateway-{gateway} request {id:#x} {what}")
            }
        };
        if lines >= LINES_MAX {
            skipped += 1;
            continue;
        }
        lines += 1;
        let _ = writeln!(out, "    {at_ms:>8} ms  {line}");
    }
    if skipped > 0 {
        let _ = writeln!(out, "    ... {skipped} more events in the window");
    }
    out
}
