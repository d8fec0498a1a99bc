//! A small GGUF v3 writer, for building test models and for tools.
//!
//! The writer only produces files that [`parse_gguf`](super::gguf::parse_gguf) accepts: tensor
//! sizes are checked against their shapes, names are unique and the alignment is a power of two.

use std::collections::HashMap;

use crate::error::{ModelError, Result};
use crate::format::gguf::{GgufValue, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MAX_DIMS};
use crate::tensor::TensorDType;

const ALIGNMENT_KEY: &str = "general.alignment";
const LABEL: &str = "gguf writer";

struct PendingTensor {
    name: String,
    /// Row-major shape, outermost first.
    shape: Vec<usize>,
    dtype: TensorDType,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory: metadata in insertion order, then tensors in insertion order.
///
/// ```
/// use ahead_model::format::gguf_write::GgufWriter;
/// let mut w = GgufWriter::new();
/// w.add_string("general.architecture", "llama");
/// w.add_tensor_f32("token_embd.weight", &[2, 3], &[0.0; 6]).unwrap();
/// let bytes = w.to_bytes().unwrap();
/// let file = ahead_model::format::gguf::parse_gguf(&bytes, "mem").unwrap();
/// assert_eq!(file.tensors[0].shape, vec![2, 3]);
/// ```
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    /// Key -> index into `metadata`.
    keys: HashMap<String, usize>,
    tensors: Vec<PendingTensor>,
    /// Tensor name -> index into `tensors`.
    names: HashMap<String, usize>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file with the default alignment (32).
    pub fn new() -> Self {
        Self {
            version: 3,
            metadata: Vec::new(),
            keys: HashMap::new(),
            tensors: Vec::new(),
            names: HashMap::new(),
        }
    }

    /// Writes version 2 or 3 (identical layouts for little-endian files).
    pub fn set_version(&mut self, version: u32) -> Result<&mut Self> {
        if !(2..=3).contains(&version) {
            return Err(ModelError::format(
                LABEL,
                "version",
                format!("{version} is not 2 or 3"),
            ));
        }
        self.version = version;
        Ok(self)
    }

    /// Sets `general.alignment`: a nonzero power of two.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self> {
        if !alignment.is_power_of_two() {
            return Err(ModelError::format(
                LABEL,
                ALIGNMENT_KEY,
                format!("{alignment} is not a nonzero power of two"),
            ));
        }
        Ok(self.add_metadata(ALIGNMENT_KEY, GgufValue::U32(alignment)))
    }

    /// Adds or replaces a metadata entry (keys stay unique; order is first insertion).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: GgufValue) -> &mut Self {
        let key = key.into();
        match self.keys.get(&key).and_then(|&i| self.metadata.get_mut(i)) {
            Some(entry) => entry.1 = value,
            None => {
                self.keys.insert(key.clone(), self.metadata.len());
                self.metadata.push((key, value));
            }
        }
        self
    }

    pub fn add_u32(&mut self, key: impl Into<String>, value: u32) -> &mut Self {
        self.add_metadata(key, GgufValue::U32(value))
    }

    pub fn add_i32(&mut self, key: impl Into<String>, value: i32) -> &mut Self {
        self.add_metadata(key, GgufValue::I32(value))
    }

    pub fn add_u64(&mut self, key: impl Into<String>, value: u64) -> &mut Self {
        self.add_metadata(key, GgufValue::U64(value))
    }

    pub fn add_f32(&mut self, key: impl Into<String>, value: f32) -> &mut Self {
        self.add_metadata(key, GgufValue::F32(value))
    }

    pub fn add_bool(&mut self, key: impl Into<String>, value: bool) -> &mut Self {
        self.add_metadata(key, GgufValue::Bool(value))
    }

    pub fn add_string(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.add_metadata(key, GgufValue::String(value.into()))
    }

    pub fn add_string_array<S: AsRef<str>>(&mut self, key: impl Into<String>, values: &[S]) -> &mut Self {
        let items = values
            .iter()
            .map(|s| GgufValue::String(s.as_ref().to_owned()))
            .collect();
        self.add_metadata(key, GgufValue::Array(items))
    }

    pub fn add_f32_array(&mut self, key: impl Into<String>, values: &[f32]) -> &mut Self {
        self.add_metadata(
            key,
            GgufValue::Array(values.iter().map(|&v| GgufValue::F32(v)).collect()),
        )
    }

    pub fn add_i32_array(&mut self, key: impl Into<String>, values: &[i32]) -> &mut Self {
        self.add_metadata(
            key,
            GgufValue::Array(values.iter().map(|&v| GgufValue::I32(v)).collect()),
        )
    }

    /// Adds an F32 tensor with row-major `shape` (outermost first).
    pub fn add_tensor_f32(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        data: &[f32],
    ) -> Result<&mut Self> {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor_raw(name, TensorDType::F32, shape, bytes)
    }

    /// Adds an F16 tensor, converting from f32 (round to nearest).
    pub fn add_tensor_f16(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        data: &[f32],
    ) -> Result<&mut Self> {
        let bytes = data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        self.add_tensor_raw(name, TensorDType::F16, shape, bytes)
    }

    /// Adds a BF16 tensor, converting from f32 (round to nearest).
    pub fn add_tensor_bf16(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        data: &[f32],
    ) -> Result<&mut Self> {
        let bytes = data
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        self.add_tensor_raw(name, TensorDType::BF16, shape, bytes)
    }

    /// Adds a tensor from bytes already in `dtype`'s layout (e.g. pre-quantized Q8_0 blocks).
    /// The byte count must match the shape, rows must be whole blocks, at most 4 dimensions.
    pub fn add_tensor_raw(
        &mut self,
        name: impl Into<String>,
        dtype: TensorDType,
        shape: &[usize],
        data: Vec<u8>,
    ) -> Result<&mut Self> {
        let name = name.into();
        let field = format!("tensor {name}");
        let err = |reason: String| ModelError::format(LABEL, &field, reason);
        if self.names.contains_key(&name) {
            return Err(err("duplicate tensor name".into()));
        }
        if shape.len() > GGUF_MAX_DIMS as usize || shape.contains(&0) {
            return Err(err(format!("shape {shape:?} needs 1 to 4 nonzero dimensions")));
        }
        if shape.last().is_some_and(|&row| row % dtype.block_size() != 0) {
            return Err(err(format!(
                "rows of {shape:?} are not whole {} blocks",
                dtype.name()
            )));
        }
        let need = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .and_then(|n| dtype.bytes_for(n))
            .ok_or_else(|| err(format!("size of {shape:?} overflows")))?;
        if need != data.len() as u64 {
            return Err(err(format!(
                "shape {shape:?} needs {need} bytes, got {}",
                data.len()
            )));
        }
        self.names.insert(name.clone(), self.tensors.len());
        self.tensors.push(PendingTensor {
            name,
            shape: shape.to_vec(),
            dtype,
            data,
        });
        Ok(self)
    }

    fn alignment(&self) -> Result<usize> {
        match self.keys.get(ALIGNMENT_KEY).and_then(|&i| self.metadata.get(i)) {
            None => Ok(GGUF_DEFAULT_ALIGNMENT as usize),
            Some((_, GgufValue::U32(a))) if a.is_power_of_two() => Ok(*a as usize),
            Some((_, v)) => Err(ModelError::format(
                LABEL,
                ALIGNMENT_KEY,
                format!("{v:?} is not a u32 power of two"),
            )),
        }
    }

    /// Serializes the file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let alignment = self.alignment()?;
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            write_value(&mut out, value, key)?;
        }
        let mut offset = 0usize;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            write_string(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&ggml_id(t.dtype).to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offsets.push(offset);
            offset = pad(offset + t.data.len(), alignment);
        }
        out.resize(pad(out.len(), alignment), 0);
        let data_start = out.len();
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off, 0);
            out.extend_from_slice(&t.data);
        }
        out.resize(pad(out.len(), alignment), 0);
        Ok(out)
    }
}

fn pad(n: usize, alignment: usize) -> usize {
    n.div_ceil(alignment) * alignment
}

/// The GGML type id of a dtype (the inverse of `TensorDType::from_ggml_id`).
pub fn ggml_id(dtype: TensorDType) -> u32 {
    dtype.ggml_id()
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &GgufValue, key: &str) -> Result<()> {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => write_string(out, s),
        GgufValue::Array(items) => {
            // GGUF arrays are homogeneous; an empty array is written with element type u8.
            let elem_type = items.first().map_or(0, GgufValue::type_id);
            if items.iter().any(|v| v.type_id() != elem_type) {
                return Err(ModelError::format(
                    LABEL,
                    format!("metadata {key}"),
                    "array items must all have the same type",
                ));
            }
            out.extend_from_slice(&elem_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, item, key)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::format::gguf::parse_gguf;

    #[test]
    fn round_trip_every_value_kind() {
        let values = [
            GgufValue::U8(1),
            GgufValue::I8(-1),
            GgufValue::U16(2),
            GgufValue::I16(-2),
            GgufValue::U32(3),
            GgufValue::I32(-3),
            GgufValue::F32(0.5),
            GgufValue::U64(u64::MAX),
            GgufValue::I64(i64::MIN),
            GgufValue::F64(-0.25),
            GgufValue::Bool(false),
            GgufValue::String("ü".into()),
            GgufValue::Array(vec![
                GgufValue::String("a".into()),
                GgufValue::String(String::new()),
            ]),
            GgufValue::Array(vec![GgufValue::Array(vec![GgufValue::I8(1)])]),
            GgufValue::Array(vec![]),
        ];
        let mut w = GgufWriter::new();
        for (i, v) in values.iter().enumerate() {
            w.add_metadata(format!("k{i}"), v.clone());
        }
        w.add_tensor_raw("q", TensorDType::Q4K, &[2, 256], vec![7; 288])
            .unwrap();
        let bytes = w.to_bytes().unwrap();
        let f = parse_gguf(&bytes, "mem").unwrap();
        for (i, v) in values.iter().enumerate() {
            let got = f.get(&format!("k{i}")).unwrap();
            // An empty array reads back with element type u8: still an empty array.
            assert_eq!(got, v, "k{i}");
        }
        let q = f.tensor(&bytes, "q").unwrap();
        assert_eq!(
            (q.dtype, q.shape, q.data.len()),
            (TensorDType::Q4K, vec![2, 256], 288)
        );
    }

    #[test]
    fn every_dtype_s_id_round_trips_and_quantized_tensors_read_back_whole() {
        use candle_core::quantized::k_quants::{BlockQ4_1, BlockQ5_0, BlockQ5_1};
        for dtype in [
            TensorDType::F32,
            TensorDType::F16,
            TensorDType::BF16,
            TensorDType::Q8_0,
            TensorDType::Q4_0,
            TensorDType::Q4_1,
            TensorDType::Q5_0,
            TensorDType::Q5_1,
            TensorDType::Q4K,
            TensorDType::Q5K,
            TensorDType::Q6K,
        ] {
            assert_eq!(TensorDType::from_ggml_id(ggml_id(dtype)), Some(dtype));
        }
        let values: Vec<f32> = (0..3 * 64)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let tensors = [
            (
                "a",
                TensorDType::Q4_1,
                crate::transformer::q8::ggml_bytes::<BlockQ4_1>(&values),
            ),
            (
                "b",
                TensorDType::Q5_0,
                crate::transformer::q8::ggml_bytes::<BlockQ5_0>(&values),
            ),
            (
                "c",
                TensorDType::Q5_1,
                crate::transformer::q8::ggml_bytes::<BlockQ5_1>(&values),
            ),
        ];
        let mut w = GgufWriter::new();
        for (name, dtype, data) in &tensors {
            w.add_tensor_raw(*name, *dtype, &[3, 64], data.clone()).unwrap();
        }
        let bytes = w.to_bytes().unwrap();
        let f = parse_gguf(&bytes, "mem").unwrap();
        for (name, dtype, data) in &tensors {
            let t = f.tensor(&bytes, name).unwrap();
            assert_eq!(
                (t.dtype, &t.shape[..], t.data),
                (*dtype, &[3, 64][..], &data[..]),
                "{name}"
            );
            t.validate("mem", name).unwrap();
        }
    }

    #[test]
    fn mixed_arrays_are_refused() {
        let mut w = GgufWriter::new();
        w.add_metadata("m", GgufValue::Array(vec![GgufValue::U8(1), GgufValue::I8(1)]));
        assert!(w.to_bytes().is_err());
    }
}
