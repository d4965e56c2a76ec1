//! The command table: every command the model knows, its arity, flags and key positions.
//!
//! Each family of commands (`cmd/*.rs`) exports a `COMMANDS` slice; [`lookup`] searches them
//! all. Arity follows Redis: a positive number is exact, a negative one is a minimum, and the
//! command name counts. Key positions (first, last, step; last < 0 counts from the end) drive
//! CROSSSLOT and MOVED checks in cluster mode and `COMMAND INFO`.

use super::reply::Reply;
use super::{Core, Ctx, Model, Session};

/// What a command's handler needs.
#[derive(Clone, Copy)]
pub enum Handler {
    /// A data command: it sees the keyspace and the per-call context. Scripts may call these.
    Data(fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply),
    /// A connection or scripting command: it sees the whole model and the client's session.
    /// Scripts may not call these.
    Session(fn(&mut Model, &mut Session, u64, &[Vec<u8>]) -> Reply),
}

/// The command writes (may create, change or delete keys).
pub const WRITE: u32 = 1 << 0;
/// The command only reads.
pub const READONLY: u32 = 1 << 1;
/// Scripts may not call the command.
pub const NOSCRIPT: u32 = 1 << 2;
/// The command is allowed inside MULTI but runs at once instead of queueing (EXEC, DISCARD...).
pub const NO_QUEUE: u32 = 1 << 3;
/// The command uses non-deterministic data (TIME, RANDOMKEY).
pub const RANDOM: u32 = 1 << 4;
/// The command may grow memory use (`denyoom` in Redis).
pub const DENYOOM: u32 = 1 << 5;
/// The command is fast (O(1) or O(log n)) (`fast` in COMMAND INFO).
pub const FAST: u32 = 1 << 6;
/// The command is administrative / connection-level (`loading`, `stale` are not modelled).
pub const ADMIN: u32 = 1 << 7;

/// One command.
#[derive(Clone, Copy)]
pub struct Spec {
    /// Lowercase name, as COMMAND INFO reports it.
    pub name: &'static str,
    /// Redis arity: exact if positive, minimum if negative; the name counts.
    pub arity: i32,
    /// `WRITE | READONLY | ...`.
    pub flags: u32,
    /// Position of the first key (0 = no keys).
    pub first_key: i32,
    /// Position of the last key (negative counts from the end: -1 = the last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// The implementation.
    pub handler: Handler,
}

/// A command whose handler sees the whole model and the session, with no fixed key positions
/// (none at all, or, for EVAL, EVALSHA, FCALL and FCALL_RO, keys that follow a key count,
/// which [`Spec::keys`] special-cases). One constructor for every family's table.
pub const fn session(
    name: &'static str,
    arity: i32,
    flags: u32,
    handler: fn(&mut Model, &mut Session, u64, &[Vec<u8>]) -> Reply,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: Handler::Session(handler),
    }
}

impl Spec {
    /// Whether `argc` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// The key arguments of `argv` by this spec's positions. EVAL-style commands (the key
    /// count in `argv[2]`) are special-cased.
    pub fn keys<'a>(&self, argv: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
        if matches!(
            self.name,
            "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
        ) {
            let count = argv
                .get(2)
                .and_then(|n| super::num::parse_i64(n))
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
            return argv.iter().skip(3).take(count).map(Vec::as_slice).collect();
        }
        if self.first_key <= 0 {
            return Vec::new();
        }
        let len = i64::try_from(argv.len()).unwrap_or(i64::MAX);
        let first = i64::from(self.first_key);
        let last = if self.last_key < 0 {
            len + i64::from(self.last_key)
        } else {
            i64::from(self.last_key).min(len - 1)
        };
        let step = i64::from(self.step.max(1));
        let mut keys = Vec::new();
        let mut index = first;
        while index <= last && index < len {
            keys.push(argv[usize::try_from(index).expect("non-negative")].as_slice());
            index += step;
        }
        keys
    }
}

/// All command families, searched in order.
pub fn families() -> [&'static [Spec]; 9] {
    use super::cmd;
    [
        cmd::keys::COMMANDS,
        cmd::strings::COMMANDS,
        cmd::lists::COMMANDS,
        cmd::hashes::COMMANDS,
        cmd::sets::COMMANDS,
        cmd::zsets::COMMANDS,
        cmd::server::COMMANDS,
        super::script::COMMANDS,
        super::functions::COMMANDS,
    ]
}

/// Finds a command by name, case-insensitively. The index is built once; it is a `HashMap`
/// that is only ever probed, never iterated, so its order cannot leak into any output.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    static INDEX: std::sync::OnceLock<std::collections::HashMap<&'static str, &'static Spec>> =
        std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| all().map(|spec| (spec.name, spec)).collect());
    if name.len() > 32 {
        return None;
    }
    let mut lower = [0u8; 32];
    for (slot, byte) in lower.iter_mut().zip(name) {
        *slot = byte.to_ascii_lowercase();
    }
    let name = std::str::from_utf8(&lower[..name.len()]).ok()?;
    index.get(name).copied()
}

/// Every command, in table order (COMMAND COUNT, COMMAND INFO with no name).
pub fn all() -> impl Iterator<Item = &'static Spec> {
    families().into_iter().flat_map(|family| family.iter())
}
