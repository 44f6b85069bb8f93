//! From the finished trainings of an experiment to every number its report shows: per seed,
//! the final accuracies, the KL proxies and how well each predicts stand-alone accuracy; over
//! seeds, their mean and spread. Serialised as `results.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::report::ranking::{kendall_tau_b, regret, spearman_rho};
use crate::training::experiment::{JobResult, Plan};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub plan: Plan,
    /// "test" (the original study) or "validation" (`--val` images held out of training).
    pub ranking_set: String,
    pub backends: Vec<String>,
    /// Sum of every training's wall time.
    pub training_seconds: f64,
    /// One per variant, sampling strategy and seed.
    pub runs: Vec<Run>,
    /// One per variant and sampling strategy: the runs over seeds.
    pub groups: Vec<Group>,
}

/// One seed of one variant and sampling strategy: a one-shot training and the four stand-alone
/// trainings of the same seed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub variant: String,
    pub sampling: String,
    pub seed: u64,
    /// In the space's order (block 1's choice fastest: 00, 10, 01, 11 for the study).
    pub subnets: Vec<SubnetResult>,
    pub predictors: Predictors<Agreement>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubnetResult {
    pub subnet: String,
    /// Final accuracies on the ranking set.
    pub oneshot: f64,
    pub standalone: f64,
    /// Final accuracies on the test set (the same as above unless `--val` was given).
    pub oneshot_test: f64,
    pub standalone_test: f64,
    /// Mean symmetrized KL divergence from each reference, after one-shot training.
    pub kl_all_paths: f64,
    pub kl_mean_of_subnets: f64,
}

/// The three predictors of stand-alone accuracy: one-shot accuracy, and each KL proxy (a
/// smaller divergence predicting a better subnet).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Predictors<T> {
    pub oneshot_accuracy: T,
    pub kl_all_paths: T,
    pub kl_mean_of_subnets: T,
}

/// How one predictor's ranking agrees with stand-alone accuracy. A statistic is `None` when
/// one side is constant (all four tied), where no rank correlation exists.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Agreement {
    pub kendall_tau: Option<f64>,
    pub spearman_rho: Option<f64>,
    /// Best stand-alone accuracy minus that of the predictor's pick.
    pub regret: f64,
}

/// A value over seeds: every value, their mean, sample standard deviation and range.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spread {
    pub values: Vec<Option<f64>>,
    /// Over the defined values; `None` if there are none.
    pub mean: Option<f64>,
    /// Sample standard deviation (n - 1); `None` under two defined values.
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    pub variant: String,
    pub sampling: String,
    pub seeds: Vec<u64>,
    pub subnets: Vec<SubnetSpread>,
    pub predictors: Predictors<AgreementSpread>,
    /// One-shot and stand-alone accuracies averaged over seeds first, then ranked.
    pub pooled: Agreement,
    /// Test accuracy after every epoch, mean over seeds, by subnet (the space's order).
    pub oneshot_curves: Vec<Vec<f64>>,
    pub standalone_curves: Vec<Vec<f64>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubnetSpread {
    pub subnet: String,
    pub oneshot: Spread,
    pub standalone: Spread,
    pub oneshot_test: Spread,
    pub standalone_test: Spread,
    pub kl_all_paths: Spread,
    pub kl_mean_of_subnets: Spread,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgreementSpread {
    pub kendall_tau: Spread,
    pub spearman_rho: Spread,
    pub regret: Spread,
}

impl Spread {
    pub fn of(values: Vec<Option<f64>>) -> Spread {
        let defined: Vec<f64> = values.iter().flatten().copied().collect();
        let n = defined.len() as f64;
        let mean = (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / n);
        let std = mean
            .filter(|_| defined.len() >= 2)
            .map(|m| (defined.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        let min = defined.iter().copied().reduce(f64::min);
        let max = defined.iter().copied().reduce(f64::max);
        Spread {
            values,
            mean,
            std,
            min,
            max,
        }
    }

    fn of_all(values: impl Iterator<Item = f64>) -> Spread {
        Spread::of(values.map(Some).collect())
    }
}

impl Agreement {
    /// `scores` predict `truth` (higher = better), both in the same subnet order.
    pub fn of(scores: &[f64], truth: &[f64]) -> Agreement {
        Agreement {
            kendall_tau: kendall_tau_b(scores, truth),
            spearman_rho: spearman_rho(scores, truth),
            regret: regret(scores, truth),
        }
    }
}

/// The results of one plan, indexed for lookup.
struct Results<'a> {
    by_key: BTreeMap<(String, u64, String), &'a JobResult>,
}

impl<'a> Results<'a> {
    fn new(results: &'a [JobResult]) -> Self {
        let by_key = results
            .iter()
            .map(|r| {
                let what = match (&r.sampling, &r.subnet) {
                    (Some(sampling), _) => format!("oneshot-{sampling}"),
                    (None, Some(subnet)) => format!("standalone-{subnet}"),
                    (None, None) => r.mode.clone(),
                };
                ((r.variant.clone(), r.seed, what), r)
            })
            .collect();
        Results { by_key }
    }

    fn get(&self, variant: &str, seed: u64, what: &str) -> Result<&'a JobResult> {
        self.by_key
            .get(&(variant.to_string(), seed, what.to_string()))
            .copied()
            .ok_or_else(|| {
                Error::invalid(
                    "report",
                    format!("no result for {variant} seed {seed} {what}"),
                )
            })
    }
}

/// Final accuracy of `subnet` in a training's last epoch: on the ranking set and on the test set.
fn final_accuracy(result: &JobResult, subnet: &str) -> Result<(f64, f64)> {
    let missing = || {
        Error::invalid(
            "report",
            format!(
                "{} seed {} {}: no accuracy of subnet {subnet}",
                result.variant, result.seed, result.mode
            ),
        )
    };
    let last = result.last().ok_or_else(missing)?;
    let ranking = last.ranking().get(subnet).ok_or_else(missing)?.accuracy;
    let test = last.subnets.get(subnet).ok_or_else(missing)?.accuracy;
    Ok((ranking, test))
}

fn curve(result: &JobResult, subnet: &str) -> Vec<f64> {
    result
        .history
        .iter()
        .filter_map(|m| m.subnets.get(subnet).map(|s| s.accuracy))
        .collect()
}

pub fn summarise(plan: Plan, results: &[JobResult]) -> Result<Summary> {
    let index = Results::new(results);
    let names: Vec<String> = plan
        .search_space()?
        .subnets()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut runs = Vec::new();
    let mut groups = Vec::new();
    for variant in &plan.variants {
        for sampling in &plan.samplings {
            let group_runs = plan
                .seeds
                .iter()
                .map(|&seed| run(&index, &names, variant, sampling, seed))
                .collect::<Result<Vec<_>>>()?;
            let seeds = &plan.seeds;
            groups.push(group(
                &index,
                &names,
                variant,
                sampling,
                seeds,
                &group_runs,
            )?);
            runs.extend(group_runs);
        }
    }
    let mut backends: Vec<String> = results.iter().map(|r| r.backend.clone()).collect();
    backends.sort();
    backends.dedup();
    let validation = results
        .iter()
        .any(|r| r.history.iter().any(|m| m.validation.is_some()));
    Ok(Summary {
        plan,
        ranking_set: if validation { "validation" } else { "test" }.to_string(),
        backends,
        training_seconds: results.iter().map(|r| r.wall_seconds).sum(),
        runs,
        groups,
    })
}

/// `names`: the subnets of the space, in its order.
fn run(index: &Results, names: &[String], variant: &str, sampling: &str, seed: u64) -> Result<Run> {
    let oneshot = index.get(variant, seed, &format!("oneshot-{sampling}"))?;
    let kl = oneshot.kl_proxy.as_ref().ok_or_else(|| {
        Error::invalid(
            "report",
            format!("{variant} seed {seed} oneshot-{sampling}: no KL proxy"),
        )
    })?;
    let subnets = names
        .iter()
        .map(|name| {
            let standalone = index.get(variant, seed, &format!("standalone-{name}"))?;
            let (oneshot_acc, oneshot_test) = final_accuracy(oneshot, name)?;
            let (standalone_acc, standalone_test) = final_accuracy(standalone, name)?;
            let kl_of = |map: &BTreeMap<String, f64>| {
                map.get(name).copied().ok_or_else(|| {
                    Error::invalid("report", format!("no KL proxy of subnet {name}"))
                })
            };
            Ok(SubnetResult {
                kl_all_paths: kl_of(&kl.all_paths)?,
                kl_mean_of_subnets: kl_of(&kl.mean_of_subnets)?,
                subnet: name.clone(),
                oneshot: oneshot_acc,
                standalone: standalone_acc,
                oneshot_test,
                standalone_test,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let truth: Vec<f64> = subnets.iter().map(|s| s.standalone).collect();
    let scores = |f: fn(&SubnetResult) -> f64| subnets.iter().map(f).collect::<Vec<f64>>();
    let predictors = Predictors {
        oneshot_accuracy: Agreement::of(&scores(|s| s.oneshot), &truth),
        kl_all_paths: Agreement::of(&scores(|s| -s.kl_all_paths), &truth),
        kl_mean_of_subnets: Agreement::of(&scores(|s| -s.kl_mean_of_subnets), &truth),
    };
    Ok(Run {
        variant: variant.to_string(),
        sampling: sampling.to_string(),
        seed,
        subnets,
        predictors,
    })
}

fn group(
    index: &Results,
    names: &[String],
    variant: &str,
    sampling: &str,
    seeds: &[u64],
    runs: &[Run],
) -> Result<Group> {
    let subnets: Vec<SubnetSpread> = (0..names.len())
        .map(|k| {
            let over =
                |f: fn(&SubnetResult) -> f64| Spread::of_all(runs.iter().map(|r| f(&r.subnets[k])));
            SubnetSpread {
                subnet: runs[0].subnets[k].subnet.clone(),
                oneshot: over(|s| s.oneshot),
                standalone: over(|s| s.standalone),
                oneshot_test: over(|s| s.oneshot_test),
                standalone_test: over(|s| s.standalone_test),
                kl_all_paths: over(|s| s.kl_all_paths),
                kl_mean_of_subnets: over(|s| s.kl_mean_of_subnets),
            }
        })
        .collect();
    let spread = |pick: fn(&Predictors<Agreement>) -> &Agreement| AgreementSpread {
        kendall_tau: Spread::of(
            runs.iter()
                .map(|r| pick(&r.predictors).kendall_tau)
                .collect(),
        ),
        spearman_rho: Spread::of(
            runs.iter()
                .map(|r| pick(&r.predictors).spearman_rho)
                .collect(),
        ),
        regret: Spread::of_all(runs.iter().map(|r| pick(&r.predictors).regret)),
    };
    let means = |f: fn(&SubnetSpread) -> &Spread| -> Vec<f64> {
        subnets
            .iter()
            .map(|s| f(s).mean.unwrap_or(f64::NAN))
            .collect()
    };
    let mean_curves = |what: &dyn Fn(&str) -> String| -> Result<Vec<Vec<f64>>> {
        names
            .iter()
            .map(|name| {
                let curves = seeds
                    .iter()
                    .map(|&seed| Ok(curve(index.get(variant, seed, &what(name))?, name)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(mean_curve(&curves))
            })
            .collect()
    };
    Ok(Group {
        variant: variant.to_string(),
        sampling: sampling.to_string(),
        seeds: seeds.to_vec(),
        pooled: Agreement::of(&means(|s| &s.oneshot), &means(|s| &s.standalone)),
        predictors: Predictors {
            oneshot_accuracy: spread(|p| &p.oneshot_accuracy),
            kl_all_paths: spread(|p| &p.kl_all_paths),
            kl_mean_of_subnets: spread(|p| &p.kl_mean_of_subnets),
        },
        oneshot_curves: mean_curves(&|_| format!("oneshot-{sampling}"))?,
        standalone_curves: mean_curves(&|name| format!("standalone-{name}"))?,
        subnets,
    })
}

/// Epoch by epoch mean of several curves (as long as the shortest).
fn mean_curve(curves: &[Vec<f64>]) -> Vec<f64> {
    let epochs = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..epochs)
        .map(|e| curves.iter().map(|c| c[e]).sum::<f64>() / curves.len() as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_values_with_a_missing_one() {
        let spread = Spread::of(vec![Some(1.0), None, Some(3.0), Some(2.0)]);
        assert_eq!(spread.mean, Some(2.0));
        assert_eq!(spread.std, Some(1.0));
        assert_eq!((spread.min, spread.max), (Some(1.0), Some(3.0)));
        let single = Spread::of(vec![Some(0.5)]);
        assert_eq!((single.mean, single.std), (Some(0.5), None));
        assert_eq!(Spread::of(vec![None]).mean, None);
    }

    #[test]
    fn a_smaller_divergence_predicts_the_better_subnet() {
        let kl = [0.3, 0.1, 0.2, 0.4];
        let standalone = [0.98, 0.99, 0.985, 0.97];
        let scores: Vec<f64> = kl.iter().map(|k: &f64| -k).collect();
        let agreement = Agreement::of(&scores, &standalone);
        assert_eq!(agreement.kendall_tau, Some(1.0));
        assert_eq!(agreement.regret, 0.0);
    }
}
