//! Random schedules, for cases too large to enumerate: a [`Case`] is a limiter, a limit,
//! gateways × requests, one-step tasks (clock jumps, faults) and a schedule drawn as picks
//! (each entry chooses among the unfinished tasks, modulo their count), so that proptest can
//! draw and shrink it. Used by `tests/props/interleavings_random.rs` and by the random (R)
//! half of the verdict table ([`crate::verdict::run_random`]).

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::sched::{Execution, Fault, History, Node, Op, Scenario, Task, execute_with, fault};
use crate::subjects::Subject;

/// A drawn case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The limiter.
    pub subject: Subject,
    /// L.
    pub limit: u64,
    /// Gateways, tasks `0..gateways`.
    pub gateways: usize,
    /// Requests each gateway sends.
    pub requests: usize,
    /// One-step tasks after the gateways, in task order (task `gateways + i` is `faults[i]`).
    pub faults: Vec<Fault>,
    /// Step `i` runs the unfinished task `ready[picks[i] % ready.len()]` (0 past the end).
    pub picks: Vec<usize>,
}

impl Case {
    /// The case's tasks on a reset node.
    pub fn scenario(&self) -> impl Scenario + '_ {
        move |node: &Node, history: &History| -> Vec<Task> {
            let mut tasks: Vec<Task> = (0..self.gateways)
                .map(|gateway| {
                    self.subject
                        .task(node, history, gateway, self.requests, self.limit)
                })
                .collect();
            for &injected in &self.faults {
                tasks.push(fault(node, injected));
            }
            tasks
        }
    }

    /// Runs the case to the end on a fresh node.
    pub fn execute(&self) -> Execution {
        let choose = |step: usize, ready: &[usize]| {
            let pick = self.picks.get(step).copied().unwrap_or(0);
            ready[pick % ready.len()]
        };
        execute_with(&Node::new(), &self.scenario(), choose, usize::MAX)
    }

    /// The decisions of [`Case::execute`].
    pub fn run(&self) -> Vec<Op> {
        self.execute().history
    }
}

/// What drawing `cases` cases from a strategy found.
#[derive(Clone, Debug)]
pub struct Search<T> {
    /// Cases drawn.
    pub cases: u32,
    /// Cases for which `violated` held.
    pub violating: u32,
    /// The first violating case, shrunk (proptest's simplify/complicate until no simpler
    /// case violates, at most `shrink_steps` steps).
    pub minimal: Option<T>,
}

/// A runner whose draws depend only on `seed` (ChaCha), never on the environment or the clock.
pub fn runner(seed: u8, cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4_096,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// Draws `cases` values of `strategy` with a runner seeded by `seed`, calls `visit(value,
/// true)` on each (true back: it violates), counts the violations and shrinks the first
/// (calling `visit(candidate, false)` on the shrinking candidates). Unlike
/// `TestRunner::run` it does not stop at the first failure, so the count covers every case.
pub fn search<S: Strategy>(
    strategy: &S,
    seed: u8,
    cases: u32,
    shrink_steps: u32,
    mut visit: impl FnMut(&S::Value, bool) -> bool,
) -> Search<S::Value> {
    let mut runner = runner(seed, cases);
    let mut found = Search {
        cases,
        violating: 0,
        minimal: None,
    };
    for _ in 0..cases {
        let mut tree = strategy
            .new_tree(&mut runner)
            .expect("the strategy rejects nothing");
        if !visit(&tree.current(), true) {
            continue;
        }
        found.violating += 1;
        if found.minimal.is_some() {
            continue;
        }
        let mut best = tree.current();
        let mut steps = 0;
        let mut more = tree.simplify();
        while more && steps < shrink_steps {
            steps += 1;
            let candidate = tree.current();
            if visit(&candidate, false) {
                best = candidate;
                more = tree.simplify();
            } else {
                more = tree.complicate();
            }
        }
        found.minimal = Some(best);
    }
    found
}
