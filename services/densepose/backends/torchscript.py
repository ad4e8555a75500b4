"""DensePose R50-FPN from a TorchScript export: torch alone at run time, no detectron2.

The export (`densepose_rcnn_R_50_FPN_s1x.ts`) is produced once, on a machine with detectron2 and its DensePose
project, from the official `densepose_rcnn_R_50_FPN_s1x` config and `model_final_162be9.pkl`:

    python -m services.densepose.backends.detectron2 export \
        --folder ~/.cache/vton/models/densepose-r50-fpn \
        --output ~/.cache/vton/models/densepose-r50-fpn-torchscript/densepose_rcnn_R_50_FPN_s1x.ts \
        --sample-image person.jpg --device cuda

(see `services/densepose/backends/detectron2.py`: it traces the detector plus the DensePose head). Tracing
bakes the device in: export with `--device cuda` for GPU serving and `--device cpu` for CPU serving (the
module is loaded as exported, never moved: its graph keeps some constants on the CPU on purpose). The graph
calls torchvision's `nms` and `roi_align` operators (detectron2's ROIAlign and NMS are torchvision's), so
torchvision must be importable where the export is loaded; it is imported, when present, before loading.

The exported module's I/O contract (what this backend relies on, and all it relies on):

    forward(image: Tensor[3, H, W] float32, BGR channel order, values 0..255)
        -> (boxes, scores, coarse_segm, fine_segm, u, v)

    `image` is the photo already resized as detectron2's DefaultPredictor does (ResizeShortestEdge: shorter
    side 800, longer side at most 1333, PIL bilinear); the module normalises and pads it itself.
      boxes        float32 [N, 4]  person boxes XYXY in `image`'s pixels, after score threshold (0.8), NMS, top 100
      scores       float32 [N]     detection scores
      coarse_segm  float32 [N, 2, S, S]   person/background logits on the box grid (S = 112)
      fine_segm    float32 [N, 25, S, S]  background + 24 part logits
      u, v         float32 [N, 25, S, S]  chart coordinates per part

This backend resizes the photo, runs the module, maps boxes back to the photo (scale + clip, dropping empty
ones, as detectron2's `detector_postprocess`), keeps detections scoring at least `min_score`, and turns the
largest person's chart outputs into the image's IUV with `services.densepose.iuv`.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch

from services.densepose.backends.rcnn import R50FPNBackend, detector_input
from services.densepose.iuv import ChartOutput
from vton.runtime.errors import WeightsMissing

EXPORT_FILE = "densepose_rcnn_R_50_FPN_s1x.ts"


def boxes_to_photo(boxes: torch.Tensor, input_hw: tuple[int, int], photo_hw: tuple[int, int]) -> torch.Tensor:
    """Boxes on the resized input -> on the photo, clipped to it (detectron2's detector_postprocess)."""
    scale_x, scale_y = photo_hw[1] / input_hw[1], photo_hw[0] / input_hw[0]
    out = boxes.float() * torch.tensor([scale_x, scale_y, scale_x, scale_y], device=boxes.device)
    out[:, 0::2] = out[:, 0::2].clamp(0, photo_hw[1])
    out[:, 1::2] = out[:, 1::2].clamp(0, photo_hw[0])
    return out


class DensePoseTorchScript(R50FPNBackend):
    """DensePose R50-FPN chart estimates from the TorchScript export described in this module's docstring."""

    def load(self, folder: Path) -> torch.jit.ScriptModule:
        path = folder / EXPORT_FILE
        if not path.is_file():
            raise WeightsMissing(
                f"densepose-r50-fpn-torchscript needs {EXPORT_FILE} in {folder}: export it on a machine with "
                "detectron2 (`python -m services.densepose.backends.detectron2 export --help`) or get it with "
                "`vton weights pull densepose-r50-fpn-torchscript --from s3://BUCKET/PREFIX`"
            )
        with contextlib.suppress(ImportError):
            import torchvision  # noqa: F401 - registers torchvision::nms / roi_align that the export calls
        try:
            with (
                warnings.catch_warnings()
            ):  # TorchScript is the export's format on purpose (detectron2 makes it)
                warnings.simplefilter("ignore", DeprecationWarning)
                # no map_location: a traced detectron2 graph mixes CPU constants (image sizes) with the
                # device's; moving every constant to one device breaks it, so the export runs where it was made
                module = torch.jit.load(str(path))
        except Exception as exc:
            raise WeightsMissing(
                f"{path} could not be loaded as a TorchScript module ({exc}); an export made by tracing "
                "detectron2 needs torchvision's operators (install torchvision matching torch) and the device "
                "it was exported for"
            ) from exc
        exported_on = next((p.device for p in module.parameters()), None)
        device = self.device.type
        if exported_on is not None and exported_on.type != device:
            raise WeightsMissing(
                f"{path} was exported for {exported_on.type}, not {device}: export it again with `--device {device}`"
            )
        return module.eval()

    def detect(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, ChartOutput]:
        tensor, input_hw = detector_input(image)
        boxes, scores, coarse, fine, u, v = (t.float() for t in self.network(tensor.to(self.device)))
        return boxes_to_photo(boxes, input_hw, image.shape[:2]), scores, ChartOutput(coarse, fine, u, v)
