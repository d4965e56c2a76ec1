//! The scripting commands and the Lua 5.1 host (EVAL, EVALSHA, SCRIPT ...).

use super::command::Spec;

/// The scripting commands.
pub static COMMANDS: &[Spec] = &[];

/// The Lua interpreter and the script cache of one node.
pub struct ScriptHost {
    /// Seeds `math.random`.
    _seed: u64,
}

impl ScriptHost {
    /// A host with an empty script cache.
    pub fn new(seed: u64) -> ScriptHost {
        ScriptHost { _seed: seed }
    }

    /// Empties the script cache (SCRIPT FLUSH, restart, failover).
    pub fn flush(&mut self) {}
}
