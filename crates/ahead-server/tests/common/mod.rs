//! The server on a real TCP port, and small clients for it, shared by the server tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use ahead_engine::Engine;
use ahead_server::{AppState, ServerConfig};
use serde_json::Value;

pub struct Server {
    pub url: String,
    pub state: Arc<AppState>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn engine() -> Arc<Engine> {
    static E: std::sync::OnceLock<Arc<Engine>> = std::sync::OnceLock::new();
    E.get_or_init(|| Arc::new(Engine::builder().build().unwrap()))
        .clone()
}

pub fn start(cfg: ServerConfig) -> Server {
    start_with(engine(), cfg)
}

/// The server on `engine`.
pub fn start_with(engine: Arc<Engine>, cfg: ServerConfig) -> Server {
    let state = AppState::new(cfg);
    state.set_engine(engine);
    let shared = state.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            ahead_server::run(listener, state, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    Server {
        url: format!("http://{addr}"),
        state: shared,
        stop: Some(tx),
        thread: Some(thread),
    }
}

pub fn post(url: &str, body: &Value) -> (u16, Value) {
    match ureq::post(url).send_json(body.clone()) {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// The `data:` payloads of an SSE response, up to `[DONE]`.
pub fn sse(url: &str, body: &Value) -> Vec<String> {
    let r = ureq::post(url).send_json(body.clone()).unwrap();
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let mut out = Vec::new();
    for line in BufReader::new(r.into_reader()).lines() {
        let line = line.unwrap();
        if let Some(d) = line.strip_prefix("data: ") {
            out.push(d.to_string());
            if d == "[DONE]" {
                break;
            }
        }
    }
    out
}
