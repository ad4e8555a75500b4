"""The pose backends by name, best first (`auto` takes the first whose weights are present)."""

from vton.runtime.backend import BackendInfo, BackendSpec, torch_dtype
from vton.runtime.weights import require


def _openpose(device: str, precision: str):
    from services.pose.backends.openpose import OpenPoseBackend

    return OpenPoseBackend.from_pretrained(
        require("openpose-body"), device=device, dtype=torch_dtype(precision)
    )


def _blazepose(device: str, precision: str):
    from services.pose.backends.blazepose import BlazePoseBackend

    return BlazePoseBackend.from_pretrained(require("blazepose-litert"))


BACKENDS = {
    "openpose-body": BackendSpec(
        BackendInfo("openpose-body", "1.0", "full", "OpenPose-Academic-NonCommercial"), _openpose
    ),
    "blazepose-litert": BackendSpec(
        BackendInfo("blazepose-litert", "1.0", "embedded", "Apache-2.0"), _blazepose
    ),
}
