"""The DensePose backends by name, best first (`auto` takes the first whose weights are present)."""

from vton.runtime.backend import BackendInfo, BackendSpec, torch_dtype
from vton.runtime.weights import require


def _detectron2(device: str, precision: str):
    from services.densepose.backends.detectron2 import DensePoseDetectron2

    return DensePoseDetectron2.from_pretrained(
        require("densepose-r50-fpn"), device=device, dtype=torch_dtype(precision)
    )


def _torchscript(device: str, precision: str):
    from services.densepose.backends.torchscript import DensePoseTorchScript

    return DensePoseTorchScript.from_pretrained(
        require("densepose-r50-fpn-torchscript"), device=device, dtype=torch_dtype(precision)
    )


def _geometric(device: str, precision: str):
    from services.densepose.backends.geometric import GeometricDensePose

    return GeometricDensePose.from_pretrained(require("blazepose-litert"))


BACKENDS = {
    "densepose-r50-fpn": BackendSpec(
        BackendInfo("densepose-r50-fpn", "1.0", "full", "Apache-2.0"), _detectron2
    ),
    "densepose-r50-fpn-torchscript": BackendSpec(
        BackendInfo("densepose-r50-fpn-torchscript", "1.0", "full", "Apache-2.0"), _torchscript
    ),
    "geometric": BackendSpec(BackendInfo("geometric", "1.0", "embedded", "Apache-2.0"), _geometric),
}
