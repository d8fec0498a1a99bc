//! GGUF v2/v3 reader: every header field is checked against the bytes actually present.
//!
//! Nothing is allocated from a count before the count has been checked against the bytes that
//! remain (each entry needs a known minimum number of bytes), all arithmetic on offsets and sizes
//! is checked, and the tensor directory is validated as a whole: known types, whole blocks,
//! aligned offsets inside the file, no overlapping regions, no duplicate names or keys.

use std::collections::{BTreeMap, HashSet};

use crate::error::{ModelError, Result};
use crate::tensor::{RawTensor, TensorDType};

/// The four magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const GGUF_DEFAULT_ALIGNMENT: u32 = 32;
/// Most dimensions a GGUF tensor may have (GGML_MAX_DIMS).
pub const GGUF_MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays accepted (an array of arrays is depth 2).
pub const GGUF_MAX_ARRAY_DEPTH: usize = 3;

/// Metadata value type ids of the GGUF format.
pub(crate) mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Fewest bytes a value of this type id can occupy, or `None` for an unknown type.
fn min_value_size(type_id: u32) -> Option<usize> {
    use value_type::*;
    Some(match type_id {
        U8 | I8 | BOOL => 1,
        U16 | I16 => 2,
        U32 | I32 | F32 => 4,
        U64 | I64 | F64 => 8,
        STRING => 8,
        ARRAY => 12,
        _ => return None,
    })
}

/// Fewest bytes of one key/value pair: key length, value type, a one-byte value.
const MIN_KV_BYTES: usize = 8 + 4 + 1;
/// Fewest bytes of one tensor info: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 4 + 8;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The GGUF type id of this value.
    pub fn type_id(&self) -> u32 {
        use value_type::*;
        match self {
            Self::U8(_) => U8,
            Self::I8(_) => I8,
            Self::U16(_) => U16,
            Self::I16(_) => I16,
            Self::U32(_) => U32,
            Self::I32(_) => I32,
            Self::F32(_) => F32,
            Self::U64(_) => U64,
            Self::I64(_) => I64,
            Self::F64(_) => F64,
            Self::Bool(_) => BOOL,
            Self::String(_) => STRING,
            Self::Array(_) => ARRAY,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::F32(_) => "f32",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F64(_) => "f64",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
        }
    }

    /// The value as an i128 when it is an integer of any width.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => v.into(),
            Self::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as an f32 when it is an F32 or F64.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Self::F32(v) => Some(v),
            Self::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// The value as a string slice when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Where one tensor lies in the file.
#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Row-major shape, outermost first (GGUF's `ne` reversed).
    pub shape: Vec<usize>,
    pub dtype: TensorDType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: usize,
    pub n_bytes: usize,
}

/// A parsed GGUF file: metadata and tensor directory (the data stays in the caller's bytes).
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    /// A label for error messages (usually the path).
    pub label: String,
}

/// A bounds-checked little-endian cursor over the file.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    label: &'a str,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn err(&self, field: &str, reason: impl Into<String>) -> ModelError {
        ModelError::format(self.label, field, reason)
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(self.err(
                field,
                format!(
                    "needs {n} bytes at offset {}, only {} remain",
                    self.pos,
                    self.remaining()
                ),
            )),
        }
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let slice = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A count of entries that each need at least `min_entry` bytes, checked against what remains.
    fn count(&mut self, min_entry: usize, field: &str) -> Result<usize> {
        let n = self.u64(field)?;
        let max = (self.remaining() / min_entry.max(1)) as u64;
        if n > max {
            return Err(self.err(
                field,
                format!(
                    "count {n} needs at least {min_entry} bytes each, only {} bytes remain",
                    self.remaining()
                ),
            ));
        }
        usize::try_from(n).map_err(|_| self.err(field, format!("count {n} does not fit in memory")))
    }

    fn string(&mut self, field: &str) -> Result<String> {
        let len = self.u64(field)?;
        if len > self.remaining() as u64 {
            return Err(self.err(
                field,
                format!(
                    "string length {len} exceeds the {} bytes remaining",
                    self.remaining()
                ),
            ));
        }
        let raw = self.take(len as usize, field)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.err(field, format!("string is not UTF-8: {e}"))),
        }
    }

    fn value(&mut self, type_id: u32, depth: usize, field: &str) -> Result<GgufValue> {
        use value_type::*;
        Ok(match type_id {
            U8 => GgufValue::U8(self.u8(field)?),
            I8 => GgufValue::I8(self.u8(field)? as i8),
            U16 => GgufValue::U16(self.u16(field)?),
            I16 => GgufValue::I16(self.u16(field)? as i16),
            U32 => GgufValue::U32(self.u32(field)?),
            I32 => GgufValue::I32(self.u32(field)? as i32),
            F32 => GgufValue::F32(f32::from_bits(self.u32(field)?)),
            U64 => GgufValue::U64(self.u64(field)?),
            I64 => GgufValue::I64(self.u64(field)? as i64),
            F64 => GgufValue::F64(f64::from_bits(self.u64(field)?)),
            BOOL => match self.u8(field)? {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.err(field, format!("bool byte is {b}, not 0 or 1"))),
            },
            STRING => GgufValue::String(self.string(field)?),
            ARRAY => {
                if depth >= GGUF_MAX_ARRAY_DEPTH {
                    return Err(self.err(
                        field,
                        format!("arrays nested deeper than {GGUF_MAX_ARRAY_DEPTH} levels"),
                    ));
                }
                let elem_type = self.u32(field)?;
                let min = min_value_size(elem_type)
                    .ok_or_else(|| self.err(field, format!("unknown array element type {elem_type}")))?;
                let len = self.count(min, field)?;
                // `len` is bounded by the bytes left; growth past this cap only follows real bytes.
                let mut items = Vec::with_capacity(len.min(1 << 16));
                for _ in 0..len {
                    items.push(self.value(elem_type, depth + 1, field)?);
                }
                GgufValue::Array(items)
            }
            other => return Err(self.err(field, format!("unknown value type {other}"))),
        })
    }
}

/// Name of a GGML type id, for messages about types ahead does not read.
fn ggml_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0 => "f32",
        1 => "f16",
        2 => "q4_0",
        3 => "q4_1",
        6 => "q5_0",
        7 => "q5_1",
        8 => "q8_0",
        9 => "q8_1",
        10 => "q2_k",
        11 => "q3_k",
        12 => "q4_k",
        13 => "q5_k",
        14 => "q6_k",
        15 => "q8_k",
        16 => "iq2_xxs",
        17 => "iq2_xs",
        18 => "iq3_xxs",
        19 => "iq1_s",
        20 => "iq4_nl",
        21 => "iq3_s",
        22 => "iq2_s",
        23 => "iq4_xs",
        24 => "i8",
        25 => "i16",
        26 => "i32",
        27 => "i64",
        28 => "f64",
        29 => "iq1_m",
        30 => "bf16",
        34 => "tq1_0",
        35 => "tq2_0",
        39 => "mxfp4",
        _ => return None,
    })
}

fn align_up(value: usize, alignment: usize) -> Option<usize> {
    // `alignment` is a nonzero power of two here.
    value.checked_add(alignment - 1).map(|v| v & !(alignment - 1))
}

/// Parses a GGUF v2 or v3 little-endian file held in `bytes`. `label` names the file in errors.
pub fn parse_gguf(bytes: &[u8], label: &str) -> Result<GgufFile> {
    let mut r = Reader { bytes, pos: 0, label };

    let magic = r.array::<4>("magic")?;
    if magic != GGUF_MAGIC {
        if &magic == b"FUGG" {
            return Err(ModelError::Unsupported(format!("{label}: big-endian GGUF files")));
        }
        return Err(r.err("magic", format!("expected \"GGUF\", found {magic:02x?}")));
    }
    let version = r.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(ModelError::Unsupported(format!(
                "{label}: GGUF version 1 (only versions 2 and 3 are read)"
            )))
        }
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(ModelError::Unsupported(format!(
                "{label}: big-endian GGUF files (version field reads {v:#010x})"
            )))
        }
        v => return Err(r.err("version", format!("unknown GGUF version {v}"))),
    }

    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    let need =
        (n_tensors as u128) * (MIN_TENSOR_INFO_BYTES as u128) + (n_kv as u128) * (MIN_KV_BYTES as u128);
    if need > r.remaining() as u128 {
        return Err(r.err(
            "tensor count and metadata count",
            format!(
                "{n_tensors} tensors and {n_kv} metadata entries need at least {need} bytes, only {} remain",
                r.remaining()
            ),
        ));
    }
    // Both counts are now bounded by the file length, so they fit in usize.
    let (n_tensors, n_kv) = (n_tensors as usize, n_kv as usize);

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r.string(&format!("metadata key {i}"))?;
        let field = format!("metadata {key}");
        let type_id = r.u32(&field)?;
        let value = r.value(type_id, 0, &field)?;
        if metadata.insert(key, value).is_some() {
            return Err(r.err(&field, "duplicate metadata key"));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => GGUF_DEFAULT_ALIGNMENT,
        Some(v) => match v.as_integer().and_then(|i| u32::try_from(i).ok()) {
            Some(a) if a.is_power_of_two() => a,
            _ => {
                return Err(r.err(
                    "metadata general.alignment",
                    format!("{v:?} is not a nonzero power of two"),
                ))
            }
        },
    } as usize;

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut names = HashSet::with_capacity(n_tensors);
    let mut relative_offsets = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = r.string(&format!("tensor {i} name"))?;
        let field = |what: &str| format!("tensor {name} {what}");
        let n_dims = r.u32(&field("n_dims"))?;
        if n_dims > GGUF_MAX_DIMS {
            return Err(r.err(&field("n_dims"), format!("{n_dims} > {GGUF_MAX_DIMS}")));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = r.u64(&field("shape"))?;
            if d == 0 || d > i64::MAX as u64 {
                return Err(r.err(&field("shape"), format!("dimension {d} is out of range")));
            }
            ne.push(d);
        }
        let elements = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| r.err(&field("shape"), format!("element count of {ne:?} overflows")))?;
        let type_id = r.u32(&field("type"))?;
        let dtype = TensorDType::from_ggml_id(type_id).ok_or_else(|| match ggml_type_name(type_id) {
            Some(type_name) => ModelError::Unsupported(format!(
                "{label}: tensor {name} has GGML type {type_id} ({type_name})"
            )),
            None => r.err(&field("type"), format!("unknown GGML type id {type_id}")),
        })?;
        let block = dtype.block_size() as u64;
        if ne.first().is_some_and(|&row| row % block != 0) {
            return Err(r.err(
                &field("shape"),
                format!("rows of {ne:?} are not whole {} blocks of {block}", dtype.name()),
            ));
        }
        let n_bytes = dtype
            .bytes_for(elements)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| r.err(&field("shape"), format!("byte size of {ne:?} overflows")))?;
        let offset = r.u64(&field("offset"))?;
        if offset % alignment as u64 != 0 {
            return Err(r.err(
                &field("offset"),
                format!("{offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(r.err(&field("name"), "duplicate tensor name"));
        }
        let shape = ne.iter().rev().map(|&d| d as usize).collect();
        relative_offsets.push(offset);
        tensors.push(GgufTensorInfo {
            name,
            shape,
            dtype,
            offset: 0,
            n_bytes,
        });
    }

    let data_start = align_up(r.pos, alignment).ok_or_else(|| r.err("data section offset", "overflows"))?;
    for (t, &rel) in tensors.iter_mut().zip(&relative_offsets) {
        let field = format!("tensor {} offset", t.name);
        let start = usize::try_from(rel)
            .ok()
            .and_then(|rel| data_start.checked_add(rel))
            .ok_or_else(|| ModelError::format(label, &field, format!("{rel} overflows")))?;
        start
            .checked_add(t.n_bytes)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                ModelError::format(
                    label,
                    &field,
                    format!(
                        "data at {start} + {} bytes runs past the end of the {}-byte file",
                        t.n_bytes,
                        bytes.len()
                    ),
                )
            })?;
        t.offset = start;
    }

    let mut by_offset: Vec<&GgufTensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| (t.offset, t.n_bytes));
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.offset + a.n_bytes > b.offset {
            return Err(ModelError::format(
                label,
                format!("tensor {} offset", b.name),
                format!("data overlaps tensor {}", a.name),
            ));
        }
    }

    Ok(GgufFile {
        version,
        metadata,
        tensors,
        label: label.to_owned(),
    })
}

impl GgufFile {
    /// The directory entry of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Tensor `name` viewed over `bytes` (the same bytes the file was parsed from).
    /// `None` when there is no such tensor or its range is not inside `bytes`.
    pub fn tensor<'a>(&self, bytes: &'a [u8], name: &str) -> Option<RawTensor<'a>> {
        let info = self.tensor_info(name)?;
        let end = info.offset.checked_add(info.n_bytes)?;
        Some(RawTensor {
            dtype: info.dtype,
            shape: info.shape.clone(),
            data: bytes.get(info.offset..end)?,
        })
    }

    /// The raw metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// The alignment of tensor data in this file.
    pub fn alignment(&self) -> u32 {
        match self.get_u32("general.alignment") {
            Ok(Some(a)) => a,
            _ => GGUF_DEFAULT_ALIGNMENT,
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &GgufValue) -> ModelError {
        ModelError::format(
            &self.label,
            format!("metadata {key}"),
            format!("expected {expected}, found {}", describe(found)),
        )
    }

    /// An integer of any GGUF width that fits in a u32; `Err` on another type or a value out of range.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get_int(key, "an integer that fits in u32")
    }

    /// An integer of any GGUF width that fits in a u64.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get_int(key, "an integer that fits in u64")
    }

    /// An integer of any GGUF width that fits in an i64.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        self.get_int(key, "an integer that fits in i64")
    }

    fn get_int<T: TryFrom<i128>>(&self, key: &str, expected: &str) -> Result<Option<T>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.as_integer().and_then(|i| T::try_from(i).ok()) {
            Some(x) => Ok(Some(x)),
            None => Err(self.wrong_type(key, expected, v)),
        }
    }

    /// An F32 or F64 value, as f32.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_f32()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, "a float", v))
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(GgufValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "a bool", v)),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        v.as_str()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, "a string", v))
    }

    fn get_array<'s, T>(
        &'s self,
        key: &str,
        expected: &str,
        convert: impl Fn(&'s GgufValue) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let GgufValue::Array(items) = v else {
            return Err(self.wrong_type(key, expected, v));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match convert(item) {
                Some(x) => out.push(x),
                None => {
                    return Err(ModelError::format(
                        &self.label,
                        format!("metadata {key}[{i}]"),
                        format!("expected {expected}, found {}", describe(item)),
                    ))
                }
            }
        }
        Ok(Some(out))
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.get_array(key, "an array of strings", GgufValue::as_str)
    }

    /// An array of F32 or F64 values, as f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.get_array(key, "an array of floats", GgufValue::as_f32)
    }

    /// An array of integers of any width that fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.get_array(key, "an array of integers that fit in i32", |v| {
            v.as_integer().and_then(|i| i32::try_from(i).ok())
        })
    }

    /// An array of integers of any width that fit in u32.
    pub fn get_u32_array(&self, key: &str) -> Result<Option<Vec<u32>>> {
        self.get_array(key, "an array of integers that fit in u32", |v| {
            v.as_integer().and_then(|i| u32::try_from(i).ok())
        })
    }
}

/// A short description of a value for error messages: its type and, for scalars, the value.
fn describe(v: &GgufValue) -> String {
    match v {
        GgufValue::Array(items) => format!("an array of {} items", items.len()),
        GgufValue::String(s) if s.len() > 40 => format!("a string of {} bytes", s.len()),
        GgufValue::String(s) => format!("string {s:?}"),
        other => format!("{} {other:?}", other.type_name()),
    }
}
