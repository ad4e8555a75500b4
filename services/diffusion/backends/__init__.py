"""The try-on backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import BackendInfo, BackendSpec, torch_dtype
from vton.runtime.weights import require


def _ladi(dataset: str):
    def load(device: str, precision: str):
        folder = require(f"ladi-vton-{dataset}")
        from services.diffusion.backends.ladi_vton import LadiVtonBackend

        return LadiVtonBackend.from_pretrained(
            folder, device=device, dtype=torch_dtype(precision), dataset=dataset
        )

    return load


def _composite(device: str, precision: str):
    from services.diffusion.backends.composite import CompositeBackend

    return CompositeBackend()


BACKENDS = {
    "ladi-vton-dresscode": BackendSpec(
        BackendInfo("ladi-vton-dresscode", "1.0", "full", "CC-BY-NC-4.0"), _ladi("dresscode")
    ),
    "ladi-vton-vitonhd": BackendSpec(
        BackendInfo("ladi-vton-vitonhd", "1.0", "full", "CC-BY-NC-4.0"), _ladi("vitonhd")
    ),
    "composite": BackendSpec(BackendInfo("composite", "1.0", "embedded", "Apache-2.0"), _composite),
}
