"""The parsing stage over gRPC: label maps from the selected backend, and the cloth-agnostic mask."""

from __future__ import annotations

from services.parsing.agnostic import agnostic_mask, masked_person
from services.parsing.backends import BACKENDS
from services.parsing.labels import colorize
from vton.runtime import messages, server
from vton.runtime.backend import BackendInfo
from vton.runtime.errors import InvalidInput
from vton.v1 import parsing_pb2, parsing_pb2_grpc

FULL_NAME = parsing_pb2.DESCRIPTOR.services_by_name["ParsingService"].full_name
AGNOSTIC = BackendInfo("lip-agnostic-mask", "1.0", "embedded", "Apache-2.0")


class ParsingServicer(parsing_pb2_grpc.ParsingServiceServicer):
    def __init__(self, info: BackendInfo, backend) -> None:
        self.info, self.backend = info, backend

    def Parse(self, request, context) -> parsing_pb2.ParseResponse:
        image = messages.rgb_from(request.image, "image")
        if (
            request.label_set
            and request.label_set != self.info.name.removeprefix("schp-")
            and request.label_set != "lip"
        ):
            raise InvalidInput(f"label_set {request.label_set!r} is not served by backend {self.info.name}")
        estimate = self.backend.parse(image)
        return parsing_pb2.ParseResponse(
            label_map=messages.label_map(estimate.labels, estimate.label_set),
            visualization=messages.png_image(colorize(estimate.labels)),
            people_detected=estimate.people_detected,
            backend=messages.backend_info(self.info),
        )

    def CreateAgnosticMask(self, request, context) -> parsing_pb2.CreateAgnosticMaskResponse:
        image = messages.rgb_from(request.image, "image")
        labels = messages.labels_from(request.label_map)
        if labels.shape != image.shape[:2]:
            raise InvalidInput(
                f"label_map is {labels.shape[1]}x{labels.shape[0]}; the image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        keypoints = messages.keypoints_from(request.keypoints)
        mask = agnostic_mask(labels, keypoints, messages.category_from(request.options))
        return parsing_pb2.CreateAgnosticMaskResponse(
            mask=messages.png_image(mask),
            masked_person=messages.png_image(masked_person(image, mask)),
            backend=messages.backend_info(AGNOSTIC),
        )


build_server = server.stage_builder(
    "parsing", FULL_NAME, parsing_pb2_grpc.add_ParsingServiceServicer_to_server, ParsingServicer, BACKENDS
)
