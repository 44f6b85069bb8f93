//! The study as a plan of jobs: for each variant and seed, the zero-cost proxies at
//! initialisation, one one-shot training per sampling strategy, and a stand-alone training of
//! every subnet of the space or of a seeded sample of them (the same for every seed and
//! variant). Each finished job leaves a `result.json` in its own directory, written last and
//! atomically: the only mark of a finished job a rerun trusts. An interrupted training
//! continues from the training state in its folder, or starts again if it left none.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::model::{SearchSpace, Subnet, Variant};
use crate::training::config::differences;
use crate::training::{EpochMetrics, KlProxy, Mode, Sampling, TrainConfig, ZeroCost};

/// The completion marker and record of one training.
pub const RESULT_FILE: &str = "result.json";
/// The plan and settings, at the top of the experiment's directory.
pub const PLAN_FILE: &str = "experiment.json";

#[derive(Clone, Debug)]
pub struct Experiment {
    pub variants: Vec<Variant>,
    pub seeds: Vec<u64>,
    /// One-shot sampling strategies to compare (stand-alone trainings do not depend on it).
    pub samplings: Vec<Sampling>,
    /// Everything else of the protocol; its variant, mode, seed and sampling are set per job.
    pub protocol: TrainConfig,
    /// Images (held out, or training images) the KL proxy averages over.
    pub kl_images: usize,
    /// Which subnets are trained stand-alone: the ground truth.
    pub standalone: Standalone,
}

/// The subnets trained stand-alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standalone {
    All,
    /// A seeded uniform sample of this many subnets (all of them if the space has fewer).
    Sample(usize),
}

impl Standalone {
    /// "all" or the sample size, as on the command line.
    pub fn name(&self) -> String {
        match self {
            Standalone::All => "all".to_string(),
            Standalone::Sample(n) => n.to_string(),
        }
    }

    /// The subnets of `space` this selects, in the space's order.
    pub fn subnets(&self, space: &SearchSpace) -> Vec<Subnet> {
        let count = space.subnet_count();
        match *self {
            Standalone::Sample(n) if n < count => {
                let mut rng = StdRng::seed_from_u64(STANDALONE_SAMPLE_SEED);
                let mut picked = rand::seq::index::sample(&mut rng, count, n).into_vec();
                picked.sort_unstable();
                picked.into_iter().map(|i| space.subnet_at(i)).collect()
            }
            _ => space.subnets(),
        }
    }
}

/// The sample of stand-alone subnets is the same for every seed, variant and run.
const STANDALONE_SAMPLE_SEED: u64 = 0x5354;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum JobKind {
    /// The zero-cost proxies of every subnet at the seed's initialisation (no training).
    ZeroCost,
    OneShot(Sampling),
    Standalone(Subnet),
}

/// One training of the plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Job {
    pub variant: Variant,
    pub seed: u64,
    pub kind: JobKind,
}

impl Job {
    /// Relative to the experiment's directory: `sum/seed-1/zero-cost`,
    /// `sum/seed-1/oneshot-uniform`, `sum/seed-1/standalone-10`.
    pub fn dir(&self) -> PathBuf {
        let leaf = match self.kind {
            JobKind::ZeroCost => "zero-cost".to_string(),
            JobKind::OneShot(sampling) => format!("oneshot-{}", sampling.name()),
            JobKind::Standalone(subnet) => format!("standalone-{subnet}"),
        };
        PathBuf::from(self.variant.name())
            .join(format!("seed-{}", self.seed))
            .join(leaf)
    }
}

impl Experiment {
    /// The subnets trained stand-alone, in the space's order.
    pub fn standalone_subnets(&self) -> Vec<Subnet> {
        self.standalone.subnets(&self.protocol.space)
    }

    /// Variant by variant, seed by seed: the zero-cost proxies, the one-shot trainings, then
    /// the stand-alone ones.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs = Vec::new();
        let subnets = self.standalone_subnets();
        for &variant in &self.variants {
            for &seed in &self.seeds {
                let oneshot = self.samplings.iter().map(|&s| JobKind::OneShot(s));
                let standalone = subnets.iter().map(|&s| JobKind::Standalone(s));
                let kinds = std::iter::once(JobKind::ZeroCost)
                    .chain(oneshot)
                    .chain(standalone);
                jobs.extend(kinds.map(|kind| Job {
                    variant,
                    seed,
                    kind,
                }));
            }
        }
        jobs
    }

    pub fn config(&self, job: &Job) -> TrainConfig {
        let (mode, sampling) = match job.kind {
            JobKind::ZeroCost => (Mode::OneShot, self.protocol.sampling),
            JobKind::OneShot(sampling) => (Mode::OneShot, sampling),
            JobKind::Standalone(subnet) => (Mode::Standalone(subnet), self.protocol.sampling),
        };
        TrainConfig {
            variant: job.variant,
            mode,
            seed: job.seed,
            sampling,
            ..self.protocol.clone()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let empty = [
            ("--supernet", self.variants.is_empty()),
            ("--seeds", self.seeds.is_empty()),
            ("--sampling", self.samplings.is_empty()),
        ];
        if let Some((flag, _)) = empty.iter().find(|(_, e)| *e) {
            return Err(Error::invalid(
                "experiment",
                format!("{flag} needs at least one value"),
            ));
        }
        if self.kl_images == 0 {
            return Err(Error::invalid(
                "experiment",
                "--kl-images must be at least 1, got 0",
            ));
        }
        if self.standalone == Standalone::Sample(0) {
            return Err(Error::invalid(
                "experiment",
                "--standalone must be all or at least 1, got 0",
            ));
        }
        let count = self.protocol.space.subnet_count();
        match self.standalone {
            Standalone::Sample(n) if n > count => Err(Error::invalid(
                "experiment",
                format!(
                    "--standalone {n}: the space {} has {count} subnets; give all or at most {count}",
                    self.protocol.space
                ),
            )),
            _ => self.protocol.validate(),
        }
    }

    /// `experiment.json`: the settings and the directories of every training, for `report`.
    pub fn plan(&self) -> Plan {
        Plan {
            version: env!("CARGO_PKG_VERSION").to_string(),
            variants: self.variants.iter().map(|v| v.name().to_string()).collect(),
            space: self.protocol.space.to_string(),
            seeds: self.seeds.clone(),
            samplings: self
                .samplings
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
            kl_images: self.kl_images,
            standalone: self.standalone.name(),
            standalone_subnets: self
                .standalone_subnets()
                .iter()
                .map(Subnet::to_string)
                .collect(),
            protocol: serde_json::to_value(&self.protocol).expect("settings serialise"),
            jobs: self.jobs().iter().map(Job::dir).collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub version: String,
    pub variants: Vec<String>,
    /// The search space's spec; plans written before spaces were data hold the study's.
    #[serde(default = "study_spec")]
    pub space: String,
    pub seeds: Vec<u64>,
    pub samplings: Vec<String>,
    pub kl_images: usize,
    /// `all` or the size of the seeded sample of subnets trained stand-alone.
    #[serde(default = "all")]
    pub standalone: String,
    /// The subnets trained stand-alone; plans written before samples hold none: all of them.
    #[serde(default)]
    pub standalone_subnets: Vec<String>,
    /// The shared protocol (its variant, mode, seed and sampling are the first job's).
    pub protocol: serde_json::Value,
    pub jobs: Vec<PathBuf>,
}

fn study_spec() -> String {
    SearchSpace::study().to_string()
}

fn all() -> String {
    "all".to_string()
}

impl Plan {
    /// The space every training of the plan shares.
    pub fn search_space(&self) -> Result<SearchSpace> {
        SearchSpace::parse(&self.space)
    }

    /// The names of the subnets trained stand-alone, in the space's order.
    pub fn standalone_names(&self) -> Result<Vec<String>> {
        if !self.standalone_subnets.is_empty() {
            return Ok(self.standalone_subnets.clone());
        }
        let subnets = self.search_space()?.subnets();
        Ok(subnets.iter().map(Subnet::to_string).collect())
    }
}

/// The format of `result.json` this program writes and reads.
pub const RESULT_VERSION: u32 = 1;

fn first_version() -> u32 {
    1
}

/// What a finished training records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobResult {
    /// Results written before the field existed are of version 1.
    #[serde(default = "first_version")]
    pub version: u32,
    pub variant: String,
    pub seed: u64,
    /// "oneshot", "standalone" or "zero-cost".
    pub mode: String,
    /// One-shot: the sampling strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<String>,
    /// Stand-alone: the subnet trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Every setting of the training, as in its `config.json`.
    pub config: serde_json::Value,
    pub backend: String,
    pub wall_seconds: f64,
    pub history: Vec<EpochMetrics>,
    /// One-shot: the KL proxy after the last epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_proxy: Option<KlProxy>,
    /// Zero-cost: every subnet's proxies at initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_cost: Option<ZeroCost>,
    /// The test images evaluated on (absent in results written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_images: Option<usize>,
    /// The epochs whose mean training loss stayed at the chance loss (`stalled_epochs`);
    /// results written before it was recorded have it computed from their history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stalled_epochs: Vec<usize>,
}

/// The classes of the MNIST-style data every experiment trains on (labels 0-9).
pub const CLASSES: usize = 10;

impl JobResult {
    pub fn new(job: &Job, config: &TrainConfig, backend: String) -> Self {
        let (mode, sampling, subnet) = match job.kind {
            JobKind::ZeroCost => ("zero-cost", None, None),
            JobKind::OneShot(s) => ("oneshot", Some(s.name().to_string()), None),
            JobKind::Standalone(s) => ("standalone", None, Some(s.to_string())),
        };
        JobResult {
            version: RESULT_VERSION,
            variant: job.variant.name().to_string(),
            seed: job.seed,
            mode: mode.to_string(),
            sampling,
            subnet,
            config: serde_json::to_value(config).expect("settings serialise"),
            backend,
            wall_seconds: 0.0,
            history: Vec::new(),
            stalled_epochs: Vec::new(),
            kl_proxy: None,
            zero_cost: None,
            test_images: None,
        }
    }

    /// The last epoch's metrics.
    pub fn last(&self) -> Option<&EpochMetrics> {
        self.history.last()
    }

    /// The folder of the job it says it is the result of (as `Job::dir`).
    pub fn dir(&self) -> PathBuf {
        let leaf = match (self.mode.as_str(), &self.sampling, &self.subnet) {
            ("oneshot", Some(sampling), _) => format!("oneshot-{sampling}"),
            ("standalone", _, Some(subnet)) => format!("standalone-{subnet}"),
            (mode, _, _) => mode.to_string(),
        };
        PathBuf::from(&self.variant)
            .join(format!("seed-{}", self.seed))
            .join(leaf)
    }
}

/// Where a training of the plan stands in `out`.
pub enum JobState {
    /// Finished earlier with the same settings.
    Finished(Box<JobResult>),
    /// Never started, or stopped before it finished: train it (again).
    Pending,
}

/// Reads `out/<job dir>/result.json`. A result of other settings is an error naming them, so a
/// rerun never mixes two protocols in one report.
/// `kl_images`: the KL proxy's images the plan asks of a one-shot job.
pub fn job_state(
    out: &Path,
    job: &Job,
    config: &TrainConfig,
    kl_images: usize,
) -> Result<JobState> {
    let path = out.join(job.dir()).join(RESULT_FILE);
    if !path.exists() {
        return Ok(JobState::Pending);
    }
    let mut result = read_result(&path)?;
    if let Some(config) = result.config.as_object_mut() {
        // Written before spaces were data: the study's.
        config
            .entry("space")
            .or_insert_with(|| serde_json::Value::String(study_spec()));
    }
    let wanted = serde_json::to_value(config).expect("settings serialise");
    let mut differing = differences(&result.config, &wanted);
    let requested = result.kl_proxy.as_ref().and_then(|k| k.requested);
    if let Some(was) = requested.filter(|&was| was != kl_images) {
        differing.push(format!("kl_images was {was}, now {kl_images}"));
    }
    if !differing.is_empty() {
        return Err(Error::Format {
            path,
            detail: format!(
                "holds a finished training with other settings ({}); use another --out or the same settings",
                differing.join(", ")
            ),
        });
    }
    Ok(JobState::Finished(Box::new(result)))
}

pub fn read_result(path: &Path) -> Result<JobResult> {
    read_json(path, "a training result")
}

/// The settings each job sets for itself; every other one is the plan's.
const PER_JOB: [&str; 4] = ["variant", "mode", "seed", "sampling"];

/// A result the plan of `plan` can report: of this format, trained with the plan's settings,
/// every accuracy a fraction. `report` refuses what `experiment` would not have trained.
pub fn check_result(plan: &Plan, path: &Path, result: &JobResult) -> Result<()> {
    let bad = |detail: String| Error::Format {
        path: path.to_path_buf(),
        detail,
    };
    if result.version != RESULT_VERSION {
        return Err(bad(format!(
            "a result of format {}, this program reads {RESULT_VERSION}",
            result.version
        )));
    }
    // A result copied into another job's folder would be reported as that job's.
    let claimed = result.dir();
    if !path
        .parent()
        .is_some_and(|folder| folder.ends_with(&claimed))
    {
        return Err(bad(format!(
            "is the result of {} (its variant, seed and training), not of the job of its folder",
            claimed.display()
        )));
    }
    let shared = |config: &serde_json::Value| {
        let mut config = config.clone();
        if let Some(map) = config.as_object_mut() {
            map.retain(|k, _| !PER_JOB.contains(&k.as_str()));
            map.entry("space")
                .or_insert_with(|| serde_json::Value::String(study_spec()));
        }
        config
    };
    let differing = differences(&shared(&plan.protocol), &shared(&result.config));
    if !differing.is_empty() {
        return Err(bad(format!(
            "trained with other settings than the plan's ({}); an experiment of mixed settings is not reported",
            differing.join(", ")
        )));
    }
    for m in &result.history {
        let sets = std::iter::once(&m.subnets).chain(m.validation.as_ref());
        for (name, s) in sets.flat_map(|set| set.iter()) {
            if !(0.0..=1.0).contains(&s.accuracy) {
                return Err(bad(format!(
                    "epoch {}: subnet {name} has accuracy {}, not a fraction",
                    m.epoch, s.accuracy
                )));
            }
        }
    }
    Ok(())
}

/// The plan in `dir`; one written by a later version of this program is refused (it may
/// mean what this one does not know).
pub fn read_plan(dir: &Path) -> Result<Plan> {
    let path = dir.join(PLAN_FILE);
    let plan: Plan = read_json(&path, "an experiment plan")?;
    let ours = env!("CARGO_PKG_VERSION");
    match (version_of(&plan.version), version_of(ours)) {
        (Some(theirs), Some(mine)) if theirs <= mine => Ok(plan),
        _ => Err(Error::Format {
            path,
            detail: format!(
                "an experiment plan of version {}; this program ({ours}) reads plans of its version or earlier",
                plan.version
            ),
        }),
    }
}

/// `major.minor.patch` as numbers (a pre-release suffix ignored).
fn version_of(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        detail: format!("not {what} of this version: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment() -> Experiment {
        Experiment {
            variants: Variant::ALL.to_vec(),
            seeds: vec![1, 2],
            samplings: vec![Sampling::Uniform, Sampling::Fair],
            protocol: TrainConfig::study(Variant::Sum, Mode::OneShot),
            kl_images: 16,
            standalone: Standalone::All,
        }
    }

    #[test]
    fn the_plan_has_every_job_once() {
        let jobs = experiment().jobs();
        // 2 variants x 2 seeds x (zero-cost + 2 one-shot + 4 stand-alone).
        assert_eq!(jobs.len(), 28);
        let mut dirs: Vec<PathBuf> = jobs.iter().map(Job::dir).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), 28, "two jobs share a directory");
        assert!(dirs.contains(&PathBuf::from("concat/seed-2/oneshot-fair")));
        assert!(dirs.contains(&PathBuf::from("sum/seed-1/standalone-10")));
        assert!(dirs.contains(&PathBuf::from("sum/seed-2/zero-cost")));
    }

    /// A sample of N subnets: seeded, so the same in every run, seed and variant; in the
    /// space's order; all of them when N is not smaller than the space.
    #[test]
    fn the_standalone_sample_is_seeded_and_recorded() {
        let space = SearchSpace::parse("large").expect("preset");
        let sample = Standalone::Sample(16).subnets(&space);
        assert_eq!(sample.len(), 16);
        assert_eq!(sample, Standalone::Sample(16).subnets(&space));
        let indices: Vec<usize> = sample
            .iter()
            .map(|s| {
                space
                    .subnets()
                    .iter()
                    .position(|t| t == s)
                    .expect("in the space")
            })
            .collect();
        assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:?}");
        assert_eq!(Standalone::Sample(100).subnets(&space).len(), 64);
        let plan = Experiment {
            protocol: TrainConfig {
                space: space.clone(),
                ..TrainConfig::study(Variant::Sum, Mode::OneShot)
            },
            standalone: Standalone::Sample(16),
            ..experiment()
        };
        let recorded = plan.plan();
        assert_eq!(recorded.standalone, "16");
        let names: Vec<String> = sample.iter().map(Subnet::to_string).collect();
        assert_eq!(recorded.standalone_names().expect("names"), names);
        let standalone_jobs = plan
            .jobs()
            .iter()
            .filter(|j| matches!(j.kind, JobKind::Standalone(_)))
            .count();
        assert_eq!(standalone_jobs, 2 * 2 * 16);
    }

    #[test]
    fn a_result_of_other_settings_is_refused_and_named() {
        let out = tempfile::tempdir().expect("temp dir");
        let plan = experiment();
        let job = plan.jobs()[0];
        let config = plan.config(&job);
        assert!(matches!(
            job_state(out.path(), &job, &config, 16),
            Ok(JobState::Pending)
        ));
        let dir = out.path().join(job.dir());
        std::fs::create_dir_all(&dir).expect("job dir");
        let result = JobResult::new(&job, &config, "cpu".into());
        let text = serde_json::to_string(&result).expect("json");
        std::fs::write(dir.join(RESULT_FILE), text).expect("result");
        assert!(matches!(
            job_state(out.path(), &job, &config, 16),
            Ok(JobState::Finished(_))
        ));
        let other = TrainConfig {
            epochs: 2,
            ..config
        };
        let error = job_state(out.path(), &job, &other, 16)
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("epochs was 14, now 2"),
            "{error}"
        );
    }
}
