//! Introspection and configuration: INFO, CONFIG, CLIENT, COMMAND, HELLO, FUNCTION and CLUSTER.
//!
//! These exist so that real clients (redis-cli, the `redis` crate, go-redis) and Redis's own
//! test harness can connect and read what they read on connect. Values that only a real process
//! has (pids, memory allocator figures, microsecond timings) are fixed or derived from the
//! model's state and seed, so that INFO is deterministic too.

use super::{arg_i64, is_opt};
use crate::model::command::{self, Spec};
use crate::model::db::Value;
use crate::model::reply::{Protocol, Reply, bulk, bulks, err, map, ok, verbatim_txt, wrong_arity};
use crate::model::{Core, Ctx, Model, Session, cluster, num};

/// `ERR unknown subcommand 'x'. Try CONFIG HELP.`, with the subcommand as the client sent it.
fn unknown_subcommand(container: &str, sub: &[u8]) -> Reply {
    err(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        crate::model::reply::sanitize(&String::from_utf8_lossy(sub)),
        container.to_ascii_uppercase()
    ))
}

/// Arity check for a subcommand: `ERR wrong number of arguments for 'config|get' command`.
fn sub_arity(argc: usize, arity: i32, full_name: &str) -> Result<(), Reply> {
    let spec_ok = if arity >= 0 {
        argc == usize::try_from(arity).expect("non-negative")
    } else {
        argc >= usize::try_from(-arity).expect("positive")
    };
    if spec_ok {
        Ok(())
    } else {
        Err(wrong_arity(full_name))
    }
}

/// INFO [section ...].
pub fn info(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    const DEFAULT: &[&str] = &[
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "modules",
        "errorstats",
        "cluster",
        "keyspace",
    ];
    let mut wanted: Vec<String> = Vec::new();
    if argv.len() == 1 {
        wanted.extend(DEFAULT.iter().map(|name| (*name).to_owned()));
    }
    for arg in &argv[1..] {
        let name = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match name.as_str() {
            "default" => wanted.extend(DEFAULT.iter().map(|name| (*name).to_owned())),
            "all" | "everything" => {
                wanted.extend(DEFAULT.iter().map(|name| (*name).to_owned()));
                wanted.push("commandstats".to_owned());
            }
            _ => wanted.push(name),
        }
    }
    let order = [
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "modules",
        "commandstats",
        "errorstats",
        "cluster",
        "keyspace",
    ];
    let mut sections = Vec::new();
    for name in order {
        if wanted.iter().any(|wanted| wanted == name) {
            sections.push(info_section(core, ctx, name));
        }
    }
    verbatim_txt(sections.join("\r\n"))
}

fn info_section(core: &Core, ctx: &Ctx, name: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut title = format!("{}{}", name[..1].to_ascii_uppercase(), &name[1..]);
    match name {
        "server" => {
            let uptime_s = ctx
                .now_ms
                .saturating_sub(core.started_ms.unwrap_or(ctx.now_ms))
                / 1000;
            let mode = if core.config.cluster.is_some() {
                "cluster"
            } else {
                "standalone"
            };
            lines.extend([
                "redis_version:7.0.15".to_owned(),
                "redis_git_sha1:00000000".to_owned(),
                "redis_git_dirty:0".to_owned(),
                "redis_build_id:ratelab".to_owned(),
                format!("redis_mode:{mode}"),
                "os:ratelab model".to_owned(),
                "arch_bits:64".to_owned(),
                "process_id:1".to_owned(),
                format!("run_id:{:040x}", u128::from(core.config.seed)),
                format!("tcp_port:{}", core.config.port),
                format!("server_time_usec:{}", ctx.now_ms.saturating_mul(1000)),
                format!("uptime_in_seconds:{uptime_s}"),
                format!("uptime_in_days:{}", uptime_s / 86_400),
                "hz:10".to_owned(),
                "configured_hz:10".to_owned(),
                "executable:ratelab".to_owned(),
                "config_file:".to_owned(),
            ]);
        }
        "clients" => lines.extend([
            format!("connected_clients:{}", core.clients.len()),
            "cluster_connections:0".to_owned(),
            format!(
                "maxclients:{}",
                core.params
                    .get("maxclients")
                    .map_or("10000", String::as_str)
            ),
            "blocked_clients:0".to_owned(),
            "tracking_clients:0".to_owned(),
            "clients_in_timeout_table:0".to_owned(),
        ]),
        "memory" => {
            let used: usize = core.dbs.iter().map(|db| db.approx_bytes()).sum();
            let maxmemory = core.params.get("maxmemory").cloned().unwrap_or_default();
            let policy = core
                .params
                .get("maxmemory-policy")
                .cloned()
                .unwrap_or_default();
            lines.extend([
                format!("used_memory:{used}"),
                format!("used_memory_human:{}", human_bytes(used)),
                format!("used_memory_peak:{used}"),
                format!("maxmemory:{maxmemory}"),
                format!("maxmemory_policy:{policy}"),
                "mem_fragmentation_ratio:1.00".to_owned(),
                "mem_allocator:ratelab".to_owned(),
            ]);
        }
        "persistence" => lines.extend([
            "loading:0".to_owned(),
            "async_loading:0".to_owned(),
            format!("rdb_changes_since_last_save:{}", core.dirty),
            "rdb_bgsave_in_progress:0".to_owned(),
            "rdb_last_bgsave_status:ok".to_owned(),
            "aof_enabled:0".to_owned(),
            "aof_rewrite_in_progress:0".to_owned(),
            "aof_last_bgrewrite_status:ok".to_owned(),
        ]),
        "stats" => {
            let passive: u64 = core.dbs.iter().map(|db| db.passively_expired).sum();
            let stats = &core.stats;
            lines.extend([
                format!(
                    "total_connections_received:{}",
                    stats.total_connections_received
                ),
                format!(
                    "total_commands_processed:{}",
                    stats.total_commands_processed
                ),
                "instantaneous_ops_per_sec:0".to_owned(),
                format!("rejected_connections:{}", stats.rejected_connections),
                format!("expired_keys:{}", stats.expired_keys + passive),
                "evicted_keys:0".to_owned(),
                format!("keyspace_hits:{}", stats.keyspace_hits),
                format!("keyspace_misses:{}", stats.keyspace_misses),
                "pubsub_channels:0".to_owned(),
                "pubsub_patterns:0".to_owned(),
                "latest_fork_usec:0".to_owned(),
                "total_forks:0".to_owned(),
                "unexpected_error_replies:0".to_owned(),
                format!("total_error_replies:{}", stats.total_error_replies),
            ]);
        }
        "replication" => lines.extend([
            "role:master".to_owned(),
            "connected_slaves:0".to_owned(),
            format!("master_replid:{:040x}", u128::from(core.config.seed) + 1),
            "master_repl_offset:0".to_owned(),
        ]),
        "cpu" => lines.extend([
            "used_cpu_sys:0.000000".to_owned(),
            "used_cpu_user:0.000000".to_owned(),
        ]),
        "modules" => {}
        "commandstats" => {
            for (name, stats) in &core.stats.commands {
                lines.push(format!(
                    "cmdstat_{name}:calls={},usec=0,usec_per_call=0.00,rejected_calls={},failed_calls={}",
                    stats.calls, stats.rejected_calls, stats.failed_calls
                ));
            }
        }
        "errorstats" => {
            for (code, count) in &core.stats.errors {
                lines.push(format!("errorstat_{code}:count={count}"));
            }
        }
        "cluster" => lines.push(format!(
            "cluster_enabled:{}",
            u8::from(core.config.cluster.is_some())
        )),
        "keyspace" => {
            for (index, db) in core.dbs.iter().enumerate() {
                if db.is_empty() {
                    continue;
                }
                lines.push(format!(
                    "db{index}:keys={},expires={},avg_ttl=0",
                    db.len(),
                    db.expires_len()
                ));
            }
        }
        _ => return String::new(),
    }
    if name == "cpu" {
        title = "CPU".to_owned();
    }
    let mut text = format!("# {title}\r\n");
    for line in lines {
        text.push_str(&line);
        text.push_str("\r\n");
    }
    text
}

fn human_bytes(bytes: usize) -> String {
    let value = bytes as f64;
    if value < 1024.0 {
        format!("{bytes}B")
    } else if value < 1024.0 * 1024.0 {
        format!("{:.2}K", value / 1024.0)
    } else {
        format!("{:.2}M", value / (1024.0 * 1024.0))
    }
}

/// CONFIG GET / SET / RESETSTAT.
pub fn config(core: &mut Core, _ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let sub = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    let result = match sub.as_str() {
        "get" => sub_arity(argv.len(), -3, "config|get").map(|()| config_get(core, &argv[2..])),
        "set" => sub_arity(argv.len(), -4, "config|set").map(|()| config_set(core, &argv[2..])),
        "resetstat" => sub_arity(argv.len(), 2, "config|resetstat").map(|()| {
            core.stats = crate::model::Stats {
                total_connections_received: 0,
                ..crate::model::Stats::default()
            };
            for db in &mut core.dbs {
                db.passively_expired = 0;
            }
            ok()
        }),
        "rewrite" => Ok(err("ERR The server is running without a config file")),
        _ => Ok(unknown_subcommand("config", &argv[1])),
    };
    result.unwrap_or_else(|reply| reply)
}

fn config_get(core: &Core, patterns: &[Vec<u8>]) -> Reply {
    let mut names: Vec<&String> = Vec::new();
    for pattern in patterns {
        let pattern = pattern.to_ascii_lowercase();
        for name in core.params.keys() {
            if super::keys::glob_match_nocase(&pattern, name.as_bytes()) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    map(names
        .into_iter()
        .map(|name| (bulk(name), bulk(&core.params[name]))))
}

/// Parameters CONFIG SET refuses to change at run time.
const IMMUTABLE_PARAMS: &[&str] = &[
    "bind",
    "port",
    "databases",
    "daemonize",
    "pidfile",
    "unixsocket",
    "unixsocketperm",
    "cluster-enabled",
    "cluster-config-file",
    "cluster-port",
    "supervised",
    "logfile",
    "syslog-enabled",
    "syslog-ident",
    "syslog-facility",
    "io-threads",
    "io-threads-do-reads",
    "tcp-backlog",
    "always-show-logo",
    "set-proc-title",
    "proc-title-template",
    "disable-thp",
    "aclfile",
    "tls-port",
    "tls-cluster",
    "tls-replication",
];

/// Parameters Redis protects unless `enable-protected-configs` is set.
const PROTECTED_PARAMS: &[&str] = &["dir", "dbfilename"];

/// Parameters whose value is a memory amount (digits with an optional unit).
const MEMORY_PARAMS: &[&str] = &[
    "maxmemory",
    "proto-max-bulk-len",
    "client-query-buffer-limit",
    "maxmemory-clients",
    "repl-backlog-size",
    "auto-aof-rewrite-min-size",
    "active-defrag-ignore-bytes",
    "hll-sparse-max-bytes",
    "stream-node-max-bytes",
];

/// Parameters that take one of a fixed set of words.
const ENUM_PARAMS: &[(&str, &[&str])] = &[
    (
        "maxmemory-policy",
        &[
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "noeviction",
        ],
    ),
    ("loglevel", &["debug", "verbose", "notice", "warning"]),
    ("appendfsync", &["always", "everysec", "no"]),
    ("repl-diskless-load", &["disabled", "on-empty-db", "swapdb"]),
    ("acl-pubsub-default", &["allchannels", "resetchannels"]),
    (
        "propagation-error-behavior",
        &["ignore", "panic", "panic-on-replicas"],
    ),
    (
        "cluster-preferred-endpoint-type",
        &["ip", "hostname", "unknown-endpoint"],
    ),
    ("enable-protected-configs", &["no", "yes", "local"]),
    ("enable-debug-command", &["no", "yes", "local"]),
    ("enable-module-command", &["no", "yes", "local"]),
    ("sanitize-dump-payload", &["no", "yes", "clients"]),
];

/// Inclusive ranges for the integer parameters Redis bounds tighter than `0..=i64::MAX`.
const INTEGER_RANGES: &[(&str, i64, i64)] = &[
    ("proto-max-bulk-len", 1024 * 1024, i64::MAX),
    ("timeout", 0, 2_147_483_647),
    ("maxclients", 1, 4_294_967_295),
    ("hz", i64::MIN, i64::MAX),
    ("list-max-listpack-size", -2_147_483_648, 2_147_483_647),
    ("list-max-ziplist-size", -2_147_483_648, 2_147_483_647),
];

fn config_failed(name: &str, why: &str) -> Reply {
    err(format!(
        "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
    ))
}

/// Checks one CONFIG SET value against what Redis accepts for that parameter.
fn config_check(core: &Core, name: &str, value: &str) -> Result<(), Reply> {
    let Some(default) = core.params.get(name) else {
        return Err(err(format!(
            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
        )));
    };
    if IMMUTABLE_PARAMS.contains(&name) {
        return Err(config_failed(name, "can't set immutable config"));
    }
    if PROTECTED_PARAMS.contains(&name) {
        return Err(config_failed(name, "can't set protected config"));
    }
    if let Some((_, words)) = ENUM_PARAMS.iter().find(|(param, _)| *param == name) {
        if !words.iter().any(|word| word.eq_ignore_ascii_case(value)) {
            return Err(config_failed(
                name,
                &format!(
                    "argument(s) must be one of the following: {}",
                    words.join(", ")
                ),
            ));
        }
        return Ok(());
    }
    if default == "yes" || default == "no" {
        if !value.eq_ignore_ascii_case("yes") && !value.eq_ignore_ascii_case("no") {
            return Err(config_failed(name, "argument must be 'yes' or 'no'"));
        }
        return Ok(());
    }
    let is_memory = MEMORY_PARAMS.contains(&name);
    if !is_memory && crate::model::num::parse_i64(default.as_bytes()).is_none() {
        return Ok(());
    }
    let (min, max) = INTEGER_RANGES
        .iter()
        .find(|(param, _, _)| *param == name)
        .map_or((0, i64::MAX), |(_, min, max)| (*min, *max));
    let parsed = if is_memory {
        parse_memory(value).ok_or_else(|| config_failed(name, "argument must be a memory value"))?
    } else {
        crate::model::num::parse_i64(value.as_bytes())
            .ok_or_else(|| config_failed(name, "argument couldn't be parsed into an integer"))?
    };
    if !(min..=max).contains(&parsed) {
        return Err(config_failed(
            name,
            &format!("argument must be between {min} and {max} inclusive"),
        ));
    }
    Ok(())
}

/// Redis's renamed parameters: setting one name sets its alias too.
const ALIASES: &[(&str, &str)] = &[
    ("hash-max-listpack-entries", "hash-max-ziplist-entries"),
    ("hash-max-listpack-value", "hash-max-ziplist-value"),
    ("zset-max-listpack-entries", "zset-max-ziplist-entries"),
    ("zset-max-listpack-value", "zset-max-ziplist-value"),
    ("list-max-listpack-size", "list-max-ziplist-size"),
    ("replica-read-only", "slave-read-only"),
    ("replica-serve-stale-data", "slave-serve-stale-data"),
    ("replica-priority", "slave-priority"),
    ("replica-lazy-flush", "slave-lazy-flush"),
    ("replica-ignore-maxmemory", "slave-ignore-maxmemory"),
    ("replicaof", "slaveof"),
    ("busy-reply-threshold", "lua-time-limit"),
];

fn config_set(core: &mut Core, pairs: &[Vec<u8>]) -> Reply {
    if !pairs.len().is_multiple_of(2) {
        return err(crate::model::reply::msg::SYNTAX);
    }
    let mut updates = Vec::new();
    for pair in pairs.chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        if let Err(reply) = config_check(core, &name, &value) {
            return reply;
        }
        updates.push((name, value));
    }
    for (name, value) in updates {
        if name == "proto-max-bulk-len"
            && let Some(bytes) = parse_memory(&value).and_then(|bytes| usize::try_from(bytes).ok())
        {
            core.config.limits.bulk_len_max = bytes;
        }
        for (one, other) in ALIASES {
            if name == *one {
                core.params.insert((*other).to_owned(), value.clone());
            } else if name == *other {
                core.params.insert((*one).to_owned(), value.clone());
            }
        }
        core.params.insert(name, value);
    }
    ok()
}

/// A memory amount as CONFIG SET reads it: digits with an optional unit (`k`, `kb`, `m`,
/// `mb`, `g`, `gb`, any case).
fn parse_memory(value: &str) -> Option<i64> {
    let lower = value.to_ascii_lowercase();
    let units: [(&str, i64); 6] = [
        ("kb", 1024),
        ("mb", 1024 * 1024),
        ("gb", 1024 * 1024 * 1024),
        ("k", 1000),
        ("m", 1000 * 1000),
        ("g", 1000 * 1000 * 1000),
    ];
    for (suffix, scale) in units {
        if let Some(digits) = lower.strip_suffix(suffix) {
            return crate::model::num::parse_i64(digits.as_bytes())?.checked_mul(scale);
        }
    }
    crate::model::num::parse_i64(lower.as_bytes())
}

/// CLIENT SETNAME / GETNAME / ID / INFO / LIST and a few no-ops clients send on connect.
pub fn client(model: &mut Model, session: &mut Session, _now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    let sub = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    let core = &mut model.core;
    let result = match sub.as_str() {
        "id" => sub_arity(argv.len(), 2, "client|id").map(|()| Reply::Integer(session_id(session))),
        "setname" => sub_arity(argv.len(), 3, "client|setname").map(|()| {
            let name = &argv[2];
            if name.iter().any(|byte| !(b'!'..=b'~').contains(byte)) {
                return err(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            if let Some(info) = core.clients.get_mut(&session.id) {
                info.name.clone_from(name);
            }
            ok()
        }),
        "getname" => sub_arity(argv.len(), 2, "client|getname").map(|()| {
            match core.clients.get(&session.id) {
                Some(info) if !info.name.is_empty() => bulk(&info.name),
                _ => Reply::Nil,
            }
        }),
        "info" => sub_arity(argv.len(), 2, "client|info")
            .map(|()| verbatim_txt(client_line(core, session.id))),
        "list" => sub_arity(argv.len(), -2, "client|list").map(|()| client_list(core, &argv[2..])),
        "no-evict" | "no-touch" | "reply" => {
            sub_arity(argv.len(), 3, &format!("client|{sub}")).map(|()| ok())
        }
        "setinfo" => sub_arity(argv.len(), 4, "client|setinfo")
            .map(|()| unknown_subcommand("client", &argv[1])),
        _ => Ok(unknown_subcommand("client", &argv[1])),
    };
    result.unwrap_or_else(|reply| reply)
}

fn session_id(session: &Session) -> i64 {
    i64::try_from(session.id).expect("client ids stay far below i64::MAX")
}

fn client_line(core: &Core, id: u64) -> String {
    let info = core.clients.get(&id).cloned().unwrap_or_default();
    format!(
        "id={id} addr={} laddr=127.0.0.1:{} fd=8 name={} age=0 idle=0 flags=N db={} sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=16384 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={}\n",
        info.addr,
        core.config.port,
        String::from_utf8_lossy(&info.name),
        info.db,
        if info.last_command.is_empty() {
            "NULL"
        } else {
            &info.last_command
        },
        match info.resp {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        },
    )
}

fn client_list(core: &Core, filters: &[Vec<u8>]) -> Reply {
    let mut ids: Vec<u64> = core.clients.keys().copied().collect();
    match filters {
        [] => {}
        [kind, value] if is_opt(kind, "type") => {
            if !["normal", "master", "replica", "slave", "pubsub"]
                .iter()
                .any(|name| is_opt(value, name))
            {
                return err(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(value)
                ));
            }
            if !is_opt(value, "normal") {
                ids.clear();
            }
        }
        [kind, wanted @ ..] if is_opt(kind, "id") && !wanted.is_empty() => {
            let mut keep = Vec::new();
            for raw in wanted {
                match arg_i64(raw) {
                    Ok(id) if id > 0 => keep.push(u64::try_from(id).expect("positive")),
                    _ => return err("ERR Invalid client ID"),
                }
            }
            ids.retain(|id| keep.contains(id));
        }
        _ => return err(crate::model::reply::msg::SYNTAX),
    }
    let text: String = ids.into_iter().map(|id| client_line(core, id)).collect();
    verbatim_txt(text)
}

/// HELLO [protover [AUTH username password] [SETNAME name]]: switches the connection to
/// RESP2 or RESP3 and describes the server. There are no ACL users: `default` has no password
/// (any password is accepted, as with Redis's `nopass`), any other user is refused.
pub fn hello(model: &mut Model, session: &mut Session, _now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    let mut position = 1;
    let mut protocol = None;
    if let Some(version) = argv.get(1) {
        match crate::model::num::parse_i64(version) {
            Some(2) => protocol = Some(Protocol::Resp2),
            Some(3) => protocol = Some(Protocol::Resp3),
            Some(_) => return err("NOPROTO unsupported protocol version"),
            None => return err("ERR Protocol version is not an integer or out of range"),
        }
        position = 2;
    }
    while position < argv.len() {
        let option = &argv[position];
        if is_opt(option, "auth") && position + 2 < argv.len() {
            if !argv[position + 1].eq_ignore_ascii_case(b"default") {
                return err("WRONGPASS invalid username-password pair or user is disabled.");
            }
            position += 3;
        } else if is_opt(option, "setname") && position + 1 < argv.len() {
            let name = &argv[position + 1];
            if name.iter().any(|byte| !(b'!'..=b'~').contains(byte)) {
                return err(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            if let Some(info) = model.core.clients.get_mut(&session.id) {
                info.name.clone_from(name);
            }
            position += 2;
        } else {
            return err(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(option)
            ));
        }
    }
    if let Some(protocol) = protocol {
        session.resp = protocol;
        if let Some(info) = model.core.clients.get_mut(&session.id) {
            info.resp = protocol;
        }
    }
    let mode = if model.core.config.cluster.is_some() {
        "cluster"
    } else {
        "standalone"
    };
    let proto = match session.resp {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    map([
        (bulk("server"), bulk("redis")),
        (bulk("version"), bulk("7.0.15")),
        (bulk("proto"), Reply::Integer(proto)),
        (bulk("id"), Reply::Integer(session_id(session))),
        (bulk("mode"), bulk(mode)),
        (bulk("role"), bulk("master")),
        (bulk("modules"), Reply::Array(Vec::new())),
    ])
}

/// COMMAND [COUNT | INFO name ... | DOCS name ... | LIST | GETKEYS ...].
pub fn command_cmd(_core: &mut Core, _ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if argv.len() == 1 {
        return Reply::Array(command::all().map(command_info).collect());
    }
    let sub = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    let result = match sub.as_str() {
        "count" => sub_arity(argv.len(), 2, "command|count")
            .map(|()| Reply::Integer(i64::try_from(command::all().count()).expect("fits"))),
        "info" => Ok(if argv.len() == 2 {
            Reply::Array(command::all().map(command_info).collect())
        } else {
            Reply::Array(
                argv[2..]
                    .iter()
                    .map(|name| command::lookup(name).map_or(Reply::NilArray, command_info))
                    .collect(),
            )
        }),
        // Documentation is not modelled: every known command answers with an empty doc map,
        // which redis-cli accepts (it only loses its hints).
        "docs" => Ok(map(command::all()
            .filter(|spec| argv.len() == 2 || argv[2..].iter().any(|name| is_opt(name, spec.name)))
            .map(|spec| (bulk(spec.name), Reply::Map(Vec::new()))))),
        "list" => Ok(bulks(command::all().map(|spec| spec.name))),
        "getkeys" => {
            sub_arity(argv.len(), -3, "command|getkeys").map(|()| match command::lookup(&argv[2]) {
                None => err("ERR Invalid command specified"),
                Some(spec) if !spec.arity_ok(argv.len() - 2) => {
                    err("ERR Invalid number of arguments specified for command")
                }
                Some(spec) => {
                    let keys = spec.keys(&argv[2..]);
                    if keys.is_empty() {
                        err("ERR The command has no key arguments")
                    } else {
                        bulks(keys)
                    }
                }
            })
        }
        _ => Ok(unknown_subcommand("command", &argv[1])),
    };
    result.unwrap_or_else(|reply| reply)
}

fn command_info(spec: &Spec) -> Reply {
    let flag_names = [
        (command::WRITE, "write"),
        (command::READONLY, "readonly"),
        (command::DENYOOM, "denyoom"),
        (command::ADMIN, "admin"),
        (command::NOSCRIPT, "noscript"),
        (command::RANDOM, "random"),
        (command::FAST, "fast"),
    ];
    let flags = flag_names
        .iter()
        .filter(|(bit, _)| spec.flags & bit != 0)
        .map(|(_, name)| Reply::Status((*name).to_owned()))
        .collect();
    Reply::Array(vec![
        bulk(spec.name),
        Reply::Integer(i64::from(spec.arity)),
        Reply::Set(flags),
        Reply::Integer(i64::from(spec.first_key)),
        Reply::Integer(i64::from(spec.last_key)),
        Reply::Integer(i64::from(spec.step)),
        // ACL categories, tips, key specs (Redis 7.0 sends these three as sets), subcommands.
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// FUNCTION FLUSH (there are no functions: always `+OK`) and FUNCTION LIST (empty).
pub fn function(_core: &mut Core, _ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let sub = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    match sub.as_str() {
        "flush" if argv.len() == 2 => ok(),
        "flush" if argv.len() == 3 && (is_opt(&argv[2], "sync") || is_opt(&argv[2], "async")) => {
            ok()
        }
        "flush" if argv.len() == 3 => err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"),
        "flush" => wrong_arity("function|flush"),
        "list" => Reply::Array(Vec::new()),
        _ => unknown_subcommand("function", &argv[1]),
    }
}

/// The encoding Redis 7.0 would report for a value, from the configured size thresholds.
/// Redis converts one way (a hash that grew past the threshold stays a hashtable after it
/// shrinks); the model judges from the current contents.
fn encoding(core: &Core, value: &Value) -> &'static str {
    let param = |name: &str| {
        core.params
            .get(name)
            .and_then(|value| value.parse::<usize>().ok())
            .unwrap_or(0)
    };
    match value {
        Value::Str(bytes) if num::parse_i64(bytes).is_some() => "int",
        Value::Str(bytes) if bytes.len() <= 44 => "embstr",
        Value::Str(_) => "raw",
        Value::List(_) => "quicklist",
        Value::Hash(hash) => {
            let value_max = param("hash-max-listpack-value");
            let small = hash.len() <= param("hash-max-listpack-entries")
                && hash
                    .iter()
                    .all(|(field, value)| field.len() <= value_max && value.len() <= value_max);
            if small { "listpack" } else { "hashtable" }
        }
        Value::Set(set) => {
            let ints = set.iter().all(|member| num::parse_i64(member).is_some());
            if ints && set.len() <= param("set-max-intset-entries") {
                "intset"
            } else {
                "hashtable"
            }
        }
        Value::ZSet(zset) => {
            let value_max = param("zset-max-listpack-value");
            let small = zset.len() <= param("zset-max-listpack-entries")
                && zset.iter().all(|(member, _)| member.len() <= value_max);
            if small { "listpack" } else { "skiplist" }
        }
    }
}

/// OBJECT ENCODING / REFCOUNT / IDLETIME / FREQ. Access times are not modelled: IDLETIME is
/// always 0. Small integers report Redis's shared-object refcount.
pub fn object(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let sub = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    if !matches!(sub.as_str(), "encoding" | "refcount" | "idletime" | "freq") {
        return unknown_subcommand("object", &argv[1]);
    }
    if argv.len() != 3 {
        return wrong_arity(&format!("object|{sub}"));
    }
    let lfu = core
        .params
        .get("maxmemory-policy")
        .is_some_and(|policy| policy.contains("lfu"));
    let Some(entry) = core.lookup_read(ctx, &argv[2]) else {
        return Reply::Nil;
    };
    let value = entry.value.clone();
    match sub.as_str() {
        "encoding" => bulk(encoding(core, &value)),
        "refcount" => {
            let shared = matches!(&value, Value::Str(bytes) if num::parse_i64(bytes).is_some_and(|n| (0..10_000).contains(&n)));
            Reply::Integer(if shared { 2_147_483_647 } else { 1 })
        }
        "idletime" => Reply::Integer(0),
        _ if lfu => Reply::Integer(0),
        _ => err(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
    }
}

/// MEMORY USAGE key [SAMPLES n]: an estimate of the key's footprint (the model's own
/// accounting, not Redis's allocator figures).
pub fn memory(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let sub = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    if sub != "usage" {
        return unknown_subcommand("memory", &argv[1]);
    }
    if argv.len() < 3 {
        return wrong_arity("memory|usage");
    }
    match &argv[3..] {
        [] => {}
        [option, count] if is_opt(option, "samples") => {
            if let Err(reply) = arg_i64(count) {
                return reply;
            }
        }
        _ => return err(crate::model::reply::msg::SYNTAX),
    }
    let key_len = argv[2].len();
    match core.lookup_read(ctx, &argv[2]) {
        None => Reply::Nil,
        Some(entry) => Reply::Integer(
            i64::try_from(48 + key_len + crate::model::db::value_bytes(&entry.value))
                .unwrap_or(i64::MAX),
        ),
    }
}

/// READONLY, READWRITE and ASKING: accepted in cluster mode (a single node has no replicas to
/// read from and no migrations to ask about), refused as Redis refuses them otherwise.
pub fn cluster_flag(core: &mut Core, _ctx: &mut Ctx, _argv: &[Vec<u8>]) -> Reply {
    if core.config.cluster.is_none() {
        return err("ERR This instance has cluster support disabled");
    }
    ok()
}

/// CLUSTER KEYSLOT / INFO / SLOTS / MYID in cluster mode; Redis's refusal otherwise.
pub fn cluster_cmd(core: &mut Core, _ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let Some(config) = &core.config.cluster else {
        return err("ERR This instance has cluster support disabled");
    };
    let sub = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
    match sub.as_str() {
        "keyslot" if argv.len() == 3 => Reply::Integer(i64::from(cluster::key_slot(&argv[2]))),
        "keyslot" => wrong_arity("cluster|keyslot"),
        "info" => {
            let owned: u32 = config
                .endpoints
                .iter()
                .map(|(lo, hi, _)| u32::from(*hi) - u32::from(*lo) + 1)
                .sum();
            bulk(format!(
                "cluster_state:ok\r\ncluster_slots_assigned:{owned}\r\ncluster_slots_ok:{owned}\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\n",
                config.endpoints.len(),
                config.endpoints.len()
            ))
        }
        "myid" => bulk(format!("{:040x}", u128::from(core.config.seed))),
        "slots" => Reply::Array(
            config
                .endpoints
                .iter()
                .map(|(lo, hi, endpoint)| {
                    let (host, port) = endpoint
                        .rsplit_once(':')
                        .unwrap_or((endpoint.as_str(), "0"));
                    let port = port.parse::<i64>().unwrap_or(0);
                    Reply::Array(vec![
                        Reply::Integer(i64::from(*lo)),
                        Reply::Integer(i64::from(*hi)),
                        Reply::Array(vec![bulk(host), Reply::Integer(port)]),
                    ])
                })
                .collect(),
        ),
        _ => unknown_subcommand("cluster", &argv[1]),
    }
}

#[cfg(test)]
mod tests {
    use crate::model::testkit::*;
    use crate::model::{Model, NodeConfig, Reply};

    #[test]
    fn config_get_and_set_round_trip_and_validate() {
        check(&[
            (
                "CONFIG GET maxmemory",
                Reply::Array(vec![bulk("maxmemory"), bulk("0")]),
            ),
            ("CONFIG SET maxmemory 1mb hz 20", status("OK")),
            (
                "CONFIG GET maxmemory hz",
                Reply::Array(vec![bulk("hz"), bulk("20"), bulk("maxmemory"), bulk("1mb")]),
            ),
            (
                "CONFIG SET anything-at-all 5",
                error(
                    "ERR Unknown option or number of arguments for CONFIG SET - 'anything-at-all'",
                ),
            ),
            ("CONFIG SET hash-max-listpack-entries 64", status("OK")),
            (
                "CONFIG GET hash-max-ziplist-entries",
                Reply::Array(vec![bulk("hash-max-ziplist-entries"), bulk("64")]),
            ),
            (
                "CONFIG SET hz abc",
                error(
                    "ERR CONFIG SET failed (possibly related to argument 'hz') - argument couldn't be parsed into an integer",
                ),
            ),
            (
                "CONFIG SET appendonly maybe",
                error(
                    "ERR CONFIG SET failed (possibly related to argument 'appendonly') - argument must be 'yes' or 'no'",
                ),
            ),
            (
                "CONFIG SET port 1",
                error(
                    "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config",
                ),
            ),
            ("CONFIG SET maxmemory 1 hz", error("ERR syntax error")),
            (
                "CONFIG SET maxmemory",
                error("ERR wrong number of arguments for 'config|set' command"),
            ),
            (
                "CONFIG GET",
                error("ERR wrong number of arguments for 'config|get' command"),
            ),
            (
                "CONFIG foo",
                error("ERR unknown subcommand 'foo'. Try CONFIG HELP."),
            ),
            (
                "CONFIG SET maxmemory abc",
                error(
                    "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value",
                ),
            ),
            (
                "CONFIG SET proto-max-bulk-len 10",
                error(
                    "ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be between 1048576 and 9223372036854775807 inclusive",
                ),
            ),
            ("CONFIG RESETSTAT", status("OK")),
        ]);
    }

    #[test]
    fn proto_max_bulk_len_takes_effect_on_the_limits() {
        let mut model = Model::new(NodeConfig::standalone(7));
        let mut session = model.connect("a");
        let argv: Vec<Vec<u8>> = ["CONFIG", "SET", "proto-max-bulk-len", "2mb"]
            .iter()
            .map(|word| word.as_bytes().to_vec())
            .collect();
        assert_eq!(model.exec(0, &mut session, &argv), status("OK"));
        assert_eq!(model.core.config.limits.bulk_len_max, 2 * 1024 * 1024);
    }

    #[test]
    fn client_names_ids_and_lists() {
        check(&[
            ("CLIENT ID", Reply::Integer(1)),
            ("CLIENT GETNAME", Reply::Nil),
            ("CLIENT SETNAME gateway-1", status("OK")),
            ("CLIENT GETNAME", bulk("gateway-1")),
            (
                "CLIENT SETNAME a\nb",
                error("ERR Client names cannot contain spaces, newlines or special characters."),
            ),
            (
                "CLIENT GETNAME x",
                error("ERR wrong number of arguments for 'client|getname' command"),
            ),
            (
                "CLIENT foo",
                error("ERR unknown subcommand 'foo'. Try CLIENT HELP."),
            ),
            ("CLIENT LIST ID 99", bulk("")),
            ("CLIENT LIST TYPE pubsub", bulk("")),
            (
                "CLIENT LIST TYPE nosuch",
                error("ERR Unknown client type 'nosuch'"),
            ),
        ]);
    }

    #[test]
    fn hello_switches_the_protocol_of_its_session_only() {
        // Goal: HELLO 3 makes this session RESP3 (maps stay maps), HELLO 2 flattens again,
        // AUTH accepts only the password-less `default` user, errors change nothing.
        let hello = |proto: i64, name: &str| {
            Reply::Map(vec![
                (bulk("server"), bulk("redis")),
                (bulk("version"), bulk("7.0.15")),
                (bulk("proto"), Reply::Integer(proto)),
                (bulk("id"), Reply::Integer(1)),
                (bulk("mode"), bulk(name)),
                (bulk("role"), bulk("master")),
                (bulk("modules"), Reply::Array(vec![])),
            ])
        };
        let model = check(&[
            ("HELLO 4", error("NOPROTO unsupported protocol version")),
            (
                "HELLO foo",
                error("ERR Protocol version is not an integer or out of range"),
            ),
            ("HELLO 2", hello(2, "standalone").to_resp2()),
            (
                "HELLO 3 AUTH bob pw",
                error("WRONGPASS invalid username-password pair or user is disabled."),
            ),
            (
                "HELLO 3 AUTH",
                error("ERR Syntax error in HELLO option 'AUTH'"),
            ),
            ("HSET h f v", Reply::Integer(1)),
            ("HGETALL h", bulks(&["f", "v"])),
            (
                "HELLO 3 AUTH default pw SETNAME app",
                hello(3, "standalone"),
            ),
            ("HGETALL h", Reply::Map(vec![(bulk("f"), bulk("v"))])),
            ("CLIENT GETNAME", bulk("app")),
            ("HELLO", hello(3, "standalone")),
            ("HELLO 2", hello(2, "standalone").to_resp2()),
            ("HGETALL h", bulks(&["f", "v"])),
        ]);
        let mut model = model;
        let mut other = model.connect("b");
        let argv = vec![b"HGETALL".to_vec(), b"h".to_vec()];
        assert_eq!(model.exec(1_000, &mut other, &argv), bulks(&["f", "v"]));
    }

    #[test]
    fn info_sections_are_framed_like_redis() {
        let mut model = Model::new(NodeConfig::standalone(7));
        let mut session = model.connect("a");
        let run = |model: &mut Model, session: &mut crate::model::Session, line: &str| {
            let argv: Vec<Vec<u8>> = line
                .split(' ')
                .map(|word| word.as_bytes().to_vec())
                .collect();
            model.exec(5_000, session, &argv)
        };
        assert_eq!(
            run(&mut model, &mut session, "INFO keyspace"),
            bulk("# Keyspace\r\n")
        );
        assert_eq!(run(&mut model, &mut session, "INFO nosuch"), bulk(""));
        let Reply::Bulk(both) = run(&mut model, &mut session, "INFO cluster keyspace") else {
            panic!("INFO answers a bulk string");
        };
        assert_eq!(
            both,
            b"# Cluster\r\ncluster_enabled:0\r\n\r\n# Keyspace\r\n"
        );
        let Reply::Bulk(all) = run(&mut model, &mut session, "INFO all") else {
            panic!("INFO answers a bulk string");
        };
        let all = String::from_utf8(all).expect("INFO is text");
        assert!(all.contains("redis_version:7.0.15\r\n"));
        assert!(all.contains("cmdstat_info:calls=3,"));
        assert!(all.contains("# Errorstats\r\n"));
    }

    #[test]
    fn object_and_memory_describe_values() {
        check(&[
            ("SET s 123", status("OK")),
            ("SET e hello", status("OK")),
            ("SET big 12345678901234567890", status("OK")),
            ("RPUSH l a", Reply::Integer(1)),
            ("SADD si 1 2", Reply::Integer(2)),
            ("SADD ss a", Reply::Integer(1)),
            ("ZADD z 1 a", Reply::Integer(1)),
            ("OBJECT ENCODING s", bulk("int")),
            ("OBJECT ENCODING e", bulk("embstr")),
            ("OBJECT ENCODING big", bulk("embstr")),
            ("OBJECT ENCODING l", bulk("quicklist")),
            ("OBJECT ENCODING si", bulk("intset")),
            ("OBJECT ENCODING ss", bulk("hashtable")),
            ("OBJECT ENCODING z", bulk("listpack")),
            ("OBJECT REFCOUNT s", Reply::Integer(2_147_483_647)),
            ("OBJECT REFCOUNT e", Reply::Integer(1)),
            ("OBJECT IDLETIME e", Reply::Integer(0)),
            ("OBJECT ENCODING nokey", Reply::Nil),
            (
                "OBJECT REFCOUNT",
                error("ERR wrong number of arguments for 'object|refcount' command"),
            ),
            (
                "OBJECT foo s",
                error("ERR unknown subcommand 'foo'. Try OBJECT HELP."),
            ),
            ("MEMORY USAGE nokey", Reply::Nil),
            ("MEMORY USAGE s foo", error("ERR syntax error")),
            (
                "MEMORY USAGE",
                error("ERR wrong number of arguments for 'memory|usage' command"),
            ),
            (
                "MEMORY foo",
                error("ERR unknown subcommand 'foo'. Try MEMORY HELP."),
            ),
        ]);
    }

    #[test]
    fn command_introspection_and_cluster_refusal() {
        check(&[
            (
                "COMMAND COUNT x",
                error("ERR wrong number of arguments for 'command|count' command"),
            ),
            ("COMMAND INFO nosuch", Reply::Array(vec![Reply::NilArray])),
            (
                "COMMAND FOO",
                error("ERR unknown subcommand 'FOO'. Try COMMAND HELP."),
            ),
            ("FUNCTION FLUSH", status("OK")),
            (
                "FUNCTION FOO",
                error("ERR unknown subcommand 'FOO'. Try FUNCTION HELP."),
            ),
            (
                "CLUSTER KEYSLOT foo",
                error("ERR This instance has cluster support disabled"),
            ),
            (
                "CLUSTER",
                error("ERR wrong number of arguments for 'cluster' command"),
            ),
        ]);
    }
}
