//! The keep rule when several candidates train at once (`--workers`): each is judged by the noise
//! rule against the best file it was made on; of those that pass, the best is kept, and every
//! other one is re-applied on top of the new best and queued again, or superseded when its change
//! no longer applies there (or is already in it).

/// One candidate of a round, judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub n: usize,
    /// Its val_bpb (the mean of its runs).
    pub value: f64,
    /// It beat the best by more than the noise.
    pub passed: bool,
}

/// What becomes of a judged candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Keep,
    Discard,
    /// It passed, another passed by more: its change goes on top of the new best, queued.
    Requeue,
    /// It passed, another passed by more, and its change does not apply on top of the new best.
    Superseded,
}

/// The fate of each of `judged` (in its order). `reapplies(n, winner)` says whether candidate
/// `n`'s change applies on top of the kept candidate `winner`.
pub fn settle(judged: &[Judged], mut reapplies: impl FnMut(usize, usize) -> bool) -> Vec<Fate> {
    let winner = judged
        .iter()
        .filter(|j| j.passed)
        // Ties go to the lower number, the one proposed first.
        .min_by(|a, b| a.value.total_cmp(&b.value).then(a.n.cmp(&b.n)))
        .map(|j| j.n);
    judged
        .iter()
        .map(|j| match winner {
            Some(w) if j.n == w => Fate::Keep,
            Some(w) if j.passed => match reapplies(j.n, w) {
                true => Fate::Requeue,
                false => Fate::Superseded,
            },
            _ => Fate::Discard,
        })
        .collect()
}

/// `candidate`'s change (from `parent`) on top of `best`, which was also made from `parent`:
/// None when the two changed the same lines, or when `best` already holds the change.
pub fn reapply(parent: &str, best: &str, candidate: &str) -> Option<String> {
    let merged = diffy::merge(parent, best, candidate).ok()?;
    (merged != best).then_some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(results: &[(usize, f64, bool)]) -> Vec<Judged> {
        results
            .iter()
            .map(|&(n, value, passed)| Judged { n, value, passed })
            .collect()
    }

    #[test]
    fn the_best_passing_candidate_is_kept_and_other_passing_ones_requeued() {
        let round = judged(&[
            (5, 1.90, true),
            (6, 1.85, true),
            (7, 1.99, false),
            (8, 1.80, false),
        ]);
        let mut asked = Vec::new();
        let fates = settle(&round, |n, winner| {
            asked.push((n, winner));
            true
        });
        // e8 is lower but did not pass (its noise rule, e.g. a crash-free but unjudged run).
        assert_eq!(
            fates,
            [Fate::Requeue, Fate::Keep, Fate::Discard, Fate::Discard]
        );
        assert_eq!(
            asked,
            [(5, 6)],
            "only beaten passing candidates are re-applied"
        );
    }

    #[test]
    fn a_change_that_no_longer_applies_is_superseded() {
        let round = judged(&[(1, 1.90, true), (2, 1.85, true), (3, 1.88, true)]);
        let fates = settle(&round, |n, _| n == 3);
        assert_eq!(fates, [Fate::Superseded, Fate::Keep, Fate::Requeue]);
    }

    #[test]
    fn nothing_passing_keeps_nothing_and_ties_go_to_the_first() {
        let none = judged(&[(1, 1.90, false), (2, 1.85, false)]);
        assert_eq!(
            settle(&none, |_, _| panic!("nothing to re-apply")),
            [Fate::Discard, Fate::Discard]
        );
        let tie = judged(&[(4, 1.85, true), (3, 1.85, true)]);
        assert_eq!(settle(&tie, |_, _| true), [Fate::Requeue, Fate::Keep]);
    }

    #[test]
    fn changes_to_other_lines_merge_and_the_same_lines_do_not() {
        let parent = "const A: f64 = 1.0;\nconst B: f64 = 2.0;\nconst C: f64 = 3.0;\n";
        let best = "const A: f64 = 1.5;\nconst B: f64 = 2.0;\nconst C: f64 = 3.0;\n";
        let other = "const A: f64 = 1.0;\nconst B: f64 = 2.0;\nconst C: f64 = 4.0;\n";
        assert_eq!(
            reapply(parent, best, other).as_deref(),
            Some("const A: f64 = 1.5;\nconst B: f64 = 2.0;\nconst C: f64 = 4.0;\n")
        );
        let same_line = "const A: f64 = 0.5;\nconst B: f64 = 2.0;\nconst C: f64 = 3.0;\n";
        assert_eq!(reapply(parent, best, same_line), None);
        // Already in the best file.
        assert_eq!(reapply(parent, best, best), None);
    }
}
