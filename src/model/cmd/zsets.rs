//! zsets commands.

use crate::model::command::Spec;

/// The zsets commands.
pub static COMMANDS: &[Spec] = &[];
