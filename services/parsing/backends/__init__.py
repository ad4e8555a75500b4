"""The parsing backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from dataclasses import replace

from vton.runtime.backend import CPU_SHARED, GPU_SHARED, Capabilities, backend_spec, torch_dtype
from vton.runtime.vocab import LabelSet
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


def _labels(base: Capabilities, label_set: LabelSet) -> Capabilities:
    return replace(base, label_sets=(label_set,))


# SCHP makes the label set of the dataset its checkpoint was trained on; the stage serves LIP only.
BACKENDS = {
    "schp-lip": backend_spec(
        "schp-lip", "full", _schp("lip"), capabilities=_labels(GPU_SHARED, LabelSet.LIP)
    ),
    "schp-atr": backend_spec(
        "schp-atr", "full", _schp("atr"), auto=False, capabilities=_labels(GPU_SHARED, LabelSet.ATR)
    ),
    "schp-pascal": backend_spec(
        "schp-pascal", "full", _schp("pascal"), auto=False, capabilities=_labels(GPU_SHARED, LabelSet.PASCAL)
    ),
    "geometric": backend_spec(
        "geometric", "embedded", _geometric, capabilities=_labels(CPU_SHARED, LabelSet.LIP)
    ),
}
