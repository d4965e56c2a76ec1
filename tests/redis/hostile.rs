//! Hostile clients: one connection must not stall or exhaust the served model.
//!
//! Goal: what Redis 7.0.15 does for a script that runs long, a script that asks for huge
//! memory, and too many clients, checked over real TCP against the model served as
//! `ratelab serve` serves it (`serve_watched` on a multi-threaded runtime). Method: a client
//! starts the hostile script without waiting for its reply; a second client, on its own
//! connection, must get the answers Redis gives while the first is stuck (BUSY, SCRIPT KILL's
//! OK, UNKILLABLE, NOTBUSY), byte for byte as redis-server 7.0.15 wrote them here, and the
//! first must then get the killed script's error. Every wait is bounded, so a server that
//! blocks fails the test instead of hanging it.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratelab::model::{Model, NodeConfig, Reply};
use ratelab::resp::client::Client;
use ratelab::resp::server::{Clock, SharedModel, serve_watched};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

/// Runs a test on a runtime built as `ratelab serve` builds its own: two workers and, where
/// tokio allows it, no LIFO slot, so that no task waits behind the worker a script blocks.
///
/// The tests take turns: each pins a core with a busy script, and on a 2-core machine two of
/// them at once (beside the rest of the binary) starved each other past their timeouts.
fn served(test: impl std::future::Future<Output = TestResult>) -> TestResult {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = builder.build()?;
    let outcome = runtime.block_on(test);
    // A script left running (a failed test) would hold a worker: do not wait for it.
    runtime.shutdown_background();
    outcome
}

const BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.";

/// Serves a model built from `config` on a free port, as `ratelab serve` does.
async fn start(
    config: NodeConfig,
) -> Result<(SocketAddr, SharedModel), Box<dyn Error + Send + Sync>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let model: SharedModel = Arc::new(Mutex::new(Model::new(config)));
    let watch = model.lock().map_err(|_| "poisoned")?.scripts.watch();
    let clock: Clock = Arc::new(|| {
        let elapsed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    });
    let served = Arc::clone(&model);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let (model, clock, watch) =
                (Arc::clone(&served), Arc::clone(&clock), Arc::clone(&watch));
            tokio::spawn(serve_watched(stream, model, watch, clock, peer.to_string()));
        }
    });
    Ok((address, model))
}

async fn client(address: SocketAddr) -> Result<Client<TcpStream>, Box<dyn Error + Send + Sync>> {
    Ok(Client::new(TcpStream::connect(address).await?))
}

/// One command with a bound on its reply time.
async fn ask(
    client: &mut Client<TcpStream>,
    argv: &[&str],
) -> Result<Reply, Box<dyn Error + Send + Sync>> {
    Ok(tokio::time::timeout(Duration::from_secs(30), client.command(argv)).await??)
}

fn error(text: &str) -> Reply {
    Reply::Error(text.to_owned())
}

/// Sends PING until the reply is BUSY (the script has passed the threshold).
async fn wait_until_busy(client: &mut Client<TcpStream>) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ask(client, &["PING"]).await? {
            Reply::Error(line) if line == BUSY => return Ok(()),
            Reply::Status(pong) if pong == "PONG" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return Err(format!("expected BUSY, got {other:?}").into()),
        }
    }
}

fn sha1(script: &str) -> String {
    sha1_smol::Sha1::from(script).digest().to_string()
}

/// A read-only runaway script, with and without `pcall` around its loop: other clients get
/// BUSY, SCRIPT KILL stops it, the script's client gets Redis's kill error, and the node
/// serves again (NOTBUSY for a second kill).
#[test]
fn a_timed_out_read_only_script_is_answered_busy_and_killed() -> TestResult {
    served(a_timed_out_read_only_script_is_answered_busy_and_killed_body())
}

async fn a_timed_out_read_only_script_is_answered_busy_and_killed_body() -> TestResult {
    let (address, _model) = start(NodeConfig::standalone(1)).await?;
    let mut other = client(address).await?;
    assert_eq!(
        ask(&mut other, &["CONFIG", "SET", "lua-time-limit", "10"]).await?,
        Reply::Status("OK".into())
    );
    assert_eq!(
        ask(&mut other, &["SCRIPT", "KILL"]).await?,
        error("NOTBUSY No scripts in execution right now.")
    );
    for script in [
        "while true do end",
        "local f = function() while 1 do redis.call('ping') end end while 1 do pcall(f) end",
    ] {
        let mut runner = client(address).await?;
        let running = tokio::spawn(async move { ask(&mut runner, &["EVAL", script, "0"]).await });
        wait_until_busy(&mut other).await?;
        // A command inside MULTI is refused too, and EXEC then aborts: but MULTI itself needs
        // the model, so here only plain commands are asked.
        assert_eq!(ask(&mut other, &["GET", "k"]).await?, error(BUSY));
        assert_eq!(
            ask(&mut other, &["GET"]).await?,
            error("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(
            ask(&mut other, &["SCRIPT", "KILL"]).await?,
            Reply::Status("OK".into())
        );
        let killed = tokio::time::timeout(Duration::from_secs(30), running).await???;
        assert_eq!(
            killed,
            error(&format!(
                "ERR Script killed by user with SCRIPT KILL... script: {}, on @user_script:1.",
                sha1(script)
            )),
            "{script}"
        );
        assert_eq!(
            ask(&mut other, &["PING"]).await?,
            Reply::Status("PONG".into())
        );
        assert_eq!(
            ask(&mut other, &["SCRIPT", "KILL"]).await?,
            error("NOTBUSY No scripts in execution right now.")
        );
    }
    Ok(())
}

/// A script that wrote cannot be killed: UNKILLABLE, and others stay BUSY until it ends (here
/// by the model's step limit, which stands in for SHUTDOWN NOSAVE).
#[test]
fn a_timed_out_script_that_wrote_is_unkillable() -> TestResult {
    served(a_timed_out_script_that_wrote_is_unkillable_body())
}

async fn a_timed_out_script_that_wrote_is_unkillable_body() -> TestResult {
    let mut config = NodeConfig::standalone(1);
    config.limits.script_steps_max = 30_000_000;
    let (address, _model) = start(config).await?;
    let mut other = client(address).await?;
    ask(&mut other, &["CONFIG", "SET", "busy-reply-threshold", "10"]).await?;
    let mut runner = client(address).await?;
    let script = "redis.call('set', KEYS[1], 'y') while true do end";
    let running = tokio::spawn(async move { ask(&mut runner, &["EVAL", script, "1", "x"]).await });
    wait_until_busy(&mut other).await?;
    assert_eq!(
        ask(&mut other, &["SCRIPT", "KILL"]).await?,
        error(UNKILLABLE)
    );
    assert_eq!(ask(&mut other, &["PING"]).await?, error(BUSY));
    let ended = tokio::time::timeout(Duration::from_secs(60), running).await???;
    assert!(
        matches!(&ended, Reply::Error(line) if line.starts_with("ERR Script killed by the model's step limit")),
        "{ended:?}"
    );
    assert_eq!(
        ask(&mut other, &["GET", "x"]).await?,
        Reply::Bulk(b"y".to_vec())
    );
    Ok(())
}

/// A pipelined EVAL and PING on one connection (Redis's "false dead client" test): after the
/// kill, the PING behind the script is answered in order. A client that connects while the
/// script is busy is answered BUSY at once and can kill it.
#[test]
fn a_pipeline_behind_a_killed_script_is_answered_and_new_clients_can_kill() -> TestResult {
    served(a_pipeline_behind_a_killed_script_is_answered_and_new_clients_can_kill_body())
}

async fn a_pipeline_behind_a_killed_script_is_answered_and_new_clients_can_kill_body() -> TestResult
{
    let (address, _model) = start(NodeConfig::standalone(1)).await?;
    let mut setup = client(address).await?;
    ask(&mut setup, &["CONFIG", "SET", "lua-time-limit", "10"]).await?;
    let mut runner = TcpStream::connect(address).await?;
    let script = "while 1 do redis.call('ping') end";
    runner
        .write_all(
            format!(
                "*3\r\n$4\r\neval\r\n${}\r\n{script}\r\n$1\r\n0\r\n*1\r\n$4\r\nping\r\n",
                script.len()
            )
            .as_bytes(),
        )
        .await?;
    wait_until_busy(&mut setup).await?;
    let mut late = client(address).await?;
    assert_eq!(ask(&mut late, &["PING"]).await?, error(BUSY));
    // HELLO is allow-busy: it reports the late client's id before the script ends.
    let hello = ask(&mut late, &["HELLO", "2"]).await?;
    let hello_id = match &hello {
        Reply::Array(items) => items
            .iter()
            .position(|item| *item == Reply::Bulk(b"id".to_vec()))
            .and_then(|position| items.get(position + 1).cloned()),
        _ => None,
    };
    assert!(
        matches!(hello_id, Some(Reply::Integer(id)) if id > 0),
        "HELLO while busy: {hello:?}"
    );
    assert_eq!(
        ask(&mut late, &["SCRIPT", "KILL"]).await?,
        Reply::Status("OK".into())
    );
    let expected = format!(
        "-ERR Script killed by user with SCRIPT KILL... script: {}, on @user_script:1.\r\n+PONG\r\n",
        sha1(script)
    );
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(Duration::from_secs(10), runner.read_exact(&mut got)).await??;
    assert_eq!(String::from_utf8_lossy(&got), expected);
    // The late client was registered once the model was free.
    let id = ask(&mut late, &["CLIENT", "ID"]).await?;
    assert_eq!(
        Some(id),
        hello_id,
        "CLIENT ID is the id HELLO reported while busy"
    );
    Ok(())
}

/// The probe: a 1 GiB `string.rep` is refused before it builds anything (the heap
/// limit is 256 MiB) instead of taking 24 s and 1.4 GB, and the node serves on.
#[test]
fn a_huge_allocation_fails_and_the_server_serves_on() -> TestResult {
    served(a_huge_allocation_fails_and_the_server_serves_on_body())
}

async fn a_huge_allocation_fails_and_the_server_serves_on_body() -> TestResult {
    let (address, _model) = start(NodeConfig::standalone(1)).await?;
    let mut hostile = client(address).await?;
    let mut other = client(address).await?;
    let script = "local s=string.rep('x', 1024*1024*1024) return #s";
    let reply = ask(&mut hostile, &["EVAL", script, "0"]).await?;
    assert_eq!(
        reply,
        error(&format!(
            "ERR user_script:1: not enough memory script: {}, on @user_script:1.",
            sha1(script)
        ))
    );
    assert_eq!(
        ask(&mut other, &["PING"]).await?,
        Reply::Status("PONG".into())
    );
    assert_eq!(
        ask(
            &mut hostile,
            &["EVAL", "return #string.rep('x', 1000)", "0"]
        )
        .await?,
        Reply::Integer(1000)
    );
    Ok(())
}

/// `maxclients`: with 2, a third connection gets Redis's error and is closed, INFO counts it,
/// and a slot freed by a leaving client is taken by the next.
#[test]
fn connections_past_maxclients_are_refused_with_redis_error() -> TestResult {
    served(connections_past_maxclients_are_refused_with_redis_error_body())
}

async fn connections_past_maxclients_are_refused_with_redis_error_body() -> TestResult {
    let (address, model) = start(NodeConfig::standalone(1)).await?;
    let mut first = client(address).await?;
    ask(&mut first, &["CONFIG", "SET", "maxclients", "2"]).await?;
    let mut second = client(address).await?;
    assert_eq!(
        ask(&mut second, &["PING"]).await?,
        Reply::Status("PONG".into())
    );
    let mut third = TcpStream::connect(address).await?;
    let mut refused = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut refused)).await??;
    assert_eq!(refused, b"-ERR max number of clients reached\r\n");
    let info = ask(&mut first, &["INFO", "stats"]).await?;
    let Reply::Bulk(info) = info else {
        return Err(format!("INFO answered {info:?}").into());
    };
    assert!(String::from_utf8_lossy(&info).contains("rejected_connections:1\r\n"));
    drop(second);
    // The leaving client's slot frees once its task has run its cleanup.
    let deadline = Instant::now() + Duration::from_secs(10);
    while model.lock().map_err(|_| "poisoned")?.core.clients.len() > 1 {
        assert!(Instant::now() < deadline, "the client never left");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut fourth = client(address).await?;
    assert_eq!(
        ask(&mut fourth, &["PING"]).await?,
        Reply::Status("PONG".into())
    );
    Ok(())
}

/// What one client sends while another's read-only script is busy, and the replies it got:
/// Redis 7.0's allow-busy commands (`ALLOW_BUSY` in `src/commands/*.json`: AUTH, DISCARD,
/// HELLO, MULTI, QUIT, RESET, SCRIPT KILL, SHUTDOWN, UNWATCH, WATCH) run at once, inside and
/// outside MULTI; the rest are BUSY. HELLO's client id is masked (each server numbers its
/// own clients). Ends with SCRIPT KILL and the runner's reply.
fn allow_busy_sequence(host: &str, port: u16) -> Result<Vec<Reply>, Box<dyn Error + Send + Sync>> {
    use ratelab::redis_server::RedisClient;
    let mut other = RedisClient::connect(host, port)?;
    other.command(&["CONFIG", "SET", "busy-reply-threshold", "10"])?;
    other.command(&["SET", "k", "v"])?;
    let (runner_host, runner_port) = (host.to_owned(), port);
    let runner = std::thread::spawn(move || -> Result<Reply, String> {
        let mut runner =
            RedisClient::connect(&runner_host, runner_port).map_err(|e| e.to_string())?;
        runner
            .command(&["EVAL", "while true do end", "0"])
            .map_err(|e| e.to_string())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while other.command(&["PING"])? != error(BUSY) {
        if Instant::now() > deadline {
            return Err("the script never got busy".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let lines: &[&[&str]] = &[
        &["WATCH", "k"],
        &["UNWATCH"],
        &["WATCH", "k"],
        &["MULTI"],
        &["WATCH", "k"],
        &["MULTI"],
        &["GET", "k"],
        &["UNWATCH"],
        &["HELLO", "2"],
        &["SCRIPT", "KILL"],
        &["EXEC"],
        &["DISCARD"],
        &["EXEC"],
        &["AUTH", "secret"],
        &["AUTH", "default", "secret"],
        &["HELLO", "2"],
        &["RESET"],
        &["MULTI"],
        &["PING"],
        &["DISCARD"],
        &["SCRIPT", "FLUSH"],
        &["SCRIPT", "KILL"],
    ];
    let mut replies = Vec::new();
    for line in lines {
        let mut reply = other.command(line)?;
        if let Reply::Array(items) = &mut reply
            && let Some(position) = items
                .iter()
                .position(|item| *item == Reply::Bulk(b"id".to_vec()))
            && position + 1 < items.len()
        {
            items[position + 1] = Reply::Integer(0);
        }
        replies.push(reply);
    }
    replies.push(runner.join().map_err(|_| "the runner panicked")??);
    // After the script: the transaction state the busy commands left (RESET ended the
    // watch), and the node serves again.
    replies.push(other.command(&["EXEC"])?);
    replies.push(other.command(&["GET", "k"])?);
    Ok(replies)
}

/// Goal: while a script is busy, the model serves exactly the commands Redis 7.0.15 serves,
/// with the same replies, and refuses the rest with BUSY (inside MULTI too). Method: the
/// same sequence against a real redis-server (its own, persistence off, or `REDIS_URL`) and
/// against the model served as `ratelab serve` serves it; the replies must be equal.
#[test]
fn allow_busy_commands_are_served_while_busy_as_redis_serves_them() -> TestResult {
    let Some(server) =
        ratelab::redis_server::real_redis_or_skip("allow_busy_commands_are_served_while_busy")
    else {
        return Ok(());
    };
    let expected = allow_busy_sequence(server.host(), server.port())?;
    let mut got = Vec::new();
    served(async {
        let (address, _model) = start(NodeConfig::standalone(1)).await?;
        got = tokio::task::spawn_blocking(move || {
            allow_busy_sequence(&address.ip().to_string(), address.port())
        })
        .await??;
        Ok(())
    })?;
    assert_eq!(expected.len(), got.len());
    for (index, (expected_one, got_one)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(
            got_one, expected_one,
            "reply {index}\nreal redis-server: {expected:?}\nmodel: {got:?}"
        );
    }
    Ok(())
}
