//! MNIST-style datasets: a directory with the four standard IDX files (gzip'd or raw), as
//! MNIST and Fashion-MNIST ship them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::idx::read_idx_within;
use crate::error::{Error, Result};

/// The classes of MNIST and Fashion-MNIST.
pub const CLASSES: usize = 10;

/// Normalisation of the study (torchvision's MNIST statistics).
pub const MEAN: f32 = 0.1307;
pub const STD: f32 = 0.3081;

/// Images as bytes, row-major `[count, rows, cols]`, and one label per image.
#[derive(Debug, Clone)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Split {
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// The bytes its images and labels take, decoded.
    pub fn bytes(&self) -> u64 {
        (self.images.len() + self.labels.len()) as u64
    }

    /// Removes the last `count` images and returns them as their own split: a validation set
    /// that is the same for every seed. At least one image must stay.
    pub fn split_off_last(&mut self, count: usize) -> Result<Split> {
        self.check_hold_out(count)?;
        let keep = self.count - count;
        let held = Split {
            images: self.images.split_off(keep * self.pixels()),
            labels: self.labels.split_off(keep),
            count,
            rows: self.rows,
            cols: self.cols,
        };
        self.count = keep;
        Ok(held)
    }

    /// Whether `count` images can be held out (checked before anything is written).
    pub fn check_hold_out(&self, count: usize) -> Result<()> {
        if count >= self.count {
            return Err(Error::invalid(
                "--val",
                format!(
                    "cannot hold out {count} of the {} training images; at least one must stay for training",
                    self.count
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
}

/// What a training state records of its data (the counts and a CRC-32 of the decoded images
/// and labels), so that a resume on other data is refused rather than mixing two datasets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDigest {
    pub train: SplitDigest,
    pub test: SplitDigest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitDigest {
    pub count: usize,
    pub images_crc32: u32,
    pub labels_crc32: u32,
}

impl Split {
    fn digest(&self) -> SplitDigest {
        let crc = |bytes: &[u8]| {
            let mut crc = flate2::Crc::new();
            crc.update(bytes);
            crc.sum()
        };
        SplitDigest {
            count: self.count,
            images_crc32: crc(&self.images),
            labels_crc32: crc(&self.labels),
        }
    }
}

impl Dataset {
    /// The bytes of every image and label, decoded.
    pub fn bytes(&self) -> u64 {
        self.train.bytes() + self.test.bytes()
    }

    pub fn digest(&self) -> DataDigest {
        DataDigest {
            train: self.train.digest(),
            test: self.test.digest(),
        }
    }
}

impl DataDigest {
    /// What differs from `now`, each named ("the training images: 1280, now 640").
    pub fn differences(&self, now: &DataDigest) -> Vec<String> {
        let mut differing = Vec::new();
        for (split, was, now) in [
            ("training", &self.train, &now.train),
            ("test", &self.test, &now.test),
        ] {
            if was.count != now.count {
                differing.push(format!(
                    "the {split} images: {}, now {}",
                    was.count, now.count
                ));
            } else if was.images_crc32 != now.images_crc32 {
                differing.push(format!("the {split} images' pixels"));
            }
            if was.count == now.count && was.labels_crc32 != now.labels_crc32 {
                differing.push(format!("the {split} labels"));
            }
        }
        differing
    }
}

/// The directory shipped with the project, in the source tree the binary was built from.
pub fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// The four files of a dataset (each raw or gzip'd).
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Where the data is when no directory is given: `data/mnist` in the working directory, beside
/// the binary or up to three folders above it (a build in `target/release` of a clone), or in
/// the source tree the binary was built from; the first that holds the four files.
pub fn locate() -> Result<PathBuf> {
    let mut candidates = vec![PathBuf::from("data/mnist")];
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .take(4)
                .map(|d| d.join("data/mnist")),
        );
    }
    candidates.push(default_dir());
    candidates
        .iter()
        .find(|dir| FILES.iter().all(|name| find(dir, name).is_ok()))
        .map(|dir| dir.canonicalize().unwrap_or_else(|_| dir.clone()))
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
            Error::invalid(
                "--data",
                format!(
                    "no MNIST found in {}; give the directory of the four IDX files with --data DIR",
                    looked.join(", ")
                ),
            )
        })
}

/// Loads `train-*` and `t10k-*` images and labels from `dir`.
pub fn load(dir: &Path) -> Result<Dataset> {
    load_within(dir, u64::MAX)
}

/// `load`, refusing files whose values pass `limit` bytes before reading them.
pub fn load_within(dir: &Path, limit: u64) -> Result<Dataset> {
    check_dir(dir)?;
    let train = load_split(dir, "train", limit)?;
    let test = load_split(dir, "t10k", limit.saturating_sub(train.bytes()))?;
    if (train.rows, train.cols) != (test.rows, test.cols) {
        let train_file = find(dir, "train-images-idx3-ubyte")?;
        return Err(Error::Format {
            path: find(dir, "t10k-images-idx3-ubyte")?,
            detail: format!(
                "{}x{} test images, but {} holds {}x{} training images",
                test.rows,
                test.cols,
                train_file.display(),
                train.rows,
                train.cols
            ),
        });
    }
    Ok(Dataset { train, test })
}

/// Loads only the `t10k-*` test split (for evaluation).
pub fn load_test(dir: &Path) -> Result<Split> {
    check_dir(dir)?;
    load_split(dir, "t10k", u64::MAX)
}

fn check_dir(dir: &Path) -> Result<()> {
    if dir.is_file() {
        return Err(Error::invalid(
            "--data",
            format!(
                "{} is a file; give the directory that holds the four IDX files",
                dir.display()
            ),
        ));
    }
    if !dir.is_dir() {
        return Err(Error::Io {
            path: dir.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "data directory not found"),
        });
    }
    Ok(())
}

fn load_split(dir: &Path, prefix: &str, limit: u64) -> Result<Split> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx_within(&images_path, 3, limit)?;
    let labels = read_idx_within(
        &labels_path,
        1,
        limit.saturating_sub(images.data.len() as u64),
    )?;
    let (count, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
    if count == 0 {
        return Err(Error::Format {
            path: images_path,
            detail: "holds no images".into(),
        });
    }
    if labels.dims[0] != count {
        let detail = format!(
            "{} labels for the {count} images of {}",
            labels.dims[0],
            images_path.display()
        );
        return Err(Error::Format {
            path: labels_path,
            detail,
        });
    }
    if let Some(bad) = labels.data.iter().find(|&&l| l as usize >= CLASSES) {
        let detail = format!("label {bad} is not a class 0-{}", CLASSES - 1);
        return Err(Error::Format {
            path: labels_path,
            detail,
        });
    }
    if rows == 0 || rows != cols || rows % 4 != 0 {
        let detail = format!("expected square images whose side is a positive multiple of 4, got {count} images of {rows}x{cols}");
        return Err(Error::Format {
            path: images_path,
            detail,
        });
    }
    Ok(Split {
        images: images.data,
        labels: labels.data,
        count,
        rows,
        cols,
    })
}

/// `name` or `name.gz` in `dir` (not both: which one holds the data would be a guess).
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(name);
    let gzipped = dir.join(format!("{name}.gz"));
    if raw.exists() && gzipped.exists() {
        return Err(Error::Format {
            path: raw,
            detail: format!("and {name}.gz are both here; keep one of them"),
        });
    }
    // A directory in a file's place is found too, and refused by the reader by name.
    [raw.clone(), gzipped.clone()]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| Error::Io {
            path: gzipped,
            error: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("neither {name} nor {name}.gz found"),
            ),
        })
}
