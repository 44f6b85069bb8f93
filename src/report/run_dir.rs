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

    /// Appends the epoch to `metrics.jsonl` and `metrics.csv` (with its header first).
    pub fn append_epoch(&self, metrics: &EpochMetrics) -> Result<()> {
        let json = serde_json::to_string(metrics).expect("metrics serialise to JSON");
        self.append_line("metrics.jsonl", &json, None)?;
        let header = csv_header(metrics);
        self.append_line("metrics.csv", &csv_row(metrics), Some(&header))
    }

    fn append_line(&self, name: &str, line: &str, header: Option<&str>) -> Result<()> {
        let path = self.path.join(name);
        let is_new = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut text = String::new();
        if let (true, Some(header)) = (is_new, header) {
            text.push_str(header);
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|_| file.flush())
            .map_err(io_error(&path))
    }
}

fn csv_header(m: &EpochMetrics) -> String {
    let mut columns = vec!["epoch", "lr", "train_loss", "train_seconds", "eval_seconds"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    for subnet in m.subnets.keys() {
        columns.push(format!("accuracy_{subnet}"));
        columns.push(format!("loss_{subnet}"));
    }
    columns.join(",")
}

fn csv_row(m: &EpochMetrics) -> String {
    let mut cells = vec![
        m.epoch.to_string(),
        m.lr.to_string(),
        m.train_loss.to_string(),
        m.train_seconds.to_string(),
        m.eval_seconds.to_string(),
    ];
    for subnet in m.subnets.values() {
        cells.push(subnet.accuracy.to_string());
        cells.push(subnet.loss.to_string());
    }
    cells.join(",")
}
