"""The DensePose stage over gRPC: a thin adapter from vton.v1.DensePoseService to the selected backend."""

from __future__ import annotations

import grpc

from services.densepose.backends import BACKENDS
from services.densepose.types import DensePoseBackend
from services.densepose.visualize import render_iuv
from vton.runtime import messages, server
from vton.runtime.vocab import Stage
from vton.v1 import densepose_pb2, densepose_pb2_grpc


class DensePoseServicer(densepose_pb2_grpc.DensePoseServiceServicer, server.StageServicer[DensePoseBackend]):
    def EstimateDensePose(
        self, request: densepose_pb2.EstimateDensePoseRequest, context: grpc.ServicerContext
    ) -> densepose_pb2.EstimateDensePoseResponse:
        image = messages.rgb_from(request.image, "image")
        estimate = self.in_slot(self.backend.estimate, image)
        return densepose_pb2.EstimateDensePoseResponse(
            iuv=messages.tensor(estimate.iuv.astype("float32")),
            visualization=messages.png_image(render_iuv(image, estimate.iuv)),
            people_detected=estimate.people_detected,
            backend=messages.backend_info(self.info),
        )


build_server = server.stage_builder(
    Stage.DENSEPOSE,
    densepose_pb2_grpc.add_DensePoseServiceServicer_to_server,
    DensePoseServicer,
    BACKENDS,
)
