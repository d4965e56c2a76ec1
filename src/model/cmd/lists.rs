//! lists commands.

use crate::model::command::Spec;

/// The lists commands.
pub static COMMANDS: &[Spec] = &[];
