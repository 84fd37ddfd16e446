"""`Model.predict` and `Model.predict_files` against `a2fseg predict` on the same files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import a2fseg
from conftest import cli_predict, run_cli

SUBSETS = [["t1", "t1c", "t2", "flair"], ["t1c", "flair"], ["t2"]]


def cli_outputs(out: Path):
    """The labels, WT/TC/ET probabilities and affine `a2fseg predict` wrote to `out`."""
    img = nib.load(str(out))
    labels = np.asanyarray(img.dataobj)
    stem = str(out)[: -len(".nii.gz")]
    probs = {r: nib.load(f"{stem}_prob_{r}.nii.gz").get_fdata(dtype=np.float32) for r in ("wt", "tc", "et")}
    return labels, probs, img.affine


@pytest.fixture(scope="module")
def model(model_dir: str) -> a2fseg.Model:
    return a2fseg.Model.load(model_dir)


@pytest.mark.parametrize("mods", SUBSETS, ids=lambda m: "+".join(m))
def test_predict_on_nibabel_images_equals_the_cli(cli, model_dir, model, case, tmp_path, mods):
    out = tmp_path / "cli.nii.gz"
    cli_predict(cli, model_dir, case, mods, out)
    labels, probs, affine = cli_outputs(out)

    images = {m: nib.load(str(case[m])) for m in mods}
    pred = model.predict(**images, probabilities=True)
    assert pred.labels.dtype == np.uint8
    assert pred.labels.shape == labels.shape
    np.testing.assert_array_equal(pred.labels, labels)
    assert set(pred.probabilities) == {"wt", "tc", "et"}
    for r, p in probs.items():
        assert pred.probabilities[r].shape == p.shape
        assert np.max(np.abs(pred.probabilities[r] - p)) <= 1e-5, r
    np.testing.assert_allclose(pred.affine, affine, atol=1e-6)
    expected_bits = "".join("1" if m in mods else "0" for m in ("t1", "t1c", "t2", "flair"))
    assert pred.subset == expected_bits
    assert pred.attention is None


def test_predict_on_arrays_with_affine_or_spacing_equals_the_cli(cli, model_dir, model, case, tmp_path):
    mods = ["t1", "t1c", "t2", "flair"]
    out = tmp_path / "cli.nii.gz"
    cli_predict(cli, model_dir, case, mods, out, "--tta", "8")
    labels, probs, affine = cli_outputs(out)
    arrays = {m: np.asarray(nib.load(str(case[m])).dataobj, dtype=np.float32) for m in mods}

    by_affine = model.predict(**arrays, affine=affine, tta="8", probabilities=True)
    np.testing.assert_array_equal(by_affine.labels, labels)
    for r, p in probs.items():
        assert np.max(np.abs(by_affine.probabilities[r] - p)) <= 1e-5, r

    # The labels do not depend on the orientation: spacing alone gives the same result.
    zooms = nib.load(str(case["t1"])).header.get_zooms()[:3]
    by_spacing = model.predict(**arrays, spacing=zooms, tta="8")
    np.testing.assert_array_equal(by_spacing.labels, labels)
    assert by_spacing.probabilities is None
    # float64 and C- or Fortran-ordered inputs are read as the same voxels.
    as_f64 = {m: np.asfortranarray(a.astype(np.float64)) for m, a in arrays.items()}
    np.testing.assert_array_equal(model.predict(**as_f64, affine=affine, tta="8").labels, labels)


def test_attention_maps_equal_the_cli(cli, model_dir, model, case, tmp_path):
    assert model.has_attention
    out = tmp_path / "cli.nii.gz"
    cli_predict(cli, model_dir, case, ["t1c", "flair"], out, "--save-attention")
    pred = model.predict(t1c=nib.load(str(case["t1c"])), flair=nib.load(str(case["flair"])), attention=True)
    assert set(pred.attention) == {"t1c", "flair"}
    stem = str(out)[: -len(".nii.gz")]
    for m, a in pred.attention.items():
        expected = nib.load(f"{stem}_attention_{m}.nii.gz").get_fdata(dtype=np.float32)
        assert np.max(np.abs(a - expected)) <= 1e-5, m


def test_nibabel_round_trip(cli, model_dir, model, case, tmp_path):
    out = tmp_path / "cli.nii.gz"
    cli_predict(cli, model_dir, case, ["t1", "t1c", "t2", "flair"], out)
    pred = model.predict(**{m: nib.load(str(case[m])) for m in ("t1", "t1c", "t2", "flair")})
    saved = tmp_path / "python.nii.gz"
    nib.save(nib.Nifti1Image(pred.labels, pred.affine), str(saved))
    back = nib.load(str(saved))
    ref = nib.load(str(out))
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-5)
    assert back.get_data_dtype() == np.uint8


def test_predict_files_writes_what_the_cli_writes(cli, model_dir, model, case, tmp_path):
    cli_out = tmp_path / "cli.nii.gz"
    cli_predict(cli, model_dir, case, ["t1c", "t2"], cli_out)
    py_out = tmp_path / "py.nii.gz"
    model.predict_files(t1c=case["t1c"], t2=case["t2"], output=py_out, probabilities=True)
    for suffix in ("", "_prob_wt", "_prob_tc", "_prob_et"):
        a = nib.load(str(cli_out).replace(".nii.gz", f"{suffix}.nii.gz"))
        b = nib.load(str(py_out).replace(".nii.gz", f"{suffix}.nii.gz"))
        np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)
    # A later prediction keeps the model's own settings (post-processing restored).
    again = model.predict(t1c=nib.load(str(case["t1c"])), t2=nib.load(str(case["t2"])))
    np.testing.assert_array_equal(again.labels, np.asanyarray(nib.load(str(cli_out)).dataobj))


def test_config_and_summary_are_the_cli_s(cli, model_dir, model):
    cfg = model.config
    assert cfg["arch"] == "a2fseg"
    assert cfg["fusion"] == "adaptive"
    assert cfg["patch_size"] == [8, 8, 8]
    config_json = os.path.join(model_dir, "checkpoints", "best", "config.json")
    printed = run_cli(cli, "model", "summary", "--config", config_json).stdout
    assert model.summary() == printed
    assert "a2fseg" in repr(model)


def test_another_method_predicts_as_the_cli(cli, uhved_dir, case, tmp_path):
    model = a2fseg.Model.load(uhved_dir)
    assert model.config["arch"] == "uhved"
    assert not model.has_attention
    config_json = os.path.join(uhved_dir, "config.json")
    assert model.summary() == run_cli(cli, "model", "summary", "--config", config_json).stdout
    for mods in (["t1", "t1c", "t2", "flair"], ["t1c", "flair"]):
        out = tmp_path / f"cli_{'_'.join(mods)}.nii.gz"
        cli_predict(cli, uhved_dir, case, mods, out)
        labels, probs, _ = cli_outputs(out)
        pred = model.predict(**{m: nib.load(str(case[m])) for m in mods}, probabilities=True)
        np.testing.assert_array_equal(pred.labels, labels)
        for r, p in probs.items():
            assert np.max(np.abs(pred.probabilities[r] - p)) <= 1e-5, r


def test_bad_input_raises_with_a_clear_message(model, case, tmp_path):
    t1 = nib.load(str(case["t1"]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        a2fseg.Model.load(tmp_path / "no-such-run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is neither a model folder"):
        a2fseg.Model.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="give the images"):
        model.predict(spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="give the voxel geometry"):
        model.predict(t1=np.zeros((8, 8, 8), np.float32))
    with pytest.raises(ValueError, match="not both"):
        model.predict(t1=t1, affine=np.eye(4), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="give every image on one grid"):
        model.predict(t1=np.zeros((8, 8, 8)), t2=np.zeros((8, 8, 9)), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="3D image"):
        model.predict(t1=np.zeros((8, 8, 8, 2)), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="tta"):
        model.predict(t1=t1, tta="sideways")
    with pytest.raises(ValueError, match="4 × 4"):
        model.predict(t1=np.zeros((8, 8, 8)), affine=np.eye(3))
    with pytest.raises(ValueError, match="unknown label convention"):
        model.predict(t1=t1, convention="nnunet")
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        model.predict_files(t1=tmp_path / "missing.nii.gz", output=tmp_path / "o.nii.gz")
    with pytest.raises(ValueError, match="must be a .nii or .nii.gz file"):
        model.predict_files(t1=case["t1"], output=tmp_path / "o.png")
    with pytest.raises(ValueError, match="give the images"):
        model.predict_files(output=tmp_path / "o.nii.gz")
    # The model still predicts after errors.
    assert model.predict(t1=t1).labels.shape == t1.shape


def test_compute_releases_the_gil_and_ctrl_c_interrupts(model):
    # A 96³ volume in 8³ windows, step 0.5, mirrored 8 ways: 97,336 network passes, far more
    # than a second's work (64³, 27,000 passes, once finished before the Ctrl-C at 1 s).
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(96, 96, 96)).astype(np.float32) + 3.0
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    # Python installs its KeyboardInterrupt handler only if SIGINT was not ignored when it
    # started, and a shell ignores SIGINT in the commands it starts in the background.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    ticker = threading.Thread(target=tick)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    ticker.start()
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.predict(t1=vol, t2=vol, spacing=(1, 1, 1), tta="8", window="sliding")
    finally:
        stop.set()
        ticker.join()
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    elapsed = time.monotonic() - start
    assert elapsed < 30, f"Ctrl-C took {elapsed:.1f} s to stop the prediction"
    # The other thread ran while the prediction computed (the GIL was released).
    during = [t for t in ticks if start + 0.1 < t < start + 0.9]
    assert len(during) >= 10, f"only {len(during)} ticks of the other thread during the prediction"
    # The model is usable after the interruption.
    small = vol[:16, :16, :16]
    assert model.predict(t1=small, spacing=(1, 1, 1)).labels.shape == (16, 16, 16)


def test_the_package_needs_only_numpy_at_import():
    code = "import sys, a2fseg; print(sorted(m for m in ('nibabel', 'scipy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
