//! Hugging Face `tokenizers` backend: `tokenizer.json` (+ `tokenizer_config.json`,
//! `generation_config.json`), and the GGUF byte-level BPE tokenizer, which is built as a
//! `tokenizers` pipeline too.

use std::path::Path;

use serde_json::Value as Json;

use super::chat_template::ChatTemplate;
use super::{SpecialTokens, END_OF_TURN_TEXTS};
use crate::error::{ModelError, Result};

/// A `tokenizers::Tokenizer` set up so that special-token strings in user text stay literal.
#[derive(Clone)]
pub(crate) struct HfBackend {
    tok: tokenizers::Tokenizer,
    vocab_size: usize,
}

impl HfBackend {
    /// Wraps `tok`. `vocab_size`: the id bound (model vocabulary plus added tokens).
    pub(crate) fn new(mut tok: tokenizers::Tokenizer, vocab_size: usize) -> Self {
        // Text such as "<|eot_id|>" inside a prompt is tokenized as text, never as a control token.
        tok.set_encode_special_tokens(true);
        Self { tok, vocab_size }
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Encodes without any post-processor specials (the caller adds BOS itself, exactly once).
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tok
            .encode_fast(text, false)
            .map_err(|e| ModelError::Tokenizer(format!("encode: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes, skipping special tokens and `extra_skip`; errors on unknown ids.
    pub(crate) fn decode(&self, ids: &[u32], extra_skip: &[u32]) -> Result<String> {
        let mut kept = Vec::with_capacity(ids.len());
        for &id in ids {
            if (id as usize) >= self.vocab_size || self.tok.id_to_token(id).is_none() {
                return Err(ModelError::Tokenizer(format!(
                    "token id {id} out of range (vocab size {})",
                    self.vocab_size
                )));
            }
            if !extra_skip.contains(&id) {
                kept.push(id);
            }
        }
        self.tok
            .decode(&kept, true)
            .map_err(|e| ModelError::Tokenizer(format!("decode: {e}")))
    }

    /// Every added token (special or not) as `(text, id)`: `tokenizers` splits text at these
    /// before anything else, so a chat template's output finds its control tokens among them.
    pub(crate) fn added_tokens(&self) -> Vec<(String, u32)> {
        self.tok
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (t.content, id))
            .collect()
    }

    /// The pipeline as `tokenizer.json`.
    pub(crate) fn to_json(&self) -> Result<String> {
        self.tok
            .to_string(true)
            .map_err(|e| ModelError::Tokenizer(format!("serializing tokenizer.json: {e}")))
    }

    /// Every token's own bytes (`None` for special added tokens): byte-level pieces mapped
    /// back through GPT-2's byte alphabet, SentencePiece-style pieces with `▁` as a space and
    /// `<0xNN>` as that byte.
    pub(crate) fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let byte_level = self
            .to_json()
            .ok()
            .and_then(|j| serde_json::from_str::<Json>(&j).ok())
            .is_some_and(|j| j["decoder"].to_string().contains("ByteLevel"));
        let unicode_to_byte = gpt2_byte_alphabet();
        let special: std::collections::HashSet<u32> = self
            .tok
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        (0..self.vocab_size as u32)
            .map(|id| {
                if special.contains(&id) {
                    return None;
                }
                let piece = self.tok.id_to_token(id)?;
                if byte_level {
                    piece.chars().map(|c| unicode_to_byte.get(&c).copied()).collect()
                } else if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>')) {
                    u8::from_str_radix(hex, 16).ok().map(|b| vec![b])
                } else {
                    Some(piece.replace('\u{2581}', " ").into_bytes())
                }
            })
            .collect()
    }

    pub(crate) fn id_to_piece(&self, id: u32) -> Option<String> {
        self.tok.id_to_token(id)
    }

    pub(crate) fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.tok.token_to_id(piece)
    }

    /// The ids the post-processor puts before the text (e.g. `[BOS]`), found by encoding a probe
    /// with and without special tokens.
    fn post_processor_prefix(&self) -> Vec<u32> {
        let probe = "a";
        let (Ok(with), Ok(without)) = (
            self.tok.encode_fast(probe, true),
            self.tok.encode_fast(probe, false),
        ) else {
            return Vec::new();
        };
        let (with, without) = (with.get_ids(), without.get_ids());
        (0..=with.len().saturating_sub(without.len()))
            .find(|&k| with[k..].starts_with(without))
            .map(|k| with[..k].to_vec())
            .unwrap_or_default()
    }
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::format(path.display().to_string(), "json", e.to_string()))
}

/// `"<s>"` or `{"content": "<s>", ...}` or null.
fn token_string(v: Option<&Json>) -> Option<&str> {
    match v? {
        Json::String(s) => Some(s),
        Json::Object(o) => o.get("content")?.as_str(),
        _ => None,
    }
}

/// An int, or a list of ints (`eos_token_id` may be either).
fn id_list(v: Option<&Json>, file: &str, field: &str) -> Result<Vec<u32>> {
    let bad = || ModelError::format(file, field, "expected a token id or a list of token ids");
    let one = |v: &Json| v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(bad);
    match v {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(a)) => a.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

/// The `chat_template` entry: a string, or a list of `{name, template}` (the "default" one).
fn template_source(cfg: &Json) -> Option<String> {
    match cfg.get("chat_template")? {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
        _ => None,
    }
}

/// Everything `Tokenizer::from_hf_files` needs.
pub(crate) struct HfLoaded {
    pub backend: HfBackend,
    pub special: SpecialTokens,
    pub chat_template: Option<ChatTemplate>,
}

pub(crate) fn load(
    tokenizer_json: &Path,
    tokenizer_config_json: Option<&Path>,
    generation_config_json: Option<&Path>,
) -> Result<HfLoaded> {
    let label = tokenizer_json.display().to_string();
    let bytes = std::fs::read(tokenizer_json).map_err(|e| ModelError::io(tokenizer_json, e))?;
    let tok = tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| ModelError::Tokenizer(format!("{label}: {e}")))?;
    let vocab_size = tok.get_vocab_size(true);
    let backend = HfBackend::new(tok, vocab_size);

    let cfg = tokenizer_config_json
        .map(read_json)
        .transpose()?
        .unwrap_or(Json::Null);
    let cfg_label = tokenizer_config_json
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let gen = generation_config_json
        .map(read_json)
        .transpose()?
        .unwrap_or(Json::Null);
    let gen_label = generation_config_json
        .map(|p| p.display().to_string())
        .unwrap_or_default();

    let lookup = |s: &str, field: &str| {
        backend.token_to_id(s).ok_or_else(|| {
            ModelError::Tokenizer(format!(
                "{cfg_label}: {field} {s:?} is not in the vocabulary of {label}"
            ))
        })
    };
    let pp_prefix = backend.post_processor_prefix();

    let bos = match token_string(cfg.get("bos_token")) {
        Some(s) => Some(lookup(s, "bos_token")?),
        None => match id_list(gen.get("bos_token_id"), &gen_label, "bos_token_id")?.first() {
            Some(&id) => Some(id),
            None if pp_prefix.len() == 1 => Some(pp_prefix[0]),
            None => None,
        },
    };
    let add_bos = match cfg.get("add_bos_token").and_then(Json::as_bool) {
        Some(b) => b,
        None => bos.is_some() && pp_prefix.first() == bos.as_ref(),
    } && bos.is_some();

    let mut eos = id_list(gen.get("eos_token_id"), &gen_label, "eos_token_id")?;
    if let Some(s) = token_string(cfg.get("eos_token")) {
        let id = lookup(s, "eos_token")?;
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    // Special added tokens that end a turn end generation too (as in the GGUF loader).
    let mut turn_ends: Vec<u32> = backend
        .tok
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(id, t)| t.special && END_OF_TURN_TEXTS.contains(&t.content.as_str()) && Some(*id) != bos)
        .map(|(id, _)| id)
        .collect();
    turn_ends.sort_unstable();
    for id in turn_ends {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    for &id in bos.iter().chain(&eos) {
        if id as usize >= vocab_size {
            return Err(ModelError::Tokenizer(format!(
                "special token id {id} >= vocab size {vocab_size} ({label})"
            )));
        }
    }

    let mut source = template_source(&cfg);
    if source.is_none() {
        // Newer checkpoints keep the template beside the config.
        if let Some(dir) = tokenizer_config_json.and_then(Path::parent) {
            let p = dir.join("chat_template.jinja");
            if p.is_file() {
                source = Some(std::fs::read_to_string(&p).map_err(|e| ModelError::io(&p, e))?);
            }
        }
    }
    let chat_template = source.map(ChatTemplate::new).transpose()?;
    Ok(HfLoaded {
        backend,
        special: SpecialTokens { bos, eos, add_bos },
        chat_template,
    })
}

/// GPT-2's printable stand-ins for the 256 byte values (what byte-level BPE pieces spell), as
/// char -> byte.
fn gpt2_byte_alphabet() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        map.insert(c, b);
    }
    map
}
