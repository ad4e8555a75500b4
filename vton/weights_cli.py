"""`vton weights list|pull|verify`: the one command a stage image carries besides its service.

The chart's init container and compose's `weights` service run it in a stage image, which holds `vton/` but not
the `vton` CLI (vton_cli), as `python -m vton.weights_cli pull NAME... --from s3://BUCKET/PREFIX`; on a developer's
machine `vton weights ...` is this same command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vton.runtime import weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "pull", "verify"])
    parser.add_argument("names", nargs="*", help="backend names (default: all)")
    parser.add_argument("--from", dest="from_s3", metavar="s3://BUCKET/PREFIX", help="pull from S3 instead")
    parser.add_argument("--models-dir", help="default $VTON_MODELS_DIR or ~/.cache/vton/models")


def run(args: argparse.Namespace) -> int:
    manifest = weights.load_manifest()
    names = args.names or list(manifest)
    unknown = [n for n in names if n not in manifest]
    if unknown:
        print(
            f"vton weights: unknown backend(s) {', '.join(unknown)}; known: {', '.join(manifest)}",
            file=sys.stderr,
        )
        return 2
    root = Path(args.models_dir) if args.models_dir else None
    print(f"models directory: {weights.models_dir() if root is None else root}")
    status = 0
    for name in names:
        entry = manifest[name]
        if args.action == "list":
            missing = weights.missing_files(name, root)
            state = "present" if not missing else f"missing {len(missing)} of {len(entry.files)} files"
            print(f"{name:<30} {entry.stage:<18} {entry.license:<32} {state:<24} {entry.description}")
        elif args.action == "pull":
            print(f"{name}:")
            try:
                weights.pull(name, root, from_s3=args.from_s3)
            except Exception as exc:  # noqa: BLE001 - report each backend's failure and go on
                print(f"  failed: {exc}", file=sys.stderr)
                status = 1
        else:
            bad = weights.verify(name, root)
            print(f"{name:<32} {'ok' if not bad else 'BAD: ' + ', '.join(bad)}")
            status |= bool(bad)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vton weights", description="list, pull or verify the backends' weight files"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
