//! Knobs that change with simulated time rather than at one instant: per-link latency
//! distributions (`network.links`) and clock drift (`drift_ppm`).
//!
//! The harness calls [`Dynamics::advance`] once per turmoil step (every simulated ms),
//! before it fires the scheduled faults, so a `link_latency` fault or a clock step at the
//! same ms is applied after (and composes with) the drift and the draw.
//!
//! Determinism: each link draws from its own ChaCha8 stream (stream `index` of a key derived
//! from the run's seed by a fixed salt), and nothing is drawn from the harness's master
//! stream, so adding links changes no other component's seed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::scenario::{LinkLatencySpec, Scenario};

/// Mixed into the run's seed for the link streams ("links" in ASCII), so that they share no
/// stream with turmoil's or the gateways'.
const LINK_SEED_SALT: u64 = 0x6c69_6e6b_7300_0000;

/// One host's drift: its offset and how much drift was added to it so far.
struct Drift {
    host: String,
    offset: Arc<AtomicI64>,
    ppm: i64,
    applied_ms: i64,
}

/// The per-link samplers and the drifting clocks of one run.
pub struct Dynamics {
    links: Vec<(LinkLatencySpec, ChaCha8Rng)>,
    resample_ms: u64,
    next_resample_ms: u64,
    drifts: Vec<Drift>,
}

impl Dynamics {
    /// The dynamics of `scenario` run with `seed`, moving the host clock `offsets` (by host
    /// name) of the hosts that drift.
    pub fn new(
        scenario: &Scenario,
        seed: u64,
        offsets: &BTreeMap<String, Arc<AtomicI64>>,
    ) -> Dynamics {
        let links = (0u64..)
            .zip(&scenario.network.links)
            .map(|(index, link)| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ LINK_SEED_SALT);
                rng.set_stream(index);
                (link.clone(), rng)
            })
            .collect();
        let mut drifts = Vec::new();
        // BTreeMap order: hosts by name, stable.
        for (host, offset) in offsets {
            let ppm = if host.starts_with("redis-") {
                scenario.redis.drift_ppm
            } else {
                host.strip_prefix("gateway-")
                    .and_then(|index| index.parse::<u32>().ok())
                    .and_then(|index| scenario.gateway_group(index))
                    .map_or(0, |group| group.drift_ppm)
            };
            if ppm != 0 {
                drifts.push(Drift {
                    host: host.clone(),
                    offset: Arc::clone(offset),
                    ppm,
                    applied_ms: 0,
                });
            }
        }
        Dynamics {
            links,
            resample_ms: scenario.network.resample_ms.max(1),
            next_resample_ms: 0,
            drifts,
        }
    }

    /// Each drifting host with the drift applied to its clock so far, ms, in host order.
    pub fn drifted(&self) -> Vec<(String, i64)> {
        self.drifts
            .iter()
            .map(|drift| (drift.host.clone(), drift.applied_ms))
            .collect()
    }

    /// Brings every drifting clock to `now_ms` and, when a resample is due, sets every
    /// distributed link's latency to a fresh draw.
    pub fn advance(&mut self, sim: &mut turmoil::Sim<'_>, now_ms: u64) {
        for drift in &mut self.drifts {
            let target = drift_ms(drift.ppm, now_ms);
            // Only the change since the last step, so clock steps and the base offset
            // stay as they are.
            drift
                .offset
                .fetch_add(target - drift.applied_ms, Ordering::Relaxed);
            drift.applied_ms = target;
        }
        if self.links.is_empty() || now_ms < self.next_resample_ms {
            return;
        }
        self.next_resample_ms = now_ms + self.resample_ms;
        for (link, rng) in &mut self.links {
            let latency_ms = link.latency.sample(rng);
            sim.set_link_latency(
                link.a.as_str(),
                link.b.as_str(),
                Duration::from_millis(latency_ms),
            );
        }
    }
}

/// The drift a clock of `ppm` parts per million has gathered after `elapsed_ms`, ms
/// (rounded toward zero).
pub fn drift_ms(ppm: i64, elapsed_ms: u64) -> i64 {
    let drift = i128::from(ppm) * i128::from(elapsed_ms) / 1_000_000;
    i64::try_from(drift).unwrap_or(if ppm < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_grows_with_elapsed_time() {
        let cases: &[(i64, u64, i64)] = &[
            (0, 10_000, 0),
            (1_000, 999, 0),
            (1_000, 1_000, 1),
            (300_000, 5_000, 1_500),
            (-500_000, 4_000, -2_000),
            (1_000_000, 3_600_000, 3_600_000),
        ];
        for &(ppm, elapsed_ms, expected) in cases {
            assert_eq!(
                drift_ms(ppm, elapsed_ms),
                expected,
                "{ppm} ppm, {elapsed_ms} ms"
            );
        }
    }
}
