//! `supernet`: train and evaluate weight-sharing SuperNets on MNIST. See `supernet --help`.

mod cli;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    quiet_window_system_probe();
    let args = match cli::args::Cli::try_parse() {
        Ok(args) => args,
        // A bare `supernet`: the whole help, as `--help` prints it.
        Err(error) if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let help = error.render();
            let mut stdout = std::io::stdout();
            let _ = if stdout.is_terminal() {
                write!(stdout, "{}", help.ansi())
            } else {
                write!(stdout, "{help}")
            };
            return ExitCode::from(2);
        }
        Err(error) if error.use_stderr() => {
            eprintln!("{}", one_line(&error.to_string()));
            return ExitCode::from(2);
        }
        Err(help_or_version) => help_or_version.exit(),
    };
    // The main thread joins the CPU backend's thread pool: each op's parallel loop then starts
    // on it directly instead of waking a pool thread and sleeping until the op is done, and no
    // third thread competes for the cores between ops.
    if let Err(error) = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
    {
        eprintln!("error: could not start the thread pool: {error}");
        return ExitCode::FAILURE;
    }
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<cli::signals::Stopped>() {
            Some(stopped) => {
                eprintln!("{}", stopped.line);
                ExitCode::from(stopped.code)
            }
            None => {
                // One line: the context chain, no backtrace.
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Without `XDG_RUNTIME_DIR` (ssh sessions, containers, CI), the Vulkan loader's window-system
/// probe makes libwayland print two `error: XDG_RUNTIME_DIR ...` lines on every GPU run,
/// although no window is ever opened. A Wayland compositor's socket lives in that directory,
/// so without it there is no session to find: pointing `WAYLAND_DISPLAY` at an absolute path
/// that does not exist makes the probe fail quietly. Only this process's environment changes,
/// before any thread starts.
fn quiet_window_system_probe() {
    let unset = |name: &str| std::env::var_os(name).is_none();
    if unset("XDG_RUNTIME_DIR") && unset("WAYLAND_DISPLAY") {
        std::env::set_var("WAYLAND_DISPLAY", "/nonexistent/wayland-0");
    }
}

/// clap's message on one line, without its usage and "--help" hints, and a value it quotes
/// cut short where it is long (a 100,000-character `--space` is not echoed whole).
fn one_line(message: &str) -> String {
    let hint = |line: &str| line.starts_with("Usage:") || line.starts_with("For more information");
    let lines: Vec<String> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !hint(l))
        .map(|l| l.split(' ').map(shortened).collect::<Vec<_>>().join(" "))
        .collect();
    lines.join(" ")
}

fn shortened(word: &str) -> String {
    const LONGEST: usize = 80;
    let count = word.chars().count();
    if count <= LONGEST {
        return word.to_string();
    }
    let start: String = word.chars().take(40).collect();
    format!("{start}...({count} characters)")
}
