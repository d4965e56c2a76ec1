//! keys commands.

use crate::model::command::Spec;

/// The keys commands.
pub static COMMANDS: &[Spec] = &[];
