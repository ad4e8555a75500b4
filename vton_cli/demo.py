"""`make demo`: start the platform, run one try-on of the example photos through the HTTP API and all five
services, write the result and every stage's artifact under out/demo/, stop the platform.

The example photos come from the MIT-licensed openvto wheel (see vton_cli.examples).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from vton.runtime.vocab import API_PORT, Category
from vton_cli.client import Job, VtonClient
from vton_cli.examples import fetch_examples
from vton_cli.platform import Platform, PlatformConfig

PERSON = "avatars/3.png"
GARMENT = "clothes/shirts/2_front.jpg"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--port", type=int, default=API_PORT)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    examples = fetch_examples()
    person, garment = examples / PERSON, examples / GARMENT
    shutil.copy(person, out / ("person" + person.suffix))
    shutil.copy(garment, out / ("garment" + garment.suffix))

    data_dir = Path(tempfile.mkdtemp(prefix="vton-demo-"))
    config = PlatformConfig(data_dir=data_dir, http_port=args.port)
    platform = Platform(config)
    print(f"demo: starting the platform (logs in {platform.logs_dir})", flush=True)
    started = time.perf_counter()
    try:
        with platform:
            print(
                f"demo: platform ready in {time.perf_counter() - started:.1f} s; sending {PERSON} + {GARMENT}",
                flush=True,
            )
            job, elapsed = _try_on(config.api_url, platform.api_key, person, garment, out)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print("demo: platform stopped", flush=True)
    if job.status != "succeeded":
        print(f"demo: the try-on failed: {job.error}", file=sys.stderr)
        return 1
    print(f"demo: try-on finished in {elapsed:.2f} s; stage times:")
    for stage in job.stages:
        print(
            f"  {stage.name:<14} {stage.seconds or 0:6.3f} s  backend {stage.backend} ({stage.backend_kind})"
        )
    print(f"demo: result {out / 'result.png'}, artifacts in {out / 'artifacts'}")
    return 0


def _try_on(api_url: str, api_key: str, person: Path, garment: Path, out: Path) -> tuple[Job, float]:
    """One try-on through the HTTP API; a finished job's result, artifacts and JSON are written under `out`."""
    with VtonClient(api_url, api_key=api_key) as client:
        t0 = time.perf_counter()
        job = client.submit(person, garment, Category.UPPER_BODY, seed=0)
        job = client.wait(
            job.id,
            on_update=lambda j: print(
                "  " + ", ".join(f"{s.name}: {s.status}" for s in j.stages), flush=True
            ),
        )
        elapsed = time.perf_counter() - t0
        if job.status == "succeeded":
            (out / "result.png").write_bytes(client.download(job.result_url))
            client.save_artifacts(job, out / "artifacts")
    return job, elapsed


if __name__ == "__main__":
    sys.exit(main())
