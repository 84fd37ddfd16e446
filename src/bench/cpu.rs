//! The CPU a bench ran on: its model name and the vector extensions its kernels can use,
//! written into every JSON line so that results from different machines are never mixed up
//! (gemm picks AVX-512 micro-kernels at run time where the CPU has them and the build has
//! the `avx512` feature, AVX2 + FMA elsewhere: the same build runs at different speeds, and
//! a build without the feature measures the AVX2 path on an AVX-512 machine).

use serde::{Deserialize, Serialize};

/// The CPU model and the vector extensions detected at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// The model name (CPUID brand string on x86, e.g. `Intel(R) Xeon(R) Processor`);
    /// `unknown (ARCH)` where it cannot be read.
    pub model: String,
    /// The SIMD extensions present and enabled by the OS, from the list of
    /// [`VECTOR_EXTENSIONS`], in that order (names as `/proc/cpuinfo` spells them).
    pub vector_extensions: Vec<String>,
    /// The matrix-multiplication micro-kernels this process uses (convolutions run through
    /// them): [`GemmKernels::name`]. Absent in lines written before it was recorded.
    #[serde(default)]
    pub gemm_kernels: String,
}

/// Which of gemm's micro-kernels run: decided at run time from the CPU and the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmKernels {
    /// AVX-512F: the CPU has it and the build enables the `avx512` cargo feature (default).
    Avx512,
    /// AVX2 + FMA: the CPU has no AVX-512, or the build was made without `avx512`.
    Avx2Fma,
    /// Portable scalar code (an x86 CPU without FMA).
    Scalar,
    /// Another architecture's kernels (NEON, …).
    Native,
}

impl GemmKernels {
    /// The kernels gemm selects in this process (the same test it makes).
    pub fn detect() -> GemmKernels {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            if cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f") {
                GemmKernels::Avx512
            } else if std::arch::is_x86_feature_detected!("fma") {
                GemmKernels::Avx2Fma
            } else {
                GemmKernels::Scalar
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        {
            GemmKernels::Native
        }
    }

    /// The name in bench lines: `avx512`, `avx2+fma`, `scalar` or `native`.
    pub fn name(self) -> &'static str {
        match self {
            GemmKernels::Avx512 => "avx512",
            GemmKernels::Avx2Fma => "avx2+fma",
            GemmKernels::Scalar => "scalar",
            GemmKernels::Native => "native",
        }
    }
}

/// The x86 extensions reported: those that matter for convolution and GEMM speed.
pub const VECTOR_EXTENSIONS: [&str; 13] = [
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx_vnni",
    "avx512f",
    "avx512cd",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
];

impl CpuInfo {
    /// Detects the CPU this process runs on.
    pub fn detect() -> CpuInfo {
        CpuInfo {
            model: model_name().unwrap_or_else(|| format!("unknown ({})", std::env::consts::ARCH)),
            vector_extensions: detected_extensions()
                .into_iter()
                .map(str::to_string)
                .collect(),
            gemm_kernels: GemmKernels::detect().name().to_string(),
        }
    }

    /// One line for reports: `MODEL (ext, ext, …), KERNELS kernels`.
    pub fn describe(&self) -> String {
        let mut s = self.model.clone();
        if !self.vector_extensions.is_empty() {
            s = format!("{s} ({})", self.vector_extensions.join(", "));
        }
        if !self.gemm_kernels.is_empty() {
            s = format!("{s}, {} kernels", self.gemm_kernels);
        }
        s
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn model_name() -> Option<String> {
    let brand = raw_cpuid::CpuId::new().get_processor_brand_string()?;
    let name = brand.as_str().trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn model_name() -> Option<String> {
    None
}

/// The entries of [`VECTOR_EXTENSIONS`] that this CPU has and the OS enables (the standard
/// library's run-time detection, which also checks that the OS saves the wide registers).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn detected_extensions() -> Vec<&'static str> {
    let present = [
        std::arch::is_x86_feature_detected!("sse4.2"),
        std::arch::is_x86_feature_detected!("avx"),
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("fma"),
        std::arch::is_x86_feature_detected!("avxvnni"),
        std::arch::is_x86_feature_detected!("avx512f"),
        std::arch::is_x86_feature_detected!("avx512cd"),
        std::arch::is_x86_feature_detected!("avx512bw"),
        std::arch::is_x86_feature_detected!("avx512dq"),
        std::arch::is_x86_feature_detected!("avx512vl"),
        std::arch::is_x86_feature_detected!("avx512vnni"),
        std::arch::is_x86_feature_detected!("avx512bf16"),
        std::arch::is_x86_feature_detected!("avx512fp16"),
    ];
    VECTOR_EXTENSIONS
        .into_iter()
        .zip(present)
        .filter_map(|(name, has)| has.then_some(name))
        .collect()
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn detected_extensions() -> Vec<&'static str> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_model_and_consistent_extensions() {
        let cpu = CpuInfo::detect();
        assert!(!cpu.model.is_empty());
        // Listed once each, in the documented order.
        let order: Vec<usize> = cpu
            .vector_extensions
            .iter()
            .map(|e| VECTOR_EXTENSIONS.iter().position(|k| k == e).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{cpu:?}");
        let has = |e: &str| cpu.vector_extensions.iter().any(|x| x == e);
        // Each AVX level implies the one below it.
        assert!(!has("avx512f") || has("avx2"), "{cpu:?}");
        assert!(!has("avx2") || has("avx"), "{cpu:?}");
        #[cfg(target_os = "linux")]
        if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
            // The same answer as the kernel's flags (which use these names).
            let flags: Vec<&str> = info
                .lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().skip(2).collect())
                .unwrap_or_default();
            if !flags.is_empty() {
                for e in VECTOR_EXTENSIONS {
                    assert_eq!(has(e), flags.contains(&e), "{e}: {cpu:?}");
                }
            }
            if let Some(name) = info.lines().find(|l| l.starts_with("model name")) {
                let name = name.split(':').nth(1).unwrap_or("").trim();
                assert_eq!(cpu.model, name);
            }
        }
        assert!(cpu.describe().starts_with(&cpu.model));
        // The kernels follow the CPU and the build.
        let expected = if has("avx512f") && cfg!(feature = "avx512") {
            "avx512"
        } else if has("fma") {
            "avx2+fma"
        } else {
            "scalar"
        };
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        assert_eq!(cpu.gemm_kernels, expected);
        assert!(
            cpu.describe()
                .ends_with(&format!("{} kernels", cpu.gemm_kernels))
        );
    }
}
