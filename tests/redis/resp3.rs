//! RESP3 clients against the model served over TCP, as `ratelab serve` serves it.
//!
//! Goal: a client that opens with `HELLO 3` works as it does against Redis 7.0. Method: serve
//! a fresh model on a free port (`interop::start_server`, the accept loop of `ratelab serve`)
//! and drive it with (a) redis-py 8 with its default settings through an ordinary
//! application's calls (`redis_py_app.py`: each call checks its result by value), (b) the
//! `redis` crate with `protocol=resp3`, checking that replies arrive as RESP3 types (a map,
//! a set, a double) and decode into the application's types, (c) `redis-cli -3`.
//! A missing Python, redis-py or redis-cli is a visible skip, and a failure under
//! `RATELAB_REQUIRE_REDIS=1` (CI installs them).

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::path::Path;

use redis::{AsyncCommands, Value};

use super::interop::{client_app_passed, skip, start_server};

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_with_defaults_runs_an_application() -> TestResult {
    let test = "redis_py_with_defaults_runs_an_application";
    let probe = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import redis, sys; sys.exit(int(redis.__version__.split('.')[0]) < 8)",
        ])
        .output()
        .await;
    match probe {
        Err(_) => return skip(test, "no python3"),
        Ok(output) if !output.status.success() => {
            return skip(test, "redis-py 8 is not installed (pip install redis)");
        }
        Ok(_) => {}
    }
    let (address, _model) = start_server().await?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redis/redis_py_app.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(address.ip().to_string())
        .arg(address.port().to_string())
        .output()
        .await?;
    client_app_passed("redis-py", &output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_speaks_resp3() -> TestResult {
    let (address, _model) = start_server().await?;
    let client = redis::Client::open(format!("redis://{address}/?protocol=resp3"))?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let _: () = connection
        .hset_multiple("h", &[("a", "1"), ("b", "2")])
        .await?;
    let raw: Value = redis::cmd("HGETALL")
        .arg("h")
        .query_async(&mut connection)
        .await?;
    assert!(
        matches!(raw, Value::Map(ref pairs) if pairs.len() == 2),
        "{raw:?}"
    );
    let hash: HashMap<String, String> = connection.hgetall("h").await?;
    assert_eq!(hash.get("b").map(String::as_str), Some("2"));
    let _: () = connection.sadd("s", &["x", "y"]).await?;
    let raw: Value = redis::cmd("SMEMBERS")
        .arg("s")
        .query_async(&mut connection)
        .await?;
    assert!(
        matches!(raw, Value::Set(ref items) if items.len() == 2),
        "{raw:?}"
    );
    let members: HashSet<String> = connection.smembers("s").await?;
    assert_eq!(members, HashSet::from(["x".to_owned(), "y".to_owned()]));
    let _: () = connection
        .zadd_multiple("z", &[(1.5, "a"), (2.0, "b")])
        .await?;
    let raw: Value = redis::cmd("ZSCORE")
        .arg("z")
        .arg("a")
        .query_async(&mut connection)
        .await?;
    assert_eq!(raw, Value::Double(1.5));
    let scored: Vec<(String, f64)> = connection.zrange_withscores("z", 0, -1).await?;
    assert_eq!(scored, vec![("a".to_owned(), 1.5), ("b".to_owned(), 2.0)]);
    let missing: Value = redis::cmd("GET")
        .arg("nosuch")
        .query_async(&mut connection)
        .await?;
    assert_eq!(missing, Value::Nil);
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await?;
    assert!(info.contains("redis_version:7.0.15"), "{info}");
    let config: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut connection)
        .await?;
    assert_eq!(config.get("maxmemory").map(String::as_str), Some("0"));
    // A script through EVALSHA, loaded on NOSCRIPT, and a RESP3 reply from Lua.
    let script = redis::Script::new("redis.setresp(3) return redis.call('hgetall', KEYS[1])");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut connection)
        .await?;
    let from_lua: HashMap<String, String> = script.key("h").invoke_async(&mut connection).await?;
    assert_eq!(from_lua, hash);
    let (counted, scored): (i64, Vec<(String, f64)>) = redis::pipe()
        .atomic()
        .incr("n", 2)
        .zrange_withscores("z", 0, 0)
        .query_async(&mut connection)
        .await?;
    assert_eq!((counted, scored), (2, vec![("a".to_owned(), 1.5)]));
    let mut keys: Vec<String> = Vec::new();
    let mut iter: redis::AsyncIter<String> = connection.scan_match("*").await?;
    while let Some(key) = iter.next_item().await {
        keys.push(key?);
    }
    keys.sort();
    assert_eq!(keys, ["h", "n", "s", "z"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_in_resp3_shows_maps_and_doubles() -> TestResult {
    let test = "redis_cli_in_resp3_shows_maps_and_doubles";
    let (address, _model) = start_server().await?;
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new("redis-cli");
        command
            .args(["-3", "--no-raw", "-h", &address.ip().to_string()])
            .args(["-p", &address.port().to_string()])
            .args(args);
        command.output()
    };
    let Ok(output) = run(&["HSET", "h", "a", "1"]) else {
        return skip(test, "no redis-cli");
    };
    assert!(output.status.success(), "{output:?}");
    let map = String::from_utf8(run(&["HGETALL", "h"])?.stdout)?;
    assert_eq!(map, "1# \"a\" => \"1\"\n");
    run(&["ZADD", "z", "2.5", "m"])?;
    let double = String::from_utf8(run(&["ZSCORE", "z", "m"])?.stdout)?;
    assert_eq!(double, "(double) 2.5\n");
    let boolean = String::from_utf8(run(&["EVAL", "redis.setresp(3) return true", "0"])?.stdout)?;
    assert_eq!(boolean, "(true)\n");
    Ok(())
}
