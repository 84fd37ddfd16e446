"""Segmentation metrics with the conventions of ``a2fseg metrics`` (the library's code).

Dice: both masks empty → 1, exactly one empty → 0. HD95: the 95th percentile of the pooled
surface distances in mm; both empty → 0, exactly one empty → ``penalty`` (default 373.13 mm,
the diagonal of a 240 × 240 × 155 mm box).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence

import numpy as np

from . import _native

__all__ = ["dice", "hd95", "evaluate_case", "DEFAULT_HD95_PENALTY"]

#: HD95 in mm when exactly one of prediction and reference is empty.
DEFAULT_HD95_PENALTY: float = _native.default_hd95_penalty()


def _mask(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 3:
        raise ValueError(f"{name} has {a.ndim} dimensions; give a 3D mask")
    return a.astype(bool, copy=False)


def _labels(name: str, x: Any) -> np.ndarray:
    data = x.get_fdata(dtype=np.float32) if hasattr(x, "get_fdata") else np.asarray(x)
    if data.ndim != 3:
        raise ValueError(f"{name} has {data.ndim} dimensions; give a 3D label map")
    return np.asarray(data, dtype=np.float32)


def dice(pred: Any, gt: Any) -> float:
    """Dice of two ``[x, y, z]`` masks (non-zero is inside)."""
    return _native.dice(_mask("pred", pred), _mask("gt", gt))


def hd95(
    pred: Any,
    gt: Any,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    penalty: float = DEFAULT_HD95_PENALTY,
) -> float:
    """HD95 in mm of two ``[x, y, z]`` masks with voxel ``spacing`` (x, y, z mm)."""
    sx, sy, sz = (float(s) for s in spacing)
    return _native.hd95(_mask("pred", pred), _mask("gt", gt), [sx, sy, sz], float(penalty))


def evaluate_case(
    pred: Any,
    gt: Any,
    *,
    spacing: Optional[Sequence[float]] = None,
    convention: Optional[str] = None,
    hd95_penalty: float = DEFAULT_HD95_PENALTY,
    et_postprocess: Optional[int] = None,
) -> Dict[str, Any]:
    """``a2fseg metrics --json`` of two label maps (``[x, y, z]`` arrays or nibabel images).

    Returns a dict with ``WT``, ``TC``, ``ET`` (dice, hd95, sensitivity, specificity,
    volumes) and ``conventions``. ``spacing`` defaults to the reference image's (nibabel)
    or 1 mm; ``convention`` (brats, brats2023, msd) is guessed from the label values when
    not given; ``et_postprocess=N`` also reports ET after turning a predicted ET of fewer
    than N voxels into NCR. Raises ValueError with the command line's messages.
    """
    if spacing is None:
        spacing = gt.header.get_zooms()[:3] if hasattr(gt, "header") else (1.0, 1.0, 1.0)
    sx, sy, sz = (float(s) for s in spacing)
    text = _native.evaluate_case(
        _labels("pred", pred),
        _labels("gt", gt),
        [sx, sy, sz],
        convention=convention,
        hd95_penalty=float(hd95_penalty),
        et_postprocess=et_postprocess,
    )
    return json.loads(text)
