//! The soft-capped cross-entropy on CUDA: one block per row of logits each way, the capped
//! logits and the probabilities never stored.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::Tensor;
use candle_core::{bail, CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape};

use super::launch::{block_per_row, by_dtype, cuda_only, function, ids, int, launch, output};
use super::launch::{storage, tensor, view, Elem, Read, SOFTCAP_CE_BWD, SOFTCAP_CE_FWD};

/// The mean over rows of `−log softmax(cap · tanh(logits / cap))[target]`, `logits: [N, V]`
/// (f32 or bf16), `targets`: N ids (moved to the logits' device as u32). A target outside the
/// vocabulary makes the loss NaN. Saves the log-sum-exp of every row.
pub(crate) fn softcap_cross_entropy(logits: &Tensor, targets: &Tensor, cap: f64) -> Result<Tensor> {
    let (n, _) = logits.dims2()?;
    let targets = targets
        .flatten_all()?
        .to_device(logits.device())?
        .to_dtype(DType::U32)?;
    if targets.elem_count() != n {
        bail!(
            "softcap_cross_entropy: {} targets for {n} rows of logits",
            targets.elem_count()
        );
    }
    let op = SoftcapCrossEntropy {
        cap: cap as f32,
        lse: OnceLock::new(),
    };
    logits.contiguous()?.apply_op2(&targets, op)?.mean_all()
}

struct SoftcapCrossEntropy {
    cap: f32,
    /// `[N]` f32, set by the forward.
    lse: OnceLock<Tensor>,
}

impl CustomOp2 for SoftcapCrossEntropy {
    fn name(&self) -> &'static str {
        "softcap_cross_entropy"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }

    /// The loss of every row, `[N]` f32.
    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        fn run<T: Elem>(
            op: &SoftcapCrossEntropy,
            (s1, l1): (&CudaStorage, &Layout),
            (s2, l2): (&CudaStorage, &Layout),
        ) -> Result<CudaStorage> {
            let dev = s1.device();
            let (rows, cols) = l1.shape().dims2()?;
            let logits = view::<T>(op.name(), s1, l1)?;
            let targets = ids(op.name(), s2, l2)?;
            let (mut loss, mut lse) = (output::<f32>(dev, rows)?, output::<f32>(dev, rows)?);
            let f = function::<T>(dev, SOFTCAP_CE_FWD)?;
            let (n, v) = (int(op.name(), rows)?, int(op.name(), cols)?);
            // SAFETY: softcap_ce_fwd(int n, int v, float cap, const T* l,
            // const uint32_t* targets, float* loss, float* lse); l n·v long, the rest n.
            unsafe {
                launch!(
                    dev,
                    f,
                    block_per_row(rows),
                    &n,
                    &v,
                    &op.cap,
                    &logits,
                    &targets,
                    &mut loss,
                    &mut lse
                )
            }?;
            let _ = op.lse.set(tensor(lse, dev, rows));
            Ok(storage(loss, dev))
        }
        let loss = by_dtype!(self.name(), s1.dtype(), run(self, (s1, l1), (s2, l2)))?;
        Ok((loss, Shape::from(l1.shape().dims2()?.0)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        dloss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        fn run<T: Elem>(op: &SoftcapCrossEntropy, tensors: [&Tensor; 4]) -> Result<Tensor> {
            let [logits, targets, lse, dloss] = tensors;
            let name = op.name();
            let (lr, tr) = (Read::new(name, logits)?, Read::new(name, targets)?);
            let (sr, gr) = (Read::new(name, lse)?, Read::new(name, dloss)?);
            let dev = lr.device()?;
            let (ls, ts) = (lr.view::<T>()?, tr.ids()?);
            let (ss, gs) = (sr.view::<f32>()?, gr.view::<f32>()?);
            let (rows, cols) = logits.dims2()?;
            let mut dl = output::<T>(&dev, ls.len())?;
            let f = function::<T>(&dev, SOFTCAP_CE_BWD)?;
            let (n, v) = (int(name, rows)?, int(name, cols)?);
            // SAFETY: softcap_ce_bwd(int n, int v, float cap, const T* l,
            // const uint32_t* targets, const float* lse, const float* dloss, T* dl).
            unsafe {
                launch!(
                    dev,
                    f,
                    block_per_row(rows),
                    &n,
                    &v,
                    &op.cap,
                    &ls,
                    &ts,
                    &ss,
                    &gs,
                    &mut dl
                )
            }?;
            Ok(tensor(dl, &dev, logits.shape()))
        }
        let Some(lse) = self.lse.get() else {
            bail!("softcap_cross_entropy: backward before forward");
        };
        let dloss = dloss.contiguous()?;
        let tensors = [logits, targets, lse, &dloss];
        let dl = by_dtype!(self.name(), logits.dtype(), run(self, tensors))?;
        Ok((Some(dl), None))
    }
}
