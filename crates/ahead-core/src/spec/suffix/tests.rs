use super::*;
use crate::Rng;

fn shares(trie: &SuffixTrie, context: &[u32], path: &[u32]) -> Vec<(u32, f32)> {
    let m = trie.longest_match(context).expect("a match");
    let mut c = trie.continuations(m, path);
    c.sort_by_key(|&(t, _)| t);
    c
}

#[test]
fn continuations_are_shares_of_what_followed_the_longest_match() {
    let mut trie = SuffixTrie::new(8);
    trie.add(&[1, 2, 1, 2, 3, 1, 2, 1]);
    // "1 2" was followed by 1 twice and by 3 once.
    assert_eq!(
        shares(&trie, &[9, 1, 2], &[]),
        vec![(1, 2.0 / 3.0), (3, 1.0 / 3.0)]
    );
    // "2 1 2" only by 3; "1" by 2 three times out of three.
    assert_eq!(shares(&trie, &[2, 1, 2], &[]), vec![(3, 1.0)]);
    assert_eq!(trie.longest_match(&[2, 1, 2]).unwrap().len, 3);
    assert_eq!(shares(&trie, &[7, 1], &[]), vec![(2, 1.0)]);
    // Along a drafted path: after "1 2" then 3 comes 1.
    assert_eq!(shares(&trie, &[1, 2], &[3]), vec![(1, 1.0)]);
    assert!(trie.longest_match(&[5, 6]).is_none(), "never seen");
}

#[test]
fn the_last_occurrence_of_a_requests_own_text_is_not_a_match() {
    let mut trie = SuffixTrie::new(8);
    let text = [4, 5, 6, 4, 5];
    for t in text {
        trie.push(t);
    }
    // "4 5" at the end has no continuation yet; its earlier occurrence was followed by 6.
    let m = trie.longest_match(&text).unwrap();
    assert_eq!(m.len, 2);
    assert_eq!(trie.continuations(m, &[]), vec![(6, 1.0)]);
}

#[test]
fn pushing_token_by_token_counts_what_adding_counts() {
    let text: Vec<u32> = (0..60).map(|i| (i * 7 % 5) as u32).collect();
    let mut pushed = SuffixTrie::new(5);
    for &t in &text {
        pushed.push(t);
    }
    pushed.end_text();
    assert!(pushed.is_consistent_with([text.as_slice()]));
    let mut added = SuffixTrie::new(5);
    added.add(&text);
    assert_eq!(pushed.len(), added.len());
}

#[test]
fn removing_a_text_leaves_exactly_the_others() {
    let (a, b): (Vec<u32>, Vec<u32>) = (
        (0..40).map(|i| i % 6).collect(),
        (0..30).map(|i| i % 4 + 2).collect(),
    );
    let mut trie = SuffixTrie::new(6);
    trie.add(&a);
    trie.add(&b);
    trie.remove(&a);
    assert!(trie.is_consistent_with([b.as_slice()]));
    trie.remove(&b);
    assert!(trie.is_empty());
    // Freed nodes are reused.
    trie.add(&a);
    assert!(trie.is_consistent_with([a.as_slice()]));
}

#[test]
fn a_store_evicts_its_oldest_texts_to_stay_in_budget_and_stays_consistent() {
    let mut rng = Rng::new(3);
    let mut store = SuffixStore::new(50, 2_000);
    for _ in 0..60 {
        let len = 20 + (rng.next_u64() % 60) as usize;
        let text: Vec<u32> = (0..len).map(|_| (rng.next_u64() % 50) as u32).collect();
        store.insert(&text);
        assert!(store.trie().len() <= 2_000 || store.texts().count() == 1);
    }
    assert!(store.texts().count() < 60, "nothing was evicted");
    assert!(store.is_consistent());
}

#[test]
fn a_store_drops_tokens_outside_its_vocabulary() {
    let mut store = SuffixStore::new(10, 1_000);
    store.insert(&[1, 2, 3, 99, 4]);
    store.insert(&[77]);
    let texts: Vec<&[u32]> = store.texts().collect();
    assert_eq!(texts, vec![&[1u32, 2, 3][..]]);
}

#[test]
fn drafts_grow_with_the_match_and_merge_every_source() {
    let mut local = SuffixTrie::new(8);
    local.add(&[1, 2, 3, 4, 5, 6]);
    let mut global = SuffixTrie::new(8);
    global.add(&[9, 2, 7, 7]);
    // A one-token match drafts one node at factor 1; its candidates come from both tries.
    let ctx = [2];
    let sources = [
        (&local, local.longest_match(&ctx).unwrap()),
        (&global, global.longest_match(&ctx).unwrap()),
    ];
    let one = suffix_tree(2, &sources, 8, 1.0, 0.0);
    assert_eq!(one.len(), 1);
    let more = suffix_tree(2, &sources, 8, 4.0, 0.0);
    assert_eq!(more.len(), 4);
    let mut roots: Vec<u32> = more.children(None).iter().map(|&i| more.tokens[i]).collect();
    roots.sort();
    assert_eq!(roots, vec![3, 7]);
    // A three-token match drafts the local continuation, three deep.
    let ctx = [1, 2, 3];
    let m = local.longest_match(&ctx).unwrap();
    assert_eq!(m.len, 3);
    let chain = suffix_tree(3, &[(&local, m)], 8, 1.0, 0.0);
    assert_eq!(chain.tokens, vec![4, 5, 6]);
    assert_eq!(chain.parents, vec![None, Some(0), Some(1)]);
}

#[test]
fn a_store_survives_its_file_and_a_damaged_file_is_a_clear_error() {
    let mut store = SuffixStore::new(50, 10_000);
    store.insert(&[1, 2, 3, 4]);
    store.insert(&[5, 6, 7]);
    let bytes = store.to_bytes();
    let back = SuffixStore::from_bytes(&bytes, 50, 10_000).unwrap();
    assert_eq!(
        back.texts().collect::<Vec<_>>(),
        store.texts().collect::<Vec<_>>()
    );
    assert!(back.is_consistent());
    // Every truncation, and a flipped byte anywhere, is refused or read: never a panic.
    for cut in 0..bytes.len() {
        assert!(
            SuffixStore::from_bytes(&bytes[..cut], 50, 10_000).is_err(),
            "cut {cut}"
        );
    }
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0xA5;
        let _ = SuffixStore::from_bytes(&bad, 50, 10_000);
    }
    let err = |b: &[u8], vocab| SuffixStore::from_bytes(b, vocab, 10_000).unwrap_err();
    assert_eq!(
        err(&bytes, 51),
        SuffixStoreError::Vocabulary {
            found: 50,
            expected: 51
        }
    );
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(err(&bad, 50), SuffixStoreError::BadMagic);
    let mut bad = bytes.clone();
    bad.push(0);
    assert!(err(&bad, 50).to_string().contains("after the last text"));
    let mut bad = bytes.clone();
    bad[HEADER_FOR_TESTS + 4] = 49 + 1; // the first text's first token: 50, outside
    assert!(err(&bad, 50).to_string().contains("outside"));
    let mut bad = bytes;
    bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(&bad, 50).to_string().contains("texts in"));
}

/// The header's length, as the file layout documents it.
const HEADER_FOR_TESTS: usize = 24;
