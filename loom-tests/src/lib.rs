//! loom models of the in-memory limiters live in `tests/` (each file `#![cfg(loom)]`); this library is empty.
