//! A run's output directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
pub use crate::files::write_atomically;
use crate::training::resume::STATE_FILE;
use crate::training::EpochMetrics;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// What a run leaves in its folder.
pub const RUN_FILES: [&str; 5] = [
    "config.json",
    "metrics.jsonl",
    "metrics.csv",
    "model.safetensors",
    STATE_FILE,
];

/// How a run starts in its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Fresh,
    /// From the training state in the folder.
    Resume,
    /// Asked to resume, but killed before its first epoch ended: started over.
    Restart,
}

/// What to do with a folder that already holds a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it, naming what it holds (`--resume` and `--force` unset).
    Refuse,
    /// Continue the run from its training state (`--resume`).
    Resume,
    /// Clear it and start over (`--force`).
    Clear,
}

/// `config.json`, `metrics.jsonl`, `metrics.csv` and `model.safetensors` in one directory.
/// Metrics are appended one whole line per epoch, so the files are valid after every epoch.
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates the directory (and its parents), checking that it can be written.
    pub fn create(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(io_error(path))?;
        let probe = path.join(format!(".write-test.{}", std::process::id()));
        File::create(&probe).map_err(io_error(path))?;
        std::fs::remove_file(&probe).map_err(io_error(&probe))?;
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    /// `path` for a run, as `existing` says when it holds one already; returns the folder and
    /// how the run starts (a run killed before its first epoch end left no state: resuming
    /// it starts it over).
    pub fn open(path: &Path, existing: Existing) -> Result<(Self, Start)> {
        let held: Vec<&str> = RUN_FILES
            .iter()
            .copied()
            .filter(|f| path.join(f).exists())
            .collect();
        let holds = |what: &str| Error::Invalid {
            what: "--out",
            detail: format!("{} {what}", path.display()),
        };
        match existing {
            Existing::Resume if path.join(STATE_FILE).is_file() => {
                remove_partials(path)?;
                Ok((Self::create(path)?, Start::Resume))
            }
            Existing::Resume if held.is_empty() => Err(holds("holds no run to resume")),
            // Stopped before its first epoch ended: nothing to keep, so it starts over.
            Existing::Resume => {
                clear_run(path)?;
                Ok((Self::create(path)?, Start::Restart))
            }
            Existing::Clear => {
                clear_run(path)?;
                Ok((Self::create(path)?, Start::Fresh))
            }
            Existing::Refuse if held.is_empty() => Ok((Self::create(path)?, Start::Fresh)),
            Existing::Refuse => Err(holds(&format!(
                "already holds a run ({}); --resume continues it, --force clears it and starts over",
                held.join(", ")
            ))),
        }
    }

    /// A new folder `base`, or `base-2`, `base-3`, ... where `base` is taken: each made by a
    /// create that fails if the folder exists, so two runs never share one.
    pub fn create_unique(base: &Path) -> Result<Self> {
        if let Some(parent) = base.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        for n in 1.. {
            let path = match n {
                1 => base.to_path_buf(),
                _ => PathBuf::from(format!("{}-{n}", base.display())),
            };
            match std::fs::create_dir(&path) {
                Ok(()) => return Self::create(&path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
        unreachable!("some suffix is free")
    }

    pub fn state_path(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }

    /// `metrics.jsonl` and `metrics.csv` written anew from `history` (a resumed run: whatever
    /// a kill left after its last epoch end goes).
    pub fn rewrite_metrics(&self, history: &[EpochMetrics], subnets: &[String]) -> Result<()> {
        for name in ["metrics.jsonl", "metrics.csv"] {
            let path = self.path.join(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        history
            .iter()
            .try_for_each(|m| self.append_epoch(m, subnets))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model_path(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }

    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        let text = serde_json::to_string_pretty(value).expect("metrics serialise to JSON");
        write_atomically(&self.path.join(name), format!("{text}\n").as_bytes())
    }

    /// Appends the epoch to `metrics.jsonl` and `metrics.csv` (with its header first), the
    /// CSV's subnet columns in the order of `subnets`.
    pub fn append_epoch(&self, metrics: &EpochMetrics, subnets: &[String]) -> Result<()> {
        let json = serde_json::to_string(metrics).expect("metrics serialise to JSON");
        self.append("metrics.jsonl", &format!("{json}\n"), None)?;
        let (header, row) = csv_record(metrics, subnets);
        let csv_path = self.path.join("metrics.csv");
        self.append(
            "metrics.csv",
            &csv_line(&row, &csv_path)?,
            Some(&csv_line(&header, &csv_path)?),
        )
    }

    /// Appends `text` to `name`, after `header` if the file is new, in one write.
    fn append(&self, name: &str, text: &str, header: Option<&str>) -> Result<()> {
        let path = self.path.join(name);
        let is_new = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut bytes = String::new();
        if let (true, Some(header)) = (is_new, header) {
            bytes.push_str(header);
        }
        bytes.push_str(text);
        file.write_all(bytes.as_bytes())
            .and_then(|_| file.flush())
            .map_err(io_error(&path))
    }
}

/// One CSV line (quoted where a field needs it), newline included.
fn csv_line(fields: &[String], path: &Path) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let bad = |e: csv::Error| Error::Format {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    writer.write_record(fields).map_err(bad)?;
    let bytes = writer
        .into_inner()
        .map_err(|e| bad(e.into_error().into()))?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 fields"))
}

/// The CSV header and row of an epoch: every column named with its split and unit.
fn csv_record(m: &EpochMetrics, subnets: &[String]) -> (Vec<String>, Vec<String>) {
    let mut header: Vec<String> = [
        "epoch",
        "lr",
        "train_loss_nats",
        "train_seconds",
        "eval_seconds",
        "wall_seconds",
    ]
    .map(String::from)
    .to_vec();
    let mut row = vec![
        m.epoch.to_string(),
        m.lr.to_string(),
        m.train_loss.to_string(),
        m.train_seconds.to_string(),
        m.eval_seconds.to_string(),
        m.wall_seconds.to_string(),
    ];
    let splits = [("test", Some(&m.subnets)), ("val", m.validation.as_ref())];
    for (split, set) in splits {
        let Some(set) = set else { continue };
        for subnet in subnets {
            let Some(s) = set.get(subnet) else { continue };
            header.push(format!("{split}_accuracy_{subnet}"));
            header.push(format!("{split}_loss_nats_{subnet}"));
            header.push(format!("{split}_correct_{subnet}"));
            row.push(s.accuracy.to_string());
            row.push(s.loss.to_string());
            row.push(s.correct.to_string());
        }
    }
    (header, row)
}

/// Removes a run's files from `dir`, and any half-written temporary file.
pub fn clear_run(dir: &Path) -> Result<()> {
    remove_where(dir, |name| {
        RUN_FILES.contains(&name) || name.ends_with(".partial")
    })
}

/// Removes what a killed atomic write left in `dir`.
fn remove_partials(dir: &Path) -> Result<()> {
    remove_where(dir, |name| name.ends_with(".partial"))
}

fn remove_where(dir: &Path, doomed: impl Fn(&str) -> bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if doomed(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
        }
    }
    Ok(())
}
