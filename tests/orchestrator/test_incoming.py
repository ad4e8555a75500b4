"""Incoming garments: each photo dropped into a tenant's watched prefix becomes one batch over its model photos,
once, whichever replica lists it first; what cannot be processed gets a manifest that says why.

The orchestrators here run no workers: a scan (the poller's call) is made by the test, the jobs stay queued, and
what is checked is what the scan made. Jobs running to their results: tests/integration/test_catalog.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from fastapi.testclient import TestClient

from vton.runtime import images


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return images.encode_png(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))


def _put(client, key: str, data: bytes) -> None:
    response = client.put(f"/v1/objects/{key}", content=data)
    assert response.status_code == 201, response.text


def _scan(client) -> list:
    return client.app.state.ctx.catalog.watcher.scan_all()


def _configure(client, **fields) -> dict:
    """The tenant's incoming settings changed through PUT /v1/incoming: the settings it answers with."""
    response = client.put("/v1/incoming", json=fields)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_defaults_watch_incoming_garments_with_the_model_photos_below_models(api_client, settings):
    with api_client(settings, tenant="shop-a") as c:
        shown = c.get("/v1/incoming").json()
    assert shown["enabled"] is True and shown["prefix"] == "incoming/garments/"
    assert shown["models_prefix"] == "models/" and shown["model_keys"] == []
    assert shown["results_prefix"] == "results/" and shown["recent"] == []
    assert shown["uri"] == f"s3://{settings.s3_bucket}/tenants/shop-a/incoming/garments/"
    assert shown["poll_interval_s"] == settings.incoming_poll_s


def test_each_new_garment_becomes_one_batch_over_the_model_photos(api_client, settings, storage):
    with api_client(settings, tenant="shop-a") as c:
        for i in range(3):
            _put(c, f"models/model-{i}.png", _png(i))
        _put(c, "incoming/garments/lower_body/pants.png", _png(10))
        _put(c, "incoming/garments/new/shirt.png", _png(11))  # no category folder: inferred
        storage.put("tenants/shop-a/incoming/garments/notes.txt", b"not a photo, not a garment")
        storage.put("tenants/shop-a/incoming/garments/.DS_Store", b"\0")
        # written past the API: results are named after the key, so one the API would refuse is left alone
        storage.put("tenants/shop-a/incoming/garments/odd/x#1.png", _png(12))
        made = _scan(c)
        again = _scan(c)  # the next poll finds nothing new
        shown = c.get("/v1/incoming").json()
        batches = {b.garments[0].name: c.get(f"/v1/batches/{b.id}").json() for b in made}
    assert again == [] and sorted(batches) == ["lower_body/pants.png", "new/shirt.png"]
    assert sorted(p["key"] for p in shown["recent"]) == [
        "incoming/garments/lower_body/pants.png",
        "incoming/garments/new/shirt.png",
    ]
    pants, shirt = batches["lower_body/pants.png"], batches["new/shirt.png"]
    for batch in (pants, shirt):
        assert batch["source"] == "incoming" and batch["total"] == 3 and batch["status"] == "queued"
        assert [p["name"] for p in batch["people"]] == ["model-0.png", "model-1.png", "model-2.png"]
    assert pants["garments"][0]["category"] == {
        "name": "lower_body",
        "inferred": False,
        "confidence": None,
        "scores": None,
    }
    assert shirt["garments"][0]["category"]["name"] is None  # inferred when its first job runs
    assert pants["manifest_key"] == "results/lower_body/pants/manifest.json"
    job = c.app.state.ctx.store.get(pants["jobs"][0]["id"])
    assert job.output_key == "tenants/shop-a/results/lower_body/pants/model-0.png"
    assert job.category == "lower_body" and job.key_id is None


def test_a_garment_is_picked_up_once_by_several_replicas_listing_at_the_same_time(api_client, settings):
    with api_client(settings, tenant="shop-a") as a, api_client(settings, tenant="shop-a") as b:
        _put(a, "models/model.png", _png(1))
        for i in range(6):
            _put(a, f"incoming/garments/upper_body/g{i}.png", _png(20 + i))
        start = threading.Barrier(2)
        made: dict[str, list] = {}

        def scan(name: str, client) -> None:
            start.wait()
            made[name] = _scan(client)

        threads = [threading.Thread(target=scan, args=pair) for pair in (("a", a), ("b", b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        queued = a.app.state.ctx.store.counts_by_status()["queued"]
    garments = sorted(batch.garments[0].name for batch in made["a"] + made["b"])
    assert garments == [f"upper_body/g{i}.png" for i in range(6)], "every garment once, none twice"
    assert queued == 6


def test_a_garment_that_cannot_be_processed_gets_a_manifest_that_says_why(api_client, settings, storage):
    with api_client(settings, tenant="shop-a") as c:
        _put(c, "incoming/garments/early.png", _png(1))  # before any model photo
        made = _scan(c)
        _put(c, "models/model.png", _png(2))
        storage.put("tenants/shop-a/incoming/garments/broken.jpg", b"\xff\xd8 not really a JPEG")
        made += _scan(c)
        finished = c.app.state.ctx.catalog.finish_ready()
        shown = {b.garments[0].name: c.get(f"/v1/batches/{b.id}").json() for b in made}
    assert sorted(finished) == sorted(b.id for b in made)
    assert shown["early.png"]["error"] == "no model photos below models/: put some there first"
    assert shown["broken.jpg"]["error"].startswith("the garment image: the JPEG has no frame header")
    for name, batch in shown.items():
        assert batch["status"] == "finished" and batch["total"] == 0 and batch["progress"] == 1.0
        manifest = json.loads(storage.get(f"tenants/shop-a/results/{name.rsplit('.', 1)[0]}/manifest.json"))
        (row,) = manifest["rows"]
        assert row["garment"] == name and row["status"] == "failed" and row["error"] == batch["error"]
        csv_text = storage.get(f"tenants/shop-a/results/{name.rsplit('.', 1)[0]}/manifest.csv").decode()
        assert csv_text.splitlines()[0].startswith("garment,person,category") and "failed" in csv_text


@contextmanager
def _two_models_and_a_queue_of(api_client, settings, jobs: int) -> Iterator[TestClient]:
    """A client of shop-a, whose queue holds `jobs` try-ons, with two model photos in place."""
    small = settings.model_copy(update={"max_queued_jobs_per_tenant": jobs})
    with api_client(small, tenant="shop-a") as c:
        _put(c, "models/a.png", _png(1))
        _put(c, "models/b.png", _png(2))
        yield c


def test_a_full_queue_leaves_new_garments_for_a_later_scan(api_client, settings):
    with _two_models_and_a_queue_of(api_client, settings, jobs=3) as c:
        _put(c, "incoming/garments/upper_body/one.png", _png(3))
        _put(c, "incoming/garments/upper_body/two.png", _png(4))
        first = _scan(c)  # room for one garment's two jobs, not for the second's
        seen = [p["key"] for p in c.get("/v1/incoming").json()["recent"]]
    assert [b.garments[0].name for b in first] == ["upper_body/one.png"]
    assert seen == ["incoming/garments/upper_body/one.png"], (
        "the second is not marked seen: a later scan takes it"
    )


def test_more_model_photos_than_the_queue_holds_is_an_error_not_a_wait(api_client, settings):
    with _two_models_and_a_queue_of(api_client, settings, jobs=1) as c:
        _put(c, "incoming/garments/dresses/d.png", _png(3))
        (batch,) = _scan(c)
    assert batch.error == "2 model photos are more try-ons than your queue holds (1)"


def test_settings_name_other_prefixes_and_a_list_of_model_photos(api_client, settings, new_key):
    with api_client(settings, tenant="shop-a") as c:
        _put(c, "catalog/people/anna.png", _png(1))
        _put(c, "drop/garments/upper_body/top.png", _png(2))
        _put(c, "incoming/garments/upper_body/ignored.png", _png(3))
        configured = _configure(
            c, prefix="drop/garments/", model_keys=["catalog/people/anna.png"], results_prefix="out/"
        )
        (batch,) = _scan(c)
        other = c.get("/v1/incoming", headers={"Authorization": f"Bearer {new_key(c, 'shop-b')}"}).json()
        shown = c.get(f"/v1/batches/{batch.id}").json()
    assert configured["models_prefix"] is None and configured["model_keys"] == ["catalog/people/anna.png"]
    assert batch.garments[0].key == "tenants/shop-a/drop/garments/upper_body/top.png"
    assert [p["name"] for p in shown["people"]] == ["catalog/people/anna.png"]
    assert shown["manifest_key"] == "out/upper_body/top/manifest.json"
    assert other["prefix"] == "incoming/garments/" and other["recent"] == [], "settings are the tenant's own"


_REFUSED = [
    ({"prefix": "incoming"}, "prefix", "must end with '/'"),
    ({"results_prefix": "incoming/garments/results/"}, "prefix", "overlap"),
    ({"models_prefix": "incoming/"}, "models_prefix", "overlap"),
    ({"prefix": "batches/in/"}, "prefix", "batches/ is the platform's"),
    ({"prefix": "../other/"}, "prefix", "not a plain relative path"),
    ({"models_prefix": None}, "models_prefix", "name the model photos"),
    ({"model_keys": ["incoming/garments/x.png"]}, "model_keys", "inside the watched prefix"),
]


def test_settings_that_cannot_work_answer_422_naming_the_field(api_client, settings):
    with api_client(settings) as c:
        for body, field, needle in _REFUSED:
            response = c.put("/v1/incoming", json=body)
            assert response.status_code == 422, (body, response.text)
            assert needle in response.json()["error"] and response.json()["detail"]["field"] == field, body
        unchanged = c.get("/v1/incoming").json()
    assert unchanged["prefix"] == "incoming/garments/"
