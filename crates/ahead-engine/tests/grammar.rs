//! Structured output: the grammar constrains the target at every verify row, so the output
//! matches it and every method gives plain decoding's constrained tokens (greedy) and
//! distribution (sampled: chi-square over fixed seeds, alpha = 1e-4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::{Grammar, Method};

fn constrained(method: Method, k: Option<usize>, grammar: Grammar, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        grammar: Some(grammar),
        ignore_eos: false,
        ..method_params(method, k, SamplingParams::greedy(), 0, max_tokens)
    }
}

#[test]
fn output_matches_the_grammar_and_every_method_agrees() {
    let e = engine();
    let prompt = Prompt::from("Lily and Ben went to the park. Lily and Ben went");
    let grammar = Grammar::Regex("( [a-z]+){3,12}\\.".into());
    let want = gen(
        e,
        &prompt,
        &constrained(Method::Vanilla, None, grammar.clone(), 100),
    );
    let text = want.text.clone();
    assert!(text.ends_with('.'), "{text:?}");
    assert!(
        text.trim_end_matches('.')
            .split(' ')
            .skip(1)
            .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase())),
        "{text:?}"
    );
    assert_eq!(
        want.finish_reason,
        FinishReason::Stop,
        "the grammar's end ends the text"
    );
    for method in TOY_METHODS {
        for k in [None, Some(4)] {
            let got = gen(e, &prompt, &constrained(method, k, grammar.clone(), 100));
            assert_eq!(got.token_ids, want.token_ids, "{method:?} k={k:?}");
        }
    }
}

#[test]
fn a_json_schema_is_followed() {
    let e = engine();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"],
        "additionalProperties": false
    });
    let g = gen(
        e,
        &Prompt::from("Once upon a time"),
        &constrained(Method::PromptLookup, Some(4), Grammar::JsonSchema(schema), 120),
    );
    let v: serde_json::Value =
        serde_json::from_str(&g.text).unwrap_or_else(|err| panic!("{err}: {:?}", g.text));
    assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
}

#[test]
fn sampled_tokens_follow_the_constrained_target() {
    use ahead_testutil::chi_square_critical as critical;
    let e = engine();
    let prompt = Prompt::from("Lily and Ben went to the park. Lily and Ben went");
    let grammar = Grammar::Regex("( [a-z]+){3,12}\\.".into());
    let sampling = two_samplers()[0].clone();
    let run = |method| {
        sample_two_tokens(e, &prompt, 3000, |seed| GenerateParams {
            grammar: Some(grammar.clone()),
            ..method_params(method, Some(3), sampling.clone(), seed, 2)
        })
    };
    // The constrained target sampled plainly, and with prompt lookup's drafts (which the
    // grammar prunes where they break it): one distribution of first tokens (a two-sample
    // chi-square test of homogeneity).
    let plain = run(Method::Vanilla);
    let drafted = run(Method::PromptLookup);
    assert!(drafted.drafted > 0);
    let (na, nb) = (3000.0, 3000.0);
    let mut stat = 0.0;
    let mut cells = 0;
    for (&a, &b) in plain.first.iter().zip(&drafted.first) {
        if a + b > 0 {
            let (a, b) = (a as f64, b as f64);
            stat += (a * nb - b * na).powi(2) / (na * nb * (a + b));
            cells += 1;
        }
    }
    assert!(cells > 3, "a real choice of first tokens");
    assert!(stat < critical(cells - 1), "chi2 {stat}, dof {}", cells - 1);
}

#[test]
fn a_bad_grammar_is_a_clear_error() {
    let err = engine()
        .generate_one(
            &Prompt::from("Hi"),
            &constrained(Method::Vanilla, None, Grammar::Regex("(unclosed".into()), 8),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("grammar"), "{err}");
}
