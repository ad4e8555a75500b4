"""What a trainer exports is what its stage serves: the files load through the backend's own loader with the trained
tensors, and the stage's gRPC server started on the export folder (VTON_MODELS_DIR=OUT/weights) answers a call,
saying in its backend info that the weights are self-trained (the export's provenance.json)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch

from tests.stages import serve as serve_stage
from tests.stages import stub
from tests.training.conftest import tiny_config
from training.loop import WEIGHTS, train
from training.trainers import make_trainer
from vton.runtime import messages
from vton.v1 import common_pb2, diffusion_pb2, parsing_pb2, pose_pb2, warp_pb2


def _train(module: str, tiny_models, synthetic, out, steps: int = 2, **options) -> tuple:
    config = tiny_config(tiny_models, steps, options=options)
    trainer = make_trainer(module, config)
    result = train(trainer, synthetic(2, 64, 48), out, log=lambda *_: None, data="synthetic")
    return trainer, result


def _uint8(image: torch.Tensor) -> np.ndarray:
    return ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def _mask(mask: torch.Tensor) -> np.ndarray:
    return (mask[0].numpy() > 0.5).astype(np.uint8) * 255


@pytest.fixture
def serve():
    """Start STAGE's gRPC server with BACKEND from the models directory ROOT: its stub; stopped after the test."""
    started = []

    def start(stage: str, backend: str, root):
        started.append(serve_stage(stage, backend, models=root))
        return stub(stage, started[-1][1])

    yield start
    for server, channel in started:
        channel.close()
        server.stop(0)


def _same_tensors(loaded: torch.nn.Module, trained: torch.nn.Module) -> None:
    got, want = loaded.state_dict(), trained.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key].float().cpu(), want[key].float().cpu()), key


def test_the_warp_export_is_served_by_the_warp_stage(tiny_models, synthetic, tmp_path, serve):
    from services.warp.backends.ladi_vton import LadiVtonWarpBackend

    trainer, result = _train("warp", tiny_models, synthetic, tmp_path, tps_steps=1)
    folder = tmp_path / WEIGHTS / "ladi-vton-warp-vitonhd"
    assert {p.name for p in result.exported} == {
        "warping_vitonhd.pth",
        "vton_config.json",
        "provenance.json",
        "SHA256SUMS",
    }
    loaded = LadiVtonWarpBackend.from_pretrained(folder)
    _same_tensors(loaded.tps, trainer.trainable["tps"])
    _same_tensors(loaded.refinement, trainer.trainable["refinement"])

    sample = synthetic(1, 128, 96)[0]
    warp = serve("warp", "ladi-vton-warp-vitonhd", tmp_path / WEIGHTS)
    reply = warp.WarpGarment(
        warp_pb2.WarpGarmentRequest(
            garment=messages.png_image(_uint8(sample.garment)),
            garment_mask=messages.png_image(_mask(sample.garment_mask)),
            person=messages.png_image(_uint8(sample.person)),
            masked_person=messages.png_image(_uint8(sample.masked_person)),
            agnostic_mask=messages.png_image(_mask(sample.agnostic_mask)),
            keypoints=messages.keypoints(sample.keypoints.numpy()),
            label_map=messages.label_map(sample.parse.numpy().astype(np.uint8), "lip"),
            options=common_pb2.TryOnOptions(category=common_pb2.CATEGORY_UPPER_BODY),
        ),
        timeout=120,
    )
    assert reply.backend.name == "ladi-vton-warp-vitonhd"
    assert reply.backend.weights_license == (
        "self-trained (fine-tuned on synthetic; from ladi-vton-warp-vitonhd: CC-BY-NC-4.0)"
    )
    assert (reply.warped_garment.height, reply.warped_garment.width) == (128, 96)


def test_the_pose_export_is_served_by_the_pose_stage(tiny_models, synthetic, tmp_path, serve):
    from services.pose.backends.openpose import OpenPoseBackend

    trainer, _ = _train("pose", tiny_models, synthetic, tmp_path)
    loaded = OpenPoseBackend.from_pretrained(tmp_path / WEIGHTS / "openpose-body")
    _same_tensors(loaded.model, trainer.trainable["pose"].body)

    person = messages.png_image(_uint8(synthetic(1, 128, 96)[0].person))
    pose = serve("pose", "openpose-body", tmp_path / WEIGHTS)
    try:
        reply = pose.EstimatePose(pose_pb2.EstimatePoseRequest(image=person), timeout=120)
        assert reply.backend.name == "openpose-body" and len(reply.keypoints) == 18
    except grpc.RpcError as err:  # a barely trained tiny network may find nobody: the stage says so
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "no person" in err.details()


def test_the_parsing_export_is_served_by_the_parsing_stage(tiny_models, synthetic, tmp_path, serve):
    from services.parsing.backends.schp import SCHPBackend

    trainer, _ = _train("parsing", tiny_models, synthetic, tmp_path, input_size=48)
    loaded = SCHPBackend.from_pretrained(tmp_path / WEIGHTS / "schp-lip", "lip")
    _same_tensors(loaded.model, trainer.trainable["parsing"])

    person = messages.png_image(_uint8(synthetic(1, 128, 96)[0].person))
    parsing = serve("parsing", "schp-lip", tmp_path / WEIGHTS)
    try:
        reply = parsing.Parse(parsing_pb2.ParseRequest(image=person), timeout=120)
        assert reply.backend.name == "schp-lip"
        assert (reply.label_map.image.height, reply.label_map.image.width) == (128, 96)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "no person" in err.details()


@pytest.mark.parametrize(
    ("module", "trained_file", "attribute"),
    [
        ("emasc", "emasc_vitonhd.pth", "emasc"),
        ("inversion", "inversion_adapter_vitonhd.pth", "inversion_adapter"),
        ("unet", "unet_vitonhd.pth", "unet"),
    ],
)
def test_a_diffusion_module_export_is_served_by_the_diffusion_stage(
    module, trained_file, attribute, tiny_models, synthetic, tmp_path, serve
):
    from services.diffusion.backends.ladi_vton import LadiVtonBackend

    trainer, result = _train(module, tiny_models, synthetic, tmp_path, steps=1)
    folder = tmp_path / WEIGHTS / "ladi-vton-vitonhd"
    trained = folder / trained_file
    assert trained.is_file() and not trained.is_symlink()
    assert [p.name for p in result.exported] == [trained_file, "provenance.json", "SHA256SUMS"]
    loaded = LadiVtonBackend.from_pretrained(folder)
    (network,) = trainer.trainable.values()
    _same_tensors(getattr(loaded.pipeline, attribute), network)

    sample = synthetic(1, 128, 96)[0]
    diffusion = serve("diffusion", "ladi-vton-vitonhd", tmp_path / WEIGHTS)
    person = _uint8(sample.person)
    mask = _mask(sample.agnostic_mask)
    reply = diffusion.TryOn(
        diffusion_pb2.TryOnRequest(
            person=messages.png_image(person),
            masked_person=messages.png_image(_uint8(sample.masked_person)),
            agnostic_mask=messages.png_image(mask),
            pose_map=messages.tensor((sample.pose_map.numpy() * 255).astype(np.uint8)),
            warped_garment=messages.png_image(_uint8(sample.garment)),
            warped_mask=messages.png_image(_mask(sample.garment_mask)),
            garment=messages.png_image(_uint8(sample.garment)),
            label_map=messages.label_map(sample.parse.numpy().astype(np.uint8), "lip"),
            options=common_pb2.TryOnOptions(category=common_pb2.CATEGORY_UPPER_BODY, steps=2, seed=3),
        ),
        timeout=300,
    )
    assert reply.backend.name == "ladi-vton-vitonhd"
    # the other files of the folder are the published ones: their licence still applies
    assert reply.backend.weights_license == (
        "self-trained (fine-tuned on synthetic; from ladi-vton-vitonhd: CC-BY-NC-4.0)"
    )
    assert (reply.image.height, reply.image.width) == person.shape[:2]
