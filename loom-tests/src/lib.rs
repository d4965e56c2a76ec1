//! loom models of the in-memory limiters. None exist yet: the memory limiter arrives with the limiters issue.
