//! EAGLE as a proposer: the head drafts a chain in the target's feature space. After every
//! forward the decoder hands over the target's features of the newly committed positions; the
//! head's cache takes one row per committed position (its real feature and the next token),
//! then the chain runs on the head's own predicted features and is rolled back before the
//! next step. Drafts are EAGLE-2's dynamic trees (`eagle_tree`): the head's own probabilities
//! choose which candidates to expand, a batch of them per head forward; sampled trees carry
//! the distribution each node was drawn from, so verification is exact rejection sampling.

use std::sync::Arc;

use ahead_core::{Rng, SamplingParams};
use ahead_model::eagle::EagleHead;
use ahead_model::KvCache;

use super::eagle_tree::TreeHead;
use super::proposer::{Features, Needs, Outcome, Proposal, Proposer};
use crate::error::{EngineError, Result};

/// An EAGLE head and its cache, for one sequence.
#[derive(Debug)]
pub struct EagleProposer {
    head: Arc<EagleHead>,
    /// The target's vocabulary (the head's classifier may score a subset).
    vocab: usize,
    cache: KvCache,
    /// Rows of `cache` made from the target's own features: positions 0..fed.
    fed: usize,
    /// What the target gave for the committed positions after `fed` (its final state, or a fused
    /// head's layer outputs), not yet in the cache.
    waiting: Vec<f32>,
    /// The last real row's logits and predicted feature (where the next chain starts).
    last: Option<(Vec<f32>, Vec<f32>)>,
    /// Greedy drafts verify no node whose path probability (by the head) is below this.
    min_confidence: f32,
}

impl EagleProposer {
    /// A proposer with room for `capacity` positions.
    pub fn new(head: Arc<EagleHead>, capacity: usize) -> Result<Self> {
        let cfg = head.config();
        let cache = head.new_cache(capacity.min(cfg.max_seq_len))?;
        Ok(Self {
            vocab: cfg.vocab_size,
            head,
            cache,
            fed: 0,
            waiting: Vec::new(),
            last: None,
            min_confidence: 0.0,
        })
    }

    /// Stops each greedy chain where its confidence falls below `c`.
    pub fn with_min_confidence(mut self, c: f32) -> Self {
        self.min_confidence = c;
        self
    }

    /// Positions whose target features the proposer has seen.
    fn known(&self) -> usize {
        self.fed + self.waiting.len() / self.head.input_width()
    }

    /// Feeds the waiting features as real rows (`history` gives each row's next token).
    fn feed(&mut self, history: &[u32]) -> Result<()> {
        let known = self.known();
        if known == self.fed {
            return Ok(());
        }
        if history.len() <= known || known > self.cache.capacity() {
            return Err(EngineError::Internal(format!(
                "EAGLE: features for {known} positions, but {} tokens and room for {}",
                history.len(),
                self.cache.capacity()
            )));
        }
        self.cache.truncate(self.fed)?;
        let positions: Vec<usize> = (self.fed..known).collect();
        let features = self.head.real_features(&self.waiting)?;
        let out = self.head.forward(
            &features,
            &history[self.fed + 1..=known],
            &positions,
            &mut self.cache,
        )?;
        self.last = Some((out.last().to_vec(), last_feature(&out)?));
        self.fed = known;
        self.waiting.clear();
        Ok(())
    }
}

impl Proposer for EagleProposer {
    fn name(&self) -> &'static str {
        "eagle"
    }

    fn needs(&self) -> Needs {
        Needs {
            hidden: match self.head.feature_layers() {
                Some(layers) => Features::Layers(layers.to_vec()),
                None => Features::Final,
            },
            ..Needs::default()
        }
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        for r in &outcome.hidden {
            self.waiting.extend_from_slice(r);
        }
        Ok(())
    }

    fn stops_own_drafts(&self) -> bool {
        self.min_confidence > 0.0
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        // The prompt's rows count as prefill, as the target's do.
        if self.known() < prompt.len() {
            self.feed(prompt)?;
        }
        Ok(())
    }

    fn propose(
        &mut self,
        history: &[u32],
        k: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<Proposal> {
        // Every position but the pending token's must have its feature (a proposer that
        // missed some drafts nothing rather than guess).
        if k == 0 || self.known() + 1 != history.len() {
            return Ok(Proposal::default());
        }
        self.feed(history)?;
        // Each step feeds new rows first, so the last real row's outputs are fresh here.
        let Some((logits, feature)) = self.last.take() else {
            return Ok(Proposal::default());
        };
        self.cache.truncate(self.fed)?;
        let k = k.min(self.cache.capacity().saturating_sub(self.fed));
        let tree = TreeHead::new(&self.head, &mut self.cache, self.fed, feature);
        Ok(Proposal::from(if sampling.is_greedy() {
            tree.grow_greedy(k, self.min_confidence, &logits)?
        } else {
            tree.grow_sampled(k, &logits, history, self.vocab, sampling, rng)?
        }))
    }
}

/// The head's predicted feature at its last row.
fn last_feature(out: &ahead_model::ForwardOutput) -> Result<Vec<f32>> {
    let h = out
        .hidden
        .as_ref()
        .ok_or_else(|| EngineError::Internal("the EAGLE head returned no features".into()))?;
    Ok(h[h.len() - out.hidden_dim..].to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::eagle_tree::{best_children as children, TREE_WIDTH};
    use super::*;
    use ahead_core::spec::{DraftDist, DynamicTree, TokenTree};
    use ahead_model::transformer::synthetic::random_eagle_head;
    use ahead_model::transformer::{ForwardInput, Logits};
    use ahead_model::{load, LoadOptions, ModelSource};

    /// The committed history the tests draft after (the last token pending).
    const HISTORY: [u32; 7] = [1, 403, 29, 117, 280, 13, 75];

    /// A random head (classifier over `subset`) on the default model, and the target's
    /// features of every committed position.
    fn head_and_features(subset: Option<&[u32]>) -> (Arc<EagleHead>, Vec<f32>) {
        let loaded = load(&ModelSource::Default, &LoadOptions::default()).unwrap();
        let model = &loaded.model;
        let head = Arc::new(random_eagle_head(model, 11, subset).unwrap());
        let n = HISTORY.len() - 1;
        let pos: Vec<usize> = (0..n).collect();
        let input = ForwardInput {
            want_hidden: true,
            logits: Logits::None,
            ..ForwardInput::causal(&HISTORY[..n], &pos)
        };
        let features = model.forward(&input, &mut model.new_cache(64).unwrap()).unwrap();
        (head, features.hidden.unwrap())
    }

    /// A proposer that has seen `features`, drafting `k` nodes after `HISTORY`.
    fn propose(
        head: &Arc<EagleHead>,
        features: &[f32],
        k: usize,
        sampling: &SamplingParams,
        seed: u64,
    ) -> TokenTree {
        let mut proposer = EagleProposer::new(head.clone(), 64).unwrap();
        let rows: Vec<&[f32]> = features.chunks_exact(head.config().dim).collect();
        proposer
            .observe(&Outcome {
                hidden: rows,
                ..Outcome::default()
            })
            .unwrap();
        proposer
            .propose(&HISTORY, k, sampling, &mut Rng::new(seed))
            .unwrap()
            .tree
    }

    /// The tree grown with a depth per forward is the tree the same algorithm grows when every
    /// candidate's logits come from a causal chain of the head along its own path.
    #[test]
    fn a_greedy_tree_is_what_causal_chains_along_each_path_would_grow() {
        let subset: Vec<u32> = (0..512u32).filter(|&t| t < 300 || t % 2 == 0).collect();
        let (head, features) = head_and_features(Some(&subset));
        let (history, n) = (&HISTORY, HISTORY.len() - 1);
        let pos: Vec<usize> = (0..n).collect();
        for k in [1, 3, 8, 13] {
            let got = propose(&head, &features, k, &SamplingParams::greedy(), 0);

            // The head along a path, run causally from scratch: its last logits.
            let chain_logits = |path: &[u32]| {
                let mut c = head.new_cache(64).unwrap();
                let out = head.forward(&features, &history[1..=n], &pos, &mut c).unwrap();
                let (mut logits, mut f) = (out.last().to_vec(), last_feature(&out).unwrap());
                for (i, &t) in path.iter().enumerate() {
                    let out = head.forward(&f, &[t], &[n + i], &mut c).unwrap();
                    (logits, f) = (out.last().to_vec(), last_feature(&out).unwrap());
                }
                logits
            };
            let mut want = DynamicTree::new(k, 0.0);
            want.add_children(None, children(&chain_logits(&[]), head.classifier_tokens()));
            loop {
                let frontier = want.frontier(TREE_WIDTH, k);
                if frontier.is_empty() {
                    break;
                }
                for c in frontier {
                    let mut path: Vec<u32> = want.ancestors(c).iter().map(|&a| want.token(a)).collect();
                    path.push(want.token(c));
                    want.add_children(Some(c), children(&chain_logits(&path), head.classifier_tokens()));
                }
            }
            let (want, _) = want.finish();
            assert_eq!(got.len(), k, "k {k}");
            assert_eq!(got.tokens, want.tokens, "k {k}");
            assert_eq!(got.parents, want.parents, "k {k}");
        }
    }

    /// A sampled tree: every node carries the distribution it was drawn from, which gives its
    /// token mass and none to its earlier siblings (drawn without replacement); it has at most
    /// k nodes, parents first.
    #[test]
    fn a_sampled_tree_draws_siblings_without_replacement() {
        let (head, features) = head_and_features(None);
        let sampling = SamplingParams {
            temperature: 1.5,
            ..SamplingParams::greedy()
        };
        let mut widest = 0;
        for seed in 0..20 {
            let tree = propose(&head, &features, 8, &sampling, seed);
            assert!(
                tree.is_well_formed() && !tree.is_empty() && tree.len() <= 8,
                "{tree:?}"
            );
            for parent in std::iter::once(None).chain((0..tree.len()).map(Some)) {
                let kids = tree.children(parent);
                widest = widest.max(kids.len());
                for (i, &c) in kids.iter().enumerate() {
                    let DraftDist::Sampled(q) = &tree.q[c] else {
                        panic!("one-hot q when sampling")
                    };
                    assert!(q.prob(tree.tokens[c]) > 0.0);
                    for &earlier in &kids[..i] {
                        assert_eq!(q.prob(tree.tokens[earlier]), 0.0, "sibling drawn twice");
                    }
                }
            }
        }
        assert!(widest > 1, "no node had two children in 20 trees");
    }
}
