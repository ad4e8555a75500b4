"""The HTTP API with FastAPI's TestClient over a real S3 server (SeaweedFS) and a SQLite job store.

Requests are checked before anything is stored; a job runs pose, densepose and parsing at once, then the
mask, the warp and the diffusion; failures of a stage come back as the HTTP status a client can act on.
The stage servers here are gRPC stand-ins that speak the real `vton.v1` protocol and return simple images
derived from the request (the stages' own behaviour is tested with the services).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent import futures

import grpc
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health, health_pb2_grpc

from orchestrator.app import create_app
from orchestrator.jobs import JobStore
from orchestrator.settings import Settings
from vton.runtime import images, messages
from vton.runtime.vocab import CATEGORIES, STAGES
from vton.v1 import (
    common_pb2,
    densepose_pb2,
    densepose_pb2_grpc,
    diffusion_pb2,
    diffusion_pb2_grpc,
    parsing_pb2,
    parsing_pb2_grpc,
    pose_pb2,
    pose_pb2_grpc,
    warp_pb2,
    warp_pb2_grpc,
)

ARTIFACTS = {
    "pose",
    "pose_skeleton",
    "densepose",
    "parsing",
    "label_map",
    "agnostic_mask",
    "masked_person",
    "garment_mask",
    "warped_garment",
    "warped_mask",
}


def _png(width: int = 48, height: int = 64, value: int = 128) -> bytes:
    rng = np.random.default_rng(value)
    return images.encode_png(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG stream whose IHDR claims width x height, with one tiny compressed row: a 60-megapixel
    probe of a few dozen bytes instead of 180 MB of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _form(person: bytes | None = None, garment: bytes | None = None, **fields) -> dict:
    files = {
        "person": ("person.png", _png() if person is None else person, "image/png"),
        "garment": ("garment.png", _png(40, 40, 7) if garment is None else garment, "image/png"),
    }
    return {"files": files, "data": {"category": "upper_body", **fields}}


@pytest.fixture
def client(settings: Settings, api_client):
    with api_client(settings) as c:
        yield c


# --- bad requests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "status", "needle"),
    [
        (_form(person=b"plain text, not a photo"), 400, "person image: the file is not an image"),
        (_form(garment=b"GIF89a not supported either"), 400, "garment image: the file is not an image"),
        (_form(person=b""), 400, "the person image is empty"),
        (
            _form(category="hats"),
            422,
            "unknown category 'hats'; choose one of: upper_body, lower_body, dresses",
        ),
        (_form(person=_png_header_only(10000, 6000)), 413, "60.0 megapixels"),
        (_form(person=_png(16, 16)), 400, "at least 32 pixels"),
        (_form(steps="0"), 422, "steps"),
        (_form(guidance_scale="-1"), 422, "guidance_scale"),
        (_form(seed="minus one"), 422, "seed"),
        (
            {"files": {"person": ("p.png", _png())}, "data": {"category": "dresses"}},
            422,
            "garment: field required",
        ),
    ],
    ids=[
        "not-an-image",
        "garment-not-an-image",
        "empty",
        "unknown-category",
        "60-megapixels",
        "too-small",
        "steps",
        "guidance",
        "seed",
        "missing-garment",
    ],
)
def test_bad_requests_answer_4xx_json_naming_the_problem(client, form, status, needle):
    response = client.post("/v1/tryon", **form)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert needle.lower() in body["error"].lower()
    assert client.app.state.ctx.store.counts_by_status()["queued"] == 0, "nothing is queued for a bad request"


@pytest.mark.parametrize(
    ("fields", "field", "value", "needle"),
    [
        ({"steps": "201"}, "steps", 201, "steps 201 is out of range; it must be within 1..200"),
        ({"steps": "1000"}, "steps", 1000, "within 1..200"),
        ({"guidance_scale": "30.5"}, "guidance_scale", 30.5, "guidance_scale 30.5 is out of range"),
        ({"seed": str(2**63)}, "seed", 2**63, "seed 9223372036854775808 is out of range"),
        ({"scheduler": "euler"}, "scheduler", "euler", "unknown scheduler 'euler'; choose one of: ddim"),
        ({"category": "hats"}, "category", "hats", "unknown category 'hats'"),
    ],
    ids=["steps-201", "steps-1000", "guidance", "seed", "scheduler", "category"],
)
def test_options_the_stages_would_refuse_answer_422_naming_the_field_and_the_value_sent(
    client, fields, field, value, needle
):
    response = client.post("/v1/tryon", **_form(**fields))
    assert response.status_code == 422, response.text
    body = response.json()
    assert needle in body["error"]
    assert body["detail"] == {"field": field, "value": value}
    assert client.app.state.ctx.store.counts_by_status()["queued"] == 0


def test_a_value_of_the_wrong_type_answers_422_with_the_value_sent(client):
    response = client.post("/v1/tryon", **_form(steps="twelve"))
    assert response.status_code == 422
    body = response.json()
    assert "steps" in body["error"] and "'twelve'" in body["error"]
    assert body["detail"][0]["field"] == "steps" and body["detail"][0]["value"] == "twelve"


def test_an_upload_over_the_size_limit_answers_413(settings, api_client):
    small = settings.model_copy(update={"max_upload_bytes": 20_000})
    with api_client(small) as c:
        big = _png(200, 200)  # ~120 kB of noise
        response = c.post("/v1/tryon", **_form(person=big))
        assert response.status_code == 413
        assert "limit" in response.json()["error"]


def test_unknown_jobs_and_routes_answer_404_json(client):
    missing = client.get("/v1/jobs/" + "0" * 32)
    assert missing.status_code == 404 and "no job with id" in missing.json()["error"]
    assert client.get("/v1/jobs/../../etc/passwd").status_code == 404
    assert client.get("/v2/nothing").json()["error"] == "no such route"


# --- accepting a job ----------------------------------------------------------------------------------------


def test_a_job_is_accepted_with_202_and_shows_as_queued(client):
    person = _png(50, 70, 1)
    response = client.post(
        "/v1/tryon", headers={"X-Request-ID": "shop-42.a"}, **_form(person=person, seed="5")
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"id", "status", "links"}
    assert body["status"] == "queued"
    assert response.headers["location"] == f"/v1/jobs/{body['id']}" == body["links"]["self"]
    assert response.headers["x-request-id"] == "shop-42.a"

    job = client.get(response.headers["location"]).json()
    assert job["status"] == "queued"
    assert job["request_id"] == "shop-42.a"
    assert job["options"] == {
        "category": "upper_body",
        "seed": 5,
        "steps": None,
        "guidance_scale": None,
        "scheduler": None,
    }
    assert list(job["stages"]) == ["pose", "densepose", "parsing", "agnostic_mask", "warp", "diffusion"]
    assert {s["status"] for s in job["stages"].values()} == {"pending"}
    assert job["result_url"] is None and job["artifacts"] == {} and job["error"] is None
    # the upload is in S3 under the job's prefix, behind a presigned URL
    assert f"/jobs/{job['id']}/inputs/person.png" in job["inputs"]["person"]
    assert httpx.get(job["inputs"]["person"], timeout=10).content == person


def test_waiting_longer_than_the_timeout_answers_202_with_the_job_still_queued(client):
    response = client.post("/v1/tryon?wait=true&timeout=0.3", **_form())  # no worker runs in this app
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert client.get(response.headers["location"]).json()["status"] == "queued"


def test_health_metrics_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503  # the stages point at a closed port
    body = ready.json()
    assert body["ready"] is False
    assert body["storage"]["ok"] is True and body["database"]["ok"] is True
    assert set(body["stages"]) == set(STAGES) and not any(s["ok"] for s in body["stages"].values())

    client.post("/v1/tryon", **_form())
    client.post("/v1/tryon", **_form(person=b""))
    text = client.get("/metrics").text
    assert 'vton_http_requests_total{method="POST",route="/v1/tryon",status="202"} 1.0' in text
    assert 'vton_http_requests_total{method="POST",route="/v1/tryon",status="400"} 1.0' in text
    assert 'vton_jobs{status="queued"} 1.0' in text
    assert "vton_stage_seconds" in text and "vton_job_seconds" in text and "vton_jobs_in_flight" in text

    schema = client.get("/openapi.json").json()
    assert {"/v1/tryon", "/v1/jobs/{job_id}", "/healthz", "/readyz"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


# --- running jobs through gRPC stand-ins of the stages ------------------------------------------------------


class StandInStages:
    """All five stage services on one gRPC server, answering with images derived from the request.

    It records the x-request-id of every call and makes pose, densepose and parsing meet at a barrier, so a
    pipeline that called them one after another would fail instead of passing.
    """

    def __init__(self, no_person: bool = False, hold_diffusion: bool = False) -> None:
        self.no_person = no_person
        # hold_diffusion: TryOn waits (until release()) so a test can stop the orchestrator mid-job
        self.diffusion_started = threading.Event()
        self.diffusion_may_go = threading.Event()
        if not hold_diffusion:
            self.diffusion_may_go.set()
        self.request_ids: list[tuple[str, str]] = []
        self.options: dict[str, common_pb2.TryOnOptions] = {}  # the options each call that takes them got
        self.first_three = threading.Barrier(3, timeout=10)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ],
        )
        stand_in = self

        def info(name: str) -> common_pb2.BackendInfo:
            return common_pb2.BackendInfo(
                name=f"stand-in-{name}", version="0", kind="embedded", weights_license="MIT"
            )

        def seen(context, method: str) -> None:
            stand_in.request_ids.append((method, dict(context.invocation_metadata()).get("x-request-id", "")))

        def analyse(context, method: str, image: common_pb2.Image) -> tuple[int, int]:
            """What pose, densepose and parsing do first: record the call, meet the other two at the barrier, and
            give the person photo's height and width, the size of their answers."""
            seen(context, method)
            try:
                stand_in.first_three.wait()
            except threading.BrokenBarrierError:
                context.abort(grpc.StatusCode.INTERNAL, "pose, densepose and parsing were not called at once")
            return image.height, image.width

        class Pose(pose_pb2_grpc.PoseServiceServicer):
            def EstimatePose(self, request, context):
                h, w = analyse(context, "EstimatePose", request.image)
                if stand_in.no_person:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no person found")
                kps = np.zeros((18, 3), np.float32)
                kps[:, 0], kps[:, 1], kps[:, 2] = w / 2, np.linspace(2, h - 2, 18), 0.9
                return pose_pb2.EstimatePoseResponse(
                    keypoints=messages.keypoints(kps),
                    openpose_json=json.dumps({"people": [{"pose_keypoints_2d": kps.ravel().tolist()}]}),
                    skeleton=messages.png_image(np.zeros((h, w, 3), np.uint8)),
                    pose_map=messages.tensor(np.zeros((18, h, w), np.uint8)),
                    people_detected=1,
                    backend=info("pose"),
                )

        class DensePose(densepose_pb2_grpc.DensePoseServiceServicer):
            def EstimateDensePose(self, request, context):
                h, w = analyse(context, "EstimateDensePose", request.image)
                return densepose_pb2.EstimateDensePoseResponse(
                    iuv=messages.tensor(np.zeros((3, h, w), np.float32)),
                    visualization=messages.png_image(np.full((h, w, 3), 40, np.uint8)),
                    people_detected=1,
                    backend=info("densepose"),
                )

        class Parsing(parsing_pb2_grpc.ParsingServiceServicer):
            def Parse(self, request, context):
                h, w = analyse(context, "Parse", request.image)
                labels = np.zeros((h, w), np.uint8)
                labels[h // 4 : h // 2] = 5  # upper-clothes
                return parsing_pb2.ParseResponse(
                    label_map=messages.label_map(labels, "lip"),
                    visualization=messages.png_image(np.stack([labels * 40] * 3, -1)),
                    people_detected=1,
                    backend=info("parsing"),
                )

            def CreateAgnosticMask(self, request, context):
                seen(context, "CreateAgnosticMask")
                stand_in.options["CreateAgnosticMask"] = request.options
                labels = messages.labels_from(request.label_map)
                person = messages.rgb_from(request.image, "image")
                mask = np.where(labels == 5, 255, 0).astype(np.uint8)
                masked = person.copy()
                masked[mask > 0] = 128
                return parsing_pb2.CreateAgnosticMaskResponse(
                    mask=messages.png_image(mask),
                    masked_person=messages.png_image(masked),
                    backend=info("parsing"),
                )

        class Warp(warp_pb2_grpc.WarpServiceServicer):
            def WarpGarment(self, request, context):
                seen(context, "WarpGarment")
                stand_in.options["WarpGarment"] = request.options
                mask = messages.gray_from(request.agnostic_mask, "agnostic_mask")
                h, w = mask.shape
                garment = np.zeros((h, w, 3), np.uint8)
                garment[mask > 0] = (200, 30, 30)
                return warp_pb2.WarpGarmentResponse(
                    warped_garment=messages.png_image(garment),
                    warped_mask=messages.png_image(mask),
                    garment_mask=messages.png_image(
                        np.full((request.garment.height, request.garment.width), 255, np.uint8)
                    ),
                    backend=info("warp"),
                )

        class Diffusion(diffusion_pb2_grpc.DiffusionServiceServicer):
            def TryOn(self, request, context):
                seen(context, "TryOn")
                stand_in.options["TryOn"] = request.options
                stand_in.diffusion_started.set()
                stand_in.diffusion_may_go.wait(30)
                person = messages.rgb_from(request.person, "person")
                garment = messages.rgb_from(request.warped_garment, "warped_garment")
                mask = messages.gray_from(request.warped_mask, "warped_mask") > 0
                person[mask] = garment[mask]
                return diffusion_pb2.TryOnResponse(
                    image=messages.png_image(person), backend=info("diffusion")
                )

        pose_pb2_grpc.add_PoseServiceServicer_to_server(Pose(), self.server)
        densepose_pb2_grpc.add_DensePoseServiceServicer_to_server(DensePose(), self.server)
        parsing_pb2_grpc.add_ParsingServiceServicer_to_server(Parsing(), self.server)
        warp_pb2_grpc.add_WarpServiceServicer_to_server(Warp(), self.server)
        diffusion_pb2_grpc.add_DiffusionServiceServicer_to_server(Diffusion(), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.diffusion_may_go.set()
        self.server.stop(0)


@pytest.fixture
def stand_ins():
    stages = StandInStages()
    yield stages
    stages.stop()


def stage_addresses(addresses: str | dict[str, str]) -> dict[str, str]:
    """Settings fields that point every stage at one address, or each at its own."""
    if isinstance(addresses, str):
        addresses = dict.fromkeys(STAGES, addresses)
    return {f"{stage}_addr": address for stage, address in addresses.items()}


def _running(settings: Settings, stages: StandInStages) -> Settings:
    return settings.model_copy(update={**stage_addresses(stages.address), "workers": 1})


def test_a_job_runs_every_stage_and_stores_every_artifact(settings, stand_ins, api_client):
    person = _png(48, 64, 3)
    with api_client(_running(settings, stand_ins)) as c:
        assert c.get("/readyz").json()["ready"] is True
        response = c.post("/v1/tryon?wait=true", headers={"X-Request-ID": "trace-1"}, **_form(person=person))
        assert response.status_code == 200, response.text
        job = response.json()
        again = c.get(f"/v1/jobs/{job['id']}").json()
        assert (again["status"], again["stages"], set(again["artifacts"])) == (
            job["status"],
            job["stages"],
            set(job["artifacts"]),
        )
    assert job["status"] == "succeeded" and job["error"] is None and job["attempts"] == 1
    for name, stage in job["stages"].items():
        assert stage["status"] == "succeeded", name
        assert stage["backend"]["name"].startswith("stand-in-") and stage["seconds"] >= 0
    assert set(job["artifacts"]) == ARTIFACTS
    for name, url in job["artifacts"].items():
        fetched = httpx.get(url, timeout=10)
        assert fetched.status_code == 200 and fetched.content, name
        assert f"/jobs/{job['id']}/artifacts/{name}." in url
    assert json.loads(httpx.get(job["artifacts"]["pose"], timeout=10).content)["people"]
    result = images.decode_rgb(httpx.get(job["result_url"], timeout=10).content)
    original = images.decode_rgb(person)
    assert result.shape == original.shape
    assert (result[16:32] == (200, 30, 30)).all() and (result[40:] == original[40:]).all()
    assert job["timings"]["total_s"] >= job["timings"]["running_s"] > 0
    # the HTTP request's id reached every gRPC call of the job
    assert sorted(m for m, _ in stand_ins.request_ids) == sorted(
        ["EstimatePose", "EstimateDensePose", "Parse", "CreateAgnosticMask", "WarpGarment", "TryOn"]
    )
    assert {rid for _, rid in stand_ins.request_ids} == {"trace-1"}


def test_the_options_a_client_chose_reach_every_stage_that_takes_them(settings, stand_ins, api_client):
    with api_client(_running(settings, stand_ins)) as c:
        response = c.post(
            "/v1/tryon?wait=true",
            **_form(
                category="dresses", seed="11", steps="30", guidance_scale="2.5", scheduler="dpm-solver++"
            ),
        )
    assert response.status_code == 200, response.text
    assert response.json()["options"] == {
        "category": "dresses",
        "seed": 11,
        "steps": 30,
        "guidance_scale": 2.5,
        "scheduler": "dpm-solver++",
    }
    assert set(stand_ins.options) == {"CreateAgnosticMask", "WarpGarment", "TryOn"}
    for method, options in stand_ins.options.items():
        sent = (options.category, options.seed, options.steps, options.guidance_scale, options.scheduler)
        assert sent == (common_pb2.CATEGORY_DRESSES, 11, 30, 2.5, "dpm-solver++"), method


def test_options_left_out_reach_the_stages_as_the_backends_defaults(settings, stand_ins, api_client):
    with api_client(_running(settings, stand_ins)) as c:
        assert c.post("/v1/tryon?wait=true", **_form(seed="3")).status_code == 200
    options = stand_ins.options["TryOn"]
    sent = (options.category, options.seed, options.steps, options.guidance_scale, options.scheduler)
    assert sent == (common_pb2.CATEGORY_UPPER_BODY, 3, 0, 0.0, "")


def test_no_person_found_answers_422_and_the_job_says_which_stage(settings, api_client):
    stages = StandInStages(no_person=True)
    try:
        with api_client(_running(settings, stages)) as c:
            response = c.post("/v1/tryon?wait=true", **_form())
            assert response.status_code == 422, response.text
            body = response.json()
            assert body["error"] == "no person found"
            job = c.get(f"/v1/jobs/{body['detail']['id']}").json()
    finally:
        stages.stop()
    assert job["status"] == "failed" and job["error_code"] == "no_person" and job["error_stage"] == "pose"
    assert job["stages"]["pose"]["status"] == "failed"
    assert {job["stages"][s]["status"] for s in ("agnostic_mask", "warp", "diffusion")} == {"skipped"}
    assert job["result_url"] is None


def test_an_unreachable_stage_answers_503_naming_it(settings, stand_ins, api_client):
    # no worker claims the job while warp is down; past its deadline it fails naming warp
    down = _running(settings, stand_ins)
    down = down.model_copy(update={"warp_addr": "127.0.0.1:9", "job_deadline_s": 2})
    with api_client(down) as c:
        response = c.post("/v1/tryon?wait=true", **_form())
    assert response.status_code == 503, response.text
    body = response.json()
    assert "warp stage (127.0.0.1:9) is unavailable" in body["error"]
    assert body["detail"]["error_stage"] == "warp"
    assert {s["status"] for s in body["detail"]["stages"].values()} == {"skipped"}


def test_an_accepted_job_survives_a_restart_and_is_finished_after_it(settings, stand_ins, api_client):
    # 1. an orchestrator without workers accepts two jobs, then stops
    with api_client(settings) as c:
        interrupted_id = c.post("/v1/tryon", **_form()).json()["id"]
        queued_id = c.post("/v1/tryon", **_form()).json()["id"]
    # 2. the first was being run by a process that died (its pid no longer exists)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = JobStore(settings.resolved_database_url)
    assert store.claim(owner=f"{socket.gethostname()}:{dead.pid}:dead").id == interrupted_id
    store.close()
    # 3. a new orchestrator with a worker takes the interrupted one back and finishes both
    with api_client(_running(settings, stand_ins)) as c:
        finished = {job_id: _wait_for(c, job_id) for job_id in (interrupted_id, queued_id)}
    assert finished[interrupted_id]["status"] == "succeeded" and finished[interrupted_id]["attempts"] == 2
    assert finished[queued_id]["status"] == "succeeded" and finished[queued_id]["attempts"] == 1
    assert httpx.get(finished[interrupted_id]["result_url"], timeout=10).status_code == 200


def test_a_job_running_when_the_orchestrator_stops_goes_back_to_the_queue(settings, api_client):
    stages = StandInStages(hold_diffusion=True)
    try:
        with api_client(_running(settings, stages)) as c:
            job_id = c.post("/v1/tryon", **_form()).json()["id"]
            assert stages.diffusion_started.wait(20), "the job never reached the diffusion stage"
            assert c.get(f"/v1/jobs/{job_id}").json()["stages"]["diffusion"]["status"] == "running"
        # the TestClient's exit ran the shutdown: the worker stopped and handed the job back
        store = JobStore(settings.resolved_database_url)
        job = store.get(job_id)
        store.close()
    finally:
        stages.stop()
    assert job.status == "queued" and job.attempts == 0 and job.claim_token is None
    assert {s.status for s in job.stages.values()} == {"pending"}  # it will run from the start again


def _wait_for(client: TestClient, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


# --- the real stage services, started in this process -------------------------------------------------------


# (`real_stages`, the five stage services in this process: tests/orchestrator/conftest.py)


def test_a_job_through_the_real_stage_services(settings, real_stages, examples, api_client):
    person = (examples / "avatars" / "1.png").read_bytes()
    garment = (examples / "clothes" / "shirts" / "1_front.jpg").read_bytes()
    real = settings.model_copy(update={**stage_addresses(real_stages), "workers": 1, "stage_timeout_s": 120})
    with api_client(real) as c:
        assert c.get("/readyz").json()["ready"] is True
        form = {
            "files": {"person": ("p.png", person), "garment": ("g.jpg", garment)},
            "data": {"category": "upper_body"},
        }
        response = c.post("/v1/tryon?wait=true", headers={"X-Request-ID": "real-1"}, **form)
        assert response.status_code == 200, response.text
        job = response.json()
        no_person = c.post(
            "/v1/tryon?wait=true",
            files={"person": ("p.jpg", garment), "garment": ("g.jpg", garment)},
            data={"category": "upper_body"},
        )
    assert all(s["status"] == "succeeded" and s["backend"]["name"] for s in job["stages"].values()), job[
        "stages"
    ]
    assert set(job["artifacts"]) >= ARTIFACTS - {"garment_mask"}
    result = images.decode_rgb(httpx.get(job["result_url"], timeout=10).content)
    assert result.shape == images.decode_rgb(person).shape
    assert no_person.status_code == 422, no_person.text
    assert "no person found" in no_person.json()["error"]


def test_the_api_docs_page_and_its_assets_are_served_without_a_cdn(settings):
    with TestClient(create_app(settings)) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in page.text
        assert "cdn" not in page.text.lower()
        script = client.get("/docs/static/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000
        schema = client.get("/openapi.json").json()
    assert schema["paths"]["/v1/tryon"]["post"]
    # the form's every field is documented, the options with their limits
    body = schema["paths"]["/v1/tryon"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["properties"]
    options = {"category", "seed", "steps", "guidance_scale", "scheduler", "callback_url"}
    assert set(form) == {"person", "garment", *options}
    assert set(body["application/json"]["schema"]["properties"]) == {"person", "garment", *options}
    assert "1..200" in form["steps"]["description"] and "dpm-solver++" in form["scheduler"]["description"]


def test_the_web_page_is_served_at_the_root_and_uses_the_public_api(settings):
    with TestClient(create_app(settings)) as client:
        page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('id="person"', 'id="garment"', 'id="category"', "/v1/tryon", "/v1/jobs/"):
        assert needle in page.text
    for category in CATEGORIES:  # the choices come from the vocabulary
        assert f'<option value="{category}">' in page.text


def test_the_routers_depend_on_deps_not_on_the_app_that_includes_them():
    """app.py imports the routers; were a router to import app.py back, the import order would decide what
    works. Importing every router in a fresh interpreter must leave orchestrator.app unloaded."""
    code = (
        "import sys, orchestrator.routers.tryon, orchestrator.routers.jobs, orchestrator.routers.health, "
        "orchestrator.routers.web; print('orchestrator.app' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
