//! Shared plumbing for the property tests in `tests/props`: [`sched`], the step-level
//! scheduler that runs several gateways' limiter code one Redis round trip at a time, and
//! [`subjects`], every Redis-backed limiter as a task with its reference; [`verdict`], the
//! exhaustive checks of `ratelab report`'s verdict table (this library has no proptest
//! dependency, so the `ratelab` binary can use it).

pub mod sched;
pub mod subjects;
pub mod verdict;
