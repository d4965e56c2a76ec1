//! [`RealRedis`]: the [`Redis`] trait over real Redis (standalone or Cluster) through the
//! `redis` crate, configured like the gateway under test configures its client.
//!
//! Why the connection strategy is a setting: the latency a limiter adds depends as much on
//! the client as on Redis. new-api runs go-redis v8 with a pool of 10 dedicated connections;
//! when more than 10 requests are in flight the rest queue for a connection (up to the pool
//! timeout), and that queueing is a first-class axis of the latency plots. The `redis` crate's
//! natural shape is the opposite, one multiplexed connection that pipelines every concurrent
//! request. Both are here: [`Strategy::Multiplexed`] and [`Strategy::Pool`] (a small bounded
//! pool written for this module, with go-redis's wait and timeout semantics and its wait
//! statistics).
//!
//! Replies are converted exactly (see [`reply_from_value`]); a Redis error reply is a
//! [`Reply::Error`], never an [`Error`]. Transport failures (IO, a closed connection, a
//! response timeout) are retried with exponential backoff as go-redis does; a pool timeout
//! and a protocol error are not. Like go-redis's, a retry may repeat a write that Redis did
//! apply before the reply was lost (an `INCR` counted twice): that is the behaviour under
//! study, not a bug to hide.
//!
//! The connection speaks RESP2 (the crate's default): do not put `protocol=resp3` in the URL.
//! In a Cluster the crate's own redirection retries (3, like go-redis's `MaxRedirects`) sit
//! under ours, each bounded by the response timeout.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, ServerError, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::model::Reply;
use crate::redis::{Cmd, Error, Redis};

/// The largest pool a configuration may ask for: a bound on sockets, not a tuning hint.
pub const POOL_SIZE_MAX: usize = 4096;

/// The largest number of retries a configuration may ask for, so that a call stays bounded.
pub const RETRIES_MAX: u32 = 16;

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One server (`redis://host:port[/db]`).
    Standalone {
        /// The server's URL.
        url: String,
    },
    /// A Redis Cluster, discovered from its seed nodes; the `redis` crate keeps the slot map
    /// and follows MOVED and ASK redirections itself.
    Cluster {
        /// A few nodes' URLs; any one that answers is enough.
        seed_urls: Vec<String>,
    },
}

/// How concurrent calls share connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One `redis::aio::MultiplexedConnection` (or cluster connection) shared by every clone
    /// of the handle: concurrent requests are pipelined on it and nobody waits for a socket.
    Multiplexed,
    /// Dedicated connections, one held for the whole call, as go-redis's pool does. A call
    /// that finds all `size` connections busy waits up to `wait_timeout` for one, then fails
    /// with [`Error::Timeout`]. One connection is dialed at connect (to fail fast); the
    /// others lazily, when a call finds no idle one, up to `size`.
    Pool {
        /// How many connections may exist at once (1..=[`POOL_SIZE_MAX`]).
        size: usize,
        /// How long a call may wait for a free connection (go-redis `PoolTimeout`).
        wait_timeout: Duration,
    },
}

/// Retries of transport failures (IO, closed connection, response timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retries {
    /// Extra attempts after the first (0 = no retry; at most [`RETRIES_MAX`]).
    pub max_retries: u32,
    /// The wait before the first retry; each later wait doubles it.
    pub backoff_min: Duration,
    /// The cap on any one wait.
    pub backoff_max: Duration,
}

impl Retries {
    /// No retries at all.
    pub fn none() -> Retries {
        Retries {
            max_retries: 0,
            backoff_min: Duration::ZERO,
            backoff_max: Duration::ZERO,
        }
    }

    /// The wait before retry number `retry` (1 for the first retry):
    /// `min(backoff_min * 2^(retry - 1), backoff_max)`.
    ///
    /// go-redis draws a random wait below that envelope (jitter); ours is the envelope
    /// itself, so that two runs of a benchmark wait the same.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.backoff_min
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }
}

/// Everything [`RealRedis::connect`] needs. No `Default`: every use starts from a named
/// preset, so a benchmark states which client it imitates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealConfig {
    /// Standalone or Cluster, with the URL(s).
    pub topology: Topology,
    /// Shared multiplexed connection or a pool of dedicated ones.
    pub strategy: Strategy,
    /// How long opening one connection may take (go-redis `DialTimeout`).
    pub connect_timeout: Duration,
    /// How long one attempt may wait for its reply or replies once it has a connection
    /// (go-redis `ReadTimeout`; the write is bounded by the same deadline).
    pub response_timeout: Duration,
    /// Retries of transport failures.
    pub retries: Retries,
}

impl RealConfig {
    /// The client new-api runs with: go-redis v8.11.5 defaults with the pool size new-api
    /// sets. Pool of 10 (`REDIS_POOL_SIZE` default), pool timeout 4 s, dial 5 s, read and
    /// write 3 s, 3 retries with backoff from 8 ms to 512 ms. Source:
    /// `shared/reference/newapi-limiters.md` section 5 (new-api `common/redis.go`
    /// `InitRedisClient`, and go-redis v8 `options.go`), and section C.8 of
    /// `shared/reference/redis-semantics.md` for the pool's wait semantics.
    pub fn go_redis_v8_newapi(url: &str) -> RealConfig {
        RealConfig {
            topology: Topology::Standalone {
                url: url.to_owned(),
            },
            strategy: Strategy::Pool {
                size: 10,
                wait_timeout: Duration::from_secs(4),
            },
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(3),
            retries: Retries {
                max_retries: 3,
                backoff_min: Duration::from_millis(8),
                backoff_max: Duration::from_millis(512),
            },
        }
    }

    /// One multiplexed connection to a standalone server, with the same timeouts and
    /// retries as [`RealConfig::go_redis_v8_newapi`], so the two differ only in strategy.
    pub fn multiplexed(url: &str) -> RealConfig {
        RealConfig {
            strategy: Strategy::Multiplexed,
            ..RealConfig::go_redis_v8_newapi(url)
        }
    }

    /// A Redis Cluster found from `seed_urls`, multiplexed, with the same timeouts and
    /// retries as [`RealConfig::go_redis_v8_newapi`].
    pub fn cluster(seed_urls: &[&str]) -> RealConfig {
        RealConfig {
            topology: Topology::Cluster {
                seed_urls: seed_urls.iter().map(|url| (*url).to_owned()).collect(),
            },
            ..RealConfig::multiplexed("")
        }
    }

    /// The same configuration with another strategy.
    pub fn with_strategy(self, strategy: Strategy) -> RealConfig {
        RealConfig { strategy, ..self }
    }

    /// Refuses what would make a call unbounded or meaningless.
    fn validate(&self) -> Result<(), Error> {
        let invalid =
            |why: String| Err(Error::Io(io::Error::new(io::ErrorKind::InvalidInput, why)));
        if let Strategy::Pool { size, .. } = self.strategy
            && !(1..=POOL_SIZE_MAX).contains(&size)
        {
            return invalid(format!("pool size {size} is not in 1..={POOL_SIZE_MAX}"));
        }
        if self.retries.max_retries > RETRIES_MAX {
            return invalid(format!(
                "{} retries is more than {RETRIES_MAX}",
                self.retries.max_retries
            ));
        }
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return invalid("timeouts must be positive".to_owned());
        }
        if let Topology::Cluster { seed_urls } = &self.topology
            && seed_urls.is_empty()
        {
            return invalid("a cluster needs at least one seed URL".to_owned());
        }
        Ok(())
    }
}

/// The pool's counters since the handle was connected, as go-redis's `PoolStats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections handed out (one per attempt, so a retried call counts more than once).
    pub acquired: u64,
    /// Acquisitions that reused an idle connection.
    pub hits: u64,
    /// Connections dialed (acquisitions that found no idle one, plus the first at connect).
    pub dials: u64,
    /// Acquisitions that found every connection busy and had to wait.
    pub waits: u64,
    /// Acquisitions that waited `wait_timeout` in vain.
    pub timeouts: u64,
    /// Connections thrown away after a transport failure.
    pub discarded: u64,
    /// Total time spent waiting for a connection, in microseconds.
    pub wait_total_us: u64,
    /// The longest single wait, in microseconds.
    pub wait_max_us: u64,
}

/// Atomic twins of [`PoolStats`]'s fields, updated without a lock.
#[derive(Default)]
struct PoolCounters {
    acquired: AtomicU64,
    hits: AtomicU64,
    dials: AtomicU64,
    waits: AtomicU64,
    timeouts: AtomicU64,
    discarded: AtomicU64,
    wait_total_us: AtomicU64,
    wait_max_us: AtomicU64,
}

impl PoolCounters {
    fn snapshot(&self) -> PoolStats {
        PoolStats {
            acquired: self.acquired.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            dials: self.dials.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
            wait_total_us: self.wait_total_us.load(Ordering::Relaxed),
            wait_max_us: self.wait_max_us.load(Ordering::Relaxed),
        }
    }

    fn record_wait(&self, waited: Duration) {
        let waited_us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.wait_total_us.fetch_add(waited_us, Ordering::Relaxed);
        self.wait_max_us.fetch_max(waited_us, Ordering::Relaxed);
    }
}

/// One connection of either topology. Both kinds are cheap handles (clones share the socket).
#[derive(Clone)]
enum Conn {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn command(&mut self, cmd: &redis::Cmd) -> Result<Value, RedisError> {
        match self {
            Conn::Standalone(connection) => connection.req_packed_command(cmd).await,
            Conn::Cluster(connection) => connection.req_packed_command(cmd).await,
        }
    }

    async fn pipeline(
        &mut self,
        pipeline: &redis::Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        match self {
            Conn::Standalone(connection) => {
                connection.req_packed_commands(pipeline, 0, count).await
            }
            Conn::Cluster(connection) => connection.req_packed_commands(pipeline, 0, count).await,
        }
    }
}

/// Opens connections.
enum Dialer {
    Standalone(redis::Client),
    /// Boxed: it is twice the size of the standalone client and built once per handle.
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// Turns a client-library setup error into ours (a bad URL, mostly).
fn setup_error(error: RedisError) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        error.to_string(),
    ))
}

impl Dialer {
    fn new(config: &RealConfig) -> Result<Dialer, Error> {
        match &config.topology {
            Topology::Standalone { url } => redis::Client::open(url.as_str())
                .map(Dialer::Standalone)
                .map_err(setup_error),
            Topology::Cluster { seed_urls } => {
                let backoff_ms =
                    |wait: Duration| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                redis::cluster::ClusterClientBuilder::new(seed_urls.iter().map(String::as_str))
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.response_timeout)
                    // Redirections (MOVED, ASK, TRYAGAIN) are the crate's to follow; go-redis's
                    // cluster client allows 3 (`MaxRedirects`).
                    .retries(3)
                    .min_retry_wait(backoff_ms(config.retries.backoff_min))
                    .max_retry_wait(backoff_ms(config.retries.backoff_max))
                    .build()
                    .map(|client| Dialer::Cluster(Box::new(client)))
                    .map_err(setup_error)
            }
        }
    }

    /// Opens one connection, bounded by the connect timeout (a cluster connection also
    /// fetches the slot map, which the same bound covers).
    async fn dial(&self, config: &RealConfig) -> Result<Conn, Error> {
        let opening = async {
            match self {
                Dialer::Standalone(client) => {
                    let settings = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(config.connect_timeout))
                        .set_response_timeout(Some(config.response_timeout));
                    client
                        .get_multiplexed_async_connection_with_config(&settings)
                        .await
                        .map(Conn::Standalone)
                }
                Dialer::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
            }
        };
        match tokio::time::timeout(config.connect_timeout, opening).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(transport_error(&error)),
            Err(_elapsed) => Err(Error::Timeout),
        }
    }
}

/// The one connection of [`Strategy::Multiplexed`], redialed after it breaks.
struct SharedConnection {
    /// The connection and its generation number; `None` until dialed or after a break.
    /// A tokio mutex because a dial happens while it is held: concurrent callers wait for
    /// that one dial instead of each opening a socket.
    slot: tokio::sync::Mutex<Option<(u64, Conn)>>,
    /// The generation the next dial gets.
    next_generation: AtomicU64,
}

/// The bounded pool of [`Strategy::Pool`].
struct Pool {
    /// One permit per connection that may exist; a caller holds one for its whole attempt.
    permits: Semaphore,
    /// Connections not in use. A std mutex: it is never held across an await.
    idle: Mutex<Vec<Conn>>,
    wait_timeout: Duration,
    counters: PoolCounters,
}

enum Connections {
    Shared(SharedConnection),
    Pool(Pool),
}

struct Shared {
    config: RealConfig,
    dialer: Dialer,
    connections: Connections,
}

/// Real Redis as a [`Redis`] backend. A cheap handle: clones share the connection (or the
/// pool), so each concurrent task holds its own clone.
#[derive(Clone)]
pub struct RealRedis {
    shared: Arc<Shared>,
}

/// What a failed attempt tells the retry loop.
struct Failure {
    error: Error,
    /// Whether the failure was in the transport (worth retrying); a pool timeout is not.
    retryable: bool,
}

impl Failure {
    fn transport(error: Error) -> Failure {
        let retryable = matches!(error, Error::Io(_) | Error::Closed | Error::Timeout);
        Failure { error, retryable }
    }
}

/// Maps a client-library failure that is not a Redis error reply onto [`Error`].
fn transport_error(error: &RedisError) -> Error {
    if error.is_timeout() {
        Error::Timeout
    } else if error.is_connection_refusal() {
        // Checked before "dropped", which also counts a refused connection.
        Error::Io(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            error.to_string(),
        ))
    } else if error.is_connection_dropped() {
        Error::Closed
    } else if error.is_io_error() {
        Error::Io(io::Error::other(error.to_string()))
    } else {
        Error::Protocol(error.to_string())
    }
}

/// The whole error line of a Redis error reply: `"CODE detail"`, as the server sent it.
fn error_line(error: &ServerError) -> String {
    match error.details() {
        Some(detail) => format!("{} {detail}", error.code()),
        None => error.code().to_owned(),
    }
}

/// Converts a `redis` crate value into our [`Reply`] exactly as the server sent it.
///
/// RESP2 (which is all we speak: the connection never sends `HELLO 3`) maps one to one:
/// `ServerError` is `Reply::Error("CODE detail")`, `Okay` is `Status("OK")`, `SimpleString`
/// is `Status`, `Int`, `BulkString` and `Array` are themselves. One loss: the crate decodes
/// both RESP2 nulls, `$-1` and `*-1`, to `Nil`, so a null array arrives as `Reply::Nil`,
/// never `Reply::NilArray` (no `Cmd` can produce a null array). The RESP3 types cannot
/// arrive; should they, they become their nearest RESP2 shape (a map flattens into an array,
/// a boolean is 0 or 1, a double or big number is a bulk string).
pub fn reply_from_value(value: Value) -> Reply {
    match value {
        Value::Nil => Reply::Nil,
        Value::Int(number) => Reply::Integer(number),
        Value::BulkString(bytes) => Reply::Bulk(bytes),
        Value::Array(items) | Value::Set(items) => {
            Reply::Array(items.into_iter().map(reply_from_value).collect())
        }
        Value::SimpleString(text) => Reply::Status(text),
        Value::Okay => Reply::Status("OK".to_owned()),
        Value::ServerError(error) => Reply::Error(error_line(&error)),
        Value::Map(pairs) => Reply::Array(
            pairs
                .into_iter()
                .flat_map(|(key, value)| [reply_from_value(key), reply_from_value(value)])
                .collect(),
        ),
        Value::Attribute { data, .. } => reply_from_value(*data),
        Value::Double(number) => Reply::Bulk(number.to_string().into_bytes()),
        Value::Boolean(truth) => Reply::Integer(i64::from(truth)),
        Value::VerbatimString { text, .. } => Reply::Bulk(text.into_bytes()),
        // Without the crate's `num-bigint` feature (we do not enable it) these are the digits.
        Value::BigNumber(digits) => Reply::Bulk(digits),
        Value::Push { data, .. } => Reply::Array(data.into_iter().map(reply_from_value).collect()),
        // `Value` is non-exhaustive; a future kind is reported, not guessed at.
        other => Reply::Error(format!("ERR ratelab cannot represent reply {other:?}")),
    }
}

/// A [`Cmd`] as a `redis` crate command (same arguments, so the same routing in a cluster).
fn library_command(cmd: &Cmd) -> redis::Cmd {
    let mut command = redis::Cmd::new();
    for arg in cmd.argv() {
        command.arg(arg);
    }
    command
}

/// Splits a pipeline into groups that each go to one cluster slot, keeping every command's
/// position: `(slot or None for keyless, [(position, cmd)])`, in order of first appearance.
/// Keyless commands go together in their own group, which the crate sends to any node.
fn group_by_slot(cmds: &[Cmd]) -> Vec<(Option<u16>, Vec<usize>)> {
    let mut groups: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
    for (position, cmd) in cmds.iter().enumerate() {
        let slot = cmd.first_key().map(crate::keys::key_slot);
        match groups
            .iter_mut()
            .find(|(group_slot, _)| *group_slot == slot)
        {
            Some((_, positions)) => positions.push(position),
            None => groups.push((slot, vec![position])),
        }
    }
    groups
}

impl RealRedis {
    /// Checks the configuration and opens the first connection, so that a wrong URL or an
    /// unreachable server fails here (new-api likewise PINGs at boot and exits on failure).
    pub async fn connect(config: RealConfig) -> Result<RealRedis, Error> {
        config.validate()?;
        let dialer = Dialer::new(&config)?;
        let first = dialer.dial(&config).await?;
        let connections = match config.strategy {
            Strategy::Multiplexed => Connections::Shared(SharedConnection {
                slot: tokio::sync::Mutex::new(Some((0, first))),
                next_generation: AtomicU64::new(1),
            }),
            Strategy::Pool { size, wait_timeout } => {
                let counters = PoolCounters::default();
                counters.dials.fetch_add(1, Ordering::Relaxed);
                Connections::Pool(Pool {
                    permits: Semaphore::new(size),
                    idle: Mutex::new(vec![first]),
                    wait_timeout,
                    counters,
                })
            }
        };
        Ok(RealRedis {
            shared: Arc::new(Shared {
                config,
                dialer,
                connections,
            }),
        })
    }

    /// The configuration this handle was connected with.
    pub fn config(&self) -> &RealConfig {
        &self.shared.config
    }

    /// The pool's counters (wait count and time, timeouts, dials); `None` for
    /// [`Strategy::Multiplexed`], where nobody waits for a connection.
    pub fn pool_stats(&self) -> Option<PoolStats> {
        match &self.shared.connections {
            Connections::Pool(pool) => Some(pool.counters.snapshot()),
            Connections::Shared(_) => None,
        }
    }

    /// Runs the commands (one or a pipeline), retrying transport failures with backoff.
    async fn call(&self, cmds: &[Cmd]) -> Result<Vec<Reply>, Error> {
        let retries = self.shared.config.retries;
        let mut retry = 0;
        loop {
            match self.attempt(cmds).await {
                Ok(replies) => return Ok(replies),
                Err(failure) if failure.retryable && retry < retries.max_retries => {
                    retry += 1;
                    tokio::time::sleep(retries.backoff(retry)).await;
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// One attempt: take a connection, send, read, give the connection back (or drop it
    /// when the attempt broke it).
    async fn attempt(&self, cmds: &[Cmd]) -> Result<Vec<Reply>, Failure> {
        let shared = &*self.shared;
        match &shared.connections {
            Connections::Shared(connection) => {
                let (generation, conn) = self.shared_connection(connection).await?;
                let outcome = self.send(conn, cmds).await;
                if let Err(failure) = &outcome
                    && matches!(failure.error, Error::Io(_) | Error::Closed)
                {
                    // A timeout leaves the multiplexed connection usable (the crate drops
                    // the late reply); a broken socket does not, so the next call redials.
                    let mut slot = connection.slot.lock().await;
                    if slot
                        .as_ref()
                        .is_some_and(|(current, _)| *current == generation)
                    {
                        *slot = None;
                    }
                }
                outcome
            }
            Connections::Pool(pool) => {
                let waiting_since = Instant::now();
                let permit = match pool.permits.try_acquire() {
                    Ok(permit) => permit,
                    Err(_) => {
                        let waited =
                            tokio::time::timeout(pool.wait_timeout, pool.permits.acquire()).await;
                        pool.counters.record_wait(waiting_since.elapsed());
                        match waited {
                            Ok(Ok(permit)) => permit,
                            // The semaphore is never closed; treat it as a closed client.
                            Ok(Err(_closed)) => return Err(Failure::transport(Error::Closed)),
                            Err(_elapsed) => {
                                pool.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                                return Err(Failure {
                                    error: Error::Timeout,
                                    retryable: false,
                                });
                            }
                        }
                    }
                };
                pool.counters.acquired.fetch_add(1, Ordering::Relaxed);
                let idle = pool
                    .idle
                    .lock()
                    .expect("the idle list's lock is never held across a panic")
                    .pop();
                let conn = match idle {
                    Some(conn) => {
                        pool.counters.hits.fetch_add(1, Ordering::Relaxed);
                        conn
                    }
                    None => {
                        pool.counters.dials.fetch_add(1, Ordering::Relaxed);
                        shared
                            .dialer
                            .dial(&shared.config)
                            .await
                            .map_err(Failure::transport)?
                    }
                };
                let outcome = self.send(conn.clone(), cmds).await;
                match &outcome {
                    // Like go-redis, a connection that failed in transport is closed rather
                    // than reused: its reply stream may be out of step.
                    Err(failure) if failure.retryable => {
                        pool.counters.discarded.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => pool
                        .idle
                        .lock()
                        .expect("the idle list's lock is never held across a panic")
                        .push(conn),
                }
                drop(permit);
                outcome
            }
        }
    }

    /// The shared connection, dialing it if there is none.
    async fn shared_connection(
        &self,
        connection: &SharedConnection,
    ) -> Result<(u64, Conn), Failure> {
        let mut slot = connection.slot.lock().await;
        if let Some((generation, conn)) = slot.as_ref() {
            return Ok((*generation, conn.clone()));
        }
        let conn = self
            .shared
            .dialer
            .dial(&self.shared.config)
            .await
            .map_err(Failure::transport)?;
        let generation = connection.next_generation.fetch_add(1, Ordering::Relaxed);
        *slot = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Sends the commands on `conn` and reads the replies, bounded by the response timeout.
    async fn send(&self, conn: Conn, cmds: &[Cmd]) -> Result<Vec<Reply>, Failure> {
        let limit = self.shared.config.response_timeout;
        let exchange = async {
            match (cmds, conn) {
                ([cmd], mut conn) => single(&mut conn, cmd).await.map(|reply| vec![reply]),
                (cmds, Conn::Cluster(conn)) if group_by_slot(cmds).len() > 1 => {
                    cluster_pipeline(conn, cmds).await
                }
                (cmds, mut conn) => pipeline(&mut conn, cmds).await,
            }
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(outcome) => outcome.map_err(Failure::transport),
            Err(_elapsed) => Err(Failure::transport(Error::Timeout)),
        }
    }
}

/// One command on one connection. A Redis error reply comes back as a reply, whether the
/// crate hands it over as a value or as an error.
async fn single(conn: &mut Conn, cmd: &Cmd) -> Result<Reply, Error> {
    match conn.command(&library_command(cmd)).await {
        Ok(value) => Ok(reply_from_value(value)),
        Err(error) => match ServerError::try_from(error) {
            Ok(server_error) => Ok(Reply::Error(error_line(&server_error))),
            Err(error) => Err(transport_error(&error)),
        },
    }
}

/// Several commands in one write on one connection (one node).
async fn pipeline(conn: &mut Conn, cmds: &[Cmd]) -> Result<Vec<Reply>, Error> {
    let mut batch = redis::Pipeline::with_capacity(cmds.len());
    for cmd in cmds {
        batch.add_command(library_command(cmd));
    }
    let values = match conn.pipeline(&batch, cmds.len()).await {
        Ok(values) => values,
        Err(error) => match ServerError::try_from(error) {
            // The crate gave up the other replies for this error: nothing exact to return.
            Ok(server_error) => {
                return Err(Error::Protocol(format!(
                    "pipeline failed as a whole: {}",
                    error_line(&server_error)
                )));
            }
            Err(error) => return Err(transport_error(&error)),
        },
    };
    if values.len() != cmds.len() {
        return Err(Error::Protocol(format!(
            "{} replies to a pipeline of {}",
            values.len(),
            cmds.len()
        )));
    }
    Ok(values.into_iter().map(reply_from_value).collect())
}

/// A pipeline whose keys span several slots: one sub-pipeline per slot, all in flight at
/// once (as go-redis's cluster pipeline sends one per node), replies put back in order.
/// Keyless commands form their own group on any one node; so a `SCRIPT LOAD` inside a
/// cluster pipeline reaches one node, while one sent alone (`exec`) reaches every node.
async fn cluster_pipeline(conn: ClusterConnection, cmds: &[Cmd]) -> Result<Vec<Reply>, Error> {
    let groups = group_by_slot(cmds);
    let mut tasks = tokio::task::JoinSet::new();
    for (_, positions) in groups {
        let group: Vec<Cmd> = positions
            .iter()
            .map(|&position| cmds[position].clone())
            .collect();
        let mut conn = Conn::Cluster(conn.clone());
        tasks.spawn(async move {
            let replies = if group.len() == 1 {
                single(&mut conn, &group[0]).await.map(|reply| vec![reply])
            } else {
                pipeline(&mut conn, &group).await
            };
            replies.map(|replies| (positions, replies))
        });
    }
    let mut ordered: Vec<Option<Reply>> = vec![None; cmds.len()];
    while let Some(joined) = tasks.join_next().await {
        let (positions, replies) = joined.map_err(|error| Error::Io(io::Error::other(error)))??;
        for (position, reply) in positions.into_iter().zip(replies) {
            ordered[position] = Some(reply);
        }
    }
    ordered
        .into_iter()
        .map(|reply| reply.ok_or_else(|| Error::Protocol("a pipeline reply is missing".to_owned())))
        .collect()
}

impl Redis for RealRedis {
    async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        let mut replies = self.call(std::slice::from_ref(&cmd)).await?;
        Ok(replies
            .pop()
            .expect("one reply per command is checked in `send`"))
    }

    async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        self.call(&cmds).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::Script;

    fn key(name: &str) -> Vec<u8> {
        name.as_bytes().to_vec()
    }

    /// Parses raw RESP2 with the crate's own parser and compares our conversion.
    fn check(cases: &[(&[u8], Reply)]) {
        for (wire, expected) in cases {
            let value = redis::parse_redis_value(wire).expect("valid RESP in the table");
            assert_eq!(
                &reply_from_value(value),
                expected,
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn resp2_values_convert_exactly() {
        check(&[
            (b"+OK\r\n", Reply::Status("OK".into())),
            (b"+PONG\r\n", Reply::Status("PONG".into())),
            (b":-7\r\n", Reply::Integer(-7)),
            (b"$0\r\n\r\n", Reply::Bulk(Vec::new())),
            (b"$4\r\na\r\nb\r\n", Reply::Bulk(b"a\r\nb".to_vec())),
            (b"$-1\r\n", Reply::Nil),
            // The documented loss: a null array cannot be told from a null bulk string.
            (b"*-1\r\n", Reply::Nil),
            (b"*0\r\n", Reply::Array(Vec::new())),
            (
                b"-ERR value is not an integer or out of range\r\n",
                Reply::Error("ERR value is not an integer or out of range".into()),
            ),
            (
                b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
                Reply::Error("NOSCRIPT No matching script. Please use EVAL.".into()),
            ),
            (
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                Reply::Error(
                    "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
                ),
            ),
            (b"-MYCODE\r\n", Reply::Error("MYCODE".into())),
            (
                b"*3\r\n:1\r\n-ERR x y\r\n*1\r\n$-1\r\n",
                Reply::Array(vec![
                    Reply::Integer(1),
                    Reply::Error("ERR x y".into()),
                    Reply::Array(vec![Reply::Nil]),
                ]),
            ),
            // RESP3 shapes, should they ever arrive.
            (b"#t\r\n", Reply::Integer(1)),
            (
                b"%1\r\n+a\r\n:2\r\n",
                Reply::Array(vec![Reply::Status("a".into()), Reply::Integer(2)]),
            ),
        ]);
    }

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_cap() {
        let go_redis = RealConfig::go_redis_v8_newapi("redis://127.0.0.1:1").retries;
        let waits_ms: Vec<u128> = (1..=9)
            .map(|retry| go_redis.backoff(retry).as_millis())
            .collect();
        assert_eq!(waits_ms, [8, 16, 32, 64, 128, 256, 512, 512, 512]);
        assert_eq!(go_redis.backoff(u32::MAX), Duration::from_millis(512));
        assert_eq!(Retries::none().backoff(3), Duration::ZERO);
    }

    #[test]
    fn presets_hold_new_apis_values() {
        let config = RealConfig::go_redis_v8_newapi("redis://h:1");
        assert_eq!(
            config.strategy,
            Strategy::Pool {
                size: 10,
                wait_timeout: Duration::from_secs(4)
            }
        );
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.response_timeout, Duration::from_secs(3));
        assert_eq!(config.retries.max_retries, 3);
        let multiplexed = RealConfig::multiplexed("redis://h:1");
        assert_eq!(multiplexed.strategy, Strategy::Multiplexed);
        assert_eq!(multiplexed.topology, config.topology);
        let cluster = RealConfig::cluster(&["redis://a:1", "redis://b:2"]);
        assert_eq!(
            cluster.topology,
            Topology::Cluster {
                seed_urls: vec!["redis://a:1".into(), "redis://b:2".into()]
            }
        );
    }

    #[test]
    fn invalid_configurations_are_refused_before_any_dial() {
        let base = RealConfig::go_redis_v8_newapi("redis://127.0.0.1:1");
        let cases = [
            base.clone().with_strategy(Strategy::Pool {
                size: 0,
                wait_timeout: Duration::from_secs(1),
            }),
            base.clone().with_strategy(Strategy::Pool {
                size: POOL_SIZE_MAX + 1,
                wait_timeout: Duration::from_secs(1),
            }),
            RealConfig {
                retries: Retries {
                    max_retries: RETRIES_MAX + 1,
                    ..base.retries
                },
                ..base.clone()
            },
            RealConfig {
                response_timeout: Duration::ZERO,
                ..base.clone()
            },
            RealConfig::cluster(&[]),
            RealConfig::multiplexed("not a url"),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        for config in cases {
            let outcome = runtime.block_on(RealRedis::connect(config.clone()));
            assert!(
                matches!(&outcome, Err(Error::Io(error)) if error.kind() == io::ErrorKind::InvalidInput),
                "{config:?}: {:?}",
                outcome.err()
            );
        }
    }

    #[test]
    fn an_unreachable_server_fails_to_connect_in_bounded_time() {
        // Port 1 on loopback refuses at once on any ordinary machine.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let config = RealConfig {
            connect_timeout: Duration::from_secs(2),
            ..RealConfig::multiplexed("redis://127.0.0.1:1")
        };
        let outcome = runtime.block_on(RealRedis::connect(config));
        assert!(
            matches!(&outcome, Err(Error::Io(error)) if error.kind() == io::ErrorKind::ConnectionRefused),
            "{:?}",
            outcome.err()
        );
    }

    #[test]
    fn scripts_route_by_their_first_key_and_pipelines_group_by_slot() {
        let eval = Cmd::EvalSha {
            script: Script::Gcra,
            keys: vec![key("{user:7}:a"), key("{user:7}:b")],
            args: vec![key("1")],
        };
        assert_eq!(eval.first_key(), Some(&b"{user:7}:a"[..]));
        let keyless = Cmd::Eval {
            script: Script::Gcra,
            keys: vec![],
            args: vec![key("1")],
        };
        assert_eq!(keyless.first_key(), None);
        assert_eq!(
            Cmd::LTrim {
                key: key("l"),
                start: 0,
                stop: 1
            }
            .first_key(),
            Some(&b"l"[..])
        );
        let cmds = [
            Cmd::Incr { key: key("a") },
            Cmd::Ping,
            Cmd::Incr { key: key("b") },
            Cmd::Get { key: key("a") },
            Cmd::Eval {
                script: Script::Gcra,
                keys: vec![key("b")],
                args: vec![],
            },
            Cmd::Time,
        ];
        let slot_a = crate::keys::key_slot(b"a");
        let slot_b = crate::keys::key_slot(b"b");
        assert_ne!(slot_a, slot_b);
        assert_eq!(
            group_by_slot(&cmds),
            vec![
                (Some(slot_a), vec![0, 3]),
                (None, vec![1, 5]),
                (Some(slot_b), vec![2, 4])
            ]
        );
        assert_eq!(group_by_slot(&[]), vec![]);
    }
}
