//! The decoder-only transformer: immutable weights, `forward(&self, input, &mut KvCache)`.

use super::block::{Angles, LayerPlan, Scratch, Segment};
use super::config::ModelConfig;
use super::input::{ForwardInput, ForwardOutput, Logits};
use super::kernels;
use super::kv_cache::KvCache;
use super::linear::Linear;
use super::rope::Rope;
use crate::error::{ModelError, Result};
use crate::tensor::TensorDType;

/// One transformer block's weights.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    /// Qwen2 (and Llama with `attention_bias`) add biases to q, k and v.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// QK-norm (Qwen3, Gemma 3): RMSNorm weights applied to every query and key head.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Gemma's norms on the attention and feed-forward outputs, before each residual add.
    pub post_attn_norm: Option<Vec<f32>>,
    pub post_ffn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    /// gate (w1), down (w2), up (w3), llama2.c's names.
    pub w1: Linear,
    pub w2: Linear,
    pub w3: Linear,
}

/// Every weight of a model.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    pub embedding: Linear,
    pub layers: Vec<LayerWeights>,
    pub norm: Vec<f32>,
    /// `None` when the classifier is tied to the embedding.
    pub lm_head: Option<Linear>,
}

/// A loaded model. Immutable: share it across threads and sequences.
#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    weights: ModelWeights,
    rope: Rope,
    /// The sliding layers' RoPE, when its base differs from the global one (Gemma 3).
    local_rope: Option<Rope>,
    /// The distinct windows of the layers (`None`: the whole context), and each layer's.
    windows: Vec<Option<usize>>,
    layer_plans: Vec<LayerPlan>,
    /// When the classifier scores a subset of the vocabulary ([`Model::restricted_to`]): the
    /// token of each logit row.
    classifier_tokens: Option<Vec<u32>>,
}

impl Model {
    /// Builds a model, checking every weight's shape against the config.
    pub fn new(config: ModelConfig, weights: ModelWeights) -> Result<Self> {
        config.validate("config")?;
        check_shapes(&config, &weights)?;
        let rope = Rope::new(&config);
        let local_rope = config.local_rope_theta.map(|theta| Rope::local(&config, theta));
        let mut windows = Vec::new();
        let mut layer_plans = Vec::with_capacity(config.n_layers);
        for li in 0..config.n_layers {
            let a = config.layer_attention(li);
            let window = match windows.iter().position(|w| *w == a.window) {
                Some(i) => i,
                None => {
                    windows.push(a.window);
                    windows.len() - 1
                }
            };
            layer_plans.push(LayerPlan {
                window,
                local_rope: a.local_rope,
            });
        }
        Ok(Self {
            config,
            weights,
            rope,
            local_rope,
            windows,
            layer_plans,
            classifier_tokens: None,
        })
    }

    /// This model with a classifier that scores only `tokens` (FR-Spec: a drafter's
    /// classifier over the most frequent tokens of the target's outputs is a fraction of the
    /// full one's cost). Logit row r is then token `tokens[r]` ([`Model::classifier_tokens`]).
    /// For drafters only: a target must score the whole vocabulary. The rows keep the
    /// classifier's own type where it can hold them, else Q8_0.
    pub fn restricted_to(&self, tokens: &[u32]) -> Result<Model> {
        let vocab = self.config.vocab_size;
        if self.classifier_tokens.is_some() {
            return Err(ModelError::Input("the classifier is restricted already".into()));
        }
        if tokens.is_empty() {
            return Err(ModelError::Input(
                "a classifier subset needs at least one token".into(),
            ));
        }
        let mut seen = vec![false; vocab];
        for &t in tokens {
            match seen.get_mut(t as usize) {
                None => {
                    return Err(ModelError::Input(format!(
                        "classifier subset token {t} is outside the vocabulary of {vocab}"
                    )))
                }
                Some(true) => return Err(ModelError::Input(format!("classifier subset repeats token {t}"))),
                Some(s) => *s = true,
            }
        }
        let head = self.weights.lm_head.as_ref().unwrap_or(&self.weights.embedding);
        let dim = self.config.dim;
        let mut values = vec![0f32; tokens.len() * dim];
        for (row, &t) in values.chunks_exact_mut(dim).zip(tokens) {
            head.row(t as usize, row)?;
        }
        let dtype = match head.dtype() {
            d @ (TensorDType::F32 | TensorDType::F16 | TensorDType::BF16 | TensorDType::Q8_0) => d,
            _ => TensorDType::Q8_0,
        };
        let mut restricted = self.clone();
        restricted.weights.lm_head = Some(Linear::quantize(&values, tokens.len(), dim, dtype)?);
        restricted.classifier_tokens = Some(tokens.to_vec());
        Ok(restricted)
    }

    /// The token of each logit row when the classifier is restricted to a subset; `None`
    /// when row r is token r.
    pub fn classifier_tokens(&self) -> Option<&[u32]> {
        self.classifier_tokens.as_deref()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn weights(&self) -> &ModelWeights {
        &self.weights
    }

    /// Bytes of weights read per decoded token (the memory-bandwidth floor of decoding).
    pub fn weight_bytes(&self) -> usize {
        let w = &self.weights;
        let per_layer: usize = w
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3]
                    .iter()
                    .map(|x| x.bytes())
                    .sum::<usize>()
            })
            .sum();
        per_layer + w.lm_head.as_ref().unwrap_or(&w.embedding).bytes()
    }

    /// A KV cache for this model with room for `capacity` tokens (at most the model's context).
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        if capacity > self.config.max_seq_len {
            return Err(ModelError::Cache(format!(
                "capacity {capacity} exceeds the model's context of {}",
                self.config.max_seq_len
            )));
        }
        KvCache::new(self.config.n_layers, self.config.kv_dim(), capacity)
    }

    /// Runs the input rows after everything already in `cache`, appends their keys and values,
    /// and returns logits for every row. On error the cache is left as it was.
    pub fn forward(&self, input: &ForwardInput<'_>, cache: &mut KvCache) -> Result<ForwardOutput> {
        let mut out = self.forward_batch(&mut [BatchItem { input: *input, cache }])?;
        out.pop()
            .ok_or_else(|| ModelError::Input("the forward returned no output".into()))
    }

    /// One forward for several sequences, each with its own rows, mask and cache: every weight
    /// is read once for all their rows. Each sequence's logits are bitwise those of its own
    /// `forward` (the kernels compute every row alone). On error every cache is left as it was.
    pub fn forward_batch(&self, items: &mut [BatchItem<'_, '_>]) -> Result<Vec<ForwardOutput>> {
        self.forward_items(items, None)
    }

    /// `forward` with each input row's vector given (`[rows, dim]`) instead of its token's
    /// embedding: a draft head (EAGLE) that reads the target's features. The tokens are still
    /// checked against the vocabulary; the rows' positions and mask apply as usual.
    pub fn forward_embedded(
        &self,
        input: &ForwardInput<'_>,
        embedded: &[f32],
        cache: &mut KvCache,
    ) -> Result<ForwardOutput> {
        let want = input.tokens.len() * self.config.dim;
        if embedded.len() != want {
            return Err(ModelError::Input(format!(
                "{} input values for {} rows of width {}",
                embedded.len(),
                input.tokens.len(),
                self.config.dim
            )));
        }
        let mut out = self.forward_items(&mut [BatchItem { input: *input, cache }], Some(embedded))?;
        out.pop()
            .ok_or_else(|| ModelError::Input("the forward returned no output".into()))
    }

    fn forward_items(
        &self,
        items: &mut [BatchItem<'_, '_>],
        embedded: Option<&[f32]>,
    ) -> Result<Vec<ForwardOutput>> {
        if items.is_empty() {
            return Err(ModelError::Input("an empty batch".into()));
        }
        let mut visible = Vec::with_capacity(items.len());
        for item in items.iter() {
            visible.push(self.check(&item.input, item.cache)?);
        }
        let mut bases = Vec::with_capacity(items.len());
        let mut grown = Ok(());
        for item in items.iter_mut() {
            match item.cache.grow(item.input.tokens.len()) {
                Ok(b) => bases.push(b),
                Err(e) => {
                    grown = Err(e);
                    break;
                }
            }
        }
        let result = grown.and_then(|()| self.forward_rows(items, &visible, &bases, embedded));
        if result.is_err() {
            for (item, &base) in items.iter_mut().zip(&bases) {
                item.cache.truncate(base)?;
            }
        }
        result
    }

    /// Checks one sequence's input against the model and its cache; returns its visible rows.
    fn check(&self, input: &ForwardInput<'_>, cache: &KvCache) -> Result<Vec<Vec<usize>>> {
        let cfg = &self.config;
        if input.tokens.is_empty() {
            return Err(ModelError::Input("no input rows".into()));
        }
        let visible = input.visible_rows()?;
        input.cached_view(cache.len())?;
        if input.taps.windows(2).any(|w| w[0] >= w[1])
            || input.taps.last().is_some_and(|&t| t >= cfg.n_layers)
        {
            return Err(ModelError::Input(format!(
                "tapped layers {:?} must be ascending and below {}",
                input.taps, cfg.n_layers
            )));
        }
        if cache.n_layers() != cfg.n_layers || cache.kv_dim() != cfg.kv_dim() {
            return Err(ModelError::Cache("cache was built for another model".into()));
        }
        if let Some(&p) = input.positions.iter().find(|&&p| p >= cfg.max_seq_len) {
            return Err(ModelError::Input(format!(
                "position {p} is beyond the context of {}",
                cfg.max_seq_len
            )));
        }
        if let Some(&t) = input.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::Input(format!(
                "token {t} is outside the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        Ok(visible)
    }

    fn forward_rows(
        &self,
        items: &mut [BatchItem<'_, '_>],
        visible: &[Vec<Vec<usize>>],
        bases: &[usize],
        embedded: Option<&[f32]>,
    ) -> Result<Vec<ForwardOutput>> {
        let cfg = &self.config;
        let (dim, hd) = (cfg.dim, cfg.head_dim);
        let k: usize = items.iter().map(|i| i.input.tokens.len()).sum();
        let mut x = vec![0f32; k * dim];
        let mut angles = Angles {
            global: vec![0f32; k * hd],
            local: self.local_rope.as_ref().map(|_| vec![0f32; k * hd]),
        };
        // Gemma multiplies token embeddings by sqrt(dim) in f32 (a draft head's given rows stay).
        let embedding_scale =
            (cfg.architecture.spec().scale_embedding && embedded.is_none()).then(|| (dim as f32).sqrt());
        let mut segments = Vec::with_capacity(items.len());
        let mut first = 0;
        for ((item, vis), &base) in items.iter_mut().zip(visible).zip(bases) {
            let n = item.input.tokens.len();
            let view = item.input.cached_view(base)?;
            for (r, (&t, &p)) in item.input.tokens.iter().zip(item.input.positions).enumerate() {
                let row = first + r;
                let slot = &mut x[row * dim..(row + 1) * dim];
                match embedded {
                    Some(e) => slot.copy_from_slice(&e[row * dim..(row + 1) * dim]),
                    None => self.weights.embedding.row(t as usize, slot)?,
                }
                if let Some(scale) = embedding_scale {
                    slot.iter_mut().for_each(|v| *v *= scale);
                }
                self.rope.angles(p, &mut angles.global[row * hd..(row + 1) * hd]);
                if let (Some(rope), Some(local)) = (&self.local_rope, &mut angles.local) {
                    rope.angles(p, &mut local[row * hd..(row + 1) * hd]);
                }
                item.cache.set_position(base + r, p);
            }
            segments.push(Segment {
                first,
                rows: n,
                base,
                slots: self
                    .windows
                    .iter()
                    .map(|&w| self.visible_slots(vis, base, view, item.cache, w))
                    .collect(),
            });
            first += n;
        }
        let mut s = Scratch::new(cfg, k);
        // Per sequence, the outputs of the layers it taps (EAGLE-3's features), row-major.
        let mut tapped: Vec<Vec<f32>> = segments
            .iter()
            .zip(items.iter())
            .map(
                |(seg, item)| match (item.input.want_hidden, item.input.taps.len()) {
                    (true, t) if t > 0 => vec![0f32; seg.rows * t * dim],
                    _ => Vec::new(),
                },
            )
            .collect();
        for (li, layer) in self.weights.layers.iter().enumerate() {
            self.attention_block(li, layer, &mut x, &angles, &segments, items, &mut s)?;
            self.ffn_block(layer, &mut x, &mut s)?;
            for ((seg, item), out) in segments.iter().zip(items.iter()).zip(&mut tapped) {
                let taps = item.input.taps;
                let Some(ti) = taps.iter().position(|&t| t == li).filter(|_| !out.is_empty()) else {
                    continue;
                };
                for r in 0..seg.rows {
                    let row = seg.first + r;
                    let at = (r * taps.len() + ti) * dim;
                    out[at..at + dim].copy_from_slice(&x[row * dim..(row + 1) * dim]);
                }
            }
        }
        let mut normed = vec![0f32; k * dim];
        kernels::rms_norm(&x, &self.weights.norm, cfg.rms_eps, &mut normed);
        let head = self.weights.lm_head.as_ref().unwrap_or(&self.weights.embedding);
        // The full vocabulary, or the subset a restricted classifier scores.
        let vocab = head.rows();
        // The rows whose logits each sequence asked for (a prefill wants none: with Gemma 3's
        // 262,144-token classifier that is most of a prompt row's work).
        let scored: Vec<std::ops::Range<usize>> = segments
            .iter()
            .zip(items.iter())
            .map(|(seg, item)| {
                let end = seg.first + seg.rows;
                match item.input.logits {
                    Logits::All => seg.first..end,
                    Logits::Last => end - 1..end,
                    Logits::None => end..end,
                }
            })
            .collect();
        let n_scored: usize = scored.iter().map(|r| r.len()).sum();
        let mut logits = vec![0f32; n_scored * vocab];
        if n_scored == k {
            head.forward(&normed, k, &mut logits)?;
        } else if n_scored > 0 {
            let picked: Vec<f32> = scored
                .iter()
                .flat_map(|r| normed[r.start * dim..r.end * dim].iter().copied())
                .collect();
            head.forward(&picked, n_scored, &mut logits)?;
        }
        if let Some(cap) = cfg.final_logit_softcap {
            logits.iter_mut().for_each(|l| *l = cap * (*l / cap).tanh());
        }
        // One sequence (every unbatched forward) takes the buffers as they are.
        if let ([item], [taps]) = (&*items, &mut tapped[..]) {
            let tapping = !taps.is_empty();
            return Ok(vec![ForwardOutput {
                logits,
                vocab_size: vocab,
                hidden: match tapping {
                    true => Some(std::mem::take(taps)),
                    false => item.input.want_hidden.then_some(normed),
                },
                hidden_dim: if tapping { item.input.taps.len() * dim } else { dim },
            }]);
        }
        let mut at = 0;
        Ok(segments
            .iter()
            .zip(items.iter())
            .zip(&scored)
            .zip(tapped)
            .map(|(((seg, item), r), taps)| {
                let rows = seg.first..seg.first + seg.rows;
                let mine = logits[at * vocab..(at + r.len()) * vocab].to_vec();
                at += r.len();
                let tapping = !taps.is_empty();
                ForwardOutput {
                    logits: mine,
                    vocab_size: vocab,
                    hidden: match tapping {
                        true => Some(taps),
                        false => item
                            .input
                            .want_hidden
                            .then(|| normed[rows.start * dim..rows.end * dim].to_vec()),
                    },
                    hidden_dim: if tapping { item.input.taps.len() * dim } else { dim },
                }
            })
            .collect())
    }
}

/// One sequence's part of a batched forward: its input rows and its cache.
pub struct BatchItem<'a, 'c> {
    pub input: ForwardInput<'a>,
    pub cache: &'c mut KvCache,
}

impl Model {
    /// How layer `li` attends (window and RoPE).
    pub(super) fn layer_plan(&self, li: usize) -> LayerPlan {
        self.layer_plans[li]
    }

    /// The global RoPE, or the sliding layers' own.
    pub(super) fn rope_for(&self, local: bool) -> &Rope {
        match (&self.local_rope, local) {
            (Some(r), true) => r,
            _ => &self.rope,
        }
    }
}

/// Checks every weight against the config, naming the first that does not fit.
fn check_shapes(cfg: &ModelConfig, w: &ModelWeights) -> Result<()> {
    let lin = |name: String, l: &Linear, rows: usize, cols: usize| {
        if l.rows() == rows && l.cols() == cols {
            Ok(())
        } else {
            Err(ModelError::Shape {
                name,
                expected: vec![rows, cols],
                found: vec![l.rows(), l.cols()],
            })
        }
    };
    let vec = |name: String, v: Option<&Vec<f32>>, len: usize| match v {
        Some(v) if v.len() != len => Err(ModelError::Shape {
            name,
            expected: vec![len],
            found: vec![v.len()],
        }),
        _ => Ok(()),
    };
    let (d, q, kv, h) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.hidden_dim);
    lin("embedding".into(), &w.embedding, cfg.vocab_size, d)?;
    if let Some(head) = &w.lm_head {
        lin("lm_head".into(), head, cfg.vocab_size, d)?;
    }
    vec("norm".into(), Some(&w.norm), d)?;
    if w.layers.len() != cfg.n_layers {
        return Err(ModelError::Shape {
            name: "layers".into(),
            expected: vec![cfg.n_layers],
            found: vec![w.layers.len()],
        });
    }
    for (i, l) in w.layers.iter().enumerate() {
        let n = |s: &str| format!("layers.{i}.{s}");
        vec(n("attn_norm"), Some(&l.attn_norm), d)?;
        vec(n("ffn_norm"), Some(&l.ffn_norm), d)?;
        lin(n("wq"), &l.wq, q, d)?;
        lin(n("wk"), &l.wk, kv, d)?;
        lin(n("wv"), &l.wv, kv, d)?;
        lin(n("wo"), &l.wo, d, q)?;
        lin(n("w1"), &l.w1, h, d)?;
        lin(n("w2"), &l.w2, d, h)?;
        lin(n("w3"), &l.w3, h, d)?;
        vec(n("bq"), l.bq.as_ref(), q)?;
        vec(n("bk"), l.bk.as_ref(), kv)?;
        vec(n("bv"), l.bv.as_ref(), kv)?;
        let spec = cfg.architecture.spec();
        for (name, v, len, needed) in [
            ("q_norm", &l.q_norm, cfg.head_dim, spec.qk_norm),
            ("k_norm", &l.k_norm, cfg.head_dim, spec.qk_norm),
            ("post_attn_norm", &l.post_attn_norm, d, spec.post_norms),
            ("post_ffn_norm", &l.post_ffn_norm, d, spec.post_norms),
        ] {
            if v.is_some() != needed {
                return Err(ModelError::Input(format!(
                    "layers.{i}.{name}: {} has {}",
                    cfg.architecture.name(),
                    if needed { "one" } else { "none" }
                )));
            }
            vec(n(name), v.as_ref(), len)?;
        }
    }
    Ok(())
}
