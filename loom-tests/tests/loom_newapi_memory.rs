//! loom models of new-api's in-memory limiter as built (`ratelab::newapi_memory`: one map
//! behind one global mutex, Go's unlocked first check in `Init`, the cleanup sweep).
//!
//! Goal: say which of its known problems loom can see and which it cannot, each as a test.
//! * Sees: the global mutex makes each `Request` atomic (no over-admission, no lost update
//!   between threads on one key); which `Init` wins is decided by scheduling; the sweep racing
//!   a request hands a long window's quota back in some orders (R11).
//! * Cannot see: the sweep's stall (loom explores orders, not durations: a sweep over eight
//!   keys is explored exactly like one over a single key), and Go's data race on the unlocked
//!   `store == nil` read (safe Rust cannot write one; the port reads a relaxed atomic, which
//!   is the double check's logic without the undefined behaviour).
//!
//! Method: 2–3 loom threads per model, globals built inside the model, the preemption bound
//! stated per test (default 2; `LOOM_MAX_PREEMPTIONS` overrides), and each test prints how
//! many executions loom explored.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`.
#![cfg(loom)]

use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;

use loom::sync::Arc;
use loom::thread;
use ratelab::newapi_memory::InMemoryRateLimiter;

/// Explores `test` with preemption bound `bound` (unless `LOOM_MAX_PREEMPTIONS` is set) and
/// returns how many executions loom ran.
fn explore(name: &str, bound: usize, test: impl Fn() + Sync + Send + 'static) -> usize {
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    let bound = builder.preemption_bound;
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        test();
    });
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom: {name}: {executions} executions, preemption bound {bound:?}");
    executions
}

fn initialised() -> Arc<InMemoryRateLimiter> {
    let store = Arc::new(InMemoryRateLimiter::default());
    store.init(1_200);
    store
}

#[test]
fn the_global_mutex_makes_each_request_atomic() {
    // Bound 2 covers every order of the three critical sections (each is one lock).
    let executions = explore("newapi: 3 threads, max 2, one key", 2, || {
        let store = initialised();
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let store = store.clone();
                thread::spawn(move || store.request(b"GA203.0.113.7", 2, 60, 100))
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .filter(|&allowed| allowed)
            .count();
        assert_eq!(admitted, 2, "max 2: exactly two, in every order");
        assert_eq!(
            store.queue(b"GA203.0.113.7"),
            Some(vec![100, 100]),
            "no lost update: both admissions are in the queue"
        );
    });
    assert!(executions > 1, "loom explored more than one order");
}

#[test]
fn which_init_wins_is_decided_by_scheduling() {
    // Two limiters' first calls race: `rateLimitFactory`'s Init(20 min) and the model
    // handler's Init(D). The first to take the lock sets the sweep horizon for the process;
    // loom must reach both outcomes, and in each exactly one horizon is set (the unlocked
    // first check never lets a second init through). Bound 2.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let record = seen.clone();
    explore("newapi: Init(1200) races Init(3600)", 2, move || {
        let store = Arc::new(InMemoryRateLimiter::default());
        let other = store.clone();
        let handle = thread::spawn(move || other.init(3_600));
        store.init(1_200);
        handle.join().unwrap();
        let horizon = store.expiration_s().expect("initialised");
        store.init(60);
        assert_eq!(
            store.expiration_s(),
            Some(horizon),
            "later inits do nothing"
        );
        record.lock().unwrap().insert(horizon);
    });
    assert_eq!(
        *seen.lock().unwrap(),
        BTreeSet::from([1_200, 3_600]),
        "both orders were explored and each picks its own horizon"
    );
}

#[test]
fn the_sweep_racing_a_request_hands_back_a_long_windows_quota() {
    // R11: window 3600 s, sweep horizon 1200 s, max 1. An admission at 0; at 1300 a request
    // and the sweep race. Request first: denied (0 is inside the window). Sweep first: the
    // key (idle 1300 s > 1200 s) is deleted and the request is admitted, a second admission
    // inside one window. loom must reach both. Bound 2.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let record = seen.clone();
    explore("newapi: sweep races a request (R11)", 2, move || {
        let store = initialised();
        assert!(store.request(b"MRRL42", 1, 3_600, 0));
        let sweeper = {
            let store = store.clone();
            thread::spawn(move || store.cleanup(1_300))
        };
        let admitted = store.request(b"MRRL42", 1, 3_600, 1_300);
        let removed = sweeper.join().unwrap();
        // Either order removes at most the one key, and the map stays consistent.
        assert!(removed <= 1);
        assert_eq!(
            store.len(),
            usize::from(admitted && removed == 1) + usize::from(removed == 0)
        );
        record.lock().unwrap().insert(admitted);
    });
    assert_eq!(
        *seen.lock().unwrap(),
        BTreeSet::from([false, true]),
        "loom finds the order that over-admits and the one that does not"
    );
}

#[test]
fn the_sweeps_stall_is_invisible_to_loom() {
    // The sweep holds the one lock while it scans every key: with many keys, every limiter
    // of the process waits. loom explores orders of lock acquisitions, not how long a lock is
    // held: a sweep over eight keys is explored in exactly as many executions as one over a
    // single key, and every one of them passes. A latency problem needs a benchmark.
    let run = |keys: usize| {
        explore("newapi: sweep over keys races a request", 2, move || {
            let store = initialised();
            for key in 0..keys {
                assert!(store.request(format!("GA{key}").as_bytes(), 1, 60, 0));
            }
            let sweeper = {
                let store = store.clone();
                thread::spawn(move || store.cleanup(5_000))
            };
            store.request(b"GA0", 1, 60, 5_000);
            assert!(sweeper.join().unwrap() >= keys - 1);
        })
    };
    assert_eq!(run(1), run(8));
}
