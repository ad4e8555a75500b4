"""Catalog batches and category inference through the real stage services (embedded backends, in this process).

A counting proxy sits between the orchestrator and the stages: it forwards every call untouched and counts them
by method, so a test sees how often each stage was really asked. It also answers the warp stage's
ClassifyGarment itself (with what a test sets), so the orchestrator's side of category inference is tested
whatever the warp stage's classifier says.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import time
from collections import Counter
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx
import numpy as np
import pytest

from vton.runtime import images, proto_vocab
from vton.runtime.vocab import CATEGORIES, STAGES
from vton.v1 import warp_pb2

CLASSIFY = "/vton.v1.WarpService/ClassifyGarment"


class CountingProxy:
    """One gRPC server in front of the five stage services: every call is counted by method name and forwarded
    as bytes to the stage that serves it; ClassifyGarment is answered from `guesses` (garment bytes' sha256 ->
    (category, confidence)), or refused with FAILED_PRECONDITION / UNIMPLEMENTED as `classify_error` says."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.calls: Counter[str] = Counter()
        self.guesses: dict[str, tuple[str, float]] = {}
        self.classify_error: grpc.StatusCode | None = None
        self._lock = threading.Lock()
        limits = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        self.channels = {
            f"vton.v1.{name}Service": grpc.insecure_channel(addresses[stage], options=limits)
            for stage, name in zip(STAGES, ("Pose", "DensePose", "Parsing", "Warp", "Diffusion"), strict=True)
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=limits)
        self.server.add_generic_rpc_handlers([self])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self._call(details, request, context)
        )

    def _call(self, details: grpc.HandlerCallDetails, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls[details.method.rsplit("/", 1)[-1]] += 1
        if details.method == CLASSIFY:
            return self._classify(warp_pb2.ClassifyGarmentRequest.FromString(request), context)
        service = details.method.strip("/").split("/")[0]
        channel = self.channels.get(service, next(iter(self.channels.values())))  # health: any stage
        try:
            return channel.unary_unary(details.method)(
                request, timeout=context.time_remaining(), metadata=context.invocation_metadata()
            )
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details())

    def _classify(self, request: warp_pb2.ClassifyGarmentRequest, context: grpc.ServicerContext) -> bytes:
        if self.classify_error is not None:
            context.abort(self.classify_error, "no garment stands out from the background")
        category, confidence = self.guesses.get(
            hashlib.sha256(request.garment.data).hexdigest(), ("upper_body", 0.9)
        )
        rest = (1 - confidence) / 2
        return warp_pb2.ClassifyGarmentResponse(
            category=proto_vocab.category_enum(category),
            confidence=confidence,
            scores=[
                warp_pb2.CategoryScore(
                    category=proto_vocab.category_enum(c), score=confidence if c == category else rest
                )
                for c in CATEGORIES
            ],
        ).SerializeToString()

    def guess(self, garment: bytes, category: str, confidence: float) -> None:
        self.guesses[hashlib.sha256(garment).hexdigest()] = (category, confidence)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0)
        for channel in self.channels.values():
            channel.close()


@pytest.fixture
def proxy(real_stages):
    counting = CountingProxy(real_stages)
    yield counting
    counting.stop()


@pytest.fixture
def running(settings, proxy):
    """Settings of an orchestrator with two workers whose stages are behind the counting proxy."""
    return settings.model_copy(
        update={**{f"{stage}_addr": proxy.address for stage in STAGES}, "workers": 2, "stage_timeout_s": 120}
    )


@pytest.fixture
def photos(examples):
    return {
        "anna": (examples / "avatars" / "1.png").read_bytes(),
        "ben": (examples / "avatars" / "2.png").read_bytes(),
        "shirt": (examples / "clothes" / "shirts" / "1_front.jpg").read_bytes(),
        "pants": (examples / "clothes" / "pants" / "1_front.jpg").read_bytes(),
        "jacket": (examples / "clothes" / "jackets" / "2_front.jpg").read_bytes(),
    }


def _wait_batch(client, batch_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] == "finished":
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not finish: {batch}")


# --- batches ------------------------------------------------------------------------------------------------------


def test_a_batch_tries_every_garment_on_every_person_and_analyses_each_person_once(
    running, proxy, photos, api_client, storage
):
    proxy.guess(photos["jacket"], "upper_body", 0.81)
    files = [
        ("people", ("anna.png", photos["anna"], "image/png")),
        ("people", ("ben.png", photos["ben"], "image/png")),
        ("garments", ("shirt.jpg", photos["shirt"], "image/jpeg")),
        ("garments", ("pants.jpg", photos["pants"], "image/jpeg")),
        ("garments", ("jacket.jpg", photos["jacket"], "image/jpeg")),
    ]
    # the jacket names no category: it is inferred from its photo, once for the batch
    data = {"categories": ["upper_body", "lower_body", ""], "seed": "7"}
    with api_client(running, tenant="shop-a") as c:
        accepted = c.post("/v1/batches", files=files, data=data)
        assert accepted.status_code == 202, accepted.text
        assert (
            accepted.json()["total"] == 6
            and accepted.headers["location"] == f"/v1/batches/{accepted.json()['id']}"
        )
        batch = _wait_batch(c, accepted.json()["id"])
        jobs = [c.get(j["links"]["self"]).json() for j in batch["jobs"]]

    assert batch["counts"] == {"queued": 0, "running": 0, "succeeded": 6, "failed": 0}, batch["jobs"]
    assert batch["progress"] == 1.0 and batch["total"] == 6 and batch["source"] == "api"
    assert [p["name"] for p in batch["people"]] == ["anna.png", "ben.png"]
    assert [p["analysis"] for p in batch["people"]] == ["succeeded", "succeeded"]
    assert [(g["name"], g["category"]["name"], g["category"]["inferred"]) for g in batch["garments"]] == [
        ("shirt.jpg", "upper_body", False),
        ("pants.jpg", "lower_body", False),
        ("jacket.jpg", "upper_body", True),
    ]
    assert batch["garments"][2]["category"]["confidence"] == pytest.approx(0.81)
    # each person's pose, densepose and parsing ran once; the garment steps once per job; the jacket's
    # category was asked for once
    assert {m: proxy.calls[m] for m in ("EstimatePose", "EstimateDensePose", "Parse")} == {
        "EstimatePose": 2,
        "EstimateDensePose": 2,
        "Parse": 2,
    }
    assert {m: proxy.calls[m] for m in ("CreateAgnosticMask", "WarpGarment", "TryOn", "ClassifyGarment")} == {
        "CreateAgnosticMask": 6,
        "WarpGarment": 6,
        "TryOn": 6,
        "ClassifyGarment": 1,
    }
    reused = [all(j["stages"][s]["reused"] for s in ("pose", "densepose", "parsing")) for j in jobs]
    assert sorted(reused) == [False, False, True, True, True, True]
    for job in jobs:  # every job lists the person's artifacts, whichever job made them
        assert {"pose", "densepose", "parsing", "agnostic_mask", "warped_garment"} <= set(job["artifacts"])
        assert job["batch"] == batch["id"] and job["options"]["seed"] == 7
    assert [j["category"]["inferred"] for j in jobs] == [False] * 4 + [True] * 2
    assert all(j["stages"]["category"]["reused"] for j in jobs[4:]) is False  # the first jacket job asked
    assert sum(j["stages"]["category"]["reused"] for j in jobs[4:]) == 1

    # results under the batch's prefix, named garment/person; the manifest beside them, JSON and CSV
    prefix = f"tenants/shop-a/batches/{batch['id']}/"
    for job in batch["jobs"]:
        garment = batch["garments"][job["garment"]]["name"].rsplit(".", 1)[0]
        person = batch["people"][job["person"]]["name"].rsplit(".", 1)[0]
        result = images.decode_rgb(storage.get(f"{prefix}results/{garment}/{person}.png"))
        assert result.shape == (1376, 768, 3)
        assert httpx.get(job["result_url"], timeout=10).content == storage.get(
            f"{prefix}results/{garment}/{person}.png"
        )
    manifest = json.loads(httpx.get(batch["manifest_url"], timeout=10).content)
    rows = manifest["rows"]
    assert manifest["counts"]["succeeded"] == 6 and len(rows) == 6
    assert [(r["garment"], r["person"]) for r in rows] == [
        (g, p) for g in ("shirt.jpg", "pants.jpg", "jacket.jpg") for p in ("anna.png", "ben.png")
    ]
    first = rows[0]
    assert first["status"] == "succeeded" and first["error"] is None and first["seconds"] > 0
    assert first["result_key"] == f"batches/{batch['id']}/results/shirt/anna.png"
    assert first["result_uri"] == f"s3://{running.s3_bucket}/{prefix}results/shirt/anna.png"
    assert set(first["backends"]) == {"pose", "densepose", "parsing", "agnostic_mask", "warp", "diffusion"}
    assert rows[-1]["category"] == "upper_body" and rows[-1]["category_inferred"] is True
    table = list(csv.DictReader(io.StringIO(httpx.get(batch["manifest_csv_url"], timeout=10).text)))
    assert [(r["garment"], r["person"], r["status"]) for r in table] == [
        (r["garment"], r["person"], r["status"]) for r in rows
    ]
    assert table[0]["backends"].startswith("pose=") and table[-1]["category_inferred"] == "true"
    assert storage.head(f"{prefix}manifest.csv") is not None


def test_a_photo_without_a_person_fails_all_its_jobs_after_one_analysis(running, proxy, photos, api_client):
    files = [
        ("people", ("anna.png", photos["anna"])),
        ("people", ("shirt-as-person.jpg", photos["shirt"])),
        ("garments", ("shirt.jpg", photos["shirt"])),
        ("garments", ("jacket.jpg", photos["jacket"])),
    ]
    with api_client(running) as c:
        batch_id = c.post("/v1/batches", files=files, data={"category": "upper_body"}).json()["id"]
        batch = _wait_batch(c, batch_id)
    assert batch["counts"]["succeeded"] == 2 and batch["counts"]["failed"] == 2
    assert [p["analysis"] for p in batch["people"]] == ["succeeded", "failed"]
    assert "no person found" in batch["people"][1]["error"]
    failed = [j for j in batch["jobs"] if j["status"] == "failed"]
    assert {j["person"] for j in failed} == {1} and all("no person found" in j["error"] for j in failed)
    assert proxy.calls["EstimatePose"] == 2, "the failing photo is analysed once, not once per garment"
    rows = json.loads(httpx.get(batch["manifest_url"], timeout=10).content)["rows"]
    assert [(r["person"], r["status"]) for r in rows] == [
        ("anna.png", "succeeded"),
        ("shirt-as-person.jpg", "failed"),
    ] * 2
    assert all(
        r["result_key"] is None and "no person found" in r["error"] for r in rows if r["status"] == "failed"
    )


def test_a_batch_by_reference_posts_its_json_to_its_callback_when_finished(running, photos, api_client):
    """JSON naming the tenant's objects; the finished batch is POSTed, signed, to a receiver on this machine."""
    received: list[tuple[dict, dict]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(
                (json.loads(self.rfile.read(int(self.headers["Content-Length"]))), dict(self.headers))
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    local = running.model_copy(update={"webhook_allowed_networks": ("127.0.0.0/8",)})
    try:
        with api_client(local, tenant="shop-a") as c:
            for name in ("anna", "ben"):
                assert c.put(f"/v1/objects/models/{name}.png", content=photos[name]).status_code == 201
            assert c.put("/v1/objects/catalog/pants.jpg", content=photos["pants"]).status_code == 201
            body = {
                "people": ["models/anna.png", f"s3://{local.s3_bucket}/tenants/shop-a/models/ben.png"],
                "garments": [{"key": "catalog/pants.jpg", "category": "lower_body"}],
                "callback_url": f"http://127.0.0.1:{hook.server_address[1]}/batches",
            }
            accepted = c.post("/v1/batches", json=body)
            assert accepted.status_code == 202, accepted.text
            batch = _wait_batch(c, accepted.json()["id"])
            deadline = time.monotonic() + 30
            while not received and time.monotonic() < deadline:
                time.sleep(0.2)
            shown = c.get(f"/v1/batches/{batch['id']}").json()
    finally:
        hook.shutdown()
    assert batch["counts"]["succeeded"] == 2
    assert [p["name"] for p in batch["people"]] == ["models/anna.png", "models/ben.png"]
    rows = json.loads(httpx.get(batch["manifest_url"], timeout=10).content)["rows"]
    assert [r["result_key"] for r in rows] == [
        f"batches/{batch['id']}/results/catalog/pants/models/anna.png",
        f"batches/{batch['id']}/results/catalog/pants/models/ben.png",
    ]
    (payload, headers), *_ = received
    assert payload["id"] == batch["id"] and payload["status"] == "finished" and payload["total"] == 2
    assert headers["X-Vton-Event"] == "batch.finished" and headers["X-Vton-Signature"].startswith("v1=")
    assert (
        shown["callback"]["status"] == "delivered" and shown["callback"]["attempts"][0]["status_code"] == 204
    )


# --- category inference -------------------------------------------------------------------------------------------


def test_a_tryon_without_a_category_has_it_inferred_first_and_says_how_sure(
    running, proxy, photos, api_client
):
    proxy.guess(photos["pants"], "lower_body", 0.87)
    files = {"person": ("anna.png", photos["anna"]), "garment": ("pants.jpg", photos["pants"])}
    with api_client(running) as c:
        response = c.post("/v1/tryon?wait=true", files=files)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["options"]["category"] == "lower_body"
    assert job["category"]["name"] == "lower_body" and job["category"]["inferred"] is True
    assert job["category"]["confidence"] == pytest.approx(0.87)
    assert job["category"]["scores"] == pytest.approx(
        {"upper_body": 0.065, "lower_body": 0.87, "dresses": 0.065}
    )
    assert list(job["stages"])[0] == "category" and job["stages"]["category"]["status"] == "succeeded"
    assert proxy.calls["ClassifyGarment"] == 1


@pytest.mark.parametrize(
    ("code", "status", "error_code", "needle"),
    [
        (grpc.StatusCode.FAILED_PRECONDITION, 422, "no_garment", "no garment stands out"),
        (grpc.StatusCode.UNIMPLEMENTED, 502, "stage_error", "cannot infer a garment's category"),
    ],
    ids=["no-garment", "warp-predates-classify"],
)
def test_a_garment_whose_category_cannot_be_inferred_fails_before_the_person_stages(
    running, proxy, photos, api_client, code, status, error_code, needle
):
    proxy.classify_error = code
    files = {"person": ("anna.png", photos["anna"]), "garment": ("pants.jpg", photos["pants"])}
    with api_client(running) as c:
        response = c.post("/v1/tryon?wait=true", files=files)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]
    job = response.json()["detail"]
    assert job["error_stage"] == "category" and job["error_code"] == error_code
    assert job["stages"]["category"]["status"] == "failed"
    assert job["stages"]["pose"]["status"] == "skipped" and proxy.calls["EstimatePose"] == 0


# --- what a batch request may be, and whose it is (no job runs here) -------------------------------------------


def _noise(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return images.encode_png(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))


def _upload(people: int = 2, garments: int = 2, **data) -> dict:
    files = [("people", (f"p{i}.png", _noise(i))) for i in range(people)]
    files += [("garments", (f"g{i}.png", _noise(100 + i))) for i in range(garments)]
    return {"files": files, "data": data}


def test_another_tenants_batch_answers_404_as_one_that_does_not_exist(api_client, settings, new_key):
    with api_client(settings, tenant="shop-a") as a:
        batch_id = a.post("/v1/batches", **_upload()).json()["id"]
        b = {"Authorization": f"Bearer {new_key(a, 'shop-b')}"}
        mine = a.get(f"/v1/batches/{batch_id}")
        theirs = a.get(f"/v1/batches/{batch_id}", headers=b)
        unknown = a.get(f"/v1/batches/{'0' * 32}", headers=b)
        malformed = a.get("/v1/batches/..%2F..%2Fetc", headers=b)
        job = mine.json()["jobs"][0]["id"]
        their_job = a.get(f"/v1/jobs/{job}", headers=b)
    assert mine.status_code == 200 and mine.json()["tenant"] == "shop-a" and mine.json()["status"] == "queued"
    assert theirs.status_code == unknown.status_code == malformed.status_code == their_job.status_code == 404
    assert theirs.json()["error"] == f"no batch with id {batch_id!r}"


def test_a_batch_keeps_its_uploads_under_the_tenants_batch_prefix_named_after_the_files(
    api_client, settings, storage
):
    files = [
        ("people", ("anna.png", _noise(1))),
        ("people", ("../anna.png", _noise(2))),  # a path and a repeated name: made safe and unique
        ("garments", ("red shirt.png", _noise(3))),
    ]
    with api_client(settings, tenant="shop-a") as c:
        batch = c.get(c.post("/v1/batches", files=files).headers["location"]).json()
    assert [p["name"] for p in batch["people"]] == ["anna.png", "anna-2.png"]
    assert batch["garments"][0]["name"] == "red_shirt.png"
    prefix = f"tenants/shop-a/batches/{batch['id']}/inputs/"
    assert sorted(o.key for o in storage.list("")) == [
        prefix + "garments/0.png",
        prefix + "people/0.png",
        prefix + "people/1.png",
    ]
    assert batch["people"][1]["key"] == f"batches/{batch['id']}/inputs/people/1.png"
    assert httpx.get(batch["people"][1]["url"], timeout=10).content == _noise(2)
    assert batch["manifest_key"] == f"batches/{batch['id']}/manifest.json" and batch["manifest_url"] is None


_BAD_BATCHES = [
    (_upload(people=0), 422, "people"),
    (_upload(categories=["upper_body"]), 422, "categories: 1 given for 2 garments"),
    (_upload(categories=["upper_body", "hats"]), 422, "categories[1]: unknown category 'hats'"),
    (_upload(category="hats"), 422, "unknown category 'hats'"),
    (_upload(steps="0"), 422, "steps"),
    ({"files": [("people", ("p.png", b"text")), ("garments", ("g.png", _noise(1)))]}, 400, "people[0]"),
    ({"json": {"people": ["models/nobody.png"], "garments": ["g.png"]}}, 404, "people[0]: no object"),
    ({"json": {"people": ["https://example.com/p.png"], "garments": ["g.png"]}}, 400, "URLs are not fetched"),
    ({"json": {"people": ["p.png"], "garments": [{"key": "g.png", "colour": "red"}]}}, 422, "colour"),
    ({"content": b"people=1", "headers": {"Content-Type": "text/plain"}}, 415, "multipart/form-data"),
]


def test_bad_batches_answer_4xx_naming_the_problem_and_queue_nothing(api_client, settings):
    with api_client(settings) as c:
        for request, status, needle in _BAD_BATCHES:
            response = c.post("/v1/batches", **request)
            assert response.status_code == status, (needle, response.text)
            assert needle in str(response.json()), response.json()
        queued = c.app.state.ctx.store.counts_by_status()["queued"]
    assert queued == 0


def test_a_batch_larger_than_the_queue_is_refused_and_a_full_queue_answers_429(api_client, settings):
    small = settings.model_copy(update={"max_queued_jobs_per_tenant": 5})
    with api_client(small) as c:
        too_big = c.post("/v1/batches", **_upload(people=2, garments=3))
        first = c.post("/v1/batches", **_upload(people=2, garments=2))
        full = c.post("/v1/batches", **_upload(people=1, garments=2))
    assert (
        too_big.status_code == 422 and "6 try-ons, more than your queue holds (5)" in too_big.json()["error"]
    )
    assert first.status_code == 202
    assert full.status_code == 429 and full.headers["retry-after"]


def test_an_idempotency_key_returns_the_first_batch_for_a_retry(api_client, settings):
    headers = {"Idempotency-Key": "catalog-2026-01"}
    with api_client(settings) as c:
        first = c.post("/v1/batches", headers=headers, **_upload(seed="4"))
        retry = c.post("/v1/batches", headers=headers, **_upload(seed="4"))
        other = c.post("/v1/batches", headers=headers, **_upload(seed="5"))
        queued = c.app.state.ctx.store.counts_by_status()["queued"]
    assert first.status_code == retry.status_code == 202 and retry.json()["id"] == first.json()["id"]
    assert retry.headers["idempotent-replayed"] == "true" and queued == 4
    assert other.status_code == 422 and "was used with a different request" in other.json()["error"]
