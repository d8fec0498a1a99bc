//! EAGLE draft heads (Li et al., 2024): one decoder layer that drafts in the target's feature
//! space. Row j reads the target's final hidden state at position j (or, while drafting, the
//! head's own prediction of it) beside the embedding of token j + 1, through `fc` (`[dim,
//! 2 dim]`); its output predicts the feature at position j + 1, and the target's own
//! classifier turns that into the token at j + 2. The head has a KV cache of its own, like a
//! draft model, but it sees what the target computed, so it agrees with the target far more
//! often than a draft of the same size.
//!
//! The head reuses the target's embedding and classifier (restricted to a subset, FR-Spec, when
//! the file names one), so its file holds only what it trained: a folder with `config.json` and
//! `model.safetensors` in EAGLE's tensor names (`fc.weight`, `layers.0.self_attn.q_proj.weight`,
//! ..., `layers.0.mlp.down_proj.weight`, the layer's two norms) plus `norm.weight`, the norm
//! ahead applies before the classifier (the target's features are normed, so the prediction is
//! too). RoPE pairs are interleaved (`ahead_rope: "interleaved"`, the layout ahead trains).
//!
//! A fused head (EAGLE-3's feature fusion, `ahead_feature_layers` in its config) reads, for a
//! real row, the outputs of a few of the target's layers (low, middle and high) instead of the
//! final state: each RMS-normalized (no weight: the layers' scales differ by orders of
//! magnitude) and mapped to one feature by `fuse.weight` (`[dim, n dim]`). Chain rows read the
//! head's own output, as before; a fused head is trained for that by the training-time test
//! (its chain steps), not by regressing the target's features.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::format::safetensors::parse_safetensors;
use crate::format::safetensors_write::{write_safetensors, Stored};
use crate::load::weights::vector;
use crate::transformer::{
    Architecture, AttentionMask, ForwardInput, ForwardOutput, KvCache, LayerWeights, Linear, Logits, Model,
    ModelConfig, ModelWeights, RopeScaling, RopeStyle,
};

/// An EAGLE head bound to its target's embedding and classifier.
#[derive(Debug, Clone)]
pub struct EagleHead {
    /// `[dim, 2 dim]`: (feature, token embedding) -> the layer's input.
    fc: Linear,
    /// The decoder layer and final norm as a one-layer model over the target's tables (so the
    /// head runs on the same kernels); its classifier may be restricted to a subset.
    layer: Model,
    /// EAGLE-3's fusion of the target's layer outputs into a real row's feature, if fused.
    fusion: Option<Fusion>,
}

/// The target layers a fused head reads and the map from their outputs to one feature.
#[derive(Debug, Clone)]
struct Fusion {
    layers: Vec<usize>,
    /// `[dim, layers.len() dim]`.
    fuse: Linear,
}

/// `config.json` of an EAGLE folder.
#[derive(Debug, Serialize, Deserialize)]
struct EagleConfigFile {
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    rms_norm_eps: f32,
    rope_theta: f32,
    /// The target's vocabulary.
    vocab_size: usize,
    /// ahead's layout: "interleaved" RoPE pairs (the only one written or read).
    ahead_rope: String,
    /// FR-Spec: the tokens the classifier scores, most frequent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ahead_token_subset: Option<Vec<u32>>,
    /// EAGLE-3's fusion: the target layers whose outputs make a real row's feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ahead_feature_layers: Option<Vec<usize>>,
    /// The target the head was trained for (its `general.name` or file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ahead_target: Option<String>,
}

const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.safetensors";
/// A fused head's map from the target's layer outputs to a feature.
const FUSE: &str = "fuse.weight";
const INTERLEAVED: &str = "interleaved";

/// The names of the layer's tensors, in EAGLE's layout.
const LAYER_NAMES: [&str; 9] = [
    "input_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.down_proj.weight",
    "mlp.up_proj.weight",
];

impl EagleHead {
    /// A head from its trained parts over `target`'s embedding and classifier: `fc` is
    /// `[dim, 2 dim]`, `layer` one decoder layer of `layer_cfg`'s shape (interleaved RoPE, no
    /// biases), `norm` the norm before the classifier; `subset` restricts the classifier.
    pub fn new(
        target: &Model,
        layer_cfg: &ModelConfig,
        fc: Linear,
        layer: LayerWeights,
        norm: Vec<f32>,
        subset: Option<&[u32]>,
    ) -> Result<Self> {
        let t = target.config();
        let refuse = |why: String| Err(ModelError::Input(format!("EAGLE head: {why}")));
        if layer_cfg.dim != t.dim || layer_cfg.vocab_size != t.vocab_size {
            return refuse(format!(
                "width {} and vocabulary {} do not match the target's {} and {}",
                layer_cfg.dim, layer_cfg.vocab_size, t.dim, t.vocab_size
            ));
        }
        if fc.rows() != t.dim || fc.cols() != 2 * t.dim {
            return refuse(format!(
                "fc is [{} x {}], expected [{} x {}]",
                fc.rows(),
                fc.cols(),
                t.dim,
                2 * t.dim
            ));
        }
        if layer_cfg.n_layers != 1 || layer_cfg.rope_style != RopeStyle::Interleaved {
            return refuse("one decoder layer with interleaved RoPE is what ahead runs".into());
        }
        let w = target.weights();
        let weights = ModelWeights {
            embedding: w.embedding.clone(),
            layers: vec![layer],
            norm,
            lm_head: w.lm_head.clone(),
        };
        let mut model = Model::new(layer_cfg.clone(), weights)?;
        if let Some(tokens) = subset {
            model = model.restricted_to(tokens)?;
        }
        Ok(Self {
            fc,
            layer: model,
            fusion: None,
        })
    }

    /// Makes the head fused (EAGLE-3): real rows read the outputs of `target`'s `layers`
    /// (ascending), normalized and mapped by `fuse` (`[dim, layers.len() dim]`).
    pub fn with_fusion(mut self, target: &Model, layers: Vec<usize>, fuse: Linear) -> Result<Self> {
        let d = self.config().dim;
        let n = target.config().n_layers;
        if layers.is_empty() || layers.windows(2).any(|w| w[0] >= w[1]) || layers.iter().any(|&l| l >= n) {
            return Err(ModelError::Input(format!(
                "EAGLE head: fused layers {layers:?} must be ascending layers of the target's {n}"
            )));
        }
        if fuse.rows() != d || fuse.cols() != layers.len() * d {
            return Err(ModelError::Input(format!(
                "EAGLE head: fuse is [{} x {}], expected [{d} x {}]",
                fuse.rows(),
                fuse.cols(),
                layers.len() * d
            )));
        }
        self.fusion = Some(Fusion { layers, fuse });
        Ok(self)
    }

    /// The target layers a fused head reads (`None`: the target's final hidden state).
    pub fn feature_layers(&self) -> Option<&[usize]> {
        self.fusion.as_ref().map(|f| f.layers.as_slice())
    }

    /// Values per real row the head reads from the target: its final state, or the fused
    /// layers' outputs side by side.
    pub fn input_width(&self) -> usize {
        self.config().dim * self.fusion.as_ref().map_or(1, |f| f.layers.len())
    }

    /// The features of real rows from what the target gave for them (`input_width` values a
    /// row): the fused feature of a fused head, else the rows as they are.
    pub fn real_features(&self, target_rows: &[f32]) -> Result<Vec<f32>> {
        let Some(f) = &self.fusion else {
            return Ok(target_rows.to_vec());
        };
        let (d, w) = (self.config().dim, self.input_width());
        if !target_rows.len().is_multiple_of(w) {
            return Err(ModelError::Input(format!(
                "EAGLE head: {} feature values are not rows of {w}",
                target_rows.len()
            )));
        }
        let n = target_rows.len() / w;
        let mut normed = vec![0f32; target_rows.len()];
        let ones = vec![1f32; d];
        for (x, y) in target_rows.chunks_exact(d).zip(normed.chunks_exact_mut(d)) {
            crate::transformer::kernels::rms_norm(x, &ones, self.config().rms_eps, y);
        }
        let mut out = vec![0f32; n * d];
        f.fuse.forward(&normed, n, &mut out)?;
        Ok(out)
    }

    /// The decoder layer's shape.
    pub fn config(&self) -> &ModelConfig {
        self.layer.config()
    }

    /// The token of each logit row when the classifier scores a subset.
    pub fn classifier_tokens(&self) -> Option<&[u32]> {
        self.layer.classifier_tokens()
    }

    /// A KV cache for the head with room for `capacity` rows.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        self.layer.new_cache(capacity)
    }

    /// Bytes read per drafted token (fc, the layer, the classifier it scores).
    pub fn weight_bytes(&self) -> usize {
        self.fc.bytes() + self.layer.weight_bytes()
    }

    /// Runs causal rows after what `cache` holds: row r reads `features[r]` (a target feature,
    /// or the head's own earlier prediction) and the embedding of `tokens[r]`, the token after
    /// it. Returns each row's logits (over the subset when restricted) and its predicted
    /// feature as `hidden`.
    pub fn forward(
        &self,
        features: &[f32],
        tokens: &[u32],
        positions: &[usize],
        cache: &mut KvCache,
    ) -> Result<ForwardOutput> {
        self.forward_masked(features, tokens, positions, AttentionMask::Causal, cache)
    }

    /// [`EagleHead::forward`] under any mask: a draft tree's rows, a depth per forward
    /// ([`AttentionMask::Branches`]).
    pub fn forward_masked(
        &self,
        features: &[f32],
        tokens: &[u32],
        positions: &[usize],
        mask: AttentionMask<'_>,
        cache: &mut KvCache,
    ) -> Result<ForwardOutput> {
        let d = self.config().dim;
        let n = tokens.len();
        if features.len() != n * d {
            return Err(ModelError::Input(format!(
                "EAGLE head: {} feature values for {n} rows of width {d}",
                features.len()
            )));
        }
        let embedding = &self.layer.weights().embedding;
        let mut joined = vec![0f32; n * 2 * d];
        for (r, (row, &t)) in joined.chunks_exact_mut(2 * d).zip(tokens).enumerate() {
            row[..d].copy_from_slice(&features[r * d..(r + 1) * d]);
            embedding.row(t as usize, &mut row[d..])?;
        }
        let mut x = vec![0f32; n * d];
        self.fc.forward(&joined, n, &mut x)?;
        let input = ForwardInput {
            tokens,
            positions,
            mask,
            want_hidden: true,
            taps: &[],
            logits: Logits::All,
        };
        self.layer.forward_embedded(&input, &x, cache)
    }

    /// Loads a folder written by [`EagleHead::save`] for `target`.
    pub fn load(dir: &Path, target: &Model) -> Result<Self> {
        let cfg_path = dir.join(CONFIG);
        let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
        let path = dir.join(WEIGHTS);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        Self::from_bytes(
            target,
            &cfg_text,
            &cfg_path.display().to_string(),
            &bytes,
            &path.display().to_string(),
        )
    }

    /// A head from the contents of its `config.json` and `model.safetensors`.
    pub fn from_bytes(
        target: &Model,
        config: &str,
        config_label: &str,
        weights: &[u8],
        weights_label: &str,
    ) -> Result<Self> {
        let c: EagleConfigFile = serde_json::from_str(config)
            .map_err(|e| ModelError::format(config_label, "config", e.to_string()))?;
        if c.ahead_rope != INTERLEAVED {
            return Err(ModelError::format(
                config_label,
                "ahead_rope",
                format!(
                    "\"{}\" is not a RoPE layout ahead reads (\"{INTERLEAVED}\")",
                    c.ahead_rope
                ),
            ));
        }
        let t = target.config();
        if c.hidden_size != t.dim || c.vocab_size != t.vocab_size {
            return Err(ModelError::format(
                config_label,
                "hidden_size",
                format!(
                    "the head is for width {} and vocabulary {}; the target has {} and {}",
                    c.hidden_size, c.vocab_size, t.dim, t.vocab_size
                ),
            ));
        }
        let heads = c.num_attention_heads.max(1);
        let cfg = ModelConfig {
            architecture: Architecture::Llama,
            dim: c.hidden_size,
            hidden_dim: c.intermediate_size,
            n_layers: 1,
            n_heads: c.num_attention_heads,
            n_kv_heads: c.num_key_value_heads,
            head_dim: c.hidden_size / heads,
            vocab_size: c.vocab_size,
            max_seq_len: t.max_seq_len,
            rope_theta: c.rope_theta,
            rope_style: RopeStyle::Interleaved,
            rope_scaling: RopeScaling::None,
            rope_freq_factors: None,
            rms_eps: c.rms_norm_eps,
            sliding_window: None,
            sliding_layers: None,
            local_rope_theta: None,
            attention_scale: None,
            final_logit_softcap: None,
        };
        cfg.validate(config_label)?;
        let file = weights_label.to_string();
        let st = parse_safetensors(weights, &file)?;
        let get = |name: &str| {
            st.tensor(weights, name).ok_or_else(|| ModelError::MissingTensor {
                file: file.clone(),
                name: name.to_string(),
            })
        };
        let linear = |name: &str| Linear::from_raw(&get(name)?, name);
        let vec = |name: &str| vector(&get(name)?, &file, name);
        let l = |i: usize| format!("layers.0.{}", LAYER_NAMES[i]);
        let layer = LayerWeights {
            attn_norm: vec(&l(0))?,
            wq: linear(&l(1))?,
            wk: linear(&l(2))?,
            wv: linear(&l(3))?,
            wo: linear(&l(4))?,
            bq: None,
            bk: None,
            bv: None,
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            post_ffn_norm: None,
            ffn_norm: vec(&l(5))?,
            w1: linear(&l(6))?,
            w2: linear(&l(7))?,
            w3: linear(&l(8))?,
        };
        let head = Self::new(
            target,
            &cfg,
            linear("fc.weight")?,
            layer,
            vec("norm.weight")?,
            c.ahead_token_subset.as_deref(),
        )?;
        match c.ahead_feature_layers {
            Some(layers) => head
                .with_fusion(target, layers, linear(FUSE)?)
                .map_err(|e| ModelError::format(config_label, "ahead_feature_layers", e.to_string())),
            None if st.tensor(weights, FUSE).is_some() => Err(ModelError::format(
                config_label,
                "ahead_feature_layers",
                format!("{FUSE} is in the weights but the config names no fused layers"),
            )),
            None => Ok(head),
        }
    }

    /// Writes the head into `dir` (created if needed). Matrices stored as F16 are written as
    /// F16, all else as F32.
    pub fn save(&self, dir: &Path, target_name: Option<&str>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let cfg = self.config();
        let layer = &self.layer.weights().layers[0];
        let mut tensors = vec![
            Stored::matrix("fc.weight", &self.fc)?,
            Stored::vector("norm.weight", &self.layer.weights().norm),
        ];
        let l = |i: usize| format!("layers.0.{}", LAYER_NAMES[i]);
        tensors.extend([
            Stored::vector(l(0), &layer.attn_norm),
            Stored::matrix(l(1), &layer.wq)?,
            Stored::matrix(l(2), &layer.wk)?,
            Stored::matrix(l(3), &layer.wv)?,
            Stored::matrix(l(4), &layer.wo)?,
            Stored::vector(l(5), &layer.ffn_norm),
            Stored::matrix(l(6), &layer.w1)?,
            Stored::matrix(l(7), &layer.w2)?,
            Stored::matrix(l(8), &layer.w3)?,
        ]);
        if let Some(f) = &self.fusion {
            tensors.push(Stored::matrix(FUSE, &f.fuse)?);
        }
        write_safetensors(&dir.join(WEIGHTS), &tensors, "an EAGLE head")?;
        let file = EagleConfigFile {
            hidden_size: cfg.dim,
            intermediate_size: cfg.hidden_dim,
            num_attention_heads: cfg.n_heads,
            num_key_value_heads: cfg.n_kv_heads,
            rms_norm_eps: cfg.rms_eps,
            rope_theta: cfg.rope_theta,
            vocab_size: cfg.vocab_size,
            ahead_rope: INTERLEAVED.into(),
            ahead_token_subset: self.classifier_tokens().map(<[u32]>::to_vec),
            ahead_feature_layers: self.feature_layers().map(<[usize]>::to_vec),
            ahead_target: target_name.map(str::to_string),
        };
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| ModelError::Input(format!("writing {CONFIG}: {e}")))?;
        let cfg_path = dir.join(CONFIG);
        std::fs::write(&cfg_path, text).map_err(|e| ModelError::io(&cfg_path, e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tensor::TensorDType;
    use crate::transformer::synthetic::{random_eagle_head, random_model, tiny_config};

    fn target() -> Model {
        random_model(&tiny_config(Architecture::Llama, 50), TensorDType::F32, 3).unwrap()
    }

    /// Logits and features of three real rows, then one chain row on the last prediction.
    fn run(head: &EagleHead) -> (Vec<f32>, Vec<f32>) {
        let d = head.config().dim;
        let features: Vec<f32> = (0..3 * d).map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5).collect();
        let mut cache = head.new_cache(8).unwrap();
        let out = head
            .forward(&features, &[4, 9, 2], &[0, 1, 2], &mut cache)
            .unwrap();
        let predicted = out.hidden.as_ref().unwrap()[2 * d..].to_vec();
        let chain = head.forward(&predicted, &[7], &[3], &mut cache).unwrap();
        ([out.logits, chain.logits].concat(), chain.hidden.unwrap())
    }

    #[test]
    fn a_fused_head_saves_its_layers_and_fuses_each_row_alone() {
        let t = target();
        let head = crate::transformer::synthetic::random_fused_eagle_head(&t, 5, None, &[0, 1]).unwrap();
        let d = head.config().dim;
        assert_eq!(head.input_width(), 2 * d);
        let rows: Vec<f32> = (0..3 * 2 * d).map(|i| ((i * 11) % 17) as f32 - 8.0).collect();
        let fused = head.real_features(&rows).unwrap();
        assert_eq!(fused.len(), 3 * d);
        // A row's feature is its own: the same alone as beside others, and scale-free per layer.
        let mut scaled = rows[2 * d..4 * d].to_vec();
        scaled[..d].iter_mut().for_each(|x| *x *= 100.0);
        let alone = head.real_features(&scaled).unwrap();
        assert_close_enough(&alone, &fused[d..2 * d]);
        assert!(head.real_features(&rows[..d]).is_err(), "half a row");

        let dir = tempfile::tempdir().unwrap();
        head.save(dir.path(), None).unwrap();
        let back = EagleHead::load(dir.path(), &t).unwrap();
        assert_eq!(back.feature_layers(), Some(&[0, 1][..]));
        assert_eq!(back.real_features(&rows).unwrap(), fused);
        assert_eq!(run(&back), run(&head));

        // Fused layers the target lacks, and a fuse matrix the config does not explain.
        let cfg_path = dir.path().join(CONFIG);
        let text = std::fs::read_to_string(&cfg_path).unwrap();
        std::fs::write(
            &cfg_path,
            text.replace(
                "\"ahead_feature_layers\": [\n    0,\n    1\n  ]",
                "\"ahead_feature_layers\": [0, 7]",
            ),
        )
        .unwrap();
        let err = EagleHead::load(dir.path(), &t).unwrap_err().to_string();
        assert!(err.contains("ascending layers"), "{err}");
        std::fs::write(
            &cfg_path,
            text.replace(",\n  \"ahead_feature_layers\": [\n    0,\n    1\n  ]", ""),
        )
        .unwrap();
        let err = EagleHead::load(dir.path(), &t).unwrap_err().to_string();
        assert!(err.contains("names no fused layers"), "{err}");
    }

    /// Equal up to float rounding (normalizing a scaled row rounds differently).
    fn assert_close_enough(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn a_saved_head_loads_back_and_computes_the_same() {
        let t = target();
        let subset: Vec<u32> = (0..50).filter(|x| x % 3 != 1).collect();
        let head = random_eagle_head(&t, 5, Some(&subset)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        head.save(dir.path(), Some("tiny")).unwrap();
        let back = EagleHead::load(dir.path(), &t).unwrap();
        assert_eq!(back.classifier_tokens(), Some(subset.as_slice()));
        assert_eq!(run(&back), run(&head));
    }

    #[test]
    fn the_first_rows_read_the_target_embedding_beside_the_feature() {
        // With fc = [0 | I], a row's input is its token's embedding: the head is then the
        // one-layer model over tokens, whatever the features.
        let t = target();
        let head = random_eagle_head(&t, 5, None).unwrap();
        let d = t.config().dim;
        let mut fc = vec![0f32; 2 * d * d];
        for i in 0..d {
            fc[i * 2 * d + d + i] = 1.0;
        }
        let layer = head.layer.weights().layers[0].clone();
        let norm = head.layer.weights().norm.clone();
        let identity = EagleHead::new(
            &t,
            head.config(),
            Linear::from_f32(fc, d, 2 * d).unwrap(),
            layer,
            norm,
            None,
        )
        .unwrap();
        let mut cache = identity.new_cache(4).unwrap();
        let got = identity
            .forward(&vec![3.0; 2 * d], &[4, 9], &[0, 1], &mut cache)
            .unwrap();
        let mut cache = identity.layer.new_cache(4).unwrap();
        let want = identity
            .layer
            .forward(&ForwardInput::causal(&[4, 9], &[0, 1]), &mut cache)
            .unwrap();
        assert_eq!(got.logits, want.logits);
    }

    #[test]
    fn a_head_for_another_width_or_layout_is_refused() {
        let t = target();
        let head = random_eagle_head(&t, 5, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        head.save(dir.path(), None).unwrap();
        let cfg = std::fs::read_to_string(dir.path().join(CONFIG)).unwrap();
        let weights = std::fs::read(dir.path().join(WEIGHTS)).unwrap();
        let other = cfg.replace("\"interleaved\"", "\"half\"");
        let err = EagleHead::from_bytes(&t, &other, "c", &weights, "w").unwrap_err();
        assert!(err.to_string().contains("RoPE layout"), "{err}");
        let wider = random_model(
            &ModelConfig {
                dim: 32,
                head_dim: 8,
                ..tiny_config(Architecture::Llama, 50)
            },
            TensorDType::F32,
            1,
        )
        .unwrap();
        let err = EagleHead::from_bytes(&wider, &cfg, "c", &weights, "w").unwrap_err();
        assert!(err.to_string().contains("width"), "{err}");
        // A cut-off weights file is an error naming that file.
        let err =
            EagleHead::from_bytes(&t, &cfg, "c", &weights[..weights.len() / 2], "w.safetensors").unwrap_err();
        assert!(err.to_string().contains("w.safetensors"), "{err}");
    }
}
