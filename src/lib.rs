//! ratelab: a deterministic simulator and verification suite for Redis-backed rate limiters.
//!
//! The library holds everything that is not the simulation harness itself. Its parts, from the
//! bottom up:
//!
//! * [`model`]: an in-process Redis 7.0. A synchronous state machine: every call takes the
//!   current time, nothing reads a clock, so the same code runs in a real server
//!   (`ratelab serve`), under turmoil, and inside property tests. It runs the real `lua/`
//!   files in a Lua 5.1 host.
//! * [`resp`]: the RESP2 codec, a server loop that serves a model over any
//!   `AsyncRead + AsyncWrite` stream, and a client over any stream.
//! * [`redis_server`]: a real `redis-server` for differential tests and benchmarks (started
//!   from PATH or named by `REDIS_URL`), with a small blocking client.
//!
//! * [`algo`]: the pure decision cores (fixed window, sliding log, sliding window counter,
//!   token bucket, GCRA), each with its admission bound. No IO, no clock.
//! * [`redis`]: the IO boundary: the `Redis` trait, the closed `Cmd` surface, the `Script`s in
//!   `lua/`, metering of round trips, and the in-process backend.
//! * [`real`] (feature `real-redis`, on by default): real Redis, standalone or Cluster,
//!   through the `redis` crate, with go-redis-like pooling, timeouts and retries.
//! * [`limiter`]: the `Limiter` trait, requests, verdicts, fail modes; the legacy and atomic
//!   limiter families.
//! * [`keys`]: key schemes (templates with namespaces, hash tags and shards) and cluster slots.
//! * [`memory`]: a keyed in-memory GCRA limiter (sharded, one atomic per key), model-checked
//!   with loom through the `sync` switch.
//!
//! Later layers (the IO boundary, the limiters, key schemes) arrive with the limiters issue;
//! `ARCHITECTURE.md` at the repository root is the map.

pub mod algo;
pub mod keys;
#[cfg(feature = "model")]
pub mod limiter;
pub mod memory;
#[cfg(feature = "model")]
pub mod model;
pub mod newapi_memory;
#[cfg(feature = "real-redis")]
pub mod real;
#[cfg(feature = "model")]
pub mod redis;
#[cfg(feature = "net")]
pub mod redis_server;
#[cfg(feature = "net")]
pub mod resp;
mod sync;
