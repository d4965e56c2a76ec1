//! The exhaustive half of the verdict table (`ratelab report`'s `verdicts.md`): for one
//! limiter and one fault class, every interleaving of a few gateways' round trips (and of the
//! fault, a one-step task), judged against the allowance the class earns.
//!
//! Every request arrives at one instant on one key, so the stated limit L is the bound and
//! each class's allowance is a multiple of it: a restart or a flush lets a limiter start over
//! (2L), a lost write refunds at most the one decision it carried (L + 1), a clock step forward
//! by a window is a new window (2L), a step back by half a window is a new window only to the
//! windows aligned to the clock (2L) and gives nothing to the others (L). A check is sized so
//! that it can fail: its gateways send more requests than the allowance. The number of orders
//! is kept under a budget by choosing how many requests each gateway sends.

use crate::random::{self, Case};
use crate::sched::{Execution, Fault, History, Node, Op, Scenario, Task, execute, fault};
use crate::sched::{for_each_interleaving, shortest_violation};
use crate::subjects::{Subject, WINDOW_MS};
use proptest::prelude::*;

/// A fault class the scheduler can place inside an interleaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Two gateways, no fault.
    None,
    /// A restart without persistence (data and scripts gone).
    Restart,
    /// A failover that lost the last command executed (a replication lag of one write).
    LostWrite,
    /// `FLUSHALL`.
    Flush,
    /// A clock step of every clock: forward by a window, and (a second check) back by half.
    ClockStep,
    /// Three gateways instead of two, no fault.
    Gateways,
}

/// One enumeration: who runs what, and what it may admit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The limiter.
    pub subject: Subject,
    /// Gateways, each a task.
    pub gateways: usize,
    /// Requests each gateway sends, one after another.
    pub requests: usize,
    /// L.
    pub limit: u64,
    /// The fault placed at every point, if any.
    pub fault: Option<Fault>,
    /// Most admissions allowed in one execution.
    pub allowance: usize,
    /// The allowance in words (`2L`).
    pub allowance_text: &'static str,
}

/// What one enumeration found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What ran.
    pub check: Check,
    /// Interleavings enumerated.
    pub orders: u64,
    /// Most admissions in one order.
    pub worst: usize,
    /// Fewest admissions in one order.
    pub fewest: usize,
    /// Decisions that could not be made (an error reply), over every order.
    pub errors: u64,
    /// Orders that admitted more than the allowance.
    pub violating_orders: u64,
    /// The first violating order (depth first), cut to the shortest prefix that violates.
    pub violating: Option<Vec<usize>>,
    /// Whether `violating` is a shortest violating order (breadth first), not just one.
    pub shortest: bool,
}

impl Outcome {
    /// Requests sent in each order.
    pub fn requests(&self) -> usize {
        self.check.gateways * self.check.requests
    }

    /// The check could have failed: more requests than the allowance, some of them denied.
    pub fn could_fail(&self) -> bool {
        self.requests() > self.check.allowance && self.fewest < self.requests()
    }
}

/// A limiter that admits one request too many: in each execution, its first denial becomes
/// an admission that its state does not count (as `sim::harness::Tamper`'s `Admit`). Only for
/// the test that shows the table can say "violated".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The limiter as it is.
    None,
    /// The first denial of every execution admitted.
    AdmitFirstDenial,
}

/// Admissions in `history`, as the (possibly tampered) limiter answered.
pub fn judged(history: &[Op], tamper: Tamper) -> usize {
    let admitted = history.iter().filter(|op| op.outcome == Ok(true)).count();
    let denied = history.iter().any(|op| op.outcome == Ok(false));
    admitted + usize::from(tamper == Tamper::AdmitFirstDenial && denied)
}

/// Most round trips one request of `subject` takes: one gateway sends four requests at
/// limit 2 on a fresh node (admissions and denials, a script loader's load included).
pub fn round_trips(subject: Subject) -> usize {
    let scenario = move |node: &Node, history: &History| -> Vec<Task> {
        vec![subject.task(node, history, 0, 4, 2)]
    };
    let execution = execute(&Node::new(), &scenario, &[], usize::MAX);
    execution
        .history
        .iter()
        .map(|op| usize::try_from(op.returned_step - op.invoked_step).expect("small"))
        .max()
        .unwrap_or(1)
        .max(1)
}

/// How many orders `tasks` tasks of `steps` steps each, plus `one_step` one-step tasks, have:
/// the multinomial (n)! / ((steps!)^tasks), saturating.
pub fn orders(tasks: usize, steps: usize, one_step: usize) -> u128 {
    let total = tasks * steps + one_step;
    // Multiply in the binomials C(placed + k, k) one task at a time.
    let mut count: u128 = 1;
    let mut placed = 0usize;
    let binomial = |n: usize, k: usize| -> u128 {
        let mut value: u128 = 1;
        for i in 0..k {
            value = value.saturating_mul((n - i) as u128) / (i as u128 + 1);
        }
        value
    };
    for _ in 0..tasks {
        count = count.saturating_mul(binomial(placed + steps, steps));
        placed += steps;
    }
    for _ in 0..one_step {
        count = count.saturating_mul(binomial(placed + 1, 1));
        placed += 1;
    }
    debug_assert_eq!(placed, total);
    count
}

/// Whether `subject`'s windows are aligned to the clock (a step back re-enters a window
/// whose count is gone).
fn clock_aligned(subject: Subject) -> bool {
    matches!(
        subject,
        Subject::FixedWindow | Subject::SlidingWindow | Subject::Pipelined
    )
}

/// The limit a subject is checked at: one-step limiters get L = 2, so that two gateways'
/// requests interleave around it; multi-step ones L = 1, so that few requests exceed it,
/// except the sharded limiter, whose two shards need a share each.
fn limit_of(subject: Subject, steps: usize) -> u64 {
    if steps > 1 && subject != Subject::Sharded {
        1
    } else {
        2
    }
}

/// The faults of a class with their allowances at limit `l`.
fn faults_of(
    subject: Subject,
    class: Class,
    l: usize,
) -> Vec<(Option<Fault>, usize, &'static str)> {
    let window = i64::try_from(WINDOW_MS).expect("fits");
    match class {
        Class::None | Class::Gateways => vec![(None, l, "L")],
        Class::Restart => vec![(Some(Fault::Restart), 2 * l, "2L")],
        Class::Flush => vec![(Some(Fault::FlushAll), 2 * l, "2L")],
        Class::LostWrite => vec![(Some(Fault::LoseLastWrite), l + 1, "L+1")],
        Class::ClockStep => vec![
            (Some(Fault::ClockStep(window)), 2 * l, "2L"),
            if clock_aligned(subject) {
                (Some(Fault::ClockStep(-window / 2)), 2 * l, "2L")
            } else {
                (Some(Fault::ClockStep(-window / 2)), l, "L")
            },
        ],
    }
}

/// The checks of one cell, or an explanation of why there are none (one request already
/// needs more orders than `budget`). Each check sends the fewest requests that can exceed
/// its allowance, then more (up to 4 a gateway) while the orders stay within `grow_budget`.
pub fn plan(
    subject: Subject,
    class: Class,
    budget: u128,
    grow_budget: u128,
) -> Result<Vec<Check>, String> {
    let steps = round_trips(subject);
    let limit = limit_of(subject, steps);
    let l = usize::try_from(limit).expect("small");
    let gateways = if class == Class::Gateways { 3 } else { 2 };
    let mut checks = Vec::new();
    for (fault, allowance, allowance_text) in faults_of(subject, class, l) {
        let one_step = usize::from(fault.is_some());
        // The fewest requests that can exceed the allowance, then more while in budget.
        let least = allowance / gateways + 1;
        let size = |requests: usize| orders(gateways, requests * steps, one_step);
        if size(least) > budget {
            return Err(format!(
                "{gateways} gateways × {least} requests of {steps} round trips: {} orders, over the budget of {budget}",
                size(least)
            ));
        }
        let mut requests = least;
        while requests < 4 && size(requests + 1) <= grow_budget.min(budget) {
            requests += 1;
        }
        checks.push(Check {
            subject,
            gateways,
            requests,
            limit,
            fault,
            allowance,
            allowance_text,
        });
    }
    Ok(checks)
}

/// The tasks of `check` on a reset node.
fn scenario(check: Check) -> impl Scenario {
    move |node: &Node, history: &History| -> Vec<Task> {
        let mut tasks: Vec<Task> = (0..check.gateways)
            .map(|gateway| {
                check
                    .subject
                    .task(node, history, gateway, check.requests, check.limit)
            })
            .collect();
        if let Some(injected) = check.fault {
            tasks.push(fault(node, injected));
        }
        tasks
    }
}

/// Runs every interleaving of `check` and judges each against its allowance. A violation is
/// cut to its shortest violating prefix; for a fault-free check it is then replaced by a
/// shortest violating order of the smallest case (two gateways, one request each), found
/// breadth first, when that case violates too.
pub fn run(check: Check, tamper: Tamper) -> Outcome {
    let scenario = scenario(check);
    let mut outcome = Outcome {
        check,
        orders: 0,
        worst: 0,
        fewest: usize::MAX,
        errors: 0,
        violating_orders: 0,
        violating: None,
        shortest: false,
    };
    let mut first: Option<Vec<usize>> = None;
    outcome.orders = for_each_interleaving(&scenario, |execution: &Execution| {
        let count = judged(&execution.history, tamper);
        outcome.worst = outcome.worst.max(count);
        outcome.fewest = outcome.fewest.min(count);
        outcome.errors += execution
            .history
            .iter()
            .filter(|op| op.outcome.is_err())
            .count() as u64;
        if count > check.allowance {
            outcome.violating_orders += 1;
            first.get_or_insert_with(|| execution.schedule.clone());
        }
    });
    let over = |history: &[Op]| judged(history, tamper) > check.allowance;
    if let Some(schedule) = first {
        let node = Node::new();
        let cut = (1..=schedule.len())
            .find(|&steps| over(&execute(&node, &scenario, &schedule[..steps], steps).history))
            .unwrap_or(schedule.len());
        outcome.violating = Some(schedule[..cut].to_vec());
        if check.fault.is_none() {
            let smallest = Check {
                gateways: 2,
                requests: 1,
                ..check
            };
            if smallest.allowance < 2
                && let (Some(shortest), _) = shortest_violation(&self::scenario(smallest), over)
            {
                outcome.violating = Some(shortest);
                outcome.shortest = true;
            }
        }
    }
    outcome
}

/// A named `#[test]` whose literal schedule is a shortest violating order: the table names
/// the test when the order it computed is this one.
#[derive(Clone, Copy, Debug)]
pub struct Named {
    /// The limiter.
    pub subject: Subject,
    /// The test's path in `cargo test -p proptests --test props`.
    pub test: &'static str,
    /// Its schedule (two gateways, one request each, L = 1, no fault).
    pub schedule: &'static [usize],
}

/// R3 on path A: gateway 0 LLEN (0 < 1), gateway 1 LLEN (0 < 1): both admitted.
pub const R3_PATH_A: &[usize] = &[0, 1, 0, 0, 1, 1];
/// R3 on path B: the same code on the user key.
pub const R3_PATH_B: &[usize] = &[0, 1, 0, 0, 1, 1];
/// R1 on C1: both LLENs before either record.
pub const R1_SUCCESS_LIST: &[usize] = &[0, 1, 0, 0, 0, 1, 1, 1];
/// R1 through C (success check, then the token bucket's loader and script, then the record).
pub const R1_MODEL_REQUEST: &[usize] = &[0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1];

/// The named counterexamples of `tests/props/interleavings.rs`.
pub const NAMED: [Named; 4] = [
    Named {
        subject: Subject::PathA,
        test: "interleavings::r3_path_a_two_gateways_read_an_empty_list_and_both_push",
        schedule: R3_PATH_A,
    },
    Named {
        subject: Subject::PathB,
        test: "interleavings::r3_path_b_is_path_a_on_the_user_key",
        schedule: R3_PATH_B,
    },
    Named {
        subject: Subject::SuccessList,
        test: "interleavings::r1_success_list_two_admissions_before_either_record",
        schedule: R1_SUCCESS_LIST,
    },
    Named {
        subject: Subject::ModelRequest,
        test: "interleavings::r1_model_request_limit_the_bucket_does_not_close_the_gap",
        schedule: R1_MODEL_REQUEST,
    },
];

/// The named test whose schedule `outcome` found, if any.
pub fn named(outcome: &Outcome) -> Option<&'static Named> {
    let schedule = outcome.violating.as_deref()?;
    NAMED.iter().find(|named| {
        outcome.shortest
            && outcome.check.fault.is_none()
            && named.subject == outcome.check.subject
            && named.schedule == schedule
    })
}

/// Cases each random check draws.
pub const RANDOM_CASES: u32 = 256;

/// Most gateways (and most requests each) a random case draws; at least
/// [`RANDOM_GATEWAYS_MIN`] gateways and one request.
pub const RANDOM_MAX: usize = 4;

/// Fewest gateways a random case draws.
pub const RANDOM_GATEWAYS_MIN: usize = 3;

/// Most clock jumps forward by a whole window (every key expires, every window turns) a
/// random case adds; each is one more window in which the class's allowance applies again.
pub const RANDOM_JUMPS_MAX: usize = 2;

/// The random checks of one cell: the same faults and allowances as [`plan`]'s, drawn at
/// [`RANDOM_GATEWAYS_MIN`]..=[`RANDOM_MAX`] gateways × 1..=[`RANDOM_MAX`] requests (the
/// check's `gateways` and `requests` are those maxima). There is no budget: a case is one
/// execution.
pub fn random_plan(subject: Subject, class: Class) -> Vec<Check> {
    let limit = limit_of(subject, round_trips(subject));
    let l = usize::try_from(limit).expect("small");
    faults_of(subject, class, l)
        .into_iter()
        .map(|(fault, allowance, allowance_text)| Check {
            subject,
            gateways: RANDOM_MAX,
            requests: RANDOM_MAX,
            limit,
            fault,
            allowance,
            allowance_text,
        })
        .collect()
}

/// The cases of a random check: 3 or 4 gateways, 1 to 4 requests each, 0 to 2 clock jumps
/// of a window, the check's fault, and a schedule of picks (the fault and the jumps are
/// one-step tasks, so the schedule places them anywhere).
pub fn random_cases(check: Check) -> impl Strategy<Value = Case> {
    let window = i64::try_from(WINDOW_MS).expect("fits");
    (
        RANDOM_GATEWAYS_MIN..=RANDOM_MAX,
        1..=RANDOM_MAX,
        0..=RANDOM_JUMPS_MAX,
        prop::collection::vec(0usize..8, 0..120),
    )
        .prop_map(move |(gateways, requests, jumps, picks)| {
            let mut faults = vec![Fault::ClockStep(window); jumps];
            faults.extend(check.fault);
            Case {
                subject: check.subject,
                limit: check.limit,
                gateways,
                requests,
                faults,
                picks,
            }
        })
}

/// The allowance of one random case of `check`: the class's once per window the clock
/// visits, `(1 + jumps) ×` it. Not `+ L` a jump: a request stamped before a jump can reach
/// Redis after it (the pipelined window keys by the gateway's clock), so a restart or a flush
/// after a jump resets every window still in use, each by up to the class's allowance
/// (random search found this at once with `+ L`).
pub fn random_allowance(check: &Check, case: &Case) -> usize {
    let jumps = case.faults.len() - usize::from(check.fault.is_some());
    check.allowance * (1 + jumps)
}

/// What a random check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomOutcome {
    /// What ran (`gateways`, `requests`: the largest drawn).
    pub check: Check,
    /// Cases drawn.
    pub cases: u32,
    /// Cases that admitted more than their allowance.
    pub violating: u32,
    /// Cases that could have failed: more requests than their allowance, some denied.
    pub failable: u32,
    /// Decisions that could not be made (an error reply), over every case.
    pub errors: u64,
    /// The first violating case, shrunk by proptest.
    pub minimal: Option<Case>,
    /// Its schedule, cut to the shortest prefix that violates.
    pub schedule: Option<Vec<usize>>,
}

impl RandomOutcome {
    /// Some case could have failed.
    pub fn could_fail(&self) -> bool {
        self.failable > 0
    }
}

/// Draws [`RANDOM_CASES`] cases of `check` with a pinned seed (the same for every check, so
/// the table repeats byte for byte) and judges each against its allowance.
pub fn run_random(check: Check, tamper: Tamper, cases: u32) -> RandomOutcome {
    let strategy = random_cases(check);
    let (mut failable, mut errors) = (0, 0);
    let found = random::search(&strategy, 5, cases, 2_000, |case, drawn| {
        let history = case.run();
        let allowance = random_allowance(&check, case);
        let count = judged(&history, tamper);
        if drawn {
            let requests = case.gateways * case.requests;
            let denied = history.iter().any(|op| op.outcome == Ok(false));
            failable += u32::from(requests > allowance && denied);
            errors += history.iter().filter(|op| op.outcome.is_err()).count() as u64;
        }
        count > allowance
    });
    let schedule = found.minimal.as_ref().map(|case| {
        let execution = case.execute();
        let allowance = random_allowance(&check, case);
        let node = Node::new();
        let scenario = case.scenario();
        let schedule = execution.schedule;
        let cut = (1..=schedule.len())
            .find(|&steps| {
                judged(
                    &execute(&node, &scenario, &schedule[..steps], steps).history,
                    tamper,
                ) > allowance
            })
            .unwrap_or(schedule.len());
        schedule[..cut].to_vec()
    });
    RandomOutcome {
        check,
        cases: found.cases,
        violating: found.violating,
        failable,
        errors,
        minimal: found.minimal,
        schedule,
    }
}
