"""Tenants: a tenant sees its own jobs only (another's id answers 404), its objects live under its own S3
prefix, and the queue is bounded per tenant and in all (429 with Retry-After)."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.tenants import (
    NotTheTenantsObject,
    TenantError,
    check_relative_key,
    check_tenant_id,
    job_prefix,
    object_key,
)
from vton.runtime import images


def _png(seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    return images.encode_png(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))


def _form(seed: int = 1) -> dict:
    return {
        "files": {"person": ("p.png", _png(seed)), "garment": ("g.png", _png(seed + 100))},
        "data": {"category": "upper_body"},
    }


def test_a_tenant_sees_its_own_jobs_and_another_tenants_id_answers_404(api_client, settings, new_key):
    with api_client(settings, tenant="shop-a") as a:
        job_id = a.post("/v1/tryon", **_form()).json()["id"]
        other_key_of_a = new_key(a, "shop-a")
        b_key = new_key(a, "shop-b")
        mine = a.get(f"/v1/jobs/{job_id}")
        assert mine.status_code == 200 and mine.json()["tenant"] == "shop-a"
        # another key of the same tenant sees it too
        assert (
            a.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {other_key_of_a}"}).status_code
            == 200
        )
        b = {"Authorization": f"Bearer {b_key}"}
        unknown = a.get(f"/v1/jobs/{'f' * 32}", headers=b)
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
            theirs = a.get(path, headers=b)
            assert theirs.status_code == 404, path
            assert theirs.json()["error"] == f"no job with id {job_id!r}", (
                "the same answer as for no job at all"
            )
        assert unknown.status_code == 404


def test_a_tenants_job_keeps_its_objects_under_the_tenants_prefix(api_client, settings, storage):
    with api_client(settings, tenant="shop-a") as a:
        job = a.get(a.post("/v1/tryon", **_form()).headers["location"]).json()
    prefix = f"tenants/shop-a/jobs/{job['id']}/"
    assert sorted(o.key for o in storage.list("")) == [
        prefix + "inputs/garment.png",
        prefix + "inputs/person.png",
    ]
    assert f"/{prefix}inputs/person.png" in job["inputs"]["person"]


def test_the_tenant_route_tells_the_prefix_and_the_webhook_secret(api_client, settings, new_key):
    with api_client(settings, tenant="shop-a") as a:
        tenant = a.get("/v1/tenant").json()
        again = a.get("/v1/tenant", headers={"Authorization": f"Bearer {new_key(a, 'shop-a')}"}).json()
        other = a.get("/v1/tenant", headers={"Authorization": f"Bearer {new_key(a, 'shop-b')}"}).json()
    assert tenant["id"] == "shop-a" and tenant["prefix"] == f"s3://{settings.s3_bucket}/tenants/shop-a/"
    assert len(tenant["webhook_secret"]) == 64 and tenant["webhook_secret"] == again["webhook_secret"]
    assert tenant["key_id"] != again["key_id"]
    assert other["webhook_secret"] != tenant["webhook_secret"]


def test_a_tenants_full_queue_answers_429_and_other_tenants_go_on(api_client, settings, new_key, storage):
    bounded = settings.model_copy(update={"max_queued_jobs_per_tenant": 2})
    with api_client(bounded, tenant="shop-a") as a:  # no workers: jobs stay queued
        assert [a.post("/v1/tryon", **_form(i)).status_code for i in range(2)] == [202, 202]
        full = a.post("/v1/tryon", **_form(7))
        assert full.status_code == 429
        assert full.headers["retry-after"] == "10"
        assert full.json()["detail"]["reason"] == "tenant_queue_full"
        assert "you have 2 jobs queued, the limit is 2" in full.json()["error"]
        b = {"Authorization": f"Bearer {new_key(a, 'shop-b')}"}
        assert a.post("/v1/tryon", headers=b, **_form(8)).status_code == 202
        assert a.app.state.ctx.store.counts_by_status()["queued"] == 3
    assert len(storage.list("tenants/shop-a/")) == 4, "nothing of the refused job was stored"


def test_the_platforms_full_queue_answers_429_to_every_tenant(api_client, settings, new_key):
    bounded = settings.model_copy(update={"max_queued_jobs": 3, "max_queued_jobs_per_tenant": 10})
    with api_client(bounded, tenant="shop-a") as a:
        b = {"Authorization": f"Bearer {new_key(a, 'shop-b')}"}
        assert [a.post("/v1/tryon", **_form(i)).status_code for i in range(2)] == [202, 202]
        assert a.post("/v1/tryon", headers=b, **_form(3)).status_code == 202
        full = a.post("/v1/tryon", headers=b, **_form(4))
    assert full.status_code == 429 and full.headers["retry-after"] == "10"
    assert full.json()["detail"]["reason"] == "queue_full"


# --- the tenant model's rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["shop", "a", "shop-42", "x" * 64])
def test_valid_tenant_ids(tenant):
    assert check_tenant_id(tenant) == tenant
    assert job_prefix(tenant, "j1") == f"tenants/{tenant}/jobs/j1/"


@pytest.mark.parametrize("tenant", ["", "Shop", "shop/b", "-shop", "shop-", "sh.op", "x" * 65, "../b"])
def test_tenant_ids_that_could_not_be_a_path_segment_are_refused(tenant):
    with pytest.raises(TenantError, match="not a valid tenant id"):
        check_tenant_id(tenant)


@pytest.mark.parametrize(
    "key", ["a/../b.png", "../b.png", "./a.png", "a//b.png", "/a.png", "a\\b.png", "a\nb", ""]
)
def test_object_keys_that_could_leave_the_prefix_are_refused(key):
    with pytest.raises(TenantError):
        check_relative_key(key)


def test_references_resolve_below_the_tenants_prefix_only():
    assert object_key("shop", "catalog/a b.png", "vton") == "tenants/shop/catalog/a b.png"
    assert object_key("shop", "s3://vton/tenants/shop/catalog/a.png", "vton") == "tenants/shop/catalog/a.png"
    with pytest.raises(NotTheTenantsObject):
        object_key("shop", "s3://vton/tenants/other/catalog/a.png", "vton")
    with pytest.raises(NotTheTenantsObject):
        object_key("shop", "s3://vton/jobs/abc/result.png", "vton")
    with pytest.raises(NotTheTenantsObject):  # a prefix of the id is not the tenant
        object_key("shop", "s3://vton/tenants/shopping/a.png", "vton")
    with pytest.raises(TenantError, match="only objects in the platform's bucket 'vton'"):
        object_key("shop", "s3://elsewhere/tenants/shop/a.png", "vton")
    with pytest.raises(TenantError, match="URLs are not fetched"):
        object_key("shop", "https://example.com/a.png", "vton")
    with pytest.raises(TenantError):
        object_key("shop", "s3://vton/tenants/shop/../other/a.png", "vton")
