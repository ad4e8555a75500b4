"""The `vton` command: start the platform, run one stage, send try-ons, manage weights, benchmark, evaluate.

It talks to a running platform over HTTP (vton.client) and starts processes; it holds no pipeline logic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vton.client import DEFAULT_SERVER, ApiError, Job, VtonClient
from vton.runtime.config import STAGES

CATEGORIES = ("upper_body", "lower_body", "dresses")


def cmd_up(args: argparse.Namespace) -> int:
    from vton.platform import PlatformConfig, run_up

    backends = {}
    for item in args.backend or []:
        stage, _, name = item.partition("=")
        if stage not in STAGES or not name:
            print(
                f"vton up: --backend takes STAGE=NAME with STAGE one of {', '.join(STAGES)}", file=sys.stderr
            )
            return 2
        backends[stage] = name
    config = PlatformConfig(
        http_port=args.port,
        grpc_base_port=args.grpc_base_port,
        metrics_base_port=args.metrics_base_port,
        s3_port=args.s3_port,
        backends=backends,
    )
    if args.data_dir:
        config.data_dir = Path(args.data_dir)
    return run_up(config)


def cmd_serve(args: argparse.Namespace) -> int:
    module = "orchestrator" if args.stage == "orchestrator" else f"services.{args.stage}"
    os.execv(sys.executable, [sys.executable, "-m", module])
    return 0  # not reached


def _print_progress(job: Job) -> None:
    parts = []
    for stage in job.stages:
        mark = {"succeeded": "done", "running": "running", "failed": "FAILED"}.get(stage.status, stage.status)
        extra = f" {stage.seconds:.2f}s" if stage.seconds is not None else ""
        parts.append(f"{stage.name}: {mark}{extra}")
    print(f"[{job.status}] " + ", ".join(parts), flush=True)


def cmd_tryon(args: argparse.Namespace) -> int:
    person, garment = Path(args.person), Path(args.garment)
    for path in (person, garment):
        if not path.is_file():
            print(f"vton tryon: {path} does not exist", file=sys.stderr)
            return 2
    try:
        with VtonClient(args.server) as client:
            job = client.submit(person, garment, args.category, args.seed, args.steps, args.guidance_scale)
            print(f"job {job.id} accepted", flush=True)
            job = client.wait(job.id, on_update=_print_progress)
            if args.artifacts:
                out_dir = Path(args.artifacts)
                out_dir.mkdir(parents=True, exist_ok=True)
                for url in job.artifacts.values():
                    (out_dir / Path(url.split("?")[0]).name).write_bytes(client.download(url))
                (out_dir / "job.json").write_text(json.dumps(job.raw, indent=2))
                print(f"artifacts and job.json written to {out_dir}")
            if job.status != "succeeded":
                print(f"vton tryon: the job failed: {job.error}", file=sys.stderr)
                return 1
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_bytes(client.download(job.result_url))
    except ApiError as exc:
        print(f"vton tryon: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"vton tryon: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 1
    print(f"result written to {args.output}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from vton.runtime import weights

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


def cmd_bench(args: argparse.Namespace) -> int:
    from vton.bench import main as bench_main

    return bench_main(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from vton.evaluate import main as eval_main

    return eval_main(args)


def cmd_train(args: argparse.Namespace) -> int:
    from training.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vton", description="Virtual try-on platform")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole platform on this machine")
    up.add_argument("--port", type=int, default=8080, help="the API's port (default 8080)")
    up.add_argument("--data-dir", help="jobs database, S3 data and logs (default ~/.local/share/vton)")
    up.add_argument(
        "--backend", action="append", metavar="STAGE=NAME", help="a stage's backend (default auto)"
    )
    up.add_argument("--grpc-base-port", type=int, default=50051)
    up.add_argument("--metrics-base-port", type=int, default=9101)
    up.add_argument("--s3-port", type=int, default=8333)
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run one service (settings from VTON_* environment variables)")
    serve.add_argument("stage", choices=[*STAGES, "orchestrator"])
    serve.set_defaults(func=cmd_serve)

    tryon = sub.add_parser("tryon", help="send a try-on to a running platform")
    tryon.add_argument("person")
    tryon.add_argument("garment")
    tryon.add_argument("--category", required=True, choices=CATEGORIES)
    tryon.add_argument("-o", "--output", required=True, help="where to write the result (PNG)")
    tryon.add_argument("--server", default=DEFAULT_SERVER)
    tryon.add_argument("--artifacts", help="a folder for every stage's artifact and the job's JSON")
    tryon.add_argument("--seed", type=int)
    tryon.add_argument("--steps", type=int)
    tryon.add_argument("--guidance-scale", type=float)
    tryon.set_defaults(func=cmd_tryon)

    w = sub.add_parser("weights", help="list, pull or verify the backends' weight files")
    w.add_argument("action", choices=["list", "pull", "verify"])
    w.add_argument("names", nargs="*", help="backend names (default: all)")
    w.add_argument("--from", dest="from_s3", metavar="s3://BUCKET/PREFIX", help="pull from S3 instead")
    w.add_argument("--models-dir", help="default $VTON_MODELS_DIR or ~/.cache/vton/models")
    w.set_defaults(func=cmd_weights)

    bench = sub.add_parser("bench", help="benchmark the stages on this machine; results under bench/")
    bench.add_argument("--image", help="a person photo (default: an example photo)")
    bench.add_argument("--garment", help="a garment photo (default: an example photo)")
    bench.add_argument("--repeat", type=int, default=5)
    bench.add_argument("--out", default="bench", help="folder for the results (JSON and Markdown)")
    bench.set_defaults(func=cmd_bench)

    ev = sub.add_parser("eval", help="SSIM on paired samples and a contact sheet, through a running platform")
    ev.add_argument("dataset", help="VITON-HD's test layout (image/, cloth/), or a folder of person photos")
    ev.add_argument("--unpaired", help="a folder of garment photos to try on every person (no SSIM)")
    ev.add_argument("--category", default="upper_body", choices=CATEGORIES)
    ev.add_argument("--server", default=DEFAULT_SERVER)
    ev.add_argument("--out", default="out/eval", help="folder for the report and the contact sheet")
    ev.set_defaults(func=cmd_eval)

    from training.cli import add_arguments as add_train_arguments

    tr = sub.add_parser("train", help="train or fine-tune a module; weights in the service files")
    add_train_arguments(tr)
    tr.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
