"""A small wrapper around the LiteRT (TFLite) interpreter: named outputs, a fixed thread count, one call at a time.

LiteRT interpreters are not safe to call from several threads at once, and a stage service runs requests on a
thread pool, so every call goes through a lock. Two threads per interpreter keeps a request fast without starving
the other stages that share the machine.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from vton.runtime.errors import WeightsMissing

DEFAULT_THREADS = 2


class TfliteModel:
    """One `.tflite` network: `model(x)` returns its outputs by name, each without the batch axis."""

    def __init__(self, path: Path, num_threads: int = DEFAULT_THREADS):
        from ai_edge_litert.interpreter import Interpreter

        if not Path(path).is_file():
            raise WeightsMissing(f"{path} is missing; get it with `vton weights pull blazepose-litert`")
        self.path = Path(path)
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        (inp,) = self._interpreter.get_input_details()
        self._input_index = inp["index"]
        self.input_shape = tuple(int(s) for s in inp["shape"])  # (1, H, W, C)
        self._outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._lock = threading.Lock()

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the network takes."""
        return self.input_shape[1], self.input_shape[2]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(x, dtype=np.float32).reshape(self.input_shape)
        with self._lock:
            self._interpreter.set_tensor(self._input_index, batch)
            self._interpreter.invoke()
            return {
                name: self._interpreter.get_tensor(index)[0].copy() for name, index in self._outputs.items()
            }
