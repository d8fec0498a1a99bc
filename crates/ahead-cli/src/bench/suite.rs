//! `ahead bench --suite FILE.jsonl`: questions in Spec-Bench's format (`question_id`,
//! `category`, `turns`) as a workload. Each turn is a chat through the model's template; a
//! question's later turns follow vanilla's own answers to the earlier ones, generated once
//! before measuring, so that every method sees the same prompts. MT-bench's eight categories
//! are reported together as `multi_turn`, as Spec-Bench does.

use std::collections::BTreeMap;
use std::path::Path;

use ahead_engine::{Engine, GenerateParams, Method, Prompt, SamplingParams};
use ahead_model::tokenizer::ChatMessage;
use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use super::methods::{progress, Item, Workload};

/// The flags that choose a question file (`bench --suite`, `tune --suite`).
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// Questions in Spec-Bench's format (JSON lines: `question_id`, `category`, `turns`), each
    /// through the model's chat template, instead of the embedded prompt suite.
    #[arg(long)]
    pub suite: Option<std::path::PathBuf>,
    /// With --suite: at most this many questions per group, evenly spaced over its questions.
    #[arg(long, requires = "suite")]
    pub limit_per_category: Option<usize>,
    /// A Jinja chat template to use instead of the model's own (--suite).
    #[arg(long, requires = "suite")]
    pub chat_template: Option<std::path::PathBuf>,
}

/// Spec-Bench's groups, in its table's order.
pub(crate) const GROUPS: [&str; 6] = [
    "multi_turn",
    "translation",
    "summarization",
    "qa",
    "math_reasoning",
    "rag",
];

/// MT-bench's categories, which form the `multi_turn` group.
const MT_BENCH: [&str; 8] = [
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
];

/// One line of the question file.
#[derive(Debug, Deserialize)]
struct Question {
    question_id: serde_json::Value,
    category: String,
    turns: Vec<String>,
}

impl Question {
    fn id(&self) -> String {
        match &self.question_id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// The group a category is reported in.
fn group_of(category: &str) -> Option<&'static str> {
    if MT_BENCH.contains(&category) {
        return Some("multi_turn");
    }
    GROUPS
        .iter()
        .copied()
        .find(|g| *g == category && *g != "multi_turn")
}

/// Reads a question file: one JSON object a line (blank lines skipped).
fn read(path: &Path) -> Result<Vec<Question>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut questions = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: Question = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a question (question_id, category, turns)",
                path.display(),
                n + 1
            )
        })?;
        ensure!(
            !q.turns.is_empty(),
            "{} line {}: question {} has no turns",
            path.display(),
            n + 1,
            q.id()
        );
        if group_of(&q.category).is_none() {
            bail!(
                "{} line {}: unknown category {:?}; Spec-Bench's are {} and MT-bench's {}",
                path.display(),
                n + 1,
                q.category,
                GROUPS[1..].join(", "),
                MT_BENCH.join(", ")
            );
        }
        questions.push(q);
    }
    ensure!(!questions.is_empty(), "{} holds no questions", path.display());
    Ok(questions)
}

/// At most `limit` of `all`, evenly spaced (so that MT-bench's categories all appear).
fn spread<T>(all: Vec<T>, limit: Option<usize>) -> Vec<T> {
    let len = all.len();
    let Some(limit) = limit.filter(|&l| l < len) else {
        return all;
    };
    let keep: Vec<usize> = (0..limit).map(|i| i * len / limit).collect();
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, q)| q)
        .collect()
}

/// The workload of a question file: every turn of every question (at most `limit` questions
/// per group) as a chat prompt, groups in Spec-Bench's order. Generation stops at the end of
/// the answer (or `max_tokens`).
pub(crate) fn workload(
    engine: &Engine,
    path: &Path,
    limit: Option<usize>,
    max_tokens: usize,
    sampling: SamplingParams,
    seed: u64,
) -> Result<Workload> {
    ensure!(limit != Some(0), "--limit-per-category must be at least 1");
    let mut by_group: BTreeMap<&str, Vec<Question>> = BTreeMap::new();
    for q in read(path)? {
        let group = group_of(&q.category).unwrap_or("multi_turn");
        by_group.entry(group).or_default().push(q);
    }
    let params = GenerateParams {
        max_tokens,
        ignore_eos: false,
        sampling,
        seed,
        ..GenerateParams::default()
    };
    let vanilla = GenerateParams {
        method: Method::Vanilla,
        ..params.clone()
    };
    let mut groups = Vec::new();
    let mut items = Vec::new();
    let selected: Vec<(&str, Vec<Question>)> = GROUPS
        .iter()
        .filter_map(|g| by_group.remove(g).map(|qs| (*g, spread(qs, limit))))
        .collect();
    let later_turns: usize = selected
        .iter()
        .flat_map(|(_, qs)| qs)
        .map(|q| q.turns.len() - 1)
        .sum();
    let bar = progress(later_turns);
    bar.set_message("vanilla's answers to the first turns");
    for (group, questions) in selected {
        groups.push(group.to_string());
        for q in questions {
            let mut messages = Vec::new();
            let mut previous: Option<Prompt> = None;
            for (t, turn) in q.turns.iter().enumerate() {
                if let Some(prompt) = &previous {
                    // This turn follows vanilla's own answer to the one before.
                    let answer = engine
                        .generate_one(prompt, &vanilla, &mut |_| {})
                        .with_context(|| format!("vanilla's answer to question {} turn {t}", q.id()))?;
                    messages.push(ChatMessage::new("assistant", answer.text));
                    bar.inc(1);
                }
                messages.push(ChatMessage::new("user", turn.clone()));
                let chat = engine.chat_prompt(&messages, true).with_context(|| {
                    format!("question {} turn {} through the chat template", q.id(), t + 1)
                })?;
                let prompt = Prompt::Ids(chat.ids);
                items.push(Item {
                    group: group.to_string(),
                    label: format!("question {} turn {}", q.id(), t + 1),
                    prompt: prompt.clone(),
                });
                previous = Some(prompt);
            }
        }
    }
    bar.finish_and_clear();
    Ok(Workload {
        items,
        groups,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_form_spec_bench_groups() {
        assert_eq!(group_of("writing"), Some("multi_turn"));
        assert_eq!(group_of("humanities"), Some("multi_turn"));
        assert_eq!(group_of("rag"), Some("rag"));
        assert_eq!(group_of("multi_turn"), None);
        assert_eq!(group_of("poetry"), None);
    }

    #[test]
    fn a_limit_keeps_evenly_spaced_questions() {
        assert_eq!(spread((0..40).collect(), Some(4)), [0, 10, 20, 30]);
        assert_eq!(spread((0..3).collect(), Some(5)), [0, 1, 2]);
        assert_eq!(spread((0..3).collect::<Vec<_>>(), None), [0, 1, 2]);
    }
}
