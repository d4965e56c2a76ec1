//! strings commands.

use crate::model::command::Spec;

/// The strings commands.
pub static COMMANDS: &[Spec] = &[];
