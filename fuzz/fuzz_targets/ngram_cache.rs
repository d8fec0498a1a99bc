//! F4 `ngram_cache`: raw bytes -> `NgramCache::from_bytes`. No panic or OOM; whatever parses
//! re-serializes to the same bytes, and lookups of any history return tokens inside the
//! declared vocabulary with a confidence in [0, 1] and a context no longer than max_n.
#![no_main]

use ahead_core::spec::NgramCache;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cache) = NgramCache::from_bytes(data) else {
        return;
    };
    assert_eq!(cache.to_bytes(), data, "the round trip changed the bytes");
    // Histories made of the input's own bytes, as tokens of the declared vocabulary.
    let vocab = cache.vocab_size().max(1) as u32;
    let history: Vec<u32> = data.iter().take(256).map(|&b| u32::from(b) % vocab).collect();
    for end in 0..=history.len() {
        if let Some(hit) = cache.lookup(&history[..end]) {
            assert!((hit.token as usize) < cache.vocab_size());
            assert!((0.0..=1.0).contains(&hit.confidence));
            assert!(hit.n >= 1 && hit.n <= cache.max_n().min(end));
        }
    }
});
