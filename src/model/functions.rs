//! Redis Functions (7.0): libraries of Lua functions loaded with `FUNCTION LOAD`, called with
//! `FCALL` / `FCALL_RO`, listed, deleted, flushed, dumped and restored.
//!
//! [`Library`] is what a node keeps of its functions: each library's name and code and what
//! its code registered (names, descriptions, flags). It is plain data and `Clone`, so a
//! restart with persistence can carry it to the new node, while the script cache (the EVAL
//! side) never travels. The compiled callbacks live in the script host's second Lua state
//! (`script::FunctionEngine`), which is rebuilt from the library's code whenever it does not
//! match the library it serves (a fresh node, a restore).
//!
//! Order: libraries are listed by name and functions by name within a library (Redis lists
//! them in hash order; its tests compare them as sets or one at a time).
//!
//! `FUNCTION DUMP`'s payload is the model's own (a header, each library's code, a version and
//! a checksum): it round-trips through `FUNCTION RESTORE` here, and a payload from real Redis
//! or a corrupted one is refused with Redis's `DUMP payload version or checksum are wrong`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::cmd::is_opt;
use super::command::{NOSCRIPT, READONLY, Spec, session};
use super::reply::{Reply, err, ok, sanitize};
use super::script::{self, lossy_text};
use super::{Model, Session};

/// One flag a function may be registered with, in Redis's order (FUNCTION LIST prints them
/// in this order).
pub const FLAG_NAMES: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// A function's flags (`redis.register_function{..., flags={...}}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionFlags {
    /// `no-writes`: write commands are refused; FCALL_RO may call it.
    pub no_writes: bool,
    /// `allow-oom`: runs even past `maxmemory` (the model has no memory limit for data).
    pub allow_oom: bool,
    /// `allow-stale`: runs on a stale replica.
    pub allow_stale: bool,
    /// `no-cluster`: refused in cluster mode.
    pub no_cluster: bool,
    /// `allow-cross-slot-keys`: may touch keys of several slots (of this node).
    pub allow_cross_slot: bool,
}

impl FunctionFlags {
    /// Sets the flag named `name` (case-insensitive, as Redis compares them); `false` if
    /// there is no such flag.
    pub fn set(&mut self, name: &[u8]) -> bool {
        let lower = name.to_ascii_lowercase();
        match lower.as_slice() {
            b"no-writes" => self.no_writes = true,
            b"allow-oom" => self.allow_oom = true,
            b"allow-stale" => self.allow_stale = true,
            b"no-cluster" => self.no_cluster = true,
            b"allow-cross-slot-keys" => self.allow_cross_slot = true,
            _ => return false,
        }
        true
    }

    /// The names of the flags that are set, in Redis's order.
    pub fn names(&self) -> Vec<&'static str> {
        let set = [
            self.no_writes,
            self.allow_oom,
            self.allow_stale,
            self.no_cluster,
            self.allow_cross_slot,
        ];
        FLAG_NAMES
            .iter()
            .zip(set)
            .filter_map(|(name, on)| on.then_some(*name))
            .collect()
    }
}

/// One registered function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The name as registered (FCALL finds it case-insensitively).
    pub name: String,
    /// `description=` of the table form, if given.
    pub description: Option<Vec<u8>>,
    /// Its flags.
    pub flags: FunctionFlags,
}

/// One library: its code and what the code registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryInfo {
    /// `name=` of the `#!lua` line (case-sensitive).
    pub name: String,
    /// The whole code as loaded, the `#!lua` line included (FUNCTION LIST WITHCODE).
    pub code: Vec<u8>,
    /// The functions it registered, by name.
    pub functions: BTreeMap<String, FunctionInfo>,
}

/// A node's functions. Plain data: cloning it is what a restart with persistence keeps.
#[derive(Clone, Debug, Default)]
pub struct Library {
    /// Libraries by name.
    libraries: BTreeMap<String, LibraryInfo>,
    /// Lowercase function name to its library's name (function names are unique per node,
    /// case-insensitively, as in Redis's `functions` dict).
    by_function: BTreeMap<String, String>,
    /// Changes with every change of the libraries (a process-wide counter, so two different
    /// sets of libraries never share one): the compiled callbacks record the stamp they were
    /// built for, and are rebuilt from the code when it differs. Equality is all it is used
    /// for; it reaches no reply.
    stamp: u64,
}

static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

impl Library {
    /// No libraries.
    pub fn new() -> Library {
        Library::default()
    }

    /// The libraries, by name.
    pub fn libraries(&self) -> impl Iterator<Item = &LibraryInfo> {
        self.libraries.values()
    }

    /// How many libraries and functions there are.
    pub fn counts(&self) -> (usize, usize) {
        (self.libraries.len(), self.by_function.len())
    }

    /// Whether a function of this name (any case) is loaded.
    pub fn contains_function(&self, name: &str) -> bool {
        self.by_function.contains_key(&name.to_ascii_lowercase())
    }

    /// The function called `name` (any case) and its library's name.
    pub fn function(&self, name: &[u8]) -> Option<(&LibraryInfo, &FunctionInfo)> {
        let lower = String::from_utf8(name.to_ascii_lowercase()).ok()?;
        let library = self.libraries.get(self.by_function.get(&lower)?)?;
        let function = library
            .functions
            .values()
            .find(|function| function.name.eq_ignore_ascii_case(&lower))?;
        Some((library, function))
    }

    /// The stamp of this set of libraries (see the field).
    pub(crate) fn stamp(&self) -> u64 {
        self.stamp
    }

    fn touch(&mut self) {
        self.stamp = NEXT_STAMP.fetch_add(1, Ordering::Relaxed);
    }

    fn unlink(&mut self, name: &str) -> Option<LibraryInfo> {
        let library = self.libraries.remove(name)?;
        for function in library.functions.keys() {
            self.by_function.remove(&function.to_ascii_lowercase());
        }
        Some(library)
    }

    fn link(&mut self, library: LibraryInfo) {
        for function in library.functions.keys() {
            self.by_function
                .insert(function.to_ascii_lowercase(), library.name.clone());
        }
        self.libraries.insert(library.name.clone(), library);
    }

    /// The first function of `library` that another library already has.
    fn collision(&self, library: &LibraryInfo) -> Option<String> {
        library
            .functions
            .keys()
            .find(|name| self.contains_function(name))
            .cloned()
    }
}

/// Redis's `functionsVerifyName`: letters, digits and `_`, at least one.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
}

/// The error for a bad library or function name (Redis uses the library wording for both).
pub const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// What the `#!` line of a library says, and the code after it.
#[derive(Debug, PartialEq, Eq)]
pub struct Metadata {
    /// `#!<engine>`.
    pub engine: Vec<u8>,
    /// `name=`.
    pub name: Vec<u8>,
    /// The code from the line feed that ends the `#!` line (kept, so line numbers hold).
    pub body_start: usize,
}

/// Redis's `functionExtractLibMetaData`.
pub fn parse_metadata(code: &[u8]) -> Result<Metadata, String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".to_owned());
    }
    let Some(end) = code.iter().position(|&byte| byte == b'\n') else {
        return Err("Invalid library metadata".to_owned());
    };
    let parts = match split_args(&code[..end]) {
        Some(parts) if !parts.is_empty() => parts,
        _ => return Err("Invalid library metadata".to_owned()),
    };
    let engine = parts[0].get(2..).unwrap_or_default().to_vec();
    let mut name = None;
    for part in &parts[1..] {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(
                    "Invalid metadata value, name argument was given multiple times".to_owned(),
                );
            }
            name = Some(part[5..].to_vec());
            continue;
        }
        return Err(format!(
            "Invalid metadata value given: {}",
            lossy_text(part)
        ));
    }
    let Some(name) = name else {
        return Err("Library name was not given".to_owned());
    };
    Ok(Metadata {
        engine,
        name,
        body_start: end,
    })
}

/// `sdssplitargs`, enough for a `#!` line: whitespace separates, `"..."` with backslash
/// escapes (`\n \r \t \b \a \xHH` and any other character as itself), `'...'` with `\'`; a
/// closing quote must be followed by whitespace or the end. `None`: unbalanced quotes.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        while pos < line.len() && line[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos == line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            let Some(&byte) = line.get(pos) else {
                if quote.is_some() {
                    return None;
                }
                break;
            };
            match quote {
                None if byte.is_ascii_whitespace() => break,
                None if byte == b'"' || byte == b'\'' => quote = Some(byte),
                None => current.push(byte),
                Some(b'"') if byte == b'\\' && pos + 1 < line.len() => {
                    pos += 1;
                    let escaped = line[pos];
                    let hex = |b: u8| (b as char).to_digit(16);
                    if escaped == b'x'
                        && pos + 2 < line.len()
                        && let (Some(high), Some(low)) = (hex(line[pos + 1]), hex(line[pos + 2]))
                    {
                        current.push(u8::try_from(high * 16 + low).expect("two hex digits"));
                        pos += 2;
                    } else {
                        current.push(match escaped {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                }
                Some(b'\'') if byte == b'\\' && line.get(pos + 1) == Some(&b'\'') => {
                    pos += 1;
                    current.push(b'\'');
                }
                Some(open) if byte == open => {
                    if line
                        .get(pos + 1)
                        .is_some_and(|next| !next.is_ascii_whitespace())
                    {
                        return None;
                    }
                    pos += 1;
                    break;
                }
                Some(_) => current.push(byte),
            }
            pos += 1;
        }
        args.push(current);
    }
}

/// The Functions commands.
pub static COMMANDS: &[Spec] = &[
    session("fcall", -3, NOSCRIPT, fcall),
    session("fcall_ro", -3, NOSCRIPT | READONLY, fcall_ro),
    session("function", -2, NOSCRIPT, function),
];

fn fcall(model: &mut Model, session: &mut Session, now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    script::fcall(model, session, now_ms, argv, false)
}

fn fcall_ro(model: &mut Model, session: &mut Session, now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    script::fcall(model, session, now_ms, argv, true)
}

/// FUNCTION HELP's lines, as Redis 7.0.15 sends them.
const FUNCTION_HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

/// Redis's `addReplySubcommandSyntaxError`: names the subcommand as the client typed it.
fn subcommand_syntax_error(typed: &[u8]) -> Reply {
    err(sanitize(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        lossy_text(&typed[..typed.len().min(128)])
    )))
}

fn function(model: &mut Model, _session: &mut Session, _now_ms: u64, argv: &[Vec<u8>]) -> Reply {
    script::discard_pending(model);
    let subcommand = argv[1].to_ascii_lowercase();
    let (name, arity): (&str, i64) = match subcommand.as_slice() {
        b"load" => ("load", -3),
        b"delete" => ("delete", 3),
        b"list" => ("list", -2),
        b"flush" => ("flush", -2),
        b"dump" => ("dump", 2),
        b"restore" => ("restore", -3),
        b"stats" => ("stats", 2),
        b"kill" => ("kill", 2),
        b"help" => ("help", 2),
        _ => {
            let typed = &argv[1][..argv[1].len().min(128)];
            return err(sanitize(&format!(
                "ERR unknown subcommand '{}'. Try FUNCTION HELP.",
                lossy_text(typed)
            )));
        }
    };
    let argc = i64::try_from(argv.len()).unwrap_or(i64::MAX);
    if (arity > 0 && argc != arity) || argc < -arity {
        return err(format!(
            "ERR wrong number of arguments for 'function|{name}' command"
        ));
    }
    match name {
        "load" => load(model, argv),
        "delete" => {
            let Ok(library) = std::str::from_utf8(&argv[2]) else {
                return err("ERR Library not found");
            };
            if model.functions.unlink(library).is_none() {
                return err("ERR Library not found");
            }
            model.functions.touch();
            model.core.dirty += 1;
            script::functions_changed(model);
            ok()
        }
        "list" => list(model, argv),
        "flush" => {
            if argv.len() > 3 {
                return subcommand_syntax_error(&argv[1]);
            }
            if argv.len() == 3 && !is_opt(&argv[2], "sync") && !is_opt(&argv[2], "async") {
                return err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
            }
            model.functions = Library::new();
            model.functions.touch();
            model.core.dirty += 1;
            script::functions_changed(model);
            ok()
        }
        "dump" => Reply::Bulk(dump(&model.functions)),
        "restore" => restore(model, argv),
        "stats" => {
            let (libraries, functions) = model.functions.counts();
            Reply::Map(vec![
                (Reply::Bulk(b"running_script".to_vec()), Reply::Nil),
                (
                    Reply::Bulk(b"engines".to_vec()),
                    Reply::Map(vec![(
                        Reply::Bulk(b"LUA".to_vec()),
                        Reply::Map(vec![
                            (
                                Reply::Bulk(b"libraries_count".to_vec()),
                                Reply::Integer(i64::try_from(libraries).unwrap_or(i64::MAX)),
                            ),
                            (
                                Reply::Bulk(b"functions_count".to_vec()),
                                Reply::Integer(i64::try_from(functions).unwrap_or(i64::MAX)),
                            ),
                        ]),
                    )]),
                ),
            ])
        }
        // Nothing runs while this command does: a running function is killed through
        // `busy::busy_reply`, which answers without the model.
        "kill" => err(super::busy::NOTBUSY),
        _ => Reply::Array(
            FUNCTION_HELP
                .iter()
                .map(|line| Reply::Status((*line).to_owned()))
                .collect(),
        ),
    }
}

fn load(model: &mut Model, argv: &[Vec<u8>]) -> Reply {
    let mut replace = false;
    let mut position = 2;
    while position < argv.len() - 1 {
        let option = &argv[position];
        position += 1;
        if is_opt(option, "replace") {
            replace = true;
            continue;
        }
        return err(sanitize(&format!(
            "ERR Unknown option given: {}",
            lossy_text(option)
        )));
    }
    let code = &argv[position];
    match create(model, code, replace) {
        Ok(name) => {
            model.core.dirty += 1;
            Reply::Bulk(name.into_bytes())
        }
        Err(message) => err(sanitize(&format!("ERR {message}"))),
    }
}

/// Redis's `functionsCreateWithLibraryCtx` on the node's libraries: checks the metadata,
/// compiles `code`, runs it to register its functions, and links the library, or changes
/// nothing and says why.
fn create(model: &mut Model, code: &[u8], replace: bool) -> Result<String, String> {
    let (name, body_start) = prepare(code)?;
    if model.functions.libraries.contains_key(&name) && !replace {
        return Err(format!("Library '{name}' already exists"));
    }
    let library = compile(model, name, code, body_start)?;
    let mut next = model.functions.clone();
    next.unlink(&library.name);
    if let Some(name) = next.collision(&library) {
        return Err(format!("Function {name} already exists"));
    }
    let name = library.name.clone();
    next.link(library);
    next.touch();
    model.functions = next;
    script::functions_changed(model);
    Ok(name)
}

/// A library's name and where its code starts after the `#!` line, if the line is valid.
fn prepare(code: &[u8]) -> Result<(String, usize), String> {
    let metadata = parse_metadata(code)?;
    if !valid_name(&metadata.name) {
        return Err(BAD_NAME.to_owned());
    }
    if !metadata.engine.eq_ignore_ascii_case(b"lua") {
        return Err(format!(
            "Engine '{}' not found",
            lossy_text(&metadata.engine)
        ));
    }
    let name = String::from_utf8(metadata.name).expect("checked ASCII above");
    Ok((name, metadata.body_start))
}

/// Compiles and runs a library's code in the function engine to learn what it registers
/// (the engine keeps its callbacks pending until the library is linked).
fn compile(
    model: &mut Model,
    name: String,
    code: &[u8],
    body_start: usize,
) -> Result<LibraryInfo, String> {
    let functions = script::register_library(model, &code[body_start..])?;
    if functions.is_empty() {
        return Err("No functions registered".to_owned());
    }
    Ok(LibraryInfo {
        name,
        code: code.to_vec(),
        functions: functions
            .into_iter()
            .map(|function| (function.name.clone(), function))
            .collect(),
    })
}

fn list(model: &Model, argv: &[Vec<u8>]) -> Reply {
    let mut with_code = false;
    let mut pattern: Option<&[u8]> = None;
    let mut index = 2;
    while index < argv.len() {
        let argument = &argv[index];
        if !with_code && is_opt(argument, "withcode") {
            with_code = true;
            index += 1;
            continue;
        }
        if pattern.is_none() && is_opt(argument, "libraryname") {
            if index >= argv.len() - 1 {
                return err("ERR library name argument was not given");
            }
            pattern = Some(&argv[index + 1]);
            index += 2;
            continue;
        }
        return err(sanitize(&format!(
            "ERR Unknown argument {}",
            lossy_text(argument)
        )));
    }
    let bulk = |text: &str| Reply::Bulk(text.as_bytes().to_vec());
    let libraries = model
        .functions
        .libraries()
        .filter(|library| {
            pattern.is_none_or(|pattern| {
                super::cmd::keys::glob_match_nocase(pattern, library.name.as_bytes())
            })
        })
        .map(|library| {
            let functions = library
                .functions
                .values()
                .map(|function| {
                    Reply::Map(vec![
                        (bulk("name"), bulk(&function.name)),
                        (
                            bulk("description"),
                            function.description.clone().map_or(Reply::Nil, Reply::Bulk),
                        ),
                        (
                            bulk("flags"),
                            Reply::Set(
                                function
                                    .flags
                                    .names()
                                    .into_iter()
                                    .map(|flag| Reply::Status(flag.to_owned()))
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect();
            let mut fields = vec![
                (bulk("library_name"), bulk(&library.name)),
                (bulk("engine"), bulk("LUA")),
                (bulk("functions"), Reply::Array(functions)),
            ];
            if with_code {
                fields.push((bulk("library_code"), Reply::Bulk(library.code.clone())));
            }
            Reply::Map(fields)
        })
        .collect();
    Reply::Array(libraries)
}

/// The payload's first bytes: says whose format it is.
const DUMP_MAGIC: &[u8; 8] = b"ratelabF";
/// The format version, written after the libraries (where Redis writes its RDB version).
const DUMP_VERSION: u16 = 1;

/// FUNCTION DUMP: the magic, then per library its code's length (u32, little-endian) and
/// code, then the version (u16) and the first 8 bytes of the SHA1 of everything before.
pub fn dump(functions: &Library) -> Vec<u8> {
    let mut payload = DUMP_MAGIC.to_vec();
    for library in functions.libraries() {
        let len = u32::try_from(library.code.len()).unwrap_or(u32::MAX);
        payload.extend_from_slice(&len.to_le_bytes());
        payload.extend_from_slice(&library.code);
    }
    payload.extend_from_slice(&DUMP_VERSION.to_le_bytes());
    let digest = sha1_smol::Sha1::from(&payload).digest().bytes();
    payload.extend_from_slice(&digest[..8]);
    payload
}

/// The libraries' codes in a payload, if it is one of ours, intact.
fn parse_dump(payload: &[u8]) -> Option<Vec<&[u8]>> {
    let body_len = payload.len().checked_sub(10)?;
    let (body, trailer) = payload.split_at(body_len);
    let digest = sha1_smol::Sha1::from(&payload[..body_len + 2])
        .digest()
        .bytes();
    if trailer[..2] != DUMP_VERSION.to_le_bytes() || trailer[2..] != digest[..8] {
        return None;
    }
    let mut rest = body.strip_prefix(DUMP_MAGIC.as_slice())?;
    let mut codes = Vec::new();
    while !rest.is_empty() {
        let len = usize::try_from(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
        let code = rest.get(4..4 + len)?;
        codes.push(code);
        rest = &rest[4 + len..];
    }
    Some(codes)
}

fn restore(model: &mut Model, argv: &[Vec<u8>]) -> Reply {
    if argv.len() > 4 {
        return subcommand_syntax_error(&argv[1]);
    }
    #[derive(PartialEq)]
    enum Policy {
        Append,
        Replace,
        Flush,
    }
    let policy = match argv.get(3) {
        None => Policy::Append,
        Some(word) if is_opt(word, "append") => Policy::Append,
        Some(word) if is_opt(word, "replace") => Policy::Replace,
        Some(word) if is_opt(word, "flush") => Policy::Flush,
        Some(_) => {
            return err(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            );
        }
    };
    let Some(codes) = parse_dump(&argv[2]) else {
        return err("ERR DUMP payload version or checksum are wrong");
    };
    let mut restored = Library::new();
    for code in codes {
        let compiled = prepare(code).and_then(|(name, body_start)| {
            if restored.libraries.contains_key(&name) {
                return Err(format!("Library '{name}' already exists"));
            }
            compile(model, name, code, body_start)
        });
        let library = match compiled {
            Ok(library) => library,
            Err(message) => return err(sanitize(&format!("ERR {message}"))),
        };
        if let Some(name) = restored.collision(&library) {
            return err(sanitize(&format!("ERR Function {name} already exists")));
        }
        restored.link(library);
    }
    let next = if policy == Policy::Flush {
        restored
    } else {
        let mut next = model.functions.clone();
        for library in restored.libraries.values() {
            if next.libraries.contains_key(&library.name) {
                if policy == Policy::Append {
                    return err(sanitize(&format!(
                        "ERR Library {} already exists",
                        library.name
                    )));
                }
                next.unlink(&library.name);
            }
        }
        for library in restored.libraries.values() {
            if let Some(name) = next.collision(library) {
                return err(sanitize(&format!("ERR Function {name} already exists")));
            }
        }
        for library in restored.libraries.into_values() {
            next.link(library);
        }
        next
    };
    model.functions = next;
    model.functions.touch();
    model.core.dirty += 1;
    script::functions_changed(model);
    ok()
}

#[cfg(test)]
mod tests;
