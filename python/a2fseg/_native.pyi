"""Type stubs of ``a2fseg._native``, the compiled module the package wraps (use
``a2fseg.Model`` and ``a2fseg.metrics`` instead of calling it directly)."""

from typing import Any, Dict, List, Optional

import numpy as np
import numpy.typing as npt

class Model:
    @staticmethod
    def load(path: str, device: str = "cpu") -> Model: ...
    def config_json(self) -> str: ...
    def summary(self) -> str: ...
    def has_attention(self) -> bool: ...
    def predict(
        self,
        t1: Optional[npt.NDArray[np.float32]],
        t1c: Optional[npt.NDArray[np.float32]],
        t2: Optional[npt.NDArray[np.float32]],
        flair: Optional[npt.NDArray[np.float32]],
        affine: npt.NDArray[np.float64],
        *,
        step: float,
        tta: str,
        window: Optional[str],
        max_memory: Optional[str],
        probabilities: bool,
        attention: bool,
        postprocess: bool,
        convention: str,
    ) -> Dict[str, Any]: ...
    def predict_files(
        self,
        t1: Optional[str],
        t1c: Optional[str],
        t2: Optional[str],
        flair: Optional[str],
        input: Optional[str],
        output: str,
        *,
        split: Optional[str],
        part: str,
        subset: Optional[str],
        step: float,
        tta: str,
        window: Optional[str],
        max_memory: Optional[str],
        probabilities: bool,
        attention: bool,
        postprocess: bool,
        convention: Optional[str],
        strict_finite: bool,
    ) -> None: ...

def dice(pred: npt.NDArray[np.bool_], gt: npt.NDArray[np.bool_]) -> float: ...
def hd95(
    pred: npt.NDArray[np.bool_], gt: npt.NDArray[np.bool_], spacing: List[float], penalty: float
) -> float: ...
def evaluate_case(
    pred: npt.NDArray[np.float32],
    gt: npt.NDArray[np.float32],
    spacing: List[float],
    *,
    convention: Optional[str],
    hd95_penalty: float,
    et_postprocess: Optional[int],
) -> str: ...
def default_hd95_penalty() -> float: ...
