//! `search`: the exhaustive ranking of a trained SuperNet, and the evolutionary search that
//! should find its winner with a quarter of the evaluations.

mod common;

use common::{small_mnist, supernet};
use supernet::data::mnist;
use supernet::engine::CpuBackend;
use supernet::model::{SearchSpace, Variant};
use supernet::search::{search, EvolutionConfig, Strategy};
use supernet::training::{DeviceSplit, Mode, TrainConfig, Trainer};

/// A one-shot SuperNet over the 64 subnets of `1,3,5,7/1,3,5,7/1,3,5,7`, trained for 600 steps
/// with the last 5,000 training images held out; searched on those. Evolution with a budget of
/// 16 (a quarter of the space), seeds 1 to 10, must find the exhaustive winner (or a subnet
/// tied with it) in at least 6 of the 10; the count is printed.
#[test]
fn evolution_with_a_quarter_of_the_space_finds_the_winner() {
    let data = mnist::load(&mnist::default_dir()).expect("the shipped MNIST");
    let config = TrainConfig {
        space: SearchSpace::parse("large").expect("preset"),
        validation: 5000,
        ..TrainConfig::study(Variant::Sum, Mode::OneShot)
    };
    let cpu = CpuBackend::new();
    let mut trainer = Trainer::new(&cpu, &data, config).expect("trainer");
    trainer.train_steps(600).expect("training");
    let mut train = data.train.clone();
    let held_out =
        DeviceSplit::upload(&cpu, &train.split_off_last(5000).expect("split")).expect("upload");

    let exhaustive = search(&cpu, &trainer.net, &held_out, Strategy::Exhaustive).expect("search");
    assert_eq!(exhaustive.len(), 64);
    assert!(exhaustive
        .windows(2)
        .all(|w| w[0].accuracy >= w[1].accuracy));
    let best = exhaustive[0].accuracy;
    assert!(
        best > exhaustive[63].accuracy + 0.05,
        "a flat landscape: {best}"
    );

    let found: Vec<bool> = (1..=10)
        .map(|seed| {
            let strategy = Strategy::Evolution(EvolutionConfig { budget: 16, seed });
            let ranking = search(&cpu, &trainer.net, &held_out, strategy).expect("evolution");
            assert_eq!(ranking.len(), 16, "seed {seed}: the budget");
            ranking[0].accuracy == best
        })
        .collect();
    let hits = found.iter().filter(|&&f| f).count();
    eprintln!("evolution (budget 16 of 64) found the exhaustive winner for {hits} of 10 seeds");
    assert!(
        hits >= 6,
        "found the winner for {hits} of 10 seeds: {found:?}"
    );
}

/// On the command line: the ranking as CSV and JSON, the best exported and evaluable.
#[test]
fn search_writes_the_ranking_and_exports_the_best() {
    let data = small_mnist();
    let out = tempfile::tempdir().expect("temp dir");
    let weights = common::fixture_path("weights/torch_sum_seed3.safetensors");
    let (data_dir, out_dir) = (data.path().to_str().unwrap(), out.path().to_str().unwrap());
    let output = supernet(&[
        "search",
        "--weights",
        weights.to_str().unwrap(),
        "--val",
        "500",
        "--top",
        "1",
        "--backend",
        "cpu",
        "--data",
        data_dir,
        "--out",
        out_dir,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = std::fs::read_to_string(out.path().join("ranking.csv")).expect("ranking.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "rank,subnet,choices,accuracy,correct,loss,generation"
    );
    assert_eq!(lines.len(), 5, "a header and the 4 subnets:\n{csv}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("ranking.json")).expect("ranking.json"),
    )
    .expect("JSON");
    assert_eq!(json["about"]["strategy"], "exhaustive");
    assert_eq!(json["about"]["ranked_on"], "the last 500 training images");
    let winner = json["ranking"][0]["subnet"]
        .as_str()
        .expect("winner")
        .to_string();
    let exported = out.path().join(format!("top-1-{winner}.safetensors"));
    let eval = supernet(&[
        "eval",
        "--weights",
        exported.to_str().unwrap(),
        "--json",
        "--backend",
        "cpu",
        "--data",
        data_dir,
    ]);
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&eval.stdout).expect("JSON");
    assert!(
        printed["subnets"][&winner]["correct"]
            .as_u64()
            .expect("count")
            > 400
    );
}

#[test]
fn search_refuses_a_standalone_checkpoint_and_a_zero_budget() {
    let data = small_mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    let (data_dir, run_dir) = (data.path().to_str().unwrap(), run.to_str().unwrap());
    let trained = supernet(&[
        "standalone",
        "--subnet",
        "1,1",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--data",
        data_dir,
        "--out",
        run_dir,
    ]);
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let standalone = run.join("model.safetensors");
    let oneshot = common::fixture_path("weights/torch_sum_seed3.safetensors");
    let refused = |weights: &std::path::Path, extra: &[&str], word: &str| {
        let mut args = vec![
            "search",
            "--weights",
            weights.to_str().unwrap(),
            "--val",
            "200",
            "--backend",
            "cpu",
            "--data",
            data_dir,
            "--out",
            run_dir,
        ];
        args.extend_from_slice(extra);
        let output = supernet(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(word),
            "{extra:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    refused(&standalone, &[], "not a one-shot SuperNet");
    refused(
        &oneshot,
        &["--strategy", "evolution", "--budget", "0"],
        "--budget",
    );
    assert!(
        !run.join("ranking.csv").exists(),
        "a refused search wrote its ranking"
    );
}
