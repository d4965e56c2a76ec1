//! The one place that chooses between `std` and `loom` synchronisation primitives.
//!
//! Every piece of shared state in the library takes its locks and atomics from here, so that
//! building with `--cfg loom` swaps them all for loom's model-checked versions at once and
//! `loom-tests/` can explore every interleaving of the real code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock};
