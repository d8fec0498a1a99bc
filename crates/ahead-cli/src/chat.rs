//! `ahead chat`: a conversation in the terminal through the model's chat template. Answers
//! stream as they are generated; the conversation is kept between turns (the oldest turns are
//! dropped when it outgrows the context); `/reset`, `/system TEXT`, `/stats`, `/help`, and
//! Ctrl-D (or `/quit`) to leave. Reads lines from stdin, so it can be driven by a pipe.

use std::io::{BufRead, IsTerminal, Write};

use ahead_engine::{Engine, FinishReason, GenerateParams, Generation, Prompt};
use ahead_model::tokenizer::ChatMessage;
use anyhow::Result;
use clap::Args;

use crate::decoding::DecodeArgs;

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The system message (default: the template's own, if it has one).
    #[arg(long)]
    pub system: Option<String>,
    /// Keep the conversation's KV cache between turns (each turn then computes only its new
    /// tokens), within this many MiB; 0: off.
    #[arg(long, default_value_t = 256)]
    pub prefix_cache_mb: usize,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

const HELP: &str = "/reset: start over  /system TEXT: set the system message and start over  \
                    /stats: totals so far  /quit or Ctrl-D: leave";

/// Totals over the session's answers.
#[derive(Debug, Default)]
struct Totals {
    answers: usize,
    tokens: usize,
    seconds: f64,
    forwards: usize,
    drafted: usize,
    accepted: usize,
}

impl Totals {
    fn add(&mut self, g: &Generation) {
        let s = &g.stats;
        self.answers += 1;
        self.tokens += s.generated_tokens;
        self.seconds += s.elapsed_ms / 1e3;
        self.forwards += s.target_forwards;
        self.drafted += s.drafted_tokens;
        self.accepted += s.accepted_tokens;
    }

    fn describe(&self) -> String {
        let rate = |a: usize, b: f64| if b > 0.0 { a as f64 / b } else { 0.0 };
        format!(
            "{} answers, {} tokens in {:.1} s ({:.1} tok/s), {:.2} tokens per forward, {} of {} drafted tokens accepted",
            self.answers,
            self.tokens,
            self.seconds,
            rate(self.tokens, self.seconds),
            rate(self.tokens, self.forwards as f64),
            self.accepted,
            self.drafted
        )
    }
}

/// The conversation so far and how it is shown.
struct Session {
    engine: Engine,
    params: GenerateParams,
    system: Option<String>,
    turns: Vec<ChatMessage>,
    totals: Totals,
    /// Escape codes only when stderr is a terminal.
    dim: bool,
}

impl Session {
    fn messages(&self) -> Vec<ChatMessage> {
        let system = self.system.iter().map(|s| ChatMessage::new("system", s.as_str()));
        system.chain(self.turns.iter().cloned()).collect()
    }

    /// The prompt for the conversation, dropping the oldest exchanges while it leaves no room
    /// for an answer in the context.
    fn prompt(&mut self) -> Result<Vec<u32>> {
        let context = self.engine.model().config().max_seq_len;
        loop {
            let ids = self.engine.chat_prompt(&self.messages(), true)?.ids;
            if ids.len() < context || self.turns.len() <= 1 {
                return Ok(ids);
            }
            // Drop the oldest user message and the answer to it.
            self.turns.drain(..2.min(self.turns.len() - 1));
            self.note("(the conversation outgrew the context: its oldest exchange was dropped)");
        }
    }

    fn note(&self, line: &str) {
        if self.dim {
            eprintln!("\x1b[2m{line}\x1b[0m");
        } else {
            eprintln!("{line}");
        }
    }

    /// Answers `text`, streaming to stdout; the exchange joins the conversation.
    fn answer(&mut self, text: &str) -> Result<()> {
        self.turns.push(ChatMessage::new("user", text));
        let generation = self.prompt().and_then(|ids| {
            let mut stdout = std::io::stdout().lock();
            let out = self
                .engine
                .generate_one(&Prompt::Ids(ids), &self.params, &mut |delta| {
                    // A closed stdout ends the session at the next read; the answer still counts.
                    let _ = stdout.write_all(delta.as_bytes()).and_then(|()| stdout.flush());
                })?;
            writeln!(stdout)?;
            Ok(out)
        });
        let out = match generation {
            Ok(out) => out,
            Err(e) => {
                // The turn failed (e.g. its message alone overflows the context): forget it.
                self.turns.pop();
                return Err(e);
            }
        };
        let s = &out.stats;
        let cut = match out.finish_reason {
            FinishReason::Length => ", cut at --max-tokens",
            _ => "",
        };
        self.note(&format!(
            "[{} tokens, {:.1} tok/s, {}, {:.2} tokens per forward{cut}]",
            s.generated_tokens,
            s.tokens_per_second,
            s.method,
            s.generated_tokens as f64 / s.target_forwards.max(1) as f64
        ));
        self.totals.add(&out);
        self.turns.push(ChatMessage::new("assistant", out.text));
        Ok(())
    }
}

pub fn run(a: ChatArgs) -> Result<()> {
    let (engine, params) = a.decode.load()?;
    let engine = engine.with_prefix_cache(a.prefix_cache_mb << 20);
    if engine.tokenizer().chat_template().is_none() {
        anyhow::bail!("the model has no chat template: give one with --chat-template FILE");
    }
    let interactive = std::io::stdin().is_terminal();
    let mut session = Session {
        engine,
        params,
        system: a.system,
        turns: Vec::new(),
        totals: Totals::default(),
        dim: std::io::stderr().is_terminal(),
    };
    if interactive {
        session.note(HELP);
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim_end_matches('\r');
        match line.trim() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                session.turns.clear();
                session.note("(conversation cleared)");
            }
            "/stats" => session.note(&session.totals.describe()),
            "/help" => session.note(HELP),
            cmd if cmd == "/system" || cmd.starts_with("/system ") => {
                let text = cmd["/system".len()..].trim();
                session.system = (!text.is_empty()).then(|| text.to_owned());
                session.turns.clear();
                session.note(match session.system {
                    Some(_) => "(system message set; conversation cleared)",
                    None => "(system message removed; conversation cleared)",
                });
            }
            cmd if cmd.starts_with('/') && !cmd.contains(' ') => {
                session.note(&format!("unknown command {cmd}; {HELP}"));
            }
            _ => {
                if let Err(e) = session.answer(line) {
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    session.engine.save_suffix_store()?;
    Ok(())
}
