//! Writing safetensors files: tensors as named, typed, shaped little-endian bytes, serialized
//! once. Medusa heads, EAGLE heads and Hugging Face folders all write through it.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{ModelError, Result};
use crate::tensor::TensorDType;
use crate::transformer::Linear;

/// One tensor as it will be written.
#[derive(Debug, Clone)]
pub struct Stored {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Stored {
    /// F32 values of `shape`.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// A vector of F32 values.
    pub fn vector(name: impl Into<String>, values: &[f32]) -> Self {
        Self::f32(name, vec![values.len()], values)
    }

    /// A matrix: F16 when it is stored as F16, else its values as F32 (a quantized matrix is
    /// written dequantized).
    pub fn matrix(name: impl Into<String>, l: &Linear) -> Result<Self> {
        let values = l.to_f32()?;
        let shape = vec![l.rows(), l.cols()];
        Ok(if l.dtype() == TensorDType::F16 {
            Self {
                name: name.into(),
                dtype: Dtype::F16,
                shape,
                data: values
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            }
        } else {
            Self::f32(name, shape, &values)
        })
    }
}

/// Writes `tensors` as one safetensors file at `path`; `what` names it in errors.
pub fn write_safetensors(path: &Path, tensors: &[Stored], what: &str) -> Result<()> {
    let mut views = HashMap::new();
    for t in tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .map_err(|e| ModelError::Input(format!("{}: {e}", t.name)))?;
        views.insert(t.name.clone(), view);
    }
    let out = safetensors::serialize(views, None)
        .map_err(|e| ModelError::Input(format!("serializing {what}: {e}")))?;
    std::fs::write(path, out).map_err(|e| ModelError::io(path, e))
}
