"""`a2fseg.metrics` against `a2fseg metrics --json` and against known values."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

import a2fseg
from a2fseg import metrics
from conftest import cli_predict, run_cli


def test_evaluate_case_equals_the_cli(cli, model_dir, case, tmp_path):
    pred_file = tmp_path / "pred.nii.gz"
    cli_predict(cli, model_dir, case, ["t1c", "flair"], pred_file)
    for extra in ([], ["--et-postprocess=3", "--hd95-penalty", "50"]):
        printed = run_cli(cli, "metrics", str(pred_file), str(case["seg"]), "--json", *extra).stdout
        expected = json.loads(printed)
        kwargs = {}
        if extra:
            kwargs = {"et_postprocess": 3, "hd95_penalty": 50.0}
        got = metrics.evaluate_case(nib.load(str(pred_file)), nib.load(str(case["seg"])), **kwargs)
        assert got == expected


def test_dice_and_hd95_on_known_masks():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros((10, 10, 10), bool)
    a[2:4, 2:4, 2:4] = True  # 8 voxels
    b[2:4, 2:4, 2:5] = True  # 12 voxels, 8 shared
    assert metrics.dice(a, b) == pytest.approx(2 * 8 / 20)
    assert metrics.dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert metrics.dice(a, np.zeros_like(a)) == 0.0
    assert metrics.hd95(a, a) == 0.0
    assert metrics.hd95(a, np.zeros_like(a), penalty=7.5) == 7.5
    assert metrics.hd95(a, np.zeros_like(a)) == metrics.DEFAULT_HD95_PENALTY
    # Every surface voxel of `b` beyond `a` is 1 voxel from `a` along z: 2 mm at 2 mm spacing.
    assert metrics.hd95(a, b, spacing=(1, 1, 2)) == pytest.approx(2.0)
    assert metrics.hd95(a, b, spacing=(1, 1, 2)) == pytest.approx(2 * metrics.hd95(a, b))


def test_metrics_bad_input_raises():
    a = np.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="one grid"):
        metrics.dice(a, np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="not positive"):
        metrics.hd95(a, a, spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="is not a label"):
        metrics.evaluate_case(a + 0.5, a)
    with pytest.raises(ValueError, match="cannot guess the label convention"):
        metrics.evaluate_case(a + 3, a + 4)
    with pytest.raises(ValueError, match="unknown label convention"):
        metrics.evaluate_case(a, a, convention="xyz")
    assert a2fseg.metrics is metrics
