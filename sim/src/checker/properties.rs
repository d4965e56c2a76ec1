//! The properties: the safety verdicts that are not a bound (no 5xx or protocol error while
//! Redis was healthy, every request resolved, every key with a TTL, bucket levels in range)
//! and the coverage verdicts that say whether a run could have failed at all.

use std::collections::BTreeMap;

use crate::event::Outcome;
use crate::scenario::{FaultKind, LimiterKind, Scenario};

use super::*;

/// The properties beside the bounds: no 5xx and no protocol error while Redis was healthy,
/// every request resolved, every key with a TTL, bucket levels in range, and the coverage
/// verdicts (a denial, each fault fired and took effect, each drift moved a clock).
pub(crate) fn judge(scenario: &Scenario, ledger: &mut Ledger<'_>, verdicts: &mut Vec<Verdict>) {
    let Ledger {
        metrics,
        requests,
        decisions,
        fired,
        took_effect,
        aborted,
        drifted,
        snapshot,
        levels,
        desyncs,
        errors_while_healthy,
        ..
    } = ledger;
    let (snapshot, levels) = (*snapshot, *levels);
    verdicts.push(Verdict {
        name: "no_5xx_while_redis_healthy".to_owned(),
        kind: VerdictKind::Safety,
        held: errors_while_healthy.is_empty(),
        detail: match errors_while_healthy.first() {
            None => format!(
                "{} 5xx: none from a reply outside a fault; {} transport 5xx outside faults (pool or timeouts)",
                metrics.errors, metrics.transport_errors_while_healthy
            ),
            Some((id, at_ms, key)) => format!(
                "{} 5xx while no fault was active; first: request {id:#x} on key {key} at {at_ms} ms",
                errors_while_healthy.len()
            ),
        },
    });

    let unresolved: Vec<u64> = requests
        .keys()
        .filter(|id| !decisions.contains_key(id) && !aborted.contains(id))
        .copied()
        .collect();
    metrics.unresolved = u64::try_from(unresolved.len()).expect("fits");
    verdicts.push(Verdict {
        name: "every_request_resolved".to_owned(),
        kind: VerdictKind::Safety,
        held: unresolved.is_empty(),
        detail: match unresolved.first() {
            None => format!(
                "{} requests: {} decided, {} aborted by a gateway restart",
                metrics.requests,
                metrics.decisions,
                aborted.len()
            ),
            Some(id) => format!(
                "{} of {} requests ended with no decision and no logged abort (a request task panicked or vanished); first: request {id:#x} on key {}",
                unresolved.len(),
                metrics.requests,
                requests.get(id).map(|request| request.1.as_str()).unwrap_or("?")
            ),
        },
    });
    verdicts.push(Verdict {
        name: "no_protocol_error_while_redis_healthy".to_owned(),
        kind: VerdictKind::Safety,
        held: desyncs.is_empty(),
        detail: match desyncs.first() {
            None => "every reply parsed while no fault was active".to_owned(),
            Some((id, at_ms, key)) => format!(
                "{} replies the client could not parse while Redis was healthy; first: request {id:#x} on key {key} at {at_ms} ms",
                desyncs.len()
            ),
        },
    });

    let without_ttl: Vec<&String> = snapshot
        .map(|keys| {
            keys.iter()
                .filter(|(_, ttl)| *ttl == -1)
                .map(|(key, _)| key)
                .collect()
        })
        .unwrap_or_default();
    verdicts.push(Verdict {
        name: "every_key_has_ttl".to_owned(),
        kind: VerdictKind::Safety,
        held: snapshot.is_some() && without_ttl.is_empty(),
        detail: match snapshot {
            None => "not judged: no snapshot of Redis in the log".to_owned(),
            Some(keys) if without_ttl.is_empty() => format!("{} keys, all with a TTL", keys.len()),
            Some(keys) => format!(
                "{} of {} keys have no TTL: {}{}",
                without_ttl.len(),
                keys.len(),
                without_ttl
                    .iter()
                    .take(5)
                    .map(|key| key.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if without_ttl.len() > 5 { ", ..." } else { "" }
            ),
        },
    });

    if let Some(verdict) = bucket_levels_verdict(scenario, levels) {
        verdicts.push(verdict);
    }

    verdicts.push(Verdict {
        name: "some_request_denied".to_owned(),
        kind: VerdictKind::Coverage,
        held: metrics.denied > 0,
        detail: format!("{} denials", metrics.denied),
    });
    for (index, fault) in scenario.faults.iter().enumerate() {
        verdicts.push(Verdict {
            name: format!("fault_{index}_fired"),
            kind: VerdictKind::Coverage,
            held: fired[index],
            detail: format!("{:?} at {} ms", fault.kind, fault.at_ms),
        });
        let (effect, how) = match took_effect[index] {
            _ if !fired[index] => (false, "never fired"),
            Some(effect) => (effect, "as the harness saw it"),
            None => fault_effect_in_log(fault, requests, decisions),
        };
        verdicts.push(Verdict {
            name: format!("fault_{index}_took_effect"),
            kind: VerdictKind::Coverage,
            held: effect,
            detail: format!("{:?} at {} ms: {how}", fault.kind, fault.at_ms),
        });
    }

    if let Some(verdict) = drift_verdict(scenario, drifted) {
        verdicts.push(verdict);
    }
}

/// `clock_drift_took_effect`, when the scenario drifts any clock: every drifting host's
/// clock moved by at least 1 ms over the run, as the harness's `clock_drift` events say (a
/// drift too small for the run's length moves nothing and proves nothing).
pub(crate) fn drift_verdict(scenario: &Scenario, drifted: &[(&str, i64)]) -> Option<Verdict> {
    let drifts =
        scenario.redis.drift_ppm != 0 || scenario.gateways.iter().any(|group| group.drift_ppm != 0);
    if !drifts {
        return None;
    }
    let moved: Vec<String> = drifted
        .iter()
        .map(|(host, drift_ms)| format!("{host} {drift_ms:+} ms"))
        .collect();
    Some(Verdict {
        name: "clock_drift_took_effect".to_owned(),
        kind: VerdictKind::Coverage,
        held: !drifted.is_empty() && drifted.iter().all(|(_, drift_ms)| *drift_ms != 0),
        detail: if moved.is_empty() {
            "no drifting clock was logged".to_owned()
        } else {
            format!("clocks moved by drift: {}", moved.join(", "))
        },
    })
}

/// Whether a partition, hold, link latency or gateway restart took effect, judged from the
/// requests it caught (the harness cannot see turmoil drop or hold a message): a request
/// of a gateway on the link in flight during the outage that failed or was decided after
/// it; a decision on that gateway at least the new latency slow; a request served by the
/// restarted gateway's new process. A fault on a link no gateway is on (between Redis
/// nodes) is not observable here and counts as not taking effect.
pub(crate) fn fault_effect_in_log(
    fault: &crate::scenario::Fault,
    requests: &BTreeMap<u64, (u32, String, u64, u64)>,
    decisions: &BTreeMap<u64, (u64, Outcome)>,
) -> (bool, &'static str) {
    let gateway_of = |host: &str| {
        host.strip_prefix("gateway-")
            .and_then(|index| index.parse::<u32>().ok())
    };
    let on = |a: &str, b: &str| [gateway_of(a), gateway_of(b)];
    let decided = |gateways: [Option<u32>; 2]| {
        requests
            .iter()
            .filter_map(move |(id, (gateway, _, arrived_ms, _))| {
                let (decided_ms, outcome) = decisions.get(id)?;
                gateways
                    .contains(&Some(*gateway))
                    .then_some((*arrived_ms, *decided_ms, *outcome))
            })
    };
    let start = fault.at_ms;
    match &fault.kind {
        FaultKind::Partition { a, b, .. } | FaultKind::Hold { a, b, .. } => {
            let end = start + fault.kind.outage_ms();
            let caught = decided(on(a, b)).any(|(arrived, decided, outcome)| {
                arrived <= end
                    && decided >= start
                    && (matches!(outcome, Outcome::FailOpen | Outcome::Error) || decided > end)
            });
            (
                caught,
                "a request on the link failed or waited past the outage",
            )
        }
        FaultKind::LinkLatency { a, b, latency_ms } => {
            let slowed = decided(on(a, b))
                .any(|(arrived, decided, _)| arrived >= start && decided - arrived >= *latency_ms);
            (
                slowed,
                "a decision on the link took at least the new latency",
            )
        }
        FaultKind::GatewayRestart { host, down_ms } => {
            let served = decided(on(host, host))
                .any(|(arrived, _, _)| arrived >= start.saturating_add(*down_ms));
            (served, "the new process decided a request")
        }
        _ => (false, "the harness did not say"),
    }
}

/// `bucket_levels_in_range`, when a token bucket runs: every stored level at the end is in
/// [0, capacity]: new-api's `tokens` in [0, N], the atomic bucket's `credit` in [0, B × T]
/// ms. A Redis clock step back drives new-api's below zero (R9); the atomic one clamps.
pub(crate) fn bucket_levels_verdict(
    scenario: &Scenario,
    levels: &[(String, String, String)],
) -> Option<Verdict> {
    let limit = &scenario.limit;
    // With per-group limits, a bucket is full at the largest group's capacity.
    let group_limit = |group: &crate::scenario::GatewayGroup| group.limit.unwrap_or(limit.limit);
    let tokens_max = scenario
        .gateways
        .iter()
        .filter_map(|group| match group.limiter {
            LimiterKind::LegacyTokenBucket => Some(group_limit(group)),
            LimiterKind::LegacyModelRequest if limit.total > 0 => Some(limit.total),
            _ => None,
        })
        .max();
    let credit_max_ms = scenario
        .gateways
        .iter()
        .filter(|group| group.limiter == LimiterKind::AtomicTokenBucket)
        .map(|group| group_limit(group) * (limit.window_ms / group_limit(group)))
        .max();
    if tokens_max.is_none() && credit_max_ms.is_none() {
        return None;
    }
    let mut outside = Vec::new();
    for (key, field, value) in levels {
        let max = match field.as_str() {
            "tokens" => tokens_max,
            "credit" => credit_max_ms,
            _ => None,
        };
        let Some(max) = max else { continue };
        let in_range = value
            .parse::<f64>()
            .is_ok_and(|level| (0.0..=max as f64).contains(&level));
        if !in_range {
            outside.push(format!("{key}.{field} = {value} (range [0, {max}])"));
        }
    }
    Some(Verdict {
        name: "bucket_levels_in_range".to_owned(),
        kind: VerdictKind::Safety,
        held: outside.is_empty(),
        detail: if outside.is_empty() {
            format!("{} bucket levels, all in [0, capacity]", levels.len())
        } else {
            format!(
                "{} of {} levels outside [0, capacity]: {}",
                outside.len(),
                levels.len(),
                outside
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    })
}
