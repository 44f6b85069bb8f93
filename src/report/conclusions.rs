//! The report's conclusions, written from the numbers: each claim is made only where its
//! interval or p-value carries it (two-sided 95 % intervals, p below 0.05), else the
//! report says the numbers do not tell.

use std::fmt::Write;

use crate::report::markdown::{count, group_name, interval, p_phrase, pm, signed};
use crate::report::summary::{Estimate, Group, Predictor, Summary};

const ALPHA: f64 = 0.05;

const ZERO_COST: [Predictor; 3] = [Predictor::GradNorm, Predictor::Snip, Predictor::Synflow];
const KL: [Predictor; 2] = [Predictor::KlAllPaths, Predictor::KlMeanOfSubnets];

pub fn write(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "## Conclusions\n\nFrom the tables below, over {} and {} ground-truth subnets; a claim is \
         made where a 95 % interval or a p-value below {ALPHA} carries it.\n",
        count(s.plan.seeds.len(), "seed", "seeds"),
        s.subnets.len()
    );
    for group in &s.groups {
        group_conclusions(md, s, group);
    }
    for variant in &s.plan.variants {
        samplings(md, s, variant);
    }
}

/// "tau = +0.54 [+0.21, +0.80], p = 0.0012".
fn tau(e: &Estimate) -> String {
    format!(
        "tau = {} {}, {}",
        signed(e.spread.mean),
        interval(e),
        p_phrase(e.p_value)
    )
}

fn overlap(a: &Estimate, b: &Estimate) -> Option<bool> {
    let ((a_lo, a_hi), (b_lo, b_hi)) = (a.interval?, b.interval?);
    Some(a_lo <= b_hi && b_lo <= a_hi)
}

fn best_of<'g>(group: &'g Group, predictors: &[Predictor]) -> Option<(Predictor, &'g Estimate)> {
    predictors
        .iter()
        .filter_map(|&p| group.predictor(p).map(|a| (p, &a.kendall_tau)))
        .max_by(|a, b| {
            let mean = |e: &Estimate| e.spread.mean.unwrap_or(f64::NEG_INFINITY);
            mean(a.1).total_cmp(&mean(b.1))
        })
}

fn group_conclusions(md: &mut String, s: &Summary, group: &Group) {
    let Some(oneshot) = group.predictor(Predictor::OneshotAccuracy) else {
        return;
    };
    let e = &oneshot.kendall_tau;
    let _ = writeln!(md, "**{}.**", group_name(group));
    let above_zero = e.interval.is_some_and(|(lo, _)| lo > 0.0);
    let verdict = match e.p_value.map(|p| p.value) {
        Some(p) if p < ALPHA && above_zero => {
            "better than a random ranking (p below 0.05, the interval above zero)".to_string()
        }
        Some(p) if p < ALPHA && e.interval.is_none() => {
            "better than a random ranking by the permutation test (p below 0.05); too few subnets for an interval".to_string()
        }
        Some(p) if p < ALPHA => format!(
            "better than a random ranking by the permutation test (p below 0.05), though the \
             bootstrap interval over {} still reaches zero or below",
            count(s.subnets.len(), "subnet", "subnets")
        ),
        Some(_) => "not told apart from a random ranking by these numbers".to_string(),
        None => "undefined (a constant ranking)".to_string(),
    };
    let _ = writeln!(
        md,
        "- One-shot accuracy ranks the subnets at {}: {verdict}.",
        tau(e)
    );
    if let Some(ceiling) = s.noise_ceilings.iter().find(|c| c.variant == group.variant) {
        if ceiling.pairs.is_empty() {
            let _ = writeln!(md, "- One seed: no noise ceiling.");
        } else {
            let relation = match overlap(e, &ceiling.kendall_tau) {
                Some(true) => "the intervals overlap, so no gap between one-shot accuracy and the ceiling is shown",
                Some(false) if e.spread.mean < ceiling.kendall_tau.spread.mean => {
                    "one-shot accuracy lies below it, the intervals apart"
                }
                Some(false) => "one-shot accuracy lies above it, the intervals apart",
                None => "there is no interval to compare",
            };
            let _ = writeln!(
                md,
                "- The noise ceiling, two stand-alone seeds' agreement, is tau = {} {}; {relation}.",
                signed(ceiling.kendall_tau.spread.mean),
                interval(&ceiling.kendall_tau)
            );
        }
    }
    for (what, predictors) in [("zero-cost proxy", &ZERO_COST[..]), ("KL proxy", &KL[..])] {
        if let Some((predictor, best)) = best_of(group, predictors) {
            let relation = match overlap(e, best) {
                Some(true) => "the intervals overlap, so these numbers do not show one-shot accuracy ranking differently",
                Some(false) if e.spread.mean > best.spread.mean => "one-shot accuracy ranks better (intervals apart)",
                Some(false) => "it ranks better than one-shot accuracy (intervals apart)",
                None => "no interval to compare",
            };
            let _ = writeln!(
                md,
                "- The best {what}, {}, is at {}; {relation}.",
                predictor.label(),
                tau(best)
            );
        }
    }
    // By regret, not top-1 overlap: a winner tied with the stand-alone best is one too.
    let winners = oneshot
        .regret
        .values
        .iter()
        .flatten()
        .filter(|&&r| r == 0.0)
        .count();
    let image = s.test_images.map_or(String::new(), |n| {
        format!("; one test image is {:.4}", 1.0 / n as f64)
    });
    let _ = writeln!(
        md,
        "- Trusting the one-shot winner cost {} of stand-alone test accuracy (regret, mean ± sd over seeds{image}), keeping the best of its top 3 {}; the winner was (or tied with) the stand-alone best in {} of {}.\n",
        pm(&oneshot.regret, 4),
        pm(&oneshot.regret_top3, 4),
        winners,
        count(group.seeds.len(), "seed", "seeds")
    );
}

fn samplings(md: &mut String, s: &Summary, variant: &str) {
    let groups: Vec<&Group> = s.groups.iter().filter(|g| g.variant == variant).collect();
    let [a, b] = groups[..] else {
        return;
    };
    let (Some(ea), Some(eb)) = (
        a.predictor(Predictor::OneshotAccuracy),
        b.predictor(Predictor::OneshotAccuracy),
    ) else {
        return;
    };
    let relation = match overlap(&ea.kendall_tau, &eb.kendall_tau) {
        Some(true) => {
            "the intervals overlap: no difference between the sampling strategies is shown"
        }
        Some(false) => "the intervals are apart",
        None => "no interval to compare",
    };
    let _ = writeln!(
        md,
        "**{variant}: {} against {} sampling.** One-shot accuracy ranks at {} with {} and {} with {}; {relation}.\n",
        a.sampling,
        b.sampling,
        tau(&ea.kendall_tau),
        a.sampling,
        tau(&eb.kendall_tau),
        b.sampling
    );
}
