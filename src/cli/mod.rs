//! The command line: arguments, backend choice, commands and progress display.

pub mod args;
mod backend;
mod bench;
mod commands;
mod experiment;
mod progress;

use anyhow::Result;
use args::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Oneshot(train) => commands::train(&train, None),
        Command::Standalone { subnet, train } => commands::train(&train, Some(subnet)),
        Command::Experiment(args) => experiment::experiment(&args),
        Command::Report { dir } => experiment::report(&dir),
        Command::Eval {
            weights,
            json,
            device,
        } => commands::eval(&weights, json, &device),
        Command::Devices => backend::list_devices(),
        Command::Bench {
            variant,
            steps,
            warmup,
            batch_size,
            device,
        } => commands::bench(variant, steps, warmup, batch_size, &device),
    }
}
