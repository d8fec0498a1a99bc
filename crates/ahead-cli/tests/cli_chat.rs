//! `ahead chat` and `ahead generate --chat`: through a chat template (a user-given one on the
//! toy model, the model's own on the real SmolLM2 file), driven through piped stdin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use std::io::Write;
use std::process::Stdio;

use common::*;

/// A template for a model that has none: plain text turns.
const TRANSCRIPT: &str =
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

fn template_file(dir: &Path) -> PathBuf {
    let path = dir.join("chat.jinja");
    std::fs::write(&path, TRANSCRIPT).unwrap();
    path
}

/// Runs `ahead chat ARGS` with `input` on stdin.
fn chat(args: &[&str], input: &str) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("chat")
        .args(args)
        .current_dir(cwd.path())
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn chat_keeps_the_conversation_and_obeys_commands() {
    let dir = tempfile::tempdir().unwrap();
    let template = template_file(dir.path());
    let t = template.to_str().unwrap();
    let generate = |extra: &[&str]| {
        let mut a = vec![
            "generate",
            "--chat",
            "--chat-template",
            t,
            "--max-tokens",
            "12",
            "--json",
        ];
        a.extend_from_slice(extra);
        json(&ahead(&a), "generate --chat")
    };
    // What the session should answer: the first message alone, then the second after the
    // whole first exchange.
    let first = generate(&["--prompt", "Once upon a time"]);
    let first = first["text"].as_str().unwrap();
    let messages = dir.path().join("m.json");
    let convo = serde_json::json!([
        {"role": "user", "content": "Once upon a time"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Then"},
    ]);
    std::fs::write(&messages, convo.to_string()).unwrap();
    let second = generate(&["--messages", messages.to_str().unwrap()]);
    let alone = generate(&["--prompt", "Then"]);
    assert_ne!(alone["prompt_token_ids"], second["prompt_token_ids"]);

    let args = ["--chat-template", t, "--max-tokens", "12", "--method", "vanilla"];
    let o = chat(
        &args,
        "Once upon a time\n/stats\nThen\n/reset\nOnce upon a time\n/nonsense\n",
    );
    let out = ok(&o, "chat");
    // After /reset the conversation starts over: the first answer again.
    assert_eq!(
        out,
        format!("{first}\n{}\n{first}\n", second["text"].as_str().unwrap())
    );
    let err = stderr(&o);
    assert_eq!(
        err.matches("tok/s").count(),
        3 + 1,
        "one line per answer and /stats: {err}"
    );
    assert!(err.contains("1 answers, "), "{err}");
    assert!(err.contains("conversation cleared"), "{err}");
    assert!(err.contains("unknown command /nonsense"), "{err}");
}

#[test]
fn generate_chat_reports_the_prompt_it_fed() {
    let dir = tempfile::tempdir().unwrap();
    let template = template_file(dir.path());
    let t = template.to_str().unwrap();
    let v = json(
        &ahead(&[
            "generate",
            "--chat",
            "--chat-template",
            t,
            "--system",
            "Be kind.",
            "--prompt",
            "Hi",
            "--max-tokens",
            "5",
            "--json",
        ]),
        "generate --chat",
    );
    // The same text as a raw prompt, without BOS (the template writes what it wants).
    let raw = json(
        &ahead(&[
            "generate",
            "--prompt",
            "system: Be kind.\nuser: Hi\nassistant:",
            "--max-tokens",
            "5",
            "--json",
        ]),
        "generate --prompt",
    );
    let raw_ids = ids(&raw["prompt_token_ids"]);
    assert_eq!(
        ids(&v["prompt_token_ids"]),
        raw_ids[1..],
        "BOS is the template's to write"
    );
}

#[test]
fn chat_needs_a_template() {
    fails(
        &chat(&["--max-tokens", "4"], "Hi\n"),
        &["no chat template", "--chat-template"],
        "chat",
    );
    fails(
        &ahead(&["generate", "--chat", "--prompt", "Hi"]),
        &["no chat template"],
        "generate --chat",
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("m.json");
    std::fs::write(&bad, r#"[{"role": "user"}]"#).unwrap();
    let t = template_file(dir.path());
    fails(
        &ahead(&[
            "generate",
            "--chat",
            "--chat-template",
            t.to_str().unwrap(),
            "--messages",
            bad.to_str().unwrap(),
        ]),
        &["m.json", "content"],
        "bad --messages",
    );
    fails(
        &ahead(&[
            "generate",
            "--chat",
            "--chat-template",
            "/nonexistent.jinja",
            "--prompt",
            "x",
        ]),
        &["nonexistent.jinja"],
        "missing template",
    );
}

// ---------------------------------------------------------------------------------------------
// The real SmolLM2-135M-Instruct (skipped unless fetched; CI fetches it).

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn reference_case(name: &str) -> Value {
    let path = format!("{FIXTURES}/reference/smollm2-135m-instruct-q4_1.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone()
}

#[test]
fn smollm2_generate_chat_feeds_apply_chat_templates_ids() {
    let Some(model) = ahead_testutil::real_model(SMOLLM2) else {
        return;
    };
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "chat_user_only",
        "chat_system_user",
        "chat_two_turn",
        "chat_special_tokens_in_content",
    ] {
        let case = reference_case(name);
        let messages = dir.path().join(format!("{name}.json"));
        std::fs::write(&messages, case["messages"].to_string()).unwrap();
        let v = json(
            &ahead(&[
                "generate",
                "--model",
                model,
                "--chat",
                "--messages",
                messages.to_str().unwrap(),
                "--max-tokens",
                "8",
                "--json",
            ]),
            name,
        );
        assert_eq!(v["prompt_token_ids"], case["prompt_ids"], "{name}");
    }
    // --prompt is the user's message, under the template's default system message.
    let case = reference_case("chat_user_only");
    let user = case["messages"][0]["content"].as_str().unwrap();
    let v = json(
        &ahead(&[
            "generate",
            "--model",
            model,
            "--chat",
            "--prompt",
            user,
            "--max-tokens",
            "8",
            "--json",
        ]),
        "--chat --prompt",
    );
    assert_eq!(v["prompt_token_ids"], case["prompt_ids"]);
    // The answer ends at the turn's end (<|im_end|>), as transformers' does.
    let case = reference_case("chat_two_turn");
    let messages = dir.path().join("two.json");
    std::fs::write(&messages, case["messages"].to_string()).unwrap();
    let v = json(
        &ahead(&[
            "generate",
            "--model",
            model,
            "--chat",
            "--messages",
            messages.to_str().unwrap(),
            "--max-tokens",
            "64",
            "--json",
        ]),
        "two turns",
    );
    assert_eq!(v["finish_reason"], "stop", "{v}");
    assert_eq!(ids(&v["token_ids"]), ids(&case["greedy_ids"]), "{v}");
}

#[test]
fn smollm2_chat_holds_a_conversation() {
    let Some(model) = ahead_testutil::real_model(SMOLLM2) else {
        return;
    };
    let o = chat(
        &["--model", model.to_str().unwrap(), "--max-tokens", "48"],
        "Hello! Who are you?\nWhat is 2 + 2?\n",
    );
    let out = ok(&o, "chat");
    let answers: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert!(answers.len() >= 2, "{out}");
    assert!(answers.last().unwrap().contains('4'), "{out}");
    // Both answers ended their turn before --max-tokens.
    assert!(!stderr(&o).contains("cut at"), "{}", stderr(&o));
    assert!(
        !out.contains("<|im_end|>") && !out.contains("<|im_start|>"),
        "{out}"
    );
}

#[test]
fn smollm2_control_ids_are_valid_prompt_ids_and_ignore_eos_emits_them() {
    let Some(model) = ahead_testutil::real_model(SMOLLM2) else {
        return;
    };
    let case = reference_case("chat_two_turn");
    let prompt: Vec<String> = ids(&case["prompt_ids"]).iter().map(u64::to_string).collect();
    let want = ids(&case["greedy_ids"]);
    let n = want.len() + 6;
    let v = json(
        &ahead(&[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt-ids",
            &prompt.join(","),
            "--max-tokens",
            &n.to_string(),
            "--ignore-eos",
            "--method",
            "vanilla",
            "--json",
        ]),
        "--ignore-eos",
    );
    let got = ids(&v["token_ids"]);
    assert_eq!(got.len(), n);
    // <|im_end|> (id 2) is emitted like any token, as no text.
    assert!(got.contains(&2), "{got:?}");
    assert!(!v["text"].as_str().unwrap().contains("<|im_end|>"));
}
