//! Every interleaving of a few gateways' round trips, for every Redis-backed limiter.
//!
//! Goal: the atomic limiters keep their bound and are linearizable against their `algo`
//! reference in **every** order their round trips can reach Redis; each of new-api's
//! multi-round-trip paths breaks its stated limit in some order, and the shortest such order
//! is kept below as a named test with its literal schedule.
//! Method: `proptests::sched` runs the real limiter code, parking before each round trip;
//! `for_each_interleaving` enumerates schedules depth first (replaying each from a reset
//! node); `shortest_violation` searches prefixes breadth first. All requests arrive at one
//! instant on one key, so the stated limit L is exactly the bound and the reference admits the
//! first L in any order; the gateways send more than L requests in all, so denials happen and
//! one over-admission is visible.

use proptests::sched::{
    Execution, Op, Scenario, Task, admitted, execute, for_each_interleaving, linearizable,
    shortest_violation,
};
use proptests::subjects::Subject;
// The named schedules live in the library, where the verdict table matches its own
// breadth-first results against them to name these tests.
use proptests::verdict::{R1_MODEL_REQUEST, R1_SUCCESS_LIST, R3_PATH_A, R3_PATH_B};

/// `gateways` gateways, each sending `requests` requests through `subject` with limit `limit`.
fn scenario(subject: Subject, gateways: usize, requests: usize, limit: u64) -> impl Scenario {
    move |node: &proptests::sched::Node, history: &proptests::sched::History| -> Vec<Task> {
        (0..gateways)
            .map(|gateway| subject.task(node, history, gateway, requests, limit))
            .collect()
    }
}

/// Whether the history is linearizable against `subject`'s reference at `limit`.
pub(crate) fn linearizable_to(subject: Subject, limit: u64, history: &[Op]) -> bool {
    linearizable(
        history,
        &Vec::<u64>::new(),
        |times: &mut Vec<u64>, op: &Op| {
            times.push(op.now_ms);
            subject
                .reference(limit, times)
                .expect("a subject with a reference")
                .pop()
                .expect("one decision per time")
        },
    )
}

/// What enumerating one configuration found.
#[derive(Debug, Default)]
struct Summary {
    executions: u64,
    over_admitting: u64,
    non_linearizable: u64,
    errors: u64,
    fewest_admitted: usize,
    first_over_admitting: Option<Vec<usize>>,
}

fn exhaust(subject: Subject, gateways: usize, requests: usize, limit: u64) -> Summary {
    let mut summary = Summary {
        fewest_admitted: usize::MAX,
        ..Summary::default()
    };
    let has_reference = subject.reference(limit, &[]).is_some();
    let scenario = scenario(subject, gateways, requests, limit);
    summary.executions = for_each_interleaving(&scenario, |execution: &Execution| {
        let count = admitted(&execution.history);
        summary.fewest_admitted = summary.fewest_admitted.min(count);
        assert_eq!(execution.history.len(), gateways * requests);
        summary.errors += execution
            .history
            .iter()
            .filter(|op| op.outcome.is_err())
            .count() as u64;
        if count > usize::try_from(limit).expect("small") {
            summary.over_admitting += 1;
            summary
                .first_over_admitting
                .get_or_insert_with(|| execution.schedule.clone());
        }
        if has_reference && !linearizable_to(subject, limit, &execution.history) {
            summary.non_linearizable += 1;
        }
    });
    summary
}

/// The configurations enumerated: `(gateways, requests each)`. One-step limiters get more
/// requests per gateway so that their schedules are as long as the legacy paths'. 3 × 4 (34,650
/// orders) runs for GCRA (the production script) and the pipelined window (no script); the
/// other scripts stop at 3 × 3 (1,680) to keep `cargo test` inside its budget.
fn configurations(subject: Subject) -> &'static [(usize, usize)] {
    match subject {
        Subject::Gcra | Subject::Pipelined => &[(2, 4), (3, 3), (3, 4)],
        Subject::PathA | Subject::PathB | Subject::Email => &[(2, 1), (3, 1), (2, 2)],
        Subject::SuccessList => &[(2, 1), (3, 1)],
        // Six round trips a request: 3 × 1 would be 17,153,136 orders.
        Subject::ModelRequest => &[(2, 1)],
        Subject::NewapiBucket | Subject::Reservation | Subject::Sharded => {
            &[(2, 2), (3, 1), (3, 2)]
        }
        _ => &[(2, 4), (3, 3)],
    }
}

#[test]
fn atomic_limiters_hold_their_bound_in_every_interleaving() {
    // Goal: no order of one-script decisions admits more than L, and every history is
    // linearizable against `algo`. Method: enumerate every configuration; L = 2 while the
    // gateways send 4 to 12 requests, so each execution also shows denials.
    for subject in Subject::ALL.into_iter().filter(|s| !s.legacy()) {
        let started = std::time::Instant::now();
        let mut total = 0;
        for &(gateways, requests) in configurations(subject) {
            let summary = exhaust(subject, gateways, requests, 2);
            assert_eq!(summary.over_admitting, 0, "{subject:?} {summary:?}");
            assert_eq!(summary.non_linearizable, 0, "{subject:?} {summary:?}");
            assert_eq!(summary.errors, 0, "{subject:?} {summary:?}");
            assert!(
                summary.fewest_admitted == 2,
                "{subject:?}: L admitted and the rest denied in every order: {summary:?}"
            );
            total += summary.executions;
        }
        eprintln!(
            "interleavings: {subject:?}: {total} executions over {:?}, none over L = 2 ({} ms)",
            configurations(subject),
            started.elapsed().as_millis()
        );
    }
}

#[test]
fn legacy_paths_over_admit_in_some_interleaving() {
    // Goal: each multi-round-trip new-api path breaks its stated limit in some order, and
    // new-api's two single-command decisions (C2's script, D's INCR) do not. Method: the same
    // enumeration; count over-admitting and non-linearizable executions.
    for subject in Subject::ALL.into_iter().filter(|s| s.legacy()) {
        let started = std::time::Instant::now();
        let (mut total, mut over, mut non_linear) = (0, 0, 0);
        for &(gateways, requests) in configurations(subject) {
            let summary = exhaust(subject, gateways, requests, 1);
            total += summary.executions;
            over += summary.over_admitting;
            non_linear += summary.non_linearizable;
            assert!(summary.fewest_admitted >= 1, "{subject:?} {summary:?}");
        }
        eprintln!(
            "interleavings: {subject:?}: {total} executions over {:?}, {over} over L = 1, {non_linear} not linearizable ({} ms)",
            configurations(subject),
            started.elapsed().as_millis()
        );
        match subject {
            Subject::NewapiBucket | Subject::Email => {
                assert_eq!(over, 0, "{subject:?}: one atomic command decides")
            }
            _ => {
                assert!(
                    over > 0,
                    "{subject:?}: the check-then-write race is reachable"
                );
                assert!(non_linear >= over, "{subject:?}");
            }
        }
    }
}

/// The legacy races as scenarios for the breadth-first search and the named tests.
fn race(subject: Subject) -> impl Scenario {
    scenario(subject, 2, 1, 1)
}

fn over_one(history: &[Op]) -> bool {
    admitted(history) > 1
}

/// Runs `schedule` to its end and returns the decisions made.
fn replay(scenario: &dyn Scenario, schedule: &[usize]) -> Vec<Op> {
    let node = proptests::sched::Node::new();
    let execution = execute(&node, scenario, schedule, schedule.len());
    assert_eq!(execution.schedule, schedule, "the schedule ran as written");
    execution.history
}

#[test]
fn the_named_counterexamples_are_the_shortest() {
    // Goal: each literal schedule below is a shortest violating order, not just one found.
    // Method: breadth first over schedule prefixes; the first violating prefix must equal the
    // named test's schedule.
    let cases: [(Subject, &[usize]); 4] = [
        (Subject::PathA, R3_PATH_A),
        (Subject::PathB, R3_PATH_B),
        (Subject::SuccessList, R1_SUCCESS_LIST),
        (Subject::ModelRequest, R1_MODEL_REQUEST),
    ];
    for (subject, named) in cases {
        let (found, tried) = shortest_violation(&race(subject), over_one);
        eprintln!(
            "shortest: {subject:?}: {} round trips after {tried} prefixes: {found:?}",
            named.len()
        );
        assert_eq!(found.as_deref(), Some(named), "{subject:?}");
    }
    let (found, _) = shortest_violation(&r2_scenario(), over_one);
    assert_eq!(found.as_deref(), Some(R2_PATH_A));
    let (found, tried) = shortest_violation(&race(Subject::Email), over_one);
    assert_eq!(found, None, "D's INCR cannot over-admit ({tried} prefixes)");
}

#[test]
fn r3_path_a_two_gateways_read_an_empty_list_and_both_push() {
    // Postmortem: max = 1, empty key. Both gateways' LLEN ran before either LPUSH, so both
    // saw 0 < 1 and admitted: 2 admissions against 1, and the list holds 2 entries (the
    // below-limit branch never trims). Six round trips: LLEN, LLEN, LPUSH, EXPIRE, LPUSH,
    // EXPIRE. The atomic scripts decide in the one round trip, so no order separates check
    // from write.
    let history = replay(&race(Subject::PathA), R3_PATH_A);
    assert_eq!(admitted(&history), 2);
    assert!(!linearizable_to(Subject::PathA, 1, &history));
}

#[test]
fn r3_path_b_is_path_a_on_the_user_key() {
    // Postmortem: path B is path A's command sequence on `rateLimit:SR:user:<id>`, so it has
    // the same six-round-trip race: two LLENs before either LPUSH.
    let history = replay(&race(Subject::PathB), R3_PATH_B);
    assert_eq!(admitted(&history), 2);
    assert!(!linearizable_to(Subject::PathB, 1, &history));
}

#[test]
fn r1_success_list_two_admissions_before_either_record() {
    // Postmortem: M = 1. The success check (LLEN) is one round trip and the record (LPUSH,
    // LTRIM, EXPIRE) comes after the upstream call. Gateway 1's LLEN ran after gateway 0's
    // check and before its LPUSH: both see 0 < 1 and both succeed. The LTRIM then keeps one
    // entry, so nothing in Redis shows the second success. Eight round trips.
    let history = replay(&race(Subject::SuccessList), R1_SUCCESS_LIST);
    assert_eq!(admitted(&history), 2);
    assert!(!linearizable_to(Subject::SuccessList, 1, &history));
}

#[test]
fn r1_model_request_limit_the_bucket_does_not_close_the_gap() {
    // Postmortem: C runs C1's LLEN, then the token bucket (SCRIPT LOAD by each gateway's
    // loader, EVALSHA), then after the call the record. Gateway 0 got through all three
    // admission round trips; gateway 1's LLEN ran before gateway 0's LPUSH. The bucket is
    // atomic but not binding (N = 1000), so it cannot stop what the success list lets
    // through: two successes against M = 1. Twelve round trips, six per request.
    let history = replay(&race(Subject::ModelRequest), R1_MODEL_REQUEST);
    assert_eq!(admitted(&history), 2);
    assert!(!linearizable_to(Subject::ModelRequest, 1, &history));
}

/// Path A's full branch with an aged-out oldest entry: setup pushes one admission 61 s ago.
fn r2_scenario() -> impl Scenario {
    |node: &proptests::sched::Node, history: &proptests::sched::History| -> Vec<Task> {
        let then_ms = node.now_ms() - 61_000;
        let stamp =
            ratelab::limiter::legacy::format_newapi_time(i64::try_from(then_ms).expect("fits"));
        node.run_now(&[
            b"LPUSH".to_vec(),
            b"rateLimit:GA203.0.113.7".to_vec(),
            stamp.into_bytes(),
        ]);
        (0..2)
            .map(|gateway| Subject::PathA.task(node, history, gateway, 1, 1))
            .collect()
    }
}

/// R2 on path A: gateway 1 reads the aged-out entry between gateway 0's LPUSH and LTRIM.
const R2_PATH_A: &[usize] = &[0, 0, 0, 1, 1, 0, 0, 1, 1, 1];

#[test]
fn r2_path_a_two_gateways_read_the_same_aged_out_entry() {
    // Postmortem: max = 1 and the list's one entry is 61 s old (window 60 s). Gateway 0 ran
    // LLEN (1: full), LINDEX -1 (the old entry: outside the window) and LPUSH. Before its
    // LTRIM, gateway 1 ran LLEN (2: full) and LINDEX -1, which is still the old entry at the
    // tail, so it admitted too. The race needs no simultaneous reads: the gap between LPUSH
    // and LTRIM is enough. Two admissions in one window of max 1, and LTRIM leaves one entry
    // to show for them. Ten round trips, five per request.
    let history = replay(&r2_scenario(), R2_PATH_A);
    assert_eq!(admitted(&history), 2);
}
