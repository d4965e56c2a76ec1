//! A seed-ordered worker pool: runs independent jobs (one simulation each) on several threads
//! and hands back their results keyed by seed, so what the caller prints does not depend on
//! which thread finished first. `ratelab explore` runs seeds on it; `ratelab report` runs the
//! points of its sweeps on it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs `work(seed)` for every seed in `first..first + count` on `jobs` threads (at least one)
/// and returns the results in seed order. `on_done(seed, &result)` runs on the worker thread
/// as each finishes (a progress bar, a running count); its order is the finishing order.
pub fn run_ordered<T, W, D>(
    first: u64,
    count: u64,
    jobs: usize,
    work: W,
    on_done: D,
) -> BTreeMap<u64, T>
where
    T: Send,
    W: Fn(u64) -> T + Sync,
    D: Fn(u64, &T) + Sync,
{
    // Indices, not seeds, are handed out, so the counter cannot wrap past `u64::MAX`.
    let count = count.min(u64::MAX - first);
    let next = AtomicU64::new(0);
    let results: Mutex<BTreeMap<u64, T>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let seed = first + index;
                    let result = work(seed);
                    on_done(seed, &result);
                    results
                        .lock()
                        .expect("no worker panics while holding the result map")
                        .insert(seed, result);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panics while holding the result map")
}

/// The number of worker threads to use when the caller did not say: every core.
pub fn jobs_default() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the result map holds every seed exactly once, in seed order, whatever the number
    /// of threads. Method: run a job whose cost varies by seed with 1, 2 and 7 threads and
    /// compare; count the callbacks.
    #[test]
    fn results_are_complete_and_in_seed_order_for_any_job_count() {
        let work = |seed: u64| {
            // Uneven work, so threads finish out of order.
            let spins = (seed % 5) * 1000;
            let mut x = seed;
            for _ in 0..spins {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            (seed, x)
        };
        let one = run_ordered(10, 40, 1, work, |_, _| {});
        for jobs in [2, 7] {
            let calls = AtomicU64::new(0);
            let many = run_ordered(10, 40, jobs, work, |_, _| {
                calls.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(many, one, "jobs {jobs}");
            assert_eq!(calls.load(Ordering::Relaxed), 40);
        }
        assert_eq!(
            one.keys().copied().collect::<Vec<_>>(),
            (10..50).collect::<Vec<_>>()
        );
    }

    /// Goal: an empty range and a zero job count neither hang nor panic.
    #[test]
    fn empty_range_and_zero_jobs() {
        assert!(run_ordered(5, 0, 3, |s| s, |_, _| {}).is_empty());
        assert_eq!(run_ordered(0, 3, 0, |s| s, |_, _| {}).len(), 3);
        assert!(run_ordered(u64::MAX, 5, 2, |s| s, |_, _| {}).is_empty());
    }
}
