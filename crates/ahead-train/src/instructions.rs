//! Chat instructions for self-distillation: the tasks a chat model is asked (summarise, retell,
//! explain, continue or review code, answer about a passage, translate, solve a word problem,
//! follow up on its own answer, answer questions it wrote itself, answer from documents), made
//! from text corpora and a seeded generator. A drafter trained on the target's answers to these
//! learns what the target writes in a chat, without any benchmark's questions. Deterministic for
//! a seed; a kind of source left empty adds no kind of instruction, so instructions made without
//! the later kinds (foreign text, documents) are the ones made before those existed.

use ahead_core::Rng;

use crate::corpus;

/// One conversation to ask the target: user turns, answered one after the other (a later turn
/// follows the target's own answer to the one before).
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// What kind of task it is, for reports.
    pub kind: &'static str,
    pub turns: Vec<String>,
    /// The first turn asks the target to write a question; its answer is then asked in a
    /// fresh chat, as this template with `{}` replaced by the question (questions the target
    /// writes itself, bare or beside the documents they were written from).
    pub own_question: Option<String>,
}

/// Where instructions come from: prose (stories, articles), code, text in other languages to
/// translate into English, and documents (news, encyclopedia articles) to answer from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    pub prose: &'a [&'a str],
    pub code: &'a [&'a str],
    /// Each text with the name of its language.
    pub foreign: &'a [(&'a str, &'a str)],
    pub documents: &'a [&'a str],
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

const DOCUMENT_TASKS: [(&str, &str); 6] = [
    ("summarize", "Summarize this article in three sentences.\n\n{}"),
    ("summarize", "{}\n\nWrite a short summary of the text above."),
    (
        "headline",
        "Write a headline and a one-paragraph summary for this news story.\n\n{}",
    ),
    ("key-facts", "List the key facts in this text.\n\n{}"),
    ("explain", "Explain this text in simple words.\n\n{}"),
    (
        "answer",
        "{}\n\nWho or what is this text about, and what happened?",
    ),
];

const FROM_FOREIGN: [&str; 3] = [
    "Translate {language}-English: {}",
    "Translate this {language} text into English.\n\n{}",
    "What does this mean in English?\n{}",
];

/// A question the target writes about a document, then answers with the document beside it.
const DOCUMENT_QUESTION: &str =
    "Read this text and write one question that it answers. Reply with the question only.\n\n{}";

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

/// What the n-th instruction is: the cycle of kinds, each kind of source adding its own.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Prose,
    Code,
    Translate,
    Math,
    Write,
    SelfQuestion,
    TwoTurn,
    FromForeign,
    Document,
    DocumentQuestion,
}

/// Up to `n` instructions, of every kind in turn: prose tasks over passages of `sources.prose`,
/// code tasks over chunks of `sources.code`, translations of prose sentences, word problems,
/// writing tasks and self-written questions on a fixed list of topics, two-turn follow-ups; and
/// where given, translations of `sources.foreign` into English, tasks over `sources.documents`
/// and questions the target writes about a document and answers beside one to three of them.
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
    let foreign: Vec<(&str, &str)> = sources
        .foreign
        .iter()
        .flat_map(|&(language, t)| corpus::paragraphs(t).map(move |p| (language, p)))
        .collect();
    let documents: Vec<&str> = sources
        .documents
        .iter()
        .flat_map(|t| corpus::paragraphs(t))
        .filter(|p| (200..4000).contains(&p.len()))
        .collect();
    use Kind::*;
    let mut cycle = vec![Prose, Prose, Code, Translate, Math, Write, SelfQuestion, TwoTurn];
    if !foreign.is_empty() {
        cycle.push(FromForeign);
    }
    if !documents.is_empty() {
        cycle.extend([Document, DocumentQuestion, DocumentQuestion]);
    }
    let mut out = Vec::with_capacity(n);
    let pick = |rng: &mut Rng, len: usize| (rng.next_u64() % len.max(1) as u64) as usize;
    let fill = |template: &str, x: &str| template.replacen("{}", x, 1);
    let mut i = 0usize;
    while out.len() < n {
        let instruction = match cycle[i % cycle.len()] {
            Prose if !passages.is_empty() => {
                let (name, task) = PROSE_TASKS[pick(&mut rng, PROSE_TASKS.len())];
                Some(single(name, fill(task, passages[pick(&mut rng, passages.len())])))
            }
            Code if !code.is_empty() => {
                let (name, task) = CODE_TASKS[pick(&mut rng, CODE_TASKS.len())];
                Some(single(name, fill(task, code[pick(&mut rng, code.len())])))
            }
            Translate if !sentences.is_empty() => {
                let language = LANGUAGES[pick(&mut rng, LANGUAGES.len())];
                let s = sentences[pick(&mut rng, sentences.len())];
                Some(single("translate", format!("Translate English-{language}: {s}")))
            }
            Math => Some(single("math", word_problem(&mut rng))),
            Write => {
                let topic = TOPICS[pick(&mut rng, TOPICS.len())];
                Some(single(
                    "write",
                    fill(WRITING[pick(&mut rng, WRITING.len())], topic),
                ))
            }
            SelfQuestion => {
                let topic = TOPICS[pick(&mut rng, TOPICS.len())];
                Some(Instruction {
                    kind: "self-question",
                    turns: vec![format!(
                        "Write one question that a curious student might ask about {topic}. Reply with the question only."
                    )],
                    own_question: Some("{}".into()),
                })
            }
            TwoTurn => {
                let topic = TOPICS[pick(&mut rng, TOPICS.len())];
                let first = fill(WRITING[pick(&mut rng, WRITING.len())], topic);
                let second = FOLLOW_UPS[pick(&mut rng, FOLLOW_UPS.len())].to_string();
                Some(Instruction {
                    kind: "two-turn",
                    turns: vec![first, second],
                    own_question: None,
                })
            }
            FromForeign => {
                let (language, text) = foreign[pick(&mut rng, foreign.len())];
                let template = FROM_FOREIGN[pick(&mut rng, FROM_FOREIGN.len())];
                Some(single(
                    "translate-to-english",
                    fill(&template.replace("{language}", language), text),
                ))
            }
            Document => {
                let (name, task) = DOCUMENT_TASKS[pick(&mut rng, DOCUMENT_TASKS.len())];
                Some(single(
                    name,
                    fill(task, documents[pick(&mut rng, documents.len())]),
                ))
            }
            DocumentQuestion => {
                let about = documents[pick(&mut rng, documents.len())];
                Some(Instruction {
                    kind: "document-question",
                    turns: vec![fill(DOCUMENT_QUESTION, about)],
                    own_question: Some(beside_documents(&mut rng, about, &documents)),
                })
            }
            _ => None,
        };
        i += 1;
        out.extend(instruction);
        if i > cycle.len() * (n + 1) {
            break;
        }
    }
    out
}

/// The template that asks a question beside the document it was written from and up to two
/// others, in a random order (retrieval-augmented answering: not every document helps).
fn beside_documents(rng: &mut Rng, about: &str, documents: &[&str]) -> String {
    let extra = (rng.next_u64() % 3) as usize;
    let mut shown = vec![about];
    for _ in 0..extra {
        shown.push(documents[(rng.next_u64() % documents.len() as u64) as usize]);
    }
    let first = (rng.next_u64() % shown.len() as u64) as usize;
    shown.swap(0, first);
    let mut text = String::from("Answer the question using the documents below.\n\n");
    for (k, d) in shown.iter().enumerate() {
        // The documents' own braces must survive the question's `{}` fill.
        text.push_str(&format!(
            "Document {}: {}\n\n",
            k + 1,
            d.replace('{', "(").replace('}', ")")
        ));
    }
    text.push_str("Question: {}");
    text
}

fn single(kind: &'static str, text: String) -> Instruction {
    Instruction {
        kind,
        turns: vec![text],
        own_question: None,
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
            ..Sources::default()
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
            .filter(|i| i.own_question.is_some())
            .all(|i| i.kind == "self-question"));
    }

    #[test]
    fn foreign_text_and_documents_add_their_own_kinds() {
        const GERMAN: &str = "Der Hund schläft im Garten, weil die Sonne scheint und es warm ist.";
        const NEWS: &str = "The city council voted on Tuesday to build a new bridge over the river, after years of debate about the cost and the traffic it would bring to the old town. Work is due to start next spring {and} to take two years.";
        let base = Sources {
            prose: &[STORY],
            code: &[CODE],
            ..Sources::default()
        };
        let foreign = [("German", GERMAN)];
        let wider = Sources {
            foreign: &foreign,
            documents: &[NEWS],
            ..base
        };
        let a = instructions(wider, 120, 3);
        assert_eq!(a, instructions(wider, 120, 3));
        let translated = a.iter().find(|i| i.kind == "translate-to-english").unwrap();
        assert!(translated.turns[0].contains(GERMAN));
        assert!(a
            .iter()
            .any(|i| i.kind == "summarize" && i.turns[0].contains("bridge")));
        let asked = a.iter().find(|i| i.kind == "document-question").unwrap();
        assert!(asked.turns[0].contains(NEWS));
        let template = asked.own_question.as_deref().unwrap();
        assert!(template.contains("bridge") && template.ends_with("Question: {}"));
        assert_eq!(
            template.matches("{}").count(),
            1,
            "the document's braces are escaped"
        );
        // Without them, no instruction of theirs.
        assert!(instructions(base, 120, 3)
            .iter()
            .all(|i| !i.turns[0].contains("bridge") && !i.turns[0].contains(GERMAN)));
    }

    #[test]
    fn without_corpora_the_generated_kinds_remain() {
        let a = instructions(Sources::default(), 10, 1);
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|i| !i.turns[0].is_empty()));
    }
}
