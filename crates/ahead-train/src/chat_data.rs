//! Self-distillation data: the target's own answers to chat instructions, as token ids through
//! its chat template, one JSON record a line. Written once by `ahead train chat-data` (the
//! expensive part: generating), read by every trainer (`train ngram|medusa --data`).

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// One answered turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// The instruction's kind (`summarize`, `math`, ...).
    pub kind: String,
    /// The chat up to this turn, rendered and tokenized through the template, generation
    /// prompt included.
    pub prompt_ids: Vec<u32>,
    /// The target's greedy answer (ending with its end-of-turn token when it ended).
    pub answer_ids: Vec<u32>,
}

impl ChatRecord {
    /// Prompt and answer as one sequence, and where the answer starts.
    pub fn sequence(&self) -> (Vec<u32>, usize) {
        let mut seq = self.prompt_ids.clone();
        seq.extend(&self.answer_ids);
        (seq, self.prompt_ids.len())
    }
}

/// The records to train on and the last `share` of them (at least one), held out.
pub fn split_held_out(records: &[ChatRecord], share: f64) -> Result<(&[ChatRecord], &[ChatRecord])> {
    let held = ((records.len() as f64 * share).round() as usize).max(1);
    if held >= records.len() {
        return Err(TrainError::Data(format!(
            "{} records leave none to train on after holding out {held}",
            records.len()
        )));
    }
    Ok(records.split_at(records.len() - held))
}

/// Writes `records` as JSON lines.
pub fn write(path: &Path, records: &[ChatRecord]) -> Result<()> {
    let io = |e: std::io::Error| TrainError::Data(format!("writing {}: {e}", path.display()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for r in records {
        let line = serde_json::to_string(r).map_err(|e| TrainError::Data(e.to_string()))?;
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Reads a file `write` wrote; every id must be below `vocab_size` (the data belongs to one
/// target's tokenizer).
pub fn read(path: &Path, vocab_size: usize) -> Result<Vec<ChatRecord>> {
    let file = std::fs::File::open(path)
        .map_err(|e| TrainError::Data(format!("reading {}: {e}", path.display())))?;
    let mut records = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TrainError::Data(format!("reading {}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: ChatRecord = serde_json::from_str(&line)
            .map_err(|e| TrainError::Data(format!("{} line {}: {e}", path.display(), n + 1)))?;
        if let Some(id) = r
            .prompt_ids
            .iter()
            .chain(&r.answer_ids)
            .find(|&&id| id as usize >= vocab_size)
        {
            return Err(TrainError::Data(format!(
                "{} line {}: token id {id} is outside the model's vocabulary of {vocab_size}: data made with another tokenizer?",
                path.display(),
                n + 1
            )));
        }
        records.push(r);
    }
    if records.is_empty() {
        return Err(TrainError::Data(format!("{} holds no records", path.display())));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let records = vec![ChatRecord {
            kind: "math".into(),
            prompt_ids: vec![1, 2, 3],
            answer_ids: vec![4, 5],
        }];
        write(&path, &records).unwrap();
        assert_eq!(read(&path, 6).unwrap(), records);
        assert_eq!(records[0].sequence(), (vec![1, 2, 3, 4, 5], 3));
        let err = read(&path, 5).unwrap_err().to_string();
        assert!(err.contains("token id 5") && err.contains("line 1"), "{err}");
        std::fs::write(&path, "{\"kind\": 1}\n").unwrap();
        assert!(read(&path, 6).unwrap_err().to_string().contains("line 1"));
        std::fs::write(&path, "\n").unwrap();
        assert!(read(&path, 6).unwrap_err().to_string().contains("no records"));
    }
}
