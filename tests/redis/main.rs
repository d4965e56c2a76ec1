//! Fidelity and interoperability against real Redis, in one test binary.
//!
//! - `differential`: the command corpus against golden replies and a live Redis, and a
//!   mutation pass that must not panic the model.
//! - `go_redis`: an application's calls through go-redis (v5, as Debian packages it).
//! - `hostile`: a long or greedy script and too many clients against the served model (BUSY,
//!   SCRIPT KILL, UNKILLABLE, the Lua heap limit, maxclients).
//! - `interop`: redis-cli, the `redis` crate and mini-redis's client against `ratelab serve`.
//! - `real_redis`: the real-Redis backends (standalone and Cluster) and the scripts on them.
//! - `resp3`: clients that speak RESP3 (redis-py 8 with its defaults, the `redis` crate with
//!   `protocol=resp3`, `redis-cli -3`) against `ratelab serve`.

mod differential;
mod go_redis;
mod hostile;
mod interop;
mod real_redis;
mod resp3;
