"""DensePose R50-FPN through detectron2 and its DensePose project (the reference implementation).

Files (the backend's folder, as the manifest names them): `model_final_162be9.pkl` (the model zoo's
densepose_rcnn_R_50_FPN_s1x weights) and the two config files of DensePose's `configs/` folder,
`densepose_rcnn_R_50_FPN_s1x.yaml` and the `Base-DensePose-RCNN-FPN.yaml` it inherits from (an installed
`densepose` package does not carry its configs).

detectron2 is not on the package index: the GPU image builds it and the DensePose project from source
(`pip install 'git+https://github.com/facebookresearch/detectron2.git'` and
`pip install 'git+https://github.com/facebookresearch/detectron2.git#subdirectory=projects/DensePose'`).
Where it is absent, building this backend raises `Detectron2Missing` (a WeightsMissing, so `auto` moves on to
the TorchScript export or the geometric backend, and an ImportError).

This module also makes the TorchScript export that `densepose-r50-fpn-torchscript` loads with torch alone:

    python -m services.densepose.backends.detectron2 export \
        --folder ~/.cache/vton/models/densepose-r50-fpn \
        --output ~/.cache/vton/models/densepose-r50-fpn-torchscript/densepose_rcnn_R_50_FPN_s1x.ts \
        --sample-image person.jpg --device cuda

It traces `DensePoseExportAdapter` (backbone, RPN, box head with the 0.8 score threshold, DensePose head and
chart predictor) on the sample photo and checks that the traced module reproduces the eager outputs. The
exported I/O contract is written down in `services/densepose/backends/torchscript.py`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from services.densepose.backends.rcnn import MIN_SCORE, R50FPNBackend, detector_input
from services.densepose.iuv import ChartOutput
from vton.runtime.checkpoints import WeightsMismatch, refuse_mismatch
from vton.runtime.errors import NoPersonFound, WeightsMissing

WEIGHTS_FILE = "model_final_162be9.pkl"
CONFIG_FILE = "densepose_rcnn_R_50_FPN_s1x.yaml"
BASE_CONFIG_FILE = "Base-DensePose-RCNN-FPN.yaml"
FILES = (WEIGHTS_FILE, CONFIG_FILE, BASE_CONFIG_FILE)

INSTALL_HINT = (
    "the densepose-r50-fpn backend needs detectron2 and its DensePose project, which are not importable here. "
    "detectron2 is not on the package index: the GPU image installs it from source with "
    "`pip install 'git+https://github.com/facebookresearch/detectron2.git'` and "
    "`pip install 'git+https://github.com/facebookresearch/detectron2.git#subdirectory=projects/DensePose'`. "
    "Without it, use the densepose-r50-fpn-torchscript backend (torch only) or the geometric one."
)


class Detectron2Missing(WeightsMissing, ImportError):
    """detectron2 or densepose is not installed (a WeightsMissing so that `auto` tries the next backend)."""


def import_densepose():
    """detectron2's config, predictor and model builders plus DensePose's config hook, or Detectron2Missing."""
    try:
        from densepose import add_densepose_config
        from detectron2.config import get_cfg
        from detectron2.engine import DefaultPredictor
    except ImportError as exc:
        raise Detectron2Missing(f"{INSTALL_HINT} ({exc})") from exc
    return get_cfg, DefaultPredictor, add_densepose_config


def load_weights(model: nn.Module, path: Path) -> None:
    """`path` into `model` through detectron2's checkpointer (its .pkl reading and the name matching it applies to
    model-zoo files), refusing what detectron2 itself only logs: keys of the model the file leaves unset (they
    would keep random values), keys of the file the model does not use, tensors of another shape."""
    from detectron2.checkpoint import DetectionCheckpointer

    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(checkpointer._load_file(str(path)))
    refuse_mismatch(path, "DensePose R50-FPN", incompatible.missing_keys, incompatible.unexpected_keys)
    if incompatible.incorrect_shapes:
        shapes = [f"{key}: file {tuple(a)}, model {tuple(b)}" for key, a, b in incompatible.incorrect_shapes]
        raise WeightsMismatch(f"{path} does not fit DensePose R50-FPN: tensors of another shape {shapes}")


def build_config(folder: Path, device: str, min_score: float):
    get_cfg, _, add_densepose_config = import_densepose()
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise WeightsMissing(
            f"densepose-r50-fpn needs {', '.join(missing)} in {folder}; "
            "get them with `vton weights pull densepose-r50-fpn`"
        )
    cfg = get_cfg()
    add_densepose_config(cfg)
    cfg.merge_from_file(str(folder / CONFIG_FILE))  # its _BASE_ resolves beside it
    cfg.MODEL.WEIGHTS = str(folder / WEIGHTS_FILE)
    cfg.MODEL.DEVICE = str(device)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min_score
    cfg.freeze()
    return cfg


class DensePoseDetectron2(R50FPNBackend):
    """detectron2's DefaultPredictor with the DensePose R50-FPN s1x model; IUV of the largest person."""

    def load(self, folder: Path) -> Any:
        _, default_predictor, _ = import_densepose()
        cfg = build_config(folder, str(self.device), self.min_score)
        # the predictor would load the weights itself, logging and ignoring what does not fit: load them here
        without_weights = cfg.clone()
        without_weights.defrost()
        without_weights.MODEL.WEIGHTS = ""
        predictor = default_predictor(without_weights)
        load_weights(predictor.model, Path(cfg.MODEL.WEIGHTS))
        return predictor

    def detect(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, ChartOutput]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # DefaultPredictor takes BGR, like cv2.imread
        instances = self.network(bgr)["instances"].to("cpu")
        if len(instances) == 0 or not instances.has("pred_densepose"):
            raise NoPersonFound("no person found")
        dp = instances.pred_densepose
        charts = ChartOutput(dp.coarse_segm, dp.fine_segm, dp.u, dp.v)
        return instances.pred_boxes.tensor, instances.scores, charts


class DensePoseExportAdapter(nn.Module):
    """GeneralizedRCNN + DensePose head with the tensor-only I/O of the TorchScript contract.

    It runs the same steps as `model.inference` (DensePoseROIHeads._forward_densepose included: the optional
    decoder over the FPN levels, the pooler, head and chart predictor) but calls the DensePose branch directly:
    DensePose's own `densepose_inference` slices outputs per image with Python ints, which tracing would
    freeze to the sample photo's detection count.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        from detectron2.export.torchscript_patch import patch_builtin_len

        with torch.no_grad(), patch_builtin_len():
            model = self.model
            images = model.preprocess_image([{"image": image}])
            features = model.backbone(images.tensor)
            proposals, _ = model.proposal_generator(images, features, None)
            heads = model.roi_heads
            detections = heads._forward_box(features, proposals)[0]
            levels = [features[f] for f in heads.in_features]
            if heads.use_decoder:  # DensePose's default: FPN levels merged into one map before pooling
                levels = [heads.decoder(levels)]
            pooled = heads.densepose_pooler(levels, [detections.pred_boxes])
            charts = heads.densepose_predictor(heads.densepose_head(pooled))
            return (
                detections.pred_boxes.tensor,
                detections.scores,
                charts.coarse_segm,
                charts.fine_segm,
                charts.u,
                charts.v,
            )


def export_torchscript(
    folder: Path, output: Path, sample_image: Path, device: str = "cuda", min_score: float = MIN_SCORE
) -> Path:
    """Trace the DensePose R50-FPN of `folder` into `output` (needs detectron2; see the module docstring)."""
    from detectron2.modeling import build_model
    from PIL import Image

    cfg = build_config(Path(folder), device, min_score)
    model = build_model(cfg)
    load_weights(model, Path(cfg.MODEL.WEIGHTS))
    adapter = DensePoseExportAdapter(model.eval()).eval()
    image, _ = detector_input(np.asarray(Image.open(sample_image).convert("RGB")))
    image = image.to(device)
    with torch.no_grad():
        traced = torch.jit.trace(adapter, (image,), check_trace=False)
        expected, got = adapter(image), traced(image)
    for name, a, b in zip(
        ("boxes", "scores", "coarse_segm", "fine_segm", "u", "v"), expected, got, strict=True
    ):
        if a.shape != b.shape or not torch.allclose(a, b, atol=1e-3, rtol=1e-3):
            raise RuntimeError(f"traced module differs from detectron2 on {name}")
    if expected[0].shape[0] == 0:
        raise RuntimeError(f"no person detected in {sample_image}: trace on a photo with a person")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(output))
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the TorchScript export of DensePose R50-FPN")
    export.add_argument("--folder", type=Path, required=True, help="folder with the densepose-r50-fpn files")
    export.add_argument("--output", type=Path, required=True, help="the .ts file to write")
    export.add_argument("--sample-image", type=Path, required=True, help="a photo with a person, for tracing")
    export.add_argument(
        "--device", default="cuda", help="device the export will run on (baked in by tracing)"
    )
    export.add_argument("--min-score", type=float, default=MIN_SCORE, help="detection score threshold")
    args = parser.parse_args(argv)
    path = export_torchscript(args.folder, args.output, args.sample_image, args.device, args.min_score)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
