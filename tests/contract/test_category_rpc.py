"""WarpService.ClassifyGarment over real gRPC: the warp stage started with its embedded backend on a free port."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.warp.service import build_server
from vton.runtime import images, messages
from vton.v1 import common_pb2, warp_pb2, warp_pb2_grpc


@pytest.fixture(scope="module")
def stub():
    started, port, _ = build_server(backend="keypoint-tps", port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield warp_pb2_grpc.WarpServiceStub(channel)
    channel.close()
    started.stop(0)


def _classify(stub, image: common_pb2.Image) -> warp_pb2.ClassifyGarmentResponse:
    return stub.ClassifyGarment(warp_pb2.ClassifyGarmentRequest(garment=image), timeout=30)


@pytest.mark.parametrize(
    ("photo", "category"),
    [
        ("pants/2_front.jpg", common_pb2.CATEGORY_LOWER_BODY),
        ("shirts/3_front.jpg", common_pb2.CATEGORY_UPPER_BODY),
        ("jackets/4_front.jpg", common_pb2.CATEGORY_UPPER_BODY),
    ],
)
def test_a_product_photo_gets_its_category_scores_and_backend(stub, examples: Path, photo, category) -> None:
    data = (examples / "clothes" / photo).read_bytes()  # the JPEG as a client uploads it
    out = _classify(stub, common_pb2.Image(data=data, format="jpeg"))
    assert out.category == category
    assert [s.category for s in out.scores] == [
        common_pb2.CATEGORY_UPPER_BODY,
        common_pb2.CATEGORY_LOWER_BODY,
        common_pb2.CATEGORY_DRESSES,
    ]
    assert math.isclose(sum(s.score for s in out.scores), 1.0, abs_tol=1e-5)
    chosen = next(s.score for s in out.scores if s.category == category)
    assert 0.8 <= out.confidence <= 1.0 and math.isclose(out.confidence, chosen, abs_tol=1e-6)
    assert out.backend.name == "keypoint-tps" and out.backend.kind == "embedded"


def test_a_dress_is_a_dress(stub, shared_data: Path) -> None:
    photo = images.read_rgb(str(shared_data / "garments" / "dresses" / "053290_1.jpg"))
    assert _classify(stub, messages.png_image(photo)).category == common_pb2.CATEGORY_DRESSES


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "garment: the image is empty"),
        (b"a garment, honestly", "garment: the file is not an image"),
    ],
)
def test_what_is_not_an_image_is_invalid_argument(stub, data: bytes, needle: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _classify(stub, common_pb2.Image(data=data))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


def test_a_photo_without_a_garment_is_failed_precondition(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _classify(stub, messages.png_image(np.full((512, 384, 3), 255, np.uint8)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no garment found" in err.value.details()
