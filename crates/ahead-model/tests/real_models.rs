//! The real models `scripts/fetch-models.sh` caches (not in git: skipped with one line when
//! missing, unless `AHEAD_REQUIRE_MODELS=1`, as CI sets): they load, compute as their
//! dequantized f32 weights do, and decode sensibly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ahead_model::transformer::{Linear, ModelWeights};
use ahead_model::{ForwardInput, Model, ModelSource, TensorDType};
use ahead_testutil::{argmax, real_model};

/// Every matrix dequantized to f32: the reference the quantized kernels approximate.
fn dequantized(model: &Model) -> Model {
    let f32 = |l: &Linear| Linear::from_f32(l.to_f32().unwrap(), l.rows(), l.cols()).unwrap();
    let w = model.weights();
    let mut layers = w.layers.clone();
    for l in &mut layers {
        for m in [
            &mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w1, &mut l.w2, &mut l.w3,
        ] {
            *m = f32(m);
        }
    }
    let weights = ModelWeights {
        embedding: f32(&w.embedding),
        layers,
        norm: w.norm.clone(),
        lm_head: w.lm_head.as_ref().map(f32),
    };
    Model::new(model.config().clone(), weights).unwrap()
}

/// Greedy continuation of `prompt` for `n` tokens.
fn greedy(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut cache = model.new_cache(prompt.len() + n).unwrap();
    let mut tokens = prompt.to_vec();
    let mut out = Vec::new();
    let mut start = 0;
    for _ in 0..n {
        let positions: Vec<usize> = (start..tokens.len()).collect();
        let logits = model
            .forward(&ForwardInput::causal(&tokens[start..], &positions), &mut cache)
            .unwrap();
        let last = &logits.logits[(logits.rows() - 1) * logits.vocab_size..];
        let next = argmax(last) as u32;
        start = tokens.len();
        tokens.push(next);
        out.push(next);
    }
    out
}

#[test]
fn smollm2_q4_1_loads_matches_its_f32_dequantization_and_decodes() {
    let Some(path) = real_model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let src = ModelSource::Path(path);
    let loaded = ahead_model::load(&src, &Default::default()).unwrap();
    let model = &loaded.model;
    let layer = &model.weights().layers[0];
    assert_eq!(layer.wq.dtype(), TensorDType::Q4_1);
    assert_eq!(layer.w2.dtype(), TensorDType::Q4_1);

    // Only the 8-bit quantization of the activations separates the model from its f32
    // dequantization: over 30 layers its logits move by a few percent of their spread (3.6%
    // rms over this prompt's 29 rows when written; Q8_0 weights move them as much).
    let story = "Once upon a time, in a small village by the sea, there lived an old fisherman who had \
                 never caught a fish. Every morning he";
    let tokens = loaded.tokenizer.encode(story, true).unwrap();
    let reference = dequantized(model);
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let input = ForwardInput::causal(&tokens, &positions);
    let cache = || model.new_cache(64).unwrap();
    let got = model.forward(&input, &mut cache()).unwrap().logits;
    let want = reference.forward(&input, &mut cache()).unwrap().logits;
    let rms = |f: &dyn Fn(usize) -> f64| {
        ((0..want.len()).map(|i| f(i).powi(2)).sum::<f64>() / want.len() as f64).sqrt()
    };
    let mean = want.iter().map(|&x| x as f64).sum::<f64>() / want.len() as f64;
    let spread = rms(&|i| want[i] as f64 - mean);
    let error = rms(&|i| (got[i] - want[i]) as f64);
    assert!(
        error < 0.08 * spread,
        "logits {error} rms from f32 (spread {spread})"
    );

    let prompt = loaded.tokenizer.encode("The capital of France is", true).unwrap();
    let text = loaded.tokenizer.decode(&greedy(model, &prompt, 6)).unwrap();
    eprintln!("logits {error} rms from f32 (spread {spread}); greedy: {text:?}");
    assert!(text.contains("Paris"), "{text:?}");
}
