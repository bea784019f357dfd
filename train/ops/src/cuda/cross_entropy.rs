//! The soft-capped cross-entropy on CUDA: one block per row of logits each way, the capped
//! logits and the probabilities never stored.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::{bail, CudaDevice, CudaStorage, CustomOp2, Device, Layout, Result};
use candle_core::{Shape, Tensor};

use super::launch::{
    by_dtype, cpu_fwd_cuda_only, ids_below, int, launch, output, storage, tensor, view, Elem, Read,
};
use crate::kernels::{block_per_row, SOFTCAP_CE_BWD, SOFTCAP_CE_FWD};

/// The mean over rows of `−log softmax(cap · tanh(logits / cap))[target]`, `logits: [N, V]`
/// (f32 or bf16), `targets`: N ids below V (moved to the logits' device as u32). Saves the
/// log-sum-exp of every row.
pub(crate) fn softcap_cross_entropy(logits: &Tensor, targets: &Tensor, cap: f64) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    let targets = targets_on("softcap_cross_entropy", targets, n, v, logits.device())?;
    let op = SoftcapCrossEntropy {
        cap: cap as f32,
        lse: OnceLock::new(),
    };
    logits.contiguous()?.apply_op2(&targets, op)?.mean_all()
}

/// `targets` (any shape, any integer dtype) as `n` u32 ids on `device`, each below `vocab`.
pub(super) fn targets_on(
    op: &str,
    targets: &Tensor,
    n: usize,
    vocab: usize,
    device: &Device,
) -> Result<Tensor> {
    if targets.elem_count() != n {
        bail!("{op}: {} targets for {n} rows", targets.elem_count());
    }
    ids_below(targets, vocab, device, |t| {
        format!("{op}: target {t} is outside the vocabulary of {vocab}")
    })
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

    cpu_fwd_cuda_only!(2);

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
            let dims = l1.shape().dims2()?;
            let logits = view::<T>(op.name(), s1, l1)?;
            let targets = view::<u32>(op.name(), s2, l2)?;
            let (loss, lse) = forward_rows(dev, &logits, &targets, dims, op.cap)?;
            let _ = op.lse.set(tensor(lse, dev, dims.0));
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
            let (ls, ts) = (lr.view::<T>()?, tr.view::<u32>()?);
            let (ss, gs) = (sr.view::<f32>()?, gr.view::<f32>()?);
            let dl = backward_rows(&dev, (&ls, &ts), (&ss, &gs), logits.dims2()?, op.cap)?;
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

/// Each row's loss and log-sum-exp (f32) for `logits: [rows, cols]`.
fn forward_rows<T: Elem>(
    dev: &CudaDevice,
    logits: &CudaView<T>,
    targets: &CudaView<u32>,
    (rows, cols): (usize, usize),
    cap: f32,
) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
    let name = "softcap_cross_entropy";
    let (mut loss, mut lse) = (output::<f32>(dev, rows)?, output::<f32>(dev, rows)?);
    let (n, v) = (int(name, rows)?, int(name, cols)?);
    // SAFETY: softcap_ce_fwd(int n, int v, float cap, const T* l, const uint32_t* targets,
    // float* loss, float* lse); l n·v long, the rest n; one block per row.
    unsafe {
        launch::<T, _>(
            dev,
            &SOFTCAP_CE_FWD,
            block_per_row(rows),
            (&n, &v, &cap, logits, targets, &mut loss, &mut lse),
        )
    }?;
    Ok((loss, lse))
}

/// The logits' gradient, each row's scaled by its `dloss` (f32).
fn backward_rows<T: Elem>(
    dev: &CudaDevice,
    (logits, targets): (&CudaView<T>, &CudaView<u32>),
    (lse, dloss): (&CudaView<f32>, &CudaView<f32>),
    (rows, cols): (usize, usize),
    cap: f32,
) -> Result<CudaSlice<T>> {
    let name = "softcap_cross_entropy";
    let mut dl = output::<T>(dev, rows * cols)?;
    let (n, v) = (int(name, rows)?, int(name, cols)?);
    // SAFETY: softcap_ce_bwd(int n, int v, float cap, const T* l, const uint32_t* targets,
    // const float* lse, const float* dloss, T* dl); l and dl n·v long, the rest n.
    unsafe {
        launch::<T, _>(
            dev,
            &SOFTCAP_CE_BWD,
            block_per_row(rows),
            (&n, &v, &cap, logits, targets, lse, dloss, &mut dl),
        )
    }?;
    Ok(dl)
}

/// The loss of every row (f32) and the logits' gradient for a gradient of `scale` on each row's
/// loss, for `logits: [rows, V]` and u32 `targets` on one CUDA device: the forward and backward
/// kernels back to back, for callers that compute gradients in the forward.
pub(super) fn loss_and_gradient(
    logits: &Tensor,
    targets: &Tensor,
    cap: f32,
    scale: f32,
) -> Result<(Tensor, Tensor)> {
    fn run<T: Elem>(
        logits: &Tensor,
        targets: &Tensor,
        cap: f32,
        scale: f32,
    ) -> Result<(Tensor, Tensor)> {
        let name = "softcap_cross_entropy";
        let dims = logits.dims2()?;
        let (lr, tr) = (Read::new(name, logits)?, Read::new(name, targets)?);
        let dev = lr.device()?;
        let (ls, ts) = (lr.view::<T>()?, tr.view::<u32>()?);
        let (loss, lse) = forward_rows(&dev, &ls, &ts, dims, cap)?;
        let dloss = dev.clone_htod(&vec![scale; dims.0])?;
        let dl = backward_rows(
            &dev,
            (&ls, &ts),
            (&lse.slice(..), &dloss.slice(..)),
            dims,
            cap,
        )?;
        Ok((tensor(loss, &dev, dims.0), tensor(dl, &dev, dims)))
    }
    by_dtype!(
        "softcap_cross_entropy",
        logits.dtype(),
        run(logits, targets, cap, scale)
    )
}
