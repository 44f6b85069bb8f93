//! `search`: rank a trained SuperNet's subnets on held-out training images, write the
//! ranking, export the best.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;
use supernet::data::Split;
use supernet::engine::{Backend, CpuBackend};
use supernet::model::checkpoint::{self, Checkpoint, LoadOptions, Trained};
use supernet::model::export;
use supernet::report::RunDir;
use supernet::search::{search as rank, write_ranking, EvolutionConfig, Ranked, Strategy};
use supernet::training::claim::FolderLock;
use supernet::training::DeviceSplit;

use crate::cli::args::{SearchArgs, StrategyArg};
use crate::cli::backend::{select, Selected};
use crate::cli::commands::{load_data, lock_run_folder};
use crate::cli::output::{say, show};

pub fn search(args: &SearchArgs) -> Result<()> {
    if args.val == 0 {
        anyhow::bail!("--val must be at least 1: the subnets are ranked on those images");
    }
    // Held until the ranking is written: one writer of the folder.
    let _lock = args.out.as_deref().map(lock_search_folder).transpose()?;
    let data = load_data(&args.device)?;
    let mut train = data.train.clone();
    let held_out = train.split_off_last(args.val)?;
    let backend = select(args.device.backend)?;
    say!("backend: {}", backend.describe());
    let options = LoadOptions {
        space: args.space.clone(),
        image_size: Some(held_out.rows),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        PathBuf::from("runs").join(format!("search-{stamp}"))
    });
    let (ranking, about) = match &backend {
        Selected::Cpu(cpu) => search_on(cpu, args, &options, &held_out)?,
        Selected::Gpu(gpu) => search_on(gpu, args, &options, &held_out)?,
    };
    let run = RunDir::create(&out).context("cannot write the output directory")?;
    write_ranking(run.path(), &about, &ranking)?;
    print_ranking(&ranking, &about);
    export_top(args, &ranking, &run, held_out.rows)?;
    say!("ranking in {}", run.path().join("ranking.csv").display());
    Ok(())
}

/// Locks `out`, refusing one that holds a ranking already (a search never writes over one).
fn lock_search_folder(out: &Path) -> Result<FolderLock> {
    let lock = lock_run_folder(out)?;
    let held: Vec<&str> = ["ranking.json", "ranking.csv"]
        .into_iter()
        .filter(|f| out.join(f).exists())
        .collect();
    if !held.is_empty() {
        anyhow::bail!(
            "--out: {} already holds {}; give a new folder",
            out.display(),
            held.join(", ")
        );
    }
    Ok(lock)
}

fn search_on<B: Backend>(
    backend: &B,
    args: &SearchArgs,
    options: &LoadOptions,
    held_out: &Split,
) -> Result<(Vec<Ranked>, serde_json::Value)> {
    let Checkpoint {
        net,
        trained,
        held_out: trained_held_out,
    } = checkpoint::read(backend, &args.weights, options).context("cannot load the weights")?;
    match trained_held_out {
        Some(n) if n >= args.val => {}
        Some(n) => say!(
            "warning: the SuperNet held out only its last {n} training images; of the {} ranked on, {} were trained on",
            args.val,
            args.val - n
        ),
        None => say!(
            "warning: the weights do not say which images their training held out; rank on those it never saw (--val as in its training)"
        ),
    }
    crate::cli::commands::check_classes(net.config.classes, held_out, &args.weights)?;
    if !matches!(trained, Trained::OneShot | Trained::Unknown) {
        anyhow::bail!(
            "{} is not a one-shot SuperNet: only one of its subnets was trained",
            args.weights.display()
        );
    }
    let space = &net.config.space;
    let strategy = match args.strategy {
        StrategyArg::Exhaustive => Strategy::Exhaustive,
        StrategyArg::Evolution => Strategy::Evolution(EvolutionConfig {
            budget: args.budget.unwrap_or(space.subnet_count().div_ceil(4)),
            seed: args.seed,
        }),
    };
    let split = DeviceSplit::upload(backend, held_out)?;
    let ranking = rank(backend, &net, &split, strategy)?;
    let losses = ranking.iter().map(|r| (r.subnet.clone(), r.loss));
    crate::cli::commands::check_losses(&args.weights, losses)?;
    let about = json!({
        "weights": args.weights,
        "variant": net.config.variant.name(),
        "space": space.to_string(),
        "subnets_in_space": space.subnet_count(),
        "strategy": strategy.name(),
        "budget": match strategy { Strategy::Evolution(c) => Some(c.budget), _ => None },
        "seed": match strategy { Strategy::Evolution(_) => Some(args.seed), _ => None },
        "evaluated": ranking.len(),
        "ranked_on": format!("the last {} training images", held_out.count),
    });
    Ok((ranking, about))
}

fn print_ranking(ranking: &[Ranked], about: &serde_json::Value) {
    show!(
        "{} search: {} of {} subnets scored on {}",
        about["strategy"].as_str().unwrap_or("?"),
        ranking.len(),
        about["subnets_in_space"],
        about["ranked_on"].as_str().unwrap_or("?")
    );
    show!("  rank  subnet  accuracy  choices");
    for row in ranking.iter().take(5) {
        show!(
            "  {:>4}  {:<6}  {:.4}    {}",
            row.rank,
            row.subnet,
            row.accuracy,
            row.choices
        );
    }
}

/// The `--top` best as plain networks: `top-1-131.safetensors`, ...
fn export_top(
    args: &SearchArgs,
    ranking: &[Ranked],
    run: &RunDir,
    image_size: usize,
) -> Result<()> {
    if args.top == 0 {
        return Ok(());
    }
    let cpu = CpuBackend::new();
    let options = LoadOptions {
        space: args.space.clone(),
        image_size: Some(image_size),
    };
    let net = checkpoint::read(&cpu, &args.weights, &options)?.net;
    for row in ranking.iter().take(args.top) {
        let subnet = net.config.space.parse_subnet(&row.subnet)?;
        let path = run
            .path()
            .join(format!("top-{}-{}.safetensors", row.rank, row.subnet));
        export::export(&cpu, &net, &subnet, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        say!("exported {} to {}", row.subnet, path.display());
    }
    Ok(())
}
