//! RELIABILITY.md's transport and JSON cases over raw TCP: header limits (431), slow clients
//! (closed or 408, holding no slot), bodies past the cap with and without Content-Length (413),
//! malformed JSON of every kind (400), wrong methods (405), the API key (401), per-field caps,
//! chat content parts and roles. After each, the server still serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ahead_server::{HttpLimits, ServerConfig};
use serde_json::{json, Value};

fn addr(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_string()
}

/// Sends raw bytes and reads the response until the server closes or `wait` passes.
fn raw(s: &Server, bytes: &[u8], wait: Duration) -> String {
    let mut c = TcpStream::connect(addr(s)).unwrap();
    c.set_read_timeout(Some(wait)).unwrap();
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = c.write_all(bytes);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

fn body_of(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn request(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn still_serves(s: &Server) {
    let (code, v) = post(
        &format!("{}/v1/completions", s.url),
        &json!({"prompt": "Once", "max_tokens": 3}),
    );
    assert_eq!(code, 200, "{v}");
}

fn quick_limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    }
}

#[test]
fn oversized_or_too_many_headers_get_431() {
    let s = start(ServerConfig::default());
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let big = format!("x-big: {}\r\n", "a".repeat(100_000));
    for headers in [many, big] {
        let r = raw(
            &s,
            &request("/v1/completions", &headers, b"{}"),
            Duration::from_secs(5),
        );
        assert_eq!(
            status_of(&r),
            Some(431),
            "{} headers: {}",
            headers.len(),
            &r[..r.len().min(400)]
        );
    }
    still_serves(&s);
}

#[test]
fn slow_clients_are_cut_off_without_holding_a_slot() {
    let s = start(ServerConfig {
        max_concurrent: 1,
        max_queue: 0,
        http: quick_limits(),
        ..ServerConfig::default()
    });
    // A head that never ends: the connection is closed after the header timeout.
    let t = Instant::now();
    let r = raw(
        &s,
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\n",
        Duration::from_secs(10),
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closed after the header timeout"
    );
    assert!(matches!(status_of(&r), None | Some(408)), "{r}");
    // A body that stops halfway: 408, and the one generation slot stays free.
    let mut c = TcpStream::connect(addr(&s)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"prompt\"")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let r = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&r), Some(408), "{r}");
    assert_eq!(body_of(&r)["error"]["code"], "request_timeout");
    assert!(s.state.take_slot().is_some(), "the slot was never taken");
    drop(c);
    still_serves(&s);
}

#[test]
fn bodies_past_the_cap_get_413_with_or_without_a_length() {
    let s = start(ServerConfig {
        max_body_bytes: 4096,
        ..ServerConfig::default()
    });
    let big = format!("{{\"prompt\": \"{}\"}}", "a".repeat(10_000));
    let r = raw(
        &s,
        &request("/v1/completions", "", big.as_bytes()),
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&r), Some(413), "{r}");
    // A declared length far past the cap is refused before the body arrives.
    let t = Instant::now();
    let r = raw(
        &s,
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000000\r\n\r\n{",
        Duration::from_secs(10),
    );
    assert_eq!(status_of(&r), Some(413), "{r}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "answered without waiting for the body"
    );
    // Chunked, no Content-Length: cut off while streaming.
    let mut chunked = b"POST /v1/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..8 {
        chunked.extend_from_slice(format!("400\r\n{}\r\n", " ".repeat(0x400)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = raw(&s, &chunked, Duration::from_secs(5));
    assert_eq!(status_of(&r), Some(413), "{r}");
    assert_eq!(body_of(&r)["error"]["code"], "body_too_large");
    still_serves(&s);
}

#[test]
fn malformed_json_of_every_kind_gets_400() {
    let s = start(ServerConfig::default());
    let deep = format!(
        "{{\"prompt\": \"x\", \"stop\": {}{}}}",
        "[".repeat(300),
        "]".repeat(300)
    );
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        b"{\"prompt\": \"x\", \"temperature\": 1e999}".to_vec(),
        b"{\"prompt\": \"x\", \"temperature\": NaN}".to_vec(),
        b"{\"prompt\": \"x\", \"top_p\": Infinity}".to_vec(),
        b"{\"prompt\": \"x\"} trailing".to_vec(),
        b"{\"prompt\": \"\xff\xfe\"}".to_vec(),
        b"{\"prompt\": \"x\", \"top_p\": 1.5}".to_vec(),
        b"{\"prompt\": \"x\", \"max_tokens\": 99999999999999999999}".to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"".to_vec(),
    ];
    for body in bodies {
        let r = raw(&s, &request("/v1/completions", "", &body), Duration::from_secs(5));
        let shown = String::from_utf8_lossy(&body[..body.len().min(50)]).into_owned();
        assert_eq!(status_of(&r), Some(400), "{shown}: {r}");
        assert!(body_of(&r)["error"]["message"].is_string(), "{shown}: {r}");
    }
    still_serves(&s);
}

#[test]
fn field_caps_roles_and_content_parts() {
    let s = start(ServerConfig::default());
    let url = format!("{}/v1/completions", s.url);
    // A huge model name is refused without echoing it back.
    let (code, v) = post(&url, &json!({"prompt": "x", "model": "m".repeat(100_000)}));
    assert_eq!(code, 404);
    assert!(v["error"]["message"].as_str().unwrap().len() < 300, "{v}");
    let (code, _) = post(&url, &json!({"prompt": "x", "stop": ["s".repeat(100_000)]}));
    assert_eq!(code, 400);

    let chat = format!("{}/v1/chat/completions", s.url);
    let (code, v) = post(&chat, &json!({"messages": [{"role": "wizard", "content": "hi"}]}));
    assert_eq!(
        (code, v["error"]["param"].clone()),
        (400, json!("messages")),
        "{v}"
    );
    let (code, v) = post(
        &chat,
        &json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("image_url"));
    // Text parts are the same message as a string.
    let as_text = post(
        &chat,
        &json!({"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 12, "temperature": 0}),
    );
    let as_parts = post(
        &chat,
        &json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "Tell me "}, {"type": "text", "text": "a story."}]}], "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(as_text.0, 200);
    assert_eq!(
        as_text.1["choices"][0]["message"]["content"],
        as_parts.1["choices"][0]["message"]["content"]
    );
    // A wrong method is a JSON 405.
    match ureq::get(&url).call() {
        Err(ureq::Error::Status(405, r)) => {
            assert_eq!(
                r.into_json::<Value>().unwrap()["error"]["code"],
                "method_not_allowed"
            )
        }
        other => panic!("{other:?}"),
    }
    still_serves(&s);
}

#[test]
fn an_api_key_guards_the_api_but_not_health_or_metrics() {
    let s = start(ServerConfig {
        api_key: Some("sk-test-123".into()),
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    let body = json!({"prompt": "Once", "max_tokens": 3});
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("sk-test-123"),
        Some("Bearer sk-test-1234"),
    ] {
        let mut req = ureq::post(&url);
        if let Some(a) = auth {
            req = req.set("authorization", a);
        }
        match req.send_json(body.clone()) {
            Err(ureq::Error::Status(401, r)) => {
                assert_eq!(r.header("www-authenticate"), Some("Bearer"));
                assert_eq!(
                    r.into_json::<Value>().unwrap()["error"]["code"],
                    "invalid_api_key"
                );
            }
            other => panic!("{auth:?}: {other:?}"),
        }
    }
    match ureq::get(&format!("{}/v1/models", s.url)).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("{other:?}"),
    }
    let ok = ureq::post(&url)
        .set("authorization", "Bearer sk-test-123")
        .send_json(body)
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ureq::get(&format!("{}/health", s.url)).call().unwrap().status(),
        200
    );
    let metrics = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("ahead_requests_total{outcome=\"401\"} 5"),
        "{metrics}"
    );
}
