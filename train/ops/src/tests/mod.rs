//! Every op against today's composite code from the training file (`crate::composite`): the value and
//! the gradient of every input, through candle's autograd on both sides, on odd shapes. Errors are
//! measured as `max |fused − reference| / max |reference|` per tensor ([`check::relative_error`]).

mod activation;
mod attention;
mod check;
mod cross_entropy;
mod embedding;
mod fallback;
mod gate;
mod norm;
mod optim;
mod rope;
mod simd;
