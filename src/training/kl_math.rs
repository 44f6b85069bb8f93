//! The arithmetic of the KL-divergence proxy, on log-probabilities: log-softmax, the
//! symmetrized KL divergence, the log of a mean of distributions.

/// `KL(p || q) + KL(q || p) = sum over classes of (p - q) (ln p - ln q)`, from log-probabilities
/// (as a log-softmax gives them), so no probability is ever divided by another.
pub fn symmetric_kl(log_p: &[f64], log_q: &[f64]) -> f64 {
    assert_eq!(log_p.len(), log_q.len(), "symmetric_kl: same classes");
    log_p
        .iter()
        .zip(log_q)
        .map(|(&lp, &lq)| (lp.exp() - lq.exp()) * (lp - lq))
        .sum()
}

/// `ln softmax(logits)`, shifted by the maximum so no exponential overflows.
pub fn log_softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_sum = logits.iter().map(|&l| (l - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&l| l - log_sum).collect()
}

/// The log of the mean of several distributions given as log-probabilities:
/// `ln((1/n) sum_k exp(log_p[k]))` per class, computed as a shifted log-sum-exp.
pub fn log_mean_distribution(log_ps: &[&[f64]]) -> Vec<f64> {
    let classes = log_ps[0].len();
    let n = log_ps.len() as f64;
    (0..classes)
        .map(|c| {
            let max = log_ps
                .iter()
                .map(|p| p[c])
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = log_ps.iter().map(|p| (p[c] - max).exp()).sum();
            max + (sum / n).ln()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn symmetric_kl_hand_computed() {
        let (p, q) = ([0.5f64, 0.5], [0.9f64, 0.1]);
        let expected =
            (0.5 - 0.9) * (0.5f64.ln() - 0.9f64.ln()) + (0.5 - 0.1) * (0.5f64.ln() - 0.1f64.ln());
        assert!(close(expected, 0.878_889_830_934), "{expected}");
        let log = |v: [f64; 2]| v.map(f64::ln);
        assert!(close(symmetric_kl(&log(p), &log(q)), expected));
        assert!(close(symmetric_kl(&log(q), &log(p)), expected));
        assert!(close(symmetric_kl(&log(p), &log(p)), 0.0));
    }

    #[test]
    fn log_softmax_hand_computed() {
        // softmax([0, ln 3]) = [1/4, 3/4]; a large shift changes nothing.
        let expected = [0.25f64.ln(), 0.75f64.ln()];
        for shift in [0.0, 1000.0] {
            let got = log_softmax(&[shift, 3.0f64.ln() + shift]);
            assert!(
                close(got[0], expected[0]) && close(got[1], expected[1]),
                "{got:?}"
            );
        }
    }

    #[test]
    fn kl_from_the_mean_of_two_distributions_hand_computed() {
        // p = [0.5, 0.5], q = [0.9, 0.1]: their mean m = [0.7, 0.3];
        // KL(p||m) + KL(m||p) = (0.5 - 0.7) ln(0.5/0.7) + (0.5 - 0.3) ln(0.5/0.3).
        let (p, q) = ([0.5f64.ln(), 0.5f64.ln()], [0.9f64.ln(), 0.1f64.ln()]);
        let mean = log_mean_distribution(&[&p, &q]);
        assert!(
            close(mean[0].exp(), 0.7) && close(mean[1].exp(), 0.3),
            "{mean:?}"
        );
        let expected = -0.2 * (0.5f64 / 0.7).ln() + 0.2 * (0.5f64 / 0.3).ln();
        assert!(close(expected, 0.169_459_572_077), "{expected}");
        assert!(close(symmetric_kl(&p, &mean), expected));
    }
}
