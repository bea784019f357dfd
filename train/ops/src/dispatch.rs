//! Which code runs a fused op on a CUDA device. By default every op with CUDA kernels runs them,
//! and bf16 attention runs the flash kernels. Two settings change that, each read once per
//! process, for measuring one path against another and for the device check, which trains on the
//! composite code for any op whose kernels failed their checks:
//!
//! - `AUTORESEARCH_COMPOSITE=rms_norm,attention`: these ops run the composite code (the training
//!   file's own math) on CUDA, as they do on devices without kernels;
//! - `AUTORESEARCH_ATTENTION=interim`: bf16 attention runs the interim kernels (cuBLAS scores and
//!   a windowed-softmax kernel) instead of the flash kernels; `flash` is the default.
//!
//! Built without the `cuda` feature too, so that the device check's own code and CI use the
//! same names.

use std::sync::OnceLock;

use candle_core::{DType, Error, Result};

/// The setting that sends ops to the composite code on CUDA.
pub const ENV_COMPOSITE: &str = "AUTORESEARCH_COMPOSITE";
/// The setting that picks bf16 attention's kernels on CUDA.
pub const ENV_ATTENTION: &str = "AUTORESEARCH_ATTENTION";

/// A fused op that has CUDA kernels, named as its function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CudaOp {
    Attention,
    SoftcapCrossEntropy,
    LinearSoftcapCrossEntropy,
    RmsNorm,
    LambdaMix,
    RopeNorm,
    ReluSq,
    ValueGate,
    Embedding,
    AdamwStep,
}

impl CudaOp {
    pub const ALL: [CudaOp; 10] = [
        CudaOp::Attention,
        CudaOp::SoftcapCrossEntropy,
        CudaOp::LinearSoftcapCrossEntropy,
        CudaOp::RmsNorm,
        CudaOp::LambdaMix,
        CudaOp::RopeNorm,
        CudaOp::ReluSq,
        CudaOp::ValueGate,
        CudaOp::Embedding,
        CudaOp::AdamwStep,
    ];

    /// The op's function name, as the settings spell it.
    pub fn name(self) -> &'static str {
        match self {
            CudaOp::Attention => "attention",
            CudaOp::SoftcapCrossEntropy => "softcap_cross_entropy",
            CudaOp::LinearSoftcapCrossEntropy => "linear_softcap_cross_entropy",
            CudaOp::RmsNorm => "rms_norm",
            CudaOp::LambdaMix => "lambda_mix",
            CudaOp::RopeNorm => "rope_norm",
            CudaOp::ReluSq => "relu_sq",
            CudaOp::ValueGate => "value_gate",
            CudaOp::Embedding => "embedding",
            CudaOp::AdamwStep => "adamw_step",
        }
    }

    /// The op called `name`.
    pub fn named(name: &str) -> Option<CudaOp> {
        CudaOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// The kernels bf16 attention runs on CUDA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernels {
    Flash,
    Interim,
}

/// The ops a value of `AUTORESEARCH_COMPOSITE` names: comma-separated, spaces around names
/// ignored, empty for none. An unknown name is an error that lists the known ones.
pub fn parse_composite(value: &str) -> std::result::Result<Vec<CudaOp>, String> {
    let mut ops = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(op) = CudaOp::named(name) else {
            let known: Vec<&str> = CudaOp::ALL.iter().map(|op| op.name()).collect();
            return Err(format!(
                "{ENV_COMPOSITE} names {name:?}, which is no op with CUDA kernels: use a \
                 comma-separated list of {}",
                known.join(", ")
            ));
        };
        ops.push(op);
    }
    Ok(ops)
}

/// The kernels a value of `AUTORESEARCH_ATTENTION` picks: flash when empty, as when unset.
pub fn parse_attention(value: &str) -> std::result::Result<AttentionKernels, String> {
    match value {
        "" | "flash" => Ok(AttentionKernels::Flash),
        "interim" => Ok(AttentionKernels::Interim),
        _ => Err(format!(
            "{ENV_ATTENTION}={value:?} names no attention kernels: use flash (the default) or \
             interim"
        )),
    }
}

/// A setting as read once per process: its parsed value, or the error that names the problem.
type Setting<T> = OnceLock<std::result::Result<T, String>>;

/// Reads `key` into `cell` the first time and parses it (`parse` gets "" when it is unset).
fn setting<T>(
    cell: &'static Setting<T>,
    key: &str,
    parse: fn(&str) -> std::result::Result<T, String>,
) -> Result<&'static T> {
    let value = cell.get_or_init(|| parse(&std::env::var(key).unwrap_or_default()));
    value.as_ref().map_err(|e| Error::Msg(e.clone()))
}

/// The ops `AUTORESEARCH_COMPOSITE` sends to the composite code on CUDA.
pub fn composite_ops() -> Result<&'static [CudaOp]> {
    static OPS: Setting<Vec<CudaOp>> = OnceLock::new();
    Ok(setting(&OPS, ENV_COMPOSITE, parse_composite)?.as_slice())
}

/// The kernels `AUTORESEARCH_ATTENTION` picks for bf16 attention on CUDA.
pub fn attention_kernels() -> Result<AttentionKernels> {
    static KERNELS: Setting<AttentionKernels> = OnceLock::new();
    setting(&KERNELS, ENV_ATTENTION, parse_attention).copied()
}

/// Whether attention in `dtype` with heads of `head_dim` runs the flash kernels on CUDA: bf16
/// with heads of 64 or 128 (the gpu profile's), unless `AUTORESEARCH_ATTENTION=interim`; every
/// other attention on CUDA runs the interim kernels.
pub fn flash_attention(dtype: DType, head_dim: usize) -> Result<bool> {
    Ok(dtype == DType::BF16
        && matches!(head_dim, 64 | 128)
        && attention_kernels()? == AttentionKernels::Flash)
}

/// The kernels of one op a check runs (or that failed it): for attention, whether they are the
/// flash kernels or the interim ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpKernels {
    pub op: CudaOp,
    pub flash: bool,
}

/// The settings that keep training off kernels that failed the device check: failing ops run
/// the composite code, except that failing flash kernels give way to the interim attention
/// (unless the interim kernels failed too). `None` where nothing failed. As `KEY=VALUE` words,
/// for `gpu-check.sh` to export.
///
/// An op sent to the composite code runs its own part there; the ops it calls dispatch on their
/// own (the lm head's composite calls the soft-capped cross-entropy, the MLP block's ReLU²), so
/// a failing kernel of theirs is avoided by naming them.
pub fn settings_avoiding(failed: &[OpKernels]) -> Option<String> {
    let interim_fails = failed.iter().any(|f| f.op == CudaOp::Attention && !f.flash);
    let mut composite: Vec<CudaOp> = failed
        .iter()
        .filter(|f| f.op != CudaOp::Attention || interim_fails)
        .map(|f| f.op)
        .collect();
    composite.sort();
    composite.dedup();
    let mut settings = Vec::new();
    if !composite.is_empty() {
        let names: Vec<&str> = composite.iter().map(|op| op.name()).collect();
        settings.push(format!("{ENV_COMPOSITE}={}", names.join(",")));
    }
    if !interim_fails && failed.iter().any(|f| f.op == CudaOp::Attention) {
        settings.push(format!("{ENV_ATTENTION}=interim"));
    }
    (!settings.is_empty()).then(|| settings.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_named_once() {
        for op in CudaOp::ALL {
            assert_eq!(CudaOp::named(op.name()), Some(op));
        }
        let mut names: Vec<_> = CudaOp::ALL.iter().map(|op| op.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CudaOp::ALL.len());
    }

    #[test]
    fn composite_lists_parse_and_unknown_names_are_refused() {
        assert_eq!(parse_composite("").unwrap(), []);
        assert_eq!(
            parse_composite(" rms_norm, attention,").unwrap(),
            [CudaOp::RmsNorm, CudaOp::Attention]
        );
        let err = parse_composite("rms_norm,rmsnorm").unwrap_err();
        assert!(err.starts_with("AUTORESEARCH_COMPOSITE names \"rmsnorm\", which is no op"));
        assert!(err.ends_with("embedding, adamw_step"), "{err}");
    }

    #[test]
    fn attention_kernels_parse() {
        assert_eq!(parse_attention("").unwrap(), AttentionKernels::Flash);
        assert_eq!(parse_attention("flash").unwrap(), AttentionKernels::Flash);
        assert_eq!(
            parse_attention("interim").unwrap(),
            AttentionKernels::Interim
        );
        assert_eq!(
            parse_attention("fast").unwrap_err(),
            "AUTORESEARCH_ATTENTION=\"fast\" names no attention kernels: use flash (the default) \
             or interim"
        );
    }

    #[test]
    fn failed_kernels_are_trained_around() {
        use CudaOp::*;
        let failed = |op, flash| OpKernels { op, flash };
        assert_eq!(settings_avoiding(&[]), None);
        assert_eq!(
            settings_avoiding(&[failed(Attention, true)]).unwrap(),
            "AUTORESEARCH_ATTENTION=interim"
        );
        assert_eq!(
            settings_avoiding(&[
                failed(RmsNorm, false),
                failed(Attention, true),
                failed(RmsNorm, false)
            ])
            .unwrap(),
            "AUTORESEARCH_COMPOSITE=rms_norm AUTORESEARCH_ATTENTION=interim"
        );
        // The interim kernels failing too: the composite attention.
        assert_eq!(
            settings_avoiding(&[
                failed(Attention, true),
                failed(Attention, false),
                failed(ReluSq, false)
            ])
            .unwrap(),
            "AUTORESEARCH_COMPOSITE=attention,relu_sq"
        );
    }

    #[test]
    fn flash_runs_on_bf16_heads_of_64_and_128() {
        // AUTORESEARCH_ATTENTION is unset in the tests: flash by default.
        assert!(flash_attention(DType::BF16, 128).unwrap());
        assert!(flash_attention(DType::BF16, 64).unwrap());
        assert!(!flash_attention(DType::BF16, 32).unwrap());
        assert!(!flash_attention(DType::F32, 128).unwrap());
    }
}
