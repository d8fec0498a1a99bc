//! Prefix reuse: a request that starts with tokens an earlier request computed copies their KV
//! rows. Output is identical with and without it (every method, greedy and seeded sampling,
//! alone and batched); the copied cache equals a fresh prefill after every step; the budget
//! holds; proposers that read every prompt row's hidden state prefill in full.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::Method;

fn with_prefix_cache(bytes: usize) -> Engine {
    Engine::builder().build().unwrap().with_prefix_cache(bytes)
}

/// Two turns of a conversation: the second prompt is the first, its answer and a new line.
fn second_turn(e: &Engine, first: &Prompt, params: &GenerateParams) -> (Generation, Prompt) {
    let g = gen(e, first, params);
    let mut ids = g.prompt_token_ids.clone();
    ids.extend(&g.token_ids);
    ids.extend(
        e.tokenizer()
            .encode_continuation(" Then the sun came out.")
            .unwrap(),
    );
    (g, Prompt::Ids(ids))
}

#[test]
fn output_is_the_same_with_and_without_reuse_for_every_method() {
    let plain = engine();
    let first =
        Prompt::from("Once upon a time, there was a little girl named Lily. She loved to play outside.");
    for method in [
        Method::Vanilla,
        Method::Draft,
        Method::PromptLookup,
        Method::Lookahead,
        Method::Recycling,
        Method::Suffix,
    ] {
        for sampling in [SamplingParams::greedy(), two_samplers()[1].clone()] {
            let e = with_prefix_cache(64 << 20);
            let params = method_params(method, Some(4), sampling.clone(), 3, 40);
            let (g1, second) = second_turn(&e, &first, &params);
            assert_eq!(g1.stats.cached_prompt_tokens, 0);
            let reused = gen(&e, &second, &params);
            let what = format!("{method:?} {sampling:?}");
            assert!(
                reused.stats.cached_prompt_tokens > 20,
                "{what}: {:?}",
                reused.stats
            );
            assert_eq!(reused.token_ids, gen(plain, &second, &params).token_ids, "{what}");
        }
    }
}

#[test]
fn a_reused_cache_equals_a_fresh_prefill_after_every_step() {
    let e = with_prefix_cache(64 << 20);
    let model = e.model();
    let params = method_params(Method::PromptLookup, Some(4), SamplingParams::greedy(), 0, 40);
    let (_, second) = second_turn(
        &e,
        &Prompt::from("The cat sat on the mat. The cat sat on the mat."),
        &params,
    );
    let mut steps = 0;
    let mut check = |cache: &ahead_model::KvCache, history: &[u32]| {
        assert_cache_is_a_fresh_prefill(model, cache, history, true, "reused");
        steps += 1;
    };
    let g = e
        .generate_inspected(&second, &params, &mut |_| {}, Some(&mut check), None)
        .unwrap();
    assert!(g.stats.cached_prompt_tokens > 20);
    assert!(steps > 5);
}

#[test]
fn batched_requests_reuse_and_give_the_same_tokens() {
    let e = with_prefix_cache(64 << 20);
    let params = method_params(Method::PromptLookup, None, SamplingParams::greedy(), 0, 30);
    let (_, second) = second_turn(
        &e,
        &Prompt::from("Tom had a red ball. He played with it every day."),
        &params,
    );
    let prompts = vec![second.clone(), Prompt::from("The dog"), second.clone()];
    for (p, g) in prompts.iter().zip(e.generate_batched(&prompts, &params)) {
        let g = g.unwrap();
        assert_eq!(g.token_ids, gen(engine(), p, &params).token_ids, "{p:?}");
        if p == &second {
            assert!(g.stats.cached_prompt_tokens > 20, "{:?}", g.stats);
        }
    }
}

#[test]
fn the_budget_holds_and_hidden_state_readers_prefill_in_full() {
    let cfg = engine().model().config().clone();
    let per_token = cfg.n_layers * cfg.kv_dim() * 8;
    // Room for about 100 tokens: the second conversation evicts the first.
    let e = with_prefix_cache(100 * per_token);
    let params = method_params(Method::Vanilla, None, SamplingParams::greedy(), 0, 60);
    second_turn(&e, &Prompt::from("Once upon a time"), &params);
    second_turn(&e, &Prompt::from("The dog ran to the park"), &params);
    let cache = e.prefix_cache().unwrap();
    assert!(cache.bytes() <= 100 * per_token, "{} bytes", cache.bytes());
    // Medusa reads the hidden state of the prompt's last row: it prefills in full.
    let medusa = method_params(Method::Medusa, Some(4), SamplingParams::greedy(), 0, 30);
    let (_, second) = second_turn(&e, &Prompt::from("Once upon a time"), &medusa);
    let g = gen(&e, &second, &medusa);
    assert_eq!(g.stats.cached_prompt_tokens, 0);
    assert_eq!(g.token_ids, gen(engine(), &second, &medusa).token_ids);
}
