//! From the finished jobs of an experiment to every number its report shows (`results.json`).
//!
//! Ground truth is a subnet's stand-alone accuracy on the test set. Predictors are measured on
//! the ranking split: the held-out training images with `--val`, else the test set (as the
//! original study did). Per variant, sampling strategy and seed: each predictor's Kendall
//! tau-b and Spearman rho against the truth, with p-values against a random ranking, top-k
//! overlap and regret. Per group (variant and sampling): the same over seeds, with a bootstrap
//! interval and the p-value of the mean. Per variant: the noise ceiling, the agreement of the
//! stand-alone rankings of two seeds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{SearchSpace, SuperNetConfig, Variant};
use crate::report::ranking::{kendall_tau_b, regret_at, spearman_rho, top_k_overlap};
use crate::report::statistics::{
    bootstrap_interval, holm, leave_one_seed_out, paired_delta, permutation_p, pooled,
    precision_chance, within_top_quartile, PValue, Statistic,
};
use crate::training::experiment::{JobResult, Plan, CLASSES};
use crate::training::stalled_epochs;
use crate::training::{KlProxy, ZeroCost};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub plan: Plan,
    /// Where predictors are measured: "validation" (`--val` images held out of training) or
    /// "test" (the original study).
    pub ranking_set: String,
    /// Where the ground truth (stand-alone accuracy) is measured: "test".
    pub truth_set: String,
    pub backends: Vec<String>,
    /// Sum of every job's wall time.
    pub training_seconds: f64,
    /// The subnets trained stand-alone, in the space's order: those the statistics cover.
    pub subnets: Vec<String>,
    /// Test images (absent for results that did not record it).
    #[serde(default)]
    pub test_images: Option<usize>,
    /// Images the KL proxy and the zero-cost proxies were measured on, as the results say.
    #[serde(default)]
    pub kl_images: Option<usize>,
    #[serde(default)]
    pub zero_cost_images: Option<usize>,
    /// The splits they were measured on ("validation" or "training"), as the results say.
    #[serde(default)]
    pub kl_split: Option<String>,
    #[serde(default)]
    pub zero_cost_split: Option<String>,
    /// One per variant, sampling strategy and seed.
    pub runs: Vec<Run>,
    /// One per variant and sampling strategy: the runs over seeds.
    pub groups: Vec<Group>,
    /// One per variant.
    pub noise_ceilings: Vec<NoiseCeiling>,
    /// Trainings with epochs at the chance loss (none in a healthy experiment).
    #[serde(default)]
    pub stalls: Vec<Stall>,
}

/// A training with epochs whose mean training loss stayed at the chance loss, and the groups
/// whose numbers it enters (a one-shot training its own group; a stand-alone one the truth of
/// every group of its variant).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stall {
    pub training: String,
    pub epochs: Vec<usize>,
    pub groups: Vec<String>,
}

/// What predicts stand-alone accuracy; a larger score is read as a better subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Predictor {
    OneshotAccuracy,
    KlAllPaths,
    KlMeanOfSubnets,
    GradNorm,
    Snip,
    Synflow,
    /// Trivial baselines: bigger is better.
    Parameters,
    Operations,
}

impl Predictor {
    pub const ALL: [Predictor; 8] = [
        Predictor::OneshotAccuracy,
        Predictor::KlAllPaths,
        Predictor::KlMeanOfSubnets,
        Predictor::GradNorm,
        Predictor::Snip,
        Predictor::Synflow,
        Predictor::Parameters,
        Predictor::Operations,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Predictor::OneshotAccuracy => "oneshot_accuracy",
            Predictor::KlAllPaths => "kl_all_paths",
            Predictor::KlMeanOfSubnets => "kl_mean_of_subnets",
            Predictor::GradNorm => "grad_norm",
            Predictor::Snip => "snip",
            Predictor::Synflow => "synflow",
            Predictor::Parameters => "parameters",
            Predictor::Operations => "operations",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Predictor::OneshotAccuracy => "one-shot accuracy",
            Predictor::KlAllPaths => "-KL from all paths",
            Predictor::KlMeanOfSubnets => "-KL from the mean of subnets",
            Predictor::GradNorm => "gradient norm at init",
            Predictor::Snip => "SNIP at init",
            Predictor::Synflow => "SynFlow at init",
            Predictor::Parameters => "parameter count (baseline)",
            Predictor::Operations => "multiply-adds (baseline)",
        }
    }

    pub fn from_name(name: &str) -> Option<Predictor> {
        Predictor::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The predictor's score of a subnet, larger = better (a divergence is negated).
    pub fn score(&self, s: &SubnetResult) -> Option<f64> {
        match self {
            Predictor::OneshotAccuracy => Some(s.oneshot),
            Predictor::KlAllPaths => Some(-s.kl_all_paths),
            Predictor::KlMeanOfSubnets => Some(-s.kl_mean_of_subnets),
            Predictor::GradNorm => s.grad_norm,
            Predictor::Snip => s.snip,
            Predictor::Synflow => s.synflow,
            Predictor::Parameters => s.parameters,
            Predictor::Operations => s.operations,
        }
    }
}

/// One seed of one variant and sampling strategy: its one-shot training, zero-cost proxies
/// and the stand-alone trainings of the same seed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub variant: String,
    pub sampling: String,
    pub seed: u64,
    /// In the space's order (block 1's choice fastest: 00, 10, 01, 11 for the study).
    pub subnets: Vec<SubnetResult>,
    pub predictors: Vec<Agreement>,
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
    /// Zero-cost proxies at initialisation (absent in experiments run before they existed).
    #[serde(default)]
    pub grad_norm: Option<f64>,
    #[serde(default)]
    pub snip: Option<f64>,
    #[serde(default)]
    pub synflow: Option<f64>,
    /// The subnet's size as a plain network, asked of its choices: parameters and
    /// multiply-adds per image (the trivial baselines).
    #[serde(default)]
    pub parameters: Option<f64>,
    #[serde(default)]
    pub operations: Option<f64>,
}

/// How one predictor's ranking agrees with the truth in one seed. A rank statistic is `None`
/// when one side is constant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Agreement {
    pub predictor: String,
    pub kendall_tau: Option<f64>,
    pub kendall_p: Option<PValue>,
    pub spearman_rho: Option<f64>,
    pub spearman_p: Option<PValue>,
    /// For k = 1, 3 and 10 % of the subnets: the share of the truth's top k that the
    /// predictor's top k holds.
    pub top_k: Vec<Overlap>,
    /// Best truth minus the truth of the predictor's winner.
    pub regret: f64,
    /// Best truth minus the best truth among the predictor's top 3.
    pub regret_top3: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Overlap {
    pub k: usize,
    pub overlap: f64,
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

/// A rank statistic's mean over seeds with its uncertainty.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Estimate {
    #[serde(flatten)]
    pub spread: Spread,
    /// 95 % bootstrap interval of the mean over seeds, resampling subnets.
    pub interval: Option<(f64, f64)>,
    /// One-sided p-value of the mean against random rankings.
    pub p_value: Option<PValue>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    pub variant: String,
    pub sampling: String,
    pub seeds: Vec<u64>,
    pub subnets: Vec<SubnetSpread>,
    pub predictors: Vec<GroupAgreement>,
    /// One-shot and stand-alone accuracies averaged over seeds first, then ranked.
    pub pooled: Agreement,
    /// Test accuracy after every epoch over seeds, by subnet (the space's order).
    pub oneshot_curves: Vec<Curve>,
    pub standalone_curves: Vec<Curve>,
    /// One-shot accuracy's Kendall tau-b after every epoch (on the ranking split) against the
    /// final stand-alone truth, over seeds: how early the ranking settles.
    #[serde(default)]
    pub oneshot_tau_by_epoch: Vec<Spread>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupAgreement {
    pub predictor: String,
    pub kendall_tau: Estimate,
    pub spearman_rho: Estimate,
    pub top_k: Vec<OverlapSpread>,
    pub regret: Spread,
    pub regret_top3: Spread,
    /// Kendall tau-b within each seed's top quartile of the truth (at least three subnets):
    /// whether the predictor orders the best subnets, where a search decides.
    #[serde(default)]
    pub top_quartile_tau: Option<Spread>,
    /// The seed-averaged predictor against the seed-averaged truth. Averaging takes out each
    /// seed's noise on both sides, so it is compared with nothing one seed bounds.
    #[serde(default)]
    pub pooled_tau: Option<f64>,
    /// One-shot accuracy's mean tau minus this predictor's, paired over the same subnets.
    #[serde(default)]
    pub versus_oneshot: Option<PairedComparison>,
}

/// One-shot accuracy against another predictor on the same subnets and seeds: the difference
/// of their mean Kendall taus with its paired bootstrap interval and p-value
/// (`statistics::paired_delta`), and that p after Holm's correction over every comparison of
/// the report.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PairedComparison {
    pub delta_tau: f64,
    pub interval: (f64, f64),
    pub p: f64,
    pub p_holm: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverlapSpread {
    pub k: usize,
    /// Precision at k: the share of the truth's top k in the predictor's top k.
    pub overlap: Spread,
    /// What a random ranking gets on average: k / n.
    #[serde(default)]
    pub chance: Option<f64>,
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

/// Epoch by epoch over seeds: the mean and the sample standard deviation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Curve {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// How well one seed's stand-alone ranking predicts another's: the best a predictor can be
/// expected to reach.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NoiseCeiling {
    pub variant: String,
    pub pairs: Vec<SeedPair>,
    /// Over the pairs, with a bootstrap interval over subnets.
    pub kendall_tau: Estimate,
    pub spearman_rho: Estimate,
    /// Leave one seed out: the mean of the other seeds' truth against one seed's, averaged
    /// over the seeds. It bounds a predictor's per-seed tau (against one seed's truth); the
    /// pooled tau (seed-averaged on both sides) is not bounded by it.
    #[serde(default)]
    pub leave_one_seed_out_tau: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedPair {
    pub seeds: (u64, u64),
    pub kendall_tau: Option<f64>,
    pub spearman_rho: Option<f64>,
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

impl Estimate {
    /// `statistic` per seed of `scores[s]` against `truth[s]`, and over seeds.
    fn of(statistic: Statistic, scores: &[Vec<f64>], truth: &[Vec<f64>]) -> Estimate {
        let values = scores
            .iter()
            .zip(truth)
            .map(|(s, t)| statistic(s, t))
            .collect();
        Estimate {
            spread: Spread::of(values),
            interval: bootstrap_interval(statistic, scores, truth),
            p_value: permutation_p(statistic, scores, truth),
        }
    }
}

/// k = 1, 3 and 10 % of `n` (rounded up), each at most `n`, each once.
pub fn top_ks(n: usize) -> Vec<usize> {
    let mut ks: Vec<usize> = [1, 3, n.div_ceil(10)]
        .into_iter()
        .map(|k| k.clamp(1, n.max(1)))
        .collect();
    ks.sort_unstable();
    ks.dedup();
    ks
}

impl Agreement {
    /// `scores` predict `truth` (higher = better), both in the same subnet order.
    pub fn of(predictor: &str, scores: &[f64], truth: &[f64]) -> Agreement {
        let one =
            |statistic: Statistic| permutation_p(statistic, &[scores.to_vec()], &[truth.to_vec()]);
        Agreement {
            predictor: predictor.to_string(),
            kendall_tau: kendall_tau_b(scores, truth),
            kendall_p: one(kendall_tau_b),
            spearman_rho: spearman_rho(scores, truth),
            spearman_p: one(spearman_rho),
            top_k: top_ks(scores.len())
                .into_iter()
                .map(|k| Overlap {
                    k,
                    overlap: top_k_overlap(scores, truth, k),
                })
                .collect(),
            regret: regret_at(scores, truth, 1),
            regret_top3: regret_at(scores, truth, 3),
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

    fn find(&self, variant: &str, seed: u64, what: &str) -> Option<&'a JobResult> {
        self.by_key
            .get(&(variant.to_string(), seed, what.to_string()))
            .copied()
    }

    fn get(&self, variant: &str, seed: u64, what: &str) -> Result<&'a JobResult> {
        self.find(variant, seed, what).ok_or_else(|| {
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

/// What the baselines are computed from: the plan's space and sizes.
struct Sizes {
    space: Option<SearchSpace>,
    channels: usize,
    hidden: usize,
}

impl Sizes {
    fn of_plan(plan: &Plan) -> Sizes {
        let size = |key: &str, default: usize| {
            (plan.protocol.get(key).and_then(serde_json::Value::as_u64))
                .map_or(default, |v| v as usize)
        };
        Sizes {
            space: SearchSpace::parse(&plan.space).ok(),
            channels: size("channels", 8),
            hidden: size("hidden", 32),
        }
    }

    /// `(parameters, multiply-adds)` of subnet `name` of `variant`, on 28-pixel images (the
    /// MNIST-style data every experiment reads).
    fn of(&self, variant: &str, name: &str) -> (Option<f64>, Option<f64>) {
        let (Some(space), Some(variant)) = (&self.space, Variant::from_name(variant)) else {
            return (None, None);
        };
        let Ok(subnet) = space.parse_subnet(name) else {
            return (None, None);
        };
        let config = SuperNetConfig {
            space: space.clone(),
            channels: self.channels,
            hidden: self.hidden,
            ..SuperNetConfig::mnist(variant)
        };
        let parameters = config.subnet_parameters(&subnet) as f64;
        (Some(parameters), Some(config.subnet_operations(&subnet)))
    }
}

pub fn summarise(plan: Plan, results: &[JobResult]) -> Result<Summary> {
    let index = Results::new(results);
    let names = plan.standalone_names()?;
    let sizes = Sizes::of_plan(&plan);
    let mut runs = Vec::new();
    let mut groups = Vec::new();
    for variant in &plan.variants {
        for sampling in &plan.samplings {
            let group_runs = plan
                .seeds
                .iter()
                .map(|&seed| run(&index, &sizes, &names, (variant, sampling, seed)))
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
    holm_over_the_report(&mut groups);
    let stalls = stalls(&plan, results);
    let noise_ceilings = plan
        .variants
        .iter()
        .map(|variant| noise_ceiling(&runs, variant))
        .collect();
    let mut backends: Vec<String> = results.iter().map(|r| r.backend.clone()).collect();
    backends.sort();
    backends.dedup();
    let validation = results
        .iter()
        .any(|r| r.history.iter().any(|m| m.validation.is_some()));
    Ok(Summary {
        plan,
        ranking_set: if validation { "validation" } else { "test" }.to_string(),
        truth_set: "test".to_string(),
        backends,
        training_seconds: results.iter().map(|r| r.wall_seconds).sum(),
        subnets: names,
        test_images: results.iter().find_map(|r| r.test_images),
        kl_images: results
            .iter()
            .find_map(|r| r.kl_proxy.as_ref().map(|k| k.images)),
        zero_cost_images: results
            .iter()
            .find_map(|r| r.zero_cost.as_ref().map(|z| z.images)),
        kl_split: results
            .iter()
            .find_map(|r| r.kl_proxy.as_ref().map(|k| k.split.clone())),
        zero_cost_split: results
            .iter()
            .find_map(|r| r.zero_cost.as_ref().map(|z| z.split.clone())),
        runs,
        groups,
        noise_ceilings,
        stalls,
    })
}

/// Every training of `results` with stalled epochs (recorded, or found in its history).
fn stalls(plan: &Plan, results: &[JobResult]) -> Vec<Stall> {
    let mut stalls = Vec::new();
    for r in results.iter().filter(|r| r.mode != "zero-cost") {
        let epochs = match r.stalled_epochs.is_empty() {
            true => stalled_epochs(&r.history, CLASSES),
            false => r.stalled_epochs.clone(),
        };
        if epochs.is_empty() {
            continue;
        }
        let what = match (&r.sampling, &r.subnet) {
            (Some(sampling), _) => format!("oneshot-{sampling}"),
            (_, Some(subnet)) => format!("standalone-{subnet}"),
            _ => r.mode.clone(),
        };
        let samplings: Vec<&String> = match &r.sampling {
            Some(sampling) => vec![sampling],
            None => plan.samplings.iter().collect(),
        };
        stalls.push(Stall {
            training: format!("{}/seed-{}/{what}", r.variant, r.seed),
            epochs,
            groups: samplings
                .iter()
                .map(|s| format!("{}, {s} sampling", r.variant))
                .collect(),
        });
    }
    stalls.sort_by(|a, b| a.training.cmp(&b.training));
    stalls
}

/// Holm's correction over every paired comparison of the report (each group's predictors
/// against one-shot accuracy): one family.
fn holm_over_the_report(groups: &mut [Group]) {
    let comparisons: Vec<&mut PairedComparison> = (groups.iter_mut())
        .flat_map(|g| g.predictors.iter_mut())
        .filter_map(|a| a.versus_oneshot.as_mut())
        .collect();
    let p: Vec<f64> = comparisons.iter().map(|c| c.p).collect();
    for (comparison, adjusted) in comparisons.into_iter().zip(holm(&p)) {
        comparison.p_holm = adjusted;
    }
}

/// `names`: the stand-alone subnets, in the space's order.
fn run(
    index: &Results,
    sizes: &Sizes,
    names: &[String],
    (variant, sampling, seed): (&str, &str, u64),
) -> Result<Run> {
    let oneshot = index.get(variant, seed, &format!("oneshot-{sampling}"))?;
    let kl = oneshot.kl_proxy.as_ref().ok_or_else(|| {
        Error::invalid(
            "report",
            format!("{variant} seed {seed} oneshot-{sampling}: no KL proxy"),
        )
    })?;
    let zero_cost = index
        .find(variant, seed, "zero-cost")
        .and_then(|r| r.zero_cost.as_ref());
    let subnets = names
        .iter()
        .map(|name| {
            let mut result = subnet_result(index, variant, seed, oneshot, kl, zero_cost, name)?;
            (result.parameters, result.operations) = sizes.of(variant, name);
            Ok(result)
        })
        .collect::<Result<Vec<_>>>()?;
    let truth: Vec<f64> = subnets.iter().map(|s| s.standalone_test).collect();
    let predictors = Predictor::ALL
        .iter()
        .filter_map(|p| {
            let scores: Option<Vec<f64>> = subnets.iter().map(|s| p.score(s)).collect();
            scores.map(|scores| Agreement::of(p.name(), &scores, &truth))
        })
        .collect();
    Ok(Run {
        variant: variant.to_string(),
        sampling: sampling.to_string(),
        seed,
        subnets,
        predictors,
    })
}

fn subnet_result(
    index: &Results,
    variant: &str,
    seed: u64,
    oneshot: &JobResult,
    kl: &KlProxy,
    zero_cost: Option<&ZeroCost>,
    name: &str,
) -> Result<SubnetResult> {
    let standalone = index.get(variant, seed, &format!("standalone-{name}"))?;
    let (oneshot_acc, oneshot_test) = final_accuracy(oneshot, name)?;
    let (standalone_acc, standalone_test) = final_accuracy(standalone, name)?;
    let kl_of = |map: &BTreeMap<String, f64>| {
        map.get(name)
            .copied()
            .ok_or_else(|| Error::invalid("report", format!("no KL proxy of subnet {name}")))
    };
    let proxy = |pick: fn(&ZeroCost) -> &BTreeMap<String, f64>| {
        zero_cost.and_then(|z| pick(z).get(name).copied())
    };
    Ok(SubnetResult {
        subnet: name.to_string(),
        oneshot: oneshot_acc,
        standalone: standalone_acc,
        oneshot_test,
        standalone_test,
        kl_all_paths: kl_of(&kl.all_paths)?,
        kl_mean_of_subnets: kl_of(&kl.mean_of_subnets)?,
        grad_norm: proxy(|z| &z.grad_norm),
        snip: proxy(|z| &z.snip),
        synflow: proxy(|z| &z.synflow),
        parameters: None,
        operations: None,
    })
}

/// Per predictor defined in every seed: `[seed][subnet]` scores.
fn scores_by_seed(runs: &[Run], predictor: Predictor) -> Option<Vec<Vec<f64>>> {
    runs.iter()
        .map(|r| r.subnets.iter().map(|s| predictor.score(s)).collect())
        .collect()
}

fn truth_by_seed(runs: &[Run]) -> Vec<Vec<f64>> {
    runs.iter()
        .map(|r| r.subnets.iter().map(|s| s.standalone_test).collect())
        .collect()
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
                subnet: names[k].clone(),
                oneshot: over(|s| s.oneshot),
                standalone: over(|s| s.standalone),
                oneshot_test: over(|s| s.oneshot_test),
                standalone_test: over(|s| s.standalone_test),
                kl_all_paths: over(|s| s.kl_all_paths),
                kl_mean_of_subnets: over(|s| s.kl_mean_of_subnets),
            }
        })
        .collect();
    let truth = truth_by_seed(runs);
    let oneshot = scores_by_seed(runs, Predictor::OneshotAccuracy);
    let predictors = Predictor::ALL
        .iter()
        .filter_map(|&p| {
            let scores = scores_by_seed(runs, p)?;
            let mut agreement = group_agreement(p, runs, &scores, &truth);
            if p != Predictor::OneshotAccuracy {
                agreement.versus_oneshot = (oneshot.as_ref())
                    .and_then(|o| paired_delta(kendall_tau_b, o, &scores, &truth))
                    .map(|d| PairedComparison {
                        delta_tau: d.delta,
                        interval: d.interval,
                        p: d.p,
                        p_holm: d.p,
                    });
            }
            Some(agreement)
        })
        .collect();
    let means = |f: fn(&SubnetSpread) -> &Spread| -> Vec<f64> {
        subnets
            .iter()
            .map(|s| f(s).mean.unwrap_or(f64::NAN))
            .collect()
    };
    let curves = |what: &dyn Fn(&str) -> String| -> Result<Vec<Curve>> {
        names
            .iter()
            .map(|name| {
                let curves = seeds
                    .iter()
                    .map(|&seed| Ok(curve(index.get(variant, seed, &what(name))?, name)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(curve_over_seeds(&curves))
            })
            .collect()
    };
    Ok(Group {
        variant: variant.to_string(),
        sampling: sampling.to_string(),
        seeds: seeds.to_vec(),
        pooled: Agreement::of(
            Predictor::OneshotAccuracy.name(),
            &means(|s| &s.oneshot),
            &means(|s| &s.standalone_test),
        ),
        predictors,
        oneshot_tau_by_epoch: tau_by_epoch(index, names, (variant, sampling), seeds, &truth)?,
        oneshot_curves: curves(&|_| format!("oneshot-{sampling}"))?,
        standalone_curves: curves(&|name| format!("standalone-{name}"))?,
        subnets,
    })
}

/// Per epoch, one-shot accuracy's tau against each seed's final truth, over the seeds (as long
/// as the shortest training).
fn tau_by_epoch(
    index: &Results,
    names: &[String],
    (variant, sampling): (&str, &str),
    seeds: &[u64],
    truth: &[Vec<f64>],
) -> Result<Vec<Spread>> {
    let mut by_seed: Vec<Vec<Option<f64>>> = Vec::new();
    for (&seed, truth) in seeds.iter().zip(truth) {
        let oneshot = index.get(variant, seed, &format!("oneshot-{sampling}"))?;
        let taus = (oneshot.history.iter())
            .map(|m| {
                let scores: Option<Vec<f64>> = (names.iter())
                    .map(|n| m.ranking().get(n).map(|s| s.accuracy))
                    .collect();
                kendall_tau_b(&scores?, truth)
            })
            .collect();
        by_seed.push(taus);
    }
    let epochs = by_seed.iter().map(Vec::len).min().unwrap_or(0);
    Ok((0..epochs)
        .map(|e| Spread::of(by_seed.iter().map(|taus| taus[e]).collect()))
        .collect())
}

fn group_agreement(
    predictor: Predictor,
    runs: &[Run],
    scores: &[Vec<f64>],
    truth: &[Vec<f64>],
) -> GroupAgreement {
    let per_seed: Vec<&Agreement> = runs
        .iter()
        .filter_map(|r| {
            r.predictors
                .iter()
                .find(|a| a.predictor == predictor.name())
        })
        .collect();
    let ks: Vec<usize> = per_seed
        .first()
        .map_or(Vec::new(), |a| a.top_k.iter().map(|o| o.k).collect());
    let n = truth.first().map_or(0, Vec::len);
    let top_quartile = (scores.iter().zip(truth))
        .map(|(s, t)| within_top_quartile(kendall_tau_b, s, t))
        .collect();
    GroupAgreement {
        predictor: predictor.name().to_string(),
        kendall_tau: Estimate::of(kendall_tau_b, scores, truth),
        spearman_rho: Estimate::of(spearman_rho, scores, truth),
        top_k: ks
            .iter()
            .enumerate()
            .map(|(i, &k)| OverlapSpread {
                k,
                overlap: Spread::of_all(per_seed.iter().map(|a| a.top_k[i].overlap)),
                chance: Some(precision_chance(n, k)),
            })
            .collect(),
        regret: Spread::of_all(per_seed.iter().map(|a| a.regret)),
        regret_top3: Spread::of_all(per_seed.iter().map(|a| a.regret_top3)),
        top_quartile_tau: Some(Spread::of(top_quartile)),
        pooled_tau: pooled(kendall_tau_b, scores, truth),
        versus_oneshot: None,
    }
}

/// Every pair of seeds of a variant: tau and rho between their stand-alone accuracies (the
/// stand-alone trainings are shared by the sampling strategies, so one group's runs do).
fn noise_ceiling(runs: &[Run], variant: &str) -> NoiseCeiling {
    let first_sampling = runs
        .iter()
        .find(|r| r.variant == variant)
        .map(|r| &r.sampling);
    let seeds: Vec<&Run> = runs
        .iter()
        .filter(|r| r.variant == variant && Some(&r.sampling) == first_sampling)
        .collect();
    let truth = |r: &Run| {
        r.subnets
            .iter()
            .map(|s| s.standalone_test)
            .collect::<Vec<f64>>()
    };
    let mut pairs = Vec::new();
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for (i, a) in seeds.iter().enumerate() {
        for b in &seeds[i + 1..] {
            let (ta, tb) = (truth(a), truth(b));
            pairs.push(SeedPair {
                seeds: (a.seed, b.seed),
                kendall_tau: kendall_tau_b(&ta, &tb),
                spearman_rho: spearman_rho(&ta, &tb),
            });
            left.push(ta);
            right.push(tb);
        }
    }
    // No p-value: the pairs share seeds, so they are not the independent draws it assumes.
    let without_p = |mut e: Estimate| {
        e.p_value = None;
        e
    };
    let by_seed: Vec<Vec<f64>> = seeds.iter().map(|r| truth(r)).collect();
    NoiseCeiling {
        variant: variant.to_string(),
        pairs,
        kendall_tau: without_p(Estimate::of(kendall_tau_b, &left, &right)),
        spearman_rho: without_p(Estimate::of(spearman_rho, &left, &right)),
        leave_one_seed_out_tau: leave_one_seed_out(kendall_tau_b, &by_seed),
    }
}

/// Epoch by epoch mean and sample standard deviation of several curves (as long as the
/// shortest).
fn curve_over_seeds(curves: &[Vec<f64>]) -> Curve {
    let epochs = curves.iter().map(Vec::len).min().unwrap_or(0);
    let spreads: Vec<Spread> = (0..epochs)
        .map(|e| Spread::of_all(curves.iter().map(|c| c[e])))
        .collect();
    Curve {
        mean: spreads.iter().map(|s| s.mean.unwrap_or(f64::NAN)).collect(),
        std: spreads.iter().map(|s| s.std.unwrap_or(0.0)).collect(),
    }
}

impl Group {
    /// This group's agreement of `predictor`, if it was measured.
    pub fn predictor(&self, predictor: Predictor) -> Option<&GroupAgreement> {
        self.predictors
            .iter()
            .find(|a| a.predictor == predictor.name())
    }
}

impl Run {
    pub fn predictor(&self, predictor: Predictor) -> Option<&Agreement> {
        self.predictors
            .iter()
            .find(|a| a.predictor == predictor.name())
    }
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
        let agreement = Agreement::of("kl", &scores, &standalone);
        assert_eq!(agreement.kendall_tau, Some(1.0));
        assert_eq!(agreement.regret, 0.0);
        let p = agreement.kendall_p.expect("p").value;
        assert!((p - 1.0 / 24.0).abs() < 1e-12, "{p}");
    }

    #[test]
    fn top_k_is_one_three_and_a_tenth() {
        assert_eq!(top_ks(4), [1, 3]);
        assert_eq!(top_ks(64), [1, 3, 7]);
        assert_eq!(top_ks(16), [1, 2, 3]);
        assert_eq!(top_ks(2), [1, 2]);
    }
}
