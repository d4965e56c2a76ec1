//! keys commands.

use crate::model::command::Spec;

/// The keys commands.
pub static COMMANDS: &[Spec] = &[];
/// Temporary.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    pattern == b"*" || pattern == text
}
