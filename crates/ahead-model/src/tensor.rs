//! Raw tensors as files hold them: a dtype, a row-major shape and a byte slice.

use crate::error::{ModelError, Result};

/// Element types ahead can read from model files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TensorDType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
}

impl TensorDType {
    /// Elements per block (1 for float types).
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q8_0 | Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q8_0 => 34,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Whether this is a block-quantized type.
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes needed for `elements` elements, with checked arithmetic.
    /// Errors when the count is not a whole number of blocks or the size overflows.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !elements.is_multiple_of(bs) {
            return None;
        }
        (elements / bs).checked_mul(self.block_bytes() as u64)
    }

    /// The GGML type id used in GGUF files.
    pub fn from_ggml_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// Short lowercase name as used on the command line and in `inspect`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q4K => "q4_k",
            Self::Q5K => "q5_k",
            Self::Q6K => "q6_k",
        }
    }
}

/// A tensor as stored in a file: row-major `shape` (outermost first) over `data`.
#[derive(Debug, Clone)]
pub struct RawTensor<'a> {
    pub dtype: TensorDType,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl RawTensor<'_> {
    /// Number of elements, checked.
    pub fn elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// Checks that `data` holds exactly the bytes the dtype and shape need.
    pub fn validate(&self, file: &str, name: &str) -> Result<()> {
        let elements = self
            .elements()
            .ok_or_else(|| ModelError::format(file, name, "element count overflows"))?;
        let need = self.dtype.bytes_for(elements as u64).ok_or_else(|| {
            ModelError::format(
                file,
                name,
                format!("{elements} elements are not whole {} blocks", self.dtype.name()),
            )
        })?;
        if need != self.data.len() as u64 {
            return Err(ModelError::format(
                file,
                name,
                format!(
                    "shape {:?} needs {need} bytes, found {}",
                    self.shape,
                    self.data.len()
                ),
            ));
        }
        Ok(())
    }
}
