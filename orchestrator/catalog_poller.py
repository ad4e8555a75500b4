"""The catalog's background work in an orchestrator that runs jobs: finishing batches and watching incoming
garments, each on a thread of its own beside the job workers.

- Every second, each batch whose jobs have all ended gets its manifest written (JSON and CSV) and is marked
  finished, its callback queued with it. One replica does each batch: it claims the batch with a lease first.
- Every VTON_INCOMING_POLL_S seconds, the incoming prefixes are listed and new garments become batches
  (orchestrator.incoming).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from orchestrator.batches import BatchStore
from orchestrator.incoming import IncomingWatcher
from orchestrator.manifest import write_manifest
from orchestrator.pipeline import Storage
from vton.runtime.logs import log_event

log = logging.getLogger("vton.orchestrator.catalog")

FINISH_POLL_S = 1.0
# Writing a manifest reads the batch's jobs and puts two objects: a minute is ample.
_FINISH_LEASE_S = 60.0


class CatalogPoller:
    def __init__(
        self,
        batches: BatchStore,
        storage: Storage,
        watcher: IncomingWatcher,
        *,
        bucket: str,
        incoming_poll_s: float,
        finish_poll_s: float = FINISH_POLL_S,
    ) -> None:
        self.batches, self.storage, self.watcher, self.bucket = batches, storage, watcher, bucket
        self.incoming_poll_s, self.finish_poll_s = incoming_poll_s, finish_poll_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for name, period, work in (
            ("vton-batch-finisher", self.finish_poll_s, self.finish_ready),
            ("vton-incoming-watcher", self.incoming_poll_s, self.watcher.scan_all),
        ):
            thread = threading.Thread(target=self._every, args=(period, work), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _every(self, period: float, work: Callable[[], object]) -> None:
        while not self._stop.is_set():
            try:
                work()
            except Exception:  # the database or S3 blinked: say so, try again next time
                log.exception("catalog background work failed")
            self._stop.wait(period)

    def finish_ready(self) -> list[str]:
        """Write the manifest of every batch whose jobs have all ended; the ids of those finished now."""
        finished = []
        for batch_id in self.batches.ready_to_finish():
            token = self.batches.claim_finish(batch_id, _FINISH_LEASE_S)
            if token is None:  # another replica is at it
                continue
            try:
                batch = self.batches.get(batch_id)
                assert batch is not None, "a claimed batch exists"
                write_manifest(self.storage, batch, self.batches.jobs.batch_jobs(batch_id), self.bucket)
            except Exception:
                self.batches.release_finish(batch_id, token)
                raise
            if self.batches.mark_finished(batch_id, token):
                finished.append(batch_id)
                log_event(log, "batch finished", batch=batch_id, manifest=batch.manifest_key)
        return finished
