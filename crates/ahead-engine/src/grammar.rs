//! Structured output: a grammar (JSON schema, any JSON object, regex or Lark) constrains every
//! generated token, through `llguidance` (the engine vLLM, SGLang and llama.cpp use). At each
//! verify row the target's logits outside the grammar's mask become -inf, so the constrained
//! model is the target every method verifies against: drafts the grammar forbids are rejected
//! like any other wrong draft, and greedy output is identical across methods.
//!
//! A tree's rows sit at different grammar states: before the verify forward, the matcher consumes
//! each node's path, computes that row's mask and rolls back; nodes the grammar forbids are
//! dropped there, so they cost no row.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use ahead_core::spec::TokenTree;
use ahead_model::Tokenizer;

use crate::error::{EngineError, Result};

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI's `json_object`).
    JsonObject,
    /// JSON matching this JSON schema.
    JsonSchema(serde_json::Value),
    /// Text matching this regular expression.
    Regex(String),
    /// A Lark grammar (llguidance's dialect).
    Lark(String),
}

impl Grammar {
    fn top_level(&self) -> TopLevelGrammar {
        match self {
            Self::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"})))
            }
            Self::JsonSchema(s) => TopLevelGrammar::from_json_schema(compact(s.clone())),
            Self::Regex(r) => TopLevelGrammar::from_regex(r),
            Self::Lark(l) => TopLevelGrammar::from_lark(l.clone()),
        }
    }
}

/// JSON as `{"a": 1, "b": [2, 3]}`, one space after `:` and `,` and none elsewhere, unless
/// the schema sets llguidance's own options (`x-guidance`): where any whitespace may go, a
/// small model can pad with newlines until `max_tokens`.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
        });
    }
    schema
}

/// A model's vocabulary indexed for grammars: built once per engine.
pub(crate) struct GrammarEnv {
    factory: ParserFactory,
    /// The ids that end a sequence: allowed where the grammar allows its end.
    eos: Vec<u32>,
}

impl std::fmt::Debug for GrammarEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarEnv").field("eos", &self.eos).finish()
    }
}

impl GrammarEnv {
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let eos = tokenizer.eos_ids().to_vec();
        let first_eos = *eos.first().ok_or_else(|| {
            EngineError::InvalidRequest("a grammar needs a model with an end-of-sequence token".into())
        })?;
        // Tokens that are no text get the trie's special marker: no grammar can spell them.
        let words: Vec<Vec<u8>> = tokenizer
            .token_bytes()
            .into_iter()
            .enumerate()
            .map(|(id, bytes)| match bytes {
                Some(b) if !b.is_empty() && !eos.contains(&(id as u32)) => b,
                _ => {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(format!("<special {id}>").as_bytes());
                    w
                }
            })
            .collect();
        let info = TokRxInfo {
            tok_end_of_turn: eos.get(1).copied(),
            ..TokRxInfo::new(words.len() as u32, first_eos)
        };
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));
        let factory = ParserFactory::new_simple(&env)
            .map_err(|e| EngineError::Internal(format!("grammar engine: {e}")))?;
        Ok(Self { factory, eos })
    }

    /// A matcher for one request.
    pub fn constraint(&self, grammar: &Grammar) -> Result<Constraint> {
        let parser = self
            .factory
            .create_parser(grammar.top_level())
            .map_err(|e| EngineError::InvalidRequest(format!("grammar: {e}")))?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
            eos: self.eos.clone(),
        })
    }
}

/// One request's grammar state: where its committed tokens have taken the grammar.
pub(crate) struct Constraint {
    matcher: Matcher,
    eos: Vec<u32>,
}

impl Constraint {
    /// Drops the nodes of `tree` the grammar forbids (with their subtrees: the target could
    /// never accept them, so they would only cost rows) and returns the masks of the pending
    /// row (first) and of every node kept.
    pub fn prune(&mut self, tree: &mut TokenTree) -> Result<Vec<SimpleVob>> {
        let mut masks = vec![self.mask()?];
        let mut kept: Vec<Option<usize>> = vec![None; tree.len()];
        let mut out = TokenTree::empty();
        for node in 0..tree.len() {
            let parent = tree.parents[node];
            if parent.is_some_and(|p| kept[p].is_none()) {
                continue;
            }
            let mut path = vec![node];
            while let Some(p) = path.last().and_then(|&n| tree.parents[n]) {
                path.push(p);
            }
            path.reverse();
            let tokens: Vec<u32> = path.iter().map(|&n| tree.tokens[n]).collect();
            let taken = self.matcher.try_consume_tokens(&tokens).map_err(grammar_error)?;
            if taken == tokens.len() {
                masks.push(self.mask()?);
                kept[node] = Some(out.len());
                out.tokens.push(tree.tokens[node]);
                out.parents.push(parent.and_then(|p| kept[p]));
                out.q.push(tree.q[node].clone());
            }
            if taken > 0 {
                self.matcher.rollback(taken).map_err(grammar_error)?;
            }
        }
        *tree = out;
        Ok(masks)
    }

    /// The tokens of the text the grammar forces next (its bytes as the model's tokenizer
    /// encodes them; empty when nothing is forced or the bytes end inside a character).
    pub fn forced_tokens(&mut self, tokenizer: &Tokenizer) -> Result<Vec<u32>> {
        if self.matcher.is_stopped() {
            return Ok(Vec::new());
        }
        let bytes = self.matcher.compute_ff_bytes();
        match std::str::from_utf8(&bytes) {
            Ok(text) if !text.is_empty() => Ok(tokenizer.encode_continuation(text)?),
            _ => Ok(Vec::new()),
        }
    }

    fn mask(&mut self) -> Result<SimpleVob> {
        self.matcher.compute_mask_or_eos().map_err(grammar_error)
    }

    /// Sets every logit `mask` forbids to -inf (every end-of-sequence id counts as the
    /// grammar's end).
    pub fn apply(&self, mask: &SimpleVob, logits: &mut [f32]) {
        let end = self.eos.iter().any(|&e| mask.is_allowed(e));
        for (id, l) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let allowed = if self.eos.contains(&id) {
                end
            } else {
                (id as usize) < mask.len() && mask.is_allowed(id)
            };
            if !allowed {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// Moves the grammar past committed tokens (an end-of-sequence id ends it).
    pub fn commit(&mut self, tokens: &[u32]) -> Result<()> {
        for &t in tokens {
            if self.eos.contains(&t) || self.matcher.is_stopped() {
                return Ok(());
            }
            self.matcher.consume_token(t).map_err(grammar_error)?;
        }
        Ok(())
    }
}

fn grammar_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("grammar: {e}"))
}
