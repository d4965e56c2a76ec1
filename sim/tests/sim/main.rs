//! The simulation suite: one test binary (one link of turmoil, mlua and the model instead of
//! one per file). Each module is one theme; `common` holds what they share.
//!
//! - `scenarios`: named races R1/R3/R6 and NOSCRIPT, the rolling upgrade, determinism, bad input.
//! - `races`: the remaining named races, each found with the legacy limiter and fixed by its
//!   replacement; shrinking.
//! - `topology`: replicas and failover, cluster routing and hot keys, the performance scenario.
//! - `sweeps`: the report's sweep files parse, and the figures' data shows their facts.
//! - `faults`: link latency distributions, clock drift, pool exhaustion, gateway restarts, the
//!   swarm's coverage.
//! - `judge`: the checker against wrong limiters (one too many, L + 1 in a window, a panic, a
//!   protocol desync), quiet runs and refused margins; the sensitivity of every scenario.
//! - `persistence`: Redis restarts with and without persistence (AOF always, everysec, RDB):
//!   the atomic GCRA's over-admission per mode, the checker's allowance per mode (enough,
//!   necessary, tight), EVALSHA's NOSCRIPT storm after a restart that kept the data.
//! - `limiters`: the kinds added after the first eleven (sliding window counter, pipelined
//!   fixed window, multi-limit, sharded GCRA, hybrid): bounds, over-admission caught, metrics.

mod common;
mod faults;
mod judge;
mod limiters;
mod persistence;
mod races;
mod scenarios;
mod sweeps;
mod topology;
