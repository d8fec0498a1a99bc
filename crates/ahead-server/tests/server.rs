//! The server driven by a real HTTP client (ureq) over TCP: completions and chat, streaming and
//! not; streamed deltas concatenate to the non-streamed text; greedy output equals the engine's;
//! usage is exact; bad requests get OpenAI-shaped errors and the server keeps serving; a busy
//! server refuses with 429 before any SSE header; a client that goes away frees its slot; a
//! shutdown lets in-flight streams finish. With `AHEAD_REQUIRE_OPENAI=1` (CI) the official
//! OpenAI Python client drives it too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{BufRead, BufReader};

use std::time::Duration;

use ahead_engine::{GenerateParams, Prompt, SamplingParams};
use ahead_server::ServerConfig;
use serde_json::{json, Value};

fn greedy(prompt: &str, n: usize) -> ahead_engine::Generation {
    let p = GenerateParams {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    engine()
        .generate_one(&Prompt::from(prompt), &p, &mut |_| {})
        .unwrap()
}

#[test]
fn completions_and_chat_streamed_and_not() {
    let s = start(ServerConfig {
        model_id: "stories260K".into(),
        ..ServerConfig::default()
    });
    let (code, health) = match ureq::get(&format!("{}/health", s.url)).call() {
        Ok(r) => (r.status(), r.into_json::<Value>().unwrap()),
        Err(e) => panic!("{e}"),
    };
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    let models: Value = ureq::get(&format!("{}/v1/models", s.url))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "stories260K");

    let url = format!("{}/v1/completions", s.url);
    for method in ["vanilla", "prompt-lookup", "draft", "medusa", "lookahead"] {
        let body = json!({"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 60,
                          "temperature": 0, "ahead": {"method": method}});
        let (code, full) = post(&url, &body);
        assert_eq!(code, 200, "{full}");
        let want = greedy("Once upon a time", 60);
        assert_eq!(full["choices"][0]["text"], want.text, "{method}");
        let u = &full["usage"];
        assert_eq!(u["prompt_tokens"], want.prompt_token_ids.len());
        assert_eq!(u["completion_tokens"], want.token_ids.len());
        assert_eq!(
            u["total_tokens"],
            want.prompt_token_ids.len() + want.token_ids.len()
        );
        assert_eq!(u["ahead"]["method"], method);
        // Streamed deltas concatenate to the same text; the stream ends with a finish reason.
        let mut stream_body = body.clone();
        stream_body["stream"] = json!(true);
        stream_body["stream_options"] = json!({"include_usage": true});
        let events = sse(&url, &stream_body);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(text, want.text, "{method} streamed");
        let reasons: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(
            reasons,
            vec![full["choices"][0]["finish_reason"].as_str().unwrap()]
        );
        assert_eq!(
            chunks.last().unwrap()["usage"]["completion_tokens"],
            want.token_ids.len()
        );
    }

    let chat = format!("{}/v1/chat/completions", s.url);
    let body = json!({"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 40, "temperature": 0});
    let (code, full) = post(&chat, &body);
    assert_eq!(code, 200, "{full}");
    assert_eq!(full["object"], "chat.completion");
    assert_eq!(full["choices"][0]["message"]["role"], "assistant");
    // stories260K has no chat template: the documented transcript fallback.
    let want = greedy("user: Tell me a story.\nassistant:", 40);
    assert_eq!(full["choices"][0]["message"]["content"], want.text);
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let events = sse(&chat, &sb);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want.text);

    // n > 1 returns n choices with distinct seeds; usage counts them all.
    let (code, many) = post(
        &url,
        &json!({"prompt": "Once", "max_tokens": 10, "n": 3, "seed": 5}),
    );
    assert_eq!(code, 200);
    assert_eq!(many["choices"].as_array().unwrap().len(), 3);
    let metrics = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("ahead_requests_total{outcome=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("ahead_drafted_tokens_total{method=\"medusa\"}"));
    assert!(metrics.contains("ahead_time_to_first_token_seconds_count"));
    assert!(
        metrics.contains("ahead_position_accepted_total{position=\"1\"}"),
        "{metrics}"
    );
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let s = start(ServerConfig {
        model_id: "stories260K".into(),
        max_body_bytes: 4096,
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    let raw = |body: &str, ctype: &str| match ureq::post(&url).set("content-type", ctype).send_string(body) {
        Ok(r) => (r.status(), r.into_json::<Value>().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_json::<Value>().unwrap()),
        Err(e) => panic!("{e}"),
    };
    let cases: Vec<(String, &str, u16, Option<&str>)> = vec![
        ("{\"prompt\": \"x\"".into(), "application/json", 400, None),
        (
            "{\"prompt\": \"x\", \"max_tokens\": \"ten\"}".into(),
            "application/json",
            400,
            None,
        ),
        (
            "{\"prompt\": \"x\", \"max_tokens\": -5}".into(),
            "application/json",
            400,
            None,
        ),
        ("{\"prompt\": \"\\ud800\"}".into(), "application/json", 400, None),
        ("{\"prompt\": \"x\"}".into(), "text/plain", 415, None),
        (
            "{\"prompt\": \"\"}".into(),
            "application/json",
            400,
            Some("prompt"),
        ),
        (
            "{\"prompt\": \"x\", \"model\": \"gpt-4\"}".into(),
            "application/json",
            404,
            Some("model"),
        ),
        (
            "{\"prompt\": \"x\", \"n\": 1000}".into(),
            "application/json",
            400,
            Some("n"),
        ),
        (
            "{\"prompt\": \"x\", \"max_tokens\": 0}".into(),
            "application/json",
            400,
            Some("max_tokens"),
        ),
        (
            "{\"prompt\": \"x\", \"temperature\": -1}".into(),
            "application/json",
            400,
            None,
        ),
        (
            "{\"prompt\": \"x\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}".into(),
            "application/json",
            400,
            Some("stop"),
        ),
        ("{\"prompt\": [1, 99999]}".into(), "application/json", 400, None),
        (
            "{\"prompt\": \"x\", \"ahead\": {\"method\": \"warp\"}}".into(),
            "application/json",
            400,
            Some("ahead.method"),
        ),
        (
            format!("{{\"prompt\": \"{}\"}}", "a".repeat(10_000)),
            "application/json",
            413,
            None,
        ),
        (
            format!("{{\"prompt\": \"{}\"}}", "Once upon a time ".repeat(200)),
            "application/json",
            400,
            Some("prompt"),
        ),
    ];
    for (body, ctype, want, param) in cases {
        let (code, err) = raw(&body, ctype);
        assert_eq!(code, want, "{} -> {err}", &body[..body.len().min(60)]);
        assert!(
            err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{err}"
        );
        assert!(err["error"]["type"].is_string());
        if let Some(p) = param {
            assert_eq!(err["error"]["param"], p, "{err}");
        }
    }
    // Unknown routes are JSON 404s; the server still answers afterwards.
    match ureq::get(&format!("{}/v2/nothing", s.url)).call() {
        Err(ureq::Error::Status(404, r)) => assert!(r.into_json::<Value>().unwrap()["error"].is_object()),
        other => panic!("{other:?}"),
    }
    let (code, _) = post(&url, &json!({"prompt": "Once", "max_tokens": 5}));
    assert_eq!(code, 200);
}

#[test]
fn a_busy_server_refuses_before_the_stream_with_429() {
    let s = start(ServerConfig {
        max_concurrent: 1,
        max_queue: 0,
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    let slot = s.state.take_slot().unwrap();
    let (code, err) = post(&url, &json!({"prompt": "Once", "max_tokens": 5}));
    assert_eq!(code, 429, "{err}");
    assert_eq!(err["error"]["code"], "too_many_requests");
    // A stream is refused before any SSE header: a plain JSON error, not an event stream.
    match ureq::post(&url).send_json(json!({"prompt": "Once", "max_tokens": 5, "stream": true})) {
        Err(ureq::Error::Status(429, r)) => {
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        other => panic!("{other:?}"),
    }
    drop(slot);
    assert_eq!(post(&url, &json!({"prompt": "Once", "max_tokens": 5})).0, 200);
}

#[test]
fn a_full_queue_answers_503_and_the_queued_request_is_served_later() {
    let s = start(ServerConfig {
        max_concurrent: 1,
        max_queue: 1,
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    let slot = s.state.take_slot().unwrap();
    // One request waits in the queue (in a thread); the next finds the queue full.
    let waiting_url = url.clone();
    let waiter =
        std::thread::spawn(move || post(&waiting_url, &json!({"prompt": "Once", "max_tokens": 3})).0);
    // Wait until the waiter is queued (else this request would queue itself behind the slot).
    let depth = |s: &Server| {
        ureq::get(&format!("{}/metrics", s.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    let mut queued = false;
    for _ in 0..200 {
        if depth(&s).contains("ahead_queue_depth 1") {
            queued = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(queued, "the waiting request never queued");
    match ureq::post(&url).send_json(json!({"prompt": "Once", "max_tokens": 3})) {
        Err(ureq::Error::Status(503, r)) => {
            assert_eq!(r.header("retry-after"), Some("1"));
            assert_eq!(r.into_json::<Value>().unwrap()["error"]["code"], "queue_full");
        }
        other => panic!("{other:?}"),
    }
    let metrics = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("ahead_queue_depth 1"), "{metrics}");
    drop(slot);
    assert_eq!(
        waiter.join().unwrap(),
        200,
        "the queued request is served once the slot frees"
    );
}

#[test]
fn a_client_that_goes_away_stops_its_generation_and_frees_its_slot() {
    let s = start(ServerConfig {
        max_concurrent: 1,
        max_queue: 0,
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    // A slow request (lookahead with a wide window: ~1 ms per token here), read for one event.
    let held = ureq::post(&url)
        .send_json(
            json!({"prompt": "Once upon a time", "max_tokens": 450, "stream": true,
                          "ahead": {"ignore_eos": true, "method": "lookahead", "num_draft": 16}}),
        )
        .unwrap();
    let mut reader = BufReader::new(held.into_reader());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("data: "));
    drop(reader);
    let mut freed = false;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(10));
        if post(&url, &json!({"prompt": "Once", "max_tokens": 5})).0 == 200 {
            freed = true;
            break;
        }
    }
    assert!(freed, "the slot of a disconnected client was never freed");
    let metrics = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("outcome=\"cancelled\""), "{metrics}");
    // Fewer tokens were generated than asked: generation stopped, it did not run to the end.
    let generated: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ahead_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        generated < 450.0,
        "{generated} tokens: the cancelled request ran on"
    );
}

#[test]
fn shutdown_lets_in_flight_streams_finish() {
    let mut s = start(ServerConfig::default());
    let url = format!("{}/v1/completions", s.url);
    let r = ureq::post(&url)
        .send_json(json!({"prompt": "Once upon a time", "max_tokens": 300, "stream": true, "temperature": 0}))
        .unwrap();
    let mut reader = BufReader::new(r.into_reader());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let _ = s.stop.take().unwrap().send(());
    let mut last = String::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if line.starts_with("data: ") {
            last = line;
        }
    }
    assert_eq!(last, "data: [DONE]", "the in-flight stream was cut");
    std::thread::sleep(Duration::from_millis(100));
    assert!(ureq::get(&format!("{}/health", s.url))
        .timeout(Duration::from_secs(2))
        .call()
        .is_err());
}

/// The official OpenAI Python client against the server (required in CI, where `.ci/run`
/// installs it; elsewhere skipped with a note when the package is missing).
#[test]
fn the_official_openai_python_client_works() {
    let required = std::env::var("AHEAD_REQUIRE_OPENAI").is_ok_and(|v| v == "1");
    let has = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(!required, "AHEAD_REQUIRE_OPENAI=1 but `import openai` fails");
        eprintln!("skipped: the openai Python package is not installed (pip install openai)");
        return;
    }
    let s = start(ServerConfig {
        model_id: "stories260K".into(),
        ..ServerConfig::default()
    });
    let want = greedy("Once upon a time", 50);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = std::process::Command::new("python3")
        .args([script, &format!("{}/v1", s.url)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["completion"], want.text);
    assert_eq!(got["streamed"], want.text);
    assert_eq!(got["completion_tokens"], want.token_ids.len());
    assert!(got["chat"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(got["chat"], got["chat_streamed"]);
    assert_eq!(got["not_found_status"], 404);
    assert_eq!(got["completion_logprobs"], json!([8, 2]));
    assert_eq!(got["chat_logprobs"], json!([8, 2, true]));
    assert_eq!(got["structured"], json!(["age", "name"]));
    assert_eq!(got["after_tool_call"], "length");
}

/// A bounded load test: 200 requests from 16 clients at once, mixed methods, streaming and not,
/// some clients going away mid-stream. Every request completes or fails cleanly (no hang, no
/// 5xx but queue-full), and afterwards nothing is left running or queued.
#[test]
fn two_hundred_mixed_requests_from_sixteen_clients_all_end_cleanly() {
    let s = start(ServerConfig {
        max_concurrent: 4,
        max_queue: 32,
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    let methods = ["vanilla", "auto", "draft", "medusa", "lookahead", "prompt-lookup"];
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
                let mut outcomes = Vec::new();
                for r in 0..13 {
                    let i = c * 13 + r;
                    if i >= 200 {
                        break;
                    }
                    let stream = i % 3 == 0;
                    let body = json!({"prompt": "Once upon a time", "max_tokens": 24 + i % 40,
                        "temperature": if i % 2 == 0 { 0.0 } else { 0.8 }, "seed": i, "stream": stream,
                        "ahead": {"method": methods[i % methods.len()]}});
                    match agent.post(&url).send_json(body) {
                        Ok(resp) if stream => {
                            let mut lines = BufReader::new(resp.into_reader()).lines();
                            if i % 6 == 0 {
                                // Go away after the first event.
                                let _ = lines.next();
                                outcomes.push(0);
                                continue;
                            }
                            let last = lines
                                .map_while(|l| l.ok())
                                .filter(|l| l.starts_with("data: "))
                                .last();
                            assert_eq!(last.as_deref(), Some("data: [DONE]"), "request {i}");
                            outcomes.push(200);
                        }
                        Ok(resp) => {
                            let v: Value = resp.into_json().unwrap();
                            assert!(v["choices"][0]["text"].is_string(), "request {i}: {v}");
                            outcomes.push(200);
                        }
                        Err(ureq::Error::Status(code, _)) => outcomes.push(code),
                        Err(e) => panic!("request {i}: {e}"),
                    }
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<u16> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(outcomes.len(), 200);
    assert!(
        outcomes.iter().all(|&c| matches!(c, 0 | 200 | 503)),
        "{outcomes:?}"
    );
    assert!(outcomes.iter().filter(|&&c| c == 200).count() > 150);
    // Nothing leaks: no request left running or queued once the clients are done.
    let mut settled = false;
    for _ in 0..200 {
        let m = ureq::get(&format!("{}/metrics", s.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        if m.contains("ahead_running 0") && m.contains("ahead_queue_depth 0") {
            settled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(settled, "requests were left running or queued");
    assert_eq!(post(&url, &json!({"prompt": "Once", "max_tokens": 4})).0, 200);
}

/// A generation that runs past the time limit ends early with finish reason `length`.
#[test]
fn the_generation_time_limit_cuts_long_requests() {
    // A millisecond: 450 tokens of the toy model take 20 ms or more even on a fast machine
    // (at 0.05 s a quiet machine finished them in time).
    let s = start(ServerConfig {
        max_generation_seconds: 0.001,
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    // A slow request: lookahead with a wide window, through end-of-sequence.
    let body = json!({"prompt": "Once upon a time", "max_tokens": 450,
                      "ahead": {"ignore_eos": true, "method": "lookahead", "num_draft": 16}});
    let (code, full) = post(&url, &body);
    assert_eq!(code, 200, "{full}");
    assert_eq!(full["choices"][0]["finish_reason"], "length");
    assert!(
        full["usage"]["completion_tokens"].as_u64().unwrap() < 450,
        "{full}"
    );
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let events = sse(&url, &sb);
    let last_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last_chunk["choices"][0]["finish_reason"], "length");
}

#[test]
fn configured_defaults_serve_requests_that_name_no_method() {
    let s = start(ServerConfig {
        defaults: GenerateParams {
            method: ahead_engine::Method::Draft,
            num_draft: Some(2),
            ..GenerateParams::default()
        },
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    let body = json!({"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0});
    let (code, v) = post(&url, &body);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["usage"]["ahead"]["method"], "draft");
    assert!(v["usage"]["ahead"]["drafted_tokens"].as_u64().unwrap() >= 2);
    let mut plain = body.clone();
    plain["ahead"] = json!({"method": "vanilla"});
    let (_, p) = post(&url, &plain);
    assert_eq!(p["usage"]["ahead"]["method"], "vanilla");
    assert_eq!(
        p["choices"][0]["text"], v["choices"][0]["text"],
        "lossless either way"
    );
}

#[test]
fn a_kv_budget_reserves_lookaheads_window_as_well_as_its_drafts() {
    // Lookahead (15, 5, 15) verifies up to 16 drafts beside a window of 60 rows: a request
    // reserves prompt + max_tokens + 76 slots, not + 32.
    let s = start(ServerConfig {
        max_kv_tokens: 150,
        defaults: GenerateParams {
            method: ahead_engine::Method::Lookahead,
            lookahead_window: Some(15),
            lookahead_ngram: Some(5),
            lookahead_guesses: Some(15),
            ..GenerateParams::default()
        },
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    let (code, v) = post(&url, &json!({"prompt": "Once", "max_tokens": 80}));
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["error"]["code"], "kv_budget_exceeded");
    let (code, v) = post(
        &url,
        &json!({"prompt": "Once", "max_tokens": 40, "temperature": 0}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["usage"]["ahead"]["method"], "lookahead");
}

#[test]
fn a_kv_budget_refuses_what_can_never_fit_and_returns_every_reservation() {
    let s = start(ServerConfig {
        max_kv_tokens: 300,
        ..ServerConfig::default()
    });
    let url = format!("{}/v1/completions", s.url);
    let (code, v) = post(&url, &json!({"prompt": "Once", "max_tokens": 400}));
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["error"]["code"], "kv_budget_exceeded");
    assert_eq!(v["error"]["param"], "max_tokens");
    // Three choices of ~100 tokens each fit together.
    let (code, v) = post(&url, &json!({"prompt": "Once", "max_tokens": 60, "n": 3}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
    // Eight requests at once: at most three fit the budget at a time; all are served.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body =
                    json!({"prompt": "Once upon a time", "max_tokens": 60, "seed": i, "stream": i % 2 == 0});
                if i % 2 == 0 {
                    assert_eq!(sse(&url, &body).last().map(String::as_str), Some("[DONE]"));
                } else {
                    assert_eq!(post(&url, &body).0, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Streams and non-streams alike gave their reservations back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.state.kv_available() != Some(300) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.state.kv_available(), Some(300));
}
