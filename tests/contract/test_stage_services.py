"""Each stage service started on a free port with its embedded backend and called over real gRPC."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.pose.service import PoseServicer
from services.pose.types import PoseEstimate
from tests.stages import TryOnChain, channel, serving, stub
from vton.runtime import images, messages, proto_vocab, server
from vton.runtime.backend import BackendInfo, BackendSpec, Capabilities
from vton.runtime.vocab import (
    NUM_KEYPOINTS,
    NUM_LIP_LABELS,
    SERVICE_NAMES,
    STAGES,
    Category,
    Keypoint,
    Lip,
)
from vton.v1 import common_pb2, densepose_pb2, parsing_pb2, pose_pb2, pose_pb2_grpc

EMBEDDED = {
    "pose": "blazepose-litert",
    "densepose": "geometric",
    "parsing": "geometric",
    "warp": "keypoint-tps",
    "diffusion": "composite",
}


@pytest.fixture(scope="module")
def channels():
    with serving(EMBEDDED) as started:
        yield started


@pytest.fixture(scope="module")
def person(examples) -> common_pb2.Image:
    arr = images.read_rgb(str(examples / "avatars" / "3.png"))
    return messages.png_image(arr)


@pytest.fixture(scope="module")
def garment(examples) -> common_pb2.Image:
    return messages.png_image(images.read_rgb(str(examples / "clothes" / "shirts" / "2_front.jpg")))


@pytest.fixture(scope="module")
def analysis(channels, person, garment) -> TryOnChain:
    """Pose and parsing of the example person, then its agnostic mask: what the orchestrator sends on."""
    options = common_pb2.TryOnOptions(category=proto_vocab.category_enum(Category.UPPER_BODY), seed=1)
    return TryOnChain(person, garment, options).analyse(channels, timeout=60)


@pytest.fixture(scope="module")
def densepose(channels, person):
    request = densepose_pb2.EstimateDensePoseRequest(image=person)
    return stub("densepose", channels["densepose"]).EstimateDensePose(request, timeout=60)


def test_every_stage_reports_serving_and_lists_itself_by_reflection(channels):
    assert tuple(channels) == STAGES
    for stage, chan in channels.items():
        health = health_pb2_grpc.HealthStub(chan)
        reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAMES[stage]), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, stage
        refl = reflection_pb2_grpc.ServerReflectionStub(chan)
        (answer,) = list(
            refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        listed = {s.name for s in answer.list_services_response.service}
        assert SERVICE_NAMES[stage] in listed and "grpc.health.v1.Health" in listed


def test_pose_answers_18_keypoints_openpose_json_and_pose_map(analysis, person):
    pose = analysis.pose
    assert len(pose.keypoints) == NUM_KEYPOINTS
    assert pose.backend.name == "blazepose-litert" and pose.backend.kind == "embedded"
    doc = json.loads(pose.openpose_json)
    assert len(doc["people"][0]["pose_keypoints_2d"]) == 3 * NUM_KEYPOINTS
    pose_map = messages.array_from(pose.pose_map, "pose_map")
    assert pose_map.shape == (NUM_KEYPOINTS, person.height, person.width)
    skeleton = images.decode_rgb(pose.skeleton.data)
    assert skeleton.shape == (person.height, person.width, 3) and skeleton.any()
    assert pose.people_detected == 1


def test_densepose_answers_an_iuv_of_the_image_size(densepose, person):
    iuv = messages.array_from(densepose.iuv, "iuv")
    assert iuv.shape == (3, person.height, person.width)
    assert set(np.unique(iuv[0]).astype(int)) <= set(range(25)) and (iuv[0] > 0).mean() > 0.05
    assert densepose.backend.name == "geometric"


def test_parsing_and_agnostic_mask_cover_the_upper_body_and_keep_the_face(analysis, person):
    labels = images.decode_gray(analysis.parse.label_map.image.data)
    assert labels.shape == (person.height, person.width) and labels.max() < NUM_LIP_LABELS
    assert analysis.parse.label_map.label_set == "lip"
    mask = images.decode_gray(analysis.agnostic.mask.data)
    assert mask.shape == labels.shape
    face = labels == Lip.FACE
    upper = labels == Lip.UPPER_CLOTHES
    assert face.any() and upper.any()
    # The face label runs down the neck, which LaDI-VTON's mask repaints below the shoulder line: the face
    # itself, down to the nose, must stay untouched.
    nose_y = int(analysis.pose.keypoints[Keypoint.NOSE].y)
    assert (mask[:nose_y][face[:nose_y]] == 0).all(), "the face must stay out of the mask"
    assert (mask[upper] > 0).mean() > 0.9, "the upper clothes must be inside the mask"


def test_warp_and_composite_give_a_person_sized_result_identical_outside_the_mask(channels, analysis, person):
    warped = stub("warp", channels["warp"]).WarpGarment(analysis.warp_request(), timeout=60)
    assert warped.backend.name == "keypoint-tps" and (
        warped.warped_mask.width,
        warped.warped_mask.height,
    ) == (person.width, person.height)
    chain = replace(analysis, warped=warped)
    result = stub("diffusion", channels["diffusion"]).TryOn(chain.try_on_request(), timeout=60)
    assert result.backend.name == "composite"
    out, src = images.decode_rgb(result.image.data), images.decode_rgb(person.data)
    mask = images.decode_gray(analysis.agnostic.mask.data) > 0
    assert out.shape == src.shape
    assert np.array_equal(out[~mask], src[~mask])
    assert np.abs(out[mask].astype(int) - src[mask]).mean() > 5


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 4, "image"),
    ],
)
def test_bad_image_is_invalid_argument_naming_the_problem(channels, data, needle):
    pose = stub("pose", channels["pose"])
    with pytest.raises(grpc.RpcError) as err:
        pose.EstimatePose(pose_pb2.EstimatePoseRequest(image=common_pb2.Image(data=data)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


def test_a_photo_without_a_person_is_failed_precondition(channels, garment):
    pose = stub("pose", channels["pose"])
    blank = messages.png_image(np.full((512, 384, 3), 200, np.uint8))
    for image in (blank, garment):
        with pytest.raises(grpc.RpcError) as err:
            pose.EstimatePose(pose_pb2.EstimatePoseRequest(image=image), timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no person found" in err.value.details()


def test_unknown_category_and_missing_keypoints_are_invalid_argument(channels, analysis):
    parsing = stub("parsing", channels["parsing"])
    without_category = replace(analysis, options=common_pb2.TryOnOptions()).agnostic_mask_request()
    with pytest.raises(grpc.RpcError) as err:
        parsing.CreateAgnosticMask(without_category, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "category" in err.value.details()
    five_keypoints = analysis.agnostic_mask_request()
    del five_keypoints.keypoints[5:]
    with pytest.raises(grpc.RpcError) as err:
        parsing.CreateAgnosticMask(five_keypoints, timeout=30)
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and f"{NUM_KEYPOINTS} keypoints" in err.value.details()
    )


def test_an_expired_deadline_is_deadline_exceeded(channels, person):
    pose = stub("pose", channels["pose"])
    with pytest.raises(grpc.RpcError) as err:
        pose.EstimatePose(pose_pb2.EstimatePoseRequest(image=person), timeout=0.0005)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_the_request_id_reaches_the_stage_logs(channels, person, caplog):
    pose = stub("pose", channels["pose"])
    with caplog.at_level(logging.INFO, logger="vton.grpc"):
        pose.EstimatePose(
            pose_pb2.EstimatePoseRequest(image=person), metadata=[("x-request-id", "req-abc-123")], timeout=30
        )
    from vton.runtime.logs import JsonFormatter

    lines = [json.loads(JsonFormatter("pose").format(r)) for r in caplog.records if r.name == "vton.grpc"]
    assert any(
        line.get("request_id") == "req-abc-123" and line.get("method") == "EstimatePose" for line in lines
    )


def test_metrics_count_requests_by_code(channels, person):
    from prometheus_client import REGISTRY

    def count(code: str) -> float:
        return (
            REGISTRY.get_sample_value(
                "vton_grpc_requests_total", {"service": "pose", "method": "EstimatePose", "code": code}
            )
            or 0.0
        )

    before_ok, before_bad = count("OK"), count("INVALID_ARGUMENT")
    pose = stub("pose", channels["pose"])
    pose.EstimatePose(pose_pb2.EstimatePoseRequest(image=person), timeout=30)
    with pytest.raises(grpc.RpcError):
        pose.EstimatePose(pose_pb2.EstimatePoseRequest(image=common_pb2.Image(data=b"x")), timeout=30)
    assert count("OK") == before_ok + 1 and count("INVALID_ARGUMENT") == before_bad + 1


def test_parsing_refuses_a_label_set_its_backend_does_not_make(channels, person):
    parsing = stub("parsing", channels["parsing"])
    with pytest.raises(grpc.RpcError) as err:
        parsing.Parse(parsing_pb2.ParseRequest(image=person, label_set="atr"), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'atr' is not served by backend geometric; it makes lip" in err.value.details()


def test_the_agnostic_mask_reports_its_version_and_licence_from_the_manifest(analysis):
    from vton.runtime.weights import load_manifest

    entry = load_manifest()["lip-agnostic-mask"]
    backend = analysis.agnostic.backend
    assert (backend.name, backend.version, backend.weights_license) == (
        "lip-agnostic-mask",
        entry.version,
        entry.license,
    )


# ------------------------------------------------------------------------------ backend concurrency


class _ProbeBackend:
    """A pose backend that records how many calls are inside it at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.inside = self.peak = self.calls = 0
        self.finished: list[float] = []  # time.time() as each call left
        self._lock = threading.Lock()

    def estimate(self, image: np.ndarray) -> PoseEstimate:
        with self._lock:
            self.inside += 1
            self.calls += 1
            self.peak = max(self.peak, self.inside)
        time.sleep(self.seconds)
        with self._lock:
            self.inside -= 1
            self.finished.append(time.time())
        return PoseEstimate(np.zeros((NUM_KEYPOINTS, 3), np.float32), people_detected=1)


def _serve_probe(capabilities: Capabilities, seconds: float = 0.3):
    probe = _ProbeBackend(seconds)
    spec = BackendSpec(
        BackendInfo("probe", "0", "embedded", "Apache-2.0"), lambda *_: probe, True, capabilities
    )
    build = server.stage_builder(
        "pose", pose_pb2_grpc.add_PoseServiceServicer_to_server, PoseServicer, {"probe": spec}
    )
    started, port, _ = build(backend="probe", port=0, max_workers=8)
    return probe, started, channel(port)


@pytest.mark.parametrize(
    ("capabilities", "expected_peak"),
    [(Capabilities(), 1), (Capabilities(thread_safe=True, max_concurrency=3), 3)],
    ids=["max_concurrency=1", "max_concurrency=3"],
)
def test_the_server_lets_no_more_calls_into_a_backend_than_it_takes(capabilities, expected_peak):
    probe, started, chan = _serve_probe(capabilities)
    image = messages.png_image(np.full((64, 48, 3), 128, np.uint8))
    try:
        pose = stub("pose", chan)
        calls = [
            pose.EstimatePose.future(pose_pb2.EstimatePoseRequest(image=image), timeout=30) for _ in range(7)
        ]
        answers = [call.result() for call in calls]
    finally:
        chan.close()
        started.stop(0)
    assert all(a.backend.name == "probe" for a in answers) and probe.calls == 7
    assert probe.peak == expected_peak


def test_a_call_waiting_for_the_backend_leaves_the_queue_at_its_deadline(caplog):
    probe, started, chan = _serve_probe(Capabilities(), seconds=1.5)
    image = messages.png_image(np.full((64, 48, 3), 128, np.uint8))
    try:
        pose = stub("pose", chan)
        with caplog.at_level(logging.INFO, logger="vton.grpc"):
            first = pose.EstimatePose.future(pose_pb2.EstimatePoseRequest(image=image), timeout=30)
            time.sleep(0.3)  # the first call is inside the backend now
            with pytest.raises(grpc.RpcError) as err:
                pose.EstimatePose(pose_pb2.EstimatePoseRequest(image=image), timeout=0.5)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert first.result().people_detected == 1
    finally:
        chan.close()
        started.stop(0)
    assert probe.calls == 1, "the call that timed out in the queue must never reach the backend"
    # The server let the waiting call go at its deadline, while the slot was still taken, not once it came free.
    expired = [r.created for r in caplog.records if r.getMessage() == "EstimatePose DEADLINE_EXCEEDED"]
    assert expired and expired[0] < probe.finished[0], "the waiting call was not let go at its deadline"
