//! The embedding lookup (token and value embeddings), with a multi-threaded scatter-add backward.

use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, rows_per_task, tensor, u32_slice, Read};
use crate::simd::dispatch;

/// Table rows per block of the backward: each block of the table gradient is one rayon task.
const BLOCK_ROWS: usize = 32;

/// `table[ids]`: rows of `table: [V, C]` at `ids` (u32, any shape), shaped
/// `[...ids, C]`. The ids get no gradient.
///
/// The backward sums the gradient rows into a `[V, C]` table gradient: the ids are bucketed by
/// table block (a counting sort, positions kept in order), then each block of `BLOCK_ROWS` rows is
/// summed by one task, so threads never share a row and every row's sum runs in position order
/// (deterministic, the same order as candle's serial `index_add`). Saves nothing.
pub fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    table.dims2()?;
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::Embedding, &[table])?
        && table.dtype() == DType::F32
    {
        return crate::cuda::embedding(table, ids);
    }
    if !is_cpu_f32(&[table]) || !ids.device().is_cpu() {
        return composite::embedding(table, ids);
    }
    if ids.dtype() != DType::U32 {
        bail!("embedding: u32 ids only, got {:?}", ids.dtype());
    }
    table.contiguous()?.apply_op2(&ids.contiguous()?, Embedding)
}

struct Embedding;

impl CustomOp2 for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let table = f32_slice(self.name(), s1, l1)?;
        let ids = u32_slice(self.name(), s2, l2)?;
        let (v, c) = l1.shape().dims2()?;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= v) {
            bail!("embedding: id {bad} is outside the table of {v} rows");
        }
        let mut out = vec![0f32; ids.len() * c];
        let per = rows_per_task(ids.len());
        out.par_chunks_mut(per * c)
            .zip(ids.par_chunks(per))
            .for_each(|(out, ids)| {
                for (out, &id) in out.chunks_exact_mut(c).zip(ids) {
                    out.copy_from_slice(&table[id as usize * c..][..c]);
                }
            });
        let mut shape = l2.shape().dims().to_vec();
        shape.push(c);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        _out: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dout = dout.contiguous()?;
        let (v, c) = table.dims2()?;
        let (ids_lock, dout_lock) = (Read::new(self.name(), ids)?, Read::new(self.name(), &dout)?);
        let (ids, dout) = (ids_lock.u32()?, dout_lock.f32()?);
        let blocks = v.div_ceil(BLOCK_ROWS);
        // Counting sort of the positions by table block.
        let mut starts = vec![0usize; blocks + 1];
        for &id in ids {
            starts[id as usize / BLOCK_ROWS + 1] += 1;
        }
        for b in 0..blocks {
            starts[b + 1] += starts[b];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; ids.len()];
        for (pos, &id) in ids.iter().enumerate() {
            let slot = &mut next[id as usize / BLOCK_ROWS];
            order[*slot] = pos as u32;
            *slot += 1;
        }
        let mut dtable = vec![0f32; v * c];
        dtable
            .par_chunks_mut(BLOCK_ROWS * c)
            .enumerate()
            .for_each(|(block, dtable)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for &pos in &order[starts[block]..starts[block + 1]] {
                            let pos = pos as usize;
                            let row = ids[pos] as usize - block * BLOCK_ROWS;
                            let dst = &mut dtable[row * c..][..c];
                            for (d, &g) in dst.iter_mut().zip(&dout[pos * c..][..c]) {
                                *d += g;
                            }
                        }
                    },
                )
            });
        Ok((Some(tensor(dtable, (v, c))?), None))
    }
}
