//! The IO boundary: the one small trait through which every limiter talks to Redis.
//!
//! Limiters never see a socket, a client library or the model: they see [`Redis`], which
//! executes a [`Cmd`] or a pipeline of them. Three kinds of backend implement it: [`Local`]
//! (the in-process model, with a clock), a RESP client over any stream (the simulation), and
//! real Redis through the `redis` crate. [`Metered`] wraps any of them and counts round trips
//! and commands, which is how every limiter reports its cost per decision.
//!
//! [`Cmd`] is closed on purpose: it is the whole Redis surface the limiters use, so the model
//! must implement every variant, and a reader sees at a glance what a limiter can send. The
//! multi-round-trip commands exist so that the legacy limiters can reproduce new-api command by
//! command; the atomic limiters send one script.

use std::fmt;
use std::future::Future;
use std::io;

use crate::model::{Clock, Model, Reply, Session, SharedModel};

/// A script in `lua/`. The model runs the same source in its Lua host and real Redis receives
/// it unchanged: there is no Rust twin; `crate::algo` is its reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Script {
    /// `lua/newapi_token_bucket.lua`: new-api's token bucket (legacy path C2): Redis TIME in
    /// seconds, HMGET/HMSET, no TTL. `KEYS[1]` bucket; ARGV requested, rate, capacity; returns 1|0.
    NewapiTokenBucket,
    /// `lua/fixed_window.lua`: `KEYS[1]` hash; ARGV limit, window_ms, cost, now_ms|''.
    FixedWindow,
    /// `lua/sliding_window.lua`: `KEYS[1]` hash; ARGV limit, window_ms, cost, now_ms|''.
    SlidingWindow,
    /// `lua/token_bucket.lua`: `KEYS[1]` hash; ARGV burst, interval_ms, cost, now_ms|''.
    TokenBucket,
    /// `lua/gcra.lua`: `KEYS[1]` string; ARGV burst, interval_ms, cost, now_ms|''.
    Gcra,
    /// `lua/sliding_log.lua`: `KEYS[1]` sorted set; ARGV limit, window_ms, cost, now_ms|''.
    SlidingLog,
    /// `lua/multi_limit.lua`: KEYS one TAT per limit; ARGV cost, now_ms|'', then burst and
    /// interval_ms per limit; all or nothing.
    MultiLimit,
    /// `lua/success_reserve.lua`: KEYS successes, reservations, id counter; ARGV limit,
    /// window_ms, lease_ms, now_ms|''; returns the decision and a reservation id.
    SuccessReserve,
    /// `lua/success_complete.lua`: KEYS as SuccessReserve; ARGV id, succeeded (1|0),
    /// window_ms, now_ms|''.
    SuccessComplete,
}

impl Script {
    /// Every script.
    pub const ALL: [Script; 9] = [
        Script::NewapiTokenBucket,
        Script::FixedWindow,
        Script::SlidingWindow,
        Script::TokenBucket,
        Script::Gcra,
        Script::SlidingLog,
        Script::MultiLimit,
        Script::SuccessReserve,
        Script::SuccessComplete,
    ];

    /// The file's name without `.lua`, also the name used in CSV columns and plots.
    pub fn name(self) -> &'static str {
        match self {
            Script::NewapiTokenBucket => "newapi_token_bucket",
            Script::FixedWindow => "fixed_window",
            Script::SlidingWindow => "sliding_window",
            Script::TokenBucket => "token_bucket",
            Script::Gcra => "gcra",
            Script::SlidingLog => "sliding_log",
            Script::MultiLimit => "multi_limit",
            Script::SuccessReserve => "success_reserve",
            Script::SuccessComplete => "success_complete",
        }
    }

    /// The Lua source, exactly as in `lua/`.
    pub fn source(self) -> &'static str {
        match self {
            Script::NewapiTokenBucket => include_str!("../lua/newapi_token_bucket.lua"),
            Script::FixedWindow => include_str!("../lua/fixed_window.lua"),
            Script::SlidingWindow => include_str!("../lua/sliding_window.lua"),
            Script::TokenBucket => include_str!("../lua/token_bucket.lua"),
            Script::Gcra => include_str!("../lua/gcra.lua"),
            Script::SlidingLog => include_str!("../lua/sliding_log.lua"),
            Script::MultiLimit => include_str!("../lua/multi_limit.lua"),
            Script::SuccessReserve => include_str!("../lua/success_reserve.lua"),
            Script::SuccessComplete => include_str!("../lua/success_complete.lua"),
        }
    }

    /// The script's function in [`function_library`]: its name and a digest of this build's
    /// scripts (`gcra_1a2b3c4d5e`).
    pub fn function_name(self) -> &'static str {
        built_library()
            .names
            .iter()
            .find(|(script, _)| *script == self)
            .map(|(_, name)| name.as_str())
            .expect("every script is in Script::ALL")
    }

    /// The SHA-1 digest Redis files the script under (lowercase hex), for EVALSHA. Computed
    /// once per script and process: every EVALSHA sends it.
    pub fn sha(self) -> String {
        static DIGESTS: std::sync::OnceLock<Vec<(Script, String)>> = std::sync::OnceLock::new();
        let digests = DIGESTS.get_or_init(|| {
            Script::ALL
                .iter()
                .map(|script| {
                    (
                        *script,
                        sha1_smol::Sha1::from(script.source()).digest().to_string(),
                    )
                })
                .collect()
        });
        digests
            .iter()
            .find(|(script, _)| *script == self)
            .map(|(_, digest)| digest.clone())
            .expect("every script is in Script::ALL")
    }
}

/// The name of the Redis Functions library that holds every `lua/` script.
pub const FUNCTION_LIBRARY_NAME: &str = "ratelab";

/// Whether a script's function is read-only (`no-writes`: FCALL_RO may call it, and it
/// runs on a replica). Every limiter script records its decision, so none is today; the
/// flag follows the script's contract, kept here beside the library it shapes.
fn script_is_read_only(script: Script) -> bool {
    match script {
        Script::NewapiTokenBucket
        | Script::FixedWindow
        | Script::SlidingWindow
        | Script::TokenBucket
        | Script::Gcra
        | Script::SlidingLog
        | Script::MultiLimit
        | Script::SuccessReserve
        | Script::SuccessComplete => false,
    }
}

/// The names, one per script, and the library text, built once from the `lua/` files.
struct FunctionLibrary {
    names: Vec<(Script, String)>,
    text: String,
}

fn built_library() -> &'static FunctionLibrary {
    static LIBRARY: std::sync::OnceLock<FunctionLibrary> = std::sync::OnceLock::new();
    LIBRARY.get_or_init(|| {
        // A digest of every script names this build's functions: a server holding an older
        // library answers "Function not found", and the caller replaces the library.
        let mut digest = sha1_smol::Sha1::new();
        for script in Script::ALL {
            digest.update(script.source().as_bytes());
        }
        let version: String = digest.digest().to_string().chars().take(10).collect();
        let mut text = format!("#!lua name={FUNCTION_LIBRARY_NAME}\n");
        let mut names = Vec::new();
        for script in Script::ALL {
            let name = format!("{}_{version}", script.name());
            let flags = if script_is_read_only(script) {
                "{'no-writes'}"
            } else {
                "{}"
            };
            // The file's body runs unchanged as the callback: KEYS and ARGV are its
            // parameters, as EVAL's globals are a script's.
            text.push_str(&format!(
                "redis.register_function{{function_name='{name}', flags={flags}, \
                 callback=function(KEYS, ARGV)\n{}\nend}}\n",
                script.source()
            ));
            names.push((script, name));
        }
        FunctionLibrary { names, text }
    })
}

/// The Redis Functions library of every `lua/` script (`#!lua name=ratelab`, one function
/// per script, named by [`Script::function_name`]), built from the same files EVAL sends.
pub fn function_library() -> &'static str {
    &built_library().text
}

/// Every command a limiter may send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `PING`.
    Ping,
    /// `TIME`.
    Time,
    /// `GET key`.
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// `INCR key`.
    Incr {
        /// The key.
        key: Vec<u8>,
    },
    /// `INCRBY key by`.
    IncrBy {
        /// The key.
        key: Vec<u8>,
        /// The increment.
        by: i64,
    },
    /// `EXPIRE key seconds`.
    Expire {
        /// The key.
        key: Vec<u8>,
        /// Time to live in seconds.
        ttl_s: i64,
    },
    /// `PEXPIRE key ms`.
    PExpire {
        /// The key.
        key: Vec<u8>,
        /// Time to live in milliseconds.
        ttl_ms: i64,
    },
    /// `TTL key`.
    Ttl {
        /// The key.
        key: Vec<u8>,
    },
    /// `DEL key`.
    Del {
        /// The key.
        key: Vec<u8>,
    },
    /// `LLEN key`.
    LLen {
        /// The key.
        key: Vec<u8>,
    },
    /// `LPUSH key value`.
    LPush {
        /// The key.
        key: Vec<u8>,
        /// The pushed element.
        value: Vec<u8>,
    },
    /// `LINDEX key index`.
    LIndex {
        /// The key.
        key: Vec<u8>,
        /// The index (negative counts from the tail).
        index: i64,
    },
    /// `LTRIM key start stop`.
    LTrim {
        /// The key.
        key: Vec<u8>,
        /// First index kept.
        start: i64,
        /// Last index kept.
        stop: i64,
    },
    /// `SCRIPT LOAD source`.
    ScriptLoad {
        /// The script.
        script: Script,
    },
    /// `EVALSHA sha numkeys keys... args...`.
    EvalSha {
        /// The script.
        script: Script,
        /// KEYS.
        keys: Vec<Vec<u8>>,
        /// ARGV.
        args: Vec<Vec<u8>>,
    },
    /// `EVALSHA digest numkeys keys... args...` with a digest the caller holds rather than the
    /// script's own: new-api's loader keeps whatever SCRIPT LOAD returned, which is `""` for
    /// the life of the process when the load failed (legacy path C2).
    EvalShaDigest {
        /// The digest sent, as the caller holds it (possibly empty).
        sha: String,
        /// KEYS.
        keys: Vec<Vec<u8>>,
        /// ARGV.
        args: Vec<Vec<u8>>,
    },
    /// `EVAL source numkeys keys... args...`.
    Eval {
        /// The script.
        script: Script,
        /// KEYS.
        keys: Vec<Vec<u8>>,
        /// ARGV.
        args: Vec<Vec<u8>>,
    },
    /// `FCALL <function> numkeys keys... args...`: the script's function in the
    /// [`function_library`].
    FCall {
        /// The script.
        script: Script,
        /// KEYS.
        keys: Vec<Vec<u8>>,
        /// ARGV.
        args: Vec<Vec<u8>>,
    },
    /// `FUNCTION LOAD REPLACE <library>`: loads (or replaces) the [`function_library`].
    FunctionLoad,
}

impl Cmd {
    /// The key a cluster routes the command by: its first key; `None` for keyless commands
    /// (and a script called with no keys).
    pub fn first_key(&self) -> Option<&[u8]> {
        match self {
            Cmd::Ping | Cmd::Time | Cmd::ScriptLoad { .. } | Cmd::FunctionLoad => None,
            Cmd::Get { key }
            | Cmd::Incr { key }
            | Cmd::IncrBy { key, .. }
            | Cmd::Expire { key, .. }
            | Cmd::PExpire { key, .. }
            | Cmd::Ttl { key }
            | Cmd::Del { key }
            | Cmd::LLen { key }
            | Cmd::LPush { key, .. }
            | Cmd::LIndex { key, .. }
            | Cmd::LTrim { key, .. } => Some(key),
            Cmd::EvalSha { keys, .. }
            | Cmd::EvalShaDigest { keys, .. }
            | Cmd::Eval { keys, .. }
            | Cmd::FCall { keys, .. } => keys.first().map(Vec::as_slice),
        }
    }

    /// The command as RESP arguments.
    pub fn argv(&self) -> Vec<Vec<u8>> {
        fn words(parts: &[&[u8]]) -> Vec<Vec<u8>> {
            parts.iter().map(|part| part.to_vec()).collect()
        }
        fn script_call(head: Vec<Vec<u8>>, keys: &[Vec<u8>], args: &[Vec<u8>]) -> Vec<Vec<u8>> {
            let mut argv = head;
            argv.push(keys.len().to_string().into_bytes());
            argv.extend(keys.iter().cloned());
            argv.extend(args.iter().cloned());
            argv
        }
        match self {
            Cmd::Ping => words(&[b"PING"]),
            Cmd::Time => words(&[b"TIME"]),
            Cmd::Get { key } => words(&[b"GET", key]),
            Cmd::Incr { key } => words(&[b"INCR", key]),
            Cmd::IncrBy { key, by } => words(&[b"INCRBY", key, by.to_string().as_bytes()]),
            Cmd::Expire { key, ttl_s } => words(&[b"EXPIRE", key, ttl_s.to_string().as_bytes()]),
            Cmd::PExpire { key, ttl_ms } => {
                words(&[b"PEXPIRE", key, ttl_ms.to_string().as_bytes()])
            }
            Cmd::Ttl { key } => words(&[b"TTL", key]),
            Cmd::Del { key } => words(&[b"DEL", key]),
            Cmd::LLen { key } => words(&[b"LLEN", key]),
            Cmd::LPush { key, value } => words(&[b"LPUSH", key, value]),
            Cmd::LIndex { key, index } => words(&[b"LINDEX", key, index.to_string().as_bytes()]),
            Cmd::LTrim { key, start, stop } => words(&[
                b"LTRIM",
                key,
                start.to_string().as_bytes(),
                stop.to_string().as_bytes(),
            ]),
            Cmd::ScriptLoad { script } => words(&[b"SCRIPT", b"LOAD", script.source().as_bytes()]),
            Cmd::EvalSha { script, keys, args } => {
                script_call(words(&[b"EVALSHA", script.sha().as_bytes()]), keys, args)
            }
            Cmd::EvalShaDigest { sha, keys, args } => {
                script_call(words(&[b"EVALSHA", sha.as_bytes()]), keys, args)
            }
            Cmd::Eval { script, keys, args } => {
                script_call(words(&[b"EVAL", script.source().as_bytes()]), keys, args)
            }
            Cmd::FCall { script, keys, args } => script_call(
                words(&[b"FCALL", script.function_name().as_bytes()]),
                keys,
                args,
            ),
            Cmd::FunctionLoad => words(&[
                b"FUNCTION",
                b"LOAD",
                b"REPLACE",
                function_library().as_bytes(),
            ]),
        }
    }
}

/// Why a backend could not get a reply. A Redis error reply (`-ERR ...`, `-NOSCRIPT ...`) is
/// not an `Error`: it is a [`Reply::Error`], because limiters must react to some of them.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    Io(io::Error),
    /// The peer broke the protocol.
    Protocol(String),
    /// No reply in time (read timeout), or no connection from the pool in time.
    Timeout,
    /// The connection is closed.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "redis transport error: {error}"),
            Error::Protocol(why) => write!(f, "redis protocol error: {why}"),
            Error::Timeout => f.write_str("redis timeout"),
            Error::Closed => f.write_str("redis connection closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Error {
        Error::Io(error)
    }
}

/// Executes commands: the in-process model, a RESP client over any stream, or real Redis.
///
/// Each call is one round trip: `exec` sends one command, `pipeline` sends several in one
/// write and reads their replies (not a transaction: other clients may interleave).
///
/// ```
/// use ratelab::redis::{Cmd, Local, Redis};
/// use ratelab::model::Reply;
/// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # runtime.block_on(async {
/// let mut redis = Local::fixed_time(1_700_000_000_000);
/// let reply = redis.exec(Cmd::Incr { key: b"hits".to_vec() }).await.unwrap();
/// assert_eq!(reply, Reply::Integer(1));
/// # });
/// ```
pub trait Redis: Send {
    /// Sends one command and waits for its reply.
    fn exec(&mut self, cmd: Cmd) -> impl Future<Output = Result<Reply, Error>> + Send;

    /// Sends several commands in one round trip and returns their replies in order.
    fn pipeline(
        &mut self,
        cmds: Vec<Cmd>,
    ) -> impl Future<Output = Result<Vec<Reply>, Error>> + Send;
}

/// Whether a reply is Redis's answer to FCALL of a function it does not have.
pub fn is_function_not_found(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(line) if line == "ERR Function not found")
}

/// Whether a reply is Redis's NOSCRIPT error.
pub fn is_noscript(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(line) if line.starts_with("NOSCRIPT"))
}

/// Runs a script the way go-redis's `Script.Run` does: EVALSHA first, and EVAL (one more
/// round trip) when the server has lost its script cache (restart, failover, SCRIPT FLUSH).
pub async fn run_script<R: Redis>(
    redis: &mut R,
    script: Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
) -> Result<Reply, Error> {
    run_script_with(redis, script, keys, args, &Reload::EvalShaThenEval).await
}

/// What a client does about a server that lost its script cache.
///
/// The choice matters under load. Behind a saturated connection pool each round trip is a
/// separate wait for a connection; go-redis's EVALSHA-then-EVAL needs two, the EVAL queues
/// behind every other request, times out, and so the script is never loaded again: no
/// decision is made until the load drops, although Redis is up (the simulation's
/// `pool-exhaustion-cold-script-cache` scenario). [`Reload::EvalUntilLoaded`] needs one.
#[derive(Clone, Debug, Default)]
pub enum Reload {
    /// go-redis's `Script.Run`: EVALSHA, and on NOSCRIPT an EVAL, two round trips.
    #[default]
    EvalShaThenEval,
    /// After a NOSCRIPT, send EVAL first (one round trip, the script's body on the wire)
    /// until an EVAL is answered, then EVALSHA again. The flag is shared by the limiters of
    /// one gateway (clones share it): one NOSCRIPT switches them all.
    EvalUntilLoaded(std::sync::Arc<std::sync::atomic::AtomicBool>),
    /// Redis Functions: FCALL the script's function in [`function_library`]; on `ERR
    /// Function not found` (a server without the library, or with an older one) send
    /// `FUNCTION LOAD REPLACE` with the library and FCALL again: three round trips once per
    /// server, one after. Functions survive a restart with persistence and reach replicas,
    /// where the script cache does neither.
    Fcall,
}

impl Reload {
    /// [`Reload::EvalUntilLoaded`] with its own flag, starting with EVALSHA.
    pub fn eval_until_loaded() -> Reload {
        Reload::EvalUntilLoaded(std::sync::Arc::default())
    }
}

/// [`run_script`] with a choice of what to do after NOSCRIPT.
pub async fn run_script_with<R: Redis>(
    redis: &mut R,
    script: Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
    reload: &Reload,
) -> Result<Reply, Error> {
    use std::sync::atomic::Ordering;

    let cold = match reload {
        Reload::EvalShaThenEval => None,
        Reload::EvalUntilLoaded(cold) => Some(cold),
        Reload::Fcall => return run_function(redis, script, keys, args).await,
    };
    if let Some(cold) = cold
        && cold.load(Ordering::Relaxed)
    {
        // Any reply means the server compiled the script and cached it (a script error
        // too: Redis caches before it runs); a transport error leaves the cache cold.
        let reply = redis.exec(Cmd::Eval { script, keys, args }).await?;
        cold.store(false, Ordering::Relaxed);
        return Ok(reply);
    }
    let reply = redis
        .exec(Cmd::EvalSha {
            script,
            keys: keys.clone(),
            args: args.clone(),
        })
        .await?;
    if is_noscript(&reply) {
        if let Some(cold) = cold {
            cold.store(true, Ordering::Relaxed);
        }
        let reply = redis.exec(Cmd::Eval { script, keys, args }).await?;
        if let Some(cold) = cold {
            cold.store(false, Ordering::Relaxed);
        }
        return Ok(reply);
    }
    Ok(reply)
}

/// [`Reload::Fcall`]: FCALL, and on "Function not found" FUNCTION LOAD REPLACE and FCALL.
async fn run_function<R: Redis>(
    redis: &mut R,
    script: Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
) -> Result<Reply, Error> {
    let reply = redis
        .exec(Cmd::FCall {
            script,
            keys: keys.clone(),
            args: args.clone(),
        })
        .await?;
    if !is_function_not_found(&reply) {
        return Ok(reply);
    }
    let loaded = redis.exec(Cmd::FunctionLoad).await?;
    if let Reply::Error(line) = &loaded {
        return Err(Error::Protocol(format!(
            "FUNCTION LOAD of the {FUNCTION_LIBRARY_NAME} library failed: {line}"
        )));
    }
    redis.exec(Cmd::FCall { script, keys, args }).await
}

/// Round trips and commands sent through a [`Metered`] backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Calls to `exec` or `pipeline`.
    pub round_trips: u64,
    /// Commands sent (a pipeline of n counts n).
    pub commands: u64,
}

impl std::ops::Sub for Usage {
    type Output = Usage;

    fn sub(self, earlier: Usage) -> Usage {
        Usage {
            round_trips: self.round_trips - earlier.round_trips,
            commands: self.commands - earlier.commands,
        }
    }
}

/// Counts what passes through to the wrapped backend.
pub struct Metered<R> {
    inner: R,
    usage: Usage,
}

impl<R> Metered<R> {
    /// Wraps a backend with zeroed counters.
    pub fn new(inner: R) -> Metered<R> {
        Metered {
            inner,
            usage: Usage::default(),
        }
    }

    /// What has been sent so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The wrapped backend.
    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Redis> Redis for Metered<R> {
    async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        self.usage.round_trips += 1;
        self.usage.commands += 1;
        self.inner.exec(cmd).await
    }

    async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
        self.usage.round_trips += 1;
        self.usage.commands += u64::try_from(cmds.len()).expect("fits");
        self.inner.pipeline(cmds).await
    }
}

/// The in-process model as a backend: one client session on a shared model, with a clock.
/// No network: every call completes at once.
pub struct Local {
    model: SharedModel,
    session: Session,
    clock: Clock,
}

impl Local {
    /// A new client session on `model`, reading time from `clock`.
    pub fn connect(model: SharedModel, clock: Clock) -> Local {
        let session = model
            .lock()
            .expect("the model lock is never held across a panic")
            .connect("local");
        Local {
            model,
            session,
            clock,
        }
    }

    /// A fresh standalone model (seed 0) whose clock stands still at `now_ms`.
    pub fn fixed_time(now_ms: u64) -> Local {
        let model = Model::new(crate::model::NodeConfig::standalone(0));
        Local::connect(
            std::sync::Arc::new(std::sync::Mutex::new(model)),
            std::sync::Arc::new(move || now_ms),
        )
    }

    /// The shared model, to inspect or to give to another client.
    pub fn model(&self) -> &SharedModel {
        &self.model
    }

    fn run(&mut self, cmds: &[Cmd]) -> Vec<Reply> {
        let now_ms = (self.clock)();
        let mut model = self
            .model
            .lock()
            .expect("the model lock is never held across a panic");
        cmds.iter()
            .map(|cmd| model.exec(now_ms, &mut self.session, &cmd.argv()))
            .collect()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Ok(mut model) = self.model.lock() {
            model.disconnect(&mut self.session);
        }
    }
}

impl Redis for Local {
    async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
        Ok(self
            .run(std::slice::from_ref(&cmd))
            .pop()
            .expect("one reply per command"))
    }

    async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
        Ok(self.run(&cmds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_script_loads_under_the_digest_evalsha_sends() {
        let mut redis = Local::fixed_time(1_700_000_000_000);
        for script in Script::ALL {
            let loaded = redis.exec(Cmd::ScriptLoad { script }).await.unwrap();
            assert_eq!(
                loaded,
                Reply::Bulk(script.sha().into_bytes()),
                "{}",
                script.name()
            );
            assert!(
                script.source().starts_with("-- "),
                "{} opens with its contract",
                script.name()
            );
        }
    }

    #[tokio::test]
    async fn run_script_falls_back_to_eval_once_and_meters_it() {
        let mut redis = Metered::new(Local::fixed_time(1_700_000_000_000));
        let args = vec![b"3".to_vec(), b"100".to_vec(), b"1".to_vec(), Vec::new()];
        let first = run_script(&mut redis, Script::Gcra, vec![b"k".to_vec()], args.clone())
            .await
            .unwrap();
        assert!(matches!(first, Reply::Array(_)), "{first:?}");
        assert_eq!(
            redis.usage(),
            Usage {
                round_trips: 2,
                commands: 2
            },
            "EVALSHA, NOSCRIPT, EVAL"
        );
        run_script(&mut redis, Script::Gcra, vec![b"k".to_vec()], args)
            .await
            .unwrap();
        assert_eq!(
            redis.usage(),
            Usage {
                round_trips: 3,
                commands: 3
            },
            "cached now: EVALSHA only"
        );
    }
}
