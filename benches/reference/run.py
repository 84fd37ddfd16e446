#!/usr/bin/env python3
"""Runs `a2fseg bench` and the same measurements in PyTorch, checks that both give the same
outputs, and prints a Markdown table of the ratios (PyTorch time / a2fseg time).

Usage (from the repository root):

    cargo build --release
    /opt/a2fseg-torch/bin/python benches/reference/run.py --threads 2 \
        --workdir /tmp/a2fseg-bench -- --preset paper --only conv_block,msfe_forward,forward

Everything after `--` goes to `a2fseg bench` unchanged. The steps:

1. `a2fseg --threads N bench --export WORKDIR/export --out WORKDIR/a2fseg.jsonl ARGS`:
   a2fseg's measurements, plus the seeded random models (`export/models/{preset}/`), the
   inputs and outputs of a forward pass on a small shape (`export/check_{preset}.safetensors`)
   and, for each phantom case (`case.safetensors` for BraTS's geometry,
   `case_{geometry}.safetensors` for the others, see `--case-geometry`), the preprocessed case
   and, if its `predict` ran, its predicted probabilities.
2. The check: each exported model is loaded into the PyTorch network of `a2fseg_torch.py`
   (`load_state_dict(strict=True)`: every tensor name maps 1:1), run on the same inputs,
   and every output (final, average, per-modality deep-supervision and attention maps, a
   two-modality forward, one conv block, the loss) must agree within 1e-4 (absolute +
   relative, as `numpy.allclose(atol=1e-4, rtol=1e-4)`); the same for the case's
   probabilities of each case whose `predict` ran. A failure stops the script (exit 1).
3. Every measurement of `a2fseg.jsonl` again in PyTorch (same ids, shapes, subsets,
   repeats, warm-up, weights, case), with `torch.set_num_threads(N)`; JSON lines to
   `WORKDIR/pytorch.jsonl`, each with the CPU read from `/proc/cpuinfo` (`cpu`: model and
   vector extensions, as a2fseg writes it).
4. The table (also `WORKDIR/table.md`); ratios > 1 mean a2fseg is faster.

`--reuse` skips step 1 (reuses WORKDIR's a2fseg output, e.g. to rerun only PyTorch);
`--only ID,..` reruns only those PyTorch measurements (keeping the others' earlier results),
and `--repeats` / `--warmup` override a2fseg's counts for PyTorch (each JSON line records its
own).

Installing PyTorch for CPU: `python3 -m venv /opt/a2fseg-torch && /opt/a2fseg-torch/bin/pip
install torch numpy` (PyPI's default wheel pulls the CUDA packages, about 7 GB installed, but
runs on a CPU; BENCHMARKS.md used torch 2.9.1), or Debian's `apt-get install python3-torch
python3-numpy` (PyTorch 1.13.1, smaller, slower convolutions; run this script with
/usr/bin/python3). No other package is needed (safetensors files are read with numpy).

On a machine shared with other jobs, set `OMP_WAIT_POLICY=PASSIVE` for this script: PyTorch's
OpenMP threads otherwise spin and lose several-fold on small convolutions (BENCHMARKS.md).

Inference runs under `torch.no_grad()`; the training step is forward + the crate's loss
(Eq. 5, same formula) + backward + gradient-norm clipping at 12 + Adam (lr 0.01, eps 1e-8),
as `a2fseg bench` does (it times the step `a2fseg train` runs, with the preset's settings).
Peak RSS is measured as in the crate: reset with `echo 5 > /proc/self/clear_refs`, then
`VmHWM` of `/proc/self/status`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import a2fseg_torch as A  # noqa: E402

ATOL = 1e-4
RTOL = 1e-4


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# The x86 vector extensions a bench line reports (the crate's bench::cpu::VECTOR_EXTENSIONS).
VECTOR_EXTENSIONS = [
    "sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512cd", "avx512bw",
    "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
]


def cpu_info():
    """The `cpu` key of a bench line: model name and vector extensions (/proc/cpuinfo)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model or f"unknown ({os.uname().machine})",
        "vector_extensions": [e for e in VECTOR_EXTENSIONS if e in flags],
    }


def case_file(rec):
    """The exported case of a case-level measurement (see `a2fseg bench --case-geometry`)."""
    geometry = rec.get("case_geometry") or "brats"
    return "case.safetensors" if geometry == "brats" else f"case_{geometry}.safetensors"


def base_id(rec):
    """The id without the case geometry's suffix (`predict_fit` -> `predict`)."""
    geometry = rec.get("case_geometry") or "brats"
    suffix = f"_{geometry}"
    rid = rec["id"]
    return rid[: -len(suffix)] if geometry != "brats" and rid.endswith(suffix) else rid


def class_pattern(x, y, z):
    """The crate's bench::class_pattern as [1, z, y, x] int64."""
    k, j, i = np.meshgrid(np.arange(z), np.arange(y), np.arange(x), indexing="ij")
    return torch.from_numpy((((i * 7 + j * 13 + k * 29) // 5) % 4).astype(np.int64))[None]


# ---------------------------------------------------------------- the equivalence check


def compare(name, got, want, failures):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        failures.append(f"{name}: shape {got.shape} vs {want.shape}")
        return 0.0
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not np.allclose(got, want, atol=ATOL, rtol=RTOL):
        failures.append(f"{name}: max |diff| {diff:.3g}")
    return diff


def check_model(export, preset):
    """Checks PyTorch against a2fseg's exported outputs; returns the largest difference."""
    model, cfg = A.load_model(f"{export}/models/{preset}")
    io = A.load_safetensors(f"{export}/check_{preset}.safetensors")
    inputs = {m: torch.from_numpy(io[f"input.{m}"]) for m in A.MODALITIES}
    failures, worst = [], 0.0
    with torch.no_grad():
        out = model(inputs)
        per, average, fused, att = out
        worst = max(worst, compare("fused", fused, io["fused"], failures))
        worst = max(worst, compare("average", average, io["average"], failures))
        for m, logits in per:
            for l, lg in enumerate(logits):
                key = f"per_modality.{m}.{l}"
                worst = max(worst, compare(key, lg, io[key], failures))
        for m, a in att or []:
            worst = max(worst, compare(f"attention.{m}", a, io[f"attention.{m}"], failures))
        classes = torch.from_numpy(io["classes"].astype(np.int64))
        total = A.loss(cfg, out, classes)
        worst = max(worst, compare("loss_total", total.reshape(1), io["loss_total"], failures))
        pair = {m: inputs[m] for m in ("t1c", "flair")}
        worst = max(worst, compare("fused_0101", model(pair)[2], io["fused_0101"], failures))
        block = model.msfe.t1.encoder[0].convs[-1]
        got = block(torch.from_numpy(io["conv_block.input"]))
        worst = max(worst, compare("conv_block.output", got, io["conv_block.output"], failures))
    if failures:
        raise SystemExit(f"check {preset}: PyTorch and a2fseg differ: " + "; ".join(failures))
    shape = list(io["input.t1"].shape[2:][::-1])
    log(f"check {preset}: outputs agree at {shape} (x, y, z), max |diff| {worst:.2e}")
    return worst


def check_case(export, preset, file="case.safetensors"):
    io = A.load_safetensors(f"{export}/{file}")
    if "predict.probabilities" not in io:
        return None
    model, cfg = A.load_model(f"{export}/models/{preset}")
    images = {m: io[f"case.{m}"] for m in A.MODALITIES}
    got = A.predict_case(model, cfg, images, A.MODALITIES)
    failures = []
    diff = compare("predict.probabilities", got, io["predict.probabilities"], failures)
    if failures:
        raise SystemExit(f"check predict ({file}): " + "; ".join(failures))
    log(f"check predict: probabilities of the case {file} agree, max |diff| {diff:.2e}")
    return diff


# ---------------------------------------------------------------- the measurements


def subset_modalities(bits):
    return [m for m, b in zip(A.MODALITIES, bits) if b == "1"]


ALL_SUBSETS = [subset_modalities(format(i, "04b")) for i in range(1, 16)]


class Runner:
    def __init__(self, export):
        self.export = export
        self.models = {}
        self.cases = {}

    def model(self, preset):
        if preset not in self.models:
            self.models[preset] = A.load_model(f"{self.export}/models/{preset}")
        return self.models[preset]

    def images(self, rec):
        file = case_file(rec)
        if file not in self.cases:
            io = A.load_safetensors(f"{self.export}/{file}")
            self.cases[file] = {m: io[f"case.{m}"] for m in A.MODALITIES}
        return self.cases[file]

    def job(self, rec):
        """A closure running one repetition of measurement `rec`."""
        model, cfg = self.model(rec["preset"])
        x, y, z = rec["shape"]
        rid = rec["id"]
        gen = torch.Generator().manual_seed(0)

        def randn(c):
            return torch.randn(1, c, z, y, x, generator=gen)

        if rid == "conv_block":
            block = model.msfe.t1.encoder[0].convs[-1]
            inp = randn(block.conv.in_channels)

            def run():
                with torch.no_grad():
                    block(inp)

            return run
        if rid == "msfe_forward":
            inp = randn(1)

            def run():
                with torch.no_grad():
                    model.msfe.t1(inp)

            return run
        if rid.startswith("forward_m"):
            inputs = {m: randn(1) for m in subset_modalities(rec["subset"])}

            def run():
                with torch.no_grad():
                    model(inputs)

            return run
        if rid.startswith("train_step_"):
            train = A.A2fseg(cfg)
            train.load_state_dict(model.state_dict())
            train.train()
            optim = torch.optim.Adam(train.parameters(), lr=0.01, eps=1e-8)
            inputs = {m: randn(1) for m in A.MODALITIES}
            classes = class_pattern(x, y, z)

            def run():
                optim.zero_grad(set_to_none=True)
                total = A.loss(cfg, train(inputs), classes)
                total.backward()
                torch.nn.utils.clip_grad_norm_(train.parameters(), 12.0)
                optim.step()

            return run
        images = self.images(rec)
        rid = base_id(rec)
        if rid == "predict":
            return lambda: A.predict_case(model, cfg, images, A.MODALITIES)
        if rid == "evaluate_shared":
            return lambda: A.predict_subsets(model, cfg, images, ALL_SUBSETS)
        if rid == "evaluate_separate":

            def run():
                for s in ALL_SUBSETS:
                    A.predict_case(model, cfg, images, s)

            return run
        raise SystemExit(f"unknown measurement id {rid}")

    def measure(self, rec):
        run = self.job(rec)
        reset_ok = reset_peak_rss()
        times = []
        for i in range(rec["warmup"] + rec["repeats"]):
            t0 = time.perf_counter()
            run()
            dt = time.perf_counter() - t0
            if i >= rec["warmup"]:
                times.append(dt)
        out = dict(rec)
        out["implementation"] = "pytorch"
        out["threads"] = torch.get_num_threads()
        out["times_s"] = times
        out["median_s"] = statistics.median(times)
        out["min_s"] = min(times)
        out["gflops"] = rec["flops"] / out["median_s"] / 1e9 if rec.get("flops") else None
        out["peak_rss_mb"] = peak_rss_mb() if reset_ok else None
        out["load_avg"] = os.getloadavg()[0]
        out["cpu"] = cpu_info()
        return out


# ---------------------------------------------------------------- the table


def fmt_s(v):
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def table(ours, theirs):
    rows = [
        "| measurement | preset | shape (x,y,z) | modalities | a2fseg median s (min) | "
        "PyTorch median s (min) | ratio PyTorch / a2fseg | a2fseg GFLOP/s | PyTorch GFLOP/s | "
        "a2fseg peak MB | PyTorch peak MB | load (a2fseg / PyTorch) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_id = {r["id"]: r for r in theirs}
    for a in ours:
        p = by_id.get(a["id"])
        if p is None:
            continue
        shape = "×".join(str(s) for s in a["shape"])
        mods = f"{a['subset_size']}" if a["subsets"] == 1 else f"{a['subsets']} subsets"

        def gf(r):
            return f"{r['gflops']:.1f}" if r.get("gflops") else "–"

        def mb(r):
            return f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "–"

        def load(r):
            return f"{r['load_avg']:.1f}" if r.get("load_avg") is not None else "–"

        rows.append(
            f"| {a['id']} | {a['preset']} | {shape} | {mods} | "
            f"{fmt_s(a['median_s'])} ({fmt_s(a['min_s'])}) | "
            f"{fmt_s(p['median_s'])} ({fmt_s(p['min_s'])}) | "
            f"**{p['median_s'] / a['median_s']:.2f}×** | {gf(a)} | {gf(p)} | {mb(a)} | {mb(p)} | "
            f"{load(a)} / {load(p)} |"
        )
    ours_by_id = {r["id"]: r for r in ours}
    if "evaluate_shared" in ours_by_id and "evaluate_separate" in by_id:
        a, p = ours_by_id["evaluate_shared"], by_id["evaluate_separate"]
        rows.append(
            f"| 15 subsets: a2fseg shared vs PyTorch 15 separate | {a['preset']} | "
            f"{'×'.join(str(s) for s in a['shape'])} | 15 subsets | "
            f"{fmt_s(a['median_s'])} ({fmt_s(a['min_s'])}) | "
            f"{fmt_s(p['median_s'])} ({fmt_s(p['min_s'])}) | "
            f"**{p['median_s'] / a['median_s']:.2f}×** | – | – | – | – | – |"
        )
    return "\n".join(rows) + "\n"


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    ap.add_argument("--workdir", default="/tmp/a2fseg-bench", help="output folder")
    ap.add_argument(
        "--a2fseg",
        default=os.path.join(HERE, "..", "..", "target", "release", "a2fseg"),
        help="the a2fseg binary (default: target/release/a2fseg)",
    )
    ap.add_argument("--reuse", action="store_true", help="reuse WORKDIR's a2fseg results")
    ap.add_argument("--skip-check", action="store_true", help="do not compare outputs")
    ap.add_argument(
        "--only",
        default="",
        help="PyTorch: run only these ids (comma-separated); with --reuse, the other ids "
        "keep their earlier PyTorch results",
    )
    ap.add_argument("--repeats", type=int, help="PyTorch: timed runs (default: a2fseg's)")
    ap.add_argument("--warmup", type=int, help="PyTorch: warm-up runs (default: a2fseg's)")
    ap.add_argument(
        "--pytorch-separate",
        action="store_true",
        help="also time PyTorch's 15 separate predictions (evaluate_separate) on the case of "
        "a2fseg's evaluate_shared when a2fseg did not time its own separate predictions "
        "(run `a2fseg bench --only predict,evaluate_shared`: a2fseg's 15 separate "
        "predictions are not needed for the shared-vs-separate ratio and take long)",
    )
    ap.add_argument("bench_args", nargs="*", help="arguments for `a2fseg bench` (after --)")
    args = ap.parse_args()

    os.makedirs(args.workdir, exist_ok=True)
    export = os.path.join(args.workdir, "export")
    ours_path = os.path.join(args.workdir, "a2fseg.jsonl")
    if not args.reuse:
        cmd = [args.a2fseg, "--threads", str(args.threads), "bench", "--export", export]
        cmd += ["--out", ours_path] + args.bench_args
        log("running " + " ".join(cmd))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ours = read_jsonl(ours_path)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    log(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.skip_check:
        for preset in sorted(os.listdir(os.path.join(export, "models"))):
            if os.path.exists(os.path.join(export, f"check_{preset}.safetensors")):
                check_model(export, preset)
        for rec in ours:
            if rec["name"] == "predict" and os.path.exists(os.path.join(export, case_file(rec))):
                check_case(export, rec["preset"], case_file(rec))

    runner = Runner(export)
    only = [x for x in args.only.split(",") if x]
    theirs_path = os.path.join(args.workdir, "pytorch.jsonl")
    earlier = {}
    if args.reuse and only and os.path.exists(theirs_path):
        earlier = {r["id"]: r for r in read_jsonl(theirs_path)}
    theirs = []
    for rec in ours:
        if only and rec["id"] not in only:
            if rec["id"] in earlier:
                theirs.append(earlier[rec["id"]])
            continue
        log(f"pytorch: {rec['id']} ({rec['preset']}, {rec['shape']}) …")
        rec = dict(rec)
        if args.repeats is not None:
            rec["repeats"] = args.repeats
        if args.warmup is not None:
            rec["warmup"] = args.warmup
        r = runner.measure(rec)
        log(
            f"pytorch: {rec['id']}: median {r['median_s']:.3f} s (a2fseg {rec['median_s']:.3f} s), "
            f"ratio {r['median_s'] / rec['median_s']:.2f}"
        )
        theirs.append(r)
        write_jsonl(theirs_path, theirs)
    ids = {r["id"] for r in ours}
    if args.pytorch_separate and "evaluate_shared" in ids and "evaluate_separate" not in ids:
        rec = dict(next(r for r in ours if r["id"] == "evaluate_shared"))
        rec.update(id="evaluate_separate", name="evaluate_separate", flops=None)
        if args.repeats is not None:
            rec["repeats"] = args.repeats
        if args.warmup is not None:
            rec["warmup"] = args.warmup
        log(f"pytorch: evaluate_separate ({rec['preset']}, the evaluate_shared case) …")
        r = runner.measure(rec)
        log(f"pytorch: evaluate_separate: median {r['median_s']:.3f} s")
        theirs.append(r)
        write_jsonl(theirs_path, theirs)
    md = table(ours, theirs)
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
