//! What every CUDA op needs: the kernels' PTX modules, views of contiguous inputs (as custom-op
//! storages or as tensors read by a backward), new buffers wrapped as tensors, and a launch whose
//! arguments the compiler checks against the kernel's parameters (`crate::kernels`).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaView, DeviceRepr, LaunchConfig,
};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{bail, CudaDevice, CudaStorage, DType, Device, Layout, Result, Shape, Storage};
use candle_core::{StorageRef, Tensor};

use super::args::Args;
use crate::kernels::{Geometry, Kernel, Typed};

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// `module(file)`: the module of a kernel file (`kernels/FILE.cu`), loaded by candle once per
/// device: its name in candle's per-device cache (unique across the process) and its PTX.
macro_rules! modules {
    ($($file:ident: $ptx:ident),*) => {
        fn module(file: &str) -> Option<(&'static str, &'static str)> {
            match file {
                $(stringify!($file) => {
                    Some((concat!("autoresearch_ops_", stringify!($file)), ptx::$ptx))
                })*
                _ => None,
            }
        }
    };
}

modules!(
    attention: ATTENTION,
    cross_entropy: CROSS_ENTROPY,
    elementwise: ELEMENTWISE,
    embedding: EMBEDDING,
    flash: FLASH,
    gate: GATE,
    norm: NORM,
    optim: OPTIM,
    rope: ROPE
);

/// An element type the kernels are instantiated for, with the suffix of its entry points.
pub(crate) trait Elem: CudaDType + DeviceRepr {
    const SUFFIX: &'static str;
}

impl Elem for f32 {
    const SUFFIX: &'static str = "f32";
}

impl Elem for half::bf16 {
    const SUFFIX: &'static str = "bf16";
}

/// Calls `$run::<T>(args)` with `T` the element type of `$dtype` (f32 or bf16).
macro_rules! by_dtype {
    ($op:expr, $dtype:expr, $run:ident($($arg:expr),* $(,)?)) => {
        match $dtype {
            candle_core::DType::F32 => $run::<f32>($($arg),*),
            candle_core::DType::BF16 => $run::<half::bf16>($($arg),*),
            other => candle_core::bail!("{}: f32 or bf16 tensors only, got {other:?}", $op),
        }
    };
}
pub(crate) use by_dtype;

/// The entry point of `kernel` for `T`, to launch on `dev.cuda_stream()` (candle's).
fn function<T: Elem>(dev: &CudaDevice, kernel: &Kernel) -> Result<CudaFunction> {
    if !kernel.suffixes.contains(&T::SUFFIX) {
        bail!("{}: no {} kernel", kernel.name, T::SUFFIX);
    }
    let Some((module, ptx)) = module(kernel.file) else {
        bail!("{}: no PTX for kernels/{}.cu", kernel.name, kernel.file);
    };
    Ok(dev
        .get_or_load_custom_func(&kernel.entry(T::SUFFIX), module, ptx)?
        .into_cuda_function())
}

/// The contiguous elements of a custom-op input (values, or u32 ids and targets).
pub(crate) fn view<'a, T: CudaDType>(
    op: &str,
    storage: &'a CudaStorage,
    layout: &Layout,
) -> Result<CudaView<'a, T>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: contiguous tensors only");
    };
    Ok(storage.as_cuda_slice::<T>()?.slice(start..end))
}

/// A read lock on a contiguous CUDA tensor's storage, for the backward passes (which get
/// tensors, not storages).
pub(crate) struct Read<'a> {
    storage: StorageRef<'a>,
    layout: &'a Layout,
    op: &'static str,
}

impl<'a> Read<'a> {
    /// Locks `t`, which must be contiguous (call `.contiguous()` first).
    pub(crate) fn new(op: &'static str, t: &'a Tensor) -> Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        Ok(Self {
            storage,
            layout,
            op,
        })
    }

    fn cuda(&self) -> Result<&CudaStorage> {
        match &*self.storage {
            Storage::Cuda(s) => Ok(s),
            _ => bail!("{}: CUDA tensors only", self.op),
        }
    }

    /// The elements, as `T` (values, or u32 ids and targets).
    pub(crate) fn view<T: CudaDType>(&self) -> Result<CudaView<'_, T>> {
        view(self.op, self.cuda()?, self.layout)
    }

    /// The device the tensor lives on.
    pub(crate) fn device(&self) -> Result<CudaDevice> {
        Ok(self.cuda()?.device().clone())
    }
}

/// A copy of a CUDA tensor's elements, as a custom op's output: for ops whose result was
/// computed with tensor ops before the op that carries its backward runs. The tensor must start
/// its storage and be contiguous (candle copies the whole buffer, whatever the layout).
pub(crate) fn stored(t: &Tensor) -> Result<CudaStorage> {
    let (s, layout) = t.storage_and_layout();
    if layout.contiguous_offsets().map(|(start, _)| start) != Some(0) {
        bail!("stored: a contiguous tensor at the start of its storage was expected");
    }
    match &*s {
        Storage::Cuda(s) => s.try_clone(layout),
        _ => bail!("stored: a CUDA tensor was expected"),
    }
}

/// A buffer of `len` elements, uninitialised: every kernel here writes all of its output.
pub(crate) fn output<T: DeviceRepr>(dev: &CudaDevice, len: usize) -> Result<CudaSlice<T>> {
    // SAFETY: the launch that follows writes every element before anything reads it.
    unsafe { dev.alloc::<T>(len) }
}

/// A custom-op output storage around `slice`.
pub(crate) fn storage<T: Elem>(slice: CudaSlice<T>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}

/// A tensor of `shape` around `slice`, outside the graph (saved state, gradients).
pub(crate) fn tensor<T: Elem>(
    slice: CudaSlice<T>,
    dev: &CudaDevice,
    shape: impl Into<Shape>,
) -> Tensor {
    Tensor::from_storage(
        Storage::Cuda(storage(slice, dev)),
        shape,
        BackpropOp::none(),
        false,
    )
}

/// The `cpu_fwd` of a custom op with 1, 2 or 3 inputs that exists for CUDA tensors only (the
/// public functions send CPU tensors to the CPU code): an error, never reached through them.
macro_rules! cpu_fwd_cuda_only {
    (@error $self:ident) => {
        candle_core::bail!("{}: the CUDA op was given CPU tensors", $self.name())
    };
    (1) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            cpu_fwd_cuda_only!(@error self)
        }
    };
    (2) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            cpu_fwd_cuda_only!(@error self)
        }
    };
    (3) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            cpu_fwd_cuda_only!(@error self)
        }
    };
}
pub(crate) use cpu_fwd_cuda_only;

/// `ids` (any shape, any integer dtype) as flat u32 on `device`, each below `bound`; otherwise
/// the error `refused(id)` names, as the CPU paths refuse them, where the kernels would only give
/// NaNs. The check is a reduction and a 4-byte read, which waits for the device's queue: once
/// per call, a few times per forward. i64 ids are checked before the cast, so a negative or
/// too-large one cannot wrap into range.
pub(crate) fn ids_below(
    ids: &Tensor,
    bound: usize,
    device: &Device,
    refused: impl FnOnce(i64) -> String,
) -> Result<Tensor> {
    let ids = ids.flatten_all()?.to_device(device)?;
    if ids.elem_count() > 0 {
        // The scalar comes to the host first: the cast there serves every integer dtype.
        let as_i64 = |t: Tensor| {
            t.to_device(&Device::Cpu)?
                .to_dtype(DType::I64)?
                .to_scalar::<i64>()
        };
        let smallest = match ids.dtype() {
            DType::I64 => as_i64(ids.min_all()?)?,
            _ => 0,
        };
        let largest = as_i64(ids.max_all()?)?;
        for id in [smallest, largest] {
            if id < 0 || id as u64 >= bound as u64 {
                bail!("{}", refused(id));
            }
        }
    }
    ids.to_dtype(DType::U32)
}

/// `n` as the kernels' `int`, refusing sizes past its range.
pub(crate) fn int(op: &str, n: usize) -> Result<i32> {
    match i32::try_from(n) {
        Ok(n) => Ok(n),
        Err(_) => bail!("{op}: a size of {n} exceeds the kernels' 32-bit range"),
    }
}

/// Launches `kernel`'s entry point for `T` on `dev`'s stream (candle's, so ordering with
/// candle's own kernels holds), with `geometry` and `args`: values by reference, buffers as
/// views or slices (`&mut` for those it writes). The compiler checks the arguments against the
/// kernel's parameters in `crate::kernels`: their number, and each one's kind and element type.
///
/// # Safety
/// Arguments of one kind must be in the kernel's order (the compiler cannot tell two `int`s or
/// two inputs apart), and every buffer must hold what the kernel reads and writes at that
/// geometry.
pub(crate) unsafe fn launch<T: Elem, S>(
    dev: &CudaDevice,
    kernel: &Typed<S>,
    geometry: Geometry,
    args: impl Args<S, T>,
) -> Result<()> {
    let f = function::<T>(dev, &kernel.kernel)?;
    let stream = dev.cuda_stream();
    let mut builder = stream.launch_builder(&f);
    args.push_all(&mut builder);
    let config = LaunchConfig {
        grid_dim: (geometry.grid.0, geometry.grid.1, 1),
        block_dim: (geometry.threads, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the arguments match the parameters in number, kind and type (checked by `Args`);
    // their order within a kind and the buffers' sizes are the caller's promise.
    unsafe { builder.launch(config) }.map(|_| ()).w()
}

#[cfg(test)]
mod tests {
    use super::module;
    use crate::kernels::ALL;

    /// Every entry point the ops launch is in its file's PTX: a kernel renamed or dropped from a
    /// `.cu` file fails here, at build time on a machine without a GPU, not on the device.
    #[test]
    fn every_kernel_is_in_the_ptx() {
        for kernel in ALL {
            let Some((_, ptx)) = module(kernel.file) else {
                panic!("{}: no module for kernels/{}.cu", kernel.name, kernel.file);
            };
            for suffix in kernel.suffixes {
                let entry = kernel.entry(suffix);
                assert!(
                    ptx.contains(&format!(".entry {entry}(")),
                    "{entry} is missing from its PTX"
                );
            }
        }
    }
}
