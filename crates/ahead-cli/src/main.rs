//! `ahead`: the command-line tool. `anyhow` lives only here.

mod bench;
mod chat;
mod convert;
mod decoding;
mod generate;
mod inspect;
mod serve;
mod sources;
mod train;
mod train_chat_data;
mod train_chat_draft;
mod train_eagle;
mod train_ngram;
mod tune;
mod tuned;

use clap::{Parser, Subcommand};

/// ahead: speculative decoding for LLMs: the same output as the model alone, sooner.
#[derive(Debug, Parser)]
#[command(name = "ahead", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate text from a prompt.
    Generate(Box<generate::GenerateArgs>),
    /// Chat with the model in the terminal, through its chat template.
    Chat(Box<chat::ChatArgs>),
    /// Re-encode a GGUF file's weights as F32, F16 or Q8_0 (same tokenizer and metadata).
    Convert(convert::ConvertArgs),
    /// Show what a model file holds: format, architecture, shapes, dtypes, tokenizer.
    Inspect(inspect::InspectArgs),
    /// Measure every method side by side (`bench`), the verify-cost curve (`bench cost`) and
    /// plain decoding against the memory-bandwidth limit (`bench decode`).
    Bench(bench::BenchArgs),
    /// Measure methods and parameters (and candidate drafts) on this machine and write the
    /// fastest lossless configuration for `generate --config` and `serve --config`.
    Tune(tune::TuneArgs),
    /// Serve the OpenAI-compatible API (completions, chat, streaming, metrics).
    Serve(serve::ServeArgs),
    /// Train what speculation needs: a draft model (`draft`), Medusa heads (`medusa`), an
    /// n-gram cache for prompt lookup (`ngram`).
    #[command(subcommand)]
    Train(train::TrainCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => generate::run(*a),
        Command::Chat(a) => chat::run(*a),
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Train(c) => train::run(c),
        Command::Serve(a) => serve::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
