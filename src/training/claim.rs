//! Many workers on one experiment folder (processes on one machine or many, over a shared
//! filesystem, NFS included): a job is claimed by creating `claim.json` in its folder with
//! `O_EXCL`, so exactly one worker wins it. The claim names its host, process and start, and
//! holds a heartbeat the owner refreshes while it trains. A claim whose heartbeat is older
//! than the timeout belongs to a worker that died: another takes it over, by renaming it to a
//! name of its own first (a rename only one worker can win), and resumes the training.
//!
//! Heartbeats compare the clocks of different hosts, so the timeout must be well above their
//! skew (the default is ten minutes). A claim of a process of this same host that no longer
//! runs is taken over at once.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::write_atomically;

pub const CLAIM_FILE: &str = "claim.json";

/// Who holds a job, and since when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub host: String,
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub heartbeat: u64,
}

/// What a worker found a job's claim to be.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// Claimed now by this worker.
    Won(ClaimRecord),
    /// Another worker holds it, alive by its heartbeat.
    Held(ClaimRecord),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// This process's record.
pub fn record(host: &str) -> ClaimRecord {
    let started = now();
    ClaimRecord {
        host: host.to_string(),
        pid: std::process::id(),
        started,
        heartbeat: started,
    }
}

/// Tries to claim the job in `dir` for `me`, taking over a claim older than `timeout`.
pub fn claim(dir: &Path, me: &ClaimRecord, timeout: Duration) -> Result<Found> {
    claim_file(dir, CLAIM_FILE, me, timeout)
}

/// `claim` through the file `name` of `dir` (a job's claim, or a run folder's lock).
fn claim_file(dir: &Path, name: &str, me: &ClaimRecord, timeout: Duration) -> Result<Found> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join(name);
    loop {
        if create_new(&path, me)? {
            return Ok(Found::Won(me.clone()));
        }
        let Some(other) = read(&path) else {
            // Released or taken over while we looked, or half-written: look again.
            std::thread::sleep(Duration::from_millis(50));
            if !path.exists() {
                continue;
            }
            let Some(other) = read(&path) else {
                return Err(Error::Format {
                    path,
                    detail: "a claim that is not a claim; remove it if no worker runs".into(),
                });
            };
            return Ok(Found::Held(other));
        };
        let fresh = now().saturating_sub(other.heartbeat) <= timeout.as_secs();
        if fresh && !died_here(&other, me) {
            return Ok(Found::Held(other));
        }
        take_over(&path, dir, name, me, &other);
    }
}

/// Removes the claim in `dir` if its worker is gone: a kill between a job's result and the
/// release of its claim leaves one in a finished job's folder.
pub fn remove_dead(dir: &Path, me: &ClaimRecord, timeout: Duration) {
    let path = dir.join(CLAIM_FILE);
    if let Some(other) = read(&path) {
        let stale = now().saturating_sub(other.heartbeat) > timeout.as_secs();
        if stale || died_here(&other, me) {
            take_over(&path, dir, CLAIM_FILE, me, &other);
        }
    }
}

/// Moves the stale claim `stale` out of `path` (only one worker's rename succeeds). Between
/// reading it and renaming, another worker (or thread of this one) may have taken it over
/// and claimed: a claim that is not `stale` is put back (a hard link, which never replaces
/// a file), so a fresh claim is never removed.
fn take_over(path: &Path, dir: &Path, name: &str, me: &ClaimRecord, stale: &ClaimRecord) {
    static ASIDE: AtomicU64 = AtomicU64::new(0);
    let unique = ASIDE.fetch_add(1, Ordering::Relaxed);
    let aside = dir.join(format!(".{name}.stale.{}.{}.{unique}", me.host, me.pid));
    if std::fs::rename(path, &aside).is_err() {
        return;
    }
    if read(&aside).is_some_and(|moved| moved != *stale) {
        let _ = std::fs::hard_link(&aside, path);
    }
    let _ = std::fs::remove_file(&aside);
}

/// Whether `other` is a process of this host that no longer runs (where the system can
/// tell: Linux's /proc), so that a rerun after a kill need not wait for the timeout.
fn died_here(other: &ClaimRecord, me: &ClaimRecord) -> bool {
    let proc = Path::new("/proc");
    other.host == me.host
        && other.pid != me.pid
        && proc.join("self").exists()
        && !proc.join(other.pid.to_string()).exists()
}

fn create_new(path: &Path, record: &ClaimRecord) -> Result<bool> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut file) => {
            let text = serde_json::to_string(record).expect("a claim serialises");
            file.write_all(text.as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(io_error(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn read(path: &Path) -> Option<ClaimRecord> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// A claim this worker holds: its heartbeat refreshed every `every` until it is released.
pub struct Held {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    beating: Option<JoinHandle<()>>,
}

impl Held {
    pub fn start(dir: &Path, record: ClaimRecord, every: Duration) -> Held {
        Self::start_file(dir.join(CLAIM_FILE), record, every)
    }

    fn start_file(path: PathBuf, mut record: ClaimRecord, every: Duration) -> Held {
        let stop = Arc::new(AtomicBool::new(false));
        let (beat_path, beat_stop) = (path.clone(), stop.clone());
        let beating = std::thread::spawn(move || {
            let tick = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            while !beat_stop.load(Ordering::SeqCst) {
                std::thread::sleep(tick);
                waited += tick;
                if waited >= every {
                    waited = Duration::ZERO;
                    record.heartbeat = now();
                    let text = serde_json::to_string(&record).expect("a claim serialises");
                    // A lost heartbeat only risks a takeover; the training goes on.
                    let _ = write_atomically(&beat_path, text.as_bytes());
                }
            }
        });
        Held {
            path,
            stop,
            beating: Some(beating),
        }
    }

    /// Stops the heartbeat and removes the claim (the job is finished, or left to others).
    pub fn release(mut self) {
        self.stop_beating();
        let _ = std::fs::remove_file(&self.path);
    }

    fn stop_beating(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(beating) = self.beating.take() {
            let _ = beating.join();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop_beating();
    }
}

/// The lock of a run folder (`oneshot`, `standalone`, `search --out`): one writer at a time.
pub const LOCK_FILE: &str = "run.lock";

/// A lock not refreshed for this long belongs to a writer on another host that died (one on
/// this host that died is seen at once); refreshed every tenth of it.
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// The one writer of a run folder: `run.lock`, claimed as a job is (`O_EXCL`, the host and
/// process, a heartbeat, a dead holder's lock taken over), released when dropped.
pub struct FolderLock {
    held: Option<Held>,
    /// Made for the lock: removed again if the run leaves it empty (a refused run).
    created: Option<PathBuf>,
}

impl FolderLock {
    /// Locks `dir` (creating it) for this process of `host`; another live writer's lock is
    /// an error naming it.
    pub fn acquire(dir: &Path, host: &str) -> Result<FolderLock> {
        let created = (!dir.exists()).then(|| dir.to_path_buf());
        let me = record(host);
        match claim_file(dir, LOCK_FILE, &me, LOCK_TIMEOUT)? {
            Found::Won(record) => Ok(FolderLock {
                held: Some(Held::start_file(
                    dir.join(LOCK_FILE),
                    record,
                    LOCK_TIMEOUT / 10,
                )),
                created,
            }),
            Found::Held(other) => Err(Error::Invalid {
                what: "--out",
                detail: format!(
                    "{} is in use by process {} on {} (its {LOCK_FILE}); one writer at a time: wait for it to end, or remove the file if that process is gone",
                    dir.display(),
                    other.pid,
                    other.host
                ),
            }),
        }
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            held.release();
        }
        if let Some(dir) = &self.created {
            // Fails, as it should, unless the folder is empty.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_wins_a_claim_and_a_stale_one_is_taken_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = ClaimRecord {
            host: "a".into(),
            pid: 1,
            started: now(),
            heartbeat: now(),
        };
        let b = ClaimRecord {
            host: "b".into(),
            pid: 2,
            ..a.clone()
        };
        let timeout = Duration::from_secs(60);
        assert_eq!(
            claim(dir.path(), &a, timeout).expect("claim"),
            Found::Won(a.clone())
        );
        assert_eq!(
            claim(dir.path(), &b, timeout).expect("claim"),
            Found::Held(a.clone())
        );
        // a's heartbeat stops: two minutes old.
        let stale = ClaimRecord {
            heartbeat: now() - 120,
            ..a.clone()
        };
        std::fs::write(
            dir.path().join(CLAIM_FILE),
            serde_json::to_string(&stale).unwrap(),
        )
        .expect("write");
        assert_eq!(
            claim(dir.path(), &b, timeout).expect("claim"),
            Found::Won(b.clone())
        );
        let held = Held::start(dir.path(), b, Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(500));
        held.release();
        assert!(!dir.path().join(CLAIM_FILE).exists());
    }
}
