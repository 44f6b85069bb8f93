//! The command line: arguments, backend choice, commands and progress display.

pub mod args;
mod backend;
mod bench;
mod commands;
mod experiment;
pub mod output;
mod progress;
mod search;
pub mod signals;
mod tables;

use anyhow::Result;
use args::{Cli, Command};
use clap::CommandFactory;
use commands::Training;

pub fn run(cli: Cli) -> Result<()> {
    output::set_level(match (cli.quiet, cli.verbose) {
        (true, _) => output::Level::Quiet,
        (_, true) => output::Level::Verbose,
        _ => output::Level::Normal,
    });
    match cli.command {
        Command::Oneshot { sampling, train } => {
            commands::train(&train, Training::OneShot(sampling))
        }
        Command::Standalone { subnet, train } => {
            commands::train(&train, Training::Standalone(subnet))
        }
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
        Command::Completions { shell } => {
            let mut command = args::Cli::command();
            clap_complete::generate(shell, &mut command, "supernet", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage => {
            let page = clap_mangen::Man::new(args::Cli::command());
            match page.render(&mut std::io::stdout()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Bench {
            variant,
            steps,
            warmup,
            batch_size,
            profile,
            space,
            device,
        } => {
            let args = bench::BenchArgs {
                variant: commands::variant(variant),
                space: space.space,
                batch_size,
                steps,
                warmup,
                profile,
            };
            commands::bench(&args, &device)
        }
    }
}
