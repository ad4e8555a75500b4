"""The parsing stage over gRPC: label maps from the selected backend, and the cloth-agnostic mask."""

from __future__ import annotations

import grpc

from services.parsing.agnostic import agnostic_mask, masked_person
from services.parsing.backends import BACKENDS
from services.parsing.labels import colorize
from services.parsing.types import ParsingBackend
from vton.runtime import messages, server
from vton.runtime.backend import BackendSpec, manifest_info
from vton.runtime.errors import InvalidInput
from vton.runtime.vocab import LabelSet, Stage
from vton.v1 import parsing_pb2, parsing_pb2_grpc

AGNOSTIC = manifest_info("lip-agnostic-mask", "embedded")


class ParsingServicer(parsing_pb2_grpc.ParsingServiceServicer, server.StageServicer[ParsingBackend]):
    def Parse(
        self, request: parsing_pb2.ParseRequest, context: grpc.ServicerContext
    ) -> parsing_pb2.ParseResponse:
        image = messages.rgb_from(request.image, "image")
        served = self.capabilities.label_sets
        if request.label_set and request.label_set not in served:
            raise InvalidInput(
                f"label_set {request.label_set!r} is not served by backend {self.info.name}; "
                f"it makes {', '.join(served)}"
            )
        estimate = self.in_slot(self.backend.parse, image)
        return parsing_pb2.ParseResponse(
            label_map=messages.label_map(estimate.labels, estimate.label_set),
            visualization=messages.png_image(colorize(estimate.labels)),
            people_detected=estimate.people_detected,
            backend=messages.backend_info(self.info),
        )

    def CreateAgnosticMask(
        self, request: parsing_pb2.CreateAgnosticMaskRequest, context: grpc.ServicerContext
    ) -> parsing_pb2.CreateAgnosticMaskResponse:
        # Geometry on the request's own label map: it never calls the backend, so it takes no backend slot.
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


def without_lip(spec: BackendSpec[ParsingBackend]) -> str | None:
    """Why the stage cannot serve with a backend: the agnostic mask, warp and diffusion read LIP labels."""
    if LabelSet.LIP in spec.capabilities.label_sets:
        return None
    makes = ", ".join(spec.capabilities.label_sets) or "no declared"
    lip = [name for name, s in BACKENDS.items() if LabelSet.LIP in s.capabilities.label_sets]
    return (
        f"it makes {makes} labels, and the agnostic mask, warp and diffusion need LIP labels; "
        f"choose one of: auto, {', '.join(lip)}"
    )


build_server = server.stage_builder(
    Stage.PARSING,
    parsing_pb2_grpc.add_ParsingServiceServicer_to_server,
    ParsingServicer,
    BACKENDS,
    refuse=without_lip,
)
