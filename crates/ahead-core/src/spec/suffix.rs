//! Suffix decoding (Oliaro et al., 2024, "SuffixDecoding"; Snowflake's ArcticInference): a
//! suffix tree over text the model has produced counts every substring up to a depth. The
//! longest suffix of the context found in it names a node; the node's continuations, weighted
//! by how often each followed, grow a draft tree. One tree holds a request's own prompt and
//! output ([`SuffixTrie`]); a [`SuffixStore`] holds earlier requests' outputs, bounded in size
//! (oldest evicted first) and saved to a file between runs.

use std::collections::{HashMap, VecDeque};

use super::recycling::grow_tree;
use super::tree::TokenTree;

mod file;
pub use file::SuffixStoreError;

/// The longest substring the trie counts: the match and the draft after it together.
pub const SUFFIX_DEPTH: usize = 16;

/// A node: one substring, the `len` tokens on the path from the root, ending in `token`.
#[derive(Debug, Clone)]
struct Node {
    token: u32,
    parent: u32,
    /// Occurrences of the substring in what was added (and not removed).
    count: u32,
    /// Sum of the children's counts: the occurrences that have a next token.
    continued: u32,
    len: u32,
    first_child: u32,
    next_sibling: u32,
}

const NIL: u32 = u32::MAX;
const ROOT: u32 = 0;

/// Every substring of up to `depth` tokens of what was added, with its count: a suffix tree
/// cut at a depth, stored as a trie. Appending a token costs O(depth).
#[derive(Debug, Clone)]
pub struct SuffixTrie {
    depth: usize,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// (parent << 32 | token) -> child.
    edges: HashMap<u64, u32>,
    /// The nodes of the substrings ending at the last appended token, shorter than `depth`.
    open: Vec<u32>,
}

fn edge(parent: u32, token: u32) -> u64 {
    (parent as u64) << 32 | token as u64
}

impl SuffixTrie {
    pub fn new(depth: usize) -> Self {
        let root = Node {
            token: NIL,
            parent: NIL,
            count: 0,
            continued: 0,
            len: 0,
            first_child: NIL,
            next_sibling: NIL,
        };
        Self {
            depth: depth.max(2),
            nodes: vec![root],
            free: Vec::new(),
            edges: HashMap::new(),
            open: Vec::new(),
        }
    }

    /// Nodes in use (the root included): what its memory follows.
    pub fn len(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 1
    }

    /// Appends `token` to the text being added: every substring ending at it is counted.
    pub fn push(&mut self, token: u32) {
        let mut open = std::mem::take(&mut self.open);
        open.insert(0, ROOT);
        let mut next = Vec::with_capacity(open.len());
        for node in open {
            let child = self.child_or_new(node, token);
            self.nodes[child as usize].count += 1;
            self.nodes[node as usize].continued += 1;
            if (self.nodes[child as usize].len as usize) < self.depth {
                next.push(child);
            }
        }
        self.open = next;
    }

    /// Ends the text being added: the next `push` starts a new one.
    pub fn end_text(&mut self) {
        self.open.clear();
    }

    /// Adds a whole text.
    pub fn add(&mut self, text: &[u32]) {
        self.end_text();
        for &t in text {
            self.push(t);
        }
        self.end_text();
    }

    /// Takes back a text added before with [`SuffixTrie::add`]: its counts are subtracted and
    /// nodes no other text holds are freed.
    pub fn remove(&mut self, text: &[u32]) {
        self.end_text();
        let mut open: Vec<u32> = Vec::new();
        for &t in text {
            open.insert(0, ROOT);
            let mut next = Vec::with_capacity(open.len());
            for node in open {
                let Some(&child) = self.edges.get(&edge(node, t)) else {
                    continue;
                };
                let c = &mut self.nodes[child as usize];
                c.count = c.count.saturating_sub(1);
                let keep_open = (c.len as usize) < self.depth;
                let n = &mut self.nodes[node as usize];
                n.continued = n.continued.saturating_sub(1);
                if keep_open {
                    next.push(child);
                }
            }
            open = next;
        }
        self.prune(text);
    }

    /// Frees every node on `text`'s paths whose count fell to zero (its subtree is empty too:
    /// a substring occurs at least as often as its extensions).
    fn prune(&mut self, text: &[u32]) {
        for start in 0..text.len() {
            let mut node = ROOT;
            for &t in &text[start..(start + self.depth).min(text.len())] {
                let Some(&child) = self.edges.get(&edge(node, t)) else {
                    break;
                };
                if self.nodes[child as usize].count == 0 {
                    self.free_subtree(child);
                    break;
                }
                node = child;
            }
        }
    }

    fn free_subtree(&mut self, node: u32) {
        let (parent, token) = (self.nodes[node as usize].parent, self.nodes[node as usize].token);
        self.edges.remove(&edge(parent, token));
        // Unlink from the parent's children.
        let mut at = self.nodes[parent as usize].first_child;
        if at == node {
            self.nodes[parent as usize].first_child = self.nodes[node as usize].next_sibling;
        } else {
            while at != NIL {
                let next = self.nodes[at as usize].next_sibling;
                if next == node {
                    self.nodes[at as usize].next_sibling = self.nodes[node as usize].next_sibling;
                    break;
                }
                at = next;
            }
        }
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            let mut c = self.nodes[n as usize].first_child;
            while c != NIL {
                stack.push(c);
                let token = self.nodes[c as usize].token;
                self.edges.remove(&edge(n, token));
                c = self.nodes[c as usize].next_sibling;
            }
            self.nodes[n as usize].first_child = NIL;
            self.nodes[n as usize].count = 0;
            self.free.push(n);
        }
    }

    fn child_or_new(&mut self, parent: u32, token: u32) -> u32 {
        if let Some(&c) = self.edges.get(&edge(parent, token)) {
            return c;
        }
        let node = Node {
            token,
            parent,
            count: 0,
            continued: 0,
            len: self.nodes[parent as usize].len + 1,
            first_child: NIL,
            next_sibling: self.nodes[parent as usize].first_child,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.nodes[parent as usize].first_child = id;
        self.edges.insert(edge(parent, token), id);
        id
    }

    /// The node of `path` followed from `from`, if the trie holds it.
    fn walk(&self, from: u32, path: &[u32]) -> Option<u32> {
        path.iter()
            .try_fold(from, |node, &t| self.edges.get(&edge(node, t)).copied())
    }

    /// The longest suffix of `context` the trie holds with a continuation, shorter than its
    /// depth, as (node, length); `None` when not even the last token has been seen followed.
    pub fn longest_match(&self, context: &[u32]) -> Option<Match> {
        // A suffix that was followed before means every shorter one was: binary search on the
        // length. (In a request's own trie the whole context is held, but its last occurrence
        // has no continuation yet.)
        let followed = |len: usize| {
            self.walk(ROOT, &context[context.len() - len..])
                .filter(|&n| self.nodes[n as usize].continued > 0)
        };
        let (mut lo, mut hi) = (0, context.len().min(self.depth - 1));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if followed(mid).is_some() {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let node = followed(lo).filter(|_| lo > 0)?;
        Some(Match { node, len: lo })
    }

    /// The continuations after `path` from a matched node, with the share of the node's
    /// continued occurrences each took.
    pub fn continuations(&self, m: Match, path: &[u32]) -> Vec<(u32, f32)> {
        let Some(node) = self.walk(m.node, path) else {
            return Vec::new();
        };
        let n = &self.nodes[node as usize];
        if n.continued == 0 {
            return Vec::new();
        }
        let total = n.continued as f32;
        let mut out = Vec::new();
        let mut c = n.first_child;
        while c != NIL {
            let child = &self.nodes[c as usize];
            out.push((child.token, child.count as f32 / total));
            c = child.next_sibling;
        }
        out
    }

    /// Recounts every node from `texts` (what was added and not removed) and compares: for
    /// tests and for checking a store after concurrent use.
    pub fn is_consistent_with<'a>(&self, texts: impl IntoIterator<Item = &'a [u32]>) -> bool {
        let mut fresh = SuffixTrie::new(self.depth);
        for t in texts {
            fresh.add(t);
        }
        if fresh.len() != self.len() {
            return false;
        }
        // Every fresh node, found by its path, has the same counts here.
        (1..fresh.nodes.len()).all(|i| {
            let mut path = Vec::new();
            let mut at = i as u32;
            while at != ROOT {
                path.push(fresh.nodes[at as usize].token);
                at = fresh.nodes[at as usize].parent;
            }
            path.reverse();
            self.walk(ROOT, &path).is_some_and(|n| {
                let (a, b) = (&self.nodes[n as usize], &fresh.nodes[i]);
                a.count == b.count && a.continued == b.continued
            })
        })
    }
}

/// Where a context's longest held suffix ends, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    node: u32,
    pub len: usize,
}

/// Drafts a tree best-first from the matches of several tries (each with its match), merging
/// their candidates by the higher share: at most `k` nodes and at most `factor` times the
/// longest match (a long match predicts well, a one-token match barely), each scoring at least
/// `min_score`.
pub fn suffix_tree(
    last: u32,
    sources: &[(&SuffixTrie, Match)],
    k: usize,
    factor: f32,
    min_score: f32,
) -> TokenTree {
    let longest = sources.iter().map(|(_, m)| m.len).max().unwrap_or(0);
    let size = k.min((factor * longest as f32).ceil() as usize);
    grow_tree(last, size, min_score, |path| {
        let mut out: Vec<(u32, f32)> = Vec::new();
        for (trie, m) in sources {
            for (t, w) in trie.continuations(*m, &path[1..]) {
                match out.iter_mut().find(|(x, _)| *x == t) {
                    Some((_, v)) => *v = v.max(w),
                    None => out.push((t, w)),
                }
            }
        }
        out
    })
}

/// Earlier requests' outputs in a [`SuffixTrie`], at most `max_nodes` nodes: the oldest texts
/// are evicted first.
#[derive(Debug, Clone)]
pub struct SuffixStore {
    trie: SuffixTrie,
    texts: VecDeque<Vec<u32>>,
    max_nodes: usize,
    vocab_size: usize,
}

impl SuffixStore {
    pub fn new(vocab_size: usize, max_nodes: usize) -> Self {
        Self {
            trie: SuffixTrie::new(SUFFIX_DEPTH),
            texts: VecDeque::new(),
            max_nodes: max_nodes.max(2),
            vocab_size,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn trie(&self) -> &SuffixTrie {
        &self.trie
    }

    /// The texts held, oldest first.
    pub fn texts(&self) -> impl Iterator<Item = &[u32]> {
        self.texts.iter().map(Vec::as_slice)
    }

    /// Learns `text` (tokens outside the vocabulary are dropped with what follows them), then
    /// evicts the oldest texts while over the node budget.
    pub fn insert(&mut self, text: &[u32]) {
        let end = text
            .iter()
            .position(|&t| t as usize >= self.vocab_size)
            .unwrap_or(text.len());
        if end == 0 {
            return;
        }
        self.trie.add(&text[..end]);
        self.texts.push_back(text[..end].to_vec());
        while self.trie.len() > self.max_nodes && self.texts.len() > 1 {
            if let Some(old) = self.texts.pop_front() {
                self.trie.remove(&old);
            }
        }
    }

    /// Whether the trie's counts are exactly those of the texts held.
    pub fn is_consistent(&self) -> bool {
        self.trie.is_consistent_with(self.texts())
    }
}

#[cfg(test)]
mod tests;
