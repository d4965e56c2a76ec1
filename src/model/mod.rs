//! In-process Redis 7.0: the keyspace, TTLs, commands, transactions, and a Lua 5.1 host that
//! runs the scripts in `lua/` as they are.
//!
//! A plain synchronous state machine. Every call takes `now_ms`, the caller's idea of the
//! current Unix time in milliseconds; nothing here reads a clock or an unseeded RNG, so the same
//! code runs behind `ratelab serve`, under turmoil and inside property tests, and one seed
//! replays a run exactly. Real Redis is the judge: `tests/redis/differential.rs` compares replies byte
//! for byte.
//!
//! # Layout
//!
//! * [`Model`] is one Redis node: sixteen [`db::Db`]s, the node's configuration (clock offset,
//!   cluster slots), statistics, and the script host. [`Model::exec`] runs one command for one
//!   client [`Session`] and returns its [`Reply`].
//! * [`Core`] is everything a data command may touch; [`Ctx`] is one call's context (time,
//!   selected database, whether a script is running). Scripts run data commands through `Core`
//!   with their start time frozen in `Ctx`, which is why a key cannot expire mid-script.
//! * `command` is the table (name, arity, flags, key positions); `cmd/*` holds the families.
//! * [`num`] parses and prints numbers as Redis does; [`cluster`] computes slots.

pub mod busy;
pub mod cluster;
pub mod cmd;
pub mod command;
pub mod db;
pub mod durable;
pub mod functions;
pub mod longdouble;
pub mod num;
pub mod reply;
pub mod script;
#[cfg(test)]
pub(crate) mod testkit;
pub mod zset;

use std::collections::BTreeMap;

pub use durable::Durable;
pub use reply::Reply;

use command::{Handler, Spec};
use db::Db;
use reply::{err, msg};

/// The caller's clock: Unix milliseconds. The wall clock at the edge (`ratelab serve`), a
/// virtual clock in simulations and tests. The model itself never calls one; it adds its own
/// clock offset to whatever the caller passes.
pub type Clock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// One node shared by every connection or client that talks to it. A std mutex: nothing
/// awaits while holding it, and every command runs to completion under it (Redis's atomicity).
pub type SharedModel = std::sync::Arc<std::sync::Mutex<Model>>;

/// Number of logical databases, as Redis's default `databases 16`.
pub const DATABASES: usize = 16;

/// How often the active expiry sweep runs, in model milliseconds (Redis's `hz 10`).
const ACTIVE_EXPIRE_PERIOD_MS: u64 = 100;

/// How many keys one active sweep may delete per database, so that a sweep is bounded.
const ACTIVE_EXPIRE_KEYS_MAX: usize = 200;

/// Limits on what a client controls. Each has Redis's error when exceeded.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest bulk string a client may send (`proto-max-bulk-len`, settable by CONFIG SET).
    pub bulk_len_max: usize,
    /// Most elements in one command array.
    pub array_len_max: usize,
    /// Longest inline command line.
    pub inline_len_max: usize,
    /// Most Lua VM instructions one script may execute before the model kills it.
    pub script_steps_max: u64,
}

impl Limits {
    /// Redis's defaults: 512 MiB bulks (`proto-max-bulk-len`), 1M-element arrays, 64 KiB
    /// inline lines. Nothing is reserved on a peer's say-so: memory grows only with bytes
    /// actually received, so these bound what one frame can make the model hold.
    pub fn standard() -> Limits {
        Limits {
            bulk_len_max: 512 * 1024 * 1024,
            array_len_max: 1024 * 1024,
            inline_len_max: 64 * 1024,
            script_steps_max: 100_000_000,
        }
    }
}

/// Cluster mode: which slots this node owns and where the others live.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Inclusive slot ranges this node serves.
    pub owned: Vec<(u16, u16)>,
    /// Every slot range of the cluster with the `host:port` that serves it (MOVED's target).
    pub endpoints: Vec<(u16, u16, String)>,
}

/// One node's fixed configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Added to the caller's `now_ms` for everything this node sees as time: TIME, expiry,
    /// scripts. A skewed node is a node with a non-zero offset.
    pub clock_offset_ms: i64,
    /// Seeds RANDOMKEY, HRANDFIELD and the script host's `math.random`.
    pub seed: u64,
    /// `Some` in cluster mode.
    pub cluster: Option<ClusterConfig>,
    /// Protocol and script limits.
    pub limits: Limits,
    /// The TCP port reported by INFO and CLIENT LIST.
    pub port: u16,
}

impl NodeConfig {
    /// A standalone node with no skew and the given seed.
    pub fn standalone(seed: u64) -> NodeConfig {
        NodeConfig {
            clock_offset_ms: 0,
            seed,
            cluster: None,
            limits: Limits::standard(),
            port: 6379,
        }
    }
}

/// Per-command counters for INFO commandstats.
#[derive(Clone, Debug, Default)]
pub struct CommandStats {
    /// Times the command ran.
    pub calls: u64,
    /// Times it was rejected before running (arity, CROSSSLOT, MOVED, EXECABORT...).
    pub rejected_calls: u64,
    /// Times it ran and answered an error.
    pub failed_calls: u64,
}

/// Server-wide counters for INFO stats, commandstats and errorstats.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Every command processed.
    pub total_commands_processed: u64,
    /// Every connection accepted.
    pub total_connections_received: u64,
    /// Connections refused because `maxclients` was reached.
    pub rejected_connections: u64,
    /// Reads that found their key.
    pub keyspace_hits: u64,
    /// Reads that did not.
    pub keyspace_misses: u64,
    /// Keys deleted because their time came, passively or by the sweep.
    pub expired_keys: u64,
    /// Every error reply.
    pub total_error_replies: u64,
    /// Per command name.
    pub commands: BTreeMap<&'static str, CommandStats>,
    /// Per error code (the first word of the error line).
    pub errors: BTreeMap<String, u64>,
}

/// A connected client as CLIENT LIST shows it.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// CLIENT SETNAME's name, empty if none.
    pub name: Vec<u8>,
    /// The selected database.
    pub db: usize,
    /// The peer address, as the transport reports it.
    pub addr: String,
    /// The last command's name.
    pub last_command: String,
    /// The protocol HELLO chose.
    pub resp: reply::Protocol,
}

/// Everything a data command may touch.
pub struct Core {
    /// The node's fixed configuration.
    pub config: NodeConfig,
    /// The sixteen databases.
    pub dbs: Vec<Db>,
    /// CONFIG GET/SET parameters: any name is stored and read back.
    pub params: BTreeMap<String, String>,
    /// Counters.
    pub stats: Stats,
    /// Connected clients by id.
    pub clients: BTreeMap<u64, ClientInfo>,
    /// Watched keys `(db, key)` and their modification count. Only keys some client watches
    /// are here, so writes to other keys cost one failed lookup.
    watched: BTreeMap<(usize, Vec<u8>), WatchedKey>,
    /// splitmix64 state for every random choice the node makes.
    rng: u64,
    /// When the active sweep last ran (node time).
    last_sweep_ms: u64,
    /// Bumped by every write, for INFO's `rdb_changes_since_last_save`-style figures.
    pub dirty: u64,
    /// Node time of the first command, for INFO's uptime.
    pub started_ms: Option<u64>,
}

/// One key a client watches, as it was when the client sent WATCH.
#[derive(Clone, Debug)]
pub struct SessionWatch {
    db: usize,
    key: Vec<u8>,
    /// The key's counters at WATCH time.
    seen: WatchVersions,
    /// The key was already expired (stale) at WATCH time.
    expired: bool,
}

/// A watched key's change counters (see `WatchedKey`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct WatchVersions {
    /// Bumped whenever the key is modified.
    version: u64,
    /// Bumped when a flush or swap removes the key while it is stale (expired, not yet
    /// deleted): that breaks only the watchers that saw it alive at WATCH time.
    stale_version: u64,
    /// Bumped when a swap puts a stale key where there was none: from then on every
    /// watcher counts the key as seen expired (Redis sets each watcher's `expired` flag).
    stale_marks: u64,
}

#[derive(Clone, Debug, Default)]
struct WatchedKey {
    /// Clients watching this key.
    watchers: u32,
    /// What has happened to it.
    versions: WatchVersions,
}

/// A key's state in one database as a flush or swap judges it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    Absent,
    Stale,
    Live,
}

/// One call's context.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The node's time for this call, in Unix ms (frozen for a whole script).
    pub now_ms: u64,
    /// The selected database.
    pub db: usize,
    /// Whether the call comes from a script.
    pub in_script: bool,
    /// The calling client's id.
    pub client_id: u64,
    /// The caller's protocol (a script's `redis.setresp`), for the replies whose structure
    /// differs between RESP2 and RESP3.
    pub resp: reply::Protocol,
}

/// One client connection's state.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// CLIENT ID.
    pub id: u64,
    /// The selected database.
    pub db: usize,
    /// Commands queued since MULTI, or `None` outside a transaction.
    pub multi: Option<Vec<Vec<Vec<u8>>>>,
    /// A queued command was rejected: EXEC will answer EXECABORT.
    pub multi_failed: bool,
    /// Keys this client watches, with the versions seen at WATCH time (see `WatchedKey`)
    /// and whether the key was already expired then.
    pub watched: Vec<SessionWatch>,
    /// The client sent QUIT: the transport closes the connection after the reply.
    pub quit: bool,
    /// The protocol HELLO chose (RESP2 until `HELLO 3`); the transport encodes in it.
    pub resp: reply::Protocol,
}

/// One Redis node.
pub struct Model {
    /// Keyspace, configuration, statistics.
    pub core: Core,
    /// The Lua host and the script cache (never survives a restart).
    pub scripts: script::ScriptHost,
    /// Redis Functions' libraries: plain data, which a restart with persistence keeps.
    pub functions: functions::Library,
}

impl Model {
    /// A node with empty databases.
    pub fn new(config: NodeConfig) -> Model {
        let seed = config.seed;
        Model {
            core: Core::new(config),
            scripts: script::ScriptHost::new(seed),
            functions: functions::Library::new(),
        }
    }

    /// Registers a client and returns its session.
    pub fn connect(&mut self, addr: &str) -> Session {
        let id = self.scripts.watch().take_client_id();
        self.connect_as(id, addr)
    }

    /// Registers a client under an id taken earlier with [`busy::ScriptWatch::take_client_id`]
    /// (a connection that arrived while a script was busy) and returns its session.
    pub fn connect_as(&mut self, id: u64, addr: &str) -> Session {
        self.core.stats.total_connections_received += 1;
        self.core.clients.insert(
            id,
            ClientInfo {
                addr: addr.to_owned(),
                ..ClientInfo::default()
            },
        );
        Session {
            id,
            ..Session::default()
        }
    }

    /// Forgets a client: its watches end and it leaves CLIENT LIST.
    pub fn disconnect(&mut self, session: &mut Session) {
        self.core.unwatch_all(session);
        self.core.clients.remove(&session.id);
    }

    /// The node's time for a caller time: the caller's `now_ms` plus the clock offset.
    pub fn node_time_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add_signed(self.core.config.clock_offset_ms)
    }

    /// A restart without persistence, or a failover to a replica that never saw the scripts:
    /// the script cache empties. (Data loss is the caller's business: it decides what the new
    /// node holds.)
    pub fn flush_scripts(&mut self) {
        self.scripts.flush();
    }

    /// Runs one command for `session` at the caller's time `now_ms` and returns the reply in
    /// the session's protocol (RESP2 types only, unless the session sent `HELLO 3`).
    /// An empty `argv` is ignored by Redis; here it answers an empty array, which no client
    /// ever sees because the codec drops empty commands.
    pub fn exec(&mut self, now_ms: u64, session: &mut Session, argv: &[Vec<u8>]) -> Reply {
        if argv.is_empty() {
            return Reply::Array(Vec::new());
        }
        let now_ms = self.node_time_ms(now_ms);
        self.core.started_ms.get_or_insert(now_ms);
        self.core.active_expire(now_ms);
        let reply = self.dispatch(now_ms, session, argv);
        if let Reply::Error(line) = &reply {
            self.core.count_error(line);
        }
        // Commands build RESP3's types; a RESP2 client gets them as Redis flattens them.
        if session.resp == reply::Protocol::Resp2 && !reply.is_resp2() {
            return reply.to_resp2();
        }
        reply
    }

    fn dispatch(&mut self, now_ms: u64, session: &mut Session, argv: &[Vec<u8>]) -> Reply {
        let Some(spec) = command::lookup(&argv[0]) else {
            session.multi_failed |= session.multi.is_some();
            return reply::unknown_command(argv);
        };
        if let Some(info) = self.core.clients.get_mut(&session.id) {
            // Reuses the buffer: this runs for every command.
            info.last_command.clear();
            info.last_command.push_str(spec.name);
        }
        if !spec.arity_ok(argv.len()) {
            session.multi_failed |= session.multi.is_some();
            self.core
                .stats
                .commands
                .entry(spec.name)
                .or_default()
                .rejected_calls += 1;
            if spec.name == "exec" && session.multi.is_some() {
                // A rejected EXEC ends the transaction and says why, as Redis 7.0 does.
                session.multi = None;
                session.multi_failed = false;
                self.core.unwatch_all(session);
                return Reply::Error(
                    "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"
                        .to_owned(),
                );
            }
            return reply::wrong_arity(spec.name);
        }
        if let Some(queue) = session.multi.as_mut()
            && spec.flags & command::NO_QUEUE == 0
        {
            queue.push(argv.to_vec());
            return Reply::Status("QUEUED".to_owned());
        }
        if let Err(reply) = self.core.check_cluster(spec, argv) {
            self.core
                .stats
                .commands
                .entry(spec.name)
                .or_default()
                .rejected_calls += 1;
            session.multi_failed |= session.multi.is_some();
            return reply;
        }
        self.run(spec, now_ms, session, argv)
    }

    /// Runs a command that passed every admission check, and counts it.
    fn run(
        &mut self,
        spec: &'static Spec,
        now_ms: u64,
        session: &mut Session,
        argv: &[Vec<u8>],
    ) -> Reply {
        self.core.stats.total_commands_processed += 1;
        let reply = match spec.handler {
            Handler::Data(handler) => {
                let mut ctx = Ctx {
                    now_ms,
                    db: session.db,
                    in_script: false,
                    client_id: session.id,
                    resp: session.resp,
                };
                handler(&mut self.core, &mut ctx, argv)
            }
            Handler::Session(handler) => handler(self, session, now_ms, argv),
        };
        let stats = self.core.stats.commands.entry(spec.name).or_default();
        stats.calls += 1;
        if matches!(reply, Reply::Error(_)) {
            stats.failed_calls += 1;
        }
        reply
    }

    /// EXEC's body: runs the queued commands in order, each through the same checks a
    /// direct call would pass, and collects their replies.
    pub fn exec_queued(
        &mut self,
        now_ms: u64,
        session: &mut Session,
        queued: Vec<Vec<Vec<u8>>>,
    ) -> Reply {
        let mut replies = Vec::with_capacity(queued.len());
        for argv in queued {
            let reply = match command::lookup(&argv[0]) {
                Some(spec) => match self.core.check_cluster(spec, &argv) {
                    Ok(()) => self.run(spec, now_ms, session, &argv),
                    Err(reply) => reply,
                },
                None => reply::unknown_command(&argv),
            };
            if let Reply::Error(line) = &reply {
                self.core.count_error(line);
            }
            replies.push(reply);
        }
        Reply::Array(replies)
    }
}

impl Core {
    fn new(config: NodeConfig) -> Core {
        let rng = config.seed ^ 0x9E37_79B9_7F4A_7C15;
        Core {
            params: cmd::server::default_params(&config),
            config,
            dbs: (0..DATABASES).map(|_| Db::default()).collect(),
            stats: Stats::default(),
            clients: BTreeMap::new(),
            watched: BTreeMap::new(),
            rng,
            last_sweep_ms: 0,
            dirty: 0,
            started_ms: None,
        }
    }

    /// The database a call works on.
    pub fn db(&mut self, ctx: &Ctx) -> &mut Db {
        &mut self.dbs[ctx.db]
    }

    /// A read lookup: passive expiry, then the keyspace hit/miss counters.
    pub fn lookup_read(&mut self, ctx: &Ctx, key: &[u8]) -> Option<&db::Entry> {
        let entry = self.dbs[ctx.db].lookup(ctx.now_ms, key);
        if entry.is_some() {
            self.stats.keyspace_hits += 1;
        } else {
            self.stats.keyspace_misses += 1;
        }
        entry
    }

    /// Records that `key` in database `db` changed: WATCH sees it, and the dirty counter grows.
    pub fn signal_modified(&mut self, db: usize, key: &[u8]) {
        self.dirty += 1;
        if self.watched.is_empty() {
            return;
        }
        if let Some(watch) = self.watched.get_mut(&(db, key.to_vec())) {
            watch.versions.version += 1;
        }
    }

    /// Records that database `db`'s contents are about to be replaced: by nothing (FLUSHDB,
    /// FLUSHALL, `replaced_with` = `None`) or by database `replaced_with`'s (SWAPDB). Call it
    /// before the change. As Redis's `touchAllWatchedKeysInDb`: a watched key breaks its
    /// watchers when it is alive on either side; a key that is stale (expired, not yet
    /// deleted) and is replaced by nothing alive breaks only the watchers that saw it alive;
    /// a key absent before and absent or stale after changes nothing.
    pub fn signal_db_replaced(&mut self, db: usize, replaced_with: Option<usize>, now_ms: u64) {
        self.dirty += 1;
        let presence = |db: &db::Db, key: &[u8]| match db.peek(key) {
            None => Presence::Absent,
            Some(entry) if entry.is_stale(now_ms) => Presence::Stale,
            Some(_) => Presence::Live,
        };
        for ((watched_db, key), watch) in self.watched.iter_mut() {
            if *watched_db != db {
                continue;
            }
            let before = presence(&self.dbs[db], key);
            let after =
                replaced_with.map_or(Presence::Absent, |other| presence(&self.dbs[other], key));
            let versions = &mut watch.versions;
            match (before, after) {
                (Presence::Live, _) | (_, Presence::Live) => versions.version += 1,
                (Presence::Stale, _) => versions.stale_version += 1,
                (Presence::Absent, Presence::Stale) => versions.stale_marks += 1,
                (Presence::Absent, Presence::Absent) => {}
            }
        }
    }

    /// A uniformly random `u64` from the node's seeded generator (splitmix64).
    pub fn random_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random index below `bound` (which must be positive).
    pub fn random_below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "random_below needs a positive bound");
        let bound = u64::try_from(bound).expect("usize fits u64");
        usize::try_from(self.random_u64() % bound).expect("below a usize bound")
    }

    /// Starts watching `key` for `session`.
    pub fn watch(&mut self, ctx: &Ctx, session: &mut Session, key: &[u8]) {
        if session
            .watched
            .iter()
            .any(|watch| watch.db == ctx.db && watch.key == key)
        {
            return;
        }
        let expired = self.dbs[ctx.db]
            .peek(key)
            .is_some_and(|entry| entry.is_stale(ctx.now_ms));
        let watch = self.watched.entry((ctx.db, key.to_vec())).or_default();
        watch.watchers += 1;
        session.watched.push(SessionWatch {
            db: ctx.db,
            key: key.to_vec(),
            seen: watch.versions,
            expired,
        });
    }

    /// How many keys some client watches (tests: a session that ended left none behind).
    #[cfg(test)]
    pub(crate) fn watched_keys(&self) -> usize {
        self.watched.len()
    }

    /// Ends every watch of `session`.
    pub fn unwatch_all(&mut self, session: &mut Session) {
        for SessionWatch { db, key, .. } in session.watched.drain(..) {
            let index = (db, key);
            if let Some(watch) = self.watched.get_mut(&index) {
                watch.watchers -= 1;
                if watch.watchers == 0 {
                    self.watched.remove(&index);
                }
            }
        }
    }

    /// Whether any key `session` watches changed since WATCH, or expired since (Redis 7.0
    /// treats a watched key that expires as modified).
    pub fn watch_broken(&mut self, now_ms: u64, session: &Session) -> bool {
        session.watched.iter().any(|mine| {
            let Some(watch) = self.watched.get(&(mine.db, mine.key.clone())) else {
                return true;
            };
            let now = watch.versions;
            let seen_expired = mine.expired || now.stale_marks != mine.seen.stale_marks;
            let changed = now.version != mine.seen.version
                || (!seen_expired && now.stale_version != mine.seen.stale_version);
            let expired_now = self.dbs[mine.db]
                .peek(&mine.key)
                .is_some_and(|entry| entry.is_stale(now_ms));
            changed || (expired_now && !seen_expired)
        })
    }

    /// Cluster admission: every key in one slot (CROSSSLOT), and that slot ours (MOVED).
    pub fn check_cluster(&self, spec: &Spec, argv: &[Vec<u8>]) -> Result<(), Reply> {
        let Some(cluster) = &self.config.cluster else {
            return Ok(());
        };
        let keys = spec.keys(argv);
        let Some(first) = keys.first() else {
            return Ok(());
        };
        let slot = cluster::key_slot(first);
        if keys.iter().any(|key| cluster::key_slot(key) != slot) {
            return Err(err(msg::CROSSSLOT));
        }
        if cluster
            .owned
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&slot))
        {
            return Ok(());
        }
        let endpoint = cluster
            .endpoints
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|(_, _, endpoint)| endpoint.as_str())
            .unwrap_or(":0");
        Err(err(format!("MOVED {slot} {endpoint}")))
    }

    /// Runs the active expiry sweep if its period has passed. Bounded per database.
    fn active_expire(&mut self, now_ms: u64) {
        if now_ms < self.last_sweep_ms.saturating_add(ACTIVE_EXPIRE_PERIOD_MS) {
            return;
        }
        self.last_sweep_ms = now_ms;
        for db in 0..DATABASES {
            if self.dbs[db].expires_len() == 0 {
                continue;
            }
            let expired = self.dbs[db].sweep(now_ms, ACTIVE_EXPIRE_KEYS_MAX);
            self.stats.expired_keys += u64::try_from(expired.len()).expect("fits");
            for key in expired {
                self.signal_modified(db, &key);
            }
        }
    }

    fn count_error(&mut self, line: &str) {
        self.stats.total_error_replies += 1;
        let code = line.split(' ').next().unwrap_or("ERR").to_owned();
        *self.stats.errors.entry(code).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    /// A cluster node owning slots 0..=8191 of a two-node cluster.
    fn cluster_node() -> Model {
        let mut config = NodeConfig::standalone(1);
        config.cluster = Some(ClusterConfig {
            owned: vec![(0, 8191)],
            endpoints: vec![
                (0, 8191, "10.0.0.1:6379".to_owned()),
                (8192, 16383, "10.0.0.2:6379".to_owned()),
            ],
        });
        Model::new(config)
    }

    #[test]
    fn cluster_mode_redirects_and_refuses_cross_slot_commands() {
        // "foo" hashes to 12182 (the other node), "bar" to 5061 (ours); {user1000} keys share a slot.
        check_on(
            cluster_node(),
            &[
                ("CLUSTER KEYSLOT foo", int(12182)),
                (
                    "CLUSTER KEYSLOT {user1000}.following",
                    int(cluster::key_slot(b"user1000").into()),
                ),
                ("SET bar 1", ok()),
                ("GET foo", error("MOVED 12182 10.0.0.2:6379")),
                (
                    "MGET bar foo",
                    error("CROSSSLOT Keys in request don't hash to the same slot"),
                ),
                (
                    "EVAL return(1) 2 bar foo",
                    error("CROSSSLOT Keys in request don't hash to the same slot"),
                ),
                (
                    "SELECT 1",
                    error("ERR SELECT is not allowed in cluster mode"),
                ),
                ("READONLY", ok()),
                ("PING", status("PONG")),
            ],
        );
    }

    #[test]
    fn a_node_clock_offset_moves_time_and_expiry() {
        let mut config = NodeConfig::standalone(1);
        config.clock_offset_ms = 5_000;
        let mut model = Model::new(config);
        let mut session = model.connect("a");
        assert_eq!(
            run(&mut model, &mut session, 1_000, "TIME"),
            Reply::Array(vec![bulk("6"), bulk("0")])
        );
        assert_eq!(
            run(&mut model, &mut session, 1_000, "SET k v PXAT 5500"),
            ok()
        );
        assert_eq!(
            run(&mut model, &mut session, 1_000, "GET k"),
            Reply::Nil,
            "5500 is already past at node time 6000"
        );
    }

    #[test]
    fn a_restart_loses_the_script_cache() {
        let mut model = Model::new(NodeConfig::standalone(1));
        let mut session = model.connect("a");
        let Reply::Bulk(sha) = run(&mut model, &mut session, 0, "SCRIPT LOAD return(1)") else {
            panic!("SCRIPT LOAD answers the digest");
        };
        let sha = String::from_utf8(sha).unwrap();
        assert_eq!(
            run(&mut model, &mut session, 0, &format!("EVALSHA {sha} 0")),
            int(1)
        );
        model.flush_scripts();
        assert_eq!(
            run(&mut model, &mut session, 0, &format!("EVALSHA {sha} 0")),
            error(reply::msg::NOSCRIPT)
        );
    }
}
