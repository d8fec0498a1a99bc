//! The HTTP layer under the routes: connections with header limits and a header read timeout,
//! request bodies read whole under a size cap and a deadline, and the optional API key.
//!
//! Bodies are read before any route or admission sees the request, so a slow client holds no
//! generation slot: past the deadline it gets 408, past the cap 413 (also for chunked bodies
//! without a Content-Length).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::AppState;

/// Connection limits (RELIABILITY.md, transport cases).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A client must send its whole request head within this time, else the connection closes.
    pub header_read_timeout: Duration,
    /// Most header fields (beyond: 431).
    pub max_headers: usize,
    /// Most bytes of request head (beyond: 431).
    pub max_head_bytes: usize,
    /// A request body must arrive within this time (beyond: 408).
    pub body_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 64,
            max_head_bytes: 64 << 10,
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Bytes past the body cap still read (and dropped) before answering 413.
const DRAIN_BYTES: usize = 1 << 20;

/// Reads the whole body under the size cap and the deadline, then passes the request on.
pub(crate) async fn read_body(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = s.cfg.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Far past the cap: answer at once, whatever the client is still sending.
    if declared.is_some_and(|n| n > (limit + DRAIN_BYTES) as u64) {
        return too_large(&s, limit);
    }
    let (parts, body) = req.into_parts();
    let read = async {
        let mut bytes = Vec::new();
        let mut seen = 0usize;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| None)?;
            seen += chunk.len();
            if seen > limit + DRAIN_BYTES {
                return Err(Some(()));
            }
            // Past the cap, the rest is read and dropped (memory stays bounded by the cap), so
            // that the client finishes sending and reads the 413 instead of a broken pipe.
            if seen <= limit {
                bytes.extend_from_slice(&chunk);
            }
        }
        if seen > limit {
            return Err(Some(()));
        }
        Ok(bytes)
    };
    match tokio::time::timeout(s.cfg.http.body_read_timeout, read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(Some(()))) => too_large(&s, limit),
        Ok(Err(None)) => crate::fail(&s, ApiError::invalid("the request body could not be read", None)),
        Err(_) => crate::fail(
            &s,
            ApiError::status(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_timeout",
                "the request body did not arrive in time",
            ),
        ),
    }
}

fn too_large(s: &AppState, limit: usize) -> Response {
    crate::fail(
        s,
        ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        ),
    )
}

/// With an API key configured, every request must carry `Authorization: Bearer KEY`.
pub(crate) async fn require_key(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = &s.cfg.api_key else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        return next.run(req).await;
    }
    let mut r = crate::fail(
        &s,
        ApiError::status(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "a valid API key is required: Authorization: Bearer KEY",
        ),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Compares without stopping at the first difference (no timing hint about the key).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves `app` on `listener` until `shutdown` resolves; then drains: the server is marked
/// draining (`/health` 503, new requests 503) and goes on accepting connections (so that
/// probes see the 503) until no request is admitted or queued, then stops accepting and waits
/// for the open connections to finish.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    state: Arc<AppState>,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    let mut draining = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown, if !draining => {
                draining = true;
                state.start_draining();
                continue;
            }
            _ = tick.tick(), if draining => {
                if state.idle() {
                    break;
                }
                continue;
            }
        };
        // Small writes (a stream's chunks, a short answer) go out at once: with Nagle's
        // algorithm a reused connection waits for the client's delayed ACK, 40 ms a response.
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(|r: hyper::Request<Incoming>| r.map(Body::new));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers)
            .max_header_size(limits.max_head_bytes)
            .max_buf_size(limits.max_head_bytes.max(8192));
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
