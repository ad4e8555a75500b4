"""The DensePose backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import Capabilities, backend_spec, torch_dtype
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


# BlazePose's LiteRT interpreters take one call at a time, each behind its own lock, and the rest of a call
# works on its own arrays: two calls overlap (one in the detector, one in the landmarker), more only queue.
GEOMETRIC = Capabilities(thread_safe=True, max_concurrency=2)

BACKENDS = {
    "densepose-r50-fpn": backend_spec("densepose-r50-fpn", "full", _detectron2),
    "densepose-r50-fpn-torchscript": backend_spec("densepose-r50-fpn-torchscript", "full", _torchscript),
    "geometric": backend_spec("geometric", "embedded", _geometric, capabilities=GEOMETRIC),
}
