//! The scripting commands and the Lua 5.1 host: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT.
//!
//! The limiters' whole point is one atomic script per decision, so this host has to answer
//! exactly as Redis 7.0.15's does: the same Lua 5.1, the same libraries (`bit` and `cjson` are
//! written here in Rust), the same sandbox (read-only globals, no `os`/`io`), the same
//! conversions between Lua values and replies, and error lines that match Redis byte for byte,
//! `ERR user_script:1: ... script: <sha>, on @user_script:1.` included.
//!
//! # How a script runs
//!
//! One Lua state lives as long as the script cache (SCRIPT FLUSH and a restart throw both
//! away, as Redis does). Compiled functions are cached by SHA1. To run one, the handler moves
//! the node's [`Core`] into the Lua state's app data (a spare `Core` stands in for it in the
//! `Model` meanwhile), so that `redis.call` (a Rust function called from Lua) can reach the
//! keyspace without a borrow across the Lua boundary and without creating closures per call.
//! Data commands run through their ordinary `Handler::Data` with the script's frozen start
//! time, which is why a key cannot expire in the middle of a script.
//!
//! Every run goes through a small piece of host Lua code (`RUN_SCRIPT`): it builds KEYS
//! and ARGV from strings pushed straight onto the Lua stack, calls the script under `xpcall`,
//! and classifies a returned table by Redis's rules in Lua, so the common replies (a status,
//! an error, a short array) cross into Rust as a tag and plain values rather than as a table
//! probed one field at a time through mlua. The step limit never fires in that host code.
//!
//! Errors keep Redis's shapes: `redis.call` raises a Redis error object (`{err=...}` in Lua),
//! the top-level error handler adds the source and line the way Redis's
//! `__redis__err__handler` does, and `pcall` hands scripts the same values Redis's does.
//!
//! # Known differences from Redis
//!
//! * `struct` is not provided (reading it is a nonexistent-global error).
//! * Library tables are read-only through proxies, so `pairs(string)`, `next(_G)` or
//!   `rawget(_G, 'redis')` see empty tables (writes, `rawset` and `setmetatable` on them fail
//!   exactly as in Redis).
//! * `SELECT` inside a script is refused ("This Redis command is not allowed from script"),
//!   where Redis allows it and changes the script's database.
//! * The `cjson` configuration functions (`cjson.encode_max_depth` and friends) are absent.
//! * `error({})` (a table without `err`) crashes Redis 7.0.15; here it answers
//!   `ERR unknown error script: ...`.
//! * A runaway script is killed after `script_steps_max` VM instructions (or once the Lua heap
//!   passes 256 MiB) with
//!   `ERR Script killed by the model's step limit (script_steps_max)... script: ...`.
//! * Replies nested deeper than 200 levels end in `ERR reached lua stack limit`, where Redis
//!   goes a few thousand levels deeper.

mod api;
mod bit;
mod cjson;
mod cmsgpack;
mod convert;
mod errors;

use std::collections::HashMap;
use std::sync::Arc;

use mlua::{
    Either, Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, Variadic,
    VmState,
};

use self::api::{create_redis_table, math_random, math_randomseed, read_only_proxy};
use self::convert::{ReplyFields, lossy, tagged_reply};
use self::errors::{
    api_error, describe, load_error_message, on_error, pcall_error, plain_error, running_error,
    table_error, uncount_error,
};
use super::busy::FunctionRun;
use super::busy::{self, ScriptWatch};
use super::cmd::{arg_i64, is_opt};
use super::command::{self, Handler, NOSCRIPT, READONLY, Spec, WRITE, session};
use super::functions::{self, FunctionFlags, FunctionInfo};
use super::reply::{Protocol, Reply, err, msg, ok, sanitize};
use super::{Core, Ctx, Model, NodeConfig, Session, cluster};
// Used by `bit`, `cjson` and the rest of the model by these paths.
pub(crate) use self::convert::{as_number, format_g, lua_string_to_number, lua_type_name};
pub(crate) use self::errors::where_error;

/// The scripting commands.
pub static COMMANDS: &[Spec] = &[
    session("eval", -3, NOSCRIPT, eval),
    session("evalsha", -3, NOSCRIPT, evalsha),
    session("eval_ro", -3, NOSCRIPT | READONLY, eval_ro),
    session("evalsha_ro", -3, NOSCRIPT | READONLY, evalsha_ro),
    session("script", -2, 0, script),
];

/// How many VM instructions pass between two step-limit checks. Small enough that a runaway
/// script stops promptly, large enough that the hook costs nothing measurable.
const STEP_CHECK_INTERVAL: u32 = 1000;

/// The Lua heap ceiling: a script that keeps growing tables or strings fails before it takes
/// the process down. (Redis has no such limit.) Enforced by mlua's allocator, so it holds for
/// every allocation, those made inside one C function too (`string.rep`, `gsub`,
/// `table.concat`), which an instruction-count hook never sees: an allocation past it fails at
/// once with Lua's "not enough memory".
#[cfg(not(test))]
const LUA_MEMORY_MAX: usize = 256 * 1024 * 1024;
#[cfg(test)]
const LUA_MEMORY_MAX: usize = 16 * 1024 * 1024;

/// FUNCTION LOAD's limit on the library code's own run, in Lua instructions (Redis: 500 ms).
const LOAD_STEPS_MAX: u64 = 50_000_000;

/// `lrand48`'s state at process start (X2, X1, X0 = 0x1234, 0xABCD, 0x330E).
const LRAND48_INITIAL: u64 = 0x1234_ABCD_330E;

/// The sandbox plumbing that is simplest in Lua itself: `pcall`, `xpcall` and
/// `coroutine.resume` hand scripts Redis's error values, and never swallow a step-limit kill.
/// `string.rep` first checks that its result fits in the heap left: the allocator limit
/// would stop it anyway, but only after building a quarter of a gigabyte piece by piece.
/// (The C function keeps the local name `rep`, so its own argument errors read as before.)
const WRAPPERS: &str = r#"
local env, killed, pcall_error, plain_error, heap_room = ...
local raw_type, raw_tostring = env.type, env.tostring
local rep = env.string.rep
env.string.rep = function(s, n)
  local kind = raw_type(s)
  if (kind == 'string' or kind == 'number') and raw_type(n) == 'number'
      and #raw_tostring(s) * n > heap_room() then
    env.error('not enough memory', 2)
  end
  local result = rep(s, n)
  return result
end
-- Redis's Lua refuses precompiled (binary) chunks: `loadstring` answers nil and a message.
local raw_loadstring, byte = env.loadstring, env.string.byte
env.loadstring = function(s, ...)
  if raw_type(s) == 'string' and byte(s, 1) == 27 then
    return nil, 'attempt to load a binary chunk'
  end
  return raw_loadstring(s, ...)
end
local raw_pcall, raw_xpcall, raw_error, select = env.pcall, env.xpcall, env.error, env.select
local coroutine = env.coroutine
local raw_resume = coroutine.resume
local function pcall_result(ok, ...)
  if ok then return ok, ... end
  if killed() then raw_error((...), 0) end
  return false, pcall_error((...))
end
local function plain_result(ok, ...)
  if ok then return ok, ... end
  if killed() then raw_error((...), 0) end
  return false, plain_error((...))
end
env.pcall = function(...)
  if select('#', ...) == 0 then return false, 'attempt to call a boolean value' end
  return pcall_result(raw_pcall(...))
end
env.xpcall = function(f, handler)
  return plain_result(raw_xpcall(f, function(e) return handler(plain_error(e)) end))
end
coroutine.resume = function(...) return plain_result(raw_resume(...)) end
"#;

/// The chunk name of [`RUN_SCRIPT`]: the step hook recognises host code by it.
const HOST_CHUNK_NAME: &str = "=[host]";

/// How many keys and arguments go to [`RUN_SCRIPT`] on the Lua stack; more are put in
/// tables from Rust first (the C API guarantees only a few thousand stack slots).
const STACK_ARGS_MAX: usize = 64;

/// How many items of a plain array reply [`RUN_SCRIPT`] hands back on the stack; a longer
/// array is converted by `convert::table_to_reply`.
const STACK_REPLY_MAX: usize = 64;

/// What [`RUN_SCRIPT`]'s first result says about the rest (the `local` numbers there).
mod tag {
    /// Not a table: the value itself follows.
    pub const VALUE: i64 = 0;
    /// `{err=<string>}`: the string follows.
    pub const ERROR: i64 = 1;
    /// `{ok=<string>}`: the string follows.
    pub const STATUS: i64 = 2;
    /// `{double=<number>}`: the number follows.
    pub const DOUBLE: i64 = 3;
    /// `{big_number=<string>}`: the string follows.
    pub const BIG_NUMBER: i64 = 4;
    /// `{verbatim_string={format=<string>, string=<string>}}`: the text, then the format.
    pub const VERBATIM: i64 = 5;
    /// A plain array of at most `STACK_REPLY_MAX` items: the items follow.
    pub const ARRAY: i64 = 6;
    /// Any other table (map, set, long, with a metatable): the table follows.
    pub const TABLE: i64 = 7;
    /// The script raised an error: what `xpcall` returned after `false` follows.
    pub const FAILED: i64 = 8;
}

/// Host code around every script run, compiled once per Lua state: sets KEYS and ARGV from
/// the keys and arguments pushed straight onto the stack, runs the script under `xpcall`
/// with the top-level error handler, and classifies the reply the way `table_to_reply`
/// does (same fields, same order, same types, raw reads only), so that most replies come
/// back to Rust as a tag and plain values instead of a table probed field by field.
const RUN_SCRIPT: &str = r#"
local env, xpcall, handler, rawget, type, unpack, select, getmetatable, stack_reply_max = ...
local VALUE, ERROR, STATUS, DOUBLE, BIG_NUMBER, VERBATIM, ARRAY, TABLE, FAILED =
  0, 1, 2, 3, 4, 5, 6, 7, 8
-- Without a metatable, `t.x` and `t[i]` read the table raw: no function call per probe.
-- Tables with one (rare) are converted in Rust.
local function classify(ok, value)
  if not ok then return FAILED, value end
  if type(value) ~= 'table' then return VALUE, value end
  if getmetatable(value) ~= nil then return TABLE, value end
  local field = value.err
  if field ~= nil and type(field) == 'string' then return ERROR, field end
  field = value.ok
  if field ~= nil and type(field) == 'string' then return STATUS, field end
  field = value.double
  if field ~= nil and type(field) == 'number' then return DOUBLE, field end
  field = value.big_number
  if field ~= nil and type(field) == 'string' then return BIG_NUMBER, field end
  field = value.verbatim_string
  if field ~= nil and type(field) == 'table' then
    local format, text = rawget(field, 'format'), rawget(field, 'string')
    if type(format) == 'string' and type(text) == 'string' then return VERBATIM, text, format end
  end
  field = value.map
  if field ~= nil and type(field) == 'table' then return TABLE, value end
  field = value.set
  if field ~= nil and type(field) == 'table' then return TABLE, value end
  -- Items that are tables themselves are converted in Rust, one by one.
  local count = 0
  while value[count + 1] ~= nil do
    if count == stack_reply_max then return TABLE, value end
    count = count + 1
  end
  return ARRAY, unpack(value, 1, count)
end
-- Keys and arguments are never nil, so `first == nil` means there are none. Each table is
-- sized for its items, as `create_sequence_from` sizes it. A negative count: Rust has set
-- KEYS and ARGV already (too many items for the stack).
local function run_script(script, key_count, first, ...)
  if key_count == 1 then
    env.KEYS = {first}
    env.ARGV = {...}
  elseif key_count == 0 then
    env.KEYS = {}
    if first == nil then env.ARGV = {} else env.ARGV = {first, ...} end
  elseif key_count > 1 then
    local all = {first, ...}
    env.KEYS = {unpack(all, 1, key_count)}
    env.ARGV = {select(key_count, ...)}
  end
  return classify(xpcall(script, handler))
end
-- A function (FCALL) gets its keys and arguments as its two parameters, no globals.
local function run_function(callback, keys, args)
  return classify(xpcall(function() return callback(keys, args) end, handler))
end
return run_script, run_function
"#;

/// The Lua interpreter and the script cache of one node.
pub struct ScriptHost {
    /// The node seed. `math.random` does not use it: Redis 7.0's generator starts from the
    /// same fixed state in every process, and the model reproduces that sequence.
    _seed: u64,
    /// Created on first use and dropped by [`ScriptHost::flush`], as Redis resets its Lua
    /// state on SCRIPT FLUSH. Lazy, because most models in tests never run a script.
    engine: Option<Engine>,
    /// `math.random`'s `lrand48` state. A C global in Redis, so SCRIPT FLUSH keeps it.
    random_state: u64,
    /// Stands in `Model::core` while the real one is inside the Lua state (allocated once).
    spare_core: Option<Core>,
    /// What other connections see of the running script (BUSY, SCRIPT KILL).
    watch: Arc<ScriptWatch>,
    /// The functions' own Lua state (Redis keeps one apart from EVAL's), built from
    /// `Model::functions` when first needed and rebuilt when it no longer matches them.
    functions: Option<FunctionEngine>,
}

impl ScriptHost {
    /// A host with an empty script cache.
    pub fn new(seed: u64) -> ScriptHost {
        ScriptHost {
            _seed: seed,
            engine: None,
            random_state: LRAND48_INITIAL,
            spare_core: None,
            watch: Arc::new(ScriptWatch::default()),
            functions: None,
        }
    }

    /// The running-script state a server reads without the model's lock.
    pub fn watch(&self) -> Arc<ScriptWatch> {
        Arc::clone(&self.watch)
    }

    /// Empties the script cache (SCRIPT FLUSH, restart, failover) and resets the Lua state.
    pub fn flush(&mut self) {
        self.engine = None;
    }

    /// Whether the cache holds a script with this SHA1 (either case).
    pub fn contains(&self, sha: &[u8]) -> bool {
        let Some(engine) = &self.engine else {
            return false;
        };
        normalize_sha(sha).is_some_and(|sha| engine.scripts.contains_key(&sha))
    }
}

/// The host's engine, started on first use.
fn started<'a>(
    engine: &'a mut Option<Engine>,
    watch: &Arc<ScriptWatch>,
) -> Result<&'a mut Engine, Reply> {
    if engine.is_none() {
        let fresh = Engine::new(Arc::clone(watch)).map_err(|error| {
            err(sanitize(&format!(
                "ERR could not start the Lua interpreter: {error}"
            )))
        })?;
        *engine = Some(fresh);
    }
    Ok(engine.as_mut().expect("set just above"))
}

/// Flags from a `#!lua flags=...` shebang. A script without a shebang runs in Redis's
/// compatibility mode (may write, may touch keys of several slots on this node).
#[derive(Clone, Copy, Debug, Default)]
struct ScriptFlags {
    shebang: bool,
    no_writes: bool,
    no_cluster: bool,
    allow_cross_slot: bool,
}

#[derive(Clone)]
struct CachedScript {
    function: Function,
    flags: ScriptFlags,
}

/// One Lua state with its cache and the handles the host calls every time.
struct Engine {
    lua: Lua,
    /// The real globals table, behind the read-only proxy scripts see as `_G`.
    env: Table,
    /// [`RUN_SCRIPT`]'s function: every script runs through it, under the unwrapped
    /// `xpcall` and the top-level error handler (Redis's `__redis__err__handler`, in Rust).
    run_script: Function,
    /// [`RUN_SCRIPT`]'s second function: runs an FCALL callback with its keys and arguments.
    run_function: Function,
    /// Compiled scripts by lowercase hex SHA1. Only probed, never iterated.
    scripts: HashMap<[u8; 40], CachedScript>,
    /// Field names probed on every table a script returns.
    reply_fields: ReplyFields,
}

/// The per-run state the Lua callbacks reach through the Lua state's app data.
struct Run {
    /// The node's keyspace while a script runs; `None` otherwise.
    core: Option<Core>,
    /// The context every command of the script runs with (time frozen at the start).
    ctx: Ctx,
    /// The running script's SHA1, for error lines.
    sha: String,
    /// EVAL_RO, or a `no-writes` shebang: write commands are refused.
    read_only: bool,
    /// Compatibility mode or `allow-cross-slot-keys`: no same-slot rule across calls.
    allow_cross_slot: bool,
    /// The slot the script's keys have used so far (cluster mode).
    slot: Option<u16>,
    /// Instructions executed, in steps of `STEP_CHECK_INTERVAL`.
    steps: u64,
    /// Instructions allowed.
    steps_max: u64,
    /// The step limit fired: nothing may catch the error any more.
    killed: bool,
    /// The error line the top-level handler built, with Redis's "do not count this error
    /// again" flag (errors that come from a command were counted when the command failed).
    failure: Option<(String, bool)>,
    /// `lrand48` state during the run.
    random_state: u64,
    /// Published to other connections; read for SCRIPT KILL.
    watch: Arc<ScriptWatch>,
    /// A library's code is running for FUNCTION LOAD: `redis.register_function` works and
    /// the load's own instruction limit applies.
    loading: bool,
    /// What the library being loaded has registered so far.
    registered: Vec<(FunctionInfo, Function)>,
}

/// The call context of a script or function that `session` runs at `now_ms` (EVAL and FCALL
/// alike). Every script starts in RESP2, whatever its caller speaks (`redis.setresp`).
fn script_ctx(now_ms: u64, session: &Session) -> Ctx {
    Ctx {
        now_ms,
        db: session.db,
        in_script: true,
        client_id: session.id,
        resp: Protocol::Resp2,
    }
}

impl Run {
    fn idle(watch: Arc<ScriptWatch>) -> Run {
        Run {
            core: None,
            ctx: Ctx {
                now_ms: 0,
                db: 0,
                in_script: true,
                client_id: 0,
                resp: Protocol::Resp2,
            },
            sha: String::new(),
            read_only: false,
            allow_cross_slot: true,
            slot: None,
            steps: 0,
            steps_max: u64::MAX,
            killed: false,
            failure: None,
            random_state: LRAND48_INITIAL,
            watch,
            loading: false,
            registered: Vec::new(),
        }
    }

    /// Runs one command for `redis.call`/`redis.pcall`, with the checks Redis's `scriptCall`
    /// makes. `Err` is a rejection text (it becomes an `ERR ...` error object).
    fn execute(&mut self, argv: &[Vec<u8>]) -> Result<Reply, String> {
        let Some(core) = self.core.as_mut() else {
            return Err("redis.call/pcall can only be called inside a script invocation".into());
        };
        let rejection = |core: &mut Core, spec: Option<&Spec>, text: &str| -> String {
            if let Some(spec) = spec {
                core.stats
                    .commands
                    .entry(spec.name)
                    .or_default()
                    .rejected_calls += 1;
            }
            core.count_error(&format!("ERR {text}"));
            text.to_owned()
        };
        let Some(spec) = command::lookup(&argv[0]) else {
            // Redis's `noscript` commands the model does not have: a script gets Redis's
            // refusal, not "unknown" (outside scripts they stay unknown commands).
            let text = if is_noscript_elsewhere(&argv[0]) {
                "This Redis command is not allowed from script"
            } else {
                "Unknown Redis command called from script"
            };
            return Err(rejection(core, None, text));
        };
        if spec.name == "cluster"
            && argv
                .get(1)
                .is_some_and(|sub| sub.eq_ignore_ascii_case(b"reset"))
        {
            // CLUSTER RESET is `noscript` in Redis; the other CLUSTER subcommands are not.
            return Err(rejection(
                core,
                Some(spec),
                "This Redis command is not allowed from script",
            ));
        }
        if !spec.arity_ok(argv.len()) {
            return Err(rejection(
                core,
                Some(spec),
                "Wrong number of args calling Redis command from script",
            ));
        }
        if spec.name == "select" {
            // Redis lets a script SELECT: it changes the database of the script's own later
            // calls only, never the calling client's.
            core.stats.total_commands_processed += 1;
            core.stats.commands.entry(spec.name).or_default().calls += 1;
            let reply = match crate::model::cmd::server::db_index(&argv[1]) {
                Ok(_) if core.config.cluster.is_some() && argv[1] != b"0" => {
                    Reply::Error("ERR SELECT is not allowed in cluster mode".to_owned())
                }
                Ok(index) => {
                    self.ctx.db = index;
                    Reply::Status("OK".to_owned())
                }
                Err(reply) => reply,
            };
            return Ok(reply);
        }
        let handler = match spec.handler {
            Handler::Data(handler) if spec.flags & NOSCRIPT == 0 => handler,
            _ => {
                return Err(rejection(
                    core,
                    Some(spec),
                    "This Redis command is not allowed from script",
                ));
            }
        };
        if self.read_only && spec.flags & WRITE != 0 {
            return Err(rejection(
                core,
                Some(spec),
                "Write commands are not allowed from read-only scripts.",
            ));
        }
        if let Some(cluster_config) = &core.config.cluster {
            let keys = spec.keys(argv);
            if let Some(first) = keys.first() {
                let slot = cluster::key_slot(first);
                let one_slot = keys.iter().all(|key| cluster::key_slot(key) == slot);
                let local = cluster_config
                    .owned
                    .iter()
                    .any(|(low, high)| (*low..=*high).contains(&slot));
                if !one_slot || !local {
                    return Err(rejection(
                        core,
                        Some(spec),
                        "Script attempted to access a non local key in a cluster node",
                    ));
                }
                if !self.allow_cross_slot {
                    match self.slot {
                        None => self.slot = Some(slot),
                        Some(seen) if seen != slot => {
                            return Err(rejection(
                                core,
                                Some(spec),
                                "Script attempted to access keys that do not hash to the same slot",
                            ));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        if spec.flags & WRITE != 0 {
            // Redis's SCRIPT_WRITE_DIRTY: set before the command runs, whatever it does.
            self.watch.mark_wrote();
        }
        core.stats.total_commands_processed += 1;
        let mut ctx = self.ctx.clone();
        let reply = handler(core, &mut ctx, argv);
        let stats = core.stats.commands.entry(spec.name).or_default();
        stats.calls += 1;
        if let Reply::Error(line) = &reply {
            stats.failed_calls += 1;
            core.count_error(line);
        }
        Ok(reply)
    }
}

impl Engine {
    fn new(watch: Arc<ScriptWatch>) -> mlua::Result<Engine> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::new(),
        )?;
        lua.set_app_data(Run::idle(watch));
        let env = lua.globals();
        // Redis's base library has no file access and no print.
        for name in ["dofile", "loadfile", "print"] {
            env.raw_set(name, Value::Nil)?;
        }
        let math: Table = env.raw_get("math")?;
        math.raw_set("random", lua.create_function(math_random)?)?;
        math.raw_set("randomseed", lua.create_function(math_randomseed)?)?;
        env.raw_set("bit", bit::create(&lua)?)?;
        env.raw_set("cjson", cjson::create(&lua)?)?;
        env.raw_set("cmsgpack", cmsgpack::create(&lua)?)?;
        env.raw_set("redis", create_redis_table(&lua)?)?;
        let xpcall: Function = env.raw_get("xpcall")?;

        let killed = lua.create_function(|lua, _: MultiValue| {
            let run = lua
                .app_data_ref::<Run>()
                .expect("the run state is installed when the engine starts");
            Ok(run.killed)
        })?;
        let install = lua
            .load(WRAPPERS)
            .set_name("=[C]")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()?;
        install.call::<()>((
            env.clone(),
            killed,
            lua.create_function(pcall_error)?,
            lua.create_function(plain_error)?,
            lua.create_function(|lua, _: MultiValue| {
                // As a float: `#s * n` in Lua is a double, and may be far past usize.
                Ok(LUA_MEMORY_MAX.saturating_sub(lua.used_memory()) as f64)
            })?,
        ))?;

        // The sandbox: every library table and the globals are read-only, and reading an
        // undefined global is an error.
        let refuse_write = lua.create_function(|lua, _: MultiValue| -> mlua::Result<()> {
            Err(where_error(lua, "Attempt to modify a readonly table"))
        })?;
        // `rawset` and `setmetatable` bypass `__newindex`, so they recognise the proxies
        // themselves, and fail from C as Redis's read-only tables do (no position prefix).
        let guard = refuse_write.clone();
        let is_read_only = move |table: &Table| -> mlua::Result<bool> {
            let Some(meta) = table.metatable() else {
                return Ok(false);
            };
            let newindex: Value = meta.raw_get("__newindex")?;
            Ok(matches!(&newindex, Value::Function(function) if *function == guard))
        };
        let read_only_error =
            || mlua::Error::RuntimeError("Attempt to modify a readonly table".into());
        let check_table = |lua: &Lua, args: &[Value], function: &str| -> mlua::Result<Table> {
            match args.first() {
                Some(Value::Table(table)) => Ok(table.clone()),
                other => {
                    let got = other.map_or("no value", lua_type_name);
                    Err(where_error(
                        lua,
                        format!("bad argument #1 to '{function}' (table expected, got {got})"),
                    ))
                }
            }
        };
        let rawset_guarded = is_read_only.clone();
        let rawset = lua.create_function(move |lua, args: Variadic<Value>| {
            let table = check_table(lua, &args, "rawset")?;
            if rawset_guarded(&table)? {
                return Err(read_only_error());
            }
            let key = args.get(1).cloned().unwrap_or(Value::Nil);
            let value = args.get(2).cloned().unwrap_or(Value::Nil);
            table.raw_set(key, value)?;
            Ok(table)
        })?;
        env.raw_set("rawset", rawset)?;
        let setmetatable = lua.create_function(move |lua, args: Variadic<Value>| {
            let table = check_table(lua, &args, "setmetatable")?;
            if is_read_only(&table)? {
                return Err(read_only_error());
            }
            let meta = match args.get(1) {
                Some(Value::Table(meta)) => Some(meta.clone()),
                Some(Value::Nil) => None,
                _ => {
                    return Err(where_error(
                        lua,
                        "bad argument #2 to 'setmetatable' (nil or table expected)",
                    ));
                }
            };
            let protected = table
                .metatable()
                .map(|current| current.raw_get::<Value>("__metatable"))
                .transpose()?
                .is_some_and(|field| !field.is_nil());
            if protected {
                return Err(where_error(lua, "cannot change a protected metatable"));
            }
            table.set_metatable(meta)?;
            Ok(table)
        })?;
        env.raw_set("setmetatable", setmetatable)?;
        // Lua 5.1 has it, Redis's sandbox does not.
        env.raw_set("newproxy", Value::Nil)?;
        for name in [
            "string",
            "table",
            "math",
            "coroutine",
            "redis",
            "bit",
            "cjson",
            "cmsgpack",
        ] {
            let real: Table = env.raw_get(name)?;
            env.raw_set(name, read_only_proxy(&lua, real, &refuse_write)?)?;
        }
        // Method calls on strings (`s:upper()`) go through the same read-only `string`.
        let string_meta = lua
            .load("local proxy = ... getmetatable('').__index = proxy")
            .set_name("=[C]")
            .into_function()?;
        string_meta.call::<()>(env.raw_get::<Table>("string")?)?;
        let missing_global = lua.create_function(|lua, (_, name): (Value, Value)| {
            let name = match &name {
                Value::String(text) => lossy(&text.as_bytes()),
                other => as_number(other)
                    .map_or_else(|| lua_type_name(other).to_owned(), |n| format_g(n, 14)),
            };
            Err::<(), _>(where_error(
                lua,
                format!("Script attempted to access nonexistent global variable '{name}'"),
            ))
        })?;
        let env_meta = lua.create_table()?;
        env_meta.raw_set("__index", missing_global)?;
        env.set_metatable(Some(env_meta))?;
        let globals = read_only_proxy(&lua, env.clone(), &refuse_write)?;
        env.raw_set("_G", globals.clone())?;
        lua.set_globals(globals)?;

        let handler = lua.create_function(on_error)?;
        let (run_script, run_function): (Function, Function) = lua
            .load(RUN_SCRIPT)
            .set_name(HOST_CHUNK_NAME)
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()?
            .call((
                env.clone(),
                xpcall,
                handler,
                env.raw_get::<Function>("rawget")?,
                env.raw_get::<Function>("type")?,
                env.raw_get::<Function>("unpack")?,
                env.raw_get::<Function>("select")?,
                env.raw_get::<Function>("getmetatable")?,
                STACK_REPLY_MAX,
            ))?;
        // A global hook: coroutines a script creates inherit it, so they are limited too.
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(STEP_CHECK_INTERVAL),
            |lua, debug| {
                let mut run = lua
                    .app_data_mut::<Run>()
                    .expect("the run state is installed when the engine starts");
                run.steps = run.steps.saturating_add(u64::from(STEP_CHECK_INTERVAL));
                if run.loading {
                    // FUNCTION LOAD's own limit (Redis: 500 ms of wall clock; here a fixed
                    // number of instructions, so that it is deterministic).
                    if run.steps > LOAD_STEPS_MAX {
                        return Err(table_error("ERR FUNCTION LOAD timeout".to_owned(), false));
                    }
                    return Ok(VmState::Continue);
                }
                if run.core.is_none() {
                    return Ok(VmState::Continue);
                }
                if run.watch.has_calls() {
                    // Other clients' allow-busy commands (MULTI, WATCH, HELLO, ...) run here,
                    // on the live keyspace, as Redis runs them from its script hook. A
                    // stand-in script host and function registry: they never touch either.
                    let core = run.core.take().expect("checked just above");
                    let mut model = Model {
                        core,
                        scripts: ScriptHost::new(0),
                        functions: super::functions::Library::new(),
                    };
                    let watch = Arc::clone(&run.watch);
                    watch.serve_calls(&mut model, run.ctx.now_ms);
                    run.core = Some(model.core);
                }
                let message = if run.watch.kill_requested() {
                    busy::KILLED.to_owned()
                } else if run.steps > run.steps_max {
                    format!(
                        "ERR Script killed by the model's step limit (script_steps_max {})...",
                        run.steps_max
                    )
                } else {
                    return Ok(VmState::Continue);
                };
                // Only the script is killed: a kill in the host code around it (setting
                // KEYS and ARGV, classifying the reply) would escape the script's `xpcall`.
                // The next check inside a script kills it instead.
                if debug.source().source.as_deref() == Some(HOST_CHUNK_NAME) {
                    return Ok(VmState::Continue);
                }
                run.killed = true;
                Err(table_error(message, false))
            },
        )?;
        let reply_fields = ReplyFields::new(&lua)?;
        // Last, so that setting up the sandbox never runs into it.
        lua.set_memory_limit(LUA_MEMORY_MAX)?;
        Ok(Engine {
            reply_fields,
            lua,
            env,
            run_script,
            run_function,
            scripts: HashMap::new(),
        })
    }

    /// Compiles and caches a script body (EVAL, SCRIPT LOAD), or answers Redis's error.
    fn compile(&mut self, body: &[u8]) -> Result<[u8; 40], Reply> {
        let sha = sha1_hex(body);
        if self.scripts.contains_key(&sha) {
            return Ok(sha);
        }
        let (flags, shebang_len) =
            parse_shebang(body).map_err(|message| err(sanitize(&format!("ERR {message}"))))?;
        let function = self
            .lua
            .load(&body[shebang_len..])
            .set_name("@user_script")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
            .map_err(|error| {
                let message = match error {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => other.to_string(),
                };
                err(sanitize(&format!(
                    "ERR Error compiling script (new function): {message}"
                )))
            })?;
        let script = CachedScript { function, flags };
        self.scripts.insert(sha, script);
        Ok(sha)
    }

    /// Runs a compiled script against `core` and converts its result.
    /// `spare_core` stands in `Model::core` while the real one is inside the Lua state.
    fn run(
        &self,
        core: &mut Core,
        spare_core: &mut Option<Core>,
        callee: Callee<'_>,
        start: RunStart<'_>,
    ) -> Reply {
        let spare = spare_core
            .take()
            .unwrap_or_else(|| Core::new(NodeConfig::standalone(0)));
        let steps_max = core.config.limits.script_steps_max;
        let threshold_ms = core
            .params
            .get("busy-reply-threshold")
            .and_then(|value| value.parse().ok())
            .unwrap_or(busy::BUSY_REPLY_THRESHOLD_MS_DEFAULT);
        let real_core = std::mem::replace(core, spare);
        {
            let mut run = self
                .lua
                .app_data_mut::<Run>()
                .expect("the run state is installed when the engine starts");
            run.core = Some(real_core);
            run.ctx = start.ctx;
            // Reuses the buffer: a SHA1 in hex is ASCII, so nothing is allocated per run.
            run.sha.clear();
            match std::str::from_utf8(start.name) {
                Ok(sha) => run.sha.push_str(sha),
                Err(_) => run.sha.push_str(&String::from_utf8_lossy(start.name)),
            }
            run.read_only = start.read_only;
            run.allow_cross_slot = start.allow_cross_slot;
            run.slot = start.slot;
            run.steps = 0;
            run.steps_max = steps_max;
            run.killed = false;
            run.failure = None;
            run.random_state = *start.random_state;
            let now_ms = run.ctx.now_ms;
            run.watch.start(now_ms, threshold_ms);
        }
        let outcome = match callee {
            Callee::Script(script) => self.call(script, start.keys, start.args),
            Callee::Function(callback) => self.call_function(callback, start.keys, start.args),
        };
        let (real_core, failure, resp) = {
            let mut run = self
                .lua
                .app_data_mut::<Run>()
                .expect("the run state is installed when the engine starts");
            *start.random_state = run.random_state;
            run.watch.finish();
            let real_core = run
                .core
                .take()
                .expect("the core stays in the run state until the script ends");
            (real_core, run.failure.take(), run.ctx.resp)
        };
        *spare_core = Some(std::mem::replace(core, real_core));
        if self.lua.used_memory() > LUA_MEMORY_MAX / 2 {
            // Lua 5.1 has no emergency collection: garbage a failed or greedy script left
            // would count against the next script's allocations until the next cycle.
            let _ = self.lua.gc_collect();
        }
        match outcome {
            Ok((tag::FAILED, value, _)) => match failure {
                Some((line, ignore_stats)) => {
                    if ignore_stats {
                        // The command's own error was counted already; `Model::exec` counts
                        // this reply again, so take one off first.
                        uncount_error(core, &line);
                    }
                    Reply::Error(line)
                }
                None => running_error(&String::from_utf8_lossy(start.name), &describe(&value)),
            },
            Ok((tag, first, rest)) => tagged_reply(tag, &first, &rest, &self.reply_fields, resp),
            Err(error) => running_error(&String::from_utf8_lossy(start.name), &error.to_string()),
        }
    }

    /// Runs the script through [`RUN_SCRIPT`]: its tag and values (the first one apart, so
    /// that the common one-value answers need no vector).
    fn call(
        &self,
        script: &CachedScript,
        keys: &[Vec<u8>],
        args: &[Vec<u8>],
    ) -> mlua::Result<(i64, Value, Variadic<Value>)> {
        if keys.len() + args.len() > STACK_ARGS_MAX {
            self.env.raw_set("KEYS", self.string_array(keys)?)?;
            self.env.raw_set("ARGV", self.string_array(args)?)?;
            // A negative key count: KEYS and ARGV are set already.
            return self.run_script.call((&script.function, -1));
        }
        // UTF-8 items (nearly all) are pushed as `&str`, straight onto the stack with no
        // registry handle; other bytes become Lua strings first. The strings are the same.
        let mut items = Variadic::with_capacity(keys.len() + args.len());
        for item in keys.iter().chain(args) {
            items.push(match std::str::from_utf8(item) {
                Ok(text) => Either::Left(text),
                Err(_) => Either::Right(self.lua.create_string(item)?),
            });
        }
        let key_count = i64::try_from(keys.len()).expect("at most STACK_ARGS_MAX keys");
        self.run_script.call((&script.function, key_count, items))
    }

    /// Runs an FCALL callback through [`RUN_SCRIPT`]'s `run_function`.
    fn call_function(
        &self,
        callback: &Function,
        keys: &[Vec<u8>],
        args: &[Vec<u8>],
    ) -> mlua::Result<(i64, Value, Variadic<Value>)> {
        self.run_function
            .call((callback, self.string_array(keys)?, self.string_array(args)?))
    }

    fn string_array(&self, items: &[Vec<u8>]) -> mlua::Result<Table> {
        // Keys and arguments are nearly always UTF-8. As `&str` each one is pushed straight
        // onto the Lua stack under one lock, with no registry handle made and dropped per
        // string; the Lua string holds the same bytes either way.
        if let Some(texts) = items
            .iter()
            .map(|item| std::str::from_utf8(item).ok())
            .collect::<Option<Vec<&str>>>()
        {
            return self.lua.create_sequence_from(texts);
        }
        let table = self.lua.create_table_with_capacity(items.len(), 0)?;
        for (index, item) in items.iter().enumerate() {
            table.raw_set(index + 1, self.lua.create_string(item)?)?;
        }
        Ok(table)
    }
}

/// Blocking and other commands Redis 7.0 flags `noscript` that the model does not have.
fn is_noscript_elsewhere(name: &[u8]) -> bool {
    [
        "blpop",
        "brpop",
        "brpoplpush",
        "blmove",
        "blmpop",
        "bzpopmin",
        "bzpopmax",
        "bzmpop",
        "subscribe",
        "psubscribe",
        "ssubscribe",
        "unsubscribe",
        "punsubscribe",
        "sunsubscribe",
        "monitor",
        "sync",
        "psync",
        "wait",
    ]
    .iter()
    .any(|known| name.eq_ignore_ascii_case(known.as_bytes()))
}

/// What runs: an EVAL script or an FCALL callback.
#[derive(Clone, Copy)]
enum Callee<'a> {
    Script(&'a CachedScript),
    Function(&'a Function),
}

/// What one script run needs besides the script itself.
struct RunStart<'a> {
    ctx: Ctx,
    /// The SHA1 (EVAL) or the function's name (FCALL), for error lines.
    name: &'a [u8],
    keys: &'a [Vec<u8>],
    args: &'a [Vec<u8>],
    read_only: bool,
    allow_cross_slot: bool,
    slot: Option<u16>,
    random_state: &'a mut u64,
}

fn sha1_hex(body: &[u8]) -> [u8; 40] {
    let hex = sha1_smol::Sha1::from(body).digest().to_string();
    let mut sha = [0u8; 40];
    sha.copy_from_slice(&hex.as_bytes()[..40]);
    sha
}

/// A client-supplied digest in the cache's form (lowercase), if it has the right length.
fn normalize_sha(sha: &[u8]) -> Option<[u8; 40]> {
    let mut normalized: [u8; 40] = sha.try_into().ok()?;
    normalized.make_ascii_lowercase();
    Some(normalized)
}

/// Redis's `evalExtractShebangFlags`: the flags and the length of the `#!` line (its line
/// feed stays in the body, so line numbers do not move).
fn parse_shebang(body: &[u8]) -> Result<(ScriptFlags, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((ScriptFlags::default(), 0));
    }
    let Some(end) = body.iter().position(|&byte| byte == b'\n') else {
        return Err("Invalid script shebang".to_owned());
    };
    let line = lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let Some(engine) = parts.next() else {
        return Err("Invalid engine in script shebang".to_owned());
    };
    if engine != "#!lua" {
        return Err(format!("Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = ScriptFlags {
        shebang: true,
        ..ScriptFlags::default()
    };
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("Unknown lua shebang option: {part}"));
        };
        if list.is_empty() {
            continue;
        }
        for flag in list.split(',') {
            match flag {
                "no-writes" => flags.no_writes = true,
                "allow-oom" | "allow-stale" => {}
                "no-cluster" => flags.no_cluster = true,
                "allow-cross-slot-keys" => flags.allow_cross_slot = true,
                other => return Err(format!("Unexpected flag in script shebang: {other}")),
            }
        }
    }
    Ok((flags, end))
}

fn eval(model: &mut Model, session: &mut Session, now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    eval_generic(model, session, now_ms, argv, false, false)
}

fn evalsha(model: &mut Model, session: &mut Session, now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    eval_generic(model, session, now_ms, argv, true, false)
}

fn eval_ro(model: &mut Model, session: &mut Session, now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    eval_generic(model, session, now_ms, argv, false, true)
}

fn evalsha_ro(model: &mut Model, session: &mut Session, now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    eval_generic(model, session, now_ms, argv, true, true)
}

fn eval_generic(
    model: &mut Model,
    session: &mut Session,
    now_ms: u64,
    argv: &[Vec<u8>],
    by_sha: bool,
    read_only_command: bool,
) -> Reply {
    if by_sha && argv[1].len() != 40 {
        return err(msg::NOSCRIPT);
    }
    let key_count = match arg_i64(&argv[2]) {
        Ok(count) => count,
        Err(reply) => return reply,
    };
    let available = argv.len() - 3;
    if key_count > i64::try_from(available).unwrap_or(i64::MAX) {
        return err("ERR Number of keys can't be greater than number of args");
    }
    let Ok(key_count) = usize::try_from(key_count) else {
        return err("ERR Number of keys can't be negative");
    };
    let Model { core, scripts, .. } = model;
    let ScriptHost {
        engine,
        random_state,
        spare_core,
        watch,
        ..
    } = scripts;
    let engine = match started(engine, watch) {
        Ok(engine) => engine,
        Err(reply) => return reply,
    };
    let sha = if by_sha {
        normalize_sha(&argv[1]).expect("length checked above")
    } else {
        match engine.compile(&argv[1]) {
            Ok(sha) => sha,
            Err(reply) => return reply,
        }
    };
    let Some(script) = engine.scripts.get(&sha) else {
        return err(msg::NOSCRIPT);
    };
    let flags = script.flags;
    if flags.shebang {
        if flags.no_cluster && core.config.cluster.is_some() {
            return err("ERR Can not run script on cluster, 'no-cluster' flag is set.");
        }
        if !flags.no_writes && read_only_command {
            return err("ERR Can not execute a script with write flag using *_ro command.");
        }
    }
    let keys = &argv[3..3 + key_count];
    let start = RunStart {
        ctx: script_ctx(now_ms, session),
        name: &sha,
        keys,
        args: &argv[3 + key_count..],
        read_only: read_only_command || (flags.shebang && flags.no_writes),
        allow_cross_slot: !flags.shebang || flags.allow_cross_slot,
        // Only cluster mode checks slots (in `Run::execute`): no CRC16 per run otherwise.
        slot: match core.config.cluster {
            Some(_) => keys.first().map(|key| cluster::key_slot(key)),
            None => None,
        },
        random_state,
    };
    watch.describe_function(None);
    engine.run(core, spare_core, Callee::Script(script), start)
}

/// SCRIPT HELP's lines, as Redis 7.0.15 sends them.
const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

fn script(model: &mut Model, _session: &mut Session, _now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    let subcommand = argv[1].to_ascii_lowercase();
    let (name, arity): (&str, i64) = match subcommand.as_slice() {
        b"load" => ("load", 3),
        b"exists" => ("exists", -3),
        b"flush" => ("flush", -2),
        b"kill" => ("kill", 2),
        b"help" => ("help", 2),
        b"debug" => ("debug", 3),
        _ => {
            let typed = &argv[1][..argv[1].len().min(128)];
            return err(sanitize(&format!(
                "ERR unknown subcommand '{}'. Try SCRIPT HELP.",
                lossy(typed)
            )));
        }
    };
    let argc = i64::try_from(argv.len()).unwrap_or(i64::MAX);
    if (arity > 0 && argc != arity) || argc < -arity {
        return err(format!(
            "ERR wrong number of arguments for 'script|{name}' command"
        ));
    }
    match name {
        "load" => match started(&mut model.scripts.engine, &model.scripts.watch) {
            Ok(engine) => match engine.compile(&argv[2]) {
                Ok(sha) => Reply::Bulk(sha.to_vec()),
                Err(reply) => reply,
            },
            Err(reply) => reply,
        },
        "exists" => Reply::Array(
            argv[2..]
                .iter()
                .map(|sha| Reply::Integer(i64::from(model.scripts.contains(sha))))
                .collect(),
        ),
        "flush" => {
            let mode_ok = match argv.len() {
                2 => true,
                3 => is_opt(&argv[2], "async") || is_opt(&argv[2], "sync"),
                _ => false,
            };
            if !mode_ok {
                return err("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
            model.scripts.flush();
            ok()
        }
        "kill" => err("NOTBUSY No scripts in execution right now."),
        "help" => Reply::Array(
            SCRIPT_HELP
                .iter()
                .map(|line| Reply::Status((*line).to_owned()))
                .collect(),
        ),
        _ => {
            if is_opt(&argv[2], "no") {
                ok()
            } else if is_opt(&argv[2], "yes") || is_opt(&argv[2], "sync") {
                err("ERR SCRIPT DEBUG YES/SYNC is not supported by the model (no Lua debugger)")
            } else {
                err("ERR Use SCRIPT DEBUG YES/SYNC/NO")
            }
        }
    }
}

/// The Lua state that runs Redis Functions.
///
/// Every library's code runs with one environment table, empty and read-only, whose
/// metatable's `__index` is switched: during FUNCTION LOAD it is the load API (a `redis`
/// table with only `register_function`, `log`, the log levels and the version; any other
/// name is a nonexistent global), and otherwise the full sandbox of EVAL. The callbacks a
/// library registers keep that environment, so at FCALL time they see the full API, as in
/// Redis's `luaEngineCreate`.
struct FunctionEngine {
    engine: Engine,
    /// Callbacks of the linked libraries, by lowercase function name. Only probed.
    callbacks: HashMap<String, Function>,
    /// Callbacks compiled by the FUNCTION command now running, not linked yet.
    pending: HashMap<String, Function>,
    /// The `Library::stamp` the callbacks match.
    stamp: u64,
    library_env: Table,
    globals_meta: Table,
    load_api: Table,
    run_api: Table,
}

impl FunctionEngine {
    fn new(watch: Arc<ScriptWatch>) -> mlua::Result<FunctionEngine> {
        let engine = Engine::new(watch)?;
        let lua = &engine.lua;
        let run_api: Table = engine.env.raw_get("_G")?;
        let refuse_write: Function = run_api
            .metatable()
            .ok_or_else(|| mlua::Error::RuntimeError("globals proxy has no metatable".into()))?
            .raw_get("__newindex")?;
        let missing_global: Function = engine
            .env
            .metatable()
            .ok_or_else(|| mlua::Error::RuntimeError("globals have no metatable".into()))?
            .raw_get("__index")?;
        let missing = |table: &Table| -> mlua::Result<()> {
            let meta = lua.create_table()?;
            meta.raw_set("__index", missing_global.clone())?;
            table.set_metatable(Some(meta))?;
            Ok(())
        };
        let redis: Table = engine.env.raw_get("redis")?;
        let load_redis = lua.create_table()?;
        load_redis.raw_set("register_function", lua.create_function(register_function)?)?;
        for name in [
            "log",
            "LOG_DEBUG",
            "LOG_VERBOSE",
            "LOG_NOTICE",
            "LOG_WARNING",
            "REDIS_VERSION",
            "REDIS_VERSION_NUM",
        ] {
            load_redis.raw_set(name, redis.get::<Value>(name)?)?;
        }
        missing(&load_redis)?;
        let load_globals = lua.create_table()?;
        load_globals.raw_set("redis", read_only_proxy(lua, load_redis, &refuse_write)?)?;
        missing(&load_globals)?;
        let load_api = read_only_proxy(lua, load_globals, &refuse_write)?;
        let library_env = lua.create_table()?;
        let globals_meta = lua.create_table()?;
        globals_meta.raw_set("__index", run_api.clone())?;
        globals_meta.raw_set("__newindex", refuse_write)?;
        globals_meta.raw_set("__metatable", lua.create_table()?)?;
        library_env.set_metatable(Some(globals_meta.clone()))?;
        Ok(FunctionEngine {
            engine,
            callbacks: HashMap::new(),
            pending: HashMap::new(),
            stamp: 0,
            library_env,
            globals_meta,
            load_api,
            run_api,
        })
    }

    /// Compiles a library's code (after its `#!` line) and runs it with the load API: what
    /// it registered, its callbacks kept as pending. Errors are Redis's texts without `ERR`.
    fn load_library(&mut self, body: &[u8]) -> Result<Vec<FunctionInfo>, String> {
        let chunk = self
            .engine
            .lua
            .load(body)
            .set_name("@user_function")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .set_environment(self.library_env.clone())
            .into_function()
            .map_err(|error| {
                let message = match error {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => other.to_string(),
                };
                format!("Error compiling function: {message}")
            })?;
        let set_index = |value: &Table| {
            self.globals_meta
                .raw_set("__index", value.clone())
                .map_err(|error| format!("Error registering functions: {error}"))
        };
        {
            let mut run = self
                .engine
                .lua
                .app_data_mut::<Run>()
                .expect("the run state is installed when the engine starts");
            run.loading = true;
            run.steps = 0;
            run.registered.clear();
        }
        set_index(&self.load_api)?;
        let outcome = chunk.call::<()>(());
        set_index(&self.run_api)?;
        let registered = {
            let mut run = self
                .engine
                .lua
                .app_data_mut::<Run>()
                .expect("the run state is installed when the engine starts");
            run.loading = false;
            std::mem::take(&mut run.registered)
        };
        if let Err(error) = outcome {
            return Err(format!(
                "Error registering functions: {}",
                load_error_message(&error)
            ));
        }
        let mut infos = Vec::with_capacity(registered.len());
        for (info, callback) in registered {
            self.pending
                .insert(info.name.to_ascii_lowercase(), callback);
            infos.push(info);
        }
        Ok(infos)
    }
}

/// `redis.register_function`, positional (`name, callback`) or named (a table with
/// `function_name`, `callback`, `flags`, `description`), with Redis's errors.
fn register_function(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    let loading = lua.app_data_ref::<Run>().is_some_and(|run| run.loading);
    if !loading {
        return Err(api_error(
            "redis.register_function can only be called on FUNCTION LOAD command",
        ));
    }
    let args: Vec<Value> = args.into_iter().collect();
    // `lua_isstring`: strings and numbers (a number as `%.14g`).
    let string_of = |value: &Value| -> Option<Vec<u8>> {
        match value {
            Value::String(text) => Some(text.as_bytes().to_vec()),
            Value::Integer(_) | Value::Number(_) => {
                as_number(value).map(|number| format_g(number, 14).into_bytes())
            }
            _ => None,
        }
    };
    let (name, description, flags, callback) = match args.as_slice() {
        [Value::Table(named)] => {
            let mut name = None;
            let mut description = None;
            let mut flags = FunctionFlags::default();
            let mut callback = None;
            for pair in named.clone().pairs::<Value, Value>() {
                let (key, value) = pair?;
                let Some(key) = string_of(&key) else {
                    return Err(api_error(
                        "named argument key given to redis.register_function is not a string",
                    ));
                };
                match key.to_ascii_lowercase().as_slice() {
                    b"function_name" => match string_of(&value) {
                        Some(text) => name = Some(text),
                        None => {
                            return Err(api_error(
                                "function_name argument given to redis.register_function must be a string",
                            ));
                        }
                    },
                    b"description" => match string_of(&value) {
                        Some(text) => description = Some(text),
                        None => {
                            return Err(api_error(
                                "description argument given to redis.register_function must be a string",
                            ));
                        }
                    },
                    b"callback" => match value {
                        Value::Function(function) => callback = Some(function),
                        _ => {
                            return Err(api_error(
                                "callback argument given to redis.register_function must be a function",
                            ));
                        }
                    },
                    b"flags" => {
                        let Value::Table(list) = value else {
                            return Err(api_error(
                                "flags argument to redis.register_function must be a table representing function flags",
                            ));
                        };
                        for index in 1.. {
                            let flag: Value = list.get(index)?;
                            if flag.is_nil() {
                                break;
                            }
                            let known = string_of(&flag).is_some_and(|text| flags.set(&text));
                            if !known {
                                return Err(api_error("unknown flag given"));
                            }
                        }
                    }
                    _ => {
                        return Err(api_error(
                            "unknown argument given to redis.register_function",
                        ));
                    }
                }
            }
            let Some(name) = name else {
                return Err(api_error(
                    "redis.register_function must get a function name argument",
                ));
            };
            let Some(callback) = callback else {
                return Err(api_error(
                    "redis.register_function must get a callback argument",
                ));
            };
            (name, description, flags, callback)
        }
        [_] => {
            return Err(api_error(
                "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
            ));
        }
        [name, callback] => {
            let Some(name) = string_of(name) else {
                return Err(api_error(
                    "first argument to redis.register_function must be a string",
                ));
            };
            let Value::Function(callback) = callback else {
                return Err(api_error(
                    "second argument to redis.register_function must be a function",
                ));
            };
            (name, None, FunctionFlags::default(), callback.clone())
        }
        _ => {
            return Err(api_error(
                "wrong number of arguments to redis.register_function",
            ));
        }
    };
    if !functions::valid_name(&name) {
        return Err(api_error(functions::BAD_NAME));
    }
    let name = String::from_utf8(name).expect("a valid name is ASCII");
    let mut run = lua
        .app_data_mut::<Run>()
        .expect("the run state is installed when the engine starts");
    if run.registered.iter().any(|(info, _)| info.name == name) {
        return Err(api_error("Function already exists in the library"));
    }
    run.registered.push((
        FunctionInfo {
            name,
            description,
            flags,
        },
        callback,
    ));
    Ok(())
}

/// The function engine, started on first use.
fn functions_started<'a>(
    functions: &'a mut Option<FunctionEngine>,
    watch: &Arc<ScriptWatch>,
) -> Result<&'a mut FunctionEngine, String> {
    if functions.is_none() {
        let fresh = FunctionEngine::new(Arc::clone(watch))
            .map_err(|error| format!("could not start the Lua interpreter: {error}"))?;
        *functions = Some(fresh);
    }
    Ok(functions.as_mut().expect("set just above"))
}

/// Forgets callbacks compiled by an earlier FUNCTION command that were never linked (a
/// failed load or restore).
pub(crate) fn discard_pending(model: &mut Model) {
    if let Some(engine) = model.scripts.functions.as_mut() {
        engine.pending.clear();
    }
}

/// Compiles a library and runs its code to learn what it registers (FUNCTION LOAD and
/// RESTORE); its callbacks wait, pending, until [`functions_changed`].
pub(crate) fn register_library(
    model: &mut Model,
    body: &[u8],
) -> Result<Vec<FunctionInfo>, String> {
    functions_started(&mut model.scripts.functions, &model.scripts.watch)?.load_library(body)
}

/// After `Model::functions` changed: the engine adopts the pending callbacks of the linked
/// libraries and drops those of removed ones. An empty set of libraries frees the Lua
/// state; a function with no callback at hand makes the next FCALL rebuild it.
pub(crate) fn functions_changed(model: &mut Model) {
    let library = &model.functions;
    if library.counts().0 == 0 {
        model.scripts.functions = None;
        return;
    }
    let Some(engine) = model.scripts.functions.as_mut() else {
        return;
    };
    let mut callbacks = HashMap::new();
    let mut complete = true;
    for info in library.libraries() {
        for name in info.functions.keys() {
            let key = name.to_ascii_lowercase();
            match engine
                .pending
                .remove(&key)
                .or_else(|| engine.callbacks.remove(&key))
            {
                Some(callback) => {
                    callbacks.insert(key, callback);
                }
                None => complete = false,
            }
        }
    }
    engine.pending.clear();
    engine.callbacks = callbacks;
    engine.stamp = if complete { library.stamp() } else { 0 };
}

/// The function engine matching `Model::functions`, rebuilt from the libraries' code if it
/// does not (a fresh node, or one whose functions were carried over from a restart).
fn functions_synced(model: &mut Model) -> Result<&mut FunctionEngine, Reply> {
    let stamp = model.functions.stamp();
    if model
        .scripts
        .functions
        .as_ref()
        .is_some_and(|engine| engine.stamp != stamp)
    {
        model.scripts.functions = None;
    }
    if model.scripts.functions.is_none() {
        let engine = functions_started(&mut model.scripts.functions, &model.scripts.watch)
            .map_err(|message| err(sanitize(&format!("ERR {message}"))))?;
        for library in model.functions.libraries() {
            // The code loaded once already: it loads again the same way.
            if let Ok(metadata) = functions::parse_metadata(&library.code) {
                let _ = engine.load_library(&library.code[metadata.body_start..]);
            }
        }
        engine.callbacks = std::mem::take(&mut engine.pending);
        engine.stamp = stamp;
    }
    Ok(model
        .scripts
        .functions
        .as_mut()
        .expect("started just above"))
}

/// FCALL and FCALL_RO.
pub(crate) fn fcall(
    model: &mut Model,
    session: &mut Session,
    now_ms: u64,
    argv: &[Vec<u8>],
    read_only_command: bool,
) -> Reply {
    let Some((_, info)) = model.functions.function(&argv[1]) else {
        return err("ERR Function not found");
    };
    let name = info.name.clone();
    let flags = info.flags;
    let Some(key_count) = super::num::parse_i64(&argv[2]) else {
        return err("ERR Bad number of keys provided");
    };
    let available = argv.len() - 3;
    if key_count > i64::try_from(available).unwrap_or(i64::MAX) {
        return err("ERR Number of keys can't be greater than number of args");
    }
    let Ok(key_count) = usize::try_from(key_count) else {
        return err("ERR Number of keys can't be negative");
    };
    if flags.no_cluster && model.core.config.cluster.is_some() {
        return err("ERR Can not run script on cluster, 'no-cluster' flag is set.");
    }
    if !flags.no_writes && read_only_command {
        return err("ERR Can not execute a script with write flag using *_ro command.");
    }
    let (libraries, function_count) = model.functions.counts();
    if let Err(reply) = functions_synced(model) {
        return reply;
    }
    let Model { core, scripts, .. } = model;
    let ScriptHost {
        functions: engine,
        random_state,
        spare_core,
        watch,
        ..
    } = scripts;
    let engine = engine.as_mut().expect("synced above");
    let Some(callback) = engine.callbacks.get(&name.to_ascii_lowercase()) else {
        return err("ERR Function not found");
    };
    watch.describe_function(Some(FunctionRun {
        name: name.clone(),
        argv: argv.to_vec(),
        libraries,
        functions: function_count,
    }));
    let keys = &argv[3..3 + key_count];
    let start = RunStart {
        ctx: script_ctx(now_ms, session),
        name: name.as_bytes(),
        keys,
        args: &argv[3 + key_count..],
        read_only: read_only_command || flags.no_writes,
        allow_cross_slot: flags.allow_cross_slot,
        slot: match core.config.cluster {
            Some(_) => keys.first().map(|key| cluster::key_slot(key)),
            None => None,
        },
        random_state,
    };
    engine
        .engine
        .run(core, spare_core, Callee::Function(callback), start)
}

/// Bytes as text, invalid UTF-8 replaced (for error lines).
pub(crate) fn lossy_text(bytes: &[u8]) -> String {
    lossy(bytes)
}

#[cfg(test)]
mod tests;
