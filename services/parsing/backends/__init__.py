"""The parsing backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import GPU_SHARED, backend_spec, torch_dtype
from vton.runtime.weights import require


def _schp(dataset: str):
    def load(device: str, precision: str):
        folder = require(f"schp-{dataset}")
        from services.parsing.backends.schp import SCHPBackend

        return SCHPBackend.from_pretrained(
            folder, dataset=dataset, device=device, dtype=torch_dtype(precision)
        )

    return load


def _geometric(device: str, precision: str):
    folder = require("blazepose-litert")
    from services.parsing.backends.geometric import GeometricParser

    return GeometricParser.from_pretrained(folder)


BACKENDS = {
    "schp-lip": backend_spec("schp-lip", "full", _schp("lip"), capabilities=GPU_SHARED),
    "schp-atr": backend_spec("schp-atr", "full", _schp("atr"), auto=False, capabilities=GPU_SHARED),
    "schp-pascal": backend_spec("schp-pascal", "full", _schp("pascal"), auto=False, capabilities=GPU_SHARED),
    "geometric": backend_spec("geometric", "embedded", _geometric),
}
