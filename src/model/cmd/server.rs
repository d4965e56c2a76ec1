//! Connection, transaction and server commands: PING, SELECT, MULTI/EXEC/WATCH, FLUSHALL,
//! TIME, INFO, CONFIG, CLIENT, COMMAND, HELLO, CLUSTER and the few others that real clients
//! and Redis's own test harness send on connect.

use super::{arg_i64, introspect, is_opt};
use crate::model::command::{
    ADMIN, FAST, Handler, NO_QUEUE, NOSCRIPT, RANDOM, READONLY, Spec, WRITE, session,
};
use crate::model::reply::{Reply, bulk, err, msg, ok};
use crate::model::{Core, Ctx, DATABASES, Model, NodeConfig, Session};

use std::collections::BTreeMap;

const fn data(
    name: &'static str,
    arity: i32,
    flags: u32,
    handler: fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: Handler::Data(handler),
    }
}

/// The server commands.
pub static COMMANDS: &[Spec] = &[
    data("ping", -1, FAST, ping),
    data("echo", 2, FAST, echo),
    data("time", 1, FAST | RANDOM, time),
    data("dbsize", 1, READONLY | FAST, dbsize),
    data("flushdb", -1, WRITE, flushdb),
    data("flushall", -1, WRITE, flushall),
    session("select", 2, FAST | NOSCRIPT, select),
    session("multi", 1, FAST | NOSCRIPT | NO_QUEUE, multi),
    session("exec", 1, NOSCRIPT | NO_QUEUE, exec),
    session("discard", 1, FAST | NOSCRIPT | NO_QUEUE, discard),
    Spec {
        name: "watch",
        arity: -2,
        flags: FAST | NOSCRIPT | NO_QUEUE,
        first_key: 1,
        last_key: -1,
        step: 1,
        handler: Handler::Session(watch),
    },
    session("unwatch", 1, FAST | NOSCRIPT, unwatch),
    session("quit", -1, FAST | NOSCRIPT | NO_QUEUE, quit),
    session("reset", 1, FAST | NOSCRIPT | NO_QUEUE | ADMIN, reset),
    data("info", -1, RANDOM, introspect::info),
    data("config", -2, ADMIN | NOSCRIPT, introspect::config),
    session("client", -2, NOSCRIPT, introspect::client),
    session("hello", -1, FAST | NOSCRIPT, introspect::hello),
    session("auth", -2, FAST | NOSCRIPT, auth),
    data("command", -1, RANDOM, introspect::command_cmd),
    data("function", -2, NOSCRIPT, introspect::function),
    data("cluster", -2, RANDOM, introspect::cluster_cmd),
    Spec {
        name: "object",
        arity: -2,
        flags: READONLY,
        first_key: 2,
        last_key: 2,
        step: 1,
        handler: Handler::Data(introspect::object),
    },
    Spec {
        name: "memory",
        arity: -2,
        flags: READONLY,
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: Handler::Data(introspect::memory),
    },
    data("readonly", 1, FAST, introspect::cluster_flag),
    data("readwrite", 1, FAST, introspect::cluster_flag),
    data("asking", 1, FAST, introspect::cluster_flag),
];

/// The CONFIG parameters a fresh node reports: every parameter a real Redis 7.0.15 reports
/// for `CONFIG GET *`, with its default (recorded from a real server into
/// `config_defaults.tsv`), and the node's own port, cluster mode and bulk limit.
pub fn default_params(config: &NodeConfig) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = include_str!("../config_defaults.tsv")
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    params.insert("port".to_owned(), config.port.to_string());
    params.insert("databases".to_owned(), DATABASES.to_string());
    params.insert(
        "cluster-enabled".to_owned(),
        if config.cluster.is_some() {
            "yes"
        } else {
            "no"
        }
        .to_owned(),
    );
    params.insert(
        "proto-max-bulk-len".to_owned(),
        config.limits.bulk_len_max.to_string(),
    );
    params
}

fn ping(_core: &mut Core, _ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match argv.len() {
        1 => Reply::Status("PONG".to_owned()),
        2 => bulk(&argv[1]),
        _ => crate::model::reply::wrong_arity("ping"),
    }
}

fn echo(_core: &mut Core, _ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    bulk(&argv[1])
}

fn time(_core: &mut Core, ctx: &mut Ctx, _argv: &[Vec<u8>]) -> Reply {
    let seconds = ctx.now_ms / 1000;
    let micros = (ctx.now_ms % 1000) * 1000;
    Reply::Array(vec![bulk(seconds.to_string()), bulk(micros.to_string())])
}

fn dbsize(core: &mut Core, ctx: &mut Ctx, _argv: &[Vec<u8>]) -> Reply {
    Reply::Integer(i64::try_from(core.db(ctx).len()).expect("fits"))
}

/// FLUSHDB/FLUSHALL take an optional ASYNC or SYNC; both act at once here.
fn flush_mode_ok(argv: &[Vec<u8>]) -> bool {
    match argv.len() {
        1 => true,
        2 => is_opt(&argv[1], "async") || is_opt(&argv[1], "sync"),
        _ => false,
    }
}

fn flushdb(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if !flush_mode_ok(argv) {
        return err(msg::SYNTAX);
    }
    core.signal_db_replaced(ctx.db, None, ctx.now_ms);
    core.db(ctx).clear();
    ok()
}

fn flushall(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if !flush_mode_ok(argv) {
        return err(msg::SYNTAX);
    }
    for db in 0..DATABASES {
        core.signal_db_replaced(db, None, ctx.now_ms);
        core.dbs[db].clear();
    }
    ok()
}

/// Parses a database index argument (SELECT, MOVE, SWAPDB).
pub fn db_index(arg: &[u8]) -> Result<usize, Reply> {
    let index = arg_i64(arg)?;
    usize::try_from(index)
        .ok()
        .filter(|index| *index < DATABASES)
        .ok_or_else(|| err(msg::DB_INDEX))
}

fn select(model: &mut Model, session: &mut Session, _now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    let index = match db_index(&argv[1]) {
        Ok(index) => index,
        Err(reply) => return reply,
    };
    if model.core.config.cluster.is_some() && index != 0 {
        return err("ERR SELECT is not allowed in cluster mode");
    }
    session.db = index;
    if let Some(info) = model.core.clients.get_mut(&session.id) {
        info.db = index;
    }
    ok()
}

fn multi(_model: &mut Model, session: &mut Session, _now_ms: u64, _argv: &[Vec<u8>]) -> Reply {
    if session.multi.is_some() {
        return err("ERR MULTI calls can not be nested");
    }
    session.multi = Some(Vec::new());
    session.multi_failed = false;
    ok()
}

fn exec(model: &mut Model, session: &mut Session, now_ms: u64, _argv: &[Vec<u8>]) -> Reply {
    let Some(queued) = session.multi.take() else {
        return err("ERR EXEC without MULTI");
    };
    let failed = std::mem::take(&mut session.multi_failed);
    let broken = model.core.watch_broken(now_ms, session);
    model.core.unwatch_all(session);
    if failed {
        return err("EXECABORT Transaction discarded because of previous errors.");
    }
    if broken {
        return Reply::NilArray;
    }
    model.exec_queued(now_ms, session, queued)
}

fn discard(model: &mut Model, session: &mut Session, _now_ms: u64, _argv: &[Vec<u8>]) -> Reply {
    if session.multi.take().is_none() {
        return err("ERR DISCARD without MULTI");
    }
    session.multi_failed = false;
    model.core.unwatch_all(session);
    ok()
}

fn watch(model: &mut Model, session: &mut Session, now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    if session.multi.is_some() {
        return err("ERR WATCH inside MULTI is not allowed");
    }
    let ctx = Ctx {
        now_ms,
        db: session.db,
        in_script: false,
        client_id: session.id,
        resp: session.resp,
    };
    for key in &argv[1..] {
        model.core.watch(&ctx, session, key);
    }
    ok()
}

fn unwatch(model: &mut Model, session: &mut Session, _now_ms: u64, _argv: &[Vec<u8>]) -> Reply {
    model.core.unwatch_all(session);
    ok()
}

fn quit(_model: &mut Model, session: &mut Session, _now_ms: u64, _argv: &[Vec<u8>]) -> Reply {
    session.quit = true;
    ok()
}

/// `AUTH [username] password`. There are no ACL users: `default` has no password (any password
/// is accepted, as with Redis's `nopass`); the one-argument form is Redis's error for a
/// server without `requirepass`; any other user is refused.
fn auth(_model: &mut Model, _session: &mut Session, _now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    match argv.len() {
        2 => err(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ),
        3 if argv[1] == b"default" => ok(),
        3 => err("WRONGPASS invalid username-password pair or user is disabled."),
        _ => err("ERR syntax error"),
    }
}

fn reset(model: &mut Model, session: &mut Session, _now_ms: u64, _argv: &[Vec<u8>]) -> Reply {
    model.core.unwatch_all(session);
    session.multi = None;
    session.multi_failed = false;
    session.db = 0;
    // RESET returns the connection to RESP2, as Redis does.
    session.resp = crate::model::reply::Protocol::Resp2;
    if let Some(info) = model.core.clients.get_mut(&session.id) {
        info.db = 0;
        info.name.clear();
        info.resp = session.resp;
    }
    Reply::Status("RESET".to_owned())
}

#[cfg(test)]
mod tests {
    use crate::model::Reply;
    use crate::model::testkit::*;

    #[test]
    fn auth_accepts_any_password_for_default_only() {
        check(&[
            (
                "AUTH secret",
                error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ),
            ),
            ("AUTH default secret", status("OK")),
            (
                "AUTH someone secret",
                error("WRONGPASS invalid username-password pair or user is disabled."),
            ),
            ("AUTH a b c", error("ERR syntax error")),
            ("MULTI", status("OK")),
            ("AUTH default x", status("QUEUED")),
            ("EXEC", Reply::Array(vec![status("OK")])),
        ]);
    }

    #[test]
    fn multi_queues_and_exec_runs_in_order() {
        check(&[
            ("MULTI", status("OK")),
            ("PING", status("QUEUED")),
            ("ECHO hi", status("QUEUED")),
            (
                "EXEC",
                Reply::Array(vec![status("PONG"), Reply::Bulk(b"hi".to_vec())]),
            ),
            ("EXEC", error("ERR EXEC without MULTI")),
        ]);
    }

    #[test]
    fn a_rejected_queued_command_aborts_exec() {
        check(&[
            ("MULTI", status("OK")),
            (
                "NOSUCH x",
                error("ERR unknown command 'NOSUCH', with args beginning with: 'x' "),
            ),
            ("PING", status("QUEUED")),
            (
                "EXEC",
                error("EXECABORT Transaction discarded because of previous errors."),
            ),
        ]);
    }

    #[test]
    fn select_checks_the_index_and_nesting_is_refused() {
        check(&[
            ("SELECT 16", error("ERR DB index is out of range")),
            (
                "SELECT x",
                error("ERR value is not an integer or out of range"),
            ),
            ("SELECT 15", status("OK")),
            ("MULTI", status("OK")),
            ("MULTI", error("ERR MULTI calls can not be nested")),
            ("WATCH k", error("ERR WATCH inside MULTI is not allowed")),
            ("DISCARD", status("OK")),
            (
                "PING a b",
                error("ERR wrong number of arguments for 'ping' command"),
            ),
        ]);
    }
}
