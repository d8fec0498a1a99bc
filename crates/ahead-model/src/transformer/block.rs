//! One decoder layer over a batch of rows: attention (with its own window and RoPE per layer)
//! and the gated feed-forward, with each architecture's switches from `arch`.

use std::sync::Mutex;

use super::attention::{GroupAttention, Visible};
use super::config::{Activation, ModelConfig};
use super::kernels;
use super::kv_cache::KvCache;
use super::model::{BatchItem, LayerWeights, Model};
use super::spin_pool::run_tasks;
use crate::error::Result;

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

/// Where one sequence's rows sit in a batched forward, and what they attend to.
pub(super) struct Segment {
    /// Its first row in the batch, and how many rows it has.
    pub first: usize,
    pub rows: usize,
    /// Cache slot of its first row.
    pub base: usize,
    /// The cache slots each row attends to, for each of the model's distinct windows
    /// (`Model::windows`).
    pub slots: Vec<Vec<Visible>>,
}

/// How one layer attends: an index into `Model::windows`, and whether it rotates with the
/// sliding layers' RoPE.
#[derive(Debug, Clone, Copy)]
pub(super) struct LayerPlan {
    pub window: usize,
    pub local_rope: bool,
}

/// RoPE angles of every row of a forward: the global RoPE's, and the sliding layers' own when
/// their base differs.
pub(super) struct Angles {
    pub global: Vec<f32>,
    pub local: Option<Vec<f32>>,
}

/// Buffers reused by every layer of one forward.
pub(super) struct Scratch {
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
    pub fn new(cfg: &ModelConfig, k: usize) -> Self {
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

/// RMSNorm in place over each `weight.len()`-wide piece of `x` (QK-norm: every head), when the
/// layer has that norm.
fn norm_in_place(x: &mut [f32], weight: Option<&Vec<f32>>, eps: f32) {
    if let Some(w) = weight {
        kernels::rms_norm_in_place(x, w, eps);
    }
}

/// `x += f`, where `f` first passes through the post-norm when the layer has one.
fn add_residual(x: &mut [f32], f: &mut [f32], post_norm: Option<&Vec<f32>>, eps: f32) {
    norm_in_place(f, post_norm, eps);
    x.iter_mut().zip(f.iter()).for_each(|(a, b)| *a += b);
}

impl Model {
    /// The cache slots each row sees under `window`: the committed prefix (the first
    /// `view.0` slots), the cached ancestors `view.1` lists, its tree ancestors in this forward
    /// and itself, minus what the window hides. A tree node's window is counted along its own
    /// path, since positions are depths. The window keeps a contiguous run of the prefix when
    /// positions grow with slots (they do for everything the engine commits); otherwise the row
    /// lists its prefix slots one by one.
    pub(super) fn visible_slots(
        &self,
        visible: &[Vec<usize>],
        base: usize,
        view: (usize, Option<&[Vec<usize>]>),
        cache: &KvCache,
        window: Option<usize>,
    ) -> Vec<Visible> {
        let positions = cache.positions();
        let (committed, ancestors) = view;
        (0..visible.len())
            .map(|r| {
                let pos = positions[base + r];
                let in_window = |slot: &usize| window.is_none_or(|w| pos - positions[*slot].min(pos) < w);
                let cached = ancestors.map_or(&[][..], |a| &a[r][..]).iter().copied();
                let tail = cached
                    .chain(visible[r].iter().map(|&j| base + j))
                    .filter(in_window);
                if window.is_none() {
                    return Visible {
                        prefix: 0..committed,
                        tail: tail.collect(),
                    };
                }
                let lo = (0..committed).find(in_window).unwrap_or(committed);
                if (lo..committed).all(|s| in_window(&s)) {
                    Visible {
                        prefix: lo..committed,
                        tail: tail.collect(),
                    }
                } else {
                    Visible {
                        prefix: 0..0,
                        tail: (0..committed).filter(in_window).chain(tail).collect(),
                    }
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)] // one layer's view of the whole batch
    pub(super) fn attention_block(
        &self,
        li: usize,
        layer: &LayerWeights,
        x: &mut [f32],
        angles: &Angles,
        segments: &[Segment],
        items: &mut [BatchItem<'_, '_>],
        s: &mut Scratch,
    ) -> Result<()> {
        let cfg = self.config();
        let (n, hd, kv_dim, q_dim) = (x.len() / cfg.dim, cfg.head_dim, cfg.kv_dim(), cfg.q_dim());
        let plan = self.layer_plan(li);
        let rope = self.rope_for(plan.local_rope);
        let angles = match (&angles.local, plan.local_rope) {
            (Some(local), true) => local,
            _ => &angles.global,
        };
        kernels::rms_norm(x, &layer.attn_norm, cfg.rms_eps, &mut s.h);
        layer.wq.forward(&s.h, n, &mut s.q)?;
        layer.wk.forward(&s.h, n, &mut s.k)?;
        layer.wv.forward(&s.h, n, &mut s.v)?;
        add_bias(&mut s.q, layer.bq.as_ref());
        add_bias(&mut s.k, layer.bk.as_ref());
        add_bias(&mut s.v, layer.bv.as_ref());
        norm_in_place(&mut s.q, layer.q_norm.as_ref(), cfg.rms_eps);
        norm_in_place(&mut s.k, layer.k_norm.as_ref(), cfg.rms_eps);
        for (seg, item) in segments.iter().zip(items.iter_mut()) {
            for r in seg.first..seg.first + seg.rows {
                let a = &angles[r * hd..(r + 1) * hd];
                rope.apply(&mut s.q[r * q_dim..(r + 1) * q_dim], hd, a);
                rope.apply(&mut s.k[r * kv_dim..(r + 1) * kv_dim], hd, a);
                item.cache.write(
                    li,
                    seg.base + r - seg.first,
                    &s.k[r * kv_dim..(r + 1) * kv_dim],
                    &s.v[r * kv_dim..(r + 1) * kv_dim],
                );
            }
            let rows = seg.first * q_dim..(seg.first + seg.rows) * q_dim;
            let slots = &seg.slots[plan.window];
            self.attend(li, seg, slots, item.cache, &s.q[rows.clone()], &mut s.attn[rows]);
        }
        layer.wo.forward(&s.attn, n, &mut s.out)?;
        add_residual(x, &mut s.out, layer.post_attn_norm.as_ref(), cfg.rms_eps);
        Ok(())
    }

    /// Scaled dot-product attention of every (row, head) of one sequence over the slots it may
    /// see: one task per key/value head and block of up to `ATTENTION_ROWS` rows (its query
    /// heads and rows share each cache load; the block bounds a task's scores).
    fn attend(
        &self,
        li: usize,
        seg: &Segment,
        slots: &[Visible],
        cache: &KvCache,
        q: &[f32],
        out: &mut [f32],
    ) {
        let cfg = self.config();
        let (hd, q_dim, group) = (cfg.head_dim, cfg.q_dim(), cfg.n_heads / cfg.n_kv_heads);
        let scale = cfg.attention_scale();
        let (keys, values) = cache.layer(li);
        let span = group * hd;
        // `by_head` is [kv head][row][group x head_dim]; `out` is [row][kv head][...].
        let mut by_head = vec![0f32; cfg.n_kv_heads * seg.rows * span];
        let visible: usize = slots.iter().map(Visible::len).sum();
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
                scale,
            };
            let r1 = r0 + o.len() / span;
            // The slots written by rows up to r1: every tail of these rows lies among them.
            let fresh = seg.base..seg.base + r1;
            head.run(&q[r0 * q_dim..r1 * q_dim], q_dim, &slots[r0..r1], fresh, o);
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

    pub(super) fn ffn_block(&self, layer: &LayerWeights, x: &mut [f32], s: &mut Scratch) -> Result<()> {
        let cfg = self.config();
        let n = x.len() / cfg.dim;
        kernels::rms_norm(x, &layer.ffn_norm, cfg.rms_eps, &mut s.h);
        layer.w1.forward(&s.h, n, &mut s.gate)?;
        layer.w3.forward(&s.h, n, &mut s.up)?;
        match cfg.architecture.spec().activation {
            Activation::Silu => kernels::silu_mul(&mut s.gate, &s.up),
            Activation::GeluTanh => kernels::gelu_tanh_mul(&mut s.gate, &s.up),
        }
        layer.w2.forward(&s.gate, n, &mut s.out)?;
        add_residual(x, &mut s.out, layer.post_ffn_norm.as_ref(), cfg.rms_eps);
        Ok(())
    }
}
