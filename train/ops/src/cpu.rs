//! Access to candle's CPU storage: contiguous f32 and u32 slices of custom-op inputs and of the
//! tensors a backward pass reads, which tensors the fused code takes, and how
//! work is cut into tasks for rayon.

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, DType, Device, Layout, Result, Shape, Storage, StorageRef, Tensor,
};

/// Whether the fused CPU code applies: every tensor f32 on the CPU. Anything else runs the
/// composite code (until the CUDA kernels exist).
pub(crate) fn is_cpu_f32(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// The f32 elements of a contiguous custom-op input.
pub(crate) fn f32_slice<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: f32 tensors only, got {:?}", storage.dtype());
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: contiguous tensors only");
    };
    Ok(&data[start..end])
}

/// The u32 elements of a contiguous custom-op input (token ids, targets).
pub(crate) fn u32_slice<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [u32]> {
    let CpuStorage::U32(data) = storage else {
        bail!("{op}: u32 ids only, got {:?}", storage.dtype());
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: contiguous ids only");
    };
    Ok(&data[start..end])
}

/// A read lock on a contiguous CPU tensor's storage, for the backward passes (which get tensors,
/// not storages).
pub(crate) struct Read<'a> {
    storage: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl<'a> Read<'a> {
    /// Locks `t`, which must be contiguous (call `.contiguous()` first).
    pub(crate) fn new(op: &str, t: &'a Tensor) -> Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("{op}: contiguous tensors only");
        };
        Ok(Self {
            storage,
            start,
            end,
        })
    }

    /// The elements, as f32.
    pub(crate) fn f32(&self) -> Result<&[f32]> {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(data)) => Ok(&data[self.start..self.end]),
            _ => bail!("f32 CPU tensors only, got {:?}", self.storage.dtype()),
        }
    }

    /// The elements, as u32.
    pub(crate) fn u32(&self) -> Result<&[u32]> {
        match &*self.storage {
            Storage::Cpu(CpuStorage::U32(data)) => Ok(&data[self.start..self.end]),
            _ => bail!("u32 CPU tensors only, got {:?}", self.storage.dtype()),
        }
    }
}

/// A CPU f32 tensor of `shape` that owns `data` (no copy).
pub(crate) fn tensor(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(data, shape.into(), &Device::Cpu)
}

/// Rows per rayon task: about four tasks per thread, so a slow thread does not hold the others
/// up, and never an empty task.
pub(crate) fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// The last dimension of `shape` (the row length of a row-wise op), refusing scalars and empty rows.
pub(crate) fn row_len(op: &str, shape: &Shape) -> Result<usize> {
    match shape.dims().last() {
        Some(&n) if n > 0 => Ok(n),
        _ => bail!("{op}: needs a non-empty last dimension, got {shape:?}"),
    }
}
