"""The job store on SQLite (and on PostgreSQL when VTON_TEST_POSTGRES_URL is set): jobs persist, a claim is
atomic, stale workers cannot write, and jobs of dead workers go back to the queue."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

from sqlalchemy import text

from orchestrator.jobs import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobStore, StageState, new_job_id
from vton.runtime.options import TryOnOptions

STEPS = ("pose", "densepose", "parsing", "agnostic_mask", "warp", "diffusion")


def _store(url: str) -> JobStore:
    store = JobStore(url)
    store.upgrade_schema()
    return store


def _create(store: JobStore, category: str = "upper_body") -> Job:
    job_id = new_job_id()
    return store.create(
        job_id,
        TryOnOptions(category, seed=7, guidance_scale=2.5),
        person_key=f"jobs/{job_id}/inputs/person.png",
        garment_key=f"jobs/{job_id}/inputs/garment.jpg",
        request_id="req-1",
    )


def test_a_created_job_is_queued_and_survives_a_new_store(db_url):
    store = _store(db_url)
    job = _create(store, "dresses")
    store.close()

    reopened = _store(db_url)  # a restarted orchestrator
    again = reopened.get(job.id)
    assert again is not None
    assert again.status == QUEUED
    assert (again.category, again.seed, again.guidance_scale, again.steps) == ("dresses", 7, 2.5, None)
    assert list(again.stages) == list(STEPS)
    assert {s.status for s in again.stages.values()} == {"pending"}
    assert reopened.get(new_job_id()) is None
    reopened.close()


def test_claim_takes_the_oldest_job_once_and_then_nothing(db_url):
    store = _store(db_url)
    first = _create(store)
    time.sleep(0.01)  # distinct created_at, so "oldest" is well defined
    second = _create(store)
    a = store.claim()
    b = store.claim()
    assert (a.id, b.id) == (first.id, second.id)
    assert a.status == RUNNING and a.attempts == 1 and a.claim_token
    assert store.claim() is None
    store.close()


def test_two_claimers_never_get_the_same_job(db_url):
    """Several workers, each with its own connection pool, race for the same queue."""
    seed_store = _store(db_url)
    ids = {_create(seed_store).id for _ in range(24)}
    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        store = JobStore(db_url)
        try:
            barrier.wait()
            while (job := store.claim(owner=f"test:{name}")) is not None:
                with lock:
                    claimed.append((job.id, name))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    claimed_ids = [job_id for job_id, _ in claimed]
    assert sorted(claimed_ids) == sorted(ids), "every job claimed exactly once"
    owners = {seed_store.get(job_id).owner for job_id in ids}
    assert owners <= {f"test:w{i}" for i in range(4)}
    seed_store.close()


def test_progress_is_recorded_and_a_failure_skips_the_stages_not_reached(db_url):
    store = _store(db_url)
    job = _create(store)
    run = store.claim()
    backend = {
        "name": "blazepose-litert",
        "version": "1.0",
        "kind": "embedded",
        "weights_license": "Apache-2.0",
    }
    assert store.set_stage(run.id, run.claim_token, "pose", StageState("succeeded", backend, 0.25))
    assert store.add_artifact(run.id, run.claim_token, "pose", f"jobs/{job.id}/artifacts/pose.json")
    assert store.add_artifact(run.id, run.claim_token, "pose", f"jobs/{job.id}/artifacts/pose-2.json")
    assert store.set_stage(
        run.id, run.claim_token, "parsing", StageState("failed", None, 0.1, "no person found")
    )
    assert store.finish(run.id, run.claim_token, FAILED, error="no person found", error_code="no_person")

    done = store.get(job.id)
    assert done.status == FAILED and done.error == "no person found" and done.error_code == "no_person"
    assert done.stages["pose"].backend == backend and done.stages["pose"].seconds == 0.25
    assert done.stages["parsing"].status == "failed"
    assert {done.stages[s].status for s in ("densepose", "agnostic_mask", "warp", "diffusion")} == {"skipped"}
    assert done.artifacts == {"pose": f"jobs/{job.id}/artifacts/pose-2.json"}
    assert done.finished_at >= done.started_at >= done.created_at
    assert store.counts_by_status() == {QUEUED: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 1}
    store.close()


def test_a_worker_that_lost_its_claim_cannot_write(db_url):
    store = _store(db_url)
    job = _create(store)
    stale = store.claim(owner="elsewhere:1:a")
    # its lease runs out: the job goes back and another worker takes it
    assert store.requeue_orphans(lease_s=0.0, owner_gone=lambda owner: False) == [job.id]
    fresh = store.claim(owner="elsewhere:2:b")
    assert fresh.id == job.id and fresh.attempts == 2 and fresh.claim_token != stale.claim_token

    assert not store.set_stage(job.id, stale.claim_token, "pose", StageState("succeeded", seconds=9.0))
    assert not store.add_artifact(job.id, stale.claim_token, "pose", "stale/key")
    assert not store.finish(job.id, stale.claim_token, SUCCEEDED, result_key="stale/result.png")
    now = store.get(job.id)
    assert now.status == RUNNING and now.stages["pose"].status == "pending" and now.artifacts == {}
    assert store.finish(job.id, fresh.claim_token, SUCCEEDED, result_key="jobs/x/result.png")
    assert store.get(job.id).result_key == "jobs/x/result.png"
    store.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_recovery_requeues_jobs_of_dead_workers_and_keeps_live_ones(db_url):
    store = _store(db_url)
    host = socket.gethostname()
    dead = _create(store)
    remote = _create(store)
    ours = _create(store)
    store.claim(owner=f"{host}:{_dead_pid()}:gone")  # a restarted orchestrator on this machine
    store.claim(owner="another-host:1:live")  # a replica elsewhere, heartbeat fresh
    store.claim()  # this process's own worker

    assert store.requeue_orphans(lease_s=3600) == [dead.id]
    assert store.get(dead.id).status == QUEUED
    assert store.get(remote.id).status == RUNNING
    assert store.get(ours.id).status == RUNNING

    # the remote replica's heartbeat stops: once it is older than the lease, the job is taken over too
    ours_run = store.get(ours.id)
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE vton_jobs SET heartbeat_at = heartbeat_at - 120 WHERE id = :id"), {"id": remote.id}
        )
    store.heartbeat([(ours.id, ours_run.claim_token)])
    assert store.requeue_orphans(lease_s=60) == [remote.id]
    assert store.get(ours.id).status == RUNNING
    # and the requeued job runs again
    again = store.claim()
    assert again.id in (dead.id, remote.id) and again.attempts == 2
    store.close()


def test_a_job_that_keeps_killing_its_worker_fails_after_max_attempts(db_url):
    store = _store(db_url)
    job = _create(store)
    for _ in range(2):
        store.claim(owner="crashy:1:x")
        assert store.requeue_orphans(lease_s=0.0, max_attempts=2) == [job.id]
    final = store.get(job.id)
    assert final.status == FAILED and final.error_code == "interrupted"
    assert "2 times" in final.error
    assert store.claim() is None
    store.close()


def test_release_hands_a_job_back_without_counting_the_attempt(db_url):
    store = _store(db_url)
    job = _create(store)
    run = store.claim()
    store.set_stage(run.id, run.claim_token, "pose", StageState("succeeded", seconds=0.5))
    assert store.release(run.id, run.claim_token)
    back = store.get(job.id)
    assert back.status == QUEUED and back.attempts == 0 and back.claim_token is None
    assert back.stages["pose"] == StageState("pending")  # the next run starts from the beginning
    assert store.claim().id == job.id
    store.close()
