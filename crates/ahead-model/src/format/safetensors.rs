//! safetensors reader and `model.safetensors.index.json` reader, with every check done here.
//!
//! The JSON header is read with serde visitors that reject duplicate names (a plain map would keep
//! the last one silently). The tensors must tile the data buffer exactly: no gaps, no overlaps.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::tensor::{RawTensor, TensorDType};

/// Largest header accepted (the same cap as the `safetensors` crate).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Where one tensor lies in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetensorsTensorInfo {
    pub dtype: TensorDType,
    /// Row-major shape, outermost first.
    pub shape: Vec<usize>,
    /// Absolute byte range of the tensor's data in the file.
    pub range: Range<usize>,
}

/// A parsed safetensors file: metadata and tensor directory (the data stays in the caller's bytes).
#[derive(Debug, Clone)]
pub struct SafetensorsFile {
    /// The `__metadata__` string map (empty when absent).
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, SafetensorsTensorInfo>,
    /// Absolute offset of the data buffer (8 + header length).
    pub data_start: usize,
    /// A label for error messages (usually the path).
    pub label: String,
}

/// Another name for [`SafetensorsFile`]: what [`parse_safetensors`] returns.
pub type SafetensorsHeader = SafetensorsFile;

impl SafetensorsFile {
    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.keys().map(String::as_str)
    }

    /// Tensor `name` viewed over `bytes` (the same bytes the file was parsed from).
    /// `None` when there is no such tensor or its range is not inside `bytes`.
    pub fn tensor<'a>(&self, bytes: &'a [u8], name: &str) -> Option<RawTensor<'a>> {
        let info = self.tensors.get(name)?;
        Some(RawTensor {
            dtype: info.dtype,
            shape: info.shape.clone(),
            data: bytes.get(info.range.clone())?,
        })
    }
}

/// One header entry as written in JSON; checked afterwards.
#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: Vec<u64>,
}

enum HeaderItem {
    Metadata(BTreeMap<String, String>),
    Tensor(String, RawEntry),
}

/// The header as a list of items in file order; duplicates rejected while reading.
struct RawHeader(Vec<HeaderItem>);

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawHeader, A::Error> {
                let mut items = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("duplicate entry {key:?}")));
                    }
                    if key == "__metadata__" {
                        items.push(HeaderItem::Metadata(map.next_value::<StringMap>()?.0));
                    } else {
                        let entry = map
                            .next_value::<RawEntry>()
                            .map_err(|e| de::Error::custom(format!("tensor {key}: {e}")))?;
                        items.push(HeaderItem::Tensor(key, entry));
                    }
                }
                Ok(RawHeader(items))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON object of string values with unique keys.
struct StringMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<StringMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<String>()?;
                    if out.insert(key.clone(), value).is_some() {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                }
                Ok(StringMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn dtype_from_str(s: &str) -> Option<TensorDType> {
    match s {
        "F32" => Some(TensorDType::F32),
        "F16" => Some(TensorDType::F16),
        "BF16" => Some(TensorDType::BF16),
        _ => None,
    }
}

/// Parses a safetensors file held in `bytes`. `label` names the file in errors.
pub fn parse_safetensors(bytes: &[u8], label: &str) -> Result<SafetensorsFile> {
    let err = |field: &str, reason: String| ModelError::format(label, field, reason);
    let len_bytes: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| {
        err(
            "header length",
            format!("file has {} bytes, needs at least 8", bytes.len()),
        )
    })?;
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_HEADER_BYTES {
        return Err(err(
            "header length",
            format!("{n} bytes exceeds the {MAX_HEADER_BYTES}-byte cap"),
        ));
    }
    let data_start = n
        .checked_add(8)
        .and_then(|end| usize::try_from(end).ok())
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            err(
                "header length",
                format!("{n} bytes runs past the end of the {}-byte file", bytes.len()),
            )
        })?;
    let header = bytes.get(8..data_start).unwrap_or_default();
    let data_len = bytes.len() - data_start;

    let text = std::str::from_utf8(header).map_err(|e| err("header", format!("not UTF-8: {e}")))?;
    if !text.starts_with('{') {
        return Err(err("header", "does not start with '{'".into()));
    }
    let raw: RawHeader = serde_json::from_str(text).map_err(|e| err("header", e.to_string()))?;

    let mut metadata = BTreeMap::new();
    let mut tensors = BTreeMap::new();
    for item in raw.0 {
        let (name, entry) = match item {
            HeaderItem::Metadata(m) => {
                metadata = m;
                continue;
            }
            HeaderItem::Tensor(name, entry) => (name, entry),
        };
        let field = |what: &str| format!("tensor {name} {what}");
        let dtype = dtype_from_str(&entry.dtype).ok_or_else(|| {
            ModelError::Unsupported(format!("{label}: tensor {name} has dtype {:?}", entry.dtype))
        })?;
        let [begin, end] = entry.data_offsets[..] else {
            return Err(err(
                &field("data_offsets"),
                format!("{:?} does not hold 2 offsets", entry.data_offsets),
            ));
        };
        if begin > end {
            return Err(err(&field("data_offsets"), format!("begin {begin} > end {end}")));
        }
        if end > data_len as u64 {
            return Err(err(
                &field("data_offsets"),
                format!("end {end} is past the {data_len}-byte data buffer"),
            ));
        }
        // checked_mul fails on any overflow, so a product that would wrap to 0 is caught too.
        let n_bytes = entry
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|elements| dtype.bytes_for(elements))
            .ok_or_else(|| err(&field("shape"), format!("size of {:?} overflows", entry.shape)))?;
        if n_bytes != end - begin {
            return Err(err(
                &field("shape"),
                format!(
                    "{:?} of {} needs {n_bytes} bytes, data_offsets span {}",
                    entry.shape,
                    entry.dtype,
                    end - begin
                ),
            ));
        }
        // A zero dim makes the product 0 whatever the others are; the others must still be sane
        // (strides over them must not overflow), so the product of the nonzero dims is checked too.
        let shape: Vec<usize> = entry
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d.max(1)).ok()?))
            .and_then(|_| entry.shape.iter().map(|&d| usize::try_from(d).ok()).collect())
            .ok_or_else(|| {
                err(
                    &field("shape"),
                    format!("dimensions of {:?} overflow", entry.shape),
                )
            })?;
        let range = data_start + begin as usize..data_start + end as usize;
        tensors.insert(name, SafetensorsTensorInfo { dtype, shape, range });
    }

    let mut by_offset: Vec<(&String, &Range<usize>)> = tensors.iter().map(|(k, v)| (k, &v.range)).collect();
    by_offset.sort_by_key(|(_, r)| (r.start, r.end));
    let mut cursor = data_start;
    for (name, range) in by_offset {
        if range.start != cursor {
            let what = if range.start < cursor {
                "overlaps the tensor before it"
            } else {
                "leaves a gap before it"
            };
            return Err(err(
                &format!("tensor {name} data_offsets"),
                format!(
                    "begin {} {what} (expected {})",
                    range.start - data_start,
                    cursor - data_start
                ),
            ));
        }
        cursor = range.end;
    }
    if cursor != bytes.len() {
        return Err(err(
            "data_offsets",
            format!(
                "tensors cover {} of the {data_len} data bytes",
                cursor - data_start
            ),
        ));
    }

    Ok(SafetensorsFile {
        metadata,
        tensors,
        data_start,
        label: label.to_owned(),
    })
}

/// `weight_map` with unique tensor names.
struct WeightMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for WeightMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(WeightMap(StringMap::deserialize(d)?.0))
    }
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: WeightMap,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<IgnoredAny>,
}

/// Whether `name` is a plain shard file name: no directories, no `..`, ends in `.safetensors`.
fn is_plain_shard_name(name: &str) -> bool {
    let stem = name.strip_suffix(".safetensors").unwrap_or_default();
    !stem.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', ':'])
        && !name.chars().any(char::is_control)
}

/// Parses `model.safetensors.index.json`: tensor name -> shard file name (in the same folder).
/// Shard names must be plain relative file names ending in `.safetensors`.
pub fn parse_safetensors_index(json_bytes: &[u8], label: &str) -> Result<BTreeMap<String, String>> {
    let raw: RawIndex =
        serde_json::from_slice(json_bytes).map_err(|e| ModelError::format(label, "index", e.to_string()))?;
    let map = raw.weight_map.0;
    for (tensor, shard) in &map {
        if !is_plain_shard_name(shard) {
            return Err(ModelError::format(
                label,
                format!("weight_map {tensor}"),
                format!("shard {shard:?} is not a plain file name ending in .safetensors"),
            ));
        }
    }
    Ok(map)
}
