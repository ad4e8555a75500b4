"""Objects by reference: a tenant uploads photos once to its prefix (PUT /v1/objects/{key}) and names them in
POST /v1/tryon as JSON; another tenant's objects answer 404, other buckets and URLs 400, nothing is fetched."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from tests.orchestrator.test_api import StandInStages, _running
from vton.runtime import images


def _png(seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    return images.encode_png(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))


def _put(client, key: str, data: bytes, **kwargs) -> httpx.Response:
    return client.put(f"/v1/objects/{key}", content=data, **kwargs)


def test_an_uploaded_photo_is_stored_under_the_tenants_prefix_and_listed(api_client, settings, storage):
    person = _png(1)
    with api_client(settings, tenant="shop-a") as a:
        stored = _put(a, "catalog/people/anna.png", person)
        assert stored.status_code == 201, stored.text
        body = stored.json()
        assert body["key"] == "catalog/people/anna.png" and body["size"] == len(person)
        assert body["uri"] == f"s3://{settings.s3_bucket}/tenants/shop-a/catalog/people/anna.png"
        assert httpx.get(body["url"], timeout=10).content == person
        assert storage.get("tenants/shop-a/catalog/people/anna.png") == person
        _put(a, "catalog/garments/red.png", _png(2))
        _put(a, "models/b.png", _png(3))
        assert a.get("/v1/objects/catalog/people/anna.png").json()["size"] == len(person)
        listed = a.get("/v1/objects", params={"prefix": "catalog/"}).json()
        assert [o["key"] for o in listed["objects"]] == [
            "catalog/garments/red.png",
            "catalog/people/anna.png",
        ]
        first = a.get("/v1/objects", params={"limit": 1}).json()
        assert [o["key"] for o in first["objects"]] == ["catalog/garments/red.png"]
        assert first["next_after"] == "catalog/garments/red.png"
        rest = a.get("/v1/objects", params={"after": first["next_after"]}).json()
        assert [o["key"] for o in rest["objects"]] == ["catalog/people/anna.png", "models/b.png"]
        assert rest["next_after"] is None


@pytest.mark.parametrize(
    ("key", "data", "status", "needle"),
    [
        ("catalog/a.png", b"not a photo at all", 400, "not an image"),
        ("catalog/a.jpg", _png(), 400, "PNG image: its key ends with .png"),
        ("catalog//a.png", _png(), 400, "not a plain relative path"),
        ("jobs/0123/inputs/person.png", _png(), 403, "jobs/ is written by the platform"),
        ("batches/x.png", _png(), 403, "batches/ is written by the platform"),
        ("catalog/empty.png", b"", 400, "empty"),
    ],
    ids=["not-an-image", "suffix", "empty-segment", "reserved-jobs", "reserved-batches", "empty"],
)
def test_uploads_that_are_refused(api_client, settings, storage, key, data, status, needle):
    with api_client(settings, tenant="shop-a") as a:
        response = _put(a, key, data)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]
    assert storage.list("") == [], "nothing was stored"


def test_an_upload_over_the_limit_answers_413(api_client, settings):
    with api_client(settings.model_copy(update={"max_upload_bytes": 5_000})) as a:
        response = _put(a, "catalog/big.png", _png() * 2)
    assert response.status_code == 413 and "upload limit" in response.json()["error"]


def test_another_tenants_objects_answer_404(api_client, settings, new_key):
    with api_client(settings, tenant="shop-a") as a:
        _put(a, "catalog/anna.png", _png())
        b = {"Authorization": f"Bearer {new_key(a, 'shop-b')}"}
        assert a.get("/v1/objects/catalog/anna.png", headers=b).status_code == 404
        assert a.get("/v1/objects", headers=b).json()["objects"] == []


def test_a_tryon_of_the_tenants_own_objects_needs_no_upload(api_client, settings):
    stages = StandInStages()
    try:
        job = _tryon_of_objects(api_client, _running(settings, stages), settings.s3_bucket)
    finally:
        stages.stop()
    # the worker read both objects from the bucket and ran the stages on them
    assert job["status"] == "succeeded", job


def test_a_referenced_photo_deleted_before_its_job_runs_fails_the_job_at_once_naming_it(
    api_client, settings, storage
):
    """The job reads the objects when it runs (docs/api.md): S3 answers that one is gone, and the job fails with
    input_missing, not retried as an outage of the store."""
    with api_client(settings, tenant="shop-a") as a:  # no workers: the job stays queued
        _put(a, "catalog/anna.png", _png(1))
        _put(a, "catalog/shirt.png", _png(2))
        body = {"person": "catalog/anna.png", "garment": "catalog/shirt.png", "category": "upper_body"}
        response = a.post("/v1/tryon", json=body)
        assert response.status_code == 202, response.text
    storage._client.delete_object(Bucket=storage.bucket, Key="tenants/shop-a/catalog/anna.png")
    stages = StandInStages()
    try:
        with api_client(_running(settings, stages), tenant="shop-a") as a:
            deadline = time.monotonic() + 30
            job = a.get(response.headers["location"]).json()
            while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
                time.sleep(0.1)
                job = a.get(response.headers["location"]).json()
    finally:
        stages.stop()
    assert (job["status"], job["error_code"], job["error_stage"]) == ("failed", "input_missing", None), job
    assert "get tenants/shop-a/catalog/anna.png failed: NoSuchKey" in job["error"]
    assert {stage["status"] for stage in job["stages"].values()} == {"skipped"}


def _tryon_of_objects(api_client, running, bucket: str) -> dict:
    with api_client(running, tenant="shop-a") as a:
        _put(a, "catalog/anna.png", _png(1))
        _put(a, "catalog/shirt.png", _png(2))
        response = a.post(
            "/v1/tryon",
            json={
                "person": "catalog/anna.png",
                "garment": f"s3://{bucket}/tenants/shop-a/catalog/shirt.png",
                "category": "upper_body",
                "seed": 3,
            },
        )
        assert response.status_code == 202, response.text
        job = a.get(response.headers["location"]).json()
        assert job["options"]["seed"] == 3 and job["tenant"] == "shop-a"
        assert "/tenants/shop-a/catalog/anna.png?" in job["inputs"]["person"]
        assert "/tenants/shop-a/catalog/shirt.png?" in job["inputs"]["garment"]
        deadline = time.monotonic() + 60
        while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = a.get(response.headers["location"]).json()
    return job


@pytest.mark.parametrize(
    ("person", "status", "needle"),
    [
        ("s3://{bucket}/tenants/shop-b/catalog/bob.png", 404, "no object"),
        ("s3://{bucket}/jobs/0123/inputs/person.png", 404, "no object"),
        ("catalog/nobody.png", 404, "no object 'catalog/nobody.png' among yours"),
        ("s3://another-bucket/tenants/shop-a/catalog/anna.png", 400, "only objects in the platform's bucket"),
        ("https://example.com/anna.png", 400, "URLs are not fetched"),
        ("file:///etc/passwd", 400, "URLs are not fetched"),
        ("catalog/../anna.png", 400, "not a plain relative path"),
        ("catalog/notes.png", 400, "not an image"),
    ],
    ids=[
        "other-tenant",
        "outside-tenants",
        "missing",
        "other-bucket",
        "url",
        "file-url",
        "dot-dot",
        "not-an-image",
    ],
)
def test_references_the_tenant_may_not_use(api_client, settings, new_key, storage, person, status, needle):
    with api_client(settings, tenant="shop-a") as a:
        _put(a, "catalog/anna.png", _png(1))
        b = {"Authorization": f"Bearer {new_key(a, 'shop-b')}"}
        _put(a, "catalog/bob.png", _png(2), headers=b)  # tenant b's photo
        storage.put("tenants/shop-a/catalog/notes.png", b"some text, not a photo")
        response = a.post(
            "/v1/tryon",
            json={
                "person": person.format(bucket=settings.s3_bucket),
                "garment": "catalog/anna.png",
                "category": "dresses",
            },
        )
        assert response.status_code == status, response.text
        assert needle in response.json()["error"] and "person" in response.json()["error"]
        assert response.json()["detail"]["field"] == "person"
        assert a.app.state.ctx.store.counts_by_status()["queued"] == 0


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ({"json": ["person", "garment"]}, 400, "the JSON body is an object"),
        ({"json": {"person": "a.png"}}, 422, "garment"),  # the category may be left out: it is inferred
        (
            {"json": {"person": "a.png", "garment": "b.png", "category": "dresses", "colour": 1}},
            422,
            "colour",
        ),
        ({"content": b"person=a", "headers": {"Content-Type": "text/plain"}}, 415, "multipart/form-data"),
    ],
    ids=["bad-json", "not-an-object", "no-garment", "unknown-field", "text"],
)
def test_malformed_json_bodies_answer_4xx(api_client, settings, kwargs, status, needle):
    with api_client(settings) as a:
        response = a.post("/v1/tryon", **kwargs)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]
