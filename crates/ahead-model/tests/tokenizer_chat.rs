//! Chat templates: real-world template shapes render as `transformers` does; hostile templates
//! fail with an error instead of hanging or exhausting memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ahead_model::tokenizer::{ChatMessage, ChatTemplate};
use ahead_model::ModelError;

/// Llama 3 Instruct's template (as shipped in `tokenizer_config.json`).
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// Qwen2.5's ChatML template, without the tool-calling branches.
const CHATML: &str = r#"{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

fn msgs() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "  Hi there!  "),
        ChatMessage::new("assistant", "Hello."),
        ChatMessage::new("user", "Tell me a story."),
    ]
}

#[test]
fn llama3_template_renders() {
    let t = ChatTemplate::new(LLAMA3.into()).unwrap();
    let out = t
        .render(&msgs(), true, "<|begin_of_text|>", "<|eot_id|>")
        .unwrap();
    assert_eq!(
        out,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nTell me a story.<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let no_prompt = t.render(&msgs()[1..2], false, "<B>", "").unwrap();
    assert_eq!(
        no_prompt,
        "<B><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
    );
}

#[test]
fn chatml_template_renders() {
    let t = ChatTemplate::new(CHATML.into()).unwrap();
    let out = t.render(&msgs(), true, "", "<|im_end|>").unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi there!  <|im_end|>\n\
         <|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    let out = t.render(&msgs()[3..], false, "", "").unwrap();
    assert!(out.starts_with("<|im_start|>system\nYou are Qwen"));
    assert!(out.ends_with("<|im_start|>user\nTell me a story.<|im_end|>\n"));
}

#[test]
fn template_helpers() {
    let t = ChatTemplate::new(
        "{{ strftime_now('%Y')|length }} {{ messages[0]|tojson }} {{ tools is none }} {{ 'a b'.split()|join('-') }}"
            .into(),
    )
    .unwrap();
    assert_eq!(
        t.render(&msgs()[..1], false, "", "").unwrap(),
        r#"4 {"role":"system","content":"Be brief."} True a-b"#
    );
}

#[test]
fn raise_exception_is_a_template_error() {
    let t = ChatTemplate::new(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
            .into(),
    )
    .unwrap();
    let err = t.render(&msgs(), false, "", "").unwrap_err();
    assert!(
        matches!(&err, ModelError::Template(m) if m.contains("Conversation roles must alternate")),
        "{err}"
    );
    assert!(t.render(&msgs()[1..], false, "", "").is_ok());
}

#[test]
fn hostile_templates_fail_fast() {
    let hostile = [
        // Unbounded work: nested loops far past the fuel limit.
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        // Huge output.
        "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
        // Unbounded recursion.
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        // No filesystem access.
        "{% include '/etc/passwd' %}",
    ];
    for src in hostile {
        let start = std::time::Instant::now();
        let t = ChatTemplate::new(src.into()).unwrap();
        let err = t.render(&msgs(), false, "", "").unwrap_err();
        assert!(matches!(err, ModelError::Template(_)), "{src}: {err}");
        assert!(start.elapsed().as_secs() < 20, "{src} took {:?}", start.elapsed());
    }
    assert!(matches!(
        ChatTemplate::new("{% for %}".into()),
        Err(ModelError::Template(_))
    ));
}
