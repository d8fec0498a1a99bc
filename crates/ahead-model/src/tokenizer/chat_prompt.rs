//! A chat, rendered through the model's template and tokenized as `transformers`'
//! `apply_chat_template(tokenize=True)` does, with one difference that is the point: only the
//! template's own text may produce control tokens. Message content is always text, so a user
//! who types `<|im_end|>\n<|im_start|>system` cannot end their turn or open a system turn.
//!
//! How the content is told apart from the template: the template is rendered a second time with
//! every message's content replaced by a marker, and the markers split that rendering into
//! template text and content slots. Putting the contents back into the slots must give the real
//! rendering exactly (templates that change content, e.g. `content | trim`, are matched with the
//! trimmed content); where it does not, the chat is tokenized as one text only when no content
//! holds control-token text, and refused otherwise. Control tokens are then found in the
//! template text alone, and the text between them (template text and content together, as
//! `tokenizers` sees it after splitting at added tokens) is encoded literally, as a text of its
//! own.

use aho_corasick::{AhoCorasick, MatchKind};

use super::chat_template::ChatMessage;
use super::Tokenizer;
use crate::error::{ModelError, Result};

/// A rendered, tokenized chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPrompt {
    /// The template's output, as `apply_chat_template(tokenize=False)` gives it.
    pub text: String,
    /// The ids to feed the model (no BOS added beyond what the template writes).
    pub ids: Vec<u32>,
}

/// The control tokens' texts, matched leftmost-longest.
#[derive(Clone)]
pub(crate) struct ControlTokens {
    ids: Vec<u32>,
    texts: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl ControlTokens {
    /// `(text, id)` pairs; empty texts are ignored.
    pub(crate) fn new(mut tokens: Vec<(String, u32)>) -> Result<Self> {
        tokens.retain(|(t, _)| !t.is_empty());
        tokens.sort_by_key(|t| t.1);
        let (texts, ids): (Vec<String>, Vec<u32>) = tokens.into_iter().unzip();
        let matcher = if texts.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&texts)
                    .map_err(|e| ModelError::Tokenizer(format!("control tokens: {e}")))?,
            )
        };
        Ok(Self { ids, texts, matcher })
    }

    /// Whether `text` holds any control token's text.
    fn occurs_in(&self, text: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
    }

    /// `(start, end, id)` of every control token in `text`.
    fn find_all(&self, text: &str) -> Vec<(usize, usize, u32)> {
        match &self.matcher {
            None => Vec::new(),
            Some(m) => m
                .find_iter(text)
                .map(|hit| (hit.start(), hit.end(), self.ids[hit.pattern().as_usize()]))
                .collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }
}

/// A piece of the rendered chat.
enum Segment {
    /// Text the template wrote: control tokens here are control tokens.
    Template(String),
    /// Text from a message: always literal.
    Content(String),
}

/// The marker standing for message `i`'s content (private-use characters no template writes).
fn marker(i: usize) -> String {
    format!("\u{F8F0}{i}\u{F8F1}")
}

/// Splits the marker rendering into template text and content slots, filled with `contents`;
/// `None` if a marker is malformed or names no message.
fn segments(marked: &str, contents: &[&str]) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    let mut rest = marked;
    while let Some(start) = rest.find('\u{F8F0}') {
        let end = rest[start..].find('\u{F8F1}')? + start;
        let index: usize = rest[start + '\u{F8F0}'.len_utf8()..end].parse().ok()?;
        // A template may drop messages (or emit them out of order); any order is fine as long
        // as each slot is filled from the message it marks.
        let content = contents.get(index)?;
        out.push(Segment::Template(rest[..start].to_owned()));
        out.push(Segment::Content((*content).to_owned()));
        rest = &rest[end + '\u{F8F1}'.len_utf8()..];
    }
    out.push(Segment::Template(rest.to_owned()));
    Some(out)
}

fn joined(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Template(t) | Segment::Content(t) => t.as_str(),
        })
        .collect()
}

impl Tokenizer {
    /// Renders `messages` through the chat template (transformers' `apply_chat_template`
    /// context: `bos_token`, `eos_token`, `add_generation_prompt`) and tokenizes the result so
    /// that only the template's own text yields control tokens. Errors without a template.
    pub fn encode_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<ChatPrompt> {
        let template = self
            .chat_template()
            .ok_or_else(|| ModelError::Template("the model has no chat template".into()))?;
        let piece = |id: Option<u32>| id.and_then(|i| self.id_to_piece(i)).unwrap_or_default();
        let bos = piece(self.bos_id());
        let eos = piece(self.eos_ids().first().copied());
        let render = |m: &[ChatMessage]| template.render(m, add_generation_prompt, &bos, &eos);

        // Tool calls are template text: control-token text inside one would become control.
        if let Some(m) = messages.iter().find(|m| {
            m.tool_calls
                .as_ref()
                .is_some_and(|c| self.control.occurs_in(&c.to_string()))
        }) {
            return Err(ModelError::Template(format!(
                "a {} message's tool calls contain control-token text",
                m.role
            )));
        }
        let text = render(messages)?;
        let segments = self.split_content(messages, &text, &render)?;
        let mut ids = Vec::new();
        let mut literal = String::new();
        for segment in &segments {
            match segment {
                Segment::Content(c) => literal.push_str(c),
                Segment::Template(t) => {
                    let mut at = 0;
                    for (start, end, id) in self.control.find_all(t) {
                        literal.push_str(&t[at..start]);
                        self.flush_literal(&mut literal, &mut ids)?;
                        ids.push(id);
                        at = end;
                    }
                    literal.push_str(&t[at..]);
                }
            }
        }
        self.flush_literal(&mut literal, &mut ids)?;
        Ok(ChatPrompt { text, ids })
    }

    /// The control token the template writes after an assistant's message (`<|im_end|>`,
    /// `<end_of_turn>`, ...): the model ends its turn with it, so it ends generation.
    pub(crate) fn template_end_of_turn(&self) -> Option<u32> {
        let messages = [
            ChatMessage::new("user", marker(0)),
            ChatMessage::new("assistant", marker(1)),
        ];
        let template = self.chat_template()?;
        let text = template.render(&messages, false, "", "").ok()?;
        let after = &text[text.find(&marker(1))? + marker(1).len()..];
        let (start, _, id) = *self.control.find_all(after).first()?;
        // Only whitespace may stand between the answer and its end-of-turn token.
        after[..start].trim().is_empty().then_some(id)
    }

    /// Encodes the text between two control tokens as a text of its own: as `tokenizers` (which
    /// normalizes each split between added tokens apart) and llama.cpp (which gives a
    /// sentencepiece text its dummy space after every control token) do.
    fn flush_literal(&self, literal: &mut String, ids: &mut Vec<u32>) -> Result<()> {
        if !literal.is_empty() {
            ids.extend(self.encode(literal, false)?);
            literal.clear();
        }
        Ok(())
    }

    /// The rendered chat as template text and content (see the module docs).
    fn split_content(
        &self,
        messages: &[ChatMessage],
        text: &str,
        render: &dyn Fn(&[ChatMessage]) -> Result<String>,
    ) -> Result<Vec<Segment>> {
        let marked_messages: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage {
                content: marker(i),
                ..m.clone()
            })
            .collect();
        // A template that inspects the content (its length, a prefix) may fail or branch on the
        // markers; that only means the fallback below.
        if let Ok(marked) = render(&marked_messages) {
            let raw: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
            let trimmed: Vec<&str> = messages.iter().map(|m| m.content.trim()).collect();
            for contents in [&raw, &trimmed] {
                if let Some(segs) = segments(&marked, contents) {
                    if joined(&segs) == text {
                        return Ok(segs);
                    }
                }
            }
        }
        if let Some(m) = messages.iter().find(|m| self.control.occurs_in(&m.content)) {
            return Err(ModelError::Template(format!(
                "a {} message contains control-token text, and this chat template changes message \
                 content, so it cannot be kept literal",
                m.role
            )));
        }
        Ok(vec![Segment::Template(text.to_owned())])
    }
}
