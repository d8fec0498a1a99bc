//! The defects a black-box client found (issue 18's reproductions), each as the client saw it:
//! parameters silently dropped, a Nagle stall on reused connections, a stream that says 200 to
//! a method it cannot run, a vanished client left uncounted, error bodies that name no field,
//! OpenAI's sampling ranges and codes, assistant messages without content, drain invisible to
//! `/health`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ahead_engine::{GenerateParams, Method, Prompt, SamplingParams};
use ahead_server::ServerConfig;
use serde_json::{json, Value};

fn completions(s: &Server) -> String {
    format!("{}/v1/completions", s.url)
}

fn chat(s: &Server) -> String {
    format!("{}/v1/chat/completions", s.url)
}

/// Asserts a 400 whose error names `param`.
fn refused(url: &str, body: Value, param: &str) -> Value {
    let (status, r) = post(url, &body);
    assert_eq!(status, 400, "{body}: {r}");
    assert_eq!(r["error"]["param"], param, "{body}: {r}");
    r
}

fn ok(url: &str, body: Value) -> Value {
    let (status, r) = post(url, &body);
    assert_eq!(status, 200, "{body}: {r}");
    r
}

#[test]
fn parameters_ahead_does_not_serve_are_refused_by_name_and_neutral_values_accepted() {
    let s = start(ServerConfig::default());
    let (c, ch) = (completions(&s), chat(&s));
    let base = json!({"prompt": "Hi", "max_tokens": 3});
    let with = |field: &str, v: Value| {
        let mut b = base.clone();
        b[field] = v;
        b
    };
    for (field, v) in [
        ("best_of", json!(2)),
        ("echo", json!(true)),
        ("suffix", json!("tail")),
        ("tools", json!([{"type": "function", "function": {"name": "f"}}])),
        ("tool_choice", json!("required")),
    ] {
        let r = refused(&c, with(field, v.clone()), field);
        assert!(
            r["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {r}"
        );
    }
    // OpenAI's ranges.
    let r = refused(&c, with("presence_penalty", json!(5)), "presence_penalty");
    assert!(r["error"]["message"].as_str().unwrap().contains("-2"), "{r}");
    refused(&c, with("frequency_penalty", json!(-2.5)), "frequency_penalty");
    refused(&c, with("logit_bias", json!({"50": 101})), "logit_bias");
    refused(&c, with("logit_bias", json!({"fifty": 1})), "logit_bias");
    refused(&c, with("logit_bias", json!({"999999": 1})), "logit_bias");
    refused(&c, with("min_tokens", json!(4)), "min_tokens");
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    // Values that ask for nothing are served.
    for (field, v) in [
        ("logprobs", json!(null)),
        ("logit_bias", json!({})),
        ("response_format", json!({"type": "text"})),
        ("response_format", json!(null)),
        ("presence_penalty", json!(0)),
        ("frequency_penalty", json!(0.0)),
        ("min_tokens", json!(0)),
        ("best_of", json!(1)),
        ("echo", json!(false)),
        ("suffix", json!(null)),
        ("tools", json!([])),
        ("tool_choice", json!("none")),
        ("user", json!("someone")),
    ] {
        ok(&c, with(field, v));
    }
    ok(&ch, json!({"messages": msgs, "max_tokens": 3, "logprobs": false}));
}

#[test]
fn penalties_bias_and_minimum_length_reach_the_target() {
    let s = start(ServerConfig::default());
    let body = json!({"prompt": "Lily and Ben went to the park. Lily and Ben went", "max_tokens": 40,
                      "temperature": 0, "presence_penalty": 0.8, "frequency_penalty": 0.5,
                      "logit_bias": {"300": 4, "301": -100}, "min_tokens": 5,
                      "ahead": {"method": "prompt-lookup"}});
    let got = ok(&completions(&s), body);
    let want = engine()
        .generate_one(
            &Prompt::from("Lily and Ben went to the park. Lily and Ben went"),
            &GenerateParams {
                max_tokens: 40,
                method: Method::Vanilla,
                adjust: ahead_core::sampling::LogitAdjust {
                    presence_penalty: 0.8,
                    frequency_penalty: 0.5,
                    logit_bias: vec![(300, 4.0), (301, -100.0)],
                    min_tokens: 5,
                },
                ..GenerateParams::default()
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(got["choices"][0]["text"], want.text);
}

#[test]
fn top_k_min_p_and_repetition_penalty_reach_the_sampler() {
    let s = start(ServerConfig::default());
    let c = completions(&s);
    let text = |r: &Value| r["choices"][0]["text"].as_str().unwrap().to_string();
    let greedy = text(&ok(
        &c,
        json!({"prompt": "Once upon a time", "max_tokens": 30, "temperature": 0}),
    ));
    // Keeping only the most likely token is greedy decoding, whatever the temperature.
    for keep_best in [json!({"top_k": 1}), json!({"min_p": 1.0})] {
        let mut body = json!({"prompt": "Once upon a time", "max_tokens": 30, "temperature": 1.5, "seed": 4});
        body.as_object_mut()
            .unwrap()
            .extend(keep_best.as_object().unwrap().clone());
        assert_eq!(text(&ok(&c, body.clone())), greedy, "{body}");
    }
    // The penalty changes greedy text exactly as the engine's does.
    let penalised = text(&ok(
        &c,
        json!({"prompt": "Once upon a time", "max_tokens": 30, "temperature": 0, "repetition_penalty": 1.5}),
    ));
    let want = engine()
        .generate_one(
            &Prompt::from("Once upon a time"),
            &GenerateParams {
                max_tokens: 30,
                method: Method::Vanilla,
                sampling: SamplingParams {
                    repetition_penalty: 1.5,
                    ..SamplingParams::greedy()
                },
                ..GenerateParams::default()
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(penalised, want.text);
    assert_ne!(penalised, greedy);
    refused(&c, json!({"prompt": "Hi", "top_k": -2}), "top_k");
    ok(&c, json!({"prompt": "Hi", "max_tokens": 2, "top_k": -1}));
    refused(&c, json!({"prompt": "Hi", "min_p": 1.5}), "min_p");
    refused(
        &c,
        json!({"prompt": "Hi", "repetition_penalty": 0}),
        "repetition_penalty",
    );
}

#[test]
fn streams_on_a_reused_connection_start_without_a_nagle_stall() {
    let s = start(ServerConfig::default());
    let agent = ureq::AgentBuilder::new().build();
    let url = completions(&s);
    let body = json!({"prompt": "Hi", "max_tokens": 1, "stream": true});
    let mut times = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let mut r = agent.post(&url).send_json(body.clone()).unwrap().into_reader();
        let mut all = String::new();
        r.read_to_string(&mut all).unwrap();
        assert!(all.contains("[DONE]"));
        times.push(t.elapsed());
    }
    times.sort();
    // Delayed ACKs hold a small write for 40 ms when Nagle's algorithm is on; a one-token
    // stream on this model takes a millisecond.
    assert!(times[5] < Duration::from_millis(30), "median {:?}", times[5]);
}

#[test]
fn a_stream_asking_for_a_method_without_its_drafter_gets_400_before_any_event() {
    let s = start(ServerConfig::default());
    // The default model has no EAGLE head.
    let r = refused(
        &completions(&s),
        json!({"prompt": "Hi", "max_tokens": 3, "stream": true, "ahead": {"method": "eagle"}}),
        "ahead.method",
    );
    assert!(r["error"]["message"].as_str().unwrap().contains("EAGLE"), "{r}");
}

/// The first line of `/metrics` that starts with `prefix`, as a number.
fn metric(s: &Server, prefix: &str) -> Option<f64> {
    let text = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn a_client_that_leaves_a_non_streaming_request_is_counted_cancelled() {
    let s = start(ServerConfig {
        max_concurrent: 1,
        log: ahead_server::LogFormat::Text,
        ..ServerConfig::default()
    });
    let lines = s.state.capture_logs();
    // The only slot is taken: the request waits in the queue, its client leaves.
    let slot = s.state.take_slot().unwrap();
    let addr = s.url.trim_start_matches("http://").to_string();
    let body = json!({"prompt": "Once upon a time", "max_tokens": 20}).to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let queued = || metric(&s, "ahead_queue_depth ");
    for _ in 0..200 {
        if queued() == Some(1.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(queued(), Some(1.0));
    drop(sock);
    let mut counted = None;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(10));
        counted = metric(&s, "ahead_requests_total{outcome=\"cancelled\"}");
        if counted.is_some() {
            break;
        }
    }
    drop(slot);
    assert_eq!(counted, Some(1.0));
    assert_eq!(queued(), Some(0.0));
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("request endpoint=/v1/completions status=cancelled")
            && lines[0].contains("error=\"the client went away\""),
        "{lines:?}"
    );
}

#[test]
fn errors_name_the_field_and_use_openais_ranges_and_codes() {
    let s = start(ServerConfig::default());
    let (c, ch) = (completions(&s), chat(&s));
    // Wrong types name their field.
    for (field, v) in [
        ("temperature", json!("0.5")),
        ("max_tokens", json!("3")),
        ("stream", json!("yes")),
    ] {
        let mut body = json!({"prompt": "Hi"});
        body[field] = v;
        let r = refused(&c, body, field);
        assert!(r["error"]["message"].as_str().unwrap().contains(field), "{r}");
    }
    refused(
        &ch,
        json!({"messages": [{"role": "user", "content": 5}]}),
        "messages[0].content",
    );
    refused(&c, json!({"prompt": {"text": "Hi"}}), "prompt");
    // OpenAI's ranges, each naming its field.
    refused(&c, json!({"prompt": "Hi", "temperature": 2.5}), "temperature");
    refused(&c, json!({"prompt": "Hi", "temperature": -1}), "temperature");
    refused(&c, json!({"prompt": "Hi", "top_p": 1.5}), "top_p");
    ok(&c, json!({"prompt": "Hi", "max_tokens": 2, "temperature": 2}));
    // The context error has OpenAI's code.
    let long = "Once upon a time ".repeat(400);
    let r = refused(&c, json!({"prompt": long, "max_tokens": 2}), "prompt");
    assert_eq!(r["error"]["code"], "context_length_exceeded", "{r}");
    let r = refused(
        &ch,
        json!({"messages": [{"role": "user", "content": long}], "max_tokens": 2}),
        "messages",
    );
    assert_eq!(r["error"]["code"], "context_length_exceeded", "{r}");
}

#[test]
fn a_prompt_far_past_the_context_is_refused_without_tokenizing_it() {
    let s = start(ServerConfig::default());
    // 2 MB of text: no tokenizer piece is that long, so it cannot fit 512 tokens.
    let huge = "Once upon a time ".repeat(120_000);
    let t = Instant::now();
    let r = refused(
        &completions(&s),
        json!({"prompt": huge, "max_tokens": 2}),
        "prompt",
    );
    assert_eq!(r["error"]["code"], "context_length_exceeded", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("bytes"), "{r}");
    // Not a speed goal: tokenizing 2 MB takes seconds here, the byte check microseconds.
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let r = refused(
        &chat(&s),
        json!({"messages": [{"role": "user", "content": huge}], "max_tokens": 2}),
        "messages",
    );
    assert!(r["error"]["message"].as_str().unwrap().contains("bytes"), "{r}");
}

#[test]
fn assistant_messages_without_content_and_tool_call_history_are_served() {
    let s = start(ServerConfig::default());
    let ch = chat(&s);
    ok(
        &ch,
        json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": null},
                             {"role": "user", "content": "Go on"}], "max_tokens": 3}),
    );
    // What the SDK sends back after a tool call: the call, then the tool's answer.
    let call = json!({"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}});
    let with_call = ok(
        &ch,
        json!({"messages": [{"role": "user", "content": "Weather?"},
                            {"role": "assistant", "content": null, "tool_calls": [call]},
                            {"role": "tool", "tool_call_id": "c1", "content": "cold"}], "max_tokens": 3}),
    );
    let without = ok(
        &ch,
        json!({"messages": [{"role": "user", "content": "Weather?"},
                            {"role": "assistant", "content": null},
                            {"role": "tool", "tool_call_id": "c1", "content": "cold"}], "max_tokens": 3}),
    );
    assert!(
        with_call["usage"]["prompt_tokens"].as_u64() > without["usage"]["prompt_tokens"].as_u64(),
        "the call is in the prompt"
    );
    refused(
        &ch,
        json!({"messages": [{"role": "user", "content": "Hi", "tool_calls": [call]}]}),
        "messages[0].tool_calls",
    );
    refused(
        &ch,
        json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function"}]}]}),
        "messages[0].tool_calls[0]",
    );
    refused(
        &ch,
        json!({"messages": [{"role": "user", "content": null}]}),
        "messages[0].content",
    );
}

#[test]
fn health_answers_503_while_draining() {
    let mut s = start(ServerConfig::default());
    // A request in flight: it holds a slot.
    let slot = s.state.take_slot().unwrap();
    let _ = s.stop.take().unwrap().send(());
    std::thread::sleep(Duration::from_millis(100));
    match ureq::get(&format!("{}/health", s.url)).call() {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 503),
        other => panic!("/health while draining: {other:?}"),
    }
    // New work is refused while draining.
    let (status, r) = post(&completions(&s), &json!({"prompt": "Hi", "max_tokens": 2}));
    assert_eq!(status, 503, "{r}");
    assert_eq!(r["error"]["code"], "shutting_down");
    // Once the last request is done, the server stops.
    drop(slot);
    std::thread::sleep(Duration::from_millis(200));
    assert!(ureq::get(&format!("{}/health", s.url))
        .timeout(Duration::from_secs(2))
        .call()
        .is_err());
}

#[test]
fn a_template_error_reads_once_and_names_messages() {
    let mut e = ahead_engine::Engine::builder().build().unwrap();
    let template = "{{ raise_exception('this model takes no system role') }}";
    e.set_chat_template(ahead_model::tokenizer::ChatTemplate::new(template.into()).unwrap());
    let s = start_with(std::sync::Arc::new(e), ServerConfig::default());
    let r = refused(
        &chat(&s),
        json!({"messages": [{"role": "system", "content": "Be brief"}]}),
        "messages",
    );
    assert_eq!(
        r["error"]["message"], "chat template: template raised an exception: this model takes no system role",
        "{r}"
    );
}

#[test]
fn every_request_gets_a_log_line_and_a_queue_wait_has_a_deadline() {
    let s = start(ServerConfig {
        log: ahead_server::LogFormat::Json,
        max_concurrent: 1,
        max_queue_seconds: 0.2,
        ..ServerConfig::default()
    });
    let lines = s.state.capture_logs();
    let c = completions(&s);
    ok(
        &c,
        json!({"prompt": "Once", "max_tokens": 5, "ahead": {"method": "prompt-lookup"}}),
    );
    let events = sse(&c, &json!({"prompt": "Once", "max_tokens": 4, "stream": true}));
    assert_eq!(events.last().unwrap(), "[DONE]");
    refused(&c, json!({"prompt": "Hi", "temperature": 9}), "temperature");
    // With the only slot taken (once the stream's worker has let it go), a request waits
    // 0.2 s, then gets 503 with Retry-After.
    let slot = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(5));
            s.state.take_slot()
        })
        .unwrap();
    let t = Instant::now();
    match ureq::post(&c).send_json(json!({"prompt": "Hi", "max_tokens": 2})) {
        Err(ureq::Error::Status(503, r)) => {
            assert_eq!(r.header("retry-after"), Some("1"));
            let body: Value = r.into_json().unwrap();
            assert_eq!(body["error"]["code"], "queue_timeout", "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(200));
    drop(slot);
    std::thread::sleep(Duration::from_millis(50));
    let lines: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let done = &lines[0];
    assert_eq!(done["status"], "200");
    assert_eq!(done["endpoint"], "/v1/completions");
    assert_eq!(done["method"], "prompt-lookup");
    assert_eq!(done["completion_tokens"], 5);
    assert!(done["total_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[1]["status"], "200");
    assert!(
        lines[1]["ttft_ms"].as_f64().is_some(),
        "a stream logs its first token"
    );
    assert_eq!(lines[2]["status"], "400");
    assert_eq!(lines[3]["status"], "503");
    assert_eq!(lines[3]["error"], "queue_timeout");
}

#[test]
fn logprobs_are_the_models_own_whatever_the_method_streamed_or_not() {
    let s = start(ServerConfig::default());
    let (c, ch) = (completions(&s), chat(&s));
    let body = |method: &str| {
        json!({"prompt": "Lily and Ben went to the park. Lily and Ben went", "max_tokens": 24,
               "temperature": 0, "logprobs": 2, "ahead": {"method": method, "num_draft": 4}})
    };
    let vanilla = ok(&c, body("vanilla"));
    let lp = &vanilla["choices"][0]["logprobs"];
    let n = vanilla["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    assert_eq!(lp["tokens"].as_array().unwrap().len(), n, "{lp}");
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2, "{lp}");
    assert_eq!(lp["text_offset"][0], 0);
    // The tokens' texts spell the completion.
    let spelled: String = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(spelled, vanilla["choices"][0]["text"].as_str().unwrap());
    let numbers = |r: &Value| -> Vec<f64> {
        r["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    for method in [
        "prompt-lookup",
        "draft",
        "medusa",
        "lookahead",
        "recycling",
        "suffix",
    ] {
        let got = ok(&c, body(method));
        assert_eq!(
            got["choices"][0]["text"], vanilla["choices"][0]["text"],
            "{method}"
        );
        for (a, b) in numbers(&got).iter().zip(numbers(&vanilla)) {
            assert!((a - b).abs() < 1e-4, "{method}: {a} vs {b}");
        }
    }
    // Streamed: the chunks' entries together are the whole answer's.
    let mut streaming = body("prompt-lookup");
    streaming["stream"] = json!(true);
    let mut streamed = Vec::new();
    for e in sse(&c, &streaming) {
        if e == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(&e).unwrap();
        if let Some(l) = v["choices"][0]["logprobs"]["token_logprobs"].as_array() {
            streamed.extend(l.iter().map(|x| x.as_f64().unwrap()));
        }
    }
    assert_eq!(streamed.len(), n);
    for (a, b) in streamed.iter().zip(numbers(&vanilla)) {
        assert!((a - b).abs() < 1e-4, "streamed: {a} vs {b}");
    }
    // Chat's shape.
    let r = ok(
        &ch,
        json!({"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 6,
               "temperature": 0, "logprobs": true, "top_logprobs": 3}),
    );
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(
        content.len(),
        r["usage"]["completion_tokens"].as_u64().unwrap() as usize
    );
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(
        content[0]["token"], content[0]["top_logprobs"][0]["token"],
        "greedy takes the best"
    );
    assert!(content[0]["bytes"].is_array());
    // Out of OpenAI's ranges, or top_logprobs without logprobs.
    refused(&c, json!({"prompt": "Hi", "logprobs": 6}), "logprobs");
    refused(
        &ch,
        json!({"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 2}),
        "top_logprobs",
    );
    refused(
        &ch,
        json!({"messages": [{"role": "user", "content": "Hi"}], "logprobs": true, "top_logprobs": 21}),
        "top_logprobs",
    );
}

#[test]
fn a_conversations_next_turn_reuses_its_prefix_and_says_so() {
    let cached = start_with(
        std::sync::Arc::new(
            ahead_engine::Engine::builder()
                .build()
                .unwrap()
                .with_prefix_cache(64 << 20),
        ),
        ServerConfig::default(),
    );
    let plain = start(ServerConfig::default());
    let first = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.";
    let turn = |s: &Server, prompt: &str| {
        ok(
            &completions(s),
            json!({"prompt": prompt, "max_tokens": 30, "temperature": 0}),
        )
    };
    let answer = turn(&cached, first);
    assert_eq!(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let second = format!(
        "{first}{} One day, she",
        answer["choices"][0]["text"].as_str().unwrap()
    );
    let reused = turn(&cached, &second);
    let cached_tokens = reused["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached_tokens > 20, "{reused}");
    assert_eq!(
        reused["choices"][0]["text"],
        turn(&plain, &second)["choices"][0]["text"]
    );
    assert_eq!(
        metric(&cached, "ahead_prompt_cached_tokens_total "),
        Some(cached_tokens as f64)
    );
}

#[test]
fn response_format_constrains_the_answer_to_json_streamed_or_not() {
    let s = start(ServerConfig::default());
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                        "age": {"type": "integer", "minimum": 0, "maximum": 99}},
                        "required": ["name", "age"], "additionalProperties": false});
    let body = |method: &str, stream: bool| {
        json!({"messages": [{"role": "user", "content": "Who are you?"}], "max_tokens": 80, "temperature": 0,
               "stream": stream, "ahead": {"method": method},
               "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}})
    };
    let answer = ok(&chat(&s), body("vanilla", false));
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(v["name"].is_string() && v["age"].is_u64(), "{v}");
    for method in ["prompt-lookup", "draft", "recycling"] {
        let got = ok(&chat(&s), body(method, false));
        assert_eq!(got["choices"][0]["message"]["content"], text, "{method}");
    }
    let streamed: String = sse(&chat(&s), &body("prompt-lookup", true))
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, text);
    let r = ok(
        &completions(&s),
        json!({"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0,
               "response_format": {"type": "json_object"}}),
    );
    // Any JSON object: the toy model may not close its strings within 60 tokens, but what it
    // wrote is an object's start, and a finished answer is an object.
    let text = r["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with('{'), "{text:?}");
    if r["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<Value>(text).unwrap().is_object());
    }
    refused(
        &completions(&s),
        json!({"prompt": "Hi", "response_format": {"type": "xml"}}),
        "response_format",
    );
    refused(
        &completions(&s),
        json!({"prompt": "Hi", "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
        "response_format",
    );
}
