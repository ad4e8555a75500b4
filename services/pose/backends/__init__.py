"""The pose backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import BackendInfo, BackendSpec, torch_dtype
from vton.runtime.weights import require


def _openpose(device: str, precision: str):
    folder = require("openpose-body")
    from services.pose.backends.openpose import OpenPoseBackend

    return OpenPoseBackend.from_pretrained(folder, device=device, dtype=torch_dtype(precision))


def _blazepose(device: str, precision: str):
    folder = require("blazepose-litert")
    from services.pose.backends.blazepose import BlazePoseBackend

    return BlazePoseBackend.from_pretrained(folder)


BACKENDS = {
    "openpose-body": BackendSpec(
        BackendInfo("openpose-body", "1.0", "full", "OpenPose-Academic-NonCommercial"), _openpose
    ),
    "blazepose-litert": BackendSpec(
        BackendInfo("blazepose-litert", "1.0", "embedded", "Apache-2.0"), _blazepose
    ),
}
