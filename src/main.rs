//! `supernet`: train and evaluate weight-sharing SuperNets on MNIST. See `supernet --help`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::args::Cli::try_parse() {
        Ok(args) => args,
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
        Err(error) => {
            // One line: the context chain, no backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's message on one line, without its usage and "--help" hints.
fn one_line(message: &str) -> String {
    let hint = |line: &str| line.starts_with("Usage:") || line.starts_with("For more information");
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !hint(l))
        .collect();
    lines.join(" ")
}
