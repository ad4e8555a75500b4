"""The DensePose backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import CPU_SHARED, GPU_SHARED, backend_spec, torch_dtype
from vton.runtime.weights import require


def _detectron2(device: str, precision: str):
    folder = require("densepose-r50-fpn")
    from services.densepose.backends.detectron2 import DensePoseDetectron2

    return DensePoseDetectron2.from_pretrained(folder, device=device, dtype=torch_dtype(precision))


def _torchscript(device: str, precision: str):
    folder = require("densepose-r50-fpn-torchscript")
    from services.densepose.backends.torchscript import DensePoseTorchScript

    return DensePoseTorchScript.from_pretrained(folder, device=device, dtype=torch_dtype(precision))


def _geometric(device: str, precision: str):
    folder = require("blazepose-litert")
    from services.densepose.backends.geometric import GeometricDensePose

    return GeometricDensePose.from_pretrained(folder)


BACKENDS = {
    # the default capabilities (one call at a time): detectron2's DefaultPredictor is not documented thread-safe
    "densepose-r50-fpn": backend_spec("densepose-r50-fpn", "full", _detectron2),
    "densepose-r50-fpn-torchscript": backend_spec(
        "densepose-r50-fpn-torchscript", "full", _torchscript, capabilities=GPU_SHARED
    ),
    "geometric": backend_spec("geometric", "embedded", _geometric, capabilities=CPU_SHARED),
}
