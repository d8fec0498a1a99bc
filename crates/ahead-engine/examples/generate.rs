//! Generate from the embedded default model (or the model given as the first argument).
//!
//! `cargo run --release --example generate -p ahead-engine -- [MODEL] [PROMPT]`

use ahead_engine::{Engine, GenerateParams, Prompt, SamplingParams};

fn main() -> Result<(), ahead_engine::EngineError> {
    let mut args = std::env::args().skip(1);
    let mut builder = Engine::builder();
    if let Some(model) = args.next() {
        builder = builder.model(model);
    }
    let prompt = args.next().unwrap_or_else(|| "Once upon a time".to_string());
    let engine = builder.build()?;

    let greedy = GenerateParams {
        max_tokens: 64,
        ..Default::default()
    };
    let sampled = GenerateParams {
        sampling: SamplingParams {
            temperature: 0.8,
            top_p: 0.95,
            ..SamplingParams::greedy()
        },
        seed: 42,
        ..greedy.clone()
    };
    for (name, params) in [("greedy", greedy), ("sampled", sampled)] {
        let out = engine.generate(&[Prompt::from(prompt.as_str())], &params)?;
        let g = &out[0];
        eprintln!(
            "--- {name}: {} tokens, {:.0} tok/s, finish {:?}",
            g.stats.generated_tokens, g.stats.tokens_per_second, g.finish_reason
        );
        eprintln!("{prompt}{}", g.text);
    }
    Ok(())
}
