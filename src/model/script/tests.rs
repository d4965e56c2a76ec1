//! Unit tests of the script host: conversions, error lines, sandbox, limits, commands.

use super::convert::{REPLY_DEPTH_MAX, format_g17, lua_number_to_integer};
use super::errors::error_field;
use super::*;
use crate::model::{ClusterConfig, NodeConfig};

const NOW_MS: u64 = 1_000;

/// Runs each command (its words as given) on one session of `model` and compares the
/// reply with the expected one.
fn check_on(model: &mut Model, commands: &[(&[&str], Reply)]) {
    let mut session = model.connect("127.0.0.1:1");
    for (words, expected) in commands {
        let argv: Vec<Vec<u8>> = words.iter().map(|word| word.as_bytes().to_vec()).collect();
        assert_eq!(
            &model.exec(NOW_MS, &mut session, &argv),
            expected,
            "{words:?}"
        );
    }
}

fn check(commands: &[(&[&str], Reply)]) {
    check_on(&mut Model::new(NodeConfig::standalone(1)), commands);
}

fn status(text: &str) -> Reply {
    Reply::Status(text.to_owned())
}

fn error(text: &str) -> Reply {
    Reply::Error(text.to_owned())
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec())
}

fn int(value: i64) -> Reply {
    Reply::Integer(value)
}

fn array(items: Vec<Reply>) -> Reply {
    Reply::Array(items)
}

/// A script's error line as Redis 7.0.15 ends it.
fn script_error(message: &str, script: &str, line: u32) -> Reply {
    let sha = String::from_utf8(sha1_hex(script.as_bytes()).to_vec()).expect("hex");
    error(&format!("{message} script: {sha}, on @user_script:{line}."))
}

#[test]
fn lua_values_convert_to_replies_as_redis_does() {
    check(&[
        (&["EVAL", "return 100.5", "0"], int(100)),
        (&["EVAL", "return -100.5", "0"], int(-100)),
        (&["EVAL", "return 1e30", "0"], int(i64::MIN)),
        (&["EVAL", "return 0/0", "0"], int(i64::MIN)),
        (&["EVAL", "return '42'", "0"], bulk("42")),
        (&["EVAL", "return true", "0"], int(1)),
        (&["EVAL", "return false", "0"], Reply::Nil),
        (&["EVAL", "return nil", "0"], Reply::Nil),
        (&["EVAL", "return", "0"], Reply::Nil),
        (
            &["EVAL", "return {1,2,{3,'x'},nil,5}", "0"],
            array(vec![int(1), int(2), array(vec![int(3), bulk("x")])]),
        ),
        (
            &["EVAL", "return {1,false,true}", "0"],
            array(vec![int(1), Reply::Nil, int(1)]),
        ),
        (&["EVAL", "return {ok='FINE'}", "0"], status("FINE")),
        (&["EVAL", "return {ok='x\\ny'}", "0"], status("x y")),
        (&["EVAL", "return {err='My Error'}", "0"], error("My Error")),
        (&["EVAL", "return {err=''}", "0"], error("")),
        (&["EVAL", "return {err=1}", "0"], array(vec![])),
        (&["EVAL", "return {ok=1}", "0"], array(vec![])),
        (&["EVAL", "return {double=1.5}", "0"], bulk("1.5")),
        (
            &["EVAL", "return redis.status_reply('FINE')", "0"],
            status("FINE"),
        ),
        (
            &["EVAL", "return redis.error_reply('My Error')", "0"],
            error("My Error"),
        ),
        (
            &["EVAL", "return redis.error_reply('-X y')", "0"],
            error("X y"),
        ),
        (
            &["EVAL", "return redis.error_reply('')", "0"],
            error("ERR "),
        ),
        (
            &["EVAL", "return redis.error_reply('nospace')", "0"],
            error("ERR nospace"),
        ),
        (
            &["EVAL", "return redis.status_reply(1)", "0"],
            error("ERR wrong number or type of arguments"),
        ),
        (
            &["EVAL", "return print", "0"],
            script_error(
                "ERR user_script:1: Script attempted to access nonexistent global variable 'print'",
                "return print",
                1,
            ),
        ),
        (&["EVAL", "local t = {} t[1] = t return 1", "0"], int(1)),
    ]);
}

#[test]
fn redis_replies_convert_to_lua_values() {
    check(&[
        (
            &[
                "EVAL",
                "return redis.call('set', KEYS[1], ARGV[1])",
                "1",
                "k",
                "v",
            ],
            status("OK"),
        ),
        (
            &["EVAL", "return type(redis.call('set', 'k', 'v'))", "0"],
            bulk("table"),
        ),
        (
            &["EVAL", "return redis.call('set', 'k', 'v').ok", "0"],
            bulk("OK"),
        ),
        (&["EVAL", "return redis.call('get', 'k')", "0"], bulk("v")),
        (
            &["EVAL", "return redis.call('get', 'missing') == false", "0"],
            int(1),
        ),
        (
            &["EVAL", "return type(redis.call('incr', 'n'))", "0"],
            bulk("number"),
        ),
        (
            &["EVAL", "return redis.call('incr', 'n') + 0.5", "0"],
            int(2),
        ),
        (
            &["EVAL", "return redis.call('echo', 1.5)", "0"],
            bulk("1.5"),
        ),
        (
            &["EVAL", "return redis.call('echo', 1e20)", "0"],
            bulk("1e+20"),
        ),
        (
            &["EVAL", "return redis.call('echo', 0.1)", "0"],
            bulk("0.10000000000000001"),
        ),
        (&["EVAL", "return redis.call('echo', 3)", "0"], bulk("3")),
        (&["EVAL", "return redis.call('ping')", "0"], status("PONG")),
        (
            &[
                "EVAL",
                "local t = redis.call('time') return {type(t), #t}",
                "0",
            ],
            array(vec![bulk("table"), int(2)]),
        ),
        (
            &[
                "EVAL",
                "local e = redis.pcall('incr', 'k') return {type(e), e.err}",
                "0",
            ],
            array(vec![
                bulk("table"),
                bulk("ERR value is not an integer or out of range"),
            ]),
        ),
        (
            &["EVAL", "return redis.pcall('incr', 'k')", "0"],
            error("ERR value is not an integer or out of range"),
        ),
    ]);
}

#[test]
fn script_errors_match_redis_byte_for_byte() {
    let cases: &[(&str, &str, u32)] = &[
        (
            "return 1 + nil",
            "ERR user_script:1: attempt to perform arithmetic on a nil value",
            1,
        ),
        (
            "return redis.call('nosuch')",
            "ERR Unknown Redis command called from script",
            1,
        ),
        (
            "return redis.call('get')",
            "ERR Wrong number of args calling Redis command from script",
            1,
        ),
        (
            "redis.call('set','k','v')\nreturn redis.call('incr','k')",
            "ERR value is not an integer or out of range",
            2,
        ),
        (
            "return x",
            "ERR user_script:1: Script attempted to access nonexistent global variable 'x'",
            1,
        ),
        (
            "x = 1",
            "ERR user_script:1: Attempt to modify a readonly table",
            1,
        ),
        (
            "redis.call = 1",
            "ERR user_script:1: Attempt to modify a readonly table",
            1,
        ),
        ("error('boom')", "ERR user_script:1: boom", 1),
        ("error({err='boom2'})", "boom2", 1),
        ("error('boom', 0)", "ERR boom", 1),
        ("error(42)", "ERR user_script:1: 42", 1),
        ("error()", "ERR nil", 1),
        ("error('a\\nb')", "ERR user_script:1: a b", 1),
        (
            "return redis.call('multi')",
            "ERR This Redis command is not allowed from script",
            1,
        ),
        (
            "return redis.call('eval','return 1','0')",
            "ERR This Redis command is not allowed from script",
            1,
        ),
        (
            "return redis.call('client','id')",
            "ERR This Redis command is not allowed from script",
            1,
        ),
        (
            "return redis.call()",
            "ERR Please specify at least one argument for this redis lib call",
            1,
        ),
        (
            "return redis.call('get', {})",
            "ERR Lua redis lib command arguments must be strings or integers",
            1,
        ),
        (
            "return redis.call('echo', true)",
            "ERR Lua redis lib command arguments must be strings or integers",
            1,
        ),
        (
            "return redis.setresp(4)",
            "ERR RESP version must be 2 or 3.",
            1,
        ),
        (
            "return redis.setresp()",
            "ERR redis.setresp() requires one argument.",
            1,
        ),
        ("return redis.sha1hex()", "ERR wrong number of arguments", 1),
        ("return redis.log(9, 'hi')", "ERR Invalid debug level.", 1),
        (
            "return redis.log('x', 'hi')",
            "ERR First argument must be a number (log level).",
            1,
        ),
        (
            "return redis.log(1)",
            "ERR redis.log() requires two arguments or more.",
            1,
        ),
        (
            "return redis.set_repl(9)",
            "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
            1,
        ),
        (
            "return redis.acl_check_cmd('nope')",
            "ERR Invalid command passed to redis.acl_check_cmd()",
            1,
        ),
        (
            "return math.random(0)",
            "ERR user_script:1: bad argument #1 to 'random' (interval is empty)",
            1,
        ),
        (
            "local function f() f() end f()",
            "ERR user_script:1: stack overflow",
            1,
        ),
        (
            "rawset(_G, 'x', 1)",
            "ERR Attempt to modify a readonly table",
            1,
        ),
        (
            "return debug",
            "ERR user_script:1: Script attempted to access nonexistent global variable 'debug'",
            1,
        ),
        (
            "return os",
            "ERR user_script:1: Script attempted to access nonexistent global variable 'os'",
            1,
        ),
        (
            "return loadfile",
            "ERR user_script:1: Script attempted to access nonexistent global variable 'loadfile'",
            1,
        ),
        (
            "return cjson.encode({[1]=1,[30]=3})",
            "ERR user_script:1: Cannot serialise table: excessively sparse array",
            1,
        ),
        (
            "return cjson.encode(1/0)",
            "ERR user_script:1: Cannot serialise number: must not be NaN or Inf",
            1,
        ),
        (
            "return cjson.encode({[true]=1})",
            "ERR user_script:1: Cannot serialise boolean: table key must be a number or string",
            1,
        ),
        (
            "return cjson.encode(function() end)",
            "ERR user_script:1: Cannot serialise function: type not supported",
            1,
        ),
        (
            "return cjson.decode('[1,')",
            "ERR user_script:1: Expected value but found T_END at character 4",
            1,
        ),
        (
            "return cjson.decode('x')",
            "ERR user_script:1: Expected value but found invalid token at character 1",
            1,
        ),
        (
            "return cjson.decode('[1,2')",
            "ERR user_script:1: Expected comma or array end but found T_END at character 5",
            1,
        ),
        (
            "return cjson.decode('{\"a\" 1}')",
            "ERR user_script:1: Expected colon but found T_NUMBER at character 6",
            1,
        ),
        (
            "return cjson.decode('1 2')",
            "ERR user_script:1: Expected the end but found T_NUMBER at character 3",
            1,
        ),
    ];
    let mut model = Model::new(NodeConfig::standalone(1));
    for (script, message, line) in cases {
        check_on(
            &mut model,
            &[(&["EVAL", script, "0"], script_error(message, script, *line))],
        );
    }
    // `rawset` raises from C, so its message has no position; `rawset` itself runs fine
    // elsewhere.
    check(&[(
        &["EVAL", "local t = {} rawset(t, 'a', 1) return t.a", "0"],
        int(1),
    )]);
}

#[test]
fn compile_and_shebang_errors_match_redis() {
    check(&[
        (
            &["EVAL", "return (", "0"],
            error(
                "ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'",
            ),
        ),
        (
            &["EVAL", "#!lua flags=foo\nreturn 1", "0"],
            error("ERR Unexpected flag in script shebang: foo"),
        ),
        (
            &["EVAL", "#!python\nreturn 1", "0"],
            error("ERR Unexpected engine in script shebang: #!python"),
        ),
        (
            &["EVAL", "#!lua x=1\nreturn 1", "0"],
            error("ERR Unknown lua shebang option: x=1"),
        ),
        (&["EVAL", "#!lua", "0"], error("ERR Invalid script shebang")),
        (&["EVAL", "#!lua flags=no-writes\nreturn 7", "0"], int(7)),
        (
            &["EVAL_RO", "#!lua\nreturn 1", "0"],
            error("ERR Can not execute a script with write flag using *_ro command."),
        ),
        (&["EVAL_RO", "#!lua flags=no-writes\nreturn 1", "0"], int(1)),
        (
            &["EVAL", "#!lua\nreturn x", "0"],
            script_error(
                "ERR user_script:2: Script attempted to access nonexistent global variable 'x'",
                "#!lua\nreturn x",
                2,
            ),
        ),
    ]);
}

#[test]
fn read_only_scripts_refuse_writes() {
    check(&[
        (
            &["EVAL_RO", "return redis.call('set','a','b')", "0"],
            script_error(
                "ERR Write commands are not allowed from read-only scripts.",
                "return redis.call('set','a','b')",
                1,
            ),
        ),
        (
            &[
                "EVAL",
                "#!lua flags=no-writes\nreturn redis.call('set','a','b')",
                "0",
            ],
            script_error(
                "ERR Write commands are not allowed from read-only scripts.",
                "#!lua flags=no-writes\nreturn redis.call('set','a','b')",
                2,
            ),
        ),
        (
            &["EVAL_RO", "return redis.call('get','a')", "0"],
            Reply::Nil,
        ),
    ]);
}

#[test]
fn key_count_is_validated_before_anything_else() {
    check(&[
        (
            &["EVAL", "return 1", "1"],
            error("ERR Number of keys can't be greater than number of args"),
        ),
        (
            &["EVAL", "return 1", "-1"],
            error("ERR Number of keys can't be negative"),
        ),
        (
            &["EVAL", "return 1", "x"],
            error("ERR value is not an integer or out of range"),
        ),
        (
            &["EVAL", "return (", "1"],
            error("ERR Number of keys can't be greater than number of args"),
        ),
        (
            &["EVAL", "return 1"],
            error("ERR wrong number of arguments for 'eval' command"),
        ),
        (
            &[
                "EVAL",
                "return {KEYS[1], KEYS[2], ARGV[1], #ARGV}",
                "2",
                "a",
                "b",
                "c",
            ],
            array(vec![bulk("a"), bulk("b"), bulk("c"), int(1)]),
        ),
    ]);
}

#[test]
fn evalsha_and_the_script_cache() {
    let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
    let upper = sha.to_ascii_uppercase();
    check(&[
        (
            &["EVALSHA", sha, "0"],
            error("NOSCRIPT No matching script. Please use EVAL."),
        ),
        (
            &["EVALSHA", "0123", "x"],
            error("NOSCRIPT No matching script. Please use EVAL."),
        ),
        (&["SCRIPT", "LOAD", "return 1"], bulk(sha)),
        (
            &["EVALSHA", sha, "x"],
            error("ERR value is not an integer or out of range"),
        ),
        (&["EVALSHA", sha, "0"], int(1)),
        (&["EVALSHA", &upper, "0"], int(1)),
        (&["EVALSHA_RO", sha, "0"], int(1)),
        (
            &["SCRIPT", "EXISTS", &upper, sha, "x"],
            array(vec![int(1), int(1), int(0)]),
        ),
        (
            &["SCRIPT", "FLUSH", "bar"],
            error("ERR SCRIPT FLUSH only support SYNC|ASYNC option"),
        ),
        (
            &["SCRIPT", "FLUSH", "sync", "x"],
            error("ERR SCRIPT FLUSH only support SYNC|ASYNC option"),
        ),
        (&["SCRIPT", "FLUSH", "ASYNC"], status("OK")),
        (&["SCRIPT", "EXISTS", sha], array(vec![int(0)])),
        (
            &["EVALSHA", sha, "0"],
            error("NOSCRIPT No matching script. Please use EVAL."),
        ),
        (&["EVAL", "return 1", "0"], int(1)),
        (&["EVALSHA", sha, "0"], int(1)),
        (
            &["SCRIPT", "FOO"],
            error("ERR unknown subcommand 'FOO'. Try SCRIPT HELP."),
        ),
        (
            &["SCRIPT"],
            error("ERR wrong number of arguments for 'script' command"),
        ),
        (
            &["SCRIPT", "LOAD"],
            error("ERR wrong number of arguments for 'script|load' command"),
        ),
        (
            &["SCRIPT", "EXISTS"],
            error("ERR wrong number of arguments for 'script|exists' command"),
        ),
        (
            &["SCRIPT", "KILL"],
            error("NOTBUSY No scripts in execution right now."),
        ),
        (
            &["SCRIPT", "DEBUG", "foo"],
            error("ERR Use SCRIPT DEBUG YES/SYNC/NO"),
        ),
        (&["SCRIPT", "DEBUG", "no"], status("OK")),
        (
            &["SCRIPT", "LOAD", "return ("],
            error(
                "ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'",
            ),
        ),
    ]);
    let mut model = Model::new(NodeConfig::standalone(1));
    check_on(&mut model, &[(&["SCRIPT", "LOAD", "return 1"], bulk(sha))]);
    model.flush_scripts();
    check_on(
        &mut model,
        &[(
            &["EVALSHA", sha, "0"],
            error("NOSCRIPT No matching script. Please use EVAL."),
        )],
    );
    let help = match &check_reply(&mut model, &["SCRIPT", "HELP"]) {
        Reply::Array(lines) => lines.len(),
        _ => 0,
    };
    assert_eq!(help, 17);
}

fn check_reply(model: &mut Model, words: &[&str]) -> Reply {
    let mut session = model.connect("127.0.0.1:2");
    let argv: Vec<Vec<u8>> = words.iter().map(|word| word.as_bytes().to_vec()).collect();
    model.exec(NOW_MS, &mut session, &argv)
}

#[test]
fn pcall_sees_redis_error_values() {
    check(&[
        (&["EVAL", "redis.call('set','k','v') return 1", "0"], int(1)),
        (
            &[
                "EVAL",
                "local ok, e = pcall(redis.call, 'incr', 'k') return {tostring(ok), type(e), e}",
                "0",
            ],
            array(vec![
                bulk("false"),
                bulk("string"),
                bulk("ERR value is not an integer or out of range"),
            ]),
        ),
        (
            &["EVAL", "return {pcall(redis.call, 'incr', 'k')}", "0"],
            array(vec![
                Reply::Nil,
                bulk("ERR value is not an integer or out of range"),
            ]),
        ),
        (
            &[
                "EVAL",
                "local ok, e = pcall(error, 'x') return type(e)..':'..tostring(e)",
                "0",
            ],
            bulk("string:x"),
        ),
        (
            &[
                "EVAL",
                "local ok, e = pcall(function() return 1 + nil end) return e",
                "0",
            ],
            bulk("user_script:1: attempt to perform arithmetic on a nil value"),
        ),
        (
            &[
                "EVAL",
                "local ok, e = pcall(error, {err='mine'}) return e",
                "0",
            ],
            bulk("mine"),
        ),
        (
            &[
                "EVAL",
                "local ok, e = pcall(function() return x end) return e",
                "0",
            ],
            bulk("user_script:1: Script attempted to access nonexistent global variable 'x'"),
        ),
        (
            &[
                "EVAL",
                "return {pcall(function(a) return a, 2 end, 1)}",
                "0",
            ],
            array(vec![int(1), int(1), int(2)]),
        ),
        (
            &[
                "EVAL",
                "return xpcall(function() redis.call('nosuch') end, function(e) return e.err end)",
                "0",
            ],
            Reply::Nil,
        ),
        (
            &[
                "EVAL",
                "local ok, e = xpcall(function() redis.call('nosuch') end, function(e) return e.err end) return e",
                "0",
            ],
            bulk("ERR Unknown Redis command called from script"),
        ),
    ]);
}

#[test]
fn writes_are_all_visible_after_the_script_and_time_is_frozen() {
    let mut model = Model::new(NodeConfig::standalone(1));
    check_on(
        &mut model,
        &[
            (
                &[
                    "EVAL",
                    "for i = 1, 5 do redis.call('incr', KEYS[1]) end return redis.call('get', KEYS[1])",
                    "1",
                    "n",
                ],
                bulk("5"),
            ),
            (&["DBSIZE"], int(1)),
            // A key that expires 1 ms after the script's start stays readable inside it.
            (
                &[
                    "EVAL",
                    "redis.call('set', 'k', 'v') redis.call('pexpire', 'k', 1) return redis.call('get', 'k')",
                    "0",
                ],
                bulk("v"),
            ),
            (
                &[
                    "EVAL",
                    "local a = redis.call('time') local b = redis.call('time') return {a[1] == b[1] and a[2] == b[2], a[1], a[2]}",
                    "0",
                ],
                array(vec![int(1), bulk("1"), bulk("0")]),
            ),
        ],
    );
    // Once the time is past its expiry (strictly, as in Redis) the key is gone.
    let mut session = model.connect("127.0.0.1:3");
    let argv: Vec<Vec<u8>> = ["EVAL", "return redis.call('get', 'k')", "0"]
        .iter()
        .map(|word| word.as_bytes().to_vec())
        .collect();
    assert_eq!(model.exec(NOW_MS + 2, &mut session, &argv), Reply::Nil);
    // The model's keyspace came back from the Lua state: the counter is still there.
    assert!(model.core.dbs[0].peek(b"n").is_some());
}

#[test]
fn script_commands_are_counted_in_the_stats() {
    let mut model = Model::new(NodeConfig::standalone(1));
    check_on(
        &mut model,
        &[(
            &[
                "EVAL",
                "redis.call('set','a','1') redis.call('get','a') redis.pcall('incr','x','y') return 1",
                "0",
            ],
            int(1),
        )],
    );
    let stats = &model.core.stats;
    assert_eq!(stats.total_commands_processed, 3);
    assert_eq!(stats.commands["set"].calls, 1);
    assert_eq!(stats.commands["get"].calls, 1);
    assert_eq!(stats.commands["incr"].calls, 0);
    assert_eq!(stats.commands["incr"].rejected_calls, 1);
    assert_eq!(stats.commands["eval"].calls, 1);
    assert_eq!(stats.total_error_replies, 1);
    // An error propagated out of the script is counted once, not twice.
    check_on(
        &mut model,
        &[(
            &["EVAL", "return redis.call('nosuch')", "0"],
            script_error(
                "ERR Unknown Redis command called from script",
                "return redis.call('nosuch')",
                1,
            ),
        )],
    );
    assert_eq!(model.core.stats.total_error_replies, 2);
    assert_eq!(model.core.stats.errors["ERR"], 2);
}

#[test]
fn globals_are_protected_and_do_not_leak_between_scripts() {
    check(&[
        (
            &["EVAL", "string.foo = 1", "0"],
            script_error(
                "ERR user_script:1: Attempt to modify a readonly table",
                "string.foo = 1",
                1,
            ),
        ),
        (
            &["EVAL", "_G.y = 1", "0"],
            script_error(
                "ERR user_script:1: Attempt to modify a readonly table",
                "_G.y = 1",
                1,
            ),
        ),
        (&["EVAL", "local x = 1 return x", "0"], int(1)),
        (&["EVAL", "return KEYS[1]", "1", "a"], bulk("a")),
        (&["EVAL", "return #KEYS", "0"], int(0)),
        (
            &["EVAL", "KEYS[1] = 'z' return KEYS[1]", "1", "a"],
            bulk("z"),
        ),
        (&["EVAL", "return KEYS[1]", "1", "a"], bulk("a")),
        (
            &[
                "EVAL",
                "return {type(loadstring), type(coroutine), type(struct == nil)}",
                "0",
            ],
            script_error(
                "ERR user_script:1: Script attempted to access nonexistent global variable 'struct'",
                "return {type(loadstring), type(coroutine), type(struct == nil)}",
                1,
            ),
        ),
        (&["EVAL", "return _VERSION", "0"], bulk("Lua 5.1")),
        (
            &[
                "EVAL",
                "return redis.REDIS_VERSION .. ' ' .. redis.REDIS_VERSION_NUM",
                "0",
            ],
            bulk("7.0.15 458767"),
        ),
        (
            &["EVAL", "return redis.sha1hex('')", "0"],
            bulk("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ),
        (
            &["EVAL", "return redis.sha1hex(12)", "0"],
            bulk("7b52009b64fd0a2a49e6d8a939753077792b0554"),
        ),
        (&["EVAL", "return redis.replicate_commands()", "0"], int(1)),
        (&["EVAL", "return redis.breakpoint()", "0"], Reply::Nil),
        (&["EVAL", "return redis.acl_check_cmd('ping')", "0"], int(1)),
        (
            &["EVAL", "return redis.log(redis.LOG_WARNING, 'hi')", "0"],
            Reply::Nil,
        ),
        (&["EVAL", "return redis.setresp(2)", "0"], Reply::Nil),
        (
            &[
                "EVAL",
                "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}",
                "0",
            ],
            array(vec![int(0), int(1), int(2), int(3)]),
        ),
        (&["EVAL", "return ('abc'):upper()", "0"], bulk("ABC")),
        (
            &["EVAL", "return getmetatable('').__index == string", "0"],
            int(1),
        ),
        (
            &["EVAL", "return type(getmetatable(_G))", "0"],
            bulk("table"),
        ),
        (
            &["EVAL", "return setmetatable(_G, nil)", "0"],
            script_error(
                "ERR Attempt to modify a readonly table",
                "return setmetatable(_G, nil)",
                1,
            ),
        ),
        (
            &["EVAL", "return rawset(string, 'x', 1)", "0"],
            script_error(
                "ERR Attempt to modify a readonly table",
                "return rawset(string, 'x', 1)",
                1,
            ),
        ),
        (
            &["EVAL", "return type(newproxy)", "0"],
            script_error(
                "ERR user_script:1: Script attempted to access nonexistent global variable 'newproxy'",
                "return type(newproxy)",
                1,
            ),
        ),
        (
            &[
                "EVAL",
                "return setmetatable(setmetatable({}, {__metatable = 'locked'}), {})",
                "0",
            ],
            script_error(
                "ERR user_script:1: cannot change a protected metatable",
                "return setmetatable(setmetatable({}, {__metatable = 'locked'}), {})",
                1,
            ),
        ),
        (
            &[
                "EVAL",
                "return setmetatable({}, {__index = function(t, k) return k .. '!' end}).hi",
                "0",
            ],
            bulk("hi!"),
        ),
        (
            &["EVAL", "return {pcall()}", "0"],
            array(vec![Reply::Nil, bulk("attempt to call a boolean value")]),
        ),
        (
            &["EVAL", "return loadstring('return 1 + 1')()", "0"],
            int(2),
        ),
        (
            // Redis reports the chunk's source, here the code itself, as the location.
            &["EVAL", "return loadstring('x = 1')()", "0"],
            error(
                "ERR [string \"x = 1\"]:1: Attempt to modify a readonly table script: \
                 afbff2ee5a9bb020f9918fdbbf2a281dc3fec921, on x = 1:1.",
            ),
        ),
    ]);
}

#[test]
fn math_random_follows_redis_sequence() {
    // The values a fresh Redis 7.0.15 returns for these calls, in this order.
    check(&[
        (&["EVAL", "return math.random()", "0"], int(0)),
        (
            &[
                "EVAL",
                "return {math.random(100), math.random(10,20), tostring(math.random())}",
                "0",
            ],
            array(vec![int(85), int(13), bulk("0.44658343468168")]),
        ),
        (
            &[
                "EVAL",
                "math.randomseed(7) return tostring(math.random())",
                "0",
            ],
            bulk("0.26644419658298"),
        ),
    ]);
}

#[test]
fn bit_library_has_32_bit_semantics() {
    check(&[(
        &[
            "EVAL",
            "return {bit.tobit(1.5), bit.tobit(2.5), bit.band(0xff, 0x0f), bit.bnot(0), bit.tohex(255), \
             bit.tohex(255,-4), bit.lshift(1,31), bit.rshift(-1,28), bit.arshift(-16,2), \
             bit.rol(0x12345678, 8), bit.ror(0x12345678,8), bit.bxor(5,3,1), bit.tobit(2^32+5), \
             bit.bor('1', 2), bit.bswap(0x12345678)}",
            "0",
        ],
        array(vec![
            int(2),
            int(2),
            int(15),
            int(-1),
            bulk("000000ff"),
            bulk("00FF"),
            int(-2147483648),
            int(15),
            int(-4),
            int(878082066),
            int(2014458966),
            int(7),
            int(5),
            int(3),
            int(2018915346),
        ]),
    )]);
    check(&[(
        &["EVAL", "return bit.band({})", "0"],
        script_error(
            "ERR user_script:1: bad argument #1 to 'band' (number expected, got table)",
            "return bit.band({})",
            1,
        ),
    )]);
}

#[test]
fn cjson_encodes_and_decodes_like_redis() {
    check(&[
        (
            &[
                "EVAL",
                "return cjson.encode({1,2,3}) .. cjson.encode({}) .. cjson.encode(0.1) .. cjson.encode({[1]=1,[3]=3})",
                "0",
            ],
            bulk("[1,2,3]{}0.1[1,null,3]"),
        ),
        (
            &["EVAL", "return cjson.encode({a={b='x\"/'}})", "0"],
            bulk("{\"a\":{\"b\":\"x\\\"\\/\"}}"),
        ),
        (
            &["EVAL", "return cjson.encode({[1.5]=1})", "0"],
            bulk("{\"1.5\":1}"),
        ),
        (
            &[
                "EVAL",
                "return cjson.encode(string.char(1,127,31,8,9,10,12,13))",
                "0",
            ],
            bulk("\"\\u0001\\u007f\\u001f\\b\\t\\n\\f\\r\""),
        ),
        (
            &[
                "EVAL",
                "return cjson.encode(1e20) .. cjson.encode(123456789012345678)",
                "0",
            ],
            bulk("1e+201.2345678901235e+17"),
        ),
        (
            &[
                "EVAL",
                "return cjson.decode('{\"a\":[1,2,{\"b\":null}]}').a[3].b == cjson.null",
                "0",
            ],
            int(1),
        ),
        (
            &[
                "EVAL",
                "return cjson.decode('\"\\\\u00e9\\\\ud83d\\\\ude00\"')",
                "0",
            ],
            bulk("é😀"),
        ),
        (&["EVAL", "return cjson.decode('01')", "0"], int(1)),
        (
            &[
                "EVAL",
                "return cjson.encode(cjson.decode('[1.5e3,-0,true,false,null,\"x\"]'))",
                "0",
            ],
            bulk("[1500,-0,true,false,null,\"x\"]"),
        ),
        (&["EVAL", "return cjson.decode('{\"n\":5}').n", "0"], int(5)),
        (&["EVAL", "return cjson.decode('1.')", "0"], int(1)),
        (&["EVAL", "return cjson.decode('+1')", "0"], int(1)),
        (&["EVAL", "return cjson.decode('0x10')", "0"], int(16)),
        (
            &["EVAL", "return tostring(cjson.decode('-inf'))", "0"],
            bulk("-inf"),
        ),
    ]);
    let errors: &[(&str, &str)] = &[
        (
            "return cjson.decode('.5')",
            "Expected value but found invalid token at character 1",
        ),
        (
            "return cjson.decode('\"abc')",
            "Expected value but found unexpected end of string at character 5",
        ),
        (
            "return cjson.decode('\"a\\\\qb\"')",
            "Expected value but found invalid escape code at character 3",
        ),
        (
            "return cjson.decode('\"a\\\\u12\"')",
            "Expected value but found invalid unicode escape code at character 3",
        ),
        (
            "return cjson.decode('1e')",
            "Expected the end but found invalid token at character 2",
        ),
        (
            "return cjson.decode('nul')",
            "Expected value but found invalid token at character 1",
        ),
        (
            "return cjson.decode('-')",
            "Expected value but found invalid number at character 1",
        ),
        (
            "return cjson.decode('')",
            "Expected value but found T_END at character 1",
        ),
        (
            "return cjson.decode('[1,]')",
            "Expected value but found T_ARR_END at character 4",
        ),
        (
            "return cjson.decode('{1:2}')",
            "Expected object key string but found T_NUMBER at character 2",
        ),
        (
            "return cjson.decode()",
            "bad argument #1 to 'decode' (expected 1 argument)",
        ),
        (
            "return cjson.encode()",
            "bad argument #1 to 'encode' (expected 1 argument)",
        ),
        (
            "local t = {} for i = 1, 1001 do t = {t} end return cjson.encode(t)",
            "Cannot serialise, excessive nesting (1001)",
        ),
        (
            "return cjson.decode(string.rep('[', 1001) .. string.rep(']', 1001))",
            "Found too many nested data structures (1001) at character 1001",
        ),
    ];
    let mut model = Model::new(NodeConfig::standalone(1));
    for (script, message) in errors {
        let expected = script_error(&format!("ERR user_script:1: {message}"), script, 1);
        check_on(&mut model, &[(&["EVAL", script, "0"], expected)]);
    }
    check(&[(
        &[
            "EVAL",
            "local s = string.rep('[', 999) .. string.rep(']', 999) return #cjson.encode(cjson.decode(s))",
            "0",
        ],
        int(1998),
    )]);
}

#[test]
fn runaway_scripts_are_killed_and_cannot_catch_the_kill() {
    let mut config = NodeConfig::standalone(1);
    config.limits.script_steps_max = 100_000;
    let mut model = Model::new(config);
    let kill = "ERR Script killed by the model's step limit (script_steps_max 100000)...";
    for script in [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "local t = {} while true do t[#t + 1] = 1 end",
    ] {
        let reply = check_reply(&mut model, &["EVAL", script, "0"]);
        let Reply::Error(line) = &reply else {
            panic!("{script}: {reply:?}");
        };
        assert!(line.starts_with(kill), "{script}: {line}");
        assert!(line.contains("on @user_script:1."), "{script}: {line}");
    }
    // The node still answers, and the next script runs normally.
    check_on(&mut model, &[(&["EVAL", "return 1", "0"], int(1))]);
}

/// Goal: every Lua allocation counts against the heap limit, those made inside one C call
/// too, and the node serves on. Method: scripts that grow a table step by step, and single
/// calls (`string.rep`, `gsub`, `table.concat`) asked for far more than the limit (16 MiB in
/// tests) in one go; each must end in Lua's memory error, as Redis words a string error,
/// and a `pcall` around the call sees the same failure without the process growing.
/// Regression: `string.rep('x', 1024*1024*1024)` used to succeed, taking 24 s and 1.4 GB,
/// because the limit was checked only by the instruction hook, which never runs while one C
/// function runs.
#[test]
fn huge_allocations_fail_inside_lua() {
    let mut model = Model::new(NodeConfig::standalone(1));
    for script in [
        "local t = {} local i = 0 while true do i = i + 1 t[i] = 'x' .. i end",
        "local s = string.rep('x', 1024*1024*1024) return #s",
        "return #(('x'):rep(64):gsub('x', string.rep('y', 1024*1024)))",
        "local t = {} local s = string.rep('z', 1024*1024) for i = 1, 64 do t[i] = s end return #table.concat(t)",
    ] {
        let reply = check_reply(&mut model, &["EVAL", script, "0"]);
        let sha = sha1_smol::Sha1::from(script).digest().to_string();
        // `string.rep` refuses up front, as a runtime error at the script's line; any other
        // allocation fails in the allocator, which Lua 5.1 reports as a bare string.
        let expected = if script.starts_with("local s = string.rep") {
            format!("ERR user_script:1: not enough memory script: {sha}, on @user_script:1.")
        } else {
            format!("ERR Error running script {sha}, not enough memory ")
        };
        assert_eq!(reply, error(&expected), "{script}");
    }
    check_on(
        &mut model,
        &[
            (
                &["EVAL", "return {pcall(string.rep, 'x', 2^30)}", "0"],
                Reply::Array(vec![Reply::Nil, Reply::Bulk(b"not enough memory".to_vec())]),
            ),
            (
                &["EVAL", "return #string.rep('x', 1024 * 1024)", "0"],
                int(1 << 20),
            ),
        ],
    );
    let deep = check_reply(
        &mut Model::new(NodeConfig::standalone(1)),
        &["EVAL", "local t = {} t[1] = t return t", "0"],
    );
    let mut depth = 0;
    let mut cursor = &deep;
    while let Reply::Array(items) = cursor {
        depth += 1;
        cursor = &items[0];
    }
    assert_eq!(depth, REPLY_DEPTH_MAX + 1);
    assert_eq!(cursor, &error("ERR reached lua stack limit"));
}

#[test]
fn cluster_scripts_touch_only_local_keys() {
    // This node owns the slot of "a" (15495) and nothing else.
    let mut config = NodeConfig::standalone(1);
    let slot = cluster::key_slot(b"a");
    config.cluster = Some(ClusterConfig {
        owned: vec![(slot, slot)],
        endpoints: vec![(0, 16383, "127.0.0.1:7000".to_owned())],
    });
    let mut model = Model::new(config);
    let local = "return redis.call('get', 'a')";
    let remote = "return redis.call('get', 'b')";
    let cross = "#!lua\nredis.call('get', KEYS[1]) return redis.call('get', '{a}x')";
    check_on(
        &mut model,
        &[
            (&["EVAL", local, "1", "a"], Reply::Nil),
            (
                &["EVAL", remote, "1", "a"],
                script_error(
                    "ERR Script attempted to access a non local key in a cluster node",
                    remote,
                    1,
                ),
            ),
            (&["EVAL", cross, "1", "a"], Reply::Nil),
            (
                &["EVAL", "return 1", "1", "b"],
                error("MOVED 3300 127.0.0.1:7000"),
            ),
            (
                &["EVAL", "#!lua flags=no-cluster\nreturn 1", "0"],
                error("ERR Can not run script on cluster, 'no-cluster' flag is set."),
            ),
        ],
    );
}

#[test]
fn lua_number_formatting_matches_c() {
    for (value, expected) in [
        (0.1, "0.1"),
        (1e15, "1e+15"),
        (123456789012345678.0, "1.2345678901235e+17"),
        (100.0, "100"),
        (-2.5, "-2.5"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (99999999999999.9, "1e+14"),
        (12345.678, "12345.678"),
        (999999999999999.9, "1e+15"),
    ] {
        assert_eq!(format_g(value, 14), expected, "{value}");
    }
    assert_eq!(format_g17(0.1), "0.10000000000000001");
    assert_eq!(lua_number_to_integer(-100.5), -100);
    assert_eq!(lua_number_to_integer(f64::INFINITY), i64::MIN);
    assert_eq!(error_field("-WRONGTYPE Operation"), "WRONGTYPE Operation");
    assert_eq!(error_field("-NOSPACE"), "ERR NOSPACE");
    assert_eq!(error_field("plain words\r\n"), "ERR plain words");
}

/// A script that returns the sequence `1..=count` built in a loop, then runs `extra`.
fn numbered_table(count: usize, extra: &str) -> String {
    format!("local t = {{}} for i = 1, {count} do t[i] = i end {extra} return t")
}

fn numbers(range: std::ops::RangeInclusive<i64>) -> Vec<Reply> {
    range.map(int).collect()
}

#[test]
fn reply_tables_follow_redis_field_order_and_array_rules() {
    let mut with_nested = numbers(1..=69);
    with_nested.push(array(vec![bulk("x")]));
    let mut with_function = numbers(1..=64);
    with_function.push(Reply::Nil);
    with_function.push(int(66));
    let scripts: Vec<(String, Reply)> = vec![
        (numbered_table(63, ""), array(numbers(1..=63))),
        (numbered_table(64, ""), array(numbers(1..=64))),
        (numbered_table(65, ""), array(numbers(1..=65))),
        (numbered_table(200, ""), array(numbers(1..=200))),
        (numbered_table(64, "t[66] = 1"), array(numbers(1..=64))),
        (numbered_table(69, "t[70] = {'x'}"), array(with_nested)),
        (numbered_table(66, "t[65] = tostring"), array(with_function)),
        (numbered_table(3, "t.ok = 'fine'"), status("fine")),
        (numbered_table(3, "t.double = '1'"), array(numbers(1..=3))),
    ];
    let mut model = Model::new(NodeConfig::standalone(1));
    for (script, expected) in &scripts {
        assert_eq!(
            &check_reply(&mut model, &["EVAL", script, "0"]),
            expected,
            "{script}"
        );
    }
    check(&[
        (
            &["EVAL", "return {1e30, 0/0, -0.5, 2^53, -2^63}", "0"],
            array(vec![
                int(i64::MIN),
                int(i64::MIN),
                int(0),
                int(1 << 53),
                int(i64::MIN),
            ]),
        ),
        (
            &[
                "EVAL",
                "return {1, tostring, coroutine.create(function() end), 2}",
                "0",
            ],
            array(vec![int(1), Reply::Nil, Reply::Nil, int(2)]),
        ),
        (
            &["EVAL", "return {'a\\0b', ''}", "0"],
            array(vec![bulk("a\0b"), bulk("")]),
        ),
        (&["EVAL", "return {ok='a', err='b'}", "0"], error("b")),
        (&["EVAL", "return {ok='a\\r\\nb'}", "0"], status("a  b")),
        (&["EVAL", "return {err='a\\r\\nb'}", "0"], error("a  b")),
        (&["EVAL", "return {ok='a', double=1}", "0"], status("a")),
        (&["EVAL", "return {err=false, ok='a'}", "0"], status("a")),
        (
            &["EVAL", "return {double=0.1}", "0"],
            bulk("0.10000000000000001"),
        ),
        (&["EVAL", "return {double=1/0}", "0"], bulk("inf")),
        (&["EVAL", "return {double=-1/0}", "0"], bulk("-inf")),
        (
            &["EVAL", "return {double=3, big_number='7'}", "0"],
            bulk("3"),
        ),
        (
            &["EVAL", "return {double='3', big_number='7'}", "0"],
            bulk("7"),
        ),
        (&["EVAL", "return {big_number='1\\n2'}", "0"], bulk("1 2")),
        (&["EVAL", "return {big_number=7}", "0"], array(vec![])),
        (
            &[
                "EVAL",
                "return {verbatim_string={format='txt', string='a\\nb'}}",
                "0",
            ],
            bulk("a\nb"),
        ),
        (
            &["EVAL", "return {verbatim_string={string='x'}, 5}", "0"],
            array(vec![int(5)]),
        ),
        (
            &[
                "EVAL",
                "return {verbatim_string={format='txt', string=1}}",
                "0",
            ],
            array(vec![]),
        ),
        (
            &["EVAL", "return {verbatim_string='x', big_number='8'}", "0"],
            bulk("8"),
        ),
        (
            &["EVAL", "return {map={a=1}}", "0"],
            array(vec![bulk("a"), int(1)]),
        ),
        (&["EVAL", "return {map={}, 1}", "0"], array(vec![])),
        (
            &["EVAL", "return {map='x', set={b=true}}", "0"],
            array(vec![bulk("b")]),
        ),
        (&["EVAL", "return {set={}, 1}", "0"], array(vec![])),
        (
            &[
                "EVAL",
                "return setmetatable({}, {__index = {ok = 'x'}})",
                "0",
            ],
            array(vec![]),
        ),
        (
            &[
                "EVAL",
                "return setmetatable({}, {__index = function(t, i) return i end})",
                "0",
            ],
            array(vec![]),
        ),
        (
            &["EVAL", "return {{{ok='deep'}}, {err='e'}, {double=2}}", "0"],
            array(vec![array(vec![status("deep")]), error("e"), bulk("2")]),
        ),
    ]);
}

#[test]
fn keys_and_args_reach_scripts_byte_for_byte() {
    check(&[
        (
            &["EVAL", "return {#KEYS, #ARGV}", "0"],
            array(vec![int(0), int(0)]),
        ),
        (
            &[
                "EVAL",
                "return {#KEYS, #ARGV, ARGV[1], ARGV[2]}",
                "0",
                "a",
                "",
            ],
            array(vec![int(0), int(2), bulk("a"), bulk("")]),
        ),
        (
            &[
                "EVAL",
                "return {#KEYS, #ARGV, KEYS[1], KEYS[3], ARGV[1]}",
                "3",
                "k1",
                "k2",
                "k3",
                "a1",
            ],
            array(vec![int(3), int(1), bulk("k1"), bulk("k3"), bulk("a1")]),
        ),
        (
            &["EVAL", "return {#KEYS, #ARGV, KEYS[2]}", "2", "k1", "k2"],
            array(vec![int(2), int(0), bulk("k2")]),
        ),
        (
            &[
                "EVAL",
                "table.insert(KEYS, 'x') KEYS.y = 1 return {#KEYS, KEYS[2], KEYS.y}",
                "1",
                "k",
            ],
            array(vec![int(2), bulk("x"), int(1)]),
        ),
        // Every run gets fresh tables.
        (
            &["EVAL", "return {#KEYS, KEYS.y}", "1", "k"],
            array(vec![int(1)]),
        ),
    ]);
    // Few and many items (the host code takes up to 64 on the Lua stack, more in tables).
    let mut model = Model::new(NodeConfig::standalone(1));
    for (key_count, arg_count) in [
        (0i64, 64i64),
        (64, 0),
        (1, 63),
        (2, 63),
        (5, 10),
        (66, 4),
        (0, 100),
    ] {
        let mut words: Vec<String> = vec![
            "EVAL".into(),
            "return {#KEYS, #ARGV, KEYS[#KEYS] or false, ARGV[#ARGV] or false}".into(),
            key_count.to_string(),
        ];
        words.extend((1..=key_count).map(|index| format!("k{index}")));
        words.extend((1..=arg_count).map(|index| format!("a{index}")));
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let last = |count: i64, prefix: &str| match count {
            0 => Reply::Nil,
            _ => bulk(&format!("{prefix}{count}")),
        };
        let expected = vec![
            int(key_count),
            int(arg_count),
            last(key_count, "k"),
            last(arg_count, "a"),
        ];
        assert_eq!(
            check_reply(&mut model, &words),
            array(expected),
            "{key_count} keys, {arg_count} args"
        );
    }
    let mut session = model.connect("127.0.0.1:1");
    let argv: Vec<Vec<u8>> = vec![
        b"EVAL".to_vec(),
        b"return {KEYS[1], ARGV[1], #KEYS[1], ARGV[2]}".to_vec(),
        b"1".to_vec(),
        b"\xff\x00k".to_vec(),
        b"\xc3".to_vec(),
        b"plain".to_vec(),
    ];
    assert_eq!(
        model.exec(NOW_MS, &mut session, &argv),
        array(vec![
            Reply::Bulk(b"\xff\x00k".to_vec()),
            Reply::Bulk(b"\xc3".to_vec()),
            int(3),
            bulk("plain"),
        ])
    );
}

#[test]
fn step_checks_in_the_host_code_around_a_script_never_kill() {
    // With no steps allowed, every check that lands in the script kills it; one that lands
    // in the host code (KEYS/ARGV, reply classification) must not, or the kill would escape
    // the script's error handler as "Error running script".
    let mut config = NodeConfig::standalone(1);
    config.limits.script_steps_max = 0;
    let mut model = Model::new(config);
    let script = "local x = 1\nreturn {x, 2, {3}, ok = false}";
    let expected = array(vec![int(1), int(2), array(vec![int(3)])]);
    let (mut answered, mut killed) = (0, 0);
    for _ in 0..3000 {
        let reply = check_reply(&mut model, &["EVAL", script, "2", "k1", "k2", "a"]);
        match &reply {
            Reply::Error(line)
                if line.starts_with("ERR Script killed by the model's step limit")
                    && line.contains(" on @user_script:") =>
            {
                killed += 1;
            }
            _ => {
                assert_eq!(reply, expected);
                answered += 1;
            }
        }
    }
    assert!(
        answered > 0 && killed > 0,
        "{answered} answered, {killed} killed"
    );
}

#[test]
fn each_redis_call_sees_exactly_its_own_arguments() {
    let script = "redis.pcall('SET', 'k', {}) \
        redis.call('SET', 'k', 'first-long-value', 'EX', 100) \
        redis.call('SET', 'k2', 'x') \
        local big = redis.call('ECHO', string.rep('z', 5000)) \
        return {redis.call('GET', 'k'), redis.call('TTL', 'k'), redis.call('GET', 'k2'), \
          #big, redis.call('ECHO', 'y'), redis.call('ECHO', 0.1), redis.pcall('GET')}";
    check(&[(
        &["EVAL", script, "0"],
        array(vec![
            bulk("first-long-value"),
            int(100),
            bulk("x"),
            int(5000),
            bulk("y"),
            bulk("0.10000000000000001"),
            error("ERR Wrong number of args calling Redis command from script"),
        ]),
    )]);
}
