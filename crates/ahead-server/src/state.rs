//! The server's configuration and shared state: limits, the engine once loaded, the batch
//! scheduler, admission counters and metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ahead_engine::{Engine, GenerateParams, Scheduler};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::HttpLimits;
use crate::metrics::Metrics;

/// Limits and identity of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The id `/v1/models` lists and requests may name.
    pub model_id: String,
    /// Requests generating at once; more wait in the queue.
    pub max_concurrent: usize,
    /// Requests waiting for a slot; beyond it, 503 (or 429 without a queue).
    pub max_queue: usize,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_cap: usize,
    /// Largest `n`.
    pub n_cap: usize,
    /// Longest a request may generate, in seconds; then it ends with finish reason `length`.
    pub max_generation_seconds: f64,
    /// Longest a request may wait for a slot and then for KV budget, in seconds; then 503
    /// `queue_timeout` with `Retry-After`.
    pub max_queue_seconds: f64,
    /// One line per request on stderr (method, status, tokens, times), or none.
    pub log: LogFormat,
    /// Requests must carry `Authorization: Bearer KEY` (401 otherwise); `/health` and
    /// `/metrics` stay open for probes and scrapers.
    pub api_key: Option<String>,
    /// Connection and request-read limits.
    pub http: HttpLimits,
    /// Total KV-cache tokens the requests in flight may reserve (0: no budget). A request
    /// reserves prompt + max_tokens + draft slots (at most the context) for each choice; one
    /// that could never fit gets 400, others wait until enough is free.
    pub max_kv_tokens: usize,
    /// Method and parameters for requests that name none (e.g. from `ahead tune`); sampling,
    /// limits and stops always come from the request.
    pub defaults: GenerateParams,
    /// Batch worker threads; each advances its share of the requests in one batch. 0: one per
    /// core for a model small enough that a forward stays on one core, else one (whose
    /// forwards use every core).
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_id: "ahead".into(),
            max_concurrent: 8,
            max_queue: 64,
            max_body_bytes: 2 << 20,
            max_tokens_cap: 4096,
            n_cap: 4,
            max_generation_seconds: 600.0,
            max_queue_seconds: 60.0,
            log: LogFormat::Off,
            workers: 0,
            max_kv_tokens: 0,
            defaults: GenerateParams::default(),
            api_key: None,
            http: HttpLimits::default(),
        }
    }
}

/// How requests are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Off,
    /// `key=value` pairs.
    Text,
    /// One JSON object per line.
    Json,
}

/// Shared by every handler.
pub struct AppState {
    pub(crate) engine: OnceLock<Arc<Engine>>,
    pub(crate) scheduler: OnceLock<Scheduler>,
    pub(crate) cfg: ServerConfig,
    pub(crate) slots: Arc<Semaphore>,
    /// KV-cache tokens still free, with a budget.
    pub(crate) kv: Option<Arc<Semaphore>>,
    pub(crate) queued: AtomicU64,
    pub(crate) draining: AtomicBool,
    pub(crate) next_id: AtomicU64,
    pub metrics: Metrics,
    /// The longest prompt text that could fit the context (see `max_prompt_bytes`).
    max_prompt_bytes: OnceLock<usize>,
    /// Request log lines go here instead of stderr once set (tests read them).
    pub(crate) captured_logs: OnceLock<Arc<Mutex<Vec<String>>>>,
}

impl AppState {
    pub fn new(cfg: ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            engine: OnceLock::new(),
            scheduler: OnceLock::new(),
            slots: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
            kv: (cfg.max_kv_tokens > 0).then(|| Arc::new(Semaphore::new(cfg.max_kv_tokens))),
            cfg,
            queued: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            metrics: Metrics::default(),
            max_prompt_bytes: OnceLock::new(),
            captured_logs: OnceLock::new(),
        })
    }

    /// Makes the server ready (until then `/health` says 503 and requests get 503).
    /// The engine, once loaded.
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.get()
    }

    pub fn set_engine(&self, engine: Arc<Engine>) {
        let workers = match self.cfg.workers {
            0 => auto_workers(&engine),
            w => w,
        };
        let _ = self.scheduler.set(Scheduler::start(engine.clone(), workers));
        let _ = self.engine.set(engine);
    }

    /// Keeps the request log's lines instead of writing them to stderr (tests read them).
    #[doc(hidden)]
    pub fn capture_logs(&self) -> Arc<Mutex<Vec<String>>> {
        self.captured_logs.get_or_init(Default::default).clone()
    }

    /// Takes a generation slot as a request would (tests hold one to make the server busy).
    #[doc(hidden)]
    pub fn take_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// KV-cache tokens not reserved by requests in flight (with a budget).
    #[doc(hidden)]
    pub fn kv_available(&self) -> Option<usize> {
        self.kv.as_ref().map(|k| k.available_permits())
    }

    /// Bytes of prompt text past which no tokenization fits the context: every token covers
    /// at most as many bytes as its longest piece spells (byte-level and SentencePiece pieces
    /// spell at least the bytes they stand for), with a factor of 4 to spare for normalization.
    pub(crate) fn max_prompt_bytes(&self, engine: &Engine) -> usize {
        *self.max_prompt_bytes.get_or_init(|| {
            let tok = engine.tokenizer();
            let longest = (0..tok.vocab_size() as u32)
                .filter_map(|id| tok.id_to_piece(id).map(|p| p.len()))
                .max()
                .unwrap_or(1)
                .max(1);
            4 * longest * engine.model().config().max_seq_len
        })
    }

    /// Whether no request holds a slot or waits for one.
    pub(crate) fn idle(&self) -> bool {
        self.slots.available_permits() == self.cfg.max_concurrent.max(1)
            && self.queued.load(Ordering::SeqCst) == 0
    }

    /// Stops admitting requests (`/health` 503); in-flight ones finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// Weights below which a forward stays on one core (the kernels go parallel above about this).
pub(crate) const SMALL_MODEL_BYTES: usize = 16 << 20;

/// Batch workers when not configured: a small model's forward runs on one core, so each core
/// gets a batch; a larger one's matmuls already use every core, and one batch reads the
/// weights once per step for all its requests.
pub(crate) fn auto_workers(engine: &Engine) -> usize {
    if engine.model().weight_bytes() < SMALL_MODEL_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}
