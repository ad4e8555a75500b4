"""The DensePose stage over gRPC: a thin adapter from vton.v1.DensePoseService to the selected backend."""

from __future__ import annotations

from services.densepose.backends import BACKENDS
from services.densepose.visualize import render_iuv
from vton.runtime import messages, server
from vton.runtime.backend import BackendInfo
from vton.v1 import densepose_pb2, densepose_pb2_grpc

FULL_NAME = densepose_pb2.DESCRIPTOR.services_by_name["DensePoseService"].full_name


class DensePoseServicer(densepose_pb2_grpc.DensePoseServiceServicer):
    def __init__(self, info: BackendInfo, backend) -> None:
        self.info, self.backend = info, backend

    def EstimateDensePose(self, request, context) -> densepose_pb2.EstimateDensePoseResponse:
        image = messages.rgb_from(request.image, "image")
        estimate = self.backend.estimate(image)
        return densepose_pb2.EstimateDensePoseResponse(
            iuv=messages.tensor(estimate.iuv.astype("float32")),
            visualization=messages.png_image(render_iuv(image, estimate.iuv)),
            people_detected=estimate.people_detected,
            backend=messages.backend_info(self.info),
        )


build_server = server.stage_builder(
    "densepose",
    FULL_NAME,
    densepose_pb2_grpc.add_DensePoseServiceServicer_to_server,
    DensePoseServicer,
    BACKENDS,
)
