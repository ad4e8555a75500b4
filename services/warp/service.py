"""The warp stage over gRPC: a thin adapter from vton.v1.WarpService to the selected backend."""

from __future__ import annotations

import grpc

from services.warp.backends import BACKENDS
from services.warp.types import WarpBackend, WarpInputs
from vton.runtime import messages, proto_vocab, server
from vton.runtime.vocab import Category, Stage
from vton.v1 import common_pb2, warp_pb2, warp_pb2_grpc


class WarpServicer(warp_pb2_grpc.WarpServiceServicer, server.StageServicer[WarpBackend]):
    def WarpGarment(
        self, request: warp_pb2.WarpGarmentRequest, context: grpc.ServicerContext
    ) -> warp_pb2.WarpGarmentResponse:
        person = messages.rgb_from(request.person, "person")
        height, width = messages.working_size(request.options, self.capabilities.working_size)
        inputs = WarpInputs(
            garment=messages.rgb_from(request.garment, "garment"),
            person=person,
            masked_person=messages.rgb_from(request.masked_person, "masked_person"),
            agnostic_mask=messages.gray_from(request.agnostic_mask, "agnostic_mask"),
            keypoints=messages.keypoints_from(request.keypoints),
            labels=messages.labels_from(request.label_map),
            category=messages.category_from(request.options),
            pose_map=messages.optional_array(request.pose_map, "pose_map"),
            garment_mask=messages.optional_gray(request.garment_mask, "garment_mask"),
            iuv=messages.optional_array(request.iuv, "iuv"),
            width=width,
            height=height,
        )
        messages.check_person_sized(
            person.shape[:2],
            masked_person=messages.spatial(inputs.masked_person),
            agnostic_mask=messages.spatial(inputs.agnostic_mask),
            label_map=messages.spatial(inputs.labels),
            pose_map=messages.spatial(inputs.pose_map, channels_first=True),
            iuv=messages.spatial(inputs.iuv, channels_first=True),
        )
        out = self.in_slot(self.backend.warp, inputs)
        return warp_pb2.WarpGarmentResponse(
            warped_garment=messages.png_image(out.warped_garment),
            warped_mask=messages.png_image(out.warped_mask),
            garment_mask=messages.png_image(out.garment_mask),
            garment_landmarks={
                k: common_pb2.Keypoint(x=x, y=y, confidence=1.0) for k, (x, y) in out.landmarks.items()
            },
            backend=messages.backend_info(self.info),
        )

    def ClassifyGarment(
        self, request: warp_pb2.ClassifyGarmentRequest, context: grpc.ServicerContext
    ) -> warp_pb2.ClassifyGarmentResponse:
        guess = self.in_slot(self.backend.classify, messages.rgb_from(request.garment, "garment"))
        return warp_pb2.ClassifyGarmentResponse(
            category=proto_vocab.category_enum(guess.category),
            confidence=guess.confidence,
            scores=[
                warp_pb2.CategoryScore(category=proto_vocab.category_enum(c), score=guess.scores[c])
                for c in Category
            ],
            backend=messages.backend_info(self.info),
        )


build_server = server.stage_builder(
    Stage.WARP, warp_pb2_grpc.add_WarpServiceServicer_to_server, WarpServicer, BACKENDS
)
