#!/usr/bin/env bash
# Everything a GPU machine has to run, as one markdown report.
#
#   scripts/gpu-report.sh build [DIR]       on a machine with the Rust toolchain: the release
#                                           binary and the GPU test executables, stripped, into
#                                           DIR (default gpu-artefacts) and DIR.tar.xz
#   scripts/gpu-report.sh run [DIR] [OUT]   on the GPU machine, from the repository's root (no
#                                           toolchain, no network needed): writes OUT (default
#                                           gpu-report.md)
#
# `run` takes about five minutes on a fast GPU: the adapters, the GPU tests on the adapter the
# binary picks, `bench` of Sum, Concat and the `ops` space (938 steps: an epoch) without and
# with `--profile`, and one short experiment with `--parallel 1` and `--parallel auto`. Each
# step's output goes into the report as it was printed; a step that fails is marked and the
# rest still run.
set -uo pipefail
cd "$(dirname "$0")/.."

# The test executables with GPU tests, run whole (their CPU tests are quick): they read the
# fixtures from SUPERNET_SOURCE_DIR and run the carried binary as SUPERNET_BIN.
GPU_TESTS=(kernels torch_reference training metamorphic profile)

build() {
    local dir=${1:-gpu-artefacts}
    set -e
    mkdir -p "$dir"
    cargo build --release
    cp target/release/supernet "$dir/"
    local listing
    listing=$(cargo test --release --no-run --message-format=json 2>/dev/null)
    for name in "${GPU_TESTS[@]}"; do
        local path
        path=$(printf '%s\n' "$listing" | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] \
            and "test" in m["target"]["kind"] and m.get("executable"):
        print(m["executable"])' "$name")
        cp "$path" "$dir/$name"
    done
    strip "$dir"/*
    # Packed, the artefacts travel beside the repository within a device's transfer limit.
    tar -cJf "$dir.tar.xz" "$dir"
    du -sh "$dir"/* "$dir.tar.xz"
}

# `section TITLE COMMAND...`: the command's output under a heading, its status after it.
section() {
    local title=$1
    shift
    {
        printf '\n## %s\n\n```\n$ %s\n' "$title" "$*"
        local started=$SECONDS
        "$@" 2>&1
        local status=$?
        printf '```\n\nexit %s, %s s\n' "$status" $((SECONDS - started))
    } >>"$REPORT"
}

run() {
    local dir=${1:-gpu-artefacts}
    REPORT=${2:-gpu-report.md}
    [[ -d $dir || ! -f $dir.tar.xz ]] || tar -xJf "$dir.tar.xz"
    local bin
    bin=$(realpath "$dir/supernet")
    export CI=true SUPERNET_SOURCE_DIR=$PWD SUPERNET_BIN=$bin
    export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
    printf '# GPU report\n\n%s, commit %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
        "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$REPORT"
    section "Adapters" "$bin" devices
    for name in "${GPU_TESTS[@]}"; do
        section "Tests: $name" "$dir/$name"
    done
    local runs=/tmp/gpu-report-runs
    rm -rf "$runs"
    for space in study ops; do
        for variant in sum concat; do
            section "bench: $variant, space $space, an epoch" \
                "$bin" bench --backend gpu --supernet "$variant" --space "$space" --steps 938 --warmup 50
            section "bench --profile: $variant, space $space" \
                "$bin" bench --backend gpu --supernet "$variant" --space "$space" --steps 100 --warmup 20 --profile
        done
    done
    for parallel in 1 auto; do
        section "experiment --parallel $parallel (Sum, seeds 1-2, 2 epochs)" \
            "$bin" experiment --backend gpu --supernet sum --seeds 1,2 --epochs 2 \
            --parallel "$parallel" --out "$runs/parallel-$parallel"
    done
    echo "report in $REPORT"
}

case ${1:-} in
    build) shift; build "$@" ;;
    run) shift; run "$@" ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
