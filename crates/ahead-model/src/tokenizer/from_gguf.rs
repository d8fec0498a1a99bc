//! Tokenizers embedded in GGUF metadata: `tokenizer.ggml.model = "llama"` (sentencepiece-style
//! pieces with scores and byte tokens) and `"gpt2"` (byte-level BPE with merges).

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::hf::HfBackend;
use super::spm::{parse_byte_piece, PieceKind, SpmFlavor, SpmParts, SpmVocab};
use super::{SpecialTokens, END_OF_TURN_TEXTS};
use crate::error::{ModelError, Result};
use crate::format::gguf::{GgufFile, GgufValue};

/// llama.cpp token types.
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// Pre-tokenizer split regexes (as in the models' `tokenizer.json`).
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Typed access to GGUF metadata with errors naming the key.
struct Meta<'a> {
    md: &'a BTreeMap<String, GgufValue>,
    label: &'a str,
}

impl<'a> Meta<'a> {
    fn err(&self, key: &str, reason: impl Into<String>) -> ModelError {
        ModelError::format(self.label, key, reason)
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.md.get(key) {
            None => Ok(None),
            Some(GgufValue::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, format!("expected a string, found {v:?}"))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.md.get(key) {
            None => Ok(None),
            Some(GgufValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(key, format!("expected a bool, found {v:?}"))),
        }
    }

    /// A token id; `-1` / `u32::MAX` (llama.cpp's "none") read as `None`.
    fn id(&self, key: &str) -> Result<Option<u32>> {
        let v: i128 = match self.md.get(key) {
            None => return Ok(None),
            Some(v) => int_of(v).ok_or_else(|| self.err(key, format!("expected an integer, found {v:?}")))?,
        };
        if v == -1 || v == i128::from(u32::MAX) {
            return Ok(None);
        }
        u32::try_from(v)
            .map(Some)
            .map_err(|_| self.err(key, format!("{v} is not a token id")))
    }

    fn array(&self, key: &str) -> Result<Option<&'a [GgufValue]>> {
        match self.md.get(key) {
            None => Ok(None),
            Some(GgufValue::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.err(key, format!("expected an array, found {v:?}"))),
        }
    }

    fn str_array(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(a) = self.array(key)? else {
            return Ok(None);
        };
        a.iter()
            .enumerate()
            .map(|(i, v)| match v {
                GgufValue::String(s) => Ok(s.as_str()),
                v => Err(self.err(key, format!("element {i}: expected a string, found {v:?}"))),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    fn f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(a) = self.array(key)? else {
            return Ok(None);
        };
        a.iter()
            .enumerate()
            .map(|(i, v)| match v {
                GgufValue::F32(x) => Ok(*x),
                GgufValue::F64(x) => Ok(*x as f32),
                v => Err(self.err(key, format!("element {i}: expected a float, found {v:?}"))),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    fn i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        let Some(a) = self.array(key)? else {
            return Ok(None);
        };
        a.iter()
            .enumerate()
            .map(|(i, v)| {
                int_of(v)
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(|| self.err(key, format!("element {i}: expected an i32, found {v:?}")))
            })
            .collect::<Result<_>>()
            .map(Some)
    }
}

fn int_of(v: &GgufValue) -> Option<i128> {
    Some(match *v {
        GgufValue::U8(x) => x.into(),
        GgufValue::I8(x) => x.into(),
        GgufValue::U16(x) => x.into(),
        GgufValue::I16(x) => x.into(),
        GgufValue::U32(x) => x.into(),
        GgufValue::I32(x) => x.into(),
        GgufValue::U64(x) => x.into(),
        GgufValue::I64(x) => x.into(),
        _ => return None,
    })
}

/// A parsed GGUF tokenizer.
pub(crate) enum GgufTokenizer {
    Spm(SpmVocab),
    Bpe(Box<HfBackend>),
}

/// What `Tokenizer::from_gguf` needs.
pub(crate) struct GgufLoaded {
    pub tokenizer: GgufTokenizer,
    pub special: SpecialTokens,
    pub chat_template: Option<String>,
    /// Control and user-defined tokens: `(text, id)`.
    pub control_tokens: Vec<(String, u32)>,
}

pub(crate) fn load(file: &GgufFile) -> Result<GgufLoaded> {
    let m = Meta {
        md: &file.metadata,
        label: &file.label,
    };
    let model = m
        .str("tokenizer.ggml.model")?
        .ok_or_else(|| m.err("tokenizer.ggml.model", "missing (the file has no tokenizer)"))?;
    let tokens = m
        .str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| m.err("tokenizer.ggml.tokens", "missing"))?;
    let n = tokens.len();
    if n == 0 || u32::try_from(n).is_err() {
        return Err(m.err("tokenizer.ggml.tokens", format!("bad vocabulary size {n}")));
    }
    let typed = m.md.contains_key("tokenizer.ggml.token_type");
    let types = match m.i32_array("tokenizer.ggml.token_type")? {
        Some(t) if t.len() != n => {
            return Err(m.err(
                "tokenizer.ggml.token_type",
                format!("{} entries for {n} tokens", t.len()),
            ))
        }
        Some(t) => t,
        None => vec![1; n],
    };
    let check = |key: &str, id: Option<u32>| match id {
        Some(id) if id as usize >= n => Err(m.err(key, format!("id {id} >= vocab size {n}"))),
        _ => Ok(id),
    };
    let bos = check(
        "tokenizer.ggml.bos_token_id",
        m.id("tokenizer.ggml.bos_token_id")?,
    )?;
    let unk = check(
        "tokenizer.ggml.unknown_token_id",
        m.id("tokenizer.ggml.unknown_token_id")?,
    )?;
    let mut eos = Vec::new();
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = check(key, m.id(key)?)? {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
    }
    for (id, (tok, ty)) in tokens.iter().zip(&types).enumerate() {
        let id = id as u32;
        if *ty == TYPE_CONTROL && END_OF_TURN_TEXTS.contains(tok) && !eos.contains(&id) && Some(id) != bos {
            eos.push(id);
        }
    }
    let pre = m.str("tokenizer.ggml.pre")?.unwrap_or("default");
    let add_bos_default = match model {
        "llama" => true,
        _ => matches!(pre, "llama3" | "llama-bpe"),
    };
    let add_bos = m.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(add_bos_default) && bos.is_some();
    let chat_template = m.str("tokenizer.chat_template")?.map(str::to_owned);
    let special = SpecialTokens { bos, eos, add_bos };

    let tokenizer = match model {
        "llama" => {
            let scores = match m.f32_array("tokenizer.ggml.scores")? {
                Some(s) if s.len() != n => {
                    return Err(m.err(
                        "tokenizer.ggml.scores",
                        format!("{} entries for {n} tokens", s.len()),
                    ))
                }
                Some(s) => s,
                None => vec![0.0; n],
            };
            let unk = unk.or_else(|| types.iter().position(|&t| t == TYPE_UNKNOWN).map(|i| i as u32));
            let add_space_prefix = m.bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
            let kinds = tokens
                .iter()
                .zip(&types)
                .enumerate()
                .map(|(id, (tok, &ty))| {
                    let id = id as u32;
                    if Some(id) == bos
                        || special.eos.contains(&id)
                        || ty == TYPE_CONTROL
                        || ty == TYPE_UNKNOWN
                    {
                        PieceKind::Skip
                    } else if ty == TYPE_BYTE || !typed {
                        // Without token types, `<0xNN>` pieces are taken as byte tokens.
                        parse_byte_piece(tok.as_bytes())
                            .map(PieceKind::Byte)
                            .unwrap_or(PieceKind::Normal)
                    } else if ty == TYPE_USER_DEFINED {
                        PieceKind::Verbatim
                    } else {
                        PieceKind::Normal
                    }
                })
                .collect();
            let vocab = SpmVocab::new(SpmParts {
                pieces: tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
                scores,
                kinds,
                unk,
                bos,
                add_space_prefix,
                flavor: SpmFlavor::Gguf,
            })
            .map_err(|e| m.err("tokenizer.ggml", e.to_string()))?;
            GgufTokenizer::Spm(vocab)
        }
        "gpt2" => GgufTokenizer::Bpe(Box::new(build_bpe(&m, &tokens, &types, pre)?)),
        other => {
            return Err(ModelError::Unsupported(format!(
                "{}: tokenizer.ggml.model {other:?} (supported: llama, gpt2)",
                file.label
            )))
        }
    };
    let control_tokens = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED)
        .map(|(id, (tok, _))| ((*tok).to_owned(), id as u32))
        .collect();
    Ok(GgufLoaded {
        tokenizer,
        special,
        chat_template,
        control_tokens,
    })
}

/// Builds a byte-level BPE `tokenizers` pipeline from GGUF tokens and merges.
fn build_bpe(m: &Meta<'_>, tokens: &[&str], types: &[i32], pre: &str) -> Result<HfBackend> {
    let merges = m
        .str_array("tokenizer.ggml.merges")?
        .ok_or_else(|| m.err("tokenizer.ggml.merges", "missing (required for gpt2 tokenizers)"))?;
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, (&tok, &ty)) in tokens.iter().zip(types).enumerate() {
        if index.insert(tok, id as u32).is_some() {
            return Err(m.err(
                "tokenizer.ggml.tokens",
                format!("duplicate token {tok:?} (id {id})"),
            ));
        }
        // Added tokens stay in the model's vocabulary too: `tokenizers` gives an added token
        // the model's id for its text, and a new id past the vocabulary's size otherwise, which
        // would leave `<|im_end|>` without its id 2.
        if ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == TYPE_CONTROL,
            }));
        }
        vocab.insert(tok.to_owned(), json!(id));
    }
    let mut pairs = Vec::with_capacity(merges.len());
    for (i, merge) in merges.iter().enumerate() {
        let mut parts = merge.split(' ');
        let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(m.err(
                "tokenizer.ggml.merges",
                format!("merge {i} {merge:?} is not two tokens"),
            ));
        };
        let joined = format!("{a}{b}");
        for t in [a, b, joined.as_str()] {
            if !index.contains_key(t) {
                return Err(m.err(
                    "tokenizer.ggml.merges",
                    format!("merge {i} {merge:?} references {t:?}, which is not a token"),
                ));
            }
        }
        pairs.push(json!([a, b]));
    }
    let (regex, ignore_merges, nfc) = match pre {
        "llama3" | "llama-bpe" | "smaug-bpe" => (LLAMA3_REGEX, true, false),
        "qwen2" | "deepseek-r1-qwen" => (QWEN2_REGEX, false, true),
        _ => (GPT2_REGEX, false, false),
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": if nfc { json!({"type": "NFC"}) } else { json!(null) },
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": pairs,
        }
    });
    let tok: tokenizers::Tokenizer = serde_json::from_value(spec)
        .map_err(|e| m.err("tokenizer.ggml", format!("cannot build the BPE tokenizer: {e}")))?;
    Ok(HfBackend::new(tok, tokens.len()))
}
