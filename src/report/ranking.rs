//! Does one-shot accuracy rank the subnets as stand-alone training does? Rank statistics, top-k
//! overlap and the regret of trusting a predictor's picks.
//!
//! With few subnets a statistic from one run takes few values, so these are reported per seed,
//! summarised over seeds, and given an interval and a p-value (`statistics`).

/// Kendall's tau-b between paired scores: `(C - D) / sqrt((C + D + Tx) (C + D + Ty))`, where
/// `Tx` (`Ty`) counts pairs tied in `x` only (`y` only); pairs tied in both count nowhere.
/// `None` when either side is constant or fewer than two pairs are given.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len(), "kendall_tau_b: paired scores");
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0.0f64, 0.0, 0.0, 0.0);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let (dx, dy) = (x[i] - x[j], y[i] - y[j]);
            match (dx == 0.0, dy == 0.0) {
                (true, true) => {}
                (true, false) => tied_x += 1.0,
                (false, true) => tied_y += 1.0,
                (false, false) if (dx > 0.0) == (dy > 0.0) => concordant += 1.0,
                (false, false) => discordant += 1.0,
            }
        }
    }
    let pairs = concordant + discordant;
    let denominator = ((pairs + tied_x) * (pairs + tied_y)).sqrt();
    (denominator > 0.0).then(|| (concordant - discordant) / denominator)
}

/// Spearman's rho: Pearson's correlation of the ranks, tied values sharing their average rank.
/// `None` when either side is constant.
pub fn spearman_rho(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len(), "spearman_rho: paired scores");
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Ranks from 1, ties sharing the mean of the ranks they span.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let end = (start..order.len())
            .find(|&k| values[order[k]] != values[order[start]])
            .unwrap_or(order.len());
        let shared = (start + 1 + end) as f64 / 2.0;
        order[start..end].iter().for_each(|&i| ranks[i] = shared);
        start = end;
    }
    ranks
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mean_x, mean_y) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let covariance: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (a - mean_x) * (b - mean_y))
        .sum();
    let var_x: f64 = x.iter().map(|a| (a - mean_x).powi(2)).sum();
    let var_y: f64 = y.iter().map(|b| (b - mean_y).powi(2)).sum();
    (var_x > 0.0 && var_y > 0.0).then(|| covariance / (var_x * var_y).sqrt())
}

/// Indices of the `k` best `scores` (highest first; ties in the given order).
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Stable: equal scores keep their order.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order.truncate(k);
    order
}

/// The share of the `k` best by `truth` that are also among the `k` best by `scores`.
pub fn top_k_overlap(scores: &[f64], truth: &[f64], k: usize) -> f64 {
    assert_eq!(scores.len(), truth.len(), "top_k_overlap: paired scores");
    let predicted = top_k(scores, k);
    let best = top_k(truth, k);
    let shared = predicted.iter().filter(|i| best.contains(i)).count();
    shared as f64 / k.min(scores.len()).max(1) as f64
}

/// The best `truth` minus the best `truth` among the predictor's top `k`: what trusting the
/// predictor costs when the best of its `k` picks is kept (k = 1: its winner; ties broken
/// by order).
pub fn regret_at(scores: &[f64], truth: &[f64], k: usize) -> f64 {
    assert_eq!(scores.len(), truth.len(), "regret: paired scores");
    let best = truth.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let picked = top_k(scores, k)
        .iter()
        .map(|&i| truth[i])
        .fold(f64::NEG_INFINITY, f64::max);
    best - picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn kendall_tau_b_hand_computed() {
        // One discordant pair of six.
        assert!(close(
            kendall_tau_b(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap(),
            4.0 / 6.0
        ));
        // C = 4, D = 0, one pair tied in x only, one in y only: 4 / sqrt(5 * 5).
        assert!(close(
            kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]).unwrap(),
            0.8
        ));
        assert!(close(
            kendall_tau_b(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(),
            -1.0
        ));
        assert_eq!(kendall_tau_b(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn spearman_rho_hand_computed() {
        // Ranks [1, 2.5, 2.5, 4] and [1, 2, 3.5, 3.5]: covariance 3.75, variances 4.5 each.
        assert!(close(
            spearman_rho(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]).unwrap(),
            3.75 / 4.5
        ));
        assert!(close(
            spearman_rho(&[0.1, 0.5, 0.3], &[10.0, 30.0, 20.0]).unwrap(),
            1.0
        ));
        assert!(close(
            spearman_rho(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]).unwrap(),
            -1.0
        ));
        assert_eq!(spearman_rho(&[2.0, 2.0], &[1.0, 3.0]), None);
        assert_eq!(average_ranks(&[0.3, 0.1, 0.3, 0.2]), [3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn regret_of_the_oneshot_winner_and_of_its_top_three() {
        let oneshot = [0.98, 0.99, 0.97, 0.985];
        let standalone = [0.985, 0.98, 0.99, 0.988];
        assert!(close(regret_at(&oneshot, &standalone, 1), 0.01));
        // Its top 3 (1, 3, 0) hold 0.988 at best.
        assert!(close(regret_at(&oneshot, &standalone, 3), 0.002));
        assert!(close(regret_at(&standalone, &standalone, 1), 0.0));
        // Tied scores: the first in order is the winner.
        assert!(close(regret_at(&[1.0, 1.0], &[0.5, 0.9], 1), 0.4));
    }

    #[test]
    fn top_k_overlap_hand_computed() {
        let scores = [0.9, 0.1, 0.8, 0.7, 0.2];
        let truth = [0.5, 0.4, 0.9, 0.1, 0.8];
        assert_eq!(top_k(&scores, 3), [0, 2, 3]);
        // Top 1: 0 vs 2. Top 3: {0, 2, 3} vs {2, 4, 0}: two shared.
        assert!(close(top_k_overlap(&scores, &truth, 1), 0.0));
        assert!(close(top_k_overlap(&scores, &truth, 3), 2.0 / 3.0));
        assert!(close(top_k_overlap(&scores, &truth, 5), 1.0));
    }
}
