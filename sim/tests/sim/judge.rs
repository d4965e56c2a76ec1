//! The judge judged: the checker must catch a wrong limiter. A hook (`sim::harness::Tamper`)
//! wraps every gateway's limiter and makes it wrong in one precise way (one admission too
//! many in steady state or in a key's first window, a panic, an unparsable reply); each test shows the
//! checker's verdict fails. Also: a quiet run is no proof, a margin too wide is refused.

use crate::common::{admit_one, assert_holds, on_nth_decision, parse, run, run_tampered};

use sim::checker::Bound;
use sim::checker::{Report, admission_bound};
use sim::event::Event;
use sim::harness::TamperAction;
use sim::scenario::{FailModeSetting, Fault, FaultKind, LimiterKind, Scenario};

const GCRA: &str = include_str!("../../scenarios/gcra-two-gateways.toml");
const SLOW_LINK: &str = include_str!("../../scenarios/slow-link-lognormal.toml");

#[test]
fn a_panicking_limiter_leaves_an_unresolved_request_and_fails_the_run() {
    // Goal: a request whose task panics ends in no decision; that must fail a safety
    // verdict, not quietly lower the admissions. Method: the 40th decision of a GCRA run
    // panics; `every_request_resolved` must fail and name it, and the same run without the
    // panic must resolve every request.
    let scenario = parse(GCRA);
    let (report, _) = run_tampered(&scenario, 1, on_nth_decision(40, TamperAction::Panic));
    assert!(report.violated("every_request_resolved"), "{report}");
    assert_eq!(report.metrics.unresolved, 1, "{report}");
    assert!(!report.safe());
    let plain = run(&scenario, 1);
    assert!(
        plain
            .verdict("every_request_resolved")
            .is_some_and(|verdict| verdict.held),
        "{plain}"
    );
}

#[test]
fn a_gateway_restart_logs_the_requests_it_aborts() {
    // Goal: the one lawful way to end undecided is a gateway restart, and it is logged.
    // Method: two GCRA gateways at 200/s with a slow upstream and a link slow enough that
    // requests are in flight at the restart; the run logs an `aborted` event for each
    // request that died undecided, and every request is resolved.
    let mut scenario = parse(GCRA);
    scenario.faults = vec![
        Fault {
            at_ms: 400,
            kind: FaultKind::LinkLatency {
                a: "gateway-0".to_owned(),
                b: "redis-0".to_owned(),
                latency_ms: 40,
            },
        },
        Fault {
            at_ms: 1_000,
            kind: FaultKind::GatewayRestart {
                host: "gateway-0".to_owned(),
                down_ms: 50,
            },
        },
    ];
    let (report, events) = crate::common::run_with_log(&scenario, 1);
    let aborted = events
        .iter()
        .filter(|event| matches!(event, Event::Aborted { .. }))
        .count();
    assert!(
        aborted > 0,
        "no request was in flight at the restart\n{report}"
    );
    assert!(
        report
            .verdict("every_request_resolved")
            .is_some_and(|verdict| verdict.held),
        "{report}"
    );
    assert_holds(&report);
}

#[test]
fn a_protocol_desync_while_redis_is_healthy_is_a_safety_failure() {
    // Goal: a reply the client cannot parse is a bug, not a transport hiccup, whatever the
    // fail mode does with it. Method: the 40th decision becomes `Error::Protocol`, with the
    // gateways failing closed and failing open; `no_protocol_error_while_redis_healthy`
    // must fail both times (before, it was counted as a transport 5xx and a fail-open
    // admission, and no verdict failed).
    for fail_mode in [FailModeSetting::Closed, FailModeSetting::Open] {
        let mut scenario = parse(GCRA);
        for group in &mut scenario.gateways {
            group.fail_mode = fail_mode;
        }
        let (report, _) = run_tampered(
            &scenario,
            1,
            on_nth_decision(40, TamperAction::ProtocolError),
        );
        assert!(
            report.violated("no_protocol_error_while_redis_healthy"),
            "{fail_mode:?}: {report}"
        );
        assert!(!report.safe());
    }
}

#[test]
fn a_quiet_run_is_not_a_proof() {
    // Goal: `assert_safe` demands coverage: a run that denied nothing, or whose fault did
    // not take effect, or without a snapshot, proves nothing. Method: GCRA at a rate far
    // below its limit (safe, nothing denied) must make `assert_safe` panic; a log without
    // its snapshot must fail `every_key_has_ttl`.
    let mut quiet = parse(GCRA);
    quiet.load.rate_per_s = 5.0;
    let (report, events) = crate::common::run_with_log(&quiet, 1);
    assert!(report.safe(), "{report}");
    assert!(!report.covered(), "{report}");
    let caught = std::panic::catch_unwind(|| report.assert_safe());
    assert!(caught.is_err(), "a quiet run passed assert_safe:\n{report}");

    let without_snapshot: Vec<Event> = events
        .into_iter()
        .filter(|event| !matches!(event, Event::Snapshot { .. }))
        .collect();
    let judged = sim::checker::check(&quiet, 1, &without_snapshot);
    assert!(judged.violated("every_key_has_ttl"), "{judged}");
}

#[test]
fn a_margin_wider_than_a_quarter_of_the_span_is_refused_not_passed() {
    // Goal: when the time margin could hide a quarter of the limit, the check refuses to
    // judge (a failed verdict), never prints "ok". Method: the slow-link scenario with its
    // lognormal allowed up to 400 ms each way: admissions on that link take up to ~800 ms
    // from arrival to decision against GCRA's 1000 ms burst span.
    let mut scenario = parse(SLOW_LINK);
    for link in &mut scenario.network.links {
        if let sim::scenario::Latency::Lognormal {
            max_ms, median_ms, ..
        } = &mut link.latency
        {
            *max_ms = 400;
            *median_ms = 200;
        }
    }
    let report = run(&scenario, 1);
    let verdict = report
        .verdict("admissions_within_bound")
        .expect("GCRA states a bound");
    assert!(
        !verdict.held && verdict.detail.contains("refused"),
        "{report}"
    );
}

/// What a legacy limiter is replaced with when its own run already violates the bound (the
/// sensitivity test needs a run that holds): the atomic limiter of the same bound family.
fn atomic_twin(kind: LimiterKind) -> LimiterKind {
    match kind {
        LimiterKind::LegacyIpList | LimiterKind::LegacyMemoryList => LimiterKind::AtomicSlidingLog,
        // The pipelined window keys by the gateways' clocks (its race); the script by Redis's.
        LimiterKind::LegacyEmail | LimiterKind::PipelinedFixedWindow => {
            LimiterKind::AtomicFixedWindow
        }
        LimiterKind::LegacyTokenBucket => LimiterKind::AtomicTokenBucket,
        LimiterKind::LegacyModelRequest => LimiterKind::AtomicGcra,
        other => other,
    }
}

/// The verdict that judges admissions in `report`.
fn admissions_verdict(report: &Report) -> &'static str {
    if report.verdict("group_admissions_within_bound").is_some() {
        "group_admissions_within_bound"
    } else {
        "admissions_within_bound"
    }
}

/// A shipped scenario made to hold: its own limiter when that holds, else the atomic twin
/// (with per-group keys when groups have their own limits, as R5's fix).
fn holding_variant(name: &str, text: &str, seed: u64) -> Option<(Scenario, Report)> {
    let scenario = parse(text);
    admission_bound(scenario.gateways[0].limiter, &scenario)?;
    let report = run(&scenario, seed);
    if report.safe() {
        return Some((scenario, report));
    }
    let mut twin = scenario.clone();
    for group in &mut twin.gateways {
        group.limiter = atomic_twin(group.limiter);
        if scenario.has_group_limits() {
            group.key_scheme = Some("rl:$ns:{u:$user}:$group".to_owned());
        }
    }
    let report = run(&twin, seed);
    assert!(
        report.safe(),
        "{name}: neither the shipped limiter nor its atomic twin holds\n{report}"
    );
    Some((twin, report))
}

/// (Scenario, case) where no key reaches its stated bound, so one admission beyond it
/// cannot be placed. The pool-exhaustion scenarios decide almost nothing in their second
/// half (the pool is saturated; that is what they show), so only their first window is
/// tried.
const NEVER_SATURATED: &[&str] = &[
    "pool-exhaustion-cold-script-cache (steady)",
    "pool-exhaustion (steady)",
];

/// Scenarios whose (holding) limiter is of the aligned-window family (fixed window,
/// pipelined fixed window, sliding window counter, new-api's email): the check states their
/// bound as 2L in any trailing window, because it does not assume where their windows are
/// aligned, so one admission too many is visible only where a trailing window already
/// holds 2L (a boundary burst). The check cannot be shown to catch one too many there; an
/// aligned-window check (L per aligned window) would. Listed so that the gap is explicit
/// (in the order the files sort in).
const LOOSE_2L_BOUND: &[&str] = &[
    "d-email-lost-expire",
    "pipelined-fixed-window-clock-skew",
    "pipelined-fixed-window-redis-restart",
    "pipelined-fixed-window",
    "sliding-window-redis-restart",
    "sliding-window-two-gateways",
];

#[test]
fn every_shipped_scenario_catches_one_admission_too_many() {
    // Goal: the check can fail on every shipped scenario: a limiter that admits exactly
    // one request too many, once, is caught, both where the key is saturated in steady
    // state and in a key's first window (L + 1 in one window). Method: for each scenario in
    // sim/scenarios that states an admission bound, the run that holds (its own limiter, or
    // the atomic twin when the legacy one already violates); then the same seed with a hook
    // that admits one denied request the limiter does not count: the first saturated
    // denial after half the run, and (second run) the very first saturated denial; never
    // within 20 ms of a fault (a reset there excuses up to L + 1: the resolution is 1 only
    // away from resets). The
    // admissions verdict must fail with `over_admission_max` of at least 1. Prints, per
    // scenario, the numbers the issue asks for: margins, resolution, denials, faults that
    // took effect.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("sim/scenarios exists")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .collect();
    names.sort();
    let mut judged = 0;
    let mut missed = Vec::new();
    let mut unsaturated = Vec::new();
    let mut loose = Vec::new();
    for path in names {
        let name = path
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("readable");
        let seed = 1;
        // The 10 000 requests/s scenarios run 2 s here instead of 5 (CI time); nothing in
        // them changes after the first second.
        let text = text.replace("duration_ms = 5000", "duration_ms = 2000");
        let Some((scenario, plain)) = holding_variant(&name, &text, seed) else {
            eprintln!(
                "{name}: no single admission bound (a success limit, or the multi-limit's per-limit verdict): not judged here"
            );
            continue;
        };
        judged += 1;
        let verdict = admissions_verdict(&plain);
        let faults_took_effect = (0..scenario.faults.len())
            .filter(|index| {
                plain
                    .verdict(&format!("fault_{index}_took_effect"))
                    .is_some_and(|verdict| verdict.held)
            })
            .count();
        let bound = admission_bound(scenario.gateways[0].limiter, &scenario).expect("stated");
        if bound
            == (Bound::Window {
                limit: 2 * scenario.limit.limit,
                span_ms: scenario.limit.window_ms,
            })
        {
            eprintln!(
                "{name} ({:?}, {bound}): aligned windows judged as 2L per trailing window; one too many not placeable (margin max {} ms, resolution {}, denied {}, faults {}/{} took effect)",
                scenario.gateways[0].limiter,
                plain.metrics.margin_ms_max,
                plain.metrics.over_admission_resolution,
                plain.metrics.denied,
                faults_took_effect,
                scenario.faults.len()
            );
            loose.push(name);
            continue;
        }
        // Where the key is saturated: for a window bound, the trailing window (less a tenth,
        // for the time margins) already holds the bound's limit; a rate limiter's denial is
        // saturation itself.
        let saturated = match bound {
            Bound::Window { limit, span_ms } => Some((limit, span_ms - span_ms / 10)),
            Bound::Rate { .. } => None,
        };
        let mut caught = Vec::new();
        for (case, from_ms) in [("steady", scenario.duration_ms / 2), ("first window", 0)] {
            let fault_ms = scenario.faults.iter().map(|fault| fault.at_ms).collect();
            let (tamper, admitted) = admit_one(saturated, from_ms, fault_ms);
            let (report, _) = run_tampered(&scenario, seed, tamper);
            let Some((key, at_ms)) = admitted.lock().expect("not poisoned").clone() else {
                unsaturated.push(format!("{name} ({case})"));
                caught.push(format!("{case}: no saturated denial"));
                continue;
            };
            if !(report.violated(verdict) && report.metrics.over_admission_max >= 1) {
                missed.push(format!(
                    "{name} ({case}): one admission too many on key {key} at {at_ms} ms not caught\n{report}"
                ));
            }
            caught.push(format!(
                "{case}: key {key} at {at_ms} ms, over {}",
                report.metrics.over_admission_max
            ));
        }
        let m = &plain.metrics;
        eprintln!(
            "{name} ({:?}, {bound}): margin per key max {} ms p50 {} ms, per gateway {:?}; resolution {}; denied {}; faults {}/{} took effect; one too many: {}",
            scenario.gateways[0].limiter,
            m.margin_ms_max,
            m.margin_ms_p50_key,
            m.margin_ms_per_gateway,
            m.over_admission_resolution,
            m.denied,
            faults_took_effect,
            scenario.faults.len(),
            caught.join("; ")
        );
    }
    assert!(
        judged - loose.len() >= 20,
        "only {} scenarios shown sensitive",
        judged - loose.len()
    );
    assert!(missed.is_empty(), "{}", missed.join("\n"));
    assert_eq!(
        unsaturated, NEVER_SATURATED,
        "scenarios where no key reached its bound"
    );
    assert_eq!(
        loose, LOOSE_2L_BOUND,
        "scenarios judged against 2L per trailing window"
    );
}
