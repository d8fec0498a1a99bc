//! Chat instructions for self-distillation: the tasks a chat model is asked (summarise, retell,
//! explain, continue or review code, answer about a passage, translate, solve a word problem,
//! follow up on its own answer, answer questions it wrote itself), made from text corpora and a
//! seeded generator. A drafter trained on the target's answers to these learns what the target
//! writes in a chat, without any benchmark's questions. Deterministic for a seed.

use ahead_core::Rng;

use crate::corpus;

/// One conversation to ask the target: user turns, answered one after the other (a later turn
/// follows the target's own answer to the one before).
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// What kind of task it is, for reports.
    pub kind: &'static str,
    pub turns: Vec<String>,
    /// The first turn asks the target to write a question; its answer is then asked as the
    /// next turn in a fresh chat (questions the target writes itself).
    pub self_question: bool,
}

/// Where instructions come from: prose (stories, articles) and code.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    pub prose: &'a [&'a str],
    pub code: &'a [&'a str],
}

const PROSE_TASKS: [(&str, &str); 8] = [
    (
        "summarize",
        "Summarize the following text in a few sentences.\n\n{}",
    ),
    ("summarize", "Summarize:\n{}"),
    ("retell", "Retell this story in your own words for a child.\n\n{}"),
    (
        "explain",
        "What is the main idea of this passage, and why does it matter?\n\n{}",
    ),
    ("continue", "Continue this story with one more paragraph.\n\n{}"),
    (
        "answer",
        "{}\n\nBased on the passage above, who are the characters and what do they want?",
    ),
    (
        "answer",
        "Read the text and answer: what happens at the end?\n\n{}",
    ),
    ("rewrite", "Rewrite this text in a more formal style.\n\n{}"),
];

const CODE_TASKS: [(&str, &str); 5] = [
    (
        "explain-code",
        "Explain what this Python code does.\n\n```python\n{}\n```",
    ),
    (
        "review-code",
        "Review this Python code and suggest improvements.\n\n```python\n{}\n```",
    ),
    (
        "document-code",
        "Write a docstring and comments for this code.\n\n```python\n{}\n```",
    ),
    (
        "continue-code",
        "Continue this Python code:\n\n```python\n{}\n```",
    ),
    (
        "test-code",
        "Write a unit test for this code.\n\n```python\n{}\n```",
    ),
];

const LANGUAGES: [&str; 4] = ["French", "German", "Spanish", "Italian"];

const FOLLOW_UPS: [&str; 6] = [
    "Can you make that shorter?",
    "Rewrite your previous answer as a bulleted list.",
    "Explain it again for a beginner.",
    "Give an example.",
    "What are the main points again?",
    "Now write it as a short poem.",
];

const TOPICS: [&str; 40] = [
    "photosynthesis",
    "the French Revolution",
    "black holes",
    "healthy sleep",
    "climate change",
    "the immune system",
    "machine learning",
    "the Roman Empire",
    "volcanoes",
    "personal finance",
    "the water cycle",
    "World War II",
    "electric cars",
    "the human heart",
    "prime numbers",
    "renewable energy",
    "ancient Egypt",
    "the internet",
    "vaccines",
    "the solar system",
    "writing a resume",
    "learning a language",
    "the stock market",
    "evolution",
    "earthquakes",
    "cooking pasta",
    "job interviews",
    "the Renaissance",
    "gravity",
    "recycling",
    "time management",
    "the printing press",
    "DNA",
    "public speaking",
    "democracy",
    "coral reefs",
    "probability",
    "the moon landing",
    "chess strategy",
    "friendship",
];

const WRITING: [&str; 8] = [
    "Write a short blog post about {}.",
    "Write a persuasive paragraph about why people should learn about {}.",
    "Explain {} to a ten-year-old.",
    "Give me five interesting facts about {}.",
    "Write a short dialogue between a teacher and a student about {}.",
    "What are the pros and cons of {}?",
    "Describe the history of {} in a few paragraphs.",
    "Write a haiku and then a short explanation about {}.",
];

/// Up to `n` instructions, of every kind in turn: prose tasks over passages of `sources.prose`,
/// code tasks over chunks of `sources.code`, translations of prose sentences, word problems,
/// writing tasks and self-written questions on a fixed list of topics, and two-turn follow-ups.
pub fn instructions(sources: Sources<'_>, n: usize, seed: u64) -> Vec<Instruction> {
    let mut rng = Rng::new(seed);
    let passages: Vec<&str> = sources
        .prose
        .iter()
        .flat_map(|t| corpus::paragraphs(t))
        .filter(|p| (200..2500).contains(&p.len()))
        .collect();
    let sentences: Vec<&str> = sources
        .prose
        .iter()
        .flat_map(|t| corpus::openings(t, 40, 240, 4 * n.max(1)))
        .collect();
    let code: Vec<&str> = sources.code.iter().flat_map(|t| code_chunks(t)).collect();
    let mut out = Vec::with_capacity(n);
    let pick = |rng: &mut Rng, len: usize| (rng.next_u64() % len.max(1) as u64) as usize;
    let fill = |template: &str, x: &str| template.replacen("{}", x, 1);
    let mut kind = 0usize;
    while out.len() < n {
        let instruction = match kind % 8 {
            0 | 1 if !passages.is_empty() => {
                let (name, task) = PROSE_TASKS[pick(&mut rng, PROSE_TASKS.len())];
                Some(single(name, fill(task, passages[pick(&mut rng, passages.len())])))
            }
            2 if !code.is_empty() => {
                let (name, task) = CODE_TASKS[pick(&mut rng, CODE_TASKS.len())];
                Some(single(name, fill(task, code[pick(&mut rng, code.len())])))
            }
            3 if !sentences.is_empty() => {
                let language = LANGUAGES[pick(&mut rng, LANGUAGES.len())];
                let s = sentences[pick(&mut rng, sentences.len())];
                Some(single("translate", format!("Translate English-{language}: {s}")))
            }
            4 => Some(single("math", word_problem(&mut rng))),
            5 => {
                let topic = TOPICS[pick(&mut rng, TOPICS.len())];
                Some(single(
                    "write",
                    fill(WRITING[pick(&mut rng, WRITING.len())], topic),
                ))
            }
            6 => {
                let topic = TOPICS[pick(&mut rng, TOPICS.len())];
                Some(Instruction {
                    kind: "self-question",
                    turns: vec![format!(
                        "Write one question that a curious student might ask about {topic}. Reply with the question only."
                    )],
                    self_question: true,
                })
            }
            7 => {
                let topic = TOPICS[pick(&mut rng, TOPICS.len())];
                let first = fill(WRITING[pick(&mut rng, WRITING.len())], topic);
                let second = FOLLOW_UPS[pick(&mut rng, FOLLOW_UPS.len())].to_string();
                Some(Instruction {
                    kind: "two-turn",
                    turns: vec![first, second],
                    self_question: false,
                })
            }
            _ => None,
        };
        kind += 1;
        out.extend(instruction);
        if kind > 8 * (n + 1) {
            break;
        }
    }
    out
}

fn single(kind: &'static str, text: String) -> Instruction {
    Instruction {
        kind,
        turns: vec![text],
        self_question: false,
    }
}

/// Top-level definitions of Python source (a `def` or `class` line to the next one), of 5 to 40
/// lines.
fn code_chunks(text: &str) -> Vec<&str> {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices("\ndef ").map(|(i, _)| i + 1))
        .chain(text.match_indices("\nclass ").map(|(i, _)| i + 1))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    starts
        .windows(2)
        .map(|w| text[w[0]..w[1]].trim_end())
        .filter(|c| {
            (5..=40).contains(&c.lines().count()) && (c.starts_with("def ") || c.starts_with("class "))
        })
        .collect()
}

/// A grade-school word problem with fresh numbers.
fn word_problem(rng: &mut Rng) -> String {
    let mut n = |lo: u64, hi: u64| lo + rng.next_u64() % (hi - lo + 1);
    let (a, b, c) = (n(2, 40), n(2, 12), n(1, 9));
    let names = ["Maria", "Tom", "Aisha", "Ken", "Lucy", "Omar", "Sofia", "Ben"];
    let name = names[(a % names.len() as u64) as usize];
    match n(0, 5) {
        0 => format!("{name} has {a} apples and buys {b} bags with {c} apples each. How many apples does {name} have now?"),
        1 => format!("A baker makes {a} loaves of bread a day for {b} days and sells all but {c} of them. How many loaves were sold?"),
        2 => format!("{name} reads {b} pages every day. The book has {} pages. How many days does it take to finish it?", a * b),
        3 => format!("A shop sells pens at ${c} each. {name} buys {b} pens and pays with a ${} bill. How much change does {name} get?", b * c + a),
        4 => format!("A train travels at {} miles per hour for {b} hours and then {a} more miles. How far does it travel in total?", a + 20),
        _ => format!("{name} saves ${a} a week. After {b} weeks {name} spends ${c} on a gift. How much money is left? Explain step by step."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORY: &str = "Once upon a time there was a little girl named Lily. She loved to play outside in the sun with her friend Tom, who lived next door. One day they found a big red ball in the park and played with it until the sun went down and their mothers called them home.\n\nThe next day it rained. Lily was sad because she could not go outside. Her mother gave her crayons and paper, and Lily drew a picture of the red ball and the park and Tom. When the rain stopped she ran to show Tom.";
    const CODE: &str = "import os\n\ndef add(a, b):\n    \"\"\"Add.\"\"\"\n    total = a + b\n    if total < 0:\n        return 0\n    return total\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n    def norm(self):\n        return (self.x ** 2 + self.y ** 2) ** 0.5\n";

    #[test]
    fn every_kind_is_made_deterministically() {
        let sources = Sources {
            prose: &[STORY],
            code: &[CODE],
        };
        let a = instructions(sources, 64, 7);
        assert_eq!(a.len(), 64);
        assert_eq!(a, instructions(sources, 64, 7));
        assert_ne!(a, instructions(sources, 64, 8));
        for kind in ["translate", "math", "write", "self-question", "two-turn"] {
            assert!(a.iter().any(|i| i.kind == kind), "{kind}");
        }
        assert!(a.iter().any(|i| i.turns[0].contains("```python\ndef add")));
        assert!(a.iter().any(|i| i.turns[0].contains("Lily")));
        assert!(a
            .iter()
            .filter(|i| i.kind == "two-turn")
            .all(|i| i.turns.len() == 2));
        assert!(a
            .iter()
            .filter(|i| i.self_question)
            .all(|i| i.kind == "self-question"));
    }

    #[test]
    fn without_corpora_the_generated_kinds_remain() {
        let a = instructions(Sources::default(), 10, 1);
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|i| !i.turns[0].is_empty()));
    }
}
