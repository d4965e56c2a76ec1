use crate::model::testkit::*;
use crate::model::{Model, NodeConfig, Reply, Session};

fn exec<A: AsRef<[u8]>>(model: &mut Model, session: &mut Session, argv: &[A]) -> Reply {
    let argv: Vec<Vec<u8>> = argv.iter().map(|arg| arg.as_ref().to_vec()).collect();
    model.exec(0, session, &argv)
}

fn node() -> (Model, Session) {
    let mut model = Model::new(NodeConfig::standalone(1));
    let session = model.connect("t");
    (model, session)
}

const LIB: &str = "#!lua name=lib\n\
    local function incr(key) return redis.call('INCR', key) end\n\
    redis.register_function('up', function(keys, args) return incr(keys[1]) end)\n\
    redis.register_function{function_name='peek', callback=function(keys) \
      return redis.call('GET', keys[1]) end, flags={'no-writes'}, description='reads'}";

#[test]
fn load_call_list_delete() {
    let (mut m, mut s) = node();
    assert_eq!(
        exec(&mut m, &mut s, &["FUNCTION", "LOAD", LIB]),
        bulk("lib")
    );
    assert_eq!(exec(&mut m, &mut s, &["FCALL", "up", "1", "k"]), int(1));
    assert_eq!(exec(&mut m, &mut s, &["FCALL", "UP", "1", "k"]), int(2));
    assert_eq!(
        exec(&mut m, &mut s, &["FCALL_RO", "peek", "1", "k"]),
        bulk("2")
    );
    assert_eq!(
        exec(&mut m, &mut s, &["FCALL_RO", "up", "1", "k"]),
        error("ERR Can not execute a script with write flag using *_ro command.")
    );
    assert_eq!(
        exec(&mut m, &mut s, &["FUNCTION", "LOAD", LIB]),
        error("ERR Library 'lib' already exists")
    );
    let list = exec(&mut m, &mut s, &["FUNCTION", "LIST"]);
    assert_eq!(
        list,
        Reply::Array(vec![Reply::Array(vec![
            bulk("library_name"),
            bulk("lib"),
            bulk("engine"),
            bulk("LUA"),
            bulk("functions"),
            Reply::Array(vec![
                Reply::Array(vec![
                    bulk("name"),
                    bulk("peek"),
                    bulk("description"),
                    bulk("reads"),
                    bulk("flags"),
                    Reply::Array(vec![status("no-writes")]),
                ]),
                Reply::Array(vec![
                    bulk("name"),
                    bulk("up"),
                    bulk("description"),
                    Reply::Nil,
                    bulk("flags"),
                    Reply::Array(vec![]),
                ]),
            ]),
        ])])
    );
    assert_eq!(exec(&mut m, &mut s, &["FUNCTION", "DELETE", "lib"]), ok());
    assert_eq!(
        exec(&mut m, &mut s, &["FCALL", "up", "1", "k"]),
        error("ERR Function not found")
    );
    assert_eq!(
        exec(&mut m, &mut s, &["FUNCTION", "DELETE", "lib"]),
        error("ERR Library not found")
    );
}

#[test]
fn load_time_sandbox_and_errors() {
    let (mut m, mut s) = node();
    let cases: &[(&str, &str)] = &[
        (
            "#!lua name=l\nreturn math.random()",
            "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'math'",
        ),
        (
            "#!lua name=l\nredis.call('ping')",
            "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'call'",
        ),
        (
            "#!lua name=l\na = 1",
            "ERR Error registering functions: ERR user_function:2: Attempt to modify a readonly table",
        ),
        (
            "#!lua name=l\nredis.register_function('f', 'x')",
            "ERR Error registering functions: ERR second argument to redis.register_function must be a function",
        ),
        (
            "#!lua name=l\nlocal a = 1 while 1 do a = a + 1 end",
            "ERR Error registering functions: ERR FUNCTION LOAD timeout",
        ),
        (
            "#!lua name=l\nbad script",
            "ERR Error compiling function: user_function:2: '=' expected near 'script'",
        ),
        ("#!lua name=l\nreturn 1", "ERR No functions registered"),
        ("#! name=l\nreturn 1", "ERR Engine '' not found"),
        (
            "#!lua name=l foo=bar\n",
            "ERR Invalid metadata value given: foo=bar",
        ),
        ("#!lua\n", "ERR Library name was not given"),
        ("return 1", "ERR Missing library metadata"),
        (
            "#!lua name=a-b\n",
            "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
        ),
        (
            "#!lua name=l\nredis.register_function('f', function() end) redis.register_function('f', function() end)",
            "ERR Error registering functions: ERR Function already exists in the library",
        ),
    ];
    for (code, expected) in cases {
        assert_eq!(
            exec(&mut m, &mut s, &["FUNCTION", "LOAD", code]),
            error(expected),
            "{code}"
        );
    }
    assert_eq!(
        exec(
            &mut m,
            &mut s,
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=\"q\"\nredis.register_function('q', function() return 1 end)"
            ]
        ),
        bulk("q")
    );
    // A library's callbacks see the full API at call time, never the load API.
    let code = "#!lua name=r\nredis.register_function('r', function() redis.register_function('x', function() end) end)";
    assert_eq!(exec(&mut m, &mut s, &["FUNCTION", "LOAD", code]), bulk("r"));
    assert_eq!(
        exec(&mut m, &mut s, &["FCALL", "r", "0"]),
        error(
            "ERR user_function:2: attempt to call field 'register_function' (a nil value) script: r, on @user_function:2."
        )
    );
}

#[test]
fn a_failed_replace_keeps_the_old_library_and_collisions_are_refused() {
    let (mut m, mut s) = node();
    exec(&mut m, &mut s, &["FUNCTION", "LOAD", LIB]);
    let broken = "#!lua name=lib\nredis.register_function('up', function() return 9 end) redis.register_function('x', 'y')";
    assert!(matches!(
        exec(&mut m, &mut s, &["FUNCTION", "LOAD", "REPLACE", broken]),
        Reply::Error(_)
    ));
    assert_eq!(exec(&mut m, &mut s, &["FCALL", "up", "1", "k"]), int(1));
    let other = "#!lua name=other\nredis.register_function('UP', function() return 9 end)";
    assert_eq!(
        exec(&mut m, &mut s, &["FUNCTION", "LOAD", other]),
        error("ERR Function UP already exists")
    );
    let replaced = "#!lua name=lib\nredis.register_function('up', function() return 'new' end)";
    assert_eq!(
        exec(&mut m, &mut s, &["FUNCTION", "LOAD", "replace", replaced]),
        bulk("lib")
    );
    assert_eq!(exec(&mut m, &mut s, &["FCALL", "up", "0"]), bulk("new"));
    assert_eq!(
        exec(&mut m, &mut s, &["FCALL", "peek", "0"]),
        error("ERR Function not found")
    );
}

#[test]
fn dump_restore_round_trips_and_refuses_foreign_payloads() {
    let (mut m, mut s) = node();
    exec(&mut m, &mut s, &["FUNCTION", "LOAD", LIB]);
    let Reply::Bulk(payload) = exec(&mut m, &mut s, &["FUNCTION", "DUMP"]) else {
        panic!("DUMP answers a bulk string");
    };
    let payload = payload.as_slice();
    assert_eq!(exec(&mut m, &mut s, &["FUNCTION", "FLUSH"]), ok());
    assert_eq!(
        exec(&mut m, &mut s, &["FUNCTION", "LIST"]),
        Reply::Array(vec![])
    );
    assert_eq!(
        exec(
            &mut m,
            &mut s,
            &[b"FUNCTION".as_slice(), b"RESTORE", payload]
        ),
        ok()
    );
    assert_eq!(exec(&mut m, &mut s, &["FCALL", "up", "1", "k"]), int(1));
    assert_eq!(
        exec(
            &mut m,
            &mut s,
            &[b"FUNCTION".as_slice(), b"RESTORE", payload]
        ),
        error("ERR Library lib already exists")
    );
    assert_eq!(
        exec(
            &mut m,
            &mut s,
            &[b"FUNCTION".as_slice(), b"RESTORE", payload, b"REPLACE"]
        ),
        ok()
    );
    assert_eq!(
        exec(
            &mut m,
            &mut s,
            &[b"FUNCTION".as_slice(), b"RESTORE", payload, b"FLUSH"]
        ),
        ok()
    );
    let mut corrupt = payload.to_vec();
    corrupt[12] ^= 1;
    for bad in [b"bad_payload".as_slice(), corrupt.as_slice(), b""] {
        assert_eq!(
            exec(&mut m, &mut s, &[b"FUNCTION".as_slice(), b"RESTORE", bad]),
            error("ERR DUMP payload version or checksum are wrong")
        );
    }
    assert_eq!(
        exec(
            &mut m,
            &mut s,
            &[b"FUNCTION".as_slice(), b"RESTORE", payload, b"MERGE"]
        ),
        error("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.")
    );
    assert_eq!(exec(&mut m, &mut s, &["FCALL", "up", "1", "k"]), int(2));
}

#[test]
fn functions_survive_in_a_new_node_that_gets_the_library_but_not_the_script_cache() {
    let (mut m, mut s) = node();
    exec(&mut m, &mut s, &["FUNCTION", "LOAD", LIB]);
    let Reply::Bulk(sha) = exec(&mut m, &mut s, &["SCRIPT", "LOAD", "return 1"]) else {
        panic!("SCRIPT LOAD answers the digest");
    };
    let sha = String::from_utf8(sha).unwrap();
    let mut restarted = Model::new(NodeConfig::standalone(1));
    restarted.functions = m.functions.clone();
    let mut s2 = restarted.connect("t");
    assert_eq!(
        exec(&mut restarted, &mut s2, &["FCALL", "up", "1", "k"]),
        int(1)
    );
    assert_eq!(
        exec(&mut restarted, &mut s2, &["EVALSHA", &sha, "0"]),
        error(crate::model::reply::msg::NOSCRIPT)
    );
    // Changes on the new node do not reach the old one.
    exec(&mut restarted, &mut s2, &["FUNCTION", "FLUSH"]);
    assert_eq!(exec(&mut m, &mut s, &["FCALL", "up", "1", "k"]), int(1));
}

#[test]
fn stats_help_and_argument_errors() {
    let (mut m, mut s) = node();
    exec(&mut m, &mut s, &["FUNCTION", "LOAD", LIB]);
    let stats = exec(&mut m, &mut s, &["FUNCTION", "STATS"]);
    assert_eq!(
        stats,
        Reply::Array(vec![
            bulk("running_script"),
            Reply::Nil,
            bulk("engines"),
            Reply::Array(vec![
                bulk("LUA"),
                Reply::Array(vec![
                    bulk("libraries_count"),
                    int(1),
                    bulk("functions_count"),
                    int(2),
                ]),
            ]),
        ])
    );
    let cases: &[(&[&str], &str)] = &[
        (&["FCALL", "up", "x"], "ERR Bad number of keys provided"),
        (
            &["FCALL", "up", "2", "k"],
            "ERR Number of keys can't be greater than number of args",
        ),
        (
            &["FCALL", "up", "-1"],
            "ERR Number of keys can't be negative",
        ),
        (
            &["FUNCTION", "KILL"],
            "NOTBUSY No scripts in execution right now.",
        ),
        (
            &["FUNCTION", "NOPE"],
            "ERR unknown subcommand 'NOPE'. Try FUNCTION HELP.",
        ),
        (
            &["FUNCTION", "FLUSH", "x"],
            "ERR FUNCTION FLUSH only supports SYNC|ASYNC option",
        ),
        (
            &["FUNCTION", "FLUSH", "sync", "x"],
            "ERR unknown subcommand or wrong number of arguments for 'FLUSH'. Try FUNCTION HELP.",
        ),
        (&["FUNCTION", "LIST", "bad"], "ERR Unknown argument bad"),
        (
            &["FUNCTION", "LIST", "libraryname"],
            "ERR library name argument was not given",
        ),
        (
            &["FUNCTION", "LOAD", "foo", "x"],
            "ERR Unknown option given: foo",
        ),
        (
            &["FUNCTION", "DELETE"],
            "ERR wrong number of arguments for 'function|delete' command",
        ),
    ];
    for (argv, expected) in cases {
        assert_eq!(exec(&mut m, &mut s, argv), error(expected), "{argv:?}");
    }
    assert_eq!(
        exec(
            &mut m,
            &mut s,
            &["FUNCTION", "LIST", "LIBRARYNAME", "L*", "WITHCODE"]
        ),
        exec(&mut m, &mut s, &["FUNCTION", "LIST", "WITHCODE"])
    );
    assert_eq!(
        exec(&mut m, &mut s, &["FUNCTION", "LIST", "LIBRARYNAME", "x*"]),
        Reply::Array(vec![])
    );
}

#[test]
fn no_writes_functions_refuse_writes_and_keys_follow_the_key_count() {
    let (mut m, mut s) = node();
    let code = "#!lua name=w\nredis.register_function{function_name='w', callback=function(keys, args) \
        return redis.call('SET', keys[1], args[1]) end, flags={'no-writes'}}";
    exec(&mut m, &mut s, &["FUNCTION", "LOAD", code]);
    assert_eq!(
        exec(&mut m, &mut s, &["FCALL", "w", "1", "k", "v"]),
        error(
            "ERR Write commands are not allowed from read-only scripts. script: w, on @user_function:2."
        )
    );
    assert_eq!(
        exec(
            &mut m,
            &mut s,
            &["COMMAND", "GETKEYS", "FCALL", "w", "2", "a", "b", "c"]
        ),
        bulks(&["a", "b"])
    );
}
