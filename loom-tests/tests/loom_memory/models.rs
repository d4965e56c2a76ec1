//! The models themselves: compiled only under `--cfg loom` (see the parent module).

use loom::sync::Arc;
use loom::thread;
use ratelab::algo::RateQuota;
use ratelab::memory::MemoryLimiter;

/// A loom model with an explicit preemption bound (loom's default is unbounded).
fn model(test: impl Fn() + Sync + Send + 'static) {
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = executions.clone();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    let bound = builder.preemption_bound;
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        test();
    });
    eprintln!(
        "loom: memory: {} executions, preemption bound {bound:?} ({})",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        std::thread::current().name().unwrap_or("?")
    );
}

/// Runs `threads` threads, each asking for one unit of `key` at `now_ms`, and returns how many
/// were admitted.
fn admitted_by_threads(limiter: &Arc<MemoryLimiter>, threads: usize, now_ms: u64) -> usize {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let limiter = limiter.clone();
            thread::spawn(move || limiter.check(b"hot", now_ms, 1).allowed)
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .filter(|allowed| *allowed)
        .count()
}

#[test]
fn two_threads_on_a_new_key_admit_exactly_the_burst() {
    model(|| {
        let limiter = Arc::new(MemoryLimiter::with_seed(RateQuota::new(1, 100).unwrap(), 7));
        assert_eq!(
            admitted_by_threads(&limiter, 2, 10),
            1,
            "burst 1: exactly one admission"
        );
        assert!(
            !limiter.check(b"hot", 10, 1).allowed,
            "the admission was recorded"
        );
        assert!(
            limiter.check(b"hot", 110, 1).allowed,
            "and only one interval was charged"
        );
    });
}

#[test]
fn three_threads_on_an_existing_key_lose_no_update() {
    model(|| {
        let limiter = Arc::new(MemoryLimiter::with_seed(RateQuota::new(2, 100).unwrap(), 7));
        // Create the key first so the threads race on the compare-and-swap, not the insert.
        assert!(limiter.check(b"hot", 10, 1).allowed);
        assert_eq!(
            admitted_by_threads(&limiter, 3, 10),
            1,
            "one unit of burst was left"
        );
        assert!(!limiter.check(b"hot", 10, 1).allowed);
        // Two units were charged in all: the key is full again exactly 200 ms later.
        assert!(!limiter.check(b"hot", 109, 1).allowed);
        assert!(limiter.check(b"hot", 110, 1).allowed);
    });
}

#[test]
fn cleanup_racing_a_request_never_refunds_quota() {
    model(|| {
        let limiter = Arc::new(MemoryLimiter::with_seed(RateQuota::new(1, 100).unwrap(), 7));
        assert!(limiter.check(b"hot", 10, 1).allowed); // TAT = 110: the key owes until then.
        let request = {
            let limiter = limiter.clone();
            thread::spawn(move || limiter.check(b"hot", 50, 1).allowed)
        };
        let sweeper = {
            let limiter = limiter.clone();
            thread::spawn(move || limiter.cleanup(50))
        };
        assert!(
            !request.join().unwrap(),
            "the key is inside its window at 50"
        );
        assert_eq!(
            sweeper.join().unwrap(),
            0,
            "cleanup must keep a key that still owes"
        );
        assert!(!limiter.check(b"hot", 60, 1).allowed);
    });
}

#[test]
fn cleanup_of_a_full_key_racing_its_next_request_admits_once() {
    model(|| {
        let limiter = Arc::new(MemoryLimiter::with_seed(RateQuota::new(1, 100).unwrap(), 7));
        assert!(limiter.check(b"hot", 10, 1).allowed); // TAT = 110.
        let request = {
            let limiter = limiter.clone();
            thread::spawn(move || limiter.check(b"hot", 200, 1).allowed)
        };
        let sweeper = {
            let limiter = limiter.clone();
            thread::spawn(move || limiter.cleanup(200))
        };
        assert!(request.join().unwrap(), "a full key admits");
        let removed = sweeper.join().unwrap();
        assert!(removed <= 1);
        // Whichever ran first, the admission at 200 must still be charged (unless cleanup ran
        // after it, which it may not: a key owing until 300 is not removable at 200).
        assert!(
            !limiter.check(b"hot", 200, 1).allowed,
            "the admission at 200 was not lost"
        );
    });
}
