//! hashes commands.

use crate::model::command::Spec;

/// The hashes commands.
pub static COMMANDS: &[Spec] = &[];
