//! A tree-structured Parzen estimator (TPE; Bergstra et al. 2011, Optuna's default sampler) that
//! proposes values for the hyperparameter constants the agent chose to tune, from every past
//! result of those constants. Each dimension is modelled on its own: l(x) is a mixture of
//! Gaussians around the good trials' values, g(x) around the rest, and the candidate drawn from
//! l with the highest l(x) / g(x) wins. Standard library only, and deterministic in its seed.

use crate::agent::edit::Constant;
use crate::agent::ledger::FLOAT_TOLERANCE;

// ---------------------------------------------------------------------------------------------
// Search spaces

/// Where a constant's values may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Space {
    /// A real number in [low, high] (low < high); `log`: sampled and modelled in log space
    /// (then low > 0).
    Float { low: f64, high: f64, log: bool },
    /// A whole number in [low, high]; `log` likewise (then low >= 1).
    Int { low: i64, high: i64, log: bool },
    /// A power of two 2^k for k in [low_exp, high_exp] (batch sizes written `1 << k`).
    PowerOfTwo { low_exp: u32, high_exp: u32 },
}

/// Float names that mean a fraction of something (of the budget, of the peak learning rate).
const FRACTION_SUFFIXES: [&str; 4] = ["_RATIO", "_FRAC", "_FRACTION", "_RAMP"];

/// The search space of a hyperparameter constant, from its name, its Rust type and its current
/// value as written in the training file. The rules, first match wins:
/// - a name containing SEED: None, since a seed is not a hyperparameter and tuning it fits noise;
/// - f64/f32 named *_RATIO, *_FRAC, *_FRACTION or *_RAMP, value below 1: [0, 0.99] linear, as a
///   fraction of the budget or of the peak rate that reached 1 would leave nothing for the rest;
/// - f64/f32 named *BETA* or *MOMENTUM*, value below 1: [0.5, 0.999] linear (widened to hold the
///   value), as an average's decay must stay below 1 and below 0.5 barely averages;
/// - other f64/f32 0.0: [0, 1] linear, a small range, since zero gives no scale to multiply;
/// - other positive f64/f32 v: [v/10, 10 v] in log space, as rates and scales act by ratios;
///   negative or non-finite floats: None (no constant of the file is, and the sign is no scale);
/// - usize/u64/u32 written `1 << k`: PowerOfTwo [k-3, k+3] (k+3 at most 62), keeping batch sizes
///   powers of two;
/// - other usize/u64/u32 k >= 1: Int [max(1, k/4), 4 k] in log space (widths, steps, rows act by
///   ratios); 0: Int [0, 4] linear (0 usually turns a feature off);
/// - Option<usize> Some(k), k >= 1: Int [1, 2 k] linear (a depth); None: None, since the default
///   it stands for is not in the file;
/// - anything else (strings, bools, other types): None.
pub fn space_for(name: &str, ty: &str, value: &str) -> Option<Space> {
    let name = name.to_ascii_uppercase();
    if name.contains("SEED") {
        return None;
    }
    match ty.trim() {
        "f64" | "f32" => float_space(&name, parse_float(value)?),
        "usize" | "u64" | "u32" => uint_space(value.trim()),
        "Option<usize>" => {
            let k = parse_int(value.trim().strip_prefix("Some(")?.strip_suffix(')')?)?;
            (k >= 1).then(|| int(1, k.saturating_mul(2), false))
        }
        _ => None,
    }
}

/// Whether the sampler can give `constant` values where it stands (a TUNE move names only these).
pub fn tunable(constant: &Constant) -> bool {
    space_for(&constant.name, &constant.ty, &constant.value).is_some()
}

fn float_space(name: &str, v: f64) -> Option<Space> {
    if !v.is_finite() || v < 0.0 {
        None
    } else if v < 1.0 && FRACTION_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        Some(float(0.0, v.max(0.99), false))
    } else if v < 1.0 && (name.contains("BETA") || name.contains("MOMENTUM")) {
        Some(float(v.min(0.5), v.max(0.999), false))
    } else if v == 0.0 {
        Some(float(0.0, 1.0, false))
    } else {
        Some(float(v / 10.0, v * 10.0, true))
    }
}

fn uint_space(value: &str) -> Option<Space> {
    if let Some(("1", exp)) = value.split_once("<<").map(|(b, e)| (b.trim(), e.trim())) {
        let k = exp.parse::<u32>().ok().filter(|k| *k <= 62)?;
        return Some(power_of_two(k.saturating_sub(3), (k + 3).min(62)));
    }
    match parse_int(value)? {
        0 => Some(int(0, 4, false)),
        k if k > 0 => Some(int((k / 4).max(1), k.saturating_mul(4), true)),
        _ => None,
    }
}

fn float(low: f64, high: f64, log: bool) -> Space {
    Space::Float { low, high, log }
}

fn int(low: i64, high: i64, log: bool) -> Space {
    Space::Int { low, high, log }
}

fn power_of_two(low_exp: u32, high_exp: u32) -> Space {
    Space::PowerOfTwo { low_exp, high_exp }
}

impl Space {
    /// This space widened to hold `x` (a value of its kind: a power of two holds 2^k).
    pub fn holding(self, x: f64) -> Space {
        match self {
            Space::Float { low, high, log } if !log || x > 0.0 => {
                float(low.min(x), high.max(x), log)
            }
            Space::Int { low, high, log } if !log || x >= 1.0 => {
                int(low.min(x as i64), high.max(x as i64), log)
            }
            Space::PowerOfTwo { low_exp, high_exp } if x >= 1.0 => {
                let k = x.log2().round() as u32;
                power_of_two(low_exp.min(k), high_exp.max(k))
            }
            space => space,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Value texts

/// Renders a number as the constant's Rust value text, after `snap`: floats as the shortest
/// literal of the snapped value ("0.0523", "1e-10", "10000.0"), whole numbers as "17", powers of
/// two as "1 << 11"; wrapped in "Some(..)" when the type is an Option.
pub fn render(space: &Space, ty: &str, x: f64) -> String {
    let x = snap(space, x);
    let text = match space {
        Space::Float { .. } => format!("{x:?}"),
        Space::Int { .. } => format!("{}", x as i64),
        Space::PowerOfTwo { .. } => format!("1 << {}", x.log2() as u32),
    };
    if is_option(ty) {
        format!("Some({text})")
    } else {
        text
    }
}

/// Parses a value text back into a number (a power of two as its value, not its exponent). The
/// number may lie outside the space: a tried value the space has since left behind.
pub fn parse(space: &Space, ty: &str, value: &str) -> Option<f64> {
    let mut text = value.trim();
    if is_option(ty) {
        text = text.strip_prefix("Some(")?.strip_suffix(')')?;
    }
    match space {
        Space::Float { .. } => parse_float(text),
        Space::Int { .. } | Space::PowerOfTwo { .. } => parse_int(text).map(|k| k as f64),
    }
}

fn is_option(ty: &str) -> bool {
    ty.trim().starts_with("Option<")
}

fn parse_float(text: &str) -> Option<f64> {
    let text = text.trim().replace('_', "");
    let text = text.trim_end_matches("f64").trim_end_matches("f32");
    text.parse().ok().filter(|v: &f64| v.is_finite())
}

/// A whole number written plainly ("10_000") or shifted ("1 << 12").
fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim().replace('_', "");
    match text.split_once("<<") {
        Some((base, exp)) => {
            let base: i64 = base.trim().parse().ok()?;
            base.checked_mul(2i64.checked_pow(exp.trim().parse().ok()?)?)
        }
        None => text.parse().ok(),
    }
}

/// The nearest value the constant can take, and the one `render` writes: clamped into the space,
/// whole numbers and exponents rounded, floats rounded to 4 significant digits in log space and to
/// a thousandth of the range's order of magnitude otherwise (finer would only fit the noise).
fn snap(space: &Space, x: f64) -> f64 {
    match *space {
        Space::Float { low, high, log } => {
            let text = if log {
                format!("{x:.3e}")
            } else {
                let decimals = (3.0 - (high - low).log10().floor()).clamp(0.0, 17.0);
                format!("{x:.*}", decimals as usize)
            };
            // + 0.0 turns a rounded -0.0 into 0.0.
            text.parse::<f64>().unwrap_or(x).clamp(low, high) + 0.0
        }
        Space::Int { low, high, .. } => x.round().clamp(low as f64, high as f64),
        Space::PowerOfTwo { low_exp, high_exp } => x
            .log2()
            .round()
            .clamp(low_exp as f64, high_exp as f64)
            .exp2(),
    }
}

// ---------------------------------------------------------------------------------------------
// Model coordinates

/// A value's coordinate in the model: its log where `log`, its exponent for a power of two.
fn to_model(space: &Space, x: f64) -> f64 {
    match *space {
        Space::Float { log: true, .. } | Space::Int { log: true, .. } => x.ln(),
        Space::PowerOfTwo { .. } => x.log2(),
        _ => x,
    }
}

/// The value at a model coordinate, snapped into the space.
fn from_model(space: &Space, u: f64) -> f64 {
    let x = match *space {
        Space::Float { log: true, .. } | Space::Int { log: true, .. } => u.exp(),
        Space::PowerOfTwo { .. } => u.exp2(),
        _ => u,
    };
    snap(space, x)
}

/// `now` moved by the step from `from` to `to`, in model coordinates (by their ratio in log
/// space, their difference otherwise), snapped into the space; None when that is no number (a
/// value at or below zero on a log scale).
pub fn step_beyond(space: &Space, from: f64, to: f64, now: f64) -> Option<f64> {
    let u = to_model(space, now) + to_model(space, to) - to_model(space, from);
    u.is_finite().then(|| from_model(space, u))
}

/// The model's range; whole numbers own ±0.5 around them, so the ends are drawn as often.
fn bounds(space: &Space) -> (f64, f64) {
    match *space {
        Space::Float { low, high, .. } => (to_model(space, low), to_model(space, high)),
        Space::Int { low, high, .. } => (
            to_model(space, low as f64 - 0.5),
            to_model(space, high as f64 + 0.5),
        ),
        Space::PowerOfTwo { low_exp, high_exp } => (low_exp as f64 - 0.5, high_exp as f64 + 0.5),
    }
}

// ---------------------------------------------------------------------------------------------
// Parzen estimator

/// The prior kernel's width, as a share of the range. The file being tuned is already tuned, so
/// its improvements lie near it: a sixth of the range puts two draws in three within a factor of
/// 2.2 of a rate (range 100x) or one power of two of a batch size, where a kernel as wide as the
/// range (Optuna's, for a search from scratch) spread a 30-experiment night's first draws over
/// two decades, most of them far worse than the file.
const PRIOR_WIDTH: f64 = 1.0 / 6.0;

/// A mixture of Gaussians truncated to [lo, hi], in model coordinates: one kernel per observed
/// value and one for the prior (centred on the current best, `PRIOR_WIDTH` of the range wide),
/// all weighted alike.
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    lo: f64,
    hi: f64,
}

impl Parzen {
    /// Bandwidths as in the paper: each kernel's distance to its farther nearest neighbour, with
    /// Optuna's "magic clip" to [range / min(100, n + 1), range] so that a cluster of equal values
    /// is not a spike. A value outside today's range counts as at its nearest end.
    fn fit(observed: &[f64], prior: f64, lo: f64, hi: f64) -> Self {
        let range = hi - lo;
        let kept = observed.iter().filter(|u| !u.is_nan());
        let mut mus: Vec<f64> = kept.map(|u| u.clamp(lo, hi)).collect();
        mus.push(prior);
        let mut sorted = mus.clone();
        sorted.sort_by(f64::total_cmp);
        let min_sigma = range / (mus.len() as f64).min(100.0);
        let mut sigmas: Vec<f64> = mus
            .iter()
            .map(|&mu| neighbour_gap(&sorted, mu, range).clamp(min_sigma, range))
            .collect();
        *sigmas.last_mut().expect("the prior is a kernel") = range * PRIOR_WIDTH;
        Parzen {
            mus,
            sigmas,
            lo,
            hi,
        }
    }

    fn log_pdf(&self, u: f64) -> f64 {
        let terms = self.mus.iter().zip(&self.sigmas).map(|(&mu, &sigma)| {
            let z = (u - mu) / sigma;
            let mass = normal_cdf((self.hi - mu) / sigma) - normal_cdf((self.lo - mu) / sigma);
            -0.5 * z * z - (sigma * mass * (2.0 * std::f64::consts::PI).sqrt()).ln()
        });
        log_sum_exp(terms) - (self.mus.len() as f64).ln()
    }

    /// A draw: a kernel at random, then its Gaussian until inside the range (a kernel holds at
    /// least a third of its mass there, so the fallback to its centre is all but never taken).
    fn sample(&self, rng: &mut Rng) -> f64 {
        let k = rng.below(self.mus.len());
        (0..64)
            .map(|_| self.mus[k] + self.sigmas[k] * rng.normal())
            .find(|u| (self.lo..=self.hi).contains(u))
            .unwrap_or(self.mus[k])
    }
}

/// The larger distance from `mu` to its nearest distinct neighbours in `sorted` (the whole range
/// when it has none).
fn neighbour_gap(sorted: &[f64], mu: f64, range: f64) -> f64 {
    let below = sorted.partition_point(|&v| v < mu);
    let above = sorted.partition_point(|&v| v <= mu);
    let left = below.checked_sub(1).map(|i| mu - sorted[i]);
    let right = sorted.get(above).map(|v| v - mu);
    left.into_iter()
        .chain(right)
        .reduce(f64::max)
        .unwrap_or(range)
}

/// The standard normal's distribution function (Abramowitz & Stegun 7.1.26, error < 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erf = 1.0 - poly * (-x * x).exp();
    0.5 * (1.0 + erf.copysign(z))
}

fn log_sum_exp(terms: impl Iterator<Item = f64>) -> f64 {
    let terms: Vec<f64> = terms.collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

// ---------------------------------------------------------------------------------------------
// Sampler

/// One past trial of the tuned constants: their values (one per space, in order) and its loss
/// (val_bpb; f64::INFINITY for a run that crashed or diverged: it counts as bad, as does any
/// other non-finite loss).
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub values: Vec<f64>,
    pub loss: f64,
}

/// Optuna's cap on the good group: past it, more good trials only blur l(x).
const MAX_GOOD: usize = 25;

/// Rounds of `candidates` draws before giving up on finding a value not tried yet.
const ROUNDS: usize = 16;

/// The sampler's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Tpe {
    /// Fraction of trials that are "good": the best ceil(gamma n), at least 1, at most 25.
    pub gamma: f64,
    /// Candidates drawn from the good density, of which the best l/g ratio wins.
    pub candidates: usize,
    /// Below this many trials, sample from the prior (around the current best) instead.
    pub startup: usize,
}

impl Default for Tpe {
    /// gamma 0.25, not Optuna's 0.1: a trial here costs minutes of training, so runs are tens of
    /// trials, and 0.1 of 20 is 2 good points, too few to place l(x) (the paper used 0.15-0.25;
    /// on the noisy test below, over 100 seeds, median regret was 0.0016 with 0.1 and 0.0011 with
    /// 0.25, then with a prior as wide as the range). 24 candidates as Optuna. 5 startup trials, not Optuna's 10: the prior already sits
    /// on the best file, and a third of a 30-trial budget is too much to spend on it.
    fn default() -> Self {
        Tpe {
            gamma: 0.25,
            candidates: 24,
            startup: 5,
        }
    }
}

impl Tpe {
    /// The next values for `spaces`, from `trials` (which may be empty; each holds one value per
    /// space), deterministic in `seed`. `current` is the best file's values (the centre of the
    /// prior). The result is snapped into the spaces (`render` writes it exactly), and differs
    /// from `current` and every trial unless no draw found such a point.
    pub fn suggest(
        &self,
        spaces: &[Space],
        current: &[f64],
        trials: &[Trial],
        seed: u64,
    ) -> Vec<f64> {
        assert_eq!(spaces.len(), current.len(), "one current value per space");
        let models = self.densities(spaces, current, trials);
        let tried: Vec<Vec<f64>> = trials
            .iter()
            .map(|t| snap_all(spaces, &t.values))
            .chain([snap_all(spaces, current)])
            .collect();
        let mut rng = Rng::new(seed);
        let mut fallback = None;
        for round in 0..ROUNDS {
            // Draws from l(x) first; when those keep landing on tried points (a narrow prior on
            // a small space), the rest of the range, evenly.
            let everywhere = round >= ROUNDS / 2;
            let mut ranked: Vec<(f64, Vec<f64>)> = (0..self.candidates.max(1))
                .map(|_| {
                    if everywhere {
                        draw_evenly(spaces, &mut rng)
                    } else {
                        draw(&models, spaces, &mut rng)
                    }
                })
                .map(|x| (score(&models, spaces, &x), x))
                .collect();
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
            let new = |x: &Vec<f64>| !tried.iter().any(|t| near(spaces, t, x));
            if let Some((_, x)) = ranked.iter().find(|(_, x)| new(x)) {
                return x.clone();
            }
            fallback.get_or_insert(ranked.swap_remove(0).1);
        }
        fallback.expect("at least one round")
    }

    /// l(x) and g(x) of each dimension, both with the prior centred on `current`.
    fn densities(
        &self,
        spaces: &[Space],
        current: &[f64],
        trials: &[Trial],
    ) -> Vec<(Parzen, Parzen)> {
        let (good, bad) = self.split(trials);
        let per_dimension = |(d, (space, &centre)): (usize, (&Space, &f64))| {
            let (lo, hi) = bounds(space);
            let prior = to_model(space, snap(space, centre));
            let fit = |group: &[&Trial]| {
                let observed: Vec<f64> =
                    group.iter().map(|t| to_model(space, t.values[d])).collect();
                Parzen::fit(&observed, prior, lo, hi)
            };
            (fit(&good), fit(&bad))
        };
        spaces
            .iter()
            .zip(current)
            .enumerate()
            .map(per_dimension)
            .collect()
    }

    /// The good trials (the best ceil(gamma n), finite losses only) and the rest, best first;
    /// both empty below `startup` trials, which leaves l and g the prior alone.
    fn split<'a>(&self, trials: &'a [Trial]) -> (Vec<&'a Trial>, Vec<&'a Trial>) {
        if trials.len() < self.startup {
            return (Vec::new(), Vec::new());
        }
        let loss = |t: &Trial| {
            Some(t.loss)
                .filter(|l| l.is_finite())
                .unwrap_or(f64::INFINITY)
        };
        let mut ranked: Vec<&Trial> = trials.iter().collect();
        ranked.sort_by(|a, b| loss(a).total_cmp(&loss(b)));
        let finite = ranked.iter().filter(|t| t.loss.is_finite()).count();
        let wanted = ((self.gamma * trials.len() as f64).ceil() as usize).clamp(1, MAX_GOOD);
        let bad = ranked.split_off(wanted.min(finite));
        (ranked, bad)
    }
}

fn snap_all(spaces: &[Space], values: &[f64]) -> Vec<f64> {
    spaces
        .iter()
        .zip(values)
        .map(|(s, &x)| snap(s, x))
        .collect()
}

/// Whether `a` and `b` are the same point to the near-duplicate check that refuses files before
/// training: whole numbers equal, real numbers within `FLOAT_TOLERANCE` of each other. The
/// sampler steers clear of those, as the file it made would be refused.
fn near(spaces: &[Space], a: &[f64], b: &[f64]) -> bool {
    spaces
        .iter()
        .zip(a.iter().zip(b))
        .all(|(space, (&x, &y))| match space {
            Space::Float { .. } => {
                x == y || (x - y).abs() <= FLOAT_TOLERANCE * x.abs().max(y.abs())
            }
            Space::Int { .. } | Space::PowerOfTwo { .. } => x == y,
        })
}

/// A candidate: each dimension drawn from its l(x).
fn draw(models: &[(Parzen, Parzen)], spaces: &[Space], rng: &mut Rng) -> Vec<f64> {
    let mut one = |((l, _), space): (&(Parzen, Parzen), &Space)| from_model(space, l.sample(rng));
    models.iter().zip(spaces).map(&mut one).collect()
}

/// A point drawn evenly over the spaces, in model coordinates.
fn draw_evenly(spaces: &[Space], rng: &mut Rng) -> Vec<f64> {
    spaces
        .iter()
        .map(|space| {
            let (lo, hi) = bounds(space);
            from_model(space, lo + (hi - lo) * rng.uniform())
        })
        .collect()
}

/// The joint log l(x) - log g(x), a sum over the dimensions modelled independently.
fn score(models: &[(Parzen, Parzen)], spaces: &[Space], x: &[f64]) -> f64 {
    models
        .iter()
        .zip(spaces)
        .zip(x)
        .map(|(((l, g), space), &x)| {
            let u = to_model(space, x);
            l.log_pdf(u) - g.log_pdf(u)
        })
        .sum()
}

/// The harness's seeded generator (splitmix64) with the draws the sampler needs: it must replay
/// from its seed.
struct Rng(harness::rng::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(harness::rng::Rng::new(seed))
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.0.next_f64()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let radius = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        radius * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside its space, and exactly what `render` writes.
    fn inside(space: &Space, x: f64) -> bool {
        let (lo, hi) = bounds(space);
        snap(space, x) == x && (lo..=hi).contains(&to_model(space, x))
    }

    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }

    /// Uniform in model coordinates: log-uniform where `log`.
    fn random_search(spaces: &[Space], _: &[f64], _: &[Trial], seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let mut draw = |space: &Space| {
            let (lo, hi) = bounds(space);
            from_model(space, lo + (hi - lo) * rng.uniform())
        };
        spaces.iter().map(&mut draw).collect()
    }

    // -----------------------------------------------------------------------------------------
    // Spaces and value texts

    #[test]
    fn spaces_follow_the_rules_on_the_training_files_constants() {
        let cases = [
            ("DEPTH", "Option<usize>", "None", None),
            ("DEPTH", "Option<usize>", "Some(6)", Some(int(1, 12, false))),
            ("ASPECT_RATIO", "usize", "64", Some(int(16, 256, true))),
            ("NEWTON_SCHULZ_STEPS", "usize", "5", Some(int(1, 20, true))),
            ("WINDOW_PATTERN", "&str", "\"SSSL\"", None),
            ("SEED", "u64", "42", None),
            (
                "TOKENS_PER_STEP_CPU",
                "usize",
                "1 << 12",
                Some(power_of_two(9, 15)),
            ),
            (
                "TOKENS_PER_STEP_GPU",
                "usize",
                "1 << 19",
                Some(power_of_two(16, 22)),
            ),
            (
                "MATRIX_LR",
                "f64",
                "0.04",
                Some(float(0.04 / 10.0, 0.04 * 10.0, true)),
            ),
            (
                "ROPE_BASE",
                "f64",
                "10_000.0",
                Some(float(1000.0, 100_000.0, true)),
            ),
            (
                "ADAM_EPS",
                "f64",
                "1e-10",
                Some(float(1e-10 / 10.0, 1e-10 * 10.0, true)),
            ),
            ("ADAM_BETA2", "f64", "0.95", Some(float(0.5, 0.999, false))),
            (
                "MUON_MOMENTUM_START",
                "f64",
                "0.85",
                Some(float(0.5, 0.999, false)),
            ),
            (
                "MUON_MOMENTUM_RAMP",
                "f64",
                "0.3",
                Some(float(0.0, 0.99, false)),
            ),
            (
                "WARMDOWN_RATIO",
                "f64",
                "0.5",
                Some(float(0.0, 0.99, false)),
            ),
            ("FINAL_LR_FRAC", "f64", "0.0", Some(float(0.0, 0.99, false))),
            ("SOFTCAP", "f64", "0.0", Some(float(0.0, 1.0, false))),
            ("SOFTCAP", "f64", "-15.0", None),
            ("USE_VE", "bool", "true", None),
        ];
        for (name, ty, value, expected) in cases {
            assert_eq!(
                space_for(name, ty, value),
                expected,
                "{name}: {ty} = {value}"
            );
        }
    }

    #[test]
    fn a_space_widens_to_hold_a_value_beyond_it() {
        assert_eq!(
            float(0.004, 0.4, true).holding(2.0),
            float(0.004, 2.0, true)
        );
        assert_eq!(
            float(0.0, 0.99, false).holding(0.5),
            float(0.0, 0.99, false)
        );
        assert_eq!(int(4, 64, true).holding(2.0), int(2, 64, true));
        assert_eq!(power_of_two(9, 15).holding(65536.0), power_of_two(9, 16));
        // Outside what the space can hold at all: unchanged.
        assert_eq!(
            float(0.004, 0.4, true).holding(0.0),
            float(0.004, 0.4, true)
        );
        assert_eq!(int(1, 8, true).holding(0.0), int(1, 8, true));
    }

    #[test]
    fn values_render_as_rust_and_parse_back() {
        let lr = space_for("MATRIX_LR", "f64", "0.04").unwrap();
        let eps = space_for("ADAM_EPS", "f64", "1e-10").unwrap();
        let beta = space_for("ADAM_BETA1", "f64", "0.8").unwrap();
        let batch = space_for("TOKENS_PER_STEP_CPU", "usize", "1 << 12").unwrap();
        let depth = space_for("DEPTH", "Option<usize>", "Some(6)").unwrap();
        assert_eq!(render(&lr, "f64", 0.052345678), "0.05235");
        assert_eq!(render(&lr, "f64", 7.0), "0.4");
        assert_eq!(render(&eps, "f64", 1.23456e-11), "1.235e-11");
        assert_eq!(render(&beta, "f64", 0.912345), "0.9123");
        assert_eq!(render(&batch, "usize", 3000.0), "1 << 12");
        assert_eq!(render(&depth, "Option<usize>", 5.4), "Some(5)");
        assert_eq!(parse(&batch, "usize", "1 << 11"), Some(2048.0));
        assert_eq!(parse(&depth, "Option<usize>", "Some(5)"), Some(5.0));
        assert_eq!(parse(&depth, "Option<usize>", "None"), None);
        assert_eq!(parse(&lr, "f64", "10_000.0"), Some(10_000.0));
        let typed = [(lr, "f64"), (eps, "f64"), (beta, "f64"), (batch, "usize")];
        for (space, ty) in typed.into_iter().chain([(depth, "Option<usize>")]) {
            for seed in 0..200 {
                let x = random_search(&[space], &[], &[], seed)[0];
                let text = render(&space, ty, x);
                assert_eq!(parse(&space, ty, &text), Some(x), "{text}");
                assert!(inside(&space, x), "{text}");
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Search

    /// val_bpb-like, optimum 1.0 at lr 0.011 and 40 rows: quadratic in log lr and log rows, and
    /// a learning rate above 0.2 diverges.
    fn true_loss(x: &[f64]) -> f64 {
        if x[0] > 0.2 {
            return f64::INFINITY;
        }
        1.0 + 0.05 * (x[0] / 0.011).ln().powi(2) + 0.02 * (x[1] / 40.0).ln().powi(2)
    }

    /// Regret after the baseline (lr 0.04, 16 rows) and 30 proposals around the best so far,
    /// each observed with noise of sd 0.003: the true loss of the best-observed trial, less 1.0.
    fn regret(seed: u64, propose: impl Fn(&[Space], &[f64], &[Trial], u64) -> Vec<f64>) -> f64 {
        let spaces = [
            space_for("MATRIX_LR", "f64", "0.04").unwrap(),
            space_for("DEVICE_ROWS_CPU", "usize", "16").unwrap(),
        ];
        let mut noise = Rng::new(seed ^ 0x5EED);
        let mut observe = |values: Vec<f64>| {
            let loss = true_loss(&values) + 0.003 * noise.normal();
            Trial { values, loss }
        };
        let mut trials = vec![observe(vec![0.04, 16.0])];
        for t in 0..30 {
            let best = trials
                .iter()
                .min_by(|a, b| a.loss.total_cmp(&b.loss))
                .unwrap();
            let values = propose(&spaces, &best.values, &trials, seed * 1000 + t);
            assert!(spaces.iter().zip(&values).all(|(s, &x)| inside(s, x)));
            trials.push(observe(values));
        }
        let best = trials
            .iter()
            .min_by(|a, b| a.loss.total_cmp(&b.loss))
            .unwrap();
        true_loss(&best.values) - 1.0
    }

    /// Measured: median regret over 20 seeds, 30 trials each after the baseline: TPE 0.00165 (as
    /// much as a learning rate 20% off the optimum costs), random search 0.00433 (a rate 34% off).
    /// The optimum here is 3.6x below the start, far for the narrow prior (0.00102 with a prior
    /// as wide as the range), which pays where improvements are near the file.
    #[test]
    fn finds_a_noisy_optimum_sooner_than_random_search() {
        let tpe = Tpe::default();
        let by_tpe = |s| regret(s, |sp, c, t, seed| tpe.suggest(sp, c, t, seed));
        let tpe_regret = median((0..20).map(by_tpe).collect());
        let random_regret = median((0..20).map(|s| regret(s, random_search)).collect());
        eprintln!("median regret over 20 seeds: tpe {tpe_regret:.5}, random {random_regret:.5}");
        assert!(tpe_regret < 0.002, "tpe {tpe_regret}");
        assert!(
            tpe_regret < random_regret,
            "tpe {tpe_regret}, random {random_regret}"
        );
    }

    #[test]
    fn suggestions_are_deterministic_in_the_seed_and_inside_their_spaces() {
        let spaces = [
            space_for("MATRIX_LR", "f64", "0.04").unwrap(),
            space_for("ADAM_BETA2", "f64", "0.95").unwrap(),
            space_for("WARMUP_RATIO", "f64", "0.0").unwrap(),
            space_for("HEAD_DIM", "usize", "128").unwrap(),
            space_for("TOKENS_PER_STEP_CPU", "usize", "1 << 12").unwrap(),
            space_for("DEPTH", "Option<usize>", "Some(4)").unwrap(),
        ];
        let current = [0.04, 0.95, 0.0, 128.0, 4096.0, 4.0];
        let trials: Vec<Trial> = (0..12)
            .map(|i| Trial {
                values: random_search(&spaces, &current, &[], i),
                loss: if i % 5 == 4 {
                    f64::INFINITY
                } else {
                    1.0 + 0.01 * (i % 7) as f64
                },
            })
            .collect();
        let tpe = Tpe::default();
        for history in [&trials[..0], &trials[..3], &trials[..]] {
            let outputs: Vec<Vec<f64>> = (0..50)
                .map(|seed| tpe.suggest(&spaces, &current, history, seed))
                .collect();
            for (seed, x) in outputs.iter().enumerate() {
                assert_eq!(*x, tpe.suggest(&spaces, &current, history, seed as u64));
                assert!(spaces.iter().zip(x).all(|(s, &v)| inside(s, v)), "{x:?}");
            }
            let unique = outputs
                .iter()
                .filter(|x| outputs.iter().filter(|y| y == x).count() == 1);
            assert!(unique.count() > 45, "most seeds give a point of their own");
        }
    }

    #[test]
    fn a_value_already_tried_is_not_proposed_again() {
        let spaces = [int(1, 4, false)];
        let trial = |x: f64, loss: f64| Trial {
            values: vec![x],
            loss,
        };
        let trials = vec![trial(1.0, 1.0), trial(2.0, 0.9), trial(3.0, 1.1)];
        for tpe in [
            Tpe::default(),
            Tpe {
                startup: 0,
                ..Tpe::default()
            },
        ] {
            for seed in 0..50 {
                assert_eq!(tpe.suggest(&spaces, &[2.0], &trials, seed), [4.0]);
            }
        }
        let all = [trials, vec![trial(4.0, 1.2)]].concat();
        assert!(inside(
            &spaces[0],
            Tpe::default().suggest(&spaces, &[2.0], &all, 0)[0]
        ));
        // A real number within 5% of one tried would make a file the ledger refuses.
        let rate = [float(0.004, 0.4, true)];
        let near_best: Vec<Trial> = (0..8)
            .map(|i| trial(0.04 * (1.0 + 0.001 * i as f64), 1.0))
            .collect();
        for seed in 0..20 {
            let x = Tpe::default().suggest(&rate, &[0.04], &near_best, seed)[0];
            assert!((x - 0.04).abs() > 0.05 * 0.04 * 0.99, "{x}");
        }
    }

    #[test]
    fn failures_push_the_sampler_away() {
        let spaces = [space_for("MATRIX_LR", "f64", "0.04").unwrap()];
        // 12 learning rates over [0.004, 0.4], worse away from 0.04; the 4 above 0.1 crash or win.
        let lrs: Vec<f64> = (0..12)
            .map(|i| 0.004 * 100f64.powf(i as f64 / 11.0))
            .collect();
        let history = |high: f64| -> Vec<Trial> {
            let loss = |lr: f64| {
                if lr > 0.1 {
                    high
                } else {
                    1.0 + 0.01 * (lr / 0.04).ln().abs()
                }
            };
            lrs.iter()
                .map(|&lr| Trial {
                    values: vec![lr],
                    loss: loss(lr),
                })
                .collect()
        };
        let share_high = |trials: &[Trial]| {
            let suggest = |seed| Tpe::default().suggest(&spaces, &[0.04], trials, seed)[0];
            (0..100).filter(|&seed| suggest(seed) > 0.1).count()
        };
        let (after_crashes, after_wins) = (
            share_high(&history(f64::INFINITY)),
            share_high(&history(0.9)),
        );
        // Measured: 0 of 100 after crashes, 100 of 100 after wins.
        assert!(
            after_crashes < 10 && after_wins > 50,
            "{after_crashes} {after_wins}"
        );
    }
}
