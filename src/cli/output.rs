//! What the command line prints besides errors, by `--quiet` and `--verbose`: `say!` for
//! what a run tells as it goes (stderr), `show!` for its results (stdout), `detail!` for
//! what only `--verbose` wants. Errors are printed by `main`, whatever the level.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors only.
    Quiet = 0,
    Normal = 1,
    Verbose = 2,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Quiet,
        1 => Level::Normal,
        _ => Level::Verbose,
    }
}

thread_local! {
    /// The tag of this thread's lines: a `--parallel` worker's, else empty.
    static TAG: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// From now on, this thread's `say!` and `detail!` lines start with `tag` (`"[2] "`: trainings
/// in flight at once tell theirs apart), and it draws no progress bars (several threads'
/// bars would overwrite each other).
pub fn set_tag(tag: &str) {
    TAG.with(|t| *t.borrow_mut() = tag.to_string());
}

pub fn tag() -> String {
    TAG.with(|t| t.borrow().clone())
}

/// Progress and notes, on stderr (which never panics on a closed reader either).
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::cli::output::level() >= $crate::cli::output::Level::Normal {
            use std::io::Write as _;
            let tag = $crate::cli::output::tag();
            let _ = writeln!(std::io::stderr().lock(), "{tag}{}", format_args!($($arg)*));
        }
    };
}

/// Results, on stdout. A reader that went away (`| head`) is not an error of the run: what
/// it does not read is dropped, instead of the panic of `println!`.
macro_rules! show {
    ($($arg:tt)*) => {
        if $crate::cli::output::level() >= $crate::cli::output::Level::Normal {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout().lock(), $($arg)*);
        }
    };
}

/// Only with `--verbose`, on stderr.
macro_rules! detail {
    ($($arg:tt)*) => {
        if $crate::cli::output::level() >= $crate::cli::output::Level::Verbose {
            use std::io::Write as _;
            let tag = $crate::cli::output::tag();
            let _ = writeln!(std::io::stderr().lock(), "{tag}{}", format_args!($($arg)*));
        }
    };
}

pub(crate) use {detail, say, show};

/// `items` after `lead`, joined by two spaces, wrapped so that no line is wider than `width`;
/// continuation lines are indented like the first item.
pub fn wrap(lead: &str, items: &[String], width: usize) -> Vec<String> {
    let indent = " ".repeat(lead.chars().count());
    let mut lines = Vec::new();
    let mut line = lead.to_string();
    let mut empty = true;
    for item in items {
        let wanted = line.chars().count() + if empty { 0 } else { 2 } + item.chars().count();
        if !empty && wanted > width {
            lines.push(std::mem::replace(&mut line, indent.clone()));
            empty = true;
        }
        if !empty {
            line.push_str("  ");
        }
        line.push_str(item);
        empty = false;
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapped_lines_fit_their_width() {
        let items: Vec<String> = (0..12).map(|i| format!("{i:03} 0.98{i:02}")).collect();
        let lines = wrap("  test  ", &items, 40);
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:#?}");
        // 8 + 10 + 2 + 10 = 30 columns for two items; a third would need 42.
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert!(lines[1].starts_with("        002"), "{lines:#?}");
        assert_eq!(wrap("x ", &["a".into()], 80), ["x a"]);
    }
}
