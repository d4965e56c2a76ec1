//! A counterexample as data, Jepsen style: one violating run, shrunk, laid out per gateway
//! (each request of the worst key from arrival to decision, with its outcome and Redis
//! commands), the fault windows, and the key's admissions in the trailing window against
//! the bound. The report draws it; this module only computes it.

use std::collections::BTreeMap;

use crate::checker::{Bound, admission_bound};
use crate::event::{Event, Outcome};
use crate::harness::{HarnessError, RoundTrip};
use crate::scenario::{FaultKind, Scenario};

/// One request of the shown key.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    /// The gateway (the lane).
    pub gateway: u32,
    /// The request id.
    pub id: u64,
    /// Arrival, ms.
    pub arrived_ms: u64,
    /// Decision, ms.
    pub decided_ms: u64,
    /// What the gateway did.
    pub outcome: Outcome,
    /// Redis round trips of the decision.
    pub round_trips: u64,
    /// Redis commands of the decision.
    pub commands: u64,
    /// Each round trip of the request (its decision's and, after the upstream call, its
    /// record's), in order: empty when the run was not traced.
    pub trips: Vec<Trip>,
    /// The key's admissions in the trailing window ending at this decision (this one
    /// included when admitted).
    pub in_window: u64,
}

/// One round trip of a request, as drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    /// When the request asked for it (pool wait included), ms.
    pub sent_ms: u64,
    /// When the reply came, ms.
    pub replied_ms: u64,
    /// The commands, `+` between those of one pipeline (`LPUSH+EXPIRE`).
    pub commands: String,
}

/// Gateways the counterexample keeps while shrinking: a race between gateways needs two.
pub const GATEWAYS_MIN: u32 = 2;

/// A fault's window.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// Its kind's name (`partition`).
    pub label: String,
    /// Start, ms.
    pub from_ms: u64,
    /// End, ms (a fault without a duration gets a thin band of 10 ms).
    pub to_ms: u64,
}

/// The counterexample.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// The (shrunk) scenario shown.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// The violated property.
    pub property: String,
    /// How the scenario was shrunk, one line per step.
    pub steps: Vec<String>,
    /// The key shown: the one with the most admissions in one window.
    pub key: String,
    /// The window bound's limit and span (`None` for limiters without a window bound).
    pub bound: Option<(u64, u64)>,
    /// Every request of the key, by arrival.
    pub marks: Vec<Mark>,
    /// Every fault's window.
    pub bands: Vec<Band>,
}

impl Timeline {
    /// The worst count in a window.
    pub fn worst_in_window(&self) -> u64 {
        self.marks.iter().map(|m| m.in_window).max().unwrap_or(0)
    }

    /// Gateways in the scenario (the lanes).
    pub fn gateways(&self) -> u32 {
        self.scenario.gateway_count()
    }
}

/// Runs `scenario` with `seed`; when a safety property fails, shrinks it (at most
/// `shrink_runs` runs, keeping [`GATEWAYS_MIN`] gateways) and lays out the smallest
/// violating run, replayed with its Redis round trips traced. `None` when the run is safe.
pub fn counterexample(
    scenario: &Scenario,
    seed: u64,
    shrink_runs: u32,
) -> Result<Option<Timeline>, HarnessError> {
    let (report, events) = crate::simulate(scenario, seed)?;
    let Some(property) = crate::shrink::first_violation(&report) else {
        return Ok(None);
    };
    let (scenario, events, steps) = match crate::shrink::shrink_keeping(
        scenario,
        seed,
        &report,
        events.clone(),
        shrink_runs,
        GATEWAYS_MIN,
    ) {
        Some(shrunk) => (shrunk.scenario, shrunk.events, shrunk.steps),
        None => (scenario.clone(), events, Vec::new()),
    };
    let traced = crate::harness::run_traced(&scenario, seed)?;
    if traced.events != events {
        return Err(HarnessError(
            "the traced replay of the counterexample differs from its run".to_owned(),
        ));
    }
    let mut timeline = layout(scenario, seed, property, steps, &events);
    attach_trips(&mut timeline, &traced.round_trips);
    Ok(Some(timeline))
}

/// Gives each mark its request's round trips.
pub fn attach_trips(timeline: &mut Timeline, round_trips: &[RoundTrip]) {
    let mut by_id: BTreeMap<u64, Vec<Trip>> = BTreeMap::new();
    for trip in round_trips {
        by_id.entry(trip.id).or_default().push(Trip {
            sent_ms: trip.sent_ms,
            replied_ms: trip.replied_ms,
            commands: trip.commands.join("+"),
        });
    }
    for mark in &mut timeline.marks {
        mark.trips = by_id.remove(&mark.id).unwrap_or_default();
    }
}

/// Lays out a run's log.
pub fn layout(
    scenario: Scenario,
    seed: u64,
    property: String,
    steps: Vec<String>,
    events: &[Event],
) -> Timeline {
    let bound = scenario
        .gateways
        .first()
        .and_then(|group| admission_bound(group.limiter, &scenario))
        .map(|bound| match bound {
            Bound::Window { limit, span_ms } => (limit, span_ms),
            Bound::Rate { burst, interval_ms } => (burst, interval_ms),
        });
    let window_ms = bound.map_or(scenario.limit.window_ms, |(_, span)| span);
    let mut requests: BTreeMap<u64, (u32, String, u64)> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<Mark>> = BTreeMap::new();
    for event in events {
        match event {
            Event::Request {
                id,
                gateway,
                key,
                at_ms,
                ..
            } => {
                requests.insert(*id, (*gateway, key.clone(), *at_ms));
            }
            Event::Decision {
                id,
                at_ms,
                outcome,
                round_trips,
                commands,
                ..
            } => {
                if let Some((gateway, key, arrived_ms)) = requests.get(id) {
                    by_key.entry(key.clone()).or_default().push(Mark {
                        gateway: *gateway,
                        id: *id,
                        arrived_ms: *arrived_ms,
                        decided_ms: *at_ms,
                        outcome: *outcome,
                        round_trips: *round_trips,
                        commands: *commands,
                        trips: Vec::new(),
                        in_window: 0,
                    });
                }
            }
            _ => {}
        }
    }
    for marks in by_key.values_mut() {
        count_in_window(marks, window_ms);
    }
    // The key with the worst window; ties go to the first key in order.
    let (key, mut marks) =
        by_key
            .into_iter()
            .fold((String::new(), Vec::new()), |best, (key, marks)| {
                let worst = |m: &[Mark]| m.iter().map(|m| m.in_window).max().unwrap_or(0);
                if best.0.is_empty() || worst(&marks) > worst(&best.1) {
                    (key, marks)
                } else {
                    best
                }
            });
    marks.sort_by_key(|m| (m.arrived_ms, m.id));
    let bands = scenario.faults.iter().map(band).collect();
    Timeline {
        scenario,
        seed,
        property,
        steps,
        key,
        bound,
        marks,
        bands,
    }
}

/// Each mark's count of the key's admissions decided in `(decided − window, decided]`.
fn count_in_window(marks: &mut [Mark], window_ms: u64) {
    let admitted: Vec<u64> = {
        let mut times: Vec<u64> = marks
            .iter()
            .filter(|m| m.outcome == Outcome::Allowed)
            .map(|m| m.decided_ms)
            .collect();
        times.sort_unstable();
        times
    };
    for mark in marks.iter_mut() {
        let from = mark.decided_ms.saturating_sub(window_ms);
        mark.in_window = admitted
            .iter()
            .filter(|&&t| t > from && t <= mark.decided_ms)
            .count() as u64;
    }
}

fn band(fault: &crate::scenario::Fault) -> Band {
    let (label, duration_ms) = match &fault.kind {
        FaultKind::Partition { duration_ms, .. } => ("partition", *duration_ms),
        FaultKind::Hold { duration_ms, .. } => ("hold", *duration_ms),
        FaultKind::RedisRestart { .. } => ("redis restart", 0),
        FaultKind::ClockStep { .. } => ("clock step", 0),
        FaultKind::Failover {} => ("failover", 0),
        FaultKind::LinkLatency { .. } => ("link latency", 0),
        FaultKind::Flush {} => ("flush", 0),
        FaultKind::GatewayRestart { down_ms, .. } => ("gateway restart", *down_ms),
    };
    Band {
        label: label.to_owned(),
        from_ms: fault.at_ms,
        to_ms: fault.at_ms + duration_ms.max(10),
    }
}

/// The marks as CSV, header first.
pub fn csv(timeline: &Timeline) -> String {
    let mut out = String::from(
        "key,gateway,id,arrived_ms,decided_ms,outcome,round_trips,commands,admitted_in_window,trips\n",
    );
    for m in &timeline.marks {
        let outcome = match m.outcome {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::FailOpen => "fail_open",
            Outcome::Error => "error",
        };
        // Each round trip as `COMMAND@sent-replied`, `;` between them.
        let trips: Vec<String> = m
            .trips
            .iter()
            .map(|t| format!("{}@{}-{}", t.commands, t.sent_ms, t.replied_ms))
            .collect();
        out.push_str(&format!(
            "{},{},{},{},{},{outcome},{},{},{},{}\n",
            timeline.key,
            m.gateway,
            m.id,
            m.arrived_ms,
            m.decided_ms,
            m.round_trips,
            m.commands,
            m.in_window,
            trips.join(";")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the window count counts admissions only, inside the trailing window, and the
    /// worst key is the one shown. Method: a hand-made log with two keys.
    #[test]
    fn layout_counts_admissions_in_the_trailing_window() {
        let scenario = Scenario::from_toml(
            "duration_ms = 100\n[limit]\nlimit = 2\nwindow_ms = 1000\n[[gateways]]\ncount = 2\nlimiter = \"legacy_ip_list\"\n[load]\nrate_per_s = 10\n",
        )
        .expect("valid");
        let mut events = Vec::new();
        let mut push = |id: u64, gateway: u32, key: &str, at_ms: u64, outcome: Outcome| {
            events.push(Event::Request {
                id,
                gateway,
                key: key.to_owned(),
                at_ms,
                cost: 1,
            });
            events.push(Event::Decision {
                id,
                at_ms: at_ms + 3,
                outcome,
                latency_ms: 3,
                round_trips: 3,
                commands: 3,
                pool_wait_ms: 0,
                error: None,
                error_class: None,
            });
        };
        push(1, 0, "k0", 0, Outcome::Allowed);
        push(2, 1, "k1", 10, Outcome::Allowed);
        push(3, 0, "k1", 20, Outcome::Allowed);
        push(4, 1, "k1", 30, Outcome::Denied);
        push(5, 0, "k1", 40, Outcome::Allowed);
        push(6, 1, "k1", 1500, Outcome::Allowed);
        let timeline = layout(scenario, 7, "p".to_owned(), Vec::new(), &events);
        assert_eq!(timeline.key, "k1");
        assert_eq!(timeline.bound, Some((2, 1000)));
        let counts: Vec<u64> = timeline.marks.iter().map(|m| m.in_window).collect();
        assert_eq!(counts, [1, 2, 2, 3, 1]);
        assert_eq!(timeline.worst_in_window(), 3);
        assert!(csv(&timeline).contains("k1,1,4,30,33,denied,3,3,2,\n"));
    }

    /// Goal: each request gets its own round trips, in order, and a fault gets its band.
    /// Method: a hand-made log and trace, a scenario with a partition.
    #[test]
    fn trips_attach_to_their_requests_and_faults_get_bands() {
        let scenario = Scenario::from_toml(
            "duration_ms = 100\n[limit]\nlimit = 2\nwindow_ms = 1000\n[[gateways]]\ncount = 2\nlimiter = \"legacy_ip_list\"\n[load]\nrate_per_s = 10\n[[faults]]\nat_ms = 20\nkind = \"partition\"\na = \"gateway-0\"\nb = \"redis-0\"\nduration_ms = 30\n",
        )
        .expect("valid");
        let mut events = Vec::new();
        for (id, gateway) in [(1u64, 0u32), (2, 1)] {
            events.push(Event::Request {
                id,
                gateway,
                key: "k0".to_owned(),
                at_ms: 0,
                cost: 1,
            });
            events.push(Event::Decision {
                id,
                at_ms: 6,
                outcome: Outcome::Allowed,
                latency_ms: 6,
                round_trips: 2,
                commands: 3,
                pool_wait_ms: 0,
                error: None,
                error_class: None,
            });
        }
        let trip = |id, sent_ms, replied_ms, commands: &[&'static str]| RoundTrip {
            id,
            sent_ms,
            replied_ms,
            commands: commands.to_vec(),
            ok: true,
        };
        let mut timeline = layout(scenario, 1, "p".to_owned(), Vec::new(), &events);
        attach_trips(
            &mut timeline,
            &[
                trip(2, 0, 3, &["LLEN"]),
                trip(1, 0, 2, &["LLEN"]),
                trip(1, 2, 6, &["LPUSH", "EXPIRE"]),
            ],
        );
        let names: Vec<Vec<&str>> = timeline
            .marks
            .iter()
            .map(|m| m.trips.iter().map(|t| t.commands.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["LLEN", "LPUSH+EXPIRE"], vec!["LLEN"]]);
        assert_eq!(timeline.gateways(), 2);
        assert_eq!(
            timeline.bands,
            [Band {
                label: "partition".to_owned(),
                from_ms: 20,
                to_ms: 50
            }]
        );
        assert!(csv(&timeline).contains(",LLEN@0-2;LPUSH+EXPIRE@2-6\n"));
    }
}
