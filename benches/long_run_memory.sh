#!/usr/bin/env bash
# Peak memory of long runs (issue 22, part 6): the peak resident set size (VmHWM) of
# `a2fseg evaluate` over 200 small phantom cases, read after 10, 50, 100 and 200 cases, and of
# `a2fseg train` over many epochs, read after 5, 15, 30 and 60 epochs. Flat numbers mean that
# nothing accumulates per case or per epoch.
#
# Usage: benches/long_run_memory.sh [A2FSEG_BINARY] [WORK_DIR]
# (default: target/release/a2fseg if built, else target/debug/a2fseg; a fresh temporary folder).
# Prints one line per milestone: `evaluate cases N peak_rss_mib X rss_mib Y` and
# `train epochs N peak_rss_mib X rss_mib Y`.
set -euo pipefail

bin=${1:-}
if [[ -z "$bin" ]]; then
    if [[ -x target/release/a2fseg ]]; then bin=target/release/a2fseg; else bin=target/debug/a2fseg; fi
fi
work=${2:-$(mktemp -d)}
mkdir -p "$work"
echo "binary $bin, folder $work" >&2

# The `VmHWM` (peak) and `VmRSS` (current) of process $1, in MiB.
memory() {
    awk '/^VmHWM:/ {h = $2} /^VmRSS:/ {r = $2} END {printf "peak_rss_mib %.1f rss_mib %.1f", h / 1024, r / 1024}' "/proc/$1/status"
}

# What command $1 counts (0 while its file does not exist yet).
counted() {
    local n
    n=$(eval "$1" 2>/dev/null | tail -n 1) || true
    echo "${n:-0}"
}

# Polls process $1 while it runs; prints `$2 N <memory>` the first time the count that
# command $3 prints reaches each of the milestones $4... (a milestone reached as the process
# ends gets its last reading, marked `at_exit`).
watch() {
    local pid=$1 label=$2 count=$3
    shift 3
    local milestones=("$@") i=0 last="" n
    while ((i < ${#milestones[@]})); do
        if ! kill -0 "$pid" 2>/dev/null; then
            n=$(counted "$count")
            while ((i < ${#milestones[@]} && n >= milestones[i])); do
                echo "$label ${milestones[i]} $last at_exit"
                i=$((i + 1))
            done
            return
        fi
        last=$(memory "$pid" 2>/dev/null || echo "$last")
        n=$(counted "$count")
        if ((n >= milestones[i])); then
            echo "$label ${milestones[i]} $last"
            i=$((i + 1))
        else
            sleep 0.2
        fi
    done
}

"$bin" phantom --out "$work/phantoms" --cases 200 --shape 32 --seed 3 --quiet

# A small-preset model: one short training without validation, so its checkpoints/latest
# (the weights do not matter for memory).
"$bin" train --quiet --data "$work/phantoms" --out "$work/model" --preset small \
    --patch 32,32,32 --epochs 1 --iterations-per-epoch 1 --validate-every 0 --workers 1

# evaluate over every case (no split: all 200), two subsets.
"$bin" evaluate --quiet --model "$work/model/checkpoints/latest" --data "$work/phantoms" --subsets 1111,0001 \
    --out "$work/eval" >/dev/null &
pid=$!
watch "$pid" "evaluate cases" \
    "tail -n +2 '$work/eval/cases.csv' | cut -d, -f2 | sort -u | wc -l" 10 50 100 200
wait "$pid"

# train over many epochs (a few steps each, validating every 5 epochs).
"$bin" train --quiet --data "$work/phantoms" --out "$work/long" --preset small \
    --patch 32,32,32 --epochs 60 --iterations-per-epoch 2 --batch-size 2 --validate-every 5 \
    --workers 1 &
pid=$!
watch "$pid" "train epochs" "tail -n +2 '$work/long/log.csv' | wc -l" 5 15 30 60
wait "$pid"
