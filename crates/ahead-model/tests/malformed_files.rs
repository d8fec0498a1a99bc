//! Hostile and truncated GGUF / safetensors / index files: every one must give `Err`, never panic,
//! and whatever parses must only hand out in-bounds tensor views.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ahead_model::format::gguf::{parse_gguf, GgufFile, GgufValue};
use ahead_model::format::gguf_write::GgufWriter;
use ahead_model::format::safetensors::{parse_safetensors, parse_safetensors_index, SafetensorsFile};
use ahead_model::{ModelError, TensorDType};

const STORIES_GGUF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/stories260K/stories260K.gguf"
);
const STORIES_ST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/stories260K-hf/model.safetensors"
);

// ---------------------------------------------------------------------------------------------
// helpers

/// A small valid GGUF with every metadata kind and every float dtype plus a raw Q8_0 tensor.
fn small_gguf() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", "llama")
        .add_u32("llama.embedding_length", 64)
        .add_f32("llama.rope.freq_base", 10000.0)
        .add_bool("flag", true)
        .add_metadata("u8", GgufValue::U8(7))
        .add_metadata("i64", GgufValue::I64(-3))
        .add_metadata("f64", GgufValue::F64(0.5))
        .add_string_array("tokenizer.ggml.tokens", &["<unk>", "<s>", "héllo"])
        .add_f32_array("tokenizer.ggml.scores", &[0.0, -1.5, 2.0])
        .add_i32_array("tokenizer.ggml.token_type", &[2, 3, 1])
        .add_metadata(
            "nested",
            GgufValue::Array(vec![
                GgufValue::Array(vec![GgufValue::U16(1)]),
                GgufValue::Array(vec![]),
            ]),
        );
    let f: Vec<f32> = (0..6).map(|i| i as f32 * 0.25).collect();
    w.add_tensor_f32("a.f32", &[2, 3], &f).unwrap();
    w.add_tensor_f16("b.f16", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    w.add_tensor_bf16("c.bf16", &[2, 2], &[1.0, -1.0, 0.5, 8.0])
        .unwrap();
    w.add_tensor_raw("d.q8", TensorDType::Q8_0, &[1, 32], vec![0x11; 34])
        .unwrap();
    w.to_bytes().unwrap()
}

/// Parses `bytes`; when it succeeds, every tensor view must exist and be consistent.
fn gguf_no_panic(bytes: &[u8]) -> Option<GgufFile> {
    let file = parse_gguf(bytes, "fuzz.gguf").ok()?;
    for t in &file.tensors {
        let raw = file.tensor(bytes, &t.name).expect("parsed tensor in bounds");
        raw.validate("fuzz.gguf", &t.name)
            .expect("parsed tensor consistent");
        assert_eq!(t.offset % file.alignment() as usize, 0);
    }
    Some(file)
}

fn format_err(r: ahead_model::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(e @ ModelError::Format { .. }) => e.to_string(),
        other => panic!("expected a format error, got {other:?}"),
    }
}

fn unsupported_err(r: ahead_model::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(ModelError::Unsupported(s)) => s,
        other => panic!("expected an unsupported error, got {other:?}"),
    }
}

/// Hand-built GGUF bytes, for values the writer refuses to produce.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    /// A tensor info with GGUF-order dims (`ne`).
    fn tensor(&mut self, name: &str, ne: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
        self.str(name).u32(ne.len() as u32);
        for &d in ne {
            self.u64(d);
        }
        self.u32(ggml_type).u64(offset)
    }
    /// Pads to `align` then appends `n` data bytes.
    fn data(&mut self, align: usize, n: usize) -> Vec<u8> {
        let mut out = self.0.clone();
        out.resize(out.len().div_ceil(align) * align + n, 0);
        out
    }
}

/// Tiny deterministic generator for garbage inputs.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

// ---------------------------------------------------------------------------------------------
// GGUF: valid files

#[test]
fn gguf_writer_round_trip() {
    let bytes = small_gguf();
    let f = gguf_no_panic(&bytes).expect("valid");
    assert_eq!(f.version, 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), Some(64));
    assert_eq!(f.get_u32("u8").unwrap(), Some(7));
    assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), Some(10000.0));
    assert_eq!(f.get_f32("f64").unwrap(), Some(0.5));
    assert_eq!(f.get_bool("flag").unwrap(), Some(true));
    assert_eq!(f.get_i64("i64").unwrap(), Some(-3));
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap(),
        vec!["<unk>", "<s>", "héllo"]
    );
    assert_eq!(
        f.get_f32_array("tokenizer.ggml.scores").unwrap().unwrap(),
        vec![0.0, -1.5, 2.0]
    );
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type").unwrap().unwrap(),
        vec![2, 3, 1]
    );
    assert!(matches!(f.get("nested"), Some(GgufValue::Array(a)) if a.len() == 2));
    assert_eq!(f.get_u32("missing").unwrap(), None);

    let a = f.tensor(&bytes, "a.f32").unwrap();
    assert_eq!((a.dtype, a.shape.clone()), (TensorDType::F32, vec![2, 3]));
    let vals: Vec<f32> = a
        .data
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.25]);
    let b = f.tensor(&bytes, "b.f16").unwrap();
    assert_eq!((b.dtype, b.data.len()), (TensorDType::F16, 8));
    assert_eq!(half::f16::from_le_bytes([b.data[6], b.data[7]]).to_f32(), 4.0);
    let c = f.tensor(&bytes, "c.bf16").unwrap();
    assert_eq!(half::bf16::from_le_bytes([c.data[6], c.data[7]]).to_f32(), 8.0);
    let d = f.tensor(&bytes, "d.q8").unwrap();
    assert_eq!(
        (d.dtype, d.shape.clone(), d.data),
        (TensorDType::Q8_0, vec![1, 32], &[0x11u8; 34][..])
    );
    assert!(f.tensor(&bytes, "nope").is_none());
    // A view over other (shorter) bytes is refused, never a panic.
    assert!(f.tensor(&bytes[..40], "a.f32").is_none());
}

#[test]
fn gguf_writer_alignment_and_version_2() {
    let mut w = GgufWriter::new();
    w.set_version(2).unwrap().set_alignment(64).unwrap();
    w.add_tensor_f32("x", &[3], &[1.0, 2.0, 3.0]).unwrap();
    w.add_tensor_f32("y", &[5], &[0.0; 5]).unwrap();
    let bytes = w.to_bytes().unwrap();
    let f = gguf_no_panic(&bytes).unwrap();
    assert_eq!((f.version, f.alignment()), (2, 64));
    assert!(f.tensors.iter().all(|t| t.offset % 64 == 0));
    assert!(w.set_alignment(3).is_err() && w.set_alignment(0).is_err());
    assert!(w.add_tensor_f32("x", &[1], &[0.0]).is_err(), "duplicate name");
    assert!(w.add_tensor_f32("z", &[2], &[0.0]).is_err(), "size mismatch");
    assert!(
        w.add_tensor_raw("q", TensorDType::Q8_0, &[16], vec![0; 17])
            .is_err(),
        "partial block"
    );
}

#[test]
fn gguf_typed_getters_reject_wrong_types() {
    let mut w = GgufWriter::new();
    w.add_metadata("neg", GgufValue::I32(-1))
        .add_metadata("big", GgufValue::U64(1 << 40))
        .add_string("s", "x")
        .add_u32("n", 3)
        .add_metadata("mixed", GgufValue::Array(vec![GgufValue::U64(1 << 40)]));
    let bytes = w.to_bytes().unwrap();
    let f = parse_gguf(&bytes, "t.gguf").unwrap();
    let e = format_err(f.get_u32("neg"));
    assert!(e.contains("t.gguf") && e.contains("metadata neg"), "{e}");
    format_err(f.get_u32("big"));
    assert_eq!(f.get_u64("big").unwrap(), Some(1 << 40));
    format_err(f.get_u32("s"));
    format_err(f.get_f32("n"));
    format_err(f.get_str("n"));
    format_err(f.get_bool("n"));
    format_err(f.get_str_array("s"));
    format_err(f.get_i32_array("mixed"));
}

#[test]
fn stories260k_gguf_parses() {
    let bytes = std::fs::read(STORIES_GGUF).unwrap();
    let f = gguf_no_panic(&bytes).expect("real file parses");
    assert_eq!(f.version, 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), Some(64));
    assert_eq!(f.get_u32("llama.block_count").unwrap(), Some(5));
    assert_eq!(f.get_u32("llama.feed_forward_length").unwrap(), Some(172));
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap().len(),
        512
    );
    assert_eq!(f.tensors.len(), 48);
    let shape = |n: &str| f.tensor(&bytes, n).unwrap().shape;
    assert_eq!(shape("token_embd.weight"), vec![512, 64]);
    assert_eq!(shape("blk.0.attn_q.weight"), vec![64, 64]);
    assert_eq!(shape("blk.0.attn_k.weight"), vec![32, 64]);
    assert_eq!(shape("blk.0.ffn_gate.weight"), vec![172, 64]);
    assert_eq!(shape("blk.0.ffn_down.weight"), vec![64, 172]);
    assert_eq!(shape("output_norm.weight"), vec![64]);
    assert!(f.tensors.iter().all(|t| t.dtype == TensorDType::F32));
}

// ---------------------------------------------------------------------------------------------
// GGUF: malformed files

#[test]
fn gguf_truncated_at_every_length_is_err() {
    let bytes = small_gguf();
    let f = parse_gguf(&bytes, "t").unwrap();
    let data_end = f.tensors.iter().map(|t| t.offset + t.n_bytes).max().unwrap();
    for len in 0..bytes.len() {
        let r = parse_gguf(&bytes[..len], "t");
        // Only the trailing padding after the last tensor may be cut.
        assert_eq!(r.is_ok(), len >= data_end, "length {len}");
    }
    let real = std::fs::read(STORIES_GGUF).unwrap();
    let header_end = parse_gguf(&real, "s")
        .unwrap()
        .tensors
        .iter()
        .map(|t| t.offset)
        .min()
        .unwrap();
    for len in (0..header_end + 64).chain([real.len() - 1]) {
        assert!(parse_gguf(&real[..len], "s").is_err(), "length {len}");
    }
}

#[test]
fn gguf_garbage_and_bit_flips_never_panic() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for len in [0usize, 1, 3, 4, 8, 23, 24, 100, 1000, 5000] {
        for prefix in [&b""[..], b"GGUF\x03\0\0\0", b"GGUF\x02\0\0\0\x01\0\0\0\0\0\0\0"] {
            let mut bytes = prefix.to_vec();
            bytes.extend((0..len).map(|_| xorshift(&mut state) as u8));
            gguf_no_panic(&bytes);
        }
    }
    let valid = small_gguf();
    for i in 0..valid.len() {
        for flip in [0xFFu8, 0x01, 0x80] {
            let mut bytes = valid.clone();
            bytes[i] ^= flip;
            gguf_no_panic(&bytes);
        }
    }
}

#[test]
fn gguf_bad_magic_and_versions() {
    format_err(parse_gguf(b"GGUX\x03\0\0\0", "t"));
    format_err(parse_gguf(b"GG", "t"));
    let e = unsupported_err(parse_gguf(&Raw::header(1, 0, 0).0, "t"));
    assert!(e.contains("version 1"), "{e}");
    let mut be = b"GGUF".to_vec();
    be.extend_from_slice(&3u32.to_be_bytes());
    be.extend_from_slice(&[0; 16]);
    assert!(unsupported_err(parse_gguf(&be, "t")).contains("big-endian"));
    format_err(parse_gguf(&Raw::header(7, 0, 0).0, "t"));
    assert!(parse_gguf(&Raw::header(3, 0, 0).0, "t").is_ok());
}

#[test]
fn gguf_lying_counts() {
    for (n_tensors, n_kv) in [
        (u64::MAX, 0),
        (1 << 40, 0),
        (0, u64::MAX),
        (0, 1 << 40),
        (u64::MAX, u64::MAX),
        (1, 1),
    ] {
        let e = format_err(parse_gguf(
            &Raw::header(3, n_tensors, n_kv).data(1, 20),
            "lie.gguf",
        ));
        assert!(e.contains("lie.gguf") && e.contains("count"), "{e}");
    }
}

#[test]
fn gguf_lying_strings_and_arrays() {
    // Key length 2^63, u64::MAX, and just one past the end.
    for len in [1u64 << 63, u64::MAX, 100] {
        let mut r = Raw::header(3, 0, 1);
        r.u64(len).u32(0);
        format_err(parse_gguf(&r.data(1, 64), "t"));
    }
    // A string value with a huge length.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(1 << 63).u64(0);
    assert!(format_err(parse_gguf(&r.0, "t")).contains("metadata k"));
    // Array lengths x element size larger than the file, for several element types.
    for (elem_type, len) in [
        (0u32, 1u64 << 62),
        (4, 1 << 40),
        (10, u64::MAX),
        (8, 1 << 61),
        (9, 1 << 60),
    ] {
        let mut r = Raw::header(3, 0, 1);
        r.str("arr").u32(9).u32(elem_type).u64(len);
        let bytes = r.data(1, 64);
        assert!(format_err(parse_gguf(&bytes, "t")).contains("metadata arr"));
    }
    // Nested arrays past the depth limit.
    let mut r = Raw::header(3, 0, 1);
    r.str("deep").u32(9);
    for _ in 0..10 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    format_err(parse_gguf(&r.0, "t"));
    // Unknown value type, unknown array element type, bool 2, invalid UTF-8.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u32(0);
    format_err(parse_gguf(&r.0, "t"));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(99).u64(0);
    format_err(parse_gguf(&r.0, "t"));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(7).0.push(2);
    format_err(parse_gguf(&r.0, "t"));
    let mut r = Raw::header(3, 0, 1);
    r.u64(2).0.extend_from_slice(&[0xC3, 0x28]);
    r.u32(4).u32(0);
    format_err(parse_gguf(&r.0, "t"));
}

#[test]
fn gguf_duplicates_rejected() {
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("a", 1).kv_u32("a", 2);
    assert!(format_err(parse_gguf(&r.0, "t")).contains("duplicate"));
    let mut r = Raw::header(3, 2, 0);
    r.tensor("w", &[4], 0, 0).tensor("w", &[4], 0, 32);
    assert!(format_err(parse_gguf(&r.data(32, 64), "t")).contains("duplicate"));
}

#[test]
fn gguf_lying_tensor_infos() {
    let one = |ne: &[u64], ty: u32, off: u64, data: usize| {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("blk.0.attn_q.weight", ne, ty, off);
        parse_gguf(&r.data(32, data), "lie.gguf")
    };
    assert!(one(&[4, 2], 0, 0, 32).is_ok());
    // Offset past the end, offset + size past the end, offset near u64::MAX.
    let e = format_err(one(&[4, 2], 0, 64, 32));
    assert!(
        e.contains("lie.gguf") && e.contains("tensor blk.0.attn_q.weight offset"),
        "{e}"
    );
    format_err(one(&[4, 2], 0, 0, 31));
    format_err(one(&[4], 0, u64::MAX - 31, 32));
    format_err(one(&[4], 0, 1 << 63, 32));
    // Misaligned offset.
    assert!(format_err(one(&[1], 0, 4, 64)).contains("multiple"));
    // Overflowing shapes, one that wraps to 0, dims too large, zero dims, too many dims.
    format_err(one(&[1 << 32, 1 << 32, 1 << 32], 0, 0, 32));
    format_err(one(&[1 << 32, 1 << 32], 0, 0, 32));
    format_err(one(&[u64::MAX], 0, 0, 32));
    format_err(one(&[1 << 62], 0, 0, 32));
    format_err(one(&[4, 0], 0, 0, 32));
    assert!(format_err(one(&[1, 1, 1, 1, 1], 0, 0, 32)).contains("n_dims"));
    let mut r = Raw::header(3, 1, 0);
    r.str("t").u32(u32::MAX);
    assert!(format_err(parse_gguf(&r.data(1, 64), "t")).contains("n_dims"));
    // Unknown type ids name the tensor and the id; known-but-unsupported ones are Unsupported.
    let e = format_err(one(&[4], 99, 0, 32));
    assert!(e.contains("blk.0.attn_q.weight") && e.contains("99"), "{e}");
    let e = format_err(one(&[4], u32::MAX, 0, 32));
    assert!(e.contains(&u32::MAX.to_string()), "{e}");
    let e = unsupported_err(one(&[256], 16, 0, 256));
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("16") && e.contains("iq2_xxs"),
        "{e}"
    );
    // Quantized rows that are not whole blocks.
    format_err(one(&[16, 2], 8, 0, 64));
    assert!(one(&[32, 2], 8, 0, 68).is_ok());
}

#[test]
fn gguf_overlapping_tensors_rejected() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0).tensor("b", &[16], 0, 32);
    assert!(parse_gguf(&r.data(32, 96), "t").is_ok());
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[4], 0, 32);
    let e = format_err(parse_gguf(&r.data(32, 96), "t"));
    assert!(e.contains("overlaps"), "{e}");
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[4], 0, 0).tensor("b", &[4], 0, 0);
    format_err(parse_gguf(&r.data(32, 96), "t"));
}

#[test]
fn gguf_bad_alignment_rejected() {
    for align in [0u32, 3, 24, u32::MAX] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", align);
        let e = format_err(parse_gguf(&r.0, "t"));
        assert!(e.contains("general.alignment"), "{e}");
    }
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(8).str("32");
    format_err(parse_gguf(&r.0, "t"));
    // A huge power of two pushes the data section past the end.
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 1 << 31).tensor("x", &[1], 0, 0);
    format_err(parse_gguf(&r.data(1, 64), "t"));
}

// ---------------------------------------------------------------------------------------------
// safetensors

fn st(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + data_len, 0);
    out
}

fn st_no_panic(bytes: &[u8]) -> Option<SafetensorsFile> {
    let f = parse_safetensors(bytes, "fuzz.safetensors").ok()?;
    for name in f.names() {
        let raw = f.tensor(bytes, name).expect("parsed tensor in bounds");
        raw.validate("fuzz.safetensors", name)
            .expect("parsed tensor consistent");
    }
    Some(f)
}

fn small_st() -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let a: Vec<u8> = (0..24).collect();
    let b: Vec<u8> = (0..8).collect();
    let c: Vec<u8> = (0..4).collect();
    let views = vec![
        ("a", TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap()),
        ("b", TensorView::new(Dtype::F16, vec![4], &b).unwrap()),
        ("c", TensorView::new(Dtype::BF16, vec![1, 2], &c).unwrap()),
    ];
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

#[test]
fn safetensors_round_trip() {
    let bytes = small_st();
    let f = st_no_panic(&bytes).expect("valid");
    assert_eq!(f.names().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    assert_eq!(f.metadata.get("format").map(String::as_str), Some("pt"));
    let a = f.tensor(&bytes, "a").unwrap();
    assert_eq!(
        (a.dtype, a.shape.clone(), a.data),
        (TensorDType::F32, vec![2, 3], &(0..24).collect::<Vec<u8>>()[..])
    );
    assert_eq!(f.tensor(&bytes, "b").unwrap().dtype, TensorDType::F16);
    assert_eq!(f.tensor(&bytes, "c").unwrap().shape, vec![1, 2]);
    assert!(f.tensor(&bytes, "zz").is_none());
    assert!(f.tensor(&bytes[..20], "a").is_none());
    // The empty file the crate writes is fine too.
    assert!(st_no_panic(&st("{}", 0)).is_some());
    assert!(st_no_panic(&st(
        r#"{"e":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]}}   "#,
        0
    ))
    .is_some());
}

#[test]
fn stories260k_safetensors_matches_the_safetensors_crate() {
    let bytes = std::fs::read(STORIES_ST).unwrap();
    let f = st_no_panic(&bytes).expect("real file parses");
    let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(f.tensors.len(), reference.len());
    for (name, view) in reference.tensors() {
        let t = f.tensor(&bytes, &name).unwrap();
        assert_eq!(t.shape, view.shape(), "{name}");
        assert_eq!(t.data, view.data(), "{name}");
        assert_eq!(t.dtype, TensorDType::F32);
    }
    assert_eq!(
        f.tensor(&bytes, "model.embed_tokens.weight").unwrap().shape,
        vec![512, 64]
    );
}

#[test]
fn safetensors_truncated_extended_and_garbage() {
    let bytes = small_st();
    for len in 0..bytes.len() {
        assert!(parse_safetensors(&bytes[..len], "t").is_err(), "length {len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(format_err(parse_safetensors(&longer, "t")).contains("cover"));
    for i in 0..bytes.len() {
        for flip in [0xFFu8, 0x01, 0x20] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            st_no_panic(&b);
        }
    }
    let mut state = 42u64;
    for len in [0usize, 7, 8, 9, 100, 4000] {
        let garbage: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
        st_no_panic(&garbage);
    }
}

#[test]
fn safetensors_lying_header_lengths() {
    for n in [u64::MAX, u64::MAX - 7, 100_000_001, 1 << 40, 50] {
        let mut b = n.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        let e = format_err(parse_safetensors(&b, "lie.safetensors"));
        assert!(
            e.contains("lie.safetensors") && e.contains("header length"),
            "{e}"
        );
    }
    format_err(parse_safetensors(&st("[]", 0), "t"));
    format_err(parse_safetensors(&st(" {}", 0), "t"));
    format_err(parse_safetensors(&st("{", 0), "t"));
    let mut b = st("{}", 0);
    b.extend_from_slice(&[0xFF]);
    b[0] = 3;
    format_err(parse_safetensors(&b, "t"));
}

#[test]
fn safetensors_lying_entries() {
    let one = |dtype: &str, shape: &str, offsets: &str, data: usize| {
        let h = format!(r#"{{"w":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#);
        parse_safetensors(&st(&h, data), "t")
    };
    assert!(one("F32", "[2,2]", "[0,16]", 16).is_ok());
    assert!(format_err(one("F32", "[2,2]", "[0,32]", 16)).contains("tensor w data_offsets"));
    format_err(one("F32", "[2,2]", "[16,0]", 16));
    format_err(one("F32", "[2,2]", "[0,16,16]", 16));
    format_err(one("F32", "[2,2]", "[0]", 16));
    format_err(one("F32", "[2,2]", "[0,18446744073709551615]", 16));
    format_err(one("F32", "[2,2]", "[-1,16]", 16));
    // Shape overflow, including a product that wraps to exactly 0 (2^32 * 2^32).
    assert!(format_err(one("F32", "[4294967296,4294967296]", "[0,0]", 0)).contains("tensor w shape"));
    format_err(one("F32", "[18446744073709551615,2]", "[0,0]", 0));
    format_err(one("F16", "[4611686018427387904,4]", "[0,0]", 0));
    format_err(one("F32", "[0,9223372036854775808,4]", "[0,0]", 0));
    // shape x dtype != span.
    assert!(format_err(one("F16", "[2,2]", "[0,16]", 16)).contains("needs 8 bytes"));
    // Unsupported and unknown dtypes name the tensor and the dtype.
    let e = unsupported_err(one("I64", "[2]", "[0,16]", 16));
    assert!(e.contains("tensor w") && e.contains("I64"), "{e}");
    unsupported_err(one("Q9_Z", "[2]", "[0,16]", 16));
    // Missing fields, wrong types.
    format_err(parse_safetensors(
        &st(r#"{"w":{"dtype":"F32","shape":[1]}}"#, 4),
        "t",
    ));
    format_err(parse_safetensors(
        &st(r#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, 4),
        "t",
    ));
    format_err(parse_safetensors(&st(r#"{"w":3}"#, 0), "t"));
}

#[test]
fn safetensors_tiling_duplicates_and_metadata() {
    let e = r#""dtype":"F32","shape":[1]"#;
    let parse = |h: String, n| parse_safetensors(&st(&h, n), "t");
    assert!(parse(
        format!(r#"{{"a":{{{e},"data_offsets":[0,4]}},"b":{{{e},"data_offsets":[4,8]}}}}"#),
        8
    )
    .is_ok());
    // Gap at the start, gap in the middle, overlap.
    format_err(parse(format!(r#"{{"a":{{{e},"data_offsets":[4,8]}}}}"#), 8));
    let gap = format_err(parse(
        format!(r#"{{"a":{{{e},"data_offsets":[0,4]}},"b":{{{e},"data_offsets":[8,12]}}}}"#),
        12,
    ));
    assert!(gap.contains("gap"), "{gap}");
    let overlap = format_err(parse(
        format!(r#"{{"a":{{{e},"data_offsets":[0,4]}},"b":{{{e},"data_offsets":[0,4]}}}}"#),
        4,
    ));
    assert!(overlap.contains("overlap"), "{overlap}");
    // Duplicate names, duplicate fields, duplicate __metadata__ and metadata keys.
    let dup = format_err(parse(
        format!(r#"{{"a":{{{e},"data_offsets":[0,4]}},"a":{{{e},"data_offsets":[4,8]}}}}"#),
        8,
    ));
    assert!(dup.contains("duplicate"), "{dup}");
    format_err(parse(
        r#"{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.into(),
        4,
    ));
    format_err(parse(r#"{"__metadata__":{},"__metadata__":{}}"#.into(), 0));
    format_err(parse(r#"{"__metadata__":{"k":"a","k":"b"}}"#.into(), 0));
    // Metadata values must be strings.
    format_err(parse(r#"{"__metadata__":{"k":1}}"#.into(), 0));
    format_err(parse(r#"{"__metadata__":"x"}"#.into(), 0));
}

// ---------------------------------------------------------------------------------------------
// model.safetensors.index.json

#[test]
fn safetensors_index_valid() {
    let json = br#"{"metadata":{"total_size":123},"weight_map":{
        "a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    let map = parse_safetensors_index(json, "index.json").unwrap();
    assert_eq!(map.len(), 2);
    assert_eq!(map["b"], "model-00002-of-00002.safetensors");
}

#[test]
fn safetensors_index_rejects_escapes_and_junk() {
    for shard in [
        "../model.safetensors",
        "..",
        "/etc/model.safetensors",
        "sub/model.safetensors",
        "sub\\\\model.safetensors",
        "C:model.safetensors",
        "model.bin",
        ".safetensors",
        "",
        "a\\u0000.safetensors",
    ] {
        let json = format!(r#"{{"weight_map":{{"w":"{shard}"}}}}"#);
        let e = format_err(parse_safetensors_index(json.as_bytes(), "index.json"));
        assert!(
            e.contains("index.json") && e.contains("weight_map w"),
            "{shard}: {e}"
        );
    }
    for json in [
        &br#"{"weight_map":{"w":"a.safetensors","w":"b.safetensors"}}"#[..],
        br#"{"metadata":{}}"#,
        br#"{"weight_map":{"w":1}}"#,
        br#"{"weight_map":[]}"#,
        br#"[]"#,
        b"\xff",
        b"",
    ] {
        format_err(parse_safetensors_index(json, "index.json"));
    }
}
