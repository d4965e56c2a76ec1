//! The server loop: serves one shared [`Model`] to one client over any byte stream.
//!
//! Why a loop over `AsyncRead + AsyncWrite` and nothing more: `ratelab serve` hands in tokio TCP
//! streams, the simulation hands in turmoil's, and the tests hand in `tokio::io::duplex`. The
//! accept loop lives at each edge; this file only knows one connection.
//!
//! The loop behaves as Redis's `readQueryFromClient`/`processInputBuffer` do, seen from the
//! wire: every complete command in the input runs in order and the replies go out together in
//! one write (pipelining); empty commands are skipped; a protocol error is answered with
//! `-ERR Protocol error: ...` after the replies before it, and then the connection closes; so
//! does QUIT after its `+OK`. The model's mutex is a std mutex taken once per batch and never
//! held across an await, so a slow or vanished peer never blocks anyone else.

use std::io;
use std::sync::Arc;

use std::sync::{MutexGuard, TryLockError};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{ProtocolError, encode_reply_as, parse_command};
use crate::model::busy::{BusyCall, ScriptWatch, busy_reply};
use crate::model::{Limits, Model, Session};

pub use crate::model::{Clock, SharedModel};

/// The most a client may have buffered and not yet parsed. Redis's default
/// `client-query-buffer-limit` is 1 GiB; a client over it is dropped without a reply, as Redis
/// does. The codec's own limits (line lengths, bulk and array sizes) refuse most abuse long
/// before this; this is the ceiling for a frame of many large bulks.
pub const QUERY_BUFFER_MAX: usize = 1024 * 1024 * 1024;

/// How much free room the input buffer gets before each read. Large enough that a pipelined
/// burst arrives in few reads, small enough that an idle connection costs little.
const READ_CHUNK: usize = 16 * 1024;

/// When a batch's replies pass this size, they are written before the rest of the input is
/// parsed, so a pipeline of large replies does not pile up in memory.
const REPLY_FLUSH_AT: usize = 1024 * 1024;

/// The most commands one batch runs under one lock: enough to amortise the lock over a
/// pipeline, few enough that other connections get their turn.
const BATCH_COMMANDS_MAX: usize = 1024;

/// A buffer that grew past this for one large frame or reply is given back once it is empty,
/// so a long-lived connection does not keep its peak allocation.
const BUFFER_KEEP_MAX: usize = 1024 * 1024;

/// What one batch of parsing and running decided about the connection.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Everything complete has run: write the replies and read more.
    Read,
    /// Input is left that this batch did not run (the batch was full, the replies grew
    /// large, or the limits changed): write the replies, then parse again without reading.
    Continue,
    /// A script is running past the threshold and the next command needs the model (MULTI,
    /// WATCH, ...): write the replies, wait a moment, and try again.
    Wait,
    /// QUIT or a protocol error: write the replies, then close.
    Close,
}

/// How long a connection waits before it looks again at a script that holds the model.
const SCRIPT_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// The client's place in the model's client table, taken when the connection first gets the
/// model and given back however the connection ends: a clean close, an IO error, or the task
/// being dropped mid-await (an aborted task, a runtime shutting down).
struct Registration {
    model: SharedModel,
    session: Session,
    peer_addr: String,
    registered: bool,
    /// The allow-busy command (the first of the input) this connection asked the running
    /// script's hook to run, by ticket.
    busy_call: Option<u64>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let pending = self.busy_call.take();
        if !self.registered && pending.is_none() {
            return;
        }
        match self.model.try_lock() {
            Ok(mut model) => end_session(&mut model, &mut self.session, pending),
            // A script holds the model: waiting here would block a runtime thread for as long
            // as the script runs, so a thread of its own waits instead.
            Err(std::sync::TryLockError::WouldBlock) => {
                let model = Arc::clone(&self.model);
                let mut session = std::mem::take(&mut self.session);
                std::thread::spawn(move || {
                    if let Ok(mut model) = model.lock() {
                        end_session(&mut model, &mut session, pending);
                    }
                });
            }
            // A poisoned mutex means a command panicked; that panic is the report. Panicking
            // again here, possibly while unwinding, would only abort the process.
            Err(std::sync::TryLockError::Poisoned(_)) => {}
        }
    }
}

/// Ends a connection's session with the model held. An allow-busy call the connection asked
/// for and never collected (it left while a script was busy) is settled first: taken back if
/// no hook ran it, and if one did (a WATCH, say) the session it left is the one to end, so
/// its watches and the hook's answer do not outlive the connection.
fn end_session(model: &mut Model, session: &mut Session, pending: Option<u64>) {
    if let Some(ticket) = pending
        && let BusyCall::Answered(answered, _) = model.scripts.watch().call(ticket, true)
    {
        *session = answered;
    }
    model.disconnect(session);
}

/// Redis's reply to a connection past `maxclients`, before it closes it.
const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// The `maxclients` in force (CONFIG SET changes it; Redis's default is 10000).
fn max_clients(model: &Model) -> usize {
    model
        .core
        .params
        .get("maxclients")
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000)
}

/// Serves `model` to one client on `stream` until the client leaves, sends QUIT, or breaks the
/// protocol. `peer_addr` is what CLIENT LIST shows. Returns `Ok` on every orderly end (EOF,
/// QUIT, a protocol error, which the client was told about) and `Err` only for IO errors.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ratelab::model::{Model, NodeConfig};
/// use ratelab::resp::server::{serve_connection, Clock};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let model = Arc::new(Mutex::new(Model::new(NodeConfig::standalone(1))));
/// let clock: Clock = Arc::new(|| 1_000);
/// let (mut client, server) = tokio::io::duplex(1024);
/// tokio::spawn(serve_connection(server, model, clock, "test:1".to_owned()));
/// client.write_all(b"PING\r\nQUIT\r\n").await.unwrap();
/// let mut replies = Vec::new();
/// client.read_to_end(&mut replies).await.unwrap();
/// assert_eq!(replies, b"+PONG\r\n+OK\r\n");
/// # });
/// ```
pub async fn serve_connection<S>(
    stream: S,
    model: SharedModel,
    clock: Clock,
    peer_addr: String,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let watch = lock(&model).scripts.watch();
    serve_watched(stream, model, watch, clock, peer_addr).await
}

/// [`serve_connection`] with the model's [`ScriptWatch`] (from `Model::scripts.watch()`)
/// handed in, so that the connection can start, and answer `BUSY` or run `SCRIPT KILL`, while
/// a long script holds the model. `ratelab serve` uses this one.
pub async fn serve_watched<S>(
    mut stream: S,
    model: SharedModel,
    watch: Arc<ScriptWatch>,
    clock: Clock,
    peer_addr: String,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut registration = Registration {
        model: Arc::clone(&model),
        session: Session::default(),
        peer_addr,
        registered: false,
        busy_call: None,
    };
    let mut limits = Limits::standard();
    let admitted = match take_turn(&model, &watch, &clock).await {
        Turn::Model(mut guard) => {
            limits.clone_from(&guard.core.config.limits);
            register(&mut guard, &mut registration)
        }
        // Registered when it first gets the model, under the id it takes now (HELLO while
        // busy reports it).
        Turn::Busy => {
            registration.session.id = watch.take_client_id();
            true
        }
    };
    if !admitted {
        // Best effort, as Redis's: the peer may not even read it.
        let _ = stream.write_all(MAX_CLIENTS_REACHED).await;
        let _ = stream.shutdown().await;
        return Ok(());
    }
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut output: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // The peer half-closed: run what it sent, answer, and close.
    let mut peer_done = false;
    loop {
        if !peer_done {
            reserve_read_room(&mut input);
            let read = stream.read_buf(&mut input).await?;
            // The peer left, perhaps mid-command: what it half sent is dropped unanswered.
            peer_done = read == 0;
        }
        loop {
            refresh_limits(&model, &mut limits);
            let parsed = parse_batch(&input, &limits);
            let parsed_scripts = parsed.frames.iter().any(|(argv, _)| runs_script(argv));
            let next = if let Some(ticket) = registration.busy_call {
                settle_busy_call(
                    &watch,
                    ticket,
                    &mut registration,
                    &parsed,
                    &mut input,
                    &mut output,
                )
            } else {
                match take_turn(&model, &watch, &clock).await {
                    Turn::Model(mut guard) => {
                        if register(&mut guard, &mut registration) {
                            let session = &mut registration.session;
                            let run = || {
                                run_batch(
                                    guard,
                                    &clock,
                                    &limits,
                                    session,
                                    parsed,
                                    &mut input,
                                    &mut output,
                                )
                            };
                            if may_block(parsed_scripts) {
                                tokio::task::block_in_place(run)
                            } else {
                                run()
                            }
                        } else {
                            drop(guard);
                            output.extend_from_slice(MAX_CLIENTS_REACHED);
                            input.clear();
                            Next::Close
                        }
                    }
                    Turn::Busy => answer_busy(
                        &watch,
                        &mut registration,
                        parsed,
                        &mut input,
                        &mut output,
                        clock(),
                    ),
                }
            };
            let mut read_meanwhile = false;
            if !output.is_empty() {
                let progress = write_while_reading(&mut stream, &output, &mut input, peer_done);
                (read_meanwhile, peer_done) = progress.await?;
                output.clear();
                shrink_if_idle(&mut output);
            }
            match next {
                Next::Read if read_meanwhile => continue,
                Next::Read => break,
                Next::Continue => continue,
                Next::Wait => tokio::time::sleep(SCRIPT_POLL).await,
                Next::Close => {
                    stream.flush().await?;
                    // Best effort: the peer may already be gone, and that is its business.
                    let _ = stream.shutdown().await;
                    return Ok(());
                }
            }
        }
        if peer_done || input.len() > QUERY_BUFFER_MAX {
            return Ok(());
        }
        shrink_if_idle(&mut input);
    }
}

/// Whether a command may run a script (directly, or queued in a transaction).
fn runs_script(argv: &[Vec<u8>]) -> bool {
    [
        "eval",
        "evalsha",
        "eval_ro",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
        "exec",
    ]
    .iter()
    .any(|name| argv[0].eq_ignore_ascii_case(name.as_bytes()))
}

/// Whether a batch that may run a script should tell the runtime it blocks: on a
/// multi-threaded runtime a script holds its worker for as long as it runs, and tasks that
/// worker had queued (or the IO driver it was polling for) would wait with it, BUSY replies
/// and SCRIPT KILL included. `block_in_place` hands the worker's queue to another thread
/// first. The current-thread runtimes (the simulation, most tests) have no other thread.
fn may_block(scripted: bool) -> bool {
    scripted
        && tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        })
}

/// Registers the client on its first turn with the model; `false` if `maxclients` is reached
/// (the client count does not include this one, as in Redis's `acceptCommonHandler`).
fn register(model: &mut Model, registration: &mut Registration) -> bool {
    if registration.registered {
        return true;
    }
    if model.core.clients.len() >= max_clients(model) {
        model.core.stats.rejected_connections += 1;
        return false;
    }
    let session = match registration.session.id {
        0 => model.connect(&registration.peer_addr),
        taken => model.connect_as(taken, &registration.peer_addr),
    };
    // What the client did while a script was busy (a failed MULTI, say) carries over.
    registration.session.id = session.id;
    registration.registered = true;
    true
}

/// How a batch runs: with the model, or, while a script has run past `busy-reply-threshold`,
/// answered from the [`ScriptWatch`] without it.
enum Turn<'a> {
    Model(MutexGuard<'a, Model>),
    Busy,
}

/// Takes the model for one batch. Uncontended (always, under simulation) this is one
/// `try_lock` and never awaits. While a script holds the model, the connection polls: it
/// gets the model when the script ends, or [`Turn::Busy`] once the script has run past the
/// threshold by `clock`. Without a script, a contended lock is usually another connection's
/// short batch: the connection yields a few times, then polls as for a script. It never
/// blocks on the lock: the batch holding it may be about to start a script (compiling it,
/// creating the Lua state), and a connection parked in `lock` then would wait for the whole
/// script, however long, instead of being answered BUSY.
async fn take_turn<'a>(model: &'a SharedModel, watch: &ScriptWatch, clock: &Clock) -> Turn<'a> {
    const YIELDS_BEFORE_POLLING: u32 = 64;
    let mut tries: u32 = 0;
    loop {
        match model.try_lock() {
            Ok(guard) => return Turn::Model(guard),
            Err(TryLockError::Poisoned(_)) => return Turn::Model(lock(model)),
            Err(TryLockError::WouldBlock) => {}
        }
        if watch.busy(clock()) {
            return Turn::Busy;
        }
        tries = tries.saturating_add(1);
        if !watch.running() && tries < YIELDS_BEFORE_POLLING {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(SCRIPT_POLL).await;
        }
    }
}

/// Reads the limits for this batch, so that a CONFIG SET proto-max-bulk-len from any client
/// applies to what is parsed after it. Parsing happens without the lock (a client trickling
/// in a huge frame makes us reparse it, and nobody else should wait for that); while a
/// script holds the model, the last limits seen stand.
fn refresh_limits(model: &SharedModel, limits: &mut Limits) {
    if let Ok(model) = model.try_lock() {
        limits.clone_from(&model.core.config.limits);
    }
}

/// Every complete command at the front of the input, parsed under `limits`.
struct Parsed {
    /// Each command with the input offset just after it.
    frames: Vec<(Vec<Vec<u8>>, usize)>,
    /// Input parsed, up to the protocol error if there is one.
    consumed: usize,
    protocol_error: Option<ProtocolError>,
    next: Next,
}

fn parse_batch(input: &[u8], limits: &Limits) -> Parsed {
    let mut frames: Vec<(Vec<Vec<u8>>, usize)> = Vec::new();
    let mut consumed = 0;
    let mut protocol_error = None;
    while frames.len() < BATCH_COMMANDS_MAX {
        match parse_command(&input[consumed..], limits) {
            Ok(None) => break,
            Ok(Some((argv, used))) => {
                consumed += used;
                // Empty commands (`*0`, blank lines) are skipped, as Redis does.
                if !argv.is_empty() {
                    frames.push((argv, consumed));
                }
            }
            Err(error) => {
                protocol_error = Some(error);
                break;
            }
        }
    }
    let next = if protocol_error.is_some() {
        Next::Close
    } else if frames.len() == BATCH_COMMANDS_MAX {
        Next::Continue
    } else {
        Next::Read
    };
    Parsed {
        frames,
        consumed,
        protocol_error,
        next,
    }
}

/// Answers a parsed batch while a script is busy (see `model::busy::busy_reply`). An
/// allow-busy command that needs the model (MULTI, WATCH, HELLO, ...) stops the batch: the
/// running script's hook is asked to run it (SHUTDOWN waits for the script instead), and it
/// and the rest stay in the input until [`settle_busy_call`] has its answer.
fn answer_busy(
    watch: &ScriptWatch,
    registration: &mut Registration,
    parsed: Parsed,
    input: &mut Vec<u8>,
    output: &mut Vec<u8>,
    now_ms: u64,
) -> Next {
    let session = &mut registration.session;
    let mut done = 0;
    for (argv, end) in &parsed.frames {
        let Some(reply) = busy_reply(watch, session, argv, now_ms) else {
            if !argv[0].eq_ignore_ascii_case(b"shutdown") {
                registration.busy_call = Some(watch.ask(session.clone(), argv.clone()));
            }
            input.drain(..done);
            return Next::Wait;
        };
        encode_reply_as(&reply, session.resp, output);
        done = *end;
        if session.quit {
            input.clear();
            return Next::Close;
        }
    }
    if let Some(error) = parsed.protocol_error {
        // Not counted in the error stats: they live behind the lock.
        write_protocol_error(&error, output);
    }
    input.drain(..parsed.consumed);
    parsed.next
}

/// The connection waits for the allow-busy command it asked the script's hook to run (the
/// first command of the input): its answer is written and the command consumed; once the
/// script has ended, a call no hook took is taken back and runs with the model.
fn settle_busy_call(
    watch: &ScriptWatch,
    ticket: u64,
    registration: &mut Registration,
    parsed: &Parsed,
    input: &mut Vec<u8>,
    output: &mut Vec<u8>,
) -> Next {
    match watch.call(ticket, !watch.running()) {
        BusyCall::Answered(session, reply) => {
            registration.busy_call = None;
            // The hook ran it on a copy: what the command changed (MULTI, WATCH, RESP) is
            // this connection's from now on.
            registration.session = session;
            encode_reply_as(&reply, registration.session.resp, output);
            if let Some((_, end)) = parsed.frames.first() {
                input.drain(..*end);
            }
            Next::Continue
        }
        BusyCall::Waiting => Next::Wait,
        BusyCall::Withdrawn => {
            registration.busy_call = None;
            Next::Continue
        }
    }
}

fn write_protocol_error(error: &ProtocolError, output: &mut Vec<u8>) {
    output.extend_from_slice(b"-ERR ");
    output.extend_from_slice(error.0.as_bytes());
    output.extend_from_slice(b"\r\n");
}

/// Runs a parsed batch under one lock, appending replies to `output`. Consumed input is
/// removed; input parsed but not run (see [`Next::Continue`]) stays and is parsed again.
fn run_batch(
    mut model: MutexGuard<'_, Model>,
    clock: &Clock,
    limits: &Limits,
    session: &mut Session,
    parsed: Parsed,
    input: &mut Vec<u8>,
    output: &mut Vec<u8>,
) -> Next {
    let Parsed {
        frames,
        mut consumed,
        mut protocol_error,
        mut next,
    } = parsed;
    for (argv, end) in &frames {
        let reply = model.exec(clock(), session, argv);
        encode_reply_as(&reply, session.resp, output);
        if session.quit {
            input.clear();
            return Next::Close;
        }
        let limits_now = &model.core.config.limits;
        let limits_changed = limits_now.bulk_len_max != limits.bulk_len_max
            || limits_now.array_len_max != limits.array_len_max
            || limits_now.inline_len_max != limits.inline_len_max;
        let more_after = *end < consumed || protocol_error.is_some();
        if (limits_changed || output.len() >= REPLY_FLUSH_AT) && more_after {
            // What follows was parsed under the old limits, or the replies should go out
            // first: keep the rest of the input for the next round.
            consumed = *end;
            protocol_error = None;
            next = Next::Continue;
            break;
        }
    }
    if let Some(error) = protocol_error {
        // Redis counts the protocol error like any other error reply.
        model.core.stats.total_error_replies += 1;
        *model.core.stats.errors.entry("ERR".to_owned()).or_default() += 1;
        write_protocol_error(&error, output);
    }
    drop(model);
    input.drain(..consumed);
    next
}

/// Writes `output` while reading more input into `input`, as Redis keeps reading a client
/// whose replies are still going out. Without this a client that writes a long pipeline
/// before reading any reply (many do) would wait for us while we wait for it. Returns
/// whether anything was read, and whether the peer has half-closed.
async fn write_while_reading<S>(
    stream: &mut S,
    output: &[u8],
    input: &mut Vec<u8>,
    mut peer_done: bool,
) -> io::Result<(bool, bool)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut read_any = false;
    let mut written = 0;
    while written < output.len() {
        if peer_done || input.len() > QUERY_BUFFER_MAX {
            stream.write_all(&output[written..]).await?;
            break;
        }
        reserve_read_room(input);
        let (mut reader, mut writer) = tokio::io::split(&mut *stream);
        // Biased, so that under simulation the same events happen in the same order.
        tokio::select! {
            biased;
            sent = writer.write(&output[written..]) => match sent? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                sent => written += sent,
            },
            read = reader.read_buf(input) => match read? {
                0 => peer_done = true,
                _ => read_any = true,
            },
        }
    }
    Ok((read_any, peer_done))
}

fn reserve_read_room(input: &mut Vec<u8>) {
    if input.capacity() - input.len() < READ_CHUNK {
        input.reserve(READ_CHUNK);
    }
}

/// Locks the model. A poisoned lock means a command panicked, which is a bug in the model;
/// serving on from a half-updated state would hide it, so the panic spreads.
fn lock(model: &SharedModel) -> std::sync::MutexGuard<'_, Model> {
    model
        .lock()
        .expect("the model's mutex is poisoned: a command panicked")
}

fn shrink_if_idle(buffer: &mut Vec<u8>) {
    if buffer.is_empty() && buffer.capacity() > BUFFER_KEEP_MAX {
        buffer.shrink_to(READ_CHUNK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeConfig;
    use tokio::io::DuplexStream;

    fn shared_model() -> SharedModel {
        Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(7))))
    }

    fn fixed_clock() -> Clock {
        Arc::new(|| 1_700_000_000_123)
    }

    fn start(model: &SharedModel) -> (DuplexStream, tokio::task::JoinHandle<io::Result<()>>) {
        let (client, server) = tokio::io::duplex(1024 * 1024);
        let task = tokio::spawn(serve_connection(
            server,
            Arc::clone(model),
            fixed_clock(),
            "127.0.0.1:4242".to_owned(),
        ));
        (client, task)
    }

    /// Sends `input` cut at `splits`, then half-closes, and compares everything the server
    /// wrote before it closed with `expected`. Also checks that the server task ended
    /// cleanly and deregistered its client.
    fn check(cases: &[(&[u8], &[usize], &[u8])]) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        for (input, splits, expected) in cases {
            runtime.block_on(async {
                let model = shared_model();
                let (mut client, task) = start(&model);
                let mut from = 0;
                for &split in splits.iter().chain([input.len()].iter()) {
                    // The server may close early (protocol error, QUIT); later writes fail.
                    if client.write_all(&input[from..split]).await.is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                    from = split;
                }
                let _ = client.shutdown().await;
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.expect("read replies");
                task.await.expect("no panic").expect("no io error");
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(expected),
                    "input {:?} split at {splits:?}",
                    String::from_utf8_lossy(input)
                );
                assert!(
                    lock(&model).core.clients.is_empty(),
                    "the client is deregistered"
                );
            });
        }
    }

    /// Goal: a connection that leaves while the WATCH it asked a busy script's hook to run
    /// waits uncollected leaves no watch and no answer behind (registered or not, run by the
    /// hook or not). Method: ask, let the hook serve (or not), drop the registration.
    #[test]
    fn a_connection_gone_with_its_busy_watch_uncollected_leaves_nothing_behind() {
        for (registered, hook_ran) in [(true, true), (false, true), (true, false)] {
            let model = shared_model();
            let watch = lock(&model).scripts.watch();
            let mut registration = Registration {
                model: Arc::clone(&model),
                session: Session::default(),
                peer_addr: "127.0.0.1:1".to_owned(),
                registered: false,
                busy_call: None,
            };
            if registered {
                assert!(register(&mut lock(&model), &mut registration));
            }
            let argv = vec![b"WATCH".to_vec(), b"k".to_vec()];
            let ticket = watch.ask(registration.session.clone(), argv);
            registration.busy_call = Some(ticket);
            if hook_ran {
                let mut guard = lock(&model);
                watch.serve_calls(&mut guard, 0);
                assert_eq!(guard.core.watched_keys(), 1, "the hook ran the WATCH");
            }
            drop(registration);
            let guard = lock(&model);
            let case = format!("registered {registered}, hook ran {hook_ran}");
            assert_eq!(guard.core.watched_keys(), 0, "{case}: the watch ended");
            assert!(guard.core.clients.is_empty(), "{case}");
            assert!(!watch.has_calls(), "{case}: nothing left asked");
            assert!(
                matches!(watch.call(ticket, false), BusyCall::Withdrawn),
                "{case}: no answer left behind"
            );
        }
    }

    #[test]
    fn pipelined_commands_answer_in_order_across_any_split() {
        let input: &[u8] = b"PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1\r\n$6\r\nDBSIZE\r\n";
        let expected: &[u8] = b"+PONG\r\n$2\r\nhi\r\n:0\r\n";
        check(&[
            (input, &[], expected),
            (input, &[1], expected),
            (input, &[6, 7, 20, 30], expected),
            (input, &[input.len() - 1], expected),
        ]);
    }

    #[test]
    fn empty_commands_are_skipped_and_unknown_ones_answered() {
        check(&[
            (b"*0\r\n\r\n*-1\r\n   \r\nPING\r\n", &[], b"+PONG\r\n"),
            (
                b"NOSUCH a\r\nECHO\r\n",
                &[],
                b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n\
                  -ERR wrong number of arguments for 'echo' command\r\n",
            ),
        ]);
    }

    #[test]
    fn protocol_errors_answer_after_earlier_replies_and_close() {
        check(&[
            (
                b"PING\r\n*1\r\n:3\r\nPING\r\n",
                &[],
                b"+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n",
            ),
            (
                b"set k \"a\r\nPING\r\n",
                &[3],
                b"-ERR Protocol error: unbalanced quotes in request\r\n",
            ),
            (
                b"*1\r\n$-5\r\n",
                &[],
                b"-ERR Protocol error: invalid bulk length\r\n",
            ),
            (
                b"*abc\r\n",
                &[],
                b"-ERR Protocol error: invalid multibulk length\r\n",
            ),
        ]);
    }

    #[test]
    fn quit_answers_ok_and_ignores_the_rest() {
        check(&[
            (b"PING\r\nQUIT\r\nPING\r\n", &[], b"+PONG\r\n+OK\r\n"),
            (b"QUIT extra args\r\n", &[], b"+OK\r\n"),
        ]);
    }

    #[test]
    fn a_half_sent_command_is_dropped_at_eof() {
        check(&[
            (b"PING\r\n*3\r\n$3\r\nSET\r\n", &[], b"+PONG\r\n"),
            (b"PING\r\nPIN", &[2], b"+PONG\r\n"),
        ]);
    }

    #[test]
    fn a_frame_longer_than_the_inline_limit_is_cut_off() {
        let long = vec![b'a'; crate::model::Limits::standard().inline_len_max + 10];
        check(&[(
            &long,
            &[1000, 40_000],
            b"-ERR Protocol error: too big inline request\r\n",
        )]);
    }

    #[test]
    fn a_huge_pipeline_is_answered_in_full_and_in_order() {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for index in 0..5_000 {
            let word = format!("w{index}");
            crate::resp::codec::encode_command(&["ECHO", word.as_str()], &mut input);
            expected.extend_from_slice(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
        }
        check(&[
            (&input, &[], &expected),
            (&input, &[12_345, 50_001], &expected),
        ]);
    }

    #[test]
    fn large_replies_are_written_while_the_pipeline_is_still_running() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let model = shared_model();
            let (client, task) = start(&model);
            let (mut reader, mut writer) = tokio::io::split(client);
            let payload = vec![b'z'; 100_000];
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..40 {
                crate::resp::codec::encode_command(&[&b"ECHO"[..], &payload], &mut input);
                expected.extend_from_slice(b"$100000\r\n");
                expected.extend_from_slice(&payload);
                expected.extend_from_slice(b"\r\n");
            }
            input.extend_from_slice(b"QUIT\r\n");
            expected.extend_from_slice(b"+OK\r\n");
            // 4 MB of replies through a 1 MB pipe: the server must write some before it has
            // run everything, or both sides would wait for each other.
            let sender = tokio::spawn(async move { writer.write_all(&input).await });
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.expect("read");
            assert!(
                got == expected,
                "{} bytes, {} expected",
                got.len(),
                expected.len()
            );
            sender.await.expect("no panic").expect("written");
            task.await.expect("no panic").expect("no io error");
        });
    }

    #[test]
    fn a_client_that_writes_everything_before_reading_is_still_served() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let model = shared_model();
            // 4 KB each way against ~500 KB of commands and replies: the server must keep
            // reading while its replies wait, as Redis does.
            let (mut client, server) = tokio::io::duplex(4096);
            let task = tokio::spawn(serve_connection(
                server,
                Arc::clone(&model),
                fixed_clock(),
                "127.0.0.1:4243".to_owned(),
            ));
            let payload = "q".repeat(250);
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..2000 {
                crate::resp::codec::encode_command(&["ECHO", payload.as_str()], &mut input);
                expected.extend_from_slice(format!("$250\r\n{payload}\r\n").as_bytes());
            }
            input.extend_from_slice(b"QUIT\r\n");
            expected.extend_from_slice(b"+OK\r\n");
            // A regression would hang, so it is bounded to fail instead.
            let mut got = Vec::new();
            let exchange = async {
                client
                    .write_all(&input)
                    .await
                    .expect("write everything first");
                client.read_to_end(&mut got).await.expect("then read");
            };
            tokio::time::timeout(std::time::Duration::from_secs(20), exchange)
                .await
                .expect("no deadlock");
            assert!(
                got == expected,
                "{} bytes, {} expected",
                got.len(),
                expected.len()
            );
            task.await.expect("no panic").expect("no io error");
        });
    }

    #[test]
    fn the_bulk_limit_is_read_per_command() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let model = shared_model();
            lock(&model).core.config.limits.bulk_len_max = 4;
            let (mut client, task) = start(&model);
            client
                .write_all(b"*2\r\n$4\r\nECHO\r\n$4\r\nabcd\r\n*2\r\n$4\r\nECHO\r\n$5\r\nabcde\r\n")
                .await
                .expect("write");
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("read");
            assert_eq!(
                String::from_utf8_lossy(&got),
                "$4\r\nabcd\r\n-ERR Protocol error: invalid bulk length\r\n"
            );
            task.await.expect("no panic").expect("no io error");
            let stats = &lock(&model).core.stats;
            assert_eq!(stats.total_error_replies, 1);
            assert_eq!(stats.errors.get("ERR"), Some(&1));
        });
    }

    #[test]
    fn sessions_are_separate_and_a_vanished_peer_disturbs_no_one() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let model = shared_model();
            let (mut first, first_task) = start(&model);
            let (mut second, _second_task) = start(&model);
            first
                .write_all(b"SELECT 3\r\nMULTI\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$10\r\nabc")
                .await
                .expect("write");
            let mut reply = [0u8; 19];
            first.read_exact(&mut reply).await.expect("read");
            assert_eq!(&reply, b"+OK\r\n+OK\r\n+QUEUED\r\n");
            assert_eq!(lock(&model).core.clients.len(), 2);
            // The first client vanishes mid-command and mid-transaction.
            drop(first);
            first_task.await.expect("no panic").expect("no io error");
            assert_eq!(lock(&model).core.clients.len(), 1);
            second.write_all(b"PING\r\nEXEC\r\n").await.expect("write");
            let expected = b"+PONG\r\n-ERR EXEC without MULTI\r\n";
            let mut reply = vec![0u8; expected.len()];
            second.read_exact(&mut reply).await.expect("read");
            assert_eq!(reply, expected);
        });
    }
}
