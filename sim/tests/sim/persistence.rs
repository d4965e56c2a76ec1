//! Redis restarts with persistence: what each mode (none, aof_always, aof_everysec, rdb)
//! costs the atomic GCRA in over-admission, that the checker's reset allowance for each is
//! enough, necessary and tight, and EVALSHA's NOSCRIPT storm after a restart that kept the
//! data.
//!
//! Method: the four `gcra-redis-restart-*` scenarios share load, limit and seed and differ
//! only in the restart's persistence. A log is judged again under another mode's allowance
//! (the checker is a pure function of the scenario and the log), so "judged as aof_always"
//! measures the over-admission beyond the plain bound, and "judged as the next stricter
//! mode" shows the allowance was needed.

use sim::checker::check;
use sim::event::{Event, Outcome};
use sim::scenario::{FaultKind, Persistence, Scenario};

use crate::common::{admit_one, assert_holds, parse, run_tampered, run_with_log};

const NONE: &str = include_str!("../../scenarios/gcra-redis-restart-no-persistence.toml");
const AOF_ALWAYS: &str = include_str!("../../scenarios/gcra-redis-restart-aof-always.toml");
const AOF_EVERYSEC: &str = include_str!("../../scenarios/gcra-redis-restart-aof-everysec.toml");
const RDB: &str = include_str!("../../scenarios/gcra-redis-restart-rdb.toml");
const STORM: &str = include_str!("../../scenarios/noscript-storm-after-restart.toml");
const FCALL: &str = include_str!("../../scenarios/fcall-rides-through-restart.toml");

const SEED: u64 = 1;

/// The four modes, loosest allowance first: (name, file).
const MODES: [(&str, &str); 4] = [
    ("none", NONE),
    ("rdb", RDB),
    ("aof_everysec", AOF_EVERYSEC),
    ("aof_always", AOF_ALWAYS),
];

/// `scenario` with every Redis restart's persistence replaced by `mode`'s (the file's).
fn judged_as(scenario: &Scenario, mode_text: &str) -> Scenario {
    let mode = parse(mode_text);
    let restart = mode
        .faults
        .iter()
        .find(|fault| matches!(fault.kind, FaultKind::RedisRestart { .. }))
        .expect("each mode's file has a restart")
        .kind
        .clone();
    let mut judged = scenario.clone();
    for fault in &mut judged.faults {
        if matches!(fault.kind, FaultKind::RedisRestart { .. }) {
            fault.kind = restart.clone();
        }
    }
    judged
}

/// Admissions the gateways logged.
fn allowed(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|event| {
            matches!(
                event,
                Event::Decision {
                    outcome: Outcome::Allowed,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn each_persistence_mode_over_admits_what_it_lost_and_holds_with_its_allowance() {
    // Goal: the over-admission a restart causes follows from what its persistence kept
    // (none > rdb > aof_everysec > aof_always = 0), each mode's run holds with the allowance
    // the checker gives that mode, and each allowance is necessary: judged with the next
    // stricter mode's allowance, the same log fails. Method: run each file, judge its log as
    // itself, as aof_always (no allowance: the excess over the plain bound), and as the next
    // stricter mode.
    let mut over = Vec::new();
    for (index, (name, text)) in MODES.iter().enumerate() {
        let scenario = parse(text);
        let (report, events) = run_with_log(&scenario, SEED);
        assert_holds(&report);
        assert!(
            report
                .verdict("fault_0_took_effect")
                .is_some_and(|verdict| verdict.held),
            "{name}: the restart did not take effect\n{report}"
        );
        let plain = check(&judged_as(&scenario, AOF_ALWAYS), SEED, &events);
        let excess = plain.metrics.over_admission_max;
        eprintln!(
            "{name}: allowed {}, over-admission beyond the plain bound {excess} (resolution {}), {} reset allowance(s)",
            allowed(&events),
            plain.metrics.over_admission_resolution,
            sim::checker::resets(&scenario, &[scenario.gateways[0].limiter])
                .at_ms
                .len()
        );
        if let Some((stricter, stricter_text)) = MODES.get(index + 1) {
            let judged = check(&judged_as(&scenario, stricter_text), SEED, &events);
            assert!(
                judged.violated("admissions_within_bound"),
                "{name}: its log passes with {stricter}'s smaller allowance, so {name}'s was not needed\n{judged}"
            );
        }
        over.push((*name, excess));
    }
    let excess: Vec<u64> = over.iter().map(|(_, excess)| *excess).collect();
    assert_eq!(excess[3], 0, "aof_always lost something: {over:?}");
    assert!(
        excess[0] > excess[1] && excess[1] > excess[2] && excess[2] > 0,
        "expected none > rdb > aof_everysec > 0: {over:?}"
    );
}

#[test]
fn each_restart_allowance_is_tight_one_admission_more_after_the_restart_is_caught() {
    // Goal: an allowance excuses what the mode lost and nothing more: one admission beyond
    // it, placed just after the restart (inside every interval that earns the allowance), is
    // caught. Method: each mode's file with a hook that admits the first denied request at or
    // after 30 ms past the restart (the limiter does not count it).
    for (name, text) in MODES {
        let scenario = parse(text);
        let restart_ms = scenario.faults[0].at_ms;
        let (tamper, admitted) = admit_one(None, restart_ms + 30, vec![restart_ms]);
        let (report, _) = run_tampered(&scenario, SEED, tamper);
        let (key, at_ms) = admitted
            .lock()
            .expect("not poisoned")
            .clone()
            .unwrap_or_else(|| panic!("{name}: no denial after the restart to tamper with"));
        assert!(
            report.violated("admissions_within_bound") && report.metrics.over_admission_max >= 1,
            "{name}: one admission too many on {key} at {at_ms} ms was not caught\n{report}"
        );
        eprintln!(
            "{name}: one too many on {key} at {at_ms} ms caught (over {})",
            report.metrics.over_admission_max
        );
    }
}

#[test]
fn a_persistent_restart_still_loses_the_script_cache_evalsha_meets_a_noscript_storm() {
    // Goal: the script cache never survives a restart, even one that kept every write: each
    // EVALSHA that reaches the new node before its gateway's EVAL has reloaded the script is
    // answered NOSCRIPT and costs one more round trip (go-redis's Script.Run). Method: the
    // storm scenario; an atomic GCRA decision makes one round trip, two after a NOSCRIPT, so
    // decisions with two round trips count the NOSCRIPT replies. The run must hold with no
    // reset allowance (aof_always).
    let scenario = parse(STORM);
    let (report, events) = run_with_log(&scenario, SEED);
    assert_holds(&report);
    let restart_ms = scenario.faults[0].at_ms;
    assert!(
        sim::checker::resets(&scenario, &[scenario.gateways[0].limiter])
            .at_ms
            .is_empty(),
        "an aof_always restart earns no reset"
    );
    // Request arrival times, to split the storms at the restart.
    let mut arrived = std::collections::BTreeMap::new();
    let (mut cold_start, mut after_restart, mut more_than_two) = (0u64, 0u64, 0u64);
    for event in &events {
        match event {
            Event::Request { id, at_ms, .. } => {
                arrived.insert(*id, *at_ms);
            }
            Event::Decision {
                id, round_trips, ..
            } => {
                if *round_trips > 2 {
                    more_than_two += 1;
                }
                if *round_trips == 2 {
                    if arrived[id] < restart_ms {
                        cold_start += 1;
                    } else {
                        after_restart += 1;
                    }
                }
            }
            _ => {}
        }
    }
    eprintln!(
        "NOSCRIPT replies (one extra round trip each): {cold_start} on the cold node at the start, {after_restart} after the restart at {restart_ms} ms; {} gateways; round trips per decision {:.3}",
        scenario.gateway_count(),
        report.metrics.round_trips_per_decision
    );
    assert_eq!(
        more_than_two, 0,
        "an atomic GCRA decision makes at most two trips"
    );
    // A storm, not one NOSCRIPT per gateway: many in-flight EVALSHAs per gateway hit the
    // empty cache before the first EVAL lands.
    assert!(
        after_restart > 4 * u64::from(scenario.gateway_count()),
        "only {after_restart} NOSCRIPT replies after the restart\n{report}"
    );
}

/// Per decision's arrival, before or after `restart_ms`: how many took more than one trip.
fn extra_trips(events: &[Event], restart_ms: u64) -> (u64, u64) {
    let mut arrived = std::collections::BTreeMap::new();
    let (mut before, mut after) = (0u64, 0u64);
    for event in events {
        match event {
            Event::Request { id, at_ms, .. } => {
                arrived.insert(*id, *at_ms);
            }
            Event::Decision {
                id, round_trips, ..
            } if *round_trips > 1 => {
                if arrived[id] < restart_ms {
                    before += 1;
                } else {
                    after += 1;
                }
            }
            _ => {}
        }
    }
    (before, after)
}

#[test]
fn fcall_rides_through_a_persistent_restart_and_reloads_after_one_without() {
    // Goal: Redis Functions cure the storm: the library is durable with the data, so after an
    // aof_always restart no FCALL needs a reload, while after a restart without persistence
    // the library is gone and gateways load it again ("Function not found", FUNCTION LOAD,
    // FCALL: extra trips). Method: the FCALL scenario as shipped and with persistence none;
    // count decisions that took more than one round trip before and after the restart.
    let scenario = parse(FCALL);
    let restart_ms = scenario.faults[0].at_ms;
    let (report, events) = run_with_log(&scenario, SEED);
    assert_holds(&report);
    let (cold, after) = extra_trips(&events, restart_ms);
    eprintln!(
        "FCALL, aof_always: {cold} decisions with a reload on the cold node, {after} after the restart; round trips per decision {:.3}",
        report.metrics.round_trips_per_decision
    );
    assert!(
        cold > 0,
        "the cold node has no library: the first FCALLs reload it"
    );
    assert_eq!(after, 0, "the library survived the restart\n{report}");

    let mut lost = scenario.clone();
    lost.faults[0].kind = FaultKind::RedisRestart {
        persistence: Persistence::None,
        rdb_every_ms: None,
    };
    let (report, events) = run_with_log(&lost, SEED);
    assert_holds(&report);
    let (_, after) = extra_trips(&events, restart_ms);
    eprintln!("FCALL, no persistence: {after} decisions with a reload after the restart");
    assert!(
        after > 0,
        "without persistence the library is lost\n{report}"
    );

    // EVALSHA's storm under the same aof_always restart, for the comparison.
    let (_, storm_events) = run_with_log(&parse(STORM), SEED);
    let (_, storm_after) = extra_trips(&storm_events, restart_ms);
    assert!(storm_after > 0, "EVALSHA meets NOSCRIPT after the restart");
}

#[test]
fn persistence_modes_parse_and_bad_ones_name_the_field() {
    // Goal: the restart's persistence fields are checked like every other field. Method: a
    // table of fault lines and the field each error must name (None: valid).
    let base = parse(AOF_ALWAYS);
    let cases: &[(&str, Option<&str>)] = &[
        ("persistence = \"aof_always\"", None),
        ("persistence = \"rdb\"\nrdb_every_ms = 1", None),
        ("persistence = \"rdb\"", Some("faults[0].rdb_every_ms")),
        (
            "persistence = \"rdb\"\nrdb_every_ms = 0",
            Some("faults[0].rdb_every_ms"),
        ),
        (
            "persistence = \"aof_everysec\"\nrdb_every_ms = 1000",
            Some("faults[0].rdb_every_ms"),
        ),
        ("persistence = \"fsync\"", Some("fsync")),
    ];
    for (line, field) in cases {
        let text = format!(
            "{}\n[[faults]]\nat_ms = 100\nkind = \"redis_restart\"\n{line}\n",
            AOF_ALWAYS
                .split("[[faults]]")
                .next()
                .expect("the file has a head")
        );
        match (Scenario::from_toml(&text), field) {
            (Ok(parsed), None) => assert_eq!(parsed.gateways, base.gateways, "{line}"),
            (Err(error), Some(field)) => {
                assert!(error.to_string().contains(field), "{line}: {error}")
            }
            (result, expected) => {
                panic!("{line}: {result:?}, expected an error naming {expected:?}")
            }
        }
    }
    // The default is no persistence, and it is left out when written back (so files without
    // it round-trip unchanged).
    let none = parse(NONE);
    assert!(matches!(
        none.faults[0].kind,
        FaultKind::RedisRestart {
            persistence: Persistence::None,
            rdb_every_ms: None
        }
    ));
    assert!(!none.to_toml().contains("persistence"));
    assert!(parse(RDB).to_toml().contains("rdb_every_ms = 3000"));
}
