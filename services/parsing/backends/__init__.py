"""The parsing backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import BackendInfo, BackendSpec, torch_dtype
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
    "schp-lip": BackendSpec(BackendInfo("schp-lip", "1.0", "full", "MIT"), _schp("lip")),
    "schp-atr": BackendSpec(BackendInfo("schp-atr", "1.0", "full", "MIT"), _schp("atr"), auto=False),
    "schp-pascal": BackendSpec(BackendInfo("schp-pascal", "1.0", "full", "MIT"), _schp("pascal"), auto=False),
    "geometric": BackendSpec(BackendInfo("geometric", "1.0", "embedded", "Apache-2.0"), _geometric),
}
