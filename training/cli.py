"""`vton train MODULE --data DIR --out DIR [--config FILE] [--resume]`: train or fine-tune one module.

This module only defines the arguments and runs the loop; heavy imports wait until a run starts. Under several
processes (`accelerate launch -m training ...` or `torchrun -m training ...`) every process runs the same command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.trainers import TRAINERS

MODULES = tuple(TRAINERS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", choices=MODULES, help="the network to train")
    parser.add_argument(
        "--data",
        required=True,
        help="a dataset folder (VITON-HD, Dress Code or CP-VTON layout) or s3://BUCKET/PREFIX",
    )
    parser.add_argument("--out", required=True, help="folder for checkpoints, logs and the exported weights")
    parser.add_argument("--config", help="a YAML or JSON file of settings (docs/training.md)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint under --out")
    parser.add_argument("--steps", type=int, help="overrides the config's steps")
    parser.add_argument("--batch-size", type=int, help="overrides the config's batch_size (per process)")
    parser.add_argument("--models-dir", help="where the official files are (default $VTON_MODELS_DIR)")
    parser.add_argument(
        "--push", metavar="s3://BUCKET/PREFIX", help="upload the exported weights there at the end"
    )


def run(args: argparse.Namespace) -> int:
    from training.config import ConfigError, TrainConfig
    from vton.runtime.errors import WeightsMissing

    try:
        config = TrainConfig.from_file(args.config) if args.config else TrainConfig()
        config = config.with_overrides(
            steps=args.steps, batch_size=args.batch_size, models_dir=args.models_dir
        )
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from training.datasource import open_training_set
        from training.loop import WEIGHTS, train
        from training.trainers import make_trainer

        trainer = make_trainer(args.module, config)
        dataset = open_training_set(args.data, config, out)
        train(trainer, dataset, out, resume=args.resume, data=args.data)
        if args.push and _is_main_process():
            from vton.runtime.weights import push

            print(f"uploading {trainer.backend} to {args.push}")
            push(trainer.backend, args.push, root=out / WEIGHTS)
    except (ConfigError, WeightsMissing, FileNotFoundError, ValueError) as exc:
        print(f"vton train: {exc}", file=sys.stderr)
        return 2
    print(
        f"done: weights under {out / 'weights'}, logs under {out / 'logs'} (tensorboard --logdir {out / 'logs'})"
    )
    return 0


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vton train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
