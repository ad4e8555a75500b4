"""The try-on backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import CPU_SHARED, GPU_SHARED, backend_spec, torch_dtype
from vton.runtime.weights import require


def _ladi(dataset: str):
    def load(device: str, precision: str):
        folder = require(f"ladi-vton-{dataset}")
        from services.diffusion.backends.ladi_vton import LadiVtonBackend

        return LadiVtonBackend.from_pretrained(
            folder, device=device, dtype=torch_dtype(precision), dataset=dataset
        )

    return load


def _tryon_lite(device: str, precision: str):
    folder = require("tryon-lite")
    from services.diffusion.backends.tryon_lite import TryOnLiteBackend

    return TryOnLiteBackend.from_pretrained(folder, device=device, dtype=torch_dtype(precision))


def _composite(device: str, precision: str):
    from services.diffusion.backends.composite import CompositeBackend

    return CompositeBackend()


BACKENDS = {
    "ladi-vton-dresscode": backend_spec(
        "ladi-vton-dresscode", "full", _ladi("dresscode"), capabilities=GPU_SHARED
    ),
    "ladi-vton-vitonhd": backend_spec("ladi-vton-vitonhd", "full", _ladi("vitonhd"), capabilities=GPU_SHARED),
    "tryon-lite": backend_spec("tryon-lite", "full", _tryon_lite, capabilities=GPU_SHARED),
    "composite": backend_spec("composite", "embedded", _composite, capabilities=CPU_SHARED),
}
