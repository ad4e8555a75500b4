"""The category of a try-on is optional: a request without one gets a job whose first step infers it from the
garment photo, and whose JSON says, before and after, whether it was inferred and how surely.

The inference itself (the warp stage's ClassifyGarment, once per garment of a batch, its failures) runs in
tests/orchestrator/test_batches.py, where real stage services answer.
"""

from __future__ import annotations

import numpy as np

from vton.runtime import images
from vton.runtime.vocab import JOB_STEPS


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return images.encode_png(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))


def test_a_tryon_without_a_category_is_accepted_and_will_infer_it_first(api_client, settings):
    files = {"person": ("p.png", _png(1)), "garment": ("g.png", _png(2))}
    with api_client(settings) as c:  # no workers: the job stays queued
        uploaded = c.post("/v1/tryon", files=files)
        assert c.put("/v1/objects/p.png", content=_png(1)).status_code == 201
        assert c.put("/v1/objects/g.png", content=_png(2)).status_code == 201
        referenced = c.post("/v1/tryon", json={"person": "p.png", "garment": "g.png", "seed": 3})
        jobs = [c.get(r.headers["location"]).json() for r in (uploaded, referenced)]
    assert (uploaded.status_code, referenced.status_code) == (202, 202), (uploaded.text, referenced.text)
    for job in jobs:
        assert job["options"]["category"] is None
        assert job["category"] == {"name": None, "inferred": False, "confidence": None, "scores": None}
        assert list(job["stages"]) == ["category", *JOB_STEPS]
        assert {s["status"] for s in job["stages"].values()} == {"pending"}


def test_a_named_category_is_the_jobs_and_no_step_infers_it(api_client, settings):
    files = {"person": ("p.png", _png(1)), "garment": ("g.png", _png(2))}
    with api_client(settings) as c:
        job = c.get(c.post("/v1/tryon", files=files, data={"category": "dresses"}).headers["location"]).json()
        refused = c.post("/v1/tryon", files=files, data={"category": "hats"})
    assert job["options"]["category"] == "dresses" and list(job["stages"]) == list(JOB_STEPS)
    assert job["category"] == {"name": "dresses", "inferred": False, "confidence": None, "scores": None}
    assert refused.status_code == 422 and "unknown category 'hats'" in refused.json()["error"]
