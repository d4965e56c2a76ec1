//! The remaining named races (R2, R5, R7, R9, R11, R12, path D's lost EXPIRE, the memory
//! list's whole-second clock, C2's bucket without TTL) and
//! shrinking: each race is FOUND with new-api's limiter and NOT with its replacement, with
//! fixed seeds and runs of a few simulated seconds.

use crate::common::{parse, run, with_limiter};

use sim::event::Event;
use sim::scenario::LimiterKind;

const R2: &str = include_str!("../../scenarios/r2-legacy-list-full.toml");
const R7: &str = include_str!("../../scenarios/r7-flush-legacy-ip-list.toml");
const R11: &str = include_str!("../../scenarios/r11-memory-cleanup.toml");
const R12: &str = include_str!("../../scenarios/r12-memory-instances.toml");
const C2: &str = include_str!("../../scenarios/noscript-legacy-token-bucket.toml");
const EMAIL: &str = include_str!("../../scenarios/d-email-lost-expire.toml");

/// Seeds every race test runs: a race must show on each, a fix must hold on each.
const SEEDS: [u64; 3] = [1, 2, 3];

/// Runs the legacy scenario and its replacement on every seed: the legacy run must violate
/// `property`, the replacement must be safe and still deny.
fn found_then_fixed(text: &str, property: &str, replacement: LimiterKind) {
    for seed in SEEDS {
        let legacy = run(&parse(text), seed);
        assert!(
            legacy.violated(property),
            "seed {seed}: {property} not violated by the legacy limiter\n{legacy}"
        );
        let fixed = run(&with_limiter(text, replacement), seed);
        fixed.assert_safe();
        assert!(
            fixed.metrics.denied > 0,
            "{replacement:?} never denied:\n{fixed}"
        );
    }
}

#[test]
fn r2_full_legacy_list_admits_two_on_one_aged_out_entry_and_the_sliding_log_does_not() {
    // Goal: R2, two requests read the same aged-out oldest entry (LINDEX -1) of a full list
    // and both are admitted. Method: two gateways, steady load far above L = 5 per second
    // on one key (the list stays full), a 5-15 ms link; the legacy list must exceed L in
    // some window, the atomic sliding log (same bound) must not.
    found_then_fixed(R2, "admissions_within_bound", LimiterKind::AtomicSlidingLog);
    // The list is full after the first window (the load is 12 x L), and it never shrinks
    // below max again (LTRIM keeps max, the TTL is 20 min), so what is over the bound from
    // then on is R2, not R3's below-max race. Judge only requests that arrive after
    // `FULL_FROM_MS`: dropping the earlier ones can only hide excess, never invent it.
    const FULL_FROM_MS: u64 = 1_500;
    let scenario = parse(R2);
    for seed in SEEDS {
        let (_, events) = sim::simulate(&scenario, seed).expect("runs");
        let late: std::collections::BTreeSet<u64> = events
            .iter()
            .filter_map(|event| match event {
                Event::Request { id, at_ms, .. } if *at_ms >= FULL_FROM_MS => Some(*id),
                _ => None,
            })
            .collect();
        let kept: Vec<Event> = events
            .into_iter()
            .filter(|event| event.request_id().is_none_or(|id| late.contains(&id)))
            .collect();
        let report = sim::checker::check(&scenario, seed, &kept);
        assert!(
            report.violated("admissions_within_bound"),
            "seed {seed}: no excess once the list is full\n{report}"
        );
    }
}

#[test]
fn r7_flushed_key_between_llen_and_lindex_is_a_500_and_atomic_scripts_never_5xx() {
    // Goal: R7, the key vanishes between LLEN and LINDEX and the legacy list answers 500
    // while Redis is healthy. Method: FLUSHALL every 100 ms under 400 requests per second on
    // one key; the legacy list must 5xx outside any outage, the atomic sliding log never.
    found_then_fixed(
        R7,
        "no_5xx_while_redis_healthy",
        LimiterKind::AtomicSlidingLog,
    );
}

#[test]
fn r11_memory_sweep_shorter_than_the_window_over_admits_and_the_sharded_gcra_does_not() {
    // Goal: R11, new-api's in-memory sweep drops keys idle longer than its age (20 min)
    // even inside a longer window. Method: scaled down, a 60 s window and a 2 s sweep,
    // bursts of L every 10 s; the legacy list must exceed L per window, the sharded
    // MemoryLimiter (GCRA, swept every 2 s too) must stay in B + floor(Δ/T).
    found_then_fixed(R11, "admissions_within_bound", LimiterKind::MemoryGcra);
}

#[test]
fn r12_in_memory_limits_multiply_by_instances_and_redis_does_not() {
    // Goal: R12, N gateways with their own memory admit N x L. Method: three gateways, one
    // key; new-api's memory list and the sharded in-process GCRA must both exceed the bound
    // (neither shares state), the Redis sliding log must not.
    found_then_fixed(
        R12,
        "admissions_within_bound",
        LimiterKind::AtomicSlidingLog,
    );
    for seed in SEEDS {
        let per_process = run(&with_limiter(R12, LimiterKind::MemoryGcra), seed);
        assert!(
            per_process.violated("admissions_within_bound"),
            "seed {seed}: per-process GCRA stayed in bound\n{per_process}"
        );
    }
}

#[test]
fn email_limit_loses_its_expire_in_a_partition_and_the_atomic_window_does_not() {
    // Goal: path D, INCR then EXPIRE as two round trips: a partition between them leaves a
    // key with no TTL (a permanent lockout). Method: many keys, one-way partitions from the
    // gateway to Redis; the legacy email limit must leave a key without TTL, the atomic
    // fixed window (one script) must not.
    for seed in SEEDS {
        let legacy = run(&parse(EMAIL), seed);
        assert!(
            legacy.violated("every_key_has_ttl"),
            "seed {seed}: no key lost its TTL\n{legacy}"
        );
        let fixed = run(&with_limiter(EMAIL, LimiterKind::AtomicFixedWindow), seed);
        fixed.assert_safe();
    }
}

#[test]
fn shrinking_a_legacy_race_gives_a_smaller_scenario_that_still_violates() {
    // Goal: the shrinker's promise: smaller in some dimension, no larger in any, and the
    // same property still fails when the shrunk scenario is replayed from scratch. Method:
    // shrink R3 (three gateways, bursts, L = 5) with a budget of 30 runs, then replay.
    const R3: &str = include_str!("../../scenarios/r3-legacy-ip-list.toml");
    let scenario = parse(R3);
    let seed = 1;
    let (report, events) = sim::simulate(&scenario, seed).expect("runs");
    let shrunk = sim::shrink::shrink(&scenario, seed, &report, events, 30).expect("violates");
    assert_eq!(shrunk.property, "admissions_within_bound");
    assert!(!shrunk.steps.is_empty(), "nothing shrunk");
    assert!(shrunk.runs <= 30);
    let (before, after) = (
        sim::shrink::size(&scenario),
        sim::shrink::size(&shrunk.scenario),
    );
    assert!(
        after.0 <= before.0
            && after.1 <= before.1
            && after.2 <= before.2
            && after.3 <= before.3
            && after.4 <= before.4
            && after != before,
        "{before:?} -> {after:?}"
    );
    let replayed = run(&shrunk.scenario, seed);
    assert!(replayed.violated("admissions_within_bound"), "{replayed}");
    let text = sim::shrink::render(&shrunk, seed, "ratelab run --scenario FILE --seed 1");
    assert!(
        text.contains("replay: ratelab run --scenario FILE --seed 1"),
        "{text}"
    );
    // A safe run has nothing to shrink.
    let (safe, events) =
        sim::simulate(&with_limiter(R3, LimiterKind::AtomicSlidingLog), seed).expect("runs");
    assert!(sim::shrink::shrink(&scenario, seed, &safe, events, 30).is_none());
}

#[test]
fn r9_legacy_bucket_goes_negative_after_a_redis_clock_step_back_and_the_atomic_one_does_not() {
    // Goal: the "bucket levels in range" property (R9). Method: Redis steps back 30 s under
    // load on new-api's bucket (N = 10 per minute); the snapshot's `tokens` must be found
    // below 0. The atomic token bucket on the same run keeps `credit` in [0, B x T] and is
    // safe overall.
    const R9: &str = include_str!("../../scenarios/r9-legacy-bucket-clock-step-back.toml");
    for seed in SEEDS {
        let legacy = run(&parse(R9), seed);
        assert!(
            legacy.violated("bucket_levels_in_range"),
            "seed {seed}: no bucket level out of range\n{legacy}"
        );
        let fixed = run(&with_limiter(R9, LimiterKind::AtomicTokenBucket), seed);
        fixed.assert_safe();
        assert!(
            fixed
                .verdict("bucket_levels_in_range")
                .is_some_and(|verdict| verdict.held && !verdict.detail.starts_with("0 ")),
            "{fixed}"
        );
        assert!(fixed.metrics.denied > 0, "{fixed}");
    }
}

#[test]
fn r5_group_limits_on_one_user_key_over_admit_the_strict_group_and_per_group_keys_do_not() {
    // Goal: R5, new-api's group override changes the numbers but keeps the per-user key.
    // Method: a strict group (3 per minute) and a vip group (1000 per minute) on one user's
    // bucket; the strict group must exceed its own bound. With per-group keys
    // (`$group` in the key) and the atomic bucket, every group stays in its own bound.
    const R5: &str = include_str!("../../scenarios/r5-legacy-group-quotas.toml");
    for seed in SEEDS {
        let legacy = run(&parse(R5), seed);
        assert!(
            legacy.violated("group_admissions_within_bound"),
            "seed {seed}: the strict group stayed in bound\n{legacy}"
        );
        let mut fixed = with_limiter(R5, LimiterKind::AtomicTokenBucket);
        for group in &mut fixed.gateways {
            group.key_scheme = Some("rl:$ns:{u:$user}:$group".to_owned());
        }
        let fixed = run(&fixed, seed);
        fixed.assert_safe();
        assert!(
            fixed
                .verdict("group_admissions_within_bound")
                .is_some_and(|verdict| verdict.held),
            "{fixed}"
        );
        assert!(fixed.metrics.denied > 0, "{fixed}");
    }
}

#[test]
fn memory_list_whole_second_clock_over_admits_up_to_l_with_one_gateway() {
    // Postmortem: new-api's in-memory list (`common/rate-limit.go`, path A/B in memory mode)
    // over-admits with ONE gateway and no fault, and that is faithful, not a bug of ours nor
    // of the checker. Its queue holds Unix SECONDS (`time.Now().Unix()`) and admits when
    // `now - q[0] >= duration`, so "one second later" is the next whole second, which can be
    // 1 ms later. Smallest case, L = 1 per 1 s: admitted at 0.999 s (second 0) and at 1.000 s
    // (second 1): 2 admissions 1 ms apart where 1 is allowed, over by 1. At most L more per
    // window (a true window spans two whole seconds, L each): L = 10 gives 20 in 2 ms.
    // The verdict table's `legacy-memory-list--none` cell (over by 4, Poisson load) is this.
    let store = ratelab::newapi_memory::InMemoryRateLimiter::new();
    let second = |ms: u64| i64::try_from(ms / 1_000).expect("small");
    assert!(store.request(b"k", 1, 1, second(999)));
    assert!(
        store.request(b"k", 1, 1, second(1_000)),
        "1 ms later, a new second"
    );
    assert!(!store.request(b"k", 1, 1, second(1_998)));
    let store = ratelab::newapi_memory::InMemoryRateLimiter::new();
    let admitted = (0..11)
        .map(|_| store.request(b"k", 10, 1, second(999)))
        .chain((0..11).map(|_| store.request(b"k", 10, 1, second(1_000))))
        .filter(|&admitted| admitted)
        .count();
    assert_eq!(admitted, 20, "L in each of two whole seconds, 1 ms apart");

    // Method, simulated: R12's load (150/s on one key, L = 5 per 1 s, Poisson) on ONE
    // gateway: the list must exceed L in some true window, by at most L (the whole-second
    // clock's worst), and the Redis sliding log (ms timestamps, same bound) must not.
    let mut one = parse(R12);
    one.gateways[0].count = 1;
    let text = one.to_toml();
    found_then_fixed(
        &text,
        "admissions_within_bound",
        LimiterKind::AtomicSlidingLog,
    );
    for seed in SEEDS {
        let report = run(&one, seed);
        let over = report.metrics.over_admission_max;
        assert!(
            (1..=one.limit.limit).contains(&over),
            "seed {seed}: over by {over}, not 1..=L\n{report}"
        );
    }
}

#[test]
fn c2_legacy_token_bucket_leaves_its_hash_without_ttl_by_design() {
    // Postmortem: new-api's C2 token bucket script (HMSET of tokens and last_time on a hash
    // `rateLimit:<userId>`) never sets a TTL, so every user's bucket stays in Redis for good:
    // `every_key_has_ttl` fails for it in every cell of the verdict table (the †), and that
    // is faithful to new-api (reference: "The hash is never given a TTL"). Method: the
    // NOSCRIPT scenario's load without its fault on the legacy bucket fails the property,
    // naming only bucket keys; the same run on the atomic token bucket holds it, so the
    // script, not the harness, leaves the key.
    let mut quiet = parse(C2);
    quiet.faults.clear();
    for seed in SEEDS {
        let legacy = run(&quiet, seed);
        let verdict = legacy
            .verdict("every_key_has_ttl")
            .expect("judged with a snapshot");
        assert!(
            !verdict.held,
            "seed {seed}: the bucket hash had a TTL\n{legacy}"
        );
        let listed = verdict
            .detail
            .split(": ")
            .nth(1)
            .expect("the keys are named");
        assert!(
            listed.split(", ").all(|key| key.starts_with("rateLimit:")),
            "seed {seed}: a key other than a bucket lacks a TTL: {listed}"
        );
        let mut atomic = quiet.clone();
        atomic.gateways[0].limiter = LimiterKind::AtomicTokenBucket;
        let atomic = run(&atomic, seed);
        assert!(
            atomic
                .verdict("every_key_has_ttl")
                .is_some_and(|verdict| verdict.held),
            "{atomic}"
        );
    }
}
