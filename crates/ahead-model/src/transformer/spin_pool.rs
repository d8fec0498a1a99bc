//! Worker threads that spin between products, for the mid-sized matrix products (and attention,
//! and a sampled verify's per-row warps) of decoding.
//!
//! Decoding one token of a 100M-parameter model is a few hundred products of 0.1-1M
//! multiply-adds, each done in tens of microseconds. Waking a sleeping rayon worker for each
//! costs about as much as the product (measured: splitting them over rayon's two threads made
//! SmolLM2-135M decode 1.3-1.4x slower than keeping them on one), so they ran on one core while
//! llama.cpp, whose threads spin at barriers, used both. Here the workers spin on an epoch
//! counter for a while after each job (then park), so a product's second half starts without a
//! wake-up; the caller takes tasks too and waits, spinning, for the last one.
//!
//! One job at a time: a caller that finds the pool busy (another thread's product) gets `false`
//! and runs its own way. Which thread computes a task never changes its numbers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Runs `f(0)..f(tasks)` on the decoding threads: the spinning pool when it is free (no
/// wake-up, and no rayon thread fighting its spinning workers for the cores), else rayon. For
/// work of a decoding step that splits into independent tasks (attention, per-row sampling).
pub fn run_tasks(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if !SpinPool::global().is_some_and(|pool| pool.run(tasks, f)) {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(f);
    }
}

/// How long an idle worker spins before parking: longer than the gaps between one token's
/// products, short enough that an idle process does not hold a core.
const SPIN: Duration = Duration::from_micros(500);

/// One job: `tasks` calls of `f`, claimed by index.
struct Job {
    /// The caller's closure. Only called for claimed indices below `tasks`, and the caller does
    /// not return before every claimed call has finished, so it outlives every call.
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
}

// SAFETY: `f` points to a `Sync` closure that outlives every use (see `Job::f`).
unsafe impl Send for Job {}
// SAFETY: as above; the counters are atomics.
unsafe impl Sync for Job {}

impl Job {
    /// Runs tasks until none is left unclaimed.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.tasks {
                return;
            }
            // SAFETY: index i < tasks was claimed, so the caller is still waiting (`Job::f`).
            let f = unsafe { &*self.f };
            if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

struct Shared {
    /// Bumped when a job is published.
    epoch: AtomicUsize,
    job: Mutex<Option<Arc<Job>>>,
}

pub(crate) struct SpinPool {
    shared: Arc<Shared>,
    workers: Vec<Thread>,
    /// Held by the caller whose job is running.
    busy: Mutex<()>,
}

impl SpinPool {
    /// The process's pool: `rayon::current_num_threads() - 1` workers (the caller is the
    /// last), or `None` on one thread.
    pub(crate) fn global() -> Option<&'static SpinPool> {
        static POOL: OnceLock<Option<SpinPool>> = OnceLock::new();
        POOL.get_or_init(|| SpinPool::new(rayon::current_num_threads().saturating_sub(1)))
            .as_ref()
    }

    fn new(workers: usize) -> Option<Self> {
        if workers == 0 {
            return None;
        }
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: Mutex::new(None),
        });
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let s = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ahead-spin-{i}"))
                .spawn(move || worker(&s))
                .ok()?;
            threads.push(handle.thread().clone());
        }
        Some(Self {
            shared,
            workers: threads,
            busy: Mutex::new(()),
        })
    }

    /// Runs `f(0)..f(tasks)` on the workers and the calling thread, returning when all are
    /// done; `false` (nothing run) if another thread's job holds the pool.
    pub(crate) fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        let Ok(_guard) = self.busy.try_lock() else {
            return false;
        };
        // SAFETY: only the lifetime is erased; this function does not return before every
        // claimed call of `f` has finished (the wait below), and unclaimed indices are never
        // called (`Job::work`).
        let f: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        let job = Arc::new(Job {
            f,
            tasks,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        });
        if let Ok(mut slot) = self.shared.job.lock() {
            *slot = Some(job.clone());
        }
        self.shared.epoch.fetch_add(1, Ordering::Release);
        for w in &self.workers {
            w.unpark();
        }
        job.work();
        while job.done.load(Ordering::Acquire) < tasks {
            std::hint::spin_loop();
        }
        if let Ok(mut slot) = self.shared.job.lock() {
            *slot = None;
        }
        // A task that panicked is a bug in the product: surface it as rayon would.
        assert!(
            !job.panicked.load(Ordering::Relaxed),
            "a task on the spinning pool panicked"
        );
        true
    }
}

fn worker(s: &Shared) {
    let mut seen = s.epoch.load(Ordering::Acquire);
    loop {
        let idle = Instant::now();
        let mut spins = 0u32;
        loop {
            let now = s.epoch.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) && idle.elapsed() > SPIN {
                // `unpark` before this `park` makes it return at once: no wake-up is lost.
                std::thread::park();
            } else {
                std::hint::spin_loop();
            }
        }
        let job = s.job.lock().ok().and_then(|slot| slot.clone());
        if let Some(job) = job {
            job.work();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_the_pool_is_reusable() {
        let pool = SpinPool::new(1).unwrap();
        for round in 0..200 {
            let tasks = 1 + round % 7;
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            assert!(pool.run(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            }));
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
            if round % 50 == 0 {
                // Long enough for the worker to park: the next job must wake it.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    #[test]
    fn a_busy_pool_says_so() {
        let pool = SpinPool::new(1).unwrap();
        let inner = AtomicBool::new(true);
        assert!(pool.run(2, &|_| {
            if !pool.run(1, &|_| {}) {
                inner.store(false, Ordering::Relaxed);
            }
        }));
        assert!(
            !inner.load(Ordering::Relaxed),
            "a nested job must be refused, not deadlock"
        );
    }
}
