//! Medusa heads in the original project's layout: a checkpoint written by hand in that layout
//! loads and computes what the paper's formula gives; heads saved by ahead load back identically;
//! pickles and malformed folders are refused with clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;

use ahead_model::medusa::MedusaHeads;
use safetensors::tensor::{Dtype, TensorView};

const DIM: usize = 4;
const VOCAB: usize = 6;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7 + seed * 13) % 11) as f32 - 5.0) / 10.0)
        .collect()
}

/// Two heads of one block each, written exactly as Medusa's `medusa_lm_head.safetensors`.
fn write_original(dir: &Path, heads: usize, layers: usize) {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let le = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for h in 0..heads {
        for l in 0..layers {
            tensors.push((
                format!("{h}.{l}.linear.weight"),
                vec![DIM, DIM],
                le(values(DIM * DIM, h + l)),
            ));
            tensors.push((format!("{h}.{l}.linear.bias"), vec![DIM], le(values(DIM, 7 + h))));
        }
        tensors.push((
            format!("{h}.{layers}.weight"),
            vec![VOCAB, DIM],
            le(values(VOCAB * DIM, 3 + h)),
        ));
    }
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    std::fs::write(
        dir.join("medusa_lm_head.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"medusa_num_heads": {heads}, "medusa_num_layers": {layers}, "base_model_name_or_path": "x", "transformers_version": "4.34"}}"#),
    )
    .unwrap();
}

/// The paper's head, by hand: x + SiLU(W x + b), then the vocabulary projection.
fn reference(hidden: &[f32], h: usize) -> Vec<f32> {
    let (w, b, out) = (
        values(DIM * DIM, h),
        values(DIM, 7 + h),
        values(VOCAB * DIM, 3 + h),
    );
    let mut x = hidden.to_vec();
    let z: Vec<f32> = (0..DIM)
        .map(|o| (0..DIM).map(|i| w[o * DIM + i] * hidden[i]).sum::<f32>() + b[o])
        .collect();
    for o in 0..DIM {
        x[o] += z[o] / (1.0 + (-z[o]).exp());
    }
    (0..VOCAB)
        .map(|v| (0..DIM).map(|i| out[v * DIM + i] * x[i]).sum())
        .collect()
}

#[test]
fn heads_in_the_original_layout_load_and_compute_the_papers_formula() {
    let tmp = tempfile::tempdir().unwrap();
    write_original(tmp.path(), 2, 1);
    let heads = MedusaHeads::load(tmp.path()).unwrap();
    assert_eq!(
        (
            heads.num_heads(),
            heads.num_layers(),
            heads.dim(),
            heads.vocab_size()
        ),
        (2, 1, DIM, VOCAB)
    );
    let hidden = [0.3, -0.2, 0.5, 0.1];
    let got = heads.forward(&hidden).unwrap();
    for (h, logits) in got.iter().enumerate() {
        ahead_testutil::assert_close(logits, &reference(&hidden, h), ahead_testutil::F32, "head logits");
    }
    // A short draft runs only its shallow heads, with the same numbers.
    let first = heads.forward_first(&hidden, 1).unwrap();
    assert_eq!(first, got[..1].to_vec());
    assert!(heads.forward_first(&hidden, 0).unwrap().is_empty());
    assert_eq!(
        heads.forward_first(&hidden, 5).unwrap(),
        got,
        "more than there are: all"
    );
}

#[test]
fn heads_saved_by_ahead_load_back_identically() {
    let tmp = tempfile::tempdir().unwrap();
    write_original(tmp.path(), 3, 2);
    let mut heads = MedusaHeads::load(tmp.path()).unwrap();
    heads.set_accuracy(vec![vec![0.5, 0.1], vec![0.3], vec![0.2]]);
    let out = tmp.path().join("saved");
    heads.save(&out, Some("stories260K")).unwrap();
    let back = MedusaHeads::load(&out).unwrap();
    let hidden = [0.1, 0.2, -0.3, 0.4];
    assert_eq!(heads.forward(&hidden).unwrap(), back.forward(&hidden).unwrap());
    assert_eq!(back.accuracy(), heads.accuracy());
    // The saved folder is in the original layout: the same key names and config fields.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["medusa_num_heads"], 3);
    assert_eq!(cfg["medusa_num_layers"], 2);
    let bytes = std::fs::read(out.join("medusa_lm_head.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    assert!(
        names.contains(&"2.1.linear.bias".to_string()) && names.contains(&"2.2.weight".to_string()),
        "{names:?}"
    );
    assert_eq!(names.len(), 3 * (2 * 2 + 1));
}

#[test]
fn pickles_and_malformed_folders_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("medusa_lm_head.pt"), b"\x80\x02}q\x00.").unwrap();
    let e = MedusaHeads::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("pickle"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    write_original(tmp.path(), 2, 1);
    // A config that promises more heads than the file holds.
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"medusa_num_heads": 3, "medusa_num_layers": 1}"#,
    )
    .unwrap();
    let e = MedusaHeads::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("2.0.linear.weight"), "{e}");
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"medusa_num_heads": 0, "medusa_num_layers": 1}"#,
    )
    .unwrap();
    assert!(MedusaHeads::load(tmp.path()).is_err());
    std::fs::write(tmp.path().join("config.json"), "not json").unwrap();
    assert!(MedusaHeads::load(tmp.path())
        .unwrap_err()
        .to_string()
        .contains("config"));
    // Truncated weights.
    write_original(tmp.path(), 2, 1);
    let w = tmp.path().join("medusa_lm_head.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    assert!(MedusaHeads::load(tmp.path()).is_err());
}

/// FR-Spec heads: a file whose output rows are a subset of the vocabulary, named in
/// `config.json`. Row r scores token `subset[r]`; saving and loading keeps the subset.
#[test]
fn pruned_heads_score_a_token_subset_and_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    write_original(tmp.path(), 2, 1);
    let full = MedusaHeads::load(tmp.path()).unwrap();
    // Keep rows 4 and 1 of each head's output layer, as tokens 4 and 1.
    let subset = vec![4u32, 1];
    let pruned = full.restricted_to(subset.clone()).unwrap();
    let heads = pruned.heads().to_vec();
    assert_eq!(pruned.vocab_size(), VOCAB);
    assert_eq!(pruned.subset(), Some(&subset[..]));
    assert_eq!((pruned.token(0), pruned.token(1)), (4, 1));
    let hidden = [0.3, -0.2, 0.5, 0.1];
    let (a, b) = (full.forward(&hidden).unwrap(), pruned.forward(&hidden).unwrap());
    for (fa, pb) in a.iter().zip(&b) {
        assert_eq!(
            pb,
            &vec![fa[4], fa[1]],
            "a pruned row is the full head's row of its token"
        );
    }
    let out = tmp.path().join("pruned");
    pruned.save(&out, None).unwrap();
    let back = MedusaHeads::load(&out).unwrap();
    assert_eq!(back.subset(), Some(&subset[..]));
    assert_eq!(back.vocab_size(), VOCAB);
    assert_eq!(back.forward(&hidden).unwrap(), b);
    // Stored as F16: the file's matrices are F16 and load back as they were.
    let half = pruned.converted(ahead_model::TensorDType::F16).unwrap();
    let out16 = tmp.path().join("pruned16");
    half.save(&out16, None).unwrap();
    let bytes = std::fs::read(out16.join("medusa_lm_head.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("0.1.weight").unwrap().dtype(), Dtype::F16);
    assert_eq!(st.tensor("0.0.linear.bias").unwrap().dtype(), Dtype::F32);
    let back16 = MedusaHeads::load(&out16).unwrap();
    assert_eq!(back16.forward(&hidden).unwrap(), half.forward(&hidden).unwrap());
    ahead_testutil::assert_close(
        &back16.forward(&hidden).unwrap()[0],
        &b[0],
        ahead_testutil::QUANTIZED,
        "f16 heads",
    );

    // Ids out of range or repeated, a subset that does not match the rows, or half the
    // config's keys: refused.
    for bad in [vec![4u32, 6], vec![1, 1]] {
        assert!(MedusaHeads::pruned(heads.clone(), DIM, VOCAB, bad).is_err());
    }
    assert!(MedusaHeads::pruned(heads.clone(), DIM, VOCAB, vec![1, 2, 3]).is_err());
    assert!(
        full.restricted_to(vec![9]).is_err(),
        "a token the heads do not score"
    );
    assert!(pruned.restricted_to(vec![4]).is_ok() && pruned.restricted_to(vec![2]).is_err());
    let cfg_path = out.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("ahead_vocab_size");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = MedusaHeads::load(&out).unwrap_err().to_string();
    assert!(e.contains("ahead_vocab_size"), "{e}");
}
