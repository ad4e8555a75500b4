"""The job runner: worker threads that claim queued jobs, run the pipeline and record what happens.

At start it takes back jobs left `running` by a dead process (an orchestrator restart), and while it runs
a housekeeping thread keeps the leases of its own jobs fresh and requeues jobs whose worker went silent
(another replica died). A graceful stop hands unfinished jobs back to the queue: no accepted job is lost.

An outage burns no job. Workers claim only while the circuit breaker (orchestrator.breaker) says every stage
and the store are up. A claimed job that meets one down (a stage UNAVAILABLE; S3 unreachable, failing with a
5xx or throttling) keeps its claim and runs again after a backoff, once the breaker has closed. Only a job past
its deadline (`deadline_s` after it was accepted) fails, naming the stage or the store it waited for; queued
jobs past it fail the same way while the outage lasts. A job whose runs failed on a stage four times fails then
(see _MAX_FAILED_RUNS). An error S3 answers for the job's own request (its input object is missing, access
denied) is no outage: the job fails at once, naming the object.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

from orchestrator.breaker import STORAGE, DependencyBreaker, Outage
from orchestrator.jobs import FAILED, PENDING, QUEUED, SUCCEEDED, Job, JobStore, StageState
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.pipeline import Interrupted, TryOnPipeline
from orchestrator.stages import StageError
from orchestrator.storage import StorageError
from vton.runtime.logs import log_event, request_id_var

log = logging.getLogger("vton.orchestrator.worker")

# Waits between the runs of a job that met an outage: 0.5 s, doubling, at most 15 s (and until the breaker
# closes, so an outage costs a job one run however long it lasts).
_RETRY_FIRST_S, _RETRY_MAX_S = 0.5, 15.0
# A job whose runs failed on a stage this many times fails at once: the stage keeps failing it while its health
# checks pass (an error of this job's own), or the job itself brings the stage down (an input that crashes it),
# and a fifth crash would make `vton up` give up on the stage. Runs failed on the store are not counted: no input
# brings S3 down, and a restarted S3 may fail reads for a while after its bucket answers the breaker's check
# again, so such a job waits until its deadline.
_MAX_FAILED_RUNS = 4


class _Outage(Exception):
    """A run of a job met a dependency that is down: `dependency` (a stage or STORAGE), the step it was at
    (None for storage) and the error it gave."""

    def __init__(self, dependency: str, step: str | None, message: str, error_code: str) -> None:
        super().__init__(message)
        self.dependency, self.step, self.message, self.error_code = dependency, step, message, error_code


def _as_outage(exc: Exception) -> _Outage | None:
    """The outage an error of a run stands for, or None when the error is the job's own."""
    if isinstance(exc, StageError) and exc.transient:
        return _Outage(exc.service, exc.step, exc.message, exc.error_code)
    if isinstance(exc, StorageError) and exc.transient:
        return _Outage(STORAGE, None, str(exc), "storage_unavailable")
    return None


def _outage_message(outage: Outage, waited_s: float) -> str:
    """The error of a job whose deadline passed during `outage` (whose reason names the dependency)."""
    return f"{outage.reason}; the job waited {waited_s:.0f} s for it to come back (its deadline)"


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
        breaker: DependencyBreaker,
        deadline_s: float,
        poll_s: float = 1.0,
    ) -> None:
        self.store, self.pipeline, self.metrics = store, pipeline, metrics
        self.workers, self.lease_s, self.max_attempts, self.poll_s = workers, lease_s, max_attempts, poll_s
        self.breaker, self.deadline_s = breaker, deadline_s
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
        self.breaker.check_now()  # a dependency down at start is known before the first claim
        self.breaker.start()
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
        self.breaker.stop()
        with self._lock:
            leftover = dict(self._running)
        for job_id, token in leftover.items():  # a thread stuck past the timeout: its job is requeued
            self.store.release(job_id, token)

    # --- threads -----------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self.breaker.wait_closed(self.poll_s):
                # a stage or the store is down: queued jobs wait for it in the queue, up to their deadline
                self._guarded(self._expire_queued)
                continue
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

    def _guarded(self, task: Callable[[], None]) -> None:
        try:
            task()
        except Exception:  # the database is down: the next round tries again
            log.exception("%s failed", task.__name__)

    def _expire_queued(self) -> None:
        """While a dependency is down, queued jobs past their deadline fail naming it."""
        outages = self.breaker.outages()
        if not outages:
            return
        outage = outages[0]
        code = "storage_unavailable" if outage.dependency == STORAGE else "stage_unavailable"
        stage = None if outage.dependency == STORAGE else outage.dependency
        ids = self.store.fail_queued_before(
            time.time() - self.deadline_s, _outage_message(outage, self.deadline_s), code, stage
        )
        for job_id in ids:
            log_event(log, "job failed", logging.WARNING, job_id=job_id, error_code=code, stage=stage)

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
            result = self._run_through_outages(job)
            if self.store.finish(job.id, token, SUCCEEDED, result_key=result):
                status = SUCCEEDED
            else:  # our lease ran out (no heartbeat got through) and another worker runs it now
                status = QUEUED
                log_event(log, "job finished but its claim was lost", logging.WARNING, job_id=job.id)
        except Interrupted as exc:
            self.store.release(job.id, token)
            status = QUEUED
            log_event(log, "job handed back to the queue", job_id=job.id, reason=str(exc))
        except _Outage as exc:
            if exc.step is not None:
                self.store.set_stage(job.id, token, exc.step, StageState(FAILED, error=exc.message))
            self._fail(job, token, exc.message, exc.error_code, exc.step)
        except StageError as exc:
            failed = StageState(FAILED, seconds=round(exc.seconds, 4), error=exc.message)
            self.store.set_stage(job.id, token, exc.step, failed)
            self.metrics.stage_seconds.labels(exc.step, FAILED).observe(exc.seconds)
            self._fail(job, token, exc.message, exc.error_code, exc.step)
        except StorageError as exc:
            # S3 refused the job's own request (its outages are _Outage above): it would refuse it again
            self._fail(job, token, str(exc), "input_missing" if exc.missing else "storage_error", None)
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

    def _run_through_outages(self, job: Job) -> str:
        """The pipeline's result, running it again after each outage it meets until the job's deadline.
        Raises _Outage (past the deadline, or after _MAX_FAILED_RUNS runs failed on a stage), StageError or
        StorageError (the job's own, not an outage), Interrupted."""
        deadline = job.created_at + self.deadline_s
        progress = _JobProgress(self, job)
        failed_on_a_stage = 0
        for attempt in itertools.count():
            try:
                return self.pipeline.run(job, progress)
            except (StageError, StorageError) as exc:
                outage = _as_outage(exc)
                if outage is None:
                    raise
            if outage.dependency != STORAGE:
                failed_on_a_stage += 1
                if failed_on_a_stage >= _MAX_FAILED_RUNS:
                    outage.message += f" ({_MAX_FAILED_RUNS} runs of this job failed on it)"
                    raise outage
            self.breaker.trip(outage.dependency, outage.message)
            self.metrics.job_retries.labels(outage.dependency).inc()
            if outage.step is not None:
                waiting = StageState(PENDING, error=f"{outage.message}; trying again when it is back")
                self.store.set_stage(job.id, job.claim_token, outage.step, waiting)
            log_event(
                log,
                "job waits for a dependency",
                logging.WARNING,
                job_id=job.id,
                dependency=outage.dependency,
                error=outage.message,
                attempt=attempt + 1,
            )
            self._wait_to_retry(job, outage, deadline, min(_RETRY_MAX_S, _RETRY_FIRST_S * 2**attempt))
        raise AssertionError("unreachable")

    def _wait_to_retry(self, job: Job, outage: _Outage, deadline: float, backoff_s: float) -> None:
        """Sleep `backoff_s`, then until the breaker closes; Interrupted when stopping, the outage (past the
        deadline) when the deadline passes first."""
        if self._stop.wait(max(0.0, min(backoff_s, deadline - time.time()))):
            raise Interrupted("stopped while waiting for a dependency")
        while not self.breaker.wait_closed(min(self.poll_s, max(0.0, deadline - time.time()))):
            if self._stop.is_set():
                raise Interrupted("stopped while waiting for a dependency")
            if time.time() >= deadline:
                break
        if time.time() >= deadline:
            down = self.breaker.outage(outage.dependency) or Outage(outage.dependency, outage.message, 0.0)
            raise _Outage(
                outage.dependency,
                outage.step,
                _outage_message(down, time.time() - job.created_at),
                outage.error_code,
            )

    def _fail(self, job: Job, token: str, message: str, code: str, step: str | None) -> None:
        self.store.finish(job.id, token, FAILED, error=message, error_code=code, error_stage=step)
        log_event(
            log, "job failed", logging.WARNING, job_id=job.id, error=message, error_code=code, stage=step
        )
