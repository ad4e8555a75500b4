"""The warp backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import BackendInfo, BackendSpec, torch_dtype
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
    "ladi-vton-warp-dresscode": BackendSpec(
        BackendInfo("ladi-vton-warp-dresscode", "1.0", "full", "CC-BY-NC-4.0"), _ladi("dresscode")
    ),
    "ladi-vton-warp-vitonhd": BackendSpec(
        BackendInfo("ladi-vton-warp-vitonhd", "1.0", "full", "CC-BY-NC-4.0"), _ladi("vitonhd")
    ),
    "keypoint-tps": BackendSpec(BackendInfo("keypoint-tps", "1.0", "embedded", "Apache-2.0"), _tps),
}
