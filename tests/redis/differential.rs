//! The proof of fidelity: the model must answer like real Redis 7.0.15, reply for reply.
//!
//! Goal: every command in `tests/corpus/*.redis` gets the same reply from the in-process
//! model as from real Redis. Method, three tests:
//!
//! * `corpus_matches_golden_replies` (always runs): each corpus file runs on a fresh model
//!   whose clock starts at the golden file's recorded base time and moves only by `@sleep`;
//!   each reply is compared with the one real Redis gave when the golden file was recorded.
//!   With `RATELAB_RECORD=1` it first re-records every golden file from a real Redis
//!   (`RATELAB_RECORD=1 cargo test -p ratelab --test redis differential`;
//!   `RATELAB_RECORD_FILES="resp3"` limits that to the named files).
//!   `corpus_matches_golden_replies_resp3` does the same with every connection in RESP3
//!   (`HELLO 3` first), against `tests/golden/resp3/`.
//! * `corpus_matches_live_redis` and `corpus_matches_live_redis_resp3` (when a real Redis is
//!   available): each file runs on real Redis and on a fresh model side by side, the model's
//!   clock following the wall clock.
//! * `mutated_corpus_commands_do_not_panic_the_model` (and `..._resp3`, over the files with
//!   protocol-dependent replies): every corpus command, truncated, with arguments replaced by
//!   hostile values, and with extra arguments, runs on the model; no input may panic it.
//!
//! A difference prints file, line, command, expected and got for every differing line, then
//! the test fails. Each file also prints `corpus <file>: N commands, M agree`.
//!
//! # Corpus format (`tests/corpus/<family>.redis`)
//!
//! One command per line, quoted as redis-cli quotes (`"a b\n"`, `'it\'s'`, `"\x00"`), parsed
//! with `resp::codec::split_args`. Blank lines and lines starting with `#` are ignored.
//! Directives:
//!
//! * `@sleep <ms>`: time passes. The model's clock advances by exactly `ms`; against real
//!   Redis the harness really sleeps, until the file's start plus all sleeps so far, so that
//!   the time commands took does not pile up.
//! * `@client <n>`: later commands go to connection `n` (0 to 7; 0 is the default). Each
//!   connection is opened on first use and starts, as any new connection does, in db 0.
//!
//! A command line may start with a marker that relaxes the comparison:
//!
//! * `~ ` compares integers with a tolerance: 250 (ms) for PTTL and PEXPIRETIME, 1 for
//!   everything else (TTL, EXPIRETIME, seconds). `~<n> ` sets the tolerance to `n`, for example
//!   `~250 EVAL "return redis.call('pttl', KEYS[1])" 1 k`. 250 ms covers the time commands
//!   take between two sleeps on a busy machine; the corpus's own distinctions are seconds.
//! * `? ` compares only the shape: the reply type, array lengths, recursively (TIME,
//!   RANDOMKEY among several keys, HRANDFIELD with a count).
//! * `% ` compares arrays as unordered collections, recursively (KEYS and SCAN: Redis lists
//!   its hash table in hash order, the model in key order).
//!
//! Placeholders inside arguments: `$NOW_S` and `$NOW_MS`, optionally followed by `+<n>` or
//! `-<n>`, become the harness's current Unix time in seconds or ms: the base time plus all
//! sleeps so far. When recording, the base time is the wall clock at the file's start and is
//! stored in the golden file, so a replay substitutes the same values the real server saw.
//!
//! Each file starts its own state: `SELECT 9` and `FLUSHALL` are its first commands.
//!
//! # Golden format (`tests/golden/<family>.golden`)
//!
//! `base_ms <n>` on the first non-comment line, then for each corpus command two lines:
//! `> <line> <command as written in the corpus>` and `< <reply>`, the reply's RESP2 bytes (RESP3
//! bytes in `tests/golden/resp3/`, and for a connection that sent `HELLO 3` in a RESP2 run)
//! with `\r`, `\n`, `\t`, `\\` and `\xHH` escapes. The `>` line lets the replay notice a golden
//! file that no longer matches its corpus (then re-record).

use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratelab::model::{Limits, Model, NodeConfig, Reply, Session};
use ratelab::redis_server::{RedisClient, RedisServer, real_redis_or_skip};
use ratelab::resp::codec::{Protocol, encode_reply_as, parse_reply, split_args};

/// Most connections one corpus file may use (`@client 0` to `@client 7`).
const CLIENTS_MAX: usize = 8;

/// Longest single `@sleep`, so a typo cannot stall the suite.
const SLEEP_MAX_MS: u64 = 10_000;

/// The default tolerance of `~` for millisecond replies (PTTL, PEXPIRETIME).
const TOLERANCE_MS: i64 = 250;

/// The seed of every model this suite creates.
const MODEL_SEED: u64 = 1;

/// Held by every test that talks to real Redis. With `REDIS_URL` they share one server and
/// one database, and two corpus runs interleaved on it would corrupt each other.
static REAL_REDIS: Mutex<()> = Mutex::new(());

/// Takes [`REAL_REDIS`]; a test that panicked while holding it left no state worth guarding.
fn real_redis_turn() -> MutexGuard<'static, ()> {
    REAL_REDIS.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The corpus

/// How a reply is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    /// Byte for byte.
    Exact,
    /// Integers within the given distance; everything else exact.
    Tolerance(i64),
    /// Only the reply type and array lengths.
    Shape,
    /// Arrays as multisets, recursively.
    Unordered,
}

/// One line of a corpus file that does something.
#[derive(Clone, Debug)]
enum Step {
    /// A command to send.
    Command(CorpusCommand),
    /// `@sleep <ms>`.
    Sleep(u64),
    /// `@client <n>`.
    Client(usize),
}

/// A command line of the corpus.
#[derive(Clone, Debug)]
struct CorpusCommand {
    /// 1-based line number in the corpus file.
    line: usize,
    /// The line as written, marker removed (the golden file repeats it).
    text: String,
    /// How its reply is compared.
    marker: Marker,
    /// Its arguments, placeholders not yet substituted.
    argv: Vec<Vec<u8>>,
}

/// A parsed corpus file.
#[derive(Debug)]
struct Corpus {
    /// The file's stem (`strings` for `strings.redis`).
    name: String,
    /// Its steps in order.
    steps: Vec<Step>,
}

impl Corpus {
    /// The commands only.
    fn commands(&self) -> impl Iterator<Item = &CorpusCommand> {
        self.steps.iter().filter_map(|step| match step {
            Step::Command(command) => Some(command),
            _ => None,
        })
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every corpus file, parsed, in name order.
fn load_corpus() -> Vec<Corpus> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "redis"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no corpus files in tests/corpus");
    paths.iter().map(|path| parse_corpus(path)).collect()
}

fn parse_corpus(path: &Path) -> Corpus {
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .expect("a UTF-8 file name")
        .to_owned();
    let source = std::fs::read_to_string(path).expect("a readable UTF-8 corpus file");
    let mut steps = Vec::new();
    for (index, raw) in source.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let place = format!("{}:{line}", path.display());
        if let Some(directive) = trimmed.strip_prefix('@') {
            let mut words = directive.split_whitespace();
            let keyword = words.next().unwrap_or_default();
            let value: u64 = words
                .next()
                .and_then(|word| word.parse().ok())
                .unwrap_or_else(|| panic!("{place}: `@{keyword}` needs a number"));
            match keyword {
                "sleep" => {
                    assert!(value <= SLEEP_MAX_MS, "{place}: sleep longer than 10 s");
                    steps.push(Step::Sleep(value));
                }
                "client" => {
                    let client = usize::try_from(value).unwrap_or(usize::MAX);
                    assert!(client < CLIENTS_MAX, "{place}: client index above 7");
                    steps.push(Step::Client(client));
                }
                other => panic!("{place}: unknown directive @{other}"),
            }
            continue;
        }
        let (marker, text) = split_marker(trimmed, &place);
        let argv = split_args(text.as_bytes())
            .unwrap_or_else(|| panic!("{place}: unbalanced quotes in {text:?}"));
        assert!(!argv.is_empty(), "{place}: empty command");
        steps.push(Step::Command(CorpusCommand {
            line,
            text: text.to_owned(),
            marker,
            argv,
        }));
    }
    Corpus { name, steps }
}

/// Splits a leading marker (`~ `, `~250 `, `? `, `% `) from a command line.
fn split_marker<'a>(line: &'a str, place: &str) -> (Marker, &'a str) {
    if let Some(rest) = line.strip_prefix("? ") {
        return (Marker::Shape, rest.trim_start());
    }
    if let Some(rest) = line.strip_prefix("% ") {
        return (Marker::Unordered, rest.trim_start());
    }
    if let Some(rest) = line.strip_prefix('~') {
        let (digits, command) = rest
            .split_once(' ')
            .unwrap_or_else(|| panic!("{place}: `~` must be followed by a space"));
        let command = command.trim_start();
        if digits.is_empty() {
            let name = command
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let tolerance = if name == "pttl" || name == "pexpiretime" {
                TOLERANCE_MS
            } else {
                1
            };
            return (Marker::Tolerance(tolerance), command);
        }
        let tolerance = digits
            .parse()
            .unwrap_or_else(|_| panic!("{place}: bad tolerance `~{digits}`"));
        return (Marker::Tolerance(tolerance), command);
    }
    (Marker::Exact, line)
}

/// Replaces `$NOW_MS[+-n]` and `$NOW_S[+-n]` in every argument.
fn substitute(argv: &[Vec<u8>], now_ms: u64) -> Vec<Vec<u8>> {
    argv.iter()
        .map(|arg| match std::str::from_utf8(arg) {
            Ok(text) if text.contains("$NOW_") => substitute_text(text, now_ms).into_bytes(),
            _ => arg.clone(),
        })
        .collect()
}

fn substitute_text(text: &str, now_ms: u64) -> String {
    let now_ms = i128::from(now_ms);
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$NOW_") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let (base, after) = if let Some(tail) = after.strip_prefix("$NOW_MS") {
            (now_ms, tail)
        } else if let Some(tail) = after.strip_prefix("$NOW_S") {
            (now_ms / 1000, tail)
        } else {
            out.push_str("$NOW_");
            rest = &after[5..];
            continue;
        };
        let sign_len = usize::from(after.starts_with('+') || after.starts_with('-'));
        let digits_len = after[sign_len..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let offset: i128 = if sign_len == 1 && digits_len > 0 {
            after[..sign_len + digits_len]
                .parse()
                .expect("a sign and digits")
        } else {
            0
        };
        let consumed = if digits_len > 0 {
            sign_len + digits_len
        } else {
            0
        };
        write!(out, "{}", base + offset).expect("writing to a String");
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// Replies as text, and comparison

/// A reply's RESP2 bytes, escaped onto one line.
fn reply_text(reply: &Reply) -> String {
    reply_text_as(reply, Protocol::Resp2)
}

/// A reply as a golden file stores it: in RESP3 for a RESP3 run; in RESP2 for a RESP2 run
/// unless the reply has RESP3 types (a connection that sent `HELLO 3` in a RESP2 run), so
/// that the text always parses back to the same reply.
fn golden_text(reply: &Reply, protocol: Protocol) -> String {
    if protocol == Protocol::Resp2 && !reply.is_resp2() {
        return reply_text_as(reply, Protocol::Resp3);
    }
    reply_text_as(reply, protocol)
}

/// A reply's bytes in `protocol`, escaped onto one line.
fn reply_text_as(reply: &Reply, protocol: Protocol) -> String {
    let mut bytes = Vec::new();
    encode_reply_as(reply, protocol, &mut bytes);
    let mut out = String::new();
    for byte in bytes {
        match byte {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => write!(out, "\\x{byte:02x}").expect("writing to a String"),
        }
    }
    out
}

/// The inverse of [`reply_text`]; `None` if the text is not one whole reply.
fn parse_reply_text(text: &str) -> Option<Reply> {
    let mut bytes = Vec::new();
    let mut chars = text.bytes();
    while let Some(byte) = chars.next() {
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        match chars.next()? {
            b'r' => bytes.push(b'\r'),
            b'n' => bytes.push(b'\n'),
            b't' => bytes.push(b'\t'),
            b'\\' => bytes.push(b'\\'),
            b'x' => {
                let high = char::from(chars.next()?).to_digit(16)?;
                let low = char::from(chars.next()?).to_digit(16)?;
                bytes.push(u8::try_from(high * 16 + low).ok()?);
            }
            _ => return None,
        }
    }
    match parse_reply(&bytes, &Limits::standard()) {
        Ok(Some((reply, used))) if used == bytes.len() => Some(reply),
        _ => None,
    }
}

/// Whether `got` agrees with `expected` under `marker`.
fn agree(marker: Marker, expected: &Reply, got: &Reply) -> bool {
    match marker {
        Marker::Exact => expected == got,
        Marker::Tolerance(tolerance) => within(tolerance, expected, got),
        Marker::Shape => same_shape(expected, got),
        Marker::Unordered => sorted(expected) == sorted(got),
    }
}

fn within(tolerance: i64, expected: &Reply, got: &Reply) -> bool {
    match (expected, got) {
        (Reply::Integer(expected), Reply::Integer(got)) => {
            (i128::from(*expected) - i128::from(*got)).abs() <= i128::from(tolerance)
        }
        (Reply::Array(expected), Reply::Array(got)) | (Reply::Set(expected), Reply::Set(got)) => {
            expected.len() == got.len()
                && expected
                    .iter()
                    .zip(got)
                    .all(|(expected, got)| within(tolerance, expected, got))
        }
        _ => expected == got,
    }
}

fn same_shape(expected: &Reply, got: &Reply) -> bool {
    match (expected, got) {
        (Reply::Map(expected), Reply::Map(got)) => {
            expected.len() == got.len()
                && expected.iter().zip(got).all(|(expected, got)| {
                    same_shape(&expected.0, &got.0) && same_shape(&expected.1, &got.1)
                })
        }
        (Reply::Array(expected), Reply::Array(got)) | (Reply::Set(expected), Reply::Set(got)) => {
            expected.len() == got.len()
                && expected
                    .iter()
                    .zip(got)
                    .all(|(expected, got)| same_shape(expected, got))
        }
        _ => std::mem::discriminant(expected) == std::mem::discriminant(got),
    }
}

/// The reply with every array's items sorted (by their RESP text), recursively.
fn sorted(reply: &Reply) -> Reply {
    match reply {
        Reply::Array(items) | Reply::Set(items) => {
            let mut items: Vec<Reply> = items.iter().map(sorted).collect();
            items.sort_by_key(|item| reply_text_as(item, Protocol::Resp3));
            match reply {
                Reply::Set(_) => Reply::Set(items),
                _ => Reply::Array(items),
            }
        }
        Reply::Map(pairs) => {
            let mut pairs: Vec<(Reply, Reply)> = pairs
                .iter()
                .map(|(field, value)| (sorted(field), sorted(value)))
                .collect();
            pairs.sort_by_key(|(field, _)| reply_text_as(field, Protocol::Resp3));
            Reply::Map(pairs)
        }
        other => other.clone(),
    }
}

/// A reply as a client speaking `protocol` would read it back: in RESP3 both nulls are `_`.
fn as_received(reply: Reply, protocol: Protocol) -> Reply {
    if protocol == Protocol::Resp2 {
        // `Model::exec` already answered in RESP2's types, which read back unchanged.
        return reply;
    }
    let mut bytes = Vec::new();
    encode_reply_as(&reply, protocol, &mut bytes);
    // Our own replies may be longer than a request may (HRANDFIELD with a huge count).
    let limits = Limits {
        array_len_max: usize::MAX,
        ..Limits::standard()
    };
    match parse_reply(&bytes, &limits) {
        Ok(Some((reply, _))) => reply,
        other => panic!("the model's reply does not parse back: {other:?}"),
    }
}

/// Writes a line to the stderr handle itself. The print macros of a passing test are
/// captured by the test harness; the summary lines should be seen on every run.
fn visible(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One command whose replies differ.
struct Difference {
    line: usize,
    command: String,
    expected: Reply,
    got: Reply,
}

/// Compares replies per command, prints the summary line and every difference (to stderr,
/// which the test harness shows when the test fails), and returns whether the file agrees.
fn report(
    what: &str,
    protocol: Protocol,
    corpus: &Corpus,
    expected: &[Reply],
    got: &[Reply],
) -> bool {
    let commands: Vec<&CorpusCommand> = corpus.commands().collect();
    let mut differences = Vec::new();
    for ((command, expected), got) in commands.iter().zip(expected).zip(got) {
        if !agree(command.marker, expected, got) {
            differences.push(Difference {
                line: command.line,
                command: command.text.clone(),
                expected: expected.clone(),
                got: got.clone(),
            });
        }
    }
    let summary = format!(
        "corpus {}.redis: {} commands, {} agree ({what})",
        corpus.name,
        commands.len(),
        commands.len() - differences.len()
    );
    visible(&summary);
    for difference in &differences {
        visible(&format!(
            "  tests/corpus/{}.redis:{}: {}\n    expected: {}\n    got:      {}",
            corpus.name,
            difference.line,
            difference.command,
            golden_text(&difference.expected, protocol),
            golden_text(&difference.got, protocol)
        ));
    }
    differences.is_empty()
}

// ---------------------------------------------------------------------------------------------
// Running a corpus

/// The model side: one node and a session per corpus client.
struct ModelTarget {
    model: Model,
    sessions: Vec<Session>,
    protocol: Protocol,
}

/// `HELLO 3`, sent first on every connection of a RESP3 run.
fn hello3() -> Vec<Vec<u8>> {
    vec![b"HELLO".to_vec(), b"3".to_vec()]
}

impl ModelTarget {
    fn speaking(protocol: Protocol) -> ModelTarget {
        ModelTarget {
            model: Model::new(NodeConfig::standalone(MODEL_SEED)),
            sessions: Vec::new(),
            protocol,
        }
    }

    fn exec(&mut self, now_ms: u64, client: usize, argv: &[Vec<u8>]) -> Reply {
        while self.sessions.len() <= client {
            let address = format!("127.0.0.1:{}", 40_000 + self.sessions.len());
            let mut session = self.model.connect(&address);
            if self.protocol == Protocol::Resp3 {
                self.model.exec(now_ms, &mut session, &hello3());
            }
            self.sessions.push(session);
        }
        let session = &mut self.sessions[client];
        let reply = self.model.exec(now_ms, session, argv);
        // Read back as the golden file holds it: a RESP3 run's golden text is RESP3, where
        // both nulls are `_` (even from a connection that went back to RESP2); a RESP2 run's
        // is RESP2 unless HELLO switched the connection to RESP3.
        match self.protocol {
            Protocol::Resp3 => as_received(reply, Protocol::Resp3),
            Protocol::Resp2 => as_received(reply, session.resp),
        }
    }
}

/// The real side: a connection per corpus client, opened on first use.
struct RedisTarget<'a> {
    server: &'a RedisServer,
    clients: Vec<RedisClient>,
    protocol: Protocol,
}

impl<'a> RedisTarget<'a> {
    fn new(server: &'a RedisServer, protocol: Protocol) -> RedisTarget<'a> {
        RedisTarget {
            server,
            clients: Vec::new(),
            protocol,
        }
    }

    fn exec(&mut self, client: usize, argv: &[Vec<u8>], place: &str) -> Reply {
        while self.clients.len() <= client {
            let connection = self
                .server
                .connect()
                .unwrap_or_else(|error| panic!("{place}: cannot connect to Redis: {error}"));
            let mut connection = connection;
            if self.protocol == Protocol::Resp3 {
                connection
                    .command(&hello3())
                    .unwrap_or_else(|error| panic!("{place}: HELLO 3 failed: {error}"));
            }
            self.clients.push(connection);
        }
        let reply = self.clients[client]
            .command(argv)
            .unwrap_or_else(|error| panic!("{place}: real Redis failed: {error}"));
        // A RESP3 run compares RESP3 text, where both nulls are `_` (see `ModelTarget`).
        match self.protocol {
            Protocol::Resp3 => as_received(reply, Protocol::Resp3),
            Protocol::Resp2 => reply,
        }
    }
}

/// Whether an `INFO server` reply comes from a real redis-server 7.0.x: its version, or why
/// not. The model answers `redis_version:7.0.15` too, but names itself in `executable`, so
/// both fields are read: golden replies recorded from the model would compare the model
/// with itself.
fn real_redis_7_0(info: &str) -> Result<String, String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let version = field("redis_version").ok_or("INFO server has no redis_version")?;
    if !version.starts_with("7.0.") {
        return Err(format!("redis_version {version}, not 7.0.x"));
    }
    match field("executable") {
        Some(executable) if executable.ends_with("ratelab") => Err(format!(
            "the server is ratelab's model (executable:{executable}), not redis-server"
        )),
        _ => Ok(version.to_owned()),
    }
}

/// Panics unless `server` is a real redis-server 7.0.x; returns its version.
fn require_real_redis_7_0(server: &RedisServer, what: &str) -> String {
    let mut client = server
        .connect()
        .unwrap_or_else(|error| panic!("{what}: cannot connect to Redis: {error}"));
    let info = match client.command(&["INFO", "server"]) {
        Ok(Reply::Bulk(text)) => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("{what}: INFO server answered {other:?}"),
    };
    real_redis_7_0(&info).unwrap_or_else(|why| panic!("{what} refuses this server: {why}"))
}

/// The wall clock in Unix ms.
fn wall_clock_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_millis()).expect("ms since 1970 fit u64")
}

/// Real time for a corpus run: a base in Unix ms, plus the sleeps so far, kept on schedule.
struct RealClock {
    base_ms: u64,
    start: Instant,
    slept_ms: u64,
}

impl RealClock {
    fn start() -> RealClock {
        RealClock {
            base_ms: wall_clock_ms(),
            start: Instant::now(),
            slept_ms: 0,
        }
    }

    /// Sleeps until the run's start plus every sleep so far.
    fn sleep(&mut self, ms: u64) {
        self.slept_ms += ms;
        let target = self.start + Duration::from_millis(self.slept_ms);
        let now = Instant::now();
        if target > now {
            std::thread::sleep(target - now);
        }
    }

    /// The harness's time, as placeholders see it.
    fn harness_ms(&self) -> u64 {
        self.base_ms + self.slept_ms
    }

    /// The wall clock, on the same base (what the real server sees now).
    fn wall_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).expect("fits u64");
        self.base_ms + elapsed
    }
}

/// Runs a corpus on the model alone, the clock at `base_ms` plus the sleeps.
fn run_on_model(corpus: &Corpus, base_ms: u64, protocol: Protocol) -> Vec<Reply> {
    let mut target = ModelTarget::speaking(protocol);
    let mut now_ms = base_ms;
    let mut client = 0;
    let mut replies = Vec::new();
    for step in &corpus.steps {
        match step {
            Step::Sleep(ms) => now_ms += ms,
            Step::Client(index) => client = *index,
            Step::Command(command) => {
                let argv = substitute(&command.argv, now_ms);
                replies.push(target.exec(now_ms, client, &argv));
            }
        }
    }
    replies
}

/// Runs a corpus on real Redis and, when `model` is given, on the model too (its clock
/// following the wall clock). Returns the base time, Redis's replies and the model's.
fn run_live(
    corpus: &Corpus,
    server: &RedisServer,
    protocol: Protocol,
    mut model: Option<&mut ModelTarget>,
) -> (u64, Vec<Reply>, Vec<Reply>) {
    let mut redis = RedisTarget::new(server, protocol);
    let mut clock = RealClock::start();
    let mut client = 0;
    let mut redis_replies = Vec::new();
    let mut model_replies = Vec::new();
    for step in &corpus.steps {
        match step {
            Step::Sleep(ms) => clock.sleep(*ms),
            Step::Client(index) => client = *index,
            Step::Command(command) => {
                let place = format!("tests/corpus/{}.redis:{}", corpus.name, command.line);
                let argv = substitute(&command.argv, clock.harness_ms());
                redis_replies.push(redis.exec(client, &argv, &place));
                if let Some(model) = model.as_deref_mut() {
                    model_replies.push(model.exec(clock.wall_ms(), client, &argv));
                }
            }
        }
    }
    (clock.base_ms, redis_replies, model_replies)
}

// ---------------------------------------------------------------------------------------------
// Golden files

/// A golden file: the base time and, per command, its line, text and reply.
struct Golden {
    base_ms: u64,
    entries: Vec<(usize, String, Reply)>,
}

/// Where a corpus's golden replies live: `tests/golden/<family>.golden` for RESP2,
/// `tests/golden/resp3/<family>.golden` for connections that sent `HELLO 3`.
fn golden_path(corpus: &Corpus, protocol: Protocol) -> PathBuf {
    let dir = match protocol {
        Protocol::Resp2 => golden_dir(),
        Protocol::Resp3 => golden_dir().join("resp3"),
    };
    dir.join(format!("{}.golden", corpus.name))
}

fn write_golden(corpus: &Corpus, protocol: Protocol, base_ms: u64, replies: &[Reply]) {
    let mut out = String::new();
    let how = match protocol {
        Protocol::Resp2 => "",
        Protocol::Resp3 => ", every connection after HELLO 3",
    };
    writeln!(
        out,
        "# Replies of real Redis 7.0.15 to tests/corpus/{}.redis{how}. Generated: do not edit.\n\
         # Re-record: RATELAB_RECORD=1 cargo test -p ratelab --test redis differential\n\
         base_ms {base_ms}",
        corpus.name
    )
    .expect("writing to a String");
    for (command, reply) in corpus.commands().zip(replies) {
        writeln!(out, "> {} {}", command.line, command.text).expect("writing to a String");
        writeln!(out, "< {}", golden_text(reply, protocol)).expect("writing to a String");
    }
    let path = golden_path(corpus, protocol);
    std::fs::create_dir_all(path.parent().expect("a golden file has a directory"))
        .expect("tests/golden can be created");
    std::fs::write(path, out).expect("the golden file can be written");
}

fn read_golden(corpus: &Corpus, protocol: Protocol) -> Result<Golden, String> {
    let path = golden_path(corpus, protocol);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        format!(
            "{}: {error} (record it with RATELAB_RECORD=1)",
            path.display()
        )
    })?;
    let mut base_ms = None;
    let mut entries = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let place = format!("{}:{}", path.display(), index + 1);
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(value) = line.strip_prefix("base_ms ") {
            base_ms = Some(value.parse().map_err(|_| format!("{place}: bad base_ms"))?);
        } else if let Some(rest) = line.strip_prefix("> ") {
            let (number, command) = rest.split_once(' ').unwrap_or((rest, ""));
            let number = number
                .parse()
                .map_err(|_| format!("{place}: bad line number"))?;
            pending = Some((number, command.to_owned()));
        } else if let Some(rest) = line.strip_prefix("< ") {
            let (number, command) = pending
                .take()
                .ok_or_else(|| format!("{place}: a reply without a command"))?;
            let reply =
                parse_reply_text(rest).ok_or_else(|| format!("{place}: unreadable reply"))?;
            entries.push((number, command, reply));
        } else {
            return Err(format!("{place}: unexpected line"));
        }
    }
    let base_ms = base_ms.ok_or_else(|| format!("{}: no base_ms line", path.display()))?;
    Ok(Golden { base_ms, entries })
}

/// Whether a golden file still belongs to its corpus (same commands on the same lines).
fn golden_matches_corpus(corpus: &Corpus, golden: &Golden) -> Result<(), String> {
    let commands: Vec<&CorpusCommand> = corpus.commands().collect();
    if commands.len() != golden.entries.len() {
        return Err(format!(
            "the golden file of {} has {} replies for {} commands: re-record it",
            corpus.name,
            golden.entries.len(),
            commands.len()
        ));
    }
    for (command, (line, text, _)) in commands.iter().zip(&golden.entries) {
        if command.line != *line || command.text != *text {
            return Err(format!(
                "the golden file of {} is stale at corpus line {}: re-record it",
                corpus.name, command.line
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Records (with `RATELAB_RECORD=1`) and replays the golden replies of every corpus file in
/// one protocol; panics listing every differing file.
fn check_golden(protocol: Protocol) {
    let corpora = load_corpus();
    if std::env::var("RATELAB_RECORD").is_ok_and(|value| value == "1") {
        let _turn = real_redis_turn();
        let server = RedisServer::start()
            .unwrap_or_else(|error| panic!("record mode needs a real Redis: {error}"));
        let version = require_real_redis_7_0(&server, "record mode");
        visible(&format!("recording from redis-server {version}"));
        // `RATELAB_RECORD_FILES="resp3 lists"` re-records only those files.
        let only = std::env::var("RATELAB_RECORD_FILES").unwrap_or_default();
        let chosen = |corpus: &&Corpus| {
            only.is_empty() || only.split_whitespace().any(|name| name == corpus.name)
        };
        for corpus in corpora.iter().filter(chosen) {
            let (base_ms, replies, _) = run_live(corpus, &server, protocol, None);
            write_golden(corpus, protocol, base_ms, &replies);
            visible(&format!(
                "recorded {}: {} replies",
                golden_path(corpus, protocol).display(),
                replies.len()
            ));
        }
    }
    let what = match protocol {
        Protocol::Resp2 => "golden",
        Protocol::Resp3 => "golden, RESP3",
    };
    let mut failed_files = Vec::new();
    let mut total = 0;
    for corpus in &corpora {
        let golden = match read_golden(corpus, protocol).and_then(|golden| {
            golden_matches_corpus(corpus, &golden)?;
            Ok(golden)
        }) {
            Ok(golden) => golden,
            Err(problem) => {
                visible(&problem);
                failed_files.push(corpus.name.as_str());
                continue;
            }
        };
        let expected: Vec<Reply> = golden.entries.into_iter().map(|entry| entry.2).collect();
        let got = run_on_model(corpus, golden.base_ms, protocol);
        total += expected.len();
        if !report(what, protocol, corpus, &expected, &got) {
            failed_files.push(corpus.name.as_str());
        }
    }
    visible(&format!("corpus total ({what}): {total} commands"));
    assert!(
        failed_files.is_empty(),
        "the model differs from the recorded Redis replies ({what}) in {failed_files:?}: \
         every differing line is listed above"
    );
}

#[test]
fn corpus_matches_golden_replies() {
    check_golden(Protocol::Resp2);
}

/// The same corpus with every connection in RESP3 (`HELLO 3` first), against replies real
/// Redis gave in RESP3: maps, sets, doubles, nulls, verbatim strings, and scripts' replies.
#[test]
fn corpus_matches_golden_replies_resp3() {
    check_golden(Protocol::Resp3);
}

fn check_live(protocol: Protocol, test_name: &str) {
    let _turn = real_redis_turn();
    let Some(server) = real_redis_or_skip(test_name) else {
        return;
    };
    require_real_redis_7_0(&server, "the live comparison");
    let mut failed_files = Vec::new();
    let corpora = load_corpus();
    for corpus in &corpora {
        let mut model = ModelTarget::speaking(protocol);
        let (_, expected, got) = run_live(corpus, &server, protocol, Some(&mut model));
        if !report("live", protocol, corpus, &expected, &got) {
            failed_files.push(corpus.name.as_str());
        }
    }
    assert!(
        failed_files.is_empty(),
        "the model differs from live Redis ({protocol:?}) in {failed_files:?}: every \
         differing line is listed above"
    );
}

#[test]
fn corpus_matches_live_redis() {
    check_live(Protocol::Resp2, "corpus_matches_live_redis");
}

#[test]
fn corpus_matches_live_redis_resp3() {
    check_live(Protocol::Resp3, "corpus_matches_live_redis_resp3");
}

/// A small deterministic generator for the mutations (splitmix64), so a failure replays.
struct Mutator {
    state: u64,
}

impl Mutator {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        let len = usize::try_from(self.next() % 24).expect("small");
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// Hostile replacements for one argument: numbers at and past every edge, non-numbers that
/// look like numbers, empty and long strings.
const HOSTILE_ARGUMENTS: &[&str] = &[
    "",
    "0",
    "-1",
    "1",
    "-0",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999",
    "1000000",
    "-1000000",
    "1e308",
    "1e400",
    "-1e400",
    "inf",
    "-inf",
    "nan",
    "0x10",
    " 1",
    "1 ",
    "+1",
    "1.5",
    "(1",
    "[a",
    "-",
    "+",
    "*",
    "NX",
    "XX",
    "GT",
    "LT",
    "EX",
    "PX",
    "KEEPTTL",
    "GET",
    "LIMIT",
    "WITHSCORES",
    "BYSCORE",
    "REV",
    "COUNT",
    "return redis.call('get', KEYS[1])",
];

/// Every mutation of one command: each proper prefix, each argument replaced by each hostile
/// value and by random bytes, and the command with extra arguments.
fn mutations(argv: &[Vec<u8>], mutator: &mut Mutator) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for len in 1..argv.len() {
        out.push(argv[..len].to_vec());
    }
    for position in 1..argv.len() {
        for hostile in HOSTILE_ARGUMENTS {
            let mut mutated = argv.to_vec();
            mutated[position] = hostile.as_bytes().to_vec();
            out.push(mutated);
        }
        let mut mutated = argv.to_vec();
        mutated[position] = mutator.random_bytes();
        out.push(mutated);
        let mut mutated = argv.to_vec();
        mutated[position] = vec![b'x'; 10_000];
        out.push(mutated);
    }
    for extra in ["", "1", "NX", "-9223372036854775808"] {
        let mut mutated = argv.to_vec();
        mutated.push(extra.as_bytes().to_vec());
        out.push(mutated);
    }
    out
}

#[test]
fn mutated_corpus_commands_do_not_panic_the_model() {
    mutate_corpora(Protocol::Resp2, &load_corpus());
}

/// The mutations again with every connection in RESP3, over the files whose commands build
/// protocol-dependent replies (score pairs, maps, sets, scripts under `redis.setresp(3)`).
#[test]
fn mutated_corpus_commands_do_not_panic_the_model_resp3() {
    let corpora: Vec<Corpus> = load_corpus()
        .into_iter()
        .filter(|corpus| ["hashes", "resp3", "scripting", "zsets"].contains(&corpus.name.as_str()))
        .collect();
    assert_eq!(corpora.len(), 4, "a RESP3 mutation corpus is missing");
    mutate_corpora(Protocol::Resp3, &corpora);
}

/// Runs every corpus command and its mutations on the model, connections speaking
/// `protocol`; fails listing every input that panicked.
fn mutate_corpora(protocol: Protocol, corpora: &[Corpus]) {
    let mut mutator = Mutator { state: 7 };
    let mut panics = Vec::new();
    let mut executed = 0usize;
    for corpus in corpora {
        // The real corpus runs alongside, so the mutations meet keys of every type.
        let mut target = ModelTarget::speaking(protocol);
        let mut now_ms = 1_700_000_000_000u64;
        let mut client = 0;
        // Inside a corpus transaction mutations would only be queued, and a rejected one
        // would abort the corpus's own EXEC: mutate only outside.
        let mut in_multi = [false; CLIENTS_MAX];
        for step in &corpus.steps {
            let command = match step {
                Step::Sleep(ms) => {
                    now_ms += ms;
                    continue;
                }
                Step::Client(index) => {
                    client = *index;
                    continue;
                }
                Step::Command(command) => command,
            };
            let argv = substitute(&command.argv, now_ms);
            // Commands that would wipe or move the state the mutations should meet are not
            // mutated, nor the busy-loop script (each mutation would spin it again); they
            // still run as written below.
            let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
            let mutate = !in_multi[client]
                && !command.text.contains("while")
                && !matches!(
                    name.as_str(),
                    "flushall" | "flushdb" | "multi" | "swapdb" | "select" | "shutdown"
                );
            match name.as_str() {
                "multi" => in_multi[client] = true,
                "exec" | "discard" | "reset" => in_multi[client] = false,
                _ => {}
            }
            if mutate {
                for mutated in mutations(&argv, &mut mutator) {
                    executed += 1;
                    let outcome = catch_unwind(AssertUnwindSafe(|| {
                        target.exec(now_ms, client, &mutated);
                    }));
                    if outcome.is_err() {
                        panics.push(format!(
                            "tests/corpus/{}.redis:{}: {:?}",
                            corpus.name,
                            command.line,
                            mutated
                                .iter()
                                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                                .collect::<Vec<_>>()
                        ));
                        // A panic may have left the model half-changed: start again.
                        target = ModelTarget::speaking(protocol);
                    }
                }
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                target.exec(now_ms, client, &argv);
            }));
            if outcome.is_err() {
                panics.push(format!(
                    "tests/corpus/{}.redis:{}: {}",
                    corpus.name, command.line, command.text
                ));
                target = ModelTarget::speaking(protocol);
            }
        }
    }
    visible(&format!(
        "mutations ({protocol:?}): {executed} commands run on the model"
    ));
    assert!(
        panics.is_empty(),
        "{} inputs panicked the model:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

#[test]
fn only_real_redis_7_0_may_record_golden_replies() {
    // Goal: golden replies come from redis-server 7.0.x, never from the model (which also
    // says 7.0.15) or another version. Method: the model's own INFO server is refused (it
    // names itself in `executable`); a real 7.0 INFO is accepted; 7.2 and a reply without a
    // version are refused.
    let mut model = ModelTarget::speaking(Protocol::Resp2);
    let info = match model.exec(1_000, 0, &[b"INFO".to_vec(), b"server".to_vec()]) {
        Reply::Bulk(text) => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("INFO server answered {other:?}"),
    };
    let refused = real_redis_7_0(&info).expect_err("the model must be refused");
    assert!(refused.contains("model"), "{refused}");
    let real = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nexecutable:/usr/bin/redis-server\r\n";
    assert_eq!(real_redis_7_0(real), Ok("7.0.15".to_owned()));
    assert!(real_redis_7_0(&real.replace("7.0.15", "7.2.4")).is_err());
    assert!(real_redis_7_0("# Server\r\n").is_err());
}

#[test]
fn harness_helpers_behave() {
    // Placeholders.
    assert_eq!(
        substitute_text("$NOW_S+100", 1_700_000_000_500),
        "1700000100"
    );
    assert_eq!(
        substitute_text("$NOW_MS-500", 1_700_000_000_500),
        "1700000000000"
    );
    assert_eq!(substitute_text("a$NOW_Sb", 2_000), "a2b");
    assert_eq!(substitute_text("$NOW_X", 2_000), "$NOW_X");
    // Markers.
    assert_eq!(
        split_marker("~ PTTL k", "t").0,
        Marker::Tolerance(TOLERANCE_MS)
    );
    assert_eq!(split_marker("~ TTL k", "t").0, Marker::Tolerance(1));
    assert_eq!(
        split_marker("~7 EVAL x 0", "t"),
        (Marker::Tolerance(7), "EVAL x 0")
    );
    assert_eq!(split_marker("? TIME", "t"), (Marker::Shape, "TIME"));
    assert_eq!(split_marker("GET k", "t"), (Marker::Exact, "GET k"));
    // Comparison.
    let int = Reply::Integer;
    assert!(agree(Marker::Tolerance(1), &int(99), &int(100)));
    assert!(!agree(Marker::Tolerance(1), &int(98), &int(100)));
    assert!(!agree(Marker::Exact, &int(99), &int(100)));
    let pair = |a: &str, b: &str| {
        Reply::Array(vec![
            Reply::Bulk(a.as_bytes().to_vec()),
            Reply::Bulk(b.as_bytes().to_vec()),
        ])
    };
    assert!(agree(Marker::Shape, &pair("1", "2"), &pair("3", "4")));
    assert!(!agree(Marker::Shape, &pair("1", "2"), &int(1)));
    assert!(agree(Marker::Unordered, &pair("a", "b"), &pair("b", "a")));
    assert!(!agree(Marker::Exact, &pair("a", "b"), &pair("b", "a")));
    // Reply text round trip, binary included.
    for reply in [
        Reply::Bulk(vec![0, b'\r', b'\\', 0xff]),
        Reply::Error("ERR x".to_owned()),
        Reply::NilArray,
        pair("a", ""),
    ] {
        assert_eq!(parse_reply_text(&reply_text(&reply)), Some(reply));
    }
    assert_eq!(parse_reply_text("+OK"), None);
}
