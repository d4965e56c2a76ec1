//! The property tests, in one test binary; each module keeps its failures in
//! `<module>.regressions` beside its file.
//!
//! - `decoder`: the RESP decoder never panics and streaming changes nothing.
//! - `interleavings`: every order of a few gateways' round trips, per limiter (the
//!   scheduler is `proptests::sched`); the shortest races as named tests.
//! - `interleavings_faults`: a restart, lost write, flush or clock step at every point.
//! - `interleavings_random`: many gateways, long runs and clock jumps, drawn by proptest.
//! - `random_differential`: random command sequences, model against real Redis.
//! - `scripts_vs_algo`: every `lua/` script on the model against its `algo` core.
//! - `scripts_real_vs_model`: the same scripts on real Redis against the model.

mod decoder;
mod interleavings;
mod interleavings_faults;
mod interleavings_random;
mod random_differential;
mod scripts_real_vs_model;
mod scripts_vs_algo;
