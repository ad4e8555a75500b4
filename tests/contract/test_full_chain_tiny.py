"""The try-on chain through the real gRPC services with the full network backends at tiny size.

The networks are the published architectures built from small random configurations and loaded from files in the
official formats (a models directory laid out as `vton weights pull` lays it out), so this proves the loading, the
adapters and the contracts between stages, not picture quality. Pose stays on BlazePose: a random OpenPose finds no
person, which its own tests cover; DensePose's full backends need detectron2 or torchvision (GPU image only).
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from services.diffusion import testing as ladi_diffusion
from services.parsing import testing as schp
from services.warp import testing as ladi_warp
from tests.stages import TryOnChain, serving, stub
from vton.runtime import images, messages
from vton.runtime.weights import models_dir
from vton.v1 import common_pb2, diffusion_pb2

BACKENDS = {
    "pose": "blazepose-litert",
    "parsing": "schp-lip",
    "warp": "ladi-vton-warp-vitonhd",
    "diffusion": "ladi-vton-vitonhd",
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "blazepose-litert").symlink_to(models_dir() / "blazepose-litert")
    schp.save_random(root / "schp-lip", "lip")
    ladi_warp.save_random(root / "ladi-vton-warp-vitonhd", "vitonhd")
    ladi_diffusion.save_random(root / "ladi-vton-vitonhd")
    return root


@pytest.fixture(scope="module")
def stubs(tiny_models):
    with serving(BACKENDS, models=tiny_models) as channels:
        yield {stage: stub(stage, chan) for stage, chan in channels.items()}


def test_a_tryon_runs_through_the_full_backends_at_tiny_size(stubs, examples):
    person_rgb = images.read_rgb(str(examples / "avatars" / "2.png"))
    chain = TryOnChain(
        person=messages.png_image(person_rgb),
        garment=messages.png_image(images.read_rgb(str(examples / "clothes" / "shirts" / "1_front.jpg"))),
        options=common_pb2.TryOnOptions(category=common_pb2.CATEGORY_UPPER_BODY, seed=7, steps=2),
    )
    chain.pose = stubs["pose"].EstimatePose(chain.pose_request(), timeout=60)
    chain.parse = stubs["parsing"].Parse(chain.parse_request(), timeout=60)
    assert chain.parse.backend.name == "schp-lip" and chain.parse.backend.kind == "full"
    chain.agnostic = stubs["parsing"].CreateAgnosticMask(chain.agnostic_mask_request(), timeout=60)
    chain.warped = stubs["warp"].WarpGarment(chain.warp_request(), timeout=120)
    assert chain.warped.backend.name == "ladi-vton-warp-vitonhd"
    garment_size = (chain.warped.warped_garment.width, chain.warped.warped_garment.height)
    assert garment_size == (chain.person.width, chain.person.height)
    result = stubs["diffusion"].TryOn(chain.try_on_request(), timeout=300)
    assert result.backend.name == "ladi-vton-vitonhd" and result.backend.kind == "full"
    out = images.decode_rgb(result.image.data)
    mask = images.decode_gray(chain.agnostic.mask.data) > 0
    assert out.shape == person_rgb.shape
    assert np.array_equal(out[~mask], person_rgb[~mask])


def _diffusion_request(examples, **options) -> diffusion_pb2.TryOnRequest:
    person_rgb = images.read_rgb(str(examples / "avatars" / "2.png"))
    person = messages.png_image(person_rgb)
    blank = messages.png_image(np.zeros(person_rgb.shape[:2], np.uint8))
    return diffusion_pb2.TryOnRequest(
        person=person,
        masked_person=person,
        agnostic_mask=blank,
        warped_garment=person,
        warped_mask=blank,
        garment=person,
        label_map=common_pb2.LabelMap(image=blank, label_set="lip"),
        options=common_pb2.TryOnOptions(category=common_pb2.CATEGORY_UPPER_BODY, **options),
    )


def test_a_resolution_the_checkpoints_do_not_have_is_invalid_argument(stubs, examples):
    request = _diffusion_request(examples, width=300, height=300)
    with pytest.raises(grpc.RpcError) as err:
        stubs["diffusion"].TryOn(request, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not 300x300" in err.value.details()


@pytest.mark.parametrize(
    "options, named",
    [
        (dict(scheduler="euler"), "unknown scheduler 'euler'"),
        (dict(steps=201), "steps 201 is out of range"),
        (dict(guidance_scale=31.0), "guidance_scale 31 is out of range"),
        (dict(seed=-1), "seed -1 is out of range"),
    ],
)
def test_the_diffusion_stage_checks_its_options_with_the_platforms_one_validator(
    stubs, examples, options, named
):
    with pytest.raises(grpc.RpcError) as err:
        stubs["diffusion"].TryOn(_diffusion_request(examples, **options), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and named in err.value.details()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_the_scheduler_and_the_keypoints_travel_in_the_diffusion_request(stubs, examples):
    request = _diffusion_request(examples, steps=2, scheduler="dpm-solver++")
    person_rgb = images.read_rgb(str(examples / "avatars" / "2.png"))
    mask = np.zeros(person_rgb.shape[:2], np.uint8)
    mask[400:900, 200:600] = 255
    request.agnostic_mask.CopyFrom(messages.png_image(mask))
    plain = images.decode_rgb(stubs["diffusion"].TryOn(request, timeout=300).image.data)
    keypoints = np.zeros((18, 3), np.float32)
    keypoints[1] = (384, 420, 0.9)
    keypoints[2] = (300, 450, 0.9)
    request.keypoints.extend(messages.keypoints(keypoints))
    posed = images.decode_rgb(stubs["diffusion"].TryOn(request, timeout=300).image.data)
    assert not np.array_equal(posed, plain)  # the pose map drawn from the keypoints reached the UNet
    del request.keypoints[1:]
    with pytest.raises(grpc.RpcError) as err:
        stubs["diffusion"].TryOn(request, timeout=60)
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "expected 18 keypoints" in err.value.details()
    )


def test_an_expired_deadline_stops_the_denoising_between_steps(stubs, examples):
    from prometheus_client import REGISTRY

    def stopped() -> float:
        labels = {"service": "diffusion", "method": "TryOn", "code": "DEADLINE_EXCEEDED"}
        return REGISTRY.get_sample_value("vton_grpc_requests_total", labels) or 0.0

    request = _diffusion_request(examples, steps=200)
    before = stopped()
    with pytest.raises(grpc.RpcError) as err:
        stubs["diffusion"].TryOn(request, timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server gave up at a step check instead of running all 200 steps to an answer nobody waits for.
    for _ in range(100):
        if stopped() > before:
            break
        time.sleep(0.1)
    assert stopped() == before + 1
