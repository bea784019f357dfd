//! What every kernel shares: run-time dispatch to the widest vector unit of this CPU, branch-free
//! `exp`, `tanh` and `sigmoid` that vectorise, and reductions over independent lanes.
//!
//! The crate is built for the baseline x86-64 target (SSE2), for which LLVM vectorises 4 wide and
//! turns `exp` into a library call per element. [`dispatch`] runs a closure inside a function
//! compiled for AVX-512 (or AVX2 + FMA) when the CPU has it; everything the closure calls must be
//! `#[inline(always)]` so that it is compiled for those instructions too. Reductions keep
//! [`LANES`] partial sums, which LLVM maps onto vector registers (a single running sum cannot be
//! vectorised without reordering the additions, which it does not do on its own).

/// Partial sums kept by the reductions: two AVX-512 registers, four AVX2 ones.
const LANES: usize = 32;

/// Runs `f` compiled for AVX-512 or AVX2 + FMA where the CPU has them, else as built. Mark the
/// closure `#[inline(always)]`, and the functions it calls too.
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2,lzcnt")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU has every feature `avx512` is compiled for (checked just above;
            // AVX-512 implies AVX2, FMA, BMI and LZCNT on every x86-64 CPU that has it).
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("bmi2")
            && std::is_x86_feature_detected!("lzcnt")
        {
            // SAFETY: the CPU has every feature `avx2` is compiled for (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `e^x` to within 2e-7 relative (Cephes' polynomial after reduction by powers of two), for
/// x in [-87.3, 88.7]; clamped outside (so e^-inf gives 1e-38, not 0: mask by index instead).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_54, 88.722_83);
    // Round to the nearest integer by the 1.5 x 2^23 trick, which vectorises everywhere.
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from the exponent bits; n is in [-126, 128], and 2^128 only with y < 1.
    let half = (n * 0.5) as i32;
    let scale_a = f32::from_bits(((half + 127) << 23) as u32);
    let scale_b = f32::from_bits(((n as i32 - half + 127) << 23) as u32);
    y * scale_a * scale_b
}

/// `tanh(x)` to within 4e-7 absolute and relative (the 13/6 rational approximation Eigen uses);
/// exactly ±1 beyond |x| = 7.9.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 + -8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    p * x / q
}

/// The logistic function `1 / (1 + e^-x)`, written as the training file writes it.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (exp(-x) + 1.0)
}

/// `Σ a_i b_i` over the shorter of the two.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (a_lanes, a_tail) = a.as_chunks::<LANES>();
    let (b_lanes, b_tail) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (a, b) in a_lanes.iter().zip(b_lanes) {
        for j in 0..LANES {
            acc[j] += a[j] * b[j];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f32>() + tail
}

/// `Σ a_i²`.
#[inline(always)]
pub(crate) fn sum_sq(a: &[f32]) -> f32 {
    dot(a, a)
}

/// `Σ a_i`.
#[inline(always)]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let (lanes, tail) = a.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for a in lanes {
        for j in 0..LANES {
            acc[j] += a[j];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// The largest element (-inf for an empty slice).
#[inline(always)]
pub(crate) fn max(a: &[f32]) -> f32 {
    let (lanes, tail) = a.as_chunks::<LANES>();
    let mut acc = [f32::NEG_INFINITY; LANES];
    for a in lanes {
        for j in 0..LANES {
            acc[j] = acc[j].max(a[j]);
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}
