//! Batched generation: many sequences advance together, one target forward per step for all
//! of them ([`Model::forward_batch`] reads every weight once for all their rows).
//!
//! Each sequence keeps its own cache, proposer and controller; its logits in the batch are
//! bitwise those it would get alone, so greedy output does not depend on what it is batched
//! with. The controller sees how many other rows share the forward and drafts less as the
//! batch fills (`Controller::choose_under_load`): with many sequences, a draft row costs
//! about as much as another sequence's token and rarely pays.
//!
//! [`Scheduler`] runs batches on worker threads for a server: jobs arrive on a channel, join
//! the running batch between steps (their prompts fed `PREFILL_CHUNK` rows per step, in the
//! same forward as the others' steps), and leave it when finished or cancelled, freeing their
//! cache at once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ahead_model::BatchItem;

use crate::decode::{Plan, Sequence};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::logprobs::TokenLogprobs;
use crate::output::Generation;
use crate::params::{GenerateParams, Prompt};
use crate::spec::Proposer;

/// Where a job's text goes: each piece of final text, with the log-probabilities of the
/// tokens committed since the last call (empty unless the request asked for them).
pub type OnText = Box<dyn FnMut(&str, &[TokenLogprobs]) + Send>;

/// One generation handed to a batch: what to generate, where its text goes, and how it ends.
pub struct Job {
    pub prompt: Prompt,
    pub params: GenerateParams,
    /// Each piece of final text as it is ready, with the log-probabilities of the tokens
    /// committed since the last call when the request asked for them (on the worker's thread:
    /// keep it short).
    pub on_text: OnText,
    /// Set it to end the generation before its next step (`FinishReason::Cancelled`).
    pub cancel: Arc<AtomicBool>,
    /// Called exactly once with the result (also when the job could not start).
    pub done: Box<dyn FnOnce(Result<Generation>) + Send>,
    /// A proposer of the caller's in place of `params.method`'s (as for
    /// [`Engine::generate_with_proposer`]); `None` for the method's own.
    pub proposer: Option<Box<dyn Proposer + Send>>,
}

/// A job in the batch.
struct Active<'e> {
    seq: Sequence<'e>,
    on_text: OnText,
    cancel: Arc<AtomicBool>,
    done: Box<dyn FnOnce(Result<Generation>) + Send>,
}

impl Active<'_> {
    /// Hands a step's new text and log-probabilities to the job, if there are any.
    fn emit(&mut self, delta: &str) {
        let logprobs = self.seq.take_new_logprobs();
        if !delta.is_empty() || !logprobs.is_empty() {
            (self.on_text)(delta, &logprobs);
        }
    }
}

/// Sequences stepping together.
pub(crate) struct Batch<'e> {
    engine: &'e Engine,
    active: Vec<Active<'e>>,
}

impl<'e> Batch<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Self {
            engine,
            active: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Prefills the job's prompt and adds it; a job that cannot start is answered at once.
    pub fn add(&mut self, mut job: Job) {
        let seq = match job.proposer.take() {
            Some(p) => self.engine.sequence_with(&job.prompt, &job.params, true, p),
            None => self.engine.sequence(&job.prompt, &job.params, true),
        };
        match seq {
            Ok(seq) => self.active.push(Active {
                seq,
                on_text: job.on_text,
                cancel: job.cancel,
                done: job.done,
            }),
            Err(e) => (job.done)(Err(e)),
        }
    }

    /// Answers and removes the finished and the cancelled.
    fn retire(&mut self) {
        let mut i = 0;
        while i < self.active.len() {
            let a = &mut self.active[i];
            if !a.seq.done() && a.cancel.load(Ordering::Relaxed) {
                a.seq.cancel();
            }
            if a.seq.done() {
                let a = self.active.swap_remove(i);
                (a.done)(Ok(a.seq.finish()));
            } else {
                i += 1;
            }
        }
    }

    /// Fails one job with `err` and removes it.
    fn fail(&mut self, i: usize, err: EngineError) {
        let a = self.active.swap_remove(i);
        (a.done)(Err(err));
    }

    /// One step of every sequence: plans, one batched forward, acceptance and commits.
    pub fn step(&mut self) {
        self.retire();
        let others = self.active.len().saturating_sub(1);
        let mut plans: Vec<Plan> = Vec::with_capacity(self.active.len());
        let mut i = 0;
        while i < self.active.len() {
            match self.active[i].seq.plan(others) {
                Ok(p) => {
                    plans.push(p);
                    i += 1;
                }
                Err(e) => self.fail(i, e),
            }
        }
        if plans.is_empty() {
            return;
        }
        let width: usize = plans.iter().map(Plan::rows).sum();
        let started = Instant::now();
        let mut items: Vec<BatchItem<'_, '_>> = plans
            .iter()
            .zip(self.active.iter_mut())
            .map(|(p, a)| BatchItem {
                input: p.input(),
                cache: a.seq.cache_mut(),
            })
            .collect();
        let outs = self.engine.model().forward_batch(&mut items);
        drop(items);
        let seconds = started.elapsed().as_secs_f64();
        match outs {
            Ok(outs) => {
                let mut failed = Vec::new();
                for (i, ((a, plan), out)) in self.active.iter_mut().zip(plans).zip(&outs).enumerate() {
                    match a.seq.complete(plan, out, seconds, width) {
                        Ok(delta) => a.emit(&delta),
                        Err(e) => failed.push((i, e)),
                    }
                }
                for (i, e) in failed.into_iter().rev() {
                    self.fail(i, e);
                }
            }
            // The batch left every cache as it was: run each alone, so that a fault fails
            // only its own sequence.
            Err(_) => {
                let mut failed = Vec::new();
                for (i, (a, plan)) in self.active.iter_mut().zip(plans).enumerate() {
                    let t = Instant::now();
                    let out = self.engine.model().forward(&plan.input(), a.seq.cache_mut());
                    let s = t.elapsed().as_secs_f64();
                    let width = plan.rows();
                    match out
                        .map_err(EngineError::from)
                        .and_then(|out| a.seq.complete(plan, &out, s, width))
                    {
                        Ok(delta) => a.emit(&delta),
                        Err(e) => failed.push((i, e)),
                    }
                }
                for (i, e) in failed.into_iter().rev() {
                    self.fail(i, e);
                }
            }
        }
        self.retire();
    }

    /// Fails every job (after a panic in a step: their state can no longer be trusted).
    fn fail_all(&mut self, why: &str) {
        for a in self.active.drain(..) {
            (a.done)(Err(EngineError::Internal(why.to_string())));
        }
    }
}

impl Engine {
    /// Generates a completion for every prompt, all advancing together in one batch (one
    /// target forward per step for all of them). Greedy results equal [`Engine::generate`]'s.
    pub fn generate_batched(&self, prompts: &[Prompt], params: &GenerateParams) -> Vec<Result<Generation>> {
        let results: Vec<Arc<std::sync::Mutex<Option<Result<Generation>>>>> = prompts
            .iter()
            .map(|_| Arc::new(std::sync::Mutex::new(None)))
            .collect();
        let mut batch = Batch::new(self);
        for (p, slot) in prompts.iter().zip(&results) {
            let slot = slot.clone();
            batch.add(Job {
                prompt: p.clone(),
                params: params.clone(),
                on_text: Box::new(|_, _| {}),
                cancel: Arc::new(AtomicBool::new(false)),
                done: Box::new(move |r| {
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(r);
                    }
                }),
                proposer: None,
            });
        }
        while batch.len() > 0 {
            batch.step();
        }
        results
            .iter()
            .map(|slot| {
                slot.lock()
                    .ok()
                    .and_then(|mut s| s.take())
                    .unwrap_or_else(|| Err(EngineError::Internal("a batched job gave no result".into())))
            })
            .collect()
    }
}

/// Worker threads, each running one batch; jobs go to the least loaded.
pub struct Scheduler {
    workers: Vec<Worker>,
}

struct Worker {
    tx: Option<Sender<Job>>,
    /// Jobs sent to this worker and not yet answered.
    load: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts `workers` threads (at least one) serving `engine`.
    pub fn start(engine: Arc<Engine>, workers: usize) -> Self {
        let workers = (0..workers.max(1))
            .map(|i| {
                let (tx, rx) = channel();
                let load = Arc::new(AtomicUsize::new(0));
                let engine = engine.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("ahead-batch-{i}"))
                    .spawn(move || work(&engine, &rx))
                    .ok();
                Worker {
                    tx: Some(tx),
                    load,
                    handle,
                }
            })
            .collect();
        Self { workers }
    }

    /// Hands `job` to the least loaded worker. If no worker can take it, it is answered with
    /// an error at once.
    pub fn submit(&self, job: Job) {
        let Some(w) = self
            .workers
            .iter()
            .filter(|w| w.handle.is_some())
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
        else {
            (job.done)(Err(EngineError::Internal("no batch worker is running".into())));
            return;
        };
        let load = w.load.clone();
        load.fetch_add(1, Ordering::Relaxed);
        let done = job.done;
        let job = Job {
            done: Box::new(move |r| {
                load.fetch_sub(1, Ordering::Relaxed);
                done(r);
            }),
            ..job
        };
        match &w.tx {
            Some(tx) => {
                if let Err(e) = tx.send(job) {
                    (e.0.done)(Err(EngineError::Internal("the batch worker has stopped".into())));
                }
            }
            None => (job.done)(Err(EngineError::Internal(
                "the scheduler is shutting down".into(),
            ))),
        }
    }

    /// Jobs waiting or generating, over all workers.
    pub fn load(&self) -> usize {
        self.workers.iter().map(|w| w.load.load(Ordering::Relaxed)).sum()
    }
}

impl Drop for Scheduler {
    /// Lets every worker finish its batch, then joins it.
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.tx = None;
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// A worker: waits for jobs when idle; otherwise admits what has arrived between steps, then
/// steps the batch. Ends when the scheduler is dropped and its batch is empty.
fn work(engine: &Engine, rx: &Receiver<Job>) {
    let mut batch = Batch::new(engine);
    loop {
        let first = if batch.len() == 0 {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        } else {
            None
        };
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            for job in first.into_iter().chain(rx.try_iter()) {
                batch.add(job);
            }
            batch.step();
        }));
        if stepped.is_err() {
            batch.fail_all("a generation step panicked; its batch was ended");
        }
    }
}
