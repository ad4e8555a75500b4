"""Hostile files straight into each gRPC stage, in every image field of every call, the other fields valid.

Whatever a client sends, a stage answers OK, INVALID_ARGUMENT or FAILED_PRECONDITION (no person), never an
internal error, and within its deadline. A file the API refuses is refused by every stage too, naming the
field and the problem: the stages and the API share one decoder and one set of checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.message import Message

from tests.reliability.hostile_corpus import ACCEPTED, Hostile, corpus
from tests.stages import TryOnChain, serving, stub
from vton.runtime.vocab import STAGES
from vton.v1 import common_pb2, densepose_pb2

DEADLINE_S = 60
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
# An empty optional mask means "no mask": the stage computes its own.
OPTIONAL_FIELDS = {"garment_mask"}


@dataclass(frozen=True)
class Call:
    name: str
    rpc: Callable
    request: Message  # a valid request, built from a real try-on
    fields: tuple[str, ...]  # the image fields, as paths into the request
    independent: tuple[str, ...]  # fields whose size need not match the person's


@pytest.fixture(scope="module")
def calls(examples) -> list[Call]:
    """Every stage call with a valid request made by the stages themselves from a real person and garment."""
    person = common_pb2.Image(data=(examples / "avatars" / "1.png").read_bytes(), format="png")
    garment = common_pb2.Image(
        data=(examples / "clothes" / "shirts" / "1_front.jpg").read_bytes(), format="jpeg"
    )
    options = common_pb2.TryOnOptions(category=common_pb2.CATEGORY_UPPER_BODY)
    with serving(dict.fromkeys(STAGES, "auto")) as channels:
        pose, densepose, parsing, warp, diffusion = (stub(stage, channels[stage]) for stage in STAGES)
        chain = TryOnChain(person, garment, options).analyse(channels, timeout=DEADLINE_S)
        warp_request = chain.warp_request()
        chain.warped = warp.WarpGarment(warp_request, timeout=DEADLINE_S)
        warp_request.garment_mask.CopyFrom(chain.warped.garment_mask)
        per_pixel = ("person", "masked_person", "agnostic_mask", "label_map.image")
        yield [
            Call("pose.EstimatePose", pose.EstimatePose, chain.pose_request(), ("image",), ("image",)),
            Call(
                "densepose.EstimateDensePose",
                densepose.EstimateDensePose,
                densepose_pb2.EstimateDensePoseRequest(image=person),
                ("image",),
                ("image",),
            ),
            Call("parsing.Parse", parsing.Parse, chain.parse_request(), ("image",), ("image",)),
            Call(
                "parsing.CreateAgnosticMask",
                parsing.CreateAgnosticMask,
                chain.agnostic_mask_request(),
                ("image", "label_map.image"),
                (),
            ),
            Call(
                "warp.WarpGarment",
                warp.WarpGarment,
                warp_request,
                ("garment", "garment_mask", *per_pixel),
                ("garment", "garment_mask"),
            ),
            Call(
                "diffusion.TryOn",
                diffusion.TryOn,
                chain.try_on_request(),
                ("garment", "warped_garment", "warped_mask", *per_pixel),
                ("garment",),
            ),
        ]


def _with_image(request: Message, path: str, data: bytes) -> Message:
    changed = type(request)()
    changed.CopyFrom(request)
    target = changed
    for name in path.split("."):
        target = getattr(target, name)
    target.CopyFrom(common_pb2.Image(data=data))
    return changed


def _send(calls: list[Call], files: tuple[Hostile, ...], every_field: bool) -> list[str]:
    """Each file into the calls' image fields; the wrong answers, in words. Unless `every_field`, a file goes into
    the first image field of each call only. Files the API accepts go into the fields whose size is free only
    (elsewhere they are refused for their size, which proves nothing)."""
    wrong = []
    for call in calls:
        for hostile in files:
            refused = hostile.status != ACCEPTED
            fields = call.fields if refused else call.independent
            fields = fields if every_field else fields[:1]
            for path in fields:
                if path in OPTIONAL_FIELDS and not hostile.data:
                    continue
                try:
                    call.rpc(_with_image(call.request, path, hostile.data), timeout=DEADLINE_S)
                    code, details = grpc.StatusCode.OK, ""
                except grpc.RpcError as exc:
                    code, details = exc.code(), exc.details()
                where = f"{hostile.name} in {call.name}({path})"
                if code not in ANSWERS:
                    wrong.append(f"{where}: {code.name} {details[:200]}")
                elif refused and (
                    code != grpc.StatusCode.INVALID_ARGUMENT
                    or not details.startswith(path.split(".")[0] + ": ")
                    or hostile.needle.lower() not in details.lower()
                ):
                    wrong.append(
                        f"{where}: {code.name} {details[:200]!r}, not a refusal naming {hostile.needle!r}"
                    )
    return wrong


def test_every_file_the_api_refuses_every_stage_refuses_naming_the_field(calls):
    refused = tuple(h for h in corpus() if h.status != ACCEPTED)
    assert len(refused) >= 35
    wrong = _send(calls, refused, every_field=False)
    assert wrong == [], "\n".join(wrong)


def test_a_bomb_and_a_truncated_file_are_refused_in_every_image_field_of_every_stage(calls):
    files = tuple(h for h in corpus() if h.name in ("webp-10kB-declaring-16383x16383", "png-cut-in-half"))
    wrong = _send(calls, files, every_field=True)
    assert wrong == [], "\n".join(wrong)


@pytest.mark.reliability
def test_files_the_api_accepts_get_an_answer_from_every_stage(calls):
    accepted = tuple(h for h in corpus() if h.status == ACCEPTED)
    wrong = _send(calls, accepted, every_field=False)
    assert wrong == [], "\n".join(wrong)


@pytest.mark.reliability
def test_the_whole_corpus_in_every_field_of_every_stage_gets_an_answer(calls):
    """Every file (the heavy bombs included) in every image field: never an internal error, never a hang."""
    wrong = _send(calls, corpus(heavy=True), every_field=True)
    assert wrong == [], "\n".join(wrong)
