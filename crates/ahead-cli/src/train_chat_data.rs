//! `ahead train chat-data`: the target's own greedy answers to chat instructions made from
//! text corpora (`ahead_train::instructions`), through its chat template, written as token ids
//! (`ahead_train::chat_data`) for `train ngram --data` and `train medusa --data`. Generating is
//! the slow part, so it is done once and shared by every trainer.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use ahead_engine::{Engine, GenerateParams, Method, Prompt};
use ahead_model::tokenizer::ChatMessage;
use ahead_train::chat_data::{self, ChatRecord};
use ahead_train::instructions::{instructions, Instruction, Sources};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::bench::methods::progress;

#[derive(Debug, Args)]
pub struct ChatDataArgs {
    /// The chat model whose answers are recorded (any source).
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A Jinja chat template to use instead of the model's own.
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// Prose to make instructions from (repeatable; paragraphs separated by blank lines). Its
    /// tail (--held-out) is left out.
    #[arg(long)]
    pub prose: Vec<PathBuf>,
    /// Python source to make code instructions from (repeatable).
    #[arg(long)]
    pub code: Vec<PathBuf>,
    /// Text in another language to translate into English, as LANGUAGE:FILE (repeatable;
    /// paragraphs separated by blank lines), e.g. German:german.txt.
    #[arg(long, value_parser = parse_foreign)]
    pub foreign: Vec<(String, PathBuf)>,
    /// Documents (news, encyclopedia articles) to summarise and to answer questions from, the
    /// questions written by the target itself (repeatable; paragraphs separated by blank lines).
    #[arg(long)]
    pub documents: Vec<PathBuf>,
    /// Instructions (a two-turn one gives two records, a self-written question two).
    #[arg(long, default_value_t = 1000)]
    pub instructions: usize,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 0.1)]
    pub held_out: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The JSON-lines file to write.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Summary {
    records: usize,
    answer_tokens: usize,
    ended_turn: usize,
    seconds: f64,
}

pub fn run(a: ChatDataArgs) -> Result<()> {
    let mut builder = Engine::builder().model(&a.model);
    if let Some(t) = &a.tokenizer {
        builder = builder.tokenizer(t);
    }
    let engine = crate::decoding::with_chat_template(
        builder.build().context("loading the model")?,
        a.chat_template.as_deref(),
    )?;
    let read = |paths: &[PathBuf]| -> Result<Vec<String>> {
        paths
            .iter()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
            .collect()
    };
    let (prose, code, documents) = (read(&a.prose)?, read(&a.code)?, read(&a.documents)?);
    let foreign_paths: Vec<PathBuf> = a.foreign.iter().map(|(_, p)| p.clone()).collect();
    let foreign_texts = read(&foreign_paths)?;
    let (prose, code, documents, foreign_parts) = (
        training_parts(&prose, a.held_out)?,
        training_parts(&code, a.held_out)?,
        training_parts(&documents, a.held_out)?,
        training_parts(&foreign_texts, a.held_out)?,
    );
    let foreign: Vec<(&str, &str)> = a
        .foreign
        .iter()
        .map(|(language, _)| language.as_str())
        .zip(foreign_parts)
        .collect();
    let tasks = instructions(
        Sources {
            prose: &prose,
            code: &code,
            foreign: &foreign,
            documents: &documents,
        },
        a.instructions,
        a.seed,
    );
    let params = GenerateParams {
        max_tokens: a.max_tokens,
        method: Method::Vanilla,
        ..GenerateParams::default()
    };
    let started = Instant::now();
    let bar = progress(tasks.len());
    bar.set_message("instructions answered");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = tasks.len().div_ceil(threads).max(1);
    let records: Vec<ChatRecord> = std::thread::scope(|s| {
        let workers: Vec<_> = tasks
            .chunks(chunk)
            .map(|part| {
                let (engine, params, bar) = (&engine, &params, &bar);
                s.spawn(move || -> Result<Vec<ChatRecord>> {
                    let mut out = Vec::new();
                    for task in part {
                        out.extend(answer(engine, task, params)?);
                        bar.inc(1);
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(
                w.join()
                    .map_err(|_| anyhow::anyhow!("a generation thread panicked"))??,
            );
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    bar.finish_and_clear();
    chat_data::write(&a.out, &records)?;
    let end_of_turn = engine.tokenizer().eos_ids();
    let summary = Summary {
        records: records.len(),
        answer_tokens: records.iter().map(|r| r.answer_ids.len()).sum(),
        ended_turn: records
            .iter()
            .filter(|r| r.answer_ids.last().is_some_and(|t| end_of_turn.contains(t)))
            .count(),
        seconds: started.elapsed().as_secs_f64(),
    };
    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&summary)?)?;
    Ok(())
}

/// `LANGUAGE:FILE`.
fn parse_foreign(s: &str) -> std::result::Result<(String, PathBuf), String> {
    match s.split_once(':') {
        Some((language, path)) if !language.trim().is_empty() && !path.is_empty() => {
            Ok((language.trim().to_string(), PathBuf::from(path)))
        }
        _ => Err(format!(
            "expected LANGUAGE:FILE (e.g. German:german.txt), got {s:?}"
        )),
    }
}

/// Each text without its held-out tail.
fn training_parts(texts: &[String], held_out: f64) -> Result<Vec<&str>> {
    texts
        .iter()
        .map(|t| Ok(ahead_train::corpus::split(t, held_out)?.train))
        .collect()
}

/// The records of one instruction: each turn's prompt and the target's answer; a later turn
/// follows the answer to the one before, and a self-written question is asked in a new chat
/// (beside its documents, where it was written from one).
/// Turns that would not fit the model's context are left out, with the rest of their chat.
fn answer(engine: &Engine, task: &Instruction, params: &GenerateParams) -> Result<Vec<ChatRecord>> {
    let mut records = Vec::new();
    let mut messages = Vec::new();
    for turn in &task.turns {
        messages.push(ChatMessage::new("user", turn.clone()));
        let Some((record, text)) = ask(engine, task.kind, &messages, params)? else {
            return Ok(records);
        };
        records.push(record);
        messages.push(ChatMessage::new("assistant", text));
    }
    if let Some(template) = &task.own_question {
        let written = messages.last().map_or("", |m| m.content.trim());
        // A small model often answers "write one question" with a paragraph: beside documents,
        // ask its first question only, as a retrieval question would be asked.
        let (question, kind) = if task.kind == "document-question" {
            (first_question(written), "answer-from-documents")
        } else {
            (written, "answer-own-question")
        };
        if !question.is_empty() {
            let chat = [ChatMessage::new("user", template.replacen("{}", question, 1))];
            records.extend(ask(engine, kind, &chat, params)?.map(|(r, _)| r));
        }
    }
    Ok(records)
}

/// The first sentence of `text` that ends in a question mark (from its line's start or the last
/// sentence end before it), else its first line.
fn first_question(text: &str) -> &str {
    let Some(mark) = text.find('?') else {
        return text.lines().next().unwrap_or("").trim();
    };
    let start = text[..mark].rfind(['\n', '.', '!']).map_or(0, |i| i + 1);
    text[start..=mark].trim()
}

/// The target's answer to a chat, as a record and as text; `None` when the chat leaves no room
/// for an answer in the model's context.
fn ask(
    engine: &Engine,
    kind: &str,
    messages: &[ChatMessage],
    params: &GenerateParams,
) -> Result<Option<(ChatRecord, String)>> {
    let chat = engine
        .chat_prompt(messages, true)
        .context("rendering an instruction")?;
    if chat.ids.len() + 16 > engine.model().config().max_seq_len {
        return Ok(None);
    }
    let g = engine
        .generate_one(&Prompt::Ids(chat.ids.clone()), params, &mut |_| {})
        .context("answering an instruction")?;
    Ok(Some((
        ChatRecord {
            kind: kind.to_string(),
            prompt_ids: chat.ids,
            answer_ids: g.token_ids,
        },
        g.text,
    )))
}

#[cfg(test)]
mod tests {
    use super::first_question;

    #[test]
    fn the_first_question_is_cut_from_a_paragraph() {
        assert_eq!(
            first_question("What a topic! Who wrote The Odyssey? It was Homer."),
            "Who wrote The Odyssey?"
        );
        assert_eq!(first_question("Why is the sky blue?"), "Why is the sky blue?");
        assert_eq!(
            first_question("Sure.\nWhen did it start?\nMore."),
            "When did it start?"
        );
        assert_eq!(
            first_question("No question here.\nSecond line."),
            "No question here."
        );
        assert_eq!(first_question(""), "");
    }
}
