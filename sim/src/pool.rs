//! A go-redis-like connection pool over turmoil TCP, as a [`Redis`] backend.
//!
//! What it copies from go-redis v8 (`internal/pool` and `baseClient._process`): at most
//! `size` connections; a command waits up to `pool_timeout` for one and fails with a pool
//! timeout, which is *not* retried; connections are dialled on demand (dial timeout); each
//! attempt has a read timeout; a transport error or timeout throws the connection away and
//! retries up to `retries` times with an exponential backoff (so a write Redis did execute
//! may run twice: race R8). Time is tokio's, which turmoil drives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratelab::model::Reply;
use ratelab::redis::{Cmd, Error, Redis};
use ratelab::resp::backend::RespRedis;
use tokio::sync::Semaphore;
use turmoil::net::TcpStream;

use crate::scenario;

/// The port every simulated Redis node listens on.
pub const REDIS_PORT: u16 = 6379;

/// The host a pool dials, shared so that a failover can point every gateway elsewhere.
pub type Target = Arc<Mutex<String>>;

/// One gateway's pool, shared by all its requests.
pub struct Pool {
    config: scenario::Pool,
    host: Target,
    permits: Semaphore,
    /// Connections not in use, with the host each one reaches. A `Vec` used as a stack: the
    /// most recently returned first, as go-redis's idle list.
    idle: Mutex<Vec<(String, RespRedis<TcpStream>)>>,
}

impl Pool {
    /// A pool of connections to `host` on [`REDIS_PORT`].
    pub fn new(config: scenario::Pool, host: &str) -> Arc<Pool> {
        Pool::following(config, Arc::new(Mutex::new(host.to_owned())))
    }

    /// A pool of connections to whichever host `target` names when a connection is dialled;
    /// idle connections to another host are closed rather than reused.
    pub fn following(config: scenario::Pool, host: Target) -> Arc<Pool> {
        let size = usize::try_from(config.size).expect("validated: at most 10000");
        Arc::new(Pool {
            config,
            host,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A handle for one request: every command it sends checks a connection out of the pool;
    /// the time spent waiting for one is added to the handle's counter.
    pub fn handle(self: &Arc<Pool>) -> PooledRedis {
        self.handle_counting(Arc::new(AtomicU64::new(0)))
    }

    /// A handle that adds its pool waits to `pool_wait_ms` (a cluster request shares one
    /// counter over the handles of every node it reaches).
    pub fn handle_counting(self: &Arc<Pool>, pool_wait_ms: Arc<AtomicU64>) -> PooledRedis {
        PooledRedis {
            pool: Arc::clone(self),
            pool_wait_ms,
        }
    }

    fn current_host(&self) -> String {
        self.host
            .lock()
            .expect("the target lock is never held across a panic")
            .clone()
    }

    /// The most recent idle connection to `host`; idle connections to any other host (the
    /// primary before a failover) are dropped on the way.
    fn take_idle(&self, host: &str) -> Option<RespRedis<TcpStream>> {
        let mut idle = self
            .idle
            .lock()
            .expect("the idle list lock is never held across a panic");
        while let Some((reaches, connection)) = idle.pop() {
            if reaches == host {
                return Some(connection);
            }
        }
        None
    }

    fn put_idle(&self, host: String, connection: RespRedis<TcpStream>) {
        self.idle
            .lock()
            .expect("the idle list lock is never held across a panic")
            .push((host, connection));
    }

    /// One attempt: a connection (pooled or dialled), one round trip.
    async fn attempt(&self, cmds: &[Cmd], pool_wait_ms: &AtomicU64) -> Result<Vec<Reply>, Attempt> {
        let waiting_since = tokio::time::Instant::now();
        let pool_timeout = Duration::from_millis(self.config.pool_timeout_ms);
        let permit = match tokio::time::timeout(pool_timeout, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it as a pool timeout all the same.
            Ok(Err(_)) | Err(_) => {
                add_ms(pool_wait_ms, waiting_since.elapsed());
                return Err(Attempt::PoolTimeout);
            }
        };
        add_ms(pool_wait_ms, waiting_since.elapsed());
        let host = self.current_host();
        let mut connection = match self.take_idle(&host) {
            Some(connection) => connection,
            None => {
                let dial = TcpStream::connect((host.as_str(), REDIS_PORT));
                let dial_timeout = Duration::from_millis(self.config.dial_timeout_ms);
                match tokio::time::timeout(dial_timeout, dial).await {
                    Ok(Ok(stream)) => RespRedis::with_read_timeout(
                        stream,
                        Duration::from_millis(self.config.read_timeout_ms),
                    ),
                    Ok(Err(error)) => return Err(Attempt::Failed(Error::Io(error))),
                    Err(_) => return Err(Attempt::Failed(Error::Timeout)),
                }
            }
        };
        let result = connection.pipeline(cmds.to_vec()).await;
        if result.is_ok() {
            self.put_idle(host, connection);
        }
        drop(permit);
        result.map_err(Attempt::Failed)
    }

    async fn call(&self, cmds: Vec<Cmd>, pool_wait_ms: &AtomicU64) -> Result<Vec<Reply>, Error> {
        let mut retry = 0;
        loop {
            match self.attempt(&cmds, pool_wait_ms).await {
                Ok(replies) => return Ok(replies),
                Err(Attempt::PoolTimeout) => return Err(Error::Timeout),
                Err(Attempt::Failed(error)) => {
                    if retry >= self.config.retries {
                        return Err(error);
                    }
                    let backoff = Duration::from_millis(self.config.backoff_ms(retry));
                    tokio::time::sleep(backoff).await;
                    retry += 1;
                }
            }
        }
    }
}

fn add_ms(counter: &AtomicU64, elapsed: Duration) {
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    counter.fetch_add(ms, Ordering::Relaxed);
}

/// Why one attempt failed.
enum Attempt {
    /// No connection within the pool timeout (go-redis does not retry this).
    PoolTimeout,
    /// Dial, write or read failed; retried.
    Failed(Error),
}

/// One request's view of a gateway's [`Pool`].
pub struct PooledRedis {
    pool: Arc<Pool>,
    pool_wait_ms: Arc<AtomicU64>,
}

impl PooledRedis {
    /// The counter of ms this handle has waited for connections (shared: read it after the
    /// limiter that owns the handle is done).
    pub fn pool_wait_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.pool_wait_ms)
    }
}

impl Redis for PooledRedis {
    async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        let mut replies = self.pool.call(vec![cmd], &self.pool_wait_ms).await?;
        replies
            .pop()
            .ok_or_else(|| Error::Protocol("no reply to a command".to_owned()))
    }

    async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
        self.pool.call(cmds, &self.pool_wait_ms).await
    }
}
