//! The draft being trained: a Llama-shaped model (RMSNorm, RoPE in interleaved pairs, grouped-
//! query attention, SwiGLU, classifier tied to the embedding) written with candle tensors so
//! autograd gives its gradients. `to_model` copies the weights into an inference `Model` whose
//! forward computes the same function (tested).

use ahead_core::Rng;
use ahead_model::transformer::{
    Architecture, LayerWeights, Linear, ModelConfig, ModelWeights, RopeScaling, RopeStyle,
};
use ahead_model::Model;
use candle_core::{DType, Device, Tensor, Var, D};

use crate::error::{Result, TrainError};

/// The shape of a draft; vocabulary, context and RoPE come from the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DraftShape {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
}

impl DraftShape {
    /// The inference config of a draft of this shape for `target`.
    pub fn config(&self, target: &ModelConfig) -> Result<ModelConfig> {
        let s = self;
        if s.dim == 0 || s.hidden_dim == 0 || s.n_layers == 0 || s.n_heads == 0 || s.n_kv_heads == 0 {
            return Err(TrainError::Options(format!("every size must be positive: {s:?}")));
        }
        if !s.dim.is_multiple_of(s.n_heads) || !(s.dim / s.n_heads).is_multiple_of(2) {
            return Err(TrainError::Options(format!(
                "dim {} must split into {} heads of an even size",
                s.dim, s.n_heads
            )));
        }
        if !s.n_heads.is_multiple_of(s.n_kv_heads) {
            return Err(TrainError::Options(format!(
                "{} query heads cannot share {} key/value heads evenly",
                s.n_heads, s.n_kv_heads
            )));
        }
        Ok(ModelConfig {
            architecture: Architecture::Llama,
            dim: s.dim,
            hidden_dim: s.hidden_dim,
            n_layers: s.n_layers,
            n_heads: s.n_heads,
            n_kv_heads: s.n_kv_heads,
            head_dim: s.dim / s.n_heads,
            vocab_size: target.vocab_size,
            max_seq_len: target.max_seq_len,
            rope_theta: target.rope_theta,
            rope_style: RopeStyle::Interleaved,
            rope_scaling: RopeScaling::None,
            rope_freq_factors: None,
            rms_eps: target.rms_eps,
            sliding_window: None,
            sliding_layers: None,
            local_rope_theta: None,
            attention_scale: None,
            final_logit_softcap: None,
        })
    }
}

struct Layer {
    attn_norm: Var,
    wq: Var,
    wk: Var,
    wv: Var,
    wo: Var,
    ffn_norm: Var,
    w1: Var,
    w2: Var,
    w3: Var,
}

/// Keys and values (after RoPE, repeated for the query heads) of every pass so far, per layer:
/// `kv[layer][pass]` (see [`Student::blocks_pass`]).
pub type PassKv = Vec<Vec<(Tensor, Tensor)>>;

/// A trainable draft.
pub struct Student {
    cfg: ModelConfig,
    embedding: Var,
    layers: Vec<Layer>,
    norm: Var,
    /// cos and sin of every (position, frequency), `[max_seq_len, head_dim / 2, 1]`.
    cos: Tensor,
    sin: Tensor,
    /// The embedding is the target's and is not trained (`vars` leaves it out).
    frozen_embedding: bool,
    /// A classifier of its own (`[vocab, dim]`, frozen: the target's) when not tied.
    lm_head: Option<Tensor>,
}

impl Student {
    /// Random initial weights (uniform, scaled by fan-in; norms at 1), reproducible from `seed`.
    pub fn new(cfg: ModelConfig, seed: u64) -> Result<Self> {
        let dev = Device::Cpu;
        let mut rng = Rng::new(seed);
        let mut mat = |rows: usize, cols: usize| -> Result<Var> {
            let bound = (3.0 / cols as f64).sqrt();
            let v: Vec<f32> = (0..rows * cols)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                .collect();
            Ok(Var::from_tensor(&Tensor::from_vec(v, (rows, cols), &dev)?)?)
        };
        let ones = |n: usize| -> Result<Var> { Ok(Var::ones(n, DType::F32, &dev)?) };
        let (d, h, q, kv) = (cfg.dim, cfg.hidden_dim, cfg.q_dim(), cfg.kv_dim());
        let embedding = mat(cfg.vocab_size, d)?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for _ in 0..cfg.n_layers {
            layers.push(Layer {
                attn_norm: ones(d)?,
                wq: mat(q, d)?,
                wk: mat(kv, d)?,
                wv: mat(kv, d)?,
                wo: mat(d, q)?,
                ffn_norm: ones(d)?,
                w1: mat(h, d)?,
                w2: mat(d, h)?,
                w3: mat(h, d)?,
            });
        }
        let norm = ones(d)?;
        let half = cfg.head_dim / 2;
        let mut cos = Vec::with_capacity(cfg.max_seq_len * half);
        let mut sin = Vec::with_capacity(cfg.max_seq_len * half);
        for pos in 0..cfg.max_seq_len {
            for i in 0..half {
                // The same frequencies as ahead_model's `Rope` (no scaling for drafts).
                let f = 1.0 / cfg.rope_theta.powf((2 * i) as f32 / cfg.head_dim as f32);
                let a = pos as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (cfg.max_seq_len, half, 1), &dev)?;
        let sin = Tensor::from_vec(sin, (cfg.max_seq_len, half, 1), &dev)?;
        Ok(Self {
            cfg,
            embedding,
            layers,
            norm,
            cos,
            sin,
            frozen_embedding: false,
            lm_head: None,
        })
    }

    /// A student over a given embedding (`[vocab, dim]` values, not trained: a target's, so
    /// the draft reads tokens as the target does), classifier (the embedding when `None`,
    /// else `[vocab, dim]` values, not trained) and final norm, with fresh layers.
    pub fn over_embedding(
        cfg: ModelConfig,
        embedding: Vec<f32>,
        lm_head: Option<Vec<f32>>,
        norm: Vec<f32>,
        seed: u64,
    ) -> Result<Self> {
        let matrix = cfg.vocab_size * cfg.dim;
        if embedding.len() != matrix
            || lm_head.as_ref().is_some_and(|h| h.len() != matrix)
            || norm.len() != cfg.dim
        {
            return Err(TrainError::Options(format!(
                "an embedding of {} values and a norm of {} do not fit vocabulary {} x dim {}",
                embedding.len(),
                norm.len(),
                cfg.vocab_size,
                cfg.dim
            )));
        }
        let s = Self::new(cfg, seed)?;
        let dev = Device::Cpu;
        s.embedding
            .set(&Tensor::from_vec(embedding, s.embedding.shape(), &dev)?)?;
        s.norm.set(&Tensor::from_vec(norm, s.norm.shape(), &dev)?)?;
        let lm_head = lm_head
            .map(|h| Tensor::from_vec(h, (s.cfg.vocab_size, s.cfg.dim), &dev))
            .transpose()?;
        Ok(Self {
            frozen_embedding: true,
            lm_head,
            ..s
        })
    }

    /// The classifier's rows of `tokens`, `[tokens, dim]`, as constants (a frozen classifier
    /// over a subset).
    pub fn classifier_rows(&self, tokens: &[u32]) -> Result<Tensor> {
        let ids = Tensor::from_vec(tokens.to_vec(), tokens.len(), &Device::Cpu)?;
        let head = self.lm_head.as_ref().unwrap_or(self.embedding.as_tensor());
        // Frozen: no gradient flows back into the table.
        Ok(head.index_select(&ids, 0)?.detach())
    }

    /// A trainable copy of `model` (for joint training). It must have the shape this student
    /// computes: tied classifier, interleaved RoPE, no biases, no RoPE scaling or window.
    pub fn from_model(model: &Model) -> Result<Self> {
        let cfg = model.config();
        let w = model.weights();
        let unsupported = |why: &str| Err(TrainError::Options(format!("joint training needs {why}")));
        if w.lm_head.is_some() {
            return unsupported("a classifier tied to the embedding");
        }
        if cfg.rope_style != RopeStyle::Interleaved
            || cfg.rope_scaling != RopeScaling::None
            || cfg.rope_freq_factors.is_some()
            || cfg.sliding_window.is_some()
        {
            return unsupported("plain interleaved RoPE (a llama2.c-style model)");
        }
        if w.layers
            .iter()
            .any(|l| l.bq.is_some() || l.bk.is_some() || l.bv.is_some())
        {
            return unsupported("a model without attention biases");
        }
        let mut s = Self::new(cfg.clone(), 0)?;
        let set = |var: &Var, values: Vec<f32>| -> Result<()> {
            let t = Tensor::from_vec(values, var.shape(), &Device::Cpu)?;
            Ok(var.set(&t)?)
        };
        set(&s.embedding, w.embedding.to_f32()?)?;
        set(&s.norm, w.norm.clone())?;
        for (sl, ml) in s.layers.iter_mut().zip(&w.layers) {
            set(&sl.attn_norm, ml.attn_norm.clone())?;
            set(&sl.ffn_norm, ml.ffn_norm.clone())?;
            for (var, lin) in [
                (&sl.wq, &ml.wq),
                (&sl.wk, &ml.wk),
                (&sl.wv, &ml.wv),
                (&sl.wo, &ml.wo),
                (&sl.w1, &ml.w1),
                (&sl.w2, &ml.w2),
                (&sl.w3, &ml.w3),
            ] {
                set(var, lin.to_f32()?)?;
            }
        }
        Ok(s)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Every trainable tensor.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = Vec::new();
        if !self.frozen_embedding {
            v.push(self.embedding.clone());
        }
        v.push(self.norm.clone());
        for l in &self.layers {
            v.extend(
                [
                    &l.attn_norm,
                    &l.wq,
                    &l.wk,
                    &l.wv,
                    &l.wo,
                    &l.ffn_norm,
                    &l.w1,
                    &l.w2,
                    &l.w3,
                ]
                .into_iter()
                .cloned(),
            );
        }
        v
    }

    /// Number of trainable values.
    pub fn parameters(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` (u32), causal from position 0.
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        Ok(self.forward_hidden(tokens)?.0)
    }

    /// Logits and the final normalised hidden states `[batch, seq, dim]` (what Medusa heads
    /// read).
    pub fn forward_hidden(&self, tokens: &Tensor) -> Result<(Tensor, Tensor)> {
        let hidden = self.hidden(tokens)?;
        let head = self.lm_head.as_ref().unwrap_or(self.embedding.as_tensor());
        Ok((linear(&hidden, head)?, hidden))
    }

    /// The final normalised hidden states `[batch, seq, dim]` for token ids `[batch, seq]`.
    pub fn hidden(&self, tokens: &Tensor) -> Result<Tensor> {
        self.blocks(self.embed(tokens)?)
    }

    /// The embeddings `[batch, seq, dim]` of token ids `[batch, seq]`.
    pub fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        // A frozen embedding takes no gradient (49,152 x 576 of them for SmolLM2, every step).
        let table = if self.frozen_embedding {
            self.embedding.as_tensor().detach()
        } else {
            self.embedding.as_tensor().clone()
        };
        Ok(table
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, t, self.cfg.dim))?)
    }

    /// The layers and the final norm over input vectors `x` `[batch, seq, dim]` at positions
    /// 0..seq, causal.
    pub fn blocks(&self, x: Tensor) -> Result<Tensor> {
        self.blocks_pass(x, &mut Vec::new())
    }

    /// The layers and the final norm over one pass of rows `x` `[batch, n, dim]`. The first
    /// pass is the real rows, causal at positions 0..n. Pass s > 0 is chain step s (EAGLE's
    /// training-time test): its row j sits at position j + s and sees real rows 0..=j, row j of
    /// every earlier chain pass, and itself, as a chain drafted after real row j does. Each
    /// pass's keys and values are kept in `kv` for the next.
    pub fn blocks_pass(&self, mut x: Tensor, kv: &mut PassKv) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let cfg = &self.cfg;
        let pass = kv.first().map_or(0, Vec::len);
        if n + pass > cfg.max_seq_len {
            return Err(TrainError::Options(format!(
                "sequence of {n} at offset {pass} is longer than the context {}",
                cfg.max_seq_len
            )));
        }
        kv.resize(self.layers.len(), Vec::new());
        let (cos, sin) = (self.cos.narrow(0, pass, n)?, self.sin.narrow(0, pass, n)?);
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        for (l, seen) in self.layers.iter().zip(kv.iter_mut()) {
            let h = rms_norm(&x, &l.attn_norm, cfg.rms_eps)?;
            let heads = |w: &Var, count: usize| -> Result<Tensor> {
                Ok(linear(&h, w)?
                    .reshape((b, n, count, cfg.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = rope(&heads(&l.wq, cfg.n_heads)?, &cos, &sin)?;
            let k = repeat_kv(&rope(&heads(&l.wk, cfg.n_kv_heads)?, &cos, &sin)?, cfg)?;
            let v = repeat_kv(&heads(&l.wv, cfg.n_kv_heads)?, cfg)?;
            let out =
                match seen.first() {
                    None => {
                        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?
                            .broadcast_add(&causal_mask(n, n, x.device())?)?;
                        candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)?
                    }
                    Some((real_k, real_v)) => {
                        let real = real_k.dim(2)?;
                        let mut scores = vec![(q.matmul(&real_k.t()?.contiguous()?)? * scale)?
                            .broadcast_add(&causal_mask(n, real, x.device())?)?];
                        let mut values = Vec::with_capacity(seen.len());
                        // Row j of each earlier chain pass, then the row itself: one score each.
                        for (ck, cv) in seen[1..]
                            .iter()
                            .map(|(k, v)| (k.narrow(2, 0, n), v.narrow(2, 0, n)))
                        {
                            scores.push(((&q * ck?)?.sum_keepdim(3)? * scale)?);
                            values.push(cv?);
                        }
                        scores.push(((&q * &k)?.sum_keepdim(3)? * scale)?);
                        values.push(v.clone());
                        let att = candle_nn::ops::softmax(&Tensor::cat(&scores, 3)?, D::Minus1)?;
                        let mut out = att.narrow(3, 0, real)?.matmul(real_v)?;
                        for (i, cv) in values.iter().enumerate() {
                            out = (out + att.narrow(3, real + i, 1)?.broadcast_mul(cv)?)?;
                        }
                        out
                    }
                };
            seen.push((k, v));
            let out = out.transpose(1, 2)?.contiguous()?.reshape((b, n, cfg.q_dim()))?;
            x = (x + linear(&out, &l.wo)?)?;
            let h = rms_norm(&x, &l.ffn_norm, cfg.rms_eps)?;
            let gate = linear(&h, &l.w1)?.silu()?;
            x = (x + linear(&(gate * linear(&h, &l.w3)?)?, &l.w2)?)?;
        }
        Ok(rms_norm(&x, &self.norm, cfg.rms_eps)?)
    }

    /// The trained weights as an inference model (f32, tied classifier).
    pub fn to_model(&self) -> Result<Model> {
        let mat = |v: &Var| -> Result<Linear> {
            let (rows, cols) = v.dims2()?;
            Ok(Linear::from_f32(v.flatten_all()?.to_vec1::<f32>()?, rows, cols)?)
        };
        let vec = |v: &Var| -> Result<Vec<f32>> { Ok(v.to_vec1::<f32>()?) };
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            layers.push(LayerWeights {
                attn_norm: vec(&l.attn_norm)?,
                wq: mat(&l.wq)?,
                wk: mat(&l.wk)?,
                wv: mat(&l.wv)?,
                wo: mat(&l.wo)?,
                bq: None,
                bk: None,
                bv: None,
                q_norm: None,
                k_norm: None,
                post_attn_norm: None,
                post_ffn_norm: None,
                ffn_norm: vec(&l.ffn_norm)?,
                w1: mat(&l.w1)?,
                w2: mat(&l.w2)?,
                w3: mat(&l.w3)?,
            });
        }
        let weights = ModelWeights {
            embedding: mat(&self.embedding)?,
            layers,
            norm: vec(&self.norm)?,
            lm_head: match &self.lm_head {
                Some(h) => Some(Linear::from_f32(
                    h.flatten_all()?.to_vec1::<f32>()?,
                    self.cfg.vocab_size,
                    self.cfg.dim,
                )?),
                None => None,
            },
        };
        Ok(Model::new(self.cfg.clone(), weights)?)
    }
}

/// `x @ w^T` over the last dimension.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_matmul(&w.t()?)
}

/// `w * x / rms(x)` over the last dimension (as the inference kernel computes it).
fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps as f64)?.sqrt()?)?.broadcast_mul(w)
}

/// Rotates the pairs (2i, 2i+1) of every head of `x` `[b, heads, t, hd]` by angle i.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let (b, h, t, hd) = x.dims4()?;
    let pairs = x.reshape((b, h, t, hd / 2, 2))?;
    let x0 = pairs.narrow(4, 0, 1)?;
    let x1 = pairs.narrow(4, 1, 1)?;
    let r0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
    let r1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
    Tensor::cat(&[r0, r1], 4)?.reshape((b, h, t, hd))
}

/// Key/value heads repeated for their query heads: query head h reads key/value head h / group.
fn repeat_kv(x: &Tensor, cfg: &ModelConfig) -> candle_core::Result<Tensor> {
    let group = cfg.n_heads / cfg.n_kv_heads;
    if group == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, hd) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, group, t, hd))?
        .contiguous()?
        .reshape((b, kv * group, t, hd))
}

/// `[rows, cols]`: 0 where the column is at most the row, a large negative number above (no
/// -inf: no NaN in gradients).
fn causal_mask(rows: usize, cols: usize, dev: &Device) -> candle_core::Result<Tensor> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| if i % cols > i / cols { -1e9 } else { 0.0 })
        .collect();
    Tensor::from_vec(v, (rows, cols), dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ahead_model::transformer::synthetic::tiny_config;
    use ahead_model::ForwardInput;

    #[test]
    fn a_student_copied_from_a_model_computes_its_logits() {
        let model = ahead_model::load(&ahead_model::ModelSource::Default, &Default::default())
            .unwrap()
            .model;
        let s = Student::from_model(&model).unwrap();
        let ids: Vec<u32> = vec![1, 403, 407, 261, 378, 12];
        let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
        let want = s
            .forward(&t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut cache = model.new_cache(ids.len()).unwrap();
        let pos: Vec<usize> = (0..ids.len()).collect();
        let got = model
            .forward(&ForwardInput::causal(&ids, &pos), &mut cache)
            .unwrap();
        ahead_testutil::assert_close(&got.logits, &want, ahead_testutil::F32, "copied student");
    }

    #[test]
    fn the_inference_copy_computes_the_same_logits() {
        let target = tiny_config(Architecture::Llama, 50);
        let shape = DraftShape {
            dim: 16,
            hidden_dim: 24,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
        };
        let s = Student::new(shape.config(&target).unwrap(), 7).unwrap();
        let ids: Vec<u32> = vec![1, 5, 9, 3, 44, 2, 7];
        let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
        let want = s
            .forward(&t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let model = s.to_model().unwrap();
        let mut cache = model.new_cache(ids.len()).unwrap();
        let pos: Vec<usize> = (0..ids.len()).collect();
        let got = model
            .forward(&ForwardInput::causal(&ids, &pos), &mut cache)
            .unwrap();
        ahead_testutil::assert_close(&got.logits, &want, ahead_testutil::F32, "draft logits");
    }
}
