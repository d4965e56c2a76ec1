//! Interleavings too many to enumerate: up to six gateways, up to four requests each, clock
//! jumps between round trips (so keys expire mid-run), drawn and shrunk by proptest.
//!
//! Goal: the atomic limiters agree with their `algo` reference decision for decision, in the
//! order Redis ran them, whatever the schedule (their histories are linearizable with the
//! script's round trip as the linearization point); and random search finds new-api's
//! path-A race unaided and shrinks it to a short schedule.
//! Method: a case (`proptests::random::Case`, shared with the verdict table's R checks) is a
//! limiter, a limit, gateways × requests, clock jumps (each a one-step task) and a schedule
//! (each entry picks among the unfinished tasks, modulo their count).

use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestError, TestRng, TestRunner,
};
use proptests::random::Case;
use proptests::sched::{Fault, admitted};
use proptests::subjects::Subject;

fn config() -> Config {
    Config {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

/// The script limiters. The pipelined window is not here: it keys each window by the
/// gateway's clock, so once clocks jump, requests stamped in different windows reach Redis out
/// of order and land on different keys, while `algo::fixed_window` keeps one state (proptest
/// found this at once: the two agree only while gateway times reach Redis in order).
const ATOMIC: [Subject; 6] = [
    Subject::FixedWindow,
    Subject::SlidingWindow,
    Subject::SlidingLog,
    Subject::TokenBucket,
    Subject::Gcra,
    Subject::MultiLimit,
];

fn atomic_case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(ATOMIC.to_vec()),
        1u64..4,
        2usize..7,
        1usize..5,
        prop::collection::vec(0i64..90_000, 0..4),
        prop::collection::vec(0usize..8, 0..40),
    )
        .prop_map(
            |(subject, limit, gateways, requests, jumps_ms, picks)| Case {
                subject,
                limit,
                gateways,
                requests,
                faults: jumps_ms.into_iter().map(Fault::ClockStep).collect(),
                picks,
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn atomic_limiters_match_their_reference_in_any_schedule(case in atomic_case()) {
        let mut history = case.run();
        prop_assert_eq!(history.len(), case.gateways * case.requests);
        // One round trip per decision: Redis's order is the order decisions returned in.
        history.sort_by_key(|op| op.returned_step);
        // The scripts read Redis TIME: the clock when their one round trip ran.
        let times: Vec<u64> = history.iter().map(|op| op.returned_ms).collect();
        let expected = case.subject.reference(case.limit, &times).expect("a reference");
        let got: Vec<bool> = history.iter().map(|op| op.outcome == Ok(true)).collect();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn random_search_finds_and_shrinks_path_a_r3() {
    // Goal: without the breadth-first search's help, proptest reaches new-api's path-A race
    // from random schedules of up to five gateways and shrinks it close to the shortest
    // (6 round trips: `interleavings::r3_path_a_two_gateways_read_an_empty_list_and_both_push`).
    // Method: a pinned RNG, so the run repeats; the property is "admitted <= limit" for
    // requests at one instant; the test passes only if proptest reports a minimal failure.
    let strategy = (
        1u64..3,
        2usize..6,
        1usize..3,
        prop::collection::vec(0usize..6, 0..40),
    )
        .prop_map(|(limit, gateways, requests, picks)| Case {
            subject: Subject::PathA,
            limit,
            gateways,
            requests,
            faults: Vec::new(),
            picks,
        });
    let config = Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&strategy, |case| {
        let history = case.run();
        prop_assert!(admitted(&history) <= usize::try_from(case.limit).unwrap());
        Ok(())
    });
    let Err(TestError::Fail(_, minimal)) = result else {
        panic!("random search did not find R3: {result:?}");
    };
    let history = minimal.run();
    let steps = history.iter().map(|op| op.returned_step).max().unwrap_or(0);
    eprintln!(
        "random: path A R3 shrunk to {} gateways × {} requests, limit {}, {steps} round trips",
        minimal.gateways, minimal.requests, minimal.limit
    );
    assert!(admitted(&history) > usize::try_from(minimal.limit).unwrap());
    assert!(minimal.gateways == 2 && minimal.limit == 1, "{minimal:?}");
}
