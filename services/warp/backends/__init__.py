"""The warp backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import CPU_SHARED, GPU_SHARED, backend_spec, torch_dtype
from vton.runtime.weights import require


def _ladi(dataset: str):
    def load(device: str, precision: str):
        folder = require(f"ladi-vton-warp-{dataset}")
        from services.warp.backends.ladi_vton import LadiVtonWarpBackend

        return LadiVtonWarpBackend.from_pretrained(folder, device=device, dtype=torch_dtype(precision))

    return load


def _tps(device: str, precision: str):
    from services.warp.backends.keypoint_tps import KeypointTPSWarp

    return KeypointTPSWarp()


BACKENDS = {
    "ladi-vton-warp-dresscode": backend_spec(
        "ladi-vton-warp-dresscode", "full", _ladi("dresscode"), capabilities=GPU_SHARED
    ),
    "ladi-vton-warp-vitonhd": backend_spec(
        "ladi-vton-warp-vitonhd", "full", _ladi("vitonhd"), capabilities=GPU_SHARED
    ),
    "keypoint-tps": backend_spec("keypoint-tps", "embedded", _tps, capabilities=CPU_SHARED),
}
