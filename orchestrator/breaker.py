"""The workers' circuit breaker: no job is claimed while a stage or the store it needs is down.

Every job needs all five stages and the store, so the breaker watches them all. A thread runs each
dependency's health check every `interval_s` (in parallel, each bounded by `timeout_s`: a hung server counts as
down, and its check is not started again while the last one still hangs). A failure a worker meets opens the
breaker at once (`trip`), before the next round; the first round that finds the dependency healthy closes it.
While it is open workers wait instead of claiming, so queued jobs stay queued through an outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from vton.runtime.logs import log_event

log = logging.getLogger("vton.orchestrator.breaker")

STORAGE = "storage"  # the dependency name of the S3 store; the stages go by their own names


@dataclass(frozen=True)
class Outage:
    dependency: str
    reason: str  # the latest failure, in words that name the dependency
    since: float  # time.time() when it was first seen down


class DependencyBreaker:
    """`checks` maps a dependency's name to a function that returns when it is healthy and raises when it is
    not, with a message that names the dependency and says why. `on_change(dependency, up)` hears every
    transition."""

    def __init__(
        self,
        checks: Mapping[str, Callable[[], None]],
        *,
        interval_s: float,
        timeout_s: float,
        on_change: Callable[[str, bool], None] = lambda _dependency, _up: None,
    ) -> None:
        self.checks = dict(checks)
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self.on_change = on_change
        self._outages: dict[str, Outage] = {}
        self._reported: set[str] = set()  # dependencies whose state on_change has heard
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._closed.set()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=len(self.checks), thread_name_prefix="vton-health")
        self._pending: dict[str, tuple[Future, float]] = {}
        self._thread = threading.Thread(target=self._run, name="vton-breaker", daemon=True)

    # --- state -------------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether every dependency is up (workers may claim)."""
        return self._closed.is_set()

    def outages(self) -> list[Outage]:
        """The dependencies down now, in the order of `checks` (the pipeline's order)."""
        with self._lock:
            return [self._outages[name] for name in self.checks if name in self._outages]

    def outage(self, dependency: str) -> Outage | None:
        with self._lock:
            return self._outages.get(dependency)

    def wait_closed(self, timeout: float) -> bool:
        """Block until every dependency is up or `timeout` passes; whether they are up."""
        return self._closed.wait(timeout)

    def trip(self, dependency: str, reason: str) -> None:
        """A worker saw `dependency` fail as an outage does: open now, the next healthy check closes."""
        self._set(dependency, reason)

    # --- checking ----------------------------------------------------------------------------------------

    def check_now(self) -> list[Outage]:
        """One round of every check; returns the outages it leaves."""
        started = time.monotonic()
        for name, check in self.checks.items():
            if name not in self._pending:
                self._pending[name] = (self._pool.submit(check), started)
        for name in self.checks:
            future, since = self._pending[name]
            try:
                future.result(timeout=max(0.0, self.timeout_s - (time.monotonic() - started)))
            except Exception as exc:
                if not future.done():  # it hangs: left pending, not started again until it ends
                    waited = time.monotonic() - since
                    self._set(name, f"{name} gave no answer to its health check for {waited:.0f} s")
                    continue
                self._set(name, str(exc) or type(exc).__name__)
            else:
                self._set(name, None)
            del self._pending[name]
        return self.outages()

    def start(self) -> None:
        """Run a round of checks every `interval_s` on a thread of its own, until `stop`."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the checks for good (their pool ends here, so a breaker runs once); a check that still hangs
        is left to end on its own."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout_s + 1)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_now()
            except Exception:  # a bug here must not stop the checks for good
                log.exception("health checks failed")
            self._stop.wait(self.interval_s)

    def _set(self, dependency: str, reason: str | None) -> None:
        """Record `dependency` as down (with `reason`) or up (None); log and report each transition."""
        with self._lock:
            earlier = self._outages.get(dependency)
            was_down = earlier is not None
            if reason is not None:
                since = earlier.since if earlier is not None else time.time()
                self._outages[dependency] = Outage(dependency, reason, since)
            elif was_down:
                del self._outages[dependency]
            if self._outages:
                self._closed.clear()
            else:
                self._closed.set()
            changed = was_down != (reason is not None)
            first = dependency not in self._reported
            self._reported.add(dependency)
        if first and not changed:
            self.on_change(dependency, reason is None)  # the first state, for the metrics
        if changed:
            if reason is None:
                log_event(log, f"{dependency} is up again; claiming jobs", dependency=dependency)
            else:
                log_event(
                    log,
                    f"{dependency} is down; no job is claimed until it is back",
                    logging.WARNING,
                    dependency=dependency,
                    reason=reason,
                )
            self.on_change(dependency, reason is None)
