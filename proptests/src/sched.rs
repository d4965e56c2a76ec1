//! A step-level scheduler: K gateways run real limiter code against one synchronous Redis
//! model, and the scheduler decides whose next round trip the model executes.
//!
//! Why: the simulation samples interleavings with seeds; a race between two round trips of
//! two gateways is only found if a seed happens to produce it. Here every round trip is a
//! scheduling point, so small cases can be enumerated exhaustively and a violation comes back
//! as a literal schedule (`[0, 1, 0, 0, 1, 1]`: gateway 0's round trip, then gateway 1's...).
//!
//! How: a [`Stepped`] backend parks before each round trip (one `Pending` poll), so polling a
//! gateway's future once runs exactly one round trip and the local code up to the next one.
//! The executor polls with a no-op waker on one thread; no runtime is involved. A fault is a
//! task of one step, so enumerating interleavings also places each fault at every point.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use ratelab::keys::Identity;
use ratelab::limiter::{Limiter, OutcomeLimiter, Request};
use ratelab::model::{Model, NodeConfig, Reply};
use ratelab::redis::{Cmd, Error, Redis, Script};

/// The model's clock at the start of every execution (2026-03-18T17:50:23.123Z).
pub const T0_MS: u64 = 1_773_856_223_123;

/// Something that happens to Redis or to time between two round trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A restart without persistence: data and script cache gone.
    Restart,
    /// A failover to a replica that missed the last command executed (a lost write) and never
    /// saw the scripts.
    LoseLastWrite,
    /// `FLUSHALL`: data gone, scripts kept.
    FlushAll,
    /// Every clock (Redis's and the gateways') moves by this many ms (negative: a step back).
    ClockStep(i64),
}

/// The shared node: the model, the one clock, and the commands executed so far (a failover
/// replays them minus the lost one).
struct NodeState {
    model: Model,
    now_ms: u64,
    executed: Vec<(u64, Vec<Vec<u8>>)>,
    /// The scheduler's step counter: operations are stamped with it.
    step: u64,
    /// A fault replaced the model: the next execution needs a fresh one.
    replaced: bool,
}

/// One Redis node and its clock, shared by every gateway of an execution.
#[derive(Clone)]
pub struct Node(Arc<Mutex<NodeState>>);

fn fresh_model() -> Model {
    Model::new(NodeConfig::standalone(11))
}

impl Node {
    /// A node at [`T0_MS`] with every script loaded (so a script decision is one round trip).
    pub fn new() -> Node {
        let node = Node(Arc::new(Mutex::new(NodeState {
            model: fresh_model(),
            now_ms: T0_MS,
            executed: Vec::new(),
            step: 0,
            replaced: false,
        })));
        node.load_scripts();
        node
    }

    fn load_scripts(&self) {
        for script in Script::ALL {
            self.run_now(&Cmd::ScriptLoad { script }.argv());
        }
    }

    /// Back to the state [`Node::new`] gives, cheaply when no fault replaced the model.
    pub fn reset(&self) {
        let replaced = {
            let mut state = self.0.lock().unwrap();
            state.now_ms = T0_MS;
            state.executed.clear();
            state.step = 0;
            std::mem::take(&mut state.replaced)
        };
        if replaced {
            self.0.lock().unwrap().model = fresh_model();
            self.load_scripts();
        } else {
            self.run_now(&[b"FLUSHALL".to_vec()]);
        }
    }

    /// The clock (Redis's and every gateway's).
    pub fn now_ms(&self) -> u64 {
        self.0.lock().unwrap().now_ms
    }

    /// Moves the clock to `now_ms` (setup between sequential requests).
    pub fn set_now_ms(&self, now_ms: u64) {
        self.0.lock().unwrap().now_ms = now_ms;
    }

    /// The scheduler's step counter.
    pub fn step(&self) -> u64 {
        self.0.lock().unwrap().step
    }

    /// Runs one command outside any gateway (setup and inspection), unlogged.
    pub fn run_now(&self, argv: &[Vec<u8>]) -> Reply {
        let mut state = self.0.lock().unwrap();
        let now_ms = state.now_ms;
        let mut session = state.model.connect("setup");
        let reply = state.model.exec(now_ms, &mut session, argv);
        state.model.disconnect(&mut session);
        reply
    }

    fn exec(&self, cmds: &[Cmd]) -> Vec<Reply> {
        let mut state = self.0.lock().unwrap();
        let now_ms = state.now_ms;
        let mut session = state.model.connect("gateway");
        let replies = cmds
            .iter()
            .map(|cmd| {
                let argv = cmd.argv();
                let reply = state.model.exec(now_ms, &mut session, &argv);
                state.executed.push((now_ms, argv));
                reply
            })
            .collect();
        state.model.disconnect(&mut session);
        replies
    }

    /// Applies `fault` now.
    pub fn apply(&self, fault: Fault) {
        let mut state = self.0.lock().unwrap();
        match fault {
            Fault::Restart => {
                state.model = fresh_model();
                state.replaced = true;
            }
            Fault::LoseLastWrite => {
                state.executed.pop();
                let mut replica = fresh_model();
                let mut session = replica.connect("replication");
                for (at_ms, argv) in &state.executed {
                    replica.exec(*at_ms, &mut session, &as_eval(argv));
                }
                // The replica ran the scripts' bodies, but a promoted replica's cache is
                // its own: the scripts the primary had cached are gone.
                replica.flush_scripts();
                state.model = replica;
                state.replaced = true;
            }
            Fault::FlushAll => {
                let now_ms = state.now_ms;
                let mut session = state.model.connect("admin");
                state
                    .model
                    .exec(now_ms, &mut session, &[b"FLUSHALL".to_vec()]);
                state.model.disconnect(&mut session);
            }
            Fault::ClockStep(delta_ms) => {
                state.now_ms = state.now_ms.saturating_add_signed(delta_ms);
            }
        }
    }
}

impl Default for Node {
    fn default() -> Node {
        Node::new()
    }
}

/// An `EVALSHA` as the `EVAL` of its script's source (what a replica needs to replay it).
fn as_eval(argv: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if argv.first().is_some_and(|word| word == b"EVALSHA")
        && let Some(script) = Script::ALL.iter().find(|script| {
            argv.get(1)
                .is_some_and(|sha| *sha == script.sha().as_bytes())
        })
    {
        let mut eval = vec![b"EVAL".to_vec(), script.source().as_bytes().to_vec()];
        eval.extend(argv[2..].iter().cloned());
        return eval;
    }
    argv.to_vec()
}

/// Pending once, then ready: one scheduling point.
struct Park(bool);

impl Future for Park {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// The backend every gateway's limiter talks through: parks before each round trip.
pub struct Stepped(Node);

impl Redis for Stepped {
    async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        Park(false).await;
        Ok(self
            .0
            .exec(std::slice::from_ref(&cmd))
            .pop()
            .expect("one reply"))
    }

    async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
        Park(false).await;
        Ok(self.0.exec(&cmds))
    }
}

impl Node {
    /// A backend for one gateway.
    pub fn client(&self) -> Stepped {
        Stepped(self.clone())
    }
}

/// One decision as the history records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Which task (gateway) made it.
    pub gateway: usize,
    /// Scheduler step at invocation and at response: `a` precedes `b` in real time iff
    /// `a.returned_step < b.invoked_step`.
    pub invoked_step: u64,
    /// See `invoked_step`.
    pub returned_step: u64,
    /// The gateway clock when the request arrived.
    pub now_ms: u64,
    /// The clock when the decision returned (for a one-round-trip decision, the time Redis
    /// ran it).
    pub returned_ms: u64,
    /// Admitted (`Ok(true)`), denied, or the limiter could not decide.
    pub outcome: Result<bool, String>,
}

/// The history of one execution, shared by its tasks.
pub type History = Arc<Mutex<Vec<Op>>>;

/// A gateway (or a fault) as the executor sees it.
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The request every gateway sends: one client on one key (every scheme's fields present).
pub fn request(now_ms: u64) -> Request {
    Request {
        identity: Identity::new("GA")
            .with("ip", "203.0.113.7")
            .with("user", "42"),
        cost: 1,
        now_ms,
    }
}

async fn record(
    node: &Node,
    history: &History,
    gateway: usize,
    decide: impl Future<Output = Result<bool, String>>,
    invoked_step: u64,
    now_ms: u64,
) {
    let outcome = decide.await;
    history.lock().unwrap().push(Op {
        gateway,
        invoked_step,
        returned_step: node.step(),
        now_ms,
        returned_ms: node.now_ms(),
        outcome,
    });
}

/// A gateway that sends `requests` requests through `limiter`, one after another.
pub fn plain<L: Limiter + 'static>(
    node: &Node,
    history: &History,
    gateway: usize,
    requests: usize,
    mut limiter: L,
) -> Task {
    let (node, history) = (node.clone(), history.clone());
    Box::pin(async move {
        for _ in 0..requests {
            let (invoked_step, now_ms) = (node.step(), node.now_ms());
            let decide = async {
                let verdict = limiter.check(&request(now_ms)).await;
                verdict
                    .map(|verdict| verdict.decision.allowed)
                    .map_err(|error| error.to_string())
            };
            record(&node, &history, gateway, decide, invoked_step, now_ms).await;
        }
    })
}

/// A gateway whose requests are admitted and then complete successfully at once (the
/// upstream call takes no scheduler step: what matters is the round trips on either side).
pub fn outcome<L: OutcomeLimiter + 'static>(
    node: &Node,
    history: &History,
    gateway: usize,
    requests: usize,
    mut limiter: L,
) -> Task {
    let (node, history) = (node.clone(), history.clone());
    Box::pin(async move {
        for _ in 0..requests {
            let (invoked_step, now_ms) = (node.step(), node.now_ms());
            let decide = async {
                let (verdict, ticket) = limiter
                    .admit(&request(now_ms))
                    .await
                    .map_err(|error| error.to_string())?;
                if let Some(ticket) = ticket {
                    let done_ms = node.now_ms();
                    limiter
                        .complete(ticket, true, done_ms)
                        .await
                        .map_err(|error| error.to_string())?;
                }
                Ok(verdict.decision.allowed)
            };
            record(&node, &history, gateway, decide, invoked_step, now_ms).await;
        }
    })
}

/// A one-step task that applies `fault` when scheduled.
pub fn fault(node: &Node, fault: Fault) -> Task {
    let node = node.clone();
    Box::pin(async move {
        Park(false).await;
        node.apply(fault);
    })
}

/// What one execution did.
#[derive(Clone, Debug)]
pub struct Execution {
    /// The task whose step ran, in order: the literal schedule.
    pub schedule: Vec<usize>,
    /// The unfinished tasks before each step (what the scheduler could have chosen).
    pub enabled: Vec<Vec<usize>>,
    /// The decisions, in order of completion.
    pub history: Vec<Op>,
}

/// Builds an execution's tasks on a reset node (setup included).
pub trait Scenario {
    /// The tasks, after any setup on `node`.
    fn tasks(&self, node: &Node, history: &History) -> Vec<Task>;
}

impl<F: Fn(&Node, &History) -> Vec<Task>> Scenario for F {
    fn tasks(&self, node: &Node, history: &History) -> Vec<Task> {
        self(node, history)
    }
}

/// Runs `scenario` following `prefix` (task indices), then the lowest unfinished task, until
/// every task finishes or `max_steps` steps ran. A prefix entry naming a finished task is an
/// error in the caller: it panics with the schedule.
pub fn execute(
    node: &Node,
    scenario: &dyn Scenario,
    prefix: &[usize],
    max_steps: usize,
) -> Execution {
    execute_with(
        node,
        scenario,
        |step, ready| {
            let chosen = prefix.get(step).copied().unwrap_or(ready[0]);
            assert!(
                ready.contains(&chosen),
                "schedule {prefix:?}: task {chosen} is finished at step {step}"
            );
            chosen
        },
        max_steps,
    )
}

/// Runs `scenario`, asking `choose(step, unfinished tasks)` which task runs each step.
pub fn execute_with(
    node: &Node,
    scenario: &dyn Scenario,
    mut choose: impl FnMut(usize, &[usize]) -> usize,
    max_steps: usize,
) -> Execution {
    node.reset();
    let history: History = Arc::default();
    let mut tasks: Vec<Option<Task>> = scenario
        .tasks(node, &history)
        .into_iter()
        .map(Some)
        .collect();
    let mut context = Context::from_waker(Waker::noop());
    // Priming: every task runs up to its first round trip.
    for task in &mut tasks {
        if let Some(future) = task
            && future.as_mut().poll(&mut context).is_ready()
        {
            *task = None;
        }
    }
    let (mut schedule, mut enabled) = (Vec::new(), Vec::new());
    while schedule.len() < max_steps {
        let ready: Vec<usize> = (0..tasks.len()).filter(|&i| tasks[i].is_some()).collect();
        if ready.is_empty() {
            break;
        }
        let chosen = choose(schedule.len(), &ready);
        node.0.lock().unwrap().step += 1;
        let future = tasks[chosen].as_mut().expect("ready");
        if future.as_mut().poll(&mut context).is_ready() {
            tasks[chosen] = None;
        }
        schedule.push(chosen);
        enabled.push(ready);
    }
    let history = history.lock().unwrap().clone();
    Execution {
        schedule,
        enabled,
        history,
    }
}

/// The next schedule prefix in depth-first order after `execution`, or `None` when every
/// interleaving has been run.
fn next_prefix(execution: &Execution) -> Option<Vec<usize>> {
    for depth in (0..execution.schedule.len()).rev() {
        let taken = execution.schedule[depth];
        if let Some(&next) = execution.enabled[depth].iter().find(|&&task| task > taken) {
            let mut prefix = execution.schedule[..depth].to_vec();
            prefix.push(next);
            return Some(prefix);
        }
    }
    None
}

/// Runs every interleaving of `scenario` and calls `visit` on each; returns how many ran.
pub fn for_each_interleaving(scenario: &dyn Scenario, mut visit: impl FnMut(&Execution)) -> u64 {
    let node = Node::new();
    let mut prefix = Vec::new();
    let mut count = 0;
    loop {
        let execution = execute(&node, scenario, &prefix, usize::MAX);
        visit(&execution);
        count += 1;
        match next_prefix(&execution) {
            Some(next) => prefix = next,
            None => return count,
        }
    }
}

/// Breadth first over schedule prefixes: the shortest prefix after which `violated` holds of
/// the history so far (completed decisions only), with the number of prefixes tried.
pub fn shortest_violation(
    scenario: &dyn Scenario,
    violated: impl Fn(&[Op]) -> bool,
) -> (Option<Vec<usize>>, u64) {
    let node = Node::new();
    let mut frontier: Vec<Vec<usize>> = vec![Vec::new()];
    let mut tried = 0;
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for prefix in frontier {
            let execution = execute(&node, scenario, &prefix, prefix.len());
            tried += 1;
            if violated(&execution.history) {
                return (Some(prefix), tried);
            }
            // Which tasks are still unfinished after the prefix: one more step shows.
            let probe = execute(&node, scenario, &prefix, prefix.len() + 1);
            if let Some(ready) = probe.enabled.get(prefix.len()) {
                for &task in ready {
                    let mut longer = prefix.clone();
                    longer.push(task);
                    next.push(longer);
                }
            }
        }
        frontier = next;
    }
    (None, tried)
}

/// Admitted decisions in a history.
pub fn admitted(history: &[Op]) -> usize {
    history.iter().filter(|op| op.outcome == Ok(true)).count()
}

/// Whether `history` is linearizable against a sequential specification: some total order
/// that respects real time (an operation that returned before another was invoked comes
/// first) gives every decided operation the decision `spec` gives it in that order.
/// An undecided operation (an error) takes effect in the specification but may report
/// anything. Wing & Gong's search, memoised on (operations placed, specification state).
pub fn linearizable<S: Clone + Ord>(
    history: &[Op],
    spec: &S,
    step: impl Fn(&mut S, &Op) -> bool,
) -> bool {
    type Memo<S> = BTreeMap<(Vec<bool>, S), ()>;
    fn search<S: Clone + Ord>(
        history: &[Op],
        done: &mut Vec<bool>,
        state: &S,
        step: &dyn Fn(&mut S, &Op) -> bool,
        memo: &mut Memo<S>,
    ) -> bool {
        if done.iter().all(|&d| d) {
            return true;
        }
        for index in 0..history.len() {
            if done[index] {
                continue;
            }
            let op = &history[index];
            // Minimal: no pending operation returned before this one was invoked.
            let blocked = history.iter().enumerate().any(|(other, earlier)| {
                !done[other] && other != index && earlier.returned_step < op.invoked_step
            });
            if blocked {
                continue;
            }
            let mut next = state.clone();
            let admitted = step(&mut next, op);
            let consistent = match op.outcome {
                Ok(expected) => expected == admitted,
                Err(_) => true,
            };
            if consistent {
                done[index] = true;
                let key = (done.clone(), next.clone());
                if !memo.contains_key(&key) {
                    if search(history, done, &next, step, memo) {
                        return true;
                    }
                    memo.insert(key, ());
                }
                done[index] = false;
            }
        }
        false
    }
    let mut done = vec![false; history.len()];
    search(history, &mut done, spec, &step, &mut BTreeMap::new())
}
