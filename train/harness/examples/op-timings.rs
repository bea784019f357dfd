//! Where a training step's time goes on this machine's device: the operations the baseline
//! training file leans on, each forward and backward, at the gpu profile's micro-batch shape
//! (32 rows of 2048 tokens, width 512, 4 heads of 128, vocabulary 8192; bf16 on a GPU, f32 on
//! the CPU). A first look without a profiler, for a GPU machine that has none (gpu-check.sh runs
//! it). Usage:
//!   cargo run --release -p autoresearch-harness --example op-timings [--features cuda] [-- ROWS SEQ]

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var, D};

const WIDTH: usize = 512;
const HEADS: usize = 4;
const HEAD_DIM: usize = 128;
const VOCAB: usize = 8192;

fn main() -> Result<()> {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("usage: op-timings [ROWS SEQ]"));
    let rows = args.next().unwrap_or(32);
    let seq = args.next().unwrap_or(2048);
    let tokens = rows * seq;
    let device = Device::cuda_if_available(0)?;
    let dtype = if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    };
    println!("{device:?}, {rows} rows x {seq} tokens, width {WIDTH}, {HEADS} heads of {HEAD_DIM}, vocabulary {VOCAB}, {dtype:?}; ms per micro-batch, forward + backward");
    let var = |shape: &[usize], dtype: DType| -> Result<Var> {
        Var::from_tensor(&(Tensor::randn(0f32, 1.0, shape, &device)? * 0.02)?.to_dtype(dtype)?)
    };
    let ids = Tensor::rand(0f32, VOCAB as f32, tokens, &device)?.to_dtype(DType::U32)?;

    let table = var(&[VOCAB, WIDTH], DType::F32)?;
    let index_lookup = || table.as_tensor().index_select(&ids, 0)?.to_dtype(dtype);
    time(
        &device,
        "embedding lookup (f32 table, index_select; its backward is index_add)",
        || backward(&index_lookup()?),
    )?;
    // Two ways around index_add's serial loop over every id, checked against index_select's
    // gradient with a random upstream gradient.
    let upstream = Tensor::randn(0f32, 1.0, (tokens, WIDTH), &device)?.to_dtype(dtype)?;
    let table_grad = |x: Tensor| -> Result<Tensor> {
        let grads = (x * &upstream)?.sum_all()?.backward()?;
        grads.get(table.as_tensor()).unwrap().to_dtype(DType::F32)
    };
    let reference = table_grad(index_lookup()?)?;
    for chunks in [16, 64] {
        let chunk_ids = ids
            .reshape((chunks, tokens / chunks, 1))?
            .broadcast_as((chunks, tokens / chunks, WIDTH))?
            .contiguous()?;
        let lookup = || chunked_embedding(table.as_tensor(), &chunk_ids)?.to_dtype(dtype);
        time(
            &device,
            &format!("embedding lookup by gather from {chunks} copies of the table (backward: scatter_add over {chunks} x width threads){}", difference(&reference, &table_grad(lookup()?)?)?),
            || backward(&lookup()?),
        )?;
    }
    let one_hot = ids
        .unsqueeze(1)?
        .broadcast_eq(&Tensor::arange(0u32, VOCAB as u32, &device)?.unsqueeze(0)?)?
        .to_dtype(dtype)?;
    let lookup = || one_hot.matmul(&table.as_tensor().to_dtype(dtype)?);
    time(
        &device,
        &format!(
            "embedding lookup by one-hot matmul (one-hot built once per micro-batch){}",
            difference(&reference, &table_grad(lookup()?)?)?
        ),
        || backward(&lookup()?),
    )?;

    let x = var(&[tokens, WIDTH], dtype)?;
    let w = var(&[4 * WIDTH, WIDTH], DType::F32)?;
    time(
        &device,
        "linear 512 -> 2048 (f32 weight cast to the compute dtype)",
        || backward(&x.as_tensor().matmul(&w.as_tensor().to_dtype(dtype)?.t()?)?),
    )?;

    let x3 = var(&[rows, seq, WIDTH], dtype)?;
    time(
        &device,
        "rms_norm (mean of squares, broadcast divide)",
        || {
            let x = x3.as_tensor();
            let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
            backward(&x.broadcast_div(&(mean_sq + 1e-6)?.sqrt()?)?)
        },
    )?;

    let lambda = var(&[1], DType::F32)?;
    time(
        &device,
        "per-layer scalar times the residual stream (broadcast_mul)",
        || {
            backward(
                &x3.as_tensor()
                    .broadcast_mul(&lambda.as_tensor().to_dtype(dtype)?)?,
            )
        },
    )?;

    let q = var(&[rows, HEADS, seq, HEAD_DIM], dtype)?;
    let k = var(&[rows, HEADS, seq, HEAD_DIM], dtype)?;
    let v = var(&[rows, HEADS, seq, HEAD_DIM], dtype)?;
    let mask: Vec<f32> = (0..seq * seq)
        .map(|i| {
            if i % seq <= i / seq {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (1, 1, seq, seq), &device)?.to_dtype(dtype)?;
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    let scores = || -> Result<Tensor> {
        (q.as_tensor().matmul(&k.as_tensor().t()?)? * scale)?.broadcast_add(&mask)
    };
    time(&device, "attention scores q k^T, scaled, masked", || {
        backward(&scores()?)
    })?;
    time(
        &device,
        "attention: scores, softmax (candle_nn::ops::softmax), weights v",
        || {
            let weights = candle_nn::ops::softmax(&scores()?, D::Minus1)?;
            backward(&weights.matmul(v.as_tensor())?)
        },
    )?;
    time(
        &device,
        "attention: scores, softmax with a detached max (train.rs), weights v",
        || backward(&softmax(&scores()?)?.matmul(v.as_tensor())?),
    )?;

    let hidden = var(&[tokens, WIDTH], dtype)?;
    let head = var(&[VOCAB, WIDTH], DType::F32)?;
    let targets = Tensor::rand(0f32, VOCAB as f32, tokens, &device)?.to_dtype(DType::U32)?;
    let capped_logits = || -> Result<Tensor> {
        let logits = hidden
            .as_tensor()
            .matmul(&head.as_tensor().to_dtype(dtype)?.t()?)?
            .to_dtype(DType::F32)?;
        (logits / 15.0)?.tanh()? * 15.0
    };
    time(
        &device,
        "lm head, f32 logits, tanh soft-cap, cross-entropy (candle_nn)",
        || {
            backward(&candle_nn::loss::cross_entropy(
                &capped_logits()?,
                &targets,
            )?)
        },
    )?;
    time(
        &device,
        "the same with train.rs's cross-entropy (log-sum-exp minus the target's logit)",
        || backward(&cross_entropy(&capped_logits()?, &targets)?),
    )?;
    Ok(())
}

/// `table` rows at `ids` (shaped `[chunks, tokens / chunks, width]`, each id repeated across the
/// width), gathered from one copy of the table per chunk: the gradient's scatter_add then runs a
/// thread per chunk and column, each over its chunk's ids only, and the copies' gradients are
/// summed.
fn chunked_embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (vocab, width) = table.dims2()?;
    let chunks = ids.dim(0)?;
    let copies = table
        .unsqueeze(0)?
        .broadcast_as((chunks, vocab, width))?
        .contiguous()?;
    copies.gather(ids, 1)?.reshape(((), width))
}

/// The largest difference from the reference gradient, relative to its largest entry.
fn difference(reference: &Tensor, other: &Tensor) -> Result<String> {
    let scale = reference.abs()?.max_all()?.to_scalar::<f32>()?;
    let diff = (reference - other)?.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(format!(
        " [gradient off by {:.1e} of its largest entry]",
        diff / scale
    ))
}

/// As train.rs writes it: the max only for range, without a gradient.
fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// As train.rs writes it: log-sum-exp minus the target's logit, averaged.
fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum_exp = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?;
    (log_sum_exp - picked)?.mean_all()
}

/// Back-propagates the sum of `y` (the gradients are dropped), summed row by row first: on a GPU
/// candle reduces a whole tensor to one value in a single block of threads, which over gigabytes
/// takes longer than the op it would be timing. A loss is one value already.
fn backward(y: &Tensor) -> Result<()> {
    let total = match y.rank() {
        0 => y.clone(),
        _ => y.sum_keepdim(D::Minus1)?.sum_all()?,
    };
    total.backward().map(drop)
}

/// Runs `f` once to warm up, then three times, and prints the mean.
fn time(device: &Device, name: &str, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    f()?;
    device.synchronize()?;
    let start = Instant::now();
    for _ in 0..3 {
        f()?;
    }
    device.synchronize()?;
    println!(
        "{:>10.2}  {name}",
        start.elapsed().as_secs_f64() * 1e3 / 3.0
    );
    Ok(())
}
