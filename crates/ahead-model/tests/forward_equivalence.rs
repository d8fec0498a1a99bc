//! The forward pass speculative decoding relies on: batched rows equal single rows, a tree
//! mask equals separate chains, and truncate/compact leave the cache as a fresh prefill would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ahead_model::transformer::synthetic::{random_model, random_model_with, tiny_config, Recipe};
use ahead_model::transformer::{
    Architecture, AttentionMask, BatchItem, ForwardInput, Logits, Model, ModelConfig,
};
use ahead_model::{KvCache, TensorDType};
use ahead_testutil::{argmax, assert_close, Tolerance, F32, QUANTIZED};

fn config(architecture: Architecture) -> ModelConfig {
    // A window shorter than the test sequences, so the sliding mask is exercised.
    ModelConfig {
        sliding_window: (architecture == Architecture::Mistral).then_some(6),
        sliding_layers: None,
        local_rope_theta: None,
        attention_scale: None,
        final_logit_softcap: None,
        ..tiny_config(architecture, 300)
    }
}

/// Gemma 3's shape in small: sliding layers around a global one, with their own RoPE base and a
/// window shorter than the test sequences, its query scale and soft-capped logits.
fn gemma3_config() -> ModelConfig {
    ModelConfig {
        n_layers: 3,
        sliding_window: Some(6),
        sliding_layers: Some(vec![true, false, true]),
        local_rope_theta: Some(10_000.0),
        rope_theta: 1_000_000.0,
        attention_scale: Some(0.2),
        final_logit_softcap: Some(30.0),
        ..tiny_config(Architecture::Gemma3, 300)
    }
}

/// Every architecture at f32 and Q8_0, Llama at the other quantized dtypes (dims are multiples of
/// 256 for k-quants).
fn models() -> Vec<(String, Model, Tolerance)> {
    let mut out = Vec::new();
    let archs = [
        Architecture::Llama,
        Architecture::Mistral,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma3,
    ];
    for arch in archs {
        let cfg = match arch {
            Architecture::Gemma3 => gemma3_config(),
            _ => config(arch),
        };
        for (dtype, tol) in [(TensorDType::F32, F32), (TensorDType::Q8_0, QUANTIZED)] {
            let m = random_model(&cfg, dtype, 7).unwrap();
            out.push((format!("{}/{}", arch.name(), dtype.name()), m, tol));
        }
    }
    // GGML's blocks of 32 with a minimum or a fifth bit (64 and 96 are whole blocks).
    for dtype in [TensorDType::Q4_1, TensorDType::Q5_0, TensorDType::Q5_1] {
        let m = random_model(&config(Architecture::Llama), dtype, 5).unwrap();
        out.push((format!("llama/{}", dtype.name()), m, QUANTIZED));
    }
    let mut big = config(Architecture::Llama);
    big.dim = 256;
    big.hidden_dim = 256;
    big.head_dim = 64;
    out.push((
        "llama/q4_k".into(),
        random_model(&big, TensorDType::Q4K, 3).unwrap(),
        QUANTIZED,
    ));
    out.push((
        "llama/q4_k_m".into(),
        random_model_with(&big, Recipe::Q4KM, 3).unwrap(),
        QUANTIZED,
    ));
    out
}

const PROMPT: [u32; 10] = [1, 17, 250, 3, 99, 42, 42, 7, 128, 5];

fn positions(start: usize, n: usize) -> Vec<usize> {
    (start..start + n).collect()
}

/// Logits of the last row after a fresh causal prefill of `tokens`.
fn fresh_last(model: &Model, tokens: &[u32]) -> Vec<f32> {
    fresh_last_with(model, tokens, Logits::All)
}

fn fresh_last_with(model: &Model, tokens: &[u32], logits: Logits) -> Vec<f32> {
    let mut cache = model.new_cache(32).unwrap();
    let pos = positions(0, tokens.len());
    let input = ForwardInput {
        logits,
        ..ForwardInput::causal(tokens, &pos)
    };
    let out = model.forward(&input, &mut cache).unwrap();
    out.last().to_vec()
}

#[test]
fn asking_for_fewer_logit_rows_changes_none_of_them_and_fills_the_same_cache() {
    for (name, model, _) in models() {
        let all = fresh_last(&model, &PROMPT);
        assert_eq!(fresh_last_with(&model, &PROMPT, Logits::Last), all, "{name}");
        let mut cache = model.new_cache(32).unwrap();
        let pos = positions(0, 9);
        let input = ForwardInput {
            logits: Logits::None,
            ..ForwardInput::causal(&PROMPT[..9], &pos)
        };
        let out = model.forward(&input, &mut cache).unwrap();
        assert_eq!(out.rows(), 0, "{name}");
        let next = model
            .forward(&ForwardInput::causal(&PROMPT[9..], &[9]), &mut cache)
            .unwrap();
        assert_eq!(next.last(), &all[..], "{name}");
    }
}

#[test]
fn row_i_of_a_batched_forward_equals_a_one_row_forward() {
    for (name, model, tol) in models() {
        let mut batched = model.new_cache(32).unwrap();
        let all = model
            .forward(
                &ForwardInput::causal(&PROMPT, &positions(0, PROMPT.len())),
                &mut batched,
            )
            .unwrap();
        let mut single = model.new_cache(32).unwrap();
        for (i, &t) in PROMPT.iter().enumerate() {
            let one = model
                .forward(&ForwardInput::causal(&[t], &[i]), &mut single)
                .unwrap();
            assert_close(all.row(i), one.row(0), tol, &format!("{name} row {i}"));
            assert_eq!(
                argmax(all.row(i)),
                argmax(one.row(0)),
                "{name}: greedy choice at row {i}"
            );
            if tol.rtol == F32.rtol {
                assert_eq!(all.row(i), one.row(0), "{name}: f32 rows must be bit-identical");
            }
        }
    }
}

#[test]
fn a_long_prefill_equals_row_by_row_decoding_bit_for_bit() {
    // 50 rows after 3 cached ones: several attention row blocks, a prefix shared by all.
    for arch in [Architecture::Llama, Architecture::Mistral] {
        let model = random_model(&config(arch), TensorDType::F32, 5).unwrap();
        let tokens: Vec<u32> = (0..53).map(|i| (i * 37 % 299) as u32 + 1).collect();
        let mut together = model.new_cache(60).unwrap();
        model
            .forward(
                &ForwardInput::causal(&tokens[..3], &positions(0, 3)),
                &mut together,
            )
            .unwrap();
        let all = model
            .forward(
                &ForwardInput::causal(&tokens[3..], &positions(3, 50)),
                &mut together,
            )
            .unwrap();
        let mut alone = model.new_cache(60).unwrap();
        for (i, &t) in tokens.iter().enumerate() {
            let one = model
                .forward(&ForwardInput::causal(&[t], &[i]), &mut alone)
                .unwrap();
            if i >= 3 {
                assert_eq!(all.row(i - 3), one.row(0), "{} row {i}", arch.name());
            }
        }
    }
}

#[test]
fn greedy_decoding_row_by_row_equals_verifying_the_same_tokens_in_one_forward() {
    for (name, model, _) in models() {
        // Decode 12 tokens one at a time.
        let mut cache = model.new_cache(40).unwrap();
        let mut logits = model
            .forward(&ForwardInput::causal(&PROMPT, &positions(0, 10)), &mut cache)
            .unwrap()
            .last()
            .to_vec();
        let mut generated = Vec::new();
        for step in 0..12 {
            let t = argmax(&logits) as u32;
            generated.push(t);
            logits = model
                .forward(&ForwardInput::causal(&[t], &[10 + step]), &mut cache)
                .unwrap()
                .last()
                .to_vec();
        }
        // Feed prompt + generated in one forward: each row's argmax is the next generated token.
        let mut all: Vec<u32> = PROMPT.to_vec();
        all.extend(&generated);
        let mut c2 = model.new_cache(40).unwrap();
        let out = model
            .forward(&ForwardInput::causal(&all, &positions(0, all.len())), &mut c2)
            .unwrap();
        for (j, &t) in generated.iter().enumerate().skip(1) {
            assert_eq!(argmax(out.row(9 + j)) as u32, t, "{name}: token {j}");
        }
    }
}

/// A tree after the prompt: two roots; node 1 and 2 are children of 0, node 3 of 1.
const TREE_TOKENS: [u32; 5] = [11, 22, 33, 44, 55];
const TREE_PARENTS: [Option<usize>; 5] = [None, Some(0), Some(0), Some(1), None];

fn path(node: usize) -> Vec<usize> {
    let mut p = vec![node];
    while let Some(parent) = TREE_PARENTS[*p.last().unwrap()] {
        p.push(parent);
    }
    p.reverse();
    p
}

fn tree_forward(model: &Model) -> (KvCache, ahead_model::ForwardOutput) {
    let mut cache = model.new_cache(32).unwrap();
    model
        .forward(&ForwardInput::causal(&PROMPT, &positions(0, 10)), &mut cache)
        .unwrap();
    let pos: Vec<usize> = (0..5).map(|n| 10 + path(n).len() - 1).collect();
    let input = ForwardInput {
        tokens: &TREE_TOKENS,
        positions: &pos,
        mask: AttentionMask::Tree(&TREE_PARENTS),
        want_hidden: true,
        taps: &[],
        logits: ahead_model::transformer::Logits::All,
    };
    let out = model.forward(&input, &mut cache).unwrap();
    (cache, out)
}

#[test]
fn a_tree_masked_forward_equals_the_separate_chain_forwards() {
    for (name, model, tol) in models() {
        let (_, out) = tree_forward(&model);
        assert_eq!(out.hidden.as_ref().map(Vec::len), Some(5 * model.config().dim));
        for node in 0..5 {
            let mut chain = PROMPT.to_vec();
            chain.extend(path(node).iter().map(|&n| TREE_TOKENS[n]));
            let want = fresh_last(&model, &chain);
            assert_close(out.row(node), &want, tol, &format!("{name} node {node}"));
            assert_eq!(argmax(out.row(node)), argmax(&want), "{name} node {node}");
            if tol.rtol == F32.rtol {
                // Attention depends only on the slots a row sees, in order (see `attention`).
                assert_eq!(
                    out.row(node),
                    &want[..],
                    "{name} node {node}: f32 rows must be bit-identical"
                );
            }
        }
    }
}

/// The same tree grown a depth per forward (EAGLE-2's drafting): each depth's rows see the
/// prompt, their ancestors cached by the earlier forwards, and themselves.
#[test]
fn a_tree_grown_a_depth_per_forward_equals_the_tree_in_one_forward() {
    for (name, model, tol) in models() {
        let (_, whole) = tree_forward(&model);
        let mut cache = model.new_cache(32).unwrap();
        model
            .forward(&ForwardInput::causal(&PROMPT, &positions(0, 10)), &mut cache)
            .unwrap();
        // Depth 1: nodes 0 and 4; depth 2: nodes 1 and 2; depth 3: node 3.
        let mut slot = [0usize; 5];
        for level in [vec![0, 4], vec![1, 2], vec![3]] {
            let tokens: Vec<u32> = level.iter().map(|&n| TREE_TOKENS[n]).collect();
            let pos: Vec<usize> = level.iter().map(|&n| 10 + path(n).len() - 1).collect();
            let ancestors: Vec<Vec<usize>> = level
                .iter()
                .map(|&n| path(n)[..path(n).len() - 1].iter().map(|&a| slot[a]).collect())
                .collect();
            let base = cache.len();
            let input = ForwardInput {
                tokens: &tokens,
                positions: &pos,
                mask: AttentionMask::Branches {
                    committed: 10,
                    ancestors: &ancestors,
                },
                want_hidden: false,
                taps: &[],
                logits: Logits::All,
            };
            let out = model.forward(&input, &mut cache).unwrap();
            for (r, &n) in level.iter().enumerate() {
                slot[n] = base + r;
                assert_close(out.row(r), whole.row(n), tol, &format!("{name} node {n}"));
                if tol.rtol == F32.rtol {
                    assert_eq!(
                        out.row(r),
                        whole.row(n),
                        "{name} node {n}: f32 rows must be bit-identical"
                    );
                }
            }
        }
    }
}

#[test]
fn branches_must_name_cached_slots_after_the_committed_ones() {
    let model = random_model(&config(Architecture::Llama), TensorDType::F32, 1).unwrap();
    let mut cache = model.new_cache(16).unwrap();
    model
        .forward(&ForwardInput::causal(&PROMPT, &positions(0, 10)), &mut cache)
        .unwrap();
    let bad: [(usize, Vec<Vec<usize>>); 4] = [
        (11, vec![vec![]]),    // more committed slots than cached
        (8, vec![vec![10]]),   // slot 10 is not cached yet
        (8, vec![vec![7]]),    // below the committed prefix
        (8, vec![vec![9, 8]]), // not ascending
    ];
    for (committed, ancestors) in &bad {
        let input = ForwardInput {
            tokens: &[1],
            positions: &[10],
            mask: AttentionMask::Branches {
                committed: *committed,
                ancestors,
            },
            want_hidden: false,
            taps: &[],
            logits: Logits::All,
        };
        assert!(
            model.forward(&input, &mut cache).is_err(),
            "{committed} {ancestors:?}"
        );
        assert_eq!(cache.len(), 10);
    }
}

/// A tapped layer's output is the residual stream there: normed, it is the final hidden state
/// of the model cut after that layer (bit for bit in f32), in a batch as alone.
#[test]
fn tapped_layers_are_the_residual_stream_after_them() {
    for (name, model, tol) in models() {
        let cfg = model.config().clone();
        let d = cfg.dim;
        let taps = [0, cfg.n_layers - 1];
        let pos = positions(0, PROMPT.len());
        let input = ForwardInput {
            want_hidden: true,
            taps: &taps,
            ..ForwardInput::causal(&PROMPT, &pos)
        };
        let mut cache = model.new_cache(32).unwrap();
        let out = model.forward(&input, &mut cache).unwrap();
        assert_eq!(out.hidden_dim, 2 * d, "{name}");
        let tapped = out.hidden.clone().unwrap();
        for (ti, &layer) in taps.iter().enumerate() {
            let mut w = model.weights().clone();
            w.layers.truncate(layer + 1);
            let cut = Model::new(
                ModelConfig {
                    n_layers: layer + 1,
                    sliding_layers: cfg.sliding_layers.as_ref().map(|s| s[..=layer].to_vec()),
                    ..cfg.clone()
                },
                w,
            )
            .unwrap();
            let mut c = cut.new_cache(32).unwrap();
            let plain = ForwardInput {
                want_hidden: true,
                ..ForwardInput::causal(&PROMPT, &pos)
            };
            let want = cut.forward(&plain, &mut c).unwrap().hidden.unwrap();
            for r in 0..PROMPT.len() {
                let row = &tapped[(r * taps.len() + ti) * d..][..d];
                let mut normed = vec![0f32; d];
                ahead_model::transformer::kernels::rms_norm(
                    row,
                    &model.weights().norm,
                    cfg.rms_eps,
                    &mut normed,
                );
                let label = format!("{name} layer {layer} row {r}");
                assert_close(&normed, &want[r * d..(r + 1) * d], tol, &label);
                if tol.rtol == F32.rtol {
                    assert_eq!(normed, want[r * d..(r + 1) * d], "{label}");
                }
            }
        }
        // The same rows beside another sequence's.
        let mut c1 = model.new_cache(32).unwrap();
        let mut c2 = model.new_cache(32).unwrap();
        let other = ForwardInput::causal(&PROMPT[..4], &pos[..4]);
        let outs = model
            .forward_batch(&mut [
                BatchItem {
                    input: other,
                    cache: &mut c1,
                },
                BatchItem {
                    input,
                    cache: &mut c2,
                },
            ])
            .unwrap();
        assert_eq!(outs[0].hidden, None, "{name}");
        assert_eq!(outs[1].hidden.as_ref(), Some(&tapped), "{name}");
        // Taps must be ascending layers of the model.
        for bad in [vec![1, 0], vec![cfg.n_layers]] {
            let input = ForwardInput { taps: &bad, ..input };
            assert!(
                model.forward(&input, &mut model.new_cache(32).unwrap()).is_err(),
                "{name} {bad:?}"
            );
        }
    }
}

#[test]
fn after_compact_or_truncate_the_next_logits_equal_a_fresh_prefill() {
    for (name, model, tol) in models() {
        // Accept the path 0 -> 1 -> 3 of the tree, then feed one more token.
        let (mut cache, _) = tree_forward(&model);
        cache.compact(10, &[0, 1, 3]).unwrap();
        assert_eq!(cache.len(), 13);
        let next = model
            .forward(&ForwardInput::causal(&[77], &[13]), &mut cache)
            .unwrap();
        let mut seq = PROMPT.to_vec();
        seq.extend([11, 22, 44, 77]);
        let want = fresh_last(&model, &seq);
        assert_close(next.row(0), &want, tol, &format!("{name} after compact"));
        if tol.rtol == F32.rtol {
            assert_eq!(
                next.row(0),
                &want[..],
                "{name}: f32 rows must be bit-identical after compact"
            );
        }

        // Reject all but the first of four chain tokens.
        let mut cache = model.new_cache(32).unwrap();
        model
            .forward(&ForwardInput::causal(&PROMPT, &positions(0, 10)), &mut cache)
            .unwrap();
        model
            .forward(
                &ForwardInput::causal(&[5, 6, 7, 8], &positions(10, 4)),
                &mut cache,
            )
            .unwrap();
        cache.truncate(11).unwrap();
        let next = model
            .forward(&ForwardInput::causal(&[9], &[11]), &mut cache)
            .unwrap();
        let mut seq = PROMPT.to_vec();
        seq.extend([5, 9]);
        assert_close(
            next.row(0),
            &fresh_last(&model, &seq),
            tol,
            &format!("{name} after truncate"),
        );
    }
}

#[test]
fn bad_inputs_are_errors_and_leave_the_cache_unchanged() {
    let model = random_model(&config(Architecture::Llama), TensorDType::F32, 1).unwrap();
    let mut cache = model.new_cache(12).unwrap();
    model
        .forward(&ForwardInput::causal(&PROMPT, &positions(0, 10)), &mut cache)
        .unwrap();
    let bad_parent = [None, Some(1)];
    let cases: Vec<ForwardInput<'_>> = vec![
        ForwardInput::causal(&[], &[]),
        ForwardInput::causal(&[1, 2, 3], &[10, 11, 12]),
        ForwardInput::causal(&[1], &[10, 11]),
        ForwardInput::causal(&[300], &[10]),
        ForwardInput::causal(&[1], &[64]),
        ForwardInput {
            tokens: &[1, 2],
            positions: &[10, 11],
            mask: AttentionMask::Tree(&bad_parent),
            want_hidden: false,
            taps: &[],
            logits: ahead_model::transformer::Logits::All,
        },
        ForwardInput {
            tokens: &[1, 2],
            positions: &[10, 11],
            mask: AttentionMask::Tree(&[None]),
            want_hidden: false,
            taps: &[],
            logits: ahead_model::transformer::Logits::All,
        },
    ];
    for input in cases {
        assert!(
            model.forward(&input, &mut cache).is_err(),
            "{input:?} should fail"
        );
        assert_eq!(cache.len(), 10);
    }
    assert!(
        model.new_cache(65).is_err(),
        "a cache larger than the context is refused"
    );
    let other = random_model(
        &ModelConfig {
            n_layers: 3,
            ..config(Architecture::Llama)
        },
        TensorDType::F32,
        1,
    )
    .unwrap();
    assert!(
        other
            .forward(&ForwardInput::causal(&[1], &[10]), &mut cache)
            .is_err(),
        "cache of another model"
    );
}

#[test]
fn sliding_window_limits_what_mistral_attends_to() {
    // One layer, window 6: position 9 attends to positions 4..=9 only, so the token at
    // position 1 cannot change its logits; without a window it does.
    let one_layer = |arch| {
        random_model(
            &ModelConfig {
                n_layers: 1,
                ..config(arch)
            },
            TensorDType::F32,
            5,
        )
        .unwrap()
    };
    let (mistral, llama) = (one_layer(Architecture::Mistral), one_layer(Architecture::Llama));
    let a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let b = [1, 200, 3, 4, 5, 6, 7, 8, 9, 10];
    assert_eq!(fresh_last(&mistral, &a), fresh_last(&mistral, &b));
    assert_ne!(fresh_last(&llama, &a), fresh_last(&llama, &b));
}

/// An explicit row mask that is not a tree (lookahead decoding's): a row that sees rows 0 and 2
/// but not 1 gives the logits of a fresh forward over exactly the rows it sees.
#[test]
fn an_explicit_row_mask_equals_the_sequences_each_row_sees() {
    for (name, model, tol) in models() {
        let mut cache = model.new_cache(PROMPT.len() + 5).unwrap();
        let prefix = &PROMPT[..6];
        model
            .forward(
                &ForwardInput::causal(prefix, &positions(0, prefix.len())),
                &mut cache,
            )
            .unwrap();
        let p = prefix.len();
        // Rows: 0 pending; 1 and 2 both at p+1; 3 at p+2 sees 0 and 2; 4 at p+3 sees 0, 2, 3.
        let tokens = [PROMPT[6], 11, 12, 13, 14];
        let pos = [p, p + 1, p + 1, p + 2, p + 3];
        let rows = vec![vec![], vec![0], vec![0], vec![0, 2], vec![0, 2, 3]];
        let input = ForwardInput {
            tokens: &tokens,
            positions: &pos,
            mask: AttentionMask::Rows(&rows),
            want_hidden: false,
            taps: &[],
            logits: ahead_model::transformer::Logits::All,
        };
        let out = model.forward(&input, &mut cache).unwrap();
        for (row, seen) in [
            (1usize, vec![0usize, 1]),
            (3, vec![0, 2, 3]),
            (4, vec![0, 2, 3, 4]),
        ] {
            let mut seq = prefix.to_vec();
            seq.extend(seen.iter().map(|&r| tokens[r]));
            assert_close(
                out.row(row),
                &fresh_last(&model, &seq),
                tol,
                &format!("{name} row {row}"),
            );
        }
        // Rows that do not list earlier rows in order are refused.
        let bad = vec![vec![], vec![0], vec![1, 0]];
        let input = ForwardInput {
            tokens: &tokens[..3],
            positions: &pos[..3],
            mask: AttentionMask::Rows(&bad),
            want_hidden: false,
            taps: &[],
            logits: ahead_model::transformer::Logits::All,
        };
        let mut c = model.new_cache(8).unwrap();
        assert!(model.forward(&input, &mut c).is_err());
    }
}

#[test]
fn a_batch_of_sequences_equals_their_separate_forwards_and_a_bad_item_changes_no_cache() {
    for (name, model, tol) in models() {
        // Three sequences at different points: a prompt being prefilled, a tree being
        // verified after a prompt, and one decoding step after a shorter prompt.
        let (_, tree_alone) = tree_forward(&model);
        let prefill_alone = model
            .forward(
                &ForwardInput::causal(&PROMPT[..7], &positions(0, 7)),
                &mut model.new_cache(32).unwrap(),
            )
            .unwrap();
        let mut short = model.new_cache(32).unwrap();
        model
            .forward(&ForwardInput::causal(&PROMPT[..4], &positions(0, 4)), &mut short)
            .unwrap();
        let mut short_alone = short.clone();
        let step_alone = model
            .forward(&ForwardInput::causal(&[9], &[4]), &mut short_alone)
            .unwrap();

        let mut tree_cache = model.new_cache(32).unwrap();
        model
            .forward(&ForwardInput::causal(&PROMPT, &positions(0, 10)), &mut tree_cache)
            .unwrap();
        let mut prefill_cache = model.new_cache(32).unwrap();
        let pos: Vec<usize> = (0..5).map(|n| 10 + path(n).len() - 1).collect();
        let (p7, p1) = (positions(0, 7), [4]);
        let inputs = [
            ForwardInput::causal(&PROMPT[..7], &p7),
            ForwardInput {
                tokens: &TREE_TOKENS,
                positions: &pos,
                mask: AttentionMask::Tree(&TREE_PARENTS),
                want_hidden: true,
                taps: &[],
                logits: ahead_model::transformer::Logits::All,
            },
            ForwardInput::causal(&[9], &p1),
        ];
        let outs = model
            .forward_batch(&mut [
                BatchItem {
                    input: inputs[0],
                    cache: &mut prefill_cache,
                },
                BatchItem {
                    input: inputs[1],
                    cache: &mut tree_cache,
                },
                BatchItem {
                    input: inputs[2],
                    cache: &mut short,
                },
            ])
            .unwrap();
        assert_eq!(outs.len(), 3);
        assert!(outs[0].hidden.is_none() && outs[2].hidden.is_none());
        assert_eq!(
            outs[1].hidden.as_ref().map(Vec::len),
            tree_alone.hidden.as_ref().map(Vec::len)
        );
        for (got, want, what) in [
            (&outs[0], &prefill_alone, "prefill"),
            (&outs[1], &tree_alone, "tree"),
            (&outs[2], &step_alone, "step"),
        ] {
            assert_eq!(got.rows(), want.rows(), "{name} {what}");
            for r in 0..got.rows() {
                assert_close(got.row(r), want.row(r), tol, &format!("{name} {what} row {r}"));
                if tol.rtol == F32.rtol {
                    assert_eq!(
                        got.row(r),
                        want.row(r),
                        "{name} {what} row {r}: f32 must be bit-identical"
                    );
                }
            }
        }
        assert_eq!((prefill_cache.len(), tree_cache.len(), short.len()), (7, 15, 5));

        // One bad item (a token outside the vocabulary) fails the batch and no cache grows.
        let bad = [300u32];
        let err = model.forward_batch(&mut [
            BatchItem {
                input: ForwardInput::causal(&[1], &[7]),
                cache: &mut prefill_cache,
            },
            BatchItem {
                input: ForwardInput::causal(&bad, &[5]),
                cache: &mut short,
            },
        ]);
        assert!(err.is_err(), "{name}: a bad item fails the batch");
        assert_eq!(
            (prefill_cache.len(), short.len()),
            (7, 5),
            "{name}: caches unchanged"
        );
        assert!(
            model.forward_batch(&mut []).is_err(),
            "an empty batch is an error"
        );
    }
}
