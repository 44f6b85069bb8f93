//! Deterministic crash points, for the tests of resuming a killed run: with
//! `SUPERNET_ABORT_AT=<point>:<n>` the process aborts (no cleanup, as a kill would) the n-th
//! time it passes `<point>`. The points: `step` (a training step recorded), `state` (the
//! training state written, the weights and the metrics line not yet), `weights` (the weights
//! written, the metrics line not yet), `partial` (an atomic write's temporary file written,
//! not yet renamed). Unset, a point costs a lookup of a cached value.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

struct Armed {
    point: String,
    at: usize,
    passed: AtomicUsize,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var("SUPERNET_ABORT_AT").ok()?;
            let (point, at) = value.split_once(':')?;
            Some(Armed {
                point: point.to_string(),
                at: at.parse().ok()?,
                passed: AtomicUsize::new(0),
            })
        })
        .as_ref()
}

/// Passes `point`.
pub fn pass(point: &str) {
    if let Some(armed) = armed().filter(|a| a.point == point) {
        if armed.passed.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
            std::process::abort();
        }
    }
}
