"""`VtonClient.wait` and `wait_batch`: every change of progress reported once, the finished object returned, and a
timeout that says how far the job or batch got.

The API is stood in for by httpx's MockTransport answering a scripted series of documents, so the client parses
real responses.
"""

from __future__ import annotations

import httpx
import pytest

from vton_cli.client import VtonClient


def _client(documents: list[dict]) -> VtonClient:
    """A client whose GETs answer `documents` in turn (the last one again once they run out)."""
    remaining = list(documents)

    def answer(request: httpx.Request) -> httpx.Response:
        document = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return httpx.Response(200, json=document)

    client = VtonClient("http://platform.test", api_key="key")
    client.http = httpx.Client(base_url=client.server, transport=httpx.MockTransport(answer))
    return client


def _job(status: str, pose: str) -> dict:
    return {"id": "j1", "status": status, "stages": {"pose": {"status": pose}}}


def _batch(status: str, succeeded: int) -> dict:
    counts = {"succeeded": succeeded, "queued": 3 - succeeded}
    return {"id": "b1", "status": status, "total": 3, "counts": counts}


def test_wait_reports_each_change_of_a_job_once_and_returns_it_finished() -> None:
    documents = [
        _job("queued", "pending"),
        _job("queued", "pending"),
        _job("running", "running"),
        _job("running", "running"),
        _job("succeeded", "succeeded"),
    ]
    seen: list[tuple[str, str]] = []

    job = _client(documents).wait("j1", on_update=lambda j: seen.append((j.status, j.stages[0].status)))

    assert job.finished and job.status == "succeeded"
    assert seen == [("queued", "pending"), ("running", "running"), ("succeeded", "succeeded")]


def test_wait_batch_reports_each_change_of_its_counts() -> None:
    documents = [_batch("running", 0), _batch("running", 1), _batch("running", 1), _batch("finished", 3)]
    seen: list[int] = []

    batch = _client(documents).wait_batch("b1", on_update=lambda b: seen.append(b.ended))

    assert batch.finished
    assert seen == [0, 1, 3]


def test_a_job_that_does_not_finish_in_time_says_its_last_status() -> None:
    with pytest.raises(TimeoutError, match=r"^job j1 did not finish within 0 s \(last status running\)$"):
        _client([_job("running", "running")]).wait("j1", timeout=0)


def test_a_batch_that_does_not_finish_in_time_says_how_many_jobs_ended() -> None:
    with pytest.raises(TimeoutError, match=r"^batch b1 did not finish within 0 s \(1/3 ended\)$"):
        _client([_batch("running", 1)]).wait_batch("b1", timeout=0)
