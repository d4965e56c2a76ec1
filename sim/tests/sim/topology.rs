//! Redis topologies: a replicated primary that fails over (with and without replication
//! lag), and a cluster of shards that gateways reach through a slot router following MOVED.
//! Fixed seeds; each run is a few simulated seconds.

use crate::common::{parse, run_with_log as run};

use sim::event::Event;
use sim::scenario::{LimiterKind, Scenario, Topology};
use sim::topology::shard_slots;

const FAILOVER: &str = include_str!("../../scenarios/failover-replication-lag.toml");
const HOT: &str = include_str!("../../scenarios/cluster-hot-keys.toml");
const PERF: &str = include_str!("../../scenarios/perf-4-gateways-3-shards.toml");

const SEEDS: [u64; 3] = [1, 2, 3];

/// The host whose slot range holds the slot of the hash tag `{tag}`.
fn owner_of(tag: &str, shards: u32) -> String {
    let slot = ratelab::keys::key_slot(format!("{{{tag}}}").as_bytes());
    let index = (0..shards)
        .find(|&index| {
            let (low, high) = shard_slots(index, shards);
            (low..=high).contains(&slot)
        })
        .expect("every slot has an owner");
    format!("redis-{index}")
}

#[test]
fn failover_without_lag_loses_nothing() {
    // Goal: a failover to a replica that had every write costs no over-admission; only the
    // script cache is lost. Method: the failover scenario with replication_lag_ms = 0 on
    // three seeds: safe, nothing beyond the plain bound, and the first script call on the
    // new primary takes two round trips (EVALSHA answered NOSCRIPT, then EVAL).
    let mut scenario = parse(FAILOVER);
    scenario.redis.replication_lag_ms = 0;
    for seed in SEEDS {
        let (report, events) = run(&scenario, seed);
        report.assert_safe();
        assert!(
            report.verdict("fault_0_fired").is_some_and(|v| v.held),
            "{report}"
        );
        assert_eq!(report.metrics.failovers, 1);
        assert_eq!(report.metrics.failover_excess, 0, "seed {seed}:\n{report}");
        let failover_ms = scenario.faults[0].at_ms;
        let refetched = events.iter().any(|event| {
            matches!(event, Event::Decision { at_ms, round_trips: 2, .. } if *at_ms >= failover_ms)
        });
        assert!(
            refetched,
            "seed {seed}: no NOSCRIPT fallback after the failover: the promoted replica kept a script cache"
        );
    }
}

#[test]
fn failover_with_lag_over_admits_within_the_failover_allowance() {
    // Goal: writes the replica had not received are lost at the failover, and the checker
    // FINDS the resulting over-admission beyond the plain bound while the run stays within
    // the stated allowance (L + 1 per key per failover). Method: the shipped scenario (lag
    // 600 ms, sliding log L = 10, saturated keys) on three seeds; then the same runs judged
    // with the failover removed from the scenario must fail the bound (the excess is real,
    // not an artefact of the figure).
    let scenario = parse(FAILOVER);
    assert_eq!(scenario.redis.topology, Topology::Replicated);
    for seed in SEEDS {
        let (report, events) = run(&scenario, seed);
        report.assert_safe();
        let metrics = &report.metrics;
        assert!(
            metrics.failover_excess > 0,
            "seed {seed}: a 600 ms lag lost nothing:\n{report}"
        );
        assert!(
            metrics.failover_excess <= metrics.failover_allowance,
            "seed {seed}: beyond the failover allowance:\n{report}"
        );
        let mut unexplained = scenario.clone();
        unexplained.faults.clear();
        let judged = sim::checker::check(&unexplained, seed, &events);
        assert!(
            judged.violated("admissions_within_bound"),
            "seed {seed}: without the failover allowance the bound should fail:\n{judged}"
        );
    }
}

#[test]
fn a_cluster_with_hot_keys_reports_the_hottest_node() {
    // Goal: per-node and per-slot load figures name the node that owns the hot key. Method:
    // three shards, 80% of requests on key 0 (hash tag `u:0`); the hottest node must be that
    // tag's owner, the hottest slot its slot, every node must have been asked (the gateways
    // learn the slot table from MOVED), and the limits still hold.
    let scenario = parse(HOT);
    for seed in SEEDS {
        let (report, _) = run(&scenario, seed);
        report.assert_safe();
        let metrics = &report.metrics;
        let owner = owner_of("u:0", scenario.redis.shards);
        assert_eq!(
            metrics.hottest_node.as_ref().map(|(host, _)| host.clone()),
            Some(owner),
            "seed {seed}:\n{report}"
        );
        assert_eq!(
            metrics.hottest_slot.map(|(slot, _)| slot),
            Some(ratelab::keys::key_slot(b"{u:0}")),
            "seed {seed}:\n{report}"
        );
        assert_eq!(metrics.commands_per_node.len(), 3);
        assert!(
            metrics.moved_redirects > 0,
            "seed {seed}: no MOVED followed"
        );
        assert_eq!(metrics.errors, 0, "seed {seed}:\n{report}");
    }
}

#[test]
fn hash_tagged_scripts_never_cross_slots_on_a_cluster() {
    // Goal: the redesign's keys (`rl:$ns:{u:$user}`) keep a multi-key script (the success
    // reservation's :ok/:res/:seq) in one slot, so a cluster never answers CROSSSLOT; the
    // same keys without the hash tag do hit CROSSSLOT (the check can fail). Method: the hot
    // cluster scenario with each atomic limiter, then the reservation with `rl:$ns:$user`.
    let base = parse(HOT);
    for kind in [
        LimiterKind::SuccessReservation,
        LimiterKind::AtomicGcra,
        LimiterKind::AtomicSlidingLog,
        LimiterKind::AtomicFixedWindow,
        LimiterKind::AtomicTokenBucket,
    ] {
        let mut scenario = base.clone();
        scenario.gateways[0].limiter = kind;
        let (report, _) = run(&scenario, 7);
        report.assert_safe();
        assert_eq!(report.metrics.crossslot_errors, 0, "{kind:?}:\n{report}");
        assert_eq!(report.metrics.errors, 0, "{kind:?}:\n{report}");
    }
    let mut untagged = base;
    untagged.gateways[0].limiter = LimiterKind::SuccessReservation;
    untagged.gateways[0].key_scheme = Some("rl:$ns:$user".to_owned());
    let (report, _) = run(&untagged, 7);
    assert!(
        report.metrics.crossslot_errors > 0,
        "untagged multi-key scripts should hit CROSSSLOT:\n{report}"
    );
}

#[test]
fn the_four_gateway_three_shard_scenario_runs() {
    // Goal: the throughput scenario (4 gateways, 3 shards, 10k req/s) runs, is safe, and
    // spreads its Zipf keys over every shard. Method: its first 300 simulated ms (the whole
    // 5 s run is for `ratelab run` in release: it takes too long for a debug test).
    let mut scenario = parse(PERF);
    scenario.duration_ms = 300;
    let (report, _) = run(&scenario, 1);
    report.assert_safe();
    assert!(report.metrics.decisions > 2_500, "{report}");
    assert!(
        report
            .metrics
            .commands_per_node
            .iter()
            .all(|(_, count)| *count > 0),
        "{report}"
    );
}

#[test]
fn failover_needs_a_replicated_topology() {
    // Goal: a failover on a topology without replicas, a second failover, or a cluster
    // without shards is a bad file, naming the field. Method: edited shipped scenarios.
    for topology in ["standalone", "cluster"] {
        let text = FAILOVER.replace("\"replicated\"", &format!("\"{topology}\""));
        let error = Scenario::from_toml(&text).expect_err("a failover needs replicas");
        assert!(error.to_string().contains("faults[0].kind"), "{error}");
    }
    let twice = format!("{FAILOVER}\n[[faults]]\nat_ms = 3000\nkind = \"failover\"\n");
    let error = Scenario::from_toml(&twice).expect_err("one replica to promote");
    assert!(error.to_string().contains("faults[1].kind"), "{error}");
    let text = HOT.replace("shards = 3", "shards = 0");
    let error = Scenario::from_toml(&text).expect_err("no shards");
    assert!(error.to_string().contains("redis.shards"), "{error}");
}

#[test]
fn topology_runs_are_deterministic() {
    // Goal: replication (a task per replica), failover and the cluster router keep a seed's
    // trace reproducible. Method: the failover and the hot cluster scenarios, twice each with
    // one seed (same log hash), and once with another seed (a different hash).
    let mut short_cluster = parse(HOT);
    short_cluster.duration_ms = 800;
    for scenario in [parse(FAILOVER), short_cluster] {
        let first = run(&scenario, 21).1;
        let second = run(&scenario, 21).1;
        assert_eq!(
            sim::event::log_hash(&first),
            sim::event::log_hash(&second),
            "{:?} is not deterministic",
            scenario.redis.topology
        );
        let other = run(&scenario, 22).1;
        assert_ne!(sim::event::log_hash(&first), sim::event::log_hash(&other));
    }
}

#[test]
fn legacy_bucket_fails_for_good_after_a_failover() {
    // Goal: new-api's token bucket (EVALSHA of a digest loaded once, no NOSCRIPT fallback)
    // answers 5xx from the promoted replica, whose script cache is empty, until the process
    // restarts: FOUND as 5xx while Redis is healthy, even with no replication lag. Method:
    // the failover scenario with legacy_token_bucket (window one minute), lag 0.
    let mut scenario = parse(FAILOVER);
    scenario.redis.replication_lag_ms = 0;
    scenario.limit.window_ms = 60_000;
    scenario.limit.limit = 50;
    scenario.gateways[0].limiter = LimiterKind::LegacyTokenBucket;
    let (report, _) = run(&scenario, 1);
    assert!(
        report.violated("no_5xx_while_redis_healthy"),
        "the legacy bucket survived a failover:\n{report}"
    );
    assert!(report.metrics.errors > 100, "{report}");
}
