//! A GGUF file with its weights in another type (`ahead convert`): every matrix is dequantized
//! exactly (as llama.cpp's and transformers' dequantizers do) and re-encoded as F32, F16 or
//! Q8_0; metadata (architecture, tokenizer, chat template) is kept as it is. F32 holds a
//! quantized file's weights without loss, which makes it the file to compare with
//! transformers' float32 run of the same GGUF.

use candle_core::quantized::k_quants::BlockQ8_0;

use crate::error::{ModelError, Result};
use crate::format::gguf::{parse_gguf, GgufValue};
use crate::format::gguf_write::GgufWriter;
use crate::tensor::{RawTensor, TensorDType};
use crate::transformer::linear::Linear;
use crate::transformer::q8::ggml_bytes;

/// llama.cpp's `general.file_type` for a file whose matrices are all `dtype`.
fn file_type(dtype: TensorDType) -> Option<u32> {
    match dtype {
        TensorDType::F32 => Some(0),
        TensorDType::F16 => Some(1),
        TensorDType::Q8_0 => Some(7),
        _ => None,
    }
}

/// The types [`convert_gguf`] writes.
pub const CONVERT_TARGETS: [TensorDType; 3] = [TensorDType::F32, TensorDType::F16, TensorDType::Q8_0];

/// `bytes` (a GGUF file named `label`) with every matrix re-encoded as `target`; vectors (norms)
/// become F32. Errors on a target outside [`CONVERT_TARGETS`] and on tensors that cannot be
/// decoded.
pub fn convert_gguf(bytes: &[u8], label: &str, target: TensorDType) -> Result<Vec<u8>> {
    let ftype = file_type(target).ok_or_else(|| {
        ModelError::Unsupported(format!(
            "converting to {}; supported: f32, f16, q8_0",
            target.name()
        ))
    })?;
    let file = parse_gguf(bytes, label)?;
    let mut w = GgufWriter::new();
    for (key, value) in &file.metadata {
        w.add_metadata(key.clone(), value.clone());
    }
    w.add_metadata("general.file_type", GgufValue::U32(ftype));
    for info in &file.tensors {
        let raw = file
            .tensor(bytes, &info.name)
            .ok_or_else(|| ModelError::format(label, &info.name, "tensor data out of range"))?;
        let values = dequantize(&raw, &info.name)?;
        let cols = *info.shape.last().unwrap_or(&0);
        let dtype = match target {
            _ if info.shape.len() < 2 => TensorDType::F32,
            // Rows that are not whole Q8_0 blocks keep full precision.
            TensorDType::Q8_0 if cols % 32 != 0 => TensorDType::F16,
            t => t,
        };
        match dtype {
            TensorDType::F32 => w.add_tensor_f32(info.name.clone(), &info.shape, &values)?,
            TensorDType::F16 => w.add_tensor_f16(info.name.clone(), &info.shape, &values)?,
            _ => w.add_tensor_raw(
                info.name.clone(),
                TensorDType::Q8_0,
                &info.shape,
                ggml_bytes::<BlockQ8_0>(&values),
            )?,
        };
    }
    w.to_bytes()
}

/// All of a tensor's values as f32, row-major.
fn dequantize(raw: &RawTensor<'_>, name: &str) -> Result<Vec<f32>> {
    let read = |width: usize, f: fn(&[u8]) -> f32| raw.data.chunks_exact(width).map(f).collect();
    match raw.dtype {
        TensorDType::F32 => Ok(read(4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        TensorDType::F16 => Ok(read(2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())),
        TensorDType::BF16 => Ok(read(2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        _ => {
            // A quantized tensor of any rank is a matrix of its rows.
            let cols = *raw.shape.last().unwrap_or(&0);
            let rows = raw.shape.iter().rev().skip(1).product::<usize>();
            let matrix = RawTensor {
                dtype: raw.dtype,
                shape: vec![rows, cols],
                data: raw.data,
            };
            Linear::from_raw(&matrix, name)?.to_f32()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A tiny file with a Q4_0 matrix, an F32 norm and metadata.
    fn file() -> (Vec<u8>, Vec<f32>) {
        let values: Vec<f32> = (0..4 * 64)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let q4 = ggml_bytes::<candle_core::quantized::k_quants::BlockQ4_0>(&values);
        let mut w = GgufWriter::new();
        w.add_string("general.architecture", "llama");
        w.add_string("tokenizer.chat_template", "{{ x }}");
        w.add_tensor_raw("m", TensorDType::Q4_0, &[4, 64], q4).unwrap();
        w.add_tensor_f32("norm", &[64], &values[..64]).unwrap();
        (w.to_bytes().unwrap(), values)
    }

    #[test]
    fn f32_holds_the_dequantized_weights_and_keeps_metadata() {
        let (bytes, _) = file();
        let src = parse_gguf(&bytes, "src").unwrap();
        let want = dequantize(&src.tensor(&bytes, "m").unwrap(), "m").unwrap();
        for target in CONVERT_TARGETS {
            let out = convert_gguf(&bytes, "src", target).unwrap();
            let f = parse_gguf(&out, "out").unwrap();
            assert_eq!(
                f.get("tokenizer.chat_template").and_then(GgufValue::as_str),
                Some("{{ x }}")
            );
            assert_eq!(f.tensor_info("m").unwrap().dtype, target);
            assert_eq!(f.tensor_info("norm").unwrap().dtype, TensorDType::F32);
            let got = dequantize(&f.tensor(&out, "m").unwrap(), "m").unwrap();
            let tol = match target {
                TensorDType::F32 => 0.0,
                TensorDType::F16 => 1e-3,
                _ => 2e-2,
            };
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= tol, "{}: {worst}", target.name());
        }
        assert!(convert_gguf(&bytes, "src", TensorDType::Q4K).is_err());
    }
}
