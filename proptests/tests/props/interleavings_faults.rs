//! Faults inside the interleaving: a Redis restart, a lost write (failover), FLUSHALL and a
//! clock step, each placed before, between and after every round trip.
//!
//! Goal: for each fault class, the atomic limiters keep the bound the checker allows for it,
//! and that allowance is necessary (some placement reaches it, so the strict bound would
//! fail); new-api's paths show the failures the reference predicts (R7, D's lost EXPIRE).
//! Method: a fault is a one-step task, so enumerating every interleaving of two gateways (two
//! requests each, limit L = 2) and the fault places it everywhere.

use proptests::sched::{
    Fault, History, Node, Op, Scenario, Task, admitted, execute, fault, for_each_interleaving,
    shortest_violation,
};
use proptests::subjects::{Subject, WINDOW_MS};

const LIMIT: u64 = 2;

fn with_fault(subject: Subject, injected: Fault) -> impl Scenario {
    move |node: &Node, history: &History| -> Vec<Task> {
        let mut tasks: Vec<Task> = (0..2)
            .map(|gateway| subject.task(node, history, gateway, 2, LIMIT))
            .collect();
        tasks.push(fault(node, injected));
        tasks
    }
}

/// The most admissions any placement reached, after checking each against `allowance`.
fn most_admitted(subject: Subject, injected: Fault, allowance: usize) -> (usize, u64) {
    let mut most = 0;
    let count = for_each_interleaving(&with_fault(subject, injected), |execution| {
        let count = admitted(&execution.history);
        assert!(
            count <= allowance,
            "{subject:?} with {injected:?}: {count} admitted > {allowance}; schedule {:?}",
            execution.schedule
        );
        assert!(
            execution.history.iter().all(|op| op.outcome.is_ok()),
            "{subject:?} with {injected:?}: an error; schedule {:?}",
            execution.schedule
        );
        most = most.max(count);
    });
    (most, count)
}

const ATOMIC: [Subject; 7] = [
    Subject::FixedWindow,
    Subject::SlidingWindow,
    Subject::SlidingLog,
    Subject::TokenBucket,
    Subject::Gcra,
    Subject::MultiLimit,
    Subject::Pipelined,
];

#[test]
fn atomic_limiters_keep_each_fault_class_bound_and_each_allowance_is_needed() {
    // Allowances (the checker's): a restart or FLUSHALL lets a limiter start over (L per
    // epoch: 2L with one fault); a lost write refunds at most the one decision it carried
    // (L + 1); a clock step forward by a window is a new window (2L); a step back gives
    // nothing to the rate algorithms and the sliding log (L), but a step back across an
    // aligned window's start is a new window to the fixed and sliding windows (2L: the
    // executions start 23.123 s into a window and step back 30 s). "Needed": for each class
    // some limiter's worst placement reaches the allowance exactly.
    let l = usize::try_from(LIMIT).unwrap();
    let mut reached = [false; 5];
    for subject in ATOMIC {
        let windowed = matches!(
            subject,
            Subject::FixedWindow | Subject::SlidingWindow | Subject::Pipelined
        );
        let classes = [
            (Fault::Restart, 2 * l),
            (Fault::FlushAll, 2 * l),
            (Fault::LoseLastWrite, l + 1),
            (Fault::ClockStep(i64::try_from(WINDOW_MS).unwrap()), 2 * l),
            (
                Fault::ClockStep(-i64::try_from(WINDOW_MS / 2).unwrap()),
                if windowed { 2 * l } else { l },
            ),
        ];
        let mut line = Vec::new();
        for (class, (injected, allowance)) in classes.into_iter().enumerate() {
            let (most, count) = most_admitted(subject, injected, allowance);
            line.push(format!("{injected:?}: {count} orders, worst {most}"));
            reached[class] |= most == allowance && allowance > l;
            // Losing data or a write always costs the limiters that keep state in one key.
            if matches!(injected, Fault::Restart | Fault::FlushAll) {
                assert_eq!(most, allowance, "{subject:?} with {injected:?}");
            }
        }
        eprintln!("faults: {subject:?}: {}", line.join("; "));
    }
    // Each allowance above L is reached by some limiter: without it the check would fail.
    // (The sliding window smooths a one-window step to L here; the pipelined window's lost
    // command is the PEXPIRE behind its INCRBY, which refunds nothing.)
    assert_eq!(
        reached, [true; 5],
        "restart, flush, lost write, step forward, step back"
    );
}

/// Path A with a full, fresh list (max 1) and one gateway, plus a FLUSHALL.
fn r7_scenario() -> impl Scenario {
    |node: &Node, history: &History| -> Vec<Task> {
        let stamp = ratelab::limiter::legacy::format_newapi_time(
            i64::try_from(node.now_ms()).expect("fits"),
        );
        node.run_now(&[
            b"LPUSH".to_vec(),
            b"rateLimit:GA203.0.113.7".to_vec(),
            stamp.into_bytes(),
        ]);
        vec![
            Subject::PathA.task(node, history, 0, 1, 1),
            fault(node, Fault::FlushAll),
        ]
    }
}

/// R7: LLEN (full), FLUSHALL, LINDEX (nil).
const R7_PATH_A: &[usize] = &[0, 1, 0];

#[test]
fn r7_path_a_the_key_vanishes_between_llen_and_lindex() {
    // Postmortem: the list was full (LLEN 1 = max), then the key went (FLUSHALL here; TTL
    // expiry or eviction in production) before LINDEX -1, which answered nil. new-api
    // discards the error, parses "" and fails: a 500 for a request that should simply have
    // been admitted. Three steps, the fault one of them; breadth first finds no shorter.
    let errored = |history: &[Op]| history.iter().any(|op| op.outcome.is_err());
    let (found, _) = shortest_violation(&r7_scenario(), errored);
    assert_eq!(found.as_deref(), Some(R7_PATH_A));
    let node = Node::new();
    let history = execute(&node, &r7_scenario(), R7_PATH_A, 3).history;
    assert!(
        matches!(&history[..], [op] if op.outcome.as_ref().is_err_and(|e| e.contains("parse")))
    );
}

/// D with one request, then (maybe) a lost write, a clock step past the window, and a second
/// gateway's request.
fn email_scenario(lose: bool) -> impl Scenario {
    move |node: &Node, history: &History| -> Vec<Task> {
        vec![
            Subject::Email.task(node, history, 0, 1, 1),
            fault(
                node,
                if lose {
                    Fault::LoseLastWrite
                } else {
                    Fault::ClockStep(0)
                },
            ),
            fault(node, Fault::ClockStep(2 * 60_000)),
            Subject::Email.task(node, history, 3, 1, 1),
        ]
    }
}

/// INCR, EXPIRE, the EXPIRE is lost, two windows pass, INCR (2 > 1), TTL (-1).
const D_LOST_EXPIRE: &[usize] = &[0, 0, 1, 2, 3, 3];

#[test]
fn d_a_lost_expire_locks_the_address_out_for_good() {
    // Postmortem: INCR made the counter 1 and the EXPIRE that should end its window was the
    // write a failover lost. The counter never expires: two windows later the next request
    // counts 2 > 1 and is denied, and TTL -1 says it always will be (retry after "never").
    // The same schedule without the loss admits it. Under-admission, not over: INCR is
    // atomic, which is why D holds its bound in every fault-free order.
    let node = Node::new();
    let lost = execute(&node, &email_scenario(true), D_LOST_EXPIRE, 6).history;
    assert_eq!(
        lost.iter().map(|op| op.outcome.clone()).collect::<Vec<_>>(),
        [Ok(true), Ok(false)]
    );
    let kept = execute(&node, &email_scenario(false), D_LOST_EXPIRE, 6).history;
    assert_eq!(
        kept.iter().map(|op| op.outcome.clone()).collect::<Vec<_>>(),
        [Ok(true), Ok(true)]
    );
}
