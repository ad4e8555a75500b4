"""`python -m orchestrator`: serve the API with uvicorn on VTON_HTTP_HOST:VTON_HTTP_PORT (127.0.0.1:8080)."""

from __future__ import annotations

import logging
import sys
import threading
from types import FrameType

import uvicorn

from orchestrator.app import create_app
from orchestrator.deps import AppContext
from orchestrator.settings import SettingsError, load_settings
from vton.runtime.logs import configure, log_event

log = logging.getLogger("vton.orchestrator")


class DrainingServer(uvicorn.Server):
    """uvicorn that stops taking work before it stops answering.

    The first SIGTERM (or Ctrl-C) begins the shutdown of the app at once: /readyz and new POSTs answer 503,
    clients waiting on a job get 503 with its id, running jobs go back to the queue. The server keeps
    answering for `drain_s` seconds (load balancers and Kubernetes endpoints move away meanwhile), then closes
    as uvicorn does. A second signal closes it at once.
    """

    def __init__(self, config: uvicorn.Config, ctx: AppContext, drain_s: float) -> None:
        super().__init__(config)
        self.ctx, self.drain_s = ctx, drain_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.ctx.shutting_down.is_set():
            super().handle_exit(sig, frame)
            return
        log_event(log, "shutting down: no new work; running jobs go back to the queue", drain_s=self.drain_s)
        self.ctx.begin_shutdown()
        timer = threading.Timer(self.drain_s, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()


def main() -> int:
    configure("orchestrator")
    try:
        settings = load_settings()
        app = create_app(settings)
    except SettingsError as exc:  # a start-up mistake: the message names each variable, no trace
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    # log_config=None: uvicorn keeps the JSON log handler configured above instead of installing its own.
    # timeout_graceful_shutdown: connections still open once the drain is over (a client that kept its
    # keep-alive connection) do not hold the exit up; waiting clients were answered when the drain began.
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    DrainingServer(config, app.state.ctx, settings.shutdown_drain_s).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
