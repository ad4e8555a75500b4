"""DensePose chart outputs of one detection -> the full-image IUV map (shared by both full backends).

A DensePose R-CNN chart predictor gives, per detected box, four maps on a fixed grid (112x112 for R50-FPN):
coarse segmentation (2 channels: background / person), fine segmentation (25 channels: background + 24 body
parts), and U and V (25 channels each, one chart coordinate per part). DensePose's converters
(`densepose/converters/segm_to_mask.py`, `chart_output_to_chart_result.py`) turn them into a per-pixel result
for the box, and we follow them exactly:
- the box (XYXY in image pixels) becomes integer XYWH by truncation, w and h at least 1;
- every map is resized to the box's h x w, bilinear with align_corners=False;
- the part label is the argmax of the fine segmentation where the coarse segmentation's argmax is the person
  (> 0), else 0;
- U and V of a pixel come from the channel of its part; background pixels keep 0.
The box result is pasted into an image-sized [3, H, W] float32 map (I, U, V), clipped to the image; U and V
are clamped to 0..1, the range DensePose quantises them to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ChartOutput:
    """One detection's chart predictor output, as DensePoseChartPredictorOutput holds it per instance."""

    coarse_segm: torch.Tensor  # [K, S, S], K = 2
    fine_segm: torch.Tensor  # [25, S, S]
    u: torch.Tensor  # [25, S, S]
    v: torch.Tensor  # [25, S, S]


def int_box_xywh(box_xyxy: torch.Tensor | np.ndarray | tuple) -> tuple[int, int, int, int]:
    """DensePose's `make_int_box` after XYXY -> XYWH: each of x, y, w, h truncated toward zero."""
    x0, y0, x1, y1 = (float(c) for c in box_xyxy)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def chart_to_box_iuv(chart: ChartOutput, box_xywh: tuple[int, int, int, int]) -> torch.Tensor:
    """Chart outputs of one box -> float32 [3, h, w] (part index as float, U, V) at the box's size."""
    _, _, w, h = box_xywh
    w, h = max(int(w), 1), max(int(h), 1)

    def resize(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t[None].float(), (h, w), mode="bilinear", align_corners=False)[0]

    person = resize(chart.coarse_segm).argmax(0) > 0
    labels = resize(chart.fine_segm).argmax(0) * person
    u_box, v_box = resize(chart.u), resize(chart.v)
    index = labels[None]
    u = torch.gather(u_box, 0, index)[0]
    v = torch.gather(v_box, 0, index)[0]
    iuv = torch.stack([labels.float(), u.clamp(0.0, 1.0), v.clamp(0.0, 1.0)])
    iuv[1:, labels == 0] = 0.0
    return iuv


def paste_box(
    iuv_box: torch.Tensor, box_xywh: tuple[int, int, int, int], image_hw: tuple[int, int]
) -> np.ndarray:
    """A box's [3, h, w] IUV into a zero [3, H, W] float32 image map, the part outside the image dropped."""
    height, width = image_hw
    out = np.zeros((3, height, width), np.float32)
    x, y = box_xywh[0], box_xywh[1]
    h, w = iuv_box.shape[1:]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 > x0 and y1 > y0:
        out[:, y0:y1, x0:x1] = iuv_box[:, y0 - y : y1 - y, x0 - x : x1 - x].cpu().numpy()
    return out


def chart_to_image_iuv(chart: ChartOutput, box_xyxy, image_hw: tuple[int, int]) -> np.ndarray:
    """One detection's chart outputs and XYXY box -> float32 [3, H, W] IUV of the whole image."""
    box = int_box_xywh(box_xyxy)
    return paste_box(chart_to_box_iuv(chart, box), box, image_hw)


def largest_box_index(boxes_xyxy: torch.Tensor) -> int:
    """The detection with the largest box area (the person the try-on is about)."""
    wh = (boxes_xyxy[:, 2:4] - boxes_xyxy[:, 0:2]).clamp(min=0)
    return int((wh[:, 0] * wh[:, 1]).argmax())
