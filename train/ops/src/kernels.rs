//! The CUDA kernels (`kernels/*.cu`) as the Rust side launches them: each kernel's file, name,
//! element types and parameters, and the launch geometries the kernels are written for.
//!
//! One table serves three readers. The CUDA launch code ([`crate::cuda`]) takes each kernel's
//! parameters as a type, so the compiler checks every launch's arguments against them; the CPU
//! tests (`tests/kernels_emulated.rs`) check the table against the kernels' C++ signatures and
//! run the emulated kernels with the geometries below; `build-cuda.sh` checks that every entry
//! point is in the PTX. It is built without the `cuda` feature too, so that CI checks it.

use std::marker::PhantomData;

use candle_core::{bail, Result};

// ---------------------------------------------------------------------------------------------
// Parameters

/// A kernel parameter, as the C++ declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// `int`: a size or count that fits 32 bits (checked by the launch code).
    Int,
    /// `size_t`: an element count of a grid-stride loop.
    Size,
    /// `float`: a scale or setting.
    Float,
    /// `const E*`: a buffer the kernel reads.
    In(Elem),
    /// `E*`: a buffer the kernel writes (or adds into).
    Out(Elem),
}

/// The element type behind a pointer parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// The type the kernel is instantiated for: f32 or bf16, its entry point's suffix.
    Same,
    /// `float` whatever the instantiation (saved statistics, the optimizer's settings).
    F32,
    /// `uint32_t` (ids and targets).
    U32,
}

impl Param {
    /// The C++ type of the parameter in the entry point for `suffix` (`f32` or `bf16`), spelled
    /// as the emulator's launcher spells it (`launcher --signatures`).
    pub fn c_type(self, suffix: &str) -> String {
        let elem = |e: Elem| match (e, suffix) {
            (Elem::Same, "bf16") => "bf16",
            (Elem::Same | Elem::F32, _) => "float",
            (Elem::U32, _) => "uint32_t",
        };
        match self {
            Param::Int => "int".into(),
            Param::Size => "size_t".into(),
            Param::Float => "float".into(),
            Param::In(e) => format!("const {}*", elem(e)),
            Param::Out(e) => format!("{}*", elem(e)),
        }
    }
}

/// The parameters as types, one marker per [`Param`], so that a kernel's signature is a type
/// (a tuple of markers) the launch code's arguments must match.
pub mod params {
    use std::marker::PhantomData;

    use super::{Elem, Param};

    /// `int`.
    pub struct Int;
    /// `size_t`.
    pub struct Size;
    /// `float`.
    pub struct Float;
    /// `const E*`.
    pub struct In<E>(PhantomData<E>);
    /// `E*`.
    pub struct Out<E>(PhantomData<E>);
    /// The instantiation's element type.
    pub struct Same;
    /// `float`.
    pub struct F32;
    /// `uint32_t`.
    pub struct U32;

    /// A marker's [`Param`].
    pub trait ParamType {
        const PARAM: Param;
    }

    /// An element marker's [`Elem`].
    pub trait ElemType {
        const ELEM: Elem;
    }

    impl ParamType for Int {
        const PARAM: Param = Param::Int;
    }
    impl ParamType for Size {
        const PARAM: Param = Param::Size;
    }
    impl ParamType for Float {
        const PARAM: Param = Param::Float;
    }
    impl<E: ElemType> ParamType for In<E> {
        const PARAM: Param = Param::In(E::ELEM);
    }
    impl<E: ElemType> ParamType for Out<E> {
        const PARAM: Param = Param::Out(E::ELEM);
    }
    impl ElemType for Same {
        const ELEM: Elem = Elem::Same;
    }
    impl ElemType for F32 {
        const ELEM: Elem = Elem::F32;
    }
    impl ElemType for U32 {
        const ELEM: Elem = Elem::U32;
    }

    /// A tuple of markers: a kernel's parameters in order.
    pub trait Signature {
        const PARAMS: &'static [Param];
    }

    /// `Signature` for tuples of every length a kernel has (2 to 15 parameters).
    macro_rules! signatures {
        ($first:ident $(, $rest:ident)*) => {
            impl<$first: ParamType, $($rest: ParamType),*> Signature for ($first, $($rest,)*) {
                const PARAMS: &'static [Param] = &[$first::PARAM, $($rest::PARAM),*];
            }
        };
    }
    signatures!(A, B);
    signatures!(A, B, C);
    signatures!(A, B, C, D);
    signatures!(A, B, C, D, E);
    signatures!(A, B, C, D, E, F);
    signatures!(A, B, C, D, E, F, G);
    signatures!(A, B, C, D, E, F, G, H);
    signatures!(A, B, C, D, E, F, G, H, I);
    signatures!(A, B, C, D, E, F, G, H, I, J);
    signatures!(A, B, C, D, E, F, G, H, I, J, K);
    signatures!(A, B, C, D, E, F, G, H, I, J, K, L);
    signatures!(A, B, C, D, E, F, G, H, I, J, K, L, M);
    signatures!(A, B, C, D, E, F, G, H, I, J, K, L, M, N);
    signatures!(A, B, C, D, E, F, G, H, I, J, K, L, M, N, O);
}

use params::{Float, In, Int, Out, Same, Signature, Size, F32, U32};

// ---------------------------------------------------------------------------------------------
// The kernels

/// A kernel: the file it is in, the name of its entry points without the element type's suffix,
/// the suffixes it is instantiated for, and its parameters.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// The `.cu` file's stem.
    pub file: &'static str,
    pub name: &'static str,
    pub suffixes: &'static [&'static str],
    pub params: &'static [Param],
}

impl Kernel {
    /// The entry point's name for `suffix`.
    pub fn entry(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.name)
    }

    /// The entry point's C++ signature for `suffix`, as `launcher --signatures` prints it.
    pub fn signature(&self, suffix: &str) -> String {
        let params: Vec<String> = self.params.iter().map(|p| p.c_type(suffix)).collect();
        format!("{}({})", self.entry(suffix), params.join(", "))
    }
}

/// A [`Kernel`] whose parameters are also the type `S`, for launches the compiler checks.
pub struct Typed<S> {
    pub kernel: Kernel,
    signature: PhantomData<fn() -> S>,
}

impl<S: Signature> Typed<S> {
    const fn new(
        file: &'static str,
        name: &'static str,
        suffixes: &'static [&'static str],
    ) -> Self {
        Self {
            kernel: Kernel {
                file,
                name,
                suffixes,
                params: S::PARAMS,
            },
            signature: PhantomData,
        }
    }
}

/// The flash kernels' parameters, the same for each head size: `t, heads, window, scale`, then
/// the forward's `q, k, v -> o, lse` and the backward's `q, k, v, dO, lse, delta -> dk, dv` or
/// `-> dq`.
#[rustfmt::skip]
pub type FlashFwd = (Int, Int, Int, Float, In<Same>, In<Same>, In<Same>, Out<Same>, Out<F32>);
#[rustfmt::skip]
pub type FlashDkdv = (
    Int, Int, Int, Float, In<Same>, In<Same>, In<Same>, In<Same>, In<F32>, In<F32>, Out<Same>,
    Out<Same>,
);
#[rustfmt::skip]
pub type FlashDq = (
    Int, Int, Int, Float, In<Same>, In<Same>, In<Same>, In<Same>, In<F32>, In<F32>, Out<Same>,
);

const BOTH: &[&str] = &["f32", "bf16"];
const F32_ONLY: &[&str] = &["f32"];
const BF16_ONLY: &[&str] = &["bf16"];

macro_rules! kernels {
    ($($id:ident = $file:literal :: $name:literal for $suffixes:ident $signature:ty;)*) => {
        $(pub const $id: Typed<$signature> = Typed::new($file, $name, $suffixes);)*
        /// Every kernel the ops launch.
        pub const ALL: &[Kernel] = &[$($id.kernel),*];
    };
}

kernels! {
    WINDOW_SOFTMAX_FWD = "attention"::"window_softmax_fwd" for BOTH
        (Int, Int, Int, Float, In<Same>, Out<Same>);
    WINDOW_SOFTMAX_BWD = "attention"::"window_softmax_bwd" for BOTH
        (Int, Int, Int, Float, In<Same>, In<Same>, Out<Same>);
    SOFTCAP_CE_FWD = "cross_entropy"::"softcap_ce_fwd" for BOTH
        (Int, Int, Float, In<Same>, In<U32>, Out<F32>, Out<F32>);
    SOFTCAP_CE_BWD = "cross_entropy"::"softcap_ce_bwd" for BOTH
        (Int, Int, Float, In<Same>, In<U32>, In<F32>, In<F32>, Out<Same>);
    RELU_SQ_FWD = "elementwise"::"relu_sq_fwd" for BOTH (Size, In<Same>, Out<Same>);
    RELU_SQ_BWD = "elementwise"::"relu_sq_bwd" for BOTH (Size, In<Same>, In<Same>, Out<Same>);
    EMBEDDING_FWD = "embedding"::"embedding_fwd" for F32_ONLY
        (Size, Int, Int, In<Same>, In<U32>, Out<Same>);
    EMBEDDING_BWD = "embedding"::"embedding_bwd" for F32_ONLY
        (Size, Int, Int, In<Same>, In<U32>, Out<Same>);
    FLASH_FWD_HD64 = "flash"::"flash_fwd_hd64" for BF16_ONLY FlashFwd;
    FLASH_FWD_HD128 = "flash"::"flash_fwd_hd128" for BF16_ONLY FlashFwd;
    FLASH_DELTA = "flash"::"flash_delta" for BF16_ONLY
        (Int, Int, Int, Int, In<Same>, In<Same>, Out<F32>);
    FLASH_DKDV_HD64 = "flash"::"flash_dkdv_hd64" for BF16_ONLY FlashDkdv;
    FLASH_DKDV_HD128 = "flash"::"flash_dkdv_hd128" for BF16_ONLY FlashDkdv;
    FLASH_DQ_HD64 = "flash"::"flash_dq_hd64" for BF16_ONLY FlashDq;
    FLASH_DQ_HD128 = "flash"::"flash_dq_hd128" for BF16_ONLY FlashDq;
    GATE_MIX_FWD = "gate"::"gate_mix_fwd" for BOTH
        (Int, Int, In<Same>, In<Same>, In<Same>, Out<Same>);
    GATE_MIX_BWD = "gate"::"gate_mix_bwd" for BOTH
        (Int, Int, In<Same>, In<Same>, In<Same>, Out<Same>, Out<Same>);
    ADAMW = "optim"::"adamw" for F32_ONLY
        (Size, In<Same>, In<Same>, In<Same>, In<Same>, Float, Float, Float, Float, Float, Float,
         Float, Out<Same>, Out<Same>, Out<Same>);
    RMS_NORM_FWD = "norm"::"rms_norm_fwd" for BOTH (Int, Int, In<Same>, Out<Same>, Out<F32>);
    RMS_NORM_BWD = "norm"::"rms_norm_bwd" for BOTH
        (Int, Int, In<Same>, In<Same>, In<F32>, Out<Same>);
    LAMBDA_MIX_FWD = "norm"::"lambda_mix_fwd" for BOTH
        (Size, In<Same>, In<Same>, In<F32>, Out<Same>);
    LAMBDA_MIX_BWD = "norm"::"lambda_mix_bwd" for BOTH
        (Size, In<Same>, In<Same>, In<Same>, In<F32>, Out<Same>, Out<Same>, Out<F32>);
    ROPE_NORM_FWD = "rope"::"rope_norm_fwd" for BOTH
        (Int, Int, Int, Int, Float, In<Same>, In<F32>, In<F32>, Out<Same>, Out<F32>);
    ROPE_NORM_BWD = "rope"::"rope_norm_bwd" for BOTH
        (Int, Int, Int, Int, Float, In<Same>, In<Same>, In<F32>, In<F32>, In<F32>, Out<Same>);
}

// ---------------------------------------------------------------------------------------------
// Launch geometries

/// A launch's grid (x, y) and threads per block (the kernels use one dimension of threads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub grid: (u32, u32),
    pub threads: u32,
}

/// Threads per block of every kernel but flash attention's (a multiple of 32, as the block
/// reductions need).
pub const THREADS: u32 = 256;

/// `blocks` blocks (at least one) of [`THREADS`] threads.
pub fn blocks(blocks: usize) -> Geometry {
    Geometry {
        grid: (blocks.max(1) as u32, 1),
        threads: THREADS,
    }
}

/// A grid-stride loop over `n` elements.
pub fn elementwise(n: usize) -> Geometry {
    blocks(n.div_ceil(THREADS as usize).min(1 << 16))
}

/// A grid-stride loop over `n` elements whose blocks each add into one shared total (an atomic
/// per block): a few blocks per SM, so the atomics do not queue up.
pub fn reduction(n: usize) -> Geometry {
    blocks(n.div_ceil(THREADS as usize).min(1024))
}

/// One warp per row.
pub fn warp_per_row(rows: usize) -> Geometry {
    blocks(rows.div_ceil(THREADS as usize / 32))
}

/// One block per row.
pub fn block_per_row(rows: usize) -> Geometry {
    blocks(rows)
}

/// Threads per block and rows (queries or keys) per block of the tiled flash kernels, as
/// flash.cu's `THREADS`, `QUERIES` and `KEYS`.
pub const FLASH_THREADS: u32 = 128;
pub const FLASH_ROWS: usize = 64;

/// The flash kernels' grid for rows of `t` tokens and `heads` (batch rows times heads): one block
/// per 64 rows of each.
pub fn flash(t: usize, heads: usize) -> Result<Geometry> {
    if heads > 65_535 {
        bail!("flash_attention: {heads} batch rows times heads exceed the grid's 65,535");
    }
    Ok(Geometry {
        grid: (t.div_ceil(FLASH_ROWS) as u32, heads as u32),
        threads: FLASH_THREADS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_spell_the_cpp_types() {
        assert_eq!(
            ROPE_NORM_FWD.kernel.signature("bf16"),
            "rope_norm_fwd_bf16(int, int, int, int, float, const bf16*, const float*, \
             const float*, bf16*, float*)"
        );
        assert_eq!(
            SOFTCAP_CE_FWD.kernel.signature("f32"),
            "softcap_ce_fwd_f32(int, int, float, const float*, const uint32_t*, float*, float*)"
        );
        assert_eq!(
            RELU_SQ_FWD.kernel.signature("f32"),
            "relu_sq_fwd_f32(size_t, const float*, float*)"
        );
    }

    #[test]
    fn geometries_cover_their_rows() {
        assert_eq!(elementwise(0), blocks(1));
        assert_eq!(elementwise(257).grid, (2, 1));
        assert_eq!(elementwise(usize::MAX / 2).grid, (1 << 16, 1));
        assert_eq!(reduction(1 << 30).grid, (1024, 1));
        assert_eq!(warp_per_row(9).grid, (2, 1));
        assert_eq!(block_per_row(7).grid, (7, 1));
        let g = flash(130, 6).unwrap();
        assert_eq!((g.grid, g.threads), ((3, 6), 128));
        assert!(flash(64, 65_536).is_err());
    }
}
