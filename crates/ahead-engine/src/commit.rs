//! Committing generated tokens: EOS, stop strings, `max_tokens` and streamed text.
//!
//! Every token goes through [`Committer::push`], one at a time, even when a step produced
//! several: a multi-token commit is by construction the same as feeding the tokens one by one,
//! so EOS, stop strings spanning tokens or steps, `max_tokens` and usage counts can never
//! differ from plain decoding.

use ahead_model::tokenizer::IncrementalDecoder;
use ahead_model::Tokenizer;

use crate::error::Result;
use crate::output::FinishReason;

/// The limits a sequence stops at.
#[derive(Debug, Clone)]
pub struct StopRules {
    pub eos: Vec<u32>,
    pub ignore_eos: bool,
    pub stop: Vec<String>,
    pub max_tokens: usize,
}

/// The generated tokens and text of one sequence, and whether it has finished.
#[derive(Debug)]
pub struct Committer<'t> {
    tokenizer: &'t Tokenizer,
    rules: StopRules,
    decoder: IncrementalDecoder,
    tokens: Vec<u32>,
    /// Decoded text so far, cut at a stop string once one is found.
    text: String,
    /// Bytes of `text` already handed out as stream deltas.
    streamed: usize,
    finished: Option<FinishReason>,
}

impl<'t> Committer<'t> {
    pub fn new(tokenizer: &'t Tokenizer, prompt: &[u32], rules: StopRules) -> Self {
        let finished = (rules.max_tokens == 0).then_some(FinishReason::Length);
        Self {
            tokenizer,
            rules,
            decoder: IncrementalDecoder::with_prompt(prompt),
            tokens: Vec::new(),
            text: String::new(),
            streamed: 0,
            finished,
        }
    }

    /// Whether generation has ended, and why.
    pub fn finished(&self) -> Option<FinishReason> {
        self.finished
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Commits tokens in order until one finishes the sequence; returns how many were taken.
    pub fn commit(&mut self, tokens: &[u32]) -> Result<usize> {
        let mut taken = 0;
        for &t in tokens {
            if self.finished.is_some() {
                break;
            }
            self.push(t)?;
            taken += 1;
        }
        Ok(taken)
    }

    /// Commits one token.
    pub fn push(&mut self, token: u32) -> Result<()> {
        if self.finished.is_some() {
            return Ok(());
        }
        self.tokens.push(token);
        if !self.rules.ignore_eos && self.rules.eos.contains(&token) {
            self.finish(FinishReason::Stop)?;
            return Ok(());
        }
        let before = self.text.len();
        let delta = self.decoder.push(self.tokenizer, token)?;
        self.text.push_str(&delta);
        if self.cut_at_stop(before) {
            self.finished = Some(FinishReason::Stop);
        } else if self.tokens.len() >= self.rules.max_tokens {
            self.finish(FinishReason::Length)?;
        }
        Ok(())
    }

    /// Ends the sequence (e.g. at the context limit), flushing held-back text.
    pub fn finish(&mut self, reason: FinishReason) -> Result<()> {
        if self.finished.is_none() {
            let before = self.text.len();
            let rest = self.decoder.finish(self.tokenizer)?;
            self.text.push_str(&rest);
            let stopped = self.cut_at_stop(before);
            self.finished = Some(if stopped { FinishReason::Stop } else { reason });
        }
        Ok(())
    }

    /// Text that is final and not yet streamed. While running, text that could still turn
    /// out to be the start of a stop string is held back.
    pub fn take_delta(&mut self) -> String {
        let end = if self.finished.is_some() {
            self.text.len()
        } else {
            self.text.len() - self.stop_prefix_len()
        };
        let end = end.max(self.streamed);
        let delta = self.text[self.streamed..end].to_string();
        self.streamed = end;
        delta
    }

    /// Looks for a stop string that ends in the text added after byte `before`; cuts there.
    fn cut_at_stop(&mut self, before: usize) -> bool {
        let longest = self.rules.stop.iter().map(String::len).max().unwrap_or(0);
        if longest == 0 {
            return false;
        }
        let mut from = before.saturating_sub(longest - 1);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let found = self
            .rules
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min();
        match found {
            Some(at) => {
                self.text.truncate(at);
                self.streamed = self.streamed.min(at);
                true
            }
            None => false,
        }
    }

    /// Length of the longest suffix of the text that is a proper prefix of a stop string.
    fn stop_prefix_len(&self) -> usize {
        let mut best = 0;
        for s in &self.rules.stop {
            for (i, _) in s.char_indices().skip(1) {
                if i > best && self.text.ends_with(&s[..i]) {
                    best = i;
                }
            }
        }
        best
    }
}
