//! The real-Redis backend against a real server: `RealRedis` must answer every `Cmd` as the
//! in-process model does (through `Local`), under both connection strategies, and behave like
//! go-redis at the edges: a lost script cache costs one more round trip, an exhausted pool
//! times out, a silent server times out. A Redis Cluster of three nodes, started here, checks
//! routing by key (commands, pipelines across slots, scripts on hash-tagged keys).
//!
//! Without a real Redis (no `REDIS_URL`, no `redis-server` on PATH) every test prints a
//! visible `skipped:` line; `RATELAB_REQUIRE_REDIS=1` makes that a failure. Every wait is
//! bounded, and every process started here is killed by a drop guard.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratelab::model::{Clock, Model, NodeConfig, Reply};
use ratelab::real::{RealConfig, RealRedis, Retries, Strategy};
use ratelab::redis::{
    Cmd, Error, Local, Metered, Redis, Reload, Script, Usage, run_script, run_script_with,
};
use ratelab::redis_server::{REQUIRE_REDIS_VAR, RedisClient, RedisServer, real_redis_or_skip};

/// A bound on any one test's async part, so a hang fails instead of blocking CI.
const TEST_DEADLINE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Runs `body` on a fresh runtime, failing the test if it takes longer than the deadline.
fn run<F: std::future::Future<Output = ()>>(body: F) {
    runtime().block_on(async {
        tokio::time::timeout(TEST_DEADLINE, body)
            .await
            .expect("the test finishes within its deadline");
    });
}

fn url(server: &RedisServer) -> String {
    format!("redis://{}:{}", server.host(), server.port())
}

/// Sends one command on a fresh blocking connection (setup and inspection, outside the
/// backend under test).
fn admin(server: &RedisServer, argv: &[&str]) -> Reply {
    let mut client = server.connect().expect("an admin connection");
    client.command(argv).expect("an admin reply")
}

fn key(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

fn wall_clock_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_millis()).expect("fits")
}

/// A fresh model whose clock follows the wall clock, like the real server's.
fn fresh_local() -> Local {
    let clock: Clock = Arc::new(wall_clock_ms);
    Local::connect(
        Arc::new(Mutex::new(Model::new(NodeConfig::standalone(0)))),
        clock,
    )
}

/// Arguments for a script: `limit/burst, window/interval, cost, now_ms` with an explicit
/// time, so the model and Redis decide at the same instant.
fn script_args(script: Script) -> Vec<Vec<u8>> {
    match script {
        Script::NewapiTokenBucket => vec![key("1"), key("10"), key("5")],
        _ => vec![key("5"), key("1000"), key("1"), key("1700000000000")],
    }
}

/// Every `Cmd` variant, with edges: wrong types, overflow, missing keys, negative and huge
/// times, out-of-range list indexes, and each script loaded, called by digest and by source.
fn corpus() -> Vec<Cmd> {
    let mut cmds = vec![
        Cmd::Ping,
        Cmd::Time,
        Cmd::Get { key: key("n") },
        Cmd::Incr { key: key("n") },
        Cmd::IncrBy {
            key: key("n"),
            by: 41,
        },
        Cmd::IncrBy {
            key: key("n"),
            by: i64::MAX,
        },
        Cmd::IncrBy {
            key: key("neg"),
            by: i64::MIN,
        },
        Cmd::Get { key: key("n") },
        Cmd::Ttl { key: key("n") },
        Cmd::Expire {
            key: key("n"),
            ttl_s: 100,
        },
        Cmd::Ttl { key: key("n") },
        Cmd::PExpire {
            key: key("n"),
            ttl_ms: 50_000,
        },
        Cmd::Ttl { key: key("n") },
        Cmd::Expire {
            key: key("n"),
            ttl_s: i64::MAX,
        },
        Cmd::PExpire {
            key: key("n"),
            ttl_ms: i64::MAX,
        },
        Cmd::Expire {
            key: key("n"),
            ttl_s: -1,
        },
        Cmd::Get { key: key("n") },
        Cmd::Ttl {
            key: key("missing"),
        },
        Cmd::Expire {
            key: key("missing"),
            ttl_s: 10,
        },
        Cmd::Del {
            key: key("missing"),
        },
        Cmd::LPush {
            key: key("l"),
            value: key("a"),
        },
        Cmd::LPush {
            key: key("l"),
            value: key(""),
        },
        Cmd::LPush {
            key: key("l"),
            value: b"c\r\n\x00".to_vec(),
        },
        Cmd::LLen { key: key("l") },
        Cmd::LIndex {
            key: key("l"),
            index: 0,
        },
        Cmd::LIndex {
            key: key("l"),
            index: -1,
        },
        Cmd::LIndex {
            key: key("l"),
            index: 3,
        },
        Cmd::LIndex {
            key: key("l"),
            index: i64::MIN,
        },
        Cmd::LTrim {
            key: key("l"),
            start: 0,
            stop: 1,
        },
        Cmd::LLen { key: key("l") },
        Cmd::LTrim {
            key: key("l"),
            start: i64::MIN,
            stop: i64::MAX,
        },
        Cmd::LLen { key: key("l") },
        Cmd::Incr { key: key("l") },
        Cmd::Get { key: key("l") },
        Cmd::Ttl { key: key("l") },
        Cmd::Incr { key: key("s") },
        Cmd::LPush {
            key: key("s"),
            value: key("x"),
        },
        Cmd::LLen { key: key("s") },
        Cmd::LTrim {
            key: key("l"),
            start: 5,
            stop: 1,
        },
        Cmd::LLen { key: key("l") },
        Cmd::Del { key: key("s") },
        Cmd::LLen {
            key: key("missing"),
        },
        Cmd::LIndex {
            key: key("missing"),
            index: 0,
        },
    ];
    // Redis Functions: FCALL before the library is loaded, then the library.
    cmds.push(Cmd::FCall {
        script: Script::Gcra,
        keys: vec![key("fcall:cold")],
        args: script_args(Script::Gcra),
    });
    cmds.push(Cmd::FunctionLoad);
    cmds.push(Cmd::FunctionLoad);
    for script in Script::ALL {
        let bucket = key(&format!("script:{}", script.name()));
        cmds.push(Cmd::FCall {
            script,
            keys: vec![key(&format!("fcall:{}", script.name()))],
            args: script_args(script),
        });
        cmds.push(Cmd::ScriptLoad { script });
        cmds.push(Cmd::EvalSha {
            script,
            keys: vec![bucket.clone()],
            args: script_args(script),
        });
        cmds.push(Cmd::Eval {
            script,
            keys: vec![bucket],
            args: script_args(script),
        });
    }
    cmds
}

/// Compares a real reply with the model's, allowing what differs by time alone: TIME is
/// compared by shape and to within 5 s, TTL to within 1 s.
fn same_reply(cmd: &Cmd, real: &Reply, model: &Reply) -> bool {
    match (cmd, real, model) {
        (Cmd::Time, Reply::Array(real), Reply::Array(model)) => {
            let seconds = |reply: &[Reply]| match reply {
                [Reply::Bulk(seconds), Reply::Bulk(micros)] => {
                    let micros: i64 = std::str::from_utf8(micros).ok()?.parse().ok()?;
                    let seconds: i64 = std::str::from_utf8(seconds).ok()?.parse().ok()?;
                    (0..1_000_000).contains(&micros).then_some(seconds)
                }
                _ => None,
            };
            matches!((seconds(real), seconds(model)), (Some(a), Some(b)) if a.abs_diff(b) <= 5)
        }
        (Cmd::Ttl { .. }, Reply::Integer(real), Reply::Integer(model)) => {
            real.abs_diff(*model) <= 1
        }
        _ => real == model,
    }
}

/// Compares replies one by one (script commands included: the model runs them). Panics
/// listing every difference.
fn compare(label: &str, cmds: &[Cmd], real: &[Reply], model: &[Reply]) {
    assert_eq!(real.len(), cmds.len(), "{label}: reply count");
    assert_eq!(model.len(), cmds.len(), "{label}: model reply count");
    let mut differences = Vec::new();
    for ((cmd, real), model) in cmds.iter().zip(real).zip(model) {
        if !same_reply(cmd, real, model) {
            differences.push(format!("{cmd:?}:\n  real  {real:?}\n  model {model:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{label}: {} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// Runs the corpus through `redis` one command at a time, then (after FLUSHALL) as one
/// pipeline, each time beside a fresh model, and compares.
async fn corpus_matches_model(label: &str, server: &RedisServer, redis: &mut RealRedis) {
    let cmds = corpus();
    for pipelined in [false, true] {
        assert_eq!(
            admin(server, &["FLUSHALL"]),
            Reply::Status("OK".into()),
            "{label}"
        );
        assert_eq!(
            admin(server, &["FUNCTION", "FLUSH"]),
            Reply::Status("OK".into()),
            "{label}"
        );
        let mut local = fresh_local();
        let (real, model) = if pipelined {
            let real = redis
                .pipeline(cmds.clone())
                .await
                .expect("pipeline replies");
            let model = local.pipeline(cmds.clone()).await.expect("model replies");
            (real, model)
        } else {
            let mut real = Vec::new();
            let mut model = Vec::new();
            for cmd in &cmds {
                real.push(redis.exec(cmd.clone()).await.expect("a reply"));
                model.push(local.exec(cmd.clone()).await.expect("a model reply"));
            }
            (real, model)
        };
        let label = format!("{label}, pipelined {pipelined}");
        compare(&label, &cmds, &real, &model);
    }
}

#[test]
fn every_cmd_answers_as_the_model_under_both_strategies() {
    let Some(server) = real_redis_or_skip("every_cmd_answers_as_the_model") else {
        return;
    };
    run(async {
        for config in [
            RealConfig::multiplexed(&url(&server)),
            RealConfig::go_redis_v8_newapi(&url(&server)),
        ] {
            let label = format!("{:?}", config.strategy);
            let mut redis = RealRedis::connect(config).await.expect("connected");
            corpus_matches_model(&label, &server, &mut redis).await;
            assert_eq!(redis.pipeline(Vec::new()).await.expect("empty"), vec![]);
        }
    });
}

#[test]
fn run_script_after_script_flush_costs_two_round_trips() {
    let Some(server) = real_redis_or_skip("run_script_after_script_flush") else {
        return;
    };
    run(async {
        for config in [
            RealConfig::multiplexed(&url(&server)),
            RealConfig::go_redis_v8_newapi(&url(&server)),
        ] {
            admin(&server, &["FLUSHALL"]);
            assert_eq!(
                admin(&server, &["SCRIPT", "FLUSH"]),
                Reply::Status("OK".into())
            );
            let mut redis = Metered::new(RealRedis::connect(config).await.expect("connected"));
            let keys = vec![key("{gcra}:k")];
            let args = script_args(Script::Gcra);
            let expected = Reply::Array(vec![
                Reply::Integer(1),
                Reply::Integer(4),
                Reply::Integer(0),
                Reply::Integer(1000),
            ]);
            let first = run_script(&mut redis, Script::Gcra, keys.clone(), args.clone())
                .await
                .expect("a reply");
            assert_eq!(first, expected);
            assert_eq!(
                redis.usage(),
                Usage {
                    round_trips: 2,
                    commands: 2
                },
                "NOSCRIPT, then EVAL"
            );
            // EVAL cached the script: the next run is EVALSHA alone.
            let before = redis.usage();
            let second = run_script(&mut redis, Script::Gcra, keys, args)
                .await
                .expect("a reply");
            assert_eq!(
                second,
                Reply::Array(vec![
                    Reply::Integer(1),
                    Reply::Integer(3),
                    Reply::Integer(0),
                    Reply::Integer(2000),
                ])
            );
            assert_eq!((redis.usage() - before).round_trips, 1);
        }
    });
}

#[test]
fn the_fcall_policy_loads_the_library_once_and_decides_as_evalsha() {
    let Some(server) = real_redis_or_skip("the_fcall_policy_loads_the_library_once") else {
        return;
    };
    run(async {
        admin(&server, &["FLUSHALL"]);
        admin(&server, &["FUNCTION", "FLUSH"]);
        let config = RealConfig::multiplexed(&url(&server));
        let mut redis = Metered::new(RealRedis::connect(config).await.expect("connected"));
        let mut local = Metered::new(fresh_local());
        for script in Script::ALL {
            let args = script_args(script);
            let by_fcall = vec![key(&format!("{{fc}}:{}", script.name()))];
            let by_sha = vec![key(&format!("{{sha}}:{}", script.name()))];
            for (label, backend) in [
                ("real", &mut redis as &mut dyn AnyRedis),
                ("model", &mut local as &mut dyn AnyRedis),
            ] {
                let before = backend.usage();
                let fcall = backend
                    .call(script, by_fcall.clone(), args.clone(), Reload::Fcall)
                    .await;
                let trips = (backend.usage() - before).round_trips;
                // The first script meets a server without the library: FCALL, FUNCTION
                // LOAD, FCALL. Every later one: FCALL alone.
                let expected_trips = if script == Script::ALL[0] { 3 } else { 1 };
                assert_eq!(trips, expected_trips, "{label} {script:?}");
                let evalsha = backend
                    .call(
                        script,
                        by_sha.clone(),
                        args.clone(),
                        Reload::EvalShaThenEval,
                    )
                    .await;
                // An error names the script and line (a function's name and its line in
                // the library, a digest and the file's line): the rest must agree.
                let text = |reply: &Reply| match reply {
                    Reply::Error(line) => Reply::Error(
                        line.split(" script: ")
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    other => other.clone(),
                };
                assert_eq!(
                    text(&fcall),
                    text(&evalsha),
                    "{label} {script:?}: FCALL decides as EVALSHA"
                );
            }
        }
        // SCRIPT FLUSH does not touch functions; FUNCTION FLUSH makes the next call reload.
        admin(&server, &["SCRIPT", "FLUSH"]);
        let keys = vec![key("{fc}:again")];
        let args = script_args(Script::Gcra);
        let before = redis.usage();
        redis
            .call(Script::Gcra, keys.clone(), args.clone(), Reload::Fcall)
            .await;
        assert_eq!(
            (redis.usage() - before).round_trips,
            1,
            "after SCRIPT FLUSH"
        );
        admin(&server, &["FUNCTION", "FLUSH"]);
        let before = redis.usage();
        redis.call(Script::Gcra, keys, args, Reload::Fcall).await;
        assert_eq!(
            (redis.usage() - before).round_trips,
            3,
            "after FUNCTION FLUSH"
        );
    });
}

/// A backend of either kind, for one test body over both.
trait AnyRedis {
    fn usage(&self) -> Usage;
    fn call<'a>(
        &'a mut self,
        script: Script,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
        reload: Reload,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + 'a>>;
}

impl<R: Redis> AnyRedis for Metered<R> {
    fn usage(&self) -> Usage {
        Metered::usage(self)
    }

    fn call<'a>(
        &'a mut self,
        script: Script,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
        reload: Reload,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + 'a>> {
        Box::pin(async move {
            run_script_with(self, script, keys, args, &reload)
                .await
                .expect("a reply")
        })
    }
}

/// A pool of one with no retries, for the exhaustion tests.
fn pool_of_one(server: &RedisServer, wait_timeout: Duration) -> RealConfig {
    RealConfig {
        retries: Retries::none(),
        ..RealConfig::go_redis_v8_newapi(&url(server)).with_strategy(Strategy::Pool {
            size: 1,
            wait_timeout,
        })
    }
}

/// Pauses every client of the server for `pause_ms`: a call in flight then holds its
/// connection that long, deterministically.
fn pause_clients(server: &RedisServer, pause_ms: u64) {
    assert_eq!(
        admin(server, &["CLIENT", "PAUSE", &pause_ms.to_string(), "ALL"]),
        Reply::Status("OK".into())
    );
}

#[test]
fn an_exhausted_pool_times_out_and_counts_the_wait() {
    let Some(server) = real_redis_or_skip("an_exhausted_pool_times_out") else {
        return;
    };
    run(async {
        let redis = RealRedis::connect(pool_of_one(&server, Duration::from_millis(100)))
            .await
            .expect("connected");
        // Long enough that a busy machine cannot blur "timed out" and "waited it out".
        pause_clients(&server, 2000);
        let mut holder = redis.clone();
        let held = tokio::spawn(async move { holder.exec(Cmd::Ping).await });
        // Let the holder take the only connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut waiter = redis.clone();
        let started = Instant::now();
        let outcome = waiter.exec(Cmd::Ping).await;
        assert!(matches!(outcome, Err(Error::Timeout)), "{outcome:?}");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(
            started.elapsed() < Duration::from_millis(1800),
            "it did not wait for the pause"
        );
        let held = held.await.expect("no panic").expect("the holder's reply");
        assert_eq!(held, Reply::Status("PONG".into()));
        let stats = redis.pool_stats().expect("a pool");
        assert_eq!(stats.timeouts, 1, "{stats:?}");
        assert_eq!(stats.waits, 1, "{stats:?}");
        assert_eq!(stats.acquired, 1, "{stats:?}");
        assert_eq!(stats.dials, 1, "{stats:?}");
        assert!(stats.wait_max_us >= 100_000, "{stats:?}");
        assert!(stats.wait_total_us >= stats.wait_max_us, "{stats:?}");
        // The connection went back to the pool: the next call reuses it without waiting.
        let mut after = redis.clone();
        assert_eq!(
            after.exec(Cmd::Ping).await.expect("a reply"),
            Reply::Status("PONG".into())
        );
        let stats = redis.pool_stats().expect("a pool");
        assert_eq!(
            (stats.acquired, stats.hits, stats.waits),
            (2, 2, 1),
            "{stats:?}"
        );
    });
}

#[test]
fn a_waiter_gets_the_connection_when_it_is_released() {
    let Some(server) = real_redis_or_skip("a_waiter_gets_the_connection") else {
        return;
    };
    run(async {
        let redis = RealRedis::connect(pool_of_one(&server, Duration::from_secs(5)))
            .await
            .expect("connected");
        pause_clients(&server, 300);
        let mut holder = redis.clone();
        let held = tokio::spawn(async move { holder.exec(Cmd::Incr { key: key("w") }).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut waiter = redis.clone();
        let reply = waiter
            .exec(Cmd::Incr { key: key("w") })
            .await
            .expect("a reply");
        let held = held.await.expect("no panic").expect("a reply");
        let mut both = [held, reply];
        both.sort_by_key(|reply| format!("{reply:?}"));
        assert_eq!(both, [Reply::Integer(1), Reply::Integer(2)]);
        let stats = redis.pool_stats().expect("a pool");
        assert_eq!((stats.waits, stats.timeouts), (1, 0), "{stats:?}");
        assert!(
            stats.wait_max_us >= 100_000,
            "waited for the pause: {stats:?}"
        );
    });
}

#[test]
fn a_silent_server_times_out_with_retries_and_connections_recover() {
    let Some(server) = real_redis_or_skip("a_silent_server_times_out") else {
        return;
    };
    run(async {
        let retries = Retries {
            max_retries: 2,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
        };
        for strategy in [
            Strategy::Multiplexed,
            Strategy::Pool {
                size: 2,
                wait_timeout: Duration::from_secs(1),
            },
        ] {
            let config = RealConfig {
                response_timeout: Duration::from_millis(150),
                retries,
                ..RealConfig::multiplexed(&url(&server)).with_strategy(strategy)
            };
            let mut redis = RealRedis::connect(config).await.expect("connected");
            let pause = Duration::from_millis(2500);
            pause_clients(&server, 2500);
            let started = Instant::now();
            let outcome = redis.exec(Cmd::Ping).await;
            let elapsed = started.elapsed();
            assert!(
                matches!(outcome, Err(Error::Timeout)),
                "{strategy:?}: {outcome:?}"
            );
            // Three attempts of 150 ms and two waits (10, 20 ms), well inside the pause.
            assert!(
                elapsed >= Duration::from_millis(480) && elapsed < Duration::from_millis(2300),
                "{strategy:?}: {elapsed:?}"
            );
            if let Some(stats) = redis.pool_stats() {
                assert_eq!(stats.discarded, 3, "{stats:?}");
            }
            // After the pause the same handle works again (the pool redials).
            tokio::time::sleep((pause + Duration::from_millis(100)).saturating_sub(elapsed)).await;
            assert_eq!(
                redis.exec(Cmd::Ping).await.expect("a reply"),
                Reply::Status("PONG".into()),
                "{strategy:?}"
            );
        }
    });
}

#[test]
fn a_closed_connection_is_redialed_by_the_retry() {
    let Some(server) = real_redis_or_skip("a_closed_connection_is_redialed") else {
        return;
    };
    run(async {
        for config in [
            RealConfig::multiplexed(&url(&server)),
            RealConfig::go_redis_v8_newapi(&url(&server)),
        ] {
            let mut redis = RealRedis::connect(config).await.expect("connected");
            let killed = admin(
                &server,
                &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
            );
            assert!(
                matches!(killed, Reply::Integer(count) if count >= 1),
                "our connection was killed: {killed:?}"
            );
            // The first attempt finds the socket closed; the retry dials a new one.
            assert_eq!(
                redis.exec(Cmd::Ping).await.expect("a reply after a retry"),
                Reply::Status("PONG".into())
            );
        }
    });
}

// ---------------------------------------------------------------------------------------
// Redis Cluster

/// How long the cluster may take to start, form and agree on `cluster_state:ok`.
const CLUSTER_WAIT_MAX: Duration = Duration::from_secs(30);

/// Three `redis-server --cluster-enabled yes` processes in a temporary directory, killed
/// and removed on drop.
struct ClusterGuard {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        for child in &mut self.children {
            // `Child::kill` signals exactly this pid; the wait reaps it.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port(taken: &[u16]) -> std::io::Result<u16> {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let bus_free = port
            .checked_add(10_000)
            .is_some_and(|bus| TcpListener::bind(("127.0.0.1", bus)).is_ok());
        if bus_free && !taken.contains(&port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no free port pair for a cluster node",
    ))
}

/// Polls `ready` every 50 ms until it is true or `limit` passes.
fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() >= deadline {
            return Err(format!("{what} not within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn node_command(port: u16, argv: &[&str]) -> Option<Reply> {
    RedisClient::connect("127.0.0.1", port)
        .ok()?
        .command(argv)
        .ok()
}

impl ClusterGuard {
    fn start() -> Result<ClusterGuard, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|error| error.to_string())?
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("ratelab-cluster-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let mut guard = ClusterGuard {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let port = free_cluster_port(&guard.ports).map_err(|error| error.to_string())?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .current_dir(&guard.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|error| format!("redis-server: {error}"))?;
            guard.ports.push(port);
            guard.children.push(child);
        }
        for &port in &guard.ports {
            wait_until(
                CLUSTER_WAIT_MAX,
                &format!("node {port} answering PING"),
                || node_command(port, &["PING"]) == Some(Reply::Status("PONG".into())),
            )?;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &guard.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let mut creating = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("redis-cli: {error}"))?;
        let created = wait_until(CLUSTER_WAIT_MAX, "redis-cli --cluster create", || {
            matches!(creating.try_wait(), Ok(Some(_)) | Err(_))
        });
        if created.is_err() {
            let _ = creating.kill();
        }
        let status = creating.wait().map_err(|error| error.to_string())?;
        created?;
        if !status.success() {
            return Err(format!("redis-cli --cluster create failed: {status}"));
        }
        for &port in &guard.ports {
            wait_until(
                CLUSTER_WAIT_MAX,
                &format!("node {port} cluster_state:ok"),
                || {
                    matches!(
                        node_command(port, &["CLUSTER", "INFO"]),
                        Some(Reply::Bulk(info)) if String::from_utf8_lossy(&info).contains("cluster_state:ok")
                    )
                },
            )?;
        }
        Ok(guard)
    }

    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }
}

/// A started cluster, or `None` with a visible skip line (a failure under
/// `RATELAB_REQUIRE_REDIS=1`), as `real_redis_or_skip` does for one server.
fn cluster_or_skip(test_name: &str) -> Option<ClusterGuard> {
    match ClusterGuard::start() {
        Ok(guard) => Some(guard),
        Err(why) => {
            if std::env::var(REQUIRE_REDIS_VAR).is_ok_and(|value| value == "1") {
                panic!(
                    "{test_name}: {REQUIRE_REDIS_VAR}=1 but no Redis Cluster could start: {why}"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "skipped: no redis cluster ({test_name}): {why}"
            );
            None
        }
    }
}

#[test]
fn cluster_routes_commands_pipelines_and_hash_tagged_scripts() {
    let Some(cluster) = cluster_or_skip("cluster_routes_commands") else {
        return;
    };
    let urls = cluster.urls();
    let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
    run(async {
        for strategy in [
            Strategy::Multiplexed,
            Strategy::Pool {
                size: 4,
                wait_timeout: Duration::from_secs(4),
            },
        ] {
            for &port in &cluster.ports {
                node_command(port, &["FLUSHALL"]).expect("flushed");
            }
            let mut redis = RealRedis::connect(RealConfig::cluster(&seeds).with_strategy(strategy))
                .await
                .expect("connected to the cluster");
            // Keys in many slots, so every node owns some.
            let names: Vec<String> = (0..30).map(|index| format!("counter:{index}")).collect();
            for name in &names {
                assert_eq!(
                    redis
                        .exec(Cmd::IncrBy {
                            key: key(name),
                            by: 3
                        })
                        .await
                        .expect("a reply"),
                    Reply::Integer(3),
                    "{strategy:?} {name}"
                );
                assert_eq!(
                    redis
                        .exec(Cmd::Expire {
                            key: key(name),
                            ttl_s: 100
                        })
                        .await
                        .expect("a reply"),
                    Reply::Integer(1)
                );
            }
            for &port in &cluster.ports {
                match node_command(port, &["DBSIZE"]) {
                    Some(Reply::Integer(count)) => assert!(count > 0, "node {port} owns no key"),
                    other => panic!("DBSIZE on {port}: {other:?}"),
                }
            }
            // One pipeline across all those slots: replies come back in order.
            let mut cmds: Vec<Cmd> = names
                .iter()
                .map(|name| Cmd::Get { key: key(name) })
                .collect();
            cmds.insert(7, Cmd::Ping);
            cmds.push(Cmd::Incr {
                key: key(&names[0]),
            });
            cmds.push(Cmd::Ttl {
                key: key(&names[1]),
            });
            let replies = redis.pipeline(cmds).await.expect("pipeline replies");
            let mut expected: Vec<Reply> =
                names.iter().map(|_| Reply::Bulk(b"3".to_vec())).collect();
            expected.insert(7, Reply::Status("PONG".into()));
            expected.push(Reply::Integer(4));
            assert_eq!(
                &replies[..expected.len() - 1],
                &expected[..expected.len() - 1]
            );
            assert!(
                matches!(replies.last(), Some(Reply::Integer(ttl)) if (99..=100).contains(ttl)),
                "{:?}",
                replies.last()
            );
            // Scripts whose keys share a hash tag run on the slot's node (after NOSCRIPT on
            // a fresh node, by EVAL).
            for &port in &cluster.ports {
                node_command(port, &["SCRIPT", "FLUSH"]).expect("flushed scripts");
            }
            for user in 0..6 {
                let keys = vec![
                    key(&format!("{{user:{user}}}:gcra")),
                    key(&format!("{{user:{user}}}:aux")),
                ];
                let reply = run_script(
                    &mut redis,
                    Script::Gcra,
                    keys.clone(),
                    script_args(Script::Gcra),
                )
                .await
                .expect("a reply");
                assert_eq!(
                    reply,
                    Reply::Array(vec![
                        Reply::Integer(1),
                        Reply::Integer(4),
                        Reply::Integer(0),
                        Reply::Integer(1000)
                    ]),
                    "{strategy:?} user {user}"
                );
            }
            // SCRIPT LOAD sent alone reaches every node: EVALSHA then works on any slot.
            for &port in &cluster.ports {
                node_command(port, &["SCRIPT", "FLUSH"]).expect("flushed scripts");
            }
            let loaded = redis
                .exec(Cmd::ScriptLoad {
                    script: Script::Gcra,
                })
                .await
                .expect("a reply");
            assert_eq!(loaded, Reply::Bulk(Script::Gcra.sha().into_bytes()));
            for user in 10..20 {
                let reply = redis
                    .exec(Cmd::EvalSha {
                        script: Script::Gcra,
                        keys: vec![key(&format!("{{user:{user}}}:gcra"))],
                        args: script_args(Script::Gcra),
                    })
                    .await
                    .expect("a reply");
                assert!(
                    matches!(&reply, Reply::Array(items) if items.first() == Some(&Reply::Integer(1))),
                    "{strategy:?} user {user}: {reply:?}"
                );
            }
            // FUNCTION LOAD sent alone reaches every primary (the crate routes it to all of
            // them), so after one "Function not found" and one load, FCALL works on every slot
            // and no other node reports the function missing.
            for &port in &cluster.ports {
                node_command(port, &["FUNCTION", "FLUSH"]).expect("flushed functions");
            }
            for user in 20..32 {
                let reply = run_script_with(
                    &mut redis,
                    Script::Gcra,
                    vec![key(&format!("{{user:{user}}}:gcra"))],
                    script_args(Script::Gcra),
                    &Reload::Fcall,
                )
                .await
                .expect("a reply");
                assert!(
                    matches!(&reply, Reply::Array(items) if items.first() == Some(&Reply::Integer(1))),
                    "{strategy:?} user {user} by FCALL: {reply:?}"
                );
            }
            for &port in &cluster.ports {
                match node_command(port, &["FUNCTION", "LIST"]) {
                    Some(Reply::Array(libraries)) => assert_eq!(
                        libraries.len(),
                        1,
                        "{strategy:?}: node {port} holds the library once"
                    ),
                    other => panic!("FUNCTION LIST on {port}: {other:?}"),
                }
            }
            // Keys in different slots in one script: the server's own refusal, as a reply.
            let crossed = redis
                .exec(Cmd::Eval {
                    script: Script::Gcra,
                    keys: vec![key("{a}x"), key("{b}x")],
                    args: script_args(Script::Gcra),
                })
                .await
                .expect("a reply");
            assert_eq!(
                crossed,
                Reply::Error("CROSSSLOT Keys in request don't hash to the same slot".into())
            );
        }
    });
}
