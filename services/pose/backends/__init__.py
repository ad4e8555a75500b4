"""The pose backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import CPU_SHARED, GPU_SHARED, backend_spec, torch_dtype
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
    "openpose-body": backend_spec("openpose-body", "full", _openpose, capabilities=GPU_SHARED),
    "blazepose-litert": backend_spec("blazepose-litert", "embedded", _blazepose, capabilities=CPU_SHARED),
}
