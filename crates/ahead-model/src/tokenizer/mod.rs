//! Tokenizers (HF `tokenizer.json`, llama2.c `.bin`, GGUF-embedded), the incremental
//! detokenizer and chat templates.
//!
//! One [`Tokenizer`] type covers every backend:
//! - `llama2c`: llama2.c `tokenizer.bin`, matching `run.c`'s `encode`/`decode` exactly
//!   (except that run.c's `safe_printf` filtering of unprintable bytes is not applied);
//! - `sentencepiece-gguf`: GGUF `tokenizer.ggml.model = "llama"`;
//! - `bpe-gguf`: GGUF `tokenizer.ggml.model = "gpt2"` (byte-level BPE);
//! - `huggingface`: `tokenizer.json` through the `tokenizers` crate.
//!
//! User text is always literal: a string such as `"<s>"` or `"<|eot_id|>"` inside a prompt is
//! tokenized as text, never as a control token. [`Tokenizer::encode`] adds BOS (at most once)
//! only when asked.

mod chat_prompt;
mod chat_template;
mod detokenize;
mod from_gguf;
mod hf;
mod llama2c;
mod spm;

use std::path::Path;

pub use chat_prompt::ChatPrompt;
pub use chat_template::{ChatMessage, ChatTemplate};
pub use detokenize::IncrementalDecoder;

use crate::error::{ModelError, Result};
use crate::format::gguf::GgufFile;
use chat_prompt::ControlTokens;
use from_gguf::GgufTokenizer;
use hf::HfBackend;
use spm::SpmVocab;

/// The special ids a tokenizer declares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// Every id that ends generation (e.g. Llama 3's `<|eot_id|>` and `<|end_of_text|>`).
    pub eos: Vec<u32>,
    /// Whether prompts start with BOS by default.
    pub add_bos: bool,
}

#[derive(Clone)]
enum Backend {
    Llama2c(SpmVocab),
    SpmGguf(SpmVocab),
    BpeGguf(HfBackend),
    Hf(HfBackend),
}

/// A tokenizer with its special tokens and optional chat template.
#[derive(Clone)]
pub struct Tokenizer {
    backend: Backend,
    special: SpecialTokens,
    chat_template: Option<ChatTemplate>,
    /// Texts that the chat template's own output turns into control ids.
    control: ControlTokens,
}

/// End-of-turn tokens that end generation wherever a vocabulary has them as control tokens, as
/// llama.cpp treats them.
pub(crate) const END_OF_TURN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eom_id|>",
];

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("chat_template", &self.chat_template.is_some())
            .field("control_tokens", &self.control.len())
            .finish()
    }
}

impl Tokenizer {
    /// Parses a llama2.c `tokenizer.bin` (`i32 max_token_length`, then `vocab_size` records of
    /// `f32 score, i32 len, len bytes`). BOS = 1, EOS = 2, `add_bos` = true. `label` names the
    /// source in errors.
    pub fn from_llama2c_bytes(bytes: &[u8], vocab_size: usize, label: &str) -> Result<Self> {
        Ok(Self {
            backend: Backend::Llama2c(llama2c::parse(bytes, vocab_size, label)?),
            special: SpecialTokens {
                bos: Some(llama2c::BOS),
                // llama2.c's stories end with BOS: run.c stops there, so BOS ends generation too.
                eos: vec![llama2c::EOS, llama2c::BOS],
                add_bos: true,
            },
            chat_template: None,
            control: ControlTokens::new(Vec::new())?,
        })
    }

    /// Reads and parses a llama2.c `tokenizer.bin`.
    pub fn from_llama2c_file(path: &Path, vocab_size: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_llama2c_bytes(&bytes, vocab_size, &path.display().to_string())
    }

    /// Loads a Hugging Face `tokenizer.json`. BOS/EOS/`add_bos_token`/`chat_template` come
    /// from `tokenizer_config.json`, extra EOS ids from `generation_config.json`
    /// (`eos_token_id`, int or list). Without a config, BOS and `add_bos` are inferred from
    /// the post-processor. BOS is added by [`encode`](Self::encode) itself, never by the
    /// post-processor, so a prompt gets exactly one. A `chat_template.jinja` beside the config
    /// is used when the config has no template.
    pub fn from_hf_files(
        tokenizer_json: &Path,
        tokenizer_config_json: Option<&Path>,
        generation_config_json: Option<&Path>,
    ) -> Result<Self> {
        let loaded = hf::load(tokenizer_json, tokenizer_config_json, generation_config_json)?;
        let mut tok = Self {
            control: ControlTokens::new(loaded.backend.added_tokens())?,
            backend: Backend::Hf(loaded.backend),
            special: loaded.special,
            chat_template: loaded.chat_template,
        };
        tok.add_template_end_of_turn();
        Ok(tok)
    }

    /// Builds the tokenizer embedded in a GGUF file (`tokenizer.ggml.*`), `llama`
    /// (sentencepiece-style) or `gpt2` (byte-level BPE; the split regex follows
    /// `tokenizer.ggml.pre`: `llama3`/`llama-bpe`, `qwen2`, otherwise GPT-2's). EOS ids are
    /// `eos_token_id`, `eot_token_id`, `eom_token_id` and the end-of-turn control tokens
    /// llama.cpp recognises (`<|eot_id|>`, `<|im_end|>`, ...).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let loaded = from_gguf::load(file)?;
        let control = ControlTokens::new(loaded.control_tokens)?;
        let backend = match loaded.tokenizer {
            GgufTokenizer::Spm(v) => Backend::SpmGguf(v),
            GgufTokenizer::Bpe(b) => Backend::BpeGguf(*b),
        };
        let chat_template = loaded.chat_template.map(ChatTemplate::new).transpose()?;
        let mut tok = Self {
            backend,
            special: loaded.special,
            chat_template,
            control,
        };
        tok.add_template_end_of_turn();
        Ok(tok)
    }

    /// The chat template, if the model ships one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Replaces the chat template (e.g. with a user-supplied one); its end-of-turn token joins
    /// the end-of-generation ids.
    pub fn set_chat_template(&mut self, template: Option<ChatTemplate>) {
        self.chat_template = template;
        self.add_template_end_of_turn();
    }

    fn add_template_end_of_turn(&mut self) {
        if let Some(id) = self.template_end_of_turn() {
            if !self.special.eos.contains(&id) && Some(id) != self.special.bos {
                self.special.eos.push(id);
            }
        }
    }

    /// Encodes `text` literally; prepends BOS when `add_bos` is true and the tokenizer has one.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let mut ids = match &self.backend {
            Backend::Llama2c(v) | Backend::SpmGguf(v) => v.encode(text)?,
            Backend::BpeGguf(b) | Backend::Hf(b) => b.encode(text)?,
        };
        if add_bos {
            if let Some(bos) = self.special.bos {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Encodes `text` as a continuation of a sequence: no BOS and no dummy space prefix, so a
    /// fragment such as `"me there"` after `"Once upon a ti"` is not given a leading space.
    /// (Hugging Face tokenizers encode fragments as they are configured.)
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>> {
        match &self.backend {
            Backend::Llama2c(v) | Backend::SpmGguf(v) => v.encode_with(text, false),
            Backend::BpeGguf(b) | Backend::Hf(b) => b.encode(text),
        }
    }

    /// Decodes a whole sequence to text, skipping BOS/EOS (and other control tokens, except
    /// for llama2.c, which has none). Errors on ids outside the vocabulary. Invalid UTF-8
    /// (e.g. a lone byte-fallback token) becomes U+FFFD.
    ///
    /// Leading space: llama2.c strips it from the piece right after BOS (as `run.c`);
    /// sentencepiece GGUF and Hugging Face strip the first space of the text.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_window(ids, true)
    }

    /// Every token's own bytes inside a sequence, by id; `None` for tokens that are no text
    /// (control tokens, BOS, EOS, special added tokens): what a grammar engine matches against.
    pub fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Llama2c(v) | Backend::SpmGguf(v) => v.token_bytes(),
            Backend::BpeGguf(b) | Backend::Hf(b) => b.token_bytes(),
        }
    }

    /// One token's own text, as it reads inside a sequence (a leading space kept; control
    /// tokens empty; a piece of a character U+FFFD).
    pub fn token_text(&self, id: u32) -> Result<String> {
        self.decode_window(&[id], false)
    }

    /// Decodes `ids`; `at_start` tells whether they begin the sequence (leading-space rule).
    pub(crate) fn decode_window(&self, ids: &[u32], at_start: bool) -> Result<String> {
        match &self.backend {
            Backend::Llama2c(v) | Backend::SpmGguf(v) => {
                let bytes = v.decode_bytes(ids, at_start)?;
                Ok(match String::from_utf8(bytes) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                })
            }
            Backend::BpeGguf(b) | Backend::Hf(b) => {
                let mut skip = self.special.eos.clone();
                skip.extend(self.special.bos);
                b.decode(ids, &skip)
            }
        }
    }

    /// Ids are `0..vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        match &self.backend {
            Backend::Llama2c(v) | Backend::SpmGguf(v) => v.len(),
            Backend::BpeGguf(b) | Backend::Hf(b) => b.vocab_size(),
        }
    }

    /// The BOS id, if any.
    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos
    }

    /// Every end-of-generation id.
    pub fn eos_ids(&self) -> &[u32] {
        &self.special.eos
    }

    /// Whether prompts start with BOS by default.
    pub fn add_bos(&self) -> bool {
        self.special.add_bos
    }

    /// BOS, EOS ids and `add_bos` together.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The raw vocabulary piece of `id` (`▁`, byte tokens `<0xNN>` and byte-level characters
    /// as stored), for inspection. Invalid UTF-8 in llama2.c pieces becomes U+FFFD.
    pub fn id_to_piece(&self, id: u32) -> Option<String> {
        match &self.backend {
            Backend::Llama2c(v) | Backend::SpmGguf(v) => {
                v.piece(id).map(|p| String::from_utf8_lossy(p).into_owned())
            }
            Backend::BpeGguf(b) | Backend::Hf(b) => b.id_to_piece(id),
        }
    }

    /// The id of a raw vocabulary piece (the inverse of [`id_to_piece`](Self::id_to_piece)),
    /// e.g. to find `<|im_end|>`.
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        match &self.backend {
            Backend::Llama2c(v) | Backend::SpmGguf(v) => v.piece_id(piece.as_bytes()),
            Backend::BpeGguf(b) | Backend::Hf(b) => b.token_to_id(piece),
        }
    }

    /// The tokenizer as a Hugging Face `tokenizer.json`, for the byte-level BPE and Hugging Face
    /// backends (the others are not `tokenizers` pipelines here).
    pub fn hf_json(&self) -> Result<String> {
        match &self.backend {
            Backend::BpeGguf(b) | Backend::Hf(b) => b.to_json(),
            _ => Err(ModelError::Unsupported(format!(
                "writing a {} tokenizer as tokenizer.json",
                self.kind()
            ))),
        }
    }

    /// `"llama2c"`, `"sentencepiece-gguf"`, `"bpe-gguf"` or `"huggingface"`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Llama2c(_) => "llama2c",
            Backend::SpmGguf(_) => "sentencepiece-gguf",
            Backend::BpeGguf(_) => "bpe-gguf",
            Backend::Hf(_) => "huggingface",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
