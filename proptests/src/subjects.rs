//! Every Redis-backed limiter as a scheduler task, with the sequential specification it is
//! judged against.
//!
//! One key, one client: every gateway sends the same identity, so all decisions share state.
//! Windows are 60 s and rates 60 s per unit, so that a decision's spec depends only on how
//! many came before it unless a test moves the clock.

use ratelab::algo::reservation::SuccessQuota;
use ratelab::algo::{self, RateQuota, WindowQuota};
use ratelab::keys::KeyScheme;
use ratelab::limiter::atomic::{
    Algorithm, MultiLimiter, PipelinedFixedWindow, ScriptClock, ScriptLimiter, ShardedLimiter,
    SuccessLimiter as ReservationLimiter,
};
use ratelab::limiter::hybrid::{HybridLimiter, SLACK_PERCENT_DEFAULT as SLACK};
use ratelab::limiter::legacy::GatewayClock;
use ratelab::limiter::legacy::email::{EmailLimiter, EmailQuota};
use ratelab::limiter::legacy::list_log::{ListLogLimiter, ListLogQuota};
use ratelab::limiter::legacy::model_request::{
    ModelQuota, ModelRequestLimiter, SuccessLimiter, TokenBucketLimiter,
};

use crate::sched::{History, Node, Task, outcome, plain};

/// The window of every window quota, and the interval times burst of every rate quota.
pub const WINDOW_MS: u64 = 60_000;

/// A limiter under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// new-api path A (`redisRateLimiter`): LLEN, then LPUSH+EXPIRE or LINDEX(+...).
    PathA,
    /// new-api path B (`userRedisRateLimiter`): path A's commands on the user's key.
    PathB,
    /// new-api C1: the success list, admitted then recorded (LLEN ... LPUSH, LTRIM, EXPIRE).
    SuccessList,
    /// new-api C: C1 and the token bucket script together.
    ModelRequest,
    /// new-api C2: the token bucket script (atomic, with its own loader's SCRIPT LOAD).
    NewapiBucket,
    /// new-api D: INCR, then EXPIRE on the first.
    Email,
    /// `lua/fixed_window.lua`.
    FixedWindow,
    /// `lua/sliding_window.lua`.
    SlidingWindow,
    /// `lua/sliding_log.lua`.
    SlidingLog,
    /// `lua/token_bucket.lua`.
    TokenBucket,
    /// `lua/gcra.lua`.
    Gcra,
    /// INCRBY + PEXPIRE in one pipeline.
    Pipelined,
    /// `lua/multi_limit.lua` with one limit.
    MultiLimit,
    /// `lua/success_reserve.lua` then `lua/success_complete.lua`.
    Reservation,
    /// GCRA split over two shards, with one retry on the next shard.
    Sharded,
    /// The hybrid: a local GCRA pre-check and deny cache per gateway (each task its own),
    /// then the GCRA script (one round trip when the local parts let the request through).
    Hybrid,
}

impl Subject {
    /// Every subject.
    pub const ALL: [Subject; 16] = [
        Subject::PathA,
        Subject::PathB,
        Subject::SuccessList,
        Subject::ModelRequest,
        Subject::NewapiBucket,
        Subject::Email,
        Subject::FixedWindow,
        Subject::SlidingWindow,
        Subject::SlidingLog,
        Subject::TokenBucket,
        Subject::Gcra,
        Subject::Pipelined,
        Subject::MultiLimit,
        Subject::Reservation,
        Subject::Sharded,
        Subject::Hybrid,
    ];

    /// new-api as built (multi-step, expected to race) rather than the redesign.
    pub fn legacy(self) -> bool {
        matches!(
            self,
            Subject::PathA
                | Subject::PathB
                | Subject::SuccessList
                | Subject::ModelRequest
                | Subject::NewapiBucket
                | Subject::Email
        )
    }

    /// The sequential reference: decisions for requests at `times_ms`, in order, under a
    /// limit of `limit` per window. `None` when there is no reference in `algo` (new-api's
    /// bucket, and the sharded limiter whose rebalancing may refuse early by design).
    pub fn reference(self, limit: u64, times_ms: &[u64]) -> Option<Vec<bool>> {
        let window = WindowQuota::new(limit, WINDOW_MS).expect("valid");
        let rate = RateQuota::new(limit, WINDOW_MS / limit).expect("valid");
        let mut decisions = Vec::with_capacity(times_ms.len());
        match self {
            Subject::NewapiBucket | Subject::Sharded => return None,
            Subject::FixedWindow | Subject::Pipelined | Subject::Email => {
                let mut state = None;
                for &now_ms in times_ms {
                    let (decision, next) = algo::fixed_window::decide(window, state, now_ms, 1);
                    state = if decision.allowed { Some(next) } else { state };
                    decisions.push(decision.allowed);
                }
            }
            Subject::SlidingWindow => {
                let mut state = None;
                for &now_ms in times_ms {
                    let (decision, next) = algo::sliding_window::decide(window, state, now_ms, 1);
                    state = if decision.allowed { Some(next) } else { state };
                    decisions.push(decision.allowed);
                }
            }
            Subject::TokenBucket => {
                let mut state = None;
                for &now_ms in times_ms {
                    let (decision, next) = algo::token_bucket::decide(rate, state, now_ms, 1);
                    state = Some(next);
                    decisions.push(decision.allowed);
                }
            }
            // The hybrid's local parts only deny what the authority would deny at that instant.
            Subject::Gcra | Subject::MultiLimit | Subject::Hybrid => {
                let mut tat = None;
                for &now_ms in times_ms {
                    let (decision, stored) = algo::gcra::decide(rate, tat, now_ms, 1);
                    tat = stored.or(tat);
                    decisions.push(decision.allowed);
                }
            }
            // The stated meaning of new-api's lists and of the reservation limiter: a sliding
            // log of admissions (every admitted request here succeeds).
            Subject::PathA
            | Subject::PathB
            | Subject::SuccessList
            | Subject::ModelRequest
            | Subject::SlidingLog
            | Subject::Reservation => {
                let mut log = Vec::new();
                for &now_ms in times_ms {
                    decisions.push(algo::sliding_log::decide(window, &mut log, now_ms, 1).allowed);
                }
            }
        }
        Some(decisions)
    }

    /// Gateway `gateway`: `requests` requests in turn through this limiter on `node`.
    pub fn task(
        self,
        node: &Node,
        history: &History,
        gateway: usize,
        requests: usize,
        limit: u64,
    ) -> Task {
        let limit_i = i64::try_from(limit).expect("small");
        let window = WindowQuota::new(limit, WINDOW_MS).expect("valid");
        let rate = RateQuota::new(limit, WINDOW_MS / limit).expect("valid");
        let scheme = || KeyScheme::parse("rl:$ns:{$user}", 1).expect("valid");
        let script =
            |algorithm| ScriptLimiter::new(node.client(), scheme(), algorithm, ScriptClock::Redis);
        let list = ListLogQuota::new(limit_i, 60).expect("valid");
        // A token bucket that never binds (N = 1000 per minute), so C's success list decides.
        let model = ModelQuota::new(1_000, limit_i, 1).expect("valid");
        let (n, h, g, r) = (node, history, gateway, requests);
        match self {
            Subject::PathA => plain(
                n,
                h,
                g,
                r,
                ListLogLimiter::newapi_ip(node.client(), list, GatewayClock::UTC),
            ),
            Subject::PathB => plain(
                n,
                h,
                g,
                r,
                ListLogLimiter::newapi_user(node.client(), list, GatewayClock::UTC),
            ),
            Subject::SuccessList => outcome(
                n,
                h,
                g,
                r,
                SuccessLimiter::new(node.client(), model, GatewayClock::UTC),
            ),
            Subject::ModelRequest => outcome(
                n,
                h,
                g,
                r,
                ModelRequestLimiter::new(node.client(), model, GatewayClock::UTC),
            ),
            Subject::NewapiBucket => {
                let bucket = ModelQuota::new(limit_i, 0, 1).expect("valid");
                plain(n, h, g, r, TokenBucketLimiter::new(node.client(), bucket))
            }
            Subject::Email => plain(
                n,
                h,
                g,
                r,
                EmailLimiter::new(node.client(), EmailQuota::new(limit_i, 60).expect("valid")),
            ),
            Subject::FixedWindow => plain(n, h, g, r, script(Algorithm::FixedWindow(window))),
            Subject::SlidingWindow => plain(n, h, g, r, script(Algorithm::SlidingWindow(window))),
            Subject::SlidingLog => plain(n, h, g, r, script(Algorithm::SlidingLog(window))),
            Subject::TokenBucket => plain(n, h, g, r, script(Algorithm::TokenBucket(rate))),
            Subject::Gcra => plain(n, h, g, r, script(Algorithm::Gcra(rate))),
            Subject::Pipelined => plain(
                n,
                h,
                g,
                r,
                PipelinedFixedWindow::new(node.client(), scheme(), window),
            ),
            Subject::MultiLimit => plain(
                n,
                h,
                g,
                r,
                MultiLimiter::new(node.client(), vec![(scheme(), rate)], ScriptClock::Redis),
            ),
            Subject::Reservation => {
                let quota = SuccessQuota::new(limit, WINDOW_MS, WINDOW_MS).expect("valid");
                outcome(
                    n,
                    h,
                    g,
                    r,
                    ReservationLimiter::new(node.client(), scheme(), quota, ScriptClock::Redis),
                )
            }
            Subject::Sharded => {
                let sharded = KeyScheme::parse("rl:$ns:{$user:$shard}", 2).expect("valid");
                let limiter = ShardedLimiter::new(
                    node.client(),
                    sharded,
                    Algorithm::Gcra(rate),
                    ScriptClock::Redis,
                )
                .expect("limit of at least 2");
                plain(n, h, g, r, limiter)
            }
            Subject::Hybrid => {
                let limiter =
                    HybridLimiter::new(script(Algorithm::Gcra(rate)), scheme(), rate, SLACK)
                        .expect("a valid quota");
                plain(n, h, g, r, limiter)
            }
        }
    }
}
