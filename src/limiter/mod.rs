//! Limiters: a decision for a request, made against Redis through the [`crate::redis::Redis`]
//! boundary (or in process memory).
//!
//! Two families share one trait:
//! * **legacy** (`legacy`): new-api's limiters reproduced command by command, bugs included, so
//!   that the simulator can show each known race;
//! * **atomic** (`atomic`): the redesign, one script (one round trip) per decision.
//!
//! A denial is a normal answer ([`Verdict`] with `decision.allowed == false`). `Err` means the
//! limiter could not decide (Redis unreachable, a reply it cannot use such as NOSCRIPT in the
//! legacy token bucket); what the gateway does then is its [`FailMode`]. Every verdict carries
//! the round trips and commands the decision cost ([`Usage`]).

pub mod atomic;
pub mod hybrid;
pub mod legacy;
pub mod memory;

use std::fmt;
use std::future::Future;

use crate::algo::Decision;
use crate::keys::Identity;
use crate::redis::{self, Usage};

/// What a gateway does when a limiter cannot decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// Admit the request (every production anchor's default: Envoy, Kong, Stripe).
    Open,
    /// Refuse the request (new-api's behaviour: a 500).
    Closed,
}

/// One request to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who is asking: the fields the key scheme renders (`ip`, `user`, `model`, `group`...).
    pub identity: Identity,
    /// Units the request costs (1 for a plain request).
    pub cost: u64,
    /// The gateway's wall clock in Unix ms. Legacy limiters use it (new-api does); atomic ones
    /// use Redis TIME and ignore it, which is why gateway skew cannot touch them.
    pub now_ms: u64,
}

/// A decision and what it cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed or not, remaining, retry-after, reset.
    pub decision: Decision,
    /// Round trips and commands sent to Redis for this decision.
    pub usage: Usage,
}

/// Why a limiter could not decide.
#[derive(Debug)]
#[non_exhaustive]
pub enum LimiterError {
    /// The Redis backend failed (transport, timeout).
    Redis(redis::Error),
    /// Redis answered something the limiter cannot use: an error reply (NOSCRIPT, WRONGTYPE),
    /// or a value of the wrong shape. new-api answers these with HTTP 500.
    Reply(String),
    /// The request's identity cannot be turned into a key (a missing field, a brace inside a
    /// hash tag).
    Key(crate::keys::KeySchemeError),
}

impl fmt::Display for LimiterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimiterError::Redis(error) => write!(f, "limiter could not reach redis: {error}"),
            LimiterError::Reply(why) => write!(f, "limiter got an unusable reply: {why}"),
            LimiterError::Key(error) => write!(f, "limiter could not build a key: {error}"),
        }
    }
}

impl std::error::Error for LimiterError {}

impl From<crate::keys::KeySchemeError> for LimiterError {
    fn from(error: crate::keys::KeySchemeError) -> LimiterError {
        LimiterError::Key(error)
    }
}

impl From<redis::Error> for LimiterError {
    fn from(error: redis::Error) -> LimiterError {
        LimiterError::Redis(error)
    }
}

/// A rate limiter.
pub trait Limiter: Send {
    /// Decides one request. `Ok` with a denial is a normal answer; `Err` means "could not
    /// decide" and the caller applies its [`FailMode`].
    fn check(
        &mut self,
        request: &Request,
    ) -> impl Future<Output = Result<Verdict, LimiterError>> + Send;
}

/// A limiter that counts outcomes (new-api's success limit): admission returns a handle, and
/// the request's completion reports success or failure.
pub trait OutcomeLimiter: Send {
    /// What admission hands back, to be passed to [`OutcomeLimiter::complete`].
    type Ticket: Send;

    /// Decides admission. An allowed verdict comes with a ticket.
    fn admit(
        &mut self,
        request: &Request,
    ) -> impl Future<Output = Result<(Verdict, Option<Self::Ticket>), LimiterError>> + Send;

    /// Reports how an admitted request ended, at the gateway time `now_ms`. Returns what the
    /// report cost in Redis round trips and commands.
    fn complete(
        &mut self,
        ticket: Self::Ticket,
        succeeded: bool,
        now_ms: u64,
    ) -> impl Future<Output = Result<Usage, LimiterError>> + Send;
}
