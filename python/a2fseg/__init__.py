"""A2FSeg brain-tumour segmentation from any subset of T1, T1c, T2 and FLAIR MRI.

Python bindings of the a2fseg Rust library: the same preprocessing, sliding window,
post-processing and metrics as the ``a2fseg`` command line, called in-process. Images are
numpy arrays indexed ``[x, y, z]`` (as nibabel reads NIfTI data) or nibabel images.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from . import _native, metrics

__all__ = ["Model", "Prediction", "metrics"]

#: An image argument: an ``[x, y, z]`` array or a nibabel image.
Image = Any


@dataclass
class Prediction:
    """The segmentation of one case.

    ``labels``: uint8 ``[x, y, z]`` labels in the requested convention (BraTS 0/1/2/4 by
    default). ``probabilities``: ``{"wt", "tc", "et"}`` float32 maps on the input's grid
    (zero outside the brain box), or None unless asked for. ``attention``: the adaptive
    fusion's attention map per modality of the subset (``"t1"``, ``"t1c"``, ``"t2"``,
    ``"flair"``), or None unless asked for (empty when the model has none). ``affine``: the
    input's voxel-to-mm matrix, to save the labels with nibabel. ``subset``: the modalities
    used as a bit string in the order T1 T1c T2 FLAIR. ``plan``: the inference plan, as
    ``a2fseg predict`` prints it.
    """

    labels: np.ndarray
    probabilities: Optional[Dict[str, np.ndarray]]
    attention: Optional[Dict[str, np.ndarray]]
    affine: np.ndarray
    subset: str
    plan: str


def _is_nibabel_image(x: Any) -> bool:
    return hasattr(x, "affine") and hasattr(x, "get_fdata")


def _image_array(name: str, x: Image) -> np.ndarray:
    data = x.get_fdata(dtype=np.float32) if _is_nibabel_image(x) else np.asarray(x)
    if data.ndim != 3:
        raise ValueError(f"{name} has {data.ndim} dimensions; give one 3D image per modality")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise ValueError(f"{name} has dtype {data.dtype}; give a numeric array")
    return np.asarray(data, dtype=np.float32)


def _affine(
    images: Dict[str, Image],
    affine: Optional[Union[np.ndarray, Sequence[Sequence[float]]]],
    spacing: Optional[Sequence[float]],
) -> np.ndarray:
    if affine is not None and spacing is not None:
        raise ValueError("give affine or spacing, not both")
    if affine is None and spacing is None:
        for x in images.values():
            if _is_nibabel_image(x):
                return np.asarray(x.affine, dtype=np.float64)
        raise ValueError(
            "give the voxel geometry: affine= (4 × 4, voxel → mm) or spacing= (x, y, z mm); "
            "nibabel images carry their own"
        )
    if spacing is not None:
        s = np.asarray(spacing, dtype=np.float64)
        if s.shape != (3,):
            raise ValueError(f"spacing must be three numbers (x, y, z mm), not shape {s.shape}")
        return np.diag([s[0], s[1], s[2], 1.0])
    return np.asarray(affine, dtype=np.float64)


def _settings(
    step: float,
    tta: str,
    window: Optional[str],
    max_memory: Optional[str],
    probabilities: bool,
    attention: bool,
    postprocess: bool,
) -> Dict[str, Any]:
    """The prediction settings `predict` and `predict_files` hand to the native module."""
    return {
        "step": float(step),
        "tta": str(tta),
        "window": window,
        "max_memory": max_memory,
        "probabilities": bool(probabilities),
        "attention": bool(attention),
        "postprocess": bool(postprocess),
    }


class Model:
    """A trained a2fseg model (any method), loaded once and used for many predictions."""

    def __init__(self, native: _native.Model, path: str) -> None:
        self._native = native
        self.path = path

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"], *, device: str = "cpu") -> "Model":
        """Loads a model folder (``config.json`` + ``model.safetensors``) or a training run
        folder (its ``checkpoints/best``), as ``a2fseg predict --model`` does.

        Raises FileNotFoundError when ``path`` does not exist, ValueError when it is no
        model.
        """
        path = os.fspath(path)
        return cls(_native.Model.load(path, device), path)

    @property
    def config(self) -> Dict[str, Any]:
        """The model's configuration (its ``config.json``: method, patch size, targets, …)."""
        return json.loads(self._native.config_json())

    @property
    def has_attention(self) -> bool:
        """Whether the model fuses with attention (so ``attention=True`` returns maps)."""
        return self._native.has_attention()

    def summary(self) -> str:
        """The network's layers, parameters and MACs, as ``a2fseg model summary`` prints."""
        return self._native.summary()

    def predict(
        self,
        t1: Optional[Image] = None,
        t1c: Optional[Image] = None,
        t2: Optional[Image] = None,
        flair: Optional[Image] = None,
        *,
        affine: Optional[Union[np.ndarray, Sequence[Sequence[float]]]] = None,
        spacing: Optional[Sequence[float]] = None,
        tta: str = "off",
        probabilities: bool = False,
        attention: bool = False,
        step: float = 0.5,
        window: Optional[str] = None,
        max_memory: Optional[str] = None,
        postprocess: bool = True,
        convention: str = "brats",
    ) -> Prediction:
        """Segments one case from the given modalities (any non-empty subset).

        Images are ``[x, y, z]`` arrays on one grid or nibabel images. The grid is ``affine``
        (4 × 4, voxel → mm), or ``spacing`` (x, y, z mm; axis-aligned), or else the affine of
        the first nibabel image. Preprocessing (crop, z-score, resampling to the model's
        spacing), the inference plan (``window``: sliding, whole or auto, None for
        ``a2fseg predict``'s default; ``max_memory`` such as ``"4G"``), the mirroring (``tta``: off, 8 or axes such as ``"xy"``), ``step`` and
        the post-processing are those of ``a2fseg predict``. The GIL is released while it
        computes; Ctrl-C stops it between network passes (KeyboardInterrupt).

        Raises ValueError for bad input, with the command line's messages.
        """
        given = {k: v for k, v in zip(("t1", "t1c", "t2", "flair"), (t1, t1c, t2, flair))}
        given = {k: v for k, v in given.items() if v is not None}
        arrays = {k: _image_array(k, v) for k, v in given.items()}
        mat = _affine(given, affine, spacing)
        out = self._native.predict(
            arrays.get("t1"),
            arrays.get("t1c"),
            arrays.get("t2"),
            arrays.get("flair"),
            mat,
            **_settings(step, tta, window, max_memory, probabilities, attention, postprocess),
            convention=convention,
        )
        return Prediction(
            labels=out["labels"],
            probabilities=out["probabilities"],
            attention=out["attention"],
            affine=mat,
            subset=out["subset"],
            plan=out["plan"],
        )

    def predict_files(
        self,
        t1: Optional[Union[str, "os.PathLike[str]"]] = None,
        t1c: Optional[Union[str, "os.PathLike[str]"]] = None,
        t2: Optional[Union[str, "os.PathLike[str]"]] = None,
        flair: Optional[Union[str, "os.PathLike[str]"]] = None,
        *,
        output: Union[str, "os.PathLike[str]"],
        input: Optional[Union[str, "os.PathLike[str]"]] = None,
        split: Optional[Union[str, "os.PathLike[str]"]] = None,
        part: str = "test",
        subset: Optional[str] = None,
        tta: str = "off",
        probabilities: bool = False,
        attention: bool = False,
        step: float = 0.5,
        window: Optional[str] = None,
        max_memory: Optional[str] = None,
        postprocess: bool = True,
        convention: Optional[str] = None,
        strict_finite: bool = False,
    ) -> None:
        """``a2fseg predict`` with this model: NIfTI image files (``t1`` … ``flair``) to the
        label file ``output``, or a case or dataset folder (``input``, optionally the
        ``part`` of a ``split`` file) to the folder ``output``; probability and attention
        maps are written beside the labels when asked for, as the command line writes them.

        Raises FileNotFoundError for a missing input file, ValueError otherwise, with the
        command line's messages.
        """

        def path(p: Any) -> Optional[str]:
            return None if p is None else os.fspath(p)

        self._native.predict_files(
            path(t1),
            path(t1c),
            path(t2),
            path(flair),
            path(input),
            os.fspath(output),
            split=path(split),
            part=part,
            subset=subset,
            **_settings(step, tta, window, max_memory, probabilities, attention, postprocess),
            convention=convention,
            strict_finite=strict_finite,
        )

    def __repr__(self) -> str:
        cfg = self.config
        return f"a2fseg.Model({self.path!r}, arch={cfg.get('arch')!r})"
