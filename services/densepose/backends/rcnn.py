"""What both DensePose R50-FPN backends share: detectron2's input size, the precision they run in, and the IUV
of the largest person found.

`R50FPNBackend` is the backend less its two own steps: `load` (the network from its folder) and `detect` (the
detections on a photo: boxes in the photo's pixels, scores and chart outputs). detectron2's reference
implementation and its TorchScript export (`detectron2.py`, `torchscript.py`) are the two subclasses.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from PIL import Image

from services.densepose.iuv import ChartOutput, chart_to_image_iuv, largest_box_index
from services.densepose.types import DensePoseEstimate
from vton.runtime.errors import NoPersonFound
from vton.runtime.images import require_rgb

MIN_SIZE_TEST = 800  # detectron2's INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST defaults, used by the config
MAX_SIZE_TEST = 1333
MIN_SCORE = 0.8  # DensePose's apply_net default for showing detections


def resized_shape(height: int, width: int, short: int = MIN_SIZE_TEST, longest: int = MAX_SIZE_TEST):
    """detectron2's ResizeShortestEdge.get_output_shape: (new_h, new_w)."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > longest:
        factor = longest / max(new_h, new_w)
        new_h, new_w = new_h * factor, new_w * factor
    return int(new_h + 0.5), int(new_w + 0.5)


def detector_input(image_rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 RGB photo -> the float32 BGR [3, h, w] tensor DefaultPredictor feeds the model, and (h, w)."""
    new_h, new_w = resized_shape(*image_rgb.shape[:2])
    bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
    resized = np.asarray(Image.fromarray(bgr).resize((new_w, new_h), Image.BILINEAR))
    return torch.from_numpy(resized.astype(np.float32).transpose(2, 0, 1)), (new_h, new_w)


def precision_context(device: torch.device, dtype: torch.dtype):
    """The network runs in float32; another dtype runs it under autocast (the graph's ops go through it)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def largest_person(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    charts: ChartOutput,
    photo_hw: tuple[int, int],
    min_score: float,
) -> DensePoseEstimate:
    """The IUV of the largest non-empty detection scoring at least `min_score`, from every detection's boxes (XYXY
    in the photo's pixels), scores and chart outputs (detections first); NoPersonFound where there is none."""
    boxes, scores = boxes.float(), scores.float()
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    keep = torch.nonzero(nonempty & (scores >= min_score)).flatten()
    if keep.numel() == 0:
        raise NoPersonFound("no person found")
    best = int(keep[largest_box_index(boxes[keep])])
    chart = ChartOutput(charts.coarse_segm[best], charts.fine_segm[best], charts.u[best], charts.v[best])
    return DensePoseEstimate(
        iuv=chart_to_image_iuv(chart, boxes[best], photo_hw), people_detected=int(keep.numel())
    )


class R50FPNBackend(ABC):
    """DensePose R50-FPN s1x behind the stage's DensePoseBackend protocol; a subclass says how it loads and runs."""

    def __init__(
        self,
        folder: Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        min_score: float = MIN_SCORE,
    ):
        self.device = torch.device(device)
        self.dtype = dtype
        self.min_score = min_score
        self.network = self.load(Path(folder))  # last: loading may depend on the settings above

    @classmethod
    def from_pretrained(cls, folder: Path, **settings: Any) -> Self:
        """The name every backend is loaded by; `settings` are the constructor's."""
        return cls(folder, **settings)

    @abstractmethod
    def load(self, folder: Path) -> Any:
        """The network from the backend's folder; WeightsMissing naming what is missing or unusable."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, ChartOutput]:
        """The people in a uint8 RGB photo: boxes XYXY in its pixels [N, 4], scores [N], their chart outputs."""

    @torch.inference_mode()
    def estimate(self, image: np.ndarray) -> DensePoseEstimate:
        """uint8 RGB [H, W, 3] -> IUV float32 [3, H, W] of the largest person."""
        require_rgb(image)
        with precision_context(self.device, self.dtype):
            boxes, scores, charts = self.detect(image)
        return largest_person(boxes, scores, charts, image.shape[:2], self.min_score)
