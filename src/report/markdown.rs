//! `report.md`: the experiment told on one page, every number from the `Summary`.

use std::fmt::Write;

use crate::model::SearchSpace;
use crate::report::figures::FIGURES;
use crate::report::summary::{AgreementSpread, Group, Run, Spread, Summary};

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

fn subnet_count(s: &Summary) -> usize {
    s.runs.first().map_or(0, |r| r.subnets.len())
}

fn is_study(s: &Summary) -> bool {
    s.plan.space == SearchSpace::study().to_string()
}

pub fn render(summary: &Summary) -> String {
    let mut md = String::new();
    setup(&mut md, summary);
    accuracies(&mut md, summary);
    ranking(&mut md, summary);
    kl_proxy(&mut md, summary);
    figures(&mut md);
    per_seed(&mut md, summary);
    md
}

/// `0.9871 ± 0.0008` (the spread over seeds), `-` where undefined.
fn pm(spread: &Spread, digits: usize) -> String {
    match (spread.mean, spread.std) {
        (Some(mean), Some(std)) => format!("{mean:.digits$} ± {std:.digits$}"),
        (Some(mean), None) => format!("{mean:.digits$}"),
        _ => "-".to_string(),
    }
}

fn values(spread: &Spread, digits: usize) -> String {
    spread
        .values
        .iter()
        .map(|v| v.map_or("-".to_string(), |v| format!("{v:.digits$}")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn group_name(group: &Group) -> String {
    format!("{}, {} sampling", group.variant, group.sampling)
}

fn setup(md: &mut String, s: &Summary) {
    let p = &s.plan.protocol;
    let get = |key: &str| p.get(key).map_or("?".to_string(), |v| v.to_string());
    let _ = writeln!(md, "# SuperNet experiment\n");
    let _ = writeln!(
        md,
        "Does one-shot accuracy rank the subnets as stand-alone training does? For each variant \
         and seed: one one-shot training of the SuperNet (a subnet drawn per minibatch) and each of \
         the {} subnets trained stand-alone from scratch, with the same protocol and seed.\n",
        subnet_count(s)
    );
    let _ = writeln!(md, "| setting | value |\n|---|---|");
    let rows = [
        ("variants", s.plan.variants.join(", ")),
        (
            "search space",
            format!("{} ({} subnets)", s.plan.space, subnet_count(s)),
        ),
        (
            "seeds",
            s.plan.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        ),
        ("one-shot sampling", s.plan.samplings.join(", ")),
        (
            "protocol",
            format!(
                "{} epochs, batch {}, Adadelta lr {} x {} per epoch, {} filters per conv, hidden {}, shuffled every epoch: {}",
                get("epochs"), get("batch_size"), get("lr"), get("gamma"), get("channels"), get("hidden"), get("shuffle")
            ),
        ),
        ("ranked on", ranking_set(s)),
        ("KL proxy", format!("mean over a fixed sample of {} training images", s.plan.kl_images)),
        ("backend", s.backends.join("; ")),
        (
            "training time",
            format!("{:.1} min (sum of every training's wall time)", s.training_seconds / 60.0),
        ),
        ("version", s.plan.version.clone()),
    ];
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {value} |");
    }
    md.push('\n');
}

fn ranking_set(s: &Summary) -> String {
    match s.ranking_set.as_str() {
        "validation" => format!(
            "{} training images held out of training (the test set reported apart)",
            s.plan
                .protocol
                .get("validation")
                .map_or("?".into(), |v| v.to_string())
        ),
        _ => "the 10k test set, as in the original study".to_string(),
    }
}

fn accuracies(md: &mut String, s: &Summary) {
    let n = s.plan.seeds.len();
    let _ = writeln!(
        md,
        "## Final accuracy\n\nAfter the last epoch, on the ranking set; mean ± standard deviation over {n} seed(s).\n"
    );
    let test_apart = s.ranking_set != "test";
    let mut header = "| group | subnet | one-shot | stand-alone |".to_string();
    let mut rule = "|---|---|---|---|".to_string();
    if test_apart {
        header.push_str(" one-shot (test) | stand-alone (test) |");
        rule.push_str("---|---|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for group in &s.groups {
        for sub in &group.subnets {
            let _ = write!(
                md,
                "| {} | [{}] | {} | {} |",
                group_name(group),
                spaced(&sub.subnet),
                pm(&sub.oneshot, 4),
                pm(&sub.standalone, 4)
            );
            if test_apart {
                let _ = write!(
                    md,
                    " {} | {} |",
                    pm(&sub.oneshot_test, 4),
                    pm(&sub.standalone_test, 4)
                );
            }
            md.push('\n');
        }
    }
    if is_study(s) {
        let _ = writeln!(
            md,
            "\nThe original study (one seed, training file in order, test set):\n\n| | [0,0] | [1,0] | [0,1] | [1,1] |\n|---|---|---|---|---|"
        );
        for (variant, mode, accuracy) in STUDY {
            let cells: Vec<String> = accuracy.iter().map(|a| format!("{a:.4}")).collect();
            let _ = writeln!(md, "| {variant}, {mode} | {} |", cells.join(" | "));
        }
    }
    md.push('\n');
}

/// "10" -> "1,0".
fn spaced(subnet: &str) -> String {
    subnet
        .chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(",")
}

fn agreement_row(md: &mut String, group: &Group, predictor: &str, a: &AgreementSpread) {
    let _ = writeln!(
        md,
        "| {} | {predictor} | {} ({}) | {} ({}) | {} ({}) |",
        group_name(group),
        pm(&a.kendall_tau, 2),
        values(&a.kendall_tau, 2),
        pm(&a.spearman_rho, 2),
        values(&a.spearman_rho, 2),
        pm(&a.regret, 4),
        values(&a.regret, 4)
    );
}

fn ranking(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "## Does one-shot accuracy predict stand-alone accuracy?\n\n\
         Per seed, Kendall's tau-b and Spearman's rho between the {n} one-shot and the {n} \
         stand-alone final accuracies, and the regret of trusting one-shot: the best stand-alone \
         accuracy minus the stand-alone accuracy of the one-shot winner. Mean ± standard deviation \
         over seeds, every seed's value in brackets. With {n} subnets one seed proves little.\n\n\
         | group | predictor | Kendall tau-b | Spearman rho | regret |\n|---|---|---|---|---|",
        n = subnet_count(s)
    );
    for group in &s.groups {
        agreement_row(
            md,
            group,
            "one-shot accuracy",
            &group.predictors.oneshot_accuracy,
        );
    }
    let _ = writeln!(
        md,
        "\nRanked once on the accuracies averaged over seeds:\n\n| group | Kendall tau-b | Spearman rho | regret |\n|---|---|---|---|"
    );
    for group in &s.groups {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.4} |",
            group_name(group),
            opt(group.pooled.kendall_tau, 2),
            opt(group.pooled.spearman_rho, 2),
            group.pooled.regret
        );
    }
    md.push('\n');
}

fn kl_proxy(md: &mut String, s: &Summary) {
    let _ = writeln!(
        md,
        "## KL-divergence proxy\n\n\
         After one-shot training, each subnet's symmetrized KL divergence from a reference \
         network's predicted class distribution, averaged over {} training images (Bender et al., \
         ICML 2018). References: the SuperNet with all paths on (every choice of every block) and \
         the mean prediction of the {} subnets. A smaller divergence is read as a better subnet.\n\n\
         | group | subnet | KL from all paths | KL from the mean | stand-alone accuracy |\n|---|---|---|---|---|",
        s.plan.kl_images,
        subnet_count(s)
    );
    for group in &s.groups {
        for sub in &group.subnets {
            let _ = writeln!(
                md,
                "| {} | [{}] | {} | {} | {} |",
                group_name(group),
                spaced(&sub.subnet),
                pm(&sub.kl_all_paths, 4),
                pm(&sub.kl_mean_of_subnets, 4),
                pm(&sub.standalone, 4)
            );
        }
    }
    let _ = writeln!(
        md,
        "\nHow each proxy ranks the subnets against stand-alone accuracy (as above):\n\n\
         | group | predictor | Kendall tau-b | Spearman rho | regret |\n|---|---|---|---|---|"
    );
    for group in &s.groups {
        agreement_row(
            md,
            group,
            "KL from all paths",
            &group.predictors.kl_all_paths,
        );
        agreement_row(
            md,
            group,
            "KL from the mean",
            &group.predictors.kl_mean_of_subnets,
        );
    }
    md.push('\n');
}

fn figures(md: &mut String) {
    let _ = writeln!(
        md,
        "## Figures\n\nEach also as PNG beside the SVG in `figures/`.\n"
    );
    for figure in &FIGURES {
        let _ = writeln!(
            md,
            "![{}](figures/{}.svg)\n\n*{}.*\n",
            figure.caption, figure.stem, figure.caption
        );
    }
}

fn per_seed(md: &mut String, s: &Summary) {
    let wide = subnet_count(s) <= WIDE_TABLE_SUBNETS;
    let (what, header, rule) = if wide {
        let names: Vec<String> = s.runs.first().map_or(Vec::new(), |r| {
            r.subnets
                .iter()
                .map(|sub| format!("[{}]", spaced(&sub.subnet)))
                .collect()
        });
        (
            "Final ranking-set accuracy, one-shot / stand-alone, and the rank statistics of one-shot accuracy.",
            format!("| group | seed | {} | tau | rho | regret |", names.join(" | ")),
            format!("|---|---|{}---|---|---|", "---|".repeat(names.len())),
        )
    } else {
        (
            "The rank statistics of one-shot accuracy (every subnet's accuracies are in `results.json`).",
            "| group | seed | tau | rho | regret |".to_string(),
            "|---|---|---|---|---|".to_string(),
        )
    };
    let _ = writeln!(md, "## Every seed\n\n{what}\n\n{header}\n{rule}");
    for run in &s.runs {
        let cells: Vec<String> = if wide {
            run.subnets
                .iter()
                .map(|sub| format!(" {:.4} / {:.4} |", sub.oneshot, sub.standalone))
                .collect()
        } else {
            Vec::new()
        };
        let a = &run.predictors.oneshot_accuracy;
        let _ = writeln!(
            md,
            "| {} | {} |{} {} | {} | {:.4} |",
            run_name(run),
            run.seed,
            cells.concat(),
            opt(a.kendall_tau, 2),
            opt(a.spearman_rho, 2),
            a.regret
        );
    }
    md.push('\n');
}

fn run_name(run: &Run) -> String {
    format!("{}, {} sampling", run.variant, run.sampling)
}
