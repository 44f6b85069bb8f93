//! Files written whole or not at all, durably: what every result, checkpoint and claim of
//! the program is written with.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `bytes` to a temporary file beside `path` (a name no other writer uses), flushes it
/// to disk, renames it over `path` and flushes the directory: a reader never sees a
/// half-written file, even if the program or the machine stops mid-write.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = path.with_file_name(format!(".{name}.{}.{unique}.partial", std::process::id()));
    let written = File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error(&temp)(error));
    }
    crate::failpoint::pass("partial");
    std::fs::rename(&temp, path).map_err(io_error(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a rename in `dir` durable (on systems where a directory can be opened).
fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match File::open(dir) {
        Ok(handle) => handle
            .sync_all()
            .or_else(|e| {
                // Some filesystems refuse to sync a directory: the rename still happened.
                if e.kind() == std::io::ErrorKind::InvalidInput || e.raw_os_error() == Some(22) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io_error(dir)),
        Err(_) => Ok(()),
    }
}
