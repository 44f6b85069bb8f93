//! The command line: arguments, backend choice, commands and progress display.

pub mod args;
mod backend;
mod bench;
mod commands;
mod experiment;
mod progress;
mod search;
mod tables;

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
            space,
            json,
            device,
        } => commands::eval(&weights, space.as_ref(), json, &device),
        Command::Export {
            weights,
            subnet,
            space,
            out,
        } => commands::export(&weights, &subnet, space.as_ref(), &out),
        Command::Search(args) => search::search(&args),
        Command::Devices => backend::list_devices(),
        Command::Bench {
            variant,
            steps,
            warmup,
            batch_size,
            space,
            device,
        } => commands::bench(variant, steps, warmup, batch_size, &space, &device),
    }
}
