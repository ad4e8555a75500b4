"""`Idempotency-Key`: a retried POST (same key, same tenant, same request, within the window) gets the job the
first one made; the same key with a different request answers 422; keys are the tenant's own."""

from __future__ import annotations

import time

import numpy as np
import pytest

from orchestrator.idempotency import Idempotency, IdempotencyTaken
from orchestrator.jobs import JobStore, new_job_id
from vton.runtime import images
from vton.runtime.options import TryOnOptions


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return images.encode_png(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))


def _form(person_seed: int = 1, **fields) -> dict:
    files = {"person": ("p.png", _png(person_seed)), "garment": ("g.png", _png(99))}
    return {"files": files, "data": {"category": "upper_body", **fields}}


def _post(client, key: str | None, **form):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/v1/tryon", headers=headers, **form)


def test_a_retry_with_the_same_key_gets_the_same_job(api_client, settings, storage):
    with api_client(settings) as client:
        first = _post(client, "order-1841", **_form())
        retry = _post(client, "order-1841", **_form())  # a new multipart boundary, the same request
        assert first.status_code == retry.status_code == 202
        assert retry.json()["id"] == first.json()["id"]
        assert retry.headers["location"] == first.headers["location"]
        assert retry.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
        assert client.app.state.ctx.store.counts_by_status()["queued"] == 1
    assert len(storage.list("tenants/")) == 2, "the retry stored nothing"


def test_the_same_key_with_another_request_answers_422(api_client, settings):
    with api_client(settings) as client:
        first = _post(client, "order-7", **_form(seed="5"))
        for changed in (_form(seed="6"), _form(person_seed=2, seed="5"), _form(seed="5", steps="20")):
            response = _post(client, "order-7", **changed)
            assert response.status_code == 422, response.text
            assert "Idempotency-Key 'order-7' was used with a different request" in response.json()["error"]
            assert response.json()["detail"]["resource_id"] == first.json()["id"]
        assert client.app.state.ctx.store.counts_by_status()["queued"] == 1


def test_without_a_key_every_post_is_a_new_job(api_client, settings):
    with api_client(settings) as client:
        ids = {_post(client, None, **_form()).json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_keys_are_the_tenants_own(api_client, settings, new_key):
    with api_client(settings, tenant="shop-a") as client:
        a = _post(client, "order-1", **_form()).json()["id"]
        other = {"Authorization": f"Bearer {new_key(client, 'shop-b')}", "Idempotency-Key": "order-1"}
        b = client.post("/v1/tryon", headers=other, **_form()).json()["id"]
        again = client.post("/v1/tryon", headers=other, **_form()).json()["id"]
    assert a != b == again


def test_a_key_is_free_again_after_the_window(api_client, settings):
    with api_client(settings.model_copy(update={"idempotency_window_s": 0.5})) as client:
        first = _post(client, "order-9", **_form()).json()["id"]
        assert _post(client, "order-9", **_form()).json()["id"] == first
        time.sleep(0.6)
        later = _post(client, "order-9", **_form(seed="4"))  # even another request: the key is free
        assert later.status_code == 202 and later.json()["id"] != first
        assert _post(client, "order-9", **_form(seed="4")).json()["id"] == later.json()["id"]


def test_a_json_request_by_reference_is_idempotent_too(api_client, settings):
    with api_client(settings) as client:
        client.put("/v1/objects/catalog/p.png", content=_png(1))
        client.put("/v1/objects/catalog/g.png", content=_png(2))
        body = {"person": "catalog/p.png", "garment": "catalog/g.png", "category": "dresses"}
        first = client.post("/v1/tryon", json=body, headers={"Idempotency-Key": "sync-3"}).json()["id"]
        retry = client.post("/v1/tryon", json=body, headers={"Idempotency-Key": "sync-3"})
        other = client.post(
            "/v1/tryon", json={**body, "category": "upper_body"}, headers={"Idempotency-Key": "sync-3"}
        )
    assert retry.json()["id"] == first and other.status_code == 422


def test_a_retry_that_waits_gets_the_first_jobs_answer(api_client, settings):
    with api_client(settings) as client:  # no workers: the wait times out and answers 202
        first = _post(client, "order-w", **_form()).json()["id"]
        waited = client.post(
            "/v1/tryon?wait=true&timeout=0.2", headers={"Idempotency-Key": "order-w"}, **_form()
        )
    assert waited.status_code == 202 and waited.json()["id"] == first


@pytest.mark.parametrize("key", ["has space", "", "x" * 256, "tab\there"])
def test_a_malformed_key_answers_400(api_client, settings, key):
    with api_client(settings) as client:
        response = _post(client, key, **_form())
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]


def test_two_concurrent_requests_with_one_key_make_one_job(db_url):
    """The race a retry after a timeout can make: both passed the lookup, the database lets one insert win."""
    store = JobStore(db_url)
    store.upgrade_schema()
    claim = Idempotency("order-race", "f" * 64, window_s=60)
    options = TryOnOptions("upper_body", seed=1)
    first = store.create(
        new_job_id(), options, person_key="p", garment_key="g", tenant_id="default", idempotency=claim
    )
    with pytest.raises(IdempotencyTaken) as taken:
        store.create(
            new_job_id(), options, person_key="p", garment_key="g", tenant_id="default", idempotency=claim
        )
    counts = store.counts_by_status()
    store.close()
    assert taken.value.prior.resource_id == first.id and taken.value.prior.fingerprint == "f" * 64
    assert counts["queued"] == 1
