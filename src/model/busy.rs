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

use super::Session;
use super::command;
use super::reply::{self, Reply, err, ok};

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
    /// The running script is a function (FCALL), not an EVAL.
    is_function: AtomicBool,
    /// What FUNCTION STATS shows of the running function.
    function: Mutex<Option<FunctionRun>>,
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
            is_function: AtomicBool::new(false),
            function: Mutex::new(None),
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

/// What a connection answers for `argv` while the node is busy, without the model: `None`
/// when the command must wait for the script to end (it is one Redis runs even while busy
/// and it needs the model: MULTI, WATCH, AUTH, HELLO, ...). Checks run in Redis's order:
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
            return Some(watch.kill_as(false));
        }
        "function" if argv.len() == 2 && argv[1].eq_ignore_ascii_case(b"kill") => {
            return Some(watch.kill_as(true));
        }
        "function" if argv.len() == 2 && argv[1].eq_ignore_ascii_case(b"stats") => {
            return Some(watch.function_stats(now_ms));
        }
        // Redis 7.0's CMD_ALLOW_BUSY commands that need the model run after the script.
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
        assert_eq!(
            busy_reply(&watch, &mut session, &argv(&["QUIT"]), 0),
            Some(ok())
        );
        assert!(session.quit);
    }
}
