//! F1 `gguf_header`: raw bytes -> `parse_gguf`. No panic, abort or OOM; whatever parses hands out
//! only in-bounds, aligned, non-overlapping tensors whose byte size matches the block tables, and
//! re-serializes (GgufWriter) to a file that parses to the same metadata and tensors.
#![no_main]

use ahead_model::format::gguf::{parse_gguf, GgufFile};
use ahead_model::format::gguf_write::GgufWriter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = parse_gguf(data, "fuzz") else {
        return;
    };
    check(&file, data);

    // Typed getters must never panic, whatever the value types.
    for key in file.metadata.keys() {
        let _ = file.get_u32(key);
        let _ = file.get_f32(key);
        let _ = file.get_str(key);
        let _ = file.get_bool(key);
        let _ = file.get_str_array(key);
        let _ = file.get_f32_array(key);
        let _ = file.get_i32_array(key);
    }

    // Round trip through the writer (it refuses a non-u32 general.alignment; that is fine).
    let mut w = GgufWriter::new();
    if w.set_version(file.version).is_err() {
        panic!("parsed version {} is not writable", file.version);
    }
    for (k, v) in &file.metadata {
        w.add_metadata(k.clone(), v.clone());
    }
    for t in &file.tensors {
        let raw = data.get(t.offset..t.offset + t.n_bytes);
        let raw = raw.unwrap_or_else(|| panic!("{} out of bounds", t.name));
        if let Err(e) = w.add_tensor_raw(t.name.clone(), t.dtype, &t.shape, raw.to_vec()) {
            panic!("writer refused a parsed tensor: {e}");
        }
    }
    let Ok(bytes) = w.to_bytes() else { return };
    let again = match parse_gguf(&bytes, "rewritten") {
        Ok(f) => f,
        Err(e) => panic!("re-serialized file does not parse: {e}"),
    };
    check(&again, &bytes);
    assert_eq!(format!("{:?}", file.metadata), format!("{:?}", again.metadata));
    assert_eq!(file.tensors.len(), again.tensors.len());
    for (a, b) in file.tensors.iter().zip(&again.tensors) {
        assert_eq!(
            (&a.name, &a.shape, a.dtype, a.n_bytes),
            (&b.name, &b.shape, b.dtype, b.n_bytes)
        );
        let x = data.get(a.offset..a.offset + a.n_bytes);
        let y = bytes.get(b.offset..b.offset + b.n_bytes);
        assert!(x.is_some() && x == y, "{} differs after the round trip", a.name);
    }
});

fn check(file: &GgufFile, data: &[u8]) {
    let alignment = file.alignment() as usize;
    assert!(alignment.is_power_of_two());
    let mut regions = Vec::with_capacity(file.tensors.len());
    for (i, t) in file.tensors.iter().enumerate() {
        assert!(t.shape.len() <= 4 && t.shape.iter().all(|&d| d > 0));
        assert_eq!(t.offset % alignment, 0, "{} misaligned", t.name);
        // `tensor()` looks names up linearly: use it for the first tensors, slice the rest directly
        // so big inputs stay linear-time.
        let raw = if i < 64 {
            file.tensor(data, &t.name)
        } else {
            data.get(t.offset..t.offset + t.n_bytes)
                .map(|d| ahead_model::RawTensor {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    data: d,
                })
        };
        let raw = raw.unwrap_or_else(|| panic!("{} out of bounds", t.name));
        // Differential: the directory's byte size equals the size from the block tables.
        if let Err(e) = raw.validate("fuzz", &t.name) {
            panic!("parsed tensor is inconsistent: {e}");
        }
        regions.push(t.offset..t.offset + t.n_bytes);
    }
    regions.sort_by_key(|r| (r.start, r.end));
    for pair in regions.windows(2) {
        assert!(pair[0].end <= pair[1].start, "overlap {:?}", pair);
    }
}
