//! Helpers shared by the generation tests: fixtures, goldens, engines, parameter shorthands.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub use ahead_testutil::paths::*;
pub use std::sync::OnceLock;

pub use ahead_engine::commit::{Committer, StopRules};
pub use ahead_engine::{Engine, FinishReason, GenerateParams, Generation, Prompt, SamplingParams};
pub use ahead_model::Tokenizer;

pub const EOS: u32 = 2;
pub const CONTEXT: usize = 512;
pub const VOCAB: u32 = 512;

// ---------------------------------------------------------------------------------------------
// helpers

/// A golden output: the generated ids and text of a reference run.
pub struct Golden {
    pub ids: Vec<u32>,
    pub text: String,
}

/// Reads `generated_ids` and `text` from a golden JSON file (no JSON crate in this crate's
/// dev-dependencies: a minimal reader for these two fields).
pub fn golden(name: &str) -> Golden {
    let path = format!("{FIXTURES}/golden/{name}");
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let key = src.find("\"generated_ids\"").expect("generated_ids");
    let open = key + src[key..].find('[').expect("[");
    let close = open + src[open..].find(']').expect("]");
    let ids = src[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("id"))
        .collect();
    let key = src.find("\"text\"").expect("text");
    let colon = key + src[key..].find(':').expect(":");
    let quote = colon + src[colon..].find('"').expect("\"");
    let text = json_string(&src[quote + 1..]);
    Golden { ids, text }
}

/// Parses a JSON string body (after the opening quote) up to its closing quote.
pub fn json_string(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return out,
            '\\' => match chars.next().expect("escape") {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let mut code = u32::from_str_radix(&hex, 16).expect("hex");
                    if (0xD800..0xDC00).contains(&code) {
                        assert_eq!(chars.next(), Some('\\'));
                        assert_eq!(chars.next(), Some('u'));
                        let hex: String = chars.by_ref().take(4).collect();
                        let low = u32::from_str_radix(&hex, 16).expect("hex");
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    }
                    out.push(char::from_u32(code).expect("char"));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    panic!("unterminated JSON string")
}

pub fn stories() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| golden("stories260K_greedy_bos_256.json"))
}

/// The embedded default model (stories260K), loaded once.
pub fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| Engine::builder().build().expect("embedded default model"))
}

pub fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ..GenerateParams::default()
    }
}

pub fn greedy_ignore_eos(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ignore_eos: true,
        ..GenerateParams::default()
    }
}

pub fn sampled(temperature: f32, seed: u64, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        seed,
        sampling: SamplingParams {
            temperature,
            ..SamplingParams::greedy()
        },
        ..GenerateParams::default()
    }
}

pub fn gen(engine: &Engine, prompt: &Prompt, params: &GenerateParams) -> Generation {
    engine
        .generate_one(prompt, params, &mut |_| {})
        .unwrap_or_else(|e| panic!("generate {prompt:?}: {e}"))
}

/// Generates while collecting the streamed deltas; returns the generation and the deltas.
pub fn gen_streamed(engine: &Engine, prompt: &Prompt, params: &GenerateParams) -> (Generation, Vec<String>) {
    let mut deltas = Vec::new();
    let out = engine
        .generate_one(prompt, params, &mut |d| deltas.push(d.to_string()))
        .unwrap_or_else(|e| panic!("generate {prompt:?}: {e}"));
    (out, deltas)
}

pub fn bos() -> Prompt {
    Prompt::Ids(vec![1])
}

pub fn assert_golden(engine: &Engine, g: &Golden, max_tokens: usize, what: &str) {
    let out = gen(engine, &bos(), &greedy_ignore_eos(max_tokens));
    assert_eq!(
        out.token_ids, g.ids,
        "{what}: generated ids differ from the golden output"
    );
    assert_eq!(out.text, g.text, "{what}: text differs from the golden output");
    assert_eq!(out.prompt_token_ids, vec![1], "{what}");
    assert_eq!(out.finish_reason, FinishReason::Length, "{what}");
    assert_eq!(out.stats.generated_tokens, max_tokens, "{what}");
}

/// The text the engine shows for `ids` generated after BOS (llama2.c pieces concatenate; the
/// piece after BOS loses its leading space).
pub fn text_after_bos(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut all = vec![1];
    all.extend_from_slice(ids);
    tok.decode(&all).unwrap()
}

/// The reference outcome of greedy decoding from BOS with stop string `stop`: the golden ids up
/// to the token whose text completes `stop`, and the text before it.
pub fn expected_stop(stop: &str) -> (Vec<u32>, String) {
    let g = stories();
    let tok = engine().tokenizer();
    for k in 1..=g.ids.len() {
        let text = text_after_bos(tok, &g.ids[..k]);
        if let Some(at) = text.find(stop) {
            return (g.ids[..k].to_vec(), text[..at].to_string());
        }
    }
    panic!("{stop:?} is not in the golden text");
}

/// The same weights quantized to q8_0 (rows that are not whole blocks stay as they are): a
/// draft that agrees with the target most of the time.
pub fn quantized_copy(model: &ahead_model::Model) -> ahead_model::Model {
    let q = |l: &ahead_model::transformer::Linear| match l.cols() % 32 {
        0 => ahead_model::transformer::Linear::quantize(
            &l.to_f32().unwrap(),
            l.rows(),
            l.cols(),
            ahead_model::TensorDType::Q8_0,
        )
        .unwrap(),
        _ => l.clone(),
    };
    let mut w = model.weights().clone();
    w.embedding = q(&w.embedding);
    w.lm_head = w.lm_head.as_ref().map(q);
    for l in &mut w.layers {
        for m in [
            &mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w1, &mut l.w2, &mut l.w3,
        ] {
            *m = q(m);
        }
    }
    ahead_model::Model::new(model.config().clone(), w).unwrap()
}

/// The target's warped next-token distribution after `ids`, as f64 probabilities.
pub fn target_dist(e: &Engine, ids: &[u32], sampling: &SamplingParams) -> Vec<f64> {
    let model = e.model();
    let mut cache = model.new_cache(ids.len()).unwrap();
    let pos: Vec<usize> = (0..ids.len()).collect();
    let out = model
        .forward(&ahead_model::ForwardInput::causal(ids, &pos), &mut cache)
        .unwrap();
    let d = ahead_core::sampling::warp(out.last(), sampling, ids).unwrap();
    d.probs().iter().map(|&p| p as f64).collect()
}

/// Counts of the first two generated tokens over `n` seeds (`params(seed)` generates two),
/// and how many tokens were drafted in all.
pub struct TwoTokenCounts {
    pub first: Vec<u64>,
    /// Per first token, the counts of the second.
    pub seconds: std::collections::HashMap<u32, Vec<u64>>,
    pub drafted: usize,
    /// Steps that verified a free offer (`auto`'s prompt lookup).
    pub free_offer_steps: usize,
}

pub fn sample_two_tokens(
    e: &Engine,
    prompt: &Prompt,
    n: u64,
    params: impl Fn(u64) -> GenerateParams,
) -> TwoTokenCounts {
    let vocab = e.model().config().vocab_size;
    let mut c = TwoTokenCounts {
        first: vec![0; vocab],
        seconds: Default::default(),
        drafted: 0,
        free_offer_steps: 0,
    };
    for seed in 0..n {
        let out = gen(e, prompt, &params(seed));
        c.first[out.token_ids[0] as usize] += 1;
        c.seconds
            .entry(out.token_ids[0])
            .or_insert_with(|| vec![0; vocab])[out.token_ids[1] as usize] += 1;
        c.drafted += out.stats.drafted_tokens;
        c.free_offer_steps += out.stats.free_offer_steps;
    }
    c
}

impl TwoTokenCounts {
    /// The most frequent first token and the second-token counts after it.
    pub fn commonest_second(&self) -> (u32, &[u64]) {
        let (&t, counts) = self
            .seconds
            .iter()
            .max_by_key(|(_, c)| c.iter().sum::<u64>())
            .unwrap();
        (t, counts)
    }
}

/// `method` with `num_draft`, `sampling` and `seed`, exactly `max_tokens` tokens (EOS ignored).
pub fn method_params(
    method: ahead_engine::Method,
    num_draft: Option<usize>,
    sampling: SamplingParams,
    seed: u64,
    max_tokens: usize,
) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling,
        seed,
        method,
        num_draft,
        ignore_eos: true,
        ..Default::default()
    }
}

/// The two warpers the sampling-exactness tests run: plain temperature 1, and temperature 0.8
/// with top-k 20.
pub fn two_samplers() -> [SamplingParams; 2] {
    [
        SamplingParams {
            temperature: 1.0,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 20,
            ..SamplingParams::greedy()
        },
    ]
}

/// Asserts that `method` drafting `k` tokens a step samples the target's own distribution for
/// the first token after `prompt` and for the second after the commonest first (chi-square
/// over 3000 seeds, alpha = 1e-4), under `sampling`; it must have drafted.
pub fn assert_samples_follow_the_target(
    e: &Engine,
    prompt: &Prompt,
    method: ahead_engine::Method,
    k: usize,
    sampling: &SamplingParams,
) {
    assert_samples_follow_the_target_with(e, prompt, sampling, |seed| {
        method_params(method, Some(k), sampling.clone(), seed, 2)
    });
}

/// `assert_samples_follow_the_target` for the requests `params(seed)` (two tokens each, with
/// `sampling`); returns the counts.
pub fn assert_samples_follow_the_target_with(
    e: &Engine,
    prompt: &Prompt,
    sampling: &SamplingParams,
    params: impl Fn(u64) -> GenerateParams,
) -> TwoTokenCounts {
    use ahead_testutil::{chi_square, chi_square_critical as critical};
    let prompt_ids = e.prompt_ids(prompt).unwrap();
    let method = params(0).method;
    let c = sample_two_tokens(e, prompt, 3000, params);
    assert!(c.drafted > 0, "{method:?} drafted nothing");
    let (s, dof) = chi_square(&c.first, &target_dist(e, &prompt_ids, sampling));
    assert!(
        s < critical(dof),
        "{method:?} {sampling:?}: first token chi2 {s}, dof {dof}"
    );
    let (t1, counts) = c.commonest_second();
    let mut ctx = prompt_ids;
    ctx.push(t1);
    let (s, dof) = chi_square(counts, &target_dist(e, &ctx, sampling));
    assert!(
        s < critical(dof),
        "{method:?} {sampling:?}: second token chi2 {s}, dof {dof}"
    );
    c
}

/// Every method the default engine can run (it carries a draft, Medusa heads and an n-gram
/// cache), plain decoding first.
pub const TOY_METHODS: [ahead_engine::Method; 7] = [
    ahead_engine::Method::Vanilla,
    ahead_engine::Method::Draft,
    ahead_engine::Method::PromptLookup,
    ahead_engine::Method::Medusa,
    ahead_engine::Method::Lookahead,
    ahead_engine::Method::Recycling,
    ahead_engine::Method::Suffix,
];

/// Asserts that `cache` holds what a fresh prefill of `history` minus its pending last token
/// computes: bit for bit when `exact`, else within f32 rounding.
pub fn assert_cache_is_a_fresh_prefill(
    model: &ahead_model::Model,
    cache: &ahead_model::KvCache,
    history: &[u32],
    exact: bool,
    what: &str,
) {
    let committed = &history[..history.len() - 1];
    assert_eq!(cache.len(), committed.len(), "{what}");
    let mut fresh = model.new_cache(committed.len()).unwrap();
    let pos: Vec<usize> = (0..committed.len()).collect();
    model
        .forward(&ahead_model::ForwardInput::causal(committed, &pos), &mut fresh)
        .unwrap();
    for layer in 0..model.config().n_layers {
        let (k, v) = cache.filled(layer).unwrap();
        let (fk, fv) = fresh.filled(layer).unwrap();
        if exact {
            assert_eq!(k, fk, "{what}: keys, layer {layer}");
            assert_eq!(v, fv, "{what}: values, layer {layer}");
        } else {
            ahead_testutil::assert_close(&k, &fk, ahead_testutil::F32, "keys");
            ahead_testutil::assert_close(v, fv, ahead_testutil::F32, "values");
        }
    }
}

/// Asserts that a seeded sampled request of `method` drafts and samples the same whatever
/// other requests taught the engine before it (its drafts must not depend on them).
pub fn assert_seeded_sampling_ignores_earlier_requests(method: ahead_engine::Method, others: &[&str]) {
    let e = Engine::builder().build().unwrap();
    let prompt = Prompt::from("Lily and Ben went to the park. Lily and Ben went");
    let sampled = method_params(method, Some(4), two_samplers()[0].clone(), 5, 40);
    let before = gen(&e, &prompt, &sampled);
    for p in others {
        gen(
            &e,
            &Prompt::from(*p),
            &method_params(method, Some(6), SamplingParams::greedy(), 0, 60),
        );
    }
    let after = gen(&e, &prompt, &sampled);
    assert_eq!(before.token_ids, after.token_ids, "{method:?}");
    assert_eq!(
        before.stats.drafted_tokens, after.stats.drafted_tokens,
        "{method:?}"
    );
}

/// Asserts that `method` at each draft length in `ks` generates plain decoding's `max_tokens`
/// greedy tokens after every prompt, reporting itself as `name`; returns each run's stats (in
/// prompt-major order) for the caller's own checks.
pub fn assert_greedy_is_plain_decodings(
    e: &Engine,
    prompts: &[&str],
    method: ahead_engine::Method,
    ks: &[Option<usize>],
    max_tokens: usize,
    name: &str,
) -> Vec<ahead_engine::Stats> {
    let mut stats = Vec::new();
    for p in prompts {
        let prompt = Prompt::from(*p);
        let plain = method_params(
            ahead_engine::Method::Vanilla,
            None,
            SamplingParams::greedy(),
            0,
            max_tokens,
        );
        let want = gen(e, &prompt, &plain);
        for &k in ks {
            let got = gen(
                e,
                &prompt,
                &method_params(method, k, SamplingParams::greedy(), 0, max_tokens),
            );
            assert_eq!(got.token_ids, want.token_ids, "{method:?} k {k:?} after {p:?}");
            assert_eq!(got.stats.method, name);
            stats.push(got.stats);
        }
    }
    stats
}
