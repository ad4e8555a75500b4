"""The parsing backends by name, best first (`auto` takes the first whose weights are present).

Each loader checks the weights before importing its module, so a missing file costs no heavy import."""

from vton.runtime.backend import Capabilities, backend_spec, torch_dtype
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


# BlazePose's LiteRT interpreters take one call at a time, each behind its own lock, and the rest of a call
# works on its own arrays: two calls overlap (one in the detector, one in the landmarker), more only queue.
GEOMETRIC = Capabilities(thread_safe=True, max_concurrency=2, label_sets=(LabelSet.LIP,))

BACKENDS = {
    # SCHP makes the label set of the dataset its checkpoint was trained on; the stage serves LIP only.
    "schp-lip": backend_spec(
        "schp-lip", "full", _schp("lip"), capabilities=Capabilities(label_sets=(LabelSet.LIP,))
    ),
    "schp-atr": backend_spec(
        "schp-atr", "full", _schp("atr"), auto=False, capabilities=Capabilities(label_sets=(LabelSet.ATR,))
    ),
    "schp-pascal": backend_spec(
        "schp-pascal",
        "full",
        _schp("pascal"),
        auto=False,
        capabilities=Capabilities(label_sets=(LabelSet.PASCAL,)),
    ),
    "geometric": backend_spec("geometric", "embedded", _geometric, capabilities=GEOMETRIC),
}
