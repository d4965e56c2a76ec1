//! Shared plumbing for the property tests in `tests/props`: [`sched`], the step-level
//! scheduler that runs several gateways' limiter code one Redis round trip at a time, and
//! [`subjects`], every Redis-backed limiter as a task with its reference; [`verdict`], the
//! exhaustive and random checks of `ratelab report`'s verdict table; [`random`], random
//! schedules drawn and shrunk by proptest (with a pinned seed, so the table repeats).

pub mod random;
pub mod sched;
pub mod subjects;
pub mod verdict;
