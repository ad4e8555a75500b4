"""A dependency that is down burns no job: the circuit breaker stops claims while a stage or the store fails its
health checks, a claimed job that meets an outage retries until its deadline, and only a job past its deadline
fails, naming what it waited for.

The breaker runs real check functions; the runner runs a real job store (SQLite) and a pipeline whose stage
calls fail the way gRPC and S3 fail (StageError UNAVAILABLE, StorageError) while the test says so, or one that
reads the job's photos through a real Storage (S3 answers stubbed in botocore, or the SeaweedFS server)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import grpc
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from orchestrator import worker
from orchestrator.breaker import STORAGE, DependencyBreaker
from orchestrator.jobs import FAILED, QUEUED, RUNNING, SUCCEEDED, JobStore, StageState, new_job_id
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.stages import StageError
from orchestrator.storage import Storage, StorageError
from orchestrator.worker import JobRunner
from vton.runtime.options import TryOnOptions
from vton.runtime.vocab import STAGES


class Dependencies:
    """Health checks whose answers the test sets: `down[name] = reason` makes that one fail."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}
        self.hang = threading.Event()  # set: the storage check hangs until cleared
        self.checked = 0

    def checks(self) -> dict:
        def check(name: str):
            def run() -> None:
                self.checked += 1
                if name == STORAGE:
                    while self.hang.is_set():
                        time.sleep(0.01)
                if name in self.down:
                    raise RuntimeError(self.down[name])

            return run

        return {name: check(name) for name in (*STAGES, STORAGE)}


def _breaker(deps: Dependencies, **kw) -> DependencyBreaker:
    return DependencyBreaker(deps.checks(), interval_s=kw.pop("interval_s", 0.05), timeout_s=0.3, **kw)


# --- the breaker ------------------------------------------------------------------------------------------


def test_the_breaker_opens_while_a_check_fails_and_closes_when_it_passes():
    deps, changes = Dependencies(), []
    breaker = _breaker(deps, on_change=lambda dep, up: changes.append((dep, up)))
    assert breaker.check_now() == [] and breaker.closed
    deps.down["warp"] = "the warp stage (127.0.0.1:9) is unavailable: UNAVAILABLE"
    [outage] = breaker.check_now()
    assert (outage.dependency, outage.reason) == ("warp", deps.down["warp"])
    assert not breaker.closed and not breaker.wait_closed(0.05)
    del deps.down["warp"]
    assert breaker.check_now() == [] and breaker.closed
    # every dependency's first state, then each transition
    assert changes == [(name, True) for name in (*STAGES, STORAGE)] + [("warp", False), ("warp", True)]


def test_a_failure_seen_by_a_worker_opens_it_before_the_next_check():
    deps = Dependencies()
    breaker = _breaker(deps)
    breaker.trip("parsing", "the parsing stage is unavailable: connection refused")
    assert not breaker.closed and breaker.outage("parsing").reason.endswith("connection refused")
    breaker.check_now()  # its health check passes: the breaker closes again
    assert breaker.closed


def test_a_hung_check_counts_as_down_and_is_not_started_again_while_it_hangs():
    deps = Dependencies()
    breaker = _breaker(deps)
    deps.hang.set()
    started = time.monotonic()
    [outage] = breaker.check_now()
    assert outage.dependency == STORAGE and "gave no answer to its health check" in outage.reason
    assert time.monotonic() - started < 1.0  # bounded by timeout_s
    before = deps.checked
    breaker.check_now()
    assert deps.checked == before + len(STAGES)  # the storage check was not submitted a second time
    deps.hang.clear()
    time.sleep(0.05)
    assert breaker.check_now() == []


# --- the runner -------------------------------------------------------------------------------------------


class FlakyPipeline:
    """Succeeds unless the test marks a dependency as failing; counts its runs. A failing call takes the
    dependency down for the health checks too (a server that died mid-job; back after `comes_back_s` when
    set), unless `checks_see_it` is off (a server that answers its health checks but fails the job's calls)."""

    def __init__(
        self, deps: Dependencies, checks_see_it: bool = True, comes_back_s: float | None = None
    ) -> None:
        self.deps, self.checks_see_it, self.comes_back_s = deps, checks_see_it, comes_back_s
        self.failing: dict[str, str] = {}  # dependency -> the error its calls give
        self.runs = 0

    def run(self, job, progress) -> str:
        self.runs += 1
        if self.checks_see_it:
            self.deps.down.update(self.failing)
            if self.comes_back_s is not None:  # restarted by its supervisor a moment later
                threading.Timer(self.comes_back_s, self.deps.down.clear).start()
        if STORAGE in self.failing:
            raise StorageError(self.failing[STORAGE], transient=True)
        for stage, message in self.failing.items():
            progress.stage(stage, StageState(RUNNING))
            raise StageError(stage, stage, grpc.StatusCode.UNAVAILABLE, message)
        return f"jobs/{job.id}/result.png"


class ReadingPipeline:
    """Reads the job's two photos through `storage`, as the pipeline's first step does; counts its runs."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.runs = 0

    def run(self, job, progress) -> str:
        self.runs += 1
        self.storage.get(job.person_key)
        self.storage.get(job.garment_key)
        return f"jobs/{job.id}/result.png"


def _restarted_s3(failed_reads: int) -> Storage:
    """A Storage whose first `failed_reads` object reads answer 500 InternalError, as SeaweedFS's did for some
    seconds after a kill -9 and restart while its bucket already answered; the reads after them succeed."""
    storage = Storage("vton", endpoint="http://127.0.0.1:9", access_key="a", secret_key="b", url_ttl_s=600)
    stubber = Stubber(storage._client)
    for _ in range(failed_reads):
        stubber.add_client_error("get_object", "InternalError", "We encountered an internal error", 500)
    for data in (b"person", b"garment"):
        stubber.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))})
    stubber.activate()
    return storage


@pytest.fixture
def store(tmp_path: Path):
    s = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    s.upgrade_schema()
    yield s
    s.close()


def _submit(store: JobStore, person_key: str = "p", garment_key: str = "g") -> str:
    job_id = new_job_id()
    store.create(job_id, TryOnOptions("upper_body"), person_key=person_key, garment_key=garment_key)
    return job_id


def _runner(
    store: JobStore, deps: Dependencies, pipeline: FlakyPipeline | ReadingPipeline, deadline_s: float
) -> JobRunner:
    return JobRunner(
        store,
        pipeline,
        OrchestratorMetrics(),
        workers=1,
        lease_s=60,
        max_attempts=3,
        breaker=_breaker(deps),
        deadline_s=deadline_s,
        poll_s=0.05,
    )


def _until_finished(store: JobStore, job_id: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job.finished:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {store.get(job_id)}")


def _run_until_finished(runner: JobRunner, store: JobStore, job_id: str, timeout: float = 20):
    """Start the runner, wait for the job to finish, stop the runner; the job as it ended."""
    runner.start()
    try:
        return _until_finished(store, job_id, timeout)
    finally:
        runner.stop()


def _retries(runner: JobRunner, dependency: str) -> float:
    value = runner.metrics.registry.get_sample_value("vton_job_retries_total", {"dependency": dependency})
    return value or 0.0


def test_queued_jobs_are_not_claimed_while_a_stage_is_down_and_run_when_it_is_back(store):
    deps = Dependencies()
    deps.down["warp"] = "the warp stage (127.0.0.1:9) is unavailable: UNAVAILABLE"
    pipeline = FlakyPipeline(deps)
    runner = _runner(store, deps, pipeline, deadline_s=60)
    ids = [_submit(store) for _ in range(3)]
    runner.start()
    try:
        time.sleep(0.5)
        assert pipeline.runs == 0 and {store.get(i).status for i in ids} == {QUEUED}
        del deps.down["warp"]
        jobs = [_until_finished(store, i) for i in ids]
    finally:
        runner.stop()
    assert [(j.status, j.attempts) for j in jobs] == [(SUCCEEDED, 1)] * 3


@pytest.mark.parametrize("dependency", ["warp", STORAGE])
def test_a_claimed_job_that_meets_an_outage_waits_and_succeeds_when_it_ends(store, dependency):
    deps, message = Dependencies(), f"{dependency} is unavailable: connection refused"
    pipeline = FlakyPipeline(deps)
    runner = _runner(store, deps, pipeline, deadline_s=60)
    pipeline.failing[dependency] = message  # it goes down as the job calls it
    job_id = _submit(store)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while _retries(runner, dependency) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.5)  # it keeps waiting (and keeps its claim) while the dependency stays down
        waiting = store.get(job_id)
        assert waiting.status == "running" and pipeline.runs == 1
        if dependency != STORAGE:
            assert waiting.stages["warp"].status == "pending" and message in waiting.stages["warp"].error
        del pipeline.failing[dependency], deps.down[dependency]
        job = _until_finished(store, job_id)
    finally:
        runner.stop()
    assert (job.status, job.attempts, job.error) == (SUCCEEDED, 1, None)
    assert pipeline.runs == 2 and _retries(runner, dependency) == 1


def test_only_a_job_past_its_deadline_fails_and_its_error_names_the_stage(store):
    deps = Dependencies()
    pipeline = FlakyPipeline(deps)
    runner = _runner(store, deps, pipeline, deadline_s=1.5)
    message = "the warp stage (127.0.0.1:9) is unavailable: failed to connect to all addresses"
    pipeline.failing["warp"] = message
    job_id = _submit(store)
    started = time.monotonic()
    job = _run_until_finished(runner, store, job_id)
    assert time.monotonic() - started >= 1.4  # not before its deadline
    assert (job.status, job.error_code, job.error_stage) == (FAILED, "stage_unavailable", "warp")
    assert job.error.startswith(message) and "(its deadline)" in job.error
    assert job.stages["warp"].status == FAILED and job.stages["diffusion"].status == "skipped"


def test_queued_jobs_past_their_deadline_fail_naming_the_dependency_that_is_down(store):
    deps = Dependencies()
    deps.down[STORAGE] = "storage (http://127.0.0.1:9 bucket 'vton'): head_bucket failed: connection refused"
    pipeline = FlakyPipeline(deps)
    runner = _runner(store, deps, pipeline, deadline_s=0.5)
    job_id = _submit(store)
    job = _run_until_finished(runner, store, job_id)
    assert pipeline.runs == 0
    assert (job.status, job.error_code, job.error_stage) == (FAILED, "storage_unavailable", None)
    assert job.error.startswith(deps.down[STORAGE])
    assert {s.status for s in job.stages.values()} == {"skipped"}


@pytest.mark.parametrize("checks_see_it", [False, True], ids=["up-by-its-checks", "down-after-each-run"])
def test_a_stage_that_fails_every_run_of_one_job_fails_that_job_without_waiting(store, checks_see_it):
    """Up by its health checks yet failing the job (the job's own error), or going down at each run and
    coming back (a job that crashes the stage): after 4 runs the job fails, long before its deadline."""
    deps = Dependencies()
    pipeline = FlakyPipeline(deps, checks_see_it=checks_see_it, comes_back_s=0.2)
    runner = _runner(store, deps, pipeline, deadline_s=600)
    pipeline.failing["pose"] = "the pose stage (127.0.0.1:50051) is unavailable: Socket closed"
    job_id = _submit(store)
    job = _run_until_finished(runner, store, job_id, timeout=30)
    assert (job.status, job.error_stage, job.error_code) == (FAILED, "pose", "stage_unavailable")
    assert job.error.endswith("(4 runs of this job failed on it)") and pipeline.runs == 4


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits between runs of 0.05 s doubling to 0.2 s instead of 0.5 s to 15 s: many runs in a short test."""
    monkeypatch.setattr(worker, "_RETRY_FIRST_S", 0.05)
    monkeypatch.setattr(worker, "_RETRY_MAX_S", 0.2)


def test_a_job_whose_reads_fail_on_s3_more_than_four_runs_succeeds_once_s3_recovers(store, quick_retries):
    """S3's bucket answers (the breaker closes at once) while its objects' reads still fail: the job runs
    again and again, not capped at the four runs of a stage, and succeeds once the reads do."""
    deps = Dependencies()
    pipeline = ReadingPipeline(_restarted_s3(failed_reads=6))
    runner = _runner(store, deps, pipeline, deadline_s=60)
    job_id = _submit(store)
    job = _run_until_finished(runner, store, job_id)
    assert (job.status, job.attempts, job.error, job.error_code) == (SUCCEEDED, 1, None, None)
    assert pipeline.runs == 7 and _retries(runner, STORAGE) == 6


def test_a_job_whose_reads_fail_on_s3_until_its_deadline_fails_naming_the_store_and_the_key(
    store, quick_retries
):
    deps = Dependencies()
    pipeline = ReadingPipeline(_restarted_s3(failed_reads=1000))
    runner = _runner(store, deps, pipeline, deadline_s=1.5)
    job_id = _submit(store, person_key="jobs/0123/person.png")
    started = time.monotonic()
    job = _run_until_finished(runner, store, job_id)
    assert time.monotonic() - started >= 1.4 and pipeline.runs > 4  # not before its deadline
    assert (job.status, job.error_code, job.error_stage) == (FAILED, "storage_unavailable", None)
    assert job.error.startswith(
        "storage (http://127.0.0.1:9 bucket 'vton'): get jobs/0123/person.png failed: "
    )
    assert "InternalError" in job.error and job.error.endswith("(its deadline)")


@pytest.mark.parametrize(
    ("secret", "code", "needle"),
    [(None, "input_missing", "NoSuchKey"), ("wrong", "storage_error", "SignatureDoesNotMatch")],
    ids=["missing-object", "refused"],
)
def test_an_s3_error_of_the_jobs_own_fails_it_at_once_naming_the_key(
    store, storage: Storage, s3_server, secret, code, needle
):
    """S3 answers that the job's input is not there, or refuses to give it: no outage (the breaker stays
    closed), no second run; the job fails naming the object."""
    storage.ensure_bucket()
    if secret is not None:
        storage = Storage(
            storage.bucket,
            endpoint=s3_server.endpoint,
            access_key="vtontest",
            secret_key=secret,
            url_ttl_s=600,
        )
    deps = Dependencies()
    pipeline = ReadingPipeline(storage)
    runner = _runner(store, deps, pipeline, deadline_s=600)
    job_id = _submit(store, person_key="tenants/shop/catalog/anna.png", garment_key="tenants/shop/shirt.png")
    runner.start()
    try:
        job = _until_finished(store, job_id)
        assert runner.breaker.closed
    finally:
        runner.stop()
    assert (job.status, job.error_code, job.error_stage) == (FAILED, code, None)
    assert "get tenants/shop/catalog/anna.png failed: " + needle in job.error
    assert pipeline.runs == 1 and _retries(runner, STORAGE) == 0
    assert {s.status for s in job.stages.values()} == {"skipped"}


def test_a_job_waiting_for_a_dependency_goes_back_to_the_queue_when_the_process_stops(store):
    deps = Dependencies()
    pipeline = FlakyPipeline(deps)
    runner = _runner(store, deps, pipeline, deadline_s=600)
    pipeline.failing["diffusion"] = "the diffusion stage is unavailable"
    job_id = _submit(store)
    runner.start()
    deadline = time.monotonic() + 10
    while _retries(runner, "diffusion") == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    runner.stop(timeout=5)
    job = store.get(job_id)
    assert (job.status, job.attempts, job.claim_token) == (QUEUED, 0, None)
