//! Kernel arguments the compiler checks: a kernel's parameters are a tuple of markers
//! (`crate::kernels::params`), and a launch's arguments must be a tuple of Rust values that stand
//! for them one by one ([`Arg`]): `&i32` for an `int`, `&usize` for a `size_t`, `&f32` for a
//! `float`, a view or slice of the right element type for an input, a `&mut` slice for an output.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchArgs, PushKernelArg};

use crate::kernels::params::{Float, In, Int, Out, Same, Size, F32, U32};

/// A Rust value that stands for a kernel parameter of kind `P` (a marker of
/// [`crate::kernels::params`]) in a kernel instantiated for `T`.
pub(crate) trait Arg<P, T> {
    fn push<'b>(self, args: &mut LaunchArgs<'b>)
    where
        Self: 'b;
}

/// `Arg` for the Rust types that stand for a kind of parameter.
macro_rules! args_of_kind {
    ($($kind:ty => $($rust:ty),+;)*) => {
        $($(impl<T> Arg<$kind, T> for $rust {
            fn push<'b>(self, args: &mut LaunchArgs<'b>)
            where
                Self: 'b,
            {
                args.arg(self);
            }
        })+)*
    };
}

args_of_kind! {
    Int => &i32;
    Size => &usize;
    Float => &f32;
    In<Same> => &CudaView<'_, T>, &CudaSlice<T>;
    In<F32> => &CudaView<'_, f32>, &CudaSlice<f32>;
    In<U32> => &CudaView<'_, u32>;
    Out<Same> => &mut CudaSlice<T>;
    Out<F32> => &mut CudaSlice<f32>;
}

/// A tuple of arguments for a kernel whose parameters are the tuple of markers `S`.
pub(crate) trait Args<S, T> {
    fn push_all<'b>(self, args: &mut LaunchArgs<'b>)
    where
        Self: 'b;
}

/// `Args` for tuples of every length a kernel has (2 to 15 parameters).
macro_rules! args {
    ($($arg:ident: $param:ident),+) => {
        impl<T, $($param,)+ $($arg: Arg<$param, T>,)+> Args<($($param,)+), T> for ($($arg,)+) {
            #[allow(non_snake_case)]
            fn push_all<'b>(self, args: &mut LaunchArgs<'b>)
            where
                Self: 'b,
            {
                let ($($arg,)+) = self;
                $($arg.push(args);)+
            }
        }
    };
}
args!(A: PA, B: PB);
args!(A: PA, B: PB, C: PC);
args!(A: PA, B: PB, C: PC, D: PD);
args!(A: PA, B: PB, C: PC, D: PD, E: PE);
args!(A: PA, B: PB, C: PC, D: PD, E: PE, F: PF);
args!(A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG);
args!(A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG, H: PH);
args!(A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG, H: PH, I: PI);
args!(A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG, H: PH, I: PI, J: PJ);
args!(A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG, H: PH, I: PI, J: PJ, K: PK);
args!(A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG, H: PH, I: PI, J: PJ, K: PK, L: PL);
args!(A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG, H: PH, I: PI, J: PJ, K: PK, L: PL, M: PM);
args!(
    A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG, H: PH, I: PI, J: PJ, K: PK, L: PL, M: PM,
    N: PN
);
args!(
    A: PA, B: PB, C: PC, D: PD, E: PE, F: PF, G: PG, H: PH, I: PI, J: PJ, K: PK, L: PL, M: PM,
    N: PN, O: PO
);
