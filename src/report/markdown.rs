//! `report.md`: the experiment told on one page, every number from the `Summary`; the
//! conclusions are written from the numbers (`conclusions`).

use std::fmt::Write;

use crate::model::SearchSpace;
use crate::report::conclusions;
use crate::report::figures::FIGURES;
use crate::report::statistics::{
    Method, PValue, BOOTSTRAP_RESAMPLES, EXACT_UP_TO, MONTE_CARLO_DRAWS,
};
use crate::report::summary::{Estimate, Group, GroupAgreement, Predictor, Run, Spread, Summary};

/// The original study's final test accuracies (one seed, file order), quoted for comparison
/// when the space is the study's: (variant, mode, [00, 10, 01, 11]).
const STUDY: [(&str, &str, [f64; 4]); 4] = [
    ("sum", "one-shot", [0.9877, 0.9881, 0.9885, 0.9892]),
    ("sum", "stand-alone", [0.9841, 0.9885, 0.9889, 0.9901]),
    ("concat", "one-shot", [0.9843, 0.9860, 0.9865, 0.9869]),
    ("concat", "stand-alone", [0.9870, 0.9879, 0.9883, 0.9889]),
];

/// Per-seed tables show every subnet's accuracy up to this many subnets.
const WIDE_TABLE_SUBNETS: usize = 8;

pub fn render(s: &Summary) -> String {
    let mut md = String::new();
    let space = SearchSpace::parse(&s.plan.space).ok();
    title(&mut md, s);
    setup(&mut md, s, space.as_ref());
    reading(&mut md, s, space.as_ref());
    conclusions::write(&mut md, s);
    accuracies(&mut md, s, space.as_ref());
    stalls(&mut md, s);
    agreement(&mut md, s);
    against_oneshot(&mut md, s);
    noise_ceiling(&mut md, s);
    kl_proxy(&mut md, s);
    per_seed(&mut md, s);
    figures(&mut md, space.as_ref());
    md
}

/// `0.9871 ± 0.0008` (mean ± sample sd over seeds), `-` where undefined.
pub(crate) fn pm(spread: &Spread, digits: usize) -> String {
    match (spread.mean, spread.std) {
        (Some(mean), Some(std)) => format!("{mean:.digits$} ± {std:.digits$}"),
        (Some(mean), None) => format!("{mean:.digits$}"),
        _ => "-".to_string(),
    }
}

/// A signed statistic: `+0.54`.
pub fn signed(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:+.2}"))
}

pub fn interval(estimate: &Estimate) -> String {
    estimate
        .interval
        .map_or("-".to_string(), |(lo, hi)| format!("[{lo:+.2}, {hi:+.2}]"))
}

/// "0.0123", "< 0.0001" (exact), "≤ 0.0001" (no random ordering of the Monte Carlo draws did
/// as well: their count bounds what the estimate can tell).
pub fn p_value(p: Option<PValue>) -> String {
    let draws = 1 + MONTE_CARLO_DRAWS;
    let floor = 1.0 / draws as f64;
    match p {
        None => "-".to_string(),
        // The least a Monte Carlo p can be: 1 / (1 + draws), shown with the digits it needs.
        Some(p) if p.method == Method::MonteCarlo && p.value * draws as f64 <= 1.0 + 1e-9 => {
            // The digits that keep the floor's first one: 1/10,001 reads "0.0001".
            let digits = (-floor.log10() - 1e-3).ceil() as usize;
            format!("≤ {floor:.digits$}")
        }
        Some(p) if p.value < 1e-4 => "< 0.0001".to_string(),
        Some(p) => format!("{:.4}", p.value),
    }
}

/// "p = 0.0123" or "p < 0.0001".
pub(crate) fn p_phrase(p: Option<PValue>) -> String {
    let value = p_value(p);
    if value.starts_with(['<', '≤']) {
        format!("p {value}")
    } else {
        format!("p = {value}")
    }
}

/// "1 seed", "3 seeds".
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(crate) fn group_name(group: &Group) -> String {
    format!("{}, {} sampling", group.variant, group.sampling)
}

fn protocol_value(s: &Summary, key: &str) -> String {
    s.plan.protocol.get(key).map_or("?".to_string(), |v| {
        v.to_string().trim_matches('"').to_string()
    })
}

fn title(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "# Does one-shot accuracy predict stand-alone accuracy?\n\n\
         A weight-sharing SuperNet holds every subnet of the search space `{}`. Trained once \
         (one-shot: a subnet drawn per minibatch, only its weights updated), it scores every \
         subnet; each subnet of the ground truth is also trained alone from scratch with the same \
         protocol and seed. The question is how well the one-shot scores, and cheaper proxies, \
         rank the subnets as stand-alone training does.\n",
        s.plan.space
    );
}

fn setup(md: &mut String, s: &Summary, space: Option<&SearchSpace>) {
    let total = space.map_or(0, SearchSpace::subnet_count);
    let seeds = &s.plan.seeds;
    let truth = if s.subnets.len() == total {
        format!("all {total} subnets")
    } else {
        format!(
            "a seeded uniform sample of {} of the {total} subnets, the same for every seed and variant: {}",
            s.subnets.len(),
            s.subnets.join(", ")
        )
    };
    let order = if protocol_value(s, "shuffle") == "true" {
        "shuffled every epoch"
    } else {
        "in the file's order"
    };
    let epochs: usize = protocol_value(s, "epochs").parse().unwrap_or(0);
    let protocol = format!(
        "{}, batch {}, Adadelta with learning rate {} x {} after every epoch, {} filters per conv, hidden layer {}, training images {order}",
        count(epochs, "epoch", "epochs"),
        protocol_value(s, "batch_size"),
        protocol_value(s, "lr"),
        protocol_value(s, "gamma"),
        protocol_value(s, "channels"),
        protocol_value(s, "hidden"),
    );
    let rows = [
        (
            "search space",
            format!("`{}`: {}", s.plan.space, count(total, "subnet", "subnets")),
        ),
        (
            "subnet names",
            space.map_or("?".to_string(), SearchSpace::key),
        ),
        ("variants", s.plan.variants.join(", ")),
        ("stand-alone ground truth", truth),
        (
            "seeds",
            format!(
                "{} ({})",
                seeds
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                count(seeds.len(), "seed", "seeds")
            ),
        ),
        ("one-shot sampling", s.plan.samplings.join(", ")),
        ("protocol", protocol),
        ("predictors measured on", ranking_set(s)),
        (
            "ground truth",
            format!("each subnet's stand-alone accuracy on the {}", test_set(s)),
        ),
        (
            "KL proxy",
            format!(
                "symmetrized KL divergence averaged over a fixed sample of {} {}",
                kl_images(s),
                kl_split(s)
            ),
        ),
        ("zero-cost proxies", zero_cost_setup(s)),
        ("backend", s.backends.join("; ")),
        (
            "compute",
            format!(
                "{:.1} min, the sum of every job's wall time",
                s.training_seconds / 60.0
            ),
        ),
        ("version", s.plan.version.clone()),
    ];
    let _ = writeln!(md, "## Setup\n\n| | |\n|---|---|");
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {value} |");
    }
    md.push('\n');
}

fn ranking_set(s: &Summary) -> String {
    match s.ranking_set.as_str() {
        "validation" => format!(
            "the last {} training images, held out of every training (the test set is never used to rank)",
            protocol_value(s, "validation")
        ),
        _ => format!("the {}, as in the original study", test_set(s)),
    }
}

/// "10,000 test images", or "test set" where the results do not say.
pub(crate) fn test_set(s: &Summary) -> String {
    s.test_images.map_or("test set".to_string(), |n| {
        let n = n.to_string();
        let (head, tail) = n.split_at(n.len().saturating_sub(3));
        let n = if head.is_empty() {
            tail.to_string()
        } else {
            format!("{head},{tail}")
        };
        format!("{n} test images")
    })
}

/// The images the KL proxy used (the plan's number, or fewer where fewer were held out).
fn kl_images(s: &Summary) -> usize {
    s.kl_images.unwrap_or(s.plan.kl_images)
}

/// What a split of the results is, in words: "held-out images", "training images".
fn split_words(split: Option<&str>) -> &'static str {
    match split {
        Some("validation") => "held-out images",
        Some(_) => "training images",
        None => "images",
    }
}

fn kl_split(s: &Summary) -> &'static str {
    split_words(s.kl_split.as_deref())
}

fn zero_cost_setup(s: &Summary) -> String {
    let measured = s
        .runs
        .iter()
        .any(|r| r.predictor(Predictor::GradNorm).is_some());
    if measured {
        format!(
            "gradient norm, SNIP and SynFlow of each subnet at the seed's initialisation, from one batch of {} {} (SynFlow needs no data): no SuperNet training at all",
            s.zero_cost_images.map_or("?".to_string(), |n| n.to_string()),
            split_words(s.zero_cost_split.as_deref())
        )
    } else {
        "not measured (results from before they existed; rerun `experiment` on this folder to add them)".to_string()
    }
}

fn reading(md: &mut String, s: &Summary, space: Option<&SearchSpace>) {
    let n = s.subnets.len();
    let method = if n <= EXACT_UP_TO {
        format!("exact over all {n}! orderings of each seed")
    } else {
        format!("seeded Monte Carlo over {MONTE_CARLO_DRAWS} random orderings")
    };
    let key = space.map_or(String::new(), |sp| format!(" ({})", sp.key()));
    let _ = writeln!(
        md,
        "## How to read the numbers\n\n\
         - **Subnets** are named by their choices{key}; the tables also spell the choices out.\n\
         - **a ± b** is the mean over seeds ± the sample standard deviation over seeds (n = {seeds}); \
           every seed's own value is in the per-seed tables and in `results.json`.\n\
         - **Kendall tau-b** and **Spearman rho** compare a predictor's ranking of the {n} \
           ground-truth subnets with their stand-alone ranking (1 = the same order, 0 = unrelated, \
           -1 = reversed), per seed, then averaged over seeds. **[lo, hi]** is a 95 % bootstrap \
           interval of that mean ({BOOTSTRAP_RESAMPLES} resamples of the subnets, seeded). **p** is \
           the one-sided chance that a random ranking scores at least as well ({method}).\n\
         - **Top-k overlap** is the share of the k stand-alone best that are among the predictor's k \
           best (k = 1, 3 and 10 % of the ground-truth subnets). **Regret** is the best stand-alone \
           accuracy minus that of the predictor's winner; **regret@3** keeps the best of its top 3.\n\
         - **The noise ceiling** is the agreement of two seeds' stand-alone rankings: the best a \
           predictor can be expected to reach when the truth itself varies this much.\n",
        seeds = s.plan.seeds.len(),
    );
}

fn accuracies(md: &mut String, s: &Summary, space: Option<&SearchSpace>) {
    let _ = writeln!(
        md,
        "## Final accuracy\n\nAfter the last epoch. One-shot accuracy on the ranking split ({}), \
         stand-alone accuracy on the test set; mean ± sd over seeds.\n",
        s.ranking_set
    );
    for variant in &s.plan.variants {
        let groups: Vec<&Group> = s.groups.iter().filter(|g| &g.variant == variant).collect();
        let Some(first) = groups.first() else {
            continue;
        };
        let mut header = format!("| {variant} | choices | stand-alone (test) |");
        let mut rule = "|---|---|---|".to_string();
        for g in &groups {
            let _ = write!(header, " one-shot, {} |", g.sampling);
            rule.push_str("---|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for (k, sub) in first.subnets.iter().enumerate() {
            let choices = space
                .and_then(|sp| sp.parse_subnet(&sub.subnet).ok().map(|x| sp.describe(&x)))
                .unwrap_or_default();
            let _ = write!(
                md,
                "| {} | {choices} | {} |",
                sub.subnet,
                pm(&sub.standalone_test, 4)
            );
            for g in &groups {
                let _ = write!(md, " {} |", pm(&g.subnets[k].oneshot, 4));
            }
            md.push('\n');
        }
        md.push('\n');
    }
    if s.plan.space == SearchSpace::study().to_string() {
        let _ = writeln!(
            md,
            "The original study (one seed, training file in order, test set):\n\n| | 00 | 10 | 01 | 11 |\n|---|---|---|---|---|"
        );
        for (variant, mode, accuracy) in STUDY {
            let cells: Vec<String> = accuracy.iter().map(|a| format!("{a:.4}")).collect();
            let _ = writeln!(md, "| {variant}, {mode} | {} |", cells.join(" | "));
        }
        md.push('\n');
    }
}

fn agreement(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "## How well each predictor ranks the subnets\n\n\
         Against stand-alone test accuracy, over {}. Zero-cost proxies score the untrained \
         network and need no SuperNet: the baseline the SuperNet has to beat.\n\n\
         | group | predictor | Kendall tau-b | 95 % interval | p | Spearman rho | 95 % interval | p | {} | regret | regret@3 |\n\
         |---|---|---|---|---|---|---|---|{}---|---|",
        count(s.plan.seeds.len(), "seed", "seeds"),
        top_ks(s)
            .iter()
            .map(|k| format!("top-{k} overlap"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(top_ks(s).len())
    );
    for group in &s.groups {
        for predictor in Predictor::ALL {
            if let Some(a) = group.predictor(predictor) {
                agreement_row(md, group, predictor, a);
            }
        }
    }
    md.push('\n');
}

/// The k of the top-k overlaps (the same for every predictor of an experiment).
fn top_ks(s: &Summary) -> Vec<usize> {
    s.groups
        .first()
        .and_then(|g| g.predictors.first())
        .map_or(Vec::new(), |a| a.top_k.iter().map(|o| o.k).collect())
}

fn agreement_row(md: &mut String, group: &Group, predictor: Predictor, a: &GroupAgreement) {
    let overlaps: Vec<String> = a.top_k.iter().map(|o| pm(&o.overlap, 2)).collect();
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        group_name(group),
        predictor.label(),
        pm_signed(&a.kendall_tau.spread),
        interval(&a.kendall_tau),
        p_value(a.kendall_tau.p_value),
        pm_signed(&a.spearman_rho.spread),
        interval(&a.spearman_rho),
        p_value(a.spearman_rho.p_value),
        overlaps.join(" | "),
        pm(&a.regret, 4),
        pm(&a.regret_top3, 4),
    );
}

/// `+0.54 ± 0.13`.
pub(crate) fn pm_signed(spread: &Spread) -> String {
    match (spread.mean, spread.std) {
        (Some(mean), Some(std)) => format!("{mean:+.2} ± {std:.2}"),
        (Some(mean), None) => format!("{mean:+.2}"),
        _ => "-".to_string(),
    }
}

fn noise_ceiling(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "## The noise ceiling\n\n\
         Two seeds' stand-alone rankings of the same subnets, every pair of seeds; the interval \
         resamples subnets. Leave one seed out: the mean of the other seeds' stand-alone \
         accuracies against each seed's, averaged; it bounds what a predictor's per-seed tau \
         (against one seed's truth) can be expected to reach.\n\n\
         | variant | Kendall tau-b | 95 % interval | Spearman rho | 95 % interval | every pair (tau) | leave one seed out (tau) |\n\
         |---|---|---|---|---|---|---|"
    );
    for ceiling in &s.noise_ceilings {
        let pairs: Vec<String> = ceiling
            .pairs
            .iter()
            .map(|p| format!("{}-{}: {}", p.seeds.0, p.seeds.1, signed(p.kendall_tau)))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            ceiling.variant,
            pm_signed(&ceiling.kendall_tau.spread),
            interval(&ceiling.kendall_tau),
            pm_signed(&ceiling.spearman_rho.spread),
            interval(&ceiling.spearman_rho),
            if pairs.is_empty() {
                "one seed: none".to_string()
            } else {
                pairs.join(", ")
            },
            signed(ceiling.leave_one_seed_out_tau),
        );
    }
    md.push('\n');
}

/// The trainings that sat at the chance loss for whole epochs, and what they touch.
fn stalls(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "## Stalled trainings\n\n\
         An epoch whose mean training loss stayed within 1 % of the chance loss ln 10 = 2.303 \
         learned nothing; a training with such epochs learns the rest at a learning rate \
         already decayed. Its group's numbers carry that.\n"
    );
    if s.stalls.is_empty() {
        let _ = writeln!(
            md,
            "None: every training left the chance loss in its first epoch.\n"
        );
        return;
    }
    let _ = writeln!(
        md,
        "| training | stalled epochs | groups it enters |\n|---|---|---|"
    );
    for stall in &s.stalls {
        let epochs: Vec<String> = stall.epochs.iter().map(usize::to_string).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            stall.training,
            epochs.join(", "),
            stall.groups.join("; ")
        );
    }
    md.push('\n');
}

/// Every other predictor against one-shot accuracy, paired, with Holm's correction; and what
/// each does at the top of the ranking.
fn against_oneshot(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "## One-shot accuracy against every other predictor, paired\n\n\
         Delta tau is one-shot accuracy's mean Kendall tau-b minus the predictor's, on the same \
         subnets and seeds; its interval and p come from the same bootstrap resamples of the \
         subnets for both (two-sided), and Holm's correction runs over every comparison of this \
         report. Top-quartile tau is tau-b within each seed's best quarter of the subnets (at \
         least three); pooled tau ranks the seed-averaged predictor against the seed-averaged \
         truth (not bounded by the one-seed ceiling below). Precision at k is the top-k overlap \
         of the table above; chance is k / n.\n\n\
         | group | predictor | delta tau | 95 % interval | p | p (Holm) | top-quartile tau | pooled tau |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for group in &s.groups {
        for predictor in Predictor::ALL {
            let Some(a) = group.predictor(predictor) else {
                continue;
            };
            let (delta, range, p, holm) = match &a.versus_oneshot {
                Some(c) => (
                    format!("{:+.2}", c.delta_tau),
                    format!("{:+.2} to {:+.2}", c.interval.0, c.interval.1),
                    format!("{:.3}", c.p),
                    format!("{:.3}", c.p_holm),
                ),
                None => ("(itself)".into(), "-".into(), "-".into(), "-".into()),
            };
            let top = a.top_quartile_tau.as_ref().map_or("-".into(), pm_signed);
            let _ = writeln!(
                md,
                "| {} | {} | {delta} | {range} | {p} | {holm} | {top} | {} |",
                group_name(group),
                predictor.label(),
                signed(a.pooled_tau),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nOne-shot accuracy's tau after each epoch (mean over seeds), against the final \
         stand-alone truth: how early the ranking settles.\n"
    );
    for group in &s.groups {
        let taus: Vec<String> = group
            .oneshot_tau_by_epoch
            .iter()
            .map(|t| signed(t.mean))
            .collect();
        let _ = writeln!(md, "- {}: {}", group_name(group), taus.join(", "));
    }
    if let Some(a) = s.groups.first().and_then(|g| g.predictors.first()) {
        let chances: Vec<String> = (a.top_k.iter())
            .filter_map(|o| Some(format!("top-{}: {:.2}", o.k, o.chance?)))
            .collect();
        let _ = writeln!(md, "\nChance precision at k: {}.", chances.join(", "));
    }
    md.push('\n');
}

fn kl_proxy(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "## The KL-divergence proxy\n\n\
         After one-shot training, each subnet's symmetrized KL divergence from a reference \
         network's predicted class distribution (Bender et al., ICML 2018), averaged over {} {}. \
         References: the SuperNet with every choice of every block on (all paths) and the mean \
         prediction of all {} subnets of the space. A smaller divergence is read as a better \
         subnet (the ranking tables above negate it).\n\n\
         | group | subnet | KL from all paths | KL from the mean | stand-alone (test) |\n|---|---|---|---|---|",
        kl_images(s),
        kl_split(s),
        SearchSpace::parse(&s.plan.space).map_or(0, |sp| sp.subnet_count())
    );
    for group in &s.groups {
        for sub in &group.subnets {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                group_name(group),
                sub.subnet,
                pm(&sub.kl_all_paths, 4),
                pm(&sub.kl_mean_of_subnets, 4),
                pm(&sub.standalone_test, 4)
            );
        }
    }
    md.push('\n');
}

fn per_seed(md: &mut String, s: &Summary) {
    let wide = s.subnets.len() <= WIDE_TABLE_SUBNETS;
    let what = if wide {
        "Final one-shot (ranking split) / stand-alone (test) accuracy, and how one-shot accuracy ranks."
    } else {
        "How one-shot accuracy ranks (every subnet's accuracies are in `results.json`)."
    };
    let subnet_columns: String = if wide {
        s.subnets.iter().map(|n| format!(" {n} |")).collect()
    } else {
        String::new()
    };
    let _ = writeln!(
        md,
        "## Every seed\n\n{what}\n\n| group | seed |{subnet_columns} tau | p | rho | p | regret |\n|---|---|{}---|---|---|---|---|",
        if wide { "---|".repeat(s.subnets.len()) } else { String::new() }
    );
    for run in &s.runs {
        let Some(a) = run.predictor(Predictor::OneshotAccuracy) else {
            continue;
        };
        let cells: String = if wide {
            run.subnets
                .iter()
                .map(|sub| format!(" {:.4} / {:.4} |", sub.oneshot, sub.standalone_test))
                .collect()
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {} |{cells} {} | {} | {} | {} | {:.4} |",
            run_name(run),
            run.seed,
            signed(a.kendall_tau),
            p_value(a.kendall_p),
            signed(a.spearman_rho),
            p_value(a.spearman_p),
            a.regret
        );
    }
    let _ = writeln!(
        md,
        "\nEvery predictor's tau per seed is in `results.json` (`runs[].predictors`); the \
         p-values are {}.\n",
        method_name(s)
    );
}

fn method_name(s: &Summary) -> &'static str {
    let method = s
        .runs
        .first()
        .and_then(|r| r.predictors.first())
        .and_then(|a| a.kendall_p)
        .map(|p| p.method);
    match method {
        Some(Method::Exact) => "exact",
        Some(Method::MonteCarlo) => "seeded Monte Carlo estimates",
        None => "undefined",
    }
}

fn run_name(run: &Run) -> String {
    format!("{}, {} sampling", run.variant, run.sampling)
}

fn figures(md: &mut String, space: Option<&SearchSpace>) {
    let key = space.map_or(String::new(), |sp| format!(" Subnet names: {}.", sp.key()));
    let _ = writeln!(
        md,
        "## Figures\n\nEach also as PNG beside the SVG in `figures/`.\n"
    );
    for figure in &FIGURES {
        let _ = writeln!(
            md,
            "![{}](figures/{}.svg)\n\n*{}.{key}*\n",
            figure.caption, figure.stem, figure.caption
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::statistics::{Method, PValue};

    /// A Monte Carlo p at its floor, 1 / (1 + draws), is written as a bound with the digits
    /// that keep its first one; an exact p below 0.0001 as "< 0.0001"; others to 4 places.
    #[test]
    fn p_values_at_and_above_their_floors() {
        let monte_carlo = |value| {
            Some(PValue {
                value,
                method: Method::MonteCarlo,
            })
        };
        let floor = 1.0 / (1 + MONTE_CARLO_DRAWS) as f64;
        assert_eq!(p_value(monte_carlo(floor)), "≤ 0.0001");
        assert_eq!(p_value(monte_carlo(2.0 * floor)), "0.0002");
        let exact = Some(PValue {
            value: 1.0 / 40320.0,
            method: Method::Exact,
        });
        assert_eq!(p_value(exact), "< 0.0001");
        assert_eq!(p_value(monte_carlo(0.01234)), "0.0123");
        assert_eq!(p_value(None), "-");
    }
}
