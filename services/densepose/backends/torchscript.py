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
from PIL import Image

from services.densepose.iuv import ChartOutput, chart_to_image_iuv, largest_box_index
from services.densepose.types import DensePoseEstimate
from vton.runtime.errors import InvalidInput, NoPersonFound, WeightsMissing

EXPORT_FILE = "densepose_rcnn_R_50_FPN_s1x.ts"
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


def boxes_to_photo(boxes: torch.Tensor, input_hw: tuple[int, int], photo_hw: tuple[int, int]) -> torch.Tensor:
    """Boxes on the resized input -> on the photo, clipped to it (detectron2's detector_postprocess)."""
    scale_x, scale_y = photo_hw[1] / input_hw[1], photo_hw[0] / input_hw[0]
    out = boxes.float() * torch.tensor([scale_x, scale_y, scale_x, scale_y], device=boxes.device)
    out[:, 0::2] = out[:, 0::2].clamp(0, photo_hw[1])
    out[:, 1::2] = out[:, 1::2].clamp(0, photo_hw[0])
    return out


def estimate_from_outputs(
    outputs: tuple[torch.Tensor, ...], input_hw: tuple[int, int], photo_hw: tuple[int, int], min_score: float
) -> DensePoseEstimate:
    """The exported module's six outputs -> the IUV of the largest confidently detected person."""
    boxes, scores, coarse, fine, u, v = (t.float() for t in outputs)
    boxes = boxes_to_photo(boxes, input_hw, photo_hw)
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    keep = torch.nonzero(nonempty & (scores >= min_score)).flatten()
    if keep.numel() == 0:
        raise NoPersonFound("no person found")
    best = int(keep[largest_box_index(boxes[keep])])
    chart = ChartOutput(coarse[best], fine[best], u[best], v[best])
    return DensePoseEstimate(
        iuv=chart_to_image_iuv(chart, boxes[best], photo_hw), people_detected=int(keep.numel())
    )


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInput("image must be a uint8 RGB array [H, W, 3]")


def precision_context(device: torch.device, dtype: torch.dtype):
    """The export runs in float32; another dtype runs it under autocast (the graph's ops go through it)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class DensePoseTorchScript:
    """DensePose R50-FPN chart estimates from the TorchScript export described in this module's docstring."""

    def __init__(
        self,
        module: torch.jit.ScriptModule,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        min_score: float = MIN_SCORE,
    ):
        self.module = module.eval()
        self.device = torch.device(device)
        self.dtype = dtype
        self.min_score = min_score

    @classmethod
    def from_pretrained(
        cls,
        folder: Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        min_score: float = MIN_SCORE,
    ) -> DensePoseTorchScript:
        path = Path(folder) / EXPORT_FILE
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
        if exported_on is not None and exported_on.type != torch.device(device).type:
            raise WeightsMissing(
                f"{path} was exported for {exported_on.type}, not {torch.device(device).type}: export it again "
                f"with `--device {torch.device(device).type}`"
            )
        return cls(module, device, dtype, min_score)

    @torch.inference_mode()
    def estimate(self, image: np.ndarray) -> DensePoseEstimate:
        """uint8 RGB [H, W, 3] -> IUV float32 [3, H, W] of the largest person."""
        check_image(image)
        tensor, input_hw = detector_input(image)
        with precision_context(self.device, self.dtype):
            outputs = self.module(tensor.to(self.device))
        return estimate_from_outputs(tuple(outputs), input_hw, image.shape[:2], self.min_score)
