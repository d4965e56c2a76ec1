//! The in-process GCRA limiter ([`crate::memory::MemoryLimiter`]) as a [`Limiter`].
//!
//! Why a type of its own: the decision itself takes about 100 ns, so anything per decision
//! around it shows. The key is rendered from the request's identity by a [`KeyScheme`] into
//! a buffer this limiter keeps (no allocation, no formatting of the whole identity), the
//! future is a plain `async fn` with no await inside (no boxing, nothing to poll twice), and
//! the time is the request's `now_ms` (no clock read).

use std::sync::Arc;

use super::{Limiter, LimiterError, Request, Usage, Verdict};
use crate::keys::KeyScheme;
use crate::memory::MemoryLimiter;

/// One gateway task's handle on a shared [`MemoryLimiter`]: clone it per task (each clone
/// has its own key buffer), as the Redis limiters are one per task over a shared connection.
#[derive(Clone)]
pub struct MemoryGcra {
    limiter: Arc<MemoryLimiter>,
    scheme: KeyScheme,
    key: Vec<u8>,
}

impl MemoryGcra {
    /// Decides on `limiter` with keys rendered by `scheme` (shard 0).
    pub fn new(limiter: Arc<MemoryLimiter>, scheme: KeyScheme) -> MemoryGcra {
        MemoryGcra {
            limiter,
            scheme,
            key: Vec::with_capacity(64),
        }
    }
}

impl Limiter for MemoryGcra {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        self.scheme
            .render_into(&request.identity, 0, &mut self.key)
            .map_err(|error| {
                LimiterError::Reply(format!("cannot build the limiter key: {error}"))
            })?;
        // The limiter's zero is its empty marker; a request at the epoch counts as 1 ms.
        let now_ms = request.now_ms.max(1);
        Ok(Verdict {
            decision: self.limiter.check(&self.key, now_ms, request.cost),
            usage: Usage::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::RateQuota;
    use crate::keys::Identity;

    /// Goal: the adapter keys by the scheme (two users apart, one user's requests together)
    /// and reuses its buffer across different key lengths. Method: a quota of 2 per second;
    /// the third request of one user is denied while another user is still admitted.
    #[test]
    fn keys_follow_the_scheme() {
        let limiter = Arc::new(MemoryLimiter::with_seed(
            RateQuota::per_window(2, 1_000).expect("a valid quota"),
            7,
        ));
        let scheme = KeyScheme::parse("rl:$ns:{u:$user}", 1).expect("a valid template");
        let mut gcra = MemoryGcra::new(limiter, scheme);
        let request = |user: &str| Request {
            identity: Identity::new("t").with("user", user),
            cost: 1,
            now_ms: 5_000,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let allowed: Vec<bool> = runtime.block_on(async {
            let mut allowed = Vec::new();
            for user in [
                "long-user-name",
                "a",
                "long-user-name",
                "long-user-name",
                "a",
            ] {
                let verdict = gcra.check(&request(user)).await.expect("decides");
                allowed.push(verdict.decision.allowed);
            }
            allowed
        });
        assert_eq!(allowed, [true, true, true, false, true]);
        let missing = Request {
            identity: Identity::new("t"),
            cost: 1,
            now_ms: 5_000,
        };
        assert!(runtime.block_on(gcra.check(&missing)).is_err());
    }
}
