//! How sure a rank statistic is: a bootstrap interval over subnets and a p-value against a
//! random ranking, for one seed or for the mean over seeds.
//!
//! The data of one predictor is `scores[s][i]` and `truth[s][i]` for seed `s` and subnet `i`
//! (the same subnets in every seed). The statistic (Kendall's tau-b, Spearman's rho) is taken
//! per seed and averaged over the seeds where it is defined.
//!
//! - Interval: the 2.5 and 97.5 percentiles of the mean statistic over `BOOTSTRAP_RESAMPLES`
//!   resamples of the subnets with replacement (the same resample in every seed, seeded).
//! - p-value: one-sided, the chance that random rankings score at least the observed mean:
//!   each seed's truth permuted independently. Exact for up to `EXACT_UP_TO` subnets (every
//!   permutation of every seed, the seeds' distributions convolved), else
//!   `(1 + hits) / (1 + MONTE_CARLO_DRAWS)` over seeded random permutations.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub const BOOTSTRAP_RESAMPLES: usize = 2000;
pub const MONTE_CARLO_DRAWS: usize = 10_000;
/// 9! = 362,880 permutations per seed.
pub const EXACT_UP_TO: usize = 9;
const SEED: u64 = 0x5354_4154;
/// Statistics are kept on this grid. A sum of `k` values on it is within `k / 2` steps of the
/// sum's own value, so sums are compared with a tolerance of one step per term: the same value
/// computed twice, or reached by other terms, counts as equal (the observed one is among the
/// permutations, and ties with it count as at least as good).
const GRID: f64 = 1e9;

/// A rank statistic of paired scores; `None` where undefined (a constant side).
pub type Statistic = fn(&[f64], &[f64]) -> Option<f64>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Exact,
    MonteCarlo,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PValue {
    pub value: f64,
    pub method: Method,
}

/// The mean over seeds of `statistic`, over the seeds where it is defined.
pub fn mean_over_seeds(
    statistic: Statistic,
    scores: &[Vec<f64>],
    truth: &[Vec<f64>],
) -> Option<f64> {
    let values: Vec<f64> = scores
        .iter()
        .zip(truth)
        .filter_map(|(s, t)| statistic(s, t))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The 95 % percentile interval of the mean statistic, resampling subnets (see the module).
pub fn bootstrap_interval(
    statistic: Statistic,
    scores: &[Vec<f64>],
    truth: &[Vec<f64>],
) -> Option<(f64, f64)> {
    let n = scores.first().map_or(0, Vec::len);
    if n < 3 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .filter_map(|_| {
            let picked: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            mean_over_seeds(statistic, &pick(scores, &picked), &pick(truth, &picked))
        })
        .collect();
    if means.len() < BOOTSTRAP_RESAMPLES / 2 {
        return None;
    }
    means.sort_by(f64::total_cmp);
    Some((percentile(&means, 0.025), percentile(&means, 0.975)))
}

/// Linear interpolation between the closest ranks of sorted `values`.
fn percentile(values: &[f64], q: f64) -> f64 {
    let position = q * (values.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    values[low] + (values[high] - values[low]) * (position - low as f64)
}

/// The one-sided p-value of the mean statistic against random rankings (see the module).
pub fn permutation_p(
    statistic: Statistic,
    scores: &[Vec<f64>],
    truth: &[Vec<f64>],
) -> Option<PValue> {
    let observed = mean_over_seeds(statistic, scores, truth)?;
    let n = scores.first().map_or(0, Vec::len);
    if n <= EXACT_UP_TO {
        exact_p(statistic, scores, truth)
    } else {
        Some(monte_carlo_p(statistic, scores, truth, observed))
    }
}

/// Every permutation of each seed's truth; the seeds whose statistic is defined are
/// combined by convolving their distributions of the statistic (on the grid).
fn exact_p(statistic: Statistic, scores: &[Vec<f64>], truth: &[Vec<f64>]) -> Option<PValue> {
    let mut observed_sum = 0i64;
    // Distribution of the sum over seeds: value on the grid -> probability (ordered, so that
    // the sums are taken in the same order in every run).
    let mut sum: BTreeMap<i64, f64> = BTreeMap::from([(0, 1.0)]);
    let mut seeds = 0;
    for (s, t) in scores.iter().zip(truth) {
        let Some(value) = statistic(s, t) else {
            continue;
        };
        observed_sum += on_grid(value);
        seeds += 1;
        let one = permutation_distribution(statistic, s, t);
        let mut next = BTreeMap::new();
        for (a, pa) in &sum {
            for (b, pb) in &one {
                *next.entry(a + b).or_insert(0.0) += pa * pb;
            }
        }
        sum = next;
    }
    if seeds == 0 {
        return None;
    }
    let tolerance = seeds as i64;
    let value = sum
        .iter()
        .filter(|(v, _)| **v >= observed_sum - tolerance)
        .map(|(_, p)| p)
        .sum::<f64>()
        .min(1.0);
    Some(PValue {
        value,
        method: Method::Exact,
    })
}

/// The statistic over every permutation of `truth` (Heap's algorithm), as probabilities on
/// the grid.
fn permutation_distribution(
    statistic: Statistic,
    scores: &[f64],
    truth: &[f64],
) -> BTreeMap<i64, f64> {
    let n = truth.len();
    let mut permuted = truth.to_vec();
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    let mut record = |values: &[f64]| {
        // Under a permutation the truth keeps its ties, so the statistic stays defined.
        let value = statistic(scores, values).unwrap_or(0.0);
        *counts.entry(on_grid(value)).or_insert(0) += 1;
    };
    record(&permuted);
    let mut c = vec![0; n];
    let mut i = 1;
    while i < n {
        if c[i] < i {
            let j = if i % 2 == 0 { 0 } else { c[i] };
            permuted.swap(j, i);
            record(&permuted);
            c[i] += 1;
            i = 1;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    let total: u64 = counts.values().sum();
    counts
        .into_iter()
        .map(|(v, count)| (v, count as f64 / total as f64))
        .collect()
}

fn on_grid(value: f64) -> i64 {
    (value * GRID).round() as i64
}

fn monte_carlo_p(
    statistic: Statistic,
    scores: &[Vec<f64>],
    truth: &[Vec<f64>],
    observed: f64,
) -> PValue {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut shuffled: Vec<Vec<f64>> = truth.to_vec();
    // A mean is a sum over seeds divided: the same tolerance as the exact sums'.
    let target = on_grid(observed) - truth.len() as i64;
    let hits = (0..MONTE_CARLO_DRAWS)
        .filter(|_| {
            shuffled.iter_mut().for_each(|t| t.shuffle(&mut rng));
            mean_over_seeds(statistic, scores, &shuffled).is_some_and(|m| on_grid(m) >= target)
        })
        .count();
    PValue {
        value: (1 + hits) as f64 / (1 + MONTE_CARLO_DRAWS) as f64,
        method: Method::MonteCarlo,
    }
}

/// Two predictors compared on the same subnets: the difference of their mean statistics
/// (`a` minus `b`), its 95 % percentile interval over the same bootstrap resamples of the
/// subnets for both, and a two-sided bootstrap p-value: twice the smaller share of resampled
/// differences on either side of zero (at most 1), so a p that the resampling cannot resolve is
/// `1 / resamples` at the least.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedDelta {
    pub delta: f64,
    pub interval: (f64, f64),
    pub p: f64,
}

/// The paired comparison of predictors `a` and `b` against the same `truth` (see `PairedDelta`).
pub fn paired_delta(
    statistic: Statistic,
    a: &[Vec<f64>],
    b: &[Vec<f64>],
    truth: &[Vec<f64>],
) -> Option<PairedDelta> {
    let delta = mean_over_seeds(statistic, a, truth)? - mean_over_seeds(statistic, b, truth)?;
    let n = truth.first().map_or(0, Vec::len);
    if n < 3 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut deltas = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        let picked: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
        let (a, b, t) = (pick(a, &picked), pick(b, &picked), pick(truth, &picked));
        let resampled = mean_over_seeds(statistic, &a, &t)
            .zip(mean_over_seeds(statistic, &b, &t))
            .map(|(a, b)| a - b);
        deltas.extend(resampled);
    }
    if deltas.len() < BOOTSTRAP_RESAMPLES / 2 {
        return None;
    }
    deltas.sort_by(f64::total_cmp);
    let share = |f: &dyn Fn(f64) -> bool| {
        deltas.iter().filter(|&&d| f(d)).count() as f64 / deltas.len() as f64
    };
    let smaller = share(&|d| d <= 0.0).min(share(&|d| d >= 0.0));
    let p = (2.0 * smaller).clamp(1.0 / deltas.len() as f64, 1.0);
    let interval = (percentile(&deltas, 0.025), percentile(&deltas, 0.975));
    Some(PairedDelta { delta, interval, p })
}

/// The resample `picked` of every seed's values.
fn pick(values: &[Vec<f64>], picked: &[usize]) -> Vec<Vec<f64>> {
    values
        .iter()
        .map(|v| picked.iter().map(|&i| v[i]).collect())
        .collect()
}

/// Holm's step-down correction of `p` (the comparisons of one family): the k-th smallest
/// p-value times (m - k + 1), made monotone, at most 1; in the input's order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The subnets of the top quartile of `truth` (the best quarter, at least 3 of them).
fn top_quartile(truth: &[f64]) -> Vec<usize> {
    let count = truth.len().div_ceil(4).max(3).min(truth.len());
    let mut order: Vec<usize> = (0..truth.len()).collect();
    order.sort_by(|&i, &j| truth[j].total_cmp(&truth[i]));
    order.truncate(count);
    order.sort_unstable();
    order
}

/// `statistic` of one seed within the top quartile of its truth: whether a predictor orders
/// the best subnets, where a search decides.
pub fn within_top_quartile(statistic: Statistic, scores: &[f64], truth: &[f64]) -> Option<f64> {
    let top = top_quartile(truth);
    let select = |values: &[f64]| top.iter().map(|&i| values[i]).collect::<Vec<f64>>();
    statistic(&select(scores), &select(truth))
}

/// Precision at k: the share of the predictor's top k that are among the truth's top k.
/// Chance is k / n (`precision_chance`).
pub fn precision_at(scores: &[f64], truth: &[f64], k: usize) -> f64 {
    crate::report::ranking::top_k_overlap(scores, truth, k)
}

/// What precision at k a random ranking of n subnets has on average.
pub fn precision_chance(n: usize, k: usize) -> f64 {
    k.min(n) as f64 / n as f64
}

/// The seed-averaged truth's values, subnet by subnet.
pub fn seed_mean(values: &[Vec<f64>]) -> Vec<f64> {
    let n = values.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| values.iter().map(|v| v[i]).sum::<f64>() / values.len() as f64)
        .collect()
}

/// The pooled statistic: the seed-averaged predictor against the seed-averaged truth. Averaging
/// takes out each seed's noise on both sides, so it is not bounded by the one-seed ceiling.
pub fn pooled(statistic: Statistic, scores: &[Vec<f64>], truth: &[Vec<f64>]) -> Option<f64> {
    statistic(&seed_mean(scores), &seed_mean(truth))
}

/// The leave-one-seed-out ceiling: for each seed, the statistic of the mean of the other
/// seeds' truth against that seed's truth, averaged. It bounds what a predictor's per-seed
/// statistic (against one seed's truth) can be expected to reach; `None` under two seeds.
pub fn leave_one_seed_out(statistic: Statistic, truth: &[Vec<f64>]) -> Option<f64> {
    if truth.len() < 2 {
        return None;
    }
    let values: Vec<f64> = (0..truth.len())
        .filter_map(|s| {
            let others: Vec<Vec<f64>> = (truth.iter().enumerate())
                .filter(|(o, _)| *o != s)
                .map(|(_, t)| t.clone())
                .collect();
            statistic(&seed_mean(&others), &truth[s])
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ranking::{kendall_tau_b, spearman_rho};

    fn one_seed(scores: &[f64], truth: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        (vec![scores.to_vec()], vec![truth.to_vec()])
    }

    /// Four subnets in the same order: 1 of the 24 permutations scores tau = 1.
    #[test]
    fn a_perfect_ranking_of_four_has_p_one_in_24() {
        let (s, t) = one_seed(&[1.0, 2.0, 3.0, 4.0], &[0.1, 0.2, 0.3, 0.4]);
        let p = permutation_p(kendall_tau_b, &s, &t).expect("defined");
        assert_eq!(p.method, Method::Exact);
        assert!((p.value - 1.0 / 24.0).abs() < 1e-12, "{p:?}");
        // Three seeds, each perfect: (1/24)^3.
        let three = (vec![s[0].clone(); 3], vec![t[0].clone(); 3]);
        let p = permutation_p(kendall_tau_b, &three.0, &three.1).expect("defined");
        assert!((p.value - (1.0f64 / 24.0).powi(3)).abs() < 1e-15, "{p:?}");
    }

    /// Hand count: n = 4, tau = 2/3 (one discordant pair of six); permutations of 4 with at
    /// most one inversion: 1 + 3 = 4 of 24.
    #[test]
    fn one_swap_in_four_has_p_one_in_six() {
        let (s, t) = one_seed(&[1.0, 2.0, 3.0, 4.0], &[0.1, 0.3, 0.2, 0.4]);
        let p = permutation_p(kendall_tau_b, &s, &t).expect("defined");
        assert!((p.value - 4.0 / 24.0).abs() < 1e-12, "{p:?}");
    }

    /// The mean over two seeds of n = 3: tau per seed in {1, 1/3, -1/3, -1} with
    /// probabilities 1, 2, 2, 1 (of 6); observed 1 and 1/3: P(mean >= 2/3) = (1 + 2 + 2) / 36.
    #[test]
    fn the_mean_over_seeds_convolves_the_seeds() {
        let scores = vec![vec![1.0, 2.0, 3.0]; 2];
        let truth = vec![vec![1.0, 2.0, 3.0], vec![2.0, 1.0, 3.0]];
        let p = permutation_p(kendall_tau_b, &scores, &truth).expect("defined");
        assert!((p.value - 5.0 / 36.0).abs() < 1e-12, "{p:?}");
    }

    /// Three seeds of n = 4 with taus 1, 1/3 and -1/3 (0, 2 and 4 inversions): their sum, 1,
    /// is also reached by sums whose terms round the other way on the grid (1/3 + 1/3 + 1/3).
    /// Hand count: a seed's tau is (3 - inversions) / 3, the inversions of 4 items counted by
    /// 1 + 3x + 5x^2 + 6x^3 + 5x^4 + 3x^5 + x^6; the sum of three taus is at least 1 for the
    /// triples of permutations with at most 6 inversions in all, the first seven coefficients
    /// of that polynomial cubed: 1 + 9 + 42 + 135 + 333 + 666 + 1115 = 2301 of 24^3 = 13824.
    #[test]
    fn tied_sums_over_seeds_count_as_at_least_the_observed() {
        let scores = vec![vec![1.0, 2.0, 3.0, 4.0]; 3];
        let truth = vec![
            vec![1.0, 2.0, 3.0, 4.0],
            vec![2.0, 3.0, 1.0, 4.0],
            vec![4.0, 2.0, 1.0, 3.0],
        ];
        let p = permutation_p(kendall_tau_b, &scores, &truth).expect("defined");
        assert_eq!(p.method, Method::Exact);
        assert!((p.value - 2301.0 / 13824.0).abs() < 1e-12, "{p:?}");
    }

    /// SciPy 1.17.1 on these 7 pairs (with ties):
    /// `permutation_test((x,), lambda a: kendalltau(a, y).statistic, permutation_type='pairings',
    /// alternative='greater', n_resamples=inf)` gives p = 0.012698412698412698 (64 of 5040
    /// permutations); with `spearmanr`, p = 0.009523809523809525 (48 of 5040).
    #[test]
    fn exact_p_values_match_scipy() {
        let x = [0.9871, 0.9877, 0.9884, 0.9895, 0.9871, 0.9902, 0.9890];
        let y = [0.9855, 0.9874, 0.9880, 0.9884, 0.9861, 0.9880, 0.9879];
        let (s, t) = one_seed(&x, &y);
        let tau = permutation_p(kendall_tau_b, &s, &t).expect("tau");
        assert!((tau.value - 0.012698412698412698).abs() < 1e-12, "{tau:?}");
        let rho = permutation_p(spearman_rho, &s, &t).expect("rho");
        assert!((rho.value - 0.009523809523809525).abs() < 1e-12, "{rho:?}");
    }

    /// Above nine subnets: seeded Monte Carlo, never below 1 / (1 + draws); a strong
    /// ranking of 12 is significant, a shuffled one is not.
    #[test]
    fn monte_carlo_above_nine_subnets() {
        let x: Vec<f64> = (0..12).map(f64::from).collect();
        let (s, t) = one_seed(&x, &x);
        let p = permutation_p(kendall_tau_b, &s, &t).expect("defined");
        assert_eq!(p.method, Method::MonteCarlo);
        assert_eq!(p.value, 1.0 / (1 + MONTE_CARLO_DRAWS) as f64);
        let shuffled = [5.0, 2.0, 9.0, 0.0, 11.0, 3.0, 7.0, 1.0, 10.0, 4.0, 8.0, 6.0];
        let (s, t) = one_seed(&x, &shuffled);
        let p = permutation_p(kendall_tau_b, &s, &t).expect("defined");
        assert!(p.value > 0.2, "{p:?}");
        assert_eq!(p, permutation_p(kendall_tau_b, &s, &t).expect("seeded"));
    }

    /// A resampler draws its own random numbers, so against SciPy 1.17.1 the interval agrees
    /// within the resampling error: `bootstrap((x, y), kendalltau, paired=True,
    /// method='percentile', n_resamples=20000)` gives (0.5556, 0.8363) for tau and
    /// (0.7474, 0.9487) for `spearmanr`. Besides: it holds the observed value, is the same run
    /// to run, is wider for fewer subnets; under three subnets there is none.
    #[test]
    fn bootstrap_intervals_behave() {
        let x: Vec<f64> = (0..20).map(f64::from).collect();
        let noisy: Vec<f64> = x
            .iter()
            .map(|v| v + [0.0, 3.5, -2.5, 1.5][*v as usize % 4])
            .collect();
        let (s, t) = one_seed(&x, &noisy);
        let tau = kendall_tau_b(&x, &noisy).expect("tau");
        let (lo, hi) = bootstrap_interval(kendall_tau_b, &s, &t).expect("interval");
        assert!(
            lo <= tau && tau <= hi && -1.0 <= lo && hi <= 1.0,
            "{lo} {tau} {hi}"
        );
        assert!(
            (lo - 0.5556).abs() < 0.03 && (hi - 0.8363).abs() < 0.03,
            "tau: {lo}..{hi}"
        );
        let (rho_lo, rho_hi) = bootstrap_interval(spearman_rho, &s, &t).expect("interval");
        assert!(
            (rho_lo - 0.7474).abs() < 0.03 && (rho_hi - 0.9487).abs() < 0.03,
            "rho: {rho_lo}..{rho_hi}"
        );
        assert_eq!(Some((lo, hi)), bootstrap_interval(kendall_tau_b, &s, &t));
        let (s5, t5) = one_seed(&x[..5], &noisy[..5]);
        let (lo5, hi5) = bootstrap_interval(kendall_tau_b, &s5, &t5).expect("interval");
        assert!(
            hi5 - lo5 > hi - lo,
            "5 subnets: {lo5}..{hi5}, 20: {lo}..{hi}"
        );
        let (s2, t2) = one_seed(&x[..2], &noisy[..2]);
        assert_eq!(
            bootstrap_interval(kendall_tau_b, &s2, &t2),
            None,
            "two subnets"
        );
    }

    /// Holm by hand: p = (0.01, 0.04, 0.03, 0.2) -> sorted 0.01 x 4 = 0.04, 0.03 x 3 = 0.09,
    /// 0.04 x 2 = 0.08 -> 0.09 (monotone), 0.2 x 1 = 0.2; statsmodels 0.15
    /// `multipletests(p, method='holm')` gives the same (0.04, 0.09, 0.09, 0.2).
    #[test]
    fn holm_steps_down_and_stays_monotone() {
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.2]);
        let expected = [0.04, 0.09, 0.09, 0.2];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{adjusted:?}");
        }
        assert_eq!(holm(&[0.6, 0.5]), [1.0, 1.0]);
    }

    /// A perfect predictor against a reversed one: the difference is 2, its interval excludes
    /// zero and p is small; a predictor against itself differs by 0 with p = 1.
    #[test]
    fn paired_delta_separates_a_better_predictor() {
        let truth: Vec<f64> = (0..12).map(f64::from).collect();
        let good: Vec<f64> = truth
            .iter()
            .map(|v| v + [0.0, 1.5, -1.5][*v as usize % 3])
            .collect();
        let reversed: Vec<f64> = truth.iter().map(|v| -v).collect();
        let seeds = |v: &Vec<f64>| vec![v.clone(); 2];
        let d = paired_delta(
            kendall_tau_b,
            &seeds(&good),
            &seeds(&reversed),
            &seeds(&truth),
        )
        .expect("defined");
        assert!(d.delta > 1.5 && d.interval.0 > 0.0, "{d:?}");
        assert!(d.p <= 1.0 / BOOTSTRAP_RESAMPLES as f64 + 1e-12, "{d:?}");
        let same = paired_delta(kendall_tau_b, &seeds(&good), &seeds(&good), &seeds(&truth))
            .expect("defined");
        assert_eq!((same.delta, same.p), (0.0, 1.0));
    }

    /// The top quartile of 8 subnets is 3 (at least three); within it the order is reversed:
    /// SciPy 1.17.1 `kendalltau([8, 7, 6], [0.6, 0.7, 0.8])` is -1.0.
    #[test]
    fn top_quartile_and_precision() {
        let truth = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
        let scores = [1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 7.0, 6.0];
        assert_eq!(top_quartile(&truth), [5, 6, 7]);
        let tau = within_top_quartile(kendall_tau_b, &scores, &truth).expect("tau");
        assert!((tau + 1.0).abs() < 1e-12, "{tau}");
        assert_eq!(precision_at(&scores, &truth, 3), 1.0);
        assert_eq!(precision_at(&scores, &truth, 1), 0.0);
        assert_eq!(precision_chance(8, 2), 0.25);
    }

    /// Three seeds: the mean of two against the third, by hand; pooled averages both sides.
    #[test]
    fn leave_one_seed_out_and_pooled() {
        let truth = vec![
            vec![1.0, 2.0, 3.0],
            vec![1.0, 3.0, 2.0],
            vec![2.0, 1.0, 3.0],
        ];
        // SciPy 1.17.1: `kendalltau(np.delete(T, s, 0).mean(0), T[s]).statistic` for each seed s
        // is 1.0, 0.0 and 0.0, so the ceiling is 1/3.
        let by_hand = 1.0 / 3.0;
        let ceiling = leave_one_seed_out(kendall_tau_b, &truth).expect("defined");
        assert!((ceiling - by_hand).abs() < 1e-12, "{ceiling} {by_hand}");
        assert_eq!(leave_one_seed_out(kendall_tau_b, &truth[..1]), None);
        let pooled_tau = pooled(kendall_tau_b, &truth, &truth).expect("pooled");
        assert!((pooled_tau - 1.0).abs() < 1e-12);
    }
}
