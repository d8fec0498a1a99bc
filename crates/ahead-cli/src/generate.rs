//! `ahead generate`: one completion, of a raw prompt or (with `--chat`) of a chat through the
//! model's template.

use std::io::Write;
use std::path::PathBuf;

use ahead_engine::{Engine, Prompt};
use ahead_model::tokenizer::ChatMessage;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;

use crate::decoding::DecodeArgs;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Prompt text (the model's BOS rule applies); with --chat, the user's message.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// Prompt as exact token ids, comma-separated (e.g. 1,403,407); control tokens included.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Treat the prompt as a chat: --prompt is the user's message, rendered through the model's
    /// chat template (with the template's default system message unless --system is given).
    #[arg(long, conflicts_with = "prompt_ids")]
    pub chat: bool,
    /// With --chat: the system message.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// With --chat: the whole conversation, an OpenAI-style JSON list of
    /// {"role", "content"} (instead of --prompt and --system).
    #[arg(long, requires = "chat", conflicts_with_all = ["prompt", "system"])]
    pub messages: Option<PathBuf>,
    /// Print one JSON object (text, ids, the prompt's ids, finish reason, stats) instead of
    /// streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// One message of `--messages FILE.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageFile {
    role: String,
    content: String,
}

/// The conversation `--chat` describes.
fn chat_messages(a: &GenerateArgs) -> Result<Vec<ChatMessage>> {
    if let Some(path) = &a.messages {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let list: Vec<MessageFile> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected a JSON list of {{\"role\", \"content\"}}",
                path.display()
            )
        })?;
        if list.is_empty() {
            bail!("{}: the conversation is empty", path.display());
        }
        return Ok(list
            .into_iter()
            .map(|m| ChatMessage::new(m.role, m.content))
            .collect());
    }
    let mut messages = Vec::new();
    if let Some(system) = &a.system {
        messages.push(ChatMessage::new("system", system.as_str()));
    }
    messages.push(ChatMessage::new("user", a.prompt.clone().unwrap_or_default()));
    Ok(messages)
}

/// The exact prompt ids to feed.
fn prompt(a: &GenerateArgs, engine: &Engine) -> Result<Prompt> {
    if a.chat {
        let chat = engine.chat_prompt(&chat_messages(a)?, true)?;
        return Ok(Prompt::Ids(chat.ids));
    }
    Ok(match (&a.prompt, &a.prompt_ids) {
        (_, Some(ids)) => Prompt::Ids(ids.clone()),
        // An empty text prompt starts from BOS alone, as llama2.c does.
        (None, None) => Prompt::Ids(engine.tokenizer().bos_id().into_iter().collect()),
        (Some(t), None) if t.is_empty() => Prompt::Ids(engine.tokenizer().bos_id().into_iter().collect()),
        (Some(text), None) => Prompt::Text(text.clone()),
    })
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let (engine, params) = a.decode.load()?;
    let prompt = prompt(&a, &engine)?;
    if a.json {
        let out = engine.generate_one(&prompt, &params, &mut |_| {})?;
        let line = serde_json::to_string(&out)?;
        writeln!(std::io::stdout().lock(), "{line}")?;
        engine.save_suffix_store()?;
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    let mut write_err = None;
    let out = engine.generate_one(&prompt, &params, &mut |delta| {
        if write_err.is_none() {
            if let Err(e) = stdout.write_all(delta.as_bytes()).and_then(|()| stdout.flush()) {
                write_err = Some(e);
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    writeln!(stdout)?;
    let s = &out.stats;
    eprintln!(
        "[{} tokens, {:.1} tok/s, {} forwards, finish: {:?}]",
        s.generated_tokens, s.tokens_per_second, s.target_forwards, out.finish_reason
    );
    engine.save_suffix_store()?;
    Ok(())
}
