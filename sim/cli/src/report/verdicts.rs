//! The verdict table (`verdicts.md`): every limiter against every fault class, each cell
//! computed by running the checks, never written by hand.
//!
//! A cell has up to three kinds of evidence. **Exhaustive**: every interleaving of a few
//! gateways' round trips and the fault (`proptests::verdict`, the scheduler library of the
//! interleaving tests, real limiter code on the synchronous model). **Random**: schedules of
//! more gateways and requests with clock jumps, drawn and shrunk by proptest with a pinned
//! seed (`proptests::verdict::run_random`). **Simulation**: the
//! cell's scenario (a base per limiter, changed by the column's fault) run with fixed seeds
//! through `sim::simulate` and judged by the checker. A cell is *violated* when either
//! finds a violation, *holds* when every check that ran holds and could have failed
//! (denials, each fault took effect, more requests than the allowance), *unproven* when
//! one held only vacuously, and *n/a* when the fault class means nothing to the limiter.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use proptests::subjects::Subject;
use proptests::verdict::{self as exhaustive, Check, Outcome, RandomOutcome};
use sim::checker::Report;
use sim::harness::{Tamper, TamperAction};
use sim::scenario::{Fault, FaultKind, LimiterKind, MultiLimitSpec, Scenario, Topology};

/// A fault class: a column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// Two gateways (in-memory limiters: one), no fault.
    None,
    /// Every link 5 to 30 ms one way.
    Rtt,
    /// gateway-0 cut from redis-0 for 400 ms.
    Partition,
    /// Redis restarts without persistence.
    RedisRestart,
    /// A replica 300 ms behind is promoted.
    Failover,
    /// FLUSHALL.
    Flush,
    /// The clock the limiter reads steps back half a window (exhaustive: also forward a window).
    ClockStep,
    /// Gateways 5 % fast, Redis 5 % slow.
    ClockDrift,
    /// Eight gateways (exhaustive: three).
    Gateways,
    /// gateway-0's process restarts (down 100 ms).
    GatewayRestart,
}

impl Column {
    /// Every column, in the table's order.
    pub const ALL: [Column; 10] = [
        Column::None,
        Column::Rtt,
        Column::Partition,
        Column::RedisRestart,
        Column::Failover,
        Column::Flush,
        Column::ClockStep,
        Column::ClockDrift,
        Column::Gateways,
        Column::GatewayRestart,
    ];

    fn title(self) -> &'static str {
        match self {
            Column::None => "none",
            Column::Rtt => "RTT",
            Column::Partition => "partition",
            Column::RedisRestart => "Redis restart",
            Column::Failover => "failover with lag",
            Column::Flush => "flush",
            Column::ClockStep => "clock step",
            Column::ClockDrift => "clock drift",
            Column::Gateways => "G gateways",
            Column::GatewayRestart => "gateway restart",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Column::None => "none",
            Column::Rtt => "rtt",
            Column::Partition => "partition",
            Column::RedisRestart => "redis-restart",
            Column::Failover => "failover",
            Column::Flush => "flush",
            Column::ClockStep => "clock-step",
            Column::ClockDrift => "clock-drift",
            Column::Gateways => "gateways",
            Column::GatewayRestart => "gateway-restart",
        }
    }

    /// The scheduler's counterpart of this class, if it has one.
    fn exhaustive(self) -> Option<exhaustive::Class> {
        match self {
            Column::None => Some(exhaustive::Class::None),
            Column::RedisRestart => Some(exhaustive::Class::Restart),
            Column::Failover => Some(exhaustive::Class::LostWrite),
            Column::Flush => Some(exhaustive::Class::Flush),
            Column::ClockStep => Some(exhaustive::Class::ClockStep),
            Column::Gateways => Some(exhaustive::Class::Gateways),
            Column::Rtt | Column::Partition | Column::ClockDrift | Column::GatewayRestart => None,
        }
    }
}

/// A limiter: a row. `kind` is its simulation kind, `subject` its scheduler task.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    name: &'static str,
    slug: &'static str,
    kind: Option<LimiterKind>,
    /// new-api C's token bucket N (0: C1 alone).
    total: u64,
    subject: Option<Subject>,
}

/// Every limiter of the library, legacy first. The scheduler has no in-memory limiter (they
/// make no round trip to interleave: loom checks them, `LOOM`).
pub const ROWS: [Row; 18] = [
    row(
        "new-api A: IP list",
        "legacy-ip-list",
        Some(LimiterKind::LegacyIpList),
        0,
        Some(Subject::PathA),
    ),
    row(
        "new-api B: user list",
        "legacy-user-list",
        Some(LimiterKind::LegacyUserList),
        0,
        Some(Subject::PathB),
    ),
    row(
        "new-api C1: success list",
        "legacy-success-list",
        Some(LimiterKind::LegacyModelRequest),
        0,
        Some(Subject::SuccessList),
    ),
    row(
        "new-api C: success list + bucket",
        "legacy-model-request",
        Some(LimiterKind::LegacyModelRequest),
        50,
        Some(Subject::ModelRequest),
    ),
    row(
        "new-api C2: token bucket",
        "legacy-token-bucket",
        Some(LimiterKind::LegacyTokenBucket),
        0,
        Some(Subject::NewapiBucket),
    ),
    row(
        "new-api D: email INCR",
        "legacy-email",
        Some(LimiterKind::LegacyEmail),
        0,
        Some(Subject::Email),
    ),
    row(
        "new-api in-memory list",
        "legacy-memory-list",
        Some(LimiterKind::LegacyMemoryList),
        0,
        None,
    ),
    row(
        "in-memory GCRA",
        "memory-gcra",
        Some(LimiterKind::MemoryGcra),
        0,
        None,
    ),
    row(
        "fixed window",
        "atomic-fixed-window",
        Some(LimiterKind::AtomicFixedWindow),
        0,
        Some(Subject::FixedWindow),
    ),
    row(
        "sliding window counter",
        "atomic-sliding-window",
        Some(LimiterKind::AtomicSlidingWindow),
        0,
        Some(Subject::SlidingWindow),
    ),
    row(
        "sliding log",
        "atomic-sliding-log",
        Some(LimiterKind::AtomicSlidingLog),
        0,
        Some(Subject::SlidingLog),
    ),
    row(
        "token bucket",
        "atomic-token-bucket",
        Some(LimiterKind::AtomicTokenBucket),
        0,
        Some(Subject::TokenBucket),
    ),
    row(
        "GCRA",
        "atomic-gcra",
        Some(LimiterKind::AtomicGcra),
        0,
        Some(Subject::Gcra),
    ),
    row(
        "pipelined fixed window",
        "pipelined-fixed-window",
        Some(LimiterKind::PipelinedFixedWindow),
        0,
        Some(Subject::Pipelined),
    ),
    row(
        "multi-limit",
        "multi-limit",
        Some(LimiterKind::MultiLimit),
        0,
        Some(Subject::MultiLimit),
    ),
    row(
        "success reservation",
        "success-reservation",
        Some(LimiterKind::SuccessReservation),
        0,
        Some(Subject::Reservation),
    ),
    row(
        "sharded GCRA",
        "sharded-gcra",
        Some(LimiterKind::ShardedGcra),
        0,
        Some(Subject::Sharded),
    ),
    row(
        "hybrid GCRA",
        "hybrid-gcra",
        Some(LimiterKind::HybridGcra),
        0,
        Some(Subject::Hybrid),
    ),
];

const fn row(
    name: &'static str,
    slug: &'static str,
    kind: Option<LimiterKind>,
    total: u64,
    subject: Option<Subject>,
) -> Row {
    Row {
        name,
        slug,
        kind,
        total,
        subject,
    }
}

/// How much checking: the simulation's seeds and the exhaustive budget per check.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seeds per simulated cell.
    pub seeds: Vec<u64>,
    /// Most interleavings one exhaustive check may enumerate.
    pub budget: u128,
    /// A check sends more requests (up to 4 a gateway) than the fewest that can exceed its
    /// allowance only while its orders stay within this.
    pub grow_budget: u128,
    /// Cases per random check.
    pub random_cases: u32,
    /// Worker threads.
    pub jobs: usize,
    /// Test only: a limiter that over-admits (the table must say "violated").
    pub tamper: bool,
    /// Only these cells (row slug, column); empty: all.
    pub only: Vec<(&'static str, Column)>,
}

impl Options {
    /// The committed table's settings (`quick`: fewer seeds and a smaller budget).
    pub fn new(quick: bool, jobs: usize) -> Options {
        Options {
            seeds: if quick { vec![1] } else { vec![1, 2] },
            budget: if quick { 300 } else { 40_000 },
            grow_budget: if quick { 300 } else { 2_000 },
            random_cases: if quick { 32 } else { exhaustive::RANDOM_CASES },
            jobs,
            tamper: false,
            only: Vec::new(),
        }
    }
}

/// What the simulation of one cell found.
#[derive(Debug)]
pub struct Simulated {
    scenario: Scenario,
    reports: Vec<Report>,
}

/// One cell's evidence.
#[derive(Debug, Default)]
pub struct Cell {
    /// Why there is no simulation or no exhaustive check (n/a, or beyond the budget).
    notes: Vec<String>,
    /// The exhaustive checks that ran.
    pub outcomes: Vec<Outcome>,
    /// The random checks that ran.
    pub random: Vec<RandomOutcome>,
    /// The row's threads are checked by loom instead (in-memory limiters, classes E has).
    pub loom: bool,
    /// The simulation, if it ran.
    pub simulated: Option<Simulated>,
}

/// A cell's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held, and each could have failed.
    Holds,
    /// Some check found a violation.
    Violated,
    /// Every check held, but some only vacuously.
    Unproven,
    /// Nothing applies.
    NotApplicable,
}

/// Whether a checker verdict is about a bound (admissions or successes per key; for the
/// clock-aligned windows, their exact L per aligned window is the bound too).
fn is_bound(name: &str) -> bool {
    name.ends_with("_within_bound") || name == "admissions_within_aligned_windows"
}

impl Cell {
    /// The verdict on the bound from the evidence. Other safety properties that failed (a
    /// key without TTL, a 5xx while Redis was healthy) are marked apart, not counted here.
    pub fn verdict(&self) -> Verdict {
        let sim_violated = self.simulated.as_ref().is_some_and(|sim| {
            sim.reports.iter().any(|report| {
                report.verdicts.iter().any(|verdict| {
                    verdict.kind == sim::checker::VerdictKind::Safety
                        && !verdict.held
                        && is_bound(&verdict.name)
                })
            })
        });
        if sim_violated
            || self.outcomes.iter().any(|o| o.violating.is_some())
            || self.random.iter().any(|r| r.violating > 0)
        {
            return Verdict::Violated;
        }
        if self.simulated.is_none() && self.outcomes.is_empty() && self.random.is_empty() {
            return Verdict::NotApplicable;
        }
        let sim_covered = self
            .simulated
            .as_ref()
            .is_none_or(|sim| sim.reports.iter().all(Report::covered));
        if sim_covered
            && self.outcomes.iter().all(Outcome::could_fail)
            && self.random.iter().all(RandomOutcome::could_fail)
        {
            Verdict::Holds
        } else {
            Verdict::Unproven
        }
    }
}

/// Every cell, row by row.
pub struct Table {
    /// `cells[row][column]`.
    pub cells: Vec<Vec<Cell>>,
    /// Exhaustive orders in all.
    pub orders: u64,
    /// Random cases in all.
    pub cases: u64,
    /// Simulated runs in all.
    pub runs: usize,
}

/// The base scenario of a limiter: two gateways, 200 requests per second on two keys for
/// 3 s, L = 10 per second (new-api's model limits: whole minutes, M = 3 and N = 50).
fn base(row: &Row) -> Option<Scenario> {
    let kind = row.kind?;
    let (limit, window_ms) = match kind {
        LimiterKind::LegacyModelRequest => (3, 60_000),
        LimiterKind::LegacyTokenBucket => (50, 60_000),
        _ => (10, 1_000),
    };
    let text = format!(
        "duration_ms = 3000\n\
         [limit]\nlimit = {limit}\nwindow_ms = {window_ms}\ntotal = {}\n\
         [[gateways]]\ncount = 2\nlimiter = \"atomic_gcra\"\n\
         [load]\nrate_per_s = 200\nkeys = 2\n\
         [upstream]\nlatency = {{ kind = \"uniform\", min_ms = 5, max_ms = 50 }}\n",
        row.total
    );
    let mut scenario = Scenario::from_toml(&text).expect("the base scenario is valid");
    scenario.gateways[0].limiter = kind;
    // An in-memory limiter's state is its gateway's: one gateway is the fault-free case,
    // and the G gateways column shows what separate stores admit together.
    if kind.is_in_memory() {
        scenario.gateways[0].count = 1;
    }
    if kind == LimiterKind::MultiLimit {
        scenario.gateways[0].limits = vec![
            MultiLimitSpec {
                key_scheme: "rl:global:{$group}".to_owned(),
                limit: 15,
            },
            MultiLimitSpec {
                key_scheme: "rl:user:{$group}:$user".to_owned(),
                limit: 10,
            },
        ];
    }
    Some(scenario)
}

fn at(at_ms: u64, kind: FaultKind) -> Fault {
    Fault { at_ms, kind }
}

/// The cell's scenario, or why there is none.
fn scenario(row: &Row, column: Column) -> Result<Scenario, String> {
    let Some(mut scenario) = base(row) else {
        return Err("no simulation kind".to_owned());
    };
    let kind = scenario.gateways[0].limiter;
    let no_redis = || Err("no Redis: state is in the gateway".to_owned());
    let window_ms = i64::try_from(scenario.limit.window_ms).expect("fits");
    match column {
        Column::None => {}
        Column::Rtt if kind.is_in_memory() => return no_redis(),
        Column::Rtt => {
            scenario.network.min_latency_ms = 5;
            scenario.network.max_latency_ms = 30;
        }
        Column::Partition | Column::RedisRestart | Column::Failover | Column::Flush
            if kind.is_in_memory() =>
        {
            return no_redis();
        }
        Column::Partition => scenario.faults.push(at(
            1_000,
            FaultKind::Partition {
                a: "gateway-0".to_owned(),
                b: "redis-0".to_owned(),
                oneway: false,
                duration_ms: 400,
            },
        )),
        Column::RedisRestart => scenario.faults.push(at(
            1_500,
            FaultKind::RedisRestart {
                persistence: sim::scenario::Persistence::None,
                rdb_every_ms: None,
            },
        )),
        Column::Failover => {
            scenario.redis.topology = Topology::Replicated;
            scenario.redis.replicas = 1;
            scenario.redis.replication_lag_ms = 300;
            // Pooled connections to the dead primary fail fast, as in the failover scenario.
            for group in &mut scenario.gateways {
                group.pool.read_timeout_ms = 100;
                group.pool.dial_timeout_ms = 100;
            }
            scenario.faults.push(at(1_500, FaultKind::Failover {}));
        }
        Column::Flush => scenario.faults.push(at(1_500, FaultKind::Flush {})),
        Column::ClockStep => {
            let host = if kind.uses_gateway_clock() || kind.is_in_memory() {
                "gateway-0"
            } else {
                "redis-0"
            };
            scenario.faults.push(at(
                1_200,
                FaultKind::ClockStep {
                    host: host.to_owned(),
                    step_ms: -window_ms / 2,
                },
            ));
        }
        Column::ClockDrift => {
            for group in &mut scenario.gateways {
                group.drift_ppm = 50_000;
            }
            scenario.redis.drift_ppm = -50_000;
        }
        Column::Gateways => scenario.gateways[0].count = 8,
        Column::GatewayRestart => scenario.faults.push(at(
            1_500,
            FaultKind::GatewayRestart {
                host: "gateway-0".to_owned(),
                down_ms: 100,
            },
        )),
    }
    Ok(scenario)
}

/// One unit of work for the pool.
enum Job {
    Exhaustive { cell: (usize, usize), check: Check },
    Random { cell: (usize, usize), check: Check },
    Simulate { cell: (usize, usize), seed: u64 },
}

/// A job's result.
enum Done {
    Exhaustive(Outcome),
    Random(RandomOutcome),
    Simulated(Result<Box<Report>, String>),
}

/// Admits every request the limiter denies (the simulation's over-admitting limiter).
fn admit_all() -> Tamper {
    Arc::new(|call| {
        if call.allowed == Some(false) {
            TamperAction::Admit
        } else {
            TamperAction::Keep
        }
    })
}

/// Runs every check of the selected cells on `options.jobs` threads; the table does not
/// depend on the thread count.
pub fn compute(
    options: &Options,
    progress: impl FnMut(usize, usize) + Send,
) -> Result<Table, String> {
    let selected = |row: &Row, column: Column| {
        options.only.is_empty()
            || options
                .only
                .iter()
                .any(|(slug, only)| *slug == row.slug && *only == column)
    };
    let mut cells: Vec<Vec<Cell>> = ROWS
        .iter()
        .map(|_| Column::ALL.iter().map(|_| Cell::default()).collect())
        .collect();
    let mut jobs = Vec::new();
    for (r, row) in ROWS.iter().enumerate() {
        for (c, &column) in Column::ALL.iter().enumerate() {
            if !selected(row, column) {
                continue;
            }
            let cell = &mut cells[r][c];
            match (row.subject, column.exhaustive()) {
                (Some(subject), Some(class)) => {
                    jobs.extend(
                        exhaustive::random_plan(subject, class)
                            .into_iter()
                            .map(|check| Job::Random {
                                cell: (r, c),
                                check,
                            }),
                    );
                    match exhaustive::plan(subject, class, options.budget, options.grow_budget) {
                        Ok(checks) => {
                            jobs.extend(checks.into_iter().map(|check| Job::Exhaustive {
                                cell: (r, c),
                                check,
                            }))
                        }
                        Err(why) => cell.notes.push(format!("exhaustive: not run ({why})")),
                    }
                }
                (None, Some(_)) => {
                    cell.loom = true;
                    cell.notes.push(LOOM_NOTE.to_owned());
                }
                (_, None) => {}
            }
            match scenario(row, column) {
                Ok(scenario) => {
                    jobs.extend(
                        options
                            .seeds
                            .iter()
                            .map(|&seed| Job::Simulate { cell: (r, c), seed }),
                    );
                    cell.simulated = Some(Simulated {
                        scenario,
                        reports: Vec::new(),
                    });
                }
                Err(why) => cell.notes.push(format!("simulation: n/a ({why})")),
            }
        }
    }
    let total = jobs.len();
    let finished = std::sync::Mutex::new((0usize, progress));
    let scenarios: Vec<Vec<Option<Scenario>>> = cells
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| cell.simulated.as_ref().map(|sim| sim.scenario.clone()))
                .collect()
        })
        .collect();
    let results = sim::explore::run_ordered(
        0,
        total as u64,
        options.jobs,
        |index| match &jobs[usize::try_from(index).expect("fits")] {
            Job::Exhaustive { check, .. } => Done::Exhaustive(exhaustive::run(
                *check,
                if options.tamper {
                    exhaustive::Tamper::AdmitFirstDenial
                } else {
                    exhaustive::Tamper::None
                },
            )),
            Job::Random { check, .. } => Done::Random(exhaustive::run_random(
                *check,
                if options.tamper {
                    exhaustive::Tamper::AdmitFirstDenial
                } else {
                    exhaustive::Tamper::None
                },
                options.random_cases,
            )),
            Job::Simulate { cell: (r, c), seed } => {
                let scenario = scenarios[*r][*c].as_ref().expect("a simulated cell");
                let tamper = options.tamper.then(admit_all);
                Done::Simulated(
                    sim::simulate_tampered(scenario, *seed, tamper)
                        .map(|(report, _)| Box::new(report))
                        .map_err(|error| {
                            format!(
                                "{} / {}, seed {seed}: {error}",
                                ROWS[*r].slug,
                                Column::ALL[*c].slug()
                            )
                        }),
                )
            }
        },
        |_, _| {
            let mut finished = finished.lock().expect("not poisoned");
            finished.0 += 1;
            let done = finished.0;
            (finished.1)(done, total);
        },
    );
    let mut orders = 0;
    let mut cases = 0;
    let mut runs = 0;
    for (index, done) in results {
        let job = &jobs[usize::try_from(index).expect("fits")];
        match (job, done) {
            (Job::Exhaustive { cell: (r, c), .. }, Done::Exhaustive(outcome)) => {
                orders += outcome.orders;
                cells[*r][*c].outcomes.push(outcome);
            }
            (Job::Random { cell: (r, c), .. }, Done::Random(outcome)) => {
                cases += u64::from(outcome.cases);
                cells[*r][*c].random.push(outcome);
            }
            (Job::Simulate { cell: (r, c), .. }, Done::Simulated(report)) => {
                runs += 1;
                cells[*r][*c]
                    .simulated
                    .as_mut()
                    .expect("a simulated cell")
                    .reports
                    .push(*report?);
            }
            _ => unreachable!("each job gives its own kind of result"),
        }
    }
    Ok(Table {
        cells,
        orders,
        cases,
        runs,
    })
}

/// The file a violating simulated cell's scenario is written to, under `out`.
fn scenario_file(row: &Row, column: Column) -> String {
    format!("verdicts/{}--{}.toml", row.slug, column.slug())
}

/// The failed safety verdicts of a simulated cell, in order, without repeats.
fn failed(sim: &Simulated) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for report in &sim.reports {
        for verdict in &report.verdicts {
            if verdict.kind == sim::checker::VerdictKind::Safety
                && !verdict.held
                && !names.contains(&verdict.name.as_str())
            {
                names.push(&verdict.name);
            }
        }
    }
    names
}

/// The coverage verdicts that failed (a quiet run).
fn quiet(sim: &Simulated) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for report in &sim.reports {
        for verdict in &report.verdicts {
            if verdict.kind == sim::checker::VerdictKind::Coverage
                && !verdict.held
                && !names.contains(&verdict.name.as_str())
            {
                names.push(&verdict.name);
            }
        }
    }
    names
}

/// The smallest over-admission the cell's checks are sure to see: 1 for an exhaustive
/// count; for the simulation, the checker's resolution, the coarser of its admission and
/// success bounds' where a run judged both, worst seed.
fn resolution(cell: &Cell) -> Option<u64> {
    let sim = cell.simulated.as_ref().and_then(|sim| {
        sim.reports
            .iter()
            .flat_map(|report| {
                [
                    report.metrics.over_admission_resolution,
                    report.metrics.success_resolution,
                ]
            })
            .filter(|&resolution| resolution > 0)
            .max()
    });
    match (sim, cell.outcomes.is_empty() && cell.random.is_empty()) {
        (Some(resolution), _) => Some(resolution),
        (None, false) => Some(1),
        (None, true) => None,
    }
}

/// The strictest allowance among the cell's exhaustive checks, in words.
fn allowance(cell: &Cell) -> Option<String> {
    let mut texts: Vec<&str> = Vec::new();
    let checks = cell.outcomes.iter().map(|o| &o.check);
    for check in checks.chain(cell.random.iter().map(|r| &r.check)) {
        if !texts.contains(&check.allowance_text) {
            texts.push(check.allowance_text);
        }
    }
    (!texts.is_empty()).then(|| format!("≤{}", texts.join("/")))
}

/// The matrix cell: the verdict, the exhaustive allowance, which checks ran, the resolution.
fn short(cell: &Cell) -> String {
    let verdict = cell.verdict();
    let mut parts = vec![match verdict {
        Verdict::Holds => "holds".to_owned(),
        Verdict::Violated => "**violated**".to_owned(),
        Verdict::Unproven => "unproven".to_owned(),
        Verdict::NotApplicable => return "n/a".to_owned(),
    }];
    if verdict != Verdict::Violated
        && let Some(allowance) = allowance(cell)
    {
        parts.push(allowance);
    }
    let orders: u64 = cell.outcomes.iter().map(|o| o.orders).sum();
    let mut evidence = Vec::new();
    if !cell.outcomes.is_empty() {
        let mark = if cell.outcomes.iter().any(|o| o.violating.is_some()) {
            "E✗"
        } else {
            "E"
        };
        evidence.push(format!("{mark} {orders}"));
    } else if cell.loom {
        evidence.push("E: loom".to_owned());
    }
    if !cell.random.is_empty() {
        let mark = if cell.random.iter().any(|r| r.violating > 0) {
            "R✗"
        } else {
            "R"
        };
        let cases: u32 = cell.random.iter().map(|r| r.cases).sum();
        evidence.push(format!("{mark} {cases}"));
    }
    if let Some(sim) = &cell.simulated {
        let failed = failed(sim);
        let mark = if failed.iter().any(|name| is_bound(name)) {
            "S✗"
        } else {
            "S"
        };
        let other = if failed.iter().any(|name| !is_bound(name)) {
            "†"
        } else {
            ""
        };
        evidence.push(format!("{mark} {}{other}", sim.reports.len()));
    }
    parts.push(evidence.join(" "));
    if let Some(resolution) = resolution(cell) {
        parts.push(format!("r{resolution}"));
    }
    parts.join(" · ")
}

fn fault_text(fault: Option<proptests::sched::Fault>) -> String {
    let placed = match fault {
        None => return "no fault".to_owned(),
        Some(proptests::sched::Fault::Restart) => "a restart".to_owned(),
        Some(proptests::sched::Fault::LoseLastWrite) => "a lost write".to_owned(),
        Some(proptests::sched::Fault::FlushAll) => "FLUSHALL".to_owned(),
        Some(proptests::sched::Fault::ClockStep(ms)) => format!("a clock step of {ms:+} ms"),
    };
    format!("{placed} placed at every point")
}

/// One exhaustive check in words.
fn describe_outcome(outcome: &Outcome) -> String {
    let check = &outcome.check;
    let mut text = format!(
        "{} gateways × {} requests, L = {}, {}, allowance {} = {}: {} orders, most admitted {}, fewest {}",
        check.gateways,
        check.requests,
        check.limit,
        fault_text(check.fault),
        check.allowance_text,
        check.allowance,
        outcome.orders,
        outcome.worst,
        outcome.fewest,
    );
    if outcome.errors > 0 {
        let _ = write!(text, ", {} undecided (error) decisions", outcome.errors);
    }
    if let Some(schedule) = &outcome.violating {
        let kind = if outcome.shortest {
            "shortest (breadth first, 2 gateways × 1 request)"
        } else {
            "first found, cut to its violating prefix"
        };
        let _ = write!(
            text,
            "; **{} orders over**; {kind}: `{schedule:?}` ({} steps)",
            outcome.violating_orders,
            schedule.len()
        );
        if let Some(named) = exhaustive::named(outcome) {
            let _ = write!(
                text,
                " = `cargo test -p proptests --test props {}`",
                named.test
            );
        }
    } else if !outcome.could_fail() {
        text.push_str(" (cannot fail: no request denied or too few requests)");
    }
    text
}

/// One random check in words.
fn describe_random(outcome: &RandomOutcome) -> String {
    let check = &outcome.check;
    let mut text = format!(
        "{} cases of {}–{} gateways × 1–{} requests, L = {}, 0–{} clock jumps of a window, {}, allowance {} = {} per window visited (× (1 + jumps)): {} over, {} could fail",
        outcome.cases,
        exhaustive::RANDOM_GATEWAYS_MIN,
        check.gateways,
        check.requests,
        check.limit,
        exhaustive::RANDOM_JUMPS_MAX,
        match check.fault {
            None => "no fault".to_owned(),
            Some(_) => fault_text(check.fault).replace("placed at every point", "placed at random"),
        },
        check.allowance_text,
        check.allowance,
        outcome.violating,
        outcome.failable,
    );
    if outcome.errors > 0 {
        let _ = write!(text, ", {} undecided (error) decisions", outcome.errors);
    }
    if let (Some(case), Some(schedule)) = (&outcome.minimal, &outcome.schedule) {
        let jumps = case.faults.len() - usize::from(check.fault.is_some());
        let _ = write!(
            text,
            "; **shrunk**: {} gateways × {} requests, {jumps} jumps, schedule `{schedule:?}` ({} steps; tasks {}.. are the jumps, then the fault)",
            case.gateways,
            case.requests,
            schedule.len(),
            case.gateways,
        );
    } else if !outcome.could_fail() {
        text.push_str(" (cannot fail: no case had a denial and more requests than its allowance)");
    }
    text
}

/// The simulation of one cell in words.
fn describe_simulated(row: &Row, column: Column, sim: &Simulated, out: &Path) -> String {
    let kind = sim.scenario.gateways[0].limiter;
    let bound = sim::checker::admission_bound(kind, &sim.scenario)
        .map(|bound| format!("admissions {bound}"))
        .into_iter()
        .chain(
            sim::checker::success_bound(kind, &sim.scenario)
                .map(|bound| format!("successes {bound}")),
        )
        .collect::<Vec<_>>();
    let bound = if bound.is_empty() {
        "each limit's keys within their own rate".to_owned()
    } else {
        bound.join("; ")
    };
    let seeds: Vec<String> = sim
        .reports
        .iter()
        .map(|report| report.seed.to_string())
        .collect();
    let worst = sim
        .reports
        .iter()
        .map(|report| report.metrics.over_admission_max)
        .max()
        .unwrap_or(0);
    let denied: u64 = sim.reports.iter().map(|report| report.metrics.denied).sum();
    let mut text = format!(
        "seeds {} (bound: {bound}; allowances as the checker gives them): {denied} denials, over-admission max {worst}",
        seeds.join(", ")
    );
    let failed = failed(sim);
    if failed.is_empty() {
        let quiet = quiet(sim);
        if !quiet.is_empty() {
            let _ = write!(text, "; quiet: {}", quiet.join(", "));
        }
    } else {
        let seed = sim
            .reports
            .iter()
            .find(|report| !report.safe())
            .map_or(0, |report| report.seed);
        let _ = write!(
            text,
            "; **failed: {}**; replay: `cargo run --release -p sim -- run --scenario {} --seed {seed}`",
            failed.join(", "),
            out.join(scenario_file(row, column)).display()
        );
    }
    text
}

/// The table as Markdown, and the scenario files of the violating simulated cells (relative
/// to `out`).
pub fn render(table: &Table, out: &Path, command: &str) -> (String, Vec<(String, String)>) {
    let mut text = String::from("# Verdict table\n\n");
    let _ = write!(
        text,
        "Generated by `{command}`; do not edit (CI regenerates it and fails on any difference). \
         Each cell is computed by running its checks: **E** every interleaving of a few gateways' \
         round trips with the fault placed at every point (`proptests::verdict` on the \
         in-process model; `E n`: orders enumerated; `E: loom`: the row keeps its state in \
         the gateway's threads, whose interleavings loom checks, not this report: \
         `loom-tests/tests/loom_memory.rs` for the in-memory GCRA, \
         `loom-tests/tests/loom_newapi_memory.rs` for new-api's in-memory list), **R** random \
         schedules of 3 or 4 gateways × 1 to 4 requests with up to two clock jumps of a window \
         (keys expire, windows turn; the allowance applies once per window visited) and the fault placed \
         at random, drawn by proptest with a pinned seed, the first violation shrunk \
         (`proptests::verdict::run_random`; `R n`: cases), **S** the cell's scenario simulated \
         (`sim::simulate`, judged by the checker; `S n`: seeds). ✗ marks the check that found \
         the violation. `≤L`, `≤2L`, `≤L+1`: the exhaustive allowance for the class (all \
         requests at one instant on one key); the simulation's bound is in the row's details. \
         `rN`: the smallest over-admission the cell's checks are sure to see (1 for an \
         exhaustive count; for the simulation the checker's `over_admission_resolution`, or \
         `success_resolution` for a success bound, the coarser, worst seed). † another safety property failed (a key without TTL, a 5xx while \
         Redis was healthy; named in the details). *holds*: every check held and could have failed (denials, each fault \
         took effect, more requests than the allowance); *unproven*: held, but some check \
         could not have failed; *n/a*: the class means nothing to the limiter.\n\n\
         {} exhaustive orders, {} random cases and {} simulated runs.\n\n",
        table.orders, table.cases, table.runs
    );
    text.push_str("| limiter |");
    for column in Column::ALL {
        let _ = write!(text, " {} |", column.title());
    }
    text.push_str("\n|---|");
    for _ in Column::ALL {
        text.push_str("---|");
    }
    text.push('\n');
    for (row, cells) in ROWS.iter().zip(&table.cells) {
        let _ = write!(text, "| {} |", row.name);
        for cell in cells {
            let _ = write!(text, " {} |", short(cell));
        }
        text.push('\n');
    }
    text.push_str("\n## Caveats: what the checks do not capture\n\n");
    text.push_str(CAVEATS);
    text.push_str("\n## Details per limiter\n");
    let mut files = Vec::new();
    for (row, cells) in ROWS.iter().zip(&table.cells) {
        let kind = row
            .kind
            .map(|kind| format!("simulation kind `{}`", kind_name(kind)))
            .unwrap_or_else(|| "no simulation kind".to_owned());
        let subject = row
            .subject
            .map(|subject| format!("scheduler task `{subject:?}`"))
            .unwrap_or_else(|| "no scheduler task".to_owned());
        let _ = write!(text, "\n### {}\n\n{kind}; {subject}.\n\n", row.name);
        for (cell, &column) in cells.iter().zip(Column::ALL.iter()) {
            let verdict = match cell.verdict() {
                Verdict::Holds => "holds",
                Verdict::Violated => "**violated**",
                Verdict::Unproven => "unproven",
                Verdict::NotApplicable => "n/a",
            };
            let _ = writeln!(text, "- {}: {verdict}", column.title());
            for outcome in &cell.outcomes {
                let _ = writeln!(text, "  - E: {}", describe_outcome(outcome));
            }
            for outcome in &cell.random {
                let _ = writeln!(text, "  - R: {}", describe_random(outcome));
            }
            if let Some(sim) = &cell.simulated
                && !sim.reports.is_empty()
            {
                let _ = writeln!(text, "  - S: {}", describe_simulated(row, column, sim, out));
                if !failed(sim).is_empty() {
                    files.push((scenario_file(row, column), sim.scenario.to_toml()));
                }
            }
            for note in &cell.notes {
                let _ = writeln!(text, "  - {note}");
            }
        }
    }
    (text, files)
}

/// What an in-memory row's cell says in place of E.
const LOOM_NOTE: &str = "exhaustive: loom, not this report (the state is the gateway's threads: \
`loom-tests/tests/loom_memory.rs` for the in-memory GCRA, \
`loom-tests/tests/loom_newapi_memory.rs` for new-api's in-memory list; run with \
`RUSTFLAGS=\"--cfg loom\" cargo test -p loom-tests --release`)";

/// A kind's name in scenario files.
fn kind_name(kind: LimiterKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

const CAVEATS: &str = "\
- **One Redis model, not Redis.** Both checks run the limiters against ratelab's Redis 7.0 \
model (its fidelity is tested against real Redis separately); a Redis bug or a behaviour the \
model lacks is outside every cell.
- **Exhaustive means small.** E enumerates every order of 2 gateways (3 for G gateways) with \
1 to 4 requests each and at most one fault, on one key, all requests at one instant; a check \
runs if its fewest requests need at most 40,000 orders (3 gateways × 4 round trips is \
34,650) and sends more requests while it stays within 2,000. Orders beyond the budget are \
not run (the row's details say so). A longer race (more gateways or requests than \
enumerated) is only sampled: by R, by the random schedules of \
`tests/props/interleavings_random.rs` and by the simulation.
- **Random samples.** R draws 256 cases per check from one pinned seed; a holds there is for \
those cases, and its allowance is the class's once per window the clock visits, \
(1 + jumps) × it (a jump is an expiry of every key at once, not a partial one).
- **The simulation samples.** S runs each cell's scenario with the listed seeds; a holds \
there is for those runs, judged with a time margin per key (the resolution says how coarse).
- **A round trip is the unit of interleaving.** Each Redis command or script runs \
atomically in the model, as in Redis; partial execution of a script (a crash mid-script), \
client-side retries that re-send a command already applied, and reordering inside one \
pipeline are not modelled in E (the simulation's pool retries only after a timeout).
- **Faults are the ones listed.** A lost write in E is the last command only (a replica one \
command behind); the simulation's failover loses what a 300 ms lag had not shipped. \
Persistence (AOF, RDB), partial flushes, eviction of single keys, network duplication and \
Byzantine clients are not modelled. A clock step moves the clock the limiter reads (in E \
every clock at once); drift is 5 % on gateways and Redis.
- **In-process state.** The in-memory limiters make no round trips, so E and R do not apply \
(`E: loom`); their locking is checked by loom (`loom-tests/tests/loom_memory.rs`, \
`loom-tests/tests/loom_newapi_memory.rs`, preemption bound 2), not by this report; the simulation \
judges them against the one global bound, so G gateways show what N separate stores admit.
- **Bounds are per key** as each limiter states them (`sim::checker::admission_bound`); a \
fail-open admission is counted apart, outside the bound, by design.
";

#[cfg(test)]
mod tests {
    #[test]
    fn every_bound_verdict_of_the_checker_counts_as_the_bound() {
        for name in [
            "admissions_within_bound",
            "group_admissions_within_bound",
            "successes_within_bound",
            "admissions_within_aligned_windows",
        ] {
            assert!(super::is_bound(name), "{name}");
        }
        assert!(!super::is_bound("every_key_has_ttl"));
    }

    use super::*;

    /// Goal: the table can fail: an over-admitting limiter turns a cell that holds into
    /// "violated", through both checks. Method: the GCRA row, no fault, once as it is and
    /// once with a limiter that admits one request too many in each interleaving (E) and
    /// every denied request (S); the first cell holds with denials, the second is violated
    /// with E finding orders over L and S failing `admissions_within_bound`.
    #[test]
    fn an_over_admitting_limiter_makes_the_cell_violated() {
        let mut options = Options::new(true, 2);
        options.only = vec![("atomic-gcra", Column::None)];
        let row = ROWS
            .iter()
            .position(|row| row.slug == "atomic-gcra")
            .expect("a row");
        let honest = compute(&options, |_, _| {}).expect("runs");
        let cell = &honest.cells[row][0];
        assert_eq!(cell.verdict(), Verdict::Holds, "{cell:?}");
        assert!(cell.outcomes.iter().all(|o| o.worst == 2 && o.could_fail()));
        // The random schedules too: none over, and some could have been.
        assert!(!cell.random.is_empty(), "{cell:?}");
        assert!(
            cell.random
                .iter()
                .all(|r| r.violating == 0 && r.could_fail()),
            "{cell:?}"
        );
        options.tamper = true;
        let tampered = compute(&options, |_, _| {}).expect("runs");
        let cell = &tampered.cells[row][0];
        assert_eq!(cell.verdict(), Verdict::Violated, "{cell:?}");
        assert!(
            cell.outcomes
                .iter()
                .all(|o| o.worst == 3 && o.violating.is_some())
        );
        // R alone sees the one admission too many: violating cases, a shrunk schedule.
        assert!(
            cell.random
                .iter()
                .all(|r| r.violating > 0 && r.minimal.is_some() && r.schedule.is_some()),
            "{cell:?}"
        );
        let sim = cell.simulated.as_ref().expect("simulated");
        assert!(
            sim.reports
                .iter()
                .all(|r| r.violated("admissions_within_bound"))
        );
        let (text, files) = render(&tampered, Path::new("results"), "test");
        assert!(text.contains("| GCRA | **violated** · E✗"), "{text}");
        assert_eq!(files.len(), 1);
        // Every other cell was left out: n/a.
        assert_eq!(tampered.cells[row][1].verdict(), Verdict::NotApplicable);
    }

    /// Goal: a legacy race is found and named. Method: path A, no fault: violated, with
    /// the breadth-first order equal to the named test's schedule.
    #[test]
    fn path_a_is_violated_with_its_named_counterexample() {
        let mut options = Options::new(true, 2);
        options.only = vec![("legacy-ip-list", Column::None)];
        let table = compute(&options, |_, _| {}).expect("runs");
        let cell = &table.cells[0][0];
        assert_eq!(cell.verdict(), Verdict::Violated);
        let named = cell
            .outcomes
            .iter()
            .find_map(exhaustive::named)
            .expect("named");
        assert_eq!(named.schedule, exhaustive::R3_PATH_A);
    }
}
