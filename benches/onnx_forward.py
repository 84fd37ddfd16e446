#!/usr/bin/env python3
"""Times the exported ONNX graph of the paper-preset forward in onnxruntime (CPU) side by
side with a2fseg's own forward, in one run, with the same weights and thread count.

Usage (from the repository root; onnxruntime, numpy and safetensors from PyPI):

    cargo build --release
    python3 benches/onnx_forward.py --threads 2 --workdir /tmp/a2fseg-onnx

The steps:

1. `a2fseg --threads N bench --preset paper --only IDS --export WORKDIR/export`: a2fseg's
   forward measurements (`forward_m1` … `forward_m4`: the first n modalities in the order T1
   T1c T2 FLAIR, at the preset's 128³ patch) and the seeded random model they used
   (`export/models/paper/`), with a forward pass's inputs and logits on a smaller shape
   (`export/check_paper.safetensors`).
2. `a2fseg export onnx` of that model, one graph per measured subset, plus the 1111 graph.
3. The check: the 1111 graph on the check inputs must give a2fseg's logits within 1e-4
   (absolute + relative); a failure stops the script (exit 1).
4. Each measurement again in onnxruntime (`CPUExecutionProvider`, `intra_op_num_threads` = N,
   all graph optimisations), on seeded random inputs of the same shape, with the same warm-up
   and repeat counts; JSON lines to `WORKDIR/onnxruntime.jsonl`.
5. A Markdown table (also `WORKDIR/table.md`): ratio = onnxruntime time / a2fseg time, above 1
   means a2fseg is faster.

`lscpu` is saved as `WORKDIR/lscpu.txt`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

MODALITIES = ("t1", "t1c", "t2", "flair")


def run(cmd):
    """Runs `cmd`, echoing it; exits with its status when it fails."""
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd)
    if done.returncode != 0:
        sys.exit(done.returncode)


def session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def export(binary, model, subset, out):
    run([binary, "--quiet", "export", "onnx", "--model", model, "--subset", subset, "--out", out])


def check(binary, workdir, threads):
    """The 1111 graph against a2fseg's logits of `check_paper.safetensors`."""
    path = os.path.join(workdir, "subset-1111.onnx")
    export(binary, os.path.join(workdir, "export", "models", "paper"), "1111", path)
    data = load_file(os.path.join(workdir, "export", "check_paper.safetensors"))
    feeds = {m: data[f"input.{m}"] for m in MODALITIES}
    (logits,) = session(path, threads).run(["logits"], feeds)
    expected = data["fused"]
    worst = float(np.max(np.abs(logits - expected)))
    print(f"check: 1111 graph against a2fseg's logits, max |diff| {worst:.2e}", file=sys.stderr)
    if not np.allclose(logits, expected, atol=1e-4, rtol=1e-4):
        sys.exit(f"the ONNX graph disagrees with a2fseg's forward (max |diff| {worst})")


def time_onnxruntime(path, line, threads):
    """Times the graph at `path` as a2fseg timed the measurement `line`."""
    shape = line["shape"]  # [x, y, z]
    rng = np.random.default_rng(0)
    sess = session(path, threads)
    feeds = {
        m: rng.standard_normal((1, 1, shape[2], shape[1], shape[0]), dtype=np.float32)
        for m, bit in zip(MODALITIES, line["subset"])
        if bit == "1"
    }
    for _ in range(line["warmup"]):
        sess.run(["logits"], feeds)
    times = []
    for _ in range(line["repeats"]):
        start = time.perf_counter()
        sess.run(["logits"], feeds)
        times.append(time.perf_counter() - start)
    return {
        "implementation": "onnxruntime",
        "onnxruntime": ort.__version__,
        "id": line["id"],
        "preset": line["preset"],
        "shape": shape,
        "subset": line["subset"],
        "threads": threads,
        "repeats": line["repeats"],
        "warmup": line["warmup"],
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": times,
        "load_avg": os.getloadavg()[0],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/a2fseg", help="the a2fseg binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--only", default="forward_m1", help="forward ids, e.g. forward_m1,forward_m4")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "lscpu.txt"), "w") as f:
        subprocess.run(["lscpu"], stdout=f, check=True)

    ours = os.path.join(args.workdir, "a2fseg.jsonl")
    run([
        args.bin, "--threads", str(args.threads), "--quiet", "bench", "--preset", "paper",
        "--only", args.only, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
        "--export", os.path.join(args.workdir, "export"), "--out", ours,
    ])
    check(args.bin, args.workdir, args.threads)

    lines = [json.loads(l) for l in open(ours) if l.strip()]
    rows = []
    with open(os.path.join(args.workdir, "onnxruntime.jsonl"), "w") as out:
        for line in lines:
            path = os.path.join(args.workdir, f"subset-{line['subset']}.onnx")
            if not os.path.exists(path):
                export(args.bin, os.path.join(args.workdir, "export", "models", "paper"),
                       line["subset"], path)
            theirs = time_onnxruntime(path, line, args.threads)
            out.write(json.dumps(theirs) + "\n")
            out.flush()
            rows.append((line, theirs))

    table = [
        "| measurement | shape | subset | a2fseg median (s) | onnxruntime median (s) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for a, o in rows:
        table.append(
            f"| {a['id']} | {'×'.join(map(str, a['shape']))} | {a['subset']} | "
            f"{a['median_s']:.3g} | {o['median_s']:.3g} | **{o['median_s'] / a['median_s']:.2f}×** |"
        )
    text = "\n".join(table) + "\n"
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
