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
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    IQ4NL,
    IQ4XS,
}

/// One weight format's facts as GGML defines them: its name, GGML type id, and block.
#[derive(Debug, Clone, Copy)]
pub struct DTypeInfo {
    pub dtype: TensorDType,
    /// Lowercase name, as on the command line and in `inspect`.
    pub name: &'static str,
    /// The type id in GGUF files.
    pub ggml_id: u32,
    /// Elements per block (1 for float types), and bytes per block.
    pub block_size: usize,
    pub block_bytes: usize,
}

const fn info(
    dtype: TensorDType,
    name: &'static str,
    ggml_id: u32,
    block_size: usize,
    block_bytes: usize,
) -> DTypeInfo {
    DTypeInfo {
        dtype,
        name,
        ggml_id,
        block_size,
        block_bytes,
    }
}

/// The format registry: every type ahead reads. How each is computed lives in
/// `transformer::linear` (and `transformer::q8` for the integer kernels).
pub const DTYPES: [DTypeInfo; 15] = [
    info(TensorDType::F32, "f32", 0, 1, 4),
    info(TensorDType::F16, "f16", 1, 1, 2),
    info(TensorDType::BF16, "bf16", 30, 1, 2),
    info(TensorDType::Q8_0, "q8_0", 8, 32, 34),
    info(TensorDType::Q4_0, "q4_0", 2, 32, 18),
    info(TensorDType::Q4_1, "q4_1", 3, 32, 20),
    info(TensorDType::Q5_0, "q5_0", 6, 32, 22),
    info(TensorDType::Q5_1, "q5_1", 7, 32, 24),
    info(TensorDType::Q2K, "q2_k", 10, 256, 84),
    info(TensorDType::Q3K, "q3_k", 11, 256, 110),
    info(TensorDType::Q4K, "q4_k", 12, 256, 144),
    info(TensorDType::Q5K, "q5_k", 13, 256, 176),
    info(TensorDType::Q6K, "q6_k", 14, 256, 210),
    info(TensorDType::IQ4NL, "iq4_nl", 20, 32, 18),
    info(TensorDType::IQ4XS, "iq4_xs", 23, 256, 136),
];

impl TensorDType {
    /// This type's row of [`DTYPES`].
    pub fn info(self) -> &'static DTypeInfo {
        // Every variant has a row (a unit test checks); the first is the compiler's fallback.
        DTYPES.iter().find(|i| i.dtype == self).unwrap_or(&DTYPES[0])
    }

    /// Elements per block (1 for float types).
    pub fn block_size(self) -> usize {
        self.info().block_size
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.info().block_bytes
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
        DTYPES.iter().find(|i| i.ggml_id == id).map(|i| i.dtype)
    }

    /// This type's GGML id.
    pub fn ggml_id(self) -> u32 {
        self.info().ggml_id
    }

    /// Short lowercase name as used on the command line and in `inspect`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The type a lowercase name names.
    pub fn from_name(name: &str) -> Option<Self> {
        DTYPES.iter().find(|i| i.name == name).map(|i| i.dtype)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_has_one_row_and_round_trips_its_id_and_name() {
        for i in &DTYPES {
            assert_eq!(i.dtype.info().name, i.name);
            assert_eq!(TensorDType::from_ggml_id(i.ggml_id), Some(i.dtype));
            assert_eq!(TensorDType::from_name(i.name), Some(i.dtype));
        }
    }
}
