//! The checker's unit tests.

use super::properties::bucket_levels_verdict;
use super::*;
use crate::harness::EPOCH_MS;
use crate::scenario::{FaultKind, LimiterKind, Scenario};

/// The resolution [`judge_windows`] finds.
fn resolution(points: &[Point], bound: Bound, extra_ms: u64, resets: &Resets) -> Option<u64> {
    judge_windows(points, bound, extra_ms, resets, true).resolution
}

/// `worst_excess` over `times` (weight 1 each, each decided `margin` ms after it
/// arrived; times start at 1000 so that the arrival is not before zero) for `bound`:
/// the excess `counted - allowed`, or 0 when within the bound.
fn check(times: &[u64], bound: Bound, margin: u64, expected_excess: u64) {
    let points: Vec<Point> = times
        .iter()
        .map(|&time| (1_000 + time, 1_000 + time - margin, 1))
        .collect();
    let excess = worst_excess(&points, bound, 0, &Resets::default())
        .map(|(_, _, counted, allowed)| counted - allowed)
        .unwrap_or(0);
    assert_eq!(excess, expected_excess, "{times:?} against {bound}");
}

#[test]
fn window_and_rate_bounds() {
    let window = |limit, span_ms| Bound::Window { limit, span_ms };
    let rate = |burst, interval_ms| Bound::Rate { burst, interval_ms };
    let cases: &[(&[u64], Bound, u64, u64)] = &[
        (&[], window(1, 1_000), 0, 0),
        (&[0, 999], window(1, 1_000), 0, 1),
        (&[0, 1_000], window(1, 1_000), 0, 0),
        (&[0, 500, 999, 1_500], window(2, 1_000), 0, 1),
        // A margin shrinks the window: 0 and 998 are 998 apart, outside a 997 ms window.
        (&[0, 998], window(1, 1_000), 3, 0),
        (&[0, 0, 0], rate(2, 100), 0, 1),
        (&[0, 0, 100], rate(2, 100), 0, 0),
        (&[0, 0, 99], rate(2, 100), 0, 1),
        (&[0, 0, 99], rate(2, 100), 1, 0),
        // Ten at once, then one per interval: always exactly at the bound.
        (
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 200, 300],
            rate(10, 100),
            0,
            0,
        ),
        (
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 150, 300],
            rate(10, 100),
            0,
            1,
        ),
    ];
    for (times, bound, margin, excess) in cases {
        check(times, *bound, *margin, *excess);
    }
}

#[test]
fn a_gateway_restart_is_a_reset_only_for_in_memory_limiters() {
    // Goal: a gateway restart empties in-process state, not Redis. Method: two groups,
    // gateway-0 on `memory_gcra`, gateway-1 on `atomic_gcra`, a restart of each; only
    // gateway-0's counts as a reset, whatever kinds the run has.
    let scenario = Scenario::from_toml(
        r#"
duration_ms = 2000
[limit]
limit = 5
window_ms = 1000
[[gateways]]
limiter = "memory_gcra"
[[gateways]]
limiter = "atomic_gcra"
[load]
rate_per_s = 10
[[faults]]
at_ms = 300
kind = "gateway_restart"
host = "gateway-0"
[[faults]]
at_ms = 700
kind = "gateway_restart"
host = "gateway-1"
down_ms = 50
"#,
    )
    .expect("a valid scenario");
    let kinds = [LimiterKind::MemoryGcra, LimiterKind::AtomicGcra];
    assert_eq!(resets(&scenario, &kinds).at_ms, vec![300]);
    assert_eq!(
        resets(&scenario, &[LimiterKind::AtomicGcra]).at_ms,
        vec![300],
        "the restarted gateway's own kind decides"
    );
}

#[test]
fn a_restart_that_kept_a_synced_state_excuses_only_what_came_after_the_sync() {
    // A rate of 1 per 100 ms, burst 3. The key admitted at 0, 100, 200 (saturated), the
    // node synced at 150 and restarted at 250: it came back with the TAT of 150, so the
    // admission at 200 was forgotten and is admitted again at 260 (plus the rate's own
    // at 300). Kept as of 150, the allowance is the one admission after the sync.
    let rate = Bound::Rate {
        burst: 3,
        interval_ms: 100,
    };
    let kept = |kept_ms: u64| Resets {
        at_ms: vec![250],
        kept_as_of_ms: [(250, kept_ms)].into_iter().collect(),
        ..Resets::default()
    };
    let relived: Vec<Point> = [0, 0, 0, 100, 200, 260, 300]
        .iter()
        .map(|&t| (t, t, 1))
        .collect();
    assert!(worst_excess(&relived, rate, 0, &Resets::default()).is_some());
    assert_eq!(worst_excess(&relived, rate, 0, &kept(150)), None);
    // Synced after the admission at 200 (as aof_always): nothing was lost, nothing is
    // excused.
    assert_eq!(
        worst_excess(&relived, rate, 0, &kept(220)).map(|w| w.2 - w.3),
        Some(1)
    );
    // One more after the restart is beyond the allowance.
    let mut one_more = relived.clone();
    one_more.push((270, 270, 1));
    one_more.sort_unstable();
    assert_eq!(
        worst_excess(&one_more, rate, 0, &kept(150)).map(|w| w.2 - w.3),
        Some(1)
    );
    // Without persistence the same restart excuses up to B + 1 (everything before it).
    let forgot_all = Resets {
        at_ms: vec![250],
        ..Resets::default()
    };
    assert_eq!(worst_excess(&one_more, rate, 0, &forgot_all), None);
}

#[test]
fn restart_resets_follow_the_persistence_mode() {
    use crate::scenario::Persistence;
    let restart = |persistence, rdb_every_ms| FaultKind::RedisRestart {
        persistence,
        rdb_every_ms,
    };
    let cases = [
        (restart(Persistence::None, None), 7_700, Some(None)),
        (restart(Persistence::AofAlways, None), 7_700, None),
        (
            restart(Persistence::AofEverysec, None),
            7_700,
            Some(Some(7_000)),
        ),
        (
            restart(Persistence::AofEverysec, None),
            7_000,
            Some(Some(7_000)),
        ),
        (
            restart(Persistence::Rdb, Some(3_000)),
            7_700,
            Some(Some(6_000)),
        ),
        (restart(Persistence::Rdb, Some(3_000)), 2_999, Some(Some(0))),
        (FaultKind::Flush {}, 7_700, None),
    ];
    for (kind, at_ms, expected) in cases {
        assert_eq!(restart_reset(&kind, at_ms), expected, "{kind:?} at {at_ms}");
    }
}

#[test]
fn a_reset_earns_one_more_base_allowance() {
    let resets = Resets {
        at_ms: vec![500],
        ..Resets::default()
    };
    let points: Vec<Point> = [0, 0, 600, 600, 600].iter().map(|&t| (t, t, 1)).collect();
    let window = Bound::Window {
        limit: 2,
        span_ms: 1_000,
    };
    assert_eq!(
        worst_excess(&points, window, 0, &Resets::default()).map(|w| w.2),
        Some(5)
    );
    // Two before the reset, three after: the whole earns min(L + 1, 2) more, 5 > 4,
    // and the tail alone is over L; either way one too many.
    assert_eq!(
        worst_excess(&points, window, 0, &resets).map(|w| w.2 - w.3),
        Some(1)
    );
    let two_after: Vec<Point> = [0, 0, 600, 600].iter().map(|&t| (t, t, 1)).collect();
    assert_eq!(worst_excess(&two_after, window, 0, &resets), None);
    // A reset with nothing of this key before it in the window forgets nothing and
    // excuses nothing: three after it are one too many.
    let none_before: Vec<Point> = [600, 600, 600].iter().map(|&t| (t, t, 1)).collect();
    assert_eq!(
        worst_excess(&none_before, window, 0, &resets).map(|w| (w.2, w.3)),
        Some((3, 2))
    );
    // One before it: the reset excuses one.
    let one_before: Vec<Point> = [400, 600, 600, 600].iter().map(|&t| (t, t, 1)).collect();
    assert_eq!(
        worst_excess(&one_before, window, 0, &resets).map(|w| w.2 - w.3),
        Some(1),
        "the tail after the reset is still over the base limit"
    );
    // Resets every 100 ms: each segment between two is judged on its own, so one more
    // in one segment is seen though the window holds ten resets.
    let many = Resets {
        at_ms: (1..=10).map(|step| step * 100).collect(),
        ..Resets::default()
    };
    let mut saturated: Vec<Point> = (0..10)
        .flat_map(|step| [step * 100 + 10, step * 100 + 20])
        .map(|t| (t, t, 1))
        .collect();
    assert_eq!(worst_excess(&saturated, window, 0, &many), None);
    saturated.push((535, 535, 1));
    saturated.sort_unstable();
    assert_eq!(
        worst_excess(&saturated, window, 0, &many).map(|w| w.2 - w.3),
        Some(1)
    );
}

#[test]
fn bucket_levels_are_judged_against_each_kind_and_groups_capacity() {
    let scenario = |kind: LimiterKind, group_limit: Option<u64>| {
        let mut text = format!(
            "duration_ms = 1000\n[limit]\nlimit = 10\nwindow_ms = 60000\n[[gateways]]\nlimiter = \"{}\"\n",
            serde_json::to_value(kind)
                .expect("serialises")
                .as_str()
                .expect("a string")
        );
        if let Some(limit) = group_limit {
            text.push_str(&format!("limit = {limit}\n"));
        }
        text.push_str("[load]\nrate_per_s = 1\n");
        Scenario::from_toml(&text).expect("valid")
    };
    let level =
        |field: &str, value: &str| vec![("k".to_owned(), field.to_owned(), value.to_owned())];
    type Case = (
        LimiterKind,
        Option<u64>,
        Vec<(String, String, String)>,
        Option<bool>,
    );
    let cases: &[Case] = &[
        (
            LimiterKind::LegacyTokenBucket,
            None,
            level("tokens", "10"),
            Some(true),
        ),
        (
            LimiterKind::LegacyTokenBucket,
            None,
            level("tokens", "0"),
            Some(true),
        ),
        (
            LimiterKind::LegacyTokenBucket,
            None,
            level("tokens", "-0.5"),
            Some(false),
        ),
        (
            LimiterKind::LegacyTokenBucket,
            None,
            level("tokens", "10.5"),
            Some(false),
        ),
        (
            LimiterKind::LegacyTokenBucket,
            Some(20),
            level("tokens", "15"),
            Some(true),
        ),
        (
            LimiterKind::LegacyTokenBucket,
            None,
            level("tokens", "nan?"),
            Some(false),
        ),
        // Capacity B × T = 10 × 6000 ms.
        (
            LimiterKind::AtomicTokenBucket,
            None,
            level("credit", "60000"),
            Some(true),
        ),
        (
            LimiterKind::AtomicTokenBucket,
            None,
            level("credit", "60001"),
            Some(false),
        ),
        // A field of another kind is not judged.
        (
            LimiterKind::AtomicTokenBucket,
            None,
            level("tokens", "-5"),
            Some(true),
        ),
        (LimiterKind::AtomicGcra, None, level("tokens", "-5"), None),
    ];
    for (kind, group_limit, levels, expected) in cases {
        let verdict = bucket_levels_verdict(&scenario(*kind, *group_limit), levels);
        assert_eq!(
            verdict.as_ref().map(|verdict| verdict.held),
            *expected,
            "{kind:?} {group_limit:?} {levels:?}: {verdict:?}"
        );
    }
}

/// Goal: each admission carries its own path's margin, so a slow path widens only its
/// own points. Method: a window of 1000 ms, L = 2: three fast points (1 ms each) within
/// 500 ms are one too many; with a slow third point whose interval may end past the
/// window, the three cannot be placed in one window and nothing is blamed; the per-key margin is the widest
/// interval, and its resolution and the refusal threshold follow from it.
#[test]
fn each_point_carries_its_own_margin() {
    let window = Bound::Window {
        limit: 2,
        span_ms: 1_000,
    };
    let fast: Vec<Point> = vec![(1_000, 999, 1), (1_200, 1_199, 1), (1_500, 1_499, 1)];
    assert_eq!(
        worst_excess(&fast, window, 0, &Resets::default()).map(|w| w.2 - w.3),
        Some(1)
    );
    let slow: Vec<Point> = vec![(1_000, 999, 1), (1_200, 1_199, 1), (2_100, 1_300, 1)];
    assert_eq!(worst_excess(&slow, window, 0, &Resets::default()), None);
    assert_eq!(key_margin_ms(&slow, 0), 800);
    assert_eq!(
        hidden_by_margin(window, 2),
        1,
        "2 ms at 2 per second hides one"
    );
    let rate = Bound::Rate {
        burst: 50,
        interval_ms: 20,
    };
    assert_eq!(hidden_by_margin(rate, 0), 0);
    assert_eq!(hidden_by_margin(rate, 202), 11);
    assert!(202 * MARGIN_SHARE_MAX <= bound_span_ms(rate));
    assert!(251 * MARGIN_SHARE_MAX > bound_span_ms(rate));
}

/// Goal: the resolution is the least headroom the check finds, plus one, computed from
/// the log (the old formula, `1 + ceil(margin × L / W)`, said 2 where one too many is
/// caught). Method: L = 2 per 1000 ms with 2 ms margins: two admissions in a window
/// leave no headroom (resolution 1, and a third is caught); one leaves one (2); a
/// reset with two before it adds L + 1 of headroom; a rate bound saturated by its
/// burst is at 1.
#[test]
fn the_resolution_is_the_least_headroom_plus_one() {
    let window = Bound::Window {
        limit: 2,
        span_ms: 1_000,
    };
    let points =
        |times: &[u64]| -> Vec<Point> { times.iter().map(|&t| (1_000 + t, 998 + t, 1)).collect() };
    let none = Resets::default();
    assert_eq!(resolution(&points(&[0, 300]), window, 0, &none), Some(1));
    assert_eq!(
        worst_excess(&points(&[0, 300, 400]), window, 0, &none).map(|w| w.2 - w.3),
        Some(1),
        "one more where the headroom is 0 is caught"
    );
    assert_eq!(resolution(&points(&[0, 1_500]), window, 0, &none), Some(2));
    assert_eq!(resolution(&[], window, 0, &none), None);
    let reset = Resets {
        at_ms: vec![1_500],
        ..Resets::default()
    };
    assert_eq!(resolution(&points(&[0, 700]), window, 0, &none), Some(1));
    assert_eq!(
        resolution(&points(&[0, 700]), window, 0, &reset),
        Some(2),
        "one before the reset: the window has L + 1 allowed, 2 counted"
    );
    let rate = Bound::Rate {
        burst: 3,
        interval_ms: 100,
    };
    assert_eq!(
        resolution(&points(&[0, 0, 0, 100, 200]), rate, 0, &none),
        Some(1)
    );
    assert_eq!(resolution(&points(&[0, 500]), rate, 0, &none), Some(3));
}

/// Goal: the aligned-window check places each admission in the window of the clock the
/// limiter reads, and refuses to place one that may straddle a boundary or a step.
#[test]
fn host_clocks_place_points_in_aligned_windows() {
    let clock = HostClock {
        offset_ms: 300,
        drift_ppm: 0,
        steps: vec![(5_000, -1_000)],
    };
    // True 1000..1600 is 1300..1900 on the clock: window [1000, 2000), 900 ms elapsed.
    let start = i128::from(EPOCH_MS) + 1_000;
    assert_eq!(clock.window(1_000, 1_600, 1_000), Some((start, 900)));
    assert_eq!(clock.window(1_600, 1_800, 1_000), None, "straddles 2000");
    assert_eq!(clock.window(4_990, 5_010, 1_000), None, "a step inside");
    // After the step back, true 5100 reads 4400.
    assert_eq!(
        clock.window(5_100, 5_100, 1_000),
        Some((start + 3_000, 400))
    );
}

#[test]
fn percentiles() {
    assert_eq!(percentile(&[], 500), 0);
    assert_eq!(percentile(&[7], 990), 7);
    let hundred: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&hundred, 500), 50);
    assert_eq!(percentile(&hundred, 990), 99);
}

/// The least headroom plus one over every set the check judges, with no pruning: each
/// window ending at a point's latest time (and its tails after resets), each interval
/// start for a rate.
fn resolution_unpruned(points: &[Point], bound: Bound, resets: &Resets) -> Option<u64> {
    let weight = |set: &[Point]| set.iter().map(|point| point.2).sum::<u64>();
    let mut headrooms = Vec::new();
    for last in 0..points.len() {
        let end = points[last].0;
        match bound {
            Bound::Window { limit, span_ms } => {
                let set: Vec<Point> = points[..=last]
                    .iter()
                    .filter(|point| point.1 + span_ms > end)
                    .copied()
                    .collect();
                let start = set.iter().map(|point| point.1).min().unwrap_or(end);
                let mut sets = vec![set.clone()];
                for &at in resets.at_ms.iter().filter(|&&at| at >= start && at <= end) {
                    sets.push(set.iter().filter(|point| point.1 > at).copied().collect());
                }
                for set in sets {
                    let set_start = set.iter().map(|point| point.1).min().unwrap_or(end);
                    let allowed = limit + resets.allowance(&set, set_start, end, limit + 1);
                    headrooms.push(allowed.saturating_sub(weight(&set)));
                }
            }
            Bound::Rate { burst, interval_ms } => {
                let mut seen: Vec<Point> = points[..=last].to_vec();
                seen.sort_unstable_by_key(|point| point.1);
                for index in 0..seen.len() {
                    let start = seen[index].1;
                    let set = &seen[index..];
                    let allowed = burst
                        + (end - start) / interval_ms
                        + resets.allowance(set, start, end, burst + 1);
                    headrooms.push(allowed.saturating_sub(weight(set)));
                }
            }
        }
    }
    headrooms.into_iter().min().map(|headroom| headroom + 1)
}

/// Goal: the one walk that finds both the worst excess and the resolution prunes only what
/// changes neither. Method: seeded random logs (bursts, gaps, weights 1-3, margins 0-40
/// ms) against a window and a rate, with and without a reset: the excess with the
/// resolution asked for equals the excess alone, and the resolution equals the least
/// headroom + 1 over every set, found without pruning.
#[test]
fn one_walk_finds_the_excess_and_the_exact_resolution() {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |below: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % below
    };
    let bounds = [
        Bound::Window {
            limit: 4,
            span_ms: 1_000,
        },
        Bound::Rate {
            burst: 4,
            interval_ms: 250,
        },
    ];
    let reset = Resets {
        at_ms: vec![2_000],
        ..Resets::default()
    };
    let mut over_seen = 0;
    for _ in 0..300 {
        let mut time = 1_000;
        let mut points: Vec<Point> = (0..next(20))
            .map(|_| {
                time += if next(3) == 0 { next(600) } else { next(40) };
                (time, time - next(41), 1 + next(3))
            })
            .collect();
        points.sort_unstable();
        for bound in bounds {
            for resets in [&Resets::default(), &reset] {
                let both = judge_windows(&points, bound, 0, resets, true);
                assert_eq!(both.worst, worst_excess(&points, bound, 0, resets));
                assert_eq!(
                    both.resolution,
                    resolution_unpruned(&points, bound, resets),
                    "{points:?} against {bound}"
                );
                over_seen += u64::from(both.worst.is_some());
            }
        }
    }
    assert!(
        over_seen > 0,
        "some logs go over, so the excess is compared"
    );
}

/// Goal: on a cluster a Redis clock step moves one node's clock. The aligned-window check
/// reads, for each key, the clock of the node that holds the key's slot, and the step
/// resets only that node's keys. Method: two shards, a fixed window of 2 per second,
/// `redis-1` stepped 500 ms forward at 100 ms. The same four admissions (1400, 1450, 1550,
/// 1600 ms true time) are judged on a key of each node. On `redis-1` they fall in two
/// windows of two (its windows are true [500, 1500) and [1500, 2500)), so they hold. On
/// `redis-0` all four fall in [1000, 2000), two over. Before this, every key was read on
/// `redis-0`'s clock, so the `redis-1` key failed falsely, and the step excused keys on
/// both nodes.
#[test]
fn a_cluster_clock_step_moves_only_its_nodes_windows() {
    let scenario = Scenario::from_toml(
        r#"
duration_ms = 3000
[redis]
topology = "cluster"
shards = 2
[limit]
limit = 2
window_ms = 1000
[[gateways]]
limiter = "atomic_fixed_window"
[load]
rate_per_s = 10
keys = 20
[[faults]]
at_ms = 100
kind = "clock_step"
host = "redis-1"
step_ms = 500
"#,
    )
    .expect("a valid scenario");
    let only_on = |node: u32| {
        (0..20)
            .map(|number| format!("k{number}"))
            .find(|key| key_on_node(&scenario, key, node) && !key_on_node(&scenario, key, 1 - node))
            .expect("a key on each node")
    };
    let (on_0, on_1) = (only_on(0), only_on(1));
    let kinds = [LimiterKind::AtomicFixedWindow];
    let resets = resets(&scenario, &kinds);
    assert_eq!(resets.for_key(&scenario, &on_1).at_ms, vec![100]);
    assert_eq!(
        resets.for_key(&scenario, &on_0).at_ms,
        Vec::<u64>::new(),
        "redis-1's step resets nothing of redis-0's keys"
    );
    let points: Vec<AlignedPoint> = [1_400, 1_450, 1_550, 1_600]
        .into_iter()
        .map(|at| ((at, at, 1), 0))
        .collect();
    let judge = |key: &str| {
        let per_key = std::collections::BTreeMap::from([(key.to_owned(), points.clone())]);
        aligned_windows_verdict(&scenario, &per_key, &resets, &mut Metrics::default())
    };
    let on_stepped = judge(&on_1);
    assert!(on_stepped.held, "{}", on_stepped.detail);
    let unstepped = judge(&on_0);
    assert!(!unstepped.held, "{}", unstepped.detail);
    assert!(unstepped.detail.contains("4 units"), "{}", unstepped.detail);
}
