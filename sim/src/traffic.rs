//! Traffic for `shardcheck`: requests with their time, limit kinds, identity fields and cost,
//! from a scenario's load generator (the arrivals and key draws a run with that seed makes,
//! without the network), from a recorded trace (JSON lines), or from a swarm seed.

use std::collections::BTreeMap;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ratelab::keys::Identity;
use serde::{Deserialize, Serialize};

use crate::harness::{draw_key, identity, key_weights};
use crate::scenario::{Arrivals, FaultKind, IdentityKind, LimiterKind, Scenario};

/// One request: when, which limits it falls under, who makes it, what it costs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficRequest {
    /// Arrival time, ms (any origin; requests are replayed in time order).
    pub at_ms: u64,
    /// The limit kinds it falls under (`ip`, `user`, `model`, ...), as a scheme file names them.
    pub limits: Vec<String>,
    /// Identity fields (`ip`, `user`, `model`, `group`, `email`...).
    pub fields: BTreeMap<String, String>,
    /// Units it costs.
    #[serde(default = "one")]
    pub cost: u64,
    /// The gateway that served it (for the cut-over); default: requests dealt in turn to four.
    #[serde(default)]
    pub gateway: Option<u32>,
}

fn one() -> u64 {
    1
}

impl TrafficRequest {
    /// The identity a limit with namespace `namespace` sees.
    pub fn identity(&self, namespace: &str) -> Identity {
        self.fields
            .iter()
            .fold(Identity::new(namespace), |identity, (name, value)| {
                identity.with(name, value)
            })
    }
}

/// The gateways a cut-over deals trace requests to when the trace names none.
pub const TRACE_GATEWAYS: u32 = 4;

/// The largest time or cost the Lua scripts compute exactly (a double's integers).
const EXACT_MAX: u64 = 1 << 53;

/// Gateways a trace may name (the cut-over staggers one switch per gateway).
pub const GATEWAYS_MAX: u32 = 1024;

/// Reads a trace: one JSON object per line (blank lines and lines starting with `#` skipped);
/// errors say the line and the field. Requests come back sorted by time (stable).
pub fn from_trace(text: &str) -> Result<Vec<TrafficRequest>, String> {
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut request: TrafficRequest =
            serde_json::from_str(line).map_err(|error| format!("line {}: {error}", index + 1))?;
        if request.limits.is_empty() {
            return Err(format!(
                "line {}: limits: at least one limit kind",
                index + 1
            ));
        }
        if request.cost == 0 || request.cost > EXACT_MAX {
            return Err(format!("line {}: cost: must be in 1..=2^53", index + 1));
        }
        if request.at_ms > EXACT_MAX {
            return Err(format!(
                "line {}: at_ms: at most 2^53 (the scripts count in Lua numbers)",
                index + 1
            ));
        }
        if request
            .gateway
            .is_some_and(|gateway| gateway >= GATEWAYS_MAX)
        {
            return Err(format!("line {}: gateway: below {GATEWAYS_MAX}", index + 1));
        }
        if request.gateway.is_none() {
            let dealt = u32::try_from(requests.len()).unwrap_or(u32::MAX) % TRACE_GATEWAYS;
            request.gateway = Some(dealt);
        }
        requests.push(request);
    }
    if requests.is_empty() {
        return Err("the trace holds no request".to_owned());
    }
    requests.sort_by_key(|request| request.at_ms);
    Ok(requests)
}

/// The requests a run of `scenario` with `seed` makes: each gateway's arrivals, limit kinds
/// and keys drawn from the gateway's own stream exactly as the harness draws them (arrivals
/// while a gateway is down after a restart are dropped, as in a run). A request of mix kind
/// `ip`, `user` or `model` falls under the limit of that name; without a mix, under `user`.
/// Fields are the harness's (`ip`, `user`, `model`, `group`). Sorted by time.
pub fn from_scenario(scenario: &Scenario, seed: u64) -> Result<Vec<TrafficRequest>, String> {
    scenario.validate().map_err(|error| error.to_string())?;
    let mut master = ChaCha8Rng::seed_from_u64(seed);
    let _redis_seed = master.next_u64();
    let mut requests = Vec::new();
    for index in 0..scenario.gateway_count() {
        let gateway_seed = master.next_u64();
        gateway_requests(scenario, index, gateway_seed, &mut requests);
    }
    requests.sort_by_key(|request| request.at_ms);
    Ok(requests)
}

/// The restarts of `gateway-<index>`, `(at_ms, down_ms)` in time order.
fn restarts(scenario: &Scenario, index: u32) -> Vec<(u64, u64)> {
    let name = format!("gateway-{index}");
    let mut restarts: Vec<(u64, u64)> = scenario
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

/// One gateway's arrival loop (`harness::Gateway::run`), without the network.
fn gateway_requests(scenario: &Scenario, index: u32, seed: u64, out: &mut Vec<TrafficRequest>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let load = &scenario.load;
    let group = scenario
        .gateway_group(index)
        .and_then(|group| group.group.clone())
        .unwrap_or_else(|| "default".to_owned());
    let rate_per_us = load.rate_per_s / f64::from(scenario.gateway_count()) / 1_000_000.0;
    let weights = key_weights(load.keys, &load.popularity);
    let duration_us = scenario.duration_ms.saturating_mul(1_000) as f64;
    let restarts = restarts(scenario, index);
    let mut down_until_ms = 0u64;
    let (mut at_us, mut in_burst) = (0.0f64, 0u32);
    if load.arrivals == Arrivals::Steady {
        at_us = rng.random::<f64>() / rate_per_us;
    }
    loop {
        at_us +=
            crate::scenario::arrival_gap_us(&load.arrivals, &mut rng, rate_per_us, &mut in_burst);
        if at_us >= duration_us {
            break;
        }
        for &(restart_ms, down_ms) in &restarts {
            if (restart_ms.saturating_mul(1_000) as f64) <= at_us {
                down_until_ms = down_until_ms.max(restart_ms.saturating_add(down_ms));
            }
        }
        let kind = load.mix.as_ref().map(|mix| mix.draw(&mut rng));
        let key = draw_key(&mut rng, load.keys, &load.popularity, &weights);
        let _upstream_ms = scenario.upstream.latency.sample(&mut rng);
        let _upstream_ok = !rng.random_bool(scenario.upstream.error_rate);
        if (at_us as u64) < down_until_ms.saturating_mul(1_000) {
            continue;
        }
        // The harness sleeps until `at_us`; time advances in whole ms, so the request
        // arrives at the first ms at or after it.
        let at_ms = (at_us / 1_000.0).ceil() as u64;
        out.push(request_of(kind, key, &group, (at_ms, load.cost, index)));
    }
}

/// The request the harness makes for logical key `key` of limit kind `kind` (`None`: no
/// mix, the `user` limit) on a gateway serving `group`: the harness's identity fields
/// (`ip`, `user`, `model`, `group`), arriving at `at_ms` with `cost` on gateway `gateway`.
pub fn request_of(
    kind: Option<IdentityKind>,
    key: u64,
    group: &str,
    (at_ms, cost, gateway): (u64, u64, u32),
) -> TrafficRequest {
    let fields = identity(LimiterKind::AtomicGcra, kind, key, group)
        .fields()
        .filter(|(name, _)| *name != "ns")
        .map(|(name, value)| (name.to_owned(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    TrafficRequest {
        at_ms,
        limits: vec![kind.map_or("user", |kind| kind.name()).to_owned()],
        fields,
        cost,
        gateway: Some(gateway),
    }
}

/// The traffic of swarm seed `seed`: the scenario it draws, with that seed.
pub fn from_swarm(seed: u64) -> Result<Vec<TrafficRequest>, String> {
    from_scenario(&Scenario::swarm(seed), seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_traffic_is_the_requests_the_simulation_makes() {
        // Goal: `--scenario` replays the load a run makes, not a look-alike. Method: run the
        // shipped mixed-kinds scenario through the simulation and compare its request events
        // (gateway, logical key, arrival ms) with the generator's, one by one.
        let text = include_str!("../scenarios/mixed-limit-kinds.toml");
        let scenario = Scenario::from_toml(text).unwrap();
        let seed = 7;
        let traffic = from_scenario(&scenario, seed).unwrap();
        let (_, events) = crate::simulate(&scenario, seed).unwrap();
        let mut simulated: Vec<(u32, String, u64)> = events
            .iter()
            .filter_map(|event| match event {
                crate::event::Event::Request {
                    gateway,
                    key,
                    at_ms,
                    ..
                } => Some((*gateway, key.clone(), *at_ms)),
                _ => None,
            })
            .collect();
        let mut generated: Vec<(u32, String, u64)> = traffic
            .iter()
            .map(|request| {
                let user = &request.fields["user"];
                let number = user.rsplit('-').next().unwrap();
                let name = format!("{}:k{number}", request.limits[0]);
                (request.gateway.unwrap(), name, request.at_ms)
            })
            .collect();
        simulated.sort();
        generated.sort();
        assert!(simulated.len() > 500, "{} requests", simulated.len());
        let first_difference = generated.iter().zip(&simulated).find(|(a, b)| a != b);
        assert_eq!(first_difference, None);
        assert_eq!(generated.len(), simulated.len());
    }

    #[test]
    fn traces_parse_and_bad_lines_name_the_line_and_field() {
        let trace = "# exported\n{\"at_ms\": 5, \"limits\": [\"ip\"], \"fields\": {\"ip\": \"1.2.3.4\"}}\n\n{\"at_ms\": 1, \"limits\": [\"user\"], \"fields\": {\"user\": \"7\"}, \"cost\": 2, \"gateway\": 9}\n";
        let requests = from_trace(trace).unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].at_ms, 1);
        assert_eq!(requests[0].gateway, Some(9));
        assert_eq!(requests[1].gateway, Some(0));
        for (bad, says) in [
            (
                "{\"limits\": [\"ip\"], \"fields\": {}}",
                "line 1: missing field `at_ms`",
            ),
            (
                "{\"at_ms\": 1, \"limits\": [], \"fields\": {}}",
                "line 1: limits",
            ),
            (
                "{\"at_ms\": 1, \"limits\": [\"ip\"], \"fields\": {}, \"cost\": 0}",
                "line 1: cost",
            ),
            (
                "{\"at_ms\": -1, \"limits\": [\"ip\"], \"fields\": {}}",
                "line 1",
            ),
            ("", "no request"),
            (
                "{\"at_ms\": 9007199254740993, \"limits\": [\"ip\"], \"fields\": {}}",
                "line 1: at_ms",
            ),
            (
                "{\"at_ms\": 1, \"limits\": [\"ip\"], \"fields\": {}, \"gateway\": 4000000000}",
                "line 1: gateway",
            ),
        ] {
            let error = from_trace(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
