//! The embedding lookup on CUDA, f32 tables: a gather forward, and an atomic scatter-add
//! backward that handles every id in parallel.

use candle_core::backend::BackendStorage;
use candle_core::Tensor;
use candle_core::{CudaStorage, CustomOp2, Layout, Result, Shape};

use super::launch::{
    cpu_fwd_cuda_only, ids_below, int, launch, output, storage, tensor, view, Read,
};
use crate::kernels::{elementwise, EMBEDDING_BWD, EMBEDDING_FWD};

/// Rows of `table: [V, C]` (f32) at `ids` (any shape, moved to the table's device as u32, each
/// below V): `[ids..., C]`.
pub(crate) fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (v, c) = table.dims2()?;
    let mut shape = ids.dims().to_vec();
    shape.push(c);
    let ids = ids_below(ids, v, table.device(), |id| {
        format!("embedding: id {id} is outside the table of {v} rows")
    })?;
    table
        .contiguous()?
        .apply_op2(&ids, Embedding)?
        .reshape(shape)
}

struct Embedding;

impl CustomOp2 for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }

    cpu_fwd_cuda_only!(2);

    /// `[N, C]` for N ids.
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = s1.device();
        let (vocab, cols) = l1.shape().dims2()?;
        let table = view::<f32>(self.name(), s1, l1)?;
        let ids = view::<u32>(self.name(), s2, l2)?;
        let n = ids.len();
        let mut out = output::<f32>(dev, n * cols)?;
        let (c, v) = (int(self.name(), cols)?, int(self.name(), vocab)?);
        // SAFETY: embedding_fwd_f32(size_t n, int c, int vocab, const float* table,
        // const uint32_t* ids, float* out); table vocab·c, ids n, out n·c long.
        unsafe {
            launch::<f32, _>(
                dev,
                &EMBEDDING_FWD,
                elementwise(n * cols),
                (&n, &c, &v, &table, &ids, &mut out),
            )
        }?;
        Ok((storage(out, dev), Shape::from((n, cols))))
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let name = self.name();
        let (gr, ir) = (Read::new(name, &g)?, Read::new(name, ids)?);
        let dev = gr.device()?;
        let (gs, is) = (gr.view::<f32>()?, ir.view::<u32>()?);
        let (vocab, cols) = table.dims2()?;
        let n = is.len();
        let mut dtable = dev.alloc_zeros::<f32>(vocab * cols)?;
        let (c, v) = (int(name, cols)?, int(name, vocab)?);
        // SAFETY: embedding_bwd_f32(size_t n, int c, int vocab, const float* g,
        // const uint32_t* ids, float* dtable); g n·c long, dtable vocab·c zeroed.
        unsafe {
            launch::<f32, _>(
                &dev,
                &EMBEDDING_BWD,
                elementwise(n * cols),
                (&n, &c, &v, &gs, &is, &mut dtable),
            )
        }?;
        Ok((Some(tensor(dtable, &dev, (vocab, cols))), None))
    }
}
