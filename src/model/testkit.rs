//! Test helpers shared by the model's unit tests: reply constructors and the table-driven
//! `check` runners (rust-analyzer's "one `check(input, expect)` helper" rule).

use super::{Model, NodeConfig, Reply, Session};

/// `:value`.
pub fn int(value: i64) -> Reply {
    Reply::Integer(value)
}

/// A bulk string.
pub fn bulk(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec())
}

/// An array of bulk strings.
pub fn bulks(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(|item| bulk(item)).collect())
}

/// An error line.
pub fn error(text: &str) -> Reply {
    Reply::Error(text.to_owned())
}

/// A status line.
pub fn status(text: &str) -> Reply {
    Reply::Status(text.to_owned())
}

/// `+OK`.
pub fn ok() -> Reply {
    status("OK")
}

/// Splits a test line on spaces; `""` stands for an empty argument.
pub fn words(line: &str) -> Vec<Vec<u8>> {
    line.split(' ')
        .map(|word| {
            if word == "\"\"" {
                Vec::new()
            } else {
                word.as_bytes().to_vec()
            }
        })
        .collect()
}

/// Runs one test line. The pseudo-command `GONE key` answers 1 if `key` is still stored in
/// database 0 (expired or not), else 0: it inspects without touching.
pub fn run(model: &mut Model, session: &mut Session, now_ms: u64, line: &str) -> Reply {
    if let Some(key) = line.strip_prefix("GONE ") {
        return int(i64::from(model.core.dbs[0].peek(key.as_bytes()).is_some()));
    }
    model.exec(now_ms, session, &words(line))
}

/// Runs `commands` in order on one session of `model` at time 1000 and compares each reply.
pub fn check_on(mut model: Model, commands: &[(&str, Reply)]) -> Model {
    let mut session = model.connect("127.0.0.1:1");
    for (line, expected) in commands {
        assert_eq!(
            &run(&mut model, &mut session, 1_000, line),
            expected,
            "{line}"
        );
    }
    model
}

/// [`check_on`] on a fresh node (seed 1).
pub fn check(commands: &[(&str, Reply)]) -> Model {
    check_on(Model::new(NodeConfig::standalone(1)), commands)
}

/// Runs `(now_ms, line, expected)` steps in order on one session of `model`.
pub fn check_at_on(mut model: Model, steps: &[(u64, &str, Reply)]) -> Model {
    let mut session = model.connect("127.0.0.1:1");
    for (now_ms, line, expected) in steps {
        assert_eq!(
            &run(&mut model, &mut session, *now_ms, line),
            expected,
            "at {now_ms}: {line}"
        );
    }
    model
}

/// [`check_at_on`] on a fresh node (seed 7).
pub fn check_at(steps: &[(u64, &str, Reply)]) -> Model {
    check_at_on(Model::new(NodeConfig::standalone(7)), steps)
}
