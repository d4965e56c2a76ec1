//! sets commands.

use crate::model::command::Spec;

/// The sets commands.
pub static COMMANDS: &[Spec] = &[];
