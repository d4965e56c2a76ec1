//! The run's event log: everything the checker looks at, stamped with true simulated time.

use serde::{Deserialize, Serialize};

/// How a gateway answered one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The limiter admitted it.
    Allowed,
    /// The limiter denied it (429).
    Denied,
    /// The limiter could not decide and the gateway fails open: admitted, outside the bound.
    FailOpen,
    /// The limiter could not decide and the gateway fails closed: a 5xx.
    Error,
}

/// Why a limiter could not decide, by class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Redis was not reachable: dial, read or pool timeout, a closed connection.
    Transport,
    /// Redis answered something the limiter cannot use (NOSCRIPT, a missing entry).
    Reply,
    /// The client could not parse the reply (a protocol desync): while Redis is healthy
    /// this is a bug in the client or the server, never a transport hiccup.
    Protocol,
    /// The request could not be turned into a key.
    Key,
}

/// One thing that happened, at `at_ms` simulated ms from the start (true time, not any
/// host's skewed clock).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A request arrived at a gateway.
    Request {
        /// Unique per run: `gateway << 32 | sequence`.
        id: u64,
        /// The gateway's index.
        gateway: u32,
        /// The logical key (the user or IP the limit is for): `k3`, or with a `load.mix`
        /// `ip:k3`, `user:k3`, `model:k3` (the checker bounds each name on its own).
        key: String,
        /// Arrival time.
        at_ms: u64,
        /// Units it costs.
        cost: u64,
    },
    /// The limiter's answer (or the fail mode's, when it could not decide).
    Decision {
        /// The request.
        id: u64,
        /// When the gateway knew.
        at_ms: u64,
        /// What it did.
        outcome: Outcome,
        /// From arrival to decision, ms.
        latency_ms: u64,
        /// Redis round trips this decision made (0 when unknown, after an error).
        round_trips: u64,
        /// Redis commands this decision sent.
        commands: u64,
        /// Time spent waiting for pool connections, ms.
        pool_wait_ms: u64,
        /// Why it could not decide, for `FailOpen` and `Error`.
        error: Option<String>,
        /// The class of that error.
        error_class: Option<ErrorClass>,
    },
    /// An admitted request's upstream call ended (and the outcome limiter was told).
    Completion {
        /// The request.
        id: u64,
        /// When the upstream answered.
        at_ms: u64,
        /// Status below 400.
        success: bool,
        /// When the success was recorded in Redis (the outcome limiter's reply came back);
        /// `None` when nothing was recorded or the record failed.
        recorded_at_ms: Option<u64>,
    },
    /// A request died without a decision because its gateway process restarted (a
    /// `gateway_restart` fault): the only lawful way for a request to end undecided.
    Aborted {
        /// The request.
        id: u64,
        /// When the process died.
        at_ms: u64,
    },
    /// A scheduled fault fired (or ended).
    Fault {
        /// Its index in the scenario's list.
        index: usize,
        /// When.
        at_ms: u64,
        /// What happened, in words.
        what: String,
        /// Whether the harness saw it take effect (a restart restarted, a flush removed
        /// keys, a clock moved); `None` when only the log can tell (partitions, holds,
        /// latency: the checker looks at the requests they caught).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        took_effect: Option<bool>,
    },
    /// At the end, per host whose clock drifts (`drift_ppm`): how far drift moved its clock
    /// over the run, as the harness applied it. The coverage verdict
    /// `clock_drift_took_effect` reads it: a drift that moved no clock proves nothing.
    ClockDrift {
        /// When it was taken.
        at_ms: u64,
        /// `redis-<i>` or `gateway-<i>`.
        host: String,
        /// The drift applied in all, ms (negative: the clock fell behind).
        drift_ms: i64,
    },
    /// Cluster runs, at the end: the commands the gateways sent to each node and to each
    /// slot (a command counts once per node it reached, so a redirect counts twice).
    Load {
        /// When it was taken.
        at_ms: u64,
        /// Commands per node, in host order.
        nodes: Vec<(String, u64)>,
        /// Commands per slot, for the slots that saw any, in slot order.
        slots: Vec<(u16, u64)>,
        /// MOVED redirects the gateways followed.
        redirects: u64,
    },
    /// Redis at the end of the run: every key and its remaining TTL.
    Snapshot {
        /// When it was taken.
        at_ms: u64,
        /// Keys in byte order with their PTTL (-1: no TTL).
        keys: Vec<(String, i64)>,
        /// Token bucket levels: (key, field, stored value) for every hash with a `tokens`
        /// (new-api's bucket) or `credit` (the atomic bucket, in ms) field, in key order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        levels: Vec<(String, String, String)>,
    },
}

impl Event {
    /// The event's time.
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::Request { at_ms, .. }
            | Event::Decision { at_ms, .. }
            | Event::Completion { at_ms, .. }
            | Event::Aborted { at_ms, .. }
            | Event::Fault { at_ms, .. }
            | Event::ClockDrift { at_ms, .. }
            | Event::Load { at_ms, .. }
            | Event::Snapshot { at_ms, .. } => *at_ms,
        }
    }

    /// The request this event is about, if any.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Event::Request { id, .. }
            | Event::Decision { id, .. }
            | Event::Completion { id, .. }
            | Event::Aborted { id, .. } => Some(*id),
            Event::Fault { .. }
            | Event::ClockDrift { .. }
            | Event::Load { .. }
            | Event::Snapshot { .. } => None,
        }
    }
}

/// FNV-1a over the log's JSON: one number that two runs of one seed must share.
pub fn log_hash(events: &[Event]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for event in events {
        let bytes = serde_json::to_vec(event).expect("events always serialise");
        for byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
