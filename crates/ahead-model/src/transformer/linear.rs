//! `Linear`: one weight matrix `[rows, cols]`, float or block-quantized, applied to k input rows.
//!
//! One model type serves every dtype: the architecture code calls `Linear::forward` and never
//! matches on the storage. Half-precision weights stay half in memory and are widened exactly to
//! f32 inside the product kernel (`packed`), so compute is f32 (candle's f16/bf16 CPU paths are
//! many times slower here, see PERFORMANCE-NOTES.md).
//! Quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) are repacked for integer dot products
//! (`q8`); candle supplies the GGML block types and reference quantizers only. Q3_K and IQ4_NL
//! are held exactly as Q6_K and Q8_0, Q2_K and IQ4_XS as dequantized f32 (`q8::lowbit`); `dtype`
//! still says what the file stored.

use candle_core::quantized::k_quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use half::{bf16, f16};

use super::packed::{PackedF32, Panels};
use super::q8::{
    ggml_bytes, lowbit, Format, Packed, PackedQ4, PackedQ4K, PackedQ4_1, PackedQ5K, PackedQ5_0, PackedQ5_1,
    PackedQ6K, PackedQ8, Q4, Q4_1, Q5_0, Q5_1, Q8,
};
use crate::error::{ModelError, Result};
use crate::tensor::{RawTensor, TensorDType};

/// Weight storage.
#[derive(Debug, Clone)]
enum Storage {
    F32(PackedF32),
    F16(Panels<f16>),
    BF16(Panels<bf16>),
    Q8_0(PackedQ8),
    Q4_0(PackedQ4),
    Q4_1(PackedQ4_1),
    Q5_0(PackedQ5_0),
    Q5_1(PackedQ5_1),
    Q4K(PackedQ4K),
    Q5K(PackedQ5K),
    Q6K(PackedQ6K),
    /// The sum of two Q6_K matrices (IQ4_XS, `q8::lowbit`).
    Q6KPair(Box<(PackedQ6K, PackedQ6K)>),
}

/// A weight matrix of `rows` outputs by `cols` inputs.
#[derive(Debug, Clone)]
pub struct Linear {
    storage: Storage,
    rows: usize,
    cols: usize,
    dtype: TensorDType,
}

impl Linear {
    /// Builds a float matrix from f32 values (tests and synthetic models).
    pub fn from_f32(values: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(ModelError::Shape {
                name: "linear".into(),
                expected: vec![rows, cols],
                found: vec![values.len()],
            });
        }
        Ok(Self {
            storage: Storage::F32(PackedF32::new(&values, rows, cols)),
            rows,
            cols,
            dtype: TensorDType::F32,
        })
    }

    /// Builds a matrix from a validated 2-D raw tensor named `name` (for errors).
    pub fn from_raw(raw: &RawTensor<'_>, name: &str) -> Result<Self> {
        let [rows, cols] = raw.shape[..] else {
            return Err(ModelError::Shape {
                name: name.into(),
                expected: vec![0, 0],
                found: raw.shape.clone(),
            });
        };
        raw.validate("weights", name)?;
        let storage = match raw.dtype {
            TensorDType::F32 => Storage::F32(Panels::new(&decode(raw.data, f32::from_le_bytes), rows, cols)),
            TensorDType::F16 => Storage::F16(Panels::new(&decode(raw.data, f16::from_le_bytes), rows, cols)),
            TensorDType::BF16 => {
                Storage::BF16(Panels::new(&decode(raw.data, bf16::from_le_bytes), rows, cols))
            }
            q => {
                if !cols.is_multiple_of(q.block_size()) {
                    return Err(ModelError::format(
                        "weights",
                        name,
                        format!("row length {cols} is not a multiple of the {} block", q.name()),
                    ));
                }
                match q {
                    TensorDType::Q8_0 => Storage::Q8_0(repack::<Q8>(raw, name, rows, cols)?),
                    TensorDType::Q4_0 => Storage::Q4_0(repack::<Q4>(raw, name, rows, cols)?),
                    TensorDType::Q4_1 => Storage::Q4_1(repack::<Q4_1>(raw, name, rows, cols)?),
                    TensorDType::Q5_0 => Storage::Q5_0(repack::<Q5_0>(raw, name, rows, cols)?),
                    TensorDType::Q5_1 => Storage::Q5_1(repack::<Q5_1>(raw, name, rows, cols)?),
                    TensorDType::Q4K => {
                        check_blocks(raw, name, 256, 144)?;
                        Storage::Q4K(PackedQ4K::from_ggml(raw.data, rows, cols))
                    }
                    TensorDType::Q5K => {
                        check_blocks(raw, name, 256, 176)?;
                        Storage::Q5K(PackedQ5K::from_ggml(raw.data, rows, cols))
                    }
                    TensorDType::Q6K => {
                        check_blocks(raw, name, 256, 210)?;
                        Storage::Q6K(PackedQ6K::from_ggml(raw.data, rows, cols))
                    }
                    // Held in other layouts with the same values (`q8::lowbit`).
                    TensorDType::Q3K => {
                        check_blocks(raw, name, 256, q.block_bytes())?;
                        Storage::Q6K(PackedQ6K::from_ggml(&lowbit::q3k_as_q6k(raw.data), rows, cols))
                    }
                    TensorDType::IQ4NL => {
                        check_blocks(raw, name, 32, q.block_bytes())?;
                        Storage::Q8_0(Packed::from_ggml(&lowbit::iq4nl_as_q8_0(raw.data), rows, cols))
                    }
                    TensorDType::Q2K => {
                        check_blocks(raw, name, 256, q.block_bytes())?;
                        Storage::Q6K(PackedQ6K::from_q2k(raw.data, rows, cols))
                    }
                    TensorDType::IQ4XS => {
                        check_blocks(raw, name, 256, q.block_bytes())?;
                        iq4xs_storage(raw.data, rows, cols)
                    }
                    other => return Err(ModelError::Unsupported(format!("{name}: dtype {}", other.name()))),
                }
            }
        };
        Ok(Self {
            storage,
            rows,
            cols,
            dtype: raw.dtype,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The dtype the file stored (f16/bf16 are computed in f32).
    pub fn dtype(&self) -> TensorDType {
        self.dtype
    }

    /// Bytes the weights occupy in memory.
    pub fn bytes(&self) -> usize {
        match &self.storage {
            Storage::F32(w) => w.bytes(),
            Storage::F16(w) => w.bytes(),
            Storage::BF16(w) => w.bytes(),
            Storage::Q8_0(w) => w.bytes(),
            Storage::Q4_0(w) => w.bytes(),
            Storage::Q4_1(w) => w.bytes(),
            Storage::Q5_0(w) => w.bytes(),
            Storage::Q5_1(w) => w.bytes(),
            Storage::Q4K(w) => w.bytes(),
            Storage::Q5K(w) => w.bytes(),
            Storage::Q6K(w) => w.bytes(),
            Storage::Q6KPair(w) => w.0.bytes() + w.1.bytes(),
        }
    }

    /// `out[r][o] = x[r] . w[o]` for `k` rows of `x` (`[k, cols]` in, `[k, rows]` out).
    pub fn forward(&self, x: &[f32], k: usize, out: &mut [f32]) -> Result<()> {
        if x.len() != k * self.cols || out.len() != k * self.rows {
            return Err(ModelError::Input(format!(
                "linear [{}x{}] given {} inputs and {} outputs for {k} rows",
                self.rows,
                self.cols,
                x.len(),
                out.len()
            )));
        }
        match &self.storage {
            Storage::F32(w) => w.matmul(x, k, out),
            Storage::F16(w) => w.matmul(x, k, out),
            Storage::BF16(w) => w.matmul(x, k, out),
            Storage::Q8_0(w) => w.matmul(x, k, out),
            Storage::Q4_0(w) => w.matmul(x, k, out),
            Storage::Q4_1(w) => w.matmul(x, k, out),
            Storage::Q5_0(w) => w.matmul(x, k, out),
            Storage::Q5_1(w) => w.matmul(x, k, out),
            Storage::Q4K(w) => w.matmul(x, k, out),
            Storage::Q5K(w) => w.matmul(x, k, out),
            Storage::Q6K(w) => w.matmul(x, k, out),
            Storage::Q6KPair(w) => {
                w.0.matmul(x, k, out);
                let mut low = vec![0f32; out.len()];
                w.1.matmul(x, k, &mut low);
                out.iter_mut().zip(&low).for_each(|(o, l)| *o += l);
            }
        }
        Ok(())
    }

    /// Row `index` as f32 (embedding lookups).
    pub fn row(&self, index: usize, out: &mut [f32]) -> Result<()> {
        if index >= self.rows || out.len() != self.cols {
            return Err(ModelError::Input(format!(
                "row {index} of a {}-row matrix into {} values",
                self.rows,
                out.len()
            )));
        }
        match &self.storage {
            Storage::F32(w) => w.row(index, out),
            Storage::F16(w) => w.row(index, out),
            Storage::BF16(w) => w.row(index, out),
            Storage::Q8_0(w) => w.row(index, out),
            Storage::Q4_0(w) => w.row(index, out),
            Storage::Q4_1(w) => w.row(index, out),
            Storage::Q5_0(w) => w.row(index, out),
            Storage::Q5_1(w) => w.row(index, out),
            Storage::Q4K(w) => w.row(index, out),
            Storage::Q5K(w) => w.row(index, out),
            Storage::Q6K(w) => w.row(index, out),
            Storage::Q6KPair(w) => {
                w.0.row(index, out);
                let mut low = vec![0f32; out.len()];
                w.1.row(index, &mut low);
                out.iter_mut().zip(&low).for_each(|(o, l)| *o += l);
            }
        }
        Ok(())
    }
}

/// Little-endian elements of `N` bytes each, decoded by `from`.
fn decode<T, const N: usize>(data: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|b| from(std::array::from_fn(|i| b[i])))
        .collect()
}

/// Repacks a tensor of blocks of 32 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) into integer-product panels, after checking its length.
fn repack<F: Format>(raw: &RawTensor<'_>, name: &str, rows: usize, cols: usize) -> Result<Packed<F>> {
    check_blocks(raw, name, 32, F::GGML_BLOCK)?;
    Ok(Packed::from_ggml(raw.data, rows, cols))
}

impl Linear {
    /// Quantizes f32 values into `dtype` blocks (synthetic models and tests).
    pub fn quantize(values: &[f32], rows: usize, cols: usize, dtype: TensorDType) -> Result<Self> {
        if values.len() != rows * cols || !cols.is_multiple_of(dtype.block_size()) {
            return Err(ModelError::Shape {
                name: "quantize".into(),
                expected: vec![rows, cols],
                found: vec![values.len()],
            });
        }
        let storage = match dtype {
            TensorDType::F32 => Storage::F32(PackedF32::new(values, rows, cols)),
            TensorDType::F16 => {
                let v: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
                Storage::F16(Panels::new(&v, rows, cols))
            }
            TensorDType::BF16 => {
                let v: Vec<bf16> = values.iter().map(|&x| bf16::from_f32(x)).collect();
                Storage::BF16(Panels::new(&v, rows, cols))
            }
            TensorDType::Q8_0 => Storage::Q8_0(PackedQ8::quantize(values, rows, cols)),
            TensorDType::Q4_0 => Storage::Q4_0(PackedQ4::quantize(values, rows, cols)),
            TensorDType::Q4_1 => Storage::Q4_1(PackedQ4_1::quantize(values, rows, cols)),
            TensorDType::Q5_0 => Storage::Q5_0(PackedQ5_0::quantize(values, rows, cols)),
            TensorDType::Q5_1 => Storage::Q5_1(PackedQ5_1::quantize(values, rows, cols)),
            TensorDType::Q4K => {
                Storage::Q4K(PackedQ4K::from_ggml(&ggml_bytes::<BlockQ4K>(values), rows, cols))
            }
            TensorDType::Q5K => {
                Storage::Q5K(PackedQ5K::from_ggml(&ggml_bytes::<BlockQ5K>(values), rows, cols))
            }
            TensorDType::Q6K => {
                Storage::Q6K(PackedQ6K::from_ggml(&ggml_bytes::<BlockQ6K>(values), rows, cols))
            }
            TensorDType::Q3K => Storage::Q6K(PackedQ6K::from_ggml(
                &lowbit::q3k_as_q6k(&ggml_bytes::<BlockQ3K>(values)),
                rows,
                cols,
            )),
            TensorDType::IQ4NL => Storage::Q8_0(Packed::from_ggml(
                &lowbit::iq4nl_as_q8_0(&lowbit::quantize_iq4nl(values)),
                rows,
                cols,
            )),
            TensorDType::Q2K => {
                Storage::Q6K(PackedQ6K::from_q2k(&ggml_bytes::<BlockQ2K>(values), rows, cols))
            }
            TensorDType::IQ4XS => iq4xs_storage(&lowbit::quantize_iq4xs(values), rows, cols),
        };
        Ok(Self {
            storage,
            rows,
            cols,
            dtype,
        })
    }
}

/// IQ4_XS as two Q6_K matrices, or (for a scale no real file has) its dequantized f32.
fn iq4xs_storage(data: &[u8], rows: usize, cols: usize) -> Storage {
    match lowbit::iq4xs_as_q6k_pair(data) {
        Some((high, low)) => Storage::Q6KPair(Box::new((
            PackedQ6K::from_ggml(&high, rows, cols),
            PackedQ6K::from_ggml(&low, rows, cols),
        ))),
        None => Storage::F32(PackedF32::new(&lowbit::dequantize_iq4xs(data), rows, cols)),
    }
}

/// Checks that a quantized tensor holds whole blocks of `weights` weights, `bytes` each.
fn check_blocks(raw: &RawTensor<'_>, name: &str, weights: usize, bytes: usize) -> Result<()> {
    let blocks = raw.shape.iter().product::<usize>() / weights;
    if raw.data.len() != blocks * bytes {
        return Err(ModelError::format(
            "weights",
            name,
            format!(
                "{} bytes are not {blocks} {} blocks",
                raw.data.len(),
                raw.dtype.name()
            ),
        ));
    }
    Ok(())
}

impl Linear {
    /// All weights as f32, row-major (dequantized if needed). For export and tests.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.row(r, row)?;
        }
        Ok(out)
    }
}

/// candle's block sizes must equal the file format's, or repacking their bytes is wrong.
#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
    use candle_core::quantized::GgmlType;

    #[test]
    fn block_layouts_match_the_file_format() {
        assert_eq!(std::mem::size_of::<BlockQ8_0>(), TensorDType::Q8_0.block_bytes());
        assert_eq!(
            std::mem::size_of::<candle_core::quantized::k_quants::BlockQ4_0>(),
            TensorDType::Q4_0.block_bytes()
        );
        assert_eq!(std::mem::size_of::<BlockQ4_1>(), TensorDType::Q4_1.block_bytes());
        assert_eq!(std::mem::size_of::<BlockQ5_0>(), TensorDType::Q5_0.block_bytes());
        assert_eq!(std::mem::size_of::<BlockQ5_1>(), TensorDType::Q5_1.block_bytes());
        assert_eq!(std::mem::size_of::<BlockQ4K>(), TensorDType::Q4K.block_bytes());
        assert_eq!(std::mem::size_of::<BlockQ5K>(), TensorDType::Q5K.block_bytes());
        assert_eq!(std::mem::size_of::<BlockQ6K>(), TensorDType::Q6K.block_bytes());
        assert_eq!(std::mem::size_of::<BlockQ2K>(), TensorDType::Q2K.block_bytes());
        assert_eq!(std::mem::size_of::<BlockQ3K>(), TensorDType::Q3K.block_bytes());
    }

    /// Quantize random weights with candle, run our Linear, compare with the dequantized f32 path.
    fn quantized_matches_dequantized<T: GgmlType>(dtype: TensorDType) {
        let (rows, cols, k) = (8, 512, 3);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 997) as f32 / 500.0 - 1.0)
            .collect();
        let mut blocks = vec![T::zeros(); rows * cols / T::BLCK_SIZE];
        T::from_float(&w, &mut blocks);
        let bytes = unsafe {
            std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(&blocks[..]))
        };
        let raw = RawTensor {
            dtype,
            shape: vec![rows, cols],
            data: bytes,
        };
        let lin = Linear::from_raw(&raw, "w").unwrap();
        let mut deq = vec![0f32; rows * cols];
        T::to_float(&blocks, &mut deq);
        let x: Vec<f32> = (0..k * cols)
            .map(|i| ((i * 31) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let mut got = vec![0f32; k * rows];
        lin.forward(&x, k, &mut got).unwrap();
        let mut want = vec![0f32; k * rows];
        PackedF32::new(&deq, rows, cols).matmul(&x, k, &mut want);
        for (a, b) in got.iter().zip(&want) {
            // Activations are quantized to 8 bits too: allow ~1% of the magnitude.
            assert!(
                (a - b).abs() < 0.02 * (1.0 + b.abs()) + 0.3,
                "{dtype:?}: {a} vs {b}"
            );
        }
        let mut row = vec![0f32; cols];
        lin.row(5, &mut row).unwrap();
        assert_eq!(&row[..], &deq[5 * cols..6 * cols]);
    }

    #[test]
    fn half_precision_files_stay_half_and_compute_as_their_f32_widening() {
        let (rows, cols, k) = (21, 40, 3);
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 997) as f32 / 300.0 - 1.5)
            .collect();
        let x: Vec<f32> = (0..k * cols)
            .map(|i| ((i * 31) % 101) as f32 / 50.0 - 1.0)
            .collect();
        for dtype in [TensorDType::F16, TensorDType::BF16] {
            let (bytes, widened): (Vec<u8>, Vec<f32>) = if dtype == TensorDType::F16 {
                let h: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
                (
                    h.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    h.iter().map(|v| v.to_f32()).collect(),
                )
            } else {
                let h: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
                (
                    h.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    h.iter().map(|v| v.to_f32()).collect(),
                )
            };
            let raw = RawTensor {
                dtype,
                shape: vec![rows, cols],
                data: &bytes,
            };
            let half = Linear::from_raw(&raw, "w").unwrap();
            let full = Linear::from_f32(widened.clone(), rows, cols).unwrap();
            assert_eq!(
                half.bytes() * 2,
                full.bytes(),
                "{dtype:?} keeps two bytes a weight"
            );
            let (mut a, mut b) = (vec![0f32; k * rows], vec![0f32; k * rows]);
            half.forward(&x, k, &mut a).unwrap();
            full.forward(&x, k, &mut b).unwrap();
            assert_eq!(a, b, "{dtype:?} products");
            assert_eq!(half.to_f32().unwrap(), widened, "{dtype:?} rows");
            // Synthetic models round to the type too.
            let q = Linear::quantize(&values, rows, cols, dtype).unwrap();
            assert_eq!(q.to_f32().unwrap(), widened, "{dtype:?} quantize");
        }
    }

    #[test]
    fn quantized_types_match_their_dequantized_weights() {
        quantized_matches_dequantized::<BlockQ8_0>(TensorDType::Q8_0);
        quantized_matches_dequantized::<candle_core::quantized::k_quants::BlockQ4_0>(TensorDType::Q4_0);
        quantized_matches_dequantized::<BlockQ4_1>(TensorDType::Q4_1);
        quantized_matches_dequantized::<BlockQ5_0>(TensorDType::Q5_0);
        quantized_matches_dequantized::<BlockQ5_1>(TensorDType::Q5_1);
        quantized_matches_dequantized::<BlockQ4K>(TensorDType::Q4K);
        quantized_matches_dequantized::<BlockQ5K>(TensorDType::Q5K);
        quantized_matches_dequantized::<BlockQ6K>(TensorDType::Q6K);
        quantized_matches_dequantized::<BlockQ2K>(TensorDType::Q2K);
        quantized_matches_dequantized::<BlockQ3K>(TensorDType::Q3K);
    }

    /// IQ4_NL and IQ4_XS files load with exactly the values GGML dequantizes them to, and
    /// multiply as those values do.
    #[test]
    fn iq4_files_load_as_their_dequantized_values() {
        let (rows, cols, k) = (5, 512, 2);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 997) as f32 / 500.0 - 1.0)
            .collect();
        let x: Vec<f32> = (0..k * cols)
            .map(|i| ((i * 31) % 101) as f32 / 50.0 - 1.0)
            .collect();
        for dtype in [TensorDType::IQ4NL, TensorDType::IQ4XS] {
            let (bytes, deq) = if dtype == TensorDType::IQ4NL {
                let b = lowbit::quantize_iq4nl(&w);
                let q8 = lowbit::iq4nl_as_q8_0(&b);
                let mut deq = vec![0f32; w.len()];
                let blocks: Vec<BlockQ8_0> = q8
                    .chunks_exact(34)
                    .map(|c| {
                        let mut blk = BlockQ8_0::zeros();
                        // SAFETY (test): BlockQ8_0 is 34 plain bytes.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                c.as_ptr(),
                                (&mut blk as *mut BlockQ8_0).cast::<u8>(),
                                34,
                            )
                        };
                        blk
                    })
                    .collect();
                BlockQ8_0::to_float(&blocks, &mut deq);
                (b, deq)
            } else {
                let b = lowbit::quantize_iq4xs(&w);
                let deq = lowbit::dequantize_iq4xs(&b);
                (b, deq)
            };
            assert_eq!(
                bytes.len(),
                rows * cols / dtype.block_size() * dtype.block_bytes()
            );
            let raw = RawTensor {
                dtype,
                shape: vec![rows, cols],
                data: &bytes,
            };
            let lin = Linear::from_raw(&raw, "w").unwrap();
            assert_eq!(lin.dtype(), dtype);
            assert_eq!(lin.to_f32().unwrap(), deq, "{dtype:?}");
            let (mut got, mut want) = (vec![0f32; k * rows], vec![0f32; k * rows]);
            lin.forward(&x, k, &mut got).unwrap();
            PackedF32::new(&deq, rows, cols).matmul(&x, k, &mut want);
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() < 0.02 * (1.0 + b.abs()) + 0.3,
                    "{dtype:?}: {a} vs {b}"
                );
            }
        }
    }
}
