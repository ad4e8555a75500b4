"""`python -m orchestrator`: serve the API with uvicorn on VTON_HTTP_HOST:VTON_HTTP_PORT (127.0.0.1:8080)."""

from __future__ import annotations

import sys

import uvicorn

from orchestrator.app import create_app
from orchestrator.settings import SettingsError, load_settings
from vton.runtime.logs import configure


def main() -> int:
    configure("orchestrator")
    try:
        settings = load_settings()
        app = create_app(settings)
    except SettingsError as exc:  # a start-up mistake: the message names each variable, no trace
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    # log_config=None: uvicorn keeps the JSON log handler configured above instead of installing its own.
    # timeout_graceful_shutdown: a client waiting on ?wait=true must not hold a SIGTERM up; its job is in the
    # database and is handed back to the queue by the shutdown of the workers.
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
