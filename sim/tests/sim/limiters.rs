//! The limiters added to the simulation after the first eleven: the atomic sliding window
//! counter, the pipelined fixed window, the merged multi-limit script, the sharded GCRA and
//! the hybrid. Each holds its stated bound in its shipped scenarios (with denials, so the
//! bound was reached), the checker catches each one over-admitting, and the metrics say what
//! each costs in round trips and commands.

use sim::checker::Report;
use sim::event::{Event, Outcome};
use sim::scenario::{LimiterKind, Scenario};

use crate::common::{parse, run, run_with_log};

const SLIDING_WINDOW: &str = include_str!("../../scenarios/sliding-window-two-gateways.toml");
const SLIDING_WINDOW_RESTART: &str =
    include_str!("../../scenarios/sliding-window-redis-restart.toml");
const PIPELINED: &str = include_str!("../../scenarios/pipelined-fixed-window.toml");
const PIPELINED_RESTART: &str =
    include_str!("../../scenarios/pipelined-fixed-window-redis-restart.toml");
const PIPELINED_SKEW: &str = include_str!("../../scenarios/pipelined-fixed-window-clock-skew.toml");
const MULTI: &str = include_str!("../../scenarios/multi-limit-global-user-model.toml");
const MULTI_CLUSTER: &str = include_str!("../../scenarios/multi-limit-cluster.toml");
const MULTI_RESTART: &str = include_str!("../../scenarios/multi-limit-redis-restart.toml");
const SHARDED: &str = include_str!("../../scenarios/sharded-gcra-hot-key-cluster.toml");
const HYBRID: &str = include_str!("../../scenarios/hybrid-gcra-local-denials.toml");
const HYBRID_PARTITION: &str = include_str!("../../scenarios/hybrid-gcra-partition.toml");

const SEEDS: [u64; 3] = [1, 2, 3];

/// Every shipped scenario of the added kinds that expects to hold (the pipelined window's
/// clock-skew scenario expects a violation: its own test).
const SHIPPED: [(&str, &str); 10] = [
    ("sliding-window-two-gateways", SLIDING_WINDOW),
    ("sliding-window-redis-restart", SLIDING_WINDOW_RESTART),
    ("pipelined-fixed-window", PIPELINED),
    ("pipelined-fixed-window-redis-restart", PIPELINED_RESTART),
    ("multi-limit-global-user-model", MULTI),
    ("multi-limit-cluster", MULTI_CLUSTER),
    ("multi-limit-redis-restart", MULTI_RESTART),
    ("sharded-gcra-hot-key-cluster", SHARDED),
    ("hybrid-gcra-local-denials", HYBRID),
    ("hybrid-gcra-partition", HYBRID_PARTITION),
];

/// Runs the harness on `limiter_side` and judges its log against `checker_side`: a limiter
/// configured more generously than the quota the checker holds it to.
fn mismatched(limiter_side: &Scenario, checker_side: &Scenario, seed: u64) -> Report {
    let output = sim::harness::run(limiter_side, seed)
        .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    sim::checker::check(checker_side, seed, &output.events)
}

#[test]
fn each_added_kind_holds_its_bound_in_its_scenarios_and_denies() {
    // Goal: the five added kinds hold their stated bounds, and the runs prove something.
    // Method: every shipped scenario of theirs that expects to hold, on three seeds, must be safe, have an
    // `admissions_within_bound` verdict (each kind states a bound), deny requests (the
    // limit was reached) and fire every fault it schedules.
    let mut kinds = std::collections::BTreeSet::new();
    for (name, text) in SHIPPED {
        let scenario = parse(text);
        kinds.insert(scenario.gateways[0].limiter);
        for seed in SEEDS {
            let report = run(&scenario, seed);
            report.assert_safe();
            assert!(
                report.verdict("admissions_within_bound").is_some(),
                "{name}: no bound judged\n{report}"
            );
            assert!(
                report.metrics.denied > 0,
                "{name} seed {seed}: no denial\n{report}"
            );
            for index in 0..scenario.faults.len() {
                assert!(
                    !report.violated(&format!("fault_{index}_fired")),
                    "{name} seed {seed}: fault {index} did not fire\n{report}"
                );
            }
        }
    }
    let added = &LimiterKind::ALL[LimiterKind::SWARM_FIRST..];
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        added,
        "a kind without a scenario"
    );
}

#[test]
fn the_checker_catches_each_added_kind_over_admitting() {
    // Goal: each added kind's bound is tight enough to see an over-admission. Method: the
    // harness runs the limiter with a larger limit than the checker judges against (a quota
    // mismatch). The rate kinds (sharded GCRA, hybrid: B + floor(Δ/T)) must be caught with a
    // limit of L + 1, one unit too many; the window kinds (sliding window counter, pipelined
    // window: 2L per trailing window, which a saturated key at L + 1 per aligned window never
    // reaches) with 3L. The same runs judged against their own limit are safe.
    for (text, raised) in [
        (SLIDING_WINDOW, 3 * 10),
        (PIPELINED, 3 * 10),
        (SHARDED, 40 + 1),
        (HYBRID, 10 + 1),
    ] {
        let honest = parse(text);
        let mut generous = honest.clone();
        generous.limit.limit = raised;
        for seed in SEEDS {
            let report = mismatched(&generous, &honest, seed);
            assert!(
                report.violated("admissions_within_bound"),
                "{:?} seed {seed}: limit {raised} judged as {} went unnoticed\n{report}",
                honest.gateways[0].limiter,
                honest.limit.limit
            );
            mismatched(&generous, &generous, seed).assert_safe();
        }
    }
}

#[test]
fn the_pipelined_window_over_admits_when_gateway_clocks_disagree() {
    // Goal: the pipelined fixed window's known weakness, its key named by the gateway
    // clock, is found, and only when the clocks disagree. Method: two gateways 600 ms apart
    // on one key, a flush at 1500 ms; admissions_within_bound (2L per trailing window) must
    // fail on every seed, with denials (the limit was reached). The same run with both
    // clocks equal must hold, and the atomic fixed window script (Redis TIME) with the skew
    // must hold too.
    let skewed = parse(PIPELINED_SKEW);
    let mut equal = skewed.clone();
    equal.gateways[1].clock_offset_ms = 0;
    let mut atomic = skewed.clone();
    for group in &mut atomic.gateways {
        group.limiter = LimiterKind::AtomicFixedWindow;
    }
    for seed in SEEDS {
        let report = run(&skewed, seed);
        assert!(
            report.violated("admissions_within_bound") && report.metrics.denied > 0,
            "seed {seed}: the skew went unnoticed\n{report}"
        );
        run(&equal, seed).assert_safe();
        run(&atomic, seed).assert_safe();
    }
}

/// A multi-limit scenario in which both limits bind: the per-user one (6 per s) on the hot
/// key k0 (60 requests per s), and the global one (15 per s) on the sum of all users (60
/// requests per s over the seven others).
const MULTI_BOTH_BIND: &str = r#"
duration_ms = 3000
[limit]
limit = 10
window_ms = 1000
[[gateways]]
count = 2
limiter = "multi_limit"
limits = [
  { key_scheme = "rl:global:{$group}", limit = 15 },
  { key_scheme = "rl:user:{$group}:$user", limit = 6 },
]
[load]
rate_per_s = 120
keys = 8
popularity = { kind = "hot", share = 0.5 }
"#;

#[test]
fn the_checker_judges_each_limit_of_the_multi_limit() {
    // Goal: the multi-limit's verdict judges every limit its script checks, each on its own
    // keys. Method: a scenario where the global and the per-user limit both bind; the
    // harness runs it with one limit tripled at a time and the checker judges against the
    // scenario as written. Each must be caught, and the verdict must name the raised limit
    // (the other, unchanged, still holds). The honest run is safe.
    let honest = parse(MULTI_BOTH_BIND);
    for seed in SEEDS {
        run(&honest, seed).assert_safe();
        for (position, template) in [(0, "rl:global:{$group}"), (1, "rl:user:{$group}:$user")] {
            let mut generous = honest.clone();
            generous.gateways[0].limits[position].limit *= 3;
            let report = mismatched(&generous, &honest, seed);
            let verdict = report
                .verdict("admissions_within_bound")
                .expect("a multi-limit states its bounds");
            assert!(
                !verdict.held && verdict.detail.contains(&format!("limit {template} ")),
                "seed {seed}: {template} tripled went unnoticed or was blamed on another limit\n{report}"
            );
        }
    }
}

#[test]
fn the_multi_limit_verdict_counts_each_admission_on_every_limit_key() {
    // Goal: the per-limit bookkeeping is exact. Method: a hand-made log judged by the
    // checker alone. Limits: global 3 and per-user 2 (per 1000 ms window, so a GCRA burst of
    // 3 and 2). Two users admitted twice each at 0 ms are within their own limit but put 4
    // on the global key (caught, naming it); one user admitted three times is caught on its
    // own key; two users admitted once each are within both.
    let scenario = parse(
        r#"
duration_ms = 1000
[limit]
limit = 10
window_ms = 1000
[[gateways]]
limiter = "multi_limit"
limits = [
  { key_scheme = "rl:global:{$group}", limit = 3 },
  { key_scheme = "rl:user:{$group}:$user", limit = 2 },
]
[load]
rate_per_s = 10
"#,
    );
    let log = |keys: &[&str]| -> Vec<Event> {
        let mut events = Vec::new();
        for (id, key) in (0u64..).zip(keys) {
            events.push(Event::Request {
                id,
                gateway: 0,
                key: (*key).to_owned(),
                at_ms: 0,
                cost: 1,
            });
            events.push(Event::Decision {
                id,
                at_ms: 0,
                outcome: Outcome::Allowed,
                latency_ms: 0,
                round_trips: 1,
                commands: 1,
                pool_wait_ms: 0,
                error: None,
                error_class: None,
            });
        }
        events
    };
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["k0", "k0", "k1", "k1"], Some("limit rl:global:{$group} ")),
        (&["k0", "k0", "k0"], Some("key rl:user:{default}:0 ")),
        (&["k0", "k1"], None),
    ];
    for (keys, caught) in cases {
        let report = sim::checker::check(&scenario, 0, &log(keys));
        let verdict = report
            .verdict("admissions_within_bound")
            .expect("a multi-limit states its bounds");
        match caught {
            Some(needle) => assert!(
                !verdict.held && verdict.detail.contains(needle),
                "{keys:?}: expected a violation naming {needle:?}, got {}",
                verdict.detail
            ),
            None => assert!(verdict.held, "{keys:?}: {}", verdict.detail),
        }
    }
}

#[test]
fn the_multi_limit_records_its_keys_margins() {
    // Goal: the multi-limit's keys carry their time margin into the run's metrics (it was 0:
    // only the single-bound checks recorded margins). Method: the shipped multi-limit
    // scenario on every seed: `margin_ms_max` is above 0 (every admission crosses a link
    // of at least 1 ms) and is the widest margin the multi-limit verdict names.
    for seed in SEEDS {
        let report = run(&parse(MULTI), seed);
        let margin = report.metrics.margin_ms_max;
        assert!(margin > 0, "seed {seed}: no margin recorded\n{report}");
        let verdict = report
            .verdict("admissions_within_bound")
            .expect("the multi-limit is judged");
        assert!(
            verdict
                .detail
                .contains(&format!("widest time margin {margin} ms")),
            "seed {seed}: margin_ms_max {margin} is not the verdict's widest\n{report}"
        );
    }
}

#[test]
fn the_hybrid_answers_denials_locally_and_never_admits_without_redis() {
    // Goal: the hybrid's local parts only deny, and they save round trips. Method: the
    // overloaded hot-key scenario on three seeds; every admission must have made a round
    // trip (the authority decided it), some denials must have made none (answered by the
    // deny cache or the pre-check), and the mean must be under one round trip per decision.
    for seed in SEEDS {
        let (report, events) = run_with_log(&parse(HYBRID), seed);
        let mut local_denials = 0;
        for event in &events {
            if let Event::Decision {
                id,
                outcome,
                round_trips,
                ..
            } = event
            {
                match outcome {
                    Outcome::Allowed => assert!(
                        *round_trips >= 1,
                        "seed {seed}: request {id:#x} admitted without asking Redis\n{report}"
                    ),
                    Outcome::Denied => local_denials += u64::from(*round_trips == 0),
                    _ => {}
                }
            }
        }
        assert!(local_denials > 0, "seed {seed}: no local denial\n{report}");
        assert!(
            report.metrics.round_trips_per_decision < 1.0,
            "seed {seed}: {} round trips per decision\n{report}",
            report.metrics.round_trips_per_decision
        );
    }
}

#[test]
fn round_trips_and_commands_per_decision_are_what_each_kind_costs() {
    // Goal: the metrics the report plots are right for the added kinds. Method: the
    // fault-free scenarios, seed 1. Each script kind decides in one round trip (one command)
    // but for the requests that meet the cold script cache (EVALSHA, NOSCRIPT, EVAL: two); the pipelined window in exactly one
    // round trip of two commands; the sharded GCRA in one, or two when its first shard
    // refuses (so between 1 and 2 on average, above 1 under overload).
    let per_decision = |text: &str| {
        let (report, events) = run_with_log(&parse(text), 1);
        let decisions: Vec<(u64, u64)> = events
            .iter()
            .filter_map(|event| match event {
                Event::Decision {
                    round_trips,
                    commands,
                    error: None,
                    ..
                } => Some((*round_trips, *commands)),
                _ => None,
            })
            .collect();
        (report, decisions)
    };
    for text in [SLIDING_WINDOW, MULTI] {
        let (report, decisions) = per_decision(text);
        // Requests in flight before the script is cached each see NOSCRIPT once: at most
        // one per pooled connection of each gateway.
        let extra = decisions.iter().filter(|&&trips| trips != (1, 1)).count();
        assert!(
            extra <= 2 * 10
                && decisions
                    .iter()
                    .all(|&(trips, sent)| trips <= 2 && sent == trips),
            "{extra} decisions beyond one round trip\n{report}"
        );
    }
    let (report, decisions) = per_decision(PIPELINED);
    assert!(
        decisions.iter().all(|&trips| trips == (1, 2)),
        "the pipeline is one round trip of two commands\n{report}"
    );
    let (report, decisions) = per_decision(SHARDED);
    let mean = report.metrics.round_trips_per_decision;
    assert!(
        decisions.iter().all(|&(trips, _)| (1..=3).contains(&trips)) && mean > 1.0 && mean < 2.1,
        "sharded: {mean} round trips per decision\n{report}"
    );
    assert!(
        report
            .metrics
            .commands_per_node
            .iter()
            .filter(|(_, count)| *count > 0)
            .count()
            > 1,
        "the hot key's shards stayed on one node\n{report}"
    );
}
