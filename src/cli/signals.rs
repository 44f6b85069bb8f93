//! SIGINT, SIGTERM and SIGUSR1 (which Slurm sends ahead of a time limit) ask a training to
//! stop: it finishes the current step, writes its state and ends; the command prints how to
//! resume and exits with 128 + the signal's number (130, 143, 138). A second SIGINT or
//! SIGTERM ends the process at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

struct Stop {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

static STOP: OnceLock<Stop> = OnceLock::new();

/// Installs the handlers (once per process; commands that train call it).
pub fn install() -> Result<()> {
    if STOP.get().is_some() {
        return Ok(());
    }
    let stop = Stop {
        requested: Arc::new(AtomicBool::new(false)),
        signal: Arc::new(AtomicUsize::new(0)),
    };
    for signal in [SIGINT, SIGTERM, SIGUSR1] {
        let register = || -> std::io::Result<()> {
            if signal != SIGUSR1 {
                // Registered first, so it sees the flag as the previous signal left it.
                let code = 128 + signal;
                signal_hook::flag::register_conditional_shutdown(
                    signal,
                    code,
                    stop.requested.clone(),
                )?;
            }
            signal_hook::flag::register_usize(signal, stop.signal.clone(), signal as usize)?;
            signal_hook::flag::register(signal, stop.requested.clone())?;
            Ok(())
        };
        register().context("cannot install the signal handlers")?;
    }
    let _ = STOP.set(stop);
    Ok(())
}

/// The flag a training watches, if the handlers are installed.
pub fn flag() -> Option<Arc<AtomicBool>> {
    STOP.get().map(|s| s.requested.clone())
}

/// The signal that asked for the stop: its name and the exit code it means.
pub fn received() -> Option<(&'static str, u8)> {
    let signal = STOP.get()?.signal.load(Ordering::SeqCst) as i32;
    let name = match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGUSR1 => "SIGUSR1",
        _ => return None,
    };
    Some((name, (128 + signal) as u8))
}

/// A stopped training, as `main` reports it: one line and the exit code.
#[derive(Debug)]
pub struct Stopped {
    pub line: String,
    pub code: u8,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.line)
    }
}

impl std::error::Error for Stopped {}

/// `error`, if it is a stop, as the line saying how to resume with `resume`; else `error`.
pub fn explain(error: anyhow::Error, resume: &str) -> anyhow::Error {
    let stopped = error
        .chain()
        .find_map(|e| match e.downcast_ref::<supernet::Error>() {
            Some(supernet::Error::Interrupted { epoch, step }) => Some((*epoch, *step)),
            _ => None,
        });
    match (stopped, received()) {
        (Some((epoch, step)), Some((name, code))) => Stopped {
            line: format!(
                "stopped by {name} in epoch {epoch} after {step} steps; resume with: {resume}"
            ),
            code,
        }
        .into(),
        _ => error,
    }
}
