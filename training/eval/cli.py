"""`vton eval --data DIR --split test`: the arguments it adds to `vton eval`, and the call into the evaluation.

Imported when the `vton` parser is built, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import sys

from training.data.cli import add_backend_arguments


def _size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit():
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 512x384, got {text!r}")
    return int(height), int(width)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "dataset evaluation (--data)",
        "paired metrics over a split of a VITON-HD, Dress Code or CP-VTON dataset: SSIM, PSNR, L1 (whole photo "
        "and garment region), warp IoU; LPIPS, FID and KID when their weights are given",
    )
    group.add_argument("--data", metavar="DIR", help="a dataset in any of the three layouts")
    group.add_argument("--split", default="test", choices=["train", "test"])
    group.add_argument("--size", type=_size, metavar="HxW", help="working size (default: the layout's own)")
    group.add_argument("--limit", type=int, help="evaluate the first N pairs only")
    group.add_argument(
        "--lpips-weights",
        nargs="+",
        metavar="FILE",
        help="torchvision alexnet-owt-7be5be79.pth and LPIPS v0.1 alex.pth",
    )
    group.add_argument(
        "--inception", metavar="FILE", help="TorchScript inception-2015-12-05.pt for FID and KID"
    )
    group.add_argument(
        "--in-process", action="store_true", help="run the warp and diffusion backends here, no platform"
    )
    add_backend_arguments(
        group,
        "with --in-process: warp=NAME, diffusion=NAME",
        "torch device with --in-process and for the metric networks",
    )
    group.add_argument(
        "--steps", type=int, default=0, help="with --in-process: denoising steps (0: the backend's)"
    )


def run(args: argparse.Namespace) -> int:
    from training.data.cli import parse_backends
    from training.data.dataset import DatasetError, open_dataset
    from training.data.formats import FormatError
    from training.eval.evaluate import InProcessChain, PlatformChain, evaluate, load_metrics
    from vton.runtime.errors import WeightsMissing
    from vton_cli.client import ApiError

    backends = parse_backends(args.backend, ("warp", "diffusion"))
    if backends is None:
        print("vton eval: --backend takes warp=NAME or diffusion=NAME", file=sys.stderr)
        return 2
    try:
        dataset = open_dataset(args.data, args.split, "paired", args.size)
        metrics = load_metrics(args.lpips_weights, args.inception, args.device)
        if args.in_process:
            chain = InProcessChain(
                backends.get("warp", "auto"),
                backends.get("diffusion", "auto"),
                args.device,
                args.precision,
                steps=args.steps,
            )
        else:
            chain = PlatformChain(args.server)
        report = evaluate(dataset, chain, args.out, metrics, args.limit)
    except (DatasetError, FormatError, WeightsMissing, ValueError) as exc:
        print(f"vton eval: {exc}", file=sys.stderr)
        return 2
    except (ApiError, OSError) as exc:
        print(f"vton eval: {exc}", file=sys.stderr)
        return 1
    print(summary(report))
    print(f"report.json and contact_sheet.png in {args.out}")
    return 0


def summary(report: dict) -> str:
    lines = [
        f"{report['layout']} {report['split']}, {report['pairs']} pairs at {report['size'][0]}x{report['size'][1]}, backends {report['backends']}"
    ]
    for name, value in report["metrics"].items():
        lines.append(f"  {name:<20} {'-' if value is None else f'{value:.4f}'}")
    for name, reason in report["skipped"].items():
        lines.append(f"  {name:<20} skipped: {reason}")
    return "\n".join(lines)
