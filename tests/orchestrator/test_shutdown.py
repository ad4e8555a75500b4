"""SIGTERM to a running orchestrator (`python -m orchestrator`, a real process): it stops taking work before it
stops answering. A client waiting on its job gets 503 JSON with the job's id, /readyz and new jobs answer 503
while it drains, it exits, and the job is still there and finishes once an orchestrator runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from orchestrator.jobs import JobStore
from orchestrator.settings import Settings
from tests.conftest import free_port
from tests.orchestrator.conftest import ADMIN_HEADERS
from tests.orchestrator.test_api import StandInStages, _form, _running, _wait_for
from vton.runtime.vocab import STAGES

DRAIN_S = 3.0


def _environment(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VTON_", "AWS_"))}
    return {
        **env,
        "VTON_HTTP_PORT": str(port),
        "VTON_DATA_DIR": str(settings.data_dir),
        "VTON_S3_ENDPOINT": settings.s3_endpoint,
        "VTON_S3_BUCKET": settings.s3_bucket,
        "AWS_ACCESS_KEY_ID": settings.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key.get_secret_value(),
        "VTON_WORKERS": "0",  # nothing runs the job: the client waits until the SIGTERM
        "VTON_SHUTDOWN_DRAIN_S": str(DRAIN_S),
        "VTON_KEY_PEPPER": settings.key_pepper.get_secret_value(),
        "VTON_ADMIN_KEY": settings.admin_key.get_secret_value(),
        **{f"VTON_{stage.upper()}_ADDR": "127.0.0.1:9" for stage in STAGES},
    }


def _until_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            httpx.get(url + "/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the orchestrator did not start")


def test_sigterm_answers_the_waiting_client_with_its_job_id_and_keeps_the_job(settings, api_client):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator"],
        env=_environment(settings, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    waited: dict = {}
    try:
        _until_up(url, proc)
        created = httpx.post(
            url + "/v1/admin/keys", json={"tenant": "shop"}, headers=ADMIN_HEADERS, timeout=10
        )
        auth = {"Authorization": f"Bearer {created.json()['key']}"}

        def wait_for_a_job() -> None:
            form = _form()
            response = httpx.post(
                url + "/v1/tryon?wait=true", files=form["files"], data=form["data"], headers=auth, timeout=60
            )
            waited.update(status=response.status_code, body=response.json(), headers=response.headers)

        waiter = threading.Thread(target=wait_for_a_job)
        waiter.start()
        time.sleep(1.0)  # the job is accepted and the client waits on it
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        waiter.join(10)
        answered = time.monotonic() - sent
        # while it drains, readiness and new work are refused with JSON; reading a job still works
        ready = httpx.get(url + "/readyz", timeout=5)
        form = _form()
        refused = httpx.post(
            url + "/v1/tryon", files=form["files"], data=form["data"], headers=auth, timeout=5
        )
        refused_batch = httpx.post(url + "/v1/batches", json={}, headers=auth, timeout=5)
        job_id = waited["body"]["detail"]["id"]
        still = httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth, timeout=5)
        assert proc.wait(30) is not None
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert waited["status"] == 503, waited
    assert "shutting down" in waited["body"]["error"] and waited["body"]["detail"]["links"]["self"].endswith(
        job_id
    )
    assert waited["headers"]["location"] == f"/v1/jobs/{job_id}"
    assert answered < 2.0, "the waiting client is answered when the shutdown begins, not when it ends"
    assert (ready.status_code, ready.json()) == (503, {"ready": False, "shutting_down": True})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert "shutting down" in refused.json()["error"]
    assert refused_batch.status_code == 503 and "shutting down" in refused_batch.json()["error"]
    assert still.status_code == 200 and still.json()["status"] == "queued"
    assert stopped >= DRAIN_S, "it keeps answering (503) for the drain period"

    store = JobStore(settings.resolved_database_url)
    assert store.get(job_id).status == "queued" and store.counts_by_status()["queued"] == 1
    store.close()
    # after the restart, the job runs to its end
    stages = StandInStages()
    try:
        with api_client(_running(settings, stages), tenant="shop") as client:  # the tenant of the job
            job = _wait_for(client, job_id)
    finally:
        stages.stop()
    assert job["status"] == "succeeded" and job["attempts"] == 1
