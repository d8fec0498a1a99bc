//! The one place that asks the CPU what it can run; every kernel dispatches on this.

/// The x86 features the kernels use, detected once per process. All false elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512vnni: bool,
}

impl CpuFeatures {
    /// AVX2 with FMA: the 8-lane element-wise backend.
    pub fn avx2_fma(self) -> bool {
        self.avx2 && self.fma
    }

    /// AVX2, FMA and F16C: the AVX2 product kernels (f16 weights widen with F16C).
    pub fn avx2_kernels(self) -> bool {
        self.avx2_fma() && self.f16c
    }

    /// AVX-512 VNNI: the integer products' fastest kernel.
    pub fn vnni(self) -> bool {
        self.avx512f && self.avx512vnni
    }
}

/// This CPU's features.
pub fn cpu() -> CpuFeatures {
    static FEATURES: std::sync::OnceLock<CpuFeatures> = std::sync::OnceLock::new();
    *FEATURES.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> CpuFeatures {
    CpuFeatures {
        avx2: is_x86_feature_detected!("avx2"),
        fma: is_x86_feature_detected!("fma"),
        f16c: is_x86_feature_detected!("f16c"),
        avx512f: is_x86_feature_detected!("avx512f"),
        avx512vnni: is_x86_feature_detected!("avx512vnni"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> CpuFeatures {
    CpuFeatures::default()
}
