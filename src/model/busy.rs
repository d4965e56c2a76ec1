//! What other connections see of a running script without taking the model's lock.
//!
//! A script runs to completion under the model's mutex (Redis's atomicity), so a connection
//! that needs the model while one runs cannot get it. Redis answers such clients `BUSY` once
//! the script has run past `busy-reply-threshold` (alias `lua-time-limit`, 5000 ms), lets
//! `SCRIPT KILL` stop a script that has not written, and answers `UNKILLABLE` for one that
//! has. [`ScriptWatch`] is the small piece of state that makes this possible here: the script
//! host publishes in it when a script started, whether it has written, and reads a kill
//! request from it every few thousand Lua instructions; the server reads it, with its own
//! clock, to decide whether to wait for the lock or to answer through [`busy_reply`].
//!
//! Determinism: the model never reads a clock. The start time is the `now_ms` the script was
//! given and the threshold is compared with the time the server passes in. In a simulation a
//! script never runs across simulated time, so nothing here ever changes a simulated run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::command;
use super::reply::{self, Reply, err, ok};
use super::{Model, Session};

/// Redis's reply to most commands while a script is past the threshold.
pub const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// Redis's answer while a function (FCALL) is busy.
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
/// SCRIPT KILL with no script running.
pub const NOTBUSY: &str = "NOTBUSY No scripts in execution right now.";
/// SCRIPT KILL for a script that has written.
pub const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.";
/// The error the killed script ends with (before the `script: ...` suffix).
pub const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";

/// Redis 7.0's `busy-reply-threshold` default, in ms.
pub const BUSY_REPLY_THRESHOLD_MS_DEFAULT: u64 = 5_000;

/// The running script's state, shared (in an `Arc`) between the script host and every
/// connection of the node. Plain atomics: each field is read and written on its own, and a
/// momentarily stale read only delays a BUSY reply or a kill by one poll.
#[derive(Debug)]
pub struct ScriptWatch {
    running: AtomicBool,
    /// Node time the running script started at.
    started_ms: AtomicU64,
    /// `busy-reply-threshold` as it was when the script started.
    threshold_ms: AtomicU64,
    /// The script has run a write command (Redis's `SCRIPT_WRITE_DIRTY`).
    wrote: AtomicBool,
    /// SCRIPT KILL asked the running script to stop.
    kill: AtomicBool,
    /// Some connection has asked for an allow-busy command (`calls` is not empty): the one
    /// atomic the script's hook reads before it takes any lock.
    asked: AtomicBool,
    /// Allow-busy commands other connections asked for while busy, and their answers.
    calls: Mutex<BusyCalls>,
    /// The running script is a function (FCALL), not an EVAL.
    is_function: AtomicBool,
    /// What FUNCTION STATS shows of the running function.
    function: Mutex<Option<FunctionRun>>,
    /// The next client id. Here rather than behind the model's lock: a connection that
    /// arrives while a script is busy gets its id at once, as Redis's accept handler (run
    /// from the script's hook) gives it, so HELLO answers with it before the script ends.
    next_client_id: AtomicU64,
}

/// The allow-busy commands (MULTI, WATCH, HELLO, ...) other connections asked for while a
/// script runs. Redis runs them from inside the script's hook (`processEventsWhileBlocked`)
/// against the live keyspace; the model's hook does the same with the `Core` it holds.
#[derive(Debug, Default)]
struct BusyCalls {
    next_ticket: u64,
    /// `(ticket, the client's session, argv)`, not yet run.
    asked: Vec<(u64, Session, Vec<Vec<u8>>)>,
    /// Taken by a hook and running now.
    running: Vec<u64>,
    /// `(ticket, the session after the command, its reply)`.
    answered: Vec<(u64, Session, Reply)>,
}

/// Where an allow-busy call stands, for the connection that asked.
#[derive(Debug)]
pub enum BusyCall {
    /// Run: the session as the command left it, and the reply.
    Answered(Session, Reply),
    /// Not run yet (or being run by a hook now).
    Waiting,
    /// Taken back before any hook ran it: the connection runs it with the model.
    Withdrawn,
}

/// A running function as FUNCTION STATS shows it, and the node's counts for its `engines`.
#[derive(Clone, Debug, Default)]
pub struct FunctionRun {
    /// The function's name.
    pub name: String,
    /// The FCALL command that runs it.
    pub argv: Vec<Vec<u8>>,
    /// Libraries loaded.
    pub libraries: usize,
    /// Functions loaded.
    pub functions: usize,
}

impl Default for ScriptWatch {
    fn default() -> ScriptWatch {
        ScriptWatch {
            running: AtomicBool::new(false),
            started_ms: AtomicU64::new(0),
            threshold_ms: AtomicU64::new(BUSY_REPLY_THRESHOLD_MS_DEFAULT),
            wrote: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            asked: AtomicBool::new(false),
            calls: Mutex::new(BusyCalls::default()),
            is_function: AtomicBool::new(false),
            function: Mutex::new(None),
            next_client_id: AtomicU64::new(1),
        }
    }
}

impl ScriptWatch {
    /// Whether a script is running now (past the threshold or not).
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Whether other clients are answered `BUSY` at `now_ms`: a script is running and has
    /// run for at least the threshold.
    pub fn busy(&self, now_ms: u64) -> bool {
        self.running()
            && now_ms.saturating_sub(self.started_ms.load(Ordering::Relaxed))
                >= self.threshold_ms.load(Ordering::Relaxed)
    }

    /// SCRIPT KILL from another connection: `+OK` and a kill request for a script that has
    /// not written, `UNKILLABLE` for one that has, `NOTBUSY` when none runs.
    pub fn kill(&self) -> Reply {
        self.kill_as(false)
    }

    /// SCRIPT KILL (`function_kill` false) or FUNCTION KILL: each stops only its own kind,
    /// in Redis's order of checks (nothing running, wrote, wrong kind).
    pub fn kill_as(&self, function_kill: bool) -> Reply {
        if !self.running() {
            return err(NOTBUSY);
        }
        if self.wrote.load(Ordering::Acquire) {
            return err(UNKILLABLE);
        }
        let is_function = self.is_function.load(Ordering::Acquire);
        if is_function != function_kill {
            return err(if is_function {
                BUSY_FUNCTION
            } else {
                BUSY_EVAL
            });
        }
        self.kill.store(true, Ordering::Release);
        ok()
    }

    /// A new client id (ids start at 1 and never repeat on this node).
    pub fn take_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, BusyCalls> {
        // Every holder only moves entries between vectors, so a poisoned lock's data is whole.
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the running script's hook to run an allow-busy command for `session` (one that
    /// [`busy_reply`] leaves to the model); returns the ticket to [`ScriptWatch::call`] with.
    pub fn ask(&self, session: Session, argv: Vec<Vec<u8>>) -> u64 {
        let mut calls = self.calls();
        let ticket = calls.next_ticket;
        calls.next_ticket += 1;
        calls.asked.push((ticket, session, argv));
        self.asked.store(true, Ordering::Release);
        ticket
    }

    /// Where the call `ticket` stands. With `withdraw`, a call no hook has taken is taken
    /// back (the script has ended: the connection runs it with the model instead).
    pub fn call(&self, ticket: u64, withdraw: bool) -> BusyCall {
        let mut calls = self.calls();
        if let Some(position) = calls.answered.iter().position(|call| call.0 == ticket) {
            let (_, session, reply) = calls.answered.swap_remove(position);
            return BusyCall::Answered(session, reply);
        }
        if withdraw && let Some(position) = calls.asked.iter().position(|call| call.0 == ticket) {
            calls.asked.remove(position);
            if calls.asked.is_empty() {
                self.asked.store(false, Ordering::Release);
            }
            return BusyCall::Withdrawn;
        }
        if calls.asked.iter().any(|call| call.0 == ticket) || calls.running.contains(&ticket) {
            return BusyCall::Waiting;
        }
        // Unknown (already answered and taken): nothing to wait for.
        BusyCall::Withdrawn
    }

    /// Runs every asked call on `model` (the running script's keyspace, at the script's
    /// frozen node time `node_ms`), as Redis's script hook serves other clients.
    pub(crate) fn serve_calls(&self, model: &mut Model, node_ms: u64) {
        if !self.asked.load(Ordering::Acquire) {
            return;
        }
        let asked = {
            let mut calls = self.calls();
            self.asked.store(false, Ordering::Release);
            let asked = std::mem::take(&mut calls.asked);
            calls.running.extend(asked.iter().map(|call| call.0));
            asked
        };
        for (ticket, mut session, argv) in asked {
            let reply = model.exec_while_busy(node_ms, &mut session, &argv);
            let mut calls = self.calls();
            calls.running.retain(|running| *running != ticket);
            calls.answered.push((ticket, session, reply));
        }
    }

    /// Whether some connection waits for an allow-busy call (the hook's fast check).
    pub(crate) fn has_calls(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    /// Says what runs next: a function (with what FUNCTION STATS shows) or, with `None`, an
    /// EVAL script.
    pub(crate) fn describe_function(&self, run: Option<FunctionRun>) {
        match run {
            None => self.is_function.store(false, Ordering::Release),
            Some(run) => {
                *self
                    .function
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(run);
                self.is_function.store(true, Ordering::Release);
            }
        }
    }

    /// FUNCTION STATS while a script runs: Redis's BUSY for an EVAL script, else the
    /// running function, its command and how long it has run by `now_ms`.
    fn function_stats(&self, now_ms: u64) -> Reply {
        if !self.is_function.load(Ordering::Acquire) {
            return err(BUSY_EVAL);
        }
        let run = self
            .function
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        let bulk = |text: &str| Reply::Bulk(text.as_bytes().to_vec());
        let count = |n: usize| Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let duration = now_ms.saturating_sub(self.started_ms.load(Ordering::Relaxed));
        Reply::Map(vec![
            (
                bulk("running_script"),
                Reply::Map(vec![
                    (bulk("name"), bulk(&run.name)),
                    (
                        bulk("command"),
                        Reply::Array(run.argv.iter().cloned().map(Reply::Bulk).collect()),
                    ),
                    (
                        bulk("duration_ms"),
                        Reply::Integer(i64::try_from(duration).unwrap_or(i64::MAX)),
                    ),
                ]),
            ),
            (
                bulk("engines"),
                Reply::Map(vec![(
                    bulk("LUA"),
                    Reply::Map(vec![
                        (bulk("libraries_count"), count(run.libraries)),
                        (bulk("functions_count"), count(run.functions)),
                    ]),
                )]),
            ),
        ])
    }

    pub(crate) fn start(&self, now_ms: u64, threshold_ms: u64) {
        self.started_ms.store(now_ms, Ordering::Relaxed);
        self.threshold_ms.store(threshold_ms, Ordering::Relaxed);
        self.wrote.store(false, Ordering::Release);
        self.kill.store(false, Ordering::Release);
        self.running.store(true, Ordering::Release);
    }

    /// The script is about to run a write command: from now on it cannot be killed.
    pub(crate) fn mark_wrote(&self) {
        self.wrote.store(true, Ordering::Release);
    }

    pub(crate) fn kill_requested(&self) -> bool {
        self.kill.load(Ordering::Acquire)
    }

    pub(crate) fn finish(&self) {
        self.running.store(false, Ordering::Release);
        self.kill.store(false, Ordering::Release);
    }
}

impl Model {
    /// Runs an allow-busy command of another client in the middle of a running script, at
    /// the script's frozen node time, as Redis runs it from the script's hook: the same
    /// dispatch as [`Model::exec`] (MULTI queueing, errors counted) without the active expiry
    /// sweep, which Redis does not run while a script is busy.
    pub(crate) fn exec_while_busy(
        &mut self,
        node_ms: u64,
        session: &mut Session,
        argv: &[Vec<u8>],
    ) -> Reply {
        if argv[0].eq_ignore_ascii_case(b"exec") {
            // Refused, as every command without ALLOW_BUSY; an EXEC that is refused discards
            // the transaction (Redis's `execCommandAbort`), even outside MULTI.
            session.multi = None;
            session.multi_failed = false;
            self.core.unwatch_all(session);
            return err(format!(
                "EXECABORT Transaction discarded because of: {BUSY_EVAL}"
            ));
        }
        let reply = self.dispatch(node_ms, session, argv);
        if let Reply::Error(line) = &reply {
            self.core.count_error(line);
        }
        if session.resp == reply::Protocol::Resp2 && !reply.is_resp2() {
            return reply.to_resp2();
        }
        reply
    }
}

/// What a connection answers for `argv` while the node is busy, without the model: `None`
/// for the allow-busy commands Redis runs even while busy that need the model (AUTH,
/// DISCARD, HELLO, MULTI, RESET, UNWATCH, WATCH): the connection asks the script's hook to
/// run them ([`ScriptWatch::ask`]). SHUTDOWN waits for the script. Checks run in Redis's order:
/// unknown command and arity first, then the busy rule. A command refused inside MULTI
/// makes EXEC abort, as Redis's `rejectCommand` does.
pub fn busy_reply(
    watch: &ScriptWatch,
    session: &mut Session,
    argv: &[Vec<u8>],
    now_ms: u64,
) -> Option<Reply> {
    let Some(spec) = command::lookup(&argv[0]) else {
        session.multi_failed |= session.multi.is_some();
        return Some(reply::unknown_command(argv));
    };
    if !spec.arity_ok(argv.len()) {
        session.multi_failed |= session.multi.is_some();
        return Some(reply::wrong_arity(spec.name));
    }
    match spec.name {
        "quit" => {
            session.quit = true;
            return Some(ok());
        }
        "script" if argv.len() == 2 && argv[1].eq_ignore_ascii_case(b"kill") => {
            // Allowed while busy, so inside MULTI it is queued like any other command.
            if let Some(queue) = session.multi.as_mut() {
                queue.push(argv.to_vec());
                return Some(Reply::Status("QUEUED".to_owned()));
            }
            return Some(watch.kill_as(false));
        }
        "function" if argv.len() == 2 && argv[1].eq_ignore_ascii_case(b"kill") => {
            return Some(watch.kill_as(true));
        }
        "function" if argv.len() == 2 && argv[1].eq_ignore_ascii_case(b"stats") => {
            return Some(watch.function_stats(now_ms));
        }
        // EXEC is refused, and the refusal aborts the transaction (its watches too),
        // inside MULTI or not: that needs the model.
        "exec" => return None,
        // Redis 7.0's CMD_ALLOW_BUSY commands that need the model (`commands/*.json` flag
        // ALLOW_BUSY: auth, discard, hello, multi, reset, shutdown, unwatch, watch, besides
        // quit, script kill and function kill/stats above; replconf is not modelled).
        "auth" | "discard" | "hello" | "multi" | "reset" | "shutdown" | "unwatch" | "watch" => {
            return None;
        }
        _ => {}
    }
    session.multi_failed |= session.multi.is_some();
    if watch.is_function.load(Ordering::Acquire) {
        return Some(err(BUSY_FUNCTION));
    }
    Some(err(BUSY_EVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|word| word.as_bytes().to_vec()).collect()
    }

    /// Goal: SCRIPT KILL answers as Redis 7.0.15 does in each state of the script.
    /// Method: drive a watch through idle, running, written and finished, and kill each time.
    #[test]
    fn kill_answers_by_the_script_state() {
        let watch = ScriptWatch::default();
        assert_eq!(watch.kill(), err(NOTBUSY));
        watch.start(1_000, 10);
        assert_eq!(watch.kill(), ok());
        assert!(watch.kill_requested());
        watch.finish();
        assert!(!watch.kill_requested());
        watch.start(2_000, 10);
        watch.mark_wrote();
        assert_eq!(watch.kill(), err(UNKILLABLE));
        assert!(!watch.kill_requested());
        watch.finish();
        assert_eq!(watch.kill(), err(NOTBUSY));
    }

    /// Goal: busy starts exactly at the threshold, measured with the caller's clock.
    #[test]
    fn busy_starts_at_the_threshold() {
        let watch = ScriptWatch::default();
        assert!(!watch.busy(u64::MAX));
        watch.start(1_000, 10);
        assert!(!watch.busy(1_009));
        assert!(watch.busy(1_010));
        // A clock behind the start (another connection's read) is not busy.
        assert!(!watch.busy(999));
        watch.finish();
        assert!(!watch.busy(5_000));
    }

    /// Goal: each kind of command gets Redis's answer while busy, and a transaction that saw
    /// a refusal is marked to abort.
    #[test]
    fn busy_replies_follow_redis_order() {
        let watch = ScriptWatch::default();
        watch.start(0, 0);
        let mut session = Session::default();
        let cases: &[(&[&str], Option<Reply>)] = &[
            (&["PING"], Some(err(BUSY_EVAL))),
            (&["GET"], Some(reply::wrong_arity("get"))),
            (
                &["NOSUCH", "a"],
                Some(reply::unknown_command(&argv(&["NOSUCH", "a"]))),
            ),
            (&["SCRIPT", "FLUSH"], Some(err(BUSY_EVAL))),
            (&["MULTI"], None),
            (&["WATCH", "k"], None),
            (&["script", "kill"], Some(ok())),
        ];
        for (words, expected) in cases {
            let got = busy_reply(&watch, &mut session, &argv(words), 0);
            assert_eq!(&got, expected, "{words:?}");
        }
        assert!(!session.multi_failed, "no transaction was open");
        session.multi = Some(Vec::new());
        assert_eq!(
            busy_reply(&watch, &mut session, &argv(&["SET", "k", "v"]), 0),
            Some(err(BUSY_EVAL))
        );
        assert!(session.multi_failed);
        // SCRIPT KILL is allowed while busy, so MULTI queues it; EXEC needs the model.
        assert_eq!(
            busy_reply(&watch, &mut session, &argv(&["SCRIPT", "KILL"]), 0),
            Some(Reply::Status("QUEUED".to_owned()))
        );
        assert_eq!(session.multi.as_ref().map(Vec::len), Some(1));
        assert!(busy_reply(&watch, &mut session, &argv(&["EXEC"]), 0).is_none());
        assert_eq!(
            busy_reply(&watch, &mut session, &argv(&["QUIT"]), 0),
            Some(ok())
        );
        assert!(session.quit);
    }

    /// Goal: an allow-busy command runs on the live keyspace in the middle of the script, as
    /// Redis runs it from its hook: a WATCH served then is broken by the script's later write,
    /// and a refused EXEC discards the transaction. Method: ask, serve as the hook does, then
    /// write as the script would, and finish the transaction with the model.
    #[test]
    fn allow_busy_calls_run_on_the_live_keyspace() {
        use crate::model::NodeConfig;
        let mut model = Model::new(NodeConfig::standalone(1));
        let mut writer = model.connect("script:1");
        let line = |words: &[&str]| argv(words);
        model.exec(0, &mut writer, &line(&["SET", "k", "1"]));
        let mut client = model.connect("client:2");
        let watch = ScriptWatch::default();
        watch.start(0, 0);
        let ticket = watch.ask(client.clone(), line(&["WATCH", "k"]));
        assert!(matches!(watch.call(ticket, false), BusyCall::Waiting));
        watch.serve_calls(&mut model, 0);
        let BusyCall::Answered(session, reply) = watch.call(ticket, false) else {
            panic!("the hook answered");
        };
        assert_eq!(reply, ok());
        client = session;
        // The script writes the key after the WATCH: the transaction must fail.
        model.exec(0, &mut writer, &line(&["SET", "k", "2"]));
        watch.finish();
        model.exec(0, &mut client, &line(&["MULTI"]));
        model.exec(0, &mut client, &line(&["GET", "k"]));
        assert_eq!(
            model.exec(0, &mut client, &line(&["EXEC"])),
            Reply::NilArray
        );

        // A refused EXEC ends the transaction and its watches.
        watch.start(0, 0);
        model.exec(0, &mut client, &line(&["WATCH", "k"]));
        model.exec(0, &mut client, &line(&["MULTI"]));
        let ticket = watch.ask(client.clone(), line(&["EXEC"]));
        watch.serve_calls(&mut model, 0);
        let BusyCall::Answered(session, reply) = watch.call(ticket, false) else {
            panic!("the hook answered");
        };
        assert_eq!(
            reply,
            err(format!(
                "EXECABORT Transaction discarded because of: {BUSY_EVAL}"
            ))
        );
        assert!(session.multi.is_none() && session.watched.is_empty());
        // A call no hook took is taken back once the script has ended.
        let ticket = watch.ask(session, line(&["MULTI"]));
        watch.finish();
        assert!(matches!(watch.call(ticket, true), BusyCall::Withdrawn));
        assert!(!watch.has_calls());
    }
}
