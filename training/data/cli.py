"""`vton dataset build|check`: the arguments, and the calls into the builder and the checker.

Imported when the `vton` parser is built, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import sys

STAGES_ANNOTATING = ("pose", "densepose", "parsing")


def parse_backends(items: list[str] | None, stages: tuple[str, ...]) -> dict[str, str] | None:
    """`--backend STAGE=NAME` options as {stage: name}; None when one names another stage or no backend."""
    backends = {}
    for item in items or []:
        stage, _, name = item.partition("=")
        if stage not in stages or not name:
            return None
        backends[stage] = name
    return backends


def add_backend_arguments(parser: argparse._ActionsContainer, backend_help: str, device_help: str) -> None:
    """`--backend STAGE=NAME` (repeatable, read by parse_backends), `--device` and `--precision`: how the
    stages' backends run in this process."""
    parser.add_argument("--backend", action="append", metavar="STAGE=NAME", help=backend_help)
    parser.add_argument("--device", default="cpu", help=device_help)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])


def register(sub: argparse._SubParsersAction) -> None:
    """Add `dataset` with its `build` and `check` commands to the `vton` parser's subcommands."""
    dataset = sub.add_parser("dataset", help="build a training dataset from photos, or check one")
    commands = dataset.add_subparsers(dest="dataset_command", required=True)

    build = commands.add_parser(
        "build",
        help="annotate person and garment photos with the platform's stages and write a dataset",
        description="People and garments are matched by file name (a garment of the same name anywhere under "
        "GARMENTS_DIR; its folder name, e.g. upper/lower/dresses, gives the category) or by --pairs. A rerun "
        "with the same OUT_DIR resumes an interrupted build.",
    )
    build.add_argument("people_dir", metavar="PEOPLE_DIR")
    build.add_argument("garments_dir", metavar="GARMENTS_DIR")
    build.add_argument("out_dir", metavar="OUT_DIR")
    build.add_argument("--layout", required=True, choices=["vitonhd", "dresscode"])
    build.add_argument("--split", default="train", choices=["train", "test"])
    build.add_argument(
        "--pairs", metavar="FILE", help="'PERSON GARMENT [CATEGORY]' a line, paths relative to the folders"
    )
    build.add_argument(
        "--category",
        default="upper_body",
        choices=["upper_body", "lower_body", "dresses"],
        help="when neither --pairs nor a folder name says (default upper_body)",
    )
    build.add_argument(
        "--server", metavar="URL", help="annotate through a running platform instead of in this process"
    )
    add_backend_arguments(
        build,
        "a stage's backend in this process (default auto)",
        "torch device for the full backends (cpu, cuda)",
    )
    build.set_defaults(func=cmd_build)

    check = commands.add_parser("check", help="validate a dataset in VITON-HD, Dress Code or CP-VTON layout")
    check.add_argument("dir", metavar="DIR")
    check.set_defaults(func=cmd_check)


def cmd_build(args: argparse.Namespace) -> int:
    from training.data.build import BuildError, build_dataset
    from vton.runtime.errors import WeightsMissing

    backends = parse_backends(args.backend, STAGES_ANNOTATING)
    if backends is None:
        print(
            f"vton dataset build: --backend takes STAGE=NAME with STAGE one of {', '.join(STAGES_ANNOTATING)}",
            file=sys.stderr,
        )
        return 2
    try:
        report = build_dataset(
            args.people_dir,
            args.garments_dir,
            args.out_dir,
            args.layout,
            args.split,
            pairs_file=args.pairs,
            category=args.category,
            server=args.server,
            backends=backends,
            device=args.device,
            precision=args.precision,
        )
    except (BuildError, WeightsMissing, OSError) as exc:
        print(f"vton dataset build: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nvton dataset build: interrupted; run the same command again to resume in {args.out_dir}",
            file=sys.stderr,
        )
        return 130
    print(report.summary())
    print(f"report in {args.out_dir}/build_report.json")
    return 0 if report.written else 1


def cmd_check(args: argparse.Namespace) -> int:
    from training.data.check import check_dataset
    from training.data.dataset import DatasetError

    try:
        report = check_dataset(args.dir)
    except DatasetError as exc:
        print(f"vton dataset check: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(problem)
    if report.ok:
        print(f"{args.dir}: {report.layout} layout, {report.pairs} pairs, no problems")
        return 0
    print(
        f"{args.dir}: {report.layout} layout, {report.pairs} pairs, {len(report.problems)} problems",
        file=sys.stderr,
    )
    return 1
