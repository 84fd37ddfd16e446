"""Fixtures of the package's tests: the ``a2fseg`` command line (``A2FSEG_BIN``), a model
folder (``A2FSEG_TEST_MODEL``, an adaptive-fusion network), a model of another method
(``A2FSEG_TEST_MODEL_UHVED``) and a synthetic case written by ``a2fseg phantom``.
``tests/python_package.rs`` builds the wheel, installs it into a fresh virtual environment
and runs these tests with the three variables set."""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

MODALITIES = ("t1", "t1c", "t2", "flair")
# BraTS 2020 file suffix of each modality.
SUFFIX = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set (run through `cargo test --test python_package`)")
    return value


@pytest.fixture(scope="session")
def cli() -> str:
    return _env("A2FSEG_BIN")


@pytest.fixture(scope="session")
def model_dir() -> str:
    return _env("A2FSEG_TEST_MODEL")


@pytest.fixture(scope="session")
def uhved_dir() -> str:
    """A model folder of another method (U-HVED), predicted through the same library code."""
    return _env("A2FSEG_TEST_MODEL_UHVED")


def run_cli(cli: str, *args: str) -> subprocess.CompletedProcess:
    """Runs the command line; fails the test with its stderr when it fails."""
    out = subprocess.run([cli, "--quiet", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="session")
def case(cli: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """One phantom case of 32³ voxels: its image files by modality and ``seg``."""
    root = tmp_path_factory.mktemp("phantom")
    run_cli(cli, "phantom", "--out", str(root / "data"), "--cases", "1", "--shape", "32,32,32")
    (folder,) = glob.glob(str(root / "data" / "BraTS20_Training_*"))
    name = os.path.basename(folder)
    files = {m: Path(folder) / f"{name}_{SUFFIX[m]}.nii.gz" for m in MODALITIES}
    files["seg"] = Path(folder) / f"{name}_seg.nii.gz"
    return files


def cli_predict(
    cli: str, model_dir: str, case: Dict[str, Path], mods: List[str], out: Path, *extra: str
) -> None:
    """``a2fseg predict`` of `mods` of `case` to `out` with the probabilities."""
    args = ["predict", "--model", model_dir, "--output", str(out), "--save-probabilities"]
    for m in mods:
        args += [f"--{m}", str(case[m])]
    run_cli(cli, *args, *extra)
