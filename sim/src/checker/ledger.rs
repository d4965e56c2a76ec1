//! The ledger: the event log read once into per-key series (admissions, successes) and the
//! run's metrics (latency, pool wait, round trips, load per node and slot). Everything the
//! bounds and the properties judge, and every number the report plots, comes from here.

use std::collections::BTreeMap;

use crate::event::{ErrorClass, Event, Outcome};
use crate::scenario::{LimiterKind, Scenario};

use super::*;

/// What the log says, per key and in all: the requests and their decisions, the admissions
/// and recorded successes per key as points (latest, earliest, weight), the faults as the
/// harness saw them, the end snapshot, and the run's metrics. The bounds and the properties
/// judge it; the report's figures read its metrics.
pub(crate) struct Ledger<'a> {
    pub(crate) metrics: Metrics,
    /// Per request: (gateway, key, arrival, cost).
    pub(crate) requests: BTreeMap<u64, (u32, String, u64, u64)>,
    pub(crate) decisions: BTreeMap<u64, (u64, Outcome)>,
    pub(crate) fired: Vec<bool>,
    pub(crate) took_effect: Vec<Option<bool>>,
    pub(crate) aborted: std::collections::BTreeSet<u64>,
    /// Hosts whose clock drifted, with the drift the harness applied in all (ms).
    pub(crate) drifted: Vec<(&'a str, i64)>,
    pub(crate) snapshot: Option<&'a Vec<(String, i64)>>,
    pub(crate) levels: &'a [(String, String, String)],
    pub(crate) admissions: BTreeMap<String, Vec<Point>>,
    pub(crate) successes: BTreeMap<String, Vec<Point>>,
    /// The admissions with the gateway that made them (whose clock a pipelined fixed
    /// window reads).
    pub(crate) aligned: BTreeMap<String, Vec<AlignedPoint>>,
    /// Per gateway (path): the widest admission interval.
    pub(crate) gateway_margins: BTreeMap<u32, u64>,
    pub(crate) desyncs: Vec<(u64, u64, String)>,
    /// Whether gateway groups have their own limits (R5).
    pub(crate) grouped: bool,
    /// Per (group index, key), when groups have their own limits.
    pub(crate) group_admissions: BTreeMap<(usize, String), Vec<Point>>,
    pub(crate) errors_while_healthy: Vec<(u64, u64, String)>,
}

/// Reads the log once into a [`Ledger`].
pub(crate) fn record<'a>(scenario: &Scenario, events: &'a [Event]) -> Ledger<'a> {
    // Per request: (gateway, key, arrival, cost).
    let mut requests: BTreeMap<u64, (u32, String, u64, u64)> = BTreeMap::new();
    let mut decisions: BTreeMap<u64, (u64, Outcome)> = BTreeMap::new();
    let mut metrics = Metrics::default();
    let mut latencies = Vec::new();
    let mut gateway_latencies: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut pool_waits = Vec::new();
    let mut round_trips = 0u64;
    let mut commands = 0u64;
    let mut fired = vec![false; scenario.faults.len()];
    let mut took_effect: Vec<Option<bool>> = vec![None; scenario.faults.len()];
    let mut aborted: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    // Hosts whose clock drifted, with the drift the harness applied in all (ms).
    let mut drifted: Vec<(&str, i64)> = Vec::new();
    let mut snapshot: Option<&Vec<(String, i64)>> = None;
    let mut levels: &[(String, String, String)] = &[];
    // Per key: admissions and recorded successes as points (latest, earliest, weight).
    let mut admissions: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    let mut successes: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    // The same admissions with the gateway that made them (whose clock a pipelined fixed
    // window reads).
    let mut aligned: BTreeMap<String, Vec<AlignedPoint>> = BTreeMap::new();
    // Per gateway (path): the widest admission interval.
    let mut gateway_margins: BTreeMap<u32, u64> = BTreeMap::new();
    let mut desyncs: Vec<(u64, u64, String)> = Vec::new();
    // Per (group index, key), when groups have their own limits (R5).
    let grouped = scenario.has_group_limits();
    let mut group_admissions: BTreeMap<(usize, String), Vec<Point>> = BTreeMap::new();
    let mut errors_while_healthy: Vec<(u64, u64, String)> = Vec::new();

    let outages: Vec<(u64, u64)> = scenario
        .faults
        .iter()
        .filter(|fault| fault.kind.outage_ms() > 0)
        .map(|fault| (fault.at_ms, fault.at_ms + fault.kind.outage_ms()))
        .collect();
    let reconnect_grace_ms = scenario.worst_command_ms();
    let kind_of = |gateway: u32| {
        scenario
            .gateway_group(gateway)
            .map(|group| group.limiter)
            .unwrap_or(LimiterKind::AtomicGcra)
    };

    for event in events {
        match event {
            Event::Request {
                id,
                gateway,
                key,
                at_ms,
                cost,
            } => {
                metrics.requests += 1;
                requests.insert(*id, (*gateway, key.clone(), *at_ms, *cost));
            }
            Event::Decision {
                id,
                at_ms,
                outcome,
                latency_ms,
                round_trips: trips,
                commands: sent,
                pool_wait_ms,
                error_class,
                error,
                ..
            } => {
                if error
                    .as_deref()
                    .is_some_and(|error| error.contains("CROSSSLOT"))
                {
                    metrics.crossslot_errors += 1;
                }
                metrics.decisions += 1;
                latencies.push(*latency_ms);
                if let Some((gateway, ..)) = requests.get(id) {
                    gateway_latencies
                        .entry(*gateway)
                        .or_default()
                        .push(*latency_ms);
                }
                pool_waits.push(*pool_wait_ms);
                round_trips += trips;
                commands += sent;
                decisions.insert(*id, (*at_ms, *outcome));
                let Some((gateway, key, arrived_ms, cost)) = requests.get(id) else {
                    continue;
                };
                // A desync is judged whatever the fail mode made of it (a 5xx or an admission).
                if *error_class == Some(ErrorClass::Protocol)
                    && !outages
                        .iter()
                        .any(|&(start, end)| *arrived_ms <= end && *at_ms >= start)
                {
                    desyncs.push((*id, *at_ms, key.clone()));
                }
                match outcome {
                    Outcome::Allowed => {
                        metrics.allowed += 1;
                        let weight = if weighted(kind_of(*gateway)) {
                            *cost
                        } else {
                            1
                        };
                        let point = (*at_ms, (*arrived_ms).min(*at_ms), weight);
                        let path = gateway_margins.entry(*gateway).or_default();
                        *path = (*path).max(point.0 - point.1);
                        admissions.entry(key.clone()).or_default().push(point);
                        aligned
                            .entry(key.clone())
                            .or_default()
                            .push((point, *gateway));
                        if let Some(group) = scenario.group_index(*gateway).filter(|_| grouped) {
                            group_admissions
                                .entry((group, key.clone()))
                                .or_default()
                                .push(point);
                        }
                    }
                    Outcome::Denied => metrics.denied += 1,
                    Outcome::FailOpen => metrics.fail_open += 1,
                    Outcome::Error => {
                        metrics.errors += 1;
                        let grace = match error_class {
                            Some(ErrorClass::Transport) => reconnect_grace_ms,
                            _ => 0,
                        };
                        let overlaps = outages.iter().any(|&(start, end)| {
                            *arrived_ms <= end.saturating_add(grace) && *at_ms >= start
                        });
                        match error_class {
                            _ if overlaps => {}
                            // Redis is up but could not be reached in time: the pool is
                            // exhausted or the link is slower than the read timeout. Those
                            // are load and latency faults, reported as a figure.
                            Some(ErrorClass::Transport) => {
                                metrics.transport_errors_while_healthy += 1
                            }
                            _ => errors_while_healthy.push((*id, *at_ms, key.clone())),
                        }
                    }
                }
            }
            Event::Completion {
                id,
                at_ms: finished_ms,
                success,
                recorded_at_ms,
            } => {
                if !success {
                    continue;
                }
                metrics.successes += 1;
                let Some((gateway, key, _, _)) = requests.get(id) else {
                    continue;
                };
                if !kind_of(*gateway).counts_successes() {
                    continue;
                }
                let admitted = decisions
                    .get(id)
                    .is_some_and(|(_, outcome)| *outcome == Outcome::Allowed);
                match recorded_at_ms {
                    Some(recorded_ms) if admitted => successes
                        .entry(key.clone())
                        .or_default()
                        .push((*recorded_ms, (*finished_ms).min(*recorded_ms), 1)),
                    _ => metrics.unrecorded_successes += u64::from(admitted),
                }
            }
            Event::Fault {
                index,
                took_effect: effect,
                ..
            } => {
                if let Some(slot) = fired.get_mut(*index) {
                    // The first event (a start) says whether the fault took; an end says
                    // nothing new.
                    if !*slot {
                        took_effect[*index] = *effect;
                    }
                    *slot = true;
                }
            }
            Event::Aborted { id, .. } => {
                aborted.insert(*id);
            }
            Event::ClockDrift { host, drift_ms, .. } => {
                drifted.push((host.as_str(), *drift_ms));
            }
            Event::Snapshot {
                keys,
                levels: stored,
                ..
            } => {
                snapshot = Some(keys);
                levels = stored;
            }
            Event::Load {
                nodes,
                slots,
                redirects,
                ..
            } => {
                metrics.commands_per_node = nodes.clone();
                // Ties go to the first in order (host, slot), so the figure is stable.
                metrics.hottest_node = nodes
                    .iter()
                    .fold(None::<&(String, u64)>, |best, node| match best {
                        Some(best) if best.1 >= node.1 => Some(best),
                        _ => Some(node),
                    })
                    .cloned();
                metrics.hottest_slot = slots.iter().fold(
                    None,
                    |best: Option<(u16, u64)>, &(slot, count)| match best {
                        Some(best) if best.1 >= count => Some(best),
                        _ => Some((slot, count)),
                    },
                );
                metrics.slots_used = u64::try_from(slots.len()).expect("fits");
                metrics.moved_redirects = *redirects;
            }
        }
    }

    latencies.sort_unstable();
    pool_waits.sort_unstable();
    metrics.latency_p50_ms_per_gateway = gateway_latencies
        .into_iter()
        .map(|(gateway, mut latencies)| {
            latencies.sort_unstable();
            (gateway, percentile(&latencies, 500))
        })
        .collect();
    metrics.latency_p50_ms = percentile(&latencies, 500);
    metrics.latency_p99_ms = percentile(&latencies, 990);
    metrics.latency_max_ms = latencies.last().copied().unwrap_or(0);
    metrics.pool_wait_p50_ms = percentile(&pool_waits, 500);
    metrics.pool_wait_p99_ms = percentile(&pool_waits, 990);
    if metrics.decisions > 0 {
        metrics.round_trips_per_decision = round_trips as f64 / metrics.decisions as f64;
        metrics.commands_per_decision = commands as f64 / metrics.decisions as f64;
    }

    Ledger {
        metrics,
        requests,
        decisions,
        fired,
        took_effect,
        aborted,
        drifted,
        snapshot,
        levels,
        admissions,
        successes,
        aligned,
        gateway_margins,
        desyncs,
        grouped,
        group_admissions,
        errors_while_healthy,
    }
}

/// Whether requests of `kind` are weighted by cost (new-api's limiters count requests).
pub(crate) fn weighted(kind: LimiterKind) -> bool {
    !kind.is_legacy()
}

/// One counted event: `(latest_ms, earliest_ms, weight)`. Redis ran it somewhere in
/// `[earliest_ms, latest_ms]` (true time): from the request's arrival to the gateway's
/// reading the reply. Each point carries its own path's margin, so one slow link widens
/// only the intervals of the requests that took it.
pub(crate) type Point = (u64, u64, u64);

/// One admission of an aligned-window limiter: its point and the gateway that admitted it.
pub(crate) type AlignedPoint = (Point, u32);

pub(crate) fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = (sorted.len() * per_mille).div_ceil(1_000).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}
