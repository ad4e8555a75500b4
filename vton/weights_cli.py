"""`vton weights list|pull|push|verify`: the one command a stage image carries besides its service.

The chart's init container and compose's `weights` service run it in a stage image, which holds `vton/` but not
the `vton` CLI (vton_cli), as `python -m vton.weights_cli pull NAME... --from s3://BUCKET/PREFIX`; on a developer's
machine `vton weights ...` is this same command. `push NAME --to s3://BUCKET/PREFIX` puts a folder (published files
pulled here, or what `vton train` exported: `--models-dir OUT/weights`) where `pull --from` finds it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vton.runtime import weights
from vton.runtime.errors import WeightsMissing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "pull", "push", "verify"])
    parser.add_argument("names", nargs="*", help="backend names (default: all; push names them)")
    parser.add_argument("--from", dest="from_s3", metavar="s3://BUCKET/PREFIX", help="pull from S3 instead")
    parser.add_argument("--to", dest="to_s3", metavar="s3://BUCKET/PREFIX", help="where push uploads")
    parser.add_argument("--models-dir", help="default $VTON_MODELS_DIR or ~/.cache/vton/models")


def origin(name: str, root: Path | None) -> str:
    """Where the backend's present files come from: `published`, `self-trained` (provenance.json) or, for files no
    one publishes and no provenance describes, the manifest's source kind (`export`, `train`)."""
    if weights.read_provenance(weights.backend_dir(name, root)) is not None:
        return weights.SELF_TRAINED
    kinds = {f.source.partition(":")[0] for f in weights.load_manifest()[name].files}
    unpublished = sorted(kinds & {"export", "train"})
    return ", ".join(unpublished) or "published"


def list_line(name: str, root: Path | None) -> str:
    entry = weights.load_manifest()[name]
    try:
        missing = weights.missing_files(name, root)
        licence = weights.weights_license(name, root)
    except WeightsMissing as exc:  # a malformed provenance.json or SHA256SUMS: say so on the backend's line
        return f"{name:<30} {entry.stage:<18} BAD: {exc}"
    if not entry.files and not missing:
        state = "present"
    elif missing:
        state = f"missing {len(missing)} of {len(weights.expected_files(name, weights.backend_dir(name, root)))} files"
    else:
        state = f"present, {origin(name, root)}"
    return f"{name:<30} {entry.stage:<18} {licence:<32} {state:<26} {entry.description}"


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
    if args.action == "push" and not (args.names and args.to_s3):
        print("vton weights push: name the backends and give --to s3://BUCKET/PREFIX", file=sys.stderr)
        return 2
    root = Path(args.models_dir) if args.models_dir else None
    print(f"models directory: {weights.models_dir() if root is None else root}")
    status = 0
    for name in names:
        if args.action == "list":
            print(list_line(name, root))
        elif args.action in ("pull", "push"):
            print(f"{name}:")
            try:
                if args.action == "pull":
                    weights.pull(name, root, from_s3=args.from_s3)
                else:
                    weights.push(name, args.to_s3, root)
            except Exception as exc:  # noqa: BLE001 - report each backend's failure and go on
                print(f"  failed: {exc}", file=sys.stderr)
                status = 1
        else:
            try:
                bad = weights.verify(name, root)
            except WeightsMissing as exc:
                bad = [str(exc)]
            print(f"{name:<32} {'ok' if not bad else 'BAD: ' + ', '.join(bad)}")
            status |= bool(bad)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vton weights", description="list, pull, push or verify the backends' weight files"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
