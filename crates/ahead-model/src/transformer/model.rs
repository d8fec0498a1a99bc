//! The Llama-family transformer: immutable weights, `forward(&self, input, &mut KvCache)`.

use std::sync::Mutex;

use super::attention::{GroupAttention, Visible};
use super::config::ModelConfig;
use super::input::{ForwardInput, ForwardOutput};
use super::kernels;
use super::kv_cache::KvCache;
use super::linear::Linear;
use super::rope::Rope;
use super::spin_pool::run_tasks;
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

/// A loaded Llama-family model. Immutable: share it across threads and sequences.
#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    weights: ModelWeights,
    rope: Rope,
    /// When the classifier scores a subset of the vocabulary ([`Model::restricted_to`]): the
    /// token of each logit row.
    classifier_tokens: Option<Vec<u32>>,
}

/// Attention work (rows x heads x visible tokens x head size) below which it stays on one
/// thread: a pool round trip costs more.
const PARALLEL_ATTENTION_MIN: usize = 1 << 16;
/// Rows per attention task: a verify's rows share each cache load, and a long prefill's
/// scores (rows x heads x visible slots) stay a few MB per task.
const ATTENTION_ROWS: usize = 16;

/// One attention task: key/value head, first row, and its output rows.
type AttentionTask<'a> = (usize, usize, &'a mut [f32]);

/// Rows per attention task when attention is split over `threads`: at least two tasks per
/// thread where the rows allow (one slow task then holds no thread up long), and never more than
/// `ATTENTION_ROWS`.
fn attention_rows(rows: usize, kv_heads: usize, threads: usize) -> usize {
    let blocks_per_head = (2 * threads).div_ceil(kv_heads.max(1));
    rows.div_ceil(blocks_per_head).clamp(1, ATTENTION_ROWS)
}

impl Model {
    /// Builds a model, checking every weight's shape against the config.
    pub fn new(config: ModelConfig, weights: ModelWeights) -> Result<Self> {
        config.validate("config")?;
        check_shapes(&config, &weights)?;
        let rope = Rope::new(&config);
        Ok(Self {
            config,
            weights,
            rope,
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
        let mut angles = vec![0f32; k * hd];
        let mut segments = Vec::with_capacity(items.len());
        let mut first = 0;
        for ((item, vis), &base) in items.iter_mut().zip(visible).zip(bases) {
            let n = item.input.tokens.len();
            for (r, (&t, &p)) in item.input.tokens.iter().zip(item.input.positions).enumerate() {
                let row = first + r;
                let slot = &mut x[row * dim..(row + 1) * dim];
                match embedded {
                    Some(e) => slot.copy_from_slice(&e[row * dim..(row + 1) * dim]),
                    None => self.weights.embedding.row(t as usize, slot)?,
                }
                self.rope.angles(p, &mut angles[row * hd..(row + 1) * hd]);
                item.cache.set_position(base + r, p);
            }
            segments.push(Segment {
                first,
                rows: n,
                base,
                slots: self.visible_slots(vis, base, item.cache),
            });
            first += n;
        }
        let mut s = Scratch::new(cfg, k);
        for (li, layer) in self.weights.layers.iter().enumerate() {
            self.attention_block(li, layer, &mut x, &angles, &segments, items, &mut s)?;
            self.ffn_block(layer, &mut x, &mut s)?;
        }
        let mut normed = vec![0f32; k * dim];
        kernels::rms_norm(&x, &self.weights.norm, cfg.rms_eps, &mut normed);
        let head = self.weights.lm_head.as_ref().unwrap_or(&self.weights.embedding);
        // The full vocabulary, or the subset a restricted classifier scores.
        let vocab = head.rows();
        let mut logits = vec![0f32; k * vocab];
        head.forward(&normed, k, &mut logits)?;
        // One sequence (every unbatched forward) takes the buffers as they are.
        if let [item] = items {
            return Ok(vec![ForwardOutput {
                logits,
                vocab_size: vocab,
                hidden: item.input.want_hidden.then_some(normed),
                hidden_dim: dim,
            }]);
        }
        Ok(segments
            .iter()
            .zip(items.iter())
            .map(|(seg, item)| {
                let rows = seg.first..seg.first + seg.rows;
                ForwardOutput {
                    logits: logits[rows.start * vocab..rows.end * vocab].to_vec(),
                    vocab_size: vocab,
                    hidden: item
                        .input
                        .want_hidden
                        .then(|| normed[rows.start * dim..rows.end * dim].to_vec()),
                    hidden_dim: dim,
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

/// Where one sequence's rows sit in a batched forward, and what they attend to.
struct Segment {
    /// Its first row in the batch, and how many rows it has.
    first: usize,
    rows: usize,
    /// Cache slot of its first row.
    base: usize,
    /// The cache slots each row attends to.
    slots: Vec<Visible>,
}

/// Buffers reused by every layer of one forward.
struct Scratch {
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    out: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl Scratch {
    fn new(cfg: &ModelConfig, k: usize) -> Self {
        Self {
            h: vec![0.0; k * cfg.dim],
            q: vec![0.0; k * cfg.q_dim()],
            k: vec![0.0; k * cfg.kv_dim()],
            v: vec![0.0; k * cfg.kv_dim()],
            attn: vec![0.0; k * cfg.q_dim()],
            out: vec![0.0; k * cfg.dim],
            gate: vec![0.0; k * cfg.hidden_dim],
            up: vec![0.0; k * cfg.hidden_dim],
        }
    }
}

fn add_bias(x: &mut [f32], bias: Option<&Vec<f32>>) {
    if let Some(b) = bias {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
    }
}

impl Model {
    /// The cache slots each row sees: the committed prefix, its tree ancestors and itself,
    /// minus what a sliding window hides. The same for every layer and head. The window keeps
    /// a contiguous run of the prefix when positions grow with slots (they do for everything
    /// the engine commits); otherwise the row lists its prefix slots one by one.
    fn visible_slots(&self, visible: &[Vec<usize>], base: usize, cache: &KvCache) -> Vec<Visible> {
        let positions = cache.positions();
        let window = self.config.sliding_window;
        (0..visible.len())
            .map(|r| {
                let pos = positions[base + r];
                let in_window = |slot: &usize| window.is_none_or(|w| pos - positions[*slot].min(pos) < w);
                let tail = visible[r].iter().map(|&j| base + j).filter(in_window);
                if window.is_none() {
                    return Visible {
                        prefix: 0..base,
                        tail: tail.collect(),
                    };
                }
                let lo = (0..base).find(in_window).unwrap_or(base);
                if (lo..base).all(|s| in_window(&s)) {
                    Visible {
                        prefix: lo..base,
                        tail: tail.collect(),
                    }
                } else {
                    Visible {
                        prefix: 0..0,
                        tail: (0..base).filter(in_window).chain(tail).collect(),
                    }
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)] // one layer's view of the whole batch
    fn attention_block(
        &self,
        li: usize,
        layer: &LayerWeights,
        x: &mut [f32],
        angles: &[f32],
        segments: &[Segment],
        items: &mut [BatchItem<'_, '_>],
        s: &mut Scratch,
    ) -> Result<()> {
        let cfg = &self.config;
        let (n, hd, kv_dim, q_dim) = (x.len() / cfg.dim, cfg.head_dim, cfg.kv_dim(), cfg.q_dim());
        kernels::rms_norm(x, &layer.attn_norm, cfg.rms_eps, &mut s.h);
        layer.wq.forward(&s.h, n, &mut s.q)?;
        layer.wk.forward(&s.h, n, &mut s.k)?;
        layer.wv.forward(&s.h, n, &mut s.v)?;
        add_bias(&mut s.q, layer.bq.as_ref());
        add_bias(&mut s.k, layer.bk.as_ref());
        add_bias(&mut s.v, layer.bv.as_ref());
        for (seg, item) in segments.iter().zip(items.iter_mut()) {
            for r in seg.first..seg.first + seg.rows {
                let a = &angles[r * hd..(r + 1) * hd];
                self.rope.apply(&mut s.q[r * q_dim..(r + 1) * q_dim], hd, a);
                self.rope.apply(&mut s.k[r * kv_dim..(r + 1) * kv_dim], hd, a);
                item.cache.write(
                    li,
                    seg.base + r - seg.first,
                    &s.k[r * kv_dim..(r + 1) * kv_dim],
                    &s.v[r * kv_dim..(r + 1) * kv_dim],
                );
            }
            let rows = seg.first * q_dim..(seg.first + seg.rows) * q_dim;
            self.attend(li, seg, item.cache, &s.q[rows.clone()], &mut s.attn[rows]);
        }
        layer.wo.forward(&s.attn, n, &mut s.out)?;
        x.iter_mut().zip(&s.out).for_each(|(a, b)| *a += b);
        Ok(())
    }

    /// Scaled dot-product attention of every (row, head) of one sequence over the slots it may
    /// see: one task per key/value head and block of up to `ATTENTION_ROWS` rows (its query
    /// heads and rows share each cache load; the block bounds a task's scores).
    fn attend(&self, li: usize, seg: &Segment, cache: &KvCache, q: &[f32], out: &mut [f32]) {
        let cfg = &self.config;
        let (hd, q_dim, group) = (cfg.head_dim, cfg.q_dim(), cfg.n_heads / cfg.n_kv_heads);
        let (keys, values) = cache.layer(li);
        let span = group * hd;
        // `by_head` is [kv head][row][group x head_dim]; `out` is [row][kv head][...].
        let mut by_head = vec![0f32; cfg.n_kv_heads * seg.rows * span];
        let visible: usize = seg.slots.iter().map(Visible::len).sum();
        let parallel = visible * cfg.n_heads * hd >= PARALLEL_ATTENTION_MIN;
        let block = if parallel {
            attention_rows(seg.rows, cfg.n_kv_heads, rayon::current_num_threads())
        } else {
            ATTENTION_ROWS
        };
        let mut tasks: Vec<AttentionTask<'_>> = Vec::new();
        for (g, rows) in by_head.chunks_exact_mut(seg.rows * span).enumerate() {
            for (i, o) in rows.chunks_mut(block * span).enumerate() {
                tasks.push((g, i * block, o));
            }
        }
        let run = |(g, r0, o): AttentionTask<'_>| {
            let head = GroupAttention {
                keys,
                values,
                kv_dim: cfg.kv_dim(),
                head_dim: hd,
                group,
                kv_head: g,
                scale: 1.0 / (hd as f32).sqrt(),
            };
            let r1 = r0 + o.len() / span;
            // The slots written by rows up to r1: every tail of these rows lies among them.
            let fresh = seg.base..seg.base + r1;
            head.run(&q[r0 * q_dim..r1 * q_dim], q_dim, &seg.slots[r0..r1], fresh, o);
        };
        if !parallel {
            tasks.into_iter().for_each(run);
        } else {
            // The spinning pool starts a task without a wake-up; each task's output is its own.
            let tasks: Vec<Mutex<Option<AttentionTask<'_>>>> =
                tasks.into_iter().map(|t| Mutex::new(Some(t))).collect();
            let take = |i: usize| {
                if let Some(t) = tasks[i].lock().ok().and_then(|mut t| t.take()) {
                    run(t);
                }
            };
            run_tasks(tasks.len(), &take);
        }
        for (g, rows) in by_head.chunks_exact(seg.rows * span).enumerate() {
            for (r, heads) in rows.chunks_exact(span).enumerate() {
                out[r * q_dim + g * span..][..span].copy_from_slice(heads);
            }
        }
    }

    fn ffn_block(&self, layer: &LayerWeights, x: &mut [f32], s: &mut Scratch) -> Result<()> {
        let n = x.len() / self.config.dim;
        kernels::rms_norm(x, &layer.ffn_norm, self.config.rms_eps, &mut s.h);
        layer.w1.forward(&s.h, n, &mut s.gate)?;
        layer.w3.forward(&s.h, n, &mut s.up)?;
        kernels::silu_mul(&mut s.gate, &s.up);
        layer.w2.forward(&s.gate, n, &mut s.out)?;
        x.iter_mut().zip(&s.out).for_each(|(a, b)| *a += b);
        Ok(())
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
    }
    Ok(())
}
