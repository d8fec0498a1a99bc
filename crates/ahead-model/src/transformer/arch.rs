//! The architecture table: what each supported family changes in the one decoder ahead runs.
//!
//! A new architecture is a row here (its names in both formats and its switches), the tensor
//! names of any new weight in `load::weights`, and, only when it needs arithmetic the forward
//! lacks, a switch in `transformer::model`. The loaders read nothing else about a family.

use super::config::RopeStyle;

/// A supported model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2/3, TinyLlama, SmolLM and llama2.c checkpoints.
    Llama,
    /// Mistral: Llama with an optional sliding attention window.
    Mistral,
    /// Qwen2: biases on the q, k and v projections.
    Qwen2,
    /// Qwen3: RMSNorm over each query and key head (QK-norm), no biases, explicit head size.
    Qwen3,
    /// Gemma 3 (text): QK-norm, norms before and after attention and feed-forward, GeGLU,
    /// embeddings scaled by sqrt(dim), sliding layers with their own RoPE base.
    Gemma3,
}

/// The gated feed-forward's activation: `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU): Llama, Mistral, Qwen.
    Silu,
    /// GELU with the tanh approximation (GeGLU, `gelu_pytorch_tanh`): Gemma.
    GeluTanh,
}

/// Which layers a model's sliding window applies to when its files do not list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingPattern {
    /// Every layer (Mistral, Qwen2 with `use_sliding_window`).
    Every,
    /// Every layer but the last of each group of `n` (Gemma 3: n = 6, five sliding then one
    /// global), as llama.cpp's `set_swa_pattern` and transformers' `sliding_window_pattern`.
    AllButLastOf(usize),
}

impl SlidingPattern {
    /// Whether layer `i` slides.
    pub fn slides(self, i: usize) -> bool {
        match self {
            Self::Every => true,
            Self::AllButLastOf(n) => n == 0 || !(i + 1).is_multiple_of(n),
        }
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct ArchSpec {
    pub architecture: Architecture,
    /// `general.architecture` in GGUF files.
    pub gguf_name: &'static str,
    /// `model_type` values and `architectures` classes in Hugging Face `config.json`.
    pub hf_names: &'static [&'static str],
    /// RoPE pairing of q/k rows in GGUF files: llama.cpp's converter permutes Llama and
    /// Mistral into interleaved pairs and leaves the others in rotate-half ("NEOX") order.
    /// Hugging Face files are always rotate-half.
    pub gguf_rope: RopeStyle,
    /// q, k and v projections always carry biases (others may, per `attention_bias`).
    pub qkv_bias: bool,
    /// RMSNorm over each query and key head before RoPE.
    pub qk_norm: bool,
    /// RMSNorm on the attention output and on the feed-forward output, before each residual
    /// add ("sandwich" norms).
    pub post_norms: bool,
    /// Hugging Face stores RMSNorm weights as `w` and applies `1 + w`; GGUF files hold `1 + w`.
    pub hf_norm_plus_one: bool,
    pub activation: Activation,
    /// Token embeddings are multiplied by sqrt(dim) (in f32) before the first layer.
    pub scale_embedding: bool,
    /// Where a sliding window applies when the file gives a window but no per-layer list.
    pub sliding: SlidingPattern,
    /// RoPE base of sliding layers when the file does not give it (Gemma 3: 10,000).
    pub default_local_rope_theta: Option<f32>,
    /// The classifier is tied to the embedding unless `config.json` says otherwise.
    pub hf_tied_by_default: bool,
}

const LLAMA: ArchSpec = ArchSpec {
    architecture: Architecture::Llama,
    gguf_name: "llama",
    hf_names: &["llama", "LlamaForCausalLM"],
    gguf_rope: RopeStyle::Interleaved,
    qkv_bias: false,
    qk_norm: false,
    post_norms: false,
    hf_norm_plus_one: false,
    activation: Activation::Silu,
    scale_embedding: false,
    sliding: SlidingPattern::Every,
    default_local_rope_theta: None,
    hf_tied_by_default: false,
};

/// Every supported architecture, in the order error messages list them.
pub const ARCHITECTURES: [ArchSpec; 5] = [
    LLAMA,
    ArchSpec {
        architecture: Architecture::Mistral,
        gguf_name: "mistral",
        hf_names: &["mistral", "MistralForCausalLM"],
        ..LLAMA
    },
    ArchSpec {
        architecture: Architecture::Qwen2,
        gguf_name: "qwen2",
        hf_names: &["qwen2", "Qwen2ForCausalLM"],
        gguf_rope: RopeStyle::Half,
        qkv_bias: true,
        ..LLAMA
    },
    ArchSpec {
        architecture: Architecture::Qwen3,
        gguf_name: "qwen3",
        hf_names: &["qwen3", "Qwen3ForCausalLM"],
        gguf_rope: RopeStyle::Half,
        qk_norm: true,
        ..LLAMA
    },
    ArchSpec {
        architecture: Architecture::Gemma3,
        gguf_name: "gemma3",
        hf_names: &["gemma3_text", "Gemma3ForCausalLM"],
        gguf_rope: RopeStyle::Half,
        qk_norm: true,
        post_norms: true,
        hf_norm_plus_one: true,
        activation: Activation::GeluTanh,
        scale_embedding: true,
        sliding: SlidingPattern::AllButLastOf(6),
        default_local_rope_theta: Some(10_000.0),
        hf_tied_by_default: true,
        ..LLAMA
    },
];

impl Architecture {
    /// This architecture's row of the table.
    pub fn spec(self) -> &'static ArchSpec {
        // Every variant has a row (a unit test walks them all); Llama's is the fallback the
        // compiler needs.
        ARCHITECTURES
            .iter()
            .find(|s| s.architecture == self)
            .unwrap_or(&ARCHITECTURES[0])
    }

    pub fn name(self) -> &'static str {
        self.spec().gguf_name
    }

    /// The architecture a GGUF file's `general.architecture` names.
    pub fn from_gguf(name: &str) -> Option<Self> {
        ARCHITECTURES
            .iter()
            .find(|s| s.gguf_name == name)
            .map(|s| s.architecture)
    }

    /// The architecture a Hugging Face `model_type` or `architectures` class names.
    pub fn from_hf(name: &str) -> Option<Self> {
        ARCHITECTURES
            .iter()
            .find(|s| s.hf_names.contains(&name))
            .map(|s| s.architecture)
    }

    /// "llama, mistral, ...": for errors that list what is supported.
    pub fn supported(hf: bool) -> String {
        let names: Vec<&str> = ARCHITECTURES
            .iter()
            .map(|s| if hf { s.hf_names[0] } else { s.gguf_name })
            .collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_has_its_own_row_and_names() {
        for a in [
            Architecture::Llama,
            Architecture::Mistral,
            Architecture::Qwen2,
            Architecture::Qwen3,
            Architecture::Gemma3,
        ] {
            assert_eq!(a.spec().architecture, a);
            assert_eq!(Architecture::from_gguf(a.name()), Some(a));
            for n in a.spec().hf_names {
                assert_eq!(Architecture::from_hf(n), Some(a));
            }
        }
    }

    #[test]
    fn gemma3_slides_five_layers_of_six_as_llama_cpp_and_transformers_do() {
        let p = Architecture::Gemma3.spec().sliding;
        let global: Vec<usize> = (0..18).filter(|&i| !p.slides(i)).collect();
        assert_eq!(global, [5, 11, 17]);
    }
}
