//! Losslessness on Gemma 3 270M Q4_K_M (fetched by `scripts/fetch-models.sh`; skipped with one
//! line without it, a failure under `AHEAD_REQUIRE_MODELS=1`): sliding layers with their own
//! RoPE, a 262,144-token classifier. Every method's greedy output is token-identical to plain
//! decoding, past the 512-token window (tree rows count their window along their own path), and
//! sampled first tokens follow the target's distribution. No drafters are trained for it yet:
//! the draft is a Q8_0 copy of itself, and the Medusa and EAGLE heads are random over a subset
//! of 2,048 tokens (they draft, the target decides).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::sync::OnceLock;

use ahead_engine::Method;
use ahead_model::medusa::{MedusaHead, MedusaHeads, ResBlock};
use ahead_model::tokenizer::{ChatMessage, ChatTemplate};
use ahead_model::transformer::synthetic::random_eagle_head;
use ahead_model::transformer::Linear;
use ahead_model::{load, LoadOptions, ModelSource};
use ahead_testutil::{chi_square, chi_square_critical as critical, real_model};

const SUBSET: u32 = 2048;

/// Random Medusa heads (one residual block each) over the first `SUBSET` tokens.
fn random_medusa(dim: usize, vocab: usize) -> MedusaHeads {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut take = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect()
    };
    let heads = (0..3)
        .map(|_| MedusaHead {
            blocks: vec![ResBlock {
                w: Linear::from_f32(take(dim * dim, 0.1), dim, dim).unwrap(),
                b: vec![0.0; dim],
            }],
            out: Linear::from_f32(take(SUBSET as usize * dim, 0.5), SUBSET as usize, dim).unwrap(),
        })
        .collect();
    MedusaHeads::pruned(heads, dim, vocab, (0..SUBSET).collect()).unwrap()
}

/// Gemma 3 with Gemma 3's published chat template, a Q8_0 copy of itself as its draft, random
/// pruned Medusa and EAGLE heads; `None` when the file is missing.
fn engine() -> Option<&'static Engine> {
    static E: OnceLock<Option<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        let path = real_model("gemma-3-270m-q4_k_m.gguf")?;
        let mut loaded = load(&ModelSource::Path(path), &LoadOptions::default()).unwrap();
        let template = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates/gemma3.jinja");
        loaded.tokenizer.set_chat_template(Some(
            ChatTemplate::new(std::fs::read_to_string(template).unwrap()).unwrap(),
        ));
        let draft = quantized_copy(&loaded.model);
        let subset: Vec<u32> = (0..SUBSET).collect();
        let eagle = random_eagle_head(&loaded.model, 5, Some(&subset)).unwrap();
        let cfg = loaded.model.config();
        let medusa = random_medusa(cfg.dim, cfg.vocab_size);
        Some(
            Engine::from_loaded(loaded)
                .with_draft(draft)
                .with_medusa(medusa)
                .unwrap()
                .with_eagle(eagle),
        )
    })
    .as_ref()
}

#[test]
fn every_method_is_token_identical_to_plain_decoding_on_gemma3() {
    let Some(e) = engine() else { return };
    let chat = e
        .chat_prompt(
            &[ChatMessage::new(
                "user",
                "Repeat after me: the quick brown fox jumps over the lazy dog, the quick brown fox.",
            )],
            true,
        )
        .unwrap()
        .ids;
    // 600 tokens: past the sliding layers' 512-token window.
    let prompts = [
        (Prompt::Ids(chat), 48),
        (Prompt::from("The history of the city begins"), 600),
    ];
    for (prompt, max_tokens) in &prompts {
        let want = gen(
            e,
            prompt,
            &method_params(Method::Vanilla, None, SamplingParams::greedy(), 0, *max_tokens),
        );
        let mut methods = vec![
            (Method::Draft, Some(4)),
            (Method::PromptLookup, None),
            (Method::PromptLookup, Some(8)),
            (Method::Lookahead, None),
            (Method::Medusa, Some(6)),
            (Method::Eagle, Some(4)),
            (Method::Recycling, Some(8)),
            (Method::Suffix, None),
            (Method::Hybrid, Some(8)),
            (Method::Auto, None),
        ];
        if *max_tokens > 100 {
            // The long run checks the window under the tree methods; each costs a 600-token run.
            methods.retain(|(m, _)| matches!(m, Method::PromptLookup | Method::Recycling | Method::Medusa));
        }
        for (method, k) in methods {
            let got = gen(
                e,
                prompt,
                &method_params(method, k, SamplingParams::greedy(), 0, *max_tokens),
            );
            assert_eq!(got.token_ids, want.token_ids, "{method:?} k={k:?}");
            if method == Method::Draft {
                assert!(got.stats.accepted_tokens > 0, "{:?}", got.stats);
            }
        }
    }
}

/// First tokens over 400 seeds (each sample prefills the prompt and samples over 262,144
/// tokens, so the toy's 3,000 seeds and second tokens would take minutes), chi-square at
/// alpha = 1e-4.
#[test]
fn sampled_gemma3_tokens_follow_the_target_distribution() {
    let Some(e) = engine() else { return };
    let prompt = Prompt::from("I like apples, I like pears, I like plums, I like");
    let prompt_ids = e.prompt_ids(&prompt).unwrap();
    let sampling = SamplingParams {
        temperature: 0.8,
        top_k: 20,
        ..SamplingParams::greedy()
    };
    let want = target_dist(e, &prompt_ids, &sampling);
    for method in [Method::Draft, Method::PromptLookup] {
        let mut first = vec![0u64; want.len()];
        let mut drafted = 0;
        for seed in 0..400 {
            let out = gen(
                e,
                &prompt,
                &method_params(method, Some(3), sampling.clone(), seed, 2),
            );
            first[out.token_ids[0] as usize] += 1;
            drafted += out.stats.drafted_tokens;
        }
        assert!(drafted > 0, "{method:?} never drafted");
        let (s, dof) = chi_square(&first, &want);
        assert!(dof >= 2, "{method:?}: too peaked to test ({dof} dof)");
        assert!(s < critical(dof), "{method:?}: first token chi2 {s}, dof {dof}");
    }
}
