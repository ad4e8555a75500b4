"""One process of the distributed test (run by torchrun): trains the pose trainer and exports its weights.

torchrun --nproc_per_node N tests/training/distributed_worker.py MODELS_DIR OUT BATCH_SIZE STEPS
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import SyntheticTryOn  # noqa: E402

from training.config import TrainConfig  # noqa: E402
from training.loop import train  # noqa: E402
from training.trainers import make_trainer  # noqa: E402


def main(models_dir: str, out: str, batch_size: str, steps: str) -> None:
    config = TrainConfig(
        steps=int(steps),
        batch_size=int(batch_size),
        learning_rate=1e-3,
        mixed_precision="no",
        device="cpu",
        models_dir=models_dir,
        height=64,
        width=48,
        checkpoint_every=int(steps),
    )
    train(make_trainer("pose", config), SyntheticTryOn(8, 64, 48), Path(out), log=lambda *_: None)


if __name__ == "__main__":
    main(*sys.argv[1:])
