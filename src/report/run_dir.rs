//! A run's output directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::training::EpochMetrics;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader
/// never sees a half-written file, even if the program is stopped mid-write.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".partial");
    let temp = PathBuf::from(temp);
    let mut file = File::create(&temp).map_err(io_error(&temp))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(io_error(&temp))?;
    std::fs::rename(&temp, path).map_err(io_error(path))
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
        let probe = path.join(".write-test");
        File::create(&probe).map_err(io_error(path))?;
        std::fs::remove_file(&probe).map_err(io_error(&probe))?;
        Ok(RunDir {
            path: path.to_path_buf(),
        })
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
