"""The `vton` command: start the platform, run one stage, send try-ons, manage weights, benchmark, evaluate.

It talks to a running platform over HTTP (vton_cli.client) and starts processes; it holds no pipeline logic.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

from vton import weights_cli
from vton.runtime.options import SCHEDULERS, OptionError, validate_options
from vton.runtime.vocab import CATEGORIES, STAGES, Category
from vton_cli.client import DEFAULT_SERVER, ApiError, ApiKeyInfo, Batch, Job, VtonClient
from vton_cli.credentials import save_keys
from vton_cli.platform import PlatformConfig, run_up


def cmd_up(args: argparse.Namespace) -> int:
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


def _failed(command: str, server: str, exc: Exception) -> int:
    """One line on stderr for an error the API answered or the network raised; the exit code 1."""
    if isinstance(exc, ApiError):
        print(f"vton {command}: {exc}", file=sys.stderr)
    else:
        print(f"vton {command}: cannot reach {server}: {exc}", file=sys.stderr)
    return 1


def cmd_tryon(args: argparse.Namespace) -> int:
    person, garment = Path(args.person), Path(args.garment)
    for path in (person, garment):
        if not path.is_file():
            print(f"vton tryon: {path} does not exist", file=sys.stderr)
            return 2
    options = (args.seed, args.steps, args.guidance_scale, args.scheduler)
    try:  # the platform's own limits, checked before the photos are uploaded
        # without --category any valid one stands in (the API infers it): the other options are checked the same
        validate_options(args.category or CATEGORIES[0], *options)
    except OptionError as exc:
        print(f"vton tryon: --{exc.field.replace('_', '-')}: {exc}", file=sys.stderr)
        return 2
    try:
        with VtonClient(args.server) as client:
            job = client.submit(person, garment, args.category, *options)
            print(f"job {job.id} accepted", flush=True)
            job = client.wait(job.id, on_update=_print_progress)
            if args.artifacts:
                client.save_artifacts(job, Path(args.artifacts))
                print(f"artifacts and job.json written to {args.artifacts}")
            if job.status != "succeeded":
                print(f"vton tryon: the job failed: {job.error}", file=sys.stderr)
                return 1
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_bytes(client.download(job.result_url))
    except (ApiError, httpx.HTTPError, OSError) as exc:
        return _failed("tryon", args.server, exc)
    print(f"result written to {args.output}")
    return 0


_PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _PHOTO_SUFFIXES)


def _garments(folder: Path, default: str | None) -> list[tuple[Path, str | None]]:
    """The garment photos of GARMENTS_DIR (category: --category, else inferred) and of its subfolders named after
    a category (upper_body/, lower_body/, dresses/: that category)."""
    found = [(path, default) for path in _photos(folder)]
    for category in CATEGORIES:
        if (folder / category).is_dir():
            found += [(path, category) for path in _photos(folder / category)]
    return found


def _result_path(out: Path, batch: Batch, garment: int, person: int) -> Path:
    """OUT_DIR/<garment name>/<person name>.png, the names as the batch has them (without extension)."""
    garment_name = Path(batch.garments[garment]["name"]).with_suffix("")
    return out / garment_name / Path(batch.people[person]["name"]).with_suffix(".png").name


def cmd_batch(args: argparse.Namespace) -> int:
    """`vton batch PEOPLE_DIR GARMENTS_DIR -o OUT_DIR`: every garment on every person, with a progress bar; the
    results and the manifest (JSON and CSV) downloaded into OUT_DIR."""
    from tqdm import tqdm

    people_dir, garments_dir, out = Path(args.people), Path(args.garments), Path(args.output)
    for folder in (people_dir, garments_dir):
        if not folder.is_dir():
            print(f"vton batch: {folder} is not a folder", file=sys.stderr)
            return 2
    people, garments = _photos(people_dir), _garments(garments_dir, args.category)
    if not people or not garments:
        empty = people_dir if not people else garments_dir
        print(f"vton batch: no photos (.png, .jpg, .webp) in {empty}", file=sys.stderr)
        return 2
    try:
        with VtonClient(args.server) as client:
            batch_id = client.submit_batch(
                people,
                [path for path, _ in garments],
                [category for _, category in garments],
                seed=args.seed,
                steps=args.steps,
                guidance_scale=args.guidance_scale,
            )
            print(f"batch {batch_id}: {len(garments)} garments x {len(people)} people", flush=True)
            with tqdm(total=len(garments) * len(people), unit="try-on", file=sys.stdout) as bar:

                def progress(batch: Batch) -> None:
                    bar.update(batch.ended - bar.n)
                    bar.set_postfix(
                        succeeded=batch.counts.get("succeeded", 0), failed=batch.counts.get("failed", 0)
                    )

                batch = client.wait_batch(batch_id, on_update=progress, timeout=args.timeout)
            out.mkdir(parents=True, exist_ok=True)
            for job in batch.jobs:
                if job.result_url:
                    path = _result_path(out, batch, job.garment, job.person)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(client.download(job.result_url))
            (out / "manifest.json").write_bytes(client.download(batch.manifest_url))
            (out / "manifest.csv").write_bytes(client.download(batch.manifest_csv_url))
    except (ApiError, httpx.HTTPError, OSError, TimeoutError) as exc:
        return _failed("batch", args.server, exc)
    failed = batch.counts.get("failed", 0)
    print(
        f"{batch.total - failed} of {batch.total} try-ons written to {out}, with manifest.json and manifest.csv"
    )
    if failed:
        print(
            f"vton batch: {failed} try-ons failed: their errors are in {out / 'manifest.csv'}",
            file=sys.stderr,
        )
        return 1
    return 0


def _key_line(key: ApiKeyInfo) -> str:
    state = f"revoked {key.revoked_at[:19]}" if key.revoked_at else "active"
    used = key.last_used_at[:19] if key.last_used_at else "never"
    return f"{key.id:<14}{key.tenant:<20}{state:<30}{used:<21}{key.name}"


def cmd_keys(args: argparse.Namespace) -> int:
    """`vton keys create|list|revoke`: through the platform's admin routes, with its admin key."""
    try:
        with VtonClient(args.server) as client:
            if args.keys_command == "create":
                key = client.create_key(args.tenant, args.name, args.rate, args.burst)
                print(f"API key {key.key}")
                print(
                    f"  id {key.id}, tenant {key.tenant}: shown this once, the platform keeps only its hash"
                )
                print(f"  the tenant's webhook signing secret: {key.webhook_secret}")
                if args.save:
                    print(f"  stored for the CLI in {save_keys(args.server, api_key=key.key)}")
            elif args.keys_command == "list":
                keys = client.list_keys(args.tenant)
                print(f"{'id':<14}{'tenant':<20}{'state':<30}{'last used':<21}name")
                for key in keys:
                    print(_key_line(key))
            else:
                key = client.revoke_key(args.key_id)
                print(f"API key {key.id} of tenant {key.tenant} revoked at {key.revoked_at[:19]}")
    except (ApiError, httpx.HTTPError, OSError) as exc:
        return _failed(f"keys {args.keys_command}", args.server, exc)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.category:
        from vton_cli.bench_category import main as bench_category_main

        return bench_category_main(args)
    from vton_cli.bench import main as bench_main

    return bench_main(args)


def cmd_train(args: argparse.Namespace) -> int:
    from training.cli import run

    return run(args)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.data:
        from training.eval.cli import run

        return run(args)
    if not args.dataset:
        print("vton eval: give DATASET (VITON-HD's test layout) or --data DIR", file=sys.stderr)
        return 2
    from vton_cli.evaluate import main as eval_main

    return eval_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vton", description="Virtual try-on platform")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole platform on this machine")
    defaults = PlatformConfig()
    up.add_argument(
        "--port", type=int, default=defaults.http_port, help="the API's port (default %(default)s)"
    )
    up.add_argument("--data-dir", help="jobs database, S3 data and logs (default ~/.local/share/vton)")
    up.add_argument(
        "--backend", action="append", metavar="STAGE=NAME", help="a stage's backend (default auto)"
    )
    up.add_argument("--grpc-base-port", type=int, default=defaults.grpc_base_port)
    up.add_argument("--metrics-base-port", type=int, default=defaults.metrics_base_port)
    up.add_argument("--s3-port", type=int, default=defaults.s3_port)
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run one service (settings from VTON_* environment variables)")
    serve.add_argument("stage", choices=[*STAGES, "orchestrator"])
    serve.set_defaults(func=cmd_serve)

    tryon = sub.add_parser("tryon", help="send a try-on to a running platform")
    tryon.add_argument("person")
    tryon.add_argument("garment")
    tryon.add_argument("--category", choices=CATEGORIES, help="default: inferred from the garment photo")
    tryon.add_argument("-o", "--output", required=True, help="where to write the result (PNG)")
    tryon.add_argument("--server", default=DEFAULT_SERVER)
    tryon.add_argument("--artifacts", help="a folder for every stage's artifact and the job's JSON")
    tryon.add_argument("--seed", type=int)
    tryon.add_argument("--steps", type=int)
    tryon.add_argument("--guidance-scale", type=float)
    tryon.add_argument(
        "--scheduler", help=f"the denoising scheduler: {' | '.join(SCHEDULERS)} (default: the backend's)"
    )
    tryon.set_defaults(func=cmd_tryon)

    batch = sub.add_parser(
        "batch",
        help="try every garment on every person through a running platform; results and manifest into OUT_DIR",
    )
    batch.add_argument("people", help="a folder of person photos")
    batch.add_argument(
        "garments",
        help="a folder of garment photos; those in its subfolders upper_body/, lower_body/, dresses/ have that "
        "category",
    )
    batch.add_argument("-o", "--output", required=True, help="folder for the results and the manifest")
    batch.add_argument(
        "--category", choices=CATEGORIES, help="of the garments outside category folders (default: inferred)"
    )
    batch.add_argument("--server", default=DEFAULT_SERVER)
    batch.add_argument("--seed", type=int)
    batch.add_argument("--steps", type=int)
    batch.add_argument("--guidance-scale", type=float)
    batch.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait for the batch (default 3600)"
    )
    batch.set_defaults(func=cmd_batch)

    keys = sub.add_parser(
        "keys",
        help="create, list or revoke API keys (with the admin key: VTON_ADMIN_KEY or what `vton up` stored)",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create", help="a new key of a tenant (the tenant is created with its first key)"
    )
    create.add_argument("--tenant", required=True, help="lowercase letters, digits and '-'")
    create.add_argument("--name", default="", help="what the key is for")
    create.add_argument("--rate", type=float, help="requests per second (default: the platform's)")
    create.add_argument("--burst", type=int, help="requests at once (default: the platform's)")
    create.add_argument("--save", action="store_true", help="use this key for the CLI's requests to --server")
    listing = keys_sub.add_parser("list", help="every key (never the keys themselves)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key: its requests answer 403 from now on")
    revoke.add_argument("key_id", help="the id `vton keys list` shows (the key reads vton_<id>_...)")
    for parser_ in (create, listing, revoke):
        parser_.add_argument("--server", default=DEFAULT_SERVER)
    keys.set_defaults(func=cmd_keys)

    w = sub.add_parser("weights", help="list, pull or verify the backends' weight files")
    weights_cli.add_arguments(w)
    w.set_defaults(func=weights_cli.run)

    bench = sub.add_parser("bench", help="benchmark the stages on this machine; results under bench/")
    bench.add_argument("--image", help="a person photo (default: an example photo)")
    bench.add_argument("--garment", help="a garment photo (default: an example photo)")
    bench.add_argument("--repeat", type=int, default=5)
    bench.add_argument("--out", default="bench", help="folder for the results (JSON and Markdown)")
    bench.add_argument(
        "--category",
        action="store_true",
        help="instead: the accuracy of the garment-category classifier on the labelled garment photos",
    )
    bench.set_defaults(func=cmd_bench)

    ev = sub.add_parser("eval", help="SSIM on paired samples and a contact sheet, through a running platform")
    ev.add_argument(
        "dataset", nargs="?", help="VITON-HD's test layout (image/, cloth/), or a folder of person photos"
    )
    ev.add_argument("--unpaired", help="a folder of garment photos to try on every person (no SSIM)")
    ev.add_argument("--category", default=Category.UPPER_BODY, choices=CATEGORIES)
    ev.add_argument("--server", default=DEFAULT_SERVER)
    ev.add_argument("--out", default="out/eval", help="folder for the report and the contact sheet")
    ev.set_defaults(func=cmd_eval)
    from training.eval.cli import add_arguments as add_dataset_eval_arguments

    add_dataset_eval_arguments(ev)

    from training.data.cli import register as register_dataset

    register_dataset(sub)

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
