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
from vton.runtime import images, messages
from vton.runtime.weights import models_dir
from vton.v1 import (
    common_pb2,
    diffusion_pb2,
    diffusion_pb2_grpc,
    parsing_pb2,
    parsing_pb2_grpc,
    pose_pb2,
    pose_pb2_grpc,
    warp_pb2,
    warp_pb2_grpc,
)

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
    mp = pytest.MonkeyPatch()
    mp.setenv("VTON_MODELS_DIR", str(tiny_models))
    started = []
    for stage, backend in BACKENDS.items():
        module = __import__(f"services.{stage}.service", fromlist=["build_server"])
        server, port, _ = module.build_server(backend=backend, port=0)
        started.append((server, grpc.insecure_channel(f"127.0.0.1:{port}")))
    mp.undo()
    channels = dict(zip(BACKENDS, (ch for _, ch in started), strict=True))
    yield {
        "pose": pose_pb2_grpc.PoseServiceStub(channels["pose"]),
        "parsing": parsing_pb2_grpc.ParsingServiceStub(channels["parsing"]),
        "warp": warp_pb2_grpc.WarpServiceStub(channels["warp"]),
        "diffusion": diffusion_pb2_grpc.DiffusionServiceStub(channels["diffusion"]),
    }
    for server, channel in started:
        channel.close()
        server.stop(0)


def test_a_tryon_runs_through_the_full_backends_at_tiny_size(stubs, examples):
    person_rgb = images.read_rgb(str(examples / "avatars" / "2.png"))
    person = messages.png_image(person_rgb)
    garment = messages.png_image(images.read_rgb(str(examples / "clothes" / "shirts" / "1_front.jpg")))
    options = common_pb2.TryOnOptions(category=common_pb2.CATEGORY_UPPER_BODY, seed=7, steps=2)
    pose = stubs["pose"].EstimatePose(pose_pb2.EstimatePoseRequest(image=person), timeout=60)
    parse = stubs["parsing"].Parse(parsing_pb2.ParseRequest(image=person), timeout=60)
    assert parse.backend.name == "schp-lip" and parse.backend.kind == "full"
    agnostic = stubs["parsing"].CreateAgnosticMask(
        parsing_pb2.CreateAgnosticMaskRequest(
            image=person, label_map=parse.label_map, keypoints=pose.keypoints, options=options
        ),
        timeout=60,
    )
    warped = stubs["warp"].WarpGarment(
        warp_pb2.WarpGarmentRequest(
            garment=garment,
            person=person,
            masked_person=agnostic.masked_person,
            agnostic_mask=agnostic.mask,
            keypoints=pose.keypoints,
            pose_map=pose.pose_map,
            label_map=parse.label_map,
            options=options,
        ),
        timeout=120,
    )
    assert warped.backend.name == "ladi-vton-warp-vitonhd"
    assert (warped.warped_garment.width, warped.warped_garment.height) == (person.width, person.height)
    result = stubs["diffusion"].TryOn(
        diffusion_pb2.TryOnRequest(
            person=person,
            masked_person=agnostic.masked_person,
            agnostic_mask=agnostic.mask,
            pose_map=pose.pose_map,
            warped_garment=warped.warped_garment,
            warped_mask=warped.warped_mask,
            garment=garment,
            label_map=parse.label_map,
            options=options,
        ),
        timeout=300,
    )
    assert result.backend.name == "ladi-vton-vitonhd" and result.backend.kind == "full"
    out = images.decode_rgb(result.image.data)
    mask = images.decode_gray(agnostic.mask.data) > 0
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
