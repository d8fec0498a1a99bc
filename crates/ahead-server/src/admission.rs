//! Admission and a request's lifetime guards: a slot (or a place in the bounded queue), the
//! KV reservation, the time-limit watchdog, and the flags dropped futures set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ApiError;
use crate::log::{self, Logged};
use crate::respond::Kind;
use crate::state::AppState;

/// A slot to generate in: taken at once, or after waiting in the bounded queue.
pub(crate) async fn admit(s: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    if s.draining.load(Ordering::SeqCst) {
        return Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is shutting down",
        ));
    }
    if let Ok(p) = s.slots.clone().try_acquire_owned() {
        return Ok(p);
    }
    if s.cfg.max_queue == 0 {
        return Err(ApiError::status(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "too_many_requests",
            "every generation slot is busy",
        ));
    }
    let depth = s.queued.fetch_add(1, Ordering::SeqCst);
    s.metrics.queue_depth.store(depth + 1, Ordering::Relaxed);
    // Leaves the queue however this future ends (the client may go away while waiting).
    struct Leave<'a>(&'a AppState);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            let d = self.0.queued.fetch_sub(1, Ordering::SeqCst);
            self.0
                .metrics
                .queue_depth
                .store(d.saturating_sub(1), Ordering::Relaxed);
        }
    }
    let _leave = Leave(s);
    if depth >= s.cfg.max_queue as u64 {
        return Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "queue_full",
            "the request queue is full",
        ));
    }
    match tokio::time::timeout(queue_deadline(s), s.slots.clone().acquire_owned()).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(_)) => Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "closed",
            "closed",
        )),
        Err(_) => Err(queue_timeout(s, "a generation slot")),
    }
}

/// How long a request may wait for a slot, and again for KV budget.
pub(crate) fn queue_deadline(s: &AppState) -> std::time::Duration {
    std::time::Duration::from_secs_f64(s.cfg.max_queue_seconds.max(0.0))
}

/// 503 for a request that waited `--max-queue-seconds` for `what`.
pub(crate) fn queue_timeout(s: &AppState, what: &str) -> ApiError {
    ApiError::status(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "queue_timeout",
        format!(
            "the request waited {} s for {what}; try again later",
            s.cfg.max_queue_seconds
        ),
    )
}

/// Ends a generation that runs past the time limit: sets `timed_out`, then the cancel flag.
pub(crate) fn watchdog(limit: f64, cancel: Arc<AtomicBool>, timed_out: Arc<AtomicBool>) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs_f64(limit.max(0.0))).await;
        timed_out.store(true, Ordering::Relaxed);
        cancel.store(true, Ordering::Relaxed);
    });
}

/// Sets the cancel flag when dropped: a response future dropped by a disconnect.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What an admitted request holds until its last choice is answered: a generation slot and,
/// with a KV budget, its caches' worth of tokens.
pub(crate) struct Admitted {
    pub(crate) _slot: OwnedSemaphorePermit,
    pub(crate) _kv: Option<OwnedSemaphorePermit>,
}

/// Counts a request as running until dropped.
pub(crate) struct Running(pub(crate) Arc<AppState>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.metrics.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts its request as cancelled, and logs it as such, if dropped while still holding the
/// state: the response future of a client that went away before its answer.
pub(crate) struct Unanswered {
    pub(crate) state: Option<Arc<AppState>>,
    pub(crate) kind: Kind,
    pub(crate) started: Instant,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(s) = self.state.take() {
            s.metrics.outcome("cancelled");
            let gone = Logged {
                error: Some("the client went away".into()),
                ..Logged::default()
            };
            log::write(&s, self.kind, "cancelled", &gone, self.started, None);
        }
    }
}
