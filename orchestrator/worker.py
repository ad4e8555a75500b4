"""The job runner: worker threads that claim queued jobs, run the pipeline and record what happens.

At start it takes back jobs left `running` by a dead process (an orchestrator restart), and while it runs
a housekeeping thread keeps the leases of its own jobs fresh and requeues jobs whose worker went silent
(another replica died). A graceful stop hands unfinished jobs back to the queue: no accepted job is lost.
"""

from __future__ import annotations

import logging
import threading
import time

from orchestrator.jobs import FAILED, QUEUED, SUCCEEDED, Job, JobStore, StageState
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.pipeline import Interrupted, TryOnPipeline
from orchestrator.stages import StageError
from orchestrator.storage import StorageError
from vton.runtime.logs import log_event, request_id_var

log = logging.getLogger("vton.orchestrator.worker")


class _JobProgress:
    """Writes one job's progress to the store under its claim, and feeds the stage metrics."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.runner, self.job = runner, job

    def stage(self, step: str, state: StageState) -> None:
        self.runner.store.set_stage(self.job.id, self.job.claim_token, step, state)
        if state.seconds is not None:
            self.runner.metrics.stage_seconds.labels(step, state.status).observe(state.seconds)

    def artifact(self, name: str, key: str) -> None:
        self.runner.store.add_artifact(self.job.id, self.job.claim_token, name, key)

    def cancelled(self) -> bool:
        return self.runner.stopping


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        pipeline: TryOnPipeline,
        metrics: OrchestratorMetrics,
        *,
        workers: int,
        lease_s: float,
        max_attempts: int,
        poll_s: float = 1.0,
    ) -> None:
        self.store, self.pipeline, self.metrics = store, pipeline, metrics
        self.workers, self.lease_s, self.max_attempts, self.poll_s = workers, lease_s, max_attempts, poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, str] = {}  # job id -> claim token, for the heartbeats
        self._lock = threading.Lock()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def recover(self) -> list[str]:
        """Requeue the jobs of dead workers (a restart's first act); returns their ids."""
        ids = self.store.requeue_orphans(self.lease_s, self.max_attempts)
        if ids:
            log_event(log, f"requeued {len(ids)} interrupted job(s)", jobs=ids)
        return ids

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self.recover()
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"vton-job-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        keeper = threading.Thread(target=self._housekeeping, name="vton-job-housekeeping", daemon=True)
        keeper.start()
        self._threads.append(keeper)

    def wake(self) -> None:
        """A job was queued: idle workers look now instead of at their next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; running ones stop at their next check and go back to the queue."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        with self._lock:
            leftover = dict(self._running)
        for job_id, token in leftover.items():  # a thread stuck past the timeout: its job is requeued
            self.store.release(job_id, token)

    # --- threads -----------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim()
            except Exception:  # the database is down: say so, wait, try again
                log.exception("claiming a job failed")
                self._stop.wait(self.poll_s * 5)
                continue
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self.run_job(job)

    def _housekeeping(self) -> None:
        period = max(0.5, self.lease_s / 4)
        while not self._stop.wait(period):
            try:
                with self._lock:
                    claims = list(self._running.items())
                if claims:
                    self.store.heartbeat(claims)
                if self.recover():
                    self.wake()
            except Exception:
                log.exception("job housekeeping failed")

    def run_job(self, job: Job) -> str:
        """Run a claimed job to its end; returns the status it ended with ("queued" when handed back)."""
        token = job.claim_token
        with self._lock:
            self._running[job.id] = token
        context_token = request_id_var.set(job.request_id or job.id)
        self.metrics.jobs_in_flight.inc()
        started = time.monotonic()
        status = FAILED
        try:
            log_event(log, "job started", job_id=job.id, attempt=job.attempts)
            result = self.pipeline.run(job, _JobProgress(self, job))
            if self.store.finish(job.id, token, SUCCEEDED, result_key=result):
                status = SUCCEEDED
            else:  # our lease ran out (no heartbeat got through) and another worker runs it now
                status = QUEUED
                log_event(log, "job finished but its claim was lost", logging.WARNING, job_id=job.id)
        except Interrupted as exc:
            self.store.release(job.id, token)
            status = QUEUED
            log_event(log, "job handed back to the queue", job_id=job.id, reason=str(exc))
        except StageError as exc:
            failed = StageState(FAILED, seconds=round(exc.seconds, 4), error=exc.message)
            self.store.set_stage(job.id, token, exc.step, failed)
            self.metrics.stage_seconds.labels(exc.step, FAILED).observe(exc.seconds)
            self._fail(job, token, exc.message, exc.error_code, exc.step)
        except StorageError as exc:
            self._fail(job, token, str(exc), "storage_unavailable", None)
        except Exception as exc:  # a bug: the whole trace goes to the log, the client sees its type only
            log.exception("job %s failed", job.id)
            self._fail(job, token, f"internal error: {type(exc).__name__}", "internal", None)
        finally:
            with self._lock:
                self._running.pop(job.id, None)
            self.metrics.jobs_in_flight.dec()
            if status != QUEUED:
                seconds = time.monotonic() - started
                self.metrics.job_seconds.labels(status).observe(seconds)
                log_event(log, "job finished", job_id=job.id, status=status, seconds=round(seconds, 3))
            request_id_var.reset(context_token)
        return status

    def _fail(self, job: Job, token: str, message: str, code: str, step: str | None) -> None:
        self.store.finish(job.id, token, FAILED, error=message, error_code=code, error_stage=step)
        log_event(
            log, "job failed", logging.WARNING, job_id=job.id, error=message, error_code=code, stage=step
        )
