//! FR-Spec classifiers: a model restricted to a token subset scores exactly those tokens as the
//! full model does (row r is token subset[r]), its cost falls with the subset, and bad subsets
//! are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ahead_model::{load, ForwardInput, LoadOptions, ModelSource};

#[test]
fn a_restricted_classifier_scores_its_tokens_as_the_full_one() {
    let model = load(&ModelSource::Default, &LoadOptions::default())
        .unwrap()
        .model;
    let subset: Vec<u32> = vec![13, 2, 400, 7, 511, 100];
    let restricted = model.restricted_to(&subset).unwrap();
    assert_eq!(restricted.classifier_tokens(), Some(subset.as_slice()));
    assert_eq!(model.classifier_tokens(), None);
    assert!(restricted.weight_bytes() < model.weight_bytes());
    let ids = [1u32, 403, 407, 261, 378];
    let pos: Vec<usize> = (0..ids.len()).collect();
    let input = ForwardInput::causal(&ids, &pos);
    let full = model.forward(&input, &mut model.new_cache(8).unwrap()).unwrap();
    let part = restricted
        .forward(&input, &mut restricted.new_cache(8).unwrap())
        .unwrap();
    assert_eq!(part.vocab_size, subset.len());
    for r in 0..ids.len() {
        let want: Vec<f32> = subset.iter().map(|&t| full.row(r)[t as usize]).collect();
        // The stories260K classifier is f32: the same rows give the same dot products.
        assert_eq!(part.row(r), want.as_slice(), "row {r}");
    }
}

#[test]
fn bad_subsets_are_refused() {
    let model = load(&ModelSource::Default, &LoadOptions::default())
        .unwrap()
        .model;
    for (subset, why) in [
        (vec![], "at least one token"),
        (vec![3, 512], "outside the vocabulary"),
        (vec![3, 4, 3], "repeats token 3"),
    ] {
        let err = model.restricted_to(&subset).unwrap_err().to_string();
        assert!(err.contains(why), "{subset:?}: {err}");
    }
    let once = model.restricted_to(&[1, 2]).unwrap();
    assert!(once
        .restricted_to(&[1])
        .unwrap_err()
        .to_string()
        .contains("already"));
}
