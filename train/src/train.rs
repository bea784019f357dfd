//! The training program: a small GPT, its optimizer and the training loop, trained for the fixed
//! time budget. This is the one file the research agent edits; the harness (data, clock,
//! evaluation, summary) is fixed. Read it top to bottom.
//!
//! Baseline after karpathy/autoresearch's `train.py` (itself from nanochat): parameter-free
//! RMSNorm, RoPE then QK-norm, value embeddings on alternating layers with a learned gate,
//! per-layer residual scalars mixing in the first layer's input, ReLU² MLP, a sliding-window
//! pattern, logit soft-cap, Muon for the block matrices and AdamW for everything else.
//!
//! The hot paths run through `harness::ops`: fused operations with their own backward (attention,
//! RoPE with QK-norm, RMSNorm, the residual mix, the MLP, the value gate, the embedding, the head
//! with its soft-capped cross-entropy, and the optimizer's updates), several times faster on the
//! CPU than the same math as a chain of candle ops. Every op here carries gradients; composite
//! candle code works too (candle's own fused softmax/rms_norm/rope do not carry gradients).
//!
//! The edit contract, which the appliance's code and tests keep:
//! - The hyperparameters are the `const` lines under "Hyperparameters", each with a one-line doc
//!   comment: the agent may be shown only that section, so the comment is all it knows of one.
//!   A `SET NAME = VALUE` edit rewrites one such value (a trailing comment stays).
//! - Any value of a constant's type that a SET edit can write gives a model that runs: the width
//!   holds at least one head of an even size, the window pattern and the value embeddings fit any
//!   depth, and a zero soft-cap, warm-down or row count means "none" rather than a crash.
//! - Every parameter belongs to one optimizer group, chosen by its name in `group_of`: a
//!   parameter with a name it does not know stops the run at start-up.
//! - The harness owns the data, the clock, the evaluation and the summary; this file cannot
//!   reach them.

use std::collections::HashMap;

use harness::candle::{DType, Device, Tensor, Var};
use harness::candle_nn::VarMap;
use harness::ops::{self, AdamStep, MuonParam, MuonStep};
use harness::rng::Rng;
use harness::{Harness, LanguageModel, ModelInfo, Part, Trained};

// ---------------------------------------------------------------------------------------------
// Hyperparameters

/// Transformer blocks on a GPU (the reference's depth).
const DEPTH_GPU: usize = 8;
/// Transformer blocks on the CPU.
const DEPTH_CPU: usize = 4;
/// Width per block: width = depth x ASPECT_RATIO (512 at depth 8), split into heads below.
const ASPECT_RATIO: usize = 64;
/// Channels per attention head, as a target: the width holds round(width / HEAD_DIM) heads.
const HEAD_DIM: usize = 128;
/// Attention window per layer, repeated: S = half the context, L = all of it; the last is L.
const WINDOW_PATTERN: &str = "SSSL";
/// Base of RoPE's rotation frequencies: larger rotates slower and reaches further.
const ROPE_BASE: f64 = 10_000.0;
/// Logits are squashed into (-SOFTCAP, SOFTCAP) by a tanh; 0 turns the cap off.
const SOFTCAP: f64 = 15.0;
/// Input channels of the value-embedding gate (the first channels of the block's input).
const VE_GATE_CHANNELS: usize = 32;
/// Seed of the parameter initialisation (the run's own seed, `h.seed()`, is added to it).
const SEED: u64 = 42;
/// Tokens per optimizer step on a GPU; gradients accumulate over forward passes until then.
const TOKENS_PER_STEP_GPU: usize = 1 << 19;
/// Rows (sequences) per forward pass on a GPU, at most (a step of fewer tokens takes fewer).
const DEVICE_ROWS_GPU: usize = 32;
/// Tokens per optimizer step on the CPU; gradients accumulate over forward passes until then.
const TOKENS_PER_STEP_CPU: usize = 1 << 12;
/// Rows (sequences) per forward pass on the CPU, at most (a step of fewer tokens takes fewer).
const DEVICE_ROWS_CPU: usize = 16;
/// AdamW learning rate of the token and value embeddings (times sqrt(768 / width)).
const EMBEDDING_LR: f64 = 0.6;
/// AdamW learning rate of the output head (times sqrt(768 / width)).
const UNEMBEDDING_LR: f64 = 0.004;
/// Muon learning rate of the block matrices.
const MATRIX_LR: f64 = 0.04;
/// AdamW learning rate of the per-layer x0 scalars (the residual scalars take 1% of it).
const SCALAR_LR: f64 = 0.5;
/// Cautious weight decay of the block matrices, falling linearly to 0 over the run.
const WEIGHT_DECAY: f64 = 0.2;
/// AdamW's decay of its running mean of gradients.
const ADAM_BETA1: f64 = 0.8;
/// AdamW's decay of its running mean of squared gradients.
const ADAM_BETA2: f64 = 0.95;
/// AdamW's floor under the root of the squared-gradient mean.
const ADAM_EPS: f64 = 1e-10;
/// Muon's momentum at the start of the run.
const MUON_MOMENTUM_START: f64 = 0.85;
/// Muon's momentum once the ramp is over.
const MUON_MOMENTUM_END: f64 = 0.95;
/// Fraction of the budget over which Muon's momentum rises from start to end.
const MUON_MOMENTUM_RAMP: f64 = 0.3;
/// Newton-Schulz iterations that orthogonalise each Muon update.
const NEWTON_SCHULZ_STEPS: usize = 5;
/// Fraction of the budget over which the learning rate warms up from 0.
const WARMUP_RATIO: f64 = 0.0;
/// Fraction of the budget at the end over which the learning rate falls linearly; 0: none.
const WARMDOWN_RATIO: f64 = 0.5;
/// The learning rate at the very end, as a fraction of the peak.
const FINAL_LR_FRAC: f64 = 0.0;

// ---------------------------------------------------------------------------------------------
// Model

struct Config {
    vocab_size: usize,
    seq_len: usize,
    depth: usize,
    dim: usize,
    n_head: usize,
    head_dim: usize,
}

impl Config {
    /// The model's shape. Whatever the constants say, the shape is valid: at least one block,
    /// at least one head, and an even head size (RoPE rotates pairs). The width is the one
    /// ASPECT_RATIO asks for (rounded up to an even size per head), so every aspect ratio is a
    /// different model: rounding the width up to whole heads of HEAD_DIM, as the reference does,
    /// made every ratio from 33 to 64 the same 256-wide model at depth 4. Depth 3 at aspect 64 is
    /// 192 wide, two heads of 96.
    fn new(vocab_size: usize, seq_len: usize, depth: usize) -> Self {
        let depth = depth.max(1);
        let width = (depth * ASPECT_RATIO).max(2);
        let n_head = ((width as f64 / HEAD_DIM.max(1) as f64).round() as usize).clamp(1, width / 2);
        let head_dim = width.div_ceil(n_head).next_multiple_of(2);
        Self {
            vocab_size,
            seq_len,
            depth,
            dim: n_head * head_dim,
            n_head,
            head_dim,
        }
    }

    /// Attention window of each layer, in tokens: WINDOW_PATTERN repeated over the layers, the
    /// last layer always full.
    fn windows(&self) -> Vec<usize> {
        let pattern: Vec<char> = WINDOW_PATTERN.chars().collect();
        (0..self.depth)
            .map(|i| match pattern.get(i % pattern.len().max(1)) {
                Some('S' | 's') if i + 1 < self.depth => (self.seq_len / 2).max(1),
                _ => self.seq_len,
            })
            .collect()
    }

    /// Channels the value-embedding gate reads: at most the width.
    fn gate_channels(&self) -> usize {
        VE_GATE_CHANNELS.clamp(1, self.dim)
    }

    /// Value embeddings on alternating layers, always including the last.
    fn has_value_embedding(&self, layer: usize) -> bool {
        layer % 2 == (self.depth - 1) % 2
    }
}

/// Creates a trainable f32 variable in `vars` and returns its tensor.
fn param(vars: &VarMap, name: &str, init: Tensor) -> harness::candle::Result<Tensor> {
    let var = Var::from_tensor(&init)?;
    let tensor = var.as_tensor().clone();
    vars.data().lock().unwrap().insert(name.to_string(), var);
    Ok(tensor)
}

/// Every trainable tensor, initialised as the reference does. Each matrix that reads the
/// residual stream is uniform in +-sqrt(3 / width) (standard deviation 1/sqrt(width)); the
/// matrices that write back into it (both `c_proj`) start at zero, so each block starts as the
/// identity; the token embedding is N(0, 1), the head N(0, 0.001) (a near-uniform first
/// prediction); the residual scalars start at 1 and the x0 scalars at 0.1 (a little of the first
/// layer's input mixed back in). The draws follow this order, so one seed gives one model.
struct Params {
    wte: Tensor,
    lm_head: Tensor,
    value_embeds: Vec<Option<Tensor>>,
    blocks: Vec<(Attention, Mlp)>,
    resid_lambdas: Tensor,
    x0_lambdas: Tensor,
}

impl Params {
    fn init(
        cfg: &Config,
        vars: &VarMap,
        device: &Device,
        seed: u64,
    ) -> harness::candle::Result<Self> {
        let mut rng = Rng::new(seed);
        let (d, v) = (cfg.dim, cfg.vocab_size);
        let bound = 3f64.sqrt() * (d as f64).powf(-0.5);
        let zeros = |shape: (usize, usize)| Tensor::zeros(shape, DType::F32, device);
        let wte = param(vars, "wte", rng.normal((v, d), 1.0, device)?)?;
        let lm_head = param(vars, "lm_head", rng.normal((v, d), 0.001, device)?)?;
        let mut value_embeds = Vec::new();
        let mut blocks = Vec::new();
        for i in 0..cfg.depth {
            let p = |n: &str| format!("h.{i}.{n}");
            let has_ve = cfg.has_value_embedding(i);
            value_embeds.push(if has_ve {
                let table = rng.uniform((v, d), bound, device)?;
                Some(param(vars, &format!("ve.{i}"), table)?)
            } else {
                None
            });
            let attn = Attention {
                c_q: param(vars, &p("attn.c_q"), rng.uniform((d, d), bound, device)?)?,
                c_k: param(vars, &p("attn.c_k"), rng.uniform((d, d), bound, device)?)?,
                c_v: param(vars, &p("attn.c_v"), rng.uniform((d, d), bound, device)?)?,
                c_proj: param(vars, &p("attn.c_proj"), zeros((d, d))?)?,
                // Zero: the gate starts at 2 * sigmoid(0) = 1, the value embedding fully in.
                ve_gate: if has_ve {
                    let gate = zeros((cfg.n_head, cfg.gate_channels()))?;
                    Some(param(vars, &p("attn.ve_gate"), gate)?)
                } else {
                    None
                },
            };
            let mlp = Mlp {
                c_fc: param(
                    vars,
                    &p("mlp.c_fc"),
                    rng.uniform((4 * d, d), bound, device)?,
                )?,
                c_proj: param(vars, &p("mlp.c_proj"), zeros((d, 4 * d))?)?,
            };
            blocks.push((attn, mlp));
        }
        let ones = Tensor::ones(cfg.depth, DType::F32, device)?;
        Ok(Self {
            wte,
            lm_head,
            value_embeds,
            blocks,
            resid_lambdas: param(vars, "resid_lambdas", ones.clone())?,
            x0_lambdas: param(vars, "x0_lambdas", (ones * 0.1)?)?,
        })
    }
}

/// RoPE's cos and sin for every position, `[1, T, 1, hd/2]`: pair j of a head turns by
/// t * ROPE_BASE^(-2j/hd) at position t.
fn rotary_tables(
    cfg: &Config,
    dtype: DType,
    device: &Device,
) -> harness::candle::Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|j| (1.0 / ROPE_BASE.powf(2.0 * j as f64 / cfg.head_dim as f64)) as f32)
        .collect();
    let t: Vec<f32> = (0..cfg.seq_len).map(|t| t as f32).collect();
    let t = Tensor::from_vec(t, (cfg.seq_len, 1), device)?;
    let freqs = t.broadcast_mul(&Tensor::from_vec(inv_freq, (1, half), device)?)?;
    let shape = (1, cfg.seq_len, 1, half);
    let cos = freqs.cos()?.reshape(shape)?.to_dtype(dtype)?;
    let sin = freqs.sin()?.reshape(shape)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

/// `x @ w^T` for `x: [..., in]`, `w: [out, in]`, in the compute dtype.
fn linear(x: &Tensor, w: &Tensor) -> harness::candle::Result<Tensor> {
    let w = w.to_dtype(x.dtype())?;
    let (rows, cols) = w.dims2()?;
    let mut out_shape = x.dims().to_vec();
    *out_shape.last_mut().unwrap() = rows;
    x.reshape(((), cols))?.matmul(&w.t()?)?.reshape(out_shape)
}

struct Attention {
    c_q: Tensor,
    c_k: Tensor,
    c_v: Tensor,
    c_proj: Tensor,
    ve_gate: Option<Tensor>,
}

struct Mlp {
    c_fc: Tensor,
    c_proj: Tensor,
}

struct Block {
    attn: Attention,
    mlp: Mlp,
    /// Keys a query sees: itself and the window - 1 before it.
    window: usize,
}

struct Gpt {
    cfg: Config,
    dtype: DType,
    wte: Tensor,
    value_embeds: Vec<Option<Tensor>>,
    blocks: Vec<Block>,
    lm_head: Tensor,
    resid_lambdas: Tensor,
    x0_lambdas: Tensor,
    cos: Tensor,
    sin: Tensor,
}

impl Gpt {
    fn new(
        cfg: Config,
        vars: &VarMap,
        dtype: DType,
        device: &Device,
        seed: u64,
    ) -> harness::candle::Result<Self> {
        let params = Params::init(&cfg, vars, device, seed)?;
        let blocks = params
            .blocks
            .into_iter()
            .zip(cfg.windows())
            .map(|((attn, mlp), window)| Block { attn, mlp, window })
            .collect();
        let (cos, sin) = rotary_tables(&cfg, dtype, device)?;
        Ok(Self {
            cfg,
            dtype,
            wte: params.wte,
            value_embeds: params.value_embeds,
            blocks,
            lm_head: params.lm_head,
            resid_lambdas: params.resid_lambdas,
            x0_lambdas: params.x0_lambdas,
            cos,
            sin,
        })
    }

    /// Rows of `table` at `ids`: `[B, T]` ids to `[B, T, C]`, in the compute dtype.
    fn embed(&self, table: &Tensor, ids: &Tensor) -> harness::candle::Result<Tensor> {
        ops::embedding(table, ids)?.to_dtype(self.dtype)
    }

    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        ve: Option<Tensor>,
    ) -> harness::candle::Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let (h, hd) = (self.cfg.n_head, self.cfg.head_dim);
        let a = &block.attn;
        let q = linear(x, &a.c_q)?.reshape((b, t, h, hd))?;
        let k = linear(x, &a.c_k)?.reshape((b, t, h, hd))?;
        let mut v = linear(x, &a.c_v)?.reshape((b, t, h, hd))?;
        if let (Some(ve), Some(gate)) = (ve, &a.ve_gate) {
            v = ops::value_gate(&v, &ve.reshape((b, t, h, hd))?, x, gate)?;
        }
        // RoPE, then QK-norm; the 1/sqrt(hd) scale on q, which is T/hd times smaller than the
        // scores.
        let q = ops::rope_norm(&q, &self.cos, &self.sin, 1.0 / (hd as f64).sqrt())?;
        let k = ops::rope_norm(&k, &self.cos, &self.sin, 1.0)?;
        let y = ops::attention(&q, &k, &v, block.window, 1.0)?;
        linear(&y.reshape((b, t, c))?, &a.c_proj)
    }

    /// The residual stream after the last block, normed: `[B, T, C]`.
    fn hidden(&self, ids: &Tensor) -> harness::candle::Result<Tensor> {
        let mut x = ops::rms_norm(&self.embed(&self.wte, ids)?)?;
        let x0 = x.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let (resid, mix) = (
                self.resid_lambdas.narrow(0, i, 1)?,
                self.x0_lambdas.narrow(0, i, 1)?,
            );
            x = ops::lambda_mix(&x, &x0, &resid, &mix)?;
            let ve = match &self.value_embeds[i] {
                Some(table) => Some(self.embed(table, ids)?),
                None => None,
            };
            x = (&x + self.attention(block, &ops::rms_norm(&x)?, ve)?)?;
            let (fc, proj) = (&block.mlp.c_fc, &block.mlp.c_proj);
            x = (&x + ops::mlp(&ops::rms_norm(&x)?, fc, proj)?)?;
        }
        ops::rms_norm(&x)
    }

    /// Cross-entropy of the next token, averaged over all positions: the head, the soft-cap and
    /// the loss in one op that never holds the whole `[B*T, V]` logits.
    fn loss(&self, x: &Tensor, y: &Tensor) -> harness::candle::Result<Tensor> {
        let hidden = self.hidden(x)?.reshape(((), self.cfg.dim))?;
        ops::linear_softcap_cross_entropy(&hidden, &self.lm_head, &y.flatten_all()?, softcap())
    }

    /// Training FLOPs per token: 6 per matrix weight, plus attention scores over each window.
    fn flops_per_token(&self) -> f64 {
        let d = self.cfg.dim as f64;
        let matrices = self.cfg.depth as f64 * 12.0 * d * d + (self.cfg.vocab_size as f64) * d;
        let attention: f64 = self
            .blocks
            .iter()
            .map(|b| {
                let w = b.window.min(self.cfg.seq_len) as f64;
                12.0 * (self.cfg.n_head * self.cfg.head_dim) as f64 * w
            })
            .sum();
        6.0 * matrices + attention
    }
}

/// The soft-cap: SOFTCAP, or with 0 (off) a cap of 10,000, far above any logit, where
/// `cap * tanh(l / cap)` equals `l` to within a few parts in a million.
fn softcap() -> f64 {
    if SOFTCAP > 0.0 {
        SOFTCAP
    } else {
        1e4
    }
}

impl LanguageModel for Gpt {
    /// The logits the harness scores: the same head and soft-cap as `loss`.
    fn forward(&self, ids: &Tensor) -> harness::candle::Result<Tensor> {
        let logits = linear(&self.hidden(ids)?, &self.lm_head)?;
        ops::softcap(&logits, softcap())
    }
}

// ---------------------------------------------------------------------------------------------
// Optimizer: Muon for the block matrices, AdamW for embeddings, head and scalars

/// The learning rate's schedule over the run: a warm-up, a plateau, then a linear fall to
/// FINAL_LR_FRAC of the peak.
fn lr_multiplier(progress: f64) -> f64 {
    if progress < WARMUP_RATIO {
        progress / WARMUP_RATIO
    } else if WARMDOWN_RATIO <= 0.0 || progress < 1.0 - WARMDOWN_RATIO {
        1.0
    } else {
        let cooldown = (1.0 - progress) / WARMDOWN_RATIO;
        cooldown + (1.0 - cooldown) * FINAL_LR_FRAC
    }
}

enum Group {
    Muon,
    Adam { lr: f64 },
}

struct Param {
    var: Var,
    group: Group,
    /// Momentum (Muon) or first moment (Adam), updated in place.
    m: Tensor,
    /// Second moment (Adam only), updated in place.
    v: Tensor,
}

struct Optimizer {
    params: Vec<Param>,
    steps: usize,
    dtype: DType,
}

/// The optimizer group of a parameter, by its name; None for a name it does not know, which
/// stops the run: a new parameter must be given a group on purpose.
fn group_of(name: &str, width: usize) -> Option<Group> {
    // AdamW rates were tuned at width 768; scale them like the reference does.
    let scale = (width as f64 / 768.0).powf(-0.5);
    let in_block = name
        .strip_prefix("h.")
        .and_then(|rest| rest.split_once('.'))
        .map(|(_, part)| part);
    Some(match (name, in_block) {
        (_, Some("attn.c_q" | "attn.c_k" | "attn.c_v" | "attn.c_proj" | "attn.ve_gate")) => {
            Group::Muon
        }
        (_, Some("mlp.c_fc" | "mlp.c_proj")) => Group::Muon,
        ("lm_head", None) => Group::Adam {
            lr: UNEMBEDDING_LR * scale,
        },
        ("wte", None) => Group::Adam {
            lr: EMBEDDING_LR * scale,
        },
        (n, None) if n.starts_with("ve.") => Group::Adam {
            lr: EMBEDDING_LR * scale,
        },
        ("resid_lambdas", None) => Group::Adam {
            lr: SCALAR_LR * 0.01,
        },
        ("x0_lambdas", None) => Group::Adam { lr: SCALAR_LR },
        _ => return None,
    })
}

impl Optimizer {
    fn new(vars: &VarMap, dim: usize, dtype: DType) -> harness::candle::Result<Self> {
        let data = vars.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let mut params = Vec::new();
        for name in names {
            let group = group_of(name, dim).ok_or_else(|| {
                harness::candle::Error::Msg(format!(
                    "parameter {name} is in no optimizer group: give it one in group_of"
                ))
            })?;
            let var = data[name].clone();
            let m = var.zeros_like()?;
            let v = var.zeros_like()?;
            params.push(Param { var, group, m, v });
        }
        Ok(Self {
            params,
            steps: 0,
            dtype,
        })
    }

    fn step(
        &mut self,
        grads: &HashMap<usize, Tensor>,
        progress: f64,
    ) -> harness::candle::Result<()> {
        self.steps += 1;
        let lr_mult = lr_multiplier(progress);
        let ramp = (progress / MUON_MOMENTUM_RAMP).min(1.0);
        let momentum = MUON_MOMENTUM_START + ramp * (MUON_MOMENTUM_END - MUON_MOMENTUM_START);
        let mut muon = Vec::new();
        for (i, p) in self.params.iter().enumerate() {
            let Some(grad) = grads.get(&i) else { continue };
            match p.group {
                Group::Muon => muon.push(MuonParam {
                    weight: p.var.as_tensor(),
                    grad,
                    momentum: &p.m,
                }),
                Group::Adam { lr } => {
                    let step = AdamStep {
                        lr: lr * lr_mult,
                        beta1: ADAM_BETA1,
                        beta2: ADAM_BETA2,
                        eps: ADAM_EPS,
                        weight_decay: 0.0,
                        step: self.steps as i32,
                    };
                    ops::adamw_step(p.var.as_tensor(), grad, &p.m, &p.v, &step)?;
                }
            }
        }
        // Momentum, Nesterov, Newton-Schulz (scaled by sqrt(max(1, rows / cols))) and cautious
        // weight decay (only where the update agrees with the weight), all matrices at once.
        let step = MuonStep {
            lr: MATRIX_LR * lr_mult,
            momentum,
            weight_decay: WEIGHT_DECAY * (1.0 - progress),
            ns_steps: NEWTON_SCHULZ_STEPS,
            compute_dtype: self.dtype,
        };
        ops::muon_step(&muon, &step)
    }

    /// Gradients of `loss` for every parameter, keyed by position, added into `acc`.
    fn accumulate(
        &self,
        loss: &Tensor,
        acc: &mut HashMap<usize, Tensor>,
    ) -> harness::candle::Result<()> {
        let grads = loss.backward()?;
        for (i, p) in self.params.iter().enumerate() {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                let g = g.to_dtype(DType::F32)?;
                let sum = match acc.remove(&i) {
                    Some(prev) => (prev + g)?,
                    None => g,
                };
                acc.insert(i, sum);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Training loop

fn train(h: &mut Harness) -> harness::Result<Trained> {
    let profile = h.profile().clone();
    let device = h.device().clone();
    let dtype = if h.is_gpu() { DType::BF16 } else { DType::F32 };
    let (depth, tokens_per_step, rows) = if h.is_gpu() {
        (DEPTH_GPU, TOKENS_PER_STEP_GPU, DEVICE_ROWS_GPU)
    } else {
        (DEPTH_CPU, TOKENS_PER_STEP_CPU, DEVICE_ROWS_CPU)
    };
    let cfg = Config::new(profile.vocab_size, profile.seq_len, depth);
    let summary = format!(
        "model: depth {}, width {}, {} heads of {}",
        cfg.depth, cfg.dim, cfg.n_head, cfg.head_dim
    );
    let vars = VarMap::new();
    let dim = cfg.dim;
    let model = Gpt::new(cfg, &vars, dtype, &device, SEED.wrapping_add(h.seed()))?;
    // A step of fewer tokens than the rows of one pass holds takes fewer rows, so a smaller
    // TOKENS_PER_STEP is a smaller batch on its own (at least one row).
    let rows = rows.clamp(1, (tokens_per_step / profile.seq_len).max(1));
    let mut optimizer = Optimizer::new(&vars, dim, dtype)?;
    // On a GPU, as many of those rows as fit in its memory (a 24 GB card runs fewer rows in more
    // micro-steps: the same tokens per step). The probe holds what training holds: the
    // optimizer's state, and two micro-steps, so a backward runs beside the gradients summed so far.
    let rows = if h.is_gpu() {
        harness::memory::fit_rows(&device, rows, |rows| {
            let ids = Tensor::zeros((rows, profile.seq_len), DType::U32, &device)?;
            let mut grads = HashMap::new();
            for _ in 0..2 {
                optimizer.accumulate(&model.loss(&ids, &ids)?, &mut grads)?;
            }
            Ok(())
        })?
    } else {
        rows
    };
    let micro_steps = (tokens_per_step / (rows * profile.seq_len)).max(1);
    println!("{summary} | {micro_steps} x {rows} rows per step | {dtype:?}");
    loop {
        let progress = h.progress();
        let mut grads = HashMap::new();
        let mut step_loss = Tensor::zeros((), DType::F32, &device)?;
        for _ in 0..micro_steps {
            let (x, y) = h.next_batch(rows)?;
            let loss = h.time(Part::Forward, || model.loss(&x, &y)? / micro_steps as f64)?;
            h.time(Part::Backward, || optimizer.accumulate(&loss, &mut grads))?;
            step_loss = (step_loss + loss.detach())?;
        }
        h.time(Part::Optimizer, || optimizer.step(&grads, progress))?;
        if h.step(&step_loss)?.done {
            break;
        }
    }
    let info = ModelInfo {
        depth: model.cfg.depth,
        flops_per_token: model.flops_per_token(),
    };
    Ok(Trained {
        model: Box::new(model),
        vars,
        info,
    })
}

fn main() {
    harness::run(train)
}
